//! `eventbus serve` on a disk that freezes, fills up or turns read-only: clients get fast, clear
//! answers, readiness says what is wrong, nothing acknowledged is lost, and once the disk is well
//! again the service goes on with nothing doubled.
//!
//! Needs root: the data directory is on an ext4 image mounted through a loop device, frozen and
//! thawed with `fsfreeze`, filled with `fallocate`, and turned read-only by ext4's own error path.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "disk-token";

/// An ext4 file system on a loop device, unmounted (and thawed) when dropped.
struct Disk {
    image: PathBuf,
    mount: PathBuf,
}

fn run(cmd: &mut Command) {
    assert!(cmd.status().is_ok_and(|s| s.success()), "{cmd:?} (needs root)");
}

impl Disk {
    fn new(dir: &Path) -> Self {
        let image = dir.join("disk.img");
        let mount = dir.join("disk");
        std::fs::create_dir_all(&mount).unwrap();
        run(Command::new("truncate").args(["-s", "300M"]).arg(&image));
        // No blocks reserved for root: the tests run as root, and full must mean full.
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0"]).arg(&image));
        let disk = Self { image, mount };
        disk.mount();
        disk
    }

    fn mount(&self) {
        run(Command::new("mount").args(["-o", "loop,errors=remount-ro"]).arg(&self.image).arg(&self.mount));
    }

    fn freeze(&self, frozen: bool) {
        let status = Command::new("fsfreeze").arg(if frozen { "-f" } else { "-u" }).arg(&self.mount).status().unwrap();
        assert!(status.success() || !frozen);
    }

    /// Takes every free block, in a file that [`Self::free`] deletes.
    fn fill(&self) {
        let fill = self.mount.join("fill");
        let stats = rustix::fs::statvfs(&self.mount).unwrap();
        let mut size = stats.f_bavail * stats.f_frsize;
        // The extents of the file need blocks too: try less until it fits.
        while size > 0
            && !Command::new("fallocate").arg("-l").arg(size.to_string()).arg(&fill).status().unwrap().success()
        {
            size = size.saturating_sub(256 * 1024);
        }
        // Then what is left, a block at a time.
        for n in 0..1_000 {
            if std::fs::write(self.mount.join(format!("crumb-{n}")), [0u8; 4096]).is_err() {
                return;
            }
        }
        panic!("the disk does not fill up");
    }

    fn free(&self) {
        for entry in std::fs::read_dir(&self.mount).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "fill" || name.starts_with("crumb-") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }

    /// Turns the file system read-only the way ext4 does on an I/O error (`errors=remount-ro`).
    /// Only an unmount, a check and a mount make it writable again.
    fn fail(&self) {
        let device = std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .find(|line| line.split(' ').nth(1) == Some(self.mount.to_str().unwrap()))
            .and_then(|line| line.split(' ').next().map(str::to_owned))
            .expect("the disk is mounted");
        let name = device.rsplit('/').next().unwrap();
        std::fs::write(format!("/sys/fs/ext4/{name}/trigger_fs_error"), "a test turns the disk read-only").unwrap();
    }

    /// What an operator does after [`Self::fail`]: unmount, check and repair, mount again.
    fn repair(&self) {
        run(Command::new("umount").arg(&self.mount));
        // 1: errors were corrected, which is what a file system that failed needs.
        let fsck = Command::new("e2fsck").args(["-f", "-y"]).arg(&self.image).output().unwrap();
        assert!(matches!(fsck.status.code(), Some(0 | 1)), "{fsck:?}");
        self.mount();
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.freeze(false);
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

/// `serve` on a data directory of `disk`, with a customer and a funded account `acc_disk`.
struct Given {
    _env: Env,
    serve: Running,
    address: String,
    data: PathBuf,
}

impl Given {
    fn serve_on(disk: &Disk) -> (Running, String, PathBuf) {
        let data = disk.mount.join("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventbus"));
        cmd.arg("--data-dir").arg(&data).env("EVENTBUS_LOG", "warn").env("EVENTBUS_API_TOKEN", TOKEN);
        let (serve, _log, address) = start_serve(&mut cmd, &["--no-loan-offers"]);
        (serve, address, data)
    }

    fn new(env: Env, disk: &Disk) -> Self {
        let (serve, address, data) = Self::serve_on(disk);
        let post = |path: &str, body: &str| http(&address, "POST", path, Some(TOKEN), Some(body)).unwrap().0;
        let create = r#"{"action": "create", "customer_id": "cust_disk", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}"#;
        assert_eq!(post("/commands/customers?wait=true", create), 200);
        let open = r#"{"action": "open_account", "customer_id": "cust_disk", "account_type": "checking", "currency": "USD", "account_id": "acc_disk"}"#;
        assert_eq!(post("/commands/customers?wait=true", open), 200);
        let given = Self { _env: env, serve, address, data };
        // An acknowledged deposit before the fault, which must never be lost.
        let (status, answer, _) = given.deposit("before-1", "10.00", 20_000);
        assert_eq!(status, 200, "{answer}");
        given.wait_for_balance(1000);
        given
    }

    /// A keyed deposit that waits for its outcome: the status, the whole answer, how long it took.
    fn deposit(&self, key: &str, amount: &str, timeout_ms: u64) -> (u16, String, Duration) {
        let body =
            format!(r#"{{"action": "deposit", "account_id": "acc_disk", "amount": "{amount}", "currency": "USD"}}"#);
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        let request = format!(
            "POST /commands/transactions?wait=true&timeout_ms={timeout_ms} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
        let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, answer, started.elapsed())
    }

    fn wait_for_balance(&self, cents: u64) {
        let started = Instant::now();
        let balance = || balance_cents(&self.address, TOKEN, "acc_disk");
        while balance() != Some(cents) {
            assert!(started.elapsed() < Duration::from_secs(30), "balance {:?} cents, expected {cents}", balance());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends a keyed deposit on a disk that cannot be written, and checks that it is refused at
    /// once with a 503 whose `cause` is `cause`, with `Retry-After`, and that `/ready` is 503 and
    /// says `words`. Returns how long the deposit took.
    fn refused_at_once(&self, key: &str, cause: &str, words: &str) -> Duration {
        let (status, answer, waited) = self.deposit(key, "25.00", 3000);
        assert!(waited < Duration::from_secs(8), "answered after {waited:?}: {answer}");
        assert_eq!(status, 503, "{answer}");
        assert!(answer.contains(&format!(r#""cause":"{cause}""#)), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after:"), "{answer}");
        let (ready, body, _) = self.ready();
        assert_eq!(ready, 503, "{body}");
        assert!(body.contains(words), "{body}");
        waited
    }

    /// `/ready`'s status and body, and how long it took to answer.
    fn ready(&self) -> (u16, String, Duration) {
        let started = Instant::now();
        let (status, body) = http(&self.address, "GET", "/ready", None, None).unwrap_or_default();
        (status, body, started.elapsed())
    }

    /// How long until `/ready` is 200 again, by itself.
    fn wait_until_ready(&self) -> Duration {
        let started = Instant::now();
        while self.ready().0 != 200 {
            assert!(started.elapsed() < Duration::from_secs(30), "not ready again: {:?}", self.ready());
            std::thread::sleep(Duration::from_millis(200));
        }
        started.elapsed()
    }

    fn stop(mut self) {
        terminate(&self.serve.0);
        assert!(self.serve.0.wait().unwrap().success());
    }
}

#[test]
fn a_frozen_disk_gets_fast_clear_answers_and_the_service_recovers_when_it_thaws() {
    // Given serve with its data directory on a disk of its own, and a funded account
    let env = Env::new();
    let disk = Disk::new(env.dir.path());
    let given = Given::new(env, &disk);

    // When the disk freezes and a client sends a deposit with a 3 s timeout
    disk.freeze(true);
    let (status, answer, waited) = given.deposit("frozen-1", "25.00", 3000);

    // Then it is answered within the timeout and a little, not left hanging, and not as done
    assert!(waited < Duration::from_secs(8), "answered after {waited:?}: {answer}");
    assert!(status == 503 || status == 202, "{answer}");

    // and readiness says the disk is frozen
    let (ready, body, ready_answered) = given.ready();
    assert!(ready_answered < Duration::from_secs(8));
    assert_eq!(ready, 503, "{body}");
    assert!(body.contains("frozen") || body.contains("did not answer"), "{body}");

    // When the disk thaws, then the service is ready again by itself, the retry under the same
    // key gets the outcome, and the money moved once, beside the deposit from before
    disk.freeze(false);
    let recovered = given.wait_until_ready();
    let (retried, answer, _) = given.deposit("frozen-1", "25.00", 20_000);
    assert!(retried == 200 && answer.contains(r#""status":"accepted""#), "{answer}");
    given.wait_for_balance(3500);
    given.stop();
    eprintln!(
        "fault-suite: disk | frozen disk (fsfreeze on an ext4 loop device) under a keyed command | answered {status} in {} ms \
         (timeout_ms 3000), /ready 503 naming it in {} ms; ready again {} ms after the thaw, the retry moved the money once |",
        waited.as_millis(),
        ready_answered.as_millis(),
        recovered.as_millis()
    );
}

#[test]
fn a_full_disk_gets_fast_clear_answers_and_the_service_recovers_when_space_is_freed() {
    // Given serve with its data directory on a disk of its own, and a funded account
    let env = Env::new();
    let disk = Disk::new(env.dir.path());
    let given = Given::new(env, &disk);

    // When the disk fills up and a client sends a deposit
    disk.fill();
    // Then it is refused at once, with a reason that names the full disk, and so is readiness
    let waited = given.refused_at_once("full-1", "disk_full", "is full");

    // When space is freed, then the service is ready again by itself, the retry under the same
    // key is carried out once, and the deposit from before is still there
    disk.free();
    let recovered = given.wait_until_ready();
    let (retried, answer, _) = given.deposit("full-1", "25.00", 20_000);
    assert!(retried == 200 && answer.contains(r#""status":"accepted""#), "{answer}");
    given.wait_for_balance(3500);
    let (again, answer, _) = given.deposit("full-1", "25.00", 20_000);
    assert!(again == 200 && answer.contains("idempotent-replayed: true"), "{answer}");
    given.wait_for_balance(3500);
    given.stop();
    eprintln!(
        "fault-suite: disk | full disk (fallocate on an ext4 loop device) under a keyed command | answered 503 in {} ms, \
         /ready 503 naming it; ready again {} ms after space was freed, the retry moved the money once |",
        waited.as_millis(),
        recovered.as_millis()
    );
}

#[test]
fn a_disk_turned_read_only_gets_fast_clear_answers_and_a_restart_after_the_repair_loses_nothing() {
    // Given serve with its data directory on a disk of its own, and a funded account
    let env = Env::new();
    let disk = Disk::new(env.dir.path());
    let given = Given::new(env, &disk);

    // When the file system fails and turns read-only, and a client sends a deposit
    disk.fail();
    // Then it is refused at once, with a reason that names the read-only disk, and so is readiness
    let waited = given.refused_at_once("read-only-1", "disk_read_only", "read-only");

    // When the operator stops the service, which stops in time whatever it could not write
    terminate(&given.serve.0);
    let (mut serve, data) = (given.serve, given.data);
    let stopping = Instant::now();
    while serve.0.try_wait().unwrap().is_none() {
        assert!(stopping.elapsed() < Duration::from_secs(30), "serve did not stop on a read-only disk");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = stopping.elapsed();
    // and repairs the disk and starts the service again
    disk.repair();
    let (serve, address, restarted_data) = Given::serve_on(&disk);
    assert_eq!(restarted_data, data);
    let given = Given { _env: given._env, serve, address, data };

    // Then the deposit acknowledged before the failure is there, and the retry under the same
    // key is carried out once
    given.wait_for_balance(1000);
    let (retried, answer, _) = given.deposit("read-only-1", "25.00", 20_000);
    assert!(retried == 200 && answer.contains(r#""status":"accepted""#), "{answer}");
    given.wait_for_balance(3500);
    given.stop();
    eprintln!(
        "fault-suite: disk | disk turned read-only (ext4 error on a loop device) under a keyed command | answered 503 \
         in {} ms, /ready 503 naming it; stopped in {} ms, after the repair and a restart nothing acknowledged was lost and \
         the retry moved the money once |",
        waited.as_millis(),
        stopped.as_millis()
    );
}
