//! A deterministic simulator of a cluster: N replicas (the real [`Replica`] core) over in-memory
//! logs, a simulated network (delay, loss, reordering, duplication) and clients that resend after
//! timeouts, all driven by one seeded random generator and a simulated clock. After every event it
//! checks the invariants:
//! - the commit position of a node never goes backwards;
//! - committed prefixes are identical on all nodes (byte for byte);
//! - state hashes agree at every checkpoint (the replicas' own online check);
//! - at the end: every acknowledged command is in the committed log exactly once, no command is
//!   there twice, every client finished (liveness), and all state hashes are equal.
//!
//! A failing seed is replayed exactly by running it again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::apply::{Applied, StateMachine};
use crate::log::{frame_header, frame_payload, Log, MemLog};
use crate::node::Node;
use crate::protocol::{split_client_command, Message, NodeId, RECORD_CLIENT_COMMAND};
use crate::replica::{Effects, ReplicaConfig, Submitted};

/// A small, fast, seeded generator (splitmix64): the simulator's only source of randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `per_million / 1e6`.
    pub fn chance(&mut self, per_million: u32) -> bool {
        self.below(1_000_000) < per_million as u64
    }
    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }
}

/// What to simulate. Everything else follows from the seed.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: u8,
    pub clients: u32,
    pub commands_per_client: u64,
    pub loss_per_million: u32,
    /// Sends the transport refuses (back-pressure).
    pub refuse_per_million: u32,
    pub duplicate_per_million: u32,
    pub delay_ns_min: u64,
    pub delay_ns_max: u64,
    pub checkpoint_interval: u64,
    /// Simulated time after which an unfinished run is a liveness failure.
    pub time_limit_ns: u64,
}

impl SimConfig {
    /// A configuration drawn from the seed: 1, 3 or 5 nodes, a lossy, reordering, duplicating network.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
        let nodes = [1u8, 3, 3, 3, 5][rng.below(5) as usize];
        let delay_ns_min = rng.between(10_000, 200_000);
        SimConfig {
            seed,
            nodes,
            clients: rng.between(1, 4) as u32,
            commands_per_client: rng.between(20, 120),
            loss_per_million: [0, 10_000, 50_000, 150_000][rng.below(4) as usize] as u32,
            duplicate_per_million: [0, 10_000, 50_000][rng.below(3) as usize] as u32,
            delay_ns_min,
            delay_ns_max: delay_ns_min + rng.between(0, 5_000_000),
            checkpoint_interval: rng.between(1, 16),
            time_limit_ns: 120_000_000_000,
            refuse_per_million: [0, 0, 20_000, 200_000][rng.below(4) as usize] as u32,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    pub events: u64,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub commands_acknowledged: u64,
    pub committed_position: u64,
    pub checkpoints_verified: u64,
    pub simulated_ns: u64,
}

/// A broken invariant, with what is needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub seed: u64,
    pub event: u64,
    pub time_ns: u64,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} violated an invariant at event {} (t = {} ns): {}\nreplay: exchange simulate --seed {}",
            self.seed, self.event, self.time_ns, self.what, self.seed
        )
    }
}

/// The state machine of the simulation: a hash chain over every applied command.
#[derive(Debug, Clone, Default)]
pub struct HashChain {
    hash: u64,
}

impl StateMachine for HashChain {
    fn apply(
        &mut self,
        sequence: u64,
        timestamp_ns: u64,
        client_id: u64,
        client_sequence: u64,
        command: &[u8],
    ) {
        let mut h = self.hash ^ 0xCBF2_9CE4_8422_2325;
        for value in [sequence, timestamp_ns, client_id, client_sequence] {
            for byte in value.to_le_bytes() {
                h = (h ^ byte as u64).wrapping_mul(0x0000_0100_0000_01B3);
            }
        }
        for &byte in command {
            h = (h ^ byte as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.hash = h;
    }
    fn state_hash(&self) -> u64 {
        self.hash
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Tick { node: NodeId },
    Deliver { to: NodeId, bytes: Vec<u8> },
    ClientSend { client: u32 },
    ClientTimeout { client: u32, client_sequence: u64 },
    Ingress { client: u32, client_sequence: u64 },
    Response { client: u32, client_sequence: u64 },
}

struct SimNode {
    node: Node<MemLog, HashChain>,
    commit_seen: u64,
    commit_checked: u64,
}

/// Messages a duty cycle sent; refuses some, as a back-pressured transport would.
struct Outbox {
    messages: Vec<(NodeId, Vec<u8>)>,
    refuse_per_million: u32,
    rng: Rng,
}

impl Effects for Outbox {
    fn send(&mut self, to: NodeId, message: &Message<'_>) -> bool {
        if self.rng.chance(self.refuse_per_million) {
            return false;
        }
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        self.messages.push((to, bytes));
        true
    }
    fn committed(&mut self, _position: u64) {}
}

struct Client {
    next_sequence: u64,
    done: bool,
}

const TICK_NS: u64 = 1_000_000;
const CLIENT_RESEND_NS: u64 = 50_000_000;
const LEADER: NodeId = 0;

struct Sim {
    config: SimConfig,
    rng: Rng,
    now_ns: u64,
    order: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    /// The committed history every node's committed prefix must equal.
    history: Vec<u8>,
    acknowledged: Vec<(u32, u64)>,
    /// Highest client sequence the leader has applied, per client (answers resends).
    applied_by_leader: BTreeMap<u32, u64>,
    report: SimReport,
}

fn command_bytes(client: u32, client_sequence: u64) -> Vec<u8> {
    // A recognisable command: 8..40 bytes derived from its identity.
    let len = 8 + (client as u64 * 7 + client_sequence * 13) % 33;
    (0..len)
        .map(|i| (client as u64 * 31 + client_sequence * 17 + i) as u8)
        .collect()
}

impl Sim {
    fn new(config: SimConfig) -> Result<Sim, String> {
        let mut nodes = Vec::new();
        for id in 0..config.nodes {
            let mut replica_config = ReplicaConfig::new(id, config.nodes, LEADER);
            replica_config.heartbeat_interval_ns = 10_000_000;
            replica_config.resend_timeout_ns = 30_000_000;
            replica_config.window_bytes = 64 * 1024;
            let mut node = Node::new(
                replica_config,
                MemLog::new(),
                HashChain::default(),
                config.checkpoint_interval,
                0,
            )
            .map_err(|e| e.to_string())?;
            node.log.sync();
            nodes.push(SimNode {
                node,
                commit_seen: 0,
                commit_checked: 0,
            });
        }
        let clients = (0..config.clients)
            .map(|_| Client {
                next_sequence: 1,
                done: false,
            })
            .collect();
        let rng = Rng::new(config.seed);
        Ok(Sim {
            config,
            rng,
            now_ns: 0,
            order: 0,
            queue: BinaryHeap::new(),
            nodes,
            clients,
            history: Vec::new(),
            acknowledged: Vec::new(),
            applied_by_leader: BTreeMap::new(),
            report: SimReport::default(),
        })
    }

    fn schedule(&mut self, at_ns: u64, event: Event) {
        self.order += 1;
        self.queue.push(Reverse((at_ns, self.order, event)));
    }

    /// Puts an event on the simulated network: maybe lost, maybe duplicated, always delayed.
    fn network(&mut self, event: Event) {
        if self.rng.chance(self.config.loss_per_million) {
            self.report.messages_dropped += 1;
            return;
        }
        let copies = if self.rng.chance(self.config.duplicate_per_million) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self
                .rng
                .between(self.config.delay_ns_min, self.config.delay_ns_max);
            self.schedule(self.now_ns + delay, event.clone());
        }
        self.report.messages_sent += 1;
    }

    fn violation(&self, what: String) -> Violation {
        Violation {
            seed: self.config.seed,
            event: self.report.events,
            time_ns: self.now_ns,
            what,
        }
    }

    fn run(mut self) -> Result<SimReport, Violation> {
        for node in 0..self.config.nodes {
            self.schedule(TICK_NS, Event::Tick { node });
        }
        for client in 0..self.config.clients {
            let at = self.rng.between(0, 5_000_000);
            self.schedule(at, Event::ClientSend { client });
        }
        while let Some(Reverse((at, _, event))) = self.queue.pop() {
            self.now_ns = at;
            self.report.events += 1;
            if self.now_ns > self.config.time_limit_ns {
                return Err(self.violation(
                    "no progress: time limit reached before every client finished".into(),
                ));
            }
            self.step(event)?;
            if self.clients.iter().all(|c| c.done) && self.quiescent() {
                break;
            }
        }
        self.finish()
    }

    /// Every node has applied everything the leader committed, which is everything it holds.
    fn quiescent(&self) -> bool {
        let leader = &self.nodes[LEADER as usize];
        let end = leader.node.log.end();
        leader.node.replica.commit_position() == end
            && self
                .nodes
                .iter()
                .all(|n| n.node.applier.applied_position() == end)
    }

    fn step(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Tick { node } => {
                self.schedule(self.now_ns + TICK_NS, Event::Tick { node });
                self.drive(node, None)?;
            }
            Event::Deliver { to, bytes } => self.drive(to, Some(bytes))?,
            Event::ClientSend { client } => {
                let c = &self.clients[client as usize];
                if c.done {
                    return Ok(());
                }
                let client_sequence = c.next_sequence;
                self.network(Event::Ingress {
                    client,
                    client_sequence,
                });
                self.schedule(
                    self.now_ns + CLIENT_RESEND_NS,
                    Event::ClientTimeout {
                        client,
                        client_sequence,
                    },
                );
            }
            Event::ClientTimeout {
                client,
                client_sequence,
            } => {
                let c = &self.clients[client as usize];
                if !c.done && c.next_sequence == client_sequence {
                    self.schedule(self.now_ns, Event::ClientSend { client });
                }
            }
            Event::Ingress {
                client,
                client_sequence,
            } => {
                let command = command_bytes(client, client_sequence);
                let now = self.now_ns;
                let mut outbox = self.outbox();
                let node = &mut self.nodes[LEADER as usize];
                let result =
                    node.node
                        .submit(now, client as u64, client_sequence, &command, &mut outbox);
                match result {
                    Ok(Submitted::Sequenced { .. }) => {}
                    // Already sequenced: answer only once it is applied (committed), so that an
                    // answer always means "in the committed log".
                    Ok(Submitted::Duplicate { .. }) => {
                        if self.applied_by_leader.get(&client).copied().unwrap_or(0)
                            >= client_sequence
                        {
                            self.network(Event::Response {
                                client,
                                client_sequence,
                            });
                        }
                    }
                    // A resend overtaken by nothing: clients here have one command outstanding,
                    // so a gap cannot happen; if it did, the client's timeout resends.
                    Ok(Submitted::OutOfOrder { .. }) => {
                        return Err(
                            self.violation("a client's commands arrived out of order".into())
                        )
                    }
                    Ok(other) => {
                        return Err(self.violation(format!("leader refused a command: {other:?}")))
                    }
                    Err(e) => return Err(self.violation(format!("leader failed: {e}"))),
                }
                self.deliver_outbox(outbox);
                self.drive(LEADER, None)?;
            }
            Event::Response {
                client,
                client_sequence,
            } => {
                let c = &mut self.clients[client as usize];
                if c.next_sequence == client_sequence && !c.done {
                    self.acknowledged.push((client, client_sequence));
                    self.report.commands_acknowledged += 1;
                    c.next_sequence += 1;
                    if c.next_sequence > self.config.commands_per_client {
                        c.done = true;
                    } else {
                        self.schedule(self.now_ns, Event::ClientSend { client });
                    }
                }
            }
        }
        Ok(())
    }

    fn outbox(&mut self) -> Outbox {
        Outbox {
            messages: Vec::new(),
            refuse_per_million: self.config.refuse_per_million,
            rng: Rng::new(self.rng.next_u64()),
        }
    }

    fn deliver_outbox(&mut self, outbox: Outbox) {
        for (to, bytes) in outbox.messages {
            self.network(Event::Deliver { to, bytes });
        }
    }

    /// One duty cycle of a node: handle the message (if any), apply what is committed, append a
    /// checkpoint (leader), flush, then check invariants.
    fn drive(&mut self, id: NodeId, bytes: Option<Vec<u8>>) -> Result<(), Violation> {
        let now = self.now_ns;
        let mut outbox = self.outbox();
        let mut responses = Vec::new();
        let result: Result<(), String> = (|| {
            let node = &mut self.nodes[id as usize].node;
            if let Some(bytes) = &bytes {
                if let Err(e) = node
                    .on_bytes(now, bytes, &mut outbox)
                    .map_err(|e| e.to_string())?
                {
                    return Err(format!("undecodable message: {e}"));
                }
            }
            node.log.sync();
            let is_leader = id == LEADER;
            node.duty_cycle(now, &mut outbox, &mut |applied: Applied| {
                if is_leader {
                    responses.push((applied.client_id as u32, applied.client_sequence));
                }
            })
            .map_err(|e| e.to_string())?;
            node.log.sync();
            Ok(())
        })();
        if let Err(what) = result {
            return Err(self.violation(format!("node {id}: {what}")));
        }
        self.deliver_outbox(outbox);
        for (client, client_sequence) in responses {
            let applied = self.applied_by_leader.entry(client).or_insert(0);
            *applied = (*applied).max(client_sequence);
            self.network(Event::Response {
                client,
                client_sequence,
            });
        }
        self.check_node(id)
    }

    fn check_node(&mut self, id: NodeId) -> Result<(), Violation> {
        let node = &self.nodes[id as usize];
        let commit = node.node.replica.commit_position();
        if commit < node.commit_seen {
            return Err(self.violation(format!(
                "node {id}: commit position went back from {} to {commit}",
                node.commit_seen
            )));
        }
        if commit > node.node.log.end() {
            return Err(self.violation(format!(
                "node {id}: commit position {commit} beyond its log end {}",
                node.node.log.end()
            )));
        }
        let from = node.commit_checked as usize;
        let to = commit as usize;
        let bytes = &node.node.log.bytes()[from..to];
        let overlap = self.history.len().min(to);
        if from < overlap && bytes[..overlap - from] != self.history[from..overlap] {
            return Err(self.violation(format!(
                "node {id}: committed bytes {from}..{overlap} differ from another node's"
            )));
        }
        if to > self.history.len() {
            let extra = node.node.log.bytes()[self.history.len()..to].to_vec();
            self.history.extend_from_slice(&extra);
        }
        let node = &mut self.nodes[id as usize];
        node.commit_seen = commit;
        node.commit_checked = commit;
        Ok(())
    }

    fn finish(mut self) -> Result<SimReport, Violation> {
        if !self.clients.iter().all(|c| c.done) {
            return Err(self.violation(
                "no progress: the event queue ran dry before every client finished".into(),
            ));
        }
        // Every command in the committed history at most once; every acknowledged one exactly once.
        let mut counts: BTreeMap<(u64, u64), u32> = BTreeMap::new();
        let mut history = MemLog::new();
        let mut rest = &self.history[..];
        while let Some((frame, aligned)) = crate::protocol::next_frame(rest) {
            history
                .append_frame(frame)
                .map_err(|e| self.violation(format!("committed history unreadable: {e}")))?;
            if frame_header(frame).record_type.get() == RECORD_CLIENT_COMMAND {
                if let Some((client, sequence, command)) =
                    split_client_command(frame_payload(frame))
                {
                    if command != command_bytes(client as u32, sequence) {
                        return Err(self.violation(format!(
                            "command of client {client} sequence {sequence} altered"
                        )));
                    }
                    *counts.entry((client, sequence)).or_insert(0) += 1;
                }
            }
            rest = &rest[aligned..];
        }
        if let Some(((client, sequence), count)) = counts.iter().find(|(_, &count)| count > 1) {
            return Err(self.violation(format!(
                "client {client} sequence {sequence} committed {count} times"
            )));
        }
        for &(client, sequence) in &self.acknowledged {
            if counts.get(&(client as u64, sequence)) != Some(&1) {
                return Err(self.violation(format!(
                    "acknowledged client {client} sequence {sequence} not in the committed log"
                )));
            }
        }
        let hashes: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.node.state.state_hash())
            .collect();
        if hashes.iter().any(|&h| h != hashes[0]) {
            return Err(self.violation(format!("state hashes differ at the end: {hashes:x?}")));
        }
        self.report.committed_position = self.nodes[LEADER as usize].node.replica.commit_position();
        self.report.checkpoints_verified = self
            .nodes
            .iter()
            .map(|n| n.node.applier.checkpoints_verified())
            .sum();
        self.report.simulated_ns = self.now_ns;
        Ok(self.report)
    }
}

/// Runs one seeded simulation.
pub fn run(config: SimConfig) -> Result<SimReport, Violation> {
    let seed = config.seed;
    let sim = Sim::new(config).map_err(|what| Violation {
        seed,
        event: 0,
        time_ns: 0,
        what,
    })?;
    sim.run()
}

/// Runs `count` seeds from `start`; stops at the first violation.
pub fn run_seeds(start: u64, count: u64) -> Result<Vec<SimReport>, Violation> {
    (start..start + count)
        .map(|seed| run(SimConfig::from_seed(seed)))
        .collect()
}
