//! The loan book.
//!
//! The outstanding principal is the principal less the principal part of every payment, summed
//! once per payment event; the `outstanding_principal` a payment carries is ignored, since
//! payments may arrive out of order. A loan's status only moves forward (originated, active, then
//! paid off or defaulted), so the furthest status seen wins, whatever the arrival order.
//! Collections (open case, missed payments) take the newest event's word.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use eventbus::{Currency, EventId};
use rust_decimal::Decimal;
use serde::Serialize;

use super::{Stamp, add, earliest, replace_if_newer};
use crate::domain::{LoanStatus, PaymentFrequency};
use crate::events::{DecodeError, LoanDefaulted, LoanOriginated, LoanPaymentReceived};
use crate::ids::{AccountId, CaseId, CustomerId, LoanId};

/// What a loan was originated with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoanTerms {
    /// The borrower.
    pub customer_id: CustomerId,
    /// The customer's account the principal was paid into and payments come from.
    pub account_id: AccountId,
    /// The loan's own account.
    pub loan_account_id: AccountId,
    /// The loan's currency.
    pub currency: Currency,
    /// The amount lent, a decimal string in `currency`.
    pub principal: Decimal,
    /// Annual nominal rate in percent.
    pub interest_rate: Decimal,
    /// How long the loan runs, in months.
    pub term_months: u32,
    /// How often an installment is due.
    pub payment_frequency: PaymentFrequency,
}

/// An open collections case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OpenCase {
    /// The case's id.
    pub case_id: CaseId,
    /// 1 when opened, one more per escalation.
    pub level: u32,
}

/// One loan as the loan book sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoanView {
    /// The loan's id.
    pub loan_id: LoanId,
    /// `None` while only later events of the loan have arrived, not its origination.
    #[serde(flatten)]
    pub terms: Option<LoanTerms>,
    /// When it was originated (UTC, written in RFC 3339); `None` until the origination arrives.
    pub originated_at: Option<DateTime<Utc>>,
    /// The furthest status seen; `None` until an event that sets one arrives.
    pub status: Option<LoanStatus>,
    /// The principal less what payments repaid of it; `None` until the terms are known.
    pub outstanding_principal: Option<Decimal>,
    /// The sum of the principal portions of its payments, a decimal string in its currency.
    pub principal_repaid: Decimal,
    /// The sum of the interest portions of its payments, a decimal string in its currency.
    pub interest_paid: Decimal,
    /// How many payments were received.
    pub payments_received: u32,
    /// When the latest payment was received (UTC, written in RFC 3339).
    pub last_payment_at: Option<DateTime<Utc>>,
    /// Scheduled installments missed, as of the latest collections event; 0 once resolved.
    pub missed_payments: u32,
    /// Its open collections case, as of the latest collections event; `None` once resolved.
    pub open_case: Option<OpenCase>,
    #[serde(skip)]
    terms_stamp: Option<Stamp>,
    #[serde(skip)]
    status_stamp: Option<Stamp>,
    #[serde(skip)]
    missed_stamp: Option<Stamp>,
    #[serde(skip)]
    case_stamp: Option<Stamp>,
}

impl LoanView {
    fn placeholder(loan_id: LoanId) -> Self {
        Self {
            loan_id,
            terms: None,
            originated_at: None,
            status: None,
            outstanding_principal: None,
            principal_repaid: Decimal::ZERO,
            interest_paid: Decimal::ZERO,
            payments_received: 0,
            last_payment_at: None,
            missed_payments: 0,
            open_case: None,
            terms_stamp: None,
            status_stamp: None,
            missed_stamp: None,
            case_stamp: None,
        }
    }

    /// Moves the status forward to `status`, if it is further on (or as far, and newer).
    fn advance(&mut self, status: LoanStatus, stamp: &Stamp) -> bool {
        let further = match (self.status, &self.status_stamp) {
            (Some(current), Some(seen)) => (status, stamp) > (current, seen),
            _ => true,
        };
        if further {
            self.status = Some(status);
            self.status_stamp = Some(stamp.clone());
        }
        further
    }

    fn missed(&mut self, missed: u32, stamp: &Stamp) -> bool {
        replace_if_newer(&mut self.missed_payments, &mut self.missed_stamp, stamp, missed)
    }

    fn refresh_outstanding(&mut self) {
        self.outstanding_principal = if self.status == Some(LoanStatus::Cancelled) {
            Some(Decimal::ZERO)
        } else {
            self.terms.as_ref().and_then(|terms| terms.principal.checked_sub(self.principal_repaid))
        };
    }
}

#[derive(Debug, Default)]
pub(super) struct Loans {
    entries: BTreeMap<LoanId, LoanView>,
    /// The `loan_payment_received` events applied: each payment must count once.
    payments: HashSet<EventId>,
}

impl Loans {
    pub(super) fn get(&self, id: &LoanId) -> Option<&LoanView> {
        self.entries.get(id)
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &LoanView> {
        self.entries.values()
    }

    pub(super) fn entries(&self) -> &BTreeMap<LoanId, LoanView> {
        &self.entries
    }

    fn entry(&mut self, id: &LoanId) -> &mut LoanView {
        self.entries.entry(id.clone()).or_insert_with(|| LoanView::placeholder(id.clone()))
    }

    pub(super) fn originated(&mut self, id: LoanId, originated: &LoanOriginated, stamp: &Stamp) -> bool {
        let entry = self.entry(&id);
        let terms = Some(LoanTerms {
            customer_id: originated.customer_id.clone(),
            account_id: originated.account_id.clone(),
            loan_account_id: originated.loan_account_id.clone(),
            currency: originated.currency,
            principal: originated.principal,
            interest_rate: originated.interest_rate,
            term_months: originated.term_months,
            payment_frequency: originated.payment_frequency,
        });
        // Terms never change; should an origination come twice, the newest counts.
        let new = replace_if_newer(&mut entry.terms, &mut entry.terms_stamp, stamp, terms);
        if new {
            entry.refresh_outstanding();
        }
        let originated = earliest(&mut entry.originated_at, stamp.at);
        entry.advance(LoanStatus::Originated, stamp) | new | originated
    }

    pub(super) fn disbursed(&mut self, id: LoanId, stamp: &Stamp) -> bool {
        self.entry(&id).advance(LoanStatus::Active, stamp)
    }

    /// Counts a payment once.
    pub(super) fn payment(
        &mut self,
        event_type: &str,
        id: LoanId,
        payment: &LoanPaymentReceived,
        stamp: &Stamp,
    ) -> Result<bool, DecodeError> {
        if self.payments.contains(&stamp.id) {
            return Ok(false);
        }
        // Sum first, so that an overflowing amount leaves the book untouched.
        let (repaid, paid) =
            self.get(&id).map_or((Decimal::ZERO, Decimal::ZERO), |e| (e.principal_repaid, e.interest_paid));
        let principal_repaid = add(event_type, repaid, payment.principal_portion)?;
        let interest_paid = add(event_type, paid, payment.interest_portion)?;
        let entry = self.entry(&id);
        entry.principal_repaid = principal_repaid;
        entry.interest_paid = interest_paid;
        entry.payments_received = entry.payments_received.saturating_add(1);
        entry.last_payment_at = entry.last_payment_at.max(stamp.at);
        entry.refresh_outstanding();
        self.payments.insert(stamp.id.clone());
        Ok(true)
    }

    pub(super) fn cancelled(&mut self, id: LoanId, stamp: &Stamp) -> bool {
        let entry = self.entry(&id);
        let changed = entry.advance(LoanStatus::Cancelled, stamp);
        entry.refresh_outstanding();
        changed
    }

    pub(super) fn paid_off(&mut self, id: LoanId, stamp: &Stamp) -> bool {
        self.entry(&id).advance(LoanStatus::PaidOff, stamp)
    }

    pub(super) fn defaulted(&mut self, id: LoanId, defaulted: &LoanDefaulted, stamp: &Stamp) -> bool {
        let entry = self.entry(&id);
        entry.advance(LoanStatus::Defaulted, stamp) | entry.missed(defaulted.missed_payments, stamp)
    }

    /// A case opened or escalated to `level`.
    pub(super) fn case_opened(
        &mut self,
        loan: &LoanId,
        case_id: CaseId,
        level: u32,
        missed: u32,
        stamp: &Stamp,
    ) -> bool {
        let entry = self.entry(loan);
        let case = Some(OpenCase { case_id, level });
        replace_if_newer(&mut entry.open_case, &mut entry.case_stamp, stamp, case) | entry.missed(missed, stamp)
    }

    pub(super) fn case_resolved(&mut self, loan: &LoanId, stamp: &Stamp) -> bool {
        let entry = self.entry(loan);
        replace_if_newer(&mut entry.open_case, &mut entry.case_stamp, stamp, None) | entry.missed(0, stamp)
    }
}
