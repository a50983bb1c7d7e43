//! A collections case: opened when a loan payment is overdue or the loan defaults, escalated
//! while payments stay missed, resolved by a payment or by hand.

use chrono::{DateTime, Utc};

use super::Aggregate;
use crate::events::{NexumEvent, Payload};
use crate::ids::{CaseId, LoanId};

/// A collections case as its stream leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionCase {
    /// The case's id.
    pub id: CaseId,
    /// The loan it is about.
    pub loan_id: LoanId,
    /// 1 when opened, one more per escalation.
    pub level: u32,
    /// Whether it is still open: false once resolved.
    pub open: bool,
    /// When the case reached its current level: opened, or last escalated.
    pub since: DateTime<Utc>,
}

impl Aggregate for CollectionCase {
    const KIND: &'static str = "case";

    fn create(entity_id: &str, event: &NexumEvent, at: DateTime<Utc>) -> Option<Self> {
        let Payload::CollectionCaseCreated(created) = &event.payload else { return None };
        Some(Self { id: entity_id.parse().ok()?, loan_id: created.loan_id.clone(), level: 1, open: true, since: at })
    }

    fn apply(&mut self, event: &NexumEvent, at: DateTime<Utc>) {
        match &event.payload {
            Payload::CollectionCaseEscalated(escalated) => {
                self.level = escalated.level;
                self.since = at;
            }
            Payload::CollectionCaseResolved(_) => self.open = false,
            _ => {}
        }
    }
}
