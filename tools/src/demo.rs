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
    Ok(conclude(agree, cluster.compare_journals()?, nodes, ""))
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

/// What `exchange demo` runs (without `--in-process`).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How long the order flow runs.
    pub duration: Duration,
    /// Commands per second from the load generator over Aeron ingress (0: closed loop when
    /// `commands` is given, none otherwise).
    pub rate: u64,
    /// Commands from the load generator (default: rate × duration).
    pub commands: Option<u64>,
    /// Simulated FIX traders (at most [`FIX_SESSIONS`]).
    pub fix_clients: u8,
    /// Orders per second of each FIX trader.
    pub fix_rate: u64,
    pub nodes: u8,
    pub seed: u64,
    pub dir: Option<PathBuf>,
}

/// The built-in gateway configuration's sessions (SenderCompID of the client, FIX version).
pub const FIX_SESSIONS: [(&str, &str); 3] = [
    ("CLIENT1", "FIX.4.4"),
    ("CLIENT2", "FIX.4.4"),
    ("CLIENT3", "FIX.4.2"),
];
/// The feed publisher's book checksum interval (log sequences), as `md publish` defaults.
const FEED_CHECKSUM_INTERVAL: u64 = marketdata::aeron::DEFAULT_CHECKSUM_INTERVAL;

/// The demo over real processes: `nodes` node processes (`exchange node`), each with its own
/// embedded media driver, replicating over UDP on 127.0.0.1; the FIX gateway process
/// (`exchange gateway`) with simulated FIX traders; the feed publisher process (`exchange md
/// publish`) and a subscriber in this process rebuilding the books; the load generator over
/// Aeron ingress. After `duration` everything is stopped cleanly and compared: journals, state
/// hashes, event digests, offline replays, the gateway's matcher replica, and the subscriber's
/// books against the feed computed offline from the journal.
pub fn run_processes(options: &DemoOptions) -> Result<ExitCode> {
    use crate::cluster::{
        free_udp_port, install_signal_handlers, leader_of, wait_settled, NodeChild, STOP,
    };
    use sequencer::config::free_base_port;
    use sequencer::loadgen::{self, percentiles_us, LoadConfig};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let DemoOptions {
        duration,
        rate,
        commands,
        fix_clients,
        fix_rate,
        nodes,
        seed,
        ..
    } = *options;
    anyhow::ensure!(
        usize::from(fix_clients) <= FIX_SESSIONS.len(),
        "--fix-clients {fix_clients}: the built-in gateway configuration has {} sessions",
        FIX_SESSIONS.len()
    );
    let (dir, _temporary) = demo_dir(options.dir.clone())?;
    install_signal_handlers();
    let base = free_base_port(nodes as u16 + 1)?;
    let configs =
        sequencer::config::write_local_cluster(&dir, nodes, base, "status_interval_ms = 100", "")
            .with_context(|| format!("writing configuration files in {}", dir.display()))?;
    let exe = std::env::current_exe()?;
    println!(
        "exchange demo: {nodes} node processes (each with its own Aeron media driver), UDP on 127.0.0.1:{base}.., configuration and journals in {}",
        dir.display()
    );
    let children = configs
        .iter()
        .map(|c| NodeChild::spawn(&exe, c, false))
        .collect::<Result<Vec<_>>>()?;
    let ingress = sequencer::config::NodeConfig::load(&configs[0])?.ingress;

    // The gateway, its own process.
    let gateway_config = dir.join("gateway.toml");
    let fix_port = crate::gateway_cmd::write_local_gateway(&gateway_config, &ingress, 9001, None)?;
    let mut gateway = std::process::Command::new(&exe);
    gateway.arg("gateway").arg("--config").arg(&gateway_config);
    let mut gateway = crate::cluster::HelperProcess::spawn(gateway, "the gateway", false)?;
    println!("  FIX gateway on 127.0.0.1:{fix_port} ({gateway_config:?})");

    // The feed publisher, its own process, and the subscriber, a thread of this one.
    let control = format!("127.0.0.1:{}", free_udp_port()?);
    let request = format!("127.0.0.1:{}", free_udp_port()?);
    let feed_journal = dir.join("feed-journal");
    let mut publisher = std::process::Command::new(&exe);
    publisher
        .args([
            "md",
            "publish",
            "--control",
            &control,
            "--request",
            &request,
        ])
        .args(["--checksum-interval", &FEED_CHECKSUM_INTERVAL.to_string()])
        .arg("--journal")
        .arg(&feed_journal)
        .arg("--config")
        .arg(&configs[0]);
    let mut publisher =
        crate::cluster::HelperProcess::spawn(publisher, "the feed publisher", false)?;
    println!("  market data: ITCH 5.0 over Aeron from the publisher's control endpoint {control}; a subscriber rebuilds the books here");
    let subscriber = FeedFollower::start(&control, &request)?;

    // The FIX traders, each trading every instrument of the gateway's built-in configuration.
    let symbols: Vec<crate::fix_load::SymbolSpec> = crate::gateway_cmd::example_instruments()
        .iter()
        .map(crate::fix_load::SymbolSpec::of)
        .collect();
    let fix_progress: Vec<Arc<crate::fix_load::Progress>> = (0..fix_clients)
        .map(|_| Arc::new(crate::fix_load::Progress::default()))
        .collect();
    let traders = FIX_SESSIONS
        .iter()
        .take(usize::from(fix_clients))
        .zip(&fix_progress)
        .enumerate()
        .map(|(i, ((sender, version), progress))| {
            let config = crate::fix_load::FixLoadConfig {
                address: format!("127.0.0.1:{fix_port}"),
                version: version.to_string(),
                sender: sender.to_string(),
                target: "EXCH".into(),
                rate: fix_rate,
                requests: u64::MAX,
                in_flight_max: 1,
                duration: Some(duration),
                fills_csv: Some(dir.join(format!("fills-{sender}.csv"))),
                drain_timeout: Duration::from_secs(30),
                progress: Some(progress.clone()),
            };
            let generator = crate::fix_load::Generator::new(
                seed.wrapping_mul(31).wrapping_add(i as u64),
                &format!("{sender}-"),
                symbols.clone(),
            );
            std::thread::Builder::new()
                .name(format!("trader-{sender}"))
                .spawn(move || {
                    crate::fix_load::run(
                        &config,
                        crate::fix_load::OrderSource::Generated(generator),
                        &STOP,
                    )
                })
                .context("starting a FIX trader")
        })
        .collect::<Result<Vec<_>>>()?;
    println!(
        "  order flow for {duration:?}: {fix_clients} FIX traders at {fix_rate} orders/s each (sessions {}), and {}",
        FIX_SESSIONS[..usize::from(fix_clients)]
            .iter()
            .map(|(s, v)| format!("{s} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        match (rate, commands) {
            (0, None) => "no load generator".to_string(),
            (0, Some(n)) => format!("{n} commands (seed {seed}) from the load generator over Aeron, closed loop"),
            (r, n) => format!(
                "{} commands (seed {seed}) from the load generator over Aeron at {r}/s open loop",
                n.unwrap_or(r * duration.as_secs().max(1))
            ),
        }
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());

    let started = Instant::now();
    let progress = |sent: u64, answered: u64| {
        let leader = leader_of(&children).unwrap_or(0);
        let fix_sent: u64 = fix_progress
            .iter()
            .map(|p| p.sent.load(Ordering::Relaxed))
            .sum();
        let fix_answered: u64 = fix_progress
            .iter()
            .map(|p| p.answered.load(Ordering::Relaxed))
            .sum();
        println!(
            "  {:>5.1}s  loadgen sent {sent:>8} committed {answered:>8} | FIX sent {fix_sent:>6} answered {fix_answered:>6} | feed {:>8} messages | leader node {leader}, sequence {}",
            started.elapsed().as_secs_f64(),
            subscriber.messages.load(Ordering::Relaxed),
            children[leader].get("sequence")
        );
        let _ = std::io::Write::flush(&mut std::io::stdout());
    };
    let load = match (rate, commands) {
        (0, None) => {
            while started.elapsed() < duration && !STOP.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_secs(1));
                progress(0, 0);
            }
            None
        }
        (rate, commands) => {
            let driver = sequencer::driver::EmbeddedDriver::launch_invoked(
                &sequencer::driver::unique_dir("demo-client"),
            )?;
            let aeron = sequencer::transport::connect(driver.dir())?;
            let invoke = || {
                driver.do_work();
            };
            let mut config = LoadConfig::new(
                &ingress[0],
                &format!("127.0.0.1:{}", free_udp_port()?),
                loadgen::fresh_client_id(),
            );
            config.ingress = ingress.clone();
            config.rate = rate;
            config.commands = commands.unwrap_or(rate * duration.as_secs().max(1));
            config.seed = seed;
            config.in_flight_max = 8192;
            let report = loadgen::run(&aeron, &config, &STOP, &invoke, &mut |sent, answered| {
                progress(sent, answered)
            })
            .context("running the order flow")?;
            drop(aeron);
            drop(driver);
            Some((config.commands, report))
        }
    };
    let mut fix_reports = Vec::new();
    for trader in traders {
        fix_reports.push(
            trader
                .join()
                .map_err(|_| anyhow::anyhow!("a FIX trader panicked"))??,
        );
    }
    // Cancel-on-disconnect and anything else the gateway still sends, then the gateway's stop.
    std::thread::sleep(Duration::from_millis(500));
    wait_settled(&children, Duration::from_secs(60))?;
    let gateway_final = words_after_keys(&gateway.stop()?);
    wait_settled(&children, Duration::from_secs(60))?;

    // The feed the journal implies, computed offline; the subscriber must reach exactly it.
    let dirs: Vec<PathBuf> = (0..nodes)
        .map(|id| dir.join(format!("journal-{id}")))
        .collect();
    let expected_feed = feed_of_journal(&dirs[0])?;
    subscriber
        .target
        .store(expected_feed.sequence_next, Ordering::Release);
    let followed = subscriber.finish()?;
    publisher.stop()?;
    let finals = children
        .into_iter()
        .map(|c| c.stop())
        .collect::<Result<Vec<_>>>()?;

    println!("\nsummary ({:.1?} of order flow)", duration);
    let mut agree = true;
    if let Some((wanted, report)) = &load {
        println!(
            "  load generator      {} of {wanted} commands committed ({} rejected, {} resent) at {:.0} commands/s; commit round trip {}",
            report.committed,
            report.rejected,
            report.resends,
            report.throughput(),
            percentiles_us(&report.histogram)
        );
        agree &= report.committed == *wanted;
    }
    let mut fix_histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for report in &fix_reports {
        println!("  FIX {:<8}        {}", report.sender, report.summary());
        fix_histogram.add(&report.histogram)?;
        agree &= report.unanswered == 0 && report.sent > 0;
    }
    if !fix_reports.is_empty() {
        println!(
            "  FIX first answer    {} (request → ExecutionReport or OrderCancelReject, through gateway and cluster)",
            percentiles_us(&fix_histogram)
        );
    }
    println!(
        "  commands committed  {} (sequence), {} trades",
        finals[0]["sequence"], finals[0]["trades"]
    );
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
    let gateway_hash = gateway_final.get("state_hash").cloned().unwrap_or_default();
    let gateway_sequence = gateway_final.get("sequence").cloned().unwrap_or_default();
    let gateway_agrees = gateway_hash == finals[0]["state_hash"];
    println!(
        "  gateway replica     state hash {gateway_hash} at sequence {gateway_sequence}: {}",
        if gateway_agrees { "equal" } else { "DIFFERENT" }
    );
    agree &= gateway_agrees;
    let book_agrees = followed.sequence_next == Some(expected_feed.sequence_next)
        && followed.checksum == expected_feed.checksum
        && followed.error.is_none();
    println!(
        "  market data         subscriber applied feed messages 1..{} ({} book checksums verified on the way, {} gaps recovered); its books: {} levels, {} orders, checksum {:016x}; the journal's feed: messages 1..{}, checksum {:016x}: {}",
        followed.sequence_next.unwrap_or(1) - 1,
        followed.checksums_verified,
        followed.gaps,
        followed.checksum.level_count,
        followed.checksum.order_count,
        followed.checksum.value,
        expected_feed.sequence_next - 1,
        expected_feed.checksum.value,
        if book_agrees { "equal" } else { "DIFFERENT" }
    );
    if let Some(error) = &followed.error {
        println!("  market data error   {error}");
    }
    agree &= book_agrees;
    Ok(conclude(
        agree,
        sequencer::local::compare_journals(&dirs)?,
        nodes,
        "; the gateway's replica and the subscriber's books agree with them; every FIX request was answered",
    ))
}

/// The `key value` pairs of the words of a line (`( ) ;` count as spaces): what a helper's
/// final line reports (`... (sequence 44764) ... state_hash 8066439827a82836`).
fn words_after_keys(line: &str) -> std::collections::BTreeMap<String, String> {
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .map(|w| (w[0].to_string(), w[1].to_string()))
        .collect()
}

/// The feed that a journal implies: what the publisher's encoder would have emitted for its
/// committed commands (with book checksums every [`FEED_CHECKSUM_INTERVAL`] log sequences) and
/// the engine's book checksum at its end.
pub struct ExpectedFeed {
    /// The feed sequence after the last message.
    pub sequence_next: u64,
    pub checksum: marketdata::Checksum,
}

struct FeedReplay {
    matcher: matcher::Matcher,
    encoder: marketdata::FeedEncoder,
    events: Vec<matcher::Event>,
    error: Option<String>,
}

impl sequencer::apply::StateMachine for FeedReplay {
    fn apply(&mut self, sequence: u64, timestamp_ns: u64, _: u64, _: u64, command: &[u8]) {
        let result = self.encoder.apply_and_encode(
            &mut self.matcher,
            &mut self.events,
            FEED_CHECKSUM_INTERVAL,
            sequence,
            timestamp_ns,
            &matcher::CommandRecord::from_payload(command),
            &mut |_: u64, _: &[u8]| {},
        );
        if let Err(error) = result {
            self.error
                .get_or_insert(format!("sequence {sequence}: {error}"));
        }
    }

    fn state_hash(&self) -> u64 {
        self.matcher.state_hash()
    }
}

/// Computes [`ExpectedFeed`] from a journal directory.
pub fn feed_of_journal(dir: &std::path::Path) -> Result<ExpectedFeed> {
    let config = sequencer::workload::matcher_config();
    let mut state = FeedReplay {
        matcher: matcher::Matcher::new(config).map_err(|e| anyhow::anyhow!("{e}"))?,
        encoder: marketdata::FeedEncoder::new(marketdata::FeedConfig::from(&config)),
        events: Vec::new(),
        error: None,
    };
    let mut log = sequencer::log::ReadOnlyLog::open(dir)
        .with_context(|| format!("opening {}", dir.display()))?;
    let mut applier = sequencer::apply::Applier::new(10_000);
    applier.apply_committed(&mut log, u64::MAX, &mut state, &mut |_| {})?;
    if let Some(error) = state.error {
        anyhow::bail!("encoding the feed of {}: {error}", dir.display());
    }
    Ok(ExpectedFeed {
        sequence_next: state.encoder.sequence_next(),
        checksum: state
            .encoder
            .book_checksum(&state.matcher)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    })
}

/// A feed subscriber on a thread of its own (with its own embedded media driver), rebuilding
/// the books until it reaches `target` (a feed sequence) after being asked to finish.
struct FeedFollower {
    /// Messages applied so far.
    messages: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Feed sequence to reach before finishing (u64::MAX: not yet known).
    target: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<Result<Followed>>,
}

/// What the subscriber ended with.
struct Followed {
    sequence_next: Option<u64>,
    checksum: marketdata::Checksum,
    checksums_verified: u64,
    gaps: u64,
    error: Option<String>,
}

impl FeedFollower {
    fn start(control: &str, request: &str) -> Result<FeedFollower> {
        use marketdata::aeron::{
            FeedSubscriber, IdleBackoff, SubscriberChannels, SubscriberConfig, DEFAULT_SESSION,
        };
        use std::sync::atomic::{AtomicU64, Ordering};
        let messages = std::sync::Arc::new(AtomicU64::new(0));
        let target = std::sync::Arc::new(AtomicU64::new(u64::MAX));
        let endpoint = format!("127.0.0.1:{}", crate::cluster::free_udp_port()?);
        let channels = SubscriberChannels::mdc(&endpoint, control, request);
        let (m, t) = (messages.clone(), target.clone());
        let thread = std::thread::Builder::new()
            .name("demo-subscriber".into())
            .spawn(move || -> Result<Followed> {
                let driver = sequencer::driver::EmbeddedDriver::launch(
                    &sequencer::driver::unique_dir("demo-md"),
                )?;
                let aeron = marketdata::aeron::connect(driver.dir())?;
                let book = marketdata::BookConfig {
                    instrument_capacity: 64,
                    order_capacity: 1 << 20,
                    levels_per_side_max: 1 << 17,
                };
                let mut subscriber = FeedSubscriber::new(
                    &aeron,
                    SubscriberConfig::new(book, DEFAULT_SESSION, channels),
                )?;
                let mut idle = IdleBackoff::default();
                let mut deadline = None;
                let mut error = None;
                loop {
                    let target = t.load(Ordering::Acquire);
                    if target != u64::MAX {
                        if subscriber.sequence_next() >= Some(target) {
                            break;
                        }
                        let at = *deadline
                            .get_or_insert_with(|| Instant::now() + Duration::from_secs(60));
                        if Instant::now() > at {
                            break;
                        }
                    }
                    match subscriber.poll(Instant::now(), &mut |_, _| {}) {
                        Ok(work) => idle.idle(work),
                        Err(e) => {
                            error = Some(e.to_string());
                            break;
                        }
                    }
                    m.store(subscriber.core().counters().messages, Ordering::Relaxed);
                }
                let counters = subscriber.core().counters();
                Ok(Followed {
                    sequence_next: subscriber.sequence_next(),
                    checksum: subscriber.book().checksum(),
                    checksums_verified: counters.checksums_verified,
                    gaps: counters.gaps,
                    error,
                })
            })?;
        Ok(FeedFollower {
            messages,
            target,
            thread,
        })
    }

    /// Waits for the subscriber to reach its target (set beforehand) or give up after 60 s.
    fn finish(self) -> Result<Followed> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the subscriber panicked"))?
    }
}

/// Prints how the journals compare and the verdict; the exit status says whether the replicas
/// agree (`agree` covers the state hashes and event digests).
fn conclude(agree: bool, journals_differ: Option<String>, nodes: u8, also: &str) -> ExitCode {
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
        println!(
            "agreement: every replica has the same journal, state hash and event stream{also}"
        );
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
