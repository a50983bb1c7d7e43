//! The store's tables. Bump `FORMAT` when they change.

pub const FORMAT: i64 = 1;

pub const CREATE: &str = "
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
-- The one consumer of a group's topics across processes sharing the store, until it expires.
CREATE TABLE IF NOT EXISTS group_leases (
    group_id   TEXT NOT NULL,
    topic_id   INTEGER NOT NULL,
    owner      TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id   TEXT NOT NULL,
    topic_id   INTEGER NOT NULL,
    partition  INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic_id, partition)
) WITHOUT ROWID;
";
