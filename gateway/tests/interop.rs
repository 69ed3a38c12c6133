//! Interoperability: the gateway core behind a loopback TCP acceptor, driven by a FIX client
//! built on a third-party codec (`gateway/tests/interop/simplefix_client.py`, on PyPI's
//! `simplefix`), once per FIX version. An in-process matcher stands in for the cluster: every
//! submission is committed at once and its events handed to `on_committed`.
//!
//! Needs `.tools/venv/bin/python3` with simplefix (`scripts/setup.sh` installs both); without
//! them the test fails and says so.

mod common;

use common::*;
use gateway::app::Instrument;
use gateway::{ConnectionId, FixVersion, Gateway, GatewayConfig, MemoryStore};
use matcher::{Command, Config, Event, Matcher};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The script is killed, and the test fails, if it runs longer than this.
const SCRIPT_TIME_LIMIT: Duration = Duration::from_secs(30);
/// How long the acceptor loop sleeps when a round found nothing to do.
const IDLE_SLEEP: Duration = Duration::from_millis(1);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

struct Peer {
    stream: TcpStream,
    connection: ConnectionId,
    closed: bool,
}

/// The acceptor: a std::net loop over non-blocking sockets around the sans-IO gateway core.
fn serve(listener: TcpListener, stop: Arc<AtomicBool>) {
    let mut matcher = Matcher::new(Config {
        order_capacity: 1024,
        level_capacity: 1 << 18,
        instrument_capacity: 4,
        account_capacity: 64,
    })
    .expect("matcher");
    let mut events: Vec<Event> = Vec::new();
    let mut sequence = 1;
    matcher.apply(
        sequence,
        now_ns(),
        &Command::AddInstrument(acme()).encode(),
        &mut events,
    );
    let mut session_44 = session_config(FixVersion::Fix44, "CLIENT44", 101);
    let mut session_42 = session_config(FixVersion::Fix42, "CLIENT42", 102);
    session_44.throttle_messages_per_second = 1000;
    session_42.throttle_messages_per_second = 1000;
    let config = GatewayConfig {
        sessions: vec![session_44, session_42],
        instruments: vec![Instrument::from_matcher(&acme())],
        connections_max: 8,
        orders_per_session_max: 64,
        cl_ord_ids_remembered: 256,
        client_sequence_next: 1,
    };
    let stores = vec![MemoryStore::default(), MemoryStore::default()];
    let mut gateway = Gateway::new(config, stores).expect("valid config");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let mut peers: Vec<Peer> = Vec::new();
    let mut submissions = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Acquire) {
        let mut work = 0;
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true).expect("non-blocking stream");
                stream.set_nodelay(true).expect("nodelay");
                match gateway.on_connected(now_ns()) {
                    Some(connection) => peers.push(Peer {
                        stream,
                        connection,
                        closed: false,
                    }),
                    None => drop(stream),
                }
                work += 1;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => panic!("accept: {error}"),
        }
        for peer in peers.iter_mut().filter(|peer| !peer.closed) {
            match peer.stream.read(&mut buffer) {
                Ok(0) => {
                    gateway.on_disconnected(peer.connection, now_ns());
                    peer.closed = true;
                    work += 1;
                    continue;
                }
                Ok(count) => {
                    gateway.on_bytes(peer.connection, now_ns(), &buffer[..count]);
                    work += 1;
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    gateway.on_disconnected(peer.connection, now_ns());
                    peer.closed = true;
                    continue;
                }
            }
        }
        gateway.on_timer(now_ns());
        // The cluster: each submission is the next committed command.
        gateway.drain_submissions(&mut submissions);
        for submission in submissions.drain(..) {
            sequence += 1;
            let timestamp_ns = now_ns();
            events.clear();
            matcher.apply(sequence, timestamp_ns, &submission.record, &mut events);
            gateway.on_committed(
                timestamp_ns,
                sequence,
                timestamp_ns,
                &submission.record,
                &events,
            );
            work += 1;
        }
        for peer in peers.iter_mut().filter(|peer| !peer.closed) {
            let pending = gateway.outbound(peer.connection);
            if !pending.is_empty() {
                match peer.stream.write(pending) {
                    Ok(count) => {
                        gateway.consume_outbound(peer.connection, count, now_ns());
                        work += 1;
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {
                        gateway.on_disconnected(peer.connection, now_ns());
                        peer.closed = true;
                        continue;
                    }
                }
            }
            if gateway.wants_close(peer.connection) && gateway.outbound(peer.connection).is_empty()
            {
                let _ = peer.stream.shutdown(std::net::Shutdown::Both);
                gateway.on_disconnected(peer.connection, now_ns());
                peer.closed = true;
                work += 1;
            }
        }
        peers.retain(|peer| !peer.closed);
        if work == 0 {
            std::thread::sleep(IDLE_SLEEP);
        }
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate lies in the workspace")
        .to_path_buf()
}

/// How a run of the script ended: its exit status (`None`: killed at the time limit), stdout
/// and stderr.
struct Outcome {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs the script for one session.
fn run_client(port: u16, sender: &str, version: &str) -> Outcome {
    let root = workspace_root();
    let python = root.join(".tools/venv/bin/python3");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it creates .tools/venv and installs simplefix)",
        python.display()
    );
    let script = root.join("gateway/tests/interop/simplefix_client.py");
    let mut child = Process::new(&python)
        .arg(&script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--sender", sender, "--target", "EXCH", "--version", version])
        .args(["--symbol", "ACME", "--heartbeat", "30", "--timeout", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
    // Drain both pipes on threads so a chatty script never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() >= SCRIPT_TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// The script must pass: exit status 0 and its closing line.
fn assert_passes(outcome: &Outcome, version: &str) {
    let Outcome {
        status,
        stdout,
        stderr,
    } = outcome;
    match status {
        Some(status) if status.success() => {
            assert!(
                stdout.contains("all checks passed"),
                "the script exited 0 without finishing:\n{stdout}"
            );
            // Shown with --nocapture.
            println!("{stdout}");
        }
        Some(status) => panic!(
            "simplefix_client.py ({version}) failed with {status}\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}"
        ),
        None => panic!(
            "simplefix_client.py ({version}) ran longer than {SCRIPT_TIME_LIMIT:?} and was killed\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}"
        ),
    }
}

/// Runs `body` against a fresh acceptor on an ephemeral port, then stops it.
fn with_acceptor(body: impl FnOnce(u16) + std::panic::UnwindSafe) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let port = listener.local_addr().expect("local address").port();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || serve(listener, stop))
    };
    let result = std::panic::catch_unwind(|| body(port));
    stop.store(true, Ordering::Release);
    server.join().expect("the acceptor thread ends cleanly");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn simplefix_client_runs_the_scenario_against_the_gateway_in_fix44_and_fix42() {
    // One version after the other on the same book: each run leaves nothing resting.
    with_acceptor(|port| {
        assert_passes(&run_client(port, "CLIENT44", "FIX.4.4"), "FIX.4.4");
        assert_passes(&run_client(port, "CLIENT42", "FIX.4.2"), "FIX.4.2");
    });
}

/// The checker is not vacuous: a session the acceptor does not know is logged out, and the
/// script reports that as a deviation with a non-zero status.
#[test]
fn simplefix_client_reports_a_deviation_and_fails() {
    with_acceptor(|port| {
        let outcome = run_client(port, "NOBODY", "FIX.4.4");
        assert_eq!(
            outcome.status.and_then(|status| status.code()),
            Some(1),
            "stdout:\n{}\nstderr:\n{}",
            outcome.stdout,
            outcome.stderr
        );
        assert!(
            outcome
                .stderr
                .contains("DEVIATION: expected Logon, received Logout (unknown session"),
            "{}",
            outcome.stderr
        );
    });
}
