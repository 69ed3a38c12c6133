//! The matcher state and the command handlers.
//!
//! Layout: one pool of orders (slab with a free list, `u32` slots), one pool of price levels
//! (each instrument owns a contiguous run per side, indexed by `(price - price_min) / tick`),
//! a two-level bitmap of non-empty levels per side for the next-best search, and fixed-capacity
//! open-addressing tables for order id, (account, client order id) and account id lookups.
//! Everything is allocated in [`Matcher::new`]; commands never allocate.

use crate::command::{
    Cancel, Command, CommandKind, CommandRecord, InstrumentConfig, MassCancel, NewOrder, OrderType,
    Replace, Side, StpMode, TimeInForce, KIND_CANCEL, KIND_NEW_ORDER, KIND_REPLACE,
};
use crate::event::{
    CancelReason, Event, EventKind, EventSink, RejectReason, FLAG_KILLED, FLAG_MAKER_DONE,
    FLAG_PRIORITY_KEPT, FLAG_TAKER_DONE, STATUS_HALTED, STATUS_TRADING,
};
use crate::hash;
use crate::table::{ClientKey, ClientTable, QueuedTable, Table};
use zerocopy::little_endian::{I64, U32, U64};

/// "No slot / no level" marker.
pub(crate) const NIL: u32 = u32::MAX;

/// Upper bound of [`Config::order_capacity`].
pub const ORDER_CAPACITY_MAX: u32 = 1 << 26;
/// Upper bound of [`Config::level_capacity`] (both sides of every instrument together).
pub const LEVEL_CAPACITY_MAX: u32 = 1 << 28;
/// Upper bound of [`Config::instrument_capacity`].
pub const INSTRUMENT_CAPACITY_MAX: u32 = 1 << 16;
/// Upper bound of [`Config::account_capacity`].
pub const ACCOUNT_CAPACITY_MAX: u32 = 1 << 26;
const _: () = assert!(ORDER_CAPACITY_MAX < NIL && LEVEL_CAPACITY_MAX < NIL);
const _: () = assert!(ACCOUNT_CAPACITY_MAX < NIL && INSTRUMENT_CAPACITY_MAX < NIL);

const BITS_PER_WORD: u32 = 64;

/// Pre-allocated capacities. Exhausting one is a `Rejected(Capacity)`, never a reallocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Resting orders, all instruments together.
    pub order_capacity: u32,
    /// Price levels, all instruments and both sides together (an instrument takes
    /// `2 * price_levels`).
    pub level_capacity: u32,
    /// Instruments; ids run `1..=instrument_capacity`.
    pub instrument_capacity: u32,
    /// Distinct accounts ever seen (accounts are registered by their first accepted order or
    /// kill switch command and never forgotten).
    pub account_capacity: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            order_capacity: 1 << 20,
            level_capacity: 1 << 22,
            instrument_capacity: 256,
            account_capacity: 1 << 16,
        }
    }
}

/// An invalid [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A capacity is zero or above its maximum.
    #[error("capacity {name} = {value} outside 1..={max}")]
    Capacity {
        /// Field.
        name: &'static str,
        /// Value.
        value: u32,
        /// Maximum.
        max: u32,
    },
}

impl Config {
    /// Checks every capacity against its bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            ("order_capacity", self.order_capacity, ORDER_CAPACITY_MAX),
            ("level_capacity", self.level_capacity, LEVEL_CAPACITY_MAX),
            (
                "instrument_capacity",
                self.instrument_capacity,
                INSTRUMENT_CAPACITY_MAX,
            ),
            (
                "account_capacity",
                self.account_capacity,
                ACCOUNT_CAPACITY_MAX,
            ),
        ];
        for (name, value, max) in checks {
            if value == 0 || value > max {
                return Err(ConfigError::Capacity { name, value, max });
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Level {
    pub(crate) quantity: u64,
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) count: u32,
}

/// A pooled order: one cache line. Its price is its level's (`Instrument::price_of`), its
/// account id is its account slot's, and its state-hash contribution is recomputed from these
/// fields when needed rather than stored, so that every order operation touches one line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct Order {
    /// 0 when the slot is free.
    pub(crate) order_id: u64,
    pub(crate) leaves: u64,
    /// Total quantity: original (or replaced) quantity minus STP decrements.
    pub(crate) quantity: u64,
    pub(crate) client_order_id: u64,
    /// Sequence of the command that put the order at the back of its level's queue.
    pub(crate) priority_sequence: u64,
    /// Level FIFO links; `next` also links the free list.
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) account_slot: u32,
    pub(crate) level_index: u32,
    pub(crate) instrument_index: u16,
    pub(crate) side: Side,
    pub(crate) time_in_force: TimeInForce,
    pub(crate) stp_mode: StpMode,
    pub(crate) post_only: bool,
}
const _: () = assert!(core::mem::size_of::<Order>() == 64);
const _: () = assert!(INSTRUMENT_CAPACITY_MAX - 1 <= u16::MAX as u32);

impl Order {
    const FREE: Order = Order {
        order_id: 0,
        client_order_id: 0,
        quantity: 0,
        leaves: 0,
        priority_sequence: 0,
        prev: NIL,
        next: NIL,
        account_slot: NIL,
        instrument_index: 0,
        level_index: 0,
        side: Side::Buy,
        time_in_force: TimeInForce::Gtc,
        stp_mode: StpMode::None,
        post_only: false,
    };

    fn flags_word(&self) -> u64 {
        u64::from(self.side as u8)
            | u64::from(self.time_in_force as u8) << 8
            | u64::from(self.stp_mode as u8) << 16
            | u64::from(self.post_only) << 24
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Instrument {
    pub(crate) active: bool,
    pub(crate) halted: bool,
    pub(crate) config: InstrumentConfig,
    pub(crate) reference_price: i64,
    pub(crate) tick: i64,
    pub(crate) lot: u64,
    pub(crate) quantity_min: u64,
    pub(crate) quantity_max: u64,
    pub(crate) price_max: i64,
    /// Prices accepted for limit orders; also the market-order protection prices.
    pub(crate) band_low: i64,
    pub(crate) band_high: i64,
    pub(crate) level_base: [u32; 2],
    pub(crate) bitmap_base: [u32; 2],
    pub(crate) summary_base: [u32; 2],
    pub(crate) bitmap_words: u32,
    pub(crate) summary_words: u32,
    /// Best level index per side, or NIL.
    pub(crate) best: [u32; 2],
    pub(crate) hash: u64,
}

impl Instrument {
    fn inactive(config: InstrumentConfig) -> Instrument {
        Instrument {
            active: false,
            halted: false,
            config,
            reference_price: 0,
            tick: 1,
            lot: 1,
            quantity_min: 0,
            quantity_max: 0,
            price_max: 0,
            band_low: 0,
            band_high: 0,
            level_base: [0; 2],
            bitmap_base: [0; 2],
            summary_base: [0; 2],
            bitmap_words: 0,
            summary_words: 0,
            best: [NIL; 2],
            hash: 0,
        }
    }

    pub(crate) fn set_reference_price(&mut self, price: i64) {
        self.reference_price = price;
        let config = &self.config;
        if config.band_width_ticks == 0 {
            self.band_low = config.price_min;
            self.band_high = self.price_max;
        } else {
            let width = i64::from(config.band_width_ticks) * self.tick;
            self.band_low = price.saturating_sub(width).max(config.price_min);
            self.band_high = price.saturating_add(width).min(self.price_max);
        }
        self.hash = instrument_hash(self);
    }

    #[inline]
    pub(crate) fn index_of(&self, price: i64) -> u32 {
        debug_assert!(price >= self.config.price_min && price <= self.price_max);
        let offset = price - self.config.price_min;
        if self.tick == 1 {
            offset as u32
        } else {
            (offset / self.tick) as u32
        }
    }

    #[inline]
    fn price_of(&self, index: u32) -> i64 {
        self.config.price_min + i64::from(index) * self.tick
    }
}

pub(crate) fn instrument_hash(instrument: &Instrument) -> u64 {
    let record = instrument.config.encode();
    let mut state = hash::SEED;
    for chunk in record.as_bytes().chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        state = hash::mix2(state, u64::from_le_bytes(word));
    }
    state = hash::mix2(state, u64::from(instrument.halted));
    hash::mix2(state, instrument.reference_price as u64)
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Account {
    pub(crate) account_id: u32,
    pub(crate) killed: bool,
    /// Resting orders of the account.
    pub(crate) order_count: u32,
    /// At least the largest client order id of the account's resting orders (the largest it
    /// ever indexed): a new client order id above it cannot be a duplicate, so the usual case of
    /// increasing client order ids skips the table lookup, a cache miss. Not state: it only
    /// decides whether to look, never what a lookup finds.
    pub(crate) client_order_id_max: u64,
}

pub(crate) fn account_hash(account: &Account) -> u64 {
    hash::mix2(
        hash::mix2(hash::SEED, u64::from(account.account_id)),
        u64::from(account.killed),
    )
}

/// The order an incoming command is matching with.
struct Taker {
    order_id: u64,
    client_order_id: u64,
    price: i64,
    quantity: u64,
    leaves: u64,
    limit_index: u32,
    account_id: u32,
    account_slot: u32,
    side: Side,
    stp_mode: StpMode,
    /// Set when self-trade prevention cancelled the taker's remainder.
    stopped: bool,
}

/// A resting order as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    /// Exchange order id (sequence of the command that created it).
    pub order_id: u64,
    /// Current client order id.
    pub client_order_id: u64,
    /// Owner.
    pub account_id: u32,
    /// Instrument.
    pub instrument_id: u32,
    /// Side.
    pub side: Side,
    /// Limit price in price units.
    pub price: i64,
    /// Total quantity (net of STP decrements).
    pub quantity: u64,
    /// Quantity still open.
    pub leaves: u64,
    /// GTC or DAY.
    pub time_in_force: TimeInForce,
    /// STP mode used if the order takes liquidity again after a replace.
    pub stp_mode: StpMode,
    /// Post-only.
    pub post_only: bool,
    /// Sequence of the command that gave the order its place in the queue.
    pub priority_sequence: u64,
}

/// One price level as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelView {
    /// Price in price units.
    pub price: i64,
    /// Total open quantity.
    pub quantity: u64,
    /// Number of orders.
    pub order_count: u32,
}

/// Instrument state as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstrumentView {
    /// Static configuration.
    pub config: InstrumentConfig,
    /// Halted.
    pub halted: bool,
    /// Current reference price.
    pub reference_price: i64,
}

/// The deterministic single-threaded order book of every instrument.
pub struct Matcher {
    pub(crate) config: Config,
    pub(crate) instruments: Vec<Instrument>,
    pub(crate) levels: Vec<Level>,
    pub(crate) levels_used: u32,
    pub(crate) bitmap: Vec<u64>,
    pub(crate) bitmap_used: u32,
    pub(crate) summary: Vec<u64>,
    pub(crate) summary_used: u32,
    /// The order pool (`order_capacity` slots); free slots are a LIFO list through `next`, so a
    /// new order reuses the slot (still in cache) of the order that left last.
    pub(crate) orders: Vec<Order>,
    pub(crate) order_free_head: u32,
    pub(crate) orders_live: u32,
    /// Order id → slot, direct-mapped: cell `order_id & order_index_mask` holds the slot of the
    /// order with that id if it was free when the order arrived (the usual case: order ids are
    /// sequence numbers, so recent orders fill consecutive cells). A cell is confirmed by the
    /// order's own id. 4-byte cells, at least two per order, so it stays small enough to cache.
    pub(crate) order_index: Vec<u32>,
    pub(crate) order_index_mask: u64,
    /// Order id → slot for the orders whose cell was taken when they arrived.
    pub(crate) order_overflow: QueuedTable<u64>,
    /// The account slot of the order in each pool slot (stale once it leaves): a compact array
    /// for the mass cancel and kill switch scans.
    pub(crate) order_accounts: Vec<u32>,
    /// Scratch space for the (order id, slot) pairs of a mass cancel or kill switch, allocated
    /// with capacity `order_capacity`.
    pub(crate) scratch: Vec<(u64, u32)>,
    pub(crate) client_order_ids: ClientTable,
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_ids: Table<u32>,
    pub(crate) trade_id_next: u64,
    pub(crate) sequence_last: u64,
    pub(crate) timestamp_ns_last: u64,
    pub(crate) hash_orders: u64,
    pub(crate) hash_accounts: u64,
    pub(crate) hash_instruments: u64,
}

#[inline(always)]
pub(crate) fn client_key(account_slot: u32, client_order_id: u64) -> ClientKey {
    ClientKey {
        client_order_id,
        account_slot,
    }
}

impl Matcher {
    /// Allocates every pool and table for `config`. The only allocation the matcher does.
    pub fn new(config: Config) -> Result<Matcher, ConfigError> {
        config.validate()?;
        let empty_config = InstrumentConfig {
            instrument_id: 0,
            symbol: [0; 8],
            price_exponent: 0,
            quantity_exponent: 0,
            tick_size: 0,
            lot_size: 0,
            price_min: 0,
            price_levels: 0,
            band_width_ticks: 0,
            reference_price: 0,
            quantity_min_lots: 0,
            quantity_max_lots: 0,
            notional_max: 0,
        };
        let mut orders = vec![Order::FREE; config.order_capacity as usize];
        for (slot, order) in orders.iter_mut().enumerate() {
            order.next = if slot + 1 < config.order_capacity as usize {
                (slot + 1) as u32
            } else {
                NIL
            };
        }
        let order_index_cells = (u64::from(config.order_capacity) * 2).next_power_of_two();
        // Each side of each instrument wastes at most one partial word at each bitmap level.
        let bitmap_capacity =
            config.level_capacity / BITS_PER_WORD + 2 * config.instrument_capacity;
        let summary_capacity = bitmap_capacity / BITS_PER_WORD + 2 * config.instrument_capacity;
        Ok(Matcher {
            config,
            instruments: vec![
                Instrument::inactive(empty_config);
                config.instrument_capacity as usize
            ],
            levels: vec![
                Level {
                    quantity: 0,
                    head: NIL,
                    tail: NIL,
                    count: 0
                };
                config.level_capacity as usize
            ],
            levels_used: 0,
            bitmap: vec![0; bitmap_capacity as usize],
            bitmap_used: 0,
            summary: vec![0; summary_capacity as usize],
            summary_used: 0,
            orders,
            order_free_head: 0,
            orders_live: 0,
            order_index: vec![NIL; order_index_cells as usize],
            order_index_mask: order_index_cells - 1,
            order_overflow: QueuedTable::new(config.order_capacity),
            order_accounts: vec![NIL; config.order_capacity as usize],
            scratch: Vec::with_capacity(config.order_capacity as usize),
            client_order_ids: ClientTable::new(config.order_capacity),
            accounts: vec![
                Account {
                    account_id: 0,
                    killed: false,
                    order_count: 0,
                    client_order_id_max: 0,
                };
                config.account_capacity as usize
            ],
            account_ids: Table::new(config.account_capacity),
            trade_id_next: 1,
            sequence_last: 0,
            timestamp_ns_last: 0,
            hash_orders: 0,
            hash_accounts: 0,
            hash_instruments: 0,
        })
    }

    /// The configuration this matcher was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sequence number of the last applied command (0 before the first).
    pub fn sequence_last(&self) -> u64 {
        self.sequence_last
    }

    /// Timestamp of the last applied command.
    pub fn timestamp_ns_last(&self) -> u64 {
        self.timestamp_ns_last
    }

    /// The id the next trade will get.
    pub fn trade_id_next(&self) -> u64 {
        self.trade_id_next
    }

    /// Number of resting orders.
    pub fn order_count(&self) -> u32 {
        self.orders_live
    }

    /// Applies one command from the log.
    ///
    /// `sequence` is the command's log sequence number and must be greater than that of the
    /// previous command (a broken log is a crash, not a reject); it becomes the order id of a new
    /// order. `timestamp_ns` is recorded but never read by the rules. Events go to `sink` in order.
    pub fn apply<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        timestamp_ns: u64,
        record: &CommandRecord,
        sink: &mut S,
    ) {
        assert!(
            sequence > self.sequence_last,
            "command sequence {sequence} not above the last applied {}",
            self.sequence_last
        );
        self.sequence_last = sequence;
        self.timestamp_ns_last = timestamp_ns;
        // The hot kinds decode straight into the handler's argument; the rest (and anything
        // malformed) take the field-by-field path.
        let fast = match record.kind {
            KIND_NEW_ORDER => record
                .decode_new_order_fast()
                .map(|order| self.new_order(sequence, &order, sink)),
            KIND_CANCEL => record
                .decode_cancel_fast()
                .map(|cancel| self.cancel(sequence, &cancel, sink)),
            KIND_REPLACE => record
                .decode_replace_fast()
                .map(|replace| self.replace(sequence, &replace, sink)),
            _ => None,
        };
        if let Some(result) = fast {
            if let Err(reason) = result {
                sink.event(&rejected(sequence, record, reason));
            }
            return;
        }
        match record.decode_checked() {
            Ok(command) => self.execute(sequence, record, &command, sink),
            Err(_) => sink.event(&rejected(sequence, record, RejectReason::Malformed)),
        }
    }

    /// A hint that `record` will be applied next, while the current one is applied: starts
    /// loading the order a cancel or replace targets, the best opposite order a new order would
    /// meet and the order at the back of the level it would join, so that their cache misses
    /// overlap with the current command's work. It reads the order id index cell and the level
    /// to find them, which [`Matcher::prefetch_early`] of the same record one command earlier
    /// makes cheap. Changes no state, emits nothing, never panics; fields are not validated (a
    /// record that would be rejected only costs useless prefetches).
    #[inline]
    pub fn prefetch(&self, record: &CommandRecord) {
        match record.kind {
            KIND_CANCEL | KIND_REPLACE => {
                let order_id = record.order_id.get();
                let cell = self.order_index[(order_id & self.order_index_mask) as usize];
                if let Some(order) = self.orders.get(cell as usize) {
                    crate::prefetch::prefetch(order);
                }
            }
            KIND_NEW_ORDER => {
                let Some(side) = Side::from_u8(record.side) else {
                    return;
                };
                let Some(instrument_index) = self.instrument_index(record.instrument_id.get())
                else {
                    return;
                };
                let instrument = &self.instruments[instrument_index];
                let opposite = side.opposite().index();
                let best = instrument.best[opposite];
                if best != NIL {
                    let level = &self.levels[(instrument.level_base[opposite] + best) as usize];
                    if let Some(maker) = self.orders.get(level.head as usize) {
                        crate::prefetch::prefetch(maker);
                    }
                }
                if let Some(level) = self.hint_level(instrument_index, side, record) {
                    if let Some(tail) = self.orders.get(level.tail as usize) {
                        crate::prefetch::prefetch(tail);
                    }
                }
                if let Some(account_slot) = self.account_ids.get(record.account_id.get()) {
                    let client_order_id = record.client_order_id.get();
                    // Only an id the account may already use is looked up (`client_order_slot`).
                    if client_order_id <= self.accounts[account_slot as usize].client_order_id_max {
                        self.client_order_ids
                            .prefetch(client_key(account_slot, client_order_id));
                    }
                }
            }
            _ => {}
        }
    }

    /// A hint for a record two commands ahead (before [`Matcher::prefetch`] of it on the next
    /// command): starts loading what can be found without reading anything that may miss, the
    /// order id index cell of a cancel or replace and the price level of a limit order. Changes
    /// no state, emits nothing, never panics.
    #[inline]
    pub fn prefetch_early(&self, record: &CommandRecord) {
        match record.kind {
            KIND_CANCEL | KIND_REPLACE => {
                let order_id = record.order_id.get();
                crate::prefetch::prefetch(
                    &self.order_index[(order_id & self.order_index_mask) as usize],
                );
            }
            KIND_NEW_ORDER => {
                let Some(side) = Side::from_u8(record.side) else {
                    return;
                };
                if let Some(instrument_index) = self.instrument_index(record.instrument_id.get()) {
                    if let Some(level) = self.hint_level(instrument_index, side, record) {
                        crate::prefetch::prefetch(level);
                    }
                }
            }
            _ => {}
        }
    }

    /// The level a limit order record would rest at, if its price is in the static range.
    #[inline]
    fn hint_level(
        &self,
        instrument_index: usize,
        side: Side,
        record: &CommandRecord,
    ) -> Option<&Level> {
        let instrument = &self.instruments[instrument_index];
        let price = record.price.get();
        if record.order_type != OrderType::Limit as u8
            || price < instrument.config.price_min
            || price > instrument.price_max
        {
            return None;
        }
        self.levels
            .get(self.level_slot(instrument_index, side, instrument.index_of(price)))
    }

    /// Applies a journal payload: like [`Matcher::apply`], but a payload that is not exactly one
    /// record is answered with `Rejected(Malformed)` (all echoed fields zero).
    pub fn apply_payload<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        timestamp_ns: u64,
        payload: &[u8],
        sink: &mut S,
    ) {
        self.apply(
            sequence,
            timestamp_ns,
            &CommandRecord::from_payload(payload),
            sink,
        )
    }

    /// Applies a typed command (encodes it first, so it takes exactly the path of the record).
    pub fn apply_command<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        timestamp_ns: u64,
        command: &Command,
        sink: &mut S,
    ) {
        self.apply(sequence, timestamp_ns, &command.encode(), sink);
    }

    fn execute<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        record: &CommandRecord,
        command: &Command,
        sink: &mut S,
    ) {
        let result = match command {
            Command::NewOrder(order) => self.new_order(sequence, order, sink),
            Command::Cancel(cancel) => self.cancel(sequence, cancel, sink),
            Command::Replace(replace) => self.replace(sequence, replace, sink),
            Command::MassCancel(mass) => self.mass_cancel(sequence, mass, sink),
            Command::AddInstrument(config) => self.add_instrument(sequence, config, sink),
            Command::Halt { instrument_id } => {
                self.set_halted(sequence, *instrument_id, true, sink)
            }
            Command::Resume { instrument_id } => {
                self.set_halted(sequence, *instrument_id, false, sink)
            }
            Command::KillSwitch { account_id, on } => {
                self.kill_switch(sequence, *account_id, *on, sink)
            }
            Command::EndOfDay { instrument_id } => self.end_of_day(sequence, *instrument_id, sink),
            Command::SetReferencePrice {
                instrument_id,
                price,
            } => self.set_reference_price(sequence, *instrument_id, *price, sink),
        };
        if let Err(reason) = result {
            sink.event(&rejected(sequence, record, reason));
        }
    }

    #[inline]
    fn instrument_index(&self, instrument_id: u32) -> Option<usize> {
        let index = (instrument_id as usize).checked_sub(1)?;
        match self.instruments.get(index) {
            Some(instrument) if instrument.active => Some(index),
            _ => None,
        }
    }

    // ----- validation shared by new orders and replaces -----

    /// Tick and band check of a limit price; returns its level index.
    #[inline]
    fn check_price(instrument: &Instrument, price: i64) -> Result<u32, RejectReason> {
        // A 64-bit division costs tens of cycles: skip it for the common unit tick and lot.
        if instrument.tick != 1 && price % instrument.tick != 0 {
            return Err(RejectReason::PriceOffTick);
        }
        if price < instrument.band_low || price > instrument.band_high {
            return Err(RejectReason::OutsideBand);
        }
        Ok(instrument.index_of(price))
    }

    #[inline]
    fn check_quantity(
        instrument: &Instrument,
        quantity: u64,
        notional_price: i64,
    ) -> Result<(), RejectReason> {
        if instrument.lot != 1 && !quantity.is_multiple_of(instrument.lot) {
            return Err(RejectReason::QuantityOffLot);
        }
        if quantity < instrument.quantity_min || quantity > instrument.quantity_max {
            return Err(RejectReason::QuantityOutOfRange);
        }
        let notional_max = instrument.config.notional_max;
        if notional_max != 0
            && u128::from(notional_price.unsigned_abs()) * u128::from(quantity)
                > u128::from(notional_max)
        {
            return Err(RejectReason::NotionalTooLarge);
        }
        Ok(())
    }

    /// Whether an order on `side` limited at `limit_index` would take liquidity.
    #[inline]
    fn would_cross(&self, instrument_index: usize, side: Side, limit_index: u32) -> bool {
        let best = self.instruments[instrument_index].best[side.opposite().index()];
        best != NIL && crosses(side, best, limit_index)
    }

    /// The dry run of a fill-or-kill order: exactly the walk `match_taker` would do.
    fn fill_or_kill_fillable(
        &self,
        instrument_index: usize,
        side: Side,
        limit_index: u32,
        quantity: u64,
        account_slot: u32,
        stp_mode: StpMode,
    ) -> bool {
        let instrument = &self.instruments[instrument_index];
        let maker_side = side.opposite().index();
        let mut available = 0u64;
        let mut level_index = instrument.best[maker_side];
        while level_index != NIL && crosses(side, level_index, limit_index) {
            let level = &self.levels[(instrument.level_base[maker_side] + level_index) as usize];
            let mut slot = level.head;
            while slot != NIL {
                let maker = &self.orders[slot as usize];
                if maker.account_slot == account_slot && stp_mode != StpMode::None {
                    if stp_mode != StpMode::CancelOldest {
                        return false;
                    }
                } else {
                    available += maker.leaves;
                    if available >= quantity {
                        return true;
                    }
                }
                slot = maker.next;
            }
            level_index = self.next_level(instrument_index, side.opposite(), level_index);
        }
        false
    }

    /// The next non-empty level after `level_index` going away from the best price.
    #[inline]
    fn next_level(&self, instrument_index: usize, side: Side, level_index: u32) -> u32 {
        let instrument = &self.instruments[instrument_index];
        let s = side.index();
        let words =
            &self.bitmap[instrument.bitmap_base[s] as usize..][..instrument.bitmap_words as usize];
        let summary = &self.summary[instrument.summary_base[s] as usize..]
            [..instrument.summary_words as usize];
        match side {
            Side::Buy => {
                if level_index == 0 {
                    NIL
                } else {
                    bitmap_find_at_or_below(words, summary, level_index - 1)
                }
            }
            Side::Sell => {
                if level_index + 1 >= instrument.config.price_levels {
                    NIL
                } else {
                    bitmap_find_at_or_above(words, summary, level_index + 1)
                }
            }
        }
    }

    // ----- commands -----

    fn new_order<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        order: &NewOrder,
        sink: &mut S,
    ) -> Result<(), RejectReason> {
        let instrument_index = self
            .instrument_index(order.instrument_id)
            .ok_or(RejectReason::UnknownInstrument)?;
        let instrument = &self.instruments[instrument_index];
        if instrument.halted {
            return Err(RejectReason::InstrumentHalted);
        }
        let account_slot = self.account_ids.get(order.account_id);
        if let Some(slot) = account_slot {
            if self.accounts[slot as usize].killed {
                return Err(RejectReason::AccountKilled);
            }
        }
        let (limit_index, notional_price) = match order.order_type {
            OrderType::Limit => (Self::check_price(instrument, order.price)?, order.price),
            OrderType::Market => {
                let protection = match order.side {
                    Side::Buy => instrument.band_high,
                    Side::Sell => instrument.band_low,
                };
                (instrument.index_of(protection), protection)
            }
        };
        Self::check_quantity(instrument, order.quantity, notional_price)?;
        if order.time_in_force.rests() {
            self.prefetch_resting(instrument_index, order.side, limit_index);
        }
        if let Some(slot) = account_slot {
            if self
                .client_order_slot(slot, order.client_order_id)
                .is_some()
            {
                return Err(RejectReason::DuplicateClientOrderId);
            }
        }
        if order.post_only && self.would_cross(instrument_index, order.side, limit_index) {
            return Err(RejectReason::PostOnlyWouldTake);
        }
        if order.time_in_force == TimeInForce::Fok
            && !self.fill_or_kill_fillable(
                instrument_index,
                order.side,
                limit_index,
                order.quantity,
                account_slot.unwrap_or(NIL),
                order.stp_mode,
            )
        {
            return Err(RejectReason::FillOrKillUnfillable);
        }
        if account_slot.is_none() && self.account_ids.is_full() {
            return Err(RejectReason::Capacity);
        }
        if order.time_in_force.rests() && self.orders_live >= self.config.order_capacity {
            return Err(RejectReason::Capacity);
        }

        // Accepted: from here on the command changes state.
        let account_slot = match account_slot {
            Some(slot) => slot,
            None => self.register_account(order.account_id),
        };
        let mut accepted = Event::new(EventKind::Accepted, sequence, order.instrument_id);
        accepted.side = order.side as u8;
        accepted.flags = u8::from(order.post_only);
        accepted.order_id = U64::new(sequence);
        accepted.price = I64::new(order.price);
        accepted.quantity = U64::new(order.quantity);
        accepted.account_id = U32::new(order.account_id);
        accepted.aux_a = U64::new(order.client_order_id);
        accepted.aux_b = U64::new(
            u64::from(order.order_type as u8)
                | u64::from(order.time_in_force as u8) << 8
                | u64::from(order.stp_mode as u8) << 16,
        );
        sink.event(&accepted);

        let mut taker = Taker {
            order_id: sequence,
            client_order_id: order.client_order_id,
            price: order.price,
            quantity: order.quantity,
            leaves: order.quantity,
            limit_index,
            account_id: order.account_id,
            account_slot,
            side: order.side,
            stp_mode: order.stp_mode,
            stopped: false,
        };
        self.match_taker(sequence, instrument_index, &mut taker, sink);
        if order.time_in_force == TimeInForce::Fok {
            assert!(
                taker.leaves == 0 && !taker.stopped,
                "fill-or-kill dry run disagreed"
            );
        }
        if taker.leaves == 0 || taker.stopped {
            return Ok(());
        }
        if order.time_in_force.rests() {
            let slot = self.order_slot_take(sequence, account_slot);
            self.orders[slot as usize] = Order {
                order_id: sequence,
                client_order_id: order.client_order_id,
                quantity: taker.quantity,
                leaves: taker.leaves,
                priority_sequence: sequence,
                prev: NIL,
                next: NIL,
                account_slot,
                instrument_index: instrument_index as u16,
                level_index: limit_index,
                side: order.side,
                time_in_force: order.time_in_force,
                stp_mode: order.stp_mode,
                post_only: order.post_only,
            };
            self.client_order_insert(account_slot, order.client_order_id, slot);
            self.hash_add(slot);
            self.level_push_back(slot);
            self.emit_book_add(sequence, slot, sink);
        } else {
            let mut cancelled = Event::new(EventKind::Cancelled, sequence, order.instrument_id);
            cancelled.side = order.side as u8;
            cancelled.reason = CancelReason::IocRemainder as u8;
            cancelled.order_id = U64::new(sequence);
            cancelled.price = I64::new(order.price);
            cancelled.quantity = U64::new(taker.leaves);
            cancelled.account_id = U32::new(order.account_id);
            cancelled.aux_a = U64::new(order.client_order_id);
            sink.event(&cancelled);
        }
        Ok(())
    }

    fn cancel<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        cancel: &Cancel,
        sink: &mut S,
    ) -> Result<(), RejectReason> {
        let slot = self
            .order_slot(cancel.order_id)
            .ok_or(RejectReason::UnknownOrder)?;
        if self.account_id_of(slot) != cancel.account_id {
            return Err(RejectReason::NotOwner);
        }
        self.cancel_resting(sequence, slot, CancelReason::User, sink);
        Ok(())
    }

    fn replace<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        replace: &Replace,
        sink: &mut S,
    ) -> Result<(), RejectReason> {
        let slot = self
            .order_slot(replace.order_id)
            .ok_or(RejectReason::UnknownOrder)?;
        let order = self.orders[slot as usize];
        let account_id = self.account_id_of(slot);
        if account_id != replace.account_id {
            return Err(RejectReason::NotOwner);
        }
        let instrument_index = usize::from(order.instrument_index);
        let instrument = &self.instruments[instrument_index];
        let instrument_id = instrument.config.instrument_id;
        let price = instrument.price_of(order.level_index);
        if instrument.halted {
            return Err(RejectReason::InstrumentHalted);
        }
        let level_index = Self::check_price(instrument, replace.price)?;
        Self::check_quantity(instrument, replace.quantity, replace.price)?;
        let client_order_id_changed = replace.client_order_id != order.client_order_id;
        if client_order_id_changed
            && self
                .client_order_slot(order.account_slot, replace.client_order_id)
                .is_some()
        {
            return Err(RejectReason::DuplicateClientOrderId);
        }
        if order.post_only && self.would_cross(instrument_index, order.side, level_index) {
            return Err(RejectReason::PostOnlyWouldTake);
        }

        let filled = order.quantity - order.leaves;
        if replace.quantity <= filled {
            self.cancel_resting(sequence, slot, CancelReason::User, sink);
            return Ok(());
        }
        if client_order_id_changed {
            self.client_order_ids
                .remove(client_key(order.account_slot, order.client_order_id), slot);
            self.client_order_insert(order.account_slot, replace.client_order_id, slot);
        }
        let leaves_new = replace.quantity - filled;
        let priority_kept = replace.price == price && replace.quantity <= order.quantity;

        let mut replaced = Event::new(EventKind::Replaced, sequence, instrument_id);
        replaced.side = order.side as u8;
        replaced.flags = if priority_kept { FLAG_PRIORITY_KEPT } else { 0 };
        replaced.order_id = U64::new(order.order_id);
        replaced.price = I64::new(replace.price);
        replaced.quantity = U64::new(replace.quantity);
        replaced.account_id = U32::new(account_id);
        replaced.aux_a = U64::new(replace.client_order_id);
        replaced.aux_b = U64::new(leaves_new);
        sink.event(&replaced);

        self.hash_remove(slot);
        if priority_kept {
            let reduction = order.leaves - leaves_new;
            let entry = &mut self.orders[slot as usize];
            entry.quantity = replace.quantity;
            entry.leaves = leaves_new;
            entry.client_order_id = replace.client_order_id;
            self.hash_add(slot);
            if reduction > 0 {
                let level_slot = self.level_slot(instrument_index, order.side, order.level_index);
                self.levels[level_slot].quantity -= reduction;
                self.emit_book_reduce(sequence, slot, reduction, sink);
                self.emit_level(
                    sequence,
                    instrument_index,
                    order.side,
                    order.level_index,
                    sink,
                );
            }
            return Ok(());
        }

        // Loses priority: leave the book, take liquidity at the new price, rest at the back.
        self.emit_book_delete(sequence, slot, sink);
        self.level_unlink(slot);
        self.emit_level(
            sequence,
            instrument_index,
            order.side,
            order.level_index,
            sink,
        );
        let mut taker = Taker {
            order_id: order.order_id,
            client_order_id: replace.client_order_id,
            price: replace.price,
            quantity: replace.quantity,
            leaves: leaves_new,
            limit_index: level_index,
            account_id,
            account_slot: order.account_slot,
            side: order.side,
            stp_mode: order.stp_mode,
            stopped: false,
        };
        self.match_taker(sequence, instrument_index, &mut taker, sink);
        {
            let entry = &mut self.orders[slot as usize];
            entry.client_order_id = replace.client_order_id;
            entry.quantity = taker.quantity;
            entry.leaves = taker.leaves;
            entry.level_index = level_index;
            entry.priority_sequence = sequence;
        }
        if taker.leaves == 0 || taker.stopped {
            self.release(slot, false);
            return Ok(());
        }
        self.hash_add(slot);
        self.level_push_back(slot);
        self.emit_book_add(sequence, slot, sink);
        Ok(())
    }

    fn mass_cancel<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        mass: &MassCancel,
        sink: &mut S,
    ) -> Result<(), RejectReason> {
        let instrument_filter = match mass.instrument_id {
            Some(instrument_id) => Some(
                self.instrument_index(instrument_id)
                    .ok_or(RejectReason::UnknownInstrument)? as u32,
            ),
            None => None,
        };
        let mut count = 0u64;
        if let Some(account_slot) = self.account_ids.get(mass.account_id) {
            let orders = self.account_orders(account_slot);
            for (_, slot) in orders.iter().copied() {
                let order = &self.orders[slot as usize];
                let instrument_ok = instrument_filter
                    .is_none_or(|index| index == u32::from(order.instrument_index));
                let side_ok = mass.side.is_none_or(|side| side == order.side);
                if instrument_ok && side_ok {
                    self.cancel_resting(sequence, slot, CancelReason::MassCancel, sink);
                    count += 1;
                }
            }
            self.scratch = orders;
        }
        let mut done = Event::new(
            EventKind::MassCancelled,
            sequence,
            mass.instrument_id.unwrap_or(0),
        );
        done.side = mass.side.map_or(0, |side| side as u8);
        done.account_id = U32::new(mass.account_id);
        done.quantity = U64::new(count);
        sink.event(&done);
        Ok(())
    }

    fn add_instrument<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        config: &InstrumentConfig,
        sink: &mut S,
    ) -> Result<(), RejectReason> {
        let index = config.instrument_id as usize - 1; // Decode guarantees a non-zero id.
        if index >= self.instruments.len() {
            return Err(RejectReason::Capacity);
        }
        if self.instruments[index].active {
            return Err(RejectReason::InstrumentExists);
        }
        if !config.validate() {
            return Err(RejectReason::InvalidInstrumentConfig);
        }
        let levels = config.price_levels;
        if u64::from(self.levels_used) + 2 * u64::from(levels)
            > u64::from(self.config.level_capacity)
        {
            return Err(RejectReason::Capacity);
        }
        let bitmap_words = levels.div_ceil(BITS_PER_WORD);
        let summary_words = bitmap_words.div_ceil(BITS_PER_WORD);
        assert!(self.bitmap_used + 2 * bitmap_words <= self.bitmap.len() as u32);
        assert!(self.summary_used + 2 * summary_words <= self.summary.len() as u32);
        let mut instrument = Instrument::inactive(*config);
        instrument.active = true;
        instrument.tick = i64::from(config.tick_size);
        instrument.lot = u64::from(config.lot_size);
        instrument.quantity_min = u64::from(config.quantity_min_lots) * instrument.lot;
        instrument.quantity_max = u64::from(config.quantity_max_lots) * instrument.lot;
        instrument.price_max = config.price_max().expect("validated");
        instrument.bitmap_words = bitmap_words;
        instrument.summary_words = summary_words;
        for side in 0..2 {
            instrument.level_base[side] = self.levels_used;
            self.levels_used += levels;
            instrument.bitmap_base[side] = self.bitmap_used;
            self.bitmap_used += bitmap_words;
            instrument.summary_base[side] = self.summary_used;
            self.summary_used += summary_words;
        }
        instrument.set_reference_price(config.reference_price);
        self.hash_instruments = self.hash_instruments.wrapping_add(instrument.hash);
        self.instruments[index] = instrument;
        self.emit_instrument_status(sequence, index, sink);
        Ok(())
    }

    /// Changes instrument `index` with `change` (which must leave its `hash` current), keeping the
    /// incremental hash over all instruments in step.
    fn update_instrument(&mut self, index: usize, change: impl FnOnce(&mut Instrument)) {
        let instrument = &mut self.instruments[index];
        self.hash_instruments = self.hash_instruments.wrapping_sub(instrument.hash);
        change(instrument);
        self.hash_instruments = self.hash_instruments.wrapping_add(instrument.hash);
    }

    fn set_halted<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        instrument_id: u32,
        halted: bool,
        sink: &mut S,
    ) -> Result<(), RejectReason> {
        let index = self
            .instrument_index(instrument_id)
            .ok_or(RejectReason::UnknownInstrument)?;
        self.update_instrument(index, |instrument| {
            instrument.halted = halted;
            instrument.hash = instrument_hash(instrument);
        });
        self.emit_instrument_status(sequence, index, sink);
        Ok(())
    }

    fn set_reference_price<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        instrument_id: u32,
        price: i64,
        sink: &mut S,
    ) -> Result<(), RejectReason> {
        let index = self
            .instrument_index(instrument_id)
            .ok_or(RejectReason::UnknownInstrument)?;
        let instrument = &self.instruments[index];
        if price % instrument.tick != 0 {
            return Err(RejectReason::PriceOffTick);
        }
        if price < instrument.config.price_min || price > instrument.price_max {
            return Err(RejectReason::OutsideBand);
        }
        self.update_instrument(index, |instrument| instrument.set_reference_price(price));
        self.emit_instrument_status(sequence, index, sink);
        Ok(())
    }

    fn kill_switch<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        account_id: u32,
        on: bool,
        sink: &mut S,
    ) -> Result<(), RejectReason> {
        let account_slot = match self.account_ids.get(account_id) {
            Some(slot) => slot,
            None if self.account_ids.is_full() => return Err(RejectReason::Capacity),
            None => self.register_account(account_id),
        };
        let account = &mut self.accounts[account_slot as usize];
        self.hash_accounts = self.hash_accounts.wrapping_sub(account_hash(account));
        account.killed = on;
        self.hash_accounts = self.hash_accounts.wrapping_add(account_hash(account));
        let mut status = Event::new(EventKind::AccountStatus, sequence, 0);
        status.account_id = U32::new(account_id);
        status.flags = if on { FLAG_KILLED } else { 0 };
        sink.event(&status);
        if on {
            let orders = self.account_orders(account_slot);
            for (_, slot) in orders.iter().copied() {
                self.cancel_resting(sequence, slot, CancelReason::KillSwitch, sink);
            }
            self.scratch = orders;
        }
        Ok(())
    }

    fn end_of_day<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        instrument_id: u32,
        sink: &mut S,
    ) -> Result<(), RejectReason> {
        let index = self
            .instrument_index(instrument_id)
            .ok_or(RejectReason::UnknownInstrument)?;
        let mut count = 0u64;
        for side in [Side::Buy, Side::Sell] {
            let mut level_index = self.instruments[index].best[side.index()];
            while level_index != NIL {
                let mut slot = self.levels[self.level_slot(index, side, level_index)].head;
                while slot != NIL {
                    let order = &self.orders[slot as usize];
                    let next = order.next;
                    if order.time_in_force == TimeInForce::Day {
                        self.cancel_resting(sequence, slot, CancelReason::Expired, sink);
                        count += 1;
                    }
                    slot = next;
                }
                level_index = self.next_level(index, side, level_index);
            }
        }
        let mut done = Event::new(EventKind::EndOfDay, sequence, instrument_id);
        done.quantity = U64::new(count);
        sink.event(&done);
        Ok(())
    }

    // ----- matching -----

    /// Matches `taker` against the opposite side until it is filled, stopped by self-trade
    /// prevention, or the best opposite price no longer crosses its limit.
    #[inline]
    fn match_taker<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        instrument_index: usize,
        taker: &mut Taker,
        sink: &mut S,
    ) {
        let maker_side = taker.side.opposite();
        let instrument_id = self.instruments[instrument_index].config.instrument_id;
        while taker.leaves > 0 {
            let best = self.instruments[instrument_index].best[maker_side.index()];
            if best == NIL || !crosses(taker.side, best, taker.limit_index) {
                return;
            }
            let level_slot = self.level_slot(instrument_index, maker_side, best);
            let maker_slot = self.levels[level_slot].head;
            let maker = &self.orders[maker_slot as usize];
            self.prefetch_leaving(maker);
            if maker.account_slot == taker.account_slot && taker.stp_mode != StpMode::None {
                self.self_trade(sequence, instrument_id, taker, maker_slot, sink);
                if taker.stopped {
                    return;
                }
                continue;
            }
            let quantity = taker.leaves.min(maker.leaves);
            let maker_leaves = maker.leaves - quantity;
            let (maker_order_id, maker_leaves_old) = (maker.order_id, maker.leaves);
            let maker_account_id = self.accounts[maker.account_slot as usize].account_id;
            taker.leaves -= quantity;
            let trade_id = self.trade_id_next;
            self.trade_id_next += 1;

            let mut trade = Event::new(EventKind::Trade, sequence, instrument_id);
            trade.side = taker.side as u8;
            trade.flags = if taker.leaves == 0 {
                FLAG_TAKER_DONE
            } else {
                0
            } | if maker_leaves == 0 {
                FLAG_MAKER_DONE
            } else {
                0
            };
            trade.order_id = U64::new(taker.order_id);
            trade.price = I64::new(self.instruments[instrument_index].price_of(best));
            trade.quantity = U64::new(quantity);
            trade.account_id = U32::new(taker.account_id);
            trade.account_id_maker = U32::new(maker_account_id);
            trade.aux_a = U64::new(maker_order_id);
            trade.aux_b = U64::new(trade_id);
            sink.event(&trade);

            if maker_leaves == 0 {
                self.level_unlink(maker_slot);
                self.release(maker_slot, true);
            } else {
                self.levels[level_slot].quantity -= quantity;
                let hash_static = self.order_hash_static(maker_slot);
                self.orders[maker_slot as usize].leaves = maker_leaves;
                self.hash_orders = self
                    .hash_orders
                    .wrapping_sub(hash::mix2(hash_static, maker_leaves_old))
                    .wrapping_add(hash::mix2(hash_static, maker_leaves));
            }
            self.emit_level(sequence, instrument_index, maker_side, best, sink);
        }
    }

    /// Applies the taker's STP mode against a resting order of the same account.
    fn self_trade<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        instrument_id: u32,
        taker: &mut Taker,
        maker_slot: u32,
        sink: &mut S,
    ) {
        match taker.stp_mode {
            StpMode::None => unreachable!("caller checks"),
            StpMode::CancelNewest => {
                emit_taker_cancelled(sequence, instrument_id, taker, taker.leaves, 0, sink);
                taker.leaves = 0;
                taker.stopped = true;
            }
            StpMode::CancelOldest => {
                self.cancel_resting(sequence, maker_slot, CancelReason::SelfTrade, sink);
            }
            StpMode::CancelBoth => {
                self.cancel_resting(sequence, maker_slot, CancelReason::SelfTrade, sink);
                emit_taker_cancelled(sequence, instrument_id, taker, taker.leaves, 0, sink);
                taker.leaves = 0;
                taker.stopped = true;
            }
            StpMode::DecrementAndCancel => {
                let maker_leaves = self.orders[maker_slot as usize].leaves;
                let quantity = taker.leaves.min(maker_leaves);
                if quantity == maker_leaves {
                    self.cancel_resting(sequence, maker_slot, CancelReason::SelfTrade, sink);
                } else {
                    self.reduce_resting(sequence, maker_slot, quantity, sink);
                }
                taker.leaves -= quantity;
                taker.quantity -= quantity;
                emit_taker_cancelled(sequence, instrument_id, taker, quantity, taker.leaves, sink);
                if taker.leaves == 0 {
                    taker.stopped = true;
                }
            }
        }
    }

    /// Removes a resting order from the book with `Cancelled`, `BookDelete`, `LevelUpdate`.
    fn cancel_resting<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        slot: u32,
        reason: CancelReason,
        sink: &mut S,
    ) {
        let order = self.orders[slot as usize];
        self.prefetch_leaving(&order);
        let instrument_index = usize::from(order.instrument_index);
        let instrument = &self.instruments[instrument_index];
        let instrument_id = instrument.config.instrument_id;
        let mut cancelled = Event::new(EventKind::Cancelled, sequence, instrument_id);
        cancelled.side = order.side as u8;
        cancelled.reason = reason as u8;
        cancelled.order_id = U64::new(order.order_id);
        cancelled.price = I64::new(instrument.price_of(order.level_index));
        cancelled.quantity = U64::new(order.leaves);
        cancelled.account_id = U32::new(self.accounts[order.account_slot as usize].account_id);
        cancelled.aux_a = U64::new(order.client_order_id);
        sink.event(&cancelled);
        self.emit_book_delete(sequence, slot, sink);
        self.level_unlink(slot);
        self.emit_level(
            sequence,
            instrument_index,
            order.side,
            order.level_index,
            sink,
        );
        self.release(slot, true);
    }

    /// STP decrement of a resting order that stays in the book (keeps priority).
    fn reduce_resting<S: EventSink + ?Sized>(
        &mut self,
        sequence: u64,
        slot: u32,
        quantity: u64,
        sink: &mut S,
    ) {
        let instrument_index = usize::from(self.orders[slot as usize].instrument_index);
        let instrument_id = self.instruments[instrument_index].config.instrument_id;
        self.hash_remove(slot);
        let order = &mut self.orders[slot as usize];
        assert!(quantity < order.leaves);
        order.leaves -= quantity;
        order.quantity -= quantity;
        let order = *order;
        self.hash_add(slot);
        let level_slot = self.level_slot(instrument_index, order.side, order.level_index);
        self.levels[level_slot].quantity -= quantity;
        let mut cancelled = Event::new(EventKind::Cancelled, sequence, instrument_id);
        cancelled.side = order.side as u8;
        cancelled.reason = CancelReason::SelfTrade as u8;
        cancelled.order_id = U64::new(order.order_id);
        cancelled.price = I64::new(self.instruments[instrument_index].price_of(order.level_index));
        cancelled.quantity = U64::new(quantity);
        cancelled.account_id = U32::new(self.account_id_of(slot));
        cancelled.aux_a = U64::new(order.client_order_id);
        cancelled.aux_b = U64::new(order.leaves);
        sink.event(&cancelled);
        self.emit_book_reduce(sequence, slot, quantity, sink);
        self.emit_level(
            sequence,
            instrument_index,
            order.side,
            order.level_index,
            sink,
        );
    }

    // ----- book primitives -----

    /// Starts loading what removing `order` from the book will touch (its queue neighbours and
    /// its id's index cell), so that these misses overlap each other and the events. (The
    /// client order id entry is prefetched by the table, which defers the removal.)
    #[inline(always)]
    fn prefetch_leaving(&self, order: &Order) {
        for link in [order.prev, order.next] {
            if let Some(neighbour) = self.orders.get(link as usize) {
                crate::prefetch::prefetch(neighbour);
            }
        }
        crate::prefetch::prefetch(
            &self.order_index[(order.order_id & self.order_index_mask) as usize],
        );
    }

    /// Starts loading what an order resting at `level_index` will write: the pool slot it will
    /// take, that slot's account cell, and the order at the back of its level (whose link it
    /// sets). These are stores to lines that are often cold; a store miss does not stall by
    /// itself, but it holds up every later store until its line arrives, and a command writes
    /// a few dozen (its events), so it stalls the next command instead.
    #[inline(always)]
    fn prefetch_resting(&self, instrument_index: usize, side: Side, level_index: u32) {
        let free = self.order_free_head as usize;
        if let Some(order) = self.orders.get(free) {
            crate::prefetch::prefetch(order);
            crate::prefetch::prefetch(&self.order_accounts[free]);
        }
        let level = &self.levels[self.level_slot(instrument_index, side, level_index)];
        if let Some(tail) = self.orders.get(level.tail as usize) {
            crate::prefetch::prefetch(tail);
        }
    }

    #[inline(always)]
    fn level_slot(&self, instrument_index: usize, side: Side, level_index: u32) -> usize {
        (self.instruments[instrument_index].level_base[side.index()] + level_index) as usize
    }

    /// Appends an order (fields set, not linked) at the back of its level.
    #[inline(always)]
    fn level_push_back(&mut self, slot: u32) {
        let order = self.orders[slot as usize];
        let instrument_index = usize::from(order.instrument_index);
        let side = order.side.index();
        let level_slot = self.level_slot(instrument_index, order.side, order.level_index);
        let level = &mut self.levels[level_slot];
        let tail = level.tail;
        level.tail = slot;
        level.quantity += order.leaves;
        level.count += 1;
        if tail == NIL {
            level.head = slot;
            let instrument = &mut self.instruments[instrument_index];
            bitmap_set(
                &mut self.bitmap[instrument.bitmap_base[side] as usize..]
                    [..instrument.bitmap_words as usize],
                &mut self.summary[instrument.summary_base[side] as usize..]
                    [..instrument.summary_words as usize],
                order.level_index,
            );
            let best = instrument.best[side];
            let better = match order.side {
                Side::Buy => order.level_index > best,
                Side::Sell => order.level_index < best,
            };
            if best == NIL || better {
                instrument.best[side] = order.level_index;
            }
        } else {
            self.orders[tail as usize].next = slot;
        }
        let entry = &mut self.orders[slot as usize];
        entry.prev = tail;
        entry.next = NIL;
    }

    /// Unlinks an order from its level, keeping level totals, bitmap and best price right.
    #[inline(always)]
    fn level_unlink(&mut self, slot: u32) {
        let order = self.orders[slot as usize];
        let instrument_index = usize::from(order.instrument_index);
        let side = order.side.index();
        let level_slot = self.level_slot(instrument_index, order.side, order.level_index);
        if order.prev == NIL {
            self.levels[level_slot].head = order.next;
        } else {
            self.orders[order.prev as usize].next = order.next;
        }
        if order.next == NIL {
            self.levels[level_slot].tail = order.prev;
        } else {
            self.orders[order.next as usize].prev = order.prev;
        }
        let level = &mut self.levels[level_slot];
        level.quantity -= order.leaves;
        level.count -= 1;
        if level.count == 0 {
            assert!(level.quantity == 0 && level.head == NIL && level.tail == NIL);
            let instrument = &self.instruments[instrument_index];
            bitmap_clear(
                &mut self.bitmap[instrument.bitmap_base[side] as usize..]
                    [..instrument.bitmap_words as usize],
                &mut self.summary[instrument.summary_base[side] as usize..]
                    [..instrument.summary_words as usize],
                order.level_index,
            );
            if instrument.best[side] == order.level_index {
                let next = self.next_level(instrument_index, order.side, order.level_index);
                self.instruments[instrument_index].best[side] = next;
            }
        }
    }

    /// Takes a pool slot for a new order and indexes its id.
    #[inline]
    pub(crate) fn order_slot_take(&mut self, order_id: u64, account_slot: u32) -> u32 {
        assert!(order_id != 0);
        let slot = self.order_free_head;
        assert!(slot != NIL, "capacity is checked before acceptance");
        self.order_free_head = self.orders[slot as usize].next;
        let cell = &mut self.order_index[(order_id & self.order_index_mask) as usize];
        if *cell == NIL {
            *cell = slot;
        } else {
            self.order_overflow.insert(order_id, slot);
        }
        self.order_accounts[slot as usize] = account_slot;
        self.accounts[account_slot as usize].order_count += 1;
        self.orders_live += 1;
        slot
    }

    /// The slot of the resting order of an account with a client order id.
    #[inline]
    pub(crate) fn client_order_slot(&self, account_slot: u32, client_order_id: u64) -> Option<u32> {
        if client_order_id > self.accounts[account_slot as usize].client_order_id_max {
            return None;
        }
        self.client_order_ids
            .get(client_key(account_slot, client_order_id), |slot| {
                let order = &self.orders[slot as usize];
                order.account_slot == account_slot && order.client_order_id == client_order_id
            })
    }

    /// Indexes a resting order's client order id (which must not be indexed yet).
    #[inline]
    pub(crate) fn client_order_insert(
        &mut self,
        account_slot: u32,
        client_order_id: u64,
        slot: u32,
    ) {
        let account = &mut self.accounts[account_slot as usize];
        account.client_order_id_max = account.client_order_id_max.max(client_order_id);
        self.client_order_ids
            .insert(client_key(account_slot, client_order_id), slot);
    }

    /// The pool slot of a resting order.
    #[inline]
    pub(crate) fn order_slot(&self, order_id: u64) -> Option<u32> {
        let cell = self.order_index[(order_id & self.order_index_mask) as usize];
        if cell != NIL && self.orders[cell as usize].order_id == order_id && order_id != 0 {
            return Some(cell);
        }
        if self.order_overflow.len() == 0 {
            return None;
        }
        self.order_overflow.get(order_id)
    }

    /// The resting orders of an account in ascending order id, in the scratch vector (taken out
    /// of `self`; the caller puts it back). O(pool slots): mass cancel and kill switch only.
    fn account_orders(&mut self, account_slot: u32) -> Vec<(u64, u32)> {
        let mut orders = core::mem::take(&mut self.scratch);
        orders.clear();
        let count = self.accounts[account_slot as usize].order_count as usize;
        assert!(count <= orders.capacity());
        if count > 0 {
            for (slot, owner) in self.order_accounts.iter().enumerate() {
                let order = &self.orders[slot];
                if *owner == account_slot
                    && order.order_id != 0
                    && order.account_slot == account_slot
                {
                    orders.push((order.order_id, slot as u32));
                    if orders.len() == count {
                        break;
                    }
                }
            }
        }
        assert_eq!(orders.len(), count, "account order count");
        orders.sort_unstable();
        orders
    }

    /// Frees an order that is no longer in a level: tables, hash, pool.
    /// `hashed` says whether its hash contribution is still counted.
    fn release(&mut self, slot: u32, hashed: bool) {
        if hashed {
            self.hash_remove(slot);
        }
        let order = &self.orders[slot as usize];
        let (order_id, account_slot, client_order_id) =
            (order.order_id, order.account_slot, order.client_order_id);
        self.accounts[account_slot as usize].order_count -= 1;
        let cell = &mut self.order_index[(order_id & self.order_index_mask) as usize];
        if *cell == slot {
            *cell = NIL;
        } else {
            self.order_overflow.remove(order_id);
        }
        self.client_order_ids
            .remove(client_key(account_slot, client_order_id), slot);
        let entry = &mut self.orders[slot as usize];
        *entry = Order::FREE;
        entry.next = self.order_free_head;
        self.order_free_head = slot;
        self.orders_live -= 1;
    }

    fn register_account(&mut self, account_id: u32) -> u32 {
        let slot = self.account_ids.len();
        assert!(
            (slot as usize) < self.accounts.len(),
            "caller checks capacity"
        );
        self.account_ids.insert(account_id, slot);
        let account = &mut self.accounts[slot as usize];
        *account = Account {
            account_id,
            killed: false,
            order_count: 0,
            client_order_id_max: 0,
        };
        self.hash_accounts = self.hash_accounts.wrapping_add(account_hash(account));
        slot
    }

    /// The account id of the order in `slot`.
    #[inline]
    fn account_id_of(&self, slot: u32) -> u32 {
        self.accounts[self.orders[slot as usize].account_slot as usize].account_id
    }

    /// The hash of everything about an order but its open quantity.
    #[inline(always)]
    fn order_hash_static(&self, slot: u32) -> u64 {
        let order = &self.orders[slot as usize];
        let instrument = &self.instruments[usize::from(order.instrument_index)];
        let account_id = self.accounts[order.account_slot as usize].account_id;
        hash::mix_parallel(&[
            order.order_id,
            order.client_order_id,
            instrument.price_of(order.level_index) as u64,
            order.quantity,
            order.priority_sequence,
            u64::from(account_id) | u64::from(instrument.config.instrument_id) << 32,
            order.flags_word(),
        ])
    }

    /// The order's contribution to `hash_orders`.
    #[inline(always)]
    fn order_hash(&self, slot: u32) -> u64 {
        hash::mix2(
            self.order_hash_static(slot),
            self.orders[slot as usize].leaves,
        )
    }

    #[inline]
    fn hash_add(&mut self, slot: u32) {
        self.hash_orders = self.hash_orders.wrapping_add(self.order_hash(slot));
    }

    #[inline]
    fn hash_remove(&mut self, slot: u32) {
        self.hash_orders = self.hash_orders.wrapping_sub(self.order_hash(slot));
    }

    /// Snapshot restore: put a pooled order into its level at the back of the queue.
    pub(crate) fn restore_link(&mut self, slot: u32) {
        self.hash_add(slot);
        self.level_push_back(slot);
    }

    // ----- book events -----

    #[inline(always)]
    fn emit_book_add<S: EventSink + ?Sized>(&self, sequence: u64, slot: u32, sink: &mut S) {
        let order = &self.orders[slot as usize];
        let instrument_index = usize::from(order.instrument_index);
        let mut event = book_event(
            EventKind::BookAdd,
            sequence,
            &self.instruments[instrument_index],
            order,
        );
        event.quantity = U64::new(order.leaves);
        sink.event(&event);
        self.emit_level(
            sequence,
            instrument_index,
            order.side,
            order.level_index,
            sink,
        );
    }

    fn emit_book_reduce<S: EventSink + ?Sized>(
        &self,
        sequence: u64,
        slot: u32,
        quantity: u64,
        sink: &mut S,
    ) {
        let order = &self.orders[slot as usize];
        let instrument = &self.instruments[usize::from(order.instrument_index)];
        let mut event = book_event(EventKind::BookReduce, sequence, instrument, order);
        event.quantity = U64::new(quantity);
        event.aux_b = U64::new(order.leaves);
        sink.event(&event);
    }

    #[inline(always)]
    fn emit_book_delete<S: EventSink + ?Sized>(&self, sequence: u64, slot: u32, sink: &mut S) {
        let order = &self.orders[slot as usize];
        let instrument = &self.instruments[usize::from(order.instrument_index)];
        let mut event = book_event(EventKind::BookDelete, sequence, instrument, order);
        event.quantity = U64::new(order.leaves);
        sink.event(&event);
    }

    #[inline(always)]
    fn emit_level<S: EventSink + ?Sized>(
        &self,
        sequence: u64,
        instrument_index: usize,
        side: Side,
        level_index: u32,
        sink: &mut S,
    ) {
        let instrument = &self.instruments[instrument_index];
        let level = &self.levels[self.level_slot(instrument_index, side, level_index)];
        let mut event = Event::new(
            EventKind::LevelUpdate,
            sequence,
            instrument.config.instrument_id,
        );
        event.side = side as u8;
        event.price = I64::new(instrument.price_of(level_index));
        event.quantity = U64::new(level.quantity);
        event.aux_a = U64::new(u64::from(level.count));
        sink.event(&event);
    }

    fn emit_instrument_status<S: EventSink + ?Sized>(
        &self,
        sequence: u64,
        index: usize,
        sink: &mut S,
    ) {
        let instrument = &self.instruments[index];
        let mut event = Event::new(
            EventKind::InstrumentStatus,
            sequence,
            instrument.config.instrument_id,
        );
        event.reason = if instrument.halted {
            STATUS_HALTED
        } else {
            STATUS_TRADING
        };
        event.price = I64::new(instrument.reference_price);
        sink.event(&event);
    }

    // ----- queries -----

    /// A resting order by exchange order id.
    pub fn order(&self, order_id: u64) -> Option<OrderView> {
        let slot = self.order_slot(order_id)?;
        Some(self.order_view(slot))
    }

    pub(crate) fn order_view(&self, slot: u32) -> OrderView {
        let order = &self.orders[slot as usize];
        let instrument = &self.instruments[usize::from(order.instrument_index)];
        OrderView {
            order_id: order.order_id,
            client_order_id: order.client_order_id,
            account_id: self.account_id_of(slot),
            instrument_id: instrument.config.instrument_id,
            side: order.side,
            price: instrument.price_of(order.level_index),
            quantity: order.quantity,
            leaves: order.leaves,
            time_in_force: order.time_in_force,
            stp_mode: order.stp_mode,
            post_only: order.post_only,
            priority_sequence: order.priority_sequence,
        }
    }

    /// An instrument's state.
    pub fn instrument(&self, instrument_id: u32) -> Option<InstrumentView> {
        let instrument = &self.instruments[self.instrument_index(instrument_id)?];
        Some(InstrumentView {
            config: instrument.config,
            halted: instrument.halted,
            reference_price: instrument.reference_price,
        })
    }

    /// Whether the account's kill switch is on.
    pub fn account_killed(&self, account_id: u32) -> bool {
        self.account_ids
            .get(account_id)
            .is_some_and(|slot| self.accounts[slot as usize].killed)
    }

    /// The best level of a side.
    pub fn best(&self, instrument_id: u32, side: Side) -> Option<LevelView> {
        let index = self.instrument_index(instrument_id)?;
        let best = self.instruments[index].best[side.index()];
        if best == NIL {
            return None;
        }
        let level = &self.levels[self.level_slot(index, side, best)];
        Some(LevelView {
            price: self.instruments[index].price_of(best),
            quantity: level.quantity,
            order_count: level.count,
        })
    }

    /// Calls `visit` for every resting order of one side in priority order (best price first,
    /// then time). Returns false if the instrument does not exist.
    pub fn for_each_order(
        &self,
        instrument_id: u32,
        side: Side,
        mut visit: impl FnMut(&OrderView),
    ) -> bool {
        let Some(index) = self.instrument_index(instrument_id) else {
            return false;
        };
        let mut level_index = self.instruments[index].best[side.index()];
        while level_index != NIL {
            let mut slot = self.levels[self.level_slot(index, side, level_index)].head;
            while slot != NIL {
                visit(&self.order_view(slot));
                slot = self.orders[slot as usize].next;
            }
            level_index = self.next_level(index, side, level_index);
        }
        true
    }

    /// Calls `visit` for every non-empty level of one side, best first.
    pub fn for_each_level(
        &self,
        instrument_id: u32,
        side: Side,
        mut visit: impl FnMut(&LevelView),
    ) -> bool {
        let Some(index) = self.instrument_index(instrument_id) else {
            return false;
        };
        let mut level_index = self.instruments[index].best[side.index()];
        while level_index != NIL {
            let level = &self.levels[self.level_slot(index, side, level_index)];
            visit(&LevelView {
                price: self.instruments[index].price_of(level_index),
                quantity: level.quantity,
                order_count: level.count,
            });
            level_index = self.next_level(index, side, level_index);
        }
        true
    }

    /// 64-bit hash of the whole logical state, in O(1): kept incrementally as a wrapping sum of
    /// per-order, per-account and per-instrument hashes, folded with the counters. Two matchers
    /// have equal hashes if they have equal logical state (see `docs/MATCHER.md`).
    pub fn state_hash(&self) -> u64 {
        fold_state_hash(
            self.sequence_last,
            self.timestamp_ns_last,
            self.trade_id_next,
            self.hash_orders,
            self.hash_accounts,
            self.hash_instruments,
        )
    }

    /// Recomputes [`Matcher::state_hash`] from scratch (O(state)); equal to it unless the
    /// incremental bookkeeping is broken. Also checks the book's structural invariants.
    pub fn state_hash_recomputed(&self) -> u64 {
        let mut orders = 0u64;
        let mut live = 0u32;
        let mut account_orders = vec![0u32; self.accounts.len()];
        for (slot, order) in self
            .orders
            .iter()
            .enumerate()
            .filter(|(_, order)| order.order_id != 0)
        {
            assert_eq!(self.order_slot(order.order_id), Some(slot as u32));
            assert_eq!(self.order_accounts[slot], order.account_slot);
            account_orders[order.account_slot as usize] += 1;
            orders = orders.wrapping_add(self.order_hash(slot as u32));
            live += 1;
        }
        assert_eq!(live, self.orders_live);
        assert!(self.order_overflow.len() <= live);
        for (account, count) in self.accounts.iter().zip(account_orders) {
            assert_eq!(account.order_count, count, "account order count");
        }
        let mut accounts = 0u64;
        for account in &self.accounts[..self.account_ids.len() as usize] {
            accounts = accounts.wrapping_add(account_hash(account));
        }
        let mut instruments = 0u64;
        for instrument in self
            .instruments
            .iter()
            .filter(|instrument| instrument.active)
        {
            instruments = instruments.wrapping_add(instrument_hash(instrument));
            for side in [Side::Buy, Side::Sell] {
                let mut price_previous = None;
                self.for_each_level(instrument.config.instrument_id, side, |level| {
                    assert!(level.quantity > 0 && level.order_count > 0);
                    if let Some(previous) = price_previous {
                        assert!(match side {
                            Side::Buy => level.price < previous,
                            Side::Sell => level.price > previous,
                        });
                    }
                    price_previous = Some(level.price);
                });
            }
            if let (Some(bid), Some(ask)) = (
                self.best(instrument.config.instrument_id, Side::Buy),
                self.best(instrument.config.instrument_id, Side::Sell),
            ) {
                assert!(bid.price < ask.price, "crossed book");
            }
        }
        fold_state_hash(
            self.sequence_last,
            self.timestamp_ns_last,
            self.trade_id_next,
            orders,
            accounts,
            instruments,
        )
    }
}

pub(crate) fn fold_state_hash(
    sequence_last: u64,
    timestamp_ns_last: u64,
    trade_id_next: u64,
    orders: u64,
    accounts: u64,
    instruments: u64,
) -> u64 {
    hash::mix_words(&[
        sequence_last,
        timestamp_ns_last,
        trade_id_next,
        orders,
        accounts,
        instruments,
    ])
}

/// Whether an order on `side` limited at `limit_index` can trade with the level `level_index`.
#[inline(always)]
fn crosses(side: Side, level_index: u32, limit_index: u32) -> bool {
    match side {
        Side::Buy => level_index <= limit_index,
        Side::Sell => level_index >= limit_index,
    }
}

fn rejected(sequence: u64, record: &CommandRecord, reason: RejectReason) -> Event {
    let mut event = Event::new(EventKind::Rejected, sequence, record.instrument_id.get());
    event.reason = reason as u8;
    event.aux_b = U64::new(u64::from(record.kind));
    if record.kind != CommandKind::AddInstrument as u8 {
        event.side = record.side;
        event.order_id = record.order_id;
        event.price = record.price;
        event.quantity = record.quantity;
        event.account_id = record.account_id;
        event.aux_a = record.client_order_id;
    }
    event
}

fn book_event(kind: EventKind, sequence: u64, instrument: &Instrument, order: &Order) -> Event {
    let mut event = Event::new(kind, sequence, instrument.config.instrument_id);
    event.side = order.side as u8;
    event.order_id = U64::new(order.order_id);
    event.price = I64::new(instrument.price_of(order.level_index));
    event
}

fn emit_taker_cancelled<S: EventSink + ?Sized>(
    sequence: u64,
    instrument_id: u32,
    taker: &Taker,
    quantity: u64,
    left: u64,
    sink: &mut S,
) {
    let mut cancelled = Event::new(EventKind::Cancelled, sequence, instrument_id);
    cancelled.side = taker.side as u8;
    cancelled.reason = CancelReason::SelfTrade as u8;
    cancelled.order_id = U64::new(taker.order_id);
    cancelled.price = I64::new(taker.price);
    cancelled.quantity = U64::new(quantity);
    cancelled.account_id = U32::new(taker.account_id);
    cancelled.aux_a = U64::new(taker.client_order_id);
    cancelled.aux_b = U64::new(left);
    sink.event(&cancelled);
}

// ----- two-level bitmap of non-empty levels -----

#[inline]
fn bitmap_set(words: &mut [u64], summary: &mut [u64], index: u32) {
    let word = (index / BITS_PER_WORD) as usize;
    words[word] |= 1 << (index % BITS_PER_WORD);
    summary[word / 64] |= 1 << (word % 64);
}

#[inline]
fn bitmap_clear(words: &mut [u64], summary: &mut [u64], index: u32) {
    let word = (index / BITS_PER_WORD) as usize;
    words[word] &= !(1 << (index % BITS_PER_WORD));
    if words[word] == 0 {
        summary[word / 64] &= !(1 << (word % 64));
    }
}

/// Lowest set index `>= index`, or NIL.
#[inline]
pub(crate) fn bitmap_find_at_or_above(words: &[u64], summary: &[u64], index: u32) -> u32 {
    let word = (index / BITS_PER_WORD) as usize;
    if word >= words.len() {
        return NIL;
    }
    let masked = words[word] & (u64::MAX << (index % BITS_PER_WORD));
    if masked != 0 {
        return (word as u32) * BITS_PER_WORD + masked.trailing_zeros();
    }
    let start = word + 1;
    let mut summary_word = start / 64;
    if summary_word >= summary.len() {
        return NIL;
    }
    let mut bits = summary[summary_word] & (u64::MAX.checked_shl((start % 64) as u32).unwrap_or(0));
    loop {
        if bits != 0 {
            let found = summary_word * 64 + bits.trailing_zeros() as usize;
            return (found as u32) * BITS_PER_WORD + words[found].trailing_zeros();
        }
        summary_word += 1;
        if summary_word >= summary.len() {
            return NIL;
        }
        bits = summary[summary_word];
    }
}

/// Highest set index `<= index`, or NIL.
#[inline]
pub(crate) fn bitmap_find_at_or_below(words: &[u64], summary: &[u64], index: u32) -> u32 {
    let word = (index / BITS_PER_WORD) as usize;
    let bit = index % BITS_PER_WORD;
    let mask = if bit == 63 {
        u64::MAX
    } else {
        (1u64 << (bit + 1)) - 1
    };
    let masked = words[word] & mask;
    if masked != 0 {
        return (word as u32) * BITS_PER_WORD + 63 - masked.leading_zeros();
    }
    if word == 0 {
        return NIL;
    }
    let start = word - 1;
    let mut summary_word = start / 64;
    let bit = start % 64;
    let mut bits = summary[summary_word]
        & if bit == 63 {
            u64::MAX
        } else {
            (1u64 << (bit + 1)) - 1
        };
    loop {
        if bits != 0 {
            let found = summary_word * 64 + 63 - bits.leading_zeros() as usize;
            return (found as u32) * BITS_PER_WORD + 63 - words[found].leading_zeros();
        }
        if summary_word == 0 {
            return NIL;
        }
        summary_word -= 1;
        bits = summary[summary_word];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_hints_accept_any_record() {
        let mut matcher = Matcher::new(Config {
            order_capacity: 64,
            level_capacity: 256,
            instrument_capacity: 2,
            account_capacity: 8,
        })
        .expect("config");
        let mut events: Vec<Event> = Vec::new();
        let instrument = InstrumentConfig {
            instrument_id: 1,
            symbol: *b"HINT\0\0\0\0",
            price_exponent: 0,
            quantity_exponent: 0,
            tick_size: 3,
            lot_size: 1,
            price_min: -30,
            price_levels: 100,
            band_width_ticks: 0,
            reference_price: 0,
            quantity_min_lots: 1,
            quantity_max_lots: 100,
            notional_max: 0,
        };
        matcher.apply(
            1,
            0,
            &Command::AddInstrument(instrument).encode(),
            &mut events,
        );
        let extremes = [
            0,
            1,
            2,
            3,
            u64::MAX,
            i64::MIN as u64,
            i64::MAX as u64,
            31,
            268,
        ];
        let mut state = 5u64;
        for step in 0..20_000u64 {
            state = hash::mix2(state, step);
            let mut bytes = [0u8; 64];
            for (index, chunk) in bytes.chunks_exact_mut(8).enumerate() {
                let word = hash::mix2(state, index as u64);
                let value = if word.is_multiple_of(3) {
                    extremes[(word >> 8) as usize % extremes.len()]
                } else {
                    word
                };
                chunk.copy_from_slice(&value.to_le_bytes());
            }
            bytes[0] = (state % 4) as u8;
            bytes[1] = (state >> 8) as u8 % 4;
            bytes[2] = (state >> 16) as u8 % 3;
            let record = CommandRecord::read_from_bytes(&bytes).expect("64 bytes");
            matcher.prefetch_early(&record);
            matcher.prefetch(&record);
            if step % 7 == 0 {
                // Some resting orders, so that the hints find levels and orders.
                let order = NewOrder {
                    instrument_id: 1,
                    account_id: 1 + (step % 5) as u32,
                    client_order_id: step,
                    side: if step % 2 == 0 { Side::Buy } else { Side::Sell },
                    order_type: OrderType::Limit,
                    time_in_force: TimeInForce::Gtc,
                    stp_mode: StpMode::None,
                    post_only: false,
                    price: -30 + 3 * (step % 100) as i64,
                    quantity: 1,
                };
                events.clear();
                let sequence = matcher.sequence_last() + 1;
                matcher.apply(sequence, 0, &Command::NewOrder(order).encode(), &mut events);
            }
        }
    }

    #[test]
    fn bitmap_search_matches_linear_scan() {
        let levels = 70_000u32;
        let words_len = levels.div_ceil(64) as usize;
        let mut words = vec![0u64; words_len];
        let mut summary = vec![0u64; words_len.div_ceil(64)];
        let mut set = vec![false; levels as usize];
        let mut state = 99u64;
        for step in 0..20_000u64 {
            state = hash::mix2(state, step);
            let index = (state % u64::from(levels)) as u32;
            if state & (1 << 40) != 0 {
                bitmap_set(&mut words, &mut summary, index);
                set[index as usize] = true;
            } else {
                bitmap_clear(&mut words, &mut summary, index);
                set[index as usize] = false;
            }
            let probe = ((state >> 20) % u64::from(levels)) as u32;
            let above = (probe..levels).find(|i| set[*i as usize]).unwrap_or(NIL);
            let below = (0..=probe).rev().find(|i| set[*i as usize]).unwrap_or(NIL);
            assert_eq!(bitmap_find_at_or_above(&words, &summary, probe), above);
            assert_eq!(bitmap_find_at_or_below(&words, &summary, probe), below);
        }
    }
}
