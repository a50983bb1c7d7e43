//! `eventbus serve`: core banking as a service on the configured bus. It runs the command
//! handler, the outbox relay, the projections, the sagas and the Capera recommender until
//! ctrl-c or SIGTERM, then stops gracefully: in-flight messages are finished, and what was
//! committed is published or waits in the durable outbox for the next start.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use eventbus::{EventBus, GroupId, Message, handler_fn};
use nexum::clock::SystemClock;
use nexum::sagas::{CollectionsConfig, LoanOffer};
use nexum::service::{CoreBanking, ServiceConfig};
use nexum::store::{EventStore, PostgresStore, SqliteStore, SqliteSync};

use super::consume;
use crate::api::{self, ApiConfig, ApiState};
use crate::config::Config;

/// The event store's file in the data directory.
const STORE_FILE: &str = "nexum-events.db";

pub struct Options {
    /// A libpq connection string: the event store is PostgreSQL instead of SQLite.
    pub postgres: Option<String>,
    pub postgres_schema: String,
    pub loan_offers: bool,
    pub collections_tick_secs: u64,
    /// Where the HTTP API listens.
    pub listen: Option<String>,
    /// Development mode: `POST /kafka/publish-test` works.
    pub dev: bool,
}

/// Where the HTTP API listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub async fn run(config: &Config, options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=86_400).contains(&options.collections_tick_secs),
        "--collections-tick-secs must be 1 to 86400"
    );
    let (store, store_name): (Arc<dyn EventStore>, String) = match &options.postgres {
        Some(connection) => {
            let store = PostgresStore::connect(connection, &options.postgres_schema)
                .await
                .context("cannot open the PostgreSQL event store")?;
            (Arc::new(store), format!("PostgreSQL schema {}", options.postgres_schema))
        }
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
            let path = config.data_dir.join(STORE_FILE);
            let store = SqliteStore::open(&path, SqliteSync::Full).context("cannot open the SQLite event store")?;
            (Arc::new(store), path.display().to_string())
        }
    };
    let mut recommender = consume::Worker::new();
    let group = GroupId::new(consume::DEFAULT_GROUP)?;
    let rebuilt = consume::warm_up(config, &mut recommender, &group).await?;
    tracing::info!(rebuilt, "Recommender state rebuilt");

    let bus = crate::open_bus(config).await?;
    let service_config = ServiceConfig {
        loan_offer: options.loan_offers.then(LoanOffer::default),
        collections: CollectionsConfig {
            tick_every: Duration::from_secs(options.collections_tick_secs),
            ..CollectionsConfig::default()
        },
        ..ServiceConfig::default()
    };
    let listen = options.listen.or_else(|| config.api.listen.clone()).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listener =
        tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let service = CoreBanking::start(Arc::clone(&bus), store, Arc::new(SystemClock), service_config).await?;
    start_recommender(&bus, recommender, group, config).await?;
    let token = std::env::var("EVENTBUS_API_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| config.api.token.clone());
    if token.is_none() {
        tracing::warn!(
            "No API token is configured: every endpoint but /health, /ready and /openapi.json refuses requests"
        );
    }
    let api = ApiConfig { token, dev_mode: options.dev };
    let state =
        ApiState::new(Arc::clone(&bus), Arc::clone(service.bank()), Arc::clone(service.projections()), api).await?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let router = api::router(state.clone());
    let http = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });
    eprintln!(
        "Serving core banking on the {} bus at http://{address}, events stored in {store_name}; ctrl-c or SIGTERM stops",
        config.bus
    );

    shutdown_signal().await?;
    eprintln!("Stopping: finishing in-flight work");
    state.close();
    let _ = stop_http.send(());
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "The HTTP server stopped with an error"),
        Err(error) => tracing::warn!(%error, "The HTTP server task failed"),
    }
    let waiting = service.shutdown().await?;
    if waiting > 0 {
        eprintln!("Stopped; {waiting} event(s) wait in the outbox and are published at the next start");
    } else {
        eprintln!("Stopped");
    }
    Ok(())
}

/// The recommender of `eventbus consume recommendations`, as a background consumer.
async fn start_recommender(
    bus: &Arc<dyn EventBus>,
    worker: consume::Worker,
    group: GroupId,
    config: &Config,
) -> anyhow::Result<()> {
    let worker = Arc::new(tokio::sync::Mutex::new(worker));
    let publisher = Arc::clone(bus);
    let handler = handler_fn(move |message: Message| {
        let (worker, bus) = (Arc::clone(&worker), Arc::clone(&publisher));
        async move { worker.lock().await.handle(&*bus, &message).await.map(drop) }
    });
    bus.subscribe(consume::subscription(group).with_retry(config.retry()), handler).await?;
    Ok(())
}

/// Waits for ctrl-c or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for ctrl-c")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
