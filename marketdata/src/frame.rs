//! Framing: MoldUDP64 packets (several messages per frame, each numbered by the feed sequence,
//! so subscribers detect gaps), the standard ITCH binary file layout, and a bounded ring of
//! recent messages that serves retransmission requests.
//!
//! A MoldUDP64 packet is a 20-byte header, then message blocks:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 10 | session (ASCII, space padded) |
//! | 10 | 8 | sequence number of the first message (big-endian) |
//! | 18 | 2 | message count (big-endian); 0 = heartbeat, 0xFFFF = end of session |
//! | 20 | 2 + n | each message: its length (2 bytes, big-endian), then its bytes |
//!
//! The message with index `i` in a packet has feed sequence `first + i`.
//! The ITCH file layout is the message blocks alone: each message preceded by its 2-byte
//! big-endian length.

use crate::itch::{self, MESSAGE_LEN_MAX};
use crate::mapping::MessageSink;

/// Length of a session name.
pub const SESSION_LEN: usize = 10;
/// Length of the MoldUDP64 header.
pub const FRAME_HEADER_LEN: usize = SESSION_LEN + 8 + 2;
/// Upper bound of a frame (fits an Aeron message of 8 KiB).
pub const FRAME_LEN_MAX: usize = 8192;
/// Lower bound of a packer's frame length: the header and one message of the longest type.
pub const FRAME_LEN_MIN: usize = FRAME_HEADER_LEN + 2 + MESSAGE_LEN_MAX;
/// Message count of an end-of-session packet.
pub const MESSAGE_COUNT_END_OF_SESSION: u16 = 0xFFFF;
/// Length prefix of a message block (MoldUDP64 and the ITCH file layout alike).
pub const LENGTH_PREFIX_LEN: usize = 2;
const _: () = assert!(FRAME_HEADER_LEN == 20);
const _: () = assert!(FRAME_LEN_MIN <= FRAME_LEN_MAX);
// Even the smallest message block takes 3 bytes, so a frame holds fewer messages than the
// end-of-session marker.
const _: () =
    assert!((FRAME_LEN_MAX - FRAME_HEADER_LEN) / 3 < MESSAGE_COUNT_END_OF_SESSION as usize);

/// A frame or file that does not parse, or a packer misuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its header or than a length it announces.
    #[error("truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        available: usize,
    },
    /// Bytes after the announced messages.
    #[error("{0} bytes after the last message")]
    Trailing(usize),
    /// A message of length 0.
    #[error("empty message block")]
    EmptyMessage,
    /// The sequence numbers of the messages would overflow.
    #[error("sequence numbers overflow")]
    SequenceOverflow,
    /// A packer's frame length outside `FRAME_LEN_MIN..=FRAME_LEN_MAX`.
    #[error("frame length {0} outside {FRAME_LEN_MIN}..={FRAME_LEN_MAX}")]
    FrameLength(usize),
    /// A message that cannot fit one frame.
    #[error("message of {0} bytes does not fit a frame")]
    MessageTooLong(usize),
}

/// Packs consecutive messages into MoldUDP64 frames of at most `frame_len_max` bytes. A frame
/// is handed to `on_frame` when the next message does not fit, is not the next sequence
/// number, or on [`FramePacker::flush`] (the runtime flushes after each batch of commands, so
/// a quiet feed does not hold messages back). One buffer, allocated in `new`.
pub struct FramePacker {
    session: [u8; SESSION_LEN],
    buffer: Box<[u8]>,
    len: usize,
    count: u16,
    sequence_next: u64,
}

impl FramePacker {
    /// A packer for a session with frames of at most `frame_len_max` bytes.
    pub fn new(
        session: [u8; SESSION_LEN],
        frame_len_max: usize,
    ) -> Result<FramePacker, FrameError> {
        if !(FRAME_LEN_MIN..=FRAME_LEN_MAX).contains(&frame_len_max) {
            return Err(FrameError::FrameLength(frame_len_max));
        }
        let mut buffer = vec![0u8; frame_len_max].into_boxed_slice();
        buffer[..SESSION_LEN].copy_from_slice(&session);
        Ok(FramePacker {
            session,
            buffer,
            len: FRAME_HEADER_LEN,
            count: 0,
            sequence_next: 0,
        })
    }

    /// The session name.
    pub fn session(&self) -> [u8; SESSION_LEN] {
        self.session
    }

    /// Messages in the frame being built.
    pub fn pending(&self) -> u16 {
        self.count
    }

    /// Adds a message with its feed sequence number.
    pub fn push(
        &mut self,
        sequence: u64,
        message: &[u8],
        on_frame: &mut impl FnMut(&[u8]),
    ) -> Result<(), FrameError> {
        let block = LENGTH_PREFIX_LEN + message.len();
        if message.is_empty() || FRAME_HEADER_LEN + block > self.buffer.len() {
            return Err(FrameError::MessageTooLong(message.len()));
        }
        if self.count > 0
            && (sequence != self.sequence_next || self.len + block > self.buffer.len())
        {
            self.flush(on_frame);
        }
        if self.count == 0 {
            self.buffer[SESSION_LEN..SESSION_LEN + 8].copy_from_slice(&sequence.to_be_bytes());
        }
        // The length fits 2 bytes: the message fits a frame of at most FRAME_LEN_MAX.
        let length = message.len() as u16;
        self.buffer[self.len..self.len + 2].copy_from_slice(&length.to_be_bytes());
        self.buffer[self.len + 2..self.len + block].copy_from_slice(message);
        self.len += block;
        self.count += 1;
        self.sequence_next = sequence.wrapping_add(1);
        debug_assert!(self.len <= self.buffer.len());
        Ok(())
    }

    /// Hands the frame being built, if any, to `on_frame`.
    pub fn flush(&mut self, on_frame: &mut impl FnMut(&[u8])) {
        if self.count == 0 {
            return;
        }
        self.buffer[SESSION_LEN + 8..FRAME_HEADER_LEN].copy_from_slice(&self.count.to_be_bytes());
        on_frame(&self.buffer[..self.len]);
        self.len = FRAME_HEADER_LEN;
        self.count = 0;
    }

    /// A heartbeat (no messages) announcing `sequence_next`, the sequence of the next message,
    /// so a subscriber notices loss at the end of a burst. Returns the frame's bytes.
    pub fn heartbeat(&self, sequence_next: u64) -> [u8; FRAME_HEADER_LEN] {
        let mut frame = [0u8; FRAME_HEADER_LEN];
        frame[..SESSION_LEN].copy_from_slice(&self.session);
        frame[SESSION_LEN..SESSION_LEN + 8].copy_from_slice(&sequence_next.to_be_bytes());
        frame
    }
}

/// A [`MessageSink`] that packs into a [`FramePacker`] and hands full frames to `on_frame`.
pub struct PackingSink<'a, F: FnMut(&[u8])> {
    /// The packer.
    pub packer: &'a mut FramePacker,
    /// Receives each complete frame.
    pub on_frame: F,
    /// Messages refused by the packer (too long for a frame); 0 for this crate's messages.
    pub refused: u64,
}

impl<'a, F: FnMut(&[u8])> PackingSink<'a, F> {
    /// A sink over `packer`.
    pub fn new(packer: &'a mut FramePacker, on_frame: F) -> Self {
        PackingSink {
            packer,
            on_frame,
            refused: 0,
        }
    }

    /// Flushes the frame being built.
    pub fn flush(&mut self) {
        self.packer.flush(&mut self.on_frame);
    }
}

impl<F: FnMut(&[u8])> MessageSink for PackingSink<'_, F> {
    fn message(&mut self, sequence: u64, message: &[u8]) {
        if self
            .packer
            .push(sequence, message, &mut self.on_frame)
            .is_err()
        {
            self.refused += 1;
        }
    }
}

/// A parsed MoldUDP64 frame, borrowing its bytes. Parsing checks every length, so iterating
/// the messages cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameView<'a> {
    /// Session name.
    pub session: [u8; SESSION_LEN],
    /// Sequence of the first message (of a heartbeat: of the next message).
    pub sequence_first: u64,
    /// Message count as sent (0 heartbeat, 0xFFFF end of session).
    pub message_count: u16,
    body: &'a [u8],
}

impl<'a> FrameView<'a> {
    /// Parses and checks a whole frame.
    pub fn parse(bytes: &'a [u8]) -> Result<FrameView<'a>, FrameError> {
        if bytes.len() < FRAME_HEADER_LEN {
            return Err(FrameError::Truncated {
                needed: FRAME_HEADER_LEN,
                available: bytes.len(),
            });
        }
        let mut session = [0u8; SESSION_LEN];
        session.copy_from_slice(&bytes[..SESSION_LEN]);
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&bytes[SESSION_LEN..SESSION_LEN + 8]);
        let sequence_first = u64::from_be_bytes(sequence);
        let message_count = u16::from_be_bytes([bytes[18], bytes[19]]);
        let body = &bytes[FRAME_HEADER_LEN..];
        let messages = if message_count == MESSAGE_COUNT_END_OF_SESSION {
            0
        } else {
            message_count
        };
        sequence_first
            .checked_add(u64::from(messages))
            .ok_or(FrameError::SequenceOverflow)?;
        let mut at = 0usize;
        for _ in 0..messages {
            let block = next_block(body, at)?;
            at += LENGTH_PREFIX_LEN + block.len();
        }
        if at != body.len() {
            return Err(FrameError::Trailing(body.len() - at));
        }
        Ok(FrameView {
            session,
            sequence_first,
            message_count,
            body,
        })
    }

    /// Whether this is a heartbeat.
    pub fn is_heartbeat(&self) -> bool {
        self.message_count == 0
    }

    /// Whether this ends the session.
    pub fn is_end_of_session(&self) -> bool {
        self.message_count == MESSAGE_COUNT_END_OF_SESSION
    }

    /// Number of messages carried.
    pub fn len(&self) -> u16 {
        if self.is_end_of_session() {
            0
        } else {
            self.message_count
        }
    }

    /// Whether no messages are carried.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sequence after the last message.
    pub fn sequence_end(&self) -> u64 {
        // Checked in parse.
        self.sequence_first + u64::from(self.len())
    }

    /// The messages with their feed sequence numbers.
    pub fn messages(&self) -> FrameMessages<'a> {
        FrameMessages {
            body: self.body,
            at: 0,
            sequence: self.sequence_first,
            left: self.len(),
        }
    }
}

/// The block at `at`: its length prefix and bytes must be within `bytes`; it must not be empty.
fn next_block(bytes: &[u8], at: usize) -> Result<&[u8], FrameError> {
    let rest = &bytes[at.min(bytes.len())..];
    if rest.len() < LENGTH_PREFIX_LEN {
        return Err(FrameError::Truncated {
            needed: LENGTH_PREFIX_LEN,
            available: rest.len(),
        });
    }
    let length = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    if length == 0 {
        return Err(FrameError::EmptyMessage);
    }
    rest.get(LENGTH_PREFIX_LEN..LENGTH_PREFIX_LEN + length)
        .ok_or(FrameError::Truncated {
            needed: LENGTH_PREFIX_LEN + length,
            available: rest.len(),
        })
}

/// Iterator over a frame's messages.
pub struct FrameMessages<'a> {
    body: &'a [u8],
    at: usize,
    sequence: u64,
    left: u16,
}

impl<'a> Iterator for FrameMessages<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<(u64, &'a [u8])> {
        if self.left == 0 {
            return None;
        }
        // FrameView::parse checked every block.
        let block = next_block(self.body, self.at).ok()?;
        let sequence = self.sequence;
        self.at += LENGTH_PREFIX_LEN + block.len();
        self.sequence += 1;
        self.left -= 1;
        Some((sequence, block))
    }
}

/// Writes one message in the ITCH file layout (2-byte big-endian length, then the message)
/// at the start of `out`; returns the bytes written.
pub fn encode_file_record(message: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    let length =
        u16::try_from(message.len()).map_err(|_| FrameError::MessageTooLong(message.len()))?;
    if length == 0 {
        return Err(FrameError::EmptyMessage);
    }
    let total = LENGTH_PREFIX_LEN + message.len();
    if out.len() < total {
        return Err(FrameError::Truncated {
            needed: total,
            available: out.len(),
        });
    }
    out[..2].copy_from_slice(&length.to_be_bytes());
    out[2..total].copy_from_slice(message);
    Ok(total)
}

/// A [`MessageSink`] that appends messages in the ITCH file layout to a buffer the recorder
/// owns (it writes the buffer out and clears it; a reused buffer does not allocate).
/// With `standard_only`, this project's extension messages (`Z`, `G`) are left out, so the
/// file is pure ITCH 5.0.
pub struct FileSink<'a> {
    /// The output.
    pub out: &'a mut Vec<u8>,
    /// Leave out non-ITCH message types.
    pub standard_only: bool,
}

impl MessageSink for FileSink<'_> {
    fn message(&mut self, _sequence: u64, message: &[u8]) {
        let Some(&message_type) = message.first() else {
            return;
        };
        if self.standard_only && !itch::is_itch_standard(message_type) {
            return;
        }
        let Ok(length) = u16::try_from(message.len()) else {
            return;
        };
        self.out.extend_from_slice(&length.to_be_bytes());
        self.out.extend_from_slice(message);
    }
}

/// Reads the ITCH file layout: yields each message, then `Err` once if the bytes end inside a
/// record (a file cut short), then nothing.
pub struct FileRecords<'a> {
    bytes: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> FileRecords<'a> {
    /// Records of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        FileRecords {
            bytes,
            at: 0,
            failed: false,
        }
    }

    /// Bytes consumed by complete records so far.
    pub fn position(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for FileRecords<'a> {
    type Item = Result<&'a [u8], FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.bytes.len() {
            return None;
        }
        match next_block(self.bytes, self.at) {
            Ok(block) => {
                self.at += LENGTH_PREFIX_LEN + block.len();
                Some(Ok(block))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// A retransmission request cannot be served from the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetransmitError {
    /// Part of the range is no longer (or not yet) held: take a snapshot instead.
    #[error("messages {from}..{to} requested, {held_from}..{held_to} held")]
    NotHeld {
        /// First requested.
        from: u64,
        /// One past the last requested.
        to: u64,
        /// First held.
        held_from: u64,
        /// One past the last held.
        held_to: u64,
    },
}

/// The most recent `capacity` messages of the feed, by feed sequence number, for
/// retransmission. Fixed memory: `capacity` slots of [`MESSAGE_LEN_MAX`] bytes. A message that
/// does not continue the sequence restarts the ring at it; a longer message than a slot is not
/// held (the ring restarts after it).
pub struct RetransmitRing {
    slots: Box<[[u8; MESSAGE_LEN_MAX]]>,
    lens: Box<[u8]>,
    /// One past the last message held.
    sequence_end: u64,
    /// Messages held (at most the capacity).
    held: u64,
}

const _: () = assert!(MESSAGE_LEN_MAX <= u8::MAX as usize);

impl RetransmitRing {
    /// A ring of `capacity` messages (at least 1).
    pub fn new(capacity: usize) -> RetransmitRing {
        let capacity = capacity.max(1);
        RetransmitRing {
            slots: vec![[0u8; MESSAGE_LEN_MAX]; capacity].into_boxed_slice(),
            lens: vec![0u8; capacity].into_boxed_slice(),
            sequence_end: 0,
            held: 0,
        }
    }

    /// The range of sequence numbers held.
    pub fn held(&self) -> core::ops::Range<u64> {
        self.sequence_end - self.held..self.sequence_end
    }

    fn slot(&self, sequence: u64) -> usize {
        (sequence % self.slots.len() as u64) as usize
    }

    /// The message with this sequence number, if held.
    pub fn get(&self, sequence: u64) -> Option<&[u8]> {
        if !self.held().contains(&sequence) {
            return None;
        }
        let slot = self.slot(sequence);
        Some(&self.slots[slot][..usize::from(self.lens[slot])])
    }

    /// Serves `from..to` as frames through `packer` (flushed at the end). Returns the number
    /// of messages sent.
    pub fn retransmit(
        &self,
        from: u64,
        to: u64,
        packer: &mut FramePacker,
        on_frame: &mut impl FnMut(&[u8]),
    ) -> Result<u64, RetransmitError> {
        let held = self.held();
        if from > to || from < held.start || to > held.end {
            return Err(RetransmitError::NotHeld {
                from,
                to,
                held_from: held.start,
                held_to: held.end,
            });
        }
        for sequence in from..to {
            if let Some(message) = self.get(sequence) {
                // A held message fits a slot, so it fits every frame.
                if packer.push(sequence, message, on_frame).is_err() {
                    unreachable!("a held message fits a frame");
                }
            }
        }
        packer.flush(on_frame);
        Ok(to - from)
    }
}

impl MessageSink for RetransmitRing {
    fn message(&mut self, sequence: u64, message: &[u8]) {
        if sequence == u64::MAX {
            // No sequence follows it; hold nothing rather than wrap.
            self.held = 0;
            return;
        }
        if self.held > 0 && sequence != self.sequence_end {
            self.held = 0;
        }
        self.sequence_end = sequence.wrapping_add(1);
        if message.is_empty() || message.len() > MESSAGE_LEN_MAX {
            self.held = 0;
            return;
        }
        let slot = self.slot(sequence);
        self.slots[slot][..message.len()].copy_from_slice(message);
        self.lens[slot] = message.len() as u8;
        self.held = (self.held + 1).min(self.slots.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SESSION: [u8; SESSION_LEN] = *b"TEST      ";

    fn messages(count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|index| vec![b'D'; 1 + (index * 7) % MESSAGE_LEN_MAX])
            .collect()
    }

    #[test]
    fn frame_layout() {
        let mut packer = FramePacker::new(SESSION, FRAME_LEN_MAX).expect("length");
        let mut frames = Vec::new();
        let mut on_frame = |frame: &[u8]| frames.push(frame.to_vec());
        packer.push(7, b"AB", &mut on_frame).expect("fits");
        packer.push(8, b"CDE", &mut on_frame).expect("fits");
        packer.flush(&mut on_frame);
        assert_eq!(frames.len(), 1);
        let frame = &frames[0];
        assert_eq!(&frame[..10], b"TEST      ");
        assert_eq!(&frame[10..18], &7u64.to_be_bytes());
        assert_eq!(&frame[18..20], &[0, 2]);
        assert_eq!(&frame[20..24], &[0, 2, b'A', b'B']);
        assert_eq!(&frame[24..29], &[0, 3, b'C', b'D', b'E']);
        assert_eq!(frame.len(), 29);
        let view = FrameView::parse(frame).expect("parses");
        let parsed: Vec<_> = view.messages().collect();
        assert_eq!(parsed, vec![(7, &b"AB"[..]), (8, &b"CDE"[..])]);
        assert_eq!(view.sequence_end(), 9);

        let heartbeat = packer.heartbeat(9);
        let view = FrameView::parse(&heartbeat).expect("parses");
        assert!(view.is_heartbeat() && view.is_empty());
        assert_eq!(view.sequence_first, 9);
    }

    #[test]
    fn packs_bounded_contiguous_frames() {
        let frame_len_max = FRAME_LEN_MIN + 40;
        let mut packer = FramePacker::new(SESSION, frame_len_max).expect("length");
        let mut frames = Vec::new();
        let mut on_frame = |frame: &[u8]| frames.push(frame.to_vec());
        let all = messages(200);
        for (index, message) in all.iter().enumerate() {
            // A jump in the sequence starts a new frame.
            let sequence = if index < 100 {
                index as u64
            } else {
                index as u64 + 1000
            };
            packer.push(sequence, message, &mut on_frame).expect("fits");
        }
        packer.flush(&mut on_frame);
        let mut seen = Vec::new();
        for frame in &frames {
            assert!(frame.len() <= frame_len_max);
            let view = FrameView::parse(frame).expect("parses");
            for (sequence, message) in view.messages() {
                seen.push((sequence, message.to_vec()));
            }
        }
        let expected: Vec<_> = all
            .iter()
            .enumerate()
            .map(|(index, message)| {
                let sequence = if index < 100 {
                    index as u64
                } else {
                    index as u64 + 1000
                };
                (sequence, message.clone())
            })
            .collect();
        assert_eq!(seen, expected);
        assert!(FramePacker::new(SESSION, FRAME_LEN_MAX + 1).is_err());
        assert!(FramePacker::new(SESSION, FRAME_LEN_MIN - 1).is_err());
    }

    #[test]
    fn file_layout_round_trips_and_reports_truncation() {
        let mut out = Vec::new();
        let mut sink = FileSink {
            out: &mut out,
            standard_only: true,
        };
        sink.message(1, b"Dxxxxxxxxxxxxxxxxxx");
        sink.message(2, &[b'Z'; 27]); // extension: left out
        sink.message(3, b"Xyy");
        assert_eq!(&out[..2], &[0, 19]);
        let records: Vec<_> = FileRecords::new(&out).collect();
        assert_eq!(
            records,
            vec![Ok(&b"Dxxxxxxxxxxxxxxxxxx"[..]), Ok(&b"Xyy"[..])]
        );
        let cut = &out[..out.len() - 1];
        let records: Vec<_> = FileRecords::new(cut).collect();
        assert_eq!(records.len(), 2);
        assert!(records[1].is_err());
        let mut buffer = [0u8; 8];
        assert_eq!(encode_file_record(b"ABC", &mut buffer), Ok(5));
        assert_eq!(&buffer[..5], &[0, 3, b'A', b'B', b'C']);
    }

    #[test]
    fn ring_serves_what_it_holds() {
        let mut ring = RetransmitRing::new(16);
        for sequence in 1..=40u64 {
            ring.message(sequence, &[b'D', sequence as u8]);
        }
        assert_eq!(ring.held(), 25..41);
        assert_eq!(ring.get(30), Some(&[b'D', 30][..]));
        assert_eq!(ring.get(24), None);
        let mut packer = FramePacker::new(SESSION, FRAME_LEN_MIN).expect("length");
        let mut got = Vec::new();
        let sent = ring
            .retransmit(26, 41, &mut packer, &mut |frame: &[u8]| {
                let view = FrameView::parse(frame).expect("parses");
                got.extend(
                    view.messages()
                        .map(|(sequence, message)| (sequence, message[1])),
                );
            })
            .expect("held");
        assert_eq!(sent, 15);
        assert_eq!(got, (26..41u64).map(|s| (s, s as u8)).collect::<Vec<_>>());
        assert!(matches!(
            ring.retransmit(10, 30, &mut packer, &mut |_: &[u8]| {}),
            Err(RetransmitError::NotHeld { held_from: 25, .. })
        ));
        // A jump restarts the ring.
        ring.message(100, b"D!");
        assert_eq!(ring.held(), 100..101);
    }

    proptest! {
        #[test]
        fn garbage_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(view) = FrameView::parse(&bytes) {
                let count = view.messages().count();
                prop_assert_eq!(count, usize::from(view.len()));
            }
            for record in FileRecords::new(&bytes) {
                let _ = record;
            }
        }

        #[test]
        fn plausible_garbage_frames_never_panic(
            count in 0u16..4,
            sequence in prop_oneof![Just(u64::MAX), Just(1u64), any::<u64>()],
            body in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..200),
        ) {
            let mut bytes = SESSION.to_vec();
            bytes.extend_from_slice(&sequence.to_be_bytes()[..]);
            bytes.extend_from_slice(&count.to_be_bytes());
            bytes.extend_from_slice(&body);
            if let Ok(view) = FrameView::parse(&bytes) {
                prop_assert_eq!(view.messages().count(), usize::from(view.len()));
            }
        }
    }
}
