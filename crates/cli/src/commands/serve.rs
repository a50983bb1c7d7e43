//! `eventbus serve`: core banking as a service on the configured bus. It runs the command
//! handler, the outbox relay, the projections, the sagas and the Capera recommender until
//! ctrl-c or SIGTERM, then stops gracefully: in-flight messages are finished, and what was
//! committed is published or waits in the durable outbox for the next start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::StatusCode;
use capera::service::{self, Worker};
use eventbus::{EventBus, GroupId};
use nexum::RelayConfig;
use nexum::clock::SystemClock;
use nexum::leadership::default_instance;
use nexum::sagas::{CollectionsConfig, LoanOffer};
use nexum::service::{CoreBanking, ServiceConfig};
use nexum::store::{EventStore, PostgresStore, SqliteStore, SqliteSync};
use serde_json::{Value, json};

use crate::api::config::Target;
use crate::api::{self, ApiConfig, ApiError, ApiState};
use crate::config::Config;

/// The event store's file in the data directory.
const STORE_FILE: &str = "nexum-events.db";

pub struct Options {
    /// This instance's name; `None`: the host's name and the process id.
    pub instance: Option<String>,
    /// How long a role stays with an instance that stopped renewing it, in milliseconds.
    pub role_lease_ms: u64,
    /// A libpq connection string: the event store is PostgreSQL instead of SQLite.
    pub postgres: Option<String>,
    pub postgres_schema: String,
    pub loan_offers: bool,
    pub collections_tick_secs: u64,
    /// Where the HTTP API listens.
    pub listen: Option<String>,
    /// Development mode: `POST /kafka/publish-test` works, and the memory and log buses are allowed.
    pub dev: bool,
    /// The config file in use, where a bus switch is written; `None`: the data directory's.
    pub config_file: Option<PathBuf>,
}

/// Where the HTTP API listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub async fn run(config: &Config, options: Options) -> anyhow::Result<()> {
    // A named instance is a static member of its Kafka groups: restarted, it takes its
    // partitions back at once.
    let mut config = config.clone();
    if let Some(instance) = &options.instance {
        config.kafka.group_instance_id.get_or_insert_with(|| instance.clone());
    }
    let config = &config;
    anyhow::ensure!(
        (1..=86_400).contains(&options.collections_tick_secs),
        "--collections-tick-secs must be 1 to 86400"
    );
    anyhow::ensure!((300..=600_000).contains(&options.role_lease_ms), "--role-lease-ms must be 300 to 600000");
    anyhow::ensure!(
        config.bus.is_durable() || options.dev,
        "the {} bus keeps events in memory: commands acknowledged on it are lost if the process dies; \
         serve runs on it only with --dev (use the embedded or kafka bus)",
        config.bus
    );
    // A disk that cannot take writes fails the start at once, with the reason, instead of
    // failing at whichever first write comes first.
    eventbus::private::dir(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    if let Err(problem) = crate::api::disk::Disk::new(config.data_dir.clone()).check().await {
        anyhow::bail!("cannot start: {problem}; free space or repair the disk, then start again");
    }
    let (store, store_name): (Arc<dyn EventStore>, String) = match &options.postgres {
        Some(connection) => {
            let store = PostgresStore::connect(connection, &options.postgres_schema)
                .await
                .context("cannot open the PostgreSQL event store")?;
            (Arc::new(store), format!("PostgreSQL schema {}", options.postgres_schema))
        }
        None => {
            let path = config.data_dir.join(STORE_FILE);
            let store = SqliteStore::open(&path, SqliteSync::Full).context("cannot open the SQLite event store")?;
            (Arc::new(store), path.display().to_string())
        }
    };
    let service_config = ServiceConfig {
        loan_offer: options.loan_offers.then(LoanOffer::default),
        collections: CollectionsConfig {
            tick_every: Duration::from_secs(options.collections_tick_secs),
            ..CollectionsConfig::default()
        },
        relay: RelayConfig { lease_ttl: Duration::from_millis(options.role_lease_ms), ..RelayConfig::default() },
        command_retry_stages: config.retry_stages(),
        instance: options.instance.unwrap_or_else(default_instance),
    };
    let defaults = api::server::Limits::default();
    let limits = api::server::Limits {
        header_timeout: config.api.header_timeout_ms.map_or(defaults.header_timeout, Duration::from_millis),
        max_connections: config.api.max_connections.unwrap_or(defaults.max_connections),
        ..defaults
    };
    anyhow::ensure!(
        (100..=600_000).contains(&limits.header_timeout.as_millis()),
        "api.header_timeout_ms must be 100 to 600000"
    );
    anyhow::ensure!((1..=100_000).contains(&limits.max_connections), "api.max_connections must be 1 to 100000");
    anyhow::ensure!(
        (1..=10_000_000).contains(&config.consumer.dedup_window),
        "consumer.dedup_window must be 1 to 10000000"
    );
    anyhow::ensure!(
        (1..=10_000_000).contains(&config.schedule.max_scheduled),
        "schedule.max_scheduled must be 1 to 10000000"
    );
    anyhow::ensure!((1..=3_650).contains(&config.schedule.max_ahead_days), "schedule.max_ahead_days must be 1 to 3650");
    api::tokens::check(&config.api.tokens)?;
    let listen = options.listen.or_else(|| config.api.listen.clone()).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listener =
        tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let bus = crate::open_delivering_bus(config, crate::Outbox::Required).await?;
    let service = start_on(config, &bus, &store, &service_config).await?;
    let view = service.view();
    let mut running = Running { config: config.clone(), service: Some(service) };

    let token = std::env::var("EVENTBUS_API_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| config.api.token.clone());
    if token.is_none() && config.api.tokens.is_empty() {
        tracing::warn!(
            "No API token is configured: every endpoint but /health, /ready, /metrics, /openapi.json and the dashboard refuses requests"
        );
    }
    let max_command_lag = config.api.max_command_lag.unwrap_or(crate::api::DEFAULT_MAX_COMMAND_LAG);
    let tail_per_topic = config.api.tail_events_per_topic.unwrap_or(ApiConfig::default().tail_per_topic);
    anyhow::ensure!((1..=500).contains(&tail_per_topic), "api.tail_events_per_topic must be 1 to 500");
    let api = ApiConfig {
        token,
        tokens: config.api.tokens.clone(),
        dev_mode: options.dev,
        max_command_lag,
        data_dir: Some(config.data_dir.clone()),
        tail_per_topic,
    };
    let (switches, mut switch_requests) = tokio::sync::mpsc::channel(1);
    let state = ApiState::new(Arc::clone(&bus), view, api, Some(switches)).await?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let router = api::router(state.clone());
    let http = tokio::spawn(api::server::serve(listener, router, limits, async {
        let _ = http_stopped.await;
    }));
    say!(
        "Serving core banking on the {} bus at http://{address}, events stored in {store_name}; ctrl-c or SIGTERM stops",
        config.bus
    );

    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            result = &mut signal => {
                result?;
                break;
            }
            Some(switch) = switch_requests.recv() => {
                let result = running.switch(switch.target, &store, &service_config, &state, options.config_file.as_deref()).await;
                let _ = switch.done.send(result);
            }
        }
    }
    say!("Stopping: finishing in-flight work");
    state.close();
    let _ = stop_http.send(());
    if let Err(error) = http.await {
        tracing::warn!(%error, "The HTTP server task failed");
    }
    let waiting = match running.service.take() {
        Some(service) => service.shutdown().await?,
        None => 0,
    };
    if waiting > 0 {
        say!("Stopped; {waiting} event(s) wait in the outbox and are published at the next start");
    } else {
        say!("Stopped");
    }
    Ok(())
}

/// The service and the configuration of the bus it runs on.
struct Running {
    config: Config,
    /// `None` only if a switch failed and the old bus could not be resumed either.
    service: Option<CoreBanking>,
}

impl Running {
    /// Switches to the bus `target` describes: opens it first (if it cannot be opened, nothing
    /// changes), drains and stops the service on the old bus, starts it on the new one, points
    /// the API at it, and writes the change to the config file.
    async fn switch(
        &mut self,
        target: Target,
        store: &Arc<dyn EventStore>,
        service_config: &ServiceConfig,
        state: &ApiState,
        config_file: Option<&Path>,
    ) -> Result<Value, ApiError> {
        let mut next = self.config.clone();
        next.bus = target.backend;

        if let Some(brokers) = &target.brokers {
            next.kafka.brokers = brokers.clone();
        }
        if let Some(client_id) = &target.client_id {
            next.kafka.client_id = client_id.clone();
        }
        let bus = crate::open_delivering_bus(&next, crate::Outbox::Required).await.map_err(|error| {
            tracing::warn!(error = %format!("{error:#}"), "Cannot open the bus to switch to; nothing changed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bus_unreachable",
                format!("cannot open the {} bus; nothing changed", next.bus),
            )
        })?;
        let previous = self.config.bus;
        tracing::info!(from = %previous, to = %next.bus, "Switching the bus: draining");
        let waiting = match self.service.take() {
            Some(old) => old.shutdown().await.map_err(|e| ApiError::unavailable("draining the old bus", &e))?,
            None => 0,
        };
        let service = match start_on(&next, &bus, store, service_config).await {
            Ok(service) => service,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "Cannot start on the new bus; resuming on the old one");
                self.resume(store, service_config, state).await;
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "switch_failed",
                    format!("cannot start on the {} bus; the service resumed on the {} bus", next.bus, previous),
                ));
            }
        };
        state.replace(bus, service.view()).await.map_err(ApiError::from)?;
        self.service = Some(service);
        let persisted = persist(&next, config_file).map_err(|error| {
            tracing::error!(error = %format!("{error:#}"), "The bus switched but the config file was not written");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "not_persisted",
                "the bus switched, but the change could not be written to the config file",
            )
        })?;
        self.config = next;
        tracing::info!(to = %self.config.bus, persisted = %persisted.display(), "Bus switched");
        let mut answer = json!({
            "status": "switched",
            "bus_type": self.config.bus,
            "previous": previous,
            "outbox_waiting": waiting,
            "persisted_to": persisted.display().to_string(),
        });
        if previous.is_durable() && !self.config.bus.is_durable() {
            let warning = format!(
                "durability lowered: the {} bus loses acknowledged commands if the process dies",
                self.config.bus
            );
            tracing::warn!("{warning}");
            answer["warning"] = Value::String(warning);
        }
        Ok(answer)
    }

    /// After a failed switch: the service on the bus of the current configuration again.
    async fn resume(&mut self, store: &Arc<dyn EventStore>, service_config: &ServiceConfig, state: &ApiState) {
        let resumed = async {
            let bus = crate::open_delivering_bus(&self.config, crate::Outbox::Required).await?;
            let service = start_on(&self.config, &bus, store, service_config).await?;
            state.replace(bus, service.view()).await?;
            anyhow::Ok(service)
        };
        match resumed.await {
            Ok(service) => self.service = Some(service),
            Err(error) => tracing::error!(error = %format!("{error:#}"), "Cannot resume on the old bus either"),
        }
    }
}

/// Core banking and the recommender on `bus`.
async fn start_on(
    config: &Config,
    bus: &Arc<dyn EventBus>,
    store: &Arc<dyn EventStore>,
    service_config: &ServiceConfig,
) -> anyhow::Result<CoreBanking> {
    let mut recommender = Worker::with_config(config.recommender.clone()).context("invalid [recommender] config")?;
    let group = GroupId::new(service::DEFAULT_GROUP)?;
    // The rebuild gets a bus of its own: it subscribes a throwaway group and stops the bus.
    let state_bus = crate::open_bus(config, crate::Outbox::None).await?;
    let shutdown = crate::inbox::shutdown_signal();
    let rebuilt = service::warm_up(state_bus, &mut recommender, &group, service::WARM_UP_LIMIT, shutdown).await?;
    tracing::info!(rebuilt, "Recommender state rebuilt");
    let banking =
        CoreBanking::start(Arc::clone(bus), Arc::clone(store), Arc::new(SystemClock), service_config.clone()).await?;
    service::start(bus, recommender, group, config.retry()).await?;
    Ok(banking)
}

/// Writes the bus of `config` into the config file (`config_file`, or `eventbus.toml` in the
/// data directory, which is read at start when no other file is named), keeping everything else
/// in it. Returns the file's path.
fn persist(config: &Config, config_file: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = config_file.map_or_else(|| config.data_dir.join(crate::config::DATA_DIR_CONFIG), Path::to_path_buf);
    let mut table: toml::Table = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    table.insert("bus".into(), toml::Value::String(config.bus.to_string()));
    if config.bus == eventbus::BackendKind::Kafka {
        let kafka = table.entry("kafka").or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let kafka = kafka.as_table_mut().context("[kafka] in the config file is not a table")?;
        kafka.insert("brokers".into(), toml::Value::String(config.kafka.brokers.clone()));
        kafka.insert("client_id".into(), toml::Value::String(config.kafka.client_id.clone()));
    }
    let text = toml::to_string_pretty(&table)?;
    let partial = path.with_extension("toml.partial");
    std::fs::write(&partial, text).with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(path)
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
