//! A scripted FIX client and a harness that runs the gateway core over a real matcher.
#![allow(dead_code)]

use gateway::app::Instrument;
use gateway::codec::{checksum, frame, Framed, Message};
use gateway::{ConnectionId, FixVersion, Gateway, GatewayConfig, MemoryStore, SessionConfig};
use matcher::{Command, Config, Event, InstrumentConfig, Matcher};

/// 2023-11-14 22:13:20 UTC.
pub const T0: u64 = 1_700_000_000_000_000_000;
pub const SECOND: u64 = 1_000_000_000;

/// FIX text with `|` for SOH.
pub fn fix(text: &str) -> Vec<u8> {
    text.bytes()
        .map(|b| if b == b'|' { 1 } else { b })
        .collect()
}

pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\u{1}', "|")
}

/// A complete message from its body (from MsgType on), computing BodyLength and CheckSum by the
/// spec's definitions (independent of the gateway's encoder).
pub fn with_trailer(begin_string: &str, body: &str) -> String {
    let head = format!("8={begin_string}|9={}|{body}", body.len());
    let sum = checksum(&fix(&head));
    format!("{head}10={sum:03}|")
}

pub fn session_config(version: FixVersion, client: &str, account_id: u32) -> SessionConfig {
    SessionConfig {
        version,
        sender_comp_id: "EXCH".into(),
        target_comp_id: client.into(),
        password: None,
        heartbeat_interval_s_min: 1,
        heartbeat_interval_s_max: 120,
        throttle_messages_per_second: 100,
        cancel_on_disconnect: false,
        account_id,
        account: None,
    }
}

pub fn acme() -> InstrumentConfig {
    InstrumentConfig {
        instrument_id: 1,
        symbol: *b"ACME\0\0\0\0",
        price_exponent: -2,
        quantity_exponent: 0,
        tick_size: 5,
        lot_size: 1,
        price_min: 5,
        price_levels: 100_000,
        band_width_ticks: 0,
        reference_price: 10_000,
        quantity_min_lots: 1,
        quantity_max_lots: 1_000_000,
        notional_max: 0,
    }
}

/// The gateway over a real matcher: submissions are "committed" in order with increasing
/// sequence numbers and fed back through `on_committed`.
pub struct Harness {
    pub gateway: Gateway<MemoryStore>,
    pub matcher: Matcher,
    pub sequence: u64,
    pub now: u64,
}

impl Harness {
    pub fn new(sessions: Vec<SessionConfig>) -> Harness {
        Harness::continuing(sessions, 1)
    }

    /// A gateway whose next client sequence is `client_sequence_next` (as after a restart).
    pub fn continuing(sessions: Vec<SessionConfig>, client_sequence_next: u64) -> Harness {
        let mut matcher = Matcher::new(Config {
            order_capacity: 1024,
            level_capacity: 1 << 18,
            instrument_capacity: 4,
            account_capacity: 64,
        })
        .unwrap();
        let mut events: Vec<Event> = Vec::new();
        matcher.apply(1, T0, &Command::AddInstrument(acme()).encode(), &mut events);
        let stores = sessions
            .iter()
            .map(|_| MemoryStore::new(1 << 16, 256))
            .collect();
        let config = GatewayConfig {
            sessions,
            instruments: vec![Instrument::from_matcher(&acme())],
            connections_max: 8,
            orders_per_session_max: 64,
            cl_ord_ids_remembered: 256,
            client_sequence_next,
        };
        Harness {
            gateway: Gateway::new(config, stores).unwrap(),
            matcher,
            sequence: 1,
            now: T0,
        }
    }

    /// Commits every pending submission through the matcher; log timestamps are `now`.
    pub fn commit(&mut self) {
        let mut submissions = Vec::new();
        self.gateway.drain_submissions(&mut submissions);
        for submission in submissions {
            self.sequence += 1;
            let mut events: Vec<Event> = Vec::new();
            self.matcher
                .apply(self.sequence, self.now, &submission.record, &mut events);
            self.gateway.on_committed(
                self.now,
                self.sequence,
                self.now,
                &submission.record,
                &events,
            );
        }
    }
}

/// A FIX initiator as a test script.
pub struct Client {
    pub connection: ConnectionId,
    pub begin_string: &'static str,
    pub sender: String,
    pub seq: u64,
    pub received: Vec<u8>,
}

impl Client {
    pub fn connect(harness: &mut Harness, version: FixVersion, sender: &str) -> Client {
        let connection = harness.gateway.on_connected(harness.now).unwrap();
        Client {
            connection,
            begin_string: match version {
                FixVersion::Fix42 => "FIX.4.2",
                FixVersion::Fix44 => "FIX.4.4",
            },
            sender: sender.into(),
            seq: 1,
            received: Vec::new(),
        }
    }

    /// Builds the next message (`fields` in order after the standard header).
    pub fn build(&mut self, msg_type: &str, fields: &[(u32, &str)]) -> Vec<u8> {
        let mut body = format!(
            "35={msg_type}|49={}|56=EXCH|34={}|52=20231114-22:13:20.000|",
            self.sender, self.seq
        );
        self.seq += 1;
        for (tag, value) in fields {
            body.push_str(&format!("{tag}={value}|"));
        }
        fix(&with_trailer(self.begin_string, &body))
    }

    pub fn send(&mut self, harness: &mut Harness, msg_type: &str, fields: &[(u32, &str)]) {
        let bytes = self.build(msg_type, fields);
        harness
            .gateway
            .on_bytes(self.connection, harness.now, &bytes);
    }

    pub fn send_raw(&mut self, harness: &mut Harness, bytes: &[u8]) {
        harness
            .gateway
            .on_bytes(self.connection, harness.now, bytes);
    }

    pub fn logon(&mut self, harness: &mut Harness) -> Vec<Vec<(u32, String)>> {
        self.send(harness, "A", &[(98, "0"), (108, "30")]);
        self.take(harness)
    }

    /// Everything the gateway has written to this connection since the last call, raw.
    pub fn take_raw(&mut self, harness: &mut Harness) -> Vec<u8> {
        let bytes = harness.gateway.outbound(self.connection).to_vec();
        harness
            .gateway
            .consume_outbound(self.connection, bytes.len(), harness.now);
        bytes
    }

    /// Everything written since the last call, as messages of (tag, value).
    pub fn take(&mut self, harness: &mut Harness) -> Vec<Vec<(u32, String)>> {
        let bytes = self.take_raw(harness);
        split(&bytes)
    }
}

pub fn split(bytes: &[u8]) -> Vec<Vec<(u32, String)>> {
    let mut messages = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Ok(Framed::Complete { length }) = frame(&bytes[at..]) else {
            panic!("gateway wrote an unframed message: {}", show(&bytes[at..]));
        };
        let message = Message::parse(&bytes[at..at + length]).expect("gateway output parses");
        messages.push(
            message
                .fields()
                .map(|(tag, value)| (tag, String::from_utf8_lossy(value).into_owned()))
                .collect(),
        );
        at += length;
    }
    messages
}

pub fn get(message: &[(u32, String)], tag: u32) -> Option<&str> {
    message
        .iter()
        .find(|(t, _)| *t == tag)
        .map(|(_, v)| v.as_str())
}

pub fn msg_type(message: &[(u32, String)]) -> &str {
    get(message, 35).unwrap()
}
