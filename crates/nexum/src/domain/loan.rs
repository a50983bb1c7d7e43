//! A loan: origination with its amortisation schedule, disbursement, payments split into
//! interest and principal, missed payments, default and pay-off.

use chrono::{DateTime, Months, NaiveDate, Utc};
use eventbus::Currency;
use rust_decimal::Decimal;
use serde::Serialize;

use super::{Aggregate, PaymentFrequency};
use crate::events::{Installment, LoanOriginated, NexumEvent, Payload};
use crate::ids::{AccountId, CaseId, CustomerId, LoanId};

/// Where a loan is in its life, written in `snake_case` on the wire (`paid_off`).
///
/// The variants are declared in the order a loan goes through them, and `Ord` follows that
/// order: a status only moves forward, so the loan book keeps the furthest status it has seen,
/// whatever order the events arrive in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoanStatus {
    /// Approved and booked by `loan_originated`; the principal is not paid out yet.
    Originated,
    /// Paid out by `loan_disbursed` and being repaid.
    Active,
    /// Repaid in full (`loan_paid_off`): nothing is outstanding.
    PaidOff,
    /// Declared in default after too many missed installments (`loan_defaulted`).
    Defaulted,
    /// Cancelled before it was paid out (`loan_cancelled`): nothing is outstanding.
    Cancelled,
}

/// A loan as its stream leaves it: its terms, where it is in its life, and what has been repaid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loan {
    /// The loan's id.
    pub id: LoanId,
    /// What it was originated with, schedule included; they never change.
    pub terms: LoanOriginated,
    /// Where it is in its life.
    pub status: LoanStatus,
    /// The principal still owed, in the loan's currency; 0 once paid off or cancelled.
    pub outstanding_principal: Decimal,
    /// All the interest paid so far, in the loan's currency.
    pub total_interest_paid: Decimal,
    /// Scheduled installments covered by payments so far.
    pub installments_paid: u32,
    /// What has been paid towards the next installment.
    pub paid_towards_next: Decimal,
    /// Installments found missed at the last check while a case was open; 0 once a payment
    /// brought the loan up to date.
    pub missed_payments: u32,
    /// The installment whose interest has been charged (0: none yet). Interest is charged once
    /// per installment, when the first payment towards it arrives.
    pub interest_charged_through: u32,
    /// Interest charged and not yet paid.
    pub interest_unpaid: Decimal,
    /// Its open collections case, if it has one.
    pub open_case: Option<CaseId>,
}

impl Loan {
    /// The borrower.
    pub fn customer_id(&self) -> &CustomerId {
        &self.terms.customer_id
    }

    /// The customer's account the principal was paid into and payments come from.
    pub fn account_id(&self) -> &AccountId {
        &self.terms.account_id
    }

    /// The loan's currency.
    pub fn currency(&self) -> Currency {
        self.terms.currency
    }

    /// One period's interest on what is outstanding, in minor units.
    fn period_interest(&self) -> Decimal {
        (self.outstanding_principal * periodic_rate(self.terms.interest_rate, self.terms.payment_frequency))
            .round_dp(self.currency().minor_units())
    }

    /// Whether the next payment starts an installment whose interest is not charged yet.
    fn charges_interest(&self) -> bool {
        self.interest_charged_through <= self.installments_paid
    }

    /// The interest the next payment pays first: what is charged and unpaid, plus the current
    /// installment's interest if it is not charged yet.
    pub fn interest_due(&self) -> Decimal {
        let new = if self.charges_interest() { self.period_interest() } else { Decimal::ZERO };
        self.interest_unpaid + new
    }

    /// The next installment not yet covered, if any.
    pub fn next_installment(&self) -> Option<&Installment> {
        self.terms.schedule.get(self.installments_paid as usize)
    }

    /// Installments due before `date` that are not covered.
    pub fn overdue_installments(&self, date: NaiveDate) -> u32 {
        let due = self.terms.schedule.iter().filter(|i| i.due_date < date).count() as u32;
        due.saturating_sub(self.installments_paid)
    }
}

/// The interest rate of one period: the annual percentage over the periods of a year.
pub fn periodic_rate(annual_percent: Decimal, frequency: PaymentFrequency) -> Decimal {
    annual_percent / Decimal::ONE_HUNDRED / Decimal::from(frequency.periods_per_year())
}

/// An annuity schedule: equal payments, each paying the period's interest first. The last
/// payment takes what rounding left over, so the principal is repaid exactly. `None` if the
/// numbers overflow.
pub fn amortisation_schedule(
    principal: Decimal,
    currency: Currency,
    annual_percent: Decimal,
    term_months: u32,
    frequency: PaymentFrequency,
    start: NaiveDate,
) -> Option<Vec<Installment>> {
    let periods = term_months / frequency.months();
    let rate = periodic_rate(annual_percent, frequency);
    let dp = currency.minor_units();
    let payment = if rate.is_zero() {
        principal / Decimal::from(periods)
    } else {
        let mut growth = Decimal::ONE;
        for _ in 0..periods {
            growth = growth.checked_mul(Decimal::ONE + rate)?;
        }
        principal.checked_mul(rate)?.checked_mul(growth)?.checked_div(growth - Decimal::ONE)?
    }
    .round_dp(dp);
    let mut remaining = principal;
    let mut schedule = Vec::with_capacity(periods as usize);
    for number in 1..=periods {
        let interest = (remaining * rate).round_dp(dp);
        let principal_part = if number == periods { remaining } else { (payment - interest).min(remaining) };
        remaining -= principal_part;
        schedule.push(Installment {
            number,
            due_date: start.checked_add_months(Months::new(number * frequency.months()))?,
            payment: principal_part + interest,
            principal: principal_part,
            interest,
            remaining_principal: remaining,
        });
    }
    Some(schedule)
}

impl Aggregate for Loan {
    const KIND: &'static str = "loan";

    fn create(entity_id: &str, event: &NexumEvent, _: DateTime<Utc>) -> Option<Self> {
        let Payload::LoanOriginated(terms) = &event.payload else { return None };
        Some(Self {
            id: entity_id.parse().ok()?,
            terms: terms.clone(),
            status: LoanStatus::Originated,
            outstanding_principal: terms.principal,
            total_interest_paid: Decimal::ZERO,
            installments_paid: 0,
            paid_towards_next: Decimal::ZERO,
            missed_payments: 0,
            interest_charged_through: 0,
            interest_unpaid: Decimal::ZERO,
            open_case: None,
        })
    }

    fn apply(&mut self, event: &NexumEvent, _: DateTime<Utc>) {
        match &event.payload {
            Payload::LoanDisbursed(_) => self.status = LoanStatus::Active,
            Payload::LoanPaymentReceived(payment) => {
                if self.charges_interest() {
                    self.interest_unpaid += self.period_interest();
                    self.interest_charged_through = self.installments_paid + 1;
                }
                self.interest_unpaid = (self.interest_unpaid - payment.interest_portion).max(Decimal::ZERO);
                self.outstanding_principal = payment.outstanding_principal;
                self.total_interest_paid += payment.interest_portion;
                self.paid_towards_next += payment.amount;
                while let Some(next) = self.next_installment().map(|i| i.payment)
                    && self.paid_towards_next >= next
                {
                    self.paid_towards_next -= next;
                    self.installments_paid += 1;
                }
            }
            Payload::LoanPaidOff(_) => self.status = LoanStatus::PaidOff,
            Payload::LoanCancelled(_) => {
                self.status = LoanStatus::Cancelled;
                self.outstanding_principal = Decimal::ZERO;
            }
            Payload::LoanDefaulted(defaulted) => {
                self.status = LoanStatus::Defaulted;
                self.missed_payments = defaulted.missed_payments;
            }
            Payload::CollectionCaseCreated(case) => {
                self.open_case = event.entity_id.parse().ok();
                self.missed_payments = case.missed_payments;
            }
            Payload::CollectionCaseEscalated(case) => self.missed_payments = case.missed_payments,
            Payload::CollectionCaseResolved(_) => {
                self.open_case = None;
                self.missed_payments = 0;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_annuity_repays_the_principal_exactly_in_equal_payments() {
        let usd: Currency = "USD".parse().unwrap();
        let start = NaiveDate::from_ymd_opt(2024, 1, 31).unwrap();
        let schedule = amortisation_schedule(
            Decimal::from(10_000),
            usd,
            "5.5".parse().unwrap(),
            60,
            PaymentFrequency::Monthly,
            start,
        )
        .unwrap();
        assert_eq!(schedule.len(), 60);
        assert_eq!(schedule[0].payment, "191.01".parse().unwrap());
        assert_eq!(schedule[0].interest, "45.83".parse().unwrap());
        assert_eq!(schedule.iter().map(|i| i.principal).sum::<Decimal>(), Decimal::from(10_000));
        assert_eq!(schedule.last().unwrap().remaining_principal, Decimal::ZERO);
        assert_eq!(schedule[0].due_date, NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
        assert!(schedule[..59].iter().all(|i| i.payment == schedule[0].payment));
    }

    #[test]
    fn a_status_sorts_in_the_order_of_a_loans_life_and_is_written_in_snake_case() {
        use LoanStatus::*;
        assert!(Originated < Active && Active < PaidOff && PaidOff < Defaulted && Defaulted < Cancelled);
        let written: Vec<_> = [Originated, Active, PaidOff, Defaulted, Cancelled]
            .iter()
            .map(|status| serde_json::to_value(status).unwrap())
            .collect();
        assert_eq!(written, ["originated", "active", "paid_off", "defaulted", "cancelled"]);
    }
}
