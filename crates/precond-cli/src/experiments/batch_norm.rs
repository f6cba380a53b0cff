//! Experiment 9: BatchNorm as preconditioning (THEORY.md §6, Section 5.2, (28), Theorem 6).

use precond_linalg::{cond2, row_equilibrate};
use precond_nn::data::gather_columns;
use precond_nn::{
    Activation, BatchNormSpec, Loss, MlpConfig, Mode, Normalization, TrainConfig, WithNorm,
    extended_hidden_matrix,
};
use precond_optim::OptimizerConfig;

use super::common::{digits_split, final_metrics_row, fit_mlp, lerr};
use crate::error::CliError;
use crate::report::{Check, Ctx, Evidence, Experiment, Plot, Series, SeriesKind, Table, fmt_num};

/// Experiment 9.
pub struct BatchNorm;

const ID: &str = "batch_norm";

fn kappa(a: &faer::Mat<f64>) -> Result<f64, CliError> {
    Ok(cond2(a.as_ref()).map_err(lerr(ID))?.kappa)
}

impl Experiment for BatchNorm {
    fn id(&self) -> &'static str {
        ID
    }
    fn number(&self) -> u32 {
        9
    }
    fn title(&self) -> &'static str {
        "BatchNorm conditions the next layer's input"
    }
    fn theory(&self) -> &'static str {
        "THEORY.md §6: Section 5.2, (28), Theorem 6 applied to hidden layers"
    }
    fn claim(&self) -> &'static str {
        "With batch statistics treated as constants, the next layer's unit Hessian is (1/N)Ĥ̄DĤ̄ᵀ with Ĥ̄ = [1ᵀ; Ĥ] standardized, so Theorem 6 applies to every hidden layer: κ(Ĥ̄) ≤ √(d+1)·min_D κ(D H̄). BatchNorm keeps the hidden extended matrices well conditioned during training; at inference it uses running averages, a different function."
    }
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError> {
        let (train, test) = digits_split(ctx, ID)?;
        let widths = [32usize, 32];
        let bn = Normalization::BatchNorm(BatchNormSpec {
            affine: false,
            eps: 1e-10,
            ..Default::default()
        });
        let tc = TrainConfig {
            epochs: ctx.pick(30, 3),
            batch_size: 64,
            seed: ctx.seed,
            kappa_layers: vec![1, 2],
            kappa_samples: 256,
            ..Default::default()
        };
        let opt = OptimizerConfig::sgd(0.05, 0.9);
        let mut curves = Plot::new(
            "Training loss per epoch (SGD, momentum 0.9)",
            "epoch",
            "training loss (inference mode)",
            false,
            true,
        );
        let mut kplot = Plot::new(
            "κ of the hidden extended matrices during training",
            "epoch",
            "κ([1ᵀ; H^ℓ]) on 256 training samples",
            false,
            true,
        );
        let mut table = Table::new(
            "After training: κ of each hidden layer's extended output [1ᵀ; H] on 256 training samples (batch statistics), and Theorem 6's bound for the BatchNorm network",
            &[
                "network",
                "hidden layer",
                "κ without BN applied",
                "κ with BN applied",
                "√(d+1)·κ(D₀·raw)",
                "ratio (≤ 1)",
            ],
        );
        let mut gap = Table::new(
            "Train/inference gap of the BatchNorm network on the training set",
            &["mode", "loss", "accuracy"],
        );
        let mut summary = Table::new("Final metrics", &["network", "train loss", "test accuracy"]);
        let mut worst: f64 = 0.0;
        let mut worst_hist: f64 = 0.0;
        for (ni, (name, norm)) in [
            ("no normalization", Normalization::None),
            ("BatchNorm (post-activation)", bn),
        ]
        .into_iter()
        .enumerate()
        {
            let cfg = MlpConfig::feedforward(
                64,
                &widths,
                Activation::Tanh,
                norm,
                10,
                Loss::SoftmaxCrossEntropy,
            );
            let (mlp, params, hist) = fit_mlp(ID, cfg, &opt, &train, Some(&test), &tc)?;
            let ep: Vec<f64> = hist.epochs.iter().map(|e| e.epoch as f64).collect();
            curves.series.push(Series::new(
                name,
                SeriesKind::Line,
                ni,
                ep.clone(),
                hist.epochs.iter().map(|e| e.train_loss).collect(),
            ));
            for layer in [1usize, 2] {
                let ys: Vec<f64> = hist
                    .epochs
                    .iter()
                    .map(|e| {
                        e.kappa
                            .iter()
                            .find(|k| k.layer == layer)
                            .map_or(f64::NAN, |k| k.normalized)
                    })
                    .collect();
                kplot.series.push(Series::new(
                    format!("{name}, input of layer {layer}"),
                    if layer == 1 {
                        SeriesKind::Line
                    } else {
                        SeriesKind::Dashed
                    },
                    ni,
                    ep.clone(),
                    ys,
                ));
            }
            final_metrics_row(ID, name, &hist, &mut summary)?;
            let sub = gather_columns(
                train.x.as_ref(),
                &(0..256.min(train.x.ncols())).collect::<Vec<_>>(),
            );
            for layer in [1usize, 2] {
                let raw = extended_hidden_matrix(
                    &mlp,
                    &params,
                    sub.as_ref(),
                    layer,
                    WithNorm::Raw,
                    Mode::Train,
                )
                .map_err(lerr(ID))?;
                let nrm = extended_hidden_matrix(
                    &mlp,
                    &params,
                    sub.as_ref(),
                    layer,
                    WithNorm::Normalized,
                    Mode::Train,
                )
                .map_err(lerr(ID))?;
                let (kr, kn) = (kappa(&raw)?, kappa(&nrm)?);
                if ni == 1 {
                    let d0 = kappa(&row_equilibrate(raw.as_ref()).map_err(lerr(ID))?.scaled)?;
                    let sq = (raw.nrows() as f64).sqrt();
                    let bound = sq * d0.min(kr);
                    worst = worst.max(kn / bound);
                    table.row(vec![
                        name.into(),
                        (layer - 1).into(),
                        kr.into(),
                        kn.into(),
                        bound.into(),
                        (kn / bound).into(),
                    ]);
                    // The per-epoch snapshots of train(): κ(normalized) ≤ √(d+1) κ(raw).
                    for e in &hist.epochs {
                        for k in e.kappa.iter().filter(|k| k.layer == layer) {
                            worst_hist = worst_hist.max(k.normalized / (sq * k.raw));
                        }
                    }
                } else {
                    table.row(vec![
                        name.into(),
                        (layer - 1).into(),
                        kr.into(),
                        kn.into(),
                        "".into(),
                        "".into(),
                    ]);
                }
            }
            if ni == 1 {
                for (mname, mode) in [
                    ("training (batch statistics)", Mode::Train),
                    ("inference (running averages)", Mode::Eval),
                ] {
                    let ev = mlp
                        .evaluate(&params, train.x.as_ref(), &train.targets, mode)
                        .map_err(lerr(ID))?;
                    gap.row(vec![
                        mname.into(),
                        ev.loss.into(),
                        ev.accuracy.unwrap_or(f64::NAN).into(),
                    ]);
                }
            }
        }
        Ok(Evidence {
            setup: format!(
                "digits (min-max scaled, 75/25 split{}), MLP 64 → 32 → 32 → 10 with tanh, without normalization and with post-activation BatchNorm (no affine, as the theory's γ = 1, β = 0; eps 1e-10), SGD lr 0.05 momentum 0.9, batch 64, {} epochs (precond_nn::train, which records κ of the extended inputs of layers 1 and 2 each epoch). κ from precond_linalg::cond2; D₀ from row_equilibrate.",
                if ctx.quick {
                    ", 400 training samples"
                } else {
                    ""
                },
                fmt_num(tc.epochs as f64)
            ),
            tables: vec![table, summary, gap],
            plots: vec![kplot, curves],
            checks: vec![
                Check::le(
                    "Theorem 6 on hidden layers after training: max κ(BN Ā)/(√(d+1)·min(κ(Ā), κ(D₀Ā)))",
                    worst,
                    1.0,
                ),
                Check::le(
                    "Theorem 6 at every epoch: max κ(BN Ā)/(√(d+1)·κ(Ā))",
                    worst_hist,
                    1.0,
                ),
            ],
        })
    }
}
