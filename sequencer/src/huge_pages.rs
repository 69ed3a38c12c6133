//! A global allocator for node and replay processes: large allocations are backed by
//! transparent huge pages.
//!
//! The matcher's state is a few large arrays (order pool, order id index, price levels, tables)
//! read at random. With 4 KiB pages most of its cache misses are also TLB misses, which in a
//! virtual machine cost a nested page walk each; with THP in `madvise` mode (the common
//! default) nothing gets huge pages unless asked. Every allocation of at least
//! [`HUGE_PAGE_SIZE`] is therefore 2 MiB aligned and advised `MADV_HUGEPAGE`; smaller ones go to
//! the system allocator unchanged. Allocation happens at start-up, so this costs nothing later.
//!
//! A binary opts in with `#[global_allocator] static ALLOCATOR: HugePageAlloc = HugePageAlloc;`.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of at least this size are huge-page aligned and advised.
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePageAlloc;

impl HugePageAlloc {
    /// The layout used for `layout`, and whether it is a huge-page one.
    fn actual(layout: Layout) -> (Layout, bool) {
        if layout.size() >= HUGE_PAGE_SIZE {
            let huge = Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE_SIZE))
                .expect("2 MiB alignment of a valid layout");
            (huge, true)
        } else {
            (layout, false)
        }
    }

    /// Advises the kernel to back `[pointer, pointer + size)` with huge pages.
    fn advise(pointer: *mut u8, size: usize) {
        #[cfg(target_os = "linux")]
        // SAFETY: the range is an allocation just made, 2 MiB aligned; madvise only changes how
        // the kernel backs it. A failure leaves ordinary pages, which is fine.
        unsafe {
            libc::madvise(pointer.cast(), size, libc::MADV_HUGEPAGE);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (pointer, size);
    }
}

// SAFETY: every call is delegated to the system allocator with a layout of at least the
// requested size and alignment; dealloc and realloc recompute the same layout from the same
// inputs, so the system allocator always gets back the layout it handed out.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (actual, huge) = Self::actual(layout);
        // SAFETY: `actual` is a valid non-zero-size layout (it is at least `layout`).
        let pointer = unsafe { System.alloc(actual) };
        if huge && !pointer.is_null() {
            Self::advise(pointer, actual.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let (actual, huge) = Self::actual(layout);
        // SAFETY: as in `alloc`.
        let pointer = unsafe { System.alloc_zeroed(actual) };
        if huge && !pointer.is_null() {
            Self::advise(pointer, actual.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from `alloc`/`alloc_zeroed` with this `layout`, hence this
        // `actual`.
        unsafe { System.dealloc(pointer, Self::actual(layout).0) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align(size, layout.align())
            .expect("GlobalAlloc::realloc's contract: a valid layout");
        if !Self::actual(layout).1 && !Self::actual(new_layout).1 {
            // SAFETY: both layouts are the system allocator's own; the caller upholds
            // `GlobalAlloc::realloc`'s contract.
            return unsafe { System.realloc(pointer, layout, size) };
        }
        // SAFETY: `new_layout` is valid and non-zero-size (realloc's contract); `pointer` holds
        // `layout.size()` initialised bytes and came from this allocator with `layout`.
        unsafe {
            let new_pointer = self.alloc(new_layout);
            if !new_pointer.is_null() {
                std::ptr::copy_nonoverlapping(pointer, new_pointer, layout.size().min(size));
                self.dealloc(pointer, layout);
            }
            new_pointer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_allocations_are_huge_page_aligned_and_round_trip() {
        let allocator = HugePageAlloc;
        for (size, zeroed) in [
            (64, false),
            (HUGE_PAGE_SIZE, false),
            (3 * HUGE_PAGE_SIZE + 8, true),
        ] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: a valid non-zero-size layout; the pointer is checked, written within its
            // size, grown with realloc (same alignment) and freed with the layout it has.
            unsafe {
                let pointer = if zeroed {
                    allocator.alloc_zeroed(layout)
                } else {
                    allocator.alloc(layout)
                };
                assert!(!pointer.is_null());
                if size >= HUGE_PAGE_SIZE {
                    assert_eq!(pointer as usize % HUGE_PAGE_SIZE, 0);
                }
                if zeroed {
                    assert_eq!(*pointer.add(size - 1), 0);
                }
                pointer.add(size - 1).write(7);
                let grown = allocator.realloc(pointer, layout, size * 2);
                assert!(!grown.is_null());
                assert_eq!(*grown.add(size - 1), 7);
                allocator.dealloc(grown, Layout::from_size_align(size * 2, 8).unwrap());
            }
        }
    }
}
