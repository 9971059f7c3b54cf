//! Soak test (outside the default suite): producers, consumers, lock users and
//! pool-like workers (taking tasks from a queue and putting results) are killed with
//! SIGKILL and stopped with SIGSTOP/SIGCONT at random, round after round, for
//! `SOAK_SECS` seconds (default 600). After each round it checks that nothing was
//! lost beyond the items the killed consumers and workers held, nothing was
//! duplicated, nothing hung (every wait has a generous deadline and a miss is
//! counted), and that no descriptor, shared-memory mapping or child process leaked.
//!
//! Run with `cargo test --test soak -- --ignored --nocapture` (and e.g.
//! `SOAK_SECS=60`). The figures are printed at the end.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use multiproc::{Lock, Process, Queue};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Items each producer puts; tasks the parent gives the workers each round.
const ITEMS_PER_PRODUCER: u64 = 400;
const TASKS_PER_ROUND: u64 = 400;
/// How long the chaos of one round lasts.
const CHAOS: Duration = Duration::from_secs(3);
/// Any wait of the parent longer than this is a hang.
const GENEROUS: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct Item {
    producer: u64,
    seq: u64,
}

#[multiproc::worker]
fn producer(q: Queue<Option<Item>>, id: u64) {
    for seq in 0..ITEMS_PER_PRODUCER {
        q.put(Some(Item { producer: id, seq }))
            .unwrap_or_else(|e| panic!("put: {e}"));
    }
}

/// Forwards every item to `out` until a `None`.
#[multiproc::worker]
fn consumer(q: Queue<Option<Item>>, out: Queue<Result<Item, String>>) {
    loop {
        let got = match q.get() {
            Ok(None) => return,
            Ok(Some(item)) => Ok(item),
            Err(e) => Err(e.to_string()),
        };
        out.put(got).unwrap_or_else(|e| panic!("forward: {e}"));
    }
}

/// Takes the lock again and again, holding it a little each time.
#[multiproc::worker]
fn lock_user(lock: Lock) {
    loop {
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        std::hint::black_box((0..200u32).sum::<u32>());
        drop(guard);
    }
}

/// A pool-like worker: tasks in, `(task, task * 2)` out, until a `None`.
#[multiproc::worker]
fn pool_worker(tasks: Queue<Option<u64>>, results: Queue<Result<(u64, u64), String>>) {
    loop {
        let result = match tasks.get() {
            Ok(None) => return,
            Ok(Some(t)) => Ok((t, t * 2)),
            Err(e) => Err(e.to_string()),
        };
        results
            .put(result)
            .unwrap_or_else(|e| panic!("result: {e}"));
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn memfd_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("memfd:multiproc"))
        .count()
}

/// Children of this process, as the kernel lists them.
fn children() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .count()
        })
        .sum()
}

#[derive(Default, Debug)]
struct Figures {
    rounds: u64,
    kills: u64,
    stops: u64,
    items: u64,
    tasks: u64,
    lost: u64,
    /// Losses allowed: the kills of consumers and workers (each held at most an item).
    allowed_losses: u64,
    duplicates: u64,
    hangs: u64,
    errors: Vec<String>,
    leaks: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Producer,
    Consumer,
    LockUser,
    Worker,
}

struct Member {
    role: Role,
    process: Process,
}

struct Round {
    items: Queue<Option<Item>>,
    forwarded: Queue<Result<Item, String>>,
    tasks: Queue<Option<u64>>,
    results: Queue<Result<(u64, u64), String>>,
    lock: Lock,
    next_producer: u64,
    members: Vec<Member>,
}

impl Round {
    fn spawn(&mut self, role: Role) {
        let process = match role {
            Role::Producer => {
                self.next_producer += 1;
                producer::spawn(self.items.clone(), self.next_producer)
            }
            Role::Consumer => consumer::spawn(self.items.clone(), self.forwarded.clone()),
            Role::LockUser => lock_user::spawn(self.lock.clone()),
            Role::Worker => pool_worker::spawn(self.tasks.clone(), self.results.clone()),
        }
        .expect("spawn");
        self.members.push(Member { role, process });
    }
}

/// Waits for `p` to end within the generous deadline; a miss is a hang (the process
/// is then killed and reaped).
fn reap(p: &Process, figures: &mut Figures, what: &str) {
    match p.join_timeout(GENEROUS) {
        Ok(Some(_)) => {}
        Ok(None) => {
            figures.hangs += 1;
            figures
                .errors
                .push(format!("{what} did not end within {GENEROUS:?}"));
            let _ = p.kill();
            let _ = p.join();
        }
        Err(e) => figures.errors.push(format!("join {what}: {e}")),
    }
}

fn one_round(rng: &mut u64, figures: &mut Figures) {
    let mut round = Round {
        items: Queue::builder()
            .buffer_size(16 << 10)
            .build()
            .expect("queue"),
        forwarded: Queue::new().expect("queue"),
        tasks: Queue::builder()
            .buffer_size(16 << 10)
            .build()
            .expect("queue"),
        results: Queue::new().expect("queue"),
        lock: Lock::new().expect("lock"),
        next_producer: 0,
        members: Vec::new(),
    };
    for role in [
        Role::Producer,
        Role::Producer,
        Role::Consumer,
        Role::Consumer,
        Role::LockUser,
        Role::LockUser,
        Role::Worker,
        Role::Worker,
    ] {
        round.spawn(role);
    }
    for t in 0..TASKS_PER_ROUND {
        round.tasks.put(Some(t)).expect("task");
    }
    figures.tasks += TASKS_PER_ROUND;

    // Chaos: kill or stop a random member now and then; the killed are replaced.
    let chaos_end = Instant::now() + CHAOS;
    while Instant::now() < chaos_end {
        std::thread::sleep(Duration::from_micros(xorshift(rng) % 40_000));
        let i = (xorshift(rng) % round.members.len() as u64) as usize;
        let Some(pid) = round.members[i].process.pid() else {
            continue;
        };
        let pid = Pid::from_raw(pid as i32);
        if xorshift(rng) % 3 == 0 {
            if kill(pid, Signal::SIGSTOP).is_ok() {
                figures.stops += 1;
                std::thread::sleep(Duration::from_micros(xorshift(rng) % 30_000));
                let _ = kill(pid, Signal::SIGCONT);
            }
        } else {
            let victim = round.members.swap_remove(i);
            let _ = victim.process.kill();
            reap(&victim.process, figures, "a killed process");
            figures.kills += 1;
            if matches!(victim.role, Role::Consumer | Role::Worker) {
                figures.allowed_losses += 1;
            }
            round.spawn(victim.role);
        }
    }

    // The end: producers finish, consumers and workers get a sentinel each, lock
    // users are killed (they run for ever), and the lock must still be takeable.
    let members = std::mem::take(&mut round.members);
    for m in members.iter().filter(|m| m.role == Role::Producer) {
        reap(&m.process, figures, "a producer");
    }
    for m in &members {
        match m.role {
            Role::Consumer => round.items.put(None).expect("sentinel"),
            Role::Worker => round.tasks.put(None).expect("sentinel"),
            _ => {}
        }
    }
    for m in members.iter().filter(|m| m.role == Role::LockUser) {
        let _ = m.process.kill();
    }
    for m in &members {
        reap(&m.process, figures, "a member at the end of the round");
    }
    match round.lock.lock_timeout(GENEROUS) {
        Ok(_) => {}
        Err(e) if e.is_poisoned() => round.lock.clear_poison(),
        Err(_) => {
            figures.hangs += 1;
            figures.errors.push("the lock could not be taken".into());
        }
    }

    // Everything forwarded: no duplicate, no torn item, and every producer's items
    // below the highest one seen all arrived (bar the allowed losses).
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut highest: HashMap<u64, u64> = HashMap::new();
    while let Ok(got) = round.forwarded.get_timeout(Duration::from_millis(200)) {
        match got {
            Ok(item) => {
                figures.items += 1;
                if !seen.insert((item.producer, item.seq)) {
                    figures.duplicates += 1;
                }
                let h = highest.entry(item.producer).or_insert(0);
                *h = (*h).max(item.seq);
            }
            Err(e) => figures.errors.push(format!("consumer: {e}")),
        }
    }
    for (producer, high) in &highest {
        figures.lost += (0..=*high)
            .filter(|seq| !seen.contains(&(*producer, *seq)))
            .count() as u64;
    }
    let mut done: BTreeSet<u64> = BTreeSet::new();
    while let Ok(got) = round.results.get_timeout(Duration::from_millis(200)) {
        match got {
            Ok((t, r)) if r == t * 2 => {
                if !done.insert(t) {
                    figures.duplicates += 1;
                }
            }
            Ok((t, r)) => figures.errors.push(format!("task {t} gave {r}")),
            Err(e) => figures.errors.push(format!("worker: {e}")),
        }
    }
    // Tasks still queued were never taken: not lost (there are none, the sentinels
    // came after them, but a wrong order would show here rather than as a loss).
    while let Ok(Some(t)) = round.tasks.try_get() {
        if !done.insert(t) {
            figures.duplicates += 1;
        }
    }
    figures.lost += TASKS_PER_ROUND - done.len() as u64;
    figures.rounds += 1;
}

#[test]
#[ignore = "a soak test of minutes: cargo test --test soak -- --ignored"]
fn soak_kills_and_stops() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let started = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let mut figures = Figures::default();
    // The first round warms up what the process keeps (the runtime's own state).
    one_round(&mut rng, &mut figures);
    let (fds, maps, kids) = (open_fds(), memfd_mappings(), children());
    while started.elapsed() < Duration::from_secs(secs) {
        one_round(&mut rng, &mut figures);
        let now = (open_fds(), memfd_mappings(), children());
        if now != (fds, maps, kids) {
            figures.leaks.push(format!(
                "after round {}: fds {} -> {}, memfd mappings {} -> {}, children {} -> {}",
                figures.rounds, fds, now.0, maps, now.1, kids, now.2
            ));
        }
        eprintln!(
            "soak: {:.0} s, round {}: {} kills, {} stops, {} items, {} tasks, {} lost \
             (allowed {}), {} duplicates, {} hangs",
            started.elapsed().as_secs_f64(),
            figures.rounds,
            figures.kills,
            figures.stops,
            figures.items,
            figures.tasks,
            figures.lost,
            figures.allowed_losses,
            figures.duplicates,
            figures.hangs
        );
    }
    eprintln!("soak figures: {figures:?}");
    assert!(figures.errors.is_empty(), "{:?}", figures.errors);
    assert!(figures.leaks.is_empty(), "{:?}", figures.leaks);
    assert_eq!(figures.duplicates, 0);
    assert_eq!(figures.hangs, 0);
    assert!(
        figures.lost <= figures.allowed_losses,
        "{} items lost, at most {} allowed",
        figures.lost,
        figures.allowed_losses
    );
}
