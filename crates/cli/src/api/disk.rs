//! Whether the service can write to its data directory, for `GET /ready`: a full, read-only or
//! frozen disk makes the service unready, with the reason, instead of failing the writes of
//! commands one by one.
//!
//! A request that fails on the store or the bus asks the same probe why ([`explain`]): a client
//! is told that the disk is full or read-only (without the path), and when to try again,
//! instead of only "unavailable".
//!
//! The probe writes and syncs a small file. A probe that does not come back within
//! [`PROBE_TIMEOUT`] means the disk is frozen; while it hangs no second probe is started, so a
//! frozen disk ties up one thread, not one per request.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// The longest a write and sync of the probe file may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Below this much free space the disk counts as full: SQLite needs room for its journal.
pub const MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// What is wrong with the disk, as a client may be told it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Full,
    ReadOnly,
    Frozen,
    /// Any other failure to write: a missing directory, an I/O error.
    Unwritable,
}

impl Fault {
    pub const ALL: [Self; 4] = [Self::Full, Self::ReadOnly, Self::Frozen, Self::Unwritable];

    /// The `cause` of an API error.
    pub fn code(self) -> &'static str {
        match self {
            Self::Full => "disk_full",
            Self::ReadOnly => "disk_read_only",
            Self::Frozen => "disk_frozen",
            Self::Unwritable => "disk_unwritable",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::Full => "its disk is full",
            Self::ReadOnly => "its disk is read-only",
            Self::Frozen => "its disk does not answer",
            Self::Unwritable => "it cannot write to its disk",
        }
    }
}

/// A failed probe: the fault, and what an operator needs to act on it (the path, the error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub fault: Fault,
    message: String,
}

impl Problem {
    fn new(fault: Fault, message: String) -> Self {
        Self { fault, message }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Marks the answer of a store or bus that failed (an [`ApiError::unavailable`]), for
/// [`explain`].
#[derive(Clone, Copy, Debug)]
pub struct Unavailable;

/// Gives every answer marked [`Unavailable`] the disk's fault as its cause, if the probe finds
/// one: the client learns that an operator is needed, not only that it should retry.
pub async fn explain(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.extensions().get::<Unavailable>().is_none() {
        return response;
    }
    let Some(disk) = state.disk() else { return response };
    let Err(problem) = disk.check().await else { return response };
    let message =
        format!("the service cannot write: {}; try again once an operator has mended it", problem.fault.words());
    ApiError {
        retry_after: Some(Duration::from_secs(5)),
        ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    .with_detail("cause", problem.fault.code())
    .into_response()
}

/// Probes one directory.
pub struct Disk {
    dir: PathBuf,
    /// When the probe that has not come back yet started.
    in_flight: Arc<Mutex<Option<Instant>>>,
}

impl Disk {
    /// A probe of `dir`, which must exist.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, in_flight: Arc::default() }
    }

    /// `Ok` if a small write to the directory was synced in time; else what is wrong, in words
    /// an operator can act on.
    pub async fn check(&self) -> Result<(), Problem> {
        let started = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(since) = *in_flight {
                return Err(Problem::new(
                    Fault::Frozen,
                    format!(
                        "a write to {} has not come back for {:?}: the disk is frozen",
                        self.dir.display(),
                        since.elapsed()
                    ),
                ));
            }
            let now = Instant::now();
            *in_flight = Some(now);
            now
        };
        let (dir, in_flight) = (self.dir.clone(), Arc::clone(&self.in_flight));
        let probe = tokio::task::spawn_blocking(move || {
            let result = probe(&dir);
            *in_flight.lock().unwrap_or_else(|e| e.into_inner()) = None;
            result
        });
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(Problem::new(Fault::Unwritable, format!("the disk probe failed: {error}"))),
            Err(_) => Err(Problem::new(
                Fault::Frozen,
                format!(
                    "a write to {} did not come back within {:?} (started {:?} ago): the disk is frozen",
                    self.dir.display(),
                    PROBE_TIMEOUT,
                    started.elapsed()
                ),
            )),
        }
    }
}

fn probe(dir: &std::path::Path) -> Result<(), Problem> {
    let stats = rustix::fs::statvfs(dir)
        .map_err(|error| Problem::new(Fault::Unwritable, format!("cannot read {}: {error}", dir.display())))?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    if free < MIN_FREE_BYTES {
        return Err(Problem::new(
            Fault::Full,
            format!("the disk of {} is full: {} KiB free", dir.display(), free / 1024),
        ));
    }
    let path = dir.join(".ready-probe");
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(b"ready")?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(&path);
    written.map_err(|error| match error.raw_os_error() {
        Some(code) if code == rustix::io::Errno::ROFS.raw_os_error() => {
            Problem::new(Fault::ReadOnly, format!("the disk of {} is read-only", dir.display()))
        }
        Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => {
            Problem::new(Fault::Full, format!("the disk of {} is full", dir.display()))
        }
        _ => Problem::new(Fault::Unwritable, format!("cannot write to {}: {error}", dir.display())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_writable_directory_passes_and_an_unwritable_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Disk::new(dir.path().to_owned()).check().await, Ok(()));
        assert!(!dir.path().join(".ready-probe").exists());
        let file = dir.path().join("not-a-directory");
        std::fs::write(&file, b"x").unwrap();
        let error = Disk::new(file.clone()).check().await.unwrap_err();
        assert!(error.to_string().contains(&file.display().to_string()), "{error}");
        assert_eq!(error.fault, Fault::Unwritable);
    }

    /// Needs root, to mount a small tmpfs; the machines of the test suite have it.
    #[tokio::test]
    async fn a_full_or_read_only_disk_is_named() {
        // Given a 100 MiB disk of its own
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_str().unwrap().to_owned();
        let mount = |args: &[&str]| std::process::Command::new("mount").args(args).status().is_ok_and(|s| s.success());
        assert!(mount(&["-t", "tmpfs", "-o", "size=100m", "tmpfs", &target]), "mounting a tmpfs needs root");
        let disk = Disk::new(dir.path().to_owned());
        let checks = async {
            let empty = disk.check().await;
            // When it fills up past what SQLite needs
            std::fs::write(dir.path().join("fill"), vec![0u8; 50 * 1024 * 1024]).unwrap();
            let full = disk.check().await;
            // When it is remounted read-only
            std::fs::remove_file(dir.path().join("fill")).unwrap();
            assert!(mount(&["-o", "remount,ro", &target]));
            (empty, full, disk.check().await)
        };
        let (empty, full, read_only) = checks.await;
        let _ = std::process::Command::new("umount").arg(&target).status();
        // Then each state is named
        assert_eq!(empty, Ok(()));
        let (full, read_only) = (full.unwrap_err(), read_only.unwrap_err());
        assert!(full.to_string().contains("is full") && full.fault == Fault::Full, "{full:?}");
        assert!(read_only.to_string().contains("read-only") && read_only.fault == Fault::ReadOnly, "{read_only:?}");
    }
}
