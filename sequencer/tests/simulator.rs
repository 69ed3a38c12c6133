//! The seeded simulator over many seeds: every invariant holds for every seed.

use sequencer::sim::{run, run_seeds, SimConfig};

/// How many seeds CI runs; `SIM_SEEDS` overrides (e.g. 100000 for a long run).
fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[test]
fn every_seed_keeps_every_invariant() {
    match run_seeds(0, seeds()) {
        Ok(reports) => {
            let acknowledged: u64 = reports.iter().map(|r| r.commands_acknowledged).sum();
            let dropped: u64 = reports.iter().map(|r| r.messages_dropped).sum();
            let verified: u64 = reports.iter().map(|r| r.checkpoints_verified).sum();
            let crashes: u64 = reports.iter().map(|r| r.crashes).sum();
            let partitions: u64 = reports.iter().map(|r| r.partitions).sum();
            let spikes: u64 = reports.iter().map(|r| r.delay_spikes).sum();
            let leaders: u64 = reports.iter().map(|r| r.leaders_elected).sum();
            let redirects: u64 = reports.iter().map(|r| r.client_redirects).sum();
            eprintln!(
                "{} seeds: {acknowledged} acknowledged, {dropped} dropped, {verified} checkpoints \
                 verified, {crashes} crashes, {partitions} partitions, {spikes} delay spikes, \
                 {leaders} leaders elected, {redirects} client redirects",
                reports.len()
            );
            assert!(
                acknowledged > 0 && dropped > 0 && verified > 0,
                "the runs exercised nothing: {acknowledged} {dropped} {verified}"
            );
            // The faults happened, and clusters failed over (more leaders than runs).
            assert!(crashes > 0 && partitions > 0 && spikes > 0 && redirects > 0);
            assert!(leaders > reports.len() as u64);
        }
        Err(violation) => panic!("{violation}"),
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = run(SimConfig::from_seed(42)).unwrap();
    let b = run(SimConfig::from_seed(42)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, run(SimConfig::from_seed(43)).unwrap());
}

#[test]
fn a_lossy_five_node_cluster_commits_everything_acknowledged() {
    let mut config = SimConfig::from_seed(7);
    config.nodes = 5;
    config.clients = 3;
    config.commands_per_client = 200;
    config.loss_per_million = 200_000;
    config.duplicate_per_million = 100_000;
    let report = run(config).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(report.commands_acknowledged, 600);
    assert!(report.messages_dropped > 100);
}

/// Seeds that once failed, kept as regression tests:
/// - 530: redirects multiplied clients' resend chains until the event queue exploded;
/// - 1445: a follower acknowledged its whole durable log on an empty heartbeat, vouching for a
///   deposed leader's suffix, and the new leader then lacked acknowledged commands.
#[test]
fn seeds_that_once_failed_pass() {
    for seed in [530, 1445] {
        if let Err(violation) = run(SimConfig::from_seed(seed)) {
            panic!("{violation}");
        }
    }
}
