//! Experiment 3: Van der Sluis' theorem (THEORY.md §3, Theorem 2 and Corollary 1).

use faer::Mat;
use precond_linalg::{cond2, scaling_spread, van_der_sluis_bound};
use rand::Rng;
use rand_distr::StandardNormal;

use super::common::lerr;
use crate::error::CliError;
use crate::report::{Check, Ctx, Evidence, Experiment, Plot, Series, SeriesKind, Table, fmt_num};

/// Experiment 3.
pub struct VanDerSluisExperiment;

const ID: &str = "van_der_sluis";

fn scaled(a: &Mat<f64>, d: &[f64]) -> Mat<f64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| d[i] * a[(i, j)])
}

fn kappa(a: &Mat<f64>, d: &[f64]) -> Result<f64, CliError> {
    Ok(cond2(scaled(a, d).as_ref()).map_err(lerr(ID))?.kappa)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ecdf(v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let y = (1..=s.len()).map(|k| k as f64 / n).collect();
    (s, y)
}

impl Experiment for VanDerSluisExperiment {
    fn id(&self) -> &'static str {
        ID
    }
    fn number(&self) -> u32 {
        3
    }
    fn title(&self) -> &'static str {
        "Van der Sluis: equal row norms are nearly optimal"
    }
    fn theory(&self) -> &'static str {
        "THEORY.md §3: Theorem 2 (Van der Sluis 1969), Corollary 1"
    }
    fn claim(&self) -> &'static str {
        "Scaling the rows of a full-column-rank A to unit norm (D₀ = diag(1/‖a_i‖)) gives κ(D₀A) ≤ √m · κ(DA) for every positive diagonal D; and any D with row-norm spread r = max d_i‖a_i‖ / min d_i‖a_i‖ has κ(DA) ≤ r · κ(D₀A) (the step of Corollary 1)."
    }
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError> {
        let count = ctx.pick(200, 40);
        let climb = ctx.pick(60, 15);
        let mut rng = ctx.rng(3);
        let names = [
            "best found (random search)",
            "1/‖a_i‖_∞ (max entry)",
            "1/‖a_i‖_1",
            "D₀ · 10^u, u ∈ [−1, 1]",
        ];
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let mut raw: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let mut worst_thm2: f64 = 0.0;
        let mut worst_cor: f64 = 0.0;
        let (mut ka, mut kd0, mut kbest, mut gains) = (vec![], vec![], vec![], vec![]);
        for _ in 0..count {
            let m = rng.random_range(10..=40usize);
            let n = rng.random_range(2..=m / 2);
            // Correlated columns (a random mixing C) and rows scaled over six decades.
            let g = Mat::from_fn(m, n, |_, _| rng.sample::<f64, _>(StandardNormal));
            let c = Mat::from_fn(n, n, |i, j| {
                (if i == j { 1.0 } else { 0.0 }) + 0.5 * rng.sample::<f64, _>(StandardNormal)
            });
            let rs: Vec<f64> = (0..m)
                .map(|_| 10f64.powf(rng.random_range(-3.0..3.0)))
                .collect();
            let a = Mat::from_fn(m, n, |i, j| {
                rs[i] * (0..n).map(|k| g[(i, k)] * c[(k, j)]).sum::<f64>()
            });
            let v = van_der_sluis_bound(a.as_ref()).map_err(lerr(ID))?;
            // Random search for the best diagonal, starting at D₀.
            let mut best_d = v.d0.clone();
            let mut best_k = v.kappa_d0a;
            for it in 0..climb {
                let sigma = 0.5 * (1.0 - it as f64 / climb as f64) + 0.02;
                let cand: Vec<f64> = best_d
                    .iter()
                    .map(|d| d * (sigma * rng.sample::<f64, _>(StandardNormal)).exp())
                    .collect();
                let k = kappa(&a, &cand)?;
                if k < best_k {
                    best_k = k;
                    best_d = cand;
                }
            }
            let inf: Vec<f64> = (0..m)
                .map(|i| 1.0 / (0..n).map(|j| a[(i, j)].abs()).fold(0.0, f64::max))
                .collect();
            let one: Vec<f64> = (0..m)
                .map(|i| 1.0 / (0..n).map(|j| a[(i, j)].abs()).sum::<f64>())
                .collect();
            let rnd: Vec<f64> =
                v.d0.iter()
                    .map(|d| d * 10f64.powf(rng.random_range(-1.0..1.0)))
                    .collect();
            for (k, d) in [best_d, inf, one, rnd].iter().enumerate() {
                let kd = kappa(&a, d)?;
                let r = v.kappa_d0a / kd;
                ratios[k].push(r / v.sqrt_m);
                raw[k].push(r);
                worst_thm2 = worst_thm2.max(r / v.sqrt_m);
                // Corollary 1's step for the fixed scalings (the searched one starts at D₀, where
                // the inequality is an equality).
                if k > 0 {
                    let spread = scaling_spread(a.as_ref(), d).map_err(lerr(ID))?;
                    worst_cor = worst_cor.max(kd / (spread * v.kappa_d0a));
                }
            }
            ka.push(v.kappa_a);
            kd0.push(v.kappa_d0a);
            kbest.push(best_k);
            gains.push(v.kappa_a / v.kappa_d0a);
        }
        let mut table = Table::new(
            "κ(D₀A)/(√m κ(DA)) over the matrices, for each alternative scaling D (Theorem 2: never above 1)",
            &[
                "scaling D",
                "median",
                "max",
                "fraction where D₀ is at least as good",
            ],
        );
        for (k, name) in names.iter().enumerate() {
            let mut r = ratios[k].clone();
            let med = median(&mut r);
            let mx = r[r.len() - 1];
            let at_least =
                raw[k].iter().filter(|&&x| x <= 1.0).count() as f64 / raw[k].len() as f64;
            table.row(vec![(*name).into(), med.into(), mx.into(), at_least.into()]);
        }
        let mut gm = gains.clone();
        let med_gain = median(&mut gm);
        let mut summary = Table::new(
            "Condition numbers over the matrices",
            &["quantity", "median", "min", "max"],
        );
        for (name, v) in [
            ("κ(A)", &ka),
            ("κ(D₀A)", &kd0),
            ("κ(D_best A)", &kbest),
            ("gain κ(A)/κ(D₀A)", &gains),
        ] {
            let mut s = v.clone();
            let med = median(&mut s);
            summary.row(vec![
                name.into(),
                med.into(),
                s[0].into(),
                s[s.len() - 1].into(),
            ]);
        }
        let mut dist = Plot::new(
            "Distribution of κ(D₀A) / (√m·κ(DA))",
            "κ(D₀A) / (√m κ(DA))  (Theorem 2: ≤ 1)",
            "fraction of matrices",
            true,
            false,
        );
        for (k, name) in names.iter().enumerate() {
            let (x, y) = ecdf(&ratios[k]);
            dist.series
                .push(Series::new(*name, SeriesKind::Line, k, x, y));
        }
        dist.series.push(Series::new(
            "Theorem 2 bound",
            SeriesKind::Dashed,
            6,
            vec![1.0, 1.0],
            vec![0.0, 1.0],
        ));
        let mut scatter = Plot::new(
            "Row equilibration against the raw matrix",
            "κ(A)",
            "condition number after scaling",
            true,
            true,
        );
        scatter.series.push(Series::new(
            "κ(D₀A)",
            SeriesKind::Points,
            0,
            ka.clone(),
            kd0.clone(),
        ));
        scatter.series.push(Series::new(
            "κ(D_best A)",
            SeriesKind::Points,
            2,
            ka.clone(),
            kbest,
        ));
        Ok(Evidence {
            setup: format!(
                "{count} random m×n matrices (m from 10 to 40, n from 2 to m/2), A = diag(10^u)·G·C with u uniform in [−3, 3], G Gaussian and C = I + 0.5·Gaussian (correlated columns). For each: κ(A) and κ(D₀A) from van_der_sluis_bound; four other row scalings D (a random search for the best D started at D₀, {climb} steps; the max-entry and 1-norm row scalings; D₀ perturbed by 10^u, u ∈ [−1, 1]); Corollary 1's spread from scaling_spread. Median gain κ(A)/κ(D₀A) = {}.",
                fmt_num(med_gain)
            ),
            tables: vec![summary, table],
            plots: vec![dist, scatter],
            checks: vec![
                Check::le(
                    "Theorem 2: max over matrices and scalings of κ(D₀A)/(√m κ(DA))",
                    worst_thm2,
                    1.0,
                ),
                Check::le(
                    "Corollary 1 step: max over matrices and the three fixed scalings of κ(DA)/(spread(D)·κ(D₀A))",
                    worst_cor,
                    1.0 + 1e-10,
                ),
                Check::ge(
                    "row equilibration helps: median gain κ(A)/κ(D₀A)",
                    med_gain,
                    10.0,
                ),
            ],
        })
    }
}
