//! A thousand spawn/join cycles leave the descriptor table and the process table as
//! they were: no leaked descriptor, no zombie.

mod common;

use std::collections::BTreeSet;

#[multiproc::worker]
fn add_one(x: u64) -> u64 {
    x + 1
}

#[multiproc::worker]
fn exits_with(code: i32) {
    multiproc::exit(code);
}

fn open_fds() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Processes whose parent is this process, with their state letter.
fn children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the `(comm)` field: state, then ppid.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == me {
            found.push((pid, state));
        }
    }
    found
}

#[test]
fn a_thousand_cycles_leak_nothing() {
    // One warm-up cycle, so that lazily opened descriptors are counted on both sides.
    assert_eq!(add_one::spawn(0).unwrap().join_value().unwrap(), 1);
    let fds_before = open_fds();
    let children_before = children();
    for i in 0..1000u64 {
        if i % 10 == 0 {
            let p = exits_with::spawn(3).unwrap();
            assert_eq!(p.join().unwrap(), 3);
        } else {
            assert_eq!(add_one::spawn(i).unwrap().join_value().unwrap(), i + 1);
        }
    }
    assert_eq!(open_fds(), fds_before);
    assert_eq!(children(), children_before);
    assert!(children().iter().all(|(_, state)| *state != 'Z'));
    assert!(multiproc::active_children().is_empty());
}

/// Every test above, again under the start method this run does not use.
#[test]
fn under_the_other_start_method() {
    common::rerun_under_the_other_start_method("under_the_other_start_method");
}
