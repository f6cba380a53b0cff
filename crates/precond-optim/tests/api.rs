//! Config strictness (errors naming the key), state save/load, bad input, groups, schedules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{
    Dtype, NonFinitePolicy, OptimError, OptimizerConfig, OptimizerKind, OptimizerState, RegKind,
    Schedule, Space,
};

fn err(json: &str) -> OptimError {
    match OptimizerConfig::from_json(json) {
        Ok(c) => panic!("accepted {json}: {c:?}"),
        Err(e) => e,
    }
}

fn config_key(json: &str) -> String {
    match err(json) {
        OptimError::Config { key, .. } => key,
        other => panic!("{json}: expected a Config error, got {other:?}"),
    }
}

fn unknown_key(json: &str) -> String {
    match err(json) {
        OptimError::UnknownKey { key, .. } => key,
        other => panic!("{json}: expected an UnknownKey error, got {other:?}"),
    }
}

#[test]
fn torch_defaults() {
    let c = OptimizerConfig::from_json(r#"{"optimizer": "adamw"}"#).unwrap();
    assert_eq!(c.optimizer, OptimizerKind::Adamw);
    assert!(
        (c.lr - 1e-3).abs() < 1e-18
            && (c.weight_decay - 1e-2).abs() < 1e-18
            && (c.eps - 1e-8).abs() < 1e-22
    );
    assert!((c.betas[0] - 0.9).abs() < 1e-16 && (c.betas[1] - 0.999).abs() < 1e-16 && !c.amsgrad);
    let a = OptimizerConfig::from_json(r#"{"optimizer": "adagrad"}"#).unwrap();
    assert!((a.lr - 1e-2).abs() < 1e-18 && (a.eps - 1e-10).abs() < 1e-24);
    let r = OptimizerConfig::from_json(r#"{"optimizer": "rmsprop"}"#).unwrap();
    assert!((r.lr - 1e-2).abs() < 1e-18 && (r.alpha - 0.99).abs() < 1e-16 && !r.centered);
    let s = OptimizerConfig::from_json(r#"{"optimizer": "sgd"}"#).unwrap();
    assert!((s.lr - 1e-3).abs() < 1e-18 && s.momentum == 0.0 && !s.nesterov);
    assert_eq!(s.nonfinite, NonFinitePolicy::Error);
}

#[test]
fn full_adamw_config_with_groups_schedule_and_proximal_l1_parses() {
    let c = OptimizerConfig::from_json(
        r#"{"optimizer": "adamw", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01,
            "amsgrad": false, "regularization": {"kind": "l1", "strength": 1e-4, "space": "intrinsic", "proximal": true},
            "groups": [{"start": 0, "end": 10, "weight_decay": 0.0}],
            "schedule": {"kind": "sequential", "schedulers": [{"kind": "linear", "start_factor": 0.1, "total_iters": 10},
                         {"kind": "cosine", "T_max": 90}], "milestones": [10]}, "nonfinite": "skip"}"#,
    )
    .unwrap();
    assert_eq!(c.regularization.kind, RegKind::L1);
    assert_eq!(c.regularization.space, Space::Intrinsic);
    assert!(c.regularization.proximal);
    assert_eq!(c.groups.len(), 1);
    assert_eq!(c.nonfinite, NonFinitePolicy::Skip);
    assert!(matches!(c.schedule, Schedule::Sequential { .. }));
    c.build(20).unwrap();
}

#[test]
fn errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        (r#"{"optimizer": "adam", "lr": -1}"#, "lr"),
        (r#"{"optimizer": "adam", "lr": "fast"}"#, "lr"),
        (r#"{"optimizer": "adam", "betas": [0.9, 1.0]}"#, "betas"),
        (r#"{"optimizer": "adam", "betas": [-0.1, 0.9]}"#, "betas"),
        (r#"{"optimizer": "adam", "betas": [0.9]}"#, "betas"),
        (r#"{"optimizer": "adam", "betas": 0.9}"#, "betas"),
        (r#"{"optimizer": "adam", "betas": [0.9, "x"]}"#, "betas[1]"),
        (r#"{"optimizer": "adam", "eps": 0}"#, "eps"),
        (r#"{"optimizer": "adam", "eps": -1e-8}"#, "eps"),
        (r#"{"optimizer": "adam", "amsgrad": 1}"#, "amsgrad"),
        (
            r#"{"optimizer": "adam", "weight_decay": -0.1}"#,
            "weight_decay",
        ),
        (r#"{"optimizer": "adam", "maximize": "yes"}"#, "maximize"),
        (r#"{"optimizer": "sgd", "momentum": -0.5}"#, "momentum"),
        (r#"{"optimizer": "sgd", "dampening": 2}"#, "dampening"),
        (r#"{"optimizer": "sgd", "nesterov": true}"#, "nesterov"),
        (
            r#"{"optimizer": "sgd", "momentum": 0.9, "dampening": 0.1, "nesterov": true}"#,
            "nesterov",
        ),
        (r#"{"optimizer": "rmsprop", "alpha": 1.5}"#, "alpha"),
        (r#"{"optimizer": "adagrad", "lr_decay": -1}"#, "lr_decay"),
        (
            r#"{"optimizer": "adagrad", "initial_accumulator_value": -1}"#,
            "initial_accumulator_value",
        ),
        (r#"{"optimizer": "lbfgs"}"#, "optimizer"),
        (r#"{"lr": 0.1}"#, "optimizer"),
        (
            r#"{"optimizer": "adam", "nonfinite": "ignore"}"#,
            "nonfinite",
        ),
        (
            r#"{"optimizer": "adam", "regularization": {"kind": "l1", "strength": -1, "space": "intrinsic"}}"#,
            "regularization.strength",
        ),
        (
            r#"{"optimizer": "adam", "regularization": {"kind": "l1", "strength": 1}}"#,
            "regularization.space",
        ),
        (
            r#"{"optimizer": "adam", "regularization": {"kind": "l3", "strength": 1, "space": "original"}}"#,
            "regularization.kind",
        ),
        (
            r#"{"optimizer": "adam", "regularization": {"kind": "l1", "strength": 1, "space": "y"}}"#,
            "regularization.space",
        ),
        (
            r#"{"optimizer": "adam", "regularization": {"kind": "l1", "strength": 1, "space": "original", "l1_ratio": 0.5}}"#,
            "regularization.l1_ratio",
        ),
        (
            r#"{"optimizer": "adam", "regularization": {"kind": "elastic_net", "strength": 1, "space": "original", "l1_ratio": 2}}"#,
            "regularization.l1_ratio",
        ),
        (
            r#"{"optimizer": "adam", "regularization": {"kind": "l2", "strength": 1, "space": "original", "proximal": "no"}}"#,
            "regularization.proximal",
        ),
        (
            r#"{"optimizer": "adam", "regularization": 3}"#,
            "regularization",
        ),
        (
            r#"{"optimizer": "adam", "groups": [{"start": 0, "end": 2}, {"start": 2, "end": 4, "lr": -1}]}"#,
            "groups[1].lr",
        ),
        (
            r#"{"optimizer": "adam", "groups": [{"start": 0}]}"#,
            "groups[0].end",
        ),
        (
            r#"{"optimizer": "adam", "groups": [{"start": 3, "end": 3}]}"#,
            "groups[0]",
        ),
        (
            r#"{"optimizer": "adam", "groups": [{"start": 0, "end": 2, "regularization": {"kind": "l2", "strength": -2, "space": "original"}}]}"#,
            "groups[0].regularization.strength",
        ),
        (
            r#"{"optimizer": "adam", "schedule": {"kind": "step"}}"#,
            "schedule.step_size",
        ),
        (
            r#"{"optimizer": "adam", "schedule": {"kind": "cosine", "T_max": 0}}"#,
            "schedule.T_max",
        ),
        (
            r#"{"optimizer": "adam", "schedule": {"kind": "warp"}}"#,
            "schedule.kind",
        ),
        (
            r#"{"optimizer": "adam", "schedule": {"kind": "exponential", "gamma": -1}}"#,
            "schedule.gamma",
        ),
        (
            r#"{"optimizer": "adam", "schedule": {"kind": "linear", "start_factor": 0}}"#,
            "schedule.start_factor",
        ),
        (
            r#"{"optimizer": "adam", "schedule": {"kind": "sequential", "schedulers": [{"kind": "constant"}, {"kind": "constant"}], "milestones": []}}"#,
            "schedule.milestones",
        ),
        (
            r#"{"optimizer": "adam", "schedule": {"kind": "sequential", "schedulers": [{"kind": "step"}], "milestones": []}}"#,
            "schedule.schedulers[0].step_size",
        ),
        (r#"{"optimizer": "precond_gd"}"#, "preconditioner"),
        (
            r#"{"optimizer": "precond_gd", "preconditioner": {"diag": [1, -1]}}"#,
            "preconditioner.diag[1]",
        ),
        (
            r#"{"optimizer": "precond_gd", "preconditioner": {"P": [[1, 0], [0]]}}"#,
            "preconditioner.P[1]",
        ),
        (
            r#"{"optimizer": "precond_gd", "preconditioner": {"diag": [1], "P": [[1]]}}"#,
            "preconditioner",
        ),
        (r#"{"optimizer": "gd", "lr": 0.1, "groups": 5}"#, "groups"),
    ];
    for (json, key) in cases {
        assert_eq!(config_key(json), *key, "for {json}");
    }
    // messages mention the key too
    let msg = err(r#"{"optimizer": "adam", "eps": 0}"#).to_string();
    assert!(msg.contains("`eps`") && msg.contains("> 0"), "{msg}");
}

#[test]
fn unknown_and_inapplicable_keys() {
    assert_eq!(
        unknown_key(r#"{"optimizer": "adam", "learning_rate": 0.1}"#),
        "learning_rate"
    );
    assert_eq!(
        unknown_key(r#"{"optimizer": "adam", "foreach": true}"#),
        "foreach"
    );
    // torch's SGD has no betas, Adam no momentum, Adagrad no alpha: rejected like a TypeError
    assert_eq!(
        unknown_key(r#"{"optimizer": "sgd", "betas": [0.9, 0.99]}"#),
        "betas"
    );
    assert_eq!(
        unknown_key(r#"{"optimizer": "adam", "momentum": 0.9}"#),
        "momentum"
    );
    assert_eq!(
        unknown_key(r#"{"optimizer": "adagrad", "alpha": 0.9}"#),
        "alpha"
    );
    assert_eq!(
        unknown_key(r#"{"optimizer": "gd", "momentum": 0.9}"#),
        "momentum"
    );
    let e = err(r#"{"optimizer": "sgd", "betas": [0.9, 0.99]}"#).to_string();
    assert!(e.contains("not an argument of `sgd`"), "{e}");
    assert_eq!(
        unknown_key(
            r#"{"optimizer": "adam", "regularization": {"kind": "l1", "strength": 1, "space": "original", "lambda": 1}}"#
        ),
        "regularization.lambda"
    );
    assert_eq!(
        unknown_key(
            r#"{"optimizer": "adam", "groups": [{"start": 0, "end": 1, "betas": [0.1, 0.2]}]}"#
        ),
        "groups[0].betas"
    );
    assert_eq!(
        unknown_key(r#"{"optimizer": "adam", "schedule": {"kind": "constant", "gamma": 1}}"#),
        "schedule.gamma"
    );
    assert!(matches!(err("{not json"), OptimError::Json(_)));
    assert!(matches!(err("[1, 2]"), OptimError::Config { .. }));
}

#[test]
fn json_round_trip_and_serde() {
    let texts = [
        r#"{"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true, "maximize": true}"#,
        r#"{"optimizer": "adagrad", "lr_decay": 0.1, "initial_accumulator_value": 0.3, "eps": 1e-6}"#,
        r#"{"optimizer": "rmsprop", "alpha": 0.9, "centered": true, "momentum": 0.5, "weight_decay": 0.1}"#,
        r#"{"optimizer": "adam", "amsgrad": true, "betas": [0.8, 0.95],
            "regularization": {"kind": "elastic_net", "strength": 0.1, "l1_ratio": 0.3, "space": "intrinsic", "proximal": true},
            "groups": [{"start": 2, "end": 5, "lr": 0.5, "regularization": {"kind": "none"}}],
            "schedule": {"kind": "step", "step_size": 3, "gamma": 0.5}, "nonfinite": "skip"}"#,
        r#"{"optimizer": "precond_gd", "lr": 0.5, "preconditioner": {"S": [[1, 0.5], [0, 2]]}}"#,
        r#"{"optimizer": "precond_gd", "lr": 0.5, "preconditioner": {"diag": [1, 2, 3]}, "momentum": 0.3}"#,
    ];
    for t in texts {
        let c = OptimizerConfig::from_json(t).unwrap();
        let back = OptimizerConfig::from_json(&c.to_json()).unwrap();
        assert_eq!(c, back, "{t}");
        let via_serde: OptimizerConfig = serde_json::from_str(t).unwrap();
        assert_eq!(c, via_serde);
        assert_eq!(serde_json::to_value(&c).unwrap(), c.to_value());
    }
    // serde errors carry the key as well
    let e = serde_json::from_str::<OptimizerConfig>(r#"{"optimizer": "adam", "eps": -1}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`eps`"), "{e}");
}

#[test]
fn group_validation_names_the_group() {
    let mut c = OptimizerConfig::adam(1e-3);
    c.groups = vec![
        precond_optim::ParamGroup {
            start: 0,
            end: 4,
            ..Default::default()
        },
        precond_optim::ParamGroup {
            start: 6,
            end: 12,
            ..Default::default()
        },
    ];
    assert!(matches!(
        c.build(10),
        Err(OptimError::GroupRange {
            index: 1,
            start: 6,
            end: 12,
            n_params: 10
        })
    ));
    c.groups[1].start = 3;
    c.groups[1].end = 8;
    assert!(matches!(
        c.build(10),
        Err(OptimError::GroupOverlap {
            first: 0,
            second: 1
        })
    ));
    c.groups.swap(0, 1);
    assert!(matches!(
        c.build(10),
        Err(OptimError::GroupOverlap {
            first: 0,
            second: 1
        })
    ));
    c.groups[0] = precond_optim::ParamGroup {
        start: 4,
        end: 10,
        ..Default::default()
    };
    c.build(10).unwrap();
}

fn grads(n: usize, k: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7 + k * 3) % 11) as f64 / 5.0 - 1.0)
        .collect()
}

fn all_configs() -> Vec<OptimizerConfig> {
    [
        r#"{"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true}"#,
        r#"{"optimizer": "gd", "lr": 0.1}"#,
        r#"{"optimizer": "adagrad", "lr_decay": 0.1, "initial_accumulator_value": 0.3}"#,
        r#"{"optimizer": "rmsprop", "centered": true, "momentum": 0.5}"#,
        r#"{"optimizer": "adam", "amsgrad": true}"#,
        r#"{"optimizer": "adamw", "weight_decay": 0.1, "regularization": {"kind": "l1", "strength": 0.01, "space": "intrinsic", "proximal": true}}"#,
        r#"{"optimizer": "precond_gd", "lr": 0.1, "preconditioner": {"diag": [1, 2, 3, 4, 5, 6, 7]}, "momentum": 0.5}"#,
    ]
    .iter()
    .map(|t| OptimizerConfig::from_json(t).unwrap())
    .collect()
}

#[test]
fn state_round_trip_is_exact_for_every_optimizer_and_dtype() {
    let n = 7;
    for cfg in all_configs() {
        // f64: 5 steps, save, 5 more; a fresh optimizer loading the saved state must match bitwise
        let mut a = cfg.build(n).unwrap();
        let mut x: Vec<f64> = (0..n).map(|i| i as f64 - 3.0).collect();
        for k in 0..5 {
            a.step_f64(&mut x, &grads(n, k)).unwrap();
        }
        let saved = a.save_state();
        let x_saved = x.clone();
        for k in 5..10 {
            a.step_f64(&mut x, &grads(n, k)).unwrap();
        }
        let mut b = cfg.build(n).unwrap();
        b.load_state(&saved).unwrap();
        assert_eq!(b.step_count(), 5);
        assert_eq!(b.save_state(), saved, "{:?}", cfg.optimizer);
        let mut y = x_saved;
        for k in 5..10 {
            b.step_f64(&mut y, &grads(n, k)).unwrap();
        }
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{:?}",
            cfg.optimizer
        );
        assert_eq!(a.save_state(), b.save_state());
        // serde struct round trip
        let st = a.state();
        assert_eq!(OptimizerState::from_bytes(&st.to_bytes()).unwrap(), st);

        // f32
        let mut a = cfg.build(n).unwrap();
        let mut x: Vec<f32> = (0..n).map(|i| i as f32 - 3.0).collect();
        let g32 = |k| grads(n, k).iter().map(|&v| v as f32).collect::<Vec<f32>>();
        for k in 0..3 {
            a.step_f32(&mut x, &g32(k)).unwrap();
        }
        let saved = a.save_state();
        assert_eq!(a.dtype(), Some(Dtype::F32));
        let mut b = cfg.build(n).unwrap();
        b.load_state(&saved).unwrap();
        let mut y = x.clone();
        a.step_f32(&mut x, &g32(3)).unwrap();
        b.step_f32(&mut y, &g32(3)).unwrap();
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
}

#[test]
fn wrong_states_are_refused_and_leave_the_optimizer_untouched() {
    let n = 7;
    let adam = OptimizerConfig::from_json(r#"{"optimizer": "adam"}"#).unwrap();
    let mut src = adam.build(n).unwrap();
    let mut x = vec![1.0; n];
    src.step_f64(&mut x, &grads(n, 0)).unwrap();
    let good = src.save_state();

    let mut target = adam.build(n).unwrap();
    let mut xt = vec![2.0; n];
    target.step_f64(&mut xt, &grads(n, 1)).unwrap();
    target.step_f64(&mut xt, &grads(n, 2)).unwrap();
    let before = target.save_state();
    let mut refuse = |bytes: &[u8], what: &str| {
        let e = target.load_state(bytes).unwrap_err();
        assert!(matches!(e, OptimError::State { .. }), "{what}: {e:?}");
        assert_eq!(target.save_state(), before, "{what}: optimizer changed");
        e.to_string()
    };
    // other kind (amsgrad layout, adamw, sgd)
    for other in [
        r#"{"optimizer": "adam", "amsgrad": true}"#,
        r#"{"optimizer": "adamw"}"#,
        r#"{"optimizer": "sgd"}"#,
    ] {
        let mut o = OptimizerConfig::from_json(other).unwrap().build(n).unwrap();
        o.step_f64(&mut vec![1.0; n], &grads(n, 0)).unwrap();
        let m = refuse(&o.save_state(), other);
        assert!(m.contains("layout"), "{m}");
    }
    // other size
    let mut o = adam.build(n + 1).unwrap();
    o.step_f64(&mut vec![1.0; n + 1], &grads(n + 1, 0)).unwrap();
    assert!(refuse(&o.save_state(), "size").contains("parameters"));
    // other format version
    let mut v = good.clone();
    v[8] = 99;
    assert!(refuse(&v, "version").contains("format version 99"));
    // truncated, trailing bytes, bad magic
    refuse(&good[..good.len() - 3], "truncated");
    let mut t = good.clone();
    t.push(0);
    refuse(&t, "trailing");
    let mut m = good.clone();
    m[0] = b'X';
    refuse(&m, "magic");
    refuse(&[], "empty");
    // and the good one loads
    target.load_state(&good).unwrap();
    assert_eq!(target.save_state(), good);
}

#[test]
fn bad_steps_are_errors_that_change_nothing() {
    let n = 5;
    for cfg in all_configs() {
        let n = if cfg.optimizer == OptimizerKind::PrecondGd {
            7
        } else {
            n
        };
        let mut o = cfg.build(n).unwrap();
        let mut x = vec![0.5; n];
        o.step_f64(&mut x, &grads(n, 0)).unwrap();
        let (state0, x0) = (o.save_state(), x.clone());
        let e = o.step_f64(&mut x, &grads(n + 1, 1)).unwrap_err();
        assert!(matches!(
            e,
            OptimError::LengthMismatch { what: "grads", .. }
        ));
        let e = o.step_f64(&mut x[..n - 1], &grads(n - 1, 1)).unwrap_err();
        assert!(matches!(
            e,
            OptimError::LengthMismatch { what: "params", .. }
        ));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut g = grads(n, 1);
            g[n - 2] = bad;
            let e = o.step_f64(&mut x, &g).unwrap_err();
            assert_eq!(e, OptimError::NonFiniteGradient { index: n - 2 });
        }
        let e = o
            .step_f32(&mut vec![0.5f32; n], &vec![0.1f32; n])
            .unwrap_err();
        assert!(matches!(
            e,
            OptimError::DtypeMismatch {
                expected: "f64",
                got: "f32"
            }
        ));
        assert_eq!(o.save_state(), state0);
        assert!(x.iter().zip(&x0).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(o.step_count(), 1);
    }
}

#[test]
fn skip_policy_skips() {
    let mut c = OptimizerConfig::adam(0.1);
    c.nonfinite = NonFinitePolicy::Skip;
    let mut o = c.build(4).unwrap();
    let mut x = vec![1.0; 4];
    o.step_f64(&mut x, &[0.1, 0.2, 0.3, 0.4]).unwrap();
    let (s, xs) = (o.save_state(), x.clone());
    let out = o
        .step_f64(&mut x, &[0.1, f64::NAN, 0.3, f64::INFINITY])
        .unwrap();
    assert!(!out.applied);
    assert_eq!(out.nonfinite_index, Some(1));
    assert_eq!(out.step, 1);
    assert_eq!(o.save_state(), s);
    assert!(x.iter().zip(&xs).all(|(a, b)| a.to_bits() == b.to_bits()));
    let out = o.step_f64(&mut x, &[0.1, 0.2, 0.3, 0.4]).unwrap();
    assert!(out.applied && out.step == 2);
}

/// `"propagate"` is torch's behaviour: the step is applied as computed, NaN/Inf reach only the
/// affected coordinates (every optimizer here is elementwise), every other coordinate gets
/// bit-for-bit the update of a clean step, and the outcome names the first bad index.
#[test]
fn propagate_policy_applies_like_torch_and_reports() {
    let configs = [
        r#"{"optimizer": "adam", "lr": 0.1, "weight_decay": 0.01, "amsgrad": true}"#,
        r#"{"optimizer": "adamw", "lr": 0.1}"#,
        r#"{"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true}"#,
        r#"{"optimizer": "rmsprop", "lr": 0.01, "centered": true}"#,
        r#"{"optimizer": "adagrad", "lr": 0.1,
            "regularization": {"kind": "l1", "strength": 0.01, "space": "intrinsic", "proximal": true}}"#,
    ];
    for (n, th) in [(7usize, 0usize), (70_001, 1)] {
        for json in configs {
            let mut cp = OptimizerConfig::from_json(json).unwrap();
            cp.nonfinite = NonFinitePolicy::Propagate;
            let cr = OptimizerConfig::from_json(json).unwrap();
            let (mut op, mut or) = (cp.build(n).unwrap(), cr.build(n).unwrap());
            op.set_parallel_threshold(th);
            or.set_parallel_threshold(th);
            let mut xp: Vec<f64> = (0..n).map(|i| 1.0 + (i % 13) as f64 * 0.1).collect();
            let mut xr = xp.clone();
            let clean: Vec<f64> = (0..n).map(|i| ((i % 7) as f64 - 3.0) * 0.05).collect();
            // clean steps: the detecting pass changes no arithmetic
            for _ in 0..3 {
                let out = op.step_f64(&mut xp, &clean).unwrap();
                assert!(out.applied && out.nonfinite_index.is_none(), "{json}");
                or.step_f64(&mut xr, &clean).unwrap();
            }
            assert!(
                xp.iter().zip(&xr).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{json}"
            );
            assert_eq!(op.save_state(), or.save_state(), "{json}");
            // a step with NaN and Inf: applied, first index reported, only those coordinates hit
            let (bad1, bad2) = (n / 2 + 1, n - 2);
            let mut g = clean.clone();
            g[bad1] = f64::NAN;
            g[bad2] = f64::NEG_INFINITY;
            let out = op.step_f64(&mut xp, &g).unwrap();
            assert!(out.applied, "{json}");
            assert_eq!(out.nonfinite_index, Some(bad1), "{json}");
            assert_eq!(out.step, 4);
            assert_eq!(op.step_count(), 4);
            // the reference sees the same finite entries (zeros where the bad ones were)
            let mut gz = g.clone();
            gz[bad1] = 0.0;
            gz[bad2] = 0.0;
            or.step_f64(&mut xr, &gz).unwrap();
            for i in 0..n {
                if i == bad1 || i == bad2 {
                    assert!(!xp[i].is_finite(), "{json}: x[{i}] = {}", xp[i]);
                } else {
                    assert_eq!(xp[i].to_bits(), xr[i].to_bits(), "{json}: x[{i}]");
                }
            }
            // the default policy on the same gradient refuses and leaves everything untouched
            let (s, x0) = (or.save_state(), xr.clone());
            assert!(matches!(
                or.step_f64(&mut xr, &g),
                Err(OptimError::NonFiniteGradient { index }) if index == bad1
            ));
            assert_eq!(or.save_state(), s);
            assert!(xr.iter().zip(&x0).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
    // f32, and a dense preconditioner (its O(n²) step scans g afterwards)
    let mut c = OptimizerConfig::adam(0.1);
    c.nonfinite = NonFinitePolicy::Propagate;
    let mut o = c.build(5).unwrap();
    let mut x = vec![1.0f32; 5];
    let out = o
        .step_f32(&mut x, &[0.1, 0.2, f32::INFINITY, 0.4, f32::NAN])
        .unwrap();
    assert_eq!((out.applied, out.nonfinite_index), (true, Some(2)));
    assert!(x[2].is_nan() && x[4].is_nan() && x[0].is_finite());
    let mut c = OptimizerConfig::from_json(
        r#"{"optimizer": "precond_gd", "lr": 0.1, "nonfinite": "propagate",
            "preconditioner": {"P": [[2.0, 0.5], [0.5, 1.0]]}}"#,
    )
    .unwrap();
    assert_eq!(c.nonfinite, NonFinitePolicy::Propagate);
    let mut o = c.build(2).unwrap();
    let mut x = vec![1.0, 1.0];
    let out = o.step_f64(&mut x, &[0.5, f64::NAN]).unwrap();
    assert_eq!((out.applied, out.nonfinite_index), (true, Some(1)));
    // the policy round-trips through JSON
    c.lr = 0.2;
    let back = OptimizerConfig::from_json(&c.to_json()).unwrap();
    assert_eq!(back.nonfinite, NonFinitePolicy::Propagate);
}

#[test]
fn first_nonfinite_is_found_in_large_parallel_buffers() {
    let mut g = vec![0.5f32; 300_000];
    assert_eq!(precond_optim::kernel::first_nonfinite(&g, 1), None);
    g[123_457] = f32::NAN;
    g[250_000] = f32::INFINITY;
    assert_eq!(precond_optim::kernel::first_nonfinite(&g, 1), Some(123_457));
    assert_eq!(
        precond_optim::kernel::first_nonfinite(&g, usize::MAX),
        Some(123_457)
    );
}

#[test]
fn scan_max_over_many_blocks_finds_the_first_nonfinite_and_the_maximum() {
    // 2.5 · 10⁶ f64 = 20 MB: several 256 KiB scan blocks per parallel leaf, scanned backwards
    let n = 2_500_000;
    let mut g: Vec<f64> = (0..n).map(|i| ((i % 89) as f64 - 44.0) * 1e-3).collect();
    g[1_999_999] = -7.25;
    for th in [1, usize::MAX] {
        assert_eq!(precond_optim::kernel::scan_max(&g, th), Ok(7.25));
    }
    // the first bad index wins even when a later block (scanned earlier) also fails
    g[2_400_001] = f64::NAN;
    g[700_003] = f64::NEG_INFINITY;
    g[700_004] = f64::NAN;
    for th in [1, usize::MAX] {
        assert_eq!(precond_optim::kernel::scan_max(&g, th), Err(700_003));
    }
    let mut h: Vec<f32> = vec![0.25; n];
    h[n - 1] = f32::INFINITY;
    h[65_536] = f32::NAN; // the first element of the second block
    assert_eq!(precond_optim::kernel::scan_max(&h, 1), Err(65_536));
    h[65_536] = 0.5;
    assert_eq!(precond_optim::kernel::scan_max(&h, 1), Err(n - 1));
}

#[test]
fn reset_set_lr_and_observers() {
    let mut o = OptimizerConfig::adam(0.1).build(3).unwrap();
    let mut p = vec![0.0; 3];
    assert!(matches!(
        o.preconditioner(&mut p),
        Err(OptimError::NoPreconditionerYet { optimizer: "adam" })
    ));
    assert!(matches!(
        o.preconditioner(&mut [0.0; 2]),
        Err(OptimError::LengthMismatch { .. })
    ));
    let mut x = vec![1.0, 2.0, 3.0];
    o.step_f64(&mut x, &[0.1, -0.2, 0.3]).unwrap();
    o.preconditioner(&mut p).unwrap();
    // after one step v̂ = g², so p = 1/(|g| + eps)
    for (pi, g) in p.iter().zip([0.1f64, 0.2, 0.3]) {
        assert!((pi - 1.0 / (g + 1e-8)).abs() <= 1e-12 * pi);
    }
    assert!(o.set_lr(-1.0).is_err());
    assert!(o.set_lr(f64::NAN).is_err());
    o.set_lr(0.5).unwrap();
    assert!((o.lr() - 0.5).abs() < 1e-18);
    o.reset();
    assert_eq!(o.step_count(), 0);
    assert_eq!(o.dtype(), None);
    // f32 after reset is fine
    o.step_f32(&mut [1.0f32; 3], &[0.1f32; 3]).unwrap();
    assert_eq!(o.slot_names(), vec!["exp_avg_sq", "exp_avg"]);
    assert_eq!(o.slot::<f32>(1).map(|s| s.len()), Some(3));

    let sgd = OptimizerConfig::sgd(0.1, 0.0).build(3).unwrap();
    sgd.preconditioner(&mut p).unwrap();
    assert!(p.iter().all(|&v| (v - 1.0).abs() < 1e-18));
    let ada =
        OptimizerConfig::from_json(r#"{"optimizer": "adagrad", "initial_accumulator_value": 4.0}"#)
            .unwrap()
            .build(3)
            .unwrap();
    ada.preconditioner(&mut p).unwrap();
    assert!(p.iter().all(|&v| (v - 1.0 / (2.0 + 1e-10)).abs() < 1e-15));
}

#[test]
fn schedules_closed_forms() {
    let s = Schedule::Step {
        step_size: 3,
        gamma: 0.5,
    };
    let lrs: Vec<f64> = (0..7).map(|t| s.lr(1.0, t)).collect();
    assert_eq!(
        lrs.iter().map(|v| (v * 8.0) as i32).collect::<Vec<_>>(),
        vec![8, 8, 8, 4, 4, 4, 2]
    );
    let c = Schedule::Cosine {
        t_max: 10,
        eta_min: 0.1,
    };
    assert!(
        (c.lr(1.0, 0) - 1.0).abs() < 1e-15
            && (c.lr(1.0, 10) - 0.1).abs() < 1e-15
            && (c.lr(1.0, 5) - 0.55).abs() < 1e-15
    );
    let w = Schedule::Linear {
        start_factor: 0.25,
        end_factor: 1.0,
        total_iters: 4,
    };
    assert!(
        (w.lr(2.0, 0) - 0.5).abs() < 1e-15
            && (w.lr(2.0, 2) - 1.25).abs() < 1e-15
            && (w.lr(2.0, 100) - 2.0).abs() < 1e-15
    );
    // warm-up then cosine, driven through an optimizer: lr() follows the schedule per step
    let mut cfg = OptimizerConfig::sgd(1.0, 0.0);
    cfg.schedule = Schedule::Sequential {
        schedulers: vec![
            w,
            Schedule::Cosine {
                t_max: 8,
                eta_min: 0.0,
            },
        ],
        milestones: vec![4],
    };
    let mut o = cfg.build(1).unwrap();
    let mut x = [0.0];
    let mut used = vec![];
    for _ in 0..13 {
        used.push(o.lr());
        let before = x[0];
        let out = o.step_f64(&mut x, &[1.0]).unwrap();
        assert!(
            (before - x[0] - used.last().unwrap()).abs() < 1e-15,
            "the step used lr()"
        );
        assert_eq!(
            out.lr.to_bits(),
            used.last().unwrap().to_bits(),
            "the outcome reports the learning rate the step used"
        );
    }
    assert!(
        (used[0] - 0.25).abs() < 1e-15 && (used[4] - 1.0).abs() < 1e-15 && used[12].abs() < 1e-15
    );
}

#[test]
fn fixed_preconditioner_validation() {
    let dense = |m: Vec<f64>| {
        OptimizerConfig::precond_gd(0.1, precond_optim::FixedPreconditioner::DenseP(m))
    };
    // not symmetric, not positive definite, wrong size
    assert!(matches!(
        dense(vec![2.0, 1.0, 0.0, 2.0]).build(2),
        Err(OptimError::NotSpd { .. })
    ));
    assert!(matches!(
        dense(vec![1.0, 2.0, 2.0, 1.0]).build(2),
        Err(OptimError::NotSpd { .. })
    ));
    assert!(matches!(
        dense(vec![1.0, 0.0, 0.0]).build(2),
        Err(OptimError::LengthMismatch { .. })
    ));
    // a singular factor S
    let s = OptimizerConfig::precond_gd(
        0.1,
        precond_optim::FixedPreconditioner::DenseS(vec![1.0, 2.0, 2.0, 4.0]),
    );
    assert!(matches!(s.build(2), Err(OptimError::NotSpd { .. })));
    let d = OptimizerConfig::precond_gd(
        0.1,
        precond_optim::FixedPreconditioner::Diagonal(vec![1.0, 2.0]),
    );
    assert!(matches!(d.build(3), Err(OptimError::LengthMismatch { .. })));
    // dense P: x ← x − η P g, observable as a matrix, not as a diagonal
    let mut o = dense(vec![2.0, 1.0, 1.0, 2.0]).build(2).unwrap();
    let mut x = vec![1.0, 1.0];
    o.step_f64(&mut x, &[1.0, -1.0]).unwrap();
    assert!(
        (x[0] - 0.9).abs() < 1e-15 && (x[1] - 1.1).abs() < 1e-15,
        "{x:?}"
    );
    assert!(matches!(
        o.preconditioner(&mut [0.0; 2]),
        Err(OptimError::Unsupported(_))
    ));
    let mut p = [0.0; 4];
    o.dense_preconditioner(&mut p).unwrap();
    assert_eq!(p.map(|v| v as i32), [2, 1, 1, 2]);
    // intrinsic L1 needs S^{-1}: refused for a dense P
    let mut c = dense(vec![2.0, 1.0, 1.0, 2.0]);
    c.regularization = precond_optim::Regularization {
        kind: RegKind::L1,
        strength: 0.1,
        l1_ratio: 1.0,
        space: Space::Intrinsic,
        proximal: false,
    };
    assert!(matches!(c.build(2), Err(OptimError::Unsupported(_))));
}

/// The state allocated at the first step sits at the page offset of the parameters it updates
/// (no 4 KiB aliasing between the state's stores and the loads of `x`): for the top level and
/// for a group, wherever the parameters start in their page.
#[test]
fn first_step_state_sits_at_the_parameters_page_offset() {
    let n = 10_000;
    for k in [0usize, 1, 16, 100, 1023] {
        let mut big = vec![0.5f32; n + k];
        let x = &mut big[k..];
        let g = vec![1e-3f32; n];
        let mut o = OptimizerConfig::from_json(
            r#"{"optimizer": "sgd", "lr": 0.01, "momentum": 0.9,
                "groups": [{"start": 3000, "end": 10000, "optimizer": "adam", "lr": 0.001}]}"#,
        )
        .unwrap()
        .build(n)
        .unwrap();
        o.step(x, &g).unwrap();
        let page = |p: *const f32| p as usize % 4096;
        let names = o.slot_names();
        for (j, name) in names.iter().enumerate() {
            let s = o.slot::<f32>(j).unwrap();
            let want = if name.starts_with("groups[0]") {
                page(x[3000..].as_ptr())
            } else {
                page(x.as_ptr())
            };
            assert_eq!(page(s.as_ptr()), want, "offset {k}, slot {name}");
        }
        assert!(names.len() >= 3, "{names:?}");
    }
}
