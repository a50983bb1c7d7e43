//! `eventbus publish`: EventSchema JSON lines from stdin, like `kcat -P`. A bad line is reported
//! with its number and the rest are still published; the command then exits non-zero.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use eventbus::{BusError, EventBus, EventSchema, TopicName};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::Config;

/// Lines published together when stdin is a pipe or a file.
const BATCH: usize = 500;

struct Publisher<'a> {
    bus: &'a dyn EventBus,
    topic: TopicName,
    key: Option<String>,
    batch: Vec<(u64, EventSchema)>,
    published: u64,
    rejected: Vec<u64>,
}

pub async fn run(config: &Config, topic: &str, key: Option<String>) -> anyhow::Result<()> {
    let topic = super::topic(topic)?;
    let bus = crate::open_bus(config).await?;
    if !config.auto_create_topics {
        // An unknown topic fails before any input is read.
        bus.describe_topic(&topic).await?;
    }
    let interactive = std::io::stdin().is_terminal();
    let mut publisher =
        Publisher { bus: bus.as_ref(), topic, key, batch: Vec::new(), published: 0, rejected: Vec::new() };
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                publisher.flush().await?;
                return Err(error)
                    .context(format!("cannot read stdin after line {number}; lines up to it were published"));
            }
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match EventSchema::from_json(&line) {
            Ok(event) => publisher.batch.push((number, event)),
            Err(error) => {
                eprintln!("line {number}: {error}");
                publisher.rejected.push(number);
            }
        }
        if interactive || publisher.batch.len() >= BATCH {
            publisher.flush().await?;
        }
    }
    publisher.flush().await?;
    let (published, rejected, topic) = (publisher.published, publisher.rejected, publisher.topic);
    bus.stop().await?;
    eprintln!("Published {published} event(s) to {topic}");
    if !rejected.is_empty() {
        bail!("{} line(s) rejected: {rejected:?}; every other line was published", rejected.len());
    }
    Ok(())
}

impl Publisher<'_> {
    /// Publishes the batch in one write. If one event in it is refused (too large), the others
    /// are published one by one and the refused line is reported.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let first = batch[0].0;
        let events: Vec<EventSchema> = batch.iter().map(|(_, e)| e.clone()).collect();
        let keys = self.key.as_ref().map(|k| vec![k.clone(); events.len()]);
        match self.bus.publish_batch(&self.topic, events, keys).await {
            Ok(done) => {
                self.published += done.len() as u64;
                Ok(())
            }
            Err(BusError::MessageTooLarge { .. } | BusError::Envelope(_)) => {
                for (number, event) in batch {
                    match self.bus.publish(&self.topic, event, self.key.as_deref()).await {
                        Ok(_) => self.published += 1,
                        Err(error @ (BusError::MessageTooLarge { .. } | BusError::Envelope(_))) => {
                            eprintln!("line {number}: {error}");
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
