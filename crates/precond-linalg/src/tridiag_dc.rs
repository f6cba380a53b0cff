//! Divide and conquer for the symmetric tridiagonal eigenproblem with eigenvectors, the middle
//! stage of Shampoo's inverse roots and SOAP's eigenbases (THEORY.md §7; the method and its
//! sources in THEORY.md §8: Cuppen1981, Dongarra1987, Li1993, Gu1995; `sym_root.rs`).
//!
//! Cuppen's method (Cuppen 1981): `T = diag(T₁, T₂) + ρ v vᵀ` with `v = (e_last; ±e_first)`,
//! both halves solved recursively (`T₁ = Q₁Λ₁Q₁ᵀ`, `T₂ = Q₂Λ₂Q₂ᵀ`, on two threads), then the
//! rank-one update `D + ρ z zᵀ` of `D = diag(Λ₁, Λ₂)`, `z = diag(Q₁, Q₂)ᵀ v / √2`, solved by
//!
//! - **deflation** (Dongarra & Sorensen 1987, as in LAPACK's `DLAED2`): a component with
//!   `ρ|zⱼ| ≤ tol` keeps `dⱼ` and its vector; two close poles are rotated so that one `z`
//!   component vanishes (`tol = 8ε·max(max|d|, max|z|)`);
//! - the **secular equation** `1/ρ + Σⱼ zⱼ²/(dⱼ − λ) = 0` for the `k` remaining poles, one root
//!   per interval, each as `λᵢ = d_origin + τᵢ` from its nearer pole (so that every `dⱼ − λᵢ` is
//!   computed to high relative accuracy), by Li's "middle way" rational iteration (Li 1993; the
//!   quadratic of LAPACK's `DLAED4`) inside a bisection bracket;
//! - the **eigenvectors** of Gu & Eisenstat 1995: `ẑ` recomputed from the computed roots by
//!   the Löwner formula `ẑᵢ² = Πⱼ(λⱼ − dᵢ) / (ρ Π_{j≠i}(dⱼ − dᵢ))`, so that the vectors
//!   `(ẑⱼ/(dⱼ − λᵢ))ⱼ` are orthogonal to working precision without extra precision;
//! - the **products** `Q = diag(Q₁, Q₂) U` as two GEMMs on the columns that are nonzero in
//!   each half (columns of `Q₁`, of `Q₂`, or mixed by a deflating rotation: `DLAED3`'s
//!   column types), so the top-level merge costs `n³` flops, not `2n³`, and deflated columns
//!   none.
//!
//! Leaves (order ≤ [`LEAF`]) use the implicit QL iteration with Wilkinson's shift. Unlike faer
//! 0.24's divide and conquer (sequential root finding, every column through the product), the
//! roots, the Löwner products and the vectors of a merge run on both threads, and the vectors
//! of deflated eigenvalues are copied, not multiplied. Every buffer comes from a
//! [`DcScratch`] built once: a call allocates nothing.

use faer::linalg::matmul::matmul;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, Par};

use crate::error::{LinalgError, Result};

/// Subproblems of at most this order are solved by the QL iteration (LAPACK's `SMLSIZ` is 25).
pub(crate) const LEAF: usize = 32;

/// Merges with at least this many poles find their roots and vectors on two threads.
const PAR_MIN_K: usize = 96;

/// Subproblems of at least this order recurse into their halves on two threads.
const PAR_MIN_N: usize = 128;

/// Root-finding iterations before the secular solver gives up (bisection alone needs about
/// `53 + log₂(bracket/root)`; the rational steps converge in 2–5).
const MAX_SECULAR_ITERATIONS: usize = 400;

/// Number of `f64` work vectors of length `n` in a [`DcScratch`].
const F_VECS: usize = 7;
/// Number of index work vectors of length `n` in a [`DcScratch`].
const I_VECS: usize = 6;

/// The buffers of [`tridiagonal_eigh`] for order `n`: two `n × n` matrices and `7n` reals and
/// `6n` indices.
pub(crate) struct DcScratch {
    n: usize,
    w1: Mat<f64>,
    w2: Mat<f64>,
    f: Vec<f64>,
    idx: Vec<usize>,
}

impl DcScratch {
    /// Buffers for order `n`.
    ///
    /// # Errors
    /// [`LinalgError::OutOfMemory`] when the allocator refuses them.
    pub(crate) fn new(n: usize) -> Result<Self> {
        const WS: &str = "divide-and-conquer buffers of SymEigWorkspace";
        Ok(Self {
            n,
            w1: crate::alloc::try_zeros(WS, n, n)?,
            w2: crate::alloc::try_zeros(WS, n, n)?,
            f: crate::alloc::try_vec(WS, F_VECS * n, 0.0)?,
            idx: crate::alloc::try_vec(WS, I_VECS * n, 0usize)?,
        })
    }
}

/// The scratch of one subproblem: diagonal blocks of the work matrices and ranges of the
/// vectors, split between the halves.
struct Ws<'a> {
    w1: MatMut<'a, f64>,
    w2: MatMut<'a, f64>,
    // reals
    dl: &'a mut [f64],
    zl: &'a mut [f64],
    zh: &'a mut [f64],
    tau: &'a mut [f64],
    dp: &'a mut [f64],
    zp: &'a mut [f64],
    z: &'a mut [f64],
    // indices
    perm: &'a mut [usize],
    order: &'a mut [usize],
    cols: &'a mut [usize],
    ctype: &'a mut [usize],
    origin: &'a mut [usize],
    defl: &'a mut [usize],
}

impl Ws<'_> {
    /// The scratch of the two halves `[0, n1)` and `[n1, n)`, borrowed from this one.
    fn split(&mut self, n1: usize) -> (Ws<'_>, Ws<'_>) {
        let (w1a, _, _, w1b) = self.w1.rb_mut().split_at_mut(n1, n1);
        let (w2a, _, _, w2b) = self.w2.rb_mut().split_at_mut(n1, n1);
        let (dla, dlb) = self.dl.split_at_mut(n1);
        let (zla, zlb) = self.zl.split_at_mut(n1);
        let (zha, zhb) = self.zh.split_at_mut(n1);
        let (taua, taub) = self.tau.split_at_mut(n1);
        let (dpa, dpb) = self.dp.split_at_mut(n1);
        let (zpa, zpb) = self.zp.split_at_mut(n1);
        let (za, zb) = self.z.split_at_mut(n1);
        let (pa, pb) = self.perm.split_at_mut(n1);
        let (oa, ob) = self.order.split_at_mut(n1);
        let (ca, cb) = self.cols.split_at_mut(n1);
        let (ta, tb) = self.ctype.split_at_mut(n1);
        let (ga, gb) = self.origin.split_at_mut(n1);
        let (fa, fb) = self.defl.split_at_mut(n1);
        (
            Ws {
                w1: w1a,
                w2: w2a,
                dl: dla,
                zl: zla,
                zh: zha,
                tau: taua,
                dp: dpa,
                zp: zpa,
                z: za,
                perm: pa,
                order: oa,
                cols: ca,
                ctype: ta,
                origin: ga,
                defl: fa,
            },
            Ws {
                w1: w1b,
                w2: w2b,
                dl: dlb,
                zl: zlb,
                zh: zhb,
                tau: taub,
                dp: dpb,
                zp: zpb,
                z: zb,
                perm: pb,
                order: ob,
                cols: cb,
                ctype: tb,
                origin: gb,
                defl: fb,
            },
        )
    }
}

/// Eigendecomposition `T = Q diag(d) Qᵀ` of the symmetric tridiagonal `T` with diagonal `d`
/// and off-diagonal `e[i] = T[i+1, i]` (`e.len() ≥ n`, `e[n−1]` ignored; `e` is overwritten):
/// on return `d` holds the eigenvalues in ascending order and `q` (`n × n`) the orthonormal
/// eigenvectors in its columns. `work` (`n × n`) holds the vectors of the recursion (in the
/// order of the last merge; copied once into `q` in ascending order). `s` must have been built
/// for `n`.
///
/// # Errors
/// [`LinalgError::NoConvergence`] when a QL leaf or a secular equation does not converge
/// (non-finite input).
pub(crate) fn tridiagonal_eigh(
    d: &mut [f64],
    e: &mut [f64],
    mut work: MatMut<'_, f64>,
    mut q: MatMut<'_, f64>,
    s: &mut DcScratch,
    par: Par,
) -> Result<()> {
    let n = d.len();
    assert!(n == s.n && q.nrows() == n && q.ncols() == n && e.len() >= n);
    assert!(work.nrows() == n && work.ncols() == n);
    if n == 0 {
        return Ok(());
    }
    let e = &mut e[..n];
    let (fv, iv) = (&mut s.f, &mut s.idx);
    let (dl, rest) = fv.split_at_mut(n);
    let (zl, rest) = rest.split_at_mut(n);
    let (zh, rest) = rest.split_at_mut(n);
    let (tau, rest) = rest.split_at_mut(n);
    let (dp, rest) = rest.split_at_mut(n);
    let (zp, rest) = rest.split_at_mut(n);
    let (z, _) = rest.split_at_mut(n);
    let (perm, rest) = iv.split_at_mut(n);
    let (order, rest) = rest.split_at_mut(n);
    let (cols, rest) = rest.split_at_mut(n);
    let (ctype, rest) = rest.split_at_mut(n);
    let (origin, rest) = rest.split_at_mut(n);
    let (defl, _) = rest.split_at_mut(n);
    let mut ws = Ws {
        w1: s.w1.as_mut(),
        w2: s.w2.as_mut(),
        dl,
        zl,
        zh,
        tau,
        dp,
        zp,
        z,
        perm,
        order,
        cols,
        ctype,
        origin,
        defl,
    };
    recurse(d, e, work.rb_mut(), &mut ws, par)?;
    // the columns into ascending order of their eigenvalues
    for (t, &j) in ws.perm.iter().enumerate() {
        ws.dl[t] = d[j];
        q.rb_mut().col_mut(t).copy_from(work.rb().col(j));
    }
    d.copy_from_slice(ws.dl);
    Ok(())
}

/// All eigenvalues (ascending) and orthonormal eigenvectors of the symmetric tridiagonal
/// matrix with diagonal `d` and off-diagonal `e` (`e.len() + 1 == d.len()`), LAPACK's `DSTEDC`:
/// the divide and conquer of this module (Cuppen's method with deflation, the secular equation
/// by Li's middle way, Gu–Eisenstat eigenvectors; THEORY.md §8), the merges' roots, vectors and
/// products on the threads of `par`. Returns `(λ, Q)` with `T = Q diag(λ) Qᵀ`; residual
/// `‖TQ − QΛ‖` and orthogonality `‖QᵀQ − I‖` are `O(nε‖T‖)` and `O(nε)`.
///
/// Allocates its result and about `3n²` doubles of work space; the allocation-free form is the
/// eigendecomposition inside [`SymEigWorkspace`](crate::SymEigWorkspace).
///
/// # Errors
/// [`LinalgError::Empty`] for `n = 0`, [`LinalgError::DimensionMismatch`] when
/// `e.len() + 1 ≠ d.len()`, [`LinalgError::NonFinite`] naming the first non-finite entry (row =
/// index, column 0 for `d`, 1 for `e`), [`LinalgError::OutOfMemory`],
/// [`LinalgError::NoConvergence`] (not expected for finite input).
pub fn tridiagonal_eigh_checked(d: &[f64], e: &[f64], par: Par) -> Result<(Vec<f64>, Mat<f64>)> {
    crate::two_stage::check_tridiagonal(d, e)?;
    let n = d.len();
    const WS: &str = "tridiagonal eigendecomposition";
    let mut dd = crate::alloc::try_vec(WS, n, 0.0)?;
    dd.copy_from_slice(d);
    let mut ee = crate::alloc::try_vec(WS, n, 0.0)?;
    ee[..n - 1].copy_from_slice(e);
    let mut q = crate::alloc::try_zeros(WS, n, n)?;
    let mut work = crate::alloc::try_zeros(WS, n, n)?;
    let mut s = DcScratch::new(n)?;
    crate::pool::on_pool(par, n, || {
        tridiagonal_eigh(&mut dd, &mut ee, work.as_mut(), q.as_mut(), &mut s, par)
    })?;
    Ok((dd, q))
}

/// Solves the subproblem on `d` (order `n`) and `e[..n−1]`: leaves in `q`'s columns the
/// eigenvectors of the eigenvalues left in `d` (not sorted) and in `ws.perm` their ascending
/// order (`d[perm[0]] ≤ d[perm[1]] ≤ …`).
fn recurse(
    d: &mut [f64],
    e: &mut [f64],
    mut q: MatMut<'_, f64>,
    ws: &mut Ws<'_>,
    par: Par,
) -> Result<()> {
    let n = d.len();
    if n <= LEAF {
        leaf(d, e, q.rb_mut())?;
        for (t, p) in ws.perm.iter_mut().enumerate() {
            *p = t;
        }
        return Ok(());
    }
    let n1 = n / 2;
    let beta = e[n1 - 1];
    d[n1 - 1] -= beta.abs();
    d[n1] -= beta.abs();
    {
        let (d1, d2) = d.split_at_mut(n1);
        let (e1, e2) = e.split_at_mut(n1);
        let (q1, _, _, q2) = q.rb_mut().split_at_mut(n1, n1);
        let (mut wa, mut wb) = ws.split(n1);
        if par.degree() >= 2 && n >= PAR_MIN_N {
            let (ra, rb) = rayon::join(
                || recurse(d1, e1, q1, &mut wa, par),
                || recurse(d2, e2, q2, &mut wb, par),
            );
            ra?;
            rb?;
        } else {
            recurse(d1, e1, q1, &mut wa, par)?;
            recurse(d2, e2, q2, &mut wb, par)?;
        }
    }
    // the off-diagonal blocks of q are zero (children wrote only their diagonal blocks)
    q.rb_mut().submatrix_mut(0, n1, n1, n - n1).fill(0.0);
    q.rb_mut().submatrix_mut(n1, 0, n - n1, n1).fill(0.0);
    merge(d, beta, q, n1, ws, par)
}

/// Column types of `DLAED3`: nonzero in the top rows only, in both halves, in the bottom rows
/// only.
const TOP: usize = 1;
const MIXED: usize = 2;
const BOTTOM: usize = 3;

/// The rank-one merge of two solved halves (see the module documentation).
fn merge(
    d: &mut [f64],
    beta: f64,
    mut q: MatMut<'_, f64>,
    n1: usize,
    ws: &mut Ws<'_>,
    par: Par,
) -> Result<()> {
    let n = d.len();
    let n2 = n - n1;
    let rho = 2.0 * beta.abs();
    let sign = if beta < 0.0 { -1.0 } else { 1.0 };
    let z = &mut *ws.z;
    let h = core::f64::consts::FRAC_1_SQRT_2;
    for j in 0..n1 {
        z[j] = h * q[(n1 - 1, j)];
    }
    for j in 0..n2 {
        z[n1 + j] = sign * h * q[(n1, n1 + j)];
    }
    // ascending order of the poles: merge of the halves' orders
    {
        let (pa, pb) = ws.perm.split_at(n1);
        let (mut a, mut b) = (0, 0);
        for o in ws.order.iter_mut() {
            let take_a = b == n2 || (a < n1 && d[pa[a]] <= d[n1 + pb[b]]);
            if take_a {
                *o = pa[a];
                a += 1;
            } else {
                *o = n1 + pb[b];
                b += 1;
            }
        }
    }
    for (j, t) in ws.ctype.iter_mut().enumerate() {
        *t = if j < n1 { TOP } else { BOTTOM };
    }
    let dmax = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let zmax = z.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = 8.0 * f64::EPSILON * dmax.max(zmax);
    // deflation, walking the poles in ascending order
    let (mut k, mut nd) = (0usize, 0usize);
    let mut prev: Option<usize> = None;
    for t in 0..n {
        let j = ws.order[t];
        if rho * z[j].abs() <= tol {
            ws.defl[nd] = j;
            nd += 1;
            continue;
        }
        let Some(p) = prev else {
            prev = Some(j);
            continue;
        };
        let (s0, c0) = (z[p], z[j]);
        let r = c0.hypot(s0);
        let (c, s) = (c0 / r, -s0 / r);
        let gap = d[j] - d[p];
        if (gap * c * s).abs() <= tol {
            // rotate p's z component into j's: p deflates with the rotated pole
            z[j] = r;
            z[p] = 0.0;
            for row in 0..n {
                let (x, y) = (q[(row, p)], q[(row, j)]);
                q[(row, p)] = c * x + s * y;
                q[(row, j)] = c * y - s * x;
            }
            let (dp_, dj) = (d[p], d[j]);
            d[p] = dp_ * c * c + dj * s * s;
            d[j] = dp_ * s * s + dj * c * c;
            if ws.ctype[p] != ws.ctype[j] {
                ws.ctype[j] = MIXED;
            }
            ws.defl[nd] = p;
            nd += 1;
        } else {
            ws.cols[k] = p;
            k += 1;
        }
        prev = Some(j);
    }
    if let Some(p) = prev {
        ws.cols[k] = p;
        k += 1;
    }
    debug_assert_eq!(k + nd, n);
    // deflated columns to the end of w2, their values to the end of zh, ascending
    {
        let defl = &mut ws.defl[..nd];
        defl.sort_unstable_by(|&a, &b| d[a].total_cmp(&d[b]));
        for (t, &j) in defl.iter().enumerate() {
            ws.zh[k + t] = d[j];
            ws.w2.rb_mut().col_mut(k + t).copy_from(q.rb().col(j));
        }
    }
    if k == 0 {
        q.copy_from(ws.w2.rb());
        d.copy_from_slice(&ws.zh[..n]);
        for (t, p) in ws.perm.iter_mut().enumerate() {
            *p = t;
        }
        return Ok(());
    }
    // the poles and weights of the secular equation, ascending
    for i in 0..k {
        ws.dl[i] = d[ws.cols[i]];
        ws.zl[i] = z[ws.cols[i]];
    }
    // type order of the nondeflated columns (top, mixed, bottom): row order of U
    let mut counts = [0usize; 4];
    for i in 0..k {
        counts[ws.ctype[ws.cols[i]]] += 1;
    }
    let (k1, k2) = (counts[TOP], counts[MIXED]);
    {
        // origin[] is free until the roots: the sorted index of each type-ordered row
        let mut next = [0usize, 0, k1, k1 + k2];
        for i in 0..k {
            let t = ws.ctype[ws.cols[i]];
            ws.origin[next[t]] = i;
            next[t] += 1;
        }
        for r in 0..k {
            let i = ws.origin[r];
            let j = ws.cols[i];
            if r < k1 + k2 {
                ws.w2
                    .rb_mut()
                    .submatrix_mut(0, r, n1, 1)
                    .copy_from(q.rb().submatrix(0, j, n1, 1));
            }
            if r >= k1 {
                ws.w2
                    .rb_mut()
                    .submatrix_mut(n1, r - k1, n2, 1)
                    .copy_from(q.rb().submatrix(n1, j, n2, 1));
            }
            // the row order kept for U
            ws.ctype[r] = i;
        }
    }
    // ctype[..k] now maps a type-ordered row to its sorted index
    let dl = &ws.dl[..k];
    let zl = &ws.zl[..k];
    // the roots
    {
        let solve = |i: usize| {
            pulp::Arch::new().dispatch(SecularRoot {
                d: dl,
                z: zl,
                rho,
                i,
            })
        };
        let origin = &mut ws.origin[..k];
        let tau = &mut ws.tau[..k];
        if par.degree() >= 2 && k >= PAR_MIN_K {
            use rayon::prelude::*;
            origin
                .par_iter_mut()
                .zip(tau.par_iter_mut())
                .enumerate()
                .with_min_len(16)
                .try_for_each(|(i, (o, t))| {
                    let (oi, ti) = solve(i)?;
                    *o = oi;
                    *t = ti;
                    Ok::<(), LinalgError>(())
                })?;
        } else {
            for i in 0..k {
                let (oi, ti) = solve(i)?;
                origin[i] = oi;
                tau[i] = ti;
            }
        }
    }
    let origin = &ws.origin[..k];
    let tau = &ws.tau[..k];
    // Gu–Eisenstat: ẑ from the computed roots
    {
        let zh = &mut ws.zh[..k];
        let lowner = |i: usize| {
            let di = dl[i];
            let mut prod = ((dl[origin[i]] - di) + tau[i]) / rho;
            for j in 0..i {
                prod *= ((dl[origin[j]] - di) + tau[j]) / (dl[j] - di);
            }
            for j in i + 1..k {
                prod *= ((dl[origin[j]] - di) + tau[j]) / (dl[j] - di);
            }
            prod.abs().sqrt().copysign(zl[i])
        };
        if par.degree() >= 2 && k >= PAR_MIN_K {
            use rayon::prelude::*;
            zh.par_iter_mut()
                .enumerate()
                .with_min_len(16)
                .for_each(|(i, v)| *v = lowner(i));
        } else {
            for (i, v) in zh.iter_mut().enumerate() {
                *v = lowner(i);
            }
        }
    }
    // the rows of U in type order
    for r in 0..k {
        let i = ws.ctype[r];
        ws.dp[r] = dl[i];
        ws.zp[r] = ws.zh[i];
    }
    {
        let (dp, zp) = (&ws.dp[..k], &ws.zp[..k]);
        let u = ws.w1.rb_mut().submatrix_mut(0, 0, k, k);
        let column = |i: usize, mut col: faer::ColMut<'_, f64>| {
            let (lo, ti) = (dl[origin[i]], tau[i]);
            let mut ss = 0.0;
            for r in 0..k {
                let v = zp[r] / ((dp[r] - lo) - ti);
                col[r] = v;
                ss += v * v;
            }
            let inv = ss.sqrt().recip();
            for r in 0..k {
                col[r] *= inv;
            }
        };
        par_columns(u, 0, &column, par.degree() >= 2 && k >= PAR_MIN_K);
    }
    // Q = diag(Q₁, Q₂) U on the nonzero blocks only
    let (ktop, kbot) = (k1 + k2, k - k1);
    let u = ws.w1.rb().submatrix(0, 0, k, k);
    {
        let (top, bot) = q.rb_mut().split_at_row_mut(n1);
        let top = top.subcols_mut(0, k);
        let bot = bot.subcols_mut(0, k);
        let w2 = ws.w2.rb();
        let gemm_top = |mut dst: MatMut<'_, f64>, par: Par| {
            if ktop == 0 {
                dst.fill(0.0);
            } else {
                matmul(
                    dst,
                    Accum::Replace,
                    w2.submatrix(0, 0, n1, ktop),
                    u.subrows(0, ktop),
                    1.0,
                    par,
                );
            }
        };
        let gemm_bot = |mut dst: MatMut<'_, f64>, par: Par| {
            if kbot == 0 {
                dst.fill(0.0);
            } else {
                matmul(
                    dst,
                    Accum::Replace,
                    w2.submatrix(n1, 0, n2, kbot),
                    u.subrows(k1, kbot),
                    1.0,
                    par,
                );
            }
        };
        gemm_top(top, par);
        gemm_bot(bot, par);
    }
    if nd > 0 {
        q.rb_mut()
            .subcols_mut(k, nd)
            .copy_from(ws.w2.rb().subcols(k, nd));
    }
    // eigenvalues: the roots (ascending), then the deflated values (ascending)
    for i in 0..k {
        ws.dp[i] = dl[origin[i]] + tau[i];
    }
    d[..k].copy_from_slice(&ws.dp[..k]);
    d[k..].copy_from_slice(&ws.zh[k..n]);
    let (mut a, mut b) = (0usize, k);
    for p in ws.perm.iter_mut() {
        let take_a = b == n || (a < k && d[a] <= d[b]);
        if take_a {
            *p = a;
            a += 1;
        } else {
            *p = b;
            b += 1;
        }
    }
    Ok(())
}

/// Runs `f(j0 + j, column j)` for every column of `m`, splitting the columns between two
/// threads when `par`.
fn par_columns<F>(mut m: MatMut<'_, f64>, j0: usize, f: &F, par: bool)
where
    F: Fn(usize, faer::ColMut<'_, f64>) + Sync,
{
    let nc = m.ncols();
    if par && nc >= 32 {
        let h = nc / 2;
        let (a, b) = m.split_at_col_mut(h);
        rayon::join(
            || par_columns(a, j0, f, true),
            || par_columns(b, j0 + h, f, true),
        );
    } else {
        for j in 0..nc {
            f(j0 + j, m.rb_mut().col_mut(j));
        }
    }
}

/// [`secular_root`] compiled for the widest instruction set of the CPU (the kernels are
/// `#[inline(always)]`, so they are instantiated inside pulp's `#[target_feature]` function).
struct SecularRoot<'a> {
    d: &'a [f64],
    z: &'a [f64],
    rho: f64,
    i: usize,
}

impl pulp::WithSimd for SecularRoot<'_> {
    type Output = Result<(usize, f64)>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        secular_root(self.d, self.z, self.rho, self.i)
    }
}

/// The `i`-th root (0-based, ascending) of the secular equation
/// `f(λ) = 1/ρ + Σⱼ zⱼ²/(dⱼ − λ) = 0` for strictly ascending poles `d`, nonzero `z` and `ρ > 0`,
/// as `(o, τ)` with `λ = d[o] + τ` and `o` the nearer pole (`o = i` or `i + 1`; the last root,
/// in `(d[k−1], d[k−1] + ρ‖z‖²]`, from `o = k − 1`).
///
/// Li's middle way (the quadratic of LAPACK's `DLAED4`): at the current `τ`, the poles left of
/// the root (`ψ`) and right of it (`φ`) are each modelled by one pole (the nearest) matched in
/// value and slope, and the model's root is the next iterate; a step leaving the bracket
/// (updated from the sign of `f` at each iterate) or going against the sign of `f` is replaced
/// by bisection / Newton. Stops when `|f| ≤ ε·((k/8 + 8)(φ − ψ) + 2/ρ + |τ| f′)`, the rounding
/// error of evaluating `f`, when a rational step moves `τ` by at most two ulps, or when the
/// bracket is a few ulps wide.
#[inline(always)]
fn secular_root(d: &[f64], z: &[f64], rho: f64, i: usize) -> Result<(usize, f64)> {
    let k = d.len();
    let rinv = rho.recip();
    if k == 1 {
        return Ok((0, rho * z[0] * z[0]));
    }
    let last = i + 1 == k;
    // origin, bracket (lo, hi) in τ, starting point with f's sums there, and the split of the
    // model (the mid-point evaluation that picks the origin is the first iterate's)
    let (o, mut lo, mut hi, mut tau, split, left_pole, right_pole, mut sums) = if last {
        let zz: f64 = z.iter().map(|v| v * v).sum();
        let hi = rho * zz;
        let tau = 0.5 * hi;
        // ψ: poles 0..k−1 modelled at d[k−2]; φ: the pole d[k−1] itself
        let sums = secular_sums(d, z, k - 1, tau, k - 1);
        (k - 1, 0.0, hi, tau, k - 1, k - 2, k - 1, sums)
    } else {
        let gap = d[i + 1] - d[i];
        let mid = 0.5 * gap;
        let sums = secular_sums(d, z, i, mid, i + 1);
        let f = rinv + sums.0 + sums.2;
        if f == 0.0 {
            return Ok((i, mid));
        }
        if f > 0.0 {
            (i, 0.0, mid, mid, i + 1, i, i + 1, sums)
        } else {
            // from the right pole: τ = mid − gap ∈ (−gap/2, 0), the same λ
            let t = (d[i] - d[i + 1]) + mid;
            (i + 1, t, 0.0, t, i + 1, i, i + 1, sums)
        }
    };
    let base = d[o];
    let (dl_pole, dr_pole) = (d[left_pole] - base, d[right_pole] - base);
    for _ in 0..MAX_SECULAR_ITERATIONS {
        let (psi, dpsi, phi, dphi) = sums;
        let f = rinv + psi + phi;
        let df = dpsi + dphi;
        if f == 0.0 {
            return Ok((o, tau));
        }
        // the rounding error of evaluating f: each of the 8 partial sums of `pole_sums` adds
        // about k/8 terms one after another (LAPACK's DLAED4 uses the running error bound of
        // recursive summation the same way), plus the constant and the error in τ
        let err = (k as f64 / 8.0 + 8.0) * (phi - psi) + 2.0 * rinv + tau.abs() * df;
        if f.abs() <= f64::EPSILON * err {
            return Ok((o, tau));
        }
        if f < 0.0 {
            lo = lo.max(tau);
        } else {
            hi = hi.min(tau);
        }
        if hi - lo <= 4.0 * f64::EPSILON * lo.abs().max(hi.abs()) {
            return Ok((o, 0.5 * (lo + hi)));
        }
        // the middle-way quadratic c η² − a η + b = 0 in the step η
        let (del_l, del_r) = (dl_pole - tau, dr_pole - tau);
        let c = f - del_l * dpsi - del_r * dphi;
        let a = (del_l + del_r) * f - del_l * del_r * df;
        let b = del_l * del_r * f;
        let disc = (a * a - 4.0 * b * c).abs().sqrt();
        let mut eta = if c == 0.0 {
            if a == 0.0 { f64::NAN } else { b / a }
        } else if last {
            if a >= 0.0 {
                (a + disc) / (2.0 * c)
            } else {
                2.0 * b / (a - disc)
            }
        } else if a <= 0.0 {
            (a - disc) / (2.0 * c)
        } else {
            2.0 * b / (a + disc)
        };
        // a step against the sign of f: Newton
        if !eta.is_finite() || f * eta >= 0.0 {
            eta = -f / df;
        }
        let mut next = tau + eta;
        if !(next > lo && next < hi && next.is_finite()) {
            next = 0.5 * (lo + hi);
        } else if eta.abs() <= 2.0 * f64::EPSILON * next.abs() {
            // a rational step of a few ulps: the iteration (quadratic) has converged, the
            // next evaluation would only confirm it
            return Ok((o, next));
        }
        tau = next;
        sums = secular_sums(d, z, o, tau, split);
    }
    Err(LinalgError::NoConvergence {
        what: "secular equation of the tridiagonal divide and conquer",
        iterations: MAX_SECULAR_ITERATIONS,
        residual: f64::NAN,
    })
}

/// `(ψ, ψ′, φ, φ′)` at `λ = d[o] + τ`: the sums over the poles `j < split` (left of the root)
/// and `j ≥ split`.
#[inline(always)]
fn secular_sums(d: &[f64], z: &[f64], o: usize, tau: f64, split: usize) -> (f64, f64, f64, f64) {
    let base = d[o];
    let (psi, dpsi) = pole_sums(&d[..split], &z[..split], base, tau);
    let (phi, dphi) = pole_sums(&d[split..], &z[split..], base, tau);
    (psi, dpsi, phi, dphi)
}

/// `(Σ zⱼ²/δⱼ, Σ zⱼ²/δⱼ²)` with `δⱼ = (dⱼ − base) − τ`: the part of the secular function and
/// of its derivative from these poles. Eight independent partial sums in a fixed order, so
/// that the divisions run as wide as the instruction set allows (the callers run under
/// [`pulp::Arch::dispatch`]) with the same bits on every level.
#[inline(always)]
fn pole_sums(d: &[f64], z: &[f64], base: f64, tau: f64) -> (f64, f64) {
    const W: usize = 8;
    let (mut s, mut ds) = ([0.0f64; W], [0.0f64; W]);
    let (dc, zc) = (d.chunks_exact(W), z.chunks_exact(W));
    let (dr, zr) = (dc.remainder(), zc.remainder());
    for (dd, zz) in dc.zip(zc) {
        let mut t = [0.0f64; W];
        for l in 0..W {
            t[l] = zz[l] / ((dd[l] - base) - tau);
        }
        for l in 0..W {
            s[l] += zz[l] * t[l];
            ds[l] += t[l] * t[l];
        }
    }
    let fold = |v: [f64; W]| ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
    let (mut s0, mut ds0) = (fold(s), fold(ds));
    for (dd, zz) in dr.iter().zip(zr) {
        let t = zz / ((dd - base) - tau);
        s0 += zz * t;
        ds0 += t * t;
    }
    (s0, ds0)
}

/// The implicit QL iteration with Wilkinson's shift on the tridiagonal `(d, e[..n−1])`,
/// accumulating the rotations into `q` (set to the identity first): eigenvalues in `d`, their
/// vectors in `q`'s columns, both in ascending order.
fn leaf(d: &mut [f64], e: &mut [f64], mut q: MatMut<'_, f64>) -> Result<()> {
    let n = d.len();
    q.fill(0.0);
    for i in 0..n {
        q[(i, i)] = 1.0;
    }
    if n == 1 {
        return Ok(());
    }
    e[n - 1] = 0.0;
    for l in 0..n {
        let mut iterations = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iterations += 1;
            if iterations > 60 {
                return Err(LinalgError::NoConvergence {
                    what: "QL iteration of a tridiagonal divide-and-conquer leaf",
                    iterations,
                    residual: e[l].abs(),
                });
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0f64, 1.0f64, 0.0f64);
            let mut i = m;
            let mut early = false;
            while i > l {
                i -= 1;
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    early = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
                for row in 0..n {
                    let f = q[(row, i + 1)];
                    let x = q[(row, i)];
                    q[(row, i + 1)] = s * x + c * f;
                    q[(row, i)] = c * x - s * f;
                }
            }
            if early {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    if d.iter().any(|v| !v.is_finite()) {
        return Err(LinalgError::NoConvergence {
            what: "QL iteration of a tridiagonal divide-and-conquer leaf (non-finite value)",
            iterations: 0,
            residual: f64::NAN,
        });
    }
    // ascending, columns along
    for i in 0..n {
        let mut m = i;
        for j in i + 1..n {
            if d[j] < d[m] {
                m = j;
            }
        }
        if m != i {
            d.swap(i, m);
            for row in 0..n {
                let t = q[(row, i)];
                q[(row, i)] = q[(row, m)];
                q[(row, m)] = t;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tridiagonal::kth_eigenvalue;

    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
    }

    /// Solves `(d, e)` with `par`; checks the residual `‖TQ − QΛ‖`, the orthogonality
    /// `‖QᵀQ − I‖` (max entries, against `c·n·ε` and `c·n·ε·‖T‖`), the ascending order, and the
    /// eigenvalues against bisection with Sturm counts (independent of the solver).
    fn check(d: &[f64], e: &[f64], par: Par) {
        let n = d.len();
        let mut dd = d.to_vec();
        let mut ee = e.to_vec();
        ee.resize(n, 0.0);
        let mut q = Mat::<f64>::zeros(n, n);
        let mut work = Mat::<f64>::zeros(n, n);
        let mut s = DcScratch::new(n).expect("scratch");
        tridiagonal_eigh(&mut dd, &mut ee, work.as_mut(), q.as_mut(), &mut s, par)
            .expect("converges");
        let tnorm = (0..n)
            .map(|i| {
                d[i].abs()
                    + if i > 0 { e[i - 1].abs() } else { 0.0 }
                    + if i + 1 < n { e[i].abs() } else { 0.0 }
            })
            .fold(0.0f64, f64::max)
            .max(f64::MIN_POSITIVE);
        let tol = 8.0 * n as f64 * f64::EPSILON;
        for j in 0..n {
            if j > 0 {
                assert!(dd[j - 1] <= dd[j], "order at {j}");
            }
            for i in 0..n {
                let mut tq = d[i] * q[(i, j)];
                if i > 0 {
                    tq += e[i - 1] * q[(i - 1, j)];
                }
                if i + 1 < n {
                    tq += e[i] * q[(i + 1, j)];
                }
                let r = (tq - dd[j] * q[(i, j)]).abs();
                assert!(r <= tol * tnorm, "n={n} residual {r:e} at ({i}, {j})");
            }
        }
        let qtq = q.transpose() * &q;
        for j in 0..n {
            for i in 0..n {
                let t = if i == j { 1.0 } else { 0.0 };
                let r = (qtq[(i, j)] - t).abs();
                assert!(r <= tol, "n={n} orthogonality {r:e} at ({i}, {j})");
            }
        }
        for (k, &l) in dd.iter().enumerate() {
            let b = kth_eigenvalue(d, &e[..n.saturating_sub(1)], k);
            assert!(
                (l - b).abs() <= tol * tnorm,
                "n={n} eigenvalue {k}: {l} vs {b}"
            );
        }
    }

    fn both(d: &[f64], e: &[f64]) {
        check(d, e, Par::Seq);
        check(d, e, Par::rayon(2));
    }

    #[test]
    fn random_tridiagonals_of_every_shape_of_the_recursion() {
        for (seed, n) in [1usize, 2, 3, 5, 31, 32, 33, 64, 65, 100, 129, 257, 400]
            .into_iter()
            .enumerate()
        {
            let mut r = rng(seed as u64 + 1);
            let d: Vec<f64> = (0..n).map(|_| r()).collect();
            let e: Vec<f64> = (0..n.saturating_sub(1)).map(|_| r()).collect();
            both(&d, &e);
        }
    }

    #[test]
    fn closed_form_of_the_second_difference_matrix() {
        // tridiag(−1, 2, −1): λ_k = 2 − 2 cos(kπ/(n+1)), k = 1..n
        let n = 300;
        let d = vec![2.0; n];
        let e = vec![-1.0; n - 1];
        let mut dd = d.clone();
        let mut ee = e.clone();
        ee.push(0.0);
        let mut q = Mat::<f64>::zeros(n, n);
        let mut work = Mat::<f64>::zeros(n, n);
        let mut s = DcScratch::new(n).expect("scratch");
        tridiagonal_eigh(
            &mut dd,
            &mut ee,
            work.as_mut(),
            q.as_mut(),
            &mut s,
            Par::rayon(2),
        )
        .expect("ok");
        for (k, &l) in dd.iter().enumerate() {
            let x = ((k + 1) as f64 * core::f64::consts::PI / (n + 1) as f64).cos();
            let exact = 2.0 - 2.0 * x;
            assert!(
                (l - exact).abs() <= 8.0 * n as f64 * f64::EPSILON * 4.0,
                "{k}: {l} vs {exact}"
            );
        }
        both(&d, &e);
    }

    #[test]
    fn deflation_heavy_matrices() {
        // glued Wilkinson matrices W21⁺ (pairs of nearly equal eigenvalues), a constant diagonal
        // with small couplings, exact splits (zero off-diagonals), the identity, a graded matrix
        let w21: Vec<f64> = (0..21).map(|i| (10i32 - i).abs() as f64).collect();
        let mut d = Vec::new();
        let mut e = Vec::new();
        for b in 0..12 {
            if b > 0 {
                e.push(1e-9);
            }
            d.extend_from_slice(&w21);
            e.extend(std::iter::repeat_n(1.0, 20));
        }
        both(&d, &e);
        let n = 200;
        both(&vec![1.0; n], &vec![1e-14; n - 1]);
        both(&vec![3.0; n], &vec![0.0; n - 1]);
        let mut r = rng(99);
        let d: Vec<f64> = (0..n).map(|_| r()).collect();
        let e: Vec<f64> = (0..n - 1)
            .map(|i| if i % 37 == 0 { 0.0 } else { r() })
            .collect();
        both(&d, &e);
        let d: Vec<f64> = (0..n).map(|i| 2f64.powi(-(i as i32) / 8)).collect();
        let e: Vec<f64> = (0..n - 1).map(|i| 2f64.powi(-(i as i32) / 8 - 1)).collect();
        both(&d, &e);
        // a few distinct values, repeated: clusters of equal poles in every merge
        let d: Vec<f64> = (0..n).map(|i| (i % 3) as f64).collect();
        let e: Vec<f64> = (0..n - 1).map(|_| 1e-3).collect();
        both(&d, &e);
    }

    #[test]
    fn the_dispatched_root_finder_gives_the_baseline_bits() {
        // the secular solver under pulp's widest instruction set and compiled for the baseline
        // (called directly here): same roots to the bit (no reassociation, no contraction)
        let mut r = rng(7);
        for k in [2usize, 3, 9, 17, 64, 200] {
            let mut d: Vec<f64> = (0..k).map(|_| r()).collect();
            d.sort_by(f64::total_cmp);
            for i in 1..k {
                if d[i] <= d[i - 1] {
                    d[i] = d[i - 1] + 1e-3;
                }
            }
            let z: Vec<f64> = (0..k).map(|_| r() + 1.5).collect();
            let rho = 0.7;
            for i in 0..k {
                let wide = pulp::Arch::new().dispatch(SecularRoot {
                    d: &d,
                    z: &z,
                    rho,
                    i,
                });
                let base = secular_root(&d, &z, rho, i);
                let (w, b) = (wide.expect("converges"), base.expect("converges"));
                assert_eq!(w.0, b.0, "k={k} i={i}");
                assert_eq!(w.1.to_bits(), b.1.to_bits(), "k={k} i={i}");
                // and it is a root: the secular function changes sign within a few ulps
                let lam = d[w.0] + w.1;
                assert!(
                    lam > d[i] && (i + 1 == k || lam < d[i + 1]),
                    "k={k} i={i}: interlacing"
                );
            }
        }
    }
}
