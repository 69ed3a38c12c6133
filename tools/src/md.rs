//! `exchange md`: the market-data feed's command line. `md subscribe` rebuilds every book from
//! the feed over Aeron, shows the top levels live and verifies the engine's book checksums;
//! `md record` writes what it receives in the standard ITCH binary file layout.
//!
//! `md publish` (in `tools::md_publish`) publishes a cluster's feed from its committed log,
//! following it as a learner.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use marketdata::aeron::{
    connect, FeedSubscriber, IdleBackoff, RuntimeError, SubscriberChannels, SubscriberConfig,
    DEFAULT_CONTROL, DEFAULT_REQUEST, DEFAULT_SESSION,
};
use marketdata::itch::BuySell;
use marketdata::{BookConfig, FileSink, LevelView, MessageSink, SubscriberError};
use sequencer::driver::{unique_dir, EmbeddedDriver};

use tools::cluster::{install_signal_handlers, STOP};

/// Most levels `--top` shows per side.
const TOP_LEVELS_MAX: usize = 50;
/// Bytes of recorded messages buffered before they are written out.
const RECORD_BUFFER_BYTES: usize = 1 << 20;

#[derive(clap::Subcommand)]
pub enum MdCommand {
    /// Publishes the ITCH feed of a cluster: follows its committed log as a learner (moving to
    /// another member when the one it follows falls silent, so a failover leaves no gap and no
    /// duplicate), applies it to its own matcher replica, and publishes over Aeron with
    /// retransmission and snapshots served from its feed journal. Runs until SIGINT/SIGTERM.
    Publish(tools::md_publish::PublishOptions),
    /// Rebuilds every book from the feed, shows the top N levels of each instrument every
    /// second and verifies the book checksums the feed carries. Exit status 1 on a checksum
    /// mismatch (or a message the books refuse).
    Subscribe {
        #[command(flatten)]
        feed: FeedOptions,
        /// Levels shown per side (0: none, only the summary).
        #[arg(long, default_value_t = 5)]
        top: usize,
    },
    /// Writes every ITCH message received, in feed order, to FILE in the standard ITCH binary
    /// file layout (each message preceded by its 2-byte big-endian length). The file starts at
    /// the feed's first message (fetched from the journal if need be); with --late-join, at the
    /// first message after the snapshot (whose orders are not in the file).
    Record {
        #[command(flatten)]
        feed: FeedOptions,
        /// The output file.
        #[arg(long)]
        out: PathBuf,
        /// Also write this feed's extension messages (book checksum Z, snapshot end G).
        #[arg(long)]
        extensions: bool,
    },
}

/// Where the feed is and how to follow it.
#[derive(clap::Args)]
pub struct FeedOptions {
    /// Aeron subscription channel of the feed (default: multi-destination cast from the
    /// publisher's control endpoint `--control`, received at `--endpoint`). For multicast:
    /// `aeron:udp?endpoint=GROUP:PORT|interface=IP`.
    #[arg(long)]
    channel: Option<String>,
    /// The publisher's control endpoint (with the default channel).
    #[arg(long, default_value = DEFAULT_CONTROL)]
    control: String,
    /// This subscriber's own UDP endpoint (with the default channel).
    #[arg(long, default_value = "127.0.0.1:20310")]
    endpoint: String,
    /// The retransmission service's request endpoint.
    #[arg(long, default_value = DEFAULT_REQUEST)]
    request: String,
    /// The MoldUDP64 session (10 characters, space padded).
    #[arg(long, default_value = "EXCHANGE")]
    session: String,
    /// Start from a snapshot instead of from the first message.
    #[arg(long)]
    late_join: bool,
    /// Stop after this many seconds (0: until interrupted).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Stop once this many incremental messages have been applied (whatever the duration).
    #[arg(long)]
    messages: Option<u64>,
    /// Aeron directory of a running media driver (default: an embedded driver).
    #[arg(long)]
    aeron_dir: Option<PathBuf>,
    /// Instrument capacity of the books (stock locates 1..=N).
    #[arg(long, default_value_t = 1024)]
    instruments: u16,
    /// Resting order capacity of the books.
    #[arg(long, default_value_t = 1 << 20)]
    orders: u32,
    /// Price levels per side of one instrument.
    #[arg(long, default_value_t = 1 << 17)]
    levels: u32,
}

impl FeedOptions {
    fn session(&self) -> Result<[u8; 10]> {
        let bytes = self.session.as_bytes();
        anyhow::ensure!(
            (1..=10).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic),
            "--session must be 1 to 10 printable ASCII characters"
        );
        let mut session = DEFAULT_SESSION;
        session.fill(b' ');
        session[..bytes.len()].copy_from_slice(bytes);
        Ok(session)
    }

    fn config(&self) -> Result<SubscriberConfig> {
        let mut channels = SubscriberChannels::mdc(&self.endpoint, &self.control, &self.request);
        if let Some(channel) = &self.channel {
            channels.subscription = channel.clone();
        }
        let book = BookConfig {
            instrument_capacity: self.instruments,
            order_capacity: self.orders,
            levels_per_side_max: self.levels,
        };
        let mut config = SubscriberConfig::new(book, self.session()?, channels);
        config.late_join = self.late_join;
        Ok(config)
    }
}

/// Runs `exchange md ...`.
pub fn run(command: MdCommand) -> Result<ExitCode> {
    match command {
        MdCommand::Publish(options) => tools::md_publish::publish(options),
        MdCommand::Subscribe { feed, top } => follow(&feed, top.min(TOP_LEVELS_MAX), None),
        MdCommand::Record {
            feed,
            out,
            extensions,
        } => {
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let code = follow(&feed, 0, Some((file, !extensions)))?;
            eprintln!("recorded to {}", out.display());
            Ok(code)
        }
    }
}

/// Follows the feed until the duration ends or SIGINT/SIGTERM; prints the top levels every
/// second when `top > 0`; records to the file when given (with `standard_only`).
fn follow(
    feed: &FeedOptions,
    top: usize,
    mut record: Option<(std::fs::File, bool)>,
) -> Result<ExitCode> {
    install_signal_handlers();
    let driver = match &feed.aeron_dir {
        Some(_) => None,
        None => Some(EmbeddedDriver::launch(&unique_dir("md"))?),
    };
    let dir = match (&driver, &feed.aeron_dir) {
        (Some(driver), _) => driver.dir().to_path_buf(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => unreachable!("a driver is embedded when no directory is given"),
    };
    let aeron = connect(&dir)?;
    let mut subscriber = FeedSubscriber::new(&aeron, feed.config()?)?;
    let started = Instant::now();
    let deadline = (feed.duration > 0).then(|| started + Duration::from_secs(feed.duration));
    let mut next_report = started + Duration::from_secs(1);
    let mut idle = IdleBackoff::default();
    let mut buffer: Vec<u8> = Vec::with_capacity(RECORD_BUFFER_BYTES + 64 * 1024);
    let mut recorded_messages = 0u64;
    let mut code = ExitCode::SUCCESS;
    while !STOP.load(Ordering::Acquire) && deadline.is_none_or(|at| Instant::now() < at) {
        let now = Instant::now();
        let standard_only = record.as_ref().is_some_and(|(_, standard)| *standard);
        let recording = record.is_some();
        let polled = subscriber.poll(now, &mut |sequence, message| {
            if recording {
                recorded_messages += 1;
                FileSink {
                    out: &mut buffer,
                    standard_only,
                }
                .message(sequence, message);
            }
        });
        let work = match polled {
            Ok(work) => work,
            Err(RuntimeError::Subscriber(error)) => {
                eprintln!("error: the rebuilt books do not follow the feed: {error}");
                if matches!(error, SubscriberError::Checksum { .. }) {
                    eprintln!("book checksum mismatch: the rebuilt books differ from the engine's");
                }
                code = ExitCode::FAILURE;
                break;
            }
            Err(error) => return Err(error.into()),
        };
        if feed
            .messages
            .is_some_and(|messages| subscriber.core().counters().messages >= messages)
        {
            break;
        }
        if let Some((file, _)) = record.as_mut() {
            if buffer.len() >= RECORD_BUFFER_BYTES {
                file.write_all(&buffer).context("writing the recording")?;
                buffer.clear();
            }
        }
        if now >= next_report {
            next_report = now + Duration::from_secs(1);
            report(&subscriber, top, started);
        }
        idle.idle(work);
    }
    if let Some((file, _)) = record.as_mut() {
        file.write_all(&buffer).context("writing the recording")?;
        file.flush().context("writing the recording")?;
    }
    report(&subscriber, top, started);
    let counters = subscriber.core().counters();
    eprintln!(
        "{} messages applied, {} book checksums verified, {} gaps, {} snapshots, {} recorded; {:?}",
        counters.messages,
        counters.checksums_verified,
        counters.gaps,
        counters.snapshots,
        recorded_messages,
        subscriber.stats()
    );
    drop(subscriber);
    drop(aeron);
    drop(driver);
    Ok(code)
}

/// Prints the feed position and, with `top > 0`, the top levels of every instrument.
fn report(subscriber: &FeedSubscriber, top: usize, started: Instant) {
    let counters = subscriber.core().counters();
    println!(
        "[{:>6.1} s] next sequence {:?}, {} messages, {} checksums verified, {} resting orders",
        started.elapsed().as_secs_f64(),
        subscriber.sequence_next(),
        counters.messages,
        counters.checksums_verified,
        subscriber.book().order_count()
    );
    if top == 0 {
        return;
    }
    let book = subscriber.book();
    let empty = LevelView {
        price: 0,
        shares: 0,
        order_count: 0,
    };
    let mut bids = [empty; TOP_LEVELS_MAX];
    let mut asks = [empty; TOP_LEVELS_MAX];
    for locate in book.stock_locates() {
        let Some(instrument) = book.instrument(locate) else {
            continue;
        };
        let bid_count = book.top_levels(locate, BuySell::Buy, &mut bids[..top]);
        let ask_count = book.top_levels(locate, BuySell::Sell, &mut asks[..top]);
        println!(
            "  {} (locate {locate}, {})",
            String::from_utf8_lossy(&instrument.stock).trim_end(),
            if instrument.trading_state == b'H' {
                "halted"
            } else {
                "trading"
            }
        );
        println!(
            "    {:>8} {:>12} {:>12} | {:<12} {:<12} {:<8}",
            "orders", "bid shares", "bid", "ask", "ask shares", "orders"
        );
        for row in 0..bid_count.max(ask_count) {
            let side = |levels: &[LevelView], count: usize| {
                (row < count).then(|| levels[row]).map_or(
                    (String::new(), String::new(), String::new()),
                    |level| {
                        (
                            level.order_count.to_string(),
                            level.shares.to_string(),
                            price(level.price),
                        )
                    },
                )
            };
            let (bid_orders, bid_shares, bid_price) = side(&bids, bid_count);
            let (ask_orders, ask_shares, ask_price) = side(&asks, ask_count);
            println!(
                "    {bid_orders:>8} {bid_shares:>12} {bid_price:>12} | {ask_price:<12} {ask_shares:<12} {ask_orders:<8}"
            );
        }
    }
}

/// An ITCH Price(4) as a decimal.
fn price(price: u32) -> String {
    format!("{}.{:04}", price / 10_000, price % 10_000)
}
