//! `eventbus groups list|describe|delete`: every group and how far behind it is, where one group
//! stands in each partition, or forgetting it.

use eventbus::GroupId;

use crate::cli::Groups;
use crate::config::Config;

pub async fn run(config: &Config, command: Groups) -> anyhow::Result<()> {
    let (group, topic) = match command {
        Groups::List => return list(config).await,
        Groups::Describe { group, topic } => (group, topic),
        Groups::Delete { group } => {
            let group = GroupId::new(group)?;
            let bus = crate::open_bus(config, crate::Outbox::None).await?;
            bus.delete_group(&group).await?;
            bus.stop().await?;
            println!("Deleted group {group}");
            return Ok(());
        }
    };
    let group = GroupId::new(group)?;
    let bus = crate::open_bus(config, crate::Outbox::None).await?;
    let topics = if topic.is_empty() {
        bus.list_topics().await?.into_iter().map(|t| t.name).collect()
    } else {
        topic.iter().map(|t| super::topic(t)).collect::<anyhow::Result<Vec<_>>>()?
    };
    let mut rows = Vec::new();
    for topic in topics {
        let description = bus.describe_topic(&topic).await?;
        for offset in bus.group_offsets(&group, &topic).await? {
            let end = description.partitions.iter().find(|p| p.partition == offset.partition).map_or(0, |p| p.latest.0);
            rows.push((topic.clone(), offset.partition, offset.offset, end, offset.lag));
        }
    }
    bus.stop().await?;
    if rows.is_empty() {
        anyhow::bail!("group `{group}` has no committed offsets");
    }
    let width = rows.iter().map(|r| r.0.as_str().len()).max().unwrap_or(5).max(5);
    println!(
        "{:width$}  {:>9}  {:>14}  {:>14}  {:>8}",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
    );
    for (topic, partition, offset, end, lag) in &rows {
        println!("{topic:width$}  {partition:>9}  {offset:>14}  {end:>14}  {lag:>8}");
    }
    println!("Group {group}: total lag {}", rows.iter().map(|r| r.4).sum::<u64>());
    Ok(())
}

async fn list(config: &Config) -> anyhow::Result<()> {
    let bus = crate::open_bus(config, crate::Outbox::None).await?;
    let groups = bus.list_groups().await;
    bus.stop().await?;
    let groups = groups?;
    let width = groups.iter().map(|g| g.group.as_str().len()).max().unwrap_or(5).max(5);
    println!("{:width$}  {:>6}  {:>8}", "GROUP", "TOPICS", "LAG");
    for group in &groups {
        println!("{:width$}  {:>6}  {:>8}", group.group.as_str(), group.topics.len(), group.lag);
    }
    println!("{} group(s)", groups.len());
    Ok(())
}
