//! One training step (forward, exact backward, Adam step, BatchNorm running averages) of a
//! 64-128-128-10 ReLU MLP with softmax cross-entropy on digits-sized batches, f64, with a reused
//! [`Workspace`] (no allocation per step), as the training loop runs it. The PyTorch peer is
//! `benches/peers/nn_train_step.py` (repository root) (same network, same batch sizes, CPU, float64).
//!
//! Run: `cargo bench -p precond-nn --bench train_step`
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use faer::Mat;
use precond_nn::data::gather_columns;
use precond_nn::*;
use precond_optim::OptimizerConfig;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let ds = Dataset::builtin("digits").expect("digits");
    let t = InputTransform::fit(ds.x.as_ref(), InputScaling::Standardize).expect("fit");
    let x_all = t.apply(ds.x.as_ref()).expect("apply");
    let mut group = c.benchmark_group("train_step_64_128_128_10");
    for (name, norm) in [
        ("plain", Normalization::None),
        (
            "batchnorm",
            Normalization::BatchNorm(BatchNormSpec::default()),
        ),
    ] {
        for batch in [64usize, 256, 1437] {
            let mut mlp = Mlp::new(MlpConfig::feedforward(
                64,
                &[128, 128],
                Activation::Relu,
                norm,
                10,
                Loss::SoftmaxCrossEntropy,
            ))
            .expect("net");
            let mut params = mlp.init_params(0);
            let mut opt = OptimizerConfig::adam(1e-3)
                .build(params.len())
                .expect("opt");
            let idx: Vec<usize> = (0..batch).collect();
            let xb: Mat<f64> = gather_columns(x_all.as_ref(), &idx);
            let tb = ds.targets.gather(&idx).expect("targets");
            let mut grad = vec![0.0; params.len()];
            let mut ws = Workspace::new();
            group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, _| {
                b.iter(|| {
                    let loss = mlp
                        .loss_and_grad_into(
                            &params,
                            xb.as_ref(),
                            &tb,
                            Mode::Train,
                            &mut ws,
                            &mut grad,
                        )
                        .expect("grad");
                    opt.step_f64(&mut params, &grad).expect("step");
                    mlp.update_running_stats(ws.forward()).expect("running");
                    black_box(loss)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
