//! Training sanity targets (logistic regression on standardized breast_cancer reaches
//! ≥ 97% training accuracy; an MLP with BatchNorm or LayerNorm reaches ≥ 95% test accuracy on
//! digits with an 80/20 split), determinism, callbacks, κ and P_k recording.

use precond_nn::*;
use precond_optim::{OptimizerConfig, ParamGroup};

fn standardized(train: &Dataset, test: &Dataset) -> (Dataset, Dataset) {
    let t = InputTransform::fit(train.x.as_ref(), InputScaling::Standardize).expect("fit");
    (
        train.map_features(|x| t.apply(x)).expect("apply"),
        test.map_features(|x| t.apply(x)).expect("apply"),
    )
}

#[test]
fn logistic_regression_on_standardized_breast_cancer() {
    let ds = Dataset::builtin("breast_cancer").expect("data");
    let (train_raw, test_raw) = ds.split(0.2, 1).expect("split");
    let (train_set, test_set) = standardized(&train_raw, &test_raw);
    let mut mlp = Mlp::new(MlpConfig::feedforward(
        30,
        &[],
        Activation::Identity,
        Normalization::None,
        1,
        Loss::BceWithLogits,
    ))
    .expect("net");
    let mut params = mlp.init_params(0);
    let mut opt = OptimizerConfig::from_json(r#"{"optimizer": "adam", "lr": 0.01}"#)
        .expect("cfg")
        .build(params.len())
        .expect("opt");
    let cfg = TrainConfig {
        epochs: 30,
        batch_size: 32,
        seed: 2,
        record_preconditioner: true,
        ..TrainConfig::default()
    };
    let h = train(
        &mut mlp,
        &mut params,
        &mut opt,
        &train_set,
        Some(&test_set),
        &cfg,
        |_| Control::Continue,
    )
    .expect("train");
    let last = h.last().expect("record");
    assert_eq!(h.epochs.len(), 31);
    assert!(last.train_accuracy.expect("acc") >= 0.97, "{last:?}");
    assert!(last.test_accuracy.expect("acc") >= 0.95, "{last:?}");
    assert!(last.train_loss < h.epochs[0].train_loss);
    let p = last.preconditioner.expect("P_k");
    assert!(p.min > 0.0 && p.spread >= 1.0);
}

fn digits_run(norm: Normalization, seed: u64) -> History {
    let ds = Dataset::builtin("digits").expect("digits");
    let (train_raw, test_raw) = ds.split(0.2, 42).expect("split");
    let (train_set, test_set) = standardized(&train_raw, &test_raw);
    let mut mlp = Mlp::new(MlpConfig::feedforward(
        64,
        &[64],
        Activation::Relu,
        norm,
        10,
        Loss::SoftmaxCrossEntropy,
    ))
    .expect("net");
    let mut params = mlp.init_params(seed);
    // no weight decay on biases, gains and shifts: one contiguous range of the layout
    let rest = mlp.layout().kind_range(ParamKind::Bias).start..params.len();
    let mut cfg = OptimizerConfig::adamw(2e-3, 1e-4);
    cfg.groups = vec![ParamGroup {
        start: rest.start,
        end: rest.end,
        weight_decay: Some(0.0),
        ..ParamGroup::default()
    }];
    let mut opt = cfg.build(params.len()).expect("opt");
    let tc = TrainConfig {
        epochs: 12,
        batch_size: 32,
        seed,
        kappa_layers: vec![1],
        kappa_samples: 200,
        ..TrainConfig::default()
    };
    train(
        &mut mlp,
        &mut params,
        &mut opt,
        &train_set,
        Some(&test_set),
        &tc,
        |_| Control::Continue,
    )
    .expect("train")
}

#[test]
fn digits_mlp_with_batch_norm_and_layer_norm_reach_95_percent_test_accuracy() {
    for norm in [
        Normalization::BatchNorm(BatchNormSpec::default()),
        Normalization::LayerNorm(LayerNormSpec::default()),
    ] {
        let h = digits_run(norm, 3);
        let last = h.last().expect("record");
        assert!(
            last.test_accuracy.expect("acc") >= 0.95,
            "{norm:?}: {last:?}"
        );
        let k = last.kappa[0];
        assert_eq!(k.layer, 1);
        match norm {
            // BatchNorm standardizes the rows of the next layer's Ā: better conditioned
            Normalization::BatchNorm(_) => assert!(k.normalized < k.raw, "{k:?}"),
            // LayerNorm centres every column: Σ_j (h̃_j − β_j)/γ_j = 0, so [1ᵀ; H̃] is exactly
            // rank deficient (κ = ∞) whatever the training did
            _ => assert!(k.normalized.is_infinite() && k.raw.is_finite(), "{k:?}"),
        }
    }
}

#[test]
fn training_is_deterministic_for_a_seed_and_callbacks_can_stop() {
    let ds = Dataset::builtin("iris").expect("iris");
    let (tr, te) = ds.split(0.3, 5).expect("split");
    let (tr, te) = standardized(&tr, &te);
    let run = |seed: u64, stop_at: usize| {
        let bn = Normalization::BatchNorm(BatchNormSpec::default());
        let mut mlp = Mlp::new(MlpConfig::feedforward(
            4,
            &[8],
            Activation::Tanh,
            bn,
            3,
            Loss::SoftmaxCrossEntropy,
        ))
        .expect("net");
        let mut p = mlp.init_params(1);
        let mut opt = OptimizerConfig::sgd(0.1, 0.9).build(p.len()).expect("opt");
        let cfg = TrainConfig {
            epochs: 6,
            batch_size: 16,
            seed,
            kappa_layers: vec![0, 1],
            ..TrainConfig::default()
        };
        let mut seen = Vec::new();
        let h = train(&mut mlp, &mut p, &mut opt, &tr, Some(&te), &cfg, |r| {
            seen.push(r.epoch);
            if r.epoch == stop_at {
                Control::Stop
            } else {
                Control::Continue
            }
        })
        .expect("train");
        (h, p, mlp.running_stats().to_vec(), seen)
    };
    let (h1, p1, r1, seen) = run(9, usize::MAX);
    let (h2, p2, r2, _) = run(9, usize::MAX);
    assert_eq!(seen, (0..=6).collect::<Vec<_>>());
    assert_eq!(p1, p2, "bitwise identical parameters");
    assert_eq!(r1, r2);
    assert_eq!(h1, h2);
    let (_, p3, _, _) = run(10, usize::MAX);
    assert_ne!(p1, p3, "another shuffling seed gives another trajectory");
    let (h4, _, _, seen4) = run(9, 2);
    assert!(h4.stopped_early);
    assert_eq!(seen4, vec![0, 1, 2]);
    assert_eq!(h4.epochs[..3], h1.epochs[..3]);
    // κ of the data matrix (layer 0) does not change during training; of hidden layers it does
    assert!(
        (h1.epochs[0].kappa[0].normalized - h1.epochs[6].kappa[0].normalized).abs()
            <= 1e-9 * h1.epochs[0].kappa[0].normalized
    );
}

#[test]
fn training_errors() {
    let ds = Dataset::builtin("iris").expect("iris");
    let mut mlp = Mlp::new(MlpConfig::feedforward(
        4,
        &[5],
        Activation::Relu,
        Normalization::None,
        3,
        Loss::SoftmaxCrossEntropy,
    ))
    .expect("net");
    let mut p = mlp.init_params(0);
    let mut wrong = OptimizerConfig::sgd(0.1, 0.0)
        .build(p.len() + 1)
        .expect("opt");
    let cfg = TrainConfig::default();
    assert!(matches!(
        train(&mut mlp, &mut p, &mut wrong, &ds, None, &cfg, |_| {
            Control::Continue
        }),
        Err(NnError::DimensionMismatch { .. })
    ));
    let mut opt = OptimizerConfig::sgd(0.1, 0.0).build(p.len()).expect("opt");
    let bad = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    assert!(matches!(
        train(&mut mlp, &mut p, &mut opt, &ds, None, &bad, |_| {
            Control::Continue
        }),
        Err(NnError::InvalidConfig { .. })
    ));
    let bad = TrainConfig {
        kappa_layers: vec![7],
        ..TrainConfig::default()
    };
    assert!(matches!(
        train(&mut mlp, &mut p, &mut opt, &ds, None, &bad, |_| {
            Control::Continue
        }),
        Err(NnError::NoSuchLayer { .. })
    ));
    let reg = Dataset::builtin("diabetes").expect("diabetes");
    assert!(matches!(
        train(&mut mlp, &mut p, &mut opt, &reg, None, &cfg, |_| {
            Control::Continue
        }),
        Err(NnError::DimensionMismatch { .. }) | Err(NnError::TargetMismatch { .. })
    ));
    assert_eq!(
        p,
        mlp.init_params(0),
        "errors leave the parameters untouched"
    );
}
