//! The node's counters file: a memory-mapped page (`counters` in the journal directory) that the
//! node rewrites every [`UPDATE_INTERVAL`] from its outer loop, never from the command path, and
//! that `exchange stat` and `exchange top` read from other processes without disturbing it (as
//! Aeron's CnC counters).
//!
//! Layout (4,096 bytes, every field a little-endian `u64` at an 8-byte offset):
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic `EXCNTR01` (ASCII, as a little-endian u64) |
//! | 8 | layout version (1) |
//! | 16 | writer's process id |
//! | 24 | writer's start time (Unix ns) |
//! | 32 | change counter: odd while the writer updates the slots (a seqlock) |
//! | 64 + 8 × i | slot i, as [`Slot`] numbers them |
//!
//! Slot [`Slot::Instruments`] onwards: up to [`INSTRUMENTS_MAX`] instruments of
//! [`INSTRUMENT_SLOTS`] slots each: id, symbol (8 ASCII bytes, NUL padded), price exponent
//! (i64), best bid price (i64, `i64::MIN` when none), bid quantity, best ask price, ask quantity
//! (prices in ticks of 10^exponent, quantities in lots).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Duration;

/// Bytes of the file.
pub const FILE_SIZE: usize = 4096;
/// `EXCNTR01`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"EXCNTR01");
/// Layout version.
pub const VERSION: u64 = 1;
/// The file's name in the journal directory.
pub const FILE_NAME: &str = "counters";
/// How often the node rewrites it.
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(100);
/// Instruments published in the file.
pub const INSTRUMENTS_MAX: usize = 8;
/// Slots per instrument.
pub const INSTRUMENT_SLOTS: usize = 7;
/// Members whose match positions are published.
pub const MEMBERS: usize = crate::protocol::MEMBERS_MAX;

const HEADER_WORDS: usize = 8;
const CHANGE_WORD: usize = 4;

/// The slots, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Slot {
    /// When the node last rewrote the file (Unix ns): a stale value means a stopped node.
    UpdatedUnixNs,
    NodeId,
    /// 0 follower, 1 candidate, 2 leader.
    Role,
    /// The leader this node knows (`u64::MAX`: none).
    Leader,
    Term,
    LogEnd,
    /// Position up to which the journal is on disk (the log end without group commit).
    Durable,
    LastSequence,
    CommitPosition,
    AppliedPosition,
    CommandsApplied,
    Trades,
    /// Matcher events: orders accepted.
    Accepted,
    /// Matcher events: commands rejected (each with its reason code in the event).
    Rejected,
    Events,
    CheckpointsVerified,
    StateHash,
    ResponsesSent,
    /// Responses to clients that could not be sent (an error: clients resend).
    ResponsesDropped,
    BackPressured,
    /// Messages dropped at the inboxes (an error: bounded queues full).
    InboxDropped,
    Elections,
    Leaderships,
    StepDowns,
    Truncations,
    Members,
    /// The leader's view of each member's log (its own: the durable end); `MEMBERS` slots.
    MatchPosition,
    /// Leader: delay from a sampled moment with uncommitted records to their commit, over the
    /// last window (ns).
    CommitDelayP50 = Slot::MatchPosition as usize + MEMBERS,
    CommitDelayP99,
    CommitDelayP999,
    CommitDelayMax,
    CommitDelaySamples,
    /// Instruments that follow.
    InstrumentCount,
    Instruments,
}

/// Slots in all.
pub const SLOTS: usize = Slot::Instruments as usize + INSTRUMENTS_MAX * INSTRUMENT_SLOTS;
const _: () = assert!((HEADER_WORDS + SLOTS) * 8 <= FILE_SIZE);

/// One instrument's top of book.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopOfBook {
    pub instrument_id: u32,
    pub symbol: [u8; 8],
    pub price_exponent: i8,
    /// (price in ticks, quantity in lots).
    pub bid: Option<(i64, u64)>,
    pub ask: Option<(i64, u64)>,
}

/// A consistent copy of the slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    pub pid: u64,
    pub started_unix_ns: u64,
    pub slots: [u64; SLOTS],
}

impl Counters {
    pub fn get(&self, slot: Slot) -> u64 {
        self.slots[slot as usize]
    }

    /// The role's name.
    pub fn role(&self) -> &'static str {
        match self.get(Slot::Role) {
            2 => "leader",
            1 => "candidate",
            _ => "follower",
        }
    }

    /// Member `id`'s match position (leader's view).
    pub fn match_position(&self, id: usize) -> u64 {
        self.slots[Slot::MatchPosition as usize + id]
    }

    /// The instruments' tops of book.
    pub fn instruments(&self) -> Vec<TopOfBook> {
        let count = (self.get(Slot::InstrumentCount) as usize).min(INSTRUMENTS_MAX);
        (0..count)
            .map(|i| {
                let at = Slot::Instruments as usize + i * INSTRUMENT_SLOTS;
                let s = &self.slots[at..at + INSTRUMENT_SLOTS];
                let side = |price: u64, quantity: u64| {
                    (price as i64 != i64::MIN).then_some((price as i64, quantity))
                };
                TopOfBook {
                    instrument_id: s[0] as u32,
                    symbol: s[1].to_le_bytes(),
                    price_exponent: s[2] as i64 as i8,
                    bid: side(s[3], s[4]),
                    ask: side(s[5], s[6]),
                }
            })
            .collect()
    }
}

/// A mapped counters file.
struct Mapped {
    map: memmap2::MmapRaw,
}

impl Mapped {
    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < FILE_SIZE / 8);
        // SAFETY: the mapping is FILE_SIZE bytes, page-aligned, so every 8-byte word is aligned
        // and in bounds; other processes access it only through atomics.
        unsafe { &*(self.map.as_mut_ptr().add(index * 8) as *const AtomicU64) }
    }
}

/// The node's side: creates the file and rewrites the slots.
pub struct CountersWriter {
    mapped: Mapped,
    path: PathBuf,
    slots: [u64; SLOTS],
}

impl CountersWriter {
    /// Creates (or replaces) `dir/counters`.
    pub fn create(dir: &Path, started_unix_ns: u64) -> std::io::Result<CountersWriter> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.set_len(FILE_SIZE as u64)?;
        let map = memmap2::MmapOptions::new().len(FILE_SIZE).map_raw(&file)?;
        let mapped = Mapped { map };
        mapped.word(1).store(VERSION, Ordering::Relaxed);
        mapped
            .word(2)
            .store(u64::from(std::process::id()), Ordering::Relaxed);
        mapped.word(3).store(started_unix_ns, Ordering::Relaxed);
        mapped.word(0).store(MAGIC, Ordering::Release);
        Ok(CountersWriter {
            mapped,
            path,
            slots: [0; SLOTS],
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The slots to fill before [`CountersWriter::publish`].
    pub fn slots(&mut self) -> &mut [u64; SLOTS] {
        &mut self.slots
    }

    /// Sets one slot.
    pub fn set(&mut self, slot: Slot, value: u64) {
        self.slots[slot as usize] = value;
    }

    /// Sets instrument `index`'s top of book.
    pub fn set_instrument(&mut self, index: usize, top: &TopOfBook) {
        if index >= INSTRUMENTS_MAX {
            return;
        }
        let at = Slot::Instruments as usize + index * INSTRUMENT_SLOTS;
        let price = |side: Option<(i64, u64)>| side.map_or(i64::MIN as u64, |(p, _)| p as u64);
        let quantity = |side: Option<(i64, u64)>| side.map_or(0, |(_, q)| q);
        self.slots[at..at + INSTRUMENT_SLOTS].copy_from_slice(&[
            u64::from(top.instrument_id),
            u64::from_le_bytes(top.symbol),
            i64::from(top.price_exponent) as u64,
            price(top.bid),
            quantity(top.bid),
            price(top.ask),
            quantity(top.ask),
        ]);
    }

    /// Writes the slots to the file (readers see all of them or retry).
    pub fn publish(&mut self) {
        let change = self.mapped.word(CHANGE_WORD);
        let version = change.load(Ordering::Relaxed);
        change.store(version.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, value) in self.slots.iter().enumerate() {
            self.mapped
                .word(HEADER_WORDS + i)
                .store(*value, Ordering::Relaxed);
        }
        change.store(version.wrapping_add(2), Ordering::Release);
    }
}

/// Why a counters file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CountersError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a counters file (bad magic, or {size} bytes instead of {FILE_SIZE})")]
    NotCounters { path: PathBuf, size: u64 },
    #[error("{path}: layout version {found}, this build reads {VERSION}")]
    Version { path: PathBuf, found: u64 },
    #[error("{path}: the writer kept changing it (no consistent copy in 1,000 tries)")]
    Busy { path: PathBuf },
}

/// A reader of a node's counters file (any process).
pub struct CountersReader {
    mapped: Mapped,
    path: PathBuf,
}

impl CountersReader {
    /// Maps `path` (a node's `counters` file) read-only.
    pub fn open(path: &Path) -> Result<CountersReader, CountersError> {
        let io = |source| CountersError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size != FILE_SIZE as u64 {
            return Err(CountersError::NotCounters {
                path: path.to_path_buf(),
                size,
            });
        }
        let map = memmap2::MmapOptions::new()
            .len(FILE_SIZE)
            .map_raw_read_only(&file)
            .map_err(io)?;
        let mapped = Mapped { map };
        if mapped.word(0).load(Ordering::Acquire) != MAGIC {
            return Err(CountersError::NotCounters {
                path: path.to_path_buf(),
                size,
            });
        }
        let found = mapped.word(1).load(Ordering::Relaxed);
        if found != VERSION {
            return Err(CountersError::Version {
                path: path.to_path_buf(),
                found,
            });
        }
        Ok(CountersReader {
            mapped,
            path: path.to_path_buf(),
        })
    }

    /// A consistent copy of the slots.
    pub fn read(&self) -> Result<Counters, CountersError> {
        let change = self.mapped.word(CHANGE_WORD);
        for _ in 0..1000 {
            let before = change.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let mut slots = [0u64; SLOTS];
            for (i, slot) in slots.iter_mut().enumerate() {
                *slot = self.mapped.word(HEADER_WORDS + i).load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if change.load(Ordering::Relaxed) == before {
                return Ok(Counters {
                    pid: self.mapped.word(2).load(Ordering::Relaxed),
                    started_unix_ns: self.mapped.word(3).load(Ordering::Relaxed),
                    slots,
                });
            }
        }
        Err(CountersError::Busy {
            path: self.path.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_what_the_writer_published_with_the_documented_layout() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CountersWriter::create(dir.path(), 77).unwrap();
        writer.set(Slot::Term, 5);
        writer.set(Slot::Role, 2);
        writer.set(Slot::CommitDelayP50, 1234);
        let top = TopOfBook {
            instrument_id: 1,
            symbol: *b"DEMO\0\0\0\0",
            price_exponent: -2,
            bid: Some((49_950, 10)),
            ask: None,
        };
        writer.set_instrument(0, &top);
        writer.set(Slot::InstrumentCount, 1);
        writer.publish();
        let reader = CountersReader::open(&dir.path().join("counters")).unwrap();
        let counters = reader.read().unwrap();
        assert_eq!(counters.get(Slot::Term), 5);
        assert_eq!(counters.role(), "leader");
        assert_eq!(counters.started_unix_ns, 77);
        assert_eq!(counters.pid, u64::from(std::process::id()));
        assert_eq!(counters.instruments(), vec![top]);
        // The documented offsets, byte for byte.
        let bytes = std::fs::read(dir.path().join("counters")).unwrap();
        assert_eq!(bytes.len(), FILE_SIZE);
        assert_eq!(&bytes[0..8], b"EXCNTR01");
        assert_eq!(bytes[8], 1);
        let word =
            |offset: usize| u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap());
        assert_eq!(word(24), 77);
        assert_eq!(word(32), 2, "the change counter is even after a publish");
        assert_eq!(word(64 + 8 * Slot::Term as usize), 5);
        assert_eq!(Slot::CommitDelayP50 as usize, 33);
        assert_eq!(word(64 + 8 * 33), 1234);
        assert_eq!(Slot::Instruments as usize, 39);
        assert_eq!(&bytes[64 + 8 * 40..64 + 8 * 41], b"DEMO\0\0\0\0");
        assert_eq!(word(64 + 8 * 41) as i64, -2);
        assert_eq!(word(64 + 8 * 42), 49_950);
        assert_eq!(word(64 + 8 * 43), 10);
        assert_eq!(word(64 + 8 * 44) as i64, i64::MIN, "no ask");
    }

    #[test]
    fn a_file_that_is_not_a_counters_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters");
        std::fs::write(&path, [0u8; 100]).unwrap();
        let error = CountersReader::open(&path).err().unwrap().to_string();
        assert!(
            error.ends_with(
                "counters: not a counters file (bad magic, or 100 bytes instead of 4096)"
            ),
            "{error}"
        );
        std::fs::write(&path, [0u8; FILE_SIZE]).unwrap();
        assert!(matches!(
            CountersReader::open(&path),
            Err(CountersError::NotCounters { size: 4096, .. })
        ));
    }

    /// A reader racing a writer never sees a mix of two publishes.
    #[test]
    fn a_racing_reader_sees_whole_publishes_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CountersWriter::create(dir.path(), 0).unwrap();
        let path = dir.path().join("counters");
        let seen = std::sync::Arc::new(AtomicU64::new(0));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counted, flag) = (seen.clone(), done.clone());
        let reader = std::thread::spawn(move || {
            let reader = CountersReader::open(&path).unwrap();
            while !flag.load(Ordering::Acquire) {
                if let Ok(counters) = reader.read() {
                    let first = counters.slots[0];
                    assert!(counters.slots.iter().all(|&v| v == first));
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Publish until the reader has made 1,000 consistent reads (bounded).
        let mut round = 0u64;
        while seen.load(Ordering::Relaxed) < 1000 && round < 50_000_000 {
            round += 1;
            writer.slots().fill(round);
            writer.publish();
        }
        done.store(true, Ordering::Release);
        reader.join().unwrap();
        assert!(seen.load(Ordering::Relaxed) >= 1000, "{round} publishes");
    }
}
