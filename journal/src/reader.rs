//! Readers (tailers): any number, in this process or another, follow the writer across segment rolls.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{JournalError, Location, Result};
use crate::format::{capacity, segment_path, RecordMeta, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::scan::{judge_frame, Frame};
use crate::segment::{list_segments, open_segment_readonly};

/// Bytes of log between two entries of a reader's sparse sequence index.
pub const INDEX_STRIDE_BYTES: u64 = 64 * 1024;
/// How far ahead of the record it returns a reader starts loading the mapping's bytes: a few
/// records of the usual size. Page-cache pages are scattered in physical memory, so the
/// hardware prefetcher, which stops at page boundaries, leaves a miss at every page; a reader
/// that does work between records (replay) would wait for each.
pub const READ_PREFETCH_BYTES: usize = 512;
/// Mappings a reader keeps besides its current one.
pub const SPARE_MAPPINGS_MAX: usize = 3;
/// Most segments whose sparse index a reader keeps.
pub const INDEXED_SEGMENTS_MAX: usize = 4096;

/// One record, borrowed from the mapping (valid until the reader moves on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Position of the record's header.
    pub position: u64,
    /// Position after the record (its aligned frame): where the next record starts.
    pub next_position: u64,
    /// The record's metadata.
    pub meta: RecordMeta,
    /// The payload.
    pub payload: &'a [u8],
    /// The whole frame, header and payload (without alignment padding): what replication sends.
    pub frame: &'a [u8],
}

/// Starts loading the cache line holding `pointer`: a hint, never a fault, no effect on state.
#[inline(always)]
fn prefetch_read(pointer: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only hints the cache: it reads nothing architecturally and cannot
    // fault (and `pointer` points into a live mapping anyway). SSE is in the x86_64 baseline.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(pointer.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pointer;
}

/// A reader of a journal directory. It maps segments read-only, one at a time, and never writes.
pub struct Reader {
    dir: PathBuf,
    segment_size: u64,
    capacity: u64,
    current: Option<(u64, Mmap)>,
    /// Recently used mappings besides the current one (a reader that seeks back and forth between
    /// a few segments, like a leader serving several followers, keeps them mapped).
    spare: Vec<(u64, Mmap)>,
    position: u64,
    /// `position / capacity` and `position % capacity`, kept incrementally (no division per record).
    segment: u64,
    data_offset: u64,
    last_sequence: u64,
    verify: bool,
    /// Per complete segment: (sequence, position) of the first record at or after every
    /// `INDEX_STRIDE_BYTES` boundary. Rebuilt from the data on demand.
    index: BTreeMap<u64, Vec<(u64, u64)>>,
}

impl Reader {
    /// Opens a reader at the first record of the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Reader> {
        let indexes = list_segments(dir)?;
        let Some(&first) = indexes.first() else {
            return Err(JournalError::Config(format!(
                "no journal segments in {}",
                dir.display()
            )));
        };
        Self::open_at_segment_start(dir, first)
    }

    pub(crate) fn open_at_segment_start(dir: &Path, index: u64) -> Result<Reader> {
        let path = segment_path(dir, index);
        let Some((map, header)) = open_segment_readonly(&path, index, None)? else {
            return Err(JournalError::Config(format!(
                "no segment {}",
                path.display()
            )));
        };
        let segment_size = header.segment_size.get();
        let capacity = capacity(segment_size);
        Ok(Reader {
            dir: dir.to_path_buf(),
            segment_size,
            capacity,
            current: Some((index, map)),
            spare: Vec::with_capacity(SPARE_MAPPINGS_MAX),
            position: index * capacity,
            segment: index,
            data_offset: 0,
            last_sequence: 0,
            verify: true,
            index: BTreeMap::new(),
        })
    }

    /// Whether checksums are verified on read (default true).
    pub fn set_verify(&mut self, verify: bool) {
        self.verify = verify;
    }

    /// The position of the next record to be read.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The segment size of the journal.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Moves to `position`, which must be a record boundary (a record's position or the end); a
    /// position that is not one is reported as corruption by the next read.
    pub fn seek(&mut self, position: u64) {
        self.position = position;
        self.segment = position / self.capacity;
        self.data_offset = position % self.capacity;
        self.last_sequence = 0;
    }

    /// Makes segment `index` the current mapping: from the spares, or by mapping it. `Ok(false)`
    /// when the segment does not exist (yet).
    fn map_segment(&mut self, index: u64) -> Result<bool> {
        if let Some(at) = self.spare.iter().position(|(i, _)| *i == index) {
            let found = self.spare.swap_remove(at);
            if let Some(previous) = self.current.replace(found) {
                self.spare.push(previous);
            }
            return Ok(true);
        }
        let path = segment_path(&self.dir, index);
        let Some((map, _)) = open_segment_readonly(&path, index, Some(self.segment_size))? else {
            return Ok(false);
        };
        if let Some(previous) = self.current.replace((index, map)) {
            if self.spare.len() == SPARE_MAPPINGS_MAX {
                // Forget the lowest segment: readers mostly move forward.
                let lowest = (0..self.spare.len())
                    .min_by_key(|&i| self.spare[i].0)
                    .expect("not empty");
                self.spare.swap_remove(lowest);
            }
            self.spare.push(previous);
        }
        Ok(true)
    }

    /// Reads the next record: `Ok(None)` when there is none yet (the reader may try again later and
    /// will see what the writer appends). A corrupt record is an error naming its place; the reader
    /// stays before it.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>> {
        loop {
            let index = self.segment;
            let data_offset = self.data_offset;
            if self.current.as_ref().map(|(i, _)| *i) != Some(index) && !self.map_segment(index)? {
                return Ok(None);
            }
            let (_, map) = self.current.as_ref().expect("mapped above");
            let base = map.as_ptr();
            let len = map.len() as u64;
            // SAFETY: `base` is the live mapping of `len` bytes held in `self.current`.
            match unsafe { judge_frame(base, len, data_offset, self.verify, self.last_sequence) } {
                Frame::Record {
                    header,
                    aligned_length,
                } => {
                    let file_offset = (SEGMENT_HEADER_LEN + data_offset) as usize;
                    let frame_length = header.frame_length.get() as usize;
                    // SAFETY: the published frame lies inside the mapping (checked by judge_frame)
                    // and is never written again while the segment is mapped.
                    let frame =
                        unsafe { std::slice::from_raw_parts(base.add(file_offset), frame_length) };
                    // Two cache lines a few records ahead: a record of the usual size spans two.
                    for ahead in [READ_PREFETCH_BYTES, READ_PREFETCH_BYTES + 64] {
                        let at = (file_offset + ahead).min(map.len() - 1);
                        prefetch_read(map[at..].as_ptr());
                    }
                    let position = self.position;
                    self.position += aligned_length;
                    self.data_offset += aligned_length;
                    self.last_sequence = header.sequence.get();
                    return Ok(Some(Record {
                        position,
                        next_position: self.position,
                        meta: header.meta(),
                        payload: &frame[RECORD_HEADER_LEN..],
                        frame,
                    }));
                }
                Frame::EndOfSegment => {
                    self.segment = index + 1;
                    self.data_offset = 0;
                    self.position = self.segment * self.capacity;
                }
                Frame::Empty => return Ok(None),
                Frame::Invalid(kind) => {
                    return Err(JournalError::Corrupt {
                        kind,
                        location: Location {
                            path: segment_path(&self.dir, index),
                            segment_index: index,
                            file_offset: SEGMENT_HEADER_LEN + data_offset,
                            position: self.position,
                        },
                    })
                }
            }
        }
    }

    /// Positions the reader at the first record whose sequence is at least `sequence` (or at the end
    /// of the log if there is none). Binary search over the segments' first records, then the
    /// segment's sparse index, then a short scan.
    pub fn seek_sequence(&mut self, sequence: u64) -> Result<()> {
        let indexes = list_segments(&self.dir)?;
        if indexes.is_empty() {
            return Ok(());
        }
        // The last segment whose first record has a sequence <= target.
        let (mut low, mut high) = (0usize, indexes.len());
        while high - low > 1 {
            let middle = (low + high) / 2;
            match self.first_sequence_of(indexes[middle])? {
                Some(first) if first <= sequence => low = middle,
                _ => high = middle,
            }
        }
        let segment = indexes[low];
        let is_last = low == indexes.len() - 1;
        let mut start = segment * self.capacity;
        if !is_last {
            if !self.index.contains_key(&segment) && self.index.len() < INDEXED_SEGMENTS_MAX {
                let entries = self.build_segment_index(segment)?;
                self.index.insert(segment, entries);
            }
            if let Some(entries) = self.index.get(&segment) {
                let at = entries.partition_point(|&(s, _)| s <= sequence);
                if at > 0 {
                    start = entries[at - 1].1;
                }
            }
        }
        self.seek(start);
        loop {
            let before = self.position;
            match self.next_record()? {
                Some(record) if record.meta.sequence >= sequence => {
                    let position = record.position;
                    self.seek(position);
                    return Ok(());
                }
                Some(_) => {}
                None => {
                    self.seek(before.max(self.position));
                    return Ok(());
                }
            }
        }
    }

    fn first_sequence_of(&mut self, segment: u64) -> Result<Option<u64>> {
        let saved = (self.position, self.last_sequence);
        let capacity = self.capacity;
        self.seek(segment * capacity);
        let first = match self.next_record()? {
            Some(record) if record.position / capacity == segment => Some(record.meta.sequence),
            _ => None,
        };
        self.seek(saved.0);
        self.last_sequence = saved.1;
        Ok(first)
    }

    fn build_segment_index(&mut self, segment: u64) -> Result<Vec<(u64, u64)>> {
        let mut entries = Vec::with_capacity((self.capacity / INDEX_STRIDE_BYTES + 1) as usize);
        let capacity = self.capacity;
        self.seek(segment * capacity);
        let mut next_boundary = segment * capacity;
        while let Some(record) = self.next_record()? {
            if record.position / capacity != segment {
                break;
            }
            if record.position >= next_boundary {
                entries.push((record.meta.sequence, record.position));
                next_boundary = (record.position / INDEX_STRIDE_BYTES + 1) * INDEX_STRIDE_BYTES;
            }
            if self.position / self.capacity != segment {
                break;
            }
        }
        Ok(entries)
    }
}
