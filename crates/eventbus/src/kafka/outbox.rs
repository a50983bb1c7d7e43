//! The durable local outbox in front of the broker. Publishing appends here first (fsynced, in
//! order, with group commit); a relay sends what waits to Kafka in order and records how far it
//! got. A broker outage delays events but neither loses them nor fails the caller.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{Kafka, KafkaError, Outgoing};
use crate::bus::{BusError, GroupId, Offset, Partition, Published};
use crate::envelope::Header;
use crate::local::Storage;
use crate::local::embedded::{EmbeddedConfig, EmbeddedStorage};
use crate::runtime::{Backend, NewRecord, Payload, Position};
use crate::topics::TopicName;

/// Entries the relay sends at once.
const RELAY_BATCH: usize = 500;
/// How long an acknowledgement nobody waited for is kept for a publisher that is about to ask.
const UNCLAIMED_FOR: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One message waiting for the broker: where it goes, then a newline, then its value.
#[derive(Serialize, Deserialize)]
struct Envelope {
    topic: String,
    key: Option<String>,
    headers: Vec<(String, String)>,
}

pub(super) struct Outbox {
    storage: EmbeddedStorage,
    topic: TopicName,
    relay: GroupId,
    /// The first entry the broker has not acknowledged; only the relay moves it.
    next: AtomicU64,
    acks: Mutex<Acks>,
}

#[derive(Default)]
struct Acks {
    waiting: HashMap<u64, oneshot::Sender<Published>>,
    unclaimed: HashMap<u64, (Published, Instant)>,
}

impl Outbox {
    pub(super) async fn open(dir: &Path) -> Result<Self, BusError> {
        let config = EmbeddedConfig::at(dir);
        let storage =
            tokio::task::spawn_blocking(move || EmbeddedStorage::open(config)).await.map_err(KafkaError::Task)??;
        let topic = TopicName::new("kafka.outbox")?;
        storage.ensure_topics(vec![(topic.clone(), 1)]).await?;
        let relay = GroupId::new("relay")?;
        let description =
            storage.describe(Some(&topic)).await?.pop().ok_or_else(|| BusError::UnknownTopic(topic.clone()))?;
        let next = storage.committed(&relay, &description).await?.get(&Partition(0)).map_or(0, |p| p.next.0);
        Ok(Self { storage, topic, relay, next: AtomicU64::new(next), acks: Mutex::default() })
    }

    /// Stores messages durably, in order; returns their outbox offsets.
    pub(super) async fn append(&self, messages: Vec<(TopicName, Outgoing)>) -> Result<Vec<u64>, BusError> {
        let records = messages
            .into_iter()
            .map(|(topic, message)| NewRecord {
                topic: self.topic.clone(),
                partition: Partition(0),
                key: None,
                payload: Payload::Bytes(Bytes::from(encode(&topic, message))),
            })
            .collect();
        let published = self.storage.append(records).await?;
        Ok(published.iter().filter_map(|p| p.offset).map(|o| o.0).collect())
    }

    /// Waits up to `timeout` for the broker to acknowledge each offset; `None` for those it has not.
    pub(super) async fn wait(&self, offsets: &[u64], timeout: Duration) -> Vec<Option<Published>> {
        let mut slots: Vec<Result<Published, oneshot::Receiver<Published>>> = Vec::with_capacity(offsets.len());
        {
            let mut acks = self.acks.lock().expect("acks lock");
            for offset in offsets {
                match acks.unclaimed.remove(offset) {
                    Some((published, _)) => slots.push(Ok(published)),
                    None => {
                        let (tx, rx) = oneshot::channel();
                        acks.waiting.insert(*offset, tx);
                        slots.push(Err(rx));
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut results = Vec::with_capacity(slots.len());
        for slot in slots {
            results.push(match slot {
                Ok(published) => Some(published),
                Err(rx) => tokio::time::timeout_at(deadline, rx).await.ok().and_then(Result::ok),
            });
        }
        let mut acks = self.acks.lock().expect("acks lock");
        for offset in offsets {
            acks.waiting.remove(offset);
        }
        results
    }

    fn acknowledge(&self, offset: u64, published: Published) {
        let mut acks = self.acks.lock().expect("acks lock");
        match acks.waiting.remove(&offset) {
            Some(waiter) => {
                let _ = waiter.send(published);
            }
            None => {
                acks.unclaimed.retain(|_, (_, at)| at.elapsed() < UNCLAIMED_FOR);
                acks.unclaimed.insert(offset, (published, Instant::now()));
            }
        }
    }

    fn next_offset(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Records that the broker acknowledged every entry before `next`, and forgets them.
    async fn advance(&self, next: u64) -> Result<(), BusError> {
        self.storage.commit(&self.relay, &self.topic, vec![(Partition(0), Position::at(Offset(next)))]).await?;
        self.next.store(next, Ordering::Release);
        // What the broker acknowledged need not stay on disk.
        self.storage.truncate(&self.topic, Partition(0), Offset(next)).await
    }

    /// Events stored but not yet acknowledged by the broker.
    pub(super) async fn backlog(&self) -> Result<u64, BusError> {
        let description = self.storage.describe(Some(&self.topic)).await?;
        let end = description.first().and_then(|d| d.partitions.first()).map_or(0, |p| p.latest.0);
        Ok(end.saturating_sub(self.next_offset()))
    }
}

/// An outbox entry: where the message goes (JSON), a newline, then its value as it is.
pub(super) fn encode(topic: &TopicName, message: Outgoing) -> Vec<u8> {
    let envelope = Envelope {
        topic: topic.to_string(),
        key: message.key,
        headers: message.headers.into_iter().map(|h| (h.name, h.value)).collect(),
    };
    let mut bytes = serde_json::to_vec(&envelope).expect("an outbox envelope always serialises");
    bytes.push(b'\n');
    bytes.extend_from_slice(&message.value);
    bytes
}

/// The message of an outbox entry; `None` if the entry is not one [`encode`] wrote.
pub(super) fn decode(bytes: &[u8]) -> Option<(TopicName, Outgoing)> {
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let envelope: Envelope = serde_json::from_slice(&bytes[..split]).ok()?;
    let headers = envelope.headers.into_iter().map(|(name, value)| Header { name, value }).collect();
    let topic = TopicName::new(&envelope.topic).ok()?;
    Some((topic, Outgoing { key: envelope.key, value: bytes[split + 1..].to_vec(), headers }))
}

/// Sends what waits in the outbox, in order, until the bus is dropped. After a failure it retries
/// from the first message not acknowledged, with a backoff that doubles up to 5 s.
async fn relay(kafka: Weak<Kafka>) {
    let mut backoff = Duration::from_millis(100);
    let appended = match kafka
        .upgrade()
        .and_then(|k| k.outbox.as_ref().map(|o| o.storage.ends().watch(std::slice::from_ref(&o.topic))))
    {
        Some(appended) => appended,
        None => return,
    };
    loop {
        let Some(bus) = kafka.upgrade() else { return };
        let Some(outbox) = bus.outbox.as_ref() else { return };
        let step = async {
            let next = outbox.next_offset();
            let records = outbox.storage.read(&outbox.topic, Partition(0), Offset(next), RELAY_BATCH).await?;
            if records.is_empty() {
                return Ok::<_, BusError>(None);
            }
            let mut offsets = Vec::with_capacity(records.len());
            let mut messages = Vec::with_capacity(records.len());
            for record in &records {
                let Payload::Bytes(bytes) = &record.payload else { continue };
                match decode(bytes) {
                    Some(message) => {
                        offsets.push(record.offset.0);
                        messages.push(message);
                    }
                    None => tracing::error!(offset = %record.offset, "Outbox entry unreadable; skipped"),
                }
            }
            let results = bus.send_each(messages).await;
            let mut done = records.first().map_or(next, |r| r.offset.0);
            let mut failure = None;
            for (offset, result) in offsets.into_iter().zip(results) {
                match result {
                    Ok(published) => {
                        outbox.acknowledge(offset, published);
                        done = offset + 1;
                    }
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            if failure.is_none() {
                done = records.last().map_or(done, |r| r.offset.0 + 1);
            }
            if done > next {
                outbox.advance(done).await?;
            }
            Ok(Some(failure))
        };
        match step.await {
            Ok(None) => {
                drop(bus);
                tokio::select! {
                    () = appended.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            Ok(Some(None)) => backoff = Duration::from_millis(100),
            Ok(Some(Some(error))) | Err(error) => {
                bus.renew_producer();
                let backlog = outbox.backlog().await.unwrap_or(0);
                tracing::warn!(%error, backlog, retry_in = ?backoff, "Broker unavailable; events wait in the outbox");
                drop(bus);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Starts the relay if there is an outbox. It holds the backend weakly and ends once the bus is
/// dropped.
pub(super) fn spawn(kafka: &Arc<Kafka>) {
    if kafka.outbox.is_some() {
        tokio::spawn(relay(Arc::downgrade(kafka)));
    }
}
