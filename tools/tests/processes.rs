//! A cluster of real node processes (`exchange node --config`), each with its own embedded media
//! driver, replicating over UDP on 127.0.0.1, under load from `exchange loadgen` (another
//! process): a follower killed with SIGKILL and restarted catches up and ends identical; a fresh
//! follower started after the load catches up from the leader's journal. Every test uses its own
//! ports, journals and /dev/shm directories, and stops every process it started.
//! `CLUSTER_TEST_COMMANDS` sets the size of the load (default 100,000; the full run is
//! 1,000,000).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sequencer::config::free_base_port;
use sequencer::config::write_local_cluster;
use tools::cluster::{wait_settled, NodeChild};

const EXCHANGE: &str = env!("CARGO_BIN_EXE_exchange");

fn commands() -> u64 {
    std::env::var("CLUSTER_TEST_COMMANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

fn start(config: &Path) -> NodeChild {
    NodeChild::spawn(Path::new(EXCHANGE), config, false).unwrap()
}

/// Writes the configuration of a local cluster of `nodes` in `dir` (status every 100 ms).
fn cluster_configs(dir: &Path, nodes: u8) -> Vec<PathBuf> {
    let base = free_base_port(nodes as u16).unwrap();
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

/// Stops every node; their final state hashes, digests and positions agree, their journals are
/// record-for-record identical, and every client command is in the log exactly once.
fn stop_and_compare(nodes: Vec<NodeChild>, dir: &Path, client_commands: u64) {
    let dirs: Vec<PathBuf> = (0..nodes.len())
        .map(|id| dir.join(format!("journal-{id}")))
        .collect();
    let (_, seen) = tools::chaos::stop_and_verify(nodes, &dirs).unwrap_or_else(|e| panic!("{e:#}"));
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
    let mut nodes: Vec<NodeChild> = configs.iter().map(|c| start(c)).collect();
    let commands = commands();
    let load = loadgen(&configs[0], commands, 20_000);
    // Kill follower 2 once it has applied a good part of the load, keep it down a while, restart.
    let deadline = Instant::now() + Duration::from_secs(120);
    while nodes[2].get("commands") < commands / 4 {
        assert!(Instant::now() < deadline, "follower 2 made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    nodes[2].kill_hard().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let restarted = start(&configs[2]);
    nodes[2] = restarted;
    let loadgen_output = finish_loadgen(load, commands);
    wait_settled(&nodes, Duration::from_secs(120)).unwrap();
    // The instrument command plus the load.
    stop_and_compare(nodes, dir.path(), commands + 1);
    assert!(loadgen_output.contains("commit round trip p50="));
}

#[test]
fn a_fresh_follower_catches_up_from_the_leaders_journal() {
    let dir = tempfile::tempdir().unwrap();
    let configs = cluster_configs(dir.path(), 3);
    // Nodes 0 and 1 are a majority: they commit the whole load without node 2.
    let mut nodes: Vec<NodeChild> = configs[..2].iter().map(|c| start(c)).collect();
    let commands = commands();
    finish_loadgen(loadgen(&configs[0], commands, 0), commands);
    assert!(!dir.path().join("journal-2").exists());
    nodes.push(start(&configs[2]));
    wait_settled(&nodes, Duration::from_secs(180)).unwrap();
    stop_and_compare(nodes, dir.path(), commands + 1);
}

/// The fault test: 3 node processes under steady load, the leader killed with SIGKILL
/// 20 times (`CHAOS_KILLS`), the dead node restarted each time. Every command the client sent
/// is in the final log exactly once and nothing else is, all journals are identical and all state
/// hashes agree (checked inside `kill_leader_repeatedly`); every kill interrupted the answers and
/// a new leader of a higher term took over; a learner following the committed log throughout
/// mirrored it record for record.
#[test]
fn the_leader_killed_again_and_again_under_load_loses_and_duplicates_nothing() {
    use tools::chaos::{failover_times, kill_leader_repeatedly, ChaosOptions};
    let kills: u32 = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let options = ChaosOptions {
        kills,
        ..ChaosOptions::default()
    };
    let mut killed = Vec::new();
    let report = kill_leader_repeatedly(
        Path::new(EXCHANGE),
        dir.path(),
        &options,
        &mut |_, node, term| killed.push((node, term)),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(killed.len(), kills as usize);
    eprintln!(
        "leader changes without a kill: {:?}",
        report.unforced_elections
    );
    // Each kill deposed the leader of a newer term than the one before.
    assert!(killed.windows(2).all(|w| w[0].1 < w[1].1), "{killed:?}");
    assert!(report.term > killed.last().unwrap().1);
    assert!(report.client_leader_changes >= kills as u64);
    assert_eq!(
        failover_times(&report).len(),
        kills as usize,
        "{:?}",
        report.kills
    );
    assert!(report.client_commands > 1000);
    // The learner followed node 0 first; node 0 led first and was killed, so it moved at least
    // once (and its mirror equals the journal: checked inside).
    assert!(report.learner_switches >= 1, "{report:?}");
}

/// The old leader cut off from the other nodes (blackhole routes between its network namespace
/// and theirs, each node a host on a bridge, the client still reaching it; SIGSTOP where
/// namespaces cannot be made) commits nothing while
/// cut off, a leader of a higher term takes over, and the old leader follows it when it returns;
/// afterwards every command is in every journal exactly once.
#[test]
fn an_isolated_old_leader_commits_nothing_and_steps_down_when_it_returns() {
    use tools::chaos::{partition_old_leader, Namespaces};
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("xq{}", std::process::id() % 100_000);
    let namespaces = match Namespaces::create(&prefix, 4) {
        Ok(namespaces) => Some(namespaces),
        Err(e) => {
            eprintln!("network namespaces unavailable ({e:#}); isolating with SIGSTOP instead");
            None
        }
    };
    let report = partition_old_leader(
        Path::new(EXCHANGE),
        dir.path(),
        namespaces.as_ref(),
        Duration::from_secs(2),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{report:?}");
    assert_eq!(report.commit_at_heal, report.commit_at_cut, "{report:?}");
    assert!(report.new_term > report.old_term, "{report:?}");
    assert_ne!(report.new_leader, report.old_leader);
    assert!(report.term_after >= report.new_term, "{report:?}");
    assert_eq!(report.role_after, "follower");
    if namespaces.is_some() {
        // It kept running, noticed it had no majority, and stopped leading by itself; the client
        // still reached it, so it had sequenced records it could not commit, and removed them
        // when it returned.
        assert_ne!(report.role_while_cut, "leader", "{report:?}");
        assert!(report.log_end_at_heal > report.commit_at_heal, "{report:?}");
        assert!(report.truncations_after >= 1, "{report:?}");
    }
    assert!(report.client_commands > 100);
}
