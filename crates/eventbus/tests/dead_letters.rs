//! Sequenced dead letters, redrive, discard and retry stages, on every backend.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Backend, Collector, fast_retry, open, random_group, random_topic, settle, transaction, wait_until};
use eventbus::dlq::{self, Action, Actor, Book, Filter, LetterState, Outcome, StateFilter};
use eventbus::{BusConfig, EventBus, GroupId, Handler, HandlerError, Message, Subscription, TopicName, handler_fn};

conformance!(
    a_failed_record_parks_its_key_and_a_redrive_releases_it_in_order,
    discarding_the_head_releases_the_parked_records,
    retry_stages_wait_durably_and_only_then_dead_letter,
    a_record_that_succeeds_in_a_retry_stage_is_resolved_and_frees_its_key,
    without_sequencing_a_letter_is_redriven_alone_and_the_key_goes_on,
    bad_requests_are_refused_with_a_reason,
);

fn operator() -> Actor {
    Actor { who: "tester (operator)".into(), address: "127.0.0.1".into() }
}

async fn running(backend: Backend) -> (Arc<dyn EventBus>, Option<tempfile::TempDir>) {
    common::init_tracing();
    let (bus, dir) = open(backend, BusConfig::default()).await;
    bus.start().await.unwrap();
    (bus, dir)
}

/// A handler that records what it handles and fails on the events whose `seq` is broken, while
/// the switch is on.
#[derive(Clone)]
struct Flaky {
    seen: Collector,
    broken: Arc<std::sync::Mutex<Vec<u64>>>,
    calls: Arc<AtomicU32>,
}

impl Flaky {
    fn failing_on(seqs: &[u64]) -> Self {
        Self {
            seen: Collector::default(),
            broken: Arc::new(std::sync::Mutex::new(seqs.to_vec())),
            calls: Arc::default(),
        }
    }

    fn fix(&self) {
        self.broken.lock().unwrap().clear();
    }

    fn handler(&self) -> Arc<dyn Handler> {
        let this = self.clone();
        handler_fn(move |message: Message| {
            let this = this.clone();
            async move {
                let seq = message.event.data["seq"].as_u64().unwrap();
                this.calls.fetch_add(1, Ordering::SeqCst);
                if this.broken.lock().unwrap().contains(&seq) {
                    return Err(HandlerError::msg("core banking is down"));
                }
                this.seen.handler().handle(message).await
            }
        })
    }

    /// The `seq` of each event handled for `account`, in order.
    fn seqs(&self, account: &str) -> Vec<u64> {
        self.seen
            .messages()
            .iter()
            .filter(|m| m.event.entity_id == account)
            .map(|m| m.event.data["seq"].as_u64().unwrap())
            .collect()
    }
}

/// A running bus with a one-partition topic and a subscription to it whose handler fails on the
/// events of `failing` (by `seq`), retried fast, shaped by `shape` (sequenced, with stages).
struct Given {
    bus: Arc<dyn EventBus>,
    _dir: Option<tempfile::TempDir>,
    topic: TopicName,
    group: GroupId,
    flaky: Flaky,
}

async fn given(backend: Backend, failing: &[u64], shape: impl FnOnce(Subscription) -> Subscription) -> Given {
    let (bus, _dir) = running(backend).await;
    let topic = random_topic("work");
    bus.create_topic(&topic, 1).await.unwrap();
    let group = random_group("bank");
    let flaky = Flaky::failing_on(failing);
    let subscription = shape(Subscription::new(topic.clone(), group.clone()).with_retry(fast_retry()));
    bus.subscribe(subscription, flaky.handler()).await.unwrap();
    Given { bus, _dir, topic, group, flaky }
}

async fn book(bus: &dyn EventBus, topic: &TopicName) -> Book {
    dlq::load(bus, Some(topic)).await.unwrap()
}

/// Waits until the letters of `topic` in `group` reach `states` (by name), in order.
async fn wait_for_states(bus: &dyn EventBus, topic: &TopicName, group: &GroupId, states: &[&str]) -> Book {
    let filter = Filter { group: Some(group.clone()), state: StateFilter::All, ..Filter::default() };
    wait_until(|| async {
        let book = book(bus, topic).await;
        let now: Vec<&str> = book.letters().filter(|l| filter.matches(l)).map(|l| l.state.name()).collect();
        now == states
    })
    .await;
    book(bus, topic).await
}

fn ids(book: &Book, state: &str) -> Vec<String> {
    book.letters().filter(|l| l.state.name() == state).map(|l| l.id.clone()).collect()
}

async fn a_failed_record_parks_its_key_and_a_redrive_releases_it_in_order(backend: Backend) {
    // Given a sequenced subscription whose handler fails on acc_1's second event
    let Given { bus, _dir, topic, group, flaky } = given(backend, &[1], Subscription::sequenced).await;

    // When acc_1's events 0..5 and acc_2's 10..13 are published interleaved
    for n in 0..5 {
        bus.publish(&topic, transaction("acc_1", n), None).await.unwrap();
        if n < 3 {
            bus.publish(&topic, transaction("acc_2", 10 + n), None).await.unwrap();
        }
    }

    // Then acc_2 goes on, acc_1 stops at its failed event, and its later events are parked
    // behind it, in order
    let book = wait_for_states(&*bus, &topic, &group, &["failed", "parked", "parked", "parked"]).await;
    wait_until(|| async { flaky.seqs("acc_2").len() == 3 }).await;
    assert_eq!(flaky.seqs("acc_1"), [0]);
    let letters: Vec<_> = book.letters().collect();
    assert_eq!(letters[0].error, "core banking is down");
    assert_eq!(letters[0].error_kind, "handler_failed");
    let head = letters[0].id.clone();
    for parked in &letters[1..] {
        assert_eq!(parked.state, LetterState::Parked { behind: head.clone() });
        assert_eq!(parked.key.as_deref(), Some("acc_1"));
    }
    let offsets: Vec<u64> = letters.iter().map(|l| l.place.as_ref().unwrap().offset.0).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "parked in offset order: {offsets:?}");
    // And a redrive of a parked record is refused: it follows its head
    let acted = dlq::request(&*bus, &book, &[letters[1].id.clone()], Action::Redrive, &operator()).await.unwrap();
    assert!(!acted[0].requested && acted[0].reason.as_deref().unwrap().contains("parked behind"), "{acted:?}");

    // When the cause is fixed and the head is redriven
    flaky.fix();
    let acted = dlq::request(&*bus, &book, std::slice::from_ref(&head), Action::Redrive, &operator()).await.unwrap();
    assert!(acted[0].requested, "{acted:?}");

    // Then acc_1's events are handled in order, the head with its event id and redrive count
    wait_until(|| async { flaky.seqs("acc_1").len() == 5 }).await;
    assert_eq!(flaky.seqs("acc_1"), [0, 1, 2, 3, 4]);
    let redriven = flaky.seen.messages().into_iter().find(|m| m.event.data["seq"] == 1).unwrap();
    assert_eq!(redriven.event.metadata["redrive_count"], 1);
    assert_eq!(redriven.offset.0, letters[0].place.as_ref().unwrap().offset.0);
    assert_eq!(redriven.event.event_id.as_ref().map(ToString::to_string), letters[0].event_id);
    // And every letter is resolved, with the operator's request in the head's history
    let book = wait_for_states(&*bus, &topic, &group, &["resolved"; 4]).await;
    let head = book.get(&head).unwrap();
    assert_eq!(head.state, LetterState::Resolved { outcome: Outcome::Redriven });
    assert_eq!(head.redrive_count, 1);
    let request = head.history.iter().find(|h| h.event == "dead_letter_redrive_requested").unwrap();
    assert_eq!(request.actor.as_deref(), Some("tester (operator)"));
    assert_eq!(request.address.as_deref(), Some("127.0.0.1"));
    // And acc_1 is free again: its next event is handled at once
    bus.publish(&topic, transaction("acc_1", 5), None).await.unwrap();
    wait_until(|| async { flaky.seqs("acc_1").len() == 6 }).await;
    settle().await;
    assert_eq!(flaky.seqs("acc_1"), [0, 1, 2, 3, 4, 5], "each once");
}

async fn discarding_the_head_releases_the_parked_records(backend: Backend) {
    // Given acc_1 parked behind its failed event 0, with 1 and 2 parked
    let Given { bus, _dir, topic, group, flaky } = given(backend, &[0], Subscription::sequenced).await;
    for n in 0..3 {
        bus.publish(&topic, transaction("acc_1", n), None).await.unwrap();
    }
    let book = wait_for_states(&*bus, &topic, &group, &["failed", "parked", "parked"]).await;

    // When the operator discards the head
    let head = ids(&book, "failed");
    dlq::request(&*bus, &book, &head, Action::Discard, &operator()).await.unwrap();

    // Then the parked events are handled in order, and the head never is
    wait_until(|| async { flaky.seqs("acc_1").len() == 2 }).await;
    assert_eq!(flaky.seqs("acc_1"), [1, 2]);
    let book = wait_for_states(&*bus, &topic, &group, &["resolved"; 3]).await;
    assert_eq!(book.get(&head[0]).unwrap().state, LetterState::Resolved { outcome: Outcome::Discarded });
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3 + 2, "three attempts at the head, one call for each parked");
}

async fn retry_stages_wait_durably_and_only_then_dead_letter(backend: Backend) {
    // Given a sequenced subscription with two short retry stages, and a handler that always
    // fails on acc_1's event 0
    let stages = vec![Duration::from_millis(300), Duration::from_millis(600)];
    let staged = |subscription: Subscription| subscription.sequenced().with_retry_stages(stages);
    let Given { bus, _dir, topic, group, flaky } = given(backend, &[0], staged).await;

    // When it and a later event of the key are published
    bus.publish(&topic, transaction("acc_1", 0), None).await.unwrap();
    bus.publish(&topic, transaction("acc_1", 1), None).await.unwrap();

    // Then event 0 waits in a stage with its key parked, not yet dead-lettered (stage 1 lasts
    // 300 ms: a slow look may find it in stage 2 already)
    let book = wait_for_states(&*bus, &topic, &group, &["retrying", "parked"]).await;
    let letter = book.letters().next().unwrap();
    assert!(matches!(letter.state, LetterState::Retrying { stage: 1 | 2, .. }), "{:?}", letter.state);
    // And after both stages it is dead-lettered, having been tried 3 times in each round
    let book = wait_for_states(&*bus, &topic, &group, &["failed", "parked"]).await;
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 9);
    assert_eq!(book.letters().next().unwrap().error_kind, "handler_failed");
    assert!(flaky.seqs("acc_1").is_empty(), "event 1 never overtook event 0");
}

async fn a_record_that_succeeds_in_a_retry_stage_is_resolved_and_frees_its_key(backend: Backend) {
    // Given a handler that fails on acc_1's event 0 until the cause is fixed, and one stage
    let staged =
        |subscription: Subscription| subscription.sequenced().with_retry_stages(vec![Duration::from_millis(800)]);
    let Given { bus, _dir, topic, group, flaky } = given(backend, &[0], staged).await;
    bus.publish(&topic, transaction("acc_1", 0), None).await.unwrap();
    bus.publish(&topic, transaction("acc_1", 1), None).await.unwrap();
    wait_for_states(&*bus, &topic, &group, &["retrying", "parked"]).await;

    // When the cause is fixed before the stage is due
    flaky.fix();

    // Then the stage's retry handles it, the parked event follows, and both are resolved
    wait_until(|| async { flaky.seqs("acc_1").len() == 2 }).await;
    assert_eq!(flaky.seqs("acc_1"), [0, 1]);
    let book = wait_for_states(&*bus, &topic, &group, &["resolved", "resolved"]).await;
    let outcomes: Vec<_> = book.letters().map(|l| l.state.clone()).collect();
    assert_eq!(
        outcomes,
        [LetterState::Resolved { outcome: Outcome::Retried }, LetterState::Resolved { outcome: Outcome::Released }]
    );
}

async fn without_sequencing_a_letter_is_redriven_alone_and_the_key_goes_on(backend: Backend) {
    // Given a subscription that is not sequenced, failing on acc_1's event 0
    let Given { bus, _dir, topic, group, flaky } = given(backend, &[0], |subscription| subscription).await;
    bus.publish(&topic, transaction("acc_1", 0), None).await.unwrap();
    bus.publish(&topic, transaction("acc_1", 1), None).await.unwrap();

    // Then the key goes on past the failed event
    wait_until(|| async { flaky.seqs("acc_1") == [1] }).await;
    let book = wait_for_states(&*bus, &topic, &group, &["failed"]).await;

    // When it is redriven after the fix, it is handled, once, and resolved
    flaky.fix();
    dlq::request(&*bus, &book, &ids(&book, "failed"), Action::Redrive, &operator()).await.unwrap();
    wait_until(|| async { flaky.seqs("acc_1") == [1, 0] }).await;
    wait_for_states(&*bus, &topic, &group, &["resolved"]).await;
    settle().await;
    assert_eq!(flaky.seqs("acc_1"), [1, 0]);
}

async fn bad_requests_are_refused_with_a_reason(backend: Backend) {
    // Given a resolved letter
    let Given { bus, _dir, topic, group, flaky: _ } = given(backend, &[0], |subscription| subscription).await;
    bus.publish(&topic, transaction("acc_1", 0), None).await.unwrap();
    let book = wait_for_states(&*bus, &topic, &group, &["failed"]).await;
    let id = ids(&book, "failed");
    dlq::request(&*bus, &book, &id, Action::Discard, &operator()).await.unwrap();
    let book = wait_for_states(&*bus, &topic, &group, &["resolved"]).await;

    // When it is redriven, or an unknown letter is, or none
    let again = dlq::request(&*bus, &book, &id, Action::Redrive, &operator()).await.unwrap();
    let unknown = dlq::request(&*bus, &book, &["no-such-letter".into()], Action::Redrive, &operator()).await;
    let none = dlq::request(&*bus, &book, &[], Action::Discard, &operator()).await;

    // Then each is refused with the reason, and nothing is written
    assert!(!again[0].requested && again[0].reason.as_deref().unwrap().contains("already resolved"));
    assert!(matches!(unknown, Err(dlq::DlqError::UnknownLetter(ref id)) if id == "no-such-letter"));
    assert!(none.unwrap_err().to_string().contains("nothing to discard"));
    // And filters that do not parse say why
    assert!(Filter::parse_time("yesterday").unwrap_err().to_string().contains("RFC 3339"));
    assert!("stuck".parse::<StateFilter>().unwrap_err().to_string().contains("unknown state `stuck`"));
}

/// A durable bus over `dir`: embedded, or Kafka with its outbox there.
async fn durable(kafka: bool, dir: &std::path::Path) -> Arc<dyn EventBus> {
    #[cfg(feature = "kafka")]
    if kafka {
        let config = eventbus::KafkaConfig { outbox_dir: Some(dir.join("outbox")), ..common::kafka_config() };
        return Arc::new(eventbus::KafkaBus::connect(config, BusConfig::default()).await.unwrap());
    }
    assert!(!kafka, "built without the kafka feature");
    Arc::new(eventbus::EmbeddedBus::embedded(BusConfig::default(), eventbus::EmbeddedConfig::at(dir)).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_restart_keeps_a_parked_key_parked_and_handles_each_record_once() {
    a_restart_keeps_a_parked_key_parked_and_handles_each_record_once(false).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_a_restart_keeps_a_parked_key_parked_and_handles_each_record_once() {
    a_restart_keeps_a_parked_key_parked_and_handles_each_record_once(true).await;
}

async fn a_restart_keeps_a_parked_key_parked_and_handles_each_record_once(kafka: bool) {
    // Given a durable bus where acc_1 is parked behind its failed event 0, with 1 and 2 parked
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let topic = random_topic("restart");
    let group = random_group("bank");
    let subscription = Subscription::new(topic.clone(), group.clone()).with_retry(fast_retry()).sequenced();
    {
        let bus = durable(kafka, dir.path()).await;
        bus.start().await.unwrap();
        bus.create_topic(&topic, 1).await.unwrap();
        let flaky = Flaky::failing_on(&[0]);
        bus.subscribe(subscription.clone(), flaky.handler()).await.unwrap();
        for n in 0..3 {
            bus.publish(&topic, transaction("acc_1", n), None).await.unwrap();
        }
        wait_for_states(&*bus, &topic, &group, &["failed", "parked", "parked"]).await;
        bus.stop().await.unwrap();
    }

    // When the service starts again with the cause fixed, and acc_1 gets a new event
    let bus = durable(kafka, dir.path()).await;
    bus.start().await.unwrap();
    let flaky = Flaky::failing_on(&[]);
    bus.subscribe(subscription, flaky.handler()).await.unwrap();
    bus.publish(&topic, transaction("acc_1", 3), None).await.unwrap();

    // Then the key is still parked: the new event waits behind the others
    let book = wait_for_states(&*bus, &topic, &group, &["failed", "parked", "parked", "parked"]).await;
    assert!(flaky.seqs("acc_1").is_empty());

    // And after a redrive of the head, every event is handled once, in order
    dlq::request(&*bus, &book, &ids(&book, "failed"), Action::Redrive, &operator()).await.unwrap();
    wait_until(|| async { flaky.seqs("acc_1").len() == 4 }).await;
    settle().await;
    assert_eq!(flaky.seqs("acc_1"), [0, 1, 2, 3]);
    wait_for_states(&*bus, &topic, &group, &["resolved"; 4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_takes_over_a_partition_keeps_its_parked_key_parked() {
    // Given two instances of a service on one data directory, each with the same sequenced
    // subscription, and acc_1 parked behind its failed event 0 on the instance that holds the
    // topic's one partition
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let config =
        eventbus::EmbeddedConfig { lease_ttl: Duration::from_millis(900), ..eventbus::EmbeddedConfig::at(dir.path()) };
    let topic = random_topic("takeover");
    let group = random_group("bank");
    let subscription = Subscription::new(topic.clone(), group.clone()).with_retry(fast_retry()).sequenced();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let bus: Arc<dyn EventBus> =
            Arc::new(eventbus::EmbeddedBus::embedded(BusConfig::default(), config.clone()).await.unwrap());
        bus.start().await.unwrap();
        if instances.is_empty() {
            bus.create_topic(&topic, 1).await.unwrap();
        }
        let flaky = Flaky::failing_on(&[0]);
        bus.subscribe(subscription.clone(), flaky.handler()).await.unwrap();
        instances.push((bus, flaky));
    }
    for n in 0..3 {
        instances[0].0.publish(&topic, transaction("acc_1", n), None).await.unwrap();
    }
    wait_for_states(&*instances[0].0, &topic, &group, &["failed", "parked", "parked"]).await;
    let holder = instances.iter().position(|(_, flaky)| flaky.calls.load(Ordering::SeqCst) > 0).unwrap();
    let (stopped, _) = instances.remove(holder);
    let (survivor, flaky) = instances.pop().unwrap();

    // When the holder stops, and acc_1 and acc_2 each get an event
    stopped.stop().await.unwrap();
    survivor.publish(&topic, transaction("acc_1", 3), None).await.unwrap();
    survivor.publish(&topic, transaction("acc_2", 10), None).await.unwrap();

    // Then the survivor takes the partition over: acc_2 is handled, and acc_1's new event is
    // parked behind the others, not handled ahead of them
    wait_until(|| async { flaky.seqs("acc_2") == [10] }).await;
    let book = wait_for_states(&*survivor, &topic, &group, &["failed", "parked", "parked", "parked"]).await;
    assert!(flaky.seqs("acc_1").is_empty(), "{:?}", flaky.seqs("acc_1"));

    // And after the cause is fixed and the head redriven, the survivor handles acc_1's events
    // once each, in order
    flaky.fix();
    dlq::request(&*survivor, &book, &ids(&book, "failed"), Action::Redrive, &operator()).await.unwrap();
    wait_until(|| async { flaky.seqs("acc_1").len() == 4 }).await;
    settle().await;
    assert_eq!(flaky.seqs("acc_1"), [0, 1, 2, 3]);
    wait_for_states(&*survivor, &topic, &group, &["resolved"; 4]).await;
    survivor.stop().await.unwrap();
}
