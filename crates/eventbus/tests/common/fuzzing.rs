//! The runner of the fault suite's fuzz tests (R3), shared by the decoders' tests of this crate
//! and the command parser's of `nexum` (`#[path]`-included by both).

#![allow(dead_code)]

use std::fmt;
use std::io::Write as _;
use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per decoder: 100,000 with `EVENTBUS_FAULTS=full`, else 2,000.
fn cases() -> u32 {
    if std::env::var("EVENTBUS_FAULTS").as_deref() == Ok("full") { 100_000 } else { 2_000 }
}

/// Runs `property` over `cases()` inputs of `strategy`. A panic in the decoder fails the run
/// with the smallest input found; a passing run prints the fault-suite summary line.
pub fn fuzz<S: Strategy>(decoder: &str, strategy: S, property: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let cases = cases();
    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::with_cases(cases) });
    let started = Instant::now();
    if let Err(failure) = runner.run(&strategy, property) {
        panic!("{decoder}: {failure}");
    }
    let seconds = started.elapsed().as_secs_f64();
    // Straight to stderr, past the test harness's capture: the script sees it with or without
    // `--nocapture`.
    let _ = writeln!(std::io::stderr(), "fault-suite: R3 | {decoder} | {cases} cases, 0 panics | {seconds:.1} s");
}

/// `Ok`, or a failed case that says what was expected to succeed.
pub fn must<T, E: fmt::Display>(result: Result<T, E>, what: &str) -> Result<T, TestCaseError> {
    result.map_err(|error| TestCaseError::fail(format!("{what}: {error}")))
}
