//! The in-memory event store: the semantics of the durable stores, kept in the process's memory.
//!
//! It is for tests, demos and tools that need a store and no durability: it passes the same suite
//! as [`SqliteStore`](super::SqliteStore) and [`PostgresStore`](super::PostgresStore), so what
//! holds over it holds over them. Events are kept as their JSON, as the other stores keep them, and
//! decoded on every read: a reader gets its own copy, and an event that would not read back from
//! a durable store does not read back from this one either.
//!
//! One lock guards everything, and nothing waits while holding it: a commit is checked and
//! applied in one step, so commits are atomic and positions gap-free by construction.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use eventbus::TopicName;

use super::{Commit, EventStore, Lease, OutboxEntry, RecordedEvent, StoreError, StreamId, decode_event, now_ms};

/// An event store in memory. Cloning it gives another handle on the same events, as opening a
/// durable store again does; the events are gone when the last handle is dropped.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

/// One stored event: the columns of the durable stores' `events` table.
#[derive(Debug)]
struct Stored {
    stream: StreamId,
    /// Its version in its own stream.
    version: u64,
    topic: TopicName,
    key: String,
    payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    /// Every event in the global order: position `n` is at index `n - 1`.
    events: Vec<Stored>,
    /// The ids of the stored events.
    event_ids: HashSet<String>,
    /// The positions of each stream's events, its own and those linked into it: version `v` is
    /// at index `v - 1`.
    streams: HashMap<StreamId, Vec<u64>>,
    /// The outbox is every event after this position: the last one the relay acknowledged.
    published: u64,
    /// The leases, by role: holder, epoch, expiry in milliseconds since the Unix epoch.
    leases: HashMap<String, (String, u64, i64)>,
}

impl State {
    fn version(&self, stream: &StreamId) -> u64 {
        self.streams.get(stream).map_or(0, |positions| positions.len() as u64)
    }

    /// The event at `position`, counted from 1.
    fn at(&self, position: u64) -> &Stored {
        &self.events[position as usize - 1]
    }

    /// The events from `from` on (counted from 1; 0 reads from the start), at most `limit`,
    /// with their positions.
    fn since(&self, from: u64, limit: usize) -> impl Iterator<Item = (u64, &Stored)> {
        let (start, events) = tail(&self.events, from);
        (start..).zip(events).take(limit)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The position of the last event stored, which is the number of events stored; 0 when
    /// there are none.
    pub fn last_position(&self) -> u64 {
        self.lock().events.len() as u64
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is checked before it is applied, so a panic cannot leave the state half
        // changed: a poisoned lock still guards a consistent store.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The items of `items` from the `from`th on (counted from 1; 0 is the first too), and the number
/// of the first of them.
fn tail<T>(items: &[T], from: u64) -> (u64, &[T]) {
    let skip = usize::try_from(from.saturating_sub(1)).map_or(items.len(), |skip| skip.min(items.len()));
    (skip as u64 + 1, &items[skip..])
}

fn recorded(position: u64, stream: StreamId, version: u64, stored: &Stored) -> Result<RecordedEvent, StoreError> {
    Ok(RecordedEvent {
        position,
        stream,
        version,
        topic: stored.topic.clone(),
        event: decode_event(position, &stored.payload)?,
    })
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn commit(&self, commit: Commit) -> Result<u64, StoreError> {
        // Encoded before the lock is taken, as the other stores encode in the caller's task.
        let payloads: Vec<Vec<u8>> = commit.events.iter().map(|new| new.event.to_json()).collect();
        let mut state = self.lock();
        // Versions first, then ids, as the SQLite store checks them.
        for (stream, expected) in &commit.expected {
            let actual = state.version(stream);
            if !expected.matches(actual) {
                return Err(StoreError::Conflict { stream: stream.clone(), expected: *expected, actual });
            }
        }
        let mut ids = HashSet::with_capacity(commit.events.len());
        for new in &commit.events {
            let id = new.event_id()?;
            let text = id.to_string();
            if state.event_ids.contains(&text) || !ids.insert(text) {
                return Err(StoreError::DuplicateEvent(id.clone()));
            }
        }
        // Checked: from here on nothing fails, so the commit is stored whole.
        state.event_ids.extend(ids);
        for (new, payload) in commit.events.iter().zip(payloads) {
            let position = state.events.len() as u64 + 1;
            for stream in new.streams() {
                state.streams.entry(stream.clone()).or_default().push(position);
            }
            let version = state.version(&new.stream);
            state.events.push(Stored {
                stream: new.stream.clone(),
                version,
                topic: new.topic.clone(),
                key: new.key.clone(),
                payload,
            });
        }
        Ok(if commit.events.is_empty() { 0 } else { state.events.len() as u64 })
    }

    async fn read(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.lock();
        let Some(positions) = state.streams.get(stream) else { return Ok(Vec::new()) };
        let (first, positions) = tail(positions, from_version);
        (first..)
            .zip(positions)
            .map(|(version, &position)| recorded(position, stream.clone(), version, state.at(position)))
            .collect()
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.lock();
        state
            .since(from_position, limit)
            .map(|(position, stored)| recorded(position, stored.stream.clone(), stored.version, stored))
            .collect()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        Ok(self.lock().version(stream))
    }

    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let state = self.lock();
        state
            .since(state.published + 1, limit)
            .map(|(position, stored)| {
                Ok(OutboxEntry {
                    id: position,
                    topic: stored.topic.clone(),
                    key: stored.key.clone(),
                    event: decode_event(position, &stored.payload)?,
                })
            })
            .collect()
    }

    async fn outbox_ack(&self, id: u64, lease: &Lease) -> Result<(), StoreError> {
        let mut state = self.lock();
        if !state.holds(lease) {
            return Err(StoreError::Fenced { role: lease.role.clone(), epoch: lease.epoch });
        }
        // Entries not yet stored are not acknowledged: an id past the end acknowledges up to it.
        let last = state.events.len() as u64;
        state.published = state.published.max(id.min(last));
        Ok(())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let state = self.lock();
        Ok(state.events.len() as u64 - state.published)
    }

    async fn acquire_lease(&self, role: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let now = now_ms();
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let mut state = self.lock();
        let epoch = match state.leases.get(role) {
            Some((current, epoch, until)) if current == holder && *until > now => *epoch,
            Some((_, _, until)) if *until > now => return Ok(None),
            Some((_, epoch, _)) => epoch + 1,
            None => 1,
        };
        state.leases.insert(role.to_owned(), (holder.to_owned(), epoch, expires));
        Ok(Some(Lease { role: role.to_owned(), holder: holder.to_owned(), epoch }))
    }

    async fn lease_of(&self, role: &str) -> Result<Option<Lease>, StoreError> {
        let now = now_ms();
        let state = self.lock();
        Ok(state.leases.get(role).filter(|(_, _, until)| *until > now).map(|(holder, epoch, _)| Lease {
            role: role.to_owned(),
            holder: holder.clone(),
            epoch: *epoch,
        }))
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.holds(lease) {
            // Kept, lapsed, so that the next holder's epoch is higher.
            if let Some(entry) = state.leases.get_mut(&lease.role) {
                entry.2 = 0;
            }
        }
        Ok(())
    }
}

impl State {
    /// Whether `lease` is the role's current one: its holder and epoch. A lease that lapsed
    /// with nobody taking the role since still holds it.
    fn holds(&self, lease: &Lease) -> bool {
        self.leases.get(&lease.role).is_some_and(|(holder, epoch, _)| *holder == lease.holder && *epoch == lease.epoch)
    }
}
