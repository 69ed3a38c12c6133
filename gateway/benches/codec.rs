//! Codec throughput without criterion: NewOrderSingle decode by our codec (framing with
//! BodyLength and CheckSum checks, field parse, then every field the session and application
//! layers read, converted to matcher units) against `fefix` 0.7 decoding the same bytes (its
//! `tagvalue::Decoder` with CheckSum verification and associative access, then the raw value of
//! each of those fields, no conversion), our decode doing only what that fefix row does (the
//! like-for-like comparison of the parsers), and ExecutionReport encode by our codec.
//!
//! The messages are generated before any timing (varied symbols, sides, prices, quantities,
//! ClOrdIDs and times). Each round decodes every message `passes` times per decoder; the table
//! gives the median of the rounds' rates and, from HdrHistogram, percentiles of the time of one
//! batch of `BATCH` messages. Figures depend on the machine and its load. Without the `--bench`
//! argument, as `cargo test --all-targets` runs it, it does a short smoke run whose figures mean
//! nothing. It needs the `fefix-baseline` feature (`cargo bench -p gateway --bench codec
//! --features fefix-baseline`; `make bench`), so `make test` does not build fefix.

use fefix::tagvalue::{Config, Decoder, FieldAccess};
use fefix::Dictionary;
use gateway::app::{self, ExecType, Instrument, InstrumentTable, Report};
use gateway::codec::{frame, Framed, Message, Writer, MESSAGE_LENGTH_MAX};
use gateway::tags;
use gateway::FixVersion;
use hdrhistogram::Histogram;
use matcher::{OrderType, Side, TimeInForce};
use std::hint::black_box;
use std::time::Instant;

/// Messages generated (the set every pass walks through).
const MESSAGES: usize = 10_000;
/// Messages timed together for one histogram sample.
const BATCH: usize = 100;
/// Symbols in the set.
const SYMBOLS: [&str; 8] = [
    "ACME", "BOLT", "CRNX", "DYNA", "EVRG", "FLUX", "GRVT", "HELO",
];
/// 2023-11-14 22:13:20 UTC.
const T0_NS: u64 = 1_700_000_000_000_000_000;

const _: () = assert!(MESSAGES.is_multiple_of(BATCH));

/// Tags the session layer and `app::parse_new_order` read from a NewOrderSingle.
const FIELDS_READ: [u32; 14] = [
    tags::MSG_SEQ_NUM,
    tags::SENDER_COMP_ID,
    tags::TARGET_COMP_ID,
    tags::SENDING_TIME,
    tags::POSS_DUP_FLAG,
    tags::CL_ORD_ID,
    tags::SYMBOL,
    tags::SIDE,
    tags::ORD_TYPE,
    tags::PRICE,
    tags::ORDER_QTY,
    tags::TIME_IN_FORCE,
    tags::ACCOUNT,
    tags::EXEC_INST,
];

struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}

fn instruments() -> InstrumentTable {
    let instruments = SYMBOLS
        .iter()
        .enumerate()
        .map(|(index, symbol)| Instrument {
            symbol: (*symbol).into(),
            instrument_id: index as u32 + 1,
            price_exponent: -2,
            quantity_exponent: 0,
            tick_size: 1,
            lot_size: 1,
        })
        .collect();
    InstrumentTable::new(instruments).expect("valid instruments")
}

/// The message set, back to back in one buffer, and where each message starts.
fn generate() -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut bytes = Vec::with_capacity(MESSAGES * 200);
    let mut spans = Vec::with_capacity(MESSAGES);
    let mut scratch = vec![0u8; MESSAGE_LENGTH_MAX];
    for index in 0..MESSAGES {
        let symbol = SYMBOLS[rng.below(SYMBOLS.len() as u64) as usize];
        let side = if rng.below(2) == 0 { b'1' } else { b'2' };
        // Prices 50.00 ..= 249.99 with 0, 1 or 2 decimals written; quantities 1 ..= 5000.
        let cents = 5_000 + rng.below(20_000);
        let price = match cents % 100 {
            0 => format!("{}", cents / 100),
            c if c % 10 == 0 => format!("{}.{}", cents / 100, c / 10),
            c => format!("{}.{c:02}", cents / 100),
        };
        let quantity = 1 + rng.below(5_000);
        let cl_ord_id = format!("C{:08X}-{index}", rng.below(u64::from(u32::MAX)));
        let sending_ns = T0_NS + index as u64 * 1_000_000 + rng.below(1_000_000);
        let mut writer = Writer::new(&mut scratch, b"FIX.4.4", b"D");
        writer.bytes(tags::SENDER_COMP_ID, b"CLIENT1");
        writer.bytes(tags::TARGET_COMP_ID, b"EXCH");
        writer.u64(tags::MSG_SEQ_NUM, index as u64 + 2);
        writer.timestamp(tags::SENDING_TIME, sending_ns);
        writer.bytes(tags::CL_ORD_ID, cl_ord_id.as_bytes());
        writer.bytes(tags::SYMBOL, symbol.as_bytes());
        writer.char(tags::SIDE, side);
        writer.u64(tags::ORDER_QTY, quantity);
        writer.char(tags::ORD_TYPE, b'2');
        writer.bytes(tags::PRICE, price.as_bytes());
        writer.char(
            tags::TIME_IN_FORCE,
            if rng.below(4) == 0 { b'3' } else { b'0' },
        );
        writer.timestamp(tags::TRANSACT_TIME, sending_ns - 150_000);
        let length = writer.finish().expect("fits");
        spans.push((bytes.len(), length));
        bytes.extend_from_slice(&scratch[..length]);
    }
    (bytes, spans)
}

/// Our decode of one NewOrderSingle, as the gateway does it: frame, parse, the session's header
/// reads, then the application mapping into matcher units.
#[inline]
fn decode_ours(bytes: &[u8], instruments: &InstrumentTable) -> u64 {
    let Ok(Framed::Complete { length }) = frame(bytes) else {
        panic!("generated message does not frame");
    };
    let message = Message::parse(&bytes[..length]).expect("parses");
    let sequence = message
        .optional_u64(tags::MSG_SEQ_NUM)
        .expect("valid")
        .expect("present");
    let header = message.get(tags::SENDER_COMP_ID).map_or(0, <[u8]>::len)
        + message.get(tags::TARGET_COMP_ID).map_or(0, <[u8]>::len)
        + message.get(tags::SENDING_TIME).map_or(0, <[u8]>::len);
    let poss_dup = message.optional_bool(tags::POSS_DUP_FLAG) == Ok(Some(true));
    let intent = app::parse_new_order(&message, instruments, None).expect("valid order");
    sequence
        ^ header as u64
        ^ u64::from(poss_dup)
        ^ intent.price as u64
        ^ intent.quantity
        ^ u64::from(intent.instrument)
        ^ intent.cl_ord_id.as_bytes().len() as u64
}

/// Our decode doing what the fefix row does (frame, parse, the raw value of every field we
/// read, no conversion): the like-for-like comparison of the two parsers.
#[inline]
fn decode_ours_raw(bytes: &[u8]) -> u64 {
    let Ok(Framed::Complete { length }) = frame(bytes) else {
        panic!("generated message does not frame");
    };
    let message = Message::parse(&bytes[..length]).expect("parses");
    let mut sum = 0u64;
    for tag in FIELDS_READ {
        sum += message.get(tag).map_or(0, <[u8]>::len) as u64;
    }
    sum
}

/// fefix's decode of the same bytes and the raw value of every field we read.
#[inline]
fn decode_fefix(decoder: &mut Decoder<Config>, bytes: &[u8]) -> u64 {
    let message = decoder.decode(bytes).expect("fefix decodes");
    let mut sum = 0u64;
    for tag in FIELDS_READ {
        sum += message.fv_raw(&tag).map_or(0, <[u8]>::len) as u64;
    }
    sum
}

/// One ExecutionReport (a partial fill) encoded as the session sends it.
#[inline]
fn encode_report(buffer: &mut [u8], index: u64, cl_ord_id: &[u8], symbol: &[u8]) -> usize {
    let mut exec_id = [0u8; 24];
    let exec_id_length = {
        use std::io::Write;
        let mut cursor = std::io::Cursor::new(&mut exec_id[..]);
        let _ = write!(cursor, "{}.{}", 1_000_000 + index, index % 3);
        cursor.position() as usize
    };
    let mut writer = Writer::new(buffer, b"FIX.4.4", b"8");
    writer.bytes(tags::SENDER_COMP_ID, b"EXCH");
    writer.bytes(tags::TARGET_COMP_ID, b"CLIENT1");
    writer.u64(tags::MSG_SEQ_NUM, index + 2);
    writer.timestamp(tags::SENDING_TIME, T0_NS + index * 1_000);
    let report = Report {
        order_id: Some(1_000_000 + index),
        cl_ord_id,
        orig_cl_ord_id: None,
        exec_id: &exec_id[..exec_id_length],
        exec_type: ExecType::Trade,
        ord_status: b'1',
        account: None,
        symbol,
        side: if index.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        order_type: Some(OrderType::Limit),
        time_in_force: Some(TimeInForce::Day),
        order_qty: 100 + index % 900,
        price: Some(10_000 + (index % 5_000) as i64),
        last: Some((10, 10_000 + (index % 5_000) as i64)),
        cum_qty: 10,
        leaves_qty: 90 + index % 900,
        avg_px: (10_000 + (index % 5_000) as i128, -2),
        exponents: (-2, 0),
        transact_time_ns: T0_NS + index * 1_000,
        ord_rej_reason: None,
        text: None,
    };
    app::write_execution_report(&mut writer, FixVersion::Fix44, &report);
    writer.finish().expect("fits")
}

struct Figures {
    /// Messages per second of each round.
    rates: Vec<u64>,
    histogram: Histogram<u64>,
}

impl Figures {
    fn new() -> Figures {
        Figures {
            rates: Vec::new(),
            histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds"),
        }
    }

    fn median_rate(&self) -> u64 {
        let mut rates = self.rates.clone();
        rates.sort_unstable();
        rates[rates.len() / 2]
    }
}

/// Times `passes` passes over every message in batches: `work(index)` handles message `index`.
fn round(figures: &mut Figures, passes: usize, mut work: impl FnMut(usize) -> u64) {
    let mut sink = 0u64;
    let started = Instant::now();
    for _ in 0..passes {
        for batch in 0..MESSAGES / BATCH {
            let batch_started = Instant::now();
            for index in batch * BATCH..(batch + 1) * BATCH {
                sink = sink.wrapping_add(work(index));
            }
            let batch_ns = batch_started.elapsed().as_nanos() as u64;
            figures
                .histogram
                .record(batch_ns.max(1))
                .expect("within bounds");
        }
    }
    let elapsed_ns = started.elapsed().as_nanos().max(1);
    black_box(sink);
    let messages = (passes * MESSAGES) as u128;
    figures
        .rates
        .push((messages * 1_000_000_000 / elapsed_ns) as u64);
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (rounds, passes) = if full { (9, 50) } else { (1, 1) };
    let instruments = instruments();
    let (bytes, spans) = generate();
    let message = |index: usize| {
        let (start, length) = spans[index];
        &bytes[start..start + length]
    };
    let mut fefix = Decoder::<Config>::new(Dictionary::fix44());

    // Both decoders read the same values before anything is timed.
    for index in 0..MESSAGES {
        let bytes = message(index);
        let parsed = Message::parse(bytes).expect("parses");
        let theirs = fefix.decode(bytes).expect("fefix decodes");
        for tag in FIELDS_READ {
            assert_eq!(parsed.get(tag), theirs.fv_raw(&tag), "tag {tag}");
        }
        decode_ours(bytes, &instruments);
    }
    let reports: Vec<(Vec<u8>, &str)> = (0..MESSAGES)
        .map(|index| {
            let parsed = Message::parse(message(index)).expect("parses");
            let cl_ord_id = parsed.get(tags::CL_ORD_ID).expect("present").to_vec();
            let symbol = SYMBOLS[index % SYMBOLS.len()];
            (cl_ord_id, symbol)
        })
        .collect();
    let mut buffer = vec![0u8; MESSAGE_LENGTH_MAX];
    let report_length = encode_report(&mut buffer, 7, &reports[7].0, reports[7].1.as_bytes());
    Message::parse(&buffer[..report_length]).expect("our report parses");
    fefix
        .decode(&buffer[..report_length])
        .expect("fefix accepts our report");

    let mut ours = Figures::new();
    let mut ours_raw = Figures::new();
    let mut theirs = Figures::new();
    let mut encode = Figures::new();
    // Interleaved rounds: a load change on the machine hits all of them alike.
    for _ in 0..rounds {
        round(&mut ours, passes, |index| {
            decode_ours(black_box(message(index)), &instruments)
        });
        round(&mut ours_raw, passes, |index| {
            decode_ours_raw(black_box(message(index)))
        });
        round(&mut theirs, passes, |index| {
            decode_fefix(&mut fefix, black_box(message(index)))
        });
        round(&mut encode, passes, |index| {
            let (cl_ord_id, symbol) = &reports[index];
            encode_report(
                black_box(&mut buffer),
                index as u64,
                cl_ord_id,
                symbol.as_bytes(),
            ) as u64
        });
    }

    let average_length = bytes.len() / MESSAGES;
    println!(
        "{} NewOrderSingle messages (average {average_length} bytes), {rounds} round(s) of {passes} \
         pass(es); batches of {BATCH} messages{}",
        MESSAGES,
        if full { "" } else { " (smoke run: figures mean nothing)" }
    );
    println!();
    println!(
        "| codec | messages/s (median of rounds) | batch p50 ns | p99 | p99.9 | p99.99 | max |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, figures) in [
        ("ours: NewOrderSingle decode + app mapping", &ours),
        ("ours: NewOrderSingle decode + raw fields", &ours_raw),
        ("fefix 0.7: NewOrderSingle decode + raw fields", &theirs),
        ("ours: ExecutionReport encode", &encode),
    ] {
        let h = &figures.histogram;
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            group(figures.median_rate()),
            group(h.value_at_quantile(0.5)),
            group(h.value_at_quantile(0.99)),
            group(h.value_at_quantile(0.999)),
            group(h.value_at_quantile(0.9999)),
            group(h.max()),
        );
    }
    let ours_rate = ours.median_rate();
    let theirs_rate = theirs.median_rate().max(1);
    let ratio_hundredths = ours_rate * 100 / theirs_rate;
    let raw_hundredths = ours_raw.median_rate() * 100 / theirs_rate;
    println!();
    println!(
        "decode ratio ours/fefix: {}.{:02}x with the app mapping, {}.{:02}x raw fields against raw \
         fields (targets: at least 3x fefix and 4,000,000 decodes/s with the app mapping: {})",
        ratio_hundredths / 100,
        ratio_hundredths % 100,
        raw_hundredths / 100,
        raw_hundredths % 100,
        if ratio_hundredths >= 300 && ours_rate >= 4_000_000 {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// 1234567 as "1,234,567".
fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
