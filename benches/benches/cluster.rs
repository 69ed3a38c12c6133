//! Commit round trip through a replicated cluster of node processes, open loop, against a raw
//! Aeron UDP ping-pong between two processes measured in the same run.
//!
//! Every node is its own process (this executable re-run with `CLUSTER_BENCH_ROLE=node`) with its
//! own embedded media driver run inside its one thread, as `exchange node` runs; the load
//! generator runs here with its own invoked driver, and so do both ends of the ping-pong. For each cluster size and offered rate: commands are due at fixed intervals and each
//! latency is measured from its intended send time (no coordinated omission), from the client's
//! send to the client's receipt of the Committed response (leader sequences and journals, a
//! majority holds it, the leader's matcher applies it, the response travels back).
//!
//! `cargo bench -p benches --bench cluster`; `CLUSTER_BENCH_NODES=1,3,5`,
//! `CLUSTER_BENCH_RATES=10000,50000,...`, `CLUSTER_BENCH_SECONDS=3`,
//! `CLUSTER_BENCH_IDLE=yield|backoff|busy-spin`, `CLUSTER_BENCH_MAX_SLEEP_US=20` (backoff's
//! longest sleep). Without `--bench` (as `cargo test` runs it) a
//! small smoke run checks that it works.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{format_ns, format_rate, histogram, machine, table_row};
use hdrhistogram::Histogram;
use sequencer::config::{free_base_port, write_local_cluster, NodeConfig};
use sequencer::driver::{unique_dir, EmbeddedDriver};
use sequencer::loadgen::{self, LoadConfig};
use sequencer::transport::{await_added, channel, connect, AeronReceiver};

const PING_STREAM: i32 = 2001;
const PING_LEN: usize = 32;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A stop flag set when the parent closes our stdin (or dies).
fn stop_on_stdin_close() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buffer), Ok(n) if n > 0) {}
        flag.store(true, Ordering::Release);
    });
    stop
}

/// A child process of this executable in `role`, stopped by closing its stdin.
fn spawn_role(role: &str, args: &[&str]) -> Child {
    Command::new(std::env::current_exe().expect("own path"))
        .env("CLUSTER_BENCH_ROLE", role)
        .env("CLUSTER_BENCH_ARGS", args.join(" "))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn a bench process")
}

fn stop_child(mut child: Child) {
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.wait();
}

/// Child role: one node, until stdin closes.
fn run_node_role(config: &Path) {
    let checked = NodeConfig::load(config).expect("valid node config");
    let stop = stop_on_stdin_close();
    sequencer::runtime::run_node(&checked, &stop, &mut |_| {}).expect("node runs");
}

/// Child role: echo every ping back, until stdin closes.
fn run_pong_role(args: &str) {
    let mut parts = args.split_whitespace();
    let (listen, reply, idle) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let stop = stop_on_stdin_close();
    let driver = EmbeddedDriver::launch_invoked(&unique_dir("pong")).unwrap();
    let invoke = || {
        driver.do_work();
    };
    let aeron = connect(driver.dir()).unwrap();
    let mut receiver = AeronReceiver::new_invoking(&aeron, listen, PING_STREAM, &invoke).unwrap();
    let adding = aeron
        .async_add_exclusive_publication(&channel(reply), PING_STREAM)
        .unwrap();
    let publication = await_added(|| adding.poll(), &invoke).unwrap();
    let mut message = [0u8; PING_LEN];
    while !stop.load(Ordering::Acquire) {
        invoke();
        receiver.poll(16).unwrap();
        let mut got = false;
        receiver.drain(|bytes| {
            message.copy_from_slice(&bytes[..PING_LEN]);
            got = true;
        });
        if got {
            while publication.offer(&message).is_err() && !stop.load(Ordering::Acquire) {
                invoke();
            }
        } else if idle != "busy-spin" {
            std::thread::yield_now();
        }
    }
}

/// The baseline: round trips of a 32-byte message to another process and back over Aeron UDP.
fn ping_pong(samples: u64, idle: &str) -> Histogram<u64> {
    let base = free_base_port(1).expect("free ports");
    let (ping_endpoint, pong_endpoint) = (
        format!("127.0.0.1:{base}"),
        format!("127.0.0.1:{}", base + 100),
    );
    let pong = spawn_role("pong", &[&ping_endpoint, &pong_endpoint, idle]);
    let driver = EmbeddedDriver::launch_invoked(&unique_dir("ping")).unwrap();
    let invoke = || {
        driver.do_work();
    };
    let aeron = connect(driver.dir()).unwrap();
    let mut receiver =
        AeronReceiver::new_invoking(&aeron, &pong_endpoint, PING_STREAM, &invoke).unwrap();
    let adding = aeron
        .async_add_exclusive_publication(&channel(&ping_endpoint), PING_STREAM)
        .unwrap();
    let publication = await_added(|| adding.poll(), &invoke).unwrap();
    let mut h = histogram();
    let warmup = samples / 5;
    let mut message = [0u8; PING_LEN];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0u64;
    while i < warmup + samples {
        assert!(Instant::now() < deadline, "ping-pong stalled");
        message[..8].copy_from_slice(&i.to_le_bytes());
        let sent = Instant::now();
        if publication.offer(&message).is_err() {
            invoke();
            continue;
        }
        let mut back = false;
        let resend_at = sent + Duration::from_secs(1);
        while !back && Instant::now() < resend_at {
            invoke();
            receiver.poll(16).unwrap();
            receiver.drain(|bytes| back |= bytes[..8] == i.to_le_bytes());
            if !back && idle != "busy-spin" {
                std::thread::yield_now();
            }
        }
        if back {
            if i >= warmup {
                h.saturating_record(sent.elapsed().as_nanos() as u64);
            }
            i += 1;
        }
    }
    drop(publication);
    stop_child(pong);
    h
}

struct RateResult {
    offered: u64,
    in_flight: usize,
    achieved: f64,
    histogram: Histogram<u64>,
    blocked: Duration,
    resends: u64,
}

/// Starts `nodes` node processes, runs the load at every rate (and closed loop), stops them.
fn cluster(
    nodes: u8,
    rates: &[u64],
    seconds: f64,
    idle: &str,
) -> (Vec<RateResult>, Option<RateResult>) {
    let dir = tempfile::tempdir().unwrap();
    // The nodes' ports and one more for the client's responses.
    let base = free_base_port(nodes as u16 + 1).expect("free ports");
    let configs = write_local_cluster(
        dir.path(),
        nodes,
        base,
        &format!(
            "idle = \"{idle}\"\nidle_max_sleep_us = {}",
            env_or("CLUSTER_BENCH_MAX_SLEEP_US", 20u64)
        ),
        &format!("driver_idle = \"{idle}\""),
    )
    .unwrap();
    let children: Vec<Child> = configs
        .iter()
        .map(|c| spawn_role("node", &[c.to_str().unwrap()]))
        .collect();
    let leader_ingress = format!("127.0.0.1:{}", base + 100);
    let response = format!("127.0.0.1:{}", base + nodes as u16);
    let driver =
        EmbeddedDriver::launch_invoked(&unique_dir("bench-client")).expect("client driver");
    let invoke = || {
        driver.do_work();
    };
    let aeron = connect(driver.dir()).unwrap();
    let stop = AtomicBool::new(false);
    let mut client_id = 1000 * nodes as u64;
    let mut run = |rate: u64, commands: u64, warmup: u64, in_flight: usize| -> RateResult {
        client_id += 1;
        let mut config = LoadConfig::new(&leader_ingress, &response, client_id);
        // Node 0 is asked first; the client follows whichever node is elected.
        config.ingress = (0..nodes as u16)
            .map(|i| format!("127.0.0.1:{}", base + 100 + i))
            .collect();
        config.rate = rate;
        config.commands = commands;
        config.warmup = warmup;
        config.in_flight_max = in_flight;
        config.stall_timeout = Duration::from_secs(30);
        let report =
            loadgen::run(&aeron, &config, &stop, &invoke, &mut |_, _| {}).expect("load runs");
        assert_eq!(
            report.committed,
            commands + warmup,
            "every command committed"
        );
        RateResult {
            offered: rate,
            in_flight,
            achieved: report.throughput(),
            histogram: report.histogram,
            blocked: report.blocked,
            resends: report.resends,
        }
    };
    // One warm-up pass creates the instrument, connects, and faults in the journals.
    run(2_000, 2_000, 0, 1 << 20);
    // One command at a time, closed loop: the round trip of an unloaded cluster, comparable with
    // the ping-pong (also one message in flight).
    let mut results = vec![run(0, (20_000.0 * seconds) as u64, 2_000, 1)];
    for &rate in rates {
        let commands = ((rate as f64 * seconds) as u64).max(1000);
        results.push(run(rate, commands, commands / 5, 1 << 20));
    }
    let saturation = (seconds >= 1.0).then(|| {
        let commands = 1_000_000.min((600_000.0 * seconds) as u64);
        run(0, commands, commands / 10, 16_384)
    });
    drop(aeron);
    drop(driver);
    for child in children {
        stop_child(child);
    }
    (results, saturation)
}

fn main() {
    match std::env::var("CLUSTER_BENCH_ROLE").as_deref() {
        Ok("node") => {
            return run_node_role(Path::new(&std::env::var("CLUSTER_BENCH_ARGS").unwrap()))
        }
        Ok("pong") => return run_pong_role(&std::env::var("CLUSTER_BENCH_ARGS").unwrap()),
        _ => {}
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let idle: String = env_or("CLUSTER_BENCH_IDLE", "yield".to_string());
    let nodes: Vec<u8> = env_or(
        "CLUSTER_BENCH_NODES",
        if smoke { "1,3" } else { "1,3,5" }.to_string(),
    )
    .split(',')
    .map(|s| s.trim().parse().expect("node count"))
    .collect();
    let rates: Vec<u64> = env_or(
        "CLUSTER_BENCH_RATES",
        if smoke {
            "5000"
        } else {
            "10000,50000,100000,200000,300000,500000"
        }
        .to_string(),
    )
    .split(',')
    .map(|s| s.trim().parse().expect("rate"))
    .collect();
    let seconds: f64 = env_or("CLUSTER_BENCH_SECONDS", if smoke { 0.2 } else { 3.0 });
    let pings: u64 = if smoke { 2_000 } else { 50_000 };

    println!("# Cluster benchmark\n\nmachine: {}; idle strategy {idle} everywhere; one thread per process, each running its own embedded media driver (agent invoker), UDP on 127.0.0.1; open loop, latency from each command's intended send time\n", machine());
    let baseline = ping_pong(pings, &idle);
    println!("## Baseline: raw Aeron UDP ping-pong between two processes ({pings} round trips, 32 bytes)\n");
    println!("{}", benches::table_header("baseline"));
    println!("{}", table_row("ping-pong", "closed loop", &baseline));
    let base_p50 = baseline.value_at_quantile(0.5) as f64;
    println!("\n## Commit round trip (client → leader → majority → applied → client)\n");
    println!(
        "| nodes | offered | committed | p50 | p99 | p99.9 | p99.99 | max | p50 / ping-pong p50 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut saturations = Vec::new();
    for &n in &nodes {
        let (results, saturation) = cluster(n, &rates, seconds, &idle);
        for r in results.iter().chain(saturation.iter()) {
            let offered = if r.offered == 0 {
                format!("closed loop, {} in flight", r.in_flight)
            } else {
                format_rate(r.offered as f64)
            };
            let h = &r.histogram;
            println!(
                "| {n} | {offered} | {} | {} | {} | {} | {} | {} | {:.2}x |{}",
                format_rate(r.achieved),
                format_ns(h.value_at_quantile(0.5)),
                format_ns(h.value_at_quantile(0.99)),
                format_ns(h.value_at_quantile(0.999)),
                format_ns(h.value_at_quantile(0.9999)),
                format_ns(h.max()),
                h.value_at_quantile(0.5) as f64 / base_p50,
                if r.resends > 0 || !r.blocked.is_zero() {
                    format!(" (resends {}, blocked {:.1?})", r.resends, r.blocked)
                } else {
                    String::new()
                }
            );
        }
        if let Some(s) = saturation {
            saturations.push((n, s.achieved));
        }
    }
    if !saturations.is_empty() {
        println!("\n## Saturation throughput (closed loop)\n");
        for (n, rate) in saturations {
            println!("- {n} node(s): {} committed", format_rate(rate));
        }
    }
}
