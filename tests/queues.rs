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
