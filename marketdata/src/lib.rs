//! The ITCH 5.0 market-data feed, derived deterministically from the matcher's events.
//!
//! The cores of this crate never read a clock, a socket or a file: they turn committed events
//! into ITCH bytes and ITCH bytes back into books. The [`aeron`] module is the runtime that
//! drives them (Aeron publication and subscriptions, the feed journal, the retransmission and
//! snapshot service); it must never decide anything the cores decide, so any replica's feed is
//! the same bytes.
//!
//! - [`itch`]: the message layouts, encoders and decoders.
//! - [`mapping`]: [`check_instrument`] (called by the configuration loader) and the
//!   [`FeedEncoder`] that turns each committed command's events into messages with feed
//!   sequence numbers, book checksums and snapshots.
//! - [`frame`]: MoldUDP64 frames ([`FramePacker`], [`FrameView`]), the ITCH file layout
//!   ([`FileSink`], [`FileRecords`]) and the [`RetransmitRing`].
//! - [`book`]: the subscriber's order-level [`Book`]; [`subscriber`]: the [`Subscriber`] state
//!   machine (gaps, snapshots, checksum verification).
//! - [`checksum`]: the book checksum both sides compute.
//! - [`request`]: the retransmission and snapshot requests (MoldUDP64 request packets).
//! - [`aeron`]: [`aeron::FeedPublisher`], [`aeron::FeedSubscriber`], [`aeron::run_publisher`].
//!
//! The mapping and the wire formats are documented in `docs/MARKETDATA.md`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod aeron;
pub mod book;
pub mod checksum;
pub mod frame;
pub mod itch;
pub mod mapping;
pub mod request;
pub mod subscriber;
mod table;

pub use book::{Book, BookConfig, BookError, LevelView, OrderView};
pub use checksum::Checksum;
pub use frame::{
    FileRecords, FileSink, FrameError, FramePacker, FrameView, PackingSink, RetransmitError,
    RetransmitRing,
};
pub use mapping::{
    check_instrument, FeedConfig, FeedCounters, FeedEncoder, FeedError, InstrumentError,
    ItchInstrument, MessageSink, Scale, FEED_SEQUENCE_FIRST,
};
pub use subscriber::{FrameOutcome, Subscriber, SubscriberCounters, SubscriberError};
