//! Peers that break the protocol on purpose, on real processes: a child maps the same
//! shared memory as the parent (the descriptors cross as worker arguments) and writes
//! what no multiproc process writes, or holds a lock and is stopped with SIGSTOP. Each
//! case ends in a bounded time with an error value that says what happened, and the
//! queue or connection is usable again where the issue asks for it.
//!
//! The offsets written here are those of the regions' documented layouts
//! (`ipc/queue/raw/mod.rs`, `ipc/connection/layout.rs`, `ipc/ring.rs`).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::{Connection, Error, GetTimeoutError, Pipe, Queue, TryGetError, TryPutError};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

// --- the layouts, as documented ---

/// Queue region: the producers' lock, the tail word, the consumers' lock, the head
/// word, the next descriptor batch number, and the data area.
const Q_TX_LOCK: usize = 64;
const Q_TAIL: usize = 128;
const Q_RX_LOCK: usize = 192;
const Q_FD_SEQ: usize = 344;
const Q_DATA: usize = 4096;
/// Pipe region: the tail word of direction 1 (end 1 sends on it) and its data area.
const P_TAIL_DIR1: usize = 384 + 64;
const P_DATA_DIR1: usize = 4096 + (64 << 10);
/// Record kinds.
const PIPE_MSG: u32 = 1;
const Q_INLINE_FDS: u32 = 2;
const Q_SPILL: u32 = 3;

/// A shared mapping of one of this process's memfds.
struct Mapped {
    ptr: *mut u8,
    len: usize,
}

impl Mapped {
    /// Maps the only memfd of this process named `multiproc:{name}`.
    fn find(name: &str) -> Mapped {
        let wanted = format!("/memfd:multiproc:{name} (deleted)");
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
            let entry = entry.expect("a /proc/self/fd entry");
            if std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy() == wanted) {
                let fd: RawFd = entry.file_name().to_string_lossy().parse().expect("fd");
                found.push(fd);
            }
        }
        assert_eq!(found.len(), 1, "memfds named {wanted}: {found:?}");
        let fd = found[0];
        // SAFETY: `fd` is open (just listed) and borrowed only for this call.
        let len = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
            .expect("fstat")
            .st_size as usize;
        // SAFETY: a fresh shared mapping of an open memfd of `len` bytes.
        let ptr = unsafe {
            nix::libc::mmap(
                std::ptr::null_mut(),
                len,
                nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                nix::libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(ptr, nix::libc::MAP_FAILED, "mmap");
        Mapped {
            ptr: ptr.cast(),
            len,
        }
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.len);
        // SAFETY: aligned, inside the mapping, which lives as long as `self`.
        unsafe { &*self.ptr.add(offset).cast::<AtomicU64>() }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset + 4 <= self.len);
        // SAFETY: as in `u64_at`.
        unsafe { &*self.ptr.add(offset).cast::<AtomicU32>() }
    }

    fn write(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.len);
        // SAFETY: inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(offset), bytes.len()) };
    }
}

/// A ring record's 16-byte header.
fn record_header(len: u32, kind: u32, seq: u64) -> [u8; 16] {
    let mut h = [0; 16];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4..8].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h
}

/// Writes a record of `payload` at the tail of the ring at `data` (of `size` bytes)
/// whose tail word is at `tail_at`, and publishes it.
fn forge_record(
    m: &Mapped,
    tail_at: usize,
    data: usize,
    size: usize,
    kind: u32,
    seq: u64,
    payload: &[u8],
) {
    let tail = m.u64_at(tail_at).load(Ordering::SeqCst);
    let (count, pos) = ((tail >> 32) as u32, tail as u32);
    let at = data + (pos as usize & (size - 1));
    m.write(at, &record_header(payload.len() as u32, kind, seq));
    m.write(at + 16, payload);
    let total = (16 + payload.len()).div_ceil(16) as u32 * 16;
    let next = (u64::from(count.wrapping_add(1)) << 32) | u64::from(pos.wrapping_add(total));
    m.u64_at(tail_at).store(next, Ordering::SeqCst);
}

/// Runs `f` on a thread; its result, or `None` if it is still running after `limit`
/// (the thread is left behind: the test fails anyway).
fn bounded<R: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

// --- defect 1: a ring record that can never become due ---

/// Publishes one ring record numbered 5 where 0 is due, then exits (closing its end).
#[multiproc::worker]
fn publish_out_of_turn(conn: Connection<u32>) {
    let m = Mapped::find("pipe");
    forge_record(
        &m,
        P_TAIL_DIR1,
        P_DATA_DIR1,
        64 << 10,
        PIPE_MSG,
        5,
        &7u32.to_le_bytes(),
    );
    drop(conn);
}

#[test]
fn a_ring_record_out_of_turn_from_a_peer_that_left_is_an_error_then_disconnected() {
    let (ours, theirs) = Pipe::<u32>::new().unwrap();
    let child = publish_out_of_turn::spawn(theirs).unwrap();
    assert_eq!(child.join().unwrap(), 0);
    let start = Instant::now();
    let outcome = bounded(Duration::from_secs(10), move || {
        let first = ours.recv_timeout(Duration::from_secs(2));
        let second = ours.recv_timeout(Duration::from_secs(2));
        (first, second)
    })
    .expect("recv_timeout(2 s) did not return within 10 s");
    match outcome.0 {
        Err(multiproc::RecvTimeoutError::Failed(e)) => {
            assert!(
                e.to_string().contains("message number 5 where 0 was due"),
                "{e}"
            );
        }
        other => panic!("first receive: {other:?}"),
    }
    assert!(
        matches!(outcome.1, Err(multiproc::RecvTimeoutError::Disconnected)),
        "second receive: {:?}",
        outcome.1
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

// --- defect 2: try_ forms and a stopped lock holder ---

/// Takes the queue's consumer or producer lock as a process does (its pid in the lock
/// word), says so, and sleeps holding it.
#[multiproc::worker]
fn hold_lock(q: Queue<u64>, consumer: bool, ready: Connection<u32>) {
    let m = Mapped::find("Queue");
    let word = m.u32_at(if consumer { Q_RX_LOCK } else { Q_TX_LOCK });
    while word
        .compare_exchange(0, std::process::id(), Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    ready.send(1).unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(q);
}

#[test]
fn try_forms_do_not_wait_for_a_stopped_lock_holder() {
    for consumer in [true, false] {
        let q: Queue<u64> = Queue::builder().capacity(1).build().unwrap();
        if !consumer {
            // Full, so that a `put` that got the lock would find no room either way.
            q.put(1).unwrap();
        }
        let (ours, theirs) = Pipe::<u32>::new().unwrap();
        let holder = hold_lock::spawn(q.clone(), consumer, theirs).unwrap();
        assert_eq!(ours.recv_timeout(Duration::from_secs(30)).unwrap(), 1);
        let pid = Pid::from_raw(holder.pid().unwrap() as i32);
        kill(pid, Signal::SIGSTOP).unwrap();

        let q2 = q.clone();
        let timings = bounded(Duration::from_secs(10), move || {
            let start = Instant::now();
            let tried = if consumer {
                matches!(q2.try_get(), Err(TryGetError::Empty))
            } else {
                matches!(q2.try_put(2), Err(TryPutError::Full(2)))
            };
            let tried_in = start.elapsed();
            let start = Instant::now();
            let timed = if consumer {
                matches!(
                    q2.get_timeout(Duration::from_millis(300)),
                    Err(GetTimeoutError::Timeout)
                )
            } else {
                matches!(
                    q2.put_timeout(2, Duration::from_millis(300)),
                    Err(multiproc::PutTimeoutError::Timeout(2))
                )
            };
            (tried, tried_in, timed, start.elapsed())
        });
        kill(pid, Signal::SIGCONT).unwrap();
        holder.kill().unwrap();
        holder.join().unwrap();
        let (tried, tried_in, timed, timed_in) =
            timings.expect("a try_ form waited for the stopped holder (10 s)");
        let what = if consumer { "try_get" } else { "try_put" };
        assert!(tried, "{what} did not report Empty/Full");
        assert!(
            tried_in < Duration::from_millis(250),
            "{what} took {tried_in:?}"
        );
        assert!(timed, "the _timeout form did not time out");
        assert!(
            (Duration::from_millis(300)..Duration::from_secs(2)).contains(&timed_in),
            "the _timeout form took {timed_in:?}"
        );
    }
}

// --- defect 4: an unaligned tail word ---

/// Moves the queue's tail word by 8 bytes, as no multiproc process does.
#[multiproc::worker]
fn misalign_tail(q: Queue<u64>) {
    let m = Mapped::find("Queue");
    m.u64_at(Q_TAIL).fetch_add(8, Ordering::SeqCst);
    drop(q);
}

fn is_corrupt(e: &Error, needle: &str) -> bool {
    matches!(e, Error::Channel(multiproc::ChannelError::Corrupt(what)) if what.what().contains(needle))
}

#[test]
fn a_queue_recovers_from_an_unaligned_tail_and_counts_what_it_dropped() {
    // Found by a get.
    let q: Queue<u64> = Queue::builder().buffer_size(4096).build().unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    assert_eq!(misalign_tail::spawn(q.clone()).unwrap().join().unwrap(), 0);
    match q.get_timeout(Duration::from_secs(2)) {
        Err(GetTimeoutError::Failed(e)) => assert!(is_corrupt(&e, "3 items dropped"), "{e}"),
        other => panic!("{other:?}"),
    }
    for round in 0..100u64 {
        q.put(round).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(2)).unwrap(), round);
    }
    assert!(q.is_empty());

    // Found by a put: it reports the loss, gives the item back, and the queue works.
    let q: Queue<u64> = Queue::builder().buffer_size(4096).build().unwrap();
    q.put(10).unwrap();
    assert_eq!(misalign_tail::spawn(q.clone()).unwrap().join().unwrap(), 0);
    match q.put_timeout(11, Duration::from_secs(2)) {
        Err(multiproc::PutTimeoutError::Failed(11, e)) => {
            assert!(is_corrupt(&e, "1 item dropped"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    for round in 0..100u64 {
        q.put(round).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(2)).unwrap(), round);
    }
}

// --- defects 6 and 7: records whose descriptors are missing or hostile ---

/// Publishes a record that names descriptor batch 999, which was never sent.
#[multiproc::worker]
fn record_without_its_batch(q: Queue<u64>) {
    let m = Mapped::find("Queue");
    forge_record(&m, Q_TAIL, Q_DATA, 4096, Q_INLINE_FDS, 999, &[5]);
    drop(q);
}

#[test]
fn a_record_whose_descriptors_are_missing_is_an_error_not_an_empty_queue() {
    let q: Queue<u64> = Queue::builder().buffer_size(4096).build().unwrap();
    assert_eq!(
        record_without_its_batch::spawn(q.clone())
            .unwrap()
            .join()
            .unwrap(),
        0
    );
    let start = Instant::now();
    match q.get_timeout(Duration::from_secs(2)) {
        Err(GetTimeoutError::Failed(e)) => {
            assert!(is_corrupt(&e, "descriptors"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    q.put(3).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(2)).unwrap(), 3);
}

/// The courier's sending end: of this process's two `SOCK_SEQPACKET` sockets, the one
/// with nothing to read (the caller queued an item with a handle, whose batch waits
/// in the receiving end).
fn courier_tx() -> OwnedFd {
    let mut seqpackets = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let entry = entry.expect("an entry");
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        // SAFETY: borrowed for a getsockopt right away; EBADF/ENOTSOCK are errors.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if nix::sys::socket::getsockopt(&b, nix::sys::socket::sockopt::SockType)
            .is_ok_and(|t| t == nix::sys::socket::SockType::SeqPacket)
        {
            let mut pending: nix::libc::c_int = 0;
            // SAFETY: FIONREAD writes one int.
            assert_eq!(
                unsafe { nix::libc::ioctl(fd, nix::libc::FIONREAD, &mut pending) },
                0
            );
            seqpackets.push((fd, pending));
        }
    }
    assert_eq!(seqpackets.len(), 2, "{seqpackets:?}");
    let tx: Vec<RawFd> = seqpackets
        .iter()
        .filter(|(_, p)| *p == 0)
        .map(|(fd, _)| *fd)
        .collect();
    assert_eq!(tx.len(), 1, "{seqpackets:?}");
    // SAFETY: dup of an open descriptor.
    let dup = unsafe { nix::libc::dup(tx[0]) };
    assert!(dup >= 0, "dup: {}", std::io::Error::last_os_error());
    // SAFETY: a new descriptor, owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(dup) }
}

/// Publishes a spilled item of 1 GiB whose memory is a sparse memfd (sealed as the
/// real ones are), then exits: a dead peer's spill.
#[multiproc::worker]
fn sparse_spill(q: Queue<Option<Queue<u8>>>) {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    const GIB: usize = 1 << 30;
    let m = Mapped::find("Queue");
    let memfd = memfd_create(c"multiproc:queue-item", MFdFlags::MFD_ALLOW_SEALING).unwrap();
    nix::unistd::ftruncate(&memfd, GIB as i64).unwrap();
    fcntl(
        &memfd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
        ),
    )
    .unwrap();
    let tx = courier_tx();
    let seq = m.u64_at(Q_FD_SEQ).fetch_add(1, Ordering::SeqCst);
    let bytes = seq.to_le_bytes();
    let fds = [memfd.as_raw_fd()];
    sendmsg::<()>(
        tx.as_fd().as_raw_fd(),
        &[std::io::IoSlice::new(&bytes)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .unwrap();
    forge_record(
        &m,
        Q_TAIL,
        Q_DATA,
        4096,
        Q_SPILL,
        seq,
        &(GIB as u64).to_le_bytes(),
    );
    drop(q);
}

/// Publishes a spilled item of 64 KiB whose memory is a whole (no holes) memfd of
/// `size` bytes, sealed against resizing only if `sealed`, then exits: a forged spill
/// that a reader must refuse (memory that could shrink under it, or that is not the
/// size announced).
#[multiproc::worker]
fn forged_spill(q: Queue<Option<Queue<u8>>>, size: usize, sealed: bool) {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    const ANNOUNCED: u64 = 64 << 10;
    let m = Mapped::find("Queue");
    let memfd = memfd_create(c"multiproc:queue-item", MFdFlags::MFD_ALLOW_SEALING).unwrap();
    nix::unistd::write(&memfd, &vec![7u8; size]).unwrap();
    if sealed {
        fcntl(
            &memfd,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE,
            ),
        )
        .unwrap();
    }
    let tx = courier_tx();
    let seq = m.u64_at(Q_FD_SEQ).fetch_add(1, Ordering::SeqCst);
    let bytes = seq.to_le_bytes();
    let fds = [memfd.as_raw_fd()];
    sendmsg::<()>(
        tx.as_fd().as_raw_fd(),
        &[std::io::IoSlice::new(&bytes)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .unwrap();
    forge_record(
        &m,
        Q_TAIL,
        Q_DATA,
        4096,
        Q_SPILL,
        seq,
        &ANNOUNCED.to_le_bytes(),
    );
    drop(q);
}

#[test]
fn a_spill_that_could_shrink_or_is_not_its_announced_size_is_refused() {
    // Unsealed (it could be shrunk under the reader), smaller than announced (as if
    // shrunk), larger than announced.
    for (size, sealed, needle) in [
        (64 << 10, false, "not sealed"),
        (32 << 10, true, "announced as"),
        (128 << 10, true, "announced as"),
    ] {
        let q: Queue<Option<Queue<u8>>> = Queue::builder().buffer_size(4096).build().unwrap();
        let probe: Queue<u8> = Queue::new().unwrap();
        q.put(Some(probe)).unwrap();
        let forger = forged_spill::spawn(q.clone(), size, sealed).unwrap();
        assert_eq!(forger.join().unwrap(), 0);
        assert!(matches!(q.get_timeout(Duration::from_secs(2)), Ok(Some(_))));
        match q.get_timeout(Duration::from_secs(2)) {
            Err(GetTimeoutError::Failed(e)) => {
                assert!(is_corrupt(&e, needle), "{size} bytes, sealed {sealed}: {e}")
            }
            other => panic!("{size} bytes, sealed {sealed}: {other:?}"),
        }
        // The queue goes on.
        q.put(None).unwrap();
        assert!(matches!(q.get_timeout(Duration::from_secs(2)), Ok(None)));
    }
}

fn max_rss_kib() -> i64 {
    // SAFETY: `rusage` is plain integers, valid when zeroed.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        // SAFETY: getrusage fills the struct it is given.
        unsafe { nix::libc::getrusage(nix::libc::RUSAGE_SELF, &mut usage) },
        0
    );
    usage.ru_maxrss
}

#[test]
fn a_sparse_spill_of_a_dead_peer_is_refused_before_copying() {
    let q: Queue<Option<Queue<u8>>> = Queue::builder().buffer_size(4096).build().unwrap();
    let probe: Queue<u8> = Queue::new().unwrap();
    // A real item with a handle: its batch tells the forger which courier end is which.
    q.put(Some(probe)).unwrap();
    assert_eq!(sparse_spill::spawn(q.clone()).unwrap().join().unwrap(), 0);
    assert!(matches!(q.get_timeout(Duration::from_secs(2)), Ok(Some(_))));
    let rss_before = max_rss_kib();
    let start = Instant::now();
    match q.get_timeout(Duration::from_secs(2)) {
        Err(GetTimeoutError::Failed(e)) => assert!(is_corrupt(&e, "spilled"), "{e}"),
        other => panic!("{other:?}"),
    }
    let took = start.elapsed();
    let grew = max_rss_kib() - rss_before;
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert!(grew < 100 << 10, "the peak RSS grew by {grew} KiB");
    q.put(None).unwrap();
    assert!(matches!(q.get_timeout(Duration::from_secs(2)), Ok(None)));
}
