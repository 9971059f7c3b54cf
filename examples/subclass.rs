//! The usage guide's "Subclass Process": a struct whose `run` is the process's body.

use multiproc::prelude::*;

#[multiproc::process]
struct MyProcess {}

impl Run for MyProcess {
    fn run(&mut self) {
        println!("run");
    }
}

fn main() -> multiproc::Result<()> {
    let p = MyProcess {}.into_process();
    p.start()?;
    p.join()?;
    println!("subclass: {} exited with {:?}", p.name(), p.exitcode());
    Ok(())
}
