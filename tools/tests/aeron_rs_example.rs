//! The third-party example subscriber (`examples/aeron-rs-subscriber`, the pure-Rust `aeron-rs`
//! client, its own package outside the workspace) follows our feed through our embedded Aeron
//! 1.54 media driver: this test builds it, starts a [`FeedPublisher`] with an embedded driver,
//! runs the example against that driver's directory (UDP on 127.0.0.1, ports 46300..46319) and
//! publishes until the example has decoded 20,000 messages in sequence.
//!
//! Building the example (the aeron-rs crate and its dependencies) takes about a minute the
//! first time; the build is kept under the target directory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use marketdata::aeron::{connect, FeedPublisher, PublisherChannels, PublisherConfig};
use matcher::{Command as MatcherCommand, InstrumentConfig, NewOrder, OrderType, Side};
use sequencer::driver::{unique_dir, EmbeddedDriver};

const MESSAGES: u64 = 20_000;
const WAIT_MAX: Duration = Duration::from_secs(120);

#[test]
fn aeron_rs_example_follows_the_feed_through_our_driver() {
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/aeron-rs-subscriber/Cargo.toml");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("aeron-rs-subscriber");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(built.success(), "the aeron-rs example builds");
    let example = target.join("debug/aeron-rs-subscriber");

    let driver = EmbeddedDriver::launch(&unique_dir("md-aeron-rs")).expect("driver");
    let aeron = connect(driver.dir()).expect("client");
    let journal_dir = tempfile::tempdir().expect("temporary directory");
    let mut config = PublisherConfig::new(
        matcher::Config {
            order_capacity: 1 << 16,
            level_capacity: 1 << 12,
            instrument_capacity: 4,
            account_capacity: 16,
        },
        *b"AERONRS001",
        journal_dir.path(),
        PublisherChannels::mdc("127.0.0.1:46300", "127.0.0.1:46301"),
    );
    config.journal.segment_size = 1 << 20;
    config.journal.pretouch = false;
    config.heartbeat_interval = Duration::from_millis(20);
    let mut publisher = FeedPublisher::new(&aeron, config).expect("publisher");

    let mut child = Command::new(&example)
        .arg("--aeron-dir")
        .arg(driver.dir())
        .args([
            "--channel",
            "aeron:udp?endpoint=127.0.0.1:46310|control=127.0.0.1:46300",
            "--messages",
            &MESSAGES.to_string(),
            "--timeout",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");

    let deadline = Instant::now() + WAIT_MAX;
    let mut sequence = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().expect("child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the example did not finish within {WAIT_MAX:?}");
        }
        let now = Instant::now();
        if publisher.is_connected() {
            // Orders that rest (no crossing): one Add Order each.
            for _ in 0..100 {
                sequence += 1;
                let command = if sequence == 1 {
                    MatcherCommand::AddInstrument(InstrumentConfig {
                        instrument_id: 1,
                        symbol: *b"THIRD\0\0\0",
                        price_exponent: -2,
                        quantity_exponent: 0,
                        tick_size: 1,
                        lot_size: 1,
                        price_min: 1,
                        price_levels: 2_000,
                        band_width_ticks: 0,
                        reference_price: 1_000,
                        quantity_min_lots: 1,
                        quantity_max_lots: 1_000,
                        notional_max: 0,
                    })
                } else {
                    let buy = sequence.is_multiple_of(2);
                    MatcherCommand::NewOrder(NewOrder {
                        instrument_id: 1,
                        account_id: 1,
                        client_order_id: sequence,
                        side: if buy { Side::Buy } else { Side::Sell },
                        order_type: OrderType::Limit,
                        time_in_force: matcher::TimeInForce::Gtc,
                        stp_mode: matcher::StpMode::None,
                        post_only: false,
                        price: if buy { 900 } else { 1_100 } + (sequence % 50) as i64,
                        quantity: 1 + sequence % 7,
                    })
                };
                publisher
                    .on_record(sequence, 1_000 * sequence, &command.encode())
                    .expect("publishes");
            }
            publisher.flush().expect("flush");
        }
        publisher.do_work(now).expect("publisher");
        std::thread::sleep(Duration::from_millis(2));
    };
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(status.success(), "the example failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains(" 0 gaps, 0 duplicates, 0 malformed"),
        "{stdout}"
    );
}
