//! The segment preparer: a thread that creates the next segment (allocated, header written, visible
//! under its name) and pre-faults its pages while the writer fills the current one, so a roll is a
//! hand-over, not a file creation, and appends take no page faults.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use crate::error::{JournalError, Result};
use crate::segment::{create_segment, SegmentInit, WritableSegment};

pub(crate) struct Preparer {
    requests: Option<SyncSender<u64>>,
    ready: Receiver<Result<WritableSegment>>,
    thread: Option<JoinHandle<()>>,
    /// The segment index requested and not yet received.
    outstanding: Option<u64>,
}

impl Preparer {
    /// `pretouch`: write-fault every page of a new segment (MADV_POPULATE_WRITE), which makes the
    /// pages dirty: right when the OS writes back in its own time, wrong when every append is synced
    /// (the first sync of a segment would write it all).
    pub(crate) fn start(
        dir: PathBuf,
        segment_size: u64,
        init: SegmentInit,
        pretouch: bool,
    ) -> Result<Self> {
        // One request and one result in flight at most: the writer never runs more than one
        // segment ahead.
        let (requests, request_receiver) = sync_channel::<u64>(1);
        let (ready_sender, ready) = sync_channel::<Result<WritableSegment>>(1);
        let thread = std::thread::Builder::new()
            .name("journal-prepare".into())
            .spawn(move || {
                for index in request_receiver {
                    // Hand the segment over as soon as it exists; pretouch it afterwards through a
                    // mapping of our own, so the writer never waits for the pretouch (the page-cache
                    // work is shared: the writer's later faults on those pages are cheap).
                    let result = create_segment(&dir, index, segment_size, init);
                    let path = result.as_ref().ok().map(|segment| segment.path.clone());
                    if ready_sender.send(result).is_err() {
                        break;
                    }
                    if let (true, Some(path)) = (pretouch, path) {
                        pretouch_file(&path, segment_size);
                    }
                }
            })
            .map_err(|e| JournalError::io(std::path::Path::new("journal-prepare thread"), e))?;
        Ok(Preparer {
            requests: Some(requests),
            ready,
            thread: Some(thread),
            outstanding: None,
        })
    }

    /// Asks for segment `index` to be prepared.
    pub(crate) fn request(&mut self, index: u64) {
        assert!(self.outstanding.is_none(), "one prepared segment at a time");
        self.requests
            .as_ref()
            .expect("running")
            .send(index)
            .expect("preparer thread alive");
        self.outstanding = Some(index);
    }

    /// Takes the prepared segment `index`; returns it and whether the writer had to wait for it.
    pub(crate) fn take(&mut self, index: u64) -> Result<(WritableSegment, bool)> {
        assert_eq!(
            self.outstanding,
            Some(index),
            "the segment taken is the one requested"
        );
        let (result, waited) = match self.ready.try_recv() {
            Ok(result) => (result, false),
            Err(TryRecvError::Empty) => (self.ready.recv().expect("preparer thread alive"), true),
            Err(TryRecvError::Disconnected) => panic!("preparer thread ended"),
        };
        self.outstanding = None;
        Ok((result?, waited))
    }

    /// Waits for any outstanding segment and deletes it (log repair changes what comes next).
    pub(crate) fn discard(&mut self) -> Result<()> {
        if let Some(index) = self.outstanding {
            let (segment, _) = self.take(index)?;
            let path = segment.path.clone();
            drop(segment);
            std::fs::remove_file(&path).map_err(|e| JournalError::io(&path, e))?;
        }
        Ok(())
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.requests.take();
        // Unblock a thread waiting to hand over a segment nobody will take.
        while self.ready.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() {
                while self.ready.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = thread.join();
        }
    }
}

fn pretouch_file(path: &std::path::Path, len: u64) {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return;
    };
    // SAFETY: a shared mapping of a segment this journal owns; it is only used for madvise below and
    // never read or written through.
    let Ok(map) = (unsafe { memmap2::MmapOptions::new().len(len as usize).map_mut(&file) }) else {
        return;
    };
    // SAFETY: the range is exactly this live mapping; MADV_POPULATE_WRITE only faults pages in
    // (without changing their contents). Failure (older kernels) just leaves the faults to the writer.
    unsafe {
        libc::madvise(
            map.as_ptr() as *mut libc::c_void,
            map.len(),
            libc::MADV_POPULATE_WRITE,
        );
    }
}
