//! The `eventbus` binary end to end, on the embedded backend in a temporary data directory.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventbus"));
        cmd.arg("--data-dir").arg(self.dir.path().join("data")).args(args);
        cmd.env_remove("EVENTBUS_BUS").env_remove("EVENTBUS_CONFIG").env("EVENTBUS_LOG", "warn");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child =
            self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn events_in(env: &Env, topic: &str) -> u64 {
    let output = env.run(&["topics", "list"]);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.first() == Some(&topic)).then(|| cols[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{topic} not listed"))
}

const GOOD: &str = r#"{"event_type": "transaction_created", "entity_type": "transaction", "entity_id": "txn_1", "data": {"amount": "100.50", "currency": "USD"}}"#;

#[test]
fn publish_then_tail_round_trips_events_and_fills_in_ids() {
    // Given two events published from stdin, one with its own id
    let env = Env::new();
    let with_id = r#"{"event_id": "evt-fixed", "event_type": "transaction_posted", "timestamp": "2024-01-01T12:00:00Z", "entity_type": "transaction", "entity_id": "txn_2", "data": {"amount": "1.00", "currency": "USD"}}"#;
    let output = env.run_with_stdin(&["publish", "nexum.transactions.created"], &format!("{GOOD}\n\n{with_id}\n"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("Published 2 event(s)"));
    // When the topic is tailed from the beginning as JSON
    let output = env.run(&["tail", "nexum.transactions.created", "--from-beginning", "--max", "2", "--idle-exit", "5"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // Then each line is one EventSchema; the first got an id and a timestamp, the second kept its own
    let lines: Vec<serde_json::Value> = stdout(&output).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let first = lines.iter().find(|e| e["entity_id"] == "txn_1").unwrap();
    assert!(first["event_id"].as_str().is_some_and(|id| id.len() == 36));
    assert!(first["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    let second = lines.iter().find(|e| e["entity_id"] == "txn_2").unwrap();
    assert_eq!(second["event_id"], "evt-fixed");
    assert_eq!(second["timestamp"], "2024-01-01T12:00:00Z");
    assert_eq!(second["data"]["amount"], "1.00");
}

#[test]
fn a_malformed_line_is_reported_by_number_and_the_others_are_published() {
    let env = Env::new();
    let input = format!("{GOOD}\nnot json\n{GOOD}\n{{\"event_type\": 5}}\n{GOOD}\n");
    let output = env.run_with_stdin(&["publish", "nexum.audit.events"], &input);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("line 2:"), "{err}");
    assert!(err.contains("line 4:"), "{err}");
    assert!(err.contains("Published 3 event(s)"), "{err}");
    assert_eq!(events_in(&env, "nexum.audit.events"), 3);
}

#[test]
fn a_line_that_is_not_utf8_is_rejected_by_number_and_the_rest_published() {
    let env = Env::new();
    let mut input = format!("{GOOD}\n").into_bytes();
    input.extend_from_slice(b"\xff\xfe\n");
    input.extend_from_slice(format!("{GOOD}\n").as_bytes());
    let mut child =
        env.cmd(&["publish", "nexum.audit.events"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("line 2:"), "{}", stderr(&output));
    assert_eq!(events_in(&env, "nexum.audit.events"), 2);
}

#[test]
fn a_restart_after_a_duplicate_event_rebuilds_state_and_resumes() {
    // Given a group that handled five events, one of them published twice with the same id
    let env = Env::new();
    let output = env.run(&["produce", "bank-transactions", "--count", "5", "--rate", "0", "--seed", "3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let tail = env.run(&["tail", "bank.transactions", "--from-beginning", "--max", "1", "--idle-exit", "5"]);
    let duplicate = stdout(&tail);
    assert!(env.run_with_stdin(&["publish", "bank.transactions"], &duplicate).status.success());
    let first = env.run(&["consume", "recommendations", "--group", "g", "--idle-exit", "1"]);
    assert!(first.status.success(), "{}", stderr(&first));
    // When the consumer starts again
    let second = env.run(&["consume", "recommendations", "--group", "g", "--idle-exit", "1"]);
    // Then it rebuilds its state and finds nothing new
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stderr(&second).contains("Consumed 0 event(s)"), "{}", stderr(&second));
}

#[test]
fn publishing_to_an_unknown_topic_fails_clearly_and_topics_create_fixes_it() {
    let env = Env::new();
    let output = env.run_with_stdin(&["publish", "payments.typo"], GOOD);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("unknown topic `payments.typo`"), "{}", stderr(&output));

    let output = env.run(&["topics", "create", "payments.typo", "--partitions", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = env.run(&["topics", "describe", "payments.typo"]);
    assert!(stdout(&output).contains("PartitionCount: 2"), "{}", stdout(&output));
    let output = env.run_with_stdin(&["publish", "payments.typo"], GOOD);
    assert!(output.status.success(), "{}", stderr(&output));

    let output = env.run(&["topics", "create", "bad name"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("only ASCII letters"), "{}", stderr(&output));
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

#[test]
fn replay_moves_a_group_back_and_tail_reads_again() {
    let env = Env::new();
    let input = (0..5).map(|_| GOOD).collect::<Vec<_>>().join("\n");
    assert!(env.run_with_stdin(&["publish", "nexum.transactions.posted"], &input).status.success());
    let tail = |env: &Env| env.run(&["tail", "nexum.transactions.posted", "--group", "g1", "--idle-exit", "1"]);
    assert_eq!(stdout(&tail(&env)).lines().count(), 5, "a new group reads everything");
    assert_eq!(stdout(&tail(&env)).lines().count(), 0, "then resumes after what it committed");
    let output = env.run(&["replay", "--group", "g1", "--topic", "nexum.transactions.posted", "--to", "earliest"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("5 events to (re)consume"), "{}", stdout(&output));
    assert_eq!(stdout(&tail(&env)).lines().count(), 5);
}

#[test]
fn tail_max_commits_only_what_it_printed() {
    let env = Env::new();
    let input = (0..6).map(|_| GOOD).collect::<Vec<_>>().join("\n");
    assert!(env.run_with_stdin(&["publish", "nexum.accounts.created"], &input).status.success());
    let tail = |max: &str| env.run(&["tail", "nexum.accounts.created", "-G", "g", "--max", max, "--idle-exit", "1"]);
    assert_eq!(stdout(&tail("2")).lines().count(), 2);
    let lag = env.run(&["groups", "describe", "--group", "g", "--topic", "nexum.accounts.created"]);
    assert!(lag.status.success(), "{}", stderr(&lag));
    assert!(stdout(&lag).contains("total lag 4"), "{}", stdout(&lag));
    assert_eq!(stdout(&tail("100")).lines().count(), 4, "the 4 not printed are delivered next time");
    let lag = env.run(&["groups", "describe", "--group", "g"]);
    assert!(stdout(&lag).contains("total lag 0"), "{}", stdout(&lag));
    assert!(env.run(&["groups", "delete", "--group", "g"]).status.success());
    let gone = env.run(&["groups", "describe", "--group", "g"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("has no committed offsets"), "{}", stderr(&gone));
}

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

fn sorted_lines(output: &Output) -> Vec<String> {
    let mut lines: Vec<String> = stdout(output).lines().map(str::to_owned).collect();
    lines.sort();
    lines
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

/// Flags for the test broker that `scripts/test.sh` starts. tansu 0.6 needs one record per batch.
fn kafka(env: &Env) -> Vec<String> {
    let brokers = std::env::var("EVENTBUS_KAFKA_BROKERS").expect(
        "the Kafka tests need a broker: run `bash scripts/test.sh` (it starts tansu), or set EVENTBUS_KAFKA_BROKERS",
    );
    let config = env.dir.path().join("kafka.toml");
    std::fs::write(&config, "[kafka]\nrequest_timeout_ms = 5000\n[kafka.properties]\n\"batch.num.messages\" = \"1\"\n")
        .unwrap();
    ["--bus", "kafka", "--brokers", &brokers, "--config", config.to_str().unwrap()].map(str::to_owned).to_vec()
}

fn with(base: &[String], args: &[&str]) -> Vec<String> {
    base.iter().cloned().chain(args.iter().map(|s| (*s).to_owned())).collect()
}

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
fn the_demo_runs_end_to_end_and_its_replay_agrees_on_embedded_and_kafka() {
    let env = Env::new();
    let output = env.run(&["demo", "--events", "200"]);
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("identical to the live run"), "{}", stdout(&output));
    assert!(stdout(&output).contains("exactly the 200 new ones"), "{}", stdout(&output));

    let flags = kafka(&env);
    let args = with(&flags, &["demo", "--events", "200"]);
    let output = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("identical to the live run"), "{}", stdout(&output));
}

/// A complete `transaction_created` v1 event, the seed's example with every envelope field.
const VALID_CREATED: &str = r#"{"event_id": "evt-1", "event_type": "transaction_created", "timestamp": "2024-01-01T12:00:00Z", "source": "nexum", "version": "1.0", "entity_type": "transaction", "entity_id": "txn_123", "data": {"transaction_type": "deposit", "amount": "100.50", "currency": "USD", "from_account_id": "acc_from", "to_account_id": "acc_to", "description": "Cash deposit", "reference": "REF123"}, "metadata": {"correlation_id": "corr_123", "user_id": "user_456"}}"#;

/// A `transaction_posted` in the seed's v1 shape, without postings.
const VALID_POSTED_V1: &str = r#"{"event_id": "evt-2", "event_type": "transaction_posted", "timestamp": "2024-01-01T12:00:01Z", "source": "nexum", "version": "1.0", "entity_type": "transaction", "entity_id": "txn_123", "data": {"transaction_type": "deposit", "amount": "100.50", "currency": "USD", "from_account_id": null, "to_account_id": "acc_to", "final_balance": "1100.50", "journal_entry_id": "je_789"}}"#;

fn write_file(env: &Env, name: &str, contents: &[u8]) -> String {
    let path = env.dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn schemas_list_shows_every_event_type_with_its_versions_and_topic() {
    let env = Env::new();
    let output = env.run(&["schemas", "list"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["EVENT_TYPE", "VERSION", "TOPIC"]);
    assert_eq!(rows.len(), 1 + 27, "{out}");
    assert!(rows.contains(&vec!["transaction_posted", "1", "nexum.transactions.posted"]), "{out}");
    assert!(rows.contains(&vec!["transaction_posted", "2", "nexum.transactions.posted"]), "{out}");
    assert!(rows.contains(&vec!["kyc_status_changed", "1", "nexum.customers.kyc_changed"]), "{out}");
}

#[test]
fn schemas_show_prints_the_current_schema_or_the_version_asked_for() {
    let env = Env::new();
    let output = env.run(&["schemas", "show", "transaction_posted"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let schema: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(schema["$id"], "https://nexum.example/schemas/transaction_posted/v2.json");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");

    let output = env.run(&["schemas", "show", "transaction_posted", "--version", "1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let schema: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(schema["$id"], "https://nexum.example/schemas/transaction_posted/v1.json");

    let output = env.run(&["schemas", "show", "transaction_posted", "--version", "3"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no version 3 of `transaction_posted`; known versions: 1, 2"),
        "{}",
        stderr(&output)
    );
    let output = env.run(&["schemas", "show", "transaction_teleported"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("unknown event type `transaction_teleported`"), "{}", stderr(&output));
    assert!(stdout(&output).is_empty());
}

#[test]
fn schemas_validate_accepts_json_lines_a_pretty_printed_event_and_stdin() {
    // Given valid events as JSON lines (with a blank line) and one pretty-printed event
    let env = Env::new();
    let lines = write_file(&env, "events.jsonl", format!("{VALID_CREATED}\n\n{VALID_POSTED_V1}\n").as_bytes());
    let pretty: serde_json::Value = serde_json::from_str(VALID_CREATED).unwrap();
    let pretty = write_file(&env, "event.json", serde_json::to_string_pretty(&pretty).unwrap().as_bytes());
    for (args, input, expected) in [
        (vec!["schemas", "validate", lines.as_str()], "", "2 valid, 0 invalid"),
        (vec!["schemas", "validate", pretty.as_str()], "", "1 valid, 0 invalid"),
        (vec!["schemas", "validate", "-"], VALID_CREATED, "1 valid, 0 invalid"),
    ] {
        // When they are validated
        let output = env.run_with_stdin(&args, input);
        // Then every event passes and the summary says so
        assert!(output.status.success(), "{args:?}: {}{}", stdout(&output), stderr(&output));
        assert_eq!(stdout(&output).trim(), expected, "{args:?}");
    }
}

#[test]
fn schemas_validate_reports_each_invalid_event_by_line_and_reason_and_fails() {
    // Given a valid event, then an amount as a number, an unknown field, an unknown version and an
    // unknown type
    let env = Env::new();
    let number = VALID_CREATED.replace(r#""amount": "100.50""#, r#""amount": 100.5"#);
    let extra = VALID_CREATED.replace(r#""currency": "USD""#, r#""currency": "USD", "fee": "1.00""#);
    let newer = VALID_POSTED_V1.replace(r#""version": "1.0""#, r#""version": "3.0""#);
    let unknown = VALID_CREATED.replace("transaction_created", "transaction_teleported");
    let input = [VALID_CREATED, &number, &extra, &newer, &unknown].join("\n");
    let file = write_file(&env, "events.jsonl", input.as_bytes());
    // When the file is validated
    let output = env.run(&["schemas", "validate", &file]);
    // Then each bad line is reported with its reason, and the command fails
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("line 2 (event_id \"evt-1\"): invalid `transaction_created` event, version 1.0:\n  /data/amount: 100.5 is not of type \"string\""), "{out}");
    assert!(out.contains("line 3 (event_id \"evt-1\"): invalid `transaction_created` event, version 1.0:\n  /data: Additional properties are not allowed ('fee' was unexpected)"), "{out}");
    assert!(out.contains("line 4 (event_id \"evt-2\"): no schema for version `3.0` of `transaction_posted`; known major versions: 1, 2"), "{out}");
    assert!(out.contains("line 5 (event_id \"evt-1\"): no schema for event type `transaction_teleported`"), "{out}");
    assert!(!out.contains("line 1"), "{out}");
    assert!(out.ends_with("1 valid, 4 invalid\n"), "{out}");
    assert!(stderr(&output).contains("4 of 5 event(s)"), "{}", stderr(&output));
}

#[test]
fn schemas_validate_reports_malformed_json_per_line_without_panicking() {
    // Given lines that are not JSON, a truncated event, a line that is not UTF-8 and a good event
    let env = Env::new();
    let mut input = format!("{VALID_CREATED}\nnot json\n{{\"event_type\": \"transaction_created\"\n").into_bytes();
    input.extend_from_slice(b"\xff\xfe\n[1, 2]\n");
    input.extend_from_slice(VALID_POSTED_V1.as_bytes());
    let file = write_file(&env, "events.jsonl", &input);
    // When the file is validated
    let output = env.run(&["schemas", "validate", &file]);
    // Then each malformed line is reported by number and the others are still checked
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("line 2, column 2: malformed JSON"), "{out}");
    assert!(out.contains("line 3, column 36: malformed JSON: EOF while parsing an object"), "{out}");
    assert!(out.contains("line 4, column 1: malformed JSON"), "{out}");
    assert!(out.contains("line 5: not an event: an event is a JSON object"), "{out}");
    assert!(out.ends_with("2 valid, 4 invalid\n"), "{out}");
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));

    // And a pretty-printed event cut short is one malformed event, reported where it breaks
    let file = write_file(&env, "cut.json", b"{\n  \"event_type\": \"transaction_created\",\n  \"data\": {\n");
    let output = env.run(&["schemas", "validate", &file]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "line 3, column 11: malformed JSON: EOF while parsing an object\n0 valid, 1 invalid\n");

    let output = env.run(&["schemas", "validate", &env.dir.path().join("missing.json").to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot open"), "{}", stderr(&output));
}

/// A child process that is killed if the test panics before it stops it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `eventbus serve` with `args` (plus `--listen 127.0.0.1:0`) and waits for the line
/// that says it serves; returns the process, the rest of its log and its address.
fn start_serve(cmd: &mut Command, args: &[&str]) -> (Running, BufReader<std::process::ChildStderr>, String) {
    let mut serve = Running(
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut log = BufReader::new(serve.0.stderr.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(log.read_line(&mut line).unwrap() > 0 && lines.len() < 20, "serve did not start: {lines:?}");
        if line.contains("Serving core banking") {
            let address = line.split("http://").nth(1).and_then(|rest| rest.split(',').next()).unwrap().to_owned();
            return (serve, log, address);
        }
        lines.push(line);
    }
}

/// Sends SIGTERM to `child`, as a service manager would.
fn terminate(child: &std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn serve_handles_commands_published_as_json_lines_and_stops_gracefully_on_sigterm() {
    // Given `eventbus serve` on the embedded backend
    let env = Env::new();
    let (mut serve, mut log, _) = start_serve(&mut env.cmd(&[]), &["--no-loan-offers", "--collections-tick-secs", "1"]);
    assert!(serve.0.try_wait().unwrap().is_none());

    // When commands are published as JSON lines, a malformed one among them
    let customers = [
        r#"{"event_id": "cmd-c1", "event_type": "customer_command", "entity_type": "customer", "entity_id": "cust_cli", "data": {"action": "create", "customer_id": "cust_cli", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}}"#,
        r#"{"event_id": "cmd-c2", "event_type": "customer_command", "entity_type": "customer", "entity_id": "cust_cli", "data": {"action": "open_account", "customer_id": "cust_cli", "account_type": "checking", "currency": "USD", "account_id": "acc_cli"}}"#,
    ];
    let output = env.run_with_stdin(&["publish", "nexum.commands.customers"], &customers.join("\n"));
    assert!(output.status.success(), "{}", stderr(&output));
    let output = env.run(&["tail", "nexum.accounts.created", "--from-beginning", "--max", "1", "--idle-exit", "30"]);
    assert!(stdout(&output).contains("acc_cli"), "{}", stderr(&output));
    let transactions = [
        r#"{"event_id": "cmd-d1", "event_type": "transaction_command", "entity_type": "transaction", "entity_id": "acc_cli", "data": {"action": "deposit", "account_id": "acc_cli", "amount": "100.00", "currency": "USD", "description": "External deposit"}}"#,
        r#"{"event_id": "cmd-bad", "event_type": "transaction_command", "entity_type": "transaction", "entity_id": "acc_cli", "data": {"action": "deposit", "account_id": "acc_cli", "amount": 100}}"#,
    ];
    let output = env.run_with_stdin(&["publish", "nexum.commands.transactions"], &transactions.join("\n"));
    assert!(output.status.success(), "{}", stderr(&output));

    // Then the outcomes can be tailed: the deposit posted, the malformed command rejected
    let output = env.run(&["tail", "nexum.transactions.posted", "--from-beginning", "--max", "1", "--idle-exit", "30"]);
    let posted: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(posted["metadata"]["causation_id"], "cmd-d1");
    assert_eq!(posted["data"]["final_balance"], "100.00");
    let output = env.run(&["tail", "nexum.commands.rejected", "--from-beginning", "--max", "1", "--idle-exit", "30"]);
    let rejected: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(rejected["metadata"]["causation_id"], "cmd-bad");
    assert_eq!(rejected["data"]["error_code"], "malformed");

    // When it gets SIGTERM, it stops by itself, with success
    terminate(&serve.0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut log, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("Stopped"), "{rest}");
}

#[test]
fn serve_answers_http_on_a_real_socket() {
    // Given `eventbus serve` with an API token, on a free loopback port
    let env = Env::new();
    let mut cmd = env.cmd(&[]);
    cmd.env("EVENTBUS_API_TOKEN", "socket-test-token");
    let (mut serve, _log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);

    // When a client talks HTTP/1.1 to it
    let request = |raw: String| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
        response
    };
    let health = request(format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"));
    let denied = request(format!("GET /topics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"));
    let topics = request(format!(
        "GET /topics HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer socket-test-token\r\nConnection: close\r\n\r\n"
    ));

    // Then it answers: health openly, protected endpoints only with the token
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert!(denied.contains(r#""code":"unauthorized""#), "{denied}");
    assert!(topics.starts_with("HTTP/1.1 200") && topics.contains("nexum.commands.transactions"), "{topics}");

    // When the bus is switched at runtime (to the log backend), then it runs on it, the change
    // is in the data directory's config file, and commands still work
    let post = |path: &str, body: &str| {
        request(format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer socket-test-token\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    };
    let switched = post("/kafka/config", r#"{"bus_type": "log", "client_id": "nexum"}"#);
    assert!(switched.starts_with("HTTP/1.1 200") && switched.contains(r#""previous":"embedded""#), "{switched}");
    let status = request(format!(
        "GET /kafka/status HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer socket-test-token\r\nConnection: close\r\n\r\n"
    ));
    assert!(status.contains(r#""type":"LogEventBus""#), "{status}");
    let persisted = std::fs::read_to_string(env.dir.path().join("data").join("eventbus.toml")).unwrap();
    assert!(persisted.contains(r#"bus = "log""#), "{persisted}");
    let created = post(
        "/commands/customers?wait=true",
        r#"{"action": "create", "customer_id": "cust_switch", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}"#,
    );
    assert!(created.starts_with("HTTP/1.1 200") && created.contains(r#""status":"accepted""#), "{created}");
    terminate(&serve.0);
    assert!(serve.0.wait().unwrap().success());
}

#[test]
fn bench_http_sends_every_command_and_reports_a_rate() {
    let env = Env::new();
    let output = env.run(&["bench-http", "--commands", "200", "--connections", "4"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let row = stdout(&output).lines().find(|l| l.starts_with("| 200 |")).map(str::to_owned).expect("a result row");
    let rate: f64 = row.split('|').nth(4).unwrap().trim().parse().unwrap();
    assert!(rate > 0.0, "{row}");
    let output = env.run(&["bench-http", "--connections", "0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--connections must be 1 to 1024"));
}
