//! Large values of the types users write (`Vec<u8>`, `String`, `Vec<f64>`, a `Vec` of a
//! small plain struct, and a struct holding them), 64 MiB each, as a worker's argument
//! and result, as queue items and as pipe messages, between real processes; a writer
//! killed in the middle of a large value; forged sealed frames (a large message travels
//! in a sealed memfd on a Unix socket), and large values over TCP, which cannot carry
//! one.

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

/// Takes a handle beside a large value (its descriptor travels with the sealed
/// `memfd`), answers on it, and returns the value with another handle.
#[multiproc::worker]
fn large_with_handles(
    answer: Queue<u64>,
    value: Vec<u8>,
    pipe: Connection<Vec<u8>>,
) -> Result<(Vec<u8>, Queue<u64>), String> {
    answer.put(value.len() as u64).map_err(|e| e.to_string())?;
    // The same value back on the pipe, then as the result beside the queue.
    pipe.send(value.clone()).map_err(|e| e.to_string())?;
    Ok((value, answer))
}

#[test]
fn handles_travel_beside_a_large_value_in_every_direction() {
    let value = bytes(LEN);
    let answer = Queue::new().unwrap();
    let (ours, theirs) = Pipe::new().unwrap();
    let child = large_with_handles::spawn(answer.clone(), value.clone(), theirs).unwrap();
    assert_eq!(answer.get().unwrap(), LEN as u64);
    assert!(
        ours.recv().unwrap() == value,
        "the message came back changed"
    );
    let (back, queue) = child.join_value().unwrap();
    assert!(back == value, "the result came back changed");
    // The queue returned is the same queue.
    queue.put(7).unwrap();
    assert_eq!(answer.get().unwrap(), 7);
}

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

/// What a forged sealed frame carries where a genuine one carries its memfd.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Forgery {
    /// No descriptor at all.
    NoDescriptor,
    /// The read end of a pipe.
    Pipe,
    /// A Unix socket.
    Socket,
    /// A memfd sealed against resizing only: its writer could still change it.
    NotWriteSealed,
    /// A memfd sealed against writing only: it could still shrink under a reader.
    NotResizeSealed,
    /// A genuine sealed memfd of 3 bytes, announced as 4.
    WrongSize,
    /// A genuine sealed memfd, announced as one byte more than a message may hold.
    AboveLimit,
    /// A memfd of 1 GiB, sealed, but never written: all holes.
    Sparse,
}

impl Forgery {
    const ALL: [Forgery; 8] = [
        Forgery::NoDescriptor,
        Forgery::Pipe,
        Forgery::Socket,
        Forgery::NotWriteSealed,
        Forgery::NotResizeSealed,
        Forgery::WrongSize,
        Forgery::AboveLimit,
        Forgery::Sparse,
    ];

    /// What the reader's error says.
    fn needle(self) -> &'static str {
        match self {
            Forgery::NoDescriptor => "without its memfd",
            Forgery::Pipe => "a pipe",
            Forgery::Socket => "a socket",
            Forgery::NotWriteSealed | Forgery::NotResizeSealed => "not sealed",
            Forgery::WrongSize => "announced as 4",
            Forgery::AboveLimit => "above the limit",
            Forgery::Sparse => "hole",
        }
    }
}

/// A memfd holding `bytes` (or sized `size` and never written), with `seals`.
fn forged_memfd(bytes: &[u8], size: i64, seals: nix::fcntl::SealFlag) -> std::os::fd::OwnedFd {
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(c"forged", MFdFlags::MFD_ALLOW_SEALING).expect("memfd_create");
    nix::unistd::ftruncate(&fd, size).expect("ftruncate");
    if !bytes.is_empty() {
        nix::unistd::write(&fd, bytes).expect("write");
    }
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).expect("seals");
    fd
}

/// Writes one frame flagged as sealed (header `1 << 31 | 8`, then the announced length
/// as a `u64`) straight into the socket of `end`, carrying `forgery` where a genuine
/// frame carries its memfd.
fn forge_sealed(end: &Connection<Vec<u8>>, forgery: Forgery) {
    use nix::fcntl::SealFlag;
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    let all = SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE
        | SealFlag::F_SEAL_SEAL;
    let (announced, fd): (u64, Option<OwnedFd>) = match forgery {
        Forgery::NoDescriptor => (3, None),
        Forgery::Pipe => (3, Some(nix::unistd::pipe().expect("a pipe").0)),
        Forgery::Socket => {
            let (a, _b) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
            (3, Some(a.into()))
        }
        Forgery::NotWriteSealed => (
            3,
            Some(forged_memfd(
                b"abc",
                3,
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW,
            )),
        ),
        Forgery::NotResizeSealed => (3, Some(forged_memfd(b"abc", 3, SealFlag::F_SEAL_WRITE))),
        Forgery::WrongSize => (4, Some(forged_memfd(b"abc", 3, all))),
        Forgery::AboveLimit => (
            multiproc::MAX_MESSAGE_LEN as u64 + 1,
            Some(forged_memfd(b"abc", 3, all)),
        ),
        Forgery::Sparse => (1 << 30, Some(forged_memfd(b"", 1 << 30, all))),
    };
    let header = ((1u32 << 31) | 8).to_le_bytes();
    let body = announced.to_le_bytes();
    let raw: Vec<_> = fd.iter().map(|fd| fd.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    let iov = [std::io::IoSlice::new(&header), std::io::IoSlice::new(&body)];
    sendmsg::<()>(
        end.as_fd().as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::empty(),
        None,
    )
    .expect("the forged frame is sent");
}

/// This process's peak resident memory, in KiB.
fn max_rss_kib() -> i64 {
    // SAFETY: `rusage` is plain integers, valid when zeroed.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    let done = unsafe { nix::libc::getrusage(nix::libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(done, 0);
    usage.ru_maxrss
}

/// Receives one message, which must fail: its error, and how much this process's peak
/// resident memory grew meanwhile (in KiB).
#[multiproc::worker]
fn receive_forged(end: Connection<Vec<u8>>) -> Result<(String, i64), String> {
    let before = max_rss_kib();
    match end.recv() {
        Ok(message) => Err(format!("a forged frame gave {} bytes", message.len())),
        Err(e) => Ok((e.to_string(), max_rss_kib() - before)),
    }
}

#[test]
fn a_forged_sealed_frame_is_an_error_and_nothing_is_mapped() {
    for forgery in Forgery::ALL {
        let (ours, theirs) = Pipe::<Vec<u8>>::new().unwrap();
        forge_sealed(&ours, forgery);
        let (text, grew) = receive_forged::spawn(theirs).unwrap().join_value().unwrap();
        assert!(text.contains(forgery.needle()), "{forgery:?}: {text}");
        // Refused before anything is mapped or allocated (the sparse one announces
        // 1 GiB).
        assert!(
            grew < 16 << 10,
            "{forgery:?}: the peak RSS grew by {grew} KiB"
        );
    }
}

/// Appends `value` to the list named `name` of the manager at `address`.
#[multiproc::worker]
fn push_remote(
    address: multiproc::ManagerAddress,
    name: String,
    value: Vec<u8>,
) -> multiproc::Result<usize> {
    let client = multiproc::Manager::connect(&address, b"bulk")?;
    let list = client.list_named::<Vec<u8>>(&name)?;
    list.push(value)?;
    list.len()
}

#[test]
fn large_values_through_a_manager_over_tcp_and_over_a_unix_socket() -> multiproc::Result<()> {
    // 33 MiB: above the size that goes sealed on a Unix socket, which TCP cannot carry.
    const MANAGED: usize = 33 << 20;
    let value = bytes(MANAGED);
    let tcp = multiproc::Manager::serve("127.0.0.1:0", b"bulk")?;
    let n = push_remote::spawn(tcp.address(), "big".to_owned(), value.clone())?.join_value()?;
    assert_eq!(n, 1);
    let client = multiproc::Manager::connect(tcp.address(), b"bulk")?;
    let back = client.list_named::<Vec<u8>>("big")?.to_vec()?;
    assert!(back.len() == 1 && back[0] == value, "changed over TCP");
    tcp.shutdown()?;
    let local = multiproc::Manager::start()?;
    let list = local.list::<Vec<u8>>()?;
    list.push(value.clone())?;
    list.push(value.clone())?;
    let back = list.to_vec()?;
    assert!(
        back.len() == 2 && back.iter().all(|v| *v == value),
        "changed"
    );
    local.shutdown()?;
    Ok(())
}
