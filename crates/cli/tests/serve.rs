//! `eventbus serve` as a process: commands published as JSON lines, HTTP on a real socket, a bus
//! switch at runtime, and a graceful stop on SIGTERM.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn serve_handles_commands_published_as_json_lines_and_stops_gracefully_on_sigterm() {
    // Given `eventbus serve` on the embedded backend
    let env = Env::new();
    let (mut serve, mut log, _) = start_serve(&mut env.cmd(&[]), &["--no-loan-offers", "--collections-tick-secs", "1"]);
    assert!(serve.0.try_wait().unwrap().is_none());

    // When commands are published as JSON lines, a malformed one among them
    let customers = [
        r#"{"event_id": "cmd-c1", "event_type": "customer_command", "entity_type": "customer", "entity_id": "cust_cli", "data": {"action": "create", "customer_id": "cust_cli", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}}"#,
        r#"{"event_id": "cmd-c2", "event_type": "customer_command", "entity_type": "customer", "entity_id": "cust_cli", "data": {"action": "open_account", "customer_id": "cust_cli", "account_type": "checking", "currency": "USD", "account_id": "acc_cli"}}"#,
    ];
    let output = env.run_with_stdin(&["publish", "nexum.commands.customers"], &customers.join("\n"));
    assert!(output.status.success(), "{}", stderr(&output));
    let output = env.run(&["tail", "nexum.accounts.created", "--from-beginning", "--max", "1", "--idle-exit", "30"]);
    assert!(stdout(&output).contains("acc_cli"), "{}", stderr(&output));
    let transactions = [
        r#"{"event_id": "cmd-d1", "event_type": "transaction_command", "entity_type": "transaction", "entity_id": "acc_cli", "data": {"action": "deposit", "account_id": "acc_cli", "amount": "100.00", "currency": "USD", "description": "External deposit"}}"#,
        r#"{"event_id": "cmd-bad", "event_type": "transaction_command", "entity_type": "transaction", "entity_id": "acc_cli", "data": {"action": "deposit", "account_id": "acc_cli", "amount": 100}}"#,
    ];
    let output = env.run_with_stdin(&["publish", "nexum.commands.transactions"], &transactions.join("\n"));
    assert!(output.status.success(), "{}", stderr(&output));

    // Then the outcomes can be tailed: the deposit posted, the malformed command rejected
    let output = env.run(&["tail", "nexum.transactions.posted", "--from-beginning", "--max", "1", "--idle-exit", "30"]);
    let posted: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(posted["metadata"]["causation_id"], "cmd-d1");
    assert_eq!(posted["data"]["final_balance"], "100.00");
    let output = env.run(&["tail", "nexum.commands.rejected", "--from-beginning", "--max", "1", "--idle-exit", "30"]);
    let rejected: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(rejected["metadata"]["causation_id"], "cmd-bad");
    assert_eq!(rejected["data"]["error_code"], "malformed");

    // When it gets SIGTERM, it stops by itself, with success
    terminate(&serve.0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut log, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("Stopped"), "{rest}");
}

#[test]
fn a_command_published_with_deliver_at_by_a_one_shot_process_is_carried_out_by_serve_at_that_time() {
    // Given `eventbus serve` on the embedded backend, and an account
    let env = Env::new();
    let (serve, _log, _) = start_serve(&mut env.cmd(&[]), &["--no-loan-offers"]);
    let customers = [
        r#"{"event_id": "cmd-s1", "event_type": "customer_command", "entity_type": "customer", "entity_id": "cust_due", "data": {"action": "create", "customer_id": "cust_due", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}}"#,
        r#"{"event_id": "cmd-s2", "event_type": "customer_command", "entity_type": "customer", "entity_id": "cust_due", "data": {"action": "open_account", "customer_id": "cust_due", "account_type": "checking", "currency": "USD", "account_id": "acc_due"}}"#,
    ];
    let output = env.run_with_stdin(&["publish", "nexum.commands.customers"], &customers.join("\n"));
    assert!(output.status.success(), "{}", stderr(&output));

    // When `eventbus publish` (which exits at once) sends a deposit due in 4 s
    let due = chrono::Utc::now() + chrono::Duration::seconds(4);
    let deposit = serde_json::json!({
        "event_id": "cmd-later", "event_type": "transaction_command", "entity_type": "transaction", "entity_id": "acc_due",
        "data": {"action": "deposit", "account_id": "acc_due", "amount": "7.00", "currency": "USD"},
        "metadata": {"deliver_at": due.to_rfc3339()}
    });
    let output = env.run_with_stdin(&["publish", "nexum.commands.transactions"], &deposit.to_string());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Published 1 event(s) to nexum.commands.transactions (1 scheduled"),
        "{}",
        stderr(&output)
    );
    // and a line whose deliver_at is in the past is refused by its number, saying why
    let late = serde_json::json!({
        "event_type": "transaction_command", "entity_id": "acc_due", "metadata": {"deliver_at": "2020-01-01T00:00:00Z"},
        "data": {"action": "deposit", "account_id": "acc_due", "amount": "1.00", "currency": "USD"}
    });
    let output = env.run_with_stdin(&["publish", "nexum.commands.transactions"], &late.to_string());
    assert!(!output.status.success());
    assert!(stderr(&output).contains("line 1: deliver_at 2020-01-01T00:00:00Z is in the past"), "{}", stderr(&output));

    // Then serve carries it out at its time, not before
    let output = env.run(&["tail", "nexum.transactions.posted", "--from-beginning", "--max", "1", "--idle-exit", "30"]);
    let posted: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert!(chrono::Utc::now() >= due, "carried out before its time");
    assert_eq!(posted["metadata"]["causation_id"], "cmd-later");
    assert_eq!(posted["data"]["final_balance"], "7.00");
    terminate(&serve.0);
}

#[test]
fn serve_answers_http_on_a_real_socket() {
    // Given `eventbus serve` in development mode with an API token, on a free loopback port
    let env = Env::new();
    let mut cmd = env.cmd(&[]);
    cmd.env("EVENTBUS_API_TOKEN", "socket-test-token");
    let (mut serve, _log, address) = start_serve(&mut cmd, &["--no-loan-offers", "--dev"]);

    // When a client talks HTTP/1.1 to it
    let request = |raw: String| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
        response
    };
    let health = request(format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"));
    let denied = request(format!("GET /topics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"));
    let topics = request(format!(
        "GET /topics HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer socket-test-token\r\nConnection: close\r\n\r\n"
    ));

    // Then it answers: health openly, protected endpoints only with the token
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert!(denied.contains(r#""code":"unauthorized""#), "{denied}");
    assert!(topics.starts_with("HTTP/1.1 200") && topics.contains("nexum.commands.transactions"), "{topics}");

    // When the bus is switched at runtime (to the log backend), then it runs on it, the answer
    // says that durability was lowered, the change is in the data directory's config file, and
    // commands still work
    let post = |path: &str, body: &str| {
        request(format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer socket-test-token\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    };
    let switched = post("/kafka/config", r#"{"bus_type": "log", "client_id": "nexum"}"#);
    assert!(switched.starts_with("HTTP/1.1 200") && switched.contains(r#""previous":"embedded""#), "{switched}");
    assert!(switched.contains("durability lowered"), "{switched}");
    let status = request(format!(
        "GET /kafka/status HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer socket-test-token\r\nConnection: close\r\n\r\n"
    ));
    assert!(status.contains(r#""type":"LogEventBus""#), "{status}");
    let persisted = std::fs::read_to_string(env.dir.path().join("data").join("eventbus.toml")).unwrap();
    assert!(persisted.contains(r#"bus = "log""#), "{persisted}");
    let created = post(
        "/commands/customers?wait=true",
        r#"{"action": "create", "customer_id": "cust_switch", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}"#,
    );
    assert!(created.starts_with("HTTP/1.1 200") && created.contains(r#""status":"accepted""#), "{created}");
    terminate(&serve.0);
    assert!(serve.0.wait().unwrap().success());
}

#[test]
fn outside_development_mode_serve_refuses_a_bus_that_loses_acknowledged_commands() {
    // Given a data directory whose config names the memory bus
    let env = Env::new();

    // When serve starts on it without --dev
    let output = env.run(&["--bus", "memory", "serve", "--listen", "127.0.0.1:0"]);

    // Then it exits with an error that says why and what to do
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("lost if the process dies") && message.contains("--dev"), "{message}");

    // When a serve on the embedded bus is asked to switch to the log bus
    let mut cmd = env.cmd(&[]);
    cmd.env("EVENTBUS_API_TOKEN", "durable-token");
    let (mut serve, _log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);
    let (status, body) =
        http(&address, "POST", "/kafka/config", Some("durable-token"), Some(r#"{"bus_type": "log"}"#)).unwrap();

    // Then it refuses, and nothing is written to the config file
    assert_eq!(status, 409, "{body}");
    assert!(body.contains(r#""code":"not_durable""#), "{body}");
    assert!(!env.dir.path().join("data").join("eventbus.toml").exists());
    terminate(&serve.0);
    assert!(serve.0.wait().unwrap().success());
}

#[test]
fn after_a_kill_9_a_restarted_serve_handles_commands_without_waiting_out_the_dead_ones_leases() {
    // Given serve on a data directory whose consumer-group leases last a minute
    let env = Env::new();
    let data = env.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("eventbus.toml"), "[embedded]\nlease_ttl_ms = 60000\n").unwrap();
    let token = "restart-token";
    let start = || {
        let mut cmd = env.cmd(&[]);
        cmd.env("EVENTBUS_API_TOKEN", token);
        start_serve(&mut cmd, &["--no-loan-offers"])
    };
    let (mut serve, _log, address) = start();
    let create = r#"{"action": "create", "customer_id": "cust_rs", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}"#;
    let (status, body) = http(&address, "POST", "/commands/customers?wait=true", Some(token), Some(create)).unwrap();
    assert_eq!(status, 200, "{body}");

    // When it is killed with SIGKILL, holding every partition of its groups, and started again
    kill_9(&mut serve.0);
    let (mut serve, _log, address) = start();

    // Then a command is carried out well within the minute the dead process's leases would last
    let open = r#"{"action": "open_account", "customer_id": "cust_rs", "account_type": "checking", "currency": "USD", "account_id": "acc_rs"}"#;
    let (status, body) =
        http(&address, "POST", "/commands/customers?wait=true&timeout_ms=30000", Some(token), Some(open)).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""status":"accepted""#), "{body}");
    terminate(&serve.0);
    assert!(serve.0.wait().unwrap().success());
}

/// Needs root, to mount a small tmpfs; the machines of the test suite have it.
#[test]
fn on_a_full_disk_serve_refuses_to_start_every_time_with_the_reason() {
    // Given a data directory that served once, on a disk that has since filled up
    let env = Env::new();
    let disk = env.dir.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let target = disk.to_str().unwrap().to_owned();
    let mounted =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=80m", "tmpfs", &target]).status();
    assert!(mounted.is_ok_and(|s| s.success()), "mounting a tmpfs needs root");
    let data = disk.join("data");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_eventbus"));
        cmd.arg("--data-dir").arg(&data).args(args).env("EVENTBUS_LOG", "warn").stdin(std::process::Stdio::null());
        cmd
    };
    let (mut serve, _log, _) = start_serve(&mut run(&[]), &["--no-loan-offers"]);
    terminate(&serve.0);
    assert!(serve.0.wait().unwrap().success());
    std::fs::write(disk.join("fill"), vec![0u8; 40 * 1024 * 1024]).unwrap();

    // When serve is started on it, several times
    let outputs: Vec<_> = (0..3).map(|_| run(&["serve", "--listen", "127.0.0.1:0"]).output().unwrap()).collect();
    let _ = std::process::Command::new("umount").arg(&target).status();

    // Then each start fails the same way, saying the disk is full, and never panics
    for output in outputs {
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{message}");
        assert!(message.contains("is full") && message.contains("cannot start"), "{message}");
        assert!(!message.contains("panicked"), "{message}");
    }
}

#[test]
fn the_data_directory_and_its_files_are_the_owners_alone() {
    // Given a data directory someone made world-readable
    let env = Env::new();
    let data = env.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // When serve runs on it, handles a command and stops
    let mut cmd = env.cmd(&[]);
    cmd.env("EVENTBUS_API_TOKEN", "perm-token");
    let (mut serve, _log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);
    let create = r#"{"action": "create", "customer_id": "cust_perm", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}"#;
    let (status, body) =
        http(&address, "POST", "/commands/customers?wait=true", Some("perm-token"), Some(create)).unwrap();
    assert_eq!(status, 200, "{body}");

    // Then the directory is 0700 and every file in it 0600, the stores' WAL files included
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut files = Vec::new();
    let mut dirs = vec![data.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for name in ["nexum-events.db", "nexum-events.db-wal", "eventbus.db", "eventbus.db-wal"] {
        assert!(files.iter().any(|f| f.ends_with(name)), "{name} in {files:?}");
    }
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    terminate(&serve.0);
    assert!(serve.0.wait().unwrap().success());
}

#[test]
fn a_token_made_by_eventbus_token_new_is_accepted_by_the_config_and_authenticates_with_its_role() {
    // Given a viewer token made by `eventbus token new`: the token on the first line, then the
    // block for the config file, which `eventbus token hash` makes again from the token
    let env = Env::new();
    let output = env.run(&["token", "new", "--name", "vera", "--role", "viewer"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    let (token, block) = printed.split_once("\n\n").unwrap();
    assert!(token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()), "{printed}");
    let hash = env.run_with_stdin(&["token", "hash"], &format!("{token}\n"));
    assert!(hash.status.success(), "{}", stderr(&hash));
    assert!(block.contains(&format!("sha256 = \"{}\"", stdout(&hash).trim())), "{block}");
    let named = env.run_with_stdin(&["token", "hash", "--name", "vera", "--role", "viewer"], token);
    assert_eq!(stdout(&named).trim(), block.trim());
    assert!(!stderr(&output).contains(token), "the token is printed once, on stdout");

    // When serve runs with a config file holding the block
    let config = env.dir.path().join("eventbus.toml");
    std::fs::write(&config, block).unwrap();
    let mut cmd = env.cmd(&["--config", config.to_str().unwrap()]);
    cmd.env("EVENTBUS_LOG", "eventbus_cli=info");
    let (mut serve, mut log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);

    // Then the token reads, is refused a command for its role, and no token is a 401
    let (status, body) = http(&address, "GET", "/topics", Some(token), None).unwrap();
    assert_eq!(status, 200, "{body}");
    let deposit = r#"{"action": "deposit", "account_id": "acc_1", "amount": "1.00", "currency": "USD"}"#;
    let (status, body) = http(&address, "POST", "/commands/transactions", Some(token), Some(deposit)).unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains(r#""required_role":"operator""#) && body.contains("`vera` has viewer"), "{body}");
    assert_eq!(http(&address, "GET", "/topics", None, None).unwrap().0, 401);
    terminate(&serve.0);
    assert!(serve.0.wait().unwrap().success());

    // And the log names the refused caller with their address, never the token or its hash
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut log, &mut rest).unwrap();
    assert!(rest.contains("vera (viewer)") && rest.contains("127.0.0.1:"), "{rest}");
    assert!(!rest.contains(token) && !rest.contains(stdout(&hash).trim()), "{rest}");
}

#[test]
fn a_config_with_an_unknown_role_does_not_load_and_says_which_roles_there_are() {
    // Given a config file whose token has a role that does not exist
    let env = Env::new();
    let config = env.dir.path().join("eventbus.toml");
    let hash = "ab".repeat(32);
    std::fs::write(&config, format!("[[api.tokens]]\nname = \"eve\"\nrole = \"root\"\nsha256 = \"{hash}\"\n")).unwrap();

    // When serve starts with it, then it fails, naming the role and the roles allowed
    let output = env.run(&["--config", config.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(["root", "viewer", "operator", "admin"].iter().all(|word| error.contains(word)), "{error}");
}
