//! The ITCH 5.0 market-data feed, derived deterministically from the matcher's events.
//!
//! This crate never reads a clock, a socket or a file: it turns committed events into ITCH
//! bytes and ITCH bytes back into books. Runtimes (Aeron publication, recording) live elsewhere.
//!
//! - [`itch`]: the message layouts, encoders and decoders.
//! - [`mapping`]: [`check_instrument`] (called by the configuration loader) and the
//!   [`FeedEncoder`] that turns each committed command's events into messages with feed
//!   sequence numbers, book checksums and snapshots.
//! - [`checksum`]: the book checksum both sides compute.
//!
//! The mapping and the wire formats are documented in `docs/MARKETDATA.md`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod checksum;
pub mod itch;
pub mod mapping;
mod table;

pub use checksum::Checksum;
pub use mapping::{
    check_instrument, FeedConfig, FeedCounters, FeedEncoder, FeedError, InstrumentError,
    ItchInstrument, MessageSink, Scale,
};
