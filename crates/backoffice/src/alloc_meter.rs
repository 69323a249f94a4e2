//! A global allocator for the unit tests that counts, per thread, the bytes held on the
//! heap, so a test can bound the peak memory of one code path ([`peak_bytes_during`])
//! while other tests run on other threads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct MeteredAllocator;

thread_local! {
    // Const-initialised cells have no destructor, so the allocator can use them at any
    // point of a thread's life, its teardown included.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn record(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn size(bytes: usize) -> isize {
    isize::try_from(bytes).unwrap_or(isize::MAX)
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters only
// observe sizes.
unsafe impl GlobalAlloc for MeteredAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record(size(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            record(size(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        record(-size(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            record(size(new_size) - size(layout.size()));
        }
        new
    }
}

/// Runs `work` on this thread and returns its result with the most heap it held at once
/// beyond what the thread held before, in bytes.
pub fn peak_bytes_during<R>(work: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let result = work();
    let peak = PEAK.with(Cell::get);
    (result, usize::try_from(peak - before).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_peak_not_what_is_left() {
        let ((), peak) = peak_bytes_during(|| {
            let big = vec![0u8; 1 << 20];
            drop(std::hint::black_box(big));
        });
        assert!(peak >= 1 << 20, "{peak}");
        let ((), small) = peak_bytes_during(|| {
            let _ = std::hint::black_box(vec![0u8; 16]);
        });
        assert!(small < 1024, "{small}");
    }
}
