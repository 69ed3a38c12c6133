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

mod common;

use common::{
    assert_same_books, book_config, instruments, matcher_config, Generator, Rng, TIMESTAMP_BASE_NS,
};
use marketdata::itch::Message;
use marketdata::{
    Book, FeedConfig, FeedEncoder, FileRecords, FileSink, FrameOutcome, FramePacker, FrameView,
    MessageSink, RetransmitRing, Subscriber,
};
use matcher::{Command, Event, Matcher, NewOrder, OrderType, Side, StpMode, TimeInForce};

const SESSION: [u8; 10] = *b"TESTFEED01";
const FRAME_LEN: usize = 512;
const BATCH_COMMANDS: u64 = 8;
const CHECKSUM_INTERVAL: u64 = 250;
const CHECKPOINT_INTERVAL: u64 = 2_000;
const RING_MESSAGES: usize = 1 << 16;

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
