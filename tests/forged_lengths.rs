//! A message that claims more bytes than it holds is an error value, never an
//! allocation of the claimed size: checked on real processes under a 600 MB address
//! space limit (`ulimit -v 600000`), where allocating the 1 GiB a forged length claims
//! would abort the receiver. On the child's side with a forged bootstrap record, on the
//! parent's side with a forged report from its child.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

/// The address space limit of the receivers, as `ulimit -v 600000` sets it.
const ADDRESS_SPACE: u64 = 600_000 * 1024;

/// A length just under 1 GiB (under the old decoding limit), above the address space.
const CLAIMED: u32 = (1 << 30) - 64;

/// bincode's varint of `CLAIMED` (a marker byte, then 4 little-endian bytes): the
/// length of a `String` claiming almost 1 GiB, followed by the 4 bytes really there.
fn forged_string() -> Vec<u8> {
    let mut bytes = vec![0xfc];
    bytes.extend_from_slice(&CLAIMED.to_le_bytes());
    bytes.extend_from_slice(b"abcd");
    bytes
}

/// A frame (4-byte little-endian length, then the bytes) of `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// Limits the address space of the calling process (and of its children).
fn limit_address_space() -> std::io::Result<()> {
    let limit = nix::libc::rlimit {
        rlim_cur: ADDRESS_SPACE,
        rlim_max: ADDRESS_SPACE,
    };
    // SAFETY: setrlimit reads the struct and touches nothing else.
    if unsafe { nix::libc::setrlimit(nix::libc::RLIMIT_AS, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[multiproc::worker]
fn must_not_run() {
    println!("the worker ran");
}

#[test]
fn a_forged_bootstrap_length_is_refused_under_a_memory_limit() {
    // A bootstrap record: the protocol's magic, then a key claiming almost 1 GiB.
    let mut record = vec![0xfc];
    record.extend_from_slice(b"mpc1");
    record.extend(forged_string());

    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--multiproc-child", "forged_lengths::must_not_run", "fd=3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    common::give_as_fd_3(&mut cmd, fd);
    // SAFETY: setrlimit is async-signal-safe; this runs between fork and exec, after
    // the descriptor is in place.
    unsafe { cmd.pre_exec(limit_address_space) };
    let child = cmd.spawn().unwrap();
    drop(theirs);
    // The child may refuse before reading everything; a broken pipe is fine.
    let _ = ours.write_all(&frame(&record));
    drop(ours);
    let out = child.wait_with_output().unwrap();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "signal {:?}, stderr: {stderr}",
        out.status.signal()
    );
    assert!(stderr.contains("bad bootstrap record"), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// The child's end of its bootstrap channel: the descriptor its selector names.
fn report_channel() -> std::os::fd::RawFd {
    std::env::args()
        .find_map(|a| a.strip_prefix("fd=").and_then(|n| n.parse().ok()))
        .expect("a child's selector names its channel")
}

/// Sends `report` (a report kind byte, then its body) as this child's report, in place
/// of the real one, and ends the process at once.
fn forge_report_and_exit(report: &[u8]) -> ! {
    // SAFETY: the descriptor is the channel the runtime keeps open for the report;
    // the bytes are written whole (a frame this small fits the socket's buffer) and
    // the process ends before the runtime could use the channel again.
    unsafe {
        let bytes = frame(report);
        let written = nix::libc::write(report_channel(), bytes.as_ptr().cast(), bytes.len());
        nix::libc::_exit(if written == bytes.len() as isize {
            0
        } else {
            9
        });
    }
}

/// Reports a value that claims to be a string of almost 1 GiB.
#[multiproc::worker]
fn forge_value() -> String {
    let mut report = vec![0]; // a value
    report.extend(forged_string());
    forge_report_and_exit(&report)
}

/// Reports a failure whose message claims to be almost 1 GiB long.
#[multiproc::worker]
fn forge_failure() {
    let mut report = vec![2]; // a failure, with its message
    report.extend(forged_string());
    forge_report_and_exit(&report)
}

#[test]
fn a_forged_report_length_is_an_error_under_a_memory_limit() {
    const NAME: &str = "a_forged_report_length_is_an_error_under_a_memory_limit";
    if common::is_helper(NAME) {
        limit_address_space().unwrap();
        let value = forge_value::spawn().unwrap();
        println!("value: {:?}", value.join_value());
        let failure = forge_failure::spawn().unwrap();
        println!("failure: {:?}", failure.join_value());
        return;
    }
    let out = common::run_helper(NAME);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{:?} (signal {:?}), stderr: {stderr}",
        out.status,
        out.status.signal()
    );
    let lines = common::lines(&out.stdout);
    let value = lines.iter().find(|l| l.starts_with("value: "));
    let failure = lines.iter().find(|l| l.starts_with("failure: "));
    for line in [value, failure] {
        let line = line.unwrap_or_else(|| panic!("{lines:?}"));
        assert!(line.contains("Err(Codec("), "{line}");
        assert!(line.contains("kind: Truncated"), "{line}");
    }
}
