//! Experiment 13: Batch Normalization Preconditioning against BatchNorm and no normalization
//! (docs/THEORY.md §6, BNP; Lange, Helfrich and Ye, JMLR 2022).

use precond_linalg::sym_cond;
use precond_nn::data::gather_columns;
use precond_nn::{
    Activation, BatchNormSpec, Bnp, Dataset, History, Loss, Mlp, MlpConfig, Mode, Normalization,
    TrainConfig, unit_hessian,
};
use precond_optim::{BnpSpec, OptimizerConfig};

use super::common::{digits_split, lerr};
use crate::error::CliError;
use crate::report::{
    Cell, Check, Ctx, Evidence, Experiment, Plot, Series, SeriesKind, Table, fmt_num,
};

/// Experiment 13.
pub struct BnpExperiment;

const ID: &str = "bnp";

/// The three ways of training compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    None,
    BatchNorm,
    Bnp,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::None => "no normalization",
            Method::BatchNorm => "BatchNorm",
            Method::Bnp => "BNP",
        }
    }
}

/// What one training run gives.
struct Run {
    mlp: Mlp,
    params: Vec<f64>,
    hist: History,
    bnp: Option<Bnp>,
}

fn fit(
    method: Method,
    train: &Dataset,
    test: &Dataset,
    opt: &OptimizerConfig,
    tc: &TrainConfig,
) -> Result<Run, CliError> {
    let norm = match method {
        Method::BatchNorm => Normalization::BatchNorm(BatchNormSpec::default()),
        Method::None | Method::Bnp => Normalization::None,
    };
    let cfg = MlpConfig::feedforward(
        64,
        &[32, 32],
        Activation::Tanh,
        norm,
        10,
        Loss::SoftmaxCrossEntropy,
    );
    let mut mlp = Mlp::new(cfg).map_err(lerr(ID))?;
    let mut params = mlp.init_params(tc.seed);
    let mut o = opt.build(params.len()).map_err(lerr(ID))?;
    let cont = |_: &precond_nn::EpochRecord| precond_nn::Control::Continue;
    let (hist, bnp) = if method == Method::Bnp {
        let mut bnp = Bnp::new(&mlp, BnpSpec::default()).map_err(lerr(ID))?;
        let h = precond_nn::train_bnp(
            &mut mlp,
            &mut bnp,
            &mut params,
            &mut o,
            train,
            Some(test),
            tc,
            cont,
        )
        .map_err(lerr(ID))?;
        (h, Some(bnp))
    } else {
        let h = precond_nn::train(&mut mlp, &mut params, &mut o, train, Some(test), tc, cont)
            .map_err(lerr(ID))?;
        (h, None)
    };
    Ok(Run {
        mlp,
        params,
        hist,
        bnp,
    })
}

/// `Sᵀ H S` for the row-major `(d + 1)²` factor `S`.
fn congruence(h: &faer::Mat<f64>, s: &[f64]) -> faer::Mat<f64> {
    let n = h.nrows();
    let sm = faer::Mat::from_fn(n, n, |r, c| s[r * n + c]);
    let t = sm.transpose() * h * &sm;
    // exactly symmetric for the eigenvalue solver
    faer::Mat::from_fn(n, n, |r, c| 0.5 * (t[(r, c)] + t[(c, r)]))
}

impl Experiment for BnpExperiment {
    fn id(&self) -> &'static str {
        ID
    }
    fn number(&self) -> u32 {
        13
    }
    fn title(&self) -> &'static str {
        "Batch Normalization Preconditioning: BatchNorm's conditioning without its train/inference gap"
    }
    fn theory(&self) -> &'static str {
        "docs/THEORY.md §6, BNP (Lange, Helfrich, Ye 2022): P = S Sᵀ, Theorem 6 in the variables of S"
    }
    fn claim(&self) -> &'static str {
        "BNP preconditions each unit's [b; w] with P = S Sᵀ built from running statistics of the layer input, which is gradient descent on the standardized layer: the unit Hessian in BNP's variables, Sᵀ H S, is the standardized Gram of Theorem 6 and is better conditioned than H. The network is never normalized, so training and inference compute the same function (gap exactly 0) and any batch size works, 1 included, where BatchNorm is undefined."
    }
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError> {
        let (train, test) = digits_split(ctx, ID)?;
        let epochs = ctx.pick(10, 3);
        let batch_sizes = [1usize, 16, 128];
        let probe_n = 256.min(train.x.ncols());
        let probe_idx: Vec<usize> = (0..probe_n).collect();
        let probe = gather_columns(train.x.as_ref(), &probe_idx);
        let probe_t = train.subset(&probe_idx).map_err(lerr(ID))?.targets;
        let mut table = Table::new(
            "After training (SGD, momentum 0.9): accuracy, the train/inference gap |L(training mode) − L(inference mode)| on the training set, and κ of the unit Hessian (Theorem 5, D = p(1 − p) ≥ 0) of output unit 0, whose input is the second hidden layer, on 256 training samples, raw [b; w] and in the method's variables (BNP: Sᵀ H S; BatchNorm: its normalized input)",
            &[
                "method",
                "batch size",
                "test accuracy",
                "train loss",
                "train/inference gap",
                "κ(H) raw",
                "κ in the method's variables",
                "raw / method",
            ],
        );
        let mut curves = Plot::new(
            "Training loss per epoch (inference mode)",
            "epoch",
            "training loss",
            false,
            true,
        );
        let mut bnp_gap_max: f64 = 0.0;
        let mut bn_gap_min = f64::INFINITY;
        let mut bnp_ratio_min = f64::INFINITY;
        let mut bnp_b1_acc = f64::NAN;
        let mut color = 0;
        for &b in &batch_sizes {
            // learning rate grows with the batch (fewer steps per epoch)
            let lr = match b {
                1 => 0.005,
                16 => 0.02,
                _ => 0.1,
            };
            let opt = OptimizerConfig::sgd(lr, 0.9);
            let tc = TrainConfig {
                epochs,
                batch_size: b,
                seed: ctx.seed,
                ..Default::default()
            };
            for method in [Method::None, Method::BatchNorm, Method::Bnp] {
                if method == Method::BatchNorm {
                    // BatchNorm needs two samples per batch: refused at batch size 1
                    let probe_net = Mlp::new(MlpConfig::feedforward(
                        64,
                        &[32, 32],
                        Activation::Tanh,
                        Normalization::BatchNorm(BatchNormSpec::default()),
                        10,
                        Loss::SoftmaxCrossEntropy,
                    ))
                    .map_err(lerr(ID))?;
                    if let Err(e) = probe_net.check_training_batch(b) {
                        table.row(vec![
                            method.name().into(),
                            b.into(),
                            format!("refused: {e}").as_str().into(),
                            "".into(),
                            "".into(),
                            "".into(),
                            "".into(),
                            "".into(),
                        ]);
                        continue;
                    }
                }
                let run = fit(method, &train, &test, &opt, &tc)?;
                let last = run.hist.last().ok_or_else(|| CliError::Experiment {
                    id: ID.into(),
                    message: "empty history".into(),
                })?;
                let acc = last.test_accuracy.unwrap_or(f64::NAN);
                let ev = |mode| {
                    run.mlp
                        .evaluate(&run.params, train.x.as_ref(), &train.targets, mode)
                        .map(|e| e.loss)
                        .map_err(lerr(ID))
                };
                let gap = (ev(Mode::Train)? - ev(Mode::Eval)?).abs();
                let uh = unit_hessian(
                    &run.mlp,
                    &run.params,
                    probe.as_ref(),
                    &probe_t,
                    2,
                    0,
                    Mode::Train,
                )
                .map_err(lerr(ID))?;
                let k_own = sym_cond(uh.hessian.as_ref()).map_err(lerr(ID))?;
                let (k_raw, k_method): (Cell, f64) = (
                    match method {
                        Method::BatchNorm => "".into(),
                        _ => k_own.into(),
                    },
                    match &run.bnp {
                        Some(bnp) => {
                            let h = congruence(&uh.hessian, &bnp.layers()[2].factor());
                            sym_cond(h.as_ref()).map_err(lerr(ID))?
                        }
                        None => k_own,
                    },
                );
                let ratio = if method == Method::BatchNorm {
                    f64::NAN
                } else {
                    k_own / k_method
                };
                match method {
                    Method::Bnp => {
                        bnp_gap_max = bnp_gap_max.max(gap);
                        bnp_ratio_min = bnp_ratio_min.min(ratio);
                        if b == 1 {
                            bnp_b1_acc = acc;
                        }
                    }
                    Method::BatchNorm => bn_gap_min = bn_gap_min.min(gap),
                    Method::None => {}
                }
                table.row(vec![
                    method.name().into(),
                    b.into(),
                    acc.into(),
                    last.train_loss.into(),
                    gap.into(),
                    k_raw,
                    k_method.into(),
                    if ratio.is_nan() {
                        "".into()
                    } else {
                        ratio.into()
                    },
                ]);
                if b == 16 || (b == 1 && method == Method::Bnp) {
                    curves.series.push(Series::new(
                        format!("{}, batch {b}", method.name()),
                        if b == 1 {
                            SeriesKind::Dashed
                        } else {
                            SeriesKind::Line
                        },
                        color,
                        run.hist.epochs.iter().map(|e| e.epoch as f64).collect(),
                        run.hist.epochs.iter().map(|e| e.train_loss).collect(),
                    ));
                    color += 1;
                }
            }
        }
        Ok(Evidence {
            setup: format!(
                "digits (min-max scaled, 75/25 split{}), MLP 64 → 32 → 32 → 10 with tanh: without normalization, with post-activation BatchNorm (torch defaults: affine, eps 1e-5, momentum 0.1), and unnormalized with BNP on every layer (precond_nn::train_bnp; running statistics with momentum 0.1, eps 1e-5 inside the square root). SGD momentum 0.9, lr 0.005 / 0.02 / 0.1 at batch 1 / 16 / 128, {} epochs. κ of symmetric matrices from precond_linalg::sym_cond; BNP's S from its running statistics after training (BnpStats::factor).",
                if ctx.quick {
                    ", 400 training samples"
                } else {
                    ""
                },
                fmt_num(epochs as f64)
            ),
            tables: vec![table],
            plots: vec![curves],
            checks: vec![
                Check::le(
                    "BNP's train/inference gap, largest over batch sizes (exactly 0: the network is not normalized)",
                    bnp_gap_max,
                    0.0,
                ),
                Check::ge(
                    "BatchNorm's train/inference gap, smallest over batch sizes 16 and 128 (> 1e-9: running averages are another function)",
                    bn_gap_min,
                    1e-9,
                ),
                Check::ge(
                    "κ(H raw)/κ(Sᵀ H S) of BNP's hidden unit, smallest over batch sizes",
                    bnp_ratio_min,
                    1.0,
                ),
                Check::ge(
                    "BNP's test accuracy at batch size 1 (BatchNorm refuses this batch size)",
                    bnp_b1_acc,
                    0.8,
                ),
            ],
        })
    }
}
