//! A manager served on TCP, and a worker process that connects to it as a remote client
//! would: by address and key, with nothing inherited.
//!
//! ```text
//! cargo run --example remote_manager
//! ```
//!
//! Python's `BaseManager(address=('', 50000), authkey=b'abc')` with
//! `get_server().serve_forever()` on one side and `m.connect()` on the other. The
//! server here listens on loopback at a port the system picks; on a network, serve on
//! `0.0.0.0:<port>` and give the clients the address and the key. Every connection
//! authenticates with an HMAC-SHA256 challenge over the key; a wrong key is refused.

use multiproc::prelude::*;
use multiproc::{Manager, ManagerAddress};

const AUTHKEY: &[u8] = b"a key both sides know";

/// The remote client: connects with the key, takes jobs from the shared queue and
/// records the results in the shared dict.
#[multiproc::worker]
fn client(address: ManagerAddress, authkey: Vec<u8>) -> multiproc::Result<u32> {
    let manager = Manager::connect(&address, &authkey)?;
    let jobs = manager.queue_named::<u64>("jobs")?;
    let results = manager.dict_named::<u64, u64>("results")?;
    let mut done = 0;
    loop {
        let job = jobs.get()?;
        if job == 0 {
            break;
        }
        results.insert(job, job * job)?;
        done += 1;
    }
    log::info!("squared {done} numbers for {address}");
    Ok(done)
}

fn main() -> multiproc::Result<()> {
    log_to_stderr(log::LevelFilter::Info);
    let server = Manager::serve("127.0.0.1:0", AUTHKEY)?;
    println!("remote_manager: serving at {}", server.address());

    let wrong = Manager::connect(server.address(), b"not the key");
    println!(
        "remote_manager: a wrong key is refused: {}",
        wrong.map(|_| "no").unwrap_or("yes")
    );

    let jobs = server.queue_named::<u64>("jobs")?;
    for n in 1..=10 {
        jobs.put(n)?;
    }
    jobs.put(0)?; // the sentinel
    let worker = client::spawn(server.address(), AUTHKEY.to_vec())?;
    let done = worker.join_value()?;

    let results = server.dict_named::<u64, u64>("results")?;
    let total: u64 = results.values()?.iter().sum();
    println!("remote_manager: the client squared {done} numbers, their sum is {total}");
    server.shutdown()?;
    println!(
        "remote_manager: server exit code {:?}",
        server.process().and_then(|p| p.exitcode())
    );
    Ok(())
}
