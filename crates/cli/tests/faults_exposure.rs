//! R5 of the fault suite: what `eventbus serve` exposes.
//! - Every route its OpenAPI document marks as protected refuses a request without a token (a
//!   401 that names the `Bearer` scheme) or with a wrong one (a 403), in the one JSON error shape.
//! - Personal data that goes through the service (a customer's names, email and phone, in a
//!   good command, in a malformed one that is dead-lettered and in one the bank rejects) appears
//!   in none of its logs (at the most verbose level), its dead letters or its metrics.
//!
//! `cargo test -p eventbus-cli --test faults_exposure -- --nocapture` (or `bash scripts/faults.sh`).

mod common;

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "r5-token";
/// Personal data no log, dead letter or metric may show.
const FIRST: &str = "Zebulon";
const LAST: &str = "Quixotilde";
const EMAIL: &str = "zebulon.quixotilde@example.org";
const PHONE: &str = "+442079460958";

fn sample(path: &str) -> String {
    // Path parameters get a value of the right shape; the token check comes first anyway.
    path.replace("{kind}", "transactions").replace("{id}", "acc_1").replace("{file}", "app.js")
}

#[test]
fn every_protected_route_refuses_a_request_without_its_token() {
    // Given `serve` with a token, and the routes its OpenAPI document lists
    let env = Env::new();
    let mut cmd = env.cmd(&[]);
    cmd.env("EVENTBUS_API_TOKEN", TOKEN);
    let (serve, _log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);
    let (status, body) = http(&address, "GET", "/openapi.json", None, None).unwrap();
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut protected = Vec::new();
    let mut public = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let open = operation["security"].as_array().is_some_and(Vec::is_empty);
            let route = (method.to_uppercase(), sample(path));
            if open { public.push(route) } else { protected.push(route) }
        }
    }
    assert!(protected.len() >= 10, "the document lists the protected routes: {protected:?}");

    // When each protected route is called without a token, and with a wrong one
    for (method, path) in &protected {
        let body = (method == "POST").then_some("{}");
        for (token, refused) in [(None, 401), (Some("wrong-token"), 403)] {
            let (status, answer) = http(&address, method, path, token, body).unwrap();
            // Then each refuses, in the JSON error shape
            assert_eq!(status, refused, "{method} {path} with {token:?}: {answer}");
            let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert!(error["error"]["code"].is_string() && error["error"]["message"].is_string(), "{answer}");
        }
    }
    // (and the 401 names the scheme to use, RFC 6750)
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    std::io::Write::write_all(&mut stream, b"GET /topics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut head = String::new();
    std::io::Read::read_to_string(&mut stream, &mut head).unwrap();
    assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");

    // And the public ones are the probes, the document, the metrics and the dashboard
    for (_, path) in &public {
        assert!(
            ["/health", "/ready", "/openapi.json", "/metrics", "/", "/assets/app.js"].contains(&path.as_str()),
            "{path} is public"
        );
    }
    drop(serve);
    eprintln!(
        "fault-suite: R5 | routes without a token | {} protected operations refuse a missing token (JSON 401, `WWW-Authenticate: Bearer`) and a wrong one (JSON 403); {} public (probes, document, metrics, dashboard) |",
        protected.len(),
        public.len()
    );
}

#[test]
fn personal_data_appears_in_no_log_dead_letter_or_metric() {
    // Given `serve` logging at its most verbose level
    let env = Env::new();
    let mut cmd = env.cmd(&[]);
    cmd.env("EVENTBUS_API_TOKEN", TOKEN).env("EVENTBUS_LOG", "trace,h2=info,hyper=info");
    let (mut serve, log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);
    let logged: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&logged);
    std::thread::spawn(move || {
        for line in log.split(b'\n') {
            let Ok(line) = line else { return };
            sink.lock().unwrap().push(String::from_utf8_lossy(&line).into_owned());
        }
    });

    // When a customer is created through the API, a malformed command with the same personal
    // data arrives on the bus (it is dead-lettered), and one the bank rejects (a bad email)
    let create = format!(
        r#"{{"action": "create", "customer_id": "cust_pii", "first_name": "{FIRST}", "last_name": "{LAST}", "email": "{EMAIL}", "phone": "{PHONE}"}}"#
    );
    let (status, answer) = http(&address, "POST", "/commands/customers?wait=true", Some(TOKEN), Some(&create)).unwrap();
    assert_eq!(status, 200, "{answer}");
    let malformed = format!(
        r#"{{"event_id": "cmd_pii_malformed", "event_type": "customer_command", "entity_type": "customer", "entity_id": "cust_pii2", "data": {{"action": "create", "customer_id": "cust_pii2", "first_name": "{FIRST}", "last_name": "{LAST}", "email": "{EMAIL}", "phone": 442079460958}}}}"#
    );
    let rejected = format!(
        r#"{{"event_id": "cmd_pii_rejected", "event_type": "customer_command", "entity_type": "customer", "entity_id": "cust_pii3", "data": {{"action": "create", "customer_id": "cust_pii3", "first_name": "{FIRST}", "last_name": "{LAST}", "email": "{FIRST}@@{LAST}", "phone": "{PHONE}"}}}}"#
    );
    let published = env.run_with_stdin(&["publish", "nexum.commands.customers"], &format!("{malformed}\n{rejected}\n"));
    assert!(published.status.success(), "{}", stderr(&published));
    let (status, answer) = http(&address, "GET", "/customers/cust_pii", Some(TOKEN), None).unwrap();
    assert!(status == 200 && answer.contains(EMAIL), "the bank keeps the customer's data for those allowed: {answer}");

    // Then the dead letter is there, with the personal data masked
    let started = Instant::now();
    let letters = loop {
        let tail = env.run(&[
            "tail",
            "nexum.commands.customers.dlq",
            "--from-beginning",
            "--idle-exit",
            "1",
            "--format",
            "json",
        ]);
        let letters = stdout(&tail);
        if letters.contains("cmd_pii_malformed") {
            break letters;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no dead letter for the malformed command: {letters}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // and the rejection has been recorded
    let started = Instant::now();
    while http(&address, "GET", "/commands/cmd_pii_rejected", Some(TOKEN), None).map(|(s, _)| s) != Some(200)
        && started.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, metrics) = http(&address, "GET", "/metrics", None, None).unwrap();
    terminate(&serve.0);
    assert!(serve.0.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(200));
    let logged = logged.lock().unwrap().join("\n");
    assert!(
        logged.contains(" TRACE ") && logged.contains("cmd_pii_malformed"),
        "serve logged at trace level:\n{logged}"
    );
    for (place, text) in [("the log", &logged), ("the dead letters", &letters), ("the metrics", &metrics)] {
        for secret in [FIRST, LAST, EMAIL, PHONE, "442079460958"] {
            let line = text.lines().find(|line| line.contains(secret));
            assert!(line.is_none(), "{secret} appears in {place}: {}", line.unwrap_or_default());
        }
    }
    eprintln!(
        "fault-suite: R5 | personal data | a customer's names, email and phone in a good, a malformed (dead-lettered) and a rejected command: \
         in none of {} log lines at trace level, the dead letters or the metrics |",
        logged.lines().count()
    );
}
