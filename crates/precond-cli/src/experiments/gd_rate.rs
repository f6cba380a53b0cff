//! Experiment 1: the rate of gradient descent is set by κ (Theorem 1), and heavy-ball momentum
//! improves it to `(√κ−1)/(√κ+1)`.

use precond_linalg::{
    gd_optimal_rate, gd_optimal_step, heavy_ball_optimal, observed_rate, sym_spectrum,
};

use super::common::{curve, gaussian_vec, lerr, logspace, matvec, norm, sym_with_spectrum};
use crate::error::CliError;
use crate::report::{Check, Ctx, Evidence, Experiment, Plot, Series, SeriesKind, Table};

/// Experiment 1 (THEORY.md §1, Theorem 1 and Polyak's heavy ball).
pub struct GdRate;

const ID: &str = "gd_rate";

/// Errors `‖x_k − x*‖` of GD (`beta = 0`) or heavy ball on `f = ½ xᵀHx` (`x* = 0`), until the
/// error falls below `tol · e_0` or `max_iter` steps.
fn run(h: &faer::Mat<f64>, x0: &[f64], eta: f64, beta: f64, tol: f64, max_iter: usize) -> Vec<f64> {
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut prev = x0.to_vec();
    let mut g = vec![0.0; n];
    let e0 = norm(x0);
    let mut errs = vec![e0];
    for _ in 0..max_iter {
        matvec(h, &x, &mut g);
        for i in 0..n {
            let xi = x[i];
            x[i] = xi - eta * g[i] + beta * (xi - prev[i]);
            prev[i] = xi;
        }
        let e = norm(&x);
        errs.push(e);
        if e < tol * e0 {
            break;
        }
    }
    errs
}

impl Experiment for GdRate {
    fn id(&self) -> &'static str {
        ID
    }
    fn number(&self) -> u32 {
        1
    }
    fn title(&self) -> &'static str {
        "Gradient descent's rate is set by κ"
    }
    fn theory(&self) -> &'static str {
        "THEORY.md §1: Theorem 1, optimal step (3), Polyak's heavy ball"
    }
    fn claim(&self) -> &'static str {
        "With the optimal step η* = 2/(λmin+λmax), gradient descent on a quadratic with Hessian H contracts the error by ρ* = (κ−1)/(κ+1) per step, κ = κ(H), and no faster; heavy-ball momentum with Polyak's parameters converges at (√κ−1)/(√κ+1)."
    }
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError> {
        let n = ctx.pick(40, 20);
        let kappas: Vec<f64> = ctx.pick(
            vec![10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4],
            vec![10.0, 100.0, 1e3],
        );
        let mut rng = ctx.rng(1);
        let tol: f64 = 1e-9;
        let mut table = Table::new(
            "Observed against predicted rates (the rate is the fitted per-step contraction of ‖x_k − x*‖ over the last half of the run)",
            &[
                "κ(H)",
                "GD predicted (κ−1)/(κ+1)",
                "GD observed",
                "GD steps to 1e-9",
                "max_k ‖e_k‖/(ρ*^k ‖e_0‖)",
                "HB predicted (√κ−1)/(√κ+1)",
                "HB observed",
                "HB steps to 1e-9",
            ],
        );
        let mut err_plot = Plot::new(
            "Error against iteration",
            "iteration k",
            "‖x_k − x*‖ / ‖x_0 − x*‖",
            false,
            true,
        );
        let mut rate_plot = Plot::new("1 − rate against κ (log–log)", "κ(H)", "1 − ρ", true, true);
        let (mut pg, mut og, mut ph, mut oh, mut ks) = (vec![], vec![], vec![], vec![], vec![]);
        let mut checks = Vec::new();
        let mut worst_bound: f64 = 0.0;
        let (mut worst_gd_exp, mut worst_hb_exp) = (0.0f64, 0.0f64);
        let mut plotted = 0;
        for &kappa_target in &kappas {
            let lam = logspace(1.0, kappa_target, n);
            let h = sym_with_spectrum(&mut rng, &lam);
            let spec = sym_spectrum(h.as_ref()).map_err(lerr(ID))?;
            let (lmin, lmax, kappa) = (spec.lambda_min, spec.lambda_max, spec.kappa);
            let x0 = gaussian_vec(&mut rng, n);
            // GD with the optimal step (3).
            let eta = gd_optimal_step(lmin, lmax);
            let rho = gd_optimal_rate(kappa);
            let max_gd = ((tol.ln() / rho.ln()).ceil() as usize + 10).min(400_000);
            let e_gd = run(&h, &x0, eta, 0.0, tol, max_gd);
            let fit_gd = observed_rate(&e_gd, 0.5).map_err(lerr(ID))?;
            // Theorem 1 as a bound: ‖e_k‖ ≤ ρ*^k ‖e_0‖ for every k (I − ηH is symmetric with
            // norm ρ*).
            let ratio = e_gd
                .iter()
                .enumerate()
                .skip(1)
                .map(|(k, e)| e / (rho.powi(k as i32) * e_gd[0]))
                .fold(0.0f64, f64::max);
            worst_bound = worst_bound.max(ratio);
            // Heavy ball with Polyak's parameters.
            let hb = heavy_ball_optimal(lmin, lmax);
            let max_hb = ((tol.ln() / hb.rate.ln()).ceil() as usize * 3 + 50).min(400_000);
            let e_hb = run(&h, &x0, hb.eta, hb.beta, tol, max_hb);
            let fit_hb = observed_rate(&e_hb, 0.5).map_err(lerr(ID))?;
            // Exponent ratios log(observed)/log(predicted): 1 means the predicted rate exactly.
            let xg = fit_gd.log_rate / rho.ln();
            let xh = fit_hb.log_rate / hb.rate.ln();
            worst_gd_exp = worst_gd_exp.max((xg - 1.0).abs());
            worst_hb_exp = worst_hb_exp.max((xh - 1.0).abs());
            table.row(vec![
                kappa.into(),
                rho.into(),
                fit_gd.rate.into(),
                (e_gd.len() - 1).into(),
                ratio.into(),
                hb.rate.into(),
                fit_hb.rate.into(),
                (e_hb.len() - 1).into(),
            ]);
            ks.push(kappa);
            pg.push(1.0 - rho);
            og.push(1.0 - fit_gd.rate);
            ph.push(1.0 - hb.rate);
            oh.push(1.0 - fit_hb.rate);
            if [10.0, 100.0, 1e3].contains(&kappa_target) {
                let rel: Vec<f64> = e_gd.iter().map(|e| e / e_gd[0]).collect();
                let (x, y) = curve(&rel, 300);
                err_plot.series.push(Series::new(
                    format!("GD, κ={}", crate::report::fmt_num(kappa_target)),
                    SeriesKind::Line,
                    plotted,
                    x,
                    y,
                ));
                let rel: Vec<f64> = e_hb.iter().map(|e| e / e_hb[0]).collect();
                let (x, y) = curve(&rel, 300);
                err_plot.series.push(Series::new(
                    format!("heavy ball, κ={}", crate::report::fmt_num(kappa_target)),
                    SeriesKind::Dashed,
                    plotted,
                    x,
                    y,
                ));
                plotted += 1;
            }
        }
        rate_plot.series.push(Series::new(
            "GD predicted 2/(κ+1)",
            SeriesKind::Line,
            0,
            ks.clone(),
            pg,
        ));
        rate_plot.series.push(Series::new(
            "GD observed",
            SeriesKind::Points,
            0,
            ks.clone(),
            og,
        ));
        rate_plot.series.push(Series::new(
            "HB predicted 2/(√κ+1)",
            SeriesKind::Line,
            1,
            ks.clone(),
            ph,
        ));
        rate_plot
            .series
            .push(Series::new("HB observed", SeriesKind::Points, 1, ks, oh));
        // Rounding: each step adds a relative error of order n ε to ‖e_k‖, far below 1e-6 over
        // the ≤ 4e5 steps run here.
        checks.push(Check::le(
            "Theorem 1 as a bound: max over κ and k ≥ 1 of ‖e_k‖/(ρ*^k‖e_0‖)",
            worst_bound,
            1.0 + 1e-9,
        ));
        checks.push(Check::le(
            "GD rate is ρ*: max over κ of |log(observed)/log(ρ*) − 1|",
            worst_gd_exp,
            0.05,
        ));
        checks.push(Check::le(
            "heavy-ball rate is (√κ−1)/(√κ+1): max over κ of |log(observed)/log(predicted) − 1|",
            worst_hb_exp,
            0.15,
        ));
        Ok(Evidence {
            setup: format!(
                "Quadratics f(x) = ½xᵀHx with H = Q diag(λ) Qᵀ (n = {n}, random orthogonal Q, λ log-spaced from 1 to κ), a random start, run to a relative error of 1e-9. κ, λmin, λmax come from precond_linalg::sym_spectrum; the step from gd_optimal_step, the heavy-ball parameters from heavy_ball_optimal, the observed rate from observed_rate (least-squares fit of log ‖e_k‖ over the last half). An exponent ratio log(observed)/log(predicted) of 1 means the predicted rate exactly; > 1 is faster. Heavy ball's error behaves like k·ρ^k (a double eigenvalue of its iteration matrix), so its fitted rate sits slightly above ρ."
            ),
            tables: vec![table],
            plots: vec![err_plot, rate_plot],
            checks,
        })
    }
}
