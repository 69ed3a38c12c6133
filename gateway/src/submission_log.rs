//! The gateway's submission log: every command the gateway sends to the cluster, with the FIX
//! ClOrdID it answers, journaled (checksummed, memory-mapped: it survives the process being
//! killed) before it is sent.
//!
//! The committed log holds the commands but not the FIX identities: a matcher order knows its
//! account and client order id (the submission's client sequence), not the ClOrdID its owner
//! gave it. A restarted gateway reads this log to give the orders still resting their ClOrdIDs
//! back (so their fills and cancels are reported to their session), and to send again, with the
//! same client sequences and bytes, what it had submitted without seeing it committed (the
//! cluster sequences a client's command once, so a command that did reach the log is not
//! repeated, and one that did not is not lost or replaced by a different command under its
//! client sequence).
//!
//! Bounded: at start-up the gateway compacts the log to the entries it still needs (orders
//! resting, submissions in flight), in a new generation written in full before the old one is
//! removed.

use std::path::{Path, PathBuf};

use journal::{Journal, JournalConfig, JournalError, RecordMeta};
use matcher::{CommandRecord, COMMAND_RECORD_SIZE};

use crate::app::{ClOrdId, CL_ORD_ID_LENGTH_MAX};

/// Bytes of one entry: client sequence, command record, ClOrdID (length and bytes), request
/// type, padding.
pub const SUBMISSION_ENTRY_LEN: usize = 120;
const CL_ORD_ID_AT: usize = 8 + COMMAND_RECORD_SIZE;
const REQUEST_TYPE_AT: usize = CL_ORD_ID_AT + 1 + CL_ORD_ID_LENGTH_MAX;
const _: () = assert!(REQUEST_TYPE_AT < SUBMISSION_ENTRY_LEN);
const _: () = assert!(SUBMISSION_ENTRY_LEN.is_multiple_of(8));

/// Journal record type of an entry.
const RECORD_SUBMISSION: u16 = 1;
/// Segment size of the log's journal (a segment holds about 16,000 entries).
const SEGMENT_SIZE: u64 = 2 << 20;
/// Generation directories are `gen-<10 digits>`; one being written has `.tmp` after it.
const GENERATION_PREFIX: &str = "gen-";
const TEMPORARY_SUFFIX: &str = ".tmp";

/// One submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubmissionEntry {
    /// Ingress client sequence.
    pub client_sequence: u64,
    /// The matcher command as sent.
    pub record: CommandRecord,
    /// The FIX request's ClOrdID (None for the gateway's own commands, e.g. AddInstrument).
    pub cl_ord_id: Option<ClOrdId>,
    /// MassCancelRequestType (530) of a mass cancel, else 0.
    pub request_type: u8,
}

impl SubmissionEntry {
    /// The entry's bytes.
    pub fn encode(&self) -> [u8; SUBMISSION_ENTRY_LEN] {
        let mut bytes = [0u8; SUBMISSION_ENTRY_LEN];
        bytes[..8].copy_from_slice(&self.client_sequence.to_le_bytes());
        bytes[8..CL_ORD_ID_AT].copy_from_slice(self.record.as_bytes());
        if let Some(id) = &self.cl_ord_id {
            let id = id.as_bytes();
            bytes[CL_ORD_ID_AT] = id.len() as u8;
            bytes[CL_ORD_ID_AT + 1..][..id.len()].copy_from_slice(id);
        }
        bytes[REQUEST_TYPE_AT] = self.request_type;
        bytes
    }

    /// Reads an entry; `None` if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<SubmissionEntry> {
        if bytes.len() != SUBMISSION_ENTRY_LEN {
            return None;
        }
        let client_sequence = u64::from_le_bytes(bytes[..8].try_into().ok()?);
        let record = CommandRecord::read_from_bytes(&bytes[8..CL_ORD_ID_AT]).ok()?;
        let length = usize::from(bytes[CL_ORD_ID_AT]);
        let cl_ord_id = match length {
            0 => None,
            1..=CL_ORD_ID_LENGTH_MAX => Some(ClOrdId::new(&bytes[CL_ORD_ID_AT + 1..][..length])?),
            _ => return None,
        };
        Some(SubmissionEntry {
            client_sequence,
            record,
            cl_ord_id,
            request_type: bytes[REQUEST_TYPE_AT],
        })
    }
}

/// A failure of the submission log (the text names the directory or file).
#[derive(Debug, thiserror::Error)]
pub enum SubmissionLogError {
    /// The journal could not be opened, read or written.
    #[error("submission log {0}")]
    Journal(String),
    /// A file operation failed.
    #[error("submission log {path}: {source}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A record that is not an entry (the log belongs to something else, or a broken writer).
    #[error("submission log {path}: record {sequence} is not a submission entry")]
    Entry {
        /// The generation's directory.
        path: PathBuf,
        /// The record's sequence.
        sequence: u64,
    },
}

/// The log: its directory and the generation being appended to.
pub struct SubmissionLog {
    dir: PathBuf,
    generation: u64,
    journal: Journal,
}

impl SubmissionLog {
    /// Opens the newest generation under `dir` (creating the directory and a first generation
    /// if there is none) and reads its entries, in the order they were appended. A generation
    /// left half-written by a crash during compaction is removed.
    pub fn open(dir: &Path) -> Result<(SubmissionLog, Vec<SubmissionEntry>), SubmissionLogError> {
        std::fs::create_dir_all(dir).map_err(file_error(dir))?;
        let mut newest = None;
        for entry in std::fs::read_dir(dir).map_err(file_error(dir))? {
            let entry = entry.map_err(file_error(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TEMPORARY_SUFFIX) {
                remove_dir(&entry.path())?;
                continue;
            }
            if let Some(generation) = parse_generation(&name) {
                newest = newest.max(Some(generation));
            }
        }
        let generation = match newest {
            Some(generation) => generation,
            None => {
                create_generation(dir, 1, &[])?;
                1
            }
        };
        let path = generation_path(dir, generation);
        let journal = open_journal(&path)?;
        let mut entries = Vec::new();
        let mut reader = journal.reader().map_err(journal_error(&path))?;
        while let Some(record) = reader.next_record().map_err(journal_error(&path))? {
            let entry = SubmissionEntry::decode(record.payload).ok_or_else(|| {
                SubmissionLogError::Entry {
                    path: path.clone(),
                    sequence: record.meta.sequence,
                }
            })?;
            entries.push(entry);
        }
        Ok((
            SubmissionLog {
                dir: dir.to_path_buf(),
                generation,
                journal,
            },
            entries,
        ))
    }

    /// Appends an entry (in the page cache when this returns: it survives the process).
    pub fn append(&mut self, entry: &SubmissionEntry) -> Result<(), SubmissionLogError> {
        let meta = RecordMeta {
            record_type: RECORD_SUBMISSION,
            flags: 0,
            sequence: self.journal.last_sequence() + 1,
            term: 0,
            timestamp_ns: 0,
        };
        let path = generation_path(&self.dir, self.generation);
        self.journal
            .append(&meta, &entry.encode())
            .map_err(journal_error(&path))?;
        Ok(())
    }

    /// Replaces the log with a new generation holding only `keep` (written and synced in full
    /// before the old generation is removed).
    pub fn compact(&mut self, keep: &[SubmissionEntry]) -> Result<(), SubmissionLogError> {
        let generation = self.generation + 1;
        create_generation(&self.dir, generation, keep)?;
        let path = generation_path(&self.dir, generation);
        self.journal = open_journal(&path)?;
        let old = generation_path(&self.dir, self.generation);
        self.generation = generation;
        remove_dir(&old)?;
        sync_dir(&self.dir)
    }

    /// The generation being appended to.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> SubmissionLogError + '_ {
    move |source| SubmissionLogError::File {
        path: path.to_path_buf(),
        source,
    }
}

fn journal_error(path: &Path) -> impl FnOnce(JournalError) -> SubmissionLogError + '_ {
    move |error| SubmissionLogError::Journal(format!("{}: {error}", path.display()))
}

fn generation_path(dir: &Path, generation: u64) -> PathBuf {
    crate::generations::generation_path(dir, GENERATION_PREFIX, generation)
}

fn parse_generation(name: &str) -> Option<u64> {
    crate::generations::parse_generation(name, GENERATION_PREFIX)
}

fn open_journal(path: &Path) -> Result<Journal, SubmissionLogError> {
    let mut config = JournalConfig::new(path);
    config.segment_size = SEGMENT_SIZE;
    config.pretouch = false;
    Journal::open(config).map_err(journal_error(path))
}

/// Writes generation `generation` with `entries` under a temporary name, syncs it, and renames
/// it into place.
fn create_generation(
    dir: &Path,
    generation: u64,
    entries: &[SubmissionEntry],
) -> Result<(), SubmissionLogError> {
    let path = generation_path(dir, generation);
    let temporary = PathBuf::from(format!("{}{TEMPORARY_SUFFIX}", path.display()));
    remove_dir(&temporary)?;
    {
        let mut journal = open_journal(&temporary)?;
        for (index, entry) in entries.iter().enumerate() {
            let meta = RecordMeta {
                record_type: RECORD_SUBMISSION,
                flags: 0,
                sequence: index as u64 + 1,
                term: 0,
                timestamp_ns: 0,
            };
            journal
                .append(&meta, &entry.encode())
                .map_err(journal_error(&temporary))?;
        }
        journal.sync().map_err(journal_error(&temporary))?;
    }
    sync_dir(&temporary)?;
    std::fs::rename(&temporary, &path).map_err(file_error(&path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), SubmissionLogError> {
    crate::generations::sync_dir(dir).map_err(file_error(dir))
}

fn remove_dir(path: &Path) -> Result<(), SubmissionLogError> {
    crate::generations::remove_dir_if_exists(path).map_err(file_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use matcher::{Command, NewOrder, OrderType, Side, StpMode, TimeInForce};

    fn entry(client_sequence: u64, cl_ord_id: Option<&str>) -> SubmissionEntry {
        SubmissionEntry {
            client_sequence,
            record: Command::NewOrder(NewOrder {
                instrument_id: 1,
                account_id: 101,
                client_order_id: client_sequence,
                side: Side::Buy,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Gtc,
                stp_mode: StpMode::None,
                post_only: false,
                price: 50_000,
                quantity: 10,
            })
            .encode(),
            cl_ord_id: cl_ord_id.map(|id| ClOrdId::new(id.as_bytes()).unwrap()),
            request_type: (client_sequence % 7) as u8,
        }
    }

    #[test]
    fn entries_round_trip_through_their_bytes() {
        for e in [
            entry(1, Some("a")),
            entry(u64::MAX, Some(&"x".repeat(CL_ORD_ID_LENGTH_MAX))),
            entry(3, None),
        ] {
            assert_eq!(SubmissionEntry::decode(&e.encode()), Some(e));
        }
        let mut bad = entry(1, Some("a")).encode();
        bad[CL_ORD_ID_AT] = CL_ORD_ID_LENGTH_MAX as u8 + 1;
        assert_eq!(SubmissionEntry::decode(&bad), None);
        assert_eq!(SubmissionEntry::decode(&bad[1..]), None);
    }

    #[test]
    fn a_torn_last_entry_is_cut_and_the_rest_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SubmissionLog::open(dir.path()).unwrap();
        let written: Vec<SubmissionEntry> =
            (1..=10).map(|i| entry(i, Some(&format!("c{i}")))).collect();
        for e in &written {
            log.append(e).unwrap();
        }
        // The process dies in the middle of the last entry: its bytes are half there.
        drop(log);
        let segment = std::fs::read_dir(generation_path(dir.path(), 1))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| std::fs::metadata(p).unwrap().len() == SEGMENT_SIZE)
            .unwrap();
        let mut bytes = std::fs::read(&segment).unwrap();
        // The last entry's ClOrdID, "c10", is overwritten: its checksum no longer holds.
        let at = bytes
            .windows(4)
            .rposition(|w| w == b"\x03c10")
            .expect("the last entry");
        bytes[at + 1..at + 4].copy_from_slice(b"zzz");
        std::fs::write(&segment, &bytes).unwrap();
        let (_, entries) = SubmissionLog::open(dir.path()).unwrap();
        assert_eq!(entries, written[..9]);
    }

    #[test]
    fn entries_survive_reopening_and_compaction_keeps_only_what_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, entries) = SubmissionLog::open(dir.path()).unwrap();
        assert!(entries.is_empty());
        let written: Vec<SubmissionEntry> = (1..=100)
            .map(|i| entry(i, Some(&format!("c{i}"))))
            .collect();
        for e in &written {
            log.append(e).unwrap();
        }
        drop(log);
        let (mut log, entries) = SubmissionLog::open(dir.path()).unwrap();
        assert_eq!(entries, written);
        let keep = [written[9], written[99]];
        log.compact(&keep).unwrap();
        assert_eq!(log.generation(), 2);
        log.append(&entry(101, Some("c101"))).unwrap();
        drop(log);
        // A half-written generation (a crash during compaction) is ignored and removed.
        std::fs::create_dir(dir.path().join("gen-0000000003.tmp")).unwrap();
        let (log, entries) = SubmissionLog::open(dir.path()).unwrap();
        assert_eq!(entries, [keep[0], keep[1], entry(101, Some("c101"))]);
        assert_eq!(log.generation(), 2);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["gen-0000000002"]);
    }
}
