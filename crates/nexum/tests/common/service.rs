//! A running core-banking service on a memory bus: store, bank, relay and command handler, with
//! a clock the test moves.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use eventbus::{BusConfig, EventBus, EventSchema, MemoryBus, Topic};
use nexum::clock::ManualClock;
use nexum::store::{SqliteStore, SqliteSync};
use nexum::{EventEnabledBank, NexumCommandHandler, create_event_enabled_banking_system};
use serde_json::Value;

use super::at;

pub struct Service {
    pub _dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub bus: Arc<MemoryBus>,
    pub system: EventEnabledBank,
    pub handler: Arc<NexumCommandHandler>,
    /// The time of the command handler (and of sagas the test starts).
    pub clock: ManualClock,
}

pub async fn service() -> Service {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bank.db"), SqliteSync::Normal).unwrap());
    let bus = Arc::new(MemoryBus::memory(BusConfig::default()).await.unwrap());
    bus.start().await.unwrap();
    let system = create_event_enabled_banking_system(bus.clone(), store.clone());
    let clock = ManualClock::at(at(0, 12));
    let handler = NexumCommandHandler::new(system.bank().clone(), Arc::new(clock.clone()));
    handler.start(&*bus).await.unwrap();
    Service { _dir: dir, store, bus, system, handler, clock }
}

/// A command in the seed's format, with a fresh `event_id`.
pub fn command(event_type: &str, entity_id: &str, data: Value) -> EventSchema {
    let Value::Object(data) = data else { panic!("data is an object") };
    EventSchema::new(event_type, event_type.trim_end_matches("_command"), entity_id, data)
        .with_metadata("correlation_id", "corr-42")
}

/// The first event of `topic` that `matches`, once it has arrived (10 s at most).
pub async fn first(bus: &MemoryBus, topic: Topic, matches: impl Fn(&EventSchema) -> bool) -> EventSchema {
    for _ in 0..1000 {
        if let Some((_, event)) = bus.get_events(Some(&topic.name())).into_iter().find(|(_, e)| matches(e)) {
            return (*event).clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no such event on {topic}")
}

/// The events of `topic` caused by `command`, once at least one has arrived (10 s at most).
pub async fn caused_by(bus: &MemoryBus, topic: Topic, command: &EventSchema) -> Vec<EventSchema> {
    let id = command.event_id.as_ref().unwrap().to_string();
    for _ in 0..1000 {
        let events: Vec<EventSchema> = bus
            .get_events(Some(&topic.name()))
            .into_iter()
            .map(|(_, event)| (*event).clone())
            .filter(|event| event.metadata.get("causation_id").and_then(Value::as_str) == Some(id.as_str()))
            .collect();
        if !events.is_empty() {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no event on {topic} caused by command {id}")
}

/// The dead letters of `topic`, once there are `count` (10 s at most).
pub async fn dead_letters(bus: &MemoryBus, topic: Topic, count: usize) -> Vec<EventSchema> {
    for _ in 0..1000 {
        let letters: Vec<EventSchema> =
            bus.get_events(Some(&topic.dlq())).into_iter().map(|(_, e)| (*e).clone()).collect();
        if letters.len() >= count {
            return letters;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {count} dead letters on {}", topic.dlq())
}

pub async fn send(bus: &MemoryBus, topic: Topic, command: &EventSchema) {
    bus.publish(&topic.name(), command.clone(), None).await.unwrap();
}

pub fn text<'a>(event: &'a EventSchema, key: &str) -> &'a str {
    event.data.get(key).and_then(Value::as_str).unwrap_or_default()
}
