//! `NexumCommandHandler`: carries out the commands that arrive on the command topics.
//!
//! Every command gets an outcome event that carries the command's `event_id` as its
//! `causation_id` and keeps its `correlation_id`: the domain events when it is carried out
//! (a transaction that cannot go through is recorded as `transaction_failed`), or a
//! `command_rejected` with the reason when it is not. A malformed command is also
//! dead-lettered with the reason; one the bus could not even decode (invalid JSON) is rejected
//! from its dead letter.
//!
//! Delivery is at least once, the effect exactly once: the commit that records a command's
//! effect, or its rejection, also creates the stream `command-<event_id>`, so a redelivered
//! command finds it and does nothing.

use std::sync::Arc;
use std::time::Duration;

use eventbus::{
    BusError, EventBus, EventSchema, GroupId, HandlerError, Message, RetryPolicy, Subscription, TopicName, handler_fn,
};
use serde_json::Value;
use tracing::Instrument;
use tracing::field::Empty;

use super::{COMMAND_TOPICS, Command, CustomerCommand, Envelope, LoanCommand, TransactionCommand, parse};
use crate::bank::{
    Bank, BankError, Ctx, CustomerUpdate, LoanApplication, NewAccount, NewCustomer, parse_amount, parse_currency,
};
use crate::clock::Clock;
use crate::domain::PaymentFrequency;
use crate::events::CommandRejected;
use crate::ids::CommandId;

/// The consumer group of the command topics.
pub const GROUP: &str = "nexum-command-handler";
/// The consumer group that rejects the commands the bus dead-lettered before the handler saw
/// them.
pub const REJECTIONS_GROUP: &str = "nexum-command-rejections";
/// The longest reason or field text copied into a rejection.
const MAX_TEXT: usize = 1000;

/// What became of one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Carried out now; its events are recorded.
    Executed,
    /// Carried out or rejected before; nothing was done this time.
    Duplicate,
    /// Refused, and recorded as `command_rejected` with this code and reason.
    Rejected {
        /// The [`BankError::code`] of the refusal, e.g. `unknown_account`.
        code: &'static str,
        /// The refusal's message, for people.
        reason: String,
    },
}

/// Consumes `nexum.commands.{transactions,customers,loans}` and carries the commands out on the
/// bank.
pub struct NexumCommandHandler {
    bank: Arc<Bank>,
    clock: Arc<dyn Clock>,
    /// The durable retry stages of a command that failed its attempts in place (the store is
    /// down, say); its account's later commands stay parked meanwhile.
    retry_stages: Vec<Duration>,
}

impl NexumCommandHandler {
    /// A handler that carries commands out on `bank`, stamping them with the time of `clock`.
    pub fn new(bank: Arc<Bank>, clock: Arc<dyn Clock>) -> Arc<Self> {
        Self::staged(bank, clock, Vec::new())
    }

    /// A handler whose failed commands wait in `retry_stages`, in turn, before they are
    /// dead-lettered (see `eventbus::DeadLetterPolicy`).
    pub fn staged(bank: Arc<Bank>, clock: Arc<dyn Clock>, retry_stages: Vec<Duration>) -> Arc<Self> {
        Arc::new(Self { bank, clock, retry_stages })
    }

    /// Subscribes to the command topics, and to their dead-letter topics to reject what the bus
    /// could not decode.
    pub async fn start(self: &Arc<Self>, bus: &dyn EventBus) -> Result<(), BusError> {
        let topics: Vec<TopicName> = COMMAND_TOPICS.iter().map(|(topic, _)| topic.name()).collect();
        // A store outage must not dead-letter valid commands: retry for minutes, then give up.
        let patient = RetryPolicy {
            max_attempts: 100,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        };
        let handler = Arc::clone(self);
        // Sequenced: a command that cannot be carried out (the store is down past the retries)
        // parks the later commands of its entity until an operator redrives or discards it.
        bus.subscribe(
            subscription(topics.clone(), GROUP)?
                .with_retry(patient)
                .sequenced()
                .with_retry_stages(self.retry_stages.clone()),
            handler_fn(move |message: Message| {
                let handler = Arc::clone(&handler);
                async move {
                    let place = format!("{}/{}/{}", message.topic, message.partition, message.offset);
                    handler.handle(&message.topic, &message.event, &place).await.map(drop)
                }
            }),
        )
        .await?;
        let handler = Arc::clone(self);
        bus.subscribe(
            subscription(topics.iter().map(TopicName::dlq).collect(), REJECTIONS_GROUP)?.with_retry(patient),
            handler_fn(move |message: Message| {
                let handler = Arc::clone(&handler);
                async move { handler.reject_dead_letter(&message.event).await }
            }),
        )
        .await
    }

    /// Handles one command received on `topic`; `place` names where it was read, to give a
    /// command without an `event_id` a stable id.
    ///
    /// A malformed command is rejected and returned as a permanent error, so the bus
    /// dead-letters it with the reason. A transient failure (the store is down) is returned as
    /// an error to retry; nothing was recorded.
    ///
    /// While tracing is on ([`eventbus::trace`]), the command is carried out in a `command` span,
    /// a child of the current span (the bus's `handle` span), with its type, action, id and
    /// outcome.
    pub async fn handle(
        &self,
        topic: &TopicName,
        event: &EventSchema,
        place: &str,
    ) -> Result<CommandOutcome, HandlerError> {
        let envelope = Envelope::of(topic, event, place);
        if !eventbus::trace::enabled() {
            return self.carry_out(topic, event, &envelope).await;
        }
        let span = tracing::info_span!(
            target: eventbus::trace::TARGET,
            "command",
            otel.status_code = Empty,
            "command.type" = envelope.command_type.as_str(),
            command.action = Empty,
            command.id = envelope.id.as_str(),
            command.outcome = Empty,
        );
        let result = self.carry_out(topic, event, &envelope).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(CommandOutcome::Executed) => "executed",
            Ok(CommandOutcome::Duplicate) => "duplicate",
            Ok(CommandOutcome::Rejected { .. }) => "rejected",
            Err(error) if error.is_permanent() => "invalid",
            Err(_) => "failed",
        };
        span.record("command.outcome", outcome);
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    async fn carry_out(
        &self,
        topic: &TopicName,
        event: &EventSchema,
        envelope: &Envelope,
    ) -> Result<CommandOutcome, HandlerError> {
        let ctx = self.ctx(envelope);
        if let Some(sent) = &envelope.unusable_id {
            let reason = format!(
                "event_id `{}` is not a usable command id: expected 1 to 128 of [A-Za-z0-9_.-]",
                clip(sent, 64)
            );
            tracing::warn!(%topic, command_id = %envelope.id, "Command with an unusable event_id");
            self.reject(&ctx, envelope, "invalid_event_id", &reason).await?;
            return Err(HandlerError::permanent(reason));
        }
        let command = match parse(topic, event) {
            Ok(command) => {
                if eventbus::trace::enabled() {
                    // A known action now, not whatever text the sender wrote.
                    tracing::Span::current().record("command.action", envelope.action.as_deref());
                }
                command
            }
            Err(error) => {
                // The reason goes into the rejection and the dead letter, not into the log: it may
                // name input fields.
                tracing::warn!(%topic, command_id = %envelope.id, code = error.code(), "Malformed command");
                self.reject(&ctx, envelope, error.code(), &error.to_string()).await?;
                return Err(HandlerError::permanent(error));
            }
        };
        if self.bank.command_handled(&envelope.id).await.map_err(HandlerError::from)? {
            tracing::debug!(command_id = %envelope.id, "Command handled before; skipped");
            return Ok(CommandOutcome::Duplicate);
        }
        match self.execute(&ctx, command).await {
            Ok(()) => Ok(CommandOutcome::Executed),
            Err(BankError::DuplicateCommand(_)) => Ok(CommandOutcome::Duplicate),
            Err(error) if error.is_transient() => Err(error.into()),
            Err(error) => {
                let (code, reason) = (error.code(), error.to_string());
                tracing::info!(command_id = %envelope.id, code, "Command rejected");
                self.reject(&ctx, envelope, code, &reason).await?;
                if matches!(error, BankError::Schema(_) | BankError::Corrupt { .. }) {
                    // A defect, not bad input: keep the command in the dead-letter topic too.
                    return Err(HandlerError::permanent(error));
                }
                Ok(CommandOutcome::Rejected { code, reason })
            }
        }
    }

    /// Rejects a command the bus could not read, or one an operator discarded, from its letter.
    async fn reject_dead_letter(&self, letter: &EventSchema) -> Result<(), HandlerError> {
        let text = |key: &str| letter.data.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let group = letter.metadata.get("group").and_then(Value::as_str);
        // A command the bus could not read is rejected at once. One the handler failed on waits,
        // parked, for an operator: a redrive carries it out, a discard rejects it here.
        let (code, reason) = match (letter.event_type.as_str(), text("error_kind").as_str()) {
            (eventbus::DEAD_LETTERED, "undecodable") => ("undecodable", text("error")),
            (eventbus::DEAD_LETTERED, "oversized") => ("oversized", text("error")),
            (eventbus::dlq::letter::DISCARD_REQUESTED, _) if group == Some(GROUP) => {
                ("discarded", format!("discarded by an operator ({})", text("actor")))
            }
            _ => return Ok(()),
        };
        let topic = TopicName::new(&text("original_topic")).map_err(HandlerError::permanent)?;
        let number = |key: &str| letter.data.get(key).and_then(Value::as_u64).unwrap_or_default();
        let place = format!("{topic}/{}/{}", number("original_partition"), number("original_offset"));
        let original = letter
            .data
            .get("original_event")
            .and_then(|event| serde_json::from_value::<EventSchema>(event.clone()).ok());
        let envelope = match &original {
            Some(event) => Envelope::of(&topic, event, &place),
            None => Envelope {
                id: CommandId::derived(&place),
                topic,
                command_type: "undecodable".into(),
                action: None,
                correlation_id: None,
                user_id: None,
                digest: None,
                unusable_id: None,
            },
        };
        self.reject(&self.ctx(&envelope), &envelope, code, &reason).await
    }

    /// Records the rejection, once.
    async fn reject(
        &self,
        ctx: &Ctx,
        envelope: &Envelope,
        code: &'static str,
        reason: &str,
    ) -> Result<(), HandlerError> {
        let rejection = CommandRejected {
            topic: envelope.topic.to_string(),
            command_type: clip(&envelope.command_type, 100),
            action: envelope.action.as_deref().map(|action| clip(action, 100)),
            error_code: code.to_owned(),
            reason: clip(if reason.is_empty() { "no reason given" } else { reason }, MAX_TEXT),
        };
        match self.bank.reject_command(ctx, rejection).await {
            Ok(()) | Err(BankError::DuplicateCommand(_)) => Ok(()),
            Err(error) if error.is_transient() => Err(error.into()),
            Err(error) => Err(HandlerError::permanent(error)),
        }
    }

    /// The context of a command: now, caused by it, in its correlation (or its own, if it has
    /// none), by its user.
    fn ctx(&self, envelope: &Envelope) -> Ctx {
        let correlation = envelope.correlation_id.clone().unwrap_or_else(|| envelope.id.to_string());
        let cause = envelope.unusable_id.as_deref().unwrap_or(envelope.id.as_str());
        let mut ctx =
            Ctx::at(self.clock.now()).caused_by(cause).correlated(correlation).for_command(envelope.id.clone());
        ctx.command_digest = envelope.digest.clone();
        match &envelope.user_id {
            Some(user) => ctx.by_user(clip(user, 128)),
            None => ctx,
        }
    }

    async fn execute(&self, ctx: &Ctx, command: Command) -> Result<(), BankError> {
        let bank = &self.bank;
        match command {
            Command::Transaction(command) => match command {
                TransactionCommand::Deposit { account_id, amount, currency, description, reference } => {
                    let amount = parse_amount(&amount, &currency)?;
                    bank.deposit(ctx, &account_id, amount, description, reference).await.map(drop)
                }
                TransactionCommand::Withdraw { account_id, amount, currency, description, reference } => {
                    let amount = parse_amount(&amount, &currency)?;
                    bank.withdraw(ctx, &account_id, amount, description, reference).await.map(drop)
                }
                TransactionCommand::Transfer {
                    from_account_id,
                    to_account_id,
                    amount,
                    currency,
                    description,
                    reference,
                } => {
                    let amount = parse_amount(&amount, &currency)?;
                    bank.transfer(ctx, &from_account_id, &to_account_id, amount, description, reference).await.map(drop)
                }
            },
            Command::Customer(command) => match command {
                CustomerCommand::Create { customer_id, first_name, last_name, email, phone } => {
                    let new = NewCustomer { id: customer_id, first_name, last_name, email, phone };
                    bank.create_customer(ctx, new).await.map(drop)
                }
                CustomerCommand::Update { customer_id, first_name, last_name, email, phone } => {
                    let update = CustomerUpdate { first_name, last_name, email, phone };
                    bank.update_customer(ctx, &customer_id, update).await.map(drop)
                }
                CustomerCommand::Kyc { customer_id, kyc_status, kyc_tier } => {
                    bank.change_kyc(ctx, &customer_id, kyc_status, kyc_tier).await.map(drop)
                }
                CustomerCommand::OpenAccount {
                    customer_id,
                    account_type,
                    currency,
                    account_id,
                    name,
                    overdraft_limit,
                } => {
                    let overdraft_limit = overdraft_limit.map(|limit| parse_amount(&limit, &currency)).transpose()?;
                    let currency = parse_currency(&currency)?;
                    let new = NewAccount { id: account_id, customer_id, account_type, currency, name, overdraft_limit };
                    bank.open_account(ctx, new).await.map(drop)
                }
            },
            Command::Loan(command) => match command {
                LoanCommand::Originate {
                    loan_id,
                    customer_id,
                    account_id,
                    principal,
                    currency,
                    interest_rate,
                    term_months,
                    payment_frequency,
                } => {
                    let principal = parse_amount(&principal, &currency)?;
                    let interest_rate = interest_rate.parse().map_err(|_| {
                        BankError::invalid("interest_rate", "expected a decimal string such as \"5.5\"")
                    })?;
                    let account_id = match account_id {
                        Some(id) => id,
                        None => bank.payout_account(&customer_id, principal.currency()).await?,
                    };
                    let application = LoanApplication {
                        loan_id,
                        customer_id,
                        account_id,
                        principal,
                        interest_rate,
                        term_months,
                        payment_frequency: payment_frequency.unwrap_or(PaymentFrequency::Monthly),
                    };
                    bank.originate_loan(ctx, application).await.map(drop)
                }
                LoanCommand::Disburse { loan_id } => bank.disburse_loan(ctx, &loan_id).await.map(drop),
                LoanCommand::Payment { loan_id, amount, currency } => {
                    let amount = parse_amount(&amount, &currency)?;
                    bank.pay_loan(ctx, &loan_id, amount).await.map(drop)
                }
                LoanCommand::Cancel { loan_id, reason } => bank.cancel_loan(ctx, &loan_id, &reason).await.map(drop),
                LoanCommand::CheckOverdue { loan_id } => bank.check_overdue(ctx, &loan_id).await.map(drop),
                LoanCommand::EscalateCase { case_id, reason } => {
                    bank.escalate_case(ctx, &case_id, &reason).await.map(drop)
                }
            },
        }
    }
}

fn subscription(topics: Vec<TopicName>, group: &str) -> Result<Subscription, BusError> {
    let mut topics = topics.into_iter();
    let first = topics.next().expect("at least one topic");
    Ok(topics.fold(Subscription::new(first, GroupId::new(group)?), Subscription::and_topic))
}

/// At most `max` characters of `text`.
fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
