//! What only the log backend does: one structured line per publish, with personal data masked.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::LogBus;
use crate::bus::EventBus;
use crate::envelope::EventSchema;
use crate::runtime::BusConfig;
use crate::topics::Topic;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_publish_is_logged_as_json_without_personal_data() {
    // Given a log bus whose lines are captured as JSON
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let bus = LogBus::log(BusConfig::default()).await.unwrap();
    bus.start().await.unwrap();
    // When a customer_created event with personal data is published
    let data = json!({"first_name": "John", "last_name": "Doe", "email": "john@example.com",
                      "phone": "+1234567890", "kyc_status": "verified"});
    let event = EventSchema::new("customer_created", "customer", "cust_123", data.as_object().unwrap().clone());
    bus.publish(&Topic::CustomersCreated.name(), event, None).await.unwrap();
    // Then one line carries the event's fields, masked
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = text.lines().find(|l| l.contains("Event published")).expect("a published line");
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["fields"]["topic"], "nexum.customers.created");
    assert_eq!(line["fields"]["event_type"], "customer_created");
    assert_eq!(line["fields"]["entity_id"], "cust_123");
    assert_eq!(line["target"], "eventbus::published");
    for secret in ["John", "Doe", "john@", "1234567890"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("verified"));
    // And the event is still delivered in-process
    assert_eq!(bus.status().await.unwrap().total_events, 1);
}
