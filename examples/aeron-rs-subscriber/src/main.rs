//! A third-party subscriber of the exchange's ITCH 5.0 feed, on the pure-Rust `aeron-rs`
//! client: it shares no code with the exchange (its own MoldUDP64 and ITCH decoding, from the
//! public specifications) and needs no C toolchain. It talks to any Aeron media driver through
//! the driver's CnC file (the exchange embeds Aeron 1.54's C driver).
//!
//! It subscribes to the incremental stream, decodes every message of every frame, counts them by
//! type, checks each message's length against the ITCH 5.0 layout and the feed sequence numbers
//! for continuity (a live subscriber: it starts at the first frame it sees and reports gaps; the
//! exchange's own subscriber recovers them by retransmission).
//!
//! ```text
//! aeron-rs-subscriber --aeron-dir /dev/shm/DRIVER [--channel CHANNEL] [--stream 2001]
//!                     [--messages N] [--timeout SECONDS]
//! ```
//!
//! Exit status 0 when N messages (default 1) arrived in sequence, 1 on a gap, a malformed
//! frame or message, or a timeout.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::time::{Duration, Instant};

use aeron_rs::aeron::Aeron;
use aeron_rs::concurrent::atomic_buffer::AtomicBuffer;
use aeron_rs::concurrent::logbuffer::header::Header;
use aeron_rs::context::Context;
use aeron_rs::utils::types::Index;

/// MoldUDP64 downstream header: session (10), sequence of the first message (8), count (2).
const MOLD_HEADER_LEN: usize = 20;
/// Aeron's flags of an unfragmented message (begin and end).
const FLAGS_UNFRAGMENTED: u8 = 0xC0;

/// The length of each ITCH 5.0 message type this feed may carry (and of the feed's own two
/// extensions, `Z` book checksum and `G` snapshot end, both 27 bytes).
fn itch_length(message_type: u8) -> Option<usize> {
    Some(match message_type {
        b'S' => 12,
        b'R' => 39,
        b'H' => 25,
        b'A' => 36,
        b'F' => 40,
        b'E' => 31,
        b'C' => 36,
        b'X' => 23,
        b'D' => 19,
        b'U' => 35,
        b'P' => 44,
        b'Z' | b'G' => 27,
        _ => return None,
    })
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0, |value, byte| (value << 8) | u64::from(*byte))
}

#[derive(Default)]
struct Tally {
    frames: u64,
    heartbeats: u64,
    messages: u64,
    by_type: BTreeMap<char, u64>,
    sequence_first: Option<u64>,
    sequence_next: Option<u64>,
    gaps: u64,
    duplicates: u64,
    malformed: u64,
    fragmented: u64,
    /// Order references of Add Orders and shares added, as a check that fields decode.
    shares_added: u64,
}

impl Tally {
    fn frame(&mut self, frame: &[u8]) {
        if frame.len() < MOLD_HEADER_LEN {
            self.malformed += 1;
            return;
        }
        self.frames += 1;
        let sequence = be_u64(&frame[10..18]);
        let count = u16::from_be_bytes([frame[18], frame[19]]);
        if count == 0 || count == 0xFFFF {
            // A heartbeat (or end of session) announces the next sequence.
            self.heartbeats += 1;
            if let Some(next) = self.sequence_next {
                if sequence > next {
                    self.gaps += 1;
                    self.sequence_next = Some(sequence);
                }
            }
            return;
        }
        match self.sequence_next {
            None => self.sequence_first = Some(sequence),
            Some(next) if sequence > next => self.gaps += 1,
            Some(next) if sequence < next => self.duplicates += 1,
            Some(_) => {}
        }
        let mut at = MOLD_HEADER_LEN;
        for _ in 0..count {
            let Some(prefix) = frame.get(at..at + 2) else {
                self.malformed += 1;
                return;
            };
            let length = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
            let Some(message) = frame.get(at + 2..at + 2 + length) else {
                self.malformed += 1;
                return;
            };
            at += 2 + length;
            self.message(message);
        }
        if at != frame.len() {
            self.malformed += 1;
        }
        let end = sequence + u64::from(count);
        self.sequence_next = Some(self.sequence_next.map_or(end, |next| next.max(end)));
    }

    fn message(&mut self, message: &[u8]) {
        let Some(&message_type) = message.first() else {
            self.malformed += 1;
            return;
        };
        if itch_length(message_type) != Some(message.len()) {
            self.malformed += 1;
            return;
        }
        self.messages += 1;
        *self.by_type.entry(message_type as char).or_insert(0) += 1;
        if message_type == b'A' {
            // Add Order: locate 1, tracking 3, timestamp 5, reference 11, side 19, shares 20,
            // stock 24, price 32.
            let side = message[19];
            if side != b'B' && side != b'S' {
                self.malformed += 1;
            }
            self.shares_added += be_u64(&message[20..24]);
        }
    }
}

struct Options {
    aeron_dir: Option<String>,
    channel: String,
    stream_id: i32,
    messages: u64,
    timeout: Duration,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        aeron_dir: None,
        channel: "aeron:udp?endpoint=127.0.0.1:20311|control=127.0.0.1:20300".into(),
        stream_id: 2001,
        messages: 1,
        timeout: Duration::from_secs(30),
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(name) = arguments.next() {
        let mut value = || arguments.next().ok_or(format!("{name} needs a value"));
        match name.as_str() {
            "--aeron-dir" => options.aeron_dir = Some(value()?),
            "--channel" => options.channel = value()?,
            "--stream" => options.stream_id = value()?.parse().map_err(|e| format!("{e}"))?,
            "--messages" => options.messages = value()?.parse().map_err(|e| format!("{e}"))?,
            "--timeout" => {
                options.timeout = Duration::from_secs(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            _ => return Err(format!("unknown argument {name}")),
        }
    }
    Ok(options)
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    let mut context = Context::new();
    if let Some(dir) = &options.aeron_dir {
        context.set_aeron_dir(dir.clone());
    }
    context.set_error_handler(Box::new(|error| eprintln!("aeron-rs: {error:?}")));
    let mut aeron = match Aeron::new(context) {
        Ok(aeron) => aeron,
        Err(error) => {
            eprintln!("error: aeron-rs cannot connect to the media driver: {error:?}");
            std::process::exit(1);
        }
    };
    let channel = CString::new(options.channel.clone()).expect("channel without NUL");
    let registration = aeron
        .add_subscription(channel, options.stream_id)
        .expect("add subscription");
    let started = Instant::now();
    let subscription = loop {
        if let Ok(subscription) = aeron.find_subscription(registration) {
            break subscription;
        }
        if started.elapsed() > options.timeout {
            eprintln!("error: the driver did not add the subscription");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    println!(
        "aeron-rs subscribed to {} stream {}",
        options.channel, options.stream_id
    );

    let mut tally = Tally::default();
    while tally.messages < options.messages && started.elapsed() < options.timeout {
        let mut handler = |buffer: &AtomicBuffer, offset: Index, length: Index, header: &Header| {
            if header.flags() != FLAGS_UNFRAGMENTED {
                // The feed's frames fit one MTU; a fragmented one is not this feed's.
                tally.fragmented += 1;
                return;
            }
            tally.frame(buffer.as_sub_slice(offset, length));
        };
        let fragments = subscription
            .lock()
            .expect("subscription lock")
            .poll(&mut handler, 64);
        if fragments == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    println!(
        "{} messages in {} frames ({} heartbeats), sequences {:?}..{:?}, {} gaps, {} duplicates, {} malformed, {} fragmented; by type {:?}; {} shares added",
        tally.messages,
        tally.frames,
        tally.heartbeats,
        tally.sequence_first,
        tally.sequence_next,
        tally.gaps,
        tally.duplicates,
        tally.malformed,
        tally.fragmented,
        tally.by_type,
        tally.shares_added
    );
    let complete = tally.messages >= options.messages;
    if !complete || tally.gaps > 0 || tally.malformed > 0 || tally.fragmented > 0 {
        eprintln!("error: incomplete or broken feed");
        std::process::exit(1);
    }
}
