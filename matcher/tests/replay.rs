//! Replay determinism: the same log through fresh matchers gives byte-identical event streams
//! and equal hashes; a snapshot taken anywhere, restored, and fed the rest of the log gives the
//! same events, hashes and snapshots as the uninterrupted run.

mod common;

use common::*;
use matcher::*;

const LOG_LENGTH: usize = 200_000;
const HASH_INTERVAL: usize = 1000;

fn config() -> Config {
    Config {
        order_capacity: 1 << 15,
        level_capacity: 1 << 13,
        instrument_capacity: 4,
        account_capacity: 64,
    }
}

/// Applies `log[from..]` (sequence = index + 1) and returns the event bytes and periodic hashes.
fn replay(
    matcher: &mut Matcher,
    log: &[CommandRecord],
    from: usize,
) -> (Vec<u8>, Vec<(usize, u64)>) {
    let mut bytes = Vec::new();
    let mut hashes = Vec::new();
    let mut events = Vec::new();
    for (index, record) in log.iter().enumerate().skip(from) {
        events.clear();
        let sequence = index as u64 + 1;
        matcher.apply(sequence, sequence * 7, record, &mut events);
        for event in &events {
            bytes.extend_from_slice(event.as_bytes());
        }
        if (sequence as usize).is_multiple_of(HASH_INTERVAL) {
            hashes.push((index, matcher.state_hash()));
        }
    }
    (bytes, hashes)
}

#[test]
fn same_log_same_events_and_hashes() {
    let log = generate_log(11, LOG_LENGTH);
    let mut first = Matcher::new(config()).expect("config");
    let mut second = Matcher::new(config()).expect("config");
    let (events_first, hashes_first) = replay(&mut first, &log, 0);
    let (events_second, hashes_second) = replay(&mut second, &log, 0);
    assert!(events_first.len() > LOG_LENGTH * EVENT_RECORD_SIZE);
    assert!(events_first == events_second, "event streams differ");
    assert_eq!(hashes_first, hashes_second);
    assert_eq!(first.state_hash(), first.state_hash_recomputed());
    let (mut snapshot_first, mut snapshot_second) = (Vec::new(), Vec::new());
    first.snapshot(&mut snapshot_first);
    second.snapshot(&mut snapshot_second);
    assert_eq!(snapshot_first, snapshot_second);
    // A different log gives a different hash.
    let mut other = Matcher::new(config()).expect("config");
    replay(&mut other, &generate_log(12, LOG_LENGTH), 0);
    assert_ne!(other.state_hash(), first.state_hash());
}

#[test]
fn snapshot_restore_anywhere_continues_identically() {
    let log = generate_log(13, LOG_LENGTH / 2);
    let mut reference = Matcher::new(config()).expect("config");
    let (events_all, hashes_all) = replay(&mut reference, &log, 0);
    let mut final_snapshot = Vec::new();
    reference.snapshot(&mut final_snapshot);

    let mut rng = Rng(99);
    for _ in 0..6 {
        let cut = 1 + rng.below(log.len() as u64 - 1) as usize;
        let mut matcher = Matcher::new(config()).expect("config");
        let (events_head, _) = replay(&mut matcher, &log[..cut], 0);
        let mut bytes = Vec::new();
        matcher.snapshot(&mut bytes);
        let mut restored = Matcher::restore(config(), &bytes).expect("restore");
        assert_eq!(restored.state_hash(), matcher.state_hash(), "cut {cut}");
        let (events_tail, hashes_tail) = replay(&mut restored, &log, cut);
        assert!(
            events_head.len() + events_tail.len() == events_all.len(),
            "cut {cut}"
        );
        assert!(
            events_all[events_head.len()..] == events_tail[..],
            "events after cut {cut} differ"
        );
        let tail_start = hashes_all
            .iter()
            .position(|(index, _)| *index >= cut)
            .unwrap_or(hashes_all.len());
        assert_eq!(hashes_all[tail_start..], hashes_tail[..], "cut {cut}");
        let mut snapshot = Vec::new();
        restored.snapshot(&mut snapshot);
        assert_eq!(snapshot, final_snapshot, "cut {cut}");
    }
}
