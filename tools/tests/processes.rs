//! A cluster of real node processes (`exchange node --config`), each with its own embedded media
//! driver, replicating over UDP on 127.0.0.1, under load from `exchange loadgen` (another
//! process): a follower killed with SIGKILL and restarted catches up and ends identical; a fresh
//! follower started after the load catches up from the leader's journal. Every test uses its own
//! ports, journals and /dev/shm directories, and stops every process it started.
//! `CLUSTER_TEST_COMMANDS` sets the size of the load (default 100,000; the full run is
//! 1,000,000).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sequencer::config::write_local_cluster;

const EXCHANGE: &str = env!("CARGO_BIN_EXE_exchange");

fn commands() -> u64 {
    std::env::var("CLUSTER_TEST_COMMANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// A base port such that base..base+nodes and base+100..base+100+nodes are free UDP ports now.
fn free_base_port(nodes: u16) -> u16 {
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..200u64 {
        let base = 30_000 + ((seed + attempt * 263) % 25_000) as u16;
        let ports: Vec<u16> = (0..nodes)
            .flat_map(|i| [base + i, base + 100 + i])
            .collect();
        let sockets: Vec<_> = ports
            .iter()
            .map_while(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).ok())
            .collect();
        if sockets.len() == ports.len() {
            return base;
        }
    }
    panic!("no free UDP port range");
}

/// One node process and what it last reported.
struct NodeProcess {
    config: PathBuf,
    child: Child,
    /// The last `status` line's fields, and the `stopped` line's once it exits.
    last: Arc<Mutex<BTreeMap<String, String>>>,
    stopped: Arc<Mutex<Option<BTreeMap<String, String>>>>,
}

fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl NodeProcess {
    fn start(config: &Path) -> NodeProcess {
        let mut child = Command::new(EXCHANGE)
            .args(["node", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let last = Arc::new(Mutex::new(BTreeMap::new()));
        let stopped = Arc::new(Mutex::new(None));
        let stdout = child.stdout.take().unwrap();
        let (l, s) = (last.clone(), stopped.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("status ") {
                    *l.lock().unwrap() = fields(rest);
                } else if let Some(rest) = line.strip_prefix("stopped ") {
                    *s.lock().unwrap() = Some(fields(rest));
                }
            }
        });
        NodeProcess {
            config: config.to_path_buf(),
            child,
            last,
            stopped,
        }
    }

    fn get(&self, key: &str) -> u64 {
        self.last
            .lock()
            .unwrap()
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the final status line.
    fn stop(mut self) -> BTreeMap<String, String> {
        // SAFETY: signalling our own child, not yet waited for.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{}: {status}", self.config.display());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(stopped) = self.stopped.lock().unwrap().clone() {
                return stopped;
            }
            assert!(Instant::now() < deadline, "no final status line");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // A failed test must not leave processes behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the configuration of a local cluster of `nodes` in `dir` (status every 100 ms).
fn cluster_configs(dir: &Path, nodes: u8) -> Vec<PathBuf> {
    let base = free_base_port(nodes as u16);
    write_local_cluster(
        dir,
        nodes,
        base,
        "status_interval_ms = 100",
        "driver_idle = \"backoff\"",
    )
    .unwrap()
}

fn loadgen(config: &Path, commands: u64, rate: u64) -> Child {
    Command::new(EXCHANGE)
        .args(["loadgen", "--config"])
        .arg(config)
        .args([
            "--rate",
            &rate.to_string(),
            "--commands",
            &commands.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish_loadgen(child: Child, commands: u64) -> String {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "loadgen failed:\n{stdout}");
    assert!(
        stdout.contains(&format!("committed {commands} rejected 0 ")),
        "{stdout}"
    );
    stdout
}

/// Waits until every node has applied everything the leader holds.
fn wait_settled(nodes: &[NodeProcess], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let end = nodes[0].get("log_end");
        let settled = end > 0
            && nodes
                .iter()
                .all(|n| n.get("applied") == end && n.get("commit") == end);
        if settled {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {:?}",
            nodes
                .iter()
                .map(|n| (n.get("log_end"), n.get("commit"), n.get("applied")))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops every node; their final state hashes, digests and positions agree, their journals are
/// record-for-record identical, and every client command is in the log exactly once.
fn stop_and_compare(nodes: Vec<NodeProcess>, dir: &Path, client_commands: u64) {
    let finals: Vec<BTreeMap<String, String>> = nodes.into_iter().map(NodeProcess::stop).collect();
    for key in [
        "state_hash",
        "event_digest",
        "commit",
        "applied",
        "sequence",
    ] {
        let values: Vec<&String> = finals.iter().map(|f| &f[key]).collect();
        assert!(values.iter().all(|v| *v == values[0]), "{key}: {values:?}");
    }
    let journals: Vec<Vec<(u64, Vec<u8>)>> = (0..finals.len())
        .map(|id| {
            let mut reader = journal::Reader::open(&dir.join(format!("journal-{id}"))).unwrap();
            let mut records = Vec::new();
            while let Some(record) = reader.next_record().unwrap() {
                records.push((record.position, record.frame.to_vec()));
            }
            records
        })
        .collect();
    for (id, records) in journals.iter().enumerate().skip(1) {
        assert_eq!(records.len(), journals[0].len(), "node {id}: record count");
        assert!(records == &journals[0], "node {id}: journal differs");
    }
    let mut seen = BTreeMap::new();
    for (_, frame) in &journals[0] {
        let header = sequencer::log::frame_header(frame);
        if header.record_type.get() == sequencer::protocol::RECORD_CLIENT_COMMAND {
            let (client, sequence, _) =
                sequencer::protocol::split_client_command(sequencer::log::frame_payload(frame))
                    .unwrap();
            *seen.entry((client, sequence)).or_insert(0u32) += 1;
        }
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "a command is in the log twice"
    );
    assert_eq!(
        seen.len() as u64,
        client_commands,
        "client commands in the log"
    );
}

#[test]
fn a_bad_node_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[node]\nid = 4\n[cluster]\nmembers = [\"127.0.0.1:1\"]\ningress = [\"127.0.0.1:2\"]\n",
    )
    .unwrap();
    let output = Command::new(EXCHANGE)
        .args(["node", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("node.toml: `node.id`: 4 is not a member (members are 0..0)"),
        "{stderr}"
    );
}

#[test]
fn a_follower_killed_under_load_restarts_catches_up_and_ends_identical() {
    let dir = tempfile::tempdir().unwrap();
    let configs = cluster_configs(dir.path(), 3);
    let mut nodes: Vec<NodeProcess> = configs.iter().map(|c| NodeProcess::start(c)).collect();
    let commands = commands();
    let load = loadgen(&configs[0], commands, 20_000);
    // Kill follower 2 once it has applied a good part of the load, keep it down a while, restart.
    let deadline = Instant::now() + Duration::from_secs(120);
    while nodes[2].get("commands") < commands / 4 {
        assert!(Instant::now() < deadline, "follower 2 made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    nodes[2].kill_hard();
    std::thread::sleep(Duration::from_millis(700));
    let restarted = NodeProcess::start(&configs[2]);
    nodes[2] = restarted;
    let loadgen_output = finish_loadgen(load, commands);
    wait_settled(&nodes, Duration::from_secs(120));
    // The instrument command plus the load.
    stop_and_compare(nodes, dir.path(), commands + 1);
    assert!(loadgen_output.contains("commit round trip p50="));
}

#[test]
fn a_fresh_follower_catches_up_from_the_leaders_journal() {
    let dir = tempfile::tempdir().unwrap();
    let configs = cluster_configs(dir.path(), 3);
    // Nodes 0 and 1 are a majority: they commit the whole load without node 2.
    let mut nodes: Vec<NodeProcess> = configs[..2].iter().map(|c| NodeProcess::start(c)).collect();
    let commands = commands();
    finish_loadgen(loadgen(&configs[0], commands, 0), commands);
    assert!(!dir.path().join("journal-2").exists());
    nodes.push(NodeProcess::start(&configs[2]));
    wait_settled(&nodes, Duration::from_secs(180));
    stop_and_compare(nodes, dir.path(), commands + 1);
}
