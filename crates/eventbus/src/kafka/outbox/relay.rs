//! The relay: sends what waits in the outbox to the broker, in order, and records how far the
//! broker acknowledged.
//!
//! Sending is a pipeline. Messages handed over by the log's writer (or read from the disk when
//! they were not) go to the producer while earlier ones wait for the broker, up to
//! [`IN_FLIGHT`]. Answers are taken in order, and each answers its publisher at once. A recorder
//! task writes how far the broker acknowledged, and deletes what it did, at most every
//! [`RECORD_EVERY`].
//!
//! The producer retries each message until the broker takes it, so an outage only delays the
//! relay; a failure is an error the broker gave. After one, the relay purges what the producer
//! has not sent, waits for what is in flight (none of it counts as acknowledged), starts over
//! with a new producer from the entry that failed, and backs off (doubling up to 5 s). Each
//! partition's entries thus reach the broker in order, the first time each is seen.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt;
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, Producer, PurgeConfig};
use tokio::sync::watch;

use super::log::{self, Reader, Stored};
use super::{Outbox, OutboxError, decode};
use crate::bus::{BusError, Offset, Partition, Published};
use crate::kafka::{Kafka, KafkaError};
use crate::topics::TopicName;

/// Entries the relay reads from the disk at once.
const READ_BATCH: usize = 1000;
/// Entries handed to the producer and not yet acknowledged, at most.
const IN_FLIGHT: usize = 20_000;
/// How often, at most, the relay records how far the broker acknowledged.
const RECORD_EVERY: Duration = Duration::from_millis(50);
/// How long the relay sleeps when it has nothing to do and nobody wakes it.
const IDLE: Duration = Duration::from_millis(200);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs the relay until the bus is dropped.
pub(super) async fn run(kafka: Weak<Kafka>, outbox: Arc<Outbox>) {
    let synced = outbox.log.synced_signal();
    let start = outbox.acknowledged.load(Ordering::Acquire);
    let (progress, acknowledged) = watch::channel(start);
    let recorder = tokio::spawn(record(Arc::clone(&outbox), acknowledged));
    let mut pipeline = Pipeline::new(start, Reader::new(outbox.log.dir()));
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(producer) = kafka.upgrade().map(|bus| bus.producer()) else { break };
        if pipeline.failure.is_none()
            && let Err(error) = pipeline.fill(&producer, &outbox).await
        {
            pipeline.failure = Some(error);
        }
        drop(producer);
        pipeline.take_ready(&outbox);
        if pipeline.failure.is_some() {
            // What the producer has not sent yet must not reach the broker before the entry
            // that failed.
            if let Some(bus) = kafka.upgrade() {
                bus.producer().purge(PurgeConfig::default().queue());
            }
            // Let what is in flight end (none of it counts: the failure stays set), then start
            // over from the entry that failed.
            while pipeline.take(&outbox).await.is_some() {}
            let Some(error) = pipeline.failure.take() else { continue };
            pipeline.sent = pipeline.acknowledged;
            progress.send_replace(pipeline.acknowledged);
            match kafka.upgrade() {
                Some(bus) => bus.renew_producer(),
                None => break,
            }
            let backlog = outbox.backlog();
            tracing::warn!(%error, backlog, retry_in = ?backoff, "Relay starting over; events wait in the outbox");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        progress
            .send_if_modified(|recorded| std::mem::replace(recorded, pipeline.acknowledged) != pipeline.acknowledged);
        let room = pipeline.in_flight.len() < IN_FLIGHT;
        tokio::select! {
            taken = pipeline.take(&outbox), if !pipeline.in_flight.is_empty() => {
                if taken == Some(true) {
                    backoff = MIN_BACKOFF;
                }
            }
            () = outbox.handoff.handed.notified(), if room => {}
            () = synced.notified(), if room => {}
            // Any wake-up missed.
            () = tokio::time::sleep(IDLE) => {}
        }
    }
    drop(progress);
    let _ = recorder.await;
}

/// Writes how far the broker acknowledged, as the relay reports it, at most every
/// [`RECORD_EVERY`], and a last time once the relay ends.
async fn record(outbox: Arc<Outbox>, mut acknowledged: watch::Receiver<u64>) {
    let mut recorded = *acknowledged.borrow_and_update();
    loop {
        let ended = acknowledged.changed().await.is_err();
        let next = *acknowledged.borrow_and_update();
        if next > recorded {
            let dir = outbox.log.dir().to_path_buf();
            match tokio::task::spawn_blocking(move || log::record(&dir, next)).await {
                Ok(Ok(())) => recorded = next,
                // Recorded with the next acknowledgement; a crash before sends the entries again.
                Ok(Err(error)) => tracing::warn!(%error, "Cannot record what the broker acknowledged"),
                Err(error) => tracing::warn!(%error, "Cannot record what the broker acknowledged"),
            }
        }
        if ended {
            return;
        }
        tokio::time::sleep(RECORD_EVERY).await;
    }
}

/// What the broker answers to one send.
type Answer = <DeliveryFuture as std::future::Future>::Output;

/// One entry handed to the producer.
struct InFlight {
    offset: u64,
    /// What the broker will answer; `None` for an entry skipped because it cannot be read.
    delivery: Option<DeliveryFuture>,
    /// The broker's answer, once it came.
    answer: Option<Answer>,
    /// For an entry sent before its sync: whether the sync succeeded.
    stored: Option<Stored>,
}

/// The relay's sends in flight, in outbox order.
struct Pipeline {
    in_flight: VecDeque<InFlight>,
    /// The next outbox offset to send.
    sent: u64,
    /// Every entry before this is acknowledged (and synced).
    acknowledged: u64,
    /// Reads from the disk what was not handed over; lent to the blocking pool while it reads.
    reader: Option<Reader>,
    /// The first failure: the relay starts over after it.
    failure: Option<BusError>,
}

impl Pipeline {
    fn new(from: u64, reader: Reader) -> Self {
        Self { in_flight: VecDeque::new(), sent: from, acknowledged: from, reader: Some(reader), failure: None }
    }

    /// Hands the producer what follows the entries sent, from memory when it was handed over and
    /// from the disk when not, while there is room.
    async fn fill(&mut self, producer: &FutureProducer, outbox: &Outbox) -> Result<(), BusError> {
        while self.in_flight.len() < IN_FLIGHT {
            if let Some(handed) = outbox.handoff.take(self.sent) {
                self.send_handed(producer, outbox, handed)?;
                continue;
            }
            let end = outbox.log.synced();
            if self.sent >= end {
                return Ok(());
            }
            let max = (IN_FLIGHT - self.in_flight.len()).min(READ_BATCH);
            let entries = self.read(self.sent, end, max).await?;
            if entries.is_empty() {
                return Ok(());
            }
            for (offset, bytes) in entries {
                let Some((topic, message)) = decode(&bytes) else {
                    tracing::error!(%offset, "Outbox entry unreadable; skipped");
                    self.in_flight.push_back(InFlight { offset, delivery: None, answer: None, stored: None });
                    self.sent = offset + 1;
                    continue;
                };
                match producer.send_result(message.record(&topic)) {
                    Ok(delivery) => {
                        self.in_flight.push_back(InFlight {
                            offset,
                            delivery: Some(delivery),
                            answer: None,
                            stored: None,
                        });
                        self.sent = offset + 1;
                    }
                    // The rest is read again next time.
                    Err((error, _)) => return refused(error, &topic),
                }
            }
        }
        Ok(())
    }

    /// Sends the messages of an append handed over, while there is room; gives back the rest.
    fn send_handed(
        &mut self,
        producer: &FutureProducer,
        outbox: &Outbox,
        mut handed: super::Handed,
    ) -> Result<(), BusError> {
        while self.in_flight.len() < IN_FLIGHT
            && let Some((topic, message)) = handed.messages.pop_front()
        {
            match producer.send_result(message.record(&topic)) {
                Ok(delivery) => {
                    let stored = Some(handed.stored.clone());
                    self.in_flight.push_back(InFlight {
                        offset: handed.first,
                        delivery: Some(delivery),
                        answer: None,
                        stored,
                    });
                    handed.first += 1;
                    self.sent = handed.first;
                }
                Err((error, _)) => {
                    handed.messages.push_front((topic.clone(), message));
                    outbox.handoff.give_back(handed);
                    return refused(error, &topic);
                }
            }
        }
        if !handed.messages.is_empty() {
            outbox.handoff.give_back(handed);
        }
        Ok(())
    }

    /// Reads entries from the disk on the blocking pool.
    async fn read(&mut self, from: u64, end: u64, max: usize) -> Result<Vec<(u64, bytes::Bytes)>, BusError> {
        let Some(mut reader) = self.reader.take() else { return Ok(Vec::new()) };
        let (reader, read) = tokio::task::spawn_blocking(move || {
            let read = reader.read(from, end, max);
            (reader, read)
        })
        .await
        .map_err(KafkaError::Task)?;
        self.reader = Some(reader);
        Ok(read?)
    }

    /// Takes the answers already in, oldest first, up to the first still awaited.
    fn take_ready(&mut self, outbox: &Outbox) {
        while let Some(front) = self.in_flight.front_mut() {
            if front.answer.is_none()
                && let Some(delivery) = &mut front.delivery
            {
                let Some(answer) = delivery.now_or_never() else { return };
                front.answer = Some(answer);
            }
            if front.stored.as_ref().is_some_and(|stored| stored.borrow().is_none()) {
                return;
            }
            self.settle(outbox);
        }
    }

    /// Waits for the oldest send in flight. `Some(true)` if the broker took it, `Some(false)` if
    /// it failed (the failure is kept), `None` if nothing is in flight. Cancel-safe: an answer
    /// that came before it is dropped is kept.
    async fn take(&mut self, outbox: &Outbox) -> Option<bool> {
        let front = self.in_flight.front_mut()?;
        if front.answer.is_none()
            && let Some(delivery) = &mut front.delivery
        {
            front.answer = Some(delivery.await);
        }
        if let Some(stored) = &mut front.stored {
            // An error means the writer ended without a word: counted as not stored.
            let _ = stored.wait_for(Option::is_some).await;
        }
        Some(self.settle(outbox))
    }

    /// Takes the oldest send in flight, which is answered: `true` if the broker took it and it
    /// is on disk. After a failure nothing more counts as acknowledged: the broker may have taken
    /// a later entry (of another partition), but the relay starts over from the failed one and
    /// sends that one again too.
    fn settle(&mut self, outbox: &Outbox) -> bool {
        let Some(front) = self.in_flight.pop_front() else { return false };
        if self.failure.is_some() {
            return false;
        }
        if let Some(stored) = &front.stored
            && *stored.borrow() != Some(true)
        {
            let reason = format!("entry {} was sent but its write failed", front.offset);
            self.failure.get_or_insert(OutboxError::Stopped { reason }.into());
            return false;
        }
        match front.answer {
            // An entry skipped because it cannot be read.
            None => {}
            Some(Ok(Ok(delivery))) => {
                let published = Published::at(Partition(delivery.partition as u32), Offset(delivery.offset as u64));
                outbox.acknowledge(front.offset, published);
            }
            Some(Ok(Err((error, message)))) => {
                let topic = rdkafka::message::Message::topic(&message).to_owned();
                self.failure.get_or_insert(KafkaError::Delivery { topic, source: error }.into());
                return false;
            }
            Some(Err(_canceled)) => {
                self.failure.get_or_insert(KafkaError::Client(ClientError::Canceled).into());
                return false;
            }
        }
        self.acknowledged = front.offset + 1;
        outbox.acknowledged.store(self.acknowledged, Ordering::Release);
        true
    }
}

/// What a refused send means: the producer's own queue is full (the answers already on their
/// way make room), or a failure.
fn refused(error: ClientError, topic: &TopicName) -> Result<(), BusError> {
    match error {
        ClientError::MessageProduction(RDKafkaErrorCode::QueueFull) => Ok(()),
        source => Err(KafkaError::Delivery { topic: topic.to_string(), source }.into()),
    }
}
