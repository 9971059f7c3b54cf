#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter {
    total: u64,
}

#[multiproc::managed]
impl Counter {
    fn incr(&mut self, by: u64) -> u64 {
        self.total += by;
        self.total
    }

    pub fn new() -> Self {
        Counter::default()
    }
}

fn main() {}
