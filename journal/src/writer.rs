//! The single writer: recovery on open, allocation-free appends, seamless segment rolls, log repair.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::durability::{Durability, Shared};
use crate::error::{CorruptKind, JournalError, Location, Result};
use crate::format::{
    align_up, capacity, payload_len_max, segment_path, validate_segment_size, RecordHeader,
    RecordMeta, CHECKSUM_OFFSET, FIELDS_OFFSET, FRAME_LENGTH_OFFSET, RECORD_HEADER_LEN,
    RECORD_TYPE_PADDING, SEGMENT_HEADER_LEN, SEGMENT_SIZE_DEFAULT,
};
use crate::prepare::Preparer;
use crate::scan::{first_nonzero, judge_frame, Frame};
use crate::segment::{
    create_segment, list_segments, open_segment_writable, sync_dir, SegmentInit, WritableSegment,
};

/// When appended records become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Never sync explicitly: replication is the durability; the OS writes pages back in its own
    /// time. `position_durable` follows `position` only through [`Journal::sync`].
    None,
    /// A background thread batches everything appended since its last sync into one round of
    /// `fdatasync` through io_uring and then advances `position_durable`. Appends never wait.
    GroupCommit,
}

/// Configuration of a journal writer.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The directory of the segment files (created if missing).
    pub dir: PathBuf,
    /// Size of each segment file in bytes, header included; must match existing segments.
    pub segment_size: u64,
    /// Durability policy.
    pub sync: SyncPolicy,
    /// On open, verify the checksum of every record (true), or only of the last segment (false).
    pub verify_all_on_open: bool,
    /// On open, truncate the log to its last valid record when invalid bytes follow it (true), or
    /// refuse to open with [`JournalError::Corrupt`] naming the place (false).
    pub truncate_invalid_tail: bool,
    /// Pre-fault the pages of new segments when they are mapped (read faults: no write-back cost).
    pub populate: bool,
    /// Write-fault every page of each new segment ahead of the writer, off the append path. Makes
    /// the pages dirty, so it applies only with [`SyncPolicy::None`]: with group commit, the first
    /// sync of each segment would write all of it back.
    pub pretouch: bool,
    /// Write real zeros into new segments instead of `posix_fallocate` (off the append path), so
    /// their blocks are allocated and written before use, as databases do for write-ahead logs.
    /// Measured in `benches/benches/journal.rs` for group commit; off by default.
    pub zero_fill: bool,
}

impl JournalConfig {
    pub(crate) fn segment_init(&self) -> SegmentInit {
        SegmentInit {
            populate: self.populate,
            zero_fill: self.zero_fill,
        }
    }

    /// Defaults: 64 MiB segments, no explicit sync, full verification, truncate an invalid tail.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            segment_size: SEGMENT_SIZE_DEFAULT,
            sync: SyncPolicy::None,
            verify_all_on_open: true,
            truncate_invalid_tail: true,
            populate: true,
            pretouch: true,
            zero_fill: false,
        }
    }
}

/// What recovery on open found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Where the first invalid bytes were found.
    pub location: Location,
    /// What was wrong there.
    pub kind: CorruptKind,
    /// The position the log was truncated to (its new end).
    pub truncated_to: u64,
    /// Segment files removed because they lay wholly after the new end.
    pub segments_removed: u64,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in {}: log truncated to position {} ({} later segment(s) removed)",
            self.kind, self.location, self.truncated_to, self.segments_removed
        )
    }
}

/// Counters of a writer's life, cheap to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub records_appended: u64,
    pub segment_rolls: u64,
    /// Rolls that had to create the next segment on the spot because none was prepared.
    pub roll_stalls: u64,
}

/// The single writer of a journal directory. See the crate documentation.
pub struct Journal {
    dir: PathBuf,
    segment_size: u64,
    capacity: u64,
    current: WritableSegment,
    /// Data offset in `current` where the next record goes; in `0..=capacity`.
    offset: u64,
    last_sequence: u64,
    last_term: u64,
    preparer: Preparer,
    shared: Arc<Shared>,
    durability: Option<Durability>,
    recovery: Option<RecoveryReport>,
    stats: WriterStats,
    payload_len_max: usize,
    _lock: LockFile,
}

struct LockFile {
    _file: File,
}

impl LockFile {
    fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join("writer.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        // SAFETY: plain syscall on a descriptor we own; the lock is released when the file closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(JournalError::Locked { path });
        }
        Ok(LockFile { _file: file })
    }
}

impl Journal {
    /// Opens (or creates) the journal in `config.dir`, recovering its tail. See [`RecoveryReport`].
    pub fn open(config: JournalConfig) -> Result<Journal> {
        validate_segment_size(config.segment_size).map_err(JournalError::Config)?;
        std::fs::create_dir_all(&config.dir).map_err(|e| JournalError::io(&config.dir, e))?;
        let lock = LockFile::acquire(&config.dir)?;
        let dir = config.dir.clone();
        let segment_size = config.segment_size;
        let capacity = capacity(segment_size);
        let indexes = list_segments(&dir)?;
        let init = config.segment_init();

        let mut recovery = None;
        let (current, offset, last_sequence, last_term) = if indexes.is_empty() {
            (create_segment(&dir, 0, segment_size, init)?, 0, 0, 0)
        } else {
            let found = recover(&config, &indexes, capacity)?;
            recovery = found.report;
            (
                found.current,
                found.offset,
                found.last_sequence,
                found.last_term,
            )
        };
        let position = current.index * capacity + offset;
        // Whatever is in the files now is made durable before anyone is told about it.
        current
            .file
            .sync_data()
            .map_err(|e| JournalError::io(&current.path, e))?;
        let shared = Arc::new(Shared::new(position, capacity));
        shared.register(current.index, Arc::clone(&current.file));
        let pretouch = config.pretouch && config.sync == SyncPolicy::None;
        let mut preparer = Preparer::start(dir.clone(), segment_size, init, pretouch)?;
        preparer.request(current.index + 1);
        let durability = match config.sync {
            SyncPolicy::None => None,
            SyncPolicy::GroupCommit => Some(Durability::start(Arc::clone(&shared))?),
        };
        Ok(Journal {
            dir,
            segment_size,
            capacity,

            current,
            offset,
            last_sequence,
            last_term,
            preparer,
            shared,
            durability,
            recovery,
            stats: WriterStats::default(),
            payload_len_max: payload_len_max(segment_size),
            _lock: lock,
        })
    }

    /// The directory of the journal.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segment size in bytes.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// The position after the last record: where the next record goes.
    pub fn position(&self) -> u64 {
        self.current.index * self.capacity + self.offset
    }

    /// The position up to which records are known to be on stable storage.
    pub fn position_durable(&self) -> u64 {
        self.shared.position_durable()
    }

    /// The sequence number of the last record (0 for an empty journal).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// The term of the last record (0 for an empty journal).
    pub fn last_term(&self) -> u64 {
        self.last_term
    }

    /// What recovery did on open, if it found anything invalid.
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// Counters of this writer.
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// The largest payload one record may carry.
    pub fn payload_len_max(&self) -> usize {
        self.payload_len_max
    }

    /// Whether a group-commit thread makes appended records durable (`SyncPolicy::GroupCommit`);
    /// with `SyncPolicy::None` nothing is synced explicitly.
    pub fn syncs(&self) -> bool {
        self.durability.is_some()
    }

    /// How many rounds of fdatasync the group-commit thread has made.
    pub fn sync_rounds(&self) -> u64 {
        self.shared.sync_rounds()
    }

    /// Appends one record and returns the position after it.
    pub fn append(&mut self, meta: &RecordMeta, payload: &[u8]) -> Result<u64> {
        self.append_with(meta, payload.len(), |buffer| {
            buffer.copy_from_slice(payload)
        })
    }

    /// Appends one record whose payload of `payload_len` bytes `fill` writes in place, directly into
    /// the mapping (no copy). Returns the position after the record. `fill` sees zeroed bytes.
    pub fn append_with(
        &mut self,
        meta: &RecordMeta,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64> {
        if meta.record_type == RECORD_TYPE_PADDING {
            return Err(JournalError::ReservedRecordType);
        }
        if meta.sequence <= self.last_sequence {
            return Err(JournalError::SequenceNotIncreasing {
                sequence: meta.sequence,
                last: self.last_sequence,
            });
        }
        if payload_len > self.payload_len_max {
            return Err(JournalError::RecordTooLarge {
                len: payload_len,
                max: self.payload_len_max,
            });
        }
        self.shared.check_failed()?;
        let aligned = align_up((RECORD_HEADER_LEN + payload_len) as u64);
        if self.offset + aligned > self.capacity {
            self.roll()?;
        }
        let file_offset = (SEGMENT_HEADER_LEN + self.offset) as usize;
        let frame = &mut self.current.map[file_offset..file_offset + aligned as usize];
        debug_assert!(frame.iter().all(|&b| b == 0), "writing over unzeroed bytes");
        fill(&mut frame[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload_len]);
        let frame_length = (RECORD_HEADER_LEN + payload_len) as u32;
        write_header_in_place(frame, meta, frame_length);
        // Everything but the frame length first; the frame length last, with release ordering, so a
        // reader that sees it non-zero sees the whole record.
        self.publish_frame_length(file_offset, frame_length);
        self.offset += aligned;
        self.last_sequence = meta.sequence;
        self.last_term = meta.term;
        self.stats.records_appended += 1;
        let position = self.position();
        self.shared
            .publish_appended(position, self.durability.as_ref());
        Ok(position)
    }

    /// Appends a complete record frame (header and payload, as read from another journal) after
    /// checking its checksum and sequence: how a follower copies the leader's log byte for byte.
    pub fn append_frame(&mut self, frame: &[u8]) -> Result<u64> {
        let (header, rest) = zerocopy::FromBytes::read_from_prefix(frame)
            .map_err(|_| JournalError::BadFrame("shorter than a record header"))?;
        let header: RecordHeader = header;
        let frame_length = header.frame_length.get() as usize;
        if frame_length < RECORD_HEADER_LEN || frame_length > frame.len() {
            return Err(JournalError::BadFrame(
                "frame length does not match the bytes given",
            ));
        }
        if header.reserved.get() != 0 || header.record_type.get() == RECORD_TYPE_PADDING {
            return Err(JournalError::BadFrame(
                "reserved field set or padding record",
            ));
        }
        let payload = &rest[..frame_length - RECORD_HEADER_LEN];
        if header.compute_checksum(payload) != header.checksum.get() {
            return Err(JournalError::BadFrame("checksum mismatch"));
        }
        self.append(&header.meta(), payload)
    }

    fn publish_frame_length(&mut self, file_offset: usize, frame_length: u32) {
        let file_offset = file_offset + FRAME_LENGTH_OFFSET;
        assert!(file_offset.is_multiple_of(4) && file_offset + 4 <= self.current.map.len());
        // SAFETY: the offset is inside the mapping and 8-aligned (the mapping is page-aligned); no
        // Rust reference to these 4 bytes is alive; readers access them only atomically.
        unsafe {
            AtomicU32::from_ptr(self.current.map.as_mut_ptr().add(file_offset) as *mut u32)
                .store(frame_length, Ordering::Release);
        }
    }

    fn roll(&mut self) -> Result<()> {
        // The next segment exists on disk before the padding that sends readers to it is published.
        let (next, waited) = self.preparer.take(self.current.index + 1)?;
        if waited {
            self.stats.roll_stalls += 1;
        }
        self.shared.register(next.index, Arc::clone(&next.file));
        self.preparer.request(next.index + 1);
        let remaining = self.capacity - self.offset;
        if remaining >= RECORD_HEADER_LEN as u64 {
            let meta = RecordMeta {
                record_type: RECORD_TYPE_PADDING,
                ..Default::default()
            };
            let file_offset = (SEGMENT_HEADER_LEN + self.offset) as usize;
            let frame_length = remaining as u32;
            let frame = &mut self.current.map[file_offset..file_offset + RECORD_HEADER_LEN];
            write_header_in_place(frame, &meta, frame_length);
            self.publish_frame_length(file_offset, frame_length);
        }
        self.current = next;
        self.offset = 0;
        self.stats.segment_rolls += 1;
        let position = self.position();
        self.shared
            .publish_appended(position, self.durability.as_ref());
        Ok(())
    }

    /// Syncs everything appended so far to stable storage now, and advances `position_durable`.
    pub fn sync(&mut self) -> Result<()> {
        self.shared.sync_now()
    }

    /// Log repair: removes every record after `position`, which must be a record boundary at or
    /// before the end. Readers positioned after `position` must be stopped first; records at or before
    /// a commit position must never be truncated (the consensus layer guarantees it).
    pub fn truncate_after(&mut self, position: u64) -> Result<()> {
        let end = self.position();
        if position > end {
            return Err(JournalError::NotRecordBoundary { position, end });
        }
        if position == end {
            return Ok(());
        }
        let first_index = self.shared.first_index();
        if position < first_index * self.capacity || !self.is_record_boundary(position)? {
            return Err(JournalError::NotRecordBoundary { position, end });
        }
        // The segment that will hold the end: at a segment boundary, the end of the previous one.
        let (index, offset) =
            if position.is_multiple_of(self.capacity) && position > first_index * self.capacity {
                (position / self.capacity - 1, self.capacity)
            } else {
                (position / self.capacity, position % self.capacity)
            };
        self.preparer.discard()?;

        let mut segment = if index == self.current.index {
            None
        } else {
            Some(
                open_segment_writable(
                    &segment_path(&self.dir, index),
                    index,
                    Some(self.segment_size),
                )?
                .0,
            )
        };
        let target = segment.as_mut().unwrap_or(&mut self.current);
        zero_tail(&mut target.map, offset);
        target
            .file
            .sync_data()
            .map_err(|e| JournalError::io(&target.path, e))?;
        if let Some(segment) = segment {
            self.current = segment;
        }
        self.offset = offset;
        // Remove every later segment, newest first, so a crash in between leaves a valid prefix.
        let last = self.shared.last_index().max(self.current.index);
        for later in (index + 1..=last).rev() {
            let path = segment_path(&self.dir, later);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(JournalError::io(&path, e)),
            }
        }
        sync_dir(&self.dir)?;
        self.shared
            .truncated(position, index, Arc::clone(&self.current.file));
        let (last_sequence, last_term) = self.last_record_before(position)?;
        self.last_sequence = last_sequence;
        self.last_term = last_term;
        self.preparer.request(self.current.index + 1);
        Ok(())
    }

    fn is_record_boundary(&self, position: u64) -> Result<bool> {
        let mut reader = crate::Reader::open_at_segment_start(&self.dir, position / self.capacity)?;
        loop {
            if reader.position() == position {
                return Ok(true);
            }
            if reader.position() > position {
                return Ok(false);
            }
            match reader.next_record()? {
                Some(_) => {}
                None => return Ok(reader.position() == position),
            }
        }
    }

    fn last_record_before(&self, position: u64) -> Result<(u64, u64)> {
        let first_index = self.shared.first_index();
        let mut index = position.saturating_sub(1) / self.capacity;
        loop {
            let mut reader = crate::Reader::open_at_segment_start(&self.dir, index)?;
            let mut last = None;
            while reader.position() < position {
                match reader.next_record()? {
                    Some(record) => last = Some((record.meta.sequence, record.meta.term)),
                    None => break,
                }
            }
            if let Some(found) = last {
                return Ok(found);
            }
            if index == first_index || index == 0 {
                return Ok((0, 0));
            }
            index -= 1;
        }
    }

    /// A reader of this journal from its first record.
    pub fn reader(&self) -> Result<crate::Reader> {
        crate::Reader::open(&self.dir)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(durability) = self.durability.take() {
            durability.stop();
        }
    }
}

/// Writes a record header into `frame` (header and payload already in place), all but the frame
/// length, which the caller publishes last. The checksum covers the frame length, the rest of the
/// header and the payload in one pass.
#[inline]
fn write_header_in_place(frame: &mut [u8], meta: &RecordMeta, frame_length: u32) {
    frame[FIELDS_OFFSET..FIELDS_OFFSET + 2].copy_from_slice(&meta.record_type.to_le_bytes());
    frame[FIELDS_OFFSET + 2..FIELDS_OFFSET + 4].copy_from_slice(&meta.flags.to_le_bytes());
    frame[FIELDS_OFFSET + 4..FIELDS_OFFSET + 8].copy_from_slice(&0u32.to_le_bytes());
    frame[FIELDS_OFFSET + 8..FIELDS_OFFSET + 16].copy_from_slice(&meta.sequence.to_le_bytes());
    frame[FIELDS_OFFSET + 16..FIELDS_OFFSET + 24].copy_from_slice(&meta.term.to_le_bytes());
    frame[FIELDS_OFFSET + 24..FIELDS_OFFSET + 32].copy_from_slice(&meta.timestamp_ns.to_le_bytes());
    let end = if meta.record_type == RECORD_TYPE_PADDING {
        RECORD_HEADER_LEN
    } else {
        frame_length as usize
    };
    let crc = crc32c::crc32c(&frame_length.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &frame[FIELDS_OFFSET..end]);
    frame[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Zeroes the data region of a segment from `offset` on, touching only pages that hold non-zero
/// bytes (so a clean tail is not dirtied).
fn zero_tail(map: &mut [u8], offset: u64) {
    let start = (SEGMENT_HEADER_LEN + offset) as usize;
    let mut chunk_start = start;
    while chunk_start < map.len() {
        let chunk_end = ((chunk_start / 4096 + 1) * 4096).min(map.len());
        let chunk = &mut map[chunk_start..chunk_end];
        if first_nonzero(chunk).is_some() {
            chunk.fill(0);
        }
        chunk_start = chunk_end;
    }
}

struct Recovered {
    current: WritableSegment,
    offset: u64,
    last_sequence: u64,
    last_term: u64,
    report: Option<RecoveryReport>,
}

/// Scans the segments, finds the end of the valid log, checks that nothing follows it, and truncates
/// (or refuses, per configuration) when something does.
fn recover(config: &JournalConfig, indexes: &[u64], capacity: u64) -> Result<Recovered> {
    let dir = &config.dir;
    let segment_size = config.segment_size;
    let first = indexes[0];
    let last = *indexes.last().expect("not empty");
    let mut last_sequence = 0;
    let mut last_term = 0;
    let mut problem: Option<(CorruptKind, Location)> = None;
    // (segment, end offset) of the valid log.
    let mut end: Option<(WritableSegment, u64)> = None;

    for (i, &index) in indexes.iter().enumerate() {
        let path = segment_path(dir, index);
        if index != first + i as u64 {
            let missing = first + i as u64;
            problem = Some((
                CorruptKind::MissingSegment,
                Location {
                    path: segment_path(dir, missing),
                    segment_index: missing,
                    file_offset: 0,
                    position: missing * capacity,
                },
            ));
            break;
        }
        let segment = match open_segment_writable(&path, index, Some(segment_size)) {
            Ok((segment, _)) => segment,
            Err(JournalError::Corrupt { kind, location }) => {
                problem = Some((kind, location));
                break;
            }
            Err(e) => return Err(e),
        };
        let verify = config.verify_all_on_open || index == last;
        let base = segment.map.as_ptr();
        let len = segment.map.len() as u64;
        let mut offset = 0u64;
        let outcome = loop {
            // SAFETY: `base` is the live mapping of `len` bytes owned by `segment`.
            match unsafe { judge_frame(base, len, offset, verify, last_sequence) } {
                Frame::Record {
                    header,
                    aligned_length,
                } => {
                    last_sequence = header.sequence.get();
                    last_term = header.term.get();
                    offset += aligned_length;
                }
                other => break other,
            }
        };
        match outcome {
            Frame::EndOfSegment => {
                end = Some((segment, capacity));
            }
            Frame::Empty => {
                end = Some((segment, offset));
                break;
            }
            Frame::Invalid(kind) => {
                problem = Some((
                    kind,
                    Location {
                        path: path.clone(),
                        segment_index: index,
                        file_offset: SEGMENT_HEADER_LEN + offset,
                        position: index * capacity + offset,
                    },
                ));
                end = Some((segment, offset));
                break;
            }
            Frame::Record { .. } => unreachable!("records continue the loop"),
        }
    }

    // The valid log ends in `end`; a padded-out last segment ends at its capacity.
    let (mut current, offset) = match end {
        Some(end) => end,
        None => {
            // Not even the first segment is valid: start over at its index.
            let _ = std::fs::remove_file(segment_path(dir, first));
            (
                create_segment(dir, first, segment_size, config.segment_init())?,
                0,
            )
        }
    };
    let end_position = current.index * capacity + offset;

    // Whatever lies after the end must be zero: in the end segment, and in any later segment.
    if problem.is_none() {
        let tail = &current.map[(SEGMENT_HEADER_LEN + offset) as usize..];
        if let Some(at) = first_nonzero(tail) {
            let file_offset = SEGMENT_HEADER_LEN + offset + at as u64;
            problem = Some((
                CorruptKind::GarbageAfterEnd,
                Location {
                    path: current.path.clone(),
                    segment_index: current.index,
                    file_offset,
                    position: current.index * capacity + offset + at as u64,
                },
            ));
        }
    }
    let later: Vec<u64> = indexes
        .iter()
        .copied()
        .filter(|&i| i > current.index)
        .collect();
    if problem.is_none() {
        for &index in &later {
            let path = segment_path(dir, index);
            let data = std::fs::read(&path).map_err(|e| JournalError::io(&path, e))?;
            let data_start = (SEGMENT_HEADER_LEN as usize).min(data.len());
            // A prepared, still-empty segment is normal; anything written in one is not.
            let header_ok =
                crate::segment::validate_header(&data, &path, index, Some(segment_size)).is_ok();
            let garbage = if header_ok {
                first_nonzero(&data[data_start..]).map(|at| at + data_start)
            } else {
                Some(0)
            };
            if let Some(at) = garbage {
                problem = Some((
                    CorruptKind::GarbageAfterEnd,
                    Location {
                        path,
                        segment_index: index,
                        file_offset: at as u64,
                        position: index * capacity + (at as u64).saturating_sub(SEGMENT_HEADER_LEN),
                    },
                ));
                break;
            }
        }
    }

    let report = match problem {
        None => None,
        Some((kind, location)) => {
            if !config.truncate_invalid_tail {
                return Err(JournalError::Corrupt { kind, location });
            }
            zero_tail(&mut current.map, offset);
            current
                .file
                .sync_data()
                .map_err(|e| JournalError::io(&current.path, e))?;
            Some(RecoveryReport {
                location,
                kind,
                truncated_to: end_position,
                segments_removed: 0,
            })
        }
    };
    // Later segments hold nothing of the log (or only invalid bytes): remove them, newest first.
    let mut removed = 0;
    for &index in later.iter().rev() {
        let path = segment_path(dir, index);
        std::fs::remove_file(&path).map_err(|e| JournalError::io(&path, e))?;
        removed += 1;
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    let report = report.map(|mut report| {
        report.segments_removed = removed;
        report
    });
    Ok(Recovered {
        current,
        offset,
        last_sequence,
        last_term,
        report,
    })
}
