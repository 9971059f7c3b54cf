//! `SharedMemory` and `ShareableList` on real processes: blocks created in a child and
//! opened by name in an unrelated process, typed views, the errors Python raises, and
//! the tracker: a tracked block is removed once its creator and every descendant are
//! gone (SIGKILL of the whole tree included), an untracked one stays until unlinked.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, helper_command, is_helper};
use multiproc::{Event, Item, Queue, ShareableList, SharedMemory, SharedMemoryError};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long the tracker gets to remove a block once its last holder is gone: generous,
/// the machine is shared; the test polls and ends as soon as the block is gone.
const CLEANUP: Duration = Duration::from_secs(30);

const NAME_ENV: &str = "MULTIPROC_TEST_SHM_NAME";

fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// Creates a tracked block of 4096 `u64`s holding `3 * i`, reports its name, and holds
/// it until `done` is set.
#[multiproc::worker]
fn create_and_hold(report: Queue<String>, done: Event) -> multiproc::Result<()> {
    let mut shm = SharedMemory::create(4096 * 8)?;
    for (i, x) in shm.as_mut_slice::<u64>().iter_mut().enumerate() {
        *x = 3 * i as u64;
    }
    report.put(shm.name().to_owned())?;
    done.wait();
    Ok(())
}

#[test]
fn a_block_created_in_a_child_is_opened_by_an_unrelated_process() {
    let report = Queue::new().unwrap();
    let done = Event::new().unwrap();
    let child = create_and_hold::spawn(report.clone(), done.clone()).unwrap();
    let name = report.get().unwrap();
    assert!(exists(&name), "{name} is not in /dev/shm");

    let out = helper_command("unrelated_process")
        .env(NAME_ENV, &name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the unrelated process failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the unrelated process wrote is in the block.
    let shm = SharedMemory::open(&name).unwrap();
    let mut word = [0u8; 8];
    shm.read(0, &mut word).unwrap();
    assert_eq!(u64::from_ne_bytes(word), 0xfeed);
    drop(shm);

    done.set();
    assert_eq!(child.join().unwrap(), 0);
    // The creator ended and had no other descendant: its tracker removes the block.
    assert!(
        eventually(CLEANUP, || !exists(&name)),
        "{name} was left behind"
    );
}

/// The unrelated process: a separate run of this test binary, which opens the block by
/// the name in its environment, checks it through a typed view and writes to it.
#[test]
fn unrelated_process() {
    if !is_helper("unrelated_process") {
        return;
    }
    let name = std::env::var(NAME_ENV).unwrap();
    let shm = SharedMemory::open(&name).unwrap();
    assert_eq!(shm.name(), name);
    assert_eq!(shm.size(), 4096 * 8);
    let view = shm.as_slice::<u64>();
    assert_eq!(view.len(), 4096);
    assert!(view.iter().enumerate().all(|(i, x)| *x == 3 * i as u64));
    shm.write(0, &0xfeedu64.to_ne_bytes()).unwrap();
}

/// Sums the block `name` as `f64`s, through a typed view (no copy).
#[multiproc::worker]
fn sum_block(name: String) -> Result<f64, String> {
    let shm = SharedMemory::open(&name).map_err(|e| e.to_string())?;
    Ok(shm.as_slice::<f64>().iter().sum())
}

#[test]
fn typed_views_reach_workers_without_a_copy() {
    let mut shm = SharedMemory::create(1000 * 8 + 5).unwrap();
    let view = shm.as_mut_slice::<f64>();
    assert_eq!(view.len(), 1000, "the 5 trailing bytes make no f64");
    for (i, x) in view.iter_mut().enumerate() {
        *x = i as f64 * 0.5;
    }
    let expected: f64 = shm.as_slice::<f64>().iter().sum();
    let workers: Vec<_> = (0..3)
        .map(|_| sum_block::spawn(shm.name().to_owned()).unwrap())
        .collect();
    for w in workers {
        assert_eq!(w.join_value().unwrap(), expected);
    }
    // A struct view of the same bytes.
    #[derive(Clone, Copy, multiproc::Plain)]
    #[repr(C)]
    struct Pair {
        a: f64,
        b: f64,
    }
    let pairs = shm.as_slice::<Pair>();
    assert_eq!(pairs.len(), 500);
    assert_eq!((pairs[1].a, pairs[1].b), (1.0, 1.5));
    shm.unlink().unwrap();
}

#[test]
fn errors_follow_python() {
    let missing = format!("mp_test_missing_{}", std::process::id());
    let e = SharedMemory::open(&missing).unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert!(matches!(
        SharedMemory::create(0).unwrap_err(),
        SharedMemoryError::ZeroSize
    ));
    for bad in ["", "a/b", "/", "x\0y"] {
        assert!(
            matches!(
                SharedMemory::builder(8).name(bad).create().unwrap_err(),
                SharedMemoryError::InvalidName(_)
            ),
            "{bad:?}"
        );
    }

    let shm = SharedMemory::create(100).unwrap();
    assert!(shm.name().starts_with("psm_"), "{}", shm.name());
    assert_eq!(shm.size(), 100);
    // The same name again, with or without the leading slash: Python's FileExistsError.
    for name in [shm.name().to_owned(), format!("/{}", shm.name())] {
        let e = SharedMemory::builder(10).name(&name).create().unwrap_err();
        assert!(e.is_exists(), "{e:?}");
    }
    // The refused creation did not unregister or remove the block.
    assert!(exists(shm.name()));

    let e = shm.write(96, b"12345").unwrap_err();
    assert!(
        matches!(
            e,
            SharedMemoryError::OutOfRange {
                offset: 96,
                len: 5,
                size: 100
            }
        ),
        "{e:?}"
    );
    assert!(
        shm.read(usize::MAX, &mut [0u8; 2])
            .unwrap_err()
            .is_out_of_range()
    );
    shm.write(95, b"12345").unwrap();
    let mut buf = [0u8; 5];
    shm.read(95, &mut buf).unwrap();
    assert_eq!(&buf, b"12345");
    let err: multiproc::Error = SharedMemoryError::ZeroSize.into();
    assert!(matches!(err, multiproc::Error::SharedMemory(_)));

    shm.unlink().unwrap();
    assert!(SharedMemory::open(shm.name()).unwrap_err().is_not_found());
    assert!(shm.unlink().unwrap_err().is_not_found());
    // Still attached after the unlink: the mapping stays.
    shm.read(95, &mut buf).unwrap();
    assert_eq!(&buf, b"12345");
}

#[test]
fn close_detaches_only_this_handle() {
    let name = format!("mp_test_close_{}", std::process::id());
    let shm = SharedMemory::builder(64).name(&name).create().unwrap();
    assert_eq!(shm.name(), name);
    let other = SharedMemory::open(&format!("/{name}")).unwrap();
    shm.write(0, b"still here").unwrap();
    shm.close();
    let mut buf = [0u8; 10];
    other.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"still here");
    assert!(exists(&name), "close removed the block");
    other.unlink().unwrap();
    assert!(!exists(&name));
}

/// Creates a tracked block, starts a multiproc grandchild and a `sleep` (both hold the
/// tracker's socket), reports the name and their pids, and waits to be killed.
#[multiproc::worker]
fn create_with_descendants(report: Queue<(String, u32)>) -> multiproc::Result<()> {
    let shm = SharedMemory::create(4096)?;
    shm.write(0, b"tree")?;
    let grandchild = idle::spawn()?;
    let sleeper = std::process::Command::new("sleep").arg("120").spawn()?;
    report.put((shm.name().to_owned(), sleeper.id()))?;
    grandchild.join()?;
    Ok(())
}

#[multiproc::worker]
fn idle() {
    std::thread::sleep(Duration::from_secs(120));
}

/// Every descendant of `pid`, from `/proc/<pid>/task/*/children`.
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                out.push(child);
                todo.push(child);
            }
        }
    }
    out
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn sigkill_of_the_whole_creator_tree_removes_the_block() {
    let report = Queue::new().unwrap();
    let creator = create_with_descendants::spawn(report.clone()).unwrap();
    let (name, sleeper) = report.get().unwrap();
    assert!(exists(&name));
    let root = creator.pid().unwrap() as i32;
    let tree = descendants(root);
    assert!(tree.contains(&(sleeper as i32)), "{tree:?}");
    assert!(tree.len() >= 2, "the grandchild and the sleep: {tree:?}");
    // The tracker is nowhere in the tree that a tree-kill walks.
    for pid in &tree {
        assert!(!cmdline(*pid).contains("--multiproc-shm-tracker"), "{pid}");
    }
    for pid in std::iter::once(root).chain(tree) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert_eq!(creator.join().unwrap(), -9);
    assert!(
        eventually(CLEANUP, || !exists(&name)),
        "{name} outlived its creator's whole tree"
    );
}

#[test]
fn a_living_descendant_keeps_a_tracked_block() {
    let report = Queue::new().unwrap();
    let creator = create_with_descendants::spawn(report.clone()).unwrap();
    let (name, sleeper) = report.get().unwrap();
    // The creator (and its multiproc grandchild, which ends with it) killed: the
    // `sleep` it started still holds the tracker's socket.
    creator.kill().unwrap();
    assert_eq!(creator.join().unwrap(), -9);
    let shm = SharedMemory::open(&name).unwrap();
    let mut buf = [0u8; 4];
    shm.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"tree");
    // The last descendant gone, the block goes.
    kill(Pid::from_raw(sleeper as i32), Signal::SIGKILL).unwrap();
    assert!(
        eventually(CLEANUP, || !exists(&name)),
        "{name} outlived the last descendant"
    );
    // This handle still maps it.
    shm.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"tree");
}

/// Creates one tracked and one untracked block, and returns their names.
#[multiproc::worker]
fn create_tracked_and_untracked() -> Result<(String, String), String> {
    let tracked = SharedMemory::create(64).map_err(|e| e.to_string())?;
    let untracked = SharedMemory::builder(64)
        .track(false)
        .create()
        .map_err(|e| e.to_string())?;
    untracked.write(0, b"kept").map_err(|e| e.to_string())?;
    Ok((tracked.name().to_owned(), untracked.name().to_owned()))
}

#[test]
fn an_untracked_block_stays_until_unlinked() {
    let (tracked, untracked) = create_tracked_and_untracked::spawn()
        .unwrap()
        .join_value()
        .unwrap();
    // Once the tracker removed the tracked block, it is done: the other one stays.
    assert!(eventually(CLEANUP, || !exists(&tracked)));
    assert!(exists(&untracked));
    let shm = SharedMemory::open(&untracked).unwrap();
    let mut buf = [0u8; 4];
    shm.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"kept");
    shm.unlink().unwrap();
    assert!(!exists(&untracked));
}

/// Opens the list `name`, changes it, and returns what it read first.
#[multiproc::worker]
fn edit_list(name: String) -> Result<Vec<Item>, String> {
    let list = ShareableList::open(&name).map_err(|e| e.to_string())?;
    let seen = list.to_vec().map_err(|e| e.to_string())?;
    list.set(0, 42i64).map_err(|e| e.to_string())?;
    list.set(1, "hi").map_err(|e| e.to_string())?;
    list.set(2, Item::Bytes(b"\0x\0".to_vec()))
        .map_err(|e| e.to_string())?;
    list.set(4, Item::None).map_err(|e| e.to_string())?;
    Ok(seen)
}

#[test]
fn a_shareable_list_crosses_processes() {
    let items = vec![
        Item::Int(-7),
        Item::from("howdy"),
        Item::Bytes(b"ABCDEFGHI".to_vec()),
        Item::Float(2.5),
        Item::Bool(true),
        Item::None,
    ];
    let list = ShareableList::new(items.clone()).unwrap();
    assert_eq!(list.len(), 6);
    assert_eq!(list.format().unwrap(), "q8s16sdxxxxxxx?xxxxxx?x");
    let seen = edit_list::spawn(list.name().to_owned())
        .unwrap()
        .join_value()
        .unwrap();
    assert_eq!(seen, items);
    assert_eq!(list.get(0).unwrap(), Item::Int(42));
    assert_eq!(list.get(1).unwrap(), Item::Str("hi".into()));
    assert_eq!(list.get(2).unwrap(), Item::Bytes(b"\0x\0".to_vec()));
    assert_eq!(list.count(&Item::None).unwrap(), 2);
    assert_eq!(list.index(&Item::None).unwrap(), 4);
    assert!(matches!(
        list.index(&Item::Int(-7)).unwrap_err(),
        SharedMemoryError::NotInList
    ));
    // A slot keeps its capacity: 8 bytes for a number, 16 for the 9-byte string.
    list.set(3, "eight ch").unwrap();
    assert!(matches!(
        list.set(3, "nine char").unwrap_err(),
        SharedMemoryError::TooLong {
            index: 3,
            len: 9,
            capacity: 8
        }
    ));
    assert_eq!(list.get(3).unwrap(), Item::Str("eight ch".into()));
    assert!(matches!(
        list.get(6).unwrap_err(),
        SharedMemoryError::Index { index: 6, len: 6 }
    ));
    list.shm().unlink().unwrap();
}

#[test]
fn a_block_that_holds_no_list_is_refused() {
    let shm = SharedMemory::create(64).unwrap();
    shm.write(0, b"not a list").unwrap();
    assert!(matches!(
        ShareableList::open(shm.name()).unwrap_err(),
        SharedMemoryError::Corrupt(_)
    ));
    // A list whose slot count is forged past the block's end.
    let list = ShareableList::new([1i64, 2]).unwrap();
    let forged = SharedMemory::open(list.name()).unwrap();
    forged.write(8, &u64::MAX.to_ne_bytes()).unwrap();
    assert!(matches!(
        ShareableList::open(list.name()).unwrap_err(),
        SharedMemoryError::Corrupt(_)
    ));
    // A slot whose length is forged past its capacity, seen by a list already open.
    forged
        .write(16, &(2u64 | 1000 << 32).to_ne_bytes())
        .unwrap();
    assert!(matches!(
        list.get(0).unwrap_err(),
        SharedMemoryError::Corrupt(_)
    ));
    shm.unlink().unwrap();
    list.shm().unlink().unwrap();
}

/// Reads the block and the list it is given, which crossed as their names.
#[multiproc::worker]
fn read_handles(shm: SharedMemory, list: ShareableList) -> Result<(Vec<u8>, Item), String> {
    let mut buf = vec![0u8; 5];
    shm.read(0, &mut buf).map_err(|e| e.to_string())?;
    Ok((buf, list.get(0).map_err(|e| e.to_string())?))
}

#[test]
fn handles_cross_as_their_names() {
    let shm = SharedMemory::create(16).unwrap();
    shm.write(0, b"named").unwrap();
    let list = ShareableList::new(["first"]).unwrap();
    let (bytes, item) = read_handles::spawn(
        SharedMemory::open(shm.name()).unwrap(),
        ShareableList::open(list.name()).unwrap(),
    )
    .unwrap()
    .join_value()
    .unwrap();
    assert_eq!(bytes, b"named");
    assert_eq!(item, Item::Str("first".into()));
    // Unlinked before it arrives: the receiver cannot attach, an error value.
    let gone = SharedMemory::open(shm.name()).unwrap();
    shm.unlink().unwrap();
    let list_handle = ShareableList::open(list.name()).unwrap();
    let e = read_handles::spawn(gone, list_handle)
        .unwrap()
        .join_value()
        .unwrap_err();
    assert!(e.to_string().contains("no shared memory block"), "{e}");
    list.shm().unlink().unwrap();
}

/// Typed views take derived structs of numbers, and refuse (at compile time) those that
/// hold a `bool` or a `char`: what the derive computes for them.
#[test]
fn the_derive_tells_which_structs_a_view_takes() {
    use multiproc::Plain;
    #[derive(Clone, Copy, multiproc::Plain)]
    #[repr(C)]
    struct Numbers {
        a: u32,
        b: [f32; 3],
    }
    #[derive(Clone, Copy, multiproc::Plain)]
    #[repr(C)]
    struct Flagged {
        a: u32,
        flags: [bool; 4],
    }
    #[derive(Clone, Copy, multiproc::Plain)]
    #[repr(C)]
    struct Nested {
        inner: Flagged,
    }
    const {
        assert!(<Numbers as Plain>::VALID_FOR_ANY_BITS);
        assert!(!<Flagged as Plain>::VALID_FOR_ANY_BITS);
        assert!(!<Nested as Plain>::VALID_FOR_ANY_BITS);
        assert!(!<char as Plain>::VALID_FOR_ANY_BITS);
    }
    let shm = SharedMemory::create(64).unwrap();
    assert_eq!(shm.as_slice::<Numbers>().len(), 4);
    shm.unlink().unwrap();
}
