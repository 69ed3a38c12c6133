//! Requests from subscribers to the retransmission service: MoldUDP64's request packet, with one
//! extension for snapshots.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 10 | session (the feed's) |
//! | 10 | 8 | sequence number of the first message wanted (big-endian); 0 = a snapshot |
//! | 18 | 2 | message count wanted (big-endian) |
//!
//! MoldUDP64 numbers messages from 1, so sequence 0 names no message: this feed uses it to ask
//! for a snapshot of the books (the count is then ignored). A retransmission answers with the
//! feed's own frames; a request for more than [`REQUEST_MESSAGES_MAX`] messages is served up to
//! that bound (the subscriber asks again for the rest).

use crate::frame::SESSION_LEN;

/// Length of a request packet.
pub const REQUEST_LEN: usize = SESSION_LEN + 8 + 2;
/// Most messages one request is served (MoldUDP64's count field allows 65,535).
pub const REQUEST_MESSAGES_MAX: u16 = 16_384;
/// The sequence number that asks for a snapshot.
pub const SEQUENCE_SNAPSHOT: u64 = 0;
const _: () = assert!(REQUEST_LEN == 20);

/// What a subscriber asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Messages `from..from + count` of the incremental feed.
    Retransmit {
        /// First feed sequence wanted (≥ 1).
        from: u64,
        /// How many (≥ 1).
        count: u16,
    },
    /// A snapshot of every book.
    Snapshot,
}

/// A request packet that does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not exactly [`REQUEST_LEN`] bytes.
    #[error("request of {0} bytes, {REQUEST_LEN} expected")]
    Length(usize),
    /// A retransmission of 0 messages, or one whose range overflows.
    #[error("request for {count} messages from {from}")]
    Range {
        /// First sequence.
        from: u64,
        /// Count.
        count: u16,
    },
}

impl Request {
    /// Encodes the request for `session`.
    pub fn encode(&self, session: [u8; SESSION_LEN]) -> [u8; REQUEST_LEN] {
        let (sequence, count) = match *self {
            Request::Retransmit { from, count } => (from, count),
            Request::Snapshot => (SEQUENCE_SNAPSHOT, 0),
        };
        let mut bytes = [0u8; REQUEST_LEN];
        bytes[..SESSION_LEN].copy_from_slice(&session);
        bytes[SESSION_LEN..SESSION_LEN + 8].copy_from_slice(&sequence.to_be_bytes());
        bytes[SESSION_LEN + 8..].copy_from_slice(&count.to_be_bytes());
        bytes
    }

    /// Decodes a request packet: its session and what it asks for.
    pub fn decode(bytes: &[u8]) -> Result<([u8; SESSION_LEN], Request), RequestError> {
        if bytes.len() != REQUEST_LEN {
            return Err(RequestError::Length(bytes.len()));
        }
        let mut session = [0u8; SESSION_LEN];
        session.copy_from_slice(&bytes[..SESSION_LEN]);
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&bytes[SESSION_LEN..SESSION_LEN + 8]);
        let from = u64::from_be_bytes(sequence);
        let count = u16::from_be_bytes([bytes[18], bytes[19]]);
        if from == SEQUENCE_SNAPSHOT {
            return Ok((session, Request::Snapshot));
        }
        if count == 0 || from.checked_add(u64::from(count)).is_none() {
            return Err(RequestError::Range { from, count });
        }
        Ok((session, Request::Retransmit { from, count }))
    }

    /// The request for the first [`REQUEST_MESSAGES_MAX`] messages of `range` (`None` if empty).
    pub fn for_range(range: core::ops::Range<u64>) -> Option<Request> {
        if range.start == SEQUENCE_SNAPSHOT || range.is_empty() {
            return None;
        }
        let count = (range.end - range.start).min(u64::from(REQUEST_MESSAGES_MAX)) as u16;
        Some(Request::Retransmit {
            from: range.start,
            count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SESSION: [u8; SESSION_LEN] = *b"TESTFEED01";

    #[test]
    fn layout_is_moldudp64_request() {
        let bytes = Request::Retransmit {
            from: 0x0102_0304_0506_0708,
            count: 0x0A0B,
        }
        .encode(SESSION);
        assert_eq!(&bytes[..10], b"TESTFEED01");
        assert_eq!(&bytes[10..18], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[18..20], &[0x0A, 0x0B]);
        let snapshot = Request::Snapshot.encode(SESSION);
        assert_eq!(&snapshot[10..], &[0; 10]);
        assert_eq!(Request::decode(&snapshot), Ok((SESSION, Request::Snapshot)));
    }

    #[test]
    fn refuses_bad_requests_and_bounds_ranges() {
        assert_eq!(Request::decode(&[0; 19]), Err(RequestError::Length(19)));
        let mut zero = Request::Retransmit { from: 5, count: 1 }.encode(SESSION);
        zero[19] = 0;
        assert!(matches!(
            Request::decode(&zero),
            Err(RequestError::Range { .. })
        ));
        let overflow = Request::Retransmit {
            from: u64::MAX,
            count: 1,
        }
        .encode(SESSION);
        assert!(Request::decode(&overflow).is_err());
        assert_eq!(
            Request::for_range(10..100_000),
            Some(Request::Retransmit {
                from: 10,
                count: REQUEST_MESSAGES_MAX
            })
        );
        assert_eq!(Request::for_range(7..7), None);
        assert_eq!(
            Request::for_range(7..9),
            Some(Request::Retransmit { from: 7, count: 2 })
        );
    }

    proptest! {
        #[test]
        fn round_trips(from in 1u64..u64::MAX / 2, count in 1u16..) {
            let request = Request::Retransmit { from, count };
            prop_assert_eq!(Request::decode(&request.encode(SESSION)), Ok((SESSION, request)));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Request::decode(&bytes);
        }
    }
}
