//! The market-data feed across leader failovers, all as processes: three `exchange node`s, an
//! `exchange md publish` following the committed log as a learner, an `exchange md subscribe`,
//! and `exchange loadgen`; the leader is killed with SIGKILL twice under load (and restarted).
//! The publisher ends at the cluster's last sequence, and the subscriber applied exactly the
//! messages the publisher published (each feed sequence once, in order: the subscriber enforces
//! it) with every book checksum verified: no gap, no duplicate, books equal to the engine's.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sequencer::config::{free_base_port, write_local_cluster};
use tools::cluster::{free_udp_port, leader_of, wait_settled, NodeChild};

const EXCHANGE: &str = env!("CARGO_BIN_EXE_exchange");

/// A child whose stdout and stderr lines are collected.
struct Lines {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    fn spawn(command: &mut Command) -> Lines {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err) as Box<dyn std::io::Read + Send>,
        ] {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        Lines { child, lines }
    }

    /// SIGINT, wait (bounded), and the output.
    fn interrupt(mut self) -> (bool, Vec<String>) {
        // SAFETY: signalling our own child, not yet waited for.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("did not stop: {:?}", self.lines.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(200));
        let lines = self.lines.lock().unwrap().clone();
        (status.success(), lines)
    }
}

/// The number after `key` in `line`.
fn number_after(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {line:?}"))
        + key.len();
    line[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in {line:?}"))
}

#[test]
fn the_feed_continues_across_leader_kills_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port(3).unwrap();
    let configs: Vec<PathBuf> = write_local_cluster(
        dir.path(),
        3,
        base,
        "status_interval_ms = 100",
        "driver_idle = \"backoff\"",
    )
    .unwrap();
    let mut nodes: Vec<NodeChild> = configs
        .iter()
        .map(|c| NodeChild::spawn(Path::new(EXCHANGE), c, false).unwrap())
        .collect();
    let control = format!("127.0.0.1:{}", free_udp_port().unwrap());
    let request = format!("127.0.0.1:{}", free_udp_port().unwrap());
    let endpoint = format!("127.0.0.1:{}", free_udp_port().unwrap());
    let publisher = Lines::spawn(
        Command::new(EXCHANGE)
            .args(["md", "publish", "--config"])
            .arg(&configs[0])
            .args(["--control", &control, "--request", &request, "--journal"])
            .arg(dir.path().join("feed-journal")),
    );
    let subscriber = Lines::spawn(Command::new(EXCHANGE).args([
        "md",
        "subscribe",
        "--control",
        &control,
        "--request",
        &request,
        "--endpoint",
        &endpoint,
        "--top",
        "0",
    ]));
    let mut load = Command::new(EXCHANGE)
        .args(["loadgen", "--config"])
        .arg(&configs[0])
        .args(["--rate", "2000", "--commands", "16000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(2500));
        let leader = leader_of(&nodes).expect("a leader");
        nodes[leader].kill_hard().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        nodes[leader] = NodeChild::spawn(Path::new(EXCHANGE), &configs[leader], false).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while load.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the load generator did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = load.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    wait_settled(&nodes, Duration::from_secs(30)).unwrap();
    let sequence = nodes[0].get("sequence");
    // Let the publisher and the subscriber reach the end.
    std::thread::sleep(Duration::from_secs(3));
    let (published_ok, published) = publisher.interrupt();
    let (subscribed_ok, subscribed) = subscriber.interrupt();
    assert!(published_ok, "{published:?}");
    assert!(subscribed_ok, "{subscribed:?}");
    let publisher_last = published
        .iter()
        .find(|l| l.starts_with("md publish: stopped"))
        .unwrap_or_else(|| panic!("{published:?}"));
    assert_eq!(
        number_after(publisher_last, "learner at sequence"),
        sequence,
        "{publisher_last}"
    );
    let messages = number_after(publisher_last, "messages");
    let subscriber_last = subscribed
        .iter()
        .find(|l| l.contains("messages applied"))
        .unwrap_or_else(|| panic!("{subscribed:?}"));
    assert_eq!(
        subscriber_last
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok()),
        Some(messages),
        "published: {publisher_last}\nsubscribed: {subscriber_last}"
    );
    assert!(
        number_after(subscriber_last, "messages applied,") > 10,
        "{subscriber_last}"
    );
    let dirs: Vec<PathBuf> = (0..3)
        .map(|id| dir.path().join(format!("journal-{id}")))
        .collect();
    tools::chaos::stop_and_verify(nodes, &dirs).unwrap_or_else(|e| panic!("{e:#}"));
}
