//! The gateway core: connections, sessions and the application layer behind one sans-IO struct.
//!
//! The runtime (io_uring, or a test) drives it:
//!
//! - [`Gateway::on_connected`] when a TCP connection is accepted, [`Gateway::on_bytes`] with what
//!   it received, [`Gateway::on_disconnected`] when it is gone, [`Gateway::on_timer`] regularly
//!   (every few milliseconds is plenty: heartbeats are seconds).
//! - Then it writes [`Gateway::outbound`] to each connection (and calls
//!   [`Gateway::consume_outbound`] with what the socket took), closes connections for which
//!   [`Gateway::wants_close`] is true once their output is written, and sends
//!   [`Gateway::drain_submissions`] to the cluster (each with its client sequence, the log's
//!   idempotency and correlation key).
//! - For every committed command, in log order, [`Gateway::on_committed`] with the events the
//!   gateway's own matcher replica produced for it; ExecutionReports go to the owning sessions.

use crate::app::{
    self, AppReject, BusinessReason, ClOrdId, ExecType, InstrumentTable, Order, OrderState,
    Pending, Report, SessionOrders,
};
use crate::codec::{frame, frame_length_unchecked, FrameError, Framed, Message, Writer};
use crate::codec::{parse_u64, MESSAGE_LENGTH_MAX, SOH};
use crate::session::{ConfigError, Inbound, Outbound, Refusal, Session, SessionConfig, TextBuffer};
use crate::store::MessageStore;
use crate::tags::{self, msg_type};
use crate::text;
use matcher::{
    CancelReason, CommandKind, CommandRecord, Event, EventKind, OrderType, RejectReason, Side,
};
use std::collections::HashMap;

/// Most connections served at once (each holds its inbound and outbound buffers).
pub const CONNECTIONS_LIMIT: usize = 4096;
/// Most configured sessions.
pub const SESSIONS_LIMIT: usize = 4096;
/// Most live orders one session may have.
pub const ORDERS_PER_SESSION_LIMIT: usize = 1 << 20;
/// Commands waiting for the runtime to take them; beyond this new orders are refused.
pub const SUBMISSIONS_MAX: usize = 8192;
/// Bytes a connection may buffer of an incomplete message (a frame never exceeds
/// [`MESSAGE_LENGTH_MAX`]).
pub const INBOUND_BYTES_MAX: usize = 2 * MESSAGE_LENGTH_MAX;
/// A connection that has not logged on within this time is closed.
pub const LOGON_TIMEOUT_NS: u64 = 10_000_000_000;
/// Longest ExecID we write.
const EXEC_ID_LENGTH_MAX: usize = 48;

/// Index of a connection slot, given by [`Gateway::on_connected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u32);

/// A command for the cluster. `client_sequence` is the gateway's ingress sequence number (the
/// log records it with the command); for NewOrder and Replace it is also the matcher
/// `client_order_id`, which is how committed commands are matched back to FIX orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submission {
    /// Ingress client sequence (strictly increasing, gap-free).
    pub client_sequence: u64,
    /// The matcher command.
    pub record: CommandRecord,
    /// The FIX request's ClOrdID (None for the gateway's own commands: cancel on disconnect).
    pub cl_ord_id: Option<ClOrdId>,
    /// MassCancelRequestType (530) of a mass cancel, else 0.
    pub request_type: u8,
    /// Sent again after a restart ([`Gateway::resubmit`]): already in the submission log.
    pub resent: bool,
}

/// Gateway configuration.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Sessions (CompIDs unique, accounts unique).
    pub sessions: Vec<SessionConfig>,
    /// Instruments (symbols and ids unique).
    pub instruments: Vec<app::Instrument>,
    /// Connection slots.
    pub connections_max: usize,
    /// Live orders per session.
    pub orders_per_session_max: usize,
    /// ClOrdIDs remembered per session for the uniqueness check (at least the live orders).
    pub cl_ord_ids_remembered: usize,
    /// First ingress client sequence (one above the last this gateway's client id has in the
    /// log, so a restarted gateway continues).
    pub client_sequence_next: u64,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            sessions: Vec::new(),
            instruments: Vec::new(),
            connections_max: 64,
            orders_per_session_max: 16_384,
            cl_ord_ids_remembered: 65_536,
            client_sequence_next: 1,
        }
    }
}

/// Gateway-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections refused because every slot was taken.
    pub connections_refused: u64,
    /// Logons refused: unknown CompIDs or BeginString.
    pub logons_refused_unknown: u64,
    /// Logons refused: wrong password.
    pub logons_refused_password: u64,
    /// Logons refused: session already logged on.
    pub logons_refused_duplicate: u64,
    /// Logons refused for another reason (HeartBtInt, sequence, not a Logon first ...).
    pub logons_refused_other: u64,
    /// Messages with a bad checksum (ignored, as FIX says).
    pub garbled_ignored: u64,
    /// Connections closed for an unframeable stream.
    pub garbled_disconnects: u64,
    /// Connections closed because their outbound buffer was full.
    pub slow_consumer_disconnects: u64,
    /// Connections closed for not logging on in time.
    pub logon_timeouts: u64,
    /// Commands submitted.
    pub submissions: u64,
    /// ExecutionReports (and cancel rejects, mass cancel reports) sent from committed events.
    pub reports: u64,
    /// Requests resent with PossDupFlag=Y whose ClOrdID had been taken already: ignored (the
    /// first one's outcome is or was reported).
    pub possible_duplicates_ignored: u64,
}

struct Connection {
    open: bool,
    closing: bool,
    session: Option<usize>,
    connected_ns: u64,
    inbound: Vec<u8>,
    outbound: Outbound,
}

struct SessionSlot<S: MessageStore> {
    session: Session<S>,
    connection: Option<usize>,
    orders: SessionOrders,
}

/// The gateway core. `S` is the session store (in memory or persistent).
pub struct Gateway<S: MessageStore> {
    connections: Vec<Connection>,
    sessions: Vec<SessionSlot<S>>,
    sessions_by_account: HashMap<u32, usize>,
    instruments: InstrumentTable,
    submissions: Vec<Submission>,
    client_sequence_next: u64,
    local_exec_id_next: u64,
    counters: Counters,
    scratch: Box<[u8]>,
}

impl<S: MessageStore> Gateway<S> {
    /// Builds the gateway; `stores` gives one store per configured session, in order.
    pub fn new(config: GatewayConfig, stores: Vec<S>) -> Result<Gateway<S>, ConfigError> {
        let gateway_error = |field| Err(ConfigError::Gateway { field });
        if config.connections_max == 0 || config.connections_max > CONNECTIONS_LIMIT {
            return gateway_error("connections_max");
        }
        if config.sessions.is_empty() || config.sessions.len() > SESSIONS_LIMIT {
            return gateway_error("sessions");
        }
        if stores.len() != config.sessions.len() {
            return gateway_error("stores");
        }
        if config.orders_per_session_max == 0
            || config.orders_per_session_max > ORDERS_PER_SESSION_LIMIT
        {
            return gateway_error("orders_per_session_max");
        }
        if config.cl_ord_ids_remembered < config.orders_per_session_max {
            return gateway_error("cl_ord_ids_remembered");
        }
        if config.client_sequence_next == 0 {
            return gateway_error("client_sequence_next");
        }
        let instruments =
            InstrumentTable::new(config.instruments.clone()).map_err(|_| ConfigError::Gateway {
                field: "instruments",
            })?;
        let mut sessions_by_account = HashMap::with_capacity(config.sessions.len());
        for (index, session) in config.sessions.iter().enumerate() {
            session.validate(index)?;
            let duplicate_ids = config.sessions[..index].iter().any(|other| {
                other.sender_comp_id == session.sender_comp_id
                    && other.target_comp_id == session.target_comp_id
            });
            if duplicate_ids {
                return Err(ConfigError::Duplicate {
                    session: index,
                    field: "comp ids",
                });
            }
            if sessions_by_account
                .insert(session.account_id, index)
                .is_some()
            {
                return Err(ConfigError::Duplicate {
                    session: index,
                    field: "account_id",
                });
            }
        }
        let sessions = config
            .sessions
            .iter()
            .zip(stores)
            .map(|(session, store)| SessionSlot {
                session: {
                    // A message counts as received once its submissions are journaled
                    // (`take_submissions`).
                    let mut session = Session::new(session.clone(), store);
                    session.defer_target_persistence(true);
                    session
                },
                connection: None,
                orders: SessionOrders::new(
                    config.orders_per_session_max,
                    config.cl_ord_ids_remembered,
                ),
            })
            .collect();
        let connections = (0..config.connections_max)
            .map(|_| Connection {
                open: false,
                closing: false,
                session: None,
                connected_ns: 0,
                inbound: Vec::with_capacity(INBOUND_BYTES_MAX),
                outbound: Outbound::new(),
            })
            .collect();
        Ok(Gateway {
            connections,
            sessions,
            sessions_by_account,
            instruments,
            submissions: Vec::with_capacity(SUBMISSIONS_MAX),
            client_sequence_next: config.client_sequence_next,
            local_exec_id_next: 1,
            counters: Counters::default(),
            scratch: vec![0u8; MESSAGE_LENGTH_MAX].into_boxed_slice(),
        })
    }

    /// Connection slots (connection ids are below this).
    pub fn connections_max(&self) -> usize {
        self.connections.len()
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A configured session (index in configuration order).
    pub fn session(&self, index: usize) -> &Session<S> {
        &self.sessions[index].session
    }

    /// Live orders of a session.
    pub fn live_orders(&self, index: usize) -> usize {
        self.sessions[index].orders.live_count()
    }

    /// A connection was accepted. `None`: no free slot (the runtime closes the socket).
    pub fn on_connected(&mut self, now_ns: u64) -> Option<ConnectionId> {
        let Some(index) = self.connections.iter().position(|c| !c.open) else {
            self.counters.connections_refused += 1;
            return None;
        };
        let connection = &mut self.connections[index];
        connection.open = true;
        connection.closing = false;
        connection.session = None;
        connection.connected_ns = now_ns;
        connection.inbound.clear();
        connection.outbound.clear();
        Some(ConnectionId(index as u32))
    }

    /// Bytes waiting to be sent on a connection.
    pub fn outbound(&self, connection: ConnectionId) -> &[u8] {
        self.connections
            .get(connection.0 as usize)
            .map_or(&[], |c| c.outbound.pending())
    }

    /// The transport sent `count` bytes of [`Gateway::outbound`]; a resend in progress continues.
    pub fn consume_outbound(&mut self, connection: ConnectionId, count: usize, now_ns: u64) {
        let Some(c) = self.connections.get_mut(connection.0 as usize) else {
            return;
        };
        c.outbound.consume(count);
        if let Some(session) = c.session {
            self.sessions[session].session.pump(now_ns, &mut c.outbound);
        }
    }

    /// Whether the connection should be closed once its outbound bytes are written.
    pub fn wants_close(&self, connection: ConnectionId) -> bool {
        self.connections
            .get(connection.0 as usize)
            .is_some_and(|c| c.open && c.closing)
    }

    /// The client sequence the next submission gets.
    pub fn client_sequence_next(&self) -> u64 {
        self.client_sequence_next
    }

    /// Queues one of the gateway's own commands (an AddInstrument at start-up); its client
    /// sequence, or `None` if the submission queue is full.
    pub fn submit_command(&mut self, record: CommandRecord) -> Option<u64> {
        self.submit(record, None, 0)
    }

    /// The commands to send to the cluster since the last call, in order; then every session
    /// stores the MsgSeqNum it expects next. Use [`Gateway::take_submissions`] to journal the
    /// submissions first.
    pub fn drain_submissions(&mut self, into: &mut Vec<Submission>) {
        let journaled: Result<(), std::convert::Infallible> =
            self.take_submissions(into, |_| Ok(()));
        let Ok(()) = journaled;
    }

    /// The commands to send to the cluster since the last call, in order, each handed to
    /// `journal` first; once all are journaled, every session stores the MsgSeqNum it expects
    /// next (the messages that made them count as received only now: a crash before makes the
    /// counterparty send them again, and a crash after finds their submissions journaled).
    /// On an error nothing is taken and no MsgSeqNum stored.
    pub fn take_submissions<E>(
        &mut self,
        into: &mut Vec<Submission>,
        mut journal: impl FnMut(&Submission) -> Result<(), E>,
    ) -> Result<(), E> {
        for submission in &self.submissions {
            journal(submission)?;
        }
        into.append(&mut self.submissions);
        for slot in &mut self.sessions {
            // A persistent store that fails shows on the session's next send.
            let _ = slot.session.persist_target();
        }
        Ok(())
    }

    /// Restart: `cl_ord_id` was taken by a request of the session trading `account_id` before
    /// the restart (from the gateway's submission log), so that the same request sent again
    /// with PossDupFlag is recognised. `false` if no session trades the account.
    pub fn remember_cl_ord_id(&mut self, account_id: u32, cl_ord_id: ClOrdId) -> bool {
        let Some(session) = self.session_of(account_id) else {
            return false;
        };
        self.sessions[session].orders.use_cl_ord_id(cl_ord_id);
        true
    }

    /// Whether `message` is a request sent again (PossDupFlag=Y) whose ClOrdID the session has
    /// taken already: then it is ignored, and counted.
    fn possible_duplicate(
        &mut self,
        session_index: usize,
        message: &Message<'_>,
        cl_ord_id: &ClOrdId,
    ) -> bool {
        if message.optional_bool(tags::POSS_DUP_FLAG) != Ok(Some(true)) {
            return false;
        }
        let taken = self.sessions[session_index]
            .orders
            .cl_ord_id_taken(cl_ord_id);
        if taken {
            self.counters.possible_duplicates_ignored += 1;
        }
        taken
    }

    /// The connection is gone (peer closed, error, or the runtime closed it after
    /// [`Gateway::wants_close`]). Frees the slot.
    pub fn on_disconnected(&mut self, connection: ConnectionId, now_ns: u64) {
        let index = connection.0 as usize;
        if index >= self.connections.len() || !self.connections[index].open {
            return;
        }
        self.close(index, now_ns);
        let c = &mut self.connections[index];
        c.open = false;
        c.inbound.clear();
        c.outbound.clear();
    }

    /// Decides to end a connection: unbinds its session (cancel-on-disconnect applies) so the
    /// session can log on again at once.
    fn close(&mut self, index: usize, _now_ns: u64) {
        let c = &mut self.connections[index];
        c.closing = true;
        if let Some(session_index) = c.session.take() {
            let slot = &mut self.sessions[session_index];
            slot.session.on_disconnected();
            slot.connection = None;
            if slot.session.config().cancel_on_disconnect {
                let account_id = slot.session.config().account_id;
                let command = matcher::Command::MassCancel(matcher::MassCancel {
                    account_id,
                    instrument_id: None,
                    side: None,
                });
                self.submit(command.encode(), None, 0);
            }
        }
    }

    fn submit(
        &mut self,
        mut record: CommandRecord,
        cl_ord_id: Option<ClOrdId>,
        request_type: u8,
    ) -> Option<u64> {
        if self.submissions.len() == SUBMISSIONS_MAX {
            return None;
        }
        let client_sequence = self.client_sequence_next;
        self.client_sequence_next += 1;
        if record.kind == CommandKind::NewOrder as u8 || record.kind == CommandKind::Replace as u8 {
            record.client_order_id = client_sequence.into();
        }
        self.submissions.push(Submission {
            client_sequence,
            record,
            cl_ord_id,
            request_type,
            resent: false,
        });
        self.counters.submissions += 1;
        Some(client_sequence)
    }

    /// Restart: gives a session back an order that rests in the book (the matcher replica's
    /// view of it, after the committed log), under the ClOrdID its last NewOrder or Replace
    /// answered, with what it has filled so far. `false` if no session trades its account, the
    /// instrument is unknown, or the session's order table is full.
    pub fn restore_order(
        &mut self,
        view: &matcher::OrderView,
        cl_ord_id: ClOrdId,
        cum_quantity: u64,
        notional: i128,
    ) -> bool {
        let (Some(session), Some(instrument)) = (
            self.session_of(view.account_id),
            self.instruments.by_id(view.instrument_id),
        ) else {
            return false;
        };
        let orders = &mut self.sessions[session].orders;
        orders.use_cl_ord_id(cl_ord_id);
        let Some(slot) = orders.insert(Order {
            cl_ord_id,
            client_order_id: view.client_order_id,
            order_id: 0,
            instrument,
            side: view.side,
            order_type: OrderType::Limit,
            time_in_force: view.time_in_force,
            price: view.price,
            quantity: cum_quantity + view.leaves,
            cum_quantity,
            leaves_quantity: view.leaves,
            notional,
            state: OrderState::PendingNew,
            change_pending: false,
        }) else {
            return false;
        };
        orders.accepted(slot, view.order_id);
        true
    }

    /// Restart: the sessions that cancel on disconnect lost their connection when the previous
    /// gateway stopped; their orders given back by [`Gateway::restore_order`] are cancelled now
    /// (one mass cancel per such session that has any), as a disconnect would have. Returns the
    /// mass cancels queued.
    pub fn cancel_on_restart(&mut self) -> usize {
        let mut accounts = Vec::new();
        for slot in &self.sessions {
            if slot.session.config().cancel_on_disconnect && slot.orders.live_count() > 0 {
                accounts.push(slot.session.config().account_id);
            }
        }
        for &account_id in &accounts {
            let command = matcher::Command::MassCancel(matcher::MassCancel {
                account_id,
                instrument_id: None,
                side: None,
            });
            self.submit(command.encode(), None, 0);
        }
        accounts.len()
    }

    /// Restart: sends again a command the gateway had submitted (its submission log says so)
    /// without seeing it committed, under the same client sequence (the next one: resubmit in
    /// order, before anything new), and expects its outcome as it did the first time: a new
    /// order waits for its acceptance, a cancel, replace or mass cancel for its answer.
    /// `false` (nothing done) if `entry` is not the next client sequence.
    pub fn resubmit(&mut self, entry: &crate::submission_log::SubmissionEntry) -> bool {
        if entry.client_sequence != self.client_sequence_next
            || self.submissions.len() == SUBMISSIONS_MAX
        {
            return false;
        }
        self.client_sequence_next += 1;
        self.submissions.push(Submission {
            client_sequence: entry.client_sequence,
            record: entry.record,
            cl_ord_id: entry.cl_ord_id,
            request_type: entry.request_type,
            resent: true,
        });
        let (Some(session), Some(cl_ord_id)) = (
            self.session_of(entry.record.account_id.get()),
            entry.cl_ord_id,
        ) else {
            return true;
        };
        let orders = &mut self.sessions[session].orders;
        orders.use_cl_ord_id(cl_ord_id);
        let (pending, order_id) = match entry.record.decode() {
            Ok(matcher::Command::NewOrder(order)) => {
                if let Some(instrument) = self.instruments.by_id(order.instrument_id) {
                    let _ = orders.insert(Order::pending_new(
                        cl_ord_id,
                        entry.client_sequence,
                        instrument,
                        &order,
                    ));
                }
                return true;
            }
            Ok(matcher::Command::Cancel(cancel)) => (
                Pending::Cancel {
                    cl_ord_id,
                    order_id: cancel.order_id,
                },
                Some(cancel.order_id),
            ),
            Ok(matcher::Command::Replace(replace)) => (
                Pending::Replace {
                    cl_ord_id,
                    order_id: replace.order_id,
                    client_order_id: entry.client_sequence,
                },
                Some(replace.order_id),
            ),
            Ok(matcher::Command::MassCancel(_)) => (
                Pending::MassCancel {
                    cl_ord_id,
                    request_type: entry.request_type,
                },
                None,
            ),
            _ => return true,
        };
        // As the request did the first time: the order it targets has a change pending.
        if orders.push_pending(pending) {
            if let Some(slot) = order_id.and_then(|id| orders.by_order_id(id)) {
                orders.get_mut(slot).change_pending = true;
            }
        }
        true
    }

    /// Timers: logon timeouts, heartbeats, test requests, logout timeouts.
    pub fn on_timer(&mut self, now_ns: u64) {
        for index in 0..self.connections.len() {
            let c = &mut self.connections[index];
            if !c.open || c.closing {
                continue;
            }
            match c.session {
                None => {
                    if now_ns.saturating_sub(c.connected_ns) >= LOGON_TIMEOUT_NS {
                        self.counters.logon_timeouts += 1;
                        self.close(index, now_ns);
                    }
                }
                Some(session) => {
                    let verdict = self.sessions[session]
                        .session
                        .on_timer(now_ns, &mut c.outbound);
                    if verdict == Inbound::Disconnect {
                        self.close(index, now_ns);
                    }
                }
            }
        }
    }

    /// Bytes received on a connection: every complete message is handled now; a partial one is
    /// kept (at most [`INBOUND_BYTES_MAX`] bytes).
    pub fn on_bytes(&mut self, connection: ConnectionId, now_ns: u64, mut bytes: &[u8]) {
        let index = connection.0 as usize;
        if index >= self.connections.len() || !self.connections[index].open {
            return;
        }
        while !bytes.is_empty() && !self.connections[index].closing {
            let c = &mut self.connections[index];
            let take = (INBOUND_BYTES_MAX - c.inbound.len()).min(bytes.len());
            c.inbound.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            // Taking the buffer out lends it to the handlers without a copy or an allocation.
            let inbound = std::mem::take(&mut self.connections[index].inbound);
            let consumed = self.process_inbound(index, now_ns, &inbound);
            let c = &mut self.connections[index];
            c.inbound = inbound;
            c.inbound.drain(..consumed);
        }
    }

    fn process_inbound(&mut self, index: usize, now_ns: u64, inbound: &[u8]) -> usize {
        let mut consumed = 0;
        while consumed < inbound.len() && !self.connections[index].closing {
            let rest = &inbound[consumed..];
            match frame(rest) {
                Ok(Framed::Incomplete) => break,
                Ok(Framed::Complete { length }) => {
                    self.on_frame(index, now_ns, &rest[..length]);
                    consumed += length;
                }
                Err(FrameError::BadChecksum { .. }) => {
                    // FIX: a message with a bad checksum is ignored; the sequence gap it leaves
                    // is recovered by a ResendRequest when the next message arrives.
                    self.counters.garbled_ignored += 1;
                    consumed += frame_length_unchecked(rest).unwrap_or(rest.len());
                }
                Err(error) => {
                    self.counters.garbled_disconnects += 1;
                    let text = text!("{error}");
                    self.logout_and_close(index, now_ns, text);
                    consumed = inbound.len();
                }
            }
        }
        consumed
    }

    fn logout_and_close(&mut self, index: usize, now_ns: u64, text: TextBuffer) {
        let c = &mut self.connections[index];
        if let Some(session) = c.session {
            self.sessions[session]
                .session
                .logout(now_ns, &mut c.outbound, text);
        }
        self.close(index, now_ns);
    }

    fn on_frame(&mut self, index: usize, now_ns: u64, bytes: &[u8]) {
        let session_index = self.connections[index].session;
        let message = match Message::parse(bytes) {
            Ok(message) => message,
            Err(error) => {
                let Some(session_index) = session_index else {
                    self.counters.logons_refused_other += 1;
                    self.refuse_raw(index, now_ns, bytes, Refusal::NotLogon);
                    return;
                };
                // Framed and checksummed, but not fields: reject by MsgSeqNum if we can find it.
                let (reason, ref_tag) = error.session_reject_reason();
                let sequence = scan_u64(bytes, tags::MSG_SEQ_NUM);
                let c = &mut self.connections[index];
                let session = &mut self.sessions[session_index].session;
                if let Some(sequence) = sequence.filter(|&s| s == session.next_target()) {
                    session.skip_inbound(sequence);
                    session.reject(
                        now_ns,
                        &mut c.outbound,
                        sequence,
                        b"",
                        reason,
                        ref_tag,
                        text!("{error}"),
                    );
                }
                return;
            }
        };
        let Some(session_index) = session_index else {
            self.on_logon(index, now_ns, &message);
            return;
        };
        let c = &mut self.connections[index];
        let slot = &mut self.sessions[session_index];
        match slot.session.on_message(now_ns, &message, &mut c.outbound) {
            Inbound::Handled => {}
            Inbound::Disconnect => self.close(index, now_ns),
            Inbound::Throttled => {
                self.business_reject(
                    session_index,
                    index,
                    now_ns,
                    &message,
                    tags::business_reject::OTHER,
                    BusinessReason::Throttled.text(),
                );
            }
            Inbound::Application => self.on_application(session_index, index, now_ns, &message),
        }
    }

    fn on_logon(&mut self, index: usize, now_ns: u64, message: &Message<'_>) {
        if message.msg_type() != msg_type::LOGON {
            self.counters.logons_refused_other += 1;
            self.refuse(index, now_ns, message, Refusal::NotLogon);
            return;
        }
        let sender = message.get(tags::SENDER_COMP_ID);
        let target = message.get(tags::TARGET_COMP_ID);
        let found = self.sessions.iter().position(|slot| {
            let config = slot.session.config();
            sender == Some(config.target_comp_id.as_bytes())
                && target == Some(config.sender_comp_id.as_bytes())
                && message.begin_string() == config.version.begin_string()
        });
        let Some(session_index) = found else {
            self.counters.logons_refused_unknown += 1;
            self.refuse(index, now_ns, message, Refusal::UnknownSession);
            return;
        };
        let slot = &mut self.sessions[session_index];
        let result = if slot.connection.is_some() {
            Err(Refusal::AlreadyLoggedOn)
        } else {
            slot.session
                .on_logon(now_ns, message, &mut self.connections[index].outbound)
        };
        match result {
            Ok(()) => {
                slot.connection = Some(index);
                self.connections[index].session = Some(session_index);
            }
            Err(refusal) => {
                match refusal {
                    Refusal::WrongPassword => self.counters.logons_refused_password += 1,
                    Refusal::AlreadyLoggedOn => self.counters.logons_refused_duplicate += 1,
                    _ => self.counters.logons_refused_other += 1,
                }
                self.refuse(index, now_ns, message, refusal);
            }
        }
    }

    /// A Logout outside any session's sequence (MsgSeqNum 1, not stored), then close: refusing a
    /// logon must not disturb the session it named.
    fn refuse(&mut self, index: usize, now_ns: u64, message: &Message<'_>, refusal: Refusal) {
        let mut text = TextBuffer::default();
        refusal.text(&mut text);
        let begin_string =
            match crate::session::FixVersion::from_begin_string(message.begin_string()) {
                Some(version) => version.begin_string(),
                None => b"FIX.4.4",
            };
        let mut writer = Writer::new(&mut self.scratch, begin_string, msg_type::LOGOUT);
        if let Some(sender) = message.get(tags::TARGET_COMP_ID) {
            writer.bytes(tags::SENDER_COMP_ID, sender);
        }
        if let Some(target) = message.get(tags::SENDER_COMP_ID) {
            writer.bytes(tags::TARGET_COMP_ID, target);
        }
        writer.u64(tags::MSG_SEQ_NUM, 1);
        writer.timestamp(tags::SENDING_TIME, now_ns);
        writer.bytes(tags::TEXT, text.as_bytes());
        if let Ok(length) = writer.finish() {
            let _ = self.connections[index]
                .outbound
                .push(&self.scratch[..length]);
        }
        self.close(index, now_ns);
    }

    fn refuse_raw(&mut self, index: usize, now_ns: u64, _bytes: &[u8], _refusal: Refusal) {
        self.close(index, now_ns);
    }

    fn business_reject(
        &mut self,
        session_index: usize,
        connection: usize,
        now_ns: u64,
        message: &Message<'_>,
        reason: u32,
        text: TextBuffer,
    ) {
        let ref_sequence = message.get(tags::MSG_SEQ_NUM);
        let ref_msg_type = message.msg_type();
        let ref_id = message.get(tags::CL_ORD_ID);
        let c = &mut self.connections[connection];
        let sent = self.sessions[session_index].session.send(
            now_ns,
            Some(&mut c.outbound),
            msg_type::BUSINESS_MESSAGE_REJECT,
            |writer| {
                if let Some(sequence) = ref_sequence {
                    writer.bytes(tags::REF_SEQ_NUM, sequence);
                }
                writer.bytes(tags::TEXT, text.as_bytes());
                writer.bytes(tags::REF_MSG_TYPE, ref_msg_type);
                if let Some(id) = ref_id {
                    writer.bytes(tags::BUSINESS_REJECT_REF_ID, id);
                }
                writer.u64(tags::BUSINESS_REJECT_REASON, u64::from(reason));
            },
        );
        if sent.is_err() {
            self.counters.slow_consumer_disconnects += 1;
            self.close(connection, now_ns);
        }
    }

    fn on_application(
        &mut self,
        session_index: usize,
        connection: usize,
        now_ns: u64,
        message: &Message<'_>,
    ) {
        let version = self.sessions[session_index].session.version();
        let result = match message.msg_type() {
            msg_type::NEW_ORDER_SINGLE => {
                self.new_order(session_index, connection, now_ns, message)
            }
            msg_type::ORDER_CANCEL_REQUEST => {
                self.cancel_or_replace(session_index, connection, now_ns, message, false)
            }
            msg_type::ORDER_CANCEL_REPLACE_REQUEST => {
                self.cancel_or_replace(session_index, connection, now_ns, message, true)
            }
            msg_type::ORDER_MASS_CANCEL_REQUEST if version == crate::session::FixVersion::Fix44 => {
                self.mass_cancel(session_index, connection, now_ns, message)
            }
            _ => {
                self.business_reject(
                    session_index,
                    connection,
                    now_ns,
                    message,
                    tags::business_reject::UNSUPPORTED_MESSAGE_TYPE,
                    text!("unsupported MsgType"),
                );
                Ok(())
            }
        };
        if let Err(error) = result {
            let sequence = message
                .get(tags::MSG_SEQ_NUM)
                .and_then(parse_u64)
                .unwrap_or(0);
            let c = &mut self.connections[connection];
            self.sessions[session_index].session.reject_field(
                now_ns,
                &mut c.outbound,
                sequence,
                message.msg_type(),
                error,
            );
        }
    }

    fn send_report(
        &mut self,
        session_index: usize,
        now_ns: u64,
        kind: &[u8],
        body: impl FnOnce(&mut Writer<'_>),
    ) {
        let slot = &mut self.sessions[session_index];
        let out = slot
            .connection
            .map(|index| &mut self.connections[index].outbound);
        let result = slot.session.send(now_ns, out, kind, body);
        if result.is_err() {
            if let Some(index) = slot.connection {
                self.counters.slow_consumer_disconnects += 1;
                self.close(index, now_ns);
            }
        }
    }

    fn local_exec_id(&mut self, now_ns: u64) -> TextBuffer {
        let id = self.local_exec_id_next;
        self.local_exec_id_next += 1;
        text!("G{now_ns}.{id}")
    }

    /// ExecutionReport Rejected for an order refused before submission.
    #[allow(clippy::too_many_arguments)]
    fn reject_order(
        &mut self,
        session_index: usize,
        now_ns: u64,
        cl_ord_id: &[u8],
        message: &Message<'_>,
        reason: BusinessReason,
    ) {
        let version = self.sessions[session_index].session.version();
        let exec_id = self.local_exec_id(now_ns);
        let text = reason.text();
        let side = match message.get(tags::SIDE) {
            Some(b"2") => Side::Sell,
            _ => Side::Buy,
        };
        let symbol = message.get(tags::SYMBOL).unwrap_or(b"NONE");
        let account = message.get(tags::ACCOUNT);
        self.send_report(
            session_index,
            now_ns,
            msg_type::EXECUTION_REPORT,
            |writer| {
                let report = Report {
                    order_id: None,
                    cl_ord_id,
                    orig_cl_ord_id: None,
                    exec_id: exec_id.as_bytes(),
                    exec_type: ExecType::Rejected,
                    ord_status: b'8',
                    account,
                    symbol,
                    side,
                    order_type: None,
                    time_in_force: None,
                    order_qty: 0,
                    price: None,
                    last: None,
                    cum_qty: 0,
                    leaves_qty: 0,
                    avg_px: (0, 0),
                    exponents: (0, 0),
                    transact_time_ns: now_ns,
                    ord_rej_reason: Some(reason.ord_rej_reason(version)),
                    text: Some(text.as_bytes()),
                };
                app::write_execution_report(writer, version, &report);
            },
        );
    }

    fn new_order(
        &mut self,
        session_index: usize,
        _connection: usize,
        now_ns: u64,
        message: &Message<'_>,
    ) -> Result<(), crate::codec::FieldError> {
        let slot = &self.sessions[session_index];
        let account = slot.session.config().account.as_deref();
        let intent = match app::parse_new_order(message, &self.instruments, account) {
            Ok(intent) => intent,
            Err(AppReject::Field(error)) => return Err(error),
            Err(AppReject::Business(reason)) => {
                let cl_ord_id = message.get(tags::CL_ORD_ID).unwrap_or(b"NONE");
                self.reject_order(session_index, now_ns, cl_ord_id, message, reason);
                return Ok(());
            }
        };
        if self.possible_duplicate(session_index, message, &intent.cl_ord_id) {
            return Ok(());
        }
        let orders = &self.sessions[session_index].orders;
        let refusal = if orders.cl_ord_id_taken(&intent.cl_ord_id) {
            Some(BusinessReason::DuplicateClOrdId)
        } else if !orders.has_room() || self.submissions.len() == SUBMISSIONS_MAX {
            Some(BusinessReason::Capacity)
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.reject_order(
                session_index,
                now_ns,
                intent.cl_ord_id.as_bytes(),
                message,
                reason,
            );
            return Ok(());
        }
        let instrument = self.instruments.get(intent.instrument);
        let new_order = matcher::NewOrder {
            instrument_id: instrument.instrument_id,
            account_id: self.sessions[session_index].session.config().account_id,
            client_order_id: 0,
            side: intent.side,
            order_type: intent.order_type,
            time_in_force: intent.time_in_force,
            stp_mode: intent.stp_mode,
            post_only: intent.post_only,
            price: intent.price,
            quantity: intent.quantity,
        };
        let command = matcher::Command::NewOrder(new_order);
        let Some(client_sequence) = self.submit(command.encode(), Some(intent.cl_ord_id), 0) else {
            return Ok(());
        };
        let orders = &mut self.sessions[session_index].orders;
        orders.use_cl_ord_id(intent.cl_ord_id);
        let inserted = orders.insert(Order::pending_new(
            intent.cl_ord_id,
            client_sequence,
            intent.instrument,
            &new_order,
        ));
        debug_assert!(inserted.is_some(), "room was checked");
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn cancel_reject(
        &mut self,
        session_index: usize,
        now_ns: u64,
        order_id: Option<u64>,
        cl_ord_id: &[u8],
        orig_cl_ord_id: &[u8],
        ord_status: u8,
        replace: bool,
        reason: BusinessReason,
    ) {
        let version = self.sessions[session_index].session.version();
        let account = self.sessions[session_index]
            .session
            .config()
            .account
            .clone();
        self.send_report(
            session_index,
            now_ns,
            msg_type::ORDER_CANCEL_REJECT,
            |writer| {
                app::write_cancel_reject(
                    writer,
                    version,
                    order_id,
                    cl_ord_id,
                    orig_cl_ord_id,
                    ord_status,
                    replace,
                    reason,
                    account.as_deref().map(str::as_bytes),
                );
            },
        );
    }

    fn cancel_or_replace(
        &mut self,
        session_index: usize,
        _connection: usize,
        now_ns: u64,
        message: &Message<'_>,
        replace: bool,
    ) -> Result<(), crate::codec::FieldError> {
        let field = |result: Result<ClOrdId, AppReject>| match result {
            Ok(id) => Ok(id),
            Err(AppReject::Field(error)) => Err(error),
            Err(AppReject::Business(_)) => Err(crate::codec::FieldError::Value {
                tag: tags::CL_ORD_ID,
            }),
        };
        let cl_ord_id = field(app::parse_cl_ord_id(message, tags::CL_ORD_ID))?;
        let orig = field(app::parse_cl_ord_id(message, tags::ORIG_CL_ORD_ID))?;
        message.required(tags::SIDE)?;
        message.required(tags::SYMBOL)?;
        if self.possible_duplicate(session_index, message, &cl_ord_id) {
            return Ok(());
        }
        let orders = &self.sessions[session_index].orders;
        let Some(slot) = orders.by_cl_ord_id(&orig) else {
            self.cancel_reject(
                session_index,
                now_ns,
                None,
                cl_ord_id.as_bytes(),
                orig.as_bytes(),
                b'8',
                replace,
                BusinessReason::UnknownOrder,
            );
            return Ok(());
        };
        let order = *orders.get(slot);
        let mut refusal = if orders.cl_ord_id_used(&cl_ord_id) {
            Some(BusinessReason::DuplicateClOrdId)
        } else if order.change_pending || order.state == OrderState::PendingNew {
            Some(BusinessReason::PendingChange)
        } else if self.submissions.len() == SUBMISSIONS_MAX {
            Some(BusinessReason::Capacity)
        } else {
            None
        };
        let mut new_price_quantity = (order.price, order.quantity);
        if replace && refusal.is_none() {
            let instrument = self.instruments.get(order.instrument);
            let parsed = (|| -> Result<(i64, u64), AppReject> {
                if app::parse_side(message)? != order.side
                    || message.get(tags::SYMBOL) != Some(instrument.symbol.as_bytes())
                    || app::parse_ord_type(message)? != order.order_type
                {
                    return Err(AppReject::Business(BusinessReason::Unsupported(
                        tags::ORD_TYPE,
                    )));
                }
                let quantity = app::parse_quantity(message, instrument)?;
                let price = app::parse_price(message, tags::PRICE, instrument)?.ok_or(
                    AppReject::Field(crate::codec::FieldError::Missing { tag: tags::PRICE }),
                )?;
                Ok((price, quantity))
            })();
            match parsed {
                Ok(values) => new_price_quantity = values,
                Err(AppReject::Field(error)) => return Err(error),
                Err(AppReject::Business(reason)) => refusal = Some(reason),
            }
        }
        if order.order_type == OrderType::Market && replace && refusal.is_none() {
            refusal = Some(BusinessReason::Unsupported(tags::ORD_TYPE));
        }
        if let Some(reason) = refusal {
            self.cancel_reject(
                session_index,
                now_ns,
                Some(order.order_id),
                cl_ord_id.as_bytes(),
                orig.as_bytes(),
                order.live_status(),
                replace,
                reason,
            );
            return Ok(());
        }
        let account_id = self.sessions[session_index].session.config().account_id;
        let command = if replace {
            matcher::Command::Replace(matcher::Replace {
                account_id,
                order_id: order.order_id,
                client_order_id: 0,
                price: new_price_quantity.0,
                quantity: new_price_quantity.1,
            })
        } else {
            matcher::Command::Cancel(matcher::Cancel {
                account_id,
                order_id: order.order_id,
            })
        };
        let Some(client_sequence) = self.submit(command.encode(), Some(cl_ord_id), 0) else {
            return Ok(());
        };
        let orders = &mut self.sessions[session_index].orders;
        let pending = if replace {
            Pending::Replace {
                cl_ord_id,
                order_id: order.order_id,
                client_order_id: client_sequence,
            }
        } else {
            Pending::Cancel {
                cl_ord_id,
                order_id: order.order_id,
            }
        };
        orders.use_cl_ord_id(cl_ord_id);
        if orders.push_pending(pending) {
            orders.get_mut(slot).change_pending = true;
        }
        Ok(())
    }

    fn mass_cancel(
        &mut self,
        session_index: usize,
        _connection: usize,
        now_ns: u64,
        message: &Message<'_>,
    ) -> Result<(), crate::codec::FieldError> {
        let cl_ord_id = match app::parse_cl_ord_id(message, tags::CL_ORD_ID) {
            Ok(id) => id,
            Err(AppReject::Field(error)) => return Err(error),
            Err(AppReject::Business(_)) => {
                return Err(crate::codec::FieldError::Value {
                    tag: tags::CL_ORD_ID,
                })
            }
        };
        let request_type = message.required_char(tags::MASS_CANCEL_REQUEST_TYPE)?;
        if self.possible_duplicate(session_index, message, &cl_ord_id) {
            return Ok(());
        }
        let side = match message.optional_char(tags::SIDE)? {
            None => None,
            Some(b'1') => Some(Side::Buy),
            Some(b'2') => Some(Side::Sell),
            Some(_) => return Err(crate::codec::FieldError::Value { tag: tags::SIDE }),
        };
        // 530: 1 = cancel orders for a security, 7 = cancel all orders; others unsupported.
        let instrument = match request_type {
            b'1' => {
                let symbol = message.required(tags::SYMBOL)?;
                match self.instruments.by_symbol(symbol) {
                    Some(index) => Some(self.instruments.get(index).instrument_id),
                    None => {
                        self.mass_cancel_report(
                            session_index,
                            now_ns,
                            None,
                            cl_ord_id,
                            request_type,
                            None,
                            1,
                        );
                        return Ok(());
                    }
                }
            }
            b'7' => None,
            b'2'..=b'6' | b'8' | b'9' | b'A' => {
                self.mass_cancel_report(
                    session_index,
                    now_ns,
                    None,
                    cl_ord_id,
                    request_type,
                    None,
                    0,
                );
                return Ok(());
            }
            _ => {
                return Err(crate::codec::FieldError::Value {
                    tag: tags::MASS_CANCEL_REQUEST_TYPE,
                })
            }
        };
        let orders = &self.sessions[session_index].orders;
        if orders.cl_ord_id_used(&cl_ord_id) || self.submissions.len() == SUBMISSIONS_MAX {
            self.mass_cancel_report(
                session_index,
                now_ns,
                None,
                cl_ord_id,
                request_type,
                None,
                99,
            );
            return Ok(());
        }
        let account_id = self.sessions[session_index].session.config().account_id;
        let command = matcher::Command::MassCancel(matcher::MassCancel {
            account_id,
            instrument_id: instrument,
            side,
        });
        if self
            .submit(command.encode(), Some(cl_ord_id), request_type)
            .is_some()
        {
            let orders = &mut self.sessions[session_index].orders;
            orders.use_cl_ord_id(cl_ord_id);
            if !orders.push_pending(Pending::MassCancel {
                cl_ord_id,
                request_type,
            }) {
                // The command goes ahead; its report cannot be matched and is not sent.
            }
        }
        Ok(())
    }

    /// OrderMassCancelReport (r): `affected` orders, or rejected with `reject_reason` (532).
    #[allow(clippy::too_many_arguments)]
    fn mass_cancel_report(
        &mut self,
        session_index: usize,
        now_ns: u64,
        order_id: Option<u64>,
        cl_ord_id: ClOrdId,
        request_type: u8,
        affected: Option<u64>,
        reject_reason: u32,
    ) {
        self.send_report(
            session_index,
            now_ns,
            msg_type::ORDER_MASS_CANCEL_REPORT,
            |writer| {
                writer.bytes(tags::CL_ORD_ID, cl_ord_id.as_bytes());
                match order_id {
                    Some(order_id) => writer.u64(tags::ORDER_ID, order_id),
                    None => writer.bytes(tags::ORDER_ID, b"NONE"),
                }
                writer.char(tags::MASS_CANCEL_REQUEST_TYPE, request_type);
                match affected {
                    Some(count) => {
                        writer.char(tags::MASS_CANCEL_RESPONSE, request_type);
                        writer.u64(tags::TOTAL_AFFECTED_ORDERS, count);
                    }
                    None => {
                        writer.char(tags::MASS_CANCEL_RESPONSE, b'0');
                        writer.u64(tags::MASS_CANCEL_REJECT_REASON, u64::from(reject_reason));
                    }
                }
            },
        );
    }

    /// A committed command and the events the matcher produced for it. Commands of accounts
    /// that belong to no session are looked at only for trades against our resting orders.
    /// `now_ns` is the SendingTime of the reports; TransactTime is the log's `timestamp_ns`.
    pub fn on_committed(
        &mut self,
        now_ns: u64,
        sequence: u64,
        timestamp_ns: u64,
        record: &CommandRecord,
        events: &[Event],
    ) {
        let own = self
            .sessions_by_account
            .get(&record.account_id.get())
            .copied();
        let kind = CommandKind::from_u8(record.kind);
        // The in-flight request this command answers, if it is ours.
        let context = match (own, kind) {
            (Some(session), Some(CommandKind::Cancel)) => {
                let order_id = record.order_id.get();
                self.sessions[session].orders.take_pending(|pending| {
                    matches!(pending, Pending::Cancel { order_id: id, .. } if *id == order_id)
                })
            }
            (Some(session), Some(CommandKind::Replace)) => {
                let client_order_id = record.client_order_id.get();
                self.sessions[session].orders.take_pending(|pending| {
                    matches!(pending, Pending::Replace { client_order_id: id, .. } if *id == client_order_id)
                })
            }
            (Some(session), Some(CommandKind::MassCancel)) => self.sessions[session]
                .orders
                .take_pending(|pending| matches!(pending, Pending::MassCancel { .. })),
            _ => None,
        };
        if let (
            Some(session),
            Some(Pending::Cancel { order_id, .. } | Pending::Replace { order_id, .. }),
        ) = (own, context)
        {
            if let Some(slot) = self.sessions[session].orders.by_order_id(order_id) {
                self.sessions[session].orders.get_mut(slot).change_pending = false;
            }
        }
        for (event_index, event) in events.iter().enumerate() {
            let mut exec_id = TextBuffer::default();
            {
                use core::fmt::Write;
                let _ = write!(exec_id, "{sequence}.{event_index}");
            }
            debug_assert!(exec_id.as_bytes().len() < EXEC_ID_LENGTH_MAX);
            let ctx = Ctx {
                now_ns,
                sequence,
                timestamp_ns,
                exec_id: &exec_id,
            };
            match event.event_kind() {
                Some(EventKind::Accepted) => self.on_accepted(&ctx, event),
                Some(EventKind::Rejected) => self.on_rejected(&ctx, event, own, context),
                Some(EventKind::Trade) => self.on_trade(&ctx, event),
                Some(EventKind::Cancelled) => self.on_cancelled(&ctx, event, context),
                Some(EventKind::Replaced) => self.on_replaced(&ctx, event, context),
                Some(EventKind::MassCancelled) => {
                    if let (
                        Some(session),
                        Some(Pending::MassCancel {
                            cl_ord_id,
                            request_type,
                        }),
                    ) = (own, context)
                    {
                        self.counters.reports += 1;
                        self.mass_cancel_report(
                            session,
                            now_ns,
                            Some(sequence),
                            cl_ord_id,
                            request_type,
                            Some(event.quantity.get()),
                            0,
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn session_of(&self, account_id: u32) -> Option<usize> {
        self.sessions_by_account.get(&account_id).copied()
    }

    fn on_accepted(&mut self, ctx: &Ctx<'_>, event: &Event) {
        let Some(session) = self.session_of(event.account_id.get()) else {
            return;
        };
        let orders = &mut self.sessions[session].orders;
        let Some(slot) = orders.by_client_order_id(event.aux_a.get()) else {
            return;
        };
        if orders.get(slot).state != OrderState::PendingNew {
            return;
        }
        orders.accepted(slot, event.order_id.get());
        self.report(session, slot, ctx, ExecType::New, None, None, None, None);
    }

    fn on_rejected(
        &mut self,
        ctx: &Ctx<'_>,
        event: &Event,
        own: Option<usize>,
        context: Option<Pending>,
    ) {
        let Some(session) = own else {
            return;
        };
        let reason =
            matcher::reject_reason_from_u8(event.reason).unwrap_or(RejectReason::Malformed);
        match CommandKind::from_u8(event.aux_b.get() as u8) {
            Some(CommandKind::NewOrder) => {
                let orders = &mut self.sessions[session].orders;
                let Some(slot) = orders.by_client_order_id(event.aux_a.get()) else {
                    return;
                };
                if orders.get(slot).state != OrderState::PendingNew {
                    return;
                }
                let version = self.sessions[session].session.version();
                self.report(
                    session,
                    slot,
                    ctx,
                    ExecType::Rejected,
                    None,
                    Some(BusinessReason::Matcher(reason).ord_rej_reason(version)),
                    Some(BusinessReason::Matcher(reason).text()),
                    None,
                );
                self.sessions[session].orders.remove(slot);
            }
            Some(CommandKind::Cancel | CommandKind::Replace) => {
                let (cl_ord_id, order_id, replace) = match context {
                    Some(Pending::Cancel {
                        cl_ord_id,
                        order_id,
                    }) => (cl_ord_id, order_id, false),
                    Some(Pending::Replace {
                        cl_ord_id,
                        order_id,
                        ..
                    }) => (cl_ord_id, order_id, true),
                    _ => return,
                };
                let orders = &self.sessions[session].orders;
                let (orig, status) = match orders.by_order_id(order_id) {
                    Some(slot) => (orders.get(slot).cl_ord_id, orders.get(slot).live_status()),
                    None => (cl_ord_id, b'8'),
                };
                self.counters.reports += 1;
                self.cancel_reject(
                    session,
                    ctx.now_ns,
                    Some(order_id),
                    cl_ord_id.as_bytes(),
                    orig.as_bytes(),
                    status,
                    replace,
                    BusinessReason::Matcher(reason),
                );
            }
            Some(CommandKind::MassCancel) => {
                if let Some(Pending::MassCancel {
                    cl_ord_id,
                    request_type,
                }) = context
                {
                    let reject_reason = if reason == RejectReason::UnknownInstrument {
                        1
                    } else {
                        99
                    };
                    self.mass_cancel_report(
                        session,
                        ctx.now_ns,
                        None,
                        cl_ord_id,
                        request_type,
                        None,
                        reject_reason,
                    );
                }
            }
            _ => {}
        }
    }

    fn on_trade(&mut self, ctx: &Ctx<'_>, event: &Event) {
        let fill = (event.quantity.get(), event.price.get());
        let taker = (event.account_id.get(), event.order_id.get());
        let maker = (event.account_id_maker.get(), event.aux_a.get());
        for (account_id, order_id) in [taker, maker] {
            let Some(session) = self.session_of(account_id) else {
                continue;
            };
            let orders = &mut self.sessions[session].orders;
            let Some(slot) = orders.by_order_id(order_id) else {
                continue;
            };
            let order = orders.get_mut(slot);
            order.cum_quantity += fill.0;
            order.leaves_quantity = order.leaves_quantity.saturating_sub(fill.0);
            order.notional = order
                .notional
                .saturating_add(i128::from(fill.1) * i128::from(fill.0));
            let done = order.leaves_quantity == 0;
            let status = order.live_status();
            self.report(
                session,
                slot,
                ctx,
                ExecType::Trade,
                Some(fill),
                None,
                None,
                Some(status),
            );
            // An IOC remainder or an STP cancel may follow for an order with leaves; only a
            // complete fill ends it here.
            if done {
                self.sessions[session].orders.remove(slot);
            }
        }
    }

    fn on_cancelled(&mut self, ctx: &Ctx<'_>, event: &Event, context: Option<Pending>) {
        let Some(session) = self.session_of(event.account_id.get()) else {
            return;
        };
        let orders = &mut self.sessions[session].orders;
        let order_id = event.order_id.get();
        let Some(slot) = orders.by_order_id(order_id) else {
            return;
        };
        let reason = matcher::cancel_reason_from_u8(event.reason);
        let left = event.aux_b.get();
        let order = orders.get_mut(slot);
        if reason == Some(CancelReason::SelfTrade) && left > 0 {
            // STP decrement: the order shrinks and lives on.
            order.quantity = order.quantity.saturating_sub(event.quantity.get());
            order.leaves_quantity = left;
            let status = order.live_status();
            self.report(
                session,
                slot,
                ctx,
                ExecType::Restated,
                None,
                None,
                Some(crate::text!("self-trade prevention decrement")),
                Some(status),
            );
            return;
        }
        order.leaves_quantity = 0;
        let request = match context {
            Some(
                Pending::Cancel {
                    cl_ord_id,
                    order_id: id,
                }
                | Pending::Replace {
                    cl_ord_id,
                    order_id: id,
                    ..
                },
            ) if id == order_id && reason == Some(CancelReason::User) => Some(cl_ord_id),
            _ => None,
        };
        let (exec_type, status) = if reason == Some(CancelReason::Expired) {
            (ExecType::Expired, b'C')
        } else {
            (ExecType::Canceled, b'4')
        };
        let text = match reason {
            Some(CancelReason::IocRemainder) => Some(crate::text!("IOC remainder")),
            Some(CancelReason::SelfTrade) => Some(crate::text!("self-trade prevention")),
            Some(CancelReason::MassCancel) => Some(crate::text!("mass cancel")),
            Some(CancelReason::KillSwitch) => Some(crate::text!("kill switch")),
            _ => None,
        };
        match request {
            Some(cl_ord_id) => {
                self.report_as(session, slot, ctx, exec_type, status, Some(cl_ord_id), text)
            }
            None => self.report(
                session,
                slot,
                ctx,
                exec_type,
                None,
                None,
                text,
                Some(status),
            ),
        }
        self.sessions[session].orders.remove(slot);
    }

    fn on_replaced(&mut self, ctx: &Ctx<'_>, event: &Event, context: Option<Pending>) {
        let Some(session) = self.session_of(event.account_id.get()) else {
            return;
        };
        let Some(Pending::Replace {
            cl_ord_id,
            client_order_id,
            ..
        }) = context
        else {
            return;
        };
        let orders = &mut self.sessions[session].orders;
        let Some(slot) = orders.by_order_id(event.order_id.get()) else {
            return;
        };
        let orig = orders.get(slot).cl_ord_id;
        orders.renamed(slot, cl_ord_id, client_order_id);
        let order = orders.get_mut(slot);
        order.price = event.price.get();
        order.quantity = event.quantity.get();
        order.leaves_quantity = event.aux_b.get();
        let status = order.live_status();
        self.report_with_orig(session, slot, ctx, ExecType::Replaced, status, orig);
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        session: usize,
        slot: u32,
        ctx: &Ctx<'_>,
        exec_type: ExecType,
        last: Option<(u64, i64)>,
        ord_rej_reason: Option<u32>,
        text: Option<TextBuffer>,
        status: Option<u8>,
    ) {
        let order = *self.sessions[session].orders.get(slot);
        let status = status.unwrap_or(match exec_type {
            ExecType::Rejected => b'8',
            _ => order.live_status(),
        });
        self.write_report(
            session,
            &order,
            ctx,
            exec_type,
            status,
            last,
            ord_rej_reason,
            text,
            None,
            None,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn report_as(
        &mut self,
        session: usize,
        slot: u32,
        ctx: &Ctx<'_>,
        exec_type: ExecType,
        status: u8,
        request_cl_ord_id: Option<ClOrdId>,
        text: Option<TextBuffer>,
    ) {
        let order = *self.sessions[session].orders.get(slot);
        let orig = order.cl_ord_id;
        self.write_report(
            session,
            &order,
            ctx,
            exec_type,
            status,
            None,
            None,
            text,
            request_cl_ord_id,
            Some(orig),
        );
    }

    fn report_with_orig(
        &mut self,
        session: usize,
        slot: u32,
        ctx: &Ctx<'_>,
        exec_type: ExecType,
        status: u8,
        orig: ClOrdId,
    ) {
        let order = *self.sessions[session].orders.get(slot);
        self.write_report(
            session,
            &order,
            ctx,
            exec_type,
            status,
            None,
            None,
            None,
            None,
            Some(orig),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn write_report(
        &mut self,
        session: usize,
        order: &Order,
        ctx: &Ctx<'_>,
        exec_type: ExecType,
        status: u8,
        last: Option<(u64, i64)>,
        ord_rej_reason: Option<u32>,
        text: Option<TextBuffer>,
        cl_ord_id: Option<ClOrdId>,
        orig_cl_ord_id: Option<ClOrdId>,
    ) {
        self.counters.reports += 1;
        let version = self.sessions[session].session.version();
        let account = self.sessions[session].session.config().account.clone();
        let instrument = self.instruments.get(order.instrument).clone();
        let cl_ord_id = cl_ord_id.unwrap_or(order.cl_ord_id);
        let leaves = if matches!(
            exec_type,
            ExecType::Canceled | ExecType::Expired | ExecType::Rejected
        ) {
            0
        } else {
            order.leaves_quantity
        };
        let exec_id = *ctx.exec_id;
        self.send_report(session, ctx.now_ns, msg_type::EXECUTION_REPORT, |writer| {
            let report = Report {
                order_id: (order.order_id != 0).then_some(order.order_id),
                cl_ord_id: cl_ord_id.as_bytes(),
                orig_cl_ord_id: orig_cl_ord_id.as_ref().map(ClOrdId::as_bytes),
                exec_id: exec_id.as_bytes(),
                exec_type,
                ord_status: status,
                account: account.as_deref().map(str::as_bytes),
                symbol: instrument.symbol.as_bytes(),
                side: order.side,
                order_type: Some(order.order_type),
                time_in_force: Some(order.time_in_force),
                order_qty: order.quantity,
                price: (order.order_type == OrderType::Limit).then_some(order.price),
                last,
                cum_qty: order.cum_quantity,
                leaves_qty: leaves,
                avg_px: order.avg_px(instrument.price_exponent),
                exponents: (instrument.price_exponent, instrument.quantity_exponent),
                transact_time_ns: ctx.timestamp_ns,
                ord_rej_reason,
                text: text.as_ref().map(TextBuffer::as_bytes),
            };
            app::write_execution_report(writer, version, &report);
        });
        let _ = ctx.sequence;
    }
}

struct Ctx<'a> {
    now_ns: u64,
    sequence: u64,
    timestamp_ns: u64,
    exec_id: &'a TextBuffer,
}

/// The value of the first `tag=` field in raw bytes, as an integer (for messages that do not
/// parse whole).
fn scan_u64(bytes: &[u8], tag: u32) -> Option<u64> {
    let mut pattern = [0u8; 12];
    let mut text = TextBuffer::default();
    {
        use core::fmt::Write;
        let _ = write!(text, "{tag}=");
    }
    let pattern_length = text.as_bytes().len() + 1;
    pattern[0] = SOH;
    pattern[1..pattern_length].copy_from_slice(text.as_bytes());
    let pattern = &pattern[..pattern_length];
    let start = bytes.windows(pattern.len()).position(|w| w == pattern)? + pattern.len();
    let end = bytes[start..].iter().position(|&b| b == SOH)? + start;
    parse_u64(&bytes[start..end])
}
