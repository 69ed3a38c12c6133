//! `exchange md subscribe` and `exchange md record` as processes, against a [`FeedPublisher`]
//! in this process (its own embedded media driver; UDP on 127.0.0.1, ports 46100..46119).
//!
//! - Both join after the feed has started, so they fetch its beginning from the journal by
//!   retransmission; `md record` writes the ITCH file layout, and a book rebuilt from the file
//!   equals the publisher's matcher; `md subscribe` verifies the feed's book checksums.
//! - `md subscribe` exits with status 1 when a book checksum differs from its books.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use marketdata::aeron::{connect, FeedPublisher, PublisherChannels, PublisherConfig};
use marketdata::frame::FramePacker;
use marketdata::itch::{self, Header, Message};
use marketdata::{Book, BookConfig, FileRecords};
use matcher::{Cancel, Command as MatcherCommand, InstrumentConfig, NewOrder, OrderType, Side};
use sequencer::driver::{unique_dir, EmbeddedDriver};

const SESSION: &str = "MDTOOLTEST";
const WAIT_MAX: Duration = Duration::from_secs(120);

fn exchange(arguments: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(arguments)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exchange starts")
}

fn matcher_config() -> matcher::Config {
    matcher::Config {
        order_capacity: 1 << 14,
        level_capacity: 1 << 12,
        instrument_capacity: 4,
        account_capacity: 16,
    }
}

/// Limit orders around a mid (some cross) and cancels of recent orders, one instrument.
fn commands(count: u64) -> Vec<MatcherCommand> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move |bound: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    };
    let mut commands = vec![MatcherCommand::AddInstrument(InstrumentConfig {
        instrument_id: 1,
        symbol: *b"TOOL\0\0\0\0",
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
    })];
    for index in 1..count {
        let sequence = index + 1;
        if random(4) == 0 && sequence > 10 {
            commands.push(MatcherCommand::Cancel(Cancel {
                account_id: 1,
                order_id: sequence - 1 - random(8),
            }));
            continue;
        }
        let buy = random(2) == 0;
        let offset = random(20) as i64 - 2;
        commands.push(MatcherCommand::NewOrder(NewOrder {
            instrument_id: 1,
            account_id: 1 + random(2) as u32,
            client_order_id: sequence,
            side: if buy { Side::Buy } else { Side::Sell },
            order_type: OrderType::Limit,
            time_in_force: matcher::TimeInForce::Gtc,
            stp_mode: matcher::StpMode::None,
            post_only: false,
            price: if buy { 1_000 - offset } else { 1_000 + offset },
            quantity: 1 + random(50),
        }));
    }
    commands
}

/// Waits for a child while keeping `work` (the publisher's duty cycle) going.
fn wait_working(child: &mut Child, work: &mut dyn FnMut()) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Some(status) = child.try_wait().expect("child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("exchange md did not finish within {WAIT_MAX:?}");
        }
        work();
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn md_record_and_subscribe_follow_a_publisher() {
    let driver = EmbeddedDriver::launch(&unique_dir("md-tools-test")).expect("driver");
    let aeron = connect(driver.dir()).expect("client");
    let journal_dir = tempfile::tempdir().expect("temporary directory");
    let mut session = *b"          ";
    session.copy_from_slice(SESSION.as_bytes());
    let mut config = PublisherConfig::new(
        matcher_config(),
        session,
        journal_dir.path(),
        PublisherChannels::mdc("127.0.0.1:46100", "127.0.0.1:46101"),
    );
    config.checksum_interval = 100;
    config.heartbeat_interval = Duration::from_millis(20);
    config.journal.segment_size = 1 << 20;
    config.journal.pretouch = false;
    let mut publisher = FeedPublisher::new(&aeron, config).expect("publisher");

    let commands = commands(20_000);
    let (before, after) = commands.split_at(5_000);
    let mut sequence = 0u64;
    let mut publish = |publisher: &mut FeedPublisher, batch: &[MatcherCommand]| {
        for command in batch {
            sequence += 1;
            publisher
                .on_record(sequence, 1_000 * sequence, &command.encode())
                .expect("publishes");
        }
        publisher.flush().expect("flush");
        publisher.do_work(Instant::now()).expect("publisher");
    };
    // The feed starts before anyone listens: its beginning must come from the journal.
    for batch in before.chunks(50) {
        publish(&mut publisher, batch);
    }
    let out = journal_dir.path().join("feed.itch");
    let out_text = out.to_string_lossy().to_string();
    let common = |endpoint: &'static str| {
        vec![
            "--control",
            "127.0.0.1:46100",
            "--request",
            "127.0.0.1:46101",
            "--endpoint",
            endpoint,
            "--session",
            SESSION,
            "--duration",
            "100",
        ]
    };
    let mut record_arguments = vec!["md", "record", "--out", &out_text];
    record_arguments.extend(common("127.0.0.1:46110"));
    let mut subscribe_arguments = vec!["md", "subscribe", "--top", "3"];
    subscribe_arguments.extend(common("127.0.0.1:46111"));
    // Stop once everything is applied: the messages count is known once all is published.
    for batch in after.chunks(50) {
        publish(&mut publisher, batch);
    }
    let total = (publisher.sequence_next() - 1).to_string();
    record_arguments.extend(["--messages", &total]);
    subscribe_arguments.extend(["--messages", &total]);
    let mut recorder = exchange(&record_arguments);
    let mut subscriber = exchange(&subscribe_arguments);

    let mut work = || {
        publisher.do_work(Instant::now()).expect("publisher");
    };
    let recorded = wait_working(&mut recorder, &mut work);
    let subscribed = wait_working(&mut subscriber, &mut work);
    let recorder_output = recorder.wait_with_output().expect("output");
    let subscriber_output = subscriber.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&subscriber_output.stdout);
    let stderr = String::from_utf8_lossy(&subscriber_output.stderr);
    assert!(
        recorded.success(),
        "md record: {}",
        String::from_utf8_lossy(&recorder_output.stderr)
    );
    eprintln!("md subscribe:\n{stdout}{stderr}");
    assert!(subscribed.success(), "md subscribe: {stdout}\n{stderr}");
    assert!(stdout.contains("TOOL (locate 1, trading)"), "{stdout}");
    assert!(
        !stderr.contains(" 0 book checksums verified"),
        "checksums verified: {stderr}"
    );

    // The file is the ITCH layout; its book equals the publisher's matcher.
    let bytes = std::fs::read(&out).expect("recording");
    let mut book = Book::new(BookConfig {
        instrument_capacity: 4,
        order_capacity: 1 << 14,
        levels_per_side_max: 4_096,
    });
    let mut messages = 0u64;
    for record in FileRecords::new(&bytes) {
        let message = record.expect("whole records");
        assert!(itch::is_itch_standard(message[0]));
        book.apply(&Message::decode(message).expect("decodes"))
            .expect("applies");
        messages += 1;
    }
    let checksums = publisher.stats().checksums;
    assert_eq!(messages + checksums, publisher.sequence_next() - 1);
    let engine = publisher
        .encoder()
        .book_checksum(publisher.matcher())
        .expect("checksum");
    assert_eq!(book.checksum(), engine);
    assert_eq!(
        book.order_count() as u64,
        u64::from(publisher.matcher().order_count())
    );
}

#[test]
fn md_subscribe_exits_non_zero_on_a_checksum_mismatch() {
    let driver = EmbeddedDriver::launch(&unique_dir("md-tools-test")).expect("driver");
    let aeron = connect(driver.dir()).expect("client");
    let channel = c"aeron:udp?control=127.0.0.1:46102|control-mode=dynamic";
    let adding = aeron
        .async_add_exclusive_publication(channel, marketdata::aeron::STREAM_ID_INCREMENTAL)
        .expect("adds");
    let deadline = Instant::now() + WAIT_MAX;
    let publication = loop {
        if let Some(publication) = adding.poll().expect("polls") {
            break publication;
        }
        assert!(Instant::now() < deadline, "publication not added");
        std::thread::sleep(Duration::from_millis(1));
    };
    // A feed whose first message claims a book the subscriber does not have.
    let mut session = *b"          ";
    session.copy_from_slice(SESSION.as_bytes());
    let mut message = [0u8; itch::MESSAGE_LEN_MAX];
    let len = Message::BookChecksum(itch::BookChecksum {
        header: Header {
            stock_locate: 0,
            tracking_number: 0,
            timestamp_ns: 1,
        },
        checksum: 0x1234_5678,
        level_count: 1,
        order_count: 1,
    })
    .encode(&mut message)
    .expect("encodes");
    let mut packer = FramePacker::new(session, 1_376).expect("packer");
    let mut frame = Vec::new();
    packer
        .push(1, &message[..len], &mut |bytes: &[u8]| {
            frame = bytes.to_vec()
        })
        .expect("fits");
    packer.flush(&mut |bytes: &[u8]| frame = bytes.to_vec());

    let mut child = exchange(&[
        "md",
        "subscribe",
        "--control",
        "127.0.0.1:46102",
        "--request",
        "127.0.0.1:46103",
        "--endpoint",
        "127.0.0.1:46112",
        "--session",
        SESSION,
        "--duration",
        "100",
    ]);
    let status = wait_working(&mut child, &mut || {
        let _ = publication.offer(&frame);
        std::thread::sleep(Duration::from_millis(20));
    });
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("book checksum mismatch"), "{stderr}");
}
