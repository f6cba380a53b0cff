//! SOAP (`kinds/soap.rs`) against closed forms and its own invariants: the first Adam step in
//! the eigenbasis of the first factors (eigenvectors from faer's `self_adjoint_eigen`, not the
//! crate's eigensolver), bit-identical continuation after save/load, `f32` against `f64`, a SOAP
//! group inside an AdamW configuration, configuration errors naming the key, orthogonal bases
//! for rank-deficient factors, and failed basis computations that keep the old basis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use faer::{Mat, MatRef, Side};
use precond_optim::{OptimError, Optimizer, OptimizerConfig, StepFloat};

/// A deterministic pseudo-random value in `[-1, 1)`.
fn rnd(seed: u64, i: usize) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((i as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z ^= z >> 31;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 29;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

fn soap(json: &str, n: usize) -> Optimizer {
    OptimizerConfig::from_json(json).unwrap().build(n).unwrap()
}

/// The gradient of step `k` (row-major), an exactly representable `f32` value.
fn grad(k: usize, i: usize) -> f64 {
    f64::from(rnd(k as u64 * 7 + 3, i) as f32)
}

fn run<T: StepFloat>(opt: &mut Optimizer, x: &mut [T], from: usize, to: usize) {
    let mut g = vec![T::ZERO; x.len()];
    for k in from..=to {
        for (i, gi) in g.iter_mut().enumerate() {
            *gi = T::from_f64(grad(k, i) + 0.1 * x[i].to_f64());
        }
        opt.step(x, &g).unwrap();
    }
}

/// Eigenvectors of a symmetric matrix by descending eigenvalue (faer's own eigensolver).
fn eig_desc(a: MatRef<'_, f64>) -> Mat<f64> {
    let e = a.self_adjoint_eigen(Side::Lower).unwrap();
    let u = e.U();
    let n = a.nrows();
    Mat::from_fn(n, n, |i, j| u[(i, n - 1 - j)])
}

#[test]
fn second_step_is_adams_first_step_in_the_first_eigenbasis() {
    let (m, n) = (5usize, 4usize);
    let (lr, b1, b2, eps) = (0.02, 0.9, 0.95, 1e-8);
    let json = format!(
        r#"{{"optimizer": "soap", "lr": {lr}, "betas": [{b1}, {b2}], "eps": {eps},
            "weight_decay": 0.0, "precondition_frequency": 1000, "shape": [{m}, {n}]}}"#
    );
    let mut opt = soap(&json, m * n);
    let x0: Vec<f64> = (0..m * n).map(|i| rnd(1, i)).collect();
    let g1: Vec<f64> = (0..m * n).map(|i| rnd(2, i)).collect();
    let g2: Vec<f64> = (0..m * n).map(|i| rnd(3, i)).collect();
    let mut x = x0.clone();
    opt.step_f64(&mut x, &g1).unwrap();
    assert_eq!(x, x0, "the first SOAP step updates no parameter");
    opt.step_f64(&mut x, &g2).unwrap();

    // truth: Q from eigh of (1 − β₂) G₁G₁ᵀ and (1 − β₂) G₁ᵀG₁, then one Adam step on Q_Lᵀ G₂ Q_R
    let g1m = MatRef::from_row_major_slice(&g1, m, n);
    let g2m = MatRef::from_row_major_slice(&g2, m, n);
    let ql = eig_desc((g1m * g1m.transpose() * (1.0 - b2)).as_ref());
    let qr = eig_desc((g1m.transpose() * g1m * (1.0 - b2)).as_ref());
    let gp = ql.transpose() * g2m * &qr;
    let step = lr * (1.0 - b2).sqrt() / (1.0 - b1);
    let d = Mat::from_fn(m, n, |i, j| {
        let (mm, v) = (
            (1.0 - b1) * gp[(i, j)],
            (1.0 - b2) * gp[(i, j)] * gp[(i, j)],
        );
        mm / (v.sqrt() + eps)
    });
    let upd = &ql * d * qr.transpose();
    let mut worst = 0.0f64;
    for i in 0..m {
        for j in 0..n {
            let want = x0[i * n + j] - step * upd[(i, j)];
            worst = worst.max((x[i * n + j] - want).abs());
        }
    }
    // ‖update‖ ≈ step·sqrt(mn); eigenvector sensitivity of a random 5×4 factor is modest
    eprintln!("closed form: max error {worst:e}");
    assert!(worst <= 100.0 * f64::EPSILON * step, "max error {worst:e}");

    // the observed preconditioner: factors, bases and the diagonal of this step
    let p = opt.matrix_preconditioner(None).unwrap();
    let b = &p.blocks[0];
    let c2 = (1.0 - b2).sqrt();
    for i in 0..m {
        for j in 0..n {
            let v = (1.0 - b2) * gp[(i, j)] * gp[(i, j)];
            let want = c2 / (v.sqrt() + eps);
            let got = b.diagonal.as_ref().unwrap()[i * n + j];
            assert!(
                (got - want).abs() <= 1e-9 * want,
                "diagonal[{i},{j}] {got} vs {want}"
            );
        }
    }
    let lf = b.left_factor.as_ref().unwrap();
    let want_lf = (g1m * g1m.transpose()) * (1.0 - b2) * b2 + (g2m * g2m.transpose()) * (1.0 - b2);
    for i in 0..m {
        for j in 0..m {
            assert!((lf[i * m + j] - want_lf[(i, j)]).abs() <= 64.0 * f64::EPSILON);
        }
    }
    let lb = b.left_basis.as_ref().unwrap();
    for i in 0..m {
        for j in 0..m {
            // the basis is not refreshed (frequency 1000): eigenvectors of the first factor, up
            // to the sign of each column
            let s = ql[(0, j)].signum() * lb[j].signum();
            assert!(
                (lb[i * m + j] - s * ql[(i, j)]).abs() <= 1e-12,
                "left_basis[{i},{j}]"
            );
        }
    }
    assert!(b.right_basis.is_some() && b.right_factor.is_some());
}

fn save_load_continues<T: StepFloat>() {
    let json = r#"{"optimizer": "soap", "lr": 0.01, "precondition_frequency": 3,
                   "weight_decay": 0.01, "shape": [6, 4], "order": "F"}"#;
    let mut a = soap(json, 24);
    let mut x: Vec<T> = (0..24).map(|i| T::from_f64(rnd(5, i))).collect();
    run(&mut a, &mut x, 1, 7);
    let saved = a.save_state();
    let mut y = x.clone();
    run(&mut a, &mut x, 8, 14);
    let mut b = soap(json, 24);
    b.load_state(&saved).unwrap();
    run(&mut b, &mut y, 8, 14);
    assert!(
        x.iter()
            .zip(&y)
            .all(|(p, q)| p.to_f64().to_bits() == q.to_f64().to_bits()),
        "continuation after load differs"
    );
    assert_eq!(a.save_state(), b.save_state());
}

#[test]
fn save_load_mid_run_continues_bit_identically() {
    save_load_continues::<f64>();
    save_load_continues::<f32>();
}

#[test]
fn f32_follows_f64_within_f32_rounding() {
    let json = r#"{"optimizer": "soap", "lr": 0.01, "precondition_frequency": 2,
                   "shape": [5, 5]}"#;
    let mut a = soap(json, 25);
    let mut b = soap(json, 25);
    let x0: Vec<f64> = (0..25).map(|i| f64::from(rnd(9, i) as f32)).collect();
    let mut x = x0.clone();
    let mut y: Vec<f32> = x0.iter().map(|&v| v as f32).collect();
    run(&mut a, &mut x, 1, 6);
    run(&mut b, &mut y, 1, 6);
    // five Adam steps of size ≤ ~lr each; the rotations amplify the f32 rounding of the
    // gradients and factors by the eigenvector sensitivity of a random 5×5 factor
    let worst = x
        .iter()
        .zip(&y)
        .map(|(p, &q)| (p - f64::from(q)).abs())
        .fold(0.0, f64::max);
    eprintln!("f32 vs f64: max difference {worst:e}");
    assert!(
        worst > 0.0 && worst <= 200.0 * f64::from(f32::EPSILON) * 0.01,
        "{worst:e}"
    );
}

#[test]
fn soap_group_inside_adamw_steps_its_slice_as_standalone_soap() {
    let soap_keys = r#""optimizer": "soap", "lr": 0.02, "betas": [0.9, 0.99], "eps": 1e-8,
        "weight_decay": 0.05, "precondition_frequency": 2, "normalize_grads": true"#;
    let mixed = format!(
        r#"{{"optimizer": "adamw", "lr": 0.001,
            "groups": [{{"start": 5, "end": 17, "shape": [3, 4], {soap_keys}}}]}}"#
    );
    let alone = format!(r#"{{{soap_keys}, "shape": [3, 4]}}"#);
    let mut a = soap(&mixed, 20);
    let mut b = soap(&alone, 12);
    let mut c = soap(r#"{"optimizer": "adamw", "lr": 0.001}"#, 20);
    let mut x: Vec<f64> = (0..20).map(|i| rnd(11, i)).collect();
    let mut y = x[5..17].to_vec();
    let mut z = x.clone();
    for k in 1..=7 {
        let g: Vec<f64> = (0..20).map(|i| grad(k, i) + 0.1 * x[i]).collect();
        let gz: Vec<f64> = (0..20).map(|i| grad(k, i) + 0.1 * z[i]).collect();
        let gy: Vec<f64> = (0..12).map(|i| grad(k, i + 5) + 0.1 * y[i]).collect();
        a.step_f64(&mut x, &g).unwrap();
        b.step_f64(&mut y, &gy).unwrap();
        c.step_f64(&mut z, &gz).unwrap();
    }
    assert!(
        x[5..17]
            .iter()
            .zip(&y)
            .all(|(p, q)| p.to_bits() == q.to_bits())
    );
    for i in (0..5).chain(17..20) {
        assert_eq!(x[i].to_bits(), z[i].to_bits(), "AdamW entry {i}");
    }
    assert!(
        a.matrix_preconditioner(Some(0)).unwrap().blocks[0]
            .left_basis
            .is_some()
    );
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        (
            r#"{"optimizer": "soap", "shape": [2, 2], "precondition_frequency": 0}"#,
            "precondition_frequency",
        ),
        (
            r#"{"optimizer": "soap", "shape": [2, 2], "betas": [0.9, 1.0]}"#,
            "betas[1]",
        ),
        (
            r#"{"optimizer": "soap", "shape": [2, 2], "betas": [-0.1, 0.9]}"#,
            "betas[0]",
        ),
        (
            r#"{"optimizer": "soap", "shape": [2, 2], "shampoo_beta": 1.0}"#,
            "shampoo_beta",
        ),
        (r#"{"optimizer": "soap", "shape": [2, 2], "eps": 0}"#, "eps"),
        (
            r#"{"optimizer": "soap", "shape": [2, 2], "max_precond_dim": 0}"#,
            "max_precond_dim",
        ),
        (
            r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 4, "shape": [2, 2],
                "optimizer": "soap", "precondition_frequency": 0}]}"#,
            "groups[0].precondition_frequency",
        ),
    ];
    for (json, key) in cases {
        let e = OptimizerConfig::from_json(json)
            .and_then(|c| c.build(4))
            .expect_err(json);
        match e {
            OptimError::Config { key: k, .. } => assert_eq!(k, key, "{json}"),
            other => panic!("{json}: expected a Config error for {key}, got {other:?}"),
        }
    }
    let e =
        OptimizerConfig::from_json(r#"{"optimizer": "soap", "shape": [2, 2], "epsilon": 1e-8}"#)
            .expect_err("shampoo's key");
    assert!(
        matches!(e, OptimError::UnknownKey { ref key, .. } if key == "epsilon"),
        "{e:?}"
    );
}

/// `QᵀQ = I` within `8 n ε`.
fn assert_orthogonal(q: &[f64], n: usize, what: &str) {
    let q = MatRef::from_row_major_slice(q, n, n);
    let p = q.transpose() * q;
    for i in 0..n {
        for j in 0..n {
            let want = if i == j { 1.0 } else { 0.0 };
            let e = (p[(i, j)] - want).abs();
            assert!(
                e <= 8.0 * n as f64 * f64::EPSILON,
                "{what}: (QᵀQ)[{i},{j}] off by {e:e}"
            );
        }
    }
}

#[test]
fn rank_deficient_factors_keep_orthogonal_bases() {
    // 2 × 6: the right factor has rank ≤ 2k after k gradients, so its first refreshes complete
    // dependent columns of the power iteration
    let json = r#"{"optimizer": "soap", "lr": 0.01, "precondition_frequency": 1,
                   "shape": [2, 6]}"#;
    let mut opt = soap(json, 12);
    let mut x: Vec<f64> = (0..12).map(|i| rnd(13, i)).collect();
    for k in 1..=4 {
        run(&mut opt, &mut x, k, k);
        let p = opt.matrix_preconditioner(None).unwrap();
        let b = &p.blocks[0];
        assert_orthogonal(b.right_basis.as_ref().unwrap(), 6, "right basis");
        assert_orthogonal(b.left_basis.as_ref().unwrap(), 2, "left basis");
        assert!(x.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn long_dimension_is_not_preconditioned() {
    let json = r#"{"optimizer": "soap", "lr": 0.01, "max_precond_dim": 4, "shape": [6, 3]}"#;
    let mut opt = soap(json, 18);
    let names = opt.slot_names();
    assert_eq!(
        names,
        ["exp_avg", "exp_avg_sq", "right_factor", "right_basis"]
    );
    let mut x: Vec<f64> = (0..18).map(|i| rnd(17, i)).collect();
    run(&mut opt, &mut x, 1, 3);
    let p = opt.matrix_preconditioner(None).unwrap();
    assert!(p.blocks[0].left_basis.is_none() && p.blocks[0].left_factor.is_none());
    assert_orthogonal(p.blocks[0].right_basis.as_ref().unwrap(), 3, "right basis");
}

#[test]
fn failed_first_eigendecomposition_leaves_the_identity() {
    // under `propagate` an infinite first gradient makes the factors non-finite: the basis stays
    // the identity and the later steps are Adam's, with finite parameters
    let json = r#"{"optimizer": "soap", "lr": 0.01, "betas": [0.9, 0.99], "weight_decay": 0.0,
                   "precondition_frequency": 1, "nonfinite": "propagate", "shape": [2, 3]}"#;
    let mut opt = soap(json, 6);
    let mut x = vec![0.5; 6];
    let mut g = vec![0.25; 6];
    g[4] = f64::INFINITY;
    let out = opt.step_f64(&mut x, &g).unwrap();
    assert_eq!(out.nonfinite_index, Some(4));
    assert_eq!(x, vec![0.5; 6]);
    let g2 = [0.5, -0.25, 1.0, -2.0, 0.125, 3.0];
    opt.step_f64(&mut x, &g2).unwrap();
    // Adam's first step with identity bases: x − lr·sqrt(1−β₂)/(1−β₁)·(1−β₁)g/(sqrt(1−β₂)|g| + eps)
    for (i, (&xi, &gi)) in x.iter().zip(&g2).enumerate() {
        let want =
            0.5 - 0.01 * 0.01f64.sqrt() / 0.1 * (0.1 * gi) / (0.01f64.sqrt() * gi.abs() + 1e-8);
        assert!(
            (xi - want).abs() <= 4.0 * f64::EPSILON,
            "x[{i}] {xi} vs {want}"
        );
    }
    let p = opt.matrix_preconditioner(None).unwrap();
    assert_eq!(
        p.blocks[0].left_basis.as_deref(),
        Some(&[1.0, 0.0, 0.0, 1.0][..])
    );
}

#[test]
fn overflowing_refresh_keeps_the_old_basis() {
    // a loaded huge-but-finite left factor whose power iteration overflows at the next refresh
    let json = r#"{"optimizer": "soap", "lr": 0.01, "precondition_frequency": 1,
                   "shape": [4, 3]}"#;
    let mut opt = soap(json, 12);
    let mut x: Vec<f64> = (0..12).map(|i| rnd(19, i)).collect();
    run(&mut opt, &mut x, 1, 2);
    let names = opt.slot_names();
    let lf = names.iter().position(|s| s == "left_factor").unwrap();
    let lb = names.iter().position(|s| s == "left_basis").unwrap();
    let rb = names.iter().position(|s| s == "right_basis").unwrap();
    let mut st = opt.state();
    st.slots[lf] = vec![f64::MAX; 16];
    // an orthogonal (Hadamard) basis: the first column sums to 2, so GG·Q overflows
    let h = [
        1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0, -1.0, 1.0,
    ];
    st.slots[lb] = h.iter().map(|v| 0.5 * v).collect();
    let right_before = st.slots[rb].clone();
    opt.load(&st).unwrap();
    run(&mut opt, &mut x, 3, 3);
    let after = opt.state();
    assert_eq!(after.slots[lb], st.slots[lb], "the left basis is kept");
    assert_ne!(
        after.slots[rb], right_before,
        "the right basis is refreshed"
    );
    assert!(x.iter().all(|v| v.is_finite()));
    assert_orthogonal(&after.slots[rb], 3, "right basis");
}

#[test]
fn zero_and_rank_one_factors_complete_the_basis() {
    // a zero first gradient, then gradients in column 0 only: the right factor is c·e₀e₀ᵀ, every
    // column of GG·Q is parallel to e₀ and the QR must complete the basis
    let json = r#"{"optimizer": "soap", "lr": 0.01, "precondition_frequency": 1,
                   "shape": [3, 4]}"#;
    let mut opt = soap(json, 12);
    let mut x = vec![0.0; 12];
    opt.step_f64(&mut x, &[0.0; 12]).unwrap();
    for k in 2..=4 {
        let g: Vec<f64> = (0..12)
            .map(|i| if i % 4 == 0 { grad(k, i) } else { 0.0 })
            .collect();
        opt.step_f64(&mut x, &g).unwrap();
        let p = opt.matrix_preconditioner(None).unwrap();
        assert_orthogonal(p.blocks[0].right_basis.as_ref().unwrap(), 4, "right basis");
        assert_orthogonal(p.blocks[0].left_basis.as_ref().unwrap(), 3, "left basis");
        assert!(x.iter().all(|v| v.is_finite()));
        // only column 0 moves: the rotation of a column-0 gradient stays in column 0
        for (i, v) in x.iter().enumerate() {
            if i % 4 != 0 {
                assert!(v.abs() <= 1e-14, "x[{i}] = {v:e}");
            }
        }
    }
}

#[test]
fn observation_is_row_major_whatever_the_storage_order() {
    let (m, n) = (3usize, 5usize);
    let base = r#""optimizer": "soap", "lr": 0.01, "precondition_frequency": 2, "shape": [3, 5]"#;
    let mut a = soap(&format!("{{{base}}}"), m * n);
    let mut b = soap(&format!(r#"{{{base}, "order": "F"}}"#), m * n);
    let mut x: Vec<f64> = (0..m * n).map(|p| rnd(23, p)).collect();
    // the same matrix stored column-major
    let mut y: Vec<f64> = (0..m * n).map(|s| x[(s % m) * n + s / m]).collect();
    for k in 1..=5 {
        let g: Vec<f64> = (0..m * n).map(|p| grad(k, p)).collect();
        let gy: Vec<f64> = (0..m * n).map(|s| g[(s % m) * n + s / m]).collect();
        a.step_f64(&mut x, &g).unwrap();
        b.step_f64(&mut y, &gy).unwrap();
    }
    let (pa, pb) = (
        a.matrix_preconditioner(None).unwrap(),
        b.matrix_preconditioner(None).unwrap(),
    );
    assert_eq!(pa, pb);
    // the diagonal is row-major: entry (i, j) from exp_avg_sq at the storage index of (i, j)
    let sq = b.slot::<f64>(1).unwrap();
    let d = pa.blocks[0].diagonal.as_ref().unwrap();
    let c2 = (1.0 - 0.95f64.powf(4.0)).sqrt();
    for i in 0..m {
        for j in 0..n {
            let want = c2 / (sq[j * m + i].sqrt() + 1e-8);
            assert!((d[i * n + j] - want).abs() <= 4.0 * f64::EPSILON * want);
        }
    }
}

#[test]
fn negative_second_moment_in_a_loaded_state_is_refused() {
    let mut opt = soap(r#"{"optimizer": "soap", "shape": [2, 3]}"#, 6);
    let mut x = vec![0.5; 6];
    run(&mut opt, &mut x, 1, 3);
    let mut st = opt.state();
    let j = opt
        .slot_names()
        .iter()
        .position(|s| s == "exp_avg_sq")
        .unwrap();
    st.slots[j][2] = -1.0;
    let e = opt.load(&st).expect_err("negative exp_avg_sq");
    assert!(e.to_string().contains("exp_avg_sq"), "{e}");
}
