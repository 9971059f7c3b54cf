#[multiproc::worker]
async fn fetch(url: String) -> usize {
    url.len()
}

fn main() {}
