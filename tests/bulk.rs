//! Large values of the types users write (`Vec<u8>`, `String`, `Vec<f64>`, a `Vec` of a
//! small plain struct, and a struct holding them), 64 MiB each, as a worker's argument
//! and result, as queue items and as pipe messages, between real processes; and a
//! writer killed in the middle of a large value.

use multiproc::{Connection, Pipe, Queue};
use serde::{Deserialize, Serialize};

const LEN: usize = 64 << 20;

/// A `Vec` of structs is encoded and decoded element by element, which an unoptimised
/// build does some twenty times slower: 64 MiB of them when optimised, 8 MiB otherwise.
const POINTS_LEN: usize = if cfg!(debug_assertions) { 8 << 20 } else { LEN };

/// A small plain struct, as users put in vectors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    x: f64,
    y: f32,
    id: u32,
}

/// A struct holding one of each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    name: String,
    bytes: Vec<u8>,
    floats: Vec<f64>,
    points: Vec<Point>,
}

fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn text(len: usize) -> String {
    let unit = "héllo wörld ∂ ";
    let mut s = unit.repeat(len / unit.len() + 1);
    let mut end = len;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

fn floats(len: usize) -> Vec<f64> {
    (0..len / 8).map(|i| i as f64 * 0.5 - 1e6).collect()
}

fn points(len: usize) -> Vec<Point> {
    (0..len.min(POINTS_LEN) / 16)
        .map(|i| Point {
            x: i as f64 / 3.0,
            y: -(i as f32),
            id: i as u32,
        })
        .collect()
}

fn bundle(len: usize) -> Bundle {
    Bundle {
        name: text(len / 4),
        bytes: bytes(len / 4),
        floats: floats(len / 4),
        points: points(len / 32),
    }
}

/// For one type: a worker that echoes its argument, one that takes an item from a
/// queue and puts it on another, one that receives on a pipe and sends it back; and the
/// three tests that send a 64 MiB value through them and compare what comes back.
macro_rules! round_trips {
    ($name:ident: $ty:ty = $make:expr) => {
        mod $name {
            use super::*;

            #[multiproc::worker]
            fn echo(value: $ty) -> $ty {
                value
            }

            #[multiproc::worker]
            fn through_queues(from: Queue<$ty>, to: Queue<$ty>) -> Result<(), String> {
                let value = from.get().map_err(|e| e.to_string())?;
                to.put(value).map_err(|e| e.to_string())
            }

            #[multiproc::worker]
            fn through_pipe(end: Connection<$ty>) -> Result<(), String> {
                let value = end.recv().map_err(|e| e.to_string())?;
                end.send(value).map_err(|e| e.to_string())
            }

            #[test]
            fn as_argument_and_result() {
                let value: $ty = $make(LEN);
                let back = echo::spawn(value.clone()).unwrap().join_value().unwrap();
                assert!(back == value, "the value came back changed");
            }

            #[test]
            fn as_queue_item() {
                let value: $ty = $make(LEN);
                let (to_child, from_child) = (Queue::new().unwrap(), Queue::new().unwrap());
                let child = through_queues::spawn(to_child.clone(), from_child.clone()).unwrap();
                to_child.put(value.clone()).unwrap();
                let back = from_child.get().unwrap();
                child.join_value().unwrap();
                assert!(back == value, "the item came back changed");
            }

            #[test]
            fn as_pipe_message() {
                let value: $ty = $make(LEN);
                let (ours, theirs) = Pipe::new().unwrap();
                let child = through_pipe::spawn(theirs).unwrap();
                ours.send(value.clone()).unwrap();
                let back = ours.recv().unwrap();
                child.join_value().unwrap();
                assert!(back == value, "the message came back changed");
            }
        }
    };
}

round_trips!(byte_vector: Vec<u8> = bytes);
round_trips!(string: String = text);
round_trips!(float_vector: Vec<f64> = floats);
round_trips!(struct_vector: Vec<Point> = points);
round_trips!(holder: Bundle = bundle);

/// Says it is about to put a 64 MiB item, then puts items until it is killed.
#[multiproc::worker]
fn put_large_forever(ready: Queue<u8>, q: Queue<Vec<u8>>) -> Result<(), String> {
    let value = bytes(LEN);
    ready.put(1).map_err(|e| e.to_string())?;
    loop {
        q.put(value.clone()).map_err(|e| e.to_string())?;
    }
}

/// Says it is about to send a 64 MiB message, then sends until it is killed.
#[multiproc::worker]
fn send_large_forever(ready: Queue<u8>, end: Connection<Vec<u8>>) -> Result<(), String> {
    let value = bytes(LEN);
    ready.put(1).map_err(|e| e.to_string())?;
    loop {
        end.send(value.clone()).map_err(|e| e.to_string())?;
    }
}

#[test]
fn a_writer_killed_in_a_large_put_leaves_the_queue_usable() {
    let expected = bytes(LEN);
    let (ready, q) = (Queue::new().unwrap(), Queue::<Vec<u8>>::new().unwrap());
    let child = put_large_forever::spawn(ready.clone(), q.clone()).unwrap();
    assert_eq!(ready.get().unwrap(), 1);
    // The child is now encoding or putting a 64 MiB item (or between two).
    child.kill().unwrap();
    assert!(child.join().is_ok());
    q.put(vec![1, 2, 3]).unwrap();
    // Whole items of the dead writer, or errors for what it left half-written; then
    // ours, intact.
    let mut whole = 0;
    loop {
        match q.get() {
            Ok(item) if item == [1, 2, 3] => break,
            Ok(item) => {
                assert!(
                    item == expected,
                    "an item of {} bytes came out damaged",
                    item.len()
                );
                whole += 1;
            }
            Err(e) => eprintln!("an error for the killed writer's item: {e}"),
        }
        assert!(whole < 64, "the queue kept giving items");
    }
}

#[test]
fn a_writer_killed_in_a_large_send_gives_the_reader_an_error() {
    let expected = bytes(LEN);
    let ready = Queue::new().unwrap();
    let (ours, theirs) = Pipe::<Vec<u8>>::new().unwrap();
    let child = send_large_forever::spawn(ready.clone(), theirs).unwrap();
    assert_eq!(ready.get().unwrap(), 1);
    child.kill().unwrap();
    assert!(child.join().is_ok());
    // Whole messages sent before the kill, then an error: never a damaged one.
    let mut whole = 0;
    while let Ok(message) = ours.recv() {
        assert!(
            message == expected,
            "a message of {} bytes came out damaged",
            message.len()
        );
        whole += 1;
        assert!(whole < 64, "the pipe kept giving messages");
    }
}
