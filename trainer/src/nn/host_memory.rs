//! The CPU device's memory use: the process's heap, counted by a global allocator (every
//! tensor of the CPU device is a heap buffer), with its high-water mark.
//!
//! This is what lets `trainer bench --device cpu` report a step's peak memory, which, for the same
//! op graph, estimates the device memory a CUDA step needs apart from cuDNN's workspace and the
//! caching allocator's slack. One relaxed atomic add and one `fetch_max` per allocation.
//!
//! The counters are process-wide, so its test (`trainer/tests/host_memory.rs`) runs in a process
//! of its own, where no other test allocates, frees or takes the mark meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static IN_USE: AtomicU64 = AtomicU64::new(0);
static HIGH_WATER: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting the bytes it hands out.
pub struct CountingAlloc;

impl CountingAlloc {
    fn grew(by: usize) {
        let now = IN_USE.fetch_add(by as u64, Ordering::Relaxed) + by as u64;
        HIGH_WATER.fetch_max(now, Ordering::Relaxed);
    }
    fn shrank(by: usize) {
        IN_USE.fetch_sub(by as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are only statistics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            Self::grew(new_size);
            Self::shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Heap bytes in use now.
pub fn in_use() -> u64 {
    IN_USE.load(Ordering::Relaxed)
}

/// The most heap bytes in use at any moment since the previous call (the first call: since the
/// process started); starts the next interval at the present use.
pub fn take_high_water() -> u64 {
    HIGH_WATER.swap(in_use(), Ordering::Relaxed)
}
