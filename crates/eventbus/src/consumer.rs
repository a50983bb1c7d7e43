//! The consumer loop of the local backends: reads each partition in order from the storage,
//! hands each record to the [`Processor`], and commits offsets only after it is done with them.

use std::sync::Arc;

use tokio::sync::watch;

use crate::bus::{BusError, Handler, Offset, Partition, Subscription};
use crate::local::Inner;
use crate::processor::{DeadLetterSink, Processor, STORAGE_RETRY, Stopped, wait_or_stop};
use crate::storage::Storage;
use crate::topics::TopicName;

/// Records read from one partition at a time.
const BATCH: usize = 512;

struct Cursor {
    topic: TopicName,
    partition: Partition,
    next: Offset,
}

/// Runs one subscription until `stop` turns true.
pub(crate) async fn run<S: Storage>(
    inner: Arc<Inner<S>>,
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    mut stop: watch::Receiver<bool>,
) {
    let group = subscription.group.clone();
    let sink = Arc::clone(&inner) as Arc<dyn DeadLetterSink>;
    let max = inner.config.max_message_bytes;
    let processor = Processor::new(group.clone(), subscription.retry, handler, sink, max);
    let mut consumer = Consumer { inner, subscription, processor };
    let mut cursors = loop {
        match consumer.cursors().await {
            Ok(cursors) => break cursors,
            Err(error) => {
                tracing::error!(%group, %error, "Cannot resolve start offsets; retrying");
                if wait_or_stop(&mut stop, STORAGE_RETRY).await {
                    return;
                }
            }
        }
    };
    tracing::info!(%group, partitions = cursors.len(), "Consumer started");
    let mut changes = consumer.inner.storage.changes();
    let poll = consumer.inner.storage.poll_interval();
    while !*stop.borrow() {
        changes.borrow_and_update();
        let mut progressed = false;
        for cursor in &mut cursors {
            match consumer.poll(cursor, &mut stop).await {
                Ok(n) => progressed |= n > 0,
                Err(Stopped) => break,
            }
        }
        if !progressed {
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
    }
    tracing::info!(%group, "Consumer stopped");
}

struct Consumer<S> {
    inner: Arc<Inner<S>>,
    subscription: Subscription,
    processor: Processor,
}

impl<S: Storage> Consumer<S> {
    async fn cursors(&self) -> Result<Vec<Cursor>, BusError> {
        let mut cursors = Vec::new();
        for topic in &self.subscription.topics {
            let positions = self.inner.resolve(&self.subscription.group, topic, self.subscription.start).await?;
            cursors.extend(positions.into_iter().map(|(partition, next)| Cursor {
                topic: topic.clone(),
                partition,
                next,
            }));
        }
        Ok(cursors)
    }

    /// Handles the next batch of one partition and commits it. Returns how many were handled.
    async fn poll(&mut self, cursor: &mut Cursor, stop: &mut watch::Receiver<bool>) -> Result<usize, Stopped> {
        let read = self.inner.storage.read(&cursor.topic, cursor.partition, cursor.next, BATCH).await;
        let records = match read {
            Ok(records) => records,
            Err(error) => {
                tracing::error!(topic = %cursor.topic, partition = %cursor.partition, %error, "Read failed; retrying");
                wait_or_stop(stop, STORAGE_RETRY).await;
                return Ok(0);
            }
        };
        let Some(first) = records.first() else { return Ok(0) };
        if first.offset > cursor.next {
            // Retention removed what we had not read yet; carry on from the log start, as Kafka's
            // auto.offset.reset=earliest does.
            tracing::warn!(topic = %cursor.topic, partition = %cursor.partition, from = %cursor.next, to = %first.offset, "Offsets expired by retention were skipped");
        }
        let mut handled = 0;
        let mut outcome = Ok(());
        for record in records {
            if *stop.borrow() {
                outcome = Err(Stopped);
                break;
            }
            let offset = record.offset;
            if let Err(stopped) = self.processor.process(&cursor.topic, record, stop).await {
                outcome = Err(stopped);
                break;
            }
            cursor.next = Offset(offset.0 + 1);
            handled += 1;
        }
        if handled > 0 {
            self.commit(cursor, stop).await;
        }
        outcome.map(|()| handled)
    }

    async fn commit(&self, cursor: &Cursor, stop: &mut watch::Receiver<bool>) {
        let group = &self.subscription.group;
        loop {
            match self.inner.storage.commit(group, &cursor.topic, vec![(cursor.partition, cursor.next)]).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(%group, topic = %cursor.topic, %error, "Offset commit failed; retrying");
                    // On stop the commit is abandoned: the messages will be delivered again.
                    if wait_or_stop(stop, STORAGE_RETRY).await {
                        return;
                    }
                }
            }
        }
    }
}
