//! Several instances over one PostgreSQL store, as `eventbus serve` runs scaled out: each has its
//! own bank with its own cache of aggregates, and their decisions must still follow the store.
//!
//! PostgreSQL: the server at `NEXUM_TEST_POSTGRES` (default `host=127.0.0.1 port=5432
//! user=postgres dbname=test`); each test works in a schema of its own and drops it.

mod common;

use std::sync::Arc;

use common::*;
use nexum::Bank;
use nexum::bank::TransactionStatus;
use nexum::store::PostgresStore;

const DEFAULT_POSTGRES: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// Two connections to one fresh schema, as two processes would open it.
async fn two_instances() -> (Arc<PostgresStore>, Arc<PostgresStore>) {
    let config = std::env::var("NEXUM_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    let schema = format!("nexum_instances_{}", uuid::Uuid::new_v4().simple());
    let connect = || async {
        PostgresStore::connect(&config, &schema)
            .await
            .expect("the PostgreSQL server of the tests (NEXUM_TEST_POSTGRES)")
    };
    (Arc::new(connect().await), Arc::new(connect().await))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_cached_by_one_instance_lets_no_stale_withdrawal_through_after_another_wrote() {
    // Given two instances over one store, and an account holding 100.00 that both have loaded
    let (store_a, store_b) = two_instances().await;
    let (a, b) = (Bank::new(store_a.clone()), Bank::new(store_b.clone()));
    let (_, account) = funded(&a, "100.00").await;
    let cached = b.account(&account.id).await.unwrap().expect("instance b reads the account");
    assert_eq!(cached.balance.to_string(), "100.00");

    // When instance a withdraws 80.00, and then instance b, whose cache still says 100.00, is
    // asked for 80.00 too
    let first = a.withdraw(&ctx(), &account.id, usd("80.00"), None, None).await.unwrap();
    let second = b.withdraw(&ctx(), &account.id, usd("80.00"), None, None).await.unwrap();

    // Then b decides again on what is stored: the second withdrawal fails for want of funds, and
    // both instances see 20.00
    assert!(first.is_posted(), "{first:?}");
    assert!(matches!(second.status, TransactionStatus::Failed { .. }), "{second:?}");
    for bank in [&a, &b] {
        assert_eq!(bank.account(&account.id).await.unwrap().unwrap().balance.to_string(), "20.00");
    }
    let postings =
        all_events(&*store_a).await.iter().filter(|e| e.event.event_type.as_str() == "transaction_posted").count();
    assert_eq!(postings, 2, "the opening deposit and one withdrawal");
    store_b.drop_schema().await.unwrap();
}
