//! The banking core: every operation loads the aggregates it needs, decides, and records its
//! events, their links and an audit record in one atomic commit with optimistic concurrency.
//! A commit that loses a race is decided again on fresh state, a few times at most.
//!
//! Bad input is refused with a [`BankError`] and writes nothing. A transaction that is valid but
//! cannot go through (insufficient funds, a frozen account, ...) is recorded as failed, with its
//! reason, and returned as such.

mod accounts;
mod commands;
mod credit;
mod customers;
mod loans;
mod transactions;
mod workflows;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SubsecRound, Utc};
use eventbus::{EventId, MoneyError};
use tokio::sync::Notify;

use crate::domain::{Account, Aggregate, CollectionCase, Customer, Loan};
use crate::events::{AuditEventRecorded, Causation, NexumEvent, Payload};
use crate::ids::{AccountId, AuditId, CaseId, CommandId, CustomerId, IdError, LoanId};
use crate::store::{Commit, EventStore, ExpectedVersion, NewEvent, StoreError, StreamId};

pub use accounts::{AccountUpdate, NewAccount};
pub use credit::{MINIMUM_PAYMENT_FLOOR, MINIMUM_PAYMENT_RATE, PAYMENT_DUE_DAYS};
pub use customers::{CustomerUpdate, NewCustomer};
/// The checks of customer fields, for callers that check a command before it is sent.
pub mod fields {
    pub use super::customers::{email, name, phone};
}
pub use loans::{DEFAULT_AFTER_MISSED, LoanApplication, LoanDecision, MAX_TERM_MONTHS, OverdueCheck};
pub use transactions::{TransactionReceipt, TransactionStatus, parse_amount, parse_currency};

/// Runs the body (an attempt that returns `Ok(None)` when its commit lost a race) until its
/// commit wins, at most [`MAX_ATTEMPTS`] times. A macro, not a function taking a closure, so
/// the future stays `Send`.
macro_rules! retrying {
    ($($attempt:tt)*) => {{
        let mut attempts = 1;
        loop {
            let result: Result<Option<_>, BankError> = async { $($attempt)* }.await;
            match result {
                Ok(Some(done)) => break Ok(done),
                Ok(None) if attempts < MAX_ATTEMPTS => {
                    // Back off with full jitter (a random wait below a doubling bound), so that
                    // writers of one stream spread out instead of colliding again in step.
                    let bound = 250u64 << attempts.min(8);
                    let random = u64::from(std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |t| t.subsec_nanos()));
                    tokio::time::sleep(std::time::Duration::from_micros(bound / 4 + random % bound)).await;
                    attempts += 1;
                }
                Ok(None) => break Err(BankError::Contention(MAX_ATTEMPTS)),
                Err(error) => break Err(error),
            }
        }
    }};
}
use retrying;

/// The largest amount one operation may move, in units of its currency.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// A commit that loses a race is decided again at most this many times.
const MAX_ATTEMPTS: u32 = 12;

/// Why the bank refused an operation. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BankError {
    /// The amount is not a positive decimal within [`MAX_AMOUNT`] in its currency's minor units.
    #[error("invalid amount `{amount}`: {reason}")]
    InvalidAmount {
        /// The amount as given, e.g. `-5` or `1.001`.
        amount: String,
        /// What is wrong with it, for people.
        reason: String,
        /// The money error that refused the amount, when it was refused while parsing it.
        #[source]
        source: Option<MoneyError>,
    },
    /// A field is missing, too long or malformed; the message names it.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The name of the field, as in commands and events, e.g. `email`.
        field: &'static str,
        /// What is wrong with it, for people.
        reason: String,
        /// The money error that refused the field, when the field is a currency code.
        #[source]
        source: Option<MoneyError>,
    },
    /// An id is not 1 to 128 letters, digits, `_`, `-` or `.`.
    #[error(transparent)]
    InvalidId(#[from] IdError),
    /// No customer has this id: create the customer first, or check the id.
    #[error("unknown customer `{0}`")]
    UnknownCustomer(CustomerId),
    /// No account has this id: open the account first, or check the id.
    #[error("unknown account `{0}`")]
    UnknownAccount(AccountId),
    /// No loan has this id: originate it first, or check the id.
    #[error("unknown loan `{0}`")]
    UnknownLoan(LoanId),
    /// No collections case has this id.
    #[error("unknown collections case `{0}`")]
    UnknownCase(CaseId),
    /// The entity exists already; creating it twice is refused.
    #[error("{kind} `{id}` already exists")]
    AlreadyExists {
        /// The kind of entity: `customer`, `account` or `loan`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The account is closed: it accepts no more changes.
    #[error("account `{0}` is closed")]
    AccountClosed(AccountId),
    /// The operation does not apply in the entity's current state; the message says why.
    #[error("{0}")]
    InvalidState(String),
    /// An event the bank built does not match its published schema. Nothing was written; this
    /// is a bug in the bank, report it.
    #[error(transparent)]
    Schema(#[from] crate::schemas::SchemaError),
    /// The operation lost the race for its entities to concurrent changes every time it tried.
    /// Try again later.
    #[error("gave up after {0} concurrent changes to the same entities; try again")]
    Contention(u32),
    /// A stored event cannot be decoded: the store holds data this version cannot read.
    #[error("stored event of stream `{stream}` cannot be read: {source}")]
    Corrupt {
        /// The stream that holds the event.
        stream: StreamId,
        /// Why it cannot be decoded.
        #[source]
        source: crate::events::DecodeError,
    },
    /// The command was carried out before: its effect is recorded once, and this time nothing
    /// was written.
    #[error("command `{0}` was handled already")]
    DuplicateCommand(CommandId),
    /// The event store failed; see the source.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BankError {
    /// A stable, machine-readable name of the error, for rejection events and API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidAmount { .. } => "invalid_amount",
            Self::InvalidInput { .. } => "invalid_input",
            Self::InvalidId(_) => "invalid_id",
            Self::UnknownCustomer(_) => "unknown_customer",
            Self::UnknownAccount(_) => "unknown_account",
            Self::UnknownLoan(_) => "unknown_loan",
            Self::UnknownCase(_) => "unknown_case",
            Self::AlreadyExists { .. } => "already_exists",
            Self::AccountClosed(_) => "account_closed",
            Self::InvalidState(_) => "invalid_state",
            Self::Schema(_) => "schema_violation",
            Self::Contention(_) => "contention",
            Self::Corrupt { .. } => "corrupt_store",
            Self::DuplicateCommand(_) => "duplicate_command",
            Self::Store(_) => "store_unavailable",
        }
    }

    /// Whether the same request may succeed later, unchanged: the store was unavailable or
    /// writers kept colliding. Every other error is a refusal of this request.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Contention(_) | Self::Store(_))
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput { field, reason: reason.into(), source: None }
    }

    /// `amount` is refused for `reason`, by the bank's own rules.
    fn refused_amount(amount: impl ToString, reason: impl Into<String>) -> Self {
        Self::InvalidAmount { amount: amount.to_string(), reason: reason.into(), source: None }
    }

    /// `amount` is refused by the money type: `error` says why, and stays the source.
    fn amount(amount: impl ToString, error: MoneyError) -> Self {
        Self::InvalidAmount { amount: amount.to_string(), reason: error.to_string(), source: Some(error) }
    }
}

/// The metadata key of an audit record that holds the fingerprint of its command's body.
pub const COMMAND_DIGEST: &str = "command_digest";

/// Who asks, when, and in answer to what. Time is passed in, never read from the clock inside
/// the domain, so tests and replays are deterministic.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// When the operation happens, UTC to the microsecond: the time of its events, and the "now"
    /// of its rules (due dates, windows, statement periods).
    pub at: DateTime<Utc>,
    /// Who asked and in answer to what: the metadata of every event the operation records.
    pub causation: Causation,
    /// The command being carried out, if the request is one. Its effect is recorded at most
    /// once: the commit that records it also creates the stream `command-<id>`, so a second
    /// commit for the same command fails with [`BankError::DuplicateCommand`].
    pub command: Option<CommandId>,
    /// The fingerprint of the command's body ([`crate::commands::digest`]) as its sender gave
    /// it, kept in the metadata of its audit record as `command_digest`: a retry under the same
    /// idempotency key with another body can be told apart.
    pub command_digest: Option<String>,
}

impl Ctx {
    /// Now, by the system.
    pub fn now() -> Self {
        Self::at(Utc::now())
    }

    /// At `at`, cut to the microsecond as stored, by the system, in answer to nothing; in the
    /// trace of the current span while tracing is on (the `command` span of a command, the
    /// `handle` span of a saga's step), which the events it records carry on.
    pub fn at(at: DateTime<Utc>) -> Self {
        let causation = Causation { traceparent: eventbus::trace::current(), ..Causation::default() };
        Self { at: at.trunc_subsecs(6), causation, command: None, command_digest: None }
    }

    /// Asked by user `user_id`: the events' `user_id` and the audit record's `actor`.
    pub fn by_user(mut self, user_id: impl Into<String>) -> Self {
        self.causation.user_id = Some(user_id.into());
        self
    }

    /// Part of the request `correlation_id`, which every event of it carries.
    pub fn correlated(mut self, correlation_id: impl Into<String>) -> Self {
        self.causation.correlation_id = Some(correlation_id.into());
        self
    }

    /// In answer to the command or event `causation_id` (its `event_id`).
    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation.causation_id = Some(causation_id.into());
        self
    }

    /// Carries out command `id` at most once.
    pub fn for_command(mut self, id: CommandId) -> Self {
        self.command = Some(id);
        self
    }

    fn actor(&self) -> &str {
        self.causation.user_id.as_deref().unwrap_or("system")
    }
}

/// An aggregate as loaded for one operation, with the version it was read at.
#[derive(Clone, Debug)]
pub(crate) struct Loaded<A> {
    pub(crate) state: A,
    pub(crate) version: u64,
    stream: StreamId,
}

impl<A: Aggregate> Loaded<A> {
    fn apply(&mut self, event: &NexumEvent, at: DateTime<Utc>) {
        self.state.apply(event, at);
        self.version += 1;
    }
}

/// Aggregates already folded, by stream. A stale entry is caught by the version check of the
/// next commit, then dropped and read again.
struct Cache<A>(Mutex<HashMap<StreamId, Loaded<A>>>);

impl<A: Clone> Cache<A> {
    /// Keeps the state a commit produced and returns it.
    fn keep(&self, loaded: Loaded<A>) -> A {
        let state = loaded.state.clone();
        self.put(loaded);
        state
    }

    fn get(&self, stream: &StreamId) -> Option<Loaded<A>> {
        self.lock().get(stream).cloned()
    }

    fn put(&self, loaded: Loaded<A>) {
        let mut cache = self.lock();
        match cache.get(&loaded.stream) {
            Some(newer) if newer.version >= loaded.version => {}
            _ => {
                cache.insert(loaded.stream.clone(), loaded);
            }
        }
    }

    fn forget(&self, stream: &StreamId) {
        self.lock().remove(stream);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Loaded<A>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<A> Default for Cache<A> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

/// One operation in the making: the versions it read and the events it decided.
pub(crate) struct Work {
    ctx: Ctx,
    command: &'static str,
    commit: Commit,
    recorded: Vec<(EventId, &'static str)>,
    outcome: &'static str,
    subject: Option<(&'static str, String)>,
}

impl Work {
    fn new(ctx: &Ctx, command: &'static str) -> Self {
        Self {
            ctx: ctx.clone(),
            command,
            commit: Commit::default(),
            recorded: Vec::new(),
            outcome: "accepted",
            subject: None,
        }
    }

    fn expect<A>(&mut self, loaded: &Loaded<A>) {
        self.commit.expected.push((loaded.stream.clone(), ExpectedVersion::Exact(loaded.version)));
    }

    fn expect_new(&mut self, stream: &StreamId) {
        self.commit.expected.push((stream.clone(), ExpectedVersion::NoStream));
    }

    /// Records `event` in `stream`, validated against its schema.
    fn record(&mut self, event: &NexumEvent, stream: StreamId) -> Result<&mut NewEvent, BankError> {
        let id = EventId::new();
        let schema = event.to_schema(id.clone(), self.ctx.at, &self.ctx.causation);
        crate::schemas::validate(&schema)?;
        if self.subject.is_none() {
            self.subject = Some((event.info().entity_type, event.entity_id.clone()));
        }
        self.recorded.push((id, event.event_type()));
        self.commit.push(NewEvent::new(stream, event.topic().name(), schema));
        Ok(self.commit.events.last_mut().expect("just pushed"))
    }

    /// Records the event that creates aggregate `id`, whose stream must not exist yet.
    /// The event is linked into each of `targets` and applied there.
    fn create<A: Aggregate>(
        &mut self,
        id: &str,
        event: &NexumEvent,
        targets: &mut [&mut dyn Linked],
    ) -> Result<Loaded<A>, BankError> {
        let stream = StreamId::of(A::KIND, id);
        self.expect_new(&stream);
        self.record_linked(event, stream.clone(), targets)?;
        let state = A::create(id, event, self.ctx.at).expect("a creation event creates its aggregate");
        Ok(Loaded { state, version: 1, stream })
    }

    /// Records `event` in the stream of `target` and applies it there.
    fn record_in<A: Aggregate>(&mut self, event: &NexumEvent, target: &mut Loaded<A>) -> Result<(), BankError> {
        self.record(event, target.stream.clone())?;
        target.apply(event, self.ctx.at);
        Ok(())
    }

    /// Records `event` in `stream` and links it into each of `targets`, applying it there.
    fn record_linked(
        &mut self,
        event: &NexumEvent,
        stream: StreamId,
        targets: &mut [&mut dyn Linked],
    ) -> Result<(), BankError> {
        let at = self.ctx.at;
        let recorded = self.record(event, stream)?;
        for target in targets.iter_mut() {
            recorded.link(target.stream().clone());
            target.apply_linked(event, at);
        }
        Ok(())
    }
}

/// An aggregate an event can be linked into.
pub(crate) trait Linked {
    fn stream(&self) -> &StreamId;
    fn apply_linked(&mut self, event: &NexumEvent, at: DateTime<Utc>);
}

impl<A: Aggregate> Linked for Loaded<A> {
    fn stream(&self) -> &StreamId {
        &self.stream
    }

    fn apply_linked(&mut self, event: &NexumEvent, at: DateTime<Utc>) {
        self.apply(event, at);
    }
}

/// The banking core over an event store.
pub struct Bank {
    store: Arc<dyn EventStore>,
    customers: Cache<Customer>,
    accounts: Cache<Account>,
    loans: Cache<Loan>,
    cases: Cache<CollectionCase>,
    committed: Arc<Notify>,
}

impl Bank {
    /// The bank over `store`, with nothing cached: its state is what the store holds.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            customers: Cache::default(),
            accounts: Cache::default(),
            loans: Cache::default(),
            cases: Cache::default(),
            committed: Arc::new(Notify::new()),
        }
    }

    /// The store the bank records in.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Notified after each commit: the outbox relay waits on it.
    pub fn commit_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.committed)
    }

    /// Customer `id` as their stream leaves them; `None` if there is no such customer.
    pub async fn customer(&self, id: &CustomerId) -> Result<Option<Customer>, BankError> {
        Ok(self.load(&self.customers, id.as_str()).await?.map(|l| l.state))
    }

    /// Account `id` as its stream leaves it, balance included; `None` if there is no such account.
    pub async fn account(&self, id: &AccountId) -> Result<Option<Account>, BankError> {
        Ok(self.load(&self.accounts, id.as_str()).await?.map(|l| l.state))
    }

    /// Loan `id` as its stream leaves it; `None` if there is no such loan.
    pub async fn loan(&self, id: &LoanId) -> Result<Option<Loan>, BankError> {
        Ok(self.load(&self.loans, id.as_str()).await?.map(|l| l.state))
    }

    /// Collections case `id` as its stream leaves it; `None` if there is no such case.
    pub async fn collection_case(&self, id: &CaseId) -> Result<Option<CollectionCase>, BankError> {
        Ok(self.load(&self.cases, id.as_str()).await?.map(|l| l.state))
    }

    /// The aggregate `id` of kind `A`, from the cache or folded from its stream.
    async fn load<A: Aggregate>(&self, cache: &Cache<A>, id: &str) -> Result<Option<Loaded<A>>, BankError> {
        let stream = StreamId::of(A::KIND, id);
        if let Some(loaded) = cache.get(&stream) {
            return Ok(Some(loaded));
        }
        let recorded = self.store.read(&stream, 1).await?;
        let Some(version) = recorded.last().map(|r| r.version) else { return Ok(None) };
        let events = recorded
            .iter()
            .map(|r| {
                let event = NexumEvent::from_schema(&r.event)
                    .map_err(|source| BankError::Corrupt { stream: stream.clone(), source })?;
                Ok((event, r.event.timestamp.unwrap_or_default()))
            })
            .collect::<Result<Vec<_>, BankError>>()?;
        let Some(state) = A::fold(id, events.iter().map(|(e, at)| (e, *at))) else { return Ok(None) };
        let loaded = Loaded { state, version, stream };
        cache.put(loaded.clone());
        Ok(Some(loaded))
    }

    /// Loads `id` and makes the commit expect its version.
    async fn load_for<A: Aggregate>(
        &self,
        work: &mut Work,
        cache: &Cache<A>,
        id: &str,
    ) -> Result<Option<Loaded<A>>, BankError> {
        let loaded = self.load(cache, id).await?;
        if let Some(loaded) = &loaded {
            work.expect(loaded);
        }
        Ok(loaded)
    }

    async fn customer_for(&self, work: &mut Work, id: &CustomerId) -> Result<Loaded<Customer>, BankError> {
        self.load_for(work, &self.customers, id.as_str()).await?.ok_or_else(|| BankError::UnknownCustomer(id.clone()))
    }

    async fn account_for(&self, work: &mut Work, id: &AccountId) -> Result<Loaded<Account>, BankError> {
        self.load_for(work, &self.accounts, id.as_str()).await?.ok_or_else(|| BankError::UnknownAccount(id.clone()))
    }

    async fn loan_for(&self, work: &mut Work, id: &LoanId) -> Result<Loaded<Loan>, BankError> {
        self.load_for(work, &self.loans, id.as_str()).await?.ok_or_else(|| BankError::UnknownLoan(id.clone()))
    }

    /// Commits `work` with its audit record. Returns false if it lost a race: the caller decides
    /// again on fresh state.
    async fn commit(&self, mut work: Work) -> Result<bool, BankError> {
        if work.recorded.is_empty() {
            let Some(command) = &work.ctx.command else { return Ok(true) };
            // A command that changed nothing still gets its answer: an audit record saying so.
            work.outcome = "unchanged";
            work.subject = Some(("command", command.to_string()));
        }
        let (entity_type, entity_id) = work.subject.clone().unwrap_or_default();
        let audit = NexumEvent::new(
            AuditId::new(),
            Payload::AuditEventRecorded(AuditEventRecorded {
                command: work.command.to_owned(),
                actor: work.ctx.actor().to_owned(),
                entity_type: entity_type.to_owned(),
                entity_id,
                outcome: work.outcome.to_owned(),
                event_ids: work.recorded.iter().map(|(id, _)| id.clone()).collect(),
                event_types: work.recorded.iter().map(|(_, t)| (*t).to_owned()).collect(),
            }),
        );
        let day = StreamId::of("audit", work.ctx.at.date_naive());
        let command = work.ctx.command.clone();
        let command_stream = command.as_ref().map(|id| StreamId::of("command", id));
        let digest = work.ctx.command_digest.clone();
        let recorded = work.record(&audit, day)?;
        if let Some(digest) = digest {
            recorded.event.metadata.insert(COMMAND_DIGEST.into(), digest.into());
        }
        if let Some(stream) = &command_stream {
            recorded.link(stream.clone());
            if !work.commit.expected.iter().any(|(expected, _)| expected == stream) {
                work.expect_new(stream);
            }
        }
        match self.store.commit(work.commit).await {
            Ok(_) => {
                self.committed.notify_one();
                Ok(true)
            }
            Err(StoreError::Conflict { stream, .. }) if Some(&stream) == command_stream.as_ref() => {
                Err(BankError::DuplicateCommand(command.expect("a command stream has a command")))
            }
            Err(StoreError::Conflict { stream, .. }) => {
                tracing::debug!(%stream, command = work.command, "Concurrent change; deciding again");
                self.customers.forget(&stream);
                self.accounts.forget(&stream);
                self.loans.forget(&stream);
                self.cases.forget(&stream);
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }
}
