//! Events: the fixed-layout output records of the matcher, and the sinks that receive them.
//!
//! Every event is one 64-byte, 8-byte-aligned, little-endian [`Event`]. The meaning of the
//! generic fields depends on [`EventKind`]; the per-kind table is in `docs/MATCHER.md` and on
//! each constructor below.

use crate::command::{OrderType, Side, StpMode, TimeInForce};
use zerocopy::little_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of every event record in bytes.
pub const EVENT_RECORD_SIZE: usize = 64;

/// Event kind codes (byte 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// A new order passed validation (emitted before any of its trades).
    Accepted = 1,
    /// A command was rejected; it changed no state.
    Rejected = 2,
    /// A fill between a taker and a resting maker (also the order-level "execute" book change).
    Trade = 3,
    /// An order (or part of it, for STP decrement) was cancelled.
    Cancelled = 4,
    /// A resting order was replaced.
    Replaced = 5,
    /// Book: an order was added to the book.
    BookAdd = 6,
    /// Book: a resting order's quantity was reduced without a trade, keeping its priority.
    BookReduce = 7,
    /// Book: a resting order was removed without a trade.
    BookDelete = 8,
    /// Book: the total quantity and order count of a price level after a change.
    LevelUpdate = 9,
    /// An instrument was added, halted, resumed, or its reference price changed.
    InstrumentStatus = 10,
    /// An account's kill switch was turned on or off.
    AccountStatus = 11,
    /// A mass cancel finished; `quantity` is the number of orders cancelled.
    MassCancelled = 12,
    /// An end of day finished; `quantity` is the number of orders expired.
    EndOfDay = 13,
}

impl EventKind {
    /// Decodes a kind byte.
    pub fn from_u8(value: u8) -> Option<EventKind> {
        Some(match value {
            1 => EventKind::Accepted,
            2 => EventKind::Rejected,
            3 => EventKind::Trade,
            4 => EventKind::Cancelled,
            5 => EventKind::Replaced,
            6 => EventKind::BookAdd,
            7 => EventKind::BookReduce,
            8 => EventKind::BookDelete,
            9 => EventKind::LevelUpdate,
            10 => EventKind::InstrumentStatus,
            11 => EventKind::AccountStatus,
            12 => EventKind::MassCancelled,
            13 => EventKind::EndOfDay,
            _ => return None,
        })
    }
}

/// Reason codes of `Rejected` events. Validation checks run in the order documented in
/// `docs/MATCHER.md`; the first failing check names the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectReason {
    /// The record does not decode (unknown code, bad combination, non-zero unused field).
    Malformed = 1,
    /// No such instrument.
    UnknownInstrument = 2,
    /// The instrument is halted.
    InstrumentHalted = 3,
    /// The account's kill switch is on.
    AccountKilled = 4,
    /// The price is not a multiple of the tick size.
    PriceOffTick = 5,
    /// The quantity is not a multiple of the lot size.
    QuantityOffLot = 6,
    /// The quantity is outside `[quantity_min, quantity_max]`.
    QuantityOutOfRange = 7,
    /// `|price| * quantity` exceeds the instrument's notional maximum.
    NotionalTooLarge = 8,
    /// The price is outside the static price range or the dynamic band.
    OutsideBand = 9,
    /// No resting order has this id.
    UnknownOrder = 10,
    /// The order belongs to another account.
    NotOwner = 11,
    /// A resting order of the account already has this client order id.
    DuplicateClientOrderId = 12,
    /// A pre-allocated capacity (orders, accounts, instruments, price levels) is exhausted.
    Capacity = 13,
    /// A post-only order would have taken liquidity.
    PostOnlyWouldTake = 14,
    /// A fill-or-kill order could not fill completely.
    FillOrKillUnfillable = 15,
    /// `AddInstrument` for an id that exists.
    InstrumentExists = 16,
    /// `AddInstrument` with an invalid configuration.
    InvalidInstrumentConfig = 17,
}

/// Reason codes of `Cancelled` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CancelReason {
    /// `Cancel`, or a `Replace` to a quantity at or below the filled quantity.
    User = 1,
    /// The unfilled remainder of an IOC or market order.
    IocRemainder = 2,
    /// Self-trade prevention.
    SelfTrade = 3,
    /// `MassCancel`.
    MassCancel = 4,
    /// Kill switch turned on.
    KillSwitch = 5,
    /// `EndOfDay` expired a DAY order.
    Expired = 6,
}

/// `InstrumentStatus.reason`: trading.
pub const STATUS_TRADING: u8 = 1;
/// `InstrumentStatus.reason`: halted.
pub const STATUS_HALTED: u8 = 2;
/// `Trade.flags`: the taker has no quantity left.
pub const FLAG_TAKER_DONE: u8 = 1;
/// `Trade.flags`: the maker has no quantity left and left the book.
pub const FLAG_MAKER_DONE: u8 = 2;
/// `Replaced.flags`: the order kept its time priority.
pub const FLAG_PRIORITY_KEPT: u8 = 1;
/// `AccountStatus.flags`: the kill switch is on.
pub const FLAG_KILLED: u8 = 1;

/// One output record. Field meanings per kind are in `docs/MATCHER.md`.
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(8))]
pub struct Event {
    /// [`EventKind`] code.
    pub kind: u8,
    /// [`Side`] code (0 when not applicable).
    pub side: u8,
    /// [`RejectReason`], [`CancelReason`] or instrument status code.
    pub reason: u8,
    /// Kind-specific flag bits.
    pub flags: u8,
    /// Instrument id (0 when not applicable).
    pub instrument_id: U32,
    /// Log sequence number of the command that caused this event.
    pub sequence: U64,
    /// Exchange order id (Trade: the taker's).
    pub order_id: U64,
    /// Price in price units.
    pub price: I64,
    /// Quantity in quantity units (or a count, see the kind).
    pub quantity: U64,
    /// Account id (Trade: the taker's; book events: 0).
    pub account_id: U32,
    /// Trade: the maker's account id.
    pub account_id_maker: U32,
    /// Kind-specific (client order id, maker order id, order count...).
    pub aux_a: U64,
    /// Kind-specific (trade id, quantity remaining, command kind...).
    pub aux_b: U64,
}
const _: () = assert!(core::mem::size_of::<Event>() == EVENT_RECORD_SIZE);
const _: () = assert!(core::mem::align_of::<Event>() == 8);

impl Event {
    /// An all-zero event (kind 0, not a valid event).
    pub fn zeroed() -> Event {
        <Event as zerocopy::FromZeros>::new_zeroed()
    }

    /// The 64 bytes of the event.
    pub fn as_bytes(&self) -> &[u8] {
        IntoBytes::as_bytes(self)
    }

    /// Views a buffer of exactly 64 aligned bytes as an event.
    pub fn ref_from_bytes(bytes: &[u8]) -> Option<&Event> {
        <Event as FromBytes>::ref_from_bytes(bytes).ok()
    }

    /// The decoded kind.
    pub fn event_kind(&self) -> Option<EventKind> {
        EventKind::from_u8(self.kind)
    }

    /// Folds the event into a running digest of an event stream (order-sensitive; every byte of
    /// the event counts). The fields are packed into eight words that are hashed with
    /// independent multiplies ([`crate::hash::sum_products`]) and folded in with one more
    /// ([`crate::hash::fold`]), so the serial chain is one multiply per event. (A byte-at-a-time
    /// fold, FNV-1a as the nodes used before, is a chain of 64 dependent multiplies per event
    /// and cost more than the matcher on replay; a finaliser per event, 12% of a replay.)
    ///
    /// Each field is read at its own width: an event has usually just been built on the stack
    /// by field-sized stores, and a wider load spanning several of them cannot be forwarded from
    /// the store buffer (it waits for the stores to reach the cache). The header's bytes and the
    /// two account ids are packed out of memory order so that the compiler cannot merge their
    /// loads back into one.
    #[inline]
    pub fn digest_fold(&self, digest: u64) -> u64 {
        let header = u64::from(self.kind)
            | u64::from(self.reason) << 8
            | u64::from(self.side) << 16
            | u64::from(self.flags) << 24
            | u64::from(self.instrument_id.get()) << 32;
        let accounts =
            u64::from(self.account_id.get()) << 32 | u64::from(self.account_id_maker.get());
        let words = [
            header,
            self.sequence.get(),
            self.order_id.get(),
            self.price.get() as u64,
            self.quantity.get(),
            accounts,
            self.aux_a.get(),
            self.aux_b.get(),
        ];
        crate::hash::fold(digest, crate::hash::sum_products(&words))
    }

    #[inline(always)]
    pub(crate) fn new(kind: EventKind, sequence: u64, instrument_id: u32) -> Event {
        let mut event = Event::zeroed();
        event.kind = kind as u8;
        event.sequence = U64::new(sequence);
        event.instrument_id = U32::new(instrument_id);
        event
    }
}

/// Debug-prints a decoded code, or `?` if it did not decode.
struct Code<T>(Option<T>);

impl<T: core::fmt::Debug> core::fmt::Debug for Code<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str("?"),
        }
    }
}

fn side_name(code: u8) -> &'static str {
    match Side::from_u8(code) {
        Some(Side::Buy) => "buy",
        Some(Side::Sell) => "sell",
        None => "-",
    }
}

/// A compact one-line rendering used by scenario tests and debugging; stable, so tests can
/// assert on it. Fields a kind does not use are omitted.
impl core::fmt::Debug for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let side = side_name(self.side);
        let (seq, instrument) = (self.sequence.get(), self.instrument_id.get());
        let (order, price, quantity) = (self.order_id.get(), self.price.get(), self.quantity.get());
        let (account, aux_a, aux_b) = (self.account_id.get(), self.aux_a.get(), self.aux_b.get());
        match self.event_kind() {
            Some(EventKind::Accepted) => write!(
                f,
                "#{seq} Accepted i{instrument} o{order} a{account} c{aux_a} {side} {quantity}@{price} {:?}/{:?}/{:?}{}",
                Code(OrderType::from_u8(aux_b as u8)),
                Code(TimeInForce::from_u8((aux_b >> 8) as u8)),
                Code(StpMode::from_u8((aux_b >> 16) as u8)),
                if self.flags & 1 != 0 { " post-only" } else { "" }
            ),
            Some(EventKind::Rejected) => write!(
                f,
                "#{seq} Rejected {:?} cmd{} i{instrument} o{order} a{account} c{aux_a}",
                Code(reject_reason_from_u8(self.reason)),
                aux_b
            ),
            Some(EventKind::Trade) => write!(
                f,
                "#{seq} Trade t{aux_b} i{instrument} taker o{order} a{account} {side} maker o{aux_a} a{} {quantity}@{price} f{}",
                self.account_id_maker.get(),
                self.flags
            ),
            Some(EventKind::Cancelled) => write!(
                f,
                "#{seq} Cancelled {:?} i{instrument} o{order} a{account} c{aux_a} {side} {quantity}@{price} left{aux_b}",
                Code(cancel_reason_from_u8(self.reason))
            ),
            Some(EventKind::Replaced) => write!(
                f,
                "#{seq} Replaced i{instrument} o{order} a{account} c{aux_a} {side} {quantity}@{price} leaves{aux_b} f{}",
                self.flags
            ),
            Some(EventKind::BookAdd) => {
                write!(f, "#{seq} BookAdd i{instrument} o{order} {side} {quantity}@{price}")
            }
            Some(EventKind::BookReduce) => write!(
                f,
                "#{seq} BookReduce i{instrument} o{order} {side} -{quantity}@{price} leaves{aux_b}"
            ),
            Some(EventKind::BookDelete) => {
                write!(f, "#{seq} BookDelete i{instrument} o{order} {side} {quantity}@{price}")
            }
            Some(EventKind::LevelUpdate) => write!(
                f,
                "#{seq} Level i{instrument} {side} {price} qty{quantity} n{aux_a}"
            ),
            Some(EventKind::InstrumentStatus) => write!(
                f,
                "#{seq} InstrumentStatus i{instrument} status{} ref{price}",
                self.reason
            ),
            Some(EventKind::AccountStatus) => write!(
                f,
                "#{seq} AccountStatus a{account} f{}",
                self.flags
            ),
            Some(EventKind::MassCancelled) => write!(
                f,
                "#{seq} MassCancelled a{account} i{instrument} {side} n{quantity}"
            ),
            Some(EventKind::EndOfDay) => {
                write!(f, "#{seq} EndOfDay i{instrument} n{quantity}")
            }
            None => write!(f, "#{seq} Invalid({:?})", self.as_bytes()),
        }
    }
}

/// Decodes a reject reason byte.
pub fn reject_reason_from_u8(value: u8) -> Option<RejectReason> {
    use RejectReason::*;
    const ALL: [RejectReason; 17] = [
        Malformed,
        UnknownInstrument,
        InstrumentHalted,
        AccountKilled,
        PriceOffTick,
        QuantityOffLot,
        QuantityOutOfRange,
        NotionalTooLarge,
        OutsideBand,
        UnknownOrder,
        NotOwner,
        DuplicateClientOrderId,
        Capacity,
        PostOnlyWouldTake,
        FillOrKillUnfillable,
        InstrumentExists,
        InvalidInstrumentConfig,
    ];
    ALL.iter().copied().find(|reason| *reason as u8 == value)
}

/// Decodes a cancel reason byte.
pub fn cancel_reason_from_u8(value: u8) -> Option<CancelReason> {
    use CancelReason::*;
    [
        User,
        IocRemainder,
        SelfTrade,
        MassCancel,
        KillSwitch,
        Expired,
    ]
    .into_iter()
    .find(|reason| *reason as u8 == value)
}

/// Where the matcher writes events. Implementations must not fail: buffer space is the
/// caller's to provide. A command emits at most `5 + 4 * n` events, where `n` is the number of
/// resting orders it touches (fills, cancels), so a sweep is bounded by the book's size.
pub trait EventSink {
    /// Receives one event. Called in event order.
    fn event(&mut self, event: &Event);
}

impl EventSink for Vec<Event> {
    #[inline]
    fn event(&mut self, event: &Event) {
        self.push(*event);
    }
}

/// A sink that only counts events (for benchmarks and replay).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountingSink {
    /// Events received.
    pub events: u64,
    /// Of which trades.
    pub trades: u64,
}

impl EventSink for CountingSink {
    #[inline]
    fn event(&mut self, event: &Event) {
        self.events += 1;
        self.trades += u64::from(event.kind == EventKind::Trade as u8);
    }
}

/// A sink that folds every event's bytes into a running 64-bit hash: two event streams are
/// byte-identical (with overwhelming probability) if their digests and counts are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestSink {
    /// Events received.
    pub events: u64,
    /// Running digest.
    pub digest: u64,
}

impl Default for DigestSink {
    fn default() -> DigestSink {
        DigestSink {
            events: 0,
            digest: crate::hash::SEED,
        }
    }
}

impl EventSink for DigestSink {
    #[inline]
    fn event(&mut self, event: &Event) {
        self.events += 1;
        self.digest = event.digest_fold(self.digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte of an event counts in the digest, and so does the order of events.
    #[test]
    fn digest_fold_sees_every_byte_and_the_order() {
        let mut event = Event::new(EventKind::Trade, 7, 3);
        event.aux_b = U64::new(0x0102_0304_0506_0708);
        let base = event.digest_fold(0);
        for byte in 0..EVENT_RECORD_SIZE {
            for bit in 0..8 {
                let mut bytes = [0u8; EVENT_RECORD_SIZE];
                bytes.copy_from_slice(event.as_bytes());
                bytes[byte] ^= 1 << bit;
                let changed = Event::ref_from_bytes(&bytes)
                    .expect("64 bytes")
                    .digest_fold(0);
                assert_ne!(changed, base, "byte {byte} bit {bit}");
            }
        }
        let other = Event::new(EventKind::Accepted, 8, 3);
        assert_ne!(
            other.digest_fold(event.digest_fold(0)),
            event.digest_fold(other.digest_fold(0))
        );
    }
}
