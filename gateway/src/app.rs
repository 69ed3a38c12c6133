//! Application messages: FIX orders mapped onto matcher commands, matcher events mapped onto
//! ExecutionReports. This module holds the tables (instruments, per-session orders) and the
//! pure translation functions; [`crate::gateway::Gateway`] drives them.

use crate::codec::{parse_decimal, FieldError, Message, Writer};
use crate::session::{FixVersion, TextBuffer};
use crate::tags;
use matcher::decimal::DecimalError;
use matcher::{OrderType, Side, StpMode, TimeInForce};
use std::collections::{HashMap, HashSet, VecDeque};

/// Longest ClOrdID (11) accepted.
pub const CL_ORD_ID_LENGTH_MAX: usize = 40;
/// Longest symbol (the matcher's symbol field is 8 bytes).
pub const SYMBOL_LENGTH_MAX: usize = 8;
/// Most instruments a gateway knows.
pub const INSTRUMENTS_MAX: usize = matcher::INSTRUMENT_CAPACITY_MAX as usize;
/// Cancel, replace and mass-cancel requests a session may have in flight.
pub const PENDING_PER_SESSION_MAX: usize = 1024;
/// Digits of AvgPx beyond the instrument's price unit (the quotient is truncated there).
pub const AVG_PX_EXTRA_DIGITS: i8 = 6;

/// One tradable instrument as the gateway sees it (must agree with the matcher's AddInstrument).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instrument {
    /// FIX Symbol (55), 1..=8 printable ASCII bytes.
    pub symbol: String,
    /// Matcher instrument id.
    pub instrument_id: u32,
    /// Price unit is `10^price_exponent`.
    pub price_exponent: i8,
    /// Quantity unit is `10^quantity_exponent`.
    pub quantity_exponent: i8,
    /// Tick size in price units (≥ 1).
    pub tick_size: u32,
    /// Lot size in quantity units (≥ 1).
    pub lot_size: u32,
}

impl Instrument {
    /// The gateway's view of a matcher instrument configuration.
    pub fn from_matcher(config: &matcher::InstrumentConfig) -> Instrument {
        let length = config
            .symbol
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(SYMBOL_LENGTH_MAX);
        Instrument {
            symbol: String::from_utf8_lossy(&config.symbol[..length]).into_owned(),
            instrument_id: config.instrument_id,
            price_exponent: config.price_exponent,
            quantity_exponent: config.quantity_exponent,
            tick_size: config.tick_size,
            lot_size: config.lot_size,
        }
    }

    fn valid(&self) -> bool {
        let exponents = -matcher::EXPONENT_ABS_MAX..=matcher::EXPONENT_ABS_MAX;
        !self.symbol.is_empty()
            && self.symbol.len() <= SYMBOL_LENGTH_MAX
            && self.symbol.bytes().all(|b| (0x21..0x7f).contains(&b))
            && self.instrument_id != 0
            && exponents.contains(&self.price_exponent)
            && exponents.contains(&self.quantity_exponent)
            && self.tick_size >= 1
            && self.lot_size >= 1
    }
}

/// A symbol (1..=8 bytes) packed into a `u64`, first byte highest, zero-padded; the length is
/// part of the key's meaning because configured symbols hold no zero byte (see
/// [`InstrumentTable::by_symbol`]).
#[inline]
fn symbol_key(symbol: &[u8]) -> Option<u64> {
    let mut padded = [0u8; SYMBOL_LENGTH_MAX];
    padded.get_mut(..symbol.len())?.copy_from_slice(symbol);
    Some(u64::from_be_bytes(padded))
}

/// Symbol → instrument and instrument id → instrument, built once.
#[derive(Clone, Debug, Default)]
pub struct InstrumentTable {
    instruments: Vec<Instrument>,
    /// (packed symbol, index), sorted by key: a binary search, no hashing.
    by_symbol: Vec<(u64, u16)>,
    by_id: HashMap<u32, u16>,
}

impl InstrumentTable {
    /// Builds the table; `Err(index)` names an invalid or duplicate instrument.
    pub fn new(instruments: Vec<Instrument>) -> Result<InstrumentTable, usize> {
        if instruments.len() > INSTRUMENTS_MAX {
            return Err(INSTRUMENTS_MAX);
        }
        let mut table = InstrumentTable {
            by_symbol: Vec::with_capacity(instruments.len()),
            by_id: HashMap::with_capacity(instruments.len()),
            instruments: Vec::new(),
        };
        let mut symbols = HashSet::with_capacity(instruments.len());
        for (index, instrument) in instruments.iter().enumerate() {
            let fresh_symbol = symbols.insert(instrument.symbol.as_bytes());
            if let Some(key) = symbol_key(instrument.symbol.as_bytes()) {
                table.by_symbol.push((key, index as u16));
            }
            let fresh_id = table
                .by_id
                .insert(instrument.instrument_id, index as u16)
                .is_none();
            if !instrument.valid() || !fresh_symbol || !fresh_id {
                return Err(index);
            }
        }
        // Valid symbols are distinct and hold no zero byte, so their keys are distinct.
        table.by_symbol.sort_unstable();
        table.instruments = instruments;
        Ok(table)
    }

    /// Index of the instrument with this symbol.
    #[inline]
    pub fn by_symbol(&self, symbol: &[u8]) -> Option<u16> {
        // Configured symbols are 1..=8 bytes without a zero byte, so two byte strings of at most
        // 8 bytes with the same key are the same symbol unless one has a zero byte (e.g. "AB"
        // and "AB\0"): a symbol with a zero byte is no configured one.
        if symbol.contains(&0) {
            return None;
        }
        let key = symbol_key(symbol)?;
        let at = self
            .by_symbol
            .binary_search_by_key(&key, |&(k, _)| k)
            .ok()?;
        Some(self.by_symbol[at].1)
    }

    /// Index of the instrument with this matcher id.
    pub fn by_id(&self, instrument_id: u32) -> Option<u16> {
        self.by_id.get(&instrument_id).copied()
    }

    /// The instrument at `index`.
    pub fn get(&self, index: u16) -> &Instrument {
        &self.instruments[usize::from(index)]
    }
}

/// A ClOrdID held inline (no heap).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClOrdId {
    length: u8,
    bytes: [u8; CL_ORD_ID_LENGTH_MAX],
}

impl core::fmt::Debug for ClOrdId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl ClOrdId {
    /// From a field value; `None` if longer than [`CL_ORD_ID_LENGTH_MAX`] or empty.
    pub fn new(value: &[u8]) -> Option<ClOrdId> {
        if value.is_empty() || value.len() > CL_ORD_ID_LENGTH_MAX {
            return None;
        }
        let mut bytes = [0u8; CL_ORD_ID_LENGTH_MAX];
        bytes[..value.len()].copy_from_slice(value);
        Some(ClOrdId {
            length: value.len() as u8,
            bytes,
        })
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.length)]
    }
}

/// Life cycle of an order as the gateway tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderState {
    /// Submitted, not yet committed.
    PendingNew,
    /// Accepted by the matcher, open quantity may remain.
    Open,
}

/// A session's order, from submission until it is done (then it is forgotten; its ClOrdID stays
/// in the uniqueness window).
#[derive(Clone, Copy, Debug)]
pub struct Order {
    /// Current ClOrdID (changes on replace).
    pub cl_ord_id: ClOrdId,
    /// Matcher client order id (the submission's client sequence).
    pub client_order_id: u64,
    /// Exchange order id (0 until accepted).
    pub order_id: u64,
    /// Index into the instrument table.
    pub instrument: u16,
    /// Side.
    pub side: Side,
    /// Order type.
    pub order_type: OrderType,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Limit price in price units (0 for market).
    pub price: i64,
    /// Total quantity (OrderQty).
    pub quantity: u64,
    /// Filled so far.
    pub cum_quantity: u64,
    /// Open quantity.
    pub leaves_quantity: u64,
    /// Σ price × quantity over fills, in price units × quantity units.
    pub notional: i128,
    /// State.
    pub state: OrderState,
    /// A cancel or replace for it is in flight.
    pub change_pending: bool,
}

impl Order {
    /// A new order as submitted (client order id = the submission's client sequence), waiting
    /// for the matcher's acceptance.
    pub fn pending_new(
        cl_ord_id: ClOrdId,
        client_order_id: u64,
        instrument: u16,
        order: &matcher::NewOrder,
    ) -> Order {
        Order {
            cl_ord_id,
            client_order_id,
            order_id: 0,
            instrument,
            side: order.side,
            order_type: order.order_type,
            time_in_force: order.time_in_force,
            price: order.price,
            quantity: order.quantity,
            cum_quantity: 0,
            leaves_quantity: order.quantity,
            notional: 0,
            state: OrderState::PendingNew,
            change_pending: false,
        }
    }

    /// OrdStatus (39) while the order lives: New, Partially filled or Filled.
    pub fn live_status(&self) -> u8 {
        if self.cum_quantity == 0 {
            b'0'
        } else if self.leaves_quantity > 0 {
            b'1'
        } else {
            b'2'
        }
    }

    /// AvgPx as (value, exponent): Σ px × qty / CumQty truncated at [`AVG_PX_EXTRA_DIGITS`]
    /// below the price unit; 0 before any fill.
    pub fn avg_px(&self, price_exponent: i8) -> (i128, i8) {
        if self.cum_quantity == 0 {
            return (0, 0);
        }
        let extra = AVG_PX_EXTRA_DIGITS.min(price_exponent + 2 * matcher::EXPONENT_ABS_MAX);
        let scale = 10i128.pow(u32::from(extra.max(0).unsigned_abs()));
        // |notional| < 2^63 * 2^64 and the scale is at most 10^6 < 2^20: fits 2^127.
        let scaled = self.notional.saturating_mul(scale);
        (
            scaled / i128::from(self.cum_quantity),
            price_exponent - extra.max(0),
        )
    }
}

/// A cancel, replace or mass cancel in flight, matched when its command commits.
#[derive(Clone, Copy, Debug)]
pub enum Pending {
    /// OrderCancelRequest for `order_id`.
    Cancel {
        /// The request's ClOrdID.
        cl_ord_id: ClOrdId,
        /// Exchange order id.
        order_id: u64,
    },
    /// OrderCancelReplaceRequest.
    Replace {
        /// The request's (new) ClOrdID.
        cl_ord_id: ClOrdId,
        /// Exchange order id.
        order_id: u64,
        /// New matcher client order id (the submission's client sequence).
        client_order_id: u64,
    },
    /// OrderMassCancelRequest.
    MassCancel {
        /// The request's ClOrdID.
        cl_ord_id: ClOrdId,
        /// MassCancelRequestType (530).
        request_type: u8,
    },
}

/// The orders and in-flight requests of one session, bounded.
pub struct SessionOrders {
    slots: Vec<Order>,
    free: Vec<u32>,
    live: HashMap<ClOrdId, u32>,
    by_order_id: HashMap<u64, u32>,
    by_client_order_id: HashMap<u64, u32>,
    used: HashSet<ClOrdId>,
    used_order: VecDeque<ClOrdId>,
    used_max: usize,
    pending: VecDeque<Pending>,
}

impl SessionOrders {
    /// Tables for `orders_max` live orders and a ClOrdID uniqueness window of `cl_ord_ids_max`.
    pub fn new(orders_max: usize, cl_ord_ids_max: usize) -> SessionOrders {
        assert!(orders_max > 0 && cl_ord_ids_max >= orders_max);
        SessionOrders {
            slots: Vec::with_capacity(orders_max),
            free: Vec::with_capacity(orders_max),
            live: HashMap::with_capacity(orders_max),
            by_order_id: HashMap::with_capacity(orders_max),
            by_client_order_id: HashMap::with_capacity(orders_max),
            used: HashSet::with_capacity(cl_ord_ids_max),
            used_order: VecDeque::with_capacity(cl_ord_ids_max),
            used_max: cl_ord_ids_max,
            pending: VecDeque::with_capacity(PENDING_PER_SESSION_MAX),
        }
    }

    /// Whether this ClOrdID was used by the session (within the window).
    pub fn cl_ord_id_used(&self, cl_ord_id: &ClOrdId) -> bool {
        self.used.contains(cl_ord_id)
    }

    /// Whether this ClOrdID is taken: used within the window, or a live order's.
    pub fn cl_ord_id_taken(&self, cl_ord_id: &ClOrdId) -> bool {
        self.cl_ord_id_used(cl_ord_id) || self.by_cl_ord_id(cl_ord_id).is_some()
    }

    /// Records a ClOrdID as used, forgetting the oldest beyond the window (never a live one:
    /// those are also in the live table, which the duplicate check consults). One already
    /// recorded stays where it is and forgets nothing.
    pub fn use_cl_ord_id(&mut self, cl_ord_id: ClOrdId) {
        if self.used.contains(&cl_ord_id) {
            return;
        }
        if self.used_order.len() == self.used_max {
            if let Some(oldest) = self.used_order.pop_front() {
                self.used.remove(&oldest);
            }
        }
        self.used.insert(cl_ord_id);
        self.used_order.push_back(cl_ord_id);
    }

    /// Whether another order fits.
    pub fn has_room(&self) -> bool {
        !self.free.is_empty() || self.slots.len() < self.slots.capacity()
    }

    /// Adds a pending new order; `None` if full.
    pub fn insert(&mut self, order: Order) -> Option<u32> {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = order;
                slot
            }
            None if self.slots.len() < self.slots.capacity() => {
                self.slots.push(order);
                (self.slots.len() - 1) as u32
            }
            None => return None,
        };
        self.live.insert(order.cl_ord_id, slot);
        self.by_client_order_id.insert(order.client_order_id, slot);
        Some(slot)
    }

    /// The order in `slot`.
    pub fn get(&self, slot: u32) -> &Order {
        &self.slots[slot as usize]
    }

    /// The order in `slot`, mutably.
    pub fn get_mut(&mut self, slot: u32) -> &mut Order {
        &mut self.slots[slot as usize]
    }

    /// Slot of the live order with this ClOrdID.
    pub fn by_cl_ord_id(&self, cl_ord_id: &ClOrdId) -> Option<u32> {
        self.live.get(cl_ord_id).copied()
    }

    /// Slot of the order with this exchange order id.
    pub fn by_order_id(&self, order_id: u64) -> Option<u32> {
        self.by_order_id.get(&order_id).copied()
    }

    /// Slot of the order with this matcher client order id.
    pub fn by_client_order_id(&self, client_order_id: u64) -> Option<u32> {
        self.by_client_order_id.get(&client_order_id).copied()
    }

    /// The order was accepted with this exchange order id.
    pub fn accepted(&mut self, slot: u32, order_id: u64) {
        let order = &mut self.slots[slot as usize];
        order.order_id = order_id;
        order.state = OrderState::Open;
        self.by_order_id.insert(order_id, slot);
    }

    /// The order changed ClOrdID and client order id (replace).
    pub fn renamed(&mut self, slot: u32, cl_ord_id: ClOrdId, client_order_id: u64) {
        let order = self.slots[slot as usize];
        self.live.remove(&order.cl_ord_id);
        self.by_client_order_id.remove(&order.client_order_id);
        self.live.insert(cl_ord_id, slot);
        self.by_client_order_id.insert(client_order_id, slot);
        let order = &mut self.slots[slot as usize];
        order.cl_ord_id = cl_ord_id;
        order.client_order_id = client_order_id;
    }

    /// The order is done: forget it.
    pub fn remove(&mut self, slot: u32) {
        let order = self.slots[slot as usize];
        if self.live.get(&order.cl_ord_id) == Some(&slot) {
            self.live.remove(&order.cl_ord_id);
        }
        self.by_client_order_id.remove(&order.client_order_id);
        if order.order_id != 0 {
            self.by_order_id.remove(&order.order_id);
        }
        self.free.push(slot);
    }

    /// Queues an in-flight request; `false` if [`PENDING_PER_SESSION_MAX`] are in flight.
    pub fn push_pending(&mut self, pending: Pending) -> bool {
        if self.pending.len() == PENDING_PER_SESSION_MAX {
            return false;
        }
        self.pending.push_back(pending);
        true
    }

    /// Removes and returns the first in-flight request `matches` accepts.
    pub fn take_pending(&mut self, matches: impl Fn(&Pending) -> bool) -> Option<Pending> {
        let index = self.pending.iter().position(matches)?;
        self.pending.remove(index)
    }

    /// Live orders.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }
}

/// A NewOrderSingle that passed the session's checks, in matcher units.
#[derive(Clone, Copy, Debug)]
pub struct NewOrderIntent {
    /// ClOrdID.
    pub cl_ord_id: ClOrdId,
    /// Instrument index.
    pub instrument: u16,
    /// Side.
    pub side: Side,
    /// Order type.
    pub order_type: OrderType,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// STP mode.
    pub stp_mode: StpMode,
    /// Post-only (ExecInst 6).
    pub post_only: bool,
    /// Price in price units (0 for market).
    pub price: i64,
    /// Quantity in quantity units.
    pub quantity: u64,
}

/// Why an application message is refused before it reaches the matcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppReject {
    /// A session-level problem with a field: Reject (3) with this reason.
    Field(FieldError),
    /// A business problem: ExecutionReport Rejected / OrderCancelReject with this reason.
    Business(BusinessReason),
}

impl From<FieldError> for AppReject {
    fn from(error: FieldError) -> AppReject {
        AppReject::Field(error)
    }
}

/// Business reasons for refusing an order or a cancel/replace (mapped per FIX version onto
/// OrdRejReason (103) or CxlRejReason (102); see `docs/GATEWAY.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusinessReason {
    /// Symbol not in the instrument table.
    UnknownSymbol,
    /// ClOrdID already used in this session.
    DuplicateClOrdId,
    /// Price not a multiple of the tick (or below the price unit).
    PriceOffTick,
    /// Quantity zero, not a multiple of the lot, or below the unit.
    BadQuantity,
    /// A defined value we do not support (tag named).
    Unsupported(u32),
    /// Account (1) is not the session's.
    UnknownAccount,
    /// The order named by OrigClOrdID is not live in this session.
    UnknownOrder,
    /// The order already has a cancel or replace in flight, or is not yet acknowledged.
    PendingChange,
    /// A session table is full.
    Capacity,
    /// Too many messages per second.
    Throttled,
    /// A matcher reject.
    Matcher(matcher::RejectReason),
}

impl BusinessReason {
    /// OrdRejReason (103) for this version.
    pub fn ord_rej_reason(self, version: FixVersion) -> u32 {
        use matcher::RejectReason as R;
        let v44 = version == FixVersion::Fix44;
        let other = if v44 { 99 } else { 0 };
        match self {
            BusinessReason::UnknownSymbol | BusinessReason::Matcher(R::UnknownInstrument) => 1,
            BusinessReason::Matcher(R::InstrumentHalted) => 2,
            BusinessReason::Matcher(R::NotionalTooLarge) => 3,
            BusinessReason::Matcher(R::UnknownOrder) | BusinessReason::UnknownOrder => 5,
            BusinessReason::DuplicateClOrdId
            | BusinessReason::Matcher(R::DuplicateClientOrderId) => 6,
            BusinessReason::Unsupported(_) if v44 => 11,
            BusinessReason::BadQuantity
            | BusinessReason::Matcher(R::QuantityOffLot)
            | BusinessReason::Matcher(R::QuantityOutOfRange)
                if v44 =>
            {
                13
            }
            BusinessReason::UnknownAccount if v44 => 15,
            BusinessReason::Matcher(R::AccountKilled) => 0,
            _ => other,
        }
    }

    /// CxlRejReason (102) for this version.
    pub fn cxl_rej_reason(self, version: FixVersion) -> u32 {
        use matcher::RejectReason as R;
        let v44 = version == FixVersion::Fix44;
        match self {
            BusinessReason::UnknownOrder
            | BusinessReason::Matcher(R::UnknownOrder)
            | BusinessReason::Matcher(R::NotOwner) => 1,
            BusinessReason::PendingChange => 3,
            BusinessReason::DuplicateClOrdId
            | BusinessReason::Matcher(R::DuplicateClientOrderId)
                if v44 =>
            {
                6
            }
            _ if v44 => 99,
            _ => 2,
        }
    }

    /// Text (58).
    pub fn text(self) -> TextBuffer {
        match self {
            BusinessReason::UnknownSymbol => crate::text!("unknown symbol"),
            BusinessReason::DuplicateClOrdId => crate::text!("duplicate ClOrdID"),
            BusinessReason::PriceOffTick => crate::text!("price not on tick"),
            BusinessReason::BadQuantity => {
                crate::text!("quantity not a positive multiple of the lot")
            }
            BusinessReason::Unsupported(tag) => crate::text!("unsupported value in tag {tag}"),
            BusinessReason::UnknownAccount => crate::text!("unknown account"),
            BusinessReason::UnknownOrder => crate::text!("unknown order"),
            BusinessReason::PendingChange => {
                crate::text!("order has a request in flight or is not yet acknowledged")
            }
            BusinessReason::Capacity => crate::text!("session order capacity reached"),
            BusinessReason::Throttled => crate::text!("throttle limit exceeded"),
            BusinessReason::Matcher(reason) => crate::text!("{reason:?}"),
        }
    }
}

/// Reads Side (54).
pub fn parse_side(message: &Message<'_>) -> Result<Side, AppReject> {
    match message.required_char(tags::SIDE)? {
        b'1' => Ok(Side::Buy),
        b'2' => Ok(Side::Sell),
        b'3'..=b'9' | b'A'..=b'G' => {
            Err(AppReject::Business(BusinessReason::Unsupported(tags::SIDE)))
        }
        _ => Err(FieldError::Value { tag: tags::SIDE }.into()),
    }
}

/// Reads OrdType (40).
pub fn parse_ord_type(message: &Message<'_>) -> Result<OrderType, AppReject> {
    match message.required_char(tags::ORD_TYPE)? {
        b'1' => Ok(OrderType::Market),
        b'2' => Ok(OrderType::Limit),
        b'3'..=b'9' | b'A'..=b'Q' => Err(AppReject::Business(BusinessReason::Unsupported(
            tags::ORD_TYPE,
        ))),
        _ => Err(FieldError::Value {
            tag: tags::ORD_TYPE,
        }
        .into()),
    }
}

/// Reads a price in the instrument's units; off the tick is a business reject, never rounded.
pub fn parse_price(
    message: &Message<'_>,
    tag: u32,
    instrument: &Instrument,
) -> Result<Option<i64>, AppReject> {
    let Some(value) = message.optional(tag)? else {
        return Ok(None);
    };
    let price = match parse_decimal(value, instrument.price_exponent) {
        Ok(price) => price,
        Err(DecimalError::Precision) => {
            return Err(AppReject::Business(BusinessReason::PriceOffTick))
        }
        Err(DecimalError::Syntax) => return Err(FieldError::Format { tag }.into()),
        Err(DecimalError::Range) => return Err(FieldError::Value { tag }.into()),
    };
    if price % i64::from(instrument.tick_size) != 0 {
        return Err(AppReject::Business(BusinessReason::PriceOffTick));
    }
    Ok(Some(price))
}

/// Reads OrderQty (38) in the instrument's units: positive, a multiple of the lot.
pub fn parse_quantity(message: &Message<'_>, instrument: &Instrument) -> Result<u64, AppReject> {
    let tag = tags::ORDER_QTY;
    let value = message.required(tag)?;
    let quantity = match parse_decimal(value, instrument.quantity_exponent) {
        Ok(quantity) => quantity,
        Err(DecimalError::Precision) => {
            return Err(AppReject::Business(BusinessReason::BadQuantity))
        }
        Err(DecimalError::Syntax) => return Err(FieldError::Format { tag }.into()),
        Err(DecimalError::Range) => return Err(FieldError::Value { tag }.into()),
    };
    if quantity <= 0 || quantity % i64::from(instrument.lot_size) != 0 {
        return Err(AppReject::Business(BusinessReason::BadQuantity));
    }
    Ok(quantity as u64)
}

/// Checks Account (1) against the session's.
pub fn check_account(message: &Message<'_>, account: Option<&str>) -> Result<(), AppReject> {
    match message.optional(tags::ACCOUNT)? {
        None => Ok(()),
        Some(value) if Some(value) == account.map(str::as_bytes) => Ok(()),
        Some(_) => Err(AppReject::Business(BusinessReason::UnknownAccount)),
    }
}

/// Reads ClOrdID (11) or OrigClOrdID (41).
pub fn parse_cl_ord_id(message: &Message<'_>, tag: u32) -> Result<ClOrdId, AppReject> {
    ClOrdId::new(message.required(tag)?).ok_or(AppReject::Field(FieldError::Value { tag }))
}

/// Maps a NewOrderSingle onto an intent (all checks but ClOrdID uniqueness and capacity).
pub fn parse_new_order(
    message: &Message<'_>,
    instruments: &InstrumentTable,
    account: Option<&str>,
) -> Result<NewOrderIntent, AppReject> {
    let cl_ord_id = parse_cl_ord_id(message, tags::CL_ORD_ID)?;
    let side = parse_side(message)?;
    let order_type = parse_ord_type(message)?;
    let symbol = message.required(tags::SYMBOL)?;
    let time_in_force = match message.optional_char(tags::TIME_IN_FORCE)? {
        None | Some(b'0') => match order_type {
            // A market order never rests: Day means "for now", i.e. IOC.
            OrderType::Market => TimeInForce::Ioc,
            OrderType::Limit => TimeInForce::Day,
        },
        Some(b'1') => TimeInForce::Gtc,
        Some(b'3') => TimeInForce::Ioc,
        Some(b'4') => TimeInForce::Fok,
        Some(b'2' | b'5'..=b'9') => {
            return Err(AppReject::Business(BusinessReason::Unsupported(
                tags::TIME_IN_FORCE,
            )))
        }
        Some(_) => {
            return Err(FieldError::Value {
                tag: tags::TIME_IN_FORCE,
            }
            .into())
        }
    };
    let post_only = match message.optional(tags::EXEC_INST)? {
        None => false,
        Some(b"6") => true,
        Some(value)
            if value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b' ') =>
        {
            return Err(AppReject::Business(BusinessReason::Unsupported(
                tags::EXEC_INST,
            )))
        }
        Some(_) => {
            return Err(FieldError::Format {
                tag: tags::EXEC_INST,
            }
            .into())
        }
    };
    let stp_mode = match message.optional_char(tags::SELF_TRADE_PREVENTION)? {
        None => StpMode::None,
        Some(b'N') => StpMode::CancelNewest,
        Some(b'O') => StpMode::CancelOldest,
        Some(b'B') => StpMode::CancelBoth,
        Some(b'D') => StpMode::DecrementAndCancel,
        Some(_) => {
            return Err(FieldError::Value {
                tag: tags::SELF_TRADE_PREVENTION,
            }
            .into())
        }
    };
    check_account(message, account)?;
    let instrument_index = instruments
        .by_symbol(symbol)
        .ok_or(AppReject::Business(BusinessReason::UnknownSymbol))?;
    let instrument = instruments.get(instrument_index);
    let quantity = parse_quantity(message, instrument)?;
    let price = match (order_type, parse_price(message, tags::PRICE, instrument)?) {
        (OrderType::Limit, Some(price)) => price,
        (OrderType::Limit, None) => return Err(FieldError::Missing { tag: tags::PRICE }.into()),
        (OrderType::Market, None) => 0,
        (OrderType::Market, Some(_)) => {
            return Err(FieldError::Value { tag: tags::PRICE }.into());
        }
    };
    let rests = time_in_force.rests();
    if order_type == OrderType::Market && rests {
        return Err(AppReject::Business(BusinessReason::Unsupported(
            tags::TIME_IN_FORCE,
        )));
    }
    if post_only && (order_type == OrderType::Market || !rests) {
        return Err(AppReject::Business(BusinessReason::Unsupported(
            tags::EXEC_INST,
        )));
    }
    Ok(NewOrderIntent {
        cl_ord_id,
        instrument: instrument_index,
        side,
        order_type,
        time_in_force,
        stp_mode,
        post_only,
        price,
        quantity,
    })
}

/// ExecType of a report; the code depends on the version (4.2 reports fills as 1/2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecType {
    /// `0`.
    New,
    /// 4.4 `F`; 4.2 `1` (partial) or `2` (fill).
    Trade,
    /// `4`.
    Canceled,
    /// `5`.
    Replaced,
    /// `8`.
    Rejected,
    /// `C`.
    Expired,
    /// `D` (an STP decrement reduced the order).
    Restated,
}

/// Everything an ExecutionReport carries.
pub struct Report<'a> {
    /// OrderID (37); `None` writes `NONE` (rejected before the exchange saw it).
    pub order_id: Option<u64>,
    /// ClOrdID (11).
    pub cl_ord_id: &'a [u8],
    /// OrigClOrdID (41) on cancel/replace outcomes.
    pub orig_cl_ord_id: Option<&'a [u8]>,
    /// ExecID (17).
    pub exec_id: &'a [u8],
    /// ExecType (150).
    pub exec_type: ExecType,
    /// OrdStatus (39).
    pub ord_status: u8,
    /// Account (1), echoed.
    pub account: Option<&'a [u8]>,
    /// Symbol (55).
    pub symbol: &'a [u8],
    /// Side (54).
    pub side: Side,
    /// OrdType (40).
    pub order_type: Option<OrderType>,
    /// TimeInForce (59).
    pub time_in_force: Option<TimeInForce>,
    /// OrderQty (38), quantity units.
    pub order_qty: u64,
    /// Price (44) for limit orders, price units.
    pub price: Option<i64>,
    /// LastQty (32) and LastPx (31) on a trade.
    pub last: Option<(u64, i64)>,
    /// CumQty (14).
    pub cum_qty: u64,
    /// LeavesQty (151).
    pub leaves_qty: u64,
    /// AvgPx (6) as (value, exponent).
    pub avg_px: (i128, i8),
    /// Price and quantity exponents of the instrument.
    pub exponents: (i8, i8),
    /// TransactTime (60), ns since the epoch (the log's timestamp).
    pub transact_time_ns: u64,
    /// OrdRejReason (103) on rejects.
    pub ord_rej_reason: Option<u32>,
    /// Text (58).
    pub text: Option<&'a [u8]>,
}

fn side_code(side: Side) -> u8 {
    match side {
        Side::Buy => b'1',
        Side::Sell => b'2',
    }
}

fn tif_code(time_in_force: TimeInForce) -> u8 {
    match time_in_force {
        TimeInForce::Day => b'0',
        TimeInForce::Gtc => b'1',
        TimeInForce::Ioc => b'3',
        TimeInForce::Fok => b'4',
    }
}

/// Writes the body of an ExecutionReport (8) after the header.
pub fn write_execution_report(writer: &mut Writer<'_>, version: FixVersion, report: &Report<'_>) {
    let (price_exponent, quantity_exponent) = report.exponents;
    if let Some(account) = report.account {
        writer.bytes(tags::ACCOUNT, account);
    }
    writer.decimal(tags::AVG_PX, report.avg_px.0, report.avg_px.1);
    writer.bytes(tags::CL_ORD_ID, report.cl_ord_id);
    writer.decimal(tags::CUM_QTY, i128::from(report.cum_qty), quantity_exponent);
    writer.bytes(tags::EXEC_ID, report.exec_id);
    if version == FixVersion::Fix42 {
        writer.char(tags::EXEC_TRANS_TYPE, b'0');
    }
    if let Some((quantity, price)) = report.last {
        writer.decimal(tags::LAST_PX, i128::from(price), price_exponent);
        writer.decimal(tags::LAST_QTY, i128::from(quantity), quantity_exponent);
    }
    match report.order_id {
        Some(order_id) => writer.u64(tags::ORDER_ID, order_id),
        None => writer.bytes(tags::ORDER_ID, b"NONE"),
    }
    writer.decimal(
        tags::ORDER_QTY,
        i128::from(report.order_qty),
        quantity_exponent,
    );
    writer.char(tags::ORD_STATUS, report.ord_status);
    if let Some(order_type) = report.order_type {
        writer.char(
            tags::ORD_TYPE,
            match order_type {
                OrderType::Market => b'1',
                OrderType::Limit => b'2',
            },
        );
    }
    if let Some(orig) = report.orig_cl_ord_id {
        writer.bytes(tags::ORIG_CL_ORD_ID, orig);
    }
    if let Some(price) = report.price {
        writer.decimal(tags::PRICE, i128::from(price), price_exponent);
    }
    writer.char(tags::SIDE, side_code(report.side));
    writer.bytes(tags::SYMBOL, report.symbol);
    if let Some(text) = report.text {
        writer.bytes(tags::TEXT, text);
    }
    if let Some(time_in_force) = report.time_in_force {
        writer.char(tags::TIME_IN_FORCE, tif_code(time_in_force));
    }
    writer.timestamp(tags::TRANSACT_TIME, report.transact_time_ns);
    if let Some(reason) = report.ord_rej_reason {
        writer.u64(tags::ORD_REJ_REASON, u64::from(reason));
    }
    let exec_type = match (report.exec_type, version) {
        (ExecType::New, _) => b'0',
        (ExecType::Trade, FixVersion::Fix44) => b'F',
        (ExecType::Trade, FixVersion::Fix42) => {
            if report.leaves_qty == 0 {
                b'2'
            } else {
                b'1'
            }
        }
        (ExecType::Canceled, _) => b'4',
        (ExecType::Replaced, _) => b'5',
        (ExecType::Rejected, _) => b'8',
        (ExecType::Expired, _) => b'C',
        (ExecType::Restated, _) => b'D',
    };
    writer.char(tags::EXEC_TYPE, exec_type);
    writer.decimal(
        tags::LEAVES_QTY,
        i128::from(report.leaves_qty),
        quantity_exponent,
    );
}

/// Writes the body of an OrderCancelReject (9).
#[allow(clippy::too_many_arguments)]
pub fn write_cancel_reject(
    writer: &mut Writer<'_>,
    version: FixVersion,
    order_id: Option<u64>,
    cl_ord_id: &[u8],
    orig_cl_ord_id: &[u8],
    ord_status: u8,
    response_to_replace: bool,
    reason: BusinessReason,
    account: Option<&[u8]>,
) {
    if let Some(account) = account {
        writer.bytes(tags::ACCOUNT, account);
    }
    writer.bytes(tags::CL_ORD_ID, cl_ord_id);
    match order_id {
        Some(order_id) => writer.u64(tags::ORDER_ID, order_id),
        None => writer.bytes(tags::ORDER_ID, b"NONE"),
    }
    writer.char(tags::ORD_STATUS, ord_status);
    writer.bytes(tags::ORIG_CL_ORD_ID, orig_cl_ord_id);
    let text = reason.text();
    writer.bytes(tags::TEXT, text.as_bytes());
    writer.u64(
        tags::CXL_REJ_REASON,
        u64::from(reason.cxl_rej_reason(version)),
    );
    writer.char(
        tags::CXL_REJ_RESPONSE_TO,
        if response_to_replace { b'2' } else { b'1' },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instrument(symbol: &str, instrument_id: u32) -> Instrument {
        Instrument {
            symbol: symbol.into(),
            instrument_id,
            price_exponent: -2,
            quantity_exponent: 0,
            tick_size: 1,
            lot_size: 1,
        }
    }

    #[test]
    fn symbol_lookup_is_exact() {
        let symbols = ["ZZZZZZZZ", "A", "AB", "ABCDEFGH", "ABC", "~", "!"];
        let table = InstrumentTable::new(
            symbols
                .iter()
                .enumerate()
                .map(|(index, symbol)| instrument(symbol, 10 + index as u32))
                .collect(),
        )
        .unwrap();
        for (index, symbol) in symbols.iter().enumerate() {
            assert_eq!(table.by_symbol(symbol.as_bytes()), Some(index as u16));
            assert_eq!(table.by_id(10 + index as u32), Some(index as u16));
        }
        for absent in [
            &b""[..],
            b"a",
            b"AB\0",
            b"\0AB",
            b"A\0",
            b"ABCDEFGHI",
            b"ABCDEFG",
            b"ABCD",
            b"B",
            b"ZZZZZZZZZ",
            b"\0",
            b"\0\0\0\0\0\0\0\0",
        ] {
            assert_eq!(table.by_symbol(absent), None, "{absent:?}");
        }
        assert_eq!(table.by_id(9), None);
    }

    #[test]
    fn instrument_table_names_the_first_bad_instrument() {
        let table = |symbols: &[(&str, u32)]| {
            InstrumentTable::new(
                symbols
                    .iter()
                    .map(|&(symbol, id)| instrument(symbol, id))
                    .collect(),
            )
            .map(|_| ())
        };
        assert_eq!(table(&[("A", 1), ("B", 2)]), Ok(()));
        assert_eq!(table(&[("A", 1), ("B", 2), ("A", 3)]), Err(2));
        assert_eq!(table(&[("A", 1), ("B", 1)]), Err(1));
        assert_eq!(table(&[("A", 1), ("", 2)]), Err(1));
        assert_eq!(table(&[("ABCDEFGHI", 1)]), Err(0));
        assert_eq!(table(&[("A B", 1)]), Err(0));
        assert_eq!(table(&[("A", 0)]), Err(0));
    }
}
