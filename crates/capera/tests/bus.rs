//! The recommender as a consumer on the event bus: the simulators publish, a consumer group
//! reads both streams (partitions in parallel) and publishes recommendations.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capera::{BankTransactionSimulator, MarketPriceSimulator, Recommendation, Recommender};
use chrono::{TimeZone, Utc};
use eventbus::{
    BusConfig, EventBus, EventId, GroupId, HandlerError, MemoryBus, StartPosition, Subscription, handler_fn,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recommendations_from_the_bus_match_those_of_a_sequential_run() {
    // Given a running in-memory bus with the catalog topics
    let bus = MemoryBus::memory(BusConfig::default()).await.unwrap();
    bus.start().await.unwrap();

    // And 600 bank transactions and 600 price updates published, keyed by account and symbol
    let mut bank = BankTransactionSimulator::new(99, 12);
    let mut market = MarketPriceSimulator::new(99, 6);
    let start = Utc.with_ymd_and_hms(2025, 2, 3, 9, 0, 0).unwrap();
    let mut sequential = Recommender::new();
    let mut expected = BTreeSet::new();
    for minute in 0..600 {
        let at = start + chrono::Duration::minutes(minute);
        for (topic, (key, event)) in [
            (BankTransactionSimulator::TOPIC, bank.next_event(at)),
            (MarketPriceSimulator::TOPIC, market.next_event(at)),
        ] {
            expected.extend(sequential.on_event(&event).unwrap().into_iter().map(|r| r.recommendation_id));
            bus.publish(&topic.name(), event, Some(&key)).await.unwrap();
        }
    }
    assert!(!expected.is_empty());

    // When a consumer group runs the recommender over both topics and publishes what it issues
    let recommender = Arc::new(Mutex::new(Recommender::new()));
    let handler = {
        let bus = bus.clone();
        handler_fn(move |message| {
            let bus = bus.clone();
            let recommender = Arc::clone(&recommender);
            async move {
                let issued = recommender.lock().expect("recommender lock").on_event(&message.event)?;
                for r in issued {
                    let at = message.event.timestamp.unwrap_or(message.timestamp);
                    bus.publish(&Recommendation::TOPIC.name(), r.to_event(at), Some(r.key())).await?;
                }
                Ok::<(), HandlerError>(())
            }
        })
    };
    let group = GroupId::new("capera-recommender").unwrap();
    let subscription = Subscription::new(BankTransactionSimulator::TOPIC.name(), group)
        .and_topic(MarketPriceSimulator::TOPIC.name())
        .from(StartPosition::Earliest);
    bus.subscribe(subscription, handler).await.unwrap();

    // Then the same recommendations appear on capera.recommendations, each once
    let topic = Recommendation::TOPIC.name();
    let published =
        || -> Vec<EventId> { bus.get_events(Some(&topic)).iter().map(|(_, e)| e.event_id.clone().unwrap()).collect() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while published().len() < expected.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ids = published();
    assert_eq!(ids.len(), expected.len());
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), expected);
    // And each reads back as the recommendation it carries
    for (_, event) in bus.get_events(Some(&topic)) {
        let r = Recommendation::from_event(&event).unwrap();
        assert_eq!(event.event_id.as_ref(), Some(&r.recommendation_id));
    }
    bus.stop().await.unwrap();
}
