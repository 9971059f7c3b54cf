#[multiproc::worker]
fn greet(name: &str) {
    println!("hello {name}");
}

fn main() {}
