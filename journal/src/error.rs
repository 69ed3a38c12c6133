//! Typed errors of the journal. Every error that concerns a place in the files names the file and the
//! offset in it.

use std::io;
use std::path::{Path, PathBuf};

/// Why a record or segment was judged invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptKind {
    /// The segment header's magic bytes are wrong: not a journal segment.
    BadMagic,
    /// The segment header's checksum does not match its contents.
    SegmentHeaderChecksum,
    /// The segment header disagrees with its file name or with the other segments.
    SegmentHeaderMismatch,
    /// A record's frame length is shorter than a header or runs past the end of the segment.
    BadFrameLength,
    /// A record's checksum does not match its header and payload.
    RecordChecksum,
    /// A reserved header field is not zero.
    ReservedNotZero,
    /// A record's sequence number is not greater than the one before it.
    SequenceNotIncreasing,
    /// A padding record does not fill the rest of its segment.
    BadPadding,
    /// Non-zero bytes after the end of the log (a torn write, or garbage).
    GarbageAfterEnd,
    /// A segment in the middle of the journal is missing.
    MissingSegment,
}

impl std::fmt::Display for CorruptKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            CorruptKind::BadMagic => "bad magic (not a journal segment)",
            CorruptKind::SegmentHeaderChecksum => "segment header checksum mismatch",
            CorruptKind::SegmentHeaderMismatch => {
                "segment header disagrees with file name or other segments"
            }
            CorruptKind::BadFrameLength => "bad record frame length",
            CorruptKind::RecordChecksum => "record checksum mismatch",
            CorruptKind::ReservedNotZero => "reserved header field not zero",
            CorruptKind::SequenceNotIncreasing => "sequence number not increasing",
            CorruptKind::BadPadding => "padding record does not fill its segment",
            CorruptKind::GarbageAfterEnd => "non-zero bytes after the end of the log",
            CorruptKind::MissingSegment => "missing segment",
        };
        f.write_str(text)
    }
}

/// Where in the files something was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The segment file.
    pub path: PathBuf,
    /// The segment's index.
    pub segment_index: u64,
    /// Byte offset in the segment file.
    pub file_offset: u64,
    /// The journal position (logical byte offset across segments).
    pub position: u64,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (segment {}) at file offset {} (position {})",
            self.path.display(),
            self.segment_index,
            self.file_offset,
            self.position
        )
    }
}

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("disk full writing {path}")]
    DiskFull { path: PathBuf },
    #[error("permission denied on {path}")]
    Permission { path: PathBuf },
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("corrupt journal: {kind} in {location}")]
    Corrupt {
        kind: CorruptKind,
        location: Location,
    },
    #[error("{path}: journal format version {found}, this build reads version {supported}")]
    VersionMismatch {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: segment size on disk is {on_disk} bytes but {configured} was configured")]
    SegmentSizeMismatch {
        path: PathBuf,
        on_disk: u64,
        configured: u64,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("another writer holds the journal lock {path}")]
    Locked { path: PathBuf },
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge { len: usize, max: usize },
    #[error("record type 0 is reserved for padding")]
    ReservedRecordType,
    #[error("sequence {sequence} is not greater than the last sequence {last}")]
    SequenceNotIncreasing { sequence: u64, last: u64 },
    #[error("position {position} is not a record boundary (journal end {end})")]
    NotRecordBoundary { position: u64, end: u64 },
    #[error("replicated frame rejected: {0}")]
    BadFrame(&'static str),
    #[error("durability failed earlier ({0}); the journal refuses further appends")]
    DurabilityFailed(String),
    #[error("io_uring unavailable: {0}")]
    IoUringUnavailable(io::Error),
}

impl JournalError {
    /// Classifies an I/O error on `path` into disk full, permission, or a plain I/O error.
    pub fn io(path: &Path, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => JournalError::DiskFull {
                path: path.to_path_buf(),
            },
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                JournalError::Permission {
                    path: path.to_path_buf(),
                }
            }
            _ => JournalError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// Result of the journal.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;
