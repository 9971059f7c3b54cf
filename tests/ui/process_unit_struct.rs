use multiproc::Run;

#[multiproc::process]
struct Heartbeat;

impl Run for Heartbeat {
    fn run(&mut self) {
        println!("beat");
    }
}

fn main() {}
