#![allow(dead_code)]
//! Helpers shared by the journal's integration tests.

use journal::{Journal, JournalConfig, Reader, RecordMeta};
use std::path::Path;

/// Smallest segment size: many rolls with few records.
pub const SMALL_SEGMENT: u64 = 64 * 1024;

pub fn config(dir: &Path, segment_size: u64) -> JournalConfig {
    let mut config = JournalConfig::new(dir);
    config.segment_size = segment_size;
    config.populate = false;
    config
}

pub fn meta(sequence: u64) -> RecordMeta {
    RecordMeta {
        record_type: 1 + (sequence % 7) as u16,
        flags: (sequence % 3) as u16,
        sequence,
        term: 1 + sequence / 1000,
        timestamp_ns: 1_700_000_000_000_000_000 + sequence * 17,
    }
}

/// A payload determined by its sequence number, so a reader can check it without the writer's copy.
pub fn payload(sequence: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (sequence as usize * 31 + i * 7) as u8)
        .collect()
}

/// Everything a reader sees from the start: (meta, payload, position, next position).
pub fn read_all(dir: &Path) -> Vec<(RecordMeta, Vec<u8>, u64, u64)> {
    let mut reader = Reader::open(dir).expect("reader opens");
    let mut records = Vec::new();
    while let Some(record) = reader.next_record().expect("no corrupt record") {
        records.push((
            record.meta,
            record.payload.to_vec(),
            record.position,
            record.next_position,
        ));
    }
    records
}

pub fn append_n(
    journal: &mut Journal,
    first: u64,
    count: u64,
    len_of: impl Fn(u64) -> usize,
) -> Vec<u64> {
    (first..first + count)
        .map(|s| {
            journal
                .append(&meta(s), &payload(s, len_of(s)))
                .expect("append")
        })
        .collect()
}
