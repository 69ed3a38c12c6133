//! Walking the records of one segment's data region and judging each one: shared by recovery on
//! open, the reader and `verify`.

use std::sync::atomic::{AtomicU32, Ordering};

use zerocopy::FromBytes;

use crate::error::CorruptKind;
use crate::format::{
    frame_checksum, RecordHeader, FRAME_LENGTH_OFFSET, RECORD_HEADER_LEN, RECORD_TYPE_PADDING,
    SEGMENT_HEADER_LEN,
};

/// What was found at one offset of a segment's data region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A valid record: its header, payload offset in the file, and aligned frame length.
    Record {
        header: RecordHeader,
        aligned_length: u64,
    },
    /// The segment's remaining bytes are padding (or too few for a header): go to the next segment.
    EndOfSegment,
    /// Nothing written here yet: the end of the log.
    Empty,
    /// Invalid bytes.
    Invalid(CorruptKind),
}

/// Loads a record's frame length with acquire ordering, pairing with the writer's release store.
///
/// # Safety
/// `base` must point to a live mapping of at least `offset + 4` bytes, and `offset` must be 4-aligned.
pub(crate) unsafe fn load_frame_length(base: *const u8, offset: usize) -> u32 {
    debug_assert!(offset.is_multiple_of(4));
    // SAFETY: per the function's contract the 4 bytes are mapped and aligned; the writer only ever
    // stores to them atomically, so an atomic view of them is sound.
    unsafe { AtomicU32::from_ptr(base.add(offset) as *mut u32).load(Ordering::Acquire) }
}

/// Judges the frame at data offset `data_offset` of a segment mapped at `base` (of `segment_len`
/// bytes). `verify` checks the checksum. `last_sequence` is the sequence of the record before.
///
/// # Safety
/// `base` must point to a live mapping of `segment_len` bytes.
pub(crate) unsafe fn judge_frame(
    base: *const u8,
    segment_len: u64,
    data_offset: u64,
    verify: bool,
    last_sequence: u64,
) -> Frame {
    let capacity = segment_len - SEGMENT_HEADER_LEN;
    assert!(data_offset <= capacity && data_offset.is_multiple_of(8));
    let remaining = capacity - data_offset;
    if remaining < RECORD_HEADER_LEN as u64 {
        return Frame::EndOfSegment;
    }
    let file_offset = (SEGMENT_HEADER_LEN + data_offset) as usize;
    // SAFETY: file_offset + 40 <= segment_len, and offsets are 8-aligned in a page-aligned mapping.
    let frame_length = unsafe { load_frame_length(base, file_offset + FRAME_LENGTH_OFFSET) };
    if frame_length == 0 {
        return Frame::Empty;
    }
    let aligned_length = crate::format::align_up(frame_length as u64);
    if (frame_length as usize) < RECORD_HEADER_LEN || aligned_length > remaining {
        return Frame::Invalid(CorruptKind::BadFrameLength);
    }
    // SAFETY: the frame was published (frame_length non-zero, read with acquire), so its bytes are
    // no longer written; the range lies inside the mapping (checked above).
    let frame =
        unsafe { std::slice::from_raw_parts(base.add(file_offset), aligned_length as usize) };
    let (header, rest) = RecordHeader::read_from_prefix(frame).expect("frame holds a header");
    if header.reserved.get() != 0 {
        return Frame::Invalid(CorruptKind::ReservedNotZero);
    }
    let _ = rest;
    if header.record_type.get() == RECORD_TYPE_PADDING {
        if aligned_length != remaining {
            return Frame::Invalid(CorruptKind::BadPadding);
        }
        if frame_checksum(frame, RECORD_TYPE_PADDING) != header.checksum.get() {
            return Frame::Invalid(CorruptKind::RecordChecksum);
        }
        return Frame::EndOfSegment;
    }
    if verify
        && frame_checksum(&frame[..frame_length as usize], header.record_type.get())
            != header.checksum.get()
    {
        return Frame::Invalid(CorruptKind::RecordChecksum);
    }
    if header.sequence.get() <= last_sequence {
        return Frame::Invalid(CorruptKind::SequenceNotIncreasing);
    }
    Frame::Record {
        header,
        aligned_length,
    }
}

/// The first non-zero byte of `bytes`, if any; reads in words for speed.
pub(crate) fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    let (prefix, words, suffix) = {
        // SAFETY: u64 has no invalid bit patterns; align_to only splits at aligned boundaries.
        unsafe { bytes.align_to::<u64>() }
    };
    if let Some(i) = prefix.iter().position(|&b| b != 0) {
        return Some(i);
    }
    if let Some(w) = words.iter().position(|&w| w != 0) {
        let start = prefix.len() + w * 8;
        return bytes[start..start + 8]
            .iter()
            .position(|&b| b != 0)
            .map(|i| start + i);
    }
    let start = prefix.len() + words.len() * 8;
    suffix.iter().position(|&b| b != 0).map(|i| start + i)
}

#[cfg(test)]
mod tests {
    use super::first_nonzero;

    #[test]
    fn first_nonzero_finds_the_first_set_byte() {
        let mut bytes = vec![0u8; 100];
        assert_eq!(first_nonzero(&bytes), None);
        bytes[77] = 1;
        assert_eq!(first_nonzero(&bytes[3..]), Some(74));
        bytes[1] = 9;
        assert_eq!(first_nonzero(&bytes), Some(1));
    }
}
