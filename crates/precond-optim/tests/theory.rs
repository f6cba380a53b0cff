//! The theory (THEORY.md sections 1, 2, 4, 5) as assertions that fail when the code is wrong.
//! Convergence rates are compared with `precond-linalg`'s diagnostics (spectra, Theorem 1 rates,
//! observed rates), which are computed independently of this crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use faer::MatRef;
use precond_linalg::{
    Tail, gd_optimal_rate, gd_optimal_step, heavy_ball_optimal, observed_rate, precond_cond_diag,
    sym_spectrum,
};
use precond_optim::experiment::{MinimizeOptions, Objective, Quadratic, minimize};
use precond_optim::{FixedPreconditioner, OptimizerConfig, RegKind, Regularization, Space};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

/// A random orthogonal matrix (product of n Householder reflections), row-major.
fn orthogonal(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let mut q: Vec<f64> = (0..n * n)
        .map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    for _ in 0..n {
        let v = randn(rng, n);
        let vv: f64 = v.iter().map(|a| a * a).sum();
        // q ← q (I − 2 v vᵀ/vᵀv)
        for r in 0..n {
            let d: f64 = (0..n).map(|c| q[r * n + c] * v[c]).sum();
            for c in 0..n {
                q[r * n + c] -= 2.0 * d * v[c] / vv;
            }
        }
    }
    q
}

/// `Q diag(lams) Qᵀ`.
fn spd_with_spectrum(rng: &mut ChaCha8Rng, lams: &[f64]) -> Vec<f64> {
    let n = lams.len();
    let q = orthogonal(rng, n);
    let mut h = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            h[i * n + j] = (0..n).map(|k| q[i * n + k] * lams[k] * q[j * n + k]).sum();
        }
    }
    for i in 0..n {
        for j in 0..i {
            let s = 0.5 * (h[i * n + j] + h[j * n + i]);
            h[i * n + j] = s;
            h[j * n + i] = s;
        }
    }
    h
}

fn mat(h: &[f64], n: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(h, n, n)
}

fn matvec(a: &[f64], x: &[f64]) -> Vec<f64> {
    let n = x.len();
    (0..a.len() / n)
        .map(|i| (0..n).map(|j| a[i * n + j] * x[j]).sum())
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn reg(kind: RegKind, strength: f64, space: Space, proximal: bool) -> Regularization {
    Regularization {
        kind,
        strength,
        l1_ratio: if kind == RegKind::L1 { 1.0 } else { 0.0 },
        space,
        proximal,
    }
}

/// Theorem 1: GD with η* = 2/(λ_min + λ_max) converges at exactly (κ − 1)/(κ + 1); and Polyak's
/// heavy ball (torch SGD momentum) with its optimal parameters at (√κ − 1)/(√κ + 1).
#[test]
fn gd_at_optimal_step_converges_at_the_predicted_rate() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = 8;
    let mut lams = vec![1.0, 100.0];
    lams.extend((0..n - 2).map(|_| rng.random_range(10.0..50.0)));
    let h = spd_with_spectrum(&mut rng, &lams);
    let spec = sym_spectrum(mat(&h, n)).unwrap();
    assert!((spec.kappa - 100.0).abs() < 1e-8);
    let x_star = randn(&mut rng, n);
    let q = Quadratic::new(h.clone(), x_star.clone()).unwrap();
    let eta = gd_optimal_step(spec.lambda_min, spec.lambda_max);
    let mut opt = OptimizerConfig::gd(eta).build(n).unwrap();
    let mut x = randn(&mut rng, n);
    let opts = MinimizeOptions {
        max_iter: 400,
        x_star: Some(x_star.clone()),
        ..Default::default()
    };
    let t = minimize(&q, &mut opt, &mut x, &opts).unwrap();
    let fit = observed_rate(&t.dist_to_opt, Tail::Last(100)).unwrap();
    let predicted = gd_optimal_rate(spec.kappa);
    assert!(
        (fit.rate - predicted).abs() <= 1e-9,
        "observed {} vs predicted {predicted}",
        fit.rate
    );

    // a step 20% below optimal is slower, at the rate Theorem 1 predicts for it
    let eta2 = 0.8 * eta;
    let mut opt = OptimizerConfig::gd(eta2).build(n).unwrap();
    let mut x = randn(&mut rng, n);
    let t = minimize(&q, &mut opt, &mut x, &opts).unwrap();
    let fit2 = observed_rate(&t.dist_to_opt, Tail::Last(100)).unwrap();
    let pred2 = precond_linalg::gd_rate(eta2, spec.lambda_min, spec.lambda_max);
    assert!(
        (fit2.rate - pred2).abs() <= 1e-6,
        "{} vs {pred2}",
        fit2.rate
    );
    assert!(fit2.rate > fit.rate);

    // heavy ball: torch SGD(lr=η, momentum=β) is Polyak's method
    let hb = heavy_ball_optimal(spec.lambda_min, spec.lambda_max);
    let mut opt = OptimizerConfig::sgd(hb.eta, hb.beta).build(n).unwrap();
    let mut x = randn(&mut rng, n);
    // 0.82^120 ≈ 4e-11: stay above the rounding floor
    let opts = MinimizeOptions {
        max_iter: 120,
        x_star: Some(x_star),
        ..Default::default()
    };
    let t = minimize(&q, &mut opt, &mut x, &opts).unwrap();
    // at the optimal parameters the extreme eigenvalues are double: the error is ~ k ρ^k, so fit
    // e_k / (k + 1)
    let adj: Vec<f64> = t
        .dist_to_opt
        .iter()
        .enumerate()
        .map(|(k, e)| e / (k as f64 + 1.0))
        .collect();
    let fit3 = observed_rate(&adj, Tail::Last(100)).unwrap();
    assert!(
        fit3.rate >= hb.rate * 0.99 && fit3.rate <= hb.rate * 1.01,
        "{} vs {}",
        fit3.rate,
        hb.rate
    );
    assert!(fit3.rate < fit.rate);
}

/// GD in `y` on `g(y) = f(S y)`, gradient `Sᵀ∇f(Sy)`.
struct Reparam<'a> {
    q: &'a Quadratic,
    s: Vec<f64>,
    n: usize,
}

impl Objective for Reparam<'_> {
    fn dim(&self) -> usize {
        self.n
    }
    fn value_grad(&self, y: &[f64], g: &mut [f64]) -> f64 {
        let n = self.n;
        let x = matvec(&self.s, y);
        let mut gx = vec![0.0; n];
        let f = self.q.value_grad(&x, &mut gx);
        for (j, gj) in g.iter_mut().enumerate() {
            *gj = (0..n).map(|i| self.s[i * n + j] * gx[i]).sum();
        }
        f
    }
}

/// (5) in `x` with `P = S Sᵀ` is (4) in `y` mapped by `S`: `x_k = S y_k` at every step, for a
/// dense factor `S` and for a diagonal `P` (`S = diag(sqrt(p))`).
#[test]
fn preconditioned_gd_in_x_is_gd_in_y() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let n = 6;
    let lams: Vec<f64> = (0..n).map(|i| 10f64.powf(i as f64 / 2.0)).collect();
    let h = spd_with_spectrum(&mut rng, &lams);
    let x_star = randn(&mut rng, n);
    let q = Quadratic::new(h.clone(), x_star).unwrap();
    let dense_s: Vec<f64> =
        (0..n * n).map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 } + 0.3 * rng.sample::<f64, _>(StandardNormal)).collect();
    let p_diag: Vec<f64> = (0..n)
        .map(|_| 10f64.powf(rng.random_range(-2.0..0.0)))
        .collect();
    let diag_s: Vec<f64> = (0..n * n)
        .map(|i| {
            if i % (n + 1) == 0 {
                p_diag[i / (n + 1)].sqrt()
            } else {
                0.0
            }
        })
        .collect();
    for (name, s, fixed) in [
        (
            "dense S",
            dense_s.clone(),
            FixedPreconditioner::DenseS(dense_s.clone()),
        ),
        (
            "diagonal P",
            diag_s,
            FixedPreconditioner::Diagonal(p_diag.clone()),
        ),
    ] {
        // step: optimal for SᵀHS
        let mut sths = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                sths[i * n + j] = (0..n)
                    .map(|a| {
                        (0..n)
                            .map(|b| s[a * n + i] * h[a * n + b] * s[b * n + j])
                            .sum::<f64>()
                    })
                    .sum();
            }
        }
        let sp = sym_spectrum(mat(&sths, n)).unwrap();
        let eta = gd_optimal_step(sp.lambda_min, sp.lambda_max);
        let mut ox = OptimizerConfig::precond_gd(eta, fixed).build(n).unwrap();
        let mut oy = OptimizerConfig::gd(eta).build(n).unwrap();
        let r = Reparam {
            q: &q,
            s: s.clone(),
            n,
        };
        let mut y = randn(&mut rng, n);
        let mut x = matvec(&s, &y);
        let scale = norm(&x);
        let (mut gx, mut gy) = (vec![0.0; n], vec![0.0; n]);
        for k in 0..60 {
            q.value_grad(&x, &mut gx);
            r.value_grad(&y, &mut gy);
            ox.step_f64(&mut x, &gx).unwrap();
            oy.step_f64(&mut y, &gy).unwrap();
            let sy = matvec(&s, &y);
            let e = norm(&diff(&x, &sy));
            assert!(
                e <= 1e-13 * scale * (k + 1) as f64,
                "{name}: step {k}: |x − S y| = {e:e}"
            );
        }
    }
}

/// With a frozen diagonal `P`: intrinsic L2 is (11) and coupled L2 is (12) step for step; their
/// `y`-Hessians `SᵀHS + λI` and `SᵀHS + λSᵀS` have the condition numbers `precond-linalg`
/// reports, and each iteration (at its optimal step) converges at that κ's Theorem 1 rate;
/// intrinsic is better conditioned than coupled for an ill-conditioned `P` (Theorem 3).
#[test]
fn intrinsic_and_coupled_l2_with_frozen_p() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 6;
    let lams: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let h = spd_with_spectrum(&mut rng, &lams);
    let x_star: Vec<f64> = randn(&mut rng, n);
    let q = Quadratic::new(h.clone(), x_star).unwrap();
    let p: Vec<f64> = (0..n)
        .map(|i| 10f64.powf(-3.0 * i as f64 / (n - 1) as f64))
        .collect();
    let lambda = 0.5;
    let pc = precond_cond_diag(mat(&h, n), &p).unwrap();
    // y-Hessians (S = diag(sqrt p))
    let sths: Vec<f64> = (0..n * n)
        .map(|k| p[k / n].sqrt() * h[k] * p[k % n].sqrt())
        .collect();
    let mut h_int = sths.clone();
    let mut h_cpl = sths.clone();
    for i in 0..n {
        h_int[i * n + i] += lambda;
        h_cpl[i * n + i] += lambda * p[i];
    }
    let s_int = sym_spectrum(mat(&h_int, n)).unwrap();
    let s_cpl = sym_spectrum(mat(&h_cpl, n)).unwrap();
    // the unregularized SᵀHS is what precond_cond_diag reports; λI lifts its bottom eigenvalue by λ
    assert!((s_int.lambda_min - (pc.spectrum.lambda_min + lambda)).abs() < 1e-10);
    assert!(
        s_int.kappa < s_cpl.kappa,
        "Theorem 3: {} vs {}",
        s_int.kappa,
        s_cpl.kappa
    );

    for (space, hs) in [(Space::Intrinsic, &s_int), (Space::Original, &s_cpl)] {
        let eta = gd_optimal_step(hs.lambda_min, hs.lambda_max);
        let mut cfg = OptimizerConfig::precond_gd(eta, FixedPreconditioner::Diagonal(p.clone()));
        cfg.regularization = reg(RegKind::L2, lambda, space, false);
        let mut opt = cfg.build(n).unwrap();
        let mut x = randn(&mut rng, n);
        let mut manual = x.clone();
        let mut g = vec![0.0; n];
        let mut steps = Vec::new();
        for k in 0..1500 {
            // the library
            q.value_grad(&x, &mut g);
            let before = x.clone();
            opt.step_f64(&mut x, &g).unwrap();
            steps.push(norm(&diff(&x, &before)));
            // the formula, computed independently
            if k < 50 {
                let mut gm = vec![0.0; n];
                q.value_grad(&manual, &mut gm);
                for i in 0..n {
                    manual[i] = match space {
                        Space::Intrinsic => {
                            manual[i] - eta * p[i] * gm[i] - eta * lambda * manual[i]
                        } // (11)
                        Space::Original => manual[i] - eta * p[i] * (gm[i] + lambda * manual[i]), // (12)
                    };
                }
                let e = norm(&diff(&x, &manual));
                assert!(
                    e <= 1e-13 * norm(&manual).max(1.0),
                    "{space:?} step {k}: {e:e}"
                );
            }
        }
        let steps: Vec<f64> = steps.into_iter().take_while(|&s| s > 1e-13).collect();
        let fit = observed_rate(&steps, Tail::Fraction(0.3)).unwrap();
        let predicted = gd_optimal_rate(hs.kappa);
        assert!(
            (fit.rate - predicted).abs() <= 2e-3 * predicted,
            "{space:?}: observed {} vs (κ−1)/(κ+1) = {predicted}",
            fit.rate
        );
    }
}

/// Theorem 4 with a frozen diagonal `P`: intrinsic L1 is (13), `x − ηP∇f − ηλ P^{1/2} sign(x)`,
/// coupled L1 is `x − ηP(∇f + λ sign(x))`.
#[test]
fn theorem4_l1_iterations() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let n = 7;
    let lams: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let h = spd_with_spectrum(&mut rng, &lams);
    let q = Quadratic::new(h, randn(&mut rng, n)).unwrap();
    let p: Vec<f64> = (0..n)
        .map(|_| 10f64.powf(rng.random_range(-2.0..0.0)))
        .collect();
    let (eta, lambda) = (0.05, 0.3);
    for space in [Space::Intrinsic, Space::Original] {
        let mut cfg = OptimizerConfig::precond_gd(eta, FixedPreconditioner::Diagonal(p.clone()));
        cfg.regularization = reg(RegKind::L1, lambda, space, false);
        let mut opt = cfg.build(n).unwrap();
        let mut x: Vec<f64> = randn(&mut rng, n).iter().map(|v| v * 5.0).collect();
        let mut m = x.clone();
        let (mut g, mut gm) = (vec![0.0; n], vec![0.0; n]);
        for k in 0..30 {
            q.value_grad(&x, &mut g);
            opt.step_f64(&mut x, &g).unwrap();
            q.value_grad(&m, &mut gm);
            for i in 0..n {
                let s = m[i].signum();
                m[i] = match space {
                    Space::Intrinsic => m[i] - eta * p[i] * gm[i] - eta * lambda * p[i].sqrt() * s,
                    Space::Original => m[i] - eta * p[i] * (gm[i] + lambda * s),
                };
            }
            assert!(
                norm(&diff(&x, &m)) <= 1e-13 * norm(&m),
                "{space:?} step {k}"
            );
        }
    }
}

/// Composability with an adaptive `P_k`: Adam + intrinsic L1 moves each step by Adam's step minus
/// `ηλ sqrt(p_k) sign(x_k)`, with `p_k` what `preconditioner()` reports.
#[test]
fn adam_with_intrinsic_l1_uses_the_observable_pk() {
    let n = 9;
    let (lr, lambda) = (0.01, 0.2);
    let plain_cfg = OptimizerConfig::adam(lr);
    let mut reg_cfg = plain_cfg.clone();
    reg_cfg.regularization = reg(RegKind::L1, lambda, Space::Intrinsic, false);
    let mut plain = plain_cfg.build(n).unwrap();
    let mut regd = reg_cfg.build(n).unwrap();
    let mut xp: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let mut xr = xp.clone();
    let mut p = vec![0.0; n];
    for k in 0..40 {
        let g: Vec<f64> = (0..n)
            .map(|i| ((i * 5 + k * 3) % 7) as f64 - 3.0 + 0.1 * i as f64)
            .collect();
        let (xp0, xr0) = (xp.clone(), xr.clone());
        plain.step_f64(&mut xp, &g).unwrap();
        regd.step_f64(&mut xr, &g).unwrap();
        plain.preconditioner(&mut p).unwrap();
        for i in 0..n {
            let expected = (xp[i] - xp0[i]) - lr * lambda * p[i].sqrt() * xr0[i].signum();
            let got = xr[i] - xr0[i];
            assert!(
                (got - expected).abs() <= 1e-12 * expected.abs().max(1e-3),
                "step {k} i {i}: {got} vs {expected}"
            );
        }
    }
}

/// The proximal form reaches exact zeros (at the closed-form minimizer of `f + λ||S⁻¹x||₁`)
/// where the subgradient form oscillates around zero, for a fixed `P`, and RMSProp/Adam +
/// intrinsic proximal L1 also produce exact zeros.
#[test]
fn proximal_l1_gives_exact_zeros_where_subgradient_oscillates() {
    let n = 8;
    let hd: Vec<f64> = (0..n).map(|i| 1.0 + 0.5 * i as f64).collect();
    let a = [2.0, -0.05, 1.5, 0.02, -3.0, 0.0, 0.5, -0.01];
    let mut hm = vec![0.0; n * n];
    for i in 0..n {
        hm[i * n + i] = hd[i];
    }
    let q = Quadratic::new(hm, a.to_vec()).unwrap();
    let p: Vec<f64> = (0..n).map(|i| 0.2 + 0.1 * i as f64).collect();
    let (eta, lambda) = (0.5, 0.1);
    // closed form: x_i = soft(a_i, λ/(h_i sqrt(p_i)))
    let expect: Vec<f64> = (0..n)
        .map(|i| {
            let t = lambda / (hd[i] * p[i].sqrt());
            a[i].signum() * (a[i].abs() - t).max(0.0)
        })
        .collect();
    let zeros: Vec<usize> = (0..n).filter(|&i| expect[i] == 0.0).collect();
    assert_eq!(zeros, vec![1, 3, 5, 7]);
    let run = |proximal: bool, cfg: OptimizerConfig, iters: usize| {
        let mut cfg = cfg;
        cfg.regularization = reg(RegKind::L1, lambda, Space::Intrinsic, proximal);
        let mut opt = cfg.build(n).unwrap();
        let mut x = vec![1.0; n];
        let mut g = vec![0.0; n];
        let mut hist = Vec::new();
        for _ in 0..iters {
            q.value_grad(&x, &mut g);
            opt.step_f64(&mut x, &g).unwrap();
            hist.push(x.clone());
        }
        hist
    };
    let fixed = OptimizerConfig::precond_gd(eta, FixedPreconditioner::Diagonal(p.clone()));
    let prox = run(true, fixed.clone(), 400);
    let last = prox.last().unwrap();
    for i in 0..n {
        if zeros.contains(&i) {
            assert!(
                last[i] == 0.0,
                "prox: x[{i}] = {} not exactly zero",
                last[i]
            );
        } else {
            assert!(
                (last[i] - expect[i]).abs() <= 1e-12,
                "prox: x[{i}] = {} vs {}",
                last[i],
                expect[i]
            );
        }
    }
    let sub = run(false, fixed, 400);
    for &i in &zeros {
        let tail: Vec<f64> = sub[380..].iter().map(|x| x[i]).collect();
        assert!(
            tail.iter().all(|&v| v != 0.0),
            "subgradient reached an exact zero at {i}"
        );
        let flips = tail
            .windows(2)
            .filter(|w| w[0].signum() != w[1].signum())
            .count();
        assert!(
            flips >= 5,
            "subgradient at {i} should oscillate in sign: {tail:?}"
        );
    }
    // adaptive P_k + intrinsic proximal L1, no new optimizer written
    for cfg in [OptimizerConfig::rmsprop(0.05), OptimizerConfig::adam(0.05)] {
        // (P_k keeps adapting, so only the coordinate whose minimizer is 0 for every P is checked)
        let hist = run(true, cfg.clone(), 600);
        assert!(
            hist[500..].iter().all(|x| x[5] == 0.0),
            "{:?}: {:?}",
            cfg.optimizer,
            hist.last()
        );
        assert!(hist.last().unwrap()[0] != 0.0 && hist.last().unwrap()[4] != 0.0);
        let hist = run(false, cfg.clone(), 600);
        assert!(
            hist[500..].iter().all(|x| x[5] != 0.0),
            "{:?}: subgradient hit zero",
            cfg.optimizer
        );
    }
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
    cov / (va * vb).sqrt()
}

/// THEORY.md §4: on an ill-conditioned quadratic with unequal Hessian row norms, Adam's `1/p_i`
/// (≈ sqrt(v̂_i)) tracks `||h_i||`, and its `P_k` improves the spectral condition number.
#[test]
fn adam_inverse_preconditioner_tracks_hessian_row_norms() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let n = 24;
    let lams: Vec<f64> = (0..n).map(|_| rng.random_range(1.0..3.0)).collect();
    let m = spd_with_spectrum(&mut rng, &lams);
    let d: Vec<f64> = (0..n)
        .map(|i| 10f64.powf(2.0 * i as f64 / (n - 1) as f64))
        .collect();
    let h: Vec<f64> = (0..n * n).map(|k| d[k / n] * m[k] * d[k % n]).collect();
    let row_norms: Vec<f64> = (0..n).map(|i| norm(&h[i * n..(i + 1) * n])).collect();
    let q = Quadratic::new(h.clone(), randn(&mut rng, n)).unwrap();
    // many iterates with a step large enough to make the gradient directions vary (the average
    // over cos θ_i in THEORY.md section 4)
    let (lr, iters) = (0.1, 1000);
    let mut opt = OptimizerConfig::adam(lr).build(n).unwrap();
    let mut x: Vec<f64> = randn(&mut rng, n);
    let opts = MinimizeOptions {
        max_iter: iters,
        record_precond_every: iters / 4,
        ..Default::default()
    };
    let t = minimize(&q, &mut opt, &mut x, &opts).unwrap();
    assert_eq!(t.precond_snapshots.len(), 4);
    let (k, p) = t.precond_snapshots.last().unwrap();
    assert_eq!(*k, iters as u64);
    let inv_p: Vec<f64> = p.iter().map(|v| (1.0 / v).ln()).collect();
    let ln_rows: Vec<f64> = row_norms.iter().map(|v| v.ln()).collect();
    let r = pearson(&inv_p, &ln_rows);
    assert!(r > 0.85, "correlation of log(1/p_i) with log||h_i||: {r}");
    let k_h = sym_spectrum(mat(&h, n)).unwrap().kappa;
    let k_p = precond_cond_diag(mat(&h, n), p).unwrap().spectral_kappa;
    assert!(k_p < k_h / 20.0, "κ(H) = {k_h:.3e}, κ(P^½HP^½) = {k_p:.3e}");
}
