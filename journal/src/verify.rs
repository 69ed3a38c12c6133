//! Read-only verification of a whole journal directory, for operators and auditors: every record's
//! checksum and sequence, and nothing but zeros after the end. It never modifies a file.

use std::path::Path;

use crate::error::{CorruptKind, JournalError, Location, Result};
use crate::format::{capacity, segment_path, SEGMENT_HEADER_LEN};
use crate::reader::Reader;
use crate::scan::first_nonzero;
use crate::segment::list_segments;

/// What a clean journal holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub segments: u64,
    pub segment_size: u64,
    pub records: u64,
    pub first_sequence: Option<u64>,
    pub last_sequence: Option<u64>,
    /// Position after the last record.
    pub end_position: u64,
    pub payload_bytes: u64,
}

/// Verifies every record in `dir`; the first problem is an error naming its place.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let indexes = list_segments(dir)?;
    let Some(&first) = indexes.first() else {
        return Err(JournalError::Config(format!(
            "no journal segments in {}",
            dir.display()
        )));
    };
    for (i, &index) in indexes.iter().enumerate() {
        if index != first + i as u64 {
            let missing = first + i as u64;
            return Err(JournalError::Corrupt {
                kind: CorruptKind::MissingSegment,
                location: Location {
                    path: segment_path(dir, missing),
                    segment_index: missing,
                    file_offset: 0,
                    position: 0,
                },
            });
        }
    }
    let mut reader = Reader::open(dir)?;
    let segment_size = reader.segment_size();
    let capacity = capacity(segment_size);
    let mut report = VerifyReport {
        segments: indexes.len() as u64,
        segment_size,
        ..VerifyReport::default()
    };
    while let Some(record) = reader.next_record()? {
        report.records += 1;
        report.first_sequence.get_or_insert(record.meta.sequence);
        report.last_sequence = Some(record.meta.sequence);
        report.payload_bytes += record.payload.len() as u64;
    }
    report.end_position = reader.position();
    // After the end: zeros to the end of that segment; later segments may exist (prepared) but empty.
    let end_segment = report.end_position / capacity;
    for &index in indexes.iter().filter(|&&i| i >= end_segment) {
        let path = segment_path(dir, index);
        let bytes = std::fs::read(&path).map_err(|e| JournalError::io(&path, e))?;
        let from = if index == end_segment {
            SEGMENT_HEADER_LEN + report.end_position % capacity
        } else {
            crate::segment::validate_header(&bytes, &path, index, Some(segment_size))?;
            SEGMENT_HEADER_LEN
        };
        if let Some(at) = first_nonzero(&bytes[from as usize..]) {
            let file_offset = from + at as u64;
            return Err(JournalError::Corrupt {
                kind: CorruptKind::GarbageAfterEnd,
                location: Location {
                    path,
                    segment_index: index,
                    file_offset,
                    position: index * capacity + file_offset - SEGMENT_HEADER_LEN,
                },
            });
        }
    }
    Ok(report)
}
