//! The collections saga: a missed installment opens a case, an open case escalates after a
//! configurable time, and a payment resolves it.
//!
//! It watches every disbursed loan. To look at a loan, it reads the loan and its open case from
//! the event store, where their state is persisted, and asks the bank to act: `check_overdue`
//! when an installment is past due (plus a grace period) and not yet in a case, or when more
//! installments were missed since; `escalate_case` when the case has stayed at its level for
//! `escalate_after`. The bank resolves the case when a payment brings the loan up to date. Each
//! command's id is derived from the loan or case and the state it answers, so looking twice, or
//! after a restart, sends nothing new.
//!
//! **When it looks: scheduled timers.** After each look at a loan the saga publishes a timer
//! event to [`TIMER_TOPIC`] with `metadata.deliver_at` set to the next time something can fall
//! due on the loan: its next installment's grace period ending, or its case's escalation. The bus
//! holds the timer durably and delivers it then; the saga, consuming [`TIMER_TOPIC`] in its
//! group ([`GROUP`]), looks at the loan when it arrives, and sets the next one. It also looks
//! when a loan is disbursed or a case opened or escalated (the events that move the next time).
//! A timer's id is derived from the loan and its time, so setting it again (at each restart)
//! adds no second delivery: consumers drop a repeated `event_id`.
//!
//! **The sweep** ([`tick`](CollectionsSaga::tick)) looks at every watched loan and sets its
//! timer. It runs when the saga starts (so the timers of loans stored while no saga ran are
//! set) and, as a safety net, every `tick_every` (an hour by default) on the instance holding the
//! [`TIMER_ROLE`] lease: a timer whose handling failed all its retries is dead-lettered, and the
//! sweep still finds its loan. The loans to watch come from the event store: all of it at the
//! start, then what was stored since, at each sweep.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use eventbus::{
    BusError, EventBus, EventId, EventSchema, GroupId, HandlerError, Message, Subscription, Topic, TopicName,
    handler_fn,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Outgoing, Parts};
use crate::bank::{Bank, BankError};
use crate::clock::Clock;
use crate::domain::{Loan, LoanStatus};
use crate::ids::{CommandId, LoanId};
use crate::leadership::Leadership;
use crate::store::EventStore;

/// The sweep's role in the store's leases.
pub const TIMER_ROLE: &str = "collections-timer";
/// The topic of the saga's timers, created when the saga starts.
pub const TIMER_TOPIC: &str = "nexum.collections.timers";
/// The consumer group of the saga: its timers, and the events that move them.
pub const GROUP: &str = "nexum-collections-saga";
const TIMER_PARTITIONS: u32 = 3;
/// The event type of a timer.
const TIMER: &str = "collections_timer_due";
const ACTOR: &str = "saga:collections";
/// Events read per page when the watched loans are recovered from the store.
const RECOVERY_PAGE: usize = 10_000;
/// The furthest ahead a timer is set (within the bus's `max_schedule_ahead`); a time further
/// off gets a timer then, which sets the next.
const MAX_TIMER_AHEAD: chrono::Duration = chrono::Duration::days(365);

/// When the collections saga acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionsConfig {
    /// Days after a due date before a missed installment opens a case.
    pub grace_days: u32,
    /// How long a case stays at one level before it escalates.
    pub escalate_after: chrono::Duration,
    /// How often the safety-net sweep looks at every loan in `serve`.
    pub tick_every: Duration,
}

impl Default for CollectionsConfig {
    fn default() -> Self {
        Self { grace_days: 5, escalate_after: chrono::Duration::days(15), tick_every: Duration::from_secs(3600) }
    }
}

/// What one sweep asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// How many `check_overdue` commands it sent.
    pub overdue_checks: usize,
    /// How many `escalate_case` commands it sent.
    pub escalations: usize,
}

/// See the module documentation.
pub struct CollectionsSaga {
    parts: Parts,
    config: CollectionsConfig,
    watched: Mutex<Watched>,
}

/// Loans being repaid, and how far the store has been read for new ones.
#[derive(Default)]
struct Watched {
    loans: BTreeSet<LoanId>,
    /// The next position of the store to read.
    next: u64,
}

impl CollectionsSaga {
    /// The saga over `bank`: it reads loans and cases there and sends its commands on `bus`, at the
    /// time of `clock`. It does nothing until started.
    pub fn new(bank: Arc<Bank>, bus: Arc<dyn EventBus>, clock: Arc<dyn Clock>, config: CollectionsConfig) -> Arc<Self> {
        Arc::new(Self { parts: Parts { bank, bus, clock }, config, watched: Mutex::default() })
    }

    /// Finds the loans to watch in the store (every disbursed loan still being repaid), creates
    /// the timer topic if it is missing, and sweeps: what is due is asked for and every loan's
    /// timer is set. Returns how many loans it watches. Timers are acted on once
    /// [`listen`](Self::listen) subscribes.
    pub async fn start(self: &Arc<Self>) -> Result<usize, CollectionsError> {
        match self.parts.bus.create_topic(&timer_topic(), TIMER_PARTITIONS).await {
            Ok(()) | Err(BusError::TopicExists(_)) => {}
            Err(error) => return Err(error.into()),
        }
        self.tick().await?;
        Ok(self.lock().loans.len())
    }

    /// Consumes the saga's timers, and the events that move them (a loan disbursed, a case
    /// opened or escalated), looking at the loan each is about.
    pub async fn listen(self: &Arc<Self>) -> Result<(), CollectionsError> {
        let subscription = Subscription::new(timer_topic(), GroupId::new(GROUP)?)
            .and_topic(Topic::LoansDisbursed.name())
            .and_topic(Topic::CollectionsCaseCreated.name())
            .and_topic(Topic::CollectionsCaseEscalated.name());
        let saga = Arc::clone(self);
        let handler = handler_fn(move |message: Message| {
            let saga = Arc::clone(&saga);
            async move { saga.on(&message.event).await.map_err(HandlerError::from) }
        });
        self.parts.bus.subscribe(subscription, handler).await?;
        Ok(())
    }

    /// Looks at the loan an event is about.
    async fn on(&self, event: &EventSchema) -> Result<(), CollectionsError> {
        let loan = match event.event_type.as_str() {
            "loan_disbursed" => Some(event.entity_id.as_str()),
            TIMER | "collection_case_created" | "collection_case_escalated" => {
                event.data.get("loan_id").and_then(Value::as_str)
            }
            _ => None,
        };
        let Some(loan_id) = loan.and_then(|id| id.parse::<LoanId>().ok()) else { return Ok(()) };
        if event.event_type.as_str() == TIMER {
            tracing::debug!(%loan_id, "Collections timer arrived");
        }
        self.lock().loans.insert(loan_id.clone());
        let mut tick = Tick::default();
        self.look(&loan_id, self.parts.clock.now(), &mut tick).await
    }

    /// Watches the loans disbursed in what the store recorded since the last look.
    async fn catch_up(&self) -> Result<(), CollectionsError> {
        let store: &dyn EventStore = &**self.parts.bank.store();
        loop {
            let from = self.lock().next.max(1);
            let page = store.read_all(from, RECOVERY_PAGE).await.map_err(BankError::from)?;
            let Some(last) = page.last().map(|recorded| recorded.position) else { return Ok(()) };
            let mut watched = self.lock();
            for recorded in &page {
                if recorded.event.event_type.as_str() == "loan_disbursed"
                    && let Ok(id) = recorded.event.entity_id.parse()
                {
                    watched.loans.insert(id);
                }
            }
            watched.next = watched.next.max(last + 1);
        }
    }

    /// Ticks every `tick_every`, while this instance holds `role`, until `stop` turns true. The
    /// role is renewed (or tried for) at its own pace in between, so that it stays with one
    /// instance from tick to tick.
    pub fn spawn_timer(
        self: &Arc<Self>,
        role: Arc<Leadership>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let saga = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(saga.config.tick_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut renewals = tokio::time::interval(role.pace());
            renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let tick = tokio::select! {
                    _ = ticks.tick() => true,
                    _ = renewals.tick() => false,
                    _ = stop.changed() => false,
                };
                if *stop.borrow() {
                    return;
                }
                match role.current().await {
                    Ok(Some(_)) if tick => {}
                    // Renewed, or another instance ticks.
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "Cannot tell which instance ticks; trying again");
                        continue;
                    }
                }
                if let Err(error) = saga.tick().await {
                    tracing::warn!(%error, "Collections tick failed; trying again at the next one");
                }
            }
        })
    }

    /// Looks at every watched loan now: sends the commands due and sets each loan's timer.
    pub async fn tick(&self) -> Result<Tick, CollectionsError> {
        let now = self.parts.clock.now();
        self.catch_up().await?;
        let loans: Vec<LoanId> = self.lock().loans.iter().cloned().collect();
        let mut tick = Tick::default();
        for loan_id in loans {
            self.look(&loan_id, now, &mut tick).await?;
        }
        Ok(tick)
    }

    /// Looks at one loan at `now`: sends the command due, if any, and sets the loan's timer for
    /// the next time one can be.
    async fn look(&self, loan_id: &LoanId, now: DateTime<Utc>, tick: &mut Tick) -> Result<(), CollectionsError> {
        let Some(loan) = self.parts.bank.loan(loan_id).await? else { return Ok(()) };
        if loan.status != LoanStatus::Active {
            self.lock().loans.remove(loan_id);
            return Ok(());
        }
        let grace = chrono::Duration::days(i64::from(self.config.grace_days));
        let missed = loan.overdue_installments((now - grace).date_naive());
        let open_case = match &loan.open_case {
            Some(id) => self.parts.bank.collection_case(id).await?.filter(|case| case.open),
            None => None,
        };
        let known = if open_case.is_some() { loan.missed_payments } else { 0 };
        let escalates_at = open_case.as_ref().map(|case| case.since + self.config.escalate_after);
        if missed > known {
            // A missed installment the bank has not seen: it opens or escalates a case.
            let id = CommandId::derived(&format!("collections/{loan_id}/{}/missed/{missed}", loan.installments_paid));
            self.send(id, loan_id, json!({"action": "check_overdue", "loan_id": loan_id})).await?;
            tick.overdue_checks += 1;
        } else if let Some(case) = open_case.as_ref().filter(|_| escalates_at.is_some_and(|at| at <= now)) {
            let id = CommandId::derived(&format!("collections/{}/escalate/{}", case.id, case.level + 1));
            let reason =
                format!("no payment within {} days at level {}", self.config.escalate_after.num_days(), case.level);
            self.send(id, loan_id, json!({"action": "escalate_case", "case_id": case.id, "reason": reason})).await?;
            tick.escalations += 1;
        }
        let next_missed = self.next_missed(&loan, missed);
        let next = [next_missed, escalates_at].into_iter().flatten().filter(|at| *at > now).min();
        if let Some(at) = next {
            self.set_timer(loan_id, at, now).await?;
        }
        Ok(())
    }

    /// When the first installment not yet missed will be, if unpaid: the day after its grace
    /// period.
    fn next_missed(&self, loan: &Loan, missed: u32) -> Option<DateTime<Utc>> {
        let next = loan.terms.schedule.get((loan.installments_paid + missed) as usize)?;
        let day = next.due_date + chrono::Days::new(u64::from(self.config.grace_days) + 1);
        Some(day.and_hms_opt(0, 0, 0)?.and_utc())
    }

    /// Publishes the timer of `loan_id` for `at` (the saga's clock, which reads `now`): the bus
    /// delivers it then. The bus's own clock counts the wait, so a saga clock that is not the
    /// system's (a test's) is followed; whole seconds, rounded up, so that the same timer set
    /// again is the same.
    async fn set_timer(&self, loan_id: &LoanId, at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), BusError> {
        let wait = (at - now).min(MAX_TIMER_AHEAD);
        let skew = Utc::now() - now;
        let skew = if skew.abs() < chrono::Duration::seconds(1) { chrono::Duration::zero() } else { skew };
        let deliver_at = (now + wait + skew + chrono::Duration::milliseconds(999)).trunc_subsecs(0);
        let deliver_at = deliver_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let id = EventId::derived(&format!("collections/{loan_id}/timer/{deliver_at}"));
        let data = json!({"loan_id": loan_id, "at": at.to_rfc3339()});
        let Value::Object(data) = data else { unreachable!("built as an object") };
        let timer = EventSchema::new(TIMER, "loan", loan_id.to_string(), data)
            .with_id(id)
            .with_metadata(eventbus::DELIVER_AT, deliver_at)
            .with_metadata("correlation_id", format!("collections/{loan_id}"));
        self.parts.bus.publish(&timer_topic(), timer, Some(loan_id.as_str())).await.map(drop)
    }

    async fn send(&self, id: CommandId, loan_id: &LoanId, data: serde_json::Value) -> Result<(), CollectionsError> {
        let command = Outgoing {
            topic: Topic::CommandsLoans,
            id,
            entity_id: loan_id.to_string(),
            correlation_id: format!("collections/{loan_id}"),
            data,
        };
        command.send(&*self.parts.bus, ACTOR, self.parts.clock.now()).await?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The topic of the saga's timers.
pub fn timer_topic() -> TopicName {
    TopicName::new(TIMER_TOPIC).expect("a valid topic name")
}

/// Why the collections saga could not look at its loans or send a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionsError {
    /// The loans could not be read from the bank's store: retry once it is back.
    #[error(transparent)]
    Bank(#[from] BankError),
    /// The bus refused a subscription or a command: see the source.
    #[error(transparent)]
    Bus(#[from] eventbus::BusError),
}
