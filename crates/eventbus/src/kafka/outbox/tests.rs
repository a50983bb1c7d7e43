//! The outbox without a broker: its entries, what the writer hands to the relay, and the move
//! from the previous format. Sending to a real broker, outages included, is in
//! `tests/kafka_outage.rs`.

use bytes::Bytes;
use proptest::prelude::*;

use super::log::Reader;
use super::{Outbox, Outgoing, decode, encode};
use crate::bus::{GroupId, Offset, Partition};
use crate::envelope::Header;
use crate::local::embedded::{EmbeddedConfig, EmbeddedStorage};
use crate::runtime::{Backend, NewRecord, Payload, Position};
use crate::topics::TopicName;

fn message(n: u64) -> (TopicName, Outgoing) {
    let topic = TopicName::new("nexum.transactions.created").unwrap();
    let value = Bytes::from(format!("{{\"seq\": {n}}}"));
    (
        topic,
        Outgoing {
            key: Some(format!("acc_{}", n % 3)),
            value,
            headers: vec![Header { name: "ce_id".into(), value: n.to_string() }],
        },
    )
}

fn entry(message: &(TopicName, Outgoing)) -> Vec<u8> {
    let mut buffer = Vec::new();
    encode(&mut buffer, &message.0, &message.1);
    buffer
}

#[test]
fn an_outbox_entry_that_is_not_an_entry_is_refused_not_misread() {
    assert!(decode(&Bytes::from_static(b"")).is_none());
    assert!(decode(&Bytes::from_static(b"no newline at all")).is_none());
    assert!(decode(&Bytes::from_static(b"{\"topic\": \"t\"}\nvalue")).is_none(), "an envelope without key and headers");
    assert!(
        decode(&Bytes::from_static(b"{\"topic\": \"bad topic!\", \"key\": null, \"headers\": []}\nvalue")).is_none()
    );
}

fn header() -> impl Strategy<Value = Header> {
    ("[a-z_]{1,12}", any::<String>()).prop_map(|(name, value)| Header { name, value })
}

proptest! {
    /// Whatever the key, headers and value (newlines and non-UTF-8 bytes included), an outbox
    /// entry reads back as the message it was written from.
    #[test]
    fn an_outbox_entry_reads_back_as_the_message_it_was_written_from(
        topic in "[a-z][a-z0-9._-]{0,40}",
        key in proptest::option::of(any::<String>()),
        headers in proptest::collection::vec(header(), 0..8),
        value in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let topic = TopicName::new(&topic).unwrap();
        let message = (topic, Outgoing { key, value: Bytes::from(value), headers });
        let (read_topic, read) = decode(&Bytes::from(entry(&message))).unwrap();
        prop_assert_eq!(read_topic, message.0);
        prop_assert_eq!(read, message.1);
    }
}

#[tokio::test]
async fn appended_messages_reach_the_relay_in_memory_in_order_and_are_on_disk_when_answered() {
    // Given an outbox
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).await.unwrap();

    // When two appends are stored
    let first = outbox.append((0..3).map(message).collect()).await.unwrap();
    let second = outbox.append((3..5).map(message).collect()).await.unwrap();

    // Then they got consecutive offsets
    assert_eq!(first, vec![0, 1, 2]);
    assert_eq!(second, vec![3, 4]);
    // And the relay is handed their messages in order, marked as stored
    let handed = outbox.handoff.take(0).unwrap();
    assert_eq!((handed.first, handed.messages.len(), *handed.stored.borrow()), (0, 3, Some(true)));
    assert_eq!(handed.messages[2], message(2));
    // And one that asks from the middle of an append gets the rest of it
    let rest = outbox.handoff.take(4).unwrap();
    assert_eq!((rest.first, rest.messages.len()), (4, 1));
    assert_eq!(rest.messages[0], message(4));
    assert!(outbox.handoff.take(5).is_none());
    // And the disk holds the same entries
    let read = Reader::new(dir.path()).read(0, outbox.log.synced(), 10).unwrap();
    let decoded: Vec<_> = read.iter().map(|(_, bytes)| decode(bytes).unwrap()).collect();
    assert_eq!(decoded, (0..5).map(message).collect::<Vec<_>>());
    assert_eq!(outbox.backlog(), 5, "none acknowledged yet");
}

#[tokio::test]
async fn a_second_bus_on_the_same_outbox_directory_is_refused() {
    // Given an outbox in use
    let dir = tempfile::tempdir().unwrap();
    let _first = Outbox::open(dir.path()).await.unwrap();

    // When another opens the same directory
    let second = Outbox::open(dir.path()).await;

    // Then it is told the directory is in use, rather than both writing it
    let error = second.err().expect("refused").to_string();
    assert!(error.contains("in use"), "{error}");
}

#[tokio::test]
async fn the_events_an_outbox_of_the_previous_format_had_not_sent_are_moved_in_order_and_it_is_deleted() {
    // Given an outbox of the previous format: five entries, the broker acknowledged two
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = EmbeddedStorage::open(EmbeddedConfig::at(dir.path())).unwrap();
        let topic = TopicName::new("kafka.outbox").unwrap();
        storage.ensure_topics(vec![(topic.clone(), 1)]).await.unwrap();
        let records = (0..5)
            .map(|n| NewRecord {
                topic: topic.clone(),
                partition: Partition(0),
                key: None,
                payload: Payload::Bytes(Bytes::from(entry(&message(n)))),
            })
            .collect();
        storage.append(records).await.unwrap();
        let relay = GroupId::new("relay").unwrap();
        storage.commit(&relay, &topic, vec![(Partition(0), Position::at(Offset(2)))]).await.unwrap();
    }

    // When the outbox opens
    let outbox = Outbox::open(dir.path()).await.unwrap();

    // Then the three not acknowledged wait in the log, in order
    let read = Reader::new(dir.path()).read(0, outbox.log.synced(), 10).unwrap();
    let decoded: Vec<_> = read.iter().map(|(_, bytes)| decode(bytes).unwrap()).collect();
    assert_eq!(decoded, (2..5).map(message).collect::<Vec<_>>());
    assert_eq!(outbox.backlog(), 3);
    // And the old store is gone, so they are not moved twice
    assert!(!dir.path().join("eventbus.db").exists());
    drop(outbox);
    let reopened = Outbox::open(dir.path()).await.unwrap();
    assert_eq!(reopened.backlog(), 3);
}
