//! Readers follow a live writer across segment rolls, in this process and in another one.

mod common;

use common::*;
use journal::{Journal, Reader};
use std::time::{Duration, Instant};

const RECORDS: u64 = 60_000;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Checks that a reader sees records 1..=count exactly once, in order, with their payloads.
fn follow(dir: &std::path::Path, count: u64) -> u64 {
    let deadline = Instant::now() + TIMEOUT;
    let mut reader = loop {
        match Reader::open(dir) {
            Ok(reader) => break reader,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("reader cannot open: {e}"),
        }
    };
    let mut expected = 1;
    let mut idle = 0u32;
    while expected <= count {
        assert!(
            Instant::now() < deadline,
            "reader stuck at sequence {expected}"
        );
        match reader.next_record().expect("no corrupt record") {
            Some(record) => {
                assert_eq!(record.meta, meta(expected), "record {expected}");
                assert_eq!(record.payload, &payload(expected, len_of(expected))[..]);
                expected += 1;
                idle = 0;
            }
            None => {
                idle += 1;
                if idle > 100 {
                    std::thread::sleep(Duration::from_micros(50));
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
    assert!(
        reader.next_record().unwrap().is_none(),
        "nothing after the last record"
    );
    expected - 1
}

/// Varied sizes, so paddings of every length and header-less segment ends occur.
fn len_of(sequence: u64) -> usize {
    ((sequence * 7919) % 1500) as usize
}

#[test]
fn a_reader_thread_follows_the_writer_across_hundreds_of_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let path = dir.path().to_path_buf();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || follow(&path, RECORDS))
        })
        .collect();
    for s in 1..=RECORDS {
        journal.append(&meta(s), &payload(s, len_of(s))).unwrap();
        if s % 64 == 0 {
            std::thread::yield_now();
        }
    }
    assert!(
        journal.stats().segment_rolls >= 500,
        "only {} rolls",
        journal.stats().segment_rolls
    );
    for reader in readers {
        assert_eq!(reader.join().unwrap(), RECORDS);
    }
}

/// The child half of the next test; does nothing unless started by it.
#[test]
fn child_process_reader() {
    let Ok(dir) = std::env::var("JOURNAL_CHILD_READER_DIR") else {
        return;
    };
    let count: u64 = std::env::var("JOURNAL_CHILD_READER_COUNT")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(follow(std::path::Path::new(&dir), count), count);
    println!("child read {count} records");
}

#[test]
fn a_reader_in_another_process_sees_what_the_writer_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(config(dir.path(), SMALL_SEGMENT)).unwrap();
    let count = 20_000u64;
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_reader",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("JOURNAL_CHILD_READER_DIR", dir.path())
        .env("JOURNAL_CHILD_READER_COUNT", count.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for s in 1..=count {
        journal.append(&meta(s), &payload(s, len_of(s))).unwrap();
        if s % 256 == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    assert!(
        stdout.contains(&format!("child read {count} records")),
        "child output: {stdout}"
    );
}
