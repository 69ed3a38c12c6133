//! What the nodes say to each other and what the journal holds, byte for byte.
//!
//! Replication messages (little-endian, a 48-byte header, then frames for Append):
//!
//! | offset | field | Append | Ack | Nack | RequestVote | Vote |
//! |---|---|---|---|---|---|---|
//! | 0 | kind: u8 | 1 | 2 | 3 | 4 | 5 |
//! | 1 | from: u8 | leader | follower | follower | candidate | voter |
//! | 2 | flags: u8 | 0 | 0 | 0 | bit 0: pre-vote | bit 0: pre-vote, bit 1: granted |
//! | 3..8 | reserved, zero | | | | | |
//! | 8 | term: u64 | leader's term | follower's term | follower's term | proposed term | voter's term (the proposed one when granted) |
//! | 16 | a: u64 | prev position (where the frames go) | acknowledged position | a position the follower's log ends a record at | candidate's log end | 0 |
//! | 24 | b: u64 | commit position | 0 | 0 | 0 | 0 |
//! | 32 | c: u64 | position after the last frame | 0 | 0 | 0 | 0 |
//! | 40 | d: u64 | term of the record ending at prev position | 0 | term of the record ending at `a` | term of the candidate's last record | 0 |
//! | 48 | frames | journal frames, each padded to 8 bytes | | | | |
//!
//! Journal payloads: a client command is `client_id: u64, client_sequence: u64` then the command
//! bytes (record type [`RECORD_CLIENT_COMMAND`]); a checkpoint is `applied_sequence: u64,
//! state_hash: u64` ([`RECORD_CHECKPOINT`]); a leader opens its term with [`RECORD_TERM_START`]
//! (empty payload).

use journal::RECORD_HEADER_LEN;

/// Journal record type of a client command.
pub const RECORD_CLIENT_COMMAND: u16 = 1;
/// Journal record type of a state-hash checkpoint.
pub const RECORD_CHECKPOINT: u16 = 2;
/// Journal record type that opens a leader's term.
pub const RECORD_TERM_START: u16 = 3;

/// Bytes of the client header in front of a command payload.
pub const CLIENT_HEADER_LEN: usize = 16;
/// Length of a checkpoint payload.
pub const CHECKPOINT_LEN: usize = 16;
/// Length of a replication message header.
pub const MESSAGE_HEADER_LEN: usize = 48;
/// Most frame bytes in one Append message (keeps messages within one Aeron fragment batch).
pub const APPEND_FRAMES_LEN_MAX: usize = 60 * 1024;
/// Most nodes in a cluster.
pub const MEMBERS_MAX: usize = 7;

/// A node's index in the member list.
pub type NodeId = u8;

/// A replication message, borrowing its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Leader → follower: frames that start at `prev_position` in the follower's log, and the
    /// commit position. Empty frames make a heartbeat.
    Append {
        from: NodeId,
        term: u64,
        prev_position: u64,
        /// Term of the leader's record that ends at `prev_position` (0 at position 0): the
        /// follower takes the frames only if its record there has the same term.
        prev_term: u64,
        commit_position: u64,
        end_position: u64,
        frames: &'a [u8],
    },
    /// Follower → leader: "I hold everything up to `position`".
    Ack {
        from: NodeId,
        term: u64,
        position: u64,
    },
    /// Follower → leader: "your frames do not continue my log; my log has a record of term
    /// `position_term` ending at `position`, send from there if yours does too" (or, when `term`
    /// is higher than the leader's, "you are deposed").
    Nack {
        from: NodeId,
        term: u64,
        position: u64,
        position_term: u64,
    },
    /// Candidate → all: "vote for me in `term`; my log ends at `last_position` with a record of
    /// `last_term`". A pre-vote asks whether the voter would, without anyone changing state.
    RequestVote {
        from: NodeId,
        term: u64,
        last_position: u64,
        last_term: u64,
        pre: bool,
    },
    /// Voter → candidate.
    Vote {
        from: NodeId,
        term: u64,
        granted: bool,
        pre: bool,
    },
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message shorter than its header")]
    Short,
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("sender {0} is not a member")]
    Sender(u8),
    #[error("reserved bytes not zero")]
    Reserved,
    #[error("frames malformed")]
    Frames,
    #[error("flags {0:#04x} not valid for this kind")]
    Flags(u8),
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl<'a> Message<'a> {
    /// Writes the message into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        type Fields<'f> = (u8, u8, u8, u64, [u64; 4], &'f [u8]);
        let (kind, from, flags, term, [a, b, c, d], frames): Fields<'_> = match *self {
            Message::Append {
                from,
                term,
                prev_position,
                prev_term,
                commit_position,
                end_position,
                frames,
            } => (
                1,
                from,
                0,
                term,
                [prev_position, commit_position, end_position, prev_term],
                frames,
            ),
            Message::Ack {
                from,
                term,
                position,
            } => (2, from, 0, term, [position, 0, 0, 0], &[]),
            Message::Nack {
                from,
                term,
                position,
                position_term,
            } => (3, from, 0, term, [position, 0, 0, position_term], &[]),
            Message::RequestVote {
                from,
                term,
                last_position,
                last_term,
                pre,
            } => (
                4,
                from,
                pre as u8,
                term,
                [last_position, 0, 0, last_term],
                &[],
            ),
            Message::Vote {
                from,
                term,
                granted,
                pre,
            } => (5, from, pre as u8 | (granted as u8) << 1, term, [0; 4], &[]),
        };
        out.extend_from_slice(&[kind, from, flags, 0, 0, 0, 0, 0]);
        for value in [term, a, b, c, d] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(frames);
    }

    /// Reads a message from `bytes`, checking its shape (frames are checked again when appended).
    pub fn decode(bytes: &'a [u8], members: usize) -> Result<Message<'a>, DecodeError> {
        if bytes.len() < MESSAGE_HEADER_LEN {
            return Err(DecodeError::Short);
        }
        let (kind, from, flags) = (bytes[0], bytes[1], bytes[2]);
        if bytes[3..8].iter().any(|&b| b != 0) {
            return Err(DecodeError::Reserved);
        }
        if from as usize >= members {
            return Err(DecodeError::Sender(from));
        }
        let (term, a, b, c, d) = (
            u64_at(bytes, 8),
            u64_at(bytes, 16),
            u64_at(bytes, 24),
            u64_at(bytes, 32),
            u64_at(bytes, 40),
        );
        let frames = &bytes[MESSAGE_HEADER_LEN..];
        let flags_max = match kind {
            4 => 1,
            5 => 3,
            _ => 0,
        };
        if flags > flags_max {
            return Err(DecodeError::Flags(flags));
        }
        match kind {
            1 => {
                let mut rest = frames;
                while !rest.is_empty() {
                    let (_, aligned) = next_frame(rest).ok_or(DecodeError::Frames)?;
                    rest = &rest[aligned..];
                }
                Ok(Message::Append {
                    from,
                    term,
                    prev_position: a,
                    prev_term: d,
                    commit_position: b,
                    end_position: c,
                    frames,
                })
            }
            2..=5 if !frames.is_empty() => Err(DecodeError::Frames),
            2 => Ok(Message::Ack {
                from,
                term,
                position: a,
            }),
            3 => Ok(Message::Nack {
                from,
                term,
                position: a,
                position_term: d,
            }),
            4 => Ok(Message::RequestVote {
                from,
                term,
                last_position: a,
                last_term: d,
                pre: flags & 1 != 0,
            }),
            5 => Ok(Message::Vote {
                from,
                term,
                granted: flags & 2 != 0,
                pre: flags & 1 != 0,
            }),
            other => Err(DecodeError::Kind(other)),
        }
    }
}

/// Splits the first frame off packed frames: (frame without padding, bytes it occupies).
pub fn next_frame(frames: &[u8]) -> Option<(&[u8], usize)> {
    if frames.len() < RECORD_HEADER_LEN {
        return None;
    }
    let length = u32::from_le_bytes(frames[4..8].try_into().expect("4 bytes")) as usize;
    let aligned = journal::format::align_up(length as u64) as usize;
    if length < RECORD_HEADER_LEN || aligned > frames.len() {
        return None;
    }
    Some((&frames[..length], aligned))
}

/// The client header of a command payload: (client id, client sequence, command bytes).
pub fn split_client_command(payload: &[u8]) -> Option<(u64, u64, &[u8])> {
    if payload.len() < CLIENT_HEADER_LEN {
        return None;
    }
    Some((
        u64_at(payload, 0),
        u64_at(payload, 8),
        &payload[CLIENT_HEADER_LEN..],
    ))
}

/// A checkpoint payload: (applied sequence, state hash).
pub fn split_checkpoint(payload: &[u8]) -> Option<(u64, u64)> {
    (payload.len() == CHECKPOINT_LEN).then(|| (u64_at(payload, 0), u64_at(payload, 8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_exact_bytes() {
        let mut out = Vec::new();
        let ack = Message::Ack {
            from: 2,
            term: 7,
            position: 4096,
        };
        ack.encode(&mut out);
        assert_eq!(out.len(), 48);
        assert_eq!(&out[..8], &[2, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[8..16], &7u64.to_le_bytes());
        assert_eq!(&out[16..24], &4096u64.to_le_bytes());
        assert_eq!(Message::decode(&out, 3), Ok(ack));
        assert_eq!(Message::decode(&out, 2), Err(DecodeError::Sender(2)));
        assert_eq!(Message::decode(&out[..47], 3), Err(DecodeError::Short));
        out[0] = 9;
        assert_eq!(Message::decode(&out, 3), Err(DecodeError::Kind(9)));
        out[0] = 2;
        out[2] = 1;
        assert_eq!(Message::decode(&out, 3), Err(DecodeError::Flags(1)));
        out[2] = 0;
        out[5] = 1;
        assert_eq!(Message::decode(&out, 3), Err(DecodeError::Reserved));

        let nack = Message::Nack {
            from: 1,
            term: 3,
            position: 640,
            position_term: 2,
        };
        nack.encode(&mut out);
        assert_eq!(&out[..8], &[3, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[16..24], &640u64.to_le_bytes());
        assert_eq!(&out[40..48], &2u64.to_le_bytes());
        assert_eq!(Message::decode(&out, 3), Ok(nack));
    }

    #[test]
    fn votes_round_trip_with_exact_bytes() {
        let mut out = Vec::new();
        let request = Message::RequestVote {
            from: 1,
            term: 5,
            last_position: 1024,
            last_term: 4,
            pre: true,
        };
        request.encode(&mut out);
        assert_eq!(&out[..8], &[4, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(&out[8..16], &5u64.to_le_bytes());
        assert_eq!(&out[16..24], &1024u64.to_le_bytes());
        assert_eq!(&out[24..40], &[0; 16]);
        assert_eq!(&out[40..48], &4u64.to_le_bytes());
        assert_eq!(Message::decode(&out, 3), Ok(request));
        out[2] = 2;
        assert_eq!(Message::decode(&out, 3), Err(DecodeError::Flags(2)));

        let vote = Message::Vote {
            from: 2,
            term: 5,
            granted: true,
            pre: false,
        };
        vote.encode(&mut out);
        assert_eq!(&out[..8], &[5, 2, 2, 0, 0, 0, 0, 0]);
        assert_eq!(Message::decode(&out, 3), Ok(vote));
        out.push(0);
        assert_eq!(Message::decode(&out, 3), Err(DecodeError::Frames));
    }

    #[test]
    fn append_frames_are_checked_for_shape() {
        let mut frames = vec![0u8; 48];
        frames[4..8].copy_from_slice(&43u32.to_le_bytes());
        let append = Message::Append {
            from: 0,
            term: 1,
            prev_position: 0,
            prev_term: 0,
            commit_position: 0,
            end_position: 48,
            frames: &frames,
        };
        let mut out = Vec::new();
        append.encode(&mut out);
        assert_eq!(&out[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[32..40], &48u64.to_le_bytes());
        assert_eq!(Message::decode(&out, 3), Ok(append));
        out.truncate(out.len() - 8);
        assert_eq!(Message::decode(&out, 3), Err(DecodeError::Frames));
    }
}
