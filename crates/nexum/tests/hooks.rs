//! `create_event_enabled_banking_system`: the bank's events reach the bus, in order, keyed by
//! entity, and a bus that is down neither fails the bank nor loses an event.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use eventbus::{BusConfig, EventBus, GroupId, MemoryBus, Subscription, Topic, TopicName};
use nexum::relay::RelayError;
use nexum::store::{EventStore, SqliteStore, SqliteSync};
use nexum::{NexumEventPublisher, PublishError, Relay, RelayConfig, create_event_enabled_banking_system};

async fn started_bus() -> Arc<MemoryBus> {
    let bus = Arc::new(MemoryBus::memory(BusConfig::default()).await.unwrap());
    bus.start().await.unwrap();
    bus
}

#[tokio::test]
async fn every_event_topic_of_the_catalog_is_produced_by_a_banking_operation() {
    let f = bank();
    let bus = started_bus().await;
    let system = create_event_enabled_banking_system(bus.clone(), f.store.clone());

    every_operation(system.bank()).await;
    system.flush().await.unwrap();

    let nexum_event_topics =
        Topic::ALL.iter().filter(|t| t.as_str().starts_with("nexum.") && !t.as_str().starts_with("nexum.commands."));
    for topic in nexum_event_topics {
        assert!(!bus.get_events(Some(&topic.name())).is_empty(), "nothing published to {topic}");
    }
    // The bus holds exactly what the store holds, once each, in the store's order per topic.
    let stored = all_events(&*f.store).await;
    let published = bus.get_events(None);
    assert_eq!(published.len(), stored.len());
    for topic in Topic::ALL {
        let ids = |events: Vec<_>| events;
        let from_store: Vec<_> =
            stored.iter().filter(|e| e.topic == topic.name()).map(|e| e.event.event_id.clone()).collect();
        let from_bus: Vec<_> = bus.get_events(Some(&topic.name())).iter().map(|(_, e)| e.event_id.clone()).collect();
        let mut sorted_bus = ids(from_bus.clone());
        sorted_bus.sort();
        let mut sorted_store = from_store.clone();
        sorted_store.sort();
        assert_eq!(sorted_bus, sorted_store, "{topic}");
    }
    assert_eq!(f.store.outbox_len().await.unwrap(), 0);
    system.shutdown().await;
}

#[tokio::test]
async fn events_are_keyed_by_entity_so_one_entity_keeps_its_order_on_the_bus() {
    let f = bank();
    let bus = started_bus().await;
    let system = create_event_enabled_banking_system(bus.clone(), f.store.clone());
    let bank = system.bank();
    let (customer, account) = funded(bank, "5000.00").await;
    let application = nexum::bank::LoanApplication {
        loan_id: None,
        customer_id: customer.id.clone(),
        account_id: account.id.clone(),
        principal: usd("1000.00"),
        interest_rate: "12".parse().unwrap(),
        term_months: 12,
        payment_frequency: nexum::domain::PaymentFrequency::Monthly,
    };
    let nexum::bank::LoanDecision::Approved { loan_id, .. } = bank.originate_loan(&ctx(), application).await.unwrap()
    else {
        panic!("rejected")
    };
    bank.disburse_loan(&ctx(), &loan_id).await.unwrap();
    for _ in 0..12 {
        bank.pay_loan(&ctx(), &loan_id, usd("50.00")).await.unwrap();
    }
    system.flush().await.unwrap();

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let subscription = Subscription::new(Topic::LoansPayment.name(), GroupId::new("order-check").unwrap());
    bus.subscribe(
        subscription,
        eventbus::handler_fn(move |message| {
            let sink = sink.clone();
            async move {
                let outstanding =
                    message.event.data["outstanding_principal"].as_str().unwrap().parse::<rust_decimal::Decimal>()?;
                sink.lock().unwrap().push((
                    message.key.as_deref().map(str::to_owned),
                    message.event.entity_id.clone(),
                    outstanding,
                ));
                Ok(())
            }
        }),
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while seen.lock().unwrap().len() < 12 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("all 12 payments consumed");

    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(key, entity, _)| key.as_deref() == Some(entity.as_str()) && entity == loan_id.as_str()));
    let outstanding: Vec<_> = seen.iter().map(|(_, _, o)| *o).collect();
    assert!(outstanding.windows(2).all(|w| w[0] > w[1]), "in payment order: {outstanding:?}");
    system.shutdown().await;
}

#[tokio::test]
async fn a_bus_that_is_down_fails_no_banking_operation_and_loses_no_event() {
    let f = bank();
    let bus = Arc::new(MemoryBus::memory(BusConfig::default()).await.unwrap());
    // Given a bus that refuses every publish (it is not started),
    let system = create_event_enabled_banking_system(bus.clone(), f.store.clone());

    // when the bank works,
    let (_, account) = funded(system.bank(), "100.00").await;
    let receipt = system.bank().withdraw(&ctx(), &account.id, usd("40.00"), None, None).await.unwrap();

    // then every operation succeeded and its events wait in the outbox;
    assert!(receipt.is_posted());
    assert!(system.flush().await.is_err());
    let waiting = f.store.outbox_len().await.unwrap();
    assert_eq!(waiting as usize, all_events(&*f.store).await.len());
    assert!(bus.get_events(None).is_empty());

    // and once the bus is back they all go out, once each.
    bus.start().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while f.store.outbox_len().await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the running relay delivers the backlog by itself");
    assert_eq!(bus.get_events(None).len() as u64, waiting);
    system.shutdown().await;
}

#[tokio::test]
async fn the_relay_resumes_after_a_restart_from_what_was_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let bus = Arc::new(MemoryBus::memory(BusConfig::default()).await.unwrap());
    {
        // Given events committed while the bus was down, and the process stopped,
        let store = Arc::new(SqliteStore::open(&path, SqliteSync::Full).unwrap());
        let system = create_event_enabled_banking_system(bus.clone(), store.clone());
        funded(system.bank(), "10.00").await;
        system.shutdown().await;
        assert!(store.outbox_len().await.unwrap() > 0);
    }

    // when the process starts again with the bus up,
    bus.start().await.unwrap();
    let store = Arc::new(SqliteStore::open(&path, SqliteSync::Full).unwrap());
    let system = create_event_enabled_banking_system(bus.clone(), store.clone());
    system.flush().await.unwrap();

    // then everything committed before is published, in commit order.
    let stored: Vec<_> = all_events(&*store).await.into_iter().map(|e| e.event.event_id).collect();
    let mut published: Vec<_> = bus.get_events(None).into_iter().map(|(_, e)| e.event_id.clone()).collect();
    assert_eq!(published.len(), stored.len());
    published.sort();
    let mut expected = stored.clone();
    expected.sort();
    assert_eq!(published, expected);
    system.shutdown().await;
}

#[tokio::test]
async fn of_two_relays_on_one_store_one_publishes_and_the_other_takes_over_once_it_stops_renewing() {
    // Given the relays of two instances over one store, with leases of 300 ms, and events stored
    let f = bank();
    let bus = started_bus().await;
    let config = RelayConfig { lease_ttl: Duration::from_millis(300), ..RelayConfig::default() };
    let a = Relay::new(f.store.clone(), bus.clone(), config, "instance-a");
    let b = Relay::new(f.store.clone(), bus.clone(), config, "instance-b");
    funded(&f.bank, "10.00").await;

    // When both try, one publishes and the other stands by
    assert!(a.pass().await.unwrap() > 0);
    assert!(matches!(b.pass().await, Err(RelayError::Standby)));
    assert!(a.leadership().is_held() && !b.leadership().is_held());

    // When the first stops renewing (its process died) while more is stored
    funded(&f.bank, "20.00").await;
    tokio::time::sleep(Duration::from_millis(450)).await;

    // Then the second takes over and publishes the rest, and the first stands by
    assert!(b.drain().await.unwrap() > 0);
    assert!(matches!(a.pass().await, Err(RelayError::Standby)));
    assert!(b.leadership().is_held() && !a.leadership().is_held());
    let mut stored: Vec<_> = all_events(&*f.store).await.into_iter().map(|e| e.event.event_id).collect();
    let mut published: Vec<_> = bus.get_events(None).into_iter().map(|(_, e)| e.event_id.clone()).collect();
    stored.sort();
    published.sort();
    assert_eq!(published, stored, "every event once");
    assert_eq!(f.store.outbox_len().await.unwrap(), 0);
}

#[tokio::test]
async fn the_publisher_sends_the_seeds_kyc_shape_and_refuses_an_event_that_breaks_its_schema() {
    let f = bank();
    let bus = started_bus().await;
    let publisher = NexumEventPublisher::new(bus.clone());
    let customer = customer(&f.bank, nexum::domain::KycStatus::Verified, nexum::domain::KycTier::Tier2).await;

    let sent = publisher
        .on_customer_kyc_changed(&customer, nexum::domain::KycStatus::Pending, nexum::domain::KycTier::Tier1)
        .await
        .unwrap();
    let bad = nexum::NexumEvent::new("not an id!", nexum::Payload::CustomerCreated(customer.details.clone()));
    let refused = publisher.publish(&bad).await;

    assert_eq!(sent.event_type.as_str(), "kyc_status_changed");
    assert_eq!(
        sent.data.to_value(),
        serde_json::json!({"old_status": "pending", "new_status": "verified", "old_tier": "tier_1", "new_tier": "tier_2"})
    );
    assert_eq!(bus.get_events(Some(&Topic::CustomersKycChanged.name())).len(), 1);
    assert!(matches!(refused, Err(PublishError::Schema(_))), "{refused:?}");
    assert!(bus.get_events(Some(&Topic::CustomersCreated.name())).is_empty(), "an invalid event is never sent");
}

#[tokio::test]
async fn a_consumer_dead_letters_an_event_of_an_unknown_major_version_with_the_reason() {
    let bus = started_bus().await;
    let topic: TopicName = Topic::TransactionsPosted.name();
    let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = handled.clone();
    let subscription = Subscription::new(topic.clone(), GroupId::new("projections").unwrap());
    bus.subscribe(
        subscription,
        nexum::consumer::typed_handler(move |_, _| {
            let count = count.clone();
            async move {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
        }),
    )
    .await
    .unwrap();

    let mut future = eventbus::EventSchema::from_json(br#"{"event_type":"transaction_posted","version":"3.0","entity_type":"transaction","entity_id":"txn_1","data":{"amount":"1.00"}}"#).unwrap();
    future.complete();
    bus.publish(&topic, future, None).await.unwrap();

    let letters = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let letters = bus.get_events(Some(&topic.dlq()));
            if !letters.is_empty() {
                return letters;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("dead-lettered");
    let data = &letters[0].1.data;
    assert_eq!(data["error_kind"], "rejected");
    assert!(data["error"].as_str().unwrap().contains("unknown major version `3.0`"), "{data:?}");
    assert_eq!(data["attempts"], 1);
    assert_eq!(handled.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn every_on_method_of_the_seeds_publisher_sends_its_event_to_its_topic() {
    use nexum::Payload as P;
    use nexum::events::NexumEvent;

    // Given real domain objects and events from a bank that did everything once,
    let f = bank();
    every_operation(&f.bank).await;
    let events: Vec<NexumEvent> =
        all_events(&*f.store).await.iter().map(|r| NexumEvent::from_schema(&r.event).unwrap()).collect();
    let first = |pick: fn(&P) -> bool| events.iter().find(|e| pick(&e.payload)).unwrap().clone();
    let customer_id: nexum::ids::CustomerId = first(|p| matches!(p, P::CustomerCreated(_))).entity_id.parse().unwrap();
    let customer = f.bank.customer(&customer_id).await.unwrap().unwrap();
    let account_id: nexum::ids::AccountId = first(|p| matches!(p, P::AccountCreated(_))).entity_id.parse().unwrap();
    let account = f.bank.account(&account_id).await.unwrap().unwrap();
    let loan_id: nexum::ids::LoanId = first(|p| matches!(p, P::LoanOriginated(_))).entity_id.parse().unwrap();
    let loan = f.bank.loan(&loan_id).await.unwrap().unwrap();
    let bus = started_bus().await;
    let publisher = NexumEventPublisher::new(bus.clone());
    let txn: nexum::ids::TransactionId = "txn_123".parse().unwrap();

    // when each on_* method is called,
    let mut sent = Vec::new();
    for event in &events {
        let id = &event.entity_id;
        let schema = match &event.payload {
            P::TransactionCreated(t) => publisher.on_transaction_created(&id.parse().unwrap(), t).await,
            P::TransactionPosted(t) => publisher.on_transaction_posted(&id.parse().unwrap(), t).await,
            P::TransactionFailed(t) => {
                publisher.on_transaction_failed(&id.parse().unwrap(), t, "Insufficient funds").await
            }
            P::ComplianceAlertRaised(a) => publisher.on_compliance_alert(&id.parse().unwrap(), a).await,
            P::SuspiciousActivityDetected(a) => publisher.on_suspicious_activity(&id.parse().unwrap(), a).await,
            P::CollectionCaseCreated(c) => publisher.on_collection_case_created(&id.parse().unwrap(), c).await,
            P::WorkflowCompleted(w) => publisher.on_workflow_completed(&id.parse().unwrap(), w).await,
            P::AuditEventRecorded(a) => publisher.on_audit_event(&id.parse().unwrap(), a).await,
            _ => continue,
        };
        sent.push(schema.unwrap());
    }
    let mut frozen = account.clone();
    frozen.status = nexum::domain::AccountStatus::Frozen;
    sent.extend([
        publisher.on_account_created(&account).await.unwrap(),
        publisher.on_account_updated(&account, &frozen, nexum::domain::AccountChange::Frozen).await.unwrap(),
        publisher.on_customer_created(&customer).await.unwrap(),
        publisher.on_customer_updated(&customer).await.unwrap(),
        publisher
            .on_customer_kyc_changed(&customer, nexum::domain::KycStatus::Pending, nexum::domain::KycTier::Tier1)
            .await
            .unwrap(),
        publisher.on_loan_originated(&loan).await.unwrap(),
        publisher.on_loan_disbursed(&loan, &txn).await.unwrap(),
        publisher.on_loan_payment(&loan, "100.00".parse().unwrap(), "5.50".parse().unwrap(), &txn).await.unwrap(),
    ]);

    // then each event is on its catalog topic, keyed by its entity.
    let mut kinds: Vec<&str> = sent.iter().map(|e| e.event_type.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), 16, "{kinds:?}");
    for schema in &sent {
        let topic = nexum::events::EventTypeInfo::of(schema.event_type.as_str()).unwrap().topic;
        let on_topic = bus.get_events(Some(&topic.name()));
        assert!(on_topic.iter().any(|(_, e)| e.event_id == schema.event_id), "{} not on {topic}", schema.event_type);
    }
    let failed = sent.iter().find(|e| e.event_type.as_str() == "transaction_failed").unwrap();
    assert_eq!(failed.data["error_message"], "Insufficient funds");
    let payment = sent.iter().find(|e| e.event_type.as_str() == "loan_payment_received").unwrap();
    assert_eq!(payment.data["principal_portion"], "94.50");
}

#[tokio::test]
async fn an_event_too_large_for_the_bus_is_dead_lettered_and_does_not_block_the_outbox() {
    // Given a bus that takes messages of at most 1,500 bytes (a 12-month loan's schedule is more),
    let f = bank();
    let config = BusConfig { max_message_bytes: 1500, ..BusConfig::default() };
    let bus = Arc::new(MemoryBus::memory(config).await.unwrap());
    bus.start().await.unwrap();
    let system = create_event_enabled_banking_system(bus.clone(), f.store.clone());
    let (customer, account) = funded(system.bank(), "100.00").await;

    // when the bank originates a loan and goes on working,
    let application = nexum::bank::LoanApplication {
        loan_id: None,
        customer_id: customer.id.clone(),
        account_id: account.id.clone(),
        principal: usd("1200.00"),
        interest_rate: "6".parse().unwrap(),
        term_months: 12,
        payment_frequency: nexum::domain::PaymentFrequency::Monthly,
    };
    system.bank().originate_loan(&ctx(), application).await.unwrap();
    system.bank().deposit(&ctx(), &account.id, usd("1.00"), None, None).await.unwrap();
    system.flush().await.unwrap();

    // then the loan_originated event is dead-lettered with the reason, and everything after it
    // is published.
    assert_eq!(f.store.outbox_len().await.unwrap(), 0);
    let letters = bus.get_events(Some(&Topic::LoansOriginated.dlq()));
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1.data["original_event_type"], "loan_originated");
    assert_eq!(letters[0].1.data["error_kind"], "oversized");
    assert!(bus.get_events(Some(&Topic::LoansOriginated.name())).is_empty());
    // At least once: what went out before the refused batch may go out again.
    let mut posted: Vec<_> =
        bus.get_events(Some(&Topic::TransactionsPosted.name())).iter().map(|(_, e)| e.event_id.clone()).collect();
    posted.sort();
    posted.dedup();
    assert_eq!(posted.len(), 2);
    system.shutdown().await;
}
