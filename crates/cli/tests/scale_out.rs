//! Three `eventbus serve` instances sharing their bus and store, with commands arriving from
//! another process through `eventbus publish`: on one Kafka broker and one PostgreSQL store, and
//! on the embedded default (three processes on one data directory). One run kills a random
//! instance with SIGKILL mid-load, another the relay's leader; after each, every command
//! published has exactly one effect, the balances hold every deposit once, and the survivors
//! answer the same.
//!
//! Each Kafka run starts a tansu broker of its own (`TANSU`, as `scripts/test.sh` installs it)
//! and uses a PostgreSQL schema of its own (`NEXUM_TEST_POSTGRES`).

#[path = "../../eventbus/tests/common/faults.rs"]
mod faults;

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "scale-out-token";
const ACCOUNTS: [&str; 4] = ["acc_so1", "acc_so2", "acc_so3", "acc_so4"];
/// Deposits of 1.00 per batch; three batches per run.
const BATCH: usize = 300;

struct Instance {
    name: String,
    serve: Running,
    address: String,
    /// What it logged, read as it goes so that the pipe never fills.
    log: Arc<Mutex<Vec<String>>>,
    /// Its own data directory, on Kafka.
    _env: Option<Env>,
}

/// Where the instances of a run share their bus and their store.
enum Deployment {
    /// One Kafka broker and one PostgreSQL schema; each instance, and the publisher, has a data
    /// directory of its own (for its Kafka outbox).
    Kafka { schema: String, publisher: Env, brokers: String, _broker: faults::Broker },
    /// One data directory: the embedded bus and the SQLite event store in it.
    Embedded { env: Env },
}

impl Deployment {
    fn kafka(run: &str) -> Self {
        // A broker of the run's own: tansu 0.6 never ends the membership of a static member
        // that stopped, so a second run on the same broker would find the first run's instances
        // still holding the command handler's partitions.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let broker = faults::Broker::start(port, port);
        let brokers = format!("127.0.0.1:{port}");
        Self::Kafka { schema: format!("scale_out_{run}"), publisher: Env::new(), brokers, _broker: broker }
    }

    /// One data directory whose consumers and roles change hands within about 2 s.
    fn embedded() -> Self {
        let env = Env::new();
        std::fs::create_dir_all(env.dir.path().join("data")).unwrap();
        std::fs::write(env.dir.path().join("data").join("eventbus.toml"), "[embedded]\nlease_ttl_ms = 1500\n").unwrap();
        Self::Embedded { env }
    }

    fn start(&self, name: &str) -> Instance {
        let common = ["--no-loan-offers", "--instance", name, "--role-lease-ms", "1500"];
        let (mut cmd, own, args) = match self {
            Self::Kafka { schema, brokers, .. } => {
                let env = Env::new();
                let flags = kafka_at(&env, brokers);
                let cmd = env.cmd(&flags.iter().map(String::as_str).collect::<Vec<_>>());
                let store = ["--postgres".to_owned(), postgres(), "--postgres-schema".to_owned(), schema.clone()];
                (cmd, Some(env), store.to_vec())
            }
            Self::Embedded { env } => (env.cmd(&[]), None, Vec::new()),
        };
        cmd.env("EVENTBUS_API_TOKEN", TOKEN);
        cmd.env("EVENTBUS_LOG", std::env::var("SCALE_OUT_LOG").unwrap_or("warn,eventbus::kafka::consumer=info".into()));
        let args: Vec<&str> = common.into_iter().chain(args.iter().map(String::as_str)).collect();
        start_instance(name, &mut cmd, &args, own)
    }

    /// Publishes `count` deposits of 1.00 spread over the accounts, as an integrator's process
    /// would; returns their command ids.
    fn publish_deposits(&self, run: &str, from: usize, count: usize) -> Vec<String> {
        let ids: Vec<String> = (from..from + count).map(|n| format!("cmd_{run}_{n}")).collect();
        let lines: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let account = ACCOUNTS[(from + i) % ACCOUNTS.len()];
                format!(
                    r#"{{"event_id": "{id}", "event_type": "transaction_command", "entity_type": "transaction", "entity_id": "{account}", "data": {{"action": "deposit", "account_id": "{account}", "amount": "1.00", "currency": "USD"}}}}"#
                )
            })
            .collect();
        let (env, flags) = match self {
            Self::Kafka { publisher, brokers, .. } => (publisher, kafka_at(publisher, brokers)),
            Self::Embedded { env } => (env, Vec::new()),
        };
        let args = with(&flags, &["publish", "nexum.commands.transactions"]);
        let output = env.run_with_stdin(&args.iter().map(String::as_str).collect::<Vec<_>>(), &lines.join("\n"));
        assert!(output.status.success(), "{}", stderr(&output));
        ids
    }

    /// How many `transaction_posted` events the store holds for each command.
    fn effects(&self, runtime: &tokio::runtime::Runtime) -> HashMap<String, u64> {
        match self {
            Self::Kafka { schema, .. } => posted_in_postgres(runtime, schema),
            Self::Embedded { env } => posted_in_sqlite(&env.dir.path().join("data")),
        }
    }

    /// The command handler's committed offsets and lag, as `eventbus groups describe` shows them.
    fn command_lag(&self) -> String {
        let (env, flags) = match self {
            Self::Kafka { publisher, brokers, .. } => (publisher, kafka_at(publisher, brokers)),
            Self::Embedded { env } => (env, Vec::new()),
        };
        let args = with(
            &flags,
            &["groups", "describe", "--group", "nexum-command-handler", "--topic", "nexum.commands.transactions"],
        );
        let output = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        format!("{}{}", stdout(&output), stderr(&output))
    }

    fn finish(self, runtime: &tokio::runtime::Runtime) {
        if let Self::Kafka { schema, .. } = self {
            drop_schema(runtime, &schema);
        }
    }
}

/// Starts `serve` and reads its log as it goes.
fn start_instance(name: &str, cmd: &mut std::process::Command, args: &[&str], own: Option<Env>) -> Instance {
    let (serve, log, address) = start_serve(cmd, args);
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        // Every line is read, whatever its bytes, so that the pipe never fills and stalls serve.
        for line in std::io::BufRead::split(log, b'\n') {
            let Ok(line) = line else { return };
            sink.lock().unwrap().push(String::from_utf8_lossy(&line).into_owned());
        }
    });
    Instance { name: name.to_owned(), serve, address, log: lines, _env: own }
}

/// Which roles `instance` says it holds.
fn holds_relay(instance: &Instance) -> bool {
    let Some((_, body)) = http(&instance.address, "GET", "/ready", None, None) else { return false };
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    ready["roles"]["outbox-relay"] == true
}

#[derive(Clone, Copy, Debug)]
enum Victim {
    Random,
    RelayLeader,
}

fn run(runtime: &tokio::runtime::Runtime, deployment: impl FnOnce(&str) -> Deployment, victim: Victim) {
    // Given three instances sharing their bus and store, and four accounts opened through one
    let run = uuid_like();
    let deployment = deployment(&run);
    let mut instances: Vec<Instance> = (0..3).map(|n| deployment.start(&format!("node-{n}-{run}"))).collect();
    let post = |address: &str, path: &str, body: String| http(address, "POST", path, Some(TOKEN), Some(&body));
    let create = format!(
        r#"{{"action": "create", "customer_id": "cust_so_{run}", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}}"#
    );
    let (status, body) = post(&instances[0].address, "/commands/customers?wait=true&timeout_ms=60000", create).unwrap();
    assert_eq!(status, 200, "{body}");
    for account in ACCOUNTS {
        let open = format!(
            r#"{{"action": "open_account", "customer_id": "cust_so_{run}", "account_type": "checking", "currency": "USD", "account_id": "{account}"}}"#
        );
        let (status, body) =
            post(&instances[0].address, "/commands/customers?wait=true&timeout_ms=60000", open).unwrap();
        assert!(status == 200 && body.contains(r#""status":"accepted""#), "{body}");
    }

    // When deposits arrive from another process, and an instance is killed with SIGKILL between
    // batches
    let mut sent = deployment.publish_deposits(&run, 0, BATCH);
    let started = Instant::now();
    while deployment.effects(runtime).len() < BATCH / 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "the first deposits were not carried out");
        std::thread::sleep(Duration::from_millis(200));
    }
    let index = match victim {
        Victim::Random => (std::process::id() as usize + run.len()) % instances.len(),
        Victim::RelayLeader => {
            let started = Instant::now();
            loop {
                if let Some(index) = instances.iter().position(holds_relay) {
                    break index;
                }
                assert!(started.elapsed() < Duration::from_secs(30), "no instance holds the relay's role");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let mut victim_instance = instances.remove(index);
    kill_9(&mut victim_instance.serve.0);
    let killed_at = Instant::now();
    let before_kill = deployment.effects(runtime).len();
    sent.extend(deployment.publish_deposits(&run, BATCH, BATCH * 2));

    // Then the survivors carry out every deposit exactly once
    let started = Instant::now();
    let mut resumed = None;
    loop {
        let effects = deployment.effects(runtime);
        if resumed.is_none() && effects.len() > before_kill {
            resumed = Some(killed_at.elapsed());
        }
        if sent.iter().all(|id| effects.contains_key(id)) {
            for id in &sent {
                assert_eq!(effects[id], 1, "command {id} carried out {} times", effects[id]);
            }
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} of {} deposits carried out after killing {} ({victim:?}); the command handler's group:\n{}\nthe survivors logged:\n{}",
            sent.iter().filter(|id| effects.contains_key(*id)).count(),
            sent.len(),
            victim_instance.name,
            deployment.command_lag(),
            logs(&instances)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "{victim:?}: killed {}; work went on after {:?}; all {} deposits carried out after {:?}",
        victim_instance.name,
        resumed,
        sent.len(),
        killed_at.elapsed()
    );

    // and both survivors read the same balances, which hold every deposit once
    let started = Instant::now();
    loop {
        let reads: Vec<Vec<Option<u64>>> =
            instances.iter().map(|i| ACCOUNTS.iter().map(|a| balance_cents(&i.address, TOKEN, a)).collect()).collect();
        let totals: Vec<u64> = reads.iter().map(|read| read.iter().map(|c| c.unwrap_or(0)).sum()).collect();
        if reads.windows(2).all(|w| w[0] == w[1]) && totals.iter().all(|t| *t == sent.len() as u64 * 100) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the survivors' reads differ or fall short: {reads:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    for mut instance in instances {
        terminate(&instance.serve.0);
        assert!(instance.serve.0.wait().unwrap().success());
    }
    deployment.finish(runtime);
}

fn logs(instances: &[Instance]) -> String {
    instances
        .iter()
        .map(|i| format!("--- {}\n{}", i.name, i.log.lock().unwrap().join("\n")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A short random name for a run's schema, instances and ids.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", nanos & 0xffff_ffff, std::process::id())
}

#[test]
#[ignore = "tansu 0.6: groups of three members sometimes never deal their partitions, and a stopped static member is never expired (README, Out of scope); run with --ignored on Apache Kafka or Redpanda"]
fn on_kafka_after_a_random_instance_or_the_relay_leader_is_killed_every_command_has_one_effect() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    run(&runtime, Deployment::kafka, Victim::Random);
    run(&runtime, Deployment::kafka, Victim::RelayLeader);
}

#[test]
fn on_one_data_directory_after_a_random_instance_or_the_relay_leader_is_killed_every_command_has_one_effect() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    run(&runtime, |_| Deployment::embedded(), Victim::Random);
    run(&runtime, |_| Deployment::embedded(), Victim::RelayLeader);
}
