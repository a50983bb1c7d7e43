//! `eventbus-bench commands` end to end: a tiny run measures the bank alone, the commands end to
//! end at capacity and open loop, answers every command, prints the ratio (and, with `--json`,
//! its figures as the last line), and bad flags are refused with clear errors.

mod common;

use common::{bench, rows, stderr, stdout};

#[test]
fn a_small_run_answers_every_command_and_prints_a_rate() {
    // Given a run of 200 commands over 20 accounts, 32 in flight
    let output =
        bench(&["commands", "--commands", "200", "--accounts", "20", "--in-flight", "32", "--latency-secs", "1"]);
    // Then it succeeds and prints the table, one row per run
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(table.contains("| run | commands | posted | failed | seconds | commands/s | p50 ms | p99 ms |"), "{table}");
    assert!(table.contains("70% deposit, 20% withdraw, 10% transfer"), "{table}");
    let rows = rows(&table);
    assert_eq!(rows.len(), 3, "{table}");
    assert_eq!(rows[0][0], "bank alone, 32 in flight");
    assert_eq!(rows[1][0], "end to end, 32 in flight");
    assert!(rows[2][0].starts_with("end to end, open loop"), "{table}");
    // And every command was answered by a posted transaction, at a non-zero rate
    for row in &rows[..2] {
        assert_eq!(&row[1..4], ["200", "200", "0"], "{table}");
    }
    for row in &rows {
        let rate: f64 = row[5].parse().unwrap();
        assert!(rate > 0.0, "{table}");
        let (p50, max): (f64, f64) = (row[6].parse().unwrap(), row[9].parse().unwrap());
        assert!(p50 > 0.0 && p50 <= max, "{table}");
        assert_eq!(row[2], row[1], "every command posted: {table}");
    }
    assert!(table.contains("End to end ÷ bank alone: "), "{table}");
}

#[test]
fn an_open_loop_run_at_a_rate_answers_every_command_and_reports_the_figures_as_json() {
    let output =
        bench(&["commands", "--commands", "100", "--accounts", "10", "--rate", "200", "--latency-secs", "1", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(table.contains("open loop 200/s"), "{table}");
    let rows = rows(&table);
    assert_eq!(&rows[2][1..4], ["200", "200", "0"], "{table}");
    // And with --json the last line is the figures, the table's rates among them
    let last = table.lines().last().unwrap();
    let figures: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    // (The JSON rounds to two decimals and the table to none: 433.4999 is 433 there and 433.5 here.)
    let same =
        |json: &serde_json::Value, cell: &str| (json.as_f64().unwrap() - cell.parse::<f64>().unwrap()).abs() <= 0.5;
    assert!(same(&figures["bank_alone_per_s"], &rows[0][5]), "{table}");
    assert!(same(&figures["commands_per_s"], &rows[1][5]), "{table}");
    let ratio = figures["ratio"].as_f64().unwrap();
    assert!(ratio > 0.0, "{last}");
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
        (&["--latency-secs", "0"], "--latency-secs must be 1 to 600"),
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
