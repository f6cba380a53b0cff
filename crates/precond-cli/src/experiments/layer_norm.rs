//! Experiment 10: LayerNorm equalizes columns (THEORY.md §6, Section 5.3, Theorem 7).

use precond_linalg::col_norms;
use precond_nn::data::gather_columns;
use precond_nn::{
    Activation, LayerNormAffine, LayerNormSpec, Loss, MlpConfig, Mode, Normalization, ParamKind,
    TrainConfig, WithNorm, extended_hidden_matrix, layer_norm_column_bounds,
};
use precond_optim::OptimizerConfig;

use super::common::{digits_split, final_metrics_row, fit_mlp, lerr};
use crate::error::CliError;
use crate::report::{Check, Ctx, Evidence, Experiment, Plot, Series, SeriesKind, Table, fmt_num};

/// Experiment 10.
pub struct LayerNorm;

const ID: &str = "layer_norm";

impl Experiment for LayerNorm {
    fn id(&self) -> &'static str {
        ID
    }
    fn number(&self) -> u32 {
        10
    }
    fn title(&self) -> &'static str {
        "LayerNorm equalizes the columns"
    }
    fn theory(&self) -> &'static str {
        "THEORY.md §6: Section 5.3, (29)–(32), Theorem 7"
    }
    fn claim(&self) -> &'static str {
        "After a post-activation LayerNorm over d features, every column of the next layer's extended input [1ᵀ; H̃] has norm √(1 + d(γ² + β²)) with scalar γ, β, and lies in [1, √(1 + d(‖γ‖∞ + ‖β‖∞)²)] with vector γ, β: equal column norms, a near-optimal column scaling."
    }
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError> {
        let (train, test) = digits_split(ctx, ID)?;
        let width = 32usize;
        let tc = TrainConfig {
            epochs: ctx.pick(30, 3),
            batch_size: 64,
            seed: ctx.seed,
            kappa_layers: vec![1],
            kappa_samples: 256,
            ..Default::default()
        };
        let opt = OptimizerConfig::adam(3e-3);
        let sub = gather_columns(
            train.x.as_ref(),
            &(0..256.min(train.x.ncols())).collect::<Vec<_>>(),
        );
        let mut table = Table::new(
            format!(
                "Columns of [1ᵀ; H̃] (layer 1's input) on 256 training samples after training, d = {width}"
            ),
            &[
                "network",
                "min column norm",
                "max column norm",
                "Theorem 7 lower",
                "Theorem 7 upper",
                "κ without LN applied",
                "κ with LN applied",
            ],
        );
        let mut curves = Plot::new(
            "Training loss per epoch (Adam)",
            "epoch",
            "training loss",
            false,
            true,
        );
        let mut cols = Plot::new(
            "Column norms of [1ᵀ; H̃] per sample, sorted",
            "sample (sorted by norm)",
            "column norm",
            false,
            false,
        );
        let mut summary = Table::new("Final metrics", &["network", "train loss", "test accuracy"]);
        let mut checks = Vec::new();
        let nets = [
            ("no normalization", Normalization::None),
            (
                "LayerNorm, scalar γ, β",
                Normalization::LayerNorm(LayerNormSpec {
                    affine: LayerNormAffine::Scalar,
                    eps: 0.0,
                    ..Default::default()
                }),
            ),
            (
                "LayerNorm, vector γ, β",
                Normalization::LayerNorm(LayerNormSpec {
                    affine: LayerNormAffine::Vector,
                    eps: 0.0,
                    ..Default::default()
                }),
            ),
        ];
        for (ni, (name, norm)) in nets.into_iter().enumerate() {
            let cfg = MlpConfig::feedforward(
                64,
                &[width],
                Activation::Tanh,
                norm,
                10,
                Loss::SoftmaxCrossEntropy,
            );
            let (mlp, params, hist) = fit_mlp(ID, cfg, &opt, &train, Some(&test), &tc)?;
            curves.series.push(Series::new(
                name,
                SeriesKind::Line,
                ni,
                hist.epochs.iter().map(|e| e.epoch as f64).collect(),
                hist.epochs.iter().map(|e| e.train_loss).collect(),
            ));
            final_metrics_row(ID, name, &hist, &mut summary)?;
            let a = extended_hidden_matrix(
                &mlp,
                &params,
                sub.as_ref(),
                1,
                WithNorm::Normalized,
                Mode::Train,
            )
            .map_err(lerr(ID))?;
            let raw =
                extended_hidden_matrix(&mlp, &params, sub.as_ref(), 1, WithNorm::Raw, Mode::Train)
                    .map_err(lerr(ID))?;
            let kn = precond_linalg::cond2(a.as_ref()).map_err(lerr(ID))?.kappa;
            let kr = precond_linalg::cond2(raw.as_ref()).map_err(lerr(ID))?.kappa;
            let mut cn = col_norms(a.as_ref());
            let lo = cn.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = cn.iter().copied().fold(0.0, f64::max);
            let get = |kind| {
                mlp.layout()
                    .find(kind, 0)
                    .map(|b| params[b.range.clone()].to_vec())
                    .unwrap_or_default()
            };
            let (gamma, beta) = (get(ParamKind::Gain), get(ParamKind::Shift));
            if ni == 0 {
                table.row(vec![
                    name.into(),
                    lo.into(),
                    hi.into(),
                    "".into(),
                    "".into(),
                    kr.into(),
                    kn.into(),
                ]);
            } else {
                let (blo, bhi) = layer_norm_column_bounds(width, &gamma, &beta);
                table.row(vec![
                    name.into(),
                    lo.into(),
                    hi.into(),
                    blo.into(),
                    bhi.into(),
                    kr.into(),
                    kn.into(),
                ]);
                if ni == 1 {
                    // Scalar affine: equality up to rounding in the normalization (eps = 0).
                    let v = blo;
                    let dev = cn.iter().map(|c| (c - v).abs() / v).fold(0.0, f64::max);
                    checks.push(Check::le(format!("scalar γ = {}, β = {}: max |‖column‖ − √(1 + d(γ²+β²))| / √(1 + d(γ²+β²))", fmt_num(gamma[0]), fmt_num(beta[0])), dev, 1e-10));
                } else {
                    // Rounding allowance relative 1e-12 on both ends.
                    checks.push(Check::ge(
                        "vector γ, β: smallest column norm ≥ 1",
                        lo,
                        1.0 * (1.0 - 1e-12),
                    ));
                    checks.push(Check::le(
                        "vector γ, β: largest column norm ≤ √(1 + d(‖γ‖∞ + ‖β‖∞)²)",
                        hi,
                        bhi * (1.0 + 1e-12),
                    ));
                }
            }
            cn.sort_by(f64::total_cmp);
            cols.series.push(Series::new(
                name,
                SeriesKind::Line,
                ni,
                (0..cn.len()).map(|k| k as f64).collect(),
                cn,
            ));
        }
        Ok(Evidence {
            setup: format!(
                "digits (min-max scaled, 75/25 split{}), MLP 64 → {width} (tanh) → 10, without normalization and with post-activation LayerNorm (eps = 0) with scalar and with vector affine parameters, Adam lr 3e-3, batch 64, {} epochs, so γ and β have moved away from their initial 1 and 0. The columns of the next layer's extended input come from precond_nn::extended_hidden_matrix, the bounds from layer_norm_column_bounds with the trained γ, β. κ with LayerNorm applied is ∞ (exactly rank deficient): every normalized ĥ_n is orthogonal to 1, so the d rows of γ⊙Ĥ + β1ᵀ and the row 1ᵀ span at most d dimensions. LayerNorm equalizes columns (samples), BatchNorm rows (features).",
                if ctx.quick {
                    ", 400 training samples"
                } else {
                    ""
                },
                fmt_num(tc.epochs as f64)
            ),
            tables: vec![table, summary],
            plots: vec![cols, curves],
            checks,
        })
    }
}
