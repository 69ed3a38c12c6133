//! Replay benchmark: a journal of the demo's order flow replayed through a fresh matcher with
//! journal reading included (what `exchange journal replay` does: checksums verified, the client
//! header split, the applier's bookkeeping, checkpoints verified), beside two baselines measured
//! in the same run on the same commands:
//!
//! - the matcher alone, the same command records applied from memory (plain, and with the
//!   prefetch hints of the next two records), into the same event sink as replay;
//! - a plain sequential read of the journal with checksum verification, nothing applied.
//!
//! The journal is written first (untimed) the way `exchange demo --nodes 1 --in-process` writes
//! it: a one-node in-process cluster sequencing the seeded workload in batches of 256, with a
//! checkpoint record every 10,000 commands. Each measurement runs `REPLAY_BENCH_RUNS` times,
//! alternating; the tables give medians, per wall second and per CPU second of the benchmark
//! thread (pinned to the last core). Like the `exchange` binary, the benchmark allocates with
//! `sequencer::huge_pages::HugePageAlloc` (large arrays on transparent huge pages).
//!
//! `cargo bench -p benches --bench replay`. Without `--bench` (as `cargo test --all-targets` runs
//! it) only a smoke run of 20,000 commands. Environment: `REPLAY_BENCH_COMMANDS` (default
//! 10,000,000), `REPLAY_BENCH_RUNS` (default 3), `REPLAY_BENCH_DIR` (a directory to keep the
//! journal in and reuse on the next run; by default a temporary one under the target directory,
//! removed afterwards: 10 M commands take 1.2 GB).

use std::path::Path;
use std::time::{Duration, Instant};

use benches::{machine, median, pin_to_last_core, thread_cpu_time};
use journal::Reader;
use sequencer::apply::{Applier, StateMachine};
use sequencer::local::LocalCluster;
use sequencer::log::ReadOnlyLog;
use sequencer::node::MatcherState;
use sequencer::protocol::{split_client_command, RECORD_CLIENT_COMMAND};
use sequencer::replica::Submitted;
use sequencer::workload::{add_instrument, matcher_config, Workload};

/// As the `exchange` binary: the matcher's large arrays on transparent huge pages.
#[global_allocator]
static ALLOCATOR: sequencer::huge_pages::HugePageAlloc = sequencer::huge_pages::HugePageAlloc;

/// As `exchange demo`.
const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
const CHECKPOINT_INTERVAL: u64 = 10_000;
const BATCH: u64 = 256;
const CLIENT_ID: u64 = 1;
const SEED: u64 = 1;
const ACCOUNTS: u32 = 100;

/// Commands of the smoke run.
const SMOKE_COMMANDS: u64 = 20_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// Writes the journal of `commands` workload commands (after the AddInstrument) into
/// `base/node-0`, as the demo does.
fn build_journal(base: &Path, commands: u64) {
    let clock = Instant::now();
    let now = || clock.elapsed().as_nanos() as u64 + 1;
    let mut cluster =
        LocalCluster::open(base, 1, SEGMENT_SIZE, CHECKPOINT_INTERVAL, now()).expect("cluster");
    let mut workload = Workload::new(SEED, ACCOUNTS);
    let mut client_sequence = 1;
    cluster
        .submit(
            now(),
            CLIENT_ID,
            client_sequence,
            add_instrument().as_bytes(),
        )
        .expect("submit");
    let mut sent = 0;
    while sent < commands {
        for _ in 0..BATCH.min(commands - sent) {
            client_sequence += 1;
            let command = workload.next_command();
            match cluster
                .submit(now(), CLIENT_ID, client_sequence, command.as_bytes())
                .expect("submit")
            {
                Submitted::Sequenced { .. } => {}
                other => panic!("the leader refused a command: {other:?}"),
            }
            sent += 1;
        }
        cluster.step(now(), &mut |_, _| {}).expect("step");
        for (account, order) in std::mem::take(&mut cluster.nodes[0].state.sink.recent_accepted) {
            workload.accepted(account, order);
        }
    }
    while !cluster.settled() {
        cluster.step(now(), &mut |_, _| {}).expect("step");
    }
}

/// One client command as the matcher alone is fed it.
#[derive(Clone, Copy)]
struct Entry {
    sequence: u64,
    timestamp_ns: u64,
    record: matcher::CommandRecord,
}

/// The journal's client commands, in order (untimed).
fn commands_of(dir: &Path) -> Vec<Entry> {
    let mut reader = Reader::open(dir).expect("reader");
    let mut entries = Vec::new();
    while let Some(record) = reader.next_record().expect("read") {
        if record.meta.record_type != RECORD_CLIENT_COMMAND {
            continue;
        }
        let (_, _, command) = split_client_command(record.payload).expect("client header");
        entries.push(Entry {
            sequence: record.meta.sequence,
            timestamp_ns: record.meta.timestamp_ns,
            record: matcher::CommandRecord::read_from_bytes(command).expect("64-byte command"),
        });
    }
    entries
}

/// Wall and thread CPU time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (start, start_cpu) = (Instant::now(), thread_cpu_time());
    let value = f();
    (value, start.elapsed(), thread_cpu_time() - start_cpu)
}

/// What one measured pass gives: commands (or records), wall, CPU, and the final state hash.
struct Pass {
    count: u64,
    wall: Duration,
    cpu: Duration,
    state_hash: u64,
}

/// The baseline: the matcher alone on the commands in memory, into the same sink as replay.
fn matcher_alone(entries: &[Entry], hints: bool) -> Pass {
    let mut state = MatcherState::new(matcher_config()).expect("config");
    let (_, wall, cpu) = timed(|| {
        for (index, entry) in entries.iter().enumerate() {
            if hints {
                if let Some(next) = entries.get(index + 1) {
                    state.matcher.prefetch(&next.record);
                }
                if let Some(after_next) = entries.get(index + 2) {
                    state.matcher.prefetch_early(&after_next.record);
                }
            }
            state.matcher.apply(
                entry.sequence,
                entry.timestamp_ns,
                &entry.record,
                &mut state.sink,
            );
        }
    });
    Pass {
        count: entries.len() as u64,
        wall,
        cpu,
        state_hash: state.matcher.state_hash(),
    }
}

/// The baseline: every record of the journal read with checksums verified, nothing applied.
fn journal_read(dir: &Path) -> Pass {
    let mut reader = Reader::open(dir).expect("reader");
    let (count, wall, cpu) = timed(|| {
        let mut count = 0u64;
        let mut bytes = 0u64;
        while let Some(record) = reader.next_record().expect("read") {
            count += 1;
            bytes += record.payload.len() as u64;
        }
        std::hint::black_box(bytes);
        count
    });
    Pass {
        count,
        wall,
        cpu,
        state_hash: 0,
    }
}

/// The matcher as a state machine that takes no prefetch hints (the trait's default no-ops):
/// replay as it was before the applier read ahead, for comparison in the same run.
struct WithoutHints(MatcherState);

impl StateMachine for WithoutHints {
    fn apply(&mut self, sequence: u64, timestamp_ns: u64, client: u64, client_seq: u64, c: &[u8]) {
        self.0.apply(sequence, timestamp_ns, client, client_seq, c);
    }
    fn state_hash(&self) -> u64 {
        self.0.state_hash()
    }
}

/// The subject: what `exchange journal replay` does, timed the same way. With `hints` false,
/// the matcher is not given the applier's prefetch hints.
fn replay(dir: &Path, checkpoints_expected: u64, hints: bool) -> Pass {
    let mut log = ReadOnlyLog::open(dir).expect("log");
    let mut state = WithoutHints(MatcherState::new(matcher_config()).expect("config"));
    let mut applier = Applier::new(CHECKPOINT_INTERVAL);
    let (applied, wall, cpu) = timed(|| {
        let result = if hints {
            applier.apply_committed(&mut log, u64::MAX, &mut state.0, &mut |_| {})
        } else {
            applier.apply_committed(&mut log, u64::MAX, &mut state, &mut |_| {})
        };
        result.expect("replay")
    });
    assert_eq!(applier.checkpoints_verified(), checkpoints_expected);
    Pass {
        count: applied,
        wall,
        cpu,
        state_hash: state.0.matcher.state_hash(),
    }
}

/// Median rates of several passes: (per wall second, per CPU second).
fn rates(passes: &[Pass]) -> (f64, f64) {
    let mut wall: Vec<f64> = passes
        .iter()
        .map(|p| p.count as f64 / p.wall.as_secs_f64())
        .collect();
    let mut cpu: Vec<f64> = passes
        .iter()
        .map(|p| p.count as f64 / p.cpu.as_secs_f64())
        .collect();
    (median(&mut wall), median(&mut cpu))
}

fn main() {
    let smoke = !std::env::args().any(|argument| argument == "--bench");
    let commands = env_u64(
        "REPLAY_BENCH_COMMANDS",
        if smoke { SMOKE_COMMANDS } else { 10_000_000 },
    );
    let runs = env_u64("REPLAY_BENCH_RUNS", if smoke { 1 } else { 3 }).max(1) as usize;
    let machine = machine();
    let core = pin_to_last_core();
    let (base, _temporary) = match std::env::var("REPLAY_BENCH_DIR") {
        Ok(dir) => (std::path::PathBuf::from(dir), None),
        Err(_) => {
            let parent = env!("CARGO_TARGET_TMPDIR");
            std::fs::create_dir_all(parent).expect("target tmpdir");
            let temporary = tempfile::Builder::new()
                .prefix("replay")
                .tempdir_in(parent)
                .expect("tempdir");
            (temporary.path().to_path_buf(), Some(temporary))
        }
    };
    let dir = base.join("node-0");
    let reuse = dir.exists();
    if !reuse {
        let (_, wall, _) = timed(|| build_journal(&base, commands));
        eprintln!(
            "wrote the journal of {commands} commands in {wall:.2?} ({})",
            dir.display()
        );
    }
    let entries = commands_of(&dir);
    let checkpoints = entries.len() as u64 / CHECKPOINT_INTERVAL;
    eprintln!(
        "{}: {} client commands (1 AddInstrument + workload), {checkpoints} checkpoints, pinned to core {core:?}{}",
        dir.display(),
        entries.len(),
        if reuse { ", journal reused" } else { "" }
    );
    if smoke {
        eprintln!("smoke run (no --bench argument): figures are not meaningful");
    }
    // Warm the page cache and the mapping path once, untimed.
    let _ = journal_read(&dir);

    let (mut alone, mut hinted, mut read) = (vec![], vec![], vec![]);
    let (mut replayed, mut unhinted) = (vec![], vec![]);
    for _ in 0..runs {
        alone.push(matcher_alone(&entries, false));
        hinted.push(matcher_alone(&entries, true));
        read.push(journal_read(&dir));
        replayed.push(replay(&dir, checkpoints, true));
        unhinted.push(replay(&dir, checkpoints, false));
    }
    let hash = alone[0].state_hash;
    assert!(hinted
        .iter()
        .chain(&alone)
        .chain(&replayed)
        .chain(&unhinted)
        .all(|p| p.state_hash == hash));
    assert!(replayed.iter().all(|p| p.count == entries.len() as u64));

    let (alone_wall, alone_cpu) = rates(&alone);
    let (hinted_wall, hinted_cpu) = rates(&hinted);
    let (read_wall, read_cpu) = rates(&read);
    let (replay_wall, replay_cpu) = rates(&replayed);
    let (unhinted_wall, unhinted_cpu) = rates(&unhinted);
    println!(
        "machine: {}; {} commands; state hash {hash:016x} (every pass); median of {runs} runs",
        machine,
        entries.len()
    );
    println!();
    println!("| measure | M/s (wall) | M/CPU-s | ns per command (CPU) | replay ÷ this (CPU) |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, wall: f64, cpu: f64| {
        println!(
            "| {name} | {:.2} | {:.2} | {:.1} | {:.2}x |",
            wall / 1e6,
            cpu / 1e6,
            1e9 / cpu,
            replay_cpu / cpu
        );
    };
    row(
        "replay: journal read (CRC32C) + applier + matcher",
        replay_wall,
        replay_cpu,
    );
    row(
        "replay without the applier's prefetch hints",
        unhinted_wall,
        unhinted_cpu,
    );
    row("baseline: matcher alone from memory", alone_wall, alone_cpu);
    row(
        "baseline: matcher alone from memory, hints of the next two records",
        hinted_wall,
        hinted_cpu,
    );
    row(
        "baseline: journal read with CRC32C only (records/s)",
        read_wall,
        read_cpu,
    );
    println!();
    println!(
        "replay overhead over the matcher alone: {:.1} ns per command ({:.1} ns over the hinted matcher)",
        1e9 / replay_cpu - 1e9 / alone_cpu,
        1e9 / replay_cpu - 1e9 / hinted_cpu
    );
}
