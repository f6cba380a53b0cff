//! Gradient-norm regularization: `∇R = 2ρ H P ∇f` against central differences of `R` itself
//! (computed from gradients) for a quadratic (exact Hessian) and a tanh MLP (R-operator), both
//! modes; the finite-difference Hessian-vector product against the R-operator; bad input; the
//! `train` hook.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use faer::Mat;
use precond_nn::*;
use precond_optim::OptimizerConfig;

/// `f(x) = ½ xᵀ A x − bᵀ x` with a dense symmetric `A`: `∇f = A x − b`, `H = A`.
struct Quad {
    a: Vec<f64>,
    b: Vec<f64>,
    n: usize,
}

impl Quad {
    fn new(n: usize, seed: u64) -> Self {
        let m = randn(n, n, seed);
        let a = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                0.5 * (m[(i, j)] + m[(j, i)]) + if i == j { 3.0 } else { 0.0 }
            })
            .collect();
        let b = randn(n, 1, seed ^ 7).col(0).iter().copied().collect();
        Quad { a, b, n }
    }
    fn matvec(&self, v: &[f64], out: &mut [f64]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = (0..self.n).map(|j| self.a[i * self.n + j] * v[j]).sum();
        }
    }
    fn grad(&self, x: &[f64], out: &mut [f64]) {
        self.matvec(x, out);
        for (o, b) in out.iter_mut().zip(&self.b) {
            *o -= b;
        }
    }
}

fn p_diag(n: usize) -> Vec<f64> {
    (0..n).map(|i| 0.1 + (i as f64 * 0.7).sin().abs()).collect()
}

/// Central differences of `x ↦ R(x)` with `R` computed from `grad`, component by component.
fn fd_of_r(
    reg: &GradNormReg,
    p: Option<&[f64]>,
    x: &[f64],
    h: f64,
    grad: &mut dyn FnMut(&[f64], &mut [f64]),
) -> Vec<f64> {
    let n = x.len();
    let mut g = vec![0.0; n];
    let mut xp = x.to_vec();
    (0..n)
        .map(|i| {
            xp[i] = x[i] + h;
            grad(&xp, &mut g);
            let rp = reg.value(&g, p);
            xp[i] = x[i] - h;
            grad(&xp, &mut g);
            let rm = reg.value(&g, p);
            xp[i] = x[i];
            (rp - rm) / (2.0 * h)
        })
        .collect()
}

#[test]
fn quadratic_gradient_of_r_is_exact() {
    let n = 6;
    let q = Quad::new(n, 11);
    let x: Vec<f64> = randn(n, 1, 3).col(0).iter().copied().collect();
    let p = p_diag(n);
    for mode in [GradNormMode::Intrinsic, GradNormMode::Coupled] {
        let reg = GradNormReg { rho: 0.3, mode };
        let mut g = vec![0.0; n];
        q.grad(&x, &mut g);
        let g0 = g.clone();
        let (mut u, mut hu) = (vec![0.0; n], vec![0.0; n]);
        let r = reg
            .add_gradient(
                &mut g,
                Some(&p),
                |v, out| {
                    q.matvec(v, out);
                    Ok(())
                },
                &mut u,
                &mut hu,
            )
            .unwrap();
        // R is quadratic in x: central differences are exact up to rounding
        let fd = fd_of_r(&reg, Some(&p), &x, 1e-3, &mut |x, o| q.grad(x, o));
        let scale = fd.iter().fold(1.0f64, |m, a| m.max(a.abs()));
        for i in 0..n {
            let d = g[i] - g0[i];
            assert!(
                (d - fd[i]).abs() <= 1e-9 * scale,
                "{mode:?} [{i}]: ∇R {d} vs fd {}",
                fd[i]
            );
        }
        assert!((r - reg.value(&g0, Some(&p))).abs() <= 1e-15 * r.abs());
        // the modes differ (the test can tell them apart)
        let other = GradNormReg {
            rho: 0.3,
            mode: match mode {
                GradNormMode::Intrinsic => GradNormMode::Coupled,
                GradNormMode::Coupled => GradNormMode::Intrinsic,
            },
        };
        let fo = fd_of_r(&other, Some(&p), &x, 1e-3, &mut |x, o| q.grad(x, o));
        assert!(
            fo.iter()
                .zip(&fd)
                .any(|(a, b)| (a - b).abs() > 1e-3 * scale)
        );
    }
}

fn small_mlp() -> (Mlp, Vec<f64>, Mat<f64>, Targets) {
    let cfg = MlpConfig::feedforward(
        3,
        &[5],
        Activation::Tanh,
        Normalization::None,
        2,
        Loss::SoftmaxCrossEntropy,
    );
    let mlp = Mlp::new(cfg).unwrap();
    let params = mlp.init_params(5);
    let x = randn(3, 8, 21);
    let t = random_targets(Loss::SoftmaxCrossEntropy, 2, 8, 22);
    (mlp, params, x, t)
}

#[test]
fn mlp_gradient_of_r_matches_central_differences() {
    let (mlp, params, x, t) = small_mlp();
    let n = params.len();
    let p = p_diag(n);
    let mut grad = |th: &[f64], out: &mut [f64]| {
        mlp.loss_and_grad(th, x.as_ref(), &t, Mode::Eval, out)
            .unwrap();
    };
    for mode in [GradNormMode::Intrinsic, GradNormMode::Coupled] {
        let reg = GradNormReg { rho: 0.7, mode };
        let mut g = vec![0.0; n];
        grad(&params, &mut g);
        let g0 = g.clone();
        let (mut u, mut hu) = (vec![0.0; n], vec![0.0; n]);
        reg.add_gradient(
            &mut g,
            Some(&p),
            |v, hv| mlp.hessian_vector_product(&params, x.as_ref(), &t, Mode::Eval, v, hv),
            &mut u,
            &mut hu,
        )
        .unwrap();
        // Richardson extrapolation of two central differences (error O(h⁴)); their difference
        // bounds the reference's own error
        let h = 1e-4;
        let f1 = fd_of_r(&reg, Some(&p), &params, h, &mut grad);
        let f2 = fd_of_r(&reg, Some(&p), &params, 2.0 * h, &mut grad);
        let scale = 1.0 + f1.iter().fold(0.0f64, |m, a| m.max(a.abs()));
        for i in 0..n {
            let fd = (4.0 * f1[i] - f2[i]) / 3.0;
            let err = (f1[i] - f2[i]).abs();
            let d = g[i] - g0[i];
            assert!(
                (d - fd).abs() <= 1e-7 * scale + err,
                "{mode:?} [{i}]: ∇R {d} vs fd {fd}"
            );
        }
    }
}

#[test]
fn finite_difference_hvp_agrees_with_the_r_operator() {
    let (mlp, params, x, t) = small_mlp();
    let n = params.len();
    for seed in 0..3 {
        let v: Vec<f64> = randn(n, 1, 100 + seed).col(0).iter().copied().collect();
        let mut exact = vec![0.0; n];
        mlp.hessian_vector_product(&params, x.as_ref(), &t, Mode::Eval, &v, &mut exact)
            .unwrap();
        let (mut fd, mut xp, mut gm) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        fd_hvp(
            |th, out| {
                mlp.loss_and_grad(th, x.as_ref(), &t, Mode::Eval, out)
                    .map(|_| ())
            },
            &params,
            &v,
            &mut fd,
            &mut xp,
            &mut gm,
        )
        .unwrap();
        let scale = exact.iter().fold(1.0f64, |m, a| m.max(a.abs()));
        // central difference with h ≈ ε^{1/3}: error ≈ ε^{2/3} ≈ 4e-11 relative, times the
        // third derivative's size
        for i in 0..n {
            assert!(
                (exact[i] - fd[i]).abs() <= 1e-6 * scale,
                "[{i}]: R-op {} vs fd {}",
                exact[i],
                fd[i]
            );
        }
    }
    // v = 0 gives 0; the quadratic's FD product is A v to rounding
    let q = Quad::new(5, 4);
    let x: Vec<f64> = randn(5, 1, 9).col(0).iter().copied().collect();
    let v: Vec<f64> = randn(5, 1, 10).col(0).iter().copied().collect();
    let (mut out, mut xp, mut gm, mut av) =
        (vec![1.0; 5], vec![0.0; 5], vec![0.0; 5], vec![0.0; 5]);
    let mut gq = |x: &[f64], o: &mut [f64]| {
        q.grad(x, o);
        Ok(())
    };
    fd_hvp(&mut gq, &x, &[0.0; 5], &mut out, &mut xp, &mut gm).unwrap();
    assert!(out.iter().all(|&a| a == 0.0));
    fd_hvp(&mut gq, &x, &v, &mut out, &mut xp, &mut gm).unwrap();
    q.matvec(&v, &mut av);
    for (a, b) in out.iter().zip(&av) {
        assert!((a - b).abs() <= 1e-8 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn bad_input_is_refused_and_leaves_the_gradient_untouched() {
    let n = 4;
    let mut g = vec![1.0, -2.0, 3.0, 0.5];
    let before = g.clone();
    let (mut u, mut hu) = (vec![0.0; n], vec![0.0; n]);
    let id = |v: &[f64], o: &mut [f64]| {
        o.copy_from_slice(v);
        Ok(())
    };
    for rho in [-1.0, f64::NAN, f64::INFINITY] {
        let reg = GradNormReg {
            rho,
            mode: GradNormMode::Coupled,
        };
        let e = reg
            .add_gradient(&mut g, None, id, &mut u, &mut hu)
            .unwrap_err();
        assert!(
            matches!(
                e,
                NnError::InvalidConfig {
                    what: "grad_norm.rho",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(g, before);
    }
    let reg = GradNormReg {
        rho: 1.0,
        mode: GradNormMode::Intrinsic,
    };
    let e = reg
        .add_gradient(&mut g, Some(&[1.0; 3]), id, &mut u, &mut hu)
        .unwrap_err();
    assert!(
        matches!(
            e,
            NnError::DimensionMismatch {
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{e:?}"
    );
    let e = reg
        .add_gradient(&mut g, None, id, &mut u[..2], &mut hu)
        .unwrap_err();
    assert!(
        matches!(e, NnError::DimensionMismatch { got: 2, .. }),
        "{e:?}"
    );
    // an error from the Hessian-vector product leaves g as it was
    let e = reg
        .add_gradient(
            &mut g,
            None,
            |_, _| {
                Err(NnError::DimensionMismatch {
                    what: "test",
                    expected: 1,
                    got: 2,
                })
            },
            &mut u,
            &mut hu,
        )
        .unwrap_err();
    assert!(matches!(e, NnError::DimensionMismatch { what: "test", .. }));
    assert_eq!(g, before);
    // P = I: identity Hessian, coupled and intrinsic without P both add 2ρ g
    reg.add_gradient(&mut g, None, id, &mut u, &mut hu).unwrap();
    for (a, b) in g.iter().zip(&before) {
        assert!((a - 3.0 * b).abs() <= 1e-15 * b.abs());
    }
}

#[test]
fn train_hook_changes_the_run_and_rejects_a_bad_rho() {
    let ds = Dataset::builtin("iris").unwrap();
    let cfg = MlpConfig::feedforward(
        4,
        &[6],
        Activation::Tanh,
        Normalization::None,
        3,
        Loss::SoftmaxCrossEntropy,
    );
    let run = |gn: Option<GradNormReg>| {
        let mut mlp = Mlp::new(cfg.clone()).unwrap();
        let mut params = mlp.init_params(1);
        let mut opt = OptimizerConfig::adam(1e-2).build(params.len()).unwrap();
        let tc = TrainConfig {
            epochs: 2,
            batch_size: 50,
            grad_norm: gn,
            ..TrainConfig::default()
        };
        train(&mut mlp, &mut params, &mut opt, &ds, None, &tc, |_| {
            Control::Continue
        })
        .map(|_| params)
    };
    let plain = run(None).unwrap();
    let zero = run(Some(GradNormReg {
        rho: 0.0,
        mode: GradNormMode::Intrinsic,
    }))
    .unwrap();
    assert_eq!(plain, zero, "ρ = 0 is the plain run");
    for mode in [GradNormMode::Intrinsic, GradNormMode::Coupled] {
        let reg = run(Some(GradNormReg { rho: 0.5, mode })).unwrap();
        assert_ne!(plain, reg, "{mode:?}");
        assert!(reg.iter().all(|v| v.is_finite()));
    }
    let e = run(Some(GradNormReg {
        rho: -1.0,
        mode: GradNormMode::Coupled,
    }))
    .unwrap_err();
    assert!(matches!(e, NnError::InvalidConfig { .. }), "{e:?}");
}
