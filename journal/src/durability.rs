//! Positions shared between the writer and its group-commit thread, and the thread itself: it
//! batches everything appended since its last round into one `fdatasync` per touched segment,
//! submitted through io_uring, then advances `position_durable`. Appends never wait for it.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use io_uring::{opcode, types, IoUring};

use crate::error::{JournalError, Result};

/// Most fsyncs submitted in one io_uring round (segments touched since the last round).
pub const SYNC_BATCH_MAX: usize = 8;
/// Spins of the idle loop before the thread parks.
const IDLE_SPINS: u32 = 200;
/// The longest the thread parks before looking again (a missed wake-up costs at most this).
const IDLE_PARK: Duration = Duration::from_millis(1);

struct Files {
    /// Bumped by log repair, so a sync round that started before it does not advance past it.
    generation: u64,
    segments: BTreeMap<u64, Arc<File>>,
}

/// State shared by the writer, its durability thread and observers.
pub(crate) struct Shared {
    capacity: u64,
    position_appended: AtomicU64,
    position_durable: AtomicU64,
    sync_rounds: AtomicU64,
    files: Mutex<Files>,
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    sleeping: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    pub(crate) fn new(position: u64, capacity: u64) -> Self {
        Shared {
            capacity,
            position_appended: AtomicU64::new(position),
            position_durable: AtomicU64::new(position),
            sync_rounds: AtomicU64::new(0),
            files: Mutex::new(Files {
                generation: 0,
                segments: BTreeMap::new(),
            }),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    pub(crate) fn register(&self, index: u64, file: Arc<File>) {
        self.files
            .lock()
            .expect("files lock")
            .segments
            .insert(index, file);
    }

    pub(crate) fn first_index(&self) -> u64 {
        *self
            .files
            .lock()
            .expect("files lock")
            .segments
            .keys()
            .next()
            .unwrap_or(&0)
    }

    pub(crate) fn last_index(&self) -> u64 {
        *self
            .files
            .lock()
            .expect("files lock")
            .segments
            .keys()
            .next_back()
            .unwrap_or(&0)
    }

    pub(crate) fn position_durable(&self) -> u64 {
        self.position_durable.load(Ordering::Acquire)
    }

    pub(crate) fn sync_rounds(&self) -> u64 {
        self.sync_rounds.load(Ordering::Relaxed)
    }

    pub(crate) fn check_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            let failure = self
                .failure
                .lock()
                .expect("failure lock")
                .clone()
                .unwrap_or_default();
            return Err(JournalError::DurabilityFailed(failure));
        }
        Ok(())
    }

    /// Publishes the writer's new end, and wakes the durability thread if it sleeps.
    #[inline]
    pub(crate) fn publish_appended(&self, position: u64, durability: Option<&Durability>) {
        self.position_appended.store(position, Ordering::Release);
        if let Some(durability) = durability {
            // Pairs with the fence in the thread: either it sees the new position before parking, or
            // we see it sleeping and wake it.
            fence(Ordering::SeqCst);
            if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel)
            {
                durability.thread.thread().unpark();
            }
        }
    }

    /// After log repair: the end is `position`, the last segment `index`.
    pub(crate) fn truncated(&self, position: u64, index: u64, file: Arc<File>) {
        let mut files = self.files.lock().expect("files lock");
        files.generation += 1;
        files.segments.retain(|&i, _| i < index);
        files.segments.insert(index, file);
        self.position_appended.store(position, Ordering::Release);
        let durable = self.position_durable.load(Ordering::Acquire);
        self.position_durable
            .store(durable.min(position), Ordering::Release);
    }

    /// The files of the segments that hold bytes between the durable and the appended position.
    fn pending(&self) -> Option<(u64, u64, Vec<Arc<File>>)> {
        let files = self.files.lock().expect("files lock");
        let appended = self.position_appended.load(Ordering::Acquire);
        let durable = self.position_durable.load(Ordering::Acquire);
        if appended <= durable {
            return None;
        }
        let first = durable / self.capacity;
        let last = (appended - 1) / self.capacity;
        let pending = files
            .segments
            .range(first..=last)
            .map(|(_, f)| Arc::clone(f))
            .collect();
        Some((files.generation, appended, pending))
    }

    fn advance(&self, generation: u64, appended: u64) {
        let files = self.files.lock().expect("files lock");
        if files.generation == generation {
            self.position_durable.fetch_max(appended, Ordering::AcqRel);
        }
        self.sync_rounds.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, message: String) {
        *self.failure.lock().expect("failure lock") = Some(message);
        self.failed.store(true, Ordering::Release);
    }

    /// Synchronously syncs everything appended (used by `Journal::sync` and at shutdown).
    pub(crate) fn sync_now(&self) -> Result<()> {
        self.check_failed()?;
        if let Some((generation, appended, files)) = self.pending() {
            for file in files {
                if let Err(e) = file.sync_data() {
                    self.fail(format!("fdatasync: {e}"));
                    return Err(JournalError::DurabilityFailed(e.to_string()));
                }
            }
            self.advance(generation, appended);
        }
        Ok(())
    }
}

/// The group-commit thread.
pub(crate) struct Durability {
    thread: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Durability {
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Self> {
        // Fail at start, clearly, if io_uring is unavailable (e.g. disabled by seccomp or sysctl).
        let ring = IoUring::new(SYNC_BATCH_MAX as u32).map_err(JournalError::IoUringUnavailable)?;
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("journal-sync".into())
                .spawn(move || run(ring, &shared))
                .map_err(JournalError::IoUringUnavailable)?
        };
        Ok(Durability { thread, shared })
    }

    pub(crate) fn stop(self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
        let _ = self.shared.sync_now();
    }
}

fn run(mut ring: IoUring, shared: &Shared) {
    let mut idle_spins = 0u32;
    while !shared.stop.load(Ordering::Acquire) {
        match shared.pending() {
            Some((generation, appended, files)) => {
                idle_spins = 0;
                if let Err(message) = sync_round(&mut ring, &files) {
                    shared.fail(message);
                    return;
                }
                shared.advance(generation, appended);
            }
            None if idle_spins < IDLE_SPINS => {
                idle_spins += 1;
                std::hint::spin_loop();
                std::thread::yield_now();
            }
            None => {
                shared.sleeping.store(true, Ordering::Relaxed);
                fence(Ordering::SeqCst);
                if shared.pending().is_none() && !shared.stop.load(Ordering::Acquire) {
                    std::thread::park_timeout(IDLE_PARK);
                }
                shared.sleeping.store(false, Ordering::Relaxed);
                idle_spins = 0;
            }
        }
    }
}

/// One round: an fdatasync per file, all submitted at once, all awaited.
fn sync_round(ring: &mut IoUring, files: &[Arc<File>]) -> std::result::Result<(), String> {
    for batch in files.chunks(SYNC_BATCH_MAX) {
        for (i, file) in batch.iter().enumerate() {
            let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(i as u64);
            // SAFETY: the file descriptors stay open until the completions are reaped below (the Arcs
            // are held by the caller for the whole round).
            unsafe { ring.submission().push(&entry) }
                .map_err(|_| "io_uring submission queue full".to_string())?;
        }
        ring.submit_and_wait(batch.len())
            .map_err(|e| format!("io_uring submit: {e}"))?;
        let mut completed = 0;
        while completed < batch.len() {
            let Some(cqe) = ring.completion().next() else {
                ring.submit_and_wait(1)
                    .map_err(|e| format!("io_uring wait: {e}"))?;
                continue;
            };
            completed += 1;
            if cqe.result() < 0 {
                return Err(format!(
                    "fdatasync: {}",
                    std::io::Error::from_raw_os_error(-cqe.result())
                ));
            }
        }
    }
    Ok(())
}
