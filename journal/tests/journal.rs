//! Scenario tests of the journal: appends, rolls, reopen, errors, recovery, repair, durability.

mod common;

use common::*;
use journal::{
    CorruptKind, Journal, JournalConfig, JournalError, Reader, RecordMeta, SyncPolicy,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use std::fs;
use std::os::unix::fs::FileExt;

fn segment_file(dir: &std::path::Path, index: u64) -> std::path::PathBuf {
    dir.join(journal::format::segment_file_name(index))
}

#[test]
fn append_then_read_back_exact_records_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    assert_eq!(journal.position(), 0);
    let ends = append_n(&mut journal, 1, 3, |s| s as usize * 10);
    // 40-byte header + 10/20/30 bytes, each rounded up to 8.
    assert_eq!(ends, vec![56, 56 + 64, 56 + 64 + 72]);
    let records = read_all(dir.path());
    assert_eq!(records.len(), 3);
    for (i, (m, p, position, next)) in records.iter().enumerate() {
        let s = i as u64 + 1;
        assert_eq!(*m, meta(s));
        assert_eq!(*p, payload(s, s as usize * 10));
        assert_eq!(*next, ends[i]);
        assert_eq!(*position, if i == 0 { 0 } else { ends[i - 1] });
    }
    assert_eq!(journal.last_sequence(), 3);
}

#[test]
fn exact_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let meta = RecordMeta {
        record_type: 2,
        flags: 1,
        sequence: 9,
        term: 3,
        timestamp_ns: 1000,
    };
    journal.append(&meta, b"abc").unwrap();
    drop(journal);
    let bytes = fs::read(segment_file(dir.path(), 0)).unwrap();
    assert_eq!(&bytes[..8], b"EXJRNL\r\n");
    let record = &bytes[SEGMENT_HEADER_LEN as usize..SEGMENT_HEADER_LEN as usize + 48];
    // checksum | frame length 43 | type 2 | flags 1 | reserved | sequence 9 | term 3 | time 1000 | "abc" | pad
    let covered: Vec<u8> = [
        &43u32.to_le_bytes()[..],
        &2u16.to_le_bytes(),
        &1u16.to_le_bytes(),
        &0u32.to_le_bytes(),
        &9u64.to_le_bytes(),
        &3u64.to_le_bytes(),
        &1000u64.to_le_bytes(),
        b"abc",
    ]
    .concat();
    let mut expected = crc32c::crc32c(&covered).to_le_bytes().to_vec();
    expected.extend_from_slice(&covered);
    expected.extend_from_slice(&[0; 5]);
    assert_eq!(record, &expected[..]);
}

#[test]
fn records_roll_across_segments_with_padding_and_reopen_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = SMALL_SEGMENT - SEGMENT_HEADER_LEN;
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    // 1000-byte payloads: 1040-byte frames; a segment holds 59 of them with 884 bytes of padding.
    let ends = append_n(&mut journal, 1, 200, |_| 1000);
    let per_segment = capacity / 1040;
    assert_eq!(ends[per_segment as usize - 1], per_segment * 1040);
    assert_eq!(
        ends[per_segment as usize],
        capacity + 1040,
        "the next record starts the next segment"
    );
    assert_eq!(journal.stats().segment_rolls, 3);
    assert!(journal.stats().roll_stalls <= journal.stats().segment_rolls);
    let end = journal.position();
    drop(journal);

    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    assert!(journal.recovery().is_none());
    assert_eq!(journal.position(), end);
    assert_eq!(journal.last_sequence(), 200);
    append_n(&mut journal, 201, 10, |_| 1000);
    let records = read_all(dir.path());
    assert_eq!(records.len(), 210);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.0 == meta(i as u64 + 1) && r.1 == payload(i as u64 + 1, 1000)));
}

#[test]
fn a_record_that_leaves_less_than_a_header_skips_to_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = SMALL_SEGMENT - SEGMENT_HEADER_LEN;
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    // One record that leaves exactly 32 bytes (< a header) at the end of the first segment.
    let first_len = capacity as usize - 32 - RECORD_HEADER_LEN;
    journal.append(&meta(1), &payload(1, first_len)).unwrap();
    assert_eq!(journal.position(), capacity - 32);
    let end = journal.append(&meta(2), &payload(2, 8)).unwrap();
    assert_eq!(end, capacity + 48);
    let records = read_all(dir.path());
    assert_eq!(
        records.iter().map(|r| r.2).collect::<Vec<_>>(),
        vec![0, capacity]
    );
    drop(journal);
    let journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    assert_eq!(
        (journal.position(), journal.last_sequence()),
        (capacity + 48, 2)
    );
}

#[test]
fn input_errors_are_typed_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    journal.append(&meta(5), b"x").unwrap();
    let position = journal.position();
    assert!(matches!(
        journal.append(&meta(5), b"y"),
        Err(JournalError::SequenceNotIncreasing {
            sequence: 5,
            last: 5
        })
    ));
    let padding = RecordMeta {
        record_type: 0,
        sequence: 6,
        ..Default::default()
    };
    assert!(matches!(
        journal.append(&padding, b"y"),
        Err(JournalError::ReservedRecordType)
    ));
    let max = journal.payload_len_max();
    assert_eq!(
        max,
        (SMALL_SEGMENT - SEGMENT_HEADER_LEN) as usize - RECORD_HEADER_LEN
    );
    assert!(matches!(
        journal.append(&meta(6), &vec![0; max + 1]),
        Err(JournalError::RecordTooLarge { .. })
    ));
    assert_eq!(journal.position(), position);
    // The largest record fits, alone in a segment.
    journal.append(&meta(6), &vec![1; max]).unwrap();
    assert_eq!(read_all(dir.path()).len(), 2);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    assert!(matches!(
        Journal::open(config(dir.path(), SMALL_SEGMENT)),
        Err(JournalError::Locked { .. })
    ));
}

#[test]
fn segment_size_and_version_mismatches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap());
    match Journal::open(config(dir.path(), 2 * SMALL_SEGMENT)) {
        Err(JournalError::SegmentSizeMismatch {
            on_disk,
            configured,
            ..
        }) => {
            assert_eq!((on_disk, configured), (SMALL_SEGMENT, 2 * SMALL_SEGMENT))
        }
        other => panic!("expected a size mismatch, got {:?}", other.map(|_| ())),
    }
    // A future format version with a valid header checksum.
    let path = segment_file(dir.path(), 0);
    let mut page = fs::read(&path).unwrap()[..4096].to_vec();
    page[8..12].copy_from_slice(&2u32.to_le_bytes());
    page[52..56].fill(0);
    let crc = crc32c::crc32c(&page);
    page[52..56].copy_from_slice(&crc.to_le_bytes());
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&page, 0)
        .unwrap();
    assert!(matches!(
        Journal::open(config(dir.path(), SMALL_SEGMENT)),
        Err(JournalError::VersionMismatch {
            found: 2,
            supported: 1,
            ..
        })
    ));
}

#[test]
fn torn_write_is_reported_with_its_location_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let ends = append_n(&mut journal, 1, 10, |_| 100);
    drop(journal);
    // Tear the last record: zero the end of its payload, as a crash between page write-backs would.
    let path = segment_file(dir.path(), 0);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0; 16], SEGMENT_HEADER_LEN + ends[9] - 20)
        .unwrap();

    // Strict mode refuses and names the place.
    let mut strict = config(dir.path(), SMALL_SEGMENT);
    strict.truncate_invalid_tail = false;
    match Journal::open(strict) {
        Err(JournalError::Corrupt { kind, location }) => {
            assert_eq!(kind, CorruptKind::RecordChecksum);
            assert_eq!(location.position, ends[8]);
            assert_eq!(location.file_offset, SEGMENT_HEADER_LEN + ends[8]);
            assert_eq!(location.path, path);
        }
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
    // Default mode truncates to the last valid record and says so.
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let report = journal.recovery().cloned().expect("a report");
    assert_eq!(
        (report.kind, report.truncated_to),
        (CorruptKind::RecordChecksum, ends[8])
    );
    assert!(
        report.to_string().contains("record checksum mismatch"),
        "{report}"
    );
    assert_eq!((journal.position(), journal.last_sequence()), (ends[8], 9));
    journal.append(&meta(10), &payload(10, 5)).unwrap();
    let records = read_all(dir.path());
    assert_eq!(records.len(), 10);
    assert_eq!(records[9].1, payload(10, 5));
    drop(journal);
    assert!(Journal::open(config(dir.path(), SMALL_SEGMENT))
        .unwrap()
        .recovery()
        .is_none());
}

#[test]
fn garbage_after_the_end_is_detected_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let ends = append_n(&mut journal, 1, 3, |_| 64);
    drop(journal);
    let path = segment_file(dir.path(), 0);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"junk", SEGMENT_HEADER_LEN + ends[2] + 500)
        .unwrap();
    let journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let report = journal.recovery().cloned().unwrap();
    assert_eq!(report.kind, CorruptKind::GarbageAfterEnd);
    assert_eq!(
        report.location.file_offset,
        SEGMENT_HEADER_LEN + ends[2] + 500
    );
    assert_eq!(report.truncated_to, ends[2]);
    assert_eq!(read_all(dir.path()).len(), 3);
    let bytes = fs::read(&path).unwrap();
    assert!(bytes[(SEGMENT_HEADER_LEN + ends[2]) as usize..]
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn truncate_after_repairs_the_log_at_record_boundaries_only() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = SMALL_SEGMENT - SEGMENT_HEADER_LEN;
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let ends = append_n(&mut journal, 1, 300, |_| 1000);
    assert!(journal.position() > 4 * capacity);
    assert!(matches!(
        journal.truncate_after(ends[10] + 8),
        Err(JournalError::NotRecordBoundary { .. })
    ));
    assert!(matches!(
        journal.truncate_after(journal.position() + 8),
        Err(JournalError::NotRecordBoundary { .. })
    ));
    // Back into the second segment: later segments go, the writer continues there.
    journal.truncate_after(ends[99]).unwrap();
    assert_eq!(
        (journal.position(), journal.last_sequence()),
        (ends[99], 100)
    );
    assert!(!segment_file(dir.path(), 2).exists());
    journal.append(&meta(101), &payload(1001, 7)).unwrap();
    let records = read_all(dir.path());
    assert_eq!(records.len(), 101);
    assert_eq!(records[100].1, payload(1001, 7));
    // To the very start.
    journal.truncate_after(0).unwrap();
    assert_eq!((journal.position(), journal.last_sequence()), (0, 0));
    assert!(read_all(dir.path()).is_empty());
    journal.append(&meta(1), b"again").unwrap();
    drop(journal);
    let journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    assert!(journal.recovery().is_none());
    assert_eq!(read_all(dir.path()).len(), 1);
}

#[test]
fn truncate_after_at_a_full_segment_boundary_keeps_the_full_segment() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = SMALL_SEGMENT - SEGMENT_HEADER_LEN;
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    // Records that exactly fill a segment: 8 records of capacity / 8 bytes.
    let frame = capacity / 8;
    let ends = append_n(&mut journal, 1, 12, |_| frame as usize - RECORD_HEADER_LEN);
    assert_eq!(ends[7], capacity);
    journal.truncate_after(capacity).unwrap();
    assert_eq!((journal.position(), journal.last_sequence()), (capacity, 8));
    journal.append(&meta(9), b"next").unwrap();
    let records = read_all(dir.path());
    assert_eq!(records.len(), 9);
    assert_eq!(records[8].2, capacity);
}

#[test]
fn seek_sequence_uses_the_sparse_index_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    // Sequences with gaps: 10, 20, 30, ...
    let mut ends = Vec::new();
    for i in 1..=2000u64 {
        ends.push(
            journal
                .append(&meta(i * 10), &payload(i, (i % 300) as usize))
                .unwrap(),
        );
    }
    let mut reader = Reader::open(dir.path()).unwrap();
    for target in [1, 10, 11, 555, 9990, 10_000, 15_000, 19_999, 20_000] {
        reader.seek_sequence(target).unwrap();
        let expected_index = target.div_ceil(10) - 1;
        let record = reader.next_record().unwrap().expect("a record");
        assert_eq!(
            record.meta.sequence,
            (expected_index + 1) * 10,
            "target {target}"
        );
        let expected_position = if expected_index == 0 {
            0
        } else {
            ends[expected_index as usize - 1]
        };
        // Records may start a new segment after padding; compare the start of the record's frame.
        assert!(
            record.position >= expected_position && record.position < ends[expected_index as usize]
        );
    }
    reader.seek_sequence(20_001).unwrap();
    assert!(reader.next_record().unwrap().is_none());
    assert_eq!(reader.position(), journal.position());
}

#[test]
fn append_frame_copies_a_record_byte_for_byte() {
    let leader = tempfile::tempdir().unwrap();
    let follower = tempfile::tempdir().unwrap();
    let mut source = Journal::open(config(leader.path(), SMALL_SEGMENT)).unwrap();
    append_n(&mut source, 1, 500, |s| (s % 97) as usize);
    let mut copy = Journal::open(config(follower.path(), SMALL_SEGMENT)).unwrap();
    let mut reader = Reader::open(leader.path()).unwrap();
    while let Some(record) = reader.next_record().unwrap() {
        assert_eq!(
            copy.append_frame(record.frame).unwrap(),
            record.next_position
        );
    }
    drop(source);
    drop(copy);
    for index in 0.. {
        let (a, b) = (
            segment_file(leader.path(), index),
            segment_file(follower.path(), index),
        );
        if !a.exists() {
            assert!(!b.exists());
            break;
        }
        // Identical but for the creation metadata in the segment header.
        let (a, b) = (fs::read(a).unwrap(), fs::read(b).unwrap());
        assert_eq!(a[4096..], b[4096..], "segment {index}");
    }
    // A damaged frame is refused.
    let mut reader = Reader::open(leader.path()).unwrap();
    let mut frame = reader.next_record().unwrap().unwrap().frame.to_vec();
    frame[40] ^= 1;
    let scratch = tempfile::tempdir().unwrap();
    let mut other = Journal::open(config(scratch.path(), SMALL_SEGMENT)).unwrap();
    assert!(matches!(
        other.append_frame(&frame),
        Err(JournalError::BadFrame("checksum mismatch"))
    ));
    assert!(matches!(
        other.append_frame(&frame[..20]),
        Err(JournalError::BadFrame(_))
    ));
}

#[test]
fn group_commit_advances_the_durable_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: JournalConfig = config(dir.path(), SMALL_SEGMENT);
    config.sync = SyncPolicy::GroupCommit;
    let mut journal = Journal::open(config).unwrap();
    append_n(&mut journal, 1, 1000, |_| 64);
    let end = journal.position();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while journal.position_durable() < end {
        assert!(
            std::time::Instant::now() < deadline,
            "durable position stuck at {}",
            journal.position_durable()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(journal.position_durable(), end);
    assert!(journal.sync_rounds() >= 1);
    // Without a thread, sync() is what makes records durable.
    drop(journal);
    let mut journal = Journal::open(common::config(dir.path(), SMALL_SEGMENT)).unwrap();
    assert_eq!(
        journal.position_durable(),
        end,
        "reopened content is synced on open"
    );
    journal.append(&meta(1001), b"x").unwrap();
    assert_eq!(journal.position_durable(), end);
    journal.sync().unwrap();
    assert_eq!(journal.position_durable(), journal.position());
}

#[test]
fn a_reader_reports_corruption_with_its_location_and_stays_put() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let ends = append_n(&mut journal, 1, 5, |_| 32);
    let path = segment_file(dir.path(), 0);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xff], SEGMENT_HEADER_LEN + ends[1] + 45)
        .unwrap();
    let mut reader = Reader::open(dir.path()).unwrap();
    assert!(reader.next_record().unwrap().is_some());
    assert!(reader.next_record().unwrap().is_some());
    for _ in 0..2 {
        match reader.next_record() {
            Err(JournalError::Corrupt {
                kind: CorruptKind::RecordChecksum,
                location,
            }) => {
                assert_eq!(location.position, ends[1]);
            }
            other => panic!(
                "expected corruption, got {:?}",
                other.map(|r| r.map(|r| r.position))
            ),
        }
    }
}

/// Whichever record is bad, every record before it is delivered and the bad one is reported at
/// its own position.
#[test]
fn a_reader_reports_a_bad_checksum_at_the_record_that_has_it() {
    for corrupt in 0..7 {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
        let ends = append_n(&mut journal, 1, 8, |s| 8 + (s as usize % 3) * 40);
        let start = if corrupt == 0 { 0 } else { ends[corrupt - 1] };
        let path = segment_file(dir.path(), 0);
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xee], SEGMENT_HEADER_LEN + start + 44)
            .unwrap();
        let mut reader = Reader::open(dir.path()).unwrap();
        for end in &ends[..corrupt] {
            let record = reader.next_record().unwrap().expect("a good record");
            assert_eq!(record.next_position, *end);
        }
        match reader.next_record() {
            Err(JournalError::Corrupt {
                kind: CorruptKind::RecordChecksum,
                location,
            }) => assert_eq!(location.position, start),
            other => panic!(
                "record {corrupt}: expected corruption, got {:?}",
                other.map(|r| r.map(|r| r.position))
            ),
        }
    }
}

#[test]
fn verify_reports_a_clean_journal_and_names_the_first_problem() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let ends = append_n(&mut journal, 5, 300, |_| 500);
    let report = journal::verify(dir.path()).unwrap();
    assert_eq!(report.records, 300);
    assert_eq!(
        (report.first_sequence, report.last_sequence),
        (Some(5), Some(304))
    );
    assert_eq!(report.end_position, ends[299]);
    assert_eq!(report.payload_bytes, 300 * 500);
    drop(journal);
    let path = segment_file(dir.path(), 1);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xAA], SEGMENT_HEADER_LEN + 100)
        .unwrap();
    match journal::verify(dir.path()) {
        Err(JournalError::Corrupt { kind, location }) => {
            assert_eq!(kind, CorruptKind::RecordChecksum);
            assert_eq!(location.segment_index, 1);
            assert_eq!(location.path, path);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Read-only: the damage is still there for the writer's recovery to find.
    assert!(Journal::open(config(dir.path(), SMALL_SEGMENT))
        .unwrap()
        .recovery()
        .is_some());
}

#[test]
fn a_later_segment_shorter_than_its_header_is_reported_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    append_n(&mut journal, 1, 100, |_| 1000);
    drop(journal);
    // A later segment cut to 3,850 bytes, as a crash during creation or a bad copy would leave it.
    let path = segment_file(dir.path(), 1);
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(3850)
        .unwrap();
    let journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let report = journal.recovery().cloned().expect("a report");
    assert_eq!(report.kind, CorruptKind::SegmentHeaderMismatch);
    assert_eq!(report.location.segment_index, 1);
    assert!(journal::verify(dir.path()).is_ok());
}
