//! Hessian structure of networks (THEORY.md section 6, Theorems 5–7) and the Hessian-vector
//! product of the whole network as a [`LinearOperator`].
//!
//! Conventions: `Ā = [1ᵀ; A]` is `(d + 1) × N`, one **column per sample**, the row of ones first
//! (so the unit parameter block is ordered `[b_i; w_i]`). `κ` is the 2-norm condition number
//! `σ_max/σ_min` over the `min(rows, cols)` singular values, `∞` when numerically rank deficient
//! (`σ_min ≤ max(m, n) ε σ_max`, as `precond_linalg::cond2`).

use crate::activation::Activation;
use crate::batch_norm::{NormStats, StatsGradient};
use crate::error::{NnError, Result};
use crate::loss::Targets;
use crate::mlp::{Forward, Mlp, Mode, Normalization, Workspace};
use crate::util::product;
use faer::{Accum, Mat, MatRef};
use precond_linalg::LinearOperator;

/// `κ(A) = σ_max/σ_min` (2-norm over the `min(m, n)` singular values), `∞` for a numerically
/// rank-deficient matrix: `precond_linalg::cond2`'s `kappa`.
///
/// # Errors
/// [`NnError::Empty`], [`NnError::NonFinite`], [`NnError::Numerical`] if the SVD fails.
pub fn kappa(a: MatRef<'_, f64>) -> Result<f64> {
    precond_linalg::cond2(a).map(|c| c.kappa).map_err(|e| {
        NnError::from_linalg(
            e,
            "matrix for the condition number",
            "singular values (precond_linalg::cond2)",
        )
    })
}

/// The extended matrix `Ā = [1ᵀ; A]` of a `d × N` matrix `A` (`(d + 1) × N`).
pub fn extended(a: MatRef<'_, f64>) -> Mat<f64> {
    Mat::from_fn(a.nrows() + 1, a.ncols(), |r, c| {
        if r == 0 { 1.0 } else { a[(r - 1, c)] }
    })
}

/// `diag(d) A`.
pub fn row_scaled(a: MatRef<'_, f64>, d: &[f64]) -> Result<Mat<f64>> {
    if d.len() != a.nrows() {
        return Err(NnError::DimensionMismatch {
            what: "row scaling length vs rows",
            expected: a.nrows(),
            got: d.len(),
        });
    }
    Ok(Mat::from_fn(a.nrows(), a.ncols(), |r, c| d[r] * a[(r, c)]))
}

/// Whether [`extended_hidden_matrix`] includes the layer's normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WithNorm {
    /// The normalized hidden variables (what the next layer actually sees).
    Normalized,
    /// The same hidden variables with the normalization skipped (`σ(Z)`, from the same `Z`).
    Raw,
}

fn frozen_for_analysis(
    mlp: &Mlp,
    params: &[f64],
    x: MatRef<'_, f64>,
    mode: Mode<'_>,
) -> Result<Vec<Option<NormStats>>> {
    Ok(match mode {
        Mode::Train => mlp.forward(params, x, Mode::Train)?.batch_norm_stats(),
        Mode::Eval => mlp
            .running_stats()
            .iter()
            .map(|r| r.as_ref().map(|r| r.as_stats()))
            .collect(),
        Mode::Frozen(s) => {
            // fill missing BatchNorm layers with batch statistics
            let batch = mlp.forward(params, x, mode)?.batch_norm_stats();
            s.iter().zip(batch).map(|(g, b)| g.clone().or(b)).collect()
        }
    })
}

/// The extended hidden variable matrix `Ā = [1ᵀ; A]` that feeds `layer` (Theorem 5): for
/// `layer = 0` the extended data matrix `X̄`, otherwise `[1ᵀ; H^{layer−1}]`, one column per sample,
/// with or without the previous layer's normalization ([`WithNorm`]).
///
/// # Errors
/// Invalid layer, parameters or input (see [`Mlp::forward`]).
pub fn extended_hidden_matrix(
    mlp: &Mlp,
    params: &[f64],
    x: MatRef<'_, f64>,
    layer: usize,
    with: WithNorm,
    mode: Mode<'_>,
) -> Result<Mat<f64>> {
    mlp.check_layer(layer)?;
    let fwd = mlp.forward(params, x, mode)?;
    if layer == 0 {
        return Ok(extended(fwd.input.as_ref()));
    }
    let prev = &fwd.layers[layer - 1];
    Ok(match with {
        WithNorm::Normalized => extended(prev.output()),
        WithNorm::Raw => match (&prev.pre, &prev.post) {
            (Some(_), _) => {
                let act = mlp.config().layers[layer - 1].activation;
                extended(
                    Mat::from_fn(prev.z.nrows(), prev.z.ncols(), |r, c| {
                        act.value(prev.z[(r, c)])
                    })
                    .as_ref(),
                )
            }
            _ => extended(prev.a.as_ref()),
        },
    })
}

/// The unit Hessian of Theorem 5 and its factors.
#[derive(Debug, Clone)]
pub struct UnitHessian {
    /// `Ā = [1ᵀ; A]`, the extended input of the unit's layer, `(d + 1) × N`.
    pub abar: Mat<f64>,
    /// `D_nn = ℓ_n''(z_{i,n})`, the second derivative of sample `n`'s loss in the unit's
    /// pre-activation.
    pub d: Vec<f64>,
    /// `H = (1/N) Ā D Āᵀ`, the Hessian of `L` in `[b_i; w_i]`, `(d + 1) × (d + 1)`.
    pub hessian: Mat<f64>,
    /// Whether `D` came from the closed form (output unit without normalization) rather than
    /// the R-operator (both exact).
    pub closed_form_d: bool,
}

/// Theorem 5: the Hessian `H = (1/N) Ā D Āᵀ` of the mean loss with respect to the block
/// `[b_i; w_i]` of unit `unit` in `layer`, every other parameter fixed, and BatchNorm statistics
/// **frozen** (in [`Mode::Train`] at the batch values of the current parameters; in
/// [`Mode::Frozen`], missing layers filled with batch values), so the loss is a sum of per-sample
/// functions `ℓ_n(z_{i,n})`.
///
/// `D` is exact in closed form for a unit of the output layer without normalization:
/// `ℓ_n'' = c_n σ'(z)² + s_n σ''(z)` with `c_n`, `s_n` the loss curvature and slope
/// ([`crate::Loss::output_curvature`]): `D = I` for linear regression with MSE (19), `D = ŷ(1 − ŷ)`
/// for logistic regression. For every other unit it is exact too: Pearlmutter's R-operator
/// along the bias direction `e_{b_i}` gives `R{∂L/∂z_{i,n}} = ℓ_n''(z_{i,n})/N`.
///
/// # Errors
/// Invalid layer/unit, parameters, input or targets.
pub fn unit_hessian(
    mlp: &Mlp,
    params: &[f64],
    x: MatRef<'_, f64>,
    targets: &Targets,
    layer: usize,
    unit: usize,
    mode: Mode<'_>,
) -> Result<UnitHessian> {
    mlp.check_layer(layer)?;
    let width = mlp.config().layers[layer].width;
    if unit >= width {
        return Err(NnError::NoSuchUnit { layer, unit, width });
    }
    let loss = mlp.config().loss;
    loss.check_targets(targets, mlp.n_outputs(), x.ncols())?;
    let frozen = frozen_for_analysis(mlp, params, x, mode)?;
    let fmode = Mode::Frozen(&frozen);
    let fwd = mlp.forward(params, x, fmode)?;
    let n = x.ncols();
    let spec = mlp.config().layers[layer];
    let last = layer + 1 == mlp.n_layers();
    let exact_d = last && spec.norm == Normalization::None;
    let d: Vec<f64> = if exact_d {
        let out = fwd.output();
        let z = &fwd.layers[layer].z;
        (0..n)
            .map(|c| {
                let zz = z[(unit, c)];
                let (s1, s2) = (
                    spec.activation.derivative(zz),
                    spec.activation.second_derivative(zz),
                );
                let curv = loss.output_curvature(out, unit, c) * s1 * s1;
                if spec.activation == Activation::Identity {
                    curv
                } else {
                    curv + loss.output_slope(out, targets, unit, c) * s2
                }
            })
            .collect()
    } else {
        // R-operator along the bias b_i: R{z_i} = 1 for every sample, and with the samples
        // separable R{dL/dz_{i,n}} = ℓ_n''(z_{i,n})/N exactly
        let (bi, _) =
            mlp.layout()
                .unit(layer, unit)
                .ok_or(NnError::NoSuchUnit { layer, unit, width })?;
        let mut v = vec![0.0; params.len()];
        v[bi] = 1.0;
        let mut hv = vec![0.0; params.len()];
        let mut row = vec![0.0; n];
        mlp.hvp_capture(
            params,
            &fwd,
            targets,
            &v,
            &mut hv,
            Some((layer, unit, &mut row)),
        );
        row.iter().map(|r| r * n as f64).collect()
    };
    let abar = extended(fwd.layer_input(layer));
    let hessian = weighted_gram(abar.as_ref(), &d);
    Ok(UnitHessian {
        abar,
        d,
        hessian,
        closed_form_d: exact_d,
    })
}

/// `(1/N) Ā diag(d) Āᵀ` for `Ā` with `N` columns.
pub fn weighted_gram(abar: MatRef<'_, f64>, d: &[f64]) -> Mat<f64> {
    let (m, n) = (abar.nrows(), abar.ncols());
    let ad = Mat::from_fn(m, n, |r, c| abar[(r, c)] * d[c] / n as f64);
    let mut h = Mat::zeros(m, m);
    product(
        h.as_mut(),
        Accum::Replace,
        ad.as_ref(),
        abar.transpose(),
        1.0,
    );
    h
}

/// The Hessian of the mean loss of the whole network on a fixed batch, as a matrix-free
/// [`LinearOperator`] `v ↦ H v` (so `precond_linalg::lanczos_extremes` gives its extreme
/// eigenvalues and `κ`).
///
/// [`LinearOperator::apply`] is **exact**: Pearlmutter's R-operator
/// ([`Mlp::hessian_vector_product`]) on a forward pass computed once at construction, about one
/// forward and one backward pass per application.
/// [`HessianOperator::apply_finite_difference`] is the central difference of exact gradients
/// `(∇L(θ + h v) − ∇L(θ − h v))/(2h)`, `h = ε^{1/3} max(1, ‖θ‖_∞)/‖v‖_∞`, kept as a cross-check.
///
/// The function differentiated: in [`Mode::Train`], BatchNorm layers configured with
/// [`StatsGradient::Full`] use batch statistics (the true batch-loss Hessian), layers with
/// [`StatsGradient::Constant`] are frozen at the statistics of `θ` (so the operator is symmetric);
/// in [`Mode::Eval`] running averages; in [`Mode::Frozen`] the given statistics.
#[derive(Debug, Clone)]
pub struct HessianOperator<'a> {
    mlp: &'a Mlp,
    params: Vec<f64>,
    x: Mat<f64>,
    targets: Targets,
    stats: Option<Vec<Option<NormStats>>>,
    forward: Forward,
}

impl<'a> HessianOperator<'a> {
    /// The Hessian of the loss of `mlp` at `params` on the batch `(x, targets)`.
    ///
    /// # Errors
    /// Invalid parameters, input or targets.
    pub fn new(
        mlp: &'a Mlp,
        params: &[f64],
        x: MatRef<'_, f64>,
        targets: &Targets,
        mode: Mode<'_>,
    ) -> Result<Self> {
        mlp.config()
            .loss
            .check_targets(targets, mlp.n_outputs(), x.ncols())?;
        let fwd = mlp.forward(params, x, mode)?;
        let stats = match mode {
            Mode::Train => {
                let batch = fwd.batch_norm_stats();
                Some(
                    mlp.config()
                        .layers
                        .iter()
                        .zip(batch)
                        .map(|(s, st)| match s.norm {
                            Normalization::BatchNorm(b)
                                if b.stats_gradient == StatsGradient::Constant =>
                            {
                                st
                            }
                            _ => None,
                        })
                        .collect(),
                )
            }
            Mode::Eval => None,
            Mode::Frozen(s) => Some(s.to_vec()),
        };
        let forward = {
            let m = match &stats {
                None => Mode::Eval,
                Some(s) => Mode::Frozen(s),
            };
            mlp.forward(params, x, m)?
        };
        Ok(Self {
            mlp,
            params: params.to_vec(),
            x: x.to_owned(),
            targets: targets.clone(),
            stats,
            forward,
        })
    }

    fn mode(&self) -> Mode<'_> {
        match &self.stats {
            None => Mode::Eval,
            Some(s) => Mode::Frozen(s),
        }
    }

    /// The exact gradient at `params` (same function as the operator differentiates).
    pub fn gradient(&self, params: &[f64], grad: &mut [f64]) -> Result<f64> {
        Ok(self
            .mlp
            .loss_and_grad(params, self.x.as_ref(), &self.targets, self.mode(), grad)?
            .loss)
    }

    /// The dense Hessian, column by column (`n` applications), symmetrized `(H + Hᵀ)/2`.
    pub fn to_dense(&self) -> Mat<f64> {
        let n = self.dim();
        let mut h = Mat::zeros(n, n);
        let mut e = vec![0.0; n];
        let mut col = vec![0.0; n];
        for j in 0..n {
            e[j] = 1.0;
            self.apply(&e, &mut col);
            e[j] = 0.0;
            for i in 0..n {
                h[(i, j)] = col[i];
            }
        }
        Mat::from_fn(n, n, |i, j| 0.5 * (h[(i, j)] + h[(j, i)]))
    }
}

impl LinearOperator for HessianOperator<'_> {
    fn dim(&self) -> usize {
        self.params.len()
    }

    fn apply(&self, v: &[f64], y: &mut [f64]) {
        self.mlp
            .hvp_impl(&self.params, &self.forward, &self.targets, v, y);
    }
}

impl HessianOperator<'_> {
    /// `H v` by central differences of exact gradients (see the type docs); `v` and `y` have
    /// length [`LinearOperator::dim`].
    pub fn apply_finite_difference(&self, v: &[f64], y: &mut [f64]) {
        let vmax = v.iter().fold(0.0f64, |m, a| m.max(a.abs()));
        if vmax == 0.0 {
            y.iter_mut().for_each(|a| *a = 0.0);
            return;
        }
        let pmax = self.params.iter().fold(1.0f64, |m, a| m.max(a.abs()));
        self.apply_finite_difference_step(v, y, f64::EPSILON.cbrt() * pmax / vmax);
    }

    /// `(∇L(θ + h v) − ∇L(θ − h v))/(2h)` with a given step `h` (error `O(h²)`; combine two steps
    /// for Richardson extrapolation).
    pub fn apply_finite_difference_step(&self, v: &[f64], y: &mut [f64], h: f64) {
        let mode = self.mode();
        let mut p = self.params.clone();
        let mut gm = vec![0.0; p.len()];
        let mut ws = Workspace::new();
        let mut eval = |p: &[f64], g: &mut [f64]| {
            self.mlp
                .loss_and_grad_core(p, self.x.as_ref(), &self.targets, mode, &mut ws, g);
        };
        for (a, b) in p.iter_mut().zip(v) {
            *a += h * b;
        }
        eval(&p, y);
        for ((a, b), o) in p.iter_mut().zip(v).zip(&self.params) {
            *a = o - h * b;
        }
        eval(&p, &mut gm);
        for (a, b) in y.iter_mut().zip(&gm) {
            *a = (*a - b) / (2.0 * h);
        }
    }
}

/// Theorem 6 / (22)–(23) for a data matrix `X` (`d × N`, one column per sample): `κ` of the
/// extended matrices `X̄ = [1ᵀ; X]` raw, centred, standardized (population variance) and min-max
/// normalized, and the Van der Sluis row scaling of the raw `X̄`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataConditioning {
    /// `κ(X̄)`.
    pub raw: f64,
    /// `κ([1ᵀ; X − μ1ᵀ])` ((22): not larger than `raw` up to the theory's argument).
    pub centred: f64,
    /// `κ(X̄̃)`, standardized.
    pub standardized: f64,
    /// `κ` of the min-max normalized extended matrix.
    pub min_max: f64,
    /// `κ(D_0 X̄)` with `D_0 = diag(1/‖row_i(X̄)‖)` (Van der Sluis scaling, Theorem 2).
    pub van_der_sluis: f64,
    /// `sqrt(d + 1)`, the factor of (23).
    pub sqrt_d1: f64,
}

impl DataConditioning {
    /// Computes every field (five SVDs of `(d + 1) × N` matrices).
    ///
    /// # Errors
    /// Empty or non-finite data, SVD failure.
    pub fn of(x: MatRef<'_, f64>) -> Result<Self> {
        use crate::input_norm::{InputScaling, InputTransform};
        let raw_bar = extended(x);
        let k = |s| -> Result<f64> {
            kappa(extended(InputTransform::fit_apply(x, s)?.1.as_ref()).as_ref())
        };
        let norms = precond_linalg::row_norms(raw_bar.as_ref());
        let d0: Vec<f64> = norms
            .iter()
            .map(|&r| if r > 0.0 { 1.0 / r } else { 1.0 })
            .collect();
        Ok(Self {
            raw: kappa(raw_bar.as_ref())?,
            centred: k(InputScaling::Centre)?,
            standardized: k(InputScaling::Standardize)?,
            min_max: k(InputScaling::MinMax)?,
            van_der_sluis: kappa(row_scaled(raw_bar.as_ref(), &d0)?.as_ref())?,
            sqrt_d1: ((x.nrows() + 1) as f64).sqrt(),
        })
    }

    /// The right side of (23) for a given positive row scaling `d` of `X̄` (length `d + 1`):
    /// `sqrt(d + 1) κ(diag(d) X̄)`. Theorem 6 says `standardized ≤` this for every such `d`.
    pub fn theorem6_rhs(x: MatRef<'_, f64>, d: &[f64]) -> Result<f64> {
        Ok(((x.nrows() + 1) as f64).sqrt() * kappa(row_scaled(extended(x).as_ref(), d)?.as_ref())?)
    }
}

/// Theorem 7 bounds on the column norms of `H̄̃ = [1ᵀ; H̃]` after a LayerNorm of width `d` with
/// gains `gamma` and shifts `beta` (length 1 = scalar affine, length `d` = vector affine, empty =
/// no affine, i.e. `γ = 1, β = 0`), exact normalization (`eps = 0`): returns `(lo, hi)`.
/// Scalar: `lo = hi = sqrt(1 + d (γ² + β²))`. Vector: `[1, sqrt(1 + d (‖γ‖∞ + ‖β‖∞)²)]`.
pub fn layer_norm_column_bounds(d: usize, gamma: &[f64], beta: &[f64]) -> (f64, f64) {
    let df = d as f64;
    match (gamma.len(), beta.len()) {
        (0, _) | (_, 0) => {
            let v = (1.0 + df).sqrt();
            (v, v)
        }
        (1, 1) => {
            let v = (1.0 + df * (gamma[0] * gamma[0] + beta[0] * beta[0])).sqrt();
            (v, v)
        }
        _ => {
            let gi = gamma.iter().fold(0.0f64, |m, a| m.max(a.abs()));
            let bi = beta.iter().fold(0.0f64, |m, a| m.max(a.abs()));
            (1.0, (1.0 + df * (gi + bi) * (gi + bi)).sqrt())
        }
    }
}
