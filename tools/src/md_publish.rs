//! `exchange md publish`: the ITCH feed of a cluster. The publisher follows the committed log as
//! a learner (`sequencer::learner`) and feeds every committed command to a
//! `marketdata::aeron::FeedPublisher` (its own matcher replica, encoder, feed journal,
//! retransmission and snapshots). The learner moves to another member when the one it follows
//! falls silent, from the sequence it needs next, so a leader failover leaves the feed with no
//! gap and no duplicate: the feed is a function of the committed log alone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use marketdata::aeron::{
    run_publisher, CommittedCommand, CommittedSource, PublisherChannels, PublisherConfig,
    DEFAULT_CONTROL, DEFAULT_REQUEST, DEFAULT_SESSION,
};
use sequencer::driver::{unique_dir, EmbeddedDriver};
use sequencer::learner::Learner;

use crate::cluster::{free_udp_port, install_signal_handlers, members_ingress, STOP};

/// Options of `exchange md publish`.
#[derive(clap::Args, Debug)]
pub struct PublishOptions {
    /// A node's configuration file: publish its cluster's feed.
    #[arg(long, conflicts_with = "ingress")]
    pub config: Option<PathBuf>,
    /// Every member's client ingress endpoint (ip:port), comma-separated in node-id order,
    /// instead of --config.
    #[arg(long)]
    pub ingress: Option<String>,
    /// The publisher's control endpoint (subscribers join through it: multi-destination cast).
    #[arg(long, default_value = DEFAULT_CONTROL)]
    pub control: String,
    /// The retransmission service's request endpoint.
    #[arg(long, default_value = DEFAULT_REQUEST)]
    pub request: String,
    /// Publish to a UDP multicast group (`address:port`) instead, through --interface.
    #[arg(long, requires = "interface")]
    pub multicast: Option<String>,
    #[arg(long)]
    pub interface: Option<String>,
    /// The feed journal (every frame, for retransmission).
    #[arg(long, default_value = "feed-journal")]
    pub journal: PathBuf,
    /// Where the cluster streams its committed log to this publisher (`ip:port`; default: a
    /// free port on 127.0.0.1).
    #[arg(long)]
    pub learner_endpoint: Option<String>,
    /// Learner id, unique among the cluster's learners.
    #[arg(long, default_value_t = 0x4D44_0001)]
    pub learner_id: u64,
    /// A book checksum every this many log sequences (0: never).
    #[arg(long, default_value_t = marketdata::aeron::DEFAULT_CHECKSUM_INTERVAL)]
    pub checksum_interval: u64,
}

/// Committed commands from a learner.
pub struct LearnerSource {
    pub learner: Learner,
}

impl CommittedSource for LearnerSource {
    fn poll(
        &mut self,
        limit: usize,
        deliver: &mut dyn FnMut(CommittedCommand<'_>),
    ) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
        let mut delivered = 0;
        // The learner delivers whole messages (a bounded number of records each); `limit` caps
        // the polls, not the records of one message.
        while delivered < limit {
            let before = delivered;
            self.learner.poll(|record| {
                if let Some((client_id, client_sequence, command)) = record.client_command() {
                    deliver(CommittedCommand {
                        sequence: record.sequence,
                        timestamp_ns: record.timestamp_ns,
                        client_id,
                        client_sequence,
                        command,
                    });
                    delivered += 1;
                }
            })?;
            if delivered == before {
                break;
            }
        }
        Ok(delivered)
    }
}

/// `exchange md publish`.
pub fn publish(options: PublishOptions) -> Result<ExitCode> {
    let (ingress, _) = members_ingress(options.ingress.as_deref(), options.config.as_deref())?;
    install_signal_handlers();
    let driver = EmbeddedDriver::launch(&unique_dir("md-publish"))?;
    let aeron = sequencer::transport::connect(driver.dir())?;
    let endpoint = match &options.learner_endpoint {
        Some(endpoint) => endpoint.clone(),
        None => format!("127.0.0.1:{}", free_udp_port()?),
    };
    let learner = Learner::connect(
        &aeron,
        options.learner_id,
        &ingress,
        0,
        &endpoint,
        1,
        &sequencer::transport::no_invoke,
    )?;
    let channels = match (&options.multicast, &options.interface) {
        (Some(group), Some(interface)) => {
            PublisherChannels::multicast(group, interface, &options.request)
        }
        _ => PublisherChannels::mdc(&options.control, &options.request),
    };
    let mut config = PublisherConfig::new(
        sequencer::workload::matcher_config(),
        DEFAULT_SESSION,
        Path::new(&options.journal),
        channels.clone(),
    );
    config.checksum_interval = options.checksum_interval;
    println!(
        "md publish: feed on {} (requests {}), from the committed log of {} (learner on {endpoint}), journal {}",
        channels.publication,
        channels.request,
        ingress.join(","),
        options.journal.display()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut source = LearnerSource { learner };
    let stats = run_publisher(config, Some(driver.dir()), &mut source, &STOP)
        .context("the feed publisher")?;
    let c = source.learner.core.counters;
    println!(
        "md publish: stopped; commands {} messages {} frames {} (sent {}, back-pressured {}) checksums {}; learner at sequence {} switches {} gaps {}",
        stats.commands,
        stats.messages,
        stats.frames,
        stats.frames_sent,
        stats.frames_back_pressured,
        stats.checksums,
        source.learner.core.next_sequence() - 1,
        c.switches,
        c.gaps
    );
    Ok(ExitCode::SUCCESS)
}
