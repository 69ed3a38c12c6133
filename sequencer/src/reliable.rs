//! A client that gets every command it submits committed exactly once, across failovers: it
//! keeps what is unanswered, follows "not leader" hints and leader announcements, moves to the
//! next member after silence, and resends in order (the cluster discards a client sequence it
//! has sequenced already). Used by the gateway; the load generator has the same rules inline,
//! with its measurement around them.
//!
//! The cluster sequences one client's commands strictly in client-sequence order (a gap is
//! rejected), so a Committed answer for client sequence `s` means every command before `s` is
//! committed too.

use std::collections::VecDeque;
use std::time::Duration;

use rusteron_client::Aeron;

use crate::client::{leader_news, Client, Response, REASON_SEQUENCE_GAP, RESPONSE_COMMITTED};
use crate::transport::TransportError;

/// Most commands unanswered at once; a submit beyond it is refused (the caller counts it).
pub const RELIABLE_PENDING_MAX: usize = 65_536;
/// Longest command a reliable client keeps for resending.
pub const RELIABLE_COMMAND_LEN_MAX: usize = 64;

/// When a reliable client gives up on a member and resends.
#[derive(Debug, Clone, Copy)]
pub struct ReliableConfig {
    /// Silence (no answer while commands are outstanding) after which it moves to the next
    /// member.
    pub leader_timeout: Duration,
    /// An unanswered command is resent after this long.
    pub resend_after: Duration,
    /// Connect is repeated this often (members that restarted forget their clients).
    pub hello_interval: Duration,
}

impl Default for ReliableConfig {
    fn default() -> Self {
        ReliableConfig {
            leader_timeout: Duration::from_millis(300),
            resend_after: Duration::from_millis(500),
            hello_interval: Duration::from_millis(200),
        }
    }
}

/// What a reliable client counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReliableCounters {
    pub submitted: u64,
    pub committed: u64,
    /// Answers Rejected for another reason than "not leader" or a gap (capacity, too large).
    pub rejected: u64,
    pub resends: u64,
    pub leader_changes: u64,
    pub refused_full: u64,
}

struct Outstanding {
    client_sequence: u64,
    length: u8,
    command: [u8; RELIABLE_COMMAND_LEN_MAX],
    sent_ns: u64,
}

/// A [`Client`] with the rules above.
pub struct ReliableClient {
    pub client: Client,
    config: ReliableConfig,
    outstanding: VecDeque<Outstanding>,
    /// Client sequences sent already since the last move (the rest of `outstanding` is queued).
    leader_term: u64,
    last_answer_ns: u64,
    last_move_ns: u64,
    last_hello_ns: u64,
    last_resend_scan_ns: u64,
    resend_from: Option<u64>,
    pub counters: ReliableCounters,
}

impl ReliableClient {
    /// Connects to every member (`ingress` by node id), commands going to `first_target` first.
    pub fn connect(
        aeron: &Aeron,
        client_id: u64,
        ingress: &[String],
        first_target: usize,
        response_endpoint: &str,
        config: ReliableConfig,
        invoke: &dyn Fn(),
    ) -> Result<ReliableClient, TransportError> {
        let client = Client::connect_cluster(
            aeron,
            client_id,
            ingress,
            first_target,
            response_endpoint,
            invoke,
        )?;
        Ok(ReliableClient {
            client,
            config,
            outstanding: VecDeque::with_capacity(1024),
            leader_term: 0,
            last_answer_ns: 0,
            last_move_ns: 0,
            last_hello_ns: 0,
            last_resend_scan_ns: 0,
            resend_from: None,
            counters: ReliableCounters::default(),
        })
    }

    /// Commands submitted and not answered yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Submits a command (client sequences strictly increasing by one); false when too many are
    /// outstanding or the command is too long.
    pub fn submit(&mut self, now_ns: u64, client_sequence: u64, command: &[u8]) -> bool {
        if self.outstanding.len() >= RELIABLE_PENDING_MAX
            || command.len() > RELIABLE_COMMAND_LEN_MAX
        {
            self.counters.refused_full += 1;
            return false;
        }
        debug_assert!(self
            .outstanding
            .back()
            .is_none_or(|o| o.client_sequence + 1 == client_sequence));
        let mut entry = Outstanding {
            client_sequence,
            length: command.len() as u8,
            command: [0; RELIABLE_COMMAND_LEN_MAX],
            sent_ns: now_ns,
        };
        entry.command[..command.len()].copy_from_slice(command);
        if self.outstanding.is_empty() {
            // Silence is measured from the first command waiting.
            self.last_answer_ns = now_ns;
        }
        if !self.client.queue(client_sequence, command) {
            if self.client.flush() {
                self.client.queue(client_sequence, command);
            } else {
                // Back-pressure: the resend scan sends it.
                entry.sent_ns = 0;
            }
        }
        self.outstanding.push_back(entry);
        self.counters.submitted += 1;
        true
    }

    /// Sends what is queued, takes answers (each Committed or final Rejected answer is handed
    /// to `on_answer`), follows the leader and resends; returns the work done.
    pub fn poll(
        &mut self,
        now_ns: u64,
        mut on_answer: impl FnMut(Response),
    ) -> Result<usize, TransportError> {
        let mut work = 0;
        // Announce the response endpoint first (and again now and then: members that restarted
        // forget their clients), so the first commands' answers have somewhere to go.
        if self.last_hello_ns == 0
            || now_ns.saturating_sub(self.last_hello_ns)
                > self.config.hello_interval.as_nanos() as u64
        {
            self.last_hello_ns = now_ns.max(1);
            self.client.hello();
        }
        if self.client.has_queued() && self.client.flush() {
            work += 1;
        }
        let mut move_to = None::<usize>;
        let ReliableClient {
            client,
            outstanding,
            leader_term,
            last_answer_ns,
            resend_from,
            counters,
            ..
        } = self;
        work += client.poll(|response| {
            if let Some(hint) = leader_news(&response, leader_term) {
                move_to = hint.or(move_to);
                return;
            }
            if response.kind != RESPONSE_COMMITTED {
                if response.reason == REASON_SEQUENCE_GAP {
                    let expected = response.sequence;
                    *resend_from = Some(resend_from.map_or(expected, |r| r.min(expected)));
                    return;
                }
                counters.rejected += 1;
            } else {
                counters.committed += 1;
            }
            // Answers of a client come in order: everything up to this one is answered.
            let mut answered = false;
            while outstanding
                .front()
                .is_some_and(|o| o.client_sequence <= response.client_sequence)
            {
                outstanding.pop_front();
                answered = true;
            }
            if answered {
                *last_answer_ns = now_ns;
                on_answer(response);
            }
        })?;
        let members = self.client.members();
        let silent = !self.outstanding.is_empty()
            && now_ns.saturating_sub(self.last_answer_ns.max(self.last_move_ns))
                > self.config.leader_timeout.as_nanos() as u64;
        let target = move_to
            .filter(|&t| t < members && t != self.client.target())
            .or_else(|| silent.then(|| (self.client.target() + 1) % members));
        if let Some(target) = target.filter(|_| members > 1) {
            self.client.set_target(target);
            self.client.hello();
            self.counters.leader_changes += 1;
            self.last_move_ns = now_ns;
            self.resend_from = self.outstanding.front().map(|o| o.client_sequence);
            self.last_resend_scan_ns = 0;
            work += 1;
        }
        if now_ns.saturating_sub(self.last_resend_scan_ns) > 10_000_000 {
            self.last_resend_scan_ns = now_ns;
            let forced = self.resend_from.take().unwrap_or(u64::MAX);
            let resend_after = self.config.resend_after.as_nanos() as u64;
            for entry in self.outstanding.iter_mut() {
                if entry.client_sequence >= forced
                    || now_ns.saturating_sub(entry.sent_ns) > resend_after
                {
                    if !self.client.send(
                        entry.client_sequence,
                        &entry.command[..entry.length as usize],
                    ) {
                        break;
                    }
                    entry.sent_ns = now_ns;
                    self.counters.resends += 1;
                    work += 1;
                }
            }
        }
        Ok(work)
    }
}
