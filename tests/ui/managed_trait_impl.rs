#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter {
    total: u64,
}

#[multiproc::managed]
impl Clone for Counter {
    fn clone(&self) -> Self {
        Counter { total: self.total }
    }
}

fn main() {}
