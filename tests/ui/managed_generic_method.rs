#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter {
    total: u64,
}

#[multiproc::managed]
impl Counter {
    pub fn add<T: Into<u64>>(&mut self, by: T) -> u64 {
        self.total += by.into();
        self.total
    }
}

fn main() {}
