//! Tuning values of the dense routines as `*Params` structs with [`Default`] (faer's
//! `LltParams` style): the plain functions ([`sym_spectrum`](crate::sym_spectrum),
//! [`cond2`](crate::cond2), [`sym_cond()`](fn@crate::sym_cond), …) use the defaults, the
//! `*_with_params` variants take a value a user has tuned. The defaults were measured on the
//! 2-core machines of `BENCHMARKS.md` ("Two-stage reductions", "Crossovers per CPU family" and the
//! `sym_cond` rows); the two-stage crossovers depend on the CPU family, so their defaults do too
//! (AVX-512: the Intel Xeon measured in sessions 9–12, AMD with AVX-512 (Zen 4) measured in
//! session 14 for the symmetric and `cond2` crossovers; otherwise the AMD EPYC with AVX2).
//!
//! ```
//! use precond_linalg::{SymSpectrumParams, mat_from_slice, Layout, sym_spectrum_with_params};
//!
//! let h = mat_from_slice(&[2.0, 1.0, 1.0, 3.0], 2, 2, Layout::RowMajor)?;
//! // force the two-stage reduction even for a 2 × 2 matrix, with a narrow band
//! let mut params = SymSpectrumParams::default();
//! params.two_stage_min_n = 0;
//! params.band_width = 1;
//! let s = sym_spectrum_with_params(h.as_ref(), 2.0 * f64::EPSILON, &params)?;
//! assert!((s.lambda_max - (2.5 + 1.25f64.sqrt())).abs() < 1e-14);
//! # Ok::<(), precond_linalg::LinalgError>(())
//! ```

use crate::error::{LinalgError, Result};

/// Default of [`SymSpectrumParams::two_stage_min_n`] on CPUs without AVX-512 (AMD EPYC, AVX2).
const SYM_TWO_STAGE_MIN_N: usize = 1800;
/// Default of [`SymSpectrumParams::two_stage_min_n`] on CPUs with AVX-512F (Intel Xeon),
/// measured on the 2-core Intel Xeon (Ice Lake, family 6 model 106) of session 18 with the
/// blocked reduction's two-thread team and 16-column panels (`sym_spectrum_with_params` forced
/// on each path from a thread outside the pool, interleaved, median of 3–5 rounds): two-stage /
/// blocked 2.06 at n = 1500, 1.63 at 2000, 1.52 at 2500, 1.30 at 3000, 1.13 at 3500, 0.92 and
/// 1.07 at 4000 (two runs). It was 1900 (session 12, before the team).
const SYM_TWO_STAGE_MIN_N_AVX512: usize = 4000;
/// Default of [`SymSpectrumParams::two_stage_min_n`] on AMD CPUs with AVX-512F (Zen 4),
/// measured on the 2-core AMD EPYC of session 14 after the blocked reduction's products moved
/// to a two-thread team (`sytrd::Team`): two-stage / blocked 1.72 at n = 1500, 1.46 at 2000,
/// 1.28 at 2200, 0.94 at 2500 (twice), 0.92 at 3000.
const SYM_TWO_STAGE_MIN_N_AMD_AVX512: usize = 2400;
/// Default of [`SvdParams::two_stage_min_n`] on CPUs without AVX-512 (AMD EPYC, AVX2).
const SVD_TWO_STAGE_MIN_N: usize = 1280;
/// Default of [`SvdParams::two_stage_min_n`] on CPUs with AVX-512F (Intel Xeon).
const SVD_TWO_STAGE_MIN_N_AVX512: usize = 256;
/// Default of [`Cond2Params::svd`]`.two_stage_min_n` on CPUs with AVX-512F: `cond2` needs only
/// the bidiagonal (then two bisections), so its crossover is that of the two bidiagonalizations
/// alone. Measured on the 2-core Intel Xeon of session 12, `cond2_with_params` forced on each
/// path, median of 5 interleaved rounds, one-stage on one thread below
/// `dense::BIDIAG_PAR_MIN_N`: two-stage / one-stage 1.40 at n = 200, 1.16 at 250,
/// 1.20 at 300, 1.08 at 400, 0.95 at 500, 0.59 at 700, 0.43 at 1000. Without AVX-512 the
/// crossover of the full SVD ([`SVD_TWO_STAGE_MIN_N`]) is kept (not re-measured: no AMD machine
/// that session).
const COND2_TWO_STAGE_MIN_N_AVX512: usize = 500;
/// Default of [`Cond2Params::svd`]`.two_stage_min_n` on AMD CPUs with AVX-512F (Zen 4: 512-bit
/// instructions on 256-bit units, 1 MiB of L2 per core). Measured on the 2-core AMD EPYC (Zen 4)
/// of session 14 as [`COND2_TWO_STAGE_MIN_N_AVX512`]: two-stage / one-stage 1.41 at n = 300,
/// 1.28 at 400, 1.09 at 500, 1.14 at 600, 1.23–1.30 at 700, 1.15 at 800, 1.08 at 900,
/// 0.80–1.09 at 1000, 0.96 at 1200, 0.55 at 1500.
const COND2_TWO_STAGE_MIN_N_AMD_AVX512: usize = 1000;

/// Whether the CPU has AVX-512F: the family whose two-stage crossovers are the `*_AVX512`
/// defaults (detected once by the standard library, then a cached load).
pub(crate) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
/// Whether the CPU's vendor is AMD (`AuthenticAMD` in CPUID leaf 0): with AVX-512F, the Zen 4
/// family, whose `cond2` crossover differs from the Intel Xeon's.
pub(crate) fn amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AMD.get_or_init(|| {
            let r = std::arch::x86_64::__cpuid(0);
            [r.ebx, r.edx, r.ecx] == [0x6874_7541, 0x6974_6e65, 0x444d_4163]
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
/// Default half-bandwidth of both two-stage reductions.
const TWO_STAGE_BAND_WIDTH: usize = 32;
/// Default of [`SymCondParams::krylov_min_n`].
const SYM_COND_KRYLOV_MIN_N: usize = 256;
/// Default of [`SymCondParams::rel_tol`].
const SYM_COND_REL_TOL: f64 = 1e-11;
/// Default of [`SymCondParams::max_iter`].
const SYM_COND_MAX_ITER: usize = 400;
/// Default of [`Cond2Params::rank_rtol_factor`].
const RANK_RTOL_FACTOR: f64 = 1.0;

/// How the symmetric eigenvalue routines reduce a matrix to tridiagonal form:
/// [`sym_spectrum`](crate::sym_spectrum), [`sym_extremes`](crate::sym_extremes), the dense path
/// of [`sym_cond()`](fn@crate::sym_cond) and the preconditioned spectra
/// ([`precond_cond_diag`](crate::precond_cond_diag), …) use [`SymSpectrumParams::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SymSpectrumParams {
    /// Dimension `n` from which on the two-stage tridiagonalization
    /// ([`kernel::sym_eigenvalues_two_stage`](crate::kernel::sym_eigenvalues_two_stage)) is used;
    /// below it the blocked one-stage Householder reduction
    /// ([`kernel::sym_eigenvalues_blocked`](crate::kernel::sym_eigenvalues_blocked), LAPACK
    /// `DSYTRD`). Default 4000 with AVX-512F on Intel: on the 2-core Intel Xeon (Ice Lake) of
    /// `BENCHMARKS.md` (session 18, the blocked reduction's products on a two-thread team, 16-column
    /// panels; `sym_spectrum_with_params` forced on each path, median of 3–5 interleaved calls)
    /// the two-stage path takes 2.06× the blocked reduction's time at n = 1500, 1.63× at 2000,
    /// 1.52× at 2500, 1.30× at 3000, 1.13× at 3500 and 0.92–1.07× at 4000 (session 12, before
    /// the team: 1.56× at 1000, 0.98× at 2000, 0.85× at 3000, hence 1900 then). Default 2400 on
    /// AMD CPUs with AVX-512F (Zen 4): on the AMD EPYC of session 14, 1.72× at 1500, 1.46× at
    /// 2000, 1.28× at 2200, 0.94× at 2500 and 0.92× at 3000 with the team (before it 0.92–1.22×
    /// at 1800 and 0.96–1.13× at 2000, when the Intel default applied). Default 1800 on CPUs
    /// without AVX-512:
    /// measured on the 2-core AVX2 machine (AMD EPYC) against faer's unblocked one-stage
    /// reduction (faster at n = 1000 and 1500, the two-stage path at n = 2000); the blocked
    /// reduction is faster than faer's, so the crossover there is at least that (not
    /// re-measured: no AMD machine since).
    pub two_stage_min_n: usize,
    /// Half-bandwidth `b ≥ 1` of the intermediate band matrix of the two-stage reduction
    /// (number of sub-diagonals). Default 32 (measured at n = 500…2000; 24–48 are within a few
    /// percent).
    pub band_width: usize,
}

impl Default for SymSpectrumParams {
    fn default() -> Self {
        Self {
            two_stage_min_n: if avx512() && amd() {
                SYM_TWO_STAGE_MIN_N_AMD_AVX512
            } else if avx512() {
                SYM_TWO_STAGE_MIN_N_AVX512
            } else {
                SYM_TWO_STAGE_MIN_N
            },
            band_width: TWO_STAGE_BAND_WIDTH,
        }
    }
}

impl SymSpectrumParams {
    pub(crate) fn check(&self) -> Result<()> {
        check_band_width(self.band_width)
    }
}

/// How the singular values are computed by [`singular_values`](crate::singular_values) and
/// [`cond2`](crate::cond2) ([`SvdParams::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SvdParams {
    /// `min(m, n)` from which on the two-stage bidiagonalization
    /// ([`kernel::singular_values_two_stage`](crate::kernel::singular_values_two_stage)) is
    /// used; below it faer's SVD without vectors. Default 1280 on CPUs without AVX-512 (measured on
    /// the AMD EPYC of `BENCHMARKS.md`: faer faster at n = 1000, the two-stage path at n = 1500
    /// and 2000); 256 with AVX-512F (the Intel Xeon of `BENCHMARKS.md`: the two-stage path takes
    /// 1.45× faer's time at n = 200, 0.96× at 250, 0.88× at 300 and 0.55–0.71× at 1000–1400).
    pub two_stage_min_n: usize,
    /// Bandwidth `b ≥ 1` of the intermediate upper band matrix of the two-stage reduction
    /// (number of super-diagonals). Default 32, as [`SymSpectrumParams::band_width`].
    pub band_width: usize,
}

impl Default for SvdParams {
    fn default() -> Self {
        Self {
            two_stage_min_n: if avx512() {
                SVD_TWO_STAGE_MIN_N_AVX512
            } else {
                SVD_TWO_STAGE_MIN_N
            },
            band_width: TWO_STAGE_BAND_WIDTH,
        }
    }
}

impl SvdParams {
    pub(crate) fn check(&self) -> Result<()> {
        check_band_width(self.band_width)
    }
}

/// Parameters of [`cond2_with_params`](crate::cond2_with_params).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Cond2Params {
    /// A matrix is declared numerically rank deficient (`κ = ∞`) when
    /// `σ_min ≤ rank_rtol_factor · max(m, n) · ε · σ_max` (`ε = f64::EPSILON`); dimensionless,
    /// finite and `≥ 0`. Default 1, the default of `numpy.linalg.matrix_rank` and of
    /// LAPACK-based rank decisions (a singular value below `ε σ_max` has no correct digits).
    pub rank_rtol_factor: f64,
    /// How the bidiagonal whose extreme singular values give `κ` is computed. Default:
    /// [`SvdParams::default`], except that on CPUs with AVX-512F the two-stage reduction starts
    /// at `min(m, n) = 500` on Intel and 1000 on AMD (Zen 4) (the crossovers of the reductions
    /// alone, measured on each family; the full SVD's 256 includes the cost of all singular
    /// values).
    pub svd: SvdParams,
}

impl Default for Cond2Params {
    fn default() -> Self {
        let mut svd = SvdParams::default();
        if avx512() {
            svd.two_stage_min_n = if amd() {
                COND2_TWO_STAGE_MIN_N_AMD_AVX512
            } else {
                COND2_TWO_STAGE_MIN_N_AVX512
            };
        }
        Self {
            rank_rtol_factor: RANK_RTOL_FACTOR,
            svd,
        }
    }
}

impl Cond2Params {
    pub(crate) fn check(&self) -> Result<()> {
        if !(self.rank_rtol_factor.is_finite() && self.rank_rtol_factor >= 0.0) {
            return Err(LinalgError::InvalidArgument {
                name: "rank_rtol_factor",
                reason: format!("{} must be finite and non-negative", self.rank_rtol_factor),
            });
        }
        self.svd.check()
    }
}

/// Parameters of [`sym_cond_with_params`](crate::sym_cond_with_params).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SymCondParams {
    /// Dimension `n` from which on the Cholesky + Lanczos path is tried; below it the dense
    /// path (tridiagonalization and bisection). Default 256.
    pub krylov_min_n: usize,
    /// Relative accuracy targeted for each extreme eigenvalue by the Lanczos path (a Ritz value
    /// `θ` is accepted when its error bound `min(r, r²/gap) ≤ rel_tol · θ`); dimensionless,
    /// finite and `> 0`. Default `10⁻¹¹`, so that `κ` is accurate to about `2 · 10⁻¹¹ < 10⁻¹⁰` relative
    /// (above the rounding floor `~ε κ`).
    pub rel_tol: f64,
    /// Lanczos steps allowed per extreme eigenvalue (`≥ 1`) before the dense path is used
    /// instead. Default 400.
    pub max_iter: usize,
    /// The tridiagonalization of the dense path.
    pub spectrum: SymSpectrumParams,
}

impl Default for SymCondParams {
    fn default() -> Self {
        Self {
            krylov_min_n: SYM_COND_KRYLOV_MIN_N,
            rel_tol: SYM_COND_REL_TOL,
            max_iter: SYM_COND_MAX_ITER,
            spectrum: SymSpectrumParams::default(),
        }
    }
}

impl SymCondParams {
    pub(crate) fn check(&self) -> Result<()> {
        if !(self.rel_tol.is_finite() && self.rel_tol > 0.0) {
            return Err(LinalgError::InvalidArgument {
                name: "rel_tol",
                reason: format!("{} must be finite and positive", self.rel_tol),
            });
        }
        if self.max_iter == 0 {
            return Err(LinalgError::InvalidArgument {
                name: "max_iter",
                reason: "must be at least 1".into(),
            });
        }
        self.spectrum.check()
    }
}

/// A band width must be at least 1.
pub(crate) fn check_band_width(band_width: usize) -> Result<()> {
    if band_width == 0 {
        return Err(LinalgError::InvalidArgument {
            name: "band_width",
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}
