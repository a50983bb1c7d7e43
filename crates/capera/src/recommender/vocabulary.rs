//! The vocabulary of recommendations: what a recommendation is about ([`SubjectType`]), which
//! [`Rule`] issued it, what it advises ([`Action`]), and the [`Recommendation`] itself with its
//! `recommendation_issued` event.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use eventbus::{EventId, EventSchema, Topic};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `event_type` of an issued recommendation.
pub const RECOMMENDATION_ISSUED: &str = "recommendation_issued";
/// The `source` of recommendation events.
pub const RECOMMENDER_SOURCE: &str = "capera.recommender";

/// What a recommendation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    /// A bank account; the subject id is the account id.
    Account,
    /// A market instrument; the subject id is its symbol.
    Instrument,
}

impl SubjectType {
    /// The name on the wire: `account` or `instrument`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectType::Account => "account",
            SubjectType::Instrument => "instrument",
        }
    }
}

impl fmt::Display for SubjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule that issued a recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A debit at least `large_debit_multiple` times the mean of the account's previous debits.
    LargeDebit,
    /// Net inflow over the account's recent transactions at or above `savings_threshold`.
    SavingsOpportunity,
    /// A price at or below `dip_ratio` times its simple moving average.
    PriceDip,
    /// A price at or above `surge_ratio` times its simple moving average.
    PriceSurge,
}

impl Rule {
    /// Every rule, in the order the recommender evaluates them and returns what they issue.
    pub const ALL: [Rule; 4] = [Rule::LargeDebit, Rule::SavingsOpportunity, Rule::PriceDip, Rule::PriceSurge];

    /// The name on the wire, such as `large_debit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::LargeDebit => "large_debit",
            Rule::SavingsOpportunity => "savings_opportunity",
            Rule::PriceDip => "price_dip",
            Rule::PriceSurge => "price_surge",
        }
    }

    /// What the rule recommends.
    pub fn action(self) -> Action {
        match self {
            Rule::LargeDebit => Action::ReviewTransaction,
            Rule::SavingsOpportunity => Action::MoveToSavings,
            Rule::PriceDip => Action::ConsiderBuy,
            Rule::PriceSurge => Action::ConsiderTakingProfit,
        }
    }

    /// What the rule looks at.
    pub fn subject_type(self) -> SubjectType {
        match self {
            Rule::LargeDebit | Rule::SavingsOpportunity => SubjectType::Account,
            Rule::PriceDip | Rule::PriceSurge => SubjectType::Instrument,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the customer is advised to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Check that an unusual debit is expected.
    ReviewTransaction,
    /// Move a surplus to a savings account.
    MoveToSavings,
    /// Consider buying the instrument, which is below its average.
    ConsiderBuy,
    /// Consider selling some of the instrument, which is above its average.
    ConsiderTakingProfit,
}

impl Action {
    /// The name on the wire, such as `review_transaction`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReviewTransaction => "review_transaction",
            Action::MoveToSavings => "move_to_savings",
            Action::ConsiderBuy => "consider_buy",
            Action::ConsiderTakingProfit => "consider_taking_profit",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One explainable recommendation: the rule, its inputs and a reason a person can read.
///
/// Readers are tolerant: fields added by a later version are ignored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Recommendation {
    /// Derived from the rule and the triggering event's id: a replay yields the same id.
    pub recommendation_id: EventId,
    /// Whether the subject is an account or an instrument.
    pub subject_type: SubjectType,
    /// The account id or the instrument symbol; the partition key of the recommendation.
    pub subject_id: String,
    /// The rule that issued it.
    pub rule: Rule,
    /// What the customer is advised to do: the rule's [`Rule::action`].
    pub action: Action,
    /// Why, in one sentence.
    pub reason: String,
    /// The figures the rule compared, as decimal strings (`"1523.40"`).
    pub inputs: BTreeMap<String, String>,
    /// The `event_id` of the event that triggered the rule.
    pub triggered_by: EventId,
}

impl Recommendation {
    /// The topic recommendations are published to.
    pub const TOPIC: Topic = Topic::CaperaRecommendations;

    /// The id of the recommendation `rule` issues for the event `triggered_by`.
    pub fn derive_id(rule: Rule, triggered_by: &EventId) -> EventId {
        EventId::derived(&format!("{RECOMMENDER_SOURCE}/{rule}/{triggered_by}"))
    }

    /// The partition key: the subject, so that one account's or instrument's recommendations
    /// keep their order.
    pub fn key(&self) -> &str {
        &self.subject_id
    }

    /// The `recommendation_issued` event for [`Recommendation::TOPIC`]. `triggered_at` is the
    /// timestamp of the triggering event, so a replay yields the same event; its id is the
    /// recommendation id and its `causation_id` the triggering event.
    pub fn to_event(&self, triggered_at: DateTime<Utc>) -> EventSchema {
        let data = match serde_json::to_value(self) {
            Ok(Value::Object(data)) => data,
            _ => unreachable!("a Recommendation serialises to a JSON object"),
        };
        let mut metadata = Map::new();
        metadata.insert("causation_id".into(), Value::from(self.triggered_by.to_string()));
        EventSchema {
            event_id: Some(self.recommendation_id.clone()),
            event_type: RECOMMENDATION_ISSUED.into(),
            timestamp: Some(triggered_at),
            source: Some(RECOMMENDER_SOURCE.to_owned()),
            version: Some(eventbus::envelope::DEFAULT_VERSION.to_owned()),
            entity_type: "recommendation".to_owned(),
            entity_id: self.recommendation_id.to_string(),
            data: data.into(),
            metadata: metadata.into(),
        }
    }

    /// Reads a recommendation back from its `recommendation_issued` event.
    pub fn from_event(event: &EventSchema) -> Result<Self, serde_json::Error> {
        serde_json::from_value(event.data.to_value())
    }
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {} {}: {}, because {}", self.rule, self.subject_type, self.subject_id, self.action, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommender::Recommender;
    use crate::recommender::fixtures::{feed, flat_history, price};

    #[test]
    fn the_recommendation_event_carries_the_recommendation() {
        let mut rec = Recommender::new();
        feed(&mut rec, &flat_history("AAPL", 20));
        let dip = price("AAPL", 21, "90.00");
        let r = rec.on_event(&dip).unwrap().remove(0);
        let event = r.to_event(dip.timestamp.unwrap());
        assert_eq!(event.event_type.as_str(), RECOMMENDATION_ISSUED);
        assert_eq!(event.entity_type, "recommendation");
        assert_eq!(event.source(), RECOMMENDER_SOURCE);
        assert_eq!(event.event_id.as_ref(), Some(&r.recommendation_id));
        assert_eq!(event.timestamp, dip.timestamp);
        assert_eq!(event.data["triggered_by"], "AAPL-21");
        assert_eq!(event.metadata["causation_id"], "AAPL-21");
        assert_eq!(r.key(), "AAPL");
        assert_eq!(Recommendation::from_event(&event).unwrap(), r);
    }
}
