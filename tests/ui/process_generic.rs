use multiproc::Run;

#[multiproc::process]
struct Sender<T> {
    items: Vec<T>,
}

impl<T> Run for Sender<T> {
    fn run(&mut self) {
        println!("{}", self.items.len());
    }
}

fn main() {}
