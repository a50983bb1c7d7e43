//! `eventbus serve` on a disk that freezes: clients get fast, clear answers, readiness says what
//! is wrong, and once the disk thaws the service goes on by itself with nothing lost or doubled.
//!
//! Needs root: the data directory is on an ext4 image mounted through a loop device, frozen and
//! thawed with `fsfreeze`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "disk-token";

/// An ext4 file system on a loop device, unmounted (and thawed) when dropped.
struct Disk {
    mount: PathBuf,
}

impl Disk {
    fn new(dir: &Path) -> Self {
        let image = dir.join("disk.img");
        let mount = dir.join("disk");
        std::fs::create_dir_all(&mount).unwrap();
        let run = |cmd: &mut Command| assert!(cmd.status().is_ok_and(|s| s.success()), "{cmd:?} (needs root)");
        run(Command::new("truncate").args(["-s", "300M"]).arg(&image));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&mount));
        Self { mount }
    }

    fn freeze(&self, frozen: bool) {
        let status = Command::new("fsfreeze").arg(if frozen { "-f" } else { "-u" }).arg(&self.mount).status().unwrap();
        assert!(status.success() || !frozen);
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.freeze(false);
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

fn balance(address: &str, account: &str) -> Option<String> {
    let (status, body) = http(address, "GET", &format!("/accounts/{account}"), Some(TOKEN), None)?;
    let body: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| body["balance"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn a_frozen_disk_gets_fast_clear_answers_and_the_service_recovers_when_it_thaws() {
    // Given serve with its data directory on a disk of its own, and an account
    let env = Env::new();
    let disk = Disk::new(env.dir.path());
    let data = disk.mount.join("data");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventbus"));
    cmd.arg("--data-dir").arg(&data).env("EVENTBUS_LOG", "warn").env("EVENTBUS_API_TOKEN", TOKEN);
    let (mut serve, _log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);
    let post = |path: &str, body: &str| http(&address, "POST", path, Some(TOKEN), Some(body));
    let create = r#"{"action": "create", "customer_id": "cust_fz", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}"#;
    assert_eq!(post("/commands/customers?wait=true", create).unwrap().0, 200);
    let open = r#"{"action": "open_account", "customer_id": "cust_fz", "account_type": "checking", "currency": "USD", "account_id": "acc_fz"}"#;
    assert_eq!(post("/commands/customers?wait=true", open).unwrap().0, 200);

    // When the disk freezes and a client sends a deposit with a 3 s timeout
    disk.freeze(true);
    let deposit = r#"{"action": "deposit", "account_id": "acc_fz", "amount": "25.00", "currency": "USD"}"#;
    let keyed = |timeout_ms: u64| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        let request = format!(
            "POST /commands/transactions?wait=true&timeout_ms={timeout_ms} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Idempotency-Key: frozen-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{deposit}",
            deposit.len()
        );
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
        answer
    };
    let started = Instant::now();
    let answer = keyed(3000);
    let waited = started.elapsed();

    // Then it is answered within the timeout and a little, not left hanging, and not as done
    assert!(waited < Duration::from_secs(8), "answered after {waited:?}: {answer}");
    assert!(answer.starts_with("HTTP/1.1 503") || answer.starts_with("HTTP/1.1 202"), "{answer}");
    let answer_status = answer[9..12].to_owned();

    // and readiness says the disk is frozen
    let started = Instant::now();
    let (status, body) = http(&address, "GET", "/ready", None, None).unwrap();
    let ready_answered = started.elapsed();
    assert!(ready_answered < Duration::from_secs(8));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("frozen") || body.contains("did not answer"), "{body}");

    // When the disk thaws, then the service is ready again by itself, the retry under the same
    // key gets the outcome, and the money moved once
    disk.freeze(false);
    let thawed = Instant::now();
    while http(&address, "GET", "/ready", None, None).is_none_or(|(status, _)| status != 200) {
        assert!(thawed.elapsed() < Duration::from_secs(30), "not ready again after the thaw");
        std::thread::sleep(Duration::from_millis(200));
    }
    let recovered = thawed.elapsed();
    let answer = keyed(20_000);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains(r#""status":"accepted""#), "{answer}");
    let started = Instant::now();
    while balance(&address, "acc_fz").as_deref() != Some("25.00") {
        assert!(started.elapsed() < Duration::from_secs(30), "balance {:?}", balance(&address, "acc_fz"));
        std::thread::sleep(Duration::from_millis(200));
    }
    terminate(&serve.0);
    assert!(serve.0.wait().unwrap().success());
    eprintln!(
        "fault-suite: disk | frozen disk (fsfreeze on an ext4 loop device) under a keyed command | answered {} in {} ms \
         (timeout_ms 3000), /ready 503 naming it in {} ms; ready again {} ms after the thaw, the retry moved the money once |",
        answer_status,
        waited.as_millis(),
        ready_answered.as_millis(),
        recovered.as_millis()
    );
}
