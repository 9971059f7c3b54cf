//! A manager served on TCP: connect with the key, a wrong key refused, raw bytes on the
//! socket before and after authentication, and faults (a client killed in the middle of
//! a request, a killed server, a server whose parent is killed).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{helper_command, is_helper};
use hmac::{Hmac, Mac};
use multiproc::{
    Error, EventProxy, ListProxy, Manager, ManagerAddress, ManagerErrorKind, QueueProxy,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use sha2::Sha256;

const KEY: &[u8] = b"the key of the tests";

fn kind(e: &Error) -> Option<ManagerErrorKind> {
    match e {
        Error::Manager(m) => Some(m.kind()),
        _ => None,
    }
}

fn tcp_addr(m: &Manager) -> std::net::SocketAddr {
    match m.address() {
        ManagerAddress::Tcp(addr) => addr,
        other => panic!("a served manager listens on TCP, not {other}"),
    }
}

/// The remote client: connects by address and key, appends to the named list.
#[multiproc::worker]
fn remote_client(address: ManagerAddress, key: Vec<u8>, who: String) -> multiproc::Result<usize> {
    let client = Manager::connect(&address, &key)?;
    let jobs = client.list_named::<String>("jobs")?;
    jobs.push(who)?;
    jobs.len()
}

#[test]
fn serve_and_connect_on_loopback() -> multiproc::Result<()> {
    let server = Manager::serve("127.0.0.1:0", KEY)?;
    let addr = tcp_addr(&server);
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    let jobs = server.list_named::<String>("jobs")?;
    jobs.push("local".to_owned())?;
    let client = Manager::connect(server.address(), KEY)?;
    assert_eq!(client.list_named::<String>("jobs")?.to_vec()?, ["local"]);
    let n =
        remote_client::spawn(server.address(), KEY.to_vec(), "remote".to_owned())?.join_value()?;
    assert_eq!(n, 2);
    // A string address works too.
    let by_name = Manager::connect(addr.to_string(), KEY)?;
    assert_eq!(
        by_name.list_named::<String>("jobs")?.to_vec()?,
        ["local", "remote"]
    );
    // A client's shutdown only closes the client.
    client.shutdown()?;
    assert_eq!(jobs.len()?, 2);
    server.shutdown()?;
    assert!(by_name.list_named::<String>("jobs").is_err());
    Ok(())
}

#[test]
fn a_wrong_key_is_refused_and_the_server_goes_on() -> multiproc::Result<()> {
    let server = Manager::serve("127.0.0.1:0", KEY)?;
    let list = server.list_named::<u32>("l")?;
    for wrong in [&b"guess"[..], b"", b"the key of the test"] {
        let e = Manager::connect(server.address(), wrong).unwrap_err();
        assert_eq!(kind(&e), Some(ManagerErrorKind::Authentication), "{e}");
    }
    // A local manager's random key is needed too.
    let local = Manager::start()?;
    let e = Manager::connect(local.address(), KEY).unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::Authentication), "{e}");
    assert!(Manager::connect(local.address(), local.authkey()).is_ok());
    list.push(1)?;
    let good = Manager::connect(server.address(), KEY)?;
    assert_eq!(good.list_named::<u32>("l")?.to_vec()?, [1]);
    Ok(())
}

fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn read_message(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header) as usize;
    assert!(len < 1 << 20, "a reasonable length");
    let mut bytes = vec![0u8; len];
    s.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The client's side of the handshake, written from the protocol's description.
fn raw_authenticated(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let challenge = read_message(&mut s).unwrap();
    let message = challenge
        .strip_prefix(b"#CHALLENGE#")
        .expect("a challenge first");
    let mut answer = b"{sha256}".to_vec();
    answer.extend(mac(KEY, message));
    s.write_all(&frame(&answer)).unwrap();
    assert_eq!(read_message(&mut s).unwrap(), b"#WELCOME#");
    let mut mine = b"{sha256}".to_vec();
    mine.extend([7u8; 40]);
    let mut challenge = b"#CHALLENGE#".to_vec();
    challenge.extend(&mine);
    s.write_all(&frame(&challenge)).unwrap();
    let reply = read_message(&mut s).unwrap();
    let digest = reply.strip_prefix(b"{sha256}").expect("a digest");
    assert_eq!(
        digest,
        mac(KEY, &mine),
        "the server proves it holds the key"
    );
    s.write_all(&frame(b"#WELCOME#")).unwrap();
    let _hello = read_message(&mut s).unwrap();
    s
}

/// Whether the server closed `s` (reads the end of the stream) within ten seconds.
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn bad_bytes_before_authentication_close_only_that_connection() -> multiproc::Result<()> {
    let server = Manager::serve("127.0.0.1:0", KEY)?;
    let addr = tcp_addr(&server);
    let list = server.list::<u8>()?;
    // An oversized length instead of an answer.
    let mut s = TcpStream::connect(addr)?;
    let _challenge = read_message(&mut s)?;
    s.write_all(&u32::MAX.to_le_bytes())?;
    assert!(closed(&mut s));
    // Garbage of the right size.
    let mut s = TcpStream::connect(addr)?;
    let _challenge = read_message(&mut s)?;
    s.write_all(&frame(&[0xAB; 40]))?;
    assert_eq!(read_message(&mut s)?, b"#FAILURE#");
    assert!(closed(&mut s));
    // A truncated frame, then the end.
    let mut s = TcpStream::connect(addr)?;
    let _challenge = read_message(&mut s)?;
    s.write_all(&100u32.to_le_bytes())?;
    s.write_all(b"short")?;
    s.shutdown(std::net::Shutdown::Write)?;
    assert!(closed(&mut s));
    list.push(1)?;
    assert_eq!(list.to_vec()?, [1]);
    Ok(())
}

#[test]
fn bad_requests_after_authentication_get_errors() -> multiproc::Result<()> {
    let server = Manager::serve("127.0.0.1:0", KEY)?;
    let addr = tcp_addr(&server);
    let list = server.list::<u8>()?; // object 1
    list.push(9)?;
    let mut s = raw_authenticated(addr);
    // Garbage that is no request: an error response (Err = 1, kind Protocol = 13).
    s.write_all(&frame(&[0xFF, 0xFE, 0xFD]))?;
    assert_eq!(read_message(&mut s)?[..2], [1, 13]);
    // `Call { id: 999, kind: List, op: Len }`: unknown object (kind 10).
    s.write_all(&frame(&[2, 251, 0xE7, 0x03, 0, 2]))?;
    assert_eq!(read_message(&mut s)?[..2], [1, 10]);
    // `Call { id: 1, kind: Dict, op: Len }` on a list: wrong type (kind 9).
    s.write_all(&frame(&[2, 1, 1, 2]))?;
    assert_eq!(read_message(&mut s)?[..2], [1, 9]);
    // `Call { id: 1, kind: List, op: Len }`: `Ok(Count(1))`.
    s.write_all(&frame(&[2, 1, 0, 2]))?;
    assert_eq!(read_message(&mut s)?, [0, 2, 1]);
    // A length above every limit closes the connection, allocating nothing.
    s.write_all(&u32::MAX.to_le_bytes())?;
    assert!(closed(&mut s));
    // A frame cut short by the end of the stream.
    let mut s = raw_authenticated(addr);
    s.write_all(&1000u32.to_le_bytes())?;
    s.write_all(&[2; 10])?;
    s.shutdown(std::net::Shutdown::Write)?;
    assert!(closed(&mut s));
    assert_eq!(list.to_vec()?, [9]);
    Ok(())
}

#[multiproc::worker]
fn block_on_get(ready: EventProxy, queue: QueueProxy<u32>) -> multiproc::Result<u32> {
    ready.set()?;
    queue.get()
}

#[test]
fn a_client_killed_in_a_request_leaves_the_server_working() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let ready = manager.event()?;
    let queue = manager.queue::<u32>()?;
    let child = block_on_get::spawn(ready.clone(), queue.clone())?;
    ready.wait()?;
    child.kill()?;
    assert_eq!(child.join()?, -9);
    // The dead client's pending `get` takes nothing.
    queue.put(1)?;
    assert_eq!(queue.get_timeout(Duration::from_secs(10))?, 1);
    let list = manager.list::<u32>()?;
    list.push(2)?;
    assert_eq!(list.to_vec()?, [2]);
    Ok(())
}

#[test]
fn a_killed_server_gives_errors_not_hangs() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let list: ListProxy<u32> = manager.list()?;
    let queue = manager.queue::<u32>()?;
    let blocked = std::thread::spawn(move || {
        let start = Instant::now();
        let result = queue.get();
        (result.map_err(|e| kind(&e)), start.elapsed())
    });
    list.push(1)?;
    let server = manager.process().expect("the manager owns its server");
    server.kill()?;
    assert_eq!(server.join()?, -9);
    let start = Instant::now();
    let e = list.len().unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::Disconnected), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let (result, _) = blocked.join().expect("the thread ends");
    assert_eq!(result, Err(Some(ManagerErrorKind::Disconnected)));
    // Shutting down a dead server is fine.
    manager.shutdown()?;
    Ok(())
}

fn pidfd_open(pid: i32) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    assert!(fd >= 0, "pidfd_open({pid}) failed");
    // SAFETY: a fresh descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

#[test]
fn the_server_dies_with_a_killed_parent() {
    const NAME: &str = "the_server_dies_with_a_killed_parent";
    if is_helper(NAME) {
        let manager = Manager::start().expect("a manager");
        println!("{}", manager.pid().expect("a pid"));
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let mut helper = helper_command(NAME)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the helper starts");
    let out = helper.stdout.take().expect("stdout");
    // The first line that is a number (libtest prints its own lines first).
    let pid: i32 = std::io::BufRead::lines(std::io::BufReader::new(out))
        .map_while(Result::ok)
        .find_map(|l| l.trim().parse().ok())
        .expect("the server's pid");
    let pidfd = pidfd_open(pid);
    helper.kill().expect("SIGKILL");
    helper.wait().expect("reaped");
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(5000u16)).expect("poll");
    assert_eq!(n, 1, "the server {pid} outlived its killed parent");
}
