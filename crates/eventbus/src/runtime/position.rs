//! Where a group is in one partition: the watermark it committed, and the records above it that it
//! finished already.
//!
//! A subscription handles the records of different keys concurrently, so a record may finish
//! before an earlier one of another key. The committed offset never passes a record that is not
//! finished: it is the first unfinished offset (the watermark). The records finished above it are
//! committed beside it, so that after a restart only the unfinished ones are delivered again.
//! Kafka keeps them in the offset commit's metadata, the local stores in a column next to the
//! offset; both hold the same text, written by [`Position::finished_text`].

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::bus::Offset;

/// The longest text of finished offsets kept with a commit. Kafka brokers refuse metadata above
/// `offset.metadata.max.bytes` (4096 by default). Offsets that do not fit are left out: they are
/// delivered again after a restart, which at-least-once delivery allows.
pub const MAX_FINISHED_TEXT: usize = 2048;

/// A group's place in one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The next offset to deliver: the first one not finished.
    pub next: Offset,
    /// Offsets above `next` that are finished already and are not delivered again.
    pub finished: BTreeSet<u64>,
}

impl Position {
    /// The position `next` with nothing finished above it.
    pub fn at(next: Offset) -> Self {
        Self { next, finished: BTreeSet::new() }
    }

    /// The finished offsets as stored beside the committed offset: empty when there are none,
    /// else comma-separated runs relative to `next`, such as `1-3,7` for `next + 1` to `next + 3`
    /// and `next + 7`. At most [`MAX_FINISHED_TEXT`] characters; runs that do not fit are left out.
    pub fn finished_text(&self) -> String {
        let mut text = String::new();
        let mut runs = self.finished.iter().filter_map(|&o| o.checked_sub(self.next.0).filter(|d| *d > 0)).peekable();
        while let Some(start) = runs.next() {
            let mut end = start;
            while let Some(&next) = runs.peek().filter(|&&next| next == end + 1) {
                end = next;
                runs.next();
            }
            let mut run = String::new();
            let separator = if text.is_empty() { "" } else { "," };
            if start == end {
                let _ = write!(run, "{separator}{start}");
            } else {
                let _ = write!(run, "{separator}{start}-{end}");
            }
            if text.len() + run.len() > MAX_FINISHED_TEXT {
                break;
            }
            text.push_str(&run);
        }
        text
    }

    /// The position `next` with the finished offsets of `text` as [`Position::finished_text`]
    /// wrote it. A text that does not read as such (written by another program, or damaged)
    /// counts as nothing finished: those records are delivered again, never skipped.
    pub fn with_finished_text(next: Offset, text: &str) -> Self {
        let mut position = Self::at(next);
        if text.is_empty() {
            return position;
        }
        let mut finished = BTreeSet::new();
        for run in text.split(',') {
            let parsed = match run.split_once('-') {
                Some((start, end)) => start.parse::<u64>().ok().zip(end.parse::<u64>().ok()),
                None => run.parse::<u64>().ok().map(|single| (single, single)),
            };
            let Some((start, end)) = parsed.filter(|(start, end)| *start > 0 && start <= end) else {
                return position;
            };
            // A run longer than any commit could hold is not one this program wrote.
            if end - start > MAX_FINISHED_TEXT as u64 * 64 {
                return position;
            }
            for delta in start..=end {
                let Some(offset) = next.0.checked_add(delta) else { return position };
                finished.insert(offset);
            }
        }
        position.finished = finished;
        position
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn finished_offsets_are_written_as_runs_relative_to_the_watermark() {
        let position = Position { next: Offset(100), finished: [101, 102, 103, 107, 109, 110].into() };
        assert_eq!(position.finished_text(), "1-3,7,9-10");
        assert_eq!(Position::with_finished_text(Offset(100), "1-3,7,9-10"), position);
        assert_eq!(Position::at(Offset(5)).finished_text(), "");
    }

    #[test]
    fn a_text_this_program_did_not_write_finishes_nothing() {
        for text in ["x", "1-", "-3", "3-1", "0", "1,,2", "1-99999999999", "18446744073709551615"] {
            assert_eq!(
                Position::with_finished_text(Offset(u64::MAX - 2), text),
                Position::at(Offset(u64::MAX - 2)),
                "{text}"
            );
        }
    }

    #[test]
    fn a_text_too_long_for_a_commit_keeps_the_lowest_runs() {
        let finished: BTreeSet<u64> = (1..5000).map(|n| n * 2).collect();
        let position = Position { next: Offset(0), finished: finished.clone() };
        let text = position.finished_text();
        assert!(text.len() <= MAX_FINISHED_TEXT);
        let read = Position::with_finished_text(Offset(0), &text);
        assert!(!read.finished.is_empty());
        assert!(read.finished.iter().all(|o| finished.contains(o)));
        let highest = *read.finished.last().unwrap();
        assert!(finished.range(..=highest).all(|o| read.finished.contains(o)), "no gap below the last kept");
    }

    proptest! {
        /// Whatever is finished above the watermark, the text reads back as the same offsets when
        /// it fits, and never as an offset that was not finished.
        #[test]
        fn finished_offsets_read_back_as_written(
            next in 0u64..1_000_000,
            deltas in proptest::collection::btree_set(1u64..5000, 0..300),
        ) {
            let position = Position { next: Offset(next), finished: deltas.iter().map(|d| next + d).collect() };
            let read = Position::with_finished_text(Offset(next), &position.finished_text());
            prop_assert!(read.finished.is_subset(&position.finished));
            if position.finished_text().len() < MAX_FINISHED_TEXT - 24 {
                prop_assert_eq!(read, position);
            }
        }
    }
}
