//! faer's dense decompositions through their low-level routines, with every buffer (copies,
//! factors, permutations, workspaces) requested fallibly ([`crate::alloc`]). Each function
//! computes exactly what the high-level faer call named in its documentation computes (the
//! same routine on the same data with the same parallelism, so bitwise the same result), but an
//! allocator refusal becomes [`LinalgError::OutOfMemory`](crate::LinalgError::OutOfMemory)
//! instead of an abort.

use faer::dyn_stack::MemStack;
use faer::linalg::cholesky::llt;
use faer::linalg::lu::partial_pivoting as pplu;
use faer::linalg::svd::ComputeSvdVectors;
use faer::perm::PermRef;
use faer::{ColMut, Conj, Mat, MatMut, MatRef};

use crate::alloc::{try_mem, try_vec, try_zeros};
use crate::error::{LinalgError, Result};

/// The singular values of `a`, nonincreasing (`a.singular_values()`).
pub(crate) fn singular_values(a: MatRef<'_, f64>) -> Result<Vec<f64>> {
    let par = faer::get_global_parallelism();
    let (m, n) = a.shape();
    let mut s = try_vec("singular values", m.min(n), 0.0)?;
    let mut mem = try_mem(
        "workspace of the singular value decomposition",
        faer::linalg::svd::svd_scratch::<f64>(
            m,
            n,
            ComputeSvdVectors::No,
            ComputeSvdVectors::No,
            par,
            Default::default(),
        ),
    )?;
    faer::linalg::svd::svd(
        a,
        ColMut::from_slice_mut(&mut s).as_diagonal_mut(),
        None,
        None,
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|_| LinalgError::NoConvergence {
        what: "faer singular value decomposition",
        iterations: 0,
        residual: f64::NAN,
    })?;
    Ok(s)
}

/// From this order `min(m, n)` on, [`bidiagonal`] runs faer's reduction on the global
/// parallelism; below it on one thread. Measured on the 2-core Intel Xeon of session 12
/// (`cond2` on the one-stage path, one thread / both): 4.0 / 7.1 ms at n = 300, 15.5 / 22.9 at
/// 500, 54 / 53 at 700, 176 / 126 at 1000 (faer's own threshold splits from n ≈ 220).
pub(crate) const BIDIAG_PAR_MIN_N: usize = 700;

/// The upper bidiagonal `B = Uᵀ A V` of `a` (`d` its diagonal, `e` its superdiagonal, order
/// `min(m, n)`): a wide `a` is reduced through its transpose (same singular values), a tall one
/// (`m > 11n/6`, faer's SVD threshold) through the `R` of its QR factorization first, then faer's
/// one-stage bidiagonalization (`bidiag_in_place`, what `a.singular_values()` starts with) on a
/// copy, with one-column reflector blocks (only `B` is used).
pub(crate) fn bidiagonal(a: MatRef<'_, f64>) -> Result<(Vec<f64>, Vec<f64>)> {
    use faer::linalg::svd::bidiag;
    const W: &str = "buffers of the bidiagonalization";
    let a = if a.nrows() >= a.ncols() {
        a
    } else {
        a.transpose()
    };
    let (m, n) = a.shape();
    let par = if n < BIDIAG_PAR_MIN_N {
        faer::Par::Seq
    } else {
        faer::get_global_parallelism()
    };
    let mut b = if 6 * m > 11 * n {
        crate::two_stage::qr_r(a, par)?
    } else {
        crate::alloc::try_to_owned(W, a)?
    };
    let mut hl = try_zeros(W, 1, n)?;
    let mut hr = try_zeros(W, 1, n.saturating_sub(1))?;
    let mut mem = try_mem(
        W,
        bidiag::bidiag_in_place_scratch::<f64>(b.nrows(), n, par, Default::default()),
    )?;
    bidiag::bidiag_in_place(
        b.as_mut(),
        hl.as_mut(),
        hr.as_mut(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    let d = crate::alloc::try_collect(W, n, (0..n).map(|i| b[(i, i)]))?;
    let e = crate::alloc::try_collect(W, n.saturating_sub(1), (1..n).map(|i| b[(i - 1, i)]))?;
    Ok((d, e))
}

/// From this order on faer's partial-pivoting LU (and the solves with its factors) use the
/// global parallelism; below it one thread. Measured on the 2-core Intel Xeon (AVX-512) of
/// session 11, `cond_estimate_lu` in a loop, one thread against both: 0.13 / 0.18 ms at
/// n = 100, 1.4 / 1.9–2.2 ms at 300, 4.7 / 5.4 ms at 500, 8–11 / 11–13 ms at 700, and
/// 20–28 / 18–26 ms at 1000, 62–111 / 57–84 ms at 1500 (faer's thresholds for splitting the
/// factorization over threads are set for larger machines: with two cores the waiting costs
/// more than the second core brings until about n = 800).
const LU_PAR_MIN_N: usize = 800;

/// The parallelism of an LU factorization or solve of order `n` ([`LU_PAR_MIN_N`]).
fn lu_par(n: usize) -> faer::Par {
    if n < LU_PAR_MIN_N {
        faer::Par::Seq
    } else {
        faer::get_global_parallelism()
    }
}

/// The LU factorization with partial (row) pivoting `PA = LU` of a square matrix, as faer's
/// `PartialPivLu` (`a.partial_piv_lu()`) computes it, kept packed (`L`'s strictly lower part
/// with its unit diagonal implied, `U` on and above the diagonal; faer's solves and inverse
/// read only those triangles, so the factor is neither split nor copied), the permutation as
/// forward / inverse index arrays.
pub(crate) struct Lu {
    lu: Mat<f64>,
    fwd: Vec<usize>,
    bwd: Vec<usize>,
}

impl Lu {
    /// Factors the square `a`.
    pub(crate) fn new(a: MatRef<'_, f64>) -> Result<Self> {
        let n = a.nrows();
        let par = lu_par(n);
        debug_assert_eq!(n, a.ncols());
        let mut lu = crate::alloc::try_to_owned("LU factors", a)?;
        let mut fwd = try_vec("LU row permutation", n, 0usize)?;
        let mut bwd = try_vec("LU inverse row permutation", n, 0usize)?;
        let mut mem = try_mem(
            "workspace of the LU factorization",
            pplu::factor::lu_in_place_scratch::<usize, f64>(n, n, par, Default::default()),
        )?;
        crate::pool::on_pool(par, n, || {
            pplu::factor::lu_in_place(
                lu.as_mut(),
                &mut fwd,
                &mut bwd,
                par,
                MemStack::new(&mut mem),
                Default::default(),
            )
        });
        Ok(Self { lu, fwd, bwd })
    }

    /// The packed factors: `U` on and above the diagonal, `L` strictly below it (unit
    /// diagonal implied).
    pub(crate) fn packed(&self) -> MatRef<'_, f64> {
        self.lu.as_ref()
    }

    /// `U`'s diagonal entry `i`.
    pub(crate) fn u_diag(&self, i: usize) -> f64 {
        self.lu[(i, i)]
    }

    /// The row permutation `P`.
    pub(crate) fn p(&self) -> PermRef<'_, usize> {
        PermRef::new_checked(&self.fwd, &self.bwd, self.fwd.len())
    }

    /// The inverse `A⁻¹ = U⁻¹L⁻¹P` (`lu.inverse()`).
    pub(crate) fn inverse(&self) -> Result<Mat<f64>> {
        let par = faer::get_global_parallelism();
        let n = self.lu.nrows();
        let mut out = try_zeros("inverse from the LU factors", n, n)?;
        let mut mem = try_mem(
            "workspace of the inverse from the LU factors",
            pplu::inverse::inverse_scratch::<usize, f64>(n, par),
        )?;
        pplu::inverse::inverse(
            out.as_mut(),
            self.packed(),
            self.packed(),
            self.p(),
            par,
            MemStack::new(&mut mem),
        );
        Ok(out)
    }
}

/// Solvers `x ← A⁻¹x` and `x ← A⁻ᵀx` from the factors of [`Lu`] (`lu.solve_in_place`,
/// `lu.solve_transpose_in_place`), with their workspaces allocated once.
pub(crate) struct LuSolver<'a> {
    l: MatRef<'a, f64>,
    u: MatRef<'a, f64>,
    p: PermRef<'a, usize>,
    mem: faer::dyn_stack::MemBuffer,
    mem_t: faer::dyn_stack::MemBuffer,
}

impl<'a> LuSolver<'a> {
    /// The workspaces for one right-hand side.
    pub(crate) fn new(lu: &'a Lu) -> Result<Self> {
        Self::from_parts(lu.packed(), lu.packed(), lu.p())
    }

    /// The same from the factors of a faer `PartialPivLu` (`L`, `U`, `P`).
    pub(crate) fn from_parts(
        l: MatRef<'a, f64>,
        u: MatRef<'a, f64>,
        p: PermRef<'a, usize>,
    ) -> Result<Self> {
        let par = faer::get_global_parallelism();
        let n = l.nrows();
        Ok(Self {
            l,
            u,
            p,
            mem: try_mem(
                "workspace of the LU solve",
                pplu::solve::solve_in_place_scratch::<usize, f64>(n, 1, par),
            )?,
            mem_t: try_mem(
                "workspace of the transposed LU solve",
                pplu::solve::solve_transpose_in_place_scratch::<usize, f64>(n, 1, par),
            )?,
        })
    }

    /// `x ← A⁻¹x`.
    pub(crate) fn solve(&mut self, x: &mut [f64]) {
        pplu::solve::solve_in_place_with_conj(
            self.l,
            self.u,
            self.p,
            Conj::No,
            col(x),
            lu_par(self.l.nrows()),
            MemStack::new(&mut self.mem),
        );
    }

    /// `x ← A⁻ᵀx`.
    pub(crate) fn solve_t(&mut self, x: &mut [f64]) {
        pplu::solve::solve_transpose_in_place_with_conj(
            self.l,
            self.u,
            self.p,
            Conj::No,
            col(x),
            lu_par(self.l.nrows()),
            MemStack::new(&mut self.mem_t),
        );
    }
}

fn col(x: &mut [f64]) -> MatMut<'_, f64> {
    ColMut::from_slice_mut(x).as_mat_mut()
}

/// The Cholesky factor `L` of the SPD `a` (its lower triangle is read), zero above the diagonal
/// (`a.llt(Side::Lower)`); a non-positive pivot is [`LinalgError::NotPositiveDefinite`] naming
/// `what` and the pivot's index.
pub(crate) fn cholesky_lower(a: MatRef<'_, f64>, what: &'static str) -> Result<Mat<f64>> {
    let par = faer::get_global_parallelism();
    let n = a.nrows();
    let mut l = try_zeros("Cholesky factor L", n, n)?;
    l.copy_from_triangular_lower(a);
    let mut mem = try_mem(
        "workspace of the Cholesky factorization",
        llt::factor::cholesky_in_place_scratch::<f64>(n, par, Default::default()),
    )?;
    llt::factor::cholesky_in_place(
        l.as_mut(),
        Default::default(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| {
        let llt::factor::LltError::NonPositivePivot { index } = e;
        LinalgError::NotPositiveDefinite {
            what,
            index,
            value: f64::NAN,
        }
    })?;
    for j in 0..n {
        for i in 0..j {
            l[(i, j)] = 0.0;
        }
    }
    Ok(l)
}

/// `x ← (LLᵀ)⁻¹x` (`llt.solve_in_place`; the solve needs no workspace).
pub(crate) fn cholesky_solve(l: MatRef<'_, f64>, x: &mut [f64]) {
    llt::solve::solve_in_place_with_conj(
        l,
        Conj::No,
        col(x),
        faer::get_global_parallelism(),
        MemStack::new(&mut []),
    );
}

/// The product `lhs · rhs` into a new matrix (`lhs * rhs` on faer matrices: the same
/// `matmul` with the global parallelism), or [`LinalgError::OutOfMemory`] naming `what`.
pub(crate) fn matmul(
    what: &'static str,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
) -> Result<Mat<f64>> {
    debug_assert_eq!(lhs.ncols(), rhs.nrows());
    let mut out = try_zeros(what, lhs.nrows(), rhs.ncols())?;
    faer::linalg::matmul::matmul(
        out.as_mut(),
        faer::Accum::Replace,
        lhs,
        rhs,
        1.0,
        faer::get_global_parallelism(),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Side;
    use faer::linalg::solvers::{DenseSolveCore, Solve};

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Bitwise the results of faer's high-level calls (the routines these replace).
    #[test]
    fn same_bits_as_faer_high_level_calls() {
        for n in [1usize, 7, 40, 97] {
            let a = Mat::<f64>::from_fn(n, n, |i, j| ((i * 31 + j * 17) % 13) as f64 - 6.0);
            let h = Mat::<f64>::from_fn(n, n, |i, j| {
                a[(i, j)] + a[(j, i)] + if i == j { 16.0 * n as f64 + 16.0 } else { 0.0 }
            });
            assert_eq!(
                bits(&singular_values(a.as_ref()).expect("must succeed")),
                bits(&a.singular_values().expect("must succeed"))
            );
            let lu = Lu::new(h.as_ref()).expect("must succeed");
            let flu = h.partial_piv_lu();
            let packed = lu.packed();
            let l = Mat::<f64>::from_fn(n, n, |i, j| match i.cmp(&j) {
                std::cmp::Ordering::Greater => packed[(i, j)],
                std::cmp::Ordering::Equal => 1.0,
                std::cmp::Ordering::Less => 0.0,
            });
            let u = Mat::<f64>::from_fn(n, n, |i, j| if i <= j { packed[(i, j)] } else { 0.0 });
            assert_eq!(l.as_ref(), flu.L());
            assert_eq!(u.as_ref(), flu.U());
            assert!((0..n).all(|i| lu.u_diag(i).to_bits() == u[(i, i)].to_bits()));
            assert_eq!(lu.inverse().expect("must succeed"), flu.inverse());
            let mut solver = LuSolver::new(&lu).expect("must succeed");
            let rhs: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
            let (mut x, mut y) = (rhs.clone(), rhs.clone());
            solver.solve(&mut x);
            flu.solve_in_place(ColMut::from_slice_mut(&mut y).as_mat_mut());
            assert_eq!(bits(&x), bits(&y));
            let (mut x, mut y) = (rhs.clone(), rhs.clone());
            solver.solve_t(&mut x);
            flu.solve_transpose_in_place(ColMut::from_slice_mut(&mut y).as_mat_mut());
            assert_eq!(bits(&x), bits(&y));
            let l = cholesky_lower(h.as_ref(), "h").expect("must succeed");
            let fllt = h.llt(Side::Lower).expect("must succeed");
            assert_eq!(l.as_ref(), fllt.L());
            let (mut x, mut y) = (rhs.clone(), rhs);
            cholesky_solve(l.as_ref(), &mut x);
            fllt.solve_in_place(ColMut::from_slice_mut(&mut y).as_mat_mut());
            assert_eq!(bits(&x), bits(&y));
        }
        let a = Mat::<f64>::from_fn(37, 23, |i, j| ((i * 5 + j * 3) % 11) as f64 / 7.0 - 0.6);
        let b = Mat::<f64>::from_fn(23, 41, |i, j| ((i * 13 + j) % 9) as f64 / 5.0 - 0.8);
        assert_eq!(
            matmul("ab", a.as_ref(), b.as_ref()).expect("small"),
            &a * &b
        );
        let not_spd = Mat::<f64>::from_fn(3, 3, |i, j| if i == j { 1.0 - i as f64 } else { 0.0 });
        assert!(matches!(
            cholesky_lower(not_spd.as_ref(), "h"),
            Err(LinalgError::NotPositiveDefinite {
                what: "h",
                index: 1,
                ..
            })
        ));
    }
}
