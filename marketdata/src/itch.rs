//! NASDAQ TotalView-ITCH 5.0 messages: exact binary layouts, encoders and decoders.
//!
//! Every message starts with the same 11-byte header: message type (1 byte, ASCII), stock
//! locate (2), tracking number (2) and a timestamp of nanoseconds since midnight (6). Integers
//! are big-endian; prices are `Price(4)`: an unsigned 32-bit count of 1/10,000ths; alpha fields
//! are ASCII, left-justified and space-padded.
//!
//! Encoding writes into a caller buffer and decoding reads a borrowed slice into a plain `Copy`
//! struct: neither allocates. A message's length is fixed by its type; the decoder accepts a
//! slice of exactly that length (the transport carries the length: a MoldUDP64 message block or
//! the ITCH file layout, see [`crate::frame`]). Decoding never panics, whatever the bytes.
//!
//! Besides the ten ITCH types the feed uses, two extension types are defined by this project
//! (types that ITCH 5.0 does not use; see `docs/MARKETDATA.md`): [`BookChecksum`] (`'Z'`) and
//! [`SnapshotEnd`] (`'G'`). [`is_itch_standard`] tells them apart, so a recorder can keep the
//! recorded file pure ITCH.

/// Length of the common header: type, stock locate, tracking number, timestamp.
pub const HEADER_LEN: usize = 11;
/// Largest timestamp a 6-byte field holds (nanoseconds).
pub const TIMESTAMP_MAX: u64 = (1 << 48) - 1;
/// Nanoseconds in a day: ITCH timestamps count from midnight.
pub const NANOSECONDS_PER_DAY: u64 = 86_400 * 1_000_000_000;
const _: () = assert!(NANOSECONDS_PER_DAY <= TIMESTAMP_MAX);

/// System Event (`S`) length.
pub const SYSTEM_EVENT_LEN: usize = 12;
/// Stock Directory (`R`) length.
pub const STOCK_DIRECTORY_LEN: usize = 39;
/// Stock Trading Action (`H`) length.
pub const TRADING_ACTION_LEN: usize = 25;
/// Add Order, no MPID attribution (`A`) length.
pub const ADD_ORDER_LEN: usize = 36;
/// Order Executed (`E`) length.
pub const ORDER_EXECUTED_LEN: usize = 31;
/// Order Executed With Price (`C`) length.
pub const ORDER_EXECUTED_WITH_PRICE_LEN: usize = 36;
/// Order Cancel (`X`) length.
pub const ORDER_CANCEL_LEN: usize = 23;
/// Order Delete (`D`) length.
pub const ORDER_DELETE_LEN: usize = 19;
/// Order Replace (`U`) length.
pub const ORDER_REPLACE_LEN: usize = 35;
/// Trade, non-cross (`P`) length.
pub const TRADE_LEN: usize = 44;
/// Extension: Book Checksum (`Z`) length.
pub const BOOK_CHECKSUM_LEN: usize = 27;
/// Extension: Snapshot End (`G`) length.
pub const SNAPSHOT_END_LEN: usize = 27;
/// The longest message this crate encodes or decodes.
pub const MESSAGE_LEN_MAX: usize = TRADE_LEN;

// Each length is the sum of its fields, in the order of the specification's tables.
const _: () = assert!(HEADER_LEN == 1 + 2 + 2 + 6);
const _: () = assert!(SYSTEM_EVENT_LEN == HEADER_LEN + 1);
const _: () = assert!(
    STOCK_DIRECTORY_LEN == HEADER_LEN + 8 + 1 + 1 + 4 + 1 + 1 + 2 + 1 + 1 + 1 + 1 + 1 + 4 + 1
);
const _: () = assert!(TRADING_ACTION_LEN == HEADER_LEN + 8 + 1 + 1 + 4);
const _: () = assert!(ADD_ORDER_LEN == HEADER_LEN + 8 + 1 + 4 + 8 + 4);
const _: () = assert!(ORDER_EXECUTED_LEN == HEADER_LEN + 8 + 4 + 8);
const _: () = assert!(ORDER_EXECUTED_WITH_PRICE_LEN == HEADER_LEN + 8 + 4 + 8 + 1 + 4);
const _: () = assert!(ORDER_CANCEL_LEN == HEADER_LEN + 8 + 4);
const _: () = assert!(ORDER_DELETE_LEN == HEADER_LEN + 8);
const _: () = assert!(ORDER_REPLACE_LEN == HEADER_LEN + 8 + 8 + 4 + 4);
const _: () = assert!(TRADE_LEN == HEADER_LEN + 8 + 1 + 4 + 8 + 4 + 8);
const _: () = assert!(BOOK_CHECKSUM_LEN == HEADER_LEN + 8 + 4 + 4);
const _: () = assert!(SNAPSHOT_END_LEN == HEADER_LEN + 8 + 8);
const _: () = assert!(MESSAGE_LEN_MAX >= STOCK_DIRECTORY_LEN && MESSAGE_LEN_MAX >= ADD_ORDER_LEN);

/// Message type codes.
pub mod message_type {
    /// System Event.
    pub const SYSTEM_EVENT: u8 = b'S';
    /// Stock Directory.
    pub const STOCK_DIRECTORY: u8 = b'R';
    /// Stock Trading Action.
    pub const TRADING_ACTION: u8 = b'H';
    /// Add Order (no MPID attribution).
    pub const ADD_ORDER: u8 = b'A';
    /// Order Executed.
    pub const ORDER_EXECUTED: u8 = b'E';
    /// Order Executed With Price.
    pub const ORDER_EXECUTED_WITH_PRICE: u8 = b'C';
    /// Order Cancel.
    pub const ORDER_CANCEL: u8 = b'X';
    /// Order Delete.
    pub const ORDER_DELETE: u8 = b'D';
    /// Order Replace.
    pub const ORDER_REPLACE: u8 = b'U';
    /// Trade (non-cross).
    pub const TRADE: u8 = b'P';
    /// Extension (this project): the engine's book checksum.
    pub const BOOK_CHECKSUM: u8 = b'Z';
    /// Extension (this project): end of a snapshot.
    pub const SNAPSHOT_END: u8 = b'G';
}

/// The fixed length of a message type this crate knows, or `None`.
pub fn message_len(message_type: u8) -> Option<usize> {
    use message_type::*;
    Some(match message_type {
        SYSTEM_EVENT => SYSTEM_EVENT_LEN,
        STOCK_DIRECTORY => STOCK_DIRECTORY_LEN,
        TRADING_ACTION => TRADING_ACTION_LEN,
        ADD_ORDER => ADD_ORDER_LEN,
        ORDER_EXECUTED => ORDER_EXECUTED_LEN,
        ORDER_EXECUTED_WITH_PRICE => ORDER_EXECUTED_WITH_PRICE_LEN,
        ORDER_CANCEL => ORDER_CANCEL_LEN,
        ORDER_DELETE => ORDER_DELETE_LEN,
        ORDER_REPLACE => ORDER_REPLACE_LEN,
        TRADE => TRADE_LEN,
        BOOK_CHECKSUM => BOOK_CHECKSUM_LEN,
        SNAPSHOT_END => SNAPSHOT_END_LEN,
        _ => return None,
    })
}

/// Whether a message type is one of ITCH 5.0's own (the extensions `Z` and `G` are not).
/// The list is the whole ITCH 5.0 set, including types this crate does not decode.
pub fn is_itch_standard(message_type: u8) -> bool {
    matches!(
        message_type,
        b'S' | b'R'
            | b'H'
            | b'Y'
            | b'L'
            | b'V'
            | b'W'
            | b'K'
            | b'J'
            | b'h'
            | b'A'
            | b'F'
            | b'E'
            | b'C'
            | b'X'
            | b'D'
            | b'U'
            | b'P'
            | b'Q'
            | b'B'
            | b'I'
            | b'N'
            | b'O'
    )
}

/// The common header of every message (the type is implied by the message struct).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Header {
    /// Locate code identifying the security (this feed: the instrument id; 0 for
    /// market-wide messages).
    pub stock_locate: u16,
    /// NASDAQ-internal tracking number (this feed: always 0).
    pub tracking_number: u16,
    /// Nanoseconds since midnight, at most [`TIMESTAMP_MAX`].
    pub timestamp_ns: u64,
}

/// Buy/Sell Indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BuySell {
    /// `B`.
    Buy,
    /// `S`.
    Sell,
}

impl BuySell {
    /// The ASCII code.
    pub fn code(self) -> u8 {
        match self {
            BuySell::Buy => b'B',
            BuySell::Sell => b'S',
        }
    }

    /// Decodes the ASCII code.
    pub fn from_code(code: u8) -> Option<BuySell> {
        match code {
            b'B' => Some(BuySell::Buy),
            b'S' => Some(BuySell::Sell),
            _ => None,
        }
    }

    /// 0 for buy, 1 for sell (array index).
    pub fn index(self) -> usize {
        match self {
            BuySell::Buy => 0,
            BuySell::Sell => 1,
        }
    }
}

/// System Event (`S`), 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SystemEvent {
    /// Header.
    pub header: Header,
    /// Event code: `O` start of messages, `S` start of system hours, `Q` start of market
    /// hours, `M` end of market hours, `E` end of system hours, `C` end of messages.
    pub event_code: u8,
}

/// Stock Directory (`R`), 39 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StockDirectory {
    /// Header.
    pub header: Header,
    /// Symbol, space padded.
    pub stock: [u8; 8],
    /// Market category.
    pub market_category: u8,
    /// Financial status indicator.
    pub financial_status_indicator: u8,
    /// Round lot size in shares.
    pub round_lot_size: u32,
    /// `Y` if only round lots are accepted.
    pub round_lots_only: u8,
    /// Issue classification.
    pub issue_classification: u8,
    /// Issue sub-type.
    pub issue_sub_type: [u8; 2],
    /// `P` live/production, `T` test.
    pub authenticity: u8,
    /// Short sale threshold indicator.
    pub short_sale_threshold_indicator: u8,
    /// IPO flag.
    pub ipo_flag: u8,
    /// LULD reference price tier.
    pub luld_reference_price_tier: u8,
    /// ETP flag.
    pub etp_flag: u8,
    /// ETP leverage factor.
    pub etp_leverage_factor: u32,
    /// Inverse indicator.
    pub inverse_indicator: u8,
}

/// Stock Trading Action (`H`), 25 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TradingAction {
    /// Header.
    pub header: Header,
    /// Symbol, space padded.
    pub stock: [u8; 8],
    /// `H` halted, `P` paused, `Q` quotation only, `T` trading.
    pub trading_state: u8,
    /// Reserved.
    pub reserved: u8,
    /// Reason, 4 ASCII characters.
    pub reason: [u8; 4],
}

/// Add Order, no MPID attribution (`A`), 36 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddOrder {
    /// Header.
    pub header: Header,
    /// Order reference number, unique for the day.
    pub order_reference: u64,
    /// Side.
    pub side: BuySell,
    /// Shares.
    pub shares: u32,
    /// Symbol, space padded.
    pub stock: [u8; 8],
    /// Price(4).
    pub price: u32,
}

/// Order Executed (`E`), 31 bytes: the order traded at its displayed price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrderExecuted {
    /// Header.
    pub header: Header,
    /// The resting order.
    pub order_reference: u64,
    /// Shares executed.
    pub executed_shares: u32,
    /// Match number (this feed: the trade id).
    pub match_number: u64,
}

/// Order Executed With Price (`C`), 36 bytes: the order traded at another price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrderExecutedWithPrice {
    /// Header.
    pub header: Header,
    /// The resting order.
    pub order_reference: u64,
    /// Shares executed.
    pub executed_shares: u32,
    /// Match number.
    pub match_number: u64,
    /// `Y` printable, `N` not.
    pub printable: u8,
    /// Price(4) of the execution.
    pub execution_price: u32,
}

/// Order Cancel (`X`), 23 bytes: part of an order's shares were cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrderCancel {
    /// Header.
    pub header: Header,
    /// The resting order.
    pub order_reference: u64,
    /// Shares removed.
    pub cancelled_shares: u32,
}

/// Order Delete (`D`), 19 bytes: the order left the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrderDelete {
    /// Header.
    pub header: Header,
    /// The resting order.
    pub order_reference: u64,
}

/// Order Replace (`U`), 35 bytes: the original order left the book and a new one (same side
/// and stock) joined the back of its price level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrderReplace {
    /// Header.
    pub header: Header,
    /// The order replaced.
    pub original_order_reference: u64,
    /// The reference number of the replacement.
    pub new_order_reference: u64,
    /// Shares of the replacement.
    pub shares: u32,
    /// Price(4) of the replacement.
    pub price: u32,
}

/// Trade, non-cross (`P`), 44 bytes: an execution of a non-displayed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Trade {
    /// Header.
    pub header: Header,
    /// Order reference number (NASDAQ sends 0).
    pub order_reference: u64,
    /// Side of the non-displayed order.
    pub side: BuySell,
    /// Shares.
    pub shares: u32,
    /// Symbol, space padded.
    pub stock: [u8; 8],
    /// Price(4).
    pub price: u32,
    /// Match number.
    pub match_number: u64,
}

/// Extension `Z`, 27 bytes: the engine's [`crate::checksum`] of every book after all messages
/// with a smaller feed sequence number. Stock locate 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BookChecksum {
    /// Header.
    pub header: Header,
    /// The checksum.
    pub checksum: u64,
    /// Non-empty price levels, all books.
    pub level_count: u32,
    /// Resting orders, all books.
    pub order_count: u32,
}

/// Extension `G`, 27 bytes: ends a snapshot. The snapshot is the state after every message up
/// to and including `sequence`; the next incremental message to apply is `sequence + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotEnd {
    /// Header.
    pub header: Header,
    /// The feed sequence number the snapshot is as of.
    pub sequence: u64,
    /// The [`crate::checksum`] of the snapshot's books.
    pub checksum: u64,
}

/// Any message this crate encodes or decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Message {
    SystemEvent(SystemEvent),
    StockDirectory(StockDirectory),
    TradingAction(TradingAction),
    AddOrder(AddOrder),
    OrderExecuted(OrderExecuted),
    OrderExecutedWithPrice(OrderExecutedWithPrice),
    OrderCancel(OrderCancel),
    OrderDelete(OrderDelete),
    OrderReplace(OrderReplace),
    Trade(Trade),
    BookChecksum(BookChecksum),
    SnapshotEnd(SnapshotEnd),
}

/// A message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The output buffer is shorter than the message.
    #[error("buffer of {available} bytes is too small for a {needed}-byte message")]
    BufferTooSmall {
        /// Message length.
        needed: usize,
        /// Buffer length.
        available: usize,
    },
    /// The timestamp does not fit 6 bytes.
    #[error("timestamp {0} ns does not fit 48 bits")]
    Timestamp(u64),
}

/// Bytes that are not a message this crate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes.
    #[error("empty message")]
    Empty,
    /// A type this crate does not decode (it may still be valid ITCH: skip it).
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// The length does not match the type.
    #[error("message type {message_type:?} needs {expected} bytes, got {actual}")]
    Length {
        /// Type (ASCII).
        message_type: char,
        /// The type's length.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The Buy/Sell Indicator is neither `B` nor `S`.
    #[error("invalid buy/sell indicator 0x{0:02x}")]
    Side(u8),
}

// Field writers and readers at fixed offsets. Callers check the slice length against the
// message length first, so every offset is in bounds.
fn put_u16(out: &mut [u8], at: usize, value: u16) {
    out[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
fn put_u32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_be_bytes());
}
fn put_u64(out: &mut [u8], at: usize, value: u64) {
    out[at..at + 8].copy_from_slice(&value.to_be_bytes());
}
fn put_u48(out: &mut [u8], at: usize, value: u64) {
    debug_assert!(value <= TIMESTAMP_MAX);
    out[at..at + 6].copy_from_slice(&value.to_be_bytes()[2..]);
}
fn get_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}
fn get_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}
fn get_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}
fn get_u48(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word[2..].copy_from_slice(&bytes[at..at + 6]);
    u64::from_be_bytes(word)
}
fn get_array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut array = [0u8; N];
    array.copy_from_slice(&bytes[at..at + N]);
    array
}
fn get_side(bytes: &[u8], at: usize) -> Result<BuySell, DecodeError> {
    BuySell::from_code(bytes[at]).ok_or(DecodeError::Side(bytes[at]))
}

fn put_header(out: &mut [u8], message_type: u8, header: &Header) {
    out[0] = message_type;
    put_u16(out, 1, header.stock_locate);
    put_u16(out, 3, header.tracking_number);
    put_u48(out, 5, header.timestamp_ns);
}

fn get_header(bytes: &[u8]) -> Header {
    Header {
        stock_locate: get_u16(bytes, 1),
        tracking_number: get_u16(bytes, 3),
        timestamp_ns: get_u48(bytes, 5),
    }
}

impl Message {
    /// The type code (byte 0).
    pub fn message_type(&self) -> u8 {
        use message_type::*;
        match self {
            Message::SystemEvent(_) => SYSTEM_EVENT,
            Message::StockDirectory(_) => STOCK_DIRECTORY,
            Message::TradingAction(_) => TRADING_ACTION,
            Message::AddOrder(_) => ADD_ORDER,
            Message::OrderExecuted(_) => ORDER_EXECUTED,
            Message::OrderExecutedWithPrice(_) => ORDER_EXECUTED_WITH_PRICE,
            Message::OrderCancel(_) => ORDER_CANCEL,
            Message::OrderDelete(_) => ORDER_DELETE,
            Message::OrderReplace(_) => ORDER_REPLACE,
            Message::Trade(_) => TRADE,
            Message::BookChecksum(_) => BOOK_CHECKSUM,
            Message::SnapshotEnd(_) => SNAPSHOT_END,
        }
    }

    /// The encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Message::SystemEvent(_) => SYSTEM_EVENT_LEN,
            Message::StockDirectory(_) => STOCK_DIRECTORY_LEN,
            Message::TradingAction(_) => TRADING_ACTION_LEN,
            Message::AddOrder(_) => ADD_ORDER_LEN,
            Message::OrderExecuted(_) => ORDER_EXECUTED_LEN,
            Message::OrderExecutedWithPrice(_) => ORDER_EXECUTED_WITH_PRICE_LEN,
            Message::OrderCancel(_) => ORDER_CANCEL_LEN,
            Message::OrderDelete(_) => ORDER_DELETE_LEN,
            Message::OrderReplace(_) => ORDER_REPLACE_LEN,
            Message::Trade(_) => TRADE_LEN,
            Message::BookChecksum(_) => BOOK_CHECKSUM_LEN,
            Message::SnapshotEnd(_) => SNAPSHOT_END_LEN,
        }
    }

    /// The header.
    pub fn header(&self) -> &Header {
        match self {
            Message::SystemEvent(m) => &m.header,
            Message::StockDirectory(m) => &m.header,
            Message::TradingAction(m) => &m.header,
            Message::AddOrder(m) => &m.header,
            Message::OrderExecuted(m) => &m.header,
            Message::OrderExecutedWithPrice(m) => &m.header,
            Message::OrderCancel(m) => &m.header,
            Message::OrderDelete(m) => &m.header,
            Message::OrderReplace(m) => &m.header,
            Message::Trade(m) => &m.header,
            Message::BookChecksum(m) => &m.header,
            Message::SnapshotEnd(m) => &m.header,
        }
    }

    /// Writes the message at the start of `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let len = self.encoded_len();
        if out.len() < len {
            return Err(EncodeError::BufferTooSmall {
                needed: len,
                available: out.len(),
            });
        }
        let header = self.header();
        if header.timestamp_ns > TIMESTAMP_MAX {
            return Err(EncodeError::Timestamp(header.timestamp_ns));
        }
        let out = &mut out[..len];
        put_header(out, self.message_type(), header);
        match self {
            Message::SystemEvent(m) => out[11] = m.event_code,
            Message::StockDirectory(m) => {
                out[11..19].copy_from_slice(&m.stock);
                out[19] = m.market_category;
                out[20] = m.financial_status_indicator;
                put_u32(out, 21, m.round_lot_size);
                out[25] = m.round_lots_only;
                out[26] = m.issue_classification;
                out[27..29].copy_from_slice(&m.issue_sub_type);
                out[29] = m.authenticity;
                out[30] = m.short_sale_threshold_indicator;
                out[31] = m.ipo_flag;
                out[32] = m.luld_reference_price_tier;
                out[33] = m.etp_flag;
                put_u32(out, 34, m.etp_leverage_factor);
                out[38] = m.inverse_indicator;
            }
            Message::TradingAction(m) => {
                out[11..19].copy_from_slice(&m.stock);
                out[19] = m.trading_state;
                out[20] = m.reserved;
                out[21..25].copy_from_slice(&m.reason);
            }
            Message::AddOrder(m) => {
                put_u64(out, 11, m.order_reference);
                out[19] = m.side.code();
                put_u32(out, 20, m.shares);
                out[24..32].copy_from_slice(&m.stock);
                put_u32(out, 32, m.price);
            }
            Message::OrderExecuted(m) => {
                put_u64(out, 11, m.order_reference);
                put_u32(out, 19, m.executed_shares);
                put_u64(out, 23, m.match_number);
            }
            Message::OrderExecutedWithPrice(m) => {
                put_u64(out, 11, m.order_reference);
                put_u32(out, 19, m.executed_shares);
                put_u64(out, 23, m.match_number);
                out[31] = m.printable;
                put_u32(out, 32, m.execution_price);
            }
            Message::OrderCancel(m) => {
                put_u64(out, 11, m.order_reference);
                put_u32(out, 19, m.cancelled_shares);
            }
            Message::OrderDelete(m) => put_u64(out, 11, m.order_reference),
            Message::OrderReplace(m) => {
                put_u64(out, 11, m.original_order_reference);
                put_u64(out, 19, m.new_order_reference);
                put_u32(out, 27, m.shares);
                put_u32(out, 31, m.price);
            }
            Message::Trade(m) => {
                put_u64(out, 11, m.order_reference);
                out[19] = m.side.code();
                put_u32(out, 20, m.shares);
                out[24..32].copy_from_slice(&m.stock);
                put_u32(out, 32, m.price);
                put_u64(out, 36, m.match_number);
            }
            Message::BookChecksum(m) => {
                put_u64(out, 11, m.checksum);
                put_u32(out, 19, m.level_count);
                put_u32(out, 23, m.order_count);
            }
            Message::SnapshotEnd(m) => {
                put_u64(out, 11, m.sequence);
                put_u64(out, 19, m.checksum);
            }
        }
        Ok(len)
    }

    /// Reads one message from exactly its bytes (the transport gives the length).
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        use message_type::*;
        let Some(&message_type) = bytes.first() else {
            return Err(DecodeError::Empty);
        };
        let expected = message_len(message_type).ok_or(DecodeError::UnknownType(message_type))?;
        if bytes.len() != expected {
            return Err(DecodeError::Length {
                message_type: char::from(message_type),
                expected,
                actual: bytes.len(),
            });
        }
        let b = bytes;
        let header = get_header(b);
        Ok(match message_type {
            SYSTEM_EVENT => Message::SystemEvent(SystemEvent {
                header,
                event_code: b[11],
            }),
            STOCK_DIRECTORY => Message::StockDirectory(StockDirectory {
                header,
                stock: get_array(b, 11),
                market_category: b[19],
                financial_status_indicator: b[20],
                round_lot_size: get_u32(b, 21),
                round_lots_only: b[25],
                issue_classification: b[26],
                issue_sub_type: get_array(b, 27),
                authenticity: b[29],
                short_sale_threshold_indicator: b[30],
                ipo_flag: b[31],
                luld_reference_price_tier: b[32],
                etp_flag: b[33],
                etp_leverage_factor: get_u32(b, 34),
                inverse_indicator: b[38],
            }),
            TRADING_ACTION => Message::TradingAction(TradingAction {
                header,
                stock: get_array(b, 11),
                trading_state: b[19],
                reserved: b[20],
                reason: get_array(b, 21),
            }),
            ADD_ORDER => Message::AddOrder(AddOrder {
                header,
                order_reference: get_u64(b, 11),
                side: get_side(b, 19)?,
                shares: get_u32(b, 20),
                stock: get_array(b, 24),
                price: get_u32(b, 32),
            }),
            ORDER_EXECUTED => Message::OrderExecuted(OrderExecuted {
                header,
                order_reference: get_u64(b, 11),
                executed_shares: get_u32(b, 19),
                match_number: get_u64(b, 23),
            }),
            ORDER_EXECUTED_WITH_PRICE => Message::OrderExecutedWithPrice(OrderExecutedWithPrice {
                header,
                order_reference: get_u64(b, 11),
                executed_shares: get_u32(b, 19),
                match_number: get_u64(b, 23),
                printable: b[31],
                execution_price: get_u32(b, 32),
            }),
            ORDER_CANCEL => Message::OrderCancel(OrderCancel {
                header,
                order_reference: get_u64(b, 11),
                cancelled_shares: get_u32(b, 19),
            }),
            ORDER_DELETE => Message::OrderDelete(OrderDelete {
                header,
                order_reference: get_u64(b, 11),
            }),
            ORDER_REPLACE => Message::OrderReplace(OrderReplace {
                header,
                original_order_reference: get_u64(b, 11),
                new_order_reference: get_u64(b, 19),
                shares: get_u32(b, 27),
                price: get_u32(b, 31),
            }),
            TRADE => Message::Trade(Trade {
                header,
                order_reference: get_u64(b, 11),
                side: get_side(b, 19)?,
                shares: get_u32(b, 20),
                stock: get_array(b, 24),
                price: get_u32(b, 32),
                match_number: get_u64(b, 36),
            }),
            BOOK_CHECKSUM => Message::BookChecksum(BookChecksum {
                header,
                checksum: get_u64(b, 11),
                level_count: get_u32(b, 19),
                order_count: get_u32(b, 23),
            }),
            SNAPSHOT_END => Message::SnapshotEnd(SnapshotEnd {
                header,
                sequence: get_u64(b, 11),
                checksum: get_u64(b, 19),
            }),
            // message_len returned Some, so the type is one of the above.
            _ => return Err(DecodeError::UnknownType(message_type)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        Header {
            stock_locate: 0x0102,
            tracking_number: 0x0304,
            timestamp_ns: 0x0506_0708_090A,
        }
    }

    fn encode(message: &Message) -> Vec<u8> {
        let mut buffer = [0u8; MESSAGE_LEN_MAX];
        let len = message.encode(&mut buffer).expect("fits");
        assert_eq!(len, message.encoded_len());
        buffer[..len].to_vec()
    }

    /// The header's bytes at the specification's offsets 0, 1, 3 and 5.
    fn assert_header(bytes: &[u8], message_type: u8) {
        assert_eq!(bytes[0], message_type);
        assert_eq!(&bytes[1..3], &[0x01, 0x02]);
        assert_eq!(&bytes[3..5], &[0x03, 0x04]);
        assert_eq!(&bytes[5..11], &[0x05, 0x06, 0x07, 0x08, 0x09, 0x0A]);
    }

    // Exact-byte tests: distinct values in every field, checked at the offsets and lengths of
    // the ITCH 5.0 specification's tables (written out here independently of the encoder).

    #[test]
    fn system_event_layout() {
        let bytes = encode(&Message::SystemEvent(SystemEvent {
            header: header(),
            event_code: b'O',
        }));
        assert_eq!(bytes.len(), 12);
        assert_header(&bytes, b'S');
        assert_eq!(bytes[11], b'O');
    }

    #[test]
    fn stock_directory_layout() {
        let bytes = encode(&Message::StockDirectory(StockDirectory {
            header: header(),
            stock: *b"ACME    ",
            market_category: b'Q',
            financial_status_indicator: b'N',
            round_lot_size: 100,
            round_lots_only: b'Y',
            issue_classification: b'C',
            issue_sub_type: *b"Z ",
            authenticity: b'P',
            short_sale_threshold_indicator: b'N',
            ipo_flag: b' ',
            luld_reference_price_tier: b'1',
            etp_flag: b'N',
            etp_leverage_factor: 0x0A0B_0C0D,
            inverse_indicator: b'N',
        }));
        assert_eq!(bytes.len(), 39);
        assert_header(&bytes, b'R');
        assert_eq!(&bytes[11..19], b"ACME    ");
        assert_eq!(bytes[19], b'Q');
        assert_eq!(bytes[20], b'N');
        assert_eq!(&bytes[21..25], &[0, 0, 0, 100]);
        assert_eq!(bytes[25], b'Y');
        assert_eq!(bytes[26], b'C');
        assert_eq!(&bytes[27..29], b"Z ");
        assert_eq!(bytes[29], b'P');
        assert_eq!(bytes[30], b'N');
        assert_eq!(bytes[31], b' ');
        assert_eq!(bytes[32], b'1');
        assert_eq!(bytes[33], b'N');
        assert_eq!(&bytes[34..38], &[0x0A, 0x0B, 0x0C, 0x0D]);
        assert_eq!(bytes[38], b'N');
    }

    #[test]
    fn trading_action_layout() {
        let bytes = encode(&Message::TradingAction(TradingAction {
            header: header(),
            stock: *b"ACME    ",
            trading_state: b'H',
            reserved: b' ',
            reason: *b"LUDP",
        }));
        assert_eq!(bytes.len(), 25);
        assert_header(&bytes, b'H');
        assert_eq!(&bytes[11..19], b"ACME    ");
        assert_eq!(bytes[19], b'H');
        assert_eq!(bytes[20], b' ');
        assert_eq!(&bytes[21..25], b"LUDP");
    }

    #[test]
    fn add_order_layout() {
        let bytes = encode(&Message::AddOrder(AddOrder {
            header: header(),
            order_reference: 0x1112_1314_1516_1718,
            side: BuySell::Sell,
            shares: 0x2122_2324,
            stock: *b"ACME    ",
            price: 1_234_500, // 123.4500
        }));
        assert_eq!(bytes.len(), 36);
        assert_header(&bytes, b'A');
        assert_eq!(
            &bytes[11..19],
            &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
        );
        assert_eq!(bytes[19], b'S');
        assert_eq!(&bytes[20..24], &[0x21, 0x22, 0x23, 0x24]);
        assert_eq!(&bytes[24..32], b"ACME    ");
        assert_eq!(&bytes[32..36], &1_234_500u32.to_be_bytes());
    }

    #[test]
    fn order_executed_layouts() {
        let bytes = encode(&Message::OrderExecuted(OrderExecuted {
            header: header(),
            order_reference: 0x1112_1314_1516_1718,
            executed_shares: 0x2122_2324,
            match_number: 0x3132_3334_3536_3738,
        }));
        assert_eq!(bytes.len(), 31);
        assert_header(&bytes, b'E');
        assert_eq!(&bytes[11..19], &0x1112_1314_1516_1718u64.to_be_bytes());
        assert_eq!(&bytes[19..23], &[0x21, 0x22, 0x23, 0x24]);
        assert_eq!(&bytes[23..31], &0x3132_3334_3536_3738u64.to_be_bytes());

        let bytes = encode(&Message::OrderExecutedWithPrice(OrderExecutedWithPrice {
            header: header(),
            order_reference: 0x1112_1314_1516_1718,
            executed_shares: 0x2122_2324,
            match_number: 0x3132_3334_3536_3738,
            printable: b'Y',
            execution_price: 0x4142_4344,
        }));
        assert_eq!(bytes.len(), 36);
        assert_header(&bytes, b'C');
        assert_eq!(&bytes[11..19], &0x1112_1314_1516_1718u64.to_be_bytes());
        assert_eq!(&bytes[19..23], &[0x21, 0x22, 0x23, 0x24]);
        assert_eq!(&bytes[23..31], &0x3132_3334_3536_3738u64.to_be_bytes());
        assert_eq!(bytes[31], b'Y');
        assert_eq!(&bytes[32..36], &[0x41, 0x42, 0x43, 0x44]);
    }

    #[test]
    fn cancel_delete_replace_layouts() {
        let bytes = encode(&Message::OrderCancel(OrderCancel {
            header: header(),
            order_reference: 0x1112_1314_1516_1718,
            cancelled_shares: 0x2122_2324,
        }));
        assert_eq!(bytes.len(), 23);
        assert_header(&bytes, b'X');
        assert_eq!(&bytes[11..19], &0x1112_1314_1516_1718u64.to_be_bytes());
        assert_eq!(&bytes[19..23], &[0x21, 0x22, 0x23, 0x24]);

        let bytes = encode(&Message::OrderDelete(OrderDelete {
            header: header(),
            order_reference: 0x1112_1314_1516_1718,
        }));
        assert_eq!(bytes.len(), 19);
        assert_header(&bytes, b'D');
        assert_eq!(&bytes[11..19], &0x1112_1314_1516_1718u64.to_be_bytes());

        let bytes = encode(&Message::OrderReplace(OrderReplace {
            header: header(),
            original_order_reference: 0x1112_1314_1516_1718,
            new_order_reference: 0x2122_2324_2526_2728,
            shares: 0x3132_3334,
            price: 0x4142_4344,
        }));
        assert_eq!(bytes.len(), 35);
        assert_header(&bytes, b'U');
        assert_eq!(&bytes[11..19], &0x1112_1314_1516_1718u64.to_be_bytes());
        assert_eq!(&bytes[19..27], &0x2122_2324_2526_2728u64.to_be_bytes());
        assert_eq!(&bytes[27..31], &[0x31, 0x32, 0x33, 0x34]);
        assert_eq!(&bytes[31..35], &[0x41, 0x42, 0x43, 0x44]);
    }

    #[test]
    fn trade_layout() {
        let bytes = encode(&Message::Trade(Trade {
            header: header(),
            order_reference: 0,
            side: BuySell::Buy,
            shares: 0x2122_2324,
            stock: *b"ACME    ",
            price: 0x4142_4344,
            match_number: 0x3132_3334_3536_3738,
        }));
        assert_eq!(bytes.len(), 44);
        assert_header(&bytes, b'P');
        assert_eq!(&bytes[11..19], &[0; 8]);
        assert_eq!(bytes[19], b'B');
        assert_eq!(&bytes[20..24], &[0x21, 0x22, 0x23, 0x24]);
        assert_eq!(&bytes[24..32], b"ACME    ");
        assert_eq!(&bytes[32..36], &[0x41, 0x42, 0x43, 0x44]);
        assert_eq!(&bytes[36..44], &0x3132_3334_3536_3738u64.to_be_bytes());
    }

    #[test]
    fn extension_layouts() {
        let bytes = encode(&Message::BookChecksum(BookChecksum {
            header: header(),
            checksum: 0x1112_1314_1516_1718,
            level_count: 0x2122_2324,
            order_count: 0x3132_3334,
        }));
        assert_eq!(bytes.len(), 27);
        assert_header(&bytes, b'Z');
        assert_eq!(&bytes[11..19], &0x1112_1314_1516_1718u64.to_be_bytes());
        assert_eq!(&bytes[19..23], &[0x21, 0x22, 0x23, 0x24]);
        assert_eq!(&bytes[23..27], &[0x31, 0x32, 0x33, 0x34]);
        assert!(!is_itch_standard(b'Z') && !is_itch_standard(b'G'));
        assert!(is_itch_standard(b'A') && is_itch_standard(b'U'));
    }

    #[test]
    fn encode_refuses_small_buffer_and_wide_timestamp() {
        let message = Message::OrderDelete(OrderDelete {
            header: header(),
            order_reference: 1,
        });
        let mut small = [0u8; ORDER_DELETE_LEN - 1];
        assert_eq!(
            message.encode(&mut small),
            Err(EncodeError::BufferTooSmall {
                needed: ORDER_DELETE_LEN,
                available: ORDER_DELETE_LEN - 1
            })
        );
        let wide = Message::OrderDelete(OrderDelete {
            header: Header {
                timestamp_ns: TIMESTAMP_MAX + 1,
                ..header()
            },
            order_reference: 1,
        });
        let mut buffer = [0u8; MESSAGE_LEN_MAX];
        assert_eq!(
            wide.encode(&mut buffer),
            Err(EncodeError::Timestamp(TIMESTAMP_MAX + 1))
        );
    }

    #[test]
    fn decode_errors() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(Message::decode(b"Q"), Err(DecodeError::UnknownType(b'Q')));
        assert!(matches!(
            Message::decode(&[b'D'; 18]),
            Err(DecodeError::Length { expected: 19, .. })
        ));
        let mut bytes = encode(&Message::AddOrder(AddOrder {
            header: header(),
            order_reference: 1,
            side: BuySell::Buy,
            shares: 1,
            stock: *b"ACME    ",
            price: 1,
        }));
        bytes[19] = b'x';
        assert_eq!(Message::decode(&bytes), Err(DecodeError::Side(b'x')));
    }

    pub(crate) fn arbitrary_message() -> impl Strategy<Value = Message> {
        let header = (any::<u16>(), any::<u16>(), 0..=TIMESTAMP_MAX).prop_map(
            |(stock_locate, tracking_number, timestamp_ns)| Header {
                stock_locate,
                tracking_number,
                timestamp_ns,
            },
        );
        let side = prop_oneof![Just(BuySell::Buy), Just(BuySell::Sell)];
        prop_oneof![
            (header.clone(), any::<u8>()).prop_map(|(header, event_code)| {
                Message::SystemEvent(SystemEvent { header, event_code })
            }),
            (
                header.clone(),
                any::<[u8; 8]>(),
                any::<[u8; 4]>(),
                any::<u32>(),
                any::<[u8; 8]>(),
                any::<u32>(),
                any::<u8>()
            )
                .prop_map(|(header, stock, a, round_lot_size, b, etp, inverse)| {
                    Message::StockDirectory(StockDirectory {
                        header,
                        stock,
                        market_category: a[0],
                        financial_status_indicator: a[1],
                        round_lot_size,
                        round_lots_only: a[2],
                        issue_classification: a[3],
                        issue_sub_type: [b[0], b[1]],
                        authenticity: b[2],
                        short_sale_threshold_indicator: b[3],
                        ipo_flag: b[4],
                        luld_reference_price_tier: b[5],
                        etp_flag: b[6],
                        etp_leverage_factor: etp,
                        inverse_indicator: inverse,
                    })
                }),
            (
                header.clone(),
                any::<[u8; 8]>(),
                any::<u8>(),
                any::<u8>(),
                any::<[u8; 4]>()
            )
                .prop_map(|(header, stock, trading_state, reserved, reason)| {
                    Message::TradingAction(TradingAction {
                        header,
                        stock,
                        trading_state,
                        reserved,
                        reason,
                    })
                }),
            (
                header.clone(),
                any::<u64>(),
                side.clone(),
                any::<u32>(),
                any::<[u8; 8]>(),
                any::<u32>()
            )
                .prop_map(|(header, order_reference, side, shares, stock, price)| {
                    Message::AddOrder(AddOrder {
                        header,
                        order_reference,
                        side,
                        shares,
                        stock,
                        price,
                    })
                }),
            (header.clone(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(
                |(header, order_reference, executed_shares, match_number)| {
                    Message::OrderExecuted(OrderExecuted {
                        header,
                        order_reference,
                        executed_shares,
                        match_number,
                    })
                }
            ),
            (
                header.clone(),
                any::<u64>(),
                any::<u32>(),
                any::<u64>(),
                any::<u8>(),
                any::<u32>()
            )
                .prop_map(
                    |(header, order_reference, shares, number, printable, price)| {
                        Message::OrderExecutedWithPrice(OrderExecutedWithPrice {
                            header,
                            order_reference,
                            executed_shares: shares,
                            match_number: number,
                            printable,
                            execution_price: price,
                        })
                    }
                ),
            (header.clone(), any::<u64>(), any::<u32>()).prop_map(
                |(header, order_reference, cancelled_shares)| {
                    Message::OrderCancel(OrderCancel {
                        header,
                        order_reference,
                        cancelled_shares,
                    })
                }
            ),
            (header.clone(), any::<u64>()).prop_map(|(header, order_reference)| {
                Message::OrderDelete(OrderDelete {
                    header,
                    order_reference,
                })
            }),
            (
                header.clone(),
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(header, original, new, shares, price)| {
                    Message::OrderReplace(OrderReplace {
                        header,
                        original_order_reference: original,
                        new_order_reference: new,
                        shares,
                        price,
                    })
                }),
            (
                header.clone(),
                any::<u64>(),
                side,
                any::<u32>(),
                any::<[u8; 8]>(),
                any::<u32>(),
                any::<u64>()
            )
                .prop_map(
                    |(header, order_reference, side, shares, stock, price, match_number)| {
                        Message::Trade(Trade {
                            header,
                            order_reference,
                            side,
                            shares,
                            stock,
                            price,
                            match_number,
                        })
                    }
                ),
            (header.clone(), any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
                |(header, checksum, level_count, order_count)| {
                    Message::BookChecksum(BookChecksum {
                        header,
                        checksum,
                        level_count,
                        order_count,
                    })
                }
            ),
            (header, any::<u64>(), any::<u64>()).prop_map(|(header, sequence, checksum)| {
                Message::SnapshotEnd(SnapshotEnd {
                    header,
                    sequence,
                    checksum,
                })
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn every_type_round_trips(message in arbitrary_message()) {
            let bytes = encode(&message);
            prop_assert_eq!(bytes.len(), message_len(message.message_type()).unwrap_or(0));
            prop_assert_eq!(Message::decode(&bytes), Ok(message));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(message) = Message::decode(&bytes) {
                // Whatever decodes re-encodes to the same bytes.
                prop_assert_eq!(encode(&message), bytes);
            }
        }

        #[test]
        fn typed_garbage_never_panics(
            message_type in prop::sample::select(b"SRHAECXDUPZGQ".to_vec()),
            rest in proptest::collection::vec(any::<u8>(), 0..50),
            exact_length in any::<bool>(),
        ) {
            let mut bytes = vec![message_type];
            bytes.extend_from_slice(&rest);
            if exact_length {
                // Mostly the right length, so the field decoders see random bytes.
                bytes.resize(message_len(message_type).unwrap_or(1), 0xA5);
            }
            if let Ok(message) = Message::decode(&bytes) {
                prop_assert_eq!(encode(&message), bytes);
            }
        }
    }
}
