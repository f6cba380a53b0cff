//! Shampoo (DistributedShampoo semantics, `tests/fixtures/matrix_reference.md` §2) beyond the
//! fixtures: the closed form of the first step against a faer SVD, the observed roots against an
//! eigendecomposition of the observed factors and against the step actually taken, save/load
//! mid-run (bit-identical continuation in f64 and f32), f32 against f64, a Shampoo group inside
//! an AdamW config, the config errors, and a failing root computation (kept root, counter).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use faer::{Mat, MatRef, Side};
use precond_optim::{OptimError, Optimizer, OptimizerConfig, OptimizerState, StepFloat};
use serde_json::{Value, json};

/// Deterministic values in `[-1, 1)` (a 64-bit LCG).
fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn build(cfg: Value, n: usize) -> Optimizer {
    OptimizerConfig::from_value(&cfg)
        .expect("config parses")
        .build(n)
        .expect("optimizer builds")
}

/// Entry `t` of the row-major `d × d` identity.
fn eye(t: usize, d: usize) -> f64 {
    if t / d == t % d { 1.0 } else { 0.0 }
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

/// Storage index of the row-major index `p` of an `m × n` matrix.
fn at(p: usize, m: usize, n: usize, col_major: bool) -> usize {
    if col_major { (p % n) * m + p / n } else { p }
}

/// `U diag(σ/√(σ²+ε)) Vᵀ` of the row-major `m × n` block `g` (thin SVD by faer).
fn closed_form_direction(g: &[f64], m: usize, n: usize, eps: f64) -> Mat<f64> {
    let gm = MatRef::from_row_major_slice(g, m, n);
    let svd = gm.thin_svd().expect("svd converges");
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    Mat::from_fn(m, n, |i, j| {
        (0..s.nrows())
            .map(|t| u[(i, t)] * (s[t] / (s[t] * s[t] + eps).sqrt()) * v[(j, t)])
            .sum()
    })
}

#[test]
fn first_step_is_the_closed_form_of_the_svd() {
    // (rows, cols, max_preconditioner_dim, epsilon)
    for &(m, n, b, eps) in &[
        (6, 4, 1024, 4.0),
        (4, 6, 1024, 1e-3),
        (5, 5, 1024, 0.5),
        (9, 6, 4, 0.25),
        (1, 7, 1024, 1e-2),
        // factors from 128 on: a block's two roots are computed at once (two workspaces of
        // one size, or one workspace of each size), also over several blocks
        (128, 128, 1024, 0.5),
        (130, 128, 1024, 0.5),
        (300, 140, 150, 0.25),
    ] {
        for col_major in [false, true] {
            let lr = 0.1;
            let g = values(7 + m as u64, m * n);
            let x0 = values(11 + n as u64, m * n);
            let mut opt = build(
                json!({"optimizer": "shampoo", "shape": [m, n], "order": if col_major {"F"} else {"C"},
                       "lr": lr, "betas": [0.0, 1.0], "epsilon": eps,
                       "max_preconditioner_dim": b, "precondition_frequency": 1,
                       "start_preconditioning_step": 1, "grafting": {"type": "none"}}),
                m * n,
            );
            let mut x = vec![0.0; m * n];
            let mut gs = vec![0.0; m * n];
            for p in 0..m * n {
                x[at(p, m, n, col_major)] = x0[p];
                gs[at(p, m, n, col_major)] = g[p];
            }
            opt.step(&mut x, &gs).unwrap();
            // per block: the block's own SVD
            let mut want = x0.clone();
            for r0 in (0..m).step_by(b) {
                for c0 in (0..n).step_by(b) {
                    let (p, q) = (b.min(m - r0), b.min(n - c0));
                    let blk: Vec<f64> = (0..p * q)
                        .map(|t| g[(r0 + t / q) * n + c0 + t % q])
                        .collect();
                    let d = closed_form_direction(&blk, p, q, eps);
                    for i in 0..p {
                        for j in 0..q {
                            want[(r0 + i) * n + c0 + j] -= lr * d[(i, j)];
                        }
                    }
                }
            }
            let got: Vec<f64> = (0..m * n).map(|p| x[at(p, m, n, col_major)]).collect();
            // eigenvectors of the factors vs singular vectors: a few hundred ulps of |X|
            let err = max_diff(&got, &want);
            assert!(
                err <= 1e3 * f64::EPSILON * max_abs(&want),
                "{m}x{n} b={b} eps={eps} col_major={col_major}: error {err:e}"
            );
        }
    }
}

/// `(A/bc + εI)^{-1/4}` by faer's symmetric eigendecomposition with DistributedShampoo's shift.
fn reference_root(a: &[f64], d: usize, bc: f64, eps: f64) -> Mat<f64> {
    let am = Mat::from_fn(d, d, |i, j| {
        a[i * d + j] / bc + if i == j { eps } else { 0.0 }
    });
    let e = am.self_adjoint_eigen(Side::Lower).expect("eigh converges");
    let (q, s) = (e.U(), e.S().column_vector());
    let lmin = s[0];
    let lam: Vec<f64> = (0..d)
        .map(|t| if lmin < eps { s[t] - lmin + eps } else { s[t] })
        .collect();
    Mat::from_fn(d, d, |i, j| {
        (0..d)
            .map(|t| q[(i, t)] * lam[t].powf(-0.25) * q[(j, t)])
            .sum()
    })
}

#[test]
fn observed_roots_are_the_inverse_roots_of_the_observed_factors_and_drive_the_step() {
    let (m, n, lr, eps, b2) = (5, 3, 0.05, 1e-4, 0.9f64);
    let mut opt = build(
        json!({"optimizer": "shampoo", "shape": [m, n], "lr": lr, "betas": [0.0, b2],
               "epsilon": eps, "precondition_frequency": 1, "start_preconditioning_step": 3}),
        m * n,
    );
    assert!(matches!(
        opt.matrix_preconditioner(None),
        Err(OptimError::NoPreconditionerYet { .. })
    ));
    let mut x = values(3, m * n);
    for k in 1..=5u64 {
        let g = values(100 + k, m * n);
        let before = x.clone();
        opt.step(&mut x, &g).unwrap();
        let pc = opt.matrix_preconditioner(None).unwrap();
        assert_eq!(pc.blocks.len(), 1);
        let blk = &pc.blocks[0];
        let (left, right) = (blk.left.as_ref().unwrap(), blk.right.as_ref().unwrap());
        let (lf, rf) = (
            blk.left_factor.as_ref().unwrap(),
            blk.right_factor.as_ref().unwrap(),
        );
        if k < 3 {
            // before start_preconditioning_step: identity roots, the step is −lr·G
            for (root, d) in [(left, m), (right, n)] {
                for (t, &v) in root.iter().enumerate() {
                    assert_eq!(v.to_bits(), eye(t, d).to_bits(), "k={k}");
                }
            }
        } else {
            let bc = 1.0 - b2.powi(k as i32);
            for (root, fac, d) in [(left, lf, m), (right, rf, n)] {
                let want = reference_root(fac, d, bc, eps);
                let scale = want.norm_max();
                for i in 0..d {
                    for j in 0..d {
                        let e = (root[i * d + j] - want[(i, j)]).abs();
                        assert!(e <= 1e3 * f64::EPSILON * scale, "k={k}: root error {e:e}");
                    }
                }
            }
        }
        // x_k − x_{k−1} = −lr · L̃ G R̃ with the observed roots (β₁ = 0: Ḡ = G)
        let l = MatRef::from_row_major_slice(left, m, m);
        let r = MatRef::from_row_major_slice(right, n, n);
        let gm = MatRef::from_row_major_slice(&g, m, n);
        let d = l * gm * r;
        let step: Vec<f64> = x.iter().zip(&before).map(|(a, b)| a - b).collect();
        let want: Vec<f64> = (0..m * n).map(|p| -lr * d[(p / n, p % n)]).collect();
        let err = max_diff(&step, &want);
        assert!(
            err <= 1e2 * f64::EPSILON * max_abs(&before),
            "k={k}: step error {err:e}"
        );
    }
}

/// A configuration that uses every piece of state: filtered gradient, Adam grafting, momentum,
/// blocks, stale roots, coupled decay.
fn busy_config(coupled: bool) -> Value {
    json!({"optimizer": "shampoo", "shape": [7, 5], "lr": 0.03, "betas": [0.9, 0.99],
           "epsilon": 1e-6, "momentum": 0.5, "weight_decay": 0.01,
           "use_decoupled_weight_decay": !coupled, "max_preconditioner_dim": 4,
           "precondition_frequency": 3, "start_preconditioning_step": 3,
           "grafting": {"type": "adam", "beta2": 0.999, "epsilon": 1e-8}})
}

fn grad<T: StepFloat>(x: &[T], k: u64) -> Vec<T> {
    let c = values(500 + k, x.len());
    x.iter()
        .zip(&c)
        .enumerate()
        .map(|(i, (&xi, &ci))| T::from_f64((1.0 + i as f64 / 10.0) * (xi.to_f64() - ci)))
        .collect()
}

fn save_load_continues<T: StepFloat>() {
    for coupled in [false, true] {
        let n = 35;
        let mut a = build(busy_config(coupled), n);
        let mut x: Vec<T> = values(9, n).into_iter().map(T::from_f64).collect();
        for k in 1..=4 {
            let g = grad(&x, k);
            a.step(&mut x, &g).unwrap();
        }
        let bytes = a.save_state();
        let mut b = build(busy_config(coupled), n);
        b.load_state(&bytes).unwrap();
        let mut y = x.clone();
        for k in 5..=10 {
            let g = grad(&x, k);
            a.step(&mut x, &g).unwrap();
            let g = grad(&y, k);
            b.step(&mut y, &g).unwrap();
        }
        assert!(
            x.iter()
                .zip(&y)
                .all(|(p, q)| p.to_f64().to_bits() == q.to_f64().to_bits()),
            "coupled={coupled}: the loaded run differs"
        );
        assert_eq!(a.state(), b.state());
    }
}

#[test]
fn save_load_mid_run_continues_bit_identically_f64() {
    save_load_continues::<f64>();
}

#[test]
fn save_load_mid_run_continues_bit_identically_f32() {
    save_load_continues::<f32>();
}

#[test]
fn f32_run_tracks_the_f64_run() {
    let n = 35;
    let mut a = build(busy_config(false), n);
    let mut b = build(busy_config(false), n);
    let mut x64 = values(9, n);
    let mut x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    for k in 1..=6 {
        let g64 = grad(&x64, k);
        a.step(&mut x64, &g64).unwrap();
        // the f32 run sees the f64 gradient rounded (the same problem)
        let g32: Vec<f32> = g64.iter().map(|&v| v as f32).collect();
        b.step(&mut x32, &g32).unwrap();
        let back: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
        let err = max_diff(&back, &x64);
        // rounding of f32 through ≤ 6 steps of a well-conditioned update (ε = 1e-6 bounds the
        // roots): a few hundred f32 ulps of |x|
        let tol = 300.0 * f64::from(f32::EPSILON) * max_abs(&x64);
        assert!(err <= tol, "step {k}: |x32 − x64| = {err:e} > {tol:e}");
        // resynchronise the iterate: each step is compared from the same point
        x32 = x64.iter().map(|&v| v as f32).collect();
    }
}

#[test]
fn shampoo_group_inside_adamw_steps_as_the_standalone_optimizer() {
    let own = json!({"lr": 0.05, "betas": [0.9, 0.999], "epsilon": 1e-8, "momentum": 0.3,
                     "weight_decay": 0.02, "max_preconditioner_dim": 4,
                     "precondition_frequency": 2, "start_preconditioning_step": 2,
                     "grafting": {"type": "rmsprop", "beta2": 0.99, "epsilon": 1e-8}});
    let mut group = own.clone();
    group["start"] = json!(5);
    group["end"] = json!(35);
    group["shape"] = json!([6, 5]);
    group["order"] = json!("F");
    group["optimizer"] = json!("shampoo");
    let mut mixed = build(
        json!({"optimizer": "adamw", "lr": 1e-3, "groups": [group]}),
        40,
    );
    let mut alone_cfg = own.clone();
    alone_cfg["optimizer"] = json!("shampoo");
    alone_cfg["shape"] = json!([6, 5]);
    alone_cfg["order"] = json!("F");
    let mut alone = build(alone_cfg, 30);
    let mut x = values(21, 40);
    let mut y = x[5..35].to_vec();
    for k in 1..=7 {
        let g = grad(&x, k);
        mixed.step(&mut x, &g).unwrap();
        alone.step(&mut y, &g[5..35]).unwrap();
        assert!(
            x[5..35]
                .iter()
                .zip(&y)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "step {k}: the group differs from the standalone optimizer"
        );
    }
    let pg = mixed.matrix_preconditioner(Some(0)).unwrap();
    let pa = alone.matrix_preconditioner(None).unwrap();
    assert_eq!(pg, pa);
}

fn config_error(v: Value) -> (String, String) {
    match OptimizerConfig::from_value(&v).and_then(|c| c.build(6).map(|_| ())) {
        Err(OptimError::Config { key, message }) => (key, message),
        Err(OptimError::UnknownKey { key, message }) => (key, message),
        other => panic!("{v}: expected a config error, got {other:?}"),
    }
}

#[test]
fn bad_values_name_their_key() {
    let base = json!({"optimizer": "shampoo", "shape": [2, 3]});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"betas": [1.0, 0.9]}), "betas"),
        (json!({"betas": [-0.1, 0.9]}), "betas"),
        (json!({"betas": [0.9, 1.5]}), "betas"),
        (json!({"epsilon": 0.0}), "epsilon"),
        (json!({"epsilon": -1e-12}), "epsilon"),
        (json!({"momentum": 1.0}), "momentum"),
        (json!({"weight_decay": -0.1}), "weight_decay"),
        (json!({"lr": -1.0}), "lr"),
        (
            json!({"max_preconditioner_dim": 0}),
            "max_preconditioner_dim",
        ),
        (
            json!({"precondition_frequency": 0}),
            "precondition_frequency",
        ),
        (
            json!({"start_preconditioning_step": -2}),
            "start_preconditioning_step",
        ),
        (
            json!({"start_preconditioning_step": 2, "precondition_frequency": 3}),
            "start_preconditioning_step",
        ),
        (
            json!({"grafting": {"type": "adam", "beta2": 1.0}}),
            "grafting.beta2",
        ),
        (
            json!({"grafting": {"type": "rmsprop", "beta2": 0.0}}),
            "grafting.beta2",
        ),
        (
            json!({"grafting": {"type": "adagrad", "epsilon": 0.0}}),
            "grafting.epsilon",
        ),
        (json!({"grafting": {"type": "newton"}}), "grafting.type"),
        (
            json!({"grafting": {"type": "adam", "beta1": 0.9}}),
            "grafting.beta1",
        ),
        (json!({"eps": 1e-8}), "eps"),
        (json!({"shape": [3, 3]}), "shape"),
    ];
    for (extra, key) in cases {
        let mut v = base.clone();
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        let (got, msg) = config_error(v.clone());
        assert_eq!(got, key, "{v}: {msg}");
    }
    // inside a group with its own optimizer, under groups[i].
    let (key, _) = config_error(json!({"optimizer": "adamw", "groups": [
        {"start": 0, "end": 6, "shape": [2, 3], "optimizer": "shampoo", "precondition_frequency": 0}
    ]}));
    assert_eq!(key, "groups[0].precondition_frequency");
    let (key, _) = config_error(json!({"optimizer": "adamw", "groups": [
        {"start": 0, "end": 6, "shape": [2, 3], "optimizer": "shampoo",
         "grafting": {"type": "adam", "beta2": 2.0}}
    ]}));
    assert_eq!(key, "groups[0].grafting.beta2");
    // a Shampoo group without a shape
    let (key, _) = config_error(json!({"optimizer": "adamw", "groups": [
        {"start": 0, "end": 6, "optimizer": "shampoo"}
    ]}));
    assert_eq!(key, "groups[0].shape");
}

/// The index of the state array `name` in the optimizer's slot order.
fn slot_index(opt: &Optimizer, name: &str) -> usize {
    opt.slot_names()
        .iter()
        .position(|s| s.ends_with(name))
        .unwrap_or_else(|| panic!("no slot {name} in {:?}", opt.slot_names()))
}

#[test]
fn a_failing_root_keeps_the_last_good_root_and_is_counted() {
    let (m, n) = (4, 3);
    let cfg = json!({"optimizer": "shampoo", "shape": [m, n], "lr": 0.1, "betas": [0.9, 1.0],
                     "epsilon": 1e-6, "precondition_frequency": 1, "start_preconditioning_step": 1,
                     "grafting": {"type": "sgd"}});
    let mut opt = build(cfg.clone(), m * n);
    let mut x = values(1, m * n);
    for k in 1..=2 {
        let g = grad(&x, k);
        opt.step(&mut x, &g).unwrap();
    }
    let good = opt.matrix_preconditioner(None).unwrap().blocks[0].clone();
    // a huge but finite left factor: its eigenvalues overflow f64, the eigensolver refuses it
    let mut st: OptimizerState = opt.state();
    let lf = slot_index(&opt, "left_factor");
    let fails = slot_index(&opt, "root_failures");
    assert_eq!(st.slots[fails], vec![0.0]);
    st.slots[lf] = vec![1e308; m * m];
    opt.load(&st).unwrap();
    for k in 3..=4 {
        let g = grad(&x, k);
        opt.step(&mut x, &g).unwrap();
        assert!(
            x.iter().all(|v| v.is_finite()),
            "step {k}: non-finite parameters"
        );
        let now = opt.matrix_preconditioner(None).unwrap().blocks[0].clone();
        assert_eq!(now.left, good.left, "step {k}: the left root changed");
        assert_ne!(
            now.right, good.right,
            "step {k}: the right root was not recomputed"
        );
        assert_eq!(opt.state().slots[fails], vec![(k - 2) as f64]);
    }
    // the first root computation fails: the last good root is the identity
    let mut y = values(2, m * n);
    let g = grad(&y, 1);
    let mut probe = build(cfg.clone(), m * n);
    probe.step(&mut y.clone(), &g).unwrap();
    let mut st = probe.state();
    st.step = 0;
    st.slots = st.slots.iter().map(|s| vec![0.0; s.len()]).collect();
    st.slots[lf] = vec![1e308; m * m];
    let mut fresh = build(cfg, m * n);
    fresh.load(&st).unwrap();
    fresh.step(&mut y, &g).unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
    let p = fresh.matrix_preconditioner(None).unwrap();
    let left = p.blocks[0].left.as_ref().unwrap();
    for (t, &v) in left.iter().enumerate() {
        assert_eq!(v.to_bits(), eye(t, m).to_bits());
    }
    assert_eq!(fresh.state().slots[fails], vec![1.0]);
}

#[test]
fn maximize_is_the_step_on_the_negated_gradient() {
    for coupled in [false, true] {
        let mut up = busy_config(coupled);
        up["maximize"] = json!(true);
        let mut a = build(up, 35);
        let mut b = build(busy_config(coupled), 35);
        let mut x = values(4, 35);
        let mut y = x.clone();
        for k in 1..=7 {
            let g = grad(&x, k);
            a.step(&mut x, &g).unwrap();
            let neg: Vec<f64> = g.iter().map(|v| -v).collect();
            b.step(&mut y, &neg).unwrap();
            assert!(
                x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "coupled={coupled} step {k}"
            );
        }
    }
}
