//! A deliberately simple reference model of the matching rules in `docs/MATCHER.md`:
//! BTreeMap price levels holding VecDeque queues, BTreeMap order and account registries, no
//! pools, no bitmaps, no incremental anything. The differential test feeds it and the real
//! matcher the same commands and requires identical events and identical books.

use matcher::*;
use std::collections::{BTreeMap, VecDeque};
use zerocopy::little_endian::{I64, U32, U64};

#[derive(Clone, Debug)]
pub struct RefOrder {
    pub order_id: u64,
    pub client_order_id: u64,
    pub account_id: u32,
    pub instrument_id: u32,
    pub side: Side,
    pub price: i64,
    pub quantity: u64,
    pub leaves: u64,
    pub time_in_force: TimeInForce,
    pub stp_mode: StpMode,
    pub post_only: bool,
    pub priority_sequence: u64,
}

struct RefInstrument {
    config: InstrumentConfig,
    halted: bool,
    reference_price: i64,
    /// price -> queue of order ids, per side (index 0 buy, 1 sell).
    books: [BTreeMap<i64, VecDeque<u64>>; 2],
}

impl RefInstrument {
    fn tick(&self) -> i64 {
        i64::from(self.config.tick_size)
    }
    fn price_max(&self) -> i64 {
        self.config.price_min + i64::from(self.config.price_levels - 1) * self.tick()
    }
    fn band(&self) -> (i64, i64) {
        if self.config.band_width_ticks == 0 {
            return (self.config.price_min, self.price_max());
        }
        let width = i64::from(self.config.band_width_ticks) * self.tick();
        (
            (self.reference_price - width).max(self.config.price_min),
            (self.reference_price + width).min(self.price_max()),
        )
    }
    /// Opposite-side prices a taker may trade at, best first.
    fn crossing_prices(&self, taker_side: Side, limit: i64) -> Vec<i64> {
        let book = &self.books[taker_side.opposite().index()];
        match taker_side {
            Side::Buy => book.range(..=limit).map(|(price, _)| *price).collect(),
            Side::Sell => book.range(limit..).rev().map(|(price, _)| *price).collect(),
        }
    }
    fn best(&self, side: Side) -> Option<i64> {
        let book = &self.books[side.index()];
        match side {
            Side::Buy => book.keys().next_back().copied(),
            Side::Sell => book.keys().next().copied(),
        }
    }
}

pub struct Reference {
    config: Config,
    instruments: BTreeMap<u32, RefInstrument>,
    orders: BTreeMap<u64, RefOrder>,
    /// account -> killed
    accounts: BTreeMap<u32, bool>,
    levels_used: u64,
    trade_id_next: u64,
    events: Vec<Event>,
    sequence: u64,
}

struct Taker {
    order_id: u64,
    client_order_id: u64,
    account_id: u32,
    side: Side,
    price: i64,
    limit: i64,
    quantity: u64,
    leaves: u64,
    stp_mode: StpMode,
    stopped: bool,
}

fn event(kind: EventKind, sequence: u64, instrument_id: u32) -> Event {
    let mut event = Event::zeroed();
    event.kind = kind as u8;
    event.sequence = U64::new(sequence);
    event.instrument_id = U32::new(instrument_id);
    event
}

impl Reference {
    pub fn new(config: Config) -> Reference {
        Reference {
            config,
            instruments: BTreeMap::new(),
            orders: BTreeMap::new(),
            accounts: BTreeMap::new(),
            levels_used: 0,
            trade_id_next: 1,
            events: Vec::new(),
            sequence: 0,
        }
    }

    /// Resting orders of one side, priority order.
    pub fn book(&self, instrument_id: u32, side: Side) -> Vec<RefOrder> {
        let Some(instrument) = self.instruments.get(&instrument_id) else {
            return Vec::new();
        };
        let book = &instrument.books[side.index()];
        let levels: Vec<&VecDeque<u64>> = match side {
            Side::Buy => book.values().rev().collect(),
            Side::Sell => book.values().collect(),
        };
        levels
            .into_iter()
            .flatten()
            .map(|id| self.orders[id].clone())
            .collect()
    }

    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    pub fn apply(&mut self, sequence: u64, record: &CommandRecord) -> Vec<Event> {
        self.sequence = sequence;
        self.events.clear();
        let result = match record.decode() {
            Err(_) => Err(RejectReason::Malformed),
            Ok(command) => self.execute(&command),
        };
        if let Err(reason) = result {
            let mut rejected = event(EventKind::Rejected, sequence, record.instrument_id.get());
            rejected.reason = reason as u8;
            rejected.aux_b = U64::new(u64::from(record.kind));
            if record.kind != CommandKind::AddInstrument as u8 {
                rejected.side = record.side;
                rejected.order_id = record.order_id;
                rejected.price = record.price;
                rejected.quantity = record.quantity;
                rejected.account_id = record.account_id;
                rejected.aux_a = record.client_order_id;
            }
            self.events.push(rejected);
        }
        std::mem::take(&mut self.events)
    }

    fn execute(&mut self, command: &Command) -> Result<(), RejectReason> {
        match *command {
            Command::NewOrder(order) => self.new_order(order),
            Command::Cancel(cancel) => {
                let order = self
                    .orders
                    .get(&cancel.order_id)
                    .ok_or(RejectReason::UnknownOrder)?;
                if order.account_id != cancel.account_id {
                    return Err(RejectReason::NotOwner);
                }
                self.cancel_resting(cancel.order_id, CancelReason::User);
                Ok(())
            }
            Command::Replace(replace) => self.replace(replace),
            Command::MassCancel(mass) => {
                if let Some(instrument_id) = mass.instrument_id {
                    if !self.instruments.contains_key(&instrument_id) {
                        return Err(RejectReason::UnknownInstrument);
                    }
                }
                let ids: Vec<u64> = self
                    .orders
                    .values()
                    .filter(|order| order.account_id == mass.account_id)
                    .filter(|order| {
                        mass.instrument_id
                            .is_none_or(|id| id == order.instrument_id)
                    })
                    .filter(|order| mass.side.is_none_or(|side| side == order.side))
                    .map(|order| order.order_id)
                    .collect();
                for id in &ids {
                    self.cancel_resting(*id, CancelReason::MassCancel);
                }
                let mut done = event(
                    EventKind::MassCancelled,
                    self.sequence,
                    mass.instrument_id.unwrap_or(0),
                );
                done.side = mass.side.map_or(0, |side| side as u8);
                done.account_id = U32::new(mass.account_id);
                done.quantity = U64::new(ids.len() as u64);
                self.events.push(done);
                Ok(())
            }
            Command::AddInstrument(config) => {
                if config.instrument_id > self.config.instrument_capacity {
                    return Err(RejectReason::Capacity);
                }
                if self.instruments.contains_key(&config.instrument_id) {
                    return Err(RejectReason::InstrumentExists);
                }
                if !config.validate() {
                    return Err(RejectReason::InvalidInstrumentConfig);
                }
                let levels = 2 * u64::from(config.price_levels);
                if self.levels_used + levels > u64::from(self.config.level_capacity) {
                    return Err(RejectReason::Capacity);
                }
                self.levels_used += levels;
                self.instruments.insert(
                    config.instrument_id,
                    RefInstrument {
                        config,
                        halted: false,
                        reference_price: config.reference_price,
                        books: [BTreeMap::new(), BTreeMap::new()],
                    },
                );
                self.status(config.instrument_id);
                Ok(())
            }
            Command::Halt { instrument_id } | Command::Resume { instrument_id } => {
                let instrument = self
                    .instruments
                    .get_mut(&instrument_id)
                    .ok_or(RejectReason::UnknownInstrument)?;
                instrument.halted = matches!(command, Command::Halt { .. });
                self.status(instrument_id);
                Ok(())
            }
            Command::SetReferencePrice {
                instrument_id,
                price,
            } => {
                let instrument = self
                    .instruments
                    .get_mut(&instrument_id)
                    .ok_or(RejectReason::UnknownInstrument)?;
                if price % instrument.tick() != 0 {
                    return Err(RejectReason::PriceOffTick);
                }
                if price < instrument.config.price_min || price > instrument.price_max() {
                    return Err(RejectReason::OutsideBand);
                }
                instrument.reference_price = price;
                self.status(instrument_id);
                Ok(())
            }
            Command::KillSwitch { account_id, on } => {
                if !self.accounts.contains_key(&account_id)
                    && self.accounts.len() >= self.config.account_capacity as usize
                {
                    return Err(RejectReason::Capacity);
                }
                self.accounts.insert(account_id, on);
                let mut status = event(EventKind::AccountStatus, self.sequence, 0);
                status.account_id = U32::new(account_id);
                status.flags = if on { FLAG_KILLED } else { 0 };
                self.events.push(status);
                if on {
                    let ids: Vec<u64> = self
                        .orders
                        .values()
                        .filter(|order| order.account_id == account_id)
                        .map(|order| order.order_id)
                        .collect();
                    for id in ids {
                        self.cancel_resting(id, CancelReason::KillSwitch);
                    }
                }
                Ok(())
            }
            Command::EndOfDay { instrument_id } => {
                let instrument = self
                    .instruments
                    .get(&instrument_id)
                    .ok_or(RejectReason::UnknownInstrument)?;
                let _ = instrument;
                let mut ids = Vec::new();
                for side in [Side::Buy, Side::Sell] {
                    ids.extend(
                        self.book(instrument_id, side)
                            .into_iter()
                            .filter(|order| order.time_in_force == TimeInForce::Day)
                            .map(|order| order.order_id),
                    );
                }
                for id in &ids {
                    self.cancel_resting(*id, CancelReason::Expired);
                }
                let mut done = event(EventKind::EndOfDay, self.sequence, instrument_id);
                done.quantity = U64::new(ids.len() as u64);
                self.events.push(done);
                Ok(())
            }
        }
    }

    fn status(&mut self, instrument_id: u32) {
        let instrument = &self.instruments[&instrument_id];
        let mut status = event(EventKind::InstrumentStatus, self.sequence, instrument_id);
        status.reason = if instrument.halted {
            STATUS_HALTED
        } else {
            STATUS_TRADING
        };
        status.price = I64::new(instrument.reference_price);
        self.events.push(status);
    }

    fn check_quantity(
        instrument: &RefInstrument,
        quantity: u64,
        notional_price: i64,
    ) -> Result<(), RejectReason> {
        let lot = u64::from(instrument.config.lot_size);
        if !quantity.is_multiple_of(lot) {
            return Err(RejectReason::QuantityOffLot);
        }
        if quantity < u64::from(instrument.config.quantity_min_lots) * lot
            || quantity > u64::from(instrument.config.quantity_max_lots) * lot
        {
            return Err(RejectReason::QuantityOutOfRange);
        }
        let max = instrument.config.notional_max;
        if max != 0 && notional_price.unsigned_abs() as u128 * quantity as u128 > max as u128 {
            return Err(RejectReason::NotionalTooLarge);
        }
        Ok(())
    }

    fn check_price(instrument: &RefInstrument, price: i64) -> Result<(), RejectReason> {
        if price % instrument.tick() != 0 {
            return Err(RejectReason::PriceOffTick);
        }
        let (low, high) = instrument.band();
        if price < low || price > high {
            return Err(RejectReason::OutsideBand);
        }
        Ok(())
    }

    fn client_order_id_in_use(&self, account_id: u32, client_order_id: u64) -> bool {
        self.orders
            .values()
            .any(|order| order.account_id == account_id && order.client_order_id == client_order_id)
    }

    fn would_cross(instrument: &RefInstrument, side: Side, limit: i64) -> bool {
        match (side, instrument.best(side.opposite())) {
            (Side::Buy, Some(ask)) => ask <= limit,
            (Side::Sell, Some(bid)) => bid >= limit,
            _ => false,
        }
    }

    fn new_order(&mut self, order: NewOrder) -> Result<(), RejectReason> {
        let instrument = self
            .instruments
            .get(&order.instrument_id)
            .ok_or(RejectReason::UnknownInstrument)?;
        if instrument.halted {
            return Err(RejectReason::InstrumentHalted);
        }
        if self.accounts.get(&order.account_id) == Some(&true) {
            return Err(RejectReason::AccountKilled);
        }
        let limit = match order.order_type {
            OrderType::Limit => {
                Self::check_price(instrument, order.price)?;
                order.price
            }
            OrderType::Market => match order.side {
                Side::Buy => instrument.band().1,
                Side::Sell => instrument.band().0,
            },
        };
        Self::check_quantity(instrument, order.quantity, limit)?;
        if self.client_order_id_in_use(order.account_id, order.client_order_id) {
            return Err(RejectReason::DuplicateClientOrderId);
        }
        if order.post_only && Self::would_cross(instrument, order.side, limit) {
            return Err(RejectReason::PostOnlyWouldTake);
        }
        if order.time_in_force == TimeInForce::Fok {
            let mut available = 0u64;
            let mut fillable = false;
            'walk: for price in instrument.crossing_prices(order.side, limit) {
                for id in &instrument.books[order.side.opposite().index()][&price] {
                    let maker = &self.orders[id];
                    if maker.account_id == order.account_id && order.stp_mode != StpMode::None {
                        if order.stp_mode == StpMode::CancelOldest {
                            continue;
                        }
                        break 'walk;
                    }
                    available += maker.leaves;
                    if available >= order.quantity {
                        fillable = true;
                        break 'walk;
                    }
                }
            }
            if !fillable {
                return Err(RejectReason::FillOrKillUnfillable);
            }
        }
        if !self.accounts.contains_key(&order.account_id)
            && self.accounts.len() >= self.config.account_capacity as usize
        {
            return Err(RejectReason::Capacity);
        }
        if order.time_in_force.rests() && self.orders.len() >= self.config.order_capacity as usize {
            return Err(RejectReason::Capacity);
        }
        self.accounts.entry(order.account_id).or_insert(false);
        let mut accepted = event(EventKind::Accepted, self.sequence, order.instrument_id);
        accepted.side = order.side as u8;
        accepted.flags = u8::from(order.post_only);
        accepted.order_id = U64::new(self.sequence);
        accepted.price = I64::new(order.price);
        accepted.quantity = U64::new(order.quantity);
        accepted.account_id = U32::new(order.account_id);
        accepted.aux_a = U64::new(order.client_order_id);
        accepted.aux_b = U64::new(
            order.order_type as u64
                | (order.time_in_force as u64) << 8
                | (order.stp_mode as u64) << 16,
        );
        self.events.push(accepted);
        let mut taker = Taker {
            order_id: self.sequence,
            client_order_id: order.client_order_id,
            account_id: order.account_id,
            side: order.side,
            price: order.price,
            limit,
            quantity: order.quantity,
            leaves: order.quantity,
            stp_mode: order.stp_mode,
            stopped: false,
        };
        self.match_taker(order.instrument_id, &mut taker);
        if taker.leaves == 0 || taker.stopped {
            return Ok(());
        }
        if order.time_in_force.rests() {
            self.rest(RefOrder {
                order_id: self.sequence,
                client_order_id: order.client_order_id,
                account_id: order.account_id,
                instrument_id: order.instrument_id,
                side: order.side,
                price: order.price,
                quantity: taker.quantity,
                leaves: taker.leaves,
                time_in_force: order.time_in_force,
                stp_mode: order.stp_mode,
                post_only: order.post_only,
                priority_sequence: self.sequence,
            });
        } else {
            self.taker_cancelled(
                order.instrument_id,
                &taker,
                CancelReason::IocRemainder,
                taker.leaves,
                0,
            );
        }
        Ok(())
    }

    fn replace(&mut self, replace: Replace) -> Result<(), RejectReason> {
        let order = self
            .orders
            .get(&replace.order_id)
            .ok_or(RejectReason::UnknownOrder)?
            .clone();
        if order.account_id != replace.account_id {
            return Err(RejectReason::NotOwner);
        }
        let instrument = &self.instruments[&order.instrument_id];
        if instrument.halted {
            return Err(RejectReason::InstrumentHalted);
        }
        Self::check_price(instrument, replace.price)?;
        Self::check_quantity(instrument, replace.quantity, replace.price)?;
        if replace.client_order_id != order.client_order_id
            && self.client_order_id_in_use(order.account_id, replace.client_order_id)
        {
            return Err(RejectReason::DuplicateClientOrderId);
        }
        if order.post_only && Self::would_cross(instrument, order.side, replace.price) {
            return Err(RejectReason::PostOnlyWouldTake);
        }
        let filled = order.quantity - order.leaves;
        if replace.quantity <= filled {
            self.cancel_resting(order.order_id, CancelReason::User);
            return Ok(());
        }
        let leaves = replace.quantity - filled;
        let kept = replace.price == order.price && replace.quantity <= order.quantity;
        let mut replaced = event(EventKind::Replaced, self.sequence, order.instrument_id);
        replaced.side = order.side as u8;
        replaced.flags = if kept { FLAG_PRIORITY_KEPT } else { 0 };
        replaced.order_id = U64::new(order.order_id);
        replaced.price = I64::new(replace.price);
        replaced.quantity = U64::new(replace.quantity);
        replaced.account_id = U32::new(order.account_id);
        replaced.aux_a = U64::new(replace.client_order_id);
        replaced.aux_b = U64::new(leaves);
        self.events.push(replaced);
        if kept {
            let reduction = order.leaves - leaves;
            let entry = self.orders.get_mut(&order.order_id).expect("live");
            entry.quantity = replace.quantity;
            entry.leaves = leaves;
            entry.client_order_id = replace.client_order_id;
            if reduction > 0 {
                self.book_event(EventKind::BookReduce, order.order_id, reduction, leaves);
                self.level(order.instrument_id, order.side, order.price);
            }
            return Ok(());
        }
        self.book_event(EventKind::BookDelete, order.order_id, order.leaves, 0);
        self.unlink(order.order_id);
        self.level(order.instrument_id, order.side, order.price);
        let mut taker = Taker {
            order_id: order.order_id,
            client_order_id: replace.client_order_id,
            account_id: order.account_id,
            side: order.side,
            price: replace.price,
            limit: replace.price,
            quantity: replace.quantity,
            leaves,
            stp_mode: order.stp_mode,
            stopped: false,
        };
        // The replaced order is out of the book while it takes liquidity.
        let mut entry = self.orders.remove(&order.order_id).expect("live");
        self.match_taker(order.instrument_id, &mut taker);
        if taker.leaves == 0 || taker.stopped {
            return Ok(());
        }
        entry.client_order_id = replace.client_order_id;
        entry.price = replace.price;
        entry.quantity = taker.quantity;
        entry.leaves = taker.leaves;
        entry.priority_sequence = self.sequence;
        self.rest(entry);
        Ok(())
    }

    fn match_taker(&mut self, instrument_id: u32, taker: &mut Taker) {
        let maker_side = taker.side.opposite();
        while taker.leaves > 0 {
            let instrument = &self.instruments[&instrument_id];
            let Some(price) = instrument.best(maker_side) else {
                return;
            };
            let crosses = match taker.side {
                Side::Buy => price <= taker.limit,
                Side::Sell => price >= taker.limit,
            };
            if !crosses {
                return;
            }
            let maker_id = instrument.books[maker_side.index()][&price][0];
            let maker = self.orders[&maker_id].clone();
            if maker.account_id == taker.account_id && taker.stp_mode != StpMode::None {
                match taker.stp_mode {
                    StpMode::None => unreachable!(),
                    StpMode::CancelNewest => {
                        self.taker_cancelled(
                            instrument_id,
                            taker,
                            CancelReason::SelfTrade,
                            taker.leaves,
                            0,
                        );
                        taker.stopped = true;
                        return;
                    }
                    StpMode::CancelOldest => self.cancel_resting(maker_id, CancelReason::SelfTrade),
                    StpMode::CancelBoth => {
                        self.cancel_resting(maker_id, CancelReason::SelfTrade);
                        self.taker_cancelled(
                            instrument_id,
                            taker,
                            CancelReason::SelfTrade,
                            taker.leaves,
                            0,
                        );
                        taker.stopped = true;
                        return;
                    }
                    StpMode::DecrementAndCancel => {
                        let quantity = taker.leaves.min(maker.leaves);
                        if quantity == maker.leaves {
                            self.cancel_resting(maker_id, CancelReason::SelfTrade);
                        } else {
                            let entry = self.orders.get_mut(&maker_id).expect("live");
                            entry.leaves -= quantity;
                            entry.quantity -= quantity;
                            let left = entry.leaves;
                            let mut cancelled = self.order_event(EventKind::Cancelled, maker_id);
                            cancelled.reason = CancelReason::SelfTrade as u8;
                            cancelled.quantity = U64::new(quantity);
                            cancelled.aux_b = U64::new(left);
                            self.events.push(cancelled);
                            self.book_event(EventKind::BookReduce, maker_id, quantity, left);
                            self.level(instrument_id, maker_side, price);
                        }
                        taker.leaves -= quantity;
                        taker.quantity -= quantity;
                        self.taker_cancelled(
                            instrument_id,
                            taker,
                            CancelReason::SelfTrade,
                            quantity,
                            taker.leaves,
                        );
                        if taker.leaves == 0 {
                            taker.stopped = true;
                            return;
                        }
                    }
                }
                continue;
            }
            let quantity = taker.leaves.min(maker.leaves);
            taker.leaves -= quantity;
            let maker_left = maker.leaves - quantity;
            let mut trade = event(EventKind::Trade, self.sequence, instrument_id);
            trade.side = taker.side as u8;
            trade.flags = if taker.leaves == 0 {
                FLAG_TAKER_DONE
            } else {
                0
            } | if maker_left == 0 { FLAG_MAKER_DONE } else { 0 };
            trade.order_id = U64::new(taker.order_id);
            trade.price = I64::new(price);
            trade.quantity = U64::new(quantity);
            trade.account_id = U32::new(taker.account_id);
            trade.account_id_maker = U32::new(maker.account_id);
            trade.aux_a = U64::new(maker_id);
            trade.aux_b = U64::new(self.trade_id_next);
            self.trade_id_next += 1;
            self.events.push(trade);
            if maker_left == 0 {
                self.unlink(maker_id);
                self.orders.remove(&maker_id);
            } else {
                self.orders.get_mut(&maker_id).expect("live").leaves = maker_left;
            }
            self.level(instrument_id, maker_side, price);
        }
    }

    fn rest(&mut self, order: RefOrder) {
        let (id, instrument_id, side, price, leaves) = (
            order.order_id,
            order.instrument_id,
            order.side,
            order.price,
            order.leaves,
        );
        self.orders.insert(id, order);
        let instrument = self.instruments.get_mut(&instrument_id).expect("exists");
        instrument.books[side.index()]
            .entry(price)
            .or_default()
            .push_back(id);
        self.book_event(EventKind::BookAdd, id, leaves, 0);
        self.level(instrument_id, side, price);
    }

    fn unlink(&mut self, order_id: u64) {
        let order = &self.orders[&order_id];
        let instrument = self
            .instruments
            .get_mut(&order.instrument_id)
            .expect("exists");
        let book = &mut instrument.books[order.side.index()];
        let queue = book.get_mut(&order.price).expect("level");
        queue.retain(|id| *id != order_id);
        if queue.is_empty() {
            book.remove(&order.price);
        }
    }

    fn cancel_resting(&mut self, order_id: u64, reason: CancelReason) {
        let order = self.orders[&order_id].clone();
        let mut cancelled = self.order_event(EventKind::Cancelled, order_id);
        cancelled.reason = reason as u8;
        cancelled.quantity = U64::new(order.leaves);
        self.events.push(cancelled);
        self.book_event(EventKind::BookDelete, order_id, order.leaves, 0);
        self.unlink(order_id);
        self.orders.remove(&order_id);
        self.level(order.instrument_id, order.side, order.price);
    }

    fn order_event(&self, kind: EventKind, order_id: u64) -> Event {
        let order = &self.orders[&order_id];
        let mut out = event(kind, self.sequence, order.instrument_id);
        out.side = order.side as u8;
        out.order_id = U64::new(order_id);
        out.price = I64::new(order.price);
        out.account_id = U32::new(order.account_id);
        out.aux_a = U64::new(order.client_order_id);
        out
    }

    fn book_event(&mut self, kind: EventKind, order_id: u64, quantity: u64, leaves: u64) {
        let mut out = self.order_event(kind, order_id);
        out.account_id = U32::new(0);
        out.aux_a = U64::new(0);
        out.quantity = U64::new(quantity);
        out.aux_b = U64::new(leaves);
        self.events.push(out);
    }

    fn taker_cancelled(
        &mut self,
        instrument_id: u32,
        taker: &Taker,
        reason: CancelReason,
        quantity: u64,
        left: u64,
    ) {
        let mut cancelled = event(EventKind::Cancelled, self.sequence, instrument_id);
        cancelled.side = taker.side as u8;
        cancelled.reason = reason as u8;
        cancelled.order_id = U64::new(taker.order_id);
        cancelled.price = I64::new(taker.price);
        cancelled.quantity = U64::new(quantity);
        cancelled.account_id = U32::new(taker.account_id);
        cancelled.aux_a = U64::new(taker.client_order_id);
        cancelled.aux_b = U64::new(left);
        self.events.push(cancelled);
    }

    fn level(&mut self, instrument_id: u32, side: Side, price: i64) {
        let instrument = &self.instruments[&instrument_id];
        let (quantity, count) = match instrument.books[side.index()].get(&price) {
            Some(queue) => (
                queue.iter().map(|id| self.orders[id].leaves).sum::<u64>(),
                queue.len() as u64,
            ),
            None => (0, 0),
        };
        let mut out = event(EventKind::LevelUpdate, self.sequence, instrument_id);
        out.side = side as u8;
        out.price = I64::new(price);
        out.quantity = U64::new(quantity);
        out.aux_a = U64::new(count);
        self.events.push(out);
    }
}
