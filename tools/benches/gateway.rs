//! Gateway round trip: a FIX NewOrderSingle in, its ExecutionReport New out, through a 3-node
//! cluster of node processes and the gateway process, open loop at a fixed rate (latency from
//! each order's intended send time, so a stall counts for every order it delays). The baseline,
//! measured in the same run against the same cluster: the cluster's own commit round trip from
//! `exchange loadgen` at the same rate. Orders alternate buy and sell of 1 at one price between
//! two sessions (CLIENT1 buys, CLIENT2 sells: two accounts, so self-trade prevention does not
//! cancel the sells), in an instrument of their own (ACME: the baseline's flow leaves DEMO's
//! book one-sided around its own mid), so every second order trades and nothing accumulates. Run with `cargo bench -p tools --bench gateway`
//! (`make bench`); `GATEWAY_BENCH_RATE` and `GATEWAY_BENCH_ORDERS` set the load.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sequencer::config::{free_base_port, write_local_cluster, NodeConfig};
use tools::cluster::NodeChild;

const EXCHANGE: &str = env!("CARGO_BIN_EXE_exchange");

/// The gateway process, killed however the benchmark ends (a panic included).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn fix(sender: &str, sequence: u64, msg_type: &str, fields: &str) -> Vec<u8> {
    let version = "FIX.4.4";
    let body = format!(
        "35={msg_type}\x0149={sender}\x0156=EXCH\x0134={sequence}\x0152=20260101-00:00:00.000\x01{fields}"
    );
    let mut message = format!("8={version}\x019={}\x01{body}", body.len()).into_bytes();
    let checksum = message.iter().map(|&b| b as u32).sum::<u32>() % 256;
    message.extend_from_slice(format!("10={checksum:03}\x01").as_bytes());
    message
}

fn value<'a>(message: &'a [u8], tag: &str) -> Option<&'a [u8]> {
    let key = format!("\x01{tag}=");
    let at = message
        .windows(key.len())
        .position(|w| w == key.as_bytes())?;
    let rest = &message[at + key.len()..];
    Some(&rest[..rest.iter().position(|&b| b == 1)?])
}

fn percentiles(h: &Histogram<u64>) -> [f64; 5] {
    let us = |v: u64| v as f64 / 1000.0;
    [
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.value_at_quantile(0.9999)),
        us(h.max()),
    ]
}

/// Parses loadgen's `commit round trip p50=…us p99=…us p99.9=…us p99.99=…us max=…us`.
fn loadgen_percentiles(stdout: &str) -> [f64; 5] {
    let line = stdout
        .lines()
        .find(|l| l.contains("commit round trip"))
        .unwrap_or_else(|| panic!("no round-trip line in:\n{stdout}"));
    let mut out = [0.0; 5];
    for (i, key) in ["p50=", "p99=", "p99.9=", "p99.99=", "max="]
        .iter()
        .enumerate()
    {
        let at = line.find(&format!(" {key}")).expect("percentile") + 1 + key.len();
        let number: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        out[i] = number.parse().expect("a number");
    }
    out
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rate = env_or("GATEWAY_BENCH_RATE", 2_000);
    let orders = env_or("GATEWAY_BENCH_ORDERS", if smoke { 500 } else { 40_000 });
    let dir = tempfile::tempdir().expect("temporary directory");
    let base = free_base_port(3).expect("ports");
    let configs: Vec<PathBuf> = write_local_cluster(
        dir.path(),
        3,
        base,
        "status_interval_ms = 1000",
        "driver_idle = \"backoff\"",
    )
    .expect("cluster configuration");
    let nodes: Vec<NodeChild> = configs
        .iter()
        .map(|c| NodeChild::spawn(Path::new(EXCHANGE), c, false).expect("node"))
        .collect();
    let ingress = NodeConfig::load(&configs[0]).expect("config").ingress;
    let gateway_config = dir.path().join("gateway.toml");
    let port = tools::gateway_cmd::write_local_gateway(&gateway_config, &ingress, 88, None)
        .expect("gateway");
    let mut gateway = KillOnDrop(
        Command::new(EXCHANGE)
            .args(["gateway", "--config"])
            .arg(&gateway_config)
            .stdout(Stdio::null())
            .spawn()
            .expect("gateway"),
    );

    // The baseline: the cluster's commit round trip at the same rate, same cluster.
    let output = Command::new(EXCHANGE)
        .args(["loadgen", "--config"])
        .arg(&configs[0])
        .args([
            "--rate",
            &rate.to_string(),
            "--commands",
            &orders.to_string(),
            "--warmup",
            &(orders / 10).to_string(),
        ])
        .output()
        .expect("loadgen");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "loadgen failed:\n{stdout}");
    let cluster = loadgen_percentiles(&stdout);

    // The gateway: two FIX sessions, open loop; order `id` goes to CLIENT1 (odd: buy) or
    // CLIENT2 (even: sell).
    let senders = ["CLIENT1", "CLIENT2"];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut streams: Vec<TcpStream> = senders
        .iter()
        .map(|sender| {
            let mut stream = loop {
                match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(stream) => break stream,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => panic!("the gateway does not accept: {e}"),
                }
            };
            stream.set_nodelay(true).expect("nodelay");
            stream
                .write_all(&fix(sender, 1, "A", "98=0\x01108=30\x01141=Y\x01"))
                .expect("logon");
            stream
        })
        .collect();
    let warmup = orders / 10;
    let total = orders + warmup;
    let interval_ns = 1_000_000_000 / rate.max(1);
    let (sender, receiver) = std::sync::mpsc::channel::<Histogram<u64>>();
    let start = Instant::now() + Duration::from_millis(500);
    for (session, stream) in streams.iter().enumerate() {
        let mut reader = stream.try_clone().expect("clone");
        let sender = sender.clone();
        // Orders 1, 3, 5, ... or 2, 4, 6, ...
        let expected = (total + 1 - session as u64) / 2;
        std::thread::spawn(move || {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("h");
            let mut buffer = Vec::with_capacity(1 << 20);
            let mut chunk = vec![0u8; 1 << 16];
            let mut news = 0u64;
            let mut last = Vec::new();
            while news < expected {
                let n = reader.read(&mut chunk).expect("read");
                assert!(
                    n > 0,
                    "the gateway closed session {session} after {news} of {expected} ExecutionReports New; last message: {}",
                    String::from_utf8_lossy(&last[..]).replace('\x01', "|")
                );
                let now = start.elapsed().as_nanos() as u64;
                buffer.extend_from_slice(&chunk[..n]);
                while let Some(end) = buffer
                    .windows(4)
                    .position(|w| w == b"\x0110=")
                    .map(|at| at + 8)
                    .filter(|&end| end <= buffer.len())
                {
                    let message = &buffer[..end];
                    last.clear();
                    last.extend_from_slice(message);
                    assert!(
                        !(value(message, "35") == Some(b"8")
                            && value(message, "150") == Some(b"8")),
                        "an order was rejected: {}",
                        String::from_utf8_lossy(message).replace('\x01', "|")
                    );
                    if value(message, "35") == Some(b"8") && value(message, "150") == Some(b"0") {
                        let id: u64 =
                            std::str::from_utf8(&value(message, "11").expect("ClOrdID")[1..])
                                .expect("ascii")
                                .parse()
                                .expect("number");
                        news += 1;
                        if id > warmup {
                            histogram.saturating_record(
                                now.saturating_sub((id - 1) * interval_ns).max(1),
                            );
                        }
                    }
                    buffer.drain(..end);
                }
            }
            let _ = sender.send(histogram);
        });
    }
    drop(sender);
    while Instant::now() < start {
        std::thread::sleep(Duration::from_millis(1));
    }
    for id in 1..=total {
        let due = Duration::from_nanos((id - 1) * interval_ns);
        while start.elapsed() < due {
            let left = due.saturating_sub(start.elapsed());
            if left > Duration::from_micros(200) {
                std::thread::sleep(left - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
        }
        let session = ((id - 1) % 2) as usize;
        let side = if session == 0 { "1" } else { "2" };
        let fields = format!(
            "11=O{id}\x0155=ACME\x0154={side}\x0138=1\x0140=2\x0144=25.00\x0159=0\x0160=20260101-00:00:00.000\x01"
        );
        // Each session's MsgSeqNum: 1 was its Logon.
        let sequence = id.div_ceil(2) + 1;
        streams[session]
            .write_all(&fix(senders[session], sequence, "D", &fields))
            .expect("send");
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("h");
    for _ in 0..senders.len() {
        let session = receiver
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("every ExecutionReport New: {e}"));
        histogram.add(session).expect("same bounds");
    }
    let gateway_p = percentiles(&histogram);
    let _ = gateway.0.kill();
    let _ = gateway.0.wait();
    for node in nodes {
        let _ = node.stop();
    }
    println!(
        "gateway round trip (FIX NewOrderSingle → ExecutionReport New, 3-node cluster of processes on loopback), {orders} orders at {rate}/s open loop (+{warmup} warm-up), µs:"
    );
    println!("| path | p50 | p99 | p99.9 | p99.99 | max |");
    println!("|---|---|---|---|---|---|");
    for (name, p) in [
        ("cluster commit round trip (loadgen, baseline)", cluster),
        ("FIX through the gateway", gateway_p),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            p[0], p[1], p[2], p[3], p[4]
        );
    }
    println!(
        "gateway / baseline: p50 {:.2}x, p99 {:.2}x",
        gateway_p[0] / cluster[0],
        gateway_p[1] / cluster[1]
    );
}
