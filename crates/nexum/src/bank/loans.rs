//! Loans: origination through the approval workflow, disbursement, payments, missed payments,
//! collections cases and default.

use eventbus::Money;
use rust_decimal::Decimal;

use super::transactions::{Movement, TransactionReceipt, TransactionStatus, positive};
use super::{Bank, BankError, Ctx, Loaded, MAX_ATTEMPTS, Work, retrying};
use crate::domain::{
    Account, AccountChange, AccountStatus, AccountType, CaseReason, CollectionCase, KycStatus, Loan, LoanStatus,
    PaymentFrequency, TransactionType, amortisation_schedule,
};
use crate::events::{
    AccountCreated, AccountUpdated, CollectionCaseCreated, CollectionCaseEscalated, CollectionCaseResolved,
    LoanCancelled, LoanDefaulted, LoanDisbursed, LoanOriginated, LoanPaidOff, LoanPaymentReceived, NexumEvent, Payload,
    Posting, WorkflowCompleted, WorkflowRejected, WorkflowStepCompleted,
};
use crate::ids::{AccountId, CaseId, CustomerId, LoanId, WorkflowId};
use crate::store::StreamId;

/// Missed installments after which a loan is in default.
pub const DEFAULT_AFTER_MISSED: u32 = 3;
/// The longest term accepted, in months.
pub const MAX_TERM_MONTHS: u32 = 480;
const WORKFLOW: &str = "loan_approval";

/// A request for a loan, paid out into one of the customer's accounts.
#[derive(Clone, Debug)]
pub struct LoanApplication {
    /// The id to use; a fresh one if `None`.
    pub loan_id: Option<LoanId>,
    /// The borrower; their KYC must be verified and the principal within their tier's limit.
    pub customer_id: CustomerId,
    /// The borrower's active checking or savings account the principal is paid into, in the loan's
    /// currency.
    pub account_id: AccountId,
    /// The amount to lend, and its currency: the loan's currency.
    pub principal: Money,
    /// Annual nominal rate in percent, e.g. `5.5`.
    pub interest_rate: Decimal,
    /// How long the loan runs, in months: a multiple of the payment period, at most
    /// [`MAX_TERM_MONTHS`].
    pub term_months: u32,
    /// How often an installment is due.
    pub payment_frequency: PaymentFrequency,
}

/// The outcome of the approval workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoanDecision {
    /// Every step passed: the loan is originated, and waits to be disbursed.
    Approved {
        /// The approval workflow, whose steps are in the stream `workflow-<id>`.
        workflow_id: WorkflowId,
        /// The originated loan.
        loan_id: LoanId,
        /// The loan's own account, opened with it.
        loan_account_id: AccountId,
    },
    /// A step did not pass: `workflow_rejected` is recorded, and nothing else.
    Rejected {
        /// The approval workflow, whose steps are in the stream `workflow-<id>`.
        workflow_id: WorkflowId,
        /// The step that did not pass: `kyc_verified`, `within_tier_limit` or
        /// `account_in_good_standing`.
        step: String,
        /// What the step found, for people.
        reason: String,
    },
}

/// What a check for missed payments found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverdueCheck {
    /// Installments due and not paid, as recorded on the loan: unchanged if nothing new was found.
    pub missed_payments: u32,
    /// The loan's open collections case, opened or escalated by this check or before it; `None` if
    /// there is none.
    pub case_id: Option<CaseId>,
    /// Whether the loan is in default, by this check or before it.
    pub defaulted: bool,
}

impl LoanApplication {
    fn validate(&self) -> Result<(), BankError> {
        positive(self.principal)?;
        let rate = self.interest_rate;
        if rate.is_sign_negative() || rate > Decimal::ONE_HUNDRED || rate.normalize().scale() > 4 {
            return Err(BankError::invalid("interest_rate", "expected a percentage from 0 to 100, at most 4 decimals"));
        }
        let months = self.payment_frequency.months();
        if self.term_months == 0 || self.term_months > MAX_TERM_MONTHS || !self.term_months.is_multiple_of(months) {
            return Err(BankError::invalid(
                "term_months",
                format!(
                    "expected 1 to {MAX_TERM_MONTHS} months, a multiple of {months} for {} payments",
                    self.payment_frequency
                ),
            ));
        }
        Ok(())
    }
}

impl Bank {
    /// Runs the approval workflow; if every step passes, opens the loan's account and
    /// originates the loan. A rejection is recorded, and is not an error.
    pub async fn originate_loan(&self, ctx: &Ctx, application: LoanApplication) -> Result<LoanDecision, BankError> {
        application.validate()?;
        let loan_id = application.loan_id.clone().unwrap_or_default();
        retrying!({
            if self.loan(&loan_id).await?.is_some() {
                return Err(BankError::AlreadyExists { kind: "loan", id: loan_id.to_string() });
            }
            let mut work = Work::new(ctx, "originate_loan");
            let mut customer = self.customer_for(&mut work, &application.customer_id).await?;
            let account = self.account_for(&mut work, &application.account_id).await?;
            if account.state.customer_id != application.customer_id {
                return Err(BankError::invalid("account_id", "the account belongs to another customer"));
            }
            let workflow_id = WorkflowId::new();
            let workflow = StreamId::of("workflow", &workflow_id);
            let principal = application.principal;
            let (status, tier) = (customer.state.kyc_status(), customer.state.kyc_tier());
            let steps = [
                ("kyc_verified", status == KycStatus::Verified, format!("KYC status is {status}")),
                (
                    "within_tier_limit",
                    principal.amount() <= tier.transaction_limit(),
                    format!("{tier} allows at most {}", tier.transaction_limit()),
                ),
                (
                    "account_in_good_standing",
                    account.state.status == AccountStatus::Active
                        && account.state.account_type.is_transactional()
                        && account.state.currency == principal.currency(),
                    format!(
                        "account is {} {} in {}",
                        account.state.status, account.state.account_type, account.state.currency
                    ),
                ),
            ];
            for (step, passed, detail) in &steps {
                let subject_id = loan_id.to_string();
                if !passed {
                    let rejected = WorkflowRejected {
                        workflow_type: WORKFLOW.into(),
                        subject_id,
                        step: (*step).into(),
                        reason: detail.clone(),
                    };
                    work.record(&NexumEvent::new(&workflow_id, Payload::WorkflowRejected(rejected)), workflow.clone())?;
                    work.outcome = "rejected";
                    let decision = LoanDecision::Rejected {
                        workflow_id: workflow_id.clone(),
                        step: (*step).into(),
                        reason: detail.clone(),
                    };
                    return Ok(self.commit(work).await?.then_some(decision));
                }
                let completed = WorkflowStepCompleted {
                    workflow_type: WORKFLOW.into(),
                    subject_id,
                    step: (*step).into(),
                    detail: detail.clone(),
                };
                work.record(
                    &NexumEvent::new(&workflow_id, Payload::WorkflowStepCompleted(completed)),
                    workflow.clone(),
                )?;
            }
            let completed = WorkflowCompleted {
                workflow_type: WORKFLOW.into(),
                subject_id: loan_id.to_string(),
                steps: steps.iter().map(|(step, _, _)| (*step).to_owned()).collect(),
            };
            work.record(&NexumEvent::new(&workflow_id, Payload::WorkflowCompleted(completed)), workflow)?;

            let loan_account_id = AccountId::new();
            let loan_account = AccountCreated {
                customer_id: application.customer_id.clone(),
                account_type: AccountType::Loan,
                currency: principal.currency(),
                name: Some(format!("Loan {loan_id}")),
                status: AccountStatus::Active,
                overdraft_limit: principal.amount(),
            };
            let loan_account = work.create::<Account>(
                loan_account_id.as_str(),
                &NexumEvent::new(&loan_account_id, Payload::AccountCreated(loan_account)),
                &mut [&mut customer],
            )?;
            let schedule = amortisation_schedule(
                principal.amount(),
                principal.currency(),
                application.interest_rate,
                application.term_months,
                application.payment_frequency,
                ctx.at.date_naive(),
            )
            .ok_or_else(|| BankError::invalid("principal", "the schedule of this loan overflows"))?;
            let originated = LoanOriginated {
                customer_id: application.customer_id.clone(),
                principal: principal.amount(),
                currency: principal.currency(),
                interest_rate: application.interest_rate,
                term_months: application.term_months,
                payment_frequency: application.payment_frequency,
                account_id: application.account_id.clone(),
                loan_account_id: loan_account_id.clone(),
                workflow_id: workflow_id.clone(),
                schedule,
            };
            let loan = work.create::<Loan>(
                loan_id.as_str(),
                &NexumEvent::new(&loan_id, Payload::LoanOriginated(originated)),
                &mut [],
            )?;
            Ok(self.commit(work).await?.then(|| {
                self.customers.put(customer);
                self.accounts.put(loan_account);
                self.loans.put(loan);
                LoanDecision::Approved { workflow_id, loan_id: loan_id.clone(), loan_account_id }
            }))
        })
    }

    /// Pays the principal of an originated loan into the customer's account.
    pub async fn disburse_loan(&self, ctx: &Ctx, loan_id: &LoanId) -> Result<TransactionReceipt, BankError> {
        retrying!({
            let mut work = Work::new(ctx, "disburse_loan");
            let mut loan = self.loan_for(&mut work, loan_id).await?;
            if loan.state.status != LoanStatus::Originated {
                return Err(BankError::InvalidState(format!("loan `{loan_id}` is disbursed already")));
            }
            let terms = loan.state.terms.clone();
            let mut loan_account = self.account_for(&mut work, &terms.loan_account_id).await?;
            let mut account = self.account_for(&mut work, &terms.account_id).await?;
            let principal =
                Money::new(terms.principal, terms.currency).map_err(|e| BankError::amount(terms.principal, e))?;
            let movement = Movement {
                kind: TransactionType::LoanDisbursement,
                amount: principal,
                from: Some(&mut loan_account),
                to: Some(&mut account),
                postings: None,
                kyc_limit: None,
                description: Some(format!("Disbursement of loan {loan_id}")),
                reference: Some(loan_id.to_string()),
            };
            let receipt = self.post(&mut work, movement)?;
            if receipt.is_posted() {
                let disbursed = LoanDisbursed {
                    customer_id: terms.customer_id.clone(),
                    account_id: terms.account_id.clone(),
                    amount: terms.principal,
                    currency: terms.currency,
                    transaction_id: receipt.transaction_id.clone(),
                };
                work.record_in(&NexumEvent::new(loan_id, Payload::LoanDisbursed(disbursed)), &mut loan)?;
            }
            Ok(self.commit(work).await?.then(|| {
                self.loans.put(loan);
                self.accounts.put(loan_account);
                self.accounts.put(account);
                receipt
            }))
        })
    }

    /// Cancels a loan that was originated and not paid out, and closes its loan account: the
    /// compensation of a loan application that could not complete.
    pub async fn cancel_loan(&self, ctx: &Ctx, loan_id: &LoanId, reason: &str) -> Result<Loan, BankError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(BankError::invalid("reason", "expected 1 to 500 characters"));
        }
        retrying!({
            let mut work = Work::new(ctx, "cancel_loan");
            let mut loan = self.loan_for(&mut work, loan_id).await?;
            if loan.state.status != LoanStatus::Originated {
                return Err(BankError::InvalidState(format!(
                    "loan `{loan_id}` is {:?}; only a loan not yet disbursed can be cancelled",
                    loan.state.status
                )));
            }
            let terms = loan.state.terms.clone();
            let mut loan_account = self.account_for(&mut work, &terms.loan_account_id).await?;
            let cancelled = LoanCancelled {
                customer_id: terms.customer_id.clone(),
                loan_account_id: terms.loan_account_id.clone(),
                principal: terms.principal,
                currency: terms.currency,
                reason: reason.to_owned(),
            };
            work.record_in(&NexumEvent::new(loan_id, Payload::LoanCancelled(cancelled)), &mut loan)?;
            let state = &loan_account.state;
            let closed = AccountUpdated {
                customer_id: state.customer_id.clone(),
                account_type: state.account_type,
                currency: state.currency,
                name: state.name.clone(),
                change: AccountChange::Closed,
                old_status: state.status,
                status: AccountStatus::Closed,
                overdraft_limit: Decimal::ZERO,
            };
            work.record_in(
                &NexumEvent::new(&terms.loan_account_id, Payload::AccountUpdated(closed)),
                &mut loan_account,
            )?;
            Ok(self.commit(work).await?.then(|| {
                self.accounts.put(loan_account);
                self.loans.keep(loan)
            }))
        })
    }

    /// A payment from the customer's account: interest due first, the rest against principal.
    /// It resolves an open collections case, and pays the loan off when nothing is left.
    pub async fn pay_loan(&self, ctx: &Ctx, loan_id: &LoanId, amount: Money) -> Result<TransactionReceipt, BankError> {
        let amount = positive(amount)?;
        retrying!({
            let mut work = Work::new(ctx, "pay_loan");
            let mut loan = self.loan_for(&mut work, loan_id).await?;
            if loan.state.status != LoanStatus::Active {
                return Err(BankError::InvalidState(format!("loan `{loan_id}` is not being repaid")));
            }
            if amount.currency() != loan.state.currency() {
                return Err(BankError::invalid(
                    "currency",
                    format!("loan `{loan_id}` is in {}", loan.state.currency()),
                ));
            }
            let interest_due = loan.state.interest_due();
            let owed = loan.state.outstanding_principal + interest_due;
            if amount.amount() > owed {
                return Err(BankError::refused_amount(amount.amount(), format!("exceeds the {owed} owed")));
            }
            let interest = amount.amount().min(interest_due);
            let principal = amount.amount() - interest;
            let terms = loan.state.terms.clone();
            let mut account = self.account_for(&mut work, &terms.account_id).await?;
            let mut loan_account = self.account_for(&mut work, &terms.loan_account_id).await?;
            let postings = [
                (terms.account_id.clone(), -amount.amount()),
                (terms.loan_account_id.clone(), principal),
                (AccountId::interest_income(), interest),
            ]
            .into_iter()
            .filter(|(_, amount)| !amount.is_zero())
            .map(|(account_id, amount)| Posting { account_id, amount })
            .collect();
            let movement = Movement {
                kind: TransactionType::LoanPayment,
                amount,
                from: Some(&mut account),
                to: Some(&mut loan_account),
                postings: Some(postings),
                kyc_limit: None,
                description: Some(format!("Payment of loan {loan_id}")),
                reference: Some(loan_id.to_string()),
            };
            let receipt = self.post(&mut work, movement)?;
            let mut case = None;
            if let TransactionStatus::Posted { .. } = receipt.status {
                let outstanding = loan.state.outstanding_principal - principal;
                let paid = LoanPaymentReceived {
                    customer_id: terms.customer_id.clone(),
                    account_id: terms.account_id.clone(),
                    amount: amount.amount(),
                    currency: amount.currency(),
                    interest_portion: interest,
                    principal_portion: principal,
                    outstanding_principal: outstanding,
                    transaction_id: receipt.transaction_id.clone(),
                };
                work.record_in(&NexumEvent::new(loan_id, Payload::LoanPaymentReceived(paid)), &mut loan)?;
                let up_to_date = loan.state.overdue_installments(ctx.at.date_naive()) == 0;
                if let Some(case_id) = loan.state.open_case.clone().filter(|_| up_to_date) {
                    let mut open = self
                        .load_for(&mut work, &self.cases, case_id.as_str())
                        .await?
                        .ok_or_else(|| BankError::UnknownCase(case_id.clone()))?;
                    let resolved =
                        CollectionCaseResolved { loan_id: loan_id.clone(), resolution: "payment_received".into() };
                    let event = NexumEvent::new(&case_id, Payload::CollectionCaseResolved(resolved));
                    work.record_linked(&event, open.stream.clone(), &mut [&mut loan])?;
                    open.apply(&event, ctx.at);
                    case = Some(open);
                }
                if outstanding.is_zero() {
                    let paid_off = LoanPaidOff {
                        customer_id: terms.customer_id.clone(),
                        currency: terms.currency,
                        total_interest_paid: loan.state.total_interest_paid,
                    };
                    work.record_in(&NexumEvent::new(loan_id, Payload::LoanPaidOff(paid_off)), &mut loan)?;
                }
            }
            Ok(self.commit(work).await?.then(|| {
                self.loans.put(loan);
                self.accounts.put(account);
                self.accounts.put(loan_account);
                if let Some(case) = case {
                    self.cases.put(case);
                }
                receipt
            }))
        })
    }

    /// Looks for installments due before `ctx.at` and not paid: opens a collections case for the
    /// first, escalates it for each further one, and defaults the loan at
    /// [`DEFAULT_AFTER_MISSED`]. Writes nothing when nothing new is overdue.
    pub async fn check_overdue(&self, ctx: &Ctx, loan_id: &LoanId) -> Result<OverdueCheck, BankError> {
        retrying!({
            let mut work = Work::new(ctx, "check_overdue");
            let mut loan = self.loan_for(&mut work, loan_id).await?;
            let today = ctx.at.date_naive();
            let missed = loan.state.overdue_installments(today);
            let unchanged = OverdueCheck {
                missed_payments: loan.state.missed_payments,
                case_id: loan.state.open_case.clone(),
                defaulted: loan.state.status == LoanStatus::Defaulted,
            };
            // Something new to record: an overdue loan without a case, or more missed since the
            // case's last record.
            let new = match loan.state.open_case {
                None => missed > 0,
                Some(_) => missed > loan.state.missed_payments,
            };
            if loan.state.status != LoanStatus::Active || !new {
                return Ok(Some(unchanged));
            }
            let defaulted = missed >= DEFAULT_AFTER_MISSED;
            let terms = loan.state.terms.clone();
            let case = match loan.state.open_case.clone() {
                Some(case_id) => {
                    let mut case = self
                        .load_for(&mut work, &self.cases, case_id.as_str())
                        .await?
                        .ok_or_else(|| BankError::UnknownCase(case_id.clone()))?;
                    let escalated = CollectionCaseEscalated {
                        loan_id: loan_id.clone(),
                        level: case.state.level + 1,
                        missed_payments: missed,
                        reason: if defaulted { "loan_defaulted".into() } else { format!("{missed} payments missed") },
                    };
                    let event = NexumEvent::new(&case_id, Payload::CollectionCaseEscalated(escalated));
                    work.record_linked(&event, case.stream.clone(), &mut [&mut loan])?;
                    case.apply(&event, ctx.at);
                    case
                }
                None => {
                    let case_id = CaseId::new();
                    let overdue = &terms.schedule[loan.state.installments_paid as usize..];
                    let first_due = overdue.first().map_or(today, |i| i.due_date);
                    let due: Decimal = overdue.iter().filter(|i| i.due_date < today).map(|i| i.payment).sum();
                    let created = CollectionCaseCreated {
                        loan_id: loan_id.clone(),
                        customer_id: terms.customer_id.clone(),
                        reason: if defaulted { CaseReason::LoanDefaulted } else { CaseReason::PaymentOverdue },
                        amount_due: due - loan.state.paid_towards_next,
                        currency: terms.currency,
                        days_overdue: (today - first_due).num_days().max(0) as u32,
                        missed_payments: missed,
                    };
                    let event = NexumEvent::new(&case_id, Payload::CollectionCaseCreated(created));
                    work.create::<CollectionCase>(case_id.as_str(), &event, &mut [&mut loan])?
                }
            };
            if defaulted {
                let default = LoanDefaulted {
                    customer_id: terms.customer_id.clone(),
                    currency: terms.currency,
                    outstanding_principal: loan.state.outstanding_principal,
                    missed_payments: missed,
                };
                work.record_in(&NexumEvent::new(loan_id, Payload::LoanDefaulted(default)), &mut loan)?;
            }
            let check = OverdueCheck { missed_payments: missed, case_id: Some(case.state.id.clone()), defaulted };
            Ok(self.commit(work).await?.then(|| {
                self.loans.put(loan);
                self.cases.put(case);
                check
            }))
        })
    }

    /// Escalates an open case by hand, e.g. to a collections agency.
    pub async fn escalate_case(&self, ctx: &Ctx, case_id: &CaseId, reason: &str) -> Result<CollectionCase, BankError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 {
            return Err(BankError::invalid("reason", "expected 1 to 500 characters"));
        }
        self.change_case(ctx, "escalate_case", case_id, |case, loan| {
            Payload::CollectionCaseEscalated(CollectionCaseEscalated {
                loan_id: case.loan_id.clone(),
                level: case.level + 1,
                missed_payments: loan.missed_payments,
                reason: reason.to_owned(),
            })
        })
        .await
    }

    /// Closes an open case, e.g. after a payment plan was agreed.
    pub async fn resolve_case(
        &self,
        ctx: &Ctx,
        case_id: &CaseId,
        resolution: &str,
    ) -> Result<CollectionCase, BankError> {
        let resolution = resolution.trim();
        if resolution.is_empty() || resolution.len() > 500 {
            return Err(BankError::invalid("resolution", "expected 1 to 500 characters"));
        }
        self.change_case(ctx, "resolve_case", case_id, |case, _| {
            Payload::CollectionCaseResolved(CollectionCaseResolved {
                loan_id: case.loan_id.clone(),
                resolution: resolution.to_owned(),
            })
        })
        .await
    }

    async fn change_case(
        &self,
        ctx: &Ctx,
        command: &'static str,
        case_id: &CaseId,
        decide: impl Fn(&CollectionCase, &Loan) -> Payload,
    ) -> Result<CollectionCase, BankError> {
        retrying!({
            let mut work = Work::new(ctx, command);
            let mut case: Loaded<CollectionCase> = self
                .load_for(&mut work, &self.cases, case_id.as_str())
                .await?
                .ok_or_else(|| BankError::UnknownCase(case_id.clone()))?;
            if !case.state.open {
                return Err(BankError::InvalidState(format!("case `{case_id}` is resolved already")));
            }
            let mut loan = self.loan_for(&mut work, &case.state.loan_id).await?;
            let event = NexumEvent::new(case_id, decide(&case.state, &loan.state));
            work.record_linked(&event, case.stream.clone(), &mut [&mut loan])?;
            case.apply(&event, ctx.at);
            Ok(self.commit(work).await?.then(|| {
                self.loans.put(loan);
                self.cases.keep(case)
            }))
        })
    }
}
