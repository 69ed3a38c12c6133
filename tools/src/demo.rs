//! `exchange demo`: a replicated cluster with a seeded order flow, then the proof that the
//! replicas agree (journals byte-identical, state hashes and event digests equal, every journal
//! verifies and replays offline to the same state). By default the nodes are processes talking
//! Aeron over UDP on 127.0.0.1 and the order flow comes from the load generator over Aeron;
//! `--in-process` runs the nodes in this process over an in-memory transport.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sequencer::local::LocalCluster;
use sequencer::replica::Submitted;
use sequencer::workload::{add_instrument, Workload};

const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
const CHECKPOINT_INTERVAL: u64 = 10_000;
/// Commands submitted between two duty cycles of the cluster (what one poll would bring).
const BATCH: u64 = 256;
const CLIENT_ID: u64 = 1;

pub fn run_in_process(
    commands: u64,
    nodes: u8,
    seed: u64,
    dir: Option<PathBuf>,
) -> Result<ExitCode> {
    let (dir, _temporary) = demo_dir(dir)?;
    println!(
        "exchange demo: {nodes}-node cluster in this process, journals in {}",
        dir.display()
    );
    println!("  order flow: {commands} commands (seed {seed}): limits around a drifting mid, cancels, market orders");

    let clock = Instant::now();
    let now = || clock.elapsed().as_nanos() as u64 + 1;
    let mut cluster = LocalCluster::open(&dir, nodes, SEGMENT_SIZE, CHECKPOINT_INTERVAL, now())
        .context("starting the cluster")?;
    let mut workload = Workload::new(seed, 100);
    let mut client_sequence = cluster.nodes[0]
        .replica
        .client_sequence_last(CLIENT_ID)
        .unwrap_or(0);
    client_sequence += 1;
    if cluster.nodes[0]
        .replica
        .client_sequence_last(CLIENT_ID)
        .is_none()
    {
        cluster.submit(
            now(),
            CLIENT_ID,
            client_sequence,
            add_instrument().as_bytes(),
        )?;
    }

    // Commit latency, from submission to being applied on the leader, per command.
    let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut submitted_at: std::collections::VecDeque<(u64, u64)> =
        std::collections::VecDeque::new();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut sent = 0u64;
    while sent < commands {
        for _ in 0..BATCH.min(commands - sent) {
            client_sequence += 1;
            let command = workload.next_command();
            let at = now();
            match cluster.submit(at, CLIENT_ID, client_sequence, command.as_bytes())? {
                Submitted::Sequenced { sequence, .. } => submitted_at.push_back((sequence, at)),
                other => anyhow::bail!("the leader refused a command: {other:?}"),
            }
            sent += 1;
        }
        step(
            &mut cluster,
            &mut workload,
            &mut latency,
            &mut submitted_at,
            now(),
        )?;
        if last_report.elapsed() > Duration::from_secs(1) {
            last_report = Instant::now();
            println!(
                "  {sent:>10} sent, {:>10} applied on every node, {:>8} trades",
                cluster
                    .nodes
                    .iter()
                    .map(|n| n.applier.commands_applied())
                    .min()
                    .unwrap_or(0),
                cluster.nodes[0].state.sink.trades
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.settled() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the cluster did not settle within 30 s"
        );
        step(
            &mut cluster,
            &mut workload,
            &mut latency,
            &mut submitted_at,
            now(),
        )?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed();

    let leader = &cluster.nodes[0];
    let tally = &leader.state.sink;
    println!("\nsummary");
    println!("  commands committed  {} in {:.2?} ({:.2} M commands/s through sequencing, replication, commit and matching on all nodes)", leader.applier.commands_applied(), elapsed, leader.applier.commands_applied() as f64 / elapsed.as_secs_f64() / 1e6);
    println!(
        "  events              {} ({} accepted, {} rejected, {} trades)",
        tally.events, tally.accepted, tally.rejected, tally.trades
    );
    println!(
        "  commit latency      p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs (in process, batches of {BATCH})",
        latency.value_at_quantile(0.5) / 1000,
        latency.value_at_quantile(0.99) / 1000,
        latency.value_at_quantile(0.999) / 1000,
        latency.max() / 1000
    );
    let mut agree = true;
    for (id, node) in cluster.nodes.iter().enumerate() {
        let report = journal::verify(&cluster.dirs()[id])
            .with_context(|| format!("verifying node {id}'s journal"))?;
        println!(
            "  node {id}: state hash {:016x}, event digest {:016x}, {} records verified, {} checkpoints verified",
            node.state.matcher.state_hash(),
            node.state.sink.digest,
            report.records,
            node.applier.checkpoints_verified()
        );
        agree &= node.state.matcher.state_hash() == leader.state.matcher.state_hash()
            && node.state.sink.digest == tally.digest;
    }
    Ok(conclude(agree, cluster.compare_journals()?, nodes))
}

fn step(
    cluster: &mut LocalCluster,
    workload: &mut Workload,
    latency: &mut hdrhistogram::Histogram<u64>,
    submitted_at: &mut std::collections::VecDeque<(u64, u64)>,
    now_ns: u64,
) -> Result<()> {
    cluster.step(now_ns, &mut |node, applied| {
        if node == 0 {
            while let Some(&(sequence, at)) = submitted_at.front() {
                if sequence > applied.sequence {
                    break;
                }
                submitted_at.pop_front();
                if sequence == applied.sequence {
                    latency.saturating_record(now_ns.saturating_sub(at).max(1));
                }
            }
        }
    })?;
    for (account, order) in std::mem::take(&mut cluster.nodes[0].state.sink.recent_accepted) {
        workload.accepted(account, order);
    }
    Ok(())
}

/// The demo over real processes: `nodes` node processes (`exchange node`), each with its own
/// embedded media driver, replicating over UDP on 127.0.0.1; the load generator sends `commands`
/// (open loop at `rate` per second, or closed loop when 0) over Aeron ingress; then every node is
/// stopped cleanly and the replicas are compared.
pub fn run_processes(
    commands: u64,
    nodes: u8,
    seed: u64,
    rate: u64,
    dir: Option<PathBuf>,
) -> Result<ExitCode> {
    use crate::cluster::{install_signal_handlers, wait_settled, NodeChild, STOP};
    use sequencer::config::free_base_port;
    use sequencer::loadgen::{self, percentiles_us, LoadConfig};

    let (dir, _temporary) = demo_dir(dir)?;
    install_signal_handlers();
    let base = free_base_port(nodes as u16 + 1)?;
    let configs =
        sequencer::config::write_local_cluster(&dir, nodes, base, "status_interval_ms = 100", "")
            .with_context(|| format!("writing configuration files in {}", dir.display()))?;
    println!(
        "exchange demo: {nodes} node processes (each with its own Aeron media driver), UDP on 127.0.0.1:{base}.., configuration and journals in {}",
        dir.display()
    );
    let exe = std::env::current_exe()?;
    let children = configs
        .iter()
        .map(|c| NodeChild::spawn(&exe, c, false))
        .collect::<Result<Vec<_>>>()?;
    println!(
        "  order flow: {commands} commands (seed {seed}) from the load generator over Aeron, {}",
        if rate > 0 {
            format!("open loop at {rate} commands/s")
        } else {
            "closed loop".into()
        }
    );
    let driver = sequencer::driver::EmbeddedDriver::launch_invoked(
        &sequencer::driver::unique_dir("demo-client"),
    )?;
    let aeron = sequencer::transport::connect(driver.dir())?;
    let invoke = || {
        driver.do_work();
    };
    let client_id = loadgen::fresh_client_id();
    let mut config = LoadConfig::new(
        &format!("127.0.0.1:{}", base + 100),
        &format!("127.0.0.1:{}", base + nodes as u16),
        client_id,
    );
    config.ingress = (0..nodes as u16)
        .map(|i| format!("127.0.0.1:{}", base + 100 + i))
        .collect();
    config.rate = rate;
    config.commands = commands;
    config.seed = seed;
    config.in_flight_max = 8192;
    let started = Instant::now();
    let report = loadgen::run(&aeron, &config, &STOP, &invoke, &mut |sent, answered| {
        println!(
            "  {:>5.1}s  sent {sent:>9}  committed {answered:>9}  leader sequence {}",
            started.elapsed().as_secs_f64(),
            children[0].get("sequence")
        );
    })
    .context("running the order flow")?;
    drop(aeron);
    drop(driver);
    wait_settled(&children, Duration::from_secs(60))?;
    let finals = children
        .into_iter()
        .map(|c| c.stop())
        .collect::<Result<Vec<_>>>()?;

    println!("\nsummary");
    println!(
        "  commands committed  {} of {commands} ({} rejected, {} resent) at {:.0} commands/s",
        report.committed,
        report.rejected,
        report.resends,
        report.throughput()
    );
    println!(
        "  commit round trip   {} (client → leader → majority → applied → client, over UDP)",
        percentiles_us(&report.histogram)
    );
    println!("  trades              {}", finals[0]["trades"]);
    let dirs: Vec<PathBuf> = (0..nodes)
        .map(|id| dir.join(format!("journal-{id}")))
        .collect();
    let mut agree = report.committed == commands;
    for (id, fields) in finals.iter().enumerate() {
        let verified =
            journal::verify(&dirs[id]).with_context(|| format!("verifying node {id}'s journal"))?;
        let replayed = crate::replay_hash(&dirs[id], 10_000)?;
        println!(
            "  node {id}: state hash {}, event digest {}, {} records verified, {} checkpoints verified, offline replay {replayed:016x}",
            fields["state_hash"],
            fields["event_digest"],
            verified.records,
            fields["checkpoints_verified"]
        );
        agree &= fields["state_hash"] == finals[0]["state_hash"]
            && fields["event_digest"] == finals[0]["event_digest"]
            && format!("{replayed:016x}") == fields["state_hash"];
    }
    Ok(conclude(
        agree,
        sequencer::local::compare_journals(&dirs)?,
        nodes,
    ))
}

/// Prints how the journals compare and the verdict; the exit status says whether the replicas
/// agree (`agree` covers the state hashes and event digests).
fn conclude(agree: bool, journals_differ: Option<String>, nodes: u8) -> ExitCode {
    let agree = match journals_differ {
        None => {
            println!("  journals            byte-identical on all {nodes} nodes");
            agree
        }
        Some(difference) => {
            println!("  journals            DIFFER: {difference}");
            false
        }
    };
    if agree {
        println!("agreement: every replica has the same journal, state hash and event stream");
        ExitCode::SUCCESS
    } else {
        println!("DISAGREEMENT: the replicas differ");
        ExitCode::FAILURE
    }
}

/// The demo's directory: the one given, or a temporary one (removed when the guard drops).
pub fn demo_dir(dir: Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    Ok(match dir {
        Some(dir) => (dir, None),
        None => {
            let temporary = tempfile::Builder::new().prefix("exchange-demo").tempdir()?;
            (temporary.path().to_path_buf(), Some(temporary))
        }
    })
}
