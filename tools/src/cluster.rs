//! Running nodes as processes: `exchange node`, `exchange cluster up` and `exchange loadgen`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sequencer::config::NodeConfig;
use sequencer::driver::{unique_dir, EmbeddedDriver};
use sequencer::loadgen::{self, percentiles_us, LoadConfig};
use sequencer::transport::connect;

/// Set by SIGINT or SIGTERM.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Release);
}

/// SIGINT and SIGTERM set [`STOP`]; whoever runs checks it and shuts down cleanly.
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// `exchange node --config FILE`.
pub fn node(config: &Path) -> Result<ExitCode> {
    let checked = match NodeConfig::load(config) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    install_signal_handlers();
    let agent = &checked.agent;
    println!(
        "node {} of {}: replication {}, ingress {}, journal {}, leader {}",
        agent.replica.node_id,
        agent.replica.members,
        agent.replication_endpoints[agent.replica.node_id as usize],
        agent.ingress_endpoint,
        agent.journal.dir.display(),
        agent.replica.leader
    );
    let status = sequencer::runtime::run_node(&checked, &STOP, &mut |status| {
        println!("status {status}");
        let _ = std::io::stdout().flush();
    })
    .with_context(|| format!("node {}", agent.replica.node_id))?;
    println!("stopped {status}");
    Ok(ExitCode::SUCCESS)
}

/// Options of `exchange loadgen`.
#[derive(clap::Args)]
pub struct LoadOptions {
    /// A node's configuration file: the load goes to its cluster's leader.
    #[arg(long, conflicts_with = "ingress")]
    pub config: Option<PathBuf>,
    /// Every member's ingress endpoint (ip:port), comma-separated in node-id order, instead of
    /// --config; the first is tried first.
    #[arg(long)]
    pub ingress: Option<String>,
    /// Offered commands per second; 0 = closed loop.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Commands to measure.
    #[arg(long, default_value_t = 100_000)]
    pub commands: u64,
    /// Commands to send before measuring.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Most unanswered commands (the window in closed loop).
    #[arg(long, default_value_t = 65_536)]
    pub in_flight: usize,
    /// Seed of the order flow.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Client id (default: a new one each run; the cluster discards sequence numbers it has seen).
    #[arg(long)]
    pub client_id: Option<u64>,
    /// UDP port for responses (default: a free one).
    #[arg(long)]
    pub response_port: Option<u16>,
    /// Address the nodes send responses to (this machine's, as they reach it).
    #[arg(long, default_value = "127.0.0.1")]
    pub response_host: String,
    /// Save the latency histogram (.hgrm, microseconds) here.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Print every gap in the answers longer than --gap-ms (`gap <from_unix_ns> <to_unix_ns>`),
    /// e.g. to measure failovers.
    #[arg(long)]
    pub print_gaps: bool,
    /// Gaps in the answers longer than this many milliseconds are counted (and printed with
    /// --print-gaps).
    #[arg(long, default_value_t = 50)]
    pub gap_ms: u64,
    /// Send the orders over FIX to the gateway at this `host:port` instead of over Aeron
    /// ingress (one session; latency to each request's first ExecutionReport or
    /// OrderCancelReject).
    #[arg(long, conflicts_with_all = ["config", "ingress"])]
    pub fix: Option<String>,
    /// With --fix: our SenderCompID (a session the gateway is configured for).
    #[arg(long, default_value = "CLIENT1", requires = "fix")]
    pub sender: String,
    /// With --fix: the gateway's CompID.
    #[arg(long, default_value = "EXCH", requires = "fix")]
    pub target: String,
    /// With --fix: FIX.4.4 or FIX.4.2.
    #[arg(long, default_value = "FIX.4.4", requires = "fix")]
    pub fix_version: String,
    /// With --fix: symbols of the seeded order flow, comma-separated. The built-in
    /// instruments (DEMO, ACME, XYZ) get orders on their tick, in their price band and in
    /// whole lots; another symbol gets cent prices around 500.00 in whole units.
    #[arg(long, default_value = "DEMO", requires = "fix")]
    pub symbols: String,
    /// With --fix: send the requests of this CSV order file instead of the seeded flow
    /// (columns: action,cl_ord_id,orig_cl_ord_id,symbol,side,type,price,quantity,
    /// time_in_force,account; see docs/OPERATIONS.md).
    #[arg(long, requires = "fix")]
    pub orders_csv: Option<PathBuf>,
    /// With --fix: write every fill received as CSV here.
    #[arg(long, requires = "fix")]
    pub fills_csv: Option<PathBuf>,
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The members' client ingress endpoints and the preferred first leader, from `--ingress`
/// (comma-separated, node-id order; the first is tried first) or a node's `--config`.
pub fn members_ingress(
    ingress: Option<&str>,
    config: Option<&Path>,
) -> Result<(Vec<String>, usize)> {
    match (ingress, config) {
        (Some(ingress), _) => Ok((ingress.split(',').map(str::to_string).collect(), 0)),
        (None, Some(config)) => {
            let checked = NodeConfig::load(config)?;
            Ok((checked.ingress, checked.agent.replica.leader as usize))
        }
        (None, None) => {
            bail!("give the members' ingress endpoints (--ingress) or a node's --config")
        }
    }
}

/// `exchange loadgen`.
pub fn loadgen(options: LoadOptions) -> Result<ExitCode> {
    if options.fix.is_some() {
        return loadgen_fix(options);
    }
    let (ingress, leader) = members_ingress(options.ingress.as_deref(), options.config.as_deref())?;
    install_signal_handlers();
    let port = match options.response_port {
        Some(port) => port,
        None => free_udp_port()?,
    };
    // A new client id each run unless given: the cluster discards sequence numbers it has seen.
    let client_id = options.client_id.unwrap_or_else(loadgen::fresh_client_id);
    let response = format!("{}:{port}", options.response_host);
    let mut config = LoadConfig::new(&ingress[leader], &response, client_id);
    config.ingress = ingress.clone();
    config.leader = leader;
    config.rate = options.rate;
    config.commands = options.commands;
    config.warmup = options.warmup;
    config.in_flight_max = options.in_flight;
    config.seed = options.seed;
    config.gap_threshold = Duration::from_millis(options.gap_ms);
    // The driver runs in the load generator's own loop: one busy thread.
    let driver = EmbeddedDriver::launch_invoked(&unique_dir("loadgen"))?;
    let aeron = connect(driver.dir())?;
    println!(
        "loadgen: client {client_id} → {} (first; members {}), {} commands (+{} warm-up), {}",
        ingress[leader],
        ingress.join(","),
        config.commands,
        config.warmup,
        if config.rate > 0 {
            format!("open loop at {} commands/s", config.rate)
        } else {
            format!("closed loop, {} in flight", config.in_flight_max)
        }
    );
    let started = Instant::now();
    let invoke = || {
        driver.do_work();
    };
    let report = loadgen::run(&aeron, &config, &STOP, &invoke, &mut |sent, answered| {
        println!(
            "  {:>5.1}s sent {sent} answered {answered}",
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stdout().flush();
    })?;
    println!(
        "committed {} rejected {} resent {} gap rejects {} repeated answers {} back-pressured offers {} blocked {:.1?}",
        report.committed,
        report.rejected,
        report.resends,
        report.gap_rejects,
        report.repeated_answers,
        report.back_pressured,
        report.blocked
    );
    let longest_gap = report
        .gaps_unix_ns
        .iter()
        .map(|(from, to)| to - from)
        .max()
        .unwrap_or(0);
    println!(
        "leader changes {} not-leader rejects {} answer gaps over {} ms {} (longest {:.1} ms) client sequences 1..={}",
        report.leader_changes,
        report.not_leader_rejects,
        options.gap_ms,
        report.gaps_unix_ns.len(),
        longest_gap as f64 / 1e6,
        report.client_sequence_last
    );
    if options.print_gaps {
        for (from, to) in &report.gaps_unix_ns {
            println!("gap {from} {to}");
        }
    }
    if !report.resent_sequences.is_empty() {
        println!(
            "first resent client sequences: {:?}",
            report.resent_sequences
        );
    }
    println!(
        "throughput {:.0} commands/s; commit round trip {}",
        report.throughput(),
        percentiles_us(&report.histogram)
    );
    if let Some(path) = options.hgrm {
        write_hgrm(&path, &report.histogram)?;
        println!("histogram written to {}", path.display());
    }
    drop(aeron);
    drop(driver);
    Ok(ExitCode::SUCCESS)
}

/// `exchange loadgen --fix`.
fn loadgen_fix(options: LoadOptions) -> Result<ExitCode> {
    use crate::fix_load::{self, FixLoadConfig, Generator, OrderSource};
    install_signal_handlers();
    let source = match &options.orders_csv {
        Some(path) => OrderSource::File(fix_load::read_orders_csv(path)?.into_iter()),
        None => OrderSource::Generated(Generator::new(
            options.seed,
            &format!(
                "{}-{}-",
                options.sender,
                loadgen::fresh_client_id() % 1_000_000
            ),
            {
                let known = crate::gateway_cmd::example_instruments();
                options
                    .symbols
                    .split(',')
                    .map(|symbol| fix_load::SymbolSpec::lookup(symbol, &known))
                    .collect()
            },
        )),
    };
    let config = FixLoadConfig {
        address: options.fix.clone().expect("--fix"),
        version: options.fix_version.clone(),
        sender: options.sender.clone(),
        target: options.target.clone(),
        rate: options.rate,
        requests: options.commands,
        in_flight_max: options.in_flight,
        duration: None,
        fills_csv: options.fills_csv.clone(),
        drain_timeout: Duration::from_secs(30),
        progress: None,
    };
    println!(
        "loadgen: FIX {} {}→{} at {}, {} requests from {}, {}",
        config.version,
        config.sender,
        config.target,
        config.address,
        config.requests,
        options
            .orders_csv
            .as_ref()
            .map_or(format!("the seeded flow (seed {})", options.seed), |p| p
                .display()
                .to_string()),
        if config.rate > 0 {
            format!("open loop at {} requests/s", config.rate)
        } else {
            format!("closed loop, {} in flight", config.in_flight_max)
        }
    );
    let report = fix_load::run(&config, source, &STOP)?;
    println!("{} in {:.2?}", report.summary(), report.elapsed);
    println!(
        "throughput {:.0} requests/s; first answer {}",
        report.answered as f64 / report.elapsed.as_secs_f64().max(1e-9),
        percentiles_us(&report.histogram)
    );
    if let Some(path) = &options.fills_csv {
        println!("fills written to {}", path.display());
    }
    if let Some(path) = &options.hgrm {
        write_hgrm(path, &report.histogram)?;
        println!("histogram written to {}", path.display());
    }
    Ok(if report.unanswered == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes a histogram in HdrHistogram's percentile-distribution text format (`.hgrm`, values in
/// microseconds), which the usual plotters read.
pub fn write_hgrm(path: &Path, histogram: &hdrhistogram::Histogram<u64>) -> Result<()> {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    // TotalCount is cumulative, as HdrHistogram's own output has it.
    let mut total = 0u64;
    for v in histogram.iter_quantiles(1) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inverse = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".into()
        };
        out.push_str(&format!(
            "{:12.3} {:14.12} {:10} {:>14}\n",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            total,
            inverse
        ));
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
        histogram.mean() / 1000.0,
        histogram.stdev() / 1000.0,
        histogram.max() as f64 / 1000.0,
        histogram.len()
    ));
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// A node process (`exchange node --config FILE`) and what it last reported: the fields of its
/// latest `status` line, and of its `stopped` line once it has exited cleanly.
pub struct NodeChild {
    pub config: PathBuf,
    child: Child,
    last: Arc<Mutex<BTreeMap<String, String>>>,
    /// How many status lines it has printed.
    lines: Arc<std::sync::atomic::AtomicU64>,
    stopped: Arc<Mutex<Option<BTreeMap<String, String>>>>,
}

/// `exe`, run through `wrapper` (a command that ends by executing the rest of its arguments, such
/// as `ip netns exec NAME`; empty for none).
pub fn wrapped_command(wrapper: &[&str], exe: &Path) -> std::process::Command {
    match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = std::process::Command::new(program);
            command.args(args).arg(exe);
            command
        }
        None => std::process::Command::new(exe),
    }
}

/// The `key=value` fields of a status line.
pub fn status_fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl NodeChild {
    /// Starts `exe node --config config`; `echo` also copies its output to ours.
    pub fn spawn(exe: &Path, config: &Path, echo: bool) -> Result<NodeChild> {
        Self::spawn_in(&[], exe, config, echo)
    }

    /// As [`NodeChild::spawn`], through a wrapper command that ends by executing the rest of its
    /// arguments (e.g. `ip netns exec NAME`), so the child is the node itself.
    pub fn spawn_in(wrapper: &[&str], exe: &Path, config: &Path, echo: bool) -> Result<NodeChild> {
        let mut child = wrapped_command(wrapper, exe)
            .arg("node")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting a node with {}", config.display()))?;
        let last = Arc::new(Mutex::new(BTreeMap::new()));
        let stopped = Arc::new(Mutex::new(None));
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (l, s, n) = (last.clone(), stopped.clone(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if echo {
                    println!("{line}");
                }
                if let Some(rest) = line.strip_prefix("status ") {
                    *l.lock().expect("not poisoned") = status_fields(rest);
                    n.fetch_add(1, std::sync::atomic::Ordering::Release);
                } else if let Some(rest) = line.strip_prefix("stopped ") {
                    *s.lock().expect("not poisoned") = Some(status_fields(rest));
                }
            }
        });
        Ok(NodeChild {
            config: config.to_path_buf(),
            child,
            last,
            lines,
            stopped,
        })
    }

    /// A numeric field of the latest status line (0 before the first).
    pub fn get(&self, key: &str) -> u64 {
        self.last
            .lock()
            .expect("not poisoned")
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// A text field of the latest status line ("" before the first).
    pub fn get_str(&self, key: &str) -> String {
        self.last
            .lock()
            .expect("not poisoned")
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// How many status lines it has printed so far.
    pub fn status_lines(&self) -> u64 {
        self.lines.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the process (SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child, which has not been waited for.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// SIGKILL: no clean shutdown.
    pub fn kill_hard(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Asks for a clean stop (SIGTERM).
    pub fn terminate(&self) {
        // SAFETY: signalling our own child, which has not been waited for.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Stops it cleanly (SIGTERM) and returns its final status fields.
    pub fn stop(mut self) -> Result<BTreeMap<String, String>> {
        self.terminate();
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{}: the node exited with {status}", self.config.display());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(stopped) = self.stopped.lock().expect("not poisoned").clone() {
                return Ok(stopped);
            }
            if Instant::now() > deadline {
                bail!("{}: no final status line", self.config.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        // Never leave a node behind (stop() has already reaped it, then this does nothing).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A helper process of ours (the gateway, the feed publisher) whose standard output a thread
/// reads to its end: copied to ours with `echo`, its last line kept for [`HelperProcess::stop`].
pub struct HelperProcess {
    pub name: &'static str,
    child: Child,
    reader: Option<std::thread::JoinHandle<Option<String>>>,
}

impl HelperProcess {
    /// Starts `command` with its standard output piped to the reader thread.
    pub fn spawn(
        mut command: std::process::Command,
        name: &'static str,
        echo: bool,
    ) -> Result<HelperProcess> {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if echo {
                    println!("{line}");
                }
                last = Some(line);
            }
            last
        });
        Ok(HelperProcess {
            name,
            child,
            reader: Some(reader),
        })
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Asks it to stop (SIGTERM), waits, and returns the last line it printed; an error unless
    /// it exited successfully.
    pub fn stop(&mut self) -> Result<String> {
        // SAFETY: signalling our own child, not yet reaped (a zombie ignores the signal).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{} exited with {status}", self.name);
        }
        // Its output ends when it exits: the reader has seen every line.
        let last = match self.reader.take() {
            Some(reader) => reader
                .join()
                .map_err(|_| anyhow::anyhow!("the reader of {} panicked", self.name))?,
            None => None,
        };
        Ok(last.unwrap_or_default())
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        // Never leave a helper behind (after stop() this does nothing).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The index of the node whose latest status says it leads the newest term.
pub fn leader_of(nodes: &[NodeChild]) -> Option<usize> {
    // The newest term's: a deposed leader's last status line may still say "leader" (of its
    // older term) for up to a status interval.
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.get_str("role") == "leader")
        .max_by_key(|(_, n)| n.get("term"))
        .map(|(index, _)| index)
}

/// Waits until a node leads and every node has applied everything the leader holds, as told by
/// status lines printed after this call began (two more from each node: the first may have been
/// taken before the call), so a command submitted just before is counted.
pub fn wait_settled(nodes: &[NodeChild], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let fresh_from: Vec<u64> = nodes.iter().map(|n| n.status_lines() + 2).collect();
    loop {
        let end = leader_of(nodes).map_or(0, |l| nodes[l].get("log_end"));
        if end > 0
            && nodes
                .iter()
                .zip(&fresh_from)
                .all(|(n, &from)| n.status_lines() >= from)
            && nodes
                .iter()
                .all(|n| n.get("applied") == end && n.get("commit") == end)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the nodes did not settle within {timeout:?}: (log end, commit, applied) {:?}",
                nodes
                    .iter()
                    .map(|n| (n.get("log_end"), n.get("commit"), n.get("applied")))
                    .collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What `exchange cluster up` was told on its command line (absent: from the cluster file, or
/// the default).
#[derive(Debug, Clone, Default)]
pub struct ClusterUpOptions {
    /// What the cluster file's `[local]` can say too (`--no-feed` is `feed: Some(false)`).
    pub local: crate::cluster_file::LocalSection,
    pub duration: Option<Duration>,
    pub status_ms: Option<u64>,
    pub idle: Option<String>,
}

/// What `exchange cluster up` starts.
#[derive(Debug, Clone)]
pub struct ClusterUp {
    pub nodes: u8,
    pub dir: PathBuf,
    /// Replication ports are base..base+nodes, ingress ports base+100..
    pub base_port: u16,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// FIX gateway port (0: no gateway).
    pub fix_port: u16,
    /// Start the market-data feed publisher.
    pub feed: bool,
    /// Extra keys of every node file's sections.
    pub sections: sequencer::config::LocalSections,
    /// The gateway's instruments and sessions, where they replace the built-in ones.
    pub instruments: Option<Vec<crate::gateway_cmd::InstrumentSection>>,
    pub sessions: Option<Vec<crate::gateway_cmd::SessionSection>>,
}

impl ClusterUp {
    /// The command line's options over the cluster file's (if any) over the defaults.
    pub fn resolve(config: Option<&Path>, options: ClusterUpOptions) -> Result<ClusterUp> {
        use crate::cluster_file::ClusterFile;
        let file = match config {
            Some(path) => ClusterFile::load(path)?,
            None => ClusterFile::default(),
        };
        let local = options.local.or(file.local.clone());
        // Keys cluster up gives every node unless the file sets them: its status interval and
        // idle strategies (the command line's --status-ms and --idle win over the file).
        let mut node = file.section("node").cloned().unwrap_or_default();
        let mut aeron = file.section("aeron").cloned().unwrap_or_default();
        let mut cluster = file.section("cluster").cloned().unwrap_or_default();
        let journal = file.section("journal").cloned().unwrap_or_default();
        if let Some(idle) = options.idle {
            node.insert("idle".into(), idle.clone().into());
            aeron.insert("driver_idle".into(), idle.into());
        }
        if let Some(status_ms) = options.status_ms {
            node.insert("status_interval_ms".into(), (status_ms as i64).into());
        }
        node.entry("status_interval_ms")
            .or_insert(toml::Value::Integer(5000));
        let idle = node
            .get("idle")
            .cloned()
            .unwrap_or_else(|| "backoff".into());
        node.entry("idle").or_insert(idle.clone());
        aeron.entry("driver_idle").or_insert(idle);
        cluster.entry("leader").or_insert(toml::Value::Integer(0));
        let text = |table: &toml::Table| -> Result<String> {
            toml::to_string(table).context("writing the node sections")
        };
        let up = ClusterUp {
            nodes: local.nodes.unwrap_or(3),
            dir: local.dir.unwrap_or_else(|| PathBuf::from("cluster")),
            base_port: local.base_port.unwrap_or(20100),
            duration: options.duration,
            fix_port: local.fix_port.unwrap_or(9878),
            feed: local.feed.unwrap_or(true),
            sections: sequencer::config::LocalSections {
                node: text(&node)?,
                cluster: text(&cluster)?,
                journal: text(&journal)?,
                aeron: text(&aeron)?,
            },
            instruments: file.instruments,
            sessions: file.sessions,
        };
        if up.base_port == 0 || up.base_port > u16::MAX - 201 {
            bail!(
                "--base-port {}: the cluster uses ports base..base+201 (1..={} allowed)",
                up.base_port,
                u16::MAX - 201
            );
        }
        if !(1..=sequencer::protocol::MEMBERS_MAX as u8).contains(&up.nodes) {
            bail!(
                "--nodes {}: a cluster has 1 to {} members",
                up.nodes,
                sequencer::protocol::MEMBERS_MAX
            );
        }
        Ok(up)
    }
}

/// `exchange cluster up`.
pub fn cluster_up(up: &ClusterUp) -> Result<ExitCode> {
    let ClusterUp {
        nodes,
        ref dir,
        base_port,
        duration,
        fix_port,
        feed,
        ..
    } = *up;
    let dir: &Path = dir;
    install_signal_handlers();
    let configs = sequencer::config::write_local_cluster_with(dir, nodes, base_port, &up.sections)
        .with_context(|| format!("writing configuration files in {}", dir.display()))?;
    // Refuse a bad setting before anything starts: every node's file as its node will read it,
    // and the gateway's as the gateway will.
    let loaded = configs
        .iter()
        .map(|config| NodeConfig::load(config))
        .collect::<Result<Vec<_>, _>>()?;
    let gateway_config = dir.join("gateway.toml");
    let gateway = if fix_port != 0 {
        crate::gateway_cmd::write_local_gateway_with(
            &gateway_config,
            &loaded[0].ingress,
            9001,
            Some(fix_port),
            up.instruments.as_deref(),
            up.sessions.as_deref(),
        )?;
        Some(crate::gateway_cmd::GatewayFile::load(&gateway_config)?)
    } else {
        None
    };
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for config in &configs {
        children.push(NodeChild::spawn(&exe, config, true)?);
    }
    println!(
        "cluster up: {nodes} node(s), configuration and journals in {}",
        dir.display()
    );
    println!(
        "  clients: ingress 127.0.0.1:{}..{} (node 0 is elected first; clients follow the leader), e.g. `exchange loadgen --config {} --rate 10000`",
        base_port + 100,
        base_port + 100 + nodes as u16 - 1,
        configs[0].display()
    );
    // The gateway and the feed publisher, each its own process.
    let mut helpers: Vec<HelperProcess> = Vec::new();
    if let Some(checked) = &gateway {
        let mut command = std::process::Command::new(&exe);
        command.arg("gateway").arg("--config").arg(&gateway_config);
        helpers.push(HelperProcess::spawn(command, "the gateway", true)?);
        println!(
            "  FIX: 127.0.0.1:{fix_port}; configuration {}",
            gateway_config.display()
        );
        for line in crate::gateway_cmd::describe(checked) {
            println!("    {line}");
        }
    }
    if feed {
        // The feed's channels follow the base port (20300 and 20301 for the default 20100, the
        // subscriber's defaults), so that clusters on other base ports can run side by side.
        let control = format!("127.0.0.1:{}", base_port + 200);
        let request = format!("127.0.0.1:{}", base_port + 201);
        let mut publisher = std::process::Command::new(&exe);
        publisher
            .args(["md", "publish", "--config"])
            .arg(&configs[0])
            .args(["--control", &control, "--request", &request, "--journal"])
            .arg(dir.join("feed-journal"));
        helpers.push(HelperProcess::spawn(publisher, "the feed publisher", true)?);
        let flags = if control == marketdata::aeron::DEFAULT_CONTROL
            && request == marketdata::aeron::DEFAULT_REQUEST
        {
            String::new()
        } else {
            format!(" --control {control} --request {request}")
        };
        println!(
            "  market data: ITCH 5.0 over Aeron, control {control}, requests {request}; watch it with `exchange md subscribe{flags} --top 5`"
        );
    }
    println!("  stop with Ctrl-C (SIGINT) or SIGTERM: every node shuts down cleanly");
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    let mut failed = false;
    'wait: while !STOP.load(Ordering::Acquire) && duration.is_none_or(|d| started.elapsed() < d) {
        for (id, child) in children.iter_mut().enumerate() {
            if let Some(status) = child.exited()? {
                eprintln!("node {id} exited on its own ({status}); stopping the cluster");
                failed = true;
                break 'wait;
            }
        }
        for helper in helpers.iter_mut() {
            if let Some(status) = helper.exited()? {
                eprintln!(
                    "{} exited on its own ({status}); stopping the cluster",
                    helper.name
                );
                failed = true;
                break 'wait;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for mut helper in helpers {
        if let Err(e) = helper.stop() {
            eprintln!("{e:#}");
            failed = true;
        }
    }
    for child in &children {
        child.terminate();
    }
    for (id, child) in children.into_iter().enumerate() {
        if let Err(e) = child.stop() {
            eprintln!("node {id}: {e:#}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_files_node_sections_are_written_back_key_for_key_under_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster.toml");
        std::fs::write(
            &file,
            "[local]\nnodes = 5\n[journal]\nsync = \"group-commit\"\n[cluster]\ncheckpoint_interval = 500\n[node]\nidle = \"yield\"\n",
        )
        .unwrap();
        let up = ClusterUp::resolve(Some(&file), ClusterUpOptions::default()).unwrap();
        assert_eq!(up.nodes, 5);
        assert_eq!(up.sections.journal, "sync = \"group-commit\"\n");
        assert_eq!(
            up.sections.cluster,
            "checkpoint_interval = 500\nleader = 0\n"
        );
        assert_eq!(
            up.sections.node,
            "idle = \"yield\"\nstatus_interval_ms = 5000\n"
        );
        assert_eq!(up.sections.aeron, "driver_idle = \"yield\"\n");
        // The command line wins over the file.
        let options = ClusterUpOptions {
            local: crate::cluster_file::LocalSection {
                nodes: Some(3),
                feed: Some(false),
                ..Default::default()
            },
            idle: Some("backoff".into()),
            ..Default::default()
        };
        let up = ClusterUp::resolve(Some(&file), options).unwrap();
        assert_eq!((up.nodes, up.feed), (3, false));
        assert_eq!(
            up.sections.node,
            "idle = \"backoff\"\nstatus_interval_ms = 5000\n"
        );
        assert_eq!(up.sections.aeron, "driver_idle = \"backoff\"\n");
    }
}
