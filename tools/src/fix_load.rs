//! Order flow over FIX: the demo's simulated traders and `exchange loadgen --fix`. Orders come
//! from a seeded generator (limits around a drifting mid, a few crossing; market orders;
//! cancels and replaces of the session's own resting orders) or from a CSV order file; they are
//! sent open loop at a fixed rate (latency from each request's intended send time) or closed
//! loop with a window. Every request's first answer (ExecutionReport or OrderCancelReject) is
//! timed in an HdrHistogram; fills can be written as CSV.
//!
//! CSV order file: a header line naming the columns, in any order, then one request per line.
//! Columns (`docs/OPERATIONS.md`):
//! - `action`: `new`, `cancel` or `replace`;
//! - `cl_ord_id`: the request's ClOrdID (unique in the file);
//! - `orig_cl_ord_id`: for cancel and replace, the ClOrdID of the order they act on;
//! - `symbol` (optional column; default `DEMO`);
//! - `side`: `buy` or `sell`;
//! - `type`: `limit` or `market`;
//! - `price`, `quantity`: decimal strings (`500.25`, `10`); price empty for market orders;
//! - `time_in_force`: `day`, `gtc`, `ioc` or `fok` (empty: day);
//! - `account` (optional): sent as Account (1), echoed in reports; the gateway trades for the
//!   session's configured account.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gateway::codec::Message;
use gateway::tags::{self, msg_type};
use hdrhistogram::Histogram;

use sequencer::clock::unix_now_ns;

use crate::fix_client::FixConnection;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    New,
    Cancel,
    Replace,
}

/// One request of the order flow, as FIX field values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub action: Action,
    pub cl_ord_id: String,
    pub orig_cl_ord_id: String,
    pub symbol: String,
    /// FIX Side: b'1' buy, b'2' sell.
    pub side: u8,
    /// FIX OrdType: b'1' market, b'2' limit.
    pub ord_type: u8,
    /// Decimal string; empty for market orders.
    pub price: String,
    pub quantity: String,
    /// FIX TimeInForce: b'0' day, b'1' GTC, b'3' IOC, b'4' FOK.
    pub time_in_force: u8,
    pub account: String,
}

/// Reads a CSV order file (see the module documentation); errors name the file, line and
/// column.
pub fn read_orders_csv(path: &Path) -> Result<Vec<OrderRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_orders_csv(&text).with_context(|| format!("in {}", path.display()))
}

/// As [`read_orders_csv`], from text.
pub fn parse_orders_csv(text: &str) -> Result<Vec<OrderRow>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let Some((_, header)) = lines.next() else {
        bail!("no header line");
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    const KNOWN: [&str; 10] = [
        "action",
        "cl_ord_id",
        "orig_cl_ord_id",
        "symbol",
        "side",
        "type",
        "price",
        "quantity",
        "time_in_force",
        "account",
    ];
    for column in &columns {
        if !KNOWN.contains(column) {
            bail!(
                "line 1: unknown column `{column}` (known: {})",
                KNOWN.join(", ")
            );
        }
    }
    for required in ["action", "cl_ord_id", "side", "type", "price", "quantity"] {
        if !columns.contains(&required) {
            bail!("line 1: the column `{required}` is missing");
        }
    }
    let mut rows = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (index, line) in lines {
        let number = index + 1;
        let values: Vec<&str> = line.split(',').map(str::trim).collect();
        if values.len() != columns.len() {
            bail!(
                "line {number}: {} values for {} columns",
                values.len(),
                columns.len()
            );
        }
        let get = |name: &str| {
            columns
                .iter()
                .position(|c| *c == name)
                .map_or("", |at| values[at])
        };
        let bad = |column: &str, value: &str, expected: &str| {
            anyhow::anyhow!("line {number}, column `{column}`: `{value}` is not {expected}")
        };
        let action = match get("action") {
            "new" => Action::New,
            "cancel" => Action::Cancel,
            "replace" => Action::Replace,
            other => return Err(bad("action", other, "new, cancel or replace")),
        };
        let side = match get("side") {
            "buy" => b'1',
            "sell" => b'2',
            other => return Err(bad("side", other, "buy or sell")),
        };
        let ord_type = match get("type") {
            "limit" => b'2',
            "market" => b'1',
            other => return Err(bad("type", other, "limit or market")),
        };
        let time_in_force = match get("time_in_force") {
            "" | "day" => b'0',
            "gtc" => b'1',
            "ioc" => b'3',
            "fok" => b'4',
            other => return Err(bad("time_in_force", other, "day, gtc, ioc or fok")),
        };
        let decimal = |column: &str, value: &str| -> Result<String> {
            let mut parts = value.splitn(2, '.');
            let whole = parts.next().unwrap_or("");
            let fraction = parts.next().unwrap_or("0");
            if whole.is_empty()
                || !whole.bytes().all(|b| b.is_ascii_digit())
                || fraction.is_empty()
                || !fraction.bytes().all(|b| b.is_ascii_digit())
                || value.len() > 20
            {
                return Err(bad(column, value, "a decimal such as 500.25"));
            }
            Ok(value.to_string())
        };
        let price = match (ord_type, get("price")) {
            (b'1', "") => String::new(),
            (_, value) => decimal("price", value)?,
        };
        let quantity = decimal("quantity", get("quantity"))?;
        let cl_ord_id = get("cl_ord_id").to_string();
        if cl_ord_id.is_empty() || cl_ord_id.len() > 36 || !seen.insert(cl_ord_id.clone()) {
            return Err(bad(
                "cl_ord_id",
                &cl_ord_id,
                "a new id of 1 to 36 characters",
            ));
        }
        let orig_cl_ord_id = get("orig_cl_ord_id").to_string();
        if action != Action::New && orig_cl_ord_id.is_empty() {
            return Err(bad(
                "orig_cl_ord_id",
                "",
                "given (cancel and replace need it)",
            ));
        }
        let symbol = match get("symbol") {
            "" => "DEMO".to_string(),
            s => s.to_string(),
        };
        rows.push(OrderRow {
            action,
            cl_ord_id,
            orig_cl_ord_id,
            symbol,
            side,
            ord_type,
            price,
            quantity,
            time_in_force,
            account: get("account").to_string(),
        });
    }
    Ok(rows)
}

/// A resting order of the session, as the generator knows it from the reports.
#[derive(Clone, Debug)]
struct LiveOrder {
    cl_ord_id: String,
    symbol: String,
    side: u8,
    price: String,
    leaves: u64,
}

/// What the generator needs to know of an instrument to send it valid orders: prices on its
/// tick inside its price band, quantities in whole lots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolSpec {
    pub symbol: String,
    /// Price units are `10^price_exponent`, quantity units `10^quantity_exponent`.
    pub price_exponent: i8,
    pub quantity_exponent: i8,
    /// The price the mid drifts around, in price units (on the tick).
    pub center: i64,
    /// Tick, in price units.
    pub tick: i64,
    /// Lot, in quantity units.
    pub lot: u64,
    /// How far the mid drifts from the center, in ticks.
    pub drift_ticks: i64,
}

/// Ticks between the mid and the farthest limit order the generator sends.
const DISTANCE_TICKS_MAX: i64 = 21;
/// The widest drift of the mid, in ticks.
const DRIFT_TICKS_MAX: i64 = 200;

impl SymbolSpec {
    /// An instrument with cents and whole units around 500.00 (the built-in DEMO's terms), for
    /// a symbol known by name only.
    pub fn cents(symbol: &str) -> SymbolSpec {
        SymbolSpec {
            symbol: symbol.to_string(),
            price_exponent: -2,
            quantity_exponent: 0,
            center: 50_000,
            tick: 1,
            lot: 1,
            drift_ticks: DRIFT_TICKS_MAX,
        }
    }

    /// The terms of a configured instrument: around its reference price (or the middle of its
    /// price range if it has none), drifting no further than its band and range allow.
    pub fn of(config: &matcher::InstrumentConfig) -> SymbolSpec {
        let instrument = gateway::app::Instrument::from_matcher(config);
        let tick = i64::from(instrument.tick_size.max(1));
        let half_range = i64::from(config.price_levels / 2);
        let center = if config.reference_price > 0 {
            config.reference_price
        } else {
            config.price_min + half_range * tick
        };
        let mut drift_ticks = DRIFT_TICKS_MAX.min(half_range - DISTANCE_TICKS_MAX - 1);
        if config.band_width_ticks > 0 {
            drift_ticks =
                drift_ticks.min(i64::from(config.band_width_ticks) - DISTANCE_TICKS_MAX - 1);
        }
        SymbolSpec {
            symbol: instrument.symbol,
            price_exponent: instrument.price_exponent,
            quantity_exponent: instrument.quantity_exponent,
            center,
            tick,
            lot: u64::from(instrument.lot_size.max(1)),
            drift_ticks: drift_ticks.max(0),
        }
    }

    /// `symbol`'s terms in `known` (a gateway configuration's instruments), else
    /// [`SymbolSpec::cents`].
    pub fn lookup(symbol: &str, known: &[matcher::InstrumentConfig]) -> SymbolSpec {
        known
            .iter()
            .map(SymbolSpec::of)
            .find(|spec| spec.symbol == symbol)
            .unwrap_or_else(|| SymbolSpec::cents(symbol))
    }

    fn price(&self, ticks_from_center: i64) -> String {
        matcher::decimal::Units {
            value: self.center + ticks_from_center * self.tick,
            exponent: self.price_exponent,
        }
        .to_string()
    }

    fn quantity(&self, units: u64) -> String {
        matcher::decimal::Units {
            value: units as i64,
            exponent: self.quantity_exponent,
        }
        .to_string()
    }
}

/// The seeded order flow of one session over its instruments: 65% limit orders around a
/// drifting mid per instrument (a few cross), 10% market orders, 20% cancels and 5%
/// quantity-down replaces of its own resting orders; 1 to 100 lots each.
pub struct Generator {
    state: u64,
    prefix: String,
    symbols: Vec<SymbolSpec>,
    /// Each instrument's mid, in ticks from its center.
    mids: Vec<i64>,
    next_id: u64,
    /// Resting orders by id number.
    live: BTreeMap<u64, LiveOrder>,
}

impl Generator {
    pub fn new(seed: u64, prefix: &str, symbols: Vec<SymbolSpec>) -> Generator {
        assert!(!symbols.is_empty(), "a generator needs an instrument");
        Generator {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
            prefix: prefix.to_string(),
            mids: vec![0; symbols.len()],
            symbols,
            next_id: 0,
            live: BTreeMap::new(),
        }
    }

    fn random(&mut self) -> u64 {
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.random() % n.max(1)
    }

    fn id(&mut self) -> (u64, String) {
        self.next_id += 1;
        (self.next_id, format!("{}{}", self.prefix, self.next_id))
    }

    /// The next request.
    pub fn next_row(&mut self) -> OrderRow {
        let roll = self.below(100);
        if roll >= 75 && !self.live.is_empty() {
            let first = *self.live.keys().next().expect("not empty");
            let last = *self.live.keys().next_back().expect("not empty");
            let pick = first + self.below(last - first + 1);
            let (_, order) = self.live.range(pick..).next().expect("pick <= last");
            let order = order.clone();
            let (_, cl_ord_id) = self.id();
            let lot = self
                .symbols
                .iter()
                .find(|s| s.symbol == order.symbol)
                .map_or(1, |s| s.lot);
            let replace = roll >= 95 && order.leaves > lot;
            return OrderRow {
                action: if replace {
                    Action::Replace
                } else {
                    Action::Cancel
                },
                cl_ord_id,
                orig_cl_ord_id: order.cl_ord_id,
                symbol: order.symbol,
                side: order.side,
                ord_type: b'2',
                price: order.price,
                quantity: if replace {
                    // Half, in whole lots.
                    ((order.leaves / 2) / lot * lot).max(lot).to_string()
                } else {
                    order.leaves.to_string()
                },
                time_in_force: b'0',
                account: String::new(),
            };
        }
        let side = if self.below(2) == 0 { b'1' } else { b'2' };
        let pick = self.below(self.symbols.len() as u64) as usize;
        let drift = self.symbols[pick].drift_ticks;
        let step = self.below(5) as i64 - 2;
        self.mids[pick] = (self.mids[pick] + step).clamp(-drift, drift);
        let lots = 1 + self.below(100);
        let spec = &self.symbols[pick];
        let symbol = spec.symbol.clone();
        let quantity = spec.quantity(lots * spec.lot);
        let (_, cl_ord_id) = self.id();
        if roll < 10 {
            return OrderRow {
                action: Action::New,
                cl_ord_id,
                orig_cl_ord_id: String::new(),
                symbol,
                side,
                ord_type: b'1',
                price: String::new(),
                quantity,
                time_in_force: b'0',
                account: String::new(),
            };
        }
        // Distance from the mid on the passive side, in ticks; -3..-1 cross.
        let distance = self.below(DISTANCE_TICKS_MAX as u64 + 3) as i64 - 3;
        let ticks = if side == b'1' {
            self.mids[pick] - distance
        } else {
            self.mids[pick] + distance
        };
        let price = self.symbols[pick].price(ticks);
        OrderRow {
            action: Action::New,
            cl_ord_id,
            orig_cl_ord_id: String::new(),
            symbol,
            side,
            ord_type: b'2',
            price,
            quantity,
            time_in_force: b'0',
            account: String::new(),
        }
    }

    /// Learns from an ExecutionReport which of its orders rest.
    fn report(&mut self, message: &Message<'_>, row_of: &BTreeMap<String, OrderRow>) {
        let Some(id) = message
            .get(tags::CL_ORD_ID)
            .and_then(|v| std::str::from_utf8(v).ok())
        else {
            return;
        };
        let Some(number) = id
            .strip_prefix(self.prefix.as_str())
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return;
        };
        if let Some(orig) = message
            .get(tags::ORIG_CL_ORD_ID)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|o| o.strip_prefix(self.prefix.as_str()))
            .and_then(|n| n.parse::<u64>().ok())
        {
            self.live.remove(&orig);
        }
        let leaves = message.optional_u64(tags::LEAVES_QTY).ok().flatten();
        let status = message.get(tags::ORD_STATUS).unwrap_or(b"");
        match (status, leaves) {
            (b"0" | b"1" | b"5", Some(leaves)) if leaves > 0 => {
                let price = row_of.get(id).map(|r| r.price.clone()).unwrap_or_default();
                if price.is_empty() {
                    return;
                }
                self.live.insert(
                    number,
                    LiveOrder {
                        cl_ord_id: id.to_string(),
                        symbol: String::from_utf8_lossy(message.get(tags::SYMBOL).unwrap_or(b""))
                            .into_owned(),
                        side: message.get(tags::SIDE).map_or(b'1', |s| s[0]),
                        price,
                        leaves,
                    },
                );
            }
            _ => {
                self.live.remove(&number);
            }
        }
    }
}

/// Where the requests come from.
pub enum OrderSource {
    Generated(Generator),
    File(std::vec::IntoIter<OrderRow>),
}

/// One FIX session's load.
pub struct FixLoadConfig {
    /// `host:port` of the gateway.
    pub address: String,
    pub version: String,
    pub sender: String,
    pub target: String,
    /// Requests per second, open loop; 0: closed loop with `in_flight_max` unanswered.
    pub rate: u64,
    /// Requests to send (a file source also ends at its end).
    pub requests: u64,
    pub in_flight_max: usize,
    /// Stop sending after this long (then wait for the answers).
    pub duration: Option<Duration>,
    /// Write every fill here as CSV.
    pub fills_csv: Option<std::path::PathBuf>,
    /// How long to wait for the last answers.
    pub drain_timeout: Duration,
    /// Live counts for a progress display.
    pub progress: Option<std::sync::Arc<Progress>>,
}

/// Requests sent and answered so far, updated as the load runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: std::sync::atomic::AtomicU64,
    pub answered: std::sync::atomic::AtomicU64,
}

/// What a session's load saw.
#[derive(Debug)]
pub struct FixLoadReport {
    pub sender: String,
    pub sent: u64,
    /// Requests that got their first answer.
    pub answered: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub cancelled: u64,
    pub cancel_rejects: u64,
    pub fills: u64,
    pub filled_quantity: u64,
    /// Requests never answered (must be 0).
    pub unanswered: u64,
    pub elapsed: Duration,
    /// First-answer latency, nanoseconds.
    pub histogram: Histogram<u64>,
}

impl FixLoadReport {
    /// "N requests, N answered (N accepted, N rejected, N cancelled, N cancel rejects), N fills
    /// (quantity N), N unanswered".
    pub fn summary(&self) -> String {
        format!(
            "{} requests, {} answered ({} accepted, {} rejected, {} cancelled, {} cancel rejects), {} fills (quantity {}), {} unanswered",
            self.sent,
            self.answered,
            self.accepted,
            self.rejected,
            self.cancelled,
            self.cancel_rejects,
            self.fills,
            self.filled_quantity,
            self.unanswered
        )
    }
}

/// The fills CSV's header.
pub const FILLS_HEADER: &str =
    "time_unix_ns,session,cl_ord_id,order_id,exec_id,symbol,side,last_px,last_qty,cum_qty,leaves_qty";

/// Runs one session's load until the requests, the source or the duration end, or `stop`;
/// then waits for the outstanding answers and logs out.
pub fn run(
    config: &FixLoadConfig,
    mut source: OrderSource,
    stop: &AtomicBool,
) -> Result<FixLoadReport> {
    let mut connection = FixConnection::logon(
        &config.address,
        &config.version,
        &config.sender,
        &config.target,
        30,
        Duration::from_secs(30),
    )?;
    let mut fills_out = match &config.fills_csv {
        Some(path) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            writeln!(file, "{FILLS_HEADER}")?;
            Some(file)
        }
        None => None,
    };
    let mut report = FixLoadReport {
        sender: config.sender.clone(),
        sent: 0,
        answered: 0,
        accepted: 0,
        rejected: 0,
        cancelled: 0,
        cancel_rejects: 0,
        fills: 0,
        filled_quantity: 0,
        unanswered: 0,
        elapsed: Duration::ZERO,
        histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
    };
    // Unanswered requests: ClOrdID → intended send time (ns since start).
    let mut pending: BTreeMap<String, u64> = BTreeMap::new();
    // Requests of generated orders, for the generator to learn prices of resting orders.
    let mut rows: BTreeMap<String, OrderRow> = BTreeMap::new();
    let started = Instant::now();
    let interval_ns = 1_000_000_000u64.checked_div(config.rate).unwrap_or(0);
    let mut exhausted = false;
    let mut drain_deadline = None;
    loop {
        let now_ns = started.elapsed().as_nanos() as u64;
        let sending = !exhausted
            && !stop.load(Ordering::Acquire)
            && report.sent < config.requests
            && config.duration.is_none_or(|d| started.elapsed() < d);
        if sending {
            let due = if interval_ns > 0 {
                report.sent * interval_ns <= now_ns
            } else {
                pending.len() < config.in_flight_max.max(1)
            };
            if due {
                let row = match &mut source {
                    OrderSource::Generated(generator) => Some(generator.next_row()),
                    OrderSource::File(rows) => rows.next(),
                };
                match row {
                    Some(row) => {
                        let intended = if interval_ns > 0 {
                            report.sent * interval_ns
                        } else {
                            now_ns
                        };
                        send_row(&mut connection, &row)?;
                        pending.insert(row.cl_ord_id.clone(), intended);
                        if matches!(source, OrderSource::Generated(_)) {
                            rows.insert(row.cl_ord_id.clone(), row);
                        }
                        report.sent += 1;
                        continue;
                    }
                    None => exhausted = true,
                }
            }
        } else {
            if pending.is_empty() {
                break;
            }
            let deadline =
                *drain_deadline.get_or_insert_with(|| Instant::now() + config.drain_timeout);
            if Instant::now() > deadline {
                break;
            }
        }
        let mut failure = None;
        let handled = connection.poll(&mut |message| {
            let now_ns = started.elapsed().as_nanos() as u64;
            let cl_ord_id = message
                .get(tags::CL_ORD_ID)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            match message.msg_type() {
                msg_type::EXECUTION_REPORT => {
                    match message.get(tags::EXEC_TYPE).unwrap_or(b"") {
                        b"0" => report.accepted += 1,
                        b"8" => report.rejected += 1,
                        b"4" => report.cancelled += 1,
                        _ => {}
                    }
                    let last_qty = message.optional_u64(tags::LAST_QTY).ok().flatten();
                    if let Some(quantity) = last_qty.filter(|&q| q > 0) {
                        report.fills += 1;
                        report.filled_quantity += quantity;
                        if let Some(out) = fills_out.as_mut() {
                            let field = |tag| {
                                String::from_utf8_lossy(message.get(tag).unwrap_or(b""))
                                    .into_owned()
                            };
                            if let Err(e) = writeln!(
                                out,
                                "{},{},{},{},{},{},{},{},{},{},{}",
                                unix_now_ns(),
                                config.sender,
                                cl_ord_id,
                                field(tags::ORDER_ID),
                                field(tags::EXEC_ID),
                                field(tags::SYMBOL),
                                if field(tags::SIDE) == "2" {
                                    "sell"
                                } else {
                                    "buy"
                                },
                                field(tags::LAST_PX),
                                quantity,
                                field(tags::CUM_QTY),
                                field(tags::LEAVES_QTY)
                            ) {
                                failure = Some(anyhow::Error::from(e));
                            }
                        }
                    }
                    if let OrderSource::Generated(generator) = &mut source {
                        generator.report(message, &rows);
                    }
                }
                msg_type::ORDER_CANCEL_REJECT => report.cancel_rejects += 1,
                msg_type::LOGOUT | msg_type::REJECT | msg_type::BUSINESS_MESSAGE_REJECT => {
                    failure = Some(anyhow::anyhow!(
                        "{}: the gateway sent {}: {}",
                        config.sender,
                        String::from_utf8_lossy(message.msg_type()),
                        String::from_utf8_lossy(message.get(tags::TEXT).unwrap_or(b""))
                    ));
                }
                _ => {}
            }
            if let Some(intended) = pending.remove(&cl_ord_id) {
                report.answered += 1;
                report
                    .histogram
                    .saturating_record(now_ns.saturating_sub(intended).max(1));
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        if rows.len() > 100_000 {
            // Keep only what the generator may still need (orders it may cancel).
            let keep: std::collections::BTreeSet<String> = match &source {
                OrderSource::Generated(g) => g.live.values().map(|o| o.cl_ord_id.clone()).collect(),
                OrderSource::File(_) => Default::default(),
            };
            rows.retain(|id, _| keep.contains(id) || pending.contains_key(id));
        }
        if let Some(progress) = &config.progress {
            progress.sent.store(report.sent, Ordering::Relaxed);
            progress.answered.store(report.answered, Ordering::Relaxed);
        }
        if handled == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    report.elapsed = started.elapsed();
    report.unanswered = pending.len() as u64;
    if let Some(mut out) = fills_out {
        out.flush()?;
    }
    connection.logout(Duration::from_secs(2))?;
    Ok(report)
}

/// Sends one request.
fn send_row(connection: &mut FixConnection, row: &OrderRow) -> Result<()> {
    let transact_time = gateway::codec::format_timestamp(unix_now_ns());
    let mut fields: Vec<(u32, &[u8])> = vec![(tags::CL_ORD_ID, row.cl_ord_id.as_bytes())];
    if row.action != Action::New {
        fields.push((tags::ORIG_CL_ORD_ID, row.orig_cl_ord_id.as_bytes()));
    }
    if !row.account.is_empty() {
        fields.push((tags::ACCOUNT, row.account.as_bytes()));
    }
    let side = [row.side];
    let ord_type = [row.ord_type];
    let time_in_force = [row.time_in_force];
    fields.push((tags::SYMBOL, row.symbol.as_bytes()));
    fields.push((tags::SIDE, &side));
    fields.push((tags::TRANSACT_TIME, &transact_time));
    fields.push((tags::ORDER_QTY, row.quantity.as_bytes()));
    if row.action != Action::Cancel {
        fields.push((tags::ORD_TYPE, &ord_type));
        if !row.price.is_empty() {
            fields.push((tags::PRICE, row.price.as_bytes()));
        }
        fields.push((tags::TIME_IN_FORCE, &time_in_force));
    }
    let message_type = match row.action {
        Action::New => msg_type::NEW_ORDER_SINGLE,
        Action::Cancel => msg_type::ORDER_CANCEL_REQUEST,
        Action::Replace => msg_type::ORDER_CANCEL_REPLACE_REQUEST,
    };
    connection.send(message_type, &fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_file_is_read_by_column_name_with_errors_naming_line_and_column() {
        let rows = parse_orders_csv(
            "# a comment\naction,cl_ord_id,side,type,price,quantity,time_in_force,orig_cl_ord_id\n\
             new,a1,buy,limit,500.25,10,gtc,\nnew,a2,sell,market,,5,,\ncancel,a3,buy,limit,500.25,10,,a1\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            OrderRow {
                action: Action::New,
                cl_ord_id: "a1".into(),
                orig_cl_ord_id: String::new(),
                symbol: "DEMO".into(),
                side: b'1',
                ord_type: b'2',
                price: "500.25".into(),
                quantity: "10".into(),
                time_in_force: b'1',
                account: String::new(),
            }
        );
        assert_eq!((rows[1].ord_type, rows[1].price.as_str()), (b'1', ""));
        assert_eq!(
            (rows[2].action, rows[2].orig_cl_ord_id.as_str()),
            (Action::Cancel, "a1")
        );
        let error = |text: &str| format!("{:#}", parse_orders_csv(text).unwrap_err());
        let head = "action,cl_ord_id,side,type,price,quantity\n";
        assert_eq!(
            error(&format!("{head}new,a1,buy,limit,5x,10\n")),
            "line 2, column `price`: `5x` is not a decimal such as 500.25"
        );
        assert_eq!(
            error(&format!("{head}new,a1,up,limit,5,10\n")),
            "line 2, column `side`: `up` is not buy or sell"
        );
        assert_eq!(
            error(&format!(
                "{head}new,a1,buy,limit,5,10\nnew,a1,buy,limit,5,10\n"
            )),
            "line 3, column `cl_ord_id`: `a1` is not a new id of 1 to 36 characters"
        );
        assert_eq!(
            error(&format!("{head}cancel,a1,buy,limit,5,10\n")),
            "line 2, column `orig_cl_ord_id`: `` is not given (cancel and replace need it)"
        );
        assert_eq!(
            error("action,cl_ord_id,side,type,price\n"),
            "line 1: the column `quantity` is missing"
        );
        assert_eq!(
            error(&format!("{head}new,a1,buy,limit,5\n")),
            "line 2: 5 values for 6 columns"
        );
    }

    #[test]
    fn the_generator_sends_each_instrument_orders_on_its_tick_in_its_band_in_whole_lots() {
        let instruments = crate::gateway_cmd::example_instruments();
        let specs: Vec<SymbolSpec> = instruments.iter().map(SymbolSpec::of).collect();
        assert_eq!(
            specs.iter().map(|s| s.symbol.as_str()).collect::<Vec<_>>(),
            ["DEMO", "ACME", "XYZ"]
        );
        // XYZ: 0.0050 tick around 10.5000, lots of 100.
        assert_eq!(
            (
                specs[2].center,
                specs[2].tick,
                specs[2].lot,
                specs[2].drift_ticks
            ),
            (105_000, 50, 100, 200)
        );
        // ACME: a band of 500 ticks keeps the drift inside it.
        assert_eq!(specs[1].drift_ticks, 200);
        let mut generator = Generator::new(3, "T", specs);
        let mut seen = [0u32; 3];
        for _ in 0..20_000 {
            let row = generator.next_row();
            let index = instruments
                .iter()
                .position(|i| SymbolSpec::of(i).symbol == row.symbol)
                .expect("a configured symbol");
            let config = &instruments[index];
            seen[index] += 1;
            let quantity =
                matcher::decimal::parse_units(&row.quantity, config.quantity_exponent).unwrap();
            assert_eq!(quantity % i64::from(config.lot_size), 0, "{row:?}");
            let lots = quantity / i64::from(config.lot_size);
            assert!((1..=100).contains(&lots), "{row:?}");
            if row.ord_type == b'2' {
                let price =
                    matcher::decimal::parse_units(&row.price, config.price_exponent).unwrap();
                assert_eq!((price - config.price_min) % i64::from(config.tick_size), 0);
                let reference = config.reference_price;
                let off = (price - reference).abs() / i64::from(config.tick_size);
                assert!(off <= 200 + DISTANCE_TICKS_MAX, "{row:?}");
                if config.band_width_ticks > 0 {
                    assert!(off <= i64::from(config.band_width_ticks), "{row:?}");
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 6_000), "{seen:?}");
        // A symbol known by name only: cents around 500.00.
        assert_eq!(
            SymbolSpec::lookup("OTHER", &instruments),
            SymbolSpec::cents("OTHER")
        );
        assert_eq!(SymbolSpec::lookup("XYZ", &instruments).lot, 100);
    }

    #[test]
    fn the_generator_is_a_function_of_its_seed_and_cancels_only_resting_orders() {
        let rows = |seed| {
            let mut generator = Generator::new(seed, "T", vec![SymbolSpec::cents("DEMO")]);
            (0..1000).map(|_| generator.next_row()).collect::<Vec<_>>()
        };
        assert_eq!(rows(7), rows(7));
        assert_ne!(rows(7), rows(8));
        // Nothing rests yet (no reports): every request is a new order.
        assert!(rows(7).iter().all(|r| r.action == Action::New));
        let limits = rows(7).iter().filter(|r| r.ord_type == b'2').count();
        assert!(
            (850..=950).contains(&limits),
            "{limits} limit orders of 1000"
        );
    }
}
