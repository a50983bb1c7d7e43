//! The seed's `create_event_enabled_banking_system`: one call, and every banking operation
//! publishes its events.
//!
//! The bank records each operation's events in its store together with the outbox, in one
//! transaction; the relay publishes them. So a bus that is down never fails a banking operation
//! (the seed's rule), and never loses its events either: they wait in the outbox and go out, in
//! order, when the bus is back.

use std::sync::Arc;

use eventbus::EventBus;

use crate::bank::Bank;
use crate::leadership::{Leadership, default_instance};
use crate::relay::{Relay, RelayConfig, RelayError, RelayHandle};
use crate::store::EventStore;

/// A bank whose events reach the bus.
pub struct EventEnabledBank {
    bank: Arc<Bank>,
    relay: Relay,
    running: RelayHandle,
}

/// Connects the bank over `store` to `bus` and starts the relay.
pub fn create_event_enabled_banking_system(bus: Arc<dyn EventBus>, store: Arc<dyn EventStore>) -> EventEnabledBank {
    create_with(bus, store, RelayConfig::default(), &default_instance())
}

/// As [`create_event_enabled_banking_system`], with the relay's pacing, for the instance named
/// `instance` among those sharing `store`.
pub fn create_with(
    bus: Arc<dyn EventBus>,
    store: Arc<dyn EventStore>,
    config: RelayConfig,
    instance: &str,
) -> EventEnabledBank {
    let bank = Arc::new(Bank::new(Arc::clone(&store)));
    let relay = Relay::new(store, bus, config, instance);
    let running = relay.clone().spawn(bank.commit_signal());
    EventEnabledBank { bank, relay, running }
}

impl EventEnabledBank {
    /// The bank: every operation on it reaches the bus through the relay.
    pub fn bank(&self) -> &Arc<Bank> {
        &self.bank
    }

    /// Publishes everything committed so far, now; returns how many events went out.
    /// `Standby` if another instance sharing the store holds the relay's role.
    pub async fn flush(&self) -> Result<usize, RelayError> {
        self.relay.drain().await
    }

    /// The relay's role, as this instance sees it.
    pub fn relay_role(&self) -> &Arc<Leadership> {
        self.relay.leadership()
    }

    /// Stops the relay. Events not yet published stay in the outbox for the next start.
    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}
