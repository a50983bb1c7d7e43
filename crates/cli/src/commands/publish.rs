//! `eventbus publish`: EventSchema JSON lines from stdin, like `kcat -P`. A bad line is reported
//! with its number and the rest are still published; the command then exits non-zero.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use eventbus::{BusError, EventBus, EventSchema, TopicName};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::Config;

/// Lines published together when stdin is a pipe or a file: one outbox write and one broker
/// round trip for each, so that a large input goes at the producer's speed.
const BATCH: usize = 10_000;

struct Publisher<'a> {
    bus: &'a dyn EventBus,
    topic: TopicName,
    key: Option<String>,
    published: u64,
    /// Of those, the events held for their `metadata.deliver_at`.
    scheduled: u64,
    rejected: Vec<u64>,
}

/// What the reader hands to the publisher: a batch of parsed lines, or why reading stopped.
enum Read {
    Batch(Vec<(u64, EventSchema)>),
    Failed { error: std::io::Error, after: u64 },
}

pub async fn run(config: &Config, topic: &str, key: Option<String>) -> anyhow::Result<()> {
    let topic = super::topic(topic)?;
    let bus = crate::open_bus(config, crate::Outbox::IfFree).await?;
    if !config.auto_create_topics {
        // An unknown topic fails before any input is read. A broker that does not answer is left
        // to the publishes: on Kafka with an outbox they go on with the partition counts last seen.
        match bus.describe_topic(&topic).await {
            Err(error @ eventbus::BusError::UnknownTopic(_)) => return Err(error.into()),
            Err(error) => tracing::warn!(%error, %topic, "Cannot describe the topic; publishing anyway"),
            Ok(_) => {}
        }
    }
    // The next batch is read and parsed while the previous one is being published.
    let (batches, mut ready) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(read(std::io::stdin().is_terminal(), batches));
    let mut publisher = Publisher { bus: bus.as_ref(), topic, key, published: 0, scheduled: 0, rejected: Vec::new() };
    while let Some(read) = ready.recv().await {
        match read {
            Read::Batch(batch) => publisher.flush(batch).await?,
            Read::Failed { error, after } => {
                return Err(error)
                    .context(format!("cannot read stdin after line {after}; lines up to it were published"));
            }
        }
    }
    publisher.rejected.extend(reader.await.context("the stdin reader failed")?);
    publisher.rejected.sort_unstable();
    let (published, rejected, topic) = (publisher.published, publisher.rejected, publisher.topic);
    let detail = match publisher.scheduled {
        0 => String::new(),
        n => format!(" ({n} scheduled by metadata.deliver_at: `eventbus serve` delivers them at their time)"),
    };
    super::stop_and_report(bus.as_ref(), published, &topic, &detail).await?;
    if !rejected.is_empty() {
        bail!("{} line(s) rejected: {rejected:?}; every other line was published", rejected.len());
    }
    Ok(())
}

/// Reads stdin line by line into batches (each line its own batch when a person types them);
/// reports the lines that are not events and returns their numbers.
async fn read(interactive: bool, batches: tokio::sync::mpsc::Sender<Read>) -> Vec<u64> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut batch = Vec::new();
    let mut rejected = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                if !batch.is_empty() {
                    let _ = batches.send(Read::Batch(batch)).await;
                }
                let _ = batches.send(Read::Failed { error, after: number }).await;
                return rejected;
            }
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match EventSchema::from_json(&line) {
            Ok(event) => batch.push((number, event)),
            Err(error) => {
                say!("line {number}: {error}");
                rejected.push(number);
            }
        }
        if (interactive || batch.len() >= BATCH) && batches.send(Read::Batch(std::mem::take(&mut batch))).await.is_err()
        {
            // The publisher stopped on an error of its own.
            return rejected;
        }
    }
    if !batch.is_empty() {
        let _ = batches.send(Read::Batch(batch)).await;
    }
    rejected
}

impl Publisher<'_> {
    /// Publishes the batch in one write. If one event in it is refused (too large, or a bad
    /// `deliver_at`), the others are published one by one and the refused line is reported.
    async fn flush(&mut self, batch: Vec<(u64, EventSchema)>) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let first = batch[0].0;
        let events: Vec<EventSchema> = batch.iter().map(|(_, e)| e.clone()).collect();
        let keys = self.key.as_ref().map(|k| vec![k.clone(); events.len()]);
        match self.bus.publish_batch(&self.topic, events, keys).await {
            Ok(done) => {
                self.published += done.len() as u64;
                self.scheduled += done.iter().filter(|p| p.scheduled.is_some()).count() as u64;
                Ok(())
            }
            Err(BusError::MessageTooLarge { .. } | BusError::Envelope(_) | BusError::Schedule(_)) => {
                for (number, event) in batch {
                    match self.bus.publish(&self.topic, event, self.key.as_deref()).await {
                        Ok(published) => {
                            self.published += 1;
                            self.scheduled += u64::from(published.scheduled.is_some());
                        }
                        Err(
                            error @ (BusError::MessageTooLarge { .. } | BusError::Envelope(_) | BusError::Schedule(_)),
                        ) => {
                            say!("line {number}: {error}");
                            self.rejected.push(number);
                        }
                        Err(error) => return Err(error).context(format!("line {number} and later were not published")),
                    }
                }
                Ok(())
            }
            Err(error) => Err(error).context(format!("line {first} and later were not published")),
        }
    }
}
