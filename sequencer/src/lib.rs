//! The sequencer: the single writer that stamps every command (sequence number, term, timestamp) into
//! the journal and replicates it to hot standbys, plus the Aeron runtime adapter that carries it.
//!
//! What lives here so far is the Aeron runtime foundation: an embedded media driver in its own
//! directory. The replication protocol itself is a sans-IO state machine (no Aeron type, socket, file
//! or clock inside it) that the Aeron adapter and a seeded simulator both drive.
//!
//! This crate must never let a matcher see an uncommitted record, and never block the leader's
//! sequencing on a slow follower beyond a configured bound.

pub mod apply;
pub mod client;
pub mod clock;
pub mod config;
pub mod counters;
pub mod driver;
pub mod huge_pages;
pub mod learner;
pub mod loadgen;
pub mod local;
pub mod log;
pub mod node;
pub mod protocol;
pub mod reliable;
pub mod replica;
pub mod runtime;
pub mod sim;
pub mod transport;
pub mod workload;
