//! The durable local outbox in front of the broker. Publishing appends here first (synced, in
//! order, with group commit); a relay sends what waits to Kafka in order and records how far it
//! got. A broker outage delays events but neither loses them nor fails the caller.
//!
//! The relay does not wait for the disk: the log's writer hands each append's messages to the
//! relay as it writes them, so sending and the sync overlap. A publisher is answered once both
//! are done: its events are on disk and the broker has them. The relay counts an entry sent from
//! memory as acknowledged only once its sync succeeded; after a failed write it starts over from
//! the disk. After a crash or a failure, the relay sends again what the broker had not
//! acknowledged, so an event may reach the broker twice (consumers drop repeats by `event_id`).
//!
//! Files: `log` (the segment files and their writer), `relay` (sending and recording),
//! `legacy` (moving the events of the previous format, an embedded store), `error`.

mod error;
mod legacy;
mod log;
mod relay;

pub use error::OutboxError;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use self::log::{Frames, Log, Stored};
use super::{Kafka, KafkaError, Outgoing};
use crate::bus::{BusError, Published};
use crate::envelope::Header;
use crate::topics::TopicName;

/// Messages handed to the relay in memory and not yet taken, at most; past it, the relay reads
/// further entries from the disk.
const HANDED_MAX: usize = 20_000;
/// How long an acknowledgement nobody waited for is kept for a publisher that is about to ask.
const UNCLAIMED_FOR: Duration = Duration::from_secs(60);

/// A message and the topic it goes to.
type Message = (TopicName, Outgoing);

/// One message waiting for the broker: where it goes, then a newline, then its value.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

pub(super) struct Outbox {
    log: Log<Vec<Message>>,
    handoff: Arc<Handoff>,
    /// The first entry the broker has not acknowledged, as the relay knows it.
    acknowledged: AtomicU64,
    /// The first entry this process appended: nobody waits for those before it.
    opened_at: u64,
    acks: Mutex<Acks>,
}

#[derive(Default)]
struct Acks {
    waiting: HashMap<u64, oneshot::Sender<Published>>,
    /// Acknowledgements that came before their publisher asked (the relay can be that quick).
    unclaimed: HashMap<u64, Published>,
    /// The unclaimed offsets in the order they came, to forget them after [`UNCLAIMED_FOR`].
    unclaimed_since: VecDeque<(u64, Instant)>,
}

/// Appends written and on their way to the relay, oldest first.
#[derive(Default)]
struct Handoff {
    queue: Mutex<HandedQueue>,
    /// Woken when an append is handed over.
    handed: Notify,
}

#[derive(Default)]
struct HandedQueue {
    appends: VecDeque<Handed>,
    /// Messages in `appends`.
    messages: usize,
}

/// An append's messages, handed to the relay before their sync.
struct Handed {
    /// The offset of the first message; the rest follow it.
    first: u64,
    messages: VecDeque<Message>,
    /// Whether the sync succeeded.
    stored: Stored,
}

impl Handoff {
    /// Queues an append for the relay, unless the queue is full: the relay then reads it from
    /// the disk.
    fn hand(&self, first: u64, messages: Vec<Message>, stored: &Stored) {
        if messages.is_empty() {
            return;
        }
        {
            let mut queue = self.queue.lock().expect("handoff lock");
            if queue.messages + messages.len() > HANDED_MAX {
                return;
            }
            queue.messages += messages.len();
            queue.appends.push_back(Handed { first, messages: messages.into(), stored: stored.clone() });
        }
        self.handed.notify_one();
    }

    /// The handed messages from offset `from` on, if they were handed; drops those before.
    fn take(&self, from: u64) -> Option<Handed> {
        let mut queue = self.queue.lock().expect("handoff lock");
        while let Some(front) = queue.appends.front() {
            // Not on disk, and never will be: the writer stopped.
            let failed = *front.stored.borrow() == Some(false);
            if front.first > from && !failed {
                return None;
            }
            let end = front.first + front.messages.len() as u64;
            let mut handed = queue.appends.pop_front()?;
            queue.messages -= handed.messages.len();
            if end > from && !failed {
                handed.messages.drain(..(from - handed.first) as usize);
                handed.first = from;
                return Some(handed);
            }
        }
        None
    }

    /// Gives back what the relay could not send yet; it comes first next time.
    fn give_back(&self, handed: Handed) {
        let mut queue = self.queue.lock().expect("handoff lock");
        queue.messages += handed.messages.len();
        queue.appends.push_front(handed);
    }
}

impl Outbox {
    /// Opens the outbox in `dir` for this process alone, after moving in what an outbox of the
    /// previous format there still holds.
    pub(super) async fn open(dir: &Path) -> Result<Self, BusError> {
        let handoff = Arc::new(Handoff::default());
        let hand = Arc::clone(&handoff);
        let on_written: log::OnWritten<Vec<Message>> =
            Box::new(move |first, messages, stored| hand.hand(first, messages, stored));
        let owned = dir.to_path_buf();
        let (log, acknowledged) =
            tokio::task::spawn_blocking(move || Log::open(&owned, on_written)).await.map_err(KafkaError::Task)??;
        legacy::migrate(dir, &log).await?;
        let opened_at = log.synced();
        Ok(Self { log, handoff, acknowledged: AtomicU64::new(acknowledged), opened_at, acks: Mutex::default() })
    }

    /// Stores messages durably, in order, and hands them to the relay; returns their outbox
    /// offsets once they are on disk.
    pub(super) async fn append(&self, messages: Vec<Message>) -> Result<Vec<u64>, BusError> {
        let size: usize = messages.iter().map(|(_, m)| m.value.len() + 256).sum();
        let mut frames = Frames::with_capacity(size);
        for (topic, message) in &messages {
            frames.push(|buffer| encode(buffer, topic, message))?;
        }
        Ok(self.log.append(frames, messages).await?.collect())
    }

    /// Waits up to `timeout` for the broker to acknowledge each offset; `None` for those it has not.
    pub(super) async fn wait(&self, offsets: &[u64], timeout: Duration) -> Vec<Option<Published>> {
        let mut slots: Vec<Result<Published, oneshot::Receiver<Published>>> = Vec::with_capacity(offsets.len());
        {
            let mut acks = self.acks.lock().expect("acks lock");
            for offset in offsets {
                match acks.unclaimed.remove(offset) {
                    Some(published) => slots.push(Ok(published)),
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

    /// Answers the publisher of the entry at `offset`, now or when it asks.
    fn acknowledge(&self, offset: u64, published: Published) {
        if offset < self.opened_at {
            return;
        }
        let mut acks = self.acks.lock().expect("acks lock");
        match acks.waiting.remove(&offset) {
            Some(waiter) => {
                let _ = waiter.send(published);
            }
            None => {
                let now = Instant::now();
                while let Some(&(old, at)) = acks.unclaimed_since.front() {
                    if now.duration_since(at) < UNCLAIMED_FOR {
                        break;
                    }
                    acks.unclaimed_since.pop_front();
                    acks.unclaimed.remove(&old);
                }
                acks.unclaimed.insert(offset, published);
                acks.unclaimed_since.push_back((offset, now));
            }
        }
    }

    /// Events stored but not yet acknowledged by the broker.
    pub(super) fn backlog(&self) -> u64 {
        self.log.synced().saturating_sub(self.acknowledged.load(Ordering::Acquire))
    }
}

/// Appends an outbox entry to `buffer`: where the message goes (JSON), a newline, then its value
/// as it is.
fn encode(buffer: &mut Vec<u8>, topic: &TopicName, message: &Outgoing) {
    let envelope = Envelope {
        topic: topic.as_str().into(),
        key: message.key.as_deref().map(Into::into),
        headers: message.headers.iter().map(|h| (h.name.as_str().into(), h.value.as_str().into())).collect(),
    };
    serde_json::to_writer(&mut *buffer, &envelope).expect("an outbox envelope always serialises");
    buffer.push(b'\n');
    buffer.extend_from_slice(&message.value);
}

/// The message of an outbox entry; `None` if the entry is not one [`encode`] wrote.
fn decode(bytes: &Bytes) -> Option<Message> {
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let envelope: Envelope<'_> = serde_json::from_slice(&bytes[..split]).ok()?;
    let headers = envelope
        .headers
        .into_iter()
        .map(|(name, value)| Header { name: name.into_owned(), value: value.into_owned() })
        .collect();
    let topic = TopicName::new(&envelope.topic).ok()?;
    let key = envelope.key.map(Cow::into_owned);
    Some((topic, Outgoing { key, value: bytes.slice(split + 1..), headers }))
}

/// Whether a bus holds the outbox in `dir` now: another one would wait for it, then be refused.
pub(super) fn in_use(dir: &Path) -> bool {
    log::held(dir)
}

/// Starts the relay if there is an outbox. It holds the backend weakly and ends once the bus is
/// dropped.
pub(super) fn spawn(kafka: &Arc<Kafka>) {
    if let Some(outbox) = &kafka.outbox {
        tokio::spawn(relay::run(Arc::downgrade(kafka), Arc::clone(outbox)));
    }
}

#[cfg(test)]
mod tests;
