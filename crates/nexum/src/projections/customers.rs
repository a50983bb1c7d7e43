//! The customer directory.
//!
//! Contact details and KYC are replaced separately: `kyc_status_changed` carries only the KYC,
//! so it must not be overwritten by an older `customer_updated` that arrives after it, nor the
//! other way round. Each keeps the stamp of the event it came from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Stamp, earliest, replace_if_newer};
use crate::domain::{KycStatus, KycTier};
use crate::events::{CustomerDetails, KycStatusChanged};
use crate::ids::{AccountId, CustomerId};

/// A customer's name and how to reach them: personal data, masked in `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    /// The customer's given name.
    pub first_name: String,
    /// The customer's family name.
    pub last_name: String,
    /// The customer's e-mail address.
    pub email: String,
    /// The customer's phone number in E.164 form, if they gave one.
    pub phone: Option<String>,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        write!(f, "Contact {}", eventbus::envelope::masked(&value))
    }
}

/// Where a customer's identity check stands, as of the newest event that set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Kyc {
    /// Pending, verified or rejected.
    pub kyc_status: KycStatus,
    /// The tier that sets the customer's transaction limit.
    pub kyc_tier: KycTier,
}

/// One customer as the directory sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustomerView {
    /// The customer's id.
    pub customer_id: CustomerId,
    /// `None` while only the customer's accounts have arrived, not their creation.
    #[serde(flatten)]
    pub contact: Option<Contact>,
    /// Their KYC; `None` while only their accounts have arrived.
    #[serde(flatten)]
    pub kyc: Option<Kyc>,
    /// The accounts they own, in id order.
    pub account_ids: BTreeSet<AccountId>,
    /// When they were onboarded (UTC, written in RFC 3339): the time of their earliest
    /// `customer_created`.
    pub created_at: Option<DateTime<Utc>>,
    /// The time of the newest event about the customer.
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    contact_stamp: Option<Stamp>,
    #[serde(skip)]
    kyc_stamp: Option<Stamp>,
}

impl CustomerView {
    fn placeholder(customer_id: CustomerId) -> Self {
        Self {
            customer_id,
            contact: None,
            kyc: None,
            account_ids: BTreeSet::new(),
            created_at: None,
            updated_at: None,
            contact_stamp: None,
            kyc_stamp: None,
        }
    }

    fn touched(&mut self, stamp: &Stamp) -> bool {
        let newer = stamp.at > self.updated_at;
        self.updated_at = self.updated_at.max(stamp.at);
        newer
    }

    fn details(&mut self, details: &CustomerDetails, stamp: &Stamp) -> bool {
        let contact = Contact {
            first_name: details.first_name.clone(),
            last_name: details.last_name.clone(),
            email: details.email.clone(),
            phone: details.phone.clone(),
        };
        let kyc = Kyc { kyc_status: details.kyc_status, kyc_tier: details.kyc_tier };
        let touched = self.touched(stamp);
        let contact = replace_if_newer(&mut self.contact, &mut self.contact_stamp, stamp, Some(contact));
        let kyc = replace_if_newer(&mut self.kyc, &mut self.kyc_stamp, stamp, Some(kyc));
        touched | contact | kyc
    }
}

#[derive(Debug, Default)]
pub(super) struct Customers {
    entries: BTreeMap<CustomerId, CustomerView>,
}

impl Customers {
    pub(super) fn get(&self, id: &CustomerId) -> Option<&CustomerView> {
        self.entries.get(id)
    }

    pub(super) fn entries(&self) -> &BTreeMap<CustomerId, CustomerView> {
        &self.entries
    }

    fn entry(&mut self, id: &CustomerId) -> &mut CustomerView {
        self.entries.entry(id.clone()).or_insert_with(|| CustomerView::placeholder(id.clone()))
    }

    pub(super) fn created(&mut self, id: CustomerId, details: &CustomerDetails, stamp: &Stamp) -> bool {
        let entry = self.entry(&id);
        let created = earliest(&mut entry.created_at, stamp.at);
        entry.details(details, stamp) | created
    }

    pub(super) fn updated(&mut self, id: CustomerId, details: &CustomerDetails, stamp: &Stamp) -> bool {
        self.entry(&id).details(details, stamp)
    }

    pub(super) fn kyc_changed(&mut self, id: CustomerId, change: &KycStatusChanged, stamp: &Stamp) -> bool {
        let entry = self.entry(&id);
        let kyc = Kyc { kyc_status: change.new_status, kyc_tier: change.new_tier };
        entry.touched(stamp) | replace_if_newer(&mut entry.kyc, &mut entry.kyc_stamp, stamp, Some(kyc))
    }

    /// Lists `account` among the customer's accounts: `account_created` and `account_updated`
    /// both name the owner, so either one, whichever comes first, links them.
    pub(super) fn lists_account(&mut self, id: &CustomerId, account: &AccountId) -> bool {
        self.entry(id).account_ids.insert(account.clone())
    }
}
