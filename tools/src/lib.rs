//! The `exchange` command line's building blocks, as a library so tests and benchmarks can drive
//! the same code: node processes, the local cluster, the load generator, the demo.

pub mod chaos;
pub mod cluster;
pub mod cluster_file;
pub mod demo;
pub mod fix_client;
pub mod fix_load;
pub mod gateway_cmd;
pub mod learn;
pub mod md_publish;
pub mod stat;

use std::path::Path;

use sequencer::apply::Applier;
use sequencer::log::ReadOnlyLog;
use sequencer::node::MatcherState;

/// A journal opened for replay, with a fresh matcher and an applier that verifies checkpoint
/// records when `checkpoint_interval` is the cluster's.
pub fn open_replay(
    dir: &Path,
    checkpoint_interval: u64,
) -> anyhow::Result<(ReadOnlyLog, MatcherState, Applier)> {
    use anyhow::Context;
    let log = ReadOnlyLog::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let state = MatcherState::new(sequencer::workload::matcher_config())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((log, state, Applier::new(checkpoint_interval)))
}

/// Replays a whole journal's committed client commands into a fresh matcher (see
/// [`open_replay`]); returns the matcher's state hash.
pub fn replay_hash(dir: &Path, checkpoint_interval: u64) -> anyhow::Result<u64> {
    let (mut log, mut state, mut applier) = open_replay(dir, checkpoint_interval)?;
    applier.apply_committed(&mut log, u64::MAX, &mut state, &mut |_| {})?;
    Ok(state.matcher.state_hash())
}
