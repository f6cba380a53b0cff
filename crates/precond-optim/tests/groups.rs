//! Parameter groups with their own optimizer and matrix shapes: "Muon on the 2-D weights, AdamW
//! on the rest" in one handle steps every group exactly as the standalone optimizers on their
//! slices; errors name the group; the JSON form round-trips; state save/load continues bit for
//! bit; Muon's observed factor reproduces its Newton–Schulz output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{
    MatrixShape, OptimError, Optimizer, OptimizerConfig, OptimizerKind, ParamGroup,
};

const MIXED: &str = r#"{"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01,
  "groups": [{"start": 0, "end": 32, "shape": [8, 4], "optimizer": "muon", "lr": 0.02},
             {"start": 32, "end": 44, "shape": [3, 4], "order": "F", "optimizer": "muon",
              "lr": 0.01, "nesterov": false, "adjust_lr_fn": "match_rms_adamw"},
             {"start": 46, "end": 50, "lr": 0.005}]}"#;
const N: usize = 52;

fn grad(k: usize, x: &[f64]) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            (1.0 + (i % 7) as f64 * 0.3) * (v - 0.1 * i as f64)
                + (((31 * k + 17 * i) % 23) as f64 - 11.0) / 16.0
        })
        .collect()
}

fn x0() -> Vec<f64> {
    (0..N).map(|i| ((i * 37 % 11) as f64 - 5.0) / 4.0).collect()
}

/// The same trajectory from standalone optimizers on the slices.
fn standalone(steps: usize) -> Vec<f64> {
    let mut x = x0();
    let mut a = OptimizerConfig::from_json(r#"{"optimizer": "muon", "lr": 0.02, "shape": [8, 4]}"#)
        .unwrap()
        .build(32)
        .unwrap();
    let mut b = OptimizerConfig::from_json(
        r#"{"optimizer": "muon", "lr": 0.01, "shape": [3, 4], "order": "F", "nesterov": false,
            "adjust_lr_fn": "match_rms_adamw"}"#,
    )
    .unwrap()
    .build(12)
    .unwrap();
    // the AdamW part: 44..46 and 50..52 at the top level's lr, 46..50 at 0.005
    let mut c = OptimizerConfig::from_json(
        r#"{"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01,
            "groups": [{"start": 2, "end": 6, "lr": 0.005}]}"#,
    )
    .unwrap()
    .build(8)
    .unwrap();
    for k in 1..=steps {
        let g = grad(k, &x);
        a.step_f64(&mut x[0..32], &g[0..32]).unwrap();
        b.step_f64(&mut x[32..44], &g[32..44]).unwrap();
        let mut tail = x[44..52].to_vec();
        c.step_f64(&mut tail, &g[44..52]).unwrap();
        x[44..52].copy_from_slice(&tail);
    }
    x
}

fn mixed(steps: usize) -> (Optimizer, Vec<f64>) {
    let mut opt = OptimizerConfig::from_json(MIXED).unwrap().build(N).unwrap();
    let mut x = x0();
    for k in 1..=steps {
        let g = grad(k, &x);
        opt.step_f64(&mut x, &g).unwrap();
    }
    (opt, x)
}

fn bits_eq(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn one_handle_steps_each_group_as_its_standalone_optimizer() {
    let (_, x) = mixed(25);
    let want = standalone(25);
    assert!(bits_eq(&x, &want), "{x:?}\n{want:?}");
}

#[test]
fn layout_names_and_state_round_trip() {
    let (opt, x) = mixed(7);
    assert_eq!(
        opt.layout(),
        "adamw:exp_avg_sq,exp_avg|groups[0]=muon(8x4)@0..32:momentum_buffer|groups[1]=muon(3x4,F)@32..44:momentum_buffer"
    );
    assert_eq!(
        opt.slot_names(),
        vec![
            "exp_avg_sq",
            "exp_avg",
            "groups[0].momentum_buffer",
            "groups[1].momentum_buffer"
        ]
    );
    // compact storage: the top level's slots hold its 8 indices
    assert_eq!(opt.slot::<f64>(0).unwrap().len(), 8);
    assert_eq!(opt.slot::<f64>(2).unwrap().len(), 32);
    let bytes = opt.save_state();
    let mut other = OptimizerConfig::from_json(MIXED).unwrap().build(N).unwrap();
    other.load_state(&bytes).unwrap();
    let (mut xa, mut xb) = (x.clone(), x.clone());
    let mut a = opt.clone();
    for k in 8..12 {
        let g = grad(k, &xa);
        a.step_f64(&mut xa, &g).unwrap();
        let g = grad(k, &xb);
        other.step_f64(&mut xb, &g).unwrap();
    }
    assert!(bits_eq(&xa, &xb));
    // a group that only changes the learning rate does not change what the state means
    let moved = MIXED.replace(r#""start": 46, "end": 50"#, r#""start": 45, "end": 50"#);
    let mut third = OptimizerConfig::from_json(&moved)
        .unwrap()
        .build(N)
        .unwrap();
    third.load_state(&bytes).unwrap();
    // a Muon group of another shape does

    let reshaped = MIXED.replace("[8, 4]", "[4, 8]");
    let mut fourth = OptimizerConfig::from_json(&reshaped)
        .unwrap()
        .build(N)
        .unwrap();
    let before = fourth.state();
    let e = fourth.load_state(&bytes).unwrap_err();
    assert!(e.to_string().contains("layout"), "{e}");
    assert_eq!(fourth.state(), before);
}

#[test]
fn json_round_trips_with_own_optimizers_and_shapes() {
    let c = OptimizerConfig::from_json(MIXED).unwrap();
    let again = OptimizerConfig::from_json(&c.to_json()).unwrap();
    assert_eq!(c, again);
    let g = &c.groups[1];
    let inner = g.optimizer.as_ref().unwrap();
    assert_eq!(inner.optimizer, OptimizerKind::Muon);
    // the group's own optimizer has Muon's defaults, not the top level's
    assert_eq!(inner.weight_decay.to_bits(), 0.1f64.to_bits());
    assert_eq!(inner.momentum.to_bits(), 0.95f64.to_bits());
    assert!(!inner.nesterov);
    assert_eq!(
        g.shape,
        Some(MatrixShape {
            rows: 3,
            cols: 4,
            order: precond_optim::MatrixOrder::ColMajor
        })
    );
}

#[test]
fn the_rust_api_builds_the_same_optimizer() {
    let mut muon = OptimizerConfig::new(OptimizerKind::Muon);
    muon.lr = 0.02;
    let mut c = OptimizerConfig::adamw(1e-3, 0.01);
    c.groups = vec![ParamGroup {
        start: 0,
        end: 32,
        shape: Some(MatrixShape::new(8, 4)),
        optimizer: Some(Box::new(muon)),
        ..Default::default()
    }];
    let j = OptimizerConfig::from_json(
        r#"{"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01,
            "groups": [{"start": 0, "end": 32, "shape": [8, 4], "optimizer": "muon", "lr": 0.02}]}"#,
    )
    .unwrap();
    assert_eq!(c, j);
    c.build(40).unwrap();
}

fn config_err(json: &str, n: usize) -> OptimError {
    match OptimizerConfig::from_json(json) {
        Err(e) => e,
        Ok(c) => c.build(n).unwrap_err(),
    }
}

#[test]
fn errors_name_the_group_and_the_key() {
    let cases: &[(&str, usize, &str)] = &[
        // a matrix optimizer without a shape
        (
            r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 8, "optimizer": "muon"}]}"#,
            10,
            "groups[0].shape",
        ),
        // rows · cols ≠ the group's length
        (
            r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 8, "shape": [3, 3], "optimizer": "muon"}]}"#,
            10,
            "groups[0].shape",
        ),
        // a group's own optimizer checks its own keys
        (
            r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 8, "shape": [2, 4], "optimizer": "muon", "momentum": 1.5}]}"#,
            10,
            "groups[0].momentum",
        ),
        (
            r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 8, "shape": [2, 4], "optimizer": "muon", "ns_steps": 100}]}"#,
            10,
            "groups[0].ns_steps",
        ),
        // a key of another optimizer
        (
            r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 8, "shape": [2, 4], "optimizer": "muon", "betas": [0.9, 0.99]}]}"#,
            10,
            "groups[0].betas",
        ),
        // top-level-only keys
        (
            r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 8, "shape": [2, 4], "optimizer": "muon", "schedule": {"kind": "constant"}}]}"#,
            10,
            "groups[0].schedule",
        ),
        // a top-level matrix optimizer needs the top-level shape
        (r#"{"optimizer": "muon"}"#, 10, "shape"),
        (r#"{"optimizer": "muon", "shape": [2, 4]}"#, 10, "shape"),
        // its groups inherit it and need shapes too
        (
            r#"{"optimizer": "muon", "shape": [2, 2], "groups": [{"start": 4, "end": 10, "lr": 0.1}]}"#,
            10,
            "groups[0].shape",
        ),
        // shapes are 2-D
        (r#"{"optimizer": "muon", "shape": [2, 2, 1]}"#, 4, "shape"),
        (r#"{"optimizer": "adam", "order": "F"}"#, 4, "order"),
        (
            r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 4, "shape": [2, 2], "order": "X"}]}"#,
            4,
            "groups[0].order",
        ),
    ];
    for (json, n, key) in cases {
        let e = config_err(json, *n);
        let got = match &e {
            OptimError::Config { key, .. } | OptimError::UnknownKey { key, .. } => key.clone(),
            other => panic!("{json}: {other:?}"),
        };
        assert_eq!(&got, key, "{json}: {e}");
    }
    // regularization is not offered by matrix optimizers
    let e = config_err(
        r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 8, "shape": [2, 4], "optimizer": "muon",
            "regularization": {"kind": "l1", "strength": 0.1, "space": "original"}}]}"#,
        10,
    );
    assert!(
        matches!(e, OptimError::Unsupported(ref m) if m.contains("groups[0]")),
        "{e}"
    );
}

#[test]
fn observation_of_mixed_optimizers() {
    let (opt, _) = mixed(3);
    let mut p = vec![0.0; N];
    let e = opt.preconditioner(&mut p).unwrap_err();
    assert!(
        e.to_string().contains("matrix_preconditioner(Some(0))"),
        "{e}"
    );
    let m = opt.matrix_preconditioner(Some(0)).unwrap();
    assert_eq!((m.rows, m.cols, m.blocks.len()), (8, 4, 1));
    // 8 × 4 is tall: Newton–Schulz runs on the transpose, the factor acts from the right
    assert!(m.blocks[0].left.is_none());
    assert_eq!(m.blocks[0].right.as_ref().unwrap().len(), 16);
    let m = opt.matrix_preconditioner(Some(1)).unwrap();
    assert_eq!(m.blocks[0].left.as_ref().unwrap().len(), 9);
    let e = opt.matrix_preconditioner(Some(2)).unwrap_err();
    assert!(
        matches!(e, OptimError::Config { ref key, .. } if key == "groups[2]"),
        "{e}"
    );
    let fresh = OptimizerConfig::from_json(MIXED).unwrap().build(N).unwrap();
    assert!(matches!(
        fresh.matrix_preconditioner(Some(0)),
        Err(OptimError::NoPreconditionerYet { .. })
    ));
}

/// Newton–Schulz written out independently (f64, plain loops, row-major `p × q` with `p ≤ q`).
fn ns_reference(u: &[f64], p: usize, q: usize, coef: [f64; 3], steps: usize, eps: f64) -> Vec<f64> {
    let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt().max(eps);
    let mut y: Vec<f64> = u.iter().map(|v| v / norm).collect();
    for _ in 0..steps {
        let mut a = vec![0.0; p * p];
        for i in 0..p {
            for j in 0..p {
                a[i * p + j] = (0..q).map(|t| y[i * q + t] * y[j * q + t]).sum();
            }
        }
        let mut b = vec![0.0; p * p];
        for i in 0..p {
            for j in 0..p {
                let a2: f64 = (0..p).map(|t| a[i * p + t] * a[t * p + j]).sum();
                b[i * p + j] = coef[1] * a[i * p + j] + coef[2] * a2;
            }
        }
        let mut next = vec![0.0; p * q];
        for i in 0..p {
            for j in 0..q {
                next[i * q + j] = coef[0] * y[i * q + j]
                    + (0..p).map(|t| b[i * p + t] * y[t * q + j]).sum::<f64>();
            }
        }
        y = next;
    }
    y
}

#[test]
fn muons_observed_factor_reproduces_newton_schulz_and_converges_to_the_inverse_root() {
    // wide 3 × 5: the factor acts from the left, NS(B) = F·B
    for (coef, steps) in [([3.4445, -4.7750, 2.0315], 5u32), ([1.5, -0.5, 0.0], 60)] {
        let mut c =
            OptimizerConfig::from_json(r#"{"optimizer": "muon", "shape": [3, 5]}"#).unwrap();
        c.ns_coefficients = coef;
        c.ns_steps = steps;
        let mut opt = c.build(15).unwrap();
        let mut x = vec![0.0; 15];
        for k in 1..=4 {
            let g: Vec<f64> = (0..15)
                .map(|i| ((i * 7 + k * 3) % 11) as f64 - 5.0 + 0.3 * (i / 5) as f64)
                .collect();
            opt.step_f64(&mut x, &g).unwrap();
        }
        let b = opt.slot::<f64>(0).unwrap().to_vec();
        let f = opt.matrix_preconditioner(None).unwrap().blocks[0]
            .left
            .clone()
            .unwrap();
        let fb: Vec<f64> = (0..3)
            .flat_map(|i| (0..5).map(move |j| (i, j)))
            .map(|(i, j)| (0..3).map(|t| f[i * 3 + t] * b[t * 5 + j]).sum())
            .collect();
        let ns = ns_reference(&b, 3, 5, coef, steps as usize, 1e-7);
        let err = fb
            .iter()
            .zip(&ns)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "F·B vs NS(B): {err:e}");
        if steps == 60 {
            // the cubic iteration converges: F = (B Bᵀ)^{-1/2}, F·B has orthonormal rows
            for i in 0..3 {
                for j in 0..3 {
                    let d: f64 = (0..5).map(|t| fb[i * 5 + t] * fb[j * 5 + t]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((d - want).abs() < 1e-12, "({i},{j}) {d}");
                }
            }
        }
    }
}

#[test]
fn muons_factor_of_a_rank_deficient_buffer_is_finite_and_zero_on_the_null_space() {
    // rank-1 gradients on a wide 3 × 5 matrix: B B^T has a 2-D null space
    let mut c = OptimizerConfig::from_json(r#"{"optimizer": "muon", "shape": [3, 5]}"#).unwrap();
    c.ns_coefficients = [1.5, -0.5, 0.0];
    c.ns_steps = 80;
    let mut opt = c.build(15).unwrap();
    let u = [1.0, -2.0, 0.5];
    let v = [0.3, 1.0, -1.0, 2.0, 0.7];
    let mut x = vec![0.0; 15];
    for k in 1..=3 {
        let g: Vec<f64> = (0..15).map(|p| k as f64 * u[p / 5] * v[p % 5]).collect();
        opt.step_f64(&mut x, &g).unwrap();
    }
    let f = opt.matrix_preconditioner(None).unwrap().blocks[0]
        .left
        .clone()
        .unwrap();
    assert!(f.iter().all(|v| v.is_finite()), "{f:?}");
    // F·w = 0 for w ⟂ u
    let w = [2.0, 1.0, 0.0];
    for i in 0..3 {
        let fw: f64 = (0..3).map(|t| f[i * 3 + t] * w[t]).sum();
        assert!(fw.abs() < 1e-12, "row {i}: {fw}");
    }
    // on u: the cubic iteration's limit, (B Bᵀ)^{-1/2} u = u / ‖B‖_F for B = β u vᵀ
    let b = opt.slot::<f64>(0).unwrap().to_vec();
    let bnorm2: f64 = b.iter().map(|x| x * x).sum();
    for i in 0..3 {
        let fu: f64 = (0..3).map(|t| f[i * 3 + t] * u[t]).sum();
        let want = u[i] / bnorm2.sqrt();
        assert!(
            (fu - want).abs() < 1e-12 * want.abs().max(1.0),
            "{fu} vs {want}"
        );
    }
}

#[test]
fn groups_inheriting_a_matrix_optimizer_keep_their_own_overrides() {
    // a top-level matrix optimizer over two matrices; the second overrides lr and weight_decay
    for kind in ["muon", "shampoo", "soap"] {
        let mut opt = OptimizerConfig::from_json(&format!(
            r#"{{"optimizer": "{kind}", "lr": 0.02, "weight_decay": 0.05,
                "groups": [{{"start": 0, "end": 6, "shape": [2, 3]}},
                           {{"start": 6, "end": 18, "shape": [4, 3], "lr": 0.01, "weight_decay": 0.0}}]}}"#
        ))
        .unwrap()
        .build(18)
        .unwrap();
        let mut a = OptimizerConfig::from_json(&format!(
            r#"{{"optimizer": "{kind}", "lr": 0.02, "weight_decay": 0.05, "shape": [2, 3]}}"#
        ))
        .unwrap()
        .build(6)
        .unwrap();
        let mut b = OptimizerConfig::from_json(&format!(
            r#"{{"optimizer": "{kind}", "lr": 0.01, "weight_decay": 0.0, "shape": [4, 3]}}"#
        ))
        .unwrap()
        .build(12)
        .unwrap();
        let mut x: Vec<f64> = (0..18).map(|i| (i as f64 - 8.0) / 5.0).collect();
        let mut y = x.clone();
        for k in 1..=6 {
            let g: Vec<f64> = (0..18)
                .map(|i| x[i] + (((31 * k + 17 * i) % 23) as f64 - 11.0) / 16.0)
                .collect();
            opt.step_f64(&mut x, &g).unwrap();
            let g: Vec<f64> = (0..18)
                .map(|i| y[i] + (((31 * k + 17 * i) % 23) as f64 - 11.0) / 16.0)
                .collect();
            a.step_f64(&mut y[..6], &g[..6]).unwrap();
            b.step_f64(&mut y[6..], &g[6..]).unwrap();
        }
        assert!(bits_eq(&x, &y), "{kind}: {x:?}\n{y:?}");
    }
}

#[test]
fn the_schedule_scales_every_part_and_skip_leaves_them_all_untouched() {
    // cosine schedule on AdamW + a Shampoo group + a SOAP group + a Muon group, against the
    // standalone optimizers with the same schedule
    let sched = r#""schedule": {"kind": "cosine", "T_max": 7, "eta_min": 0.0}"#;
    let mixed = format!(
        r#"{{"optimizer": "adamw", "lr": 1e-2, {sched}, "nonfinite": "skip",
            "groups": [{{"start": 0, "end": 12, "shape": [3, 4], "optimizer": "muon", "lr": 0.02}},
                       {{"start": 12, "end": 24, "shape": [4, 3], "optimizer": "shampoo", "lr": 0.01,
                         "epsilon": 1e-6, "grafting": {{"type": "adam"}}}},
                       {{"start": 24, "end": 33, "shape": [3, 3], "optimizer": "soap", "lr": 0.01,
                         "precondition_frequency": 2}}]}}"#
    );
    let mut opt = OptimizerConfig::from_json(&mixed)
        .unwrap()
        .build(37)
        .unwrap();
    let alone = [
        (
            format!(r#"{{"optimizer": "muon", "lr": 0.02, "shape": [3, 4], {sched}}}"#),
            0,
            12,
        ),
        (
            format!(
                r#"{{"optimizer": "shampoo", "lr": 0.01, "shape": [4, 3], "epsilon": 1e-6,
                    "grafting": {{"type": "adam"}}, {sched}}}"#
            ),
            12,
            24,
        ),
        (
            format!(
                r#"{{"optimizer": "soap", "lr": 0.01, "shape": [3, 3], "precondition_frequency": 2, {sched}}}"#
            ),
            24,
            33,
        ),
        (
            format!(r#"{{"optimizer": "adamw", "lr": 1e-2, {sched}}}"#),
            33,
            37,
        ),
    ];
    let mut parts: Vec<(Optimizer, usize, usize)> = alone
        .iter()
        .map(|(c, a, b)| {
            (
                OptimizerConfig::from_json(c).unwrap().build(b - a).unwrap(),
                *a,
                *b,
            )
        })
        .collect();
    let mut x: Vec<f64> = (0..37).map(|i| ((i * 5 % 13) as f64 - 6.0) / 7.0).collect();
    let mut y = x.clone();
    for k in 1..=12 {
        let g = grad(k, &x);
        // a non-finite gradient is skipped by every part at once
        if k == 5 {
            let mut bad = g.clone();
            bad[30] = f64::NAN;
            let before = opt.state();
            let out = opt.step_f64(&mut x, &bad).unwrap();
            assert!(!out.applied && out.nonfinite_index == Some(30));
            assert_eq!(opt.state(), before);
        }
        opt.step_f64(&mut x, &g).unwrap();
        let g = grad(k, &y);
        for (o, a, b) in &mut parts {
            o.step_f64(&mut y[*a..*b], &g[*a..*b]).unwrap();
        }
    }
    assert!(bits_eq(&x, &y), "{x:?}\n{y:?}");
}
