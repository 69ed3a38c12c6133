//! Matcher benchmark: our matcher against `lobster` 0.7 and `orderbook-rs` 0.15 on the same
//! pre-generated command streams, single thread, pinned to one core.
//!
//! - Mix A: 70% limit orders around a drifting mid (a few percent cross), 20% cancels of resting
//!   orders, 10% market orders; about 100k orders resting.
//! - Mix B (exchange-core's mix): 82% move (replace to a new price), 9% GTC limits, 6% cancels,
//!   3% IOC; about 1,000 orders resting.
//!
//! Each engine gets two fresh runs per mix after an untimed prefill: one timing every command
//! (rdtsc, HdrHistogram) and one timing the whole stream only (throughput). Heap allocations
//! are counted by a counting global allocator during the latency run. Last, replay: 10M encoded
//! command records from an in-memory buffer through a fresh matcher.
//!
//! `cargo bench -p benches --bench matcher`. Without the `--bench` argument (as `cargo test
//! --all-targets` runs it) only a smoke run of 20,000 commands per mix is done. Environment: `MATCHER_BENCH_COMMANDS` (timed length
//! per mix), `MATCHER_BENCH_REPLAY` (replay length, 0 to skip), `MATCHER_BENCH_ENGINES`
//! (`ours,ours-hints,lobster,orderbook-rs`; `ours-hints` is our matcher given prefetch hints
//! of the next two records, as a log reader can), `MATCHER_BENCH_MIXES` (`A,B`),
//! `MATCHER_BENCH_RESTING` (mix A's resting orders, at most 200,000; default 100,000).

use benches::{pin_to_last_core, thread_cpu_time};
use hdrhistogram::Histogram;
use matcher::{
    Cancel, Command, CommandRecord, Config, CountingSink, Event, EventKind, InstrumentConfig,
    Matcher, NewOrder, OrderType, Replace, Side, StpMode, TimeInForce, FLAG_MAKER_DONE,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ----- allocation counting (and huge pages) -----

/// Allocations of at least this size are 2 MiB aligned and advised to use transparent huge pages
/// (this machine has THP in `madvise` mode), unless `MATCHER_BENCH_HUGE_PAGES=0`. The matcher's
/// pools are a few large arrays read at random, so without huge pages most of its cache misses
/// are also TLB misses, which cost a nested page walk in a VM. This is the allocator a deployment
/// would choose; it applies to every engine alike (the peers' many small allocations are below
/// the threshold).
const HUGE_PAGE_SIZE: usize = 2 << 20;

struct CountingAllocator;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static HUGE_PAGES: AtomicBool = AtomicBool::new(true);

impl CountingAllocator {
    /// The layout actually used for `layout`: 2 MiB aligned when large and huge pages are on.
    fn actual(layout: Layout) -> (Layout, bool) {
        if layout.size() >= HUGE_PAGE_SIZE && HUGE_PAGES.load(Ordering::Relaxed) {
            let huge = Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE_SIZE))
                .expect("2 MiB alignment of a valid layout");
            (huge, true)
        } else {
            (layout, false)
        }
    }
}

// SAFETY: delegates every call to the system allocator with a layout of at least the requested
// size and alignment; dealloc recomputes the same layout from the same inputs.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        let (actual, huge) = Self::actual(layout);
        // SAFETY: `actual` is a valid non-zero-size layout (it is at least `layout`).
        let pointer = unsafe { System.alloc(actual) };
        if huge && !pointer.is_null() {
            // SAFETY: the range is the allocation just made, 2 MiB aligned; madvise only
            // changes how the kernel backs it. A failure leaves ordinary pages, which is fine.
            unsafe {
                libc::madvise(pointer.cast(), actual.size(), libc::MADV_HUGEPAGE);
            }
        }
        pointer
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from `alloc` with this same `layout`, hence this `actual`;
        // the huge-pages switch is only set before any large allocation.
        unsafe { System.dealloc(pointer, Self::actual(layout).0) }
    }
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, so `size` with the old
        // alignment is a valid layout, and `pointer` holds `layout.size()` initialised bytes.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(size, layout.align());
            let new_pointer = self.alloc(new_layout);
            if !new_pointer.is_null() {
                std::ptr::copy_nonoverlapping(pointer, new_pointer, layout.size().min(size));
                self.dealloc(pointer, layout);
            }
            new_pointer
        }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

// ----- clock -----

#[inline(always)]
fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions; the TSC is invariant on this machine
        // (constant_tsc, nonstop_tsc), so ticks convert to time at a fixed rate.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// TSC ticks per nanosecond, measured against `Instant` over `calibration`.
fn ticks_per_ns(calibration: Duration) -> f64 {
    let (start, start_ticks) = (Instant::now(), ticks());
    while start.elapsed() < calibration {}
    let (elapsed, elapsed_ticks) = (start.elapsed(), ticks() - start_ticks);
    elapsed_ticks as f64 / elapsed.as_nanos() as f64
}

// ----- streams -----

const INSTRUMENT_ID: u32 = 1;
const PRICE_LEVELS: u32 = 1 << 20;
const MID_START: i64 = 1 << 19;
const QUANTITY_MAX_LOTS: u64 = 100;

/// One command in engine-neutral form (what every engine is fed).
#[derive(Clone, Copy)]
enum Op {
    /// Set-up only (instrument creation).
    Nothing,
    Limit {
        id: u64,
        side: Side,
        price: i64,
        quantity: u64,
        ioc: bool,
    },
    Market {
        id: u64,
        side: Side,
        quantity: u64,
    },
    Cancel {
        id: u64,
    },
    /// Replace to a new price keeping the open quantity (`leaves`).
    Move {
        id: u64,
        side: Side,
        price: i64,
        leaves: u64,
    },
}

struct Stream {
    name: &'static str,
    ops: Vec<Op>,
    records: Vec<CommandRecord>,
    /// Commands before this index are the untimed prefill.
    timed_from: usize,
    resting_at_start: u32,
    resting_at_end: u32,
}

fn instrument() -> InstrumentConfig {
    InstrumentConfig {
        instrument_id: INSTRUMENT_ID,
        symbol: *b"BENCH\0\0\0",
        price_exponent: -2,
        quantity_exponent: 0,
        tick_size: 1,
        lot_size: 1,
        price_min: 1,
        price_levels: PRICE_LEVELS,
        band_width_ticks: 0,
        reference_price: MID_START,
        quantity_min_lots: 1,
        quantity_max_lots: 1_000_000,
        notional_max: 0,
    }
}

fn config(order_capacity: u32) -> Config {
    Config {
        order_capacity,
        level_capacity: 2 * PRICE_LEVELS,
        instrument_capacity: 1,
        account_capacity: 4096,
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Builds a stream by running our matcher as the simulator, so cancels and moves target orders
/// that are really resting. The simulator's events maintain the live set.
struct Generator {
    matcher: Matcher,
    events: Vec<Event>,
    live: Vec<u64>,
    live_index: HashMap<u64, usize>,
    ops: Vec<Op>,
    records: Vec<CommandRecord>,
    rng: Rng,
    mid: i64,
}

impl Generator {
    fn new(seed: u64, order_capacity: u32) -> Generator {
        let mut generator = Generator {
            matcher: Matcher::new(config(order_capacity)).expect("config"),
            events: Vec::new(),
            live: Vec::new(),
            live_index: HashMap::new(),
            ops: Vec::new(),
            records: Vec::new(),
            rng: Rng(seed),
            mid: MID_START,
        };
        generator.push(Op::Nothing, Command::AddInstrument(instrument()));
        generator
    }

    fn sequence_next(&self) -> u64 {
        self.records.len() as u64 + 1
    }

    fn push(&mut self, op: Op, command: Command) {
        let record = command.encode();
        let sequence = self.sequence_next();
        self.events.clear();
        self.matcher
            .apply(sequence, sequence, &record, &mut self.events);
        for event in &self.events {
            match event.event_kind() {
                Some(EventKind::BookAdd) => {
                    let id = event.order_id.get();
                    self.live_index.insert(id, self.live.len());
                    self.live.push(id);
                }
                Some(EventKind::BookDelete) => {
                    remove_live(&mut self.live, &mut self.live_index, event.order_id.get())
                }
                Some(EventKind::Trade) if event.flags & FLAG_MAKER_DONE != 0 => {
                    remove_live(&mut self.live, &mut self.live_index, event.aux_a.get())
                }
                Some(EventKind::Rejected) => {
                    panic!("generator produced a rejected command: {event:?}")
                }
                _ => {}
            }
        }
        self.ops.push(op);
        self.records.push(record);
    }

    /// A random walk of one tick every `DRIFT_PERIOD` commands on average.
    fn drift(&mut self) {
        const DRIFT_PERIOD: u64 = 16;
        if self.rng.below(DRIFT_PERIOD) == 0 {
            self.mid += if self.rng.below(2) == 0 { -1 } else { 1 };
        }
    }

    fn side(&mut self) -> Side {
        if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    /// A limit price `offset` ticks on the passive side of the mid (negative: crossing).
    fn price(&self, side: Side, offset: i64) -> i64 {
        match side {
            Side::Buy => self.mid - offset,
            Side::Sell => self.mid + offset,
        }
    }

    /// Like `price` with a positive offset, but never crossing orders left behind by the drift.
    fn passive_price(&self, side: Side, offset: i64) -> i64 {
        let price = self.price(side, offset);
        match (side, self.matcher.best(INSTRUMENT_ID, side.opposite())) {
            (Side::Buy, Some(ask)) => price.min(ask.price - 1),
            (Side::Sell, Some(bid)) => price.max(bid.price + 1),
            _ => price,
        }
    }

    fn limit(&mut self, side: Side, price: i64, quantity: u64, time_in_force: TimeInForce) {
        let id = self.sequence_next();
        let order = NewOrder {
            instrument_id: INSTRUMENT_ID,
            account_id: 1 + (id % 1000) as u32,
            client_order_id: id,
            side,
            order_type: OrderType::Limit,
            time_in_force,
            stp_mode: StpMode::None,
            post_only: false,
            price,
            quantity,
        };
        let ioc = time_in_force == TimeInForce::Ioc;
        self.push(
            Op::Limit {
                id,
                side,
                price,
                quantity,
                ioc,
            },
            Command::NewOrder(order),
        );
    }

    fn market(&mut self, side: Side, quantity: u64) {
        let id = self.sequence_next();
        let order = NewOrder {
            instrument_id: INSTRUMENT_ID,
            account_id: 1 + (id % 1000) as u32,
            client_order_id: id,
            side,
            order_type: OrderType::Market,
            time_in_force: TimeInForce::Ioc,
            stp_mode: StpMode::None,
            post_only: false,
            price: 0,
            quantity,
        };
        self.push(Op::Market { id, side, quantity }, Command::NewOrder(order));
    }

    fn random_live(&mut self) -> Option<u64> {
        if self.live.is_empty() {
            return None;
        }
        Some(self.live[self.rng.below(self.live.len() as u64) as usize])
    }

    fn cancel(&mut self) {
        let Some(id) = self.random_live() else { return };
        let account_id = self.matcher.order(id).expect("live").account_id;
        self.push(
            Op::Cancel { id },
            Command::Cancel(Cancel {
                account_id,
                order_id: id,
            }),
        );
    }

    fn move_order(&mut self, offset: i64) {
        let Some(id) = self.random_live() else { return };
        let order = self.matcher.order(id).expect("live");
        let price = if offset > 0 {
            self.passive_price(order.side, offset)
        } else {
            self.price(order.side, offset)
        };
        let sequence = self.sequence_next();
        let replace = Replace {
            account_id: order.account_id,
            order_id: id,
            client_order_id: sequence,
            price,
            quantity: order.quantity,
        };
        let op = Op::Move {
            id,
            side: order.side,
            price,
            leaves: order.leaves,
        };
        self.push(op, Command::Replace(replace));
    }

    fn finish(self, name: &'static str, timed_from: usize, resting_at_start: u32) -> Stream {
        Stream {
            name,
            resting_at_end: self.matcher.order_count(),
            ops: self.ops,
            records: self.records,
            timed_from,
            resting_at_start,
        }
    }
}

fn remove_live(live: &mut Vec<u64>, index: &mut HashMap<u64, usize>, id: u64) {
    if let Some(position) = index.remove(&id) {
        live.swap_remove(position);
        if position < live.len() {
            index.insert(live[position], position);
        }
    }
}

/// Passive offsets: most orders within ~50 ticks of the mid, a tail out to 1000.
fn passive_offset(rng: &mut Rng) -> i64 {
    if rng.below(4) == 0 {
        1 + rng.below(1000) as i64
    } else {
        1 + rng.below(50) as i64
    }
}

/// Resting orders mix A holds (the smoke run under `cargo test` uses fewer).
const MIX_A_RESTING: u32 = 100_000;
/// Resting orders mix B holds.
const MIX_B_RESTING: u32 = 1_000;

fn mix_a(commands: usize, resting_target: u32) -> Stream {
    let mut generator = Generator::new(0xA, MIX_A_RESTING * 4);
    while generator.matcher.order_count() < resting_target {
        generator.drift();
        let side = generator.side();
        let offset = passive_offset(&mut generator.rng);
        let price = generator.price(side, offset);
        let quantity = 1 + generator.rng.below(QUANTITY_MAX_LOTS);
        generator.limit(side, price, quantity, TimeInForce::Gtc);
    }
    let timed_from = generator.records.len();
    let resting_at_start = generator.matcher.order_count();
    while generator.records.len() < timed_from + commands {
        generator.drift();
        let roll = generator.rng.below(100);
        let side = generator.side();
        if roll < 70 {
            // A few percent cross the spread by up to 3 ticks.
            let offset = if generator.rng.below(100) < 4 {
                -(generator.rng.below(4) as i64)
            } else {
                passive_offset(&mut generator.rng)
            };
            let price = generator.price(side, offset);
            let quantity = 1 + generator.rng.below(QUANTITY_MAX_LOTS);
            generator.limit(side, price, quantity, TimeInForce::Gtc);
        } else if roll < 90 {
            generator.cancel();
        } else {
            // Sized to hold the book near its target: sweeps when the book is larger, nibbles
            // when it is smaller.
            let quantity = if generator.matcher.order_count() > resting_target {
                1 + generator.rng.below(8 * QUANTITY_MAX_LOTS)
            } else {
                1 + generator.rng.below(QUANTITY_MAX_LOTS / 4)
            };
            generator.market(side, quantity);
        }
    }
    generator.finish("A", timed_from, resting_at_start)
}

fn mix_b(commands: usize) -> Stream {
    let mut generator = Generator::new(0xB, MIX_B_RESTING * 64);
    while generator.matcher.order_count() < MIX_B_RESTING {
        generator.drift();
        let side = generator.side();
        let offset = 1 + generator.rng.below(30) as i64;
        let price = generator.price(side, offset);
        let quantity = 1 + generator.rng.below(QUANTITY_MAX_LOTS);
        generator.limit(side, price, quantity, TimeInForce::Gtc);
    }
    let timed_from = generator.records.len();
    let resting_at_start = generator.matcher.order_count();
    while generator.records.len() < timed_from + commands {
        generator.drift();
        let roll = generator.rng.below(100);
        let side = generator.side();
        // Knobs that hold the book near its target without changing the mix: crossing moves
        // and IOC size.
        let above_target = generator.matcher.order_count() > MIX_B_RESTING;
        if roll < 82 {
            let crossing = above_target && generator.rng.below(100) < 5;
            let offset = if crossing {
                -1
            } else {
                1 + generator.rng.below(30) as i64
            };
            generator.move_order(offset);
        } else if roll < 91 {
            let offset = 1 + generator.rng.below(30) as i64;
            let price = generator.passive_price(side, offset);
            let quantity = 1 + generator.rng.below(QUANTITY_MAX_LOTS);
            generator.limit(side, price, quantity, TimeInForce::Gtc);
        } else if roll < 97 {
            generator.cancel();
        } else {
            let price = generator.price(side, -2);
            let quantity = if above_target {
                1 + generator.rng.below(8 * QUANTITY_MAX_LOTS)
            } else {
                1 + generator.rng.below(10)
            };
            generator.limit(side, price, quantity, TimeInForce::Ioc);
        }
    }
    generator.finish("B", timed_from, resting_at_start)
}

// ----- engines -----

trait Engine {
    const NAME: &'static str;
    fn new(stream: &Stream) -> Self;
    fn apply(&mut self, stream: &Stream, index: usize);
}

struct Ours {
    matcher: Matcher,
    events: Vec<Event>,
}

impl Engine for Ours {
    const NAME: &'static str = "matcher (ours)";
    fn new(stream: &Stream) -> Ours {
        let order_capacity = if stream.name == "A" { 250_000 } else { 64_000 };
        Ours {
            matcher: Matcher::new(config(order_capacity)).expect("config"),
            events: Vec::with_capacity(1 << 16),
        }
    }
    #[inline(always)]
    fn apply(&mut self, stream: &Stream, index: usize) {
        self.events.clear();
        let sequence = index as u64 + 1;
        self.matcher
            .apply(sequence, sequence, &stream.records[index], &mut self.events);
        black_box(&self.events);
    }
}

/// Our matcher fed as a log reader that holds the records ahead of the one it applies: before
/// each command, a [`Matcher::prefetch`] hint of the next record and a
/// [`Matcher::prefetch_early`] hint of the one after. The hints' cost is inside the timing.
/// The peers have no equivalent, so this row is an addition to the plain one, not a
/// replacement.
struct OursHinted(Ours);

impl Engine for OursHinted {
    const NAME: &'static str = "matcher (ours), next-record hints";
    fn new(stream: &Stream) -> OursHinted {
        OursHinted(Ours::new(stream))
    }
    #[inline(always)]
    fn apply(&mut self, stream: &Stream, index: usize) {
        if let Some(next) = stream.records.get(index + 1) {
            self.0.matcher.prefetch(next);
        }
        if let Some(after_next) = stream.records.get(index + 2) {
            self.0.matcher.prefetch_early(after_next);
        }
        self.0.apply(stream, index);
    }
}

struct Lobster(lobster::OrderBook);

fn lobster_side(side: Side) -> lobster::Side {
    match side {
        Side::Buy => lobster::Side::Bid,
        Side::Sell => lobster::Side::Ask,
    }
}

impl Engine for Lobster {
    const NAME: &'static str = "lobster 0.7";
    fn new(_: &Stream) -> Lobster {
        Lobster(lobster::OrderBook::new(1 << 19, 64, false))
    }
    #[inline(always)]
    fn apply(&mut self, stream: &Stream, index: usize) {
        use lobster::OrderType as T;
        let book = &mut self.0;
        match stream.ops[index] {
            Op::Nothing => {}
            Op::Limit {
                id,
                side,
                price,
                quantity,
                ioc,
            } => {
                let id = u128::from(id);
                black_box(book.execute(T::Limit {
                    id,
                    side: lobster_side(side),
                    qty: quantity,
                    price: price as u64,
                }));
                if ioc {
                    // No IOC in lobster: cancel whatever rested.
                    black_box(book.execute(T::Cancel { id }));
                }
            }
            Op::Market { id, side, quantity } => {
                black_box(book.execute(T::Market {
                    id: u128::from(id),
                    side: lobster_side(side),
                    qty: quantity,
                }));
            }
            Op::Cancel { id } => {
                black_box(book.execute(T::Cancel { id: u128::from(id) }));
            }
            Op::Move {
                id,
                side,
                price,
                leaves,
                ..
            } => {
                // No replace in lobster: cancel and re-add the open quantity under the same id.
                let id = u128::from(id);
                black_box(book.execute(T::Cancel { id }));
                black_box(book.execute(T::Limit {
                    id,
                    side: lobster_side(side),
                    qty: leaves,
                    price: price as u64,
                }));
            }
        }
    }
}

struct OrderbookRs(orderbook_rs::OrderBook<()>);

fn orderbook_rs_side(side: Side) -> orderbook_rs::Side {
    match side {
        Side::Buy => orderbook_rs::Side::Buy,
        Side::Sell => orderbook_rs::Side::Sell,
    }
}

impl Engine for OrderbookRs {
    const NAME: &'static str = "orderbook-rs 0.15";
    fn new(_: &Stream) -> OrderbookRs {
        OrderbookRs(orderbook_rs::OrderBook::new("BENCH"))
    }
    #[inline(always)]
    fn apply(&mut self, stream: &Stream, index: usize) {
        use orderbook_rs::{Id, TimeInForce as Tif};
        let book = &self.0;
        match stream.ops[index] {
            Op::Nothing => {}
            Op::Limit {
                id,
                side,
                price,
                quantity,
                ioc,
            } => {
                let time_in_force = if ioc { Tif::Ioc } else { Tif::Gtc };
                let result = book.add_limit_order(
                    Id::from_u64(id),
                    price as u128,
                    quantity,
                    orderbook_rs_side(side),
                    time_in_force,
                    None,
                );
                let _ = black_box(result);
            }
            Op::Market { id, side, quantity } => {
                let _ = black_box(book.match_market_order(
                    Id::from_u64(id),
                    quantity,
                    orderbook_rs_side(side),
                ));
            }
            Op::Cancel { id } => {
                let _ = black_box(book.cancel_order(Id::from_u64(id)));
            }
            Op::Move { id, price, .. } => {
                let update = pricelevel_update(id, price);
                let _ = black_box(book.update_order(update));
            }
        }
    }
}

fn pricelevel_update(id: u64, price: i64) -> pricelevel::OrderUpdate {
    pricelevel::OrderUpdate::UpdatePrice {
        order_id: orderbook_rs::Id::from_u64(id),
        new_price: pricelevel::Price::new(price as u128),
    }
}

// ----- measurement -----

struct Result {
    mix: &'static str,
    engine: &'static str,
    histogram: Histogram<u64>,
    commands_per_second: f64,
    commands_per_cpu_second: f64,
    allocations: u64,
    commands: u64,
    /// Latency by kind of command: (kind, histogram).
    by_kind: Vec<(&'static str, Histogram<u64>)>,
}

/// The kind of a command, for the latency breakdown.
fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Nothing => "other",
        Op::Limit { ioc: true, .. } => "IOC limit",
        Op::Limit { .. } => "limit",
        Op::Market { .. } => "market",
        Op::Cancel { .. } => "cancel",
        Op::Move { .. } => "move (replace)",
    }
}

fn prefill<E: Engine>(stream: &Stream) -> E {
    let mut engine = E::new(stream);
    for index in 0..stream.timed_from {
        engine.apply(stream, index);
    }
    engine
}

fn measure<E: Engine>(stream: &Stream, ticks_per_ns: f64) -> Result {
    let commands = (stream.records.len() - stream.timed_from) as u64;
    // Latency run.
    let mut engine: E = prefill(stream);
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let mut samples_ticks = vec![0u32; commands as usize];
    let allocations_before = ALLOCATIONS.load(Ordering::Relaxed);
    for (sample, index) in samples_ticks
        .iter_mut()
        .zip(stream.timed_from..stream.records.len())
    {
        let start = ticks();
        engine.apply(stream, index);
        let end = ticks();
        *sample = (end - start).min(u64::from(u32::MAX)) as u32;
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations_before;
    let mut by_kind: Vec<(&'static str, Histogram<u64>)> = Vec::new();
    for (sample, op) in samples_ticks.iter().zip(&stream.ops[stream.timed_from..]) {
        let nanoseconds = ((f64::from(*sample) / ticks_per_ns).round() as u64).max(1);
        histogram.saturating_record(nanoseconds);
        let kind = op_kind(op);
        let at = match by_kind.iter().position(|(k, _)| *k == kind) {
            Some(at) => at,
            None => {
                by_kind.push((kind, histogram.clone()));
                by_kind.last_mut().expect("pushed").1.reset();
                by_kind.len() - 1
            }
        };
        by_kind[at].1.saturating_record(nanoseconds);
    }
    drop(engine);
    // Throughput run.
    let mut engine: E = prefill(stream);
    let (start, start_cpu) = (Instant::now(), thread_cpu_time());
    for index in stream.timed_from..stream.records.len() {
        engine.apply(stream, index);
    }
    let (elapsed, elapsed_cpu) = (start.elapsed(), thread_cpu_time() - start_cpu);
    drop(engine);
    Result {
        mix: stream.name,
        engine: E::NAME,
        histogram,
        commands_per_second: commands as f64 / elapsed.as_secs_f64(),
        commands_per_cpu_second: commands as f64 / elapsed_cpu.as_secs_f64(),
        allocations,
        commands,
        by_kind,
    }
}

/// The encoded records of a replay log (mix A including its prefill), back to back.
fn replay_log(commands: usize, resting_target: u32) -> Vec<u8> {
    let stream = mix_a(
        commands.saturating_sub(resting_target as usize),
        resting_target,
    );
    let mut buffer: Vec<u8> =
        Vec::with_capacity(stream.records.len() * matcher::COMMAND_RECORD_SIZE);
    for record in &stream.records {
        buffer.extend_from_slice(record.as_bytes());
    }
    buffer
}

/// Replays `buffer` through a fresh matcher: commands per wall second and per CPU second,
/// events. With `hints`, the matcher gets the next record as a [`Matcher::prefetch`] hint and
/// the one after it as a [`Matcher::prefetch_early`] hint first, as a log reader that holds a
/// batch of records can do.
fn replay(buffer: &[u8], hints: bool) -> (f64, f64, u64) {
    let mut matcher = Matcher::new(config(250_000)).expect("config");
    let mut sink = CountingSink::default();
    let record_at = |index: usize| {
        buffer
            .get(index * matcher::COMMAND_RECORD_SIZE..(index + 1) * matcher::COMMAND_RECORD_SIZE)
            .and_then(|bytes| CommandRecord::ref_from_bytes(bytes).ok())
    };
    let count = buffer.len() / matcher::COMMAND_RECORD_SIZE;
    let (start, start_cpu) = (Instant::now(), thread_cpu_time());
    for (index, payload) in buffer
        .chunks_exact(matcher::COMMAND_RECORD_SIZE)
        .enumerate()
    {
        if hints {
            if let Some(next) = record_at(index + 1) {
                matcher.prefetch(next);
            }
            if let Some(after_next) = record_at(index + 2) {
                matcher.prefetch_early(after_next);
            }
        }
        let sequence = index as u64 + 1;
        matcher.apply_payload(sequence, sequence, payload, &mut sink);
    }
    let (elapsed, elapsed_cpu) = (start.elapsed(), thread_cpu_time() - start_cpu);
    black_box(matcher.state_hash());
    (
        count as f64 / elapsed.as_secs_f64(),
        count as f64 / elapsed_cpu.as_secs_f64(),
        sink.events,
    )
}

/// Timed commands per mix (and replay length) of the smoke run.
const SMOKE_COMMANDS: usize = 20_000;
/// Mix A's resting orders in the smoke run.
const SMOKE_RESTING: u32 = 2_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, and
    // then only a smoke run checks that every engine still runs (a second or so, no figures).
    let smoke = !std::env::args().any(|argument| argument == "--bench");
    HUGE_PAGES.store(
        env_usize("MATCHER_BENCH_HUGE_PAGES", 1) != 0,
        Ordering::Relaxed,
    );
    let (commands_default, replay_default, resting_a) = if smoke {
        (SMOKE_COMMANDS, SMOKE_COMMANDS, SMOKE_RESTING)
    } else {
        (2_000_000, 10_000_000, MIX_A_RESTING)
    };
    let commands = env_usize("MATCHER_BENCH_COMMANDS", commands_default);
    let resting_a = env_usize("MATCHER_BENCH_RESTING", resting_a as usize)
        .clamp(1, MIX_A_RESTING as usize * 2) as u32;
    let replay_commands = env_usize("MATCHER_BENCH_REPLAY", replay_default);
    let engines = std::env::var("MATCHER_BENCH_ENGINES")
        .unwrap_or_else(|_| "ours,ours-hints,lobster,orderbook-rs".to_string());
    let engines: Vec<&str> = engines.split(',').map(str::trim).collect();
    let mixes = std::env::var("MATCHER_BENCH_MIXES").unwrap_or_else(|_| "A,B".to_string());
    let core = pin_to_last_core();
    let (calibration, timer_samples) = if smoke {
        (Duration::from_millis(20), 10_000)
    } else {
        (Duration::from_millis(200), 1_000_000)
    };
    let ticks_per_ns = ticks_per_ns(calibration);
    let timer_overhead_ns = {
        let mut overhead = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).expect("bounds");
        for _ in 0..timer_samples {
            let start = ticks();
            let end = black_box(ticks());
            overhead
                .saturating_record((((end - start) as f64) / ticks_per_ns).round().max(1.0) as u64);
        }
        overhead.value_at_quantile(0.5)
    };
    eprintln!("pinned to core {core:?}, {ticks_per_ns:.3} TSC ticks/ns, timer overhead p50 {timer_overhead_ns} ns, huge pages {}", HUGE_PAGES.load(Ordering::Relaxed));
    if smoke {
        eprintln!("smoke run (no --bench argument): {commands} commands per mix; figures are not meaningful");
    }

    let mut results = Vec::new();
    let mut streams = Vec::new();
    if mixes.contains('A') {
        streams.push(mix_a(commands, resting_a));
    }
    if mixes.contains('B') {
        streams.push(mix_b(commands));
    }
    for stream in streams {
        let trades = {
            let mut engine: Ours = prefill(&stream);
            let mut sink = CountingSink::default();
            for index in stream.timed_from..stream.records.len() {
                let sequence = index as u64 + 1;
                engine
                    .matcher
                    .apply(sequence, sequence, &stream.records[index], &mut sink);
            }
            sink
        };
        eprintln!(
            "mix {}: {} timed commands after {} prefill; resting {} -> {}; {} events, {} trades",
            stream.name,
            stream.records.len() - stream.timed_from,
            stream.timed_from,
            stream.resting_at_start,
            stream.resting_at_end,
            trades.events,
            trades.trades,
        );
        if engines.contains(&"ours") {
            results.push(measure::<Ours>(&stream, ticks_per_ns));
        }
        if engines.contains(&"ours-hints") {
            results.push(measure::<OursHinted>(&stream, ticks_per_ns));
        }
        if engines.contains(&"lobster") {
            results.push(measure::<Lobster>(&stream, ticks_per_ns));
        }
        if engines.contains(&"orderbook-rs") {
            results.push(measure::<OrderbookRs>(&stream, ticks_per_ns));
        }
    }

    println!("| mix | engine | p50 ns | p99 ns | p99.9 ns | p99.99 ns | max ns | Mcmds/s | Mcmds/CPU-s | ours / engine | allocations / cmd |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for result in &results {
        let ours = results
            .iter()
            .find(|other| other.mix == result.mix && other.engine == Ours::NAME)
            .map_or(f64::NAN, |other| other.commands_per_cpu_second);
        let h = &result.histogram;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1}x | {:.3} |",
            result.mix,
            result.engine,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.value_at_quantile(0.9999),
            h.max(),
            result.commands_per_second / 1e6,
            result.commands_per_cpu_second / 1e6,
            ours / result.commands_per_cpu_second,
            result.allocations as f64 / result.commands as f64,
        );
    }
    println!();
    println!("Our matcher's latency by kind of command (the rows `matcher (ours)` above):");
    println!();
    println!("| mix | command | share | p50 ns | p99 ns | p99.9 ns | p99.99 ns | max ns |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for result in results.iter().filter(|r| r.engine == Ours::NAME) {
        for (kind, h) in &result.by_kind {
            println!(
                "| {} | {kind} | {:.1}% | {} | {} | {} | {} | {} |",
                result.mix,
                100.0 * h.len() as f64 / result.commands as f64,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.value_at_quantile(0.9999),
                h.max(),
            );
        }
    }
    if replay_commands == 0 {
        return;
    }
    let buffer = replay_log(replay_commands, resting_a);
    let count = buffer.len() / matcher::COMMAND_RECORD_SIZE;
    println!();
    for hints in [false, true] {
        let (rate, rate_cpu, events) = replay(&buffer, hints);
        println!(
            "replay{}: {count} encoded command records from memory through a fresh matcher: {:.2} M commands/s wall, {:.2} M commands/CPU-s ({events} events)",
            if hints { " with prefetch hints for the next two records" } else { "" },
            rate / 1e6,
            rate_cpu / 1e6
        );
    }
    println!("timer overhead (two TSC reads) p50: {timer_overhead_ns} ns, included in the latencies above");
}
