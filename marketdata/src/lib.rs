//! The ITCH 5.0 market-data feed, derived deterministically from the matcher's events.
//!
//! This crate never reads a clock, a socket or a file: it turns committed events into ITCH
//! bytes and ITCH bytes back into books. Runtimes (Aeron publication, recording) live elsewhere.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod itch;
