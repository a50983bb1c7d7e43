//! `eventbus topics list|create|describe`.

use crate::cli::Topics;
use crate::config::Config;

pub async fn run(config: &Config, command: Topics) -> anyhow::Result<()> {
    let bus = crate::open_bus(config, crate::Outbox::None).await?;
    match command {
        Topics::List => {
            let topics = bus.list_topics().await?;
            let width = topics.iter().map(|t| t.name.as_str().len()).max().unwrap_or(5).max(5);
            println!("{:width$}  {:>10}  {:>10}", "TOPIC", "PARTITIONS", "EVENTS");
            for topic in topics {
                println!("{:width$}  {:>10}  {:>10}", topic.name, topic.partitions.len(), topic.retained());
            }
        }
        Topics::Create { topic, partitions } => {
            let name = super::topic(&topic)?;
            bus.create_topic(&name, partitions).await?;
            println!("Created topic {name} with {partitions} partition(s), and {}", name.dlq());
        }
        Topics::Describe { topic } => {
            let description = bus.describe_topic(&super::topic(&topic)?).await?;
            println!("Topic: {}\tPartitionCount: {}", description.name, description.partitions.len());
            for p in &description.partitions {
                println!("\tPartition: {}\tEarliest: {}\tLatest: {}", p.partition, p.earliest, p.latest);
            }
        }
    }
    bus.stop().await?;
    Ok(())
}
