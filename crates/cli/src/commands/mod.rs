//! One module per subcommand.

pub mod consume;
pub mod demo;
pub mod dlq;
pub mod groups;
pub mod produce;
pub mod publish;
pub mod replay;
pub mod schemas;
pub mod serve;
pub mod tail;
pub mod token;
pub mod topics;

use eventbus::{EventBus, GroupId, StartPosition, Subscription, TopicName};

use crate::cli::ReadOptions;
use crate::config::Config;

/// A subscription as kafka-console-consumer reads its flags: with `--group`, the group's committed
/// offsets; without one, a throwaway group from the latest offset; `--from-beginning` reads from
/// the earliest either way.
pub fn subscription(
    config: &Config,
    topics: Vec<TopicName>,
    read: &ReadOptions,
    tool: &str,
) -> anyhow::Result<Subscription> {
    let (group, start) = match &read.group {
        Some(group) => (GroupId::new(group.as_str())?, StartPosition::Committed),
        None => (GroupId::new(format!("{tool}-{}", eventbus::EventId::new()))?, StartPosition::Latest),
    };
    let start = if read.from_beginning { StartPosition::Earliest } else { start };
    let mut topics = topics.into_iter();
    let first = topics.next().ok_or_else(|| anyhow::anyhow!("no topic to read"))?;
    let subscription = topics.fold(Subscription::new(first, group), Subscription::and_topic);
    Ok(subscription.from(start).with_retry(config.retry()).with_retry_stages(config.retry_stages()))
}

pub fn idle(read: &ReadOptions) -> anyhow::Result<Option<std::time::Duration>> {
    match read.idle_exit {
        None => Ok(None),
        Some(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(Some(std::time::Duration::from_secs_f64(secs))),
        Some(secs) => anyhow::bail!("invalid --idle-exit {secs}: expected a number of seconds above 0, at most 86400"),
    }
}

pub fn topic(name: &str) -> anyhow::Result<TopicName> {
    Ok(TopicName::new(name)?)
}

/// A publishing command ended while some of its events still wait in the local outbox: they are
/// durable and go out at the next start of a bus on the same data directory, but the broker has
/// not taken them. The command exits with [`Queued::EXIT_CODE`].
#[derive(Debug)]
pub struct Queued {
    pub waiting: u64,
}

impl Queued {
    /// `EX_TEMPFAIL` of sysexits.h, as sendmail answers for mail it queued: nothing is lost,
    /// it is not delivered yet.
    pub const EXIT_CODE: u8 = 75;
}

impl std::fmt::Display for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} event(s) wait in the local outbox: the broker has not taken them; they are kept on disk \
             and go out at the next start of a bus on this data directory",
            self.waiting
        )
    }
}

impl std::error::Error for Queued {}

/// Stops `bus` (it sends what it can within its request timeout) and says how many of the `sent`
/// events the broker took. Events that still wait in the local outbox are not reported as
/// published: that is a [`Queued`] error with their count.
pub async fn stop_and_report(bus: &dyn EventBus, sent: u64, topic: &TopicName, detail: &str) -> anyhow::Result<()> {
    bus.stop().await?;
    let waiting = drained(bus).await?;
    say!("Published {} event(s) to {topic}{detail}", sent.saturating_sub(waiting));
    if waiting > 0 {
        return Err(Queued { waiting }.into());
    }
    Ok(())
}

/// What still waits in the outbox once the relay stops making progress: it goes on sending
/// after the stop, until the bus is dropped. Gives up after 2 s without progress, or 5 minutes.
async fn drained(bus: &dyn EventBus) -> anyhow::Result<u64> {
    const STALLED: std::time::Duration = std::time::Duration::from_secs(2);
    const AT_MOST: std::time::Duration = std::time::Duration::from_secs(300);
    let started = tokio::time::Instant::now();
    let mut waiting = bus.outbox_backlog().await?.unwrap_or(0);
    let mut progress = started;
    while waiting > 0 && progress.elapsed() < STALLED && started.elapsed() < AT_MOST {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = bus.outbox_backlog().await?.unwrap_or(0);
        if now < waiting {
            progress = tokio::time::Instant::now();
        }
        waiting = now;
    }
    Ok(waiting)
}
