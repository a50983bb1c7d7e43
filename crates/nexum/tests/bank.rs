//! The banking core, given / when / then over the events it records.

mod common;

use common::*;
use eventbus::Topic;
use nexum::bank::{
    AccountUpdate, BankError, CustomerUpdate, LoanApplication, LoanDecision, NewAccount, NewCustomer,
    TransactionStatus, parse_amount,
};
use nexum::domain::{AccountStatus, AccountType, FailureReason, KycStatus, KycTier, LoanStatus, PaymentFrequency};
use nexum::events::{NexumEvent, Payload};
use nexum::store::EventStore;
use rust_decimal::Decimal;

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

#[tokio::test]
async fn a_deposit_is_created_then_posted_with_a_balanced_journal_entry_and_an_audit_record() {
    let f = bank();
    let (_, account) = funded(&f.bank, "1000.00").await;
    let before = all_events(&*f.store).await.len();

    let receipt = f
        .bank
        .deposit(&ctx(), &account.id, usd("100.50"), Some("Cash deposit".into()), Some("REF123".into()))
        .await
        .unwrap();

    let TransactionStatus::Posted { final_balance, .. } = receipt.status else { panic!("not posted") };
    assert_eq!(final_balance.to_string(), "1100.50");
    let events = all_events(&*f.store).await.split_off(before);
    assert_eq!(types(&events), ["transaction_created", "transaction_posted", "audit_event_recorded"]);
    let posted = &events[1].event;
    assert_eq!(posted.data["amount"], "100.50");
    assert_eq!(posted.data["final_balance"], "1100.50");
    assert_eq!(posted.data["to_account_id"], account.id.as_str());
    assert_eq!(posted.version(), "2.0");
    assert_eq!(posted.metadata["correlation_id"], "corr_123");
    assert_eq!(posted.metadata["user_id"], "teller_1");
    assert_eq!(events[1].topic, Topic::TransactionsPosted.name());
    let audit = &events[2].event.data;
    assert_eq!(audit["command"], "deposit");
    assert_eq!(audit["actor"], "teller_1");
    assert_eq!(audit["event_types"], serde_json::json!(["transaction_created", "transaction_posted"]));
    assert_eq!(f.bank.account(&account.id).await.unwrap().unwrap().balance, dec("1100.50"));
}

#[tokio::test]
async fn a_withdrawal_beyond_the_balance_fails_with_insufficient_funds_and_moves_nothing() {
    let f = bank();
    let (_, account) = funded(&f.bank, "50.00").await;

    let receipt = f.bank.withdraw(&ctx(), &account.id, usd("50.01"), None, None).await.unwrap();

    assert_eq!(receipt.status, TransactionStatus::Failed { reason: FailureReason::InsufficientFunds });
    let events = all_events(&*f.store).await;
    let failed = events.iter().find(|e| e.event.event_type.as_str() == "transaction_failed").unwrap();
    assert_eq!(failed.event.data["reason"], "insufficient_funds");
    assert_eq!(failed.event.data["error_message"], "insufficient funds");
    assert_eq!(f.bank.account(&account.id).await.unwrap().unwrap().balance, dec("50.00"));
}

#[tokio::test]
async fn an_overdraft_lets_a_checking_account_go_below_zero_down_to_its_limit() {
    let f = bank();
    let customer = customer(&f.bank, KycStatus::Verified, KycTier::Tier2).await;
    let account = account(&f.bank, &customer, AccountType::Checking, Some("100.00")).await;

    let within = f.bank.withdraw(&ctx(), &account.id, usd("100.00"), None, None).await.unwrap();
    let beyond = f.bank.withdraw(&ctx(), &account.id, usd("0.01"), None, None).await.unwrap();

    assert!(within.is_posted());
    assert_eq!(beyond.status, TransactionStatus::Failed { reason: FailureReason::InsufficientFunds });
    assert_eq!(f.bank.account(&account.id).await.unwrap().unwrap().balance, dec("-100.00"));
}

#[tokio::test]
async fn a_transfer_debits_one_account_credits_the_other_and_links_into_both_streams() {
    let f = bank();
    let (customer, from) = funded(&f.bank, "500.00").await;
    let to = account(&f.bank, &customer, AccountType::Savings, None).await;

    let receipt = f.bank.transfer(&ctx(), &from.id, &to.id, usd("200.00"), None, None).await.unwrap();

    assert!(receipt.is_posted());
    assert_eq!(f.bank.account(&from.id).await.unwrap().unwrap().balance, dec("300.00"));
    assert_eq!(f.bank.account(&to.id).await.unwrap().unwrap().balance, dec("200.00"));
    for id in [&from.id, &to.id] {
        let stream = nexum::store::StreamId::of("account", id);
        let events = f.store.read(&stream, 1).await.unwrap();
        assert_eq!(events.last().unwrap().event.event_type.as_str(), "transaction_posted");
    }
}

#[tokio::test]
async fn frozen_closed_and_foreign_currency_transactions_fail_with_their_reason() {
    let f = bank();
    let (customer, account) = funded(&f.bank, "10.00").await;
    let empty = common::account(&f.bank, &customer, AccountType::Savings, None).await;

    f.bank.freeze_account(&ctx(), &account.id).await.unwrap();
    let frozen = f.bank.deposit(&ctx(), &account.id, usd("1.00"), None, None).await.unwrap();
    f.bank.close_account(&ctx(), &empty.id).await.unwrap();
    let closed = f.bank.deposit(&ctx(), &empty.id, usd("1.00"), None, None).await.unwrap();
    f.bank.unfreeze_account(&ctx(), &account.id).await.unwrap();
    let euros = f.bank.deposit(&ctx(), &account.id, money("1.00", "EUR"), None, None).await.unwrap();

    assert_eq!(frozen.status, TransactionStatus::Failed { reason: FailureReason::AccountFrozen });
    assert_eq!(closed.status, TransactionStatus::Failed { reason: FailureReason::AccountClosed });
    assert_eq!(euros.status, TransactionStatus::Failed { reason: FailureReason::CurrencyMismatch });
    assert_eq!(f.bank.account(&account.id).await.unwrap().unwrap().balance, dec("10.00"));
}

#[tokio::test]
async fn a_customer_is_held_to_the_limit_of_their_kyc_tier() {
    let f = bank();
    let pending = customer(&f.bank, KycStatus::Pending, KycTier::Tier1).await;
    let account = account(&f.bank, &pending, AccountType::Checking, None).await;

    let over = f.bank.deposit(&ctx(), &account.id, usd("2000.01"), None, None).await.unwrap();
    let at_limit = f.bank.deposit(&ctx(), &account.id, usd("2000.00"), None, None).await.unwrap();
    f.bank.change_kyc(&ctx(), &pending.id, KycStatus::Rejected, KycTier::Tier1).await.unwrap();
    let rejected = f.bank.deposit(&ctx(), &account.id, usd("1.00"), None, None).await.unwrap();

    assert_eq!(over.status, TransactionStatus::Failed { reason: FailureReason::KycLimitExceeded });
    assert!(at_limit.is_posted());
    assert_eq!(rejected.status, TransactionStatus::Failed { reason: FailureReason::KycLimitExceeded });
}

#[tokio::test]
async fn a_kyc_change_records_old_and_new_status_and_tier_as_in_the_seed() {
    let f = bank();
    let customer = customer(&f.bank, KycStatus::Pending, KycTier::Tier1).await;

    f.bank.change_kyc(&ctx(), &customer.id, KycStatus::Verified, KycTier::Tier2).await.unwrap();

    let events = all_events(&*f.store).await;
    let change = events.iter().find(|e| e.event.event_type.as_str() == "kyc_status_changed").unwrap();
    assert_eq!(change.topic, Topic::CustomersKycChanged.name());
    assert_eq!(
        serde_json::Value::Object(change.event.data.clone()),
        serde_json::json!({"old_status": "pending", "new_status": "verified", "old_tier": "tier_1", "new_tier": "tier_2"})
    );
    let again = f.bank.change_kyc(&ctx(), &customer.id, KycStatus::Verified, KycTier::Tier2).await;
    assert!(matches!(again, Err(BankError::InvalidState(_))));
}

#[tokio::test]
async fn a_transaction_of_ten_thousand_or_more_raises_a_compliance_alert() {
    let f = bank();
    let (_, account) = funded(&f.bank, "0").await;

    f.bank.deposit(&ctx(), &account.id, usd("9999.99"), None, None).await.unwrap();
    f.bank.deposit(&ctx(), &account.id, usd("10000.00"), None, None).await.unwrap();

    let alerts: Vec<_> = all_events(&*f.store)
        .await
        .into_iter()
        .filter(|e| e.event.event_type.as_str() == "compliance_alert_raised")
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].event.data["amount"], "10000.00");
    assert_eq!(alerts[0].event.data["threshold"], "10000");
    assert_eq!(alerts[0].topic, Topic::ComplianceAlert.name());
}

#[tokio::test]
async fn three_deposits_just_below_the_threshold_within_24_hours_are_reported_once_as_structuring() {
    let f = bank();
    let (_, account) = funded(&f.bank, "0").await;

    for hour in [1, 8, 20, 22] {
        let ctx = nexum::Ctx::at(at(0, hour));
        f.bank.deposit(&ctx, &account.id, usd("9500.00"), None, None).await.unwrap();
    }

    let reports: Vec<_> = all_events(&*f.store)
        .await
        .into_iter()
        .filter(|e| e.event.event_type.as_str() == "suspicious_activity_detected")
        .collect();
    assert_eq!(reports.len(), 1, "reported once per window");
    let data = &reports[0].event.data;
    assert_eq!(data["activity_type"], "structuring");
    assert_eq!(data["transaction_ids"].as_array().unwrap().len(), 3);
    assert_eq!(data["total_amount"], "28500.00");
}

#[tokio::test]
async fn deposits_just_below_the_threshold_spread_over_days_are_not_structuring() {
    let f = bank();
    let (_, account) = funded(&f.bank, "0").await;

    for day in 0..4 {
        f.bank.deposit(&nexum::Ctx::at(at(day, 9)), &account.id, usd("9500.00"), None, None).await.unwrap();
    }

    let events = all_events(&*f.store).await;
    assert!(!types(&events).contains(&"suspicious_activity_detected"));
}

fn application(
    customer: &nexum::domain::Customer,
    account: &nexum::domain::Account,
    principal: &str,
) -> LoanApplication {
    LoanApplication {
        loan_id: None,
        customer_id: customer.id.clone(),
        account_id: account.id.clone(),
        principal: usd(principal),
        interest_rate: dec("5.5"),
        term_months: 12,
        payment_frequency: PaymentFrequency::Monthly,
    }
}

/// A verified customer's 12-month loan of `principal` at 5.5%, paid out into a new checking account.
async fn disbursed_loan(bank: &nexum::Bank, principal: &str) -> nexum::ids::LoanId {
    let (customer, account) = funded(bank, "0").await;
    let LoanDecision::Approved { loan_id, .. } =
        bank.originate_loan(&ctx(), application(&customer, &account, principal)).await.unwrap()
    else {
        panic!("rejected")
    };
    bank.disburse_loan(&ctx(), &loan_id).await.unwrap();
    loan_id
}

#[tokio::test]
async fn a_loan_for_a_customer_without_verified_kyc_is_rejected_by_the_approval_workflow() {
    let f = bank();
    let pending = customer(&f.bank, KycStatus::Pending, KycTier::Tier1).await;
    let account = account(&f.bank, &pending, AccountType::Checking, None).await;

    let decision = f.bank.originate_loan(&ctx(), application(&pending, &account, "1000.00")).await.unwrap();

    let LoanDecision::Rejected { step, .. } = decision else { panic!("approved") };
    assert_eq!(step, "kyc_verified");
    let events = all_events(&*f.store).await;
    assert!(types(&events).contains(&"workflow_rejected"));
    assert!(!types(&events).contains(&"loan_originated"));
}

#[tokio::test]
async fn a_loan_is_approved_disbursed_repaid_in_interest_and_principal_and_paid_off() {
    let f = bank();
    let (customer, account) = funded(&f.bank, "0").await;

    let decision = f.bank.originate_loan(&ctx(), application(&customer, &account, "1200.00")).await.unwrap();
    let LoanDecision::Approved { loan_id, loan_account_id, .. } = decision else { panic!("rejected") };
    let disbursed = f.bank.disburse_loan(&ctx(), &loan_id).await.unwrap();
    let loan = f.bank.loan(&loan_id).await.unwrap().unwrap();

    assert!(disbursed.is_posted());
    assert_eq!(loan.status, LoanStatus::Active);
    assert_eq!(loan.terms.schedule.len(), 12);
    assert_eq!(f.bank.account(&account.id).await.unwrap().unwrap().balance, dec("1200.00"));
    assert_eq!(f.bank.account(&loan_account_id).await.unwrap().unwrap().balance, dec("-1200.00"));

    // The first payment pays one month of interest (1200 × 5.5% / 12 = 5.50) first.
    let first = loan.terms.schedule[0].payment;
    f.bank.pay_loan(&ctx(), &loan_id, usd(&first.to_string())).await.unwrap();
    let events = all_events(&*f.store).await;
    let payment = events.iter().rev().find(|e| e.event.event_type.as_str() == "loan_payment_received").unwrap();
    assert_eq!(payment.event.data["interest_portion"], "5.50");
    assert_eq!(payment.event.data["principal_portion"], (first - dec("5.50")).to_string());

    // Paying what is left, interest included, pays the loan off.
    let loan = f.bank.loan(&loan_id).await.unwrap().unwrap();
    f.bank.deposit(&ctx(), &account.id, usd("100.00"), None, None).await.unwrap();
    let rest = loan.outstanding_principal + loan.interest_due();
    f.bank.pay_loan(&ctx(), &loan_id, usd(&rest.to_string())).await.unwrap();

    let loan = f.bank.loan(&loan_id).await.unwrap().unwrap();
    assert_eq!(loan.status, LoanStatus::PaidOff);
    assert_eq!(f.bank.account(&loan_account_id).await.unwrap().unwrap().balance, Decimal::ZERO);
    assert!(types(&all_events(&*f.store).await).contains(&"loan_paid_off"));
    let overpay = f.bank.pay_loan(&ctx(), &loan_id, usd("1.00")).await;
    assert!(matches!(overpay, Err(BankError::InvalidState(_))));
}

#[tokio::test]
async fn missed_payments_open_a_case_escalate_it_and_default_the_loan_and_a_payment_resolves_it() {
    let f = bank();
    let loan_id = disbursed_loan(&f.bank, "1200.00").await;

    let on_time = f.bank.check_overdue(&nexum::Ctx::at(at(20, 9)), &loan_id).await.unwrap();
    let one_late = f.bank.check_overdue(&nexum::Ctx::at(at(35, 9)), &loan_id).await.unwrap();
    let same_again = f.bank.check_overdue(&nexum::Ctx::at(at(36, 9)), &loan_id).await.unwrap();
    let two_late = f.bank.check_overdue(&nexum::Ctx::at(at(63, 9)), &loan_id).await.unwrap();

    assert_eq!((on_time.missed_payments, on_time.case_id.is_some()), (0, false));
    assert_eq!(one_late.missed_payments, 1);
    let case_id = one_late.case_id.clone().unwrap();
    assert_eq!(same_again, one_late, "nothing new is overdue: nothing is written");
    assert_eq!(two_late.case_id.as_ref(), Some(&case_id));
    assert_eq!(f.bank.collection_case(&case_id).await.unwrap().unwrap().level, 2);

    // A token payment does not bring the loan up to date: the case stays open.
    f.bank.pay_loan(&nexum::Ctx::at(at(64, 9)), &loan_id, usd("0.01")).await.unwrap();
    assert!(f.bank.collection_case(&case_id).await.unwrap().unwrap().open);
    // Paying both overdue installments does, and resolves it.
    let schedule = f.bank.loan(&loan_id).await.unwrap().unwrap().terms.schedule;
    let catch_up = schedule[0].payment + schedule[1].payment - dec("0.01");
    f.bank.pay_loan(&nexum::Ctx::at(at(64, 9)), &loan_id, usd(&catch_up.to_string())).await.unwrap();
    assert!(!f.bank.collection_case(&case_id).await.unwrap().unwrap().open);
    assert_eq!(f.bank.loan(&loan_id).await.unwrap().unwrap().missed_payments, 0);

    let defaulted = f.bank.check_overdue(&nexum::Ctx::at(at(160, 9)), &loan_id).await.unwrap();
    assert!(defaulted.defaulted);
    assert_eq!(f.bank.loan(&loan_id).await.unwrap().unwrap().status, LoanStatus::Defaulted);
    let events = all_events(&*f.store).await;
    let kinds = types(&events);
    for expected in
        ["collection_case_created", "collection_case_escalated", "collection_case_resolved", "loan_defaulted"]
    {
        assert!(kinds.contains(&expected), "{expected} missing");
    }
}

#[tokio::test]
async fn a_credit_account_gets_a_statement_with_a_minimum_payment_and_is_paid_from_checking() {
    let f = bank();
    let (customer, checking) = funded(&f.bank, "1000.00").await;
    let credit = account(&f.bank, &customer, AccountType::Credit, Some("5000.00")).await;
    f.bank.withdraw(&ctx(), &credit.id, usd("2000.00"), Some("Card purchases".into()), None).await.unwrap();

    let statement =
        f.bank.generate_statement(&nexum::Ctx::at(at(31, 9)), &credit.id, at(30, 0).date_naive()).await.unwrap();
    let paid = f.bank.pay_credit(&ctx(), &checking.id, &credit.id, usd("500.00")).await.unwrap();

    assert_eq!(statement.closing_balance, dec("-2000.00"));
    assert_eq!(statement.minimum_payment, dec("40.00"));
    assert!(paid.is_posted());
    assert_eq!(f.bank.account(&credit.id).await.unwrap().unwrap().balance, dec("-1500.00"));
    assert_eq!(f.bank.account(&checking.id).await.unwrap().unwrap().balance, dec("500.00"));
    let events = all_events(&*f.store).await;
    let payment = events.iter().find(|e| e.event.event_type.as_str() == "credit_payment_received").unwrap();
    assert_eq!(payment.event.data["new_balance"], "-1500.00");
    let again = f.bank.generate_statement(&nexum::Ctx::at(at(31, 9)), &credit.id, at(30, 0).date_naive()).await;
    assert!(matches!(again, Err(BankError::InvalidState(_))));
    let future = f.bank.generate_statement(&nexum::Ctx::at(at(31, 9)), &credit.id, at(90, 0).date_naive()).await;
    assert!(matches!(future, Err(BankError::InvalidInput { field: "period_end", .. })));
    let fresh = account(&f.bank, &customer, AccountType::Credit, Some("100.00")).await;
    let ancient = f.bank.generate_statement(&nexum::Ctx::at(at(31, 9)), &fresh.id, chrono::NaiveDate::MIN).await;
    assert!(matches!(ancient, Err(BankError::InvalidInput { field: "period_end", .. })));
    let itself = f.bank.pay_credit(&ctx(), &credit.id, &credit.id, usd("1.00")).await;
    assert!(matches!(itself, Err(BankError::InvalidInput { field: "from_account_id", .. })));
}

#[tokio::test]
async fn bad_amounts_are_refused_with_a_typed_error() {
    for (amount, currency) in [
        ("abc", "USD"),
        ("-5", "USD"),
        ("0", "USD"),
        ("1e400", "USD"),
        ("1.001", "USD"),
        ("1.5", "JPY"),
        ("1000000000000.01", "USD"),
        ("1", "XYZ"),
    ] {
        let result = parse_amount(amount, currency);
        assert!(matches!(result, Err(BankError::InvalidAmount { .. })), "{amount} {currency}: {result:?}");
    }
}

#[test]
fn a_refused_amount_or_currency_keeps_the_money_error_as_its_source() {
    use std::error::Error as _;

    let too_precise = parse_amount("1.001", "USD").unwrap_err();
    let unknown_currency = nexum::bank::parse_currency("XYZ").unwrap_err();
    let negative = parse_amount("-5", "USD").unwrap_err();

    for error in [&too_precise, &unknown_currency] {
        let source = error.source().expect("a money error is the source");
        assert!(source.downcast_ref::<eventbus::MoneyError>().is_some(), "{source:?}");
        assert!(error.to_string().ends_with(&source.to_string()), "{error}");
    }
    assert!(matches!(unknown_currency, BankError::InvalidInput { field: "currency", .. }));
    // Refused by the bank's own rule, not by the money type: no source.
    assert!(matches!(negative, BankError::InvalidAmount { source: None, .. }), "{negative:?}");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_typed_error_and_writes_nothing() {
    let f = bank();
    let (customer, account) = funded(&f.bank, "100.00").await;
    let empty = common::account(&f.bank, &customer, AccountType::Savings, None).await;
    f.bank.close_account(&ctx(), &empty.id).await.unwrap();
    let before = all_events(&*f.store).await;
    let outbox = f.store.outbox_len().await.unwrap();
    let ctx = ctx();
    let unknown_account: nexum::ids::AccountId = "acc_nope".parse().unwrap();
    let unknown_customer: nexum::ids::CustomerId = "cust_nope".parse().unwrap();

    let refused = [
        f.bank.deposit(&ctx, &unknown_account, usd("1.00"), None, None).await.err(),
        f.bank
            .withdraw(&ctx, &account.id, eventbus::Money::new(dec("-5"), "USD".parse().unwrap()).unwrap(), None, None)
            .await
            .err(),
        f.bank.transfer(&ctx, &account.id, &account.id, usd("1.00"), None, None).await.err(),
        f.bank
            .open_account(
                &ctx,
                NewAccount {
                    id: None,
                    customer_id: unknown_customer.clone(),
                    account_type: AccountType::Checking,
                    currency: "USD".parse().unwrap(),
                    name: None,
                    overdraft_limit: None,
                },
            )
            .await
            .err(),
        f.bank
            .open_account(
                &ctx,
                NewAccount {
                    id: Some(account.id.clone()),
                    customer_id: customer.id.clone(),
                    account_type: AccountType::Checking,
                    currency: "USD".parse().unwrap(),
                    name: None,
                    overdraft_limit: None,
                },
            )
            .await
            .err(),
        f.bank
            .create_customer(
                &ctx,
                NewCustomer {
                    id: Some(customer.id.clone()),
                    first_name: "Jane".into(),
                    last_name: "Smith".into(),
                    email: "jane@example.com".into(),
                    phone: None,
                },
            )
            .await
            .err(),
        f.bank
            .create_customer(
                &ctx,
                NewCustomer {
                    first_name: "Jane".into(),
                    last_name: "".into(),
                    email: "x".into(),
                    ..Default::default()
                },
            )
            .await
            .err(),
        f.bank
            .update_customer(
                &ctx,
                &unknown_customer,
                CustomerUpdate { email: Some("a@b.co".into()), ..Default::default() },
            )
            .await
            .err(),
        f.bank
            .update_account(&ctx, &empty.id, AccountUpdate { name: Some("Holiday".into()), ..Default::default() })
            .await
            .err(),
        f.bank.freeze_account(&ctx, &empty.id).await.err(),
        f.bank.close_account(&ctx, &account.id).await.err(),
        f.bank.change_kyc(&ctx, &unknown_customer, KycStatus::Verified, KycTier::Tier2).await.err(),
    ];

    let kinds: Vec<String> = refused
        .iter()
        .map(|e| format!("{:?}", e.as_ref().expect("refused")).split([' ', '(', '{']).next().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "UnknownAccount",
            "InvalidAmount",
            "InvalidInput",
            "UnknownCustomer",
            "AlreadyExists",
            "AlreadyExists",
            "InvalidInput",
            "UnknownCustomer",
            "AccountClosed",
            "AccountClosed",
            "InvalidState",
            "UnknownCustomer",
        ]
    );
    assert_eq!(all_events(&*f.store).await, before, "nothing written");
    assert_eq!(f.store.outbox_len().await.unwrap(), outbox);
}

#[tokio::test]
async fn an_account_update_and_freeze_are_recorded_with_the_change_and_old_status() {
    let f = bank();
    let (_, account) = funded(&f.bank, "0").await;

    f.bank
        .update_account(
            &ctx(),
            &account.id,
            AccountUpdate { name: Some("Bills".into()), overdraft_limit: Some(usd("250.00")) },
        )
        .await
        .unwrap();
    let frozen = f.bank.freeze_account(&ctx(), &account.id).await.unwrap();

    assert_eq!(frozen.status, AccountStatus::Frozen);
    assert_eq!(frozen.name.as_deref(), Some("Bills"));
    assert_eq!(frozen.overdraft_limit, dec("250.00"));
    let events = all_events(&*f.store).await;
    let updates: Vec<_> = events.iter().filter(|e| e.event.event_type.as_str() == "account_updated").collect();
    assert_eq!(updates[1].event.data["change"], "frozen");
    assert_eq!(updates[1].event.data["old_status"], "active");
}

#[tokio::test]
async fn a_customer_update_records_the_customer_as_it_is_after_the_change() {
    let f = bank();
    let customer = customer(&f.bank, KycStatus::Verified, KycTier::Tier2).await;

    let updated = f
        .bank
        .update_customer(
            &ctx(),
            &customer.id,
            CustomerUpdate { email: Some("jane.smith@example.com".into()), ..Default::default() },
        )
        .await
        .unwrap();

    assert_eq!(updated.details.email, "jane.smith@example.com");
    assert_eq!(updated.details.kyc_status, KycStatus::Verified);
    let events = all_events(&*f.store).await;
    let event = events.iter().find(|e| e.event.event_type.as_str() == "customer_updated").unwrap();
    let decoded = NexumEvent::from_schema(&event.event).unwrap();
    assert_eq!(decoded.payload, Payload::CustomerUpdated(updated.details));
}

#[tokio::test]
async fn a_second_bank_over_the_same_store_sees_the_same_state_and_wins_races_by_deciding_again() {
    let f = bank();
    let (_, account) = funded(&f.bank, "100.00").await;
    let other = nexum::Bank::new(f.store.clone());
    // The other bank caches the account, then the first one changes it.
    assert_eq!(other.account(&account.id).await.unwrap().unwrap().balance, dec("100.00"));
    f.bank.deposit(&ctx(), &account.id, usd("1.00"), None, None).await.unwrap();

    // Its cache is stale; its commit conflicts, it reads again and decides again.
    let receipt = other.withdraw(&ctx(), &account.id, usd("101.00"), None, None).await.unwrap();

    assert!(receipt.is_posted(), "{receipt:?}");
    assert_eq!(f.store.read(&nexum::store::StreamId::of("account", &account.id), 1).await.unwrap().len(), 4);
    assert_eq!(nexum::Bank::new(f.store.clone()).account(&account.id).await.unwrap().unwrap().balance, Decimal::ZERO);
}

#[tokio::test]
async fn several_payments_in_one_installment_pay_its_interest_once() {
    let f = bank();
    let loan_id = disbursed_loan(&f.bank, "1200.00").await;

    for _ in 0..5 {
        f.bank.pay_loan(&ctx(), &loan_id, usd("5.50")).await.unwrap();
    }

    let loan = f.bank.loan(&loan_id).await.unwrap().unwrap();
    assert_eq!(loan.total_interest_paid, dec("5.50"), "one month of interest, charged once");
    assert_eq!(loan.outstanding_principal, dec("1178.00"));
    assert_eq!(nexum::Bank::new(f.store.clone()).loan(&loan_id).await.unwrap().unwrap(), loan);
}

#[tokio::test]
async fn a_long_or_binary_description_is_refused() {
    let f = bank();
    let (_, account) = funded(&f.bank, "10.00").await;

    let long = f.bank.deposit(&ctx(), &account.id, usd("1.00"), Some("x".repeat(501)), None).await;
    let control = f.bank.withdraw(&ctx(), &account.id, usd("1.00"), None, Some("REF\u{0}".into())).await;

    assert!(matches!(long, Err(BankError::InvalidInput { field: "description", .. })));
    assert!(matches!(control, Err(BankError::InvalidInput { field: "reference", .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deposits_to_one_account_all_post_and_the_balance_is_their_sum() {
    let f = bank();
    let (_, account) = funded(&f.bank, "0").await;
    let bank = std::sync::Arc::new(f.bank);

    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (bank, id) = (bank.clone(), account.id.clone());
            tokio::spawn(async move { bank.deposit(&ctx(), &id, usd("1.00"), None, None).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().is_posted());
    }

    assert_eq!(bank.account(&account.id).await.unwrap().unwrap().balance, dec("32.00"));
    assert_eq!(nexum::Bank::new(f.store.clone()).account(&account.id).await.unwrap().unwrap().balance, dec("32.00"));
}
