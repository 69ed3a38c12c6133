//! The gateway: FIX 4.2/4.4 order entry in front of the exchange cluster.
//!
//! FIX clients log on to configured sessions; their orders become 64-byte matcher
//! [`matcher::CommandRecord`]s submitted to the cluster, and the outcomes, learned by applying the
//! committed log to the gateway's own matcher replica, become ExecutionReports. The core is
//! sans-IO: [`Gateway`] owns no socket, clock or thread; a runtime feeds it bytes, time and
//! committed commands and takes out bytes and commands (see [`gateway`] for the driving loop).
//! `docs/GATEWAY.md` has the mapping tables, tags and reason codes.
//!
//! It must never: panic or allocate without bound on client input, let one session's input
//! affect another session, round a price or quantity (off tick or off lot is a reject), use
//! floating point, or send a client an outcome that is not committed.
//!
//! Layers: [`codec`] (framing, zero-allocation parser, encoder), [`session`] (the FIX session
//! state machine), [`store`] (sequence numbers and sent messages for resends), [`app`]
//! (FIX ↔ matcher mapping and order tables), [`gateway`] (connections and the driving API).
//!
//! ```
//! use gateway::{FixVersion, Gateway, GatewayConfig, MemoryStore, SessionConfig};
//! let session = SessionConfig {
//!     version: FixVersion::Fix44,
//!     sender_comp_id: "EXCH".into(),
//!     target_comp_id: "CLIENT1".into(),
//!     password: None,
//!     heartbeat_interval_s_min: 5,
//!     heartbeat_interval_s_max: 60,
//!     throttle_messages_per_second: 1000,
//!     cancel_on_disconnect: true,
//!     account_id: 101,
//!     account: None,
//! };
//! let config = GatewayConfig { sessions: vec![session], ..GatewayConfig::default() };
//! let mut gateway = Gateway::new(config, vec![MemoryStore::default()]).expect("valid config");
//! let now_ns = 1_700_000_000_000_000_000;
//! let connection = gateway.on_connected(now_ns).expect("a free slot");
//! gateway.on_bytes(connection, now_ns, b"8=FIX.4.4\x019=5\x0135=0\x0110=163\x01");
//! // Not a Logon first: the gateway answers with a Logout and wants the connection closed.
//! assert!(gateway.wants_close(connection));
//! assert!(!gateway.outbound(connection).is_empty());
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod codec;
mod file_store;
pub mod gateway;
mod generations;
pub mod net;
pub mod runtime;
pub mod session;
pub mod store;
pub mod submission_log;
pub mod tags;

pub use gateway::{ConnectionId, Counters, Gateway, GatewayConfig, Submission};
pub use session::{FixVersion, SessionConfig};
pub use store::{FileStore, FileStoreConfig};
pub use store::{MemoryStore, MessageStore};
