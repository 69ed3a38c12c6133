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
//!
//! Elections (Raft as Aeron Cluster adapts it, with pre-vote and check-quorum): a follower that
//! hears nothing from a leader for its election timeout (drawn from a seeded generator between
//! `election_timeout_min_ns` and `election_timeout_max_ns`) first asks a pre-vote ("would you
//! vote for me in term + 1?"; granted only by nodes that have not heard from a leader lately and
//! whose log is not more up to date), and only with a majority of those starts a real election:
//! term + 1, vote for itself, saved durably, then RequestVote. A node grants one vote per term, to
//! a log at least as up to date as its own (last term, then end position), after saving it. The
//! winner appends a term-start record and commits nothing of its term before that record is held
//! by a majority. Every message carries a term: a higher one makes any node a follower at once. A
//! leader that has not heard from a majority within the longest election timeout steps down.
//!
//! Log matching: an Append names the term of the leader's record ending at `prev_position`; a
//! follower whose record there has another term refuses (Nack) and names a position where its own
//! log ends a record, with that record's term; the leader sends from there if its record there has
//! the same term, else from its own previous term boundary. Each refusal moves back at least one
//! term, so repair ends; the follower then truncates its divergent suffix (never below its commit
//! position: that would be a broken invariant) and takes the leader's records.

use std::collections::BTreeMap;

use journal::RecordMeta;

use crate::log::{frame_header, frame_payload, Log, LogError, TermVote};
use crate::protocol::{
    next_frame, split_client_command, Message, NodeId, APPEND_FRAMES_LEN_MAX, CHECKPOINT_LEN,
    CLIENT_HEADER_LEN, MEMBERS_MAX, RECORD_CHECKPOINT, RECORD_CLIENT_COMMAND, RECORD_TERM_START,
};

/// Configuration of one replica.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub node_id: NodeId,
    pub members: u8,
    /// The preferred first leader: on start-up it asks for votes at once instead of after an
    /// election timeout. Any member can lead; after a failover the leader stays where it is.
    pub leader: NodeId,
    /// An idle leader sends an empty Append (heartbeat, carrying the commit position) this often.
    pub heartbeat_interval_ns: u64,
    /// A follower that hears nothing from a leader for a timeout drawn between these starts an
    /// election; a leader that hears from no majority for the maximum steps down.
    pub election_timeout_min_ns: u64,
    pub election_timeout_max_ns: u64,
    /// Seed of the election timeouts (mixed with the node id): the same seed, the same timeouts.
    pub seed: u64,
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
    /// Defaults for loopback: heartbeats every 20 ms, election timeouts of 100..200 ms, resends
    /// after 100 ms, a 4 MiB window.
    pub fn new(node_id: NodeId, members: u8, leader: NodeId) -> Self {
        ReplicaConfig {
            node_id,
            members,
            leader,
            heartbeat_interval_ns: 20_000_000,
            election_timeout_min_ns: 100_000_000,
            election_timeout_max_ns: 200_000_000,
            seed: 1,
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

/// Effects that go nowhere (a single-member cluster electing itself has no one to tell).
struct NoEffects;

impl Effects for NoEffects {
    fn send(&mut self, _to: NodeId, _message: &Message<'_>) -> bool {
        true
    }
    fn committed(&mut self, _position: u64) {}
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
    #[error("more than {TERMS_MAX} terms in the log")]
    TooManyTerms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Asking for (pre-)votes.
    Candidate,
    Follower,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Leader => "leader",
            Role::Candidate => "candidate",
            Role::Follower => "follower",
        })
    }
}

/// Most terms the term index holds (one entry per term that has records in the log).
pub const TERMS_MAX: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    next_position: u64,
    match_position: u64,
    last_send_ns: u64,
    last_progress_ns: u64,
    /// Leader: when this follower last answered (check-quorum).
    last_heard_ns: u64,
    /// Leader: the commit position last sent to this follower.
    told_commit: u64,
}

/// Counters, cheap to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    pub commands_sequenced: u64,
    /// Empty Appends sent ahead of the heartbeat to carry a new commit position.
    pub commit_updates_sent: u64,
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
    pub pre_votes_started: u64,
    pub elections_started: u64,
    pub votes_granted: u64,
    pub leaderships: u64,
    /// Times this node stopped leading or campaigning (a higher term, or a lost quorum).
    pub step_downs: u64,
    /// Suffixes removed because they differed from the leader's log.
    pub truncations: u64,
}

/// One replica's replication state.
pub struct Replica {
    config: ReplicaConfig,
    role: Role,
    term: u64,
    voted_for: Option<NodeId>,
    leader: Option<NodeId>,
    commit_position: u64,
    /// The leader commits nothing before its own term-start record is held by a majority.
    term_start_end: u64,
    peers: [Peer; MEMBERS_MAX],
    /// Candidate: whether this is the pre-vote round, and who granted (a bit per node).
    pre_vote: bool,
    granted: u8,
    election_deadline_ns: u64,
    /// Follower: when the current leader was last heard (pre-votes are refused while it lives).
    leader_contact_ns: Option<u64>,
    rng: u64,
    /// (term, position where its first record starts), one entry per term with records, ascending.
    terms: Vec<(u64, u64)>,
    /// Highest client sequence sequenced per client: replicated state, rebuilt from the log.
    clients: BTreeMap<u64, u64>,
    send_buffer: Vec<u8>,
    scratch: Vec<u8>,
    stats: ReplicaStats,
}

impl Replica {
    /// Starts a replica over `log` (which may hold records from before a restart), as a follower
    /// with the term and vote the log saved. The preferred leader asks for votes at its first
    /// [`Replica::flush`]; a single-member cluster leads at once.
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
        if config.election_timeout_min_ns == 0
            || config.election_timeout_max_ns < config.election_timeout_min_ns
            || config.heartbeat_interval_ns >= config.election_timeout_min_ns
        {
            return Err(ReplicaError::Config(
                "election timeouts must satisfy 0 < heartbeat interval < minimum <= maximum".into(),
            ));
        }
        let saved = log.vote();
        let term = saved.term.max(log.last_term());
        let mut replica = Replica {
            role: Role::Follower,
            term,
            voted_for: if saved.term == term {
                saved.voted_for
            } else {
                None
            },
            leader: None,
            commit_position: 0,
            term_start_end: u64::MAX,
            peers: [Peer::default(); MEMBERS_MAX],
            pre_vote: false,
            granted: 0,
            election_deadline_ns: now_ns,
            leader_contact_ns: None,
            rng: config.seed ^ (config.node_id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            terms: Vec::new(),
            clients: BTreeMap::new(),
            send_buffer: Vec::with_capacity(APPEND_FRAMES_LEN_MAX),
            scratch: Vec::with_capacity(CLIENT_HEADER_LEN + config.command_len_max),
            stats: ReplicaStats::default(),
            config,
        };
        replica.rebuild_index(log)?;
        if replica.config.leader != replica.config.node_id {
            replica.reset_election_timer(now_ns);
        }
        if replica.config.members == 1 {
            replica.start_election(now_ns, log, &mut NoEffects)?;
        }
        Ok(replica)
    }

    /// The next election timeout, uniform between the configured bounds (splitmix64 from the seed).
    fn reset_election_timer(&mut self, now_ns: u64) {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let span = self.config.election_timeout_max_ns - self.config.election_timeout_min_ns + 1;
        self.election_deadline_ns = now_ns + self.config.election_timeout_min_ns + z % span;
    }

    fn majority(&self, granted: u8) -> bool {
        granted.count_ones() as usize > self.config.members as usize / 2
    }

    fn others(&self) -> impl Iterator<Item = NodeId> {
        let me = self.config.node_id;
        (0..self.config.members).filter(move |&id| id != me)
    }

    fn save_vote<L: Log + ?Sized>(&mut self, log: &mut L) -> Result<(), ReplicaError> {
        log.save_vote(TermVote {
            term: self.term,
            voted_for: self.voted_for,
        })?;
        Ok(())
    }

    /// A higher term (or a lost quorum, with `term == self.term`): follow, vote afresh.
    fn step_down<L: Log + ?Sized>(
        &mut self,
        term: u64,
        now_ns: u64,
        log: &mut L,
    ) -> Result<(), ReplicaError> {
        if self.role != Role::Follower {
            self.stats.step_downs += 1;
        }
        self.role = Role::Follower;
        self.leader = None;
        self.leader_contact_ns = None;
        self.term_start_end = u64::MAX;
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.save_vote(log)?;
        }
        self.reset_election_timer(now_ns);
        Ok(())
    }

    /// Asks whether a majority would vote for this node in the next term, changing nothing.
    fn start_pre_vote<L: Log + ?Sized>(
        &mut self,
        now_ns: u64,
        log: &mut L,
        effects: &mut impl Effects,
    ) -> Result<(), ReplicaError> {
        self.stats.pre_votes_started += 1;
        self.role = Role::Candidate;
        self.leader = None;
        self.pre_vote = true;
        self.granted = 1 << self.config.node_id;
        self.reset_election_timer(now_ns);
        if self.majority(self.granted) {
            return self.start_election(now_ns, log, effects);
        }
        self.request_votes(log, effects, true);
        Ok(())
    }

    fn request_votes<L: Log + ?Sized>(&mut self, log: &L, effects: &mut impl Effects, pre: bool) {
        let message = Message::RequestVote {
            from: self.config.node_id,
            term: if pre { self.term + 1 } else { self.term },
            last_position: log.end(),
            last_term: log.last_term(),
            pre,
        };
        for id in self.others() {
            effects.send(id, &message);
        }
    }

    /// Term + 1, a vote for itself (saved), then RequestVote to every other member.
    fn start_election<L: Log + ?Sized>(
        &mut self,
        now_ns: u64,
        log: &mut L,
        effects: &mut impl Effects,
    ) -> Result<(), ReplicaError> {
        self.stats.elections_started += 1;
        self.term += 1;
        self.voted_for = Some(self.config.node_id);
        self.save_vote(log)?;
        self.role = Role::Candidate;
        self.leader = None;
        self.pre_vote = false;
        self.granted = 1 << self.config.node_id;
        self.reset_election_timer(now_ns);
        if self.majority(self.granted) {
            return self.become_leader(log, now_ns);
        }
        self.request_votes(log, effects, false);
        Ok(())
    }

    fn become_leader<L: Log + ?Sized>(
        &mut self,
        log: &mut L,
        now_ns: u64,
    ) -> Result<(), ReplicaError> {
        debug_assert_eq!(self.voted_for, Some(self.config.node_id));
        self.stats.leaderships += 1;
        self.role = Role::Leader;
        self.leader = Some(self.config.node_id);
        let meta = RecordMeta {
            record_type: RECORD_TERM_START,
            flags: 0,
            sequence: log.last_sequence() + 1,
            term: self.term,
            timestamp_ns: now_ns,
        };
        let start = log.end();
        self.term_start_end = log.append(&meta, &[])?;
        self.note_term(self.term, start)?;
        let end = log.end();
        for peer in &mut self.peers {
            // Optimistic: assume followers hold what we hold; a Nack corrects it.
            *peer = Peer {
                next_position: end,
                match_position: 0,
                last_send_ns: 0,
                last_progress_ns: now_ns,
                last_heard_ns: now_ns,
                told_commit: 0,
            };
        }
        Ok(())
    }

    /// Records that a record of `term` starts at `position` (the log's end before appending it).
    fn note_term(&mut self, term: u64, position: u64) -> Result<(), ReplicaError> {
        push_term(&mut self.terms, term, position)
    }

    /// The term of the record that ends at `position` (0 at position 0); None past the log's end.
    fn term_at<L: Log + ?Sized>(&self, position: u64, log: &L) -> Option<u64> {
        if position > log.end() {
            return None;
        }
        let index = self.terms.partition_point(|&(_, start)| start < position);
        Some(if index == 0 {
            0
        } else {
            self.terms[index - 1].0
        })
    }

    /// Where the term of the record ending at `position` begins (0 when none).
    fn term_start_before(&self, position: u64) -> u64 {
        let index = self.terms.partition_point(|&(_, start)| start < position);
        if index == 0 {
            0
        } else {
            self.terms[index - 1].1
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_position(&self) -> u64 {
        self.commit_position
    }
    /// Leader: how far member `id`'s log is known to match this one (0 otherwise).
    pub fn match_position(&self, id: NodeId) -> u64 {
        self.peers.get(id as usize).map_or(0, |p| p.match_position)
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
            if now_ns >= self.election_deadline_ns {
                self.start_pre_vote(now_ns, log, effects)?;
            }
            if self.role != Role::Leader {
                return Ok(());
            }
        }
        // Check quorum: a leader cut off from a majority stops taking commands it cannot commit.
        let heard = self
            .others()
            .filter(|&id| {
                now_ns.saturating_sub(self.peers[id as usize].last_heard_ns)
                    < self.config.election_timeout_max_ns
            })
            .count()
            + 1;
        if !self.majority(((1u16 << heard) - 1) as u8) {
            self.step_down(self.term, now_ns, log)?;
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
                let prev_term = self.term_at(prev_position, log).expect("next ≤ end");
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
                        prev_term,
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
                peer.told_commit = self.commit_position;
                sent = true;
            }
            // An empty Append: the heartbeat, and also as soon as the commit position passed
            // what this follower was told while it holds records above that (so it applies,
            // and serves its learners, the commit without waiting for the next heartbeat or
            // command: Aeron Cluster's leader likewise sends each new commit position).
            let commit_news =
                peer.told_commit < self.commit_position && peer.match_position > peer.told_commit;
            if !sent
                && (commit_news
                    || now_ns.saturating_sub(peer.last_send_ns)
                        >= self.config.heartbeat_interval_ns)
            {
                let accepted = effects.send(
                    id,
                    &Message::Append {
                        from: self.config.node_id,
                        term: self.term,
                        prev_position: peer.next_position,
                        prev_term: self.term_at(peer.next_position, log).expect("next ≤ end"),
                        commit_position: self.commit_position,
                        end_position: peer.next_position,
                        frames: &[],
                    },
                );
                if accepted {
                    if commit_news {
                        self.stats.commit_updates_sent += 1;
                    }
                    peer.told_commit = self.commit_position;
                }
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

    /// Whether a follower's answer (Ack, Nack) of `term` is for this node as the current leader.
    /// A higher term deposes it; anything else is stale and counted.
    fn answer_counts<L: Log + ?Sized>(
        &mut self,
        term: u64,
        now_ns: u64,
        log: &mut L,
    ) -> Result<bool, ReplicaError> {
        if term > self.term {
            self.step_down(term, now_ns, log)?;
            return Ok(false);
        }
        if term != self.term || self.role != Role::Leader {
            self.stats.stale_messages += 1;
            return Ok(false);
        }
        Ok(true)
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
                prev_term,
                commit_position,
                end_position,
                frames,
            } => self.on_append(
                now_ns,
                from,
                term,
                (prev_position, prev_term),
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
                if !self.answer_counts(term, now_ns, log)? {
                    return Ok(());
                }
                let end = log.end();
                let peer = &mut self.peers[from as usize];
                peer.last_heard_ns = now_ns;
                let position = position.min(end);
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
                position_term,
            } => {
                if !self.answer_counts(term, now_ns, log)? {
                    return Ok(());
                }
                // The follower's log has a record of `position_term` ending at `position`. If ours
                // does too, the logs agree up to there (one leader per term, and every Append
                // checked its predecessor); else go back to our previous term boundary.
                let next = if self.term_at(position, log) == Some(position_term) {
                    position
                } else {
                    self.term_start_before(position.min(log.end()))
                };
                let peer = &mut self.peers[from as usize];
                peer.last_heard_ns = now_ns;
                // It may also have lost records in a crash: what it acknowledged before no longer
                // counts.
                peer.next_position = next;
                peer.match_position = peer.match_position.min(next);
                peer.last_progress_ns = now_ns;
                Ok(())
            }
            Message::RequestVote {
                from,
                term,
                last_position,
                last_term,
                pre,
            } => {
                let up_to_date = (last_term, last_position) >= (log.last_term(), log.end());
                if pre {
                    // Refused while a leader lives (so a node that was cut off cannot depose a
                    // working leader when it returns), and to a stale or less complete log.
                    let leader_alive = self.role == Role::Leader
                        || self.leader_contact_ns.is_some_and(|at| {
                            now_ns.saturating_sub(at) < self.config.election_timeout_min_ns
                        });
                    let granted = term > self.term && up_to_date && !leader_alive;
                    effects.send(
                        from,
                        &Message::Vote {
                            from: self.config.node_id,
                            term: if granted { term } else { self.term },
                            granted,
                            pre: true,
                        },
                    );
                    return Ok(());
                }
                if term > self.term {
                    self.step_down(term, now_ns, log)?;
                }
                let granted = term == self.term
                    && self.role == Role::Follower
                    && self.voted_for.is_none_or(|v| v == from)
                    && up_to_date;
                if granted {
                    if self.voted_for != Some(from) {
                        self.voted_for = Some(from);
                        self.save_vote(log)?;
                    }
                    self.stats.votes_granted += 1;
                    self.reset_election_timer(now_ns);
                }
                effects.send(
                    from,
                    &Message::Vote {
                        from: self.config.node_id,
                        term: self.term,
                        granted,
                        pre: false,
                    },
                );
                Ok(())
            }
            Message::Vote {
                from,
                term,
                granted,
                pre,
            } => {
                if !granted && term > self.term {
                    return self.step_down(term, now_ns, log);
                }
                let round = if self.pre_vote {
                    self.term + 1
                } else {
                    self.term
                };
                if self.role != Role::Candidate || pre != self.pre_vote || term != round {
                    self.stats.stale_messages += 1;
                    return Ok(());
                }
                if granted {
                    self.granted |= 1 << from;
                    if self.majority(self.granted) {
                        if pre {
                            self.start_election(now_ns, log, effects)?;
                        } else {
                            self.become_leader(log, now_ns)?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append<L: Log + ?Sized>(
        &mut self,
        now_ns: u64,
        from: NodeId,
        term: u64,
        (prev_position, prev_term): (u64, u64),
        commit_position: u64,
        end_position: u64,
        frames: &[u8],
        log: &mut L,
        effects: &mut impl Effects,
    ) -> Result<(), ReplicaError> {
        if term < self.term {
            // A deposed leader: the Nack's higher term tells it so.
            self.stats.stale_messages += 1;
            self.send_nack(from, log.end(), log.last_term(), effects);
            return Ok(());
        }
        if self.role == Role::Leader && term == self.term {
            return Err(ReplicaError::TwoLeaders { term, other: from });
        }
        if term > self.term || self.role != Role::Follower {
            self.step_down(term, now_ns, log)?;
        }
        self.leader = Some(from);
        self.leader_contact_ns = Some(now_ns);
        self.reset_election_timer(now_ns);

        let end = log.end();
        if prev_position > end {
            // A gap: tell the leader where this log ends.
            self.send_nack(from, end, log.last_term(), effects);
            return Ok(());
        }
        if self.term_at(prev_position, log) != Some(prev_term) {
            // Our record ending there is not the leader's: name the start of its term, where our
            // log and the leader's may still agree.
            if prev_position <= self.commit_position {
                return Err(ReplicaError::CommittedDivergence {
                    position: prev_position,
                });
            }
            let start = self.term_start_before(prev_position);
            let start_term = self.term_at(start, log).expect("start ≤ end");
            self.send_nack(from, start, start_term, effects);
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
                self.truncate_after(position, log)?;
            } else if !rest.is_empty() && verified_end != log.end() {
                // We hold more records than matched, yet frames remain: cannot happen with one
                // leader per term; treat the remainder as a conflict at verified_end.
                if verified_end < self.commit_position {
                    return Err(ReplicaError::CommittedDivergence {
                        position: verified_end,
                    });
                }
                self.truncate_after(verified_end, log)?;
            }
        }
        while let Some((frame, aligned)) = next_frame(rest) {
            let header = frame_header(frame);
            if header.sequence.get() != log.last_sequence() + 1 || header.term.get() > term {
                self.stats.bad_frames += 1;
                self.send_nack(from, log.end(), log.last_term(), effects);
                return Ok(());
            }
            let start = log.end();
            match log.append_frame(frame) {
                Ok(_) => self.note_term(header.term.get(), start)?,
                Err(LogError::BadFrame(_)) => {
                    self.stats.bad_frames += 1;
                    self.send_nack(from, log.end(), log.last_term(), effects);
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
        // Acknowledge only what is durable and known to match the leader's log: records past
        // `verified_end` may be a deposed leader's, which must not count towards a commit.
        let position = log.durable().min(verified_end);
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

    fn send_nack(
        &mut self,
        to: NodeId,
        position: u64,
        position_term: u64,
        effects: &mut impl Effects,
    ) {
        self.stats.nacks_sent += 1;
        effects.send(
            to,
            &Message::Nack {
                from: self.config.node_id,
                term: self.term,
                position,
                position_term,
            },
        );
    }

    /// Removes a divergent suffix (above the commit position) and forgets what it held.
    fn truncate_after<L: Log + ?Sized>(
        &mut self,
        position: u64,
        log: &mut L,
    ) -> Result<(), ReplicaError> {
        debug_assert!(position >= self.commit_position);
        self.stats.truncations += 1;
        log.truncate_after(position)?;
        self.rebuild_index(log)
    }

    /// Rebuilds what the replica derives from its log: the client table and the term index.
    fn rebuild_index<L: Log + ?Sized>(&mut self, log: &mut L) -> Result<(), ReplicaError> {
        self.clients.clear();
        self.terms.clear();
        let (clients, terms) = (&mut self.clients, &mut self.terms);
        let mut indexed = Ok(());
        log.visit(0, &mut |position, frame| {
            remember_client(clients, frame);
            indexed = push_term(terms, frame_header(frame).term.get(), position);
            indexed.is_ok()
        })?;
        indexed
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

/// Adds a term boundary to a term index when `term` differs from the last one (logs only move to
/// higher terms), within [`TERMS_MAX`].
fn push_term(terms: &mut Vec<(u64, u64)>, term: u64, position: u64) -> Result<(), ReplicaError> {
    if terms.last().is_none_or(|&(last, _)| last != term) {
        debug_assert!(terms
            .last()
            .is_none_or(|&(last, start)| last < term && start < position));
        if terms.len() >= TERMS_MAX {
            return Err(ReplicaError::TooManyTerms);
        }
        terms.push((term, position));
    }
    Ok(())
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
