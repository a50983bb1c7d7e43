//! The read models, given / when / then over what the bank did: they agree with the bank, a
//! rebuild from the store equals the live model, and neither arrival order nor redelivery
//! changes the result.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use common::*;
use eventbus::{BusConfig, EventBus, EventSchema, GroupId, MemoryBus, Subscription, Topic};
use nexum::bank::{CustomerUpdate, LoanApplication, LoanDecision};
use nexum::domain::{AccountType, KycStatus, KycTier, LoanStatus, PaymentFrequency};
use nexum::events::DecodeError;
use nexum::ids::{AccountId, LoanId};
use nexum::projections::AlertKind;
use nexum::store::EventStore;
use nexum::{Bank, Ctx, Projections, create_event_enabled_banking_system};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// Applies to `projections` every event committed since `position`, in commit order, as a
/// consumer of the whole log would; returns the new position.
async fn catch_up(projections: &Projections, store: &dyn EventStore, position: u64) -> u64 {
    let events = store.read_all(position + 1, 100_000).await.unwrap();
    for recorded in &events {
        projections.apply(&recorded.event).unwrap();
    }
    events.last().map_or(position, |last| last.position)
}

/// The accounts the bank opened, from the store.
async fn account_ids(store: &dyn EventStore) -> Vec<AccountId> {
    let events = all_events(store).await;
    events
        .iter()
        .filter(|e| e.event.event_type.as_str() == "account_created")
        .map(|e| e.event.entity_id.parse().unwrap())
        .collect()
}

/// Every balance of the projection equals the bank's.
async fn assert_balances_agree(projections: &Projections, bank: &Bank) {
    for id in account_ids(&**bank.store()).await {
        let expected = bank.account(&id).await.unwrap().unwrap().balance;
        let view = projections.account(&id).unwrap_or_else(|| panic!("{id} not projected"));
        assert_eq!(view.balance, expected, "{id}");
    }
}

fn loan_for(customer: &nexum::domain::Customer, account: &nexum::domain::Account) -> LoanApplication {
    LoanApplication {
        loan_id: None,
        customer_id: customer.id.clone(),
        account_id: account.id.clone(),
        principal: usd("1200.00"),
        interest_rate: "6".parse().unwrap(),
        term_months: 12,
        payment_frequency: PaymentFrequency::Monthly,
    }
}

#[tokio::test]
async fn the_live_model_shows_balances_customers_loans_statements_and_alerts_as_the_bank_has_them() {
    let f = bank();
    let bank = &f.bank;
    let store = &*f.store;
    let projections = Projections::new();
    let day = |d: i64| Ctx::at(at(d, 9)).by_user("teller_1");

    // Given a customer with checking, savings and credit accounts, and another customer,
    let (jane, checking) = funded(bank, "1000.00").await;
    let savings = account(bank, &jane, AccountType::Savings, None).await;
    let credit = account(bank, &jane, AccountType::Credit, Some("3000.00")).await;
    let (john, johns) = funded(bank, "0").await;
    // when money moves, one withdrawal fails, a large deposit is made and details change,
    bank.withdraw(&day(1), &checking.id, usd("200.00"), None, None).await.unwrap();
    bank.transfer(&day(1), &checking.id, &savings.id, usd("300.00"), None, None).await.unwrap();
    let failed = bank.withdraw(&day(1), &checking.id, usd("5000.00"), None, None).await.unwrap();
    assert!(!failed.is_posted());
    bank.deposit(&day(2), &johns.id, usd("12000.00"), None, None).await.unwrap();
    bank.update_customer(
        &day(2),
        &jane.id,
        CustomerUpdate { phone: Some("+4915112345678".into()), ..Default::default() },
    )
    .await
    .unwrap();
    bank.withdraw(&day(3), &credit.id, usd("800.00"), None, None).await.unwrap();
    let statement = bank.generate_statement(&day(4), &credit.id, at(4, 0).date_naive()).await.unwrap();
    bank.pay_credit(&day(5), &checking.id, &credit.id, usd("100.00")).await.unwrap();
    let position = catch_up(&projections, store, 0).await;

    // then balances, the directory, the statement and the alert are as the bank has them;
    assert_balances_agree(&projections, bank).await;
    let view = projections.account(&checking.id).unwrap();
    assert_eq!(view.balance, dec("400.00"));
    assert_eq!(view.posted_transactions, 4, "the failed withdrawal is not a posted transaction");
    assert_eq!(view.last_activity_at, Some(at(5, 9)));
    let details = view.details.unwrap();
    assert_eq!((details.customer_id, details.account_type), (jane.id.clone(), AccountType::Checking));
    let latest = projections.account(&credit.id).unwrap().latest_statement.unwrap();
    assert_eq!(latest.closing_balance, dec("-800.00"));
    assert_eq!((latest.minimum_payment, latest.due_date), (statement.minimum_payment, statement.due_date));
    let directory = projections.customer(&jane.id).unwrap();
    let contact = directory.contact.as_ref().unwrap();
    assert_eq!((contact.email.as_str(), contact.phone.as_deref()), ("jane@example.com", Some("+4915112345678")));
    assert_eq!(directory.kyc.map(|k| (k.kyc_status, k.kyc_tier)), Some((KycStatus::Verified, KycTier::Tier2)));
    assert_eq!(directory.account_ids, BTreeSet::from([checking.id.clone(), savings.id.clone(), credit.id.clone()]));
    assert_eq!(directory.updated_at, Some(at(2, 9)));
    let accounts: Vec<_> = projections.accounts_of(&jane.id).into_iter().map(|a| a.account_id).collect();
    assert_eq!(accounts.len(), 3);
    let alerts = projections.alerts(10);
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].kind, alerts[0].reason.as_str()), (AlertKind::ComplianceAlert, "large_transaction"));
    assert_eq!((&alerts[0].account_id, &alerts[0].customer_id), (&johns.id, &john.id));
    assert_eq!((alerts[0].amount, alerts[0].raised_at), (dec("12000.00"), Some(at(2, 9))));

    // and a loan is projected through origination, disbursement, a partial and a full payment.
    let LoanDecision::Approved { loan_id, loan_account_id, .. } =
        bank.originate_loan(&day(6), loan_for(&jane, &checking)).await.unwrap()
    else {
        panic!("loan rejected")
    };
    let position = catch_up(&projections, store, position).await;
    let loan = |id: &LoanId| projections.loan(id).unwrap();
    assert_eq!(
        (loan(&loan_id).status, loan(&loan_id).outstanding_principal),
        (Some(LoanStatus::Originated), Some(dec("1200.00")))
    );
    bank.disburse_loan(&day(6), &loan_id).await.unwrap();
    bank.pay_loan(&day(36), &loan_id, usd("150.00")).await.unwrap();
    let position = catch_up(&projections, store, position).await;
    let partly = loan(&loan_id);
    let bank_loan = bank.loan(&loan_id).await.unwrap().unwrap();
    assert_eq!(partly.status, Some(LoanStatus::Active));
    assert_eq!(partly.outstanding_principal, Some(bank_loan.outstanding_principal));
    assert_eq!(partly.outstanding_principal, Some(dec("1056.00")), "1200 less 150 of which 6.00 interest");
    assert_eq!((partly.payments_received, partly.interest_paid), (1, dec("6.00")));
    let rest = bank_loan.outstanding_principal + bank_loan.interest_due();
    bank.pay_loan(&day(40), &loan_id, usd(&rest.to_string())).await.unwrap();
    catch_up(&projections, store, position).await;
    let paid = loan(&loan_id);
    assert_eq!((paid.status, paid.outstanding_principal), (Some(LoanStatus::PaidOff), Some(Decimal::ZERO)));
    assert_eq!((paid.payments_received, paid.last_payment_at), (2, Some(at(40, 9))));
    assert_eq!(paid.terms.unwrap().loan_account_id, loan_account_id);
    assert_eq!(projections.loans().len(), 1);
    assert_balances_agree(&projections, bank).await;
    assert_eq!(projections.account(&loan_account_id).unwrap().balance, Decimal::ZERO);
}

/// Everything the bank does, once each, plus the scenario above in short: customers, accounts,
/// transactions (one failed), loans repaid and defaulted, collections, a statement and alerts.
async fn busy_bank() -> Fixture {
    let f = bank();
    every_operation(&f.bank).await;
    let (jane, checking) = funded(&f.bank, "2500.00").await;
    let savings = account(&f.bank, &jane, AccountType::Savings, None).await;
    let day = |d: i64| Ctx::at(at(d, 15));
    f.bank.transfer(&day(1), &checking.id, &savings.id, usd("700.00"), None, None).await.unwrap();
    f.bank.withdraw(&day(1), &savings.id, usd("9000.00"), None, None).await.unwrap();
    let LoanDecision::Approved { loan_id, .. } =
        f.bank.originate_loan(&day(2), loan_for(&jane, &checking)).await.unwrap()
    else {
        panic!("loan rejected")
    };
    f.bank.disburse_loan(&day(2), &loan_id).await.unwrap();
    f.bank.pay_loan(&day(30), &loan_id, usd("300.00")).await.unwrap();
    f
}

/// The events of [`busy_bank`], in commit order, recorded once for all the tests that need them.
static BUSY_EVENTS: LazyLock<Vec<EventSchema>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let f = busy_bank().await;
        all_events(&*f.store).await.into_iter().map(|recorded| recorded.event).collect()
    })
});

fn live_model(events: &[EventSchema]) -> Projections {
    let projections = Projections::new();
    for event in events {
        projections.apply(event).unwrap();
    }
    projections
}

#[tokio::test]
async fn a_model_rebuilt_from_the_store_equals_the_live_one() {
    // Given a bank that did everything, and a model fed each event as it was committed,
    let f = busy_bank().await;
    let live = Projections::new();
    catch_up(&live, &*f.store, 0).await;

    // when the model is rebuilt from the store,
    let rebuilt = Projections::rebuild(&*f.store).await.unwrap();

    // then it is the same model, and both agree with the bank.
    assert_eq!(rebuilt.snapshot(), live.snapshot());
    assert_eq!(rebuilt.applied(), live.applied());
    assert_balances_agree(&rebuilt, &f.bank).await;
    let snapshot = rebuilt.snapshot();
    assert!(snapshot.loans.values().any(|l| l.status == Some(LoanStatus::Defaulted) && l.open_case.is_some()));
    assert!(snapshot.alerts.iter().any(|a| a.kind == AlertKind::SuspiciousActivity && a.reason == "structuring"));
    assert!(snapshot.alerts.windows(2).all(|w| w[0].raised_at >= w[1].raised_at), "newest first");
    assert!(snapshot.accounts.values().all(|a| a.details.is_some()), "no placeholder left");
}

#[tokio::test]
async fn rebuilding_an_empty_store_gives_an_empty_model() {
    let f = bank();

    let rebuilt = Projections::rebuild(&*f.store).await.unwrap();

    assert_eq!(rebuilt.snapshot(), Projections::new().snapshot());
    assert_eq!(rebuilt.applied(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Given every event delivered twice in a random order, when they are applied, then the model
    /// is the one the commit order gives.
    #[test]
    fn the_same_events_in_any_order_and_delivered_twice_give_the_same_model(
        shuffled in Just(BUSY_EVENTS.iter().chain(BUSY_EVENTS.iter()).cloned().collect::<Vec<_>>()).prop_shuffle()
    ) {
        let in_order = live_model(&BUSY_EVENTS).snapshot();

        let any_order = live_model(&shuffled).snapshot();

        prop_assert_eq!(any_order, in_order);
    }
}

#[test]
fn a_redelivered_event_changes_nothing() {
    let projections = live_model(&BUSY_EVENTS);
    let before = (projections.snapshot(), projections.applied());

    let changed: Vec<bool> = BUSY_EVENTS.iter().map(|event| projections.apply(event).unwrap()).collect();

    assert!(changed.iter().all(|changed| !changed));
    assert_eq!((projections.snapshot(), projections.applied()), before);
}

#[test]
fn an_event_of_an_unknown_type_or_version_is_refused_and_changes_nothing() {
    // Given a model of a busy bank,
    let projections = live_model(&BUSY_EVENTS);
    let before = (projections.snapshot(), projections.applied());
    let posted = BUSY_EVENTS.iter().find(|e| e.event_type.as_str() == "transaction_posted").unwrap();
    let mut teleported = posted.clone();
    teleported.event_type = "transaction_teleported".into();
    teleported.event_id = Some(eventbus::EventId::new());
    let mut future = posted.clone();
    future.version = Some("3.0".into());
    future.event_id = Some(eventbus::EventId::new());

    // when events of an unknown type and of an unknown major version are applied,
    let unknown_type = projections.apply(&teleported);
    let unknown_version = projections.apply(&future);

    // then both are refused with the reason, and the model is unchanged.
    assert!(matches!(unknown_type, Err(DecodeError::UnknownType(_))), "{unknown_type:?}");
    assert!(matches!(unknown_version, Err(DecodeError::UnknownVersion { .. })), "{unknown_version:?}");
    assert_eq!((projections.snapshot(), projections.applied()), before);
}

#[tokio::test]
async fn the_handler_on_a_bus_keeps_the_projection_up_to_date_and_counts_a_redelivery_once() {
    // Given a bank publishing through the relay to a memory bus, and the projections subscribed,
    let f = bank();
    let bus = Arc::new(MemoryBus::memory(BusConfig::default()).await.unwrap());
    bus.start().await.unwrap();
    let system = create_event_enabled_banking_system(bus.clone(), f.store.clone());
    let projections = Arc::new(Projections::new());
    let mut topics = Projections::topics().into_iter();
    let mut subscription = Subscription::new(topics.next().unwrap(), GroupId::new("projections").unwrap());
    for topic in topics {
        subscription = subscription.and_topic(topic);
    }
    bus.subscribe(subscription, projections.handler()).await.unwrap();

    // when the bank works,
    let bank = system.bank();
    let (customer, checking) = funded(bank, "1000.00").await;
    let savings = account(bank, &customer, AccountType::Savings, None).await;
    bank.withdraw(&ctx(), &checking.id, usd("250.00"), None, None).await.unwrap();
    bank.transfer(&ctx(), &checking.id, &savings.id, usd("100.00"), None, None).await.unwrap();
    system.flush().await.unwrap();
    let caught_up = || {
        projections.account(&checking.id).map(|a| a.balance) == Some(dec("650.00"))
            && projections.account(&savings.id).map(|a| a.balance) == Some(dec("100.00"))
            && projections.customer(&customer.id).is_some_and(|c| c.contact.is_some())
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while !caught_up() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the projection caught up with the bank");

    // then the projection shows the bank's balances;
    assert_balances_agree(&projections, bank).await;

    // and when the transfer is delivered again, followed by a new event on the same key (so on
    // the same partition, handled after it),
    let applied = projections.applied();
    let topic = Topic::TransactionsPosted.name();
    let (_, transfer) =
        bus.get_events(Some(&topic)).into_iter().find(|(_, e)| e.data["transaction_type"] == "transfer").unwrap();
    let again = (*transfer).clone();
    let next = again.clone().with_id(eventbus::EventId::new());
    bus.publish(&topic, again, Some(&transfer.entity_id)).await.unwrap();
    bus.publish(&topic, next, Some(&transfer.entity_id)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while projections.account(&savings.id).map(|a| a.balance) != Some(dec("200.00")) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the new event is applied");

    // then only the new event counted.
    assert_eq!(projections.account(&checking.id).unwrap().balance, dec("550.00"));
    assert_eq!(projections.applied(), applied + 1);
    system.shutdown().await;
}
