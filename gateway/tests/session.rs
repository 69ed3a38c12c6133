//! Session layer, scripted client against the gateway core.

mod common;

use common::*;
use gateway::FixVersion;

fn one_session() -> Harness {
    Harness::new(vec![session_config(FixVersion::Fix44, "CLIENT1", 101)])
}

#[test]
fn logon_exchange_exact_bytes() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.send(&mut harness, "A", &[(98, "0"), (108, "30")]);
    let bytes = client.take_raw(&mut harness);
    assert_eq!(
        show(&bytes),
        with_trailer(
            "FIX.4.4",
            "35=A|49=EXCH|56=CLIENT1|34=1|52=20231114-22:13:20.000|98=0|108=30|"
        )
    );
    assert!(harness.gateway.session(0).is_logged_on());
    assert_eq!(harness.gateway.session(0).next_target(), 2);
    // Logout exchange.
    client.send(&mut harness, "5", &[]);
    let answer = client.take(&mut harness);
    assert_eq!(msg_type(&answer[0]), "5");
    assert!(harness.gateway.wants_close(client.connection));
    assert!(!harness.gateway.session(0).is_logged_on());
}

#[test]
fn logon_with_reset_seq_num_flag() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.send(&mut harness, "A", &[(98, "0"), (108, "30"), (141, "Y")]);
    let bytes = client.take_raw(&mut harness);
    assert_eq!(
        show(&bytes),
        with_trailer(
            "FIX.4.4",
            "35=A|49=EXCH|56=CLIENT1|34=1|52=20231114-22:13:20.000|98=0|108=30|141=Y|"
        )
    );
}

#[test]
fn refused_logons_are_answered_with_logout_and_counted() {
    let mut config = session_config(FixVersion::Fix44, "CLIENT1", 101);
    config.password = Some("secret".into());
    let mut harness = Harness::new(vec![config]);

    let mut stranger = Client::connect(&mut harness, FixVersion::Fix44, "NOBODY");
    let answer = stranger.logon(&mut harness);
    assert_eq!(msg_type(&answer[0]), "5");
    assert_eq!(
        get(&answer[0], 58),
        Some("unknown session (CompIDs or BeginString)")
    );
    assert!(harness.gateway.wants_close(stranger.connection));

    let mut wrong = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    wrong.send(&mut harness, "A", &[(98, "0"), (108, "30"), (554, "guess")]);
    let answer = wrong.take(&mut harness);
    assert_eq!(get(&answer[0], 58), Some("invalid password"));
    assert_eq!(
        get(&answer[0], 34),
        Some("1"),
        "refusals are outside the session's sequence"
    );

    let mut good = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    good.send(
        &mut harness,
        "A",
        &[(98, "0"), (108, "30"), (554, "secret")],
    );
    assert_eq!(msg_type(&good.take(&mut harness)[0]), "A");

    let mut second = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    second.send(
        &mut harness,
        "A",
        &[(98, "0"), (108, "30"), (554, "secret")],
    );
    let answer = second.take(&mut harness);
    assert_eq!(get(&answer[0], 58), Some("session already logged on"));
    assert!(harness.gateway.wants_close(second.connection));
    assert!(
        !harness.gateway.wants_close(good.connection),
        "the first stays"
    );
    assert_eq!(harness.gateway.session(0).next_sender(), 2, "untouched");

    let mut bad_heartbeat = Client::connect(&mut harness, FixVersion::Fix42, "CLIENT1");
    let answer = bad_heartbeat.logon(&mut harness);
    assert_eq!(
        msg_type(&answer[0]),
        "5",
        "wrong BeginString is an unknown session"
    );

    let counters = harness.gateway.counters();
    assert_eq!(counters.logons_refused_unknown, 2);
    assert_eq!(counters.logons_refused_password, 1);
    assert_eq!(counters.logons_refused_duplicate, 1);
}

#[test]
fn first_message_must_be_logon_and_heartbeat_within_bounds() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.send(&mut harness, "0", &[]);
    let answer = client.take(&mut harness);
    assert_eq!(get(&answer[0], 58), Some("first message must be Logon"));
    assert!(harness.gateway.wants_close(client.connection));

    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.send(&mut harness, "A", &[(98, "0"), (108, "1000")]);
    let answer = client.take(&mut harness);
    assert_eq!(
        get(&answer[0], 58),
        Some("HeartBtInt(108) missing or out of range")
    );
}

#[test]
fn heartbeat_test_request_and_timeout_follow_the_clock() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    harness.now += 29 * SECOND;
    harness.gateway.on_timer(harness.now);
    assert!(client.take(&mut harness).is_empty());
    harness.now += SECOND;
    harness.gateway.on_timer(harness.now);
    let out = client.take(&mut harness);
    assert_eq!(out.len(), 1);
    assert_eq!(
        msg_type(&out[0]),
        "0",
        "heartbeat after HeartBtInt of our silence"
    );
    // Their silence: a TestRequest at 120% of the interval.
    harness.now += 6 * SECOND;
    harness.gateway.on_timer(harness.now);
    let out = client.take(&mut harness);
    assert_eq!(msg_type(&out[0]), "1");
    let id = get(&out[0], 112).unwrap().to_string();
    // The answer clears it.
    client.send(&mut harness, "0", &[(112, &id)]);
    harness.now += 30 * SECOND;
    harness.gateway.on_timer(harness.now);
    let out = client.take(&mut harness);
    assert!(out.iter().all(|m| msg_type(m) != "5"));
    // Silence again: TestRequest, then after another interval, Logout and close.
    harness.now += 10 * SECOND;
    harness.gateway.on_timer(harness.now);
    harness.now += 30 * SECOND;
    harness.gateway.on_timer(harness.now);
    let out = client.take(&mut harness);
    let last = out.last().unwrap();
    assert_eq!(msg_type(last), "5");
    assert_eq!(get(last, 58), Some("heartbeat timeout"));
    assert!(harness.gateway.wants_close(client.connection));
}

#[test]
fn test_request_is_answered_with_its_id() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    client.send(&mut harness, "1", &[(112, "PING-7")]);
    let bytes = client.take_raw(&mut harness);
    assert_eq!(
        show(&bytes),
        with_trailer(
            "FIX.4.4",
            "35=0|49=EXCH|56=CLIENT1|34=2|52=20231114-22:13:20.000|112=PING-7|"
        )
    );
}

#[test]
fn resend_request_gets_poss_dup_app_messages_and_gap_fill_for_admin() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness); // our 1: Logon
    client.send(
        &mut harness,
        "D",
        &[
            (11, "o1"),
            (55, "ACME"),
            (54, "1"),
            (38, "10"),
            (40, "2"),
            (44, "101.25"),
        ],
    );
    harness.commit(); // our 2: ExecutionReport New
    client.send(&mut harness, "1", &[(112, "x")]); // our 3: Heartbeat
    let first = client.take(&mut harness);
    assert_eq!(first.len(), 2);
    let original_report = first[0].clone();
    harness.now += 5 * SECOND;
    client.send(&mut harness, "2", &[(7, "1"), (16, "0")]);
    let bytes = client.take_raw(&mut harness);
    let out = split(&bytes);
    assert_eq!(out.len(), 3, "{}", show(&bytes));
    // Logon (admin) -> gap fill to 2, exact bytes.
    let gap_fill = with_trailer(
        "FIX.4.4",
        "35=4|49=EXCH|56=CLIENT1|34=1|43=Y|52=20231114-22:13:25.000|122=20231114-22:13:25.000|123=Y|36=2|",
    );
    assert!(show(&bytes).starts_with(&gap_fill), "{}", show(&bytes));
    // The report, resent with PossDup and OrigSendingTime, same body.
    let resent = &out[1];
    assert_eq!(msg_type(resent), "8");
    assert_eq!(get(resent, 34), Some("2"));
    assert_eq!(get(resent, 43), Some("Y"));
    assert_eq!(get(resent, 122), Some("20231114-22:13:20.000"));
    assert_eq!(get(resent, 52), Some("20231114-22:13:25.000"));
    let body = |m: &[(u32, String)]| {
        m.iter()
            .filter(|(t, _)| ![8, 9, 10, 34, 43, 52, 122].contains(t))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(body(resent), body(&original_report));
    // Heartbeat (admin) -> gap fill to 4.
    assert_eq!(msg_type(&out[2]), "4");
    assert_eq!(get(&out[2], 34), Some("3"));
    assert_eq!(get(&out[2], 36), Some("4"));
    assert_eq!(
        harness.gateway.session(0).next_sender(),
        4,
        "resends use no new numbers"
    );
}

#[test]
fn inbound_gap_is_requested_and_recovered_by_gap_fill() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    client.seq = 5; // 2..=4 "lost"
    client.send(&mut harness, "0", &[]);
    let out = client.take(&mut harness);
    assert_eq!(msg_type(&out[0]), "2");
    assert_eq!(get(&out[0], 7), Some("2"));
    assert_eq!(get(&out[0], 16), Some("0"));
    assert_eq!(harness.gateway.session(0).next_target(), 2);
    // A second message beyond the gap does not ask again.
    client.send(&mut harness, "0", &[]);
    assert!(client.take(&mut harness).is_empty());
    // The counterparty gap-fills 2..=6 (PossDup), then continues at 7.
    client.seq = 2;
    client.send(
        &mut harness,
        "4",
        &[
            (43, "Y"),
            (122, "20231114-22:13:20.000"),
            (123, "Y"),
            (36, "7"),
        ],
    );
    assert_eq!(harness.gateway.session(0).next_target(), 7);
    client.seq = 7;
    client.send(&mut harness, "0", &[]);
    let out = client.take(&mut harness);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(harness.gateway.session(0).next_target(), 8);
}

#[test]
fn sequence_reset_reset_moves_the_expected_number_and_refuses_going_back() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    client.send(&mut harness, "4", &[(36, "20")]);
    assert_eq!(harness.gateway.session(0).next_target(), 20);
    client.seq = 20;
    client.send(&mut harness, "4", &[(36, "10")]);
    let out = client.take(&mut harness);
    assert_eq!(msg_type(&out[0]), "3");
    assert_eq!(get(&out[0], 373), Some("5"));
    assert_eq!(get(&out[0], 371), Some("36"));
}

#[test]
fn too_low_sequence_without_poss_dup_ends_the_session() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    client.send(&mut harness, "0", &[]);
    client.seq = 2;
    client.send(
        &mut harness,
        "0",
        &[(43, "Y"), (122, "20231114-22:13:20.000")],
    );
    assert!(
        client.take(&mut harness).is_empty(),
        "a PossDup duplicate is ignored"
    );
    client.seq = 2;
    client.send(&mut harness, "0", &[]);
    let out = client.take(&mut harness);
    assert_eq!(msg_type(&out[0]), "5");
    assert_eq!(
        get(&out[0], 58),
        Some("MsgSeqNum too low, expecting 3 but received 2")
    );
    assert!(harness.gateway.wants_close(client.connection));
}

#[test]
fn reconnect_continues_sequence_numbers_and_detects_gap_on_logon() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    client.send(&mut harness, "0", &[]);
    harness
        .gateway
        .on_disconnected(client.connection, harness.now);
    let connection = harness.gateway.on_connected(harness.now).unwrap();
    client.connection = connection;
    client.seq = 5; // the client lost 3 and 4 on its side
    let out = client.logon(&mut harness);
    assert_eq!(msg_type(&out[0]), "A");
    assert_eq!(get(&out[0], 34), Some("2"), "our numbers continue");
    assert_eq!(msg_type(&out[1]), "2");
    assert_eq!(get(&out[1], 7), Some("3"));
}

#[test]
fn reject_exact_bytes_for_missing_required_tag() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    client.send(
        &mut harness,
        "D",
        &[
            (11, "o1"),
            (55, "ACME"),
            (38, "10"),
            (40, "2"),
            (44, "101.25"),
        ],
    );
    let bytes = client.take_raw(&mut harness);
    assert_eq!(
        show(&bytes),
        with_trailer(
            "FIX.4.4",
            "35=3|49=EXCH|56=CLIENT1|34=2|52=20231114-22:13:20.000|45=2|371=54|372=D|373=1|58=required tag 54 missing|"
        )
    );
    // The sequence moved on: the next message is in order.
    assert_eq!(harness.gateway.session(0).next_target(), 3);
}

#[test]
fn comp_id_problem_is_rejected_then_logged_out() {
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    client.sender = "MALLORY".into();
    client.send(&mut harness, "0", &[]);
    let out = client.take(&mut harness);
    assert_eq!(msg_type(&out[0]), "3");
    assert_eq!(get(&out[0], 373), Some("9"));
    assert_eq!(get(&out[0], 371), Some("49"));
    assert_eq!(msg_type(&out[1]), "5");
    assert!(harness.gateway.wants_close(client.connection));
}

#[test]
fn bad_input_answers() {
    // Bad checksum: ignored (FIX), the next message shows the gap.
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    let mut bytes = client.build("0", &[]);
    let at = bytes.len() - 2;
    bytes[at] = if bytes[at] == b'9' { b'8' } else { b'9' };
    client.send_raw(&mut harness, &bytes);
    assert!(client.take(&mut harness).is_empty());
    assert_eq!(harness.gateway.counters().garbled_ignored, 1);
    client.send(&mut harness, "0", &[]);
    assert_eq!(msg_type(&client.take(&mut harness)[0]), "2");

    // Garbage: Logout with the reason, then close.
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    client.send_raw(&mut harness, b"GET / HTTP/1.1\r\n\r\n");
    let out = client.take(&mut harness);
    assert_eq!(msg_type(&out[0]), "5");
    assert_eq!(
        get(&out[0], 58),
        Some("garbled: stream does not start with a BeginString (8) field")
    );
    assert!(harness.gateway.wants_close(client.connection));
    assert_eq!(harness.gateway.counters().garbled_disconnects, 1);

    // Oversized.
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    client.send_raw(&mut harness, &fix("8=FIX.4.4|9=100000|35=D|"));
    let out = client.take(&mut harness);
    assert_eq!(
        get(&out[0], 58),
        Some("message of 10000 bytes exceeds the maximum of 8192")
    );

    // A field without a value, in sequence: Reject 373=4 and the sequence moves on.
    let mut harness = one_session();
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    client.send(&mut harness, "D", &[(11, "")]);
    let out = client.take(&mut harness);
    assert_eq!(msg_type(&out[0]), "3");
    assert_eq!(get(&out[0], 373), Some("4"));
    assert_eq!(get(&out[0], 371), Some("11"));
    assert_eq!(harness.gateway.session(0).next_target(), 3);
}

#[test]
fn throttle_rejects_the_excess_and_recovers_next_second() {
    let mut config = session_config(FixVersion::Fix44, "CLIENT1", 101);
    config.throttle_messages_per_second = 3;
    let mut harness = Harness::new(vec![config]);
    let mut client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    client.logon(&mut harness);
    for index in 0..5 {
        let id = format!("o{index}");
        client.send(
            &mut harness,
            "D",
            &[
                (11, &id),
                (55, "ACME"),
                (54, "1"),
                (38, "1"),
                (40, "2"),
                (44, "100"),
            ],
        );
    }
    let out = client.take(&mut harness);
    let rejects: Vec<_> = out.iter().filter(|m| msg_type(m) == "j").collect();
    assert_eq!(rejects.len(), 2);
    assert_eq!(get(rejects[0], 58), Some("throttle limit exceeded"));
    assert_eq!(get(rejects[0], 379), Some("o3"));
    let mut submissions = Vec::new();
    harness.gateway.drain_submissions(&mut submissions);
    assert_eq!(submissions.len(), 3);
    harness.now += SECOND;
    client.send(
        &mut harness,
        "D",
        &[
            (11, "o9"),
            (55, "ACME"),
            (54, "1"),
            (38, "1"),
            (40, "2"),
            (44, "100"),
        ],
    );
    harness.gateway.drain_submissions(&mut submissions);
    assert_eq!(submissions.len(), 4);
}

#[test]
fn logon_timeout_closes_silent_connections() {
    let mut harness = one_session();
    let client = Client::connect(&mut harness, FixVersion::Fix44, "CLIENT1");
    harness.now += 11 * SECOND;
    harness.gateway.on_timer(harness.now);
    assert!(harness.gateway.wants_close(client.connection));
    assert_eq!(harness.gateway.counters().logon_timeouts, 1);
}
