//! Sharded optimizer state (ZeRO-1): the partition's properties, bitwise equivalence of sharded
//! and unsharded steps for every optimizer kind (f32, f64, 1 to 5 shards), assembling and
//! splitting states (resharding between world sizes) and the typed errors of bad inputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{
    OptimError, Optimizer, OptimizerConfig, OptimizerState, ShardPlan, ShardedOptimizer, StepFloat,
    assemble_state, first_nonfinite, split_state,
};

/// Every kind, with groups, own optimizers, matrix groups, regularizers and schedules, as
/// `(name, json, n)`.
fn configs() -> Vec<(&'static str, String, usize)> {
    let mixed = r#"{"optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.01,
        "schedule": {"kind": "cosine", "T_max": 7, "eta_min": 1e-4},
        "groups": [
          {"start": 0, "end": 32, "shape": [8, 4], "optimizer": "muon", "lr": 0.02},
          {"start": 40, "end": 50, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": true},
          {"start": 50, "end": 74, "shape": [6, 4], "order": "F", "optimizer": "shampoo", "lr": 0.01,
           "momentum": 0.5, "betas": [0.9, 0.99], "epsilon": 1e-8,
           "grafting": {"type": "adam", "beta2": 0.999, "epsilon": 1e-8}},
          {"start": 80, "end": 100, "shape": [5, 4], "optimizer": "soap", "lr": 3e-3,
           "precondition_frequency": 2},
          {"start": 103, "end": 117, "lr": 5e-3, "weight_decay": 0.1}
        ]}"#;
    let diag: Vec<String> = (0..83)
        .map(|i| format!("{}", 0.5 + (i % 5) as f64 * 0.25))
        .collect();
    let precond = format!(
        r#"{{"optimizer": "precond_gd", "lr": 0.05, "momentum": 0.8,
            "preconditioner": {{"diag": [{}]}},
            "groups": [{{"start": 30, "end": 47, "optimizer": "adam", "lr": 1e-2}}]}}"#,
        diag.join(",")
    );
    vec![
        ("gd", r#"{"optimizer": "gd", "lr": 0.1}"#.into(), 97),
        (
            "sgd",
            r#"{"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": true, "weight_decay": 1e-3}"#.into(),
            97,
        ),
        (
            "sgd-damp",
            r#"{"optimizer": "sgd", "lr": 0.05, "momentum": 0.7, "dampening": 0.3, "maximize": true,
               "schedule": {"kind": "step", "step_size": 3, "gamma": 0.5}}"#
                .into(),
            61,
        ),
        (
            "adagrad",
            r#"{"optimizer": "adagrad", "lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 1e-2}"#.into(),
            97,
        ),
        (
            "rmsprop",
            r#"{"optimizer": "rmsprop", "lr": 0.01, "centered": true, "momentum": 0.9,
               "schedule": {"kind": "exponential", "gamma": 0.9}}"#
                .into(),
            97,
        ),
        (
            "adam",
            r#"{"optimizer": "adam", "lr": 0.01, "amsgrad": true, "weight_decay": 1e-2,
               "regularization": {"kind": "elastic_net", "strength": 1e-3, "l1_ratio": 0.5, "space": "original"}}"#
                .into(),
            97,
        ),
        (
            "adamw-groups",
            r#"{"optimizer": "adamw", "lr": 0.01,
               "regularization": {"kind": "l1", "strength": 1e-3, "space": "intrinsic", "proximal": true},
               "schedule": {"kind": "linear", "start_factor": 0.25, "total_iters": 6},
               "groups": [{"start": 5, "end": 20, "lr": 0.03, "weight_decay": 0.0},
                          {"start": 33, "end": 60, "optimizer": "rmsprop", "lr": 3e-3},
                          {"start": 70, "end": 80, "optimizer": "adagrad", "lr": 0.05}]}"#
                .into(),
            97,
        ),
        ("precond_gd-diag", precond, 100),
        (
            "muon-top",
            r#"{"optimizer": "muon", "lr": 0.02, "shape": [8, 6]}"#.into(),
            48,
        ),
        (
            "shampoo-top-groups",
            r#"{"optimizer": "shampoo", "lr": 0.01, "max_preconditioner_dim": 4,
               "groups": [{"start": 0, "end": 24, "shape": [4, 6]},
                          {"start": 24, "end": 40, "shape": [4, 4], "optimizer": "soap", "lr": 1e-3},
                          {"start": 40, "end": 52, "shape": [3, 4], "optimizer": "muon"}]}"#
                .into(),
            52,
        ),
        ("mixed", mixed.into(), 121),
        // large enough for the parallel split and long SIMD bodies with every start alignment
        (
            "adam-large",
            r#"{"optimizer": "adam", "lr": 1e-3}"#.into(),
            5003,
        ),
    ]
}

fn cfg(json: &str) -> OptimizerConfig {
    OptimizerConfig::from_json(json).unwrap()
}

/// A gradient that depends on `x` and the step (so trajectories of different runs diverge as
/// soon as one value differs).
fn grad<T: StepFloat>(k: usize, x: &[T]) -> Vec<T> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            T::from_f64(
                (1.0 + (i % 7) as f64 * 0.3) * (v.to_f64() - 0.01 * (i % 13) as f64)
                    + (((31 * k + 17 * i) % 23) as f64 - 11.0) / 16.0,
            )
        })
        .collect()
}

fn x0<T: StepFloat>(n: usize) -> Vec<T> {
    (0..n)
        .map(|i| T::from_f64(((i * 37 % 11) as f64 - 5.0) / 4.0))
        .collect()
}

fn bits<T: StepFloat>(v: &[T]) -> Vec<u64> {
    v.iter().map(|x| x.to_f64().to_bits()).collect()
}

/// Panics with the first index whose bits differ.
fn assert_bits_eq<T: StepFloat>(a: &[T], b: &[T], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let (ba, bb) = (bits(a), bits(b));
    if let Some(i) = (0..a.len()).find(|&i| ba[i] != bb[i]) {
        panic!(
            "{what}: first difference at {i}: {} vs {}",
            a[i].to_f64(),
            b[i].to_f64()
        );
    }
}

/// Bitwise equality of two states (every field, every array value's bits).
fn state_bits_eq(a: &OptimizerState, b: &OptimizerState) -> Result<(), String> {
    if a.layout != b.layout {
        return Err(format!("layout `{}` vs `{}`", a.layout, b.layout));
    }
    if (a.format_version, a.n_params, a.step, a.dtype)
        != (b.format_version, b.n_params, b.step, b.dtype)
        || a.base_lr.to_bits() != b.base_lr.to_bits()
    {
        return Err(format!(
            "header differs: {:?} vs {:?}",
            (a.n_params, a.step, a.dtype, a.base_lr),
            (b.n_params, b.step, b.dtype, b.base_lr)
        ));
    }
    if a.slots.len() != b.slots.len() {
        return Err(format!("{} vs {} arrays", a.slots.len(), b.slots.len()));
    }
    for (j, (u, v)) in a.slots.iter().zip(&b.slots).enumerate() {
        if u.len() != v.len() {
            return Err(format!("array {j}: {} vs {} values", u.len(), v.len()));
        }
        if let Some(i) = (0..u.len()).find(|&i| u[i].to_bits() != v[i].to_bits()) {
            return Err(format!("array {j}[{i}]: {} vs {}", u[i], v[i]));
        }
    }
    Ok(())
}

/// One step of every shard on a copy of its slice (fresh allocations: the slice's start
/// alignment differs from the unsharded run's), written back.
fn step_shards<T: StepFloat>(shards: &mut [ShardedOptimizer], x: &mut [T], g: &[T]) {
    for s in shards {
        let r = s.range();
        let mut xl = x[r.clone()].to_vec();
        let out = s.step(&mut xl, &g[r.clone()]).unwrap();
        assert!(out.applied);
        x[r].copy_from_slice(&xl);
    }
}

fn make_shards(c: &OptimizerConfig, n: usize, world: usize) -> Vec<ShardedOptimizer> {
    (0..world)
        .map(|r| ShardedOptimizer::new(c, n, world, r).unwrap())
        .collect()
}

/// 20 steps of the unsharded optimizer and of `world` shards: parameters bitwise equal after
/// every step; the assembled state equals the unsharded one, the split of the unsharded state
/// equals each shard's; then resharding to every world size continues bitwise.
fn check_equivalence<T: StepFloat>(name: &str, c: &OptimizerConfig, n: usize, world: usize) {
    let mut full = c.build(n).unwrap();
    let mut shards = make_shards(c, n, world);
    if n > 4096 {
        for s in &mut shards {
            // split the shards' passes across rayon as well (chunks differ from the full run's)
            s.optimizer_mut().set_parallel_threshold(1);
        }
    }
    let (mut xf, mut xs) = (x0::<T>(n), x0::<T>(n));
    for k in 1..=20 {
        let g = grad(k, &xf);
        full.step(&mut xf, &g).unwrap();
        step_shards(&mut shards, &mut xs, &g);
        assert_bits_eq(&xf, &xs, &format!("{name} P={world} step {k}: parameters"));
        if k == 10 {
            // reshard from the unsharded state at step 10 to every world size, run 10 more
            let st = full.state();
            for w2 in 1..=5 {
                let plan = ShardPlan::new(c, n, w2).unwrap();
                let parts = split_state(c, &plan, &st).unwrap();
                let mut re: Vec<ShardedOptimizer> = (0..w2)
                    .map(|r| ShardedOptimizer::from_plan(c, plan.clone(), r).unwrap())
                    .collect();
                for (s, p) in re.iter_mut().zip(&parts) {
                    s.load_state(&OptimizerState::to_bytes(p)).unwrap();
                }
                let (mut a, mut b) = (full.clone(), xf.clone());
                let mut xr = xf.clone();
                for k2 in 11..=20 {
                    let g2 = grad(k2, &b);
                    a.step(&mut b, &g2).unwrap();
                    step_shards(&mut re, &mut xr, &g2);
                }
                assert_bits_eq(
                    &b,
                    &xr,
                    &format!("{name} P={world}: split to {w2} at step 10"),
                );
            }
        }
    }
    for s in &shards {
        assert_eq!(s.step_count(), 20);
    }
    // the observed diagonal P_k of each shard is its slice of the unsharded one
    let mut pf = vec![0.0; n];
    if full.preconditioner(&mut pf).is_ok() {
        for s in &shards {
            let mut pl = vec![0.0; s.range().len()];
            s.optimizer().preconditioner(&mut pl).unwrap();
            assert_bits_eq(&pf[s.range()], &pl, &format!("{name} P={world}: P_k"));
        }
    }
    if name == "precond_gd-diag" {
        // a shard of a top level only: its dense view is its slice of the diagonal
        for s in shards
            .iter()
            .filter(|s| s.range().end <= 30 || s.range().start >= 47)
        {
            let m = s.range().len();
            let mut d = vec![0.0; m * m];
            s.optimizer().dense_preconditioner(&mut d).unwrap();
            let diag: Vec<f64> = (0..m).map(|i| d[i * m + i]).collect();
            assert_bits_eq(
                &pf[s.range()],
                &diag,
                &format!("{name} P={world}: dense view"),
            );
        }
    }
    let states: Vec<OptimizerState> = shards.iter().map(ShardedOptimizer::state).collect();
    let plan = shards[0].plan().clone();
    let assembled = assemble_state(c, &plan, &states).unwrap();
    state_bits_eq(&assembled, &full.state())
        .unwrap_or_else(|e| panic!("{name} P={world}: assembled state: {e}"));
    let split = split_state(c, &plan, &full.state()).unwrap();
    for (r, (a, b)) in split.iter().zip(&states).enumerate() {
        state_bits_eq(a, b).unwrap_or_else(|e| panic!("{name} P={world}: split rank {r}: {e}"));
    }
}

#[test]
fn sharded_steps_equal_unsharded_bitwise_every_kind_f64() {
    for (name, json, n) in configs() {
        let c = cfg(&json);
        for world in 1..=5 {
            check_equivalence::<f64>(name, &c, n, world);
        }
    }
}

#[test]
fn sharded_steps_equal_unsharded_bitwise_every_kind_f32() {
    for (name, json, n) in configs() {
        let c = cfg(&json);
        for world in 1..=5 {
            check_equivalence::<f32>(name, &c, n, world);
        }
    }
}

/// Matrix parts of a config as ranges (from its JSON: the groups with a shape under a matrix
/// optimizer, or the whole vector for a top-level matrix without groups).
fn matrix_units(name: &str, n: usize) -> Vec<std::ops::Range<usize>> {
    match name {
        "muon-top" => std::iter::once(0..n).collect(),
        "shampoo-top-groups" => vec![0..24, 24..40, 40..52],
        "mixed" => vec![0..32, 50..74, 80..100],
        _ => vec![],
    }
}

/// Optimizer-state values an optimizer holds after one step (every state array's length).
fn state_values(o: &Optimizer) -> usize {
    (0..o.slot_names().len())
        .map(|j| o.slot::<f64>(j).map_or(0, <[f64]>::len))
        .sum()
}

#[test]
fn partition_covers_is_contiguous_balanced_and_never_splits_a_matrix() {
    for (name, json, n) in configs() {
        let c = cfg(&json);
        let units = matrix_units(name, n);
        // the unsharded state S, and the largest state of one unit U (a group's arrays, or
        // everything for a top-level matrix)
        let mut full = c.build(n).unwrap();
        full.step_f64(&mut vec![0.0; n], &vec![0.0; n]).unwrap();
        let total = state_values(&full);
        let names = full.slot_names();
        let unit_state = if name == "muon-top" {
            total
        } else {
            (0..c.groups.len())
                .map(|g| {
                    let pre = format!("groups[{g}].");
                    (0..names.len())
                        .filter(|&j| names[j].starts_with(&pre))
                        .map(|j| full.slot::<f64>(j).map_or(0, <[f64]>::len))
                        .sum::<usize>()
                })
                .max()
                .unwrap_or(0)
        };
        let single_part = !names.iter().any(|s| s.starts_with("groups["));
        for world in 1..=9 {
            let plan = ShardPlan::new(&c, n, world).unwrap();
            assert_eq!(plan.world(), world);
            assert_eq!(plan.n_params(), n);
            let r = plan.ranges();
            assert_eq!(r.len(), world);
            assert_eq!(r[0].start, 0, "{name} P={world}");
            assert_eq!(r[world - 1].end, n, "{name} P={world}");
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start, "{name} P={world}: not contiguous");
            }
            let mut held = 0;
            for (q, rg) in r.iter().enumerate() {
                assert!(rg.start <= rg.end);
                assert_eq!(plan.range(q), *rg);
                for u in &units {
                    let inside = u.start >= rg.start && u.end <= rg.end;
                    let outside = u.end <= rg.start || u.start >= rg.end;
                    assert!(inside || outside, "{name} P={world}: {rg:?} splits {u:?}");
                }
                // ZeRO-1's memory rule: the state of a rank is at most S/P plus one unit's
                // state plus one element's (≤ 3 values)
                let mut s = ShardedOptimizer::from_plan(&c, plan.clone(), q).unwrap();
                let m = rg.len();
                s.step(&mut vec![0.0; m], &vec![0.0; m]).unwrap();
                let mine = state_values(s.optimizer());
                held += mine;
                assert!(
                    mine as f64 <= total as f64 / world as f64 + unit_state as f64 + 3.0,
                    "{name} P={world}: rank {q} holds {mine} state values of {total} (one unit: {unit_state})"
                );
            }
            assert_eq!(held, total, "{name} P={world}: the shards' states add up");
            assert_eq!(plan.range(world), n..n, "out-of-range rank: empty range");
            // one per-element optimizer: boundaries are exactly ⌊r n/world⌋
            if units.is_empty() && single_part {
                for (q, rg) in r.iter().enumerate() {
                    assert_eq!(rg.start, q * n / world, "{name} P={world}");
                }
            }
        }
    }
}

#[test]
fn partition_errors_are_typed() {
    let c = cfg(r#"{"optimizer": "adam"}"#);
    match ShardPlan::new(&c, 10, 0) {
        Err(OptimError::Config { key, .. }) => assert_eq!(key, "world"),
        other => panic!("{other:?}"),
    }
    match ShardPlan::new(&c, 10, usize::MAX) {
        Err(OptimError::Config { key, message }) => {
            assert_eq!(key, "world");
            assert!(message.contains("65536"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // many more ranks than parameters, within the limit: all but n ranges empty
    let many = ShardPlan::new(&c, 10, 1000).unwrap();
    assert_eq!(many.ranges().iter().filter(|r| !r.is_empty()).count(), 10);
    match ShardPlan::new(&c, 0, 2) {
        Err(OptimError::Config { key, .. }) => assert_eq!(key, "n_params"),
        other => panic!("{other:?}"),
    }
    match ShardedOptimizer::new(&c, 10, 3, 3) {
        Err(OptimError::Config { key, message }) => {
            assert_eq!(key, "rank");
            assert!(message.contains('3'), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let dense = cfg(r#"{"optimizer": "precond_gd", "preconditioner": {"P": [[2, 1], [1, 2]]}}"#);
    match ShardPlan::new(&dense, 2, 2) {
        Err(OptimError::Unsupported(m)) => assert!(m.contains("dense"), "{m}"),
        other => panic!("{other:?}"),
    }
    let dense_group = cfg(
        r#"{"optimizer": "adam", "groups": [{"start": 1, "end": 3, "optimizer": "precond_gd",
            "preconditioner": {"S": [[1, 0], [0, 1]]}}]}"#,
    );
    match ShardPlan::new(&dense_group, 4, 2) {
        Err(OptimError::Unsupported(m)) => assert!(m.contains("groups[0]"), "{m}"),
        other => panic!("{other:?}"),
    }
    // config errors pass through (a group outside 0..n)
    let bad = cfg(r#"{"optimizer": "adam", "groups": [{"start": 0, "end": 20}]}"#);
    assert!(matches!(
        ShardPlan::new(&bad, 10, 2),
        Err(OptimError::GroupRange { .. })
    ));
    // a plan of another config that splits this config's matrix
    let plain = ShardPlan::new(&c, 48, 2).unwrap();
    let muon = cfg(r#"{"optimizer": "muon", "shape": [8, 6]}"#);
    assert!(matches!(
        ShardedOptimizer::from_plan(&muon, plain, 0),
        Err(OptimError::Unsupported(_))
    ));
}

#[test]
fn empty_shards_count_steps_and_round_trip() {
    // one matrix over the whole vector, three ranks: two ranks hold nothing
    let c = cfg(r#"{"optimizer": "muon", "lr": 0.02, "shape": [8, 6]}"#);
    let mut shards = make_shards(&c, 48, 3);
    let empty: Vec<usize> = (0..3).filter(|&r| shards[r].range().is_empty()).collect();
    assert_eq!(empty.len(), 2);
    let mut x = x0::<f64>(48);
    for k in 1..=3 {
        let g = grad(k, &x);
        step_shards(&mut shards, &mut x, &g);
    }
    for s in &shards {
        assert_eq!(s.step_count(), 3);
        assert_eq!(s.optimizer().n_params(), s.range().len());
    }
    let e = empty[0];
    let bytes = shards[e].save_state();
    let mut fresh = ShardedOptimizer::new(&c, 48, 3, e).unwrap();
    fresh.load_state(&bytes).unwrap();
    assert_eq!(fresh.step_count(), 3);
    let states: Vec<_> = shards.iter().map(ShardedOptimizer::state).collect();
    assemble_state(&c, shards[0].plan(), &states).unwrap();
}

/// Reshard 4 → 2 and 3 → 1 through assemble then split, and continue.
#[test]
fn resharding_four_to_two_and_three_to_one() {
    let (name, json, n) = configs().into_iter().find(|c| c.0 == "mixed").unwrap();
    let c = cfg(&json);
    for (from, to) in [(4, 2), (3, 1)] {
        let mut full = c.build(n).unwrap();
        let mut shards = make_shards(&c, n, from);
        let (mut xf, mut xs) = (x0::<f32>(n), x0::<f32>(n));
        for k in 1..=8 {
            let g = grad(k, &xf);
            full.step(&mut xf, &g).unwrap();
            step_shards(&mut shards, &mut xs, &g);
        }
        let blobs: Vec<OptimizerState> = shards
            .iter()
            .map(|s| OptimizerState::from_bytes(&s.save_state()).unwrap())
            .collect();
        let whole = assemble_state(&c, shards[0].plan(), &blobs).unwrap();
        let plan = ShardPlan::new(&c, n, to).unwrap();
        let parts = split_state(&c, &plan, &whole).unwrap();
        let mut re: Vec<ShardedOptimizer> = (0..to)
            .map(|r| ShardedOptimizer::from_plan(&c, plan.clone(), r).unwrap())
            .collect();
        for (s, p) in re.iter_mut().zip(&parts) {
            s.load(p).unwrap();
        }
        for k in 9..=16 {
            let g = grad(k, &xf);
            full.step(&mut xf, &g).unwrap();
            step_shards(&mut re, &mut xs, &g);
        }
        assert_bits_eq(&xf, &xs, &format!("{name}: {from} → {to}"));
        let states: Vec<_> = re.iter().map(ShardedOptimizer::state).collect();
        state_bits_eq(&assemble_state(&c, &plan, &states).unwrap(), &full.state()).unwrap();
    }
}

fn stepped_states(c: &OptimizerConfig, n: usize, world: usize) -> Vec<OptimizerState> {
    let mut shards = make_shards(c, n, world);
    let mut x = x0::<f64>(n);
    for k in 1..=3 {
        let g = grad(k, &x);
        step_shards(&mut shards, &mut x, &g);
    }
    shards.iter().map(ShardedOptimizer::state).collect()
}

fn state_err<T: std::fmt::Debug>(r: Result<T, OptimError>) -> String {
    match r {
        Err(OptimError::State { reason }) => reason,
        other => panic!("expected a state error, got {other:?}"),
    }
}

#[test]
fn bad_states_are_typed_errors() {
    let c = cfg(r#"{"optimizer": "adam", "lr": 0.01}"#);
    let plan = ShardPlan::new(&c, 40, 3).unwrap();
    let states = stepped_states(&c, 40, 3);
    // wrong count
    let m = state_err(assemble_state(&c, &plan, &states[..2]));
    assert!(m.contains("2 shard states") && m.contains("3 ranks"), "{m}");
    // wrong order
    let swapped = vec![states[1].clone(), states[0].clone(), states[2].clone()];
    let m = state_err(assemble_state(&c, &plan, &swapped));
    assert!(m.contains("rank order") && m.contains("rank 1"), "{m}");
    // another config (sgd with momentum)
    let other = cfg(r#"{"optimizer": "sgd", "momentum": 0.9}"#);
    let m = state_err(assemble_state(
        &other,
        &ShardPlan::new(&other, 40, 3).unwrap(),
        &states,
    ));
    assert!(m.contains("shard state 0"), "{m}");
    // another size
    let c41 = ShardPlan::new(&c, 41, 3).unwrap();
    state_err(assemble_state(&c, &c41, &states));
    // different step counts
    let mut later = states.clone();
    let mut s2 = ShardedOptimizer::new(&c, 40, 3, 2).unwrap();
    s2.load(&states[2]).unwrap();
    let r = s2.range();
    let mut x = x0::<f64>(40)[r.clone()].to_vec();
    let g = grad(9, &x);
    s2.step(&mut x, &g).unwrap();
    later[2] = s2.state();
    let m = state_err(assemble_state(&c, &plan, &later));
    assert!(m.contains("rank 2") && m.contains("4 steps"), "{m}");
    // a shard's state into another shard, and into an unsharded optimizer
    let mut s0 = ShardedOptimizer::new(&c, 40, 3, 0).unwrap();
    let before = s0.state();
    let m = state_err(s0.load(&states[1]));
    assert!(m.contains("shard[1/3]"), "{m}");
    assert_eq!(
        s0.state(),
        before,
        "a refused load leaves the shard unchanged"
    );
    let mut full = c.build(40).unwrap();
    state_err(full.load(&states[0]));
    // an unsharded state into a shard, a shard's state split as if unsharded
    let whole = assemble_state(&c, &plan, &states).unwrap();
    state_err(s0.load(&whole));
    state_err(split_state(&c, &plan, &states[0]));
    // the same shard of a plan of another world size
    let mut w2 = ShardedOptimizer::new(&c, 40, 2, 0).unwrap();
    state_err(w2.load(&states[0]));
    // tampered array inside one shard: named with its rank
    let mut bad = states.clone();
    bad[1].slots[0][3] = -1.0; // exp_avg_sq < 0
    let m = state_err(assemble_state(&c, &plan, &bad));
    assert!(m.contains("rank 1"), "{m}");
}

#[test]
fn nonfinite_indices_are_global() {
    let c = cfg(r#"{"optimizer": "adam"}"#);
    let mut s = ShardedOptimizer::new(&c, 30, 3, 1).unwrap();
    assert_eq!(s.range(), 10..20);
    let mut x = vec![0.0f64; 10];
    let mut g = vec![1.0f64; 10];
    g[4] = f64::NAN;
    assert_eq!(first_nonfinite(&g), Some(4));
    match s.step(&mut x, &g) {
        Err(OptimError::NonFiniteGradient { index }) => assert_eq!(index, 14),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.step_count(), 0);
    assert!(x.iter().all(|&v| v == 0.0));
    let p = cfg(r#"{"optimizer": "adam", "nonfinite": "propagate"}"#);
    let mut s = ShardedOptimizer::new(&p, 30, 3, 2).unwrap();
    g[4] = f64::INFINITY;
    let o = s.step(&mut x, &g).unwrap();
    assert_eq!(o.nonfinite_index, Some(24));
    let k = cfg(r#"{"optimizer": "adam", "nonfinite": "skip"}"#);
    let mut s = ShardedOptimizer::new(&k, 30, 3, 2).unwrap();
    let o = s.step(&mut [0.0f64; 10], &g).unwrap();
    assert!(!o.applied);
    assert_eq!(o.nonfinite_index, Some(24));
    // wrong slice length: the local length is named
    match s.step(&mut vec![0.0f64; 30], &vec![0.0; 30]) {
        Err(OptimError::LengthMismatch { expected, got, .. }) => {
            assert_eq!((expected, got), (10, 30))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn shard_accessors_and_layout() {
    let c = cfg(r#"{"optimizer": "sgd", "lr": 0.5, "momentum": 0.9,
        "groups": [{"start": 4, "end": 16, "shape": [3, 4], "optimizer": "muon"}]}"#);
    let s = ShardedOptimizer::new(&c, 20, 2, 1).unwrap();
    assert_eq!(s.rank(), 1);
    assert_eq!(s.plan().world(), 2);
    // target 10 falls in 4..16 (6 from its start, 6 from its end): moved to the start
    assert_eq!(s.range(), 4..20);
    assert_eq!(s.optimizer().shard_offset(), 4);
    let layout = s.optimizer().layout();
    assert!(layout.starts_with("shard[1/2]@4..20/20|"), "{layout}");
    assert!(layout.contains("groups[0]=muon(3x4)@4..16"), "{layout}");
    let mut t = s.clone();
    t.set_lr(0.25).unwrap();
    assert_eq!(t.lr().to_bits(), 0.25f64.to_bits());
    assert!(t.set_lr(-1.0).is_err());
    assert_eq!(s.lr().to_bits(), 0.5f64.to_bits());
    let full: Optimizer = c.build(20).unwrap();
    assert!(!full.layout().starts_with("shard"));
    assert_eq!(full.shard_offset(), 0);
}

/// The fused kernels give the same bits to an element whatever its position in the slice
/// (vector body or scalar tail, any start offset) and whatever the compiled version (baseline
/// or AVX2+FMA): an optimizer over every suffix `x[off..]` agrees with the one over `x`, for
/// the per-element kinds with the most arithmetic, in f32 and f64.
fn check_offsets<T: StepFloat>() {
    use precond_optim::SimdLevel;
    let n = 67;
    for json in [
        r#"{"optimizer": "adam", "lr": 0.01, "amsgrad": true, "weight_decay": 0.1}"#,
        r#"{"optimizer": "adamw", "lr": 0.01, "regularization": {"kind": "elastic_net", "strength": 1e-2, "l1_ratio": 0.3, "space": "intrinsic", "proximal": true}}"#,
        r#"{"optimizer": "rmsprop", "lr": 0.01, "centered": true, "momentum": 0.9}"#,
        r#"{"optimizer": "adagrad", "lr": 0.1, "lr_decay": 0.1}"#,
        r#"{"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 0.01}"#,
    ] {
        let c = cfg(json);
        let mut full = c.build(n).unwrap();
        full.set_simd_level(SimdLevel::Baseline);
        let mut x = x0::<T>(n);
        let gs: Vec<Vec<T>> = (1..=6).map(|k| grad(k, &x0::<T>(n))).collect();
        for g in &gs {
            full.step(&mut x, g).unwrap();
        }
        for off in 0..9 {
            for level in SimdLevel::available() {
                let mut o = c.build(n - off).unwrap();
                o.set_simd_level(level);
                let mut y = x0::<T>(n)[off..].to_vec();
                for g in &gs {
                    o.step(&mut y, &g[off..]).unwrap();
                }
                assert_bits_eq(&x[off..], &y, &format!("{json} offset {off} {level:?}"));
            }
        }
    }
}

#[test]
fn kernels_give_the_same_bits_at_every_offset_and_level() {
    check_offsets::<f32>();
    check_offsets::<f64>();
}

/// The plan balances state, not elements: four 8×8 Muon groups (one value per element) in
/// front of 1000 Adam elements (two each) hold S = 256 + 2000 values, and at P = 2 each rank
/// holds exactly S/2 (an element-balanced split at n/2 = 628 would give 1000 and 1256: the
/// Adam-only rank over S/P by two whole groups).
#[test]
fn the_plan_balances_optimizer_state_not_elements() {
    let groups: Vec<String> = (0..4)
        .map(|g| {
            format!(
                r#"{{"start": {}, "end": {}, "shape": [8, 8], "optimizer": "muon"}}"#,
                64 * g,
                64 * (g + 1)
            )
        })
        .collect();
    let c = cfg(&format!(
        r#"{{"optimizer": "adam", "groups": [{}]}}"#,
        groups.join(", ")
    ));
    let n = 256 + 1000;
    let plan = ShardPlan::new(&c, n, 2).unwrap();
    assert_eq!(plan.ranges(), &[0..692, 692..n]);
    for (q, want) in [(0, 1128), (1, 1128)] {
        let mut s = ShardedOptimizer::from_plan(&c, plan.clone(), q).unwrap();
        let m = s.range().len();
        s.step(&mut vec![0.0; m], &vec![0.0; m]).unwrap();
        assert_eq!(state_values(s.optimizer()), want, "rank {q}");
    }
}
