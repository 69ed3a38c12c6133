//! What the nodes say to each other and what the journal holds, byte for byte.
//!
//! Replication messages (little-endian, a 40-byte header then frames):
//!
//! | offset | field | Append | Ack | Nack |
//! |---|---|---|---|---|
//! | 0 | kind: u8 | 1 | 2 | 3 |
//! | 1 | from: u8 | leader | follower | follower |
//! | 2..8 | reserved, zero | | | |
//! | 8 | term: u64 | sender's term | | |
//! | 16 | a: u64 | prev position (follower's expected end) | acknowledged position | follower's end |
//! | 24 | b: u64 | commit position | 0 | 0 |
//! | 32 | c: u64 | position after the last frame | 0 | 0 |
//! | 40 | frames | journal frames, each padded to 8 bytes | | |
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
pub const MESSAGE_HEADER_LEN: usize = 40;
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
    /// Follower → leader: "your frames do not continue my log; my end is `position`" (or my term is
    /// higher).
    Nack {
        from: NodeId,
        term: u64,
        position: u64,
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
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl<'a> Message<'a> {
    /// Writes the message into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        let (kind, from, term, a, b, c, frames): (u8, u8, u64, u64, u64, u64, &[u8]) = match *self {
            Message::Append {
                from,
                term,
                prev_position,
                commit_position,
                end_position,
                frames,
            } => (
                1,
                from,
                term,
                prev_position,
                commit_position,
                end_position,
                frames,
            ),
            Message::Ack {
                from,
                term,
                position,
            } => (2, from, term, position, 0, 0, &[]),
            Message::Nack {
                from,
                term,
                position,
            } => (3, from, term, position, 0, 0, &[]),
        };
        out.extend_from_slice(&[kind, from, 0, 0, 0, 0, 0, 0]);
        for value in [term, a, b, c] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(frames);
    }

    /// Reads a message from `bytes`, checking its shape (frames are checked again when appended).
    pub fn decode(bytes: &'a [u8], members: usize) -> Result<Message<'a>, DecodeError> {
        if bytes.len() < MESSAGE_HEADER_LEN {
            return Err(DecodeError::Short);
        }
        let (kind, from) = (bytes[0], bytes[1]);
        if bytes[2..8].iter().any(|&b| b != 0) {
            return Err(DecodeError::Reserved);
        }
        if from as usize >= members {
            return Err(DecodeError::Sender(from));
        }
        let (term, a, b, c) = (
            u64_at(bytes, 8),
            u64_at(bytes, 16),
            u64_at(bytes, 24),
            u64_at(bytes, 32),
        );
        let frames = &bytes[MESSAGE_HEADER_LEN..];
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
                    commit_position: b,
                    end_position: c,
                    frames,
                })
            }
            2 | 3 if !frames.is_empty() => Err(DecodeError::Frames),
            2 => Ok(Message::Ack {
                from,
                term,
                position: a,
            }),
            3 => Ok(Message::Nack {
                from,
                term,
                position: a,
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
        assert_eq!(out.len(), 40);
        assert_eq!(&out[..8], &[2, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[8..16], &7u64.to_le_bytes());
        assert_eq!(&out[16..24], &4096u64.to_le_bytes());
        assert_eq!(Message::decode(&out, 3), Ok(ack));
        assert_eq!(Message::decode(&out, 2), Err(DecodeError::Sender(2)));
        assert_eq!(Message::decode(&out[..39], 3), Err(DecodeError::Short));
        out[0] = 9;
        assert_eq!(Message::decode(&out, 3), Err(DecodeError::Kind(9)));
        out[0] = 2;
        out[5] = 1;
        assert_eq!(Message::decode(&out, 3), Err(DecodeError::Reserved));
    }

    #[test]
    fn append_frames_are_checked_for_shape() {
        let mut frames = vec![0u8; 48];
        frames[4..8].copy_from_slice(&43u32.to_le_bytes());
        let append = Message::Append {
            from: 0,
            term: 1,
            prev_position: 0,
            commit_position: 0,
            end_position: 48,
            frames: &frames,
        };
        let mut out = Vec::new();
        append.encode(&mut out);
        assert_eq!(Message::decode(&out, 3), Ok(append));
        out.truncate(out.len() - 8);
        assert_eq!(Message::decode(&out, 3), Err(DecodeError::Frames));
    }
}
