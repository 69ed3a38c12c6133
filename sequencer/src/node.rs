//! A node: one replica's parts wired together (replication core, log, applier, state machine) behind
//! one duty cycle. The simulator, the in-process cluster and the Aeron runtime all drive this same
//! type; they differ only in how bytes move between nodes and where time comes from.

use crate::apply::{Applied, Applier, ApplyError, StateMachine};
use crate::log::Log;
use crate::protocol::{DecodeError, Message};
use crate::replica::{Effects, Replica, ReplicaConfig, ReplicaError, Submitted};

/// Why a node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("replication: {0}")]
    Replica(#[from] ReplicaError),
    #[error("applying the committed log: {0}")]
    Apply(#[from] ApplyError),
}

/// One replica with its log and state machine.
pub struct Node<L: Log, S: StateMachine> {
    pub replica: Replica,
    pub log: L,
    pub applier: Applier,
    pub state: S,
    /// Messages that did not decode (counted, dropped).
    pub messages_malformed: u64,
}

impl<L: Log, S: StateMachine> Node<L, S> {
    pub fn new(
        config: ReplicaConfig,
        mut log: L,
        state: S,
        checkpoint_interval: u64,
        now_ns: u64,
    ) -> Result<Self, NodeError> {
        let replica = Replica::new(config, &mut log, now_ns)?;
        Ok(Node {
            replica,
            log,
            applier: Applier::new(checkpoint_interval),
            state,
            messages_malformed: 0,
        })
    }

    /// Handles the bytes of one replication message.
    pub fn on_bytes(
        &mut self,
        now_ns: u64,
        bytes: &[u8],
        effects: &mut impl Effects,
    ) -> Result<Result<(), DecodeError>, NodeError> {
        let members = self.replica.config().members as usize;
        match Message::decode(bytes, members) {
            Ok(message) => {
                self.replica
                    .on_message(now_ns, &message, &mut self.log, effects)?;
                Ok(Ok(()))
            }
            Err(e) => {
                self.messages_malformed += 1;
                Ok(Err(e))
            }
        }
    }

    /// Leader: sequences a client command.
    pub fn submit(
        &mut self,
        now_ns: u64,
        client_id: u64,
        client_sequence: u64,
        command: &[u8],
        effects: &mut impl Effects,
    ) -> Result<Submitted, NodeError> {
        Ok(self.replica.submit(
            now_ns,
            client_id,
            client_sequence,
            command,
            &mut self.log,
            effects,
        )?)
    }

    /// Applies what is committed (reporting each applied command), appends a due checkpoint
    /// (leader), and sends what followers miss. Returns the number of commands applied.
    pub fn duty_cycle(
        &mut self,
        now_ns: u64,
        effects: &mut impl Effects,
        on_applied: &mut dyn FnMut(Applied),
    ) -> Result<u64, NodeError> {
        let commit = self.replica.commit_position();
        let applied =
            self.applier
                .apply_committed(&mut self.log, commit, &mut self.state, on_applied)?;
        if let Some((sequence, hash)) = self.applier.take_checkpoint() {
            self.replica
                .append_checkpoint(now_ns, sequence, hash, &mut self.log)?;
        }
        self.replica.flush(now_ns, &mut self.log, effects)?;
        Ok(applied)
    }
}

/// The matcher as the replicated state machine: client commands are 64-byte matcher command
/// records. Events are counted and folded into a digest, so replicas can compare their event streams
/// as well as their states.
pub struct MatcherState {
    pub matcher: matcher::Matcher,
    pub sink: EventTally,
}

/// What a node keeps of the matcher's events.
#[derive(Debug, Clone, Default)]
pub struct EventTally {
    pub events: u64,
    pub trades: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Every event's bytes folded in order with [`matcher::Event::digest_fold`], from 0.
    pub digest: u64,
    /// Recently accepted (account, exchange order id), for a client to learn ids; bounded to
    /// [`RECENT_ACCEPTED_MAX`], drained by whoever reads it.
    pub recent_accepted: Vec<(u32, u64)>,
}

/// Bound of [`EventTally::recent_accepted`].
pub const RECENT_ACCEPTED_MAX: usize = 4096;

impl matcher::EventSink for EventTally {
    fn event(&mut self, event: &matcher::Event) {
        self.events += 1;
        self.digest = event.digest_fold(self.digest);
        match matcher::EventKind::from_u8(event.kind) {
            Some(matcher::EventKind::Trade) => self.trades += 1,
            Some(matcher::EventKind::Accepted) => {
                self.accepted += 1;
                if self.recent_accepted.len() < RECENT_ACCEPTED_MAX {
                    self.recent_accepted
                        .push((event.account_id.get(), event.order_id.get()));
                }
            }
            Some(matcher::EventKind::Rejected) => self.rejected += 1,
            _ => {}
        }
    }
}

impl MatcherState {
    pub fn new(config: matcher::Config) -> Result<Self, matcher::ConfigError> {
        Ok(MatcherState {
            matcher: matcher::Matcher::new(config)?,
            sink: EventTally::default(),
        })
    }
}

impl StateMachine for MatcherState {
    fn apply(
        &mut self,
        sequence: u64,
        timestamp_ns: u64,
        _client_id: u64,
        _client_sequence: u64,
        command: &[u8],
    ) {
        self.matcher
            .apply_payload(sequence, timestamp_ns, command, &mut self.sink);
    }
    fn state_hash(&self) -> u64 {
        self.matcher.state_hash()
    }
    fn prefetch(&self, command: &[u8]) {
        if let Ok(record) = matcher::CommandRecord::ref_from_bytes(command) {
            self.matcher.prefetch(record);
        }
    }
    fn prefetch_early(&self, command: &[u8]) {
        if let Ok(record) = matcher::CommandRecord::ref_from_bytes(command) {
            self.matcher.prefetch_early(record);
        }
    }
}
