#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Cell<T> {
    value: T,
}

#[multiproc::managed]
impl<T> Cell<T> {
    pub fn get(&self) -> u8 {
        0
    }
}

fn main() {}
