//! The replication core: a sans-IO state machine. Inputs are commands, messages and the passage of
//! time; outputs are appends to a [`Log`] it is lent, messages handed to [`Effects`], and the commit
//! position. It owns no socket, file, thread or clock.
//!
//! Protocol (see `docs/ARCHITECTURE.md`): the leader sequences commands into its log and streams the
//! log's frames to each follower from that follower's `next_position`, at most `window_bytes` ahead of
//! what the follower acknowledged (so a slow follower costs the leader nothing but bookkeeping; it is
//! served from the log at its own pace, which is also how a follower catches up). Followers append the
//! frames byte for byte and acknowledge their durable end. The commit position is the highest position
//! a majority holds, and only past the leader's own term-start record.

use std::collections::BTreeMap;

use journal::RecordMeta;

use crate::log::{frame_header, frame_payload, Log, LogError};
use crate::protocol::{
    next_frame, split_client_command, Message, NodeId, APPEND_FRAMES_LEN_MAX, CHECKPOINT_LEN,
    CLIENT_HEADER_LEN, MEMBERS_MAX, RECORD_CHECKPOINT, RECORD_CLIENT_COMMAND, RECORD_TERM_START,
};

/// Configuration of one replica.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub node_id: NodeId,
    pub members: u8,
    /// The appointed leader (automatic election comes with the failover issue).
    pub leader: NodeId,
    /// An idle leader sends an empty Append (heartbeat, carrying the commit position) this often.
    pub heartbeat_interval_ns: u64,
    /// Unacknowledged frames older than this are sent again (go-back-N from the acknowledged end).
    pub resend_timeout_ns: u64,
    /// Most unacknowledged bytes in flight to one follower.
    pub window_bytes: u64,
    /// Most distinct clients remembered for duplicate detection.
    pub clients_max: usize,
    /// Largest command payload accepted.
    pub command_len_max: usize,
}

impl ReplicaConfig {
    /// Defaults for loopback: heartbeats every 20 ms, resends after 100 ms, a 4 MiB window.
    pub fn new(node_id: NodeId, members: u8, leader: NodeId) -> Self {
        ReplicaConfig {
            node_id,
            members,
            leader,
            heartbeat_interval_ns: 20_000_000,
            resend_timeout_ns: 100_000_000,
            window_bytes: 4 << 20,
            clients_max: 65_536,
            command_len_max: 4096,
        }
    }
}

/// Where outputs go.
pub trait Effects {
    /// Hands a message to the transport for `to`. False when the transport refused it now
    /// (back-pressure): the replica sends it again later from the same position instead of
    /// waiting for the resend timeout.
    fn send(&mut self, to: NodeId, message: &Message<'_>) -> bool;
    /// The commit position advanced to `position`.
    fn committed(&mut self, position: u64);
}

/// The outcome of a submitted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Appended to the leader's log with this sequence number; committed once the commit position
    /// reaches `position`.
    Sequenced { sequence: u64, position: u64 },
    /// This client sequence number (or a later one) was sequenced before: nothing appended.
    Duplicate { client_sequence_last: u64 },
    /// A client's commands are sequenced in its own order without gaps: this one skips
    /// `expected` (an earlier command was lost on the way). Nothing appended; the client resends
    /// from `expected`. (Accepting it would make the lost one look like a duplicate later.)
    OutOfOrder { expected: u64 },
    /// This node does not lead; the leader it knows, if any.
    NotLeader { leader: Option<NodeId> },
    /// The table of clients is full.
    TooManyClients,
    /// The command is longer than `command_len_max`.
    TooLarge,
}

/// Broken invariants and log failures: the node must stop.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("log: {0}")]
    Log(#[from] LogError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("committed record at position {position} differs from the leader's")]
    CommittedDivergence { position: u64 },
    #[error("two leaders in term {term}: {other} and this node")]
    TwoLeaders { term: u64, other: NodeId },
    #[error("after appending, the log ends at {ours} but the leader's frames end at {theirs}: segment sizes differ?")]
    PositionMismatch { ours: u64, theirs: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    next_position: u64,
    match_position: u64,
    last_send_ns: u64,
    last_progress_ns: u64,
}

/// Counters, cheap to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    pub commands_sequenced: u64,
    pub duplicates: u64,
    pub appends_sent: u64,
    pub frames_appended: u64,
    pub nacks_sent: u64,
    pub resends: u64,
    pub bad_frames: u64,
    pub stale_messages: u64,
    /// Client commands refused because an earlier one of the same client is missing.
    pub out_of_order: u64,
    /// Appends the transport refused (back-pressure), sent again on a later flush.
    pub sends_refused: u64,
}

/// One replica's replication state.
pub struct Replica {
    config: ReplicaConfig,
    role: Role,
    term: u64,
    leader: Option<NodeId>,
    commit_position: u64,
    /// The leader commits nothing before its own term-start record is held by a majority.
    term_start_end: u64,
    peers: [Peer; MEMBERS_MAX],
    /// Highest client sequence sequenced per client: replicated state, rebuilt from the log.
    clients: BTreeMap<u64, u64>,
    send_buffer: Vec<u8>,
    scratch: Vec<u8>,
    stats: ReplicaStats,
}

impl Replica {
    /// Starts a replica over `log` (which may hold records from before a restart). The appointed
    /// leader opens a new term with a term-start record.
    pub fn new<L: Log + ?Sized>(
        config: ReplicaConfig,
        log: &mut L,
        now_ns: u64,
    ) -> Result<Replica, ReplicaError> {
        if config.members == 0 || config.members as usize > MEMBERS_MAX {
            return Err(ReplicaError::Config(format!(
                "members must be 1..={MEMBERS_MAX}"
            )));
        }
        if config.node_id >= config.members || config.leader >= config.members {
            return Err(ReplicaError::Config(
                "node_id and leader must be member indexes".into(),
            ));
        }
        let mut replica = Replica {
            role: Role::Follower,
            term: log.last_term(),
            leader: None,
            commit_position: 0,
            term_start_end: u64::MAX,
            peers: [Peer::default(); MEMBERS_MAX],
            clients: BTreeMap::new(),
            send_buffer: Vec::with_capacity(APPEND_FRAMES_LEN_MAX),
            scratch: Vec::with_capacity(CLIENT_HEADER_LEN + config.command_len_max),
            stats: ReplicaStats::default(),
            config,
        };
        replica.rebuild_clients(log)?;
        if replica.config.leader == replica.config.node_id {
            replica.become_leader(log, now_ns)?;
        }
        Ok(replica)
    }

    fn become_leader<L: Log + ?Sized>(
        &mut self,
        log: &mut L,
        now_ns: u64,
    ) -> Result<(), ReplicaError> {
        self.term = log.last_term() + 1;
        self.role = Role::Leader;
        self.leader = Some(self.config.node_id);
        let meta = RecordMeta {
            record_type: RECORD_TERM_START,
            flags: 0,
            sequence: log.last_sequence() + 1,
            term: self.term,
            timestamp_ns: now_ns,
        };
        self.term_start_end = log.append(&meta, &[])?;
        let end = log.end();
        for peer in &mut self.peers {
            // Optimistic: assume followers hold what we hold; a Nack corrects it.
            *peer = Peer {
                next_position: end,
                match_position: 0,
                last_send_ns: 0,
                last_progress_ns: now_ns,
            };
        }
        Ok(())
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_position(&self) -> u64 {
        self.commit_position
    }
    pub fn stats(&self) -> ReplicaStats {
        self.stats
    }
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }
    /// The highest client sequence sequenced for `client_id`.
    pub fn client_sequence_last(&self, client_id: u64) -> Option<u64> {
        self.clients.get(&client_id).copied()
    }

    /// Leader: sequences a client command into the log (stamped with `now_ns`, the only clock the
    /// matchers see). Replication happens on [`Replica::flush`].
    pub fn submit<L: Log + ?Sized>(
        &mut self,
        now_ns: u64,
        client_id: u64,
        client_sequence: u64,
        command: &[u8],
        log: &mut L,
        effects: &mut impl Effects,
    ) -> Result<Submitted, ReplicaError> {
        if self.role != Role::Leader {
            return Ok(Submitted::NotLeader {
                leader: self.leader,
            });
        }
        if command.len() > self.config.command_len_max {
            return Ok(Submitted::TooLarge);
        }
        let last = self.clients.get(&client_id).copied().unwrap_or(0);
        if client_sequence <= last {
            self.stats.duplicates += 1;
            return Ok(Submitted::Duplicate {
                client_sequence_last: last,
            });
        }
        if client_sequence != last + 1 {
            self.stats.out_of_order += 1;
            return Ok(Submitted::OutOfOrder { expected: last + 1 });
        }
        if last == 0 && self.clients.len() >= self.config.clients_max {
            return Ok(Submitted::TooManyClients);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&client_id.to_le_bytes());
        self.scratch
            .extend_from_slice(&client_sequence.to_le_bytes());
        self.scratch.extend_from_slice(command);
        let sequence = log.last_sequence() + 1;
        let meta = RecordMeta {
            record_type: RECORD_CLIENT_COMMAND,
            flags: 0,
            sequence,
            term: self.term,
            timestamp_ns: now_ns,
        };
        let position = log.append(&meta, &self.scratch)?;
        self.clients.insert(client_id, client_sequence);
        self.stats.commands_sequenced += 1;
        self.advance_commit(log, effects);
        Ok(Submitted::Sequenced { sequence, position })
    }

    /// Leader: appends a checkpoint carrying the state hash after `applied_sequence`.
    pub fn append_checkpoint<L: Log + ?Sized>(
        &mut self,
        now_ns: u64,
        applied_sequence: u64,
        state_hash: u64,
        log: &mut L,
    ) -> Result<bool, ReplicaError> {
        if self.role != Role::Leader {
            return Ok(false);
        }
        let mut payload = [0u8; CHECKPOINT_LEN];
        payload[..8].copy_from_slice(&applied_sequence.to_le_bytes());
        payload[8..].copy_from_slice(&state_hash.to_le_bytes());
        let meta = RecordMeta {
            record_type: RECORD_CHECKPOINT,
            flags: 0,
            sequence: log.last_sequence() + 1,
            term: self.term,
            timestamp_ns: now_ns,
        };
        log.append(&meta, &payload)?;
        Ok(true)
    }

    /// Leader: sends what each follower is missing (within its window), heartbeats to idle ones,
    /// and resends after a timeout. Call after each batch of input: whatever arrived is one batch.
    pub fn flush<L: Log + ?Sized>(
        &mut self,
        now_ns: u64,
        log: &mut L,
        effects: &mut impl Effects,
    ) -> Result<(), ReplicaError> {
        if self.role != Role::Leader {
            return Ok(());
        }
        self.advance_commit(log, effects);
        let end = log.end();
        for id in 0..self.config.members {
            if id == self.config.node_id {
                continue;
            }
            let mut peer = self.peers[id as usize];
            if peer.match_position < peer.next_position
                && now_ns.saturating_sub(peer.last_progress_ns) >= self.config.resend_timeout_ns
            {
                peer.next_position = peer.match_position;
                peer.last_progress_ns = now_ns;
                self.stats.resends += 1;
            }
            let mut sent = false;
            while peer.next_position < end
                && peer.next_position.saturating_sub(peer.match_position) < self.config.window_bytes
            {
                let prev_position = peer.next_position;
                let end_position = self.fill_batch(prev_position, log)?;
                if end_position == prev_position {
                    break;
                }
                let accepted = effects.send(
                    id,
                    &Message::Append {
                        from: self.config.node_id,
                        term: self.term,
                        prev_position,
                        commit_position: self.commit_position,
                        end_position,
                        frames: &self.send_buffer,
                    },
                );
                if !accepted {
                    self.stats.sends_refused += 1;
                    break;
                }
                self.stats.appends_sent += 1;
                peer.next_position = end_position;
                sent = true;
            }
            if !sent
                && now_ns.saturating_sub(peer.last_send_ns) >= self.config.heartbeat_interval_ns
            {
                effects.send(
                    id,
                    &Message::Append {
                        from: self.config.node_id,
                        term: self.term,
                        prev_position: peer.next_position,
                        commit_position: self.commit_position,
                        end_position: peer.next_position,
                        frames: &[],
                    },
                );
                sent = true;
            }
            if sent {
                peer.last_send_ns = now_ns;
            }
            self.peers[id as usize] = peer;
        }
        Ok(())
    }

    /// Packs frames from `from` into the send buffer; returns the position after the last one.
    fn fill_batch<L: Log + ?Sized>(&mut self, from: u64, log: &mut L) -> Result<u64, ReplicaError> {
        self.send_buffer.clear();
        let buffer = &mut self.send_buffer;
        let mut end_position = from;
        log.visit(from, &mut |position, frame| {
            let aligned = journal::format::align_up(frame.len() as u64) as usize;
            if !buffer.is_empty() && buffer.len() + aligned > APPEND_FRAMES_LEN_MAX {
                return false;
            }
            buffer.extend_from_slice(frame);
            buffer.resize(buffer.len() + aligned - frame.len(), 0);
            end_position = position + aligned as u64;
            true
        })?;
        Ok(end_position)
    }

    /// Handles one message from another node.
    pub fn on_message<L: Log + ?Sized>(
        &mut self,
        now_ns: u64,
        message: &Message<'_>,
        log: &mut L,
        effects: &mut impl Effects,
    ) -> Result<(), ReplicaError> {
        match *message {
            Message::Append {
                from,
                term,
                prev_position,
                commit_position,
                end_position,
                frames,
            } => self.on_append(
                from,
                term,
                prev_position,
                commit_position,
                end_position,
                frames,
                log,
                effects,
            ),
            Message::Ack {
                from,
                term,
                position,
            } => {
                if term != self.term || self.role != Role::Leader {
                    // A higher term deposes a leader (failover issue); anything else is stale.
                    self.stats.stale_messages += 1;
                    return Ok(());
                }
                let peer = &mut self.peers[from as usize];
                if position > peer.match_position {
                    peer.match_position = position;
                    peer.last_progress_ns = now_ns;
                }
                peer.next_position = peer.next_position.max(peer.match_position);
                self.advance_commit(log, effects);
                Ok(())
            }
            Message::Nack {
                from,
                term,
                position,
            } => {
                if term != self.term || self.role != Role::Leader {
                    self.stats.stale_messages += 1;
                    return Ok(());
                }
                let peer = &mut self.peers[from as usize];
                // The follower's log ends at `position`: send from there (it may have lost records in
                // a crash, so what it acknowledged before no longer counts).
                peer.next_position = position.min(log.end());
                peer.match_position = peer.match_position.min(peer.next_position);
                peer.last_progress_ns = now_ns;
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append<L: Log + ?Sized>(
        &mut self,
        from: NodeId,
        term: u64,
        prev_position: u64,
        commit_position: u64,
        end_position: u64,
        frames: &[u8],
        log: &mut L,
        effects: &mut impl Effects,
    ) -> Result<(), ReplicaError> {
        if term < self.term {
            self.stats.stale_messages += 1;
            self.send_nack(from, log.end(), effects);
            return Ok(());
        }
        if self.role == Role::Leader {
            if term == self.term {
                return Err(ReplicaError::TwoLeaders { term, other: from });
            }
            self.role = Role::Follower;
        }
        self.term = term;
        self.leader = Some(from);

        let end = log.end();
        if prev_position > end {
            // A gap: tell the leader where this log ends.
            self.send_nack(from, end, effects);
            return Ok(());
        }
        // Walk our records from prev_position beside the message's frames: skip those we already
        // hold (same sequence and term), truncate at the first that differs, append the rest.
        let mut rest = frames;
        let mut verified_end = prev_position;
        if prev_position < end && !rest.is_empty() {
            let mut conflict = None;
            log.visit(prev_position, &mut |position, ours| {
                let Some((theirs, aligned)) = next_frame(rest) else {
                    return false;
                };
                let (a, b) = (frame_header(ours), frame_header(theirs));
                if a.sequence != b.sequence || a.term != b.term {
                    conflict = Some(position);
                    return false;
                }
                rest = &rest[aligned..];
                verified_end = position + aligned as u64;
                true
            })?;
            if let Some(position) = conflict {
                if position < self.commit_position {
                    return Err(ReplicaError::CommittedDivergence { position });
                }
                log.truncate_after(position)?;
                self.rebuild_clients(log)?;
            } else if !rest.is_empty() && verified_end != log.end() {
                // We hold more records than matched, yet frames remain: cannot happen with one
                // leader per term; treat the remainder as a conflict at verified_end.
                if verified_end < self.commit_position {
                    return Err(ReplicaError::CommittedDivergence {
                        position: verified_end,
                    });
                }
                log.truncate_after(verified_end)?;
                self.rebuild_clients(log)?;
            }
        }
        while let Some((frame, aligned)) = next_frame(rest) {
            let header = frame_header(frame);
            if header.sequence.get() != log.last_sequence() + 1 {
                self.stats.bad_frames += 1;
                self.send_nack(from, log.end(), effects);
                return Ok(());
            }
            match log.append_frame(frame) {
                Ok(_) => {}
                Err(LogError::BadFrame(_)) => {
                    self.stats.bad_frames += 1;
                    self.send_nack(from, log.end(), effects);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
            remember_client(&mut self.clients, frame);
            self.stats.frames_appended += 1;
            rest = &rest[aligned..];
            verified_end = log.end();
        }
        if !frames.is_empty() && verified_end != end_position {
            return Err(ReplicaError::PositionMismatch {
                ours: verified_end,
                theirs: end_position,
            });
        }
        // Only what is known to match the leader's log may be committed here.
        let commit = commit_position.min(verified_end);
        if commit > self.commit_position {
            self.commit_position = commit;
            effects.committed(commit);
        }
        let position = log.durable().min(log.end());
        effects.send(
            from,
            &Message::Ack {
                from: self.config.node_id,
                term: self.term,
                position,
            },
        );
        Ok(())
    }

    fn send_nack(&mut self, to: NodeId, position: u64, effects: &mut impl Effects) {
        self.stats.nacks_sent += 1;
        effects.send(
            to,
            &Message::Nack {
                from: self.config.node_id,
                term: self.term,
                position,
            },
        );
    }

    fn rebuild_clients<L: Log + ?Sized>(&mut self, log: &mut L) -> Result<(), ReplicaError> {
        self.clients.clear();
        let clients = &mut self.clients;
        log.visit(0, &mut |_, frame| {
            remember_client(clients, frame);
            true
        })?;
        Ok(())
    }

    /// Leader: the commit position is the highest position a majority holds (the leader counts its
    /// durable end), and never before the leader's term-start record.
    fn advance_commit<L: Log + ?Sized>(&mut self, log: &L, effects: &mut impl Effects) {
        if self.role != Role::Leader {
            return;
        }
        let members = self.config.members as usize;
        let mut positions = [0u64; MEMBERS_MAX];
        for (id, position) in positions.iter_mut().enumerate().take(members) {
            *position = if id == self.config.node_id as usize {
                log.durable().min(log.end())
            } else {
                self.peers[id].match_position
            };
        }
        let held = &mut positions[..members];
        held.sort_unstable_by(|a, b| b.cmp(a));
        let majority = held[members / 2];
        if majority >= self.term_start_end && majority > self.commit_position {
            self.commit_position = majority;
            effects.committed(majority);
        }
    }
}

fn remember_client(clients: &mut BTreeMap<u64, u64>, frame: &[u8]) {
    let header = frame_header(frame);
    if header.record_type.get() == RECORD_CLIENT_COMMAND {
        if let Some((client_id, client_sequence, _)) = split_client_command(frame_payload(frame)) {
            let last = clients.entry(client_id).or_insert(0);
            *last = (*last).max(client_sequence);
        }
    }
}
