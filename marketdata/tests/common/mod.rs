//! Shared by the feed tests: seeded random commands of every kind over five instruments with
//! different unit systems, and the check that a rebuilt book equals the matcher's.

#![allow(dead_code)]

use marketdata::itch::BuySell;
use marketdata::{Book, BookConfig, FeedEncoder};
use matcher::{
    Cancel, Command, Event, EventKind, InstrumentConfig, MassCancel, Matcher, NewOrder, OrderType,
    Replace, Side, StpMode, TimeInForce,
};

pub const TIMESTAMP_BASE_NS: u64 = 1_790_000_000_000_000_000;
pub const ACCOUNTS: u32 = 6;
pub const KNOWN_ORDERS_MAX: usize = 4096;

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub fn instruments() -> Vec<InstrumentConfig> {
    let base = InstrumentConfig {
        instrument_id: 1,
        symbol: *b"ACME\0\0\0\0",
        price_exponent: -2,
        quantity_exponent: 0,
        tick_size: 5,
        lot_size: 1,
        price_min: 5,
        price_levels: 4_000,
        band_width_ticks: 0,
        reference_price: 10_000,
        quantity_min_lots: 1,
        quantity_max_lots: 500,
        notional_max: 0,
    };
    vec![
        base,
        // Micro price units with a 0.0001 tick, hundredths of a share in whole-share lots,
        // a dynamic band.
        InstrumentConfig {
            instrument_id: 2,
            symbol: *b"MICRO\0\0\0",
            price_exponent: -6,
            quantity_exponent: -2,
            tick_size: 100,
            lot_size: 100,
            price_min: 100,
            reference_price: 200_000,
            band_width_ticks: 60,
            quantity_max_lots: 1_000,
            ..base
        },
        // Quantities in hundreds of shares.
        InstrumentConfig {
            instrument_id: 3,
            symbol: *b"HUND\0\0\0\0",
            price_exponent: -4,
            quantity_exponent: 2,
            tick_size: 1,
            price_min: 1,
            reference_price: 2_000,
            quantity_max_lots: 50,
            ..base
        },
        // Negative prices: the matcher trades it, the feed refuses it.
        InstrumentConfig {
            instrument_id: 4,
            symbol: *b"NEGA\0\0\0\0",
            tick_size: 1,
            price_min: -2_000,
            reference_price: 0,
            ..base
        },
        // Added later in the run.
        InstrumentConfig {
            instrument_id: 5,
            symbol: *b"LATE\0\0\0\0",
            ..base
        },
    ]
}

/// Random commands of every kind, aimed at live orders often enough to exercise cancels,
/// replaces (priority kept, priority lost, crossing), STP, halts, kill switches, end of day.
pub struct Generator {
    rng: Rng,
    instruments: Vec<InstrumentConfig>,
    mid_ticks: Vec<i64>,
    known: Vec<(u32, u64)>,
    client_order_id: u64,
    instruments_added: usize,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        let instruments = instruments();
        let mid_ticks = instruments
            .iter()
            .map(|i| (i.reference_price - i.price_min) / i64::from(i.tick_size))
            .collect();
        Generator {
            rng: Rng(seed | 1),
            instruments,
            mid_ticks,
            known: Vec::with_capacity(KNOWN_ORDERS_MAX),
            client_order_id: 0,
            instruments_added: 0,
        }
    }

    pub fn observe(&mut self, events: &[Event]) {
        for event in events {
            if event.event_kind() == Some(EventKind::Accepted) {
                if self.known.len() == KNOWN_ORDERS_MAX {
                    let victim = self.rng.below(KNOWN_ORDERS_MAX as u64) as usize;
                    self.known.swap_remove(victim);
                }
                self.known
                    .push((event.account_id.get(), event.order_id.get()));
            }
        }
    }

    fn price(&mut self, index: usize, offset_ticks: i64) -> i64 {
        let config = &self.instruments[index];
        let ticks =
            (self.mid_ticks[index] + offset_ticks).clamp(0, i64::from(config.price_levels) - 1);
        config.price_min + ticks * i64::from(config.tick_size)
    }

    fn quantity(&mut self, index: usize) -> u64 {
        let config = &self.instruments[index];
        let lots = if self.rng.percent(3) {
            1 + self.rng.below(u64::from(config.quantity_max_lots))
        } else {
            1 + self.rng.below(20)
        };
        lots * u64::from(config.lot_size)
    }

    pub fn next(&mut self, command_index: u64, commands: u64, matcher: &Matcher) -> Command {
        // Instruments 1..=4 first, instrument 5 a third of the way in.
        if self.instruments_added < 4
            || (self.instruments_added == 4 && command_index == commands / 3)
        {
            let config = self.instruments[self.instruments_added];
            self.instruments_added += 1;
            return Command::AddInstrument(config);
        }
        let index = self.rng.below(self.instruments_added as u64) as usize;
        let instrument_id = self.instruments[index].instrument_id;
        if self.rng.percent(5) {
            let step = self.rng.below(3) as i64 - 1;
            let levels = i64::from(self.instruments[index].price_levels);
            self.mid_ticks[index] = (self.mid_ticks[index] + step).clamp(100, levels - 100);
        }
        let account_id = 1 + self.rng.below(u64::from(ACCOUNTS)) as u32;
        self.client_order_id += 1;
        let client_order_id = self.client_order_id;
        // Cancels and market orders thin the book; below a few thousand resting orders they
        // come less often, so the book stays deep enough to be interesting.
        let crowded = matcher.order_count() > 3_000;
        let roll = self.rng.below(10_000);
        let roll = if !crowded && (4_500..7_300).contains(&roll) && self.rng.percent(50) {
            self.rng.below(4_500)
        } else {
            roll
        };
        match roll {
            0..=4_499 => {
                let time_in_force = match self.rng.below(20) {
                    0..=11 => TimeInForce::Gtc,
                    12..=15 => TimeInForce::Day,
                    16..=18 => TimeInForce::Ioc,
                    _ => TimeInForce::Fok,
                };
                let offset = self.rng.below(41) as i64 - 20;
                let side = if self.rng.percent(50) {
                    Side::Buy
                } else {
                    Side::Sell
                };
                // Mostly on its own side of the mid; some cross.
                let offset = match side {
                    Side::Buy if !self.rng.percent(10) => -offset.abs(),
                    Side::Sell if !self.rng.percent(10) => offset.abs(),
                    _ => offset,
                };
                Command::NewOrder(NewOrder {
                    instrument_id,
                    account_id,
                    client_order_id,
                    side,
                    order_type: OrderType::Limit,
                    time_in_force,
                    stp_mode: self.stp_mode(),
                    post_only: time_in_force.rests() && self.rng.percent(5),
                    price: self.price(index, offset),
                    quantity: self.quantity(index),
                })
            }
            4_500..=4_899 => Command::NewOrder(NewOrder {
                instrument_id,
                account_id,
                client_order_id,
                side: if self.rng.percent(50) {
                    Side::Buy
                } else {
                    Side::Sell
                },
                order_type: OrderType::Market,
                time_in_force: if self.rng.percent(80) {
                    TimeInForce::Ioc
                } else {
                    TimeInForce::Fok
                },
                stp_mode: self.stp_mode(),
                post_only: false,
                price: 0,
                quantity: self.quantity(index),
            }),
            4_900..=7_299 => {
                let Some((owner, order_id)) = self.pick_live(matcher) else {
                    return Command::SetReferencePrice {
                        instrument_id,
                        price: self.price(index, 0),
                    };
                };
                Command::Cancel(Cancel {
                    account_id: if self.rng.percent(97) {
                        owner
                    } else {
                        account_id
                    },
                    order_id,
                })
            }
            7_300..=9_599 => {
                let Some((owner, order_id)) = self.pick_live(matcher) else {
                    return Command::SetReferencePrice {
                        instrument_id,
                        price: self.price(index, 0),
                    };
                };
                let (price, quantity) = match matcher.order(order_id) {
                    Some(order) => {
                        let config = matcher
                            .instrument(order.instrument_id)
                            .map(|view| view.config)
                            .unwrap_or(self.instruments[index]);
                        let lot = u64::from(config.lot_size);
                        let tick = i64::from(config.tick_size);
                        match self.rng.below(10) {
                            // Same price, smaller total: keeps priority (or cancels).
                            0..=3 => (
                                order.price,
                                order
                                    .quantity
                                    .saturating_sub(lot * self.rng.below(3))
                                    .max(lot),
                            ),
                            // Same price, larger total: loses priority.
                            4..=5 => (order.price, order.quantity + lot * (1 + self.rng.below(3))),
                            // New price, a few ticks away (may cross).
                            _ => (
                                order.price + tick * (self.rng.below(9) as i64 - 4),
                                order.quantity,
                            ),
                        }
                    }
                    None => (self.price(index, 0), self.quantity(index)),
                };
                Command::Replace(Replace {
                    account_id: if self.rng.percent(97) {
                        owner
                    } else {
                        account_id
                    },
                    order_id,
                    client_order_id,
                    price,
                    quantity,
                })
            }
            9_600..=9_604 => Command::MassCancel(MassCancel {
                account_id,
                instrument_id: if self.rng.percent(50) {
                    Some(instrument_id)
                } else {
                    None
                },
                side: match self.rng.below(3) {
                    0 => None,
                    1 => Some(Side::Buy),
                    _ => Some(Side::Sell),
                },
            }),
            9_605..=9_609 => Command::Halt { instrument_id },
            9_610..=9_709 => Command::Resume { instrument_id },
            9_710..=9_711 => Command::KillSwitch {
                account_id,
                on: true,
            },
            9_712..=9_761 => Command::KillSwitch {
                account_id,
                on: false,
            },
            9_762..=9_763 => Command::EndOfDay { instrument_id },
            _ => Command::SetReferencePrice {
                instrument_id,
                price: self.price(index, 0),
            },
        }
    }

    /// A known order that is still resting (forgetting the dead ones met on the way).
    fn pick_live(&mut self, matcher: &Matcher) -> Option<(u32, u64)> {
        for _ in 0..8 {
            if self.known.is_empty() {
                return None;
            }
            let at = self.rng.below(self.known.len() as u64) as usize;
            let (owner, order_id) = self.known[at];
            if matcher.order(order_id).is_some() || self.rng.percent(2) {
                return Some((owner, order_id));
            }
            self.known.swap_remove(at);
        }
        None
    }

    fn stp_mode(&mut self) -> StpMode {
        match self.rng.below(10) {
            0 => StpMode::CancelNewest,
            1 => StpMode::CancelOldest,
            2 => StpMode::CancelBoth,
            3 => StpMode::DecrementAndCancel,
            _ => StpMode::None,
        }
    }
}

pub fn matcher_config() -> matcher::Config {
    matcher::Config {
        order_capacity: 1 << 16,
        level_capacity: 1 << 16,
        instrument_capacity: 8,
        account_capacity: 64,
    }
}

pub fn book_config() -> BookConfig {
    BookConfig {
        instrument_capacity: 8,
        order_capacity: 1 << 16,
        levels_per_side_max: 4_000,
    }
}

/// The books of `book` equal the matcher's, order by order (reference = priority sequence,
/// price, shares, in priority order), level by level, and by checksum.
pub fn assert_same_books(matcher: &Matcher, encoder: &FeedEncoder, book: &Book, label: &str) {
    for config in instruments() {
        let id = config.instrument_id;
        let Some(instrument) = encoder.instrument(id) else {
            assert!(
                book.instrument(id as u16).is_none(),
                "{label}: refused instrument {id} has a book"
            );
            continue;
        };
        if matcher.instrument(id).is_none() {
            continue;
        }
        assert!(
            book.instrument(id as u16).is_some(),
            "{label}: instrument {id} missing"
        );
        for (side, buy_sell) in [(Side::Buy, BuySell::Buy), (Side::Sell, BuySell::Sell)] {
            let mut expected = Vec::new();
            matcher.for_each_order(id, side, |order| {
                expected.push((
                    order.priority_sequence,
                    instrument
                        .price_to_itch(order.price)
                        .expect("price converts"),
                    instrument
                        .quantity_to_shares(order.leaves)
                        .expect("quantity converts"),
                ))
            });
            let mut got = Vec::new();
            book.for_each_order(id as u16, buy_sell, |order| {
                got.push((order.reference, order.price, order.shares))
            });
            assert_eq!(got, expected, "{label}: orders of instrument {id} {side:?}");
            let mut expected_levels = Vec::new();
            matcher.for_each_level(id, side, |level| {
                expected_levels.push((
                    instrument
                        .price_to_itch(level.price)
                        .expect("price converts"),
                    instrument
                        .level_quantity_to_shares(level.quantity)
                        .expect("converts"),
                    level.order_count,
                ))
            });
            let mut got_levels = Vec::new();
            book.for_each_level(id as u16, buy_sell, |level| {
                got_levels.push((level.price, level.shares, level.order_count))
            });
            assert_eq!(
                got_levels, expected_levels,
                "{label}: levels of instrument {id} {side:?}"
            );
        }
    }
    let engine = encoder.book_checksum(matcher).expect("checksum");
    assert_eq!(book.checksum(), engine, "{label}: checksum");
    assert_eq!(
        book.checksum(),
        book.checksum_recomputed(),
        "{label}: kept checksum"
    );
}
