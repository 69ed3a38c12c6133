//! Commands: the fixed-layout input records the sequencer journals, and their typed form.
//!
//! Every command is one 64-byte, 8-byte-aligned, little-endian [`CommandRecord`]. All kinds but
//! `AddInstrument` share one field layout; fields a kind does not use must be zero. `AddInstrument`
//! overlays [`InstrumentRecord`] on the same 64 bytes. `docs/MATCHER.md` has the byte tables.

use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of every command record in bytes.
pub const COMMAND_RECORD_SIZE: usize = 64;
const _: () = assert!(COMMAND_RECORD_SIZE.is_multiple_of(8));

/// Largest number of price levels one side of one instrument may have.
pub const PRICE_LEVELS_PER_SIDE_MAX: u32 = 1 << 22;
/// Decimal exponents of prices and quantities lie in `-EXPONENT_ABS_MAX..=EXPONENT_ABS_MAX`.
pub const EXPONENT_ABS_MAX: i8 = 18;

/// Command kind codes (byte 0 of a record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum CommandKind {
    /// Submit an order.
    NewOrder = 1,
    /// Cancel one resting order.
    Cancel = 2,
    /// Cancel/replace one resting order (new price, new total quantity, new client order id).
    Replace = 3,
    /// Cancel an account's resting orders, optionally filtered by instrument and side.
    MassCancel = 4,
    /// Admin: add an instrument (overlay [`InstrumentRecord`]).
    AddInstrument = 5,
    /// Admin: halt trading in an instrument.
    Halt = 6,
    /// Admin: resume trading in an instrument.
    Resume = 7,
    /// Admin: kill switch on for an account (cancels its orders, blocks new ones).
    KillSwitchOn = 8,
    /// Admin: kill switch off for an account.
    KillSwitchOff = 9,
    /// Admin: end of day for an instrument; expires its DAY orders.
    EndOfDay = 10,
    /// Admin: set the reference price (centre of the dynamic price band) of an instrument.
    SetReferencePrice = 11,
}

impl CommandKind {
    /// Decodes a kind byte.
    pub fn from_u8(value: u8) -> Option<CommandKind> {
        Some(match value {
            1 => CommandKind::NewOrder,
            2 => CommandKind::Cancel,
            3 => CommandKind::Replace,
            4 => CommandKind::MassCancel,
            5 => CommandKind::AddInstrument,
            6 => CommandKind::Halt,
            7 => CommandKind::Resume,
            8 => CommandKind::KillSwitchOn,
            9 => CommandKind::KillSwitchOff,
            10 => CommandKind::EndOfDay,
            11 => CommandKind::SetReferencePrice,
            _ => return None,
        })
    }
}

/// Order side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Side {
    /// Bid.
    Buy = 1,
    /// Ask.
    Sell = 2,
}

impl Side {
    /// Decodes a side byte (0 is not a side).
    pub fn from_u8(value: u8) -> Option<Side> {
        match value {
            1 => Some(Side::Buy),
            2 => Some(Side::Sell),
            _ => None,
        }
    }

    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// 0 for buy, 1 for sell: the index of this side in per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Buy => 0,
            Side::Sell => 1,
        }
    }
}

/// Order type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OrderType {
    /// Trades at the limit price or better; may rest.
    Limit = 1,
    /// Sweeps up to the protection price of the band; never rests.
    Market = 2,
}

/// Time in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TimeInForce {
    /// Good till cancelled: the remainder rests.
    Gtc = 1,
    /// Good for the day: rests until the instrument's `EndOfDay` command.
    Day = 2,
    /// Immediate or cancel: the remainder is cancelled.
    Ioc = 3,
    /// Fill or kill: fills completely at once or is rejected.
    Fok = 4,
}

impl TimeInForce {
    /// Whether a remainder of this order rests in the book.
    pub fn rests(self) -> bool {
        matches!(self, TimeInForce::Gtc | TimeInForce::Day)
    }
}

/// Self-trade prevention mode, set on the taker; applies when taker and maker share an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StpMode {
    /// No prevention: an account may trade with itself.
    None = 0,
    /// Cancel the taker's remainder; the resting order stays.
    CancelNewest = 1,
    /// Cancel the resting order and keep matching.
    CancelOldest = 2,
    /// Cancel the resting order, then the taker's remainder.
    CancelBoth = 3,
    /// Reduce both by the smaller quantity without a trade; cancel whichever reaches zero.
    DecrementAndCancel = 4,
}

macro_rules! impl_from_u8 {
    ($t:ty { $($v:literal => $variant:expr),* $(,)? }) => {
        impl $t {
            /// Decodes the byte code.
            pub fn from_u8(value: u8) -> Option<$t> {
                match value {
                    $($v => Some($variant),)*
                    _ => None,
                }
            }
        }
    };
}
impl_from_u8!(OrderType { 1 => OrderType::Limit, 2 => OrderType::Market });
impl_from_u8!(TimeInForce {
    1 => TimeInForce::Gtc, 2 => TimeInForce::Day, 3 => TimeInForce::Ioc, 4 => TimeInForce::Fok,
});
impl_from_u8!(StpMode {
    0 => StpMode::None, 1 => StpMode::CancelNewest, 2 => StpMode::CancelOldest,
    3 => StpMode::CancelBoth, 4 => StpMode::DecrementAndCancel,
});

/// Bit in [`CommandRecord::flags`]: the order is post-only.
pub const FLAG_POST_ONLY: u8 = 1;

/// The 64-byte command record, in the layout shared by every kind but `AddInstrument`.
///
/// Read it in place from a journal payload with [`CommandRecord::ref_from_bytes`] (needs 8-byte
/// alignment) or copy it with [`CommandRecord::read_from_bytes`].
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(8))]
pub struct CommandRecord {
    /// [`CommandKind`] code.
    pub kind: u8,
    /// [`Side`] code; in `MassCancel`, 0 means both sides.
    pub side: u8,
    /// [`OrderType`] code.
    pub order_type: u8,
    /// [`TimeInForce`] code.
    pub time_in_force: u8,
    /// [`StpMode`] code.
    pub stp_mode: u8,
    /// Bit set: [`FLAG_POST_ONLY`].
    pub flags: u8,
    /// Must be zero.
    pub reserved_0: U16,
    /// Instrument id (1-based); in `MassCancel`, 0 means all instruments.
    pub instrument_id: U32,
    /// Account that owns the order (non-zero).
    pub account_id: U32,
    /// Client order id chosen by the account.
    pub client_order_id: U64,
    /// Exchange order id the command targets (`Cancel`, `Replace`).
    pub order_id: U64,
    /// Price in price units (`10^price_exponent`).
    pub price: I64,
    /// Quantity in quantity units (`10^quantity_exponent`).
    pub quantity: U64,
    /// Must be zero.
    pub reserved_1: U64,
    /// Must be zero.
    pub reserved_2: U64,
}
const _: () = assert!(core::mem::size_of::<CommandRecord>() == COMMAND_RECORD_SIZE);
const _: () = assert!(core::mem::align_of::<CommandRecord>() == 8);

/// The `AddInstrument` overlay of a [`CommandRecord`].
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct InstrumentRecord {
    /// Always [`CommandKind::AddInstrument`].
    pub kind: u8,
    /// Price unit is `10^price_exponent` (two's complement).
    pub price_exponent: i8,
    /// Quantity unit is `10^quantity_exponent`.
    pub quantity_exponent: i8,
    /// Must be zero.
    pub reserved_0: u8,
    /// Half-width of the dynamic band around the reference price, in ticks (0: no dynamic band).
    pub band_width_ticks: U32,
    /// Instrument id, `1..=instrument_capacity`.
    pub instrument_id: U32,
    /// Number of ticks in the static price range `[price_min, price_max]`.
    pub price_levels: U32,
    /// Symbol, ASCII, padded with NUL bytes.
    pub symbol: [u8; 8],
    /// Tick size in price units.
    pub tick_size: U32,
    /// Lot size in quantity units.
    pub lot_size: U32,
    /// Lowest valid price, in price units (a multiple of the tick size).
    pub price_min: I64,
    /// Initial reference price, in price units.
    pub reference_price: I64,
    /// Smallest order quantity, in lots.
    pub quantity_min_lots: U32,
    /// Largest order quantity, in lots.
    pub quantity_max_lots: U32,
    /// Largest `|price| * quantity` in price units times quantity units (0: unlimited).
    pub notional_max: U64,
}
const _: () = assert!(core::mem::size_of::<InstrumentRecord>() == COMMAND_RECORD_SIZE);

/// Bits of word 0 (kind, side, order type, time in force, STP mode, flags, reserved) that may be
/// non-zero: the kind byte, plus the side and order-field bytes where used.
const WORD0_KIND: u64 = 0xFF;
const WORD0_SIDE: u64 = 0xFF << 8;
const WORD0_ORDER_FIELDS: u64 = 0xFFFF_FFFF << 16;
/// Word 1: instrument id (low half), account id (high half).
const WORD1_INSTRUMENT: u64 = 0xFFFF_FFFF;
const WORD1_ACCOUNT: u64 = 0xFFFF_FFFF << 32;
/// Per 8-byte word of a record, the bits a NewOrder may set (words 2..=5: client order id,
/// order id, price, quantity; 6 and 7 are reserved).
const MASK_NEW_ORDER: [u64; 8] = [
    WORD0_KIND | WORD0_SIDE | WORD0_ORDER_FIELDS,
    WORD1_INSTRUMENT | WORD1_ACCOUNT,
    u64::MAX,
    0,
    u64::MAX,
    u64::MAX,
    0,
    0,
];
/// Kind codes of the hot commands.
pub(crate) const KIND_NEW_ORDER: u8 = CommandKind::NewOrder as u8;
pub(crate) const KIND_CANCEL: u8 = CommandKind::Cancel as u8;
pub(crate) const KIND_REPLACE: u8 = CommandKind::Replace as u8;

const MASK_CANCEL: [u64; 8] = [WORD0_KIND, WORD1_ACCOUNT, 0, u64::MAX, 0, 0, 0, 0];
const MASK_REPLACE: [u64; 8] = [
    WORD0_KIND,
    WORD1_ACCOUNT,
    u64::MAX,
    u64::MAX,
    u64::MAX,
    u64::MAX,
    0,
    0,
];
const _: () = assert!(core::mem::offset_of!(CommandRecord, instrument_id) == 8);
const _: () = assert!(core::mem::offset_of!(CommandRecord, account_id) == 12);
const _: () = assert!(core::mem::offset_of!(CommandRecord, client_order_id) == 16);
const _: () = assert!(core::mem::offset_of!(CommandRecord, order_id) == 24);
const _: () = assert!(core::mem::offset_of!(CommandRecord, price) == 32);
const _: () = assert!(core::mem::offset_of!(CommandRecord, quantity) == 40);

impl CommandRecord {
    /// An all-zero record (kind 0, which is not a valid command).
    pub fn zeroed() -> CommandRecord {
        <CommandRecord as zerocopy::FromZeros>::new_zeroed()
    }

    /// The record a journal payload carries, copied; a payload that is not exactly one record
    /// reads as the [zeroed](CommandRecord::zeroed) record, which the matcher answers with
    /// `Rejected(Malformed)` (see [`crate::Matcher::apply_payload`]).
    pub fn from_payload(payload: &[u8]) -> CommandRecord {
        CommandRecord::read_from_bytes(payload).unwrap_or_else(|_| CommandRecord::zeroed())
    }

    /// Views a journal payload in place. Fails if `bytes` is not exactly 64 bytes or not
    /// 8-byte aligned.
    pub fn ref_from_bytes(bytes: &[u8]) -> Result<&CommandRecord, DecodeError> {
        <CommandRecord as FromBytes>::ref_from_bytes(bytes).map_err(|_| DecodeError::Size {
            length: bytes.len() as u64,
        })
    }

    /// Copies a record out of a payload of exactly 64 bytes at any alignment.
    pub fn read_from_bytes(bytes: &[u8]) -> Result<CommandRecord, DecodeError> {
        <CommandRecord as FromBytes>::read_from_bytes(bytes).map_err(|_| DecodeError::Size {
            length: bytes.len() as u64,
        })
    }

    /// The 64 bytes of the record.
    pub fn as_bytes(&self) -> &[u8] {
        IntoBytes::as_bytes(self)
    }

    /// The `AddInstrument` overlay of these bytes.
    pub fn instrument_record(&self) -> &InstrumentRecord {
        zerocopy::transmute_ref!(self)
    }

    /// Decodes and structurally validates the record: known codes, legal combinations, zero in
    /// every field the kind does not use. Semantic checks (tick, lot, band...) are the matcher's.
    #[inline]
    pub fn decode(&self) -> Result<Command, DecodeError> {
        match self.decode_fast() {
            Some(command) => Ok(command),
            None => self.decode_checked(),
        }
    }

    /// The hot kinds (NewOrder, Cancel, Replace) when the record is valid: every unused byte is
    /// checked with one mask per 8-byte word. `None` for anything else, which then takes
    /// [`CommandRecord::decode_checked`] (same result, and the precise error).
    #[inline(always)]
    pub(crate) fn decode_fast(&self) -> Option<Command> {
        match self.kind {
            KIND_NEW_ORDER => self.decode_new_order_fast().map(Command::NewOrder),
            KIND_CANCEL => self.decode_cancel_fast().map(Command::Cancel),
            KIND_REPLACE => self.decode_replace_fast().map(Command::Replace),
            _ => None,
        }
    }

    /// Whether every bit outside `masks` is zero and the account id is not.
    #[inline(always)]
    fn fast_fields_ok(&self, masks: &[u64; 8]) -> bool {
        let words: &[U64; 8] = zerocopy::transmute_ref!(self);
        let mut unused = 0u64;
        for (word, mask) in words.iter().zip(masks) {
            unused |= word.get() & !mask;
        }
        unused == 0 && self.account_id.get() != 0
    }

    /// [`CommandRecord::decode_fast`] of a record whose kind is NewOrder.
    #[inline(always)]
    pub(crate) fn decode_new_order_fast(&self) -> Option<NewOrder> {
        debug_assert_eq!(self.kind, KIND_NEW_ORDER);
        if !self.fast_fields_ok(&MASK_NEW_ORDER) {
            return None;
        }
        let side = Side::from_u8(self.side)?;
        let order_type = OrderType::from_u8(self.order_type)?;
        let time_in_force = TimeInForce::from_u8(self.time_in_force)?;
        let stp_mode = StpMode::from_u8(self.stp_mode)?;
        let post_only = self.flags == FLAG_POST_ONLY;
        let instrument_id = self.instrument_id.get();
        let price = self.price.get();
        let market_ok = order_type == OrderType::Limit || (!time_in_force.rests() && price == 0);
        let post_only_ok = !post_only || (order_type == OrderType::Limit && time_in_force.rests());
        if instrument_id == 0 || self.flags & !FLAG_POST_ONLY != 0 || !market_ok || !post_only_ok {
            return None;
        }
        Some(NewOrder {
            instrument_id,
            account_id: self.account_id.get(),
            client_order_id: self.client_order_id.get(),
            side,
            order_type,
            time_in_force,
            stp_mode,
            post_only,
            price,
            quantity: self.quantity.get(),
        })
    }

    /// [`CommandRecord::decode_fast`] of a record whose kind is Cancel.
    #[inline(always)]
    pub(crate) fn decode_cancel_fast(&self) -> Option<Cancel> {
        debug_assert_eq!(self.kind, KIND_CANCEL);
        if !self.fast_fields_ok(&MASK_CANCEL) {
            return None;
        }
        Some(Cancel {
            account_id: self.account_id.get(),
            order_id: self.order_id.get(),
        })
    }

    /// [`CommandRecord::decode_fast`] of a record whose kind is Replace.
    #[inline(always)]
    pub(crate) fn decode_replace_fast(&self) -> Option<Replace> {
        debug_assert_eq!(self.kind, KIND_REPLACE);
        if !self.fast_fields_ok(&MASK_REPLACE) {
            return None;
        }
        Some(Replace {
            account_id: self.account_id.get(),
            order_id: self.order_id.get(),
            client_order_id: self.client_order_id.get(),
            price: self.price.get(),
            quantity: self.quantity.get(),
        })
    }

    /// Field-by-field decoding with the precise error.
    pub(crate) fn decode_checked(&self) -> Result<Command, DecodeError> {
        let kind = CommandKind::from_u8(self.kind).ok_or(DecodeError::Kind { kind: self.kind })?;
        if kind == CommandKind::AddInstrument {
            return decode_instrument(self.instrument_record()).map(Command::AddInstrument);
        }
        if self.reserved_0.get() != 0 || self.reserved_1.get() != 0 || self.reserved_2.get() != 0 {
            return Err(DecodeError::Reserved);
        }
        let used = Used::of(kind);
        let unused_nonzero = (!used.side && self.side != 0)
            || (!used.order_fields
                && (self.order_type | self.time_in_force | self.stp_mode | self.flags) != 0)
            || (!used.instrument_id && self.instrument_id.get() != 0)
            || (!used.account_id && self.account_id.get() != 0)
            || (!used.client_order_id && self.client_order_id.get() != 0)
            || (!used.order_id && self.order_id.get() != 0)
            || (!used.price && self.price.get() != 0)
            || (!used.quantity && self.quantity.get() != 0);
        if unused_nonzero {
            return Err(DecodeError::UnusedField);
        }
        let account_id = self.account_id.get();
        if used.account_id && account_id == 0 {
            return Err(DecodeError::Field {
                field: "account_id",
            });
        }
        let instrument_id = self.instrument_id.get();
        if used.instrument_id && kind != CommandKind::MassCancel && instrument_id == 0 {
            return Err(DecodeError::Field {
                field: "instrument_id",
            });
        }
        Ok(match kind {
            CommandKind::NewOrder => Command::NewOrder(self.decode_new_order()?),
            CommandKind::Cancel => Command::Cancel(Cancel {
                account_id,
                order_id: self.order_id.get(),
            }),
            CommandKind::Replace => Command::Replace(Replace {
                account_id,
                order_id: self.order_id.get(),
                client_order_id: self.client_order_id.get(),
                price: self.price.get(),
                quantity: self.quantity.get(),
            }),
            CommandKind::MassCancel => Command::MassCancel(MassCancel {
                account_id,
                instrument_id: if instrument_id == 0 {
                    None
                } else {
                    Some(instrument_id)
                },
                side: match self.side {
                    0 => None,
                    code => Some(Side::from_u8(code).ok_or(DecodeError::Field { field: "side" })?),
                },
            }),
            CommandKind::Halt => Command::Halt { instrument_id },
            CommandKind::Resume => Command::Resume { instrument_id },
            CommandKind::KillSwitchOn => Command::KillSwitch {
                account_id,
                on: true,
            },
            CommandKind::KillSwitchOff => Command::KillSwitch {
                account_id,
                on: false,
            },
            CommandKind::EndOfDay => Command::EndOfDay { instrument_id },
            CommandKind::SetReferencePrice => Command::SetReferencePrice {
                instrument_id,
                price: self.price.get(),
            },
            CommandKind::AddInstrument => unreachable!("handled above"),
        })
    }

    fn decode_new_order(&self) -> Result<NewOrder, DecodeError> {
        let side = Side::from_u8(self.side).ok_or(DecodeError::Field { field: "side" })?;
        let order_type = OrderType::from_u8(self.order_type).ok_or(DecodeError::Field {
            field: "order_type",
        })?;
        let time_in_force = TimeInForce::from_u8(self.time_in_force).ok_or(DecodeError::Field {
            field: "time_in_force",
        })?;
        let stp_mode =
            StpMode::from_u8(self.stp_mode).ok_or(DecodeError::Field { field: "stp_mode" })?;
        if self.flags & !FLAG_POST_ONLY != 0 {
            return Err(DecodeError::Field { field: "flags" });
        }
        let post_only = self.flags & FLAG_POST_ONLY != 0;
        if order_type == OrderType::Market {
            if time_in_force.rests() {
                return Err(DecodeError::Field {
                    field: "time_in_force",
                });
            }
            if self.price.get() != 0 {
                return Err(DecodeError::Field { field: "price" });
            }
        }
        if post_only && (order_type == OrderType::Market || !time_in_force.rests()) {
            return Err(DecodeError::Field { field: "flags" });
        }
        Ok(NewOrder {
            instrument_id: self.instrument_id.get(),
            account_id: self.account_id.get(),
            client_order_id: self.client_order_id.get(),
            side,
            order_type,
            time_in_force,
            stp_mode,
            post_only,
            price: self.price.get(),
            quantity: self.quantity.get(),
        })
    }
}

impl core::fmt::Debug for CommandRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.decode() {
            Ok(command) => write!(f, "CommandRecord({command:?})"),
            Err(error) => write!(f, "CommandRecord(invalid: {error}, {:?})", self.as_bytes()),
        }
    }
}

/// Which fields of the shared layout each kind reads.
struct Used {
    side: bool,
    order_fields: bool,
    instrument_id: bool,
    account_id: bool,
    client_order_id: bool,
    order_id: bool,
    price: bool,
    quantity: bool,
}

impl Used {
    fn of(kind: CommandKind) -> Used {
        let none = Used {
            side: false,
            order_fields: false,
            instrument_id: false,
            account_id: false,
            client_order_id: false,
            order_id: false,
            price: false,
            quantity: false,
        };
        match kind {
            CommandKind::NewOrder => Used {
                side: true,
                order_fields: true,
                instrument_id: true,
                account_id: true,
                client_order_id: true,
                price: true,
                quantity: true,
                ..none
            },
            CommandKind::Cancel => Used {
                account_id: true,
                order_id: true,
                ..none
            },
            CommandKind::Replace => Used {
                account_id: true,
                client_order_id: true,
                order_id: true,
                price: true,
                quantity: true,
                ..none
            },
            CommandKind::MassCancel => Used {
                side: true,
                instrument_id: true,
                account_id: true,
                ..none
            },
            CommandKind::Halt | CommandKind::Resume | CommandKind::EndOfDay => Used {
                instrument_id: true,
                ..none
            },
            CommandKind::KillSwitchOn | CommandKind::KillSwitchOff => Used {
                account_id: true,
                ..none
            },
            CommandKind::SetReferencePrice => Used {
                instrument_id: true,
                price: true,
                ..none
            },
            CommandKind::AddInstrument => unreachable!("AddInstrument has its own layout"),
        }
    }
}

fn decode_instrument(record: &InstrumentRecord) -> Result<InstrumentConfig, DecodeError> {
    if record.reserved_0 != 0 {
        return Err(DecodeError::Reserved);
    }
    if record.instrument_id.get() == 0 {
        return Err(DecodeError::Field {
            field: "instrument_id",
        });
    }
    Ok(InstrumentConfig {
        instrument_id: record.instrument_id.get(),
        symbol: record.symbol,
        price_exponent: record.price_exponent,
        quantity_exponent: record.quantity_exponent,
        tick_size: record.tick_size.get(),
        lot_size: record.lot_size.get(),
        price_min: record.price_min.get(),
        price_levels: record.price_levels.get(),
        band_width_ticks: record.band_width_ticks.get(),
        reference_price: record.reference_price.get(),
        quantity_min_lots: record.quantity_min_lots.get(),
        quantity_max_lots: record.quantity_max_lots.get(),
        notional_max: record.notional_max.get(),
    })
}

/// Why a record could not be decoded. The matcher answers such a record with
/// `Rejected(Malformed)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not exactly one aligned record.
    #[error(
        "command payload of {length} bytes is not one aligned {COMMAND_RECORD_SIZE}-byte record"
    )]
    Size {
        /// Length of the payload.
        length: u64,
    },
    /// Unknown kind byte.
    #[error("unknown command kind {kind}")]
    Kind {
        /// The kind byte.
        kind: u8,
    },
    /// A reserved field is not zero.
    #[error("reserved field is not zero")]
    Reserved,
    /// A field the kind does not use is not zero.
    #[error("a field unused by this command kind is not zero")]
    UnusedField,
    /// A field has an invalid code or combination.
    #[error("invalid value in field {field}")]
    Field {
        /// Field name.
        field: &'static str,
    },
}

/// A decoded command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// See [`NewOrder`].
    NewOrder(NewOrder),
    /// See [`Cancel`].
    Cancel(Cancel),
    /// See [`Replace`].
    Replace(Replace),
    /// See [`MassCancel`].
    MassCancel(MassCancel),
    /// See [`InstrumentConfig`].
    AddInstrument(InstrumentConfig),
    /// Halt trading: new orders and replaces are rejected; cancels still work.
    Halt {
        /// Instrument.
        instrument_id: u32,
    },
    /// Resume trading.
    Resume {
        /// Instrument.
        instrument_id: u32,
    },
    /// Kill switch on (cancels every resting order of the account, rejects its new orders) or off.
    KillSwitch {
        /// Account.
        account_id: u32,
        /// On or off.
        on: bool,
    },
    /// End of day: expire the instrument's resting DAY orders.
    EndOfDay {
        /// Instrument.
        instrument_id: u32,
    },
    /// New reference price (centre of the dynamic band, and base of market protection).
    SetReferencePrice {
        /// Instrument.
        instrument_id: u32,
        /// Price in price units.
        price: i64,
    },
}

/// A new order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// Instrument.
    pub instrument_id: u32,
    /// Owner.
    pub account_id: u32,
    /// Client order id; must not equal that of a resting order of the same account.
    pub client_order_id: u64,
    /// Side.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Time in force; market orders take IOC or FOK.
    pub time_in_force: TimeInForce,
    /// Self-trade prevention mode.
    pub stp_mode: StpMode,
    /// Reject instead of taking liquidity (limit GTC/DAY only).
    pub post_only: bool,
    /// Limit price in price units; 0 for market orders.
    pub price: i64,
    /// Quantity in quantity units.
    pub quantity: u64,
}

/// Cancel a resting order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancel {
    /// Must own the order.
    pub account_id: u32,
    /// Exchange order id.
    pub order_id: u64,
}

/// Cancel/replace a resting order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replace {
    /// Must own the order.
    pub account_id: u32,
    /// Exchange order id (kept by the replaced order).
    pub order_id: u64,
    /// New client order id.
    pub client_order_id: u64,
    /// New limit price.
    pub price: i64,
    /// New total quantity (including what has already filled).
    pub quantity: u64,
}

/// Cancel an account's resting orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MassCancel {
    /// Account whose orders are cancelled.
    pub account_id: u32,
    /// Only this instrument (None: all).
    pub instrument_id: Option<u32>,
    /// Only this side (None: both).
    pub side: Option<Side>,
}

/// Static configuration of an instrument (the `AddInstrument` command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstrumentConfig {
    /// Instrument id, `1..=instrument_capacity`.
    pub instrument_id: u32,
    /// Symbol, ASCII, NUL padded.
    pub symbol: [u8; 8],
    /// Price unit is `10^price_exponent`; prices in commands and events are integers in this unit.
    pub price_exponent: i8,
    /// Quantity unit is `10^quantity_exponent`.
    pub quantity_exponent: i8,
    /// Tick size in price units (tick size as a decimal: `tick_size * 10^price_exponent`).
    pub tick_size: u32,
    /// Lot size in quantity units (lot size as a decimal: `lot_size * 10^quantity_exponent`).
    pub lot_size: u32,
    /// Lowest valid price in price units.
    pub price_min: i64,
    /// Number of ticks in `[price_min, price_max]`; `price_max = price_min + (price_levels - 1) * tick_size`.
    pub price_levels: u32,
    /// Half-width of the dynamic price band in ticks (0: none).
    pub band_width_ticks: u32,
    /// Initial reference price.
    pub reference_price: i64,
    /// Smallest quantity in lots.
    pub quantity_min_lots: u32,
    /// Largest quantity in lots.
    pub quantity_max_lots: u32,
    /// Largest `|price| * quantity` (0: unlimited).
    pub notional_max: u64,
}

impl InstrumentConfig {
    /// Highest valid price, if the configuration is valid.
    pub fn price_max(&self) -> Option<i64> {
        let span =
            i64::from(self.price_levels.checked_sub(1)?).checked_mul(i64::from(self.tick_size))?;
        self.price_min.checked_add(span)
    }

    /// Checks the configuration; the matcher rejects `AddInstrument` with
    /// `InvalidInstrumentConfig` if this fails.
    pub fn validate(&self) -> bool {
        let exponents_ok = (-EXPONENT_ABS_MAX..=EXPONENT_ABS_MAX).contains(&self.price_exponent)
            && (-EXPONENT_ABS_MAX..=EXPONENT_ABS_MAX).contains(&self.quantity_exponent);
        let tick = i64::from(self.tick_size);
        let Some(price_max) = (if self.tick_size == 0 {
            None
        } else {
            self.price_max()
        }) else {
            return false;
        };
        exponents_ok
            && self.instrument_id != 0
            && self.lot_size != 0
            && self.price_levels >= 1
            && self.price_levels <= PRICE_LEVELS_PER_SIDE_MAX
            && self.price_min % tick == 0
            && self.reference_price % tick == 0
            && self.reference_price >= self.price_min
            && self.reference_price <= price_max
            && self.quantity_min_lots >= 1
            && self.quantity_min_lots <= self.quantity_max_lots
    }

    /// Encodes as an `AddInstrument` record.
    pub fn encode(&self) -> CommandRecord {
        let record = InstrumentRecord {
            kind: CommandKind::AddInstrument as u8,
            price_exponent: self.price_exponent,
            quantity_exponent: self.quantity_exponent,
            reserved_0: 0,
            band_width_ticks: U32::new(self.band_width_ticks),
            instrument_id: U32::new(self.instrument_id),
            price_levels: U32::new(self.price_levels),
            symbol: self.symbol,
            tick_size: U32::new(self.tick_size),
            lot_size: U32::new(self.lot_size),
            price_min: I64::new(self.price_min),
            reference_price: I64::new(self.reference_price),
            quantity_min_lots: U32::new(self.quantity_min_lots),
            quantity_max_lots: U32::new(self.quantity_max_lots),
            notional_max: U64::new(self.notional_max),
        };
        zerocopy::transmute!(record)
    }
}

impl Command {
    /// The kind code of this command.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::NewOrder(_) => CommandKind::NewOrder,
            Command::Cancel(_) => CommandKind::Cancel,
            Command::Replace(_) => CommandKind::Replace,
            Command::MassCancel(_) => CommandKind::MassCancel,
            Command::AddInstrument(_) => CommandKind::AddInstrument,
            Command::Halt { .. } => CommandKind::Halt,
            Command::Resume { .. } => CommandKind::Resume,
            Command::KillSwitch { on: true, .. } => CommandKind::KillSwitchOn,
            Command::KillSwitch { on: false, .. } => CommandKind::KillSwitchOff,
            Command::EndOfDay { .. } => CommandKind::EndOfDay,
            Command::SetReferencePrice { .. } => CommandKind::SetReferencePrice,
        }
    }

    /// Encodes into the fixed 64-byte record. `decode(encode(c)) == c` for every command that
    /// `decode` can produce.
    pub fn encode(&self) -> CommandRecord {
        let mut record = CommandRecord::zeroed();
        record.kind = self.kind() as u8;
        match *self {
            Command::NewOrder(order) => {
                record.side = order.side as u8;
                record.order_type = order.order_type as u8;
                record.time_in_force = order.time_in_force as u8;
                record.stp_mode = order.stp_mode as u8;
                record.flags = if order.post_only { FLAG_POST_ONLY } else { 0 };
                record.instrument_id = U32::new(order.instrument_id);
                record.account_id = U32::new(order.account_id);
                record.client_order_id = U64::new(order.client_order_id);
                record.price = I64::new(order.price);
                record.quantity = U64::new(order.quantity);
            }
            Command::Cancel(cancel) => {
                record.account_id = U32::new(cancel.account_id);
                record.order_id = U64::new(cancel.order_id);
            }
            Command::Replace(replace) => {
                record.account_id = U32::new(replace.account_id);
                record.order_id = U64::new(replace.order_id);
                record.client_order_id = U64::new(replace.client_order_id);
                record.price = I64::new(replace.price);
                record.quantity = U64::new(replace.quantity);
            }
            Command::MassCancel(mass) => {
                record.account_id = U32::new(mass.account_id);
                record.instrument_id = U32::new(mass.instrument_id.unwrap_or(0));
                record.side = mass.side.map_or(0, |side| side as u8);
            }
            Command::AddInstrument(config) => return config.encode(),
            Command::Halt { instrument_id }
            | Command::Resume { instrument_id }
            | Command::EndOfDay { instrument_id } => {
                record.instrument_id = U32::new(instrument_id);
            }
            Command::KillSwitch { account_id, .. } => {
                record.account_id = U32::new(account_id);
            }
            Command::SetReferencePrice {
                instrument_id,
                price,
            } => {
                record.instrument_id = U32::new(instrument_id);
                record.price = I64::new(price);
            }
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_offsets() {
        let mut record = CommandRecord::zeroed();
        record.instrument_id = U32::new(0x0102_0304);
        record.price = I64::new(-2);
        let bytes = record.as_bytes();
        assert_eq!(&bytes[8..12], &[4, 3, 2, 1]);
        assert_eq!(&bytes[32..40], &(-2i64).to_le_bytes());
    }

    #[test]
    fn round_trip() {
        let order = Command::NewOrder(NewOrder {
            instrument_id: 3,
            account_id: 9,
            client_order_id: 77,
            side: Side::Sell,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Day,
            stp_mode: StpMode::CancelBoth,
            post_only: true,
            price: -5,
            quantity: 10,
        });
        let record = order.encode();
        assert_eq!(record.decode(), Ok(order));
        let copied = CommandRecord::read_from_bytes(record.as_bytes());
        assert_eq!(copied.map(|r| r.decode()), Ok(Ok(order)));
    }

    #[test]
    fn unused_fields_must_be_zero() {
        let mut record = Command::Cancel(Cancel {
            account_id: 1,
            order_id: 2,
        })
        .encode();
        record.price = I64::new(1);
        assert_eq!(record.decode(), Err(DecodeError::UnusedField));
    }

    /// The masked fast path accepts exactly what the field-by-field path accepts, with the same
    /// result: records with few, small non-zero bytes (so that codes are often valid).
    #[test]
    fn fast_decode_agrees_with_checked_decode() {
        let mut state = 7u64;
        let mut accepted = 0u32;
        for _ in 0..200_000 {
            let mut bytes = [0u8; COMMAND_RECORD_SIZE];
            state = crate::hash::mix2(state, 1);
            bytes[0] = 1 + (state % 3) as u8;
            for draw in 0..1 + (state >> 8) % 6 {
                let value = crate::hash::mix2(state, draw);
                let offset = (value % COMMAND_RECORD_SIZE as u64) as usize;
                bytes[offset] = ((value >> 16) % 6) as u8;
            }
            let record = CommandRecord::read_from_bytes(&bytes).expect("64 bytes");
            match (record.decode_fast(), record.decode_checked()) {
                (Some(fast), checked) => {
                    assert_eq!(checked, Ok(fast), "{bytes:?}");
                    accepted += 1;
                }
                (None, checked) => {
                    assert!(
                        checked.is_err() || !(1..=3).contains(&bytes[0]),
                        "{bytes:?}"
                    )
                }
            }
        }
        assert!(
            accepted > 1_000,
            "the fast path must be exercised: {accepted}"
        );
    }
}
