//! Queues across real processes, case by case as Python's `multiprocessing` behaves
//! (section C and D of the reference), and the handles crossing the boundary: as worker
//! arguments, as `#[process]` fields, and through another queue to a process that is
//! already running.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use multiproc::prelude::*;
use multiproc::{JoinableQueue, Queue, SimpleQueue};
use serde::{Deserialize, Serialize};

#[multiproc::worker]
fn put_range(q: Queue<u64>, from: u64, to: u64) -> Result<(), String> {
    for i in from..to {
        q.put(i).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[multiproc::worker]
fn put_tagged(q: Queue<(u32, u32)>, tag: u32, n: u32) {
    for i in 0..n {
        q.put((tag, i)).unwrap();
    }
}

#[multiproc::worker]
fn put_big(q: Queue<serde_bytes::ByteBuf>, len: usize) {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    q.put(serde_bytes::ByteBuf::from(bytes)).unwrap();
}

#[multiproc::worker]
fn get_one(q: Queue<String>) -> String {
    q.get().unwrap_or_else(|e| format!("error: {e}"))
}

#[multiproc::worker]
fn get_until_closed(q: Queue<u32>) -> Vec<u32> {
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(x) => got.push(x),
            Err(e) if e.is_closed() => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

#[multiproc::worker]
fn put_then_report(q: Queue<u64>, n: u64, report: Queue<String>) {
    for i in 0..n {
        q.put(i).unwrap();
    }
    report.put("all put".to_owned()).unwrap();
}

/// Receives queues through `inbox` and answers on each.
#[multiproc::worker]
fn answer_on_received_queues(inbox: Queue<Option<Queue<String>>>) -> u32 {
    let mut answered = 0;
    while let Some(reply) = inbox.get().unwrap() {
        reply
            .put(format!(
                "answer {answered} from {}",
                current_process().name()
            ))
            .unwrap();
        answered += 1;
    }
    answered
}

#[multiproc::worker]
fn joinable_consumer(tasks: JoinableQueue<Option<u32>>, results: Queue<u32>) {
    while let Some(x) = tasks.get().unwrap() {
        std::thread::sleep(Duration::from_millis(50));
        results.put(x * 10).unwrap();
        tasks.task_done().unwrap();
    }
    tasks.task_done().unwrap();
}

#[multiproc::worker]
fn simple_echo(input: SimpleQueue<Option<String>>, output: SimpleQueue<String>) {
    while let Some(s) = input.get().unwrap() {
        output.put(s.to_uppercase()).unwrap();
    }
}

#[derive(Serialize, Deserialize, Debug)]
struct Job {
    id: u32,
    reply: Queue<String>,
}

#[multiproc::worker]
fn serve_jobs(jobs: Queue<Option<Job>>) {
    while let Some(job) = jobs.get().unwrap() {
        job.reply.put(format!("job {} done", job.id)).unwrap();
    }
}

#[multiproc::process]
struct Doubler {
    input: Queue<Option<u64>>,
    output: Queue<u64>,
}

impl Run for Doubler {
    fn run(&mut self) {
        while let Some(x) = self.input.get().unwrap() {
            self.output.put(2 * x).unwrap();
        }
    }
}

#[test]
fn fifo_from_a_child_and_items_outlive_it() {
    let q = Queue::new().unwrap();
    let p = put_range::spawn(q.clone(), 1, 7).unwrap();
    // Join before get: the child's items are in the queue when `put` returns, so the
    // child exits at once (Python's child would wait for its feeder thread).
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
    assert_eq!(q.qsize(), 6);
    let got: Vec<u64> = (0..6).map(|_| q.get().unwrap()).collect();
    assert_eq!(got, [1, 2, 3, 4, 5, 6]);
    assert!(q.try_get().unwrap_err().is_empty());
}

#[test]
fn a_large_item_outlives_its_child() {
    let q = Queue::new().unwrap();
    // Larger than half the default buffer: it goes into memory of its own.
    let len = 10 << 20;
    let p = put_big::spawn(q.clone(), len).unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
    let item = q.get().unwrap();
    assert_eq!(item.len(), len);
    assert!(item.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
}

#[test]
fn two_producers_keep_their_own_order() {
    let q = Queue::new().unwrap();
    let a = put_tagged::spawn(q.clone(), 1, 200).unwrap();
    let b = put_tagged::spawn(q.clone(), 2, 200).unwrap();
    let mut next: HashMap<u32, u32> = HashMap::new();
    for _ in 0..400 {
        let (tag, i) = q.get_timeout(Duration::from_secs(30)).unwrap();
        let expected = next.entry(tag).or_insert(0);
        assert_eq!(i, *expected, "producer {tag} out of order");
        *expected += 1;
    }
    assert_eq!(next[&1], 200);
    assert_eq!(next[&2], 200);
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn a_bounded_queue_blocks_its_producer_until_items_are_taken() {
    let q = Queue::with_capacity(2).unwrap();
    let report = Queue::new().unwrap();
    let p = put_then_report::spawn(q.clone(), 5, report.clone()).unwrap();
    // The child puts 2 items, then waits for room.
    let start = Instant::now();
    while q.qsize() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(q.is_full());
    assert!(
        report
            .get_timeout(Duration::from_millis(200))
            .unwrap_err()
            .is_timeout()
    );
    let got: Vec<u64> = (0..5).map(|_| q.get().unwrap()).collect();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert_eq!(report.get().unwrap(), "all put");
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn close_wakes_a_consumer_in_another_process() {
    let q = Queue::new().unwrap();
    let p = get_until_closed::spawn(q.clone()).unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    q.close();
    assert_eq!(p.join_value().unwrap(), [0, 1, 2]);
    assert!(q.put(9).unwrap_err().is_closed());
}

#[test]
fn queues_sent_through_a_queue_to_a_running_process() {
    let inbox = Queue::new().unwrap();
    let p = answer_on_received_queues::spawn(inbox.clone()).unwrap();
    // The child is running and waiting; each reply queue is created afterwards.
    for i in 0..3 {
        let reply: Queue<String> = Queue::new().unwrap();
        inbox.put(Some(reply.clone())).unwrap();
        let answer = reply.get_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            answer.starts_with(&format!("answer {i} from Process-")),
            "{answer}"
        );
    }
    inbox.put(None).unwrap();
    assert_eq!(p.join_value().unwrap(), 3);
}

#[test]
fn queues_inside_structs_inside_items() {
    let jobs = Queue::new().unwrap();
    let p = serve_jobs::spawn(jobs.clone()).unwrap();
    let replies: Vec<Queue<String>> = (0..3).map(|_| Queue::new().unwrap()).collect();
    for (id, reply) in replies.iter().enumerate() {
        jobs.put(Some(Job {
            id: id as u32,
            reply: reply.clone(),
        }))
        .unwrap();
    }
    jobs.put(None).unwrap();
    for (id, reply) in replies.iter().enumerate() {
        assert_eq!(reply.get().unwrap(), format!("job {id} done"));
    }
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn queues_as_process_fields() {
    let input = Queue::new().unwrap();
    let output = Queue::new().unwrap();
    let p = Doubler {
        input: input.clone(),
        output: output.clone(),
    }
    .into_process();
    p.start().unwrap();
    for x in [1, 2, 3] {
        input.put(Some(x)).unwrap();
    }
    input.put(None).unwrap();
    let got: Vec<u64> = (0..3).map(|_| output.get().unwrap()).collect();
    assert_eq!(got, [2, 4, 6]);
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn joinable_queue_join_waits_for_every_task() {
    // Python's case: 3 workers, 9 items of 50 ms each, then join.
    let tasks = JoinableQueue::new().unwrap();
    let results = Queue::new().unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| joinable_consumer::spawn(tasks.clone(), results.clone()).unwrap())
        .collect();
    for x in 0..9 {
        tasks.put(Some(x)).unwrap();
    }
    for _ in 0..3 {
        tasks.put(None).unwrap();
    }
    tasks.join();
    assert_eq!(tasks.unfinished_tasks(), 0);
    // Every result exists once join has returned.
    assert_eq!(results.qsize(), 9);
    let mut got: Vec<u32> = (0..9).map(|_| results.get().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..9).map(|x| x * 10).collect::<Vec<_>>());
    for w in workers {
        assert_eq!(w.join().unwrap(), 0);
    }
    let err = tasks.task_done().unwrap_err();
    assert_eq!(err.to_string(), "task_done() called too many times");
}

#[test]
fn simple_queue_across_processes() {
    let input = SimpleQueue::new().unwrap();
    let output = SimpleQueue::new().unwrap();
    assert!(input.is_empty());
    let p = simple_echo::spawn(input.clone(), output.clone()).unwrap();
    for s in ["a", "b", "c"] {
        input.put(Some(s.to_owned())).unwrap();
    }
    input.put(None).unwrap();
    let got: Vec<String> = (0..3).map(|_| output.get().unwrap()).collect();
    assert_eq!(got, ["A", "B", "C"]);
    p.join().unwrap();
    input.close();
    input.close();
}

#[test]
fn a_child_gets_what_the_parent_puts_later() {
    let q = Queue::new().unwrap();
    let p = get_one::spawn(q.clone()).unwrap();
    // The child is waiting in `get`; no sleep is needed for the item to reach it.
    q.put("late".to_owned()).unwrap();
    assert_eq!(p.join_value().unwrap(), "late");
}

#[test]
fn wait_over_queues_and_sentinels() {
    let quiet: Queue<u64> = Queue::new().unwrap();
    let busy: Queue<u64> = Queue::new().unwrap();
    let p = put_range::spawn(busy.clone(), 0, 1).unwrap();
    let ready = multiproc::wait(&[&quiet, &busy], Some(Duration::from_secs(30))).unwrap();
    assert_eq!(ready, [1]);
    assert_eq!(busy.get().unwrap(), 0);
    let sentinel = p.sentinel().unwrap();
    let ready =
        multiproc::wait(&[&quiet, &busy, &sentinel], Some(Duration::from_secs(30))).unwrap();
    assert_eq!(ready, [2]);
    p.join().unwrap();
    // Nothing is ready: the wait times out.
    let start = Instant::now();
    let ready = multiproc::wait(&[&quiet, &busy], Some(Duration::from_millis(100))).unwrap();
    assert!(ready.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(90));
    // A closed queue is ready.
    quiet.close();
    assert_eq!(multiproc::wait(&[&quiet, &busy], None).unwrap(), [0]);
}

#[test]
fn many_producers_and_consumers() {
    let q = Queue::builder().buffer_size(8192).build().unwrap();
    let producers: Vec<_> = (0..3)
        .map(|k| put_range::spawn(q.clone(), k * 10_000, k * 10_000 + 10_000).unwrap())
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| get_until_closed_u64::spawn(q.clone()).unwrap())
        .collect();
    for p in producers {
        assert_eq!(p.join().unwrap(), 0);
    }
    // Every item is in the queue or taken: close to stop the consumers.
    q.close();
    let mut all: Vec<u64> = Vec::new();
    for c in consumers {
        let got = c.join_value().unwrap();
        // Each consumer sees each producer's items in order.
        for k in 0..3 {
            let mine: Vec<u64> = got.iter().copied().filter(|x| x / 10_000 == k).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]));
        }
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, (0..30_000).collect::<Vec<_>>());
}

#[multiproc::worker]
fn get_until_closed_u64(q: Queue<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    while let Ok(x) = q.get() {
        got.push(x);
    }
    got
}

// ---------------------------------------------------------------------------------
// Batch forms: `put_many`, `get_many`, `drain`

/// What the batch tests send: a producer's id and sequence number, a payload that is
/// a function of them (sometimes larger than half the ring, so that it spills), and
/// sometimes a handle (so that it goes alone, with its descriptors).
type Tagged = (u32, u32, serde_bytes::ByteBuf, Option<Queue<u8>>);

/// The ring of the batch tests: small, so that batches wrap and fill it.
const BATCH_RING: usize = 8192;

fn tagged(id: u32, seq: u32, probe: &Queue<u8>) -> Tagged {
    let len = match seq % 50 {
        0 => 6000, // spills: more than half the ring
        n => (n * 7 % 40) as usize,
    };
    let payload: Vec<u8> = (0..len).map(|i| (i as u32 ^ seq ^ id) as u8).collect();
    let handle = (seq % 13 == 5).then(|| probe.clone());
    (id, seq, serde_bytes::ByteBuf::from(payload), handle)
}

/// Whether `item` is what `tagged` made, handle included (and working).
fn tagged_is_whole(item: &Tagged) -> bool {
    let (id, seq, payload, handle) = item;
    let expected = tagged(*id, *seq, &Queue::new().unwrap());
    payload == &expected.2
        && handle.is_some() == expected.3.is_some()
        && handle.as_ref().is_none_or(|h| !h.is_closed())
}

/// Puts `0..n` with `put_many`, in batches of 1 to 64 items.
#[multiproc::worker]
fn put_batches(q: Queue<Tagged>, probe: Queue<u8>, id: u32, n: u32) {
    let mut seq = 0;
    while seq < n {
        let end = (seq + 1 + seq * 31 % 64).min(n);
        q.put_many((seq..end).map(|s| tagged(id, s, &probe)))
            .unwrap_or_else(|e| panic!("put_many: {e}"));
        seq = end;
    }
}

/// Puts `0..n` one `put` at a time.
#[multiproc::worker]
fn put_singles(q: Queue<Tagged>, probe: Queue<u8>, id: u32, n: u32) {
    for seq in 0..n {
        q.put(tagged(id, seq, &probe))
            .unwrap_or_else(|e| panic!("put: {e}"));
    }
}

/// Takes items until the queue is closed and empty (with `get_many` of up to `max`,
/// or `get` if `max` is 0); returns their ids, or what was wrong with one.
#[multiproc::worker]
fn take_tagged(q: Queue<Tagged>, max: usize) -> Result<Vec<(u32, u32)>, String> {
    let mut got = Vec::new();
    let mut batch = Vec::new();
    loop {
        batch.clear();
        let taken = if max == 0 {
            q.get().map(|item| batch.push(item))
        } else {
            q.get_many(&mut batch, max).map(|n| {
                assert!((1..=max).contains(&n) && n == batch.len());
            })
        };
        match taken {
            Ok(()) => {}
            Err(e) if e.is_closed() => return Ok(got),
            Err(e) => return Err(format!("get: {e}")),
        }
        for item in &batch {
            if !tagged_is_whole(item) {
                return Err(format!("item {}:{} is not whole", item.0, item.1));
            }
            got.push((item.0, item.1));
        }
    }
}

#[test]
fn batches_and_single_items_mix_across_processes() {
    let q: Queue<Tagged> = Queue::builder()
        .buffer_size(BATCH_RING)
        .capacity(100)
        .build()
        .unwrap();
    let probe = Queue::new().unwrap();
    const N: u32 = 2000;
    let producers = [
        put_batches::spawn(q.clone(), probe.clone(), 1, N).unwrap(),
        put_batches::spawn(q.clone(), probe.clone(), 2, N).unwrap(),
        put_singles::spawn(q.clone(), probe.clone(), 3, N).unwrap(),
    ];
    let consumers = [
        take_tagged::spawn(q.clone(), 37).unwrap(),
        take_tagged::spawn(q.clone(), 1000).unwrap(),
        take_tagged::spawn(q.clone(), 0).unwrap(),
    ];
    for p in producers {
        assert_eq!(p.join().unwrap(), 0);
    }
    q.close();
    let mut all = Vec::new();
    for c in consumers {
        let got = c.join_value().unwrap();
        // Each consumer sees each producer's items in order.
        for id in 1..=3 {
            let mine: Vec<u32> = got
                .iter()
                .filter(|(i, _)| *i == id)
                .map(|(_, s)| *s)
                .collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "producer {id}");
        }
        all.extend(got);
    }
    all.sort_unstable();
    let expected: Vec<(u32, u32)> = (1..=3)
        .flat_map(|id| (0..N).map(move |s| (id, s)))
        .collect();
    assert_eq!(all, expected);
}

/// Puts `0..n` with one `put_many`.
#[multiproc::worker]
fn put_all_at_once(q: Queue<u64>, n: u64) {
    q.put_many(0..n).unwrap_or_else(|e| panic!("put_many: {e}"));
}

#[test]
fn put_many_waits_for_room_in_a_bounded_queue() {
    let q: Queue<u64> = Queue::with_capacity(4).unwrap();
    let p = put_all_at_once::spawn(q.clone(), 100).unwrap();
    // The producer fills the queue and must then wait: it is still running with the
    // queue full.
    while q.qsize() < 4 {
        assert!(p.is_alive(), "the producer ended with the queue not full");
        std::thread::yield_now();
    }
    assert!(p.is_alive());
    let mut got = Vec::new();
    while got.len() < 100 {
        assert!(q.qsize() <= 4);
        q.get_many_timeout(&mut got, 3, Duration::from_secs(60))
            .unwrap();
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert_eq!(p.join().unwrap(), 0);
    assert!(q.try_get_many(&mut got, 10).unwrap_err().is_empty());
}

#[test]
fn drain_takes_what_a_child_left() {
    let q: Queue<u64> = Queue::builder().buffer_size(4096).build().unwrap();
    let p = put_range::spawn(q.clone(), 0, 100).unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let drained: Vec<u64> = q.drain().map(|item| item.unwrap()).collect();
    assert_eq!(drained, (0..100).collect::<Vec<_>>());
    assert!(q.is_empty());
    assert_eq!(q.drain().count(), 0);
}

/// Takes tasks in batches until a `None`, reporting each and marking it done.
#[multiproc::worker]
fn joinable_batch_consumer(tasks: JoinableQueue<Option<u32>>, results: Queue<u32>) {
    let mut batch = Vec::new();
    loop {
        batch.clear();
        tasks.as_queue().get_many(&mut batch, 8).unwrap();
        for task in &batch {
            if let Some(x) = task {
                results.put(x * 10).unwrap();
            }
            tasks.task_done().unwrap();
        }
        if batch.iter().any(Option::is_none) {
            return;
        }
    }
}

#[test]
fn joinable_queue_counts_each_item_of_a_batch_as_a_task() {
    let tasks = JoinableQueue::new().unwrap();
    let results = Queue::new().unwrap();
    tasks
        .as_queue()
        .put_many((0..500).map(Some).chain([None]))
        .unwrap();
    assert_eq!(tasks.unfinished_tasks(), 501);
    let worker = joinable_batch_consumer::spawn(tasks.clone(), results.clone()).unwrap();
    assert!(tasks.join_timeout(Duration::from_secs(60)));
    assert_eq!(tasks.unfinished_tasks(), 0);
    let got: Vec<u32> = results.drain().map(|r| r.unwrap()).collect();
    assert_eq!(got, (0..500).map(|x| x * 10).collect::<Vec<_>>());
    assert_eq!(worker.join().unwrap(), 0);
}

/// The edges of the variable-length integer encoding, and the extremes.
const EDGES: [u64; 9] = [
    0,
    1,
    250,
    251,
    0xffff,
    0x1_0000,
    0xffff_ffff,
    1 << 32,
    u64::MAX,
];

/// Puts the edge values of each primitive type the codec writes directly, one at a
/// time and with `put_many`, then a value that holds a handle among plain ones.
#[multiproc::worker]
fn put_primitives(
    ints: Queue<u64>,
    signed: Queue<i32>,
    floats: Queue<f64>,
    flags: Queue<bool>,
    arrays: Queue<[u8; 8]>,
    holding: Queue<(u64, Option<Queue<u64>>)>,
) {
    for v in EDGES {
        ints.put(v).unwrap_or_else(|e| panic!("put: {e}"));
    }
    ints.put_many(EDGES)
        .unwrap_or_else(|e| panic!("put_many: {e}"));
    let signed_edges = EDGES.map(|v| v as i32).into_iter().chain([i32::MIN, -1]);
    signed
        .put_many(signed_edges)
        .unwrap_or_else(|e| panic!("put_many: {e}"));
    for v in EDGES {
        floats
            .put(v as f64 / 3.0)
            .unwrap_or_else(|e| panic!("put: {e}"));
        arrays
            .put(v.to_le_bytes())
            .unwrap_or_else(|e| panic!("put: {e}"));
    }
    flags
        .put_many([true, false, true])
        .unwrap_or_else(|e| panic!("put_many: {e}"));
    let inner = Queue::new().unwrap_or_else(|e| panic!("queue: {e}"));
    inner.put(42).unwrap_or_else(|e| panic!("put: {e}"));
    holding
        .put_many([(1, None), (2, Some(inner)), (3, None)])
        .unwrap_or_else(|e| panic!("put_many: {e}"));
}

#[test]
fn primitives_cross_whole_and_a_handle_among_them_keeps_its_descriptor() {
    let (ints, signed, floats, flags, arrays, holding) = (
        Queue::new().unwrap(),
        Queue::new().unwrap(),
        Queue::new().unwrap(),
        Queue::new().unwrap(),
        Queue::new().unwrap(),
        Queue::new().unwrap(),
    );
    let p = put_primitives::spawn(
        ints.clone(),
        signed.clone(),
        floats.clone(),
        flags.clone(),
        arrays.clone(),
        holding.clone(),
    )
    .unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(0));
    let singles: Vec<u64> = EDGES.iter().map(|_| ints.get().unwrap()).collect();
    assert_eq!(singles, EDGES);
    let mut batch = Vec::new();
    while batch.len() < EDGES.len() {
        ints.get_many(&mut batch, 100).unwrap();
    }
    assert_eq!(batch, EDGES);
    let mut got = Vec::new();
    while got.len() < EDGES.len() + 2 {
        signed.get_many(&mut got, 3).unwrap();
    }
    let expected: Vec<i32> = EDGES
        .map(|v| v as i32)
        .into_iter()
        .chain([i32::MIN, -1])
        .collect();
    assert_eq!(got, expected);
    for v in EDGES {
        assert_eq!(floats.get().unwrap().to_bits(), (v as f64 / 3.0).to_bits());
        assert_eq!(arrays.get().unwrap(), v.to_le_bytes());
    }
    assert_eq!(
        flags.drain().collect::<Result<Vec<_>, _>>().unwrap(),
        [true, false, true]
    );
    let mut items = Vec::new();
    while items.len() < 3 {
        holding.get_many(&mut items, 10).unwrap();
    }
    let tags: Vec<u64> = items.iter().map(|(tag, _)| *tag).collect();
    assert_eq!(tags, [1, 2, 3]);
    // The queue inside the second item works in this process: its descriptor came.
    let inner = items[1].1.as_ref().expect("the item holding a queue");
    assert_eq!(inner.get_timeout(Duration::from_secs(10)).unwrap(), 42);
    assert!(ints.try_get().unwrap_err().is_empty());
    assert!(holding.try_get().unwrap_err().is_empty());
}
