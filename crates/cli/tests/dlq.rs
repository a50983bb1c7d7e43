//! `eventbus dlq` against a subscription running in another process on the same data directory:
//! find the failures, fix the cause, redrive, and check, as the README's operator's guide does.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use eventbus::{
    BusConfig, EmbeddedBus, EmbeddedConfig, EventBus, EventSchema, GroupId, HandlerError, Message, RetryPolicy,
    Subscription, TopicName, handler_fn,
};
use serde_json::{Value, json};

/// Runs the CLI off the async runtime.
async fn cli(env: &Arc<Env>, args: &[&str]) -> std::process::Output {
    let (env, args): (Arc<Env>, Vec<String>) = (Arc::clone(env), args.iter().map(|a| (*a).to_owned()).collect());
    tokio::task::spawn_blocking(move || env.run(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

async fn json_lines(env: &Arc<Env>, args: &[&str]) -> Vec<Value> {
    let output = cli(env, args).await;
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_the_failures_redrives_them_and_checks_from_the_command_line() {
    // Given a sequenced subscription in this process, on the CLI's data directory, whose handler
    // fails on acc_1's event 0 until the cause is fixed
    let env = Arc::new(Env::new());
    let bus =
        EmbeddedBus::embedded(BusConfig::default(), EmbeddedConfig::at(env.dir.path().join("data"))).await.unwrap();
    bus.start().await.unwrap();
    let topic = TopicName::new("ops.work").unwrap();
    bus.create_topic(&topic, 1).await.unwrap();
    let broken = Arc::new(AtomicBool::new(true));
    let handled: Arc<Mutex<Vec<u64>>> = Arc::default();
    let handler = {
        let (broken, handled) = (Arc::clone(&broken), Arc::clone(&handled));
        handler_fn(move |message: Message| {
            let (broken, handled) = (Arc::clone(&broken), Arc::clone(&handled));
            async move {
                let seq = message.event.data["seq"].as_u64().unwrap();
                if seq == 0 && broken.load(Ordering::SeqCst) {
                    return Err(HandlerError::msg("the ledger is down"));
                }
                handled.lock().unwrap().push(seq);
                Ok(())
            }
        })
    };
    let retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
    };
    let subscription =
        Subscription::new(topic.clone(), GroupId::new("ops-worker").unwrap()).with_retry(retry).sequenced();
    bus.subscribe(subscription, handler).await.unwrap();
    for seq in 0..3u64 {
        let data = json!({"seq": seq}).as_object().unwrap().clone();
        bus.publish(&topic, EventSchema::new("work_requested", "account", "acc_1", data), None).await.unwrap();
    }

    // When the operator lists the open letters of the topic
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = json_lines(&env, &["dlq", "list", "--topic", "ops.work", "--format", "json"]).await;
        if letters.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Then the failed event heads them, with its error, and the two after it are parked behind it
    let states: Vec<&str> = letters.iter().map(|l| l["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["failed", "parked", "parked"], "{letters:?}");
    assert_eq!(letters[0]["error"], "the ledger is down");
    let head = letters[0]["id"].as_str().unwrap().to_owned();
    let table = cli(&env, &["dlq", "list", "--state", "failed", "--error", "LEDGER"]).await;
    assert!(stdout(&table).contains(&head) && stdout(&table).contains("1 letters"), "{}", stdout(&table));
    let shown: Value = serde_json::from_str(&stdout(&cli(&env, &["dlq", "show", &head]).await)).unwrap();
    assert_eq!(shown["original"]["data"]["seq"], 0);
    assert_eq!(shown["group"], "ops-worker");

    // And requests it cannot carry out are refused with the reason
    for (args, reason) in [
        (&["dlq", "show", "nope"][..], "no dead letter `nope`"),
        (&["dlq", "list", "--since", "yesterday"][..], "RFC 3339"),
        (&["dlq", "list", "--state", "stuck"][..], "unknown state `stuck`"),
        (&["dlq", "redrive"][..], "--all"),
        (&["dlq", "redrive", letters[1]["id"].as_str().unwrap()][..], "parked behind"),
    ] {
        let output = cli(&env, args).await;
        assert!(!output.status.success(), "{args:?} must fail");
        assert!(stderr(&output).contains(reason), "{args:?}: {}", stderr(&output));
    }
    assert!(handled.lock().unwrap().iter().all(|seq| *seq != 0));

    // When the cause is fixed and every failed letter of the topic is redriven
    broken.store(false, Ordering::SeqCst);
    let dry = cli(&env, &["dlq", "redrive", "--all", "--topic", "ops.work", "--state", "failed", "--dry-run"]).await;
    assert!(stdout(&dry).contains("1 letters (dry run"), "{}", stdout(&dry));
    let redrive = cli(&env, &["dlq", "redrive", "--all", "--topic", "ops.work", "--state", "failed"]).await;
    assert!(redrive.status.success() && stdout(&redrive).contains("1 of 1 letters"), "{}", stdout(&redrive));

    // Then the three events are handled once each, in order, and every letter is resolved
    let mut resolved = Vec::new();
    for _ in 0..100 {
        resolved =
            json_lines(&env, &["dlq", "list", "--topic", "ops.work", "--state", "resolved", "--format", "json"]).await;
        if resolved.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(resolved.len(), 3, "{resolved:?}");
    assert_eq!(*handled.lock().unwrap(), [0, 1, 2]);
    let shown: Value = serde_json::from_str(&stdout(&cli(&env, &["dlq", "show", &head]).await)).unwrap();
    assert_eq!((shown["outcome"].as_str(), shown["redrive_count"].as_u64()), (Some("redriven"), Some(1)));
    let request =
        shown["history"].as_array().unwrap().iter().find(|h| h["event"] == "dead_letter_redrive_requested").unwrap();
    assert!(
        request["actor"].as_str().unwrap().ends_with("(cli)")
            && request["address"].as_str().unwrap().starts_with("cli@")
    );
    bus.stop().await.unwrap();
}
