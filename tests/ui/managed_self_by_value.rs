#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter {
    total: u64,
}

#[multiproc::managed]
impl Counter {
    pub fn into_total(self) -> u64 {
        self.total
    }
}

fn main() {}
