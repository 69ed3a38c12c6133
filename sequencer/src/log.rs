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
}

impl JournalLog {
    pub fn new(journal: Journal) -> Result<Self, LogError> {
        let reader = journal.reader()?;
        Ok(JournalLog { journal, reader })
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
        // With SyncPolicy::None replication is the durability: what is appended counts.
        self.journal.position_durable().max(self.journal.position())
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
}
