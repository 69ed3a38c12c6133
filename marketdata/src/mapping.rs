//! From the matcher's committed events to ITCH messages: the instrument check the
//! configuration loader calls, and the deterministic [`FeedEncoder`].
//!
//! The mapping table is in `docs/MARKETDATA.md`. In short: stock locate = instrument id; the
//! ITCH order reference number of a resting order is its *priority sequence* (the sequence of
//! the command that last put it at the back of a queue), which is the exchange order id until a
//! replace makes it lose priority; BookAdd → `A`, maker side of a Trade → `E`, BookReduce →
//! `X`, BookDelete → `D`, a priority-losing replace that rests without trading → `U` (new
//! reference = the replace's sequence), instrument added → `R` + `H`, halt/resume → `H`.

use crate::checksum::Checksum;
use crate::itch::{self, BuySell, Header, Message};
use crate::table::Table;
use matcher::{
    Command, CommandRecord, Event, EventKind, InstrumentConfig, Matcher, Side, FLAG_MAKER_DONE,
    STATUS_HALTED, STATUS_TRADING,
};

/// Encodes `message` and hands it to `sink` as feed sequence `sequence`. Messages built by the
/// feed always encode: their timestamps are reduced modulo a day and every message fits the
/// buffer.
pub(crate) fn encode_to(message: &Message, sequence: u64, sink: &mut (impl MessageSink + ?Sized)) {
    let mut buffer = [0u8; itch::MESSAGE_LEN_MAX];
    let len = match message.encode(&mut buffer) {
        Ok(len) => len,
        Err(error) => unreachable!("the feed built an unencodable message: {error}"),
    };
    sink.message(sequence, &buffer[..len]);
}

/// Largest ITCH `Price(4)` value (429,496.7295).
pub const PRICE_ITCH_MAX: u32 = u32::MAX;
/// Largest number of shares in one ITCH order field.
pub const SHARES_MAX: u32 = u32::MAX;
/// ITCH prices have 4 implied decimals: one ITCH price unit is `10^PRICE_ITCH_EXPONENT`.
pub const PRICE_ITCH_EXPONENT: i8 = -4;
/// Largest instrument id: the stock locate field is 2 bytes.
pub const INSTRUMENT_ID_MAX: u32 = u16::MAX as u32;

/// Exact conversion between an instrument's integer units and ITCH units, by a power of ten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// ITCH value = value × factor.
    Multiply(u64),
    /// ITCH value = value ÷ divisor (only exact quotients are accepted).
    Divide(u64),
}

impl Scale {
    /// `10^(exponent − itch_exponent)` as a multiplication or a division, if it fits `u64`.
    fn between(exponent: i8, itch_exponent: i8) -> Option<Scale> {
        let shift = i32::from(exponent) - i32::from(itch_exponent);
        let power = 10u64.checked_pow(shift.unsigned_abs())?;
        Some(if shift >= 0 {
            Scale::Multiply(power)
        } else {
            Scale::Divide(power)
        })
    }

    /// The converted value, if exact and in `u64`.
    pub fn apply(self, value: u64) -> Option<u64> {
        match self {
            Scale::Multiply(factor) => value.checked_mul(factor),
            Scale::Divide(divisor) => value.is_multiple_of(divisor).then_some(value / divisor),
        }
    }

    /// Whether every multiple of `step` converts exactly.
    fn divides_steps_of(self, step: u64) -> bool {
        match self {
            Scale::Multiply(_) => true,
            Scale::Divide(divisor) => step.is_multiple_of(divisor),
        }
    }
}

/// How an instrument appears in the feed: its locate, symbol and unit conversions. Built only
/// by [`check_instrument`], so every price and quantity the matcher can accept for the
/// instrument converts exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItchInstrument {
    /// Stock locate (= instrument id).
    pub stock_locate: u16,
    /// Symbol, left-justified and space padded.
    pub stock: [u8; 8],
    /// Price units → `Price(4)`.
    pub price_scale: Scale,
    /// Quantity units → shares.
    pub quantity_scale: Scale,
    /// The lot in shares (Stock Directory round lot size).
    pub round_lot_shares: u32,
}

impl ItchInstrument {
    /// A price in price units as `Price(4)`, if exact and in range.
    pub fn price_to_itch(&self, price: i64) -> Option<u32> {
        let price = u64::try_from(price).ok()?;
        u32::try_from(self.price_scale.apply(price)?).ok()
    }

    /// A quantity in quantity units as shares, if exact and in range.
    pub fn quantity_to_shares(&self, quantity: u64) -> Option<u32> {
        u32::try_from(self.quantity_scale.apply(quantity)?).ok()
    }

    /// A level's total quantity as shares (levels may exceed `u32`).
    pub fn level_quantity_to_shares(&self, quantity: u64) -> Option<u64> {
        self.quantity_scale.apply(quantity)
    }
}

/// Why an instrument cannot be published in ITCH. The configuration loader refuses such an
/// instrument with this message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentError {
    /// The matcher would refuse the configuration anyway.
    #[error("instrument {instrument_id}: invalid configuration (see InstrumentConfig::validate)")]
    Invalid {
        /// Instrument.
        instrument_id: u32,
    },
    /// The stock locate is 2 bytes.
    #[error("instrument {instrument_id}: the id must be at most {INSTRUMENT_ID_MAX} to be an ITCH stock locate")]
    InstrumentId {
        /// Instrument.
        instrument_id: u32,
    },
    /// The symbol is not 1 to 8 printable ASCII characters, NUL padded.
    #[error("instrument {instrument_id}: the symbol must be 1 to 8 printable ASCII characters (no spaces), NUL padded")]
    Symbol {
        /// Instrument.
        instrument_id: u32,
    },
    /// ITCH prices are unsigned.
    #[error("instrument {instrument_id}: ITCH prices are unsigned, but price_min is {price_min} (negative)")]
    NegativePrice {
        /// Instrument.
        instrument_id: u32,
        /// The lowest price in price units.
        price_min: i64,
    },
    /// Some valid prices are not whole multiples of 0.0001.
    #[error("instrument {instrument_id}: prices in units of 10^{price_exponent} with price_min {price_min} and tick {tick_size} are not all whole multiples of 0.0001 (ITCH Price(4))")]
    PricePrecision {
        /// Instrument.
        instrument_id: u32,
        /// Price exponent.
        price_exponent: i8,
        /// Lowest price.
        price_min: i64,
        /// Tick in price units.
        tick_size: u32,
    },
    /// The highest valid price does not fit `Price(4)`.
    #[error("instrument {instrument_id}: the highest price, {price_max} units of 10^{price_exponent}, exceeds ITCH Price(4)'s maximum 429496.7295")]
    PriceRange {
        /// Instrument.
        instrument_id: u32,
        /// Price exponent.
        price_exponent: i8,
        /// Highest price in price units.
        price_max: i64,
    },
    /// Some valid quantities are not whole shares.
    #[error("instrument {instrument_id}: quantities in units of 10^{quantity_exponent} with lot {lot_size} are not all whole shares (ITCH share fields are integers)")]
    QuantityPrecision {
        /// Instrument.
        instrument_id: u32,
        /// Quantity exponent.
        quantity_exponent: i8,
        /// Lot in quantity units.
        lot_size: u32,
    },
    /// The largest order quantity does not fit a 4-byte shares field.
    #[error("instrument {instrument_id}: the largest order, {quantity_max_lots} lots of {lot_size} units of 10^{quantity_exponent}, exceeds 4294967295 shares")]
    QuantityRange {
        /// Instrument.
        instrument_id: u32,
        /// Quantity exponent.
        quantity_exponent: i8,
        /// Lot in quantity units.
        lot_size: u32,
        /// Largest order in lots.
        quantity_max_lots: u32,
    },
}

/// Checks that every price and quantity the matcher can accept for `config` converts exactly
/// to ITCH fields, and returns the conversion. The configuration loader calls this for every
/// instrument and refuses the configuration on `Err`; the [`FeedEncoder`] calls it again when
/// the instrument is added and leaves a refused instrument out of the feed.
///
/// Valid prices are `price_min + k × tick_size` for `k < price_levels`, so checking
/// `price_min`, the tick and `price_max` covers them all; valid quantities (orders, fills,
/// reductions, what is left) are multiples of the lot up to `quantity_max_lots` lots.
pub fn check_instrument(config: &InstrumentConfig) -> Result<ItchInstrument, InstrumentError> {
    let instrument_id = config.instrument_id;
    let price_max = match config.price_max() {
        Some(price_max) if config.validate() => price_max,
        _ => return Err(InstrumentError::Invalid { instrument_id }),
    };
    let stock_locate = u16::try_from(instrument_id)
        .map_err(|_| InstrumentError::InstrumentId { instrument_id })?;
    let stock = itch_symbol(&config.symbol).ok_or(InstrumentError::Symbol { instrument_id })?;

    let price_min =
        u64::try_from(config.price_min).map_err(|_| InstrumentError::NegativePrice {
            instrument_id,
            price_min: config.price_min,
        })?;
    let price_precision = InstrumentError::PricePrecision {
        instrument_id,
        price_exponent: config.price_exponent,
        price_min: config.price_min,
        tick_size: config.tick_size,
    };
    let price_scale =
        Scale::between(config.price_exponent, PRICE_ITCH_EXPONENT).ok_or(price_precision)?;
    if !price_scale.divides_steps_of(price_min)
        || !price_scale.divides_steps_of(u64::from(config.tick_size))
    {
        return Err(price_precision);
    }
    let price_range = InstrumentError::PriceRange {
        instrument_id,
        price_exponent: config.price_exponent,
        price_max,
    };
    let price_max_itch = u64::try_from(price_max)
        .ok()
        .and_then(|price_max| price_scale.apply(price_max))
        .ok_or(price_range)?;
    if price_max_itch > u64::from(PRICE_ITCH_MAX) {
        return Err(price_range);
    }

    let quantity_precision = InstrumentError::QuantityPrecision {
        instrument_id,
        quantity_exponent: config.quantity_exponent,
        lot_size: config.lot_size,
    };
    let quantity_scale = Scale::between(config.quantity_exponent, 0).ok_or(quantity_precision)?;
    if !quantity_scale.divides_steps_of(u64::from(config.lot_size)) {
        return Err(quantity_precision);
    }
    let quantity_range = InstrumentError::QuantityRange {
        instrument_id,
        quantity_exponent: config.quantity_exponent,
        lot_size: config.lot_size,
        quantity_max_lots: config.quantity_max_lots,
    };
    let quantity_max = u64::from(config.quantity_max_lots) * u64::from(config.lot_size);
    let shares_max = quantity_scale.apply(quantity_max).ok_or(quantity_range)?;
    if shares_max > u64::from(SHARES_MAX) {
        return Err(quantity_range);
    }
    let round_lot_shares = quantity_scale
        .apply(u64::from(config.lot_size))
        .and_then(|shares| u32::try_from(shares).ok())
        .ok_or(quantity_range)?;

    Ok(ItchInstrument {
        stock_locate,
        stock,
        price_scale,
        quantity_scale,
        round_lot_shares,
    })
}

/// The matcher's NUL-padded symbol as ITCH's space-padded one: 1 to 8 printable ASCII
/// characters other than space, then NULs only.
fn itch_symbol(symbol: &[u8; 8]) -> Option<[u8; 8]> {
    let len = symbol.iter().position(|byte| *byte == 0).unwrap_or(8);
    if len == 0
        || !symbol[..len].iter().all(u8::is_ascii_graphic)
        || symbol[len..].iter().any(|byte| *byte != 0)
    {
        return None;
    }
    let mut stock = [b' '; 8];
    stock[..len].copy_from_slice(&symbol[..len]);
    Some(stock)
}

/// Where encoded messages go, each with its feed sequence number. The frame packer, the
/// retransmission ring and the ITCH file writer implement it; so does any
/// `FnMut(u64, &[u8])`.
pub trait MessageSink {
    /// One message (exactly its bytes), in sequence order.
    fn message(&mut self, sequence: u64, message: &[u8]);
}

impl<F: FnMut(u64, &[u8]) + ?Sized> MessageSink for F {
    fn message(&mut self, sequence: u64, message: &[u8]) {
        self(sequence, message)
    }
}

/// The committed events do not fit the encoder's state: a broken log or a misconfigured
/// encoder, never market input. The runtime stops publishing; the feed so far is intact up to
/// the messages already given to the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// An event's sequence differs from the command's.
    #[error("event of sequence {event} in the events of command {command}")]
    Sequence {
        /// The command's sequence.
        command: u64,
        /// The event's.
        event: u64,
    },
    /// An event names an instrument the encoder never saw added.
    #[error("event for instrument {0}, which was never added")]
    UnknownInstrument(u32),
    /// An instrument id above the encoder's capacity.
    #[error("instrument {0} is above the feed's instrument capacity")]
    InstrumentCapacity(u32),
    /// A value did not convert although the instrument passed [`check_instrument`].
    #[error("instrument {instrument_id}: {what} {value} does not convert to ITCH")]
    Unrepresentable {
        /// Instrument.
        instrument_id: u32,
        /// Which field.
        what: &'static str,
        /// The value.
        value: i128,
    },
    /// More re-referenced resting orders than the configured order capacity.
    #[error("more than {0} re-referenced resting orders")]
    OrderCapacity(u32),
    /// An event the matcher does not emit (bad kind or side code).
    #[error("malformed event {0:?}")]
    MalformedEvent(EventKindCode),
}

/// The raw kind code of a malformed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventKindCode(pub u8);

/// Capacities of a [`FeedEncoder`]; take them from the matcher's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    /// Instrument ids are `1..=instrument_capacity` (at most [`INSTRUMENT_ID_MAX`] are
    /// publishable).
    pub instrument_capacity: u32,
    /// Resting orders, all instruments.
    pub order_capacity: u32,
}

impl From<&matcher::Config> for FeedConfig {
    fn from(config: &matcher::Config) -> FeedConfig {
        FeedConfig {
            instrument_capacity: config.instrument_capacity,
            order_capacity: config.order_capacity,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InstrumentSlot {
    Absent,
    /// Added to the matcher but refused by [`check_instrument`]: its events are skipped.
    Refused,
    Published {
        instrument: ItchInstrument,
        halted: bool,
    },
}

/// Running figures of an encoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedCounters {
    /// Commands encoded.
    pub commands: u64,
    /// Messages emitted (all kinds).
    pub messages: u64,
    /// Instruments added to the matcher but left out of the feed.
    pub instruments_refused: u64,
    /// Events skipped because their instrument is refused.
    pub events_skipped: u64,
}

/// Turns each committed command's events into ITCH messages with consecutive feed sequence
/// numbers. Deterministic: the same log (or the same matcher state and next feed sequence, see
/// [`FeedEncoder::restore`]) gives the same bytes on every replica, so a new leader continues
/// the feed where the old one stopped. Allocates only in [`FeedEncoder::new`].
pub struct FeedEncoder {
    instruments: Box<[InstrumentSlot]>,
    /// Exchange order id → ITCH reference, for resting orders whose reference differs from
    /// their id (those re-added by a priority-losing replace).
    references: Table,
    order_capacity: u32,
    sequence_next: u64,
    counters: FeedCounters,
}

/// The feed sequence number of the first message of a session (MoldUDP64 counts from 1).
pub const FEED_SEQUENCE_FIRST: u64 = 1;

impl FeedEncoder {
    /// An encoder at the start of the log: no instruments, next feed sequence 1.
    pub fn new(config: FeedConfig) -> FeedEncoder {
        let slots = config.instrument_capacity.min(INSTRUMENT_ID_MAX + 1) as usize;
        FeedEncoder {
            instruments: vec![InstrumentSlot::Absent; slots].into_boxed_slice(),
            references: Table::new(config.order_capacity as usize),
            order_capacity: config.order_capacity,
            sequence_next: FEED_SEQUENCE_FIRST,
            counters: FeedCounters::default(),
        }
    }

    /// An encoder that continues a feed from a matcher's state: the state after the command
    /// whose messages ended just before `sequence_next`. Used after restoring a matcher
    /// snapshot (store `sequence_next` with it) and by a new leader.
    pub fn restore(
        config: FeedConfig,
        matcher: &Matcher,
        sequence_next: u64,
    ) -> Result<FeedEncoder, FeedError> {
        let mut encoder = FeedEncoder::new(config);
        encoder.sequence_next = sequence_next;
        for instrument_id in 1..=encoder.instruments.len() as u32 {
            let Some(view) = matcher.instrument(instrument_id) else {
                continue;
            };
            let slot = match check_instrument(&view.config) {
                Ok(instrument) => InstrumentSlot::Published {
                    instrument,
                    halted: view.halted,
                },
                Err(_) => InstrumentSlot::Refused,
            };
            encoder.instruments[instrument_id as usize - 1] = slot;
            if slot == InstrumentSlot::Refused {
                continue;
            }
            let mut full = false;
            for side in [Side::Buy, Side::Sell] {
                matcher.for_each_order(instrument_id, side, |order| {
                    if order.priority_sequence != order.order_id
                        && encoder
                            .references
                            .insert(order.order_id, order.priority_sequence)
                            .is_err()
                    {
                        full = true;
                    }
                });
            }
            if full {
                return Err(FeedError::OrderCapacity(encoder.order_capacity));
            }
        }
        Ok(encoder)
    }

    /// The feed sequence number the next message will get.
    pub fn sequence_next(&self) -> u64 {
        self.sequence_next
    }

    /// Running figures.
    pub fn counters(&self) -> FeedCounters {
        self.counters
    }

    /// The feed's view of an instrument, if it is published.
    pub fn instrument(&self, instrument_id: u32) -> Option<&ItchInstrument> {
        match self.slot(instrument_id) {
            Some(InstrumentSlot::Published { instrument, .. }) => Some(instrument),
            _ => None,
        }
    }

    fn slot(&self, instrument_id: u32) -> Option<&InstrumentSlot> {
        self.instruments
            .get((instrument_id as usize).checked_sub(1)?)
    }

    /// The ITCH reference number of a resting order.
    pub fn order_reference(&self, order_id: u64) -> u64 {
        self.references.get(order_id).unwrap_or(order_id)
    }

    fn emit(&mut self, message: &Message, sink: &mut (impl MessageSink + ?Sized)) {
        encode_to(message, self.sequence_next, sink);
        self.sequence_next += 1;
        self.counters.messages += 1;
    }

    /// Encodes the events of one committed command (all of them, in order, as the matcher
    /// emitted them for `record`). Returns the number of messages emitted. `record` is read
    /// only for `AddInstrument` (the symbol and units the Stock Directory needs).
    pub fn encode_command(
        &mut self,
        sequence: u64,
        timestamp_ns: u64,
        record: &CommandRecord,
        events: &[Event],
        sink: &mut (impl MessageSink + ?Sized),
    ) -> Result<u32, FeedError> {
        let messages_before = self.counters.messages;
        let timestamp_ns = timestamp_ns % itch::NANOSECONDS_PER_DAY;
        self.counters.commands += 1;
        if self.sequence_next == FEED_SEQUENCE_FIRST {
            // The feed opens: start of messages, of system hours, of market hours (the log has
            // no separate opening command; trading starts with it).
            for code in [b'O', b'S', b'Q'] {
                self.system_event(timestamp_ns, code, sink);
            }
        }
        // A BookAdd already emitted as the second half of an Order Replace.
        let mut skip: Option<usize> = None;
        for (index, event) in events.iter().enumerate() {
            if event.sequence.get() != sequence {
                return Err(FeedError::Sequence {
                    command: sequence,
                    event: event.sequence.get(),
                });
            }
            if skip == Some(index) {
                continue;
            }
            let Some(kind) = event.event_kind() else {
                return Err(FeedError::MalformedEvent(EventKindCode(event.kind)));
            };
            let instrument_id = event.instrument_id.get();
            match kind {
                EventKind::InstrumentStatus => {
                    self.on_instrument_status(timestamp_ns, record, event, sink)?;
                    continue;
                }
                EventKind::Trade
                | EventKind::BookAdd
                | EventKind::BookReduce
                | EventKind::BookDelete => {}
                // Private reports, level summaries and admin results carry nothing the
                // order-level feed does not already say.
                _ => continue,
            }
            let instrument = match self.slot(instrument_id) {
                Some(InstrumentSlot::Published { instrument, .. }) => *instrument,
                Some(InstrumentSlot::Refused) => {
                    self.counters.events_skipped += 1;
                    continue;
                }
                _ => return Err(FeedError::UnknownInstrument(instrument_id)),
            };
            let header = Header {
                stock_locate: instrument.stock_locate,
                tracking_number: 0,
                timestamp_ns,
            };
            let order_id = event.order_id.get();
            let message = match kind {
                EventKind::Trade => {
                    let maker = event.aux_a.get();
                    let message = Message::OrderExecuted(itch::OrderExecuted {
                        header,
                        order_reference: self.order_reference(maker),
                        executed_shares: shares(&instrument, event.quantity.get())?,
                        match_number: event.aux_b.get(),
                    });
                    if event.flags & FLAG_MAKER_DONE != 0 {
                        self.references.remove(maker);
                    }
                    message
                }
                EventKind::BookAdd => {
                    let reference = sequence;
                    self.set_reference(order_id, reference)?;
                    Message::AddOrder(itch::AddOrder {
                        header,
                        order_reference: reference,
                        side: side(event)?,
                        shares: shares(&instrument, event.quantity.get())?,
                        stock: instrument.stock,
                        price: price(&instrument, event.price.get())?,
                    })
                }
                EventKind::BookReduce => Message::OrderCancel(itch::OrderCancel {
                    header,
                    order_reference: self.order_reference(order_id),
                    cancelled_shares: shares(&instrument, event.quantity.get())?,
                }),
                _ => {
                    // BookDelete. If the next book change of this command re-adds the same
                    // order (a priority-losing replace that neither traded nor met STP on its
                    // way), both are one Order Replace.
                    let original = self.order_reference(order_id);
                    let readd = events
                        .iter()
                        .enumerate()
                        .skip(index + 1)
                        .find(|(_, next)| is_book_change(next))
                        .filter(|(_, next)| {
                            next.kind == EventKind::BookAdd as u8 && next.order_id.get() == order_id
                        });
                    match readd {
                        Some((readd_index, add)) => {
                            skip = Some(readd_index);
                            let reference = sequence;
                            self.set_reference(order_id, reference)?;
                            Message::OrderReplace(itch::OrderReplace {
                                header,
                                original_order_reference: original,
                                new_order_reference: reference,
                                shares: shares(&instrument, add.quantity.get())?,
                                price: price(&instrument, add.price.get())?,
                            })
                        }
                        None => {
                            self.references.remove(order_id);
                            Message::OrderDelete(itch::OrderDelete {
                                header,
                                order_reference: original,
                            })
                        }
                    }
                }
            };
            self.emit(&message, sink);
        }
        Ok((self.counters.messages - messages_before) as u32)
    }

    fn system_event(
        &mut self,
        timestamp_ns: u64,
        event_code: u8,
        sink: &mut (impl MessageSink + ?Sized),
    ) {
        let header = Header {
            stock_locate: 0,
            tracking_number: 0,
            timestamp_ns,
        };
        self.emit(
            &Message::SystemEvent(itch::SystemEvent { header, event_code }),
            sink,
        );
    }

    fn set_reference(&mut self, order_id: u64, reference: u64) -> Result<(), FeedError> {
        if reference == order_id {
            self.references.remove(order_id);
            Ok(())
        } else {
            self.references
                .insert(order_id, reference)
                .map_err(|_| FeedError::OrderCapacity(self.order_capacity))
        }
    }

    fn on_instrument_status(
        &mut self,
        timestamp_ns: u64,
        record: &CommandRecord,
        event: &Event,
        sink: &mut (impl MessageSink + ?Sized),
    ) -> Result<(), FeedError> {
        let instrument_id = event.instrument_id.get();
        let index = (instrument_id as usize)
            .checked_sub(1)
            .filter(|index| *index < self.instruments.len())
            .ok_or(FeedError::InstrumentCapacity(instrument_id))?;
        let halted = match event.reason {
            STATUS_TRADING => false,
            STATUS_HALTED => true,
            _ => return Err(FeedError::MalformedEvent(EventKindCode(event.kind))),
        };
        match self.instruments[index] {
            InstrumentSlot::Absent => {
                let config = match record.decode() {
                    Ok(Command::AddInstrument(config)) if config.instrument_id == instrument_id => {
                        config
                    }
                    _ => return Err(FeedError::UnknownInstrument(instrument_id)),
                };
                let Ok(instrument) = check_instrument(&config) else {
                    self.instruments[index] = InstrumentSlot::Refused;
                    self.counters.instruments_refused += 1;
                    return Ok(());
                };
                self.instruments[index] = InstrumentSlot::Published { instrument, halted };
                let header = Header {
                    stock_locate: instrument.stock_locate,
                    tracking_number: 0,
                    timestamp_ns,
                };
                self.emit(&stock_directory(header, &instrument), sink);
                self.emit(&trading_action(header, &instrument, halted), sink);
            }
            InstrumentSlot::Refused => self.counters.events_skipped += 1,
            InstrumentSlot::Published {
                instrument,
                halted: halted_before,
            } => {
                // A reference price change (or a repeated halt) changes no trading state.
                if halted != halted_before {
                    self.instruments[index] = InstrumentSlot::Published { instrument, halted };
                    let header = Header {
                        stock_locate: instrument.stock_locate,
                        tracking_number: 0,
                        timestamp_ns,
                    };
                    self.emit(&trading_action(header, &instrument, halted), sink);
                }
            }
        }
        Ok(())
    }

    /// The engine's book checksum, from the matcher's levels of every published instrument
    /// (the matcher must be at the state of the last encoded command).
    pub fn book_checksum(&self, matcher: &Matcher) -> Result<Checksum, FeedError> {
        let mut checksum = Checksum::default();
        let mut failure = None;
        for (index, slot) in self.instruments.iter().enumerate() {
            let InstrumentSlot::Published { instrument, .. } = slot else {
                continue;
            };
            let instrument_id = index as u32 + 1;
            for (side, buy_sell) in [(Side::Buy, BuySell::Buy), (Side::Sell, BuySell::Sell)] {
                matcher.for_each_level(instrument_id, side, |level| {
                    let converted = instrument
                        .price_to_itch(level.price)
                        .zip(instrument.level_quantity_to_shares(level.quantity));
                    match converted {
                        Some((price, shares)) => checksum.add_level(
                            instrument.stock_locate,
                            buy_sell,
                            price,
                            shares,
                            level.order_count,
                        ),
                        None => {
                            failure = Some(FeedError::Unrepresentable {
                                instrument_id,
                                what: "level price",
                                value: i128::from(level.price),
                            })
                        }
                    }
                });
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(checksum),
        }
    }

    /// The feed as a function of the log: applies one committed command to `matcher` (its events
    /// into `events`, cleared first), encodes them, and follows them with a Book Checksum when
    /// the command's sequence crosses a multiple of `checksum_interval` (0: never). Returns the
    /// messages emitted and whether the checksum was one of them. The publisher and anything
    /// that recomputes the feed from a journal go through here, so both emit the same messages.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_and_encode(
        &mut self,
        matcher: &mut Matcher,
        events: &mut Vec<Event>,
        checksum_interval: u64,
        sequence: u64,
        timestamp_ns: u64,
        record: &CommandRecord,
        sink: &mut (impl MessageSink + ?Sized),
    ) -> Result<(u32, bool), FeedError> {
        let sequence_previous = matcher.sequence_last();
        events.clear();
        matcher.apply(sequence, timestamp_ns, record, events);
        let mut messages = self.encode_command(sequence, timestamp_ns, record, events, sink)?;
        let checksum = checksum_interval > 0
            && sequence / checksum_interval > sequence_previous / checksum_interval;
        if checksum {
            self.encode_checksum(timestamp_ns, matcher, sink)?;
            messages += 1;
        }
        Ok((messages, checksum))
    }

    /// Emits a Book Checksum (`Z`) message with the engine's checksum. Call it after a command
    /// chosen by a rule of the log (for example every command whose sequence is a multiple of
    /// an interval), never by time, so every replica emits it at the same feed position.
    pub fn encode_checksum(
        &mut self,
        timestamp_ns: u64,
        matcher: &Matcher,
        sink: &mut (impl MessageSink + ?Sized),
    ) -> Result<Checksum, FeedError> {
        let checksum = self.book_checksum(matcher)?;
        let message = Message::BookChecksum(itch::BookChecksum {
            header: Header {
                stock_locate: 0,
                tracking_number: 0,
                timestamp_ns: timestamp_ns % itch::NANOSECONDS_PER_DAY,
            },
            checksum: checksum.value,
            level_count: checksum.level_count,
            order_count: checksum.order_count,
        });
        self.emit(&message, sink);
        Ok(checksum)
    }

    /// Writes a snapshot of every published book as of feed sequence `sequence_next() − 1`:
    /// per instrument in id order a Stock Directory, a Trading Action and an Add Order for
    /// every resting order (bids then asks, each in priority order), then a Snapshot End
    /// carrying the sequence and the checksum. The messages are numbered from 1 in their own
    /// sequence space (a snapshot is not part of the incremental feed). The matcher must be at
    /// the state of the last encoded command. Returns the number of messages.
    pub fn encode_snapshot(
        &self,
        timestamp_ns: u64,
        matcher: &Matcher,
        sink: &mut (impl MessageSink + ?Sized),
    ) -> Result<u64, FeedError> {
        let timestamp_ns = timestamp_ns % itch::NANOSECONDS_PER_DAY;
        let mut count = 0u64;
        let mut put = |message: &Message| {
            count += 1;
            encode_to(message, count, sink);
        };
        let mut failure = None;
        for (index, slot) in self.instruments.iter().enumerate() {
            let InstrumentSlot::Published { instrument, halted } = slot else {
                continue;
            };
            let instrument_id = index as u32 + 1;
            let header = Header {
                stock_locate: instrument.stock_locate,
                tracking_number: 0,
                timestamp_ns,
            };
            put(&stock_directory(header, instrument));
            put(&trading_action(header, instrument, *halted));
            for (side, buy_sell) in [(Side::Buy, BuySell::Buy), (Side::Sell, BuySell::Sell)] {
                matcher.for_each_order(instrument_id, side, |order| {
                    let converted = instrument
                        .price_to_itch(order.price)
                        .zip(instrument.quantity_to_shares(order.leaves));
                    let Some((price, shares)) = converted else {
                        failure = Some(FeedError::Unrepresentable {
                            instrument_id,
                            what: "order price or quantity",
                            value: i128::from(order.price),
                        });
                        return;
                    };
                    put(&Message::AddOrder(itch::AddOrder {
                        header,
                        order_reference: order.priority_sequence,
                        side: buy_sell,
                        shares,
                        stock: instrument.stock,
                        price,
                    }));
                });
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        let checksum = self.book_checksum(matcher)?;
        put(&Message::SnapshotEnd(itch::SnapshotEnd {
            header: Header {
                stock_locate: 0,
                tracking_number: 0,
                timestamp_ns,
            },
            sequence: self.sequence_next.saturating_sub(1),
            checksum: checksum.value,
        }));
        Ok(count)
    }
}

fn is_book_change(event: &Event) -> bool {
    matches!(
        event.event_kind(),
        Some(EventKind::Trade | EventKind::BookAdd | EventKind::BookReduce | EventKind::BookDelete)
    )
}

fn side(event: &Event) -> Result<BuySell, FeedError> {
    match Side::from_u8(event.side) {
        Some(Side::Buy) => Ok(BuySell::Buy),
        Some(Side::Sell) => Ok(BuySell::Sell),
        None => Err(FeedError::MalformedEvent(EventKindCode(event.kind))),
    }
}

fn shares(instrument: &ItchInstrument, quantity: u64) -> Result<u32, FeedError> {
    instrument
        .quantity_to_shares(quantity)
        .ok_or(FeedError::Unrepresentable {
            instrument_id: u32::from(instrument.stock_locate),
            what: "quantity",
            value: i128::from(quantity),
        })
}

fn price(instrument: &ItchInstrument, price: i64) -> Result<u32, FeedError> {
    instrument
        .price_to_itch(price)
        .ok_or(FeedError::Unrepresentable {
            instrument_id: u32::from(instrument.stock_locate),
            what: "price",
            value: i128::from(price),
        })
}

/// The Stock Directory this feed sends for an instrument (fields NASDAQ fills from its
/// listings are "not available").
fn stock_directory(header: Header, instrument: &ItchInstrument) -> Message {
    Message::StockDirectory(itch::StockDirectory {
        header,
        stock: instrument.stock,
        market_category: b' ',
        financial_status_indicator: b' ',
        round_lot_size: instrument.round_lot_shares,
        round_lots_only: b'Y',
        issue_classification: b' ',
        issue_sub_type: *b"  ",
        authenticity: b'P',
        short_sale_threshold_indicator: b' ',
        ipo_flag: b' ',
        luld_reference_price_tier: b' ',
        etp_flag: b' ',
        etp_leverage_factor: 0,
        inverse_indicator: b'N',
    })
}

/// `H` halted or `T` trading, reason blank.
fn trading_action(header: Header, instrument: &ItchInstrument, halted: bool) -> Message {
    Message::TradingAction(itch::TradingAction {
        header,
        stock: instrument.stock,
        trading_state: if halted { b'H' } else { b'T' },
        reserved: b' ',
        reason: *b"    ",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use matcher::{NewOrder, OrderType, Replace, StpMode, TimeInForce};

    pub(crate) fn instrument(instrument_id: u32) -> InstrumentConfig {
        InstrumentConfig {
            instrument_id,
            symbol: *b"ACME\0\0\0\0",
            price_exponent: -2,
            quantity_exponent: 0,
            tick_size: 5,
            lot_size: 1,
            price_min: 5,
            price_levels: 10_000,
            band_width_ticks: 0,
            reference_price: 10_000,
            quantity_min_lots: 1,
            quantity_max_lots: 1_000_000,
            notional_max: 0,
        }
    }

    #[test]
    fn check_instrument_accepts_exact_and_refuses_the_rest() {
        let ok = check_instrument(&instrument(1)).expect("cents fit Price(4)");
        assert_eq!(ok.stock, *b"ACME    ");
        assert_eq!(ok.price_scale, Scale::Multiply(100));
        assert_eq!(ok.price_to_itch(10_125), Some(1_012_500));
        assert_eq!(ok.quantity_scale, Scale::Multiply(1));

        // Micro units with a tick of 100 micro: every price is a whole 0.0001.
        let micro = InstrumentConfig {
            price_exponent: -6,
            tick_size: 100,
            price_min: 100,
            reference_price: 1_000_000,
            ..instrument(2)
        };
        let converted = check_instrument(&micro).expect("tick of 0.0001");
        assert_eq!(converted.price_to_itch(1_000_100), Some(10_001));
        let fine_tick = InstrumentConfig {
            tick_size: 10,
            price_min: 100,
            reference_price: 1_000,
            ..micro
        };
        assert!(matches!(
            check_instrument(&fine_tick),
            Err(InstrumentError::PricePrecision { .. })
        ));

        let negative = InstrumentConfig {
            price_min: -100,
            ..instrument(3)
        };
        assert!(matches!(
            check_instrument(&negative),
            Err(InstrumentError::NegativePrice { .. })
        ));
        // 10,000 levels of 1.00 from 1.00: 10,000.00 fits; with 100 × the tick it does not.
        let wide = InstrumentConfig {
            tick_size: 50_000,
            price_min: 50_000,
            reference_price: 50_000,
            ..instrument(4)
        };
        let error = check_instrument(&wide).expect_err("price above 429496.7295");
        assert!(matches!(error, InstrumentError::PriceRange { .. }));
        assert!(error.to_string().contains("429496.7295"), "{error}");

        let fractional = InstrumentConfig {
            quantity_exponent: -2,
            lot_size: 50,
            ..instrument(5)
        };
        assert!(matches!(
            check_instrument(&fractional),
            Err(InstrumentError::QuantityPrecision { .. })
        ));
        let hundredths_in_lots = InstrumentConfig {
            quantity_exponent: -2,
            lot_size: 100,
            ..instrument(5)
        };
        let converted = check_instrument(&hundredths_in_lots).expect("whole shares");
        assert_eq!(converted.quantity_to_shares(300), Some(3));
        assert_eq!(converted.round_lot_shares, 1);

        let huge = InstrumentConfig {
            quantity_exponent: 3,
            quantity_max_lots: 5_000_000,
            ..instrument(6)
        };
        assert!(matches!(
            check_instrument(&huge),
            Err(InstrumentError::QuantityRange { .. })
        ));
        let locate = InstrumentConfig {
            ..instrument(70_000)
        };
        assert!(matches!(
            check_instrument(&locate),
            Err(InstrumentError::InstrumentId { .. })
        ));
        for symbol in [*b"\0\0\0\0\0\0\0\0", *b"AC ME\0\0\0", *b"AC\0ME\0\0\0"] {
            let bad = InstrumentConfig {
                symbol,
                ..instrument(7)
            };
            assert!(matches!(
                check_instrument(&bad),
                Err(InstrumentError::Symbol { .. })
            ));
        }
        let full = InstrumentConfig {
            symbol: *b"ABCDEFGH",
            ..instrument(8)
        };
        assert_eq!(check_instrument(&full).map(|i| i.stock), Ok(*b"ABCDEFGH"));
    }

    fn run(
        matcher: &mut Matcher,
        encoder: &mut FeedEncoder,
        sequence: u64,
        command: Command,
    ) -> Vec<Message> {
        let record = command.encode();
        let mut events = Vec::new();
        matcher.apply(sequence, 1_000 + sequence, &record, &mut events);
        let mut messages = Vec::new();
        encoder
            .encode_command(
                sequence,
                1_000 + sequence,
                &record,
                &events,
                &mut |_sequence: u64, bytes: &[u8]| {
                    messages.push(Message::decode(bytes).expect("decodes"))
                },
            )
            .expect("encodes");
        messages
    }

    fn limit(side: Side, price: i64, quantity: u64, account_id: u32) -> Command {
        Command::NewOrder(NewOrder {
            instrument_id: 1,
            account_id,
            client_order_id: price as u64 * 1000 + quantity,
            side,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            stp_mode: StpMode::None,
            post_only: false,
            price,
            quantity,
        })
    }

    #[test]
    fn maps_the_order_lifecycle() {
        let config = matcher::Config {
            order_capacity: 64,
            level_capacity: 1 << 15,
            instrument_capacity: 4,
            account_capacity: 16,
        };
        let mut matcher = Matcher::new(config).expect("config");
        let mut encoder = FeedEncoder::new(FeedConfig::from(&config));
        let added = run(
            &mut matcher,
            &mut encoder,
            1,
            Command::AddInstrument(instrument(1)),
        );
        // The feed opens with start of messages, of system hours, of market hours.
        for (message, code) in added.iter().zip([b'O', b'S', b'Q']) {
            assert!(
                matches!(message, Message::SystemEvent(m) if m.event_code == code && m.header.stock_locate == 0),
                "{message:?}"
            );
        }
        let added = &added[3..];
        assert!(
            matches!(added[0], Message::StockDirectory(m) if m.stock == *b"ACME    " && m.header.stock_locate == 1)
        );
        assert!(matches!(added[1], Message::TradingAction(m) if m.trading_state == b'T'));

        let add = run(
            &mut matcher,
            &mut encoder,
            2,
            limit(Side::Sell, 10_000, 10, 1),
        );
        assert!(
            matches!(add[..], [Message::AddOrder(m)] if m.order_reference == 2 && m.price == 1_000_000 && m.shares == 10 && m.side == BuySell::Sell)
        );

        // A buy crossing for 4: the maker executes.
        let trade = run(
            &mut matcher,
            &mut encoder,
            3,
            limit(Side::Buy, 10_000, 4, 2),
        );
        assert!(
            matches!(trade[..], [Message::OrderExecuted(m)] if m.order_reference == 2 && m.executed_shares == 4 && m.match_number == 1)
        );

        // Priority kept, quantity down: Order Cancel of the difference.
        let reduce = Command::Replace(Replace {
            account_id: 1,
            order_id: 2,
            client_order_id: 77,
            price: 10_000,
            quantity: 8,
        });
        let reduced = run(&mut matcher, &mut encoder, 4, reduce);
        assert!(
            matches!(reduced[..], [Message::OrderCancel(m)] if m.order_reference == 2 && m.cancelled_shares == 2)
        );

        // Price change that rests without trading: one Order Replace, new reference 5.
        let moved = Command::Replace(Replace {
            account_id: 1,
            order_id: 2,
            client_order_id: 78,
            price: 10_100,
            quantity: 8,
        });
        let replaced = run(&mut matcher, &mut encoder, 5, moved);
        assert!(
            matches!(replaced[..], [Message::OrderReplace(m)] if m.original_order_reference == 2 && m.new_order_reference == 5 && m.shares == 4 && m.price == 1_010_000)
        );
        assert_eq!(encoder.order_reference(2), 5);

        // Halt and resume; a reference price change emits nothing.
        let halted = run(
            &mut matcher,
            &mut encoder,
            6,
            Command::Halt { instrument_id: 1 },
        );
        assert!(matches!(halted[..], [Message::TradingAction(m)] if m.trading_state == b'H'));
        let resumed = run(
            &mut matcher,
            &mut encoder,
            7,
            Command::Resume { instrument_id: 1 },
        );
        assert!(matches!(resumed[..], [Message::TradingAction(m)] if m.trading_state == b'T'));
        let reference = Command::SetReferencePrice {
            instrument_id: 1,
            price: 10_050,
        };
        assert!(run(&mut matcher, &mut encoder, 8, reference).is_empty());

        // Restoring from the matcher gives the same reference map.
        let restored =
            FeedEncoder::restore(FeedConfig::from(&config), &matcher, encoder.sequence_next())
                .expect("restores");
        assert_eq!(restored.order_reference(2), 5);

        // Cancel: Order Delete under the new reference.
        let cancel = Command::Cancel(matcher::Cancel {
            account_id: 1,
            order_id: 2,
        });
        let deleted = run(&mut matcher, &mut encoder, 9, cancel);
        assert!(matches!(deleted[..], [Message::OrderDelete(m)] if m.order_reference == 5));
        assert_eq!(encoder.order_reference(2), 2);
        assert_eq!(encoder.references.len(), 0);
        // 9 messages of the orders' lives after the 3 opening system events.
        assert_eq!(encoder.sequence_next(), 13);
    }

    #[test]
    fn refused_instrument_is_left_out() {
        let config = matcher::Config {
            order_capacity: 64,
            level_capacity: 1 << 15,
            instrument_capacity: 4,
            account_capacity: 16,
        };
        let mut matcher = Matcher::new(config).expect("config");
        let mut encoder = FeedEncoder::new(FeedConfig::from(&config));
        let refused = InstrumentConfig {
            price_min: -5,
            ..instrument(1)
        };
        // Only the feed's opening system events.
        assert!(run(
            &mut matcher,
            &mut encoder,
            1,
            Command::AddInstrument(refused)
        )
        .iter()
        .all(|m| matches!(m, Message::SystemEvent(_))));
        assert!(run(&mut matcher, &mut encoder, 2, limit(Side::Buy, 100, 1, 1)).is_empty());
        assert_eq!(encoder.counters().instruments_refused, 1);
        assert_eq!(encoder.counters().events_skipped, 1);
        // Nothing but the opening system events.
        assert_eq!(encoder.sequence_next(), 4);
    }
}
