//! Pipes and connections across real processes, case by case as Python's
//! `multiprocessing` behaves (section E of the reference): round trips, end of file
//! when the peer exits or is killed, one-way pipes, connections crossing to running
//! processes, `wait` over connections and sentinels, and garbage written into a
//! connection's socket by another process.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use multiproc::prelude::*;
use multiproc::{ChannelError, Connection, Error, Pipe, Queue};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Msg {
    Mixed(Vec<i32>, f64, Option<()>),
    Map(std::collections::BTreeMap<String, u32>),
    Stop,
}

#[multiproc::worker]
fn echo(conn: Connection<Msg>) {
    while let Ok(msg) = conn.recv() {
        if msg == Msg::Stop {
            return;
        }
        conn.send(msg).unwrap();
    }
}

/// Echoes byte messages until an empty one (Python's echo child).
#[multiproc::worker]
fn echo_bytes(conn: Connection<()>) {
    loop {
        let m = conn.recv_bytes().unwrap();
        if m.is_empty() {
            return;
        }
        conn.send_bytes(&m).unwrap();
    }
}

#[multiproc::worker]
fn send_then_exit(conn: Connection<u32>, n: u32) {
    for i in 0..n {
        conn.send(i).unwrap();
    }
}

#[multiproc::worker]
fn sleep_forever(conn: Connection<u32>) {
    conn.send(1).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[multiproc::worker]
fn read_all(conn: Connection<String>) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(s) = conn.recv() {
        got.push(s);
    }
    got
}

/// Receives connections through a queue while running, and answers on each.
#[multiproc::worker]
fn answer_on_connections(inbox: Queue<Option<Connection<String>>>) -> u32 {
    let mut n = 0;
    while let Some(conn) = inbox.get().unwrap() {
        let question = conn.recv().unwrap();
        conn.send(format!("{question}? {n}")).unwrap();
        n += 1;
    }
    n
}

/// Receives a new connection through the connection it was started with.
#[multiproc::worker]
fn take_a_new_line(control: Connection<Connection<u64>>) {
    let line = control.recv().unwrap();
    let x = line.recv().unwrap();
    line.send(x * 3).unwrap();
}

#[multiproc::worker]
fn big_round_trip(conn: Connection<serde_bytes::ByteBuf>) {
    let m = conn.recv().unwrap();
    conn.send(m).unwrap();
}

#[multiproc::worker]
fn delayed_send(conn: Connection<u32>, ms: u64, value: u32) {
    std::thread::sleep(Duration::from_millis(ms));
    conn.send(value).unwrap();
    // Wait for the parent to say goodbye, so the end stays open until then.
    let _ = conn.recv();
}

#[multiproc::worker]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Writes `bytes` straight into its end's socket, bypassing the protocol.
#[multiproc::worker]
fn write_raw(conn: Connection<u32>, bytes: Vec<u8>) {
    let fd = conn.as_fd().try_clone_to_owned().unwrap();
    let mut sock = std::os::unix::net::UnixStream::from(fd);
    sock.set_nonblocking(false).unwrap();
    sock.write_all(&bytes).unwrap();
}

#[multiproc::process]
struct Uppercaser {
    conn: Connection<Option<String>>,
}

impl Run for Uppercaser {
    fn run(&mut self) {
        while let Ok(Some(s)) = self.conn.recv() {
            self.conn.send(Some(s.to_uppercase())).unwrap();
        }
    }
}

#[test]
fn round_trips_with_a_child() {
    let (ours, theirs) = Pipe::new().unwrap();
    let child = echo::spawn(theirs).unwrap();
    let mixed = Msg::Mixed(vec![1, -2], 2.25, None);
    let map = Msg::Map([("a".to_owned(), 1), ("b".to_owned(), 2)].into());
    for _ in 0..100 {
        ours.send(mixed.clone()).unwrap();
        ours.send(map.clone()).unwrap();
        assert_eq!(ours.recv().unwrap(), mixed);
        assert_eq!(ours.recv().unwrap(), map);
    }
    ours.send(Msg::Stop).unwrap();
    assert_eq!(child.join().unwrap(), 0);
    // The child's end is gone with it.
    assert!(ours.recv().unwrap_err().is_disconnected());
}

#[test]
fn byte_messages_keep_their_boundaries() {
    let (ours, theirs) = Pipe::new().unwrap();
    let child = echo_bytes::spawn(theirs).unwrap();
    for m in [&b"a"[..], b"b", b"cd", &[0u8; 100_000]] {
        ours.send_bytes(m).unwrap();
    }
    for m in [&b"a"[..], b"b", b"cd", &[0u8; 100_000]] {
        assert_eq!(ours.recv_bytes().unwrap(), m);
    }
    ours.send_bytes(b"").unwrap();
    assert_eq!(child.join().unwrap(), 0);
}

#[test]
fn end_of_file_after_a_child_exits() {
    let (ours, theirs) = Pipe::new().unwrap();
    let child = send_then_exit::spawn(theirs, 3).unwrap();
    assert_eq!(child.join().unwrap(), 0);
    // Already-sent messages first, then end of file, and poll says so.
    for i in 0..3 {
        assert_eq!(ours.recv().unwrap(), i);
    }
    assert!(ours.poll(Some(Duration::ZERO)).unwrap());
    assert!(ours.recv().unwrap_err().is_disconnected());
    assert!(ours.send(7).unwrap_err().is_disconnected());
}

#[test]
fn a_killed_peer_is_end_of_file_not_a_hang() {
    let (ours, theirs) = Pipe::new().unwrap();
    let child = sleep_forever::spawn(theirs).unwrap();
    assert_eq!(ours.recv().unwrap(), 1);
    child.kill().unwrap();
    assert_eq!(child.join().unwrap(), -9);
    // A peer's death that went unnoticed would end in a timeout, not a disconnection:
    // no bound on the time is needed.
    assert!(
        ours.recv_timeout(Duration::from_secs(30))
            .unwrap_err()
            .is_disconnected()
    );
    // Sending may succeed while the buffer has room (the kill closed no handle
    // cleanly), but never for long.
    let failed_at = (0..100_000).find(|i| ours.send(*i).is_err());
    assert!(
        failed_at.is_some(),
        "sends to a killed peer kept succeeding"
    );
}

#[test]
fn one_way_pipe_to_a_child() {
    let (reader, writer) = Pipe::one_way().unwrap();
    let child = read_all::spawn(reader).unwrap();
    for s in ["x", "y"] {
        writer.send(s.to_owned()).unwrap();
    }
    drop(writer);
    assert_eq!(child.join_value().unwrap(), ["x", "y"]);
}

#[test]
fn connections_sent_through_a_queue_to_a_running_process() {
    let inbox = Queue::new().unwrap();
    let child = answer_on_connections::spawn(inbox.clone()).unwrap();
    for i in 0..3 {
        let (ours, theirs) = Pipe::new().unwrap();
        inbox.put(Some(theirs)).unwrap();
        ours.send(format!("q{i}")).unwrap();
        assert_eq!(ours.recv().unwrap(), format!("q{i}? {i}"));
    }
    inbox.put(None).unwrap();
    assert_eq!(child.join_value().unwrap(), 3);
}

#[test]
fn a_connection_sent_through_a_connection() {
    let (control, theirs) = Pipe::new().unwrap();
    let child = take_a_new_line::spawn(theirs).unwrap();
    let (line, line_theirs) = Pipe::new().unwrap();
    control.send(line_theirs).unwrap();
    line.send(14).unwrap();
    assert_eq!(line.recv().unwrap(), 42);
    assert_eq!(child.join().unwrap(), 0);
    assert!(line.recv().unwrap_err().is_disconnected());
}

#[test]
fn a_process_struct_owning_a_pipe() {
    let (ours, theirs) = Pipe::new().unwrap();
    let p = Uppercaser { conn: theirs }.into_process();
    p.start().unwrap();
    ours.send(Some("hello".into())).unwrap();
    assert_eq!(ours.recv().unwrap(), Some("HELLO".into()));
    ours.send(Some("world".into())).unwrap();
    assert_eq!(ours.recv().unwrap(), Some("WORLD".into()));
    ours.send(None).unwrap();
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn a_16_mib_message_round_trips() {
    let (ours, theirs) = Pipe::new().unwrap();
    let child = big_round_trip::spawn(theirs).unwrap();
    let bytes: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 253) as u8).collect();
    ours.send(serde_bytes::ByteBuf::from(bytes.clone()))
        .unwrap();
    assert_eq!(ours.recv().unwrap().into_vec(), bytes);
    assert_eq!(child.join().unwrap(), 0);
}

#[test]
fn wait_over_connections_and_a_sentinel() {
    // Python's case: wait([a, sentinel, b]) returns the sentinel once the child ends,
    // then the sentinel and b once b's peer has sent.
    let (a, a_theirs) = Pipe::<u32>::new().unwrap();
    let (b, b_theirs) = Pipe::<u32>::new().unwrap();
    let sleeper = nap::spawn(300).unwrap();
    let sentinel = sleeper.sentinel().unwrap();
    let ready = multiproc::wait(&[&a, &sentinel, &b], Some(Duration::from_secs(30))).unwrap();
    assert_eq!(ready, [1]);
    sleeper.join().unwrap();
    let sender = delayed_send::spawn(b_theirs, 100, 5).unwrap();
    let start = Instant::now();
    loop {
        let ready = multiproc::wait(&[&a, &sentinel, &b], Some(Duration::from_secs(30))).unwrap();
        if ready == [1, 2] {
            break;
        }
        assert_eq!(ready, [1]);
        assert!(start.elapsed() < Duration::from_secs(30));
        // Only the sentinel: wait for b alone.
        multiproc::wait(&[&b], Some(Duration::from_secs(30))).unwrap();
    }
    assert_eq!(b.recv().unwrap(), 5);
    b.send(0).unwrap();
    sender.join().unwrap();
    drop(a_theirs);
    // a's peer is closed now: a is ready too (a receive would not block).
    let ready = multiproc::wait(&[&a, &sentinel], Some(Duration::ZERO)).unwrap();
    assert_eq!(ready, [0, 1]);
}

#[test]
fn garbage_from_another_process_is_an_error_naming_it() {
    let cases: [(Vec<u8>, &str); 3] = [
        (vec![0xff, 0xff, 0xff, 0x7f], "message too large"),
        (
            vec![2, 0, 0, 0, 1, 2],
            "too short for a message's sequence number",
        ),
        (vec![50, 0, 0, 0, 1, 2, 3], "truncated"),
    ];
    for (bytes, expected) in cases {
        let (ours, theirs) = Pipe::new().unwrap();
        let child = write_raw::spawn(theirs, bytes).unwrap();
        assert_eq!(child.join().unwrap(), 0);
        let e = ours.recv().unwrap_err();
        assert!(e.to_string().contains(expected), "{e}");
        // The connection has lost its place in the stream: later receives say so.
        match ours.recv().unwrap_err() {
            multiproc::RecvError::Failed(Error::Channel(ChannelError::Broken(first))) => {
                assert!(first.contains(expected), "{first}");
            }
            other => panic!("{other:?}"),
        }
    }
}
