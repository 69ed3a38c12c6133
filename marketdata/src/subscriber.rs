//! The subscriber's state machine: frames in, books out. It checks the feed sequence of every
//! message, reports gaps for the runtime to request from a retransmission service, applies
//! snapshots for late joiners and verifies the engine's book checksums.
//!
//! The runtime polls its Aeron subscription and hands each frame to [`Subscriber::on_frame`];
//! when [`Subscriber::gap`] returns a range it asks the retransmission service for it and
//! feeds the frames it gets back through `on_frame` too. Frames that arrive beyond a gap are
//! not buffered (bounded memory): they are dropped and the gap range extends to cover them.

use crate::book::{Book, BookConfig, BookError};
use crate::frame::{FrameError, FrameView, SESSION_LEN};
use crate::itch::{DecodeError, Message};

/// What a frame did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameOutcome {
    /// Messages were applied (some may have been duplicates, skipped).
    Applied {
        /// Messages applied.
        messages: u32,
    },
    /// Every message had been applied before.
    Duplicate,
    /// The frame starts after the next expected sequence: nothing applied; request
    /// [`Subscriber::gap`].
    Gap {
        /// First missing sequence.
        from: u64,
        /// One past the last sequence known to exist.
        to: u64,
    },
    /// A heartbeat (it may reveal a gap: see [`Subscriber::gap`]).
    Heartbeat,
    /// The publisher ended the session.
    EndOfSession,
    /// The subscriber waits for a snapshot and ignores incremental messages.
    NotSynchronized,
}

/// The feed cannot be followed: the subscriber stops applying and needs a snapshot
/// ([`Subscriber::begin_snapshot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscriberError {
    /// A frame that does not parse (it is ignored; the subscriber stays synchronized).
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// A frame of another session (ignored).
    #[error("frame of session {got:?}, following {expected:?}")]
    Session {
        /// Session followed.
        expected: [u8; SESSION_LEN],
        /// Session of the frame.
        got: [u8; SESSION_LEN],
    },
    /// A message of a known type that does not decode.
    #[error("message {sequence}: {error}")]
    Decode {
        /// Feed sequence.
        sequence: u64,
        /// Why.
        error: DecodeError,
    },
    /// A message the book refused.
    #[error("message {sequence}: {error}")]
    Book {
        /// Feed sequence (snapshot messages: their index in the snapshot).
        sequence: u64,
        /// Why.
        error: BookError,
    },
    /// The engine's checksum differs from the rebuilt book's.
    #[error("book checksum at message {sequence}: engine {engine:#018x}, rebuilt {rebuilt:#018x}")]
    Checksum {
        /// Feed sequence of the checksum message (or the snapshot's sequence).
        sequence: u64,
        /// Engine's value.
        engine: u64,
        /// Ours.
        rebuilt: u64,
    },
    /// Snapshot messages without a snapshot in progress, or incremental state missing.
    #[error("no snapshot in progress")]
    NoSnapshot,
}

/// Running figures of a subscriber.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberCounters {
    /// Frames received.
    pub frames: u64,
    /// Messages applied.
    pub messages: u64,
    /// Messages received again and skipped.
    pub duplicates: u64,
    /// Frames that revealed a gap.
    pub gaps: u64,
    /// Engine checksums that matched.
    pub checksums_verified: u64,
    /// Messages of types this crate does not decode (skipped).
    pub unknown_types: u64,
    /// Snapshots applied.
    pub snapshots: u64,
}

/// A feed subscriber: a [`Book`] and the feed position.
pub struct Subscriber {
    book: Book,
    session: Option<[u8; SESSION_LEN]>,
    /// The next feed sequence to apply; `None` while waiting for a snapshot.
    sequence_next: Option<u64>,
    /// One past the highest sequence any frame or heartbeat showed to exist.
    sequence_seen_end: u64,
    snapshot_loading: bool,
    snapshot_messages: u64,
    counters: SubscriberCounters,
}

impl Subscriber {
    /// A subscriber that follows the feed from its first message (sequence 1).
    pub fn new(config: BookConfig) -> Subscriber {
        Subscriber {
            book: Book::new(config),
            session: None,
            sequence_next: Some(crate::mapping::FEED_SEQUENCE_FIRST),
            sequence_seen_end: crate::mapping::FEED_SEQUENCE_FIRST,
            snapshot_loading: false,
            snapshot_messages: 0,
            counters: SubscriberCounters::default(),
        }
    }

    /// A subscriber that joins late: it ignores incremental messages until a snapshot is
    /// applied.
    pub fn late_joiner(config: BookConfig) -> Subscriber {
        Subscriber {
            sequence_next: None,
            ..Subscriber::new(config)
        }
    }

    /// The rebuilt books.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// The next feed sequence to apply (`None` while waiting for a snapshot).
    pub fn sequence_next(&self) -> Option<u64> {
        self.sequence_next
    }

    /// Running figures.
    pub fn counters(&self) -> SubscriberCounters {
        self.counters
    }

    /// Messages known to exist but not yet received: request them from the retransmission
    /// service (`from..to`). `None` when up to date or waiting for a snapshot.
    pub fn gap(&self) -> Option<core::ops::Range<u64>> {
        let next = self.sequence_next?;
        (self.sequence_seen_end > next).then_some(next..self.sequence_seen_end)
    }

    /// Applies one frame of the incremental feed (live or retransmitted).
    pub fn on_frame(&mut self, bytes: &[u8]) -> Result<FrameOutcome, SubscriberError> {
        let frame = FrameView::parse(bytes)?;
        match self.session {
            Some(session) if session != frame.session => {
                return Err(SubscriberError::Session {
                    expected: session,
                    got: frame.session,
                })
            }
            _ => self.session = Some(frame.session),
        }
        self.counters.frames += 1;
        self.sequence_seen_end = self.sequence_seen_end.max(frame.sequence_end());
        if frame.is_end_of_session() {
            return Ok(FrameOutcome::EndOfSession);
        }
        if frame.is_heartbeat() {
            // A heartbeat's sequence is that of the next message.
            self.sequence_seen_end = self.sequence_seen_end.max(frame.sequence_first);
            return Ok(FrameOutcome::Heartbeat);
        }
        let Some(next) = self.sequence_next else {
            return Ok(FrameOutcome::NotSynchronized);
        };
        if frame.sequence_first > next {
            self.counters.gaps += 1;
            return Ok(FrameOutcome::Gap {
                from: next,
                to: self.sequence_seen_end,
            });
        }
        let mut applied = 0u32;
        for (sequence, bytes) in frame.messages() {
            if sequence < next {
                self.counters.duplicates += 1;
                continue;
            }
            if let Err(error) = self.apply_incremental(sequence, bytes) {
                // The book is unchanged by the failing message, but the feed cannot be
                // followed past it: wait for a snapshot.
                self.sequence_next = None;
                return Err(error);
            }
            self.sequence_next = Some(sequence + 1);
            applied += 1;
        }
        if applied == 0 {
            return Ok(FrameOutcome::Duplicate);
        }
        Ok(FrameOutcome::Applied { messages: applied })
    }

    fn apply_incremental(&mut self, sequence: u64, bytes: &[u8]) -> Result<(), SubscriberError> {
        let message = match Message::decode(bytes) {
            Ok(message) => message,
            Err(DecodeError::UnknownType(_)) => {
                self.counters.unknown_types += 1;
                return Ok(());
            }
            Err(error) => return Err(SubscriberError::Decode { sequence, error }),
        };
        match message {
            Message::BookChecksum(checksum) => {
                let rebuilt = self.book.checksum();
                if rebuilt.value != checksum.checksum
                    || rebuilt.level_count != checksum.level_count
                    || rebuilt.order_count != checksum.order_count
                {
                    return Err(SubscriberError::Checksum {
                        sequence,
                        engine: checksum.checksum,
                        rebuilt: rebuilt.value,
                    });
                }
                self.counters.checksums_verified += 1;
            }
            // A snapshot marker has no place in the incremental feed; ignore it.
            Message::SnapshotEnd(_) => {}
            message => self
                .book
                .apply(&message)
                .map_err(|error| SubscriberError::Book { sequence, error })?,
        }
        self.counters.messages += 1;
        Ok(())
    }

    /// Starts loading a snapshot: the books are cleared and incremental frames are ignored
    /// until the snapshot's end arrives.
    pub fn begin_snapshot(&mut self) {
        self.book.clear();
        self.sequence_next = None;
        self.snapshot_loading = true;
        self.snapshot_messages = 0;
    }

    /// Applies one snapshot message (in snapshot order). Returns `Some(sequence)` when the
    /// snapshot ends: the books are as of feed sequence `sequence`, the next incremental
    /// message to apply is `sequence + 1` (frames from the live feed or a retransmission).
    pub fn on_snapshot_message(&mut self, bytes: &[u8]) -> Result<Option<u64>, SubscriberError> {
        if !self.snapshot_loading {
            return Err(SubscriberError::NoSnapshot);
        }
        self.snapshot_messages += 1;
        let index = self.snapshot_messages;
        let message = match Message::decode(bytes) {
            Ok(message) => message,
            Err(DecodeError::UnknownType(_)) => return Ok(None),
            Err(error) => {
                return Err(SubscriberError::Decode {
                    sequence: index,
                    error,
                })
            }
        };
        match message {
            Message::SnapshotEnd(end) => {
                let rebuilt = self.book.checksum().value;
                if rebuilt != end.checksum {
                    self.snapshot_loading = false;
                    return Err(SubscriberError::Checksum {
                        sequence: end.sequence,
                        engine: end.checksum,
                        rebuilt,
                    });
                }
                self.snapshot_loading = false;
                let next = end.sequence.saturating_add(1);
                self.sequence_next = Some(next);
                self.sequence_seen_end = self.sequence_seen_end.max(next);
                self.counters.snapshots += 1;
                Ok(Some(end.sequence))
            }
            Message::BookChecksum(_) => Ok(None),
            message => {
                self.book.apply(&message).map_err(|error| {
                    self.snapshot_loading = false;
                    SubscriberError::Book {
                        sequence: index,
                        error,
                    }
                })?;
                Ok(None)
            }
        }
    }

    /// Applies a whole snapshot: [`Subscriber::begin_snapshot`], then every message. Returns
    /// the feed sequence it is as of.
    pub fn apply_snapshot<'m>(
        &mut self,
        messages: impl IntoIterator<Item = &'m [u8]>,
    ) -> Result<u64, SubscriberError> {
        self.begin_snapshot();
        for message in messages {
            if let Some(sequence) = self.on_snapshot_message(message)? {
                return Ok(sequence);
            }
        }
        self.snapshot_loading = false;
        Err(SubscriberError::NoSnapshot)
    }
}
