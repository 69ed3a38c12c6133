//! A seeded order flow for demos, tests, load generation and benchmarks: one instrument, limit
//! orders around a drifting mid (some crossing), cancels of orders the flow has seen accepted, and
//! market orders. Deterministic for a seed.

use matcher::{Cancel, Command, InstrumentConfig, NewOrder, OrderType, Side, StpMode, TimeInForce};

use crate::sim::Rng;

/// The instrument every workload trades.
pub const INSTRUMENT_ID: u32 = 1;
/// Price levels of the instrument (prices 1..=PRICE_LEVELS cents).
pub const PRICE_LEVELS: u32 = 100_000;
/// Most recently accepted order ids remembered as cancel targets.
const KNOWN_ORDERS_MAX: usize = 4096;

/// Price levels of every instrument together (both sides): the workload's DEMO takes
/// `2 × PRICE_LEVELS`, the rest is room for the other instruments a cluster adds (the built-in
/// gateway configuration's ACME and XYZ take 80,000).
pub const LEVEL_CAPACITY: u32 = 1 << 19;
const _: () = assert!(LEVEL_CAPACITY >= 2 * PRICE_LEVELS + 80_000);

/// The matcher configuration that fits the workload, and that every replica of a local cluster
/// runs with (nodes, gateway, feed publisher, offline replay).
pub fn matcher_config() -> matcher::Config {
    matcher::Config {
        order_capacity: 1 << 20,
        level_capacity: LEVEL_CAPACITY,
        instrument_capacity: 16,
        account_capacity: 4096,
    }
}

/// The command that creates the workload's instrument ("DEMO", cents, whole lots).
pub fn add_instrument() -> matcher::CommandRecord {
    Command::AddInstrument(InstrumentConfig {
        instrument_id: INSTRUMENT_ID,
        symbol: *b"DEMO\0\0\0\0",
        price_exponent: -2,
        quantity_exponent: 0,
        tick_size: 1,
        lot_size: 1,
        price_min: 1,
        price_levels: PRICE_LEVELS,
        band_width_ticks: 0,
        reference_price: 50_000,
        quantity_min_lots: 1,
        quantity_max_lots: 1_000_000,
        notional_max: 0,
    })
    .encode()
}

/// The order flow.
pub struct Workload {
    rng: Rng,
    accounts: u32,
    mid: i64,
    client_order_id: u64,
    known: Vec<(u32, u64)>,
}

impl Workload {
    pub fn new(seed: u64, accounts: u32) -> Self {
        Workload {
            rng: Rng::new(seed),
            accounts: accounts.max(1),
            mid: 50_000,
            client_order_id: 0,
            known: Vec::with_capacity(KNOWN_ORDERS_MAX),
        }
    }

    /// Tells the flow that `account`'s order got exchange id `order_id` (a cancel target).
    pub fn accepted(&mut self, account: u32, order_id: u64) {
        if self.known.len() == KNOWN_ORDERS_MAX {
            let victim = self.rng.below(KNOWN_ORDERS_MAX as u64) as usize;
            self.known.swap_remove(victim);
        }
        self.known.push((account, order_id));
    }

    /// The next command: 70% limit (GTC, within ±50 ticks of a drifting mid, so some cross),
    /// 20% cancel of a known order, 10% market IOC.
    pub fn next_command(&mut self) -> matcher::CommandRecord {
        let roll = self.rng.below(100);
        if (70..90).contains(&roll) && !self.known.is_empty() {
            let at = self.rng.below(self.known.len() as u64) as usize;
            let (account_id, order_id) = self.known.swap_remove(at);
            return Command::Cancel(Cancel {
                account_id,
                order_id,
            })
            .encode();
        }
        if self.rng.chance(100_000) {
            self.mid = (self.mid + self.rng.between(0, 20) as i64 - 10)
                .clamp(1_000, PRICE_LEVELS as i64 - 1_000);
        }
        self.client_order_id += 1;
        let side = if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let account_id = 1 + self.rng.below(self.accounts as u64) as u32;
        let quantity = self.rng.between(1, 100);
        let (order_type, time_in_force, price) = if roll >= 90 {
            (OrderType::Market, TimeInForce::Ioc, 0)
        } else {
            // Mostly behind the mid on the order's own side; a few percent through it.
            let offset = self.rng.between(0, 50) as i64 - 2;
            let price = match side {
                Side::Buy => self.mid - offset,
                Side::Sell => self.mid + offset,
            };
            (OrderType::Limit, TimeInForce::Gtc, price)
        };
        Command::NewOrder(NewOrder {
            instrument_id: INSTRUMENT_ID,
            account_id,
            client_order_id: self.client_order_id,
            side,
            order_type,
            time_in_force,
            stp_mode: StpMode::None,
            post_only: false,
            price,
            quantity,
        })
        .encode()
    }
}
