//! The store's tables, and the check that a store was written in the format this program reads.
//! Bump `FORMAT` when the tables change.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// The format of the tables below. Format 1 had no `group_offsets.finished`; a format-1 store is
/// upgraded in place when opened.
pub const FORMAT: i64 = 2;

/// Why a store cannot be used as it is.
pub(super) enum MigrateError {
    Sqlite(rusqlite::Error),
    /// The store has another format, written by another version of this program.
    Format {
        found: i64,
    },
}

impl From<rusqlite::Error> for MigrateError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

/// Creates the tables that are missing and records the format of a new store; refuses a store of
/// another format.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(CREATE)?;
    let found: Option<i64> =
        tx.query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| r.get(0)).optional()?;
    match found {
        None => {
            tx.execute("INSERT INTO meta (key, value) VALUES ('format', ?1)", [FORMAT])?;
        }
        Some(1) => {
            tx.execute_batch("ALTER TABLE group_offsets ADD COLUMN finished TEXT NOT NULL DEFAULT ''")?;
            tx.execute("UPDATE meta SET value = ?1 WHERE key = 'format'", [FORMAT])?;
        }
        Some(found) if found != FORMAT => return Err(MigrateError::Format { found }),
        Some(_) => {}
    }
    tx.commit()?;
    Ok(())
}

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topics (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
-- One row per partition: where its log starts and where the next record goes.
CREATE TABLE IF NOT EXISTS partitions (
    topic_id    INTEGER NOT NULL REFERENCES topics(id),
    partition   INTEGER NOT NULL,
    log_start   INTEGER NOT NULL DEFAULT 0,
    next_offset INTEGER NOT NULL DEFAULT 0,
    last_ts_ms  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    id        INTEGER PRIMARY KEY,
    topic_id  INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    offset    INTEGER NOT NULL,
    ts_ms     INTEGER NOT NULL,
    key       TEXT,
    value     BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_position ON records (topic_id, partition, offset);
-- Superseded by the partition leases below; leases are short-lived, so nothing is carried over.
DROP TABLE IF EXISTS group_leases;
-- The live consumers of a group across processes sharing the store, until they expire.
CREATE TABLE IF NOT EXISTS group_members (
    group_id   TEXT NOT NULL,
    owner      TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, owner)
) WITHOUT ROWID;
-- The topics each live member of a group consumes: a topic is dealt among its own consumers.
-- (Added after format 2 without a new format: a program of format 2 does not read it.)
CREATE TABLE IF NOT EXISTS group_member_topics (
    group_id TEXT NOT NULL,
    topic_id INTEGER NOT NULL,
    owner    TEXT NOT NULL,
    PRIMARY KEY (group_id, topic_id, owner)
) WITHOUT ROWID;
-- The one consumer of a group's partition, until it releases it or the lease expires.
CREATE TABLE IF NOT EXISTS partition_leases (
    group_id   TEXT NOT NULL,
    topic_id   INTEGER NOT NULL,
    partition  INTEGER NOT NULL,
    owner      TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic_id, partition)
) WITHOUT ROWID;
-- A group's position: the first offset not finished, and the finished offsets above it
-- (comma-separated runs relative to it, e.g. '1-3,7').
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id   TEXT NOT NULL,
    topic_id   INTEGER NOT NULL,
    partition  INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    finished   TEXT NOT NULL DEFAULT '',
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic_id, partition)
) WITHOUT ROWID;
";
