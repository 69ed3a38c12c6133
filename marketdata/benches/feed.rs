//! Feed throughput without criterion: the encoder (events → ITCH messages → MoldUDP64 frames)
//! and the subscriber (frames → decoded messages → rebuilt books), each timed over a stream
//! generated beforehand by running the matcher. The figures depend on the machine and its
//! load; run `cargo bench -p marketdata --bench feed` on a quiet machine.
//! `MARKETDATA_BENCH_COMMANDS` sets the stream length (default 2,000,000). Without the
//! `--bench` argument, as `cargo test --all-targets` runs it, it does a 20,000-command smoke
//! run whose figures mean nothing.

use marketdata::{BookConfig, FeedConfig, FeedEncoder, FramePacker, PackingSink, Subscriber};
use matcher::{
    Cancel, Command, CommandRecord, Event, EventKind, InstrumentConfig, Matcher, NewOrder,
    OrderType, Side, StpMode, TimeInForce,
};
use std::hint::black_box;
use std::time::Instant;

struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}

fn main() {
    let commands: u64 = std::env::var("MARKETDATA_BENCH_COMMANDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(if std::env::args().any(|arg| arg == "--bench") {
            2_000_000
        } else {
            20_000
        });
    let config = matcher::Config {
        order_capacity: 1 << 20,
        level_capacity: 1 << 16,
        instrument_capacity: 4,
        account_capacity: 1 << 10,
    };
    let instrument = InstrumentConfig {
        instrument_id: 1,
        symbol: *b"BENCH\0\0\0",
        price_exponent: -2,
        quantity_exponent: 0,
        tick_size: 1,
        lot_size: 1,
        price_min: 1,
        price_levels: 20_000,
        band_width_ticks: 0,
        reference_price: 10_000,
        quantity_min_lots: 1,
        quantity_max_lots: 10_000,
        notional_max: 0,
    };

    // The stream: 70% limits around a drifting mid (some cross), 25% cancels of live orders,
    // 5% market orders; recorded with its events.
    let mut matcher = Matcher::new(config).expect("config");
    let mut rng = Rng(0x5EED);
    let mut live: Vec<(u32, u64)> = Vec::new();
    let mut stream: Vec<(u64, CommandRecord, std::ops::Range<usize>)> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut mid = 10_000i64;
    for index in 0..commands {
        let sequence = index + 1;
        let account_id = 1 + rng.below(100) as u32;
        let command = if index == 0 {
            Command::AddInstrument(instrument)
        } else {
            match rng.below(100) {
                0..=69 => {
                    mid = (mid + rng.below(3) as i64 - 1).clamp(1_000, 19_000);
                    let side = if rng.below(2) == 0 {
                        Side::Buy
                    } else {
                        Side::Sell
                    };
                    let offset = rng.below(30) as i64 - 2;
                    let price = match side {
                        Side::Buy => mid - offset,
                        Side::Sell => mid + offset,
                    };
                    Command::NewOrder(NewOrder {
                        instrument_id: 1,
                        account_id,
                        client_order_id: sequence,
                        side,
                        order_type: OrderType::Limit,
                        time_in_force: TimeInForce::Gtc,
                        stp_mode: StpMode::None,
                        post_only: false,
                        price,
                        quantity: 1 + rng.below(100),
                    })
                }
                70..=94 if !live.is_empty() => {
                    let (owner, order_id) = live.swap_remove(rng.below(live.len() as u64) as usize);
                    Command::Cancel(Cancel {
                        account_id: owner,
                        order_id,
                    })
                }
                _ => Command::NewOrder(NewOrder {
                    instrument_id: 1,
                    account_id,
                    client_order_id: sequence,
                    side: if rng.below(2) == 0 {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    order_type: OrderType::Market,
                    time_in_force: TimeInForce::Ioc,
                    stp_mode: StpMode::None,
                    post_only: false,
                    price: 0,
                    quantity: 1 + rng.below(200),
                }),
            }
        };
        let record = command.encode();
        let start = events.len();
        matcher.apply(sequence, sequence * 1_000, &record, &mut events);
        for event in &events[start..] {
            // A new order's BookAdd follows its Accepted, which names the owner.
            if event.event_kind() == Some(EventKind::BookAdd) {
                live.push((account_id, event.order_id.get()));
            }
        }
        stream.push((sequence, record, start..events.len()));
    }
    // The baseline, same run: the matcher itself applying the same commands (what the feed must
    // keep up with), into a reused event buffer.
    let mut baseline = Matcher::new(config).expect("config");
    let mut scratch: Vec<Event> = Vec::with_capacity(4096);
    let started = Instant::now();
    for (sequence, record, _) in &stream {
        scratch.clear();
        baseline.apply(*sequence, *sequence * 1_000, record, &mut scratch);
        black_box(scratch.len());
    }
    let matcher_elapsed = started.elapsed();
    // Encode: events → messages → frames (frames counted, not sent).
    let mut encoder = FeedEncoder::new(FeedConfig::from(&config));
    let mut packer = FramePacker::new(*b"BENCH     ", 1_400).expect("frame length");
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut frame_bytes = 0usize;
    let started = Instant::now();
    {
        let mut sink = PackingSink::new(&mut packer, |frame: &[u8]| {
            frame_bytes += frame.len();
        });
        for (sequence, record, range) in &stream {
            encoder
                .encode_command(
                    *sequence,
                    sequence * 1_000,
                    record,
                    &events[range.clone()],
                    &mut sink,
                )
                .expect("encodes");
            if sequence % 8 == 0 {
                sink.flush();
            }
        }
        sink.flush();
    }
    let encode_elapsed = started.elapsed();
    let messages = encoder.counters().messages;
    black_box(frame_bytes);

    // The frames again, kept this time, for the subscriber (not timed).
    let mut encoder = FeedEncoder::new(FeedConfig::from(&config));
    {
        let mut sink = PackingSink::new(&mut packer, |frame: &[u8]| frames.push(frame.to_vec()));
        for (sequence, record, range) in &stream {
            encoder
                .encode_command(
                    *sequence,
                    sequence * 1_000,
                    record,
                    &events[range.clone()],
                    &mut sink,
                )
                .expect("encodes");
            if sequence % 8 == 0 {
                sink.flush();
            }
        }
        sink.flush();
    }

    let mut subscriber = Subscriber::new(BookConfig {
        instrument_capacity: 4,
        order_capacity: 1 << 20,
        levels_per_side_max: 20_000,
    });
    let started = Instant::now();
    for frame in &frames {
        black_box(subscriber.on_frame(frame).expect("applies"));
    }
    let apply_elapsed = started.elapsed();
    assert_eq!(subscriber.counters().messages, messages);

    // Integer arithmetic: thousands per second.
    let rate = |count: u64, elapsed: std::time::Duration| {
        u128::from(count) * 1_000_000 / elapsed.as_nanos().max(1)
    };
    println!(
        "{commands} commands, {} events, {messages} messages in {} frames",
        events.len(),
        frames.len(),
    );
    println!(
        "encode (events -> framed messages): {} k messages/s, {} k commands/s ({} ms)",
        rate(messages, encode_elapsed),
        rate(commands, encode_elapsed),
        encode_elapsed.as_millis()
    );
    println!(
        "subscriber (frames -> decoded -> books): {} k messages/s, {} k commands/s ({} ms), {} orders resting",
        rate(messages, apply_elapsed),
        rate(commands, apply_elapsed),
        apply_elapsed.as_millis(),
        subscriber.book().order_count()
    );
    println!(
        "baseline, same run: the matcher applying the same commands: {} k commands/s ({} ms); encode / matcher {:.2}x, subscriber / matcher {:.2}x (commands per second)",
        rate(commands, matcher_elapsed),
        matcher_elapsed.as_millis(),
        matcher_elapsed.as_secs_f64() / encode_elapsed.as_secs_f64(),
        matcher_elapsed.as_secs_f64() / apply_elapsed.as_secs_f64()
    );
}
