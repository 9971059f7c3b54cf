//! Pools whose workers run on the nodes of a real Slurm cluster: the two-node cluster
//! on loopback of `../shared/cluster/slurm-local.sh` (`.ci/run` starts it and exports
//! `SLURM_CONF`). Without a cluster these tests print why and pass, unless
//! `MULTIPROC_REQUIRE_SLURM=1` is set (as in CI), which makes a missing cluster a
//! failure.
//!
//! The tests share the cluster (and one of them kills a node and brings it back), so
//! they run one at a time.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use multiproc::{Error, Manager, ManagerAddress, Pool, Slurm, SlurmEnv};

#[multiproc::worker]
fn sqr(x: u64) -> u64 {
    x * x
}

/// Where the task ran: Slurm's node name and the worker's rank.
#[multiproc::worker]
fn place(_x: u64) -> (String, u32) {
    // Long enough that the pool hands these out one or two at a time.
    std::thread::sleep(Duration::from_millis(20));
    let env = SlurmEnv::current().expect("a Slurm worker runs in a job step");
    (env.nodename, env.procid)
}

/// `3 x`, after a pause, and the node it ran on.
#[multiproc::worker]
fn slow(x: u64) -> (u64, String) {
    std::thread::sleep(Duration::from_millis(10));
    let node = SlurmEnv::current().map(|e| e.nodename).unwrap_or_default();
    (x * 3, node)
}

/// Adds `x` to the list `name` of the manager at `address`; returns this node's name.
#[multiproc::worker]
fn record(address: ManagerAddress, key: Vec<u8>, x: u64) -> multiproc::Result<String> {
    let manager = Manager::connect(&address, &key)?;
    manager.list_named::<u64>("seen")?.push(x)?;
    Ok(SlurmEnv::current().map(|e| e.nodename).unwrap_or_default())
}

/// One test at a time on the cluster.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a cluster is there to test on; panics if one is required and missing.
fn cluster() -> bool {
    let required = std::env::var_os("MULTIPROC_REQUIRE_SLURM").is_some_and(|v| v == "1");
    let why = match std::env::var_os("SLURM_CONF") {
        None => Some("SLURM_CONF is not set".to_owned()),
        Some(_) => match Command::new("sinfo").arg("-h").output() {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "sinfo failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Some(format!("cannot run sinfo: {e}")),
        },
    };
    match why {
        None => true,
        Some(why) if required => panic!("MULTIPROC_REQUIRE_SLURM=1 but no Slurm cluster: {why}"),
        Some(why) => {
            eprintln!("skipped: no Slurm cluster ({why}); run ../shared/cluster/slurm-local.sh");
            false
        }
    }
}

/// The cluster's directory (where `slurm.conf` is).
fn cluster_dir() -> PathBuf {
    let conf = PathBuf::from(std::env::var_os("SLURM_CONF").expect("SLURM_CONF is set"));
    conf.parent()
        .expect("slurm.conf is in a directory")
        .to_owned()
}

fn cluster_script() -> PathBuf {
    match std::env::var_os("MULTIPROC_SLURM_LOCAL") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/cluster/slurm-local.sh"),
    }
}

/// The state of `node` as `sinfo` says (`idle`, `mixed`, `down*`, ...).
fn node_state(node: &str) -> String {
    let out = Command::new("sinfo")
        .args(["-h", "-N", "-n", node, "-o", "%T"])
        .output()
        .expect("sinfo runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Starts a killed node's slurmd again when dropped (also when the test failed), and
/// waits until the node takes work, so that the tests after it have two nodes.
struct Revive(&'static str);

impl Drop for Revive {
    fn drop(&mut self) {
        let node = self.0;
        let conf = std::env::var("SLURM_CONF").unwrap_or_default();
        match Command::new("slurmd")
            .args(["-N", node, "-f", &conf])
            .status()
        {
            Ok(status) if status.success() => {}
            other => {
                eprintln!("cannot start slurmd {node} again: {other:?}");
                return;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = node_state(node);
            if state == "idle" || state == "mixed" || state == "allocated" {
                return;
            }
            if Instant::now() >= deadline {
                eprintln!("{node} did not come back: {state}");
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn two_by_two() -> Slurm {
    Slurm::new()
        .nodes(2)
        .tasks_per_node(2)
        .start_timeout(Duration::from_secs(60))
}

#[test]
fn a_map_over_both_nodes_gives_the_local_results() {
    let _serial = serial();
    if !cluster() {
        return;
    }
    let local = Pool::new(2).unwrap();
    let expected = local.map::<sqr>(0..2000).unwrap();
    let pool = Pool::builder().launcher(two_by_two()).build().unwrap();
    assert_eq!(pool.processes(), 4);
    assert!(pool.pids().is_empty(), "remote workers have no local pid");
    // Every rank and both nodes take tasks (first, while the pool knows nothing of
    // task lengths and hands out a few at a time).
    let places: BTreeSet<(String, u32)> = pool
        .map_chunked::<place>(0..40, 1)
        .unwrap()
        .into_iter()
        .collect();
    let ranks: BTreeSet<u32> = places.iter().map(|(_, r)| *r).collect();
    assert_eq!(ranks, BTreeSet::from([0, 1, 2, 3]), "{places:?}");
    let nodes: BTreeSet<&str> = places.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["n1", "n2"]), "{places:?}");
    assert_eq!(pool.map::<sqr>(0..2000).unwrap(), expected);
    assert_eq!(pool.map_chunked::<sqr>(0..2000, 1).unwrap(), expected);
    // imap reads an endless input lazily.
    let firsts: Vec<u64> = pool
        .imap::<sqr>(0..)
        .unwrap()
        .take(100)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(firsts, expected[..100]);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn killing_a_node_mid_map_loses_no_task() {
    let _serial = serial();
    if !cluster() {
        return;
    }
    let pool = Pool::builder()
        .launcher(two_by_two().retries(3))
        .build()
        .unwrap();
    let n = 1200;
    let mut results = pool.imap::<slow>(0..n).unwrap();
    let mut got = Vec::new();
    // Results from both nodes: the map is under way on n2 too.
    while !got.iter().any(|(_, node)| node == "n2") {
        let next = results.next().expect("more results").unwrap();
        got.push(next);
        assert!(got.len() < 400, "n2 took no task: {got:?}");
    }
    let status = Command::new(cluster_script())
        .args(["kill-node", "n2"])
        .arg(cluster_dir())
        .status()
        .expect("slurm-local.sh runs");
    let _revive = Revive("n2");
    assert!(status.success(), "kill-node n2 failed: {status}");
    for r in results {
        got.push(r.expect("no task is lost with its node"));
    }
    let values: Vec<u64> = got.iter().map(|(v, _)| *v).collect();
    assert_eq!(values, (0..n).map(|x| x * 3).collect::<Vec<_>>());
    pool.terminate().unwrap();
}

#[test]
fn a_worker_with_a_wrong_key_is_refused() {
    let _serial = serial();
    if !cluster() {
        return;
    }
    // An `srun` that gives the workers a key of its own making.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("slurm-forged");
    std::fs::create_dir_all(&dir).unwrap();
    let forger = dir.join("srun");
    std::fs::write(
        &forger,
        "#!/bin/sh\nMULTIPROC_AUTHKEY=00112233445566778899aabbccddeeff exec srun \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&forger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let started = Pool::builder()
        .launcher(
            Slurm::new()
                .nodes(2)
                .tasks_per_node(1)
                .srun(&forger)
                .start_timeout(Duration::from_secs(30)),
        )
        .build();
    std::fs::remove_dir_all(&dir).unwrap();
    match started {
        Err(Error::Launch(e)) => {
            assert_eq!(e.refused(), 2, "{e}");
            assert!(e.to_string().contains("authentication failed"), "{e}");
        }
        other => panic!("a pool of forged workers started: {other:?}"),
    }
}

#[test]
fn a_manager_here_is_used_from_workers_on_both_nodes() {
    let _serial = serial();
    if !cluster() {
        return;
    }
    let key = b"cluster key".to_vec();
    let manager = Manager::serve("0.0.0.0:0", &key).unwrap();
    let ManagerAddress::Tcp(bound) = manager.address() else {
        panic!("a TCP manager has a TCP address");
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let address: ManagerAddress = format!("{}:{}", host.trim(), bound.port())
        .parse::<std::net::SocketAddr>()
        .map(ManagerAddress::Tcp)
        .unwrap_or(ManagerAddress::Tcp(bound));
    let pool = Pool::builder().launcher(two_by_two()).build().unwrap();
    let jobs: Vec<_> = (0..40).map(|x| (address.clone(), key.clone(), x)).collect();
    let nodes: BTreeSet<String> = pool.starmap::<record>(jobs).unwrap().into_iter().collect();
    assert_eq!(nodes, BTreeSet::from(["n1".to_owned(), "n2".to_owned()]));
    let mut seen = manager.list_named::<u64>("seen").unwrap().to_vec().unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
    manager.shutdown().unwrap();
}

#[test]
fn the_cluster_pool_example_runs_on_both_nodes() {
    let _serial = serial();
    if !cluster() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join("examples/cluster_pool");
    let out = Command::new(&path)
        .args(["--slurm", "2", "2"])
        .output()
        .expect("cargo test builds the examples");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cluster_pool: started 4 workers"),
        "{stdout}"
    );
    assert!(
        stdout.contains("cluster_pool: the squares of 0..1000 sum to 332833500"),
        "{stdout}"
    );
    let placed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cluster_pool: computed on "))
        .unwrap_or_default();
    assert!(
        placed.contains("n1 (rank") && placed.contains("n2 (rank"),
        "{stdout}"
    );
}

#[test]
fn a_manager_served_on_one_node_is_used_from_workers_on_the_other() {
    let _serial = serial();
    if !cluster() {
        return;
    }
    let key = b"node key".to_vec();
    let manager = Manager::serve_on(Slurm::new().srun_arg("--nodelist=n1"), &key).unwrap();
    assert_eq!(
        manager.pid(),
        None,
        "the server is not a child of this process"
    );
    let address = manager.address();
    let pool = Pool::builder()
        .launcher(
            Slurm::new()
                .nodes(1)
                .tasks_per_node(2)
                .srun_arg("--nodelist=n2"),
        )
        .build()
        .unwrap();
    let jobs: Vec<_> = (0..20).map(|x| (address.clone(), key.clone(), x)).collect();
    let nodes: BTreeSet<String> = pool.starmap::<record>(jobs).unwrap().into_iter().collect();
    assert_eq!(nodes, BTreeSet::from(["n2".to_owned()]));
    let mut seen = manager.list_named::<u64>("seen").unwrap().to_vec().unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
    manager.shutdown().unwrap();
    // The server and its step are gone: a new client is refused at once.
    assert!(Manager::connect(&address, &key).is_err());
}
