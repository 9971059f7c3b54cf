//! Producers and consumers of one queue killed with SIGKILL at random moments, hundreds
//! of times: in the middle of a `put` or a `get`, holding the queue's locks, between
//! sending an item's descriptors and publishing it. The survivors and the replacements
//! must keep going, and every item anyone receives must be whole, received once, and
//! in its producer's order.
//!
//! Half the producers put with `put_many` and half the consumers take with
//! `get_many`, so that a kill also lands in the middle of a batch.
//!
//! Items are of every size the queue handles differently: small ones, ones that wrap
//! around the end of the (deliberately small) ring, ones too large for it (which go into
//! memory of their own, through the descriptor courier), and ones carrying a handle.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::{Process, Queue};
use serde::{Deserialize, Serialize};

/// The queue's ring: small, so that items wrap often and the largest spill.
const RING: usize = 16 << 10;
const KILLS: usize = 300;
const FINAL_ITEMS: u64 = 2000;

#[derive(Serialize, Deserialize)]
struct Item {
    producer: u64,
    seq: u64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
    /// Sometimes a handle, to send descriptors through the courier.
    handle: Option<Queue<u8>>,
    checksum: u64,
}

#[derive(Serialize, Deserialize, Debug)]
enum Report {
    Got { producer: u64, seq: u64 },
    Bad(String),
}

fn checksum(producer: u64, seq: u64, payload: &[u8], has_handle: bool) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in producer
        .to_le_bytes()
        .iter()
        .chain(&seq.to_le_bytes())
        .chain(payload)
        .chain(&[u8::from(has_handle)])
    {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn make_item(producer: u64, seq: u64, probe: &Queue<u8>) -> Item {
    let mut rng = producer.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seq ^ 0x5555;
    xorshift(&mut rng);
    let len = match xorshift(&mut rng) % 16 {
        0 => 9000 + (xorshift(&mut rng) % 30_000) as usize, // spills
        1..=3 => 1000 + (xorshift(&mut rng) % 6000) as usize, // wraps often
        _ => (xorshift(&mut rng) % 200) as usize,
    };
    let payload: Vec<u8> = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
    let handle = (seq % 7 == 3).then(|| probe.clone());
    Item {
        producer,
        seq,
        checksum: checksum(producer, seq, &payload, handle.is_some()),
        payload,
        handle,
    }
}

/// Puts items `0..n` (forever if `n` is `None`): one `put` at a time, or with
/// `put_many` of 1 to 24 items if `batch`.
#[multiproc::worker]
fn producer(q: Queue<Option<Item>>, probe: Queue<u8>, id: u64, n: Option<u64>, batch: bool) {
    let mut seq = 0;
    while n.is_none_or(|n| seq < n) {
        if batch {
            let end = (seq + 1 + seq * 7 % 24).min(n.unwrap_or(u64::MAX));
            q.put_many((seq..end).map(|s| Some(make_item(id, s, &probe))))
                .unwrap_or_else(|e| panic!("put_many: {e}"));
            seq = end;
        } else {
            q.put(Some(make_item(id, seq, &probe)))
                .unwrap_or_else(|e| panic!("put: {e}"));
            seq += 1;
        }
    }
}

/// Takes items until a `None`, checks each, and reports it: one `get` at a time, or
/// with `get_many` of up to 16 if `batch`.
#[multiproc::worker]
fn consumer(q: Queue<Option<Item>>, reports: Queue<Report>, batch: bool) {
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut taken = Vec::new();
    loop {
        taken.clear();
        let mut failed = None;
        if batch {
            if let Err(e) = q.get_many(&mut taken, 16) {
                failed = Some(format!("get_many failed: {e}"));
            }
        } else {
            match q.get() {
                Ok(item) => taken.push(item),
                Err(e) => failed = Some(format!("get failed: {e}")),
            }
        }
        let mut ends = 0;
        for item in &taken {
            let report = match item {
                None => {
                    ends += 1;
                    continue;
                }
                Some(item) => check(item, &mut last),
            };
            reports
                .put(report)
                .unwrap_or_else(|e| panic!("report: {e}"));
        }
        if let Some(why) = failed {
            reports
                .put(Report::Bad(why))
                .unwrap_or_else(|e| panic!("report: {e}"));
        }
        if ends > 0 {
            // A batch may hold other consumers' ends too: give those back.
            for _ in 1..ends {
                q.put(None).unwrap_or_else(|e| panic!("put back: {e}"));
            }
            return;
        }
    }
}

fn check(item: &Item, last: &mut HashMap<u64, u64>) -> Report {
    let sum = checksum(
        item.producer,
        item.seq,
        &item.payload,
        item.handle.is_some(),
    );
    if sum != item.checksum {
        return Report::Bad(format!(
            "torn item {}:{} ({} bytes)",
            item.producer,
            item.seq,
            item.payload.len()
        ));
    }
    if item.handle.as_ref().is_some_and(|h| h.is_closed()) {
        return Report::Bad("a handle that does not work".into());
    }
    if let Some(prev) = last.insert(item.producer, item.seq) {
        if item.seq <= prev {
            return Report::Bad(format!(
                "producer {}: seq {} after {prev}",
                item.producer, item.seq
            ));
        }
    }
    Report::Got {
        producer: item.producer,
        seq: item.seq,
    }
}

struct Peers {
    q: Queue<Option<Item>>,
    probe: Queue<u8>,
    reports: Queue<Report>,
    next_id: u64,
    consumers: u64,
}

impl Peers {
    /// A new producer; every other one puts in batches.
    fn producer(&mut self, n: Option<u64>) -> (u64, Process) {
        self.next_id += 1;
        let id = self.next_id;
        let batch = id % 2 == 0;
        let p = producer::spawn(self.q.clone(), self.probe.clone(), id, n, batch).unwrap();
        (id, p)
    }

    /// A new consumer; every other one takes in batches.
    fn consumer(&mut self) -> Process {
        self.consumers += 1;
        let batch = self.consumers % 2 == 0;
        consumer::spawn(self.q.clone(), self.reports.clone(), batch).unwrap()
    }
}

#[test]
fn killed_producers_and_consumers_never_wedge_or_tear() {
    // A capacity in items makes the ring a fixed one: items wrap around its end.
    let q = Queue::builder()
        .capacity(1 << 20)
        .buffer_size(RING)
        .build()
        .unwrap();
    kill_all_along(q, "fixed ring");
}

#[test]
fn killed_peers_of_an_unbounded_queue_that_grew_never_wedge_or_tear() {
    // No capacity: the ring grows beyond its RING resident bytes while consumers lag,
    // gives pages back as they read, and rewinds when they catch up; the kills land
    // in all of that.
    let q = Queue::builder().buffer_size(RING).build().unwrap();
    kill_all_along(q, "growable ring");
}

fn kill_all_along(q: Queue<Option<Item>>, what: &str) {
    let started = Instant::now();
    let mut peers = Peers {
        q,
        probe: Queue::new().unwrap(),
        reports: Queue::new().unwrap(),
        next_id: 0,
        consumers: 0,
    };
    // The parent reads the reports all along, on a thread of its own.
    let collected: Arc<Mutex<Vec<Report>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let (reports, collected, done) = (peers.reports.clone(), collected.clone(), done.clone());
        std::thread::spawn(move || {
            loop {
                match reports.get_timeout(Duration::from_millis(50)) {
                    Ok(r) => collected.lock().unwrap().push(r),
                    Err(e) if e.is_timeout() && done.load(Ordering::SeqCst) => return,
                    Err(e) if e.is_timeout() => {}
                    Err(e) => panic!("reports: {e}"),
                }
            }
        })
    };

    let mut producers: Vec<(u64, Process)> = (0..2).map(|_| peers.producer(None)).collect();
    let mut consumers: Vec<Process> = (0..2).map(|_| peers.consumer()).collect();
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut killed_producers = 0;
    let mut most_queued = 0;
    for kill in 0..KILLS {
        // Let everyone run to a random point, then kill one of them there.
        std::thread::sleep(Duration::from_micros(xorshift(&mut rng) % 3000));
        most_queued = most_queued.max(peers.q.qsize());
        let victim = if kill % 2 == 0 {
            let i = (xorshift(&mut rng) % producers.len() as u64) as usize;
            killed_producers += 1;
            let (_, p) = std::mem::replace(&mut producers[i], peers.producer(None));
            p
        } else {
            let i = (xorshift(&mut rng) % consumers.len() as u64) as usize;
            std::mem::replace(&mut consumers[i], peers.consumer())
        };
        victim.kill().unwrap();
        assert_eq!(
            victim.join().unwrap(),
            -9,
            "the victim ended before its kill"
        );
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "only {kill} kills in 50 s: something waits too long"
        );
    }

    // No more kills. The last producers end (killed, for they run for ever), then one
    // more puts a known number of items: all must arrive.
    for (_, p) in producers.drain(..) {
        p.kill().unwrap();
        p.join().unwrap();
    }
    let (final_id, last) = peers.producer(Some(FINAL_ITEMS));
    assert_eq!(last.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
    for _ in &consumers {
        peers.q.put(None).unwrap();
    }
    for c in consumers {
        assert_eq!(c.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
    }
    done.store(true, Ordering::SeqCst);
    collector.join().unwrap();

    let reports = std::mem::take(&mut *collected.lock().unwrap());
    let bad: Vec<&String> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Bad(why) => Some(why),
            Report::Got { .. } => None,
        })
        .collect();
    assert!(bad.is_empty(), "{} bad items: {bad:?}", bad.len());
    let mut seen = HashSet::new();
    let mut from_killed = 0;
    let mut from_final = 0;
    for r in &reports {
        if let Report::Got { producer, seq } = r {
            assert!(
                seen.insert((*producer, *seq)),
                "{producer}:{seq} received twice"
            );
            if *producer == final_id {
                from_final += 1;
            } else {
                from_killed += 1;
            }
        }
    }
    assert_eq!(
        from_final, FINAL_ITEMS,
        "the last producer's items did not all arrive"
    );
    assert!(from_killed > 0);
    assert!(killed_producers >= KILLS / 2);
    eprintln!(
        "{what}: {KILLS} kills, {} items received intact ({from_killed} from killed producers), \
         up to {most_queued} queued, in {:.1} s",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
}
