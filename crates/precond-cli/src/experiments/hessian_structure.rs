//! Experiment 7: the unit Hessian of a network (THEORY.md §6, Theorem 5).

use precond_linalg::cond2;
use precond_nn::{
    Activation, Dataset, InputScaling, InputTransform, Loss, MlpConfig, Mode, Normalization,
    ParamKind, TrainConfig, unit_hessian,
};
use precond_optim::OptimizerConfig;

use super::common::{fit_mlp, lerr};
use crate::error::CliError;
use crate::report::{Check, Ctx, Evidence, Experiment, Plot, Series, SeriesKind, Table, fmt_num};

/// Experiment 7.
pub struct HessianStructure;

const ID: &str = "hessian_structure";

impl Experiment for HessianStructure {
    fn id(&self) -> &'static str {
        ID
    }
    fn number(&self) -> u32 {
        7
    }
    fn title(&self) -> &'static str {
        "A unit's Hessian is (1/N) Ā D Āᵀ"
    }
    fn theory(&self) -> &'static str {
        "THEORY.md §6: Theorem 5, κ(H) ≤ κ(D) κ(Ā)²"
    }
    fn claim(&self) -> &'static str {
        "For one unit of a trained network, every other parameter fixed, the Hessian of the mean loss in [b_i; w_i] is H = (1/N) Ā D Āᵀ with Ā = [1ᵀ; A] the extended input of the layer and D = diag(ℓ_n''(z_i,n)); hence κ(H) ≤ κ(D) κ(Ā)² when D > 0."
    }
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError> {
        let ds = Dataset::builtin("iris").map_err(lerr(ID))?;
        let t = InputTransform::fit(ds.x.as_ref(), InputScaling::Standardize).map_err(lerr(ID))?;
        let ds = ds.map_features(|x| t.apply(x)).map_err(lerr(ID))?;
        let hidden = 6;
        let cfg = MlpConfig::feedforward(
            4,
            &[hidden],
            Activation::Tanh,
            Normalization::None,
            3,
            Loss::SoftmaxCrossEntropy,
        );
        let tc = TrainConfig {
            epochs: ctx.pick(40, 10),
            batch_size: 16,
            seed: ctx.seed,
            ..Default::default()
        };
        let (mlp, params, hist) = fit_mlp(ID, cfg, &OptimizerConfig::adam(1e-2), &ds, None, &tc)?;
        let x = ds.x.as_ref();
        let mut grad = vec![0.0; params.len()];
        let mut table = Table::new(
            "Theorem 5's H = (1/N)ĀDĀᵀ (precond_nn::unit_hessian) against central differences of the exact back-propagated gradient in the unit's block",
            &[
                "layer",
                "unit",
                "D",
                "‖H − H_fd‖_F/‖H_fd‖_F",
                "κ(H)",
                "κ(D)κ(Ā)²",
            ],
        );
        let mut parity = Plot::new(
            "Hessian entries: formula against finite differences",
            "finite-difference entry",
            "(1/N)ĀDĀᵀ entry",
            false,
            false,
        );
        let mut worst_rel: f64 = 0.0;
        let mut worst_bound: f64 = 0.0;
        let (mut fx, mut fy) = (vec![], vec![]);
        for (layer, units, input) in [(0usize, hidden, 4usize), (1, 3, hidden)] {
            let wb = mlp
                .layout()
                .find(ParamKind::Weight, layer)
                .ok_or_else(|| CliError::Experiment {
                    id: ID.into(),
                    message: "weight block".into(),
                })?
                .range
                .clone();
            let bb = mlp
                .layout()
                .find(ParamKind::Bias, layer)
                .ok_or_else(|| CliError::Experiment {
                    id: ID.into(),
                    message: "bias block".into(),
                })?
                .range
                .clone();
            for unit in 0..units.min(3) {
                let uh = unit_hessian(&mlp, &params, x, &ds.targets, layer, unit, Mode::Train)
                    .map_err(lerr(ID))?;
                // Block indices in the order [b_i; w_i].
                let idx: Vec<usize> = std::iter::once(bb.start + unit)
                    .chain((0..input).map(|j| wb.start + unit * input + j))
                    .collect();
                let k = idx.len();
                let mut fd = vec![vec![0.0; k]; k];
                for (c, &pi) in idx.iter().enumerate() {
                    let step = 1e-5 * params[pi].abs().max(1.0);
                    let mut p = params.clone();
                    p[pi] += step;
                    mlp.loss_and_grad(&p, x, &ds.targets, Mode::Train, &mut grad)
                        .map_err(lerr(ID))?;
                    let gp: Vec<f64> = idx.iter().map(|&q| grad[q]).collect();
                    p[pi] -= 2.0 * step;
                    mlp.loss_and_grad(&p, x, &ds.targets, Mode::Train, &mut grad)
                        .map_err(lerr(ID))?;
                    for (r, &q) in idx.iter().enumerate() {
                        fd[r][c] = (gp[r] - grad[q]) / (2.0 * step);
                    }
                }
                let (mut num, mut den) = (0.0, 0.0);
                for (r, fd_row) in fd.iter().enumerate() {
                    for (c, &f_rc) in fd_row.iter().enumerate() {
                        let sym = 0.5 * (f_rc + fd[c][r]);
                        num += (uh.hessian[(r, c)] - sym).powi(2);
                        den += sym * sym;
                        fx.push(sym);
                        fy.push(uh.hessian[(r, c)]);
                    }
                }
                let rel = (num / den).sqrt();
                worst_rel = worst_rel.max(rel);
                let kh = cond2(uh.hessian.as_ref()).map_err(lerr(ID))?.kappa;
                let dpos = uh.d.iter().all(|v| *v > 0.0);
                let bound = if dpos {
                    let dmax = uh.d.iter().fold(0.0f64, |m, v| m.max(*v));
                    let dmin = uh.d.iter().fold(f64::INFINITY, |m, v| m.min(*v));
                    let ka = cond2(uh.abar.as_ref()).map_err(lerr(ID))?.kappa;
                    let b = dmax / dmin * ka * ka;
                    worst_bound = worst_bound.max(kh / b);
                    b
                } else {
                    f64::NAN
                };
                table.row(vec![
                    (if layer == 0 {
                        "hidden (tanh)"
                    } else {
                        "output (softmax CE)"
                    })
                    .into(),
                    unit.into(),
                    (if uh.closed_form_d {
                        "closed form"
                    } else {
                        "R-operator (exact)"
                    })
                    .into(),
                    rel.into(),
                    kh.into(),
                    if dpos {
                        bound.into()
                    } else {
                        "D not positive".into()
                    },
                ]);
            }
        }
        parity.series.push(Series::new(
            "entries",
            SeriesKind::Points,
            0,
            fx.clone(),
            fy,
        ));
        let lo = fx.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = fx.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        parity.series.push(Series::new(
            "y = x",
            SeriesKind::Dashed,
            6,
            vec![lo, hi],
            vec![lo, hi],
        ));
        let final_loss = hist.last().map_or(f64::NAN, |e| e.train_loss);
        Ok(Evidence {
            setup: format!(
                "An MLP 4 → {hidden} (tanh) → 3 (softmax cross-entropy) trained with Adam on standardized iris ({} epochs, final training loss {}). For three hidden and three output units: H from precond_nn::unit_hessian (D in closed form for output units, by the exact R-operator (Pearlmutter) along the unit's bias for hidden units) against an independent Hessian: central differences (step 1e-5·max(1, |θ|)) of the full back-propagated gradient (Mlp::loss_and_grad) over the unit's block.",
                tc.epochs,
                fmt_num(final_loss)
            ),
            tables: vec![table],
            plots: vec![parity],
            checks: vec![
                // Central differences: truncation O(t²) ≈ 1e-10 relative, rounding ε/t ≈ 1e-11.
                Check::le(
                    "max relative Frobenius difference, formula against finite differences",
                    worst_rel,
                    1e-6,
                ),
                Check::le("κ(H)/(κ(D)κ(Ā)²) where D > 0", worst_bound, 1.0 + 1e-9),
            ],
        })
    }
}
