//! Shared pieces of the benchmarks: a cheap calibrated clock, HdrHistogram set-up and reporting.
//!
//! Benchmarks report medians and percentiles (p50, p99, p99.9, p99.99, max) and always measure
//! their baseline in the same run, on the same machine, right before or after the subject.

use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// Nanoseconds from the CPU's time-stamp counter, calibrated against `Instant` at start-up: about a
/// nanosecond to read, where `Instant::now()` costs 20-30 ns, so per-operation timing of
/// sub-100 ns operations stays honest.
pub struct Clock {
    start_ticks: u64,
    ns_per_tick: f64,
}

impl Clock {
    /// Calibrates over `calibration` of wall time.
    pub fn calibrate(calibration: Duration) -> Clock {
        let start_instant = Instant::now();
        let start_ticks = ticks();
        while start_instant.elapsed() < calibration {
            std::hint::spin_loop();
        }
        let elapsed = start_instant.elapsed().as_nanos() as f64;
        let ns_per_tick = elapsed / (ticks() - start_ticks) as f64;
        Clock {
            start_ticks,
            ns_per_tick,
        }
    }

    /// Nanoseconds since calibration.
    #[inline(always)]
    pub fn now_ns(&self) -> u64 {
        ((ticks() - self.start_ticks) as f64 * self.ns_per_tick) as u64
    }
}

#[inline(always)]
fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// A histogram of nanoseconds from 1 ns to 100 s with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds")
}

/// The header of a percentile table in Markdown.
pub fn table_header(first_column: &str) -> String {
    format!(
        "| {first_column} | rate | p50 | p99 | p99.9 | p99.99 | max |\n|---|---|---|---|---|---|---|"
    )
}

/// One row of a percentile table.
pub fn table_row(name: &str, rate: &str, histogram: &Histogram<u64>) -> String {
    format!(
        "| {name} | {rate} | {} | {} | {} | {} | {} |",
        format_ns(histogram.value_at_quantile(0.50)),
        format_ns(histogram.value_at_quantile(0.99)),
        format_ns(histogram.value_at_quantile(0.999)),
        format_ns(histogram.value_at_quantile(0.9999)),
        format_ns(histogram.max()),
    )
}

/// Nanoseconds as a short human figure.
pub fn format_ns(ns: u64) -> String {
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

/// A rate as millions or thousands per second.
pub fn format_rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M/s", per_second / 1e6)
    } else {
        format!("{:.1} k/s", per_second / 1e3)
    }
}

/// The machine, for the record: CPU model and core count.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{model}, {cores} cores")
}

/// The median of some samples.
pub fn median(samples: &mut [f64]) -> f64 {
    assert!(!samples.is_empty());
    samples.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    samples[samples.len() / 2]
}

pub use sequencer::clock::thread_cpu_time;

/// Pins the calling thread to the last core; returns it, or `None` if pinning failed.
pub fn pin_to_last_core() -> Option<usize> {
    let cores = std::thread::available_parallelism().ok()?.get();
    let core = cores - 1;
    // SAFETY: `set` is a plain bitmask owned by this frame; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        (libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0)
            .then_some(core)
    }
}
