//! Core banking as a running service on a bus: the bank with its outbox relay, the command
//! handler, the projections and the sagas, started together and stopped gracefully. This is
//! what `eventbus serve` runs.

use std::sync::Arc;

use eventbus::{BusError, EventBus, GroupId, Subscription};
use tokio::sync::watch;

use crate::bank::Bank;
use crate::clock::Clock;
use crate::commands::NexumCommandHandler;
use crate::hooks::{EventEnabledBank, create_with};
use crate::projections::{ProjectionError, Projections};
use crate::relay::{RelayConfig, RelayError};
use crate::sagas::{CollectionsConfig, CollectionsSaga, LoanApplicationSaga, LoanOffer};
use crate::store::EventStore;

/// The consumer group of the projections.
pub const PROJECTIONS_GROUP: &str = "nexum-projections";

/// What the service runs, and how.
#[derive(Clone, Debug, Default)]
pub struct ServiceConfig {
    /// How the outbox relay paces itself.
    pub relay: RelayConfig,
    /// The loan offered to newly verified customers; `None` turns the loan application saga off.
    pub loan_offer: Option<LoanOffer>,
    /// When the collections saga acts.
    pub collections: CollectionsConfig,
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
    stop: watch::Sender<bool>,
    timer: tokio::task::JoinHandle<()>,
}

impl CoreBanking {
    /// Starts everything on `bus` (started already) over `store`:
    /// - the bank and the relay that publishes its outbox;
    /// - the projections, rebuilt from the store, then kept current from the bus;
    /// - the command handler;
    /// - the loan application saga (if an offer is configured) and the collections saga with
    ///   its timer.
    pub async fn start(
        bus: Arc<dyn EventBus>,
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        config: ServiceConfig,
    ) -> Result<Self, ServiceError> {
        let system = create_with(Arc::clone(&bus), Arc::clone(&store), config.relay);
        let bank = Arc::clone(system.bank());
        // Rebuilt from the store, which keeps everything, then fed by the bus, which may not
        // (retention). Events seen both ways are applied once.
        let projections = Arc::new(Projections::rebuild(&*store).await?);
        let mut topics = Projections::topics().into_iter();
        let first = topics.next().expect("the projections read some topics");
        let subscription =
            topics.fold(Subscription::new(first, GroupId::new(PROJECTIONS_GROUP)?), Subscription::and_topic);
        bus.subscribe(subscription, projections.handler()).await?;
        NexumCommandHandler::new(Arc::clone(&bank), Arc::clone(&clock)).start(&*bus).await?;
        if let Some(offer) = config.loan_offer {
            LoanApplicationSaga::new(Arc::clone(&bank), Arc::clone(&bus), Arc::clone(&clock), offer).start().await?;
        }
        let collections = CollectionsSaga::new(bank, Arc::clone(&bus), clock, config.collections);
        let watched = collections.start().await?;
        let (stop, stopped) = watch::channel(false);
        let timer = collections.spawn_timer(stopped);
        tracing::info!(projected = projections.applied(), watched_loans = watched, "Core banking started");
        Ok(Self { system, bus, projections, stop, timer })
    }

    /// The bank the service runs.
    pub fn bank(&self) -> &Arc<Bank> {
        self.system.bank()
    }

    /// The read models, kept current from the bus.
    pub fn projections(&self) -> &Arc<Projections> {
        &self.projections
    }

    /// Stops gracefully: the timer; then what is committed is published; then the bus stops,
    /// letting handlers finish the message they hold. Events committed by those last handlers
    /// stay in the durable outbox and are published at the next start. Returns how many events
    /// wait there.
    pub async fn shutdown(self) -> Result<u64, ServiceError> {
        let _ = self.stop.send(true);
        let _ = self.timer.await;
        self.system.flush().await?;
        self.bus.stop().await?;
        let store = Arc::clone(self.system.bank().store());
        self.system.shutdown().await;
        Ok(store.outbox_len().await.unwrap_or_default())
    }
}
