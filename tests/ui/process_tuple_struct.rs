use multiproc::Run;

#[multiproc::process]
struct Downloader(String, u32);

impl Run for Downloader {
    fn run(&mut self) {
        println!("{} x{}", self.0, self.1);
    }
}

fn main() {}
