//! Consumer groups across processes on one data directory: `eventbus tail --group` run as three
//! processes shares a topic's partitions, and when one is killed the others take its share over.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const TOPIC: &str = "shared.work";

/// What each process printed: the `seq` of each event it handled.
type Seen = Arc<Mutex<Vec<u64>>>;

/// Starts `eventbus tail TOPIC --group workers` and collects the events it prints.
fn worker(env: &Env) -> (Running, Seen) {
    let mut child = env
        .cmd(&["tail", TOPIC, "--group", "workers"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            sink.lock().unwrap().push(event["data"]["seq"].as_u64().unwrap());
        }
    });
    (Running(child), seen)
}

fn publish(env: &Env, range: std::ops::Range<u64>) {
    let lines: Vec<String> = range
        .map(|n| {
            format!(
                r#"{{"event_type": "work_item_created", "entity_type": "work", "entity_id": "item_{n}", "data": {{"seq": {n}}}}}"#
            )
        })
        .collect();
    let output = env.run_with_stdin(&["publish", TOPIC], &lines.join("\n"));
    assert!(output.status.success(), "{}", stderr(&output));
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_processes_share_six_partitions_and_the_survivors_finish_the_work_of_one_killed() {
    // Given a topic of six partitions and three processes in one group, with leases of 1 s
    let env = Env::new();
    std::fs::create_dir_all(env.dir.path().join("data")).unwrap();
    std::fs::write(env.dir.path().join("data").join("eventbus.toml"), "[embedded]\nlease_ttl_ms = 1000\n").unwrap();
    let output = env.run(&["topics", "create", TOPIC, "--partitions", "6"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut workers: Vec<(Running, Seen)> = (0..3).map(|_| worker(&env)).collect();
    std::thread::sleep(Duration::from_secs(3));

    // When 600 events of distinct keys arrive
    publish(&env, 0..600);
    let total = |workers: &[(Running, Seen)]| workers.iter().map(|(_, seen)| seen.lock().unwrap().len()).sum::<usize>();
    wait_for("the 600 events handled", Duration::from_secs(30), || total(&workers) >= 600);

    // Then each process handled a share, and together every event once
    let shares: Vec<Vec<u64>> = workers.iter().map(|(_, seen)| seen.lock().unwrap().clone()).collect();
    assert!(
        shares.iter().all(|share| !share.is_empty()),
        "every process has a share: {:?}",
        shares.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let mut all: Vec<u64> = shares.concat();
    all.sort();
    assert_eq!(all, (0..600).collect::<Vec<_>>());

    // When one is killed and 600 more arrive
    let (mut killed, killed_seen) = workers.remove(1);
    kill_9(&mut killed.0);
    let killed_at = Instant::now();
    publish(&env, 600..1200);

    // Then the two survivors finish all of it, within a few lease times
    let later = |workers: &[(Running, Seen)]| -> HashSet<u64> {
        workers.iter().flat_map(|(_, seen)| seen.lock().unwrap().clone()).filter(|n| *n >= 600).collect()
    };
    wait_for("the survivors to handle the 600 new events", Duration::from_secs(30), || later(&workers).len() == 600);
    eprintln!("the survivors finished the killed process's share {:?} after the kill", killed_at.elapsed());
    // and nothing was handled twice but what the killed process may have left uncommitted
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for (_, seen) in &workers {
        for n in seen.lock().unwrap().iter() {
            *counts.entry(*n).or_default() += 1;
        }
    }
    let killed_seen: HashSet<u64> = killed_seen.lock().unwrap().iter().copied().collect();
    for (n, count) in counts {
        assert!(count == 1 || killed_seen.contains(&n), "event {n} handled {count} times by the survivors");
    }
    for (mut worker, _) in workers {
        terminate(&worker.0);
        worker.0.wait().unwrap();
    }
}
