//! The manager on real processes: a server process, proxies handed to children, errors
//! that come back typed, shutdown (Python's items 85-88), the sync proxies, named
//! objects, and proxies that cross as arguments, through queues and inside other
//! proxies.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use multiproc::{
    BarrierProxy, ConditionProxy, DictProxy, Error, EventProxy, ListProxy, LockProxy, Manager,
    ManagerErrorKind, QueueProxy, ValueProxy, active_children, current_process,
};

fn kind(e: &Error) -> Option<ManagerErrorKind> {
    match e {
        Error::Manager(m) => Some(m.kind()),
        _ => None,
    }
}

/// Python's item 85: each child appends its name, records its pid, counts under a
/// lock and sends a message.
#[multiproc::worker]
fn record(
    names: ListProxy<String>,
    pids: DictProxy<String, u32>,
    counter: ValueProxy<u64>,
    lock: LockProxy,
    messages: QueueProxy<String>,
) -> multiproc::Result<()> {
    let me = current_process();
    names.push(me.name().to_owned())?;
    pids.insert(me.name().to_owned(), me.pid())?;
    {
        let _held = lock.lock()?;
        counter.set(counter.get()? + 1)?;
    }
    messages.put(format!("hello from {}", me.name()))?;
    Ok(())
}

#[test]
fn children_share_lists_dicts_values_and_queues() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let names = manager.list::<String>()?;
    let pids = manager.dict::<String, u32>()?;
    let counter = manager.value(0u64)?;
    let lock = manager.lock()?;
    let messages = manager.queue::<String>()?;
    let children: Vec<_> = (0..3)
        .map(|_| {
            record::spawn(
                names.clone(),
                pids.clone(),
                counter.clone(),
                lock.clone(),
                messages.clone(),
            )
        })
        .collect::<multiproc::Result<_>>()?;
    let mut expected = HashSet::new();
    for child in &children {
        child.join_value()?;
        assert_eq!(child.exitcode(), Some(0));
        expected.insert(child.name());
    }
    let got: HashSet<String> = names.to_vec()?.into_iter().collect();
    assert_eq!(got, expected);
    assert_eq!(pids.len()?, 3);
    for child in &children {
        assert_eq!(pids.get(&child.name())?, child.pid());
    }
    assert_eq!(counter.get()?, 3);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(messages.try_get()?);
    }
    assert_eq!(got.len(), 3);
    let empty = messages.try_get().unwrap_err();
    assert_eq!(kind(&empty), Some(ManagerErrorKind::Empty), "{empty}");
    manager.shutdown()
}

/// Python's item 86: errors come back with their type; containers behave as local
/// ones.
#[test]
fn errors_come_back_typed() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let list = manager.list_from(vec![1u32, 2, 3])?;
    assert_eq!(list.len()?, 3);
    assert_eq!(list.get(1)?, Some(2));
    assert_eq!(list.get(3)?, None);
    for e in [
        list.set(3, 9).unwrap_err(),
        list.insert(4, 9).unwrap_err(),
        list.remove(3).map(drop).unwrap_err(),
    ] {
        assert_eq!(kind(&e), Some(ManagerErrorKind::IndexOutOfRange), "{e}");
    }
    list.insert(3, 4)?;
    list.insert(0, 0)?;
    list.set(1, 10)?;
    assert_eq!(list.remove(2)?, 2);
    assert_eq!(list.to_vec()?, [0, 10, 3, 4]);
    assert_eq!(list.pop()?, Some(4));
    list.extend([5, 6])?;
    assert!(list.contains(&5)?);
    assert!(!list.contains(&4)?);
    list.clear()?;
    assert_eq!(list.pop()?, None);
    assert!(list.is_empty()?);

    let dict = manager.dict::<String, i64>()?;
    assert_eq!(dict.get(&"missing".to_owned())?, None);
    assert_eq!(dict.insert("b".into(), 1)?, None);
    assert_eq!(dict.insert("a".into(), 2)?, None);
    assert_eq!(dict.insert("b".into(), 3)?, Some(1));
    assert!(dict.contains_key(&"a".to_owned())?);
    assert_eq!(dict.keys()?, ["b", "a"]);
    assert_eq!(dict.values()?, [3, 2]);
    assert_eq!(dict.items()?, [("b".to_owned(), 3), ("a".to_owned(), 2)]);
    assert_eq!(dict.remove(&"b".to_owned())?, Some(3));
    assert_eq!(dict.remove(&"b".to_owned())?, None);
    assert_eq!(dict.len()?, 1);
    dict.clear()?;
    assert!(dict.is_empty()?);
    Ok(())
}

#[multiproc::worker]
fn mutate_copy(outer: ListProxy<Vec<u32>>) -> multiproc::Result<()> {
    let mut inner = outer.get(0)?.unwrap_or_default();
    inner.push(99);
    Ok(())
}

#[multiproc::worker]
fn mutate_shared(outer: DictProxy<String, ListProxy<String>>) -> multiproc::Result<()> {
    if let Some(supplies) = outer.get(&"supplies".to_owned())? {
        supplies.push("bread".to_owned())?;
    }
    Ok(())
}

/// Python's item 87: a plain nested value is a copy; nested proxies are shared.
#[test]
fn nested_values_are_copies_and_nested_proxies_are_shared() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let outer = manager.list_from(vec![vec![1u32, 2]])?;
    mutate_copy::spawn(outer.clone())?.join_value()?;
    assert_eq!(outer.get(0)?, Some(vec![1, 2]));

    let supplies = manager.list::<String>()?;
    supplies.push("milk".to_owned())?;
    let d = manager.dict::<String, ListProxy<String>>()?;
    d.insert("supplies".to_owned(), supplies.clone())?;
    mutate_shared::spawn(d.clone())?.join_value()?;
    assert_eq!(supplies.to_vec()?, ["milk", "bread"]);

    // A list of list proxies, as in Python.
    let rows = manager.list::<ListProxy<u32>>()?;
    for _ in 0..2 {
        rows.push(manager.list::<u32>()?)?;
    }
    if let Some(first) = rows.get(0)? {
        first.push(7)?;
    }
    let lens: Vec<usize> = rows
        .to_vec()?
        .iter()
        .map(ListProxy::len)
        .collect::<multiproc::Result<_>>()?;
    assert_eq!(lens, [1, 0]);
    Ok(())
}

/// Python's item 88: the server is a child while it runs, exits with code 0 at
/// shutdown; shutdown twice is fine; proxies and creation fail afterwards.
#[test]
fn shutdown_stops_the_server_with_code_zero() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let pid = manager.pid().expect("a started manager has a pid");
    let server = manager.process().expect("the manager owns its server");
    assert!(
        server.name().starts_with("SyncManager-"),
        "{}",
        server.name()
    );
    assert!(server.daemon());
    assert!(
        active_children().iter().any(|c| c.pid() == Some(pid)),
        "the server is listed among the children"
    );
    let list = manager.list::<u8>()?;
    list.push(1)?;
    manager.shutdown()?;
    assert_eq!(server.exitcode(), Some(0));
    assert!(!active_children().iter().any(|c| c.pid() == Some(pid)));
    manager.shutdown()?;
    let e = list.len().unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::Disconnected), "{e}");
    let e = manager.list::<u8>().unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::ShutDown), "{e}");
    Ok(())
}

#[test]
fn dropping_the_manager_stops_the_server() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let pid = manager.pid().expect("a pid");
    let list = manager.list::<u8>()?;
    drop(manager);
    assert!(!active_children().iter().any(|c| c.pid() == Some(pid)));
    assert!(list.push(1).is_err());
    Ok(())
}

#[multiproc::worker]
fn add_under_lock(counter: ValueProxy<u64>, lock: LockProxy) -> multiproc::Result<()> {
    for _ in 0..100 {
        let _held = lock.lock()?;
        counter.set(counter.get()? + 1)?;
    }
    Ok(())
}

#[multiproc::worker]
fn drain(queue: QueueProxy<u32>) -> multiproc::Result<Vec<u32>> {
    Ok(vec![queue.get()?, queue.get()?])
}

/// Python's item 88: a manager lock guards 4 x 100 increments; a bounded queue.
#[test]
fn manager_lock_and_bounded_queue() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let counter = manager.value(0u64)?;
    let lock = manager.lock()?;
    let children: Vec<_> = (0..4)
        .map(|_| add_under_lock::spawn(counter.clone(), lock.clone()))
        .collect::<multiproc::Result<_>>()?;
    for child in children {
        child.join_value()?;
    }
    assert_eq!(counter.get()?, 400);

    let q = manager.queue_bounded::<u32>(2)?;
    q.put(1)?;
    q.put(2)?;
    assert_eq!(q.qsize()?, 2);
    assert!(q.full()?);
    let e = q.try_put(3).unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::Full), "{e}");
    let start = Instant::now();
    let e = q.put_timeout(3, Duration::from_millis(100)).unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::Full), "{e}");
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(drain::spawn(q.clone())?.join_value()?, [1, 2]);
    assert!(q.empty()?);
    let start = Instant::now();
    let e = q.get_timeout(Duration::from_millis(100)).unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::Empty), "{e}");
    assert!(start.elapsed() >= Duration::from_millis(100));
    Ok(())
}

#[test]
fn lock_like_proxies_follow_python() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let lock = manager.lock()?;
    assert!(lock.try_acquire()?);
    assert!(!lock.try_acquire()?);
    assert!(!lock.acquire_timeout(Duration::from_millis(50))?);
    lock.release()?;
    let e = lock.release().unwrap_err();
    assert_eq!(
        kind(&e),
        Some(ManagerErrorKind::ReleasedTooManyTimes),
        "{e}"
    );

    let rlock = manager.rlock()?;
    for _ in 0..3 {
        rlock.acquire()?;
    }
    assert!(rlock.is_locked()?);
    let other = {
        let rlock = rlock.clone();
        std::thread::spawn(move || {
            (
                rlock.acquire_timeout(Duration::from_millis(50)),
                rlock.release().map_err(|e| kind(&e)),
            )
        })
    };
    let (acquired, released) = other.join().expect("the thread ends");
    assert!(!acquired?);
    assert_eq!(released, Err(Some(ManagerErrorKind::NotOwner)));
    for _ in 0..3 {
        rlock.release()?;
    }
    let e = rlock.release().unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::NotOwner), "{e}");

    let sem = manager.bounded_semaphore(2)?;
    let e = sem.release().unwrap_err();
    assert_eq!(
        kind(&e),
        Some(ManagerErrorKind::ReleasedTooManyTimes),
        "{e}"
    );
    assert_eq!(sem.value()?, 2);
    sem.acquire()?;
    {
        let _permit = sem.permit()?;
        assert_eq!(sem.value()?, 0);
        assert!(!sem.try_acquire()?);
    }
    assert_eq!(sem.value()?, 1);
    let plain = manager.semaphore(0)?;
    plain.release()?;
    plain.release()?;
    assert_eq!(plain.value()?, 2);
    Ok(())
}

#[multiproc::worker]
fn set_later(ready: EventProxy, go: EventProxy) -> multiproc::Result<()> {
    ready.set()?;
    go.wait()?;
    Ok(())
}

#[test]
fn events_cross_processes() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let ready = manager.event()?;
    let go = manager.event()?;
    assert!(!ready.is_set()?);
    assert!(!ready.wait_timeout(Duration::from_millis(50))?);
    let child = set_later::spawn(ready.clone(), go.clone())?;
    ready.wait()?;
    assert!(ready.is_set()?);
    go.set()?;
    child.join_value()?;
    go.clear()?;
    assert!(!go.is_set()?);
    Ok(())
}

#[multiproc::worker]
fn wait_for_count(cond: ConditionProxy, value: ValueProxy<u32>) -> multiproc::Result<u32> {
    let _held = cond.lock()?;
    while value.get()? < 3 {
        cond.wait()?;
    }
    value.get()
}

#[test]
fn conditions_wake_waiters_in_other_processes() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let cond = manager.condition()?;
    let e = cond.notify().unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::NotOwner), "{e}");
    {
        let _held = cond.lock()?;
        assert!(!cond.wait_timeout(Duration::from_millis(50))?);
        cond.notify_all()?;
    }
    let value = manager.value(0u32)?;
    let child = wait_for_count::spawn(cond.clone(), value.clone())?;
    for _ in 0..3 {
        let _held = cond.lock()?;
        value.set(value.get()? + 1)?;
        cond.notify_all()?;
    }
    assert_eq!(child.join_value()?, 3);
    Ok(())
}

#[multiproc::worker]
fn pass_barrier(barrier: BarrierProxy, passes: u32) -> multiproc::Result<Vec<usize>> {
    (0..passes).map(|_| barrier.wait()).collect()
}

#[test]
fn barriers_pass_in_lockstep_and_break() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let barrier = manager.barrier(3)?;
    assert_eq!(barrier.parties()?, 3);
    let children: Vec<_> = (0..2)
        .map(|_| pass_barrier::spawn(barrier.clone(), 5))
        .collect::<multiproc::Result<_>>()?;
    let mine: Vec<usize> = (0..5)
        .map(|_| barrier.wait())
        .collect::<multiproc::Result<_>>()?;
    let mut all = vec![mine];
    for child in children {
        all.push(child.join_value()?);
    }
    for pass in 0..5 {
        let mut indexes: Vec<usize> = all.iter().map(|v| v[pass]).collect();
        indexes.sort_unstable();
        assert_eq!(indexes, [0, 1, 2]);
    }
    let e = barrier.wait_timeout(Duration::from_millis(50)).unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::BrokenBarrier), "{e}");
    assert!(barrier.is_broken()?);
    assert!(barrier.wait().is_err());
    barrier.reset()?;
    assert!(!barrier.is_broken()?);
    assert_eq!(manager.barrier(1)?.wait()?, 0);
    let e = manager.barrier(0).unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::InvalidArgument), "{e}");
    Ok(())
}

#[test]
fn named_objects_are_shared_by_name_and_typed() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let jobs = manager.list_named::<String>("jobs")?;
    jobs.push("a".to_owned())?;
    let again = manager.list_named::<String>("jobs")?;
    assert_eq!(again.to_vec()?, ["a"]);
    let e = manager.list_named::<u32>("jobs").unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::WrongType), "{e}");
    let e = manager.dict_named::<String, u32>("jobs").unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::WrongType), "{e}");
    let v = manager.value_named("answer", 42u8)?;
    assert_eq!(manager.value_named("answer", 0u8)?.get()?, 42);
    v.set(43)?;
    assert_eq!(manager.value_named("answer", 0u8)?.get()?, 43);
    Ok(())
}

#[multiproc::worker]
fn relay(inbox: QueueProxy<ListProxy<u32>>) -> multiproc::Result<()> {
    let list = inbox.get()?;
    list.push(5)?;
    Ok(())
}

#[test]
fn proxies_travel_through_queues() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let inbox = manager.queue::<ListProxy<u32>>()?;
    let list = manager.list::<u32>()?;
    inbox.put(list.clone())?;
    relay::spawn(inbox)?.join_value()?;
    assert_eq!(list.to_vec()?, [5]);
    // A proxy is also a worker argument through a multiproc Queue.
    let q = multiproc::Queue::<ListProxy<u32>>::new()?;
    q.put(list.clone())?;
    let back = q.get()?;
    back.push(6)?;
    assert_eq!(list.to_vec()?, [5, 6]);
    Ok(())
}

/// A type of the user's, served by the manager.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter {
    total: u64,
    log: Vec<String>,
}

#[multiproc::managed]
impl Counter {
    /// Not a method of the proxy: it takes no `self`.
    pub fn new() -> Self {
        Counter::default()
    }

    /// Adds `by`; the new total.
    pub fn incr(&mut self, by: u64) -> u64 {
        self.total += by;
        self.total
    }

    /// The total.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Records a line.
    pub fn note(&mut self, who: String, what: String) {
        self.log.push(format!("{who}: {what}"));
    }

    /// The lines recorded.
    pub fn log(&self) -> Vec<String> {
        self.log.clone()
    }

    /// Panics, on the server.
    pub fn fail(&self) -> u8 {
        panic!("counter failed on purpose")
    }

    fn private_helper(&self) -> u64 {
        self.total * 2
    }
}

#[multiproc::worker]
fn count_up(counter: CounterProxy, times: u64) -> multiproc::Result<()> {
    for _ in 0..times {
        counter.incr(1)?;
    }
    counter.note(current_process().name().to_owned(), "done".to_owned())?;
    Ok(())
}

#[test]
fn managed_types_are_served_behind_generated_proxies() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let counter: CounterProxy = manager.create(Counter::new())?;
    assert_eq!(counter.incr(5)?, 5);
    let children: Vec<_> = (0..3)
        .map(|_| count_up::spawn(counter.clone(), 10))
        .collect::<multiproc::Result<_>>()?;
    for child in children {
        child.join_value()?;
    }
    assert_eq!(counter.total()?, 35);
    assert_eq!(counter.log()?.len(), 3);
    let e = counter.fail().unwrap_err();
    assert_eq!(kind(&e), Some(ManagerErrorKind::Method), "{e}");
    assert!(e.to_string().contains("on purpose"), "{e}");
    // The object still answers after a panic in one of its methods.
    assert_eq!(counter.total()?, 35);
    assert_eq!(Counter::new().private_helper(), 0);
    // Managed proxies nest like the others.
    let counters = manager.list::<CounterProxy>()?;
    counters.push(counter.clone())?;
    if let Some(c) = counters.get(0)? {
        c.incr(1)?;
    }
    assert_eq!(counter.total()?, 36);
    Ok(())
}
