//! Differential test: the matcher against the simple reference model, command by command, over
//! random streams of every command kind. Events must be identical, and so must the books.
//!
//! The default run is sized for CI (a few seconds). For the long run:
//! `MATCHER_DIFF_COMMANDS=5000000 cargo test -p matcher --test differential -- --nocapture`.

mod common;

use common::reference::Reference;
use common::*;
use matcher::*;
use proptest::prelude::*;

/// Commands in the default long-stream run (override with `MATCHER_DIFF_COMMANDS`).
const DIFF_COMMANDS_DEFAULT: u64 = 1_000_000;
/// How often the books and the recomputed state hash are compared in full.
const FULL_CHECK_INTERVAL: u64 = 997;
const ACCOUNTS: u32 = 6;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
    fn chance(&mut self, percent_times_10: u64) -> bool {
        self.below(1000) < percent_times_10
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn instruments() -> [InstrumentConfig; 2] {
    let first = instrument(1);
    let mut second = instrument(2);
    second.tick_size = 5;
    second.price_min = 5;
    second.price_levels = 400;
    second.reference_price = 1000;
    second.lot_size = 10;
    second.quantity_min_lots = 1;
    second.quantity_max_lots = 50;
    second.band_width_ticks = 30;
    second.notional_max = 300_000;
    [first, second]
}

fn config() -> Config {
    Config {
        order_capacity: 400,
        level_capacity: 5000,
        instrument_capacity: 3,
        account_capacity: ACCOUNTS,
    }
}

/// Generates a command. Reads the matcher only to aim cancels and replaces at live orders.
fn generate(rng: &mut Rng, matcher: &Matcher, sequence: u64, mids: &mut [i64; 2]) -> CommandRecord {
    let configs = instruments();
    let slot = rng.below(2) as usize;
    let config = configs[slot];
    let tick = i64::from(config.tick_size);
    let lot = u64::from(config.lot_size);
    // Drift the mid slowly.
    mids[slot] = (mids[slot] + tick * (rng.below(3) as i64 - 1))
        .clamp(config.price_min + 40 * tick, config.price_min + 360 * tick);
    let mid = mids[slot];
    // Rarely an account beyond the capacity, to hit `Capacity`.
    let account_id = if rng.chance(3) {
        ACCOUNTS + 1 + rng.below(3) as u32
    } else {
        1 + rng.below(u64::from(ACCOUNTS)) as u32
    };
    let side = rng.pick(&[Side::Buy, Side::Sell]);
    let client_order_id = rng.below(300);
    let price = |rng: &mut Rng| {
        // Mostly passive: buys below the mid, sells above; a few percent cross.
        let offset = rng.below(24) as i64 - 2;
        let mut price = match side {
            Side::Buy => mid - offset * tick,
            Side::Sell => mid + offset * tick,
        };
        if rng.chance(10) {
            price += 1; // off tick for instrument 2
        }
        if rng.chance(5) {
            price = config.price_min
                + tick * (rng.below(u64::from(config.price_levels) + 40) as i64)
                - 20 * tick;
        }
        price
    };
    let quantity = |rng: &mut Rng| {
        let mut quantity = lot * (1 + rng.below(12));
        if rng.chance(10) {
            quantity += 1;
        }
        if rng.chance(5) {
            quantity = lot * rng.below(80);
        }
        quantity
    };
    let mut live = Vec::new();
    for side in [Side::Buy, Side::Sell] {
        matcher.for_each_order(config.instrument_id, side, |order| {
            live.push(order.order_id)
        });
    }
    let target = |rng: &mut Rng| -> (u64, u32) {
        let order_id = if !live.is_empty() && rng.chance(900) {
            live[rng.below(live.len() as u64) as usize]
        } else {
            sequence.saturating_sub(1 + rng.below(60))
        };
        let owner = matcher
            .order(order_id)
            .map_or(account_id, |order| order.account_id);
        let account = if rng.chance(900) { owner } else { account_id };
        (order_id, account)
    };
    let roll = rng.below(1000);
    let command = match roll {
        0..=519 => {
            let order_type = if rng.chance(120) {
                OrderType::Market
            } else {
                OrderType::Limit
            };
            let time_in_force = match order_type {
                OrderType::Market => {
                    rng.pick(&[TimeInForce::Ioc, TimeInForce::Ioc, TimeInForce::Fok])
                }
                OrderType::Limit => rng.pick(&[
                    TimeInForce::Gtc,
                    TimeInForce::Gtc,
                    TimeInForce::Gtc,
                    TimeInForce::Gtc,
                    TimeInForce::Day,
                    TimeInForce::Day,
                    TimeInForce::Ioc,
                    TimeInForce::Fok,
                ]),
            };
            let stp_mode = if rng.chance(500) {
                StpMode::None
            } else {
                rng.pick(&[
                    StpMode::CancelNewest,
                    StpMode::CancelOldest,
                    StpMode::CancelBoth,
                    StpMode::DecrementAndCancel,
                ])
            };
            let post_only =
                order_type == OrderType::Limit && time_in_force.rests() && rng.chance(100);
            let instrument_id = if rng.chance(5) {
                3
            } else {
                config.instrument_id
            };
            Command::NewOrder(NewOrder {
                instrument_id,
                account_id,
                client_order_id,
                side,
                order_type,
                time_in_force,
                stp_mode,
                post_only,
                price: if order_type == OrderType::Market {
                    0
                } else {
                    price(rng)
                },
                quantity: quantity(rng),
            })
        }
        520..=659 => {
            let (order_id, account_id) = target(rng);
            Command::Cancel(Cancel {
                account_id,
                order_id,
            })
        }
        660..=939 => {
            let (order_id, account_id) = target(rng);
            let current = matcher.order(order_id);
            let (new_price, new_quantity) = match current {
                Some(order) if rng.chance(700) => {
                    let instrument = matcher
                        .instrument(order.instrument_id)
                        .expect("exists")
                        .config;
                    let step = i64::from(instrument.tick_size) * (rng.below(5) as i64 - 2);
                    let price = if rng.chance(500) {
                        order.price
                    } else {
                        order.price + step
                    };
                    let lot = u64::from(instrument.lot_size);
                    let quantity = match rng.below(4) {
                        0 => order.quantity,
                        1 => order.quantity.saturating_sub(lot * rng.below(4)),
                        2 => order.quantity + lot * rng.below(4),
                        _ => {
                            (order.quantity - order.leaves).saturating_sub(lot) + lot * rng.below(3)
                        }
                    };
                    (price, quantity)
                }
                _ => (price(rng), quantity(rng)),
            };
            let client_order_id = match current {
                Some(order) if rng.chance(500) => order.client_order_id,
                _ => client_order_id,
            };
            Command::Replace(Replace {
                account_id,
                order_id,
                client_order_id,
                price: new_price,
                quantity: new_quantity,
            })
        }
        940..=942 => Command::MassCancel(MassCancel {
            account_id,
            instrument_id: rng.pick(&[None, Some(1), Some(2), Some(3)]),
            side: rng.pick(&[None, Some(Side::Buy), Some(Side::Sell)]),
        }),
        943 => Command::Halt {
            instrument_id: config.instrument_id,
        },
        944..=960 => Command::Resume {
            instrument_id: config.instrument_id,
        },
        961 => Command::KillSwitch {
            account_id,
            on: true,
        },
        962..=975 => Command::KillSwitch {
            account_id,
            on: false,
        },
        976 => Command::EndOfDay {
            instrument_id: rng.pick(&[1, 2, 3]),
        },
        977..=990 => Command::SetReferencePrice {
            instrument_id: config.instrument_id,
            price: if rng.chance(900) { mid } else { price(rng) },
        },
        991..=995 => {
            let mut added = instrument(rng.pick(&[2, 3, 4]));
            if rng.chance(300) {
                added.lot_size = 0;
            }
            Command::AddInstrument(added)
        }
        _ => {
            let mut record = limit(account_id, client_order_id, Side::Buy, mid, lot).encode();
            match rng.below(4) {
                0 => record.kind = 99,
                1 => record.side = 7,
                2 => record.reserved_2 = zerocopy::little_endian::U64::new(1),
                _ => record.stp_mode = 9,
            }
            return record;
        }
    };
    command.encode()
}

fn compare_books(matcher: &Matcher, reference: &Reference, sequence: u64) {
    assert_eq!(
        matcher.order_count() as usize,
        reference.order_count(),
        "order count at #{sequence}"
    );
    for instrument_id in 1..=3 {
        for side in [Side::Buy, Side::Sell] {
            let mut ours = Vec::new();
            matcher.for_each_order(instrument_id, side, |order| ours.push(*order));
            let theirs = reference.book(instrument_id, side);
            assert_eq!(
                ours.len(),
                theirs.len(),
                "book size i{instrument_id} {side:?} at #{sequence}"
            );
            for (a, b) in ours.iter().zip(&theirs) {
                let same = a.order_id == b.order_id
                    && a.client_order_id == b.client_order_id
                    && a.account_id == b.account_id
                    && a.price == b.price
                    && a.quantity == b.quantity
                    && a.leaves == b.leaves
                    && a.time_in_force == b.time_in_force
                    && a.stp_mode == b.stp_mode
                    && a.post_only == b.post_only
                    && a.priority_sequence == b.priority_sequence;
                assert!(same, "book differs at #{sequence}: {a:?} vs {b:?}");
            }
        }
    }
}

/// Runs `commands` random commands from `seed` through both implementations.
fn run(seed: u64, commands: u64) -> (u64, u64) {
    let mut rng = Rng(seed);
    let mut matcher = Matcher::new(config()).expect("config");
    let mut reference = Reference::new(config());
    let mut events = Vec::new();
    let mut sequence = 0u64;
    let mut mids = [100i64, 1000];
    let mut trades = 0u64;
    let mut histogram = std::collections::BTreeMap::new();
    let mut book_sizes = 0u64;
    for instrument in instruments() {
        sequence += 1;
        let record = Command::AddInstrument(instrument).encode();
        events.clear();
        matcher.apply(sequence, sequence, &record, &mut events);
        assert_eq!(events, reference.apply(sequence, &record));
    }
    for _ in 0..commands {
        sequence += 1;
        let record = generate(&mut rng, &matcher, sequence, &mut mids);
        events.clear();
        // The prefetch hints must never change state or panic, whatever the record.
        let hash = matcher.state_hash();
        matcher.prefetch_early(&record);
        matcher.prefetch(&record);
        assert_eq!(matcher.state_hash(), hash);
        matcher.apply(sequence, sequence, &record, &mut events);
        let expected = reference.apply(sequence, &record);
        if events != expected {
            panic!(
                "seed {seed}: events differ at #{sequence} for {record:?}\nmatcher:\n{}\nreference:\n{}",
                events.iter().map(|e| format!("  {e:?}\n")).collect::<String>(),
                expected.iter().map(|e| format!("  {e:?}\n")).collect::<String>(),
            );
        }
        trades += events
            .iter()
            .filter(|event| event.kind == EventKind::Trade as u8)
            .count() as u64;
        if std::env::var("MATCHER_DIFF_STATS").is_ok() {
            for event in &events {
                let key = if event.kind == EventKind::Rejected as u8 {
                    100 + event.reason
                } else {
                    event.kind
                };
                *histogram.entry(key).or_insert(0u64) += 1;
            }
            book_sizes += u64::from(matcher.order_count());
        }
        if sequence.is_multiple_of(FULL_CHECK_INTERVAL) {
            compare_books(&matcher, &reference, sequence);
            assert_eq!(matcher.state_hash(), matcher.state_hash_recomputed());
        }
    }
    compare_books(&matcher, &reference, sequence);
    assert_eq!(matcher.state_hash(), matcher.state_hash_recomputed());
    if !histogram.is_empty() {
        eprintln!(
            "event kinds (100+ = reject reason): {histogram:?}, mean book {}",
            book_sizes / commands.max(1)
        );
    }
    (sequence, trades)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Many short streams (shrinkable by length).
    #[test]
    fn matcher_equals_reference_short_streams(seed in any::<u64>(), commands in 1u64..1500) {
        run(seed, commands);
    }
}

/// One long stream; `MATCHER_DIFF_COMMANDS` sets its length.
#[test]
fn matcher_equals_reference_long_stream() {
    let commands = std::env::var("MATCHER_DIFF_COMMANDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DIFF_COMMANDS_DEFAULT);
    let (sequence, trades) = run(0x5EED, commands);
    eprintln!("differential: {sequence} commands, {trades} trades, identical");
    assert!(trades > commands / 50, "the stream should trade: {trades}");
}
