//! Condition numbers under a Kronecker-factored preconditioner (THEORY.md §7, Shampoo): a matrix
//! parameter `X` (`m × n`) preconditioned as `X ↦ L X R` with symmetric positive definite `L`
//! (`m × m`) and `R` (`n × n`). On the column-major `vec(X)` this is `P = R ⊗ L`; on the
//! row-major one, `P = L ⊗ R`. `P` is never formed: `P^{1/2} = R^{1/2} ⊗ L^{1/2}` is applied
//! as `X ↦ L^{1/2} X R^{1/2}`.

use core::cell::RefCell;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

use crate::alloc::{try_mat_from_fn, try_to_owned, try_vec, try_zeros};
use crate::error::{LinalgError, Result};

/// What the buffers of [`KronPreconditioned`] are called in an out-of-memory error.
const SCRATCH: &str = "buffers of KronPreconditioned";
use crate::layout::{Layout, check_square, symmetric_part};
use crate::operator::LinearOperator;
use crate::preconditioned::{PreconditionedCond, even_scale_exponent, finish};
use crate::scaling::{ldexp, max_abs, scale_owned};
use crate::sym_root::{SymEigWorkspace, sym_sqrt_into};

/// The `m × n` matrix whose `vec` in `order` is `v`.
fn view(v: &[f64], m: usize, n: usize, order: Layout) -> MatRef<'_, f64> {
    match order {
        Layout::RowMajor => MatRef::from_row_major_slice(v, m, n),
        Layout::ColMajor => MatRef::from_column_major_slice(v, m, n),
    }
}

fn view_mut(v: &mut [f64], m: usize, n: usize, order: Layout) -> MatMut<'_, f64> {
    match order {
        Layout::RowMajor => MatMut::from_row_major_slice_mut(v, m, n),
        Layout::ColMajor => MatMut::from_column_major_slice_mut(v, m, n),
    }
}

/// `y = vec(A X B)` for `x = vec(X)` (`X` of size `m × n`), `tmp` an `m × n` buffer.
fn apply_kron(
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    order: Layout,
    x: &[f64],
    y: &mut [f64],
    tmp: &mut Mat<f64>,
) {
    let (m, n) = (a.nrows(), b.nrows());
    matmul(
        tmp.as_mut(),
        Accum::Replace,
        a,
        view(x, m, n, order),
        1.0,
        Par::Seq,
    );
    matmul(
        view_mut(y, m, n, order),
        Accum::Replace,
        tmp.as_ref(),
        b,
        1.0,
        Par::Seq,
    );
}

/// `(B ⊗ A)` in the given vec order applied to every column of `h` (owned, column-major).
fn apply_kron_cols(
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    order: Layout,
    h: &Mat<f64>,
) -> Result<Mat<f64>> {
    let (m, n) = (a.nrows(), b.nrows());
    let mut out = try_zeros("Kronecker-preconditioned matrix", h.nrows(), h.ncols())?;
    let mut tmp = try_zeros("buffer of the Kronecker product", m, n)?;
    let mut x = try_vec("column buffer of the Kronecker product", h.nrows(), 0.0)?;
    let mut y = try_vec("column buffer of the Kronecker product", h.nrows(), 0.0)?;
    for c in 0..h.ncols() {
        for (i, v) in x.iter_mut().enumerate() {
            *v = h[(i, c)];
        }
        apply_kron(a, b, order, &x, &mut y, &mut tmp);
        for (i, v) in y.iter().enumerate() {
            out[(i, c)] = *v;
        }
    }
    Ok(out)
}

/// Checks the two factors against the operator dimension `dim = m·n`.
fn check_factors(l: MatRef<'_, f64>, r: MatRef<'_, f64>, dim: usize) -> Result<(usize, usize)> {
    check_square(l, "Kronecker factor L")?;
    check_square(r, "Kronecker factor R")?;
    let (m, n) = (l.nrows(), r.nrows());
    let mn = m.saturating_mul(n);
    if mn != dim {
        return Err(LinalgError::DimensionMismatch {
            what: "size of H vs rows(L) * rows(R)",
            expected: mn,
            got: dim,
        });
    }
    Ok((m, n))
}

/// `A^{1/2}` of a symmetric positive definite factor by its eigendecomposition.
fn spd_sqrt(a: MatRef<'_, f64>, what: &'static str) -> Result<Mat<f64>> {
    let n = a.nrows();
    let mut ws = SymEigWorkspace::new(n)?;
    let mut out = try_zeros("square root of a Kronecker factor", n, n)?;
    sym_sqrt_into(a, out.as_mut(), &mut ws, what, what)?;
    Ok(out)
}

/// A symmetric factor as an owned copy divided by `2^e` with an even `e` (so that its square
/// root is divided by exactly `2^(e/2)`), and `e`.
fn even_scaled(a: MatRef<'_, f64>, what: &'static str) -> Result<(Mat<f64>, i32)> {
    let s = symmetric_part(a, what)?;
    let e = even_scale_exponent(max_abs(s.as_ref()));
    let scaled = try_mat_from_fn(what, s.nrows(), s.ncols(), |i, j| ldexp(s[(i, j)], -e))?;
    Ok((scaled, e))
}

/// The preconditioned condition numbers of a Hessian block `H` (`mn × mn`, symmetric) under the
/// Kronecker preconditioner `X ↦ L X R` of an `m × n` matrix parameter `X` (THEORY.md §7,
/// Shampoo with `L = L_k^{-1/4}`, `R = R_k^{-1/4}`).
///
/// `order` is the vec order of `H`'s rows and columns: [`Layout::RowMajor`] for the row-major
/// `vec(X)` (index `i·n + j` for `X[i,j]`, where `P = L ⊗ R`), [`Layout::ColMajor`] for the
/// column-major one (index `i + j·m`, `P = R ⊗ L`). The result is the record of
/// [`precond_cond_dense`](crate::precond_cond_dense) with that `P`, computed without forming
/// it: `S = P^{1/2} = R^{1/2} ⊗ L^{1/2}` (square roots by the symmetric eigendecomposition) is
/// applied to each column of `H` as `L^{1/2} X R^{1/2}`, then to each row; `PH` the same way
/// with `L`, `R`. Same conventions: `spectral_kappa = λ_max/λ_min` of `SHS`, infinite unless
/// it is positive definite (tolerance of [`SymSpectrum`](crate::SymSpectrum)), and the
/// smallest-positive record in `spectrum` for singular `H`.
///
/// Scale-safe: `H`, `L` and `R` are rescaled separately by powers of two (even ones for the
/// factors), so tiny or huge operands give the κ of the same operands at moderate scale.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`] (a matrix not square, or
/// `rows(H) ≠ rows(L)·rows(R)`), [`LinalgError::NonFinite`], [`LinalgError::NotSymmetric`]
/// (for `H`, `L` or `R`), [`LinalgError::NotPositiveDefinite`] when `L` or `R` has an
/// eigenvalue `≤ 0` (naming the factor and the index of the eigenvalue, ascending),
/// [`LinalgError::NoConvergence`], [`LinalgError::Overflow`].
pub fn kron_precond_cond(
    h: MatRef<'_, f64>,
    l: MatRef<'_, f64>,
    r: MatRef<'_, f64>,
    order: Layout,
) -> Result<PreconditionedCond> {
    let mut hs = symmetric_part(h, "Hessian H")?;
    check_factors(l, r, hs.nrows())?;
    let eh = scale_owned(&mut hs);
    let (ls, el) = even_scaled(l, "Kronecker factor L")?;
    let (rs, er) = even_scaled(r, "Kronecker factor R")?;
    let l_half = spd_sqrt(ls.as_ref(), "Kronecker factor L")?;
    let r_half = spd_sqrt(rs.as_ref(), "Kronecker factor R")?;
    // S H, then S (S H)ᵀ = S H S (S and H symmetric)
    let sh = apply_kron_cols(l_half.as_ref(), r_half.as_ref(), order, &hs)?;
    let sht = try_to_owned("transpose of S H", sh.transpose())?;
    drop(sh);
    let m = apply_kron_cols(l_half.as_ref(), r_half.as_ref(), order, &sht)?;
    drop(sht);
    let ph = apply_kron_cols(ls.as_ref(), rs.as_ref(), order, &hs)?;
    finish(m, ph.as_ref(), eh + el + er)
}

/// The matrix-free preconditioned Hessian `P^{1/2} H P^{1/2}` for the Kronecker preconditioner
/// `X ↦ L X R` of [`kron_precond_cond`], as a [`LinearOperator`] for
/// [`lanczos_extremes`](crate::lanczos_extremes) on blocks too large to form: `apply` computes
/// `S (H (S x))` with `S x = vec(L^{1/2} X R^{1/2})` in the given vec order. The square roots
/// are computed once at construction; each application uses buffers kept inside (not `Sync`).
#[derive(Debug)]
pub struct KronPreconditioned<'a, O: LinearOperator> {
    op: &'a O,
    l_half: Mat<f64>,
    r_half: Mat<f64>,
    order: Layout,
    scratch: RefCell<(Vec<f64>, Vec<f64>, Mat<f64>)>,
}

impl<'a, O: LinearOperator> KronPreconditioned<'a, O> {
    /// Wraps the operator of `H` (dimension `m·n`) with SPD factors `L` (`m × m`) and `R`
    /// (`n × n`); `order` is the vec order of the operator's vectors.
    ///
    /// # Errors
    /// [`LinalgError::Empty`], [`LinalgError::DimensionMismatch`] (a factor not square, or
    /// `op.dim() ≠ rows(L)·rows(R)`), [`LinalgError::NonFinite`],
    /// [`LinalgError::NotSymmetric`], [`LinalgError::NotPositiveDefinite`] (a factor with an
    /// eigenvalue `≤ 0`), [`LinalgError::NoConvergence`], [`LinalgError::Overflow`].
    pub fn new(op: &'a O, l: MatRef<'_, f64>, r: MatRef<'_, f64>, order: Layout) -> Result<Self> {
        let (m, n) = check_factors(l, r, op.dim())?;
        let l_half = spd_sqrt(l, "Kronecker factor L")?;
        let r_half = spd_sqrt(r, "Kronecker factor R")?;
        Ok(Self {
            op,
            l_half,
            r_half,
            order,
            scratch: RefCell::new((
                try_vec(SCRATCH, m * n, 0.0)?,
                try_vec(SCRATCH, m * n, 0.0)?,
                try_zeros(SCRATCH, m, n)?,
            )),
        })
    }

    /// `L^{1/2}`.
    pub fn l_sqrt(&self) -> MatRef<'_, f64> {
        self.l_half.as_ref()
    }

    /// `R^{1/2}`.
    pub fn r_sqrt(&self) -> MatRef<'_, f64> {
        self.r_half.as_ref()
    }
}

impl<O: LinearOperator> LinearOperator for KronPreconditioned<'_, O> {
    fn dim(&self) -> usize {
        self.op.dim()
    }

    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let mut guard = self.scratch.borrow_mut();
        let (u, v, tmp) = &mut *guard;
        let (l, r) = (self.l_half.as_ref(), self.r_half.as_ref());
        apply_kron(l, r, self.order, x, u, tmp);
        self.op.apply(u, v);
        apply_kron(l, r, self.order, v, y, tmp);
    }
}
