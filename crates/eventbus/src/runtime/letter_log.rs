//! Where a subscription's letters go and come back from: the dead-letter topics of the bus, and
//! the waits and retries around writing to them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use super::record::Payload;
use crate::bus::{BusError, Offset, Partition, Record};
use crate::envelope::EventSchema;
use crate::topics::TopicName;

/// The wait after a storage error before trying again.
pub(crate) const STORAGE_RETRY: Duration = Duration::from_millis(200);

/// The consumer was asked to stop before it finished the message; it will be delivered again.
pub struct Stopped;

/// The dead-letter topics of the bus: where letters are written, and read back.
#[async_trait]
pub(crate) trait DeadLetterLog: Send + Sync + 'static {
    /// Appends a record about a letter to `<topic>.dlq`, created if it is missing.
    async fn dead_letter(&self, topic: &TopicName, key: Option<Arc<str>>, letter: EventSchema) -> Result<(), BusError>;

    /// Up to `max` records of `topic` (any topic: a source, or a dead-letter topic) from `from`.
    async fn read(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, BusError>;

    /// The offset the next record of partition 0 of `topic` will get: whether there is anything
    /// to read, without reading (a read costs a client on Kafka).
    async fn end(&self, topic: &TopicName) -> Result<Offset, BusError>;
}

/// Waits `delay`; true if `stop` turned true meanwhile.
pub(crate) async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stop.changed() => {}
    }
    *stop.borrow()
}

/// Appends a record to `<topic>.dlq`, retrying until it is stored.
pub(crate) async fn append(
    log: &dyn DeadLetterLog,
    topic: &TopicName,
    key: Option<Arc<str>>,
    letter: EventSchema,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Stopped> {
    loop {
        match log.dead_letter(topic, key.clone(), letter.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::error!(%topic, %error, "Dead-letter write failed; retrying");
                if wait_or_stop(stop, STORAGE_RETRY).await {
                    return Err(Stopped);
                }
            }
        }
    }
}

/// A record's value as stored: flat JSON for an event.
pub(crate) fn original_bytes(payload: &Payload) -> Bytes {
    match payload {
        Payload::Event(event) => event.to_json().into(),
        Payload::Encoded { json: bytes, .. } | Payload::Bytes(bytes) | Payload::Rejected { bytes, .. } => bytes.clone(),
    }
}
