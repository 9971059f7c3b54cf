//! Runs every example, as a user would, and checks what it prints.
//!
//! `cargo test` builds the examples before it runs the tests; they are found beside
//! this test binary's directory (`target/<profile>/examples`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{lines, position};

fn example(name: &str) -> Output {
    let exe = std::env::current_exe().unwrap();
    let dir: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join("examples");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples (or run `cargo build --examples`)",
        path.display()
    );
    let out = Command::new(&path).output().unwrap();
    assert!(out.status.success(), "{name} failed: {out:?}");
    out
}

#[test]
fn basic() {
    let out = example("basic");
    assert!(lines(&out.stdout).contains(&"basic: all children joined".to_owned()));
    let stderr = lines(&out.stderr);
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("[DEBUG/worker_name] run worker_name(")),
        "{stderr:#?}"
    );
    for i in 0..5 {
        position(&stderr, &format!("[DEBUG/Process-{}] worker {i}", i + 2));
    }
    position(&stderr, "[INFO/MainProcess] process shutting down");
}

#[test]
fn daemon() {
    let out = example("daemon");
    let stderr = lines(&out.stderr);
    let start = position(&stderr, "[DEBUG/daemon] start");
    position(&stderr, "[DEBUG/non_daemon] run");
    let end = position(&stderr, "[DEBUG/daemon] end");
    assert!(start < end);
    assert!(
        lines(&out.stdout)
            .contains(&"daemon: daemon exited with Some(0), non_daemon with Some(0)".to_owned())
    );
}

#[test]
fn timeout() {
    let out = example("timeout");
    let stderr = lines(&out.stderr);
    position(&stderr, "[DEBUG/daemon] start");
    position(&stderr, "[DEBUG/non_daemon] run");
    let alive = position(&stderr, "[DEBUG/MainProcess] daemon is alive");
    let terminate = position(
        &stderr,
        "[INFO/MainProcess] calling terminate() for daemon daemon",
    );
    assert!(alive < terminate);
    assert!(
        !stderr.contains(&"[DEBUG/daemon] end".to_owned()),
        "{stderr:#?}"
    );
}

#[test]
fn terminate() {
    let out = example("terminate");
    assert!(
        lines(&out.stdout)
            .contains(&"terminate: worker exitcode -15, worker_exit_error exitcode 1".to_owned())
    );
    position(&lines(&out.stderr), "[DEBUG/MainProcess] Some(-15) Some(1)");
}

#[test]
fn subclass() {
    let out = example("subclass");
    assert_eq!(
        lines(&out.stdout),
        ["run", "subclass: MyProcess-1 exited with Some(0)"]
    );
}

#[test]
fn library_worker() {
    let out = example("library_worker");
    assert_eq!(
        lines(&out.stdout),
        ["library_worker: 6 x 7 = 42, computed in a child; from-a-library said hello"]
    );
}

#[test]
fn producer_consumer() {
    let out = example("producer_consumer");
    let stdout = lines(&out.stdout);
    let n = multiproc::cpu_count() * 2;
    position(
        &stdout,
        &format!("producer_consumer: {n} consumers did {n} tasks; 0 unfinished, queue empty: true"),
    );
    // One result per task, each done by one of the consumers.
    for i in 0..n {
        assert!(
            stdout
                .iter()
                .any(|l| l.starts_with(&format!("task {i} done by Process-"))),
            "{stdout:#?}"
        );
    }
}

#[test]
fn pipe() {
    let out = example("pipe");
    let stdout = lines(&out.stdout);
    let pings = ["ping 0 -> pong 1", "ping 2 -> pong 3", "ping 4 -> pong 5"];
    let at: Vec<usize> = pings.iter().map(|p| position(&stdout, p)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]));
    position(&stdout, "pipe: ponger exited with Some(0)");
    // Each reporter's message arrives once, in whatever order wait() found them.
    for ms in [100, 200, 300] {
        let found = stdout
            .iter()
            .filter(|l| l.starts_with("got: Process-") && l.ends_with(&format!(" worked {ms} ms")))
            .count();
        assert_eq!(found, 1, "{stdout:#?}");
    }
    position(&stdout, "pipe: 3 reports from 3 children");
}

#[test]
fn connection_pool() {
    let out = example("connection_pool");
    assert!(
        lines(&out.stdout).contains(
            &"connection_pool: 120 checkouts by 6 workers, never more than 5 connections at \
              once, every connection back in the pool"
                .to_owned()
        ),
        "{out:?}"
    );
    let stderr = lines(&out.stderr);
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("[INFO/MainProcess] connections opened: ")),
        "{stderr:#?}"
    );
}

#[test]
fn pool() {
    let out = example("pool");
    let stdout = lines(&out.stdout);
    position(&stdout, "pool: started 4 workers");
    position(
        &stdout,
        "pool: map gave [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]",
    );
    let sum: u64 = (0..5000u64)
        .filter(|x| x % 1000 != 999)
        .map(|x| 2 * x)
        .sum();
    position(
        &stdout,
        &format!("pool: imap_unordered gave 4995 values summing to {sum} and 5 failures"),
    );
    position(&stdout, "pool: map failed: task failed: \"999 is unlucky\"");
    assert!(
        stdout.iter().any(|l| l
            .starts_with("pool: killed worker reported: task lost: worker SpawnPoolWorker-")
            && l.ends_with("was killed by signal 9 (SIGKILL)")),
        "{stdout:#?}"
    );
    position(&stdout, "pool: after the kill, map gave [0, 1, 4, 9, 16]");
    position(&stdout, "pool: closed and joined");
}

#[test]
fn cluster_pool() {
    // The local form (the Slurm form runs in tests/slurm.rs's cluster).
    let out = example("cluster_pool");
    let stdout = lines(&out.stdout);
    position(&stdout, "cluster_pool: started 4 workers");
    position(
        &stdout,
        "cluster_pool: the squares of 0..1000 sum to 332833500",
    );
    position(&stdout, "cluster_pool: computed on this machine");
}

#[test]
fn remote_manager() {
    let out = example("remote_manager");
    let stdout = lines(&out.stdout);
    assert!(
        stdout
            .iter()
            .any(|l| l.starts_with("remote_manager: serving at 127.0.0.1:")),
        "{stdout:#?}"
    );
    position(&stdout, "remote_manager: a wrong key is refused: yes");
    position(
        &stdout,
        "remote_manager: the client squared 10 numbers, their sum is 385",
    );
    position(&stdout, "remote_manager: server exit code Some(0)");
    let stderr = lines(&out.stderr);
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("[INFO/Process-2] squared 10 numbers for 127.0.0.1:")),
        "{stderr:#?}"
    );
}

#[test]
fn shared_memory() {
    let out = example("shared_memory");
    assert!(
        lines(&out.stdout)
            .contains(&"shared_memory: 4 workers summed 1000 values to 499500".to_owned()),
        "{out:?}"
    );
}
