//! `eventbus serve` against clients that hold on: slow request heads (slowloris), slow bodies,
//! more connections than allowed, and a SIGTERM while a request is in flight.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "limits-token";

/// `serve` with a 500 ms header timeout and at most `connections` connections; its log, which
/// must be kept open while it runs, and its address.
fn serve_with_limits(env: &Env, connections: usize) -> (Running, Log, String) {
    let config = write_file(
        env,
        "limits.toml",
        format!("[api]\nheader_timeout_ms = 500\nmax_connections = {connections}\n").as_bytes(),
    );
    let mut cmd = env.cmd(&["--config", &config]);
    cmd.env("EVENTBUS_API_TOKEN", TOKEN);
    start_serve(&mut cmd, &["--no-loan-offers"])
}

type Log = std::io::BufReader<std::process::ChildStderr>;

/// Reads until the server closes the connection, at most 10 s; returns what it sent.
fn read_to_close(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_disconnected_and_does_not_block_others() {
    // Given serve with a 500 ms header timeout and room for two connections
    let env = Env::new();
    let (serve, _log, address) = serve_with_limits(&env, 2);

    // When two clients send half a request head and stop
    let mut slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            stream
        })
        .collect();

    // Then each is disconnected by the server, well before the test's own 10 s read timeout
    let started = Instant::now();
    for stream in &mut slow {
        let _ = read_to_close(stream);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "slow clients held for {:?}", started.elapsed());

    // and a third client, which had to wait for a free connection, is answered
    let (status, body) = http(&address, "GET", "/health", None, None).expect("answered");
    assert_eq!(status, 200, "{body}");
    drop(serve);
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_before_the_service_stops() {
    // Given serve, and a client halfway through sending a command
    let env = Env::new();
    let (serve, mut log, address) = serve_with_limits(&env, 16);
    let body = r#"{"action": "create", "customer_id": "cust_drain", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}"#;
    let mut stream = TcpStream::connect(&address).unwrap();
    let head = format!(
        "POST /commands/customers HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body.as_bytes()[..20]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // When the service gets SIGTERM, and the client then sends the rest
    terminate(&serve.0);
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&body.as_bytes()[20..]).unwrap();

    // Then the request is answered in full, and the service stops by itself afterwards
    let answer = read_to_close(&mut stream);
    let mut rest = String::new();
    let _ = log.read_to_string(&mut rest);
    assert!(answer.starts_with("HTTP/1.1 202"), "answer: {answer}\nlog: {rest}");
    assert!(answer.contains(r#""status":"submitted""#), "{answer}");
    let mut serve = serve;
    let started = Instant::now();
    while serve.0.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
