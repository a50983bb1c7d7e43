//! The banking core, given / when / then over the events it records: given the facts (events,
//! or operations run first), when one operation runs, then the events it recorded or the error
//! it refused with. The tests of concurrency and of a second bank over one store run over the
//! SQLite fixture instead, as the bank runs in production.

mod common;

use common::given::{CHECKING, JANE, SAVINGS, acc, account, cust, customer, funded};
use common::{at, bank, ctx, money, usd};
use eventbus::Topic;
use nexum::Ctx;
use nexum::bank::{
    AccountUpdate, BankError, CustomerUpdate, LoanApplication, LoanDecision, NewAccount, NewCustomer,
    TransactionStatus, parse_amount,
};
use nexum::domain::{AccountStatus, AccountType, FailureReason, KycStatus, KycTier, LoanStatus, PaymentFrequency};
use nexum::events::Payload;
use nexum::ids::{AccountId, CustomerId, LoanId};
use nexum::store::EventStore;
use nexum::testing::BankTest;
use rust_decimal::Decimal;
use serde_json::json;

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// What a deposit or withdrawal that posts records.
const POSTED: [&str; 3] = ["transaction_created", "transaction_posted", "audit_event_recorded"];
/// What one that cannot go through records.
const FAILED: [&str; 3] = ["transaction_created", "transaction_failed", "audit_event_recorded"];

#[tokio::test]
async fn a_deposit_is_created_then_posted_with_a_balanced_journal_entry_and_an_audit_record() {
    let t = BankTest::new().given(funded("1000.00")).await;

    let (description, reference) = (Some("Cash deposit".into()), Some("REF123".into()));
    let deposited = t
        .when(t.bank().deposit(&ctx(), &acc(CHECKING), usd("100.50"), description, reference))
        .await
        .then_expect_events(POSTED)
        .then_expect_data(
            "transaction_posted",
            json!({"amount": "100.50", "final_balance": "1100.50", "to_account_id": CHECKING}),
        )
        .then_expect_data(
            "audit_event_recorded",
            json!({
                "command": "deposit",
                "actor": "teller_1",
                "event_types": ["transaction_created", "transaction_posted"]
            }),
        );

    let TransactionStatus::Posted { final_balance, .. } = &deposited.value().status else { panic!("not posted") };
    assert_eq!(final_balance.to_string(), "1100.50");
    let posted = deposited.event("transaction_posted");
    assert_eq!(posted.event.version(), "2.0");
    assert_eq!(posted.event.metadata["correlation_id"], "corr_123");
    assert_eq!(posted.event.metadata["user_id"], "teller_1");
    assert_eq!(posted.topic, Topic::TransactionsPosted.name());
    assert_eq!(t.bank().account(&acc(CHECKING)).await.unwrap().unwrap().balance, dec("1100.50"));
}

#[tokio::test]
async fn a_withdrawal_beyond_the_balance_fails_with_insufficient_funds_and_moves_nothing() {
    let t = BankTest::new().given(funded("50.00")).await;

    let receipt = t
        .when(t.bank().withdraw(&ctx(), &acc(CHECKING), usd("50.01"), None, None))
        .await
        .then_expect_events(FAILED)
        .then_expect_data(
            "transaction_failed",
            json!({"reason": "insufficient_funds", "error_message": "insufficient funds"}),
        )
        .into_value();

    assert_eq!(receipt.status, TransactionStatus::Failed { reason: FailureReason::InsufficientFunds });
    assert_eq!(t.bank().account(&acc(CHECKING)).await.unwrap().unwrap().balance, dec("50.00"));
}

#[tokio::test]
async fn an_overdraft_lets_a_checking_account_go_below_zero_down_to_its_limit() {
    let mut given = customer(JANE, KycStatus::Verified, KycTier::Tier2);
    given.push(account(CHECKING, JANE, AccountType::Checking, Some("100.00")));
    let t = BankTest::new().given(given).await;

    let within = t.when(t.bank().withdraw(&ctx(), &acc(CHECKING), usd("100.00"), None, None)).await;
    let beyond = t.when(t.bank().withdraw(&ctx(), &acc(CHECKING), usd("0.01"), None, None)).await;

    assert!(within.then_expect_events(POSTED).value().is_posted());
    let beyond = beyond.then_expect_events(FAILED).into_value();
    assert_eq!(beyond.status, TransactionStatus::Failed { reason: FailureReason::InsufficientFunds });
    assert_eq!(t.bank().account(&acc(CHECKING)).await.unwrap().unwrap().balance, dec("-100.00"));
}

#[tokio::test]
async fn a_transfer_debits_one_account_credits_the_other_and_links_into_both_streams() {
    let mut given = funded("500.00");
    given.push(account(SAVINGS, JANE, AccountType::Savings, None));
    let t = BankTest::new().given(given).await;

    let receipt = t
        .when(t.bank().transfer(&ctx(), &acc(CHECKING), &acc(SAVINGS), usd("200.00"), None, None))
        .await
        .then_expect_events(POSTED)
        .then_expect_data("transaction_posted", json!({"from_account_id": CHECKING, "to_account_id": SAVINGS}))
        .into_value();

    assert!(receipt.is_posted());
    assert_eq!(t.bank().account(&acc(CHECKING)).await.unwrap().unwrap().balance, dec("300.00"));
    assert_eq!(t.bank().account(&acc(SAVINGS)).await.unwrap().unwrap().balance, dec("200.00"));
    for id in [CHECKING, SAVINGS] {
        let stream = nexum::store::StreamId::of("account", id);
        let events = t.store().read(&stream, 1).await.unwrap();
        assert_eq!(events.last().unwrap().event.event_type.as_str(), "transaction_posted");
    }
}

#[tokio::test]
async fn frozen_closed_and_foreign_currency_transactions_fail_with_their_reason() {
    let mut given = funded("10.00");
    given.push(account(SAVINGS, JANE, AccountType::Savings, None));
    let t = BankTest::new().given(given).await;
    let (bank, checking, savings) = (t.bank(), acc(CHECKING), acc(SAVINGS));

    bank.freeze_account(&ctx(), &checking).await.unwrap();
    let frozen = t.when(bank.deposit(&ctx(), &checking, usd("1.00"), None, None)).await;
    bank.close_account(&ctx(), &savings).await.unwrap();
    let closed = t.when(bank.deposit(&ctx(), &savings, usd("1.00"), None, None)).await;
    bank.unfreeze_account(&ctx(), &checking).await.unwrap();
    let euros = t.when(bank.deposit(&ctx(), &checking, money("1.00", "EUR"), None, None)).await;

    let failed = |reason| TransactionStatus::Failed { reason };
    assert_eq!(frozen.then_expect_events(FAILED).into_value().status, failed(FailureReason::AccountFrozen));
    assert_eq!(closed.then_expect_events(FAILED).into_value().status, failed(FailureReason::AccountClosed));
    assert_eq!(euros.then_expect_events(FAILED).into_value().status, failed(FailureReason::CurrencyMismatch));
    assert_eq!(bank.account(&checking).await.unwrap().unwrap().balance, dec("10.00"));
}

#[tokio::test]
async fn a_customer_is_held_to_the_limit_of_their_kyc_tier() {
    let mut given = customer(JANE, KycStatus::Pending, KycTier::Tier1);
    given.push(account(CHECKING, JANE, AccountType::Checking, None));
    let t = BankTest::new().given(given).await;
    let (bank, checking) = (t.bank(), acc(CHECKING));

    let over = t.when(bank.deposit(&ctx(), &checking, usd("2000.01"), None, None)).await;
    let at_limit = t.when(bank.deposit(&ctx(), &checking, usd("2000.00"), None, None)).await;
    bank.change_kyc(&ctx(), &cust(JANE), KycStatus::Rejected, KycTier::Tier1).await.unwrap();
    let rejected = t.when(bank.deposit(&ctx(), &checking, usd("1.00"), None, None)).await;

    let limited = TransactionStatus::Failed { reason: FailureReason::KycLimitExceeded };
    assert_eq!(over.then_expect_events(FAILED).into_value().status, limited);
    assert!(at_limit.then_expect_events(POSTED).value().is_posted());
    assert_eq!(rejected.then_expect_events(FAILED).into_value().status, limited);
}

#[tokio::test]
async fn a_kyc_change_records_old_and_new_status_and_tier_as_in_the_seed() {
    let t = BankTest::new().given(customer(JANE, KycStatus::Pending, KycTier::Tier1)).await;
    let change = async || t.bank().change_kyc(&ctx(), &cust(JANE), KycStatus::Verified, KycTier::Tier2).await;

    let changed = t.when(change()).await.then_expect_events(["kyc_status_changed", "audit_event_recorded"]);

    let event = changed.event("kyc_status_changed");
    assert_eq!(event.topic, Topic::CustomersKycChanged.name());
    assert_eq!(
        event.event.data.to_value(),
        json!({"old_status": "pending", "new_status": "verified", "old_tier": "tier_1", "new_tier": "tier_2"})
    );
    let again = t.when(change()).await.then_expect_error("invalid_state");
    assert!(matches!(again, BankError::InvalidState(_)));
}

#[tokio::test]
async fn a_transaction_of_ten_thousand_or_more_raises_a_compliance_alert() {
    let t = BankTest::new().given(funded("0")).await;
    let deposit = async |amount: &str| t.bank().deposit(&ctx(), &acc(CHECKING), usd(amount), None, None).await;

    t.when(deposit("9999.99")).await.then_expect_events(POSTED);
    let alerted = t
        .when(deposit("10000.00"))
        .await
        .then_expect_events([
            "transaction_created",
            "transaction_posted",
            "compliance_alert_raised",
            "audit_event_recorded",
        ])
        .then_expect_data("compliance_alert_raised", json!({"amount": "10000.00", "threshold": "10000"}));

    assert_eq!(alerted.event("compliance_alert_raised").topic, Topic::ComplianceAlert.name());
    let alerts = t.recorded().await.into_iter().filter(|e| e.event.event_type.as_str() == "compliance_alert_raised");
    assert_eq!(alerts.count(), 1);
}

#[tokio::test]
async fn three_deposits_just_below_the_threshold_within_24_hours_are_reported_once_as_structuring() {
    let t = BankTest::new().given(funded("0")).await;
    let deposit = async |hour: u32| {
        t.when(t.bank().deposit(&Ctx::at(at(0, hour)), &acc(CHECKING), usd("9500.00"), None, None)).await
    };
    let reported =
        ["transaction_created", "transaction_posted", "suspicious_activity_detected", "audit_event_recorded"];

    deposit(1).await.then_expect_events(POSTED);
    deposit(8).await.then_expect_events(POSTED);
    let third = deposit(20).await.then_expect_events(reported).then_expect_data(
        "suspicious_activity_detected",
        json!({"activity_type": "structuring", "total_amount": "28500.00"}),
    );
    deposit(22).await.then_expect_events(POSTED);

    let data = &third.event("suspicious_activity_detected").event.data;
    assert_eq!(data["transaction_ids"].as_array().unwrap().len(), 3);
    let reports =
        t.recorded().await.into_iter().filter(|e| e.event.event_type.as_str() == "suspicious_activity_detected");
    assert_eq!(reports.count(), 1, "reported once per window");
}

#[tokio::test]
async fn deposits_just_below_the_threshold_spread_over_days_are_not_structuring() {
    let t = BankTest::new().given(funded("0")).await;

    for day in 0..4 {
        let ctx = Ctx::at(at(day, 9));
        t.when(t.bank().deposit(&ctx, &acc(CHECKING), usd("9500.00"), None, None)).await.then_expect_events(POSTED);
    }

    let recorded = t.recorded().await;
    assert!(!recorded.iter().any(|e| e.event.event_type.as_str() == "suspicious_activity_detected"));
}

fn application(customer: &CustomerId, account: &AccountId, principal: &str) -> LoanApplication {
    LoanApplication {
        loan_id: None,
        customer_id: customer.clone(),
        account_id: account.clone(),
        principal: usd(principal),
        interest_rate: dec("5.5"),
        term_months: 12,
        payment_frequency: PaymentFrequency::Monthly,
    }
}

/// Originates Jane's 12-month loan of `principal` at 5.5% into her checking account.
async fn originated_loan(bank: &nexum::Bank, principal: &str) -> (LoanId, AccountId) {
    let decision = bank.originate_loan(&ctx(), application(&cust(JANE), &acc(CHECKING), principal)).await.unwrap();
    let LoanDecision::Approved { loan_id, loan_account_id, .. } = decision else { panic!("rejected: {decision:?}") };
    (loan_id, loan_account_id)
}

/// Given Jane's 12-month loan of `principal` at 5.5%, paid out into her empty checking account.
async fn given_a_disbursed_loan(principal: &str) -> (BankTest, LoanId) {
    let t = BankTest::new().given(funded("0")).await;
    let (loan_id, _) = originated_loan(t.bank(), principal).await;
    t.bank().disburse_loan(&ctx(), &loan_id).await.unwrap();
    (t, loan_id)
}

/// A verified customer's 12-month loan of `principal` at 5.5%, paid out into a new checking account.
async fn disbursed_loan(bank: &nexum::Bank, principal: &str) -> LoanId {
    let (customer, account) = common::funded(bank, "0").await;
    let LoanDecision::Approved { loan_id, .. } =
        bank.originate_loan(&ctx(), application(&customer.id, &account.id, principal)).await.unwrap()
    else {
        panic!("rejected")
    };
    bank.disburse_loan(&ctx(), &loan_id).await.unwrap();
    loan_id
}

#[tokio::test]
async fn a_loan_for_a_customer_without_verified_kyc_is_rejected_by_the_approval_workflow() {
    let mut given = customer(JANE, KycStatus::Pending, KycTier::Tier1);
    given.push(account(CHECKING, JANE, AccountType::Checking, None));
    let t = BankTest::new().given(given).await;

    let decision = t
        .when(t.bank().originate_loan(&ctx(), application(&cust(JANE), &acc(CHECKING), "1000.00")))
        .await
        .then_expect_events(["workflow_rejected", "audit_event_recorded"])
        .then_expect_data("workflow_rejected", json!({"workflow_type": "loan_approval", "step": "kyc_verified"}))
        .into_value();

    let LoanDecision::Rejected { step, .. } = decision else { panic!("approved") };
    assert_eq!(step, "kyc_verified");
}

#[tokio::test]
async fn a_loan_is_approved_disbursed_repaid_in_interest_and_principal_and_paid_off() {
    let t = BankTest::new().given(funded("0")).await;
    let (bank, checking) = (t.bank(), acc(CHECKING));
    let originated = [
        "workflow_step_completed",
        "workflow_step_completed",
        "workflow_step_completed",
        "workflow_completed",
        "account_created",
        "loan_originated",
        "audit_event_recorded",
    ];

    let decision = t
        .when(bank.originate_loan(&ctx(), application(&cust(JANE), &checking, "1200.00")))
        .await
        .then_expect_events(originated)
        .into_value();
    let LoanDecision::Approved { loan_id, loan_account_id, .. } = decision else { panic!("rejected") };
    let disbursed = t
        .when(bank.disburse_loan(&ctx(), &loan_id))
        .await
        .then_expect_events(["transaction_created", "transaction_posted", "loan_disbursed", "audit_event_recorded"])
        .into_value();
    let loan = bank.loan(&loan_id).await.unwrap().unwrap();

    assert!(disbursed.is_posted());
    assert_eq!(loan.status, LoanStatus::Active);
    assert_eq!(loan.terms.schedule.len(), 12);
    assert_eq!(bank.account(&checking).await.unwrap().unwrap().balance, dec("1200.00"));
    assert_eq!(bank.account(&loan_account_id).await.unwrap().unwrap().balance, dec("-1200.00"));

    // The first payment pays one month of interest (1200 × 5.5% / 12 = 5.50) first.
    let paid = ["transaction_created", "transaction_posted", "loan_payment_received", "audit_event_recorded"];
    let first = loan.terms.schedule[0].payment;
    t.when(bank.pay_loan(&ctx(), &loan_id, usd(&first.to_string()))).await.then_expect_events(paid).then_expect_data(
        "loan_payment_received",
        json!({"interest_portion": "5.50", "principal_portion": (first - dec("5.50")).to_string()}),
    );

    // Paying what is left, interest included, pays the loan off.
    let loan = bank.loan(&loan_id).await.unwrap().unwrap();
    bank.deposit(&ctx(), &checking, usd("100.00"), None, None).await.unwrap();
    let rest = loan.outstanding_principal + loan.interest_due();
    t.when(bank.pay_loan(&ctx(), &loan_id, usd(&rest.to_string()))).await.then_expect_events([
        "transaction_created",
        "transaction_posted",
        "loan_payment_received",
        "loan_paid_off",
        "audit_event_recorded",
    ]);

    let loan = bank.loan(&loan_id).await.unwrap().unwrap();
    assert_eq!(loan.status, LoanStatus::PaidOff);
    assert_eq!(bank.account(&loan_account_id).await.unwrap().unwrap().balance, Decimal::ZERO);
    let overpay = t.when(bank.pay_loan(&ctx(), &loan_id, usd("1.00"))).await.then_expect_error("invalid_state");
    assert!(matches!(overpay, BankError::InvalidState(_)));
}

#[tokio::test]
async fn missed_payments_open_a_case_escalate_it_and_default_the_loan_and_a_payment_resolves_it() {
    let (t, loan_id) = given_a_disbursed_loan("1200.00").await;
    let bank = t.bank();
    let check = async |days: i64| t.when(bank.check_overdue(&Ctx::at(at(days, 9)), &loan_id)).await;

    let on_time = check(20).await.then_expect_no_events().into_value();
    let one_late = check(35).await.then_expect_events(["collection_case_created", "audit_event_recorded"]).into_value();
    let same_again = check(36).await.then_expect_no_events().into_value();
    let two_late =
        check(63).await.then_expect_events(["collection_case_escalated", "audit_event_recorded"]).into_value();

    assert_eq!((on_time.missed_payments, on_time.case_id.is_some()), (0, false));
    assert_eq!(one_late.missed_payments, 1);
    let case_id = one_late.case_id.clone().unwrap();
    assert_eq!(same_again, one_late, "nothing new is overdue: nothing is written");
    assert_eq!(two_late.case_id.as_ref(), Some(&case_id));
    assert_eq!(bank.collection_case(&case_id).await.unwrap().unwrap().level, 2);

    // A token payment does not bring the loan up to date: the case stays open.
    let pay = async |amount: &str| t.when(bank.pay_loan(&Ctx::at(at(64, 9)), &loan_id, usd(amount))).await;
    pay("0.01").await.then_expect_events([
        "transaction_created",
        "transaction_posted",
        "loan_payment_received",
        "audit_event_recorded",
    ]);
    assert!(bank.collection_case(&case_id).await.unwrap().unwrap().open);
    // Paying both overdue installments does, and resolves it.
    let schedule = bank.loan(&loan_id).await.unwrap().unwrap().terms.schedule;
    let catch_up = schedule[0].payment + schedule[1].payment - dec("0.01");
    pay(&catch_up.to_string()).await.then_expect_events([
        "transaction_created",
        "transaction_posted",
        "loan_payment_received",
        "collection_case_resolved",
        "audit_event_recorded",
    ]);
    assert!(!bank.collection_case(&case_id).await.unwrap().unwrap().open);
    assert_eq!(bank.loan(&loan_id).await.unwrap().unwrap().missed_payments, 0);

    let defaulted = check(160)
        .await
        .then_expect_events(["collection_case_created", "loan_defaulted", "audit_event_recorded"])
        .into_value();
    assert!(defaulted.defaulted);
    assert_eq!(bank.loan(&loan_id).await.unwrap().unwrap().status, LoanStatus::Defaulted);
    let recorded = t.recorded().await;
    let kinds: Vec<&str> = recorded.iter().map(|e| e.event.event_type.as_str()).collect();
    for expected in
        ["collection_case_created", "collection_case_escalated", "collection_case_resolved", "loan_defaulted"]
    {
        assert!(kinds.contains(&expected), "{expected} missing");
    }
}

#[tokio::test]
async fn a_credit_account_gets_a_statement_with_a_minimum_payment_and_is_paid_from_checking() {
    const CREDIT: &str = "acc_credit";
    const FRESH_CREDIT: &str = "acc_fresh_credit";
    let mut given = funded("1000.00");
    given.push(account(CREDIT, JANE, AccountType::Credit, Some("5000.00")));
    given.push(account(FRESH_CREDIT, JANE, AccountType::Credit, Some("100.00")));
    let t = BankTest::new().given(given).await;
    let (bank, checking, credit) = (t.bank(), acc(CHECKING), acc(CREDIT));
    bank.withdraw(&ctx(), &credit, usd("2000.00"), Some("Card purchases".into()), None).await.unwrap();
    let statement_of = async |account: &AccountId, period_end: chrono::NaiveDate| {
        bank.generate_statement(&Ctx::at(at(31, 9)), account, period_end).await
    };
    let day_30 = at(30, 0).date_naive();

    let statement = t
        .when(statement_of(&credit, day_30))
        .await
        .then_expect_events(["credit_statement_generated", "audit_event_recorded"])
        .into_value();
    let paid = t
        .when(bank.pay_credit(&ctx(), &checking, &credit, usd("500.00")))
        .await
        .then_expect_events([
            "transaction_created",
            "transaction_posted",
            "credit_payment_received",
            "audit_event_recorded",
        ])
        .then_expect_data("credit_payment_received", json!({"new_balance": "-1500.00"}))
        .into_value();

    assert_eq!(statement.closing_balance, dec("-2000.00"));
    assert_eq!(statement.minimum_payment, dec("40.00"));
    assert!(paid.is_posted());
    assert_eq!(bank.account(&credit).await.unwrap().unwrap().balance, dec("-1500.00"));
    assert_eq!(bank.account(&checking).await.unwrap().unwrap().balance, dec("500.00"));
    let again = t.when(statement_of(&credit, day_30)).await.then_expect_error("invalid_state");
    assert!(matches!(again, BankError::InvalidState(_)));
    let future = t.when(statement_of(&credit, at(90, 0).date_naive())).await.then_expect_error("invalid_input");
    assert!(matches!(future, BankError::InvalidInput { field: "period_end", .. }));
    let ancient =
        t.when(statement_of(&acc(FRESH_CREDIT), chrono::NaiveDate::MIN)).await.then_expect_error("invalid_input");
    assert!(matches!(ancient, BankError::InvalidInput { field: "period_end", .. }));
    let itself =
        t.when(bank.pay_credit(&ctx(), &credit, &credit, usd("1.00"))).await.then_expect_error("invalid_input");
    assert!(matches!(itself, BankError::InvalidInput { field: "from_account_id", .. }));
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
    let mut given = funded("100.00");
    given.push(account(SAVINGS, JANE, AccountType::Savings, None));
    let t = BankTest::new().given(given).await;
    let (bank, ctx, checking, savings) = (t.bank(), ctx(), acc(CHECKING), acc(SAVINGS));
    bank.close_account(&ctx, &savings).await.unwrap();
    let before = t.recorded().await;
    let outbox = t.store().outbox_len().await.unwrap();
    let (unknown_account, unknown_customer) = (acc("acc_nope"), cust("cust_nope"));
    let new_account = |id: Option<AccountId>, customer_id: CustomerId| NewAccount {
        id,
        customer_id,
        account_type: AccountType::Checking,
        currency: "USD".parse().unwrap(),
        name: None,
        overdraft_limit: None,
    };
    let minus_five = eventbus::Money::new(dec("-5"), "USD".parse().unwrap()).unwrap();

    // Each is refused with its error and writes nothing.
    t.when(bank.deposit(&ctx, &unknown_account, usd("1.00"), None, None)).await.then_expect_error("unknown_account");
    t.when(bank.withdraw(&ctx, &checking, minus_five, None, None)).await.then_expect_error("invalid_amount");
    t.when(bank.transfer(&ctx, &checking, &checking, usd("1.00"), None, None)).await.then_expect_error("invalid_input");
    t.when(bank.open_account(&ctx, new_account(None, unknown_customer.clone())))
        .await
        .then_expect_error("unknown_customer");
    t.when(bank.open_account(&ctx, new_account(Some(checking.clone()), cust(JANE))))
        .await
        .then_expect_error("already_exists");
    let jane_again = NewCustomer {
        id: Some(cust(JANE)),
        first_name: "Jane".into(),
        last_name: "Smith".into(),
        email: "jane@example.com".into(),
        phone: None,
    };
    t.when(bank.create_customer(&ctx, jane_again)).await.then_expect_error("already_exists");
    let nameless =
        NewCustomer { first_name: "Jane".into(), last_name: "".into(), email: "x".into(), ..Default::default() };
    t.when(bank.create_customer(&ctx, nameless)).await.then_expect_error("invalid_input");
    let new_email = CustomerUpdate { email: Some("a@b.co".into()), ..Default::default() };
    t.when(bank.update_customer(&ctx, &unknown_customer, new_email)).await.then_expect_error("unknown_customer");
    let holiday = AccountUpdate { name: Some("Holiday".into()), ..Default::default() };
    t.when(bank.update_account(&ctx, &savings, holiday)).await.then_expect_error("account_closed");
    t.when(bank.freeze_account(&ctx, &savings)).await.then_expect_error("account_closed");
    t.when(bank.close_account(&ctx, &checking)).await.then_expect_error("invalid_state");
    t.when(bank.change_kyc(&ctx, &unknown_customer, KycStatus::Verified, KycTier::Tier2))
        .await
        .then_expect_error("unknown_customer");

    assert_eq!(t.recorded().await, before, "nothing written");
    assert_eq!(t.store().outbox_len().await.unwrap(), outbox);
}

#[tokio::test]
async fn an_account_update_and_freeze_are_recorded_with_the_change_and_old_status() {
    let t = BankTest::new().given(funded("0")).await;
    let updated = ["account_updated", "audit_event_recorded"];
    let bills = AccountUpdate { name: Some("Bills".into()), overdraft_limit: Some(usd("250.00")) };

    t.when(t.bank().update_account(&ctx(), &acc(CHECKING), bills)).await.then_expect_events(updated);
    let frozen = t
        .when(t.bank().freeze_account(&ctx(), &acc(CHECKING)))
        .await
        .then_expect_events(updated)
        .then_expect_data("account_updated", json!({"change": "frozen", "old_status": "active"}))
        .into_value();

    assert_eq!(frozen.status, AccountStatus::Frozen);
    assert_eq!(frozen.name.as_deref(), Some("Bills"));
    assert_eq!(frozen.overdraft_limit, dec("250.00"));
}

#[tokio::test]
async fn a_customer_update_records_the_customer_as_it_is_after_the_change() {
    let t = BankTest::new().given(customer(JANE, KycStatus::Verified, KycTier::Tier2)).await;
    let new_email = CustomerUpdate { email: Some("jane.smith@example.com".into()), ..Default::default() };

    let outcome = t
        .when(t.bank().update_customer(&ctx(), &cust(JANE), new_email))
        .await
        .then_expect_events(["customer_updated", "audit_event_recorded"]);

    let updated = outcome.value().clone();
    assert_eq!(updated.details.email, "jane.smith@example.com");
    assert_eq!(updated.details.kyc_status, KycStatus::Verified);
    outcome.then_expect_payload(Payload::CustomerUpdated(updated.details));
}

#[tokio::test]
async fn a_loan_can_be_cancelled_before_it_is_paid_out_but_not_after() {
    let t = BankTest::new().given(funded("100.00")).await;
    let bank = t.bank();
    let payout = bank.payout_account(&cust(JANE), "USD".parse().unwrap()).await.unwrap();
    let application =
        LoanApplication { interest_rate: "5".parse().unwrap(), ..application(&cust(JANE), &payout, "1000.00") };
    let LoanDecision::Approved { loan_id, loan_account_id, .. } =
        bank.originate_loan(&ctx(), application).await.unwrap()
    else {
        panic!("rejected")
    };

    let cancelled = t
        .when(bank.cancel_loan(&ctx(), &loan_id, "disbursement failed"))
        .await
        .then_expect_events(["loan_cancelled", "account_updated", "audit_event_recorded"])
        .into_value();

    assert_eq!(cancelled.status, LoanStatus::Cancelled);
    let loan_account = bank.account(&loan_account_id).await.unwrap().unwrap();
    assert_eq!(loan_account.status, AccountStatus::Closed);
    t.when(bank.disburse_loan(&ctx(), &loan_id)).await.then_expect_error("invalid_state");
    t.when(bank.cancel_loan(&ctx(), &loan_id, "again")).await.then_expect_error("invalid_state");
    // The customer's record lists the loan account next to the checking account.
    let accounts = bank.customer(&cust(JANE)).await.unwrap().unwrap().accounts;
    assert_eq!(accounts.iter().map(|a| a.account_type).collect::<Vec<_>>(), [AccountType::Checking, AccountType::Loan]);
}

#[tokio::test]
async fn a_long_or_binary_description_is_refused() {
    let t = BankTest::new().given(funded("10.00")).await;
    let (bank, checking) = (t.bank(), acc(CHECKING));

    let long = t.when(bank.deposit(&ctx(), &checking, usd("1.00"), Some("x".repeat(501)), None)).await;
    let control = t.when(bank.withdraw(&ctx(), &checking, usd("1.00"), None, Some("REF\u{0}".into()))).await;

    assert!(matches!(long.then_expect_error("invalid_input"), BankError::InvalidInput { field: "description", .. }));
    assert!(matches!(control.then_expect_error("invalid_input"), BankError::InvalidInput { field: "reference", .. }));
}

#[tokio::test]
async fn a_second_bank_over_the_same_store_sees_the_same_state_and_wins_races_by_deciding_again() {
    let f = bank();
    let (_, account) = common::funded(&f.bank, "100.00").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deposits_to_one_account_all_post_and_the_balance_is_their_sum() {
    let f = bank();
    let (_, account) = common::funded(&f.bank, "0").await;
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
