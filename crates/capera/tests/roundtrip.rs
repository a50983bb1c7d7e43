//! Encode/decode round trips of recommendations: as JSON, and inside their event on the wire.

use capera::{Recommendation, Rule};
use chrono::{DateTime, TimeZone, Utc};
use eventbus::{EventId, EventSchema};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn rule() -> impl Strategy<Value = Rule> {
    prop::sample::select(Rule::ALL.to_vec())
}

fn decimal_string() -> impl Strategy<Value = String> {
    (any::<i64>(), 0u32..=8).prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale).to_string())
}

fn recommendation() -> impl Strategy<Value = Recommendation> {
    (
        rule(),
        "[a-zA-Z0-9_.-]{1,24}",
        any::<String>(),
        prop::collection::btree_map("[a-z_]{1,20}", decimal_string(), 0..8),
        "[a-zA-Z0-9-]{1,40}",
    )
        .prop_map(|(rule, subject_id, reason, inputs, trigger)| {
            let triggered_by: EventId = trigger.parse().unwrap();
            Recommendation {
                recommendation_id: Recommendation::derive_id(rule, &triggered_by),
                subject_type: rule.subject_type(),
                subject_id,
                rule,
                action: rule.action(),
                reason,
                inputs,
                triggered_by,
            }
        })
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_102_444_800, 0u32..1_000_000).prop_map(|(secs, micros)| Utc.timestamp_opt(secs, micros * 1_000).unwrap())
}

proptest! {
    #[test]
    fn a_recommendation_survives_json(r in recommendation()) {
        // Given any recommendation, when it is written as JSON and read back, then it is unchanged
        let json = serde_json::to_string(&r).unwrap();
        prop_assert_eq!(serde_json::from_str::<Recommendation>(&json).unwrap(), r);
    }

    #[test]
    fn a_recommendation_survives_its_event_on_the_wire(r in recommendation(), at in timestamp()) {
        // Given any recommendation published as its event
        let event = r.to_event(at);
        // When the event goes over the wire as flat JSON and is read back
        let received = EventSchema::from_json(&event.to_json()).unwrap();
        // Then the envelope and the recommendation are unchanged
        prop_assert_eq!(&received, &event);
        prop_assert_eq!(received.timestamp, Some(at));
        prop_assert_eq!(received.event_id.as_ref(), Some(&r.recommendation_id));
        prop_assert_eq!(Recommendation::from_event(&received).unwrap(), r);
    }

    #[test]
    fn every_figure_in_the_inputs_is_a_decimal_string(r in recommendation()) {
        // Given any recommendation, then its inputs travel as a JSON object of strings
        let value = serde_json::to_value(&r).unwrap();
        let inputs = value["inputs"].as_object().unwrap();
        prop_assert!(inputs.values().all(|v| v.as_str().is_some_and(|s| eventbus::money::parse_amount(s).is_ok())));
    }
}

#[test]
fn an_unknown_rule_is_refused_and_an_unknown_field_tolerated() {
    // Given the JSON of a recommendation
    let json = serde_json::json!({
        "recommendation_id": "r-1", "subject_type": "account", "subject_id": "acc_0001",
        "rule": "large_debit", "action": "review_transaction", "reason": "because",
        "inputs": {"amount": "10.00"}, "triggered_by": "e-1"
    });
    assert!(serde_json::from_value::<Recommendation>(json.clone()).is_ok());
    // When its rule is unknown, then it is refused
    let mut unknown_rule = json.clone();
    unknown_rule["rule"] = "hunch".into();
    assert!(serde_json::from_value::<Recommendation>(unknown_rule).is_err());
    // When a later version adds a field, then it is read all the same
    let mut extra = json;
    extra["score"] = "0.5".into();
    assert!(serde_json::from_value::<Recommendation>(extra).is_ok());
}
