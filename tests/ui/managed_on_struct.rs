#[multiproc::managed]
struct Counter {
    total: u64,
}

fn main() {}
