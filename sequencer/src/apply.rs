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
    /// A hint that `command` is the next command to be applied after the one being applied
    /// now: the state machine may start loading what it will touch. Must change nothing.
    fn prefetch(&self, command: &[u8]) {
        let _ = command;
    }
    /// A hint that `command` comes two commands after the next one is applied (before its
    /// [`StateMachine::prefetch`]). Must change nothing.
    fn prefetch_early(&self, command: &[u8]) {
        let _ = command;
    }
}

/// Commands the applier holds back while it reads ahead, so that the state machine gets the
/// [`StateMachine::prefetch`] and [`StateMachine::prefetch_early`] hints of the next two
/// commands before applying one. Held-back commands are applied before any other record and
/// before [`Applier::apply_committed`] returns: the order of application is the log's.
pub const LOOKAHEAD_COMMANDS: usize = 2;

/// Largest command a held-back entry stores (the matcher's records are 64 bytes); a longer
/// command is applied at once, after the held-back ones, without hints.
pub const LOOKAHEAD_COMMAND_LEN_MAX: usize = 64;

/// A client command read but not yet applied.
#[derive(Debug, Clone, Copy)]
struct HeldCommand {
    position: u64,
    end: u64,
    sequence: u64,
    timestamp_ns: u64,
    client_id: u64,
    client_sequence: u64,
    command_len: usize,
    command: CommandBytes,
}

/// 8-byte aligned, as the command is in the log (a state machine may view it in place).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
struct CommandBytes([u8; LOOKAHEAD_COMMAND_LEN_MAX]);

impl HeldCommand {
    const EMPTY: HeldCommand = HeldCommand {
        position: 0,
        end: 0,
        sequence: 0,
        timestamp_ns: 0,
        client_id: 0,
        client_sequence: 0,
        command_len: 0,
        command: CommandBytes([0; LOOKAHEAD_COMMAND_LEN_MAX]),
    };

    fn command(&self) -> &[u8] {
        &self.command.0[..self.command_len]
    }
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
    /// already, on whichever node leads now. Bounded by the clients the log holds. The entry of
    /// the client applied last is kept in `client_recent` instead (one client sends runs of
    /// commands; a map update per command cost as much as the checksum).
    clients: std::collections::BTreeMap<u64, u64>,
    /// (client id, highest client sequence) of the client applied last, not yet in `clients`.
    client_recent: Option<(u64, u64)>,
    /// Commands read ahead and not yet applied, oldest first, in a ring.
    held: [HeldCommand; LOOKAHEAD_COMMANDS],
    held_first: usize,
    held_len: usize,
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
            client_recent: None,
            held: [HeldCommand::EMPTY; LOOKAHEAD_COMMANDS],
            held_first: 0,
            held_len: 0,
        }
    }

    /// The highest client sequence of `client_id` applied (0 when none).
    pub fn client_applied(&self, client_id: u64) -> u64 {
        match self.client_recent {
            Some((recent, applied)) if recent == client_id => applied,
            _ => self.clients.get(&client_id).copied().unwrap_or(0),
        }
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
        debug_assert_eq!(self.held_len, 0);
        let mut failure = None;
        let mut count = 0;
        let from = self.applied_position;
        let visited = log.visit(from, &mut |position, frame| {
            if position >= commit_position {
                return false;
            }
            let header = frame_header(frame);
            let sequence = header.sequence.get();
            let end = position + journal::format::align_up(frame.len() as u64);
            if header.record_type.get() == RECORD_CLIENT_COMMAND {
                let Some((client_id, client_sequence, command)) =
                    split_client_command(frame_payload(frame))
                else {
                    count += self.apply_held(state, on_applied, 0);
                    failure = Some(ApplyError::Malformed { position });
                    return false;
                };
                if command.len() > LOOKAHEAD_COMMAND_LEN_MAX {
                    count += self.apply_held(state, on_applied, 0);
                    let held = HeldCommand {
                        position,
                        end,
                        sequence,
                        timestamp_ns: header.timestamp_ns.get(),
                        client_id,
                        client_sequence,
                        command_len: 0,
                        command: CommandBytes([0; LOOKAHEAD_COMMAND_LEN_MAX]),
                    };
                    self.apply_command(state, on_applied, &held, command);
                    count += 1;
                    return true;
                }
                // Hints: this command comes two after the oldest held one, the newest held one
                // comes next after it. Then the oldest is applied if the window is full.
                state.prefetch_early(command);
                if self.held_len > 0 {
                    let newest = (self.held_first + self.held_len - 1) % LOOKAHEAD_COMMANDS;
                    state.prefetch(self.held[newest].command());
                }
                count += self.apply_held(state, on_applied, LOOKAHEAD_COMMANDS - 1);
                let slot = (self.held_first + self.held_len) % LOOKAHEAD_COMMANDS;
                let held = &mut self.held[slot];
                held.position = position;
                held.end = end;
                held.sequence = sequence;
                held.timestamp_ns = header.timestamp_ns.get();
                held.client_id = client_id;
                held.client_sequence = client_sequence;
                held.command_len = command.len();
                match <&[u8; LOOKAHEAD_COMMAND_LEN_MAX]>::try_from(command) {
                    // The usual case, a fixed-size copy (a few vector moves, not a memcpy call).
                    Ok(full) => held.command.0 = *full,
                    Err(_) => held.command.0[..command.len()].copy_from_slice(command),
                }
                self.held_len += 1;
                return true;
            }
            // Any other record takes effect after every command before it.
            count += self.apply_held(state, on_applied, 0);
            if header.record_type.get() == RECORD_CHECKPOINT {
                let Some((checkpoint_sequence, theirs)) = split_checkpoint(frame_payload(frame))
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
            self.applied_position = end;
            self.applied_sequence = sequence;
            true
        });
        // Whatever was read before the end, a refused record or a log error is applied.
        count += self.apply_held(state, on_applied, 0);
        debug_assert_eq!(self.held_len, 0);
        visited?;
        match failure {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }

    /// Applies the oldest held commands until at most `keep` are held; returns how many.
    #[inline]
    fn apply_held<S: StateMachine + ?Sized>(
        &mut self,
        state: &mut S,
        on_applied: &mut dyn FnMut(Applied),
        keep: usize,
    ) -> u64 {
        let mut applied = 0;
        while self.held_len > keep {
            let held = self.held[self.held_first];
            self.held_first = (self.held_first + 1) % LOOKAHEAD_COMMANDS;
            self.held_len -= 1;
            self.apply_command(state, on_applied, &held, held.command());
            applied += 1;
        }
        applied
    }

    /// Applies one client command (`command`; the rest of `held` describes its record) and
    /// does the bookkeeping: per-client sequence, checkpoint note, applied position.
    #[inline]
    fn apply_command<S: StateMachine + ?Sized>(
        &mut self,
        state: &mut S,
        on_applied: &mut dyn FnMut(Applied),
        held: &HeldCommand,
        command: &[u8],
    ) {
        state.apply(
            held.sequence,
            held.timestamp_ns,
            held.client_id,
            held.client_sequence,
            command,
        );
        self.commands_applied += 1;
        match &mut self.client_recent {
            Some((client_id, applied)) if *client_id == held.client_id => {
                *applied = (*applied).max(held.client_sequence);
            }
            recent => {
                if let Some((client_id, applied)) = recent.replace((held.client_id, 0)) {
                    self.clients.insert(client_id, applied);
                }
                let earlier = self.clients.remove(&held.client_id).unwrap_or(0);
                *recent = Some((held.client_id, earlier.max(held.client_sequence)));
            }
        }
        if self.checkpoint_interval > 0
            && self
                .commands_applied
                .is_multiple_of(self.checkpoint_interval)
        {
            let note = (held.sequence, state.state_hash());
            self.ring[self.ring_next] = note;
            self.ring_next = (self.ring_next + 1) % CHECKPOINT_RING_LEN;
            self.pending_checkpoint = Some(note);
        }
        on_applied(Applied {
            sequence: held.sequence,
            position: held.position,
            client_id: held.client_id,
            client_sequence: held.client_sequence,
        });
        self.applied_position = held.end;
        self.applied_sequence = held.sequence;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::MemLog;
    use crate::protocol::{CHECKPOINT_LEN, RECORD_TERM_START};
    use journal::RecordMeta;

    /// Records what the applier does to it, in order.
    #[derive(Default)]
    struct Recorder {
        hash: u64,
        calls: Vec<String>,
        /// Hints are `&self`: kept apart, checked for their order relative to the applies.
        hints: std::cell::RefCell<Vec<String>>,
    }

    impl StateMachine for Recorder {
        fn apply(&mut self, sequence: u64, _: u64, client_id: u64, client_sequence: u64, c: &[u8]) {
            self.hash = self
                .hash
                .wrapping_mul(31)
                .wrapping_add(sequence ^ c.len() as u64);
            let hints = std::mem::take(&mut *self.hints.borrow_mut());
            self.calls.extend(hints);
            self.calls.push(format!(
                "apply {sequence} {client_id}/{client_sequence} {}",
                c.len()
            ));
        }
        fn state_hash(&self) -> u64 {
            self.hash
        }
        fn prefetch(&self, command: &[u8]) {
            self.hints.borrow_mut().push(format!("next {}", command[0]));
        }
        fn prefetch_early(&self, command: &[u8]) {
            self.hints
                .borrow_mut()
                .push(format!("early {}", command[0]));
        }
    }

    fn append(log: &mut MemLog, record_type: u16, sequence: u64, payload: &[u8]) -> u64 {
        let meta = RecordMeta {
            record_type,
            flags: 0,
            sequence,
            term: 1,
            timestamp_ns: sequence * 10,
        };
        log.append(&meta, payload).expect("append")
    }

    fn command(client_id: u64, client_sequence: u64, marker: u8, len: usize) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&client_id.to_le_bytes());
        payload.extend_from_slice(&client_sequence.to_le_bytes());
        payload.extend(std::iter::repeat_n(marker, len));
        payload
    }

    /// The held-back commands are applied in log order, before any other record, before
    /// `apply_committed` returns, and each gets the hints of the next two first; a checkpoint
    /// after held-back commands is verified against the state after them; the result does not
    /// depend on where the commit position cuts the log.
    #[test]
    fn lookahead_keeps_log_order_and_checkpoints() {
        let mut log = MemLog::new();
        let mut positions = Vec::new();
        let mut reference = Recorder::default();
        let mut sequence = 0;
        let mut commands = 0;
        let runs = [
            (1u64, 1u64..=5, 64usize),
            (2, 1..=1, 100),
            (1, 6..=8, 64),
            (3, 1..=2, 8),
        ];
        for (client, client_sequences, len) in runs {
            for client_sequence in client_sequences {
                sequence += 1;
                let payload = command(client, client_sequence, sequence as u8, len);
                reference.apply(sequence, 0, client, client_sequence, &payload[16..]);
                commands += 1;
                positions.push(append(&mut log, RECORD_CLIENT_COMMAND, sequence, &payload));
                if commands % 4 == 0 {
                    sequence += 1;
                    let mut checkpoint = [0u8; CHECKPOINT_LEN];
                    checkpoint[..8].copy_from_slice(&(sequence - 1).to_le_bytes());
                    checkpoint[8..].copy_from_slice(&reference.state_hash().to_le_bytes());
                    positions.push(append(&mut log, RECORD_CHECKPOINT, sequence, &checkpoint));
                }
            }
        }
        sequence += 1;
        positions.push(append(&mut log, RECORD_TERM_START, sequence, &[0u8; 8]));

        let run = |cuts: &[u64]| {
            let mut applier = Applier::new(4);
            let mut state = Recorder::default();
            let mut applied = Vec::new();
            let mut count = 0;
            for &cut in cuts {
                count += applier
                    .apply_committed(&mut log.clone(), cut, &mut state, &mut |a| applied.push(a))
                    .expect("apply");
                assert_eq!(
                    applier.applied_position(),
                    cut.min(*positions.last().unwrap())
                );
            }
            assert_eq!(count, commands);
            assert_eq!(applier.checkpoints_verified(), commands / 4);
            assert_eq!(applier.applied_sequence(), sequence);
            assert_eq!(state.state_hash(), reference.state_hash());
            assert_eq!(applier.client_applied(1), 8);
            assert_eq!(applier.client_applied(2), 1);
            assert_eq!(applier.client_applied(3), 2);
            assert_eq!(applier.client_applied(4), 0);
            let sequences: Vec<u64> = applied.iter().map(|a| a.sequence).collect();
            assert!(sequences.windows(2).all(|w| w[0] < w[1]));
            (state.calls, applied)
        };
        let (calls, applied) = run(&[u64::MAX]);
        // Cut after every record, and at a few single points.
        let (calls_each, applied_each) = run(&positions);
        assert_eq!(applied, applied_each);
        let applies: Vec<&String> = calls.iter().filter(|c| c.starts_with("apply")).collect();
        let applies_each: Vec<&String> = calls_each
            .iter()
            .filter(|c| c.starts_with("apply"))
            .collect();
        assert_eq!(applies, applies_each);
        // In one pass, a command is applied right after the hints of the two after it: the one
        // after next has had its early hint one command before its next hint.
        let expected = [
            "early 1",
            "early 2",
            "next 1",
            "early 3",
            "next 2",
            "apply 1 1/1 64",
        ];
        assert_eq!(calls[..6], expected);
        assert_eq!(calls[6..9], ["early 4", "next 3", "apply 2 1/2 64"]);
    }

    /// A malformed client command stops the applier after everything before it was applied.
    #[test]
    fn malformed_command_applies_what_precedes_it() {
        let mut log = MemLog::new();
        let mut ends = Vec::new();
        for sequence in 1..=3u64 {
            ends.push(append(
                &mut log,
                RECORD_CLIENT_COMMAND,
                sequence,
                &command(1, sequence, 0, 64),
            ));
        }
        append(&mut log, RECORD_CLIENT_COMMAND, 4, &[0u8; 8]);
        let mut applier = Applier::new(0);
        let mut state = Recorder::default();
        let result = applier.apply_committed(&mut log, u64::MAX, &mut state, &mut |_| {});
        assert!(matches!(result, Err(ApplyError::Malformed { position }) if position == ends[2]));
        assert_eq!(applier.commands_applied(), 3);
        assert_eq!(applier.applied_position(), ends[2]);
        assert_eq!(applier.applied_sequence(), 3);
    }
}
