//! The FIX session layer as a sans-IO state machine: no socket, no clock (`now_ns` is passed in),
//! no thread. One [`Session`] per configured SenderCompID/TargetCompID pair; it lives across
//! connections, its sequence numbers and sent messages in a [`MessageStore`].
//!
//! The session writes what it sends into an [`Outbound`] byte buffer that the runtime drains,
//! and tells its caller what to do with each inbound message through [`Inbound`].

use crate::codec::{Message, Writer, MESSAGE_LENGTH_MAX};
use crate::store::{MessageStore, StoreError};
use crate::tags::{self, msg_type, session_reject};

/// Longest SenderCompID/TargetCompID accepted in configuration.
pub const COMP_ID_LENGTH_MAX: usize = 32;
/// Longest password accepted in configuration.
pub const PASSWORD_LENGTH_MAX: usize = 64;
/// Largest HeartBtInt any session may be configured to accept, in seconds.
pub const HEARTBEAT_INTERVAL_S_LIMIT: u32 = 3600;
/// Largest throttle any session may be configured with, in messages per second.
pub const THROTTLE_MESSAGES_PER_SECOND_LIMIT: u32 = 1_000_000;
/// Bytes of unsent output a connection may hold; a client that reads slower than this is
/// disconnected (its messages stay in the store for a resend after it reconnects).
pub const OUTBOUND_BYTES_MAX: usize = 1 << 20;
/// How long we wait for the counterparty's Logout after sending ours.
pub const LOGOUT_TIMEOUT_NS: u64 = 2_000_000_000;
/// Silence of this many hundredths of HeartBtInt after the last message makes us send a
/// TestRequest (FIX suggests "HeartBtInt plus a reasonable transmission time").
pub const TEST_REQUEST_DELAY_PERCENT: u64 = 120;
/// Without an answer within this many hundredths of HeartBtInt after the TestRequest, the
/// connection is considered lost.
pub const TEST_REQUEST_TIMEOUT_PERCENT: u64 = 100;
/// Text of a Reject or Logout we write, at most.
pub const TEXT_LENGTH_MAX: usize = 160;
/// FIX 4.2 used 999999 as "infinity" in ResendRequest EndSeqNo; 4.4 uses 0. Both are accepted.
const END_SEQ_NO_INFINITY_42: u64 = 999_999;

const NS_PER_S: u64 = 1_000_000_000;

/// Protocol version of a session (BeginString).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixVersion {
    /// `FIX.4.2`.
    Fix42,
    /// `FIX.4.4`.
    Fix44,
}

impl FixVersion {
    /// The BeginString value.
    pub fn begin_string(self) -> &'static [u8] {
        match self {
            FixVersion::Fix42 => b"FIX.4.2",
            FixVersion::Fix44 => b"FIX.4.4",
        }
    }

    /// The version a BeginString names.
    pub fn from_begin_string(value: &[u8]) -> Option<FixVersion> {
        match value {
            b"FIX.4.2" => Some(FixVersion::Fix42),
            b"FIX.4.4" => Some(FixVersion::Fix44),
            _ => None,
        }
    }
}

/// Static configuration of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// BeginString the counterparty must use.
    pub version: FixVersion,
    /// Our CompID (the counterparty's TargetCompID).
    pub sender_comp_id: String,
    /// The counterparty's CompID (its SenderCompID).
    pub target_comp_id: String,
    /// If set, Logon must carry this Password (554).
    pub password: Option<String>,
    /// Smallest HeartBtInt (108) accepted at logon, in seconds (at least 1).
    pub heartbeat_interval_s_min: u32,
    /// Largest HeartBtInt accepted, in seconds (at most [`HEARTBEAT_INTERVAL_S_LIMIT`]).
    pub heartbeat_interval_s_max: u32,
    /// Application messages accepted per second; the excess is rejected, never queued.
    pub throttle_messages_per_second: u32,
    /// Cancel every resting order of the session's account when it disconnects or logs out.
    pub cancel_on_disconnect: bool,
    /// Matcher account id of the session's orders (unique across sessions, non-zero).
    pub account_id: u32,
    /// FIX Account (1) value: if set, orders may carry it (and no other); echoed on reports.
    pub account: Option<String>,
}

/// Why a configuration is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field is out of range or malformed.
    #[error("session {session}: invalid {field}")]
    Invalid {
        /// Index of the session in the configuration.
        session: usize,
        /// Name of the field.
        field: &'static str,
    },
    /// Two sessions share CompIDs or an account.
    #[error("session {session}: duplicate {field}")]
    Duplicate {
        /// Index of the later session.
        session: usize,
        /// `comp ids` or `account_id`.
        field: &'static str,
    },
    /// A gateway-level setting is out of range.
    #[error("invalid gateway setting {field}")]
    Gateway {
        /// Name of the setting.
        field: &'static str,
    },
}

fn valid_text(value: &str, length_max: usize) -> bool {
    !value.is_empty()
        && value.len() <= length_max
        && value.bytes().all(|b| (0x21..0x7f).contains(&b))
}

impl SessionConfig {
    /// Checks ranges; `index` names the session in errors.
    pub fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let invalid = |field| {
            Err(ConfigError::Invalid {
                session: index,
                field,
            })
        };
        if !valid_text(&self.sender_comp_id, COMP_ID_LENGTH_MAX) {
            return invalid("sender_comp_id");
        }
        if !valid_text(&self.target_comp_id, COMP_ID_LENGTH_MAX) {
            return invalid("target_comp_id");
        }
        if let Some(password) = &self.password {
            if !valid_text(password, PASSWORD_LENGTH_MAX) {
                return invalid("password");
            }
        }
        if self.heartbeat_interval_s_min == 0
            || self.heartbeat_interval_s_min > self.heartbeat_interval_s_max
            || self.heartbeat_interval_s_max > HEARTBEAT_INTERVAL_S_LIMIT
        {
            return invalid("heartbeat_interval_s");
        }
        if self.throttle_messages_per_second == 0
            || self.throttle_messages_per_second > THROTTLE_MESSAGES_PER_SECOND_LIMIT
        {
            return invalid("throttle_messages_per_second");
        }
        if self.account_id == 0 {
            return invalid("account_id");
        }
        if let Some(account) = &self.account {
            if !valid_text(account, COMP_ID_LENGTH_MAX) {
                return invalid("account");
            }
        }
        Ok(())
    }
}

/// Bytes waiting to be written to one connection, bounded by [`OUTBOUND_BYTES_MAX`].
#[derive(Debug)]
pub struct Outbound {
    bytes: Vec<u8>,
}

impl Default for Outbound {
    fn default() -> Outbound {
        Outbound::new()
    }
}

impl Outbound {
    /// An empty buffer with its full capacity allocated.
    pub fn new() -> Outbound {
        Outbound {
            bytes: Vec::with_capacity(OUTBOUND_BYTES_MAX),
        }
    }

    /// Appends a message if it fits; `false` (and nothing appended) if not.
    pub fn push(&mut self, message: &[u8]) -> bool {
        if self.bytes.len() + message.len() > OUTBOUND_BYTES_MAX {
            return false;
        }
        self.bytes.extend_from_slice(message);
        true
    }

    /// Bytes not yet handed to the transport.
    pub fn pending(&self) -> &[u8] {
        &self.bytes
    }

    /// The transport took the first `count` bytes.
    pub fn consume(&mut self, count: usize) {
        let count = count.min(self.bytes.len());
        self.bytes.drain(..count);
    }

    /// Free space in bytes.
    pub fn space(&self) -> usize {
        OUTBOUND_BYTES_MAX - self.bytes.len()
    }

    /// Drops everything (the connection is gone).
    pub fn clear(&mut self) {
        self.bytes.clear();
    }
}

/// Why a logon was refused. The caller answers with a Logout carrying [`Refusal::text`] and
/// closes the connection; the session's sequence numbers are not touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No configured session has these CompIDs (and BeginString).
    UnknownSession,
    /// Password (554) missing or wrong.
    WrongPassword,
    /// The session is logged on over another connection.
    AlreadyLoggedOn,
    /// HeartBtInt (108) missing or outside the configured bounds.
    HeartbeatInterval,
    /// EncryptMethod (98) missing or not 0.
    EncryptMethod,
    /// MsgSeqNum (34) missing or malformed.
    MsgSeqNumMissing,
    /// MsgSeqNum lower than expected without ResetSeqNumFlag.
    MsgSeqNumTooLow {
        /// What we expected.
        expected: u64,
        /// What came.
        received: u64,
    },
    /// ResetSeqNumFlag=Y with MsgSeqNum other than 1.
    ResetNotOne,
    /// The first message on a connection was not a Logon.
    NotLogon,
    /// The session store failed.
    Store,
}

impl Refusal {
    /// Text (58) of the Logout answering the refusal.
    pub fn text(&self, out: &mut TextBuffer) {
        use core::fmt::Write;
        let _ = match self {
            Refusal::UnknownSession => write!(out, "unknown session (CompIDs or BeginString)"),
            Refusal::WrongPassword => write!(out, "invalid password"),
            Refusal::AlreadyLoggedOn => write!(out, "session already logged on"),
            Refusal::HeartbeatInterval => write!(out, "HeartBtInt(108) missing or out of range"),
            Refusal::EncryptMethod => write!(out, "EncryptMethod(98) must be 0"),
            Refusal::MsgSeqNumMissing => write!(out, "MsgSeqNum(34) missing or invalid"),
            Refusal::MsgSeqNumTooLow { expected, received } => write!(
                out,
                "MsgSeqNum too low, expecting {expected} but received {received}"
            ),
            Refusal::ResetNotOne => write!(out, "ResetSeqNumFlag=Y requires MsgSeqNum 1"),
            Refusal::NotLogon => write!(out, "first message must be Logon"),
            Refusal::Store => write!(out, "session store unavailable"),
        };
    }
}

/// A fixed-capacity text buffer for Text (58) values (`core::fmt::Write`, truncating).
#[derive(Clone, Copy)]
pub struct TextBuffer {
    bytes: [u8; TEXT_LENGTH_MAX],
    length: usize,
}

impl Default for TextBuffer {
    fn default() -> TextBuffer {
        TextBuffer {
            bytes: [0; TEXT_LENGTH_MAX],
            length: 0,
        }
    }
}

impl TextBuffer {
    /// The text written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }
}

impl core::fmt::Write for TextBuffer {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for byte in text.bytes() {
            if self.length == TEXT_LENGTH_MAX {
                break;
            }
            // Never an SOH or a non-ASCII byte in a FIX string field.
            self.bytes[self.length] = if (0x20..0x7f).contains(&byte) {
                byte
            } else {
                b'?'
            };
            self.length += 1;
        }
        Ok(())
    }
}

/// Builds a [`TextBuffer`] with `format_args!` syntax.
#[macro_export]
macro_rules! text {
    ($($arg:tt)*) => {{
        let mut text = $crate::session::TextBuffer::default();
        let _ = core::fmt::Write::write_fmt(&mut text, format_args!($($arg)*));
        text
    }};
}

/// What the caller does with an inbound message after the session has seen it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// An application message in sequence: hand it to the application layer.
    Application,
    /// An application message over the throttle: answer it with a BusinessMessageReject.
    Throttled,
    /// Handled by the session (administrative, duplicate, or out of sequence).
    Handled,
    /// The session ended (Logout exchanged or a fatal error); close the connection once the
    /// outbound bytes are written.
    Disconnect,
}

/// Per-session counters (monotonic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Messages received in sequence.
    pub messages_received: u64,
    /// Messages sent (not counting resends).
    pub messages_sent: u64,
    /// Messages resent (PossDup) or gap-filled.
    pub messages_resent: u64,
    /// Rejects (3) we sent.
    pub rejects_sent: u64,
    /// Application messages refused by the throttle.
    pub throttled: u64,
    /// ResendRequests we sent (inbound gaps).
    pub gaps_detected: u64,
    /// Logons accepted.
    pub logons: u64,
    /// Logons refused (wrong password, already logged on, bad HeartBtInt ...).
    pub logons_refused: u64,
    /// Heartbeat timeouts.
    pub heartbeat_timeouts: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not logged on (no connection, or one that has not sent its Logon).
    LoggedOut,
    /// Logged on.
    Active,
    /// We sent Logout at `since_ns` and wait for the answer.
    LogoutSent { since_ns: u64 },
}

#[derive(Clone, Copy, Debug)]
struct ResendJob {
    next: u64,
    end: u64,
}

/// One FIX session: sequence numbers, timers, resends, throttle.
pub struct Session<S: MessageStore> {
    config: SessionConfig,
    store: S,
    next_sender: u64,
    next_target: u64,
    state: State,
    heartbeat_interval_ns: u64,
    last_sent_ns: u64,
    last_received_ns: u64,
    test_request_sent_ns: Option<u64>,
    /// Inbound gap recovery: a ResendRequest is outstanding up to this MsgSeqNum.
    recovering_through: Option<u64>,
    resend: Option<ResendJob>,
    throttle_window_start_ns: u64,
    throttle_count: u32,
    /// The MsgSeqNum expected next is stored by [`Session::persist_target`] only, not as each
    /// message is consumed (see [`Session::defer_target_persistence`]).
    defer_target: bool,
    scratch: Box<[u8]>,
    counters: SessionCounters,
}

/// The result of a send: the MsgSeqNum used, or why the session must be closed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message did not fit [`crate::codec::MESSAGE_LENGTH_MAX`] (a bug in the caller).
    #[error("encode: {0}")]
    Encode(#[from] crate::codec::EncodeError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The connection's outbound buffer is full (slow consumer); the message is stored.
    #[error("outbound buffer full")]
    OutboundFull,
}

impl<S: MessageStore> Session<S> {
    /// A session over `store`, resuming the sequence numbers it holds.
    pub fn new(config: SessionConfig, store: S) -> Session<S> {
        let sequences = store.sequences();
        Session {
            config,
            store,
            next_sender: sequences.next_sender,
            next_target: sequences.next_target,
            state: State::LoggedOut,
            heartbeat_interval_ns: 30 * NS_PER_S,
            last_sent_ns: 0,
            last_received_ns: 0,
            test_request_sent_ns: None,
            recovering_through: None,
            resend: None,
            throttle_window_start_ns: 0,
            throttle_count: 0,
            defer_target: false,
            scratch: vec![0u8; MESSAGE_LENGTH_MAX].into_boxed_slice(),
            counters: SessionCounters::default(),
        }
    }

    /// With `true`, a consumed inbound message advances the MsgSeqNum expected next in memory
    /// only, and [`Session::persist_target`] stores it. An owner that must make what a message
    /// caused durable before the message counts as received (the gateway journals the
    /// submissions it made) calls `persist_target` after that: a crash in between makes the
    /// counterparty send the message again (PossDupFlag), instead of the message being lost.
    pub fn defer_target_persistence(&mut self, defer: bool) {
        self.defer_target = defer;
    }

    /// Stores the MsgSeqNum expected next, if the store holds an older one.
    pub fn persist_target(&mut self) -> Result<(), StoreError> {
        if self.store.sequences().next_target != self.next_target {
            self.store.set_next_target(self.next_target)?;
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Counters.
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// MsgSeqNum of our next message.
    pub fn next_sender(&self) -> u64 {
        self.next_sender
    }

    /// MsgSeqNum we expect next.
    pub fn next_target(&self) -> u64 {
        self.next_target
    }

    /// Whether the session is logged on (or logging out).
    pub fn is_logged_on(&self) -> bool {
        !matches!(self.state, State::LoggedOut)
    }

    /// The FIX version.
    pub fn version(&self) -> FixVersion {
        self.config.version
    }

    /// The connection is gone: the session is logged out; sequence numbers stay.
    pub fn on_disconnected(&mut self) {
        self.state = State::LoggedOut;
        self.resend = None;
        self.recovering_through = None;
        self.test_request_sent_ns = None;
    }

    /// A Logon (already matched to this session by CompIDs and BeginString). On success the
    /// session is active and the Logon answer (and a ResendRequest, if the Logon showed a gap)
    /// is in `out`.
    pub fn on_logon(
        &mut self,
        now_ns: u64,
        message: &Message<'_>,
        out: &mut Outbound,
    ) -> Result<(), Refusal> {
        if self.is_logged_on() {
            return Err(Refusal::AlreadyLoggedOn);
        }
        if let Some(password) = &self.config.password {
            if message.get(tags::PASSWORD) != Some(password.as_bytes()) {
                return Err(Refusal::WrongPassword);
            }
        }
        if message.optional_u64(tags::ENCRYPT_METHOD) != Ok(Some(0)) {
            return Err(Refusal::EncryptMethod);
        }
        let heartbeat_s = match message.optional_u64(tags::HEART_BT_INT) {
            Ok(Some(value))
                if (u64::from(self.config.heartbeat_interval_s_min)
                    ..=u64::from(self.config.heartbeat_interval_s_max))
                    .contains(&value) =>
            {
                value
            }
            _ => return Err(Refusal::HeartbeatInterval),
        };
        let sequence = match message.optional_u64(tags::MSG_SEQ_NUM) {
            Ok(Some(sequence)) if sequence > 0 => sequence,
            _ => return Err(Refusal::MsgSeqNumMissing),
        };
        let reset = message.optional_bool(tags::RESET_SEQ_NUM_FLAG) == Ok(Some(true));
        if reset {
            if sequence != 1 {
                return Err(Refusal::ResetNotOne);
            }
            self.store.reset().map_err(|_| Refusal::Store)?;
            self.next_sender = 1;
            self.next_target = 1;
        } else if sequence < self.next_target {
            return Err(Refusal::MsgSeqNumTooLow {
                expected: self.next_target,
                received: sequence,
            });
        }
        self.state = State::Active;
        self.heartbeat_interval_ns = heartbeat_s * NS_PER_S;
        self.last_received_ns = now_ns;
        self.test_request_sent_ns = None;
        self.throttle_window_start_ns = now_ns;
        self.throttle_count = 0;
        self.counters.logons += 1;
        let sent = self.send(now_ns, Some(out), msg_type::LOGON, |writer| {
            writer.u64(tags::ENCRYPT_METHOD, 0);
            writer.u64(tags::HEART_BT_INT, heartbeat_s);
            if reset {
                writer.bool(tags::RESET_SEQ_NUM_FLAG, true);
            }
        });
        if sent.is_err() {
            self.state = State::LoggedOut;
            return Err(Refusal::Store);
        }
        if sequence > self.next_target {
            // Logon accepted; the messages before it are requested (the Logon's own number is
            // then gap-filled by the counterparty).
            self.request_resend(now_ns, sequence, out);
        } else {
            self.advance_target(sequence + 1);
        }
        Ok(())
    }

    /// An inbound message with this (expected) MsgSeqNum was consumed without being handled
    /// here (it did not parse; the caller rejects it).
    pub fn skip_inbound(&mut self, sequence: u64) {
        if sequence == self.next_target {
            self.counters.messages_received += 1;
            self.advance_target(sequence + 1);
        }
    }

    fn advance_target(&mut self, next_target: u64) {
        self.next_target = next_target;
        if !self.defer_target {
            // An in-memory store cannot fail; a persistent one that fails shows on the next send.
            let _ = self.store.set_next_target(next_target);
        }
        if let Some(through) = self.recovering_through {
            if next_target > through {
                self.recovering_through = None;
            }
        }
    }

    fn request_resend(&mut self, now_ns: u64, received: u64, out: &mut Outbound) {
        // Our ResendRequest asks up to infinity (EndSeqNo 0): while one is outstanding, later
        // messages beyond the gap are covered by it and only extend what we wait for.
        if let Some(through) = self.recovering_through {
            self.recovering_through = Some(through.max(received));
            return;
        }
        self.recovering_through = Some(received);
        self.counters.gaps_detected += 1;
        let begin = self.next_target;
        let _ = self.send(now_ns, Some(out), msg_type::RESEND_REQUEST, |writer| {
            writer.u64(tags::BEGIN_SEQ_NO, begin);
            writer.u64(tags::END_SEQ_NO, 0);
        });
    }

    /// An inbound message on the session's connection after logon (a Logon here is a protocol
    /// error). Admin messages are answered here; sequence gaps requested; application messages
    /// in sequence returned as [`Inbound::Application`].
    pub fn on_message(
        &mut self,
        now_ns: u64,
        message: &Message<'_>,
        out: &mut Outbound,
    ) -> Inbound {
        self.last_received_ns = now_ns;
        self.test_request_sent_ns = None;
        let kind = message.msg_type();
        if FixVersion::from_begin_string(message.begin_string()) != Some(self.config.version) {
            self.logout(now_ns, out, text!("incorrect BeginString"));
            return Inbound::Disconnect;
        }
        let sequence = match message.optional_u64(tags::MSG_SEQ_NUM) {
            Ok(Some(sequence)) if sequence > 0 => sequence,
            _ => {
                self.logout(now_ns, out, text!("MsgSeqNum(34) missing or invalid"));
                return Inbound::Disconnect;
            }
        };
        let comp_ids_ok = message.get(tags::SENDER_COMP_ID)
            == Some(self.config.target_comp_id.as_bytes())
            && message.get(tags::TARGET_COMP_ID) == Some(self.config.sender_comp_id.as_bytes());
        if !comp_ids_ok {
            let ref_tag = if message.get(tags::SENDER_COMP_ID)
                != Some(self.config.target_comp_id.as_bytes())
            {
                tags::SENDER_COMP_ID
            } else {
                tags::TARGET_COMP_ID
            };
            self.reject(
                now_ns,
                out,
                sequence,
                kind,
                session_reject::COMP_ID_PROBLEM,
                Some(ref_tag),
                text!("CompID problem"),
            );
            self.logout(now_ns, out, text!("CompID problem"));
            return Inbound::Disconnect;
        }
        let poss_dup = message.optional_bool(tags::POSS_DUP_FLAG) == Ok(Some(true));
        // SequenceReset-Reset ignores MsgSeqNum.
        if kind == msg_type::SEQUENCE_RESET
            && message.optional_bool(tags::GAP_FILL_FLAG) != Ok(Some(true))
        {
            return self.on_sequence_reset(now_ns, message, sequence, out, false);
        }
        if sequence > self.next_target {
            if kind == msg_type::LOGOUT {
                self.send_logout_answer(now_ns, out);
                return Inbound::Disconnect;
            }
            if kind == msg_type::RESEND_REQUEST {
                // Answer theirs first, then ask for ours (FIX session spec).
                self.on_resend_request(now_ns, message, sequence, out);
            }
            self.request_resend(now_ns, sequence, out);
            return Inbound::Handled;
        }
        if sequence < self.next_target {
            if poss_dup {
                if message.get(tags::ORIG_SENDING_TIME).is_none()
                    && kind != msg_type::SEQUENCE_RESET
                {
                    self.reject(
                        now_ns,
                        out,
                        sequence,
                        kind,
                        session_reject::REQUIRED_TAG_MISSING,
                        Some(tags::ORIG_SENDING_TIME),
                        text!("OrigSendingTime(122) required with PossDupFlag=Y"),
                    );
                }
                return Inbound::Handled;
            }
            let expected = self.next_target;
            self.logout(
                now_ns,
                out,
                text!("MsgSeqNum too low, expecting {expected} but received {sequence}"),
            );
            return Inbound::Disconnect;
        }
        // In sequence.
        self.counters.messages_received += 1;
        if kind == msg_type::SEQUENCE_RESET {
            return self.on_sequence_reset(now_ns, message, sequence, out, true);
        }
        self.advance_target(sequence + 1);
        if let Some(error) = header_error(message) {
            self.reject(
                now_ns,
                out,
                sequence,
                kind,
                error.session_reject_reason(),
                Some(error.tag()),
                text!("{error}"),
            );
            return Inbound::Handled;
        }
        match kind {
            msg_type::HEARTBEAT => Inbound::Handled,
            msg_type::TEST_REQUEST => {
                match message.required(tags::TEST_REQ_ID) {
                    Ok(id) => {
                        let _ = self.send(now_ns, Some(out), msg_type::HEARTBEAT, |writer| {
                            writer.bytes(tags::TEST_REQ_ID, id);
                        });
                    }
                    Err(error) => self.reject_field(now_ns, out, sequence, kind, error),
                }
                Inbound::Handled
            }
            msg_type::RESEND_REQUEST => {
                self.on_resend_request(now_ns, message, sequence, out);
                Inbound::Handled
            }
            msg_type::REJECT => Inbound::Handled,
            msg_type::LOGOUT => {
                if let State::LogoutSent { .. } = self.state {
                    return Inbound::Disconnect;
                }
                self.send_logout_answer(now_ns, out);
                Inbound::Disconnect
            }
            msg_type::LOGON => {
                self.logout(now_ns, out, text!("Logon received while logged on"));
                Inbound::Disconnect
            }
            _ => {
                if let State::LogoutSent { .. } = self.state {
                    return Inbound::Handled;
                }
                if self.admit_application(now_ns) {
                    Inbound::Application
                } else {
                    self.counters.throttled += 1;
                    Inbound::Throttled
                }
            }
        }
    }

    fn send_logout_answer(&mut self, now_ns: u64, out: &mut Outbound) {
        let _ = self.send(now_ns, Some(out), msg_type::LOGOUT, |_| {});
        self.state = State::LoggedOut;
    }

    fn admit_application(&mut self, now_ns: u64) -> bool {
        if now_ns.saturating_sub(self.throttle_window_start_ns) >= NS_PER_S {
            self.throttle_window_start_ns = now_ns;
            self.throttle_count = 0;
        }
        if self.throttle_count >= self.config.throttle_messages_per_second {
            return false;
        }
        self.throttle_count += 1;
        true
    }

    fn on_sequence_reset(
        &mut self,
        now_ns: u64,
        message: &Message<'_>,
        sequence: u64,
        out: &mut Outbound,
        gap_fill: bool,
    ) -> Inbound {
        let new_sequence = match message.required_u64(tags::NEW_SEQ_NO) {
            Ok(value) => value,
            Err(error) => {
                if gap_fill {
                    self.advance_target(sequence + 1);
                }
                self.reject_field(now_ns, out, sequence, msg_type::SEQUENCE_RESET, error);
                return Inbound::Handled;
            }
        };
        if new_sequence < self.next_target || (gap_fill && new_sequence <= sequence) {
            if gap_fill {
                self.advance_target(sequence + 1);
            }
            let expected = self.next_target;
            self.reject(
                now_ns,
                out,
                sequence,
                msg_type::SEQUENCE_RESET,
                session_reject::VALUE_OUT_OF_RANGE,
                Some(tags::NEW_SEQ_NO),
                text!("NewSeqNo {new_sequence} below expected {expected}"),
            );
            return Inbound::Handled;
        }
        self.advance_target(new_sequence);
        Inbound::Handled
    }

    fn on_resend_request(
        &mut self,
        now_ns: u64,
        message: &Message<'_>,
        sequence: u64,
        out: &mut Outbound,
    ) {
        let range = message
            .required_u64(tags::BEGIN_SEQ_NO)
            .and_then(|begin| Ok((begin, message.required_u64(tags::END_SEQ_NO)?)));
        let (begin, end) = match range {
            Ok(range) => range,
            Err(error) => {
                self.reject_field(now_ns, out, sequence, msg_type::RESEND_REQUEST, error);
                return;
            }
        };
        let last_sent = self.next_sender - 1;
        let end = if end == 0 || end == END_SEQ_NO_INFINITY_42 {
            last_sent
        } else {
            end.min(last_sent)
        };
        if begin == 0 || begin > end {
            self.reject(
                now_ns,
                out,
                sequence,
                msg_type::RESEND_REQUEST,
                session_reject::VALUE_OUT_OF_RANGE,
                Some(tags::BEGIN_SEQ_NO),
                text!("BeginSeqNo {begin} outside 1..={last_sent}"),
            );
            return;
        }
        self.resend = Some(ResendJob { next: begin, end });
        self.pump(now_ns, out);
    }

    /// Continues a resend as far as the outbound buffer allows. Call after the transport drained
    /// bytes; [`Session::on_message`] and [`Session::on_timer`] call it too.
    pub fn pump(&mut self, now_ns: u64, out: &mut Outbound) {
        while let Some(job) = self.resend {
            if job.next > job.end {
                self.resend = None;
                break;
            }
            if out.space() < MESSAGE_LENGTH_MAX {
                break;
            }
            let sequence = job.next;
            let stored_app = self.store.sent(sequence).filter(|bytes| {
                Message::parse(bytes).is_ok_and(|m| !msg_type::is_admin(m.msg_type()))
            });
            let next = match stored_app {
                Some(_) => {
                    self.resend_one(now_ns, sequence, out);
                    sequence + 1
                }
                None => {
                    // Admin or no longer held: gap-fill up to the next application message.
                    let mut gap_end = sequence + 1;
                    while gap_end <= job.end
                        && !self.store.sent(gap_end).is_some_and(|bytes| {
                            Message::parse(bytes).is_ok_and(|m| !msg_type::is_admin(m.msg_type()))
                        })
                    {
                        gap_end += 1;
                    }
                    self.gap_fill(now_ns, sequence, gap_end, out);
                    gap_end
                }
            };
            self.counters.messages_resent += 1;
            self.resend = Some(ResendJob { next, end: job.end });
        }
    }

    fn resend_one(&mut self, now_ns: u64, sequence: u64, out: &mut Outbound) {
        let Some(stored) = self.store.sent(sequence) else {
            return;
        };
        let Ok(original) = Message::parse(stored) else {
            return;
        };
        let mut writer = Writer::new(
            &mut self.scratch,
            self.config.version.begin_string(),
            original.msg_type(),
        );
        writer.bytes(tags::SENDER_COMP_ID, self.config.sender_comp_id.as_bytes());
        writer.bytes(tags::TARGET_COMP_ID, self.config.target_comp_id.as_bytes());
        writer.u64(tags::MSG_SEQ_NUM, sequence);
        writer.bool(tags::POSS_DUP_FLAG, true);
        writer.timestamp(tags::SENDING_TIME, now_ns);
        if let Some(original_time) = original.get(tags::SENDING_TIME) {
            writer.bytes(tags::ORIG_SENDING_TIME, original_time);
        }
        for (tag, value) in original.fields().skip(3) {
            let header = matches!(
                tag,
                tags::SENDER_COMP_ID
                    | tags::TARGET_COMP_ID
                    | tags::MSG_SEQ_NUM
                    | tags::POSS_DUP_FLAG
                    | tags::SENDING_TIME
                    | tags::ORIG_SENDING_TIME
                    | tags::CHECK_SUM
            );
            if !header {
                writer.bytes(tag, value);
            }
        }
        if let Ok(length) = writer.finish() {
            if out.push(&self.scratch[..length]) {
                self.last_sent_ns = now_ns;
            }
        }
    }

    fn gap_fill(&mut self, now_ns: u64, sequence: u64, new_sequence: u64, out: &mut Outbound) {
        let mut writer = Writer::new(
            &mut self.scratch,
            self.config.version.begin_string(),
            msg_type::SEQUENCE_RESET,
        );
        writer.bytes(tags::SENDER_COMP_ID, self.config.sender_comp_id.as_bytes());
        writer.bytes(tags::TARGET_COMP_ID, self.config.target_comp_id.as_bytes());
        writer.u64(tags::MSG_SEQ_NUM, sequence);
        writer.bool(tags::POSS_DUP_FLAG, true);
        writer.timestamp(tags::SENDING_TIME, now_ns);
        writer.timestamp(tags::ORIG_SENDING_TIME, now_ns);
        writer.bool(tags::GAP_FILL_FLAG, true);
        writer.u64(tags::NEW_SEQ_NO, new_sequence);
        if let Ok(length) = writer.finish() {
            if out.push(&self.scratch[..length]) {
                self.last_sent_ns = now_ns;
            }
        }
    }

    /// Sends a message: header (CompIDs, MsgSeqNum, SendingTime), then `body` writes the rest.
    /// The message is stored first, then appended to `out` if the session has a connection.
    pub fn send(
        &mut self,
        now_ns: u64,
        out: Option<&mut Outbound>,
        kind: &[u8],
        body: impl FnOnce(&mut Writer<'_>),
    ) -> Result<u64, SendError> {
        let sequence = self.next_sender;
        let mut writer = Writer::new(&mut self.scratch, self.config.version.begin_string(), kind);
        writer.bytes(tags::SENDER_COMP_ID, self.config.sender_comp_id.as_bytes());
        writer.bytes(tags::TARGET_COMP_ID, self.config.target_comp_id.as_bytes());
        writer.u64(tags::MSG_SEQ_NUM, sequence);
        writer.timestamp(tags::SENDING_TIME, now_ns);
        body(&mut writer);
        let length = writer.finish()?;
        self.store.append_sent(sequence, &self.scratch[..length])?;
        self.next_sender = sequence + 1;
        self.counters.messages_sent += 1;
        if let Some(out) = out {
            if !self.is_logged_on() && kind != msg_type::LOGOUT {
                return Ok(sequence);
            }
            if !out.push(&self.scratch[..length]) {
                return Err(SendError::OutboundFull);
            }
            self.last_sent_ns = now_ns;
        }
        Ok(sequence)
    }

    /// Sends Reject (3).
    #[allow(clippy::too_many_arguments)]
    pub fn reject(
        &mut self,
        now_ns: u64,
        out: &mut Outbound,
        ref_sequence: u64,
        ref_msg_type: &[u8],
        reason: u32,
        ref_tag: Option<u32>,
        text: TextBuffer,
    ) {
        self.counters.rejects_sent += 1;
        let version = self.config.version;
        let _ = self.send(now_ns, Some(out), msg_type::REJECT, |writer| {
            writer.u64(tags::REF_SEQ_NUM, ref_sequence);
            if let Some(tag) = ref_tag {
                writer.u64(tags::REF_TAG_ID, u64::from(tag));
            }
            if !ref_msg_type.is_empty() {
                writer.bytes(tags::REF_MSG_TYPE, ref_msg_type);
            }
            // 373 exists in both versions; 4.2 defines codes 0..=11 only.
            let reason = if version == FixVersion::Fix42 && reason > 11 {
                session_reject::INCORRECT_DATA_FORMAT
            } else {
                reason
            };
            writer.u64(tags::SESSION_REJECT_REASON, u64::from(reason));
            if !text.as_bytes().is_empty() {
                writer.bytes(tags::TEXT, text.as_bytes());
            }
        });
    }

    /// Sends Reject (3) for a field error.
    pub fn reject_field(
        &mut self,
        now_ns: u64,
        out: &mut Outbound,
        ref_sequence: u64,
        ref_msg_type: &[u8],
        error: crate::codec::FieldError,
    ) {
        self.reject(
            now_ns,
            out,
            ref_sequence,
            ref_msg_type,
            error.session_reject_reason(),
            Some(error.tag()),
            text!("{error}"),
        );
    }

    /// Sends Logout (5) with a reason and waits for the answer (or [`LOGOUT_TIMEOUT_NS`]).
    pub fn logout(&mut self, now_ns: u64, out: &mut Outbound, text: TextBuffer) {
        let _ = self.send(now_ns, Some(out), msg_type::LOGOUT, |writer| {
            if !text.as_bytes().is_empty() {
                writer.bytes(tags::TEXT, text.as_bytes());
            }
        });
        if self.is_logged_on() {
            self.state = State::LogoutSent { since_ns: now_ns };
        }
    }

    /// Timers: heartbeat, test request, heartbeat timeout, logout timeout, and the resend job.
    /// Returns [`Inbound::Disconnect`] when the connection must be closed.
    pub fn on_timer(&mut self, now_ns: u64, out: &mut Outbound) -> Inbound {
        match self.state {
            State::LoggedOut => return Inbound::Handled,
            State::LogoutSent { since_ns } => {
                if now_ns.saturating_sub(since_ns) >= LOGOUT_TIMEOUT_NS {
                    self.state = State::LoggedOut;
                    return Inbound::Disconnect;
                }
                return Inbound::Handled;
            }
            State::Active => {}
        }
        self.pump(now_ns, out);
        let interval = self.heartbeat_interval_ns;
        if let Some(sent_ns) = self.test_request_sent_ns {
            if now_ns.saturating_sub(sent_ns) >= interval * TEST_REQUEST_TIMEOUT_PERCENT / 100 {
                self.counters.heartbeat_timeouts += 1;
                self.logout(now_ns, out, text!("heartbeat timeout"));
                self.state = State::LoggedOut;
                return Inbound::Disconnect;
            }
        } else if now_ns.saturating_sub(self.last_received_ns)
            >= interval * TEST_REQUEST_DELAY_PERCENT / 100
        {
            self.test_request_sent_ns = Some(now_ns);
            let _ = self.send(now_ns, Some(out), msg_type::TEST_REQUEST, |writer| {
                writer.u64(tags::TEST_REQ_ID, now_ns);
            });
        }
        if now_ns.saturating_sub(self.last_sent_ns) >= interval {
            let _ = self.send(now_ns, Some(out), msg_type::HEARTBEAT, |_| {});
        }
        Inbound::Handled
    }
}

/// Header fields every message must carry once: SenderCompID, TargetCompID, MsgSeqNum and
/// SendingTime.
fn header_error(message: &Message<'_>) -> Option<crate::codec::FieldError> {
    for tag in [
        tags::SENDER_COMP_ID,
        tags::TARGET_COMP_ID,
        tags::MSG_SEQ_NUM,
        tags::SENDING_TIME,
    ] {
        if let Err(error) = message.required(tag) {
            return Some(error);
        }
    }
    None
}
