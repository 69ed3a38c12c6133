//! `exchange demo`: a replicated cluster in one process with a seeded order flow, then the proof
//! that the replicas agree (journals byte-identical, state hashes and event digests equal, every
//! journal verifies).

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

pub fn run(commands: u64, nodes: u8, seed: u64, dir: Option<PathBuf>) -> Result<ExitCode> {
    let temporary = match &dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("exchange-demo").tempdir()?),
    };
    let dir = dir.unwrap_or_else(|| temporary.as_ref().expect("made above").path().to_path_buf());
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
    match cluster.compare_journals()? {
        None => println!("  journals            byte-identical on all {nodes} nodes"),
        Some(difference) => {
            println!("  journals            DIFFER: {difference}");
            agree = false;
        }
    }
    if agree {
        println!("agreement: every replica has the same journal, state hash and event stream");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("DISAGREEMENT: the replicas differ");
        Ok(ExitCode::FAILURE)
    }
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
