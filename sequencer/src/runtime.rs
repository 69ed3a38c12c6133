//! The Aeron runtime of a node: an agent (one thread, one role) whose duty cycle polls replication
//! messages and, on the leader, client ingress; drives the [`Node`]; and answers clients once their
//! commands are committed and applied. An idle strategy decides what an idle cycle does.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use journal::{Journal, JournalConfig};
use rusteron_client::Aeron;

use crate::client::{
    Ingress, Response, Sessions, INGRESS_STREAM_ID, REASON_CAPACITY, REASON_NOT_LEADER,
    REASON_SEQUENCE_GAP, REASON_TOO_LARGE, RESPONSE_COMMITTED, RESPONSE_REJECTED,
};
use crate::log::JournalLog;
use crate::node::{MatcherState, Node, NodeError};
use crate::protocol::NodeId;
use crate::replica::{ReplicaConfig, Submitted};
use crate::transport::{
    connect, AeronReceiver, AeronSender, TransportError, REPLICATION_STREAM_ID,
};

/// Fragments read from one subscription per duty cycle.
pub const FRAGMENT_LIMIT: usize = 256;

/// What an idle duty cycle does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Spin: lowest latency, one core per agent. For dedicated hardware only.
    BusySpin,
    /// Yield the CPU after every idle cycle: low latency, and other threads still run, but the
    /// thread shows as busy.
    Yield,
    /// Spin a little, then yield, then sleep up to `max_sleep`: the default on shared machines.
    Backoff { max_sleep: Duration },
}

/// Applies an idle strategy across cycles.
#[derive(Debug, Clone)]
pub struct Idler {
    strategy: IdleStrategy,
    idle_cycles: u32,
}

impl Idler {
    pub fn new(strategy: IdleStrategy) -> Self {
        Idler {
            strategy,
            idle_cycles: 0,
        }
    }

    /// Call after each duty cycle with the work it did.
    pub fn idle(&mut self, work: usize) {
        if work > 0 {
            self.idle_cycles = 0;
            return;
        }
        self.idle_cycles = self.idle_cycles.saturating_add(1);
        match self.strategy {
            IdleStrategy::BusySpin => std::hint::spin_loop(),
            IdleStrategy::Yield => std::thread::yield_now(),
            IdleStrategy::Backoff { max_sleep } => match self.idle_cycles {
                0..=50 => std::hint::spin_loop(),
                51..=100 => std::thread::yield_now(),
                n => std::thread::sleep(Duration::from_micros(
                    ((n - 100) as u64 * 10)
                        .min(max_sleep.as_micros() as u64)
                        .max(1),
                )),
            },
        }
    }
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    #[error("node: {0}")]
    Node(#[from] NodeError),
    #[error("journal: {0}")]
    Journal(#[from] journal::JournalError),
    #[error("configuration: {0}")]
    Config(String),
}

/// Where a node listens and whom it talks to.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's id, the members, the appointed leader, timeouts and bounds.
    pub replica: ReplicaConfig,
    /// Replication endpoint (`host:port`) of every member, by node id.
    pub replication_endpoints: Vec<String>,
    /// Client ingress endpoint of this node (the leader listens on it).
    pub ingress_endpoint: String,
    pub journal: JournalConfig,
    pub checkpoint_interval: u64,
    pub matcher: matcher::Config,
}

impl AgentConfig {
    /// Defaults for everything but the addresses and the journal directory: leader 0, loopback
    /// timeouts, the workload's matcher capacities.
    pub fn new(
        node_id: NodeId,
        replication_endpoints: Vec<String>,
        ingress_endpoint: String,
        journal_dir: impl Into<std::path::PathBuf>,
    ) -> Self {
        AgentConfig {
            replica: ReplicaConfig::new(node_id, replication_endpoints.len() as u8, 0),
            replication_endpoints,
            ingress_endpoint,
            journal: JournalConfig::new(journal_dir),
            checkpoint_interval: 10_000,
            matcher: crate::workload::matcher_config(),
        }
    }
}

/// One node's runtime.
pub struct NodeAgent {
    aeron: Aeron,
    receiver: AeronReceiver,
    sender: AeronSender,
    ingress: AeronReceiver,
    sessions: Sessions,
    /// The committed log streamed to learners (gateways, feed publishers).
    pub learners: crate::learner::LearnerServer,
    pub node: Node<JournalLog, MatcherState>,
    started: Instant,
    responses: Vec<Response>,
    pub ingress_malformed: u64,
    /// The term of the last leader announced to clients.
    announced_term: u64,
    /// The embedded media driver when this agent owns it; when invoked, it runs in this agent's
    /// duty cycle. Dropped after the Aeron objects above (fields drop in declaration order).
    driver: Option<crate::driver::EmbeddedDriver>,
}

impl NodeAgent {
    /// Connects to the media driver in `aeron_dir`, opens the journal and starts the node.
    pub fn start(aeron_dir: &Path, config: AgentConfig) -> Result<NodeAgent, RuntimeError> {
        Self::start_inner(aeron_dir, config, None)
    }

    /// Starts the node over a media driver that this agent runs in its own duty cycle (see
    /// [`crate::driver::EmbeddedDriver::launch_invoked`]): one thread per node process.
    pub fn start_invoking(
        driver: crate::driver::EmbeddedDriver,
        config: AgentConfig,
    ) -> Result<NodeAgent, RuntimeError> {
        let dir = driver.dir().to_path_buf();
        Self::start_inner(&dir, config, Some(driver))
    }

    fn start_inner(
        aeron_dir: &Path,
        config: AgentConfig,
        driver: Option<crate::driver::EmbeddedDriver>,
    ) -> Result<NodeAgent, RuntimeError> {
        let invoke = || {
            if let Some(driver) = &driver {
                driver.do_work();
            }
        };
        let members = config.replication_endpoints.len();
        let node_id = config.replica.node_id;
        if members == 0 || node_id as usize >= members || config.replica.members as usize != members
        {
            return Err(RuntimeError::Config(format!(
                "node_id {node_id} is not one of {members} members"
            )));
        }
        let aeron = connect(aeron_dir)?;
        let receiver = AeronReceiver::new_invoking(
            &aeron,
            &config.replication_endpoints[node_id as usize],
            REPLICATION_STREAM_ID,
            &invoke,
        )?;
        let sender = AeronSender::new_invoking(
            &aeron,
            node_id,
            &config.replication_endpoints,
            REPLICATION_STREAM_ID,
            &invoke,
        )?;
        let ingress = AeronReceiver::new_invoking(
            &aeron,
            &config.ingress_endpoint,
            INGRESS_STREAM_ID,
            &invoke,
        )?;
        let learners = crate::learner::LearnerServer::new(&config.journal.dir, node_id);
        let journal = Journal::open(config.journal)?;
        let log = JournalLog::new(journal).map_err(|e| NodeError::Replica(e.into()))?;
        let state =
            MatcherState::new(config.matcher).map_err(|e| RuntimeError::Config(e.to_string()))?;
        let started = Instant::now();
        let node = Node::new(config.replica, log, state, config.checkpoint_interval, 1)?;
        Ok(NodeAgent {
            aeron,
            receiver,
            sender,
            ingress,
            sessions: Sessions::new(),
            learners,
            node,
            started,
            responses: Vec::with_capacity(4096),
            ingress_malformed: 0,
            announced_term: 0,
            driver,
        })
    }

    fn now_ns(&self) -> u64 {
        // The leader's clock, recorded in the log: the only clock any matcher sees.
        crate::clock::unix_now_ns().max(self.started.elapsed().as_nanos() as u64)
    }

    /// One duty cycle; returns the work done (0 = idle).
    pub fn do_work(&mut self) -> Result<usize, RuntimeError> {
        let now_ns = self.now_ns();
        let NodeAgent {
            aeron,
            receiver,
            sender,
            ingress,
            sessions,
            learners,
            node,
            responses,
            ingress_malformed,
            driver,
            announced_term,
            ..
        } = self;
        let mut work = driver.as_ref().map_or(0, |d| d.do_work());
        work += receiver.poll(FRAGMENT_LIMIT)?;
        let mut failure = None;
        receiver.drain(|bytes| {
            if failure.is_none() {
                // Malformed messages are counted by the node and dropped.
                if let Err(e) = node.on_bytes(now_ns, bytes, sender) {
                    failure = Some(e);
                }
            }
        });
        if let Some(e) = failure.take() {
            return Err(e.into());
        }
        work += ingress.poll(FRAGMENT_LIMIT)?;
        let mut connects = Vec::new();
        let mut learns = Vec::new();
        ingress.drain(|bytes| {
            let mut submit = |client_id: u64, client_sequence: u64, command: &[u8]| {
                if failure.is_some() {
                    return;
                }
                let reject = |reason, sequence| Response {
                    kind: RESPONSE_REJECTED,
                    reason,
                    client_id,
                    client_sequence,
                    sequence,
                };
                match node.submit(now_ns, client_id, client_sequence, command, sender) {
                    Ok(Submitted::Sequenced { .. }) => {}
                    // Sequenced before: answer now if it is applied (on this node, whoever led
                    // then), else its own answer will come when it is applied here.
                    Ok(Submitted::Duplicate { .. }) => {
                        if client_sequence <= node.applier.client_applied(client_id) {
                            responses.push(Response {
                                kind: RESPONSE_COMMITTED,
                                reason: 0,
                                client_id,
                                client_sequence,
                                sequence: 0,
                            });
                        }
                    }
                    Ok(Submitted::OutOfOrder { expected }) => {
                        responses.push(reject(REASON_SEQUENCE_GAP, expected))
                    }
                    // The leader this node knows, plus one (0: none, an election is under way).
                    Ok(Submitted::NotLeader { leader }) => responses.push(reject(
                        REASON_NOT_LEADER,
                        leader.map_or(0, |l| l as u64 + 1),
                    )),
                    Ok(Submitted::TooManyClients) => responses.push(reject(REASON_CAPACITY, 0)),
                    Ok(Submitted::TooLarge) => responses.push(reject(REASON_TOO_LARGE, 0)),
                    Err(e) => failure = Some(e),
                }
            };
            match Ingress::decode(bytes) {
                Ok(Ingress::Connect {
                    client_id,
                    response_endpoint,
                }) => connects.push((client_id, response_endpoint.to_string())),
                Ok(Ingress::Learn {
                    learner_id,
                    from_sequence,
                    response_endpoint,
                }) => learns.push((learner_id, from_sequence, response_endpoint.to_string())),
                Ok(Ingress::Command {
                    client_id,
                    client_sequence,
                    command,
                }) => submit(client_id, client_sequence, command),
                Ok(batch @ Ingress::Commands { client_id, .. }) => {
                    for (client_sequence, command) in batch.entries() {
                        submit(client_id, client_sequence, command);
                    }
                }
                Err(_) => *ingress_malformed += 1,
            }
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        for (client_id, endpoint) in connects {
            let invoke = || {
                if let Some(driver) = driver.as_ref() {
                    driver.do_work();
                }
            };
            sessions.connect(aeron, client_id, &endpoint, &invoke)?;
            work += 1;
        }
        for (learner_id, from_sequence, endpoint) in learns {
            let invoke = || {
                if let Some(driver) = driver.as_ref() {
                    driver.do_work();
                }
            };
            learners.learn(aeron, learner_id, from_sequence, &endpoint, &invoke)?;
            work += 1;
        }
        let is_leader = node.replica.role() == crate::replica::Role::Leader;
        if let Some(leader) = node.replica.leader() {
            if node.replica.term() > *announced_term {
                // A leader of a new term (this node, or one it now follows): tell the clients,
                // so they move without waiting for a timeout. Every member announces, in case
                // the leader itself has not heard from a client since it restarted.
                *announced_term = node.replica.term();
                sessions.announce_leader(*announced_term, leader);
            }
        }
        work += node.duty_cycle(now_ns, sender, &mut |applied| {
            if is_leader {
                responses.push(Response {
                    kind: RESPONSE_COMMITTED,
                    reason: 0,
                    client_id: applied.client_id,
                    client_sequence: applied.client_sequence,
                    sequence: applied.sequence,
                });
            }
        })? as usize;
        for response in responses.drain(..) {
            sessions.respond(&response);
        }
        work += sessions.flush();
        work += learners.serve(
            now_ns,
            node.applier.applied_position(),
            node.applier.applied_sequence(),
        );
        Ok(work)
    }

    /// Runs duty cycles until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool, idle: IdleStrategy) -> Result<(), RuntimeError> {
        let mut idler = Idler::new(idle);
        while !stop.load(Ordering::Acquire) {
            let work = self.do_work()?;
            idler.idle(work);
        }
        Ok(())
    }
}

/// A node's state at a glance: for status lines and the summary printed when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub role: crate::replica::Role,
    /// The leader this node knows.
    pub leader: Option<NodeId>,
    pub term: u64,
    pub log_end: u64,
    pub last_sequence: u64,
    pub commit_position: u64,
    pub applied_position: u64,
    pub commands_applied: u64,
    pub checkpoints_verified: u64,
    pub state_hash: u64,
    pub event_digest: u64,
    pub trades: u64,
    pub responses_sent: u64,
    pub responses_dropped: u64,
    pub sends_back_pressured: u64,
    pub inbox_dropped: u64,
    pub elections_started: u64,
    pub leaderships: u64,
    pub step_downs: u64,
    pub truncations: u64,
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node={} role={} leader={} term={} sequence={} log_end={} commit={} applied={} commands={} \
             trades={} checkpoints_verified={} state_hash={:016x} event_digest={:016x} \
             responses={} responses_dropped={} back_pressured={} inbox_dropped={} \
             elections={} leaderships={} step_downs={} truncations={}",
            self.node_id,
            self.role,
            self.leader.map_or("-".to_string(), |l| l.to_string()),
            self.term,
            self.last_sequence,
            self.log_end,
            self.commit_position,
            self.applied_position,
            self.commands_applied,
            self.trades,
            self.checkpoints_verified,
            self.state_hash,
            self.event_digest,
            self.responses_sent,
            self.responses_dropped,
            self.sends_back_pressured,
            self.inbox_dropped,
            self.elections_started,
            self.leaderships,
            self.step_downs,
            self.truncations,
        )
    }
}

impl NodeAgent {
    /// This node's status.
    pub fn status(&self) -> NodeStatus {
        use crate::log::Log;
        let node = &self.node;
        NodeStatus {
            node_id: node.replica.config().node_id,
            role: node.replica.role(),
            leader: node.replica.leader(),
            term: node.replica.term(),
            log_end: node.log.end(),
            last_sequence: node.log.last_sequence(),
            commit_position: node.replica.commit_position(),
            applied_position: node.applier.applied_position(),
            commands_applied: node.applier.commands_applied(),
            checkpoints_verified: node.applier.checkpoints_verified(),
            state_hash: node.state.matcher.state_hash(),
            event_digest: node.state.sink.digest,
            trades: node.state.sink.trades,
            responses_sent: self.sessions.responses_sent,
            responses_dropped: self.sessions.responses_dropped,
            sends_back_pressured: self.sender.stats.back_pressured,
            inbox_dropped: self.receiver.dropped() + self.ingress.dropped(),
            elections_started: node.replica.stats().elections_started,
            leaderships: node.replica.stats().leaderships,
            step_downs: node.replica.stats().step_downs,
            truncations: node.replica.stats().truncations,
        }
    }

    /// Rewrites the counters file (`exchange stat`, `exchange top`) from this node's state.
    fn write_counters(&self, counters: &mut crate::counters::CountersWriter, probe: &CommitProbe) {
        use crate::counters::{Slot, TopOfBook, INSTRUMENTS_MAX, MEMBERS};
        use crate::log::Log;
        let status = self.status();
        let node = &self.node;
        let now_unix_ns = crate::clock::unix_now_ns();
        let members = node.replica.config().members as usize;
        let values = [
            (Slot::UpdatedUnixNs, now_unix_ns),
            (Slot::NodeId, u64::from(status.node_id)),
            (
                Slot::Role,
                match status.role {
                    crate::replica::Role::Leader => 2,
                    crate::replica::Role::Candidate => 1,
                    crate::replica::Role::Follower => 0,
                },
            ),
            (Slot::Leader, status.leader.map_or(u64::MAX, u64::from)),
            (Slot::Term, status.term),
            (Slot::LogEnd, status.log_end),
            (Slot::Durable, node.log.durable()),
            (Slot::LastSequence, status.last_sequence),
            (Slot::CommitPosition, status.commit_position),
            (Slot::AppliedPosition, status.applied_position),
            (Slot::CommandsApplied, status.commands_applied),
            (Slot::Trades, status.trades),
            (Slot::Accepted, node.state.sink.accepted),
            (Slot::Rejected, node.state.sink.rejected),
            (Slot::Events, node.state.sink.events),
            (Slot::CheckpointsVerified, status.checkpoints_verified),
            (Slot::StateHash, status.state_hash),
            (Slot::ResponsesSent, status.responses_sent),
            (Slot::ResponsesDropped, status.responses_dropped),
            (Slot::BackPressured, status.sends_back_pressured),
            (Slot::InboxDropped, status.inbox_dropped),
            (Slot::Elections, status.elections_started),
            (Slot::Leaderships, status.leaderships),
            (Slot::StepDowns, status.step_downs),
            (Slot::Truncations, status.truncations),
            (Slot::Members, members as u64),
            (Slot::CommitDelayP50, probe.last[0]),
            (Slot::CommitDelayP99, probe.last[1]),
            (Slot::CommitDelayP999, probe.last[2]),
            (Slot::CommitDelayMax, probe.last[3]),
            (Slot::CommitDelaySamples, probe.last[4]),
        ];
        for (slot, value) in values {
            counters.set(slot, value);
        }
        for id in 0..MEMBERS {
            let position = if id >= members {
                0
            } else if id == status.node_id as usize {
                node.log.durable()
            } else {
                node.replica.match_position(id as crate::protocol::NodeId)
            };
            counters.slots()[Slot::MatchPosition as usize + id] = position;
        }
        let matcher = &node.state.matcher;
        let mut count = 0;
        for instrument_id in 1..=matcher.config().instrument_capacity {
            if count == INSTRUMENTS_MAX {
                break;
            }
            let Some(instrument) = matcher.instrument(instrument_id) else {
                continue;
            };
            let side = |side| {
                matcher
                    .best(instrument_id, side)
                    .map(|level| (level.price, level.quantity))
            };
            counters.set_instrument(
                count,
                &TopOfBook {
                    instrument_id,
                    symbol: instrument.config.symbol,
                    price_exponent: instrument.config.price_exponent,
                    bid: side(matcher::Side::Buy),
                    ask: side(matcher::Side::Sell),
                },
            );
            count += 1;
        }
        counters.set(Slot::InstrumentCount, count as u64);
        counters.publish();
    }

    /// Stops cleanly: a last duty cycle, then the journal synced to disk.
    pub fn shutdown(&mut self) -> Result<NodeStatus, RuntimeError> {
        self.do_work()?;
        self.node.log.journal_mut().sync()?;
        Ok(self.status())
    }
}

/// Runs one node as a process does (`exchange node --config FILE`): embeds a media driver (its
/// own directory, removed at the end) that runs inside the node's own duty cycle (one thread per
/// node; see [`crate::driver::EmbeddedDriver::launch_invoked`]) unless the configuration names an
/// external driver or `aeron.driver_idle` asks for a driver thread of its own, pins the
/// agent thread if asked, runs duty cycles until `stop` is set, reports status every
/// `status_interval`, and stops cleanly (journal synced). Returns the final status.
pub fn run_node(
    checked: &crate::config::Checked,
    stop: &AtomicBool,
    on_status: &mut dyn FnMut(&NodeStatus),
) -> Result<NodeStatus, RuntimeError> {
    let node_id = checked.agent.replica.node_id;
    precise_sleeps();
    if let Some(cpu) = checked.cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            return Err(RuntimeError::Config(format!(
                "node.cpu: could not pin to CPU {cpu}"
            )));
        }
    }
    let dir = || crate::driver::unique_dir(&format!("node-{node_id}"));
    let driver_error = |e: crate::driver::DriverError| RuntimeError::Config(e.to_string());
    let mut agent = match (&checked.aeron_dir, checked.driver_thread) {
        (Some(aeron_dir), _) => NodeAgent::start(aeron_dir, checked.agent.clone())?,
        (None, false) => NodeAgent::start_invoking(
            crate::driver::EmbeddedDriver::launch_invoked(&dir()).map_err(driver_error)?,
            checked.agent.clone(),
        )?,
        (None, true) => {
            let driver = crate::driver::EmbeddedDriver::launch_with(&dir(), checked.driver_idle)
                .map_err(driver_error)?;
            let aeron_dir = driver.dir().to_path_buf();
            let mut agent = NodeAgent::start(&aeron_dir, checked.agent.clone())?;
            agent.driver = Some(driver);
            agent
        }
    };
    on_status(&agent.status());
    let mut counters = crate::counters::CountersWriter::create(
        &checked.agent.journal.dir,
        crate::clock::unix_now_ns(),
    )
    .map_err(|e| {
        RuntimeError::Config(format!(
            "creating the counters file in {}: {e}",
            checked.agent.journal.dir.display()
        ))
    })?;
    let mut probe = CommitProbe::new();
    let mut idler = Idler::new(checked.idle);
    let mut next_status = checked.status_interval.map(|i| Instant::now() + i);
    let mut next_counters = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let work = agent.do_work()?;
        idler.idle(work);
        probe.check(agent.node.replica.commit_position());
        if let (Some(at), Some(interval)) = (next_status, checked.status_interval) {
            if Instant::now() >= at {
                on_status(&agent.status());
                next_status = Some(at + interval);
            }
        }
        if Instant::now() >= next_counters {
            next_counters = Instant::now() + crate::counters::UPDATE_INTERVAL;
            probe.sample(&agent);
            agent.write_counters(&mut counters, &probe);
        }
    }
    let status = agent.shutdown()?;
    agent.write_counters(&mut counters, &probe);
    drop(agent);
    Ok(status)
}

/// The leader's commit delay, sampled: every counters update, if records beyond the commit
/// position exist, the time until the commit passes their end. Percentiles over windows of
/// [`CommitProbe::WINDOW`].
struct CommitProbe {
    pending: Option<(u64, Instant)>,
    histogram: hdrhistogram::Histogram<u64>,
    window_start: Instant,
    /// p50, p99, p99.9, max, samples of the last full window.
    last: [u64; 5],
}

impl CommitProbe {
    const WINDOW: Duration = Duration::from_secs(5);

    fn new() -> CommitProbe {
        CommitProbe {
            pending: None,
            histogram: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("valid bounds"),
            window_start: Instant::now(),
            last: [0; 5],
        }
    }

    #[inline]
    fn check(&mut self, commit_position: u64) {
        if let Some((position, at)) = self.pending {
            if commit_position >= position {
                self.histogram
                    .saturating_record(at.elapsed().as_nanos().max(1) as u64);
                self.pending = None;
            }
        }
    }

    fn sample(&mut self, agent: &NodeAgent) {
        use crate::log::Log;
        let replica = &agent.node.replica;
        if self.pending.is_none()
            && replica.role() == crate::replica::Role::Leader
            && agent.node.log.end() > replica.commit_position()
        {
            self.pending = Some((agent.node.log.end(), Instant::now()));
        }
        if self.window_start.elapsed() >= Self::WINDOW {
            let h = &self.histogram;
            self.last = [
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
                h.len(),
            ];
            self.histogram.reset();
            self.window_start = Instant::now();
        }
    }
}

/// Asks the kernel for 1 µs timer slack on this thread (the default is 50 µs), so the short sleeps
/// of the backoff idle strategy end when asked: a node that dozes off between messages wakes in
/// time for the next.
pub fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong);
    }
}
