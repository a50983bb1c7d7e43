//! Scheduled delivery on every backend: an event with `metadata.deliver_at` is held and published
//! to its topic at that time, with its `event_id`; a bad `deliver_at` is refused with the reason.

#[macro_use]
mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use common::{Backend, Collector, open, random_group, random_topic, settle, transaction, wait_until};
use eventbus::{BusConfig, BusError, DELIVER_AT, EventBus, SCHEDULED_FOR, ScheduleError, Subscription, TopicName};

conformance!(
    an_event_is_delivered_at_its_time_with_its_event_id,
    a_deliver_at_within_the_minute_past_is_delivered_at_once,
    a_deliver_at_in_the_past_years_ahead_or_not_a_time_is_refused,
    no_more_than_max_scheduled_wait,
    a_scheduled_event_for_an_unknown_topic_is_refused_at_once,
);

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn in_ms(ms: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::milliseconds(ms)
}

/// A running bus with a fresh one-partition topic, and a subscription collecting what arrives.
async fn with_topic(
    backend: Backend,
    config: BusConfig,
) -> (Arc<dyn EventBus>, Option<tempfile::TempDir>, TopicName, Collector) {
    common::init_tracing();
    let (bus, dir) = open(backend, config).await;
    bus.start().await.unwrap();
    let topic = random_topic("scheduled");
    bus.create_topic(&topic, 1).await.unwrap();
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), random_group("scheduled")), seen.handler()).await.unwrap();
    (bus, dir, topic, seen)
}

async fn an_event_is_delivered_at_its_time_with_its_event_id(backend: Backend) {
    // Given a bus and a subscriber
    let (bus, _dir, topic, seen) = with_topic(backend, BusConfig::default()).await;
    // When an event is published with deliver_at 1.5 s ahead
    let due = in_ms(1_500);
    let event = transaction("acc_1", 1).with_metadata(DELIVER_AT, rfc3339(due));
    let event_id = event.event_id.clone().unwrap();
    let published = bus.publish(&topic, event, None).await.unwrap();

    // Then the publisher is told it is scheduled, for that time
    assert_eq!(published.scheduled.map(rfc3339), Some(rfc3339(due)));
    // and nothing is delivered before the time
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(seen.len(), 0, "delivered early");
    assert_eq!(bus.describe_topic(&topic).await.unwrap().retained(), 0);

    // and after it, the event arrives once, with its event_id, its key and when it was due
    let messages = seen.wait_for(1).await;
    settle().await;
    assert_eq!(seen.len(), 1);
    let message = &messages[0];
    assert!(message.timestamp + chrono::Duration::milliseconds(50) >= due, "{} before {due}", message.timestamp);
    assert_eq!(message.event.event_id.as_ref(), Some(&event_id));
    assert_eq!(message.key.as_deref(), Some("acc_1"));
    assert_eq!(message.event.metadata.get(SCHEDULED_FOR).and_then(|v| v.as_str()), Some(rfc3339(due).as_str()));
    assert!(message.event.metadata.get(DELIVER_AT).is_none(), "forwarding it must not schedule it again");
    assert_eq!(message.event.data["seq"], 1);
}

async fn a_deliver_at_within_the_minute_past_is_delivered_at_once(backend: Backend) {
    // Given a bus and a subscriber
    let (bus, _dir, topic, seen) = with_topic(backend, BusConfig::default()).await;
    // When an event is published with deliver_at 30 s ago
    let event = transaction("acc_1", 1).with_metadata(DELIVER_AT, rfc3339(in_ms(-30_000)));
    let published = bus.publish(&topic, event, None).await.unwrap();
    // Then it is published to its topic at once, as a scheduled event is when it is due
    assert_eq!(published.scheduled, None);
    assert_eq!(bus.describe_topic(&topic).await.unwrap().retained(), 1);
    let delivered = &seen.wait_for(1).await[0].event;
    assert!(delivered.metadata.get(SCHEDULED_FOR).is_some() && delivered.metadata.get(DELIVER_AT).is_none());
}

async fn a_deliver_at_in_the_past_years_ahead_or_not_a_time_is_refused(backend: Backend) {
    // Given a bus that schedules at most 30 days ahead
    let config = BusConfig { max_schedule_ahead: Duration::from_secs(30 * 86_400), ..BusConfig::default() };
    let (bus, _dir, topic, _seen) = with_topic(backend, config).await;
    let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
    let publish = |deliver_at: String| {
        let (bus, topic, refused) = (Arc::clone(&bus), topic.clone(), Arc::clone(&refused));
        async move {
            let event = transaction("acc_1", 1).with_metadata(DELIVER_AT, deliver_at);
            refused.lock().unwrap().push(event.event_id.clone().unwrap().to_string());
            bus.publish(&topic, event, None).await.unwrap_err()
        }
    };

    // When deliver_at is two minutes ago, then it is refused as in the past, naming the value
    let past = in_ms(-120_000);
    let error = publish(rfc3339(past)).await;
    assert!(matches!(error, BusError::Schedule(ScheduleError::InPast { .. })), "{error:?}");
    assert!(error.to_string().contains("is in the past: it may be at most 60 s before now"), "{error}");
    // When it is two years ahead, then it is refused as too far ahead, naming the bound
    let error = publish(rfc3339(in_ms(2 * 365 * 86_400_000))).await;
    assert!(matches!(error, BusError::Schedule(ScheduleError::TooFarAhead { max_days: 30, .. })), "{error:?}");
    assert!(error.to_string().contains("at most 30 days from now"), "{error}");
    // When it is not a time, then it is refused, repeating what was given
    let error = publish("next tuesday".into()).await;
    assert!(error.to_string().contains("invalid deliver_at `next tuesday`: expected an RFC 3339 time"), "{error}");

    // And nothing was stored, here or in the schedule
    assert_eq!(bus.describe_topic(&topic).await.unwrap().retained(), 0);
    let schedule = TopicName::new(eventbus::SCHEDULE_TOPIC).unwrap();
    let entries = bus.read(&schedule, eventbus::Partition(0), eventbus::Offset(0), 100_000).await.unwrap();
    let refused = refused.lock().unwrap();
    assert!(entries.iter().filter_map(|r| r.event()).all(|e| !refused.contains(&e.entity_id)));
}

async fn no_more_than_max_scheduled_wait(backend: Backend) {
    // Given a bus that holds at most 2 scheduled events
    let config = BusConfig { max_scheduled: 2, ..BusConfig::default() };
    let (bus, _dir, topic, seen) = with_topic(backend, config).await;
    let due = rfc3339(in_ms(2_000));

    // When events are scheduled until one is refused
    let mut scheduled = 0;
    let error = loop {
        let event = transaction("acc_1", scheduled).with_metadata(DELIVER_AT, due.clone());
        match bus.publish(&topic, event, None).await {
            Ok(published) => {
                assert!(published.scheduled.is_some());
                scheduled += 1;
                // On Kafka the schedule is the broker's, shared with the tests running beside
                // this one: their pending events count too.
                assert!(scheduled <= 2, "more than max_scheduled were taken");
            }
            Err(error) => break error,
        }
    };

    // Then the refusal names the bound
    assert!(matches!(error, BusError::Schedule(ScheduleError::Full { max: 2 })), "{error:?}");
    assert!(error.to_string().contains("2 events are scheduled already"), "{error}");
    // while an event without deliver_at goes through
    bus.publish(&topic, transaction("acc_2", 100), None).await.unwrap();

    // And once what was pending is delivered, there is room again
    wait_until(|| async { seen.len() as u64 == scheduled + 1 }).await;
    wait_until(|| async {
        let later = transaction("acc_1", 101).with_metadata(DELIVER_AT, rfc3339(in_ms(500)));
        bus.publish(&topic, later, None).await.is_ok()
    })
    .await;
    seen.wait_for(scheduled as usize + 2).await;
}

async fn a_scheduled_event_for_an_unknown_topic_is_refused_at_once(backend: Backend) {
    // Given a bus without auto-create
    let (bus, _dir, _topic, _seen) = with_topic(backend, BusConfig::default()).await;
    // When an event is scheduled for a topic that does not exist
    let event = transaction("acc_1", 1).with_metadata(DELIVER_AT, rfc3339(in_ms(60_000)));
    let error = bus.publish(&random_topic("missing"), event, None).await.unwrap_err();
    // Then it is refused now, not at its time
    assert!(matches!(error, BusError::UnknownTopic(_)), "{error:?}");
}

/// Publishes an event due in 2 s on a bus opened by `open`, stops that bus before the time, and
/// opens another on the same storage: it delivers the event once, and a third bus does not again.
async fn a_restart_before_the_time_still_delivers_once<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn EventBus>>,
{
    // Given a topic and an event scheduled 2 s ahead on a bus
    common::init_tracing();
    let first = open().await;
    first.start().await.unwrap();
    let topic = random_topic("durable");
    first.create_topic(&topic, 1).await.unwrap();
    let event = transaction("acc_1", 1).with_metadata(DELIVER_AT, rfc3339(in_ms(2_000)));
    let event_id = event.event_id.clone().unwrap();
    assert!(first.publish(&topic, event, None).await.unwrap().scheduled.is_some());

    // When that bus stops before the time and another opens on the same storage
    first.stop().await.unwrap();
    drop(first);
    let second = open().await;
    let seen = Collector::default();
    second.subscribe(Subscription::new(topic.clone(), random_group("durable")), seen.handler()).await.unwrap();
    second.start().await.unwrap();

    // Then the event is delivered, once, with its event_id
    let messages = seen.wait_for(1).await;
    assert_eq!(messages[0].event.event_id.as_ref(), Some(&event_id));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(seen.len(), 1);
    // and a bus opened after that does not deliver it again
    second.stop().await.unwrap();
    drop(second);
    let third = open().await;
    third.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(third.describe_topic(&topic).await.unwrap().retained(), 1);
    third.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_restart_before_the_time_still_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    a_restart_before_the_time_still_delivers_once(move || {
        let config = eventbus::EmbeddedConfig::at(&path);
        async move {
            Arc::new(eventbus::EmbeddedBus::embedded(BusConfig::default(), config).await.unwrap()) as Arc<dyn EventBus>
        }
    })
    .await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_a_restart_before_the_time_still_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    a_restart_before_the_time_still_delivers_once(move || {
        let outbox = path.join(format!("outbox-{}", eventbus::EventId::new()));
        let kafka = eventbus::KafkaConfig { outbox_dir: Some(outbox), ..common::kafka_config() };
        async move { Arc::new(eventbus::KafkaBus::connect(kafka, BusConfig::default()).await.unwrap()) as Arc<dyn EventBus> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_retention_does_not_expire_a_scheduled_event() {
    // Given a store that keeps records 300 ms, and a bus on it that does not deliver
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let open = |run_scheduler| {
        let config = eventbus::EmbeddedConfig {
            retention: Some(Duration::from_millis(300)),
            ..eventbus::EmbeddedConfig::at(dir.path())
        };
        eventbus::EmbeddedBus::embedded(BusConfig { run_scheduler, ..BusConfig::default() }, config)
    };
    let publisher = open(false).await.unwrap();
    publisher.start().await.unwrap();
    let topic = random_topic("retained");
    publisher.create_topic(&topic, 1).await.unwrap();

    // When it schedules an event 3 s ahead, and the record ages past the retention
    let event = transaction("acc_1", 1).with_metadata(DELIVER_AT, rfc3339(in_ms(3_000)));
    publisher.publish(&topic, event, None).await.unwrap();
    for n in 2..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        publisher.publish(&topic, transaction("acc_2", n), None).await.unwrap();
    }
    // and only then a bus that delivers opens on the store
    let bus = open(true).await.unwrap();
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), random_group("retained")), seen.handler()).await.unwrap();
    bus.start().await.unwrap();

    // Then the event is still delivered at its time
    wait_until(|| async { seen.messages().iter().any(|m| m.event.data["seq"] == 1) }).await;
}
