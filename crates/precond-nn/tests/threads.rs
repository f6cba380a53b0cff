//! The loss and gradient do not depend on the number of rayon threads: at a batch large enough
//! for every split path (the matrix products cut over the threads, each thread's bias and
//! activation on its own columns right after its part of the forward product, the activation
//! derivative and bias gradient of the backward pass in two halves on two threads), a two- and
//! a three-thread pool give the one-thread pool's numbers bit for bit. The one-thread path is
//! the one `gradient_check.rs` compares with finite differences.

mod common;

use common::{randn, random_targets};
use precond_nn::*;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
}

#[test]
fn loss_and_gradient_are_the_same_on_any_number_of_threads() {
    let bn = BatchNormSpec::default();
    let ln = LayerNormSpec::default();
    let variants = [
        (
            Normalization::None,
            Activation::Relu,
            Loss::SoftmaxCrossEntropy,
        ),
        (Normalization::None, Activation::Tanh, Loss::Mse),
        (Normalization::None, Activation::Identity, Loss::Mse),
        (
            Normalization::BatchNorm(bn),
            Activation::Relu,
            Loss::SoftmaxCrossEntropy,
        ),
        (
            Normalization::BatchNorm(BatchNormSpec {
                placement: Placement::PreActivation,
                ..bn
            }),
            Activation::Softplus,
            Loss::BceWithLogits,
        ),
        (
            Normalization::LayerNorm(ln),
            Activation::Sigmoid,
            Loss::SoftmaxCrossEntropy,
        ),
    ];
    // 1437 columns: the forward products are cut by columns (more columns than rows), the
    // backward's activation pass is longer than its split length; 77: an odd small batch
    for (i, (norm, act, loss)) in variants.into_iter().enumerate() {
        let k = if loss == Loss::BceWithLogits { 1 } else { 10 };
        let mlp =
            Mlp::new(MlpConfig::feedforward(64, &[128, 96], act, norm, k, loss)).expect("net");
        let params = mlp.init_params(i as u64 + 1);
        for b in [1437, 77] {
            let x = randn(64, b, 10 + i as u64);
            let y = random_targets(loss, k, b, 20 + i as u64);
            let run = |threads: usize| {
                pool(threads).install(|| {
                    let mut grad = vec![0.0; params.len()];
                    let mut ws = Workspace::new();
                    let l = mlp
                        .loss_and_grad_into(
                            &params,
                            x.as_ref(),
                            &y,
                            Mode::Train,
                            &mut ws,
                            &mut grad,
                        )
                        .expect("step");
                    (l, grad)
                })
            };
            let (l1, g1) = run(1);
            assert!(l1.is_finite(), "variant {i}, batch {b}: loss {l1}");
            for threads in [2, 3] {
                let (l, g) = run(threads);
                assert_eq!(
                    l.to_bits(),
                    l1.to_bits(),
                    "variant {i}, batch {b}, {threads} threads: loss {l} vs {l1}"
                );
                let bad = g
                    .iter()
                    .zip(&g1)
                    .position(|(a, c)| a.to_bits() != c.to_bits());
                assert!(
                    bad.is_none(),
                    "variant {i}, batch {b}, {threads} threads: gradient entry {:?} differs",
                    bad.map(|j| (j, g[j], g1[j]))
                );
            }
        }
    }
}
