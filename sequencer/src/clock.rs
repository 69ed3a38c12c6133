//! Clocks outside the state machines (which read time only from the log): wall time for
//! timestamps, reports and ids, and a thread's CPU time for throughput figures.

use std::time::Duration;

/// Nanoseconds since the Unix epoch by the wall clock (0 if the clock is before 1970).
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`): unlike wall time it leaves out
/// the time the thread was preempted, which on a shared machine is most of the noise in a
/// throughput figure.
pub fn thread_cpu_time() -> Duration {
    // SAFETY: `now` is a plain struct owned by this frame; clock_gettime only writes it.
    let now = unsafe {
        let mut now: libc::timespec = std::mem::zeroed();
        let status = libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now);
        assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        now
    };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
