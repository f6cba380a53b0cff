//! Backpropagation against central finite differences over random architectures, activations,
//! losses, normalizations (BatchNorm pre/post, affine or not, full or constant statistics
//! gradient; LayerNorm none/scalar/vector affine, pre/post) and modes (train / eval / frozen).

mod common;

use common::*;
use faer::Mat;
use precond_nn::*;
use proptest::prelude::*;

fn norm_of(idx: u8, affine: bool, full: bool) -> Normalization {
    let placement = if idx.is_multiple_of(2) {
        Placement::PostActivation
    } else {
        Placement::PreActivation
    };
    match idx % 6 {
        0 => Normalization::None,
        1 | 2 => Normalization::BatchNorm(BatchNormSpec {
            placement,
            affine,
            eps: 1e-3,
            momentum: 0.1,
            stats_gradient: if full {
                StatsGradient::Full
            } else {
                StatsGradient::Constant
            },
        }),
        _ => Normalization::LayerNorm(LayerNormSpec {
            placement,
            affine: [
                LayerNormAffine::None,
                LayerNormAffine::Scalar,
                LayerNormAffine::Vector,
            ][(idx as usize / 2) % 3],
            eps: 1e-3,
        }),
    }
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    input_dim: usize,
    layers: Vec<(usize, u8, u8, bool, bool)>,
    loss: u8,
    batch: usize,
    mode: u8,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<u64>(),
        1usize..4,
        prop::collection::vec(
            (1usize..5, 0u8..5, 0u8..6, any::<bool>(), any::<bool>()),
            1..4,
        ),
        0u8..3,
        // small batches, and batches of 16 and more, whose backward activation pass runs in
        // two halves (the second half's bias gradient summed apart, then added)
        prop_oneof![3usize..7, 16usize..34],
        0u8..3,
    )
        .prop_map(|(seed, input_dim, layers, loss, batch, mode)| Case {
            seed,
            input_dim,
            layers,
            loss,
            batch,
            mode,
        })
}

fn build(c: &Case) -> (Mlp, Vec<f64>, Mat<f64>, Targets) {
    let loss = [Loss::Mse, Loss::BceWithLogits, Loss::SoftmaxCrossEntropy][c.loss as usize];
    let n = c.layers.len();
    let layers = c
        .layers
        .iter()
        .enumerate()
        .map(|(i, &(w, a, nidx, affine, full))| {
            let width = if i + 1 == n && loss == Loss::SoftmaxCrossEntropy {
                w.max(2)
            } else {
                w
            };
            LayerSpec {
                width,
                activation: Activation::ALL[a as usize],
                norm: norm_of(nidx, affine, full),
            }
        })
        .collect();
    let mlp = Mlp::new(MlpConfig {
        input_dim: c.input_dim,
        layers,
        loss,
    })
    .expect("valid config");
    let mut params = mlp.init_params(c.seed);
    // perturb every parameter (gains away from 1, shifts and biases away from 0)
    let noise = randn(params.len(), 1, c.seed ^ 0x55);
    for (i, p) in params.iter_mut().enumerate() {
        *p += 0.3 * noise[(i, 0)];
    }
    let x = randn(c.input_dim, c.batch, c.seed ^ 0xAA);
    let t = random_targets(loss, mlp.n_outputs(), c.batch, c.seed ^ 0x33);
    (mlp, params, x, t)
}

/// Smallest |input| of any ReLU (distance to the kink), for rejecting cases where finite
/// differences straddle it.
fn relu_margin(mlp: &Mlp, fwd: &Forward) -> f64 {
    let mut m = f64::INFINITY;
    for (l, t) in fwd.layers().iter().enumerate() {
        if mlp.config().layers[l].activation == Activation::Relu {
            let u = t.activation_input();
            for c in 0..u.ncols() {
                for r in 0..u.nrows() {
                    m = m.min(u[(r, c)].abs());
                }
            }
        }
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, rng_seed: proptest::test_runner::RngSeed::Fixed(8), ..ProptestConfig::default() })]

    #[test]
    fn backprop_matches_central_differences(c in case()) {
        let (mut mlp, params, x, t) = build(&c);
        // running statistics that differ from the initial (0, 1), for eval mode
        let warm = mlp.forward(&params, (&x * 1.7).as_ref(), Mode::Train).expect("forward");
        mlp.update_running_stats(&warm).expect("update");
        let mut grad = vec![0.0; mlp.layout().len()];
        let mode_train = [Mode::Train, Mode::Eval][(c.mode % 2) as usize];
        let ev = mlp.loss_and_grad(&params, x.as_ref(), &t, mode_train, &mut grad).expect("grad");
        prop_assume!(relu_margin(&mlp, &ev.forward) > 1e-4);
        // Layers with `StatsGradient::Constant` differentiate with the batch statistics held
        // fixed: the matching function freezes them at their current values.
        let frozen: Vec<Option<NormStats>> = mlp
            .config()
            .layers
            .iter()
            .zip(ev.forward.batch_norm_stats())
            .map(|(s, st)| match s.norm {
                Normalization::BatchNorm(b) if b.stats_gradient == StatsGradient::Constant => st,
                _ => None,
            })
            .collect();
        let fd_mode = match mode_train { Mode::Train => Mode::Frozen(&frozen), m => m };
        let h = 1e-5;
        // Richardson extrapolation of central differences at h and h/2 (error O(h⁴)); the
        // difference of the two raw estimates bounds the reference's own error (normalizations
        // of nearly constant features have derivatives of size eps^{-k/2})
        let fd1 = fd_gradient(&mlp, &params, &x, &t, fd_mode, h);
        let fd2 = fd_gradient(&mlp, &params, &x, &t, fd_mode, h / 2.0);
        let fd: Vec<f64> = fd1.iter().zip(&fd2).map(|(a, b)| (4.0 * b - a) / 3.0).collect();
        let gmax = grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        let base = 1e-6 * (1.0 + gmax + ev.loss.abs());
        for (i, (a, b)) in grad.iter().zip(&fd).enumerate() {
            let tol = base + (fd1[i] - fd2[i]).abs();
            prop_assert!((a - b).abs() <= tol, "param {} ({:?}): backprop {} vs fd {} (tol {})", i,
                mlp.layout().blocks().iter().find(|bl| bl.range.contains(&i)).map(|bl| bl.name.clone()), a, b, tol);
        }
        // input gradient dL/dx
        let out = ev.forward.output();
        let mut d = Mat::zeros(out.nrows(), out.ncols());
        mlp.config().loss.value_and_grad(out, &t, d.as_mut());
        let dx = mlp.backward(&params, &ev.forward, d.as_ref(), &mut grad).expect("backward");
        for col in 0..x.ncols() {
            for row in 0..x.nrows() {
                let central = |step: f64| {
                    let mut xp = x.clone();
                    xp[(row, col)] += step;
                    let mut xm = x.clone();
                    xm[(row, col)] -= step;
                    (loss_at(&mlp, &params, &xp, &t, fd_mode) - loss_at(&mlp, &params, &xm, &t, fd_mode)) / (2.0 * step)
                };
                let (f1, f2) = (central(h), central(h / 2.0));
                let fdx = (4.0 * f2 - f1) / 3.0;
                let dmax = dx.norm_max();
                prop_assert!((fdx - dx[(row, col)]).abs() <= 1e-6 * (1.0 + dmax + ev.loss.abs()) + (f1 - f2).abs(),
                    "dx ({}, {}): {} vs {}", row, col, dx[(row, col)], fdx);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(9), ..ProptestConfig::default() })]

    /// The exact R-operator Hessian-vector product against central differences of exact
    /// gradients, over the same random architectures.
    #[test]
    fn r_operator_hvp_matches_finite_differences(c in case()) {
        let (mlp, params, x, t) = build(&c);
        let mode = [Mode::Train, Mode::Eval][(c.mode % 2) as usize];
        let fwd = mlp.forward(&params, x.as_ref(), mode).expect("forward");
        prop_assume!(relu_margin(&mlp, &fwd) > 1e-3);
        let op = HessianOperator::new(&mlp, &params, x.as_ref(), &t, mode).expect("op");
        let v: Vec<f64> = randn(params.len(), 1, c.seed ^ 0x99).col(0).iter().copied().collect();
        let mut exact = vec![0.0; params.len()];
        let mut fd = vec![0.0; params.len()];
        precond_linalg::LinearOperator::apply(&op, &v, &mut exact);
        // reference: Richardson extrapolation of central differences, error O(h⁴)
        let pmax = params.iter().fold(1.0f64, |m, a| m.max(a.abs()));
        let vmax = v.iter().fold(0.0f64, |m, a| m.max(a.abs()));
        let h = 1e-5 * pmax / vmax;
        let mut fd2 = vec![0.0; params.len()];
        op.apply_finite_difference_step(&v, &mut fd, h);
        op.apply_finite_difference_step(&v, &mut fd2, 2.0 * h);
        // the difference of the two raw estimates bounds the extrapolated reference's error
        let fd_err: Vec<f64> = fd.iter().zip(&fd2).map(|(a, b)| (a - b).abs()).collect();
        for (a, b) in fd.iter_mut().zip(&fd2) {
            *a = (4.0 * *a - b) / 3.0;
        }
        let scale = 1.0 + exact.iter().fold(0.0f64, |m, a| m.max(a.abs()));
        for (i, (a, b)) in exact.iter().zip(&fd).enumerate() {
            prop_assert!((a - b).abs() <= 1e-6 * scale + fd_err[i], "component {}: R-op {} vs fd {}", i, a, b);
        }
        // the public entry point agrees with the operator where no statistics are frozen
        let plain = mlp.config().layers.iter().all(|s| !matches!(s.norm,
            Normalization::BatchNorm(b) if b.stats_gradient == StatsGradient::Constant));
        if plain || matches!(mode, Mode::Eval) {
            let mut hv = vec![0.0; params.len()];
            mlp.hessian_vector_product(&params, x.as_ref(), &t, mode, &v, &mut hv).expect("hvp");
            for (a, b) in hv.iter().zip(&exact) {
                prop_assert!((a - b).abs() <= 1e-12 * scale);
            }
        }
    }
}

#[test]
fn layout_groups_kinds_contiguously() {
    let bn = Normalization::BatchNorm(BatchNormSpec::default());
    let cfg = MlpConfig::feedforward(
        4,
        &[3, 5],
        Activation::Relu,
        bn,
        2,
        Loss::SoftmaxCrossEntropy,
    );
    let mlp = Mlp::new(cfg).expect("valid");
    let l = mlp.layout();
    // weights 3*4 + 5*3 + 2*5 = 37, biases 3+5+2 = 10, gains 3+5, shifts 3+5
    assert_eq!(l.len(), 37 + 10 + 8 + 8);
    assert_eq!(l.kind_range(ParamKind::Weight), 0..37);
    assert_eq!(l.kind_range(ParamKind::Bias), 37..47);
    assert_eq!(l.kind_range(ParamKind::Gain), 47..55);
    assert_eq!(l.kind_range(ParamKind::Shift), 55..63);
    assert_eq!(
        l.block("layers.1.weight")
            .map(|b| (b.range.clone(), b.shape)),
        Some((12..27, (5, 3)))
    );
    assert_eq!(
        l.block("layers.1.norm.gain").map(|b| b.range.clone()),
        Some(50..55)
    );
    assert!(l.block("layers.2.norm.gain").is_none());
    assert_eq!(l.unit(1, 2), Some((37 + 3 + 2, 12 + 6..12 + 9)));
    assert_eq!(l.unit(1, 5), None);
    let p = mlp.init_params(7);
    assert!(
        p[l.kind_range(ParamKind::Gain)]
            .iter()
            .all(|&g| (g - 1.0).abs() < 1e-15)
    );
    assert!(
        p[l.kind_range(ParamKind::Bias)]
            .iter()
            .all(|&b| b.abs() < 1e-15)
    );
    assert_eq!(p, mlp.init_params(7), "seeded init is deterministic");
    assert_ne!(p, mlp.init_params(8));
}

#[test]
fn bad_inputs_are_typed_errors() {
    let cfg = MlpConfig::feedforward(3, &[4], Activation::Tanh, Normalization::None, 1, Loss::Mse);
    let mlp = Mlp::new(cfg).expect("valid");
    let p = mlp.init_params(1);
    let x = randn(2, 5, 1);
    assert!(matches!(
        mlp.forward(&p, x.as_ref(), Mode::Train),
        Err(NnError::DimensionMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        mlp.forward(&p[1..], randn(3, 5, 1).as_ref(), Mode::Train),
        Err(NnError::DimensionMismatch { .. })
    ));
    let mut x = randn(3, 5, 1);
    x[(1, 4)] = f64::NAN;
    assert!(matches!(
        mlp.forward(&p, x.as_ref(), Mode::Train),
        Err(NnError::NonFinite { row: 1, col: 4, .. })
    ));
    assert!(
        Mlp::new(MlpConfig {
            input_dim: 3,
            layers: vec![],
            loss: Loss::Mse
        })
        .is_err()
    );
    let bad = MlpConfig::feedforward(
        3,
        &[4],
        Activation::Tanh,
        Normalization::None,
        1,
        Loss::SoftmaxCrossEntropy,
    );
    assert!(matches!(Mlp::new(bad), Err(NnError::InvalidConfig { .. })));
    let bad_bn = MlpConfig::feedforward(
        3,
        &[4],
        Activation::Tanh,
        Normalization::BatchNorm(BatchNormSpec {
            momentum: 1.5,
            ..BatchNormSpec::default()
        }),
        1,
        Loss::Mse,
    );
    assert!(matches!(
        Mlp::new(bad_bn),
        Err(NnError::InvalidConfig {
            what: "batch_norm.momentum",
            ..
        })
    ));
}

#[test]
fn running_statistics_and_frozen_mode_checks() {
    let bn = Normalization::BatchNorm(BatchNormSpec::default());
    let mut mlp = Mlp::new(MlpConfig::feedforward(
        3,
        &[4],
        Activation::Tanh,
        bn,
        2,
        Loss::Mse,
    ))
    .expect("valid");
    let p = mlp.init_params(2);
    let x = randn(3, 6, 3);
    // frozen statistics: wrong number of layers, wrong width
    assert!(matches!(
        mlp.forward(&p, x.as_ref(), Mode::Frozen(&[None])),
        Err(NnError::DimensionMismatch {
            expected: 2,
            got: 1,
            ..
        })
    ));
    let bad = vec![
        Some(NormStats {
            mean: vec![0.0; 3],
            var: vec![1.0; 3],
        }),
        None,
    ];
    assert!(matches!(
        mlp.forward(&p, x.as_ref(), Mode::Frozen(&bad)),
        Err(NnError::DimensionMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
    // frozen at the batch statistics reproduces the training-mode output
    let train_out = mlp.forward(&p, x.as_ref(), Mode::Train).expect("train");
    let stats = train_out.batch_norm_stats();
    let frozen_out = mlp
        .forward(&p, x.as_ref(), Mode::Frozen(&stats))
        .expect("frozen");
    assert!((train_out.output() - frozen_out.output()).norm_max() <= 1e-15);
    // eval uses the running statistics: fresh (0, 1) gives σ(z)/sqrt(1 + eps) through the layer
    let eval = mlp.forward(&p, x.as_ref(), Mode::Eval).expect("eval");
    let z = eval.layers()[0].z();
    let a = eval.layers()[0].post().expect("bn").output();
    for c in 0..6 {
        for r in 0..4 {
            assert!((a[(r, c)] - z[(r, c)].tanh() / (1.0f64 + 1e-5).sqrt()).abs() <= 1e-15);
        }
    }
    assert!((mlp.predict(&p, x.as_ref()).expect("predict") - eval.output()).norm_max() <= 0.0);
    // set_running_stats: wrong layer kind, wrong width, then success
    assert!(matches!(
        mlp.set_running_stats(1, RunningStats::new(2)),
        Err(NnError::InvalidConfig { .. })
    ));
    assert!(matches!(
        mlp.set_running_stats(0, RunningStats::new(3)),
        Err(NnError::DimensionMismatch { .. })
    ));
    let mut rs = RunningStats::new(4);
    rs.mean = vec![1.0, 2.0, 3.0, 4.0];
    mlp.set_running_stats(0, rs.clone()).expect("set");
    assert_eq!(mlp.running_stats()[0].as_ref(), Some(&rs));
    mlp.reset_running_stats();
    assert_eq!(mlp.running_stats()[0].as_ref(), Some(&RunningStats::new(4)));
    // hessian_vector_product length checks
    let t = random_targets(Loss::Mse, 2, 6, 4);
    let mut hv = vec![0.0; p.len()];
    assert!(matches!(
        mlp.hessian_vector_product(&p, x.as_ref(), &t, Mode::Train, &[1.0], &mut hv),
        Err(NnError::DimensionMismatch { .. })
    ));
    let mut v = vec![0.0; p.len()];
    v[0] = f64::NAN;
    assert!(matches!(
        mlp.hessian_vector_product(&p, x.as_ref(), &t, Mode::Train, &v, &mut hv),
        Err(NnError::NonFinite { row: 0, .. })
    ));
}
