//! A deterministic simulator of a cluster: N nodes (the real [`Node`]: replication core, applier)
//! over in-memory logs, a simulated network and clients, all driven by one seeded random generator
//! and a simulated clock. Faults, drawn from the seed during a fault window and healed after it:
//! - the network loses, duplicates, delays and reorders messages, and refuses sends (back-pressure);
//! - nodes crash (losing what their log had not made durable) and restart from their log;
//! - partitions: one node cut off from the others both ways, or one direction of one link;
//! - delay spikes on a link; every node's clock runs at its own rate (drift) from its own offset.
//!
//! Clients send one command at a time to the node they believe leads, follow "not leader" hints,
//! move on to another node after a timeout, and resend until answered. After every event the
//! simulator checks:
//! - at most one leader per term, ever;
//! - a node's commit position never goes backwards while it runs;
//! - committed prefixes are identical on all nodes (byte for byte) and equal the one committed
//!   history (which a restarted node must rebuild the same way);
//! - state hashes agree at every checkpoint (the replicas' own online check);
//! - at the end: every acknowledged command is in the committed log exactly once, no command is
//!   there twice, every client finished after the faults healed (liveness), and all nodes hold the
//!   same log and the same state hash.
//!
//! A failing seed is replayed exactly by running it again: `exchange simulate --seed N`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::apply::{Applied, StateMachine};
use crate::log::{frame_header, frame_payload, Log, MemLog};
use crate::node::Node;
use crate::protocol::{split_client_command, Message, NodeId, RECORD_CLIENT_COMMAND};
use crate::replica::{Effects, ReplicaConfig, Role, Submitted};

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
    /// Faults (crashes, partitions, delay spikes) start within this window and heal by its end.
    pub fault_window_ns: u64,
    /// Mean time between faults inside the window (0: no faults).
    pub fault_interval_ns: u64,
    /// Each node's clock runs at 1 ± up to this many parts per million of real time.
    pub clock_drift_ppm_max: u64,
    /// Chance that a node makes its log durable after a duty cycle (what a crash keeps).
    pub sync_per_million: u32,
    /// Simulated time after which an unfinished run is a liveness failure.
    pub time_limit_ns: u64,
}

impl SimConfig {
    /// A configuration drawn from the seed: 1, 3 or 5 nodes, a lossy, reordering, duplicating
    /// network, and (for most seeds) crashes, partitions, delay spikes and clock drift.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
        let nodes = [1u8, 3, 3, 3, 5][rng.below(5) as usize];
        let delay_ns_min = rng.between(10_000, 200_000);
        let faults = rng.below(4) != 0;
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
            refuse_per_million: [0, 0, 20_000, 200_000][rng.below(4) as usize] as u32,
            fault_window_ns: if faults {
                rng.between(1, 8) * 1_000_000_000
            } else {
                0
            },
            fault_interval_ns: if faults {
                rng.between(100, 800) * 1_000_000
            } else {
                0
            },
            clock_drift_ppm_max: [0, 1_000, 50_000][rng.below(3) as usize],
            sync_per_million: [1_000_000, 500_000, 100_000][rng.below(3) as usize] as u32,
            time_limit_ns: 180_000_000_000,
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
    pub crashes: u64,
    pub partitions: u64,
    pub delay_spikes: u64,
    /// Terms in which some node became leader.
    pub leaders_elected: u64,
    pub client_redirects: u64,
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
    Tick {
        node: NodeId,
    },
    Deliver {
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
    },
    ClientSend {
        client: u32,
    },
    /// Timeouts and redirects name the send attempt they belong to: only the latest counts, so
    /// one command never has two resend chains.
    ClientTimeout {
        client: u32,
        attempt: u64,
    },
    Ingress {
        client: u32,
        to: NodeId,
        client_sequence: u64,
        attempt: u64,
    },
    Response {
        client: u32,
        client_sequence: u64,
    },
    /// "Not leader": the node that answered, and the leader it knows.
    Redirect {
        client: u32,
        attempt: u64,
        from: NodeId,
        leader: Option<NodeId>,
    },
    Fault,
    Restart {
        node: NodeId,
    },
    Heal {
        from: NodeId,
        to: NodeId,
    },
}

struct SimNode {
    /// None while crashed.
    node: Option<Node<MemLog, HashChain>>,
    /// The log survives a crash (minus what was not durable).
    log_after_crash: MemLog,
    commit_seen: u64,
    commit_checked: u64,
    /// Clock: local = offset + real × (1e6 + drift_ppm) / 1e6.
    clock_offset_ns: u64,
    drift_ppm: i64,
    /// Highest local time handed out (a restarted node's clock never goes back).
    clock_last_ns: u64,
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
    /// Sends so far (of any command).
    attempt: u64,
    done: bool,
    /// The node this client sends to.
    target: NodeId,
}

const TICK_NS: u64 = 1_000_000;
const CLIENT_RESEND_NS: u64 = 50_000_000;
const NODES_MAX: usize = crate::protocol::MEMBERS_MAX;

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
    /// The leader of every term that had one.
    leaders: BTreeMap<u64, NodeId>,
    /// Links cut (from, to) and extra delay per link, both until healed.
    cut: [[bool; NODES_MAX]; NODES_MAX],
    extra_delay_ns: [[u64; NODES_MAX]; NODES_MAX],
    report: SimReport,
    /// `SIM_TRACE` set: every duty cycle and crash is printed to stderr (for replaying a seed).
    trace: bool,
}

fn command_bytes(client: u32, client_sequence: u64) -> Vec<u8> {
    // A recognisable command: 8..40 bytes derived from its identity.
    let len = 8 + (client as u64 * 7 + client_sequence * 13) % 33;
    (0..len)
        .map(|i| (client as u64 * 31 + client_sequence * 17 + i) as u8)
        .collect()
}

impl Sim {
    fn replica_config(&self, id: NodeId) -> ReplicaConfig {
        let mut replica_config = ReplicaConfig::new(id, self.config.nodes, 0);
        replica_config.heartbeat_interval_ns = 10_000_000;
        replica_config.resend_timeout_ns = 30_000_000;
        replica_config.window_bytes = 64 * 1024;
        replica_config.seed = self.config.seed;
        replica_config
    }

    fn new(config: SimConfig) -> Result<Sim, String> {
        let mut rng = Rng::new(config.seed);
        let mut nodes = Vec::new();
        for _ in 0..config.nodes {
            let drift = config.clock_drift_ppm_max as i64;
            nodes.push(SimNode {
                node: None,
                log_after_crash: MemLog::new(),
                commit_seen: 0,
                commit_checked: 0,
                clock_offset_ns: rng.between(0, 1_000_000_000),
                drift_ppm: rng.between(0, 2 * drift as u64) as i64 - drift,
                clock_last_ns: 0,
            });
        }
        let clients = (0..config.clients)
            .map(|client| Client {
                next_sequence: 1,
                attempt: 0,
                done: false,
                target: (client % config.nodes as u32) as NodeId,
            })
            .collect();
        let mut sim = Sim {
            config,
            rng,
            now_ns: 0,
            order: 0,
            queue: BinaryHeap::new(),
            nodes,
            clients,
            history: Vec::new(),
            acknowledged: Vec::new(),
            leaders: BTreeMap::new(),
            cut: [[false; NODES_MAX]; NODES_MAX],
            extra_delay_ns: [[0; NODES_MAX]; NODES_MAX],
            report: SimReport::default(),
            trace: std::env::var_os("SIM_TRACE").is_some(),
        };
        for id in 0..sim.config.nodes {
            sim.start_node(id)?;
        }
        Ok(sim)
    }

    /// This node's clock now: drifting, never going back.
    fn local_now(&mut self, id: NodeId) -> u64 {
        let node = &mut self.nodes[id as usize];
        let real = self.now_ns as i128;
        let local = node.clock_offset_ns as i128 + real + real * node.drift_ppm as i128 / 1_000_000;
        node.clock_last_ns = node.clock_last_ns.max(local.max(0) as u64);
        node.clock_last_ns
    }

    fn start_node(&mut self, id: NodeId) -> Result<(), String> {
        let now = self.local_now(id);
        let config = self.replica_config(id);
        let log = std::mem::take(&mut self.nodes[id as usize].log_after_crash);
        let node = Node::new(
            config,
            log,
            HashChain::default(),
            self.config.checkpoint_interval,
            now,
        )
        .map_err(|e| format!("node {id} failed to start: {e}"))?;
        let sim_node = &mut self.nodes[id as usize];
        sim_node.node = Some(node);
        // A restarted node learns the commit position again.
        sim_node.commit_seen = 0;
        sim_node.commit_checked = 0;
        Ok(())
    }

    fn schedule(&mut self, at_ns: u64, event: Event) {
        self.order += 1;
        self.queue.push(Reverse((at_ns, self.order, event)));
    }

    /// Puts an event on the simulated network: maybe lost, maybe duplicated, always delayed.
    fn network(&mut self, event: Event) {
        if let Event::Deliver { from, to, .. } = event {
            if self.cut[from as usize][to as usize] {
                self.report.messages_dropped += 1;
                return;
            }
        }
        if self.rng.chance(self.config.loss_per_million) {
            self.report.messages_dropped += 1;
            return;
        }
        let extra = match event {
            Event::Deliver { from, to, .. } => self.extra_delay_ns[from as usize][to as usize],
            _ => 0,
        };
        let copies = if self.rng.chance(self.config.duplicate_per_million) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self
                .rng
                .between(self.config.delay_ns_min, self.config.delay_ns_max);
            self.schedule(self.now_ns + delay + extra, event.clone());
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
        if self.config.fault_interval_ns > 0 {
            let at = self.rng.between(0, 2 * self.config.fault_interval_ns);
            self.schedule(at, Event::Fault);
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
            if self.now_ns > self.config.fault_window_ns
                && self.clients.iter().all(|c| c.done)
                && self.quiescent()
            {
                break;
            }
        }
        self.finish()
    }

    /// Every node runs and holds the same log, all of it committed and applied.
    fn quiescent(&self) -> bool {
        let Some(first) = self.nodes[0].node.as_ref() else {
            return false;
        };
        let end = first.log.end();
        self.nodes.iter().all(|n| {
            n.node.as_ref().is_some_and(|node| {
                node.log.end() == end
                    && node.replica.commit_position() == end
                    && node.applier.applied_position() == end
            })
        }) && self.nodes.iter().any(|n| {
            n.node
                .as_ref()
                .is_some_and(|node| node.replica.role() == Role::Leader)
        })
    }

    /// One fault, then the next one if the window is still open. Each heals by itself.
    fn fault(&mut self) -> Result<(), Violation> {
        let n = self.config.nodes as u64;
        let window_left = self.config.fault_window_ns.saturating_sub(self.now_ns);
        if window_left == 0 {
            return Ok(());
        }
        let duration = self.rng.between(10_000_000, 1_500_000_000).min(window_left);
        // Faults aim at the leader half of the time: that is where failover happens.
        let leader = self.nodes.iter().position(|s| {
            s.node
                .as_ref()
                .is_some_and(|n| n.replica.role() == Role::Leader)
        });
        let victim = match leader {
            Some(l) if self.rng.below(2) == 0 => l as NodeId,
            _ => self.rng.below(n) as NodeId,
        };
        match self.rng.below(4) {
            0 => {
                if let Some(node) = self.nodes[victim as usize].node.take() {
                    self.report.crashes += 1;
                    if self.trace {
                        eprintln!(
                            "t={} CRASH node {victim} end {} durable {}",
                            self.now_ns,
                            node.log.end(),
                            node.log.durable()
                        );
                    }
                    let mut log = node.log;
                    log.crash();
                    self.nodes[victim as usize].log_after_crash = log;
                    self.schedule(self.now_ns + duration, Event::Restart { node: victim });
                }
            }
            1 if n > 1 => {
                // Cut a node off from the others, both ways.
                self.report.partitions += 1;
                for other in 0..self.config.nodes {
                    if other != victim {
                        self.cut[victim as usize][other as usize] = true;
                        self.cut[other as usize][victim as usize] = true;
                        self.schedule(
                            self.now_ns + duration,
                            Event::Heal {
                                from: victim,
                                to: other,
                            },
                        );
                        self.schedule(
                            self.now_ns + duration,
                            Event::Heal {
                                from: other,
                                to: victim,
                            },
                        );
                    }
                }
            }
            2 if n > 1 => {
                // One direction of one link.
                self.report.partitions += 1;
                let other = (victim as u64 + self.rng.between(1, n - 1)) % n;
                let (from, to) = if self.rng.below(2) == 0 {
                    (victim, other as NodeId)
                } else {
                    (other as NodeId, victim)
                };
                self.cut[from as usize][to as usize] = true;
                self.schedule(self.now_ns + duration, Event::Heal { from, to });
            }
            3 if n > 1 => {
                // A delay spike on the links out of a node.
                self.report.delay_spikes += 1;
                let extra = self.rng.between(5_000_000, 300_000_000);
                for other in 0..self.config.nodes {
                    self.extra_delay_ns[victim as usize][other as usize] = extra;
                    self.schedule(
                        self.now_ns + duration,
                        Event::Heal {
                            from: victim,
                            to: other,
                        },
                    );
                }
            }
            _ => {}
        }
        let next = self.rng.between(1, 2 * self.config.fault_interval_ns);
        if self.now_ns + next < self.config.fault_window_ns {
            self.schedule(self.now_ns + next, Event::Fault);
        }
        Ok(())
    }

    fn step(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Tick { node } => {
                self.schedule(self.now_ns + TICK_NS, Event::Tick { node });
                self.drive(node, None)?;
            }
            Event::Deliver { from, to, bytes } => {
                if !self.cut[from as usize][to as usize] {
                    self.drive(to, Some(bytes))?;
                }
            }
            Event::Fault => self.fault()?,
            Event::Restart { node } => {
                self.start_node(node).map_err(|what| self.violation(what))?;
            }
            Event::Heal { from, to } => {
                self.cut[from as usize][to as usize] = false;
                self.extra_delay_ns[from as usize][to as usize] = 0;
            }
            Event::ClientSend { client } => {
                let c = &mut self.clients[client as usize];
                if c.done {
                    return Ok(());
                }
                c.attempt += 1;
                let (client_sequence, to, attempt) = (c.next_sequence, c.target, c.attempt);
                self.network(Event::Ingress {
                    client,
                    to,
                    client_sequence,
                    attempt,
                });
                self.schedule(
                    self.now_ns + CLIENT_RESEND_NS,
                    Event::ClientTimeout { client, attempt },
                );
            }
            Event::ClientTimeout { client, attempt } => {
                let nodes = self.config.nodes;
                let c = &mut self.clients[client as usize];
                if !c.done && c.attempt == attempt {
                    // No answer: maybe that node is down or cut off; try the next one.
                    c.target = (c.target + 1) % nodes;
                    self.schedule(self.now_ns, Event::ClientSend { client });
                }
            }
            Event::Redirect {
                client,
                attempt,
                from,
                leader,
            } => {
                let nodes = self.config.nodes;
                let c = &mut self.clients[client as usize];
                if !c.done && c.attempt == attempt && c.target == from {
                    self.report.client_redirects += 1;
                    c.target = leader.unwrap_or((from + 1) % nodes);
                    // Without a hint, an election is under way: wait a little. (A new send
                    // starts a new attempt; this attempt's timeout no longer counts.)
                    let wait = if leader.is_some() { 0 } else { 20_000_000 };
                    c.attempt += 1;
                    self.schedule(self.now_ns + wait, Event::ClientSend { client });
                }
            }
            Event::Ingress {
                client,
                to,
                client_sequence,
                attempt,
            } => self.ingress(client, to, client_sequence, attempt)?,
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

    fn ingress(
        &mut self,
        client: u32,
        to: NodeId,
        client_sequence: u64,
        attempt: u64,
    ) -> Result<(), Violation> {
        let command = command_bytes(client, client_sequence);
        let now = self.local_now(to);
        let mut outbox = self.outbox();
        let Some(node) = self.nodes[to as usize].node.as_mut() else {
            return Ok(()); // crashed: the client times out
        };
        let result = node.submit(now, client as u64, client_sequence, &command, &mut outbox);
        let applied = node.applier.client_applied(client as u64);
        match result {
            Ok(Submitted::Sequenced { .. }) => {}
            // Already sequenced: answer only once it is applied (committed), so that an answer
            // always means "in the committed log"; else the answer comes when it is applied.
            Ok(Submitted::Duplicate { .. }) => {
                if applied >= client_sequence {
                    self.network(Event::Response {
                        client,
                        client_sequence,
                    });
                }
            }
            Ok(Submitted::NotLeader { leader }) => self.network(Event::Redirect {
                client,
                attempt,
                from: to,
                leader,
            }),
            // Clients here have one command outstanding, so a gap cannot happen.
            // A deposed leader that does not know it yet lacks the commands the new leader took
            // since: for this client it is just not the leader. (Were an acknowledged command
            // really missing from the committed log, the final check would say so.)
            Ok(Submitted::OutOfOrder { .. }) => self.network(Event::Redirect {
                client,
                attempt,
                from: to,
                leader: None,
            }),
            Ok(other) => {
                return Err(self.violation(format!("node {to} refused a command: {other:?}")))
            }
            Err(e) => return Err(self.violation(format!("node {to} failed: {e}"))),
        }
        self.deliver_outbox(to, outbox);
        self.drive(to, None)
    }

    fn outbox(&mut self) -> Outbox {
        Outbox {
            messages: Vec::new(),
            refuse_per_million: self.config.refuse_per_million,
            rng: Rng::new(self.rng.next_u64()),
        }
    }

    fn deliver_outbox(&mut self, from: NodeId, outbox: Outbox) {
        for (to, bytes) in outbox.messages {
            self.network(Event::Deliver { from, to, bytes });
        }
    }

    /// One duty cycle of a node: handle the message (if any), apply what is committed, append a
    /// checkpoint (leader), flush, maybe make the log durable, then check invariants.
    fn drive(&mut self, id: NodeId, bytes: Option<Vec<u8>>) -> Result<(), Violation> {
        if self.nodes[id as usize].node.is_none() {
            return Ok(());
        }
        let now = self.local_now(id);
        let mut outbox = self.outbox();
        let mut responses = Vec::new();
        let sync = self.rng.chance(self.config.sync_per_million);
        let node = self.nodes[id as usize].node.as_mut().expect("running");
        let result: Result<(), String> = (|| {
            if let Some(bytes) = &bytes {
                if let Err(e) = node
                    .on_bytes(now, bytes, &mut outbox)
                    .map_err(|e| e.to_string())?
                {
                    return Err(format!("undecodable message: {e}"));
                }
            }
            if sync {
                node.log.sync();
            }
            let is_leader = node.replica.role() == Role::Leader;
            node.duty_cycle(now, &mut outbox, &mut |applied: Applied| {
                if is_leader {
                    responses.push((applied.client_id as u32, applied.client_sequence));
                }
            })
            .map_err(|e| e.to_string())?;
            if sync {
                node.log.sync();
            }
            Ok(())
        })();
        let (role, term) = (node.replica.role(), node.replica.term());
        if self.trace {
            eprintln!(
                "t={} node {id} {role} term {term} commit {} end {} durable {} last_term {} msg {:?}",
                self.now_ns,
                node.replica.commit_position(),
                node.log.end(),
                node.log.durable(),
                node.log.last_term(),
                bytes.as_ref().map(|b| crate::protocol::Message::decode(b, 7).map(|m| format!("{m:?}").chars().take(160).collect::<String>()))
            );
        }
        if let Err(what) = result {
            return Err(self.violation(format!("node {id}: {what}")));
        }
        if role == Role::Leader {
            match self.leaders.get(&term) {
                Some(&other) if other != id => {
                    return Err(self.violation(format!(
                        "two leaders in term {term}: nodes {other} and {id}"
                    )))
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                    self.report.leaders_elected += 1;
                }
            }
        }
        self.deliver_outbox(id, outbox);
        for (client, client_sequence) in responses {
            self.network(Event::Response {
                client,
                client_sequence,
            });
        }
        self.check_node(id)
    }

    fn check_node(&mut self, id: NodeId) -> Result<(), Violation> {
        let sim_node = &self.nodes[id as usize];
        let Some(node) = sim_node.node.as_ref() else {
            return Ok(());
        };
        let commit = node.replica.commit_position();
        if commit < sim_node.commit_seen {
            return Err(self.violation(format!(
                "node {id}: commit position went back from {} to {commit}",
                sim_node.commit_seen
            )));
        }
        if commit > node.log.end() {
            return Err(self.violation(format!(
                "node {id}: commit position {commit} beyond its log end {}",
                node.log.end()
            )));
        }
        let from = sim_node.commit_checked as usize;
        let to = commit as usize;
        let bytes = &node.log.bytes()[from..to];
        let overlap = self.history.len().min(to);
        if from < overlap && bytes[..overlap - from] != self.history[from..overlap] {
            return Err(self.violation(format!(
                "node {id}: committed bytes {from}..{overlap} differ from the committed history"
            )));
        }
        if to > self.history.len() {
            let extra = node.log.bytes()[self.history.len()..to].to_vec();
            self.history.extend_from_slice(&extra);
        }
        let sim_node = &mut self.nodes[id as usize];
        sim_node.commit_seen = commit;
        sim_node.commit_checked = commit;
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
        let running: Vec<&Node<MemLog, HashChain>> =
            self.nodes.iter().filter_map(|n| n.node.as_ref()).collect();
        if running.iter().any(|n| n.log.bytes() != self.history) {
            return Err(self.violation("a node's log differs from the committed history".into()));
        }
        let hashes: Vec<u64> = running.iter().map(|n| n.state.state_hash()).collect();
        if hashes.iter().any(|&h| h != hashes[0]) {
            return Err(self.violation(format!("state hashes differ at the end: {hashes:x?}")));
        }
        self.report.committed_position = self.history.len() as u64;
        self.report.checkpoints_verified = running
            .iter()
            .map(|n| n.applier.checkpoints_verified())
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
