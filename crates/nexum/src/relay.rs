//! The outbox relay: publishes what the bank committed, in commit order, at least once.
//!
//! It reads the oldest unpublished entries, publishes them in one bus write for all their topics
//! (keyed by entity id, in commit order within each topic), and acknowledges them only when the
//! bus has them. A publishing failure is retried
//! with backoff and never skips an entry; after a restart the relay starts from the oldest entry
//! not acknowledged. Consumers drop the repeats a crash between publish and acknowledge can cause,
//! by `event_id`.
//!
//! Of the instances sharing a store, one relays at a time: the holder of the [`RELAY_ROLE`]
//! lease ([`crate::leadership`]). The others stand by and take over within about
//! `lease_ttl * 4 / 3` of its death. Acknowledgements are fenced by the lease's epoch, so a
//! deposed relay cannot move the outbox past entries its successor has not published; at a
//! handover some events may go out twice, and consumers drop them by `event_id`.

use std::sync::Arc;
use std::time::Duration;

use eventbus::{BusError, EventBus, EventSchema, Publication, TopicName};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::leadership::{Leadership, holder_name};
use crate::store::{EventStore, Lease, StoreError};

/// How the relay paces itself.
#[derive(Clone, Copy, Debug)]
pub struct RelayConfig {
    /// Entries read and published at most at once.
    pub batch: usize,
    /// How often the outbox is looked at when nothing wakes the relay: the delay for events that
    /// another process committed.
    pub poll_interval: Duration,
    /// The longest wait between two tries after a failure.
    pub max_backoff: Duration,
    /// How long the relay's role stays with an instance that stopped renewing it: another
    /// instance takes over within about four thirds of it.
    pub lease_ttl: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 1000,
            poll_interval: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(5),
        }
    }
}

/// The relay's role in the store's leases.
pub const RELAY_ROLE: &str = "outbox-relay";

/// Why one relay pass failed. The relay itself retries; this is for callers of [`Relay::pass`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The store could not be read or the cursor not moved; the entries stay in the outbox.
    #[error("reading the outbox failed: {0}")]
    Store(#[from] StoreError),
    /// The bus refused or is down; the entries stay in the outbox and go out on a later pass.
    #[error("publishing to the bus failed: {0}")]
    Bus(#[from] BusError),
    /// Another instance relays this store's outbox now; this one stands by.
    #[error("another instance holds the relay's role")]
    Standby,
}

/// Publishes the outbox of a store to a bus.
#[derive(Clone)]
pub struct Relay {
    store: Arc<dyn EventStore>,
    bus: Arc<dyn EventBus>,
    config: RelayConfig,
    /// One pass at a time: two passes would publish the same entries twice.
    passing: Arc<tokio::sync::Mutex<()>>,
    leadership: Arc<Leadership>,
}

impl Relay {
    /// A relay from the outbox of `store` to `bus`, paced by `config`, for the instance named
    /// `instance`; it does nothing until [`pass`](Self::pass), [`drain`](Self::drain) or
    /// [`spawn`](Self::spawn).
    pub fn new(store: Arc<dyn EventStore>, bus: Arc<dyn EventBus>, config: RelayConfig, instance: &str) -> Self {
        let leadership = Leadership::new(Arc::clone(&store), RELAY_ROLE, holder_name(instance), config.lease_ttl);
        Self { store, bus, config, passing: Arc::default(), leadership: Arc::new(leadership) }
    }

    /// The relay's role, as this instance sees it.
    pub fn leadership(&self) -> &Arc<Leadership> {
        &self.leadership
    }

    /// Publishes up to one batch; returns how many entries were published and acknowledged.
    /// `Standby` while another instance holds the relay's role.
    pub async fn pass(&self) -> Result<usize, RelayError> {
        let _one_at_a_time = self.passing.lock().await;
        let lease = self.leadership.current().await?.ok_or(RelayError::Standby)?;
        let entries = self.store.outbox_pending(self.config.batch).await?;
        let Some(last) = entries.last().map(|e| e.id) else { return Ok(0) };
        let count = entries.len();
        // One write for the whole pass: on a durable bus, one sync for all its topics.
        let publications =
            entries.into_iter().map(|entry| Publication::new(entry.topic, entry.event).keyed(entry.key)).collect();
        if let Err(error) = self.bus.publish_many(publications).await {
            return match error {
                // Some event of the pass is too large for the bus: find it, one by one.
                BusError::MessageTooLarge { .. } => self.pass_one_by_one(&lease).await,
                other => Err(other.into()),
            };
        }
        self.acknowledge(last, &lease).await?;
        Ok(count)
    }

    /// Moves the outbox past `last` under `lease`. If the lease was taken over meanwhile, the
    /// store refuses and this instance stands by: what it published goes out again from its
    /// successor, and consumers drop the repeats.
    async fn acknowledge(&self, last: u64, lease: &Lease) -> Result<(), RelayError> {
        match self.store.outbox_ack(last, lease).await {
            Err(StoreError::Fenced { .. }) => {
                tracing::warn!(epoch = lease.epoch, "Relay deposed while it published; standing by");
                self.leadership.forget().await;
                Err(RelayError::Standby)
            }
            other => Ok(other?),
        }
    }

    /// Publishes the pending batch event by event. An event the bus will never take (larger
    /// than its message limit) would block the outbox for good: it goes to `<topic>.dlq` as a
    /// dead letter naming it instead. It stays in the event store, so nothing is lost. Events
    /// of the batch published before may go out twice; consumers drop repeats by `event_id`.
    async fn pass_one_by_one(&self, lease: &Lease) -> Result<usize, RelayError> {
        let entries = self.store.outbox_pending(self.config.batch).await?;
        let Some(last) = entries.last().map(|e| e.id) else { return Ok(0) };
        let count = entries.len();
        for entry in entries {
            let (topic, key, event) = (entry.topic, entry.key, entry.event);
            let letter = |size, max| dead_letter(&topic, &event, size, max);
            match self.bus.publish(&topic, event.clone(), Some(&key)).await {
                Err(BusError::MessageTooLarge { size, max }) => {
                    tracing::error!(%topic, size, max, "Event too large for the bus; dead-lettered, kept in the store");
                    self.bus.publish(&topic.dlq(), letter(size, max), Some(&key)).await?;
                }
                other => drop(other?),
            }
        }
        self.acknowledge(last, lease).await?;
        Ok(count)
    }

    /// Publishes until the outbox is empty; returns how many entries were published.
    /// `Standby` if another instance holds the relay's role.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            match self.pass().await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// Runs the relay in the background until [`RelayHandle::shutdown`]. `wake` lets the bank
    /// signal a commit so that events go out without waiting for the next poll. While another
    /// instance holds the relay's role, it tries for it at the lease's pace.
    pub fn spawn(self, wake: Arc<Notify>) -> RelayHandle {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut backoff = Duration::ZERO;
            while !*stopped.borrow() {
                let mut wait = self.config.poll_interval;
                match self.pass().await {
                    Ok(n) if n > 0 => {
                        backoff = Duration::ZERO;
                        continue;
                    }
                    Ok(_) => backoff = Duration::ZERO,
                    Err(RelayError::Standby) => {
                        backoff = Duration::ZERO;
                        wait = self.leadership.pace();
                    }
                    Err(error) => {
                        backoff = (backoff * 2).clamp(Duration::from_millis(50), self.config.max_backoff);
                        wait = backoff;
                        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "Outbox relay failed; retrying");
                    }
                }
                let standby = !self.leadership.is_held();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.notified(), if backoff.is_zero() && !standby => {}
                    _ = stopped.changed() => {}
                }
            }
            self.leadership.resign().await;
        });
        RelayHandle { stop, task }
    }
}

/// A running relay. Dropping it leaves the relay running; call `shutdown` to stop it.
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Stops after the pass in progress and gives the relay's role up. What is not published
    /// stays in the outbox for the next start, or for the instance that takes the role.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "Outbox relay task failed");
        }
    }
}

/// The dead letter of an event the bus refused as too large.
fn dead_letter(topic: &TopicName, event: &EventSchema, size: usize, max: usize) -> EventSchema {
    let event_id = event.event_id.as_ref().map(ToString::to_string).unwrap_or_default();
    let mut data = serde_json::Map::new();
    data.insert("original_topic".into(), topic.as_str().into());
    data.insert("original_event_id".into(), event_id.clone().into());
    data.insert("original_event_type".into(), event.event_type.as_str().into());
    data.insert("error_kind".into(), "oversized".into());
    data.insert("error".into(), format!("message of {size} bytes exceeds the maximum of {max} bytes").into());
    EventSchema::new(eventbus::DEAD_LETTERED, "dead_letter", event_id, data).with_source("nexum-relay")
}
