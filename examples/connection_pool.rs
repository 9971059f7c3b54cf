//! The usage guide's "Semaphore: Connection Pool", done right.
//!
//! ```text
//! cargo run --example connection_pool
//! ```
//!
//! As in the guide, the idle connections live in a `Manager().list()` and a
//! `BoundedSemaphore` counts the connections that may still be checked out; six worker
//! processes check connections out and back in, twenty times each.
//!
//! What the guide's version gets wrong, and this one does not: its semaphore is held
//! only while popping from the list (so nothing limits the connections in use), it
//! pops from a list that may be empty (it starts with one connection for five
//! workers), the worker calls `poll.close_conn` for `pool.close_conn`, its `while n:`
//! loop never counts down, and its `close` removes items from the list it iterates.
//! Here a checkout holds its permit until the connection comes back, and opens a new
//! connection when none is idle.

use std::time::Duration;

use multiproc::prelude::*;
use multiproc::{BoundedSemaphore, ListProxy, Manager, SemaphoreGuard, ValueProxy};
use serde::{Deserialize, Serialize};

/// The pool, shared by every process it is handed to: the proxies reach the manager's
/// server from wherever they are.
#[derive(Clone, Serialize, Deserialize)]
struct ConnectionPool {
    /// The idle connections (Python's `mgr.list()`).
    conns: ListProxy<String>,
    /// Connections opened so far.
    opened: ValueProxy<u32>,
    /// Connections checked out now, and the most at once (to show the bound holds).
    in_use: ValueProxy<u32>,
    most_in_use: ValueProxy<u32>,
    /// Guards `opened`, `in_use` and `most_in_use`.
    books: multiproc::LockProxy,
    /// One permit per connection that may still be checked out.
    semaphore: BoundedSemaphore,
}

/// A connection checked out of the pool, with its permit.
struct CheckedOut<'a> {
    conn: String,
    _permit: SemaphoreGuard<'a>,
}

impl ConnectionPool {
    /// A pool of at most `max_conns` connections, `init_conns` of them opened now.
    fn new(manager: &Manager, init_conns: u32, max_conns: u32) -> multiproc::Result<Self> {
        if init_conns > max_conns {
            return Err(std::io::Error::other(format!(
                "init_conns ({init_conns}) is more than max_conns ({max_conns})"
            ))
            .into());
        }
        let pool = ConnectionPool {
            conns: manager.list()?,
            opened: manager.value(0)?,
            in_use: manager.value(0)?,
            most_in_use: manager.value(0)?,
            books: manager.lock()?,
            semaphore: BoundedSemaphore::new(max_conns)?,
        };
        for _ in 0..init_conns {
            let conn = pool.open()?;
            pool.conns.push(conn)?;
        }
        Ok(pool)
    }

    fn open(&self) -> multiproc::Result<String> {
        let _books = self.books.lock()?;
        let id = self.opened.get()? + 1;
        self.opened.set(id)?;
        log::debug!("opened connection {id}");
        Ok(format!("conn-{id}"))
    }

    /// Checks a connection out: waits for a permit, then takes an idle connection or
    /// opens one.
    fn get_conn(&self) -> multiproc::Result<CheckedOut<'_>> {
        let permit = self.semaphore.permit();
        let conn = match self.conns.pop()? {
            Some(conn) => conn,
            None => self.open()?,
        };
        let _books = self.books.lock()?;
        let now = self.in_use.get()? + 1;
        self.in_use.set(now)?;
        if now > self.most_in_use.get()? {
            self.most_in_use.set(now)?;
        }
        Ok(CheckedOut {
            conn,
            _permit: permit,
        })
    }

    /// Puts a connection back, then gives its permit back (when `checked` drops).
    fn close_conn(&self, checked: CheckedOut<'_>) -> multiproc::Result<()> {
        {
            let _books = self.books.lock()?;
            self.in_use.set(self.in_use.get()? - 1)?;
        }
        self.conns.push(checked.conn)
    }

    /// Closes the idle connections, as the guide's `close`.
    fn close(&self) -> multiproc::Result<Vec<String>> {
        let mut closed = Vec::new();
        while let Some(conn) = self.conns.pop()? {
            closed.push(conn);
        }
        Ok(closed)
    }
}

const WORKERS: u32 = 6;
const CHECKOUTS: u32 = 20;

/// Checks a connection out and back in, `CHECKOUTS` times.
#[multiproc::worker]
fn worker(pool: ConnectionPool) -> multiproc::Result<()> {
    for _ in 0..CHECKOUTS {
        let conn = pool.get_conn()?;
        // ... a query on `conn.conn` ...
        std::thread::sleep(Duration::from_millis(1));
        pool.close_conn(conn)?;
    }
    log::debug!("made {CHECKOUTS} checkouts");
    Ok(())
}

fn main() -> multiproc::Result<()> {
    log_to_stderr(log::LevelFilter::Info);
    let manager = Manager::start()?;
    let max_conns = WORKERS - 1;
    let pool = ConnectionPool::new(&manager, 1, max_conns)?;
    let jobs = (0..WORKERS)
        .map(|_| worker::spawn(pool.clone()))
        .collect::<multiproc::Result<Vec<_>>>()?;
    for job in jobs {
        assert_eq!(job.join()?, 0, "a worker failed");
    }

    let opened = pool.opened.get()?;
    let most = pool.most_in_use.get()?;
    assert!(most <= max_conns, "{most} connections out at once");
    assert!(opened <= max_conns, "{opened} connections opened");
    assert_eq!(pool.semaphore.value(), max_conns);
    let closed = pool.close()?;
    assert_eq!(closed.len() as u32, opened, "a connection went missing");
    log::info!("connections opened: {opened}; in use at once, at most: {most}");
    println!(
        "connection_pool: {} checkouts by {WORKERS} workers, never more than {max_conns} \
         connections at once, every connection back in the pool",
        WORKERS * CHECKOUTS
    );
    manager.shutdown()
}
