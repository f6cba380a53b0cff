//! Inverse roots and eigenbases of symmetric positive (semi)definite factors (THEORY.md §7):
//! Shampoo's `(L + εI)^(−1/4)`, SOAP's eigenbasis of `L`, computed from one symmetric
//! eigendecomposition in a reusable workspace, so that an optimizer step allocates nothing.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::householder::{
    apply_block_householder_sequence_on_the_left_in_place_scratch,
    apply_block_householder_sequence_on_the_left_in_place_with_conj, upgrade_householder_factor,
};
use faer::{Conj, Mat, MatMut, MatRef, Par};

use crate::error::{LinalgError, Result};
use crate::layout::{SYMMETRY_RTOL, check_finite};
use crate::scaling::{exponent, ldexp, max_abs, scaling_for, unscale};
use crate::symprod::{gram_pair_into, transpose_into};
use crate::sytrd::{SytrdWork, block_for, sytrd_lower};
use crate::tridiag_dc::{DcScratch, tridiagonal_eigh};

/// Every buffer of [`sym_inverse_root_into`] and [`sym_eigh_into`] for one size `n`: the
/// (rescaled) symmetric input and its Householder reflectors with their coefficients and
/// block factors, the buffers of the blocked reduction, the tridiagonal, the eigenvectors and
/// eigenvalues, a scaled copy of the eigenvectors, the buffers of the tridiagonal divide and
/// conquer, and faer's scratch memory of the back-transformation. Built once; the calls that
/// take it allocate nothing.
pub struct SymEigWorkspace {
    n: usize,
    par: Par,
    a: Mat<f64>,
    tau: Vec<f64>,
    sytrd: SytrdWork,
    householder: Mat<f64>,
    q: Mat<f64>,
    w: Vec<f64>,
    offdiag: Vec<f64>,
    tmp: Mat<f64>,
    dc: DcScratch,
    mem: MemBuffer,
}

impl core::fmt::Debug for SymEigWorkspace {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SymEigWorkspace")
            .field("n", &self.n)
            .field("par", &self.par)
            .finish_non_exhaustive()
    }
}

/// The eigenvalue range of the matrix `A` given to [`sym_inverse_root_into`] (before `ε` is
/// added).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RootInfo {
    /// Smallest eigenvalue `λ_min(A)`.
    pub min_eigenvalue: f64,
    /// Largest eigenvalue `λ_max(A)`.
    pub max_eigenvalue: f64,
}

impl SymEigWorkspace {
    /// A workspace for `n × n` matrices, with sequential faer kernels.
    ///
    /// # Errors
    /// [`LinalgError::Empty`] for `n = 0`, [`LinalgError::InvalidArgument`] when the size of
    /// the buffers (about `5n²` doubles plus faer's scratch) overflows the address space,
    /// [`LinalgError::OutOfMemory`] when the allocator refuses them.
    pub fn new(n: usize) -> Result<Self> {
        Self::with_par(n, Par::Seq)
    }

    /// [`new`](Self::new) with the parallelism of the eigendecomposition and the products
    /// (the scratch size depends on it).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_par(n: usize, par: Par) -> Result<Self> {
        if n == 0 {
            return Err(LinalgError::Empty {
                what: "SymEigWorkspace size",
                rows: 0,
                cols: 0,
            });
        }
        let too_big = || LinalgError::InvalidArgument {
            name: "n",
            reason: format!("a workspace for {n} x {n} matrices does not fit in memory"),
        };
        // 5 n x n matrices of f64 must be addressable
        n.checked_mul(n)
            .and_then(|nn| nn.checked_mul(5 * 8))
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(too_big)?;
        let bs = householder_block(n);
        let req =
            apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(n - 1, bs, n);
        const WS: &str = "buffers of SymEigWorkspace";
        let mem = crate::alloc::try_mem("scratch of SymEigWorkspace", req)?;
        Ok(Self {
            n,
            par,
            a: crate::alloc::try_zeros(WS, n, n)?,
            tau: crate::alloc::try_vec(WS, n - 1, 0.0)?,
            sytrd: SytrdWork::new(n, block_for(n))?,
            householder: crate::alloc::try_zeros(WS, bs, n - 1)?,
            q: crate::alloc::try_zeros(WS, n, n)?,
            w: crate::alloc::try_vec(WS, n, 0.0)?,
            offdiag: crate::alloc::try_vec(WS, n, 0.0)?,
            tmp: crate::alloc::try_zeros(WS, n, n)?,
            dc: DcScratch::new(n)?,
            mem,
        })
    }

    /// The size `n` this workspace serves.
    pub fn dim(&self) -> usize {
        self.n
    }

    /// Checks `a` (square, of the workspace's size, finite, symmetric to [`SYMMETRY_RTOL`]),
    /// stores its symmetric part divided by `2ᵉ` in `self.a`, decomposes it into `self.q`,
    /// `self.w` (ascending), and returns `e` (0 when `a` is in the safe range).
    fn decompose(&mut self, a: MatRef<'_, f64>, what: &'static str) -> Result<i32> {
        let n = self.n;
        if a.nrows() != n || a.ncols() != n {
            return Err(LinalgError::DimensionMismatch {
                what: if a.nrows() != n {
                    "rows of the matrix vs size of the SymEigWorkspace"
                } else {
                    "columns of the matrix vs size of the SymEigWorkspace"
                },
                expected: n,
                got: if a.nrows() != n { a.nrows() } else { a.ncols() },
            });
        }
        check_finite(a, what)?;
        let amax = max_abs(a);
        let tol = SYMMETRY_RTOL * amax;
        let e = scaling_for(amax).unwrap_or(0);
        // the symmetry check and the copy of the symmetric part, tile by tile: a lower tile
        // and its mirror stay in cache (a column-by-column walk strides through the mirror)
        const TILE: usize = 16;
        let mut symmetric = true;
        let pair = |x: f64, y: f64| {
            if x.to_bits() == y.to_bits() {
                ldexp(x, -e)
            } else {
                0.5 * ldexp(x, -e) + 0.5 * ldexp(y, -e)
            }
        };
        // columns as slices: column-major storage, or the transpose of row-major storage (the
        // symmetric part of Aᵀ is that of A: each pair only swaps, and `pair` is symmetric)
        let src = if a.row_stride() == 1 {
            a
        } else {
            a.transpose()
        };
        let contiguous = src.row_stride() == 1;
        for j0 in (0..n).step_by(TILE) {
            let j1 = (j0 + TILE).min(n);
            for i0 in (j0..n).step_by(TILE) {
                let i1 = (i0 + TILE).min(n);
                if contiguous {
                    let mut mirror: [&[f64]; TILE] = [&[]; TILE];
                    for (t, i) in (i0..i1).enumerate() {
                        mirror[t] = col_slice(src, i);
                    }
                    for j in j0..j1 {
                        let xs = col_slice(src, j);
                        let dst = self.a.col_as_slice_mut(j);
                        let start = i0.max(j);
                        for (ys, i) in mirror[start - i0..i1 - i0].iter().zip(start..i1) {
                            let (x, y) = (xs[i], ys[j]);
                            symmetric &= (x - y).abs() <= tol;
                            dst[i] = pair(x, y);
                        }
                    }
                } else {
                    for j in j0..j1 {
                        for i in i0.max(j)..i1 {
                            let (x, y) = (a[(i, j)], a[(j, i)]);
                            symmetric &= (x - y).abs() <= tol;
                            self.a[(i, j)] = pair(x, y);
                        }
                    }
                }
            }
        }
        if !symmetric {
            // the first offending pair in column order, as reported before the tiled pass
            for j in 0..n {
                for i in 0..j {
                    let (upper, lower) = (a[(i, j)], a[(j, i)]);
                    if (upper - lower).abs() > tol {
                        return Err(LinalgError::NotSymmetric {
                            what,
                            row: i,
                            col: j,
                            upper,
                            lower,
                        });
                    }
                }
            }
        }
        // A = H T Hᵀ, T = Z Λ Zᵀ, Q = H Z, on the pool as a whole (one hand-off for the
        // reduction's team and faer's parallel products)
        let par = self.par;
        crate::pool::on_pool(par, n, || self.reduce_and_solve())?;
        if let Some(j) = (0..n).find(|&j| self.q.col(j).iter().any(|v| !v.is_finite())) {
            return Err(LinalgError::NoConvergence {
                what: "symmetric eigendecomposition (non-finite eigenvector column)",
                iterations: j,
                residual: f64::NAN,
            });
        }
        if let Some(k) = self.w.iter().position(|v| !v.is_finite()) {
            return Err(LinalgError::NonFinite {
                what: "eigenvalue of the symmetric eigendecomposition",
                row: k,
                col: 0,
                value: self.w[k],
            });
        }
        Ok(e)
    }

    /// The three stages of [`decompose`](Self::decompose) on `self.a` (lower triangle):
    /// the blocked reduction `A = H T Hᵀ` ([`sytrd_lower`], LAPACK `DSYTRD`, with its
    /// two-thread team; reflectors left in `a` below the subdiagonal and coefficients in
    /// `tau`), `T = Z Λ Zᵀ` by our divide and conquer, and `Q = H Z` by faer's blocked
    /// application of the reflectors, whose block factors are built here from `tau`.
    fn reduce_and_solve(&mut self) -> Result<()> {
        let n = self.n;
        let par = self.par;
        sytrd_lower(
            self.a.as_mut(),
            &mut self.w,
            &mut self.offdiag[..n - 1],
            &mut self.tau,
            block_for(n),
            par,
            &mut self.sytrd,
        );
        self.offdiag[n - 1] = 0.0;
        if n > 1 {
            // faer's block reflector `H_j ⋯ H_{j+b−1} = I − V F⁻¹ Vᵀ` has `F_kk = 1/τ_k` (its
            // reflectors are `I − v vᵀ / t`; `τ = 0`, the identity, is `t = ∞`, as faer's own
            // reduction marks it) and `F_ik = v_iᵀ v_k` above the diagonal, which
            // `upgrade_householder_factor` computes from the basis
            let basis = self.a.as_ref().submatrix(1, 0, n - 1, n - 1);
            let bs = self.householder.nrows();
            let mut j = 0;
            while j < n - 1 {
                let b = bs.min(n - 1 - j);
                let mut f = self.householder.as_mut().submatrix_mut(0, j, b, b);
                for k in 0..b {
                    f[(k, k)] = self.tau[j + k].recip();
                }
                upgrade_householder_factor(f, basis.submatrix(j, j, n - 1 - j, b), b, 1, par);
                j += b;
            }
        }
        tridiagonal_eigh(
            &mut self.w,
            &mut self.offdiag,
            self.tmp.as_mut(),
            self.q.as_mut(),
            &mut self.dc,
            par,
        )?;
        if n > 1 {
            apply_block_householder_sequence_on_the_left_in_place_with_conj(
                self.a.as_ref().submatrix(1, 0, n - 1, n - 1),
                self.householder.as_ref(),
                Conj::No,
                self.q.as_mut().subrows_mut(1, n - 1),
                par,
                MemStack::new(&mut self.mem),
            );
        }
        Ok(())
    }

    /// `out = (A + ε I)^p` from the decomposition of `A` (any real `p`; the inverse root is
    /// `p = −1/root`), the eigenvalue range of `A`.
    fn power_into(
        &mut self,
        a: MatRef<'_, f64>,
        eps: f64,
        p: f64,
        out: MatMut<'_, f64>,
        what: &'static str,
        pd_what: &'static str,
    ) -> Result<RootInfo> {
        let n = self.n;
        if out.nrows() != n || out.ncols() != n {
            return Err(LinalgError::DimensionMismatch {
                what: "size of out vs size of the matrix",
                expected: n,
                got: if out.nrows() != n {
                    out.nrows()
                } else {
                    out.ncols()
                },
            });
        }
        let e = self.decompose(a, what)?;
        let info = RootInfo {
            min_eigenvalue: unscale(self.w[0], e, "smallest eigenvalue of A")?,
            max_eigenvalue: unscale(self.w[n - 1], e, "largest eigenvalue of A")?,
        };
        // μ = λ + ε in units of 2^ew: ew ≥ e, and ≥ the exponent of ε, so that neither the
        // eigenvalues (shifted down exactly) nor ε (in [1, 2)) overflow
        let ew = if eps > 0.0 { e.max(exponent(eps)) } else { e };
        let eps_w = ldexp(eps, -ew);
        for k in 0..n {
            let mu = ldexp(self.w[k], e - ew) + eps_w;
            if mu <= 0.0 {
                return Err(LinalgError::NotPositiveDefinite {
                    what: pd_what,
                    index: k,
                    value: ldexp(mu, ew),
                });
            }
            self.w[k] = mu;
        }
        // out = 2^(2 t) · Q diag(g²) Qᵀ with g_k = μ_k^(p/2) · 2^(−t): the exponent of μ_k^p
        // relative to the largest one is kept in the columns, the common factor applied once
        // at the end (so neither g_k² nor the Gram product underflows or overflows)
        let half = 0.5 * p;
        let direct = self.w.iter().all(|&mu| {
            let g = mu.powf(half);
            g.is_finite() && g > 0.0
        });
        // total = log2 of the common factor of out: 2·(max log2 g) + p·ew
        let total = if direct {
            let gmax = self.w.iter().fold(0.0f64, |m, &mu| m.max(mu.powf(half)));
            let t = exponent(gmax);
            let total = 2.0 * f64::from(t) + p * f64::from(ew);
            // a common factor 2^total with |total| ≤ 900 goes into the columns (2^(total/2)
            // each: neither the columns nor the entries of the product leave the normal range
            // where it matters), else it is applied after the product
            let (fold, total) = if total.abs() <= 900.0 {
                ((0.5 * total).exp2(), 0.0)
            } else {
                (1.0, total)
            };
            for k in 0..n {
                let g = ldexp(self.w[k].powf(half), -t) * fold;
                scale_col(&self.q, &mut self.tmp, k, g);
            }
            total
        } else {
            let lmax = self
                .w
                .iter()
                .fold(f64::NEG_INFINITY, |m, &mu| m.max(half * mu.log2()));
            for k in 0..n {
                let g = (half * self.w[k].log2() - lmax).exp2();
                scale_col(&self.q, &mut self.tmp, k, g);
            }
            2.0 * lmax + p * f64::from(ew)
        };
        let mut out = out;
        // G Gᵀ from G and an explicit Gᵀ (in `a`, free once decomposed): every product of the
        // recursive halving column-major × column-major, faer's fastest layout (the
        // triangular-output product with a transposed operand was ~3× slower at n = 1024)
        transpose_into(self.tmp.as_ref(), self.a.as_mut(), self.par)?;
        gram_pair_into(self.tmp.as_ref(), self.a.as_ref(), out.as_mut(), self.par).map_err(
            |e| match e {
                LinalgError::Overflow { .. } => LinalgError::Overflow {
                    what: "an entry of (A + eps*I)^(-1/root)",
                    log2: total.max(1024.0),
                },
                other => other,
            },
        )?;
        if total != 0.0 {
            let k = total.floor();
            let frac = (total - k).exp2();
            let k = k.clamp(-3000.0, 3000.0) as i32;
            for j in 0..n {
                for i in 0..n {
                    out[(i, j)] = ldexp(out[(i, j)] * frac, k);
                }
            }
            // (with total = 0 the product's own check has seen every entry)
            if let Some(j) = (0..n).find(|&j| (0..n).any(|i| !out[(i, j)].is_finite())) {
                let i = (0..n).find(|&i| !out[(i, j)].is_finite()).unwrap_or(0);
                return Err(LinalgError::Overflow {
                    what: "an entry of (A + eps*I)^(-1/root)",
                    log2: if out[(i, j)].is_nan() { 1024.0 } else { total },
                });
            }
        }
        Ok(info)
    }
}

/// Column `j` of `m` as a slice (`m` has unit row stride; empty otherwise).
fn col_slice(m: MatRef<'_, f64>, j: usize) -> &[f64] {
    m.col(j)
        .try_as_col_major()
        .map_or(&[][..], |c| c.as_slice())
}

/// Rows of the block Householder factors of the tridiagonal reduction (faer's QR block size,
/// as its `self_adjoint_evd`).
fn householder_block(n: usize) -> usize {
    faer::linalg::qr::no_pivoting::factor::recommended_block_size::<f64>(n, n)
}

/// `tmp[:, k] = g · q[:, k]`.
fn scale_col(q: &Mat<f64>, tmp: &mut Mat<f64>, k: usize, g: f64) {
    for (d, s) in tmp.col_as_slice_mut(k).iter_mut().zip(q.col_as_slice(k)) {
        *d = g * s;
    }
}

/// `out = (A + ε I)^(−1/root)` for a symmetric positive semidefinite `A` (Shampoo's
/// preconditioner factors, THEORY.md §7, with `root = 4` for a two-sided Kronecker
/// preconditioner of a matrix, `2` for one side only).
///
/// Conventions: `ε ≥ 0` is added to the eigenvalues (`λ_i + ε`, which equals adding `ε I` to
/// `A`), and the exponent is `−1/root` with `root > 0`. From the eigendecomposition
/// `A = Q Λ Qᵀ`, `out = Q diag((λ+ε)^(−1/root)) Qᵀ`, computed as the Gram product `G Gᵀ` of
/// `G = Q diag((λ+ε)^(−1/(2 root)))` (lower triangle, mirrored), so `out` is exactly symmetric
/// and positive semidefinite to rounding. Only the symmetric part `(A + Aᵀ)/2` is used.
///
/// The eigendecomposition: our blocked reduction to a tridiagonal `T = HᵀAH` (LAPACK
/// `DSYTRD`, on a two-thread team when the workspace has two threads), our
/// parallel divide and conquer for `T = ZΛZᵀ` (Cuppen's method with deflation, the secular
/// equation by Li's middle way and Gu–Eisenstat eigenvectors, THEORY.md §8), and faer's blocked
/// back-transformation `Q = HZ`.
///
/// Scale-safe: when the largest entry of `A` is outside `[2⁻¹²⁸, 2¹²⁹)`, the
/// eigendecomposition runs on `2⁻ᵉA` (exact), the eigenvalues are brought back to the scale of
/// `A` before `ε` is added (`2ᵉA + εI` is not a rescaling of `A + εI`), and the powers are
/// formed in a common exponent so that neither tiny nor huge factors underflow or overflow
/// before the final result.
///
/// ```
/// use faer::Mat;
/// use precond_linalg::{SymEigWorkspace, sym_inverse_root_into};
///
/// // Shampoo's left factor L = diag(16, 81) with ε = 0: L^(−1/4) = diag(1/2, 1/3)
/// let l = Mat::from_fn(2, 2, |i, j| if i == j { [16.0, 81.0][i] } else { 0.0 });
/// let mut ws = SymEigWorkspace::new(2)?; // once, outside the optimizer loop
/// let mut out = Mat::zeros(2, 2);
/// let info = sym_inverse_root_into(l.as_ref(), 0.0, 4.0, out.as_mut(), &mut ws)?;
/// assert!((out[(0, 0)] - 0.5).abs() < 1e-15 && (out[(1, 1)] - 1.0 / 3.0).abs() < 1e-15);
/// assert!(out[(0, 1)].abs() < 1e-15 && (info.max_eigenvalue - 81.0).abs() < 1e-13);
/// # Ok::<(), precond_linalg::LinalgError>(())
/// ```
///
/// Allocates nothing: every buffer is in `ws` (faer's product kernels keep per-thread packing
/// buffers, sized on their first use on a thread).
///
/// # Errors
/// [`LinalgError::InvalidArgument`] for `root ≤ 0` or non-finite, `ε < 0` or non-finite;
/// [`LinalgError::DimensionMismatch`] when `A` or `out` is not `n × n` with `n = ws.dim()`;
/// [`LinalgError::NonFinite`]; [`LinalgError::NotSymmetric`] (tolerance `10⁻⁶ · max|a|`);
/// [`LinalgError::NotPositiveDefinite`] naming the index (ascending order) of an eigenvalue with
/// `λ + ε ≤ 0` and that value; [`LinalgError::NoConvergence`] from the eigensolver;
/// [`LinalgError::Overflow`] when an eigenvalue of `A` or an entry of the result does not fit in
/// an `f64`. On error the contents of `out` are unspecified.
pub fn sym_inverse_root_into(
    a: MatRef<'_, f64>,
    eps: f64,
    root: f64,
    out: MatMut<'_, f64>,
    ws: &mut SymEigWorkspace,
) -> Result<RootInfo> {
    if !(root.is_finite() && root > 0.0) {
        return Err(LinalgError::InvalidArgument {
            name: "root",
            reason: format!("must be finite and > 0, got {root}"),
        });
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(LinalgError::InvalidArgument {
            name: "eps",
            reason: format!("must be finite and >= 0, got {eps}"),
        });
    }
    let par = ws.par;
    crate::pool::on_pool(par, ws.n, || {
        ws.power_into(
            a,
            eps,
            -1.0 / root,
            out,
            "A",
            "A + eps*I (eigenvalue index, ascending)",
        )
    })
}

/// `out = A^(1/2)` for a symmetric positive definite `A` (internal: the Kronecker diagnostics).
pub(crate) fn sym_sqrt_into(
    a: MatRef<'_, f64>,
    out: MatMut<'_, f64>,
    ws: &mut SymEigWorkspace,
    what: &'static str,
    pd_what: &'static str,
) -> Result<()> {
    let par = ws.par;
    crate::pool::on_pool(par, ws.n, || ws.power_into(a, 0.0, 0.5, out, what, pd_what)).map(|_| ())
}

/// The symmetric eigendecomposition `A = Q diag(λ) Qᵀ` (SOAP's eigenbasis of a Kronecker
/// factor): `eigvals` ascending, `eigvecs` with orthonormal columns `Q[:, i]` for `λ_i`.
/// Only the symmetric part `(A + Aᵀ)/2` is used. Scale-safe as [`sym_inverse_root_into`]:
/// eigenvalues of `2⁻ᵉA` multiplied back by `2ᵉ`. Allocates nothing.
///
/// # Errors
/// [`LinalgError::DimensionMismatch`] when `A` or `eigvecs` is not `n × n` or `eigvals` does
/// not have length `n` (`n = ws.dim()`), [`LinalgError::NonFinite`],
/// [`LinalgError::NotSymmetric`], [`LinalgError::NoConvergence`], [`LinalgError::Overflow`]
/// when an eigenvalue exceeds `f64::MAX`.
pub fn sym_eigh_into(
    a: MatRef<'_, f64>,
    mut eigvecs: MatMut<'_, f64>,
    eigvals: &mut [f64],
    ws: &mut SymEigWorkspace,
) -> Result<()> {
    let n = ws.n;
    if eigvecs.nrows() != n || eigvecs.ncols() != n {
        return Err(LinalgError::DimensionMismatch {
            what: "size of eigvecs vs size of the SymEigWorkspace",
            expected: n,
            got: if eigvecs.nrows() != n {
                eigvecs.nrows()
            } else {
                eigvecs.ncols()
            },
        });
    }
    if eigvals.len() != n {
        return Err(LinalgError::DimensionMismatch {
            what: "length of eigvals vs size of the SymEigWorkspace",
            expected: n,
            got: eigvals.len(),
        });
    }
    let par = ws.par;
    let e = crate::pool::on_pool(par, ws.n, || ws.decompose(a, "A"))?;
    for (dst, &l) in eigvals.iter_mut().zip(&ws.w) {
        *dst = unscale(l, e, "eigenvalue of A")?;
    }
    eigvecs.copy_from(ws.q.as_ref());
    Ok(())
}
