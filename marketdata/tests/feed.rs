//! End to end: seeded random commands through the matcher, the feed encoder and the frame
//! packer to several subscribers, whose rebuilt books must equal the matcher's at every
//! checkpoint:
//!
//! - one that receives every frame;
//! - one that loses frames and recovers them from the retransmission ring;
//! - two late joiners, from the engine's snapshot and from the first subscriber's snapshot;
//! - a book rebuilt from the recorded ITCH file;
//! - and an encoder restored from the matcher mid-run (a new leader) must produce the same
//!   bytes as the original from there on.
//!
//! `MARKETDATA_FEED_COMMANDS` sets the number of commands (default 1,000,000, a few seconds
//! in the test profile), `MARKETDATA_FEED_SEED` the seed.

use marketdata::itch::{BuySell, Message};
use marketdata::{
    Book, BookConfig, FeedConfig, FeedEncoder, FileRecords, FileSink, FrameOutcome, FramePacker,
    FrameView, MessageSink, RetransmitRing, Subscriber,
};
use matcher::{
    Cancel, Command, Event, EventKind, InstrumentConfig, MassCancel, Matcher, NewOrder, OrderType,
    Replace, Side, StpMode, TimeInForce,
};

const SESSION: [u8; 10] = *b"TESTFEED01";
const FRAME_LEN: usize = 512;
const BATCH_COMMANDS: u64 = 8;
const CHECKSUM_INTERVAL: u64 = 250;
const CHECKPOINT_INTERVAL: u64 = 2_000;
const RING_MESSAGES: usize = 1 << 16;
const TIMESTAMP_BASE_NS: u64 = 1_790_000_000_000_000_000;
const ACCOUNTS: u32 = 6;
const KNOWN_ORDERS_MAX: usize = 4096;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn instruments() -> Vec<InstrumentConfig> {
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
struct Generator {
    rng: Rng,
    instruments: Vec<InstrumentConfig>,
    mid_ticks: Vec<i64>,
    known: Vec<(u32, u64)>,
    client_order_id: u64,
    instruments_added: usize,
}

impl Generator {
    fn new(seed: u64) -> Generator {
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

    fn observe(&mut self, events: &[Event]) {
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

    fn next(&mut self, command_index: u64, commands: u64, matcher: &Matcher) -> Command {
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

fn matcher_config() -> matcher::Config {
    matcher::Config {
        order_capacity: 1 << 16,
        level_capacity: 1 << 16,
        instrument_capacity: 8,
        account_capacity: 64,
    }
}

fn book_config() -> BookConfig {
    BookConfig {
        instrument_capacity: 8,
        order_capacity: 1 << 16,
        levels_per_side_max: 4_000,
    }
}

/// The books of `book` equal the matcher's, order by order (reference = priority sequence,
/// price, shares, in priority order), level by level, and by checksum.
fn assert_same_books(matcher: &Matcher, encoder: &FeedEncoder, book: &Book, label: &str) {
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

/// Feeds frames, then recovers any gap from the ring until none is left.
fn deliver(
    subscriber: &mut Subscriber,
    frames: &[Vec<u8>],
    ring: &RetransmitRing,
    retransmit_packer: &mut FramePacker,
    label: &str,
) -> u64 {
    for frame in frames {
        subscriber
            .on_frame(frame)
            .unwrap_or_else(|error| panic!("{label}: {error}"));
    }
    recover(subscriber, ring, retransmit_packer, label)
}

fn recover(
    subscriber: &mut Subscriber,
    ring: &RetransmitRing,
    retransmit_packer: &mut FramePacker,
    label: &str,
) -> u64 {
    let mut retransmitted = 0;
    while let Some(range) = subscriber.gap() {
        let mut frames = Vec::new();
        retransmitted += ring
            .retransmit(
                range.start,
                range.end,
                retransmit_packer,
                &mut |frame: &[u8]| frames.push(frame.to_vec()),
            )
            .unwrap_or_else(|error| panic!("{label}: {error}"));
        for frame in &frames {
            let outcome = subscriber
                .on_frame(frame)
                .unwrap_or_else(|error| panic!("{label}: {error}"));
            assert!(
                !matches!(outcome, FrameOutcome::Gap { .. }),
                "{label}: gap in a retransmission"
            );
        }
    }
    retransmitted
}

fn collect_snapshot(encode: impl FnOnce(&mut dyn FnMut(u64, &[u8]))) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    encode(&mut |_sequence: u64, bytes: &[u8]| messages.push(bytes.to_vec()));
    messages
}

#[test]
fn books_rebuilt_from_the_feed_equal_the_matcher() {
    let commands: u64 = std::env::var("MARKETDATA_FEED_COMMANDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = std::env::var("MARKETDATA_FEED_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x5EED_1234);

    let mut matcher = Matcher::new(matcher_config()).expect("matcher config");
    let feed_config = FeedConfig::from(&matcher_config());
    let mut encoder = FeedEncoder::new(feed_config);
    let mut ring = RetransmitRing::new(RING_MESSAGES);
    let mut packer = FramePacker::new(SESSION, FRAME_LEN).expect("frame length");
    let mut retransmit_packer = FramePacker::new(SESSION, FRAME_LEN).expect("frame length");
    let mut generator = Generator::new(seed);
    let mut drops = Rng(seed ^ 0xD00D);

    let mut full = Subscriber::new(book_config());
    let mut lossy = Subscriber::new(book_config());
    let mut late_engine = Subscriber::late_joiner(book_config());
    let mut late_peer = Subscriber::late_joiner(book_config());
    let join_engine_at = commands / 4;
    let join_peer_at = commands / 2;
    let restore_at = commands * 3 / 5;
    let mut restored: Option<FeedEncoder> = None;

    let mut recorded = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut dropped = 0u64;
    let mut retransmitted = 0u64;
    let mut messages_total = 0u64;
    let mut replaces = 0u64;
    let mut message_types = std::collections::BTreeMap::new();

    for index in 0..commands {
        let sequence = index + 1;
        let timestamp_ns = TIMESTAMP_BASE_NS + sequence * 1_000;
        let command = generator.next(index, commands, &matcher);
        replaces += u64::from(matches!(command, Command::Replace(_)));
        let record = command.encode();
        events.clear();
        matcher.apply(sequence, timestamp_ns, &record, &mut events);
        generator.observe(&events);

        let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut tee =
            |feed_sequence: u64, bytes: &[u8]| batch.push((feed_sequence, bytes.to_vec()));
        encoder
            .encode_command(sequence, timestamp_ns, &record, &events, &mut tee)
            .expect("encodes");
        if sequence % CHECKSUM_INTERVAL == 0 {
            encoder
                .encode_checksum(timestamp_ns, &matcher, &mut tee)
                .expect("checksum");
        }
        // The restored encoder (a new leader) must emit the same bytes.
        if let Some(shadow) = restored.as_mut() {
            let mut shadow_batch: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut shadow_tee = |feed_sequence: u64, bytes: &[u8]| {
                shadow_batch.push((feed_sequence, bytes.to_vec()))
            };
            shadow
                .encode_command(sequence, timestamp_ns, &record, &events, &mut shadow_tee)
                .expect("encodes");
            if sequence % CHECKSUM_INTERVAL == 0 {
                shadow
                    .encode_checksum(timestamp_ns, &matcher, &mut shadow_tee)
                    .expect("checksum");
            }
            assert_eq!(
                shadow_batch, batch,
                "restored encoder diverged at command {sequence}"
            );
        }
        messages_total += batch.len() as u64;
        for (_, bytes) in &batch {
            *message_types.entry(bytes[0]).or_insert(0u64) += 1;
        }
        for (feed_sequence, bytes) in &batch {
            ring.message(*feed_sequence, bytes);
            FileSink {
                out: &mut recorded,
                standard_only: false,
            }
            .message(*feed_sequence, bytes);
            packer
                .push(*feed_sequence, bytes, &mut |frame: &[u8]| {
                    frames.push(frame.to_vec())
                })
                .expect("fits");
        }

        if sequence == restore_at {
            restored = Some(
                FeedEncoder::restore(feed_config, &matcher, encoder.sequence_next())
                    .expect("restores"),
            );
        }

        if sequence % BATCH_COMMANDS != 0 && index + 1 != commands {
            continue;
        }
        // End of a batch: flush, deliver.
        packer.flush(&mut |frame: &[u8]| frames.push(frame.to_vec()));
        deliver(&mut full, &frames, &ring, &mut retransmit_packer, "full");
        let kept: Vec<Vec<u8>> = frames
            .iter()
            .filter(|_| {
                let drop = drops.percent(15);
                dropped += u64::from(drop);
                !drop
            })
            .cloned()
            .collect();
        for frame in &kept {
            lossy.on_frame(frame).expect("lossy subscriber");
        }
        let checkpoint = sequence % CHECKPOINT_INTERVAL == 0 || index + 1 == commands;
        // A heartbeat now and then (and before each checkpoint, as a quiet feed's periodic
        // heartbeat would) reveals a loss at the end of a burst.
        if checkpoint || drops.percent(50) {
            let heartbeat = packer.heartbeat(encoder.sequence_next());
            lossy.on_frame(&heartbeat).expect("heartbeat");
        }
        retransmitted += recover(&mut lossy, &ring, &mut retransmit_packer, "lossy");

        if sequence >= join_engine_at && late_engine.sequence_next().is_none() {
            let snapshot = collect_snapshot(|sink| {
                encoder
                    .encode_snapshot(timestamp_ns, &matcher, sink)
                    .expect("snapshot");
            });
            let as_of = late_engine
                .apply_snapshot(snapshot.iter().map(Vec::as_slice))
                .expect("engine snapshot applies");
            assert_eq!(as_of, encoder.sequence_next() - 1);
            assert_same_books(
                &matcher,
                &encoder,
                late_engine.book(),
                "late joiner (engine snapshot)",
            );
        } else {
            deliver(
                &mut late_engine,
                &frames,
                &ring,
                &mut retransmit_packer,
                "late joiner (engine)",
            );
        }
        if sequence >= join_peer_at && late_peer.sequence_next().is_none() {
            let as_of = full.sequence_next().expect("synchronized") - 1;
            let snapshot = collect_snapshot(|sink| {
                full.book().encode_snapshot(timestamp_ns, as_of, sink);
            });
            late_peer
                .apply_snapshot(snapshot.iter().map(Vec::as_slice))
                .expect("peer snapshot applies");
        } else {
            deliver(
                &mut late_peer,
                &frames,
                &ring,
                &mut retransmit_packer,
                "late joiner (peer)",
            );
        }
        frames.clear();

        if checkpoint {
            assert_same_books(&matcher, &encoder, full.book(), "full");
            assert_same_books(&matcher, &encoder, lossy.book(), "lossy");
            if late_engine.sequence_next().is_some() {
                assert_same_books(
                    &matcher,
                    &encoder,
                    late_engine.book(),
                    "late joiner (engine)",
                );
            }
            if late_peer.sequence_next().is_some() {
                assert_same_books(&matcher, &encoder, late_peer.book(), "late joiner (peer)");
            }
        }
    }

    // Everyone is at the end of the feed.
    for (subscriber, label) in [
        (&full, "full"),
        (&lossy, "lossy"),
        (&late_engine, "late engine"),
        (&late_peer, "late peer"),
    ] {
        assert_eq!(
            subscriber.sequence_next(),
            Some(encoder.sequence_next()),
            "{label}"
        );
        assert_same_books(&matcher, &encoder, subscriber.book(), label);
    }

    // The recorded ITCH file rebuilds the same books.
    let mut from_file = Book::new(book_config());
    for record in FileRecords::new(&recorded) {
        let message = Message::decode(record.expect("complete record")).expect("decodes");
        from_file.apply(&message).expect("applies");
    }
    assert_same_books(&matcher, &encoder, &from_file, "ITCH file");

    let counters = full.counters();
    let figures = format!(
        "{commands} commands, {messages_total} messages, {} orders resting, {replaces} replaces; \
         full: {counters:?}; lossy: {dropped} frames dropped, {retransmitted} messages retransmitted, {:?}; \
         encoder: {:?}",
        matcher.order_count(),
        lossy.counters(),
        encoder.counters()
    );
    let message_types: Vec<(char, u64)> = message_types
        .into_iter()
        .map(|(code, count)| (char::from(code), count))
        .collect();
    println!("{figures}\nmessages by type: {message_types:?}");
    for code in ['R', 'H', 'A', 'E', 'X', 'D', 'U', 'Z'] {
        assert!(
            message_types
                .iter()
                .any(|(c, count)| *c == code && *count > 0),
            "no {code} message in the run"
        );
    }

    assert!(
        counters.checksums_verified >= commands / CHECKSUM_INTERVAL,
        "{figures}"
    );
    assert!(lossy.counters().gaps > 0 && retransmitted > 0, "{figures}");
    assert!(encoder.counters().instruments_refused == 1, "{figures}");
    assert!(matcher.order_count() > 100, "{figures}");
}

/// Frame-level checks that the random run does not aim at: garbage frames are refused without
/// disturbing the subscriber, and a corrupted checksum is reported.
#[test]
fn bad_frames_and_checksums_are_reported() {
    let mut matcher = Matcher::new(matcher_config()).expect("matcher config");
    let mut encoder = FeedEncoder::new(FeedConfig::from(&matcher_config()));
    let mut packer = FramePacker::new(SESSION, FRAME_LEN).expect("frame length");
    let mut frames = Vec::new();
    let mut messages = Vec::new();
    for (sequence, command) in [
        (1, Command::AddInstrument(instruments()[0])),
        (
            2,
            Command::NewOrder(NewOrder {
                instrument_id: 1,
                account_id: 1,
                client_order_id: 1,
                side: Side::Buy,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Gtc,
                stp_mode: StpMode::None,
                post_only: false,
                price: 9_000,
                quantity: 10,
            }),
        ),
    ] {
        let record = command.encode();
        let mut events = Vec::new();
        matcher.apply(sequence, 0, &record, &mut events);
        encoder
            .encode_command(sequence, 0, &record, &events, &mut |s: u64, b: &[u8]| {
                messages.push((s, b.to_vec()))
            })
            .expect("encodes");
    }
    encoder
        .encode_checksum(0, &matcher, &mut |s: u64, b: &[u8]| {
            messages.push((s, b.to_vec()))
        })
        .expect("checksum");
    // Corrupt the checksum message (the last one).
    let (last_sequence, last) = messages.last_mut().expect("messages");
    last[11] ^= 1;
    let last_sequence = *last_sequence;
    for (sequence, bytes) in &messages {
        packer
            .push(*sequence, bytes, &mut |frame: &[u8]| {
                frames.push(frame.to_vec())
            })
            .expect("fits");
    }
    packer.flush(&mut |frame: &[u8]| frames.push(frame.to_vec()));
    assert_eq!(frames.len(), 1);

    let mut subscriber = Subscriber::new(book_config());
    assert!(subscriber
        .on_frame(&frames[0][..frames[0].len() - 1])
        .is_err());
    assert!(subscriber.on_frame(b"short").is_err());
    let mut other_session = frames[0].clone();
    other_session[0] = b'X';
    subscriber
        .on_frame(&packer.heartbeat(1))
        .expect("a heartbeat of the session");
    assert!(subscriber.on_frame(&other_session).is_err());
    assert_eq!(subscriber.sequence_next(), Some(1));
    let error = subscriber
        .on_frame(&frames[0])
        .expect_err("checksum mismatch");
    assert!(
        matches!(error, marketdata::SubscriberError::Checksum { sequence, .. } if sequence == last_sequence),
        "{error}"
    );
    // It now waits for a snapshot.
    assert_eq!(subscriber.sequence_next(), None);
    let view = FrameView::parse(&frames[0]).expect("parses");
    assert_eq!(view.len() as usize, messages.len());
}
