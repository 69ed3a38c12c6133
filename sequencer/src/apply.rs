//! Applying the committed log to a state machine, and checking replicas against each other while
//! they run: every `checkpoint_interval` commands each node notes its state hash; the leader appends
//! that hash to the log as a checkpoint record; every node, on applying the checkpoint, compares it
//! with its own note and stops loudly on a mismatch.

use crate::log::{frame_header, frame_payload, Log, LogError};
use crate::protocol::{
    split_checkpoint, split_client_command, RECORD_CHECKPOINT, RECORD_CLIENT_COMMAND,
};

/// How many recent checkpoint hashes a node remembers (the leader's checkpoint record must arrive
/// within this many intervals of the state it describes).
pub const CHECKPOINT_RING_LEN: usize = 64;

/// The replicated state machine (the matcher, in production).
pub trait StateMachine {
    /// Applies one committed client command.
    fn apply(
        &mut self,
        sequence: u64,
        timestamp_ns: u64,
        client_id: u64,
        client_sequence: u64,
        command: &[u8],
    );
    /// A hash of the whole state.
    fn state_hash(&self) -> u64;
}

/// A command that was applied, for the caller to respond to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub sequence: u64,
    pub position: u64,
    pub client_id: u64,
    pub client_sequence: u64,
}

/// The replicas disagree, or the log failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("state diverged at sequence {sequence}: this node's hash {ours:#018x}, the leader's {theirs:#018x}")]
    Divergence {
        sequence: u64,
        ours: u64,
        theirs: u64,
    },
    #[error("checkpoint for sequence {sequence} refers to a state this node never had")]
    UnknownCheckpoint { sequence: u64 },
    #[error("log: {0}")]
    Log(#[from] LogError),
    #[error("malformed record at position {position}")]
    Malformed { position: u64 },
}

/// Tracks what has been applied and the recent checkpoint hashes.
#[derive(Debug, Clone)]
pub struct Applier {
    applied_position: u64,
    applied_sequence: u64,
    commands_applied: u64,
    checkpoint_interval: u64,
    ring: [(u64, u64); CHECKPOINT_RING_LEN],
    ring_next: usize,
    pending_checkpoint: Option<(u64, u64)>,
    checkpoints_verified: u64,
    /// Highest client sequence applied per client: answers a resend of a command that is applied
    /// already, on whichever node leads now. Bounded by the clients the log holds.
    clients: std::collections::BTreeMap<u64, u64>,
}

impl Applier {
    /// `checkpoint_interval`: commands between checkpoints (0 disables them).
    pub fn new(checkpoint_interval: u64) -> Self {
        Applier {
            applied_position: 0,
            applied_sequence: 0,
            commands_applied: 0,
            checkpoint_interval,
            ring: [(0, 0); CHECKPOINT_RING_LEN],
            ring_next: 0,
            pending_checkpoint: None,
            checkpoints_verified: 0,
            clients: std::collections::BTreeMap::new(),
        }
    }

    /// The highest client sequence of `client_id` applied (0 when none).
    pub fn client_applied(&self, client_id: u64) -> u64 {
        self.clients.get(&client_id).copied().unwrap_or(0)
    }

    pub fn applied_position(&self) -> u64 {
        self.applied_position
    }
    pub fn applied_sequence(&self) -> u64 {
        self.applied_sequence
    }
    pub fn commands_applied(&self) -> u64 {
        self.commands_applied
    }
    pub fn checkpoints_verified(&self) -> u64 {
        self.checkpoints_verified
    }

    /// The checkpoint the leader should append next: (sequence, state hash after it).
    pub fn take_checkpoint(&mut self) -> Option<(u64, u64)> {
        self.pending_checkpoint.take()
    }

    /// Applies every record from the applied position up to `commit_position`.
    pub fn apply_committed<L: Log + ?Sized, S: StateMachine + ?Sized>(
        &mut self,
        log: &mut L,
        commit_position: u64,
        state: &mut S,
        on_applied: &mut dyn FnMut(Applied),
    ) -> Result<u64, ApplyError> {
        if commit_position <= self.applied_position {
            return Ok(0);
        }
        let mut failure = None;
        let mut count = 0;
        let from = self.applied_position;
        log.visit(from, &mut |position, frame| {
            if position >= commit_position {
                return false;
            }
            let header = frame_header(frame);
            let sequence = header.sequence.get();
            let end = position + journal::format::align_up(frame.len() as u64);
            match header.record_type.get() {
                RECORD_CLIENT_COMMAND => {
                    let Some((client_id, client_sequence, command)) =
                        split_client_command(frame_payload(frame))
                    else {
                        failure = Some(ApplyError::Malformed { position });
                        return false;
                    };
                    state.apply(
                        sequence,
                        header.timestamp_ns.get(),
                        client_id,
                        client_sequence,
                        command,
                    );
                    self.commands_applied += 1;
                    count += 1;
                    let applied = self.clients.entry(client_id).or_insert(0);
                    *applied = (*applied).max(client_sequence);
                    if self.checkpoint_interval > 0
                        && self
                            .commands_applied
                            .is_multiple_of(self.checkpoint_interval)
                    {
                        let note = (sequence, state.state_hash());
                        self.ring[self.ring_next] = note;
                        self.ring_next = (self.ring_next + 1) % CHECKPOINT_RING_LEN;
                        self.pending_checkpoint = Some(note);
                    }
                    on_applied(Applied {
                        sequence,
                        position,
                        client_id,
                        client_sequence,
                    });
                }
                RECORD_CHECKPOINT => {
                    let Some((checkpoint_sequence, theirs)) =
                        split_checkpoint(frame_payload(frame))
                    else {
                        failure = Some(ApplyError::Malformed { position });
                        return false;
                    };
                    match self
                        .ring
                        .iter()
                        .find(|(s, _)| *s == checkpoint_sequence && *s != 0)
                    {
                        Some(&(_, ours)) if ours == theirs => self.checkpoints_verified += 1,
                        Some(&(_, ours)) => {
                            failure = Some(ApplyError::Divergence {
                                sequence: checkpoint_sequence,
                                ours,
                                theirs,
                            });
                            return false;
                        }
                        None if checkpoint_sequence > self.applied_sequence => {
                            failure = Some(ApplyError::UnknownCheckpoint {
                                sequence: checkpoint_sequence,
                            });
                            return false;
                        }
                        // Older than this node remembers (it restarted, or lagged): cannot check.
                        None => {}
                    }
                }
                _ => {}
            }
            self.applied_position = end;
            self.applied_sequence = sequence;
            true
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }
}
