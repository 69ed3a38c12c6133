//! Property tests: whatever is written reads back byte-identical after reopen; whatever damage is
//! done to the files (truncation, byte flips anywhere), recovery yields exactly a prefix of what was
//! written, never a corrupt record, and the writer resumes after it.

mod common;

use common::*;
use journal::{Journal, JournalError, RecordMeta};
use proptest::prelude::*;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SEGMENT: u64 = SMALL_SEGMENT;

fn write(dir: &Path, lens: &[usize]) -> Vec<(RecordMeta, Vec<u8>)> {
    let mut journal = Journal::open(config(dir, SEGMENT)).unwrap();
    let mut written = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let s = i as u64 + 1;
        journal.append(&meta(s), &payload(s, len)).unwrap();
        written.push((meta(s), payload(s, len)));
    }
    written
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "journal"))
        .collect();
    files.sort();
    files
}

/// Opens after damage; checks the prefix property, then that the writer resumes after it.
fn check_recovers_to_prefix(
    dir: &Path,
    written: &[(RecordMeta, Vec<u8>)],
) -> Result<(), TestCaseError> {
    let mut journal = match Journal::open(config(dir, SEGMENT)) {
        Ok(journal) => journal,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "open failed after damage: {e}"
            )))
        }
    };
    let records = read_all(dir);
    prop_assert!(records.len() <= written.len());
    for (record, (m, p)) in records.iter().zip(written) {
        prop_assert_eq!(&record.0, m);
        prop_assert_eq!(&record.1, p);
    }
    // The writer resumes at the end of the last record, or at the next segment boundary when the
    // valid log ends with a padded-out segment.
    let last_end = records.last().map(|r| r.3).unwrap_or(0);
    let capacity = SEGMENT - journal::SEGMENT_HEADER_LEN;
    let position = journal.position();
    prop_assert!(
        position == last_end
            || (position % capacity == 0 && position > last_end && position - last_end < capacity),
        "position {} after last record end {}",
        position,
        last_end
    );
    prop_assert_eq!(journal.last_sequence(), records.len() as u64);
    let next = records.len() as u64 + 1;
    journal.append(&meta(next), &payload(next, 33)).unwrap();
    drop(journal);
    let journal = Journal::open(config(dir, SEGMENT)).unwrap();
    prop_assert!(
        journal.recovery().is_none(),
        "second open found damage: {:?}",
        journal.recovery()
    );
    let again = read_all(dir);
    prop_assert_eq!(again.len(), records.len() + 1);
    prop_assert_eq!(&again.last().unwrap().1, &payload(next, 33));
    Ok(())
}

fn lens() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![0usize..64, 64usize..2048, 2048usize..20_000],
        0..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn written_records_read_back_identical_after_reopen(lens in lens()) {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &lens);
        let journal = Journal::open(config(dir.path(), SEGMENT)).unwrap();
        prop_assert!(journal.recovery().is_none());
        prop_assert_eq!(journal.last_sequence(), lens.len() as u64);
        let records = read_all(dir.path());
        prop_assert_eq!(records.len(), written.len());
        for (record, (m, p)) in records.iter().zip(&written) {
            prop_assert_eq!(&record.0, m);
            prop_assert_eq!(&record.1, p);
        }
        prop_assert_eq!(journal.position(), records.last().map(|r| r.3).unwrap_or(0));
    }

    #[test]
    fn byte_flips_anywhere_recover_to_a_prefix(lens in lens(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1u8..=255), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &lens);
        let files = segment_files(dir.path());
        for (file, offset, xor) in flips {
            let path = file.get(&files);
            let len = fs::metadata(path).unwrap().len() as usize;
            let at = offset.index(len) as u64;
            let handle = fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
            let mut byte = [0u8];
            handle.read_exact_at(&mut byte, at).unwrap();
            byte[0] ^= xor;
            handle.write_all_at(&byte, at).unwrap();
        }
        check_recovers_to_prefix(dir.path(), &written)?;
    }

    #[test]
    fn truncated_files_recover_to_a_prefix(lens in lens(), cut in any::<prop::sample::Index>(), which in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &lens);
        let files = segment_files(dir.path());
        let path = which.get(&files);
        let len = fs::metadata(path).unwrap().len();
        fs::OpenOptions::new().write(true).open(path).unwrap().set_len(cut.index(len as usize) as u64).unwrap();
        check_recovers_to_prefix(dir.path(), &written)?;
    }

    #[test]
    fn a_torn_tail_recovers_to_a_prefix(lens in lens(), keep in any::<prop::sample::Index>()) {
        // A crash while the last records were being written back: a random number of trailing bytes
        // of the log are lost (zero), as if their pages never reached the disk.
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), &lens);
        let files = segment_files(dir.path());
        let last = files.last().unwrap();
        let len = fs::metadata(last).unwrap().len();
        let from = 4096 + keep.index((len - 4096) as usize) as u64;
        let handle = fs::OpenOptions::new().write(true).open(last).unwrap();
        handle.write_all_at(&vec![0; (len - from) as usize], from).unwrap();
        check_recovers_to_prefix(dir.path(), &written)?;
    }
}

#[test]
fn strict_mode_refuses_a_flipped_byte_in_a_record() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[10, 20, 30]);
    let path = &segment_files(dir.path())[0];
    let handle = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    handle.write_all_at(&[0x55], 4096 + 56 + 45).unwrap();
    let mut strict = config(dir.path(), SEGMENT);
    strict.truncate_invalid_tail = false;
    assert!(matches!(
        Journal::open(strict),
        Err(JournalError::Corrupt { .. })
    ));
    // Nothing was changed by the refusal: the default mode still finds the same damage.
    let journal = Journal::open(config(dir.path(), SEGMENT)).unwrap();
    assert_eq!(journal.recovery().unwrap().truncated_to, 56);
}
