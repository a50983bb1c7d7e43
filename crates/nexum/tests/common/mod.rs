//! Fixtures: a bank over a fresh SQLite store, customers and accounts, deterministic time.
#![allow(dead_code)]

pub mod given;
pub mod service;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use eventbus::Money;
use nexum::bank::{NewAccount, NewCustomer, parse_amount};
use nexum::domain::{Account, AccountType, Customer, KycStatus, KycTier};
use nexum::store::{EventStore, RecordedEvent, SqliteStore, SqliteSync};
use nexum::{Bank, Ctx};
use tempfile::TempDir;

pub struct Fixture {
    pub dir: TempDir,
    pub store: Arc<SqliteStore>,
    pub bank: Bank,
}

pub fn bank() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bank.db"), SqliteSync::Normal).unwrap());
    let bank = Bank::new(store.clone());
    Fixture { dir, store, bank }
}

/// 2024-01-01 at `hour`:00 UTC plus `days`.
pub fn at(days: i64, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, hour, 0, 0).unwrap() + chrono::Duration::days(days)
}

pub fn ctx() -> Ctx {
    Ctx::at(at(0, 12)).by_user("teller_1").correlated("corr_123")
}

pub fn money(amount: &str, currency: &str) -> Money {
    parse_amount(amount, currency).unwrap()
}

pub fn usd(amount: &str) -> Money {
    money(amount, "USD")
}

pub async fn customer(bank: &Bank, status: KycStatus, tier: KycTier) -> Customer {
    let ctx = ctx();
    let customer = bank
        .create_customer(
            &ctx,
            NewCustomer {
                id: None,
                first_name: "Jane".into(),
                last_name: "Smith".into(),
                email: "jane@example.com".into(),
                phone: Some("+1234567890".into()),
            },
        )
        .await
        .unwrap();
    if (status, tier) == (KycStatus::Pending, KycTier::Tier1) {
        return customer;
    }
    bank.change_kyc(&ctx, &customer.id, status, tier).await.unwrap()
}

pub async fn account(bank: &Bank, customer: &Customer, account_type: AccountType, overdraft: Option<&str>) -> Account {
    bank.open_account(
        &ctx(),
        NewAccount {
            id: None,
            customer_id: customer.id.clone(),
            account_type,
            currency: "USD".parse().unwrap(),
            name: None,
            overdraft_limit: overdraft.map(usd),
        },
    )
    .await
    .unwrap()
}

/// A verified tier-2 customer with a checking account holding `balance`.
pub async fn funded(bank: &Bank, balance: &str) -> (Customer, Account) {
    let customer = customer(bank, KycStatus::Verified, KycTier::Tier2).await;
    let account = account(bank, &customer, AccountType::Checking, None).await;
    if balance != "0" {
        bank.deposit(&ctx(), &account.id, usd(balance), None, None).await.unwrap();
    }
    (customer.clone(), bank.account(&account.id).await.unwrap().unwrap())
}

pub async fn all_events(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store.read_all(1, usize::MAX >> 1).await.unwrap()
}

pub fn types(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.event_type.as_str()).collect()
}

/// Runs every kind of banking operation once, so that every event type is recorded.
pub async fn every_operation(bank: &Bank) {
    use nexum::bank::{AccountUpdate, CustomerUpdate, LoanApplication, LoanDecision};
    use nexum::domain::PaymentFrequency;

    let day = |d: i64| Ctx::at(at(d, 9)).by_user("ops");
    let (customer, checking) = funded(bank, "1000.00").await;
    bank.update_customer(
        &day(0),
        &customer.id,
        CustomerUpdate { phone: Some("+4915112345678".into()), ..Default::default() },
    )
    .await
    .unwrap();
    bank.update_account(&day(0), &checking.id, AccountUpdate { name: Some("Main".into()), ..Default::default() })
        .await
        .unwrap();
    bank.deposit(&day(0), &checking.id, usd("10000.00"), Some("Bonus".into()), None).await.unwrap();
    for hour in [10, 11, 12] {
        bank.deposit(&Ctx::at(at(1, hour)), &checking.id, usd("9500.00"), None, None).await.unwrap();
    }
    let failed = bank.withdraw(&day(1), &checking.id, usd("49000.00"), None, None).await.unwrap();
    assert!(!failed.is_posted());

    let pending = self::customer(bank, KycStatus::Pending, KycTier::Tier1).await;
    let pending_account = account(bank, &pending, AccountType::Checking, None).await;
    let loan = |customer: &Customer, account: &Account| LoanApplication {
        loan_id: None,
        customer_id: customer.id.clone(),
        account_id: account.id.clone(),
        principal: usd("1200.00"),
        interest_rate: "6".parse().unwrap(),
        term_months: 12,
        payment_frequency: PaymentFrequency::Monthly,
    };
    let rejected = bank.originate_loan(&day(2), loan(&pending, &pending_account)).await.unwrap();
    assert!(matches!(rejected, LoanDecision::Rejected { .. }));

    let LoanDecision::Approved { loan_id, .. } =
        bank.originate_loan(&day(2), loan(&customer, &checking)).await.unwrap()
    else {
        panic!("loan rejected")
    };
    bank.disburse_loan(&day(2), &loan_id).await.unwrap();
    let late = bank.check_overdue(&day(40), &loan_id).await.unwrap();
    bank.escalate_case(&day(41), late.case_id.as_ref().unwrap(), "Customer unreachable").await.unwrap();
    let state = bank.loan(&loan_id).await.unwrap().unwrap();
    let everything = state.outstanding_principal + state.interest_due();
    bank.pay_loan(&day(42), &loan_id, usd(&everything.to_string())).await.unwrap();

    let LoanDecision::Approved { loan_id: unpaid, .. } =
        bank.originate_loan(&day(50), loan(&customer, &checking)).await.unwrap()
    else {
        panic!("loan rejected")
    };
    bank.disburse_loan(&day(50), &unpaid).await.unwrap();
    let defaulted = bank.check_overdue(&day(200), &unpaid).await.unwrap();
    assert!(defaulted.defaulted);

    let credit = account(bank, &customer, AccountType::Credit, Some("3000.00")).await;
    bank.withdraw(&day(60), &credit.id, usd("800.00"), None, None).await.unwrap();
    bank.generate_statement(&day(61), &credit.id, at(61, 0).date_naive()).await.unwrap();
    bank.pay_credit(&day(62), &checking.id, &credit.id, usd("300.00")).await.unwrap();

    let LoanDecision::Approved { loan_id: unwanted, .. } =
        bank.originate_loan(&day(63), loan(&customer, &checking)).await.unwrap()
    else {
        panic!("loan rejected")
    };
    bank.cancel_loan(&day(63), &unwanted, "Customer withdrew the application").await.unwrap();
    let refused = nexum::events::CommandRejected {
        topic: "nexum.commands.transactions".into(),
        command_type: "transaction_command".into(),
        action: Some("teleport".into()),
        error_code: "unknown_action".into(),
        reason: "unknown action `teleport`".into(),
    };
    bank.reject_command(&day(64).for_command(nexum::ids::CommandId::new()), refused).await.unwrap();
}
