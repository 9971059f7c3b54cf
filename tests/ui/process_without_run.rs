#[multiproc::process]
struct Downloader {
    url: String,
}

fn main() {
    let _ = Downloader {
        url: "https://example.com".to_owned(),
    }
    .into_process();
}
