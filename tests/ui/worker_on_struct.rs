#[multiproc::worker]
struct Downloader {
    url: String,
}

fn main() {}
