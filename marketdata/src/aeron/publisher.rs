//! The publishing side: committed commands in, ITCH frames out on Aeron, every frame in the feed
//! journal, retransmissions and snapshots served on request.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use journal::{Journal, JournalConfig, Reader, RecordMeta};
use matcher::{CommandRecord, Event, Matcher};
use rusteron_client::{Aeron, AeronExclusivePublication};

use super::{
    add_publication, offer_bounded, IdleBackoff, Offered, PublisherChannels, Receiver,
    RuntimeError, FRAME_LEN_DEFAULT, STREAM_ID_INCREMENTAL, STREAM_ID_REQUEST,
    STREAM_ID_RETRANSMIT, STREAM_ID_SNAPSHOT,
};
use crate::frame::{FramePacker, FrameView, PackingSink, FRAME_HEADER_LEN, SESSION_LEN};
use crate::request::{Request, REQUEST_MESSAGES_MAX};
use crate::{FeedConfig, FeedEncoder};

/// Journal record type of a feed frame (ASCII "MD"). The record's sequence is the feed
/// sequence of the frame's **last** message, so `Reader::seek_sequence(s)` finds the frame that
/// holds message `s`.
pub const RECORD_TYPE_FEED_FRAME: u16 = 0x4D44;
/// Requests waiting to be served; beyond it requests are dropped (counted) and the subscriber
/// asks again after its retry interval.
pub const REQUESTS_PENDING_MAX: usize = 64;
/// Frames the service sends per duty cycle (retransmissions and snapshots each), so serving
/// never starves the live feed.
pub const SERVICE_FRAMES_PER_CYCLE_MAX: usize = 64;
/// Request packets read per duty cycle.
pub const REQUEST_FRAGMENTS_PER_CYCLE_MAX: usize = 16;
/// Events one command may emit before the event buffer grows (a sweep of many makers).
pub const EVENTS_PER_COMMAND_EXPECTED: usize = 4096;

/// Configuration of a [`FeedPublisher`].
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// The matcher replica's configuration: the cluster's.
    pub matcher: matcher::Config,
    /// The MoldUDP64 session name.
    pub session: [u8; SESSION_LEN],
    /// Largest frame (a frame is one Aeron message).
    pub frame_len_max: usize,
    /// A Book Checksum (`Z`) follows every command whose sequence crosses a multiple of this
    /// (a rule of the log, so every replica emits it at the same place); 0 = never.
    pub checksum_interval: u64,
    /// The feed journal (every frame, for retransmission).
    pub journal: JournalConfig,
    /// The Aeron channels.
    pub channels: PublisherChannels,
    /// A heartbeat (the next feed sequence) goes out after this long without a frame, so a
    /// subscriber notices the loss of the last frame of a burst.
    pub heartbeat_interval: Duration,
    /// Offers retried on back-pressure before a frame is dropped (subscribers recover it by
    /// retransmission).
    pub offer_retries_max: u32,
    /// Publish (true), or stand by (false): apply, encode and journal every command but send
    /// nothing and answer no request, until [`FeedPublisher::set_active`]. A standby replica's
    /// publisher takes over after a failover with no gap (its journal serves what the old
    /// publisher did not send) and no duplicate (subscribers apply each sequence once).
    pub active: bool,
}

impl PublisherConfig {
    /// Defaults around the required parts: 1,376-byte frames (one fragment at MTU 1,408), a
    /// checksum every 1,000 sequences, heartbeats every 100 ms, 64 offer retries.
    pub fn new(
        matcher: matcher::Config,
        session: [u8; SESSION_LEN],
        journal_dir: &Path,
        channels: PublisherChannels,
    ) -> PublisherConfig {
        PublisherConfig {
            matcher,
            session,
            frame_len_max: FRAME_LEN_DEFAULT,
            checksum_interval: super::DEFAULT_CHECKSUM_INTERVAL,
            journal: JournalConfig::new(journal_dir),
            channels,
            heartbeat_interval: Duration::from_millis(100),
            offer_retries_max: 64,
            active: true,
        }
    }
}

/// Running figures of a publisher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Commands applied.
    pub commands: u64,
    /// Feed messages (incremental, checksums included).
    pub messages: u64,
    /// Book checksums emitted.
    pub checksums: u64,
    /// Frames journaled and offered.
    pub frames: u64,
    /// Frames that Aeron took.
    pub frames_sent: u64,
    /// Bytes of the frames journaled and offered.
    pub frame_bytes: u64,
    /// Frames dropped after the bounded retries (back-pressure).
    pub frames_back_pressured: u64,
    /// Frames not sent because no subscriber was connected.
    pub frames_not_connected: u64,
    /// Frames whose offer failed otherwise.
    pub frames_failed: u64,
    /// Frames already in the journal (a restarted publisher replaying the log).
    pub frames_replayed: u64,
    /// Frames journaled but not sent while standing by.
    pub frames_standby: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Requests received.
    pub requests: u64,
    /// Requests refused: unparsable, another session, or nothing to serve.
    pub requests_refused: u64,
    /// Requests dropped because [`REQUESTS_PENDING_MAX`] were waiting.
    pub requests_dropped: u64,
    /// Frames retransmitted.
    pub retransmit_frames: u64,
    /// Retransmissions abandoned (no subscriber connected, or the publication failed).
    pub retransmits_abandoned: u64,
    /// Snapshots sent whole.
    pub snapshots: u64,
    /// Snapshot frames sent.
    pub snapshot_frames: u64,
    /// Snapshots abandoned (no subscriber connected, or the publication failed).
    pub snapshots_abandoned: u64,
}

/// Where the packer's frames go: the journal first, then the publication.
struct Output {
    journal: Journal,
    publication: AeronExclusivePublication,
    offer_retries_max: u32,
    timestamp_ns: u64,
    stats: PublisherStats,
    error: Option<journal::JournalError>,
    last_send: Instant,
    active: bool,
}

impl Output {
    fn frame(&mut self, frame: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let view = match FrameView::parse(frame) {
            Ok(view) => view,
            Err(error) => unreachable!("the packer made a frame that does not parse: {error}"),
        };
        assert!(
            !view.is_empty(),
            "the packer hands over frames with messages"
        );
        let sequence_last = view.sequence_end() - 1;
        if sequence_last <= self.journal.last_sequence() {
            self.stats.frames_replayed += 1;
            return;
        }
        let meta = RecordMeta {
            record_type: RECORD_TYPE_FEED_FRAME,
            sequence: sequence_last,
            term: 1,
            timestamp_ns: self.timestamp_ns,
            flags: 0,
        };
        if let Err(error) = self.journal.append(&meta, frame) {
            self.error = Some(error);
            return;
        }
        self.stats.frames += 1;
        self.stats.frame_bytes += frame.len() as u64;
        if !self.active {
            self.stats.frames_standby += 1;
            return;
        }
        self.last_send = Instant::now();
        match offer_bounded(&self.publication, frame, self.offer_retries_max) {
            Offered::Sent => self.stats.frames_sent += 1,
            Offered::BackPressured => self.stats.frames_back_pressured += 1,
            Offered::NotConnected => self.stats.frames_not_connected += 1,
            Offered::Failed => self.stats.frames_failed += 1,
        }
    }
}

/// Retransmissions from the feed journal and snapshots from the matcher replica.
struct Service {
    session: [u8; SESSION_LEN],
    requests: Receiver,
    retransmit: AeronExclusivePublication,
    snapshot: AeronExclusivePublication,
    reader: Reader,
    /// Ranges `from..to` to retransmit, oldest first.
    pending: VecDeque<(u64, u64)>,
    /// Whether the reader stands at the front request's next frame.
    positioned: bool,
    snapshot_wanted: bool,
    snapshot_packer: FramePacker,
    /// The snapshot being sent: frames, each preceded by its length (u32, little-endian).
    snapshot_frames: Vec<u8>,
    /// Offset of the next snapshot frame to send; `None` when no snapshot is being sent.
    snapshot_at: Option<usize>,
    offer_retries_max: u32,
}

/// The feed's publisher. It owns a [`Matcher`] replica configured like the cluster's, applies
/// each committed command to it ([`FeedPublisher::on_committed`]), encodes the events
/// ([`FeedEncoder`]), packs the messages into MoldUDP64 frames, appends every frame to the feed
/// journal and offers it on the incremental stream. [`FeedPublisher::do_work`] flushes, sends
/// heartbeats and serves the retransmission and snapshot requests of subscribers.
///
/// An agent: it has no thread; its owner calls `on_committed` for each committed command of a
/// batch, then `do_work` (see [`run_publisher`]).
pub struct FeedPublisher {
    matcher: Matcher,
    encoder: FeedEncoder,
    events: Vec<Event>,
    packer: FramePacker,
    output: Output,
    service: Service,
    checksum_interval: u64,
    heartbeat_interval: Duration,
    // Last: the client outlives its publications and subscriptions.
    _aeron: Aeron,
}

impl FeedPublisher {
    /// A publisher at the start of the log, on the Aeron client `aeron`. Opens (or creates) the
    /// feed journal; if it already holds frames (a restart replaying the log), frames it holds
    /// are neither journaled nor published again.
    pub fn new(aeron: &Aeron, config: PublisherConfig) -> Result<FeedPublisher, RuntimeError> {
        Self::new_invoking(aeron, config, &super::no_invoke)
    }

    /// As [`FeedPublisher::new`], calling `invoke` while it waits for the media driver (a
    /// driver that the calling thread runs in its duty cycle).
    pub fn new_invoking(
        aeron: &Aeron,
        config: PublisherConfig,
        invoke: &dyn Fn(),
    ) -> Result<FeedPublisher, RuntimeError> {
        let matcher = Matcher::new(config.matcher)
            .map_err(|error| RuntimeError::Config(format!("matcher: {error}")))?;
        let packer = FramePacker::new(config.session, config.frame_len_max)
            .map_err(|error| RuntimeError::Config(error.to_string()))?;
        let snapshot_packer = FramePacker::new(config.session, config.frame_len_max)
            .map_err(|error| RuntimeError::Config(error.to_string()))?;
        let journal = Journal::open(config.journal.clone())?;
        let reader = Reader::open(&config.journal.dir)?;
        let channel = &config.channels.publication;
        let publication = add_publication(aeron, channel, STREAM_ID_INCREMENTAL, invoke)?;
        let retransmit = add_publication(aeron, channel, STREAM_ID_RETRANSMIT, invoke)?;
        let snapshot = add_publication(aeron, channel, STREAM_ID_SNAPSHOT, invoke)?;
        let requests = Receiver::new(aeron, &config.channels.request, STREAM_ID_REQUEST, invoke)?;
        Ok(FeedPublisher {
            encoder: FeedEncoder::new(FeedConfig::from(&config.matcher)),
            matcher,
            events: Vec::with_capacity(EVENTS_PER_COMMAND_EXPECTED),
            packer,
            output: Output {
                journal,
                publication,
                offer_retries_max: config.offer_retries_max,
                timestamp_ns: 0,
                stats: PublisherStats::default(),
                error: None,
                last_send: Instant::now(),
                active: config.active,
            },
            service: Service {
                session: config.session,
                requests,
                retransmit,
                snapshot,
                reader,
                pending: VecDeque::with_capacity(REQUESTS_PENDING_MAX),
                positioned: false,
                snapshot_wanted: false,
                snapshot_packer,
                snapshot_frames: Vec::new(),
                snapshot_at: None,
                offer_retries_max: config.offer_retries_max,
            },
            checksum_interval: config.checksum_interval,
            heartbeat_interval: config.heartbeat_interval,
            _aeron: aeron.clone(),
        })
    }

    /// Applies one committed command (the 64-byte matcher record of the log; anything else is
    /// applied as the matcher applies a malformed payload) and encodes its events. Commands must
    /// come exactly once, in log order (the matcher asserts increasing sequences). Messages are
    /// packed; full frames go out at once, the rest at the next [`FeedPublisher::flush`] or
    /// [`FeedPublisher::do_work`]. Returns the number of feed messages.
    pub fn on_committed(
        &mut self,
        sequence: u64,
        timestamp_ns: u64,
        command: &[u8],
    ) -> Result<u32, RuntimeError> {
        self.on_record(
            sequence,
            timestamp_ns,
            &CommandRecord::from_payload(command),
        )
    }

    /// As [`FeedPublisher::on_committed`], for a record already decoded.
    pub fn on_record(
        &mut self,
        sequence: u64,
        timestamp_ns: u64,
        record: &CommandRecord,
    ) -> Result<u32, RuntimeError> {
        let output = &mut self.output;
        output.timestamp_ns = timestamp_ns;
        let mut sink = PackingSink::new(&mut self.packer, |frame: &[u8]| output.frame(frame));
        let (messages, checksum) = self.encoder.apply_and_encode(
            &mut self.matcher,
            &mut self.events,
            self.checksum_interval,
            sequence,
            timestamp_ns,
            record,
            &mut sink,
        )?;
        debug_assert_eq!(sink.refused, 0, "every ITCH message fits a frame");
        self.output.stats.checksums += u64::from(checksum);
        self.output.stats.commands += 1;
        self.output.stats.messages += u64::from(messages);
        match self.output.error.take() {
            Some(error) => Err(error.into()),
            None => Ok(messages),
        }
    }

    /// Sends the frame being built, if any (call after each batch of commands).
    pub fn flush(&mut self) -> Result<(), RuntimeError> {
        let output = &mut self.output;
        self.packer.flush(&mut |frame: &[u8]| output.frame(frame));
        match self.output.error.take() {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// One duty cycle: flush, heartbeat when quiet, read requests, serve some retransmission
    /// and snapshot frames. Returns the work done (0 = idle).
    pub fn do_work(&mut self, now: Instant) -> Result<usize, RuntimeError> {
        let mut work = 0;
        if self.packer.pending() > 0 {
            self.flush()?;
            work += 1;
        }
        if !self.output.active {
            // Requests are for the active publisher; read and forget them.
            work += self
                .service
                .requests
                .poll(REQUEST_FRAGMENTS_PER_CYCLE_MAX)?;
            self.service.requests.drain(|_| {});
            return Ok(work);
        }
        if now.saturating_duration_since(self.output.last_send) >= self.heartbeat_interval {
            let heartbeat = self.packer.heartbeat(self.encoder.sequence_next());
            // A heartbeat is advisory: one lost is replaced by the next.
            let _ = offer_bounded(&self.output.publication, &heartbeat, 0);
            self.output.stats.heartbeats += 1;
            self.output.last_send = now;
            work += 1;
        }
        work += self
            .service
            .read_requests(self.encoder.sequence_next(), &mut self.output.stats)?;
        work += self.service.serve_retransmits(&mut self.output.stats)?;
        work +=
            self.service
                .serve_snapshot(&self.encoder, &self.matcher, &mut self.output.stats)?;
        Ok(work)
    }

    /// The matcher replica (at the state of the last command given).
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// The events of the last command applied.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The encoder.
    pub fn encoder(&self) -> &FeedEncoder {
        &self.encoder
    }

    /// The feed sequence the next message will get.
    pub fn sequence_next(&self) -> u64 {
        self.encoder.sequence_next()
    }

    /// Running figures.
    pub fn stats(&self) -> PublisherStats {
        self.output.stats
    }

    /// Starts (true) or stops (false) publishing; see [`PublisherConfig::active`]. On
    /// activation the frame being built is flushed and a heartbeat announces the next feed
    /// sequence at once, so subscribers ask for whatever the previous publisher did not send.
    pub fn set_active(&mut self, active: bool) -> Result<(), RuntimeError> {
        if active == self.output.active {
            return Ok(());
        }
        self.flush()?;
        self.output.active = active;
        if active {
            let heartbeat = self.packer.heartbeat(self.encoder.sequence_next());
            let _ = offer_bounded(&self.output.publication, &heartbeat, 0);
            self.output.stats.heartbeats += 1;
            self.output.last_send = Instant::now();
        }
        Ok(())
    }

    /// Whether it publishes.
    pub fn is_active(&self) -> bool {
        self.output.active
    }

    /// Whether a subscriber is connected to the incremental stream.
    pub fn is_connected(&self) -> bool {
        self.output.publication.is_connected()
    }
}

impl Service {
    fn read_requests(
        &mut self,
        sequence_next: u64,
        stats: &mut PublisherStats,
    ) -> Result<usize, RuntimeError> {
        let fragments = self.requests.poll(REQUEST_FRAGMENTS_PER_CYCLE_MAX)?;
        if fragments == 0 {
            return Ok(0);
        }
        let Service {
            session,
            requests,
            pending,
            snapshot_wanted,
            ..
        } = self;
        requests.drain(|bytes| {
            stats.requests += 1;
            match Request::decode(bytes) {
                Ok((got, _)) if got != *session => stats.requests_refused += 1,
                Ok((_, Request::Snapshot)) => *snapshot_wanted = true,
                Ok((_, Request::Retransmit { from, count })) => {
                    let count = count.min(REQUEST_MESSAGES_MAX);
                    let to = from.saturating_add(u64::from(count)).min(sequence_next);
                    if from >= to {
                        stats.requests_refused += 1;
                    } else if pending.len() >= REQUESTS_PENDING_MAX {
                        stats.requests_dropped += 1;
                    } else {
                        pending.push_back((from, to));
                    }
                }
                Err(_) => stats.requests_refused += 1,
            }
        });
        Ok(fragments)
    }

    fn serve_retransmits(&mut self, stats: &mut PublisherStats) -> Result<usize, RuntimeError> {
        let mut sent = 0;
        while sent < SERVICE_FRAMES_PER_CYCLE_MAX {
            let Some(&(from, to)) = self.pending.front() else {
                break;
            };
            if !self.positioned {
                self.reader.seek_sequence(from)?;
                self.positioned = true;
            }
            let Some(record) = self.reader.next_record()? else {
                // The journal ends before `to`: everything there is was sent.
                self.pending.pop_front();
                self.positioned = false;
                continue;
            };
            let view = match FrameView::parse(record.payload) {
                Ok(view) if record.meta.record_type == RECORD_TYPE_FEED_FRAME => view,
                _ => {
                    return Err(RuntimeError::Config(format!(
                        "feed journal record {} at position {} is not a feed frame",
                        record.meta.sequence, record.position
                    )))
                }
            };
            if view.sequence_first >= to {
                self.pending.pop_front();
                self.positioned = false;
                continue;
            }
            match offer_bounded(&self.retransmit, record.payload, self.offer_retries_max) {
                Offered::Sent => {
                    sent += 1;
                    stats.retransmit_frames += 1;
                    if view.sequence_end() >= to {
                        self.pending.pop_front();
                        self.positioned = false;
                    } else if let Some(front) = self.pending.front_mut() {
                        front.0 = view.sequence_end();
                    }
                }
                Offered::BackPressured => {
                    // Resume from this frame in the next cycle.
                    if let Some(front) = self.pending.front_mut() {
                        front.0 = view.sequence_first.max(front.0);
                    }
                    self.positioned = false;
                    break;
                }
                Offered::NotConnected | Offered::Failed => {
                    stats.retransmits_abandoned += 1;
                    self.pending.pop_front();
                    self.positioned = false;
                }
            }
        }
        Ok(sent)
    }

    fn serve_snapshot(
        &mut self,
        encoder: &FeedEncoder,
        matcher: &Matcher,
        stats: &mut PublisherStats,
    ) -> Result<usize, RuntimeError> {
        if self.snapshot_at.is_none() {
            if !self.snapshot_wanted {
                return Ok(0);
            }
            self.snapshot_wanted = false;
            self.snapshot_frames.clear();
            let frames = &mut self.snapshot_frames;
            let mut sink = PackingSink::new(&mut self.snapshot_packer, |frame: &[u8]| {
                frames.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                frames.extend_from_slice(frame);
            });
            encoder.encode_snapshot(matcher.timestamp_ns_last(), matcher, &mut sink)?;
            sink.flush();
            self.snapshot_at = Some(0);
        }
        let mut sent = 0;
        while let Some(at) = self.snapshot_at {
            if sent == SERVICE_FRAMES_PER_CYCLE_MAX {
                break;
            }
            if at == self.snapshot_frames.len() {
                stats.snapshots += 1;
                self.snapshot_at = None;
                break;
            }
            let mut len = [0u8; 4];
            len.copy_from_slice(&self.snapshot_frames[at..at + 4]);
            let len = u32::from_le_bytes(len) as usize;
            debug_assert!(len >= FRAME_HEADER_LEN);
            let frame = &self.snapshot_frames[at + 4..at + 4 + len];
            match offer_bounded(&self.snapshot, frame, self.offer_retries_max) {
                Offered::Sent => {
                    sent += 1;
                    stats.snapshot_frames += 1;
                    self.snapshot_at = Some(at + 4 + len);
                }
                Offered::BackPressured => break,
                Offered::NotConnected | Offered::Failed => {
                    stats.snapshots_abandoned += 1;
                    self.snapshot_at = None;
                }
            }
        }
        Ok(sent)
    }
}

/// One committed command, as the cluster's learner delivers it (exactly once, in log order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommittedCommand<'a> {
    /// Log sequence.
    pub sequence: u64,
    /// The sequencer's timestamp.
    pub timestamp_ns: u64,
    /// The client that sent it.
    pub client_id: u64,
    /// Its sequence in that client's stream.
    pub client_sequence: u64,
    /// The command record's bytes.
    pub command: &'a [u8],
}

/// Where [`run_publisher`] gets committed commands from: the cluster's learner (or a journal
/// reader, or a test's generator).
pub trait CommittedSource {
    /// Hands up to `limit` committed commands, in log order, to `deliver`; returns how many
    /// (0 when none is ready: the caller idles). Must not block for long: the publisher's
    /// heartbeats and retransmissions run between polls.
    fn poll(
        &mut self,
        limit: usize,
        deliver: &mut dyn FnMut(CommittedCommand<'_>),
    ) -> Result<usize, Box<dyn std::error::Error + Send + Sync>>;
}

/// Commands taken from the source per duty cycle (then the frame is flushed).
pub const COMMANDS_PER_CYCLE_MAX: usize = 256;

/// **The feed's main loop, for `exchange md publish`**: connects to the media driver in
/// `aeron_dir` (or embeds one in a fresh directory when `None`), builds a [`FeedPublisher`]
/// from `config`, then until `stop` is set: takes committed commands from `source`, publishes
/// them, flushes after each batch, serves requests, and idles with [`IdleBackoff`] when there is
/// nothing to do. Returns the final figures.
pub fn run_publisher(
    config: PublisherConfig,
    aeron_dir: Option<&Path>,
    source: &mut dyn CommittedSource,
    stop: &AtomicBool,
) -> Result<PublisherStats, RuntimeError> {
    let driver = match aeron_dir {
        Some(_) => None,
        None => Some(sequencer::driver::EmbeddedDriver::launch(
            &sequencer::driver::unique_dir("md-publish"),
        )?),
    };
    let dir = match (&driver, aeron_dir) {
        (Some(driver), _) => driver.dir().to_path_buf(),
        (None, Some(dir)) => dir.to_path_buf(),
        (None, None) => unreachable!("a driver is embedded when no directory is given"),
    };
    let aeron = super::connect(&dir)?;
    let mut publisher = FeedPublisher::new(&aeron, config)?;
    let mut idle = IdleBackoff::default();
    while !stop.load(Ordering::Acquire) {
        let mut failure = None;
        let delivered = source
            .poll(COMMANDS_PER_CYCLE_MAX, &mut |command| {
                if failure.is_none() {
                    if let Err(error) = publisher.on_committed(
                        command.sequence,
                        command.timestamp_ns,
                        command.command,
                    ) {
                        failure = Some(error);
                    }
                }
            })
            .map_err(|error| RuntimeError::Source(error.to_string()))?;
        if let Some(error) = failure {
            return Err(error);
        }
        let work = delivered + publisher.do_work(Instant::now())?;
        idle.idle(work);
    }
    publisher.flush()?;
    let stats = publisher.stats();
    drop(publisher);
    drop(aeron);
    drop(driver);
    Ok(stats)
}
