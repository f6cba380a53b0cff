//! Experiment 15: the square root is essential (THEORY.md §4): Adam's `P = 1/(sqrt(v̂) + ε)`
//! against the same optimizer with `power = 1`, `P = 1/(v̂ + ε)`, and against the fixed Jacobi
//! preconditioner `P = 1/(diag H(x₀) + ε)`.

use precond_linalg::{precond_cond_diag, row_norms, sym_spectrum};
use precond_optim::experiment::Objective;
use precond_optim::{FixedPreconditioner, OptimizerConfig, OptimizerKind};

use super::common::{correlation, curve, lerr, logspace, scaled_problems, square_from_row_major};
use crate::error::CliError;
use crate::report::{Check, Ctx, Evidence, Experiment, Plot, Series, SeriesKind, Table, fmt_num};

/// Experiment 15.
pub struct SqrtEssential;

const ID: &str = "sqrt_essential";

/// The three preconditioners compared.
const METHODS: [&str; 3] = [
    "Adam, P = 1/(√v̂ + ε)",
    "Adam power 1, P = 1/(v̂ + ε)",
    "Jacobi, P = 1/(diag H(x₀) + ε)",
];

/// Medians over the snapshots of one run.
struct Summary {
    lr: f64,
    kappa_p: f64,
    pearson: f64,
    spearman: f64,
    slope: f64,
    final_loss: f64,
    loss: Vec<f64>,
    steps: Vec<f64>,
    kappas: Vec<f64>,
    last_p: Vec<f64>,
    last_rn: Vec<f64>,
}

/// Ranks (average ranks for ties) of a slice.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]].total_cmp(&v[idx[i]]).is_eq() {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Least-squares slope of `b` on `a`.
fn slope(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
    }
    sab / saa
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn config(method: usize, lr: f64, jacobi: &[f64]) -> Result<OptimizerConfig, CliError> {
    Ok(match method {
        0 => OptimizerConfig::adam(lr),
        1 => {
            let mut c = OptimizerConfig::adam(lr);
            c.power = 1.0;
            c
        }
        _ => {
            let mut c = OptimizerConfig::from_json(
                r#"{"optimizer": "precond_gd", "preconditioner": {"diag": [1]}}"#,
            )
            .map_err(lerr(ID))?;
            debug_assert_eq!(c.optimizer, OptimizerKind::PrecondGd);
            c.lr = lr;
            c.preconditioner = Some(FixedPreconditioner::Diagonal(jacobi.to_vec()));
            c
        }
    })
}

/// Losses, snapshots `[step, κ, Pearson, Spearman, slope]`, the last `p` and row norms.
type RunOut = (Vec<f64>, Vec<[f64; 5]>, Vec<f64>, Vec<f64>);

/// Runs `steps` steps; every `every` steps (0: never) a snapshot of `P_k` against `H(x_k)`.
fn run(
    obj: &dyn Objective,
    cfg: &OptimizerConfig,
    steps: usize,
    every: usize,
) -> Result<RunOut, CliError> {
    let n = obj.dim();
    let mut opt = cfg.build(n).map_err(lerr(ID))?;
    let mut x = vec![0.0; n];
    let mut g = vec![0.0; n];
    let mut p = vec![0.0; n];
    let mut loss = Vec::with_capacity(steps + 1);
    let mut snaps = Vec::new();
    let (mut last_p, mut last_rn) = (Vec::new(), Vec::new());
    for k in 0..=steps {
        let f = obj.value_grad(&x, &mut g);
        loss.push(f);
        if !f.is_finite() || k == steps {
            break;
        }
        opt.step_f64(&mut x, &g).map_err(lerr(ID))?;
        if every > 0 && (k + 1) % every == 0 {
            opt.preconditioner(&mut p).map_err(lerr(ID))?;
            let hv = obj.hessian(&x).ok_or_else(|| CliError::Experiment {
                id: ID.into(),
                message: "no Hessian".into(),
            })?;
            let h = square_from_row_major(&hv, n);
            let kp = precond_cond_diag(h.as_ref(), &p)
                .map_err(lerr(ID))?
                .spectral_kappa;
            let rn = row_norms(h.as_ref());
            let a: Vec<f64> = p.iter().map(|v| (1.0 / v).ln()).collect();
            let b: Vec<f64> = rn.iter().map(|v| v.ln()).collect();
            snaps.push([
                (k + 1) as f64,
                kp,
                correlation(&a, &b),
                correlation(&ranks(&a), &ranks(&b)),
                slope(&b, &a),
            ]);
            last_p.clone_from(&p);
            last_rn = rn;
        }
    }
    Ok((loss, snaps, last_p, last_rn))
}

fn summarize(
    obj: &dyn Objective,
    method: usize,
    jacobi: &[f64],
    grid: &[f64],
    steps: usize,
    every: usize,
) -> Result<Summary, CliError> {
    // the learning rate of the grid with the smallest final loss (diverged runs excluded)
    let mut best = (f64::INFINITY, grid[0]);
    for &lr in grid {
        let (loss, ..) = run(obj, &config(method, lr, jacobi)?, steps, 0)?;
        let last = loss[loss.len() - 1];
        if last.is_finite() && loss.len() == steps + 1 && last < best.0 {
            best = (last, lr);
        }
    }
    let lr = best.1;
    let (loss, snaps, last_p, last_rn) = run(obj, &config(method, lr, jacobi)?, steps, every)?;
    let col = |j: usize| snaps.iter().map(|s| s[j]).collect::<Vec<f64>>();
    Ok(Summary {
        lr,
        kappa_p: median(col(1)),
        pearson: median(col(2)),
        spearman: median(col(3)),
        slope: median(col(4)),
        final_loss: loss[loss.len() - 1],
        loss,
        steps: col(0),
        kappas: col(1),
        last_p,
        last_rn,
    })
}

impl Experiment for SqrtEssential {
    fn id(&self) -> &'static str {
        ID
    }
    fn number(&self) -> u32 {
        15
    }
    fn title(&self) -> &'static str {
        "The square root is essential"
    }
    fn theory(&self) -> &'static str {
        "THEORY.md §4 (paper Section 3.2): P = 1/(√v̂ + ε) against 1/(v̂ + ε)"
    }
    fn claim(&self) -> &'static str {
        "The square root of the averaged squared gradients scales like the Hessian's row norms (1/p_i ∝ ‖h_i‖, log-log slope 1), without it (power 1, the diagonal Fisher / natural-gradient scaling) like their squares (slope 2). On the badly scaled quadratic the root is essential: the loss reached is orders of magnitude lower and κ(P^½HP^½) usually far lower (never materially higher). On logistic regression with raw features it is not: the diagonal of H, not its row norms, is the right scale there, power 1 matches the Jacobi preconditioner's κ and reaches a lower loss than Adam."
    }
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError> {
        let steps = ctx.pick(3000, 600);
        let every = steps / 20;
        let grid = logspace(1e-4, 1.0, ctx.pick(9, 5));
        let mut rng = ctx.rng(15);
        // the badly scaled quadratic H = D M D and logistic regression on raw breast_cancer
        let n = ctx.pick(20, 10);
        let (_h, quad, logit) = scaled_problems(&mut rng, n, ID)?;

        let (mut tables, mut plots, mut checks) = (Vec::new(), Vec::new(), Vec::new());
        for (pi, (pname, obj)) in [
            ("ill-conditioned quadratic", &quad as &dyn Objective),
            ("logistic regression, raw breast_cancer", &logit),
        ]
        .into_iter()
        .enumerate()
        {
            let dim = obj.dim();
            let h0 = square_from_row_major(&obj.hessian(&vec![0.0; dim]).unwrap_or_default(), dim);
            let kh0 = sym_spectrum(h0.as_ref()).map_err(lerr(ID))?.kappa;
            let jacobi: Vec<f64> = (0..dim).map(|i| 1.0 / (h0[(i, i)] + 1e-8)).collect();
            let mut t = Table::new(
                format!(
                    "{pname}: κ(H(0)) = {}; medians over {} snapshots of P_k and H(x_k)",
                    fmt_num(kh0),
                    20
                ),
                &[
                    "preconditioner",
                    "tuned lr",
                    "median κ(P_k^½ H P_k^½)",
                    "Pearson(log 1/p_i, log ‖h_i‖)",
                    "Spearman(1/p_i, ‖h_i‖)",
                    "slope of log 1/p_i on log ‖h_i‖",
                    "final loss",
                ],
            );
            let mut conv = Plot::new(
                format!("{pname}: loss against iteration"),
                "iteration",
                if pi == 0 { "f(x_k) − f*" } else { "loss" },
                false,
                true,
            );
            let mut kplot = Plot::new(
                format!("{pname}: κ(P_k^½ H P_k^½) over the iterations"),
                "iteration",
                "condition number",
                false,
                true,
            );
            let mut scatter = Plot::new(
                format!("{pname}: 1/p_i against the Hessian row norms (last snapshot)"),
                "‖h_i‖",
                "1/p_i",
                true,
                true,
            );
            let mut sums = Vec::new();
            for (mi, mname) in METHODS.iter().enumerate() {
                let s = summarize(obj, mi, &jacobi, &grid, steps, every)?;
                t.row(vec![
                    (*mname).into(),
                    s.lr.into(),
                    s.kappa_p.into(),
                    s.pearson.into(),
                    s.spearman.into(),
                    s.slope.into(),
                    s.final_loss.into(),
                ]);
                let (cx, cy) = curve(&s.loss, 300);
                conv.series.push(Series::new(
                    format!("{mname} (lr {})", fmt_num(s.lr)),
                    SeriesKind::Line,
                    mi,
                    cx,
                    cy,
                ));
                kplot.series.push(Series::new(
                    *mname,
                    SeriesKind::Line,
                    mi,
                    s.steps.clone(),
                    s.kappas.clone(),
                ));
                scatter.series.push(Series::new(
                    *mname,
                    SeriesKind::Points,
                    mi,
                    s.last_rn.clone(),
                    s.last_p.iter().map(|p| 1.0 / p).collect(),
                ));
                sums.push(s);
            }
            let (sq, lin, jac) = (&sums[0], &sums[1], &sums[2]);
            checks.push(Check::le(
                format!("{pname}: |slope of log 1/p_i on log ‖h_i‖ − 1| with the square root"),
                (sq.slope - 1.0).abs(),
                0.25,
            ));
            checks.push(Check::ge(
                format!("{pname}: slope with power 1 / slope with the square root"),
                lin.slope / sq.slope,
                1.5,
            ));
            if pi == 0 {
                // the theory's claim, where it holds: the root converges far better; its κ is
                // usually much lower (below half of power 1's on 11 of 12 seeds tried, 1.05× on
                // seed 42), so the check is only that it is not materially higher
                checks.push(Check::le(
                    format!("{pname}: median κ(P^½HP^½), square root / power 1"),
                    sq.kappa_p / lin.kappa_p,
                    1.5,
                ));
                checks.push(Check::le(
                    format!("{pname}: final loss, square root / power 1"),
                    sq.final_loss / lin.final_loss,
                    1e-3,
                ));
            } else {
                // where it fails: the Hessian is S M S with feature scales s_i spanning decades,
                // its row norms grow like s_i but its diagonal like s_i², and power 1 (slope 2)
                // lands on the Jacobi scaling
                checks.push(Check::ge(
                    format!(
                        "{pname}: median κ(P^½HP^½), square root / power 1 (the claim fails here)"
                    ),
                    sq.kappa_p / lin.kappa_p,
                    1.0,
                ));
                checks.push(Check::le(
                    format!("{pname}: median κ(P^½HP^½), power 1 / Jacobi"),
                    lin.kappa_p / jac.kappa_p,
                    2.0,
                ));
                checks.push(Check::ge(
                    format!("{pname}: final loss, square root / power 1 (the claim fails here)"),
                    sq.final_loss / lin.final_loss,
                    1.0,
                ));
            }
            tables.push(t);
            plots.push(conv);
            plots.push(kplot);
            plots.push(scatter);
        }
        Ok(Evidence {
            setup: format!(
                "The two problems of experiment 4 (quadratic with H = D M D, n = {n}, κ(M) = 10, D = diag(10^u), u uniform in [−1.5, 1.5]; logistic regression on the raw breast_cancer features with an intercept), from x = 0. Three preconditioners, each with its learning rate tuned on a grid of {} values from 1e-4 to 1 (best final loss over {steps} steps): Adam (torch defaults, P = 1/(√v̂ + ε)); the same Adam with \"power\": 1 (P = 1/(v̂ + ε)); and gradient descent with the fixed Jacobi preconditioner P = diag(1/(H_ii(0) + 1e-8)) (precond_gd), which uses the Hessian that Adam never sees. Every {every} steps the optimizer's P_k (Optimizer::preconditioner) and H(x_k) give κ(P_k^½HP_k^½) (precond_cond_diag), the Pearson correlation of log(1/p_i) with log ‖h_i‖, the Spearman rank correlation, and the least-squares slope of log(1/p_i) on log ‖h_i‖ (1: P balances the rows; 2: P divides by their squares). Correlations alone cannot separate the two powers (log(1/p) doubles, a correlation does not change); the slope and κ do.",
                grid.len()
            ),
            tables,
            plots,
            checks,
        })
    }
}
