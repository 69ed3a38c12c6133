//! The persistent session store under the gateway core: a session continues its sequence numbers
//! and answers resends across a gateway restart, and a store killed with SIGKILL mid-write keeps
//! everything it acknowledged.

mod common;

use common::*;
use gateway::app::Instrument;
use gateway::store::{MessageStore, Sequences};
use gateway::{FileStore, FileStoreConfig, FixVersion, Gateway, GatewayConfig};
use journal::SyncPolicy;
use matcher::{Command, Config, Event, Matcher};
use std::io::BufRead;
use std::path::Path;

fn store_config(dir: &Path) -> FileStoreConfig {
    FileStoreConfig {
        dir: dir.to_path_buf(),
        window_bytes_max: 16 << 10,
        window_messages_max: 64,
        segment_size: 64 << 10,
        generation_bytes_max: 96 << 10,
        sync: SyncPolicy::None,
    }
}

/// A gateway over file stores and a real matcher; commits every submission at once.
struct Exchange {
    gateway: Gateway<FileStore>,
    matcher: Matcher,
    sequence: u64,
    now: u64,
}

impl Exchange {
    fn start(dir: &Path, matcher: Matcher, sequence: u64, now: u64) -> Exchange {
        let store = FileStore::open(store_config(dir)).expect("store opens");
        let config = GatewayConfig {
            sessions: vec![session_config(FixVersion::Fix44, "CLIENT1", 101)],
            instruments: vec![Instrument::from_matcher(&acme())],
            connections_max: 4,
            orders_per_session_max: 64,
            cl_ord_ids_remembered: 256,
            client_sequence_next: sequence,
        };
        Exchange {
            gateway: Gateway::new(config, vec![store]).expect("valid config"),
            matcher,
            sequence,
            now,
        }
    }

    /// The gateway goes away (no Logout, nothing more stored) and another starts 5 s later
    /// over the same stores; the matcher replica and the log position survive, as the
    /// cluster's would.
    fn restart(self, dir: &Path) -> Exchange {
        let Exchange {
            gateway,
            matcher,
            sequence,
            now,
        } = self;
        drop(gateway);
        Exchange::start(dir, matcher, sequence, now + 5 * SECOND)
    }

    fn commit(&mut self) {
        let mut submissions = Vec::new();
        self.gateway.drain_submissions(&mut submissions);
        for submission in submissions {
            self.sequence += 1;
            let mut events: Vec<Event> = Vec::new();
            self.matcher
                .apply(self.sequence, self.now, &submission.record, &mut events);
            self.gateway.on_committed(
                self.now,
                self.sequence,
                self.now,
                &submission.record,
                &events,
            );
        }
    }

    /// Hands the gateway `msg_type` with `fields` from the client with MsgSeqNum `seq`.
    fn deliver(
        &mut self,
        connection: gateway::ConnectionId,
        seq: u64,
        msg_type: &str,
        fields: &[(u32, &str)],
    ) {
        let mut body =
            format!("35={msg_type}|49=CLIENT1|56=EXCH|34={seq}|52=20231114-22:13:20.000|");
        for (tag, value) in fields {
            body.push_str(&format!("{tag}={value}|"));
        }
        let bytes = fix(&with_trailer("FIX.4.4", &body));
        self.gateway.on_bytes(connection, self.now, &bytes);
    }

    /// Sends `msg_type` with `fields` as the client with MsgSeqNum `seq`, commits what it
    /// submitted; returns what came back.
    fn send(
        &mut self,
        connection: gateway::ConnectionId,
        seq: u64,
        msg_type: &str,
        fields: &[(u32, &str)],
    ) -> Vec<Vec<(u32, String)>> {
        self.deliver(connection, seq, msg_type, fields);
        self.commit();
        let out = self.gateway.outbound(connection).to_vec();
        self.gateway
            .consume_outbound(connection, out.len(), self.now);
        split(&out)
    }
}

fn matcher_with_acme() -> Matcher {
    let mut matcher = Matcher::new(Config {
        order_capacity: 1024,
        level_capacity: 1 << 18,
        instrument_capacity: 4,
        account_capacity: 64,
    })
    .unwrap();
    let mut events = Vec::new();
    matcher.apply(1, T0, &Command::AddInstrument(acme()).encode(), &mut events);
    matcher
}

const ORDER: &[(u32, &str)] = &[
    (11, "o1"),
    (55, "ACME"),
    (54, "1"),
    (38, "10"),
    (40, "2"),
    (44, "101.25"),
    (59, "1"),
];

#[test]
fn a_session_continues_its_numbers_and_resends_across_a_gateway_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut exchange = Exchange::start(dir.path(), matcher_with_acme(), 1, T0);
    let connection = exchange.gateway.on_connected(exchange.now).unwrap();
    let out = exchange.send(connection, 1, "A", &[(98, "0"), (108, "30")]);
    assert_eq!(msg_type(&out[0]), "A");
    assert_eq!(get(&out[0], 34), Some("1"));
    let out = exchange.send(connection, 2, "D", ORDER);
    assert_eq!(out.len(), 1);
    let original_report = out[0].clone();
    assert_eq!(msg_type(&original_report), "8");
    assert_eq!(get(&original_report, 34), Some("2"));
    assert_eq!(get(&original_report, 150), Some("0"));
    let out = exchange.send(connection, 3, "1", &[(112, "before")]);
    assert_eq!(msg_type(&out[0]), "0");
    assert_eq!(get(&out[0], 34), Some("3"));
    assert_eq!(
        exchange.gateway.session(0).store().sequences(),
        Sequences {
            next_sender: 4,
            next_target: 4
        }
    );

    // The gateway goes away without a Logout (a crash, as far as the session can tell); the
    // matcher replica and the log position survive it, as the cluster's would.
    let mut exchange = exchange.restart(dir.path());
    assert_eq!(
        exchange.gateway.session(0).store().sequences(),
        Sequences {
            next_sender: 4,
            next_target: 4
        }
    );
    let connection = exchange.gateway.on_connected(exchange.now).unwrap();
    // The client logs on with its next number, no reset; our Logon continues at 4.
    let out = exchange.send(connection, 4, "A", &[(98, "0"), (108, "30")]);
    assert_eq!(out.len(), 1, "no gap, no ResendRequest");
    assert_eq!(msg_type(&out[0]), "A");
    assert_eq!(get(&out[0], 34), Some("4"));
    assert_eq!(get(&out[0], 141), None);
    // The client asks for everything from 1: Logon gap-filled, the report resent as it was.
    let out = exchange.send(connection, 5, "2", &[(7, "1"), (16, "0")]);
    assert_eq!(out.len(), 3);
    assert_eq!(msg_type(&out[0]), "4");
    assert_eq!(get(&out[0], 34), Some("1"));
    assert_eq!(get(&out[0], 123), Some("Y"));
    assert_eq!(get(&out[0], 36), Some("2"));
    let resent = &out[1];
    assert_eq!(msg_type(resent), "8");
    assert_eq!(get(resent, 34), Some("2"));
    assert_eq!(get(resent, 43), Some("Y"));
    assert_eq!(get(resent, 122), get(&original_report, 52));
    assert_eq!(get(resent, 52), Some("20231114-22:13:25.000"));
    let body = |m: &[(u32, String)]| {
        m.iter()
            .filter(|(t, _)| ![9, 10, 43, 52, 122].contains(t))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(body(resent), body(&original_report));
    // Heartbeat 3 and Logon 4: one gap fill to 5.
    assert_eq!(msg_type(&out[2]), "4");
    assert_eq!(get(&out[2], 34), Some("3"));
    assert_eq!(get(&out[2], 36), Some("5"));
    // The session goes on at 5.
    let out = exchange.send(connection, 6, "1", &[(112, "after")]);
    assert_eq!(get(&out[0], 34), Some("5"));
    assert_eq!(get(&out[0], 112), Some("after"));
}

/// A gateway that stops after journaling a request's submission but before its session stored
/// the request's MsgSeqNum: the session asks for the request again, and the client's copy
/// (PossDupFlag=Y) is recognised by its ClOrdID and ignored, while a request whose submission
/// was never journaled is taken when it comes again. Nothing is lost, nothing is doubled.
#[test]
fn a_request_journaled_before_a_stop_and_sent_again_is_taken_once() {
    use gateway::submission_log::SubmissionEntry;
    let dir = tempfile::tempdir().unwrap();
    let mut exchange = Exchange::start(dir.path(), matcher_with_acme(), 1, T0);
    let connection = exchange.gateway.on_connected(exchange.now).unwrap();
    exchange.send(connection, 1, "A", &[(98, "0"), (108, "30")]);
    let o2 = [
        (11, "o2"),
        (55, "ACME"),
        (54, "2"),
        (38, "4"),
        (40, "2"),
        (44, "102"),
        (59, "1"),
    ];
    exchange.deliver(connection, 2, "D", ORDER);
    exchange.deliver(connection, 3, "D", &o2);
    // The stop: o1's submission is journaled, o2's is not.
    let mut journaled = Vec::new();
    let mut taken = Vec::new();
    let result = exchange.gateway.take_submissions(&mut taken, |submission| {
        if submission.cl_ord_id.map(|id| id.as_bytes().to_vec()) == Some(b"o2".to_vec()) {
            return Err("stopped");
        }
        journaled.push(SubmissionEntry {
            client_sequence: submission.client_sequence,
            record: submission.record,
            cl_ord_id: submission.cl_ord_id,
            request_type: submission.request_type,
        });
        Ok(())
    });
    assert_eq!(result, Err("stopped"));
    assert!(taken.is_empty());
    assert_eq!(journaled.len(), 1);
    assert_eq!(
        exchange.gateway.session(0).store().sequences().next_target,
        2,
        "the orders' MsgSeqNums are not stored before their submissions are journaled"
    );
    // The restart, as the runtime does it: ClOrdIDs of the log taken, o1 sent again.
    let mut exchange = exchange.restart(dir.path());
    for entry in &journaled {
        assert!(exchange
            .gateway
            .remember_cl_ord_id(101, entry.cl_ord_id.unwrap()));
        assert!(exchange.gateway.resubmit(entry));
    }
    exchange.commit();
    assert_eq!(exchange.matcher.order_count(), 1);
    let connection = exchange.gateway.on_connected(exchange.now).unwrap();
    // The client logs on at 4: we expect 2, and ask for 2 onwards.
    let out = exchange.send(connection, 4, "A", &[(98, "0"), (108, "30")]);
    let kinds: Vec<(&str, Option<&str>)> = out.iter().map(|m| (msg_type(m), get(m, 7))).collect();
    assert_eq!(kinds, [("A", None), ("2", Some("2"))]);
    // o1's report (New), stored while nobody was logged on, goes out when asked for.
    // o1 again: ignored. o2 again: taken.
    let resent = |fields: &[(u32, &'static str)]| {
        let mut fields = fields.to_vec();
        fields.extend([(43, "Y"), (122, "20231114-22:13:20.000")]);
        fields
    };
    let out = exchange.send(connection, 2, "D", &resent(ORDER));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(exchange.gateway.counters().possible_duplicates_ignored, 1);
    let out = exchange.send(connection, 3, "D", &resent(&o2));
    let reports: Vec<(Option<&str>, Option<&str>)> =
        out.iter().map(|m| (get(m, 11), get(m, 150))).collect();
    assert_eq!(reports, [(Some("o2"), Some("0"))]);
    assert_eq!(exchange.matcher.order_count(), 2);
    assert_eq!(exchange.gateway.counters().possible_duplicates_ignored, 1);
    assert_eq!(
        exchange.gateway.session(0).store().sequences().next_target,
        4
    );
    // The Logon's own number, gap-filled; o1's report (New), stored while nobody was logged
    // on, is sent when asked for.
    let out = exchange.send(connection, 4, "4", &resent(&[(123, "Y"), (36, "5")]));
    assert!(out.is_empty(), "{out:?}");
    let out = exchange.send(connection, 5, "2", &[(7, "2"), (16, "2")]);
    let messages: Vec<(&str, Option<&str>, Option<&str>)> = out
        .iter()
        .map(|m| (msg_type(m), get(m, 11), get(m, 150)))
        .collect();
    assert_eq!(messages, [("8", Some("o1"), Some("0"))]);
    assert_eq!(
        exchange.gateway.session(0).store().sequences().next_target,
        6
    );
}

/// Environment variable that turns [`kill_child_writer`] into the child of
/// [`everything_acknowledged_survives_sigkill`].
const KILL_CHILD_DIR: &str = "GATEWAY_FILE_STORE_KILL_CHILD_DIR";
/// Appends the child makes at most (it is killed long before, normally).
const KILL_CHILD_APPENDS_MAX: u64 = 2_000_000;
/// Appends acknowledged before the parent kills the child.
const KILL_AFTER_ACKNOWLEDGED: u64 = 20_000;

fn kill_message(sequence: u64) -> Vec<u8> {
    let length = 30 + (sequence as usize * 131) % 700;
    (0..length)
        .map(|at| b'A' + ((at as u64 ^ sequence) % 26) as u8)
        .collect()
}

/// The child: appends forever (bounded), printing each acknowledged MsgSeqNum. Does nothing
/// unless run by the parent test.
#[test]
#[ignore = "the child process of everything_acknowledged_survives_sigkill"]
fn kill_child_writer() {
    let Some(dir) = std::env::var_os(KILL_CHILD_DIR) else {
        return;
    };
    let mut store = FileStore::open(store_config(Path::new(&dir))).expect("child opens");
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let first = store.sequences().next_sender;
    for sequence in first..first + KILL_CHILD_APPENDS_MAX {
        store
            .append_sent(sequence, &kill_message(sequence))
            .expect("append");
        store.set_next_target(sequence / 2 + 1).expect("target");
        use std::io::Write;
        writeln!(stdout, "acked {sequence}").expect("stdout");
    }
}

#[test]
fn everything_acknowledged_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_child_writer", "--ignored", "--nocapture"])
        .env(KILL_CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged = 0;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(sequence) = line.strip_prefix("acked ") {
            acknowledged = sequence.parse().unwrap();
            if acknowledged >= KILL_AFTER_ACKNOWLEDGED {
                break;
            }
        }
    }
    assert!(
        acknowledged >= KILL_AFTER_ACKNOWLEDGED,
        "the child stopped early"
    );
    child.kill().unwrap(); // SIGKILL, wherever the child is: mid-record, mid-compaction
    child.wait().unwrap();
    let store = FileStore::open(store_config(dir.path())).expect("reopens after SIGKILL");
    let sequences = store.sequences();
    assert!(
        sequences.next_sender > acknowledged,
        "acknowledged {acknowledged}, store continues at {}",
        sequences.next_sender
    );
    let last = sequences.next_sender - 1;
    // The run went through many compactions (each a new generation), so the kill may have
    // fallen inside one.
    assert!(store.generation() > 50, "generation {}", store.generation());
    // The newest messages are held, byte for byte.
    assert!(!store.window().is_empty());
    for sequence in store.window().first_held().unwrap()..=last {
        assert_eq!(store.sent(sequence), Some(&kill_message(sequence)[..]));
    }
    // The target went with the last whole append (or the one after it, if the kill fell
    // between the two records of one iteration).
    let target = sequences.next_target;
    assert!(
        target == last / 2 + 1 || target == (last - 1) / 2 + 1,
        "next_target {target} after {last}"
    );
}
