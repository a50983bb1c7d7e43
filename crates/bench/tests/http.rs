//! `eventbus-bench http` end to end: a tiny run sends every command over HTTP and reports a rate,
//! and a bad flag is refused.

mod common;

use common::{bench, stderr, stdout};

#[test]
fn bench_http_sends_every_command_and_reports_a_rate() {
    let output = bench(&["http", "--commands", "200", "--connections", "4"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let row = stdout(&output).lines().find(|l| l.starts_with("| 200 |")).map(str::to_owned).expect("a result row");
    let rate: f64 = row.split('|').nth(4).unwrap().trim().parse().unwrap();
    assert!(rate > 0.0, "{row}");
    let output = bench(&["http", "--connections", "0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--connections must be 1 to 1024"));
}
