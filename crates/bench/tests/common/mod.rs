//! What the benchmark tests share: the `eventbus-bench` binary run with arguments, its output,
//! and the one data row of its table.

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};

pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventbus-bench"))
        .args(args)
        .env("EVENTBUS_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The cells of the table's data rows.
pub fn rows(table: &str) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = table
        .lines()
        .filter(|line| line.starts_with('|'))
        .skip(2)
        .map(|row| row.trim_matches('|').split('|').map(|cell| cell.trim().to_owned()).collect())
        .collect();
    assert!(!rows.is_empty(), "no data row in:\n{table}");
    rows
}
