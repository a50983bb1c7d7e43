//! The previous outbox format: an embedded store (`eventbus.db`) whose topic `kafka.outbox`
//! held the entries and whose group `relay` held how far the broker acknowledged. Opening an
//! outbox moves the entries it had not sent into the log, in order, before anything new, then
//! deletes the store. A crash in between moves them again, so some may reach the broker twice;
//! none is lost.

use std::path::Path;

use super::log::{Frames, Log};
use super::{Message, OutboxError};
use crate::bus::{GroupId, Offset, Partition};
use crate::local::embedded::{EmbeddedConfig, EmbeddedStorage};
use crate::runtime::{Backend, Payload};
use crate::topics::TopicName;

/// Entries moved per append.
const BATCH: usize = 1000;

/// Moves what the previous format in `dir` had not sent into `log`; returns how many entries.
pub(super) async fn migrate(dir: &Path, log: &Log<Vec<Message>>) -> Result<u64, OutboxError> {
    let config = EmbeddedConfig::at(dir);
    let db = config.db_path();
    if !db.exists() {
        return Ok(0);
    }
    let moved = move_entries(config, log).await.map_err(OutboxError::Legacy)?;
    for suffix in ["", "-wal", "-shm"] {
        let path = db.with_file_name(format!("eventbus.db{suffix}"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(OutboxError::Io { path, source }),
        }
    }
    tracing::info!(moved, dir = %dir.display(), "Moved the waiting events of the previous outbox format");
    Ok(moved)
}

async fn move_entries(config: EmbeddedConfig, log: &Log<Vec<Message>>) -> Result<u64, crate::bus::BusError> {
    let storage = tokio::task::spawn_blocking(move || EmbeddedStorage::open(config))
        .await
        .map_err(crate::kafka::KafkaError::Task)??;
    let topic = TopicName::new("kafka.outbox")?;
    let Some(description) = storage.describe(Some(&topic)).await?.pop() else { return Ok(0) };
    let relay = GroupId::new("relay")?;
    let from = storage.committed(&relay, &description).await?.get(&Partition(0)).map_or(0, |p| p.next.0);
    let (mut next, mut moved) = (from, 0);
    loop {
        let records = storage.read(&topic, Partition(0), Offset(next), BATCH).await?;
        let Some(last) = records.last() else { break };
        next = last.offset.0 + 1;
        moved += records.len() as u64;
        let mut frames = Frames::default();
        for record in &records {
            if let Payload::Bytes(bytes) = &record.payload {
                frames.push(|buffer| buffer.extend_from_slice(bytes))?;
            }
        }
        log.append(frames, Vec::new()).await?;
    }
    Ok(moved)
}
