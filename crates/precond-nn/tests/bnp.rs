//! Batch Normalization Preconditioning on networks, against independent truth: plain gradient
//! descent on the standardized reparameterization (built separately, with frozen-statistics
//! BatchNorm layers and standardized inputs), Theorem 6 on the unit Hessian in BNP's variables,
//! training at batch size 1, and equality of training- and inference-mode outputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use faer::Mat;
use precond_linalg::{row_equilibrate, sym_cond};
use precond_nn::*;
use precond_optim::{BnpSpec, BnpStats, OptimizerConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Features with offsets and very different scales (badly conditioned `X̄`).
fn skewed_data(d: usize, n: usize, seed: u64) -> Mat<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Mat::from_fn(d, n, |r, _| {
        let scale = 10f64.powi(r as i32 % 3 - 1);
        3.0 + r as f64 + scale * rng.random_range(-1.0..1.0)
    })
}

/// `[b; w]` of every layer from the standardized parameters: `w = Σ⁻¹ w̃` per input feature,
/// `b = b̃ − μᵀ Σ⁻¹ w̃` (row-major weights, layout of `mlp`).
fn from_standardized(mlp: &Mlp, stats: &[(Vec<f64>, Vec<f64>)], eps: f64, pt: &[f64]) -> Vec<f64> {
    let mut p = pt.to_vec();
    for (l, (mu, var)) in stats.iter().enumerate() {
        let w = mlp.layout().find(ParamKind::Weight, l).unwrap();
        let b = mlp.layout().find(ParamKind::Bias, l).unwrap();
        let (units, d) = w.shape;
        for i in 0..units {
            let mut shift = 0.0;
            for j in 0..d {
                let k = w.range.start + i * d + j;
                let inv_sd = 1.0 / (var[j] + eps).sqrt();
                p[k] = pt[k] * inv_sd;
                shift += mu[j] * inv_sd * pt[k];
            }
            p[b.range.start + i] = pt[b.range.start + i] - shift;
        }
    }
    p
}

#[test]
fn frozen_bnp_steps_equal_gd_on_the_standardized_network() {
    let (d, hidden, n, eps, lr, steps) = (4, 6, 40, 1e-5, 0.05, 6);
    let x = skewed_data(d, n, 1);
    let labels: Vec<usize> = (0..n)
        .map(|c| usize::from(x[(0, c)] + x[(2, c)] > 8.0))
        .collect();
    let targets = Targets::Classes {
        labels,
        n_classes: 2,
    };
    let loss = Loss::SoftmaxCrossEntropy;
    let plain =
        MlpConfig::feedforward(d, &[hidden], Activation::Tanh, Normalization::None, 2, loss);
    let mut net = Mlp::new(plain).unwrap();
    // the standardized network: the same layers, the hidden output standardized by a BatchNorm
    // without affine parameters evaluated with frozen statistics, and standardized inputs
    let bn = BatchNormSpec {
        affine: false,
        eps,
        ..BatchNormSpec::default()
    };
    let std_net = Mlp::new(MlpConfig::feedforward(
        d,
        &[hidden],
        Activation::Tanh,
        Normalization::BatchNorm(bn),
        2,
        loss,
    ))
    .unwrap();
    assert_eq!(std_net.layout().len(), net.layout().len());
    // frozen statistics: arbitrary but fixed (the data's, and made-up hidden ones)
    let data_stats = NormStats::of_batch(x.as_ref());
    let hidden_mean: Vec<f64> = (0..hidden).map(|j| 0.1 * j as f64 - 0.2).collect();
    let hidden_var: Vec<f64> = (0..hidden).map(|j| 0.05 + 0.1 * j as f64).collect();
    let stats = vec![
        (data_stats.mean.clone(), data_stats.var.clone()),
        (hidden_mean.clone(), hidden_var.clone()),
    ];
    let xt = Mat::from_fn(d, n, |r, c| {
        (x[(r, c)] - data_stats.mean[r]) / (data_stats.var[r] + eps).sqrt()
    });
    let frozen = [
        Some(NormStats {
            mean: hidden_mean.clone(),
            var: hidden_var.clone(),
        }),
        None,
    ];
    // reference: plain GD on (W̃, b̃)
    let mut pt = std_net.init_params(3);
    let mut g = vec![0.0; pt.len()];
    for _ in 0..steps {
        std_net
            .loss_and_grad(&pt, xt.as_ref(), &targets, Mode::Frozen(&frozen), &mut g)
            .unwrap();
        for (p, gi) in pt.iter_mut().zip(&g) {
            *p -= lr * gi;
        }
    }
    // BNP on (W, b) with the same statistics, frozen by momentum 0
    let spec = BnpSpec { momentum: 0.0, eps };
    let mut bnp = Bnp::new(&net, spec).unwrap();
    for (l, (m, v)) in stats.iter().enumerate() {
        bnp.set_layer(l, BnpStats::from_stats(m, v, spec).unwrap())
            .unwrap();
    }
    let mut params = from_standardized(&net, &stats, eps, &std_net.init_params(3));
    let mut opt = OptimizerConfig::from_json(&format!(r#"{{"optimizer": "sgd", "lr": {lr}}}"#))
        .unwrap()
        .build(params.len())
        .unwrap();
    let set = Dataset {
        name: "skewed".into(),
        feature_names: (0..d).map(|j| format!("x{j}")).collect(),
        target_name: "y".into(),
        x: x.clone(),
        targets: targets.clone(),
    };
    let config = TrainConfig {
        epochs: steps,
        batch_size: n,
        shuffle: false,
        ..TrainConfig::default()
    };
    train_bnp(
        &mut net,
        &mut bnp,
        &mut params,
        &mut opt,
        &set,
        None,
        &config,
        |_| Control::Continue,
    )
    .unwrap();
    let mapped = from_standardized(&net, &stats, eps, &pt);
    let size = mapped.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (k, (a, b)) in params.iter().zip(&mapped).enumerate() {
        assert!(
            (a - b).abs() <= 1e3 * f64::EPSILON * size,
            "parameter {k}: BNP {a} vs standardized GD {b}"
        );
    }
    // the statistics did not move (momentum 0) although every step observed a batch
    assert_eq!(bnp.layers()[0].observations(), steps as u64);
    assert_eq!(bnp.layers()[1].mean(), hidden_mean.as_slice());
}

/// `Sᵀ H S` with `S` from the exact statistics of `x` (row-major `(d + 1)²` factor).
fn congruence(h: &Mat<f64>, s: &[f64]) -> Mat<f64> {
    let n = h.nrows();
    let sm = Mat::from_fn(n, n, |r, c| s[r * n + c]);
    sm.transpose() * h * &sm
}

#[test]
fn theorem6_unit_hessian_in_bnp_variables_is_the_standardized_gram() {
    let (d, n) = (5, 60);
    let x = skewed_data(d, n, 7);
    let st = NormStats::of_batch(x.as_ref());
    let spec = BnpSpec {
        momentum: 0.1,
        eps: 0.0,
    };
    let stats = BnpStats::from_stats(&st.mean, &st.var, spec).unwrap();
    let s = stats.factor();
    // standardized extended matrix X̄̃, computed directly
    let xt_bar =
        extended(Mat::from_fn(d, n, |r, c| (x[(r, c)] - st.mean[r]) / st.var[r].sqrt()).as_ref());
    let sqrt_d1 = ((d + 1) as f64).sqrt();
    // linear regression (D = I) and logistic regression (D = ŷ(1 − ŷ))
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let reg_targets = Targets::Values(Mat::from_fn(1, n, |_, _| rng.random_range(-1.0..1.0)));
    let cls_targets = Targets::Classes {
        labels: (0..n).map(|c| usize::from(x[(1, c)] > 4.0)).collect(),
        n_classes: 2,
    };
    for (loss, targets) in [(Loss::Mse, reg_targets), (Loss::BceWithLogits, cls_targets)] {
        let net = Mlp::new(MlpConfig::feedforward(
            d,
            &[],
            Activation::Identity,
            Normalization::None,
            1,
            loss,
        ))
        .unwrap();
        let params: Vec<f64> = net.init_params(9).iter().map(|v| 0.3 * v).collect();
        let uh = unit_hessian(&net, &params, x.as_ref(), &targets, 0, 0, Mode::Train).unwrap();
        let h_bnp = congruence(&uh.hessian, &s);
        // (1/N) X̄̃ D X̄̃ᵀ from the standardized matrix
        let scaled = Mat::from_fn(d + 1, n, |r, c| xt_bar[(r, c)] * uh.d[c]);
        let gram = &scaled * xt_bar.transpose() * faer::Scale(1.0 / n as f64);
        // rounding of the congruence: entries of H times those of S squared
        let s_max = s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let size = uh.hessian.norm_max() * s_max * s_max * ((d + 1) * (d + 1)) as f64;
        for r in 0..=d {
            for c in 0..=d {
                assert!(
                    (h_bnp[(r, c)] - gram[(r, c)]).abs() <= 16.0 * f64::EPSILON * size,
                    "{loss:?} ({r},{c}): {} vs {}",
                    h_bnp[(r, c)],
                    gram[(r, c)]
                );
            }
        }
        let k_bnp = sym_cond(h_bnp.as_ref()).unwrap();
        let k_gram = sym_cond(gram.as_ref()).unwrap();
        let k_raw = sym_cond(uh.hessian.as_ref()).unwrap();
        assert!(
            (k_bnp - k_gram).abs() <= 1e-8 * k_gram,
            "{loss:?}: {k_bnp} vs {k_gram}"
        );
        assert!(
            k_bnp < k_raw / 10.0,
            "{loss:?}: BNP κ {k_bnp} vs raw κ {k_raw}"
        );
        if loss == Loss::Mse {
            // D = I: κ(Sᵀ H S) = κ(X̄̃)²
            let kx = kappa(xt_bar.as_ref()).unwrap();
            assert!(
                (k_bnp - kx * kx).abs() <= 1e-8 * k_bnp,
                "{k_bnp} vs {}",
                kx * kx
            );
        }
    }
    // Theorem 6: κ(X̄̃) ≤ sqrt(d + 1) κ(D X̄) for the row-equilibrating D (and the identity)
    let x_bar = extended(x.as_ref());
    let eq = row_equilibrate(x_bar.as_ref()).unwrap();
    let k_std = kappa(xt_bar.as_ref()).unwrap();
    let k_eq = kappa(eq.scaled.as_ref()).unwrap();
    assert!(k_std <= sqrt_d1 * k_eq, "{k_std} > sqrt(d+1)·{k_eq}");
    assert!(k_std <= sqrt_d1 * kappa(x_bar.as_ref()).unwrap());
}

fn digits_subset(n: usize) -> Dataset {
    let data = Dataset::builtin("digits").unwrap();
    let idx: Vec<usize> = (0..n).collect();
    data.subset(&idx).unwrap()
}

#[test]
fn trains_at_batch_size_one_and_training_equals_inference() {
    let set = digits_subset(300);
    let mut net = Mlp::new(MlpConfig::feedforward(
        64,
        &[32],
        Activation::Relu,
        Normalization::None,
        10,
        Loss::SoftmaxCrossEntropy,
    ))
    .unwrap();
    let mut params = net.init_params(1);
    let mut bnp = Bnp::new(&net, BnpSpec::default()).unwrap();
    let mut opt = OptimizerConfig::from_json(r#"{"optimizer": "sgd", "lr": 0.03}"#)
        .unwrap()
        .build(params.len())
        .unwrap();
    let config = TrainConfig {
        epochs: 2,
        batch_size: 1,
        seed: 4,
        ..TrainConfig::default()
    };
    let h = train_bnp(
        &mut net,
        &mut bnp,
        &mut params,
        &mut opt,
        &set,
        None,
        &config,
        |_| Control::Continue,
    )
    .unwrap();
    let first = h.epochs[0].train_loss;
    let last = h.last().unwrap().train_loss;
    assert!(
        last.is_finite() && last < 0.5 * first,
        "loss {first} -> {last}"
    );
    let acc = h.last().unwrap().train_accuracy.unwrap();
    assert!(
        acc > 0.8,
        "accuracy {acc}, losses {:?}",
        h.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>()
    );
    assert!(params.iter().all(|p| p.is_finite()));
    assert_eq!(bnp.layers()[0].observations(), 600);
    // the statistics are the data's (population variance is positive where pixels vary)
    let st = NormStats::of_batch(set.x.as_ref());
    let j = (0..64)
        .max_by(|&a, &b| st.var[a].total_cmp(&st.var[b]))
        .unwrap();
    let est = bnp.layers()[0].var()[j];
    assert!(
        est > 0.2 * st.var[j] && est < 5.0 * st.var[j],
        "{est} vs {}",
        st.var[j]
    );
    // BNP leaves the network unnormalized: training- and inference-mode outputs are identical
    let tr = net
        .evaluate(&params, set.x.as_ref(), &set.targets, Mode::Train)
        .unwrap();
    let ev = net
        .evaluate(&params, set.x.as_ref(), &set.targets, Mode::Eval)
        .unwrap();
    assert_eq!(tr.loss.to_bits(), ev.loss.to_bits());
    let (a, b) = (tr.forward.output(), ev.forward.output());
    for c in 0..a.ncols() {
        for r in 0..a.nrows() {
            assert_eq!(a[(r, c)].to_bits(), b[(r, c)].to_bits());
        }
    }
}

#[test]
fn mismatched_networks_and_gradients_are_refused() {
    let net = Mlp::new(MlpConfig::feedforward(
        3,
        &[4],
        Activation::Tanh,
        Normalization::None,
        2,
        Loss::SoftmaxCrossEntropy,
    ))
    .unwrap();
    let other = Mlp::new(MlpConfig::feedforward(
        3,
        &[5],
        Activation::Tanh,
        Normalization::None,
        2,
        Loss::SoftmaxCrossEntropy,
    ))
    .unwrap();
    let mut bnp = Bnp::new(&net, BnpSpec::default()).unwrap();
    let mut g = vec![1.0; other.layout().len()];
    assert!(matches!(
        bnp.precondition(&other, &mut g),
        Err(NnError::DimensionMismatch { .. })
    ));
    let mut short = vec![1.0; net.layout().len() - 1];
    assert!(bnp.precondition(&net, &mut short).is_err());
    assert!(short.iter().all(|&v| v.to_bits() == 1f64.to_bits()));
    let bad = BnpStats::new(7, BnpSpec::default()).unwrap();
    assert!(matches!(
        bnp.set_layer(1, bad),
        Err(NnError::DimensionMismatch {
            expected: 4,
            got: 7,
            ..
        })
    ));
    assert!(matches!(
        bnp.set_layer(5, BnpStats::new(4, BnpSpec::default()).unwrap()),
        Err(NnError::NoSuchLayer { layer: 5, .. })
    ));
    let fwd = other
        .forward(
            &other.init_params(0),
            Mat::zeros(3, 2).as_ref(),
            Mode::Train,
        )
        .unwrap();
    assert!(bnp.observe(&net, &fwd).is_err());
    assert_eq!(bnp.layers()[0].observations(), 0);
}
