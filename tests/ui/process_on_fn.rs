#[multiproc::process]
fn download(url: String) {
    println!("{url}");
}

fn main() {}
