//! The FIX gateway end to end: three `exchange node` processes, one `exchange gateway` process,
//! and FIX clients over TCP on 127.0.0.1 (a hand-written tag=value client here, independent of
//! the gateway's codec). Orders cross, fills carry the right CumQty/LeavesQty/AvgPx, cancel and
//! replace work, cancels of unknown or foreign orders are refused, and a leader killed in the
//! middle changes nothing the FIX clients see but latency. The gateway's matcher replica ends with
//! the cluster's state hash.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sequencer::config::{free_base_port, write_local_cluster, NodeConfig};
use tools::cluster::{leader_of, wait_settled, NodeChild};
use tools::gateway_cmd::SessionSection;

const EXCHANGE: &str = env!("CARGO_BIN_EXE_exchange");
const WAIT: Duration = Duration::from_secs(20);

/// A FIX message as (tag, value) pairs in order.
type Fields = Vec<(u32, String)>;

fn get(fields: &Fields, tag: u32) -> Option<&str> {
    fields
        .iter()
        .find(|(t, _)| *t == tag)
        .map(|(_, v)| v.as_str())
}

struct FixClient {
    stream: TcpStream,
    comp_id: String,
    version: &'static str,
    sequence: u64,
    /// MsgSeqNum expected next from the gateway.
    expected: u64,
    buffer: Vec<u8>,
}

fn utc_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}:{:02}:{:02}.{:03}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_millis()
    )
}

impl FixClient {
    fn connect(port: u16, comp_id: &str, version: &'static str) -> FixClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        FixClient {
            stream,
            comp_id: comp_id.to_string(),
            version,
            sequence: 0,
            expected: 1,
            buffer: Vec::new(),
        }
    }

    fn send(&mut self, msg_type: &str, fields: &[(u32, &str)]) {
        self.sequence += 1;
        let mut body = format!(
            "35={msg_type}\x0149={}\x0156=EXCH\x0134={}\x0152={}\x01",
            self.comp_id,
            self.sequence,
            utc_now()
        );
        for (tag, value) in fields {
            body.push_str(&format!("{tag}={value}\x01"));
        }
        let head = format!("8={}\x019={}\x01", self.version, body.len());
        let mut message = head.into_bytes();
        message.extend_from_slice(body.as_bytes());
        let checksum = message.iter().map(|&b| b as u32).sum::<u32>() % 256;
        message.extend_from_slice(format!("10={checksum:03}\x01").as_bytes());
        self.stream.write_all(&message).unwrap();
    }

    /// The next whole message, checked: BeginString, BodyLength, CheckSum, CompIDs, MsgSeqNum
    /// in order.
    fn next(&mut self, deadline: Instant) -> Fields {
        loop {
            if let Some(end) = find_end(&self.buffer) {
                let raw: Vec<u8> = self.buffer.drain(..end).collect();
                return self.check(&raw);
            }
            assert!(
                Instant::now() < deadline,
                "{}: no message in time; have {:?}",
                self.comp_id,
                String::from_utf8_lossy(&self.buffer)
            );
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("{}: the gateway closed the connection", self.comp_id),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{}: {e}", self.comp_id),
            }
        }
    }

    fn check(&mut self, raw: &[u8]) -> Fields {
        let text = String::from_utf8(raw.to_vec()).expect("ASCII");
        let fields: Fields = text
            .split('\x01')
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (tag, value) = f.split_once('=').expect("tag=value");
                (tag.parse().expect("numeric tag"), value.to_string())
            })
            .collect();
        let shown = text.replace('\x01', "|");
        assert_eq!(fields[0], (8, self.version.to_string()), "{shown}");
        assert_eq!(fields[1].0, 9, "{shown}");
        let body_start = text.find("\x0135=").unwrap() + 1;
        let body_end = text.rfind("10=").unwrap();
        assert_eq!(
            fields[1].1.parse::<usize>().unwrap(),
            body_end - body_start,
            "BodyLength: {shown}"
        );
        let checksum = raw[..body_end].iter().map(|&b| b as u32).sum::<u32>() % 256;
        assert_eq!(
            fields.last().unwrap(),
            &(10, format!("{checksum:03}")),
            "CheckSum: {shown}"
        );
        assert_eq!(get(&fields, 49), Some("EXCH"), "{shown}");
        assert_eq!(get(&fields, 56), Some(self.comp_id.as_str()), "{shown}");
        let sequence: u64 = get(&fields, 34).unwrap().parse().unwrap();
        assert_eq!(sequence, self.expected, "MsgSeqNum: {shown}");
        self.expected += 1;
        fields
    }

    /// Skips heartbeats; the next application or session message of another type.
    fn expect(&mut self, msg_type: &str) -> Fields {
        let deadline = Instant::now() + WAIT;
        loop {
            let fields = self.next(deadline);
            match get(&fields, 35) {
                Some("0") if msg_type != "0" => continue,
                Some(t) if t == msg_type => return fields,
                other => panic!(
                    "{}: expected 35={msg_type}, got {other:?}: {fields:?}",
                    self.comp_id
                ),
            }
        }
    }

    fn logon(&mut self) {
        self.send("A", &[(98, "0"), (108, "30"), (141, "Y")]);
        let logon = self.expect("A");
        assert_eq!(get(&logon, 108), Some("30"));
    }
}

fn find_end(buffer: &[u8]) -> Option<usize> {
    let at = buffer.windows(4).position(|w| w == b"\x0110=")?;
    let end = buffer[at + 4..].iter().position(|&b| b == 1)?;
    Some(at + 4 + end + 1)
}

/// An execution report's fields that matter, checked against what is expected.
#[track_caller]
fn assert_report(fields: &Fields, expected: &[(u32, &str)]) {
    let shown: BTreeMap<u32, &str> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
    for (tag, value) in expected {
        assert_eq!(shown.get(tag), Some(value), "tag {tag} in {shown:?}");
    }
}

fn spawn_gateway(config: &Path) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(EXCHANGE)
        .args(["gateway", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = sender.send(line);
        }
    });
    (child, receiver)
}

/// Three node processes and a gateway process in front of them, started.
struct Setup {
    dir: tempfile::TempDir,
    configs: Vec<PathBuf>,
    nodes: Vec<NodeChild>,
    /// The FIX port.
    port: u16,
    gateway: Child,
    /// The gateway's stdout lines after its start line.
    lines: std::sync::mpsc::Receiver<String>,
}

/// Starts a 3-node cluster and a gateway (client id `client_id`) in a temporary directory.
fn start(client_id: u64) -> Setup {
    start_with(client_id, None)
}

/// A FIX 4.4 session to EXCH trading `account_id`.
fn session(target: &str, account_id: u32, cancel_on_disconnect: bool) -> SessionSection {
    SessionSection {
        version: "FIX.4.4".into(),
        sender_comp_id: "EXCH".into(),
        target_comp_id: target.into(),
        password: None,
        heartbeat_interval_s_min: 1,
        heartbeat_interval_s_max: 120,
        throttle_messages_per_second: 10_000,
        cancel_on_disconnect,
        account_id,
        account: None,
    }
}

/// As [`start`], with these sessions instead of the example configuration's.
fn start_with(client_id: u64, sessions: Option<Vec<SessionSection>>) -> Setup {
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
    let nodes: Vec<NodeChild> = configs
        .iter()
        .map(|c| NodeChild::spawn(Path::new(EXCHANGE), c, false).unwrap())
        .collect();
    let ingress = NodeConfig::load(&configs[0]).unwrap().ingress;
    let gateway_config = dir.path().join("gateway.toml");
    let port = tools::gateway_cmd::write_local_gateway_with(
        &gateway_config,
        &ingress,
        client_id,
        None,
        None,
        sessions.as_deref(),
    )
    .unwrap();
    let (gateway, lines) = spawn_gateway(&gateway_config);
    let started = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the gateway's start line");
    assert!(started.starts_with("gateway: FIX on"), "{started}");
    Setup {
        dir,
        configs,
        nodes,
        port,
        gateway,
        lines,
    }
}

#[test]
fn fix_orders_cross_through_the_cluster_and_a_leader_kill_is_invisible() {
    let Setup {
        dir,
        configs,
        mut nodes,
        port,
        mut gateway,
        lines,
    } = start(77);

    let mut buyer = FixClient::connect(port, "CLIENT1", "FIX.4.4");
    let mut seller = FixClient::connect(port, "CLIENT2", "FIX.4.4");
    buyer.logon();
    seller.logon();

    // A resting buy of 10 at 500.00.
    buyer.send(
        "D",
        &[
            (11, "B1"),
            (55, "DEMO"),
            (54, "1"),
            (38, "10"),
            (40, "2"),
            (44, "500.00"),
            (59, "0"),
            (60, &utc_now()),
        ],
    );
    let new = buyer.expect("8");
    assert_report(
        &new,
        &[
            (11, "B1"),
            (150, "0"),
            (39, "0"),
            (14, "0"),
            (151, "10"),
            (54, "1"),
            (55, "DEMO"),
        ],
    );
    let buy_order_id = get(&new, 37).unwrap().to_string();

    // A sell of 4 at 500.00 crosses: the seller is filled, the buyer partially.
    seller.send(
        "D",
        &[
            (11, "S1"),
            (55, "DEMO"),
            (54, "2"),
            (38, "4"),
            (40, "2"),
            (44, "500.00"),
            (59, "0"),
            (60, &utc_now()),
        ],
    );
    assert_report(&seller.expect("8"), &[(11, "S1"), (150, "0"), (39, "0")]);
    assert_report(
        &seller.expect("8"),
        &[
            (11, "S1"),
            (150, "F"),
            (39, "2"),
            (14, "4"),
            (151, "0"),
            (31, "500"),
            (32, "4"),
            (6, "500"),
        ],
    );
    assert_report(
        &buyer.expect("8"),
        &[
            (11, "B1"),
            (37, buy_order_id.as_str()),
            (150, "F"),
            (39, "1"),
            (14, "4"),
            (151, "6"),
            (31, "500"),
            (32, "4"),
            (6, "500"),
        ],
    );

    // Cancels of an unknown order, and of another session's order (unknown to that session):
    // OrderCancelReject, CxlRejResponseTo 1 (cancel), CxlRejReason 1 (unknown order).
    buyer.send(
        "F",
        &[
            (11, "C1"),
            (41, "NOPE"),
            (55, "DEMO"),
            (54, "1"),
            (60, &utc_now()),
        ],
    );
    assert_report(
        &buyer.expect("9"),
        &[(11, "C1"), (41, "NOPE"), (434, "1"), (102, "1")],
    );
    seller.send(
        "F",
        &[
            (11, "C2"),
            (41, "B1"),
            (55, "DEMO"),
            (54, "1"),
            (60, &utc_now()),
        ],
    );
    assert_report(&seller.expect("9"), &[(11, "C2"), (434, "1"), (102, "1")]);

    // Replace: quantity 10 → 8 (4 filled, 4 left), price unchanged.
    buyer.send(
        "G",
        &[
            (11, "B2"),
            (41, "B1"),
            (55, "DEMO"),
            (54, "1"),
            (38, "8"),
            (40, "2"),
            (44, "500.00"),
            (60, &utc_now()),
        ],
    );
    assert_report(
        &buyer.expect("8"),
        &[
            (11, "B2"),
            (41, "B1"),
            (150, "5"),
            (39, "1"),
            (38, "8"),
            (14, "4"),
            (151, "4"),
        ],
    );

    // Kill the leader; the seller's next order is answered by the new leader's cluster, and the
    // FIX sessions notice nothing but the delay.
    let deadline = Instant::now() + WAIT;
    let leader = loop {
        if let Some(leader) = leader_of(&nodes) {
            break leader;
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(20));
    };
    nodes[leader].kill_hard().unwrap();
    seller.send(
        "D",
        &[
            (11, "S2"),
            (55, "DEMO"),
            (54, "2"),
            (38, "3"),
            (40, "2"),
            (44, "500.00"),
            (59, "0"),
            (60, &utc_now()),
        ],
    );
    assert_report(&seller.expect("8"), &[(11, "S2"), (150, "0")]);
    assert_report(
        &seller.expect("8"),
        &[(11, "S2"), (150, "F"), (39, "2"), (14, "3"), (151, "0")],
    );
    assert_report(
        &buyer.expect("8"),
        &[
            (11, "B2"),
            (150, "F"),
            (39, "1"),
            (14, "7"),
            (151, "1"),
            (32, "3"),
            (6, "500"),
        ],
    );
    // The killed node returns and catches up.
    nodes[leader] = NodeChild::spawn(Path::new(EXCHANGE), &configs[leader], false).unwrap();

    // Cancel the rest of the buy.
    buyer.send(
        "F",
        &[
            (11, "B3"),
            (41, "B2"),
            (55, "DEMO"),
            (54, "1"),
            (60, &utc_now()),
        ],
    );
    assert_report(
        &buyer.expect("8"),
        &[
            (11, "B3"),
            (41, "B2"),
            (150, "4"),
            (39, "4"),
            (14, "7"),
            (151, "0"),
        ],
    );

    for client in [&mut buyer, &mut seller] {
        client.send("5", &[]);
        client.expect("5");
    }

    // The gateway's matcher replica ends where the cluster does.
    wait_settled(&nodes, Duration::from_secs(30)).unwrap();
    let node_hash = nodes[0].get_str("state_hash");
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(gateway.id() as libc::pid_t, libc::SIGINT);
    }
    let status = gateway.wait().unwrap();
    assert!(status.success());
    let last = lines.iter().last().expect("the gateway's final line");
    assert!(last.contains("leader changes"), "{last}");
    let gateway_hash = last.rsplit("state_hash ").next().unwrap().trim();
    assert_eq!(gateway_hash, node_hash, "{last}");
    let dirs: Vec<PathBuf> = (0..3)
        .map(|id| dir.path().join(format!("journal-{id}")))
        .collect();
    tools::chaos::stop_and_verify(nodes, &dirs).unwrap_or_else(|e| panic!("{e:#}"));
}

/// The third-party interoperability client (`gateway/tests/interop/simplefix_client.py`, on
/// PyPI's simplefix codec, which checks BodyLength, CheckSum, MsgSeqNum continuity and each
/// version's required tags itself) against the real gateway process and cluster, in FIX 4.4 and
/// FIX 4.2.
#[test]
fn a_third_party_fix_client_trades_through_the_gateway_and_the_cluster() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = root.join(".tools/venv/bin/python3");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs simplefix there)",
        python.display()
    );
    let Setup {
        dir,
        nodes,
        port,
        mut gateway,
        ..
    } = start(78);
    for (sender, version) in [("CLIENT1", "FIX.4.4"), ("CLIENT3", "FIX.4.2")] {
        let mut child = Command::new(&python)
            .arg(root.join("gateway/tests/interop/simplefix_client.py"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--sender", sender, "--target", "EXCH", "--version", version])
            .args(["--symbol", "DEMO", "--heartbeat", "30", "--timeout", "10"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{sender}: the simplefix client did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = child.wait_with_output().unwrap();
        assert!(
            status.success(),
            "{sender} ({version}): {status}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    loadgen_over_fix_sends_a_csv_order_file_and_writes_the_fills(dir.path(), port);
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(gateway.id() as libc::pid_t, libc::SIGINT);
    }
    assert!(gateway.wait().unwrap().success());
    let dirs: Vec<PathBuf> = (0..3)
        .map(|id| dir.path().join(format!("journal-{id}")))
        .collect();
    tools::chaos::stop_and_verify(nodes, &dirs).unwrap_or_else(|e| panic!("{e:#}"));
}

/// `exchange loadgen --fix` with a CSV order file (new, crossing new, replace down, IOC,
/// cancel) against the same gateway: the fills file has exactly the expected fills; a bad file
/// is refused naming its line and column.
fn loadgen_over_fix_sends_a_csv_order_file_and_writes_the_fills(dir: &Path, port: u16) {
    let orders = dir.join("orders.csv");
    std::fs::write(
        &orders,
        "action,cl_ord_id,orig_cl_ord_id,symbol,side,type,price,quantity,time_in_force,account\n\
         new,q1,,DEMO,buy,limit,123.45,10,gtc,\n\
         new,r1,,DEMO,sell,limit,123.45,4,day,\n\
         replace,q1r,q1,DEMO,buy,limit,123.45,8,gtc,\n\
         new,r2,,DEMO,sell,limit,123.45,2,ioc,\n\
         cancel,q1c,q1r,DEMO,buy,limit,123.45,2,,\n",
    )
    .unwrap();
    let fills = dir.join("fills.csv");
    let address = format!("127.0.0.1:{port}");
    let output = Command::new(EXCHANGE)
        .args(["loadgen", "--fix", &address, "--sender", "CLIENT2"])
        .args(["--rate", "0", "--in-flight", "1", "--orders-csv"])
        .arg(&orders)
        .arg("--fills-csv")
        .arg(&fills)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("5 requests, 5 answered (3 accepted, 0 rejected, 1 cancelled, 0 cancel rejects), 4 fills (quantity 12), 0 unanswered in "),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&fills).unwrap();
    let rows: Vec<String> = text
        .lines()
        .skip(1)
        .map(|line| {
            // Without the time, order id and exec id columns.
            let columns: Vec<&str> = line.split(',').collect();
            [&columns[1..3], &columns[5..]].concat().join(",")
        })
        .collect();
    assert_eq!(
        rows,
        [
            "CLIENT2,r1,DEMO,sell,123.45,4,4,0",
            "CLIENT2,q1,DEMO,buy,123.45,4,4,6",
            "CLIENT2,r2,DEMO,sell,123.45,2,2,0",
            "CLIENT2,q1r,DEMO,buy,123.45,2,6,2",
        ],
        "{text}"
    );
    std::fs::write(
        &orders,
        "action,cl_ord_id,side,type,price,quantity\nnew,a,buy,limit,1.x,1\n",
    )
    .unwrap();
    let output = Command::new(EXCHANGE)
        .args(["loadgen", "--fix", &address, "--orders-csv"])
        .arg(&orders)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2, column `price`: `1.x` is not a decimal such as 500.25"),
        "{stderr}"
    );
}

/// The gateway killed (SIGKILL) and started again: its sessions get their resting orders back
/// under their ClOrdIDs (from its submission log), with what they had filled, so a fill after
/// the restart is reported in full (CumQty and AvgPx over both sides of the restart) and a
/// cancel by the ClOrdID of a replace made before it works; a session that cancels on
/// disconnect has its orders cancelled, as the stop disconnected it.
#[test]
fn a_gateway_killed_and_restarted_reports_the_orders_placed_before() {
    let Setup {
        dir,
        configs: _,
        nodes,
        port,
        mut gateway,
        lines: _,
    } = start_with(
        78,
        Some(vec![
            session("CLIENT1", 101, false),
            session("CLIENT2", 102, false),
            session("CLIENT3", 103, true),
        ]),
    );
    let mut buyer = FixClient::connect(port, "CLIENT1", "FIX.4.4");
    let mut seller = FixClient::connect(port, "CLIENT2", "FIX.4.4");
    let mut careful = FixClient::connect(port, "CLIENT3", "FIX.4.4");
    buyer.logon();
    seller.logon();
    careful.logon();
    let order =
        |id: &'static str, side: &'static str, quantity: &'static str, price: &'static str| {
            [
                (11u32, id.to_string()),
                (55, "DEMO".to_string()),
                (54, side.to_string()),
                (38, quantity.to_string()),
                (40, "2".to_string()),
                (44, price.to_string()),
                (59, "0".to_string()),
                (60, utc_now()),
            ]
        };
    let send = |client: &mut FixClient, msg_type: &str, fields: &[(u32, String)]| {
        let fields: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
        client.send(msg_type, &fields);
    };
    // R1: buy 10 at 400.00, partly filled (4) before the restart. R2: buy 5 at 399.00, replaced
    // down to 3 (ClOrdID R2b) before the restart.
    send(&mut buyer, "D", &order("R1", "1", "10", "400.00"));
    assert_report(&buyer.expect("8"), &[(11, "R1"), (150, "0")]);
    send(&mut buyer, "D", &order("R2", "1", "5", "399.00"));
    assert_report(&buyer.expect("8"), &[(11, "R2"), (150, "0")]);
    send(&mut seller, "D", &order("S1", "2", "4", "400.00"));
    assert_report(&seller.expect("8"), &[(11, "S1"), (150, "0")]);
    assert_report(&seller.expect("8"), &[(11, "S1"), (150, "F")]);
    assert_report(
        &buyer.expect("8"),
        &[(11, "R1"), (150, "F"), (14, "4"), (151, "6"), (6, "400")],
    );
    let mut replace = order("R2b", "1", "3", "399.00").to_vec();
    replace.push((41, "R2".to_string()));
    send(&mut buyer, "G", &replace);
    assert_report(
        &buyer.expect("8"),
        &[(11, "R2b"), (41, "R2"), (150, "5"), (151, "3")],
    );

    // CLIENT3 cancels on disconnect: its resting order goes when the gateway does.
    send(&mut careful, "D", &order("K1", "2", "7", "450.00"));
    assert_report(&careful.expect("8"), &[(11, "K1"), (150, "0")]);

    // The gateway dies and comes back with the same configuration and stores.
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    drop((buyer, seller, careful));
    let (mut gateway, lines) = spawn_gateway(&dir.path().join("gateway.toml"));
    let started = lines.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(started.starts_with("gateway: FIX on"), "{started}");
    let recovered = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        recovered.starts_with("gateway: recovered 3 resting orders of the sessions (0 without"),
        "{recovered}"
    );
    assert!(
        recovered.ends_with("cancelled the orders of 1 sessions that cancel on disconnect"),
        "{recovered}"
    );
    let mut buyer = FixClient::connect(port, "CLIENT1", "FIX.4.4");
    let mut seller = FixClient::connect(port, "CLIENT2", "FIX.4.4");
    buyer.logon();
    seller.logon();

    // The rest of R1 trades: reported to the buyer under R1, filled in full at 400.00.
    send(&mut seller, "D", &order("S2", "2", "6", "400.00"));
    assert_report(&seller.expect("8"), &[(11, "S2"), (150, "0")]);
    assert_report(&seller.expect("8"), &[(11, "S2"), (150, "F"), (14, "6")]);
    assert_report(
        &buyer.expect("8"),
        &[
            (11, "R1"),
            (150, "F"),
            (39, "2"),
            (32, "6"),
            (14, "10"),
            (151, "0"),
            (6, "400"),
        ],
    );
    // R2b is cancelled by its ClOrdID.
    send(
        &mut buyer,
        "F",
        &[
            (11, "C1".to_string()),
            (41, "R2b".to_string()),
            (55, "DEMO".to_string()),
            (54, "1".to_string()),
            (60, utc_now()),
        ],
    );
    assert_report(
        &buyer.expect("8"),
        &[(11, "C1"), (41, "R2b"), (150, "4"), (39, "4"), (151, "0")],
    );
    // K1 is gone: cancelling it again is an unknown order.
    let mut careful = FixClient::connect(port, "CLIENT3", "FIX.4.4");
    careful.logon();
    send(
        &mut careful,
        "F",
        &[
            (11, "C9".to_string()),
            (41, "K1".to_string()),
            (55, "DEMO".to_string()),
            (54, "2".to_string()),
            (60, utc_now()),
        ],
    );
    assert_report(&careful.expect("9"), &[(11, "C9"), (41, "K1"), (102, "1")]);
    for client in [&mut buyer, &mut seller, &mut careful] {
        client.send("5", &[]);
        client.expect("5");
    }
    // CLIENT3's logout cancels its orders (cancel on disconnect): let that commit and reach
    // the gateway's replica (the log stops growing for half a second).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sequence = nodes[0].get("sequence");
        std::thread::sleep(Duration::from_millis(500));
        if nodes[0].get("sequence") == sequence {
            break;
        }
        assert!(Instant::now() < deadline, "the log keeps growing");
    }
    wait_settled(&nodes, Duration::from_secs(30)).unwrap();
    let node_hash = nodes[0].get_str("state_hash");
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(gateway.id() as libc::pid_t, libc::SIGINT);
    }
    assert!(gateway.wait().unwrap().success());
    let last = lines.iter().last().expect("the gateway's final line");
    assert_eq!(
        last.rsplit("state_hash ").next().unwrap().trim(),
        node_hash,
        "{last}"
    );
    let dirs: Vec<PathBuf> = (0..3)
        .map(|id| dir.path().join(format!("journal-{id}")))
        .collect();
    tools::chaos::stop_and_verify(nodes, &dirs).unwrap_or_else(|e| panic!("{e:#}"));
}
