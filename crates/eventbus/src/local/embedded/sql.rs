//! Every SQL statement of the store: the read queries, and the writes the writer thread applies
//! inside its transactions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::config::{EmbeddedConfig, SyncMode};
use super::error::EmbeddedError;
use crate::bus::{GroupId, Offset, Partition, Published};
use crate::runtime::{GroupCommits, Payload, Position, StoredRecord};
use crate::topics::TopicName;

/// Records retention deletes from one partition in one pass.
const RETENTION_CHUNK: u64 = 10_000;

/// A topic as the store knows it.
#[derive(Clone, Copy)]
pub(super) struct TopicRow {
    /// The topic's key in the other tables.
    pub(super) id: i64,
    pub(super) partitions: u32,
}

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A connection to the store in WAL mode, with the configured sync and busy timeout.
pub(super) fn connect(config: &EmbeddedConfig, path: &Path) -> Result<Connection, EmbeddedError> {
    let classify = |e| EmbeddedError::classify(path, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
    conn.busy_timeout(config.busy_timeout).map_err(classify)?;
    // Keep a cached statement's plan: without this, a statement with a bound `LIMIT ?` is
    // prepared again on every use, and consumers run such reads for every partition they poll.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(classify)?;
    let sync = match config.sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    // Reading the journal mode touches the file header: a file that is not a database fails here.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0)).map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), %mode, "Store is not in WAL mode");
    }
    conn.execute_batch(&format!("PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;")).map_err(classify)?;
    Ok(conn)
}

/// The topic named `name`, if it exists.
pub(super) fn topic(conn: &Connection, name: &str) -> rusqlite::Result<Option<TopicRow>> {
    conn.query_row("SELECT id, partitions FROM topics WHERE name = ?1", [name], |r| {
        Ok(TopicRow { id: r.get(0)?, partitions: r.get(1)? })
    })
    .optional()
}

/// Each partition of one topic (or of all when `name` is `None`) as (topic, partition, log
/// start, next offset), ordered by topic and partition.
pub(super) fn partitions(conn: &Connection, name: Option<String>) -> rusqlite::Result<Vec<(String, u32, u64, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.name, p.partition, p.log_start, p.next_offset FROM topics t
         JOIN partitions p ON p.topic_id = t.id
         WHERE ?1 IS NULL OR t.name = ?1 ORDER BY t.name, p.partition",
    )?;
    let rows = stmt.query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    rows.collect()
}

/// Up to `max` records of a partition from offset `from` on.
pub(super) fn read(
    conn: &Connection,
    topic_id: i64,
    partition: Partition,
    from: Offset,
    max: usize,
) -> rusqlite::Result<Vec<StoredRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT offset, ts_ms, key, value FROM records
         WHERE topic_id = ?1 AND partition = ?2 AND offset >= ?3 ORDER BY offset LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![topic_id, partition.0, from.0, max as i64], |r| {
        Ok(StoredRecord {
            partition,
            offset: Offset(r.get(0)?),
            timestamp: Utc.timestamp_millis_opt(r.get(1)?).single().unwrap_or_default(),
            key: r.get::<_, Option<String>>(2)?.map(Arc::from),
            payload: Payload::Bytes(Bytes::from(r.get::<_, Vec<u8>>(3)?)),
        })
    })?;
    rows.collect()
}

/// The positions `group` committed in a topic.
pub(super) fn committed(
    conn: &Connection,
    group: &str,
    topic_id: i64,
) -> rusqlite::Result<HashMap<Partition, Position>> {
    let mut stmt = conn.prepare_cached(
        "SELECT partition, offset, finished FROM group_offsets WHERE group_id = ?1 AND topic_id = ?2",
    )?;
    let rows = stmt.query_map(params![group, topic_id], |r| {
        let finished: String = r.get(2)?;
        Ok((Partition(r.get(0)?), Position::with_finished_text(Offset(r.get(1)?), &finished)))
    })?;
    rows.collect()
}

/// The first `max` groups by id, each with what it committed per topic, and the groups that
/// have a live member but have committed nothing yet. Rows whose group id or topic name this
/// program would not write are skipped.
pub(super) fn groups(conn: &Connection, max: usize) -> rusqlite::Result<GroupCommits> {
    let mut groups = GroupCommits::new();
    let mut members = conn.prepare_cached(
        "SELECT DISTINCT group_id FROM group_members WHERE expires_ms > ?1 ORDER BY group_id LIMIT ?2",
    )?;
    for group in members.query_map(params![now_ms(), max as i64], |r| r.get::<_, String>(0))? {
        if let Ok(group) = GroupId::new(group?) {
            groups.entry(group).or_default();
        }
    }
    let mut ids = conn.prepare_cached("SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id LIMIT ?1")?;
    for group in ids.query_map([max as i64], |r| r.get::<_, String>(0))? {
        if let Ok(group) = GroupId::new(group?) {
            groups.entry(group).or_default();
        }
    }
    while groups.len() > max {
        groups.pop_last();
    }
    let mut offsets = conn.prepare_cached(
        "SELECT t.name, g.partition, g.offset, g.finished FROM group_offsets g
         JOIN topics t ON t.id = g.topic_id WHERE g.group_id = ?1",
    )?;
    for (group, topics) in &mut groups {
        let rows = offsets.query_map([group.as_str()], |r| {
            let finished: String = r.get(3)?;
            let position = Position::with_finished_text(Offset(r.get(2)?), &finished);
            Ok((r.get::<_, String>(0)?, Partition(r.get(1)?), position))
        })?;
        for row in rows {
            let (topic, partition, position) = row?;
            if let Ok(topic) = TopicName::new(&topic) {
                topics.entry(topic).or_default().insert(partition, position);
            }
        }
    }
    Ok(groups)
}

/// Where each partition of the topics `topic_ids` ends: the offset its next record gets.
pub(super) fn ends(conn: &Connection, topic_ids: &[i64]) -> rusqlite::Result<Vec<(i64, Partition, u64)>> {
    let mut stmt = conn.prepare_cached("SELECT partition, next_offset FROM partitions WHERE topic_id = ?1")?;
    let mut ends = Vec::new();
    for &topic_id in topic_ids {
        let rows = stmt.query_map([topic_id], |r| Ok((topic_id, Partition(r.get(0)?), r.get(1)?)))?;
        for row in rows {
            ends.push(row?);
        }
    }
    Ok(ends)
}

/// The first offset with a timestamp at or after `target`. Timestamps never decrease within a
/// partition (each append takes the later of now and the last timestamp), so a binary search over
/// the retained offsets finds it.
pub(super) fn first_at_or_after(
    conn: &Connection,
    topic_id: i64,
    partition: Partition,
    target: i64,
) -> rusqlite::Result<Offset> {
    let (mut low, mut high): (u64, u64) = conn.query_row(
        "SELECT log_start, next_offset FROM partitions WHERE topic_id = ?1 AND partition = ?2",
        params![topic_id, partition.0],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut stmt =
        conn.prepare_cached("SELECT ts_ms FROM records WHERE topic_id = ?1 AND partition = ?2 AND offset = ?3")?;
    while low < high {
        let mid = low + (high - low) / 2;
        let ts: Option<i64> = stmt.query_row(params![topic_id, partition.0, mid], |r| r.get(0)).optional()?;
        match ts {
            Some(ts) if ts < target => low = mid + 1,
            Some(_) => high = mid,
            // Deleted by retention meanwhile: everything before is older still.
            None => low = mid + 1,
        }
    }
    Ok(Offset(low))
}

/// A partition of a topic, by the topic's row id.
pub(super) type PartitionId = (i64, Partition);

/// Renews `owner`'s membership of `group`, forgets members that expired, and deals each topic of
/// `partitions` out over the live members that consume it, in the order of their names: the
/// `i`th partition of topic `t` (by its row id) to member `(i + t) % n`, so that members of many
/// small topics get a share of each. Takes or renews the lease of each partition dealt to `owner`
/// unless another member holds it unexpired; leaves the others it holds alone, neither renewed
/// nor released. Returns the partitions held, and those held that fall to another member.
pub(super) fn claim(
    conn: &Connection,
    group: &GroupId,
    owner: &str,
    partitions: &[PartitionId],
    ttl_ms: i64,
) -> rusqlite::Result<(Vec<PartitionId>, Vec<PartitionId>)> {
    let now = now_ms();
    let expires = now.saturating_add(ttl_ms);
    conn.prepare_cached(
        "INSERT INTO group_members (group_id, owner, expires_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (group_id, owner) DO UPDATE SET expires_ms = excluded.expires_ms",
    )?
    .execute(params![group.as_str(), owner, expires])?;
    let mut subscribe = conn
        .prepare_cached("INSERT OR IGNORE INTO group_member_topics (group_id, topic_id, owner) VALUES (?1, ?2, ?3)")?;
    let mut topics: Vec<i64> = partitions.iter().map(|(topic_id, _)| *topic_id).collect();
    topics.sort_unstable();
    topics.dedup();
    for topic_id in &topics {
        subscribe.execute(params![group.as_str(), topic_id, owner])?;
    }
    // A member whose lease lapsed, or whose process died (it is not waited out), leaves now,
    // with its partitions.
    let all: Vec<(String, i64)> = conn
        .prepare_cached("SELECT owner, expires_ms FROM group_members WHERE group_id = ?1")?
        .query_map([group.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (member, until) in all {
        if until <= now {
            leave(conn, group, &member)?;
        } else if crate::liveness::is_gone(&member) {
            tracing::info!(%group, %member, "A member of the group died; its partitions are dealt out now");
            leave(conn, group, &member)?;
        }
    }
    let mut consumers = conn.prepare_cached(
        "SELECT t.owner FROM group_member_topics t JOIN group_members m ON m.group_id = t.group_id AND m.owner = t.owner
         WHERE t.group_id = ?1 AND t.topic_id = ?2 ORDER BY t.owner",
    )?;
    let mut holder = conn.prepare_cached(
        "SELECT owner, expires_ms FROM partition_leases WHERE group_id = ?1 AND topic_id = ?2 AND partition = ?3",
    )?;
    let mut take = conn.prepare_cached(
        "INSERT INTO partition_leases (group_id, topic_id, partition, owner, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET owner = excluded.owner, expires_ms = excluded.expires_ms",
    )?;
    let (mut held, mut revoked) = (Vec::new(), Vec::new());
    for &topic_id in &topics {
        let members: Vec<String> = consumers
            .query_map(params![group.as_str(), topic_id], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let me = members.iter().position(|member| member == owner).unwrap_or(0);
        let mut sorted: Vec<Partition> =
            partitions.iter().filter(|(topic, _)| *topic == topic_id).map(|(_, partition)| *partition).collect();
        sorted.sort_unstable();
        for (i, partition) in sorted.into_iter().enumerate() {
            let current: Option<(String, i64)> = holder
                .query_row(params![group.as_str(), topic_id, partition.0], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let live_holder = current.filter(|(_, until)| *until > now).map(|(holder, _)| holder);
            let dealt_to = (i as u64).wrapping_add(topic_id as u64) % members.len().max(1) as u64;
            if dealt_to != me as u64 {
                if live_holder.as_deref() == Some(owner) {
                    revoked.push((topic_id, partition));
                }
                continue;
            }
            if live_holder.as_ref().is_some_and(|holder| holder != owner) {
                continue;
            }
            take.execute(params![group.as_str(), topic_id, partition.0, owner, expires])?;
            held.push((topic_id, partition));
        }
    }
    Ok((held, revoked))
}

/// Gives up the leases `owner` holds on `partitions` of `group`.
pub(super) fn release(
    conn: &Connection,
    group: &GroupId,
    owner: &str,
    partitions: &[PartitionId],
) -> rusqlite::Result<()> {
    let mut release = conn.prepare_cached(
        "DELETE FROM partition_leases WHERE group_id = ?1 AND topic_id = ?2 AND partition = ?3 AND owner = ?4",
    )?;
    for (topic_id, partition) in partitions {
        release.execute(params![group.as_str(), topic_id, partition.0, owner])?;
    }
    Ok(())
}

/// Ends `owner`'s membership of `group` and gives up every partition it holds.
pub(super) fn leave(conn: &Connection, group: &GroupId, owner: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM partition_leases WHERE group_id = ?1 AND owner = ?2")?
        .execute(params![group.as_str(), owner])?;
    conn.prepare_cached("DELETE FROM group_member_topics WHERE group_id = ?1 AND owner = ?2")?
        .execute(params![group.as_str(), owner])?;
    conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND owner = ?2")?
        .execute(params![group.as_str(), owner])?;
    Ok(())
}

pub(super) fn delete_group(conn: &Connection, group: &GroupId) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM group_offsets WHERE group_id = ?1", [group.as_str()])?;
    conn.execute("DELETE FROM partition_leases WHERE group_id = ?1", [group.as_str()])?;
    conn.execute("DELETE FROM group_member_topics WHERE group_id = ?1", [group.as_str()])?;
    conn.execute("DELETE FROM group_members WHERE group_id = ?1", [group.as_str()])?;
    Ok(())
}

/// A record to append: its topic (by id and name), partition, key and value.
pub(super) struct AppendRecord {
    pub(super) topic_id: i64,
    pub(super) topic: TopicName,
    pub(super) partition: Partition,
    pub(super) key: Option<Arc<str>>,
    pub(super) value: Bytes,
}

/// Appends records, each to its topic, in order, and moves each partition's end.
pub(super) fn append(conn: &Connection, records: Vec<AppendRecord>) -> rusqlite::Result<Vec<Published>> {
    let now = now_ms();
    let mut heads: HashMap<(i64, Partition), (u64, i64)> = HashMap::new();
    let mut head_stmt =
        conn.prepare_cached("SELECT next_offset, last_ts_ms FROM partitions WHERE topic_id = ?1 AND partition = ?2")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO records (topic_id, partition, offset, ts_ms, key, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut published = Vec::with_capacity(records.len());
    for AppendRecord { topic_id, partition, key, value, .. } in records {
        let head = match heads.get_mut(&(topic_id, partition)) {
            Some(head) => head,
            None => {
                let head = head_stmt.query_row(params![topic_id, partition.0], |r| Ok((r.get(0)?, r.get(1)?)))?;
                heads.entry((topic_id, partition)).or_insert(head)
            }
        };
        let (offset, last_ts) = *head;
        let ts = now.max(last_ts);
        insert.execute(params![topic_id, partition.0, offset, ts, key.as_deref(), &value[..]])?;
        *head = (offset + 1, ts);
        published.push(Published::at(partition, Offset(offset)));
    }
    let mut update = conn.prepare_cached(
        "UPDATE partitions SET next_offset = ?3, last_ts_ms = ?4 WHERE topic_id = ?1 AND partition = ?2",
    )?;
    for ((topic_id, partition), (next, ts)) in heads {
        update.execute(params![topic_id, partition.0, next, ts])?;
    }
    Ok(published)
}

/// Commits a group's positions in a topic: the offset, and the finished offsets above it.
pub(super) fn commit(
    conn: &Connection,
    group: &GroupId,
    topic_id: i64,
    positions: &[(Partition, Position)],
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO group_offsets (group_id, topic_id, partition, offset, finished, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (group_id, topic_id, partition) DO UPDATE
         SET offset = excluded.offset, finished = excluded.finished, updated_ms = excluded.updated_ms",
    )?;
    let now = now_ms();
    for (partition, position) in positions {
        stmt.execute(params![group.as_str(), topic_id, partition.0, position.next.0, position.finished_text(), now])?;
    }
    Ok(())
}

pub(super) fn create_topics(conn: &Connection, topics: &[(TopicName, u32)]) -> rusqlite::Result<Vec<TopicName>> {
    let mut existing = Vec::new();
    let now = now_ms();
    for (name, partitions) in topics {
        let found: Option<i64> =
            conn.query_row("SELECT id FROM topics WHERE name = ?1", [name.as_str()], |r| r.get(0)).optional()?;
        if found.is_some() {
            existing.push(name.clone());
            continue;
        }
        conn.execute(
            "INSERT INTO topics (name, partitions, created_ms) VALUES (?1, ?2, ?3)",
            params![name.as_str(), partitions, now],
        )?;
        let id = conn.last_insert_rowid();
        let mut stmt = conn.prepare_cached("INSERT INTO partitions (topic_id, partition) VALUES (?1, ?2)")?;
        for partition in 0..*partitions {
            stmt.execute(params![id, partition])?;
        }
    }
    Ok(existing)
}

/// Deletes, from the head of each partition, the records older than the retention period. The
/// schedule topic is kept whole: its entries wait for their time, however far ahead.
pub(super) fn apply_retention(conn: &mut Connection, retention: Duration) -> rusqlite::Result<()> {
    let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let heads: Vec<(i64, u32, u64)> = {
        let mut stmt = tx.prepare(
            "SELECT topic_id, partition, log_start FROM partitions WHERE next_offset > log_start \
             AND topic_id NOT IN (SELECT id FROM topics WHERE name = ?1)",
        )?;
        stmt.query_map([crate::SCHEDULE_TOPIC], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut deleted = 0;
    for (topic_id, partition, log_start) in heads {
        // At most RETENTION_CHUNK records per partition per pass keeps the write lock short; the
        // next pass deletes more.
        let keep_from =
            first_at_or_after(&tx, topic_id, Partition(partition), cutoff)?.0.min(log_start + RETENTION_CHUNK);
        if keep_from > log_start {
            deleted += tx.execute(
                "DELETE FROM records WHERE topic_id = ?1 AND partition = ?2 AND offset < ?3",
                params![topic_id, partition, keep_from],
            )?;
            tx.execute(
                "UPDATE partitions SET log_start = ?3 WHERE topic_id = ?1 AND partition = ?2",
                params![topic_id, partition, keep_from],
            )?;
        }
    }
    tx.commit()?;
    if deleted > 0 {
        tracing::info!(deleted, "Retention deleted expired records");
    }
    Ok(())
}
