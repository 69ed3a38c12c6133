//! Fault injection against real node processes (`exchange chaos`): a local cluster under steady
//! load from the load generator (another process), whose leader is killed with SIGKILL again and
//! again, the dead node restarted each time. Afterwards it proves what failover must keep:
//! - every command the client sent was answered Committed, and is in the final log exactly once;
//! - no command the client did not send is in the log;
//! - all nodes' journals are record-for-record identical, and their state hashes, event digests
//!   and positions agree;
//!
//! and it measures each failover: from the kill to the first command committed afterwards (the
//! end of the gap in the client's answers that the kill opened).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sequencer::config::{free_base_port, write_local_cluster};

use crate::cluster::{leader_of, wait_settled, wrapped_command, NodeChild};

/// What to do.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub nodes: u8,
    /// Leader kills.
    pub kills: u32,
    /// Offered load, commands per second (open loop).
    pub rate: u64,
    /// Seed of the order flow and of the waits between kills.
    pub seed: u64,
    /// Status lines every this many milliseconds (how fast the harness sees a new leader).
    pub status_ms: u64,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        ChaosOptions {
            nodes: 3,
            kills: 20,
            rate: 2_000,
            seed: 1,
            status_ms: 50,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// Per kill: the node killed, its term, and the time to the first command committed after it
    /// (None when the client's answers showed no gap around the kill).
    pub kills: Vec<(usize, u64, Option<Duration>)>,
    /// Commands the client sent (client sequences 1..=this), all answered and committed.
    pub client_commands: u64,
    /// Leader changes the client made (hints, announcements, silence).
    pub client_leader_changes: u64,
    /// The final term and state hash (equal on every node).
    pub term: u64,
    pub state_hash: String,
    /// Times the mirroring learner moved to another member (its mirror equals the journal).
    pub learner_switches: u64,
    /// Leader changes that no kill caused (a leader starved of CPU for longer than the election
    /// timeout on a loaded machine loses its followers): (deposed node, its term). Safety is
    /// checked across them as across kills; at most `MAX_UNFORCED_ELECTIONS` are tolerated.
    pub unforced_elections: Vec<(usize, u64)>,
}

/// Leader changes without a kill that a run tolerates before it calls the cluster unstable.
pub const MAX_UNFORCED_ELECTIONS: usize = 10;

/// Waits until `probe()` finds something, checking every 5 ms; returns what it found.
fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A child process whose output lines are collected as they come.
struct Collected {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Collected {
    fn spawn(mut command: std::process::Command) -> Result<Collected> {
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("not poisoned").push(line);
            }
        });
        Ok(Collected { child, lines })
    }

    fn finish(mut self, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Let the reader drain the pipe.
                std::thread::sleep(Duration::from_millis(100));
                let lines = self.lines.lock().expect("not poisoned").clone();
                if !status.success() {
                    bail!("exited with {status}:\n{}", lines.join("\n"));
                }
                return Ok(lines);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Collected {
    /// SIGINT, then its output once it has exited (within a minute).
    fn interrupt(self) -> Result<Vec<String>> {
        // SAFETY: signalling our own child, which has not been waited for.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        self.finish(Duration::from_secs(60))
    }

    /// The last output line starting with `prefix`, without it.
    fn last_line(&self, prefix: &str) -> Option<String> {
        let lines = self.lines.lock().expect("not poisoned");
        lines
            .iter()
            .rev()
            .find_map(|l| l.trim_start().strip_prefix(prefix).map(str::to_string))
    }
}

impl Drop for Collected {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `exchange loadgen` printed at the end of a run.
struct LoadSummary {
    client_id: u64,
    /// The client sent client sequences 1..=this.
    client_commands: u64,
    answered: u64,
    rejected: u64,
    leader_changes: u64,
    /// Gaps in the answers (Unix ns), with `--print-gaps`.
    gaps: Vec<(u64, u64)>,
}

impl Collected {
    /// SIGINT to a running `exchange loadgen`: it stops sending, waits for every outstanding
    /// answer and prints its report, which is read back.
    fn stop(self) -> Result<LoadSummary> {
        let lines = self.interrupt().context("the load generator")?;
        let field = |prefix: &str| -> Result<Vec<&str>> {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .map(|rest| rest.split_whitespace().collect())
                .with_context(|| format!("no `{prefix}` line in the load generator's output"))
        };
        let number = |text: Option<&&str>, what: &str| -> Result<u64> {
            text.and_then(|t| t.trim_start_matches("1..=").parse().ok())
                .with_context(|| format!("the load generator's {what}"))
        };
        let committed = field("committed ")?;
        let changes = field("leader changes ")?;
        Ok(LoadSummary {
            client_id: number(field("loadgen: client ")?.first(), "client id")?,
            client_commands: number(changes.last(), "client sequences")?,
            answered: number(committed.first(), "committed count")?,
            rejected: number(committed.get(2), "rejected count")?,
            leader_changes: number(changes.first(), "leader changes")?,
            gaps: lines
                .iter()
                .filter_map(|l| l.strip_prefix("gap "))
                .filter_map(|g| {
                    let (a, b) = g.split_once(' ')?;
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect(),
        })
    }
}

/// The log holds exactly client sequences 1..=`client_commands` of `client_id`, each once, and
/// nothing else.
fn exactly_once(seen: &CommandCounts, client_id: u64, client_commands: u64) -> Result<()> {
    for sequence in 1..=client_commands {
        match seen.get(&(client_id, sequence)) {
            Some(1) => {}
            Some(n) => bail!("client sequence {sequence} is in the log {n} times"),
            None => bail!("client sequence {sequence}, answered Committed, is not in the log"),
        }
    }
    if seen.len() as u64 != client_commands {
        bail!(
            "the log holds {} client commands, the client sent {client_commands}",
            seen.len()
        );
    }
    Ok(())
}

/// Status fields of a node's last line.
pub type StatusFields = BTreeMap<String, String>;
/// How often each (client id, client sequence) is in a log.
pub type CommandCounts = BTreeMap<(u64, u64), u32>;

/// Waits until every node has applied all the leader holds, stops every node cleanly (the
/// followers first: a leader stopped first could be followed by an election among the others,
/// which opens a term the stopped one never saw) and checks that they agree: final positions,
/// state hashes and event digests equal, journals record-for-record identical. Returns node 0's
/// final status fields and how often each (client id, client sequence) is in the log.
pub fn stop_and_verify(
    nodes: Vec<NodeChild>,
    dirs: &[PathBuf],
) -> Result<(StatusFields, CommandCounts)> {
    wait_settled(&nodes, Duration::from_secs(60))?;
    let leader = leader_of(&nodes);
    let mut finals: Vec<Option<StatusFields>> = vec![None; nodes.len()];
    let mut nodes: Vec<(usize, NodeChild)> = nodes.into_iter().enumerate().collect();
    nodes.sort_by_key(|(index, _)| Some(*index) == leader);
    for (index, node) in nodes {
        finals[index] = Some(node.stop()?);
    }
    let finals: Vec<StatusFields> = finals.into_iter().map(|f| f.expect("stopped")).collect();
    for key in [
        "sequence",
        "commit",
        "applied",
        "state_hash",
        "event_digest",
    ] {
        let values: Vec<&String> = finals.iter().map(|f| &f[key]).collect();
        if values.iter().any(|v| *v != values[0]) {
            bail!("the nodes disagree on {key}: {values:?}");
        }
    }
    if let Some(difference) = sequencer::local::compare_journals(dirs)? {
        bail!("journals differ: {difference}");
    }
    let mut seen = BTreeMap::new();
    let mut reader = journal::Reader::open(&dirs[0])?;
    while let Some(record) = reader.next_record()? {
        if record.meta.record_type == sequencer::protocol::RECORD_CLIENT_COMMAND {
            let (client, sequence, _) =
                sequencer::protocol::split_client_command(record.payload)
                    .context("a client command record without its client header")?;
            *seen.entry((client, sequence)).or_insert(0u32) += 1;
        }
    }
    Ok((finals.into_iter().next().expect("a node"), seen))
}

/// Runs a cluster in `dir` and kills its leader `options.kills` times under load.
pub fn kill_leader_repeatedly(
    exe: &Path,
    dir: &Path,
    options: &ChaosOptions,
    on_kill: &mut dyn FnMut(u32, usize, u64),
) -> Result<ChaosReport> {
    let nodes_count = options.nodes;
    let base = free_base_port(nodes_count as u16 + 1)?;
    let configs = write_local_cluster(
        dir,
        nodes_count,
        base,
        &format!("status_interval_ms = {}", options.status_ms),
        "",
    )?;
    let mut nodes: Vec<NodeChild> = configs
        .iter()
        .map(|c| NodeChild::spawn(exe, c, false))
        .collect::<Result<_>>()?;
    // Enough commands to outlast the kills; the generator is stopped (gracefully) after them.
    let commands = options.rate * (20 + 4 * options.kills as u64);
    let mut load = std::process::Command::new(exe);
    load.arg("loadgen")
        .arg("--config")
        .arg(&configs[0])
        .args(["--rate", &options.rate.to_string()])
        .args(["--commands", &commands.to_string()])
        .args(["--seed", &options.seed.to_string()])
        .args(["--gap-ms", "5", "--print-gaps"]);
    let load = Collected::spawn(load).context("starting the load generator")?;
    // A learner that mirrors the committed log, following the first leader: every kill of the
    // node it follows makes it move to another member.
    let mirror = dir.join("mirror");
    let mut learn = std::process::Command::new(exe);
    learn
        .arg("learn")
        .arg("--config")
        .arg(&configs[0])
        .arg("--journal")
        .arg(&mirror)
        .args(["--first", "0", "--progress-ms", "100"]);
    let learner = Collected::spawn(learn).context("starting the learner")?;
    let mut rng = sequencer::sim::Rng::new(options.seed);
    let mut kills = Vec::new();
    let mut last_term = 0u64;
    let find_leader = |nodes: &[NodeChild], after_term: u64| {
        leader_of(nodes)
            .map(|l| (l, nodes[l].get("term")))
            .filter(|&(_, term)| term > after_term)
    };
    let mut unforced_elections = Vec::new();
    while kills.len() < options.kills as usize {
        // A leader of a newer term, committing the load.
        let (leader, term) = wait_for("a new leader", Duration::from_secs(20), || {
            find_leader(&nodes, last_term)
        })?;
        let commit = nodes[leader].get("commit");
        wait_for("the new leader committing", Duration::from_secs(20), || {
            (nodes[leader].get("commit") > commit).then_some(())
        })?;
        std::thread::sleep(Duration::from_millis(rng.between(200, 600)));
        // The leader may have lost its followers by itself (starved of CPU beyond the election
        // timeout): not a kill to measure, but everything checked at the end must hold across
        // it too. Wait for the leader of the newer term and kill that one.
        if find_leader(&nodes, last_term) != Some((leader, term)) {
            unforced_elections.push((leader, term));
            if unforced_elections.len() > MAX_UNFORCED_ELECTIONS {
                bail!(
                    "the leader changed without a kill {} times: {unforced_elections:?}",
                    unforced_elections.len()
                );
            }
            last_term = term;
            continue;
        }
        let at = sequencer::clock::unix_now_ns();
        nodes[leader].kill_hard()?;
        let kill = kills.len() as u32;
        kills.push((leader, term, at));
        on_kill(kill, leader, term);
        last_term = term;
        std::thread::sleep(Duration::from_millis(rng.between(50, 300)));
        nodes[leader] = NodeChild::spawn(exe, &configs[leader], false)?;
    }
    wait_for(
        "a leader after the last kill",
        Duration::from_secs(20),
        || find_leader(&nodes, last_term),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let load = load.stop()?;
    if load.rejected != 0 {
        bail!("the load generator saw {} rejects", load.rejected);
    }
    if load.answered + 1 != load.client_commands {
        bail!(
            "{} measured commands answered Committed, but 2..={} were sent",
            load.answered,
            load.client_commands
        );
    }
    wait_settled(&nodes, Duration::from_secs(60))?;
    let dirs: Vec<PathBuf> = (0..nodes_count)
        .map(|id| dir.join(format!("journal-{id}")))
        .collect();
    let sequence = nodes[0].get("sequence");
    let learned = wait_for(
        "the learner to reach the end of the log",
        Duration::from_secs(20),
        || {
            let line = learner.last_line("")?;
            let at = line
                .split_whitespace()
                .skip_while(|w| *w != "sequence")
                .nth(1)?;
            (at.parse::<u64>().ok()? >= sequence).then_some(line)
        },
    )?;
    let learned_lines = learner.interrupt().context("the learner")?;
    let (last, seen) = stop_and_verify(nodes, &dirs)?;
    exactly_once(&seen, load.client_id, load.client_commands)?;
    // The learner saw every committed record once, in order, across every kill: its mirror is
    // record for record the cluster's journal.
    if let Some(difference) = sequencer::local::compare_journals(&[dirs[0].clone(), mirror])? {
        bail!(
            "the learner's mirror differs from the cluster's journal: {difference}\nlast progress: {learned}\n{}",
            learned_lines.join("\n")
        );
    }
    let learner_switches = learned_lines
        .iter()
        .find_map(|l| l.strip_prefix("learned "))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "switches").nth(1))
        .and_then(|n| n.parse().ok())
        .context("the learner's final line")?;
    let kills = kills
        .into_iter()
        .map(|(node, term, at)| {
            // The answers stopped around the kill (a few already on their way may still arrive
            // just after it); the first answer after the outage ends the failover: the end of
            // the longest gap that began by 50 ms after the kill and ended after it.
            let failover = load
                .gaps
                .iter()
                .filter(|&&(from, to)| to > at && from <= at + 50_000_000)
                .max_by_key(|&&(from, to)| to - from)
                .map(|&(_, to)| Duration::from_nanos(to - at));
            (node, term, failover)
        })
        .collect();
    Ok(ChaosReport {
        kills,
        client_commands: load.client_commands,
        client_leader_changes: load.leader_changes,
        term: last.get("term").and_then(|t| t.parse().ok()).unwrap_or(0),
        learner_switches,
        state_hash: last.get("state_hash").cloned().unwrap_or_default(),
        unforced_elections,
    })
}

/// Failover times of a report, sorted (kills whose gap was not seen are left out).
pub fn failover_times(report: &ChaosReport) -> Vec<Duration> {
    let mut times: Vec<Duration> = report.kills.iter().filter_map(|k| k.2).collect();
    times.sort();
    times
}

/// Network namespaces joined only to each other: one per node and one for the client, each with
/// a veth link to a bridge in a switch namespace (addresses 10.99.0.1.. on the bridge's subnet,
/// no route anywhere else). Removed on drop.
pub struct Namespaces {
    prefix: String,
    members: usize,
}

fn ip(args: &[&str]) -> Result<()> {
    let output = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

impl Namespaces {
    /// `members` namespaces `<prefix>-0..` plus `<prefix>-sw` (the bridge); needs root.
    pub fn create(prefix: &str, members: usize) -> Result<Namespaces> {
        let namespaces = Namespaces {
            prefix: prefix.to_string(),
            members,
        };
        let switch = format!("{prefix}-sw");
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for i in 0..members {
            let ns = namespaces.name(i);
            let (inside, outside) = (format!("{prefix}{i}a"), format!("{prefix}{i}b"));
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &inside, "type", "veth", "peer", "name", &outside,
            ])?;
            ip(&["link", "set", &inside, "netns", &ns])?;
            ip(&["link", "set", &outside, "netns", &switch])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", namespaces.address(i)),
                "dev",
                &inside,
            ])?;
            ip(&["-n", &ns, "link", "set", &inside, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &switch, "link", "set", &outside, "master", "br0"])?;
            ip(&["-n", &switch, "link", "set", &outside, "up"])?;
        }
        Ok(namespaces)
    }

    /// Namespace `i`'s name.
    pub fn name(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// Namespace `i`'s address.
    pub fn address(&self, i: usize) -> String {
        format!("10.99.0.{}", i + 1)
    }

    /// Cuts namespace `i` off from `others` (both ways, by blackhole routes on each side), or
    /// heals that cut; every other path (a client's, say) stays.
    pub fn cut(&self, i: usize, others: &[usize], cut: bool) -> Result<()> {
        let verb = if cut { "add" } else { "del" };
        for &j in others {
            for (from, to) in [(i, j), (j, i)] {
                let target = format!("{}/32", self.address(to));
                ip(&["-n", &self.name(from), "route", verb, "blackhole", &target])?;
            }
        }
        Ok(())
    }

    /// Takes namespace `i`'s link down (`up == false`) or up again.
    pub fn set_link(&self, i: usize, up: bool) -> Result<()> {
        ip(&[
            "-n",
            &format!("{}-sw", self.prefix),
            "link",
            "set",
            &format!("{}{i}b", self.prefix),
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends inside it, and with them their peers.
        for i in 0..self.members {
            let _ = ip(&["netns", "delete", &self.name(i)]);
        }
        let _ = ip(&["netns", "delete", &format!("{}-sw", self.prefix)]);
    }
}

/// What the partition test saw.
#[derive(Debug, Clone)]
pub struct PartitionReport {
    /// Namespaces (separate hosts on a bridge) or SIGSTOP (on one loopback).
    pub isolation: &'static str,
    pub old_leader: usize,
    pub old_term: u64,
    /// The old leader's commit position when it was cut off, and when it came back.
    pub commit_at_cut: u64,
    pub commit_at_heal: u64,
    /// Its log end when it came back (above the commit: records it could not commit).
    pub log_end_at_heal: u64,
    /// Its role while cut off (namespaces: it keeps running and steps down by itself).
    pub role_while_cut: String,
    /// Divergent suffixes it removed after it returned (the records it could not commit).
    pub truncations_after: u64,
    pub new_leader: usize,
    pub new_term: u64,
    /// The old leader's term and role after it returned.
    pub term_after: u64,
    pub role_after: String,
    pub client_commands: u64,
}

/// A 3-node cluster under load; the leader is cut off from the other nodes (blackhole routes
/// between its namespace and theirs: the client still reaches it, so it goes on sequencing
/// commands it cannot commit; without namespaces the process is stopped with SIGSTOP) for
/// `cut_for`, then returns. Proves
/// that the old leader committed nothing while cut off, that the others elected a leader of a
/// higher term, that the old leader follows it when it returns, and that afterwards every command
/// is in every journal exactly once and the nodes agree.
pub fn partition_old_leader(
    exe: &Path,
    dir: &Path,
    namespaces: Option<&Namespaces>,
    cut_for: Duration,
) -> Result<PartitionReport> {
    let nodes_count = 3u8;
    let base = free_base_port(nodes_count as u16 + 1)?;
    let configs = write_local_cluster(dir, nodes_count, base, "status_interval_ms = 50", "")?;
    if let Some(ns) = namespaces {
        // Every endpoint on its own host's address.
        for config in &configs {
            let mut text = std::fs::read_to_string(config)?;
            for i in 0..nodes_count as u16 {
                for port in [base + i, base + 100 + i] {
                    text = text.replace(
                        &format!("127.0.0.1:{port}"),
                        &format!("{}:{port}", ns.address(i as usize)),
                    );
                }
            }
            std::fs::write(config, text)?;
        }
    }
    let wrapper = |i: usize| -> Vec<String> {
        namespaces.map_or(Vec::new(), |ns| {
            vec!["ip".into(), "netns".into(), "exec".into(), ns.name(i)]
        })
    };
    let mut nodes = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let w = wrapper(i);
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        nodes.push(NodeChild::spawn_in(&w, exe, config, false)?);
    }
    let client = wrapper(nodes_count as usize);
    let client: Vec<&str> = client.iter().map(String::as_str).collect();
    let mut load = wrapped_command(&client, exe);
    load.arg("loadgen").arg("--config").arg(&configs[0]).args([
        "--rate",
        "1000",
        "--commands",
        "1000000",
        "--gap-ms",
        "20",
    ]);
    if let Some(ns) = namespaces {
        load.args(["--response-host", &ns.address(nodes_count as usize)]);
    }
    let load = Collected::spawn(load).context("starting the load generator")?;
    let old = wait_for("a leader", Duration::from_secs(30), || leader_of(&nodes))?;
    let old_term = nodes[old].get("term");
    let commit = nodes[old].get("commit");
    wait_for("the leader committing", Duration::from_secs(30), || {
        (nodes[old].get("commit") > commit + 1000).then_some(())
    })?;
    let others: Vec<usize> = (0..nodes_count as usize).filter(|&i| i != old).collect();
    match namespaces {
        Some(ns) => ns.cut(old, &others, true)?,
        None => nodes[old].signal(libc::SIGSTOP),
    }
    // What was in flight settles within a few status intervals.
    std::thread::sleep(Duration::from_millis(150));
    let commit_at_cut = nodes[old].get("commit");
    let new_leader = wait_for("a new leader", Duration::from_secs(10), || {
        (0..nodes.len())
            .filter(|&i| i != old)
            .find(|&i| nodes[i].get_str("role") == "leader" && nodes[i].get("term") > old_term)
    })?;
    std::thread::sleep(cut_for);
    let role_while_cut = nodes[old].get_str("role");
    let commit_at_heal = nodes[old].get("commit");
    let log_end_at_heal = nodes[old].get("log_end");
    match namespaces {
        Some(ns) => ns.cut(old, &others, false)?,
        None => nodes[old].signal(libc::SIGCONT),
    }
    let new_term = nodes[new_leader].get("term");
    wait_for(
        "the old leader following the new one",
        Duration::from_secs(10),
        || {
            (nodes[old].get_str("role") == "follower" && nodes[old].get("term") >= new_term)
                .then_some(())
        },
    )?;
    let term_after = nodes[old].get("term");
    let role_after = nodes[old].get_str("role");
    std::thread::sleep(Duration::from_millis(500));
    let load = load.stop()?;
    wait_settled(&nodes, Duration::from_secs(60))?;
    // Read once it holds the leader's log: following the new term comes before the repair.
    let truncations_after = nodes[old].get("truncations");
    let dirs: Vec<PathBuf> = (0..nodes_count)
        .map(|id| dir.join(format!("journal-{id}")))
        .collect();
    let (_, seen) = stop_and_verify(nodes, &dirs)?;
    exactly_once(&seen, load.client_id, load.client_commands)?;
    Ok(PartitionReport {
        isolation: if namespaces.is_some() {
            "network namespaces"
        } else {
            "SIGSTOP"
        },
        old_leader: old,
        old_term,
        commit_at_cut,
        commit_at_heal,
        log_end_at_heal,
        role_while_cut,
        truncations_after,
        new_leader,
        new_term,
        term_after,
        role_after,
        client_commands: load.client_commands,
    })
}
