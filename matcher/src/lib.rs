//! The matcher: the deterministic, single-threaded order book that every replica runs.
//!
//! It is a pure state machine. [`Matcher::apply`] takes one fixed-layout [`CommandRecord`]
//! together with the log sequence number and timestamp the sequencer gave it, and writes
//! fixed-layout [`Event`]s to a caller-provided [`EventSink`]. The same log gives the same
//! events, byte for byte, on every machine.
//!
//! It must never: read a clock, draw a random number, do I/O, allocate after [`Matcher::new`]
//! (pools and tables are sized by [`Config`]; running out is `Rejected(Capacity)`), iterate a
//! hash table into anything observable, or use floating point. A broken invariant panics; bad
//! input is rejected with a reason code and changes no book state.
//!
//! The command and event formats and the matching rules are specified in `docs/MATCHER.md`.
//!
//! ```
//! use matcher::*;
//! let mut matcher = Matcher::new(Config::default()).expect("valid config");
//! let mut events: Vec<Event> = Vec::new();
//! let instrument = InstrumentConfig {
//!     instrument_id: 1, symbol: *b"ACME\0\0\0\0", price_exponent: -2, quantity_exponent: 0,
//!     tick_size: 5, lot_size: 1, price_min: 5, price_levels: 10_000, band_width_ticks: 0,
//!     reference_price: 10_000, quantity_min_lots: 1, quantity_max_lots: 1_000_000,
//!     notional_max: 0,
//! };
//! matcher.apply(1, 0, &Command::AddInstrument(instrument).encode(), &mut events);
//! let buy = NewOrder {
//!     instrument_id: 1, account_id: 7, client_order_id: 1, side: Side::Buy,
//!     order_type: OrderType::Limit, time_in_force: TimeInForce::Gtc, stp_mode: StpMode::None,
//!     post_only: false, price: 10_005, quantity: 3,
//! };
//! matcher.apply(2, 0, &Command::NewOrder(buy).encode(), &mut events);
//! assert_eq!(events[1].event_kind(), Some(EventKind::Accepted));
//! assert_eq!(matcher.order(2).map(|order| order.leaves), Some(3));
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod book;
mod command;
pub mod decimal;
mod event;
pub mod hash;
mod prefetch;
mod snapshot;
mod table;

pub use book::{
    Config, ConfigError, InstrumentView, LevelView, Matcher, OrderView, ACCOUNT_CAPACITY_MAX,
    INSTRUMENT_CAPACITY_MAX, LEVEL_CAPACITY_MAX, ORDER_CAPACITY_MAX,
};
pub use command::{
    Cancel, Command, CommandKind, CommandRecord, DecodeError, InstrumentConfig, InstrumentRecord,
    MassCancel, NewOrder, OrderType, Replace, Side, StpMode, TimeInForce, COMMAND_RECORD_SIZE,
    EXPONENT_ABS_MAX, FLAG_POST_ONLY, PRICE_LEVELS_PER_SIDE_MAX,
};
pub use event::{
    cancel_reason_from_u8, reject_reason_from_u8, CancelReason, CountingSink, DigestSink, Event,
    EventKind, EventSink, RejectReason, EVENT_RECORD_SIZE, FLAG_KILLED, FLAG_MAKER_DONE,
    FLAG_PRIORITY_KEPT, FLAG_TAKER_DONE, STATUS_HALTED, STATUS_TRADING,
};
pub use snapshot::SnapshotError;
