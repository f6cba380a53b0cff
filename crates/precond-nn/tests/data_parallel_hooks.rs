//! The hooks a data-parallel loop uses: weighted loss/gradient sums over slices of a batch add up
//! to the batch mean (and `w = 1/N` is the mean bit for bit), and an epoch's batches depend only
//! on `(seed, epoch)`.

use precond_nn::data::{gather_columns, minibatches};
use precond_nn::*;

fn net(loss: Loss, k: usize) -> Mlp {
    let ln = Normalization::LayerNorm(LayerNormSpec::default());
    Mlp::new(MlpConfig::feedforward(
        4,
        &[7, 5],
        Activation::Tanh,
        ln,
        k,
        loss,
    ))
    .expect("net")
}

#[test]
fn slice_sums_add_up_to_the_batch_mean() {
    let ds = Dataset::builtin("iris").expect("iris");
    for (loss, k) in [
        (Loss::SoftmaxCrossEntropy, 3),
        (Loss::Mse, 3),
        (Loss::BceWithLogits, 3),
    ] {
        let mlp = net(loss, k);
        let params = mlp.init_params(3);
        let targets = match loss {
            Loss::SoftmaxCrossEntropy => ds.targets.clone(),
            _ => {
                // one-hot values for the regression-style losses
                let Targets::Classes { labels, .. } = &ds.targets else {
                    panic!("iris has classes")
                };
                let mut v = faer::Mat::<f64>::zeros(3, labels.len());
                for (n, &c) in labels.iter().enumerate() {
                    v[(c, n)] = 1.0;
                }
                Targets::Values(v)
            }
        };
        let b = ds.n_samples();
        let mut full = vec![0.0; params.len()];
        let mut ws = Workspace::new();
        let mean = mlp
            .loss_and_grad_into(
                &params,
                ds.x.as_ref(),
                &targets,
                Mode::Train,
                &mut ws,
                &mut full,
            )
            .expect("mean");
        // w = 1/N on the whole batch is the same computation, bit for bit
        let mut same = vec![0.0; params.len()];
        let l1 = mlp
            .weighted_loss_and_grad_into(
                &params,
                ds.x.as_ref(),
                &targets,
                Mode::Train,
                1.0 / b as f64,
                &mut ws,
                &mut same,
            )
            .expect("weighted");
        assert_eq!(l1.to_bits(), mean.to_bits());
        assert!(
            same.iter()
                .zip(&full)
                .all(|(a, c)| a.to_bits() == c.to_bits())
        );
        // three uneven slices with w = 1/B add up to the mean (summation order only)
        let cuts = [0, 37, 101, b];
        let mut acc = vec![0.0; params.len()];
        let mut lsum = 0.0;
        let mut g = vec![0.0; params.len()];
        for s in cuts.windows(2) {
            let idx: Vec<usize> = (s[0]..s[1]).collect();
            let x = gather_columns(ds.x.as_ref(), &idx);
            let t = targets.gather(&idx).expect("targets");
            lsum += mlp
                .weighted_loss_and_grad_into(
                    &params,
                    x.as_ref(),
                    &t,
                    Mode::Train,
                    1.0 / b as f64,
                    &mut ws,
                    &mut g,
                )
                .expect("slice");
            acc.iter_mut().zip(&g).for_each(|(a, v)| *a += v);
        }
        let scale = full.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let tol = 64.0 * f64::EPSILON * (b as f64) * scale.max(1.0);
        for (i, (a, c)) in acc.iter().zip(&full).enumerate() {
            assert!((a - c).abs() <= tol, "{loss:?} param {i}: {a} vs {c}");
        }
        assert!((lsum - mean).abs() <= 64.0 * f64::EPSILON * (b as f64) * mean.abs());
    }
}

#[test]
fn weight_must_be_finite_and_positive() {
    let mlp = net(Loss::SoftmaxCrossEntropy, 3);
    let ds = Dataset::builtin("iris").expect("iris");
    let params = mlp.init_params(0);
    let mut g = vec![7.0; params.len()];
    let mut ws = Workspace::new();
    for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = mlp.weighted_loss_and_grad_into(
            &params,
            ds.x.as_ref(),
            &ds.targets,
            Mode::Train,
            w,
            &mut ws,
            &mut g,
        );
        assert!(
            matches!(
                e,
                Err(NnError::InvalidConfig {
                    what: "loss weight",
                    ..
                })
            ),
            "{w}"
        );
        assert!(
            g.iter().all(|v| v.to_bits() == 7.0f64.to_bits()),
            "grad untouched"
        );
    }
}

#[test]
fn epoch_batches_depend_on_seed_and_epoch_only() {
    let cfg = TrainConfig {
        batch_size: 16,
        seed: 11,
        ..TrainConfig::default()
    };
    let e3 = epoch_batches(100, &cfg, 3).expect("batches");
    // the same call again (no hidden generator state), and the direct construction
    assert_eq!(e3, epoch_batches(100, &cfg, 3).expect("batches"));
    assert_eq!(
        e3,
        minibatches(100, 16, true, epoch_seed(11, 3)).expect("batches")
    );
    // a permutation of 0..100 in batches of 16, 16, ..., 4
    let mut all: Vec<usize> = e3.iter().flatten().copied().collect();
    assert_eq!(e3.len(), 7);
    assert_eq!(e3[6].len(), 4);
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    // other epochs and other seeds shuffle differently
    assert_ne!(e3, epoch_batches(100, &cfg, 4).expect("batches"));
    let other = TrainConfig {
        seed: 12,
        ..cfg.clone()
    };
    assert_ne!(e3, epoch_batches(100, &other, 3).expect("batches"));
    // no shuffling: in order
    let plain = TrainConfig {
        shuffle: false,
        ..cfg
    };
    assert_eq!(
        epoch_batches(100, &plain, 9).expect("batches")[0],
        (0..16).collect::<Vec<_>>()
    );
}
