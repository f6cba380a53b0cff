//! BatchNorm cannot compute statistics from one sample (the batch variance is exactly zero):
//! such a training-mode pass is a typed error, as in torch, while evaluation mode and frozen
//! statistics work on any batch, and the training driver refuses a split that would end an epoch
//! with a batch of one before taking any step.

mod common;

use common::*;
use precond_nn::*;
use precond_optim::OptimizerConfig;

fn bn_mlp() -> Mlp {
    let bn = Normalization::BatchNorm(BatchNormSpec::default());
    Mlp::new(MlpConfig::feedforward(
        3,
        &[4, 5],
        Activation::Relu,
        bn,
        2,
        Loss::SoftmaxCrossEntropy,
    ))
    .expect("valid")
}

#[test]
fn a_training_batch_of_one_is_refused_by_every_batchnorm_pass() {
    let mlp = bn_mlp();
    let params = mlp.init_params(3);
    let x1 = randn(3, 1, 7);
    let t1 = random_targets(Loss::SoftmaxCrossEntropy, 2, 1, 9);
    let mut grad = vec![0.0; params.len()];
    match mlp.forward(&params, x1.as_ref(), Mode::Train) {
        Err(NnError::BatchTooSmall { layer: 0, batch: 1 }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    let before = grad.clone();
    assert!(matches!(
        mlp.loss_and_grad(&params, x1.as_ref(), &t1, Mode::Train, &mut grad),
        Err(NnError::BatchTooSmall { .. })
    ));
    assert_eq!(
        grad.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        before.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // inference and given statistics are fine with one sample
    mlp.forward(&params, x1.as_ref(), Mode::Eval).expect("eval");
    let stats = vec![
        Some(NormStats {
            mean: vec![0.0; 4],
            var: vec![1.0; 4],
        }),
        Some(NormStats {
            mean: vec![0.0; 5],
            var: vec![1.0; 5],
        }),
        None,
    ];
    mlp.forward(&params, x1.as_ref(), Mode::Frozen(&stats))
        .expect("frozen statistics");
    // frozen mode that leaves one BatchNorm layer on batch statistics is refused (layer 1)
    let partial = vec![stats[0].clone(), None, None];
    assert!(matches!(
        mlp.forward(&params, x1.as_ref(), Mode::Frozen(&partial)),
        Err(NnError::BatchTooSmall { layer: 1, batch: 1 })
    ));
    // two samples are enough
    let x2 = randn(3, 2, 8);
    mlp.forward(&params, x2.as_ref(), Mode::Train)
        .expect("batch of two");
    // a network without BatchNorm trains on one sample
    let plain = Mlp::new(MlpConfig::feedforward(
        3,
        &[4],
        Activation::Relu,
        Normalization::None,
        2,
        Loss::SoftmaxCrossEntropy,
    ))
    .expect("valid");
    let p = plain.init_params(1);
    plain
        .forward(&p, x1.as_ref(), Mode::Train)
        .expect("no BatchNorm");
}

#[test]
fn training_refuses_a_split_that_ends_an_epoch_with_one_sample() {
    let ds = Dataset::builtin("iris").expect("iris");
    let idx: Vec<usize> = (0..33).collect();
    let train_set = ds.subset(&idx).expect("subset");
    let mut mlp = Mlp::new(MlpConfig::feedforward(
        train_set.n_features(),
        &[8],
        Activation::Relu,
        Normalization::BatchNorm(BatchNormSpec::default()),
        3,
        Loss::SoftmaxCrossEntropy,
    ))
    .expect("valid");
    let mut params = mlp.init_params(0);
    let start = params.clone();
    let mut opt = OptimizerConfig::sgd(0.1, 0.0)
        .build(params.len())
        .expect("sgd");
    // 33 = 2 · 16 + 1: the last batch would hold one sample
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 16,
        ..TrainConfig::default()
    };
    match train(
        &mut mlp,
        &mut params,
        &mut opt,
        &train_set,
        None,
        &cfg,
        |_| Control::Continue,
    ) {
        Err(NnError::BatchTooSmall { batch: 1, .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(params, start);
    assert_eq!(opt.step_count(), 0);
    // 33 = 3 · 11: fine
    let cfg = TrainConfig {
        batch_size: 11,
        ..cfg
    };
    train(
        &mut mlp,
        &mut params,
        &mut opt,
        &train_set,
        None,
        &cfg,
        |_| Control::Continue,
    )
    .expect("batches of 11");
}
