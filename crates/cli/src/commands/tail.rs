//! `eventbus tail`: prints a topic's events, like `kcat -C`.

use std::io::Write;

use eventbus::Message;

use crate::cli::{Format, ReadOptions};
use crate::config::Config;
use crate::inbox::{End, inbox};

pub async fn run(config: &Config, topic: &str, read: &ReadOptions, format: Format) -> anyhow::Result<()> {
    let topic = super::topic(topic)?;
    let idle = super::idle(read)?;
    let bus = crate::open_bus(config, crate::Outbox::None).await?;
    let (handler, mut inbox) = inbox();
    let subscription = super::subscription(config, vec![topic], read, "eventbus-tail")?.watch_only();
    let throwaway = read.group.is_none().then(|| subscription.group.clone());
    bus.subscribe(subscription, handler).await?;
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let end = loop {
        if read.max.is_some_and(|max| printed >= max) {
            break End::Max;
        }
        match inbox.next(idle).await {
            Ok(delivery) => {
                let line = match format {
                    Format::Json => serde_json::to_string(&*delivery.message.event)?,
                    Format::Pretty => pretty(&delivery.message),
                };
                // A closed pipe (`| head`) ends the tail; the message is not acknowledged.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    break End::Interrupted;
                }
                delivery.ack();
                printed += 1;
            }
            Err(end) => break end,
        }
    };
    drop(out);
    inbox.close(bus.as_ref()).await?;
    if let Some(group) = throwaway {
        // A tail without --group leaves no group behind.
        if let Err(error) = bus.delete_group(&group).await {
            tracing::warn!(%group, %error, "Cannot delete the tail's throwaway group");
        }
    }
    tracing::info!(printed, ?end, "Tail finished");
    Ok(())
}

fn pretty(message: &Message) -> String {
    let event = &message.event;
    let time = event.timestamp.map(|t| t.to_rfc3339()).unwrap_or_default();
    format!(
        "{}/{}@{} key={} {} {} {}/{} {}",
        message.topic,
        message.partition,
        message.offset,
        message.key.as_deref().unwrap_or("-"),
        time,
        event.event_type,
        event.entity_type,
        event.entity_id,
        event.data.to_value()
    )
}
