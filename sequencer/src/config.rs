//! A node's configuration file (TOML), as `exchange node --config FILE` reads it.
//!
//! Every key is documented in `config/node.example.toml`. Unknown keys are refused; a value that
//! parses but makes no sense (a node id that is not a member, two members on one endpoint, ...) is
//! refused with the key's name and the problem. Relative paths are relative to the file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use journal::{JournalConfig, SyncPolicy};
use serde::Deserialize;

use crate::driver::DriverIdle;
use crate::protocol::MEMBERS_MAX;
use crate::replica::ReplicaConfig;
use crate::runtime::{AgentConfig, IdleStrategy};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: `{key}`: {problem}")]
    Invalid {
        file: PathBuf,
        key: &'static str,
        problem: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub cluster: ClusterSection,
    #[serde(default)]
    pub journal: JournalSection,
    #[serde(default)]
    pub aeron: AeronSection,
    #[serde(default)]
    pub matcher: MatcherSection,
}

/// `[node]`: this process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's index in `cluster.members`.
    pub id: u8,
    /// `"backoff"` (default; spin, yield, then sleep up to `idle_max_sleep_us`) or `"busy-spin"`
    /// (a core per node: dedicated hardware only).
    #[serde(default = "default_idle")]
    pub idle: String,
    #[serde(default = "default_idle_max_sleep_us")]
    pub idle_max_sleep_us: u64,
    /// Pin the node's agent thread to this CPU (core_affinity); unpinned when absent.
    #[serde(default)]
    pub cpu: Option<usize>,
    /// Print a status line this often (0: never).
    #[serde(default)]
    pub status_interval_ms: u64,
}

/// `[cluster]`: the same in every member's file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Replication endpoint (`ip:port`, UDP) of every member, in node-id order.
    pub members: Vec<String>,
    /// Client ingress endpoint (`ip:port`, UDP) of every member, in node-id order.
    pub ingress: Vec<String>,
    /// The preferred first leader: it asks for votes as soon as it starts; the others wait an
    /// election timeout. After a failover the leader stays wherever it was elected.
    #[serde(default)]
    pub leader: u8,
    /// Commands between two state-hash checkpoints (divergence detection).
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: u64,
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    #[serde(default = "default_resend_timeout_ms")]
    pub resend_timeout_ms: u64,
    /// A follower that hears no leader for a random time between these starts an election; a
    /// leader that hears from no majority for the maximum steps down.
    #[serde(default = "default_election_timeout_min_ms")]
    pub election_timeout_min_ms: u64,
    #[serde(default = "default_election_timeout_max_ms")]
    pub election_timeout_max_ms: u64,
    /// Seed of the randomised election timeouts (mixed with the node id).
    #[serde(default = "default_election_seed")]
    pub election_seed: u64,
    /// Most unacknowledged bytes in flight to one follower; a follower further behind is served
    /// from the leader's journal at its own pace (catch-up).
    #[serde(default = "default_window_bytes")]
    pub window_bytes: u64,
}

/// `[journal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalSection {
    /// Directory of the segment files (created if missing). Default: `journal-<node id>` beside
    /// the configuration file.
    pub dir: Option<PathBuf>,
    pub segment_size_mib: u64,
    /// `"none"` (replication is the durability; default) or `"group-commit"` (fdatasync batches
    /// through io_uring; a node acknowledges only what is on disk).
    pub sync: String,
}

/// `[aeron]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AeronSection {
    /// The media driver directory. Default: a new directory under /dev/shm, named after the node
    /// and the process, deleted on start and on exit.
    pub dir: Option<PathBuf>,
    /// What the embedded driver's thread does when idle: `"backoff"` (default; parks up to
    /// `driver_max_park_us`), `"yield"` or `"busy-spin"`.
    pub driver_idle: String,
    pub driver_max_park_us: u64,
    /// false (default): the embedded driver runs inside the node's own duty cycle, one thread per
    /// node (best when cores are few). true: the driver gets a thread of its own (`driver_idle`
    /// applies to it), which suits machines with a core to spare per driver.
    pub driver_thread: bool,
}

/// `[matcher]`: pre-allocated capacities (the same on every member).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatcherSection {
    pub order_capacity: u32,
    pub level_capacity: u32,
    pub instrument_capacity: u32,
    pub account_capacity: u32,
}

fn default_idle() -> String {
    "backoff".into()
}
fn default_idle_max_sleep_us() -> u64 {
    1000
}
fn default_checkpoint_interval() -> u64 {
    10_000
}
fn default_heartbeat_interval_ms() -> u64 {
    20
}
fn default_resend_timeout_ms() -> u64 {
    100
}
fn default_election_timeout_min_ms() -> u64 {
    100
}
fn default_election_timeout_max_ms() -> u64 {
    200
}
fn default_election_seed() -> u64 {
    1
}
fn default_window_bytes() -> u64 {
    4 << 20
}

impl Default for JournalSection {
    fn default() -> Self {
        JournalSection {
            dir: None,
            segment_size_mib: 64,
            sync: "none".into(),
        }
    }
}

impl Default for AeronSection {
    fn default() -> Self {
        AeronSection {
            dir: None,
            driver_idle: default_idle(),
            driver_max_park_us: 100,
            driver_thread: false,
        }
    }
}

impl Default for MatcherSection {
    fn default() -> Self {
        let workload = crate::workload::matcher_config();
        MatcherSection {
            order_capacity: workload.order_capacity,
            level_capacity: workload.level_capacity,
            instrument_capacity: workload.instrument_capacity,
            account_capacity: workload.account_capacity,
        }
    }
}

/// A checked configuration, ready to run.
#[derive(Debug, Clone)]
pub struct Checked {
    pub agent: AgentConfig,
    /// The preferred leader's client ingress endpoint (where clients try first).
    pub leader_ingress: String,
    /// Every member's client ingress endpoint, by node id (clients follow the leader among them).
    pub ingress: Vec<String>,
    pub idle: IdleStrategy,
    pub driver_idle: DriverIdle,
    /// The embedded driver gets a thread of its own (`aeron.driver_thread`); otherwise it runs in
    /// the node's duty cycle.
    pub driver_thread: bool,
    pub cpu: Option<usize>,
    pub aeron_dir: Option<PathBuf>,
    pub status_interval: Option<Duration>,
}

impl NodeConfig {
    /// Reads and checks `file`.
    pub fn load(file: &Path) -> Result<Checked, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        Self::parse(&text, file)?.check(file, base)
    }

    /// Parses TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<NodeConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Checks every value and builds the runtime configuration.
    pub fn check(&self, file: &Path, base: &Path) -> Result<Checked, ConfigError> {
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key,
            problem,
        };
        let cluster = &self.cluster;
        let members = cluster.members.len();
        if members == 0 || members > MEMBERS_MAX {
            return Err(invalid(
                "cluster.members",
                format!("{members} members; a cluster has 1 to {MEMBERS_MAX}"),
            ));
        }
        for (key, list) in [
            ("cluster.members", &cluster.members),
            ("cluster.ingress", &cluster.ingress),
        ] {
            for (i, endpoint) in list.iter().enumerate() {
                if endpoint.parse::<SocketAddr>().is_err() {
                    return Err(invalid(
                        key,
                        format!("entry {i} ({endpoint:?}) is not an ip:port endpoint"),
                    ));
                }
            }
        }
        if cluster.ingress.len() != members {
            return Err(invalid(
                "cluster.ingress",
                format!(
                    "{} entries for {members} members: give each member one ingress endpoint",
                    cluster.ingress.len()
                ),
            ));
        }
        let mut all: Vec<&String> = cluster.members.iter().chain(&cluster.ingress).collect();
        all.sort();
        if let Some(pair) = all.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(
                "cluster.members",
                format!(
                    "endpoint {} is used twice (members and ingress must all differ)",
                    pair[0]
                ),
            ));
        }
        if self.node.id as usize >= members {
            return Err(invalid(
                "node.id",
                format!(
                    "{} is not a member (members are 0..{})",
                    self.node.id,
                    members - 1
                ),
            ));
        }
        if cluster.leader as usize >= members {
            return Err(invalid(
                "cluster.leader",
                format!(
                    "{} is not a member (members are 0..{})",
                    cluster.leader,
                    members - 1
                ),
            ));
        }
        if cluster.checkpoint_interval == 0 {
            return Err(invalid(
                "cluster.checkpoint_interval",
                "must be at least 1".into(),
            ));
        }
        if cluster.heartbeat_interval_ms == 0
            || cluster.resend_timeout_ms < cluster.heartbeat_interval_ms
        {
            return Err(invalid(
                "cluster.resend_timeout_ms",
                format!(
                    "heartbeat_interval_ms ({}) must be at least 1 and at most resend_timeout_ms ({})",
                    cluster.heartbeat_interval_ms, cluster.resend_timeout_ms
                ),
            ));
        }
        if cluster.election_timeout_min_ms <= cluster.heartbeat_interval_ms
            || cluster.election_timeout_max_ms < cluster.election_timeout_min_ms
        {
            return Err(invalid(
                "cluster.election_timeout_min_ms",
                format!(
                    "need heartbeat_interval_ms ({}) < election_timeout_min_ms ({}) <= election_timeout_max_ms ({})",
                    cluster.heartbeat_interval_ms,
                    cluster.election_timeout_min_ms,
                    cluster.election_timeout_max_ms
                ),
            ));
        }
        if cluster.window_bytes < crate::protocol::APPEND_FRAMES_LEN_MAX as u64 {
            return Err(invalid(
                "cluster.window_bytes",
                format!(
                    "{} is smaller than one Append message ({} bytes)",
                    cluster.window_bytes,
                    crate::protocol::APPEND_FRAMES_LEN_MAX
                ),
            ));
        }
        let idle = match self.node.idle.as_str() {
            "backoff" => IdleStrategy::Backoff {
                max_sleep: Duration::from_micros(self.node.idle_max_sleep_us.max(1)),
            },
            "yield" => IdleStrategy::Yield,
            "busy-spin" => IdleStrategy::BusySpin,
            other => {
                return Err(invalid(
                    "node.idle",
                    format!("{other:?}: expected \"backoff\", \"yield\" or \"busy-spin\""),
                ))
            }
        };
        let driver_idle = match self.aeron.driver_idle.as_str() {
            "backoff" => DriverIdle::Backoff {
                max_park_ns: self.aeron.driver_max_park_us.max(1) * 1000,
            },
            "yield" => DriverIdle::Yield,
            "busy-spin" => DriverIdle::BusySpin,
            other => {
                return Err(invalid(
                    "aeron.driver_idle",
                    format!("{other:?}: expected \"backoff\", \"yield\" or \"busy-spin\""),
                ))
            }
        };
        if let Some(cpu) = self.node.cpu {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            if cpu >= cpus {
                return Err(invalid(
                    "node.cpu",
                    format!("CPU {cpu} does not exist (this machine has {cpus})"),
                ));
            }
        }
        let sync = match self.journal.sync.as_str() {
            "none" => SyncPolicy::None,
            "group-commit" => SyncPolicy::GroupCommit,
            other => {
                return Err(invalid(
                    "journal.sync",
                    format!("{other:?}: expected \"none\" or \"group-commit\""),
                ))
            }
        };
        if !(1..=4096).contains(&self.journal.segment_size_mib) {
            return Err(invalid(
                "journal.segment_size_mib",
                format!("{} is outside 1..=4096", self.journal.segment_size_mib),
            ));
        }
        let journal_dir = match &self.journal.dir {
            Some(dir) => base.join(dir),
            None => base.join(format!("journal-{}", self.node.id)),
        };
        let mut journal = JournalConfig::new(journal_dir);
        journal.segment_size = self.journal.segment_size_mib << 20;
        journal.sync = sync;
        let m = &self.matcher;
        let matcher = matcher::Config {
            order_capacity: m.order_capacity,
            level_capacity: m.level_capacity,
            instrument_capacity: m.instrument_capacity,
            account_capacity: m.account_capacity,
        };
        if let Err(matcher::ConfigError::Capacity { name, value, max }) = matcher.validate() {
            let key = match name {
                "order_capacity" => "matcher.order_capacity",
                "level_capacity" => "matcher.level_capacity",
                "instrument_capacity" => "matcher.instrument_capacity",
                _ => "matcher.account_capacity",
            };
            return Err(invalid(key, format!("{value} is outside 1..={max}")));
        }
        let mut replica = ReplicaConfig::new(self.node.id, members as u8, cluster.leader);
        replica.heartbeat_interval_ns = cluster.heartbeat_interval_ms * 1_000_000;
        replica.resend_timeout_ns = cluster.resend_timeout_ms * 1_000_000;
        replica.election_timeout_min_ns = cluster.election_timeout_min_ms * 1_000_000;
        replica.election_timeout_max_ns = cluster.election_timeout_max_ms * 1_000_000;
        replica.seed = cluster.election_seed;
        replica.window_bytes = cluster.window_bytes;
        Ok(Checked {
            agent: AgentConfig {
                replica,
                replication_endpoints: cluster.members.clone(),
                ingress_endpoint: cluster.ingress[self.node.id as usize].clone(),
                journal,
                checkpoint_interval: cluster.checkpoint_interval,
                matcher,
            },
            leader_ingress: cluster.ingress[cluster.leader as usize].clone(),
            ingress: cluster.ingress.clone(),
            idle,
            driver_idle,
            driver_thread: self.aeron.driver_thread,
            cpu: self.node.cpu,
            aeron_dir: self.aeron.dir.as_ref().map(|d| base.join(d)),
            status_interval: (self.node.status_interval_ms > 0)
                .then(|| Duration::from_millis(self.node.status_interval_ms)),
        })
    }
}

/// A base port such that `base..base+count` and `base+100..base+100+count` are free UDP ports on
/// 127.0.0.1 right now: the layout [`write_local_cluster`] uses (and one more port each for a
/// client, when `count` is one above the number of nodes).
pub fn free_base_port(count: u16) -> std::io::Result<u16> {
    let seed = u64::from(std::process::id()) * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
    for attempt in 0..200u64 {
        let base = 30_000 + ((seed + attempt * 263) % 25_000) as u16;
        let ports: Vec<u16> = (0..count)
            .flat_map(|i| [base + i, base + 100 + i])
            .collect();
        let bound = ports
            .iter()
            .map_while(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).ok())
            .count();
        if bound == ports.len() {
            return Ok(base);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free range of UDP ports found on 127.0.0.1",
    ))
}

/// Writes the configuration files of a local cluster of `nodes` members on 127.0.0.1, ports from
/// `base_port` (replication `base_port + i`, ingress `base_port + 100 + i`), journals in
/// `dir/journal-<i>`; `node_keys` and `aeron_keys` are added to the `[node]` and `[aeron]`
/// sections. Returns the files' paths.
pub fn write_local_cluster(
    dir: &Path,
    nodes: u8,
    base_port: u16,
    node_keys: &str,
    aeron_keys: &str,
) -> std::io::Result<Vec<PathBuf>> {
    write_local_cluster_with(
        dir,
        nodes,
        base_port,
        &LocalSections {
            node: node_keys.to_string(),
            cluster: "leader = 0".to_string(),
            journal: String::new(),
            aeron: aeron_keys.to_string(),
        },
    )
}

/// Extra keys (TOML lines) for each section of every node file that
/// [`write_local_cluster_with`] writes. They must not repeat the keys it writes itself:
/// `node.id`, `cluster.members`, `cluster.ingress` and `journal.dir`.
#[derive(Debug, Clone, Default)]
pub struct LocalSections {
    pub node: String,
    pub cluster: String,
    pub journal: String,
    pub aeron: String,
}

/// As [`write_local_cluster`], with extra keys for every section (`cluster.leader` is not
/// written unless `sections.cluster` has it).
pub fn write_local_cluster_with(
    dir: &Path,
    nodes: u8,
    base_port: u16,
    sections: &LocalSections,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let list = |offset: u16| -> String {
        (0..nodes as u16)
            .map(|i| format!("\"127.0.0.1:{}\"", base_port + offset + i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (members, ingress) = (list(0), list(100));
    let LocalSections {
        node,
        cluster,
        journal,
        aeron,
    } = sections;
    (0..nodes)
        .map(|id| {
            let path = dir.join(format!("node-{id}.toml"));
            let text = format!(
                "# Written by `exchange cluster up`: node {id} of a local {nodes}-node cluster.\n\
                 [node]\nid = {id}\n{node}\n\n\
                 [cluster]\nmembers = [{members}]\ningress = [{ingress}]\n{cluster}\n\n\
                 [journal]\ndir = \"journal-{id}\"\n{journal}\n\n\
                 [aeron]\n{aeron}\n"
            );
            std::fs::write(&path, text)?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [node]
        id = 1
        [cluster]
        members = ["127.0.0.1:20001", "127.0.0.1:20002", "127.0.0.1:20003"]
        ingress = ["127.0.0.1:20101", "127.0.0.1:20102", "127.0.0.1:20103"]
        [journal]
        dir = "data/n1"
    "#;

    fn check(text: &str) -> Result<Checked, String> {
        let file = Path::new("/etc/exchange/node.toml");
        NodeConfig::parse(text, file)
            .and_then(|c| c.check(file, Path::new("/etc/exchange")))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_file_gives_the_runtime_configuration() {
        let checked = check(GOOD).unwrap();
        assert_eq!(checked.agent.replica.node_id, 1);
        assert_eq!(checked.agent.replica.members, 3);
        assert_eq!(checked.agent.replica.leader, 0);
        assert_eq!(checked.agent.ingress_endpoint, "127.0.0.1:20102");
        assert_eq!(
            checked.agent.journal.dir,
            PathBuf::from("/etc/exchange/data/n1")
        );
        assert_eq!(checked.agent.journal.segment_size, 64 << 20);
        assert_eq!(checked.agent.checkpoint_interval, 10_000);
        assert_eq!(checked.agent.replica.heartbeat_interval_ns, 20_000_000);
        assert!(matches!(checked.idle, IdleStrategy::Backoff { .. }));
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../../config/node.example.toml");
        let checked = check(text).unwrap();
        assert_eq!(checked.agent.replica.members, 3);
    }

    #[test]
    fn bad_files_are_refused_naming_the_key() {
        let cases = [
            (
                GOOD.replace("id = 1", "id = 3"),
                "`node.id`: 3 is not a member",
            ),
            (
                GOOD.replace("[journal]", "[journal]\nsync = \"always\""),
                "`journal.sync`: \"always\"",
            ),
            (
                GOOD.replace(
                    "\"127.0.0.1:20003\"]",
                    "\"127.0.0.1:20003\", \"127.0.0.1:20004\"]",
                ),
                "`cluster.ingress`: 3 entries for 4 members",
            ),
            (
                GOOD.replace("\"127.0.0.1:20003\"]", "\"localhost\"]"),
                "`cluster.members`: entry 2 (\"localhost\") is not an ip:port endpoint",
            ),
            (
                GOOD.replace("127.0.0.1:20101", "127.0.0.1:20001"),
                "`cluster.members`: endpoint 127.0.0.1:20001 is used twice",
            ),
            (
                GOOD.replace("[node]", "[node]\nidle = \"spin\""),
                "`node.idle`: \"spin\"",
            ),
            (
                GOOD.replace("[journal]", "[journal]\nsegmentsize = 3"),
                "segmentsize",
            ),
            (GOOD.replace("id = 1", "id = \"one\""), "line 3"),
            (
                GOOD.replace("[node]\n        id = 1", ""),
                "missing field `node`",
            ),
        ];
        for (text, expected) in cases {
            let error = check(&text)
                .err()
                .unwrap_or_else(|| panic!("accepted:\n{text}"));
            assert!(
                error.starts_with("/etc/exchange/node.toml: ") && error.contains(expected),
                "{error:?} does not contain {expected:?}"
            );
        }
    }
}
