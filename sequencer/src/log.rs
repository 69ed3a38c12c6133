//! The log as the replication core sees it: append, visit from a position, repair. The real journal
//! implements it ([`JournalLog`]); so does an in-memory log for the simulator ([`MemLog`]). The core
//! never touches a file itself.

use journal::{Journal, Reader, RecordHeader, RecordMeta, RECORD_HEADER_LEN};
use zerocopy::FromBytes;

/// Errors of a log, reduced to what the core needs to decide.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A frame failed its checksum or is malformed.
    #[error("bad frame: {0}")]
    BadFrame(&'static str),
    /// The log refused for another reason (disk full, corruption, ...): the node must stop.
    #[error("log failure: {0}")]
    Failed(String),
}

impl From<journal::JournalError> for LogError {
    fn from(e: journal::JournalError) -> Self {
        match e {
            journal::JournalError::BadFrame(reason) => LogError::BadFrame(reason),
            other => LogError::Failed(other.to_string()),
        }
    }
}

/// A node's durable election state: the highest term it knows and the candidate it voted for in
/// that term. Saved before the node answers anything that depends on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TermVote {
    pub term: u64,
    pub voted_for: Option<crate::protocol::NodeId>,
}

/// File name of the saved [`TermVote`] in a journal directory.
pub const VOTE_FILE: &str = "vote";
const VOTE_FILE_LEN: usize = 24;
const VOTE_MAGIC: u32 = u32::from_le_bytes(*b"VOTE");

impl TermVote {
    /// 24 bytes: magic "VOTE", CRC32C of bytes 8..24, term u64, voted_for u8 (255 = none), zeros.
    fn encode(&self) -> [u8; VOTE_FILE_LEN] {
        let mut bytes = [0u8; VOTE_FILE_LEN];
        bytes[0..4].copy_from_slice(&VOTE_MAGIC.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.term.to_le_bytes());
        bytes[16] = self.voted_for.unwrap_or(u8::MAX);
        let crc = crc32c::crc32c(&bytes[8..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<TermVote> {
        if bytes.len() != VOTE_FILE_LEN
            || bytes[0..4] != VOTE_MAGIC.to_le_bytes()
            || bytes[4..8] != crc32c::crc32c(&bytes[8..]).to_le_bytes()
            || bytes[17..].iter().any(|&b| b != 0)
        {
            return None;
        }
        Some(TermVote {
            term: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            voted_for: (bytes[16] != u8::MAX).then_some(bytes[16]),
        })
    }

    /// Reads the saved vote of a journal directory (the default when there is none).
    pub fn load(dir: &std::path::Path) -> Result<TermVote, LogError> {
        let path = dir.join(VOTE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => TermVote::decode(&bytes).ok_or_else(|| {
                LogError::Failed(format!(
                    "{}: not a valid vote file (24 bytes, magic VOTE, CRC32C)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TermVote::default()),
            Err(e) => Err(LogError::Failed(format!("{}: {e}", path.display()))),
        }
    }

    /// Saves durably: written to a temporary file, synced, renamed over the old one, and the
    /// directory synced, so a crash leaves either the old vote or the new one.
    pub fn save(&self, dir: &std::path::Path) -> Result<(), LogError> {
        use std::io::Write;
        let fail = |what: &str, e: std::io::Error| {
            LogError::Failed(format!("{}: {what}: {e}", dir.join(VOTE_FILE).display()))
        };
        let temporary = dir.join("vote.tmp");
        let mut file = std::fs::File::create(&temporary).map_err(|e| fail("create", e))?;
        file.write_all(&self.encode())
            .map_err(|e| fail("write", e))?;
        file.sync_all().map_err(|e| fail("sync", e))?;
        std::fs::rename(&temporary, dir.join(VOTE_FILE)).map_err(|e| fail("rename", e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("sync directory", e))
    }
}

/// A log of checksummed record frames addressed by position.
pub trait Log {
    /// Position after the last record.
    fn end(&self) -> u64;
    /// Position up to which records are on stable storage (a node acknowledges no further).
    fn durable(&self) -> u64;
    /// Sequence number of the last record (0 when empty).
    fn last_sequence(&self) -> u64;
    /// Term of the last record (0 when empty).
    fn last_term(&self) -> u64;
    /// Appends a record; returns the position after it.
    fn append(&mut self, meta: &RecordMeta, payload: &[u8]) -> Result<u64, LogError>;
    /// Appends a frame copied from another log (checksum checked); returns the position after it.
    fn append_frame(&mut self, frame: &[u8]) -> Result<u64, LogError>;
    /// Calls `f(position, frame)` for each record from `from` (a record boundary) until `f` returns
    /// false or the log ends.
    fn visit(&mut self, from: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), LogError>;
    /// Removes every record after `position` (a record boundary).
    fn truncate_after(&mut self, position: u64) -> Result<(), LogError>;
    /// The saved election state.
    fn vote(&self) -> TermVote;
    /// Saves the election state durably before returning.
    fn save_vote(&mut self, vote: TermVote) -> Result<(), LogError>;
}

/// The header of a frame.
pub fn frame_header(frame: &[u8]) -> RecordHeader {
    RecordHeader::read_from_prefix(frame)
        .expect("frames hold a header")
        .0
}

/// The payload of a frame.
pub fn frame_payload(frame: &[u8]) -> &[u8] {
    &frame[RECORD_HEADER_LEN..]
}

/// [`Log::visit`] over a journal reader: frames from `from` until `f` declines one, leaving the
/// reader before that frame (the next visit from there needs no seek).
fn visit_reader(
    reader: &mut Reader,
    from: u64,
    f: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> Result<(), LogError> {
    if reader.position() != from {
        reader.seek(from);
    }
    while let Some(record) = reader.next_record()? {
        if !f(record.position, record.frame) {
            let position = record.position;
            reader.seek(position);
            break;
        }
    }
    Ok(())
}

/// The real journal as a [`Log`].
pub struct JournalLog {
    journal: Journal,
    reader: Reader,
    vote: TermVote,
}

impl JournalLog {
    /// Wraps an open journal; its directory's vote file (if any) is the saved election state.
    pub fn new(journal: Journal) -> Result<Self, LogError> {
        let reader = journal.reader()?;
        let vote = TermVote::load(journal.dir())?;
        Ok(JournalLog {
            journal,
            reader,
            vote,
        })
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }
}

impl Log for JournalLog {
    fn end(&self) -> u64 {
        self.journal.position()
    }
    fn durable(&self) -> u64 {
        if self.journal.syncs() {
            // Group commit: only what the fdatasync thread has confirmed is acknowledged (and
            // counted by a leader towards the commit).
            self.journal.position_durable().min(self.journal.position())
        } else {
            // SyncPolicy::None: replication is the durability; what is appended counts.
            self.journal.position()
        }
    }
    fn last_sequence(&self) -> u64 {
        self.journal.last_sequence()
    }
    fn last_term(&self) -> u64 {
        self.journal.last_term()
    }
    fn append(&mut self, meta: &RecordMeta, payload: &[u8]) -> Result<u64, LogError> {
        Ok(self.journal.append(meta, payload)?)
    }
    fn append_frame(&mut self, frame: &[u8]) -> Result<u64, LogError> {
        Ok(self.journal.append_frame(frame)?)
    }
    fn visit(&mut self, from: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), LogError> {
        visit_reader(&mut self.reader, from, f)
    }
    fn truncate_after(&mut self, position: u64) -> Result<(), LogError> {
        self.journal.truncate_after(position)?;
        // Segments after `position` are gone: start the reader afresh.
        self.reader = self.journal.reader()?;
        Ok(())
    }
    fn vote(&self) -> TermVote {
        self.vote
    }
    fn save_vote(&mut self, vote: TermVote) -> Result<(), LogError> {
        vote.save(self.journal.dir())?;
        self.vote = vote;
        Ok(())
    }
}

/// An in-memory log with the journal's framing (8-byte aligned frames, CRC32C), for the simulator
/// and tests. Positions are byte offsets into one buffer; durability is simulated: `durable` lags
/// until [`MemLog::sync`], and [`MemLog::crash`] drops what was not durable.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    bytes: Vec<u8>,
    /// Start position of every record, ascending.
    starts: Vec<u64>,
    durable: u64,
    last_sequence: u64,
    last_term: u64,
    /// Saved at once: survives [`MemLog::crash`].
    vote: TermVote,
}

impl MemLog {
    pub fn new() -> Self {
        MemLog::default()
    }

    /// Everything appended becomes durable.
    pub fn sync(&mut self) {
        self.durable = self.bytes.len() as u64;
    }

    /// A crash: what was not durable is lost.
    pub fn crash(&mut self) {
        let durable = self.durable;
        self.cut(durable);
    }

    /// The bytes of the log (for comparing replicas).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn cut(&mut self, position: u64) {
        let keep = self.starts.partition_point(|&s| s < position);
        self.starts.truncate(keep);
        self.bytes.truncate(position as usize);
        self.durable = self.durable.min(position);
        match self.starts.last() {
            Some(&start) => {
                let header = frame_header(&self.bytes[start as usize..]);
                self.last_sequence = header.sequence.get();
                self.last_term = header.term.get();
            }
            None => {
                self.last_sequence = 0;
                self.last_term = 0;
            }
        }
    }

    fn push_frame(&mut self, frame: &[u8], header: &RecordHeader) -> u64 {
        self.starts.push(self.bytes.len() as u64);
        self.bytes.extend_from_slice(frame);
        let aligned = journal::format::align_up(frame.len() as u64) as usize;
        self.bytes
            .resize(self.bytes.len() + aligned - frame.len(), 0);
        self.last_sequence = header.sequence.get();
        self.last_term = header.term.get();
        self.bytes.len() as u64
    }
}

impl Log for MemLog {
    fn end(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn durable(&self) -> u64 {
        self.durable
    }
    fn last_sequence(&self) -> u64 {
        self.last_sequence
    }
    fn last_term(&self) -> u64 {
        self.last_term
    }
    fn append(&mut self, meta: &RecordMeta, payload: &[u8]) -> Result<u64, LogError> {
        if meta.sequence <= self.last_sequence || meta.record_type == 0 {
            return Err(LogError::Failed(
                "sequence not increasing or padding type".into(),
            ));
        }
        let mut header = RecordHeader::new(meta, payload.len());
        header.checksum = header.compute_checksum(payload).into();
        let mut frame = zerocopy::IntoBytes::as_bytes(&header).to_vec();
        frame.extend_from_slice(payload);
        Ok(self.push_frame(&frame, &header))
    }
    fn append_frame(&mut self, frame: &[u8]) -> Result<u64, LogError> {
        if frame.len() < RECORD_HEADER_LEN {
            return Err(LogError::BadFrame("shorter than a record header"));
        }
        let header = frame_header(frame);
        if header.frame_length.get() as usize != frame.len() {
            return Err(LogError::BadFrame(
                "frame length does not match the bytes given",
            ));
        }
        if header.compute_checksum(frame_payload(frame)) != header.checksum.get() {
            return Err(LogError::BadFrame("checksum mismatch"));
        }
        if header.sequence.get() <= self.last_sequence {
            return Err(LogError::BadFrame("sequence not increasing"));
        }
        Ok(self.push_frame(frame, &header))
    }
    fn visit(&mut self, from: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), LogError> {
        let first = self.starts.partition_point(|&s| s < from);
        if first < self.starts.len() && self.starts[first] != from {
            return Err(LogError::Failed(format!("{from} is not a record boundary")));
        }
        for &start in &self.starts[first..] {
            let header = frame_header(&self.bytes[start as usize..]);
            let frame =
                &self.bytes[start as usize..start as usize + header.frame_length.get() as usize];
            if !f(start, frame) {
                break;
            }
        }
        Ok(())
    }
    fn truncate_after(&mut self, position: u64) -> Result<(), LogError> {
        if position > self.end()
            || (position < self.end() && self.starts.binary_search(&position).is_err())
        {
            return Err(LogError::Failed(format!(
                "{position} is not a record boundary"
            )));
        }
        self.cut(position);
        Ok(())
    }
    fn vote(&self) -> TermVote {
        self.vote
    }
    fn save_vote(&mut self, vote: TermVote) -> Result<(), LogError> {
        self.vote = vote;
        Ok(())
    }
}

/// A journal opened read-only (no writer lock, never modified): what replay and audit tools use
/// to apply a journal, possibly while its writer runs.
pub struct ReadOnlyLog {
    reader: Reader,
}

impl ReadOnlyLog {
    pub fn open(dir: &std::path::Path) -> Result<Self, LogError> {
        Ok(ReadOnlyLog {
            reader: Reader::open(dir)?,
        })
    }
}

impl Log for ReadOnlyLog {
    fn end(&self) -> u64 {
        u64::MAX
    }
    fn durable(&self) -> u64 {
        u64::MAX
    }
    fn last_sequence(&self) -> u64 {
        0
    }
    fn last_term(&self) -> u64 {
        0
    }
    fn append(&mut self, _meta: &RecordMeta, _payload: &[u8]) -> Result<u64, LogError> {
        Err(LogError::Failed("read-only log".into()))
    }
    fn append_frame(&mut self, _frame: &[u8]) -> Result<u64, LogError> {
        Err(LogError::Failed("read-only log".into()))
    }
    fn visit(&mut self, from: u64, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), LogError> {
        visit_reader(&mut self.reader, from, f)
    }
    fn truncate_after(&mut self, _position: u64) -> Result<(), LogError> {
        Err(LogError::Failed("read-only log".into()))
    }
    fn vote(&self) -> TermVote {
        TermVote::default()
    }
    fn save_vote(&mut self, _vote: TermVote) -> Result<(), LogError> {
        Err(LogError::Failed("read-only log".into()))
    }
}

#[cfg(test)]
mod durable_tests {
    use super::*;
    use journal::{JournalConfig, SyncPolicy};

    fn log(dir: &std::path::Path, sync: SyncPolicy) -> JournalLog {
        let mut config = JournalConfig::new(dir);
        config.segment_size = 1 << 20;
        config.sync = sync;
        JournalLog::new(Journal::open(config).unwrap()).unwrap()
    }

    fn meta(sequence: u64) -> RecordMeta {
        RecordMeta {
            record_type: 1,
            flags: 0,
            sequence,
            term: 1,
            timestamp_ns: sequence,
        }
    }

    /// With group commit a node acknowledges only what the fdatasync thread has confirmed; with
    /// no sync policy, what is appended.
    #[test]
    fn the_durable_end_follows_the_sync_policy() {
        let dir = tempfile::tempdir().unwrap();
        let mut none = log(&dir.path().join("none"), SyncPolicy::None);
        let end = none.append(&meta(1), &[7; 64]).unwrap();
        assert_eq!(none.durable(), end);

        let mut group = log(&dir.path().join("group"), SyncPolicy::GroupCommit);
        let mut end = 0;
        for sequence in 1..=1000 {
            end = group.append(&meta(sequence), &[7; 64]).unwrap();
            assert!(group.durable() <= end);
            assert_eq!(group.durable(), group.journal().position_durable().min(end));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while group.durable() < end {
            assert!(std::time::Instant::now() < deadline, "never synced");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(group.durable(), end);
    }
}
