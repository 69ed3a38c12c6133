//! Scenario tests: one per rule, asserting the exact event sequence.

mod common;

use common::*;
use matcher::*;
use Side::{Buy, Sell};

fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|line| line.to_string()).collect()
}

#[test]
fn price_time_priority_and_trade_at_resting_price() {
    let mut h = Harness::new();
    assert_eq!(
        h.run(limit(1, 1, Sell, 100, 5)),
        lines(&[
            "#2 Accepted i1 o2 a1 c1 sell 5@100 Limit/Gtc/None",
            "#2 BookAdd i1 o2 sell 5@100",
            "#2 Level i1 sell 100 qty5 n1",
        ])
    );
    h.run(limit(2, 1, Sell, 100, 3));
    h.run(limit(3, 1, Sell, 99, 2));
    assert_eq!(
        h.run(limit(4, 1, Buy, 100, 9)),
        lines(&[
            "#5 Accepted i1 o5 a4 c1 buy 9@100 Limit/Gtc/None",
            "#5 Trade t1 i1 taker o5 a4 buy maker o4 a3 2@99 f2",
            "#5 Level i1 sell 99 qty0 n0",
            "#5 Trade t2 i1 taker o5 a4 buy maker o2 a1 5@100 f2",
            "#5 Level i1 sell 100 qty3 n1",
            "#5 Trade t3 i1 taker o5 a4 buy maker o3 a2 2@100 f1",
            "#5 Level i1 sell 100 qty1 n1",
        ])
    );
    assert_eq!(h.side(Sell), vec!["o3:1@100"]);
    assert!(h.side(Buy).is_empty());
}

#[test]
fn remainder_rests_after_partial_fill() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Sell, 100, 2));
    assert_eq!(
        h.run(limit(2, 1, Buy, 101, 5)),
        lines(&[
            "#3 Accepted i1 o3 a2 c1 buy 5@101 Limit/Gtc/None",
            "#3 Trade t1 i1 taker o3 a2 buy maker o2 a1 2@100 f2",
            "#3 Level i1 sell 100 qty0 n0",
            "#3 BookAdd i1 o3 buy 3@101",
            "#3 Level i1 buy 101 qty3 n1",
        ])
    );
    assert_eq!(h.side(Buy), vec!["o3:3@101"]);
}

#[test]
fn ioc_remainder_is_cancelled() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Sell, 100, 2));
    let ioc = order(2, 1, Buy, OrderType::Limit, TimeInForce::Ioc, 100, 5);
    assert_eq!(
        h.run(Command::NewOrder(ioc)),
        lines(&[
            "#3 Accepted i1 o3 a2 c1 buy 5@100 Limit/Ioc/None",
            "#3 Trade t1 i1 taker o3 a2 buy maker o2 a1 2@100 f2",
            "#3 Level i1 sell 100 qty0 n0",
            "#3 Cancelled IocRemainder i1 o3 a2 c1 buy 3@100 left0",
        ])
    );
    assert_eq!(h.matcher.order_count(), 0);
}

#[test]
fn market_order_sweeps_within_band_and_cancels_remainder() {
    let mut config = instrument(1);
    config.band_width_ticks = 5; // reference 100: band [95, 105]
    let mut h = Harness::with(small_config(), config);
    h.run(limit(1, 1, Sell, 101, 1));
    h.run(limit(1, 2, Sell, 105, 1));
    // Resting outside today's band (placed before the reference moved) is not reached.
    h.run(Command::SetReferencePrice {
        instrument_id: 1,
        price: 110,
    });
    h.run(limit(1, 3, Sell, 112, 1));
    h.run(Command::SetReferencePrice {
        instrument_id: 1,
        price: 100,
    });
    assert_eq!(
        h.run(market(2, 1, Buy, 5)),
        lines(&[
            "#7 Accepted i1 o7 a2 c1 buy 5@0 Market/Ioc/None",
            "#7 Trade t1 i1 taker o7 a2 buy maker o2 a1 1@101 f2",
            "#7 Level i1 sell 101 qty0 n0",
            "#7 Trade t2 i1 taker o7 a2 buy maker o3 a1 1@105 f2",
            "#7 Level i1 sell 105 qty0 n0",
            "#7 Cancelled IocRemainder i1 o7 a2 c1 buy 3@0 left0",
        ])
    );
    assert_eq!(h.side(Sell), vec!["o5:1@112"]);
    // A market order into an empty side is accepted and cancelled in full.
    assert_eq!(
        h.run(market(2, 2, Sell, 4)),
        lines(&[
            "#8 Accepted i1 o8 a2 c2 sell 4@0 Market/Ioc/None",
            "#8 Cancelled IocRemainder i1 o8 a2 c2 sell 4@0 left0",
        ])
    );
}

#[test]
fn fill_or_kill_all_or_nothing() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Sell, 100, 2));
    h.run(limit(1, 2, Sell, 101, 2));
    let hash = h.matcher.state_hash();
    let fok = |quantity, price| {
        Command::NewOrder(order(
            2,
            9,
            Buy,
            OrderType::Limit,
            TimeInForce::Fok,
            price,
            quantity,
        ))
    };
    assert_eq!(
        h.run(fok(5, 101)),
        lines(&["#4 Rejected FillOrKillUnfillable cmd1 i1 o0 a2 c9"])
    );
    assert_eq!(
        h.run(fok(3, 100)),
        lines(&["#5 Rejected FillOrKillUnfillable cmd1 i1 o0 a2 c9"])
    );
    // Only the log position moved.
    assert_eq!(h.side(Sell), vec!["o2:2@100", "o3:2@101"]);
    assert_ne!(hash, h.matcher.state_hash());
    assert_eq!(
        h.run(fok(3, 101)),
        lines(&[
            "#6 Accepted i1 o6 a2 c9 buy 3@101 Limit/Fok/None",
            "#6 Trade t1 i1 taker o6 a2 buy maker o2 a1 2@100 f2",
            "#6 Level i1 sell 100 qty0 n0",
            "#6 Trade t2 i1 taker o6 a2 buy maker o3 a1 1@101 f1",
            "#6 Level i1 sell 101 qty1 n1",
        ])
    );
}

#[test]
fn post_only_rejected_if_it_would_take() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Sell, 100, 2));
    let mut post = order(2, 1, Buy, OrderType::Limit, TimeInForce::Gtc, 100, 1);
    post.post_only = true;
    assert_eq!(
        h.run(Command::NewOrder(post)),
        lines(&["#3 Rejected PostOnlyWouldTake cmd1 i1 o0 a2 c1"])
    );
    post.price = 99;
    assert_eq!(
        h.run(Command::NewOrder(post)),
        lines(&[
            "#4 Accepted i1 o4 a2 c1 buy 1@99 Limit/Gtc/None post-only",
            "#4 BookAdd i1 o4 buy 1@99",
            "#4 Level i1 buy 99 qty1 n1",
        ])
    );
    // A post-only order may not be replaced into the spread's other side either.
    assert_eq!(
        h.run(replace(2, 4, 2, 100, 1)),
        lines(&["#5 Rejected PostOnlyWouldTake cmd3 i0 o4 a2 c2"])
    );
}

#[test]
fn cancel_own_orders_only() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Buy, 99, 4));
    h.run(limit(1, 2, Buy, 99, 6));
    assert_eq!(
        h.run(cancel(2, 2)),
        lines(&["#4 Rejected NotOwner cmd2 i0 o2 a2 c0"])
    );
    assert_eq!(
        h.run(cancel(1, 77)),
        lines(&["#5 Rejected UnknownOrder cmd2 i0 o77 a1 c0"])
    );
    assert_eq!(
        h.run(cancel(1, 2)),
        lines(&[
            "#6 Cancelled User i1 o2 a1 c1 buy 4@99 left0",
            "#6 BookDelete i1 o2 buy 4@99",
            "#6 Level i1 buy 99 qty6 n1",
        ])
    );
    assert_eq!(
        h.run(cancel(1, 2)),
        lines(&["#7 Rejected UnknownOrder cmd2 i0 o2 a1 c0"])
    );
    assert_eq!(h.side(Buy), vec!["o3:6@99"]);
}

#[test]
fn replace_quantity_down_keeps_priority() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Buy, 99, 10));
    h.run(limit(2, 1, Buy, 99, 5));
    assert_eq!(
        h.run(replace(1, 2, 11, 99, 4)),
        lines(&[
            "#4 Replaced i1 o2 a1 c11 buy 4@99 leaves4 f1",
            "#4 BookReduce i1 o2 buy -6@99 leaves4",
            "#4 Level i1 buy 99 qty9 n2",
        ])
    );
    assert_eq!(h.side(Buy), vec!["o2:4@99", "o3:5@99"]);
    // Same price and quantity: only the client order id changes.
    assert_eq!(
        h.run(replace(1, 2, 12, 99, 4)),
        lines(&["#5 Replaced i1 o2 a1 c12 buy 4@99 leaves4 f1"])
    );
    // The old client order id is free again, the new one is taken.
    assert_eq!(
        h.run(limit(1, 12, Buy, 98, 1)),
        lines(&["#6 Rejected DuplicateClientOrderId cmd1 i1 o0 a1 c12"])
    );
    assert_eq!(h.run(limit(1, 11, Buy, 98, 1)).len(), 3);
}

#[test]
fn replace_quantity_up_or_price_change_loses_priority() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Buy, 99, 10));
    h.run(limit(2, 1, Buy, 99, 5));
    assert_eq!(
        h.run(replace(1, 2, 1, 99, 12)),
        lines(&[
            "#4 Replaced i1 o2 a1 c1 buy 12@99 leaves12 f0",
            "#4 BookDelete i1 o2 buy 10@99",
            "#4 Level i1 buy 99 qty5 n1",
            "#4 BookAdd i1 o2 buy 12@99",
            "#4 Level i1 buy 99 qty17 n2",
        ])
    );
    assert_eq!(h.side(Buy), vec!["o3:5@99", "o2:12@99"]);
    assert_eq!(
        h.run(replace(2, 3, 1, 98, 5)),
        lines(&[
            "#5 Replaced i1 o3 a2 c1 buy 5@98 leaves5 f0",
            "#5 BookDelete i1 o3 buy 5@99",
            "#5 Level i1 buy 99 qty12 n1",
            "#5 BookAdd i1 o3 buy 5@98",
            "#5 Level i1 buy 98 qty5 n1",
        ])
    );
    let order = h.matcher.order(3).expect("resting");
    assert_eq!(order.priority_sequence, 5);
}

#[test]
fn replace_that_crosses_trades_and_rests_the_remainder() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Sell, 101, 3));
    h.run(limit(2, 1, Buy, 99, 10));
    assert_eq!(
        h.run(replace(2, 3, 2, 101, 10)),
        lines(&[
            "#4 Replaced i1 o3 a2 c2 buy 10@101 leaves10 f0",
            "#4 BookDelete i1 o3 buy 10@99",
            "#4 Level i1 buy 99 qty0 n0",
            "#4 Trade t1 i1 taker o3 a2 buy maker o2 a1 3@101 f2",
            "#4 Level i1 sell 101 qty0 n0",
            "#4 BookAdd i1 o3 buy 7@101",
            "#4 Level i1 buy 101 qty7 n1",
        ])
    );
    let order = h.matcher.order(3).expect("resting");
    assert_eq!((order.quantity, order.leaves), (10, 7));
}

#[test]
fn replace_to_at_or_below_filled_quantity_cancels() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Buy, 99, 10));
    h.run(limit(2, 1, Sell, 99, 4));
    // Filled 4 of 10: a new total of 4 leaves nothing open.
    assert_eq!(
        h.run(replace(1, 2, 5, 99, 4)),
        lines(&[
            "#4 Cancelled User i1 o2 a1 c1 buy 6@99 left0",
            "#4 BookDelete i1 o2 buy 6@99",
            "#4 Level i1 buy 99 qty0 n0",
        ])
    );
    assert_eq!(h.matcher.order_count(), 0);
    // Replacing a partly filled order to 7 leaves 3 open and keeps priority.
    h.run(limit(1, 3, Buy, 99, 10));
    h.run(limit(2, 2, Sell, 99, 4));
    assert_eq!(
        h.run(replace(1, 5, 3, 99, 7)),
        lines(&[
            "#7 Replaced i1 o5 a1 c3 buy 7@99 leaves3 f1",
            "#7 BookReduce i1 o5 buy -3@99 leaves3",
            "#7 Level i1 buy 99 qty3 n1",
        ])
    );
}

#[test]
fn replace_validation() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Buy, 99, 10));
    h.run(limit(1, 2, Buy, 98, 10));
    assert_eq!(
        h.run(replace(1, 9, 1, 99, 1)),
        lines(&["#4 Rejected UnknownOrder cmd3 i0 o9 a1 c1"])
    );
    assert_eq!(
        h.run(replace(2, 2, 1, 99, 1)),
        lines(&["#5 Rejected NotOwner cmd3 i0 o2 a2 c1"])
    );
    assert_eq!(
        h.run(replace(1, 2, 2, 99, 1)),
        lines(&["#6 Rejected DuplicateClientOrderId cmd3 i0 o2 a1 c2"])
    );
    assert_eq!(
        h.run(replace(1, 2, 1, 5000, 1)),
        lines(&["#7 Rejected OutsideBand cmd3 i0 o2 a1 c1"])
    );
    assert_eq!(
        h.run(replace(1, 2, 1, 99, 0)),
        lines(&["#8 Rejected QuantityOutOfRange cmd3 i0 o2 a1 c1"])
    );
    h.run(Command::Halt { instrument_id: 1 });
    assert_eq!(
        h.run(replace(1, 2, 1, 99, 1)),
        lines(&["#10 Rejected InstrumentHalted cmd3 i0 o2 a1 c1"])
    );
    assert_eq!(h.side(Buy), vec!["o2:10@99", "o3:10@98"]);
}

#[test]
fn mass_cancel_by_account_instrument_and_side() {
    let mut h = Harness::new();
    h.run(Command::AddInstrument(instrument(2)));
    h.run(limit(1, 1, Buy, 99, 1)); // o3
    h.run(limit(1, 2, Sell, 101, 1)); // o4
    h.run(limit(2, 1, Buy, 98, 1)); // o5
    let mut other = order(1, 3, Buy, OrderType::Limit, TimeInForce::Gtc, 50, 1);
    other.instrument_id = 2;
    h.run(Command::NewOrder(other)); // o6
    h.run(limit(1, 4, Buy, 97, 1)); // o7
    assert_eq!(
        h.run(Command::MassCancel(MassCancel {
            account_id: 1,
            instrument_id: Some(1),
            side: Some(Buy)
        })),
        lines(&[
            "#8 Cancelled MassCancel i1 o3 a1 c1 buy 1@99 left0",
            "#8 BookDelete i1 o3 buy 1@99",
            "#8 Level i1 buy 99 qty0 n0",
            "#8 Cancelled MassCancel i1 o7 a1 c4 buy 1@97 left0",
            "#8 BookDelete i1 o7 buy 1@97",
            "#8 Level i1 buy 97 qty0 n0",
            "#8 MassCancelled a1 i1 buy n2",
        ])
    );
    assert_eq!(
        h.run(Command::MassCancel(MassCancel {
            account_id: 1,
            instrument_id: None,
            side: None
        })),
        lines(&[
            "#9 Cancelled MassCancel i1 o4 a1 c2 sell 1@101 left0",
            "#9 BookDelete i1 o4 sell 1@101",
            "#9 Level i1 sell 101 qty0 n0",
            "#9 Cancelled MassCancel i2 o6 a1 c3 buy 1@50 left0",
            "#9 BookDelete i2 o6 buy 1@50",
            "#9 Level i2 buy 50 qty0 n0",
            "#9 MassCancelled a1 i0 - n2",
        ])
    );
    assert_eq!(
        h.run(Command::MassCancel(MassCancel {
            account_id: 1,
            instrument_id: Some(3),
            side: None
        })),
        lines(&["#10 Rejected UnknownInstrument cmd4 i3 o0 a1 c0"])
    );
    assert_eq!(
        h.run(Command::MassCancel(MassCancel {
            account_id: 42,
            instrument_id: None,
            side: None
        })),
        lines(&["#11 MassCancelled a42 i0 - n0"])
    );
    assert_eq!(h.side(Buy), vec!["o5:1@98"]);
}

fn stp_order(
    account_id: u32,
    client_order_id: u64,
    side: Side,
    price: i64,
    quantity: u64,
    stp_mode: StpMode,
) -> Command {
    let mut new = order(
        account_id,
        client_order_id,
        side,
        OrderType::Limit,
        TimeInForce::Gtc,
        price,
        quantity,
    );
    new.stp_mode = stp_mode;
    Command::NewOrder(new)
}

fn stp_book() -> Harness {
    let mut h = Harness::new();
    h.run(limit(2, 1, Sell, 100, 2)); // o2, another account
    h.run(limit(1, 1, Sell, 100, 3)); // o3, own
    h.run(limit(2, 2, Sell, 100, 4)); // o4, another account
    h
}

#[test]
fn stp_cancel_newest() {
    let mut h = stp_book();
    assert_eq!(
        h.run(stp_order(1, 2, Buy, 100, 10, StpMode::CancelNewest)),
        lines(&[
            "#5 Accepted i1 o5 a1 c2 buy 10@100 Limit/Gtc/CancelNewest",
            "#5 Trade t1 i1 taker o5 a1 buy maker o2 a2 2@100 f2",
            "#5 Level i1 sell 100 qty7 n2",
            "#5 Cancelled SelfTrade i1 o5 a1 c2 buy 8@100 left0",
        ])
    );
    assert_eq!(h.side(Sell), vec!["o3:3@100", "o4:4@100"]);
}

#[test]
fn stp_cancel_oldest() {
    let mut h = stp_book();
    assert_eq!(
        h.run(stp_order(1, 2, Buy, 100, 10, StpMode::CancelOldest)),
        lines(&[
            "#5 Accepted i1 o5 a1 c2 buy 10@100 Limit/Gtc/CancelOldest",
            "#5 Trade t1 i1 taker o5 a1 buy maker o2 a2 2@100 f2",
            "#5 Level i1 sell 100 qty7 n2",
            "#5 Cancelled SelfTrade i1 o3 a1 c1 sell 3@100 left0",
            "#5 BookDelete i1 o3 sell 3@100",
            "#5 Level i1 sell 100 qty4 n1",
            "#5 Trade t2 i1 taker o5 a1 buy maker o4 a2 4@100 f2",
            "#5 Level i1 sell 100 qty0 n0",
            "#5 BookAdd i1 o5 buy 4@100",
            "#5 Level i1 buy 100 qty4 n1",
        ])
    );
}

#[test]
fn stp_cancel_both() {
    let mut h = stp_book();
    assert_eq!(
        h.run(stp_order(1, 2, Buy, 100, 10, StpMode::CancelBoth)),
        lines(&[
            "#5 Accepted i1 o5 a1 c2 buy 10@100 Limit/Gtc/CancelBoth",
            "#5 Trade t1 i1 taker o5 a1 buy maker o2 a2 2@100 f2",
            "#5 Level i1 sell 100 qty7 n2",
            "#5 Cancelled SelfTrade i1 o3 a1 c1 sell 3@100 left0",
            "#5 BookDelete i1 o3 sell 3@100",
            "#5 Level i1 sell 100 qty4 n1",
            "#5 Cancelled SelfTrade i1 o5 a1 c2 buy 8@100 left0",
        ])
    );
    assert_eq!(h.side(Sell), vec!["o4:4@100"]);
}

#[test]
fn stp_decrement_and_cancel() {
    // Taker larger than the resting order: the resting order goes, the taker shrinks and continues.
    let mut h = stp_book();
    assert_eq!(
        h.run(stp_order(1, 2, Buy, 100, 10, StpMode::DecrementAndCancel)),
        lines(&[
            "#5 Accepted i1 o5 a1 c2 buy 10@100 Limit/Gtc/DecrementAndCancel",
            "#5 Trade t1 i1 taker o5 a1 buy maker o2 a2 2@100 f2",
            "#5 Level i1 sell 100 qty7 n2",
            "#5 Cancelled SelfTrade i1 o3 a1 c1 sell 3@100 left0",
            "#5 BookDelete i1 o3 sell 3@100",
            "#5 Level i1 sell 100 qty4 n1",
            "#5 Cancelled SelfTrade i1 o5 a1 c2 buy 3@100 left5",
            "#5 Trade t2 i1 taker o5 a1 buy maker o4 a2 4@100 f2",
            "#5 Level i1 sell 100 qty0 n0",
            "#5 BookAdd i1 o5 buy 1@100",
            "#5 Level i1 buy 100 qty1 n1",
        ])
    );
    let order = h.matcher.order(5).expect("rests");
    assert_eq!((order.quantity, order.leaves), (7, 1));

    // Taker smaller than the resting order: the resting order is reduced in place, the taker ends.
    let mut h = stp_book();
    h.run(cancel(2, 2));
    assert_eq!(
        h.run(stp_order(1, 2, Buy, 100, 2, StpMode::DecrementAndCancel)),
        lines(&[
            "#6 Accepted i1 o6 a1 c2 buy 2@100 Limit/Gtc/DecrementAndCancel",
            "#6 Cancelled SelfTrade i1 o3 a1 c1 sell 2@100 left1",
            "#6 BookReduce i1 o3 sell -2@100 leaves1",
            "#6 Level i1 sell 100 qty5 n2",
            "#6 Cancelled SelfTrade i1 o6 a1 c2 buy 2@100 left0",
        ])
    );
    assert_eq!(h.side(Sell), vec!["o3:1@100", "o4:4@100"]);
}

#[test]
fn stp_none_allows_self_trade() {
    let mut h = stp_book();
    h.run(cancel(2, 2));
    assert_eq!(
        h.run(limit(1, 2, Buy, 100, 1)),
        lines(&[
            "#6 Accepted i1 o6 a1 c2 buy 1@100 Limit/Gtc/None",
            "#6 Trade t1 i1 taker o6 a1 buy maker o3 a1 1@100 f1",
            "#6 Level i1 sell 100 qty6 n2",
        ])
    );
}

#[test]
fn fill_or_kill_dry_run_follows_stp() {
    let mut h = stp_book();
    let mut fok = order(1, 2, Buy, OrderType::Limit, TimeInForce::Fok, 100, 6);
    fok.stp_mode = StpMode::CancelOldest;
    // 2 + 4 from the other account; the own order is cancelled on the way.
    assert_eq!(h.run(Command::NewOrder(fok)).len(), 8);
    let mut h = stp_book();
    fok.stp_mode = StpMode::CancelNewest;
    assert_eq!(
        h.run(Command::NewOrder(fok)),
        lines(&["#5 Rejected FillOrKillUnfillable cmd1 i1 o0 a1 c2"])
    );
}

#[test]
fn validation_reasons_in_order() {
    let mut config = instrument(1);
    config.tick_size = 5;
    config.price_min = 5;
    config.lot_size = 10;
    config.quantity_min_lots = 2;
    config.quantity_max_lots = 100;
    config.notional_max = 100_000;
    config.band_width_ticks = 10; // reference 100: [50, 150]
    let mut h = Harness::with(small_config(), config);
    let new = |price, quantity| limit(1, 1, Buy, price, quantity);
    let mut unknown = order(1, 1, Buy, OrderType::Limit, TimeInForce::Gtc, 100, 20);
    unknown.instrument_id = 5;
    assert_eq!(
        h.run(Command::NewOrder(unknown)),
        lines(&["#2 Rejected UnknownInstrument cmd1 i5 o0 a1 c1"])
    );
    assert_eq!(
        h.run(new(101, 20)),
        lines(&["#3 Rejected PriceOffTick cmd1 i1 o0 a1 c1"])
    );
    assert_eq!(
        h.run(new(155, 20)),
        lines(&["#4 Rejected OutsideBand cmd1 i1 o0 a1 c1"])
    );
    assert_eq!(
        h.run(new(45, 20)),
        lines(&["#5 Rejected OutsideBand cmd1 i1 o0 a1 c1"])
    );
    assert_eq!(
        h.run(new(100, 25)),
        lines(&["#6 Rejected QuantityOffLot cmd1 i1 o0 a1 c1"])
    );
    assert_eq!(
        h.run(new(100, 10)),
        lines(&["#7 Rejected QuantityOutOfRange cmd1 i1 o0 a1 c1"])
    );
    assert_eq!(
        h.run(new(100, 1010)),
        lines(&["#8 Rejected QuantityOutOfRange cmd1 i1 o0 a1 c1"])
    );
    assert_eq!(
        h.run(new(150, 700)),
        lines(&["#9 Rejected NotionalTooLarge cmd1 i1 o0 a1 c1"])
    );
    // Market orders are checked against the protection price (band edge): 150 * 700 > 100000.
    assert_eq!(
        h.run(market(1, 1, Buy, 700)),
        lines(&["#10 Rejected NotionalTooLarge cmd1 i1 o0 a1 c1"])
    );
    assert_eq!(h.run(new(100, 1000)).len(), 3);
    assert_eq!(
        h.run(new(100, 20)),
        lines(&["#12 Rejected DuplicateClientOrderId cmd1 i1 o0 a1 c1"])
    );
    h.run(Command::Halt { instrument_id: 1 });
    assert_eq!(
        h.run(new(101, 25)),
        lines(&["#14 Rejected InstrumentHalted cmd1 i1 o0 a1 c1"])
    );
    h.run(Command::KillSwitch {
        account_id: 1,
        on: true,
    });
    h.run(Command::Resume { instrument_id: 1 });
    assert_eq!(
        h.run(new(101, 25)),
        lines(&["#17 Rejected AccountKilled cmd1 i1 o0 a1 c1"])
    );
}

#[test]
fn malformed_records_are_rejected() {
    let mut h = Harness::new();
    let mut record = limit(1, 1, Buy, 100, 1).encode();
    record.side = 3;
    assert_eq!(
        h.run_record(&record),
        lines(&["#2 Rejected Malformed cmd1 i1 o0 a1 c1"])
    );
    let mut record = cancel(1, 5).encode();
    record.quantity = zerocopy::little_endian::U64::new(1);
    assert_eq!(
        h.run_record(&record),
        lines(&["#3 Rejected Malformed cmd2 i0 o5 a1 c0"])
    );
    let mut record = CommandRecord::zeroed();
    record.kind = 200;
    assert_eq!(
        h.run_record(&record),
        lines(&["#4 Rejected Malformed cmd200 i0 o0 a0 c0"])
    );
    // Market orders must be IOC or FOK and carry no price; post-only only on resting limits.
    let gtc_market = order(1, 1, Buy, OrderType::Market, TimeInForce::Gtc, 0, 1);
    assert_eq!(
        h.run(Command::NewOrder(gtc_market)),
        lines(&["#5 Rejected Malformed cmd1 i1 o0 a1 c1"])
    );
    let mut post_ioc = order(1, 1, Buy, OrderType::Limit, TimeInForce::Ioc, 100, 1);
    post_ioc.post_only = true;
    assert_eq!(
        h.run(Command::NewOrder(post_ioc)),
        lines(&["#6 Rejected Malformed cmd1 i1 o0 a1 c1"])
    );
    // Payloads of the wrong size.
    h.sequence += 1;
    h.events.clear();
    h.matcher
        .apply_payload(h.sequence, 0, &[1, 2, 3], &mut h.events);
    assert_eq!(
        format!("{:?}", h.events[0]),
        "#7 Rejected Malformed cmd0 i0 o0 a0 c0"
    );
}

#[test]
fn kill_switch_cancels_and_blocks() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Buy, 99, 1)); // o2
    h.run(limit(2, 1, Buy, 99, 1)); // o3
    h.run(limit(1, 2, Sell, 101, 1)); // o4
    assert_eq!(
        h.run(Command::KillSwitch {
            account_id: 1,
            on: true
        }),
        lines(&[
            "#5 AccountStatus a1 f1",
            "#5 Cancelled KillSwitch i1 o2 a1 c1 buy 1@99 left0",
            "#5 BookDelete i1 o2 buy 1@99",
            "#5 Level i1 buy 99 qty1 n1",
            "#5 Cancelled KillSwitch i1 o4 a1 c2 sell 1@101 left0",
            "#5 BookDelete i1 o4 sell 1@101",
            "#5 Level i1 sell 101 qty0 n0",
        ])
    );
    assert!(h.matcher.account_killed(1));
    assert_eq!(
        h.run(limit(1, 3, Buy, 99, 1)),
        lines(&["#6 Rejected AccountKilled cmd1 i1 o0 a1 c3"])
    );
    assert_eq!(
        h.run(Command::KillSwitch {
            account_id: 1,
            on: false
        }),
        lines(&["#7 AccountStatus a1 f0"])
    );
    assert_eq!(h.run(limit(1, 3, Buy, 99, 1)).len(), 3);
}

#[test]
fn end_of_day_expires_day_orders_in_book_order() {
    let mut h = Harness::new();
    let day = |account, client, side, price| {
        Command::NewOrder(order(
            account,
            client,
            side,
            OrderType::Limit,
            TimeInForce::Day,
            price,
            1,
        ))
    };
    h.run(day(1, 1, Buy, 98)); // o2
    h.run(limit(1, 2, Buy, 99, 1)); // o3 GTC
    h.run(day(2, 1, Buy, 99)); // o4
    h.run(day(2, 2, Sell, 102)); // o5
    h.run(day(1, 3, Sell, 101)); // o6
    assert_eq!(
        h.run(Command::EndOfDay { instrument_id: 1 }),
        lines(&[
            "#7 Cancelled Expired i1 o4 a2 c1 buy 1@99 left0",
            "#7 BookDelete i1 o4 buy 1@99",
            "#7 Level i1 buy 99 qty1 n1",
            "#7 Cancelled Expired i1 o2 a1 c1 buy 1@98 left0",
            "#7 BookDelete i1 o2 buy 1@98",
            "#7 Level i1 buy 98 qty0 n0",
            "#7 Cancelled Expired i1 o6 a1 c3 sell 1@101 left0",
            "#7 BookDelete i1 o6 sell 1@101",
            "#7 Level i1 sell 101 qty0 n0",
            "#7 Cancelled Expired i1 o5 a2 c2 sell 1@102 left0",
            "#7 BookDelete i1 o5 sell 1@102",
            "#7 Level i1 sell 102 qty0 n0",
            "#7 EndOfDay i1 n4",
        ])
    );
    assert_eq!(h.side(Buy), vec!["o3:1@99"]);
    assert_eq!(
        h.run(Command::EndOfDay { instrument_id: 9 }),
        lines(&["#8 Rejected UnknownInstrument cmd10 i9 o0 a0 c0"])
    );
}

#[test]
fn admin_instrument_commands() {
    let mut h = Harness::new();
    assert_eq!(
        h.run(Command::Halt { instrument_id: 1 }),
        lines(&["#2 InstrumentStatus i1 status2 ref100"])
    );
    assert_eq!(
        h.run(limit(1, 1, Buy, 99, 1)),
        lines(&["#3 Rejected InstrumentHalted cmd1 i1 o0 a1 c1"])
    );
    assert_eq!(
        h.run(Command::Resume { instrument_id: 1 }),
        lines(&["#4 InstrumentStatus i1 status1 ref100"])
    );
    assert_eq!(
        h.run(Command::SetReferencePrice {
            instrument_id: 1,
            price: 250
        }),
        lines(&["#5 InstrumentStatus i1 status1 ref250"])
    );
    assert_eq!(
        h.run(Command::SetReferencePrice {
            instrument_id: 1,
            price: 1001
        }),
        lines(&["#6 Rejected OutsideBand cmd11 i1 o0 a0 c0"])
    );
    assert_eq!(
        h.run(Command::AddInstrument(instrument(1))),
        lines(&["#7 Rejected InstrumentExists cmd5 i1 o0 a0 c0"])
    );
    assert_eq!(
        h.run(Command::AddInstrument(instrument(9))),
        lines(&["#8 Rejected Capacity cmd5 i9 o0 a0 c0"])
    );
    let mut bad = instrument(2);
    bad.tick_size = 0;
    assert_eq!(
        h.run(Command::AddInstrument(bad)),
        lines(&["#9 Rejected InvalidInstrumentConfig cmd5 i2 o0 a0 c0"])
    );
    let mut huge = instrument(2);
    huge.price_levels = 1 << 20;
    assert_eq!(
        h.run(Command::AddInstrument(huge)),
        lines(&["#10 Rejected Capacity cmd5 i2 o0 a0 c0"])
    );
    assert_eq!(
        h.run(Command::AddInstrument(instrument(2))),
        lines(&["#11 InstrumentStatus i2 status1 ref100"])
    );
}

#[test]
fn capacity_rejects_instead_of_growing() {
    let config = Config {
        order_capacity: 2,
        level_capacity: 4096,
        instrument_capacity: 1,
        account_capacity: 2,
    };
    let mut h = Harness::with(config, instrument(1));
    h.run(limit(1, 1, Buy, 90, 1));
    h.run(limit(2, 1, Buy, 91, 1));
    assert_eq!(
        h.run(limit(1, 2, Buy, 92, 1)),
        lines(&["#4 Rejected Capacity cmd1 i1 o0 a1 c2"])
    );
    // An IOC needs no slot.
    let ioc = order(1, 2, Sell, OrderType::Limit, TimeInForce::Ioc, 91, 1);
    assert_eq!(h.run(Command::NewOrder(ioc)).len(), 3);
    assert_eq!(
        h.run(limit(3, 1, Sell, 200, 1)),
        lines(&["#6 Rejected Capacity cmd1 i1 o0 a3 c1"])
    );
    assert_eq!(
        h.run(Command::KillSwitch {
            account_id: 3,
            on: true
        }),
        lines(&["#7 Rejected Capacity cmd8 i0 o0 a3 c0"])
    );
}

#[test]
fn rejected_commands_change_no_book_state() {
    let mut h = Harness::new();
    h.run(limit(1, 1, Sell, 100, 5));
    let mut before = Vec::new();
    h.matcher.snapshot(&mut before);
    h.run(limit(1, 1, Buy, 90, 5)); // duplicate client order id
    h.run(cancel(2, 2));
    h.run(replace(2, 2, 1, 100, 1));
    let mut after = Vec::new();
    h.matcher.snapshot(&mut after);
    // Only the header's log position and hash differ.
    assert_eq!(before[64..], after[64..]);
}

#[test]
fn equal_states_give_equal_snapshots_and_restore_round_trips() {
    // Two different histories leading to the same logical book at the same log position.
    let mut a = Harness::new();
    a.run(limit(1, 1, Buy, 99, 5));
    a.run(limit(2, 1, Buy, 98, 5));
    a.run(limit(1, 2, Sell, 120, 5)); // o4, cancelled below
    a.run(cancel(1, 4));
    let mut b = Harness::new();
    b.run(limit(1, 1, Buy, 99, 5));
    b.run(limit(2, 1, Buy, 98, 5));
    b.run(limit(1, 2, Sell, 130, 5)); // o4, cancelled below
    b.run(cancel(1, 4));
    // Timestamps are part of the state; the harness derives them from sequence numbers.
    let (mut bytes_a, mut bytes_b) = (Vec::new(), Vec::new());
    a.matcher.snapshot(&mut bytes_a);
    b.matcher.snapshot(&mut bytes_b);
    assert_eq!(bytes_a, bytes_b);
    assert_eq!(a.matcher.state_hash(), b.matcher.state_hash());
    let restored = Matcher::restore(small_config(), &bytes_a).expect("restore");
    assert_eq!(restored.state_hash(), a.matcher.state_hash());
    let mut again = Vec::new();
    restored.snapshot(&mut again);
    assert_eq!(again, bytes_a);
    // Corruption is detected, never a panic.
    for index in [0, 9, 70, 200, bytes_a.len() - 1] {
        let mut corrupt = bytes_a.clone();
        corrupt[index] ^= 0x10;
        assert!(
            Matcher::restore(small_config(), &corrupt).is_err(),
            "byte {index}"
        );
    }
    assert!(Matcher::restore(small_config(), &bytes_a[..bytes_a.len() - 1]).is_err());
}
