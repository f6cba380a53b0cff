//! Building faer matrices from plain slices, and the input checks every routine shares.

use faer::{Mat, MatRef};

use crate::error::{LinalgError, Result};

/// Memory order of a dense matrix given as a flat slice (the C ABI passes such slices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `data[i * ncols + j] = a[i, j]` (C order).
    RowMajor,
    /// `data[i + j * nrows] = a[i, j]` (Fortran order).
    ColMajor,
}

/// Copies an `nrows × ncols` matrix stored in `data` with the given [`Layout`] into a
/// [`faer::Mat`] (the checks of [`mat_view_from_slice`], then a copy).
///
/// # Errors
/// [`LinalgError::Empty`] if either dimension is zero, [`LinalgError::DimensionMismatch`] if
/// `data.len() != nrows * ncols` (or the product overflows), [`LinalgError::NonFinite`] naming
/// the row and column of the first NaN/∞ entry (in memory order).
pub fn mat_from_slice(
    data: &[f64],
    nrows: usize,
    ncols: usize,
    layout: Layout,
) -> Result<Mat<f64>> {
    let view = mat_view_from_slice(data, nrows, ncols, layout)?;
    crate::alloc::try_to_owned("copy of the matrix (mat_from_slice)", view)
}

/// A view of the `nrows × ncols` matrix stored in `data` with the given [`Layout`], without a
/// copy (row-major data gives a view with row stride `ncols`, which every routine accepts).
///
/// # Errors
/// As [`mat_from_slice`].
pub fn mat_view_from_slice(
    data: &[f64],
    nrows: usize,
    ncols: usize,
    layout: Layout,
) -> Result<MatRef<'_, f64>> {
    if nrows == 0 || ncols == 0 {
        return Err(LinalgError::Empty {
            what: "matrix data",
            rows: nrows,
            cols: ncols,
        });
    }
    let expected = nrows
        .checked_mul(ncols)
        .ok_or(LinalgError::DimensionMismatch {
            what: "matrix data length (nrows * ncols overflows)",
            expected: usize::MAX,
            got: data.len(),
        })?;
    if data.len() != expected {
        return Err(LinalgError::DimensionMismatch {
            what: "matrix data length vs nrows * ncols",
            expected,
            got: data.len(),
        });
    }
    if let Some(k) = crate::scaling::first_nonfinite(data) {
        let (row, col) = match layout {
            Layout::RowMajor => (k / ncols, k % ncols),
            Layout::ColMajor => (k % nrows, k / nrows),
        };
        return Err(LinalgError::NonFinite {
            what: "matrix data",
            row,
            col,
            value: data[k],
        });
    }
    Ok(match layout {
        Layout::RowMajor => MatRef::from_row_major_slice(data, nrows, ncols),
        Layout::ColMajor => MatRef::from_column_major_slice(data, nrows, ncols),
    })
}

/// Checks that every entry of `a` is finite; on failure names the first offending entry
/// (column by column) with its row and column.
///
/// # Errors
/// [`LinalgError::NonFinite`].
pub fn check_finite(a: MatRef<'_, f64>, what: &'static str) -> Result<()> {
    // Detection in memory order (contiguous columns, or contiguous rows of a row-major view):
    // an OR-reduction without early exit, which vectorizes; a strided walk over a 32 MB
    // row-major matrix costs 6× more. Only when it finds something, the search below in column
    // order names the first offending entry.
    let contiguous = if a.row_stride() == 1 {
        Some(a)
    } else if a.col_stride() == 1 {
        Some(a.transpose())
    } else {
        None
    };
    if let Some(t) = contiguous {
        let clean = (0..t.ncols()).all(|j| {
            t.col(j).try_as_col_major().is_some_and(|c| {
                crate::scaling::abs_bits_max(c.as_slice()) < crate::scaling::INF_BITS
            })
        });
        if clean {
            return Ok(());
        }
    }
    for j in 0..a.ncols() {
        let col = a.col(j);
        for i in 0..a.nrows() {
            let v = col[i];
            if !v.is_finite() {
                return Err(LinalgError::NonFinite {
                    what,
                    row: i,
                    col: j,
                    value: v,
                });
            }
        }
    }
    Ok(())
}

/// Relative tolerance of the symmetry check of the symmetric routines: `a` is accepted when
/// `|a[i,j] − a[j,i]| ≤ SYMMETRY_RTOL · max|a|`, and then its symmetric part `(a + aᵀ)/2` is
/// used. Finite-difference Hessians are symmetric only to about this accuracy (documented to
/// users at [`LinalgError::NotSymmetric`]).
pub(crate) const SYMMETRY_RTOL: f64 = 1e-6;

/// Non-empty and finite.
pub(crate) fn check_matrix(a: MatRef<'_, f64>, what: &'static str) -> Result<()> {
    check_shape(a, what)?;
    check_finite(a, what)
}

/// Non-empty, square and finite.
pub(crate) fn check_square(a: MatRef<'_, f64>, what: &'static str) -> Result<()> {
    check_square_shape(a, what)?;
    check_finite(a, what)
}

/// Non-empty and square (finiteness not checked).
pub(crate) fn check_square_shape(a: MatRef<'_, f64>, what: &'static str) -> Result<()> {
    check_shape(a, what)?;
    if a.nrows() != a.ncols() {
        return Err(LinalgError::DimensionMismatch {
            what: "columns of a square matrix (must equal its rows)",
            expected: a.nrows(),
            got: a.ncols(),
        });
    }
    Ok(())
}

/// Non-empty (finiteness not checked).
pub(crate) fn check_shape(a: MatRef<'_, f64>, what: &'static str) -> Result<()> {
    if a.nrows() == 0 || a.ncols() == 0 {
        return Err(LinalgError::Empty {
            what,
            rows: a.nrows(),
            cols: a.ncols(),
        });
    }
    Ok(())
}

/// Square, finite and symmetric to [`SYMMETRY_RTOL`]; returns the symmetric part. The input is
/// first copied column by column (contiguous copies when `a` has unit row stride), then one
/// pass over `TILE × TILE` blocks of the copy checks each pair `(i, j)`, `(j, i)` and writes the
/// average into both only where they differ (for an exactly symmetric input it writes nothing:
/// the strided half of the work is then reads that stay in cache).
pub(crate) fn symmetric_part(a: MatRef<'_, f64>, what: &'static str) -> Result<Mat<f64>> {
    const TILE: usize = 64;
    check_square(a, what)?;
    let n = a.nrows();
    // the tolerance needs max|a|: one more pass over `a`, made only once an unequal pair shows
    let mut tol: Option<f64> = None;
    let mut tolerance = || {
        *tol.get_or_insert_with(|| {
            let mut amax = 0.0f64;
            for j in 0..n {
                let c = a.col(j);
                for i in 0..n {
                    amax = amax.max(c[i].abs());
                }
            }
            SYMMETRY_RTOL * amax
        })
    };
    // a row-major view (unit column stride) is copied through its transpose, a contiguous copy
    // instead of a strided one: the symmetric part is the same (each pair's average is
    // symmetric in the two entries), and so is the reported first bad pair
    const COPY: &str = "copy of the symmetric matrix (its symmetric part)";
    let mut out = if a.row_stride() != 1 && a.col_stride() == 1 {
        crate::alloc::try_to_owned(COPY, a.transpose())?
    } else {
        crate::alloc::try_to_owned(COPY, a)?
    };
    let mut first_bad: Option<(usize, usize)> = None;
    for jb in (0..n).step_by(TILE) {
        let je = (jb + TILE).min(n);
        for ib in (jb..n).step_by(TILE) {
            let ie = (ib + TILE).min(n);
            for j in jb..je {
                for i in ib.max(j)..ie {
                    let (l, u) = (out[(i, j)], out[(j, i)]);
                    if l.to_bits() == u.to_bits() {
                        continue;
                    }
                    if (l - u).abs() > tolerance() {
                        // report the bad pair with the smallest (column, row) in column order
                        let cand = (j, i);
                        if first_bad.is_none_or(|b| cand < b) {
                            first_bad = Some(cand);
                        }
                    }
                    let v = 0.5 * (l + u);
                    out[(i, j)] = v;
                    out[(j, i)] = v;
                }
            }
        }
    }
    if let Some((j, i)) = first_bad {
        return Err(LinalgError::NotSymmetric {
            what,
            row: j,
            col: i,
            upper: a[(j, i)],
            lower: a[(i, j)],
        });
    }
    Ok(out)
}

/// A symmetric matrix that is either the caller's (exactly symmetric, unit row stride) or an
/// owned symmetric part.
pub(crate) enum SymView<'a> {
    /// The input itself.
    Borrowed(MatRef<'a, f64>),
    /// Its symmetric part `(A + Aᵀ)/2`.
    Owned(Mat<f64>),
}

impl SymView<'_> {
    /// The matrix.
    pub(crate) fn as_ref(&self) -> MatRef<'_, f64> {
        match self {
            SymView::Borrowed(a) => *a,
            SymView::Owned(m) => m.as_ref(),
        }
    }
}

/// Square, finite and symmetric to [`SYMMETRY_RTOL`], like [`symmetric_part`], but without a
/// copy when it can be avoided: an exactly symmetric `a` with unit row stride (the usual case)
/// is returned as is (its symmetric part is itself), anything else as the owned symmetric part.
/// The exactness test walks `TILE × TILE` blocks, stops at the first unequal pair, reads `a`
/// once and writes nothing (allocating and first-touching a 32 MB copy at n = 2000 costs
/// 25–30 ms on the development VM).
pub(crate) fn symmetric_view<'a>(a: MatRef<'a, f64>, what: &'static str) -> Result<SymView<'a>> {
    const TILE: usize = 64;
    check_square(a, what)?;
    let n = a.nrows();
    let exact = a.row_stride() == 1
        && (0..n).step_by(TILE).all(|jb| {
            let je = (jb + TILE).min(n);
            (jb..n).step_by(TILE).all(|ib| {
                let ie = (ib + TILE).min(n);
                (jb..je)
                    .all(|j| (ib.max(j)..ie).all(|i| a[(i, j)].to_bits() == a[(j, i)].to_bits()))
            })
        });
    if exact {
        Ok(SymView::Borrowed(a))
    } else {
        symmetric_part(a, what).map(SymView::Owned)
    }
}

/// Non-empty and finite vector.
pub(crate) fn check_vec(v: &[f64], what: &'static str) -> Result<()> {
    if v.is_empty() {
        return Err(LinalgError::Empty {
            what,
            rows: 0,
            cols: 1,
        });
    }
    if let Some(k) = crate::scaling::first_nonfinite(v) {
        return Err(LinalgError::NonFinite {
            what,
            row: k,
            col: 0,
            value: v[k],
        });
    }
    Ok(())
}

/// Finite, strictly positive vector of length `n`.
pub(crate) fn check_positive_vec(v: &[f64], n: usize, what: &'static str) -> Result<()> {
    if v.len() != n {
        return Err(LinalgError::DimensionMismatch {
            what,
            expected: n,
            got: v.len(),
        });
    }
    check_vec(v, what)?;
    if let Some(k) = v.iter().position(|&x| x <= 0.0) {
        return Err(LinalgError::InvalidArgument {
            name: what,
            reason: format!("entry {k} is {} but must be positive", v[k]),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-major views (unit column stride, as the C ABI passes row-major buffers) take the
    /// contiguous paths of `check_finite` and `symmetric_part` and get the same answers as the
    /// column-major matrix: the first non-finite entry in column order (not memory order), the
    /// bitwise same symmetric part, the same first bad pair.
    #[test]
    fn row_major_views_get_the_same_checks_and_symmetric_part() {
        let (r, c) = (5, 4);
        let mut data: Vec<f64> = (0..r * c).map(|k| k as f64).collect();
        data[2] = f64::INFINITY; // (0, 2): first in memory order
        data[12] = f64::NAN; // (3, 0): first in column order
        let view = MatRef::from_row_major_slice(&data, r, c);
        assert!(matches!(
            check_finite(view, "v"),
            Err(LinalgError::NonFinite { row: 3, col: 0, .. })
        ));
        let clean: Vec<f64> = (0..r * c).map(|k| k as f64).collect();
        assert!(check_finite(MatRef::from_row_major_slice(&clean, r, c), "v").is_ok());

        let n = 150;
        let mut b = Mat::<f64>::from_fn(n, n, |i, j| {
            1.0 / (1.0 + i as f64 + j as f64) + ((i * j) % 7) as f64
        });
        b[(n - 1, n - 3)] += 1e-15;
        b[(4, 77)] -= 3e-16;
        let row_major: Vec<f64> = (0..n * n).map(|k| b[(k / n, k % n)]).collect();
        let rm = MatRef::from_row_major_slice(&row_major, n, n);
        let want = symmetric_part(b.as_ref(), "b").expect("within tolerance");
        let got = symmetric_part(rm, "b").expect("within tolerance");
        for j in 0..n {
            for i in 0..n {
                assert_eq!(got[(i, j)].to_bits(), want[(i, j)].to_bits(), "({i}, {j})");
            }
        }
        b[(90, 3)] += 1.0;
        b[(20, 60)] -= 1.0;
        let row_major: Vec<f64> = (0..n * n).map(|k| b[(k / n, k % n)]).collect();
        let rm = MatRef::from_row_major_slice(&row_major, n, n);
        let e_cm = symmetric_part(b.as_ref(), "b").expect_err("asymmetric");
        let e_rm = symmetric_part(rm, "b").expect_err("asymmetric");
        assert!(
            matches!(
                e_cm,
                LinalgError::NotSymmetric {
                    row: 3,
                    col: 90,
                    ..
                }
            ),
            "{e_cm:?}"
        );
        assert_eq!(format!("{e_cm:?}"), format!("{e_rm:?}"));
    }

    /// The copy-free path is taken exactly when it is valid, and both paths give the symmetric
    /// part: an exactly symmetric column-major matrix is borrowed; a transposed (row-stride ≠ 1)
    /// view or one with rounding-level asymmetry is copied and symmetrized; errors are
    /// `symmetric_part`'s.
    #[test]
    fn symmetric_view_borrows_only_exactly_symmetric_unit_stride_input() {
        let n = 150; // more than two 64-tiles, with a ragged last tile
        let a = Mat::<f64>::from_fn(n, n, |i, j| {
            1.0 / (1.0 + i as f64 + j as f64) + (i * j % 7) as f64
        });
        let v = symmetric_view(a.as_ref(), "a").expect("symmetric");
        assert!(matches!(v, SymView::Borrowed(_)));
        assert_eq!(v.as_ref(), a.as_ref());
        let v = symmetric_view(a.as_ref().transpose(), "a").expect("symmetric");
        assert!(matches!(v, SymView::Owned(_)));
        assert_eq!(v.as_ref(), a.as_ref());
        // asymmetry below the tolerance, in the last tile: owned, averaged
        let mut b = a.clone();
        b[(n - 1, n - 3)] += 1e-15;
        let v = symmetric_view(b.as_ref(), "b").expect("within tolerance");
        assert!(matches!(v, SymView::Owned(_)));
        let want = 0.5 * (b[(n - 1, n - 3)] + b[(n - 3, n - 1)]);
        assert_eq!(v.as_ref()[(n - 1, n - 3)].to_bits(), want.to_bits());
        assert_eq!(v.as_ref()[(n - 3, n - 1)].to_bits(), want.to_bits());
        // beyond it: the same error as symmetric_part
        b[(n - 1, n - 3)] += 1.0;
        assert!(matches!(
            symmetric_view(b.as_ref(), "b"),
            Err(LinalgError::NotSymmetric {
                row: 147,
                col: 149,
                ..
            })
        ));
        let mut c = a.clone();
        c[(3, 4)] = f64::NAN;
        assert!(matches!(
            symmetric_view(c.as_ref(), "c"),
            Err(LinalgError::NonFinite { row: 3, col: 4, .. })
        ));
    }
}
