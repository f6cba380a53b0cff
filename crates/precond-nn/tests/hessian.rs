//! Hessian structure: Theorem 5 (unit Hessian `(1/N) Ā D Āᵀ`), the network Hessian-vector
//! product, Theorem 6 on the real data sets, Theorem 7 for LayerNorm.

mod common;

use common::*;
use faer::Mat;
use precond_linalg::LinearOperator;
use precond_linalg::{col_norms, row_norms};
use precond_nn::hessian::{row_scaled, weighted_gram};
use precond_nn::*;

fn net(input_dim: usize, layers: Vec<LayerSpec>, loss: Loss) -> Mlp {
    Mlp::new(MlpConfig {
        input_dim,
        layers,
        loss,
    })
    .expect("valid config")
}

fn perturbed_params(mlp: &Mlp, seed: u64, amount: f64) -> Vec<f64> {
    let mut p = mlp.init_params(seed);
    let noise = randn(p.len(), 1, seed ^ 0x77);
    for (i, v) in p.iter_mut().enumerate() {
        *v += amount * noise[(i, 0)];
    }
    p
}

/// Data with very different row scales, as the theory is about.
fn scaled_data(d: usize, n: usize, seed: u64) -> Mat<f64> {
    let x = randn(d, n, seed);
    Mat::from_fn(d, n, |r, c| x[(r, c)] * 3f64.powi(r as i32) + r as f64)
}

fn max_abs(m: &Mat<f64>) -> f64 {
    m.norm_max()
}

#[test]
fn linear_regression_unit_hessian_is_xxt_over_n_exactly() {
    let (d, n) = (4, 30);
    let mlp = net(
        d,
        vec![LayerSpec {
            width: 1,
            activation: Activation::Identity,
            norm: Normalization::None,
        }],
        Loss::Mse,
    );
    let p = perturbed_params(&mlp, 3, 0.5);
    let x = scaled_data(d, n, 11);
    let t = random_targets(Loss::Mse, 1, n, 5);
    let uh = unit_hessian(&mlp, &p, x.as_ref(), &t, 0, 0, Mode::Train).expect("unit hessian");
    assert!(uh.closed_form_d);
    assert!(
        uh.d.iter().all(|&v| (v - 1.0).abs() <= 0.0),
        "D = I for linear regression (19)"
    );
    // (1/N) X̄ X̄ᵀ by explicit sums
    let xb = extended(x.as_ref());
    let want = Mat::from_fn(d + 1, d + 1, |i, j| {
        (0..n).map(|c| xb[(i, c)] * xb[(j, c)]).sum::<f64>() / n as f64
    });
    let err = max_abs(&(&uh.hessian - &want));
    assert!(err <= 1e-13 * max_abs(&want), "err {err}");
    // the full network Hessian (parameters ordered [w; b]) is the same matrix, permuted
    let op = HessianOperator::new(&mlp, &p, x.as_ref(), &t, Mode::Train).expect("op");
    let dense = op.to_dense();
    let perm = |k: usize| if k == d { 0 } else { k + 1 }; // layout index -> [b; w] index
    for i in 0..=d {
        for j in 0..=d {
            let w = want[(perm(i), perm(j))];
            assert!(
                (dense[(i, j)] - w).abs() <= 1e-7 * max_abs(&want),
                "HVP ({i},{j}) {} vs {w}",
                dense[(i, j)]
            );
        }
    }
}

#[test]
fn logistic_regression_unit_hessian_has_d_equal_yhat_one_minus_yhat() {
    let (d, n) = (3, 40);
    let mlp = net(
        d,
        vec![LayerSpec {
            width: 1,
            activation: Activation::Identity,
            norm: Normalization::None,
        }],
        Loss::BceWithLogits,
    );
    let p = perturbed_params(&mlp, 4, 0.3);
    let x = randn(d, n, 12);
    let t = random_targets(Loss::BceWithLogits, 1, n, 6);
    let uh = unit_hessian(&mlp, &p, x.as_ref(), &t, 0, 0, Mode::Train).expect("unit hessian");
    let (bi, wr) = mlp.layout().unit(0, 0).expect("unit");
    for c in 0..n {
        let z = p[bi] + (0..d).map(|j| p[wr.start + j] * x[(j, c)]).sum::<f64>();
        let yhat = 1.0 / (1.0 + (-z).exp());
        assert!((uh.d[c] - yhat * (1.0 - yhat)).abs() <= 1e-15, "D[{c}]");
    }
    let xb = extended(x.as_ref());
    let want = Mat::from_fn(d + 1, d + 1, |i, j| {
        (0..n)
            .map(|c| xb[(i, c)] * uh.d[c] * xb[(j, c)])
            .sum::<f64>()
            / n as f64
    });
    assert!(max_abs(&(&uh.hessian - &want)) <= 1e-14 * max_abs(&want));
    // and the finite-difference Hessian of the loss in [b; w] agrees
    let fd = block_fd_hessian(&mlp, &p, &x, &t, 0, 0);
    assert!(max_abs(&(&uh.hessian - &fd)) <= 1e-7 * (1.0 + max_abs(&fd)));
}

/// Central differences of exact gradients over the block `[b_i; w_i]`, BatchNorm statistics
/// frozen at their batch values.
fn block_fd_hessian(
    mlp: &Mlp,
    p: &[f64],
    x: &Mat<f64>,
    t: &Targets,
    layer: usize,
    unit: usize,
) -> Mat<f64> {
    let stats = mlp
        .forward(p, x.as_ref(), Mode::Train)
        .expect("fwd")
        .batch_norm_stats();
    let (bi, wr) = mlp.layout().unit(layer, unit).expect("unit");
    let idx: Vec<usize> = std::iter::once(bi).chain(wr).collect();
    let h = 1e-5;
    let mut out = Mat::zeros(idx.len(), idx.len());
    let mut gp = vec![0.0; p.len()];
    let mut gm = vec![0.0; p.len()];
    for (j, &pj) in idx.iter().enumerate() {
        let mut q = p.to_vec();
        q[pj] += h;
        mlp.loss_and_grad(&q, x.as_ref(), t, Mode::Frozen(&stats), &mut gp)
            .expect("grad");
        q[pj] -= 2.0 * h;
        mlp.loss_and_grad(&q, x.as_ref(), t, Mode::Frozen(&stats), &mut gm)
            .expect("grad");
        for (i, &pi) in idx.iter().enumerate() {
            out[(i, j)] = (gp[pi] - gm[pi]) / (2.0 * h);
        }
    }
    out
}

#[test]
fn unit_hessian_matches_finite_difference_block_hessian() {
    let bn = |placement, stats_gradient| {
        Normalization::BatchNorm(BatchNormSpec {
            placement,
            stats_gradient,
            ..BatchNormSpec::default()
        })
    };
    let ln = |affine| {
        Normalization::LayerNorm(LayerNormSpec {
            affine,
            ..LayerNormSpec::default()
        })
    };
    let norms = [
        Normalization::None,
        bn(Placement::PostActivation, StatsGradient::Full),
        bn(Placement::PreActivation, StatsGradient::Constant),
        ln(LayerNormAffine::Vector),
        ln(LayerNormAffine::Scalar),
    ];
    let acts = [Activation::Tanh, Activation::Softplus, Activation::Sigmoid];
    let losses = [Loss::Mse, Loss::BceWithLogits, Loss::SoftmaxCrossEntropy];
    let mut cases = 0;
    for (k, norm) in norms.iter().enumerate() {
        for (a, act) in acts.iter().enumerate() {
            let loss = losses[(k + a) % 3];
            let k_out = if loss == Loss::SoftmaxCrossEntropy {
                3
            } else {
                2
            };
            let layers = vec![
                LayerSpec {
                    width: 4,
                    activation: *act,
                    norm: *norm,
                },
                LayerSpec {
                    width: 3,
                    activation: acts[(a + 1) % 3],
                    norm: *norm,
                },
                LayerSpec {
                    width: k_out,
                    activation: Activation::Identity,
                    norm: Normalization::None,
                },
            ];
            let mlp = net(3, layers, loss);
            let seed = (10 * k + a) as u64;
            let p = perturbed_params(&mlp, seed, 0.4);
            let x = scaled_data(3, 12, seed + 100);
            let t = random_targets(loss, k_out, 12, seed + 200);
            for (layer, unit) in [(0, 1), (1, 2), (2, 0)] {
                let uh = unit_hessian(&mlp, &p, x.as_ref(), &t, layer, unit, Mode::Train)
                    .expect("unit hessian");
                assert_eq!(uh.closed_form_d, layer == 2);
                let fd = block_fd_hessian(&mlp, &p, &x, &t, layer, unit);
                let err = max_abs(&(&uh.hessian - &fd));
                assert!(
                    err <= 1e-6 * (1.0 + max_abs(&fd)),
                    "{norm:?} {act:?} {loss:?} layer {layer} unit {unit}: err {err}"
                );
                // H = (1/N) Ā D Āᵀ with Ā the normalized input of the layer
                let abar = extended_hidden_matrix(
                    &mlp,
                    &p,
                    x.as_ref(),
                    layer,
                    WithNorm::Normalized,
                    Mode::Train,
                )
                .expect("abar");
                assert!(max_abs(&(&abar - &uh.abar)) <= 0.0);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 45);
}

fn loss_fd_hessian(mlp: &Mlp, p: &[f64], x: &Mat<f64>, t: &Targets, mode: Mode<'_>) -> Mat<f64> {
    let n = p.len();
    let h = 1e-4;
    let mut q = p.to_vec();
    let mut f = |i: usize, si: f64, j: usize, sj: f64| {
        q[i] += si * h;
        q[j] += sj * h;
        let v = loss_at(mlp, &q, x, t, mode);
        q[i] -= si * h;
        q[j] -= sj * h;
        v
    };
    Mat::from_fn(n, n, |i, j| {
        (f(i, 1.0, j, 1.0) - f(i, 1.0, j, -1.0) - f(i, -1.0, j, 1.0) + f(i, -1.0, j, -1.0))
            / (4.0 * h * h)
    })
}

#[test]
fn network_hvp_matches_second_differences_of_the_loss() {
    let layers = vec![
        LayerSpec {
            width: 3,
            activation: Activation::Tanh,
            norm: Normalization::BatchNorm(BatchNormSpec::default()),
        },
        LayerSpec {
            width: 3,
            activation: Activation::Softplus,
            norm: Normalization::LayerNorm(LayerNormSpec::default()),
        },
        LayerSpec {
            width: 2,
            activation: Activation::Identity,
            norm: Normalization::None,
        },
    ];
    let mlp = net(2, layers, Loss::SoftmaxCrossEntropy);
    let p = perturbed_params(&mlp, 21, 0.4);
    let x = randn(2, 7, 22);
    let t = random_targets(Loss::SoftmaxCrossEntropy, 2, 7, 23);
    // full batch statistics: the true Hessian of the training-mode batch loss
    let op = HessianOperator::new(&mlp, &p, x.as_ref(), &t, Mode::Train).expect("op");
    let dense = op.to_dense();
    let fd = loss_fd_hessian(&mlp, &p, &x, &t, Mode::Train);
    // finite differences of gradients give the same matrix
    let n = op.dim();
    let mut col = vec![0.0; n];
    for j in 0..n {
        let mut e = vec![0.0; n];
        e[j] = 1.0;
        op.apply_finite_difference(&e, &mut col);
        for i in 0..n {
            assert!(
                (col[i] - dense[(i, j)]).abs() <= 1e-6 * (1.0 + max_abs(&dense)),
                "({i},{j})"
            );
        }
    }
    let scale = 1.0 + max_abs(&fd);
    let err = max_abs(&(&dense - &fd));
    assert!(err <= 1e-5 * scale, "HVP vs loss second differences: {err}");
    // symmetry of the operator: uᵀ H v = vᵀ H u
    let u: Vec<f64> = randn(op.dim(), 1, 1).col(0).iter().copied().collect();
    let v: Vec<f64> = randn(op.dim(), 1, 2).col(0).iter().copied().collect();
    let (mut hu, mut hv) = (vec![0.0; op.dim()], vec![0.0; op.dim()]);
    op.apply(&u, &mut hu);
    op.apply(&v, &mut hv);
    let a: f64 = u.iter().zip(&hv).map(|(x, y)| x * y).sum();
    let b: f64 = v.iter().zip(&hu).map(|(x, y)| x * y).sum();
    assert!((a - b).abs() <= 1e-7 * (1.0 + a.abs()), "{a} vs {b}");
    // linearity: H(2u + v) = 2Hu + Hv
    let w: Vec<f64> = u.iter().zip(&v).map(|(x, y)| 2.0 * x + y).collect();
    let mut hw = vec![0.0; op.dim()];
    op.apply(&w, &mut hw);
    for i in 0..op.dim() {
        assert!((hw[i] - 2.0 * hu[i] - hv[i]).abs() <= 1e-6 * (1.0 + hw[i].abs()));
    }
}

#[test]
fn unit_hessian_is_a_block_of_the_frozen_network_hessian() {
    let layers = vec![
        LayerSpec {
            width: 4,
            activation: Activation::Sigmoid,
            norm: Normalization::BatchNorm(BatchNormSpec::default()),
        },
        LayerSpec {
            width: 2,
            activation: Activation::Identity,
            norm: Normalization::None,
        },
    ];
    let mlp = net(3, layers, Loss::Mse);
    let p = perturbed_params(&mlp, 31, 0.3);
    let x = scaled_data(3, 9, 32);
    let t = random_targets(Loss::Mse, 2, 9, 33);
    let stats = mlp
        .forward(&p, x.as_ref(), Mode::Train)
        .expect("fwd")
        .batch_norm_stats();
    let dense = HessianOperator::new(&mlp, &p, x.as_ref(), &t, Mode::Frozen(&stats))
        .expect("op")
        .to_dense();
    for (layer, unit) in [(0, 2), (1, 1)] {
        let uh = unit_hessian(&mlp, &p, x.as_ref(), &t, layer, unit, Mode::Train).expect("unit");
        let (bi, wr) = mlp.layout().unit(layer, unit).expect("unit");
        let idx: Vec<usize> = std::iter::once(bi).chain(wr).collect();
        for (i, &pi) in idx.iter().enumerate() {
            for (j, &pj) in idx.iter().enumerate() {
                assert!(
                    (uh.hessian[(i, j)] - dense[(pi, pj)]).abs()
                        <= 1e-6 * (1.0 + max_abs(&uh.hessian))
                );
            }
        }
    }
}

/// The real data sets, features with a constant column removed (digits has constant pixels,
/// which make every extended matrix singular).
fn real_data() -> Vec<(String, Mat<f64>)> {
    BUILTIN_DATASETS
        .iter()
        .map(|name| {
            let ds = Dataset::builtin(name).expect("builtin");
            let x = ds.x;
            let keep: Vec<usize> = (0..x.nrows())
                .filter(|&r| (0..x.ncols()).any(|c| (x[(r, c)] - x[(r, 0)]).abs() > 0.0))
                .collect();
            (
                name.to_string(),
                Mat::from_fn(keep.len(), x.ncols(), |r, c| x[(keep[r], c)]),
            )
        })
        .collect()
}

#[test]
fn theorem6_standardization_is_within_sqrt_d_plus_one_of_any_row_scaling() {
    let mut rng_seed = 1000;
    for (name, x) in real_data() {
        let dc = DataConditioning::of(x.as_ref()).expect("conditioning");
        let (d, n) = (x.nrows(), x.ncols());
        assert!(
            dc.raw.is_finite() && dc.standardized.is_finite(),
            "{name}: {dc:?}"
        );
        // (22): centring does not worsen the conditioning of the extended matrix
        assert!(dc.centred <= dc.raw * (1.0 + 1e-10), "{name}: {dc:?}");
        // (23) with the Van der Sluis scaling
        assert!(
            dc.standardized <= dc.sqrt_d1 * dc.van_der_sluis * (1.0 + 1e-10),
            "{name}: {dc:?}"
        );
        // (23) with random positive diagonal scalings, log-uniform over six decades
        for _ in 0..10 {
            let r = randn(d + 1, 1, rng_seed);
            rng_seed += 1;
            let dvec: Vec<f64> = (0..=d)
                .map(|i| 10f64.powf(1.5 * r[(i, 0)].clamp(-2.0, 2.0)))
                .collect();
            let rhs = DataConditioning::theorem6_rhs(x.as_ref(), &dvec).expect("rhs");
            assert!(
                dc.standardized <= rhs * (1.0 + 1e-10),
                "{name}: {} > {rhs}",
                dc.standardized
            );
        }
        // the rows of the standardized extended matrix all have norm sqrt(N), like 1ᵀ
        let (_, xs) =
            InputTransform::fit_apply(x.as_ref(), InputScaling::Standardize).expect("std");
        for rn in row_norms(extended(xs.as_ref()).as_ref()) {
            assert!((rn - (n as f64).sqrt()).abs() <= 1e-10 * (n as f64).sqrt());
        }
        // min-max rows lie in [1, sqrt(N)]
        let (_, xm) = InputTransform::fit_apply(x.as_ref(), InputScaling::MinMax).expect("minmax");
        for rn in row_norms(extended(xm.as_ref()).as_ref()) {
            assert!(
                (1.0 - 1e-12..=(n as f64).sqrt() * (1.0 + 1e-12)).contains(&rn),
                "{name}: min-max row norm {rn}"
            );
        }
        // standardization helps on every real set (their features have very different scales),
        // except iris, which is the well-conditioned control case
        if name != "iris" {
            assert!(dc.standardized < dc.raw, "{name}: {dc:?}");
        }
    }
}

#[test]
fn theorem7_layer_norm_column_norms() {
    let (d_in, d, n) = (3, 6, 20);
    let x = scaled_data(d_in, n, 41);
    for affine in [
        LayerNormAffine::None,
        LayerNormAffine::Scalar,
        LayerNormAffine::Vector,
    ] {
        for eps in [0.0, 1e-3] {
            let layers = vec![
                LayerSpec {
                    width: d,
                    activation: Activation::Tanh,
                    norm: Normalization::LayerNorm(LayerNormSpec {
                        placement: Placement::PostActivation,
                        affine,
                        eps,
                    }),
                },
                LayerSpec {
                    width: 1,
                    activation: Activation::Identity,
                    norm: Normalization::None,
                },
            ];
            let mlp = net(d_in, layers, Loss::Mse);
            let p = perturbed_params(&mlp, 42, 0.8);
            let g = mlp
                .layout()
                .find(ParamKind::Gain, 0)
                .map(|b| p[b.range.clone()].to_vec())
                .unwrap_or_default();
            let s = mlp
                .layout()
                .find(ParamKind::Shift, 0)
                .map(|b| p[b.range.clone()].to_vec())
                .unwrap_or_default();
            let (lo, hi) = layer_norm_column_bounds(d, &g, &s);
            let hbar =
                extended_hidden_matrix(&mlp, &p, x.as_ref(), 1, WithNorm::Normalized, Mode::Train)
                    .expect("abar");
            let norms = col_norms(hbar.as_ref());
            for &cn in &norms {
                if eps == 0.0 && affine != LayerNormAffine::Vector {
                    assert!(
                        (cn - lo).abs() <= 1e-12 * lo,
                        "{affine:?}: column norm {cn} vs {lo}"
                    );
                } else if eps == 0.0 {
                    assert!(
                        cn >= lo * (1.0 - 1e-12) && cn <= hi * (1.0 + 1e-12),
                        "{affine:?}: {cn} outside [{lo}, {hi}]"
                    );
                } else if affine != LayerNormAffine::Vector {
                    // eps shrinks ‖ĥ‖² = d s²/(s² + eps) below d
                    assert!(
                        cn <= lo * (1.0 + 1e-12) && cn >= 1.0,
                        "{affine:?} eps: {cn} vs {lo}"
                    );
                }
            }
            // every column of Ĥ sums to zero, so a combination of the rows of [1ᵀ; H̃] vanishes:
            // exactly one zero singular value (the next layer's unit Hessian is singular)
            let sv = hbar.singular_values().expect("svd");
            assert!(
                sv[d] <= 1e-12 * sv[0] && sv[d - 1] > 1e-6 * sv[0],
                "{affine:?}: {sv:?}"
            );
            // without the normalization the columns are not equalized
            let raw = col_norms(
                extended_hidden_matrix(&mlp, &p, x.as_ref(), 1, WithNorm::Raw, Mode::Train)
                    .expect("raw")
                    .as_ref(),
            );
            let spread = |v: &[f64]| {
                v.iter().fold(0.0f64, |m, a| m.max(*a))
                    / v.iter().fold(f64::INFINITY, |m, a| m.min(*a))
            };
            if affine != LayerNormAffine::Vector && eps == 0.0 {
                assert!(spread(&norms) < 1.0 + 1e-12 && spread(&raw) > 1.01);
            }
        }
    }
}

#[test]
fn batch_norm_rows_are_standardized_and_orthogonal_to_ones() {
    // (28): with γ = 1, β = 0 and eps = 0 the next layer sees Ĥ̄ = [1ᵀ; Ĥ] with rows of norm sqrt(N)
    let bn = BatchNormSpec {
        affine: false,
        eps: 0.0,
        ..BatchNormSpec::default()
    };
    let layers = vec![
        LayerSpec {
            width: 5,
            activation: Activation::Softplus,
            norm: Normalization::BatchNorm(bn),
        },
        LayerSpec {
            width: 1,
            activation: Activation::Identity,
            norm: Normalization::None,
        },
    ];
    let mlp = net(3, layers, Loss::Mse);
    let p = perturbed_params(&mlp, 51, 0.5);
    let n = 25;
    let x = scaled_data(3, n, 52);
    let hbar = extended_hidden_matrix(&mlp, &p, x.as_ref(), 1, WithNorm::Normalized, Mode::Train)
        .expect("abar");
    for (r, rn) in row_norms(hbar.as_ref()).iter().enumerate() {
        assert!(
            (rn - (n as f64).sqrt()).abs() <= 1e-12 * rn,
            "row {r}: {rn}"
        );
        let dot: f64 = (0..n).map(|c| hbar[(r, c)]).sum();
        if r > 0 {
            assert!(
                dot.abs() <= 1e-12 * n as f64,
                "row {r} not orthogonal to 1ᵀ: {dot}"
            );
        }
    }
    let raw =
        extended_hidden_matrix(&mlp, &p, x.as_ref(), 1, WithNorm::Raw, Mode::Train).expect("raw");
    assert!(kappa(hbar.as_ref()).expect("k") < kappa(raw.as_ref()).expect("k"));
}

#[test]
fn hessian_errors() {
    let mlp = net(
        2,
        vec![LayerSpec {
            width: 2,
            activation: Activation::Tanh,
            norm: Normalization::None,
        }],
        Loss::Mse,
    );
    let p = mlp.init_params(1);
    let x = randn(2, 4, 1);
    let t = random_targets(Loss::Mse, 2, 4, 1);
    assert_eq!(
        unit_hessian(&mlp, &p, x.as_ref(), &t, 1, 0, Mode::Train).err(),
        Some(NnError::NoSuchLayer {
            layer: 1,
            n_layers: 1
        })
    );
    assert_eq!(
        unit_hessian(&mlp, &p, x.as_ref(), &t, 0, 2, Mode::Train).err(),
        Some(NnError::NoSuchUnit {
            layer: 0,
            unit: 2,
            width: 2
        })
    );
    assert!(matches!(
        kappa(Mat::<f64>::zeros(0, 3).as_ref()),
        Err(NnError::Empty { .. })
    ));
    assert!(
        kappa(Mat::<f64>::zeros(2, 3).as_ref())
            .expect("k")
            .is_infinite()
    );
    assert!(row_scaled(x.as_ref(), &[1.0]).is_err());
}

#[test]
fn lanczos_on_the_network_hessian_matches_dense_eigenvalues() {
    use precond_linalg::{LanczosOptions, lanczos_extremes};
    // logistic regression on breast_cancer: raw vs standardized inputs (Theorem 5 + 6 in action)
    let ds = Dataset::builtin("breast_cancer").expect("data");
    let mlp = net(
        30,
        vec![LayerSpec {
            width: 1,
            activation: Activation::Identity,
            norm: Normalization::None,
        }],
        Loss::BceWithLogits,
    );
    let p = vec![0.0; mlp.layout().len()];
    let (_, xs) = InputTransform::fit_apply(ds.x.as_ref(), InputScaling::Standardize).expect("std");
    let mut kappas = Vec::new();
    for x in [ds.x.clone(), xs] {
        let op = HessianOperator::new(&mlp, &p, x.as_ref(), &ds.targets, Mode::Train).expect("op");
        let dense = op.to_dense();
        let ev = dense
            .self_adjoint_eigenvalues(faer::Side::Lower)
            .expect("eig");
        let lz = lanczos_extremes(&op, LanczosOptions::default()).expect("lanczos");
        let (lmin, lmax) = (ev[0], ev[ev.len() - 1]);
        assert!(
            (lz.lambda_max - lmax).abs() <= 1e-8 * lmax,
            "{} vs {lmax}",
            lz.lambda_max
        );
        assert!(
            (lz.lambda_min - lmin).abs() <= 1e-6 * lmin.abs().max(1e-12 * lmax),
            "{} vs {lmin}",
            lz.lambda_min
        );
        kappas.push(lmax / lmin);
        // at θ = 0, ŷ = 1/2, so D = I/4 and H = X̄X̄ᵀ/(4N) exactly
        let xb = extended(x.as_ref());
        let want = weighted_gram(xb.as_ref(), &vec![0.25; x.ncols()]);
        let perm = |k: usize| if k == 30 { 0 } else { k + 1 };
        for i in 0..31 {
            for j in 0..31 {
                assert!(
                    (dense[(i, j)] - want[(perm(i), perm(j))]).abs() <= 1e-12 * want.norm_max()
                );
            }
        }
    }
    assert!(
        kappas[1] * 1e6 < kappas[0],
        "standardization: κ(H) {:e} -> {:e}",
        kappas[0],
        kappas[1]
    );

    // a hidden-layer network with BatchNorm: Lanczos extremes vs the dense spectrum
    let layers = vec![
        LayerSpec {
            width: 6,
            activation: Activation::Tanh,
            norm: Normalization::BatchNorm(BatchNormSpec::default()),
        },
        LayerSpec {
            width: 3,
            activation: Activation::Identity,
            norm: Normalization::None,
        },
    ];
    let wine = Dataset::builtin("wine").expect("wine");
    let (_, xw) =
        InputTransform::fit_apply(wine.x.as_ref(), InputScaling::Standardize).expect("std");
    let mlp = net(13, layers, Loss::SoftmaxCrossEntropy);
    let p = perturbed_params(&mlp, 61, 0.1);
    let op = HessianOperator::new(&mlp, &p, xw.as_ref(), &wine.targets, Mode::Train).expect("op");
    let ev = op
        .to_dense()
        .self_adjoint_eigenvalues(faer::Side::Lower)
        .expect("eig");
    let lz = lanczos_extremes(&op, LanczosOptions::default()).expect("lanczos");
    let top = ev[ev.len() - 1];
    assert!((lz.lambda_max - top).abs() <= 1e-8 * top);
    assert!(
        (lz.lambda_min - ev[0]).abs() <= 1e-6 * top,
        "{} vs {}",
        lz.lambda_min,
        ev[0]
    );
}
