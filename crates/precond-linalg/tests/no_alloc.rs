//! The matrix-preconditioner building blocks allocate nothing once their workspace exists: a
//! counting global allocator observes the calls of the test's own thread (a const-initialized
//! thread-local marks it; libtest's main thread may allocate at any moment and is not counted).
//! The products run with `Par::Seq`, so all the work happens on that thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use faer::{Mat, Par};
use precond_linalg::{
    SymEigWorkspace, gram_into, gram_t_into, sym_eigh_into, sym_inverse_root_into, sym_square_into,
};

thread_local! {
    /// Set on the test's thread: only its allocations count (reading it never allocates).
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steps_allocate_nothing_after_setup() {
    COUNTED.with(|c| c.set(true));
    // sizes on both sides of faer's divide-and-conquer threshold and its blocking
    for n in [5usize, 40, 200] {
        let g = Mat::from_fn(n, n + 3, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let mut l = Mat::<f64>::zeros(n, n);
        let mut r = Mat::<f64>::zeros(n + 3, n + 3);
        let mut root = Mat::<f64>::zeros(n, n);
        let mut sq = Mat::<f64>::zeros(n, n);
        let mut v = Mat::<f64>::zeros(n, n);
        let mut w = vec![0.0; n];
        let mut ws = SymEigWorkspace::new(n).unwrap();
        let g32 = Mat::from_fn(n, n + 3, |i, j| g[(i, j)] as f32);
        let mut l32 = Mat::<f32>::zeros(n, n);
        // a tiny factor takes the rescaled path
        let tiny = Mat::from_fn(n, n, |i, j| {
            if i == j {
                1e-300 * (1.0 + i as f64)
            } else {
                0.0
            }
        });

        // faer's product kernels keep per-thread packing buffers, sized on first use: one
        // warm-up round, then the counted round
        for round in 0..2 {
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            gram_into(g.as_ref(), l.as_mut(), 1.0, 0.0, Par::Seq).unwrap();
            gram_into(g.as_ref(), l.as_mut(), 0.5, 0.9, Par::Seq).unwrap();
            gram_t_into(g.as_ref(), r.as_mut(), 1.0, 0.0, Par::Seq).unwrap();
            gram_into(g32.as_ref(), l32.as_mut(), 1.0f32, 0.0f32, Par::Seq).unwrap();
            sym_square_into(l.as_ref(), sq.as_mut(), Par::Seq).unwrap();
            sym_inverse_root_into(l.as_ref(), 1e-6, 4.0, root.as_mut(), &mut ws).unwrap();
            sym_inverse_root_into(tiny.as_ref(), 0.0, 2.0, root.as_mut(), &mut ws).unwrap();
            sym_eigh_into(l.as_ref(), v.as_mut(), &mut w, &mut ws).unwrap();
            let after = ALLOCATIONS.load(Ordering::SeqCst);
            if round == 1 {
                assert_eq!(after - before, 0, "n = {n}: {} allocations", after - before);
            }
        }
    }
}
