//! The embedded store across processes: durability through `kill -9`, several processes on one
//! data directory, and clear errors for a store that is locked or corrupt, or a bad config.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn an_acknowledged_publish_survives_kill_9() {
    // Given a producer publishing as fast as it can, logging each acknowledged batch
    let env = Env::new();
    let mut child = env
        .cmd(&["produce", "bank-transactions", "--count", "0", "--rate", "0", "--seed", "7"])
        .env("EVENTBUS_LOG", "eventbus::produce=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, acks) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("sent=").nth(1) {
                let sent: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
                if tx.send(sent).is_err() {
                    return;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acknowledged = 0u64;
    while acknowledged < 20_000 && Instant::now() < deadline {
        match acks.recv_timeout(Duration::from_secs(1)) {
            Ok(sent) => acknowledged = sent,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // When it is killed without warning
    child.kill().unwrap();
    child.wait().unwrap();
    acknowledged = acks.try_iter().last().unwrap_or(acknowledged).max(acknowledged);
    assert!(acknowledged > 0, "the producer acknowledged nothing");
    // Then every acknowledged event is in the store
    let stored = events_in(&env, "bank.transactions");
    assert!(stored >= acknowledged, "stored {stored} < acknowledged {acknowledged}");
}

#[test]
fn three_processes_share_the_store_and_restart_and_replay_agree() {
    // Given the recommender running in its own process while two producer processes publish
    let env = Env::new();
    env.run(&["topics", "list"]);
    let live = env
        .cmd(&["consume", "recommendations", "--group", "live", "--idle-exit", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let producers: Vec<_> = [("bank-transactions", "1"), ("market-prices", "2")]
        .iter()
        .map(|(producer, seed)| {
            env.cmd(&["produce", producer, "--count", "400", "--rate", "400", "--seed", seed])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for producer in producers {
        let output = producer.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let live = live.wait_with_output().unwrap();
    assert!(live.status.success(), "{}", stderr(&live));
    assert_eq!(events_in(&env, "bank.transactions"), 400);
    assert_eq!(events_in(&env, "market.price.updates"), 400);
    let live = sorted_lines(&live);
    assert!(!live.is_empty(), "the live consumer issued no recommendation");

    // When another group reads in two runs, stopped after 300 events and restarted
    let first = env.run(&["consume", "recommendations", "--group", "split", "--max", "300", "--idle-exit", "5"]);
    let second = env.run(&["consume", "recommendations", "--group", "split", "--idle-exit", "1"]);
    assert!(stderr(&first).contains("Consumed 300 event(s)"), "{}", stderr(&first));
    assert!(stderr(&second).contains("Consumed 500 event(s)"), "{}", stderr(&second));
    let mut split = sorted_lines(&first);
    split.extend(sorted_lines(&second));
    split.sort();

    // And a new group replays from the beginning
    let replay = env.run(&["consume", "recommendations", "--group", "replay", "--from-beginning", "--idle-exit", "1"]);

    // Then all three saw the same recommendations
    assert_eq!(split, live, "a restarted consumer resumes with its state rebuilt");
    assert_eq!(sorted_lines(&replay), live, "a replay reproduces the live run");
}

#[test]
fn a_store_locked_by_another_process_gives_a_clear_error() {
    // Given a store whose write lock another process holds
    let env = Env::new();
    assert!(env.run(&["topics", "list"]).status.success());
    let holder = rusqlite::Connection::open(env.dir.path().join("data").join("eventbus.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let config = env.dir.path().join("eventbus.toml");
    std::fs::write(&config, "[embedded]\nbusy_timeout_ms = 200\n").unwrap();
    // When a command needs to write
    let output = env.run_with_stdin(&["--config", config.to_str().unwrap(), "publish", "nexum.audit.events"], GOOD);
    // Then it fails with a message that says the store is locked
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("locked by another process"), "{}", stderr(&output));
}

#[test]
fn bad_flags_and_a_corrupt_store_give_clear_errors_without_panics() {
    let env = Env::new();
    let output = env.run(&["produce", "bank-transactions", "--rate", "-5"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("invalid rate `-5`"), "{}", stderr(&output));

    let output = env.run(&["produce", "bank-transactions", "--rate", "1e-30"]);
    assert_eq!(output.status.code(), Some(2));
    let output = env.run(&["tail", "bank.transactions", "--idle-exit", "1e300"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("invalid --idle-exit"), "{}", stderr(&output));

    let output = env.run(&["--bus", "rabbit", "topics", "list"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unknown backend `rabbit`"), "{}", stderr(&output));

    let data = env.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("eventbus.db"), vec![7u8; 4096]).unwrap();
    let output = env.run(&["topics", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("corrupt"), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn an_unknown_config_key_is_refused_by_name() {
    let env = Env::new();
    let config = env.dir.path().join("eventbus.toml");
    std::fs::write(&config, "bus = \"memory\"\nretension_ms = 5\n").unwrap();
    let output = env.run(&["--config", config.to_str().unwrap(), "topics", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("retension_ms"), "{}", stderr(&output));
}
