//! The counting global allocator of the `*_no_alloc` test binaries: it forwards every call to
//! the system allocator and, while [`ARMED`] is set, counts in [`ALLOCS`] the allocations and
//! reallocations made by the thread that runs [`on_one_thread`]'s closure. That closure runs in
//! a rayon pool of one thread, so every piece of work of the steps it makes (rayon joins, faer's
//! `Par::rayon(0)`) happens on that thread and is counted; allocations of other threads of the
//! process (libtest's main thread, idle workers of the global pool), which a loaded machine can
//! interleave at any time, are not. A binary that declares `mod counting_alloc;` gets it as its
//! global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

thread_local! {
    /// Set on the thread whose allocations count (const-initialized: reading it never allocates).
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    ARMED.load(Ordering::Relaxed) && COUNTED.with(Cell::get)
}

/// Runs `f` on the single thread of a new one-thread rayon pool, that thread's allocations
/// counted while [`ARMED`] is set.
pub fn on_one_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    pool.install(|| {
        COUNTED.with(|c| c.set(true));
        f()
    })
}

/// The allocator.
pub struct Counting;

/// Counting is on.
pub static ARMED: AtomicBool = AtomicBool::new(false);
/// Allocations (and reallocations) counted while armed.
pub static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to `System`; only counts when armed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;
