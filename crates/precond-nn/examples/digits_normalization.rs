//! Digits, 64-64-10 ReLU MLP trained with Adam: no normalization vs BatchNorm vs LayerNorm, raw
//! vs standardized inputs. Prints test accuracy and `κ` of the second layer's extended input
//! matrix `Ā = [1ᵀ; H¹]` (with and without the first layer's normalization) after each epoch.
//!
//! Run: `cargo run --release -p precond-nn --example digits_normalization`

use precond_nn::*;
use precond_optim::OptimizerConfig;

fn main() -> Result<()> {
    let ds = Dataset::builtin("digits")?;
    let (train_raw, test_raw) = ds.split(0.2, 42)?;
    let t = InputTransform::fit(train_raw.x.as_ref(), InputScaling::Standardize)?;
    let (train_std, test_std) = (
        train_raw.map_features(|x| t.apply(x))?,
        test_raw.map_features(|x| t.apply(x))?,
    );
    let norms = [
        ("none", Normalization::None),
        (
            "batchnorm",
            Normalization::BatchNorm(BatchNormSpec::default()),
        ),
        (
            "layernorm",
            Normalization::LayerNorm(LayerNormSpec::default()),
        ),
    ];
    for (inputs, tr, te) in [
        ("raw", &train_raw, &test_raw),
        ("standardized", &train_std, &test_std),
    ] {
        for (name, norm) in norms {
            let mut mlp = Mlp::new(MlpConfig::feedforward(
                64,
                &[64],
                Activation::Relu,
                norm,
                10,
                Loss::SoftmaxCrossEntropy,
            ))?;
            let mut params = mlp.init_params(3);
            let mut opt = OptimizerConfig::adam(1e-3)
                .build(params.len())
                .map_err(NnError::Optimizer)?;
            let cfg = TrainConfig {
                epochs: 10,
                batch_size: 32,
                seed: 3,
                kappa_layers: vec![1],
                kappa_samples: 500,
                ..TrainConfig::default()
            };
            let h = train(&mut mlp, &mut params, &mut opt, tr, Some(te), &cfg, |_| {
                Control::Continue
            })?;
            let line: Vec<String> = h
                .epochs
                .iter()
                .filter(|r| r.epoch % 5 == 0)
                .map(|r| {
                    format!(
                        "ep{:>2} acc {:.3} κ(Ā) {:.2e} (raw {:.2e})",
                        r.epoch,
                        r.test_accuracy.unwrap_or(f64::NAN),
                        r.kappa[0].normalized,
                        r.kappa[0].raw
                    )
                })
                .collect();
            println!("{inputs:>12} {name:>9}: {}", line.join(" | "));
        }
    }
    Ok(())
}
