//! Clients of the cluster: the ingress and egress protocol, the leader's client sessions, and a
//! client library. All over Aeron (UDP).
//!
//! Ingress (client → leader), little-endian:
//!
//! | offset | field | Connect | Command |
//! |---|---|---|---|
//! | 0 | kind: u8 | 1 | 2 |
//! | 1..8 | reserved, zero | | |
//! | 8 | client_id: u64 | | |
//! | 16 | | response endpoint length: u16, then ASCII `host:port` | client_sequence: u64 |
//! | 24 | | | command bytes (a 64-byte matcher command) |
//!
//! Egress (leader → client): kind u8 (1 Committed, 2 Rejected) | reason u8 | reserved [6] |
//! client_id u64 | client_sequence u64 | sequence u64 (the journal sequence, 0 when rejected).
//! A command is answered Committed only once it is committed and applied: an answer means the
//! command survives any minority failure. A resent command that was sequenced before is not
//! sequenced again; it is answered once the original is applied.

use std::collections::BTreeMap;

use rusteron_client::{Aeron, AeronExclusivePublication};

use crate::protocol::CLIENT_HEADER_LEN;
use crate::transport::{channel, TransportError, CONNECT_TIMEOUT};

/// Aeron stream id of client ingress.
pub const INGRESS_STREAM_ID: i32 = 1002;
/// Aeron stream id of client egress.
pub const EGRESS_STREAM_ID: i32 = 1003;
/// Length of an egress message.
pub const EGRESS_LEN: usize = 32;
/// Most client sessions a leader keeps.
pub const SESSIONS_MAX: usize = 1024;
/// Longest response endpoint accepted.
pub const ENDPOINT_LEN_MAX: usize = 64;

const KIND_CONNECT: u8 = 1;
const KIND_COMMAND: u8 = 2;
/// Egress kind: committed.
pub const RESPONSE_COMMITTED: u8 = 1;
/// Egress kind: rejected (see the reason).
pub const RESPONSE_REJECTED: u8 = 2;
/// Reject reason: the node does not lead.
pub const REASON_NOT_LEADER: u8 = 1;
/// Reject reason: too many clients or sessions.
pub const REASON_CAPACITY: u8 = 2;
/// Reject reason: the command is too long.
pub const REASON_TOO_LARGE: u8 = 3;

/// An ingress message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress<'a> {
    Connect {
        client_id: u64,
        response_endpoint: &'a str,
    },
    Command {
        client_id: u64,
        client_sequence: u64,
        command: &'a [u8],
    },
}

/// Why ingress bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    #[error("shorter than its header")]
    Short,
    #[error("unknown kind {0}")]
    Kind(u8),
    #[error("reserved bytes not zero")]
    Reserved,
    #[error("response endpoint malformed")]
    Endpoint,
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl<'a> Ingress<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        match *self {
            Ingress::Connect {
                client_id,
                response_endpoint,
            } => {
                out.extend_from_slice(&[KIND_CONNECT, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&client_id.to_le_bytes());
                out.extend_from_slice(&(response_endpoint.len() as u16).to_le_bytes());
                out.extend_from_slice(response_endpoint.as_bytes());
            }
            Ingress::Command {
                client_id,
                client_sequence,
                command,
            } => {
                out.extend_from_slice(&[KIND_COMMAND, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&client_id.to_le_bytes());
                out.extend_from_slice(&client_sequence.to_le_bytes());
                out.extend_from_slice(command);
            }
        }
    }

    pub fn decode(bytes: &'a [u8]) -> Result<Ingress<'a>, IngressError> {
        if bytes.len() < 16 {
            return Err(IngressError::Short);
        }
        if bytes[1..8].iter().any(|&b| b != 0) {
            return Err(IngressError::Reserved);
        }
        let client_id = u64_at(bytes, 8);
        match bytes[0] {
            KIND_CONNECT => {
                let length = bytes.get(16..18).ok_or(IngressError::Short)?;
                let length = u16::from_le_bytes([length[0], length[1]]) as usize;
                let text = bytes.get(18..18 + length).ok_or(IngressError::Endpoint)?;
                if length == 0 || length > ENDPOINT_LEN_MAX || bytes.len() != 18 + length {
                    return Err(IngressError::Endpoint);
                }
                let response_endpoint =
                    std::str::from_utf8(text).map_err(|_| IngressError::Endpoint)?;
                if !response_endpoint
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b':' || b == b'-')
                {
                    return Err(IngressError::Endpoint);
                }
                Ok(Ingress::Connect {
                    client_id,
                    response_endpoint,
                })
            }
            KIND_COMMAND if bytes.len() >= CLIENT_HEADER_LEN + 8 => Ok(Ingress::Command {
                client_id,
                client_sequence: u64_at(bytes, 16),
                command: &bytes[24..],
            }),
            KIND_COMMAND => Err(IngressError::Short),
            other => Err(IngressError::Kind(other)),
        }
    }
}

/// An egress message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub kind: u8,
    pub reason: u8,
    pub client_id: u64,
    pub client_sequence: u64,
    pub sequence: u64,
}

impl Response {
    pub fn encode(&self) -> [u8; EGRESS_LEN] {
        let mut out = [0u8; EGRESS_LEN];
        out[0] = self.kind;
        out[1] = self.reason;
        out[8..16].copy_from_slice(&self.client_id.to_le_bytes());
        out[16..24].copy_from_slice(&self.client_sequence.to_le_bytes());
        out[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Response> {
        (bytes.len() == EGRESS_LEN).then(|| Response {
            kind: bytes[0],
            reason: bytes[1],
            client_id: u64_at(bytes, 8),
            client_sequence: u64_at(bytes, 16),
            sequence: u64_at(bytes, 24),
        })
    }
}

/// The leader's side: a response publication per connected client.
pub struct Sessions {
    publications: BTreeMap<u64, AeronExclusivePublication>,
    /// Highest client sequence answered Committed per client (answers resends of applied commands).
    applied: BTreeMap<u64, u64>,
    pub responses_sent: u64,
    pub responses_dropped: u64,
    pub connects_refused: u64,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new()
    }
}

impl Sessions {
    pub fn new() -> Self {
        Sessions {
            publications: BTreeMap::new(),
            applied: BTreeMap::new(),
            responses_sent: 0,
            responses_dropped: 0,
            connects_refused: 0,
        }
    }

    /// Opens (or replaces) the response publication of `client_id`.
    pub fn connect(
        &mut self,
        aeron: &Aeron,
        client_id: u64,
        endpoint: &str,
    ) -> Result<(), TransportError> {
        if self.publications.len() >= SESSIONS_MAX && !self.publications.contains_key(&client_id) {
            self.connects_refused += 1;
            return Ok(());
        }
        let publication = aeron
            .async_add_exclusive_publication(&channel(endpoint), EGRESS_STREAM_ID)
            .map_err(|e| TransportError::Aeron(format!("{e:?}")))?
            .poll_blocking(CONNECT_TIMEOUT)
            .map_err(|e| TransportError::Aeron(format!("{e:?}")))?;
        self.publications.insert(client_id, publication);
        Ok(())
    }

    /// Sends a response; dropped (and counted) when the client is unknown or back-pressured: the
    /// client resends and gets its answer then.
    pub fn respond(&mut self, response: &Response) {
        if response.kind == RESPONSE_COMMITTED {
            let applied = self.applied.entry(response.client_id).or_insert(0);
            *applied = (*applied).max(response.client_sequence);
        }
        match self.publications.get(&response.client_id) {
            Some(publication) if publication.offer(&response.encode()).is_ok() => {
                self.responses_sent += 1
            }
            _ => self.responses_dropped += 1,
        }
    }

    /// The highest client sequence of `client_id` answered Committed.
    pub fn applied(&self, client_id: u64) -> u64 {
        self.applied.get(&client_id).copied().unwrap_or(0)
    }
}

/// A client of the cluster: sends commands to the leader's ingress, receives responses on its own
/// endpoint.
pub struct Client {
    pub client_id: u64,
    ingress: AeronExclusivePublication,
    receiver: crate::transport::AeronReceiver,
    endpoint: String,
    buffer: Vec<u8>,
}

impl Client {
    /// Connects to the leader's ingress endpoint and announces `response_endpoint`.
    pub fn connect(
        aeron: &Aeron,
        client_id: u64,
        leader_ingress: &str,
        response_endpoint: &str,
    ) -> Result<Client, TransportError> {
        let receiver =
            crate::transport::AeronReceiver::new(aeron, response_endpoint, EGRESS_STREAM_ID)?;
        let ingress = aeron
            .async_add_exclusive_publication(&channel(leader_ingress), INGRESS_STREAM_ID)
            .map_err(|e| TransportError::Aeron(format!("{e:?}")))?
            .poll_blocking(CONNECT_TIMEOUT)
            .map_err(|e| TransportError::Aeron(format!("{e:?}")))?;
        Ok(Client {
            client_id,
            ingress,
            receiver,
            endpoint: response_endpoint.to_string(),
            buffer: Vec::with_capacity(128),
        })
    }

    /// Whether the leader's ingress subscription is connected.
    pub fn is_connected(&self) -> bool {
        self.ingress.is_connected()
    }

    /// Announces the response endpoint (again: safe to repeat, e.g. after a leader restart).
    pub fn hello(&mut self) -> bool {
        Ingress::Connect {
            client_id: self.client_id,
            response_endpoint: &self.endpoint,
        }
        .encode(&mut self.buffer);
        self.ingress.offer(&self.buffer).is_ok()
    }

    /// Sends a command; false when back-pressured or not connected (try again).
    pub fn send(&mut self, client_sequence: u64, command: &[u8]) -> bool {
        Ingress::Command {
            client_id: self.client_id,
            client_sequence,
            command,
        }
        .encode(&mut self.buffer);
        self.ingress.offer(&self.buffer).is_ok()
    }

    /// Polls responses and hands each to `handle`; returns how many.
    pub fn poll(&mut self, mut handle: impl FnMut(Response)) -> Result<usize, TransportError> {
        self.receiver.poll(256)?;
        Ok(self.receiver.drain(|bytes| {
            if let Some(response) = Response::decode(bytes) {
                handle(response);
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_round_trips_with_exact_bytes_and_refuses_bad_input() {
        let mut out = Vec::new();
        Ingress::Connect {
            client_id: 7,
            response_endpoint: "127.0.0.1:4000",
        }
        .encode(&mut out);
        assert_eq!(&out[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[8..16], &7u64.to_le_bytes());
        assert_eq!(&out[16..18], &14u16.to_le_bytes());
        assert_eq!(
            Ingress::decode(&out),
            Ok(Ingress::Connect {
                client_id: 7,
                response_endpoint: "127.0.0.1:4000"
            })
        );
        let mut bad = out.clone();
        bad[20] = b' ';
        assert_eq!(Ingress::decode(&bad), Err(IngressError::Endpoint));
        assert_eq!(Ingress::decode(&out[..17]), Err(IngressError::Short));

        Ingress::Command {
            client_id: 7,
            client_sequence: 9,
            command: &[5; 64],
        }
        .encode(&mut out);
        assert_eq!(out.len(), 88);
        assert_eq!(
            Ingress::decode(&out),
            Ok(Ingress::Command {
                client_id: 7,
                client_sequence: 9,
                command: &[5; 64]
            })
        );
        out[0] = 9;
        assert_eq!(Ingress::decode(&out), Err(IngressError::Kind(9)));
        out[0] = 2;
        out[3] = 1;
        assert_eq!(Ingress::decode(&out), Err(IngressError::Reserved));
    }

    #[test]
    fn responses_round_trip() {
        let response = Response {
            kind: RESPONSE_COMMITTED,
            reason: 0,
            client_id: 3,
            client_sequence: 4,
            sequence: 5,
        };
        let bytes = response.encode();
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[24..], &5u64.to_le_bytes());
        assert_eq!(Response::decode(&bytes), Some(response));
        assert_eq!(Response::decode(&bytes[..31]), None);
    }
}
