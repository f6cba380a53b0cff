//! `"bnp"` on a parameter group (docs/THEORY.md §6): a step on the group equals
//! [`bnp_precondition`] applied by hand then the plain optimizer on the same slice (bitwise),
//! other indices unaffected; observed statistics equal [`BnpStats::observe`] by hand; saved
//! states round-trip; every error names the problem and changes nothing; shard plans never split
//! the group.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{
    BnpSpec, BnpStats, OptimError, Optimizer, OptimizerConfig, OptimizerState, ShardPlan,
    ShardedOptimizer, StepFloat, assemble_state, bnp_precondition, split_state,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const UNITS: usize = 3;
const D: usize = 4;
const A: usize = 5; // first index of the BNP group
const LEN: usize = UNITS * D + UNITS;
const N: usize = A + LEN + 6;

/// Top level `top` (JSON object body without braces), one BNP group at `A..A+LEN` with `group`
/// (extra keys of the group).
fn cfg(top: &str, group: &str) -> OptimizerConfig {
    OptimizerConfig::from_json(&format!(
        r#"{{{top}, "groups": [{{"start": {A}, "end": {e}, "shape": [{UNITS}, {D}], "bnp": {{"momentum": 0.3, "eps": 1e-5}}{group}}}]}}"#,
        e = A + LEN
    ))
    .unwrap()
}

/// Batch statistics of a badly scaled input: means ~ 10, variances ~ 100.
fn batch(rng: &mut ChaCha8Rng) -> (Vec<f64>, Vec<f64>) {
    let m: Vec<f64> = (0..D)
        .map(|j| 10.0 * (j as f64 + 1.0) + rng.random_range(-1.0..1.0))
        .collect();
    let v: Vec<f64> = (0..D)
        .map(|j| 100.0 * (j as f64 + 0.5) * rng.random_range(0.5..1.5))
        .collect();
    (m, v)
}

fn grads<T: StepFloat>(rng: &mut ChaCha8Rng, n: usize) -> Vec<T> {
    (0..n)
        .map(|_| T::from_f64(rng.random_range(-1.0..1.0)))
        .collect()
}

/// Runs `steps` observe → step rounds on `opt` and, by hand, on `top_ref` (the plain top-level
/// optimizer over all `N` indices, compared outside the group) and `group_ref` (the group's
/// plain optimizer over its `LEN` indices, stepped on `bnp_precondition`ed gradients).
fn compare<T: StepFloat + std::fmt::Debug>(
    opt: &mut Optimizer,
    top_ref: &mut Optimizer,
    group_ref: &mut Optimizer,
    steps: usize,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x: Vec<T> = grads(&mut rng, N);
    let mut xt = x.clone();
    let mut xg: Vec<T> = x[A..A + LEN].to_vec();
    let mut by_hand = opt.bnp_stats(0).unwrap().clone();
    for _ in 0..steps {
        let (m, v) = batch(&mut rng);
        opt.bnp_observe(0, &m, &v).unwrap();
        by_hand.observe(&m, &v).unwrap();
        assert_eq!(opt.bnp_stats(0).unwrap(), &by_hand);
        let g: Vec<T> = grads(&mut rng, N);
        opt.step(&mut x, &g).unwrap();
        top_ref.step(&mut xt, &g).unwrap();
        let mut pg = g[A..A + LEN].to_vec();
        let (w, b) = pg.split_at_mut(UNITS * D);
        bnp_precondition(w, b, &by_hand).unwrap();
        group_ref.step(&mut xg, &pg).unwrap();
        for i in (0..A).chain(A + LEN..N) {
            assert_eq!(
                x[i].to_bits_u64(),
                xt[i].to_bits_u64(),
                "top level index {i}"
            );
        }
        for i in 0..LEN {
            assert_eq!(
                x[A + i].to_bits_u64(),
                xg[i].to_bits_u64(),
                "group index {i}: {:?} vs {:?}",
                x[A + i],
                xg[i]
            );
        }
    }
    // the preconditioning mattered: the plain step differs
    assert_ne!(
        x[A..A + LEN]
            .iter()
            .map(|v| v.to_bits_u64())
            .collect::<Vec<_>>(),
        xt[A..A + LEN]
            .iter()
            .map(|v| v.to_bits_u64())
            .collect::<Vec<_>>()
    );
}

fn both<T: StepFloat + std::fmt::Debug>(seed: u64) {
    // the group runs the top level's optimizer (Adam) with its own part
    let c = cfg(r#""optimizer": "adam", "lr": 0.01"#, "");
    let mut opt = c.build(N).unwrap();
    let mut top = OptimizerConfig::from_json(r#"{"optimizer": "adam", "lr": 0.01}"#)
        .unwrap()
        .build(N)
        .unwrap();
    let mut grp = OptimizerConfig::from_json(r#"{"optimizer": "adam", "lr": 0.01}"#)
        .unwrap()
        .build(LEN)
        .unwrap();
    compare::<T>(&mut opt, &mut top, &mut grp, 6, seed);
    // the group's own optimizer: SGD with momentum and weight decay beside AdamW
    let c = cfg(
        r#""optimizer": "adamw", "lr": 0.01"#,
        r#", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.01"#,
    );
    let mut opt = c.build(N).unwrap();
    let mut top = OptimizerConfig::from_json(r#"{"optimizer": "adamw", "lr": 0.01}"#)
        .unwrap()
        .build(N)
        .unwrap();
    let mut grp = OptimizerConfig::from_json(
        r#"{"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}"#,
    )
    .unwrap()
    .build(LEN)
    .unwrap();
    compare::<T>(&mut opt, &mut top, &mut grp, 6, seed + 1);
}

#[test]
fn a_step_is_bnp_then_the_plain_optimizer_f64() {
    both::<f64>(10);
}

#[test]
fn a_step_is_bnp_then_the_plain_optimizer_f32() {
    both::<f32>(20);
}

#[test]
fn statistics_start_at_torch_defaults_and_follow_observe() {
    let mut opt = cfg(r#""optimizer": "sgd", "lr": 0.1"#, "")
        .build(N)
        .unwrap();
    let spec = BnpSpec {
        momentum: 0.3,
        eps: 1e-5,
    };
    assert_eq!(opt.bnp_stats(0).unwrap(), &BnpStats::new(D, spec).unwrap());
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut by_hand = BnpStats::new(D, spec).unwrap();
    for _ in 0..5 {
        let (m, v) = batch(&mut rng);
        opt.bnp_observe(0, &m, &v).unwrap();
        by_hand.observe(&m, &v).unwrap();
    }
    assert_eq!(opt.bnp_stats(0).unwrap(), &by_hand);
    assert_eq!(opt.bnp_stats(0).unwrap().observations(), 5);
    // `true` means the defaults
    let d = OptimizerConfig::from_json(&format!(
        r#"{{"optimizer": "sgd", "groups": [{{"start": 0, "end": {LEN}, "shape": [{UNITS}, {D}], "bnp": true}}]}}"#
    ))
    .unwrap();
    assert_eq!(d.groups[0].bnp, Some(BnpSpec::default()));
    // JSON round trip of the key
    let c = cfg(r#""optimizer": "adam""#, r#", "optimizer": "sgd""#);
    assert_eq!(OptimizerConfig::from_json(&c.to_json()).unwrap(), c);
    assert_eq!(c.groups[0].bnp, Some(spec));
}

/// Steps `opt` and a copy restored from `bytes` the same calls: bitwise the same parameters.
fn continues_identically<T: StepFloat>(opt: &mut Optimizer, restored: &mut Optimizer) {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut x: Vec<T> = grads(&mut rng, N);
    let mut y = x.clone();
    for _ in 0..4 {
        let (m, v) = batch(&mut rng);
        opt.bnp_observe(0, &m, &v).unwrap();
        restored.bnp_observe(0, &m, &v).unwrap();
        let g: Vec<T> = grads(&mut rng, N);
        opt.step(&mut x, &g).unwrap();
        restored.step(&mut y, &g).unwrap();
    }
    for i in 0..N {
        assert_eq!(x[i].to_bits_u64(), y[i].to_bits_u64(), "index {i}");
    }
}

fn observe_and_step<T: StepFloat>(opt: &mut Optimizer, k: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut x: Vec<T> = grads(&mut rng, N);
    for _ in 0..k {
        let (m, v) = batch(&mut rng);
        opt.bnp_observe(0, &m, &v).unwrap();
        let g: Vec<T> = grads(&mut rng, N);
        opt.step(&mut x, &g).unwrap();
    }
}

#[test]
fn saved_states_round_trip_the_statistics() {
    let c = cfg(r#""optimizer": "adam", "lr": 0.01"#, "");
    // f64: bitwise, then identical continuation
    let mut opt = c.build(N).unwrap();
    observe_and_step::<f64>(&mut opt, 3);
    let bytes = opt.save_state();
    let st = OptimizerState::from_bytes(&bytes).unwrap();
    assert!(
        st.layout
            .ends_with("|bnp:groups[0].bnp_mean,groups[0].bnp_var,groups[0].bnp_observations")
    );
    assert!(st.layout.contains("groups[0]=adam+bnp(3x4)@5..20"));
    let mut restored = c.build(N).unwrap();
    restored.load_state(&bytes).unwrap();
    assert_eq!(restored.bnp_stats(0).unwrap(), opt.bnp_stats(0).unwrap());
    continues_identically::<f64>(&mut opt, &mut restored);

    // before the first step: the statistics alone, exact
    let mut fresh = c.build(N).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (m, v) = batch(&mut rng);
    fresh.bnp_observe(0, &m, &v).unwrap();
    let st = fresh.state();
    assert_eq!(st.dtype, None);
    assert_eq!(st.slots.len(), 3);
    let mut back = c.build(N).unwrap();
    back.load_state(&fresh.save_state()).unwrap();
    assert_eq!(back.bnp_stats(0).unwrap(), fresh.bnp_stats(0).unwrap());
    assert_eq!(back.dtype(), None);

    // f32: the bytes round the statistics to f32 (documented), the in-memory state is exact
    let mut opt = c.build(N).unwrap();
    observe_and_step::<f32>(&mut opt, 3);
    let mut exact = c.build(N).unwrap();
    exact.load(&opt.state()).unwrap();
    assert_eq!(exact.bnp_stats(0).unwrap(), opt.bnp_stats(0).unwrap());
    continues_identically::<f32>(&mut opt.clone(), &mut exact);
    let mut rounded = c.build(N).unwrap();
    rounded.load_state(&opt.save_state()).unwrap();
    let (a, b) = (opt.bnp_stats(0).unwrap(), rounded.bnp_stats(0).unwrap());
    for j in 0..D {
        assert_eq!(
            b.mean()[j].to_bits(),
            f64::from(a.mean()[j] as f32).to_bits()
        );
        assert_eq!(b.var()[j].to_bits(), f64::from(a.var()[j] as f32).to_bits());
    }
    assert_eq!(b.observations(), a.observations());
    // reset keeps the statistics
    let before = opt.bnp_stats(0).unwrap().clone();
    opt.reset();
    assert_eq!(opt.bnp_stats(0).unwrap(), &before);
}

#[test]
fn bad_states_are_refused_and_change_nothing() {
    let c = cfg(r#""optimizer": "adam", "lr": 0.01"#, "");
    let mut opt = c.build(N).unwrap();
    observe_and_step::<f64>(&mut opt, 2);
    let good = opt.state();
    let mut target = c.build(N).unwrap();
    let before = target.bnp_stats(0).unwrap().clone();
    let k = good.slots.len();
    let cases: Vec<(usize, usize, f64, &str)> = vec![
        (k - 3, 1, f64::NAN, "bnp_mean"),
        (k - 2, 0, -1.0, "bnp_var"),
        (k - 2, 2, f64::INFINITY, "bnp_var"),
        (k - 1, 0, 2.5, "bnp_observations"),
        (k - 1, 0, -1.0, "bnp_observations"),
    ];
    for (a, i, v, name) in cases {
        let mut st = good.clone();
        st.slots[a][i] = v;
        let e = target.load(&st).unwrap_err();
        assert!(
            matches!(&e, OptimError::State { reason } if reason.contains(name)),
            "{name}: {e}"
        );
        assert_eq!(target.bnp_stats(0).unwrap(), &before);
        assert_eq!(target.dtype(), None);
    }
    let mut st = good.clone();
    st.slots[k - 3].pop();
    assert!(
        target
            .load(&st)
            .unwrap_err()
            .to_string()
            .contains("bnp_mean")
    );
    let mut st = good;
    st.slots.pop();
    assert!(matches!(target.load(&st), Err(OptimError::State { .. })));
    assert_eq!(target.bnp_stats(0).unwrap(), &before);
}

fn config_err(json: &str) -> OptimError {
    match OptimizerConfig::from_json(json).and_then(|c| c.build(N)) {
        Err(e) => e,
        Ok(_) => panic!("accepted: {json}"),
    }
}

#[test]
fn bad_configs_name_the_key() {
    let g = |extra: &str| {
        format!(
            r#"{{"optimizer": "adam", "groups": [{{"start": {A}, "end": {e}{extra}}}]}}"#,
            e = A + LEN
        )
    };
    let key = |e: OptimError| match e {
        OptimError::Config { key, .. } | OptimError::UnknownKey { key, .. } => key,
        OptimError::Unsupported(m) => m,
        other => panic!("{other}"),
    };
    assert_eq!(key(config_err(&g(r#", "bnp": true"#))), "groups[0].shape");
    let e = config_err(&g(r#", "bnp": true, "shape": [4, 3]"#));
    assert!(e.to_string().contains("16"), "{e}");
    assert_eq!(key(e), "groups[0].shape");
    assert!(
        key(config_err(&g(
            r#", "bnp": true, "shape": [3, 4], "order": "F""#
        )))
        .contains("groups[0].order")
    );
    assert_eq!(
        key(config_err(&g(
            r#", "bnp": true, "shape": [3, 4], "optimizer": "muon""#
        ))),
        "groups[0].bnp"
    );
    // the top level's matrix optimizer for a BNP group without its own
    let e = config_err(&format!(
        r#"{{"optimizer": "muon", "shape": [1, {A}], "groups": [{{"start": {A}, "end": {e}, "shape": [3, 4], "bnp": true}}]}}"#,
        e = A + LEN
    ));
    assert_eq!(key(e), "groups[0].bnp");
    assert_eq!(
        key(config_err(&g(
            r#", "bnp": {"momentum": 2}, "shape": [3, 4]"#
        ))),
        "groups[0].bnp.momentum"
    );
    assert_eq!(
        key(config_err(&g(r#", "bnp": {"eps": -1}, "shape": [3, 4]"#))),
        "groups[0].bnp.eps"
    );
    assert_eq!(
        key(config_err(&g(r#", "bnp": {"beta": 1}, "shape": [3, 4]"#))),
        "groups[0].bnp.beta"
    );
    assert_eq!(
        key(config_err(&g(r#", "bnp": 1, "shape": [3, 4]"#))),
        "groups[0].bnp"
    );
    // the top level takes no `bnp`
    assert_eq!(
        key(config_err(r#"{"optimizer": "adam", "bnp": true}"#)),
        "bnp"
    );
    // `false` is no BNP
    let c = OptimizerConfig::from_json(&g(r#", "bnp": false"#)).unwrap();
    assert_eq!(c.groups[0].bnp, None);
}

#[test]
fn bad_observations_name_the_group_and_change_nothing() {
    let c = OptimizerConfig::from_json(&format!(
        r#"{{"optimizer": "adam", "groups": [{{"start": 0, "end": 2, "lr": 0.1}}, {{"start": {A}, "end": {e}, "shape": [{UNITS}, {D}], "bnp": true}}]}}"#,
        e = A + LEN
    ))
    .unwrap();
    let mut opt = c.build(N).unwrap();
    let before = opt.bnp_stats(1).unwrap().clone();
    let ok = vec![1.0; D];
    let inner = |e: OptimError, group: usize| match e {
        OptimError::Bnp { group: g, error } if g == group => *error,
        other => panic!("{other}"),
    };
    let e = inner(opt.bnp_observe(1, &ok[..D - 1], &ok).unwrap_err(), 1);
    assert!(
        matches!(e, OptimError::LengthMismatch { expected: D, got, .. } if got == D - 1),
        "{e}"
    );
    let e = inner(opt.bnp_observe(1, &ok, &[1.0; D + 1]).unwrap_err(), 1);
    assert!(matches!(e, OptimError::LengthMismatch { got, .. } if got == D + 1));
    let mut bad = ok.clone();
    bad[2] = f64::NAN;
    let e = inner(opt.bnp_observe(1, &bad, &ok).unwrap_err(), 1);
    assert!(matches!(
        e,
        OptimError::InvalidStatistics {
            what: "batch_mean",
            index: 2,
            ..
        }
    ));
    bad[2] = -0.5;
    let e = inner(opt.bnp_observe(1, &ok, &bad).unwrap_err(), 1);
    assert!(matches!(
        e,
        OptimError::InvalidStatistics {
            what: "batch_var",
            index: 2,
            ..
        }
    ));
    let e = opt.bnp_observe(0, &ok, &ok).unwrap_err();
    assert!(e.to_string().contains("groups[0].bnp"), "{e}");
    let e = inner(opt.bnp_observe(7, &ok, &ok).unwrap_err(), 7);
    assert!(e.to_string().contains("2 group"), "{e}");
    assert!(opt.bnp_stats(2).is_err());
    assert!(opt.bnp_stats(0).is_err());
    assert_eq!(opt.bnp_stats(1).unwrap(), &before);
    assert_eq!(before.observations(), 0);
}

#[test]
fn a_nonfinite_preconditioned_gradient_is_refused() {
    // eps = 0 and a zero variance: Σ⁻² = ∞, the raw gradient is finite
    let c = OptimizerConfig::from_json(&format!(
        r#"{{"optimizer": "sgd", "lr": 0.1, "groups": [{{"start": {A}, "end": {e}, "shape": [{UNITS}, {D}], "bnp": {{"momentum": 1, "eps": 0}}}}]}}"#,
        e = A + LEN
    ))
    .unwrap();
    let mut opt = c.build(N).unwrap();
    opt.bnp_observe(0, &[1.0; D], &[0.0; D]).unwrap();
    let mut x = vec![1.0f64; N];
    let g = vec![0.5f64; N];
    let e = opt.step(&mut x, &g).unwrap_err();
    assert!(
        matches!(e, OptimError::NonFiniteGradient { index } if (A..A + LEN).contains(&index)),
        "{e}"
    );
    assert!(x.iter().all(|v| v.to_bits() == 1.0f64.to_bits()));
    assert_eq!(opt.step_count(), 0);
    assert_eq!(
        opt.dtype(),
        None,
        "the refused first step left state behind"
    );
    // "skip" reports the index and changes nothing either
    let mut c = c;
    c.nonfinite = precond_optim::NonFinitePolicy::Skip;
    let mut opt = c.build(N).unwrap();
    opt.bnp_observe(0, &[1.0; D], &[0.0; D]).unwrap();
    let o = opt.step(&mut x, &g).unwrap();
    assert!(!o.applied && o.nonfinite_index.is_some_and(|i| (A..A + LEN).contains(&i)));
    assert!(x.iter().all(|v| v.to_bits() == 1.0f64.to_bits()));
    assert_eq!((opt.step_count(), opt.dtype()), (0, None));
}

#[test]
fn shard_plans_never_split_a_bnp_group() {
    let c = cfg(r#""optimizer": "adam", "lr": 0.01"#, "");
    for world in 1..=8 {
        let plan = ShardPlan::new(&c, N, world).unwrap();
        for r in plan.ranges() {
            assert!(
                r.end <= A || r.start >= A + LEN || (r.start <= A && r.end >= A + LEN),
                "world {world}: {r:?} splits {A}..{}",
                A + LEN
            );
        }
    }
    // before the first step the states hold the statistics alone: assembled and split exactly
    {
        let world = 4;
        let plan = ShardPlan::new(&c, N, world).unwrap();
        let mut full = c.build(N).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (m, v) = batch(&mut rng);
        full.bnp_observe(0, &m, &v).unwrap();
        let parts = split_state(&c, &plan, &full.state()).unwrap();
        let held: Vec<usize> = parts.iter().map(|p| p.slots.len()).collect();
        assert_eq!(
            held.iter().sum::<usize>(),
            3,
            "one shard holds the 3 arrays: {held:?}"
        );
        assert_eq!(assemble_state(&c, &plan, &parts).unwrap(), full.state());
        let r = held.iter().position(|&k| k == 3).unwrap();
        let mut s = ShardedOptimizer::from_plan(&c, plan.clone(), r).unwrap();
        s.load(&parts[r]).unwrap();
        assert_eq!(
            s.optimizer().bnp_stats(0).unwrap(),
            full.bnp_stats(0).unwrap()
        );
    }
    // shards stepped the same calls as the unsharded optimizer: bitwise equal; the assembled
    // state is the unsharded one, and splits back
    let world = 3;
    let plan = ShardPlan::new(&c, N, world).unwrap();
    let mut full = c.build(N).unwrap();
    let mut shards: Vec<ShardedOptimizer> = (0..world)
        .map(|r| ShardedOptimizer::from_plan(&c, plan.clone(), r).unwrap())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut x: Vec<f64> = grads(&mut rng, N);
    let mut xs = x.clone();
    for _ in 0..3 {
        let (m, v) = batch(&mut rng);
        full.bnp_observe(0, &m, &v).unwrap();
        let g: Vec<f64> = grads(&mut rng, N);
        full.step(&mut x, &g).unwrap();
        for s in &mut shards {
            let r = s.range();
            let o = s.optimizer_mut();
            if (r.start..r.end).contains(&A) {
                o.bnp_observe(0, &m, &v).unwrap();
            } else {
                let e = o.bnp_observe(0, &m, &v).unwrap_err();
                assert!(e.to_string().contains("another shard"), "{e}");
            }
            s.step(&mut xs[r.clone()], &g[r]).unwrap();
        }
    }
    assert_eq!(x, xs);
    let states: Vec<OptimizerState> = shards.iter().map(ShardedOptimizer::state).collect();
    let assembled = assemble_state(&c, &plan, &states).unwrap();
    assert_eq!(assembled, full.state());
    let split = split_state(&c, &plan, &full.state()).unwrap();
    assert_eq!(split, states);
}
