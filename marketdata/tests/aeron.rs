//! The feed over Aeron, end to end: seeded random commands into a [`FeedPublisher`] (its own
//! matcher replica, the feed journal, an embedded media driver) and out through UDP on
//! 127.0.0.1 (multi-destination cast) to [`FeedSubscriber`]s on a second embedded driver:
//!
//! - one that receives every frame, and records what it applies in the ITCH file layout;
//! - one that drops 5% of the incremental frames on receipt (seeded) and recovers them from the
//!   retransmission service, which serves them from the feed journal;
//! - one that joins a third of the way in, from a snapshot.
//!
//! At every checkpoint each rebuilt book equals the publisher's matcher (orders, levels,
//! checksum); at the end so does a book rebuilt from the recorded file.
//!
//! `MARKETDATA_AERON_COMMANDS` sets the number of commands (default 300,000),
//! `MARKETDATA_AERON_SEED` the seed. Ports 46000..46019.

mod common;

use std::time::{Duration, Instant};

use common::{assert_same_books, book_config, matcher_config, Generator, TIMESTAMP_BASE_NS};
use marketdata::aeron::{
    connect, FeedPublisher, FeedSubscriber, IdleBackoff, LossInjection, PublisherChannels,
    PublisherConfig, SubscriberChannels, SubscriberConfig,
};
use marketdata::itch::{self, Message};
use marketdata::{Book, FileRecords, FileSink, MessageSink};
use sequencer::driver::{unique_dir, EmbeddedDriver};

const SESSION: [u8; 10] = *b"AERONFEED1";
const CONTROL: &str = "127.0.0.1:46000";
const REQUEST: &str = "127.0.0.1:46001";
const BATCH_COMMANDS: u64 = 32;
const CHECKPOINT_INTERVAL: u64 = 25_000;
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn subscriber_config(port: u16, late_join: bool, loss: Option<LossInjection>) -> SubscriberConfig {
    let endpoint = format!("127.0.0.1:{port}");
    let mut config = SubscriberConfig::new(
        book_config(),
        SESSION,
        SubscriberChannels::mdc(&endpoint, CONTROL, REQUEST),
    );
    config.late_join = late_join;
    config.loss = loss;
    config.request_retry = Duration::from_millis(100);
    config
}

struct Subscribers {
    full: FeedSubscriber,
    lossy: FeedSubscriber,
    late: Option<FeedSubscriber>,
    recorded: Vec<u8>,
}

impl Subscribers {
    fn poll(&mut self, now: Instant) -> usize {
        let recorded = &mut self.recorded;
        let mut work = self
            .full
            .poll(now, &mut |sequence, message| {
                FileSink {
                    out: recorded,
                    standard_only: true,
                }
                .message(sequence, message)
            })
            .expect("full subscriber follows");
        work += self
            .lossy
            .poll(now, &mut |_, _| {})
            .expect("lossy subscriber follows");
        if let Some(late) = self.late.as_mut() {
            work += late.poll(now, &mut |_, _| {}).expect("late joiner follows");
        }
        work
    }

    fn all(&self) -> Vec<(&'static str, &FeedSubscriber)> {
        let mut all = vec![("full", &self.full), ("lossy", &self.lossy)];
        if let Some(late) = &self.late {
            all.push(("late joiner", late));
        }
        all
    }
}

/// Drives the publisher and the subscribers until every subscriber has applied everything
/// published (bounded by [`CATCH_UP_TIMEOUT`]).
fn catch_up(publisher: &mut FeedPublisher, subscribers: &mut Subscribers, label: &str) {
    publisher.flush().expect("flush");
    let target = publisher.sequence_next();
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let mut idle = IdleBackoff::default();
    loop {
        let now = Instant::now();
        let work = publisher.do_work(now).expect("publisher") + subscribers.poll(now);
        if subscribers
            .all()
            .iter()
            .all(|(_, subscriber)| subscriber.sequence_next() == Some(target))
        {
            return;
        }
        if now > deadline {
            let states: Vec<String> = subscribers
                .all()
                .iter()
                .map(|(name, s)| format!("{name}: {:?} {:?}", s.sequence_next(), s.stats()))
                .collect();
            panic!(
                "{label}: subscribers did not reach {target} within {CATCH_UP_TIMEOUT:?}: {states:?}; publisher {:?}",
                publisher.stats()
            );
        }
        idle.idle(work);
    }
}

#[test]
fn books_rebuilt_over_aeron_equal_the_publishers_matcher() {
    let commands = env_u64("MARKETDATA_AERON_COMMANDS", 300_000);
    let seed = env_u64("MARKETDATA_AERON_SEED", 0xAE50_1234);

    let publisher_driver = EmbeddedDriver::launch(&unique_dir("md-test-pub")).expect("driver");
    let subscriber_driver = EmbeddedDriver::launch(&unique_dir("md-test-sub")).expect("driver");
    let publisher_aeron = connect(publisher_driver.dir()).expect("client");
    let subscriber_aeron = connect(subscriber_driver.dir()).expect("client");
    let journal_dir = tempfile::tempdir().expect("temporary directory");

    let mut config = PublisherConfig::new(
        matcher_config(),
        SESSION,
        journal_dir.path(),
        PublisherChannels::mdc(CONTROL, REQUEST),
    );
    config.checksum_interval = 250;
    config.heartbeat_interval = Duration::from_millis(20);
    config.journal.segment_size = 4 << 20;
    config.journal.pretouch = false;
    let mut publisher = FeedPublisher::new(&publisher_aeron, config).expect("publisher");

    let mut subscribers = Subscribers {
        full: FeedSubscriber::new(&subscriber_aeron, subscriber_config(46010, false, None))
            .expect("subscriber"),
        lossy: FeedSubscriber::new(
            &subscriber_aeron,
            subscriber_config(
                46011,
                false,
                Some(LossInjection {
                    seed: seed ^ 0xD00D,
                    drop_per_million: 50_000,
                }),
            ),
        )
        .expect("subscriber"),
        late: None,
        recorded: Vec::new(),
    };
    // Wait until both subscribers have joined the publication (bounded).
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    while !(subscribers.full.is_connected() && subscribers.lossy.is_connected()) {
        assert!(Instant::now() < deadline, "subscribers never connected");
        let now = Instant::now();
        publisher.do_work(now).expect("publisher");
        subscribers.poll(now);
        std::thread::sleep(Duration::from_millis(1));
    }

    let mut generator = Generator::new(seed);
    let join_at = commands / 3;
    let mut checkpoints = 0;
    for index in 0..commands {
        let sequence = index + 1;
        let timestamp_ns = TIMESTAMP_BASE_NS + sequence * 1_000;
        let command = generator.next(index, commands, publisher.matcher());
        publisher
            .on_record(sequence, timestamp_ns, &command.encode())
            .expect("publishes");
        generator.observe(publisher.events());
        if sequence % BATCH_COMMANDS == 0 {
            publisher.flush().expect("flush");
            let now = Instant::now();
            publisher.do_work(now).expect("publisher");
            subscribers.poll(now);
        }
        if index == join_at {
            subscribers.late = Some(
                FeedSubscriber::new(&subscriber_aeron, subscriber_config(46012, true, None))
                    .expect("late joiner"),
            );
        }
        if sequence % CHECKPOINT_INTERVAL == 0 || sequence == commands {
            let label = format!("checkpoint at command {sequence}");
            catch_up(&mut publisher, &mut subscribers, &label);
            for (name, subscriber) in subscribers.all() {
                assert_same_books(
                    publisher.matcher(),
                    publisher.encoder(),
                    subscriber.book(),
                    &format!("{label}, {name}"),
                );
            }
            checkpoints += 1;
        }
    }
    assert!(checkpoints >= 2);

    // The recording is the ITCH file layout; a book rebuilt from it equals the matcher's.
    let mut book = Book::new(book_config());
    let mut recorded_messages = 0u64;
    for record in FileRecords::new(&subscribers.recorded) {
        let bytes = record.expect("whole records");
        assert!(itch::is_itch_standard(bytes[0]), "only ITCH 5.0 types");
        let message = Message::decode(bytes).expect("decodes");
        book.apply(&message).expect("applies");
        recorded_messages += 1;
    }
    assert_same_books(
        publisher.matcher(),
        publisher.encoder(),
        &book,
        "book from the recorded file",
    );

    let stats = publisher.stats();
    let lossy = subscribers.lossy.stats();
    let late = subscribers.late.as_ref().expect("joined").stats();
    eprintln!("publisher: {stats:?}");
    eprintln!("full: {:?}", subscribers.full.stats());
    eprintln!("lossy: {lossy:?}");
    eprintln!("late joiner: {late:?}");
    eprintln!("recorded: {recorded_messages} messages");
    assert!(lossy.frames_dropped_injected > 0, "loss was injected");
    assert!(lossy.retransmit_requests > 0 && stats.retransmit_frames > 0);
    assert!(
        late.snapshots_loaded >= 1,
        "the late joiner loaded a snapshot"
    );
    assert!(subscribers.full.core().counters().checksums_verified > 0);
    assert_eq!(stats.frames_failed, 0);
}

/// A leader failover, as the feed sees it: two publishers apply the same committed log, the
/// old leader's publishing and the new leader's standing by (journaling only), on the same
/// multicast group (each replica its own media driver). The old one dies between two flushes,
/// so its last messages never leave it; the standby takes over; the subscriber applies every
/// feed sequence exactly once, in order (what the old one did not send comes from the new one's
/// journal by retransmission), and ends with the new leader's books. Ports 46410..46411.
#[test]
fn a_standby_publisher_takes_over_with_no_gap_and_no_duplicate() {
    let commands = env_u64("MARKETDATA_FAILOVER_COMMANDS", 40_000);
    let seed = env_u64("MARKETDATA_AERON_SEED", 0xAE50_1234);
    let group = "aeron:udp?endpoint=224.0.1.1:46410|interface=127.0.0.1";
    let requests = "aeron:udp?endpoint=224.0.1.1:46411|interface=127.0.0.1";
    let channels = PublisherChannels {
        publication: format!("{group}|mtu=1408"),
        request: requests.to_string(),
    };
    let driver_old = EmbeddedDriver::launch(&unique_dir("md-failover-old")).expect("driver");
    let driver_new = EmbeddedDriver::launch(&unique_dir("md-failover-new")).expect("driver");
    let driver_subscriber = EmbeddedDriver::launch(&unique_dir("md-failover-sub")).expect("driver");
    let journal_old = tempfile::tempdir().expect("temporary directory");
    let journal_new = tempfile::tempdir().expect("temporary directory");
    let config = |dir: &std::path::Path, active: bool| {
        let mut config = PublisherConfig::new(matcher_config(), SESSION, dir, channels.clone());
        config.checksum_interval = 250;
        config.heartbeat_interval = Duration::from_millis(20);
        config.journal.segment_size = 4 << 20;
        config.journal.pretouch = false;
        config.active = active;
        config
    };
    let aeron_old = connect(driver_old.dir()).expect("client");
    let mut old =
        Some(FeedPublisher::new(&aeron_old, config(journal_old.path(), true)).expect("publisher"));
    let aeron_new = connect(driver_new.dir()).expect("client");
    let mut new =
        FeedPublisher::new(&aeron_new, config(journal_new.path(), false)).expect("publisher");
    let aeron_subscriber = connect(driver_subscriber.dir()).expect("client");
    let mut subscriber_config = subscriber_config(0, false, None);
    subscriber_config.channels = SubscriberChannels {
        subscription: group.to_string(),
        request: requests.to_string(),
    };
    let mut subscriber =
        FeedSubscriber::new(&aeron_subscriber, subscriber_config).expect("subscriber");
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    while !subscriber.is_connected() {
        assert!(Instant::now() < deadline, "subscriber never connected");
        let now = Instant::now();
        if let Some(old) = old.as_mut() {
            old.do_work(now).expect("publisher");
        }
        new.do_work(now).expect("publisher");
        subscriber.poll(now, &mut |_, _| {}).expect("subscriber");
        std::thread::sleep(Duration::from_millis(1));
    }

    // Every applied message is the next sequence: no gap, no duplicate.
    let mut applied_last = 0u64;
    let mut out_of_order = 0u64;
    let mut check = |sequence: u64, _: &[u8]| {
        if sequence != applied_last + 1 {
            out_of_order += 1;
        }
        applied_last = sequence;
    };
    let mut generator = Generator::new(seed);
    let fail_at = commands / 2 + 7;
    assert_ne!(
        fail_at % BATCH_COMMANDS,
        0,
        "the old leader dies between flushes"
    );
    let mut sent_by_old = 0;
    for index in 0..commands {
        let sequence = index + 1;
        let timestamp_ns = TIMESTAMP_BASE_NS + sequence * 1_000;
        let command = generator.next(index, commands, new.matcher());
        let record = command.encode();
        if let Some(old) = old.as_mut() {
            old.on_record(sequence, timestamp_ns, &record)
                .expect("publishes");
        }
        new.on_record(sequence, timestamp_ns, &record)
            .expect("journals");
        generator.observe(new.events());
        if sequence == fail_at {
            // The old leader dies with messages in its packer: they were never sent.
            let dead = old.take().expect("alive");
            sent_by_old = dead.stats().frames_sent;
            drop(dead);
            new.set_active(true).expect("takes over");
        }
        if sequence % BATCH_COMMANDS == 0 {
            let now = Instant::now();
            if let Some(old) = old.as_mut() {
                old.flush().expect("flush");
                old.do_work(now).expect("publisher");
            }
            new.flush().expect("flush");
            new.do_work(now).expect("publisher");
            subscriber
                .poll(now, &mut check)
                .expect("subscriber follows");
        }
    }
    new.flush().expect("flush");
    let target = new.sequence_next();
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let mut idle = IdleBackoff::default();
    while subscriber.sequence_next() != Some(target) {
        assert!(
            Instant::now() < deadline,
            "the subscriber did not reach {target}: {:?} {:?}",
            subscriber.sequence_next(),
            subscriber.stats()
        );
        let now = Instant::now();
        let work = new.do_work(now).expect("publisher")
            + subscriber
                .poll(now, &mut check)
                .expect("subscriber follows");
        idle.idle(work);
    }
    assert_same_books(
        new.matcher(),
        new.encoder(),
        subscriber.book(),
        "after the failover",
    );
    let stats = new.stats();
    eprintln!("old leader sent {sent_by_old} frames; new leader: {stats:?}");
    eprintln!("subscriber: {:?}", subscriber.stats());
    assert_eq!(out_of_order, 0, "every sequence applied once, in order");
    assert_eq!(applied_last, target - 1);
    assert!(sent_by_old > 0 && stats.frames_standby > 0);
    assert!(
        stats.retransmit_frames > 0,
        "the old leader's unsent messages came from the new leader's journal"
    );
}

/// Committed commands from a list, then stop once the test says so.
struct ListSource {
    records: Vec<(u64, matcher::CommandRecord)>,
    next: usize,
}

impl marketdata::aeron::CommittedSource for ListSource {
    fn poll(
        &mut self,
        limit: usize,
        deliver: &mut dyn FnMut(marketdata::aeron::CommittedCommand<'_>),
    ) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
        let end = (self.next + limit).min(self.records.len());
        for (sequence, record) in &self.records[self.next..end] {
            deliver(marketdata::aeron::CommittedCommand {
                sequence: *sequence,
                timestamp_ns: TIMESTAMP_BASE_NS + sequence * 1_000,
                client_id: 1,
                client_sequence: *sequence,
                command: record.as_bytes(),
            });
        }
        let delivered = end - self.next;
        self.next = end;
        Ok(delivered)
    }
}

/// `run_publisher`, the loop `md publish` will run, on its own thread with its own embedded
/// driver, fed from a source whose log skips sequences (as a log with non-command records
/// does); a subscriber ends with the books of a matcher that applied the same log here, and at
/// the feed sequence an encoder given the same log reaches (the feed is a function of the log).
/// Ports 46020..46022.
#[test]
fn run_publisher_publishes_a_source() {
    let commands = 20_000u64;
    let mut generator = Generator::new(7);
    let mut matcher = matcher::Matcher::new(matcher_config()).expect("matcher");
    let mut encoder = marketdata::FeedEncoder::new(marketdata::FeedConfig::from(&matcher_config()));
    let mut events = Vec::new();
    let mut records = Vec::new();
    for index in 0..commands {
        // Every tenth log sequence is not a command.
        let sequence = index + 1 + index / 9;
        let record = generator.next(index, commands, &matcher).encode();
        let previous = matcher.sequence_last();
        events.clear();
        matcher.apply(
            sequence,
            TIMESTAMP_BASE_NS + sequence * 1_000,
            &record,
            &mut events,
        );
        generator.observe(&events);
        encoder
            .encode_command(sequence, 0, &record, &events, &mut |_: u64, _: &[u8]| {})
            .expect("encodes");
        if sequence / 250 > previous / 250 {
            encoder
                .encode_checksum(0, &matcher, &mut |_: u64, _: &[u8]| {})
                .expect("checksum");
        }
        records.push((sequence, record));
    }
    let target = encoder.sequence_next();

    let journal_dir = tempfile::tempdir().expect("temporary directory");
    let mut config = PublisherConfig::new(
        matcher_config(),
        SESSION,
        journal_dir.path(),
        PublisherChannels::mdc("127.0.0.1:46020", "127.0.0.1:46021"),
    );
    config.checksum_interval = 250;
    config.journal.segment_size = 4 << 20;
    config.journal.pretouch = false;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut source = ListSource { records, next: 0 };
            marketdata::aeron::run_publisher(config, None, &mut source, &stop)
        })
    };

    let driver = EmbeddedDriver::launch(&unique_dir("md-test-run")).expect("driver");
    let aeron = connect(driver.dir()).expect("client");
    let mut subscriber_config = subscriber_config(0, false, None);
    subscriber_config.channels =
        SubscriberChannels::mdc("127.0.0.1:46022", "127.0.0.1:46020", "127.0.0.1:46021");
    // The publisher's thread may need a moment to add its publications.
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let mut subscriber = FeedSubscriber::new(&aeron, subscriber_config).expect("subscriber");
    let mut idle = IdleBackoff::default();
    while subscriber.sequence_next() != Some(target) {
        assert!(
            Instant::now() < deadline,
            "the subscriber did not reach {target}: {:?} {:?}",
            subscriber.sequence_next(),
            subscriber.stats()
        );
        let work = subscriber
            .poll(Instant::now(), &mut |_, _| {})
            .expect("subscriber follows");
        idle.idle(work);
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let stats = publisher
        .join()
        .expect("publisher thread")
        .expect("run_publisher");
    assert_eq!(stats.commands, commands);
    assert_eq!(stats.messages, target - 1);
    assert_same_books(&matcher, &encoder, subscriber.book(), "run_publisher");
    assert!(subscriber.core().counters().checksums_verified > 0);
}

/// A publisher restarted on its feed journal replays the log from the start: what the journal
/// holds is neither journaled nor sent again (whatever the new batching), the rest follows, and
/// the journal holds every feed sequence once. Ports 46030..46031.
#[test]
fn a_restarted_publisher_continues_its_journal() {
    let driver = EmbeddedDriver::launch(&unique_dir("md-test-restart")).expect("driver");
    let aeron = connect(driver.dir()).expect("client");
    let journal_dir = tempfile::tempdir().expect("temporary directory");
    let config = || {
        let mut config = PublisherConfig::new(
            matcher_config(),
            SESSION,
            journal_dir.path(),
            PublisherChannels::mdc("127.0.0.1:46030", "127.0.0.1:46031"),
        );
        config.checksum_interval = 250;
        config.journal.segment_size = 1 << 20;
        config.journal.pretouch = false;
        config
    };
    let commands = 12_000u64;
    let mut generator = Generator::new(11);
    let mut matcher = matcher::Matcher::new(matcher_config()).expect("matcher");
    let mut events = Vec::new();
    let records: Vec<(u64, matcher::CommandRecord)> = (0..commands)
        .map(|index| {
            let record = generator.next(index, commands, &matcher).encode();
            events.clear();
            matcher.apply(index + 1, index, &record, &mut events);
            generator.observe(&events);
            (index + 1, record)
        })
        .collect();
    let publish = |publisher: &mut FeedPublisher, range: std::ops::Range<usize>, batch: usize| {
        for (index, (sequence, record)) in records[range].iter().enumerate() {
            publisher
                .on_record(*sequence, TIMESTAMP_BASE_NS + sequence, record)
                .expect("publishes");
            if index % batch == batch - 1 {
                publisher.flush().expect("flush");
            }
        }
        publisher.flush().expect("flush");
    };
    let first = {
        let mut publisher = FeedPublisher::new(&aeron, config()).expect("publisher");
        publish(&mut publisher, 0..5_000, 32);
        publisher.stats()
    };
    let mut publisher = FeedPublisher::new(&aeron, config()).expect("restarted publisher");
    publish(&mut publisher, 0..commands as usize, 50);
    let second = publisher.stats();
    assert!(second.frames_replayed > 0);
    assert_eq!(second.frames_standby, 0);

    // The journal: frames in order, together every feed sequence once (overlaps skipped).
    let mut reader = journal::Reader::open(journal_dir.path()).expect("reader");
    let mut next = 1u64;
    let mut frames = 0u64;
    while let Some(record) = reader.next_record().expect("journal") {
        let view = marketdata::FrameView::parse(record.payload).expect("a frame");
        assert!(view.sequence_first <= next, "no hole before {next}");
        assert_eq!(record.meta.sequence, view.sequence_end() - 1);
        next = next.max(view.sequence_end());
        frames += 1;
    }
    assert_eq!(next, publisher.sequence_next());
    assert_eq!(frames, first.frames + second.frames);
}
