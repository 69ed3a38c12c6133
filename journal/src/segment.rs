//! Segment files: creation (pre-allocated, header written, made visible by an atomic rename), opening
//! and header validation.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapMut, MmapOptions};
use zerocopy::{FromBytes, IntoBytes};

use crate::error::{CorruptKind, JournalError, Location, Result};
use crate::format::{
    capacity, segment_path, SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};

/// A segment file mapped for writing.
pub(crate) struct WritableSegment {
    pub index: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    pub map: MmapMut,
}

/// The checksum of a segment's header page: the header struct with its checksum field zero, then the
/// rest of the page, so a flipped byte anywhere in the page is caught.
pub(crate) fn header_page_checksum(page: &[u8]) -> u32 {
    assert_eq!(page.len() as u64, SEGMENT_HEADER_LEN);
    let (header, rest) = SegmentHeader::read_from_prefix(page).expect("page holds a header");
    crc32c::crc32c_append(header.compute_checksum(), rest)
}

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// How a new segment's file and pages are prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentInit {
    /// Map with MAP_POPULATE (read faults up front: no write-back cost).
    pub populate: bool,
    /// Write real zeros instead of `posix_fallocate`: the file's blocks are then allocated and
    /// written, so a later `fdatasync` writes data only, with no extent conversion in the file
    /// system's journal (what databases do for their write-ahead logs).
    pub zero_fill: bool,
}

fn zero_fill(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK as usize];
    let mut at = 0;
    while at < len {
        let n = CHUNK.min(len - at);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    file.sync_data()
}

/// Syncs a directory so that file creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(|e| JournalError::io(dir, e))?;
    handle.sync_all().map_err(|e| JournalError::io(dir, e))
}

/// Creates segment `index` of `segment_size` bytes in `dir`: the file is fully allocated (so writing
/// through the mapping can never hit a full disk), its header is written and synced, and only then is
/// it renamed to its final name. A segment file that exists under its final name is complete.
pub(crate) fn create_segment(
    dir: &Path,
    index: u64,
    segment_size: u64,
    init: SegmentInit,
) -> Result<WritableSegment> {
    let path = segment_path(dir, index);
    let temporary = dir.join(format!(".segment-{index:010}.creating"));
    let _ = std::fs::remove_file(&temporary);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&temporary)
        .map_err(|e| JournalError::io(&temporary, e))?;
    let rc = if init.zero_fill {
        zero_fill(&file, segment_size)
            .err()
            .map_or(0, |e| e.raw_os_error().unwrap_or(libc::EIO))
    } else {
        // SAFETY: plain syscall on a file descriptor we own.
        unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, segment_size as libc::off_t) }
    };
    if rc == libc::EOPNOTSUPP || rc == libc::EINVAL {
        // File systems without fallocate: size the file; pages are allocated on first write.
        file.set_len(segment_size)
            .map_err(|e| JournalError::io(&temporary, e))?;
    } else if rc != 0 {
        let _ = std::fs::remove_file(&temporary);
        return Err(JournalError::io(
            &temporary,
            std::io::Error::from_raw_os_error(rc),
        ));
    }
    let mut map = map_mut(&file, &temporary, segment_size, init.populate)?;
    let header = SegmentHeader::new(index, segment_size, now_unix_ns());
    map[..size_of::<SegmentHeader>()].copy_from_slice(header.as_bytes());
    let checksum = header_page_checksum(&map[..SEGMENT_HEADER_LEN as usize]);
    let mut header = header;
    header.header_checksum = checksum.into();
    map[..size_of::<SegmentHeader>()].copy_from_slice(header.as_bytes());
    file.sync_data()
        .map_err(|e| JournalError::io(&temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| JournalError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(WritableSegment {
        index,
        path,
        file: Arc::new(file),
        map,
    })
}

fn map_mut(file: &File, path: &Path, len: u64, populate: bool) -> Result<MmapMut> {
    let mut options = MmapOptions::new();
    options.len(len as usize);
    if populate {
        options.populate();
    }
    // SAFETY: the journal directory is owned by this writer (it holds the writer lock); no other
    // process truncates segment files while they are mapped.
    unsafe { options.map_mut(file) }.map_err(|e| JournalError::io(path, e))
}

/// The length of a segment file, which must at least hold its header page (a shorter file cannot
/// even be mapped as a segment: it is corrupt).
fn segment_file_len(
    file: &File,
    path: &Path,
    index: u64,
    segment_size: Option<u64>,
) -> Result<u64> {
    let len = file
        .metadata()
        .map_err(|e| JournalError::io(path, e))?
        .len();
    if len < SEGMENT_HEADER_LEN {
        return Err(corrupt(
            path,
            index,
            0,
            segment_size,
            CorruptKind::SegmentHeaderMismatch,
        ));
    }
    Ok(len)
}

/// Opens an existing segment for writing and validates its header.
pub(crate) fn open_segment_writable(
    path: &Path,
    index: u64,
    segment_size: Option<u64>,
) -> Result<(WritableSegment, SegmentHeader)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| JournalError::io(path, e))?;
    let len = segment_file_len(&file, path, index, segment_size)?;
    let map = map_mut(&file, path, len, false)?;
    let header = validate_header(&map, path, index, segment_size)?;
    Ok((
        WritableSegment {
            index,
            path: path.to_path_buf(),
            file: Arc::new(file),
            map,
        },
        header,
    ))
}

/// Opens an existing segment read-only; `Ok(None)` when it does not exist (yet).
pub(crate) fn open_segment_readonly(
    path: &Path,
    index: u64,
    segment_size: Option<u64>,
) -> Result<Option<(Mmap, SegmentHeader)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(JournalError::io(path, e)),
    };
    let len = segment_file_len(&file, path, index, segment_size)?;
    // SAFETY: segment files are never truncated while the journal lives (only whole segments are
    // removed, and only by log repair, which first stops readers past the repair point).
    let map = unsafe { MmapOptions::new().len(len as usize).populate().map(&file) }
        .map_err(|e| JournalError::io(path, e))?;
    let header = validate_header(&map, path, index, segment_size)?;
    Ok(Some((map, header)))
}

fn corrupt(
    path: &Path,
    index: u64,
    file_offset: u64,
    segment_size: Option<u64>,
    kind: CorruptKind,
) -> JournalError {
    let position = segment_size.map(|size| index * capacity(size)).unwrap_or(0);
    JournalError::Corrupt {
        kind,
        location: Location {
            path: path.to_path_buf(),
            segment_index: index,
            file_offset,
            position,
        },
    }
}

/// Checks a segment's header page against its file name and the expected segment size.
pub(crate) fn validate_header(
    map: &[u8],
    path: &Path,
    index: u64,
    segment_size: Option<u64>,
) -> Result<SegmentHeader> {
    // A file shorter than its header page (a truncated or half-created file) is corrupt, not a
    // reason to panic.
    let Some(page) = map.get(..SEGMENT_HEADER_LEN as usize) else {
        return Err(corrupt(
            path,
            index,
            0,
            segment_size,
            CorruptKind::SegmentHeaderMismatch,
        ));
    };
    let (header, _) = SegmentHeader::read_from_prefix(page).expect("page holds a header");
    if header.magic != SEGMENT_MAGIC {
        return Err(corrupt(path, index, 0, segment_size, CorruptKind::BadMagic));
    }
    if header_page_checksum(page) != header.header_checksum.get() {
        return Err(corrupt(
            path,
            index,
            0,
            segment_size,
            CorruptKind::SegmentHeaderChecksum,
        ));
    }
    if header.format_version.get() != FORMAT_VERSION {
        return Err(JournalError::VersionMismatch {
            path: path.to_path_buf(),
            found: header.format_version.get(),
            supported: FORMAT_VERSION,
        });
    }
    let size = header.segment_size.get();
    let consistent = header.header_length.get() as u64 == SEGMENT_HEADER_LEN
        && header.segment_index.get() == index
        && crate::format::validate_segment_size(size).is_ok()
        && size == map.len() as u64
        && header.base_position.get() == index * capacity(size);
    if !consistent {
        return Err(corrupt(
            path,
            index,
            0,
            segment_size,
            CorruptKind::SegmentHeaderMismatch,
        ));
    }
    if let Some(expected) = segment_size {
        if expected != size {
            return Err(JournalError::SegmentSizeMismatch {
                path: path.to_path_buf(),
                on_disk: size,
                configured: expected,
            });
        }
    }
    Ok(header)
}

/// Lists the segment indexes present in `dir`, sorted.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut indexes = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| JournalError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::io(dir, e))?;
        if let Some(index) = entry
            .file_name()
            .to_str()
            .and_then(crate::format::parse_segment_file_name)
        {
            indexes.push(index);
        }
    }
    indexes.sort_unstable();
    if indexes.len() as u64 > crate::format::SEGMENTS_MAX {
        return Err(JournalError::Config(format!(
            "{} holds {} segments, more than the bound of {}",
            dir.display(),
            indexes.len(),
            crate::format::SEGMENTS_MAX
        )));
    }
    Ok(indexes)
}
