//! The collections saga: a missed installment opens a case, an open case escalates after a
//! configurable time, and a payment resolves it.
//!
//! It watches every disbursed loan. On each tick of its timer it reads the loan and its open
//! case from the event store, where their state is persisted, and asks the bank to act:
//! `check_overdue` when an installment is past due (plus a grace period) and not yet in a case,
//! or when more installments were missed since; `escalate_case` when the case has stayed at its
//! level for `escalate_after`. The bank resolves the case when a payment brings the loan up to
//! date. Each command's id is derived from the loan or case and the state it answers, so a
//! repeated tick, or a restart, sends nothing new.
//!
//! The loans to watch come from the event store: all of it at the start, then what was stored
//! since, at each tick. Of the instances sharing a store, the timer ticks on the one holding the
//! [`TIMER_ROLE`] lease; if that instance dies, another takes the role and goes on.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::{EventBus, Topic};
use serde_json::json;
use tokio::sync::watch;

use super::{Outgoing, Parts};
use crate::bank::{Bank, BankError};
use crate::clock::Clock;
use crate::domain::LoanStatus;
use crate::ids::{CommandId, LoanId};
use crate::leadership::Leadership;
use crate::store::EventStore;

/// The timer's role in the store's leases.
pub const TIMER_ROLE: &str = "collections-timer";
const ACTOR: &str = "saga:collections";
/// Events read per page when the watched loans are recovered from the store.
const RECOVERY_PAGE: usize = 10_000;

/// When the collections saga acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionsConfig {
    /// Days after a due date before a missed installment opens a case.
    pub grace_days: u32,
    /// How long a case stays at one level before it escalates.
    pub escalate_after: chrono::Duration,
    /// How often the timer ticks in `serve`.
    pub tick_every: Duration,
}

impl Default for CollectionsConfig {
    fn default() -> Self {
        Self { grace_days: 5, escalate_after: chrono::Duration::days(15), tick_every: Duration::from_secs(60) }
    }
}

/// What one tick asked for.
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

    /// Finds the loans to watch in the store: every disbursed loan still being repaid. Returns
    /// how many loans it watches.
    pub async fn start(self: &Arc<Self>) -> Result<usize, CollectionsError> {
        self.catch_up().await?;
        Ok(self.lock().loans.len())
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

    /// Looks at every watched loan now and sends the commands due.
    pub async fn tick(&self) -> Result<Tick, CollectionsError> {
        let now = self.parts.clock.now();
        let due_by = (now - chrono::Duration::days(i64::from(self.config.grace_days))).date_naive();
        self.catch_up().await?;
        let loans: Vec<LoanId> = self.lock().loans.iter().cloned().collect();
        let mut tick = Tick::default();
        for loan_id in loans {
            let Some(loan) = self.parts.bank.loan(&loan_id).await? else { continue };
            if loan.status != LoanStatus::Active {
                self.lock().loans.remove(&loan_id);
                continue;
            }
            let missed = loan.overdue_installments(due_by);
            let open_case = match &loan.open_case {
                Some(id) => self.parts.bank.collection_case(id).await?.filter(|case| case.open),
                None => None,
            };
            let known = if open_case.is_some() { loan.missed_payments } else { 0 };
            if missed > known {
                // A missed installment the bank has not seen: it opens or escalates a case.
                let id =
                    CommandId::derived(&format!("collections/{loan_id}/{}/missed/{missed}", loan.installments_paid));
                self.send(id, &loan_id, json!({"action": "check_overdue", "loan_id": loan_id})).await?;
                tick.overdue_checks += 1;
            } else if let Some(case) = open_case
                && now - case.since >= self.config.escalate_after
            {
                let id = CommandId::derived(&format!("collections/{}/escalate/{}", case.id, case.level + 1));
                let reason =
                    format!("no payment within {} days at level {}", self.config.escalate_after.num_days(), case.level);
                self.send(id, &loan_id, json!({"action": "escalate_case", "case_id": case.id, "reason": reason}))
                    .await?;
                tick.escalations += 1;
            }
        }
        Ok(tick)
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
