//! The consumer runtime every backend shares. A backend's consumer loop reads records and pushes
//! them here in offset order per partition; the dispatcher handles them concurrently and tells
//! the loop what to commit.
//!
//! - Partitions are handled at once, and within a partition the records of different keys too,
//!   up to `max_in_flight` records of the subscription at a time.
//! - The records of one key (in one topic) are handled one at a time, in offset order: a record
//!   waits for the one before it of its key. Records without a key have no order among them.
//! - What is committed per partition is a [`Position`]: the first offset not finished (the
//!   watermark) and the offsets finished above it. The watermark never passes an unfinished
//!   record, and a slow or retried record holds back only its key and the watermark.
//! - At most `max_buffered` records are received and not finished; beyond that the loop stops
//!   reading, so a stalled record holds back a bounded number of others.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

use super::position::Position;
use super::processor::Processor;
use super::record::StoredRecord;
use crate::bus::{Offset, Partition};
use crate::topics::TopicName;

/// Records received and not finished, at most, per record allowed in flight.
const BUFFER_PER_IN_FLIGHT: usize = 16;
/// Records received and not finished, at least.
const MIN_BUFFERED: usize = 1024;

/// A record waiting to be handled, with the lane of its key and the generation of its partition.
struct Queued {
    topic: TopicName,
    record: StoredRecord,
    lane: Option<u64>,
    generation: u64,
}

/// What a handled record reports back.
struct Done {
    topic: TopicName,
    partition: Partition,
    offset: Offset,
    lane: Option<u64>,
    generation: u64,
    /// False if the consumer stopped before the record was finished: it is delivered again.
    finished: bool,
}

/// One partition: what was received and is not yet below the watermark.
#[derive(Default)]
struct Track {
    /// Counts the times the partition started over (a resume, or a read from an earlier
    /// offset): a record of an earlier generation no longer moves the watermark.
    generation: u64,
    /// Offsets received and not finished, or finished above an unfinished one, ascending. The
    /// front is never finished: finished fronts move the watermark at once.
    window: VecDeque<(u64, bool)>,
    /// The offset after the last one received: the watermark when the window is empty.
    next: u64,
    /// Offsets not received yet that a previous consumer finished: skipped when they come.
    skip: BTreeSet<u64>,
    /// Whether the position changed since it was last taken for a commit.
    dirty: bool,
}

impl Track {
    /// Starts over at `position`. Returns how many records were received and not finished.
    fn restart(&mut self, position: Position) -> usize {
        let dropped = self.window.iter().filter(|(_, done)| !*done).count();
        *self = Self {
            generation: self.generation + 1,
            window: VecDeque::new(),
            next: position.next.0,
            skip: position.finished,
            dirty: false,
        };
        dropped
    }

    fn position(&self) -> Position {
        let next = self.window.front().map_or(self.next, |(offset, _)| *offset);
        let finished = self.window.iter().filter(|(_, done)| *done).map(|(offset, _)| *offset);
        Position { next: Offset(next), finished: finished.chain(self.skip.iter().copied()).collect() }
    }

    /// Marks `offset` finished; false if it is not waiting here (received before a reset).
    fn finish(&mut self, offset: u64) -> bool {
        let Ok(index) = self.window.binary_search_by_key(&offset, |(o, _)| *o) else { return false };
        self.window[index].1 = true;
        while self.window.front().is_some_and(|(_, done)| *done) {
            self.window.pop_front();
        }
        self.dirty = true;
        true
    }
}

/// Handles one subscription's records concurrently, with per-key order and a watermark per
/// partition.
pub struct Dispatcher {
    processor: Arc<Processor>,
    stop: watch::Receiver<bool>,
    max_in_flight: usize,
    max_buffered: usize,
    /// Records being handled. They run on the consumer's task, polled while it waits in
    /// [`Dispatcher::finished`]: no task per record, no hop between threads.
    running: FuturesUnordered<BoxFuture<'static, Done>>,
    /// Keys with a record running or ready, and the records of that key waiting behind it.
    lanes: HashMap<u64, VecDeque<Queued>>,
    /// Records free to run, waiting for a place in flight, in the order they became free.
    ready: VecDeque<Queued>,
    tracks: HashMap<(TopicName, Partition), Track>,
    /// Records received and not finished.
    buffered: usize,
    hasher: foldhash::fast::FixedState,
    /// Set once the consumer joined its group ([`Dispatcher::joined`]).
    joined: Arc<AtomicBool>,
}

impl Dispatcher {
    /// A dispatcher that handles records with `processor`, at most `max_in_flight` at once, until
    /// `stop` turns true.
    pub(crate) fn new(
        processor: Arc<Processor>,
        stop: watch::Receiver<bool>,
        max_in_flight: usize,
        joined: Arc<AtomicBool>,
    ) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Self {
            processor,
            stop,
            max_in_flight,
            max_buffered: (max_in_flight * BUFFER_PER_IN_FLIGHT).max(MIN_BUFFERED),
            running: FuturesUnordered::new(),
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            tracks: HashMap::new(),
            buffered: 0,
            hasher: foldhash::fast::FixedState::default(),
            joined,
        }
    }

    /// Says that the consumer joined its group: it was dealt its share of the partitions,
    /// perhaps none. The bus reports it ([`EventBus::joined`](crate::EventBus::joined)).
    pub(crate) fn joined(&self) {
        self.joined.store(true, Ordering::Release);
    }

    /// The largest message the subscription takes.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn max_message_bytes(&self) -> usize {
        self.processor.max_message_bytes()
    }

    /// Starts a partition at `position`, as committed: reading goes on from `position.next`, and
    /// the offsets it lists as finished are skipped. Records of the partition still running are
    /// no longer tracked.
    pub(crate) fn resume(&mut self, topic: &TopicName, partition: Partition, position: Position) {
        let dropped = self.tracks.entry((topic.clone(), partition)).or_default().restart(position);
        self.buffered -= dropped;
        self.processor.letters().take(topic, partition);
    }

    /// Stops tracking a partition this consumer no longer reads (Kafka revoked it). Its records
    /// still running finish, but move no watermark.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn forget(&mut self, topic: &TopicName, partition: Partition) {
        if let Some(mut track) = self.tracks.remove(&(topic.clone(), partition)) {
            self.buffered -= track.restart(Position::default());
        }
        self.processor.letters().give_up(topic, partition);
    }

    /// How many more records may be pushed now.
    pub(crate) fn room(&self) -> usize {
        self.max_buffered.saturating_sub(self.buffered)
    }

    /// Whether records are being handled or wait for a place.
    pub(crate) fn is_busy(&self) -> bool {
        !self.running.is_empty() || !self.ready.is_empty()
    }

    /// Takes a record of `topic`; records of one partition come in offset order. A record a
    /// previous consumer finished is skipped.
    pub(crate) fn push(&mut self, topic: &TopicName, record: StoredRecord) {
        let offset = record.offset.0;
        let track = self.tracks.entry((topic.clone(), record.partition)).or_default();
        if offset < track.next {
            // Delivered again from an earlier place (a seek): start over there.
            tracing::debug!(%topic, partition = %record.partition, offset, "Partition read again from an earlier offset");
            let skip = std::mem::take(&mut track.skip);
            let dropped = track.restart(Position { next: record.offset, finished: skip });
            self.buffered -= dropped;
        }
        let track = self.tracks.get_mut(&(topic.clone(), record.partition)).expect("tracked above");
        let generation = track.generation;
        track.next = offset + 1;
        if track.skip.remove(&offset) {
            track.dirty |= track.window.is_empty();
            if !track.window.is_empty() {
                track.window.push_back((offset, true));
            }
            return;
        }
        track.window.push_back((offset, false));
        self.buffered += 1;
        let lane = record.key.as_deref().map(|key| self.hasher.hash_one((topic.as_str(), key)));
        let queued = Queued { topic: topic.clone(), record, lane, generation };
        match lane.and_then(|lane| self.lanes.get_mut(&lane)) {
            Some(waiting) => waiting.push_back(queued),
            None => {
                if let Some(lane) = lane {
                    self.lanes.insert(lane, VecDeque::new());
                }
                self.ready.push_back(queued);
                self.start_ready();
            }
        }
    }

    /// Starts ready records while there is a place in flight.
    fn start_ready(&mut self) {
        while self.running.len() < self.max_in_flight {
            let Some(queued) = self.ready.pop_front() else { return };
            let processor = Arc::clone(&self.processor);
            let mut stop = self.stop.clone();
            self.running.push(Box::pin(async move {
                let Queued { topic, record, lane, generation } = queued;
                let (partition, offset) = (record.partition, record.offset);
                let handled = AssertUnwindSafe(processor.process(&topic, record, &mut stop)).catch_unwind().await;
                let finished = match handled {
                    Ok(outcome) => outcome.is_ok(),
                    Err(_) => {
                        tracing::error!(%topic, %partition, %offset, "The consumer runtime failed on a record; it is delivered again after a restart");
                        false
                    }
                };
                Done { topic, partition, offset, lane, generation, finished }
            }));
        }
    }

    /// Runs the records in flight until at least one is done, then takes in every record done
    /// by then and starts those that became ready. Cancel-safe: records not done stay in flight.
    /// Returns at once when nothing is running.
    pub(crate) async fn finished(&mut self) {
        self.start_ready();
        let Some(done) = self.running.next().await else { return };
        self.complete(done);
        while let Some(Some(done)) = self.running.next().now_or_never() {
            self.complete(done);
        }
        self.start_ready();
    }

    fn complete(&mut self, done: Done) {
        if let Some(lane) = done.lane {
            let next = self.lanes.get_mut(&lane).and_then(VecDeque::pop_front);
            match next {
                // Once stopping, the key's next record is not started: it is delivered again.
                Some(next) if done.finished => self.ready.push_back(next),
                Some(_) | None => {
                    self.lanes.remove(&lane);
                }
            }
        }
        if !done.finished {
            return;
        }
        if let Some(track) = self.tracks.get_mut(&(done.topic, done.partition))
            && track.generation == done.generation
            && track.finish(done.offset.0)
        {
            self.buffered -= 1;
        }
    }

    /// The positions that changed since this was last called, to commit.
    pub(crate) fn positions(&mut self) -> Vec<(TopicName, Partition, Position)> {
        self.tracks
            .iter_mut()
            .filter(|(_, track)| track.dirty)
            .map(|((topic, partition), track)| {
                track.dirty = false;
                (topic.clone(), *partition, track.position())
            })
            .collect()
    }

    /// Marks every position to be taken again, after a commit that failed.
    pub(crate) fn recommit(&mut self) {
        for track in self.tracks.values_mut() {
            track.dirty = true;
        }
    }

    /// Starts nothing more and waits for the records running to end (the stop signal makes a
    /// record in its retry wait give up). Records not started stay unfinished; the dispatcher
    /// holds no record afterwards, so it can take the partitions again from their committed
    /// positions (after a rebalance).
    pub(crate) async fn drain(&mut self) {
        self.ready.clear();
        self.lanes.retain(|_, waiting| {
            waiting.clear();
            true
        });
        while let Some(done) = self.running.next().await {
            self.complete(done);
        }
        // A key whose first record was ready, not running, keeps its lane: nothing would ever
        // free it, and the key's next records would wait behind it for good.
        self.lanes.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use chrono::Utc;

    use super::*;
    use crate::bus::{BusError, DeadLetterPolicy, GroupId, Message, Offset, Record, RetryPolicy, handler_fn};
    use crate::envelope::EventSchema;
    use crate::runtime::letter_log::DeadLetterLog;
    use crate::runtime::letters::Letters;
    use crate::runtime::record::Payload;

    struct NoDeadLetters;

    #[async_trait]
    impl DeadLetterLog for NoDeadLetters {
        async fn dead_letter(&self, _: &TopicName, _: Option<Arc<str>>, _: EventSchema) -> Result<(), BusError> {
            unreachable!("no record of these tests fails")
        }

        async fn read(&self, _: &TopicName, _: Partition, _: Offset, _: usize) -> Result<Vec<Record>, BusError> {
            Ok(Vec::new())
        }

        async fn end(&self, _: &TopicName) -> Result<Offset, BusError> {
            Ok(Offset(0))
        }
    }

    fn record(offset: u64, key: &str) -> StoredRecord {
        let event = EventSchema::new("work_done", "work", key, serde_json::Map::new());
        StoredRecord {
            partition: Partition(0),
            offset: Offset(offset),
            timestamp: Utc::now(),
            key: Some(Arc::from(key)),
            payload: Payload::Event(Arc::new(event)),
        }
    }

    #[tokio::test]
    async fn after_a_drain_a_key_whose_record_was_waiting_for_a_place_is_handled_again() {
        // Given a dispatcher with one place in flight, a record of key a running and one of
        // key b ready behind it
        let handled = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&handled);
        let handler = handler_fn(move |message: Message| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(message.offset.0);
                Ok(())
            }
        });
        let group = GroupId::new("g").unwrap();
        let topic = TopicName::new("work").unwrap();
        let policy = DeadLetterPolicy::watch_only();
        let letters = Letters::new(&group, std::slice::from_ref(&topic), policy, Arc::new(NoDeadLetters), 1 << 20);
        let processor = Processor::new(group, RetryPolicy::default(), handler, 1 << 20, 1000, letters);
        let (_stop, stopped) = watch::channel(false);
        let mut dispatcher = Dispatcher::new(Arc::new(processor), stopped, 1, Arc::default());
        dispatcher.push(&topic, record(0, "a"));
        dispatcher.push(&topic, record(1, "b"));

        // When it drains (a rebalance) and the partition is read again from offset 1
        dispatcher.drain().await;
        dispatcher.forget(&topic, Partition(0));
        dispatcher.resume(&topic, Partition(0), Position::at(Offset(1)));
        dispatcher.push(&topic, record(1, "b"));
        while dispatcher.is_busy() {
            dispatcher.finished().await;
        }

        // Then key b's record is handled, not left behind a lane nothing frees
        assert_eq!(*handled.lock().unwrap(), [0, 1]);
    }
}
