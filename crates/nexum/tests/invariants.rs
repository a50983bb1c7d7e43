//! The ledger's invariants hold after any sequence of operations: postings balance per currency,
//! a balance is the fold of its journal, no balance goes below its overdraft, and rebuilding an
//! aggregate from its stream gives the state the bank holds, also when the bank's events are
//! given to the test harness.

mod common;

use std::collections::HashMap;

use common::*;
use nexum::domain::{AccountType, KycStatus, KycTier};
use nexum::events::{NexumEvent, Payload};
use nexum::ids::AccountId;
use nexum::store::{EventStore, RecordedEvent, StreamId};
use nexum::testing::BankTest;
use proptest::prelude::*;
use rust_decimal::Decimal;

#[derive(Clone, Debug)]
enum Op {
    Deposit { account: usize, cents: i64 },
    Withdraw { account: usize, cents: i64 },
    Transfer { from: usize, to: usize, cents: i64 },
    Freeze { account: usize },
    Unfreeze { account: usize },
}

const ACCOUNTS: usize = 4;

fn op() -> impl Strategy<Value = Op> {
    let account = 0..ACCOUNTS;
    // Amounts up to 12,000.00, so that limits, alerts and near-threshold deposits all occur.
    let cents = 1i64..1_200_000;
    prop_oneof![
        4 => (account.clone(), cents.clone()).prop_map(|(account, cents)| Op::Deposit { account, cents }),
        3 => (account.clone(), cents.clone()).prop_map(|(account, cents)| Op::Withdraw { account, cents }),
        4 => (account.clone(), account.clone(), cents).prop_map(|(from, to, cents)| Op::Transfer { from, to, cents }),
        1 => account.clone().prop_map(|account| Op::Freeze { account }),
        1 => account.prop_map(|account| Op::Unfreeze { account }),
    ]
}

fn amount(cents: i64) -> eventbus::Money {
    eventbus::Money::new(Decimal::new(cents, 2), "USD".parse().unwrap()).unwrap()
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let f = bank();
    let rich = customer(&f.bank, KycStatus::Verified, KycTier::Tier3).await;
    let pending = customer(&f.bank, KycStatus::Pending, KycTier::Tier1).await;
    let accounts = [
        account(&f.bank, &rich, AccountType::Checking, Some("500.00")).await,
        account(&f.bank, &rich, AccountType::Savings, None).await,
        account(&f.bank, &rich, AccountType::Credit, Some("3000.00")).await,
        account(&f.bank, &pending, AccountType::Checking, None).await,
    ];
    let ids: Vec<AccountId> = accounts.iter().map(|a| a.id.clone()).collect();
    let ctx = ctx();
    for op in ops {
        // Refusals (a transfer to the same account, freezing a frozen account) are fine here:
        // the invariants must hold whatever happens.
        let _ = match op {
            Op::Deposit { account, cents } => {
                f.bank.deposit(&ctx, &ids[account], amount(cents), None, None).await.map(drop)
            }
            Op::Withdraw { account, cents } => {
                f.bank.withdraw(&ctx, &ids[account], amount(cents), None, None).await.map(drop)
            }
            Op::Transfer { from, to, cents } => {
                f.bank.transfer(&ctx, &ids[from], &ids[to], amount(cents), None, None).await.map(drop)
            }
            Op::Freeze { account } => f.bank.freeze_account(&ctx, &ids[account]).await.map(drop),
            Op::Unfreeze { account } => f.bank.unfreeze_account(&ctx, &ids[account]).await.map(drop),
        };
    }

    let events = all_events(&*f.store).await;
    let mut per_currency: HashMap<String, Decimal> = HashMap::new();
    let mut journal: HashMap<AccountId, Decimal> = HashMap::new();
    for recorded in &events {
        let event = NexumEvent::from_schema(&recorded.event).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Payload::TransactionPosted(posted) = event.payload {
            let entry: Decimal = posted.postings.iter().map(|p| p.amount).sum();
            prop_assert_eq!(entry, Decimal::ZERO, "journal entry {} does not balance", posted.journal_entry_id);
            *per_currency.entry(posted.currency.to_string()).or_default() += entry;
            for posting in posted.postings {
                *journal.entry(posting.account_id).or_default() += posting.amount;
            }
        }
    }
    for (currency, sum) in per_currency {
        prop_assert_eq!(sum, Decimal::ZERO, "postings in {} do not sum to zero", currency);
    }

    let rebuilt = nexum::Bank::new(f.store.clone());
    for id in &ids {
        let live = f.bank.account(id).await.unwrap().unwrap();
        let folded = rebuilt.account(id).await.unwrap().unwrap();
        prop_assert_eq!(&folded, &live, "rebuilding {} from its stream gives another state", id);
        prop_assert_eq!(
            live.balance,
            journal.get(id).copied().unwrap_or_default(),
            "balance of {} is not its journal",
            id
        );
        prop_assert!(live.balance >= -live.overdraft_limit, "{} is below its overdraft: {}", id, live.balance);
    }
    for customer in [&rich.id, &pending.id] {
        prop_assert_eq!(rebuilt.customer(customer).await.unwrap(), f.bank.customer(customer).await.unwrap());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_invariants_hold_after_any_sequence_of_operations(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops))?;
    }
}

/// Checks that `rebuilt` holds the state `bank` holds for every customer, account, loan and
/// collections case created in `events`; returns how many it checked.
async fn assert_same_aggregates(rebuilt: &nexum::Bank, bank: &nexum::Bank, events: &[RecordedEvent]) -> usize {
    let mut checked = 0;
    for recorded in events {
        let id = recorded.event.entity_id.as_str();
        match recorded.event.event_type.as_str() {
            "customer_created" => {
                let id = id.parse().unwrap();
                assert_eq!(rebuilt.customer(&id).await.unwrap(), bank.customer(&id).await.unwrap());
            }
            "account_created" => {
                let id = id.parse().unwrap();
                assert_eq!(rebuilt.account(&id).await.unwrap(), bank.account(&id).await.unwrap());
            }
            "loan_originated" => {
                let id = id.parse().unwrap();
                assert_eq!(rebuilt.loan(&id).await.unwrap(), bank.loan(&id).await.unwrap());
            }
            "collection_case_created" => {
                let id = id.parse().unwrap();
                assert_eq!(rebuilt.collection_case(&id).await.unwrap(), bank.collection_case(&id).await.unwrap());
            }
            _ => continue,
        }
        checked += 1;
    }
    checked
}

#[tokio::test]
async fn rebuilding_every_aggregate_from_its_stream_gives_the_state_the_bank_holds() {
    let f = bank();
    every_operation(&f.bank).await;
    let rebuilt = nexum::Bank::new(f.store.clone());

    let events = all_events(&*f.store).await;
    let checked = assert_same_aggregates(&rebuilt, &f.bank, &events).await;
    assert!(checked >= 10, "only {checked} aggregates checked");
}

#[tokio::test]
async fn the_events_the_bank_records_given_to_the_harness_land_in_the_same_streams_and_fold_to_the_same_state() {
    let live = BankTest::new();
    every_operation(live.bank()).await;
    let events = live.recorded().await;

    // Given with the times they were recorded at: some rules read them.
    let mut given = BankTest::new();
    for same_time in events.chunk_by(|a, b| a.event.timestamp == b.event.timestamp) {
        let at = same_time[0].event.timestamp.expect("the bank stamps its events");
        given = given.given_at(at, same_time.iter().map(|e| NexumEvent::from_schema(&e.event).unwrap())).await;
    }

    // Each stream holds as many events, so every link the bank makes, the harness makes; but for
    // the audit record's link into its command's stream: a given event names no command.
    let mut streams: Vec<&StreamId> =
        events.iter().map(|e| &e.stream).filter(|s| !s.as_str().starts_with("command-")).collect();
    streams.sort();
    streams.dedup();
    for stream in streams {
        let (expected, actual) =
            (live.store().stream_version(stream).await, given.store().stream_version(stream).await);
        assert_eq!(actual.unwrap(), expected.unwrap(), "{stream}");
    }
    let checked = assert_same_aggregates(given.bank(), live.bank(), &events).await;
    assert!(checked >= 10, "only {checked} aggregates checked");
}
