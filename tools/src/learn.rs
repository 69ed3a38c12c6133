//! `exchange learn`: follow a cluster's committed log as a learner (see `sequencer::learner`)
//! and mirror it into a journal of its own: a live backup, an auditor's tap, and the proof that
//! a learner sees every committed record once, in order, across failovers.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use journal::{Journal, JournalConfig};
use sequencer::driver::{unique_dir, EmbeddedDriver};
use sequencer::learner::Learner;
use sequencer::runtime::{IdleStrategy, Idler};
use sequencer::transport::connect;

use crate::cluster::{free_udp_port, install_signal_handlers, members_ingress, STOP};

/// Options of `exchange learn`.
#[derive(clap::Args, Debug)]
pub struct LearnOptions {
    /// A node's configuration file: learn from its cluster.
    #[arg(long, conflicts_with = "ingress")]
    pub config: Option<PathBuf>,
    /// Every member's ingress endpoint (ip:port), comma-separated in node-id order, instead of
    /// --config.
    #[arg(long)]
    pub ingress: Option<String>,
    /// Mirror the committed log into a journal in this directory (created if missing; an
    /// existing mirror continues from its last record).
    #[arg(long)]
    pub journal: PathBuf,
    /// The member to ask first (node id).
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// Learner id, unique among the cluster's learners (default: a new one each run).
    #[arg(long)]
    pub learner_id: Option<u64>,
    /// UDP port the stream comes to (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address the members send the stream to (this machine's, as they reach it).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print a progress line this often (milliseconds; 0: never).
    #[arg(long, default_value_t = 1000)]
    pub progress_ms: u64,
}

/// `exchange learn`.
pub fn learn(options: LearnOptions) -> Result<ExitCode> {
    let (ingress, _) = members_ingress(options.ingress.as_deref(), options.config.as_deref())?;
    if options.first >= ingress.len() {
        bail!(
            "--first {} is not one of {} members",
            options.first,
            ingress.len()
        );
    }
    install_signal_handlers();
    let mut journal = Journal::open(JournalConfig::new(&options.journal))
        .with_context(|| format!("opening the mirror journal {}", options.journal.display()))?;
    let from_sequence = journal.last_sequence() + 1;
    let port = match options.port {
        Some(port) => port,
        None => free_udp_port()?,
    };
    let endpoint = format!("{}:{port}", options.host);
    let learner_id = options
        .learner_id
        .unwrap_or_else(sequencer::loadgen::fresh_client_id);
    let driver = EmbeddedDriver::launch_invoked(&unique_dir("learner"))?;
    let aeron = connect(driver.dir())?;
    let invoke = || {
        driver.do_work();
    };
    let mut learner = Learner::connect(
        &aeron,
        learner_id,
        &ingress,
        options.first,
        &endpoint,
        from_sequence,
        &invoke,
    )?;
    println!(
        "learn: learner {learner_id} on {endpoint}, members {}, from sequence {from_sequence} into {}",
        ingress.join(","),
        options.journal.display()
    );
    let started = Instant::now();
    let deadline = options
        .duration
        .map(|s| started + Duration::from_secs_f64(s));
    let progress = Duration::from_millis(options.progress_ms);
    let mut last_progress = Instant::now();
    let mut idler = Idler::new(IdleStrategy::Backoff {
        max_sleep: Duration::from_millis(1),
    });
    let mut failure = None;
    while !STOP.load(Ordering::Acquire) && deadline.is_none_or(|d| Instant::now() < d) {
        let mut work = driver.do_work();
        work += learner.poll(|record| {
            if failure.is_none() {
                if let Err(e) = journal.append_frame(record.frame) {
                    failure = Some(e);
                }
            }
        })?;
        if let Some(e) = failure.take() {
            return Err(e).context("appending to the mirror journal");
        }
        if options.progress_ms > 0 && last_progress.elapsed() >= progress {
            last_progress = Instant::now();
            let c = learner.core.counters;
            println!(
                "  {:>6.1}s sequence {} from node {} (served {}) delivered {} duplicates {} gaps {} switches {}",
                started.elapsed().as_secs_f64(),
                learner.core.next_sequence() - 1,
                learner.core.target(),
                learner.core.served_sequence,
                c.delivered,
                c.duplicates,
                c.gaps,
                c.switches
            );
            let _ = std::io::stdout().flush();
        }
        idler.idle(work);
    }
    journal.sync().context("syncing the mirror journal")?;
    let c = learner.core.counters;
    println!(
        "learned {} records, last sequence {}, duplicates {} gaps {} switches {} requests {} malformed {}",
        c.delivered,
        learner.core.next_sequence() - 1,
        c.duplicates,
        c.gaps,
        c.switches,
        c.requests,
        c.malformed
    );
    Ok(ExitCode::SUCCESS)
}
