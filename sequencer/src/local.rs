//! A cluster of nodes in one process, over real journals, with an in-memory transport: the demo's
//! cluster today, and the reference the Aeron runtime is tested against.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use journal::{Journal, JournalConfig, Reader};

use crate::apply::Applied;
use crate::log::{JournalLog, Log};
use crate::node::{MatcherState, Node, NodeError};
use crate::protocol::{Message, NodeId};
use crate::replica::{Effects, ReplicaConfig, Submitted};

/// Most messages waiting for one node before the transport refuses more (a bound, not a goal).
pub const INBOX_MAX: usize = 1 << 16;

/// Errors of the local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("journal of node {node}: {source}")]
    Journal {
        node: NodeId,
        source: journal::JournalError,
    },
    #[error("node {node}: {source}")]
    Node { node: NodeId, source: NodeError },
    #[error("inbox of node {0} is full ({INBOX_MAX} messages)")]
    InboxFull(NodeId),
    #[error("matcher configuration: {0}")]
    Matcher(String),
    #[error("no leader elected within {0} steps")]
    NoLeader(usize),
}

/// Shortest election timeout of an in-process cluster (see `open_node`).
pub const LOCAL_ELECTION_TIMEOUT_MIN_NS: u64 = 2_000_000_000;

/// Most duty-cycle rounds [`LocalCluster::open`] waits for the first election.
pub const ELECTION_STEPS_MAX: usize = 100;

struct Inboxes {
    queues: Vec<VecDeque<Vec<u8>>>,
    overflow: Option<NodeId>,
}

struct Routed<'a> {
    inboxes: &'a mut Inboxes,
}

impl Effects for Routed<'_> {
    fn send(&mut self, to: NodeId, message: &Message<'_>) -> bool {
        let queue = &mut self.inboxes.queues[to as usize];
        if queue.len() >= INBOX_MAX {
            self.inboxes.overflow = Some(to);
            return false;
        }
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        queue.push_back(bytes);
        true
    }
    fn committed(&mut self, _position: u64) {}
}

/// Opens node `id`'s journal in `dir` and starts the node over it (replaying nothing yet: the
/// applier starts at position 0 and replays the journal into a fresh matcher as it runs).
fn open_node(
    dir: &Path,
    id: NodeId,
    members: u8,
    segment_size: u64,
    checkpoint_interval: u64,
    now_ns: u64,
) -> Result<Node<JournalLog, MatcherState>, LocalError> {
    let mut config = JournalConfig::new(dir);
    config.segment_size = segment_size;
    let journal =
        Journal::open(config).map_err(|source| LocalError::Journal { node: id, source })?;
    let log = JournalLog::new(journal).map_err(|e| LocalError::Node {
        node: id,
        source: NodeError::Replica(e.into()),
    })?;
    let state = MatcherState::new(crate::workload::matcher_config())
        .map_err(|e| LocalError::Matcher(e.to_string()))?;
    // All nodes share the caller's thread: a pause of that thread stalls every node alike, and a
    // leader would judge its quorum lost before its followers could answer. Elections here wait
    // seconds, not milliseconds.
    let mut replica = ReplicaConfig::new(id, members, 0);
    replica.election_timeout_min_ns = LOCAL_ELECTION_TIMEOUT_MIN_NS;
    replica.election_timeout_max_ns = 2 * LOCAL_ELECTION_TIMEOUT_MIN_NS;
    Node::new(replica, log, state, checkpoint_interval, now_ns)
        .map_err(|source| LocalError::Node { node: id, source })
}

/// N nodes in this process; node 0 is elected first (it is the preferred leader).
pub struct LocalCluster {
    pub nodes: Vec<Node<JournalLog, MatcherState>>,
    inboxes: Inboxes,
    dirs: Vec<PathBuf>,
}

impl LocalCluster {
    /// Opens (or reopens) `members` nodes with journals in `base/node-N`.
    pub fn open(
        base: &Path,
        members: u8,
        segment_size: u64,
        checkpoint_interval: u64,
        now_ns: u64,
    ) -> Result<Self, LocalError> {
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for id in 0..members {
            let dir = base.join(format!("node-{id}"));
            let node = open_node(&dir, id, members, segment_size, checkpoint_interval, now_ns)?;
            nodes.push(node);
            dirs.push(dir);
        }
        let inboxes = Inboxes {
            queues: (0..members).map(|_| VecDeque::new()).collect(),
            overflow: None,
        };
        let mut cluster = LocalCluster {
            nodes,
            inboxes,
            dirs,
        };
        // The preferred leader asks for votes at once; a few rounds of messages elect it.
        for _ in 0..ELECTION_STEPS_MAX {
            if cluster.leader().is_some() {
                return Ok(cluster);
            }
            cluster.step(now_ns, &mut |_, _| {})?;
        }
        Err(LocalError::NoLeader(ELECTION_STEPS_MAX))
    }

    /// The node that leads now, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.replica.role() == crate::replica::Role::Leader)
            .map(|id| id as NodeId)
    }

    /// Stops node `id` and starts it again from its journal (it replays its log into a fresh
    /// matcher, then catches up with the leader). With `wipe`, its journal is deleted first: it
    /// starts empty and catches up from the leader's journal.
    pub fn restart_node(
        &mut self,
        id: NodeId,
        wipe: bool,
        segment_size: u64,
        checkpoint_interval: u64,
        now_ns: u64,
    ) -> Result<(), LocalError> {
        let members = self.nodes.len() as u8;
        let dir = self.dirs[id as usize].clone();
        // Drop the old node first (it holds the journal's writer lock): stand a node over a scratch
        // journal in its place meanwhile.
        let scratch = dir.with_extension("restarting");
        let placeholder = open_node(
            &scratch,
            id,
            members,
            segment_size,
            checkpoint_interval,
            now_ns,
        )?;
        drop(std::mem::replace(&mut self.nodes[id as usize], placeholder));
        self.inboxes.queues[id as usize].clear();
        if wipe {
            std::fs::remove_dir_all(&dir).map_err(|e| LocalError::Journal {
                node: id,
                source: journal::JournalError::io(&dir, e),
            })?;
        }
        let node = open_node(&dir, id, members, segment_size, checkpoint_interval, now_ns)?;
        drop(std::mem::replace(&mut self.nodes[id as usize], node));
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(())
    }

    /// The journal directory of each node.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Submits a client command to the leader (to node 0 while there is none: it answers
    /// NotLeader).
    pub fn submit(
        &mut self,
        now_ns: u64,
        client_id: u64,
        client_sequence: u64,
        command: &[u8],
    ) -> Result<Submitted, LocalError> {
        let leader = self.leader().unwrap_or(0);
        let mut effects = Routed {
            inboxes: &mut self.inboxes,
        };
        self.nodes[leader as usize]
            .submit(now_ns, client_id, client_sequence, command, &mut effects)
            .map_err(|source| LocalError::Node {
                node: leader,
                source,
            })
    }

    /// One duty cycle of every node: deliver what waits in its inbox, apply, flush. Returns how
    /// much happened (messages handled + commands applied); `on_applied(node, applied)` reports each
    /// applied command.
    pub fn step(
        &mut self,
        now_ns: u64,
        on_applied: &mut dyn FnMut(NodeId, Applied),
    ) -> Result<u64, LocalError> {
        let mut work = 0;
        for id in 0..self.nodes.len() {
            let node = &mut self.nodes[id];
            let node_id = id as NodeId;
            while let Some(bytes) = self.inboxes.queues[id].pop_front() {
                let mut effects = Routed {
                    inboxes: &mut self.inboxes,
                };
                // Malformed messages are counted by the node and dropped.
                let _ = node
                    .on_bytes(now_ns, &bytes, &mut effects)
                    .map_err(|source| LocalError::Node {
                        node: node_id,
                        source,
                    })?;
                work += 1;
            }
            let mut effects = Routed {
                inboxes: &mut self.inboxes,
            };
            work += node
                .duty_cycle(now_ns, &mut effects, &mut |applied| {
                    on_applied(node_id, applied)
                })
                .map_err(|source| LocalError::Node {
                    node: node_id,
                    source,
                })?;
        }
        if let Some(node) = self.inboxes.overflow.take() {
            return Err(LocalError::InboxFull(node));
        }
        Ok(work)
    }

    /// Whether every node has applied everything the leader holds.
    pub fn settled(&self) -> bool {
        let end = self.nodes[self.leader().unwrap_or(0) as usize].log.end();
        self.nodes
            .iter()
            .all(|n| n.applier.applied_position() == end)
    }

    /// Compares every node's journal with the leader's, record by record; the first difference.
    pub fn compare_journals(&self) -> Result<Option<String>, journal::JournalError> {
        compare_journals(&self.dirs)
    }
}

/// Compares journals record by record (position and frame bytes) against the first; describes
/// the first difference, or None when they are identical.
pub fn compare_journals(dirs: &[PathBuf]) -> Result<Option<String>, journal::JournalError> {
    let mut leader = Reader::open(&dirs[0])?;
    let mut others: Vec<Reader> = dirs[1..]
        .iter()
        .map(|d| Reader::open(d))
        .collect::<Result<_, _>>()?;
    loop {
        let theirs = leader
            .next_record()?
            .map(|r| (r.position, r.frame.to_vec()));
        for (i, reader) in others.iter_mut().enumerate() {
            let ours = reader
                .next_record()?
                .map(|r| (r.position, r.frame.to_vec()));
            if ours != theirs {
                let at = theirs
                    .as_ref()
                    .map(|t| t.0)
                    .or(ours.as_ref().map(|o| o.0))
                    .unwrap_or(0);
                return Ok(Some(format!(
                    "node {} differs from node 0 at position {at}",
                    i + 1
                )));
            }
        }
        if theirs.is_none() {
            return Ok(None);
        }
    }
}
