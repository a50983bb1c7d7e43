//! The CLI on the Kafka backend, against the broker the test script starts.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn the_cli_publishes_tails_and_describes_on_kafka() {
    let env = Env::new();
    let flags = kafka(&env);
    let topic = format!("cli.kafka.{}", std::process::id());
    let run = |args: Vec<String>| env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let output = run(with(&flags, &["topics", "create", &topic, "--partitions", "3"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let args = with(&flags, &["publish", &topic]);
    let output = env.run_with_stdin(&args.iter().map(String::as_str).collect::<Vec<_>>(), &format!("{GOOD}\n{GOOD}\n"));
    assert!(output.status.success(), "{}", stderr(&output));
    let output = run(with(&flags, &["tail", &topic, "--from-beginning", "--max", "2", "--idle-exit", "10"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).lines().count(), 2);
    let output = run(with(&flags, &["topics", "describe", &topic]));
    assert!(stdout(&output).contains("PartitionCount: 3"), "{}", stdout(&output));
    let output = run(with(&flags, &["publish", "no.such.topic"]));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("unknown topic `no.such.topic`"), "{}", stderr(&output));
}

#[test]
fn an_unreachable_broker_fails_within_the_request_timeout() {
    let env = Env::new();
    let config = env.dir.path().join("kafka.toml");
    std::fs::write(&config, "[kafka]\nrequest_timeout_ms = 1500\n").unwrap();
    let started = Instant::now();
    let output = env.run(&[
        "--bus",
        "kafka",
        "--brokers",
        "127.0.0.1:1",
        "--config",
        config.to_str().unwrap(),
        "topics",
        "list",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot reach Kafka at 127.0.0.1:1"), "{}", stderr(&output));
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}
