//! The subscribing side: Aeron subscriptions in, the [`Subscriber`] core's books out; gaps are
//! requested from the retransmission service, a late joiner (or a subscriber that lost its
//! place) loads a snapshot first.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rusteron_client::{Aeron, AeronExclusivePublication};

use super::{
    add_publication, offer_bounded, Offered, Receiver, RuntimeError, SubscriberChannels,
    STREAM_ID_INCREMENTAL, STREAM_ID_REQUEST, STREAM_ID_RETRANSMIT, STREAM_ID_SNAPSHOT,
};
use crate::book::{Book, BookConfig, LevelView};
use crate::frame::{FrameView, SESSION_LEN};
use crate::itch::BuySell;
use crate::request::Request;
use crate::subscriber::{FrameOutcome, Subscriber, SubscriberError};

/// Bytes of frames kept while a gap is open (frames that arrive beyond it); beyond it they are
/// dropped and fetched again with the gap.
pub const PENDING_BYTES_MAX: usize = 1 << 20;
/// Frames kept while a gap is open.
pub const PENDING_FRAMES_MAX: usize = 1024;

/// Drops incremental frames on receipt, deterministically by seed: for tests of gap recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossInjection {
    /// Seed of the drop decisions.
    pub seed: u64,
    /// Frames dropped per million received.
    pub drop_per_million: u32,
}

/// Configuration of a [`FeedSubscriber`].
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// Capacities of the rebuilt books.
    pub book: BookConfig,
    /// The MoldUDP64 session followed (requests carry it).
    pub session: [u8; SESSION_LEN],
    /// The Aeron channels.
    pub channels: SubscriberChannels,
    /// Start from a snapshot instead of from feed sequence 1.
    pub late_join: bool,
    /// A request not answered within this is sent again.
    pub request_retry: Duration,
    /// Fragments read per stream per poll.
    pub fragment_limit: usize,
    /// Drop incremental frames on purpose (tests).
    pub loss: Option<LossInjection>,
}

impl SubscriberConfig {
    /// Defaults around the required parts: from sequence 1, requests retried after 200 ms,
    /// 256 fragments per poll, no injected loss.
    pub fn new(
        book: BookConfig,
        session: [u8; SESSION_LEN],
        channels: SubscriberChannels,
    ) -> SubscriberConfig {
        SubscriberConfig {
            book,
            session,
            channels,
            late_join: false,
            request_retry: Duration::from_millis(200),
            fragment_limit: 256,
            loss: None,
        }
    }
}

/// Running figures of a [`FeedSubscriber`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Incremental frames received (after injected loss).
    pub frames_incremental: u64,
    /// Retransmitted frames received.
    pub frames_retransmit: u64,
    /// Snapshot frames used.
    pub frames_snapshot: u64,
    /// Frames dropped by [`LossInjection`].
    pub frames_dropped_injected: u64,
    /// Frames ignored: unparsable or of another session.
    pub frames_ignored: u64,
    /// Frames dropped because an inbox was full.
    pub frames_dropped_inbox: u64,
    /// Frames that arrived beyond a gap and were kept until it was filled.
    pub frames_kept: u64,
    /// Frames beyond a gap that did not fit [`PENDING_BYTES_MAX`] / [`PENDING_FRAMES_MAX`].
    pub frames_not_kept: u64,
    /// Retransmission requests sent.
    pub retransmit_requests: u64,
    /// Snapshot requests sent.
    pub snapshot_requests: u64,
    /// Snapshots loaded.
    pub snapshots_loaded: u64,
    /// Snapshots started over (a frame of it was missed, or it stalled).
    pub snapshots_restarted: u64,
    /// Times the feed could not be followed (a refused message or a checksum mismatch) and a
    /// snapshot was requested.
    pub resyncs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SnapshotState {
    /// Following the feed (or about to, from sequence 1).
    Synchronized,
    /// Needs a snapshot; asked at `requested_at` (or not yet).
    Wanted { requested_at: Option<Instant> },
    /// Loading one: the next frame must start at `index_next`.
    Loading {
        index_next: u64,
        progress_at: Instant,
    },
}

/// A feed subscriber on Aeron. An agent: its owner calls [`FeedSubscriber::poll`] in its duty
/// cycle. Each poll reads the three streams, applies snapshot frames (when loading one), then
/// retransmitted and live frames through the [`Subscriber`] core, and asks the
/// retransmission service for whatever the core reports missing.
pub struct FeedSubscriber {
    core: Subscriber,
    session: [u8; SESSION_LEN],
    incremental: Receiver,
    retransmit: Receiver,
    snapshot: Receiver,
    requests: AeronExclusivePublication,
    state: SnapshotState,
    pending: Pending,
    /// The end of the last retransmission asked for, and when.
    gap_request: Option<(u64, Instant)>,
    request_retry: Duration,
    fragment_limit: usize,
    loss: Option<(u64, u32)>,
    stats: SubscriberStats,
    // Last: the client outlives its publications and subscriptions.
    _aeron: Aeron,
}

impl FeedSubscriber {
    /// Subscribes on the Aeron client `aeron`.
    pub fn new(aeron: &Aeron, config: SubscriberConfig) -> Result<FeedSubscriber, RuntimeError> {
        Self::new_invoking(aeron, config, &super::no_invoke)
    }

    /// As [`FeedSubscriber::new`], calling `invoke` while it waits for the media driver (a
    /// driver that the calling thread runs in its duty cycle).
    pub fn new_invoking(
        aeron: &Aeron,
        config: SubscriberConfig,
        invoke: &dyn Fn(),
    ) -> Result<FeedSubscriber, RuntimeError> {
        let channel = &config.channels.subscription;
        let incremental = Receiver::new(aeron, channel, STREAM_ID_INCREMENTAL, invoke)?;
        let retransmit = Receiver::new(aeron, channel, STREAM_ID_RETRANSMIT, invoke)?;
        let snapshot = Receiver::new(aeron, channel, STREAM_ID_SNAPSHOT, invoke)?;
        let requests = add_publication(aeron, &config.channels.request, STREAM_ID_REQUEST, invoke)?;
        let (core, state) = if config.late_join {
            (
                Subscriber::late_joiner(config.book),
                SnapshotState::Wanted { requested_at: None },
            )
        } else {
            (Subscriber::new(config.book), SnapshotState::Synchronized)
        };
        Ok(FeedSubscriber {
            core,
            session: config.session,
            incremental,
            retransmit,
            snapshot,
            requests,
            state,
            pending: Pending {
                bytes: Vec::with_capacity(PENDING_BYTES_MAX),
                frames: VecDeque::with_capacity(PENDING_FRAMES_MAX),
            },
            gap_request: None,
            request_retry: config.request_retry,
            fragment_limit: config.fragment_limit.max(1),
            loss: config
                .loss
                .map(|loss| (loss.seed | 1, loss.drop_per_million.min(1_000_000))),
            stats: SubscriberStats::default(),
            _aeron: aeron.clone(),
        })
    }

    /// One duty cycle. `on_message` receives every incremental message applied, in feed
    /// sequence order, exactly once (what `md record` writes); snapshot messages are not
    /// passed. Returns the frames handled (0 = idle).
    ///
    /// An error means the feed could not be followed (a message the books refuse, or a book
    /// checksum that differs from the engine's): the books stay as they were before the
    /// failing message, and the subscriber asks for a snapshot on the next polls.
    pub fn poll(
        &mut self,
        now: Instant,
        on_message: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<usize, RuntimeError> {
        let limit = self.fragment_limit;
        let mut work = self.snapshot.poll(limit)?;
        work += self.retransmit.poll(limit)?;
        work += self.incremental.poll(limit)?;
        self.stats.frames_dropped_inbox =
            self.incremental.dropped() + self.retransmit.dropped() + self.snapshot.dropped();

        let mut failure = None;
        let FeedSubscriber {
            core,
            session,
            incremental,
            retransmit,
            snapshot,
            state,
            pending,
            loss,
            stats,
            ..
        } = self;
        snapshot.drain(|bytes| {
            if failure.is_none() {
                if let Err(error) = load_snapshot_frame(core, *session, state, stats, now, bytes) {
                    failure = Some(error);
                }
            }
        });
        retransmit.drain(|bytes| {
            if failure.is_none() {
                stats.frames_retransmit += 1;
                match apply_frame(core, stats, bytes, on_message) {
                    Ok(true) => pending.keep(bytes, stats),
                    Ok(false) => {}
                    Err(error) => failure = Some(error),
                }
            }
        });
        incremental.drain(|bytes| {
            if let Some((rng, drop_per_million)) = loss {
                if (next_random(rng) % 1_000_000) < u64::from(*drop_per_million) {
                    stats.frames_dropped_injected += 1;
                    return;
                }
            }
            if failure.is_none() {
                stats.frames_incremental += 1;
                match apply_frame(core, stats, bytes, on_message) {
                    Ok(true) => pending.keep(bytes, stats),
                    Ok(false) => {}
                    Err(error) => failure = Some(error),
                }
            }
        });
        if failure.is_none() {
            failure = pending.apply(core, stats, on_message).err();
        }
        if let Some(error) = failure {
            self.pending.clear();
            self.stats.resyncs += 1;
            self.state = SnapshotState::Wanted { requested_at: None };
            self.gap_request = None;
            return Err(RuntimeError::Subscriber(error));
        }
        work += self.request(now);
        Ok(work)
    }

    /// Asks for what is missing: a snapshot when one is wanted, else the first part of a gap.
    fn request(&mut self, now: Instant) -> usize {
        match self.state {
            SnapshotState::Wanted { requested_at } => {
                let due = requested_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= self.request_retry);
                if due && self.send(Request::Snapshot) {
                    self.stats.snapshot_requests += 1;
                    self.state = SnapshotState::Wanted {
                        requested_at: Some(now),
                    };
                    return 1;
                }
                0
            }
            SnapshotState::Loading { progress_at, .. } => {
                if now.saturating_duration_since(progress_at) >= self.request_retry {
                    self.stats.snapshots_restarted += 1;
                    self.state = SnapshotState::Wanted { requested_at: None };
                }
                0
            }
            SnapshotState::Synchronized => {
                let (Some(gap), Some(next)) = (self.core.gap(), self.core.sequence_next()) else {
                    self.gap_request = None;
                    return 0;
                };
                // Only the hole before the frames kept: they need not be sent again.
                let gap = match self.pending.first() {
                    Some(first) if first > gap.start => gap.start..first.min(gap.end),
                    _ => gap,
                };
                let due = match self.gap_request {
                    None => true,
                    Some((to, at)) => {
                        next >= to || now.saturating_duration_since(at) >= self.request_retry
                    }
                };
                let Some(request) = Request::for_range(gap).filter(|_| due) else {
                    return 0;
                };
                if !self.send(request) {
                    return 0;
                }
                if let Request::Retransmit { from, count } = request {
                    self.gap_request = Some((from + u64::from(count), now));
                }
                self.stats.retransmit_requests += 1;
                1
            }
        }
    }

    fn send(&mut self, request: Request) -> bool {
        let bytes = request.encode(self.session);
        offer_bounded(&self.requests, &bytes, 0) == Offered::Sent
    }

    /// Asks for a snapshot (to start over from the publisher's books).
    pub fn request_snapshot(&mut self) {
        self.pending.clear();
        self.state = SnapshotState::Wanted { requested_at: None };
    }

    /// The subscriber core.
    pub fn core(&self) -> &Subscriber {
        &self.core
    }

    /// The rebuilt books.
    pub fn book(&self) -> &Book {
        self.core.book()
    }

    /// The next feed sequence to apply (`None` while waiting for a snapshot).
    pub fn sequence_next(&self) -> Option<u64> {
        self.core.sequence_next()
    }

    /// The best `out.len()` levels of one side of an instrument, best first; returns how many.
    pub fn top_levels(&self, stock_locate: u16, side: BuySell, out: &mut [LevelView]) -> usize {
        self.core.book().top_levels(stock_locate, side, out)
    }

    /// Whether the publisher's incremental stream is connected.
    pub fn is_connected(&self) -> bool {
        self.incremental.is_connected()
    }

    /// Running figures.
    pub fn stats(&self) -> SubscriberStats {
        self.stats
    }
}

fn next_random(state: &mut u64) -> u64 {
    // xorshift64*
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Frames that arrived beyond a gap, in arrival order, kept (bounded) until the gap is filled,
/// so that a retransmission covers only what was lost. Their bytes are in one buffer, reset
/// whenever no frame is kept.
struct Pending {
    bytes: Vec<u8>,
    /// (first sequence, end sequence, offset, length) of each frame kept.
    frames: VecDeque<(u64, u64, usize, usize)>,
}

impl Pending {
    fn keep(&mut self, bytes: &[u8], stats: &mut SubscriberStats) {
        let Ok(view) = FrameView::parse(bytes) else {
            return;
        };
        if self.frames.len() >= PENDING_FRAMES_MAX
            || self.bytes.len() + bytes.len() > PENDING_BYTES_MAX
        {
            stats.frames_not_kept += 1;
            return;
        }
        stats.frames_kept += 1;
        self.frames.push_back((
            view.sequence_first,
            view.sequence_end(),
            self.bytes.len(),
            bytes.len(),
        ));
        self.bytes.extend_from_slice(bytes);
    }

    /// The first sequence of the oldest frame kept.
    fn first(&self) -> Option<u64> {
        self.frames.front().map(|&(first, ..)| first)
    }

    /// Applies the frames kept that now continue the feed; forgets those already applied.
    fn apply(
        &mut self,
        core: &mut Subscriber,
        stats: &mut SubscriberStats,
        on_message: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), SubscriberError> {
        while let Some(&(first, end, offset, len)) = self.frames.front() {
            let Some(next) = core.sequence_next() else {
                self.clear();
                return Ok(());
            };
            if first > next {
                break;
            }
            if end > next {
                let gap = apply_frame(core, stats, &self.bytes[offset..offset + len], on_message)?;
                debug_assert!(!gap, "a frame that starts at or before the next sequence");
            }
            self.frames.pop_front();
        }
        if self.frames.is_empty() {
            self.bytes.clear();
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.bytes.clear();
    }
}

/// Applies one live or retransmitted frame and passes the messages it applied to `on_message`.
/// Frames that do not parse, or of another session, are counted and ignored. Returns whether
/// the frame starts beyond a gap (nothing applied: keep it for later).
fn apply_frame(
    core: &mut Subscriber,
    stats: &mut SubscriberStats,
    bytes: &[u8],
    on_message: &mut dyn FnMut(u64, &[u8]),
) -> Result<bool, SubscriberError> {
    let before = core.sequence_next();
    match core.on_frame(bytes) {
        Ok(FrameOutcome::Gap { .. }) => return Ok(true),
        Ok(_) => {}
        Err(SubscriberError::Frame(_) | SubscriberError::Session { .. }) => {
            stats.frames_ignored += 1;
            return Ok(false);
        }
        Err(error) => return Err(error),
    }
    let (Some(before), Some(after)) = (before, core.sequence_next()) else {
        return Ok(false);
    };
    if after > before {
        // The frame parsed in on_frame.
        if let Ok(view) = FrameView::parse(bytes) {
            for (sequence, message) in view.messages() {
                if (before..after).contains(&sequence) {
                    on_message(sequence, message);
                }
            }
        }
    }
    Ok(false)
}

/// Feeds one snapshot-stream frame to the core when a snapshot is wanted or loading. A frame
/// numbered 1 starts a snapshot; a missed frame starts over.
fn load_snapshot_frame(
    core: &mut Subscriber,
    session: [u8; SESSION_LEN],
    state: &mut SnapshotState,
    stats: &mut SubscriberStats,
    now: Instant,
    bytes: &[u8],
) -> Result<(), SubscriberError> {
    if *state == SnapshotState::Synchronized {
        return Ok(());
    }
    let view = match FrameView::parse(bytes) {
        Ok(view) if view.session == session && !view.is_empty() => view,
        _ => {
            stats.frames_ignored += 1;
            return Ok(());
        }
    };
    if view.sequence_first == 1 {
        core.begin_snapshot();
        *state = SnapshotState::Loading {
            index_next: 1,
            progress_at: now,
        };
    }
    let SnapshotState::Loading { index_next, .. } = *state else {
        return Ok(());
    };
    if view.sequence_first != index_next {
        stats.snapshots_restarted += 1;
        *state = SnapshotState::Wanted { requested_at: None };
        return Ok(());
    }
    stats.frames_snapshot += 1;
    for (_, message) in view.messages() {
        match core.on_snapshot_message(message) {
            Ok(None) => {}
            Ok(Some(_sequence)) => {
                stats.snapshots_loaded += 1;
                *state = SnapshotState::Synchronized;
                return Ok(());
            }
            Err(error) => {
                *state = SnapshotState::Wanted { requested_at: None };
                return Err(error);
            }
        }
    }
    *state = SnapshotState::Loading {
        index_next: view.sequence_end(),
        progress_at: now,
    };
    Ok(())
}
