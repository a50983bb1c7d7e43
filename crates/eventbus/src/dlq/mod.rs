//! Dead letters: what a subscription could not handle, and what operators do about it.
//!
//! A dead-letter topic (`<topic>.dlq`, one partition) is the whole durable state: the letters
//! written when records fail, the records parked behind them, operators' requests with who asked
//! and from where, and how each letter ended ([`letter`]). [`Book`] folds those records into the
//! state of each letter, the same way in the running subscription and at the operator's console.
//! [`console`] lists letters by a [`Filter`] and asks for redrives and discards; the subscription
//! of the letter's group carries them out.

pub mod book;
pub mod console;
pub mod letter;

pub use book::{Book, HistoryEntry, Letter, LetterState};
pub use console::{Acted, Action, DlqError, Filter, StateFilter, load, request};
pub use letter::{Actor, DEAD_LETTERED, FailureKind, Outcome, Place};
