#[multiproc::process]
enum Job {
    Download { url: String },
    Upload { path: String },
}

fn main() {}
