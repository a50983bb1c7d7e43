//! One suite, every backend: each scenario below runs on memory, log, embedded and Kafka.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use chrono::Utc;
use common::{Backend, Collector, fast_retry, open, random_group, random_topic, settle, transaction, wait_until};
use eventbus::{
    BusConfig, BusError, DEAD_LETTERED, EventBus, HandlerError, Offset, Partition, StartPosition, Subscription, Topic,
    handler_fn, partition_for_key,
};

conformance!(
    catalog_topics_exist_from_the_start,
    events_arrive_in_key_order_on_the_murmur2_partition,
    unknown_topic_is_refused_unless_auto_create_is_on,
    publishing_needs_a_running_bus,
    batch_keys_must_match_events,
    a_restarted_consumer_resumes_from_its_committed_offset,
    start_positions_pick_where_reading_begins,
    a_failing_handler_is_retried_then_dead_lettered_and_the_partition_moves_on,
    a_panicking_handler_is_dead_lettered_not_fatal,
    a_message_that_is_not_an_event_is_dead_lettered_with_its_parse_error,
    a_dead_letter_masks_personal_data_and_names_the_original_place,
    a_repeated_event_id_is_handled_once,
    status_counts_events_per_topic,
    topics_are_created_listed_and_described,
    resetting_offsets_replays_a_group,
    oversized_messages_are_refused,
    missing_event_id_and_timestamp_are_filled_in,
    a_dead_letter_of_a_message_near_the_size_limit_keeps_its_place_and_prefix,
    deleting_a_group_forgets_its_offsets,
    a_group_reports_when_its_consumer_joined,
    every_group_is_listed_with_its_offsets_and_lag,
    a_partition_reset_moves_only_that_partition,
    subscriptions_of_one_group_to_different_topics_each_get_all_of_their_topic,
);

async fn running(backend: Backend, config: BusConfig) -> (Arc<dyn EventBus>, Option<tempfile::TempDir>) {
    common::init_tracing();
    let (bus, dir) = open(backend, config).await;
    bus.start().await.unwrap();
    (bus, dir)
}

fn auto_create() -> BusConfig {
    BusConfig { auto_create_topics: true, default_partitions: 3, ..BusConfig::default() }
}

async fn catalog_topics_exist_from_the_start(backend: Backend) {
    // Given a fresh bus
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    // When its topics are listed
    let topics = bus.list_topics().await.unwrap();
    // Then every catalog topic and its dead-letter topic are there, with their partition counts
    let counts: HashMap<_, _> = topics.iter().map(|t| (t.name.to_string(), t.partitions.len() as u32)).collect();
    for topic in Topic::ALL {
        assert_eq!(counts.get(topic.as_str()), Some(&topic.partitions()), "{topic}");
        assert_eq!(counts.get(topic.dlq().as_str()), Some(&1), "{topic}.dlq");
    }
    assert_eq!(counts["bank.transactions"], 3);
    assert_eq!(counts["market.price.updates"], 3);
}

async fn events_arrive_in_key_order_on_the_murmur2_partition(backend: Backend) {
    // Given a 3-partition topic and a consumer
    let (bus, _dir) = running(backend, auto_create()).await;
    let topic = random_topic("order");
    let seen = Collector::default();
    let subscription = Subscription::new(topic.clone(), random_group("order"));
    bus.subscribe(subscription, seen.handler()).await.unwrap();
    // When events for five accounts are published interleaved, some one by one, some in batches
    let accounts = ["acc_1", "acc_2", "acc_3", "acc_4", "acc_5"];
    for n in 0..40u64 {
        let account = accounts[n as usize % accounts.len()];
        bus.publish(&topic, transaction(account, n), None).await.unwrap();
    }
    let batch: Vec<_> = (40..100u64).map(|n| transaction(accounts[n as usize % 5], n)).collect();
    bus.publish_batch(&topic, batch, None).await.unwrap();
    // Then each account's events arrive in publish order, all on the partition murmur2 picks
    let messages = seen.wait_for(100).await;
    for account in accounts {
        let mine: Vec<_> = messages.iter().filter(|m| m.event.entity_id == account).collect();
        let seqs: Vec<u64> = mine.iter().map(|m| m.event.data["seq"].as_u64().unwrap()).collect();
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "order of {account}");
        assert_eq!(mine.len(), 20);
        for m in &mine {
            assert_eq!(m.partition, partition_for_key(account.as_bytes(), 3));
            assert_eq!(m.key.as_deref(), Some(account));
        }
    }
    settle().await;
    assert_eq!(seen.len(), 100, "no message is delivered twice");
}

async fn unknown_topic_is_refused_unless_auto_create_is_on(backend: Backend) {
    // Given a bus without auto-create
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("typo");
    // When an event goes to a topic nobody created
    let result = bus.publish(&topic, transaction("acc_1", 1), None).await;
    // Then it is refused with a message naming the topic and the fix
    let error = result.unwrap_err();
    assert!(matches!(error, BusError::UnknownTopic(ref t) if *t == topic));
    assert!(error.to_string().contains("eventbus topics create"), "{error}");
    assert!(matches!(
        bus.subscribe(Subscription::new(topic, random_group("g")), Collector::default().handler()).await,
        Err(BusError::UnknownTopic(_))
    ));

    // Given a bus with auto-create on, the same publish creates the topic
    let (bus, _dir) = running(backend, auto_create()).await;
    let topic = random_topic("auto");
    bus.publish(&topic, transaction("acc_1", 1), None).await.unwrap();
    assert_eq!(bus.describe_topic(&topic).await.unwrap().partitions.len(), 3);
}

async fn publishing_needs_a_running_bus(backend: Backend) {
    // Given a bus that was never started
    let (bus, _dir) = open(backend, BusConfig::default()).await;
    assert!(!bus.is_running());
    // When an event is published
    let result = bus.publish(&Topic::TransactionsCreated.name(), transaction("acc_1", 1), None).await;
    // Then the caller is told to start it
    assert!(matches!(result, Err(BusError::NotRunning)));
    bus.start().await.unwrap();
    assert!(bus.is_running());
    bus.stop().await.unwrap();
    assert!(!bus.is_running());
}

async fn batch_keys_must_match_events(backend: Backend) {
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("keys");
    bus.create_topic(&topic, 1).await.unwrap();
    let events = vec![transaction("acc_1", 1), transaction("acc_2", 2)];
    let result = bus.publish_batch(&topic, events, Some(vec!["k".into()])).await;
    assert!(matches!(result, Err(BusError::KeyCountMismatch { keys: 1, events: 2 })));
    assert_eq!(bus.describe_topic(&topic).await.unwrap().retained(), 0, "nothing of a refused batch is stored");
}

async fn a_restarted_consumer_resumes_from_its_committed_offset(backend: Backend) {
    // Given a consumer that handled 10 events
    let (bus, _dir) = running(backend, auto_create()).await;
    let topic = random_topic("resume");
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), random_group("resume")), seen.handler()).await.unwrap();
    for n in 0..10 {
        bus.publish(&topic, transaction("acc_1", n), None).await.unwrap();
    }
    seen.wait_for(10).await;
    // When the bus stops, starts again, and 5 more events arrive
    bus.stop().await.unwrap();
    bus.start().await.unwrap();
    for n in 10..15 {
        bus.publish(&topic, transaction("acc_1", n), None).await.unwrap();
    }
    // Then only the new events are delivered again
    let messages = seen.wait_for(15).await;
    settle().await;
    assert_eq!(seen.len(), 15);
    let seqs: Vec<u64> = messages.iter().map(|m| m.event.data["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..15).collect::<Vec<_>>());
}

async fn start_positions_pick_where_reading_begins(backend: Backend) {
    // Given a one-partition topic holding 10 events published before and 10 after a moment
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("positions");
    bus.create_topic(&topic, 1).await.unwrap();
    for n in 0..10 {
        bus.publish(&topic, transaction("acc_1", n), None).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let moment = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for n in 10..20 {
        bus.publish(&topic, transaction("acc_1", n), None).await.unwrap();
    }
    let first_seq = |start: StartPosition| {
        let bus = Arc::clone(&bus);
        let topic = topic.clone();
        async move {
            let seen = Collector::default();
            let subscription = Subscription::new(topic.clone(), random_group("pos")).from(start);
            bus.subscribe(subscription, seen.handler()).await.unwrap();
            let messages = seen.wait_for(1).await;
            messages[0].event.data["seq"].as_u64().unwrap()
        }
    };
    // Then each position starts where it says
    assert_eq!(first_seq(StartPosition::Earliest).await, 0);
    assert_eq!(first_seq(StartPosition::Committed).await, 0, "a new group starts at the earliest");
    assert_eq!(first_seq(StartPosition::Offset(Offset(7))).await, 7);
    assert_eq!(first_seq(StartPosition::Timestamp(moment)).await, 10);

    // And latest sees only what comes after it
    let seen = Collector::default();
    let subscription = Subscription::new(topic.clone(), random_group("latest")).from(StartPosition::Latest);
    bus.subscribe(subscription, seen.handler()).await.unwrap();
    settle().await;
    bus.publish(&topic, transaction("acc_1", 99), None).await.unwrap();
    let messages = seen.wait_for(1).await;
    settle().await;
    assert_eq!(seen.len(), 1);
    assert_eq!(messages[0].event.data["seq"], 99);
}

async fn a_failing_handler_is_retried_then_dead_lettered_and_the_partition_moves_on(backend: Backend) {
    // Given a handler that fails twice on event 1, always on event 2, and never otherwise
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("retry");
    bus.create_topic(&topic, 1).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Collector::default();
    let handler = {
        let calls = Arc::clone(&calls);
        let record = seen.handler();
        handler_fn(move |message| {
            let calls = Arc::clone(&calls);
            let record = Arc::clone(&record);
            async move {
                let seq = message.event.data["seq"].as_u64().unwrap();
                if seq == 1 && calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(HandlerError::msg("downstream timeout"));
                }
                if seq == 2 {
                    return Err(HandlerError::msg("account acc_1 is frozen"));
                }
                record.handle(message).await
            }
        })
    };
    let group = random_group("retry");
    bus.subscribe(Subscription::new(topic.clone(), group.clone()).with_retry(common::fast_retry()), handler)
        .await
        .unwrap();
    let dead = Collector::default();
    bus.subscribe(Subscription::new(topic.dlq(), random_group("dlq-reader")), dead.handler()).await.unwrap();
    // When events 0..5 are published
    for n in 0..5 {
        bus.publish(&topic, transaction("acc_1", n), None).await.unwrap();
    }
    // Then 1 succeeds on its third call, 2 goes to the dead-letter topic, and 3 and 4 follow
    let messages = seen.wait_for(4).await;
    let seqs: Vec<u64> = messages.iter().map(|m| m.event.data["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 3, 4]);
    let letters = dead.wait_for(1).await;
    let letter = &letters[0].event;
    assert_eq!(letter.event_type.as_str(), DEAD_LETTERED);
    assert_eq!(letter.data["error"], "account acc_1 is frozen");
    assert_eq!(letter.data["error_kind"], "handler_failed");
    assert_eq!(letter.data["attempts"], 3);
    assert_eq!(letter.data["original_topic"], topic.as_str());
    assert_eq!(letter.data["original_offset"], 2);
    assert_eq!(letter.data["original_event"]["data"]["seq"], 2);
    assert_eq!(letter.data["original_event"]["entity_id"], "acc_1");
    // And the group's offset is past all five
    wait_until(|| async {
        bus.group_offsets(&group, &topic).await.unwrap().first().map(|o| o.offset) == Some(Offset(5))
    })
    .await;
    settle().await;
    assert_eq!(dead.len(), 1);
}

async fn a_panicking_handler_is_dead_lettered_not_fatal(backend: Backend) {
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("panic");
    bus.create_topic(&topic, 1).await.unwrap();
    let seen = Collector::default();
    let record = seen.handler();
    let handler = handler_fn(move |message| {
        let record = Arc::clone(&record);
        async move {
            if message.event.data["seq"] == 0 {
                panic!("bug in handler");
            }
            record.handle(message).await
        }
    });
    bus.subscribe(Subscription::new(topic.clone(), random_group("panic")).with_retry(fast_retry()), handler)
        .await
        .unwrap();
    let dead = Collector::default();
    bus.subscribe(Subscription::new(topic.dlq(), random_group("dlq")), dead.handler()).await.unwrap();
    bus.publish(&topic, transaction("acc_1", 0), None).await.unwrap();
    bus.publish(&topic, transaction("acc_1", 1), None).await.unwrap();
    seen.wait_for(1).await;
    let letters = dead.wait_for(1).await;
    assert!(letters[0].event.data["error"].as_str().unwrap().contains("bug in handler"));
    assert!(bus.is_running());
}

async fn a_message_that_is_not_an_event_is_dead_lettered_with_its_parse_error(backend: Backend) {
    // Given a consumer, and a foreign producer that writes junk and an event without event_type
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("junk");
    bus.create_topic(&topic, 1).await.unwrap();
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), random_group("junk")), seen.handler()).await.unwrap();
    let dead = Collector::default();
    bus.subscribe(Subscription::new(topic.dlq(), random_group("dlq")), dead.handler()).await.unwrap();
    bus.publish_bytes(&topic, Some("k1"), Bytes::from_static(b"{not json")).await.unwrap();
    bus.publish_bytes(&topic, None, Bytes::from_static(br#"{"entity_id": "x", "data": {}}"#)).await.unwrap();
    bus.publish(&topic, transaction("acc_1", 7), None).await.unwrap();
    // Then both go to the dead-letter topic with their reason and raw value, and the good event follows
    // (records of different keys are handled concurrently: the letters come in either order)
    let messages = seen.wait_for(1).await;
    assert_eq!(messages[0].event.data["seq"], 7);
    let letters = dead.wait_for(2).await;
    let junk = letters.iter().find(|l| l.event.data["original_key"] == "k1").expect("the letter of the junk");
    let untyped = letters.iter().find(|l| l.event.data["original_key"].is_null()).expect("the letter of the other");
    assert_eq!(junk.event.data["error_kind"], "undecodable");
    assert_eq!(junk.event.data["original_value"], "{not json");
    assert!(junk.event.data["error"].as_str().unwrap().contains("invalid event JSON"));
    assert!(untyped.event.data["error"].as_str().unwrap().contains("event_type"), "{}", untyped.event.data["error"]);
}

async fn a_dead_letter_masks_personal_data_and_names_the_original_place(backend: Backend) {
    // Given a consumer that refuses everything, and a command with a customer's personal data
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("pii");
    bus.create_topic(&topic, 1).await.unwrap();
    let refuse = handler_fn(|_| async { Err(HandlerError::permanent("malformed command")) });
    bus.subscribe(Subscription::new(topic.clone(), random_group("pii")).with_retry(fast_retry()), refuse)
        .await
        .unwrap();
    let dead = Collector::default();
    bus.subscribe(Subscription::new(topic.dlq(), random_group("pii-dlq")), dead.handler()).await.unwrap();
    let data = serde_json::json!({"action": "create", "customer_id": "cust_9", "first_name": "Jane",
                                  "last_name": "Smith", "email": "jane.smith@example.com", "phone": "+44 20 7946 0958"});
    let command =
        eventbus::EventSchema::new("customer_command", "customer", "cust_9", data.as_object().unwrap().clone());
    bus.publish(&topic, command, None).await.unwrap();
    // And a foreign producer's JSON that is not an event, with an email in it
    bus.publish_bytes(&topic, Some("raw"), Bytes::from_static(br#"{"email": "joe@example.com"}"#)).await.unwrap();

    // When both are dead-lettered
    let letters = dead.wait_for(2).await;

    // Then no name, email or phone is in clear text in either letter, the rest is kept, and the
    // letter says where the original is
    for letter in &letters {
        let text = String::from_utf8(letter.event.to_json()).unwrap();
        for secret in ["Jane", "Smith", "jane.smith", "7946", "joe@"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(letter.event.data["original_topic"], topic.as_str());
        assert!(letter.event.data["original_offset"].is_u64());
    }
    let masked = letters.iter().find(|l| l.event.data.get("original_event").is_some()).unwrap();
    let original = &masked.event.data["original_event"]["data"];
    assert_eq!(
        (original["customer_id"].as_str(), original["email"].as_str()),
        (Some("cust_9"), Some("j***@example.com"))
    );
}

async fn a_repeated_event_id_is_handled_once(backend: Backend) {
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("dedup");
    bus.create_topic(&topic, 1).await.unwrap();
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), random_group("dedup")), seen.handler()).await.unwrap();
    // Given a producer that retried and sent the same event twice
    let event = transaction("acc_1", 1);
    bus.publish(&topic, event.clone(), None).await.unwrap();
    bus.publish(&topic, event, None).await.unwrap();
    bus.publish(&topic, transaction("acc_1", 2), None).await.unwrap();
    // Then the handler sees it once
    seen.wait_for(2).await;
    settle().await;
    assert_eq!(seen.len(), 2);
}

async fn status_counts_events_per_topic(backend: Backend) {
    // Given two topics with 3 and 1 events, and an empty one (other tests may share the broker)
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let (created, customers, empty) = (random_topic("status"), random_topic("status"), random_topic("status"));
    for topic in [&created, &customers, &empty] {
        bus.create_topic(topic, 2).await.unwrap();
    }
    for n in 0..3 {
        bus.publish(&created, transaction("acc_1", n), None).await.unwrap();
    }
    bus.publish(&customers, transaction("cust_1", 0), None).await.unwrap();
    // When the status is read
    let status = bus.status().await.unwrap();
    // Then it counts per topic, leaves empty topics out, and totals at least these
    assert!(status.running);
    assert_eq!(status.backend, bus.backend());
    assert_eq!(status.events_by_topic.get(&created), Some(&3));
    assert_eq!(status.events_by_topic.get(&customers), Some(&1));
    assert_eq!(status.events_by_topic.get(&empty), None, "empty topics are left out");
    assert_eq!(status.total_events, status.events_by_topic.values().sum::<u64>());
    assert!(status.total_events >= 4);
}

async fn topics_are_created_listed_and_described(backend: Backend) {
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("admin");
    bus.create_topic(&topic, 4).await.unwrap();
    assert!(matches!(bus.create_topic(&topic, 4).await, Err(BusError::TopicExists(_))));
    assert!(matches!(bus.create_topic(&random_topic("zero"), 0).await, Err(BusError::InvalidPartitions(0))));
    assert!(bus.list_topics().await.unwrap().iter().any(|t| t.name == topic));
    bus.publish(&topic, transaction("acc_1", 0), Some("acc_1")).await.unwrap();
    let description = bus.describe_topic(&topic).await.unwrap();
    assert_eq!(description.partitions.len(), 4);
    let p = partition_for_key(b"acc_1", 4);
    for info in &description.partitions {
        let expected = if info.partition == p { 1 } else { 0 };
        assert_eq!((info.earliest, info.latest), (Offset(0), Offset(expected)), "partition {}", info.partition);
    }
    assert!(matches!(bus.describe_topic(&random_topic("nope")).await, Err(BusError::UnknownTopic(_))));
}

async fn resetting_offsets_replays_a_group(backend: Backend) {
    // Given a group that consumed 5 events and stopped
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("replay");
    bus.create_topic(&topic, 2).await.unwrap();
    let group = random_group("replay");
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), group.clone()), seen.handler()).await.unwrap();
    for n in 0..5 {
        bus.publish(&topic, transaction(&format!("acc_{n}"), n), None).await.unwrap();
    }
    seen.wait_for(5).await;
    wait_until(|| async {
        bus.group_offsets(&group, &topic).await.unwrap().iter().map(|o| o.offset.0).sum::<u64>() == 5
    })
    .await;
    bus.stop().await.unwrap();
    assert!(bus.group_offsets(&group, &topic).await.unwrap().iter().all(|o| o.lag == 0));
    // When its offsets are reset to the earliest and it starts again
    let reset = bus.reset_offsets(&group, &topic, StartPosition::Earliest).await.unwrap();
    assert_eq!(reset.iter().map(|o| o.lag).sum::<u64>(), 5);
    bus.start().await.unwrap();
    // Then it reads everything again
    seen.wait_for(10).await;
    assert_eq!(reset.iter().map(|o| o.partition).collect::<Vec<_>>(), vec![Partition(0), Partition(1)]);
}

async fn oversized_messages_are_refused(backend: Backend) {
    let config = BusConfig { max_message_bytes: 1024, ..BusConfig::default() };
    let (bus, _dir) = running(backend, config).await;
    let topic = random_topic("oversized");
    bus.create_topic(&topic, 1).await.unwrap();
    let mut event = transaction("acc_1", 0);
    event.data.insert("blob".into(), "x".repeat(2000).into());
    assert!(matches!(bus.publish(&topic, event, None).await, Err(BusError::MessageTooLarge { max: 1024, .. })));
    let raw = Bytes::from(vec![b'x'; 2000]);
    assert!(matches!(bus.publish_bytes(&topic, None, raw).await, Err(BusError::MessageTooLarge { size: 2000, .. })));
    assert_eq!(bus.describe_topic(&topic).await.unwrap().retained(), 0);
}

async fn missing_event_id_and_timestamp_are_filled_in(backend: Backend) {
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = Topic::CommandsLoans.name();
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), random_group("fill")), seen.handler()).await.unwrap();
    // A catalog topic: other tests (and earlier runs on the same broker) publish to it too.
    let customer = random_topic("cust").to_string();
    let command: eventbus::EventSchema = serde_json::from_str(&format!(
        r#"{{"event_type": "loan_command", "data": {{"action": "originate", "customer_id": "{customer}", "principal": "10000.00", "currency": "USD"}}}}"#,
    ))
    .unwrap();
    bus.publish(&topic, command, None).await.unwrap();
    let ours = |messages: Vec<eventbus::Message>| {
        messages
            .into_iter()
            .find(|m| m.event.data.get("customer_id").and_then(|v| v.as_str()) == Some(customer.as_str()))
    };
    common::wait_until(|| async { ours(seen.messages()).is_some() }).await;
    let message = ours(seen.messages()).unwrap();
    assert!(message.event.event_id.is_some());
    assert!(message.event.timestamp.is_some());
    assert_eq!(message.key, None, "no entity id, no key");
}

async fn a_dead_letter_of_a_message_near_the_size_limit_keeps_its_place_and_prefix(backend: Backend) {
    // Given a 2 KB size limit, an event just under it, and a handler that always fails on it
    let config = BusConfig { max_message_bytes: 2048, ..BusConfig::default() };
    let (bus, _dir) = running(backend, config).await;
    let topic = random_topic("large");
    bus.create_topic(&topic, 1).await.unwrap();
    let seen = Collector::default();
    let record = seen.handler();
    let handler = handler_fn(move |message| {
        let record = Arc::clone(&record);
        async move {
            if message.event.data.contains_key("blob") {
                return Err(HandlerError::msg("cannot handle blobs"));
            }
            record.handle(message).await
        }
    });
    bus.subscribe(Subscription::new(topic.clone(), random_group("large")).with_retry(fast_retry()), handler)
        .await
        .unwrap();
    let dead = Collector::default();
    bus.subscribe(Subscription::new(topic.dlq(), random_group("dlq")), dead.handler()).await.unwrap();
    let mut large = transaction("acc_1", 0);
    large.data.insert("blob".into(), "x".repeat(1500).into());
    bus.publish(&topic, large, None).await.unwrap();
    bus.publish(&topic, transaction("acc_1", 1), None).await.unwrap();
    // Then the dead letter fits: it keeps the place, size and beginning of the original
    let letters = dead.wait_for(1).await;
    let data = &letters[0].event.data;
    assert_eq!(data["original_truncated"], true);
    assert_eq!(data["original_offset"], 0);
    assert!(data["original_bytes"].as_u64().unwrap() > 1500);
    assert!(data["original_prefix"].as_str().unwrap().starts_with('{'));
    // And the partition moved on
    assert_eq!(seen.wait_for(1).await[0].event.data["seq"], 1);
}

async fn deleting_a_group_forgets_its_offsets(backend: Backend) {
    // Given a group that consumed three events and stopped
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let topic = random_topic("delete");
    bus.create_topic(&topic, 1).await.unwrap();
    let group = random_group("delete");
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), group.clone()), seen.handler()).await.unwrap();
    for n in 0..3 {
        bus.publish(&topic, transaction("acc_1", n), None).await.unwrap();
    }
    seen.wait_for(3).await;
    wait_until(|| async { !bus.group_offsets(&group, &topic).await.unwrap().is_empty() }).await;
    bus.stop().await.unwrap();
    // When the group is deleted, twice
    bus.delete_group(&group).await.unwrap();
    bus.delete_group(&group).await.unwrap();
    // Then it has no committed offsets left
    assert!(bus.group_offsets(&group, &topic).await.unwrap().is_empty());
}

async fn a_group_reports_when_its_consumer_joined(backend: Backend) {
    // Given a bus with no subscription in a group
    let (bus, _dir) = open(backend, auto_create()).await;
    let (topic, group) = (random_topic("joined"), random_group("joined"));
    assert_eq!(bus.joined(&group).await, None, "no subscription: nothing to say");

    // When a subscription of the group is registered on the stopped bus
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), group.clone()), seen.handler()).await.unwrap();
    // Then it has not joined
    assert_eq!(bus.joined(&group).await, Some(false), "not running yet");

    // When the bus starts, then its consumer joins the group, and a record published now is handled
    bus.start().await.unwrap();
    wait_until(|| async { bus.joined(&group).await == Some(true) }).await;
    bus.publish(&topic, transaction("acc_1", 1), None).await.unwrap();
    seen.wait_for(1).await;

    // When the bus stops, then the group is no longer joined
    bus.stop().await.unwrap();
    assert_eq!(bus.joined(&group).await, Some(false));
}

/// A 2-partition topic with six keyed events, consumed to the end by a group, on a stopped bus:
/// the topic, the group, what it saw and the events per partition.
async fn consumed_topic(
    bus: &Arc<dyn EventBus>,
    name: &str,
) -> (eventbus::TopicName, eventbus::GroupId, Collector, [u64; 2]) {
    let topic = random_topic(name);
    bus.create_topic(&topic, 2).await.unwrap();
    let group = random_group(name);
    let seen = Collector::default();
    bus.subscribe(Subscription::new(topic.clone(), group.clone()), seen.handler()).await.unwrap();
    let mut counts = [0u64; 2];
    for n in 0..6 {
        let key = format!("acc_{n}");
        counts[partition_for_key(key.as_bytes(), 2).0 as usize] += 1;
        bus.publish(&topic, transaction(&key, n), Some(&key)).await.unwrap();
    }
    assert!(counts.iter().all(|c| *c > 0), "both partitions hold events: {counts:?}");
    seen.wait_for(6).await;
    wait_until(|| async {
        bus.group_offsets(&group, &topic).await.unwrap().iter().map(|o| o.offset.0).sum::<u64>() == 6
    })
    .await;
    bus.stop().await.unwrap();
    (topic, group, seen, counts)
}

async fn every_group_is_listed_with_its_offsets_and_lag(backend: Backend) {
    // Given a group that consumed a topic to its end, and one that was only reset to its start
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let (topic, consumer, _seen, counts) = consumed_topic(&bus, "listed").await;
    let offline = random_group("offline");
    bus.reset_offsets(&offline, &topic, StartPosition::Earliest).await.unwrap();

    // When the groups of the bus are listed
    let groups = bus.list_groups().await.unwrap();

    // Then both are there, with their committed offset and lag per partition of the topic
    let find = |group: &eventbus::GroupId| groups.iter().find(|g| g.group == *group).cloned();
    let consumed = find(&consumer).expect("the consumer's group is listed");
    let row = consumed.topics.iter().find(|t| t.topic == topic).expect("with its topic");
    let offsets: Vec<(u32, u64, u64)> = row.partitions.iter().map(|p| (p.partition.0, p.offset.0, p.lag)).collect();
    assert_eq!(offsets, vec![(0, counts[0], 0), (1, counts[1], 0)]);
    assert_eq!(row.lag, 0);
    let behind = find(&offline).expect("a group with no consumer is listed too");
    assert_eq!(behind.topics.len(), 1);
    assert_eq!(behind.topics[0].topic, topic);
    assert_eq!(behind.lag, 6);
    let lags: Vec<u64> = behind.topics[0].partitions.iter().map(|p| p.lag).collect();
    assert_eq!(lags, counts.to_vec());
    let ids: Vec<_> = groups.iter().map(|g| g.group.clone()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by id, each once");

    // And a deleted group is no longer listed
    bus.delete_group(&offline).await.unwrap();
    assert!(!bus.list_groups().await.unwrap().iter().any(|g| g.group == offline));
}

async fn a_partition_reset_moves_only_that_partition(backend: Backend) {
    // Given a group that consumed both partitions of a topic to their end
    let (bus, _dir) = running(backend, BusConfig::default()).await;
    let (topic, group, seen, counts) = consumed_topic(&bus, "partreset").await;

    // When partition 0 alone is reset to its start
    let offsets = bus.reset_partition_offset(&group, &topic, Partition(0), StartPosition::Earliest).await.unwrap();

    // Then partition 0 is back at 0 with all its events to read again, and partition 1 is as it was
    let offsets: Vec<(u32, u64, u64)> = offsets.iter().map(|p| (p.partition.0, p.offset.0, p.lag)).collect();
    assert_eq!(offsets, vec![(0, 0, counts[0]), (1, counts[1], 0)]);
    // And a partition the topic does not have is refused
    let missing = bus.reset_partition_offset(&group, &topic, Partition(2), StartPosition::Earliest).await;
    assert!(matches!(missing, Err(BusError::UnknownPartition { partitions: 2, .. })), "{missing:?}");
    // And an offset is clamped to what the partition holds
    let at = bus.reset_partition_offset(&group, &topic, Partition(1), StartPosition::Offset(Offset(1))).await.unwrap();
    assert_eq!((at[1].offset, at[1].lag), (Offset(1), counts[1] - 1));
    bus.reset_partition_offset(&group, &topic, Partition(1), StartPosition::Latest).await.unwrap();

    // When the group consumes again, it reads partition 0 again, and nothing of partition 1
    bus.start().await.unwrap();
    let expected = 6 + counts[0] as usize;
    seen.wait_for(expected).await;
    wait_until(|| async { bus.group_offsets(&group, &topic).await.unwrap().iter().all(|o| o.lag == 0) }).await;
    let messages = seen.messages();
    assert_eq!(messages.len(), expected, "partition 1 is not read again");
    let again: Vec<u32> = messages[6..].iter().map(|m| m.partition.0).collect();
    assert_eq!(again, vec![0; counts[0] as usize]);
}

async fn subscriptions_of_one_group_to_different_topics_each_get_all_of_their_topic(backend: Backend) {
    // Given one group with two subscriptions, one to each of two 3-partition topics, as Kafka
    // allows: each topic is dealt among the members that subscribe to it
    let (bus, _dir) = open(backend, auto_create()).await;
    let (first, second, group) = (random_topic("split-a"), random_topic("split-b"), random_group("split"));
    for topic in [&first, &second] {
        bus.create_topic(topic, 3).await.unwrap();
    }
    let (seen_first, seen_second) = (Collector::default(), Collector::default());
    bus.subscribe(Subscription::new(first.clone(), group.clone()), seen_first.handler()).await.unwrap();
    bus.subscribe(Subscription::new(second.clone(), group.clone()), seen_second.handler()).await.unwrap();
    bus.start().await.unwrap();
    wait_until(|| async { bus.joined(&group).await == Some(true) }).await;

    // When events of twelve keys, over every partition, are published to each topic
    for n in 0..24u64 {
        let key = format!("acc_{}", n % 12);
        for topic in [&first, &second] {
            bus.publish(topic, transaction(&key, n), Some(&key)).await.unwrap();
        }
    }

    // Then each subscription gets every event of its own topic, from every partition, and
    // nothing of the other
    for (seen, topic) in [(&seen_first, &first), (&seen_second, &second)] {
        let messages = seen.wait_for(24).await;
        settle().await;
        assert_eq!(seen.len(), 24, "{topic}");
        assert!(messages.iter().all(|m| m.topic == *topic), "{topic}");
        let partitions: std::collections::BTreeSet<_> = messages.iter().map(|m| m.partition).collect();
        assert_eq!(partitions.len(), 3, "{topic}: {partitions:?}");
    }
    bus.stop().await.unwrap();
}
