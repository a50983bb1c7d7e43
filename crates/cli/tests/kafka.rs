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

#[test]
fn serve_on_kafka_carries_out_commands_published_from_another_process_on_its_data_directory() {
    // Given `eventbus serve` on Kafka: it holds the data directory's outbox
    let env = Env::new();
    let flags = kafka(&env);
    let flag_args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (mut serve, _log, _address) = start_serve(&mut env.cmd(&flag_args), &["--no-loan-offers"]);
    let run = |args: &[&str], input: &str| {
        let args = with(&flags, args);
        env.run_with_stdin(&args.iter().map(String::as_str).collect::<Vec<_>>(), input)
    };

    // When commands are published with `eventbus publish` on the same data directory (the
    // shared topics keep other runs' commands, so the ids are this run's own)
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let id = format!("{}{}", std::process::id(), now.as_nanos() % 1_000_000_000);
    let (customer, account) = (format!("cust_k{id}"), format!("acc_k{id}"));
    let customers = format!(
        "{}\n{}\n",
        format_args!(
            r#"{{"event_id": "cmd-kc1-{id}", "event_type": "customer_command", "entity_type": "customer", "entity_id": "{customer}", "data": {{"action": "create", "customer_id": "{customer}", "first_name": "Jane", "last_name": "Smith", "email": "jane.{id}@example.com"}}}}"#
        ),
        format_args!(
            r#"{{"event_id": "cmd-kc2-{id}", "event_type": "customer_command", "entity_type": "customer", "entity_id": "{customer}", "data": {{"action": "open_account", "customer_id": "{customer}", "account_type": "checking", "currency": "USD", "account_id": "{account}"}}}}"#
        ),
    );
    let output = run(&["publish", "nexum.commands.customers"], &customers);
    assert!(output.status.success(), "{}", stderr(&output));
    let deposit = format!(
        r#"{{"event_id": "cmd-kd-{id}", "event_type": "transaction_command", "entity_type": "transaction", "entity_id": "{account}", "data": {{"action": "deposit", "account_id": "{account}", "amount": "100.00", "currency": "USD"}}}}"#
    );
    // (The account must exist before the deposit: commands of different topics are not ordered.)
    let started = Instant::now();
    let opened = loop {
        let output = run(&["tail", "nexum.accounts.created", "--from-beginning", "--idle-exit", "3"], "");
        if stdout(&output).contains(&account) || started.elapsed() > Duration::from_secs(60) {
            break stdout(&output).contains(&account);
        }
    };
    assert!(opened, "the account was opened");
    let output = run(&["publish", "nexum.commands.transactions"], &format!("{deposit}\n"));
    assert!(output.status.success(), "{}", stderr(&output));

    // Then serve carries the deposit out
    let started = Instant::now();
    let posted = loop {
        let output = run(&["tail", "nexum.transactions.posted", "--from-beginning", "--idle-exit", "3"], "");
        let found = stdout(&output).lines().any(|line| line.contains(&format!("cmd-kd-{id}")));
        if found || started.elapsed() > Duration::from_secs(60) {
            break found;
        }
    };
    assert!(posted, "the deposit was posted");
    assert!(serve.0.try_wait().unwrap().is_none(), "serve still runs");
    terminate(&serve.0);
}
