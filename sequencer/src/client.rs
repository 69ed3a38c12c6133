//! Clients of the cluster: the ingress and egress protocol, the leader's client sessions, and a
//! client library. All over Aeron (UDP).
//!
//! Ingress (client → leader), little-endian:
//!
//! | offset | field | Connect | Command | Learn |
//! |---|---|---|---|---|
//! | 0 | kind: u8 | 1 | 2 | 4 |
//! | 1..8 | reserved, zero | | | |
//! | 8 | client_id: u64 | | | learner id |
//! | 16 | | response endpoint length: u16, then ASCII `host:port` | client_sequence: u64 | from_sequence: u64 |
//! | 24 | | | command bytes (a 64-byte matcher command) | endpoint length u16, endpoint |
//!
//! (kind 3 is a batch of commands, see [`Ingress::Commands`]; Learn asks for the committed log,
//! see [`crate::learner`].)
//!
//! Egress (node → client): one or more 32-byte responses packed in one message, each
//! kind u8 (1 Committed, 2 Rejected, 3 NewLeader) | reason u8 | reserved [6] | client_id u64 |
//! client_sequence u64 | sequence u64 (the journal sequence, 0 when rejected).
//! A NewLeader response carries the new term in `client_sequence` and the leader's node id in
//! `sequence`; a node that wins an election sends it to every client that connected to it, so
//! clients announce themselves (Connect) to every member. A "not leader" reject carries the leader
//! the node knows plus one in `sequence` (0: none known, an election is under way).
//! A command is answered Committed only once it is committed and applied: an answer means the
//! command survives any minority failure. A resent command that was sequenced before is not
//! sequenced again; it is answered once the original is applied.

use std::collections::BTreeMap;

use rusteron_client::{Aeron, AeronExclusivePublication};

use crate::transport::{await_added, channel, TransportError};

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
const KIND_COMMANDS: u8 = 3;
const KIND_LEARN: u8 = 4;
/// Egress kind: committed.
pub const RESPONSE_COMMITTED: u8 = 1;
/// Egress kind: rejected (see the reason).
pub const RESPONSE_REJECTED: u8 = 2;
/// Egress kind: this node now leads (term in `client_sequence`, node id in `sequence`).
pub const RESPONSE_NEW_LEADER: u8 = 3;
/// Reject reason: the node does not lead.
pub const REASON_NOT_LEADER: u8 = 1;
/// Reject reason: too many clients or sessions.
pub const REASON_CAPACITY: u8 = 2;
/// Reject reason: the command is too long.
pub const REASON_TOO_LARGE: u8 = 3;
/// Reject reason: an earlier command of this client is missing; the response's `sequence` field
/// carries the client sequence the leader expects next (resend from there).
pub const REASON_SEQUENCE_GAP: u8 = 4;
/// Header of every ingress message: kind, reserved, client id.
pub const INGRESS_HEADER_LEN: usize = 16;
/// Longest ingress message (a batch of commands is packed up to this).
pub const INGRESS_MESSAGE_LEN_MAX: usize = 8192 - 64;
/// Header of each entry of a Commands batch: client_sequence u64, length u32, reserved u32.
pub const BATCH_ENTRY_HEADER_LEN: usize = 16;

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
    /// Several commands of one client, in its order: entries of client_sequence u64, length u32,
    /// reserved u32 (zero), then the command padded with zeros to a multiple of 8 bytes.
    /// Checked whole by `decode`; read with [`Ingress::entries`].
    Commands { client_id: u64, entries: &'a [u8] },
    /// A learner asks for the committed log from `from_sequence` on its endpoint (see
    /// [`crate::learner`]): learner_id in the client id field, from_sequence u64 at 16, endpoint
    /// length u16 at 24, then the endpoint.
    Learn {
        learner_id: u64,
        from_sequence: u64,
        response_endpoint: &'a str,
    },
}

/// The entries of a [`Ingress::Commands`] batch that `decode` accepted.
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = (u64, &'a [u8]);
    fn next(&mut self) -> Option<(u64, &'a [u8])> {
        let (sequence, length, padded) = entry_at(self.rest).ok()?;
        let command = &self.rest[BATCH_ENTRY_HEADER_LEN..BATCH_ENTRY_HEADER_LEN + length];
        self.rest = &self.rest[BATCH_ENTRY_HEADER_LEN + padded..];
        Some((sequence, command))
    }
}

/// Reads one batch entry's header: (client_sequence, length, padded length).
fn entry_at(bytes: &[u8]) -> Result<(u64, usize, usize), IngressError> {
    if bytes.len() < BATCH_ENTRY_HEADER_LEN {
        return Err(IngressError::Short);
    }
    let length = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    if bytes[12..16] != [0; 4] {
        return Err(IngressError::Reserved);
    }
    let padded = length.div_ceil(8) * 8;
    if length == 0 || bytes.len() < BATCH_ENTRY_HEADER_LEN + padded {
        return Err(IngressError::Short);
    }
    Ok((u64_at(bytes, 0), length, padded))
}

/// Appends one entry to a Commands batch being built in `out` (which starts with the header
/// written by [`Ingress::encode_batch_header`]).
pub fn push_batch_entry(out: &mut Vec<u8>, client_sequence: u64, command: &[u8]) {
    out.extend_from_slice(&client_sequence.to_le_bytes());
    out.extend_from_slice(&(command.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(command);
    out.resize(out.len() + command.len().div_ceil(8) * 8 - command.len(), 0);
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

/// The endpoint that ends a message: length u16 at `at`, then ASCII `host:port`.
fn endpoint_at(bytes: &[u8], at: usize) -> Result<&str, IngressError> {
    let length = bytes.get(at..at + 2).ok_or(IngressError::Short)?;
    let length = u16::from_le_bytes([length[0], length[1]]) as usize;
    let text = bytes
        .get(at + 2..at + 2 + length)
        .ok_or(IngressError::Endpoint)?;
    if length == 0 || length > ENDPOINT_LEN_MAX || bytes.len() != at + 2 + length {
        return Err(IngressError::Endpoint);
    }
    let endpoint = std::str::from_utf8(text).map_err(|_| IngressError::Endpoint)?;
    if !endpoint
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b':' || b == b'-')
    {
        return Err(IngressError::Endpoint);
    }
    Ok(endpoint)
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
            Ingress::Commands { client_id, entries } => {
                Ingress::encode_batch_header(client_id, out);
                out.extend_from_slice(entries);
            }
            Ingress::Learn {
                learner_id,
                from_sequence,
                response_endpoint,
            } => {
                out.extend_from_slice(&[KIND_LEARN, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&learner_id.to_le_bytes());
                out.extend_from_slice(&from_sequence.to_le_bytes());
                out.extend_from_slice(&(response_endpoint.len() as u16).to_le_bytes());
                out.extend_from_slice(response_endpoint.as_bytes());
            }
        }
    }

    /// Starts a Commands batch in `out`.
    pub fn encode_batch_header(client_id: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&[KIND_COMMANDS, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&client_id.to_le_bytes());
    }

    /// The commands of a batch (empty for other kinds).
    pub fn entries(&self) -> Entries<'a> {
        match *self {
            Ingress::Commands { entries, .. } => Entries { rest: entries },
            _ => Entries { rest: &[] },
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
            KIND_CONNECT => Ok(Ingress::Connect {
                client_id,
                response_endpoint: endpoint_at(bytes, 16)?,
            }),
            KIND_LEARN if bytes.len() >= 24 => Ok(Ingress::Learn {
                learner_id: client_id,
                from_sequence: u64_at(bytes, 16),
                response_endpoint: endpoint_at(bytes, 24)?,
            }),
            KIND_LEARN => Err(IngressError::Short),
            KIND_COMMAND if bytes.len() >= INGRESS_HEADER_LEN + 8 => Ok(Ingress::Command {
                client_id,
                client_sequence: u64_at(bytes, 16),
                command: &bytes[24..],
            }),
            KIND_COMMAND => Err(IngressError::Short),
            KIND_COMMANDS => {
                let entries = &bytes[16..];
                let mut rest = entries;
                if rest.is_empty() {
                    return Err(IngressError::Short);
                }
                while !rest.is_empty() {
                    let (_, _, padded) = entry_at(rest)?;
                    let command = &rest[BATCH_ENTRY_HEADER_LEN..BATCH_ENTRY_HEADER_LEN + padded];
                    let length = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
                    if command[length as usize..].iter().any(|&b| b != 0) {
                        return Err(IngressError::Reserved);
                    }
                    rest = &rest[BATCH_ENTRY_HEADER_LEN + padded..];
                }
                Ok(Ingress::Commands { client_id, entries })
            }
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

/// What a response says about the leader: None when it is about a command; else the member to
/// move to, if any (a new-leader announcement of a newer term than `leader_term`, which it
/// updates, or a "not leader" reject naming the leader).
pub fn leader_news(response: &Response, leader_term: &mut u64) -> Option<Option<usize>> {
    if response.kind == RESPONSE_NEW_LEADER {
        if response.client_sequence > *leader_term {
            *leader_term = response.client_sequence;
            return Some(Some(response.sequence as usize));
        }
        return Some(None);
    }
    if response.kind != RESPONSE_COMMITTED && response.reason == REASON_NOT_LEADER {
        return Some((response.sequence > 0).then(|| response.sequence as usize - 1));
    }
    None
}

/// A publication to every member's client ingress (`endpoints`, by node id), each waited for
/// while `invoke` runs: what clients and learners send their requests on.
pub fn ingress_publications(
    aeron: &Aeron,
    endpoints: &[String],
    invoke: &dyn Fn(),
) -> Result<Vec<AeronExclusivePublication>, TransportError> {
    let mut ingress = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let adding = aeron
            .async_add_exclusive_publication(&channel(endpoint), INGRESS_STREAM_ID)
            .map_err(|e| TransportError::Aeron(format!("{e:?}")))?;
        ingress.push(await_added(|| adding.poll(), invoke)?);
    }
    Ok(ingress)
}

/// One client's response channel and the responses waiting to go out on it.
struct Session {
    endpoint: String,
    publication: AeronExclusivePublication,
    /// Encoded responses not yet offered (several go out in one message).
    pending: Vec<u8>,
}

/// The leader's side: a response publication per connected client. Responses are batched: all
/// the responses a client has pending go out in as few messages as possible (up to
/// [`EGRESS_MESSAGE_LEN_MAX`] bytes each) when [`Sessions::flush`] runs, once per duty cycle.
/// Back-pressure keeps them pending (up to [`EGRESS_PENDING_MAX`] per client; beyond that they
/// are dropped and counted, and the client's resend gets its answer).
pub struct Sessions {
    sessions: BTreeMap<u64, Session>,
    /// Clients with pending responses.
    dirty: Vec<u64>,
    pub responses_sent: u64,
    pub responses_dropped: u64,
    pub messages_sent: u64,
    pub back_pressured: u64,
    pub connects_refused: u64,
}

/// Longest egress message: responses are packed up to this many bytes.
pub const EGRESS_MESSAGE_LEN_MAX: usize = 8192 - 64;
/// Most responses pending for one client.
pub const EGRESS_PENDING_MAX: usize = 65_536;

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new()
    }
}

impl Sessions {
    pub fn new() -> Self {
        Sessions {
            sessions: BTreeMap::new(),
            dirty: Vec::new(),
            responses_sent: 0,
            responses_dropped: 0,
            messages_sent: 0,
            back_pressured: 0,
            connects_refused: 0,
        }
    }

    /// Opens the response publication of `client_id`, or replaces it when the endpoint changed.
    /// A repeated Connect to the same endpoint keeps the publication (replacing it would drop
    /// responses until the new one connects).
    pub fn connect(
        &mut self,
        aeron: &Aeron,
        client_id: u64,
        endpoint: &str,
        invoke: &dyn Fn(),
    ) -> Result<(), TransportError> {
        if self
            .sessions
            .get(&client_id)
            .is_some_and(|session| session.endpoint == endpoint)
        {
            return Ok(());
        }
        if self.sessions.len() >= SESSIONS_MAX && !self.sessions.contains_key(&client_id) {
            self.connects_refused += 1;
            return Ok(());
        }
        let adding = aeron
            .async_add_exclusive_publication(&channel(endpoint), EGRESS_STREAM_ID)
            .map_err(|e| TransportError::Aeron(format!("{e:?}")))?;
        let publication = await_added(|| adding.poll(), invoke)?;
        self.sessions.insert(
            client_id,
            Session {
                endpoint: endpoint.to_string(),
                publication,
                pending: Vec::with_capacity(EGRESS_MESSAGE_LEN_MAX),
            },
        );
        Ok(())
    }

    /// Queues a response for the client (sent by [`Sessions::flush`]); dropped and counted when
    /// the client is unknown or too much is pending: the client resends and gets its answer then.
    pub fn respond(&mut self, response: &Response) {
        match self.sessions.get_mut(&response.client_id) {
            Some(session) if session.pending.len() < EGRESS_PENDING_MAX * EGRESS_LEN => {
                if session.pending.is_empty() {
                    self.dirty.push(response.client_id);
                }
                session.pending.extend_from_slice(&response.encode());
            }
            _ => self.responses_dropped += 1,
        }
    }

    /// Offers every pending response, packed; returns how many went out.
    pub fn flush(&mut self) -> usize {
        let mut sent = 0;
        let per_message = EGRESS_MESSAGE_LEN_MAX / EGRESS_LEN * EGRESS_LEN;
        let mut still_dirty = 0;
        for i in 0..self.dirty.len() {
            let client_id = self.dirty[i];
            let Some(session) = self.sessions.get_mut(&client_id) else {
                continue;
            };
            let mut offset = 0;
            while offset < session.pending.len() {
                let end = (offset + per_message).min(session.pending.len());
                match session.publication.offer(&session.pending[offset..end]) {
                    Ok(_) => {
                        sent += (end - offset) / EGRESS_LEN;
                        self.messages_sent += 1;
                        offset = end;
                    }
                    Err(e) if e.is_retryable() || !session.publication.is_connected() => {
                        self.back_pressured += 1;
                        break;
                    }
                    Err(_) => {
                        self.responses_dropped += ((end - offset) / EGRESS_LEN) as u64;
                        offset = end;
                    }
                }
            }
            session.pending.drain(..offset);
            if !session.pending.is_empty() {
                self.dirty[still_dirty] = client_id;
                still_dirty += 1;
            }
        }
        self.dirty.truncate(still_dirty);
        self.responses_sent += sent as u64;
        sent
    }

    /// Tells every connected client that `node_id` leads in `term`.
    pub fn announce_leader(&mut self, term: u64, node_id: u8) {
        let clients: Vec<u64> = self.sessions.keys().copied().collect();
        for client_id in clients {
            self.respond(&Response {
                kind: RESPONSE_NEW_LEADER,
                reason: 0,
                client_id,
                client_sequence: term,
                sequence: node_id as u64,
            });
        }
    }
}

/// A client of the cluster: announces itself to every member's ingress, sends commands to the
/// one it believes leads ([`Client::target`]), receives responses on its own endpoint.
pub struct Client {
    pub client_id: u64,
    ingress: Vec<AeronExclusivePublication>,
    target: usize,
    receiver: crate::transport::AeronReceiver,
    endpoint: String,
    buffer: Vec<u8>,
    batch: Vec<u8>,
    /// Egress messages that were not a whole number of responses.
    pub malformed: u64,
}

impl Client {
    /// Connects to the leader's ingress endpoint and announces `response_endpoint`.
    pub fn connect(
        aeron: &Aeron,
        client_id: u64,
        leader_ingress: &str,
        response_endpoint: &str,
    ) -> Result<Client, TransportError> {
        Self::connect_invoking(
            aeron,
            client_id,
            leader_ingress,
            response_endpoint,
            &crate::transport::no_invoke,
        )
    }

    /// As [`Client::connect`], running `invoke` (an invoked driver) while it waits.
    pub fn connect_invoking(
        aeron: &Aeron,
        client_id: u64,
        leader_ingress: &str,
        response_endpoint: &str,
        invoke: &dyn Fn(),
    ) -> Result<Client, TransportError> {
        Self::connect_cluster(
            aeron,
            client_id,
            &[leader_ingress.to_string()],
            0,
            response_endpoint,
            invoke,
        )
    }

    /// Opens a publication to every member's ingress (`ingress`, by node id); commands go to
    /// `target` until [`Client::set_target`] says otherwise.
    pub fn connect_cluster(
        aeron: &Aeron,
        client_id: u64,
        ingress_endpoints: &[String],
        target: usize,
        response_endpoint: &str,
        invoke: &dyn Fn(),
    ) -> Result<Client, TransportError> {
        assert!(target < ingress_endpoints.len(), "target is a member");
        let receiver = crate::transport::AeronReceiver::new_invoking(
            aeron,
            response_endpoint,
            EGRESS_STREAM_ID,
            invoke,
        )?;
        let ingress = ingress_publications(aeron, ingress_endpoints, invoke)?;
        Ok(Client {
            client_id,
            ingress,
            target,
            receiver,
            endpoint: response_endpoint.to_string(),
            buffer: Vec::with_capacity(128),
            batch: Vec::with_capacity(INGRESS_MESSAGE_LEN_MAX),
            malformed: 0,
        })
    }

    /// Whether the target's ingress subscription is connected.
    pub fn is_connected(&self) -> bool {
        self.ingress[self.target].is_connected()
    }

    /// The member commands go to.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Members this client knows.
    pub fn members(&self) -> usize {
        self.ingress.len()
    }

    /// Sends commands to member `target` from now on (queued ones included).
    pub fn set_target(&mut self, target: usize) {
        assert!(target < self.ingress.len(), "target is a member");
        self.target = target;
    }

    /// Announces the response endpoint to every member whose ingress is connected (again: safe to
    /// repeat, e.g. after a restart); true when the target heard it.
    pub fn hello(&mut self) -> bool {
        Ingress::Connect {
            client_id: self.client_id,
            response_endpoint: &self.endpoint,
        }
        .encode(&mut self.buffer);
        let mut target_heard = false;
        for (i, publication) in self.ingress.iter().enumerate() {
            let heard = publication.offer(&self.buffer).is_ok();
            target_heard |= heard && i == self.target;
        }
        target_heard
    }

    /// Adds a command to the batch that [`Client::flush`] sends; false (nothing added) when the
    /// batch is full: flush first. Commands must be queued in client-sequence order.
    pub fn queue(&mut self, client_sequence: u64, command: &[u8]) -> bool {
        if self.batch.is_empty() {
            Ingress::encode_batch_header(self.client_id, &mut self.batch);
        }
        if self.batch.len() + BATCH_ENTRY_HEADER_LEN + command.len().div_ceil(8) * 8
            > INGRESS_MESSAGE_LEN_MAX
            && self.batch.len() > INGRESS_HEADER_LEN
        {
            return false;
        }
        push_batch_entry(&mut self.batch, client_sequence, command);
        true
    }

    /// Whether queued commands wait for [`Client::flush`].
    pub fn has_queued(&self) -> bool {
        self.batch.len() > INGRESS_HEADER_LEN
    }

    /// Offers the queued batch as one message; false when back-pressured or not connected (the
    /// batch stays queued: flush again).
    pub fn flush(&mut self) -> bool {
        if !self.has_queued() {
            return true;
        }
        if self.ingress[self.target].offer(&self.batch).is_ok() {
            self.batch.clear();
            true
        } else {
            false
        }
    }

    /// Sends one command at once (a resend, say); false when back-pressured or not connected.
    /// Queued commands go first, so the client's order is kept.
    pub fn send(&mut self, client_sequence: u64, command: &[u8]) -> bool {
        if !self.flush() {
            return false;
        }
        Ingress::Command {
            client_id: self.client_id,
            client_sequence,
            command,
        }
        .encode(&mut self.buffer);
        self.ingress[self.target].offer(&self.buffer).is_ok()
    }

    /// Polls responses and hands each to `handle`; returns how many messages arrived.
    /// Messages whose length is not a multiple of a response are counted and skipped.
    pub fn poll(&mut self, mut handle: impl FnMut(Response)) -> Result<usize, TransportError> {
        self.receiver.poll(256)?;
        let malformed = &mut self.malformed;
        Ok(self.receiver.drain(|bytes| {
            if bytes.is_empty() || bytes.len() % EGRESS_LEN != 0 {
                *malformed += 1;
                return;
            }
            for chunk in bytes.chunks_exact(EGRESS_LEN) {
                if let Some(response) = Response::decode(chunk) {
                    handle(response);
                }
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
    fn command_batches_round_trip_with_exact_bytes_and_refuse_bad_input() {
        let mut out = Vec::new();
        Ingress::encode_batch_header(7, &mut out);
        push_batch_entry(&mut out, 1, &[5; 64]);
        push_batch_entry(&mut out, 2, &[6; 3]);
        assert_eq!(out.len(), 16 + (16 + 64) + (16 + 8));
        assert_eq!(&out[..8], &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[16..24], &1u64.to_le_bytes());
        assert_eq!(&out[24..28], &64u32.to_le_bytes());
        assert_eq!(&out[112..120], &[6, 6, 6, 0, 0, 0, 0, 0]);
        let decoded = Ingress::decode(&out).unwrap();
        assert!(matches!(decoded, Ingress::Commands { client_id: 7, .. }));
        let entries: Vec<(u64, Vec<u8>)> = decoded
            .entries()
            .map(|(sequence, command)| (sequence, command.to_vec()))
            .collect();
        assert_eq!(entries, vec![(1, vec![5; 64]), (2, vec![6; 3])]);
        // Truncated, non-zero padding, zero-length entry, empty batch.
        assert_eq!(
            Ingress::decode(&out[..out.len() - 1]),
            Err(IngressError::Short)
        );
        let mut bad = out.clone();
        bad[115] = 1;
        assert_eq!(Ingress::decode(&bad), Err(IngressError::Reserved));
        let mut bad = out.clone();
        bad[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert!(Ingress::decode(&bad).is_err());
        assert_eq!(Ingress::decode(&out[..16]), Err(IngressError::Short));
    }

    #[test]
    fn learn_requests_round_trip_with_exact_bytes() {
        let mut out = Vec::new();
        Ingress::Learn {
            learner_id: 9,
            from_sequence: 0x0102,
            response_endpoint: "h:1",
        }
        .encode(&mut out);
        assert_eq!(
            out,
            [
                &[4u8, 0, 0, 0, 0, 0, 0, 0][..],
                &9u64.to_le_bytes(),
                &0x0102u64.to_le_bytes(),
                &[3, 0],
                b"h:1"
            ]
            .concat()
        );
        assert_eq!(
            Ingress::decode(&out),
            Ok(Ingress::Learn {
                learner_id: 9,
                from_sequence: 0x0102,
                response_endpoint: "h:1",
            })
        );
        assert_eq!(Ingress::decode(&out[..20]), Err(IngressError::Short));
        assert_eq!(
            Ingress::decode(&out[..out.len() - 1]),
            Err(IngressError::Endpoint)
        );
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
