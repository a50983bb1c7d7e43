//! Roles that one instance at a time holds among those sharing an event store: the outbox
//! relay's, so that events are published once and in order, and the collections timer's, so that
//! its work is done once per tick.
//!
//! A role is a lease in the store ([`EventStore::acquire_lease`]): a holder, an expiry and an
//! epoch. The holder renews it every third of its time to live; the others try for it at the same
//! pace, and one takes it over within about `ttl + ttl / 3` after the holder died. A holder that
//! cannot renew stops acting once its own deadline (measured from the start of its last renewal)
//! has passed, before the store lets anyone else in. What it writes under the role is fenced by
//! the epoch: a holder that was deposed while it worked cannot write after its successor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::{EventStore, Lease, StoreError};

/// One role, as seen by one would-be holder.
pub struct Leadership {
    store: Arc<dyn EventStore>,
    role: &'static str,
    holder: String,
    ttl: Duration,
    state: Mutex<State>,
    /// Whether the role is held right now, for `/ready` and `/metrics`.
    held: AtomicBool,
}

#[derive(Default)]
struct State {
    lease: Option<Lease>,
    /// When the lease ends by this process's clock: the start of its last renewal plus its time
    /// to live.
    deadline: Option<Instant>,
    /// When to renew, or to try again while another instance holds the role.
    next_try: Option<Instant>,
}

impl Leadership {
    /// `holder` trying for `role` in `store`, with leases of `ttl`. It tries nothing until
    /// [`current`](Self::current).
    pub fn new(store: Arc<dyn EventStore>, role: &'static str, holder: String, ttl: Duration) -> Self {
        Self { store, role, holder, ttl, state: Mutex::default(), held: AtomicBool::new(false) }
    }

    /// The role.
    pub fn role(&self) -> &'static str {
        self.role
    }

    /// Whether this instance held the role at its last look.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// How often a holder renews and the others try: a third of the time to live.
    pub fn pace(&self) -> Duration {
        self.ttl / 3
    }

    /// The lease, if this instance holds the role: taken or renewed when due. `None` while
    /// another instance holds it. An error means the store could not be asked; a lease held
    /// still counts until its deadline.
    pub async fn current(&self) -> Result<Option<Lease>, StoreError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if state.deadline.is_some_and(|deadline| now >= deadline) {
            tracing::warn!(role = self.role, holder = %self.holder, "Role lapsed: its lease could not be renewed in time");
            self.clear(&mut state);
        }
        if state.next_try.is_some_and(|at| now < at) {
            return Ok(state.lease.clone());
        }
        let mut acquired = self.store.acquire_lease(self.role, &self.holder, self.ttl).await?;
        if acquired.is_none()
            && let Some(lease) = self.store.lease_of(self.role).await?
            && eventbus::liveness::is_gone(&lease.holder)
        {
            // Its holder's process died on this machine: its lease is not waited out.
            tracing::info!(role = self.role, holder = %lease.holder, "The role's holder died; taking the role over");
            self.store.release_lease(&lease).await?;
            acquired = self.store.acquire_lease(self.role, &self.holder, self.ttl).await?;
        }
        let previous = state.lease.as_ref().map(|lease| lease.epoch);
        match &acquired {
            Some(lease) if previous != Some(lease.epoch) => {
                tracing::info!(role = self.role, holder = %self.holder, epoch = lease.epoch, "Took the role");
            }
            None if previous.is_some() => {
                tracing::warn!(role = self.role, holder = %self.holder, "Lost the role to another instance");
            }
            _ => {}
        }
        state.deadline = acquired.as_ref().map(|_| now + self.ttl);
        state.next_try = Some(now + self.pace());
        state.lease = acquired;
        self.held.store(state.lease.is_some(), Ordering::Relaxed);
        Ok(state.lease.clone())
    }

    /// Forgets the lease at once, as after a fenced write: the next [`current`](Self::current)
    /// asks the store again.
    pub async fn forget(&self) {
        self.clear(&mut *self.state.lock().await);
    }

    /// Gives the role up, so that another instance takes it without waiting for the lease to
    /// run out.
    pub async fn resign(&self) {
        let mut state = self.state.lock().await;
        if let Some(lease) = state.lease.take() {
            match self.store.release_lease(&lease).await {
                Ok(()) => tracing::info!(role = self.role, holder = %self.holder, "Gave the role up"),
                Err(error) => tracing::warn!(%error, role = self.role, "Cannot give the role up; it lapses by itself"),
            }
        }
        self.clear(&mut state);
    }

    /// Holds nothing, and asks the store at the next look.
    fn clear(&self, state: &mut State) {
        *state = State::default();
        self.held.store(false, Ordering::Relaxed);
    }
}

/// A name for this instance when none is configured: the host's name and the process id.
pub fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "nexum".to_owned());
    format!("{host}-{}", std::process::id())
}

/// A holder name for one start of `instance`: this process's [`eventbus::liveness::tag`], the
/// name and a random suffix, so that two instances configured with the same name still hold a
/// role one at a time, and a holder that died on this machine is not waited out.
pub fn holder_name(instance: &str) -> String {
    // Led by this process's tag, so that another process on this machine can tell when it died.
    format!("{}{instance}#{}", eventbus::liveness::tag(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn leadership(store: &Arc<dyn EventStore>, holder: &str) -> Leadership {
        Leadership::new(Arc::clone(store), "test-role", holder.to_owned(), Duration::from_millis(300))
    }

    #[tokio::test]
    async fn one_instance_holds_a_role_and_another_takes_it_over_after_the_lease_runs_out() {
        // Given two instances trying for one role
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let (a, b) = (leadership(&store, "a"), leadership(&store, "b"));

        // When both try, the first holds it and the second does not
        let first = a.current().await.unwrap().expect("the first instance takes the role");
        assert!(b.current().await.unwrap().is_none());
        assert!(a.is_held() && !b.is_held());

        // Then once the first stops renewing, the second takes it over at a higher epoch, and
        // the first's deadline passes on its own clock
        tokio::time::sleep(Duration::from_millis(350)).await;
        let second = b.current().await.unwrap().expect("the lease ran out");
        assert!(second.epoch > first.epoch);
        assert!(a.current().await.unwrap().is_none());
        assert!(!a.is_held() && b.is_held());
    }

    #[tokio::test]
    async fn a_resigned_role_is_taken_at_once() {
        // Given an instance holding a role
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let (a, b) = (leadership(&store, "a"), leadership(&store, "b"));
        a.current().await.unwrap().unwrap();

        // When it resigns
        a.resign().await;

        // Then another instance takes it without waiting for the lease
        assert!(b.current().await.unwrap().is_some());
        assert!(!a.is_held());
    }

    #[tokio::test]
    async fn a_role_whose_holder_died_on_this_machine_is_taken_at_once_and_a_live_one_is_not() {
        // Given a role held, with a long lease, by a process that has exited
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let long = |holder: String| Leadership::new(Arc::clone(&store), "test-role", holder, Duration::from_secs(600));
        let gone = long(format!("{}node-0#00000000", eventbus::liveness::tag_of(dead)));
        let first = gone.current().await.unwrap().expect("the role is free");

        // When a restarted instance asks for it, then it takes it at once, at a higher epoch
        let restarted = long(holder_name("node-0"));
        let taken = restarted.current().await.unwrap().expect("a dead holder is not waited out");
        assert!(taken.epoch > first.epoch);

        // and an instance of this live process is refused while the lease runs
        let other = long(holder_name("node-1"));
        assert!(other.current().await.unwrap().is_none());
    }
}
