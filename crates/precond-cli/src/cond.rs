//! `precond cond FILE`: conditioning diagnostics of a user's matrix (THEORY.md §1–3).
//!
//! All numbers come from `precond-linalg`: κ₂ from the singular values ([`cond2`]), the exact
//! κ₁ ([`cond1`]) and the Hager–Higham estimate ([`cond_estimate_lu`], or [`cond_estimate_spd`]
//! for positive definite input), row and column norm spreads, Van der Sluis' Theorem 2 for row
//! equilibration (and for column equilibration on `Aᵀ`), and for symmetric input the spectrum
//! ([`sym_spectrum`]) and Jacobi scaling ([`sym_equilibrate`]).

use std::fmt::Write as _;
use std::path::Path;

use faer::Mat;
use precond_linalg::{
    Cond2, Layout, col_norms, cond_estimate_lu, cond_estimate_spd, cond1, cond2, mat_from_slice,
    row_norms, sym_equilibrate, sym_spectrum, van_der_sluis_bound,
};
use serde::Serialize;

use crate::error::CliError;
use crate::io::{DenseMatrix, Format};

/// Van der Sluis' Theorem 2 applied to rows (`D_0 A`) or columns (`A D_0`, Theorem 2 on `Aᵀ`).
#[derive(Debug, Clone, Serialize)]
pub struct Equilibrated {
    /// `κ₂` after equilibration (every row, resp. column, of unit norm).
    pub kappa2: f64,
    /// `κ₂(A) / κ₂(equilibrated)`: how much the scaling improved the condition number.
    pub gain: f64,
    /// `sqrt(m)` for rows, `sqrt(n)` for columns: Theorem 2's factor.
    pub sqrt_dim: f64,
    /// `κ₂(equilibrated)/sqrt_dim`: no diagonal scaling can do better than this.
    pub best_possible_lower_bound: f64,
}

/// The symmetric-input part of the diagnostics.
#[derive(Debug, Clone, Serialize)]
pub struct Symmetric {
    /// Smallest eigenvalue.
    pub lambda_min: f64,
    /// Largest eigenvalue.
    pub lambda_max: f64,
    /// `λ_min > τ`, `τ = n ε max|λ|`.
    pub positive_definite: bool,
    /// `λ_max/λ_min` when positive definite, `null` (infinite) otherwise.
    pub kappa: f64,
    /// The smallest eigenvalue above `τ` (`null` if none).
    pub smallest_positive: Option<f64>,
    /// `λ_max / smallest_positive` (THEORY.md §1, singular Hessians).
    pub kappa_positive: f64,
    /// The relative tolerance `n ε`.
    pub rel_tol: f64,
    /// `κ₂(D H D)` with `D = diag(1/sqrt(h_ii))` (Jacobi scaling), when the diagonal is positive.
    pub jacobi_scaled_kappa2: Option<f64>,
}

/// Everything `precond cond` reports. Infinite values (singular input) serialize as `null`.
#[derive(Debug, Clone, Serialize)]
pub struct CondReport {
    /// The file name given.
    pub file: String,
    /// The format it was read as.
    pub format: &'static str,
    /// Rows.
    pub nrows: usize,
    /// Columns.
    pub ncols: usize,
    /// True when square and symmetric (declared, or to `8 ε max|a|`).
    pub symmetric: bool,
    /// `κ₂ = σ_max/σ_min` with the extreme singular values.
    pub cond2: Cond2,
    /// Exact `κ₁ = ‖A‖₁‖A⁻¹‖₁` (square, nonsingular input only).
    pub kappa1: Option<f64>,
    /// The Hager–Higham estimate of `κ₁` (a lower bound on it), square input only.
    pub kappa1_estimate: Option<f64>,
    /// Which factorization the estimate used (`"LU"` or `"Cholesky"`).
    pub kappa1_estimate_factor: Option<&'static str>,
    /// `max ‖a_i‖ / min ‖a_i‖` over rows (`null` if a row is zero).
    pub row_norm_spread: f64,
    /// `max / min` column norm.
    pub col_norm_spread: f64,
    /// Row equilibration (needs `m ≥ n`, full column rank).
    pub row_equilibration: Option<Equilibrated>,
    /// Column equilibration (needs `n ≥ m`, full row rank).
    pub col_equilibration: Option<Equilibrated>,
    /// Eigen-diagnostics for symmetric input.
    pub spectrum: Option<Symmetric>,
}

fn spread(v: &[f64]) -> f64 {
    let hi = v.iter().fold(0.0f64, |m, &x| m.max(x));
    let lo = v.iter().fold(f64::INFINITY, |m, &x| m.min(x));
    if lo > 0.0 { hi / lo } else { f64::INFINITY }
}

fn equilibrated(a: &Mat<f64>, kappa_a: f64) -> Option<Equilibrated> {
    let v = van_der_sluis_bound(a.as_ref()).ok()?;
    Some(Equilibrated {
        kappa2: v.kappa_d0a,
        gain: kappa_a / v.kappa_d0a,
        sqrt_dim: v.sqrt_m,
        best_possible_lower_bound: v.lower_bound,
    })
}

/// Computes the diagnostics of a matrix read from `file`.
///
/// # Errors
/// [`CliError::Linalg`] when a diagnostic fails on valid input (faer's SVD not converging).
pub fn diagnose(m: &DenseMatrix, file: &Path, format: Format) -> Result<CondReport, CliError> {
    let a = mat_from_slice(&m.data, m.nrows, m.ncols, Layout::ColMajor)
        .map_err(CliError::linalg("reading the matrix"))?;
    let c2 = cond2(a.as_ref()).map_err(CliError::linalg("2-norm condition number"))?;
    let symmetric = m.is_symmetric();
    let square = m.nrows == m.ncols;
    let spectrum = if symmetric {
        let s = sym_spectrum(a.as_ref()).map_err(CliError::linalg("symmetric spectrum"))?;
        let jacobi = sym_equilibrate(a.as_ref())
            .ok()
            .and_then(|e| cond2(e.scaled.as_ref()).ok())
            .map(|c| c.kappa);
        Some(Symmetric {
            lambda_min: s.lambda_min,
            lambda_max: s.lambda_max,
            positive_definite: s.positive_definite,
            kappa: s.kappa,
            smallest_positive: s.smallest_positive,
            kappa_positive: s.kappa_positive,
            rel_tol: s.rel_tol,
            jacobi_scaled_kappa2: jacobi,
        })
    } else {
        None
    };
    let (kappa1, est, factor) = if square && !c2.rank_deficient {
        let k1 = cond1(a.as_ref()).ok().filter(|k| k.is_finite());
        let pd = spectrum.as_ref().is_some_and(|s| s.positive_definite);
        let (e, f) = if pd {
            (cond_estimate_spd(a.as_ref()).ok(), "Cholesky")
        } else {
            (cond_estimate_lu(a.as_ref()).ok(), "LU")
        };
        (k1, e.map(|e| e.kappa1_estimate), e.map(|_| f))
    } else {
        (None, None, None)
    };
    let row_equilibration = if m.nrows >= m.ncols {
        equilibrated(&a, c2.kappa)
    } else {
        None
    };
    let col_equilibration = if m.ncols >= m.nrows {
        equilibrated(&a.transpose().to_owned(), c2.kappa)
    } else {
        None
    };
    Ok(CondReport {
        file: file.display().to_string(),
        format: match format {
            Format::Mtx => "Matrix Market",
            Format::Npy => "NumPy .npy",
            Format::Csv => "CSV",
        },
        nrows: m.nrows,
        ncols: m.ncols,
        symmetric,
        cond2: c2,
        kappa1,
        kappa1_estimate: est,
        kappa1_estimate_factor: factor,
        row_norm_spread: spread(&row_norms(a.as_ref())),
        col_norm_spread: spread(&col_norms(a.as_ref())),
        row_equilibration,
        col_equilibration,
        spectrum,
    })
}

/// Formats a number for the terminal: 6 significant digits, `∞` for infinity.
// v != 0.0 is an exact test for zero, wanted here (log10 of 0 is -inf).
#[allow(clippy::float_cmp)]
pub fn num(v: f64) -> String {
    if v.is_infinite() {
        "∞".into()
    } else if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.5e}")
    } else {
        let digits = v.abs().log10().floor() as i32;
        let decimals = (5 - digits).max(0) as usize;
        let s = format!("{v:.decimals$}");
        if !s.contains('.') {
            return s;
        }
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

impl CondReport {
    /// The human-readable text `precond cond` prints.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "file                  {} ({})", self.file, self.format);
        let _ = writeln!(
            o,
            "shape                 {} x {}{}",
            self.nrows,
            self.ncols,
            if self.symmetric { ", symmetric" } else { "" }
        );
        let c = &self.cond2;
        let _ = writeln!(
            o,
            "kappa2 = smax/smin    {}   (sigma_max {}, sigma_min {}){}",
            num(c.kappa),
            num(c.sigma_max),
            num(c.sigma_min),
            if c.rank_deficient {
                "  numerically rank deficient"
            } else {
                ""
            }
        );
        if let Some(k1) = self.kappa1 {
            let _ = writeln!(o, "kappa1 exact          {}", num(k1));
        }
        if let (Some(e), Some(f)) = (self.kappa1_estimate, self.kappa1_estimate_factor) {
            let _ = writeln!(
                o,
                "kappa1 estimate       {}   (Hager-Higham on {f}, a lower bound)",
                num(e)
            );
        }
        let _ = writeln!(
            o,
            "row norm spread       {}   (max/min row 2-norm)",
            num(self.row_norm_spread)
        );
        let _ = writeln!(
            o,
            "column norm spread    {}   (max/min column 2-norm)",
            num(self.col_norm_spread)
        );
        for (name, e, d) in [
            ("row", &self.row_equilibration, "m"),
            ("column", &self.col_equilibration, "n"),
        ] {
            if let Some(e) = e {
                let _ = writeln!(
                    o,
                    "{name:<6} equilibrated  kappa2 {}   gain x{}   (Van der Sluis: no diagonal {name} scaling beats {} = kappa2/sqrt({d}))",
                    num(e.kappa2),
                    num(e.gain),
                    num(e.best_possible_lower_bound)
                );
            }
        }
        if let Some(s) = &self.spectrum {
            let _ = writeln!(
                o,
                "eigenvalues           [{}, {}]",
                num(s.lambda_min),
                num(s.lambda_max)
            );
            let _ = writeln!(
                o,
                "positive definite     {}   (tolerance {} * max|lambda|)",
                if s.positive_definite { "yes" } else { "no" },
                num(s.rel_tol)
            );
            let _ = writeln!(o, "kappa = lmax/lmin     {}", num(s.kappa));
            match s.smallest_positive {
                Some(p) => {
                    let _ = writeln!(
                        o,
                        "smallest positive     {}   (lmax/that = {})",
                        num(p),
                        num(s.kappa_positive)
                    );
                }
                None => {
                    let _ = writeln!(o, "smallest positive     none");
                }
            }
            if let Some(j) = s.jacobi_scaled_kappa2 {
                let _ = writeln!(
                    o,
                    "Jacobi scaled kappa2  {}   (D H D, D = diag(1/sqrt(h_ii)))",
                    num(j)
                );
            }
        }
        o
    }
}
