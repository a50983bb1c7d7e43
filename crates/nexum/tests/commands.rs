//! `NexumCommandHandler` over a real (in-memory) bus: every command gets an outcome event that
//! names it as its cause, a redelivered command has one effect, and malformed commands are
//! rejected and dead-lettered with the reason.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::service::*;
use common::*;
use eventbus::{EventBus, Topic, TopicName};
use nexum::clock::ManualClock;
use nexum::ids::{AccountId, CustomerId};
use nexum::store::EventStore;
use nexum::{CommandOutcome, NexumCommandHandler};
use serde_json::json;

/// A verified customer with a checking account holding `balance`, made through commands.
async fn customer_with_account(s: &Service, balance: &str) -> (CustomerId, AccountId) {
    let create = command(
        "customer_command",
        "new",
        json!({"action": "create", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}),
    );
    send(&s.bus, Topic::CommandsCustomers, &create).await;
    let created = caused_by(&s.bus, Topic::CustomersCreated, &create).await;
    let customer: CustomerId = created[0].entity_id.parse().unwrap();
    let kyc = command(
        "customer_command",
        customer.as_str(),
        json!({"action": "kyc", "customer_id": customer, "kyc_status": "verified", "kyc_tier": "tier_2"}),
    );
    send(&s.bus, Topic::CommandsCustomers, &kyc).await;
    caused_by(&s.bus, Topic::CustomersKycChanged, &kyc).await;
    let open = command(
        "customer_command",
        customer.as_str(),
        json!({"action": "open_account", "customer_id": customer, "account_type": "checking", "currency": "USD"}),
    );
    send(&s.bus, Topic::CommandsCustomers, &open).await;
    let account: AccountId = caused_by(&s.bus, Topic::AccountsCreated, &open).await[0].entity_id.parse().unwrap();
    if balance != "0" {
        let deposit = command(
            "transaction_command",
            account.as_str(),
            json!({"action": "deposit", "account_id": account, "amount": balance, "currency": "USD"}),
        );
        send(&s.bus, Topic::CommandsTransactions, &deposit).await;
        caused_by(&s.bus, Topic::TransactionsPosted, &deposit).await;
    }
    (customer, account)
}

#[tokio::test]
async fn a_deposit_command_posts_and_its_events_name_the_command_as_their_cause() {
    let s = service().await;
    let (_, account) = customer_with_account(&s, "0").await;

    let deposit = command(
        "transaction_command",
        account.as_str(),
        json!({"action": "deposit", "account_id": account, "amount": "100.00", "currency": "USD",
               "description": "External deposit"}),
    );
    send(&s.bus, Topic::CommandsTransactions, &deposit).await;

    let posted = caused_by(&s.bus, Topic::TransactionsPosted, &deposit).await;
    assert_eq!(posted.len(), 1);
    assert_eq!(text(&posted[0], "final_balance"), "100.00");
    assert_eq!(posted[0].metadata["correlation_id"], "corr-42");
    let created = caused_by(&s.bus, Topic::TransactionsCreated, &deposit).await;
    assert_eq!(created[0].metadata["correlation_id"], "corr-42");
    assert_eq!(s.system.bank().account(&account).await.unwrap().unwrap().balance, "100.00".parse().unwrap());
}

#[tokio::test]
async fn every_action_of_every_command_topic_has_an_outcome_event() {
    let s = service().await;
    let (customer, account) = customer_with_account(&s, "500.00").await;
    let update = command(
        "customer_command",
        customer.as_str(),
        json!({"action": "update", "customer_id": customer, "phone": "+1555123456"}),
    );
    let savings = command(
        "customer_command",
        customer.as_str(),
        json!({"action": "open_account", "customer_id": customer, "account_type": "savings", "currency": "USD",
               "account_id": "acc_savings_1"}),
    );
    send(&s.bus, Topic::CommandsCustomers, &update).await;
    send(&s.bus, Topic::CommandsCustomers, &savings).await;
    assert_eq!(caused_by(&s.bus, Topic::CustomersUpdated, &update).await.len(), 1);
    // The account_created of `open_account` is about the new account.
    assert_eq!(caused_by(&s.bus, Topic::AccountsCreated, &savings).await[0].entity_id, "acc_savings_1");

    let withdraw = command(
        "transaction_command",
        account.as_str(),
        json!({"action": "withdraw", "account_id": account, "amount": "20.00", "currency": "USD"}),
    );
    let transfer = command(
        "transaction_command",
        account.as_str(),
        json!({"action": "transfer", "from_account_id": account, "to_account_id": "acc_savings_1",
               "amount": "30.00", "currency": "USD"}),
    );
    let overdraw = command(
        "transaction_command",
        account.as_str(),
        json!({"action": "withdraw", "account_id": account, "amount": "9000.00", "currency": "USD"}),
    );
    for c in [&withdraw, &transfer, &overdraw] {
        send(&s.bus, Topic::CommandsTransactions, c).await;
    }
    assert_eq!(text(&caused_by(&s.bus, Topic::TransactionsPosted, &withdraw).await[0], "final_balance"), "480.00");
    assert_eq!(text(&caused_by(&s.bus, Topic::TransactionsPosted, &transfer).await[0], "final_balance"), "450.00");
    // A transaction that cannot go through is answered with its failure.
    let failed = caused_by(&s.bus, Topic::TransactionsFailed, &overdraw).await;
    assert_eq!(text(&failed[0], "reason"), "insufficient_funds");

    // The seed's loan command names no account: the customer's checking account receives it.
    let originate = command(
        "loan_command",
        customer.as_str(),
        json!({"action": "originate", "customer_id": customer, "principal": "1000.00", "currency": "USD",
               "interest_rate": "5.5", "term_months": 12, "loan_id": "loan_cmd_1"}),
    );
    send(&s.bus, Topic::CommandsLoans, &originate).await;
    let originated = caused_by(&s.bus, Topic::LoansOriginated, &originate).await;
    assert_eq!(text(&originated[0], "account_id"), account.as_str());
    let disburse = command("loan_command", "loan_cmd_1", json!({"action": "disburse", "loan_id": "loan_cmd_1"}));
    send(&s.bus, Topic::CommandsLoans, &disburse).await;
    caused_by(&s.bus, Topic::LoansDisbursed, &disburse).await;
    let payment = command(
        "loan_command",
        "loan_cmd_1",
        json!({"action": "payment", "loan_id": "loan_cmd_1", "amount": "100.00", "currency": "USD"}),
    );
    send(&s.bus, Topic::CommandsLoans, &payment).await;
    caused_by(&s.bus, Topic::LoansPayment, &payment).await;
    // Every command was audited under its own cause.
    for c in [&update, &savings, &withdraw, &transfer, &overdraw, &originate, &disburse, &payment] {
        assert_eq!(caused_by(&s.bus, Topic::AuditEvents, c).await.len(), 1);
    }
}

#[tokio::test]
async fn a_redelivered_command_has_one_effect() {
    let s = service().await;
    let (_, account) = customer_with_account(&s, "0").await;
    let deposit = command(
        "transaction_command",
        account.as_str(),
        json!({"action": "deposit", "account_id": account, "amount": "10.00", "currency": "USD"}),
    );

    // Given a command carried out once,
    send(&s.bus, Topic::CommandsTransactions, &deposit).await;
    caused_by(&s.bus, Topic::TransactionsPosted, &deposit).await;
    // when it is delivered again, to this handler and to a fresh one (as after a restart),
    send(&s.bus, Topic::CommandsTransactions, &deposit).await;
    let restarted = NexumCommandHandler::new(s.system.bank().clone(), Arc::new(ManualClock::at(at(1, 0))));
    let topic = Topic::CommandsTransactions.name();
    let again = restarted.handle(&topic, &deposit, "elsewhere").await.unwrap();
    s.system.flush().await.unwrap();

    // then it is recognised, and the money moved once.
    assert_eq!(again, CommandOutcome::Duplicate);
    assert_eq!(s.system.bank().account(&account).await.unwrap().unwrap().balance, "10.00".parse().unwrap());
    assert_eq!(caused_by(&s.bus, Topic::TransactionsPosted, &deposit).await.len(), 1);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_command_have_one_effect() {
    let s = service().await;
    let (_, account) = customer_with_account(&s, "0").await;
    let deposit = command(
        "transaction_command",
        account.as_str(),
        json!({"action": "deposit", "account_id": account, "amount": "10.00", "currency": "USD"}),
    );
    let topic = Topic::CommandsTransactions.name();

    let deliveries: Vec<_> = (0..8)
        .map(|i| {
            let handler = NexumCommandHandler::new(s.system.bank().clone(), Arc::new(ManualClock::at(at(0, 12))));
            let (topic, deposit) = (topic.clone(), deposit.clone());
            tokio::spawn(async move { handler.handle(&topic, &deposit, &format!("copy/{i}")).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for delivery in deliveries {
        outcomes.push(delivery.await.unwrap());
    }

    assert_eq!(outcomes.iter().filter(|o| **o == CommandOutcome::Executed).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, CommandOutcome::Executed | CommandOutcome::Duplicate)));
    assert_eq!(s.system.bank().account(&account).await.unwrap().unwrap().balance, "10.00".parse().unwrap());
}

#[tokio::test]
async fn a_command_the_bank_refuses_is_answered_with_a_rejection_naming_the_reason() {
    let s = service().await;
    let cases = [
        (
            json!({"action": "deposit", "account_id": "acc_nowhere", "amount": "1.00", "currency": "USD"}),
            "unknown_account",
        ),
        (json!({"action": "deposit", "account_id": "acc_x", "amount": "-5", "currency": "USD"}), "invalid_amount"),
        (json!({"action": "deposit", "account_id": "acc_x", "amount": "1e400", "currency": "USD"}), "invalid_amount"),
        (
            json!({"action": "deposit", "account_id": "acc_x", "amount": "99999999999999", "currency": "USD"}),
            "invalid_amount",
        ),
        (json!({"action": "deposit", "account_id": "acc_x", "amount": "1.00", "currency": "XXQ"}), "invalid_amount"),
    ];
    for (data, code) in cases {
        let refused = command("transaction_command", "acc_x", data.clone());
        send(&s.bus, Topic::CommandsTransactions, &refused).await;

        let rejection = &caused_by(&s.bus, Topic::CommandsRejected, &refused).await[0];
        assert_eq!(text(rejection, "error_code"), code, "{data}");
        assert_eq!(text(rejection, "action"), "deposit");
        assert_eq!(rejection.entity_id, refused.event_id.as_ref().unwrap().to_string());
        assert!(!text(rejection, "reason").is_empty());
    }
    // A refusal of valid input is not a malformed message: nothing is dead-lettered.
    assert!(s.bus.get_events(Some(&Topic::CommandsTransactions.dlq())).is_empty());
}

#[tokio::test]
async fn malformed_commands_are_rejected_and_dead_lettered_with_the_reason_and_the_handler_goes_on() {
    let s = service().await;
    let (_, account) = customer_with_account(&s, "0").await;
    let malformed = [
        (json!({"action": "deposit", "amount": "1.00", "currency": "USD"}), "malformed", "account_id"),
        (
            json!({"action": "deposit", "account_id": account, "amount": 1.5, "currency": "USD"}),
            "malformed",
            "expected a string",
        ),
        (json!({"action": "teleport", "account_id": account}), "unknown_action", "teleport"),
        (json!({"account_id": account}), "missing_action", "deposit, withdraw, transfer"),
    ];
    let mut sent = Vec::new();
    for (data, code, mentions) in malformed {
        let bad = command("transaction_command", account.as_str(), data);
        send(&s.bus, Topic::CommandsTransactions, &bad).await;
        sent.push((bad, code, mentions));
    }
    // Invalid JSON never becomes an event: the bus dead-letters it, and it is rejected from there.
    s.bus
        .publish_bytes(&Topic::CommandsTransactions.name(), Some("k"), Bytes::from_static(b"{\"event_id\": "))
        .await
        .unwrap();
    // A valid command after them is still carried out.
    let deposit = command(
        "transaction_command",
        account.as_str(),
        json!({"action": "deposit", "account_id": account, "amount": "5.00", "currency": "USD"}),
    );
    send(&s.bus, Topic::CommandsTransactions, &deposit).await;

    for (bad, code, mentions) in &sent {
        let rejection = &caused_by(&s.bus, Topic::CommandsRejected, bad).await[0];
        assert_eq!(text(rejection, "error_code"), *code);
        assert!(text(rejection, "reason").contains(mentions), "{}", text(rejection, "reason"));
    }
    let letters = dead_letters(&s.bus, Topic::CommandsTransactions, 5).await;
    assert_eq!(letters.len(), 5);
    for (bad, _, mentions) in &sent {
        let letter = letters
            .iter()
            .find(|l| {
                l.data
                    .get("original_event")
                    .is_some_and(|e| e["event_id"] == bad.event_id.as_ref().unwrap().to_string())
            })
            .expect("a dead letter per malformed command");
        assert_eq!(text(letter, "error_kind"), "rejected");
        assert!(text(letter, "error").contains(mentions));
    }
    let undecodable = letters.iter().find(|l| text(l, "error_kind") == "undecodable").expect("the invalid JSON");
    let rejected_json = first(&s.bus, Topic::CommandsRejected, |r| text(r, "error_code") == "undecodable").await;
    assert_eq!(text(&rejected_json, "topic"), "nexum.commands.transactions");
    assert!(!text(undecodable, "error").is_empty());
    assert_eq!(text(&caused_by(&s.bus, Topic::TransactionsPosted, &deposit).await[0], "final_balance"), "5.00");
}

#[tokio::test]
async fn a_rejection_is_recorded_once_even_when_the_malformed_command_comes_again() {
    let s = service().await;
    let bad = command("customer_command", "x", json!({"action": "create", "first_name": "J"}));
    let topic: TopicName = Topic::CommandsCustomers.name();

    let first = s.handler.handle(&topic, &bad, "here").await;
    let second = s.handler.handle(&topic, &bad, "here").await;
    s.system.flush().await.unwrap();

    assert!(first.unwrap_err().is_permanent());
    assert!(second.unwrap_err().is_permanent(), "dead-lettered again: the first letter may have been lost");
    assert_eq!(s.bus.get_events(Some(&Topic::CommandsRejected.name())).len(), 1);
    let stored = s.store.read_all(1, 10_000).await.unwrap();
    assert_eq!(stored.iter().filter(|e| e.event.event_type.as_str() == "command_rejected").count(), 1);
}

#[tokio::test]
async fn a_command_whose_event_id_is_unusable_is_rejected_under_the_id_its_sender_gave() {
    // Given a deposit whose event_id is no usable command id (a space and a slash in it)
    let s = service().await;
    let mut bad = command(
        "transaction_command",
        "acc_x",
        json!({"action": "deposit", "account_id": "acc_x", "amount": "5.00", "currency": "USD"}),
    );
    bad.event_id = Some("order 17/a".parse().unwrap());

    // When it is sent
    send(&s.bus, Topic::CommandsTransactions, &bad).await;

    // Then its rejection names the sender's own id as its cause, and says what is wrong
    let rejection = &caused_by(&s.bus, Topic::CommandsRejected, &bad).await[0];
    assert_eq!(text(rejection, "error_code"), "invalid_event_id");
    assert!(text(rejection, "reason").contains("order 17/a"), "{}", text(rejection, "reason"));
}
