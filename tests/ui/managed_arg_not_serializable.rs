#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter {
    total: u64,
}

struct Opaque;

#[multiproc::managed]
impl Counter {
    pub fn take(&mut self, opaque: Opaque) -> u64 {
        let _ = opaque;
        self.total
    }
}

fn main() {}
