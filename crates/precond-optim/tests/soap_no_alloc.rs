//! A SOAP step performs no heap allocation after the first (which builds the workspace and the
//! eigensolver's buffers): a counting global allocator wraps the system allocator; steps with and
//! without a basis refresh, both dtypes, both storage orders and a dimension beyond
//! `max_precond_dim` must leave the count unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{OptimizerConfig, StepFloat};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to `System`; only counts when armed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
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

fn steps_allocate<T: StepFloat>(json: &str, rows: usize, cols: usize) -> usize {
    let n = rows * cols;
    let mut opt = OptimizerConfig::from_json(json).unwrap().build(n).unwrap();
    let mut x: Vec<T> = (0..n)
        .map(|i| T::from_f64((i as f64 * 0.37).sin()))
        .collect();
    let mut g = vec![T::ZERO; n];
    let mut step = |opt: &mut precond_optim::Optimizer, x: &mut Vec<T>, k: usize| {
        for (i, gi) in g.iter_mut().enumerate() {
            *gi = T::from_f64(((k * n + i) as f64 * 0.71).cos() + 0.1 * x[i].to_f64());
        }
        opt.step(x, &g).unwrap();
    };
    // warm-up: the first step (workspace, counted: the counter works), a plain step and a
    // refresh (frequency 2: k = 3)
    ALLOCS.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    step(&mut opt, &mut x, 1);
    ARMED.store(false, Ordering::SeqCst);
    assert!(
        ALLOCS.load(Ordering::SeqCst) > 0,
        "the first step builds its workspace"
    );
    for k in 2..=3 {
        step(&mut opt, &mut x, k);
    }
    ALLOCS.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    for k in 4..=9 {
        step(&mut opt, &mut x, k);
    }
    ARMED.store(false, Ordering::SeqCst);
    ALLOCS.load(Ordering::SeqCst)
}

#[test]
fn soap_steps_allocate_nothing_after_the_first() {
    let cases = [
        (
            r#"{"optimizer": "soap", "precondition_frequency": 2, "shape": [6, 5]}"#,
            6,
            5,
        ),
        (
            r#"{"optimizer": "soap", "precondition_frequency": 2, "normalize_grads": true,
                "shape": [4, 7], "order": "F"}"#,
            4,
            7,
        ),
        (
            r#"{"optimizer": "soap", "precondition_frequency": 2, "max_precond_dim": 5,
                "shape": [9, 3]}"#,
            9,
            3,
        ),
    ];
    for (json, r, c) in cases {
        assert_eq!(steps_allocate::<f64>(json, r, c), 0, "f64 {json}");
        assert_eq!(steps_allocate::<f32>(json, r, c), 0, "f32 {json}");
    }
}
