//! Ids of the banking entities. Each kind has its own type and prefix (`acc_`, `cust_`, ...), so
//! an account id cannot be passed where a customer id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// The longest id accepted from outside.
const MAX_ID_LEN: usize = 128;

/// Why an id was refused. It does not repeat the text: a refused id is often something else
/// sent in its place (an email, a name), and the error goes into rejections, dead letters and
/// logs. It says where the text goes wrong instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id: expected 1 to 128 ASCII letters, digits, `_`, `-` or `.`; {problem}")]
pub struct IdError {
    /// The kind of id expected, e.g. `account`.
    pub kind: &'static str,
    /// What is wrong with the text, without the text.
    pub problem: String,
}

impl IdError {
    fn of(kind: &'static str, text: &str) -> Self {
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        let chars = text.chars().count();
        let problem = match text.chars().position(|c| !legal(c)) {
            _ if text.is_empty() => "it is empty".to_owned(),
            Some(at) => format!("character {} of {chars} is not one of them", at + 1),
            None => format!("it has {chars} characters"),
        };
        Self { kind, problem }
    }
}

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident = $prefix:literal, $kind:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh id: the prefix and a time-ordered UUID v7.
            pub fn new() -> Self {
                Self(format!(concat!($prefix, "{}"), Uuid::now_v7().simple()))
            }

            /// The same id every time for the same name (UUID v5), for deterministic tests and
            /// replays.
            pub fn derived(name: &str) -> Self {
                const NAMESPACE: Uuid = Uuid::from_u128(0x6e65_7875_6d2d_6964_7300_0000_0000_0001);
                Self(format!(concat!($prefix, "{}"), Uuid::new_v5(&NAMESPACE, name.as_bytes()).simple()))
            }

            /// The id as written, prefix included.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            /// Any id of legal characters, so ids of other systems (`acc_123`) are kept as they are.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
                if s.is_empty() || s.len() > MAX_ID_LEN || !s.chars().all(legal) {
                    return Err(IdError::of($kind, s));
                }
                Ok(Self(s.to_owned()))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

ids! {
    /// A customer.
    CustomerId = "cust_", "customer";
    /// A customer's account, or one of the bank's own ledger accounts (`gl_cash`).
    AccountId = "acc_", "account";
    /// A money movement: deposit, withdrawal, transfer, loan disbursement or payment.
    TransactionId = "txn_", "transaction";
    /// The balanced set of postings of one posted transaction.
    JournalEntryId = "je_", "journal entry";
    /// A loan.
    LoanId = "loan_", "loan";
    /// A credit-card statement.
    StatementId = "stmt_", "statement";
    /// A collections case.
    CaseId = "case_", "case";
    /// A compliance alert or suspicious-activity report.
    AlertId = "alert_", "alert";
    /// An instance of a workflow, such as one loan approval.
    WorkflowId = "wf_", "workflow";
    /// One audit record.
    AuditId = "aud_", "audit";
    /// A command sent to core banking: its `event_id`, the key of its exactly-once effect.
    CommandId = "cmd_", "command";
}

impl AccountId {
    /// The bank's cash account: the other side of deposits and withdrawals.
    pub fn cash() -> Self {
        Self("gl_cash".to_owned())
    }

    /// The bank's interest income: where the interest part of loan payments goes.
    pub fn interest_income() -> Self {
        Self("gl_interest_income".to_owned())
    }

    /// Ledger accounts of the bank itself, which have no stream and no owner.
    pub fn is_ledger(&self) -> bool {
        self.0.starts_with("gl_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_id_is_not_repeated_in_its_error_but_located() {
        let error = "jane.doe@example.com".parse::<CustomerId>().unwrap_err().to_string();
        assert!(!error.contains("jane"), "personal data sent as an id stays out of the error: {error}");
        assert!(error.contains("character 9 of 20"), "{error}");
        let long = "a".repeat(129).parse::<CustomerId>().unwrap_err().to_string();
        assert!(long.contains("it has 129 characters"), "{long}");
        assert!("".parse::<CustomerId>().unwrap_err().to_string().contains("it is empty"));
    }

    #[test]
    fn new_ids_carry_their_prefix_and_parse_back() {
        let id = AccountId::new();
        assert!(id.as_str().starts_with("acc_"));
        assert_eq!(id.as_str().parse::<AccountId>().unwrap(), id);
        assert_eq!(CustomerId::derived("x"), CustomerId::derived("x"));
    }

    #[test]
    fn seed_ids_are_accepted_and_junk_is_refused() {
        assert!("txn_123".parse::<TransactionId>().is_ok());
        assert!("acc_from".parse::<AccountId>().is_ok());
        assert!("".parse::<AccountId>().is_err());
        assert!("acc 1".parse::<AccountId>().is_err());
        assert!("a".repeat(129).parse::<AccountId>().is_err());
        assert!(serde_json::from_str::<AccountId>("\"../etc\"").is_err());
    }
}
