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
    REASON_TOO_LARGE, RESPONSE_COMMITTED, RESPONSE_REJECTED,
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
    pub node_id: NodeId,
    /// Replication endpoint (`host:port`) of every member, by node id.
    pub replication_endpoints: Vec<String>,
    /// Client ingress endpoint of this node (the leader listens on it).
    pub ingress_endpoint: String,
    pub journal: JournalConfig,
    pub checkpoint_interval: u64,
}

/// One node's runtime.
pub struct NodeAgent {
    aeron: Aeron,
    receiver: AeronReceiver,
    sender: AeronSender,
    ingress: AeronReceiver,
    sessions: Sessions,
    pub node: Node<JournalLog, MatcherState>,
    started: Instant,
    responses: Vec<Response>,
    pub ingress_malformed: u64,
}

impl NodeAgent {
    /// Connects to the media driver in `aeron_dir`, opens the journal and starts the node.
    pub fn start(aeron_dir: &Path, config: AgentConfig) -> Result<NodeAgent, RuntimeError> {
        let members = config.replication_endpoints.len();
        if members == 0 || config.node_id as usize >= members {
            return Err(RuntimeError::Config(format!(
                "node_id {} is not one of {members} members",
                config.node_id
            )));
        }
        let aeron = connect(aeron_dir)?;
        let receiver = AeronReceiver::new(
            &aeron,
            &config.replication_endpoints[config.node_id as usize],
            REPLICATION_STREAM_ID,
        )?;
        let sender = AeronSender::new(
            &aeron,
            config.node_id,
            &config.replication_endpoints,
            REPLICATION_STREAM_ID,
        )?;
        let ingress = AeronReceiver::new(&aeron, &config.ingress_endpoint, INGRESS_STREAM_ID)?;
        let journal = Journal::open(config.journal)?;
        let log = JournalLog::new(journal).map_err(|e| NodeError::Replica(e.into()))?;
        let state = MatcherState::new(crate::workload::matcher_config())
            .map_err(|e| RuntimeError::Config(e.to_string()))?;
        let started = Instant::now();
        let node = Node::new(
            ReplicaConfig::new(config.node_id, members as u8, 0),
            log,
            state,
            config.checkpoint_interval,
            1,
        )?;
        Ok(NodeAgent {
            aeron,
            receiver,
            sender,
            ingress,
            sessions: Sessions::new(),
            node,
            started,
            responses: Vec::with_capacity(4096),
            ingress_malformed: 0,
        })
    }

    fn now_ns(&self) -> u64 {
        // The leader's clock, recorded in the log: the only clock any matcher sees.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            .max(self.started.elapsed().as_nanos() as u64)
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
            node,
            responses,
            ingress_malformed,
            ..
        } = self;
        let mut work = receiver.poll(FRAGMENT_LIMIT)?;
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
        ingress.drain(|bytes| match Ingress::decode(bytes) {
            Ok(Ingress::Connect {
                client_id,
                response_endpoint,
            }) => connects.push((client_id, response_endpoint.to_string())),
            Ok(Ingress::Command {
                client_id,
                client_sequence,
                command,
            }) => {
                let reject = |reason| Response {
                    kind: RESPONSE_REJECTED,
                    reason,
                    client_id,
                    client_sequence,
                    sequence: 0,
                };
                match node.submit(now_ns, client_id, client_sequence, command, sender) {
                    Ok(Submitted::Sequenced { .. }) => {}
                    // Sequenced before: answer now if it is applied, else its own answer will come.
                    Ok(Submitted::Duplicate { .. }) => {
                        if client_sequence <= sessions.applied(client_id) {
                            responses.push(Response {
                                kind: RESPONSE_COMMITTED,
                                reason: 0,
                                client_id,
                                client_sequence,
                                sequence: 0,
                            });
                        }
                    }
                    Ok(Submitted::NotLeader { .. }) => responses.push(reject(REASON_NOT_LEADER)),
                    Ok(Submitted::TooManyClients) => responses.push(reject(REASON_CAPACITY)),
                    Ok(Submitted::TooLarge) => responses.push(reject(REASON_TOO_LARGE)),
                    Err(e) => failure = Some(e),
                }
            }
            Err(_) => *ingress_malformed += 1,
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        for (client_id, endpoint) in connects {
            sessions.connect(aeron, client_id, &endpoint)?;
            work += 1;
        }
        let is_leader = node.replica.role() == crate::replica::Role::Leader;
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
