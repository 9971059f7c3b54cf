//! The selector argument alone runs nothing: by hand, stale, or with a bootstrap
//! channel that carries garbage, the child exits with status 2 and a clear message,
//! before any worker code or the test harness runs.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Output, Stdio};

mod common;

#[multiproc::worker]
fn must_not_run() {
    println!("the worker ran");
}

fn selector_command(key: &str, source: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--multiproc-child", key, source])
        .stdin(Stdio::null());
    cmd
}

fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.starts_with("multiproc: "), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    // Neither the worker nor the test harness ran.
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn a_selector_given_by_hand_runs_nothing() {
    let out = selector_command("selector::must_not_run", "fd=3")
        .output()
        .unwrap();
    assert_refused(&out, "is for multiproc's own use");
    assert_refused(&out, "descriptor 3 is not open");
}

#[test]
fn a_malformed_selector_runs_nothing() {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--multiproc-child")
        .output()
        .unwrap();
    assert_refused(&out, "needs a worker key and a bootstrap source");
    let out = selector_command("selector::must_not_run", "udp=example:1")
        .output()
        .unwrap();
    assert_refused(&out, "is not `fd=<n>` or `tcp=<host:port>`");
    // A TCP source (a worker started on another node) needs the key in its
    // environment, which a hand-made command line does not give it.
    let out = selector_command("selector::must_not_run", "tcp=example:1")
        .env_remove("MULTIPROC_AUTHKEY")
        .output()
        .unwrap();
    assert_refused(&out, "holds no key");
}

#[test]
fn a_descriptor_that_is_not_a_socket_is_refused() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let fd = file.as_raw_fd();
    let mut cmd = selector_command("selector::must_not_run", "fd=3");
    common::give_as_fd_3(&mut cmd, fd);
    let out = cmd.output().unwrap();
    assert_refused(&out, "descriptor 3 is not a socket");
}

/// Runs the selector with a real channel from this process (its parent) over which
/// `bytes` are sent, then the channel is closed.
fn with_channel_sending(bytes: &[u8]) -> Output {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let mut cmd = selector_command("selector::must_not_run", "fd=3");
    common::give_as_fd_3(&mut cmd, fd);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(theirs);
    let mut ours = ours;
    // The child may refuse before reading everything; a broken pipe is fine.
    let _ = ours.write_all(bytes);
    drop(ours);
    child.wait_with_output().unwrap()
}

#[test]
fn a_garbled_bootstrap_is_refused() {
    let mut frame = 8u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0xff; 8]);
    let out = with_channel_sending(&frame);
    assert_refused(&out, "bootstrap record");
}

#[test]
fn a_truncated_bootstrap_is_refused() {
    let mut frame = 100u32.to_le_bytes().to_vec();
    frame.extend_from_slice(b"only ten b");
    let out = with_channel_sending(&frame);
    assert_refused(&out, "truncated");
}

#[test]
fn an_oversized_bootstrap_is_refused_without_allocating() {
    let out = with_channel_sending(&u32::MAX.to_le_bytes());
    assert_refused(&out, "too large");
}

#[test]
fn an_empty_channel_is_refused() {
    let out = with_channel_sending(&[]);
    assert_refused(&out, "closed the channel before the bootstrap");
}

/// A socket at descriptor 3 that is connected to no process (the peer credentials
/// name pid 0) is not the parent's channel: refused with status 2, not taken for a
/// parent that died (which would end the child with SIGKILL, silently).
#[test]
fn a_socket_connected_to_no_process_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let unconnected = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .unwrap();
    for (what, fd) in [
        ("tcp", tcp.as_raw_fd()),
        ("udp", udp.as_raw_fd()),
        ("unconnected unix", unconnected.as_raw_fd()),
    ] {
        let mut cmd = selector_command("selector::must_not_run", "fd=3");
        common::give_as_fd_3(&mut cmd, fd);
        let out = cmd.output().unwrap();
        assert!(
            out.status.code().is_some(),
            "{what}: ended by {:?}, silently",
            out.status
        );
        assert_refused(&out, "not a socket of my parent");
    }
}
