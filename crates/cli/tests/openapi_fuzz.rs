//! Fault suite R3: a property-based run of the whole HTTP API from its OpenAPI document.
//!
//! `eventbus serve` (embedded bus, an API token) answers requests that schemathesis makes from
//! `GET /openapi.json`: valid and invalid parameters, bodies, headers and media types for every
//! operation. It passes when schemathesis finds nothing:
//!
//! - `not_a_server_error`: no answer is a 5xx;
//! - `error_in_json_shape` (`tests/openapi/hooks.py`): every 4xx or 5xx is
//!   `{"error": {"status", "code", "message"}}` in `application/json`, with its own status;
//! - `status_code_conformance`, `content_type_conformance`, `response_schema_conformance`: each
//!   answer has a status, a media type and a body that the document lists for its operation.
//!
//! What the run leaves out, and why (`tests/openapi/hooks.py`, `tests/openapi/schemathesis.toml`):
//! the live tail `GET /events/stream` does not end, so its 200 is read for one second; a bus
//! switch to Kafka becomes a switch to the embedded bus (it would connect to made-up broker
//! addresses, and without a broker it is the documented 502).
//!
//! Schemathesis 4 (PyPI) must be installed; `scripts/test.sh` installs it. The CI run takes 20
//! examples per operation within 30 s; `EVENTBUS_FAULTS=full` takes 500 per operation, repeated
//! until 240 s are spent (thousands of requests):
//!
//! ```text
//! EVENTBUS_FAULTS=full cargo test --release -p eventbus-cli --test openapi_fuzz -- --nocapture
//! ```
//!
//! A passing run prints one line to stderr for the fault-suite script, its numbers read from
//! schemathesis's JSON report: `fault-suite: R3 | HTTP API from its OpenAPI document | <N> requests
//! over <M> operations, 0 5xx, every error in the JSON shape | <seconds> s`.

mod common;

use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Env, http, start_serve, terminate};
use serde_json::Value;

const TOKEN: &str = "openapi-fuzz-token";

/// The checks schemathesis runs on every answer; `error_in_json_shape` is `tests/openapi/hooks.py`.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,error_in_json_shape";

/// The longest one request may take: above the 30 s a command may wait for its outcome.
const REQUEST_TIMEOUT_SECONDS: u64 = 35;

/// How much of the API one run tries.
struct Size {
    /// Test cases per operation and phase.
    examples: u32,
    /// Schemathesis's budget: it stops generating when it is spent.
    max_time: Duration,
}

impl Size {
    /// 500 examples per operation within 240 s with `EVENTBUS_FAULTS=full`, else 20 within 30 s.
    fn from_env() -> Self {
        if std::env::var("EVENTBUS_FAULTS").as_deref() == Ok("full") {
            Self { examples: 500, max_time: Duration::from_secs(240) }
        } else {
            Self { examples: 20, max_time: Duration::from_secs(30) }
        }
    }
}

/// `tests/openapi` of the workspace.
fn openapi_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/openapi")
}

/// Fails, rather than skips, when schemathesis 4 is missing.
fn require_schemathesis() {
    let output = Command::new("python3").args(["-m", "schemathesis.cli", "--version"]).stdin(Stdio::null()).output();
    let version = match output {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        Ok(output) => panic!(
            "schemathesis is not installed (`python3 -m schemathesis.cli --version`: {}): scripts/test.sh installs it",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!("python3 cannot be run ({error}); schemathesis is needed: scripts/test.sh installs it"),
    };
    let major = version.rsplit(' ').next().and_then(|v| v.split('.').next()).and_then(|m| m.parse::<u32>().ok());
    assert!(major == Some(4), "schemathesis 4 is needed, found `{version}`: scripts/test.sh installs it");
}

/// Keeps what `serve` logs, so that its pipe never fills, and for the message of a failure.
fn keep_log(log: impl BufRead + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let keeper = Arc::clone(&kept);
    std::thread::spawn(move || {
        for line in log.lines().map_while(Result::ok) {
            let mut kept = keeper.lock().unwrap();
            if kept.len() == 200 {
                kept.remove(0);
            }
            kept.push(line);
        }
    });
    kept
}

/// The end of schemathesis's output: its failures and summary.
fn tail(output: &str) -> &str {
    let start = output.find("=== FAILURES ===").or_else(|| output.find("=== SUMMARY ===")).unwrap_or(0);
    let start = output[..start].rfind('\n').map_or(start, |newline| newline + 1);
    &output[start..]
}

#[test]
fn the_http_api_answers_as_its_openapi_document_says_with_no_5xx_and_every_error_in_the_json_shape() {
    require_schemathesis();
    let size = Size::from_env();

    // Given `serve` on the embedded bus with an API token
    let env = Env::new();
    let mut cmd = env.cmd(&[]);
    cmd.env("EVENTBUS_API_TOKEN", TOKEN);
    let (mut serve, log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);
    let log = keep_log(log);

    // When schemathesis runs the whole API from its OpenAPI document
    let report = env.dir.path().join("schemathesis.json");
    let output_path = env.dir.path().join("schemathesis.out");
    let output_file = std::fs::File::create(&output_path).unwrap();
    let openapi = openapi_dir();
    let started = Instant::now();
    let mut run = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(openapi.join("schemathesis.toml"))
        .args(["run", &format!("http://{address}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", CHECKS, "--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &size.examples.to_string()])
        .args(["--max-time", &size.max_time.as_secs().to_string()])
        .args(["--request-timeout", &REQUEST_TIMEOUT_SECONDS.to_string()])
        .args(["--generation-database", "none", "--no-color", "--report", "json", "--report-json-path"])
        .arg(&report)
        .env("SCHEMATHESIS_HOOKS", openapi.join("hooks.py"))
        // Its working files (`.schemathesis/`) go to the test's scratch directory.
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .stdout(output_file.try_clone().unwrap())
        .stderr(output_file)
        .spawn()
        .unwrap();
    // The budget, the last requests it lets finish, and loading: beyond that the run hangs.
    let deadline = started + size.max_time + Duration::from_secs(REQUEST_TIMEOUT_SECONDS + 60);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = run.kill();
            let _ = run.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let seconds = started.elapsed().as_secs_f64();
    let output = std::fs::read_to_string(&output_path).unwrap_or_default();
    let server_log = || log.lock().unwrap().join("\n");
    let Some(status) = status else {
        panic!(
            "schemathesis did not finish within {:?}; killed:\n{}\n\nserve's log:\n{}",
            size.max_time,
            tail(&output),
            server_log()
        );
    };

    // Then it found nothing: no 5xx, every error in the JSON shape, every answer as documented
    assert!(status.success(), "schemathesis failed ({status}):\n{}\n\nserve's log:\n{}", tail(&output), server_log());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let failures = &report["failures"];
    let errors = &report["errors"];
    assert!(
        failures.as_array().is_some_and(Vec::is_empty) && errors.as_array().is_some_and(Vec::is_empty),
        "schemathesis reported failures or errors: {failures} {errors}\n{}",
        tail(&output)
    );
    // And it tried every operation of the document
    let operations = &report["operations"];
    let tested = operations["tested"].as_u64().unwrap();
    assert!(
        tested > 0 && operations["total"] == operations["tested"] && operations["errored"] == 0,
        "not every operation was tested: {operations}\n{}",
        tail(&output)
    );
    let requests = report["test_cases"]["generated"].as_u64().unwrap();

    // And `serve` still answers, then stops cleanly
    let health = http(&address, "GET", "/health", None, None);
    assert_eq!(health.as_ref().map(|(status, _)| *status), Some(200), "serve after the run: {health:?}");
    terminate(&serve.0);
    let stopped = Instant::now();
    let exit = loop {
        if let Some(exit) = serve.0.try_wait().unwrap() {
            break exit;
        }
        assert!(stopped.elapsed() < Duration::from_secs(60), "serve did not stop after SIGTERM:\n{}", server_log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "serve stopped with {exit}:\n{}", server_log());

    // Straight to stderr, past the test harness's capture: the script sees it with or without
    // `--nocapture`.
    let _ = writeln!(
        std::io::stderr(),
        "fault-suite: R3 | HTTP API from its OpenAPI document | {requests} requests over {tested} operations, \
         0 5xx, every error in the JSON shape | {seconds:.1} s"
    );
}
