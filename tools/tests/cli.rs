//! The `exchange` command run for real on small inputs.

use assert_cmd::Command;

fn exchange() -> Command {
    Command::cargo_bin("exchange").unwrap()
}

#[test]
fn demo_reports_agreement() {
    let output = exchange()
        .args(["demo", "--records", "20000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("verified 20000 records"), "{stdout}");
    assert!(stdout.contains("agreement:"), "{stdout}");
}

#[test]
fn journal_verify_and_dump_a_demo_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    exchange()
        .args(["demo", "--records", "100", "--dir", path])
        .assert()
        .success();
    let verify = exchange()
        .args(["journal", "verify", path])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{text}");
    assert!(
        text.starts_with("ok: 100 records (sequence 1..=100)"),
        "{text}"
    );

    let dump = exchange()
        .args([
            "journal", "dump", path, "--from", "7", "--to", "8", "--json",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dump.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // Record 7 starts after six 104-byte frames.
    assert!(
        lines[0].starts_with(
            "{\"position\":624,\"sequence\":7,\"term\":1,\"timestamp_ns\":7,\"type\":1,"
        ),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("\"sequence\":8,"), "{}", lines[1]);

    // Damage a byte of record 3's payload: verify names the file and offset and fails.
    let segment = dir.path().join(journal::format::segment_file_name(0));
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[4096 + 2 * 104 + 50] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let verify = exchange()
        .args(["journal", "verify", path])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(!verify.status.success());
    assert!(text.contains("record checksum mismatch"), "{text}");
    assert!(
        text.contains("segment-0000000000.journal (segment 0) at file offset 4304 (position 208)"),
        "{text}"
    );
}
