//! Every IPC handle by every route: `Queue`, `SimpleQueue`, `JoinableQueue` and
//! `Connection` as worker arguments, as `#[process]` fields, and sent through a queue
//! and through a pipe to a process that is already running. Each time the receiver
//! proves the handle works by answering through it. The locks and shared values of
//! the synchronisation module go through a queue and a pipe too.

use std::time::Duration;

use multiproc::prelude::*;
use serde::{Deserialize, Serialize};

/// One handle of each kind; the receiver answers on each.
#[derive(Serialize, Deserialize)]
struct Handles {
    queue: Queue<String>,
    simple: SimpleQueue<String>,
    joinable: JoinableQueue<String>,
    conn: Connection<String>,
}

impl Handles {
    fn answer(&self, how: &str) {
        self.queue.put(format!("queue {how}")).unwrap();
        self.simple.put(format!("simple {how}")).unwrap();
        self.joinable.put(format!("joinable {how}")).unwrap();
        self.conn.send(format!("conn {how}")).unwrap();
    }
}

/// The parent's side: the handles to give away, and the ends to read the answers on.
struct Ours {
    queue: Queue<String>,
    simple: SimpleQueue<String>,
    joinable: JoinableQueue<String>,
    conn: Connection<String>,
}

fn fresh() -> (Ours, Handles) {
    let queue = Queue::new().unwrap();
    let simple = SimpleQueue::new().unwrap();
    let joinable = JoinableQueue::new().unwrap();
    let (conn, theirs) = Pipe::new().unwrap();
    let handles = Handles {
        queue: queue.clone(),
        simple: simple.clone(),
        joinable: joinable.clone(),
        conn: theirs,
    };
    (
        Ours {
            queue,
            simple,
            joinable,
            conn,
        },
        handles,
    )
}

impl Ours {
    fn expect_answers(&self, how: &str) {
        let t = Duration::from_secs(30);
        assert_eq!(self.queue.get_timeout(t).unwrap(), format!("queue {how}"));
        assert_eq!(self.simple.get().unwrap(), format!("simple {how}"));
        assert_eq!(
            self.joinable.get_timeout(t).unwrap(),
            format!("joinable {how}")
        );
        self.joinable.task_done().unwrap();
        assert_eq!(self.conn.recv_timeout(t).unwrap(), format!("conn {how}"));
    }
}

#[multiproc::worker]
fn as_arguments(
    queue: Queue<String>,
    simple: SimpleQueue<String>,
    joinable: JoinableQueue<String>,
    conn: Connection<String>,
) {
    Handles {
        queue,
        simple,
        joinable,
        conn,
    }
    .answer("as arguments");
}

#[multiproc::process]
struct AsFields {
    handles: Handles,
}

impl Run for AsFields {
    fn run(&mut self) {
        self.handles.answer("as fields");
    }
}

/// Runs, then receives handles through a queue until a `None`.
#[multiproc::worker]
fn through_a_queue(inbox: Queue<Option<Handles>>) {
    while let Some(handles) = inbox.get().unwrap() {
        handles.answer("through a queue");
    }
}

/// Runs, then receives handles through a pipe until the other end closes.
#[multiproc::worker]
fn through_a_pipe(inbox: Connection<Handles>) {
    while let Ok(handles) = inbox.recv() {
        handles.answer("through a pipe");
    }
}

#[test]
fn as_worker_arguments() {
    let (ours, h) = fresh();
    let p = as_arguments::spawn(h.queue, h.simple, h.joinable, h.conn).unwrap();
    ours.expect_answers("as arguments");
    assert_eq!(p.join().unwrap(), 0);
    ours.joinable.join();
}

#[test]
fn as_process_fields() {
    let (ours, handles) = fresh();
    let p = AsFields { handles }.into_process();
    p.start().unwrap();
    ours.expect_answers("as fields");
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn through_a_queue_to_a_running_process() {
    let inbox = Queue::new().unwrap();
    let p = through_a_queue::spawn(inbox.clone()).unwrap();
    // Twice, with handles created after the child started.
    for _ in 0..2 {
        let (ours, handles) = fresh();
        inbox.put(Some(handles)).unwrap();
        ours.expect_answers("through a queue");
    }
    inbox.put(None).unwrap();
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn through_a_pipe_to_a_running_process() {
    let (inbox, theirs) = Pipe::new().unwrap();
    let p = through_a_pipe::spawn(theirs).unwrap();
    for _ in 0..2 {
        let (ours, handles) = fresh();
        inbox.send(handles).unwrap();
        ours.expect_answers("through a pipe");
    }
    drop(inbox);
    assert_eq!(p.join().unwrap(), 0);
}

/// One synchronisation handle of each kind. The receiver proves each is shared: the
/// lock is held by the sender, the values it writes are seen by the sender.
#[derive(Serialize, Deserialize)]
struct SyncHandles {
    lock: Lock,
    rlock: RLock,
    semaphore: Semaphore,
    event: Event,
    value: Value<u64>,
    array: Array<u32>,
}

impl SyncHandles {
    fn fresh() -> SyncHandles {
        SyncHandles {
            lock: Lock::new().unwrap(),
            rlock: RLock::new().unwrap(),
            semaphore: Semaphore::new(0).unwrap(),
            event: Event::new().unwrap(),
            value: Value::new(0).unwrap(),
            array: Array::zeroed(3).unwrap(),
        }
    }

    fn share(&self) -> SyncHandles {
        SyncHandles {
            lock: self.lock.clone(),
            rlock: self.rlock.clone(),
            semaphore: self.semaphore.clone(),
            event: self.event.clone(),
            value: self.value.clone(),
            array: self.array.clone(),
        }
    }

    /// The receiver's side: the locks are held elsewhere; write, release, signal.
    fn answer(&self, n: u64) {
        assert!(!self.lock.try_acquire().unwrap());
        assert!(!self.rlock.try_acquire().unwrap());
        self.value.set(n);
        self.array.set(2, n as u32).unwrap();
        self.semaphore.release().unwrap();
        self.event.set();
    }

    /// The sender's side, after the receiver answered.
    fn check(&self, n: u64) {
        assert!(self.event.wait_timeout(Duration::from_secs(30)));
        assert!(self.semaphore.acquire_timeout(Duration::from_secs(30)));
        assert_eq!(self.value.get(), n);
        assert_eq!(self.array.to_vec(), vec![0, 0, n as u32]);
    }
}

#[multiproc::worker]
fn sync_through_a_queue(inbox: Queue<Option<(u64, SyncHandles)>>) {
    while let Some((n, handles)) = inbox.get().unwrap() {
        handles.answer(n);
    }
}

#[multiproc::worker]
fn sync_through_a_pipe(inbox: Connection<(u64, SyncHandles)>) {
    while let Ok((n, handles)) = inbox.recv() {
        handles.answer(n);
    }
}

#[test]
fn locks_and_shared_values_through_a_queue_and_a_pipe() {
    let queue = Queue::new().unwrap();
    let (pipe, theirs) = Pipe::new().unwrap();
    let by_queue = sync_through_a_queue::spawn(queue.clone()).unwrap();
    let by_pipe = sync_through_a_pipe::spawn(theirs).unwrap();
    for n in 1..=2u64 {
        // Created after the children started; held here while they look.
        let ours = SyncHandles::fresh();
        let _held = ours.lock.lock().unwrap();
        let _also_held = ours.rlock.lock().unwrap();
        queue.put(Some((n, ours.share()))).unwrap();
        ours.check(n);
        ours.event.clear();
        pipe.send((n + 10, ours.share())).unwrap();
        ours.check(n + 10);
    }
    queue.put(None).unwrap();
    drop(pipe);
    assert_eq!(by_queue.join().unwrap(), 0);
    assert_eq!(by_pipe.join().unwrap(), 0);
}
