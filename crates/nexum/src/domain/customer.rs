//! A customer and the state of their identity check.

use chrono::{DateTime, Utc};

use eventbus::Currency;

use super::{AccountType, Aggregate, KycStatus, KycTier};
use crate::events::{CustomerDetails, NexumEvent, Payload};
use crate::ids::{AccountId, CustomerId};

/// A customer as their stream leaves them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    /// The customer's id.
    pub id: CustomerId,
    /// Their name, contact details and KYC, as of the latest change.
    pub details: CustomerDetails,
    /// The customer's accounts, oldest first: each `account_created` is linked into the
    /// customer's stream.
    pub accounts: Vec<OwnedAccount>,
}

/// An account as its owner's record knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedAccount {
    /// The account's id.
    pub id: AccountId,
    /// The kind of account.
    pub account_type: AccountType,
    /// The account's currency.
    pub currency: Currency,
}

impl Customer {
    /// Where the customer's identity check stands.
    pub fn kyc_status(&self) -> KycStatus {
        self.details.kyc_status
    }

    /// The customer's KYC tier.
    pub fn kyc_tier(&self) -> KycTier {
        self.details.kyc_tier
    }
}

impl Aggregate for Customer {
    const KIND: &'static str = "customer";

    fn create(entity_id: &str, event: &NexumEvent, _: DateTime<Utc>) -> Option<Self> {
        match &event.payload {
            Payload::CustomerCreated(details) => {
                Some(Self { id: entity_id.parse().ok()?, details: details.clone(), accounts: Vec::new() })
            }
            _ => None,
        }
    }

    fn apply(&mut self, event: &NexumEvent, _: DateTime<Utc>) {
        match &event.payload {
            Payload::CustomerUpdated(details) => self.details = details.clone(),
            Payload::KycStatusChanged(change) => {
                self.details.kyc_status = change.new_status;
                self.details.kyc_tier = change.new_tier;
            }
            Payload::AccountCreated(account) => {
                if let Ok(id) = event.entity_id.parse() {
                    self.accounts.push(OwnedAccount {
                        id,
                        account_type: account.account_type,
                        currency: account.currency,
                    });
                }
            }
            _ => {}
        }
    }
}
