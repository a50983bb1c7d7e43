//! R2 of the fault suite: `eventbus serve` is killed with SIGKILL five times during a command
//! load over HTTP, and started again each time, on the embedded default and on Kafka with
//! PostgreSQL.
//!
//! Four clients send deposits of 1.00. Two send each with an `Idempotency-Key` and, when the
//! service is gone, retry it under the same key until it is answered, as a bank's integrator
//! does; two send without a key and give up a deposit that was not answered. After the fifth
//! restart, once the service caught up:
//! - every command answered 202 or 200 was carried out exactly once, and no command twice;
//! - the ledger holds: each account's balance is its deposits carried out, once each;
//! - the time from each kill until a command is carried out again is measured.
//!
//! The Kafka run uses a tansu broker of its own (memory engine; the broker is never restarted,
//! only `serve`) and a PostgreSQL schema of its own; it is ignored in CI (tansu 0.6 now and then
//! serves a restarted owner nothing of its partitions) and run by `scripts/faults.sh`. Short
//! run: five kills (two on Kafka), 100 commands acknowledged between kills. Full run: five
//! kills on both, 1,000 between kills:
//! `EVENTBUS_FAULTS=full cargo test --release -p eventbus-cli --test faults_kill -- --nocapture`.

#[path = "../../eventbus/tests/common/faults.rs"]
mod faults;

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "r2-token";
const ACCOUNTS: [&str; 4] = ["acc_r2a", "acc_r2b", "acc_r2c", "acc_r2d"];

fn full() -> bool {
    std::env::var("EVENTBUS_FAULTS").is_ok_and(|v| v == "full")
}

/// What one `serve` runs on, kept across its restarts.
enum Target {
    /// One data directory: the embedded bus and the SQLite store.
    Embedded { env: Env, log: Arc<Mutex<Vec<String>>> },
    /// A broker of the test's own, a PostgreSQL schema of its own, and a data directory for the
    /// Kafka outbox.
    Kafka { env: Env, _broker: faults::Broker, brokers: String, schema: String, log: Arc<Mutex<Vec<String>>> },
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Self::Embedded { .. } => "embedded",
            Self::Kafka { .. } => "Kafka + PostgreSQL",
        }
    }

    fn start(&self) -> (Running, String) {
        let (mut cmd, args) = match self {
            Self::Embedded { env, .. } => (env.cmd(&[]), vec!["--no-loan-offers".to_owned()]),
            Self::Kafka { env, brokers, schema, .. } => {
                let config = env.dir.path().join("kafka.toml");
                // One record per producer batch: tansu 0.6 skips the rest of a batch when a
                // consumer resumes from an offset inside it (scripts/tansu-midbatch-repro.py);
                // Apache Kafka serves the whole batch and the client drops what precedes.
                std::fs::write(&config, "[kafka]\nrequest_timeout_ms = 5000\nbatch_messages = 1\n").unwrap();
                let flags = ["--bus", "kafka", "--brokers", brokers, "--config", config.to_str().unwrap()];
                // (Named, it is a static member of its groups: restarted, it takes its
                // partitions back without waiting for its old session to end.)
                let args =
                    ["--no-loan-offers", "--instance", "r2", "--postgres", &postgres(), "--postgres-schema", schema];
                (env.cmd(&flags), args.map(str::to_owned).to_vec())
            }
        };
        cmd.env("EVENTBUS_API_TOKEN", TOKEN).env("EVENTBUS_LOG", "warn,eventbus::kafka::consumer=info");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (serve, log, address) = start_serve(&mut cmd, &args);
        // Its log is read as it goes, so that the pipe never fills and stalls it; the last
        // lines are kept for a failure's message.
        let lines = Arc::clone(self.log());
        std::thread::spawn(move || {
            for line in std::io::BufRead::split(log, b'\n') {
                let Ok(line) = line else { return };
                let mut lines = lines.lock().unwrap();
                if lines.len() == 200 {
                    lines.remove(0);
                }
                lines.push(String::from_utf8_lossy(&line).into_owned());
            }
        });
        (serve, address)
    }

    /// Where the commands `ids` are on the broker, for a failure's message.
    fn explain(&self, ids: &[&str]) -> String {
        let Self::Kafka { brokers, .. } = self else { return self.last_logged() };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/faults/find_events.py");
        let output = std::process::Command::new("python3")
            .args([script, brokers, "nexum.commands.transactions", "nexum-command-handler"])
            .args(ids.iter().take(20))
            .output()
            .unwrap();
        format!(
            "on the broker: {}{}\nserve logged:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.last_logged()
        )
    }

    /// The last lines `serve` logged, across its restarts.
    fn log(&self) -> &Arc<Mutex<Vec<String>>> {
        match self {
            Self::Embedded { log, .. } | Self::Kafka { log, .. } => log,
        }
    }

    fn last_logged(&self) -> String {
        self.log().lock().unwrap().join("\n")
    }

    fn posted(&self, runtime: &tokio::runtime::Runtime) -> HashMap<String, u64> {
        match self {
            Self::Embedded { env, .. } => posted_in_sqlite(&env.dir.path().join("data")),
            Self::Kafka { schema, .. } => posted_in_postgres(runtime, schema),
        }
    }
}

/// One POST with a bearer token and, if given, an `Idempotency-Key`; `None` if the service did
/// not answer (it is gone, or went while answering).
fn post(address: &str, path: &str, key: Option<&str>, body: &str) -> Option<(u16, serde_json::Value)> {
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let key = key.map(|k| format!("Idempotency-Key: {k}\r\n")).unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n{key}\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    Some((status, serde_json::from_str(body).unwrap_or_default()))
}

fn deposit(account: &str) -> String {
    format!(r#"{{"action": "deposit", "account_id": "{account}", "amount": "1.00", "currency": "USD"}}"#)
}

/// The command ids the service acknowledged (and whether under an idempotency key), and where
/// it listens now.
#[derive(Default)]
struct Load {
    acknowledged: Mutex<Vec<(String, bool)>>,
    address: Mutex<String>,
    stop: AtomicBool,
}

impl Load {
    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// A client: deposits one after the other; with keys, each is retried under its key until
    /// the service answers it.
    fn client(self: Arc<Self>, client: usize, keyed: bool) {
        for n in 0.. {
            let key = format!("r2-{client}-{n}");
            let started = Instant::now();
            loop {
                if self.stop.load(Ordering::Relaxed) && (!keyed || started.elapsed() > Duration::from_secs(60)) {
                    return;
                }
                let address = self.address.lock().unwrap().clone();
                let body = deposit(ACCOUNTS[n % ACCOUNTS.len()]);
                match post(&address, "/commands/transactions", keyed.then_some(key.as_str()), &body) {
                    Some((200 | 202, answer)) => {
                        let id = answer["command_id"].as_str().unwrap().to_owned();
                        self.acknowledged.lock().unwrap().push((id, keyed));
                        break;
                    }
                    // Busy, or gone: a keyed deposit is sent again under its key, another is
                    // given up.
                    Some((429 | 503, _)) | None if keyed => std::thread::sleep(Duration::from_millis(50)),
                    Some((429 | 503, _)) | None => {
                        std::thread::sleep(Duration::from_millis(50));
                        break;
                    }
                    Some((status, answer)) => panic!("deposit {key} answered {status}: {answer}"),
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

/// Waits until the service at `address` carried out everything it took, and relayed it.
fn caught_up(address: &str) {
    let started = Instant::now();
    loop {
        let (_, metrics) = http(address, "GET", "/metrics", None, None).unwrap_or_default();
        let gauge = |name: &str| {
            metrics.lines().find_map(|line| line.strip_prefix(&format!("{name} "))).and_then(|v| v.parse::<u64>().ok())
        };
        if gauge("nexum_command_lag") == Some(0) && gauge("nexum_outbox_backlog") == Some(0) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the service did not catch up:\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill_9_five_times(runtime: &tokio::runtime::Runtime, target: &Target) {
    let between = if full() { 1_000 } else { 100 };
    // (Five kills; two on Kafka in the short run, which scripts/faults.sh runs: on tansu a
    // restart now and then is never served its command partitions. The full run kills five
    // times on both.)
    let kills = match target {
        Target::Kafka { .. } if !full() => 2,
        _ => 5,
    };
    // Given `serve` with four accounts
    let (mut serve, address) = target.start();
    let customer = r#"{"action": "create", "customer_id": "cust_r2", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}"#;
    let wait = "/commands/customers?wait=true&timeout_ms=30000";
    assert_eq!(post(&address, wait, None, customer).map(|(status, _)| status), Some(200));
    for account in ACCOUNTS {
        let open = format!(
            r#"{{"action": "open_account", "customer_id": "cust_r2", "account_type": "checking", "currency": "USD", "account_id": "{account}"}}"#
        );
        let (status, answer) = post(&address, wait, None, &open).unwrap();
        assert!(status == 200 && answer["status"] == "accepted", "{answer}");
    }

    // When four clients deposit, and the service is killed with SIGKILL and started again five
    // times while they do
    let load = Arc::new(Load { address: Mutex::new(address), ..Load::default() });
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let load = Arc::clone(&load);
            std::thread::spawn(move || load.client(client, client < 2))
        })
        .collect();
    let (mut ready, mut resumed) = (Vec::new(), Vec::new());
    for kill in 0..kills {
        let target_count = load.acknowledged() + between;
        let started = Instant::now();
        while load.acknowledged() < target_count {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "kill {kill}: the clients got no {between} commands in"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        kill_9(&mut serve.0);
        let killed = Instant::now();
        let (restarted, address) = target.start();
        serve = restarted;
        *load.address.lock().unwrap() = address.clone();
        // (Ready: /ready is 200 once the command handler joined its group.)
        loop {
            let ready = http(&address, "GET", "/ready", None, None);
            if ready.as_ref().is_some_and(|(status, _)| *status == 200) {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(120),
                "kill {kill}: not ready after the restart ({ready:?}); serve logged:\n{}",
                target.last_logged()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ready.push(killed.elapsed());
        // (A command carried out: a deposit answered by the bank, not only accepted.)
        let probe = "/commands/transactions?wait=true&timeout_ms=2000";
        loop {
            let answer = post(&address, probe, Some(&format!("r2-probe-{kill}")), &deposit(ACCOUNTS[0]));
            if let Some((200, answer)) = answer {
                assert_eq!(answer["status"], "accepted", "{answer}");
                load.acknowledged.lock().unwrap().push((answer["command_id"].as_str().unwrap().to_owned(), true));
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(120),
                "kill {kill}: no command carried out after the restart; serve logged:\n{}",
                target.last_logged()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        resumed.push(killed.elapsed());
    }
    load.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let address = load.address.lock().unwrap().clone();
    caught_up(&address);

    // Then every acknowledged command was carried out exactly once, and none twice
    let posted = target.posted(runtime);
    let acknowledged = load.acknowledged.lock().unwrap().clone();
    let lost: Vec<&str> =
        acknowledged.iter().map(|(id, _)| id.as_str()).filter(|id| !posted.contains_key(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged command(s) not carried out: {lost:?}\n{}",
        lost.len(),
        target.explain(&lost)
    );
    for (id, _) in &acknowledged {
        assert_eq!(posted.get(id), Some(&1), "acknowledged command {id} carried out {:?} times", posted.get(id));
    }
    assert!(posted.values().all(|count| *count == 1), "a command was carried out twice");

    // And the ledger holds: the balances (read models that follow the bus) come to the deposits
    // carried out, once each
    let expected = posted.len() as u64 * 100;
    let started = Instant::now();
    loop {
        let cents: u64 = ACCOUNTS.iter().map(|a| balance_cents(&address, TOKEN, a).expect("a balance")).sum();
        if cents == expected {
            break;
        }
        assert!(cents < expected, "the balances hold {cents} cents, more than the {expected} carried out");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the balances hold {cents} cents of the {expected} carried out after 60 s; serve logged:\n{}",
            target.last_logged()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    terminate(&serve.0);
    assert!(serve.0.wait().unwrap().success());
    let ms = |times: &[Duration]| times.iter().map(|d| d.as_millis().to_string()).collect::<Vec<_>>().join(", ");
    eprintln!(
        "fault-suite: R2 | {} | {kills} kill -9 of serve during an HTTP load, {} commands acknowledged ({} with \
         idempotency keys), all carried out once, balances = deposits | after each kill, ms until /ready: {}; until \
         a command was carried out: {}",
        target.name(),
        acknowledged.len(),
        acknowledged.iter().filter(|(_, keyed)| *keyed).count(),
        ms(&ready),
        ms(&resumed)
    );
}

#[test]
fn on_the_embedded_default_five_kill_9_lose_and_double_no_acknowledged_command() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    kill_9_five_times(&runtime, &Target::Embedded { env: Env::new(), log: Arc::default() });
}

#[test]
#[ignore = "tansu 0.6 sometimes serves a restarted owner nothing of a partition it was dealt (RELIABILITY.md); \
            scripts/faults.sh runs it, CI does not"]
fn on_kafka_and_postgresql_five_kill_9_lose_and_double_no_acknowledged_command() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let broker = faults::Broker::start(port, port);
    let schema = format!("r2_{}", std::process::id());
    let brokers = format!("127.0.0.1:{port}");
    let target = Target::Kafka { env: Env::new(), _broker: broker, brokers, schema, log: Arc::default() };
    kill_9_five_times(&runtime, &target);
    if let Target::Kafka { schema, .. } = &target {
        drop_schema(&runtime, schema);
    }
}
