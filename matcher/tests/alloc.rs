//! Zero heap allocation per command in steady state, proven with a counting global allocator.
//! (This file holds one test so that no other test thread allocates while it counts.)

mod common;

use common::*;
use matcher::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator; only counts calls.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(pointer, layout) }
    }
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(pointer, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Commands applied while counting.
const COMMANDS: usize = 400_000;
/// Events a single command may emit here (bounded by the book size in this stream).
const EVENTS_CAPACITY: usize = 1 << 20;

#[test]
fn steady_state_allocates_nothing() {
    let config = Config {
        order_capacity: 1 << 16,
        level_capacity: 1 << 14,
        instrument_capacity: 4,
        account_capacity: 64,
    };
    let log = generate_log(7, COMMANDS + 20_000);
    let mut matcher = Matcher::new(config).expect("config");
    let mut events: Vec<Event> = Vec::with_capacity(EVENTS_CAPACITY);
    let mut counts = CountingSink::default();
    // Warm up: fill the book.
    let (warm, counted) = log.split_at(20_000);
    for (index, record) in warm.iter().enumerate() {
        events.clear();
        matcher.apply(index as u64 + 1, 0, record, &mut events);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for (index, record) in counted.iter().enumerate() {
        events.clear();
        let sequence = (warm.len() + index) as u64 + 1;
        matcher.apply(sequence, sequence, record, &mut events);
        for event in &events {
            counts.event(event);
        }
        let _ = matcher.state_hash();
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(
        allocations,
        0,
        "allocations during {} commands",
        counted.len()
    );
    assert!(counts.trades > 10_000, "the stream must trade: {counts:?}");
    assert!(matcher.order_count() > 100, "the book must be non-trivial");
    eprintln!(
        "0 allocations in {} commands ({} events, {} trades)",
        counted.len(),
        counts.events,
        counts.trades
    );
}
