//! The feed's Aeron runtime: the [`FeedPublisher`] (a matcher replica, the encoder, the packer, a
//! feed journal, the incremental publication and the retransmission and snapshot service) and
//! the [`FeedSubscriber`] (subscriptions, gap recovery, late join, checksum verification).
//!
//! This module owns the sockets, files and clocks that the sans-IO cores of this crate never
//! touch; the cores decide, this module carries. Both sides are agents: they do nothing on
//! their own thread, the owner calls `do_work` / `poll` in its duty cycle with an idle strategy
//! ([`IdleBackoff`]).
//!
//! Channels and streams (see `docs/MARKETDATA.md`): one Aeron channel carries three streams
//! from the publisher, [`STREAM_ID_INCREMENTAL`], [`STREAM_ID_RETRANSMIT`] and
//! [`STREAM_ID_SNAPSHOT`]; requests go to the service on [`STREAM_ID_REQUEST`] of its own
//! channel. The publication channel is multi-destination (MDC with dynamic control: every
//! subscriber that subscribes with the control address receives, over unicast UDP) or
//! multicast, by configuration.

mod feed_subscriber;
mod publisher;

pub use feed_subscriber::{
    FeedSubscriber, LossInjection, SubscriberConfig, SubscriberStats, PENDING_BYTES_MAX,
    PENDING_FRAMES_MAX,
};
pub use publisher::{
    run_publisher, CommittedCommand, CommittedSource, FeedPublisher, PublisherConfig,
    PublisherStats, COMMANDS_PER_CYCLE_MAX, EVENTS_PER_COMMAND_EXPECTED, RECORD_TYPE_FEED_FRAME,
    REQUESTS_PENDING_MAX, REQUEST_FRAGMENTS_PER_CYCLE_MAX, SERVICE_FRAMES_PER_CYCLE_MAX,
};

use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

use rusteron_client::{
    Aeron, AeronCError, AeronExclusivePublication, AeronFragmentAssembler,
    AeronFragmentHandlerCallback, AeronHeader, AeronOfferError, AeronSubscription, Handler,
    Handlers, IntoCString,
};

/// Stream of the live incremental feed (MoldUDP64 frames).
pub const STREAM_ID_INCREMENTAL: i32 = 2001;
/// Stream of retransmitted frames (the same frames, served from the feed journal).
pub const STREAM_ID_RETRANSMIT: i32 = 2002;
/// Stream of snapshots (frames numbered in the snapshot's own sequence space).
pub const STREAM_ID_SNAPSHOT: i32 = 2003;
/// Stream of requests to the retransmission service (MoldUDP64 request packets).
pub const STREAM_ID_REQUEST: i32 = 2004;

/// Default control endpoint of the publisher's multi-destination channel (`md` commands).
pub const DEFAULT_CONTROL: &str = "127.0.0.1:20300";
/// Default request endpoint of the retransmission service (`md` commands).
pub const DEFAULT_REQUEST: &str = "127.0.0.1:20301";
/// Default interval of the feed's Book Checksums, in log sequences.
pub const DEFAULT_CHECKSUM_INTERVAL: u64 = 1_000;
/// Default MoldUDP64 session name.
pub const DEFAULT_SESSION: [u8; crate::frame::SESSION_LEN] = *b"EXCHANGE  ";

/// Bytes of received frames an inbox holds between two drains; beyond it frames are dropped
/// (and counted), as a congested network would: the feed's gap recovery fetches them again.
pub const INBOX_BYTES_MAX: usize = 4 << 20;
/// Most frames an inbox holds between two drains.
pub const INBOX_FRAMES_MAX: usize = 4096;
/// How long adding a publication or subscription may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Failures of the runtime (operating errors: a driver that does not answer, a full disk).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Aeron refused or failed.
    #[error("aeron: {0}")]
    Aeron(String),
    /// The embedded media driver did not start.
    #[error(transparent)]
    Driver(#[from] sequencer::driver::DriverError),
    /// The feed journal failed.
    #[error("feed journal: {0}")]
    Journal(#[from] journal::JournalError),
    /// The encoder refused the committed events (a broken log or a misconfigured replica).
    #[error("feed encoder: {0}")]
    Encoder(#[from] crate::FeedError),
    /// The subscriber cannot follow the feed (a refused message or a checksum mismatch); it
    /// asks for a snapshot on the next polls.
    #[error("feed: {0}")]
    Subscriber(#[from] crate::SubscriberError),
    /// The source of committed commands failed.
    #[error("committed source: {0}")]
    Source(String),
    /// A configuration value out of range.
    #[error("configuration: {0}")]
    Config(String),
}

pub(crate) fn aeron_error(error: impl std::fmt::Debug) -> RuntimeError {
    RuntimeError::Aeron(format!("{error:?}"))
}

/// The channels of a feed, as the publisher sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublisherChannels {
    /// Aeron channel of the incremental, retransmit and snapshot publications.
    pub publication: String,
    /// Aeron channel the retransmission service subscribes to for requests.
    pub request: String,
}

/// The channels of a feed, as a subscriber sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberChannels {
    /// Aeron channel of the incremental, retransmit and snapshot subscriptions.
    pub subscription: String,
    /// Aeron channel of the request publication (the service's request endpoint).
    pub request: String,
}

/// Maximum transmission unit of the feed's channels: a typical Ethernet-safe UDP datagram.
pub const MTU: usize = 1408;
/// Aeron's data frame header.
pub const AERON_DATA_HEADER_LEN: usize = 32;
/// Frame length that fits one Aeron fragment at [`MTU`] (no reassembly on the hot path).
pub const FRAME_LEN_DEFAULT: usize = MTU - AERON_DATA_HEADER_LEN;
const _: () = assert!(FRAME_LEN_DEFAULT >= crate::frame::FRAME_LEN_MIN);
const _: () = assert!(FRAME_LEN_DEFAULT <= crate::frame::FRAME_LEN_MAX);

impl PublisherChannels {
    /// Multi-destination cast over unicast UDP: subscribers join by subscribing with
    /// `control` (`host:port` of the publisher's control endpoint); requests arrive at
    /// `request` (`host:port`).
    pub fn mdc(control: &str, request: &str) -> PublisherChannels {
        PublisherChannels {
            publication: format!("aeron:udp?control={control}|control-mode=dynamic|mtu={MTU}"),
            request: format!("aeron:udp?endpoint={request}"),
        }
    }

    /// UDP multicast to `group` (`address:port`) through the interface `interface`.
    pub fn multicast(group: &str, interface: &str, request: &str) -> PublisherChannels {
        PublisherChannels {
            publication: format!("aeron:udp?endpoint={group}|interface={interface}|mtu={MTU}"),
            request: format!("aeron:udp?endpoint={request}"),
        }
    }
}

impl SubscriberChannels {
    /// The subscriber's side of [`PublisherChannels::mdc`]: it receives at `endpoint`
    /// (`host:port`, its own) and joins through the publisher's `control`.
    pub fn mdc(endpoint: &str, control: &str, request: &str) -> SubscriberChannels {
        SubscriberChannels {
            subscription: format!("aeron:udp?endpoint={endpoint}|control={control}"),
            request: format!("aeron:udp?endpoint={request}"),
        }
    }

    /// The subscriber's side of [`PublisherChannels::multicast`].
    pub fn multicast(group: &str, interface: &str, request: &str) -> SubscriberChannels {
        SubscriberChannels {
            subscription: format!("aeron:udp?endpoint={group}|interface={interface}"),
            request: format!("aeron:udp?endpoint={request}"),
        }
    }
}

/// Connects an Aeron client to the media driver in `dir`.
pub fn connect(dir: &Path) -> Result<Aeron, RuntimeError> {
    sequencer::transport::connect(dir).map_err(aeron_error)
}

fn c_string(channel: &str) -> CString {
    channel.to_string().into_c_string()
}

/// Adds an exclusive publication and waits (bounded) until the driver has it, calling
/// `invoke` meanwhile (the duty cycle of a media driver that the calling thread runs, see
/// `EmbeddedDriver::launch_invoked`; or nothing).
pub fn add_publication(
    aeron: &Aeron,
    channel: &str,
    stream_id: i32,
    invoke: &dyn Fn(),
) -> Result<AeronExclusivePublication, RuntimeError> {
    let adding = aeron
        .async_add_exclusive_publication(&c_string(channel), stream_id)
        .map_err(aeron_error)?;
    await_added(|| adding.poll(), invoke)
}

/// Adds a subscription and waits (bounded) until the driver has it, calling `invoke` meanwhile.
pub fn add_subscription(
    aeron: &Aeron,
    channel: &str,
    stream_id: i32,
    invoke: &dyn Fn(),
) -> Result<AeronSubscription, RuntimeError> {
    let adding = aeron
        .async_add_subscription(
            &c_string(channel),
            stream_id,
            Handlers::NONE,
            Handlers::NONE,
        )
        .map_err(aeron_error)?;
    await_added(|| adding.poll(), invoke)
}

/// For callers whose media driver has its own thread (or is another process).
pub use sequencer::transport::no_invoke;

/// Waits (bounded) for an added publication or subscription: the sequencer's wait, its error as
/// ours.
fn await_added<T>(
    poll: impl FnMut() -> Result<Option<T>, AeronCError>,
    invoke: &dyn Fn(),
) -> Result<T, RuntimeError> {
    sequencer::transport::await_added(poll, invoke).map_err(
        |sequencer::transport::TransportError::Aeron(message)| RuntimeError::Aeron(message),
    )
}

/// What became of an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offered {
    Sent,
    /// Still back-pressured after the bounded retries.
    BackPressured,
    /// No subscriber.
    NotConnected,
    /// Closed or failed: the publication is unusable.
    Failed,
}

/// Offers `bytes`, retrying back-pressure and admin actions at most `retries` times (yielding
/// the CPU between tries, so the driver can drain): never an unbounded wait.
pub(crate) fn offer_bounded(
    publication: &AeronExclusivePublication,
    bytes: &[u8],
    retries: u32,
) -> Offered {
    let mut tries = 0;
    loop {
        match publication.offer(bytes) {
            Ok(_) => return Offered::Sent,
            Err(AeronOfferError::NotConnected) => return Offered::NotConnected,
            Err(AeronOfferError::BackPressured | AeronOfferError::AdminAction) => {
                if tries >= retries {
                    return Offered::BackPressured;
                }
                tries += 1;
                std::thread::yield_now();
            }
            Err(_) => return Offered::Failed,
        }
    }
}

/// Received frames, copied out of Aeron's buffers by the fragment handler and handled after
/// the poll returns (poll, batch, then act).
#[derive(Debug, Default)]
struct Inbox {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    dropped: u64,
}

impl AeronFragmentHandlerCallback for Inbox {
    fn handle_aeron_fragment_handler(&mut self, buffer: &[u8], _header: AeronHeader) {
        if self.bytes.len() + buffer.len() > INBOX_BYTES_MAX || self.ends.len() >= INBOX_FRAMES_MAX
        {
            self.dropped += 1;
            return;
        }
        self.bytes.extend_from_slice(buffer);
        self.ends.push(self.bytes.len());
    }
}

/// A subscription with its fragment assembler and inbox.
pub(crate) struct Receiver {
    subscription: AeronSubscription,
    assembler: Handler<AeronFragmentAssembler>,
    inbox: Handler<Inbox>,
}

impl Receiver {
    pub(crate) fn new(
        aeron: &Aeron,
        channel: &str,
        stream_id: i32,
        invoke: &dyn Fn(),
    ) -> Result<Self, RuntimeError> {
        let subscription = add_subscription(aeron, channel, stream_id, invoke)?;
        let inbox = Inbox {
            bytes: Vec::with_capacity(INBOX_BYTES_MAX),
            ends: Vec::with_capacity(INBOX_FRAMES_MAX),
            dropped: 0,
        };
        let (assembler, inbox) = Handler::with_fragment_assembler(inbox).map_err(aeron_error)?;
        Ok(Receiver {
            subscription,
            assembler,
            inbox,
        })
    }

    /// Polls up to `fragment_limit` fragments into the inbox; returns how many were read.
    pub(crate) fn poll(&mut self, fragment_limit: usize) -> Result<usize, RuntimeError> {
        let fragments = self
            .subscription
            .poll(Some(&self.assembler), fragment_limit)
            .map_err(aeron_error)?;
        Ok(fragments.max(0) as usize)
    }

    /// Whether an image (a publisher) is connected.
    pub(crate) fn is_connected(&self) -> bool {
        self.subscription.is_connected()
    }

    /// Hands every frame in the inbox to `handle`, in arrival order, and empties it.
    #[allow(unsafe_code)]
    pub(crate) fn drain(&mut self, mut handle: impl FnMut(&[u8])) -> usize {
        // SAFETY: the inbox is only written by the fragment handler inside `poll`, on this
        // thread; `poll` has returned, so no other reference to it is alive.
        let inbox = unsafe { self.inbox.get_mut() };
        let mut start = 0;
        for &end in &inbox.ends {
            handle(&inbox.bytes[start..end]);
            start = end;
        }
        let count = inbox.ends.len();
        inbox.bytes.clear();
        inbox.ends.clear();
        count
    }

    /// Frames dropped because the inbox was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.inbox.dropped
    }
}

/// An idle strategy for a duty cycle on a shared machine: spin a little, then yield, then park
/// for growing intervals up to a bound. Work resets it.
#[derive(Clone, Copy, Debug)]
pub struct IdleBackoff {
    idle_cycles: u32,
    spins_max: u32,
    yields_max: u32,
    park_ns_min: u64,
    park_ns_max: u64,
    park_ns: u64,
}

impl IdleBackoff {
    /// Spins `spins_max` times, yields `yields_max` times, then parks from `park_ns_min` up to
    /// `park_ns_max`, doubling.
    pub fn new(spins_max: u32, yields_max: u32, park_ns_min: u64, park_ns_max: u64) -> Self {
        assert!(park_ns_min <= park_ns_max && park_ns_min > 0);
        IdleBackoff {
            idle_cycles: 0,
            spins_max,
            yields_max,
            park_ns_min,
            park_ns_max,
            park_ns: park_ns_min,
        }
    }

    /// Idles after a cycle that did `work_count` units of work.
    pub fn idle(&mut self, work_count: usize) {
        if work_count > 0 {
            self.idle_cycles = 0;
            self.park_ns = self.park_ns_min;
            return;
        }
        self.idle_cycles = self.idle_cycles.saturating_add(1);
        if self.idle_cycles <= self.spins_max {
            std::hint::spin_loop();
        } else if self.idle_cycles <= self.spins_max + self.yields_max {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_nanos(self.park_ns));
            self.park_ns = (self.park_ns * 2).min(self.park_ns_max);
        }
    }
}

impl Default for IdleBackoff {
    /// 10 spins, 20 yields, then parks of 1 µs to 100 µs (Aeron's backoff defaults, with a
    /// shorter longest park).
    fn default() -> Self {
        IdleBackoff::new(10, 20, 1_000, 100_000)
    }
}
