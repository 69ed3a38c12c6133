//! Snapshots: the whole logical state as canonical bytes, and back.
//!
//! The encoding never contains pool slots or table layout, only logical state in a canonical
//! order (instruments by id, accounts by id, orders by order id), so equal states give equal
//! bytes. Restore validates every field and the state hash; corrupt bytes are an error, never a
//! panic.

use crate::book::{Matcher, NIL};
use crate::command::{Command, CommandRecord, Side, StpMode, TimeInForce};
use crate::event::Event;
use crate::{Config, EventSink};
use zerocopy::little_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `b"MATCHSNP"` read as a little-endian u64.
const SNAPSHOT_MAGIC: u64 = u64::from_le_bytes(*b"MATCHSNP");
const SNAPSHOT_VERSION: u32 = 1;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct SnapshotHeader {
    magic: U64,
    version: U32,
    reserved: U32,
    sequence_last: U64,
    timestamp_ns_last: U64,
    trade_id_next: U64,
    instrument_count: U32,
    account_count: U32,
    order_count: U32,
    reserved_1: U32,
    state_hash: U64,
}
const _: () = assert!(core::mem::size_of::<SnapshotHeader>() == 64);

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct InstrumentEntry {
    /// The `AddInstrument` record.
    record: [u8; 64],
    reference_price: I64,
    halted: u8,
    reserved: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<InstrumentEntry>() == 80);

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct AccountEntry {
    account_id: U32,
    killed: u8,
    reserved: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<AccountEntry>() == 8);

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct OrderEntry {
    order_id: U64,
    client_order_id: U64,
    price: I64,
    quantity: U64,
    leaves: U64,
    priority_sequence: U64,
    account_id: U32,
    instrument_id: U32,
    side: u8,
    time_in_force: u8,
    stp_mode: u8,
    post_only: u8,
    reserved: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<OrderEntry>() == 64);

/// Why a snapshot could not be restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The configuration is invalid.
    #[error("invalid config: {0}")]
    Config(#[from] crate::ConfigError),
    /// The bytes end early.
    #[error("snapshot truncated")]
    Truncated,
    /// Bytes after the last entry.
    #[error("snapshot has trailing bytes")]
    TrailingBytes,
    /// Not a snapshot, or another version.
    #[error("bad snapshot magic or version")]
    Magic,
    /// The state does not fit the configured capacities.
    #[error("snapshot exceeds configured capacity: {what}")]
    Capacity {
        /// Which capacity.
        what: &'static str,
    },
    /// A field is invalid or inconsistent.
    #[error("invalid snapshot field: {what}")]
    Invalid {
        /// Which field.
        what: &'static str,
    },
    /// The restored state does not hash to the recorded state hash.
    #[error("snapshot state hash mismatch")]
    HashMismatch,
}

struct Discard;
impl EventSink for Discard {
    fn event(&mut self, _: &Event) {}
}

fn invalid(what: &'static str) -> SnapshotError {
    SnapshotError::Invalid { what }
}

/// Reads one fixed-size entry off the front of `bytes`.
fn take<T: FromBytes>(bytes: &mut &[u8]) -> Result<T, SnapshotError> {
    let (value, rest) = T::read_from_prefix(bytes).map_err(|_| SnapshotError::Truncated)?;
    *bytes = rest;
    Ok(value)
}

impl Matcher {
    /// Writes the canonical encoding of the whole state into `out` (cleared first). Equal logical
    /// states give equal bytes. Allocates scratch space: not for the hot path.
    pub fn snapshot(&self, out: &mut Vec<u8>) {
        out.clear();
        let instruments: Vec<usize> = (0..self.instruments.len())
            .filter(|index| self.instruments[*index].active)
            .collect();
        let mut accounts: Vec<(u32, u32)> = (0..self.account_ids.len())
            .map(|slot| (self.accounts[slot as usize].account_id, slot))
            .collect();
        accounts.sort_unstable();
        let mut orders: Vec<(u64, u32)> = (0..self.orders.len() as u32)
            .filter(|slot| self.orders[*slot as usize].order_id != 0)
            .map(|slot| (self.orders[slot as usize].order_id, slot))
            .collect();
        orders.sort_unstable();
        let header = SnapshotHeader {
            magic: U64::new(SNAPSHOT_MAGIC),
            version: U32::new(SNAPSHOT_VERSION),
            reserved: U32::new(0),
            sequence_last: U64::new(self.sequence_last),
            timestamp_ns_last: U64::new(self.timestamp_ns_last),
            trade_id_next: U64::new(self.trade_id_next),
            instrument_count: U32::new(instruments.len() as u32),
            account_count: U32::new(accounts.len() as u32),
            order_count: U32::new(orders.len() as u32),
            reserved_1: U32::new(0),
            state_hash: U64::new(self.state_hash()),
        };
        out.extend_from_slice(header.as_bytes());
        for index in instruments {
            let instrument = &self.instruments[index];
            let mut record = [0u8; 64];
            record.copy_from_slice(instrument.config.encode().as_bytes());
            let entry = InstrumentEntry {
                record,
                reference_price: I64::new(instrument.reference_price),
                halted: u8::from(instrument.halted),
                reserved: [0; 7],
            };
            out.extend_from_slice(entry.as_bytes());
        }
        for (account_id, slot) in accounts {
            let entry = AccountEntry {
                account_id: U32::new(account_id),
                killed: u8::from(self.accounts[slot as usize].killed),
                reserved: [0; 3],
            };
            out.extend_from_slice(entry.as_bytes());
        }
        for (_, slot) in orders {
            let order = self.order_view(slot);
            let entry = OrderEntry {
                order_id: U64::new(order.order_id),
                client_order_id: U64::new(order.client_order_id),
                price: I64::new(order.price),
                quantity: U64::new(order.quantity),
                leaves: U64::new(order.leaves),
                priority_sequence: U64::new(order.priority_sequence),
                account_id: U32::new(order.account_id),
                instrument_id: U32::new(order.instrument_id),
                side: order.side as u8,
                time_in_force: order.time_in_force as u8,
                stp_mode: order.stp_mode as u8,
                post_only: u8::from(order.post_only),
                reserved: [0; 4],
            };
            out.extend_from_slice(entry.as_bytes());
        }
    }

    /// Rebuilds a matcher from [`Matcher::snapshot`] bytes. The result behaves exactly like the
    /// matcher that wrote them: same events and same state hashes for the same later commands.
    pub fn restore(config: Config, bytes: &[u8]) -> Result<Matcher, SnapshotError> {
        let mut matcher = Matcher::new(config)?;
        let mut rest = bytes;
        let header: SnapshotHeader = take(&mut rest)?;
        if header.magic.get() != SNAPSHOT_MAGIC || header.version.get() != SNAPSHOT_VERSION {
            return Err(SnapshotError::Magic);
        }
        if header.reserved.get() != 0 || header.reserved_1.get() != 0 {
            return Err(invalid("header reserved"));
        }
        let sequence_last = header.sequence_last.get();
        if header.trade_id_next.get() == 0 {
            return Err(invalid("trade_id_next"));
        }
        if header.instrument_count.get() > config.instrument_capacity {
            return Err(SnapshotError::Capacity {
                what: "instruments",
            });
        }
        if header.account_count.get() > config.account_capacity {
            return Err(SnapshotError::Capacity { what: "accounts" });
        }
        if header.order_count.get() > config.order_capacity {
            return Err(SnapshotError::Capacity { what: "orders" });
        }

        let mut instrument_id_previous = 0u32;
        for _ in 0..header.instrument_count.get() {
            let entry: InstrumentEntry = take(&mut rest)?;
            let record =
                CommandRecord::read_from_bytes(&entry.record).map_err(|_| invalid("instrument"))?;
            let Ok(Command::AddInstrument(instrument_config)) = record.decode() else {
                return Err(invalid("instrument record"));
            };
            if instrument_config.instrument_id <= instrument_id_previous {
                return Err(invalid("instrument order"));
            }
            instrument_id_previous = instrument_config.instrument_id;
            // Reuse the command path so that validation and layout are identical.
            let sequence = matcher.sequence_last + 1;
            let command = Command::AddInstrument(instrument_config);
            matcher.apply_command(sequence, 0, &command, &mut Discard);
            if matcher
                .instrument(instrument_config.instrument_id)
                .is_none()
            {
                return Err(SnapshotError::Capacity { what: "instrument" });
            }
            if entry.halted > 1 || entry.reserved != [0; 7] {
                return Err(invalid("instrument status"));
            }
            let index = instrument_config.instrument_id as usize - 1;
            let instrument = &mut matcher.instruments[index];
            let reference_price = entry.reference_price.get();
            if reference_price % instrument.tick != 0
                || reference_price < instrument_config.price_min
                || reference_price > instrument.price_max
            {
                return Err(invalid("reference price"));
            }
            matcher.hash_instruments = matcher.hash_instruments.wrapping_sub(instrument.hash);
            instrument.halted = entry.halted == 1;
            instrument.set_reference_price(reference_price);
            matcher.hash_instruments = matcher.hash_instruments.wrapping_add(instrument.hash);
        }

        let mut account_id_previous = 0u32;
        for _ in 0..header.account_count.get() {
            let entry: AccountEntry = take(&mut rest)?;
            let account_id = entry.account_id.get();
            if account_id <= account_id_previous || entry.killed > 1 || entry.reserved != [0; 3] {
                return Err(invalid("account"));
            }
            account_id_previous = account_id;
            let sequence = matcher.sequence_last + 1;
            let on = entry.killed == 1;
            matcher.apply_command(
                sequence,
                0,
                &Command::KillSwitch { account_id, on },
                &mut Discard,
            );
            if matcher.account_ids.get(account_id).is_none() {
                return Err(SnapshotError::Capacity { what: "accounts" });
            }
        }

        let mut order_id_previous = 0u64;
        let mut by_priority: Vec<(u64, u32)> =
            Vec::with_capacity(header.order_count.get() as usize);
        for _ in 0..header.order_count.get() {
            let entry: OrderEntry = take(&mut rest)?;
            let slot = matcher.restore_order(&entry, order_id_previous, sequence_last)?;
            order_id_previous = entry.order_id.get();
            by_priority.push((entry.priority_sequence.get(), slot));
        }
        if !rest.is_empty() {
            return Err(SnapshotError::TrailingBytes);
        }
        by_priority.sort_unstable();
        if by_priority.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return Err(invalid("duplicate priority sequence"));
        }
        for (_, slot) in by_priority {
            matcher.restore_link(slot);
        }
        for instrument in matcher
            .instruments
            .iter()
            .filter(|instrument| instrument.active)
        {
            let (bid, ask) = (
                instrument.best[Side::Buy.index()],
                instrument.best[Side::Sell.index()],
            );
            if bid != NIL && ask != NIL && bid >= ask {
                return Err(invalid("crossed book"));
            }
        }
        matcher.sequence_last = sequence_last;
        matcher.timestamp_ns_last = header.timestamp_ns_last.get();
        matcher.trade_id_next = header.trade_id_next.get();
        if matcher.state_hash() != header.state_hash.get() {
            return Err(SnapshotError::HashMismatch);
        }
        Ok(matcher)
    }

    /// Validates one order entry and puts it in the pool, the tables and its account's list
    /// (not yet in a level).
    fn restore_order(
        &mut self,
        entry: &OrderEntry,
        order_id_previous: u64,
        sequence_last: u64,
    ) -> Result<u32, SnapshotError> {
        let order_id = entry.order_id.get();
        let priority_sequence = entry.priority_sequence.get();
        if order_id <= order_id_previous
            || priority_sequence < order_id
            || priority_sequence > sequence_last
        {
            return Err(invalid("order id or priority"));
        }
        let instrument_index = (entry.instrument_id.get() as usize)
            .checked_sub(1)
            .filter(|index| {
                self.instruments
                    .get(*index)
                    .is_some_and(|instrument| instrument.active)
            })
            .ok_or(invalid("order instrument"))?;
        let account_slot = self
            .account_ids
            .get(entry.account_id.get())
            .ok_or(invalid("order account"))?;
        if self.accounts[account_slot as usize].killed {
            return Err(invalid("order of killed account"));
        }
        let side = Side::from_u8(entry.side).ok_or(invalid("order side"))?;
        let time_in_force = TimeInForce::from_u8(entry.time_in_force)
            .filter(|tif| tif.rests())
            .ok_or(invalid("order time in force"))?;
        let stp_mode = StpMode::from_u8(entry.stp_mode).ok_or(invalid("order stp mode"))?;
        if entry.post_only > 1 || entry.reserved != [0; 4] {
            return Err(invalid("order flags"));
        }
        let instrument = &self.instruments[instrument_index];
        let price = entry.price.get();
        if price % instrument.tick != 0
            || price < instrument.config.price_min
            || price > instrument.price_max
        {
            return Err(invalid("order price"));
        }
        let (quantity, leaves) = (entry.quantity.get(), entry.leaves.get());
        if leaves == 0 || leaves > quantity {
            return Err(invalid("order quantity"));
        }
        if self
            .client_order_slot(account_slot, entry.client_order_id.get())
            .is_some()
        {
            return Err(invalid("duplicate client order id"));
        }
        if self.orders_live >= self.config.order_capacity {
            return Err(SnapshotError::Capacity { what: "orders" });
        }
        let level_index = instrument.index_of(price);
        let slot = self.order_slot_take(order_id, account_slot);
        let order = &mut self.orders[slot as usize];
        order.order_id = order_id;
        order.client_order_id = entry.client_order_id.get();
        order.quantity = quantity;
        order.leaves = leaves;
        order.priority_sequence = priority_sequence;
        order.prev = NIL;
        order.next = NIL;
        order.account_slot = account_slot;
        order.instrument_index = instrument_index as u16;
        order.level_index = level_index;
        order.side = side;
        order.time_in_force = time_in_force;
        order.stp_mode = stp_mode;
        order.post_only = entry.post_only == 1;
        self.client_order_insert(account_slot, entry.client_order_id.get(), slot);
        Ok(slot)
    }
}
