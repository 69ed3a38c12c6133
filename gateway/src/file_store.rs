//! [`FileStore`]: a session store that survives a gateway restart, `kill -9` included.
//!
//! Every change is a record in a [`journal::Journal`] (memory-mapped, checksummed, torn-tail
//! recovery) in the session's own directory; the recent window of sent messages is also kept in
//! a [`MemoryStore`], from which `sent()` answers. A call that returned `Ok` has written its
//! record into the mapping, which the kernel holds for the file whatever happens to the process;
//! surviving a power loss as well needs [`SyncPolicy::GroupCommit`] or [`FileStore::sync`].
//!
//! # Layout
//!
//! ```text
//! <dir>/store.lock                       flock: one store per directory
//! <dir>/generation-0000000007/           the current generation: one journal
//!     segment-0000000000.journal ...     (journal segment files, `segment_size` each)
//! ```
//!
//! A generation's journal starts with a snapshot record (the sequence numbers, and how many
//! sent-message records follow as its window), then sent-message records (MsgSeqNum and bytes)
//! and next-target records in the order the session made them. Opening replays the current
//! generation into the memory window: the window after a reopen is exactly the window before it,
//! because the live window is always what that replay gives (it is rebuilt by the same replay
//! whenever a generation starts).
//!
//! # What grows, and its bound
//!
//! A generation grows by one record per message sent and per change of the expected inbound
//! number. Before an append would start past `generation_bytes_max`, the store *compacts*: it
//! writes a new generation holding only the snapshot and the window, makes it durable, switches
//! to it and deletes the old one. A reset (ResetSeqNumFlag) starts a new, empty generation the
//! same way. So one session's directory holds at most `generation_bytes_max` plus one record and
//! two segments (the current one and the next, prepared ahead), twice that during a
//! compaction. Each compaction copies at most the window on the caller's thread (plus two
//! `fsync`s); the configuration check makes sure it frees at least three quarters of what it
//! read, so it happens at most once per `generation_bytes_max / 2` bytes appended.
//!
//! # Crashes
//!
//! A new generation counts only once its snapshot and all its window records are present; a
//! newer, incomplete generation (a compaction or reset cut short) is deleted on open and the
//! previous one used (the operation that started it never returned `Ok`). The old generation
//! is deleted only after the new one is synced. A torn tail inside a generation is cut back to
//! the last whole record by the journal ([`FileStore::recovery`] says what was cut).

use crate::codec::MESSAGE_LENGTH_MAX;
use crate::store::{MemoryStore, MessageStore, Sequences, StoreError};
use journal::format::{capacity, payload_len_max, segment_path};
use journal::{
    Journal, JournalConfig, JournalError, Reader, RecordMeta, RecoveryReport, SyncPolicy,
    RECORD_HEADER_LEN,
};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Default size of one journal segment file of a [`FileStore`].
pub const FILE_STORE_SEGMENT_SIZE_DEFAULT: u64 = 1 << 20;
/// Default bound on one generation's journal before it is compacted.
pub const FILE_STORE_GENERATION_BYTES_DEFAULT: u64 = 32 << 20;

/// Record type: the first record of a generation (sequence numbers and window length).
const RECORD_SNAPSHOT: u16 = 1;
/// Record type: a sent message (MsgSeqNum, then the message).
const RECORD_SENT: u16 = 2;
/// Record type: the next expected inbound MsgSeqNum.
const RECORD_NEXT_TARGET: u16 = 3;

/// Snapshot payload: next_sender, next_target, window messages that follow, generation (u64 LE).
const SNAPSHOT_LENGTH: usize = 32;
/// Sent-message payload prefix: the MsgSeqNum (u64 LE).
const SENT_PREFIX_LENGTH: usize = 8;
/// Next-target payload: the number (u64 LE).
const NEXT_TARGET_LENGTH: usize = 8;
/// Journal frames are 8-byte aligned: at most this many padding bytes per record.
const RECORD_ALIGN_SLACK: usize = 7;

const _: () = assert!(RECORD_HEADER_LEN.is_multiple_of(8));
// The smallest journal segment holds eight largest messages: a segment roll wastes at most an
// eighth of a segment, which the compaction bound below relies on.
const _: () = assert!(journal::format::SEGMENT_SIZE_MIN as usize >= 8 * MESSAGE_LENGTH_MAX);

/// Why a generation was started: the snapshot record's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
enum Origin {
    /// The store's directory was empty.
    Created = 1,
    /// ResetSeqNumFlag: both numbers back to 1, nothing held.
    Reset = 2,
    /// The previous generation reached `generation_bytes_max`.
    Compacted = 3,
}

const GENERATION_PREFIX: &str = "generation-";
/// Generation numbers are written with ten digits.
const GENERATION_MAX: u64 = 9_999_999_999;
const LOCK_FILE_NAME: &str = "store.lock";

/// Configuration of a [`FileStore`].
#[derive(Clone, Debug)]
pub struct FileStoreConfig {
    /// The session's directory (created if missing); one directory per session.
    pub dir: PathBuf,
    /// Bytes of sent messages kept for resends (as [`MemoryStore::new`]); at least
    /// [`MESSAGE_LENGTH_MAX`].
    pub window_bytes_max: usize,
    /// Messages kept for resends (as [`MemoryStore::new`]); at least 1.
    pub window_messages_max: usize,
    /// Size of each journal segment file (see `journal::format` for the range).
    pub segment_size: u64,
    /// A generation is compacted before its journal would grow past this; at least four times
    /// what a compacted generation can take ([`FileStoreConfig::compacted_bytes_max`]).
    pub generation_bytes_max: u64,
    /// When records reach stable storage: [`SyncPolicy::None`] survives the process being
    /// killed (the kernel holds the mapped pages); [`SyncPolicy::GroupCommit`] also a power
    /// loss, a few milliseconds behind.
    pub sync: SyncPolicy,
}

impl FileStoreConfig {
    /// Defaults: the memory store's window, 1 MiB segments, 32 MiB generations, no explicit sync.
    pub fn new(dir: impl Into<PathBuf>) -> FileStoreConfig {
        FileStoreConfig {
            dir: dir.into(),
            window_bytes_max: crate::store::MEMORY_STORE_BYTES_DEFAULT,
            window_messages_max: crate::store::MEMORY_STORE_MESSAGES_DEFAULT,
            segment_size: FILE_STORE_SEGMENT_SIZE_DEFAULT,
            generation_bytes_max: FILE_STORE_GENERATION_BYTES_DEFAULT,
            sync: SyncPolicy::None,
        }
    }

    /// The most journal bytes a freshly compacted generation takes: its snapshot and a full
    /// window, every record with its header and alignment.
    pub fn compacted_bytes_max(&self) -> u64 {
        let snapshot = RECORD_HEADER_LEN + SNAPSHOT_LENGTH;
        let per_message = RECORD_HEADER_LEN + SENT_PREFIX_LENGTH + RECORD_ALIGN_SLACK;
        (snapshot as u64)
            .saturating_add(self.window_bytes_max as u64)
            .saturating_add((self.window_messages_max as u64).saturating_mul(per_message as u64))
    }

    /// Checks the ranges and the relations between them.
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |text: String| Err(StoreError::Config(text));
        if self.window_bytes_max < MESSAGE_LENGTH_MAX || self.window_bytes_max > u32::MAX as usize {
            return invalid(format!(
                "window_bytes_max {} outside {MESSAGE_LENGTH_MAX}..={}",
                self.window_bytes_max,
                u32::MAX
            ));
        }
        if self.window_messages_max == 0 {
            return invalid("window_messages_max must be at least 1".into());
        }
        if let Err(text) = journal::format::validate_segment_size(self.segment_size) {
            return invalid(text);
        }
        debug_assert!(
            payload_len_max(self.segment_size) >= SENT_PREFIX_LENGTH + MESSAGE_LENGTH_MAX
        );
        let generation_min = self.compacted_bytes_max().saturating_mul(4);
        if self.generation_bytes_max < generation_min {
            return invalid(format!(
                "generation_bytes_max {} below {generation_min} (four compacted generations)",
                self.generation_bytes_max
            ));
        }
        Ok(())
    }
}

/// A session store on disk: one journal per generation in the session's directory, the recent
/// sent messages also in memory. See the module documentation for the layout, bounds and crash
/// behaviour.
pub struct FileStore {
    config: FileStoreConfig,
    window: MemoryStore,
    journal: Journal,
    generation: u64,
    recovery: Option<RecoveryReport>,
    generations_discarded: u64,
    compactions: u64,
    failure: Option<String>,
    _lock: File,
}

/// What replaying a generation found.
struct Replayed {
    /// The snapshot and every window record it announced are present.
    complete: bool,
    /// Records read.
    records: u64,
}

impl FileStore {
    /// Opens the store in `config.dir`, creating it if needed: the newest complete generation
    /// is replayed into the window, newer incomplete ones and older ones are deleted.
    pub fn open(config: FileStoreConfig) -> Result<FileStore, StoreError> {
        config.validate()?;
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(file_error(&dir))?;
        let lock = lock_directory(&dir)?;
        let mut window = MemoryStore::new(config.window_bytes_max, config.window_messages_max);
        let generations = list_generations(&dir)?;
        let mut chosen: Option<(u64, Journal)> = None;
        let mut damaged: Option<PathBuf> = None;
        let mut discarded = 0;
        // Newest first: the first complete one is current; incomplete newer ones are a
        // compaction or reset that never finished.
        for &generation in generations.iter().rev() {
            let path = generation_path(&dir, generation);
            let journal = open_journal(&config, &path)?;
            let replayed = replay(&path, config.segment_size, &mut window)?;
            if replayed.complete {
                chosen = Some((generation, journal));
                break;
            }
            if replayed.records > 0 || journal.recovery().is_some() {
                damaged.get_or_insert(path.clone());
            }
            drop(journal);
            remove_generation(&path)?;
            discarded += 1;
        }
        let (generation, journal) = match chosen {
            Some(found) => found,
            None => {
                if let Some(path) = damaged {
                    // Not a creation cut short (that leaves no record): the store lost what
                    // made it whole. Starting over at 1 would reuse sequence numbers.
                    return Err(StoreError::Corrupt {
                        path,
                        detail: "no complete generation left (its snapshot or window records are \
                                 missing); refusing to start the session over at 1"
                            .into(),
                    });
                }
                let generation = generations.last().map_or(1, |&newest| newest + 1);
                let journal = start_generation(
                    &config,
                    generation,
                    Sequences::INITIAL,
                    Origin::Created,
                    &window,
                )?;
                let replayed = replay(
                    &generation_path(&dir, generation),
                    config.segment_size,
                    &mut window,
                )?;
                assert!(replayed.complete, "a new generation is complete");
                (generation, journal)
            }
        };
        for &older in generations.iter().filter(|&&g| g < generation) {
            remove_generation(&generation_path(&dir, older))?;
            discarded += 1;
        }
        sync_dir(&dir)?;
        let recovery = journal.recovery().cloned();
        Ok(FileStore {
            config,
            window,
            journal,
            generation,
            recovery,
            generations_discarded: discarded,
            compactions: 0,
            failure: None,
            _lock: lock,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FileStoreConfig {
        &self.config
    }

    /// The current generation (grows by one with every reset and compaction).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The current generation's journal directory.
    pub fn generation_dir(&self) -> PathBuf {
        generation_path(&self.config.dir, self.generation)
    }

    /// What the journal cut off its tail when this store was opened (a torn write), if anything.
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// Generations deleted when the store was opened (incomplete newer ones, leftover older ones).
    pub fn generations_discarded(&self) -> u64 {
        self.generations_discarded
    }

    /// Compactions since the store was opened.
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// Journal bytes of the current generation (what compaction bounds).
    pub fn generation_bytes(&self) -> u64 {
        self.journal.position()
    }

    /// The memory window (what `sent` answers from).
    pub fn window(&self) -> &MemoryStore {
        &self.window
    }

    /// Writes everything appended so far to stable storage now.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.check_failed()?;
        let result = self.journal.sync();
        result.map_err(|error| self.fail(journal_text(&self.generation_dir(), &error)))
    }

    fn check_failed(&self) -> Result<(), StoreError> {
        match &self.failure {
            None => Ok(()),
            Some(reason) => Err(StoreError::Failed {
                path: self.config.dir.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// Records the first failure (every later change is refused) and returns it as an error.
    fn fail(&mut self, reason: String) -> StoreError {
        self.failure.get_or_insert(reason.clone());
        StoreError::Journal(reason)
    }

    /// Appends one record of `length` payload bytes, compacting first if the generation is full.
    fn append_record(
        &mut self,
        record_type: u16,
        length: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), StoreError> {
        let frame = (RECORD_HEADER_LEN + length + RECORD_ALIGN_SLACK) as u64;
        if self.journal.position() + frame > self.config.generation_bytes_max {
            self.compact()?;
        }
        let meta = RecordMeta {
            record_type,
            flags: 0,
            sequence: self.journal.last_sequence() + 1,
            term: 0,
            timestamp_ns: 0,
        };
        match self.journal.append_with(&meta, length, fill) {
            Ok(_) => Ok(()),
            Err(error) => Err(self.fail(journal_text(&self.generation_dir(), &error))),
        }
    }

    /// Starts generation + 1 holding the snapshot and the window, then switches to it.
    fn compact(&mut self) -> Result<(), StoreError> {
        let sequences = self.window.sequences();
        let first = self.window.first_held().unwrap_or(sequences.next_sender);
        let snapshot = Sequences {
            next_sender: first,
            next_target: sequences.next_target,
        };
        self.switch_generation(snapshot, Origin::Compacted)?;
        self.compactions += 1;
        Ok(())
    }

    /// Writes the next generation (snapshot, then the window's messages from
    /// `snapshot.next_sender` on, for `Origin::Compacted`), makes it durable, replays it into the
    /// window and deletes the previous generation. Any failure is sticky.
    fn switch_generation(&mut self, snapshot: Sequences, origin: Origin) -> Result<(), StoreError> {
        let generation = self.generation + 1;
        if generation > GENERATION_MAX {
            return Err(self.fail(format!("generation {generation} exceeds {GENERATION_MAX}")));
        }
        let result = start_generation(&self.config, generation, snapshot, origin, &self.window);
        let journal = result.map_err(|error| self.fail(error.to_string()))?;
        let previous = self.generation_dir();
        // The old journal closes here (its threads stop) before its directory goes.
        self.journal = journal;
        self.generation = generation;
        let path = self.generation_dir();
        match replay(&path, self.config.segment_size, &mut self.window) {
            Ok(replayed) => assert!(replayed.complete, "a generation just written is complete"),
            Err(error) => return Err(self.fail(error.to_string())),
        }
        remove_generation(&previous)
            .and_then(|()| sync_dir(&self.config.dir))
            .map_err(|error| self.fail(error.to_string()))
    }
}

impl MessageStore for FileStore {
    fn sequences(&self) -> Sequences {
        self.window.sequences()
    }

    fn set_next_target(&mut self, next_target: u64) -> Result<(), StoreError> {
        self.check_failed()?;
        if next_target == self.window.sequences().next_target {
            return Ok(());
        }
        self.append_record(RECORD_NEXT_TARGET, NEXT_TARGET_LENGTH, |payload| {
            payload.copy_from_slice(&next_target.to_le_bytes())
        })?;
        self.window.set_next_target(next_target)
    }

    fn append_sent(&mut self, sequence: u64, message: &[u8]) -> Result<(), StoreError> {
        self.check_failed()?;
        let expected = self.window.sequences().next_sender;
        if sequence != expected {
            return Err(StoreError::OutOfOrder { sequence, expected });
        }
        if message.len() > MESSAGE_LENGTH_MAX {
            return Err(StoreError::TooLarge {
                length: message.len(),
            });
        }
        self.append_record(RECORD_SENT, SENT_PREFIX_LENGTH + message.len(), |payload| {
            payload[..SENT_PREFIX_LENGTH].copy_from_slice(&sequence.to_le_bytes());
            payload[SENT_PREFIX_LENGTH..].copy_from_slice(message);
        })?;
        // Cannot fail: the order and the length were checked, and the window holds at least
        // MESSAGE_LENGTH_MAX bytes.
        self.window
            .append_sent(sequence, message)
            .expect("window accepts what the journal took");
        Ok(())
    }

    fn sent(&self, sequence: u64) -> Option<&[u8]> {
        self.window.sent(sequence)
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        self.check_failed()?;
        self.switch_generation(Sequences::INITIAL, Origin::Reset)
    }
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// A journal error with the directory it concerns (journal errors about records do not name it).
fn journal_text(dir: &Path, error: &JournalError) -> String {
    format!("{}: {error}", dir.display())
}

fn generation_path(dir: &Path, generation: u64) -> PathBuf {
    crate::generations::generation_path(dir, GENERATION_PREFIX, generation)
}

fn parse_generation(name: &str) -> Option<u64> {
    crate::generations::parse_generation(name, GENERATION_PREFIX)
}

/// The generation numbers present in `dir`, ascending.
fn list_generations(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut generations = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(file_error(dir))? {
        let entry = entry.map_err(file_error(dir))?;
        if let Some(generation) = entry.file_name().to_str().and_then(parse_generation) {
            generations.push(generation);
        }
    }
    generations.sort_unstable();
    Ok(generations)
}

fn lock_directory(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(file_error(&path))?;
    // A lock held a moment longer than its holder (a process still exiting, or a child forked
    // by another thread of this process holding a copy of the descriptor until its exec) is
    // waited for, briefly; a live holder is refused.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Locked { path }),
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::File { path, source })
            }
        }
    }
}

/// How long opening a store waits for its directory's lock before refusing.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    crate::generations::sync_dir(dir).map_err(file_error(dir))
}

fn remove_generation(path: &Path) -> Result<(), StoreError> {
    crate::generations::remove_dir_if_exists(path).map_err(file_error(path))
}

fn open_journal(config: &FileStoreConfig, path: &Path) -> Result<Journal, StoreError> {
    let mut journal_config = JournalConfig::new(path);
    journal_config.segment_size = config.segment_size;
    journal_config.sync = config.sync;
    journal_config.verify_all_on_open = true;
    journal_config.truncate_invalid_tail = true;
    Journal::open(journal_config).map_err(|error| StoreError::Journal(journal_text(path, &error)))
}

/// Creates generation `generation` with a snapshot of `snapshot` and, when compacting, the
/// window's messages from `snapshot.next_sender` on; syncs it and the directory entries.
fn start_generation(
    config: &FileStoreConfig,
    generation: u64,
    snapshot: Sequences,
    origin: Origin,
    window: &MemoryStore,
) -> Result<Journal, StoreError> {
    let path = generation_path(&config.dir, generation);
    // A leftover of an attempt that failed before it was complete.
    remove_generation(&path)?;
    std::fs::create_dir(&path).map_err(file_error(&path))?;
    sync_dir(&config.dir)?;
    let mut journal = open_journal(config, &path)?;
    let held = match origin {
        Origin::Compacted => snapshot.next_sender..window.sequences().next_sender,
        Origin::Created | Origin::Reset => snapshot.next_sender..snapshot.next_sender,
    };
    let window_messages = held.end - held.start;
    let journal_error = |error: JournalError| StoreError::Journal(journal_text(&path, &error));
    let mut payload = [0u8; SNAPSHOT_LENGTH];
    payload[0..8].copy_from_slice(&snapshot.next_sender.to_le_bytes());
    payload[8..16].copy_from_slice(&snapshot.next_target.to_le_bytes());
    payload[16..24].copy_from_slice(&window_messages.to_le_bytes());
    payload[24..32].copy_from_slice(&generation.to_le_bytes());
    let mut meta = RecordMeta {
        record_type: RECORD_SNAPSHOT,
        flags: origin as u16,
        sequence: 1,
        term: 0,
        timestamp_ns: 0,
    };
    journal.append(&meta, &payload).map_err(journal_error)?;
    meta.flags = 0;
    meta.record_type = RECORD_SENT;
    for sequence in held {
        let message = window
            .sent(sequence)
            .expect("the window holds a suffix without holes");
        meta.sequence += 1;
        journal
            .append_with(&meta, SENT_PREFIX_LENGTH + message.len(), |payload| {
                payload[..SENT_PREFIX_LENGTH].copy_from_slice(&sequence.to_le_bytes());
                payload[SENT_PREFIX_LENGTH..].copy_from_slice(message);
            })
            .map_err(journal_error)?;
    }
    // Durable before anything older is deleted.
    journal.sync().map_err(journal_error)?;
    Ok(journal)
}

fn read_u64(payload: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&payload[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Replays generation `path` into `window` (which it restarts at the snapshot). Records are
/// checksummed by the journal; what is checked here is that they agree with each other.
fn replay(
    path: &Path,
    segment_size: u64,
    window: &mut MemoryStore,
) -> Result<Replayed, StoreError> {
    let journal_error = |error: JournalError| StoreError::Journal(journal_text(path, &error));
    let mut reader = Reader::open(path).map_err(journal_error)?;
    // Window records the snapshot announced and not yet seen.
    let mut window_missing: Option<u64> = None;
    let mut records = 0u64;
    while let Some(record) = reader.next_record().map_err(journal_error)? {
        records += 1;
        let payload = record.payload;
        let position = record.position;
        let corrupt = |detail: String| StoreError::Corrupt {
            path: segment_path(path, position / capacity(segment_size)),
            detail: format!(
                "record {} at position {position}: {detail}",
                record.meta.sequence
            ),
        };
        let record_type = record.meta.record_type;
        match (record_type, window_missing) {
            (RECORD_SNAPSHOT, None) => {
                if payload.len() != SNAPSHOT_LENGTH {
                    return Err(corrupt(format!("snapshot of {} bytes", payload.len())));
                }
                let sequences = Sequences {
                    next_sender: read_u64(payload, 0),
                    next_target: read_u64(payload, 8),
                };
                if sequences.next_sender == 0 || sequences.next_target == 0 {
                    return Err(corrupt(format!("snapshot with sequence 0: {sequences:?}")));
                }
                window.restart_at(sequences);
                window_missing = Some(read_u64(payload, 16));
            }
            (RECORD_SNAPSHOT, Some(_)) => return Err(corrupt("a second snapshot".into())),
            (_, None) => return Err(corrupt("the first record is not a snapshot".into())),
            (RECORD_SENT, Some(missing)) => {
                if payload.len() < SENT_PREFIX_LENGTH
                    || payload.len() > SENT_PREFIX_LENGTH + MESSAGE_LENGTH_MAX
                {
                    return Err(corrupt(format!("sent record of {} bytes", payload.len())));
                }
                let sequence = read_u64(payload, 0);
                if let Err(error) = window.append_sent(sequence, &payload[SENT_PREFIX_LENGTH..]) {
                    return Err(corrupt(error.to_string()));
                }
                window_missing = Some(missing.saturating_sub(1));
            }
            (RECORD_NEXT_TARGET, Some(0)) => {
                if payload.len() != NEXT_TARGET_LENGTH {
                    return Err(corrupt(format!("next-target of {} bytes", payload.len())));
                }
                let next_target = read_u64(payload, 0);
                if next_target == 0 {
                    return Err(corrupt("next target 0".into()));
                }
                window.set_next_target(next_target)?;
            }
            (RECORD_NEXT_TARGET, Some(_)) => {
                return Err(corrupt("next-target inside the snapshot's window".into()))
            }
            (other, _) => return Err(corrupt(format!("unknown record type {other}"))),
        }
    }
    Ok(Replayed {
        complete: window_missing == Some(0),
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small(dir: &Path) -> FileStoreConfig {
        FileStoreConfig {
            dir: dir.to_path_buf(),
            window_bytes_max: 16 << 10,
            window_messages_max: 64,
            segment_size: 64 << 10,
            generation_bytes_max: 96 << 10,
            sync: SyncPolicy::None,
        }
    }

    /// A message whose bytes depend on its sequence number and length.
    fn message(sequence: u64, length: usize) -> Vec<u8> {
        (0..length)
            .map(|at| b'a' + ((at as u64 + sequence * 7) % 26) as u8)
            .collect()
    }

    /// Everything a store shows: its sequences and, for every number ever sent, what it holds.
    fn contents(store: &FileStore) -> (Sequences, Vec<Option<Vec<u8>>>) {
        let sequences = store.sequences();
        let held = (1..sequences.next_sender)
            .map(|sequence| store.sent(sequence).map(<[u8]>::to_vec))
            .collect();
        (sequences, held)
    }

    /// The last record of the current generation: (segment file, file offset, frame length).
    fn last_record(store: &FileStore) -> (PathBuf, u64, usize, u64) {
        let dir = store.generation_dir();
        let mut reader = Reader::open(&dir).unwrap();
        let mut last = None;
        while let Some(record) = reader.next_record().unwrap() {
            last = Some((record.position, record.frame.len(), record.next_position));
        }
        let (position, length, end) = last.unwrap();
        let capacity = capacity(store.config().segment_size);
        let path = segment_path(&dir, position / capacity);
        let offset = journal::SEGMENT_HEADER_LEN + position % capacity;
        (path, offset, length, end)
    }

    fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(bytes, offset).unwrap();
    }

    #[test]
    fn configuration_bounds_are_checked() {
        let dir = Path::new("/nonexistent");
        assert!(small(dir).validate().is_ok());
        assert!(FileStoreConfig::new(dir).validate().is_ok());
        let mut config = small(dir);
        config.generation_bytes_max = config.compacted_bytes_max() * 4 - 1;
        assert!(matches!(config.validate(), Err(StoreError::Config(_))));
        let mut config = small(dir);
        config.window_bytes_max = MESSAGE_LENGTH_MAX - 1;
        assert!(matches!(config.validate(), Err(StoreError::Config(_))));
        let mut config = small(dir);
        config.segment_size = 1000;
        assert!(matches!(config.validate(), Err(StoreError::Config(_))));
    }

    #[test]
    fn generation_names_round_trip() {
        let path = generation_path(Path::new("/x"), 42);
        assert_eq!(path, Path::new("/x/generation-0000000042"));
        assert_eq!(parse_generation("generation-0000000042"), Some(42));
        assert_eq!(parse_generation("generation-0000000000"), None);
        assert_eq!(parse_generation("generation-42"), None);
        assert_eq!(parse_generation("store.lock"), None);
    }

    #[test]
    fn reopen_restores_sequences_and_window_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(small(dir.path())).unwrap();
        assert_eq!(store.sequences(), Sequences::INITIAL);
        assert_eq!(store.generation(), 1);
        // Enough to evict from the window and to compact several times.
        for sequence in 1..=3000u64 {
            let length = 20 + (sequence as usize * 37) % 900;
            store
                .append_sent(sequence, &message(sequence, length))
                .unwrap();
            if sequence % 3 == 0 {
                store.set_next_target(sequence / 3 + 1).unwrap();
            }
            assert!(store.generation_bytes() <= store.config().generation_bytes_max);
        }
        assert!(
            store.compactions() >= 3,
            "compactions {}",
            store.compactions()
        );
        let before = contents(&store);
        assert_eq!(before.0.next_sender, 3001);
        assert_eq!(before.0.next_target, 1001);
        assert!(before.1[2999].is_some() && before.1[0].is_none());
        for (index, held) in before.1.iter().enumerate() {
            if let Some(bytes) = held {
                let sequence = index as u64 + 1;
                let length = 20 + (sequence as usize * 37) % 900;
                assert_eq!(bytes, &message(sequence, length));
            }
        }
        let generation = store.generation();
        drop(store);
        let mut store = FileStore::open(small(dir.path())).unwrap();
        assert_eq!(store.generation(), generation);
        assert!(store.recovery().is_none());
        assert_eq!(contents(&store), before);
        // Only the current generation is on disk.
        let generations = list_generations(dir.path()).unwrap();
        assert_eq!(generations, vec![generation]);
        // And it continues.
        store.append_sent(3001, b"next").unwrap();
        assert_eq!(store.sent(3001), Some(&b"next"[..]));
    }

    #[test]
    fn reset_is_persisted_in_a_fresh_generation() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(small(dir.path())).unwrap();
        for sequence in 1..=10 {
            store.append_sent(sequence, b"before reset").unwrap();
        }
        store.set_next_target(7).unwrap();
        let old = store.generation_dir();
        store.reset().unwrap();
        assert!(!old.exists(), "the old generation is deleted");
        assert_eq!(store.sequences(), Sequences::INITIAL);
        assert_eq!(store.sent(1), None);
        store.append_sent(1, b"after reset").unwrap();
        drop(store);
        let store = FileStore::open(small(dir.path())).unwrap();
        assert_eq!(store.generation(), 2);
        assert_eq!(
            store.sequences(),
            Sequences {
                next_sender: 2,
                next_target: 1
            }
        );
        assert_eq!(store.sent(1), Some(&b"after reset"[..]));
        assert_eq!(store.sent(2), None);
    }

    #[test]
    fn a_torn_last_record_is_cut_back_to_the_last_whole_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(small(dir.path())).unwrap();
        for sequence in 1..=20 {
            store
                .append_sent(sequence, &message(sequence, 300))
                .unwrap();
        }
        store.set_next_target(5).unwrap();
        store.append_sent(21, &message(21, 300)).unwrap();
        let (path, offset, length, _) = last_record(&store);
        drop(store);
        // The last few bytes of the last record never reached the file.
        write_at(&path, offset + length as u64 - 5, &[0; 5]);
        let store = FileStore::open(small(dir.path())).unwrap();
        let recovery = store.recovery().expect("the tail was cut");
        assert_eq!(recovery.kind, journal::CorruptKind::RecordChecksum);
        assert_eq!(
            store.sequences(),
            Sequences {
                next_sender: 21,
                next_target: 5
            }
        );
        assert_eq!(store.sent(20), Some(&message(20, 300)[..]));
        assert_eq!(store.sent(21), None);
    }

    #[test]
    fn garbage_after_the_end_is_cut_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(small(dir.path())).unwrap();
        for sequence in 1..=5 {
            store
                .append_sent(sequence, &message(sequence, 100))
                .unwrap();
        }
        store.set_next_target(3).unwrap();
        let before = contents(&store);
        let (path, offset, length, _) = last_record(&store);
        drop(store);
        let end = offset + (length as u64).next_multiple_of(8);
        write_at(&path, end + 3, b"\x07garbage\xff");
        let store = FileStore::open(small(dir.path())).unwrap();
        let recovery = store.recovery().expect("the garbage was cut");
        // The garbage overlaps where the next record's frame length would be.
        assert_eq!(recovery.kind, journal::CorruptKind::BadFrameLength);
        assert_eq!(contents(&store), before);
        let (path, offset, _, _) = last_record(&store);
        drop(store);
        // Further on, past any header: bytes after the end of the log.
        write_at(&path, offset + 4096, b"\x01");
        let store = FileStore::open(small(dir.path())).unwrap();
        let recovery = store.recovery().expect("the garbage was cut");
        assert_eq!(recovery.kind, journal::CorruptKind::GarbageAfterEnd);
        assert_eq!(contents(&store), before);
    }

    #[test]
    fn out_of_order_and_oversized_appends_are_refused_and_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(small(dir.path())).unwrap();
        store.append_sent(1, b"one").unwrap();
        assert!(matches!(
            store.append_sent(3, b"three"),
            Err(StoreError::OutOfOrder {
                sequence: 3,
                expected: 2
            })
        ));
        assert!(matches!(
            store.append_sent(1, b"one again"),
            Err(StoreError::OutOfOrder {
                sequence: 1,
                expected: 2
            })
        ));
        let oversized = vec![b'x'; MESSAGE_LENGTH_MAX + 1];
        assert!(matches!(
            store.append_sent(2, &oversized),
            Err(StoreError::TooLarge { .. })
        ));
        // Refusals are the caller's error, not the store's: it goes on.
        store.append_sent(2, b"two").unwrap();
        drop(store);
        let store = FileStore::open(small(dir.path())).unwrap();
        assert_eq!(store.sequences().next_sender, 3);
        assert_eq!(store.sent(1), Some(&b"one"[..]));
        assert_eq!(store.sent(2), Some(&b"two"[..]));
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _store = FileStore::open(small(dir.path())).unwrap();
        match FileStore::open(small(dir.path())) {
            Err(StoreError::Locked { path }) => assert!(path.ends_with(LOCK_FILE_NAME)),
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("expected Locked, got a store"),
        }
    }

    /// Writes generation `generation` by hand: a snapshot announcing `announced` window
    /// messages, then `present` of them.
    fn write_generation(config: &FileStoreConfig, generation: u64, announced: u64, present: u64) {
        let path = generation_path(&config.dir, generation);
        std::fs::create_dir_all(&path).unwrap();
        let mut journal = open_journal(config, &path).unwrap();
        let mut payload = [0u8; SNAPSHOT_LENGTH];
        payload[0..8].copy_from_slice(&100u64.to_le_bytes());
        payload[8..16].copy_from_slice(&50u64.to_le_bytes());
        payload[16..24].copy_from_slice(&announced.to_le_bytes());
        payload[24..32].copy_from_slice(&generation.to_le_bytes());
        let mut meta = RecordMeta {
            record_type: RECORD_SNAPSHOT,
            flags: Origin::Compacted as u16,
            sequence: 1,
            term: 0,
            timestamp_ns: 0,
        };
        journal.append(&meta, &payload).unwrap();
        meta.record_type = RECORD_SENT;
        for sequence in 100..100 + present {
            meta.sequence += 1;
            let mut record = sequence.to_le_bytes().to_vec();
            record.extend_from_slice(b"held");
            journal.append(&meta, &record).unwrap();
        }
    }

    #[test]
    fn an_unfinished_newer_generation_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let config = small(dir.path());
        let mut store = FileStore::open(config.clone()).unwrap();
        for sequence in 1..=4 {
            store.append_sent(sequence, b"kept").unwrap();
        }
        let before = contents(&store);
        drop(store);
        // A compaction into generation 2 cut short: 3 window messages announced, 1 written.
        write_generation(&config, 2, 3, 1);
        let store = FileStore::open(config.clone()).unwrap();
        assert_eq!(store.generation(), 1);
        assert_eq!(store.generations_discarded(), 1);
        assert_eq!(contents(&store), before);
        assert_eq!(list_generations(dir.path()).unwrap(), vec![1]);
        drop(store);
        // Finished, it wins, and the older one goes.
        write_generation(&config, 2, 3, 3);
        let store = FileStore::open(config).unwrap();
        assert_eq!(store.generation(), 2);
        assert_eq!(
            store.sequences(),
            Sequences {
                next_sender: 103,
                next_target: 50
            }
        );
        assert_eq!(store.sent(102), Some(&b"held"[..]));
        assert_eq!(list_generations(dir.path()).unwrap(), vec![2]);
    }

    #[test]
    fn a_store_left_without_a_complete_generation_refuses_to_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let config = small(dir.path());
        std::fs::create_dir_all(dir.path()).unwrap();
        write_generation(&config, 5, 3, 1);
        match FileStore::open(config.clone()) {
            Err(StoreError::Corrupt { path, detail }) => {
                assert!(path.ends_with("generation-0000000005"), "{path:?}");
                assert!(detail.contains("no complete generation"), "{detail}");
            }
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok(_) => panic!("expected Corrupt, got a store"),
        }
        // A creation cut short (no record at all) is simply started again.
        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(generation_path(empty.path(), 1)).unwrap();
        let store = FileStore::open(small(empty.path())).unwrap();
        assert_eq!(store.generation(), 2);
        assert_eq!(store.sequences(), Sequences::INITIAL);
    }

    #[test]
    fn inconsistent_records_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = small(dir.path());
        let path = generation_path(dir.path(), 1);
        std::fs::create_dir_all(&path).unwrap();
        let mut journal = open_journal(&config, &path).unwrap();
        let meta = RecordMeta {
            record_type: RECORD_SENT,
            flags: 0,
            sequence: 1,
            term: 0,
            timestamp_ns: 0,
        };
        journal.append(&meta, &1u64.to_le_bytes()).unwrap();
        drop(journal);
        match FileStore::open(config) {
            Err(error @ StoreError::Corrupt { .. }) => {
                let text = error.to_string();
                assert!(text.contains("segment-0000000000.journal"), "{text}");
                assert!(text.contains("not a snapshot"), "{text}");
            }
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok(_) => panic!("expected Corrupt, got a store"),
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        Send(usize),
        Target(u64),
        Reset,
        Reopen,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (1usize..2000).prop_map(Step::Send),
            2 => (1u64..1000).prop_map(Step::Target),
            1 => Just(Step::Reset),
            1 => Just(Step::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Whatever the operations, a reopened store shows exactly what the live one showed,
        /// and what it holds is a hole-free suffix of what was sent, byte for byte.
        #[test]
        fn reopening_at_any_point_shows_the_same_store(
            steps in proptest::collection::vec(step(), 1..400)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut store = FileStore::open(small(dir.path())).unwrap();
            let mut sent: Vec<Vec<u8>> = Vec::new();
            for step in steps {
                match step {
                    Step::Send(length) => {
                        let sequence = store.sequences().next_sender;
                        let bytes = message(sequence, length);
                        store.append_sent(sequence, &bytes).unwrap();
                        sent.push(bytes);
                    }
                    Step::Target(target) => store.set_next_target(target).unwrap(),
                    Step::Reset => {
                        store.reset().unwrap();
                        sent.clear();
                    }
                    Step::Reopen => {
                        let before = contents(&store);
                        drop(store);
                        store = FileStore::open(small(dir.path())).unwrap();
                        prop_assert_eq!(contents(&store), before);
                    }
                }
                let (sequences, held) = contents(&store);
                prop_assert_eq!(sequences.next_sender, sent.len() as u64 + 1);
                let first = held.iter().position(Option::is_some).unwrap_or(held.len());
                for (index, bytes) in held.iter().enumerate() {
                    match bytes {
                        Some(bytes) => prop_assert_eq!(bytes, &sent[index]),
                        None => prop_assert!(index < first, "a hole in the held suffix"),
                    }
                }
                prop_assert!(store.generation_bytes() <= store.config().generation_bytes_max);
            }
        }
    }
}
