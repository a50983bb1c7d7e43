//! What only the Kafka backend does, without a broker: the messages it makes of records, and the
//! entries of its durable outbox. The behaviour against a real broker is in the conformance,
//! groups, interop and outage suites under `tests/`.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use super::{Outgoing, outgoing};
use crate::bus::Partition;
use crate::envelope::{EventSchema, from_binary};
use crate::runtime::{NewRecord, Payload};
use crate::topics::TopicName;

fn event() -> EventSchema {
    let data = json!({"amount": "100.50", "currency": "USD", "email": "jane@example.com"});
    EventSchema::new("transaction_created", "transaction", "txn_1", data.as_object().unwrap().clone())
        .with_metadata("correlation_id", "corr_1")
}

#[test]
fn an_event_goes_out_as_its_flat_json_with_cloudevents_headers_and_no_personal_data_in_them() {
    // Given a record of an event, keyed by its account
    let event = event();
    let record = NewRecord {
        topic: TopicName::new("nexum.transactions.created").unwrap(),
        partition: Partition(2),
        key: Some(Arc::from("acc_1")),
        payload: Payload::Event(Arc::new(event.clone())),
    };
    // When it becomes a Kafka message
    let message = outgoing(record).unwrap();
    // Then the value is the event's flat JSON, the key is kept, and the headers describe it
    assert_eq!(message.value, event.to_json());
    assert_eq!(message.key.as_deref(), Some("acc_1"));
    let header = |name: &str| message.headers.iter().find(|h| h.name == name).map(|h| h.value.as_str());
    assert_eq!(header("ce_type"), Some("transaction_created"));
    assert_eq!(header("ce_id").map(str::to_owned), event.event_id.as_ref().map(ToString::to_string));
    assert_eq!(header("ce_specversion"), Some("1.0"));
    assert!(message.headers.iter().all(|h| !h.value.contains("jane@example.com")), "{:?}", message.headers);
    // And a consumer reads the same event back from it
    assert_eq!(from_binary(&message.headers, &message.value).unwrap(), event);
}

#[test]
fn raw_bytes_go_out_as_they_were_given_without_headers() {
    let record = NewRecord {
        topic: TopicName::new("raw").unwrap(),
        partition: Partition(0),
        key: None,
        payload: Payload::Bytes(Bytes::from_static(b"not json\n")),
    };
    let message = outgoing(record).unwrap();
    assert_eq!(message, Outgoing { key: None, value: Bytes::from_static(b"not json\n"), headers: Vec::new() });
}
