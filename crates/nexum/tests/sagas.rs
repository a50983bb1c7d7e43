//! The sagas drive the bank through commands on the bus: a verified customer gets a loan (or a
//! compensated failure), and a missed installment opens a case that escalates with time and is
//! resolved by a payment. Time is a manual clock, shared by the sagas and the command handler.

mod common;

use std::sync::Arc;

use common::service::*;
use common::*;
use eventbus::{EventSchema, Topic};
use nexum::bank::{LoanApplication, LoanDecision};
use nexum::domain::{AccountStatus, KycStatus, KycTier, LoanStatus, PaymentFrequency};
use nexum::events::Payload;
use nexum::ids::{CustomerId, LoanId, WorkflowId};
use nexum::sagas::{CollectionsConfig, CollectionsSaga, LoanApplicationSaga, LoanOffer};
use nexum::store::EventStore;
use nexum::{Ctx, NexumEvent};
use serde_json::Value;

fn correlated_with<'a>(id: &'a WorkflowId) -> impl Fn(&EventSchema) -> bool + 'a {
    move |event| event.metadata.get("correlation_id").and_then(Value::as_str) == Some(id.as_str())
}

/// The saga's own workflow events (the bank's approval workflow shares its correlation id).
fn of_saga<'a>(id: &'a WorkflowId) -> impl Fn(&EventSchema) -> bool + 'a {
    move |event| {
        correlated_with(id)(event)
            && event.data.get("workflow_type").and_then(Value::as_str) == Some("loan_application")
    }
}

fn loan_saga(s: &Service) -> Arc<LoanApplicationSaga> {
    let bus: Arc<dyn eventbus::EventBus> = s.bus.clone();
    LoanApplicationSaga::new(s.system.bank().clone(), bus, Arc::new(s.clock.clone()), LoanOffer::default())
}

/// The workflow steps the saga recorded, by name.
async fn steps(s: &Service, id: &WorkflowId) -> Vec<String> {
    let (events, _) = s.system.bank().workflow_history(id).await.unwrap();
    events
        .iter()
        .map(|e| match &e.payload {
            Payload::WorkflowStepCompleted(step) => step.step.clone(),
            Payload::WorkflowCompleted(_) => "completed".into(),
            Payload::WorkflowRejected(rejected) => format!("rejected at {}: {}", rejected.step, rejected.reason),
            other => panic!("not a workflow event: {other:?}"),
        })
        .collect()
}

/// Feeds the saga the first event of `topic` that `matches`, as the bus would.
async fn feed(s: &Service, saga: &LoanApplicationSaga, topic: Topic, matches: impl Fn(&EventSchema) -> bool) {
    let event = first(&s.bus, topic, matches).await;
    saga.handle(&NexumEvent::from_schema(&event).unwrap(), &event).await.unwrap();
}

#[tokio::test]
async fn a_verified_customer_is_offered_a_loan_that_is_originated_and_disbursed() {
    // Given the saga on the bus, and a customer with a checking account
    let s = service().await;
    loan_saga(&s).start().await.unwrap();
    let bank = s.system.bank();
    let customer = customer(bank, KycStatus::Pending, KycTier::Tier1).await;
    let checking = account(bank, &customer, nexum::domain::AccountType::Checking, None).await;

    // When the customer's KYC is verified
    bank.change_kyc(&ctx(), &customer.id, KycStatus::Verified, KycTier::Tier2).await.unwrap();

    // Then the saga completes: the loan was originated and paid into the account
    let id = LoanApplicationSaga::id_for(&customer.id);
    first(&s.bus, Topic::WorkflowsCompleted, of_saga(&id)).await;
    assert_eq!(steps(&s, &id).await, ["pre_approval_requested", "loan_originated", "completed"]);
    let loan = bank.loan(&LoanId::derived(id.as_str())).await.unwrap().unwrap();
    assert_eq!(loan.status, LoanStatus::Active);
    assert_eq!(bank.account(&checking.id).await.unwrap().unwrap().balance, "1000.00".parse().unwrap());
}

#[tokio::test]
async fn every_step_is_idempotent_so_redelivered_events_change_nothing() {
    // Given a verified customer, and the saga fed each event by hand, twice
    let s = service().await;
    let saga = loan_saga(&s);
    let bank = s.system.bank();
    let (customer, checking) = funded(bank, "0").await;
    let id = LoanApplicationSaga::id_for(&customer.id);
    s.system.flush().await.unwrap();
    let verified = |e: &EventSchema| e.entity_id == customer.id.as_str();

    // When every event reaches it twice
    for _ in 0..2 {
        feed(&s, &saga, Topic::CustomersKycChanged, verified).await;
    }
    for _ in 0..2 {
        feed(&s, &saga, Topic::LoansOriginated, correlated_with(&id)).await;
    }
    for _ in 0..2 {
        feed(&s, &saga, Topic::LoansDisbursed, correlated_with(&id)).await;
    }
    let version = bank.workflow_history(&id).await.unwrap().1;
    feed(&s, &saga, Topic::CustomersKycChanged, verified).await;

    // Then each step was recorded once, and the money was paid out once
    assert_eq!(steps(&s, &id).await, ["pre_approval_requested", "loan_originated", "completed"]);
    assert_eq!(bank.workflow_history(&id).await.unwrap().1, version);
    s.system.flush().await.unwrap();
    assert_eq!(bank.account(&checking.id).await.unwrap().unwrap().balance, "1000.00".parse().unwrap());
    let stored = s.store.read_all(1, 100_000).await.unwrap();
    let count = |t: &str| stored.iter().filter(|e| e.event.event_type.as_str() == t).count();
    assert_eq!((count("loan_originated"), count("loan_disbursed")), (1, 1));
}

#[tokio::test]
async fn a_disbursement_into_a_frozen_account_is_compensated_by_cancelling_the_loan() {
    // Given a customer's loan application, originated, and the saga not listening on the bus
    let s = service().await;
    let bank = s.system.bank();
    let (customer, checking) = funded(bank, "0").await;
    let saga = loan_saga(&s);
    let id = LoanApplicationSaga::id_for(&customer.id);
    let loan_id = LoanId::derived(id.as_str());
    s.system.flush().await.unwrap();
    feed(&s, &saga, Topic::CustomersKycChanged, |e| e.entity_id == customer.id.as_str()).await;
    let originated = first(&s.bus, Topic::LoansOriginated, correlated_with(&id)).await;
    // Freeze the account before the saga hears of the origination and asks to disburse.
    bank.freeze_account(&ctx(), &checking.id).await.unwrap();

    // When the saga goes on: the disbursement fails, and the saga compensates
    saga.handle(&NexumEvent::from_schema(&originated).unwrap(), &originated).await.unwrap();
    feed(&s, &saga, Topic::TransactionsFailed, correlated_with(&id)).await;
    feed(&s, &saga, Topic::LoansCancelled, correlated_with(&id)).await;

    // Then the loan is cancelled, its account closed, and the application failed with the reason
    let loan = bank.loan(&loan_id).await.unwrap().unwrap();
    assert_eq!(loan.status, LoanStatus::Cancelled);
    let loan_account = bank.account(&loan.terms.loan_account_id).await.unwrap().unwrap();
    assert_eq!(loan_account.status, AccountStatus::Closed);
    let recorded = steps(&s, &id).await;
    assert_eq!(recorded[..3], ["pre_approval_requested", "loan_originated", "compensation_requested"]);
    assert!(recorded[3].starts_with("rejected at disbursement: loan cancelled"), "{recorded:?}");
    assert_eq!(bank.account(&checking.id).await.unwrap().unwrap().balance, rust_decimal::Decimal::ZERO);

    // And a redelivered failure changes nothing more
    let version = bank.workflow_history(&id).await.unwrap().1;
    feed(&s, &saga, Topic::TransactionsFailed, correlated_with(&id)).await;
    assert_eq!(bank.workflow_history(&id).await.unwrap().1, version);
}

#[tokio::test]
async fn an_application_the_bank_refuses_fails_with_the_reason_and_nothing_to_compensate() {
    // Given a verified customer with no account to pay a loan into
    let s = service().await;
    loan_saga(&s).start().await.unwrap();
    let bank = s.system.bank();
    let customer: CustomerId = customer(bank, KycStatus::Pending, KycTier::Tier1).await.id;

    // When the KYC is verified
    bank.change_kyc(&ctx(), &customer, KycStatus::Verified, KycTier::Tier2).await.unwrap();

    // Then the application fails at pre-approval, saying why
    let id = LoanApplicationSaga::id_for(&customer);
    first(&s.bus, Topic::WorkflowsRejected, of_saga(&id)).await;
    let recorded = steps(&s, &id).await;
    assert_eq!(recorded[0], "pre_approval_requested");
    assert!(recorded[1].contains("no checking or savings account in USD"), "{recorded:?}");
    assert!(bank.loan(&LoanId::derived(id.as_str())).await.unwrap().is_none());
}

/// A disbursed loan of 1,200.00 over 12 months, originated on day 0.
async fn disbursed_loan(s: &Service) -> LoanId {
    let bank = s.system.bank();
    let (customer, checking) = funded(bank, "500.00").await;
    let application = LoanApplication {
        loan_id: None,
        customer_id: customer.id.clone(),
        account_id: checking.id.clone(),
        principal: usd("1200.00"),
        interest_rate: "6".parse().unwrap(),
        term_months: 12,
        payment_frequency: PaymentFrequency::Monthly,
    };
    let day0 = Ctx::at(at(0, 9));
    let LoanDecision::Approved { loan_id, .. } = bank.originate_loan(&day0, application).await.unwrap() else {
        panic!("rejected")
    };
    bank.disburse_loan(&day0, &loan_id).await.unwrap();
    loan_id
}

#[tokio::test]
async fn a_missed_installment_opens_a_case_that_escalates_with_time_and_a_payment_resolves_it() {
    // Given a disbursed loan (first installment due on day 31) and the collections saga
    let s = service().await;
    let loan_id = disbursed_loan(&s).await;
    let config = CollectionsConfig { grace_days: 5, escalate_after: chrono::Duration::days(3), ..Default::default() };
    let bus: Arc<dyn eventbus::EventBus> = s.bus.clone();
    let saga = CollectionsSaga::new(s.system.bank().clone(), bus, Arc::new(s.clock.clone()), config);
    assert_eq!(saga.start().await.unwrap(), 1, "the loan is found in the store");
    let bank = s.system.bank();
    let of_loan = |e: &EventSchema| e.data.get("loan_id").and_then(Value::as_str) == Some(loan_id.as_str());

    // When nothing is due yet, or the grace period is running, nothing happens
    s.clock.set(at(20, 9));
    assert_eq!(saga.tick().await.unwrap(), Default::default());
    s.clock.set(at(34, 9));
    assert_eq!(saga.tick().await.unwrap(), Default::default());

    // When the grace period has passed, a case is opened
    s.clock.set(at(37, 9));
    assert_eq!(saga.tick().await.unwrap().overdue_checks, 1);
    let opened = first(&s.bus, Topic::CollectionsCaseCreated, of_loan).await;
    // and ticking again before it is due to escalate does nothing
    s.clock.set(at(38, 9));
    assert_eq!(saga.tick().await.unwrap(), Default::default());

    // When the case has stayed open for the configured time, it escalates, once
    s.clock.set(at(40, 10));
    assert_eq!(saga.tick().await.unwrap().escalations, 1);
    let escalated = first(&s.bus, Topic::CollectionsCaseEscalated, of_loan).await;
    assert_eq!(escalated.entity_id, opened.entity_id);
    assert_eq!(escalated.data["level"], 2);
    assert_eq!(saga.tick().await.unwrap(), Default::default());

    // When the customer pays what is due, the case is resolved and the saga goes quiet
    let installment = bank.loan(&loan_id).await.unwrap().unwrap().next_installment().unwrap().payment;
    let two = (installment * rust_decimal::Decimal::TWO).to_string();
    bank.pay_loan(&Ctx::at(at(41, 9)), &loan_id, usd(&two)).await.unwrap();
    first(&s.bus, Topic::CollectionsCaseResolved, of_loan).await;
    s.clock.set(at(45, 9));
    assert_eq!(saga.tick().await.unwrap(), Default::default());
    // Every command the saga sent was carried out once: the case has exactly these events.
    let case = nexum::store::StreamId::of("case", &opened.entity_id);
    let types: Vec<String> =
        s.store.read(&case, 1).await.unwrap().iter().map(|e| e.event.event_type.as_str().to_owned()).collect();
    assert_eq!(types, ["collection_case_created", "collection_case_escalated", "collection_case_resolved"]);
}

/// The events of the collections saga's timer topic so far.
fn timers(s: &Service) -> Vec<EventSchema> {
    let topic = nexum::sagas::collections_timer_topic();
    s.bus.get_events(Some(&topic)).into_iter().map(|(_, event)| (*event).clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collections_saga_acts_when_the_timer_it_scheduled_arrives() {
    // Given a disbursed loan whose first grace period ends 1.5 s from now on the saga's clock
    let s = service().await;
    let loan_id = disbursed_loan(&s).await;
    let bank = s.system.bank();
    let first_due = bank.loan(&loan_id).await.unwrap().unwrap().terms.schedule[0].due_date;
    let grace_ends = (first_due + chrono::Days::new(6)).and_hms_opt(0, 0, 0).unwrap().and_utc();
    s.clock.set(grace_ends - chrono::Duration::milliseconds(1_500));
    let of_loan = |e: &EventSchema| e.data.get("loan_id").and_then(Value::as_str) == Some(loan_id.as_str());

    // When the saga starts and listens: it finds nothing due and schedules its timer on the bus
    let config = CollectionsConfig { grace_days: 5, ..Default::default() };
    let bus: Arc<dyn eventbus::EventBus> = s.bus.clone();
    let saga = CollectionsSaga::new(bank.clone(), bus, Arc::new(s.clock.clone()), config);
    assert_eq!(saga.start().await.unwrap(), 1);
    saga.listen().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(timers(&s).is_empty(), "the timer waits for its time in the schedule");
    assert!(s.bus.get_events(Some(&Topic::CollectionsCaseCreated.name())).is_empty());
    // and the time passes, with nothing sweeping the loans
    s.clock.set(grace_ends + chrono::Duration::minutes(1));

    // Then the timer arrives, and on it the saga opens a case for the loan
    let opened = first(&s.bus, Topic::CollectionsCaseCreated, of_loan).await;
    let arrived = timers(&s);
    assert_eq!(arrived.len(), 1, "the timer came first: {arrived:?}");
    assert_eq!(arrived[0].entity_id, loan_id.as_str());
    assert!(arrived[0].metadata.get(eventbus::SCHEDULED_FOR).is_some(), "{:?}", arrived[0]);
    // once: the case has one event, and the saga set its next timer (the escalation) for later
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let case = nexum::store::StreamId::of("case", &opened.entity_id);
    assert_eq!(s.store.read(&case, 1).await.unwrap().len(), 1);
    assert_eq!(timers(&s).len(), 1);
}
