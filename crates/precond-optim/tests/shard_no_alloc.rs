//! A shard's step allocates nothing after the first (which allocates its state): a counting
//! global allocator wraps the system allocator, and steps 2..=10 of every rank of a sharded
//! AdamW + Muon-group configuration must leave the count at zero (f32 and f64).
//!
//! One test in this binary, so no other test allocates concurrently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{OptimizerConfig, ShardedOptimizer, StepFloat};
use std::sync::atomic::Ordering;

mod counting_alloc;
use counting_alloc::{ALLOCS, ARMED};

const CFG: &str = r#"{"optimizer": "adamw", "lr": 1e-2,
    "groups": [{"start": 10, "end": 34, "shape": [4, 6], "optimizer": "muon"},
               {"start": 40, "end": 50, "lr": 3e-3}]}"#;

/// Allocations of steps 2..=10 of every rank of `world`.
fn later_allocs<T: StepFloat>(world: usize) -> usize {
    let cfg = OptimizerConfig::from_json(CFG).unwrap();
    let n = 64;
    let mut shards: Vec<ShardedOptimizer> = (0..world)
        .map(|r| ShardedOptimizer::new(&cfg, n, world, r).unwrap())
        .collect();
    let mut x: Vec<T> = (0..n)
        .map(|i| T::from_f64((i % 7) as f64 / 7.0 - 0.4))
        .collect();
    let mut g = vec![T::ZERO; n];
    let mut count = 0;
    for k in 1..=10 {
        for (i, gi) in g.iter_mut().enumerate() {
            *gi = T::from_f64(x[i].to_f64() - ((k + i) % 5) as f64 / 10.0);
        }
        ARMED.store(k > 1, Ordering::SeqCst);
        let before = ALLOCS.load(Ordering::SeqCst);
        for s in &mut shards {
            let r = s.range();
            s.step(&mut x[r.clone()], &g[r]).unwrap();
        }
        count += ALLOCS.load(Ordering::SeqCst) - before;
        ARMED.store(false, Ordering::SeqCst);
    }
    count
}

#[test]
fn shard_steps_allocate_nothing_after_the_first() {
    // every step's work on one counted thread (see counting_alloc)
    counting_alloc::on_one_thread(every_case);
}

fn every_case() {
    for world in 1..=4 {
        assert_eq!(later_allocs::<f64>(world), 0, "f64, {world} shards");
        assert_eq!(later_allocs::<f32>(world), 0, "f32, {world} shards");
    }
}
