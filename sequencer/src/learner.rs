//! Learners: processes that follow the cluster's committed log without taking part in
//! replication (the FIX gateway, the market-data publisher, an auditor's tap). A learner asks any
//! member for the log from a sequence number; the member streams the committed records to it
//! from its journal, byte for byte as journaled (checksummed frames), then keeps streaming as
//! records commit, with heartbeats while nothing commits. Every member applies the same log, so
//! when the member a learner follows dies or falls silent the learner asks the next member from
//! the sequence it needs next: it sees every committed record exactly once, in order, across any
//! failover, and never a record that is not committed.
//!
//! Request (learner → member, on the member's client ingress, stream
//! [`crate::client::INGRESS_STREAM_ID`]): an ingress message of kind 4, see
//! [`crate::client::Ingress::Learn`].
//!
//! Stream (member → learner, stream [`LEARNER_STREAM_ID`] on the learner's endpoint),
//! little-endian:
//!
//! | offset | field |
//! |---|---|
//! | 0 | kind: u8 (1 records, 2 heartbeat) |
//! | 1 | node id of the sender: u8 |
//! | 2..8 | reserved, zero |
//! | 8 | applied sequence of the sender (the highest committed sequence it can serve): u64 |
//! | 16 | record count: u32 |
//! | 20..24 | reserved, zero |
//! | 24 | the records: journal frames (40-byte header, payload), each padded with zeros to 8 bytes |
//!
//! The split into [`LearnerCore`] (sans-IO: ordering, duplicates, gaps, failover) and the Aeron
//! adapters ([`Learner`], [`LearnerServer`]) follows the rest of the crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use journal::{Reader, RecordHeader, RECORD_HEADER_LEN};
use rusteron_client::{Aeron, AeronExclusivePublication};
use zerocopy::FromBytes;

use crate::client::{ingress_publications, Ingress};
use crate::protocol::{split_client_command, RECORD_CLIENT_COMMAND};
use crate::transport::{await_added, channel, AeronReceiver, TransportError};

/// Aeron stream id of the committed-log stream to learners.
pub const LEARNER_STREAM_ID: i32 = 1004;
/// Most learners a member serves at once; further requests are refused (counted).
pub const LEARNERS_MAX: usize = 64;
/// Header of a learner stream message.
pub const LEARN_HEADER_LEN: usize = 24;
/// Records are packed into messages of up to this many bytes (a longer record travels alone).
pub const LEARN_MESSAGE_LEN_MAX: usize = 8192 - 64;
/// Bytes a member sends one learner per duty cycle at most (the rest waits for the next cycle).
pub const LEARN_BYTES_PER_CYCLE: usize = 256 << 10;
/// A member with nothing to send a learner sends a heartbeat this often.
pub const LEARN_HEARTBEAT_NS: u64 = 50_000_000;
/// A learner that hears nothing from the member it follows for this long asks the next member.
pub const LEARN_SILENCE_NS_DEFAULT: u64 = 300_000_000;
/// A learner repeats an unanswered request at most this often.
const LEARN_REQUEST_INTERVAL_NS: u64 = 20_000_000;

const KIND_RECORDS: u8 = 1;
const KIND_HEARTBEAT: u8 = 2;

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A committed record as a learner receives it.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    pub sequence: u64,
    pub term: u64,
    pub timestamp_ns: u64,
    pub record_type: u16,
    pub payload: &'a [u8],
    /// The whole journal frame (header and payload), as the member journaled it.
    pub frame: &'a [u8],
}

impl<'a> Delivered<'a> {
    /// (client_id, client_sequence, command) when this is a client command.
    pub fn client_command(&self) -> Option<(u64, u64, &'a [u8])> {
        if self.record_type != RECORD_CLIENT_COMMAND {
            return None;
        }
        split_client_command(self.payload)
    }
}

/// What a learner counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LearnerCounters {
    /// Records delivered.
    pub delivered: u64,
    /// Records received again (after a switch or a repeated request) and skipped.
    pub duplicates: u64,
    /// Times a record arrived past the one needed next (the rest of its message is dropped and
    /// the missing range asked for again).
    pub gaps: u64,
    /// Times the learner moved to another member after silence.
    pub switches: u64,
    /// Requests sent.
    pub requests: u64,
    /// Messages that were not a learner message, or records whose checksum failed.
    pub malformed: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
}

/// The learner's protocol logic, sans-IO: which member to ask, from where, and which received
/// records to deliver.
#[derive(Debug, Clone)]
pub struct LearnerCore {
    members: usize,
    target: usize,
    next_sequence: u64,
    silence_ns: u64,
    last_heard_ns: u64,
    requested_ns: Option<u64>,
    request_due: bool,
    /// The highest applied sequence a member reported.
    pub served_sequence: u64,
    pub counters: LearnerCounters,
}

impl LearnerCore {
    /// A learner of `members` members that starts with `first_target` and needs `from_sequence`
    /// next (1: the whole log).
    pub fn new(members: usize, first_target: usize, from_sequence: u64, silence_ns: u64) -> Self {
        assert!(first_target < members, "the first target is a member");
        LearnerCore {
            members,
            target: first_target,
            next_sequence: from_sequence.max(1),
            silence_ns,
            last_heard_ns: 0,
            requested_ns: None,
            request_due: true,
            served_sequence: 0,
            counters: LearnerCounters::default(),
        }
    }

    /// The sequence delivered next.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The member followed now.
    pub fn target(&self) -> usize {
        self.target
    }

    /// A request to send now, if one is due: (member, from_sequence). The caller sends it, or
    /// calls [`LearnerCore::request_failed`] when it could not.
    pub fn request(&mut self, now_ns: u64) -> Option<(usize, u64)> {
        if !self.request_due && now_ns.saturating_sub(self.last_heard_ns) >= self.silence_ns {
            // Silence: the member died or cannot reach us. Ask the next one.
            self.target = (self.target + 1) % self.members;
            self.counters.switches += 1;
            self.request_due = true;
        }
        if !self.request_due
            || self
                .requested_ns
                .is_some_and(|at| now_ns.saturating_sub(at) < LEARN_REQUEST_INTERVAL_NS)
        {
            return None;
        }
        self.request_due = false;
        self.requested_ns = Some(now_ns);
        // Give the member a full silence period to answer.
        self.last_heard_ns = now_ns;
        self.counters.requests += 1;
        Some((self.target, self.next_sequence))
    }

    /// The request from [`LearnerCore::request`] could not be sent: try again.
    pub fn request_failed(&mut self) {
        self.request_due = true;
    }

    /// Handles one message of the learner stream, delivering in order every record not seen yet.
    pub fn on_message(&mut self, now_ns: u64, bytes: &[u8], deliver: &mut dyn FnMut(Delivered)) {
        if bytes.len() < LEARN_HEADER_LEN
            || bytes[2..8] != [0; 6]
            || bytes[20..24] != [0; 4]
            || !matches!(bytes[0], KIND_RECORDS | KIND_HEARTBEAT)
        {
            self.counters.malformed += 1;
            return;
        }
        let node = bytes[1] as usize;
        if node == self.target {
            self.last_heard_ns = now_ns;
        }
        self.served_sequence = self.served_sequence.max(u64_at(bytes, 8));
        if bytes[0] == KIND_HEARTBEAT {
            self.counters.heartbeats += 1;
            return;
        }
        let count = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let mut rest = &bytes[LEARN_HEADER_LEN..];
        for _ in 0..count {
            let Ok((header, _)) = RecordHeader::read_from_prefix(rest) else {
                self.counters.malformed += 1;
                return;
            };
            let length = header.frame_length.get() as usize;
            let padded = length.div_ceil(8) * 8;
            if length < RECORD_HEADER_LEN || rest.len() < padded {
                self.counters.malformed += 1;
                return;
            }
            let frame = &rest[..length];
            let record_type = header.record_type.get();
            if journal::format::frame_checksum(frame, record_type) != header.checksum.get() {
                self.counters.malformed += 1;
                return;
            }
            rest = &rest[padded..];
            let sequence = header.sequence.get();
            if sequence < self.next_sequence {
                self.counters.duplicates += 1;
                continue;
            }
            if sequence > self.next_sequence {
                // Records are missing (a member restarted under us, or an old stream): ask again.
                self.counters.gaps += 1;
                self.request_due = true;
                return;
            }
            self.next_sequence += 1;
            self.counters.delivered += 1;
            deliver(Delivered {
                sequence,
                term: header.term.get(),
                timestamp_ns: header.timestamp_ns.get(),
                record_type,
                payload: &frame[RECORD_HEADER_LEN..],
                frame,
            });
        }
    }
}

/// A learner over Aeron: asks members on their client ingress, receives the stream on its own
/// endpoint.
pub struct Learner {
    pub core: LearnerCore,
    learner_id: u64,
    ingress: Vec<AeronExclusivePublication>,
    receiver: AeronReceiver,
    endpoint: String,
    buffer: Vec<u8>,
    started: Instant,
}

impl Learner {
    /// `learner_id` must be unique among the cluster's learners; `ingress_endpoints` are the
    /// members' client ingress endpoints by node id; `response_endpoint` is this learner's.
    pub fn connect(
        aeron: &Aeron,
        learner_id: u64,
        ingress_endpoints: &[String],
        first_target: usize,
        response_endpoint: &str,
        from_sequence: u64,
        invoke: &dyn Fn(),
    ) -> Result<Learner, TransportError> {
        let receiver =
            AeronReceiver::new_invoking(aeron, response_endpoint, LEARNER_STREAM_ID, invoke)?;
        let ingress = ingress_publications(aeron, ingress_endpoints, invoke)?;
        Ok(Learner {
            core: LearnerCore::new(
                ingress_endpoints.len(),
                first_target,
                from_sequence,
                LEARN_SILENCE_NS_DEFAULT,
            ),
            learner_id,
            ingress,
            receiver,
            endpoint: response_endpoint.to_string(),
            buffer: Vec::with_capacity(128),
            started: Instant::now(),
        })
    }

    /// Sends a due request, receives, and delivers new committed records in order; returns the
    /// messages received.
    pub fn poll(&mut self, mut deliver: impl FnMut(Delivered)) -> Result<usize, TransportError> {
        let now_ns = self.started.elapsed().as_nanos() as u64;
        if let Some((target, from_sequence)) = self.core.request(now_ns) {
            Ingress::Learn {
                learner_id: self.learner_id,
                from_sequence,
                response_endpoint: &self.endpoint,
            }
            .encode(&mut self.buffer);
            if self.ingress[target].offer(&self.buffer).is_err() {
                self.core.request_failed();
            }
        }
        self.receiver.poll(256)?;
        let core = &mut self.core;
        Ok(self
            .receiver
            .drain(|bytes| core.on_message(now_ns, bytes, &mut deliver)))
    }
}

/// What a member counted serving learners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounters {
    pub records_sent: u64,
    pub messages_sent: u64,
    pub back_pressured: u64,
    /// Requests refused: too many learners, or the journal could not be read.
    pub refused: u64,
    /// Learners dropped because reading the journal failed.
    pub failures: u64,
}

struct LearnerSession {
    endpoint: String,
    publication: AeronExclusivePublication,
    reader: Reader,
    last_sent_ns: u64,
}

/// A member's side: one publication and one journal reader per learner.
pub struct LearnerServer {
    dir: PathBuf,
    node_id: u8,
    sessions: BTreeMap<u64, LearnerSession>,
    buffer: Vec<u8>,
    pub counters: ServerCounters,
}

impl LearnerServer {
    /// Serves the journal in `dir` as member `node_id`.
    pub fn new(dir: &Path, node_id: u8) -> Self {
        LearnerServer {
            dir: dir.to_path_buf(),
            node_id,
            sessions: BTreeMap::new(),
            buffer: Vec::with_capacity(LEARN_MESSAGE_LEN_MAX),
            counters: ServerCounters::default(),
        }
    }

    /// Learners served now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no learner is served.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A learner asks for the log from `from_sequence`: (re)starts its stream there.
    pub fn learn(
        &mut self,
        aeron: &Aeron,
        learner_id: u64,
        from_sequence: u64,
        endpoint: &str,
        invoke: &dyn Fn(),
    ) -> Result<(), TransportError> {
        if !self.sessions.contains_key(&learner_id) && self.sessions.len() >= LEARNERS_MAX {
            self.counters.refused += 1;
            return Ok(());
        }
        let reuse = self
            .sessions
            .get(&learner_id)
            .is_some_and(|session| session.endpoint == endpoint);
        if !reuse {
            let mut reader = match Reader::open(&self.dir) {
                Ok(reader) => reader,
                Err(_) => {
                    self.counters.refused += 1;
                    return Ok(());
                }
            };
            reader.set_verify(false);
            let adding = aeron
                .async_add_exclusive_publication(&channel(endpoint), LEARNER_STREAM_ID)
                .map_err(|e| TransportError::Aeron(format!("{e:?}")))?;
            let publication = await_added(|| adding.poll(), invoke)?;
            self.sessions.insert(
                learner_id,
                LearnerSession {
                    endpoint: endpoint.to_string(),
                    publication,
                    reader,
                    last_sent_ns: 0,
                },
            );
        }
        let session = self.sessions.get_mut(&learner_id).expect("inserted above");
        if session.reader.seek_sequence(from_sequence).is_err() {
            self.sessions.remove(&learner_id);
            self.counters.failures += 1;
        }
        Ok(())
    }

    /// Sends every learner the committed records it has not had (those before
    /// `applied_position`), a bounded amount per call, or a heartbeat; returns records sent.
    pub fn serve(&mut self, now_ns: u64, applied_position: u64, applied_sequence: u64) -> usize {
        let mut sent = 0;
        let mut failed = Vec::new();
        for (&learner_id, session) in self.sessions.iter_mut() {
            match serve_one(
                session,
                &mut self.buffer,
                &mut self.counters,
                self.node_id,
                now_ns,
                applied_position,
                applied_sequence,
            ) {
                Ok(count) => sent += count,
                Err(_) => failed.push(learner_id),
            }
        }
        for learner_id in failed {
            self.sessions.remove(&learner_id);
            self.counters.failures += 1;
        }
        self.counters.records_sent += sent as u64;
        sent
    }
}

fn header(buffer: &mut Vec<u8>, kind: u8, node_id: u8, applied_sequence: u64) {
    buffer.clear();
    buffer.extend_from_slice(&[kind, node_id, 0, 0, 0, 0, 0, 0]);
    buffer.extend_from_slice(&applied_sequence.to_le_bytes());
    buffer.extend_from_slice(&[0; 8]);
}

fn serve_one(
    session: &mut LearnerSession,
    buffer: &mut Vec<u8>,
    counters: &mut ServerCounters,
    node_id: u8,
    now_ns: u64,
    applied_position: u64,
    applied_sequence: u64,
) -> Result<usize, journal::JournalError> {
    let mut sent = 0;
    let mut bytes = 0;
    while bytes < LEARN_BYTES_PER_CYCLE {
        header(buffer, KIND_RECORDS, node_id, applied_sequence);
        let start = session.reader.position();
        let mut count: u32 = 0;
        let mut stop_at = None;
        while let Some(record) = session.reader.next_record()? {
            let padded = record.frame.len().div_ceil(8) * 8;
            if record.position >= applied_position
                || (count > 0 && buffer.len() + padded > LEARN_MESSAGE_LEN_MAX)
            {
                stop_at = Some(record.position);
                break;
            }
            buffer.extend_from_slice(record.frame);
            buffer.resize(buffer.len() + padded - record.frame.len(), 0);
            count += 1;
        }
        if let Some(position) = stop_at {
            session.reader.seek(position);
        }
        if count == 0 {
            break;
        }
        buffer[16..20].copy_from_slice(&count.to_le_bytes());
        if session.publication.offer(buffer).is_err() {
            counters.back_pressured += 1;
            session.reader.seek(start);
            break;
        }
        counters.messages_sent += 1;
        session.last_sent_ns = now_ns;
        sent += count as usize;
        bytes += buffer.len();
    }
    if sent == 0 && now_ns.saturating_sub(session.last_sent_ns) >= LEARN_HEARTBEAT_NS {
        header(buffer, KIND_HEARTBEAT, node_id, applied_sequence);
        if session.publication.offer(buffer).is_ok() {
            session.last_sent_ns = now_ns;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use journal::RecordMeta;

    /// A learner message holding the given records (sequence, payload).
    fn message(node: u8, records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        header(&mut out, KIND_RECORDS, node, 0);
        for &(sequence, payload) in records {
            let meta = RecordMeta {
                record_type: RECORD_CLIENT_COMMAND,
                flags: 0,
                sequence,
                term: 1,
                timestamp_ns: sequence * 10,
            };
            let mut header = RecordHeader::new(&meta, payload.len());
            let checksum = header.compute_checksum(payload);
            header.checksum.set(checksum);
            let start = out.len();
            out.extend_from_slice(zerocopy::IntoBytes::as_bytes(&header));
            out.extend_from_slice(payload);
            let length = out.len() - start;
            out.resize(start + length.div_ceil(8) * 8, 0);
        }
        out[16..20].copy_from_slice(&(records.len() as u32).to_le_bytes());
        out
    }

    fn collect(core: &mut LearnerCore, now: u64, bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        core.on_message(now, bytes, &mut |d| {
            out.push((d.sequence, d.payload.to_vec()))
        });
        out
    }

    #[test]
    fn delivers_in_order_once_and_asks_again_after_a_gap() {
        let mut core = LearnerCore::new(3, 0, 1, 1_000);
        assert_eq!(core.request(0), Some((0, 1)));
        assert_eq!(core.request(1), None, "one request until it is due again");
        let got = collect(&mut core, 2, &message(0, &[(1, b"a"), (2, b"bb")]));
        assert_eq!(got, vec![(1, b"a".to_vec()), (2, b"bb".to_vec())]);
        // A repeat of 2 and the new 3: only 3 is delivered.
        let got = collect(&mut core, 3, &message(0, &[(2, b"bb"), (3, b"ccc")]));
        assert_eq!(got, vec![(3, b"ccc".to_vec())]);
        assert_eq!(core.counters.duplicates, 1);
        // 5 without 4: nothing delivered, a new request from 4.
        assert!(collect(&mut core, 4, &message(0, &[(5, b"e")])).is_empty());
        assert_eq!(core.counters.gaps, 1);
        assert_eq!(core.request(LEARN_REQUEST_INTERVAL_NS + 4), Some((0, 4)));
        assert_eq!(core.next_sequence(), 4);
    }

    #[test]
    fn silence_moves_to_the_next_member_from_the_next_sequence() {
        let mut core = LearnerCore::new(3, 1, 7, 1_000_000_000);
        assert_eq!(core.request(0), Some((1, 7)));
        assert_eq!(collect(&mut core, 10, &message(1, &[(7, b"x")])).len(), 1);
        // Heartbeats from the target keep it; messages of another member do not.
        let mut heartbeat = Vec::new();
        header(&mut heartbeat, KIND_HEARTBEAT, 1, 7);
        collect(&mut core, 900_000_000, &heartbeat);
        assert_eq!(core.request(1_800_000_000), None);
        collect(&mut core, 1_800_000_000, &message(2, &[]));
        assert_eq!(core.request(1_900_000_001), Some((2, 8)));
        assert_eq!(core.counters.switches, 1);
        assert_eq!(core.served_sequence, 7);
    }

    #[test]
    fn a_corrupt_record_is_counted_and_not_delivered() {
        let mut core = LearnerCore::new(1, 0, 1, 1_000);
        let mut bytes = message(0, &[(1, b"abc")]);
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        assert!(collect(&mut core, 0, &bytes).is_empty());
        assert_eq!(core.counters.malformed, 1);
        assert!(collect(&mut core, 0, &bytes[..10]).is_empty());
        assert_eq!(core.counters.malformed, 2);
        assert_eq!(core.next_sequence(), 1);
    }
}
