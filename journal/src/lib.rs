//! The journal: a memory-mapped, segmented, checksummed, append-only log, the exchange's source of
//! truth. The sequencer appends to it, standbys append what they receive, matchers and tools read it.
//!
//! The journal is payload-agnostic: a record is a fixed 40-byte header (length, type, flags, sequence
//! number, term, timestamp, CRC32C) and bytes. Positions are byte offsets that grow monotonically
//! across segment files; the consensus layer compares them. It must never return a corrupt record,
//! never let two writers share a directory, and never allocate or make a syscall on the append path
//! in the common case.
//!
//! ```
//! use journal::{Journal, JournalConfig, RecordMeta, Reader};
//! let dir = tempfile::tempdir().unwrap();
//! let mut journal = Journal::open(JournalConfig::new(dir.path())).unwrap();
//! let meta = RecordMeta { record_type: 1, sequence: 1, term: 1, timestamp_ns: 0, flags: 0 };
//! let end = journal.append(&meta, b"hello").unwrap();
//! let mut reader = Reader::open(dir.path()).unwrap();
//! let record = reader.next_record().unwrap().unwrap();
//! assert_eq!((record.payload, record.next_position), (&b"hello"[..], end));
//! assert!(reader.next_record().unwrap().is_none());
//! ```
#![deny(unsafe_op_in_unsafe_fn)]

mod durability;
mod error;
pub mod format;
mod prepare;
mod reader;
mod scan;
mod segment;
mod verify;
mod writer;

pub use error::{CorruptKind, JournalError, Location, Result};
pub use format::{
    RecordHeader, RecordMeta, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SEGMENT_SIZE_DEFAULT,
};
pub use reader::{Reader, Record, INDEX_STRIDE_BYTES};
pub use verify::{verify, VerifyReport};
pub use writer::{Journal, JournalConfig, RecoveryReport, SyncPolicy, WriterStats};
