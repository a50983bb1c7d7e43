//! Determinism under replay: the recommender gives the same recommendations for any delivery
//! order that keeps each key's order, as a consumer group replaying partitions would see.

use std::collections::BTreeMap;

use capera::{BankTransactionSimulator, MarketPriceSimulator, Recommendation, Recommender, Rule};
use chrono::{DateTime, Duration, TimeZone, Utc};
use eventbus::{EventSchema, Topic, partition_for_key};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const EVENTS_PER_FEED: usize = 3_000;

/// One delivered message: its topic, key and event.
#[derive(Clone)]
struct Delivered {
    topic: Topic,
    key: String,
    event: EventSchema,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 6, 9, 0, 0).unwrap()
}

/// Given: 3000 bank transactions over 40 accounts and 3000 price updates over 6 instruments,
/// produced side by side, one of each per minute.
fn produce(seed: u64) -> (Vec<Delivered>, Vec<Delivered>) {
    let mut bank = BankTransactionSimulator::new(seed, 40);
    let mut market = MarketPriceSimulator::new(seed, 6);
    let (mut transactions, mut prices) = (Vec::new(), Vec::new());
    for i in 0..EVENTS_PER_FEED {
        let at = start() + Duration::minutes(i as i64);
        let (key, event) = bank.next_event(at);
        transactions.push(Delivered { topic: BankTransactionSimulator::TOPIC, key, event });
        let (key, event) = market.next_event(at);
        prices.push(Delivered { topic: MarketPriceSimulator::TOPIC, key, event });
    }
    (transactions, prices)
}

/// The messages of each partition of each topic, in order, as a broker would hold them.
fn partitions(messages: &[Delivered]) -> Vec<Vec<Delivered>> {
    let mut logs: BTreeMap<(&str, u32), Vec<Delivered>> = BTreeMap::new();
    for m in messages {
        let partition = partition_for_key(m.key.as_bytes(), m.topic.partitions());
        logs.entry((m.topic.as_str(), partition.0)).or_default().push(m.clone());
    }
    logs.into_values().collect()
}

/// A random merge of the partitions: each partition keeps its order, nothing else does.
fn shuffle_partitions(messages: &[Delivered], seed: u64) -> Vec<Delivered> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut logs: Vec<std::collections::VecDeque<Delivered>> =
        partitions(messages).into_iter().map(Into::into).collect();
    let mut out = Vec::with_capacity(messages.len());
    while !logs.is_empty() {
        let i = rng.random_range(0..logs.len());
        // Consume a burst, as a consumer fetching a batch from one partition does.
        for _ in 0..rng.random_range(1..=50) {
            match logs[i].pop_front() {
                Some(m) => out.push(m),
                None => break,
            }
        }
        if logs[i].is_empty() {
            logs.swap_remove(i);
        }
    }
    out
}

/// When: a fresh recommender consumes the messages in this order. The recommendations come back
/// sorted, with the event each one publishes.
fn recommend(messages: &[Delivered]) -> Vec<(Recommendation, EventSchema)> {
    let mut recommender = Recommender::new();
    let mut out = Vec::new();
    for m in messages {
        for r in recommender.on_event(&m.event).expect("simulated events are valid") {
            assert_eq!(r.key(), m.key, "a recommendation is keyed like its trigger");
            let event = r.to_event(m.event.timestamp.unwrap());
            out.push((r, event));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn count(recommendations: &[(Recommendation, EventSchema)], rule: Rule) -> usize {
    recommendations.iter().filter(|(r, _)| r.rule == rule).count()
}

#[test]
fn any_order_that_keeps_each_keys_order_gives_the_same_recommendations() {
    let (transactions, prices) = produce(2025);

    // When the feeds are consumed in the order they were produced
    let produced: Vec<Delivered> = transactions.iter().zip(&prices).flat_map(|(t, p)| [t.clone(), p.clone()]).collect();
    let expected = recommend(&produced);

    // Then every rule fires at least once, at a plausible rate
    for rule in Rule::ALL {
        let n = count(&expected, rule);
        assert!(n > 0 && n < EVENTS_PER_FEED / 10, "{rule} fired {n} times");
    }

    // And every other order that keeps each key's order gives exactly the same recommendations
    let market_first: Vec<Delivered> = prices.iter().chain(&transactions).cloned().collect();
    let bank_first: Vec<Delivered> = transactions.iter().chain(&prices).cloned().collect();
    let partition_by_partition: Vec<Delivered> = partitions(&produced).into_iter().rev().flatten().collect();
    let mut orders = vec![market_first, bank_first, partition_by_partition];
    orders.extend((1..=3).map(|seed| shuffle_partitions(&produced, seed)));
    for (i, order) in orders.iter().enumerate() {
        assert_eq!(order.len(), produced.len());
        let replayed = recommend(order);
        assert_eq!(replayed.len(), expected.len(), "order {i}");
        assert!(replayed == expected, "order {i} gave other recommendations");
    }
}

#[test]
fn the_check_is_sensitive_to_a_broken_key_order() {
    // Given the produced feeds
    let (transactions, prices) = produce(7);
    let produced: Vec<Delivered> = transactions.iter().zip(&prices).flat_map(|(t, p)| [t.clone(), p.clone()]).collect();
    // When they are replayed backwards, which breaks every key's order
    let backwards: Vec<Delivered> = produced.iter().rev().cloned().collect();
    // Then the recommendations differ: per-key order is what determinism rests on
    assert_ne!(recommend(&backwards), recommend(&produced));
}

#[test]
fn rules_fire_on_every_seed_tried() {
    // Given several seeds, then each run produces every kind of recommendation
    for seed in [1, 42, 1234] {
        let (transactions, prices) = produce(seed);
        let all: Vec<Delivered> = transactions.into_iter().chain(prices).collect();
        let recommendations = recommend(&all);
        for rule in Rule::ALL {
            eprintln!("seed {seed}: {rule} fired {} times", count(&recommendations, rule));
            assert!(count(&recommendations, rule) > 0, "seed {seed}: {rule} never fired");
        }
    }
}
