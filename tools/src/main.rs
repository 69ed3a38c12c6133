//! `exchange`: the command line of the exchange core.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use journal::{Journal, JournalConfig, Reader, RecordMeta};

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
    /// Runs the demo: the most complete end-to-end path that works today (see README).
    Demo {
        /// Records to write.
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Journal directory (default: a fresh temporary directory, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Operator and auditor tools for a journal directory.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Checks every record's checksum and sequence and that nothing follows the end; reports the
    /// first problem with its file and offset. Read-only. Exit status 1 on a problem.
    Verify { dir: PathBuf },
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
        Command::Demo { records, dir } => demo(records, dir),
        Command::Journal {
            command: JournalCommand::Verify { dir },
        } => verify(&dir),
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

/// Writes records through the journal, verifies the files, and replays them, checking that what
/// comes back is exactly what went in (a digest of every record on both sides).
fn demo(records: u64, dir: Option<PathBuf>) -> Result<ExitCode> {
    let temporary = match &dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("exchange-demo").tempdir()?),
    };
    let dir = dir.unwrap_or_else(|| temporary.as_ref().expect("made above").path().to_path_buf());
    println!(
        "exchange demo: journal round trip of {records} records in {}",
        dir.display()
    );
    let digest_of = |meta: &RecordMeta, payload: &[u8], digest: u32| {
        let digest = crc32c::crc32c_append(digest, &meta.sequence.to_le_bytes());
        crc32c::crc32c_append(digest, payload)
    };

    let mut journal = Journal::open(JournalConfig::new(&dir)).context("opening the journal")?;
    if let Some(report) = journal.recovery() {
        println!("recovery: {report}");
    }
    let first = journal.last_sequence() + 1;
    let mut payload = [0u8; 64];
    let mut written_digest = 0u32;
    let start = Instant::now();
    for sequence in first..first + records {
        payload[..8].copy_from_slice(&sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        let meta = RecordMeta {
            record_type: 1,
            flags: 0,
            sequence,
            term: 1,
            timestamp_ns: sequence,
        };
        journal.append(&meta, &payload)?;
        written_digest = digest_of(&meta, &payload, written_digest);
    }
    let write_elapsed = start.elapsed();
    journal.sync()?;
    let end = journal.position();
    drop(journal);

    let report = journal::verify(&dir)?;
    let mut reader = Reader::open(&dir)?;
    reader.seek_sequence(first)?;
    let start = Instant::now();
    let mut replayed = 0u64;
    let mut replay_digest = 0u32;
    while let Some(record) = reader.next_record()? {
        replay_digest = digest_of(&record.meta, record.payload, replay_digest);
        replayed += 1;
    }
    let replay_elapsed = start.elapsed();
    println!(
        "wrote    {records} records in {:?} ({:.2} M records/s), end position {end}",
        write_elapsed,
        records as f64 / write_elapsed.as_secs_f64() / 1e6
    );
    println!(
        "verified {} records in {} segment(s)",
        report.records, report.segments
    );
    println!(
        "replayed {replayed} records in {:?} ({:.2} M records/s)",
        replay_elapsed,
        replayed as f64 / replay_elapsed.as_secs_f64() / 1e6
    );
    println!("digest written {written_digest:08x}, replayed {replay_digest:08x}");
    if replayed != records || replay_digest != written_digest {
        bail!("replay does not match what was written");
    }
    println!("agreement: replay is byte-identical to what was written");
    Ok(ExitCode::SUCCESS)
}
