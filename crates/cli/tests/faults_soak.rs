//! R4 of the fault suite: a soak. `eventbus produce` feeds bank transactions to a running
//! `eventbus serve` (embedded default) at a steady rate; its anonymous RSS and its consumers'
//! lag are sampled all along. Both must stay bounded: RSS under 200 MB and, after two minutes
//! of warm-up, flat (the second half no higher than the first half's peak by more than a
//! fifth), the lag under ten seconds of events, and back to 0 once the feed stops.
//!
//! Short run (CI): 20 s at 2,000 events/s. Full run: 10 minutes at 5,000 events/s, in release:
//! `EVENTBUS_FAULTS=full cargo test --release -p eventbus-cli --test faults_soak -- --nocapture`
//! (or `bash scripts/faults.sh --full`), which prints the curve.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const MB: u64 = 1024 * 1024;
/// The bound the hardening issue sets.
const MAX_RSS: u64 = 200 * MB;
/// Seconds after which the memory must be flat.
const WARM_UP_SECS: u64 = 120;

fn full() -> bool {
    std::env::var("EVENTBUS_FAULTS").is_ok_and(|v| v == "full")
}

/// The anonymous resident memory of process `pid` (heap and stacks, not mapped files), in bytes.
fn rss_anon(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).expect("RssAnon in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// What every consumer group has yet to consume of the bank transactions, from `/metrics`.
fn lag(address: &str) -> u64 {
    let (_, metrics) = http(address, "GET", "/metrics", None, None).unwrap_or_default();
    metrics
        .lines()
        .filter(|l| l.starts_with("eventbus_consumer_group_lag{") && l.contains("topic=\"bank.transactions\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn under_a_steady_feed_memory_and_lag_stay_bounded() {
    let (seconds, rate, every) = if full() { (600, 5_000, 10) } else { (20, 2_000, 2) };
    // Given `serve` on the embedded default
    let env = Env::new();
    let mut cmd = env.cmd(&[]);
    cmd.env("EVENTBUS_API_TOKEN", "r4-token");
    let (serve, log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);
    std::thread::spawn(move || std::io::copy(&mut { log }, &mut std::io::sink()));
    let pid = serve.0.id();

    // When `eventbus produce` feeds it bank transactions at a steady rate
    let count = (seconds * rate).to_string();
    let mut producer = Running(
        env.cmd(&["produce", "bank-transactions", "--count", &count, "--rate", &rate.to_string(), "--seed", "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let mut curve: Vec<(u64, u64, u64)> = Vec::new();
    while producer.0.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(seconds * 2 + 60), "the producer did not finish");
        std::thread::sleep(Duration::from_secs(every));
        curve.push((started.elapsed().as_secs(), rss_anon(pid), lag(&address)));
    }
    let produced = producer.0.wait_with_output_checked();

    // Then the consumers catch up
    let caught_up = Instant::now();
    while lag(&address) > 0 {
        assert!(caught_up.elapsed() < Duration::from_secs(60), "the lag did not reach 0 after the feed: {curve:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    curve.push((started.elapsed().as_secs(), rss_anon(pid), 0));
    terminate(&serve.0);
    let mut serve = serve;
    assert!(serve.0.wait().unwrap().success());
    assert!(produced.contains(&format!("Published {count} event(s)")), "{produced}");

    // And the memory stayed under the bound, and flat; the lag stayed under ten seconds' worth
    let peak = curve.iter().map(|(_, rss, _)| *rss).max().unwrap();
    // (Flat once the bounded windows filled: the dedup window of each subscription holds its
    // last 100,000 event ids, which take 20 s to fill at 5,000/s. The short run only checks the
    // bound.)
    let settled: Vec<_> = curve.iter().filter(|(at, _, _)| *at >= WARM_UP_SECS).collect();
    let (first, second) = settled.split_at(settled.len() / 2);
    let first_peak = first.iter().map(|(_, rss, _)| *rss).max().unwrap_or(peak);
    let second_peak = second.iter().map(|(_, rss, _)| *rss).max().unwrap_or(peak);
    let max_lag = curve.iter().map(|(_, _, lag)| *lag).max().unwrap();
    let shown: Vec<String> = curve
        .iter()
        .step_by((curve.len() / 10).max(1))
        .map(|(at, rss, lag)| format!("{at} s: {} MB, lag {lag}", rss / MB))
        .collect();
    assert!(peak < MAX_RSS, "anonymous RSS reached {} MB: {shown:?}", peak / MB);
    assert!(second_peak <= first_peak + first_peak / 5, "the memory grew after the warm-up: {shown:?}");
    assert!(max_lag <= rate * 10, "the lag reached {max_lag}: {shown:?}");
    let flatness = if settled.is_empty() {
        "too short to judge flatness".to_owned()
    } else {
        format!("after the warm-up: first half {} MB, second half {} MB", first_peak / MB, second_peak / MB)
    };
    eprintln!(
        "fault-suite: R4 | soak: {count} events at {rate}/s for {seconds} s into serve (embedded) | anonymous RSS \
         peak {} MB ({flatness}), lag at most {max_lag}, 0 after the feed | curve: {}",
        peak / MB,
        shown.join("; ")
    );
}

trait WaitChecked {
    /// Waits for the child and returns what it wrote to stderr; panics if it failed.
    fn wait_with_output_checked(&mut self) -> String;
}

impl WaitChecked for std::process::Child {
    fn wait_with_output_checked(&mut self) -> String {
        let status = self.wait().unwrap();
        let mut said = String::new();
        std::io::Read::read_to_string(&mut self.stderr.take().unwrap(), &mut said).unwrap();
        assert!(status.success(), "{said}");
        said
    }
}
