//! Nexum core banking on the event bus.
//!
//! # Layout
//!
//! - `domain`: the small vocabularies of the domain (`KycStatus`, `TransactionType`, ...).
//! - `ids`: typed entity ids (`AccountId`, `CustomerId`, ...).
//! - `events`: the catalog of event types and their typed payloads, to and from the envelope.
//! - `schemas`: the JSON Schema of each event type and major version, and their validation.

pub mod domain;
pub mod events;
pub mod ids;
pub mod schemas;
