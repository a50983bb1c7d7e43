//! One module per subcommand.

pub mod consume;
pub mod demo;
pub mod groups;
pub mod produce;
pub mod publish;
pub mod replay;
pub mod schemas;
pub mod serve;
pub mod tail;
pub mod topics;

use eventbus::{GroupId, StartPosition, Subscription, TopicName};

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
    Ok(subscription.from(start).with_retry(config.retry()))
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
