//! Shared test helpers: a harness that numbers commands, and command builders.
#![allow(dead_code)]

pub mod reference;

use matcher::*;

/// The default test instrument: prices in cents with a 1-cent tick from 0.01 to 10.00, lots of 1.
pub fn instrument(instrument_id: u32) -> InstrumentConfig {
    InstrumentConfig {
        instrument_id,
        symbol: *b"TEST\0\0\0\0",
        price_exponent: -2,
        quantity_exponent: 0,
        tick_size: 1,
        lot_size: 1,
        price_min: 1,
        price_levels: 1000,
        band_width_ticks: 0,
        reference_price: 100,
        quantity_min_lots: 1,
        quantity_max_lots: 1_000_000,
        notional_max: 0,
    }
}

pub fn small_config() -> Config {
    Config {
        order_capacity: 1024,
        level_capacity: 1 << 16,
        instrument_capacity: 8,
        account_capacity: 64,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn order(
    account_id: u32,
    client_order_id: u64,
    side: Side,
    order_type: OrderType,
    time_in_force: TimeInForce,
    price: i64,
    quantity: u64,
) -> NewOrder {
    NewOrder {
        instrument_id: 1,
        account_id,
        client_order_id,
        side,
        order_type,
        time_in_force,
        stp_mode: StpMode::None,
        post_only: false,
        price,
        quantity,
    }
}

pub fn limit(
    account_id: u32,
    client_order_id: u64,
    side: Side,
    price: i64,
    quantity: u64,
) -> Command {
    Command::NewOrder(order(
        account_id,
        client_order_id,
        side,
        OrderType::Limit,
        TimeInForce::Gtc,
        price,
        quantity,
    ))
}

pub fn market(account_id: u32, client_order_id: u64, side: Side, quantity: u64) -> Command {
    Command::NewOrder(order(
        account_id,
        client_order_id,
        side,
        OrderType::Market,
        TimeInForce::Ioc,
        0,
        quantity,
    ))
}

pub fn cancel(account_id: u32, order_id: u64) -> Command {
    Command::Cancel(Cancel {
        account_id,
        order_id,
    })
}

pub fn replace(
    account_id: u32,
    order_id: u64,
    client_order_id: u64,
    price: i64,
    quantity: u64,
) -> Command {
    Command::Replace(Replace {
        account_id,
        order_id,
        client_order_id,
        price,
        quantity,
    })
}

/// Numbers commands from 1, applies them, and renders the events one per line.
pub struct Harness {
    pub matcher: Matcher,
    pub sequence: u64,
    pub events: Vec<Event>,
}

impl Harness {
    /// A matcher with instrument 1 added at sequence 1.
    pub fn new() -> Harness {
        Harness::with(small_config(), instrument(1))
    }

    pub fn with(config: Config, instrument: InstrumentConfig) -> Harness {
        let mut harness = Harness {
            matcher: Matcher::new(config).expect("config"),
            sequence: 0,
            events: Vec::new(),
        };
        let lines = harness.run(Command::AddInstrument(instrument));
        assert_eq!(lines.len(), 1, "{lines:?}");
        harness
    }

    /// Applies one command, checks the incremental state hash, returns the events as lines.
    pub fn run(&mut self, command: Command) -> Vec<String> {
        self.run_record(&command.encode())
    }

    pub fn run_record(&mut self, record: &CommandRecord) -> Vec<String> {
        self.sequence += 1;
        self.events.clear();
        self.matcher.apply(
            self.sequence,
            self.sequence * 1000,
            record,
            &mut self.events,
        );
        assert_eq!(
            self.matcher.state_hash(),
            self.matcher.state_hash_recomputed()
        );
        self.events
            .iter()
            .map(|event| format!("{event:?}"))
            .collect()
    }

    /// Resting orders of instrument 1, one side, priority order, as `o{id}:{leaves}@{price}`.
    pub fn side(&self, side: Side) -> Vec<String> {
        let mut out = Vec::new();
        self.matcher.for_each_order(1, side, |order| {
            out.push(format!(
                "o{}:{}@{}",
                order.order_id, order.leaves, order.price
            ));
        });
        out
    }
}

/// SplitMix64, for reproducible streams.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// An open-loop log of every command kind (targets are recent sequence numbers, not looked up),
/// starting with `AddInstrument` for instruments 1 and 2 at sequences 1 and 2.
pub fn generate_log(seed: u64, count: usize) -> Vec<CommandRecord> {
    let mut rng = Rng(seed);
    let mut log = vec![
        Command::AddInstrument(instrument(1)).encode(),
        Command::AddInstrument(instrument(2)).encode(),
    ];
    let mut mid = 500i64;
    while log.len() < count {
        let sequence = log.len() as u64 + 1;
        mid = (mid + rng.below(3) as i64 - 1).clamp(100, 900);
        let account_id = 1 + rng.below(8) as u32;
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let offset = rng.below(30) as i64 - 3;
        let price = match side {
            Side::Buy => mid - offset,
            Side::Sell => mid + offset,
        };
        let instrument_id = 1 + rng.below(2) as u32;
        let target = sequence.saturating_sub(1 + rng.below(200));
        let command = match rng.below(100) {
            0..=54 => {
                let (order_type, time_in_force) = match rng.below(20) {
                    0 => (OrderType::Market, TimeInForce::Ioc),
                    1 => (OrderType::Market, TimeInForce::Fok),
                    2 => (OrderType::Limit, TimeInForce::Ioc),
                    3 => (OrderType::Limit, TimeInForce::Fok),
                    4..=6 => (OrderType::Limit, TimeInForce::Day),
                    _ => (OrderType::Limit, TimeInForce::Gtc),
                };
                let stp_mode = StpMode::from_u8(rng.below(5) as u8).unwrap_or(StpMode::None);
                Command::NewOrder(NewOrder {
                    instrument_id,
                    account_id,
                    client_order_id: sequence,
                    side,
                    order_type,
                    time_in_force,
                    stp_mode,
                    post_only: order_type == OrderType::Limit
                        && time_in_force.rests()
                        && rng.below(10) == 0,
                    price: if order_type == OrderType::Market {
                        0
                    } else {
                        price
                    },
                    quantity: 1 + rng.below(20),
                })
            }
            55..=74 => Command::Cancel(Cancel {
                account_id,
                order_id: target,
            }),
            75..=94 => Command::Replace(Replace {
                account_id,
                order_id: target,
                client_order_id: sequence,
                price,
                quantity: 1 + rng.below(20),
            }),
            95 => Command::MassCancel(MassCancel {
                account_id,
                instrument_id: Some(instrument_id),
                side: None,
            }),
            96 => Command::KillSwitch {
                account_id,
                on: rng.below(4) == 0,
            },
            97 => Command::EndOfDay { instrument_id },
            98 => Command::SetReferencePrice {
                instrument_id,
                price: mid,
            },
            _ => {
                if rng.below(2) == 0 {
                    Command::Halt { instrument_id }
                } else {
                    Command::Resume { instrument_id }
                }
            }
        };
        log.push(command.encode());
    }
    log
}
