//! A step on a `"bnp"` group (gradient copy, BNP preconditioning, the group's optimizer) and
//! [`precond_optim::Optimizer::bnp_observe`] allocate nothing after the first step (which
//! allocates the state and the gradient copy): a counting global allocator wraps the system
//! allocator (f64 and f32, the group running the top level's Adam or its own SGD, batch
//! statistics observed before every step).
//!
//! One test in this binary, so no other test allocates concurrently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{OptimizerConfig, StepFloat};
use std::sync::atomic::Ordering;

mod counting_alloc;
use counting_alloc::{ALLOCS, ARMED};

/// `(allocations of the first observe + step, allocations of rounds 2..=10)`.
fn run<T: StepFloat>(cfg: &str, n: usize, d: usize) -> (usize, usize) {
    let mut opt = OptimizerConfig::from_json(cfg).unwrap().build(n).unwrap();
    let mut x: Vec<T> = (0..n)
        .map(|i| T::from_f64((i % 7) as f64 / 7.0 - 0.4))
        .collect();
    let mut g = vec![T::ZERO; n];
    let mut mean = vec![0.0f64; d];
    let mut var = vec![0.0f64; d];
    let mut round = |opt: &mut precond_optim::Optimizer, x: &mut Vec<T>, k: usize| {
        for (j, (m, v)) in mean.iter_mut().zip(var.iter_mut()).enumerate() {
            *m = 10.0 * j as f64 + (k % 5) as f64;
            *v = 50.0 + (k * j % 7) as f64;
        }
        opt.bnp_observe(0, &mean, &var).unwrap();
        for (i, (gi, xi)) in g.iter_mut().zip(x.iter()).enumerate() {
            *gi = *xi + T::from_f64((((k * 31 + i * 17) % 23) as f64 - 11.0) / 16.0);
        }
        opt.step(x, &g).unwrap();
    };
    ALLOCS.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    round(&mut opt, &mut x, 1);
    ARMED.store(false, Ordering::SeqCst);
    let first = ALLOCS.load(Ordering::SeqCst);
    ALLOCS.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    for k in 2..=10 {
        round(&mut opt, &mut x, k);
    }
    ARMED.store(false, Ordering::SeqCst);
    assert!(x.iter().all(|v| v.is_finite()));
    (first, ALLOCS.load(Ordering::SeqCst))
}

#[test]
fn bnp_group_steps_after_the_first_do_not_allocate() {
    // every step's work on one counted thread (see counting_alloc)
    counting_alloc::on_one_thread(every_case);
}

fn every_case() {
    for cfg in [
        r#"{"optimizer": "adam", "lr": 0.01, "groups": [{"start": 3, "end": 43, "shape": [8, 4], "bnp": true}]}"#,
        r#"{"optimizer": "adamw", "groups": [{"start": 3, "end": 43, "shape": [8, 4], "bnp": {"momentum": 0.5, "eps": 1e-3},
            "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": true}]}"#,
    ] {
        let (f64_first, f64_later) = run::<f64>(cfg, 50, 4);
        let (f32_first, f32_later) = run::<f32>(cfg, 50, 4);
        assert!(
            f64_first > 0 && f32_first > 0,
            "the first step allocates its state and the gradient copy"
        );
        assert_eq!(
            (f64_later, f32_later),
            (0, 0),
            "allocations (f64, f32) after the first step: {cfg}"
        );
    }
}
