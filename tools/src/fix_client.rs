//! A FIX 4.2/4.4 initiator over TCP, for the demo's simulated traders and `exchange loadgen
//! --fix`: logon (with sequence reset), heartbeats and test requests, checked framing and
//! MsgSeqNum continuity on what it receives, and application messages built with the gateway's
//! codec. Blocking writes, non-blocking reads: one thread drives one session.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gateway::codec::{frame, Framed, Message, Writer};
use gateway::tags::{self, msg_type};
use sequencer::clock::unix_now_ns;

/// Largest message this client builds.
const OUT_MAX: usize = 1024;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Most unread bytes held (a gateway that sends faster than we read is a bug at this size).
const BUFFER_MAX: usize = 16 << 20;

/// One FIX session, as the initiator.
pub struct FixConnection {
    stream: TcpStream,
    version: String,
    sender: String,
    target: String,
    heartbeat: Duration,
    sequence_out: u64,
    expected_in: u64,
    buffer: Vec<u8>,
    start: usize,
    chunk: Box<[u8]>,
    out: [u8; OUT_MAX],
    last_sent: Instant,
    /// Messages received (all types).
    pub received: u64,
    /// Print every message sent and received to stderr (`FIX_TRACE=1`).
    trace: bool,
}

/// A FIX message with `|` for SOH.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\x01', "|")
}

impl FixConnection {
    /// Connects to `address` (retrying until `timeout`), logs on with ResetSeqNumFlag and waits
    /// for the gateway's Logon.
    pub fn logon(
        address: &str,
        version: &str,
        sender: &str,
        target: &str,
        heartbeat_s: u32,
        timeout: Duration,
    ) -> Result<FixConnection> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match TcpStream::connect(address) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("connecting to {address}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut connection = FixConnection {
            stream,
            version: version.to_string(),
            sender: sender.to_string(),
            target: target.to_string(),
            heartbeat: Duration::from_secs(u64::from(heartbeat_s.max(1))),
            sequence_out: 0,
            expected_in: 1,
            buffer: Vec::with_capacity(READ_CHUNK),
            start: 0,
            chunk: vec![0u8; READ_CHUNK].into_boxed_slice(),
            out: [0; OUT_MAX],
            last_sent: Instant::now(),
            received: 0,
            trace: std::env::var_os("FIX_TRACE").is_some_and(|v| v == "1"),
        };
        let heartbeat_text = heartbeat_s.to_string();
        connection.send(
            msg_type::LOGON,
            &[
                (tags::ENCRYPT_METHOD, b"0"),
                (tags::HEART_BT_INT, heartbeat_text.as_bytes()),
                (tags::RESET_SEQ_NUM_FLAG, b"Y"),
            ],
        )?;
        let mut logged_on = false;
        let mut refused = None;
        while !logged_on {
            if Instant::now() >= deadline {
                bail!("{sender}: no Logon answer from {address} within {timeout:?}");
            }
            connection.poll(&mut |message| match message.msg_type() {
                msg_type::LOGON => logged_on = true,
                msg_type::LOGOUT | msg_type::REJECT => {
                    refused = Some(
                        String::from_utf8_lossy(message.get(tags::TEXT).unwrap_or(b""))
                            .into_owned(),
                    )
                }
                _ => {}
            })?;
            if let Some(text) = refused {
                bail!("{sender}: the gateway refused the logon: {text}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(connection)
    }

    /// The session's SenderCompID (ours).
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// Sends one message: the standard header, then `fields` in order.
    pub fn send(&mut self, message_type: &[u8], fields: &[(u32, &[u8])]) -> Result<()> {
        self.sequence_out += 1;
        let mut writer = Writer::new(&mut self.out, self.version.as_bytes(), message_type);
        writer.bytes(tags::SENDER_COMP_ID, self.sender.as_bytes());
        writer.bytes(tags::TARGET_COMP_ID, self.target.as_bytes());
        writer.u64(tags::MSG_SEQ_NUM, self.sequence_out);
        writer.timestamp(tags::SENDING_TIME, unix_now_ns());
        for (tag, value) in fields {
            writer.bytes(*tag, value);
        }
        let length = writer.finish().context("encoding a FIX message")?;
        if self.trace {
            eprintln!("{} > {}", self.sender, shown(&self.out[..length]));
        }
        self.write_all(length)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn write_all(&mut self, length: usize) -> Result<()> {
        let mut written = 0;
        while written < length {
            match self.stream.write(&self.out[written..length]) {
                Ok(0) => bail!("{}: the gateway closed the connection", self.sender),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // The gateway is slow to read: drain what it sent meanwhile? Not needed
                    // at these sizes; wait for the socket to drain.
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("sending to the gateway"),
            }
        }
        Ok(())
    }

    /// Reads what has arrived and hands every application message (and Logon, Logout,
    /// Reject) to `on_message`; answers TestRequests and sends a Heartbeat when idle. Returns the
    /// messages handled. Errors: the connection closed, a bad frame, a MsgSeqNum out of order.
    pub fn poll(&mut self, on_message: &mut dyn FnMut(&Message<'_>)) -> Result<usize> {
        loop {
            match self.stream.read(&mut self.chunk) {
                Ok(0) => bail!("{}: the gateway closed the connection", self.sender),
                Ok(n) => {
                    if self.buffer.len() - self.start + n > BUFFER_MAX {
                        bail!("{}: more than {BUFFER_MAX} bytes unread", self.sender);
                    }
                    self.buffer.extend_from_slice(&self.chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading from the gateway"),
            }
        }
        let mut handled = 0;
        let mut test_requests: Vec<Vec<u8>> = Vec::new();
        loop {
            let bytes = &self.buffer[self.start..];
            let length = match frame(bytes) {
                Ok(Framed::Complete { length }) => length,
                Ok(Framed::Incomplete) => break,
                Err(e) => bail!("{}: a bad frame from the gateway: {e}", self.sender),
            };
            let message = Message::parse(&bytes[..length])
                .map_err(|e| anyhow::anyhow!("{}: a bad message: {e:?}", self.sender))?;
            let sequence = message.required_u64(tags::MSG_SEQ_NUM).unwrap_or(0);
            if sequence != self.expected_in {
                bail!(
                    "{}: MsgSeqNum {sequence} from the gateway, expected {}",
                    self.sender,
                    self.expected_in
                );
            }
            self.expected_in += 1;
            self.received += 1;
            if self.trace {
                eprintln!("{} < {}", self.sender, shown(message.bytes()));
            }
            match message.msg_type() {
                msg_type::HEARTBEAT => {}
                msg_type::TEST_REQUEST => {
                    test_requests.push(message.get(tags::TEST_REQ_ID).unwrap_or(b"?").to_vec())
                }
                _ => {
                    on_message(&message);
                    handled += 1;
                }
            }
            self.start += length;
        }
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > READ_CHUNK {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        for id in test_requests {
            self.send(msg_type::HEARTBEAT, &[(tags::TEST_REQ_ID, &id)])?;
        }
        if self.last_sent.elapsed() >= self.heartbeat {
            self.send(msg_type::HEARTBEAT, &[])?;
        }
        Ok(handled)
    }

    /// Sends Logout and waits (up to `timeout`) for the gateway's.
    pub fn logout(mut self, timeout: Duration) -> Result<()> {
        self.send(msg_type::LOGOUT, &[])?;
        let deadline = Instant::now() + timeout;
        let mut done = false;
        while !done && Instant::now() < deadline {
            match self.poll(&mut |message| done |= message.msg_type() == msg_type::LOGOUT) {
                Ok(_) => {}
                // The gateway may close right after its Logout.
                Err(_) => break,
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}
