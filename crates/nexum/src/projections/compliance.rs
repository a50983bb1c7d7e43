//! Compliance alerts: large transactions and suspicious activity, newest first.
//!
//! Alerts are keyed by their alert id, so a redelivered alert replaces itself. They are listed
//! by time, then event id: the order the bank raised them in, whatever the arrival order.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use eventbus::Currency;
use rust_decimal::Decimal;
use serde::Serialize;

use super::Stamp;
use crate::events::{ComplianceAlertRaised, SuspiciousActivityDetected};
use crate::ids::{AccountId, AlertId, CustomerId, TransactionId};

/// Which event raised an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// `compliance_alert_raised`: one transaction at or above the reporting threshold.
    ComplianceAlert,
    /// `suspicious_activity_detected`: a pattern over several transactions, such as structuring.
    SuspiciousActivity,
}

/// One compliance alert: a large transaction, or a suspicious pattern of transactions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComplianceAlert {
    /// The alert's id: the `entity_id` of the event that raised it.
    pub alert_id: AlertId,
    /// Which event raised it.
    pub kind: AlertKind,
    /// Why it was raised: the alert or activity type, e.g. `large_transaction`, `structuring`.
    pub reason: String,
    /// The account the transaction or the pattern is about.
    pub account_id: AccountId,
    /// The customer who owns that account.
    pub customer_id: CustomerId,
    /// The transaction's amount, or the total of the pattern's transactions.
    pub amount: Decimal,
    /// The ISO 4217 code of `amount`.
    pub currency: Currency,
    /// The transactions it is about: the one large transaction, or the pattern's, oldest first.
    pub transaction_ids: Vec<TransactionId>,
    /// The threshold a large transaction reached.
    pub threshold: Option<Decimal>,
    /// The window a pattern was found in.
    pub window_hours: Option<u32>,
    /// When it was raised (UTC, written in RFC 3339): the time of its event.
    pub raised_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    stamp: Option<Stamp>,
}

#[derive(Debug, Default)]
pub(super) struct Alerts {
    entries: BTreeMap<AlertId, ComplianceAlert>,
}

impl Alerts {
    /// Every alert, newest first.
    pub(super) fn newest(&self) -> impl Iterator<Item = &ComplianceAlert> {
        let mut alerts: Vec<_> = self.entries.values().collect();
        alerts.sort_by(|a, b| b.stamp.cmp(&a.stamp).then_with(|| b.alert_id.cmp(&a.alert_id)));
        alerts.into_iter()
    }

    pub(super) fn raised(&mut self, id: AlertId, alert: &ComplianceAlertRaised, stamp: &Stamp) -> bool {
        self.put(ComplianceAlert {
            alert_id: id,
            kind: AlertKind::ComplianceAlert,
            reason: alert.alert_type.clone(),
            account_id: alert.account_id.clone(),
            customer_id: alert.customer_id.clone(),
            amount: alert.amount,
            currency: alert.currency,
            transaction_ids: vec![alert.transaction_id.clone()],
            threshold: Some(alert.threshold),
            window_hours: None,
            raised_at: stamp.at,
            stamp: Some(stamp.clone()),
        })
    }

    pub(super) fn suspicious(&mut self, id: AlertId, report: &SuspiciousActivityDetected, stamp: &Stamp) -> bool {
        self.put(ComplianceAlert {
            alert_id: id,
            kind: AlertKind::SuspiciousActivity,
            reason: report.activity_type.clone(),
            account_id: report.account_id.clone(),
            customer_id: report.customer_id.clone(),
            amount: report.total_amount,
            currency: report.currency,
            transaction_ids: report.transaction_ids.clone(),
            threshold: None,
            window_hours: Some(report.window_hours),
            raised_at: stamp.at,
            stamp: Some(stamp.clone()),
        })
    }

    /// Stores `alert` unless an event about the same alert, as new or newer, is stored already.
    fn put(&mut self, alert: ComplianceAlert) -> bool {
        if self.entries.get(&alert.alert_id).is_some_and(|current| current.stamp >= alert.stamp) {
            return false;
        }
        self.entries.insert(alert.alert_id.clone(), alert);
        true
    }
}
