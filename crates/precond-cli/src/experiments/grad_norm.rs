//! Experiment 14: gradient-norm regularization, intrinsic `ρ ∇fᵀP∇f` against coupled `ρ ‖∇f‖²`
//! and none (THEORY.md §5, last bullet), on the digits MLP trained with Adam.

use precond_linalg::{LanczosOptions, LinearOperator, lanczos_extremes};
use precond_nn::{
    Activation, GradNormMode, GradNormReg, HessianOperator, Loss, MlpConfig, Mode, Normalization,
    TrainConfig,
};
use precond_optim::OptimizerConfig;

use super::common::{digits_split, lerr};
use crate::error::CliError;
use crate::report::{Check, Ctx, Evidence, Experiment, Plot, Series, SeriesKind, Table};

/// Experiment 14.
pub struct GradNorm;

const ID: &str = "grad_norm";

/// `P^½ H P^½` for a diagonal `P` (`s = sqrt(p)`), matrix-free.
struct Scaled<'a> {
    h: &'a HessianOperator<'a>,
    s: Vec<f64>,
    buf: std::cell::RefCell<Vec<f64>>,
}

impl LinearOperator for Scaled<'_> {
    fn dim(&self) -> usize {
        self.s.len()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let mut b = self.buf.borrow_mut();
        for ((b, x), s) in b.iter_mut().zip(x).zip(&self.s) {
            *b = x * s;
        }
        self.h.apply(&b, y);
        for (y, s) in y.iter_mut().zip(&self.s) {
            *y *= s;
        }
    }
}

impl Experiment for GradNorm {
    fn id(&self) -> &'static str {
        ID
    }
    fn number(&self) -> u32 {
        14
    }
    fn title(&self) -> &'static str {
        "Gradient-norm regularization, intrinsic and coupled"
    }
    fn theory(&self) -> &'static str {
        "THEORY.md §5 (last bullet): R = ρ ∇fᵀP∇f in the intrinsic variables, ∇R = 2ρ H P ∇f"
    }
    fn claim(&self) -> &'static str {
        "Both gradient-norm penalties lower the top eigenvalue of the preconditioned Hessian P^½HP^½ that Adam descends on (the coupled one by at least 5 %; the intrinsic one by 4–42 % over seeds 0–9 in the quick run). Neither flattens the Euclidean sharpness λmax(H) at these strengths: the coupled ρ‖∇f‖² leaves it unchanged within 5 % (and the test accuracy within 3 points); the intrinsic ρ∇fᵀP∇f never lowers it by more than 10 % (4 % at most over seeds 0–9) and on some seeds raises it by a third while training stalls, and it always slows training. The expected advantage of the intrinsic form is not borne out on this problem."
    }
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError> {
        let (train, test) = digits_split(ctx, ID)?;
        let d = train.x.nrows();
        let cfg = MlpConfig::feedforward(
            d,
            &[32],
            Activation::Tanh,
            Normalization::None,
            10,
            Loss::SoftmaxCrossEntropy,
        );
        let rho = 0.05;
        // gᵀPg with Adam's P ≈ 1/|g| is Σ|g_i|-like, far larger than ‖g‖²: the intrinsic strength
        // is chosen smaller (1e-3 already stalls training, 1e-5 has no visible effect)
        let rho_i = 1e-4;
        let runs = [
            ("none", None),
            (
                "intrinsic ρ∇fᵀP∇f",
                Some(GradNormReg {
                    rho: rho_i,
                    mode: GradNormMode::Intrinsic,
                }),
            ),
            (
                "coupled ρ‖∇f‖²",
                Some(GradNormReg {
                    rho,
                    mode: GradNormMode::Coupled,
                }),
            ),
        ];
        let opt_cfg = OptimizerConfig::adam(3e-3);
        let mut table = Table::new(
            format!(
                "digits MLP {d}–32–10 (tanh), Adam lr 3e-3, ρ = {rho_i} (intrinsic), {rho} (coupled); Hessian of the mean training loss at the end"
            ),
            &[
                "regularization",
                "train loss",
                "test accuracy",
                "λmax(H) (sharpness)",
                "λmin(H)",
                "λmax(P^½HP^½) with Adam's final P",
            ],
        );
        let mut curves = Plot::new(
            "Training loss per epoch",
            "epoch",
            "training loss",
            false,
            true,
        );
        let mut res = Vec::new();
        for (ri, (name, gn)) in runs.iter().enumerate() {
            let tc = TrainConfig {
                epochs: ctx.pick(40, 8),
                batch_size: 32,
                seed: ctx.seed,
                grad_norm: *gn,
                ..Default::default()
            };
            let mut mlp = precond_nn::Mlp::new(cfg.clone()).map_err(lerr(ID))?;
            let mut params = mlp.init_params(tc.seed);
            let mut opt = opt_cfg.build(params.len()).map_err(lerr(ID))?;
            let hist = precond_nn::train(
                &mut mlp,
                &mut params,
                &mut opt,
                &train,
                Some(&test),
                &tc,
                |_| precond_nn::Control::Continue,
            )
            .map_err(lerr(ID))?;
            let last = hist.last().ok_or_else(|| CliError::Experiment {
                id: ID.into(),
                message: "empty history".into(),
            })?;
            let h =
                HessianOperator::new(&mlp, &params, train.x.as_ref(), &train.targets, Mode::Eval)
                    .map_err(lerr(ID))?;
            let lopts = LanczosOptions {
                max_iter: ctx.pick(80, 40),
                rel_tol: 1e-6,
                ..LanczosOptions::default()
            };
            let lh = lanczos_extremes(&h, lopts).map_err(lerr(ID))?;
            let mut p = vec![0.0; params.len()];
            opt.preconditioner(&mut p).map_err(lerr(ID))?;
            let sc = Scaled {
                h: &h,
                s: p.iter().map(|v| v.sqrt()).collect(),
                buf: std::cell::RefCell::new(vec![0.0; params.len()]),
            };
            let lp = lanczos_extremes(&sc, lopts).map_err(lerr(ID))?;
            let acc = last.test_accuracy.unwrap_or(f64::NAN);
            table.row(vec![
                (*name).into(),
                last.train_loss.into(),
                acc.into(),
                lh.lambda_max.into(),
                lh.lambda_min.into(),
                lp.lambda_max.into(),
            ]);
            curves.series.push(Series::new(
                *name,
                SeriesKind::Line,
                ri,
                hist.epochs.iter().map(|e| e.epoch as f64).collect(),
                hist.epochs.iter().map(|e| e.train_loss).collect(),
            ));
            res.push((lh.lambda_max, lp.lambda_max, acc, last.train_loss));
        }
        let (none, intr, coup) = (res[0], res[1], res[2]);
        let checks = vec![
            Check::le("λmax(P^½HP^½): intrinsic / none", intr.1 / none.1, 1.0),
            Check::le("λmax(P^½HP^½): coupled / none", coup.1 / none.1, 0.95),
            Check::le(
                "|λmax(H) coupled / none − 1| (the Euclidean sharpness is unchanged)",
                (coup.0 / none.0 - 1.0).abs(),
                0.05,
            ),
            Check::ge(
                "λmax(H): intrinsic / none (not flattened: no flatter minimum)",
                intr.0 / none.0,
                0.9,
            ),
            Check::ge(
                "training loss: intrinsic / none (the price: slower training)",
                intr.3 / none.3,
                1.0,
            ),
            Check::ge("test accuracy: coupled − none", coup.2 - none.2, -0.03),
        ];
        Ok(Evidence {
            setup: format!(
                "digits (75/25 split, min-max scaled{}), an MLP {d}–32–10 with tanh and softmax cross-entropy, Adam (lr 3e-3, torch defaults otherwise), minibatches of 32, the same seed and initialization for the three runs; ρ = {rho_i} for the intrinsic penalty and {rho} for the coupled one (gᵀPg with Adam's P ≈ 1/|g| is of the size of Σ|g_i|, far larger than ‖g‖²: ρ = 1e-3 stalls the intrinsic run, 1e-5 leaves it unchanged). The regularizer adds ∇R = 2ρ H P ∇f to every minibatch gradient (precond_nn::GradNormReg through TrainConfig::grad_norm; one exact Hessian-vector product by the R-operator per step; P is Adam's current diagonal P_k, held fixed within the step, and I before the first step). After training: the extreme eigenvalues of the Hessian of the mean training loss (Lanczos with full reorthogonalization on the R-operator, precond_linalg::lanczos_extremes) and the largest eigenvalue of P^½HP^½ with Adam's final P. The MLP Hessian is indefinite, so its sharpness λmax is reported rather than a condition number.",
                if ctx.quick {
                    ", the first 400 training samples"
                } else {
                    ""
                }
            ),
            tables: vec![table],
            plots: vec![curves],
            checks,
        })
    }
}
