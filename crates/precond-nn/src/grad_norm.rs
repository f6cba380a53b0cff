//! Gradient-norm regularization, plain and preconditioned (THEORY.md §5, last bullet).
//!
//! The regularizer penalizes the squared length of the gradient:
//!
//! - [`GradNormMode::Coupled`]: `R(x) = ρ ‖∇f(x)‖²`, measured in the original variables `x`;
//! - [`GradNormMode::Intrinsic`]: `R(x) = ρ ∇f(x)ᵀ P ∇f(x)`, the squared gradient norm in the
//!   intrinsic variables `y = S⁻¹x` (`P = S Sᵀ`, so `∇_y f = Sᵀ∇_x f` and
//!   `‖∇_y f‖² = ∇fᵀ P ∇f`).
//!
//! Its gradient is `∇R = 2ρ H P ∇f` (`P = I` when coupled), with `H = ∇²f(x)` symmetric and `P`
//! held fixed during the step (an adaptive optimizer's `P_k` depends on the past gradients, not
//! on `x`; it is not differentiated). One Hessian-vector product per step: exact for an MLP by
//! Pearlmutter's R-operator ([`crate::Mlp::hessian_vector_product`]), or by central differences
//! of gradients ([`fd_hvp`]) for any objective.

use crate::error::{NnError, Result};

/// Which gradient norm is penalized (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GradNormMode {
    /// `ρ ∇fᵀ P ∇f`: the gradient norm in the optimizer's intrinsic variables.
    Intrinsic,
    /// `ρ ‖∇f‖²`: the gradient norm in `x`.
    Coupled,
}

/// Gradient-norm regularization `R = ρ ∇fᵀ P ∇f` (intrinsic) or `ρ ‖∇f‖²` (coupled), added to an
/// objective's gradient as `∇R = 2ρ H P ∇f` ([`GradNormReg::add_gradient`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GradNormReg {
    /// Strength `ρ ≥ 0`.
    pub rho: f64,
    /// Intrinsic or coupled.
    pub mode: GradNormMode,
}

impl GradNormReg {
    /// Checks `ρ` (finite, `≥ 0`).
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] naming `rho`.
    pub fn validate(&self) -> Result<()> {
        if self.rho.is_finite() && self.rho >= 0.0 {
            Ok(())
        } else {
            Err(NnError::InvalidConfig {
                what: "grad_norm.rho",
                value: self.rho.to_string(),
                reason: "must be finite and ≥ 0",
            })
        }
    }

    /// `R = ρ gᵀ P g` (intrinsic; `p` is `diag(P)`, `None` meaning `P = I`) or `ρ ‖g‖²` (coupled)
    /// for a gradient `g`.
    pub fn value(&self, g: &[f64], p: Option<&[f64]>) -> f64 {
        let s: f64 = match (self.mode, p) {
            (GradNormMode::Intrinsic, Some(p)) => g.iter().zip(p).map(|(g, p)| g * p * g).sum(),
            _ => g.iter().map(|g| g * g).sum(),
        };
        self.rho * s
    }

    /// Adds `∇R = 2ρ H u` to `g` in place, with `u = P g` (intrinsic) or `u = g` (coupled), and
    /// returns `R` at the current point ([`Self::value`]). `p` is the diagonal of `P` (`None`:
    /// `P = I`, e.g. an optimizer that has no preconditioner before its first step); `hvp(v, out)`
    /// must write `H v` (Hessian of `f` at the current point) into `out`; `u` and `hu` are work
    /// buffers of `g`'s length (no allocation here). `P` is a constant of the step.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] for a bad `ρ`, [`NnError::DimensionMismatch`] for buffers of
    /// the wrong length, errors of `hvp` passed through; `g` is
    /// unchanged on error.
    pub fn add_gradient(
        &self,
        g: &mut [f64],
        p: Option<&[f64]>,
        mut hvp: impl FnMut(&[f64], &mut [f64]) -> Result<()>,
        u: &mut [f64],
        hu: &mut [f64],
    ) -> Result<f64> {
        self.validate()?;
        let n = g.len();
        for (what, len) in [
            ("preconditioner diagonal length", p.map_or(n, <[f64]>::len)),
            ("work buffer u length", u.len()),
            ("work buffer hu length", hu.len()),
        ] {
            if len != n {
                return Err(NnError::DimensionMismatch {
                    what,
                    expected: n,
                    got: len,
                });
            }
        }
        let r = self.value(g, p);
        if self.rho == 0.0 {
            return Ok(r);
        }
        match (self.mode, p) {
            (GradNormMode::Intrinsic, Some(p)) => {
                for ((u, g), p) in u.iter_mut().zip(g.iter()).zip(p) {
                    *u = p * g;
                }
            }
            _ => u.copy_from_slice(g),
        }
        hvp(u, hu)?;
        let c = 2.0 * self.rho;
        for (g, h) in g.iter_mut().zip(hu.iter()) {
            *g += c * h;
        }
        Ok(r)
    }
}

/// `H v ≈ (∇f(x + h v) − ∇f(x − h v)) / (2h)` for any objective with a gradient `grad(x, out)`,
/// with `h = ε^{1/3} · max(1, ‖x‖₂) / ‖v‖₂` (`ε` the `f64` machine epsilon): the step that
/// balances the `O(h²)` truncation error against the `O(ε/h)` rounding error of a central
/// difference, relative to the sizes of `x` and `v`. `v = 0` gives `0`. `xp` and `gm` are work
/// buffers of `x`'s length; `out` receives `H v`.
///
/// # Errors
/// [`NnError::DimensionMismatch`] for buffers of the wrong length; errors of `grad` passed
/// through.
pub fn fd_hvp(
    mut grad: impl FnMut(&[f64], &mut [f64]) -> Result<()>,
    x: &[f64],
    v: &[f64],
    out: &mut [f64],
    xp: &mut [f64],
    gm: &mut [f64],
) -> Result<()> {
    let n = x.len();
    for (what, len) in [
        ("direction v length", v.len()),
        ("output length", out.len()),
        ("work buffer xp length", xp.len()),
        ("work buffer gm length", gm.len()),
    ] {
        if len != n {
            return Err(NnError::DimensionMismatch {
                what,
                expected: n,
                got: len,
            });
        }
    }
    let vn = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    if vn == 0.0 {
        out.fill(0.0);
        return Ok(());
    }
    let xn = x.iter().map(|a| a * a).sum::<f64>().sqrt();
    let h = f64::EPSILON.cbrt() * xn.max(1.0) / vn;
    for ((p, x), v) in xp.iter_mut().zip(x).zip(v) {
        *p = x + h * v;
    }
    grad(xp, out)?;
    for ((p, x), v) in xp.iter_mut().zip(x).zip(v) {
        *p = x - h * v;
    }
    grad(xp, gm)?;
    for (o, m) in out.iter_mut().zip(gm.iter()) {
        *o = (*o - m) / (2.0 * h);
    }
    Ok(())
}
