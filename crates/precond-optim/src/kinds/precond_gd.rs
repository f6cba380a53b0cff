//! Preconditioned gradient descent (5) with a fixed user preconditioner:
//! `x ← x − η P ∇f(x)`, `P = S Sᵀ` (THEORY.md §2), optionally with SGD momentum on the gradient.
//!
//! `P` is a positive diagonal (fused per-element pass, like SGD with `P` as a read-only buffer)
//! or dense SPD, given as `P` or as an invertible factor `S` (one matrix-vector product per step,
//! [`dense_step`]). State: `momentum_buffer` when `μ ≠ 0`.

use super::sgd::{heavy_ball_slots, heavy_ball_step};
use super::{Kind, SegStep, StepCtx};
use crate::checks::check_heavy_ball;
use crate::config::{FixedPreconditioner, OptimizerConfig};
use crate::error::{OptimError, Result};
use crate::groups::Segment;
use crate::kernel::Buffers;
use crate::precond::FixedDiag;
use crate::regularization::{RegKind, Space};
use crate::storage::{Prepared, SlotSpec, Slots, StepFloat};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

/// Preconditioned GD with a fixed `P`.
pub(crate) struct PrecondGd;

impl Kind for PrecondGd {
    const KEYS: &'static [&'static str] = &["preconditioner", "momentum", "dampening", "nesterov"];

    fn validate(c: &OptimizerConfig) -> Result<()> {
        check_heavy_ball(c.momentum, c.dampening, c.nesterov)?;
        match &c.preconditioner {
            None => Err(OptimError::config(
                "preconditioner",
                "required for precond_gd",
            )),
            Some(FixedPreconditioner::Diagonal(p)) => {
                match p
                    .iter()
                    .enumerate()
                    .find(|(_, v)| !(v.is_finite() && **v > 0.0))
                {
                    Some((i, v)) => Err(OptimError::config(
                        format!("preconditioner.diag[{i}]"),
                        format!("must be finite and > 0, got {v}"),
                    )),
                    None => Ok(()),
                }
            }
            Some(FixedPreconditioner::DenseP(m) | FixedPreconditioner::DenseS(m)) => {
                match m.iter().position(|v| !v.is_finite()) {
                    Some(i) => Err(OptimError::config(
                        "preconditioner",
                        format!("entry {i} is not finite"),
                    )),
                    None => Ok(()),
                }
            }
        }
    }

    fn slots(c: &OptimizerConfig) -> Vec<SlotSpec> {
        heavy_ball_slots(c)
    }

    /// Size checks; a dense `P` (or `S Sᵀ`) is checked symmetric positive definite and kept.
    fn prepare(c: &OptimizerConfig, n: usize, segments: &[Segment]) -> Result<Prepared> {
        let Some(fp) = &c.preconditioner else {
            return Ok(Prepared::default());
        };
        match fp {
            FixedPreconditioner::Diagonal(p) => {
                if p.len() != n {
                    return Err(OptimError::LengthMismatch {
                        what: "preconditioner.diag",
                        expected: n,
                        got: p.len(),
                    });
                }
                Ok(Prepared {
                    aux: Some(p.clone()),
                    dense_p: None,
                })
            }
            FixedPreconditioner::DenseP(m) | FixedPreconditioner::DenseS(m) => {
                if Some(m.len()) != n.checked_mul(n) {
                    return Err(OptimError::LengthMismatch {
                        what: "dense preconditioner (n*n)",
                        expected: n.saturating_mul(n),
                        got: m.len(),
                    });
                }
                let p = match fp {
                    FixedPreconditioner::DenseS(s) => s_to_p(s, n),
                    _ => m.clone(),
                };
                check_spd(&p, n)?;
                if segments.len() != 1 {
                    return Err(OptimError::Unsupported(
                        "a dense P over indices that are not contiguous (groups with their own optimizer inside its range)".into(),
                    ));
                }
                if c.groups.iter().any(|g| {
                    g.lr.is_some() || g.weight_decay.is_some() || g.regularization.is_some()
                }) {
                    return Err(OptimError::Unsupported(
                        "parameter groups with a dense preconditioner".into(),
                    ));
                }
                for seg in segments {
                    if !seg.reg.is_none()
                        && (seg.reg.proximal
                            || (seg.reg.space == Space::Intrinsic && seg.reg.kind != RegKind::L2))
                    {
                        return Err(OptimError::Unsupported(
                            "with a dense P only gradient-form L2 (either space) and original-space L1/elastic net are available".into(),
                        ));
                    }
                }
                Ok(Prepared {
                    aux: None,
                    dense_p: Some(p),
                })
            }
        }
    }

    fn observe<T: StepFloat>(
        c: &OptimizerConfig,
        _step: u64,
        _state: Option<&Slots<T>>,
        out: &mut [f64],
    ) -> Result<()> {
        match &c.preconditioner {
            Some(FixedPreconditioner::Diagonal(p)) => {
                out.copy_from_slice(p);
                Ok(())
            }
            _ => Err(OptimError::Unsupported(
                "a dense P is not diagonal: use dense_preconditioner".into(),
            )),
        }
    }

    fn step<T: StepFloat>(
        c: &OptimizerConfig,
        ctx: &StepCtx<'_>,
        x: &mut [T],
        g: &[T],
        slots: &mut Slots<T>,
    ) -> Result<bool> {
        if slots.dense_p.is_empty() {
            super::compose::step_segments::<T>(c, ctx, false, x, g, slots, Self::run_segment)
        } else {
            dense_step(c, ctx, x, g, slots);
            // no detection in this O(n²) step: under `propagate` the caller's scan decides
            Ok(ctx.propagate)
        }
    }

    fn run_segment<T: StepFloat>(
        c: &OptimizerConfig,
        s: &SegStep,
        b: Buffers<'_, T>,
    ) -> Result<bool> {
        heavy_ball_step(c, s, FixedDiag, b)
    }
}

/// Preconditioned GD with a dense SPD `P` (5): `u = ±g + λ₂x + λ₁ sign(x)` (coupled terms),
/// optional SGD momentum on `u`, `x ← x(1 − ηλ_int) − η P u`. One matrix-vector product.
fn dense_step<T: StepFloat>(
    c: &OptimizerConfig,
    ctx: &StepCtx<'_>,
    x: &mut [T],
    g: &[T],
    s: &mut Slots<T>,
) {
    let seg = &ctx.segments[0];
    let (x, g) = (&mut x[seg.start..seg.end], &g[seg.start..seg.end]);
    let n = x.len();
    let k = ctx.k();
    let lr = c.schedule.lr(ctx.base_lr, ctx.step);
    let (l1, l2) = seg.reg.split();
    let (cl1, cl2, il2) = match (seg.reg.is_none(), seg.reg.space) {
        (true, _) => (0.0, 0.0, 0.0),
        (false, Space::Original) => (l1, l2, 0.0),
        (false, Space::Intrinsic) => (0.0, 0.0, l2),
    };
    let sign = T::from_f64(if c.maximize { -1.0 } else { 1.0 });
    let wd = T::from_f64(seg.weight_decay + cl2);
    let l1t = T::from_f64(cl1);
    let u = &mut s.scratch_u;
    for i in 0..n {
        u[i] = g[i] * sign + wd * x[i] + l1t * x[i].sign();
    }
    if c.momentum != 0.0 {
        let (keep, gc) = if k == 1 {
            (0.0, 1.0)
        } else {
            (c.momentum, 1.0 - c.dampening)
        };
        let (keep, gc, mu) = (T::from_f64(keep), T::from_f64(gc), T::from_f64(c.momentum));
        let buf = &mut s.s[0];
        for i in 0..n {
            buf[i] = buf[i] * keep + gc * u[i];
            u[i] = if c.nesterov {
                u[i] + mu * buf[i]
            } else {
                buf[i]
            };
        }
    }
    let p = &s.dense_p;
    let y = &mut s.scratch_y;
    let u = &s.scratch_u;
    let row = |i: usize| -> T {
        let r = &p[i * n..(i + 1) * n];
        let mut acc = T::ZERO;
        for j in 0..n {
            acc += r[j] * u[j];
        }
        acc
    };
    if n >= 256 {
        use rayon::prelude::*;
        y.par_iter_mut()
            .enumerate()
            .for_each(|(i, yi)| *yi = row(i));
    } else {
        for (i, yi) in y.iter_mut().enumerate() {
            *yi = row(i);
        }
    }
    let decay = T::from_f64(1.0 - lr * il2);
    let nlr = T::from_f64(-lr);
    for i in 0..n {
        x[i] = x[i] * decay + nlr * y[i];
    }
}

/// `P = S Sᵀ` of a row-major factor `S` (faer's product), row-major.
fn s_to_p(s: &[f64], n: usize) -> Vec<f64> {
    // A row-major S read as column-major is Sᵀ; P = S Sᵀ = (Sᵀ)ᵀ (Sᵀ).
    let st = MatRef::from_column_major_slice(s, n, n);
    let mut p = Mat::<f64>::zeros(n, n);
    matmul(
        p.as_mut(),
        Accum::Replace,
        st.transpose(),
        st,
        1.0,
        Par::Seq,
    );
    let mut out = Vec::with_capacity(n * n);
    for i in 0..n {
        out.extend((0..n).map(|j| p[(i, j)]));
    }
    out
}

/// `P` symmetric (to `64 n ε max|p_ij|`) and positive definite to working precision: its
/// Cholesky factorization exists and the pivots `l_ii²` span at most `1/(n ε)` (`κ₂(P)` is at
/// least `max l_ii² / min l_ii²`, so a wider span means `P`, or a factor `S` with `P = S Sᵀ`, is
/// singular to working precision).
fn check_spd(p: &[f64], n: usize) -> Result<()> {
    let scale = p.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let tol = 64.0 * f64::EPSILON * scale * n as f64;
    for i in 0..n {
        for j in 0..i {
            if (p[i * n + j] - p[j * n + i]).abs() > tol {
                return Err(OptimError::NotSpd {
                    reason: format!("P[{i}][{j}] ≠ P[{j}][{i}]"),
                });
            }
        }
    }
    let m = Mat::<f64>::from_fn(n, n, |i, j| p[i * n + j]);
    let llt = m.llt(faer::Side::Lower).map_err(|e| OptimError::NotSpd {
        reason: format!("Cholesky failed: {e:?}"),
    })?;
    let l = llt.L();
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for i in 0..n {
        let d = l[(i, i)] * l[(i, i)];
        lo = lo.min(d);
        hi = hi.max(d);
    }
    let limit = 1.0 / (n as f64 * f64::EPSILON);
    // NaN pivots cannot occur after a successful factorization of finite entries
    if n > 0 && hi > lo * limit {
        return Err(OptimError::NotSpd {
            reason: format!(
                "singular to working precision: the Cholesky pivots of P span {:.3e} > 1/(n ε) = {limit:.3e} (κ₂(P) is at least that ratio)",
                hi / lo
            ),
        });
    }
    Ok(())
}
