//! Journal benchmarks: append throughput and latency, sequential verified reads, and group-commit
//! durability lag, each beside its baseline measured in the same run:
//! (a) `write(2)` of each record to a plain file, (b) `BufWriter` to a plain file, (c) the raw memcpy
//! of each record into a mapping, and, for durability, a bare `fdatasync` after each write.
//!
//! `cargo bench -p benches --bench journal` (env: JOURNAL_BENCH_RECORDS, default 4,000,000).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use benches::{format_rate, histogram, machine, median, table_header, table_row, Clock};
use journal::{Journal, JournalConfig, Reader, RecordMeta, SyncPolicy};

const PAYLOAD_LEN: usize = 64;
const FRAME_LEN: usize = 40 + PAYLOAD_LEN;
const RUNS: usize = 3;

fn meta(sequence: u64) -> RecordMeta {
    RecordMeta {
        record_type: 1,
        flags: 0,
        sequence,
        term: 1,
        timestamp_ns: sequence,
    }
}

fn bench_dir(name: &str) -> tempfile::TempDir {
    let base =
        std::env::var("BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(base)
        .unwrap()
}

fn journal_config(dir: &std::path::Path) -> JournalConfig {
    JournalConfig::new(dir)
}

/// Appends `records` records; returns records per second.
fn journal_append_rate(records: u64) -> f64 {
    let dir = bench_dir("append");
    let mut journal = Journal::open(journal_config(dir.path())).unwrap();
    let payload = [7u8; PAYLOAD_LEN];
    let start = Instant::now();
    for s in 1..=records {
        journal.append(&meta(s), &payload).unwrap();
    }
    let elapsed = start.elapsed();
    assert_eq!(journal.last_sequence(), records);
    records as f64 / elapsed.as_secs_f64()
}

/// The floor: copying each record's bytes into a pre-faulted mapping, nothing else.
fn memcpy_rate(records: u64) -> f64 {
    let dir = bench_dir("memcpy");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("raw"))
        .unwrap();
    let len = records as usize * FRAME_LEN;
    file.set_len(len as u64).unwrap();
    // SAFETY: the file is private to this benchmark.
    let mut map = unsafe {
        memmap2::MmapOptions::new()
            .len(len)
            .populate()
            .map_mut(&file)
    }
    .unwrap();
    let frame = [7u8; FRAME_LEN];
    let start = Instant::now();
    for i in 0..records as usize {
        map[i * FRAME_LEN..(i + 1) * FRAME_LEN].copy_from_slice(std::hint::black_box(&frame));
    }
    let elapsed = start.elapsed();
    std::hint::black_box(&map);
    records as f64 / elapsed.as_secs_f64()
}

fn write_syscall_rate(records: u64) -> f64 {
    let dir = bench_dir("write");
    let mut file = File::create(dir.path().join("plain")).unwrap();
    let frame = [7u8; FRAME_LEN];
    let start = Instant::now();
    for _ in 0..records {
        file.write_all(&frame).unwrap();
    }
    records as f64 / start.elapsed().as_secs_f64()
}

fn bufwriter_rate(records: u64) -> f64 {
    let dir = bench_dir("bufwriter");
    let mut file =
        BufWriter::with_capacity(64 * 1024, File::create(dir.path().join("plain")).unwrap());
    let frame = [7u8; FRAME_LEN];
    let start = Instant::now();
    for _ in 0..records {
        file.write_all(&frame).unwrap();
    }
    file.flush().unwrap();
    records as f64 / start.elapsed().as_secs_f64()
}

/// Reads everything back with checksum verification; returns records per second.
fn read_rate(records: u64) -> (f64, f64) {
    let dir = bench_dir("read");
    let mut journal = Journal::open(journal_config(dir.path())).unwrap();
    let payload = [7u8; PAYLOAD_LEN];
    for s in 1..=records {
        journal.append(&meta(s), &payload).unwrap();
    }
    let mut rates = [0.0; 2];
    for (i, verify) in [true, false].into_iter().enumerate() {
        let mut reader = Reader::open(dir.path()).unwrap();
        reader.set_verify(verify);
        let start = Instant::now();
        let mut count = 0u64;
        let mut checksum = 0u64;
        while let Some(record) = reader.next_record().unwrap() {
            checksum = checksum.wrapping_add(record.payload[0] as u64);
            count += 1;
        }
        let elapsed = start.elapsed();
        std::hint::black_box(checksum);
        assert_eq!(count, records);
        rates[i] = count as f64 / elapsed.as_secs_f64();
    }
    (rates[0], rates[1])
}

fn append_latency(clock: &Clock, records: u64) -> hdrhistogram::Histogram<u64> {
    let dir = bench_dir("append-latency");
    let mut journal = Journal::open(journal_config(dir.path())).unwrap();
    let payload = [7u8; PAYLOAD_LEN];
    let mut h = histogram();
    for s in 1..=records {
        let t0 = clock.now_ns();
        journal.append(&meta(s), &payload).unwrap();
        h.saturating_record((clock.now_ns() - t0).max(1));
    }
    h
}

fn write_latency(clock: &Clock, records: u64, buffered: bool) -> hdrhistogram::Histogram<u64> {
    let dir = bench_dir("write-latency");
    let file = File::create(dir.path().join("plain")).unwrap();
    let mut buffered_file = BufWriter::with_capacity(64 * 1024, file.try_clone().unwrap());
    let mut plain = file;
    let frame = [7u8; FRAME_LEN];
    let mut h = histogram();
    for _ in 0..records {
        let t0 = clock.now_ns();
        if buffered {
            buffered_file.write_all(&frame).unwrap();
        } else {
            plain.write_all(&frame).unwrap();
        }
        h.saturating_record((clock.now_ns() - t0).max(1));
    }
    h
}

/// Open loop at `rate` records/s for `duration`: the lag from each record's intended append time to
/// the moment `position_durable` covers it.
fn durability_lag(
    clock: &Clock,
    rate: u64,
    duration: Duration,
    zero_fill: bool,
) -> (hdrhistogram::Histogram<u64>, u64, u64) {
    let dir = bench_dir("durability");
    let mut config = journal_config(dir.path());
    config.sync = SyncPolicy::GroupCommit;
    config.zero_fill = zero_fill;
    let mut journal = Journal::open(config).unwrap();
    let payload = [7u8; PAYLOAD_LEN];
    let interval_ns = 1_000_000_000 / rate;
    let total = rate * duration.as_secs();
    let mut pending = std::collections::VecDeque::with_capacity(total as usize);
    let mut h = histogram();
    let start = clock.now_ns();
    let mut sent = 0u64;
    let mut append_max = 0u64;
    while sent < total || !pending.is_empty() {
        let now = clock.now_ns();
        if sent < total && now >= start + sent * interval_ns {
            let intended = start + sent * interval_ns;
            sent += 1;
            let t0 = clock.now_ns();
            let end = journal.append(&meta(sent), &payload).unwrap();
            append_max = append_max.max(clock.now_ns() - t0);
            pending.push_back((end, intended));
        }
        let durable = journal.position_durable();
        while let Some(&(end, intended)) = pending.front() {
            if end > durable {
                break;
            }
            h.saturating_record(clock.now_ns().saturating_sub(intended).max(1));
            pending.pop_front();
        }
        std::hint::spin_loop();
    }
    (h, journal.sync_rounds(), append_max)
}

/// The baseline: write one record and fdatasync, repeatedly; the latency of each pair.
fn fdatasync_latency(clock: &Clock, samples: u64) -> hdrhistogram::Histogram<u64> {
    let dir = bench_dir("fdatasync");
    let mut file = File::create(dir.path().join("plain")).unwrap();
    let frame = [7u8; FRAME_LEN];
    let mut h = histogram();
    for _ in 0..samples {
        let t0 = clock.now_ns();
        file.write_all(&frame).unwrap();
        file.sync_data().unwrap();
        h.saturating_record((clock.now_ns() - t0).max(1));
    }
    h
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it: then a
    // small smoke run checks that the benchmark works, without spending CI minutes on figures.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let records: u64 = if smoke {
        20_000
    } else {
        std::env::var("JOURNAL_BENCH_RECORDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4_000_000)
    };
    let syscall_records = (records / 10).max(1000);
    let clock = Clock::calibrate(Duration::from_millis(200));
    println!("# Journal benchmark\n\nmachine: {}; {records} records of {PAYLOAD_LEN}-byte payloads ({FRAME_LEN}-byte frames); median of {RUNS} runs\n", machine());

    let only = std::env::var("JOURNAL_BENCH_ONLY").unwrap_or_default();
    let run = |section: &str| {
        let selected = only.is_empty() || only.split(',').any(|s| s == section);
        if selected {
            // Start every section with no dirty pages left over from the one before, so background
            // write-back of earlier sections does not land in this one's figures.
            // SAFETY: sync(2) has no preconditions.
            unsafe { libc::sync() };
        }
        selected
    };
    if run("append") {
        let mut journal_rates = Vec::new();
        let mut memcpy_rates = Vec::new();
        let mut write_rates = Vec::new();
        let mut buf_rates = Vec::new();
        for _ in 0..RUNS {
            journal_rates.push(journal_append_rate(records));
            memcpy_rates.push(memcpy_rate(records));
            write_rates.push(write_syscall_rate(syscall_records));
            buf_rates.push(bufwriter_rate(records));
        }
        let journal_rate = median(&mut journal_rates);
        let memcpy = median(&mut memcpy_rates);
        let write = median(&mut write_rates);
        let buf = median(&mut buf_rates);
        println!("## Append throughput\n\n| writer | records/s | ns/record | journal ÷ this |\n|---|---|---|---|");
        for (name, rate) in [
            ("journal append (CRC32C, mmap)", journal_rate),
            ("baseline: raw memcpy into mapping", memcpy),
            ("baseline (a): write(2) per record", write),
            ("baseline (b): BufWriter 64 KiB", buf),
        ] {
            println!(
                "| {name} | {} | {:.1} | {:.2}x |",
                format_rate(rate),
                1e9 / rate,
                journal_rate / rate
            );
        }
    }
    if run("read") {
        let mut verified = Vec::new();
        let mut unverified = Vec::new();
        for _ in 0..RUNS {
            let (v, u) = read_rate(records);
            verified.push(v);
            unverified.push(u);
        }
        println!("\n## Sequential read\n\n| reader | records/s |\n|---|---|");
        println!(
            "| with CRC32C verification | {} |",
            format_rate(median(&mut verified))
        );
        println!(
            "| without verification | {} |",
            format_rate(median(&mut unverified))
        );
    }
    if run("latency") {
        let latency_records = records.min(2_000_000);
        println!(
            "\n## Append latency (per call, TSC clock)\n\n{}",
            table_header("writer")
        );
        println!(
            "{}",
            table_row(
                "journal append",
                "max speed",
                &append_latency(&clock, latency_records)
            )
        );
        println!(
            "{}",
            table_row(
                "baseline (a): write(2)",
                "max speed",
                &write_latency(&clock, syscall_records, false)
            )
        );
        println!(
            "{}",
            table_row(
                "baseline (b): BufWriter",
                "max speed",
                &write_latency(&clock, latency_records, true)
            )
        );
    }
    if !run("durability") {
        return;
    }
    let rate = 20_000;
    let seconds = if smoke { 1 } else { 2 };
    let bare = fdatasync_latency(&clock, if smoke { 100 } else { 2000 });
    let (lag, rounds, append_max) =
        durability_lag(&clock, rate, Duration::from_secs(seconds), false);
    let (lag_zero, rounds_zero, append_max_zero) =
        durability_lag(&clock, rate, Duration::from_secs(seconds), true);
    println!(
        "\n## Group-commit durability (open loop, {rate} records/s for {seconds} s)\n\n{}",
        table_header("measure")
    );
    println!(
        "{}",
        table_row(
            &format!("journal, fallocated segments: append → durable ({rounds} sync rounds)"),
            &format!("{rate}/s"),
            &lag
        )
    );
    println!(
        "{}",
        table_row(
            &format!("journal, zero-filled segments: append → durable ({rounds_zero} sync rounds)"),
            &format!("{rate}/s"),
            &lag_zero
        )
    );
    println!(
        "{}",
        table_row("baseline: write(2) + fdatasync", "back to back", &bare)
    );
    for (name, lag, append_max) in [
        ("fallocated", &lag, append_max),
        ("zero-filled", &lag_zero, append_max_zero),
    ] {
        println!(
            "\n{name}: lag p99 ÷ bare fdatasync p99 = {:.2}x; lag p50 ÷ bare p50 = {:.2}x; slowest single append {}",
            lag.value_at_quantile(0.99) as f64 / bare.value_at_quantile(0.99) as f64,
            lag.value_at_quantile(0.5) as f64 / bare.value_at_quantile(0.5) as f64,
            benches::format_ns(append_max)
        );
    }
}
