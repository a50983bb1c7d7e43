//! Start, stop and the registered subscriptions: the state every bus keeps, behind one lock so
//! that `start`, `stop` and `subscribe` never interleave. `stop` holds the lock until its consumer
//! tasks have ended, so a `start` that follows never runs beside them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::bus::{BusError, EventBus, GroupId, Handler, StartPosition, Subscription};

/// Starts one consumer task for a subscription; it ends when the receiver turns true, and sets
/// the flag once it has joined its group.
pub(crate) type Spawn<'a> =
    &'a (dyn Fn(Subscription, Arc<dyn Handler>, watch::Receiver<bool>, Arc<AtomicBool>) -> JoinHandle<()> + Sync);

pub(crate) struct Lifecycle {
    /// A lock-free copy of "running" for `is_running`; written only under `state`.
    running: AtomicBool,
    state: Mutex<State>,
}

struct State {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    subscriptions: Vec<Registered>,
}

struct Registered {
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    /// Whether its consumer task, since it started, joined the group: it was dealt its share
    /// of the partitions (perhaps none).
    joined: Arc<AtomicBool>,
}

impl Lifecycle {
    pub(crate) fn new() -> Self {
        let state = State { stop: watch::channel(true).0, tasks: Vec::new(), subscriptions: Vec::new() };
        Self { running: AtomicBool::new(false), state: Mutex::new(state) }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    pub(crate) fn ensure_running(&self) -> Result<(), BusError> {
        if self.is_running() { Ok(()) } else { Err(BusError::NotRunning) }
    }

    /// Starts a task for every registered subscription. False if it was running already.
    pub(crate) async fn start(&self, spawn: Spawn<'_>) -> bool {
        let mut state = self.state.lock().await;
        if self.is_running() {
            return false;
        }
        state.stop = watch::channel(false).0;
        let tasks: Vec<_> = state
            .subscriptions
            .iter()
            .map(|r| {
                r.joined.store(false, Ordering::Release);
                spawn(r.subscription.clone(), Arc::clone(&r.handler), state.stop.subscribe(), Arc::clone(&r.joined))
            })
            .collect();
        state.tasks = tasks;
        self.running.store(true, Ordering::Release);
        true
    }

    /// Tells every task to stop and waits for them. False if it was not running.
    pub(crate) async fn stop(&self) -> bool {
        let mut state = self.state.lock().await;
        if !self.is_running() {
            return false;
        }
        self.running.store(false, Ordering::Release);
        state.stop.send_replace(true);
        for task in state.tasks.drain(..) {
            if let Err(error) = task.await {
                tracing::error!(%error, "Consumer task ended abnormally");
            }
        }
        true
    }

    /// Subscribes on `bus`: an explicit start position is applied once, now, as a reset of the
    /// group's offsets (from then on, across stop and start too, the group resumes from what it
    /// committed); then the subscription is registered.
    pub(crate) async fn subscribe(
        &self,
        bus: &dyn EventBus,
        mut subscription: Subscription,
        handler: Arc<dyn Handler>,
        spawn: Spawn<'_>,
    ) -> Result<(), BusError> {
        if subscription.start != StartPosition::Committed {
            for topic in &subscription.topics {
                bus.reset_offsets(&subscription.group, topic, subscription.start).await?;
            }
            subscription.start = StartPosition::Committed;
        }
        self.register(subscription, handler, spawn).await
    }

    /// Registers a subscription, and starts it at once if the bus is running. A group consumes a
    /// topic through one subscription per process.
    async fn register(
        &self,
        subscription: Subscription,
        handler: Arc<dyn Handler>,
        spawn: Spawn<'_>,
    ) -> Result<(), BusError> {
        let mut state = self.state.lock().await;
        for Registered { subscription: existing, .. } in &state.subscriptions {
            let overlap = existing.topics.iter().find(|t| subscription.topics.contains(t));
            if let (true, Some(topic)) = (existing.group == subscription.group, overlap) {
                return Err(BusError::AlreadySubscribed { group: subscription.group.clone(), topic: topic.clone() });
            }
        }
        let joined = Arc::new(AtomicBool::new(false));
        if self.is_running() {
            let task = spawn(subscription.clone(), Arc::clone(&handler), state.stop.subscribe(), Arc::clone(&joined));
            state.tasks.push(task);
        }
        state.subscriptions.push(Registered { subscription, handler, joined });
        Ok(())
    }

    /// Whether every subscription of `group` in this bus runs and has joined the group; `None`
    /// if the bus has no subscription in it. False while a start or a stop holds the state for
    /// more than a second (a stop waits for its consumers): a readiness probe must not wait.
    pub(crate) async fn joined(&self, group: &GroupId) -> Option<bool> {
        let Ok(state) = tokio::time::timeout(std::time::Duration::from_secs(1), self.state.lock()).await else {
            return Some(false);
        };
        let mut of_group = state.subscriptions.iter().filter(|r| &r.subscription.group == group).peekable();
        of_group.peek()?;
        let running = self.is_running();
        Some(of_group.all(|r| running && r.joined.load(Ordering::Acquire)))
    }
}
