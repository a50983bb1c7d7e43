//! Core banking as a running service on a bus: the bank with its outbox relay, the command
//! handler, the projections and the sagas, started together and stopped gracefully. This is
//! what `eventbus serve` runs.

use std::sync::Arc;
use std::time::Duration;

use eventbus::{BusError, EventBus, GroupId, StartPosition, Subscription};
use tokio::sync::watch;

use crate::bank::Bank;
use crate::clock::Clock;
use crate::commands::NexumCommandHandler;
use crate::hooks::{EventEnabledBank, create_with};
use crate::leadership::{Leadership, default_instance, holder_name};
use crate::projections::{ProjectionError, Projections};
use crate::relay::{RelayConfig, RelayError};
use crate::sagas::{COLLECTIONS_TIMER_ROLE, CollectionsConfig, CollectionsSaga, LoanApplicationSaga, LoanOffer};
use crate::store::EventStore;

/// The consumer group of the projections, followed by the instance's name: each instance has
/// its own, so that each follows every partition and answers every read in full.
pub const PROJECTIONS_GROUP: &str = "nexum-projections";

/// The projections' consumer group of the instance named `instance`.
pub fn projections_group(instance: &str) -> Result<GroupId, BusError> {
    GroupId::new(format!("{PROJECTIONS_GROUP}.{instance}"))
}

/// What the service runs, and how.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// How the outbox relay paces itself, and how fast another instance takes its role over.
    pub relay: RelayConfig,
    /// The loan offered to newly verified customers; `None` turns the loan application saga off.
    pub loan_offer: Option<LoanOffer>,
    /// When the collections saga acts.
    pub collections: CollectionsConfig,
    /// The durable retry stages of a command the handler failed on (after its attempts in
    /// place); empty dead-letters it at once. Its account's later commands are parked meanwhile.
    pub command_retry_stages: Vec<Duration>,
    /// This instance's name among those sharing the store and the bus: it names its own
    /// consumer groups and the roles it holds. Unique per instance; stable across restarts on a
    /// broker, so that its groups are reused.
    pub instance: String,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            relay: RelayConfig::default(),
            loan_offer: None,
            collections: CollectionsConfig::default(),
            command_retry_stages: Vec::new(),
            instance: default_instance(),
        }
    }
}

/// What the API of a running service reads: the bank, the read models, and the roles this
/// instance holds among those sharing the store.
#[derive(Clone)]
pub struct ServiceView {
    /// The bank the commands are carried out on.
    pub bank: Arc<Bank>,
    /// The read models, kept current from the bus.
    pub projections: Arc<Projections>,
    /// The roles that one instance holds at a time: the relay's and the collections timer's.
    pub roles: Vec<Arc<Leadership>>,
    /// This instance's name.
    pub instance: String,
}

/// Why the service could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The store could not be replayed into the projections: the source says whether it was
    /// unreadable or held an event this version cannot read.
    #[error("cannot rebuild the projections: {0}")]
    Projections(#[from] ProjectionError),
    /// The bus refused a subscription, or failed to stop.
    #[error("cannot subscribe: {0}")]
    Bus(#[from] BusError),
    /// The collections saga could not recover the loans it watches.
    #[error("cannot start the collections saga: {0}")]
    Collections(#[from] crate::sagas::CollectionsError),
    /// The outbox could not be published at shutdown; it stays in the store for the next start.
    #[error("cannot publish the outbox: {0}")]
    Relay(#[from] RelayError),
}

/// The running service.
pub struct CoreBanking {
    system: EventEnabledBank,
    bus: Arc<dyn EventBus>,
    projections: Arc<Projections>,
    timer_role: Arc<Leadership>,
    instance: String,
    stop: watch::Sender<bool>,
    timer: tokio::task::JoinHandle<()>,
}

impl CoreBanking {
    /// Starts everything on `bus` (started already) over `store`:
    /// - the bank and the relay that publishes its outbox, while this instance holds the
    ///   relay's role;
    /// - the projections, in a consumer group of this instance's own from the end of each topic,
    ///   then rebuilt from the store;
    /// - the command handler, whose group shares the command partitions between instances;
    /// - the loan application saga (if an offer is configured) and the collections saga, which
    ///   acts on the timers it schedules on the bus, in its group, and sweeps every loan as a
    ///   safety net while this instance holds its role.
    pub async fn start(
        bus: Arc<dyn EventBus>,
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        config: ServiceConfig,
    ) -> Result<Self, ServiceError> {
        let instance = config.instance;
        let system = create_with(Arc::clone(&bus), Arc::clone(&store), config.relay, &instance);
        let bank = Arc::clone(system.bank());
        // Followed from the end of each topic first, then rebuilt from the store: every event
        // the relay publishes was stored before, so whatever the subscription does not see, the
        // store has. Events seen both ways are applied once.
        let projections = Arc::new(Projections::new());
        let mut topics = Projections::topics().into_iter();
        let first = topics.next().expect("the projections read some topics");
        let subscription = topics
            .fold(Subscription::new(first, projections_group(&instance)?), Subscription::and_topic)
            .from(StartPosition::Latest)
            .sequenced();
        bus.subscribe(subscription, projections.handler()).await?;
        projections.replay(&*store).await?;
        NexumCommandHandler::staged(Arc::clone(&bank), Arc::clone(&clock), config.command_retry_stages.clone())
            .start(&*bus)
            .await?;
        if let Some(offer) = config.loan_offer {
            LoanApplicationSaga::new(Arc::clone(&bank), Arc::clone(&bus), Arc::clone(&clock), offer).start().await?;
        }
        let timer_role =
            Arc::new(Leadership::new(store, COLLECTIONS_TIMER_ROLE, holder_name(&instance), config.relay.lease_ttl));
        let collections = CollectionsSaga::new(bank, Arc::clone(&bus), clock, config.collections);
        let watched = collections.start().await?;
        collections.listen().await?;
        let (stop, stopped) = watch::channel(false);
        let timer = collections.spawn_timer(Arc::clone(&timer_role), stopped);
        tracing::info!(%instance, projected = projections.applied(), watched_loans = watched, "Core banking started");
        Ok(Self { system, bus, projections, timer_role, instance, stop, timer })
    }

    /// The bank the service runs.
    pub fn bank(&self) -> &Arc<Bank> {
        self.system.bank()
    }

    /// The read models, kept current from the bus.
    pub fn projections(&self) -> &Arc<Projections> {
        &self.projections
    }

    /// What an API over the service reads.
    pub fn view(&self) -> ServiceView {
        ServiceView {
            bank: Arc::clone(self.system.bank()),
            projections: Arc::clone(&self.projections),
            roles: vec![Arc::clone(self.system.relay_role()), Arc::clone(&self.timer_role)],
            instance: self.instance.clone(),
        }
    }

    /// Stops gracefully: the timer; then what is committed is published; then the bus stops,
    /// letting handlers finish the message they hold. Events committed by those last handlers
    /// stay in the durable outbox and are published at the next start. Returns how many events
    /// wait there.
    pub async fn shutdown(self) -> Result<u64, ServiceError> {
        let _ = self.stop.send(true);
        let _ = self.timer.await;
        self.timer_role.resign().await;
        match self.system.flush().await {
            // Another instance relays: what is committed is its to publish.
            Ok(_) | Err(RelayError::Standby) => {}
            Err(error) => return Err(error.into()),
        }
        self.bus.stop().await?;
        let store = Arc::clone(self.system.bank().store());
        self.system.shutdown().await;
        Ok(store.outbox_len().await.unwrap_or_default())
    }
}
