//! The `exchange` command run for real on small inputs.

use assert_cmd::Command;

fn exchange() -> Command {
    Command::cargo_bin("exchange").unwrap()
}

/// The README's main job, short: node processes over Aeron UDP, the FIX gateway with three
/// simulated traders, the feed publisher and a subscriber, load from the load generator; proof
/// of agreement (offline replay of every journal, the gateway's replica, the subscriber's books
/// against the feed the journal implies, every FIX request answered).
#[test]
fn demo_with_node_processes_reports_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let output = exchange()
        .args([
            "demo",
            "--duration",
            "4",
            "--rate",
            "5000",
            "--fix-rate",
            "100",
            "--dir",
            path,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("load generator      20000 of 20000 commands committed (0 rejected"),
        "{stdout}"
    );
    for session in ["CLIENT1", "CLIENT2", "CLIENT3"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("  FIX {session}")))
            .unwrap_or_else(|| panic!("no line of {session}: {stdout}"));
        assert!(
            line.contains("400 requests, 400 answered") && line.ends_with(", 0 unanswered"),
            "{line}"
        );
        // Every fill reported to the trader is in its fills file.
        let fills =
            std::fs::read_to_string(dir.path().join(format!("fills-{session}.csv"))).unwrap();
        // "... cancel rejects), N fills (quantity Q), 0 unanswered"
        let reported: usize = line
            .split("), ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(fills.lines().count(), reported + 1, "{line}");
        assert!(fills.starts_with("time_unix_ns,session,cl_ord_id,order_id"));
    }
    assert!(stdout.contains(": equal\n  market data"), "{stdout}");
    let market_data = stdout
        .lines()
        .find(|l| l.starts_with("  market data "))
        .unwrap();
    assert!(market_data.ends_with(": equal"), "{market_data}");
    assert!(
        stdout.contains("journals            byte-identical on all 3 nodes"),
        "{stdout}"
    );
    assert!(stdout.contains("agreement: every replica"), "{stdout}");
    let replays: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("offline replay "))
        .collect();
    assert_eq!(replays.len(), 3, "{stdout}");
    for line in replays {
        let hash = &line[line.find("state hash ").unwrap() + 11..][..16];
        assert!(line.ends_with(&format!("offline replay {hash}")), "{line}");
    }
    // The nodes stopped cleanly: no process left, journals verify.
    for id in 0..3 {
        let journal = dir.path().join(format!("journal-{id}"));
        assert!(journal::verify(&journal).is_ok());
    }
}

#[test]
fn demo_reports_agreement_of_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let output = exchange()
        .args(["demo", "--in-process", "--commands", "20000", "--dir", path])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The instrument plus the flow.
    assert!(stdout.contains("commands committed  20001 in"), "{stdout}");
    assert!(
        stdout.contains("journals            byte-identical on all 3 nodes"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("agreement: every replica has the same journal, state hash and event stream"),
        "{stdout}"
    );
    let hashes: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(": state hash "))
        .map(|l| &l[l.find("state hash").unwrap()..l.find(", event").unwrap()])
        .collect();
    assert_eq!(hashes.len(), 3);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");

    // The journals it left verify, and dump shows the instrument command first.
    let node0 = dir.path().join("node-0");
    let verify = exchange()
        .args(["journal", "verify", node0.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{text}");
    assert!(text.starts_with("ok: "), "{text}");
    let dump = exchange()
        .args([
            "journal",
            "dump",
            node0.to_str().unwrap(),
            "--limit",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dump.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // Term start (type 3, empty) at position 0, then the client command (type 1) after its 40 bytes.
    assert!(
        lines[0].starts_with("{\"position\":0,\"sequence\":1,\"term\":1,"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("\"type\":3,\"flags\":0,\"length\":0,"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("{\"position\":40,\"sequence\":2,\"term\":1,"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("\"type\":1,\"flags\":0,\"length\":80,"),
        "{}",
        lines[1]
    );
}

#[test]
fn journal_verify_names_the_damaged_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    exchange()
        .args([
            "demo",
            "--in-process",
            "--commands",
            "100",
            "--nodes",
            "1",
            "--dir",
            path,
        ])
        .assert()
        .success();
    let node0 = dir.path().join("node-0");
    // Damage a byte of the second record's payload (it starts at position 40, payload at 80).
    let segment = node0.join(journal::format::segment_file_name(0));
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[4096 + 90] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let verify = exchange()
        .args(["journal", "verify", node0.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(!verify.status.success());
    assert!(text.contains("record checksum mismatch"), "{text}");
    assert!(
        text.contains("segment-0000000000.journal (segment 0) at file offset 4136 (position 40)"),
        "{text}"
    );
}

#[test]
fn simulate_runs_seeds_and_replays_one() {
    let output = exchange()
        .args(["simulate", "--seeds", "20", "--start", "100"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.starts_with("ok: 20 seeds (100..120)"), "{text}");
    let one = exchange()
        .args(["simulate", "--seed", "5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&one.stdout);
    assert!(one.status.success(), "{text}");
    assert!(
        text.contains("SimConfig { seed: 5,") && text.contains("ok: SimReport"),
        "{text}"
    );
}

#[test]
fn journal_replay_rebuilds_the_state_the_cluster_reached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let demo = exchange()
        .args(["demo", "--in-process", "--commands", "30000", "--dir", path])
        .output()
        .unwrap();
    let demo_text = String::from_utf8_lossy(&demo.stdout);
    assert!(demo.status.success(), "{demo_text}");
    let line = demo_text
        .lines()
        .find(|l| l.trim_start().starts_with("node 1: state hash "))
        .unwrap();
    let hash = &line[line.find("state hash ").unwrap() + 11..][..16];

    for node in ["node-0", "node-2"] {
        let replay = exchange()
            .args(["journal", "replay", dir.path().join(node).to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&replay.stdout);
        assert!(replay.status.success(), "{text}");
        assert!(
            text.starts_with("replayed 30001 commands up to sequence "),
            "{text}"
        );
        assert!(
            text.contains(&format!("state hash {hash}")),
            "{text}\nexpected {hash}"
        );
        assert!(text.contains("checkpoints verified 3"), "{text}");
    }
    // Replaying to an earlier sequence gives an earlier, different state.
    let replay = exchange()
        .args([
            "journal",
            "replay",
            dir.path().join("node-0").to_str().unwrap(),
            "--to",
            "1000",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(
        text.starts_with("replayed 999 commands up to sequence 1000 "),
        "{text}"
    );
    assert!(!text.contains(&format!("state hash {hash}")), "{text}");
}

/// Writes a journal of client commands: the instrument, then `flow` commands of the seeded flow,
/// with `last` replacing the final one's bytes when given.
fn write_journal(dir: &std::path::Path, flow: u64, last: Option<u64>) {
    let mut journal = journal::Journal::open(journal::JournalConfig::new(dir)).unwrap();
    let mut workload = sequencer::workload::Workload::new(3, 10);
    let commands: Vec<_> = std::iter::once(sequencer::workload::add_instrument())
        .chain((0..flow).map(|_| workload.next_command()))
        .collect();
    for (i, command) in commands.iter().enumerate() {
        let client_sequence = match last {
            Some(replacement) if i == commands.len() - 1 => replacement,
            _ => i as u64 + 1,
        };
        let mut payload = 7u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&client_sequence.to_le_bytes());
        payload.extend_from_slice(command.as_bytes());
        let meta = journal::RecordMeta {
            record_type: sequencer::protocol::RECORD_CLIENT_COMMAND,
            flags: 0,
            sequence: i as u64 + 1,
            term: 1,
            timestamp_ns: 1_000 + i as u64,
        };
        journal.append(&meta, &payload).unwrap();
    }
    journal.sync().unwrap();
}

#[test]
fn journal_diff_names_the_first_difference() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    write_journal(&a, 50, None);
    write_journal(&b, 50, Some(99));
    write_journal(&c, 40, None);
    let run = |x: &std::path::Path, y: &std::path::Path| {
        let output = exchange()
            .args(["journal", "diff", x.to_str().unwrap(), y.to_str().unwrap()])
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
        )
    };
    let (ok, text) = run(&a, &a);
    assert!(ok, "{text}");
    assert!(text.starts_with("journals identical: 51 records"), "{text}");
    assert!(text.contains(": equal"), "{text}");
    // The last record differs in its client sequence (payload bytes 8..16: frame byte 48).
    let (ok, text) = run(&a, &b);
    assert!(!ok, "{text}");
    assert!(
        text.contains("(record 51): ")
            && text.contains("has sequence 51 term 1 type 1 (80 payload bytes)"),
        "{text}"
    );
    assert!(text.contains("frames differ from byte 48"), "{text}");
    // A prefix: c ends where a continues.
    let (ok, text) = run(&a, &c);
    assert!(!ok, "{text}");
    assert!(
        text.contains("ends at position")
            && text.contains("after 41 identical records")
            && text.contains("continues with sequence 42"),
        "{text}"
    );
    assert!(text.contains("DIFFERENT"), "{text}");
}

/// `exchange stat` and `exchange top` read a running cluster's counters files; a stopped
/// node's file is shown as stale.
#[test]
fn stat_and_top_show_a_running_cluster_from_its_counters_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let base = sequencer::config::free_base_port(3).unwrap().to_string();
    let mut cluster = std::process::Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args([
            "cluster",
            "up",
            "--dir",
            path,
            "--fix-port",
            "0",
            "--no-feed",
        ])
        .args(["--base-port", &base, "--duration", "60"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let config = dir.path().join("node-0.toml");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(0..3).all(|id| dir.path().join(format!("journal-{id}/counters")).exists()) {
        assert!(std::time::Instant::now() < deadline, "no counters files");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let hgrm = dir.path().join("loadgen.hgrm");
    exchange()
        .args(["loadgen", "--config", config.to_str().unwrap()])
        .args(["--rate", "2000", "--commands", "2000", "--hgrm"])
        .arg(&hgrm)
        .assert()
        .success();
    // The histogram in HdrHistogram's percentile-distribution layout: percentiles and the
    // cumulative count rise to every measured command.
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    let rows: Vec<(f64, f64, u64)> = text
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert!(rows.len() > 5, "{text}");
    assert!(rows
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1 && w[0].2 <= w[1].2));
    let (_, last_percentile, last_count) = *rows.last().unwrap();
    assert_eq!(last_percentile, 1.0);
    let footer_count: u64 = text
        .rsplit("Total count    = ")
        .next()
        .unwrap()
        .trim_end_matches(|c: char| c == ']' || c.is_whitespace())
        .trim()
        .parse()
        .unwrap();
    assert_eq!(last_count, footer_count);
    assert!(footer_count > 0 && footer_count <= 2000, "{footer_count}");
    // The counters are rewritten every 100 ms.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let output = exchange()
        .args(["stat", "--config", config.to_str().unwrap(), "--count", "1"])
        .output()
        .unwrap();
    let stat = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stat}");
    let lines: Vec<&str> = stat.lines().collect();
    assert!(lines[0].starts_with("node 0 (pid "), "{stat}");
    assert!(!lines[0].contains("STALE"), "{stat}");
    assert!(
        stat.contains("errors: responses dropped 0, inbox dropped 0, back-pressured sends 0"),
        "{stat}"
    );
    // 2,000 orders and the instrument.
    assert!(stat.contains("\n  commands 2001 ("), "{stat}");
    assert!(stat.contains("\n  DEMO (instrument 1): bid "), "{stat}");
    let output = exchange()
        .args(["top", "--dir", path, "--once", "--refresh-ms", "200"])
        .output()
        .unwrap();
    let top = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{top}");
    assert!(top.contains(" — 3 nodes, leader node "), "{top}");
    let rows: Vec<&str> = top
        .lines()
        .filter(|l| matches!(l.split_whitespace().nth(1), Some("leader" | "follower")))
        .collect();
    assert_eq!(rows.len(), 3, "{top}");
    assert!(top.lines().any(|l| l.starts_with("DEMO ")), "{top}");
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(cluster.id() as libc::pid_t, libc::SIGTERM);
    }
    assert!(cluster.wait().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let output = exchange()
        .args([
            "stat",
            "--dir",
            &format!("{path}/journal-1"),
            "--count",
            "1",
        ])
        .output()
        .unwrap();
    let stat = String::from_utf8_lossy(&output.stdout);
    assert!(stat.contains("STALE: the node is not running"), "{stat}");
    let output = exchange()
        .args(["stat", "--dir", path, "--count", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("counters: No such file or directory"),
        "{stderr}"
    );
}

/// `cluster up --config FILE`: the file's node keys reach every node's configuration, its
/// instruments and FIX sessions replace the built-in ones, and a FIX client trades them; a bad
/// file is refused before anything starts, naming the key.
#[test]
fn cluster_up_runs_the_cluster_its_file_describes() {
    use std::time::{Duration, Instant};
    use tools::fix_client::FixConnection;
    let dir = tempfile::tempdir().unwrap();
    let base = sequencer::config::free_base_port(1).unwrap();
    let fix_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = dir.path().join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            "[local]\nnodes = 1\ndir = \"c\"\nbase_port = {base}\nfix_port = {fix_port}\nfeed = true\n\
             [node]\nstatus_interval_ms = 200\n\
             [cluster]\ncheckpoint_interval = 100\n\
             [journal]\nsync = \"group-commit\"\n\
             [[instrument]]\nsymbol = \"TEST\"\ninstrument_id = 5\nprice_exponent = -2\nquantity_exponent = 0\n\
             tick_size = 5\nlot_size = 10\nprice_min = 5\nprice_levels = 4000\nreference_price = 1000\nquantity_max_lots = 100\n\
             [[session]]\nversion = \"FIX.4.4\"\nsender_comp_id = \"EXCH\"\ntarget_comp_id = \"TRADER9\"\naccount_id = 909\n"
        ),
    )
    .unwrap();
    let cluster = std::process::Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["cluster", "up", "--config"])
        .arg(&file)
        .args(["--duration", "60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cluster_dir = dir.path().join("c");
    let address = format!("127.0.0.1:{fix_port}");
    let mut fix = FixConnection::logon(
        &address,
        "FIX.4.4",
        "TRADER9",
        "EXCH",
        30,
        Duration::from_secs(30),
    )
    .unwrap();
    let transact_time = b"20260101-00:00:00.000";
    let order = |id: &'static str, symbol: &'static str, price: &'static str| {
        vec![
            (11u32, id.as_bytes()),
            (55, symbol.as_bytes()),
            (54, b"1".as_slice()),
            (60, transact_time.as_slice()),
            (38, b"20".as_slice()),
            (40, b"2".as_slice()),
            (44, price.as_bytes()),
            (59, b"1".as_slice()),
        ]
    };
    // On the file's tick (0.05) and lot (10): accepted; off the tick: rejected; DEMO is not
    // configured any more: refused as an unknown symbol.
    fix.send(b"D", &order("a1", "TEST", "10.05")).unwrap();
    fix.send(b"D", &order("a2", "TEST", "10.03")).unwrap();
    fix.send(b"D", &order("a3", "DEMO", "500.00")).unwrap();
    let mut answers: Vec<(String, String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while answers.len() < 3 {
        assert!(Instant::now() < deadline, "answers: {answers:?}");
        fix.poll(&mut |message| {
            let field = |tag| String::from_utf8_lossy(message.get(tag).unwrap_or(b"")).to_string();
            answers.push((field(35), field(11), field(39)));
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    fix.logout(Duration::from_secs(5)).unwrap();
    let find = |id: &str| answers.iter().find(|a| a.1 == id).cloned();
    assert_eq!(
        find("a1"),
        Some(("8".into(), "a1".into(), "0".into())),
        "{answers:?}"
    );
    assert_eq!(
        find("a2"),
        Some(("8".into(), "a2".into(), "8".into())),
        "{answers:?}"
    );
    assert_eq!(
        find("a3"),
        Some(("8".into(), "a3".into(), "8".into())),
        "{answers:?}"
    );
    // SIGINT: everything stops cleanly.
    // SAFETY: signalling our own child, not yet waited for.
    unsafe {
        libc::kill(cluster.id() as libc::pid_t, libc::SIGINT);
    }
    let output = cluster.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("session: SenderCompID TRADER9 TargetCompID EXCH (FIX.4.4), account 909"),
        "{stdout}"
    );
    assert!(
        stdout.contains("symbol TEST: tick 0.05, lot 10, reference price 10.00"),
        "{stdout}"
    );
    // The feed's channels follow the base port.
    assert!(
        stdout.contains(&format!(
            "`exchange md subscribe --control 127.0.0.1:{} --request 127.0.0.1:{} --top 5`",
            base + 200,
            base + 201
        )),
        "{stdout}"
    );
    let node = std::fs::read_to_string(cluster_dir.join("node-0.toml")).unwrap();
    for key in [
        "sync = \"group-commit\"",
        "checkpoint_interval = 100",
        "status_interval_ms = 200",
        "idle = \"backoff\"",
        "leader = 0",
    ] {
        assert!(node.contains(key), "{key}: {node}");
    }

    // A bad value a node would refuse, and a key cluster up sets itself: refused, nothing runs.
    for (text, expected) in [
        ("[journal]\nsync = \"sometimes\"\n", "journal.sync"),
        (
            "[node]\nid = 2\n",
            "`node.id`: set by `cluster up` for each node",
        ),
    ] {
        std::fs::write(
            &file,
            format!("[local]\ndir = \"bad\"\nfix_port = 0\nfeed = false\n{text}"),
        )
        .unwrap();
        let output = exchange()
            .args(["cluster", "up", "--config", file.to_str().unwrap()])
            .args(["--base-port", &base.to_string()])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
        assert!(
            stderr.contains("cluster.toml") || stderr.contains("node-0.toml"),
            "{stderr}"
        );
    }
}
