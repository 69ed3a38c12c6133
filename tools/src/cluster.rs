//! Running nodes as processes: `exchange node`, `exchange cluster up` and `exchange loadgen`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sequencer::config::{write_local_cluster, NodeConfig};
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
pub struct LoadOptions {
    pub config: Option<PathBuf>,
    pub ingress: Option<String>,
    pub rate: u64,
    pub commands: u64,
    pub warmup: u64,
    pub in_flight: usize,
    pub seed: u64,
    pub client_id: Option<u64>,
    pub response_port: Option<u16>,
    pub hgrm: Option<PathBuf>,
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `exchange loadgen`.
pub fn loadgen(options: LoadOptions) -> Result<ExitCode> {
    let ingress = match (&options.ingress, &options.config) {
        (Some(ingress), _) => ingress.clone(),
        (None, Some(config)) => NodeConfig::load(config)?.leader_ingress,
        (None, None) => {
            bail!("give the leader's ingress endpoint (--ingress) or a node's --config")
        }
    };
    install_signal_handlers();
    let port = match options.response_port {
        Some(port) => port,
        None => free_udp_port()?,
    };
    // A new client id each run unless given: the cluster discards sequence numbers it has seen.
    let client_id = options.client_id.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        (nanos ^ (u64::from(std::process::id()) << 40)) | 1
    });
    let mut config = LoadConfig::new(&ingress, &format!("127.0.0.1:{port}"), client_id);
    config.rate = options.rate;
    config.commands = options.commands;
    config.warmup = options.warmup;
    config.in_flight_max = options.in_flight;
    config.seed = options.seed;
    // The driver runs in the load generator's own loop: one busy thread.
    let driver = EmbeddedDriver::launch_invoked(&unique_dir("loadgen"))?;
    let aeron = connect(driver.dir())?;
    println!(
        "loadgen: client {client_id} → {ingress}, {} commands (+{} warm-up), {}",
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

/// Writes a histogram in HdrHistogram's percentile-distribution text format (`.hgrm`, values in
/// microseconds), which the usual plotters read.
pub fn write_hgrm(path: &Path, histogram: &hdrhistogram::Histogram<u64>) -> Result<()> {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in histogram.iter_quantiles(1) {
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
            v.count_since_last_iteration(),
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

/// Spawns `exchange node --config FILE` (this same executable).
pub fn spawn_node(config: &Path) -> Result<Child> {
    std::process::Command::new(std::env::current_exe()?)
        .arg("node")
        .arg("--config")
        .arg(config)
        .spawn()
        .with_context(|| format!("starting a node with {}", config.display()))
}

fn terminate(child: &Child) {
    // SAFETY: sending a signal to a child process we started and have not waited for.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

/// `exchange cluster up`.
pub fn cluster_up(
    nodes: u8,
    dir: &Path,
    base_port: u16,
    duration: Option<Duration>,
    status_ms: u64,
    idle: &str,
) -> Result<ExitCode> {
    if !(1..=sequencer::protocol::MEMBERS_MAX as u8).contains(&nodes) {
        bail!(
            "--nodes {nodes}: a cluster has 1 to {} members",
            sequencer::protocol::MEMBERS_MAX
        );
    }
    install_signal_handlers();
    let configs = write_local_cluster(
        dir,
        nodes,
        base_port,
        &format!("status_interval_ms = {status_ms}\nidle = \"{idle}\""),
        &format!("driver_idle = \"{idle}\""),
    )
    .with_context(|| format!("writing configuration files in {}", dir.display()))?;
    let mut children = Vec::new();
    for config in &configs {
        children.push(spawn_node(config)?);
    }
    println!(
        "cluster up: {nodes} node(s), configuration and journals in {}",
        dir.display()
    );
    println!(
        "  clients: send to the leader's ingress 127.0.0.1:{} (e.g. `exchange loadgen --config {} --rate 10000`)",
        base_port + 100,
        configs[0].display()
    );
    println!("  stop with Ctrl-C (SIGINT) or SIGTERM: every node shuts down cleanly");
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    let mut failed = false;
    'wait: while !STOP.load(Ordering::Acquire) && duration.is_none_or(|d| started.elapsed() < d) {
        for (id, child) in children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()? {
                eprintln!("node {id} exited on its own ({status}); stopping the cluster");
                failed = true;
                break 'wait;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for child in &children {
        terminate(child);
    }
    for (id, child) in children.iter_mut().enumerate() {
        let status = child.wait()?;
        if !status.success() {
            eprintln!("node {id}: {status}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
