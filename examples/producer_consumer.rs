//! The usage guide's "Queue: Producer-Consumer": a `JoinableQueue` of tasks shared by
//! `2 x cpu_count()` consumers, `None` sentinels to stop them, `task_done` for each
//! task, and a results queue.
//!
//! ```text
//! cargo run --example producer_consumer
//! ```
//!
//! The guide's producer puts a single task, and its last loop gets `max_num_tasks`
//! results from a queue that only ever holds one, so it would wait for ever. This twin
//! does what the guide means: the producer puts `max_num_tasks` tasks, each consumer
//! puts one result per task, and the parent collects them all.

use std::time::Duration;

use multiproc::prelude::*;

/// Takes tasks until a `None`; marks each done and reports a result.
#[multiproc::worker]
fn consumer(tasks: JoinableQueue<Option<String>>, results: Queue<String>) -> multiproc::Result<()> {
    loop {
        let Some(task) = tasks.get()? else {
            tasks.task_done()?;
            break;
        };
        // ... to process the task
        std::thread::sleep(Duration::from_millis(20));
        let result = format!("{task} done by {}", current_process().name());
        tasks.task_done()?;
        results.put(result)?;
    }
    Ok(())
}

/// Puts the tasks, then one sentinel per consumer.
#[multiproc::worker]
fn producer(tasks: JoinableQueue<Option<String>>, max_num_tasks: usize) -> multiproc::Result<()> {
    for i in 0..max_num_tasks {
        tasks.put(Some(format!("task {i}")))?;
    }
    for _ in 0..max_num_tasks {
        tasks.put(None)?;
    }
    Ok(())
}

fn main() -> multiproc::Result<()> {
    let max_num_tasks = multiproc::cpu_count() * 2;
    let tasks = JoinableQueue::with_capacity(max_num_tasks)?;
    let results = Queue::with_capacity(max_num_tasks)?;

    // Start the consumers.
    let consumers = (0..max_num_tasks)
        .map(|_| consumer::spawn(tasks.clone(), results.clone()))
        .collect::<multiproc::Result<Vec<_>>>()?;

    // Start the producer.
    let p = producer::spawn(tasks.clone(), max_num_tasks)?;

    // Wait until every task (and sentinel) is done, then for the processes.
    tasks.join();
    p.join()?;
    for c in &consumers {
        c.join()?;
    }
    let failed = consumers.iter().filter(|c| c.exitcode() != Some(0)).count();
    assert_eq!((p.exitcode(), failed), (Some(0), 0));

    // Collect the results: one per task.
    let mut collected = Vec::with_capacity(max_num_tasks);
    for _ in 0..max_num_tasks {
        collected.push(results.get()?);
    }
    collected.sort_by_key(|r| {
        r.split(' ')
            .nth(1)
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    });
    for result in &collected {
        println!("{result}");
    }
    println!(
        "producer_consumer: {max_num_tasks} consumers did {} tasks; {} unfinished, queue empty: {}",
        collected.len(),
        tasks.unfinished_tasks(),
        results.is_empty()
    );
    Ok(())
}
