//! `publish`, `tail`, `topics` and `replay` on the embedded backend: events round-trip, bad lines
//! are reported by number, and a group reads again from where it is moved.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

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
    let listed = env.run(&["groups", "list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = stdout(&listed);
    let row =
        listed.lines().find(|line| line.starts_with("g ")).map(|line| line.split_whitespace().collect::<Vec<_>>());
    assert_eq!(row, Some(vec!["g", "1", "0"]), "{listed}");
    assert!(env.run(&["groups", "delete", "--group", "g"]).status.success());
    assert!(!stdout(&env.run(&["groups", "list"])).lines().any(|line| line.starts_with("g ")));
    let gone = env.run(&["groups", "describe", "--group", "g"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("has no committed offsets"), "{}", stderr(&gone));
}
