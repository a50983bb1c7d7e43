//! Reading a partition outside any group: the message browser, and the dead-letter state that
//! the runtime folds from `<topic>.dlq`.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use super::consumer::record_of;
use super::{Kafka, KafkaError};
use crate::bus::{BusError, Offset, Partition};
use crate::runtime::StoredRecord;
use crate::topics::TopicName;

impl Kafka {
    /// Up to `max` records of a partition from `from` on, read by a consumer assigned to it
    /// alone (no group, nothing committed). Waits at most the request timeout.
    pub(super) async fn read_partition(
        &self,
        topic: &TopicName,
        partition: Partition,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>, BusError> {
        let mut config = self.config.client();
        config
            .set("group.id", "eventbus-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let timeout = self.config.request_timeout();
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().map_err(KafkaError::Client)?;
            let (low, high) =
                consumer.fetch_watermarks(topic.as_str(), partition.0 as i32, timeout).map_err(KafkaError::Client)?;
            let start = (from.0 as i64).max(low);
            let end = high.min(start.saturating_add(max as i64));
            if max == 0 || start >= end {
                return Ok(Vec::new());
            }
            let mut assignment = TopicPartitionList::new();
            assignment
                .add_partition_offset(topic.as_str(), partition.0 as i32, KafkaOffset::Offset(start))
                .map_err(KafkaError::Client)?;
            consumer.assign(&assignment).map_err(KafkaError::Client)?;
            let deadline = Instant::now() + timeout;
            let mut records = Vec::new();
            while records.len() < max {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(KafkaError::ReadTimeout { topic: topic.to_string(), waited: timeout }.into());
                }
                match consumer.poll(left.min(Duration::from_millis(100))) {
                    Some(Ok(message)) => {
                        let at_end = message.offset() + 1 >= end;
                        if let Some((_, record)) = record_of(&message, usize::MAX) {
                            records.push(record);
                        }
                        if at_end {
                            break;
                        }
                    }
                    Some(Err(RdKafkaError::PartitionEOF(_))) => break,
                    Some(Err(error)) => return Err(KafkaError::Client(error).into()),
                    None => {}
                }
            }
            Ok(records)
        })
        .await
        .map_err(KafkaError::Task)?
    }
}
