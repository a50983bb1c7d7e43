//! `eventbus replay`: moves a group's committed offsets, like
//! `kafka-consumer-groups --reset-offsets --execute`.

use eventbus::{GroupId, StartPosition};

use crate::config::Config;

pub async fn run(config: &Config, group: &str, topic: &str, to: &str) -> anyhow::Result<()> {
    let group = GroupId::new(group)?;
    let topic = super::topic(topic)?;
    let to: StartPosition = to.parse()?;
    if to == StartPosition::Committed {
        anyhow::bail!("--to committed would change nothing; use earliest, latest, offset:N or time:RFC3339");
    }
    let bus = crate::open_bus(config, crate::Outbox::None).await?;
    let offsets = bus.reset_offsets(&group, &topic, to).await?;
    println!("{:<8}  {:>12}  {:>10}", "PARTITION", "NEW-OFFSET", "LAG");
    for o in &offsets {
        println!("{:<9}  {:>12}  {:>10}", o.partition, o.offset, o.lag);
    }
    println!("Group {group} on {topic}: {} events to (re)consume", offsets.iter().map(|o| o.lag).sum::<u64>());
    bus.stop().await?;
    Ok(())
}
