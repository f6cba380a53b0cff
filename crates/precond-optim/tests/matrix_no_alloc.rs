//! A Muon, Shampoo or SOAP step allocates nothing after the first (which builds the workspace:
//! the Newton–Schulz matrices; block matrices and eigendecomposition buffers; SOAP's bases): a
//! counting global allocator wraps the system allocator, and the later steps, root
//! recomputations and basis refreshes included, must leave the count at zero (f64 and f32, tall
//! and wide, blocked, grafting, momentum, both storage orders, a dimension beyond
//! `max_precond_dim`, a Muon group beside AdamW).
//!
//! One test in this binary, so no other test allocates concurrently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{OptimizerConfig, StepFloat};
use std::sync::atomic::Ordering;

mod counting_alloc;
use counting_alloc::{ALLOCS, ARMED};

/// `(allocations of the first step, allocations of steps 4..=12)`.
fn run<T: StepFloat>(cfg: &str, n: usize) -> (usize, usize) {
    let mut opt = OptimizerConfig::from_json(cfg).unwrap().build(n).unwrap();
    let mut x: Vec<T> = (0..n)
        .map(|i| T::from_f64((i % 7) as f64 / 7.0 - 0.4))
        .collect();
    let mut g = vec![T::ZERO; n];
    let grad = |x: &[T], g: &mut [T], k: usize| {
        for (i, (gi, xi)) in g.iter_mut().zip(x).enumerate() {
            *gi = *xi + T::from_f64((((k * 31 + i * 17) % 23) as f64 - 11.0) / 16.0);
        }
    };
    // the first step builds the state and the workspace (the counter works)
    grad(&x, &mut g, 1);
    ALLOCS.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    opt.step(&mut x, &g).unwrap();
    ARMED.store(false, Ordering::SeqCst);
    let first = ALLOCS.load(Ordering::SeqCst);
    // warm-up: faer's per-thread buffers, a root computation
    for k in 2..=3 {
        grad(&x, &mut g, k);
        opt.step(&mut x, &g).unwrap();
    }
    ALLOCS.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    for k in 4..=12 {
        grad(&x, &mut g, k);
        opt.step(&mut x, &g).unwrap();
    }
    ARMED.store(false, Ordering::SeqCst);
    assert!(x.iter().all(|v| v.is_finite()));
    (first, ALLOCS.load(Ordering::SeqCst))
}

#[test]
fn matrix_optimizer_steps_after_the_first_do_not_allocate() {
    // every step's work on one counted thread (see counting_alloc)
    counting_alloc::on_one_thread(every_case);
}

fn every_case() {
    // steps 4..=12 include Shampoo root recomputations and SOAP basis refreshes (frequency 2)
    for (cfg, n) in [
        (
            r#"{"optimizer": "muon", "shape": [24, 10], "lr": 0.02}"#,
            240,
        ),
        (
            r#"{"optimizer": "muon", "shape": [10, 24], "order": "F", "nesterov": false}"#,
            240,
        ),
        // Muon on a matrix group, AdamW elsewhere (the recipe)
        (
            r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 64, "shape": [8, 8],
                "optimizer": "muon", "lr": 0.02}]}"#,
            70,
        ),
        (
            r#"{"optimizer": "shampoo", "shape": [9, 6], "lr": 0.01, "betas": [0.9, 0.999],
                "epsilon": 1e-8, "momentum": 0.5, "weight_decay": 0.01,
                "max_preconditioner_dim": 4, "precondition_frequency": 2,
                "start_preconditioning_step": 2, "grafting": {"type": "adam"}}"#,
            54,
        ),
        (
            r#"{"optimizer": "shampoo", "shape": [5, 8], "order": "F", "lr": 0.01,
                "use_decoupled_weight_decay": false, "weight_decay": 0.01,
                "grafting": {"type": "sgd"}}"#,
            40,
        ),
    ] {
        let (f64_first, f64_later) = run::<f64>(cfg, n);
        let (f32_first, f32_later) = run::<f32>(cfg, n);
        assert!(
            f64_first > 0 && f32_first > 0,
            "the first step allocates its state"
        );
        assert_eq!(
            (f64_later, f32_later),
            (0, 0),
            "allocations (f64, f32) after the first steps: {cfg}"
        );
    }
}
