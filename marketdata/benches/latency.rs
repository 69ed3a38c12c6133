//! End-to-end latency of the feed over Aeron, against raw Aeron in the same run.
//!
//! Two threads, each running its own embedded media driver in its duty cycle (Aeron's invoked
//! mode: no driver threads, so two busy threads on a two-core machine, never more), UDP over
//! 127.0.0.1 between them, on the feed's multi-destination channel:
//!
//! - the publisher thread hands one command every `1 / rate` seconds (open loop, on a fixed
//!   schedule) to a [`FeedPublisher`] (matcher replica, encoder, packer, feed journal, Aeron
//!   offer) and flushes; right before or after it (alternating), it offers a raw Aeron message
//!   of the same size as the frames that command produced, on another stream of the same
//!   channel;
//! - the subscriber thread polls a [`FeedSubscriber`] (decode, book update) and the raw stream.
//!
//! Feed latency: from the command's scheduled hand-off to the publisher to the moment its
//! first ITCH message has been applied to the subscriber's books. Raw latency: from the same
//! scheduled time to the raw message's arrival. Both idle with [`IdleBackoff`] (spin, yield,
//! then park at most 20 µs; or spin and yield only, see [`idle`]). A warm-up is excluded.
//! Prints a Markdown table with the ratio.
//!
//! `cargo bench -p marketdata --bench latency` runs 10 s at 20,000 commands/s;
//! `MARKETDATA_LATENCY_RATE` and `MARKETDATA_LATENCY_SECONDS` change it. Without `--bench`
//! (as `cargo test --all-targets` runs it) a 1-second smoke run whose figures mean nothing.
//! Ports 46200..46209.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use marketdata::aeron::{
    add_publication, add_subscription, connect, FeedPublisher, FeedSubscriber, IdleBackoff,
    PublisherChannels, PublisherConfig, SubscriberChannels, SubscriberConfig,
};
use marketdata::BookConfig;
use matcher::{
    Cancel, Command, CommandRecord, Event, EventKind, InstrumentConfig, Matcher, NewOrder,
    OrderType, Side, StpMode, TimeInForce,
};
use sequencer::driver::{unique_dir, EmbeddedDriver};

const SESSION: [u8; 10] = *b"LATENCY001";
const CONTROL: &str = "127.0.0.1:46200";
const REQUEST: &str = "127.0.0.1:46201";
const ENDPOINT: &str = "127.0.0.1:46202";
/// Stream of the raw baseline, on the feed's channel.
const STREAM_ID_RAW: i32 = 2100;
const RAW_HEADER_LEN: usize = 16;
const WARM_UP: Duration = Duration::from_secs(1);

struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}

fn matcher_config() -> matcher::Config {
    matcher::Config {
        order_capacity: 1 << 20,
        level_capacity: 1 << 16,
        instrument_capacity: 4,
        account_capacity: 1 << 10,
    }
}

/// 70% limits around a drifting mid (some cross), 25% cancels of live orders, 5% market
/// orders, one instrument (the feed benchmark's stream).
fn commands(count: u64) -> Vec<CommandRecord> {
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
    let mut matcher = Matcher::new(matcher_config()).expect("config");
    let mut rng = Rng(0x5EED);
    let mut live: Vec<(u32, u64)> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut records = Vec::with_capacity(count as usize);
    let mut mid = 10_000i64;
    for index in 0..count {
        let sequence = index + 1;
        let account_id = 1 + rng.below(100) as u32;
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let command = if index == 0 {
            Command::AddInstrument(instrument)
        } else {
            match rng.below(100) {
                0..=69 => {
                    mid = (mid + rng.below(3) as i64 - 1).clamp(1_000, 19_000);
                    let offset = rng.below(30) as i64 - 2;
                    Command::NewOrder(NewOrder {
                        instrument_id: 1,
                        account_id,
                        client_order_id: sequence,
                        side,
                        order_type: OrderType::Limit,
                        time_in_force: TimeInForce::Gtc,
                        stp_mode: StpMode::None,
                        post_only: false,
                        price: match side {
                            Side::Buy => mid - offset,
                            Side::Sell => mid + offset,
                        },
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
                    side,
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
        events.clear();
        matcher.apply(sequence, sequence * 1_000, &record, &mut events);
        for event in &events {
            if event.event_kind() == Some(EventKind::BookAdd) {
                live.push((account_id, event.order_id.get()));
            }
        }
        records.push(record);
    }
    records
}

/// The idle strategy of both threads: `MARKETDATA_LATENCY_IDLE=yield` spins then yields, never
/// parks (two threads for two cores); the default, `backoff`, parks 1 µs to 20 µs after 20 spins
/// and 50 yields (a park of a few µs takes tens of µs on Linux: timer slack).
fn idle() -> IdleBackoff {
    match std::env::var("MARKETDATA_LATENCY_IDLE").as_deref() {
        Ok("yield") => IdleBackoff::new(20, u32::MAX - 20, 1_000, 1_000),
        _ => IdleBackoff::new(20, 50, 1_000, 20_000),
    }
}

fn nanos_since(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_nanos() as u64
}

struct Shared {
    epoch: Instant,
    /// Per feed sequence: the scheduled hand-off time (ns since `epoch`) of the command whose
    /// first message it is; 0 for the others.
    commit_ns: Vec<AtomicU64>,
    /// Commands scheduled before this (ns since `epoch`) are warm-up.
    measure_from_ns: AtomicU64,
    stop: AtomicBool,
}

fn main() {
    let bench = std::env::args().any(|arg| arg == "--bench");
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    };
    let rate = env(
        "MARKETDATA_LATENCY_RATE",
        if bench { 20_000 } else { 5_000 },
    )
    .max(1);
    let seconds = env("MARKETDATA_LATENCY_SECONDS", if bench { 10 } else { 1 }).max(1);
    let total = rate * seconds + rate * WARM_UP.as_secs();
    let records = Arc::new(commands(total));
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        // A command yields a handful of messages; checksums add one per interval.
        commit_ns: (0..total * 4 + 1024).map(|_| AtomicU64::new(0)).collect(),
        measure_from_ns: AtomicU64::new(u64::MAX),
        stop: AtomicBool::new(false),
    });
    let journal_dir = tempfile::tempdir().expect("temporary directory");
    let ready = Arc::new(Barrier::new(2));

    let subscriber = {
        let shared = Arc::clone(&shared);
        let ready = Arc::clone(&ready);
        std::thread::Builder::new()
            .name("md-subscriber".into())
            .spawn(move || subscriber_thread(&shared, &ready))
            .expect("thread")
    };
    let publisher_stats = publisher_thread(&shared, &ready, &records, rate, journal_dir.path());
    std::thread::sleep(Duration::from_millis(500));
    shared.stop.store(true, Ordering::Release);
    let (feed, raw) = subscriber.join().expect("subscriber thread");

    let row = |name: &str, histogram: &Histogram<u64>| {
        let us = |value: u64| value as f64 / 1_000.0;
        format!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            histogram.len(),
            us(histogram.value_at_quantile(0.5)),
            us(histogram.value_at_quantile(0.99)),
            us(histogram.value_at_quantile(0.999)),
            us(histogram.value_at_quantile(0.9999)),
            us(histogram.max()),
        )
    };
    let ratio = |quantile: f64| {
        let raw = raw.value_at_quantile(quantile).max(1) as f64;
        feed.value_at_quantile(quantile) as f64 / raw
    };
    println!(
        "\nfeed latency over Aeron UDP loopback, {rate} commands/s for {seconds} s (after {} s warm-up), {} feed messages in {} frames of {:.0} bytes on average\n",
        WARM_UP.as_secs(),
        publisher_stats.messages,
        publisher_stats.frames,
        publisher_stats.frame_bytes as f64 / publisher_stats.frames.max(1) as f64
    );
    println!("| path | samples | p50 µs | p99 µs | p99.9 µs | p99.99 µs | max µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "{}",
        row("commit → ITCH message applied at the subscriber", &feed)
    );
    println!("{}", row("raw Aeron one-way, same size and rate", &raw));
    println!(
        "| ratio feed / raw | | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        ratio(0.5),
        ratio(0.99),
        ratio(0.999),
        ratio(0.9999),
        feed.max() as f64 / raw.max().max(1) as f64
    );
    println!(
        "\npublisher: {} frames back-pressured and dropped, {} retransmitted",
        publisher_stats.frames_back_pressured, publisher_stats.retransmit_frames
    );
    assert!(!feed.is_empty() && !raw.is_empty(), "nothing measured");
}

fn publisher_thread(
    shared: &Shared,
    ready: &Barrier,
    records: &[CommandRecord],
    rate: u64,
    journal_dir: &std::path::Path,
) -> marketdata::aeron::PublisherStats {
    let driver = EmbeddedDriver::launch_invoked(&unique_dir("md-latency-pub")).expect("driver");
    let invoke = || {
        driver.do_work();
    };
    let aeron = connect(driver.dir()).expect("client");
    let channels = PublisherChannels::mdc(CONTROL, REQUEST);
    let mut config = PublisherConfig::new(matcher_config(), SESSION, journal_dir, channels);
    config.journal.pretouch = false;
    let mut publisher = FeedPublisher::new_invoking(&aeron, config, &invoke).expect("publisher");
    let raw = add_publication(
        &aeron,
        &PublisherChannels::mdc(CONTROL, REQUEST).publication,
        STREAM_ID_RAW,
        &invoke,
    )
    .expect("raw publication");
    ready.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(publisher.is_connected() && raw.is_connected()) {
        assert!(Instant::now() < deadline, "subscriber never connected");
        invoke();
        publisher.do_work(Instant::now()).expect("publisher");
        std::thread::yield_now();
    }

    let interval_ns = 1_000_000_000 / rate;
    let start = Instant::now() + Duration::from_millis(200);
    shared.measure_from_ns.store(
        nanos_since(shared.epoch, start + WARM_UP),
        Ordering::Release,
    );
    let mut raw_message = vec![0u8; marketdata::frame::FRAME_LEN_MAX];
    let mut idle = idle();
    let mut raw_len = 64;
    for (index, record) in records.iter().enumerate() {
        let scheduled = start + Duration::from_nanos(index as u64 * interval_ns);
        loop {
            let now = Instant::now();
            if now >= scheduled {
                break;
            }
            let work = driver.do_work() + publisher.do_work(now).expect("publisher");
            idle.idle(work);
        }
        let commit_ns = nanos_since(shared.epoch, scheduled);
        let first = publisher.sequence_next() as usize;
        if let Some(slot) = shared.commit_ns.get(first) {
            slot.store(commit_ns, Ordering::Release);
        }
        let bytes_before = publisher.stats().frame_bytes;
        let raw_first = index % 2 == 0;
        let mut send_raw = |len: usize| {
            let len = len.clamp(RAW_HEADER_LEN, raw_message.len());
            raw_message[..8].copy_from_slice(&commit_ns.to_le_bytes());
            raw_message[8..16].copy_from_slice(&(index as u64).to_le_bytes());
            let mut tries = 0;
            while raw.offer(&raw_message[..len]).is_err() && tries < 64 {
                tries += 1;
                driver.do_work();
            }
        };
        if raw_first {
            // The size of the previous command's frames: sizes vary little between
            // neighbours, and this keeps the raw message ahead of the feed's in the driver.
            send_raw(raw_len);
        }
        publisher
            .on_record(index as u64 + 1, commit_ns, record)
            .expect("publishes");
        publisher.flush().expect("flush");
        raw_len = (publisher.stats().frame_bytes - bytes_before) as usize;
        if !raw_first {
            send_raw(raw_len);
        }
        driver.do_work();
    }
    // Drain: keep serving a little while the subscriber catches up.
    let drain_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < drain_until {
        let work = driver.do_work() + publisher.do_work(Instant::now()).expect("publisher");
        idle.idle(work);
    }
    let stats = publisher.stats();
    drop(publisher);
    drop(raw);
    drop(aeron);
    stats
}

fn subscriber_thread(shared: &Shared, ready: &Barrier) -> (Histogram<u64>, Histogram<u64>) {
    let driver = EmbeddedDriver::launch_invoked(&unique_dir("md-latency-sub")).expect("driver");
    let invoke = || {
        driver.do_work();
    };
    let aeron = connect(driver.dir()).expect("client");
    let book = BookConfig {
        instrument_capacity: 4,
        order_capacity: 1 << 20,
        levels_per_side_max: 1 << 15,
    };
    let channels = SubscriberChannels::mdc(ENDPOINT, CONTROL, REQUEST);
    let raw_channel = channels.subscription.clone();
    let mut subscriber = FeedSubscriber::new_invoking(
        &aeron,
        SubscriberConfig::new(book, SESSION, channels),
        &invoke,
    )
    .expect("subscriber");
    let raw = add_subscription(&aeron, &raw_channel, STREAM_ID_RAW, &invoke).expect("raw");
    ready.wait();
    let mut feed = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut baseline = feed.clone();
    let mut idle = idle();
    while !shared.stop.load(Ordering::Acquire) {
        let mut work = driver.do_work();
        let measure_from_ns = shared.measure_from_ns.load(Ordering::Acquire);
        work += subscriber
            .poll(Instant::now(), &mut |sequence, _message| {
                let Some(slot) = shared.commit_ns.get(sequence as usize) else {
                    return;
                };
                let commit_ns = slot.load(Ordering::Acquire);
                if commit_ns != 0 && commit_ns >= measure_from_ns {
                    let now_ns = nanos_since(shared.epoch, Instant::now());
                    let _ = feed.record(now_ns.saturating_sub(commit_ns).max(1));
                }
            })
            .expect("subscriber follows");
        work += raw
            .poll_fn(
                |buffer: &[u8], _header| {
                    if buffer.len() < RAW_HEADER_LEN {
                        return;
                    }
                    let mut commit = [0u8; 8];
                    commit.copy_from_slice(&buffer[..8]);
                    let commit_ns = u64::from_le_bytes(commit);
                    if commit_ns >= measure_from_ns {
                        let now_ns = nanos_since(shared.epoch, Instant::now());
                        let _ = baseline.record(now_ns.saturating_sub(commit_ns).max(1));
                    }
                },
                256,
            )
            .map_or(0, |fragments| fragments.max(0) as usize);
        idle.idle(work);
    }
    drop(subscriber);
    drop(raw);
    drop(aeron);
    (feed, baseline)
}
