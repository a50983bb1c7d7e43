use std::path::PathBuf;
use std::time::Duration;

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// fsync on every commit: a published event survives a power cut. The default.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a crash of the process, not of the machine.
    Normal,
}

/// Settings of the embedded store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Where the store lives; created if missing.
    pub data_dir: PathBuf,
    /// How hard a commit waits for the disk; [`SyncMode::Full`] by default.
    pub sync: SyncMode,
    /// Records older than this are deleted; `None` keeps everything.
    pub retention: Option<Duration>,
    /// How often idle consumers look for records from other processes. Records of this process
    /// wake its consumers at once; the interval bounds only the delay for other processes'
    /// records, and each look costs one query per subscribed partition, so a service with many
    /// subscriptions spends its idle time here if it is short.
    pub poll_interval: Duration,
    /// How long a write waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// How long a consumer keeps its membership of a group and its share of the partitions
    /// without renewing; the other processes' consumers in the group take its share over after
    /// it. Consumers renew every third of it, and see others join or leave at that pace.
    pub lease_ttl: Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            sync: SyncMode::Full,
            retention: None,
            poll_interval: Duration::from_millis(100),
            busy_timeout: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(10),
        }
    }
}

impl EmbeddedConfig {
    /// The defaults with the store in `data_dir`.
    pub fn at(data_dir: impl Into<PathBuf>) -> Self {
        Self { data_dir: data_dir.into(), ..Self::default() }
    }

    /// The SQLite database file of the store: `eventbus.db` in `data_dir`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("eventbus.db")
    }
}
