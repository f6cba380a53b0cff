//! The experiment driver: full-batch objectives (least squares, logistic regression, quadratics)
//! and [`minimize`], which runs an [`Optimizer`] on one of them and records a trace. This is
//! what the report's experiments use to measure the theory (THEORY.md sections 1–6); it is not
//! part of the optimizer API.

use crate::error::{OptimError, Result};
use crate::optimizer::Optimizer;
use precond_linalg::LinearOperator;

/// A smooth objective `f: R^n → R` with its gradient, optionally its Hessian.
pub trait Objective {
    /// `n`.
    fn dim(&self) -> usize;
    /// Returns `f(x)` and writes `∇f(x)` into `g` (both of length [`Self::dim`]).
    fn value_grad(&self, x: &[f64], g: &mut [f64]) -> f64;
    /// The Hessian at `x`, row-major `n × n`, if available.
    fn hessian(&self, _x: &[f64]) -> Option<Vec<f64>> {
        None
    }
    /// Hessian-vector product `out = ∇²f(x) v`; the default uses [`Self::hessian`].
    fn hvp(&self, x: &[f64], v: &[f64], out: &mut [f64]) -> Result<()> {
        let n = self.dim();
        let h = self
            .hessian(x)
            .ok_or_else(|| OptimError::Unsupported("this objective has no Hessian".into()))?;
        for i in 0..n {
            out[i] = h[i * n..(i + 1) * n]
                .iter()
                .zip(v)
                .map(|(a, b)| a * b)
                .sum();
        }
        Ok(())
    }
}

fn matvec(a: &[f64], rows: usize, cols: usize, x: &[f64], y: &mut [f64]) {
    for i in 0..rows {
        y[i] = a[i * cols..(i + 1) * cols]
            .iter()
            .zip(x)
            .map(|(p, q)| p * q)
            .sum();
    }
}

/// `f(x) = ½ (x − x*)ᵀ H (x − x*)`, `∇f = H (x − x*)`, `∇²f = H` (THEORY.md Theorem 1).
#[derive(Clone, Debug)]
pub struct Quadratic {
    n: usize,
    h: Vec<f64>,
    x_star: Vec<f64>,
}

impl Quadratic {
    /// `H` row-major `n × n` (must be symmetric), minimizer `x*` (length `n`).
    pub fn new(h: Vec<f64>, x_star: Vec<f64>) -> Result<Self> {
        let n = x_star.len();
        if h.len() != n * n {
            return Err(OptimError::LengthMismatch {
                what: "H (n*n)",
                expected: n * n,
                got: h.len(),
            });
        }
        let scale = h.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        for i in 0..n {
            for j in 0..i {
                if (h[i * n + j] - h[j * n + i]).abs() > 64.0 * f64::EPSILON * scale {
                    return Err(OptimError::config(
                        "H",
                        format!("not symmetric at ({i}, {j})"),
                    ));
                }
            }
        }
        Ok(Quadratic { n, h, x_star })
    }
    /// `H`, row-major.
    pub fn h(&self) -> &[f64] {
        &self.h
    }
    /// `x*`.
    pub fn x_star(&self) -> &[f64] {
        &self.x_star
    }
}

impl Objective for Quadratic {
    fn dim(&self) -> usize {
        self.n
    }
    fn value_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        let d: Vec<f64> = x.iter().zip(&self.x_star).map(|(a, b)| a - b).collect();
        matvec(&self.h, self.n, self.n, &d, g);
        0.5 * d.iter().zip(g.iter()).map(|(a, b)| a * b).sum::<f64>()
    }
    fn hessian(&self, _x: &[f64]) -> Option<Vec<f64>> {
        Some(self.h.clone())
    }
}

impl LinearOperator for Quadratic {
    fn dim(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        matvec(&self.h, self.n, self.n, x, y);
    }
}

/// `f(x) = (1/(2m)) ||A x − b||²`, `∇f = Aᵀ(Ax − b)/m`, `∇²f = AᵀA/m` (THEORY.md (19)).
#[derive(Clone, Debug)]
pub struct LeastSquares {
    m: usize,
    n: usize,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl LeastSquares {
    /// `A` row-major `m × n`, `b` of length `m`.
    pub fn new(a: Vec<f64>, b: Vec<f64>, n: usize) -> Result<Self> {
        let m = b.len();
        if a.len() != m * n || m == 0 {
            return Err(OptimError::LengthMismatch {
                what: "A (m*n)",
                expected: m * n,
                got: a.len(),
            });
        }
        Ok(LeastSquares { m, n, a, b })
    }
}

impl Objective for LeastSquares {
    fn dim(&self) -> usize {
        self.n
    }
    fn value_grad(&self, x: &[f64], g: &mut [f64]) -> f64 {
        let mut r = vec![0.0; self.m];
        matvec(&self.a, self.m, self.n, x, &mut r);
        for (ri, bi) in r.iter_mut().zip(&self.b) {
            *ri -= bi;
        }
        g.fill(0.0);
        for (ri, row) in r.iter().zip(self.a.chunks_exact(self.n)) {
            for (gj, aij) in g.iter_mut().zip(row) {
                *gj += aij * ri;
            }
        }
        let inv = 1.0 / self.m as f64;
        g.iter_mut().for_each(|v| *v *= inv);
        0.5 * inv * r.iter().map(|v| v * v).sum::<f64>()
    }
    fn hessian(&self, _x: &[f64]) -> Option<Vec<f64>> {
        let (m, n) = (self.m, self.n);
        let mut h = vec![0.0; n * n];
        for i in 0..m {
            let row = &self.a[i * n..(i + 1) * n];
            for p in 0..n {
                for q in 0..n {
                    h[p * n + q] += row[p] * row[q];
                }
            }
        }
        h.iter_mut().for_each(|v| *v /= m as f64);
        Some(h)
    }
}

/// Binary logistic regression, mean cross-entropy (THEORY.md section 6):
/// `f(w, b) = (1/m) Σ [softplus(z_i) − y_i z_i] + (λ/2)||w||²`, `z = X w + b`; parameters are
/// `[w; b]` (length `d + 1`) with `fit_intercept`, else `w`. Hessian `(1/m) X̄ᵀ D X̄ + λ I_w`,
/// `D = diag(σ(z)(1 − σ(z)))`.
#[derive(Clone, Debug)]
pub struct LogisticRegression {
    m: usize,
    d: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    intercept: bool,
    l2: f64,
}

impl LogisticRegression {
    /// Features `x` row-major `m × d`, labels `y ∈ {0, 1}` (length `m`), intercept flag, L2 on `w`.
    pub fn new(x: Vec<f64>, y: Vec<f64>, d: usize, fit_intercept: bool, l2: f64) -> Result<Self> {
        let m = y.len();
        if x.len() != m * d || m == 0 {
            return Err(OptimError::LengthMismatch {
                what: "X (m*d)",
                expected: m * d,
                got: x.len(),
            });
        }
        if let Some(i) = y.iter().position(|&v| v != 0.0 && v - 1.0 != 0.0) {
            return Err(OptimError::config(
                format!("y[{i}]"),
                "labels must be 0 or 1",
            ));
        }
        Ok(LogisticRegression {
            m,
            d,
            x,
            y,
            intercept: fit_intercept,
            l2,
        })
    }

    fn z(&self, p: &[f64], i: usize) -> f64 {
        let row = &self.x[i * self.d..(i + 1) * self.d];
        let b = if self.intercept { p[self.d] } else { 0.0 };
        row.iter().zip(p).map(|(a, w)| a * w).sum::<f64>() + b
    }
}

fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Objective for LogisticRegression {
    fn dim(&self) -> usize {
        self.d + usize::from(self.intercept)
    }
    fn value_grad(&self, p: &[f64], g: &mut [f64]) -> f64 {
        let inv = 1.0 / self.m as f64;
        g.fill(0.0);
        let mut f = 0.0;
        for i in 0..self.m {
            let z = self.z(p, i);
            f += softplus(z) - self.y[i] * z;
            let r = sigmoid(z) - self.y[i];
            for (gj, a) in g.iter_mut().zip(&self.x[i * self.d..(i + 1) * self.d]) {
                *gj += a * r;
            }
            if self.intercept {
                g[self.d] += r;
            }
        }
        g.iter_mut().for_each(|v| *v *= inv);
        for j in 0..self.d {
            g[j] += self.l2 * p[j];
        }
        f * inv + 0.5 * self.l2 * p[..self.d].iter().map(|w| w * w).sum::<f64>()
    }
    fn hessian(&self, p: &[f64]) -> Option<Vec<f64>> {
        let n = self.dim();
        let mut h = vec![0.0; n * n];
        let mut xb = vec![1.0; n];
        for i in 0..self.m {
            xb[..self.d].copy_from_slice(&self.x[i * self.d..(i + 1) * self.d]);
            let s = sigmoid(self.z(p, i));
            let w = s * (1.0 - s) / self.m as f64;
            for a in 0..n {
                for b in 0..n {
                    h[a * n + b] += w * xb[a] * xb[b];
                }
            }
        }
        for j in 0..self.d {
            h[j * n + j] += self.l2;
        }
        Some(h)
    }
}

/// Options of [`minimize`].
#[derive(Clone, Debug, Default)]
pub struct MinimizeOptions {
    /// Maximum number of optimizer steps.
    pub max_iter: usize,
    /// Record `P_k` after every this many steps (0: never).
    pub record_precond_every: usize,
    /// A known minimizer, to record `||x_k − x*||`.
    pub x_star: Option<Vec<f64>>,
    /// Stop when `||∇f(x_k)|| ≤ tol`.
    pub tol: f64,
}

/// What [`minimize`] observed. Entry `k` of `loss`, `grad_norm`, `dist_to_opt` belongs to `x_k`
/// (`x_0` the start), so there is one more entry than steps taken.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// `f(x_k)`.
    pub loss: Vec<f64>,
    /// `||∇f(x_k)||`.
    pub grad_norm: Vec<f64>,
    /// `||x_k − x*||` (empty without `x_star`).
    pub dist_to_opt: Vec<f64>,
    /// `(k, P_k)` after step `k`.
    pub precond_snapshots: Vec<(u64, Vec<f64>)>,
    /// Whether the gradient tolerance was reached.
    pub converged: bool,
}

/// Full-batch minimization of `obj` from `x` (updated in place) with `opt` (f64 buffers).
pub fn minimize(
    obj: &dyn Objective,
    opt: &mut Optimizer,
    x: &mut [f64],
    opts: &MinimizeOptions,
) -> Result<Trace> {
    let n = obj.dim();
    if x.len() != n {
        return Err(OptimError::LengthMismatch {
            what: "x0",
            expected: n,
            got: x.len(),
        });
    }
    if opt.n_params() != n {
        return Err(OptimError::LengthMismatch {
            what: "optimizer n_params",
            expected: n,
            got: opt.n_params(),
        });
    }
    if let Some(xs) = &opts.x_star
        && xs.len() != n
    {
        return Err(OptimError::LengthMismatch {
            what: "x_star",
            expected: n,
            got: xs.len(),
        });
    }
    let mut g = vec![0.0; n];
    let mut t = Trace::default();
    for k in 0..=opts.max_iter {
        let f = obj.value_grad(x, &mut g);
        let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        t.loss.push(f);
        t.grad_norm.push(gn);
        if let Some(xs) = &opts.x_star {
            t.dist_to_opt.push(
                x.iter()
                    .zip(xs)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt(),
            );
        }
        if gn <= opts.tol {
            t.converged = true;
            break;
        }
        if k == opts.max_iter {
            break;
        }
        opt.step_f64(x, &g)?;
        if opts.record_precond_every > 0 && (k + 1) % opts.record_precond_every == 0 {
            let mut p = vec![0.0; n];
            if opt.preconditioner(&mut p).is_ok() {
                t.precond_snapshots.push((opt.step_count(), p));
            }
        }
    }
    Ok(t)
}
