//! Pipes: a ping-pong with a child over a duplex `Pipe`, then `wait` over the
//! connections of several children, taking each message as it arrives and noticing
//! each child's end of file.
//!
//! ```text
//! cargo run --example pipe
//! ```

use std::time::Duration;

use multiproc::prelude::*;

/// Sends back every number it receives, plus one, until the other end closes.
#[multiproc::worker]
fn ponger(conn: Connection<u64>) -> multiproc::Result<()> {
    while let Ok(ball) = conn.recv() {
        conn.send(ball + 1)?;
    }
    Ok(()) // end of file: the parent closed its end
}

/// Works for a while, reports once, and ends (closing its end of the pipe).
#[multiproc::worker]
fn reporter(conn: Connection<String>, work_ms: u64) -> multiproc::Result<()> {
    std::thread::sleep(Duration::from_millis(work_ms));
    conn.send(format!("{} worked {work_ms} ms", current_process().name()))?;
    Ok(())
}

fn main() -> multiproc::Result<()> {
    // Ping-pong.
    let (ours, theirs) = Pipe::new()?;
    let p = ponger::spawn(theirs)?; // the child's end moved into the child
    let mut ball = 0;
    for _ in 0..3 {
        ours.send(ball)?;
        let back = ours.recv()?;
        println!("ping {ball} -> pong {back}");
        ball = back + 1;
    }
    drop(ours); // the ponger sees end of file and returns
    p.join()?;
    println!("pipe: ponger exited with {:?}", p.exitcode());

    // wait() over several connections.
    let mut conns = Vec::new();
    let mut children = Vec::new();
    for work_ms in [300, 100, 200] {
        let (ours, theirs) = Pipe::<String>::new()?;
        children.push(reporter::spawn(theirs, work_ms)?);
        conns.push(ours);
    }
    let mut reports = 0;
    while !conns.is_empty() {
        let waiting: Vec<&dyn Waitable> = conns.iter().map(|c| c as &dyn Waitable).collect();
        let ready = multiproc::wait(&waiting, None)?;
        // Take the ready ones out, last first so the indices stay valid.
        for i in ready.into_iter().rev() {
            match conns[i].recv() {
                Ok(report) => {
                    println!("got: {report}");
                    reports += 1;
                }
                Err(e) if e.is_disconnected() => {
                    conns.swap_remove(i); // that child is done
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    for c in &children {
        c.join()?;
    }
    println!("pipe: {reports} reports from {} children", children.len());
    Ok(())
}
