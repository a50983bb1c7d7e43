//! Nexum core banking on the event bus.

pub mod domain;
pub mod events;
pub mod ids;
pub mod store;
