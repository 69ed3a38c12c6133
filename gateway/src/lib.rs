//! Gateway: FIX 4.2/4.4 order entry in front of the exchange cluster.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod codec;
pub mod gateway;
pub mod session;
pub mod store;
pub mod tags;

pub use gateway::{ConnectionId, Counters, Gateway, GatewayConfig, Submission};
pub use session::{FixVersion, SessionConfig};
pub use store::{MemoryStore, MessageStore};
