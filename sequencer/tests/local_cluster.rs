//! Three nodes in one process over real journals and the real matcher: identical journals, equal
//! state hashes and event digests, restarts, catch-up, and resends without duplicates.

use journal::format::SEGMENT_SIZE_MIN;
use sequencer::local::LocalCluster;
use sequencer::replica::Submitted;
use sequencer::workload::{add_instrument, Workload};

const SEGMENT: u64 = 4 * SEGMENT_SIZE_MIN;
const CHECKPOINT_INTERVAL: u64 = 1000;

struct Driver {
    cluster: LocalCluster,
    workload: Workload,
    now_ns: u64,
    client_sequence: u64,
}

impl Driver {
    fn open(dir: &std::path::Path) -> Driver {
        let mut cluster = LocalCluster::open(dir, 3, SEGMENT, CHECKPOINT_INTERVAL, 1).unwrap();
        assert!(matches!(
            cluster
                .submit(2, 1, 1, add_instrument().as_bytes())
                .unwrap(),
            Submitted::Sequenced { .. }
        ));
        Driver {
            cluster,
            workload: Workload::new(7, 50),
            now_ns: 3,
            client_sequence: 1,
        }
    }

    fn run(&mut self, commands: u64) {
        for i in 0..commands {
            self.client_sequence += 1;
            self.now_ns += 1000;
            let command = self.workload.next_command();
            let outcome = self
                .cluster
                .submit(self.now_ns, 1, self.client_sequence, command.as_bytes())
                .unwrap();
            assert!(
                matches!(outcome, Submitted::Sequenced { .. }),
                "{outcome:?}"
            );
            if i % 64 == 63 {
                self.step();
            }
        }
        self.settle();
    }

    fn step(&mut self) {
        self.now_ns += 1000;
        self.cluster.step(self.now_ns, &mut |_, _| {}).unwrap();
        let leader = self.cluster.leader().unwrap_or(0) as usize;
        let accepted = std::mem::take(&mut self.cluster.nodes[leader].state.sink.recent_accepted);
        for (account, order) in accepted {
            self.workload.accepted(account, order);
        }
    }

    fn settle(&mut self) {
        for _ in 0..100_000 {
            self.step();
            if self.cluster.settled() {
                return;
            }
            // Heartbeats carry the commit position to followers; let time pass.
            self.now_ns += 5_000_000;
        }
        panic!("cluster did not settle");
    }

    fn assert_identical(&self) {
        assert_eq!(self.cluster.compare_journals().unwrap(), None);
        let nodes = &self.cluster.nodes;
        for node in &nodes[1..] {
            assert_eq!(
                node.state.matcher.state_hash(),
                nodes[0].state.matcher.state_hash()
            );
            assert_eq!(node.state.sink.digest, nodes[0].state.sink.digest);
            assert_eq!(
                node.applier.applied_position(),
                nodes[0].applier.applied_position()
            );
        }
    }
}

#[test]
fn three_nodes_stay_identical_under_a_long_order_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = Driver::open(dir.path());
    driver.run(200_000);
    driver.assert_identical();
    let leader = &driver.cluster.nodes[0];
    assert!(
        leader.state.sink.trades > 1000,
        "the flow trades: {}",
        leader.state.sink.trades
    );
    assert!(leader.applier.commands_applied() > 200_000);
    // Checkpoints were appended and every follower verified them.
    for node in &driver.cluster.nodes[1..] {
        assert!(
            node.applier.checkpoints_verified() >= 190,
            "{}",
            node.applier.checkpoints_verified()
        );
    }
}

#[test]
fn a_restarted_follower_replays_its_journal_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = Driver::open(dir.path());
    driver.run(20_000);
    driver
        .cluster
        .restart_node(2, false, SEGMENT, CHECKPOINT_INTERVAL, driver.now_ns)
        .unwrap();
    driver.run(20_000);
    driver.assert_identical();
}

#[test]
fn a_fresh_follower_catches_up_from_the_leaders_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = Driver::open(dir.path());
    driver.run(30_000);
    driver
        .cluster
        .restart_node(1, true, SEGMENT, CHECKPOINT_INTERVAL, driver.now_ns)
        .unwrap();
    assert_eq!(driver.cluster.nodes[1].applier.applied_position(), 0);
    driver.run(10_000);
    driver.assert_identical();
}

/// A client's commands are sequenced in its order without gaps: when command 2 is lost and 3
/// arrives, 3 is refused (naming 2 as expected) rather than sequenced, so a later resend of 2 is
/// sequenced instead of being mistaken for a duplicate and answered without being in the log.
#[test]
fn a_command_after_a_lost_one_is_refused_until_the_gap_is_filled() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = Driver::open(dir.path());
    driver.run(10);
    let command = driver.workload.next_command();
    let submit = |driver: &mut Driver, sequence| {
        driver
            .cluster
            .submit(driver.now_ns, 9, sequence, command.as_bytes())
            .unwrap()
    };
    assert!(matches!(
        submit(&mut driver, 1),
        Submitted::Sequenced { .. }
    ));
    assert_eq!(
        submit(&mut driver, 3),
        Submitted::OutOfOrder { expected: 2 }
    );
    assert!(matches!(
        submit(&mut driver, 2),
        Submitted::Sequenced { .. }
    ));
    assert!(matches!(
        submit(&mut driver, 3),
        Submitted::Sequenced { .. }
    ));
    assert_eq!(
        submit(&mut driver, 2),
        Submitted::Duplicate {
            client_sequence_last: 3
        }
    );
    // A new client starts at 1.
    let first = driver
        .cluster
        .submit(driver.now_ns, 10, 2, command.as_bytes())
        .unwrap();
    assert_eq!(first, Submitted::OutOfOrder { expected: 1 });
    driver.settle();
    assert_eq!(
        driver.cluster.nodes[0].applier.commands_applied(),
        1 + 10 + 3
    );
    driver.assert_identical();
}

#[test]
fn a_resent_command_is_not_sequenced_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = Driver::open(dir.path());
    driver.run(100);
    let command = driver.workload.next_command();
    let first = driver
        .cluster
        .submit(driver.now_ns, 9, 1, command.as_bytes())
        .unwrap();
    assert!(matches!(first, Submitted::Sequenced { .. }));
    for _ in 0..3 {
        let again = driver
            .cluster
            .submit(driver.now_ns, 9, 1, command.as_bytes())
            .unwrap();
        assert_eq!(
            again,
            Submitted::Duplicate {
                client_sequence_last: 1
            }
        );
    }
    driver.settle();
    let applied = driver.cluster.nodes[0].applier.commands_applied();
    assert_eq!(
        applied,
        1 + 100 + 1,
        "instrument, the flow, and the resent command once"
    );
    driver.assert_identical();
}

/// The leader restarts holding commands nobody else has (sequenced, never replicated). The
/// cluster elects a leader in a higher term by itself, the journals converge (the uncommitted
/// suffix is either committed by the new leader or truncated), and the client's resends of those
/// commands leave each in the log exactly once.
#[test]
fn a_restarted_leader_hands_over_and_resends_are_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = Driver::open(dir.path());
    driver.run(2_000);
    let term_before = driver.cluster.nodes[0].replica.term();
    assert_eq!(driver.cluster.leader(), Some(0));
    let mut unreplicated = Vec::new();
    for _ in 0..10 {
        driver.client_sequence += 1;
        let command = driver.workload.next_command();
        let outcome = driver
            .cluster
            .submit(driver.now_ns, 1, driver.client_sequence, command.as_bytes())
            .unwrap();
        assert!(matches!(outcome, Submitted::Sequenced { .. }));
        unreplicated.push((driver.client_sequence, command));
    }
    driver
        .cluster
        .restart_node(0, false, SEGMENT, CHECKPOINT_INTERVAL, driver.now_ns)
        .unwrap();
    assert_eq!(driver.cluster.leader(), None);
    // Followers wait an election timeout (2..4 s in process) without heartbeats, then elect.
    let mut elected = None;
    for _ in 0..10_000 {
        driver.now_ns += 1_000_000;
        driver.step();
        if let Some(leader) = driver.cluster.leader() {
            elected = Some(leader);
            break;
        }
    }
    let leader = elected.expect("a leader is elected") as usize;
    assert!(driver.cluster.nodes[leader].replica.term() > term_before);
    for (sequence, command) in &unreplicated {
        let outcome = driver
            .cluster
            .submit(driver.now_ns, 1, *sequence, command.as_bytes())
            .unwrap();
        assert!(
            matches!(
                outcome,
                Submitted::Sequenced { .. } | Submitted::Duplicate { .. }
            ),
            "{outcome:?}"
        );
    }
    driver.run(2_000);
    driver.assert_identical();
    let node = &driver.cluster.nodes[leader];
    assert_eq!(node.applier.client_applied(1), driver.client_sequence);
    assert_eq!(
        node.applier.commands_applied(),
        1 + 2_000 + 10 + 2_000,
        "every command once"
    );
}

/// The followers apply a command as soon as the leader commits it: the leader sends the new
/// commit position at once (an empty Append), not with the next heartbeat or command. The clock
/// does not move here, so no heartbeat is due: only that makes the followers settle.
#[test]
fn followers_learn_a_commit_without_waiting_for_a_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::open(dir.path(), 3, SEGMENT, CHECKPOINT_INTERVAL, 1).unwrap();
    let leader = cluster.leader().unwrap() as usize;
    let now_ns = 2;
    assert!(matches!(
        cluster
            .submit(now_ns, 1, 1, add_instrument().as_bytes())
            .unwrap(),
        Submitted::Sequenced { .. }
    ));
    let mut steps = 0;
    while !cluster.settled() {
        steps += 1;
        assert!(steps <= 4, "the followers did not apply the commit");
        cluster.step(now_ns, &mut |_, _| {}).unwrap();
    }
    // Append out, acknowledgements back (the leader commits), commit position out.
    assert_eq!(steps, 3);
    assert_eq!(
        cluster.nodes[leader].replica.stats().commit_updates_sent,
        2,
        "one to each follower"
    );
}
