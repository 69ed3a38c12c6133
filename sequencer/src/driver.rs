//! An Aeron media driver embedded in our own process (rusteron-media-driver, Aeron C, static).
//!
//! Each process (or each test) gets its own driver directory, deleted on start and on shutdown, so
//! stale files of a crashed run never confuse a new one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusteron_media_driver::{AeronDriver, AeronDriverContext, IntoCString};

/// How long a driver may take to come up before launching is reported as failed.
pub const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the embedded driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Aeron refused a configuration value or failed to start.
    #[error("aeron media driver in {dir}: {message}")]
    Aeron { dir: PathBuf, message: String },
    /// The driver thread did not report started within [`DRIVER_START_TIMEOUT`].
    #[error("aeron media driver in {dir} did not start within {timeout:?}")]
    StartTimeout { dir: PathBuf, timeout: Duration },
}

/// A unique directory under `/dev/shm` for a driver, named after `purpose`, the process id and a
/// counter, so parallel tests and processes never share one. The first call in a process also
/// removes the directories of processes that no longer run (see [`remove_stale_dirs`]).
pub fn unique_dir(purpose: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    SWEEP.call_once(|| {
        remove_stale_dirs(&base);
    });
    base.join(format!("exchange-{purpose}-{}-{n}", std::process::id()))
}

/// Removes the driver directories under `base` (`exchange-<purpose>-<pid>-<n>`) whose process
/// is gone. A process killed with SIGKILL cannot delete its own, and each holds the driver's
/// term buffers (tens of MB of shared memory): without this, a machine whose nodes are killed
/// again and again (failover tests, crashes) runs out of memory in `/dev/shm`. Returns how many
/// it removed; a directory it cannot read or remove is left alone.
pub fn remove_stale_dirs(base: &Path) -> usize {
    // Whether a process runs is read from /proc: without it, nothing is known to be stale.
    if !Path::new("/proc/self").exists() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("exchange-") else {
            continue;
        };
        // `<purpose>-<pid>-<n>`: the purpose may contain dashes, the last two fields never do.
        let mut fields = rest.rsplitn(3, '-');
        let (Some(n), Some(pid), Some(_purpose)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Ok(_), Ok(pid)) = (n.parse::<u64>(), pid.parse::<u32>()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// What the driver's thread does when idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverIdle {
    /// Spin, yield, then park up to `max_park_ns` (Aeron's backoff strategy; its own default
    /// parks up to 1 ms).
    Backoff { max_park_ns: u64 },
    /// Yield the CPU after every idle cycle: low latency at the cost of a busy core when the
    /// machine has nothing else to run.
    Yield,
    /// Spin: dedicated hardware only.
    BusySpin,
}

impl Default for DriverIdle {
    /// Backoff parking at most 100 µs: quiet on a shared machine, without Aeron's 1 ms naps.
    fn default() -> Self {
        DriverIdle::Backoff {
            max_park_ns: 100_000,
        }
    }
}

/// A media driver running on a background thread of this process; stopped, joined and its
/// directory removed on drop.
pub struct EmbeddedDriver {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
    /// Invoked mode: the driver runs inside its owner's duty cycle ([`EmbeddedDriver::do_work`]).
    invoked: Option<(AeronDriver, AeronDriverContext)>,
}

impl EmbeddedDriver {
    /// Launches a driver in `dir` (deleted first if it exists). The driver's conductor, sender and
    /// receiver share one thread (Aeron's SHARED threading mode) with a backoff idle strategy, so a
    /// 2-core machine is never saturated by idle spinning.
    pub fn launch(dir: &Path) -> Result<Self, DriverError> {
        Self::launch_with(dir, DriverIdle::default())
    }

    /// Launches a driver in `dir` with the given idle strategy.
    pub fn launch_with(dir: &Path, idle: DriverIdle) -> Result<Self, DriverError> {
        Self::launch_mode(dir, idle, false)
    }

    /// Starts a driver in `dir` that has no thread of its own: the thread that owns it calls
    /// [`EmbeddedDriver::do_work`] in its duty cycle (Aeron's agent-invoker pattern). One thread
    /// then serves both the driver and the application, so a message that arrives is read in
    /// the same cycle, with no hand-over between threads: the right shape for a machine with
    /// fewer cores than busy threads.
    pub fn launch_invoked(dir: &Path) -> Result<Self, DriverError> {
        Self::launch_mode(dir, DriverIdle::default(), true)
    }

    /// Whether the owner must call [`EmbeddedDriver::do_work`].
    pub fn is_invoked(&self) -> bool {
        self.invoked.is_some()
    }

    /// Invoked mode: one duty cycle of the driver (conductor, sender, receiver); returns the work
    /// done. A no-op for a driver with its own thread.
    pub fn do_work(&self) -> usize {
        match &self.invoked {
            Some((driver, _)) => driver.main_do_work().map_or(0, |n| n.max(0) as usize),
            None => 0,
        }
    }

    fn launch_mode(dir: &Path, idle: DriverIdle, invoked: bool) -> Result<Self, DriverError> {
        let aeron_error = |e: rusteron_media_driver::AeronCError| DriverError::Aeron {
            dir: dir.to_path_buf(),
            message: format!("{e:?}"),
        };
        let context = AeronDriverContext::new().map_err(aeron_error)?;
        context
            .set_dir(&dir.to_string_lossy().to_string().into_c_string())
            .map_err(aeron_error)?;
        context.set_dir_delete_on_start(true).map_err(aeron_error)?;
        context
            .set_dir_delete_on_shutdown(true)
            .map_err(aeron_error)?;
        context
            .set_threading_mode(
                rusteron_media_driver::bindings::aeron_threading_mode_enum::AERON_THREADING_MODE_SHARED,
            )
            .map_err(aeron_error)?;
        match idle {
            DriverIdle::Backoff { max_park_ns } => {
                context
                    .set_shared_idle_strategy(c"backoff")
                    .map_err(aeron_error)?;
                // Aeron's backoff arguments: max spins, max yields, min park ns, max park ns.
                let args = format!("10-20-1000-{}", max_park_ns.max(1000)).into_c_string();
                context
                    .set_shared_idle_strategy_init_args(&args)
                    .map_err(aeron_error)?;
            }
            DriverIdle::Yield => {
                context
                    .set_shared_idle_strategy(c"yield")
                    .map_err(aeron_error)?;
            }
            DriverIdle::BusySpin => {
                context
                    .set_shared_idle_strategy(c"spin")
                    .map_err(aeron_error)?;
            }
        }

        let stop = Arc::new(AtomicBool::new(false));
        if invoked {
            let driver = AeronDriver::new(&context).map_err(aeron_error)?;
            driver.start(true).map_err(aeron_error)?;
            return Ok(Self {
                dir: dir.to_path_buf(),
                stop,
                thread: None,
                invoked: Some((driver, context)),
            });
        }
        let started = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let started = Arc::clone(&started);
            std::thread::Builder::new()
                .name("aeron-driver".into())
                .spawn(move || -> Result<(), String> {
                    let driver = AeronDriver::new(&context).map_err(|e| format!("{e:?}"))?;
                    driver.start(true).map_err(|e| format!("{e:?}"))?;
                    started.store(true, Ordering::Release);
                    while !stop.load(Ordering::Acquire) {
                        let work = driver.main_do_work().map_err(|e| format!("{e:?}"))?;
                        driver.main_idle_strategy(work);
                    }
                    Ok(())
                })
                .map_err(|e| DriverError::Aeron {
                    dir: dir.to_path_buf(),
                    message: format!("spawning driver thread: {e}"),
                })?
        };
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        while !started.load(Ordering::Acquire) {
            if thread.is_finished() {
                let message = match thread.join() {
                    Ok(Err(message)) => message,
                    Ok(Ok(())) => "driver thread ended before starting".into(),
                    Err(_) => "driver thread panicked".into(),
                };
                return Err(DriverError::Aeron {
                    dir: dir.to_path_buf(),
                    message,
                });
            }
            if Instant::now() > deadline {
                stop.store(true, Ordering::Release);
                return Err(DriverError::StartTimeout {
                    dir: dir.to_path_buf(),
                    timeout: DRIVER_START_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            stop,
            thread: Some(thread),
            invoked: None,
        })
    }

    /// The Aeron directory that clients connect to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for EmbeddedDriver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        drop(self.invoked.take());
        // Aeron deletes the directory on shutdown; make sure, in case it was interrupted.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_directories_of_processes_that_are_gone_are_removed() {
        let base = tempfile::tempdir().unwrap();
        let ours = std::process::id();
        // No process has the largest pid; pid 1 always runs.
        let gone = format!("exchange-node-2-{}-0", u32::MAX);
        let kept = [
            format!("exchange-node-0-{ours}-3"),
            "exchange-gateway-1-0".to_string(),
            "exchange-node-x-0".to_string(),
            format!("exchange-{}", u32::MAX),
            "aeron-other".to_string(),
        ];
        for name in kept.iter().chain([&gone]) {
            std::fs::create_dir_all(base.path().join(name).join("cnc")).unwrap();
        }
        assert_eq!(remove_stale_dirs(base.path()), 1);
        assert!(!base.path().join(&gone).exists());
        for name in &kept {
            assert!(base.path().join(name).exists(), "{name}");
        }
        assert_eq!(remove_stale_dirs(base.path()), 0);
    }
}
