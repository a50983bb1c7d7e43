//! Fixtures: a bank over a fresh SQLite store, customers and accounts, deterministic time.
#![allow(dead_code)]

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
        .create_customer(&ctx, NewCustomer {
            id: None,
            first_name: "Jane".into(),
            last_name: "Smith".into(),
            email: "jane@example.com".into(),
            phone: Some("+1234567890".into()),
        })
        .await
        .unwrap();
    if (status, tier) == (KycStatus::Pending, KycTier::Tier1) {
        return customer;
    }
    bank.change_kyc(&ctx, &customer.id, status, tier).await.unwrap()
}

pub async fn account(bank: &Bank, customer: &Customer, account_type: AccountType, overdraft: Option<&str>) -> Account {
    bank.open_account(&ctx(), NewAccount {
        id: None,
        customer_id: customer.id.clone(),
        account_type,
        currency: "USD".parse().unwrap(),
        name: None,
        overdraft_limit: overdraft.map(usd),
    })
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
