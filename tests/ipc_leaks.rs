//! Queues and pipes, created, used (handles inside items, items spilled to memory of
//! their own, connections through connections) and dropped 200 times, leave the
//! descriptor table and the memory map as they were.

use std::collections::BTreeSet;

use multiproc::{Connection, Pipe, Queue};
use serde_bytes::ByteBuf;

fn open_fds() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Mappings of multiproc's shared memory (memfds named `multiproc:...`).
fn shared_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("multiproc:"))
        .count()
}

#[multiproc::worker]
fn relay(inbox: Queue<Option<Connection<ByteBuf>>>) {
    while let Some(conn) = inbox.get().unwrap() {
        let m = conn.recv().unwrap();
        conn.send(m).unwrap();
    }
}

fn round() {
    // A queue carrying a queue and a large (spilled) item.
    let outer: Queue<(Queue<u8>, ByteBuf)> = Queue::builder().buffer_size(4096).build().unwrap();
    let inner = Queue::new().unwrap();
    outer
        .put((inner.clone(), ByteBuf::from(vec![1; 10_000])))
        .unwrap();
    let (copy, big) = outer.get().unwrap();
    copy.put(5).unwrap();
    assert_eq!(inner.get().unwrap(), 5);
    assert_eq!(big.len(), 10_000);
    // A connection through a connection, and a large message through the socket.
    let (a, b) = Pipe::<Connection<ByteBuf>>::new().unwrap();
    let (x, y) = Pipe::new().unwrap();
    a.send(y).unwrap();
    let y = b.recv().unwrap();
    x.send(ByteBuf::from(vec![2; 100_000])).unwrap();
    assert_eq!(y.recv().unwrap().len(), 100_000);
    // Items put and never taken, handles in flight never received.
    outer
        .put((inner.clone(), ByteBuf::from(vec![3; 10])))
        .unwrap();
    a.send(x).unwrap();
}

#[test]
fn handles_leak_nothing() {
    // A warm-up round and a child, so that lazily opened descriptors are counted on both
    // sides.
    round();
    let inbox = Queue::new().unwrap();
    let child = relay::spawn(inbox.clone()).unwrap();
    let fds_before = open_fds();
    let maps_before = shared_mappings();
    for _ in 0..200 {
        round();
        let (ours, theirs) = Pipe::new().unwrap();
        inbox.put(Some(theirs)).unwrap();
        ours.send(ByteBuf::from(vec![9; 10])).unwrap();
        assert_eq!(ours.recv().unwrap().as_slice(), [9; 10]);
    }
    assert_eq!(open_fds(), fds_before);
    assert_eq!(shared_mappings(), maps_before);
    inbox.put(None).unwrap();
    assert_eq!(child.join().unwrap(), 0);
}
