//! Gateway: FIX 4.2/4.4 order entry in front of the exchange cluster.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod tags;
