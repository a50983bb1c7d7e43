//! The Capera flow from the command line: the recommender resumes after a restart, and the demo's
//! replay agrees with its live run on embedded and on Kafka.

mod common;

use common::*;

#[test]
fn a_restart_after_a_duplicate_event_rebuilds_state_and_resumes() {
    // Given a group that handled five events, one of them published twice with the same id
    let env = Env::new();
    let output = env.run(&["produce", "bank-transactions", "--count", "5", "--rate", "0", "--seed", "3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let tail = env.run(&["tail", "bank.transactions", "--from-beginning", "--max", "1", "--idle-exit", "5"]);
    let duplicate = stdout(&tail);
    assert!(env.run_with_stdin(&["publish", "bank.transactions"], &duplicate).status.success());
    let first = env.run(&["consume", "recommendations", "--group", "g", "--idle-exit", "1"]);
    assert!(first.status.success(), "{}", stderr(&first));
    // When the consumer starts again
    let second = env.run(&["consume", "recommendations", "--group", "g", "--idle-exit", "1"]);
    // Then it rebuilds its state and finds nothing new
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stderr(&second).contains("Consumed 0 event(s)"), "{}", stderr(&second));
}

#[test]
fn the_demo_runs_end_to_end_and_its_replay_agrees_on_embedded_and_kafka() {
    let env = Env::new();
    let output = env.run(&["demo", "--events", "200"]);
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("identical to the live run"), "{}", stdout(&output));
    assert!(stdout(&output).contains("exactly the 200 new ones"), "{}", stdout(&output));

    let flags = kafka(&env);
    let args = with(&flags, &["demo", "--events", "200"]);
    let output = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("identical to the live run"), "{}", stdout(&output));
}
