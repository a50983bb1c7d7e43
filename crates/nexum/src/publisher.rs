//! `NexumEventPublisher`: the seed's high-level publisher, one `on_*` method per banking event.
//!
//! Each method builds the event from the domain object, checks it against its JSON Schema, and
//! publishes it to its `nexum.*` topic keyed by the entity id. An event that does not match its
//! schema is an error here and is never sent.
//!
//! The bank itself does not call these methods: it records the same events in its store with
//! the outbox (see [`crate::hooks`]). They are for code that publishes banking events directly.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventbus::{BusError, EventBus, EventId, EventSchema, Published};
use rust_decimal::Decimal;

use crate::domain::{Account, AccountChange, Customer, KycStatus, KycTier, Loan};
use crate::events::{
    AccountCreated, AccountUpdated, AuditEventRecorded, Causation, CollectionCaseCreated, ComplianceAlertRaised,
    KycStatusChanged, LoanDisbursed, LoanOriginated, LoanPaymentReceived, NexumEvent, Payload,
    SuspiciousActivityDetected, TransactionCreated, TransactionFailed, TransactionPosted, WorkflowCompleted,
};
use crate::ids::{AlertId, AuditId, CaseId, TransactionId, WorkflowId};
use crate::schemas::SchemaError;

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event does not match its schema; it was not sent. This is a bug in the caller.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The interest portion is negative or larger than the payment: nothing was sent.
    #[error("interest portion {interest_portion} does not fit in a payment of {payment_amount}")]
    InvalidPayment {
        /// The whole payment, as given.
        payment_amount: Decimal,
        /// The interest portion, as given.
        interest_portion: Decimal,
    },
    /// The bus refused or could not store the event.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Publishes banking events to the bus.
#[derive(Clone)]
pub struct NexumEventPublisher {
    bus: Arc<dyn EventBus>,
    causation: Causation,
}

impl NexumEventPublisher {
    /// A publisher to `bus` whose events carry no causation; see
    /// [`with_causation`](Self::with_causation).
    pub fn new(bus: Arc<dyn EventBus>) -> Self {
        Self { bus, causation: Causation::default() }
    }

    /// The same publisher, stamping `causation` (correlation, causation and user ids) on events.
    pub fn with_causation(&self, causation: Causation) -> Self {
        Self { bus: Arc::clone(&self.bus), causation }
    }

    /// Builds, validates and publishes one event at `at`.
    pub async fn publish_at(
        &self,
        event: &NexumEvent,
        at: DateTime<Utc>,
    ) -> Result<(EventSchema, Published), PublishError> {
        let schema = event.to_schema(EventId::new(), at, &self.causation);
        crate::schemas::validate(&schema)?;
        let published = self.bus.publish(&event.topic().name(), schema.clone(), Some(&event.entity_id)).await?;
        Ok((schema, published))
    }

    /// Builds, validates and publishes `event` now; returns the event as sent and where the bus
    /// stored it.
    pub async fn publish(&self, event: &NexumEvent) -> Result<(EventSchema, Published), PublishError> {
        self.publish_at(event, Utc::now()).await
    }

    async fn send(&self, entity_id: impl ToString, payload: Payload) -> Result<EventSchema, PublishError> {
        Ok(self.publish(&NexumEvent::new(entity_id, payload)).await?.0)
    }

    /// Publishes `transaction_created` for transaction `id`.
    pub async fn on_transaction_created(
        &self,
        id: &TransactionId,
        transaction: &TransactionCreated,
    ) -> Result<EventSchema, PublishError> {
        self.send(id, Payload::TransactionCreated(transaction.clone())).await
    }

    /// Publishes `transaction_posted` (version 2, with its postings) for transaction `id`.
    pub async fn on_transaction_posted(
        &self,
        id: &TransactionId,
        transaction: &TransactionPosted,
    ) -> Result<EventSchema, PublishError> {
        self.send(id, Payload::TransactionPosted(transaction.clone())).await
    }

    /// The seed's `on_transaction_failed(transaction, error_message)`: the message replaces the
    /// reason's default text.
    pub async fn on_transaction_failed(
        &self,
        id: &TransactionId,
        transaction: &TransactionFailed,
        error_message: &str,
    ) -> Result<EventSchema, PublishError> {
        let failed = TransactionFailed { error_message: error_message.to_owned(), ..transaction.clone() };
        self.send(id, Payload::TransactionFailed(failed)).await
    }

    /// Publishes `account_created` for `account` as it is now.
    pub async fn on_account_created(&self, account: &Account) -> Result<EventSchema, PublishError> {
        let created = AccountCreated {
            customer_id: account.customer_id.clone(),
            account_type: account.account_type,
            currency: account.currency,
            name: account.name.clone(),
            status: account.status,
            overdraft_limit: account.overdraft_limit,
        };
        self.send(&account.id, Payload::AccountCreated(created)).await
    }

    /// `change` says what changed; `old` is the account before it.
    pub async fn on_account_updated(
        &self,
        old: &Account,
        account: &Account,
        change: AccountChange,
    ) -> Result<EventSchema, PublishError> {
        let updated = AccountUpdated {
            customer_id: account.customer_id.clone(),
            account_type: account.account_type,
            currency: account.currency,
            name: account.name.clone(),
            change,
            old_status: old.status,
            status: account.status,
            overdraft_limit: account.overdraft_limit,
        };
        self.send(&account.id, Payload::AccountUpdated(updated)).await
    }

    /// Publishes `customer_created` with the customer's details as they are now.
    pub async fn on_customer_created(&self, customer: &Customer) -> Result<EventSchema, PublishError> {
        self.send(&customer.id, Payload::CustomerCreated(customer.details.clone())).await
    }

    /// Publishes `customer_updated` with the customer's details as they are after the change.
    pub async fn on_customer_updated(&self, customer: &Customer) -> Result<EventSchema, PublishError> {
        self.send(&customer.id, Payload::CustomerUpdated(customer.details.clone())).await
    }

    /// The seed's `on_customer_kyc_changed(customer, old_status, old_tier)`: `customer` is as it
    /// is now.
    pub async fn on_customer_kyc_changed(
        &self,
        customer: &Customer,
        old_status: KycStatus,
        old_tier: KycTier,
    ) -> Result<EventSchema, PublishError> {
        let change =
            KycStatusChanged { old_status, new_status: customer.kyc_status(), old_tier, new_tier: customer.kyc_tier() };
        self.send(&customer.id, Payload::KycStatusChanged(change)).await
    }

    /// Publishes `loan_originated` with the loan's terms and schedule.
    pub async fn on_loan_originated(&self, loan: &Loan) -> Result<EventSchema, PublishError> {
        let originated: LoanOriginated = loan.terms.clone();
        self.send(&loan.id, Payload::LoanOriginated(originated)).await
    }

    /// `transaction_id` is the transaction that paid the principal out.
    pub async fn on_loan_disbursed(
        &self,
        loan: &Loan,
        transaction_id: &TransactionId,
    ) -> Result<EventSchema, PublishError> {
        let disbursed = LoanDisbursed {
            customer_id: loan.terms.customer_id.clone(),
            account_id: loan.terms.account_id.clone(),
            amount: loan.terms.principal,
            currency: loan.terms.currency,
            transaction_id: transaction_id.clone(),
        };
        self.send(&loan.id, Payload::LoanDisbursed(disbursed)).await
    }

    /// The seed's `on_loan_payment(loan, payment_amount)`: `loan` is as it is after the payment,
    /// and `interest_portion` is the part of `payment_amount` that paid interest.
    pub async fn on_loan_payment(
        &self,
        loan: &Loan,
        payment_amount: Decimal,
        interest_portion: Decimal,
        transaction_id: &TransactionId,
    ) -> Result<EventSchema, PublishError> {
        let principal_portion = payment_amount
            .checked_sub(interest_portion)
            .filter(|p| !p.is_sign_negative() && !interest_portion.is_sign_negative())
            .ok_or(PublishError::InvalidPayment { payment_amount, interest_portion })?;
        let payment = LoanPaymentReceived {
            customer_id: loan.terms.customer_id.clone(),
            account_id: loan.terms.account_id.clone(),
            amount: payment_amount,
            currency: loan.terms.currency,
            interest_portion,
            principal_portion,
            outstanding_principal: loan.outstanding_principal,
            transaction_id: transaction_id.clone(),
        };
        self.send(&loan.id, Payload::LoanPaymentReceived(payment)).await
    }

    /// Publishes `compliance_alert_raised` for alert `id`.
    pub async fn on_compliance_alert(
        &self,
        id: &AlertId,
        alert: &ComplianceAlertRaised,
    ) -> Result<EventSchema, PublishError> {
        self.send(id, Payload::ComplianceAlertRaised(alert.clone())).await
    }

    /// Publishes `suspicious_activity_detected` for alert `id`.
    pub async fn on_suspicious_activity(
        &self,
        id: &AlertId,
        report: &SuspiciousActivityDetected,
    ) -> Result<EventSchema, PublishError> {
        self.send(id, Payload::SuspiciousActivityDetected(report.clone())).await
    }

    /// Publishes `collection_case_created` for case `id`.
    pub async fn on_collection_case_created(
        &self,
        id: &CaseId,
        case: &CollectionCaseCreated,
    ) -> Result<EventSchema, PublishError> {
        self.send(id, Payload::CollectionCaseCreated(case.clone())).await
    }

    /// Publishes `workflow_completed` for workflow `id`.
    pub async fn on_workflow_completed(
        &self,
        id: &WorkflowId,
        workflow: &WorkflowCompleted,
    ) -> Result<EventSchema, PublishError> {
        self.send(id, Payload::WorkflowCompleted(workflow.clone())).await
    }

    /// Publishes `audit_event_recorded` as audit record `id`.
    pub async fn on_audit_event(
        &self,
        id: &AuditId,
        audit_event: &AuditEventRecorded,
    ) -> Result<EventSchema, PublishError> {
        self.send(id, Payload::AuditEventRecorded(audit_event.clone())).await
    }
}
