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
//! Start-up: the learner first catches up with the log (applying it to the matcher, noting the
//! highest client sequence of this gateway's client id), configured instruments missing from
//! the log are added, and only then does the listener accept connections, with the core's
//! client sequence continuing above the log's.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use matcher::{Command, CommandKind, CommandRecord, Event, InstrumentConfig, Matcher};
use rusteron_client::Aeron;
use sequencer::learner::Learner;
use sequencer::reliable::{ReliableClient, ReliableConfig};
use sequencer::runtime::{IdleStrategy, Idler};

use crate::gateway::{ConnectionId, Gateway, GatewayConfig, Submission};
use crate::net::{Net, NetEvent};
use crate::store::MessageStore;

/// How long start-up waits for the learner to catch up with the log.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// The core's timers run this often.
const TIMER_INTERVAL_NS: u64 = 1_000_000;

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
    started: Instant,
    last_timer_ns: u64,
    /// What the runtime counted.
    pub counters: RuntimeCounters,
}

impl<S: MessageStore> GatewayRuntime<S> {
    /// Connects to the cluster, catches up with its log, adds missing instruments, then opens
    /// the listener. `gateway_config.client_sequence_next` is set from the log.
    pub fn start(
        aeron: &Aeron,
        config: &RuntimeConfig,
        mut gateway_config: GatewayConfig,
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
        let mut last_own = 0u64;
        // Catch up: the log as far as a member serves it, heard at least once.
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        let mut client_sequence = 0u64;
        let mut to_add: Vec<(u64, CommandRecord)> = Vec::new();
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
                    counters.commands_applied += 1;
                    counters.sequence = record.sequence;
                }
            })?;
            let caught_up = learner.core.served_sequence > 0
                && learner.core.next_sequence() > learner.core.served_sequence;
            let heard_empty = learner.core.counters.heartbeats > 0
                && learner.core.served_sequence == 0
                && learner.core.next_sequence() == 1;
            if to_add.is_empty() && (caught_up || heard_empty) {
                // Instruments the log lacks: added by this gateway, then the core starts after
                // them.
                client_sequence = last_own;
                for instrument in &config.instruments {
                    if matcher.instrument(instrument.instrument_id).is_none() {
                        client_sequence += 1;
                        to_add.push((
                            client_sequence,
                            Command::AddInstrument(*instrument).encode(),
                        ));
                    }
                }
                if to_add.is_empty() {
                    break;
                }
                let now = started.elapsed().as_nanos() as u64;
                for (sequence, record) in &to_add {
                    client.submit(now, *sequence, record.as_bytes());
                }
            }
            if !to_add.is_empty() {
                let now = started.elapsed().as_nanos() as u64;
                client.poll(now, |_| {})?;
                if client.outstanding() == 0 && last_own >= client_sequence {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::CatchUp(format!(
                    "after {CATCH_UP_TIMEOUT:?}: at sequence {} of {} served (members {})",
                    learner.core.next_sequence() - 1,
                    learner.core.served_sequence,
                    config.ingress.join(",")
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        gateway_config.client_sequence_next = last_own.max(client_sequence) + 1;
        let gateway = Gateway::new(gateway_config, stores)
            .map_err(|e| RuntimeError::Config(e.to_string()))?;
        let net = Net::bind(config.listen, gateway.connections_max())?;
        Ok(GatewayRuntime {
            gateway,
            net,
            client,
            learner,
            matcher,
            events,
            submissions: Vec::with_capacity(1024),
            started,
            last_timer_ns: 0,
            counters,
        })
    }

    /// One duty cycle; returns the work done.
    pub fn do_work(&mut self) -> Result<usize, RuntimeError> {
        let now = sequencer::clock::unix_now_ns();
        let mono = self.started.elapsed().as_nanos() as u64;
        let GatewayRuntime {
            gateway,
            net,
            client,
            learner,
            matcher,
            events,
            submissions,
            counters,
            ..
        } = self;
        let mut work = 0;
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
        // Timers.
        if now.saturating_sub(self.last_timer_ns) >= TIMER_INTERVAL_NS {
            self.last_timer_ns = now;
            gateway.on_timer(now);
        }
        // Commands to the cluster.
        gateway.drain_submissions(submissions);
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
        // Outcomes from the committed log.
        let own_id = client.client.client_id;
        work += learner.poll(|record| {
            let Some((client_id, _, command)) = record.client_command() else {
                return;
            };
            events.clear();
            matcher.apply_payload(record.sequence, record.timestamp_ns, command, events);
            counters.commands_applied += 1;
            counters.sequence = record.sequence;
            if client_id == own_id {
                counters.own_commands += 1;
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
        // Bytes out, and connections the core is done with.
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

/// Where a gateway keeps its session stores: one directory per session under `dir`, named by
/// its CompIDs.
pub fn session_store_dir(
    dir: &Path,
    sender_comp_id: &str,
    target_comp_id: &str,
) -> std::path::PathBuf {
    dir.join(format!("{sender_comp_id}-{target_comp_id}"))
}
