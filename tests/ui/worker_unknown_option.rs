#[multiproc::worker(bogus = 1)]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
