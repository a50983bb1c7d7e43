//! `eventbus-bench http` end to end: a tiny run sends every command over HTTP, waits until each is
//! carried out, and reports both rates; a bad flag is refused.

mod common;

use common::{bench, stderr, stdout};

#[test]
fn bench_http_sends_every_command_and_reports_a_rate() {
    let output = bench(&["http", "--commands", "200", "--connections", "4"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let row = stdout(&output).lines().find(|l| l.starts_with("| 200 |")).map(str::to_owned).expect("a result row");
    let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
    let (accepted, carried_out): (f64, f64) = (cells[2].parse().unwrap(), cells[3].parse().unwrap());
    assert!(accepted > 0.0 && carried_out > 0.0, "{row}");
    assert!(carried_out <= accepted, "nothing is carried out before it is accepted: {row}");
    let output = bench(&["http", "--connections", "0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--connections must be 1 to 1024"));
}
