//! `eventbus-bench commands` end to end: a tiny run prints its table with a rate (and, with
//! `--json`, its figures as the last line), and bad flags are refused with clear errors.

mod common;

use common::{bench, row, stderr, stdout};

#[test]
fn a_small_run_answers_every_command_and_prints_a_rate() {
    // Given a run of 200 commands over 20 accounts
    let output = bench(&["commands", "--commands", "200", "--accounts", "20", "--in-flight", "32"]);
    // Then it succeeds and prints the table
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(table.contains("| commands | posted | failed | seconds | commands/s | p50 ms | p99 ms |"), "{table}");
    assert!(table.contains("70% deposit, 20% withdraw, 10% transfer, 32 in flight"), "{table}");
    let cells = row(&table);
    // And every command was answered by a posted transaction, at a non-zero rate
    assert_eq!(&cells[..3], ["200", "200", "0"], "{table}");
    let rate: f64 = cells[4].parse().unwrap();
    assert!(rate > 0.0, "{table}");
    let (p50, max): (f64, f64) = (cells[5].parse().unwrap(), cells[8].parse().unwrap());
    assert!(p50 > 0.0 && p50 <= max, "{table}");
}

#[test]
fn an_open_loop_run_at_a_rate_answers_every_command() {
    let output = bench(&["commands", "--commands", "100", "--accounts", "10", "--rate", "200", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(table.contains("open loop 200/s"), "{table}");
    assert_eq!(&row(&table)[..3], ["100", "100", "0"], "{table}");
    // And with --json the last line is the figures, the table's rate among them
    let last = table.lines().last().unwrap();
    let figures: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    let rate = figures["commands_per_s"].as_f64().unwrap();
    assert_eq!(format!("{rate:.0}"), row(&table)[4], "{table}");
    assert!(figures["p99_ms"].as_f64().unwrap() > 0.0, "{last}");
}

#[test]
fn bad_options_are_refused_with_clear_errors() {
    let cases: [(&[&str], &str); 6] = [
        (&["--commands", "0"], "--commands must be 1 to 10000000"),
        (&["--accounts", "1"], "--accounts must be 2 to 100000"),
        (&["--in-flight", "0"], "--in-flight must be 1 to 65536"),
        (&["--rate", "0"], "--rate must be 1 to 1000000"),
        (&["--rate", "NaN"], "--rate must be 1 to 1000000"),
        (&["--in-flight", "8", "--rate", "100"], "cannot be used with"),
    ];
    for (args, expected) in cases {
        let output = bench(&[&["commands"], args].concat());
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr(&output).contains(expected), "{args:?}: {}", stderr(&output));
    }
    let output = bench(&["commands", "--bus", "memory", "--commands", "1"]);
    assert_eq!(output.status.code(), Some(2), "an unknown flag is a usage error");
    assert!(stderr(&output).contains("--bus"), "{}", stderr(&output));
}
