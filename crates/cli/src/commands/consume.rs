//! `eventbus consume recommendations`: the Capera recommender of seed 000. It reads both streams
//! in one group, publishes each recommendation to `capera.recommendations` and prints it. The
//! group, the worker and the state rebuild are `capera::service`'s; this adds the flags and the
//! printing.

use std::io::Write;

use capera::service::{self, DEFAULT_GROUP, Worker};

use crate::cli::{Consume, Consumer};
use crate::config::Config;
use crate::inbox::{End, inbox, shutdown_signal};

pub async fn run(config: &Config, args: Consume) -> anyhow::Result<()> {
    let Consumer::Recommendations = args.consumer;
    let mut read = args.read;
    read.group.get_or_insert_with(|| DEFAULT_GROUP.to_owned());
    let idle = super::idle(&read)?;
    let subscription = super::subscription(config, service::topics(), &read, DEFAULT_GROUP)?;
    let mut worker = Worker::new();
    if !read.from_beginning {
        // The rebuild gets a bus of its own: it subscribes a throwaway group and stops the bus.
        let state_bus = crate::open_bus(config, crate::Outbox::None).await?;
        let group = &subscription.group;
        let rebuilt =
            service::warm_up(state_bus, &mut worker, group, service::WARM_UP_LIMIT, shutdown_signal()).await?;
        tracing::info!(rebuilt, "Recommender state rebuilt from the events the group already handled");
    }
    let bus = crate::open_bus(config, crate::Outbox::IfFree).await?;
    let (handler, mut inbox) = inbox();
    bus.subscribe(subscription, handler).await?;
    let (mut consumed, mut issued) = (0u64, 0u64);
    let mut out = std::io::stdout().lock();
    let end = loop {
        if read.max.is_some_and(|max| consumed >= max) {
            break End::Max;
        }
        let delivery = match inbox.next(idle).await {
            Ok(delivery) => delivery,
            Err(end) => break end,
        };
        match worker.handle(bus.as_ref(), &delivery.message).await {
            Ok(recommendations) => {
                for recommendation in &recommendations {
                    // A closed stdout does not stop the recommender: the recommendation is published.
                    let _ = writeln!(out, "{recommendation}");
                }
                issued += recommendations.len() as u64;
                consumed += 1;
                delivery.ack();
            }
            Err(error) => delivery.fail(error.into()),
        }
    };
    drop(out);
    inbox.close(bus.as_ref()).await?;
    say!("Consumed {consumed} event(s), issued {issued} recommendation(s) ({end:?})");
    Ok(())
}
