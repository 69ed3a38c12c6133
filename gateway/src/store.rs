//! Session stores: the sequence numbers of a FIX session and the messages it sent, kept for
//! resends. [`MessageStore`] is the interface; [`MemoryStore`] keeps a bounded window in memory;
//! [`FileStore`] keeps the same window and journals every change, so a session survives a gateway
//! restart (see `file_store.rs`).

pub use crate::file_store::{
    FileStore, FileStoreConfig, FILE_STORE_GENERATION_BYTES_DEFAULT,
    FILE_STORE_SEGMENT_SIZE_DEFAULT,
};

/// The persisted sequence state of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequences {
    /// MsgSeqNum of the next message we send.
    pub next_sender: u64,
    /// MsgSeqNum we expect next from the counterparty.
    pub next_target: u64,
}

impl Sequences {
    /// Both at 1: a new session (or one after ResetSeqNumFlag).
    pub const INITIAL: Sequences = Sequences {
        next_sender: 1,
        next_target: 1,
    };
}

/// A store operation failed (a persistent store's I/O). The session that owns the store is
/// disconnected: it cannot promise resends.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The message is larger than the store accepts.
    #[error("message of {length} bytes is too large for the store")]
    TooLarge {
        /// Message length.
        length: usize,
    },
    /// `append_sent` out of order (a broken caller).
    #[error("sent message {sequence} out of order (expected {expected})")]
    OutOfOrder {
        /// Sequence given.
        sequence: u64,
        /// Sequence expected.
        expected: u64,
    },
    /// Underlying I/O failed.
    #[error("session store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The persistent journal failed (the text names the journal directory or file).
    #[error("session store journal: {0}")]
    Journal(String),
    /// A file or directory operation of a persistent store failed.
    #[error("session store {}: {source}", path.display())]
    File {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A persistent store's records are checksummed but contradict each other (a bug, or a
    /// file written by something else); the store refuses to guess.
    #[error("session store {} is inconsistent: {detail}", path.display())]
    Corrupt {
        /// The segment file or directory.
        path: std::path::PathBuf,
        /// What is wrong, and where.
        detail: String,
    },
    /// Another store (in this or another process) has the directory open.
    #[error("session store {} is locked by another writer", path.display())]
    Locked {
        /// The lock file.
        path: std::path::PathBuf,
    },
    /// An earlier write failed; the store refuses every change until it is reopened (what it
    /// holds in memory may no longer match its files).
    #[error("session store {} failed earlier ({reason}); reopen it", path.display())]
    Failed {
        /// The store's directory.
        path: std::path::PathBuf,
        /// The first failure.
        reason: String,
    },
    /// The store's configuration is out of range.
    #[error("session store configuration: {0}")]
    Config(String),
}

/// Where a session keeps its sequence numbers and the messages it sent.
///
/// Every outbound message is appended with its MsgSeqNum before it is handed to the transport,
/// so a ResendRequest can always be answered from here (or, for messages the store no longer
/// holds, with a gap fill).
pub trait MessageStore {
    /// The sequence numbers as last persisted.
    fn sequences(&self) -> Sequences;
    /// Records the next expected inbound MsgSeqNum.
    fn set_next_target(&mut self, next_target: u64) -> Result<(), StoreError>;
    /// Records a sent message; `sequence` must be `sequences().next_sender`, which then grows by one.
    fn append_sent(&mut self, sequence: u64, message: &[u8]) -> Result<(), StoreError>;
    /// A sent message, if the store still holds it.
    fn sent(&self, sequence: u64) -> Option<&[u8]>;
    /// Both sequence numbers back to 1 and every sent message forgotten (ResetSeqNumFlag).
    fn reset(&mut self) -> Result<(), StoreError>;
}

/// Default byte budget of a [`MemoryStore`].
pub const MEMORY_STORE_BYTES_DEFAULT: usize = 4 << 20;
/// Default number of messages a [`MemoryStore`] keeps.
pub const MEMORY_STORE_MESSAGES_DEFAULT: usize = 16_384;

#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: u32,
    length: u32,
}

/// The last messages sent, in a fixed byte ring and a fixed entry ring (both allocated once);
/// older messages are evicted and answered with a gap fill on resend. Sequence numbers live only
/// in memory: a restart begins a new session day unless a persistent store is used.
pub struct MemoryStore {
    sequences: Sequences,
    arena: Vec<u8>,
    head: usize,
    entries: std::collections::VecDeque<Entry>,
    entries_max: usize,
    /// MsgSeqNum of `entries[0]`.
    first_sequence: u64,
}

impl MemoryStore {
    /// A store holding up to `bytes_max` bytes and `messages_max` messages (both at least 1).
    pub fn new(bytes_max: usize, messages_max: usize) -> MemoryStore {
        assert!(bytes_max > 0 && messages_max > 0 && bytes_max <= u32::MAX as usize);
        MemoryStore {
            sequences: Sequences::INITIAL,
            arena: vec![0; bytes_max],
            head: 0,
            entries: std::collections::VecDeque::with_capacity(messages_max),
            entries_max: messages_max,
            first_sequence: 1,
        }
    }

    /// Number of messages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// MsgSeqNum of the oldest message held, if any (the held messages run from it to
    /// `sequences().next_sender - 1` without a hole).
    pub fn first_held(&self) -> Option<u64> {
        (!self.entries.is_empty()).then_some(self.first_sequence)
    }

    /// Forgets every message and continues at `sequences` (a persistent store rebuilding its
    /// window from a snapshot).
    pub(crate) fn restart_at(&mut self, sequences: Sequences) {
        assert!(sequences.next_sender >= 1 && sequences.next_target >= 1);
        self.sequences = sequences;
        self.entries.clear();
        self.head = 0;
        self.first_sequence = sequences.next_sender;
    }

    fn pop_oldest(&mut self) {
        if self.entries.pop_front().is_some() {
            self.first_sequence += 1;
        }
    }
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new(MEMORY_STORE_BYTES_DEFAULT, MEMORY_STORE_MESSAGES_DEFAULT)
    }
}

impl MessageStore for MemoryStore {
    fn sequences(&self) -> Sequences {
        self.sequences
    }

    fn set_next_target(&mut self, next_target: u64) -> Result<(), StoreError> {
        self.sequences.next_target = next_target;
        Ok(())
    }

    fn append_sent(&mut self, sequence: u64, message: &[u8]) -> Result<(), StoreError> {
        if sequence != self.sequences.next_sender {
            return Err(StoreError::OutOfOrder {
                sequence,
                expected: self.sequences.next_sender,
            });
        }
        let length = message.len();
        if length > self.arena.len() {
            return Err(StoreError::TooLarge { length });
        }
        if self.entries.is_empty() {
            self.first_sequence = sequence;
            self.head = 0;
        }
        // Invariant: in circular order from `head` the arena holds free space, then the oldest
        // .. newest entries. Wrapping to 0 gives up [head, end): the entries there are the
        // oldest and go first; then those overlapping the new message's bytes.
        let mut wrapped_from = None;
        if self.head + length > self.arena.len() {
            wrapped_from = Some(self.head);
            self.head = 0;
        }
        while let Some(oldest) = self.entries.front() {
            let start = oldest.offset as usize;
            let end = start + oldest.length as usize;
            let overlaps = start < self.head + length && end > self.head;
            let abandoned = wrapped_from.is_some_and(|from| start >= from);
            if overlaps || abandoned || self.entries.len() == self.entries_max {
                self.pop_oldest();
            } else {
                break;
            }
        }
        if self.entries.is_empty() {
            self.first_sequence = sequence;
        }
        self.arena[self.head..self.head + length].copy_from_slice(message);
        self.entries.push_back(Entry {
            offset: self.head as u32,
            length: length as u32,
        });
        self.head += length;
        self.sequences.next_sender = sequence + 1;
        debug_assert_eq!(
            self.first_sequence + self.entries.len() as u64,
            self.sequences.next_sender
        );
        Ok(())
    }

    fn sent(&self, sequence: u64) -> Option<&[u8]> {
        let index = usize::try_from(sequence.checked_sub(self.first_sequence)?).ok()?;
        let entry = self.entries.get(index)?;
        let start = entry.offset as usize;
        Some(&self.arena[start..start + entry.length as usize])
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        self.restart_at(Sequences::INITIAL);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn memory_store_keeps_a_suffix(
            lengths in proptest::collection::vec(1usize..200, 1..300),
            bytes_max in 200usize..2000,
            messages_max in 1usize..50,
        ) {
            let mut store = MemoryStore::new(bytes_max, messages_max);
            let mut sent: Vec<Vec<u8>> = Vec::new();
            for (index, length) in lengths.iter().enumerate() {
                let sequence = index as u64 + 1;
                let message: Vec<u8> = (0..*length).map(|at| (at + index) as u8).collect();
                store.append_sent(sequence, &message).unwrap();
                sent.push(message);
                // What is held is a suffix of what was sent, newest always held.
                let mut held_from = None;
                for (at, message) in sent.iter().enumerate() {
                    match store.sent(at as u64 + 1) {
                        Some(bytes) => {
                            prop_assert_eq!(bytes, &message[..]);
                            held_from.get_or_insert(at);
                        }
                        None => prop_assert!(held_from.is_none(), "a hole in the held suffix"),
                    }
                }
                prop_assert!(store.sent(sequence).is_some());
                prop_assert!(store.len() <= messages_max);
                prop_assert_eq!(store.sequences().next_sender, sequence + 1);
            }
            store.reset().unwrap();
            prop_assert!(store.sent(1).is_none());
            prop_assert_eq!(store.sequences(), Sequences::INITIAL);
        }
    }

    #[test]
    fn out_of_order_append_is_refused() {
        let mut store = MemoryStore::new(100, 4);
        assert!(matches!(
            store.append_sent(2, b"x"),
            Err(StoreError::OutOfOrder {
                sequence: 2,
                expected: 1
            })
        ));
        assert!(matches!(
            store.append_sent(1, &[0; 101]),
            Err(StoreError::TooLarge { length: 101 })
        ));
    }
}
