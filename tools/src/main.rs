//! `exchange`: the command line of the exchange core.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use journal::Reader;

use tools::{cluster, demo};

mod md;

/// The matcher's large arrays on transparent huge pages (see `sequencer::huge_pages`).
#[global_allocator]
static ALLOCATOR: sequencer::huge_pages::HugePageAlloc = sequencer::huge_pages::HugePageAlloc;

#[derive(Parser)]
#[command(
    name = "exchange",
    version,
    about = "A low-latency exchange core with a replicated, checksummed journal."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the demo: a replicated cluster of node processes (each with its own Aeron media
    /// driver, UDP on 127.0.0.1), the FIX gateway with simulated FIX traders, the ITCH feed
    /// publisher with a subscriber rebuilding the books, and the load generator over Aeron, for
    /// --duration seconds with progress every second; then proof that everything agrees
    /// (byte-identical journals, equal state hashes and event digests, offline replay of every
    /// journal to the same state, the gateway's matcher replica, the subscriber's books equal to
    /// the feed the journal implies, every FIX request answered). Exit status 1 if not.
    Demo {
        /// Seconds of order flow.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Commands per second from the load generator over Aeron ingress, open loop (0: closed
        /// loop if --commands is given, no load generator otherwise).
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// Commands from the load generator (default: rate × duration). With --in-process: the
        /// commands to run (default 1,000,000).
        #[arg(long)]
        commands: Option<u64>,
        /// Simulated FIX traders (0 to 3: sessions CLIENT1, CLIENT2 in FIX.4.4, CLIENT3 in
        /// FIX.4.2), each sending orders, cancels and replaces around a drifting mid.
        #[arg(long, default_value_t = 3)]
        fix_clients: u8,
        /// Requests per second of each FIX trader (open loop).
        #[arg(long, default_value_t = 200)]
        fix_rate: u64,
        /// Run the nodes in this process over an in-memory transport instead (no gateway, feed
        /// or FIX traders: the replication and matching work alone).
        #[arg(long)]
        in_process: bool,
        /// Nodes in the cluster.
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Seed of the order flows.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory for configuration, journals, session stores, the feed journal and the FIX
        /// traders' fills (default: a temporary directory, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Runs the deterministic simulator of the replication protocol (lossy, reordering,
    /// duplicating network; crashes, partitions, delay spikes, clock drift; elections) and checks
    /// its invariants for every seed.
    Simulate {
        /// Number of seeds to run.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Run exactly this seed and describe it (to replay a failure).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Runs one node of a cluster in this process (its own embedded media driver), as configured
    /// in a TOML file (see config/node.example.toml). Stops cleanly on SIGINT or SIGTERM.
    Node {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// A local cluster of node processes on 127.0.0.1.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Sends a seeded order flow to the leader over Aeron and measures the commit round trip
    /// (HdrHistogram). Open loop at a fixed rate (latency from each command's intended send time),
    /// or closed loop with --rate 0.
    Loadgen(cluster::LoadOptions),
    /// Follows the cluster's committed log as a learner (asking the next member when the one it
    /// follows falls silent) and mirrors it into a journal of its own, record for record: a live
    /// backup or an auditor's tap. Runs until SIGINT/SIGTERM or --duration.
    Learn(tools::learn::LearnOptions),
    /// The ITCH 5.0 market-data feed over Aeron: `md subscribe` rebuilds every book from the
    /// feed, shows the top levels and verifies the book checksums (exit status 1 on a
    /// mismatch); `md record --out FILE` writes the messages in the ITCH binary file layout.
    Md {
        #[command(subcommand)]
        command: md::MdCommand,
    },
    /// Runs the FIX 4.2/4.4 gateway in front of a cluster, as configured in a TOML file (see
    /// config/gateway.example.toml): io_uring TCP acceptor, sessions persisted in their store,
    /// orders to the cluster exactly once across failovers, execution reports from the committed
    /// log. Stops cleanly on SIGINT or SIGTERM.
    Gateway {
        /// The gateway's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Fault test: a local cluster of node processes under load whose leader is killed with
    /// SIGKILL again and again (the dead node restarted each time); then proves that every
    /// command the client sent is in the log exactly once and nothing else, that all journals
    /// are identical and all state hashes equal, and reports each failover time (kill → first
    /// command committed after it). Exit status 1 on any violation.
    Chaos {
        /// Leader kills.
        #[arg(long, default_value_t = 20)]
        kills: u32,
        /// Nodes in the cluster.
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Offered load (commands per second, open loop).
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Seed of the order flow and of the waits between kills.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory for configuration and journals (default: temporary, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Live counters of a running node, read from the memory-mapped counters file it keeps in
    /// its journal directory (role, term, positions, follower lag, rates, rejects, errors,
    /// sampled commit delay, top of book), without disturbing it. Prints a report every
    /// --interval seconds.
    Stat(tools::stat::StatOptions),
    /// A terminal dashboard of a local cluster (every node's counters file under --dir): roles,
    /// positions, lag, rates, commit delay percentiles, top of book per instrument. `q` quits;
    /// --once prints one frame as text.
    Top(tools::stat::TopOptions),
    /// Operator and auditor tools for a journal directory.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Writes a configuration file per node into DIR and starts every node as its own process
    /// (each with its own media driver), the FIX gateway and the market-data feed publisher;
    /// stays up until SIGINT/SIGTERM (or --duration), then stops everything cleanly. Journals
    /// live in DIR/journal-<id>. Built in: instruments DEMO, ACME and XYZ, FIX sessions CLIENT1
    /// and CLIENT2 (FIX.4.4) and CLIENT3 (FIX.4.2) to EXCH; --config FILE changes any of it
    /// (config/cluster.example.toml); options given here win over the file.
    Up {
        /// A cluster file: [local] options, keys for every node's [node], [cluster], [journal]
        /// and [aeron] sections, and the gateway's [[instrument]] and [[session]] tables.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Nodes (default 3).
        #[arg(long)]
        nodes: Option<u8>,
        /// Directory of configuration files and journals (default ./cluster).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replication ports are base..base+nodes, ingress ports base+100.. (default 20100).
        #[arg(long)]
        base_port: Option<u16>,
        /// Stop by itself after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// TCP port of the FIX gateway started with the cluster (default 9878; 0: no gateway).
        #[arg(long)]
        fix_port: Option<u16>,
        /// Do not start the market-data feed publisher (by default `exchange md publish` runs
        /// with the cluster on the default channels, so `exchange md subscribe` just works).
        #[arg(long)]
        no_feed: bool,
        /// Each node prints a status line this often (milliseconds; 0 = at start and exit only;
        /// default 5000).
        #[arg(long)]
        status_ms: Option<u64>,
        /// Idle strategy of every node and its media driver: backoff (quiet; the default),
        /// yield (low latency, always busy) or busy-spin (dedicated cores only).
        #[arg(long)]
        idle: Option<String>,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Checks every record's checksum and sequence and that nothing follows the end; reports the
    /// first problem with its file and offset. Read-only. Exit status 1 on a problem.
    Verify { dir: PathBuf },
    /// Rebuilds the matcher state from the journal (every committed client command, in order, up to
    /// a sequence number), verifying the checkpoints on the way; prints the state hash, the event
    /// digest and the best bid and offer.
    Replay {
        dir: PathBuf,
        /// Stop after the record with this sequence number.
        #[arg(long)]
        to: Option<u64>,
        /// The cluster's checkpoint interval (commands), to verify its checkpoint records.
        #[arg(long, default_value_t = 10_000)]
        checkpoint_interval: u64,
    },
    /// Compares two journals (two nodes' copies of the log) record by record and names the first
    /// difference (position, sequence, term, type, first differing byte), or where one ends;
    /// then replays both and compares their state hashes. Exit status 1 if they differ.
    Diff { a: PathBuf, b: PathBuf },
    /// Prints records, human-readably or as JSON lines.
    Dump {
        dir: PathBuf,
        /// First sequence number to print.
        #[arg(long)]
        from: Option<u64>,
        /// Last sequence number to print.
        #[arg(long)]
        to: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo {
            duration,
            rate,
            commands,
            fix_clients,
            fix_rate,
            in_process,
            nodes,
            seed,
            dir,
        } => {
            if in_process {
                demo::run_in_process(commands.unwrap_or(1_000_000), nodes, seed, dir)
            } else {
                demo::run_processes(&demo::DemoOptions {
                    duration: std::time::Duration::from_secs(duration),
                    rate,
                    commands,
                    fix_clients,
                    fix_rate,
                    nodes,
                    seed,
                    dir,
                })
            }
        }
        Command::Simulate { seeds, start, seed } => simulate(seeds, start, seed),
        Command::Node { config } => cluster::node(&config),
        Command::Cluster {
            command:
                ClusterCommand::Up {
                    config,
                    nodes,
                    dir,
                    base_port,
                    duration,
                    status_ms,
                    idle,
                    fix_port,
                    no_feed,
                },
        } => cluster::ClusterUp::resolve(
            config.as_deref(),
            cluster::ClusterUpOptions {
                local: tools::cluster_file::LocalSection {
                    nodes,
                    dir,
                    base_port,
                    fix_port,
                    feed: no_feed.then_some(false),
                },
                duration: duration.map(std::time::Duration::from_secs),
                status_ms,
                idle,
            },
        )
        .and_then(|up| cluster::cluster_up(&up)),
        Command::Loadgen(options) => cluster::loadgen(options),
        Command::Stat(options) => tools::stat::stat(options),
        Command::Top(options) => tools::stat::top(options),
        Command::Learn(options) => tools::learn::learn(options),
        Command::Gateway { config } => tools::gateway_cmd::run(&config),
        Command::Md { command } => md::run(command),
        Command::Chaos {
            kills,
            nodes,
            rate,
            seed,
            dir,
        } => chaos(kills, nodes, rate, seed, dir),
        Command::Journal {
            command: JournalCommand::Verify { dir },
        } => verify(&dir),
        Command::Journal {
            command:
                JournalCommand::Replay {
                    dir,
                    to,
                    checkpoint_interval,
                },
        } => replay(&dir, to, checkpoint_interval),
        Command::Journal {
            command:
                JournalCommand::Dump {
                    dir,
                    from,
                    to,
                    json,
                    limit,
                },
        } => dump(&dir, from, to, json, limit),
        Command::Journal {
            command: JournalCommand::Diff { a, b },
        } => diff(&a, &b),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn verify(dir: &Path) -> Result<ExitCode> {
    match journal::verify(dir) {
        Ok(report) => {
            println!(
                "ok: {} records (sequence {}..={}), {} payload bytes, {} segment(s) of {} bytes, end position {}",
                report.records,
                report.first_sequence.map_or("-".into(), |s| s.to_string()),
                report.last_sequence.map_or("-".into(), |s| s.to_string()),
                report.payload_bytes,
                report.segments,
                report.segment_size,
                report.end_position
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ journal::JournalError::Corrupt { .. }) => {
            println!("CORRUPT: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e).with_context(|| format!("verifying {}", dir.display())),
    }
}

fn replay(dir: &Path, to: Option<u64>, checkpoint_interval: u64) -> Result<ExitCode> {
    use sequencer::log::Log;

    let (mut log, mut state, mut applier) = tools::open_replay(dir, checkpoint_interval)?;
    // The position after the record with sequence `to` (or the end of the journal).
    let mut limit = u64::MAX;
    if let Some(to) = to {
        let mut reader = Reader::open(dir)?;
        reader.seek_sequence(to.saturating_add(1))?;
        limit = reader.position();
    }
    let (started, started_cpu) = (Instant::now(), sequencer::clock::thread_cpu_time());
    let applied = applier.apply_committed(&mut log, limit, &mut state, &mut |_| {})?;
    let (elapsed, elapsed_cpu) = (
        started.elapsed(),
        sequencer::clock::thread_cpu_time() - started_cpu,
    );
    let _ = log.end();
    println!(
        "replayed {applied} commands up to sequence {} in {elapsed:.2?} ({:.2} M commands/s, journal reading included; {:.2} M per CPU-second of the replaying thread)",
        applier.applied_sequence(),
        applied as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6,
        applied as f64 / elapsed_cpu.as_secs_f64().max(1e-9) / 1e6
    );
    println!("checkpoints verified {}", applier.checkpoints_verified());
    println!("state hash {:016x}", state.matcher.state_hash());
    println!(
        "event digest {:016x} ({} events, {} trades)",
        state.sink.digest, state.sink.events, state.sink.trades
    );
    let instrument = sequencer::workload::INSTRUMENT_ID;
    let level = |side| {
        state
            .matcher
            .best(instrument, side)
            .map_or("-".to_string(), |l| format!("{} x {}", l.quantity, l.price))
    };
    println!(
        "instrument {instrument}: best bid {}, best offer {}",
        level(matcher::Side::Buy),
        level(matcher::Side::Sell)
    );
    Ok(ExitCode::SUCCESS)
}

fn diff(a: &Path, b: &Path) -> Result<ExitCode> {
    let open = |dir: &Path| Reader::open(dir).with_context(|| format!("opening {}", dir.display()));
    let (mut ra, mut rb) = (open(a)?, open(b)?);
    let describe = |r: &journal::Record<'_>| {
        format!(
            "sequence {} term {} type {} ({} payload bytes)",
            r.meta.sequence,
            r.meta.term,
            r.meta.record_type,
            r.payload.len()
        )
    };
    let mut records = 0u64;
    let mut same = true;
    loop {
        match (ra.next_record()?, rb.next_record()?) {
            (None, None) => break,
            (Some(x), None) => {
                println!(
                    "{} ends at position {} after {records} identical records; {} continues with {}",
                    b.display(),
                    x.position,
                    a.display(),
                    describe(&x)
                );
                same = false;
                break;
            }
            (None, Some(y)) => {
                println!(
                    "{} ends at position {} after {records} identical records; {} continues with {}",
                    a.display(),
                    y.position,
                    b.display(),
                    describe(&y)
                );
                same = false;
                break;
            }
            (Some(x), Some(y)) => {
                if x.position != y.position || x.frame != y.frame {
                    // The checksum (bytes 0..4) differs whenever anything else does: name the
                    // first differing byte after it (the header is 40 bytes, then the payload).
                    let byte = x
                        .frame
                        .iter()
                        .zip(y.frame)
                        .skip(4)
                        .position(|(p, q)| p != q)
                        .map_or(x.frame.len().min(y.frame.len()), |p| p + 4);
                    println!(
                        "first difference at position {} (record {}): {} has {}, {} has {}; frames differ from byte {byte}",
                        x.position,
                        records + 1,
                        a.display(),
                        describe(&x),
                        b.display(),
                        describe(&y)
                    );
                    same = false;
                    break;
                }
                records += 1;
            }
        }
    }
    if same {
        println!("journals identical: {records} records");
    }
    let (ha, hb) = (
        tools::replay_hash(a, u64::MAX)?,
        tools::replay_hash(b, u64::MAX)?,
    );
    println!(
        "state hash {ha:016x} ({}), {hb:016x} ({}): {}",
        a.display(),
        b.display(),
        if ha == hb { "equal" } else { "DIFFERENT" }
    );
    Ok(if same && ha == hb {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn dump(
    dir: &Path,
    from: Option<u64>,
    to: Option<u64>,
    json: bool,
    limit: Option<u64>,
) -> Result<ExitCode> {
    let mut reader = Reader::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    if let Some(from) = from {
        reader.seek_sequence(from)?;
    }
    let mut printed = 0u64;
    while let Some(record) = reader.next_record()? {
        if to.is_some_and(|to| record.meta.sequence > to) || limit.is_some_and(|l| printed >= l) {
            break;
        }
        let m = record.meta;
        if json {
            println!(
                "{{\"position\":{},\"sequence\":{},\"term\":{},\"timestamp_ns\":{},\"type\":{},\"flags\":{},\"length\":{},\"payload_hex\":\"{}\"}}",
                record.position, m.sequence, m.term, m.timestamp_ns, m.record_type, m.flags, record.payload.len(), hex(record.payload)
            );
        } else {
            println!(
                "position {:>12}  seq {:>10}  term {:>4}  ts {:>20}  type {:>3}  flags {:#06x}  {} bytes  {}",
                record.position, m.sequence, m.term, m.timestamp_ns, m.record_type, m.flags, record.payload.len(),
                hex(&record.payload[..record.payload.len().min(32)])
            );
        }
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}

fn simulate(seeds: u64, start: u64, seed: Option<u64>) -> Result<ExitCode> {
    use sequencer::sim::{run, run_seeds, SimConfig};
    if let Some(seed) = seed {
        let config = SimConfig::from_seed(seed);
        println!("{config:?}");
        return match run(config) {
            Ok(report) => {
                println!("ok: {report:?}");
                Ok(ExitCode::SUCCESS)
            }
            Err(violation) => {
                println!("VIOLATION: {violation}");
                Ok(ExitCode::FAILURE)
            }
        };
    }
    let started = Instant::now();
    match run_seeds(start, seeds) {
        Ok(reports) => {
            let acknowledged: u64 = reports.iter().map(|r| r.commands_acknowledged).sum();
            let dropped: u64 = reports.iter().map(|r| r.messages_dropped).sum();
            let events: u64 = reports.iter().map(|r| r.events).sum();
            let sum = |f: fn(&sequencer::sim::SimReport) -> u64| reports.iter().map(f).sum::<u64>();
            println!(
                "ok: {seeds} seeds ({start}..{}) in {:.1?}: {events} events, {acknowledged} commands acknowledged, {dropped} messages dropped, {} crashes, {} partitions, {} delay spikes, {} leaders elected; every invariant held",
                start + seeds,
                started.elapsed(),
                sum(|r| r.crashes),
                sum(|r| r.partitions),
                sum(|r| r.delay_spikes),
                sum(|r| r.leaders_elected),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(violation) => {
            println!("VIOLATION: {violation}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn chaos(kills: u32, nodes: u8, rate: u64, seed: u64, dir: Option<PathBuf>) -> Result<ExitCode> {
    use tools::chaos::{failover_times, kill_leader_repeatedly, ChaosOptions};
    let (dir, _temporary) = tools::demo::demo_dir(dir)?;
    let options = ChaosOptions {
        nodes,
        kills,
        rate,
        seed,
        ..ChaosOptions::default()
    };
    println!(
        "exchange chaos: {nodes} node processes under {rate} commands/s; the leader is killed (SIGKILL) {kills} times, in {}",
        dir.display()
    );
    let exe = std::env::current_exe()?;
    let report = match kill_leader_repeatedly(&exe, &dir, &options, &mut |kill, node, term| {
        println!("  kill {:>2}: node {node}, leader of term {term}", kill + 1);
    }) {
        Ok(report) => report,
        Err(e) => {
            println!("VIOLATION: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for (i, (node, term, failover)) in report.kills.iter().enumerate() {
        println!(
            "  failover {:>2}: node {node} (term {term}) → first commit after {}",
            i + 1,
            failover.map_or("(no gap seen)".into(), |d| format!(
                "{:.1} ms",
                d.as_secs_f64() * 1e3
            ))
        );
    }
    for (node, term) in &report.unforced_elections {
        println!("  note: node {node} lost the leadership of term {term} without a kill (an election timed out: the machine is loaded)");
    }
    let times = failover_times(&report);
    if let (Some(first), Some(max)) = (times.first(), times.last()) {
        println!(
            "failover (kill → first new commit) over {} kills: min {:.1} ms, p50 {:.1} ms, max {:.1} ms",
            times.len(),
            first.as_secs_f64() * 1e3,
            times[times.len() / 2].as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    println!(
        "ok: {} client commands, each in the log exactly once and nothing else; journals identical, state hash {} on every node (term {}); the client changed leader {} times; a learner's mirror of the committed log equals the journal (it moved to another member {} times)",
        report.client_commands, report.state_hash, report.term, report.client_leader_changes, report.learner_switches
    );
    Ok(ExitCode::SUCCESS)
}
