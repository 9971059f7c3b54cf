//! The usage guide's "Semaphore: Connection Pool", done right.
//!
//! ```text
//! cargo run --example connection_pool
//! ```
//!
//! A pool hands out at most `max_conns` connections at once: a `BoundedSemaphore`
//! counts the connections that may still be checked out, and a checkout holds its
//! permit until the connection comes back. Six worker processes check connections out
//! and back in, twenty times each.
//!
//! What the guide's version gets wrong, and this one does not: its semaphore is held
//! only while popping from the list (so nothing limits the connections in use), it
//! pops from a list that may be empty (it starts with one connection for five
//! workers), the worker calls `poll.close_conn` for `pool.close_conn`, and its `while
//! n:` loop never counts down.
//!
//! Until multiproc has a `Manager` (whose shared list the guide uses), the idle
//! connections live in a shared `Array`: one slot per connection the pool may open,
//! holding the connection's id, or 0 for an empty slot, guarded by the array's lock.

use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc::prelude::*;
use multiproc::{Array, Barrier, BoundedSemaphore, RawValue, SemaphoreGuard};
use serde::{Deserialize, Serialize};

/// A connection: here only an id (a real pool would hold a socket per connection in
/// each process, or a Manager proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conn(u32);

/// The pool, shared by every process it is handed to.
#[derive(Clone, Serialize, Deserialize)]
struct ConnectionPool {
    /// The idle connections (ids; 0 is an empty slot).
    idle: Array<u32>,
    /// Connections opened so far; ids count from 1.
    opened: RawValue<u32>,
    /// Connections checked out now, and the most at once (to show the bound holds).
    in_use: RawValue<u32>,
    most_in_use: RawValue<u32>,
    /// One permit per connection that may still be checked out.
    semaphore: BoundedSemaphore,
}

/// A connection checked out of the pool, with its permit.
struct CheckedOut<'a> {
    conn: Conn,
    _permit: SemaphoreGuard<'a>,
}

impl ConnectionPool {
    /// A pool of at most `max_conns` connections, `init_conns` of them opened now.
    fn new(init_conns: u32, max_conns: u32) -> multiproc::Result<ConnectionPool> {
        if init_conns > max_conns {
            return Err(std::io::Error::other(format!(
                "init_conns ({init_conns}) is more than max_conns ({max_conns})"
            ))
            .into());
        }
        let pool = ConnectionPool {
            idle: Array::zeroed(max_conns as usize)?,
            opened: RawValue::new(0)?,
            in_use: RawValue::new(0)?,
            most_in_use: RawValue::new(0)?,
            semaphore: BoundedSemaphore::new(max_conns)?,
        };
        for _ in 0..init_conns {
            let conn = pool.open();
            pool.put_idle(conn);
        }
        Ok(pool)
    }

    fn open(&self) -> Conn {
        let id = self.opened.atomic().fetch_add(1, Ordering::SeqCst) + 1;
        log::debug!("opened connection {id}");
        Conn(id)
    }

    fn put_idle(&self, conn: Conn) {
        let idle = self.idle.lock().expect("no process died holding the pool");
        let slot = (0..idle.len())
            .find(|&i| idle.get(i) == Ok(0))
            .expect("a slot per connection");
        idle.set(slot, conn.0).expect("a slot in range");
    }

    /// Waits for a permit, then takes an idle connection, or opens one: the permit
    /// guarantees that fewer than `max_conns` are out.
    fn get_conn(&self) -> CheckedOut<'_> {
        let permit = self.semaphore.permit();
        let taken = {
            let idle = self.idle.lock().expect("no process died holding the pool");
            (0..idle.len())
                .find_map(|i| match idle.get(i) {
                    Ok(id) if id != 0 => Some((i, id)),
                    _ => None,
                })
                .map(|(i, id)| {
                    idle.set(i, 0).expect("a slot in range");
                    Conn(id)
                })
        };
        let conn = taken.unwrap_or_else(|| self.open());
        let now = self.in_use.atomic().fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_use.atomic().fetch_max(now, Ordering::SeqCst);
        CheckedOut {
            conn,
            _permit: permit,
        }
    }

    /// Puts a connection back, then gives its permit back (when `checked` drops).
    fn close_conn(&self, checked: CheckedOut<'_>) {
        self.in_use.atomic().fetch_sub(1, Ordering::SeqCst);
        self.put_idle(checked.conn);
    }

    /// Closes the idle connections, as the guide's `close`.
    fn close(&self) -> Vec<Conn> {
        let idle = self.idle.lock().expect("no process died holding the pool");
        let mut closed = Vec::new();
        for i in 0..idle.len() {
            if let Ok(id) = idle.get(i) {
                if id != 0 {
                    closed.push(Conn(id));
                    idle.set(i, 0).expect("a slot in range");
                }
            }
        }
        closed
    }
}

const WORKERS: u32 = 6;
const CHECKOUTS: u32 = 20;

/// Checks a connection out and back in, `CHECKOUTS` times, all workers starting
/// together.
#[multiproc::worker]
fn worker(pool: ConnectionPool, start: Barrier) {
    start.wait().expect("every worker arrives");
    for _ in 0..CHECKOUTS {
        let conn = pool.get_conn();
        // ... a query on `conn.conn` ...
        std::thread::sleep(Duration::from_millis(1));
        pool.close_conn(conn);
    }
    log::debug!("made {CHECKOUTS} checkouts");
}

fn main() -> multiproc::Result<()> {
    log_to_stderr(log::LevelFilter::Info);
    let max_conns = WORKERS - 1;
    let pool = ConnectionPool::new(1, max_conns)?;
    let start = Barrier::new(WORKERS as usize)?;
    let jobs = (0..WORKERS)
        .map(|_| worker::spawn(pool.clone(), start.clone()))
        .collect::<multiproc::Result<Vec<_>>>()?;
    for job in jobs {
        assert_eq!(job.join()?, 0, "a worker failed");
    }

    let opened = pool.opened.get();
    let most = pool.most_in_use.get();
    assert!(most <= max_conns, "{most} connections out at once");
    assert!(opened <= max_conns, "{opened} connections opened");
    assert_eq!(pool.semaphore.value(), max_conns);
    let closed = pool.close();
    assert_eq!(closed.len() as u32, opened, "a connection went missing");
    log::info!("connections opened: {opened}; in use at once, at most: {most}");
    println!(
        "connection_pool: {} checkouts by {WORKERS} workers, never more than {max_conns} \
         connections at once, every connection back in the pool",
        WORKERS * CHECKOUTS
    );
    Ok(())
}
