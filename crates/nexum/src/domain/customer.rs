//! A customer and the state of their identity check.

use chrono::{DateTime, Utc};

use super::{Aggregate, KycStatus, KycTier};
use crate::events::{CustomerDetails, NexumEvent, Payload};
use crate::ids::CustomerId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    pub id: CustomerId,
    pub details: CustomerDetails,
}

impl Customer {
    pub fn kyc_status(&self) -> KycStatus {
        self.details.kyc_status
    }

    pub fn kyc_tier(&self) -> KycTier {
        self.details.kyc_tier
    }
}

impl Aggregate for Customer {
    const KIND: &'static str = "customer";

    fn create(entity_id: &str, event: &NexumEvent, _: DateTime<Utc>) -> Option<Self> {
        match &event.payload {
            Payload::CustomerCreated(details) => Some(Self { id: entity_id.parse().ok()?, details: details.clone() }),
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
            _ => {}
        }
    }
}
