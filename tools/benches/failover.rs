//! Failover time: a 3-node cluster of real node processes under 2,000 commands/s, the leader
//! killed with SIGKILL 20 times (`FAILOVER_KILLS`), the dead node restarted each time. Each
//! failover is measured from the kill to the first command committed after it (the end of the
//! gap the kill opened in the client's answers). Reports HdrHistogram percentiles; the run also
//! proves that nothing was lost or duplicated (see `tools::chaos`). Target: p50 under 300 ms,
//! max under 1 s on loopback. Run with `cargo bench -p tools --bench failover` (`make bench`).

use std::path::Path;

use tools::chaos::{failover_times, kill_leader_repeatedly, ChaosOptions};

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: a 2-kill smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let kills: u32 = std::env::var("FAILOVER_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 2 } else { 20 });
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = ChaosOptions {
        kills,
        ..ChaosOptions::default()
    };
    let report = kill_leader_repeatedly(
        Path::new(env!("CARGO_BIN_EXE_exchange")),
        dir.path(),
        &options,
        &mut |_, _, _| {},
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let times = failover_times(&report);
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for t in &times {
        histogram.record(t.as_micros() as u64).expect("in range");
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "failover (kill -9 of the leader → first new commit), {} of {kills} kills measured, {} commands/s offered:",
        times.len(),
        options.rate
    );
    println!(
        "  p50 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  p99.99 {:.1} ms  max {:.1} ms  (min {:.1} ms)",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        ms(0.9999),
        histogram.max() as f64 / 1000.0,
        histogram.min() as f64 / 1000.0
    );
    println!(
        "  every one of {} client commands in the log exactly once; final term {}",
        report.client_commands, report.term
    );
}
