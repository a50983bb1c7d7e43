//! What the CLI tests share: a scratch data directory per test, the binary run in it, its output,
//! and a `serve` process that is killed if its test panics.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventbus"));
        cmd.arg("--data-dir").arg(self.dir.path().join("data")).args(args);
        cmd.env_remove("EVENTBUS_BUS").env_remove("EVENTBUS_CONFIG").env("EVENTBUS_LOG", "warn");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child =
            self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn events_in(env: &Env, topic: &str) -> u64 {
    let output = env.run(&["topics", "list"]);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.first() == Some(&topic)).then(|| cols[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{topic} not listed"))
}

pub const GOOD: &str = r#"{"event_type": "transaction_created", "entity_type": "transaction", "entity_id": "txn_1", "data": {"amount": "100.50", "currency": "USD"}}"#;

pub fn sorted_lines(output: &Output) -> Vec<String> {
    let mut lines: Vec<String> = stdout(output).lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Flags for the test broker that `scripts/test.sh` starts, with the production defaults (lz4,
/// linger 5 ms) but one record per batch (see [`kafka_at`]).
pub fn kafka(env: &Env) -> Vec<String> {
    let brokers = std::env::var("EVENTBUS_KAFKA_BROKERS").expect(
        "the Kafka tests need a broker: run `bash scripts/test.sh` (it starts tansu), or set EVENTBUS_KAFKA_BROKERS",
    );
    kafka_at(env, &brokers)
}

/// Flags for the broker at `brokers`, with a config file in `env`'s directory.
pub fn kafka_at(env: &Env, brokers: &str) -> Vec<String> {
    let config = env.dir.path().join("kafka.toml");
    // One record per producer batch: tansu 0.6 skips the rest of a batch when a consumer resumes
    // from an offset inside it (scripts/tansu-midbatch-repro.py).
    std::fs::write(&config, "[kafka]\nrequest_timeout_ms = 5000\nbatch_messages = 1\n").unwrap();
    ["--bus", "kafka", "--brokers", brokers, "--config", config.to_str().unwrap()].map(str::to_owned).to_vec()
}

pub fn with(base: &[String], args: &[&str]) -> Vec<String> {
    base.iter().cloned().chain(args.iter().map(|s| (*s).to_owned())).collect()
}

pub fn write_file(env: &Env, name: &str, contents: &[u8]) -> String {
    let path = env.dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A child process that is killed if the test panics before it stops it.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `eventbus serve` with `args` (plus `--listen 127.0.0.1:0`) and waits for the line
/// that says it serves; returns the process, the rest of its log and its address.
pub fn start_serve(cmd: &mut Command, args: &[&str]) -> (Running, BufReader<std::process::ChildStderr>, String) {
    let mut serve = Running(
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut log = BufReader::new(serve.0.stderr.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(log.read_line(&mut line).unwrap() > 0 && lines.len() < 200, "serve did not start: {lines:?}");
        if line.contains("Serving core banking") {
            let address = line.split("http://").nth(1).and_then(|rest| rest.split(',').next()).unwrap().to_owned();
            return (serve, log, address);
        }
        lines.push(line);
    }
}

/// One HTTP/1.1 request to `address` with `Connection: close`, with the bearer `token` if given
/// and a JSON `body` if given; returns the status and the body. `None` if the server did not
/// answer (it is gone).
pub fn http(address: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).ok()?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// Kills `child` with SIGKILL, as `kill -9` does, and reaps it.
pub fn kill_9(child: &mut std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Sends SIGTERM to `child`, as a service manager would.
pub fn terminate(child: &std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

const DEFAULT_POSTGRES: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// The PostgreSQL server of the tests (`NEXUM_TEST_POSTGRES`, as `scripts/test.sh` sets it).
pub fn postgres() -> String {
    std::env::var("NEXUM_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

/// How many `transaction_posted` events the SQLite event store of `data_dir` holds for each
/// command (by the command id they were caused by).
pub fn posted_in_sqlite(data_dir: &std::path::Path) -> std::collections::HashMap<String, u64> {
    let store = rusqlite::Connection::open(data_dir.join("nexum-events.db")).unwrap();
    let mut query = store
        .prepare(
            "SELECT json_extract(payload, '$.metadata.causation_id'), count(*) FROM events
             WHERE topic = 'nexum.transactions.posted' GROUP BY 1",
        )
        .unwrap();
    query.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))).unwrap().map(Result::unwrap).collect()
}

/// The same from the PostgreSQL event store in `schema`.
pub fn posted_in_postgres(runtime: &tokio::runtime::Runtime, schema: &str) -> std::collections::HashMap<String, u64> {
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&postgres(), tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        let rows = client
            .query(
                &format!(
                    "SELECT convert_from(payload, 'UTF8')::json->'metadata'->>'causation_id', count(*)
                     FROM \"{schema}\".events WHERE topic = 'nexum.transactions.posted' GROUP BY 1"
                ),
                &[],
            )
            .await
            .unwrap();
        drop(client);
        let _ = connection.await;
        rows.iter().filter_map(|row| Some((row.get::<_, Option<String>>(0)?, row.get::<_, i64>(1) as u64))).collect()
    })
}

/// Drops a PostgreSQL schema a test made.
pub fn drop_schema(runtime: &tokio::runtime::Runtime, schema: &str) {
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&postgres(), tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await.unwrap();
        drop(client);
        let _ = connection.await;
    });
}

/// An account's balance in cents, as `serve` at `address` answers it; `None` if it does not.
pub fn balance_cents(address: &str, token: &str, account: &str) -> Option<u64> {
    let (status, body) = http(address, "GET", &format!("/accounts/{account}"), Some(token), None)?;
    if status != 200 {
        return None;
    }
    let view: serde_json::Value = serde_json::from_str(&body).ok()?;
    let (units, hundredths) = view["balance"].as_str()?.split_once('.')?;
    Some(units.parse::<u64>().ok()? * 100 + hundredths.parse::<u64>().ok()?)
}
