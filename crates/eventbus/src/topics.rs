//! Topic names, Kafka's naming rules, and the catalog of topics that exist from the start.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Kafka's limit on the length of a topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// The suffix of a topic's dead-letter topic.
pub const DLQ_SUFFIX: &str = ".dlq";

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The name is empty. Give at least one character.
    #[error("topic name is empty")]
    Empty,
    /// The name is `.` or `..`, which Kafka reserves. Choose another name.
    #[error("topic name `{0}` is not allowed (`.` and `..` are reserved)")]
    Reserved(String),
    /// The name has more than [`MAX_TOPIC_NAME_LEN`] characters; this is its length. Shorten it.
    #[error("topic name is {0} characters long; at most 249 are allowed")]
    TooLong(usize),
    /// The name holds a character outside `[a-zA-Z0-9._-]`. Replace or drop it.
    #[error("topic name `{name}` contains `{bad}`; only ASCII letters, digits, `.`, `_` and `-` are allowed")]
    InvalidChar {
        /// The name as given.
        name: String,
        /// The first character that is not allowed.
        bad: char,
    },
}

/// A valid topic name: `[a-zA-Z0-9._-]`, 1 to 249 characters, not `.` or `..`. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// A topic name, checked against Kafka's rules; [`TopicError`] says which rule it breaks.
    pub fn new(name: &str) -> Result<Self, TopicError> {
        if name.is_empty() {
            return Err(TopicError::Empty);
        }
        if name == "." || name == ".." {
            return Err(TopicError::Reserved(name.to_owned()));
        }
        if name.len() > MAX_TOPIC_NAME_LEN {
            return Err(TopicError::TooLong(name.len()));
        }
        if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
            return Err(TopicError::InvalidChar { name: name.to_owned(), bad });
        }
        Ok(Self(name.into()))
    }

    /// The name as text, e.g. `nexum.transactions.created`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dead-letter topic of this topic, `<topic>.dlq`.
    pub fn dlq(&self) -> TopicName {
        Self(format!("{}{DLQ_SUFFIX}", self.0).into())
    }

    /// Whether this is a dead-letter topic: its name ends in [`DLQ_SUFFIX`].
    pub fn is_dlq(&self) -> bool {
        self.0.ends_with(DLQ_SUFFIX)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for TopicName {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for TopicName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TopicName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Whether a topic carries events out of core banking or commands into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicKind {
    /// Events out of core banking: facts, named in the past tense, that consumers react to.
    Event,
    /// Commands into core banking: requests that it carries out or refuses on
    /// `nexum.commands.rejected`.
    Command,
    /// A dead-letter topic, `<topic>.dlq`: messages that could not be handled, with the reason.
    DeadLetter,
}

macro_rules! catalog {
    ($($(#[$attr:meta])* $variant:ident = $name:literal, $partitions:literal, $kind:ident;)*) => {
        /// Every topic of the catalog: the seed's `nexum.*` event and command topics and
        /// Capera's streams. Each also has a dead-letter topic, `<topic>.dlq`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Topic {
            $($(#[$attr])* $variant,)*
        }

        impl Topic {
            /// All catalog topics, dead-letter topics not included.
            pub const ALL: &'static [Topic] = &[$(Topic::$variant,)*];

            /// The topic's name, e.g. `nexum.transactions.created`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Topic::$variant => $name,)*
                }
            }

            /// How many partitions the topic is created with.
            pub fn partitions(self) -> u32 {
                match self {
                    $(Topic::$variant => $partitions,)*
                }
            }

            /// Whether the topic carries events or commands.
            pub fn kind(self) -> TopicKind {
                match self {
                    $(Topic::$variant => TopicKind::$kind,)*
                }
            }
        }
    };
}

catalog! {
    /// Transactions recorded, before they post or fail (`transaction_created`).
    TransactionsCreated = "nexum.transactions.created", 3, Event;
    /// Transactions posted to the ledger, with their journal entry (`transaction_posted`).
    TransactionsPosted = "nexum.transactions.posted", 3, Event;
    /// Transactions that could not be carried out, with the reason (`transaction_failed`).
    TransactionsFailed = "nexum.transactions.failed", 3, Event;
    /// Accounts opened (`account_created`).
    AccountsCreated = "nexum.accounts.created", 3, Event;
    /// Changes to accounts, such as their status or limit (`account_updated`).
    AccountsUpdated = "nexum.accounts.updated", 3, Event;
    /// Customers onboarded (`customer_created`).
    CustomersCreated = "nexum.customers.created", 3, Event;
    /// Changes to customers' details (`customer_updated`).
    CustomersUpdated = "nexum.customers.updated", 3, Event;
    /// Changes to a customer's KYC status or tier (`kyc_status_changed`).
    CustomersKycChanged = "nexum.customers.kyc_changed", 3, Event;
    /// Loans originated, with their terms and repayment schedule (`loan_originated`).
    LoansOriginated = "nexum.loans.originated", 3, Event;
    /// Loan principal paid out to the borrower (`loan_disbursed`).
    LoansDisbursed = "nexum.loans.disbursed", 3, Event;
    /// Repayments received on loans (`loan_payment_received`).
    LoansPayment = "nexum.loans.payment", 3, Event;
    /// Loans repaid in full (`loan_paid_off`).
    LoansPaidOff = "nexum.loans.paid_off", 3, Event;
    /// Loans declared in default (`loan_defaulted`).
    LoansDefaulted = "nexum.loans.defaulted", 3, Event;
    /// Loans cancelled before they were paid out (`loan_cancelled`).
    LoansCancelled = "nexum.loans.cancelled", 3, Event;
    /// Statements issued for credit accounts (`credit_statement_generated`).
    CreditStatementGenerated = "nexum.credit.statement_generated", 3, Event;
    /// Payments received on credit accounts (`credit_payment_received`).
    CreditPayment = "nexum.credit.payment", 3, Event;
    /// Collection cases opened on overdue loans (`collection_case_created`).
    CollectionsCaseCreated = "nexum.collections.case_created", 3, Event;
    /// Collection cases raised to a higher level (`collection_case_escalated`).
    CollectionsCaseEscalated = "nexum.collections.case_escalated", 3, Event;
    /// Collection cases closed (`collection_case_resolved`).
    CollectionsCaseResolved = "nexum.collections.case_resolved", 3, Event;
    /// Compliance alerts, such as a transaction above a threshold (`compliance_alert_raised`).
    ComplianceAlert = "nexum.compliance.alert", 3, Event;
    /// Suspicious activity detected on accounts (`suspicious_activity_detected`).
    ComplianceSuspiciousActivity = "nexum.compliance.suspicious_activity", 3, Event;
    /// The audit trail: each command, who asked and the outcome (`audit_event_recorded`).
    AuditEvents = "nexum.audit.events", 3, Event;
    /// Each completed step of a workflow such as a loan application (`workflow_step_completed`).
    WorkflowsStepCompleted = "nexum.workflows.step_completed", 3, Event;
    /// Workflows that reached their end (`workflow_completed`).
    WorkflowsCompleted = "nexum.workflows.completed", 3, Event;
    /// Workflows stopped by a rejection at one of their steps (`workflow_rejected`).
    WorkflowsRejected = "nexum.workflows.rejected", 3, Event;
    /// Commands to deposit, withdraw or transfer (`transaction_command`).
    CommandsTransactions = "nexum.commands.transactions", 3, Command;
    /// Commands to create or update customers, set KYC or open accounts (`customer_command`).
    CommandsCustomers = "nexum.commands.customers", 3, Command;
    /// Commands to originate, disburse, repay or cancel loans, and collections (`loan_command`).
    CommandsLoans = "nexum.commands.loans", 3, Command;
    /// Commands that core banking refused, with the reason; an event topic (`command_rejected`).
    CommandsRejected = "nexum.commands.rejected", 3, Event;
    /// Capera's feed of bank transactions, keyed by account id (`bank_transaction_recorded`).
    BankTransactions = "bank.transactions", 3, Event;
    /// Capera's feed of market prices, keyed by instrument symbol (`market_price_updated`).
    MarketPriceUpdates = "market.price.updates", 3, Event;
    /// Capera's recommendations, each with the rule and the event that triggered it.
    CaperaRecommendations = "capera.recommendations", 3, Event;
}

/// Dead-letter topics have one partition: failures are rare and read in the order they happened.
pub const DLQ_PARTITIONS: u32 = 1;
/// The most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

impl TopicName {
    /// This topic with `partitions`, and, unless it is a dead-letter topic itself, its
    /// dead-letter topic: what creating a topic creates.
    pub(crate) fn with_dlq(&self, partitions: u32) -> Vec<(TopicName, u32)> {
        let mut topics = vec![(self.clone(), partitions)];
        if !self.is_dlq() {
            topics.push((self.dlq(), DLQ_PARTITIONS));
        }
        topics
    }

    /// The partitions auto-create gives this topic.
    pub(crate) fn auto_partitions(&self, default_partitions: u32) -> u32 {
        if self.is_dlq() { DLQ_PARTITIONS } else { default_partitions }
    }
}

impl Topic {
    /// The topic's name, to publish or subscribe with.
    pub fn name(self) -> TopicName {
        TopicName(self.as_str().into())
    }

    /// The name of the topic's dead-letter topic, `<topic>.dlq`.
    pub fn dlq(self) -> TopicName {
        self.name().dlq()
    }

    /// Every topic that exists from the start, with its partition count: the catalog and the
    /// dead-letter topic of each.
    pub fn bootstrap() -> impl Iterator<Item = (TopicName, u32)> {
        Self::ALL.iter().flat_map(|t| [(t.name(), t.partitions()), (t.dlq(), DLQ_PARTITIONS)])
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Topic> for TopicName {
    fn from(topic: Topic) -> Self {
        topic.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kafka_naming_rules_are_enforced() {
        assert!(TopicName::new("nexum.transactions.created").is_ok());
        assert!(TopicName::new("A-b_c.9").is_ok());
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert!(matches!(TopicName::new(".."), Err(TopicError::Reserved(_))));
        assert!(matches!(TopicName::new("has space"), Err(TopicError::InvalidChar { bad: ' ', .. })));
        assert!(matches!(TopicName::new("ünïcode"), Err(TopicError::InvalidChar { .. })));
        assert!(TopicName::new(&"a".repeat(249)).is_ok());
        assert_eq!(TopicName::new(&"a".repeat(250)), Err(TopicError::TooLong(250)));
    }

    #[test]
    fn catalog_names_are_valid_unique_and_capera_streams_have_three_partitions() {
        let names: std::collections::HashSet<_> = Topic::bootstrap().map(|(n, _)| n).collect();
        assert_eq!(names.len(), Topic::ALL.len() * 2);
        for topic in Topic::ALL {
            assert_eq!(TopicName::new(topic.as_str()).unwrap(), topic.name());
        }
        assert_eq!(Topic::BankTransactions.as_str(), "bank.transactions");
        assert_eq!(Topic::BankTransactions.partitions(), 3);
        assert_eq!(Topic::MarketPriceUpdates.partitions(), 3);
        assert_eq!(Topic::CommandsLoans.kind(), TopicKind::Command);
        assert_eq!(Topic::BankTransactions.dlq().as_str(), "bank.transactions.dlq");
    }

    proptest! {
        #[test]
        fn any_name_of_legal_characters_is_accepted(name in "[a-zA-Z0-9._-]{1,249}") {
            prop_assume!(name != "." && name != "..");
            let topic = TopicName::new(&name).unwrap();
            prop_assert_eq!(topic.as_str(), name.as_str());
        }
    }
}
