//! Application messages through the gateway core and a real matcher.

mod common;

use common::*;
use gateway::FixVersion;
use proptest::prelude::*;

fn two_sessions(first: FixVersion, second: FixVersion) -> (Harness, Client, Client) {
    let mut harness = Harness::new(vec![
        session_config(first, "CLIENT1", 101),
        session_config(second, "CLIENT2", 102),
    ]);
    let mut one = Client::connect(&mut harness, first, "CLIENT1");
    let mut two = Client::connect(&mut harness, second, "CLIENT2");
    one.logon(&mut harness);
    two.logon(&mut harness);
    (harness, one, two)
}

fn limit<'a>(id: &'a str, side: &'a str, qty: &'a str, px: &'a str) -> Vec<(u32, &'a str)> {
    vec![
        (11, id),
        (55, "ACME"),
        (54, side),
        (38, qty),
        (40, "2"),
        (44, px),
        (59, "1"),
        (60, "20231114-22:13:20.000"),
    ]
}

#[test]
fn new_order_fill_cancel_through_the_matcher_fix44_exact_bytes() {
    let (mut harness, mut one, mut two) = two_sessions(FixVersion::Fix44, FixVersion::Fix44);
    one.send(&mut harness, "D", &limit("B1", "1", "10", "101.25"));
    let mut submissions = Vec::new();
    harness.gateway.drain_submissions(&mut submissions);
    assert_eq!(submissions.len(), 1);
    assert_eq!(submissions[0].client_sequence, 1);
    let record = submissions[0].record.decode().unwrap();
    assert_eq!(
        record,
        matcher::Command::NewOrder(matcher::NewOrder {
            instrument_id: 1,
            account_id: 101,
            client_order_id: 1,
            side: matcher::Side::Buy,
            order_type: matcher::OrderType::Limit,
            time_in_force: matcher::TimeInForce::Gtc,
            stp_mode: matcher::StpMode::None,
            post_only: false,
            price: 10_125,
            quantity: 10,
        })
    );
    // Put it back and commit through the matcher.
    harness.sequence += 1;
    let mut events = Vec::new();
    harness.matcher.apply(
        harness.sequence,
        harness.now,
        &submissions[0].record,
        &mut events,
    );
    harness.gateway.on_committed(
        harness.now,
        harness.sequence,
        harness.now,
        &submissions[0].record,
        &events,
    );
    let bytes = one.take_raw(&mut harness);
    assert_eq!(
        show(&bytes),
        with_trailer(
            "FIX.4.4",
            "35=8|49=EXCH|56=CLIENT1|34=2|52=20231114-22:13:20.000|6=0|11=B1|14=0|17=2.0|37=2|38=10|39=0|40=2|44=101.25|54=1|55=ACME|59=1|60=20231114-22:13:20.000|150=0|151=10|"
        )
    );

    // CLIENT2 sells 4 at 101.00: trades at the maker's 101.25.
    harness.now += SECOND;
    two.send(&mut harness, "D", &limit("S1", "2", "4", "101"));
    harness.commit();
    let sells = two.take(&mut harness);
    assert_eq!(sells.len(), 2);
    assert_eq!(get(&sells[0], 150), Some("0"));
    let fill = &sells[1];
    let bytes_fill = two_fields(fill);
    assert_eq!(
        bytes_fill,
        "6=101.25|11=S1|14=4|17=3.1|31=101.25|32=4|37=3|38=4|39=2|40=2|44=101|54=2|55=ACME|59=1|60=20231114-22:13:21.000|150=F|151=0|"
    );
    let buys = one.take(&mut harness);
    assert_eq!(buys.len(), 1);
    assert_eq!(
        two_fields(&buys[0]),
        "6=101.25|11=B1|14=4|17=3.1|31=101.25|32=4|37=2|38=10|39=1|40=2|44=101.25|54=1|55=ACME|59=1|60=20231114-22:13:21.000|150=F|151=6|"
    );

    // Cancel the rest.
    one.send(
        &mut harness,
        "F",
        &[
            (41, "B1"),
            (11, "C1"),
            (55, "ACME"),
            (54, "1"),
            (60, "20231114-22:13:20.000"),
        ],
    );
    harness.commit();
    let cancel = one.take(&mut harness);
    assert_eq!(
        two_fields(&cancel[0]),
        "6=101.25|11=C1|14=4|17=4.0|37=2|38=10|39=4|40=2|41=B1|44=101.25|54=1|55=ACME|59=1|60=20231114-22:13:21.000|150=4|151=0|"
    );
    assert_eq!(harness.gateway.live_orders(0), 0);
    assert_eq!(harness.matcher.order_count(), 0);

    // Cancel of an unknown (or another session's) order: OrderCancelReject.
    two.send(
        &mut harness,
        "F",
        &[(41, "B1"), (11, "C2"), (55, "ACME"), (54, "1")],
    );
    let reject = two.take(&mut harness);
    assert_eq!(
        two_fields(&reject[0]),
        "11=C2|37=NONE|39=8|41=B1|58=unknown order|102=1|434=1|"
    );
}

/// The body after the standard header, `|`-joined.
fn two_fields(message: &[(u32, String)]) -> String {
    message
        .iter()
        .filter(|(tag, _)| ![8, 9, 10, 35, 49, 56, 34, 52].contains(tag))
        .map(|(tag, value)| format!("{tag}={value}|"))
        .collect()
}

#[test]
fn fix42_reports_partial_fill_and_fill_with_exec_trans_type() {
    let (mut harness, mut one, mut two) = two_sessions(FixVersion::Fix42, FixVersion::Fix42);
    one.send(&mut harness, "D", &limit("B1", "1", "10", "101.25"));
    harness.commit();
    two.send(&mut harness, "D", &limit("S1", "2", "10", "101.25"));
    harness.commit();
    let buys = one.take(&mut harness);
    assert_eq!(
        two_fields(&buys[0]),
        "6=0|11=B1|14=0|17=2.0|20=0|37=2|38=10|39=0|40=2|44=101.25|54=1|55=ACME|59=1|60=20231114-22:13:20.000|150=0|151=10|"
    );
    assert_eq!(get(&buys[1], 150), Some("2"), "4.2: fill");
    assert_eq!(get(&buys[1], 39), Some("2"));
    assert_eq!(get(&buys[1], 20), Some("0"));
    // A partial fill in 4.2 is ExecType 1.
    one.send(&mut harness, "D", &limit("B2", "1", "10", "101.25"));
    two.send(&mut harness, "D", &limit("S2", "2", "3", "101.25"));
    harness.commit();
    let buys = one.take(&mut harness);
    let partial = buys.iter().find(|m| get(m, 32).is_some()).unwrap();
    assert_eq!(get(partial, 150), Some("1"));
    assert_eq!(get(partial, 39), Some("1"));
    assert_eq!(get(partial, 151), Some("7"));
}

#[test]
fn replace_then_avg_px_is_exact() {
    let (mut harness, mut one, mut two) = two_sessions(FixVersion::Fix44, FixVersion::Fix44);
    one.send(&mut harness, "D", &limit("B1", "1", "10", "100"));
    harness.commit();
    two.send(&mut harness, "D", &limit("S1", "2", "1", "100"));
    harness.commit();
    one.send(
        &mut harness,
        "G",
        &[
            (41, "B1"),
            (11, "B1-2"),
            (55, "ACME"),
            (54, "1"),
            (38, "12"),
            (40, "2"),
            (44, "100.05"),
        ],
    );
    harness.commit();
    two.send(&mut harness, "D", &limit("S2", "2", "2", "100"));
    harness.commit();
    let out = one.take(&mut harness);
    let replaced = out.iter().find(|m| get(m, 150) == Some("5")).unwrap();
    assert_eq!(get(replaced, 11), Some("B1-2"));
    assert_eq!(get(replaced, 41), Some("B1"));
    assert_eq!(get(replaced, 38), Some("12"));
    assert_eq!(get(replaced, 44), Some("100.05"));
    assert_eq!(get(replaced, 151), Some("11"));
    let last = out.last().unwrap();
    assert_eq!(get(last, 14), Some("3"));
    // (1 × 100 + 2 × 100.05) / 3 = 100.0333333... truncated 6 digits below the cent.
    assert_eq!(get(last, 6), Some("100.03333333"));
    assert_eq!(get(last, 151), Some("9"));
    // Cancel by the old ClOrdID is now unknown.
    one.send(
        &mut harness,
        "F",
        &[(41, "B1"), (11, "C9"), (55, "ACME"), (54, "1")],
    );
    let reject = one.take(&mut harness);
    assert_eq!(msg_type(&reject[0]), "9");
}

#[test]
fn business_rejects() {
    let (mut harness, mut one, _two) = two_sessions(FixVersion::Fix44, FixVersion::Fix44);
    // Off tick: a reject, never a rounding.
    one.send(&mut harness, "D", &limit("X1", "1", "10", "101.26"));
    let out = one.take(&mut harness);
    assert_eq!(get(&out[0], 150), Some("8"));
    assert_eq!(get(&out[0], 39), Some("8"));
    assert_eq!(get(&out[0], 103), Some("99"));
    assert_eq!(get(&out[0], 58), Some("price not on tick"));
    one.send(&mut harness, "D", &limit("X2", "1", "10", "101.255"));
    assert_eq!(
        get(&one.take(&mut harness)[0], 58),
        Some("price not on tick")
    );
    // Unknown symbol.
    let mut order = limit("X3", "1", "10", "101.25");
    order[1] = (55, "NOPE");
    one.send(&mut harness, "D", &order);
    assert_eq!(get(&one.take(&mut harness)[0], 103), Some("1"));
    // Duplicate ClOrdID.
    one.send(&mut harness, "D", &limit("X4", "1", "10", "101.25"));
    one.send(&mut harness, "D", &limit("X4", "1", "10", "101.25"));
    let out = one.take(&mut harness);
    assert_eq!(get(&out[0], 103), Some("6"));
    // Unknown enum value: session Reject 373=5.
    one.send(&mut harness, "D", &limit("X5", "x", "10", "101.25"));
    let out = one.take(&mut harness);
    assert_eq!(msg_type(&out[0]), "3");
    assert_eq!(get(&out[0], 373), Some("5"));
    assert_eq!(get(&out[0], 371), Some("54"));
    // Malformed price: 373=6.
    one.send(&mut harness, "D", &limit("X6", "1", "10", "1O1"));
    let out = one.take(&mut harness);
    assert_eq!(get(&out[0], 373), Some("6"));
    // Unsupported MsgType: BusinessMessageReject 380=3.
    one.send(&mut harness, "H", &[(11, "Q1")]);
    let out = one.take(&mut harness);
    assert_eq!(msg_type(&out[0]), "j");
    assert_eq!(get(&out[0], 380), Some("3"));
    assert_eq!(get(&out[0], 372), Some("H"));
    // Matcher reject: post-only that would take.
    let (mut harness, mut one, mut two) = two_sessions(FixVersion::Fix44, FixVersion::Fix44);
    two.send(&mut harness, "D", &limit("S1", "2", "1", "100"));
    harness.commit();
    let mut post = limit("P1", "1", "1", "100");
    post.push((18, "6"));
    one.send(&mut harness, "D", &post);
    harness.commit();
    let out = one.take(&mut harness);
    assert_eq!(get(&out[0], 150), Some("8"));
    assert_eq!(get(&out[0], 58), Some("PostOnlyWouldTake"));
    assert_eq!(harness.gateway.live_orders(0), 0);
}

#[test]
fn mass_cancel_and_cancel_on_disconnect() {
    let mut config = session_config(FixVersion::Fix44, "CLIENT1", 101);
    config.cancel_on_disconnect = true;
    let mut harness = Harness::new(vec![config]);
    let mut one = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    one.logon(&mut harness);
    one.send(&mut harness, "D", &limit("B1", "1", "1", "100"));
    one.send(&mut harness, "D", &limit("B2", "1", "1", "99"));
    harness.commit();
    one.send(
        &mut harness,
        "q",
        &[(11, "M1"), (530, "7"), (60, "20231114-22:13:20.000")],
    );
    harness.commit();
    let out = one.take(&mut harness);
    let cancels = out.iter().filter(|m| get(m, 150) == Some("4")).count();
    assert_eq!(cancels, 2);
    let report = out.last().unwrap();
    assert_eq!(two_fields(report), "11=M1|37=4|530=7|531=7|533=2|");
    // Cancel on disconnect.
    one.send(&mut harness, "D", &limit("B3", "1", "1", "100"));
    harness.commit();
    harness.gateway.on_disconnected(one.connection, harness.now);
    harness.commit();
    assert_eq!(harness.matcher.order_count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes, and random mutations of valid orders, after a logon: never a panic, and the
    /// other session keeps working.
    #[test]
    fn garbage_after_logon_never_panics(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let (mut harness, mut one, mut two) = two_sessions(FixVersion::Fix44, FixVersion::Fix44);
        let mut order = one.build("D", &limit("B1", "1", "10", "101.25"));
        for (index, value) in flips {
            let at = index.index(order.len());
            order[at] = value;
        }
        one.send_raw(&mut harness, &order);
        for chunk in &chunks {
            one.send_raw(&mut harness, chunk);
        }
        harness.commit();
        harness.gateway.on_timer(harness.now + 100 * SECOND);
        let _ = one.take_raw(&mut harness);
        two.send(&mut harness, "1", &[(112, "still-there")]);
        let out = two.take(&mut harness);
        prop_assert!(out.iter().any(|m| get(m, 112) == Some("still-there")));
    }
}

/// A restart: what the first gateway submitted and never saw committed is sent again by the
/// next one (`resubmit`, from its submission log), whose sessions get the outcomes under the
/// original ClOrdIDs; an order committed before the restart comes back with `restore_order`
/// and a cancel of it that was in flight is answered as a cancel of it.
#[test]
fn a_restarted_gateway_resubmits_what_was_in_flight_and_reports_it() {
    use gateway::submission_log::SubmissionEntry;
    let sessions = || vec![session_config(FixVersion::Fix44, "CLIENT1", 101)];
    let mut before = Harness::new(sessions());
    let mut client = Client::connect(&mut before, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut before);
    // B1 is committed; then a cancel of B1 and a new order B2 are submitted, not committed.
    client.send(&mut before, "D", &limit("B1", "1", "10", "100"));
    before.commit();
    client.send(
        &mut before,
        "F",
        &[(41, "B1"), (11, "C1"), (55, "ACME"), (54, "1")],
    );
    client.send(&mut before, "D", &limit("B2", "1", "5", "99"));
    let mut in_flight = Vec::new();
    before.gateway.drain_submissions(&mut in_flight);
    assert_eq!(
        in_flight
            .iter()
            .map(|s| s.client_sequence)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    let committed_matcher_state = before.matcher.state_hash();

    // The next gateway: the committed log (AddInstrument and B1) is in its replica.
    let mut after = Harness::continuing(sessions(), 2);
    let b1 = before.matcher.order(2).expect("B1 rests with order id 2");
    let mut events = Vec::new();
    after.sequence = 2;
    after
        .matcher
        .apply(2, after.now, &matcher_record_of_b1(&b1), &mut events);
    assert_eq!(after.matcher.state_hash(), committed_matcher_state);
    let view = after.matcher.order(2).unwrap();
    assert!(after
        .gateway
        .restore_order(&view, gateway::app::ClOrdId::new(b"B1").unwrap(), 0, 0));
    for submission in &in_flight {
        let entry = SubmissionEntry {
            client_sequence: submission.client_sequence,
            record: submission.record,
            cl_ord_id: submission.cl_ord_id,
            request_type: submission.request_type,
        };
        assert!(after.gateway.resubmit(&entry));
    }
    // Out of order: refused.
    let late = SubmissionEntry {
        client_sequence: 9,
        record: in_flight[0].record,
        cl_ord_id: None,
        request_type: 0,
    };
    assert!(!after.gateway.resubmit(&late));
    let mut client = Client::connect(&mut after, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut after);
    after.commit();
    let out = client.take(&mut after);
    let reports: Vec<(Option<&str>, Option<&str>, Option<&str>)> = out
        .iter()
        .filter(|m| msg_type(m) == "8")
        .map(|m| (get(m, 11), get(m, 41), get(m, 150)))
        .collect();
    assert_eq!(
        reports,
        [
            (Some("C1"), Some("B1"), Some("4")),
            (Some("B2"), None, Some("0"))
        ]
    );
    // Sent again under their first client sequences; anything new continues after them.
    assert_eq!(after.gateway.client_sequence_next(), 4);
}

/// B1's NewOrder as the first gateway sent it (client order id 1: its client sequence).
fn matcher_record_of_b1(view: &matcher::OrderView) -> matcher::CommandRecord {
    matcher::Command::NewOrder(matcher::NewOrder {
        instrument_id: view.instrument_id,
        account_id: view.account_id,
        client_order_id: view.client_order_id,
        side: view.side,
        order_type: matcher::OrderType::Limit,
        time_in_force: view.time_in_force,
        stp_mode: view.stp_mode,
        post_only: view.post_only,
        price: view.price,
        quantity: view.quantity,
    })
    .encode()
}

/// A request sent again with PossDupFlag=Y whose ClOrdID the session has taken (a new order, a
/// cancel, a mass cancel) is ignored and counted, whatever became of the first one; without
/// the flag the same ClOrdID is a duplicate and rejected.
#[test]
fn possible_duplicates_of_taken_client_order_ids_are_ignored() {
    let (mut harness, mut one, _two) = two_sessions(FixVersion::Fix44, FixVersion::Fix44);
    let again = |fields: &[(u32, &'static str)]| {
        let mut fields = fields.to_vec();
        fields.extend([(43, "Y"), (122, "20231114-22:13:19.000")]);
        fields
    };
    let statuses = |out: &[Vec<(u32, String)>]| -> Vec<(String, Option<String>, Option<String>)> {
        out.iter()
            .map(|m| {
                (
                    msg_type(m).to_string(),
                    get(m, 11).map(str::to_string),
                    get(m, 150).map(str::to_string),
                )
            })
            .collect()
    };
    let order = limit("B1", "1", "10", "101.25");
    one.send(&mut harness, "D", &order);
    harness.commit();
    let out = one.take(&mut harness);
    assert_eq!(
        statuses(&out),
        [("8".into(), Some("B1".into()), Some("0".into()))]
    );
    one.send(&mut harness, "D", &again(&order));
    let cancel = [(41, "B1"), (11, "C1"), (55, "ACME"), (54, "1")];
    one.send(&mut harness, "F", &cancel);
    harness.commit();
    let out = one.take(&mut harness);
    assert_eq!(
        statuses(&out),
        [("8".into(), Some("C1".into()), Some("4".into()))]
    );
    // B1 is gone: a cancel of it would be "unknown order", its copy is not answered at all.
    one.send(&mut harness, "F", &again(&cancel));
    let mass = [(11, "M1"), (530, "7"), (60, "20231114-22:13:20.000")];
    one.send(&mut harness, "q", &mass);
    harness.commit();
    assert_eq!(msg_type(&one.take(&mut harness)[0]), "r");
    one.send(&mut harness, "q", &again(&mass));
    harness.commit();
    assert!(one.take(&mut harness).is_empty());
    assert_eq!(harness.gateway.counters().possible_duplicates_ignored, 3);
    assert_eq!(harness.gateway.counters().submissions, 3);
    // Without PossDupFlag: a duplicate ClOrdID, rejected.
    one.send(&mut harness, "D", &order);
    harness.commit();
    let out = one.take(&mut harness);
    assert_eq!(
        statuses(&out),
        [("8".into(), Some("B1".into()), Some("8".into()))]
    );
    assert_eq!(get(&out[0], 103), Some("6"));
    assert_eq!(harness.gateway.counters().possible_duplicates_ignored, 3);
}
