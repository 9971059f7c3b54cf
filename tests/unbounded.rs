//! Unbounded queues are unbounded in bytes too, as Python's `Queue()`: a child puts far
//! more than the queue's 4 MiB buffer with nobody reading, and exits; every item is
//! then read in order. The queue's shared memory grows with the unread items and
//! shrinks back as they are read (measured in a process that holds only that queue).
//! Bounded queues keep their bound.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use multiproc::{JoinableQueue, Queue, SimpleQueue};
use serde_bytes::ByteBuf;

/// Bytes per item: inline in the ring (under half its 4 MiB buffer).
const ITEM: usize = 256 << 10;
/// Items a child puts: 72 MiB, 18 times the buffer.
const ITEMS: u32 = 288;

/// Item `i` (`len` is at least 8): its number at both ends, and a byte that
/// depends on it between.
fn item(i: u32, len: usize) -> ByteBuf {
    let mut bytes = vec![(i % 251) as u8; len];
    bytes[..4].copy_from_slice(&i.to_le_bytes());
    bytes[len - 4..].copy_from_slice(&i.to_le_bytes());
    ByteBuf::from(bytes)
}

/// Whether `got` is item `i` of `len` bytes, with a message if not.
fn check(i: u32, len: usize, got: &[u8]) -> Result<(), String> {
    if got == item(i, len).as_slice() {
        Ok(())
    } else {
        let number = got
            .get(..4)
            .map(|n| u32::from_le_bytes([n[0], n[1], n[2], n[3]]));
        Err(format!(
            "item {i}: got {} bytes numbered {number:?}",
            got.len()
        ))
    }
}

#[multiproc::worker]
fn put_items(q: Queue<ByteBuf>, n: u32, len: usize) -> Result<(), String> {
    for i in 0..n {
        q.put(item(i, len)).map_err(|e| format!("put {i}: {e}"))?;
    }
    Ok(())
}

#[multiproc::worker]
fn put_joinable(q: JoinableQueue<ByteBuf>, n: u32, len: usize) -> Result<(), String> {
    for i in 0..n {
        q.put(item(i, len)).map_err(|e| format!("put {i}: {e}"))?;
    }
    Ok(())
}

#[multiproc::worker]
fn put_simple(q: SimpleQueue<ByteBuf>, n: u32, len: usize) -> Result<(), String> {
    for i in 0..n {
        q.put(item(i, len)).map_err(|e| format!("put {i}: {e}"))?;
    }
    Ok(())
}

/// The memory (allocated blocks) of the one queue region this process holds, found
/// among its descriptors by the name the runtime gives it.
fn queue_memory() -> Result<u64, String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Ok(target) = std::fs::read_link(&path) else {
            continue;
        };
        if target
            .to_string_lossy()
            .starts_with("/memfd:multiproc:Queue")
        {
            let meta = std::fs::metadata(&path).map_err(|e| e.to_string())?;
            found.push(meta.blocks() * 512);
        }
    }
    match found[..] {
        [bytes] => Ok(bytes),
        _ => Err(format!("{} queue regions in this process", found.len())),
    }
}

/// What a drain measured: the queue's memory before reading, after half, after all.
type Memory = (u64, u64, u64);

/// Reads `n` items of `len` bytes in order, measuring the queue's memory on the way.
#[multiproc::worker]
fn drain_and_measure(q: Queue<ByteBuf>, n: u32, len: usize) -> Result<Memory, String> {
    let before = queue_memory()?;
    let mut half = 0;
    for i in 0..n {
        if i == n / 2 {
            half = queue_memory()?;
        }
        let got = q
            .get_timeout(Duration::from_secs(30))
            .map_err(|e| format!("get {i}: {e}"))?;
        check(i, len, &got)?;
    }
    if !q.is_empty() {
        return Err(format!("{} items left", q.qsize()));
    }
    // The consumer that finds the queue empty rewinds it and gives the rest back.
    match q.try_get() {
        Err(e) if e.is_empty() => {}
        other => return Err(format!("an item more: {other:?}")),
    }
    Ok((before, half, queue_memory()?))
}

#[test]
fn a_child_puts_far_more_than_the_buffer_with_nobody_reading_and_exits() {
    let q: Queue<ByteBuf> = Queue::new().unwrap();
    let p = put_items::spawn(q.clone(), ITEMS, ITEM).unwrap();
    // The child's puts all return before anyone reads: it exits on its own.
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(0));
    assert_eq!(q.qsize(), ITEMS as usize);
    for i in 0..ITEMS {
        let got = q.try_get().unwrap();
        check(i, ITEM, &got).unwrap();
    }
    assert!(q.try_get().unwrap_err().is_empty());
    // And it goes on as a queue.
    q.put(item(7, 10)).unwrap();
    check(7, 10, &q.get().unwrap()).unwrap();
}

#[test]
fn memory_grows_with_unread_items_and_shrinks_back_as_they_are_read() {
    let q: Queue<ByteBuf> = Queue::new().unwrap();
    let p = put_items::spawn(q.clone(), ITEMS, ITEM).unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(0));
    // Read in another process, which holds no other queue, so that it can find this
    // one's memory among its descriptors.
    let reader = drain_and_measure::spawn(q.clone(), ITEMS, ITEM).unwrap();
    let (before, half, after) = reader.join_value().unwrap();
    let total = u64::from(ITEMS) * ITEM as u64;
    eprintln!("queue memory: {before} bytes unread, {half} after half, {after} once empty");
    assert!(before >= total, "{before} bytes held for {total} unread");
    assert!(
        half <= before - total / 3,
        "{half} bytes held after reading half of {before}"
    );
    // The resident part (the 4 MiB buffer) and the header page at most.
    assert!(after <= (4 << 20) + 4096, "{after} bytes held once empty");
}

#[test]
fn a_bounded_queue_keeps_its_bound() {
    let q: Queue<ByteBuf> = Queue::with_capacity(3).unwrap();
    for i in 0..3 {
        q.try_put(item(i, ITEM)).unwrap();
    }
    assert!(q.is_full());
    assert!(q.try_put(item(3, ITEM)).unwrap_err().is_full());
    let err = q
        .put_timeout(item(3, ITEM), Duration::from_millis(20))
        .unwrap_err();
    assert!(err.is_timeout());
    check(0, ITEM, &q.get().unwrap()).unwrap();
    q.try_put(item(3, ITEM)).unwrap();

    // A capacity in items keeps the buffer's bound in bytes too, as before.
    let q: Queue<ByteBuf> = Queue::builder()
        .capacity(1000)
        .buffer_size(1 << 20)
        .build()
        .unwrap();
    let mut put = 0;
    while q.try_put(item(put, 100 << 10)).is_ok() {
        put += 1;
        assert!(put < 100, "a 1 MiB buffer took {put} items of 100 KiB");
    }
    assert!(put >= 5, "{put}");
}

#[test]
fn joinable_and_simple_queues_grow_the_same() {
    let n = ITEMS / 3;
    let q: JoinableQueue<ByteBuf> = JoinableQueue::new().unwrap();
    let p = put_joinable::spawn(q.clone(), n, ITEM).unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(0));
    for i in 0..n {
        check(i, ITEM, &q.get().unwrap()).unwrap();
        q.task_done().unwrap();
    }
    assert!(q.join_timeout(Duration::from_secs(10)));

    let q: SimpleQueue<ByteBuf> = SimpleQueue::new().unwrap();
    let p = put_simple::spawn(q.clone(), n, ITEM).unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(0));
    for i in 0..n {
        check(i, ITEM, &q.get().unwrap()).unwrap();
    }
    assert!(q.is_empty());
}

/// The address space limit of the helper below: 1.5 GiB, more than the test binary
/// maps, less than a few 1 GiB rings.
const ADDRESS_SPACE: u64 = 3 << 29;

/// Limits the address space of the calling process.
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

#[test]
fn under_an_address_space_limit_the_ring_is_smaller_and_still_grows() {
    const NAME: &str = "under_an_address_space_limit_the_ring_is_smaller_and_still_grows";
    if common::is_helper(NAME) {
        // Under the limit: fill an unbounded queue until it says full, then read it.
        let q: Queue<ByteBuf> = Queue::new().unwrap();
        let mut put = 0;
        while put < 8192 && q.try_put(item(put, ITEM)).is_ok() {
            put += 1;
        }
        for i in 0..put {
            check(i, ITEM, &q.try_get().unwrap()).unwrap();
        }
        println!("put {put}");
        return;
    }
    let mut cmd = common::helper_command(NAME);
    // SAFETY: setrlimit is async-signal-safe; this runs between fork and exec.
    unsafe { cmd.pre_exec(limit_address_space) };
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    let lines = common::lines(&out.stdout);
    let put: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("put ")?.parse().ok())
        .unwrap_or_else(|| panic!("no count in {lines:?}; {stderr}"));
    eprintln!("{put} items of {ITEM} bytes before full under a {ADDRESS_SPACE}-byte limit");
    // More than the 4 MiB buffer: it grew; less than the 1 GiB ring it has without
    // the limit: the limit chose a smaller one.
    assert!(put * ITEM > 16 << 20, "only {put} items");
    assert!(put * ITEM < 1 << 30, "{put} items under a 1.5 GiB limit");
}
