//! The gateway process's runtime: one thread that drives the sans-IO [`Gateway`] core with
//! sockets ([`crate::net`], io_uring), the clock, and the cluster:
//!
//! - commands the core submits go to the cluster through a [`ReliableClient`] (exactly once,
//!   across failovers);
//! - outcomes come from the committed log, which the gateway follows as a learner
//!   ([`sequencer::learner`]) and applies to its own matcher replica: every committed command
//!   and its events go to [`Gateway::on_committed`], so a fill of a resting order reaches its
//!   owner whoever took it, and nothing uncommitted is ever reported.
//!
//! Every submission is appended to the gateway's submission log
//! ([`crate::submission_log`]) before it is sent.
//!
//! Start-up: the learner first catches up with the log (applying it to the matcher, noting the
//! highest client sequence of this gateway's client id and the fills of the sessions' orders);
//! the orders of the sessions' accounts still resting are given back to their sessions under
//! the ClOrdIDs the submission log has for them; what the submission log holds above the
//! committed log is sent again, in order, under the same client sequences, and its outcomes
//! are reported as they would have been; configured instruments missing from the log are
//! added; and only then does the listener accept connections, with the core's client sequence
//! continuing above all of it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use matcher::{
    CancelReason, Command, CommandKind, CommandRecord, Event, EventKind, InstrumentConfig, Matcher,
    Side, FLAG_MAKER_DONE, FLAG_TAKER_DONE,
};
use rusteron_client::Aeron;
use sequencer::learner::Learner;
use sequencer::reliable::{ReliableClient, ReliableConfig};
use sequencer::runtime::{IdleStrategy, Idler};

use crate::gateway::{ConnectionId, Gateway, GatewayConfig, Submission};
use crate::net::{Net, NetEvent};
use crate::store::MessageStore;
use crate::submission_log::{SubmissionEntry, SubmissionLog};

/// How long start-up waits for the learner to catch up with the log.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// The core's timers run this often.
const TIMER_INTERVAL_NS: u64 = 1_000_000;
/// Entries compaction keeps whatever they did: at least what one duty cycle journals before
/// the sessions store their MsgSeqNums ([`Gateway::take_submissions`]).
const KEEP_NEWEST: usize = crate::gateway::SUBMISSIONS_MAX;

/// Errors of the gateway runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The listener or io_uring failed.
    #[error("network: {0}")]
    Net(#[from] std::io::Error),
    /// Aeron failed.
    #[error("cluster: {0}")]
    Cluster(#[from] sequencer::transport::TransportError),
    /// The configuration cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// Start-up could not follow the log to its end.
    #[error("the committed log could not be followed: {0}")]
    CatchUp(String),
    /// The submission log failed.
    #[error("{0}")]
    SubmissionLog(#[from] crate::submission_log::SubmissionLogError),
}

/// Where the gateway listens and how it reaches the cluster.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// FIX acceptor address.
    pub listen: SocketAddr,
    /// Every member's client ingress endpoint, by node id.
    pub ingress: Vec<String>,
    /// The member tried first.
    pub first_target: usize,
    /// This gateway's client id (stable across restarts: client sequences continue).
    pub client_id: u64,
    /// Where the cluster answers commands (`host:port`).
    pub response_endpoint: String,
    /// Learner id (unique among the cluster's learners).
    pub learner_id: u64,
    /// Where the committed log is streamed (`host:port`).
    pub learner_endpoint: String,
    /// The matcher replica's capacities: as the cluster's.
    pub matcher: matcher::Config,
    /// Instruments to add to the log when it has none of that id (full matcher configuration).
    pub instruments: Vec<InstrumentConfig>,
    /// Idle strategy of the gateway thread.
    pub idle: IdleStrategy,
    /// The submission log's directory.
    pub submission_log_dir: PathBuf,
}

/// What the runtime counted, besides the core's and the network's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeCounters {
    /// Committed commands applied to the gateway's matcher.
    pub commands_applied: u64,
    /// Of them, this gateway's.
    pub own_commands: u64,
    /// The log sequence applied last.
    pub sequence: u64,
    /// Submissions the reliable client could not take (too many outstanding): the order is
    /// lost to the cluster and the client gets no answer; counted, never queued without bound.
    pub submissions_refused: u64,
    /// Start-up: resting orders of the sessions' accounts given back to their sessions.
    pub orders_restored: u64,
    /// Start-up: resting orders of the sessions' accounts the submission log has no ClOrdID
    /// for (placed through another client id, or before the log existed): not reported.
    pub orders_unrecovered: u64,
    /// Start-up: submissions sent again (in the submission log, not in the committed log).
    pub resubmitted: u64,
    /// Start-up: entries of the submission log after a gap in its client sequences (cannot be
    /// sent again in order; dropped).
    pub resubmissions_dropped: u64,
    /// Start-up: sessions whose recovered orders were mass-cancelled (cancel on disconnect).
    pub cancelled_on_restart: u64,
}

/// Fills of the sessions' orders while they rest, folded from the committed events at start-up:
/// order id → (filled quantity, Σ price × quantity). An order leaves the map when it is done,
/// so the map holds the resting orders' only.
type Fills = BTreeMap<u64, (u64, i128)>;

fn fold_fills(fills: &mut Fills, accounts: &BTreeSet<u32>, event: &Event) {
    match event.event_kind() {
        Some(EventKind::Trade) => {
            let fill = (
                event.quantity.get(),
                i128::from(event.price.get()) * i128::from(event.quantity.get()),
            );
            for (account, order_id, done) in [
                (
                    event.account_id.get(),
                    event.order_id.get(),
                    event.flags & FLAG_TAKER_DONE != 0,
                ),
                (
                    event.account_id_maker.get(),
                    event.aux_a.get(),
                    event.flags & FLAG_MAKER_DONE != 0,
                ),
            ] {
                if !accounts.contains(&account) {
                    continue;
                }
                if done {
                    fills.remove(&order_id);
                } else {
                    let entry = fills.entry(order_id).or_insert((0, 0));
                    entry.0 += fill.0;
                    entry.1 += fill.1;
                }
            }
        }
        // An STP decrement leaves the order resting (quantity left open in aux_b).
        Some(EventKind::Cancelled)
            if !(matcher::cancel_reason_from_u8(event.reason) == Some(CancelReason::SelfTrade)
                && event.aux_b.get() > 0) =>
        {
            fills.remove(&event.order_id.get());
        }
        _ => {}
    }
}

/// The gateway thread's state.
pub struct GatewayRuntime<S: MessageStore> {
    /// The FIX core.
    pub gateway: Gateway<S>,
    /// Sockets.
    pub net: Net,
    /// Commands to the cluster.
    pub client: ReliableClient,
    /// The committed log from the cluster.
    pub learner: Learner,
    matcher: Matcher,
    events: Vec<Event>,
    submissions: Vec<Submission>,
    submission_log: SubmissionLog,
    started: Instant,
    last_timer_ns: u64,
    /// The highest client sequence of this gateway's client id seen committed.
    own_last: u64,
    /// What the runtime counted.
    pub counters: RuntimeCounters,
}

impl<S: MessageStore> GatewayRuntime<S> {
    /// Connects to the cluster, catches up with its log, gives the sessions back their resting
    /// orders, sends again what it had submitted without seeing it committed, adds missing
    /// instruments, then opens the listener.
    pub fn start(
        aeron: &Aeron,
        config: &RuntimeConfig,
        gateway_config: GatewayConfig,
        stores: Vec<S>,
        invoke: &dyn Fn(),
    ) -> Result<GatewayRuntime<S>, RuntimeError> {
        if config.first_target >= config.ingress.len() {
            return Err(RuntimeError::Config(format!(
                "first target {} is not one of {} members",
                config.first_target,
                config.ingress.len()
            )));
        }
        let (mut submission_log, logged) = SubmissionLog::open(&config.submission_log_dir)?;
        let mut matcher =
            Matcher::new(config.matcher).map_err(|e| RuntimeError::Config(e.to_string()))?;
        let mut learner = Learner::connect(
            aeron,
            config.learner_id,
            &config.ingress,
            config.first_target,
            &config.learner_endpoint,
            1,
            invoke,
        )?;
        let mut client = ReliableClient::connect(
            aeron,
            config.client_id,
            &config.ingress,
            config.first_target,
            &config.response_endpoint,
            ReliableConfig::default(),
            invoke,
        )?;
        let started = Instant::now();
        let mut events = Vec::with_capacity(1024);
        let mut counters = RuntimeCounters::default();
        let accounts: BTreeSet<u32> = gateway_config
            .sessions
            .iter()
            .map(|s| s.account_id)
            .collect();
        let mut fills = Fills::new();
        let mut last_own = 0u64;
        // Catch up: the log as far as a member serves it, heard at least once.
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            invoke();
            learner.poll(|record| {
                if let Some((client_id, sequence_of_client, command)) = record.client_command() {
                    if client_id == config.client_id {
                        last_own = last_own.max(sequence_of_client);
                    }
                    events.clear();
                    matcher.apply_payload(
                        record.sequence,
                        record.timestamp_ns,
                        command,
                        &mut events,
                    );
                    for event in events.iter() {
                        fold_fills(&mut fills, &accounts, event);
                    }
                    counters.commands_applied += 1;
                    counters.sequence = record.sequence;
                }
            })?;
            let caught_up = learner.core.served_sequence > 0
                && learner.core.next_sequence() > learner.core.served_sequence;
            let heard_empty = learner.core.counters.heartbeats > 0
                && learner.core.served_sequence == 0
                && learner.core.next_sequence() == 1;
            if caught_up || heard_empty {
                break;
            }
            if Instant::now() > deadline {
                return Err(catch_up_error(&learner, config));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut gateway_config = gateway_config;
        gateway_config.client_sequence_next = last_own + 1;
        let mut gateway = Gateway::new(gateway_config.clone(), stores)
            .map_err(|e| RuntimeError::Config(e.to_string()))?;
        // The sessions' resting orders, under the ClOrdIDs the submission log has for them (an
        // order's client order id is the client sequence of its NewOrder or last Replace).
        let by_sequence: BTreeMap<u64, &SubmissionEntry> = logged
            .iter()
            .rev()
            .map(|entry| (entry.client_sequence, entry))
            .collect();
        let mut keep: BTreeMap<u64, SubmissionEntry> = BTreeMap::new();
        for instrument in &gateway_config.instruments {
            for side in [Side::Buy, Side::Sell] {
                matcher.for_each_order(instrument.instrument_id, side, |view| {
                    if !accounts.contains(&view.account_id) {
                        return;
                    }
                    let logged = by_sequence
                        .get(&view.client_order_id)
                        .filter(|entry| entry_made(entry, view));
                    let Some((entry, cl_ord_id)) =
                        logged.and_then(|entry| Some((*entry, entry.cl_ord_id?)))
                    else {
                        counters.orders_unrecovered += 1;
                        return;
                    };
                    let (cum, notional) = fills.get(&view.order_id).copied().unwrap_or((0, 0));
                    if gateway.restore_order(view, cl_ord_id, cum, notional) {
                        counters.orders_restored += 1;
                        keep.insert(entry.client_sequence, *entry);
                    } else {
                        counters.orders_unrecovered += 1;
                    }
                });
            }
        }
        drop(fills);
        // Every ClOrdID the log holds stays taken: a request whose submission was journaled
        // just before the stop, and whose MsgSeqNum the session had not stored yet, comes again
        // with PossDupFlag and is recognised.
        for entry in &logged {
            if let Some(cl_ord_id) = entry.cl_ord_id {
                gateway.remember_cl_ord_id(entry.record.account_id.get(), cl_ord_id);
            }
        }
        // The newest entries stay in the log whatever they did, for the same reason (a
        // second restart before the session's client sends them again).
        for entry in logged.iter().rev().take(KEEP_NEWEST) {
            keep.insert(entry.client_sequence, *entry);
        }
        // What was submitted and not committed: sent again, in order, before anything new.
        let mut submissions = Vec::with_capacity(1024);
        for entry in by_sequence.range(last_own + 1..).map(|(_, entry)| **entry) {
            let mut resent = gateway.resubmit(&entry);
            if !resent && entry.client_sequence == gateway.client_sequence_next() {
                // The core's submission queue is full: hand it to the client, then again.
                send_submissions(
                    &mut gateway,
                    &mut submissions,
                    &mut submission_log,
                    &mut client,
                    &mut counters,
                    started,
                )?;
                resent = gateway.resubmit(&entry);
            }
            if resent {
                counters.resubmitted += 1;
                keep.insert(entry.client_sequence, entry);
            } else {
                counters.resubmissions_dropped += 1;
            }
        }
        // Sessions that cancel on disconnect were disconnected by the stop: their orders go.
        counters.cancelled_on_restart = gateway.cancel_on_restart() as u64;
        // The log now needs only these (a restart sooner than they are done needs them again).
        let keep: Vec<SubmissionEntry> = keep.into_values().collect();
        submission_log.compact(&keep)?;
        // Instruments the log lacks, after the resubmissions.
        for instrument in &config.instruments {
            if matcher.instrument(instrument.instrument_id).is_none() {
                gateway.submit_command(Command::AddInstrument(*instrument).encode());
            }
        }
        // Everything submitted so far committed (its outcomes reported to the sessions, or
        // stored for them), before the listener opens.
        let target = gateway.client_sequence_next() - 1;
        let mut own_last = last_own;
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            invoke();
            send_submissions(
                &mut gateway,
                &mut submissions,
                &mut submission_log,
                &mut client,
                &mut counters,
                started,
            )?;
            follow_log(
                &mut gateway,
                &mut learner,
                &mut matcher,
                &mut events,
                &mut counters,
                &mut own_last,
                config.client_id,
                sequencer::clock::unix_now_ns(),
            )?;
            if client.outstanding() == 0 && own_last >= target {
                break;
            }
            if Instant::now() > deadline {
                return Err(catch_up_error(&learner, config));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let net = Net::bind(config.listen, gateway.connections_max())?;
        Ok(GatewayRuntime {
            gateway,
            net,
            client,
            learner,
            matcher,
            events,
            submissions,
            submission_log,
            started,
            last_timer_ns: 0,
            own_last,
            counters,
        })
    }

    /// One duty cycle; returns the work done.
    pub fn do_work(&mut self) -> Result<usize, RuntimeError> {
        let now = sequencer::clock::unix_now_ns();
        let mut work = 0;
        {
            let GatewayRuntime { gateway, net, .. } = self;
            // Sockets.
            let mut adopt = Vec::new();
            work += net.poll(&mut |event| match event {
                NetEvent::Accepted { fd } => adopt.push(fd),
                NetEvent::Received { slot, bytes } => {
                    gateway.on_bytes(ConnectionId(slot), now, bytes);
                }
                NetEvent::Closed { slot } => gateway.on_disconnected(ConnectionId(slot), now),
            })?;
            for fd in adopt {
                match gateway.on_connected(now) {
                    Some(connection) => net.adopt(connection.0, fd)?,
                    None => net.refuse(fd),
                }
            }
        }
        // Timers.
        if now.saturating_sub(self.last_timer_ns) >= TIMER_INTERVAL_NS {
            self.last_timer_ns = now;
            self.gateway.on_timer(now);
        }
        // Commands to the cluster, then outcomes from the committed log.
        let client_id = self.client.client.client_id;
        work += send_submissions(
            &mut self.gateway,
            &mut self.submissions,
            &mut self.submission_log,
            &mut self.client,
            &mut self.counters,
            self.started,
        )?;
        work += follow_log(
            &mut self.gateway,
            &mut self.learner,
            &mut self.matcher,
            &mut self.events,
            &mut self.counters,
            &mut self.own_last,
            client_id,
            now,
        )?;
        // Bytes out, and connections the core is done with.
        let GatewayRuntime { gateway, net, .. } = self;
        for slot in 0..gateway.connections_max() as u32 {
            let connection = ConnectionId(slot);
            if !net.can_send(slot) {
                continue;
            }
            let pending = gateway.outbound(connection);
            if !pending.is_empty() {
                let taken = net.send(slot, pending)?;
                gateway.consume_outbound(connection, taken, now);
                work += 1;
            } else if gateway.wants_close(connection) {
                net.close(slot);
                work += 1;
            }
        }
        Ok(work)
    }

    /// Runs duty cycles until `stop` is set; `invoke` runs an invoked media driver (or nothing).
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        idle: IdleStrategy,
        invoke: &dyn Fn() -> usize,
    ) -> Result<(), RuntimeError> {
        let mut idler = Idler::new(idle);
        while !stop.load(Ordering::Acquire) {
            let work = invoke() + self.do_work()?;
            idler.idle(work);
        }
        Ok(())
    }

    /// The state hash of the gateway's matcher replica (equal to the cluster's at the same
    /// sequence).
    pub fn matcher_state_hash(&self) -> u64 {
        self.matcher.state_hash()
    }
}

/// Whether `entry` is the NewOrder or Replace that gave the order `view` its client order id
/// (its client sequence): the same account, and the same instrument and side, or the same
/// order.
fn entry_made(entry: &SubmissionEntry, view: &matcher::OrderView) -> bool {
    let record = &entry.record;
    record.account_id.get() == view.account_id
        && match CommandKind::from_u8(record.kind) {
            Some(CommandKind::NewOrder) => {
                record.instrument_id.get() == view.instrument_id && record.side == view.side as u8
            }
            Some(CommandKind::Replace) => record.order_id.get() == view.order_id,
            _ => false,
        }
}

/// Appends the core's new submissions to the submission log, then hands them to the reliable
/// client; polls it.
fn send_submissions<S: MessageStore>(
    gateway: &mut Gateway<S>,
    submissions: &mut Vec<Submission>,
    submission_log: &mut SubmissionLog,
    client: &mut ReliableClient,
    counters: &mut RuntimeCounters,
    started: Instant,
) -> Result<usize, RuntimeError> {
    let mono = started.elapsed().as_nanos() as u64;
    let mut work = 0;
    // Journaled before the sessions store the MsgSeqNums of the messages that made them.
    gateway.take_submissions(submissions, |submission| {
        if submission.resent {
            return Ok(());
        }
        submission_log.append(&SubmissionEntry {
            client_sequence: submission.client_sequence,
            record: submission.record,
            cl_ord_id: submission.cl_ord_id,
            request_type: submission.request_type,
        })
    })?;
    for submission in submissions.drain(..) {
        if !client.submit(
            mono,
            submission.client_sequence,
            submission.record.as_bytes(),
        ) {
            counters.submissions_refused += 1;
        }
        work += 1;
    }
    work += client.poll(mono, |_| {})?;
    Ok(work)
}

/// Applies what the learner delivers of the committed log to the matcher replica and hands
/// each command and its events to the core.
#[allow(clippy::too_many_arguments)]
fn follow_log<S: MessageStore>(
    gateway: &mut Gateway<S>,
    learner: &mut Learner,
    matcher: &mut Matcher,
    events: &mut Vec<Event>,
    counters: &mut RuntimeCounters,
    own_last: &mut u64,
    own_id: u64,
    now: u64,
) -> Result<usize, RuntimeError> {
    let work = learner.poll(|record| {
        let Some((client_id, client_sequence, command)) = record.client_command() else {
            return;
        };
        events.clear();
        matcher.apply_payload(record.sequence, record.timestamp_ns, command, events);
        counters.commands_applied += 1;
        counters.sequence = record.sequence;
        if client_id == own_id {
            counters.own_commands += 1;
            *own_last = (*own_last).max(client_sequence);
        }
        let Ok(command_record) = CommandRecord::read_from_bytes(command) else {
            return;
        };
        if CommandKind::from_u8(command_record.kind).is_some() {
            gateway.on_committed(
                now,
                record.sequence,
                record.timestamp_ns,
                &command_record,
                events,
            );
        }
    })?;
    Ok(work)
}

fn catch_up_error(learner: &Learner, config: &RuntimeConfig) -> RuntimeError {
    RuntimeError::CatchUp(format!(
        "after {CATCH_UP_TIMEOUT:?}: at sequence {} of {} served (members {})",
        learner.core.next_sequence() - 1,
        learner.core.served_sequence,
        config.ingress.join(",")
    ))
}

/// Where a gateway keeps its session stores: one directory per session under `dir`, named by
/// its CompIDs.
pub fn session_store_dir(
    dir: &Path,
    sender_comp_id: &str,
    target_comp_id: &str,
) -> std::path::PathBuf {
    dir.join(format!("{sender_comp_id}-{target_comp_id}"))
}
