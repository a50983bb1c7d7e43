//! The log on disk: what is synced reads back in order across segments and reopenings; a torn
//! end is cut off, damage before it is refused, and what the broker acknowledged is deleted.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;

use super::{Frames, Log, OnWritten, Reader, SEGMENT_BYTES, record, segments};
use crate::kafka::OutboxError;

fn entry(n: u64, size: usize) -> Vec<u8> {
    let mut bytes = format!("entry {n} ").into_bytes();
    bytes.resize(bytes.len() + size, b'x');
    bytes
}

/// Opens a log that hands nothing over.
fn open(dir: &Path) -> Result<(Log<()>, u64), OutboxError> {
    let on_written: OnWritten<()> = Box::new(|_, (), _| {});
    Log::open(dir, on_written)
}

fn frames(entries: &[Vec<u8>]) -> Frames {
    let mut frames = Frames::default();
    for entry in entries {
        frames.push(|buffer| buffer.extend_from_slice(entry)).unwrap();
    }
    frames
}

fn read_all(dir: &Path, log: &Log<()>, from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut reader = Reader::new(dir);
    let mut all = Vec::new();
    let mut next = from;
    loop {
        let read = reader.read(next, log.synced(), 7).unwrap();
        let Some((last, _)) = read.last() else { return all };
        next = last + 1;
        all.extend(read.into_iter().map(|(offset, bytes)| (offset, bytes.to_vec())));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Appends `entries` five at a time (an append goes whole into one segment); returns the range.
fn append(log: &Log<()>, entries: &[Vec<u8>]) -> std::ops::Range<u64> {
    let runtime = runtime();
    let ranges: Vec<_> =
        entries.chunks(5).map(|chunk| runtime.block_on(log.append(frames(chunk), ())).unwrap()).collect();
    ranges[0].start..ranges[ranges.len() - 1].end
}

#[test]
fn entries_read_back_in_order_across_segments_and_a_reopening() {
    // Given a log with more entries than one segment holds
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (0..40).map(|n| entry(n, 300)).collect();
    {
        let (log, cursor) = open(dir.path()).unwrap();
        assert_eq!(cursor, 0);
        let range = append(&log, &written[..25]);
        assert_eq!(range, 0..25);
        assert!(segments(dir.path()).unwrap().len() > 1, "segments of {SEGMENT_BYTES} bytes rolled over");
    }
    // When it is opened again and more are appended
    let (log, _) = open(dir.path()).unwrap();
    let range = append(&log, &written[25..]);

    // Then the offsets go on, and every entry reads back in order at its offset
    assert_eq!(range, 25..40);
    let read = read_all(dir.path(), &log, 0);
    assert_eq!(read, written.iter().cloned().enumerate().map(|(n, e)| (n as u64, e)).collect::<Vec<_>>());
    // And a read from the middle starts there
    assert_eq!(read_all(dir.path(), &log, 31)[0], (31, written[31].clone()));
}

#[test]
fn a_torn_frame_at_the_end_is_cut_off_and_the_entries_before_it_are_kept() {
    // Given a log whose last write was cut short by a crash
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (0..3).map(|n| entry(n, 10)).collect();
    {
        let (log, _) = open(dir.path()).unwrap();
        runtime().block_on(log.append(frames(&written), ())).unwrap();
    }
    let (_, last) = segments(dir.path()).unwrap().pop().unwrap();
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();

    // When it is opened again
    let (log, _) = open(dir.path()).unwrap();

    // Then the three synced entries are there and the next append follows them
    let range = runtime().block_on(log.append(frames(&[entry(3, 10)]), ())).unwrap();
    assert_eq!(range, 3..4);
    let read: Vec<Vec<u8>> = read_all(dir.path(), &log, 0).into_iter().map(|(_, e)| e).collect();
    assert_eq!(read, [written, vec![entry(3, 10)]].concat());
}

#[test]
fn damage_before_the_last_segment_is_refused_rather_than_skipped() {
    // Given a log of several segments, one byte of the first flipped
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = open(dir.path()).unwrap();
        let written: Vec<Vec<u8>> = (0..40).map(|n| entry(n, 300)).collect();
        append(&log, &written);
    }
    let (_, first) = segments(dir.path()).unwrap().remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[30] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();

    // When it is opened again
    let opened = open(dir.path());

    // Then opening fails and says where
    match opened {
        Err(OutboxError::Corrupt { path, .. }) => assert_eq!(path, first),
        other => panic!("expected damage to be refused, got {:?}", other.map(|(_, c)| c)),
    }
}

#[test]
fn what_the_broker_acknowledged_is_deleted_and_not_read_again() {
    // Given a log of several segments
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (0..40).map(|n| entry(n, 300)).collect();
    let before = {
        let (log, _) = open(dir.path()).unwrap();
        append(&log, &written);
        let before = segments(dir.path()).unwrap().len();
        // When the broker acknowledged the first 30
        record(dir.path(), 30).unwrap();
        before
    };

    // Then the segments it acknowledged in full are deleted
    let after = segments(dir.path()).unwrap();
    assert!(after.len() < before, "{} segments before, {} after", before, after.len());
    assert!(after[0].0 <= 30, "the segment holding entry 30 is kept");
    // And a reopened log starts at the first entry not acknowledged, with everything after it
    let (log, cursor) = open(dir.path()).unwrap();
    assert_eq!(cursor, 30);
    let read = read_all(dir.path(), &log, cursor);
    assert_eq!(read.iter().map(|(o, _)| *o).collect::<Vec<_>>(), (30..40).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the sizes of the appends and of their entries, and wherever the log is closed
    /// and opened again, every entry reads back once, in order, at consecutive offsets.
    #[test]
    fn every_entry_reads_back_once_in_order_whatever_the_appends_and_reopenings(
        appends in proptest::collection::vec(
            (proptest::collection::vec(0usize..900, 1..12), any::<bool>()), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let mut log = open(dir.path()).unwrap().0;
        let mut written = Vec::new();
        for (sizes, reopen) in appends {
            let entries: Vec<Vec<u8>> =
                sizes.iter().map(|size| entry(written.len() as u64, *size)).collect();
            let first = written.len() as u64;
            let range = runtime.block_on(log.append(frames(&entries), ())).unwrap();
            prop_assert_eq!(range, first..first + entries.len() as u64);
            written.extend(entries);
            if reopen {
                drop(log);
                log = open(dir.path()).unwrap().0;
            }
        }
        let read: Vec<Vec<u8>> = read_all(dir.path(), &log, 0).into_iter().map(|(_, e)| e).collect();
        prop_assert_eq!(read, written);
    }
}
