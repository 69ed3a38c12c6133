//! The Aeron transport of replication messages: one exclusive publication per peer (UDP to the
//! peer's replication endpoint) and one subscription on this node's own endpoint. Received messages
//! are copied out of Aeron's callback into a bounded inbox and handled after the poll returns (poll,
//! batch, then act). A message that meets back-pressure is counted and dropped, never waited for: the
//! replication protocol resends what is not acknowledged.

use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

use rusteron_client::{
    Aeron, AeronContext, AeronExclusivePublication, AeronFragmentAssembler,
    AeronFragmentHandlerCallback, AeronHeader, AeronSubscription, Handler, Handlers, IntoCString,
};

use crate::protocol::{Message, NodeId};
use crate::replica::Effects;

/// Bytes of received messages an inbox holds between two drains; beyond it messages are dropped
/// (and counted), as a congested network would.
pub const INBOX_BYTES_MAX: usize = 16 << 20;
/// Most messages an inbox holds between two drains.
pub const INBOX_MESSAGES_MAX: usize = 1 << 16;
/// Aeron stream id of replication traffic.
pub const REPLICATION_STREAM_ID: i32 = 1001;
/// How long connecting publications and subscriptions may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the Aeron transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("aeron: {0}")]
    Aeron(String),
}

fn aeron_error(e: impl std::fmt::Debug) -> TransportError {
    TransportError::Aeron(format!("{e:?}"))
}

/// The UDP channel of an endpoint (`host:port`). The MTU is raised so a batch of records travels
/// in few datagrams, and the receiver window and socket buffers to 2 MiB so a leader can have
/// several full Append messages in flight (Aeron's default window is 128 KiB; the kernel caps the
/// buffers at net.core.rmem_max / wmem_max).
pub fn channel(endpoint: &str) -> CString {
    format!("aeron:udp?endpoint={endpoint}|mtu=8192|rcv-wnd=2m|so-rcvbuf=2m|so-sndbuf=2m")
        .into_c_string()
}

/// Connects an Aeron client to the driver in `dir` (which may be an invoked driver of the calling
/// thread: connecting only maps its files and checks its heartbeat).
pub fn connect(dir: &Path) -> Result<Aeron, TransportError> {
    let context = AeronContext::new().map_err(aeron_error)?;
    context
        .set_dir(&dir.to_string_lossy().to_string().into_c_string())
        .map_err(aeron_error)?;
    let aeron = Aeron::new(&context).map_err(aeron_error)?;
    aeron.start().map_err(aeron_error)?;
    Ok(aeron)
}

/// Waits for an asynchronously added publication or subscription, calling `invoke` (an invoked
/// media driver's duty cycle, or nothing) between polls: a thread that runs its own driver must
/// keep it running while it waits for it.
pub fn await_added<T>(
    mut poll: impl FnMut() -> Result<Option<T>, rusteron_client::AeronCError>,
    invoke: &dyn Fn(),
) -> Result<T, TransportError> {
    let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        if let Some(resource) = poll().map_err(aeron_error)? {
            return Ok(resource);
        }
        if std::time::Instant::now() > deadline {
            return Err(TransportError::Aeron(format!(
                "the media driver did not answer within {CONNECT_TIMEOUT:?}"
            )));
        }
        invoke();
        std::thread::yield_now();
    }
}

/// For callers whose driver has its own thread.
pub fn no_invoke() {}

/// Received messages, copied out of Aeron's buffers.
#[derive(Debug, Default)]
pub struct Inbox {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    pub dropped: u64,
}

impl AeronFragmentHandlerCallback for Inbox {
    fn handle_aeron_fragment_handler(&mut self, buffer: &[u8], _header: AeronHeader) {
        if self.bytes.len() + buffer.len() > INBOX_BYTES_MAX
            || self.ends.len() >= INBOX_MESSAGES_MAX
        {
            self.dropped += 1;
            return;
        }
        self.bytes.extend_from_slice(buffer);
        self.ends.push(self.bytes.len());
    }
}

/// The receiving half: this node's subscription.
pub struct AeronReceiver {
    subscription: AeronSubscription,
    assembler: Handler<AeronFragmentAssembler>,
    inbox: Handler<Inbox>,
}

impl AeronReceiver {
    pub fn new(aeron: &Aeron, endpoint: &str, stream_id: i32) -> Result<Self, TransportError> {
        Self::new_invoking(aeron, endpoint, stream_id, &no_invoke)
    }

    /// As [`AeronReceiver::new`], running `invoke` while it waits for the driver.
    pub fn new_invoking(
        aeron: &Aeron,
        endpoint: &str,
        stream_id: i32,
        invoke: &dyn Fn(),
    ) -> Result<Self, TransportError> {
        let adding = aeron
            .async_add_subscription(
                &channel(endpoint),
                stream_id,
                Handlers::NONE,
                Handlers::NONE,
            )
            .map_err(aeron_error)?;
        let subscription = await_added(|| adding.poll(), invoke)?;
        let inbox = Inbox {
            bytes: Vec::with_capacity(1 << 20),
            ends: Vec::with_capacity(1024),
            dropped: 0,
        };
        let (assembler, inbox) = Handler::with_fragment_assembler(inbox).map_err(aeron_error)?;
        Ok(AeronReceiver {
            subscription,
            assembler,
            inbox,
        })
    }

    /// Polls up to `fragment_limit` fragments into the inbox; returns how many were read.
    pub fn poll(&mut self, fragment_limit: usize) -> Result<usize, TransportError> {
        let fragments = self
            .subscription
            .poll(Some(&self.assembler), fragment_limit)
            .map_err(aeron_error)?;
        Ok(fragments.max(0) as usize)
    }

    /// Hands every message in the inbox to `handle`, in arrival order, and empties it.
    pub fn drain(&mut self, mut handle: impl FnMut(&[u8])) -> usize {
        // SAFETY: the inbox is only written by the fragment handler inside `poll`, on this thread;
        // `poll` has returned, so no other reference to it is alive.
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

    /// Messages dropped because the inbox was full.
    pub fn dropped(&self) -> u64 {
        self.inbox.dropped
    }
}

/// Counters of the sending half.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    pub sent: u64,
    pub back_pressured: u64,
    pub not_connected: u64,
    pub failed: u64,
}

/// The sending half: a publication to every peer.
pub struct AeronSender {
    publications: Vec<Option<AeronExclusivePublication>>,
    buffer: Vec<u8>,
    pub stats: SenderStats,
}

impl AeronSender {
    /// Publications to every member but `node_id`, at `endpoints[member]`.
    pub fn new(
        aeron: &Aeron,
        node_id: NodeId,
        endpoints: &[String],
        stream_id: i32,
    ) -> Result<Self, TransportError> {
        Self::new_invoking(aeron, node_id, endpoints, stream_id, &no_invoke)
    }

    /// As [`AeronSender::new`], running `invoke` while it waits for the driver.
    pub fn new_invoking(
        aeron: &Aeron,
        node_id: NodeId,
        endpoints: &[String],
        stream_id: i32,
        invoke: &dyn Fn(),
    ) -> Result<Self, TransportError> {
        let mut publications = Vec::with_capacity(endpoints.len());
        for (member, endpoint) in endpoints.iter().enumerate() {
            if member == node_id as usize {
                publications.push(None);
                continue;
            }
            let adding = aeron
                .async_add_exclusive_publication(&channel(endpoint), stream_id)
                .map_err(aeron_error)?;
            publications.push(Some(await_added(|| adding.poll(), invoke)?));
        }
        Ok(AeronSender {
            publications,
            buffer: Vec::with_capacity(crate::protocol::APPEND_FRAMES_LEN_MAX + 64),
            stats: SenderStats::default(),
        })
    }

    /// Whether the publication to `member` has a connected subscriber.
    pub fn is_connected(&self, member: NodeId) -> bool {
        self.publications
            .get(member as usize)
            .and_then(|p| p.as_ref())
            .is_some_and(|p| p.is_connected())
    }
}

impl Effects for AeronSender {
    fn send(&mut self, to: NodeId, message: &Message<'_>) -> bool {
        let Some(Some(publication)) = self.publications.get(to as usize) else {
            self.stats.failed += 1;
            return false;
        };
        message.encode(&mut self.buffer);
        match publication.offer(&self.buffer) {
            Ok(_) => {
                self.stats.sent += 1;
                true
            }
            Err(_) if !publication.is_connected() => {
                self.stats.not_connected += 1;
                false
            }
            Err(e) if e.is_retryable() => {
                self.stats.back_pressured += 1;
                false
            }
            Err(_) => {
                self.stats.failed += 1;
                false
            }
        }
    }
    fn committed(&mut self, _position: u64) {}
}
