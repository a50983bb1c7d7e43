//! Core banking end to end over a real bus, embedded and Kafka: commands go in on the command
//! topics, their events come out, the projections follow, the loan saga runs, and replaying
//! everything reproduces the same projections.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::{
    BusConfig, EmbeddedBus, EmbeddedConfig, EventBus, EventSchema, GroupId, KafkaBus, KafkaConfig, StartPosition,
    Subscription, Topic, handler_fn,
};
use nexum::clock::SystemClock;
use nexum::ids::{AccountId, CustomerId, LoanId};
use nexum::projections::Projections;
use nexum::sagas::{LoanApplicationSaga, LoanOffer};
use nexum::service::{CoreBanking, ServiceConfig};
use nexum::store::{EventStore, SqliteStore, SqliteSync};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// How long any one wait may take: Kafka's first consumer-group join takes a few seconds.
const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` every 50 ms until it is true, at most `PATIENCE`.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = std::time::Instant::now();
    while started.elapsed() < PATIENCE {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn command(event_type: &str, entity_id: &str, data: Value) -> EventSchema {
    let Value::Object(data) = data else { panic!("data is an object") };
    EventSchema::new(event_type, event_type.trim_end_matches("_command"), entity_id, data)
}

/// Every event published to the outcome topics, collected from the beginning by its own group.
async fn collect_outcomes(bus: &dyn EventBus) -> Arc<Mutex<Vec<EventSchema>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let group = GroupId::new(format!("e2e-outcomes-{}", uuid::Uuid::new_v4().simple())).unwrap();
    let subscription = Subscription::new(Topic::TransactionsPosted.name(), group)
        .and_topic(Topic::CommandsRejected.name())
        .from(StartPosition::Earliest);
    bus.subscribe(
        subscription,
        handler_fn(move |message: eventbus::Message| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push((*message.event).clone());
                Ok(())
            }
        }),
    )
    .await
    .unwrap();
    seen
}

fn caused_by(seen: &Mutex<Vec<EventSchema>>, command: &EventSchema) -> Vec<EventSchema> {
    let id = command.event_id.as_ref().unwrap().to_string();
    seen.lock()
        .unwrap()
        .iter()
        .filter(|e| e.metadata.get("causation_id").and_then(Value::as_str) == Some(id.as_str()))
        .cloned()
        .collect()
}

/// The scenario, on whichever bus: returns once everything was checked.
async fn commands_flow_through_the_bus_into_the_projections(bus: Arc<dyn EventBus>, store: Arc<dyn EventStore>) {
    // Given core banking serving on the bus, with the loan offer on
    let config = ServiceConfig { loan_offer: Some(LoanOffer::default()), ..Default::default() };
    let service = CoreBanking::start(bus.clone(), store.clone(), Arc::new(SystemClock), config).await.unwrap();
    let outcomes = collect_outcomes(&*bus).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (customer, account) = (CustomerId::derived(&run), AccountId::derived(&run));
    let send = |topic: Topic, command: EventSchema| {
        let bus = bus.clone();
        async move { bus.publish(&topic.name(), command, None).await.unwrap() }
    };

    // When a customer, an account and two transactions are commanded, and a malformed command too
    let create = command(
        "customer_command",
        customer.as_str(),
        json!({"action": "create", "customer_id": customer, "first_name": "Ada", "last_name": "Lovelace",
               "email": "ada@example.com"}),
    );
    send(Topic::CommandsCustomers, create).await;
    let open = command(
        "customer_command",
        customer.as_str(),
        json!({"action": "open_account", "customer_id": customer, "account_type": "checking", "currency": "USD",
               "account_id": account}),
    );
    send(Topic::CommandsCustomers, open).await;
    let projections = service.projections().clone();
    eventually("the account is projected", async || projections.account(&account).is_some()).await;
    let deposit = command(
        "transaction_command",
        account.as_str(),
        json!({"action": "deposit", "account_id": account, "amount": "250.00", "currency": "USD"}),
    );
    let withdraw = command(
        "transaction_command",
        account.as_str(),
        json!({"action": "withdraw", "account_id": account, "amount": "50.00", "currency": "USD"}),
    );
    let malformed = command("transaction_command", account.as_str(), json!({"action": "deposit", "amount": 5}));
    for c in [&deposit, &withdraw, &malformed] {
        send(Topic::CommandsTransactions, c.clone()).await;
    }

    // Then each command's outcome comes out on the bus, naming it as its cause
    eventually("the outcomes are published", async || {
        [&deposit, &withdraw, &malformed].iter().all(|c| !caused_by(&outcomes, c).is_empty())
    })
    .await;
    assert_eq!(caused_by(&outcomes, &deposit)[0].data["final_balance"], "250.00");
    assert_eq!(caused_by(&outcomes, &malformed)[0].data["error_code"], "malformed");
    // and the projection shows the balance
    let balance = |amount: &str| {
        let (projections, account, amount) = (projections.clone(), account.clone(), amount.parse::<Decimal>().unwrap());
        async move || projections.account(&account).is_some_and(|a| a.balance == amount)
    };
    eventually("the projected balance is 200.00", balance("200.00")).await;

    // When the customer's KYC is verified, the loan saga offers, originates and pays out a loan
    let kyc = command(
        "customer_command",
        customer.as_str(),
        json!({"action": "kyc", "customer_id": customer, "kyc_status": "verified", "kyc_tier": "tier_2"}),
    );
    send(Topic::CommandsCustomers, kyc).await;
    eventually("the loan is paid out into the account", balance("1200.00")).await;
    let loan = LoanId::derived(LoanApplicationSaga::id_for(&customer).as_str());
    eventually("the loan book shows the loan", async || {
        projections.loan(&loan).is_some_and(|l| l.outstanding_principal == Some("1000.00".parse().unwrap()))
    })
    .await;
    let directory = projections.customer(&customer).unwrap();
    assert!(directory.account_ids.contains(&account));

    // And replaying everything, from the store or from the bus, reproduces the projections
    eventually("a rebuild from the store equals the live projections", async || {
        Projections::rebuild(&*store).await.unwrap().snapshot() == projections.snapshot()
    })
    .await;
    let replayed = Arc::new(Projections::new());
    let group = GroupId::new(format!("e2e-replay-{run}")).unwrap();
    let mut topics = Projections::topics().into_iter();
    let subscription = topics
        .by_ref()
        .next()
        .map(|first| Subscription::new(first, group))
        .map(|s| topics.fold(s, Subscription::and_topic))
        .unwrap()
        .from(StartPosition::Earliest);
    bus.subscribe(subscription, replayed.handler()).await.unwrap();
    eventually("a replay from the bus equals the live projections", async || {
        let (live, again) = (projections.snapshot(), replayed.snapshot());
        // On a shared broker the bus holds other runs' events too: compare this run's entities.
        again.accounts.get(&account) == live.accounts.get(&account)
            && again.customers.get(&customer) == live.customers.get(&customer)
            && again.loans.get(&loan) == live.loans.get(&loan)
    })
    .await;

    let waiting = service.shutdown().await.unwrap();
    assert_eq!(waiting, 0, "everything committed was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_backend() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::embedded(BusConfig::default(), EmbeddedConfig::at(dir.path().join("bus"))).await.unwrap();
    bus.start().await.unwrap();
    let store = SqliteStore::open(&dir.path().join("bank.db"), SqliteSync::Normal).unwrap();
    commands_flow_through_the_bus_into_the_projections(Arc::new(bus), Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka() {
    let brokers = std::env::var("EVENTBUS_KAFKA_BROKERS").expect(
        "the Kafka tests need a broker: run `bash scripts/test.sh` (it starts tansu), or set EVENTBUS_KAFKA_BROKERS",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut kafka = KafkaConfig::at(brokers);
    kafka.outbox_dir = Some(dir.path().join("outbox"));
    let bus = KafkaBus::connect(kafka, BusConfig::default()).await.unwrap();
    bus.start().await.unwrap();
    let store = SqliteStore::open(&dir.path().join("bank.db"), SqliteSync::Normal).unwrap();
    commands_flow_through_the_bus_into_the_projections(Arc::new(bus), Arc::new(store)).await;
}
