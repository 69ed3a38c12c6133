//! Software prefetch: a hint to start loading a cache line that a coming command will touch.
//!
//! A prefetch never changes state and never faults, so it cannot affect determinism; it only
//! lets independent cache misses of consecutive commands overlap.

/// Starts loading the cache line holding `value` into all cache levels.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `_mm_prefetch` is only a hint: it reads no memory architecturally and cannot
    // fault, and `value` is a valid reference anyway. SSE is part of the x86_64 baseline.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
