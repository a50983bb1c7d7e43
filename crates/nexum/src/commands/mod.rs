//! Commands other systems send to core banking over the bus, in the seed's format: an
//! `EventSchema` on a `nexum.commands.*` topic whose `data.action` names what to do.
//!
//! ```json
//! {"event_id": "…", "event_type": "transaction_command", "entity_type": "transaction", "entity_id": "acc_123",
//!  "data": {"action": "deposit", "account_id": "acc_123", "amount": "100.00", "currency": "USD"}}
//! ```
//!
//! Parsing is strict: a missing field, a field of the wrong type (an amount must be a decimal
//! string, never a JSON number), an unknown field or an unknown action is refused with the
//! reason. Amounts and ids are checked again by the bank.

mod handler;

use eventbus::{EventSchema, Topic, TopicName};
use serde::Deserialize;
use serde_json::Value;

use crate::bank::{BankError, parse_amount, parse_currency};
use crate::domain::{AccountType, KycStatus, KycTier, PaymentFrequency};
use crate::ids::{AccountId, CaseId, CommandId, CustomerId, LoanId};
use eventbus::money::Money;

pub use handler::{CommandOutcome, GROUP, NexumCommandHandler, REJECTIONS_GROUP};

/// The command topics and the `event_type` each expects.
pub const COMMAND_TOPICS: [(Topic, &str); 3] = [
    (Topic::CommandsTransactions, "transaction_command"),
    (Topic::CommandsCustomers, "customer_command"),
    (Topic::CommandsLoans, "loan_command"),
];

/// Why a command could not be read. Each becomes a `command_rejected` event and a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The topic is not a command topic.
    #[error("`{0}` is not a command topic")]
    NotACommandTopic(String),
    /// The `event_type` does not belong on the topic.
    #[error("expected event_type `{expected}` on this topic, found `{found}`")]
    WrongType {
        /// The `event_type` of the topic's commands, e.g. `transaction_command`.
        expected: &'static str,
        /// The `event_type` the command has.
        found: String,
    },
    /// A major version of the command format this handler does not know.
    #[error("unsupported command version `{0}`: this handler reads version 1")]
    UnsupportedVersion(String),
    /// `event_id` is not usable as a command id.
    #[error("invalid event_id: {0}")]
    InvalidId(String),
    /// `data.action` is missing or not a string.
    #[error("data.action is missing: expected one of {0}")]
    MissingAction(&'static str),
    /// The action is not one of the topic's.
    #[error("unknown action `{action}`: expected one of {expected}")]
    UnknownAction {
        /// The action the command names.
        action: String,
        /// The topic's actions, comma-separated.
        expected: &'static str,
    },
    /// `data` names a field twice: which value counts would depend on the reader.
    #[error("data names the field `{0}` twice: send it once")]
    RepeatedField(String),
    /// The fields of the action are missing, of the wrong type, or unknown.
    #[error("invalid `{action}` command: {reason}")]
    InvalidFields {
        /// The action the command names.
        action: String,
        /// What is wrong with the fields, without their values: a value may be personal data.
        reason: String,
    },
}

impl CommandError {
    /// A stable, machine-readable name of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotACommandTopic(_) => "not_a_command_topic",
            Self::WrongType { .. } => "wrong_event_type",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::InvalidId(_) => "invalid_command_id",
            Self::MissingAction(_) => "missing_action",
            Self::UnknownAction { .. } => "unknown_action",
            Self::RepeatedField(_) | Self::InvalidFields { .. } => "malformed",
        }
    }
}

/// A command on `nexum.commands.transactions`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransactionCommand {
    /// `deposit`: money into an account from outside the bank.
    Deposit {
        /// The account to credit.
        account_id: AccountId,
        /// The amount, as a decimal string such as `"100.00"`; never a JSON number.
        amount: String,
        /// The ISO 4217 code of the amount; it must be the account's currency.
        currency: String,
        /// Free text for the transaction, at most 500 printable characters.
        description: Option<String>,
        /// The sender's own reference, at most 500 printable characters.
        reference: Option<String>,
    },
    /// `withdraw`: money out of an account, out of the bank.
    Withdraw {
        /// The account to debit.
        account_id: AccountId,
        /// The amount, as a decimal string such as `"100.00"`; never a JSON number.
        amount: String,
        /// The ISO 4217 code of the amount; it must be the account's currency.
        currency: String,
        /// Free text for the transaction, at most 500 printable characters.
        description: Option<String>,
        /// The sender's own reference, at most 500 printable characters.
        reference: Option<String>,
    },
    /// `transfer`: money from one account to another.
    Transfer {
        /// The account to debit.
        from_account_id: AccountId,
        /// The account to credit; not the same as `from_account_id`.
        to_account_id: AccountId,
        /// The amount, as a decimal string such as `"100.00"`; never a JSON number.
        amount: String,
        /// The ISO 4217 code of the amount; it must be both accounts' currency.
        currency: String,
        /// Free text for the transaction, at most 500 printable characters.
        description: Option<String>,
        /// The sender's own reference, at most 500 printable characters.
        reference: Option<String>,
    },
}

/// A command on `nexum.commands.customers`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum CustomerCommand {
    /// `create`: a new customer, whose KYC starts `pending` at `tier_1`.
    Create {
        /// The id to give the customer; a fresh one if absent.
        customer_id: Option<CustomerId>,
        /// The customer's given name, 1 to 100 printable characters.
        first_name: String,
        /// The customer's family name, 1 to 100 printable characters.
        last_name: String,
        /// The customer's e-mail address, e.g. `jane@example.com`.
        email: String,
        /// The customer's phone number in E.164 form, e.g. `+1234567890`.
        phone: Option<String>,
    },
    /// `update`: new contact details; absent fields keep their value, and one must be present.
    Update {
        /// The customer to update.
        customer_id: CustomerId,
        /// The new given name, 1 to 100 printable characters.
        first_name: Option<String>,
        /// The new family name, 1 to 100 printable characters.
        last_name: Option<String>,
        /// The new e-mail address.
        email: Option<String>,
        /// The new phone number in E.164 form.
        phone: Option<String>,
    },
    /// `kyc`: the outcome of an identity check; refused if it changes neither status nor tier.
    Kyc {
        /// The customer checked.
        customer_id: CustomerId,
        /// The new KYC status: `pending`, `verified` or `rejected`.
        kyc_status: KycStatus,
        /// The new KYC tier: `tier_1`, `tier_2` or `tier_3`.
        kyc_tier: KycTier,
    },
    /// `open_account`: a new account for an existing customer.
    OpenAccount {
        /// The customer who will own the account.
        customer_id: CustomerId,
        /// `checking`, `savings` or `credit`; loan accounts are opened by loan origination.
        account_type: AccountType,
        /// The ISO 4217 code of the account's currency, e.g. `USD`.
        currency: String,
        /// The id to give the account; a fresh one if absent.
        account_id: Option<AccountId>,
        /// The account's display name, 1 to 100 printable characters.
        name: Option<String>,
        /// How far below zero the balance may go, as a decimal string in `currency`: the
        /// overdraft of a checking account or the limit of a credit account; none if absent.
        overdraft_limit: Option<String>,
    },
}

/// A command on `nexum.commands.loans`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoanCommand {
    /// `originate`: apply for a loan; the bank's approval workflow approves or rejects it.
    Originate {
        /// The id to give the loan; a fresh one if absent.
        loan_id: Option<LoanId>,
        /// The borrower.
        customer_id: CustomerId,
        /// Where the principal is paid out; the customer's oldest account in the loan's
        /// currency if absent.
        account_id: Option<AccountId>,
        /// The amount to lend, as a decimal string such as `"10000.00"`; never a JSON number.
        principal: String,
        /// The ISO 4217 code of the loan's currency.
        currency: String,
        /// Annual rate in percent, as a decimal string: `"5.5"`.
        interest_rate: String,
        /// How long the loan runs, in months: a multiple of the payment period, at most 480.
        term_months: u32,
        /// How often an installment is due; monthly if absent.
        payment_frequency: Option<PaymentFrequency>,
    },
    /// `disburse`: pay an originated loan's principal out.
    Disburse {
        /// The loan to pay out.
        loan_id: LoanId,
    },
    /// `payment`: a repayment from the customer's account the loan was paid into.
    Payment {
        /// The loan to repay.
        loan_id: LoanId,
        /// The amount, as a decimal string such as `"100.00"`; at most what is owed.
        amount: String,
        /// The ISO 4217 code of the amount; it must be the loan's currency.
        currency: String,
    },
    /// Cancels a loan that was originated but not disbursed: the compensation of a loan
    /// application that could not complete.
    Cancel {
        /// The loan to cancel.
        loan_id: LoanId,
        /// Why, 1 to 500 characters.
        reason: String,
    },
    /// Looks for missed installments: opens, escalates or defaults as they are found.
    CheckOverdue {
        /// The loan to check.
        loan_id: LoanId,
    },
    /// `escalate_case`: move an open collections case up a level by hand.
    EscalateCase {
        /// The open case.
        case_id: CaseId,
        /// Why, 1 to 500 characters.
        reason: String,
    },
}

/// A command, read and checked for shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// From `nexum.commands.transactions`.
    Transaction(TransactionCommand),
    /// From `nexum.commands.customers`.
    Customer(CustomerCommand),
    /// From `nexum.commands.loans`.
    Loan(LoanCommand),
}

impl Command {
    /// Checks what can be checked without the bank's state: amounts (plain decimal strings,
    /// above zero, within the currency's decimals and the bank's largest amount), currencies,
    /// names, emails and phones. The bank checks the same when it carries the command out; this
    /// lets a client hear of a bad value at once (the HTTP API answers 422 before the bus).
    pub fn check(&self) -> Result<(), BankError> {
        use crate::bank::fields::{email, name, phone};
        let money = |amount: &str, currency: &str| parse_amount(amount, currency).map(drop);
        let optional = |value: &Option<String>, check: &dyn Fn(&str) -> Result<String, BankError>| {
            value.as_deref().map(check).transpose().map(drop)
        };
        match self {
            Self::Transaction(
                TransactionCommand::Deposit { amount, currency, .. }
                | TransactionCommand::Withdraw { amount, currency, .. }
                | TransactionCommand::Transfer { amount, currency, .. },
            )
            | Self::Loan(LoanCommand::Payment { amount, currency, .. }) => money(amount, currency),
            Self::Loan(LoanCommand::Originate { principal, currency, .. }) => money(principal, currency),
            Self::Customer(CustomerCommand::Create {
                first_name, last_name, email: address, phone: number, ..
            }) => {
                name("first_name", first_name)?;
                name("last_name", last_name)?;
                email(address)?;
                optional(number, &phone)
            }
            Self::Customer(CustomerCommand::Update {
                first_name, last_name, email: address, phone: number, ..
            }) => {
                optional(first_name, &|v| name("first_name", v))?;
                optional(last_name, &|v| name("last_name", v))?;
                optional(address, &email)?;
                optional(number, &phone)
            }
            Self::Customer(CustomerCommand::OpenAccount { currency, name: display, overdraft_limit, .. }) => {
                parse_currency(currency)?;
                optional(display, &|v| name("name", v))?;
                match overdraft_limit {
                    Some(limit) => Money::parse(limit, currency).map(drop).map_err(|e| BankError::InvalidInput {
                        field: "overdraft_limit",
                        reason: e.to_string(),
                        source: Some(e),
                    }),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// What is known of a command even when it cannot be read: enough to reject it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Its `event_id`, or an id derived from its place in the log if it has no usable one.
    pub id: CommandId,
    /// The topic it was received on.
    pub topic: TopicName,
    /// Its `event_type` as received, e.g. `transaction_command`.
    pub command_type: String,
    /// Its `data.action` if that is a string, e.g. `deposit`.
    pub action: Option<String>,
    /// The `correlation_id` of its metadata: the events it causes carry it too.
    pub correlation_id: Option<String>,
    /// The `user_id` of its metadata: who sent it; the bank's audit records name them.
    pub user_id: Option<String>,
    /// The fingerprint of its `data` ([`digest`]) that its sender put in its metadata
    /// (`command_digest`, as the HTTP API does for a command with an Idempotency-Key); the
    /// handler hashes nothing itself.
    pub digest: Option<String>,
    /// Its `event_id` as sent, when that is not a usable command id: the events that answer it
    /// name this as their `causation_id`, so that the sender can match them.
    pub unusable_id: Option<String>,
}

impl Envelope {
    /// Reads the envelope of a command; `place` names where it was read, for a command without
    /// an `event_id`.
    pub fn of(topic: &TopicName, event: &EventSchema, place: &str) -> Self {
        let sent = event.event_id.as_ref().map(ToString::to_string);
        let parsed = sent.as_deref().and_then(|id| id.parse::<CommandId>().ok());
        let unusable_id = sent.filter(|_| parsed.is_none());
        let id = parsed.unwrap_or_else(|| CommandId::derived(place));
        let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
        Self {
            id,
            topic: topic.clone(),
            command_type: event.event_type.as_str().to_owned(),
            action: text(event.data.get("action")),
            correlation_id: text(event.metadata.get("correlation_id")),
            user_id: text(event.metadata.get("user_id")),
            digest: text(event.metadata.get(crate::bank::COMMAND_DIGEST)),
            unusable_id,
        }
    }
}

/// Reads the command `event` received on `topic`.
pub fn parse(topic: &TopicName, event: &EventSchema) -> Result<Command, CommandError> {
    let (topic_kind, expected) = COMMAND_TOPICS
        .iter()
        .find(|(t, _)| t.as_str() == topic.as_str())
        .copied()
        .ok_or_else(|| CommandError::NotACommandTopic(topic.to_string()))?;
    if event.event_type.as_str() != expected {
        return Err(CommandError::WrongType { expected, found: event.event_type.as_str().to_owned() });
    }
    let version = event.version();
    if version.split('.').next() != Some("1") {
        return Err(CommandError::UnsupportedVersion(version.to_owned()));
    }
    match &event.event_id {
        Some(id) if id.to_string().parse::<CommandId>().is_err() => {
            return Err(CommandError::InvalidId(format!(
                "`{}` is not 1 to 128 letters, digits, `_`, `-` or `.`",
                id.to_string().chars().take(128).collect::<String>()
            )));
        }
        None => return Err(CommandError::InvalidId("missing: a command needs an event_id".into())),
        Some(_) => {}
    }
    // Data read as text (from the bus) may name a field twice; a map built here cannot.
    if let Some(name) = event.data.raw().and_then(|raw| eventbus::envelope::repeated_field(raw.as_bytes())) {
        return Err(CommandError::RepeatedField(name));
    }
    let data = event.data.to_value();
    match topic_kind {
        Topic::CommandsTransactions => fields(&data, TRANSACTION_ACTIONS).map(Command::Transaction),
        Topic::CommandsCustomers => fields(&data, CUSTOMER_ACTIONS).map(Command::Customer),
        _ => fields(&data, LOAN_ACTIONS).map(Command::Loan),
    }
}

const TRANSACTION_ACTIONS: &str = "deposit, withdraw, transfer";
const CUSTOMER_ACTIONS: &str = "create, update, kyc, open_account";
const LOAN_ACTIONS: &str = "originate, disburse, payment, cancel, check_overdue, escalate_case";

/// Reads the fields of `data` as one of the actions listed in `actions`.
fn fields<T: for<'de> Deserialize<'de>>(data: &Value, actions: &'static str) -> Result<T, CommandError> {
    let action = match data.get("action") {
        Some(Value::String(action)) => action.clone(),
        _ => return Err(CommandError::MissingAction(actions)),
    };
    if !actions.split(", ").any(|known| known == action) {
        return Err(CommandError::UnknownAction { action, expected: actions });
    }
    serde_json::from_value(data.clone())
        .map_err(|error| CommandError::InvalidFields { action, reason: without_values(&error.to_string()) })
}

/// serde names the value of a field it refuses (`invalid type: string "jane@…", expected u32`,
/// `invalid type: integer `447946…``, `unknown variant `jane@…``), and the value may be
/// personal data (a phone number sent as a number) that must not reach a log or a dead letter:
/// keep what was wrong, drop the value.
fn without_values(message: &str) -> String {
    let mut out = message.to_owned();
    let marks =
        [("string \"", '"'), ("variant `", '`'), ("integer `", '`'), ("floating point `", '`'), ("character `", '`')];
    for (mark, close) in marks {
        let (mut kept, mut rest) = (String::with_capacity(out.len()), out.as_str());
        while let Some(at) = rest.find(mark) {
            kept.push_str(&rest[..at + mark.len() - 2]);
            rest = &rest[at + mark.len()..];
            // The value ends where serde goes on with `, expected`; a quote or backtick inside
            // the value must not end it early.
            let end = rest.find(&format!("{close}, expected")).or_else(|| rest.find(close));
            rest = end.map_or("", |end| &rest[end + 1..]);
        }
        kept.push_str(rest);
        out = kept;
    }
    out
}

/// The fingerprint of a command's body (its `data`): the SHA-256 of its JSON with every
/// object's keys sorted, in hex. Bodies that differ only in key order or white space have the
/// same fingerprint; any other difference changes it.
pub fn digest(data: &serde_json::Map<String, Value>) -> String {
    fn sorted(map: &serde_json::Map<String, Value>) -> Value {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        Value::Object(keys.into_iter().map(|key| (key.clone(), sorted_value(&map[key]))).collect())
    }
    fn sorted_value(value: &Value) -> Value {
        match value {
            Value::Object(map) => sorted(map),
            Value::Array(items) => Value::Array(items.iter().map(sorted_value).collect()),
            other => other.clone(),
        }
    }
    use sha2::Digest;
    let text = sorted(data).to_string();
    sha2::Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_digest_ignores_key_order_and_sees_every_value() {
        let object = |value: Value| value.as_object().unwrap().clone();
        let body = object(json!({"action": "deposit", "amount": "5.00", "meta": {"a": 1, "b": [1, 2]}}));
        let reordered = object(json!({"meta": {"b": [1, 2], "a": 1}, "amount": "5.00", "action": "deposit"}));
        let other = object(json!({"action": "deposit", "amount": "5.01", "meta": {"a": 1, "b": [1, 2]}}));
        assert_eq!(digest(&body), digest(&reordered));
        assert_ne!(digest(&body), digest(&other));
        assert_eq!(digest(&body).len(), 64);
    }

    fn command(topic: Topic, event_type: &str, data: Value) -> (TopicName, EventSchema) {
        let Value::Object(data) = data else { panic!("data is an object") };
        let event = EventSchema::new(event_type, "transaction", "acc_1", data);
        (topic.name(), event)
    }

    #[test]
    fn the_seeds_transaction_command_is_read() {
        let (topic, event) = command(
            Topic::CommandsTransactions,
            "transaction_command",
            json!({"action": "deposit", "account_id": "acc_123", "amount": "100.00", "currency": "USD",
                   "description": "External deposit"}),
        );
        let Command::Transaction(TransactionCommand::Deposit { account_id, amount, .. }) =
            parse(&topic, &event).unwrap()
        else {
            panic!("a deposit")
        };
        assert_eq!((account_id.as_str(), amount.as_str()), ("acc_123", "100.00"));
    }

    #[test]
    fn a_command_from_the_bus_that_names_a_field_twice_is_malformed() {
        // Given a deposit whose data, as it came over the bus, also says it is a withdrawal
        let text = r#"{"event_id": "cmd_twice", "event_type": "transaction_command", "entity_type": "transaction",
            "entity_id": "acc_1", "timestamp": "2026-01-01T00:00:00Z", "version": "1.0", "source": "test",
            "data": {"action": "deposit", "account_id": "acc_1", "amount": "5.00", "currency": "USD", "action": "withdraw"}}"#;
        let event = EventSchema::from_json(text.as_bytes()).unwrap();
        // When it is parsed, then it is refused as malformed, naming the field
        let error = parse(&Topic::CommandsTransactions.name(), &event).unwrap_err();
        assert_eq!(error.code(), "malformed");
        assert!(error.to_string().contains("`action` twice"), "{error}");
    }

    #[test]
    fn the_seeds_customer_and_loan_commands_are_read() {
        let (topic, event) = command(
            Topic::CommandsCustomers,
            "customer_command",
            json!({"action": "create", "first_name": "Jane", "last_name": "Smith", "email": "jane@example.com"}),
        );
        assert!(matches!(parse(&topic, &event), Ok(Command::Customer(CustomerCommand::Create { .. }))));
        let (topic, event) = command(
            Topic::CommandsLoans,
            "loan_command",
            json!({"action": "originate", "customer_id": "cust_123", "principal": "10000.00", "currency": "USD",
                   "interest_rate": "5.5", "term_months": 60}),
        );
        assert!(matches!(parse(&topic, &event), Ok(Command::Loan(LoanCommand::Originate { .. }))));
    }

    #[test]
    fn an_amount_as_a_json_number_is_refused_with_the_field_named() {
        let (topic, event) = command(
            Topic::CommandsTransactions,
            "transaction_command",
            json!({"action": "deposit", "account_id": "acc_1", "amount": 100.5, "currency": "USD"}),
        );
        let error = parse(&topic, &event).unwrap_err();
        assert_eq!(error.code(), "malformed");
        assert!(error.to_string().contains("expected a string"), "{error}");
    }

    #[test]
    fn missing_unknown_and_misplaced_fields_are_refused_with_reasons() {
        let cases = [
            (json!({"action": "deposit", "amount": "1.00", "currency": "USD"}), "malformed", "account_id"),
            (
                json!({"action": "deposit", "account_id": "acc_1", "amount": "1.00", "currency": "USD", "ammount": "2"}),
                "malformed",
                "ammount",
            ),
            (json!({"action": "refund", "account_id": "acc_1"}), "unknown_action", "refund"),
            (json!({"account_id": "acc_1"}), "missing_action", "deposit"),
            (json!({"action": 7}), "missing_action", "deposit"),
            (
                json!({"action": "deposit", "account_id": "../x", "amount": "1.00", "currency": "USD"}),
                "malformed",
                "invalid account id",
            ),
        ];
        for (data, code, mentions) in cases {
            let (topic, event) = command(Topic::CommandsTransactions, "transaction_command", data.clone());
            let error = parse(&topic, &event).unwrap_err();
            assert_eq!(error.code(), code, "{data}");
            assert!(error.to_string().contains(mentions), "{data}: {error}");
        }
    }

    #[test]
    fn a_reason_never_repeats_the_value_of_a_field() {
        let (topic, event) = command(
            Topic::CommandsCustomers,
            "customer_command",
            json!({"action": "kyc", "customer_id": "cust_1", "kyc_status": "verified", "kyc_tier": "jane@example.com"}),
        );
        let error = parse(&topic, &event).unwrap_err().to_string();
        assert!(!error.contains("jane@example.com"), "{error}");
        let (topic, event) = command(
            Topic::CommandsLoans,
            "loan_command",
            json!({"action": "payment", "loan_id": "loan_1", "amount": "1.00", "currency": "USD", "loan_id2": 1}),
        );
        assert!(parse(&topic, &event).is_err());
        assert_eq!(
            without_values(r#"invalid type: string "x@y.z", expected u32"#),
            "invalid type: string, expected u32"
        );
        assert_eq!(
            without_values("unknown variant `jane`doe@example.com`, expected one of `a`, `b`"),
            "unknown variant, expected one of `a`, `b`"
        );
        assert_eq!(
            without_values("invalid type: integer `442079460958`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_values("invalid value: floating point `1.5`, expected u32 at line 1"),
            "invalid value: floating point, expected u32 at line 1"
        );
    }

    #[test]
    fn a_command_of_another_topic_type_or_version_is_refused() {
        let data = json!({"action": "create", "first_name": "J", "last_name": "S", "email": "j@example.com"});
        let (topic, event) = command(Topic::CommandsTransactions, "customer_command", data.clone());
        assert_eq!(parse(&topic, &event).unwrap_err().code(), "wrong_event_type");
        let (topic, mut event) = command(Topic::CommandsCustomers, "customer_command", data.clone());
        event.version = Some("2.0".into());
        assert_eq!(parse(&topic, &event).unwrap_err().code(), "unsupported_version");
        let (topic, mut event) = command(Topic::CommandsCustomers, "customer_command", data);
        event.event_id = None;
        assert_eq!(parse(&topic, &event).unwrap_err().code(), "invalid_command_id");
        let (_, event) = command(Topic::CommandsCustomers, "customer_command", json!({}));
        assert_eq!(parse(&Topic::AuditEvents.name(), &event).unwrap_err().code(), "not_a_command_topic");
    }
}
