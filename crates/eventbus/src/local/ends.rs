//! The end of each partition as this process knows it, and the consumers to wake when it moves.
//!
//! Every append of this process moves the end of the partitions it wrote and wakes the consumers
//! of those topics only; a consumer reads only the partitions whose end is past its cursor. Ends
//! written by other processes sharing a store come in when the consumer refreshes them, once per
//! poll interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::Notify;

use crate::bus::{Offset, Partition};
use crate::topics::TopicName;

/// Partition ends, and who waits for them to move.
#[derive(Default)]
pub struct PartitionEnds {
    ends: RwLock<HashMap<(TopicName, Partition), u64>>,
    /// The consumers of each topic: woken once per append that moves one of its partitions.
    waiting: Mutex<HashMap<TopicName, Vec<Weak<Notify>>>>,
}

impl PartitionEnds {
    /// The end of a partition as far as this process knows: the offset the next record gets.
    /// `None` until something moved or refreshed it.
    pub fn get(&self, topic: &TopicName, partition: Partition) -> Option<Offset> {
        self.ends
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(topic.clone(), partition))
            .map(|end| Offset(*end))
    }

    /// Records that the partitions of `moved` end at least where each says, and wakes the
    /// consumers of the topics that moved. Ends never go back.
    pub fn advance(&self, moved: impl IntoIterator<Item = (TopicName, Partition, u64)>) {
        let mut woken: Vec<TopicName> = Vec::new();
        {
            let mut ends = self.ends.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (topic, partition, end) in moved {
                let known = ends.entry((topic.clone(), partition)).or_insert(0);
                if end > *known {
                    *known = end;
                    if !woken.contains(&topic) {
                        woken.push(topic);
                    }
                }
            }
        }
        if woken.is_empty() {
            return;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for topic in woken {
            if let Some(consumers) = waiting.get_mut(&topic) {
                // notify_one keeps a permit for a consumer that is not waiting yet: no wake-up is lost.
                consumers.retain(|consumer| consumer.upgrade().map(|notify| notify.notify_one()).is_some());
            }
        }
    }

    /// A signal woken whenever a partition of one of `topics` moves. It stops when dropped.
    pub fn watch(&self, topics: &[TopicName]) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for topic in topics {
            let consumers = waiting.entry(topic.clone()).or_default();
            consumers.retain(|consumer| consumer.strong_count() > 0);
            consumers.push(Arc::downgrade(&notify));
        }
        notify
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName::new(name).unwrap()
    }

    #[tokio::test]
    async fn an_append_wakes_the_consumers_of_its_topic_only() {
        // Given consumers of two topics
        let ends = PartitionEnds::default();
        let (a, b) = (topic("a"), topic("b"));
        let of_a = ends.watch(std::slice::from_ref(&a));
        let of_b = ends.watch(std::slice::from_ref(&b));
        // When topic a's partition 1 moves to 5
        ends.advance([(a.clone(), Partition(1), 5)]);
        // Then its consumer wakes, the other does not, and the end is known
        tokio::time::timeout(std::time::Duration::from_secs(1), of_a.notified()).await.unwrap();
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), of_b.notified()).await.is_err());
        assert_eq!(ends.get(&a, Partition(1)), Some(Offset(5)));
        assert_eq!(ends.get(&a, Partition(0)), None);
    }

    #[test]
    fn an_end_never_goes_back() {
        let ends = PartitionEnds::default();
        let a = topic("a");
        ends.advance([(a.clone(), Partition(0), 9)]);
        ends.advance([(a.clone(), Partition(0), 3)]);
        assert_eq!(ends.get(&a, Partition(0)), Some(Offset(9)));
    }
}
