//! Three nodes replicating over real Aeron (UDP on 127.0.0.1), each node on its own thread with its
//! own Aeron client, sharing one embedded media driver in its own /dev/shm directory. The leader
//! sequences a seeded order flow; at the end every journal is byte-identical and every state hash
//! and event digest equal. `AERON_TEST_COMMANDS` sets the size (default 200,000; 1,000,000 for the
//! issue's full run).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use journal::{Journal, JournalConfig};
use sequencer::driver::{unique_dir, EmbeddedDriver};
use sequencer::log::{JournalLog, Log};
use sequencer::node::{MatcherState, Node};
use sequencer::replica::{ReplicaConfig, Submitted};
use sequencer::transport::{connect, AeronReceiver, AeronSender, REPLICATION_STREAM_ID};
use sequencer::workload::{add_instrument, matcher_config, Workload};

const NODES: usize = 3;
const BATCH: u64 = 256;
const CHECKPOINT_INTERVAL: u64 = 10_000;
const TEST_TIMEOUT: Duration = Duration::from_secs(240);

fn free_udp_ports(count: usize) -> Vec<u16> {
    let sockets: Vec<_> = (0..count)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

struct Outcome {
    state_hash: u64,
    digest: u64,
    applied_position: u64,
    commands_applied: u64,
    checkpoints_verified: u64,
}

#[test]
fn three_nodes_over_aeron_udp_end_identical() {
    let commands: u64 = std::env::var("AERON_TEST_COMMANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let driver_dir = unique_dir("aeron-cluster-test");
    let driver = EmbeddedDriver::launch(&driver_dir).unwrap();
    let journals = tempfile::tempdir().unwrap();
    let endpoints: Vec<String> = free_udp_ports(NODES)
        .into_iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let leader_end = Arc::new(AtomicU64::new(u64::MAX));
    let finished = Arc::new(AtomicUsize::new(0));
    let abort = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let threads: Vec<_> = (0..NODES)
        .map(|id| {
            let endpoints = endpoints.clone();
            let aeron_dir = driver.dir().to_path_buf();
            let journal_dir = journals.path().join(format!("node-{id}"));
            let (leader_end, finished, abort) =
                (leader_end.clone(), finished.clone(), abort.clone());
            std::thread::Builder::new()
                .name(format!("node-{id}"))
                .spawn(move || -> Result<Outcome, String> {
                    let aeron = connect(&aeron_dir).map_err(|e| e.to_string())?;
                    let mut receiver =
                        AeronReceiver::new(&aeron, &endpoints[id], REPLICATION_STREAM_ID)
                            .map_err(|e| e.to_string())?;
                    let mut sender =
                        AeronSender::new(&aeron, id as u8, &endpoints, REPLICATION_STREAM_ID)
                            .map_err(|e| e.to_string())?;
                    let journal = Journal::open(JournalConfig::new(&journal_dir))
                        .map_err(|e| e.to_string())?;
                    let log = JournalLog::new(journal).map_err(|e| e.to_string())?;
                    let state = MatcherState::new(matcher_config()).map_err(|e| e.to_string())?;
                    let now = || started.elapsed().as_nanos() as u64 + 1;
                    let mut node = Node::new(
                        ReplicaConfig::new(id as u8, NODES as u8, 0),
                        log,
                        state,
                        CHECKPOINT_INTERVAL,
                        now(),
                    )
                    .map_err(|e| e.to_string())?;
                    let mut workload = Workload::new(11, 100);
                    let mut sent = 0u64;
                    let mut client_sequence = 0u64;
                    let mut idle = 0u32;
                    let mut counted_finished = false;
                    let mut failure: Option<String> = None;
                    loop {
                        if abort.load(Ordering::Relaxed) || started.elapsed() > TEST_TIMEOUT {
                            return Err(format!(
                                "node {id}: timed out or aborted at applied {}",
                                node.applier.commands_applied()
                            ));
                        }
                        let now_ns = now();
                        let mut work = receiver.poll(256).map_err(|e| e.to_string())?;
                        receiver.drain(|bytes| {
                            if failure.is_none() {
                                if let Err(e) = node.on_bytes(now_ns, bytes, &mut sender) {
                                    failure = Some(e.to_string());
                                }
                            }
                        });
                        if let Some(failure) = failure.take() {
                            abort.store(true, Ordering::Relaxed);
                            return Err(format!("node {id}: {failure}"));
                        }
                        let leads = node.replica.role() == sequencer::replica::Role::Leader;
                        if leads && sent <= commands {
                            // The leader (whichever node is elected; nothing fails here, so it
                            // stays) is its own client: a batch per duty cycle, once every other
                            // node's publication is connected.
                            if (0..NODES)
                                .filter(|&m| m != id)
                                .all(|m| sender.is_connected(m as u8))
                            {
                                let batch = if sent == 0 {
                                    1
                                } else {
                                    BATCH.min(commands + 1 - sent)
                                };
                                for _ in 0..batch {
                                    client_sequence += 1;
                                    let command = if sent == 0 {
                                        add_instrument()
                                    } else {
                                        workload.next_command()
                                    };
                                    let outcome = node
                                        .submit(
                                            now_ns,
                                            1,
                                            client_sequence,
                                            command.as_bytes(),
                                            &mut sender,
                                        )
                                        .map_err(|e| e.to_string())?;
                                    assert!(matches!(outcome, Submitted::Sequenced { .. }));
                                    sent += 1;
                                }
                                work += batch as usize;
                                if sent > commands {
                                    leader_end.store(node.log.end(), Ordering::Release);
                                }
                            }
                        }
                        work += node
                            .duty_cycle(now_ns, &mut sender, &mut |_| {})
                            .map_err(|e| e.to_string())? as usize;
                        if leads {
                            for (account, order) in
                                std::mem::take(&mut node.state.sink.recent_accepted)
                            {
                                workload.accepted(account, order);
                            }
                        }
                        let end = leader_end.load(Ordering::Acquire);
                        if !counted_finished
                            && end != u64::MAX
                            && node.applier.applied_position() >= end
                        {
                            counted_finished = true;
                            finished.fetch_add(1, Ordering::AcqRel);
                        }
                        // The leader keeps heartbeating until every node has applied everything.
                        if counted_finished && finished.load(Ordering::Acquire) == NODES {
                            break;
                        }
                        if work == 0 {
                            idle += 1;
                            if idle > 100 {
                                std::thread::sleep(Duration::from_micros(50));
                            } else {
                                std::thread::yield_now();
                            }
                        } else {
                            idle = 0;
                        }
                    }
                    Ok(Outcome {
                        state_hash: node.state.matcher.state_hash(),
                        digest: node.state.sink.digest,
                        applied_position: node.applier.applied_position(),
                        commands_applied: node.applier.commands_applied(),
                        checkpoints_verified: node.applier.checkpoints_verified(),
                    })
                })
                .unwrap()
        })
        .collect();
    let outcomes: Vec<Outcome> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let elapsed = started.elapsed();
    drop(driver);
    assert!(!driver_dir.exists(), "driver directory cleaned up");

    // Every node applied every command; a trailing checkpoint record (no state change) may have
    // been applied by some nodes and not yet by others when they stopped.
    let end = leader_end.load(Ordering::Acquire);
    for outcome in &outcomes {
        assert_eq!(outcome.commands_applied, commands + 1);
        assert!(outcome.applied_position >= end);
        assert_eq!(outcome.state_hash, outcomes[0].state_hash);
        assert_eq!(outcome.digest, outcomes[0].digest);
    }
    // Byte-identical journals up to the commit position every node applied.
    let common = outcomes.iter().map(|o| o.applied_position).min().unwrap();
    let read = |id: usize| -> Vec<(u64, Vec<u8>)> {
        let mut reader =
            journal::Reader::open(&journals.path().join(format!("node-{id}"))).unwrap();
        let mut records = Vec::new();
        while let Some(record) = reader.next_record().unwrap() {
            if record.position >= common {
                break;
            }
            records.push((record.position, record.frame.to_vec()));
        }
        records
    };
    let leader = read(0);
    assert!(leader.len() as u64 > commands);
    // Every checkpoint record in the common committed prefix was verified by every node (the
    // leader journals its latest note per duty cycle, so there may be fewer than one per interval).
    let checkpoints = leader
        .iter()
        .filter(|(_, frame)| {
            u16::from_le_bytes([frame[8], frame[9]]) == sequencer::protocol::RECORD_CHECKPOINT
        })
        .count() as u64;
    assert!(checkpoints >= 1);
    for outcome in &outcomes {
        assert!(
            outcome.checkpoints_verified >= checkpoints,
            "{} < {checkpoints}",
            outcome.checkpoints_verified
        );
    }
    for id in 1..NODES {
        assert!(
            read(id) == leader,
            "journal of node {id} differs from the leader's"
        );
    }
    println!(
        "{commands} commands over Aeron UDP in {elapsed:.2?} ({:.0} commands/s)",
        commands as f64 / elapsed.as_secs_f64()
    );
}

/// A client talks to the 3-node cluster only through Aeron ingress and egress: every command is
/// answered Committed exactly once it is applied, resends (every 50th command is sent twice) are
/// not sequenced twice, and the replicas end identical.
#[test]
fn a_client_over_aeron_gets_every_command_committed_once() {
    use sequencer::client::{Client, RESPONSE_COMMITTED};
    use sequencer::runtime::{AgentConfig, IdleStrategy, Idler, NodeAgent};

    const COMMANDS: u64 = 20_000;
    const WINDOW: u64 = 512;
    let driver_dir = unique_dir("aeron-client-test");
    let driver = EmbeddedDriver::launch(&driver_dir).unwrap();
    let journals = tempfile::tempdir().unwrap();
    let ports = free_udp_ports(2 * NODES + 1);
    let replication: Vec<String> = ports[..NODES]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let ingress: Vec<String> = ports[NODES..2 * NODES]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let client_endpoint = format!("127.0.0.1:{}", ports[2 * NODES]);
    let stop = Arc::new(AtomicBool::new(false));
    let leader_end = Arc::new(AtomicU64::new(u64::MAX));
    let started = Instant::now();

    let threads: Vec<_> = (0..NODES)
        .map(|id| {
            let mut config = AgentConfig::new(
                id as u8,
                replication.clone(),
                ingress[id].clone(),
                journals.path().join(format!("node-{id}")),
            );
            config.checkpoint_interval = 1000;
            let aeron_dir = driver.dir().to_path_buf();
            let (stop, leader_end) = (stop.clone(), leader_end.clone());
            std::thread::spawn(move || -> Result<(u64, u64, u64), String> {
                let mut agent = NodeAgent::start(&aeron_dir, config).map_err(|e| e.to_string())?;
                let mut idler = Idler::new(IdleStrategy::Backoff {
                    max_sleep: Duration::from_micros(200),
                });
                loop {
                    if started.elapsed() > TEST_TIMEOUT {
                        return Err(format!("node {id} timed out"));
                    }
                    let work = agent.do_work().map_err(|e| format!("node {id}: {e}"))?;
                    idler.idle(work);
                    if stop.load(Ordering::Acquire) {
                        let leads = agent.node.replica.role() == sequencer::replica::Role::Leader;
                        if leads && leader_end.load(Ordering::Acquire) == u64::MAX {
                            leader_end.store(agent.node.log.end(), Ordering::Release);
                        }
                        let end = leader_end.load(Ordering::Acquire);
                        // Followers stop once they applied everything; the leader heartbeats a while longer.
                        let done = agent.node.applier.applied_position() >= end;
                        if done {
                            if leads {
                                // Give followers time to learn the final commit position.
                                let until = Instant::now() + Duration::from_millis(300);
                                while Instant::now() < until {
                                    let work = agent.do_work().map_err(|e| e.to_string())?;
                                    idler.idle(work);
                                }
                            }
                            let node = &agent.node;
                            return Ok((
                                node.state.matcher.state_hash(),
                                node.state.sink.digest,
                                node.applier.applied_position(),
                            ));
                        }
                    }
                }
            })
        })
        .collect();

    // The client, on this thread.
    let aeron = connect(driver.dir()).unwrap();
    // Node 0 is asked first; whichever node is elected, the client follows it.
    let mut client = Client::connect_cluster(
        &aeron,
        77,
        &ingress,
        0,
        &client_endpoint,
        &sequencer::transport::no_invoke,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.is_connected() || !client.hello() {
        assert!(
            Instant::now() < deadline,
            "client could not reach the leader"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Give the leader a moment to open the response publication.
    std::thread::sleep(Duration::from_millis(100));
    let mut workload = Workload::new(5, 20);
    let commands: Vec<_> = std::iter::once(add_instrument())
        .chain((1..COMMANDS).map(|_| workload.next_command()))
        .collect();
    let mut answered = vec![0u32; COMMANDS as usize + 1];
    let mut sent_at = vec![None::<Instant>; COMMANDS as usize + 1];
    let (mut next, mut committed) = (1u64, 0u64);
    while committed < COMMANDS {
        assert!(
            started.elapsed() < TEST_TIMEOUT,
            "client stuck at {committed} committed"
        );
        while next <= COMMANDS && next - 1 - committed.min(next - 1) < WINDOW {
            let command = commands[next as usize - 1].as_bytes();
            if !client.send(next, command) {
                break;
            }
            if next % 50 == 0 {
                let _ = client.send(next, command);
            }
            sent_at[next as usize] = Some(Instant::now());
            next += 1;
        }
        let mut move_to = None;
        let mut resend_from = None;
        client
            .poll(|response| {
                // Node 0 announces itself once elected; before that it answers "not leader"
                // (the resend below covers those commands).
                if response.kind == sequencer::client::RESPONSE_NEW_LEADER {
                    move_to = Some(response.sequence as usize);
                    return;
                }
                if response.reason == sequencer::client::REASON_NOT_LEADER {
                    move_to = (response.sequence > 0).then(|| response.sequence as usize - 1);
                    return;
                }
                if response.reason == sequencer::client::REASON_SEQUENCE_GAP {
                    // Commands sent before the move reached a follower: resend from the one the
                    // leader expects, in order.
                    resend_from = Some(
                        resend_from.map_or(response.sequence, |r: u64| r.min(response.sequence)),
                    );
                    return;
                }
                assert_eq!(response.kind, RESPONSE_COMMITTED, "{response:?}");
                answered[response.client_sequence as usize] += 1;
                if answered[response.client_sequence as usize] == 1 {
                    committed += 1;
                }
            })
            .unwrap();
        if let Some(target) = move_to.filter(|&t| t < NODES && t != client.target()) {
            client.set_target(target);
            client.hello();
            // What went to the old target is resent to the new one below.
            overdue(&mut sent_at);
        }
        if let Some(from) = resend_from {
            let from = (from as usize).min(sent_at.len());
            overdue(&mut sent_at[from..]);
        }
        // Resend what has waited too long (a lost message, or a leader that was not ready).
        for s in 1..next {
            if answered[s as usize] == 0
                && sent_at[s as usize].is_some_and(|t| t.elapsed() > Duration::from_secs(1))
            {
                let _ = client.send(s, commands[s as usize - 1].as_bytes());
                sent_at[s as usize] = Some(Instant::now());
            }
        }
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Release);
    let outcomes: Vec<(u64, u64, u64)> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    drop(client);
    drop(aeron);
    drop(driver);

    // Every command answered; a resent one at most twice (its duplicate answered after applying),
    // and sequenced once.
    assert!(answered[1..].iter().all(|&n| n >= 1));
    for outcome in &outcomes {
        assert_eq!(outcome.0, outcomes[0].0, "state hashes differ");
        assert_eq!(outcome.1, outcomes[0].1, "event digests differ");
    }
    let mut reader = journal::Reader::open(&journals.path().join("node-0")).unwrap();
    let mut counts = std::collections::BTreeMap::new();
    while let Some(record) = reader.next_record().unwrap() {
        if record.meta.record_type == sequencer::protocol::RECORD_CLIENT_COMMAND {
            let (client, sequence, _) =
                sequencer::protocol::split_client_command(record.payload).unwrap();
            *counts.entry((client, sequence)).or_insert(0u32) += 1;
        }
    }
    assert_eq!(counts.len() as u64, COMMANDS);
    assert!(
        counts.values().all(|&n| n == 1),
        "a command was sequenced twice"
    );
}

/// Marks commands as sent long ago, so the resend loop sends them again (in order) at once.
fn overdue(sent_at: &mut [Option<Instant>]) {
    for at in sent_at {
        *at = at.map(|t| t.checked_sub(Duration::from_secs(2)).unwrap_or(t));
    }
}
