//! Backpressure on `POST /commands/*`: when the command handler is further behind than a bound,
//! new commands are refused with 429 and a `Retry-After`, instead of being accepted into a
//! backlog that grows without end.
//!
//! The lag (commands published and not yet carried out) is measured in the background, every
//! [`EVERY`], from the handler's group offsets, so that a request pays nothing for it. The time to
//! retry after is how long the handler, at the rate it was seen to go, takes to come back under
//! the bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventbus::{BusError, EventBus, GroupId};
use nexum::commands::{COMMAND_TOPICS, GROUP};
use tokio::task::JoinHandle;

/// How often the lag is measured.
pub const EVERY: Duration = Duration::from_millis(100);
/// The longest `Retry-After`, in seconds.
const MAX_RETRY_AFTER: u64 = 60;

/// The command handler's lag, as last measured.
pub struct CommandLag {
    /// Commands published and not yet handled.
    lag: AtomicU64,
    /// Commands handled per second, as last seen; 0 until known.
    rate: AtomicU64,
    limit: u64,
    task: JoinHandle<()>,
}

impl Drop for CommandLag {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CommandLag {
    /// Measures the lag of the command handler on `bus` until dropped; `limit` is the lag above
    /// which commands are refused.
    pub fn start(bus: Arc<dyn EventBus>, limit: u64) -> Result<Arc<Self>, BusError> {
        let group = GroupId::new(GROUP)?;
        Ok(Arc::new_cyclic(|this: &std::sync::Weak<Self>| {
            let this = this.clone();
            let task = tokio::spawn(async move {
                let mut ticker = tokio::time::interval(EVERY);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut last: Option<(Instant, u64)> = None;
                loop {
                    ticker.tick().await;
                    let Some(lag) = this.upgrade() else { return };
                    match measure(bus.as_ref(), &group).await {
                        Ok((behind, handled)) => {
                            lag.lag.store(behind, Ordering::Relaxed);
                            if let Some((at, before)) = last {
                                let seconds = at.elapsed().as_secs_f64();
                                let rate = handled.saturating_sub(before) as f64 / seconds.max(1e-3);
                                lag.rate.store(rate as u64, Ordering::Relaxed);
                            }
                            last = Some((Instant::now(), handled));
                        }
                        Err(error) => tracing::debug!(%error, "Cannot measure the command handler's lag"),
                    }
                }
            });
            Self { lag: AtomicU64::new(0), rate: AtomicU64::new(0), limit, task }
        }))
    }

    /// Commands published and not yet handled, as last measured.
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// The lag above which commands are refused.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// `None` while the handler keeps up; otherwise how long to wait before trying again: the
    /// time the handler takes, at its last rate, to come back under the limit (1 to 60 s).
    pub fn retry_after(&self) -> Option<Duration> {
        let lag = self.lag();
        if lag <= self.limit {
            return None;
        }
        let rate = self.rate.load(Ordering::Relaxed).max(1);
        let excess = lag - self.limit;
        Some(Duration::from_secs(excess.div_ceil(rate).clamp(1, MAX_RETRY_AFTER)))
    }
}

/// The handler's lag over the command topics, and how many commands it has handled in all. A
/// partition where the handler has committed nothing lags by everything it retains.
async fn measure(bus: &dyn EventBus, group: &GroupId) -> Result<(u64, u64), BusError> {
    let (mut lag, mut handled) = (0, 0);
    for (topic, _) in COMMAND_TOPICS {
        let topic = topic.name();
        let committed = bus.group_offsets(group, &topic).await?;
        for info in bus.describe_topic(&topic).await?.partitions {
            match committed.iter().find(|c| c.partition == info.partition) {
                Some(position) => {
                    lag += position.lag;
                    handled += position.offset.0 + position.finished.len() as u64;
                }
                None => lag += info.latest.0 - info.earliest.0,
            }
        }
    }
    Ok((lag, handled))
}
