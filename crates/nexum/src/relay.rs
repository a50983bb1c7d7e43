//! The outbox relay: publishes what the bank committed, in commit order, at least once.
//!
//! It reads the oldest unpublished entries, publishes each run of one topic as one batch keyed by
//! entity id, and acknowledges them only when the bus has them. A publishing failure is retried
//! with backoff and never skips an entry; after a restart the relay starts from the oldest entry
//! not acknowledged. Consumers drop the repeats a crash between publish and acknowledge can cause,
//! by `event_id`.

use std::sync::Arc;
use std::time::Duration;

use eventbus::{BusError, EventBus};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::store::{EventStore, StoreError};

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
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self { batch: 1000, poll_interval: Duration::from_millis(100), max_backoff: Duration::from_secs(5) }
    }
}

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
}

/// Publishes the outbox of a store to a bus.
#[derive(Clone)]
pub struct Relay {
    store: Arc<dyn EventStore>,
    bus: Arc<dyn EventBus>,
    config: RelayConfig,
    /// One pass at a time: two passes would publish the same entries twice.
    passing: Arc<tokio::sync::Mutex<()>>,
}

impl Relay {
    pub fn new(store: Arc<dyn EventStore>, bus: Arc<dyn EventBus>, config: RelayConfig) -> Self {
        Self { store, bus, config, passing: Arc::default() }
    }

    /// Publishes up to one batch; returns how many entries were published and acknowledged.
    pub async fn pass(&self) -> Result<usize, RelayError> {
        let _one_at_a_time = self.passing.lock().await;
        let entries = self.store.outbox_pending(self.config.batch).await?;
        let Some(last) = entries.last().map(|e| e.id) else { return Ok(0) };
        let count = entries.len();
        // Each run of one topic goes out as one batch, in order.
        let mut entries = entries.into_iter().peekable();
        while let Some(first) = entries.next() {
            let topic = first.topic;
            let (mut events, mut keys) = (vec![first.event], vec![first.key]);
            while let Some(next) = entries.next_if(|e| e.topic == topic) {
                events.push(next.event);
                keys.push(next.key);
            }
            self.bus.publish_batch(&topic, events, Some(keys)).await?;
        }
        self.store.outbox_ack(last).await?;
        Ok(count)
    }

    /// Publishes until the outbox is empty; returns how many entries were published.
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
    /// signal a commit so that events go out without waiting for the next poll.
    pub fn spawn(self, wake: Arc<Notify>) -> RelayHandle {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut backoff = Duration::ZERO;
            while !*stopped.borrow() {
                match self.pass().await {
                    Ok(n) if n > 0 => {
                        backoff = Duration::ZERO;
                        continue;
                    }
                    Ok(_) => backoff = Duration::ZERO,
                    Err(error) => {
                        backoff = (backoff * 2).clamp(Duration::from_millis(50), self.config.max_backoff);
                        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "Outbox relay failed; retrying");
                    }
                }
                let wait = if backoff.is_zero() { self.config.poll_interval } else { backoff };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.notified(), if backoff.is_zero() => {}
                    _ = stopped.changed() => {}
                }
            }
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
    /// Stops after the pass in progress. What is not published stays in the outbox for the next
    /// start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "Outbox relay task failed");
        }
    }
}
