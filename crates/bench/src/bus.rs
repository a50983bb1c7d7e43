//! `eventbus-bench bus`: publish → consume throughput and publish-to-deliver latency of each
//! backend, with ~570-byte seed-shaped events, and the Kafka backend beside a raw rdkafka
//! producer sending the same bytes. Prints a Markdown table for BENCHMARKS.md.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use eventbus::{
    BackendKind, BusConfig, EmbeddedBus, EmbeddedConfig, EventBus, EventId, EventSchema, GroupId, KafkaBus,
    KafkaConfig, MemoryBus, Subscription, TopicName, handler_fn,
};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde_json::json;
use tokio::sync::Notify;

use crate::report::{Figures, progress};

/// Events per `publish_batch` call in the throughput runs.
const BATCH: usize = 1000;
/// Concurrent producers in the throughput runs.
const PRODUCERS: u64 = 2;
/// Events the memory backend keeps per partition in the bench: more than the consumer falls
/// behind the producers in a run, so that none expires unread.
const MEMORY_RETENTION: usize = 200_000;
/// How long the consumer may go without handling an event before the run fails.
const STALL: Duration = Duration::from_secs(30);

struct Row {
    backend: BackendKind,
    scenario: String,
    events: u64,
    per_sec: f64,
    latency: Option<(f64, f64, f64)>,
}

/// What `eventbus-bench bus` runs.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Events per throughput run.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seconds of each fixed-rate latency run.
    #[arg(long, default_value_t = 5)]
    latency_secs: u64,
    /// Events per second in the latency runs.
    #[arg(long, default_value_t = 10_000)]
    latency_rate: u64,
    /// Run only this backend: memory, embedded or kafka.
    #[arg(long, value_parser = parse_backend)]
    only: Option<BackendKind>,
    /// Where the embedded runs keep their scratch stores [default: the system's temporary
    /// directory].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers, `host:port[,host:port]`; the Kafka runs happen only with them.
    #[arg(long, env = "EVENTBUS_BROKERS")]
    brokers: Option<String>,
    /// A librdkafka property for the Kafka runs, `NAME=VALUE`; may be repeated.
    #[arg(long = "kafka-property", value_name = "NAME=VALUE", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    match s {
        "memory" => Ok(BackendKind::Memory),
        "embedded" => Ok(BackendKind::Embedded),
        "kafka" => Ok(BackendKind::Kafka),
        "log" => Err("the log backend is memory plus a log line; measure memory".into()),
        other => Err(format!("unknown backend `{other}`; expected memory, embedded or kafka")),
    }
}

pub(crate) fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("invalid property `{s}`: expected NAME=VALUE")),
    }
}

impl Options {
    fn kafka(&self) -> anyhow::Result<KafkaConfig> {
        let brokers = self.brokers.clone().context("the Kafka runs need --brokers (or EVENTBUS_BROKERS)")?;
        let mut config = KafkaConfig::at(brokers);
        config.properties.extend(self.kafka_properties.iter().cloned());
        Ok(config)
    }
}

/// Runs the throughput and latency runs of each backend; returns their figures.
pub async fn run(options: Options) -> anyhow::Result<Figures> {
    let (events, latency_secs, rate) = (options.events, options.latency_secs, options.latency_rate);
    anyhow::ensure!(events >= BATCH as u64, "--events must be at least {BATCH}");
    anyhow::ensure!((1..=1_000_000).contains(&rate), "--latency-rate must be 1 to 1000000");
    anyhow::ensure!((1..=600).contains(&latency_secs), "--latency-secs must be 1 to 600");
    let backends: Vec<BackendKind> = match options.only {
        Some(backend) => vec![backend],
        None if options.brokers.is_some() => vec![BackendKind::Memory, BackendKind::Embedded, BackendKind::Kafka],
        None => vec![BackendKind::Memory, BackendKind::Embedded],
    };
    let size = sample_event(0, 0).to_json().len();
    let mut rows = Vec::new();
    let mut figures = Figures::default();
    for backend in backends {
        let scratch = BenchDir::new(&options, backend);
        let bus = open(&options, backend, &scratch).await?;
        let row = throughput(bus.as_ref(), backend, events).await?;
        figures.set(&format!("{backend}_events_per_s"), row.per_sec);
        rows.push(row);
        bus.stop().await?;
        // One bus at a time: a Kafka bus's relay owns the outbox until the bus is dropped.
        drop(bus);
        if backend == BackendKind::Kafka {
            let bus = open(&options, backend, &scratch).await?;
            let published = publish_only(bus.as_ref(), backend, events).await?;
            bus.stop().await?;
            let raw = raw_kafka(&options, events).await?;
            figures.set("kafka_publish_per_s", published.per_sec).set("raw_kafka_per_s", raw.per_sec);
            figures.set("kafka_vs_raw", published.per_sec / raw.per_sec);
            rows.extend([published, raw]);
        }
        let bus = open(&options, backend, &scratch).await?;
        let row = latency(bus.as_ref(), backend, latency_secs, rate).await?;
        if let Some((p50, p99, _)) = row.latency {
            figures.set(&format!("{backend}_p50_ms"), p50).set(&format!("{backend}_p99_ms"), p99);
        }
        rows.push(row);
        bus.stop().await?;
    }
    println!();
    println!("Events are ~{size} bytes of flat EventSchema JSON. {PRODUCERS} producers, batches of {BATCH}.");
    println!();
    println!("| backend | scenario | events | events/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let (p50, p99, max) = match row.latency {
            Some((p50, p99, max)) => (format!("{p50:.2}"), format!("{p99:.2}"), format!("{max:.2}")),
            None => ("".into(), "".into(), "".into()),
        };
        println!(
            "| {} | {} | {} | {:.0} | {p50} | {p99} | {max} |",
            row.backend, row.scenario, row.events, row.per_sec
        );
    }
    Ok(figures)
}

/// A scratch data directory for the embedded runs, removed afterwards.
struct BenchDir(PathBuf);

impl BenchDir {
    fn new(options: &Options, backend: BackendKind) -> Self {
        let parent = options.data_dir.clone().unwrap_or_else(std::env::temp_dir);
        Self(parent.join(format!("eventbus-bench-{}-{}", backend, std::process::id())))
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn open(options: &Options, backend: BackendKind, dir: &BenchDir) -> anyhow::Result<Arc<dyn EventBus>> {
    let local = BusConfig { auto_create_topics: true, ..BusConfig::default() };
    let bus: Arc<dyn EventBus> = match backend {
        BackendKind::Kafka => {
            // As the CLI runs it: publishes go through the durable local outbox and its relay.
            let kafka = KafkaConfig { outbox_dir: Some(dir.0.join("kafka-outbox")), ..options.kafka()? };
            Arc::new(KafkaBus::connect(kafka, local).await?)
        }
        BackendKind::Embedded => Arc::new(
            EmbeddedBus::embedded(local, EmbeddedConfig::at(&dir.0)).await.context("cannot open the bench store")?,
        ),
        // Bounded like a broker's retention, so the run measures the bus, not page faults.
        _ => Arc::new(MemoryBus::memory_bounded(local, MEMORY_RETENTION).await?),
    };
    bus.start().await?;
    Ok(bus)
}

/// A seed-shaped `transaction_created` event of about 500 bytes.
fn sample_event(n: u64, sent_ns: u64) -> EventSchema {
    let account = format!("acc_{:06}", n % 10_000);
    let data = json!({
        "transaction_type": "card_payment",
        "amount": format!("{}.{:02}", n % 5000, n % 100),
        "currency": "USD",
        "from_account_id": account,
        "to_account_id": "acc_merchant_000123",
        "description": "Card payment at Corner Grocery, 12 High Street",
        "reference": format!("REF{n:012}"),
        "category": "groceries",
    });
    EventSchema::new(
        "transaction_created",
        "transaction",
        format!("txn_{n:012}"),
        data.as_object().cloned().unwrap_or_default(),
    )
    .with_metadata("correlation_id", format!("corr_{n:012}"))
    .with_metadata("user_id", "user_000456")
    .with_metadata("sent_ns", sent_ns)
}

async fn throughput(bus: &dyn EventBus, backend: BackendKind, events: u64) -> anyhow::Result<Row> {
    let topic = TopicName::new(&format!("bench.throughput.{}", EventId::new()))?;
    bus.create_topic(&topic, 3).await?;
    let consumed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let handler = {
        let (consumed, done) = (Arc::clone(&consumed), Arc::clone(&done));
        handler_fn(move |_| {
            let (consumed, done) = (Arc::clone(&consumed), Arc::clone(&done));
            async move {
                if consumed.fetch_add(1, Ordering::Relaxed) + 1 == events {
                    done.notify_one();
                }
                Ok(())
            }
        })
    };
    bus.subscribe(Subscription::new(topic.clone(), GroupId::new("bench")?), handler).await?;
    let bar = progress(events, &format!("{backend} throughput"));
    let started = Instant::now();
    let total = publish_all(bus, &topic, events, &bar).await?;
    let published_in = started.elapsed();
    let (mut seen, mut progressed) = (0, Instant::now());
    loop {
        let now = consumed.load(Ordering::Relaxed);
        if now >= total {
            break;
        }
        if now > seen {
            (seen, progressed) = (now, Instant::now());
        }
        anyhow::ensure!(
            progressed.elapsed() < STALL,
            "the consumer stopped at {now} of {total} events for {STALL:?} (events expired unread?)"
        );
        tokio::select! {
            () = done.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    tracing::info!(%backend, ?published_in, ?elapsed, "Throughput run done");
    Ok(Row {
        backend,
        scenario: format!("publish → consume (publish alone {:.0}/s)", total as f64 / published_in.as_secs_f64()),
        events: total,
        per_sec: total as f64 / elapsed.as_secs_f64(),
        latency: None,
    })
}

/// Publishes `events` seed-shaped events from `PRODUCERS` tasks in batches; returns how many.
async fn publish_all(bus: &dyn EventBus, topic: &TopicName, events: u64, bar: &ProgressBar) -> anyhow::Result<u64> {
    let template = sample_event(0, 0);
    let per_producer = events / PRODUCERS;
    let producers = (0..PRODUCERS).map(|p| {
        let (topic, bar, template) = (topic.clone(), bar.clone(), template.clone());
        async move {
            let mut sent = 0;
            while sent < per_producer {
                let n = (per_producer - sent).min(BATCH as u64);
                let batch = (0..n)
                    .map(|i| {
                        let mut event = template.clone();
                        event.event_id = Some(EventId::new());
                        event.entity_id = format!("txn_{p}_{}", sent + i);
                        event
                    })
                    .collect();
                bus.publish_batch(&topic, batch, None).await?;
                sent += n;
                bar.inc(n);
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(producers).await?;
    Ok(per_producer * PRODUCERS)
}

/// Publishing alone, nobody consuming: the figure to set beside a raw producer.
async fn publish_only(bus: &dyn EventBus, backend: BackendKind, events: u64) -> anyhow::Result<Row> {
    let topic = TopicName::new(&format!("bench.publish.{}", EventId::new()))?;
    bus.create_topic(&topic, 3).await?;
    let bar = progress(events, &format!("{backend} publish only"));
    let started = Instant::now();
    let total = publish_all(bus, &topic, events, &bar).await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(Row {
        backend,
        scenario: "publish only, acknowledged".into(),
        events: total,
        per_sec: total as f64 / elapsed.as_secs_f64(),
        latency: None,
    })
}

async fn latency(bus: &dyn EventBus, backend: BackendKind, secs: u64, rate: u64) -> anyhow::Result<Row> {
    let topic = TopicName::new(&format!("bench.latency.{}", EventId::new()))?;
    bus.create_topic(&topic, 3).await?;
    let base = Instant::now();
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let received = Arc::new(AtomicU64::new(0));
    let handler = {
        let (histogram, received) = (Arc::clone(&histogram), Arc::clone(&received));
        handler_fn(move |message| {
            let (histogram, received) = (Arc::clone(&histogram), Arc::clone(&received));
            async move {
                let sent = message.event.metadata.get("sent_ns").and_then(|v| v.as_u64()).unwrap_or(0);
                let micros = (base.elapsed().as_nanos() as u64).saturating_sub(sent) / 1000;
                histogram.lock().expect("histogram lock").saturating_record(micros.max(1));
                received.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        })
    };
    bus.subscribe(Subscription::new(topic.clone(), GroupId::new("bench")?), handler).await?;
    let total = rate * secs;
    let bar = progress(total, &format!("{backend} latency @ {rate}/s"));
    // Every millisecond, publish the events due by then, each as its own concurrent `publish`.
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut in_flight = futures::stream::FuturesUnordered::new();
    use futures::StreamExt;
    while sent < total {
        ticker.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            let event = sample_event(sent, base.elapsed().as_nanos() as u64);
            let topic = topic.clone();
            in_flight.push(async move { bus.publish(&topic, event, None).await });
            sent += 1;
        }
        while let Some(Some(result)) = futures::FutureExt::now_or_never(in_flight.next()) {
            result?;
            bar.inc(1);
        }
    }
    while let Some(result) = in_flight.next().await {
        result?;
        bar.inc(1);
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    for _ in 0..1000 {
        if received.load(Ordering::Relaxed) >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bar.finish_and_clear();
    let h = histogram.lock().expect("histogram lock");
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Row {
        backend,
        scenario: format!("publish-to-deliver at {rate}/s for {secs} s"),
        events: received.load(Ordering::Relaxed),
        per_sec: achieved,
        latency: Some((ms(0.5), ms(0.99), h.max() as f64 / 1000.0)),
    })
}

/// The same ~567-byte events as the throughput run, encoded once, sent by a bare rdkafka producer
/// with the backend's producer settings: the ceiling the Kafka backend is measured against.
async fn raw_kafka(options: &Options, events: u64) -> anyhow::Result<Row> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let config = options.kafka()?;
    let producer: FutureProducer = config.producer().create()?;
    let topic = TopicName::new(&format!("bench.raw.{}", EventId::new()))?;
    let admin = KafkaBus::connect(config.clone(), BusConfig::default()).await?;
    admin.create_topic(&topic, 3).await?;
    let (headers, value) = eventbus::envelope::to_binary(&sample_event(0, 0))?;
    let timeout = Duration::from_millis(config.delivery_timeout_ms);
    let bar = progress(events, "kafka raw rdkafka producer");
    let started = Instant::now();
    let per_producer = events / PRODUCERS;
    let producers = (0..PRODUCERS).map(|p| {
        let (producer, topic, headers, value, bar) = (&producer, &topic, &headers, &value, bar.clone());
        async move {
            let mut sent = 0;
            while sent < per_producer {
                let n = (per_producer - sent).min(BATCH as u64);
                let keys: Vec<String> = (0..n).map(|i| format!("txn_{p}_{}", sent + i)).collect();
                let sends = keys.iter().map(|key| {
                    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
                    for h in headers {
                        owned = owned.insert(Header { key: &h.name, value: Some(h.value.as_bytes()) });
                    }
                    let record =
                        FutureRecord::to(topic.as_str()).key(key.as_str()).payload(value.as_slice()).headers(owned);
                    producer.send(record, timeout)
                });
                for result in futures::future::join_all(sends).await {
                    result.map_err(|(error, _)| error)?;
                }
                sent += n;
                bar.inc(n);
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(producers).await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let total = per_producer * PRODUCERS;
    Ok(Row {
        backend: BackendKind::Kafka,
        scenario: "raw rdkafka producer, same bytes and settings (publish only)".into(),
        events: total,
        per_sec: total as f64 / elapsed.as_secs_f64(),
        latency: None,
    })
}
