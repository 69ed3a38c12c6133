//! The subscriber's order-level books, rebuilt from ITCH messages.
//!
//! Every capacity is fixed by [`BookConfig`]: the order pool and the reference index are
//! allocated in [`Book::new`], and an instrument's two level arrays when its Stock Directory
//! arrives; nothing grows after that. A message that does not fit the book (unknown reference,
//! more shares executed than resting, a full pool...) is refused with a [`BookError`] and
//! changes nothing: each operation checks everything before it mutates.
//!
//! Each side keeps its non-empty levels in an array sorted so that the best level is last
//! (bids by ascending price, asks by descending price): levels near the top, where most
//! changes happen, move few entries when a level appears or empties; a level is found by
//! binary search. Each level is a FIFO of its orders (a doubly linked list through the pool),
//! so the book is in price-time order. The [`Checksum`] is kept up to date as levels change.

use crate::checksum::Checksum;
use crate::itch::{self, BuySell, Header, Message};
use crate::mapping::{encode_to, MessageSink};
use crate::table::Table;

const NIL: u32 = u32::MAX;

/// Capacities of a [`Book`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookConfig {
    /// Stock locates `1..=instrument_capacity` are accepted (at most 65,535).
    pub instrument_capacity: u16,
    /// Resting orders, all instruments together (below `u32::MAX`).
    pub order_capacity: u32,
    /// Non-empty price levels per side of one instrument.
    pub levels_per_side_max: u32,
}

/// A message the book cannot apply. The book is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// A locate with no Stock Directory yet.
    #[error("stock locate {0} has no Stock Directory")]
    UnknownInstrument(u16),
    /// A locate above the configured capacity (or 0).
    #[error("stock locate {0} outside 1..=instrument_capacity")]
    InstrumentCapacity(u16),
    /// An Add Order or Replace with a reference that is resting.
    #[error("order reference {0} is already resting")]
    DuplicateReference(u64),
    /// A reference that is not resting.
    #[error("order reference {0} is not resting")]
    UnknownReference(u64),
    /// The message's locate differs from the order's.
    #[error("order reference {reference} rests in locate {resting}, the message says {message}")]
    LocateMismatch {
        /// Order.
        reference: u64,
        /// Its locate.
        resting: u16,
        /// The message's locate.
        message: u16,
    },
    /// An order of 0 shares, or an execution or cancel of 0 shares.
    #[error("zero shares")]
    ZeroShares,
    /// More shares executed or cancelled than the order has.
    #[error("order reference {reference} has {resting} shares, {requested} requested")]
    Overdraw {
        /// Order.
        reference: u64,
        /// Its shares.
        resting: u32,
        /// Shares in the message.
        requested: u32,
    },
    /// The order pool is full.
    #[error("order capacity reached")]
    OrderCapacity,
    /// A side has `levels_per_side_max` levels.
    #[error("stock locate {0}: level capacity of a side reached")]
    LevelCapacity(u16),
}

/// One price level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelView {
    /// Price(4).
    pub price: u32,
    /// Total shares.
    pub shares: u64,
    /// Resting orders.
    pub order_count: u32,
}

/// One resting order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    /// Order reference number.
    pub reference: u64,
    /// Stock locate.
    pub stock_locate: u16,
    /// Side.
    pub side: BuySell,
    /// Price(4).
    pub price: u32,
    /// Shares left.
    pub shares: u32,
}

/// An instrument's directory data and trading state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstrumentView {
    /// Symbol, space padded.
    pub stock: [u8; 8],
    /// Round lot in shares.
    pub round_lot_size: u32,
    /// Trading state of the last Trading Action (`T` until one arrives).
    pub trading_state: u8,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    price: u32,
    shares: u64,
    count: u32,
    head: u32,
    tail: u32,
}

#[derive(Clone, Copy, Debug)]
struct OrderSlot {
    reference: u64,
    price: u32,
    shares: u32,
    stock_locate: u16,
    side: BuySell,
    prev: u32,
    next: u32,
}

struct InstrumentBook {
    view: InstrumentView,
    /// Per side, sorted with the best level last.
    sides: [Vec<Level>; 2],
}

/// Sort key: ascending key order puts the best level last on both sides.
fn level_key(side: BuySell, price: u32) -> u32 {
    match side {
        BuySell::Buy => price,
        BuySell::Sell => u32::MAX - price,
    }
}

fn find_level(levels: &[Level], side: BuySell, price: u32) -> Result<usize, usize> {
    let key = level_key(side, price);
    levels.binary_search_by_key(&key, |level| level_key(side, level.price))
}

/// Every instrument's order-level book.
pub struct Book {
    instruments: Box<[Option<InstrumentBook>]>,
    orders: Box<[OrderSlot]>,
    free: Vec<u32>,
    index: Table,
    checksum: Checksum,
    levels_per_side_max: usize,
}

impl Book {
    /// An empty book with fixed capacities.
    pub fn new(config: BookConfig) -> Book {
        let order_capacity = config.order_capacity.min(NIL - 1);
        let empty = OrderSlot {
            reference: 0,
            price: 0,
            shares: 0,
            stock_locate: 0,
            side: BuySell::Buy,
            prev: NIL,
            next: NIL,
        };
        let mut instruments = Vec::with_capacity(usize::from(config.instrument_capacity));
        instruments.resize_with(usize::from(config.instrument_capacity), || None);
        Book {
            instruments: instruments.into_boxed_slice(),
            orders: vec![empty; order_capacity as usize].into_boxed_slice(),
            free: (0..order_capacity).rev().collect(),
            index: Table::new(order_capacity as usize),
            checksum: Checksum::default(),
            levels_per_side_max: config.levels_per_side_max as usize,
        }
    }

    /// Forgets every instrument and order (before applying a snapshot). Keeps the memory.
    pub fn clear(&mut self) {
        for instrument in self.instruments.iter_mut() {
            *instrument = None;
        }
        self.free.clear();
        self.free.extend((0..self.orders.len() as u32).rev());
        self.index.clear();
        self.checksum = Checksum::default();
    }

    /// The checksum of every book, kept up to date.
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    /// The checksum recomputed from the levels (a cross-check of [`Book::checksum`]).
    pub fn checksum_recomputed(&self) -> Checksum {
        let mut checksum = Checksum::default();
        for (index, instrument) in self.instruments.iter().enumerate() {
            let Some(instrument) = instrument else {
                continue;
            };
            for side in [BuySell::Buy, BuySell::Sell] {
                for level in &instrument.sides[side.index()] {
                    checksum.add_level(
                        index as u16 + 1,
                        side,
                        level.price,
                        level.shares,
                        level.count,
                    );
                }
            }
        }
        checksum
    }

    /// Resting orders, all instruments.
    pub fn order_count(&self) -> usize {
        self.index.len()
    }

    fn instrument_index(&self, stock_locate: u16) -> Result<usize, BookError> {
        let index = usize::from(stock_locate)
            .checked_sub(1)
            .filter(|index| *index < self.instruments.len())
            .ok_or(BookError::InstrumentCapacity(stock_locate))?;
        Ok(index)
    }

    fn instrument_book(&self, stock_locate: u16) -> Result<&InstrumentBook, BookError> {
        let index = self.instrument_index(stock_locate)?;
        self.instruments[index]
            .as_ref()
            .ok_or(BookError::UnknownInstrument(stock_locate))
    }

    /// An instrument's directory data and trading state.
    pub fn instrument(&self, stock_locate: u16) -> Option<InstrumentView> {
        self.instrument_book(stock_locate)
            .ok()
            .map(|book| book.view)
    }

    /// A resting order.
    pub fn order(&self, reference: u64) -> Option<OrderView> {
        let slot = self.index.get(reference)? as usize;
        let order = &self.orders[slot];
        Some(OrderView {
            reference: order.reference,
            stock_locate: order.stock_locate,
            side: order.side,
            price: order.price,
            shares: order.shares,
        })
    }

    /// The best level of a side.
    pub fn best(&self, stock_locate: u16, side: BuySell) -> Option<LevelView> {
        let book = self.instrument_book(stock_locate).ok()?;
        book.sides[side.index()].last().map(level_view)
    }

    /// Visits the non-empty levels of a side, best first.
    pub fn for_each_level(
        &self,
        stock_locate: u16,
        side: BuySell,
        mut visit: impl FnMut(LevelView),
    ) {
        if let Ok(book) = self.instrument_book(stock_locate) {
            book.sides[side.index()]
                .iter()
                .rev()
                .for_each(|level| visit(level_view(level)));
        }
    }

    /// Fills `out` with the top levels of a side, best first; returns how many.
    pub fn top_levels(&self, stock_locate: u16, side: BuySell, out: &mut [LevelView]) -> usize {
        let Ok(book) = self.instrument_book(stock_locate) else {
            return 0;
        };
        let levels = book.sides[side.index()].iter().rev();
        let mut filled = 0;
        for (slot, level) in out.iter_mut().zip(levels) {
            *slot = level_view(level);
            filled += 1;
        }
        filled
    }

    /// Visits the resting orders of a side in priority order (best price, then time).
    pub fn for_each_order(
        &self,
        stock_locate: u16,
        side: BuySell,
        mut visit: impl FnMut(OrderView),
    ) {
        let Ok(book) = self.instrument_book(stock_locate) else {
            return;
        };
        for level in book.sides[side.index()].iter().rev() {
            let mut slot = level.head;
            while slot != NIL {
                let order = &self.orders[slot as usize];
                visit(OrderView {
                    reference: order.reference,
                    stock_locate: order.stock_locate,
                    side: order.side,
                    price: order.price,
                    shares: order.shares,
                });
                slot = order.next;
            }
        }
    }

    /// The stock locates that have a Stock Directory, ascending.
    pub fn stock_locates(&self) -> impl Iterator<Item = u16> + '_ {
        self.instruments
            .iter()
            .enumerate()
            .filter(|(_, instrument)| instrument.is_some())
            .map(|(index, _)| index as u16 + 1)
    }

    /// Applies one message. Messages without book effect (System Event, Trade, the
    /// extensions) are accepted and ignored here; [`crate::Subscriber`] acts on the extensions.
    pub fn apply(&mut self, message: &Message) -> Result<(), BookError> {
        match message {
            Message::StockDirectory(m) => self.on_directory(m),
            Message::TradingAction(m) => {
                let index = self.instrument_index(m.header.stock_locate)?;
                let book = self.instruments[index]
                    .as_mut()
                    .ok_or(BookError::UnknownInstrument(m.header.stock_locate))?;
                book.view.trading_state = m.trading_state;
                Ok(())
            }
            Message::AddOrder(m) => {
                self.check_add(
                    m.header.stock_locate,
                    m.order_reference,
                    m.side,
                    m.price,
                    m.shares,
                    None,
                )?;
                self.add(
                    m.header.stock_locate,
                    m.order_reference,
                    m.side,
                    m.price,
                    m.shares,
                );
                Ok(())
            }
            Message::OrderExecuted(m) => {
                self.reduce(&m.header, m.order_reference, m.executed_shares)
            }
            Message::OrderExecutedWithPrice(m) => {
                self.reduce(&m.header, m.order_reference, m.executed_shares)
            }
            Message::OrderCancel(m) => {
                self.reduce(&m.header, m.order_reference, m.cancelled_shares)
            }
            Message::OrderDelete(m) => {
                let slot = self.resting(&m.header, m.order_reference)?;
                self.remove(slot);
                Ok(())
            }
            Message::OrderReplace(m) => {
                let slot = self.resting(&m.header, m.original_order_reference)?;
                let original = self.orders[slot as usize];
                self.check_add(
                    original.stock_locate,
                    m.new_order_reference,
                    original.side,
                    m.price,
                    m.shares,
                    Some(original),
                )?;
                self.remove(slot);
                self.add(
                    original.stock_locate,
                    m.new_order_reference,
                    original.side,
                    m.price,
                    m.shares,
                );
                Ok(())
            }
            Message::SystemEvent(_)
            | Message::Trade(_)
            | Message::BookChecksum(_)
            | Message::SnapshotEnd(_) => Ok(()),
        }
    }

    fn on_directory(&mut self, message: &itch::StockDirectory) -> Result<(), BookError> {
        let index = self.instrument_index(message.header.stock_locate)?;
        match &mut self.instruments[index] {
            Some(book) => {
                book.view.stock = message.stock;
                book.view.round_lot_size = message.round_lot_size;
            }
            empty => {
                *empty = Some(InstrumentBook {
                    view: InstrumentView {
                        stock: message.stock,
                        round_lot_size: message.round_lot_size,
                        trading_state: b'T',
                    },
                    sides: [
                        Vec::with_capacity(self.levels_per_side_max),
                        Vec::with_capacity(self.levels_per_side_max),
                    ],
                });
            }
        }
        Ok(())
    }

    /// The slot of a resting order, checking the message's locate.
    fn resting(&self, header: &Header, reference: u64) -> Result<u32, BookError> {
        let slot = self
            .index
            .get(reference)
            .ok_or(BookError::UnknownReference(reference))? as u32;
        let resting = self.orders[slot as usize].stock_locate;
        if resting != header.stock_locate {
            return Err(BookError::LocateMismatch {
                reference,
                resting,
                message: header.stock_locate,
            });
        }
        Ok(slot)
    }

    /// Checks that an order can be added (after `replacing` leaves, if given).
    fn check_add(
        &self,
        stock_locate: u16,
        reference: u64,
        side: BuySell,
        price: u32,
        shares: u32,
        replacing: Option<OrderSlot>,
    ) -> Result<(), BookError> {
        let book = self.instrument_book(stock_locate)?;
        if shares == 0 {
            return Err(BookError::ZeroShares);
        }
        let frees_reference = replacing.is_some_and(|original| original.reference == reference);
        if (self.index.get(reference).is_some() && !frees_reference)
            || reference == crate::table::KEY_EMPTY
        {
            return Err(BookError::DuplicateReference(reference));
        }
        if replacing.is_none() && self.free.is_empty() {
            return Err(BookError::OrderCapacity);
        }
        let levels = &book.sides[side.index()];
        if find_level(levels, side, price).is_err() {
            // A new level; the original's level may empty and make room.
            let frees_level = replacing.is_some_and(|original| {
                original.price != price
                    && find_level(levels, side, original.price)
                        .is_ok_and(|at| levels[at].count == 1)
            });
            if levels.len() - usize::from(frees_level) >= self.levels_per_side_max {
                return Err(BookError::LevelCapacity(stock_locate));
            }
        }
        Ok(())
    }

    /// Adds an order at the back of its level. `check_add` passed.
    fn add(&mut self, stock_locate: u16, reference: u64, side: BuySell, price: u32, shares: u32) {
        let Some(slot) = self.free.pop() else {
            unreachable!("check_add ensures a free slot");
        };
        let index = usize::from(stock_locate) - 1;
        let Some(book) = self.instruments[index].as_mut() else {
            unreachable!("check_add ensures the instrument");
        };
        let levels = &mut book.sides[side.index()];
        let at = match find_level(levels, side, price) {
            Ok(at) => {
                let level = levels[at];
                self.checksum.remove_level(
                    stock_locate,
                    side,
                    level.price,
                    level.shares,
                    level.count,
                );
                at
            }
            Err(at) => {
                debug_assert!(levels.len() < levels.capacity(), "check_add ensures room");
                levels.insert(
                    at,
                    Level {
                        price,
                        shares: 0,
                        count: 0,
                        head: NIL,
                        tail: NIL,
                    },
                );
                at
            }
        };
        let level = &mut levels[at];
        let tail = level.tail;
        self.orders[slot as usize] = OrderSlot {
            reference,
            price,
            shares,
            stock_locate,
            side,
            prev: tail,
            next: NIL,
        };
        if tail == NIL {
            level.head = slot;
        } else {
            self.orders[tail as usize].next = slot;
        }
        level.tail = slot;
        level.shares += u64::from(shares);
        level.count += 1;
        self.checksum
            .add_level(stock_locate, side, level.price, level.shares, level.count);
        if self.index.insert(reference, u64::from(slot)).is_err() {
            unreachable!("the index holds as many entries as the pool");
        }
    }

    /// Removes `shares` from an order (an execution or a partial cancel); an order that
    /// reaches 0 leaves the book.
    fn reduce(&mut self, header: &Header, reference: u64, shares: u32) -> Result<(), BookError> {
        let slot = self.resting(header, reference)?;
        let order = self.orders[slot as usize];
        if shares == 0 {
            return Err(BookError::ZeroShares);
        }
        if shares > order.shares {
            return Err(BookError::Overdraw {
                reference,
                resting: order.shares,
                requested: shares,
            });
        }
        if shares == order.shares {
            self.remove(slot);
            return Ok(());
        }
        let (levels, at) = level_of(&mut self.instruments, &order);
        let level = &mut levels[at];
        self.checksum.remove_level(
            order.stock_locate,
            order.side,
            level.price,
            level.shares,
            level.count,
        );
        level.shares -= u64::from(shares);
        self.checksum.add_level(
            order.stock_locate,
            order.side,
            level.price,
            level.shares,
            level.count,
        );
        self.orders[slot as usize].shares -= shares;
        Ok(())
    }

    /// Unlinks an order and frees its slot; an emptied level goes.
    fn remove(&mut self, slot: u32) {
        let order = self.orders[slot as usize];
        let (prev, next) = (order.prev, order.next);
        if prev != NIL {
            self.orders[prev as usize].next = next;
        }
        if next != NIL {
            self.orders[next as usize].prev = prev;
        }
        let (levels, at) = level_of(&mut self.instruments, &order);
        let level = &mut levels[at];
        let (locate, side) = (order.stock_locate, order.side);
        self.checksum
            .remove_level(locate, side, level.price, level.shares, level.count);
        if prev == NIL {
            level.head = next;
        }
        if next == NIL {
            level.tail = prev;
        }
        level.shares -= u64::from(order.shares);
        level.count -= 1;
        if level.count == 0 {
            debug_assert!(level.shares == 0 && level.head == NIL);
            levels.remove(at);
        } else {
            let level = levels[at];
            self.checksum
                .add_level(locate, side, level.price, level.shares, level.count);
        }
        self.index.remove(order.reference);
        self.free.push(slot);
    }

    /// Writes a snapshot of every book, in the format of
    /// [`crate::FeedEncoder::encode_snapshot`]: per instrument a Stock Directory, a Trading
    /// Action and the Add Orders in priority order, then a Snapshot End as of `sequence` (the
    /// last feed sequence applied). A subscriber can serve late joiners this way. Returns the
    /// number of messages.
    pub fn encode_snapshot(
        &self,
        timestamp_ns: u64,
        sequence: u64,
        sink: &mut (impl MessageSink + ?Sized),
    ) -> u64 {
        let timestamp_ns = timestamp_ns % itch::NANOSECONDS_PER_DAY;
        let mut count = 0u64;
        let mut put = |message: &Message| {
            count += 1;
            encode_to(message, count, sink);
        };
        for stock_locate in self.stock_locates() {
            let Ok(book) = self.instrument_book(stock_locate) else {
                continue;
            };
            let header = Header {
                stock_locate,
                tracking_number: 0,
                timestamp_ns,
            };
            put(&Message::StockDirectory(itch::StockDirectory {
                header,
                stock: book.view.stock,
                market_category: b' ',
                financial_status_indicator: b' ',
                round_lot_size: book.view.round_lot_size,
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
            }));
            put(&Message::TradingAction(itch::TradingAction {
                header,
                stock: book.view.stock,
                trading_state: book.view.trading_state,
                reserved: b' ',
                reason: *b"    ",
            }));
            for side in [BuySell::Buy, BuySell::Sell] {
                self.for_each_order(stock_locate, side, |order| {
                    put(&Message::AddOrder(itch::AddOrder {
                        header,
                        order_reference: order.reference,
                        side,
                        shares: order.shares,
                        stock: book.view.stock,
                        price: order.price,
                    }));
                });
            }
        }
        put(&Message::SnapshotEnd(itch::SnapshotEnd {
            header: Header {
                stock_locate: 0,
                tracking_number: 0,
                timestamp_ns,
            },
            sequence,
            checksum: self.checksum.value,
        }));
        count
    }
}

/// The level of a resting order (it exists while the order rests).
fn level_of<'a>(
    instruments: &'a mut [Option<InstrumentBook>],
    order: &OrderSlot,
) -> (&'a mut Vec<Level>, usize) {
    let index = usize::from(order.stock_locate) - 1;
    let Some(book) = instruments[index].as_mut() else {
        unreachable!("a resting order's instrument exists");
    };
    let levels = &mut book.sides[order.side.index()];
    let Ok(at) = find_level(levels, order.side, order.price) else {
        unreachable!("a resting order's level exists");
    };
    (levels, at)
}

fn level_view(level: &Level) -> LevelView {
    LevelView {
        price: level.price,
        shares: level.shares,
        order_count: level.count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::itch::{AddOrder, OrderDelete, OrderExecuted, OrderReplace, StockDirectory};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn header(stock_locate: u16) -> Header {
        Header {
            stock_locate,
            tracking_number: 0,
            timestamp_ns: 0,
        }
    }

    fn directory(stock_locate: u16) -> Message {
        Message::StockDirectory(StockDirectory {
            header: header(stock_locate),
            stock: *b"ACME    ",
            market_category: b' ',
            financial_status_indicator: b' ',
            round_lot_size: 1,
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

    fn add(reference: u64, side: BuySell, price: u32, shares: u32) -> Message {
        Message::AddOrder(AddOrder {
            header: header(1),
            order_reference: reference,
            side,
            shares,
            stock: *b"ACME    ",
            price,
        })
    }

    fn book() -> Book {
        let mut book = Book::new(BookConfig {
            instrument_capacity: 4,
            order_capacity: 8,
            levels_per_side_max: 3,
        });
        book.apply(&directory(1)).expect("directory");
        book
    }

    fn levels(book: &Book, side: BuySell) -> Vec<(u32, u64, u32)> {
        let mut out = Vec::new();
        book.for_each_level(1, side, |level| {
            out.push((level.price, level.shares, level.order_count))
        });
        out
    }

    #[test]
    fn price_time_order_and_removal() {
        let mut book = book();
        for message in [
            add(1, BuySell::Buy, 100, 5),
            add(2, BuySell::Buy, 101, 3),
            add(3, BuySell::Buy, 100, 2),
            add(4, BuySell::Sell, 105, 1),
            add(5, BuySell::Sell, 103, 4),
        ] {
            book.apply(&message).expect("applies");
        }
        assert_eq!(levels(&book, BuySell::Buy), vec![(101, 3, 1), (100, 7, 2)]);
        assert_eq!(levels(&book, BuySell::Sell), vec![(103, 4, 1), (105, 1, 1)]);
        let mut order = Vec::new();
        book.for_each_order(1, BuySell::Buy, |o| order.push(o.reference));
        assert_eq!(order, vec![2, 1, 3]);

        let executed = Message::OrderExecuted(OrderExecuted {
            header: header(1),
            order_reference: 1,
            executed_shares: 5,
            match_number: 1,
        });
        book.apply(&executed).expect("applies");
        assert_eq!(book.order(1), None);
        assert_eq!(levels(&book, BuySell::Buy), vec![(101, 3, 1), (100, 2, 1)]);

        // Replace moves 3 to the back of 101, behind 2.
        let replace = Message::OrderReplace(OrderReplace {
            header: header(1),
            original_order_reference: 3,
            new_order_reference: 9,
            shares: 6,
            price: 101,
        });
        book.apply(&replace).expect("applies");
        let mut order = Vec::new();
        book.for_each_order(1, BuySell::Buy, |o| order.push((o.reference, o.shares)));
        assert_eq!(order, vec![(2, 3), (9, 6)]);
        assert_eq!(book.checksum(), book.checksum_recomputed());
        let mut top = [LevelView {
            price: 0,
            shares: 0,
            order_count: 0,
        }; 1];
        assert_eq!(book.top_levels(1, BuySell::Sell, &mut top), 1);
        assert_eq!(top[0].price, 103);
    }

    #[test]
    fn refuses_without_changing() {
        let mut book = book();
        book.apply(&add(1, BuySell::Buy, 100, 5)).expect("applies");
        let checksum = book.checksum();
        let delete_unknown = Message::OrderDelete(OrderDelete {
            header: header(1),
            order_reference: 2,
        });
        assert_eq!(
            book.apply(&delete_unknown),
            Err(BookError::UnknownReference(2))
        );
        assert_eq!(
            book.apply(&add(1, BuySell::Buy, 100, 5)),
            Err(BookError::DuplicateReference(1))
        );
        let overdraw = Message::OrderExecuted(OrderExecuted {
            header: header(1),
            order_reference: 1,
            executed_shares: 6,
            match_number: 1,
        });
        assert!(matches!(
            book.apply(&overdraw),
            Err(BookError::Overdraw { .. })
        ));
        let wrong_locate = Message::OrderDelete(OrderDelete {
            header: header(2),
            order_reference: 1,
        });
        assert!(matches!(
            book.apply(&wrong_locate),
            Err(BookError::LocateMismatch { .. })
        ));
        for price in [101, 102] {
            book.apply(&add(u64::from(price), BuySell::Buy, price, 1))
                .expect("room");
        }
        assert_eq!(
            book.apply(&add(50, BuySell::Buy, 99, 1)),
            Err(BookError::LevelCapacity(1))
        );
        assert_eq!(
            book.apply(&Message::OrderDelete(OrderDelete {
                header: header(3),
                order_reference: 1
            })),
            Err(BookError::LocateMismatch {
                reference: 1,
                resting: 1,
                message: 3
            })
        );
        assert_eq!(levels(&book, BuySell::Buy).len(), 3);
        book.apply(&Message::OrderDelete(OrderDelete {
            header: header(1),
            order_reference: 101,
        }))
        .expect("applies");
        book.apply(&Message::OrderDelete(OrderDelete {
            header: header(1),
            order_reference: 102,
        }))
        .expect("applies");
        assert_eq!(book.checksum(), checksum);
    }

    /// A simple model: per side, price → FIFO of (reference, shares).
    #[derive(Default)]
    struct Model {
        sides: [BTreeMap<u32, Vec<(u64, u32)>>; 2],
    }

    impl Model {
        fn find(&self, reference: u64) -> Option<(usize, u32, usize)> {
            for (side, levels) in self.sides.iter().enumerate() {
                for (price, queue) in levels {
                    if let Some(at) = queue.iter().position(|(r, _)| *r == reference) {
                        return Some((side, *price, at));
                    }
                }
            }
            None
        }
    }

    proptest! {
        #[test]
        fn matches_a_model_and_never_panics(operations in proptest::collection::vec(
            (0u8..6, 0u64..12, 0u8..2, 95u32..106, 0u32..8), 0..300)) {
            let mut book = Book::new(BookConfig {
                instrument_capacity: 2,
                order_capacity: 10,
                levels_per_side_max: 6,
            });
            book.apply(&directory(1)).expect("directory");
            let mut model = Model::default();
            for (operation, reference, side, price, shares) in operations {
                let side = if side == 0 { BuySell::Buy } else { BuySell::Sell };
                let message = match operation {
                    0 | 1 => add(reference, side, price, shares),
                    2 => Message::OrderExecuted(OrderExecuted {
                        header: header(1), order_reference: reference, executed_shares: shares, match_number: 0 }),
                    3 => Message::OrderDelete(OrderDelete { header: header(1), order_reference: reference }),
                    4 => Message::OrderReplace(OrderReplace {
                        header: header(1), original_order_reference: reference,
                        new_order_reference: reference + u64::from(shares % 3), shares, price }),
                    _ => Message::OrderCancel(itch::OrderCancel {
                        header: header(1 + (shares % 2) as u16), order_reference: reference, cancelled_shares: shares }),
                };
                let result = book.apply(&message);
                // Apply to the model only what the book accepted, and check acceptance is sane.
                if result.is_ok() {
                    match message {
                        Message::AddOrder(m) => {
                            prop_assert!(model.find(m.order_reference).is_none());
                            model.sides[m.side.index()].entry(m.price).or_default().push((m.order_reference, m.shares));
                        }
                        Message::OrderExecuted(itch::OrderExecuted { order_reference: r, executed_shares: s, .. })
                        | Message::OrderCancel(itch::OrderCancel { order_reference: r, cancelled_shares: s, .. }) => {
                            let (side, price, at) = model.find(r).expect("book had it");
                            let queue = model.sides[side].get_mut(&price).expect("level");
                            prop_assert!(queue[at].1 >= s && s > 0);
                            queue[at].1 -= s;
                            if queue[at].1 == 0 { queue.remove(at); }
                            if queue.is_empty() { model.sides[side].remove(&price); }
                        }
                        Message::OrderDelete(m) => {
                            let (side, price, at) = model.find(m.order_reference).expect("book had it");
                            let queue = model.sides[side].get_mut(&price).expect("level");
                            queue.remove(at);
                            if queue.is_empty() { model.sides[side].remove(&price); }
                        }
                        Message::OrderReplace(m) => {
                            let (side, price, at) = model.find(m.original_order_reference).expect("book had it");
                            let queue = model.sides[side].get_mut(&price).expect("level");
                            queue.remove(at);
                            if queue.is_empty() { model.sides[side].remove(&price); }
                            model.sides[side].entry(m.price).or_default().push((m.new_order_reference, m.shares));
                        }
                        _ => {}
                    }
                }
                for side in [BuySell::Buy, BuySell::Sell] {
                    let mut got = Vec::new();
                    book.for_each_order(1, side, |o| got.push((o.price, o.reference, o.shares)));
                    let mut expected = Vec::new();
                    let levels = &model.sides[side.index()];
                    let prices: Vec<u32> = match side {
                        BuySell::Buy => levels.keys().rev().copied().collect(),
                        BuySell::Sell => levels.keys().copied().collect(),
                    };
                    for price in prices {
                        for (reference, shares) in &levels[&price] {
                            expected.push((price, *reference, *shares));
                        }
                    }
                    prop_assert_eq!(got, expected);
                }
                prop_assert_eq!(book.checksum(), book.checksum_recomputed());
            }
        }
    }
}
