//! `eventbus schemas`: list, show and validate the JSON Schemas of the Nexum events.

mod common;

use common::*;

/// A complete `transaction_created` v1 event, the seed's example with every envelope field.
const VALID_CREATED: &str = r#"{"event_id": "evt-1", "event_type": "transaction_created", "timestamp": "2024-01-01T12:00:00Z", "source": "nexum", "version": "1.0", "entity_type": "transaction", "entity_id": "txn_123", "data": {"transaction_type": "deposit", "amount": "100.50", "currency": "USD", "from_account_id": "acc_from", "to_account_id": "acc_to", "description": "Cash deposit", "reference": "REF123"}, "metadata": {"correlation_id": "corr_123", "user_id": "user_456"}}"#;

/// A `transaction_posted` in the seed's v1 shape, without postings.
const VALID_POSTED_V1: &str = r#"{"event_id": "evt-2", "event_type": "transaction_posted", "timestamp": "2024-01-01T12:00:01Z", "source": "nexum", "version": "1.0", "entity_type": "transaction", "entity_id": "txn_123", "data": {"transaction_type": "deposit", "amount": "100.50", "currency": "USD", "from_account_id": null, "to_account_id": "acc_to", "final_balance": "1100.50", "journal_entry_id": "je_789"}}"#;

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
