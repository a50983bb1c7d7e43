//! The envelope: the seed's flat `EventSchema`, its CloudEvents 1.0 mapping, and masking of
//! personal data for logs.

mod cloudevents;
mod mask;
mod object;
mod schema;
mod unique;

pub use cloudevents::{CloudEvent, Header, SPEC_VERSION, binary_headers, from_binary, to_binary};
pub(crate) use mask::mask_map;
pub use mask::masked;
pub use object::JsonObject;
pub use schema::{DEFAULT_SOURCE, DEFAULT_VERSION, EventId, EventSchema, EventType};
pub use unique::repeated_field;

/// Why a document is not a valid event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes are not JSON of the expected shape. The message says where; fix the producer.
    #[error("invalid event JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A field that this form requires is missing or empty.
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    /// A CloudEvent carries a `specversion` other than 1.0; only 1.0 is understood.
    #[error("unsupported CloudEvents specversion `{0}`, expected 1.0")]
    UnsupportedSpecVersion(String),
    /// A CloudEvents attribute has the wrong form, e.g. a time that is not RFC 3339.
    #[error("invalid CloudEvents attribute `{name}`: {reason}")]
    InvalidAttribute {
        /// The attribute's name, e.g. `time` or `nexummetadata`.
        name: String,
        /// What is wrong with its value.
        reason: String,
    },
}
