//! Blocked one-stage Householder tridiagonalization of a symmetric matrix (LAPACK `DSYTRD` with
//! `UPLO = 'L'` and its panel routine `DLATRD`): `Qᵀ A Q = T` with `Q = H₀ H₁ ⋯ H_{n−2}`,
//! `H_k = I − τ_k v_k v_kᵀ`, `T` tridiagonal.
//!
//! Why not faer's `tridiag_in_place`: it is the unblocked algorithm (LAPACK `DSYTD2`), whose
//! rank-2 update reads *and writes* the whole trailing matrix for every column. Here a panel of
//! `nb` columns is reduced with the trailing matrix left untouched: for each column one
//! symmetric matrix–vector product ([`symv_lower`], the trailing lower triangle read once),
//! corrected by the panel's earlier reflectors through the `W` matrix (`A − V Wᵀ − W Vᵀ` is the
//! partially reduced matrix); then the trailing matrix gets the rank-`2nb` update
//! `A₂₂ ← A₂₂ − V Wᵀ − W Vᵀ` as one matrix–matrix product on its lower triangle (faer's
//! triangular `matmul`, all cores). Half the `4n³/3` flops are then matrix–matrix, and the
//! other half read the matrix instead of reading and writing it.
//!
//! On two threads the whole reduction runs as one [`Team`]: the reducing thread and a spinning
//! helper split every matrix–vector product (the columns of equal triangle area of
//! [`symv_split`]) and every trailing update (the same column split), with one `rayon::join`
//! for the whole reduction instead of one per column and per panel; the results are the same
//! bits as with a join per product.
//!
//! Accuracy: the same reflectors and the same backward error as `DSYTRD` (`T` is `Qᵀ(A + E)Q`
//! with `‖E‖₂ ≤ c(n) ε ‖A‖₂`, `Q` orthogonal to working precision).

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};

use crate::alloc::{try_vec, try_zeros};
use crate::error::Result;
use crate::two_stage::kernels::{axpy, dot, make_householder};
use crate::two_stage::symm::{
    SYMV_PAR_MIN_M, Simd, col, col_mut, symv_columns, symv_lower, symv_split,
};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Panel width of the blocked reduction for an `n × n` matrix: narrow panels while the matrix
/// sits in the caches (the panel's corrections cost `O(n · nb)` per column, the trailing
/// update gains little from a wider rank), LAPACK's 32 from `n = 640` on. Measured on the
/// Intel Xeon (AVX-512) of session 11 (`kernel::sym_eigenvalues_blocked` with every width,
/// interleaved, median of 7–300 calls): best width 8 at n = 100 (0.24 ms against 0.31 at 32),
/// 16 at n = 300 and 500 (3.02 / 9.77 ms against 3.26 / 10.11), 32 at n = 1000 (55.1 ms
/// against 58.2 at 16 and 62.6 at 48).
///
/// On AMD with AVX-512 (Zen 4: 1 MiB of L2 per core) 16 stays the best width from 160 on:
/// measured on the 2-core AMD EPYC of session 15 (same routine, widths interleaved, median of
/// 9–11 rounds, after the register-blocked corrections of [`sub_pairs`]): n = 700 14.3 ms at 16
/// against 16.0 at 32; n = 1000 35.6–42.8 against 40.7–43.4 (24: 38.8–41.2); n = 1500 106.3
/// against 110.1; n = 2000 228.4–231.9 against 242.3–250.6 (12: 231.5, 48: 266.4).
///
/// On the Intel Xeon (AVX-512, Ice Lake, family 6 model 106) of session 18, after the
/// two-thread team and the register-blocked corrections, narrower panels win too (same
/// routine, widths interleaved, median of 7 rounds): n = 300 3.89 ms at 8 against 4.13 at 16
/// and 4.29 at 32; n = 500 11.4 at 8, 12.5 at 16; n = 700 21.9 / 22.3 / 25.0 (8 / 16 / 32);
/// n = 1000 56.2 / 57.9 / 66.4; n = 1500 179.5 / 176.7 / 189.6; n = 2000 398.2 / 395.1 /
/// 420.0 (48: 454.2). So 8 below 640 and 16 from there on.
pub(crate) fn block_for(n: usize) -> usize {
    let avx512 = crate::params::avx512();
    match n {
        0..160 => 8,
        _ if avx512 && crate::params::amd() => 16,
        160..640 if avx512 => 8,
        160..640 => 16,
        _ if avx512 => 16,
        _ => 32,
    }
}

/// What the buffers are called in an out-of-memory error.
const WHAT: &str = "buffers of the blocked tridiagonalization";

/// Buffers of [`sytrd_lower`]: `[V | W]` and `[W | V]` for the trailing update (`n × 2nb`
/// each), the second thread's part of the matrix–vector product, and the `2nb` coefficients
/// of a panel column's corrections.
pub(crate) struct SytrdWork {
    vw: Mat<f64>,
    wv: Mat<f64>,
    nb: usize,
    spare: Vec<f64>,
    coef: Vec<f64>,
}

impl SytrdWork {
    /// Buffers for matrices up to `n × n` reduced in panels of `nb` columns (a panel wider
    /// than the matrix is the whole matrix: `nb` is clamped to `[1, n]`).
    pub(crate) fn new(n: usize, nb: usize) -> Result<Self> {
        let nb = nb.clamp(1, n.max(1));
        Ok(Self {
            vw: try_zeros(WHAT, n, 2 * nb)?,
            wv: try_zeros(WHAT, n, 2 * nb)?,
            nb,
            spare: try_vec(WHAT, n, 0.0)?,
            coef: try_vec(WHAT, 2 * nb, 0.0)?,
        })
    }
}

/// Diagonal `d` (length `n`) and off-diagonal `e` (length `n − 1`) of the tridiagonal matrix
/// orthogonally similar to the symmetric `a` (lower triangle read), by [`sytrd_lower`] in
/// panels of `nb` columns on `par`'s threads; `a` is consumed.
pub(crate) fn sym_tridiagonal_blocked(
    mut a: Mat<f64>,
    nb: usize,
    par: Par,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = a.nrows();
    let mut d = try_vec("tridiagonal diagonal", n, 0.0)?;
    let mut e = try_vec("tridiagonal off-diagonal", n.saturating_sub(1), 0.0)?;
    let mut tau = try_vec("Householder coefficients", n.saturating_sub(1), 0.0)?;
    let mut work = SytrdWork::new(n, nb)?;
    crate::pool::on_pool(par, n, || {
        sytrd_lower(a.as_mut(), &mut d, &mut e, &mut tau, nb, par, &mut work);
    });
    Ok((d, e))
}

/// Reduces the symmetric `a` (`n × n`, lower triangle read, unit row stride) to tridiagonal
/// form in place, `DSYTRD('L')`: on return `d` holds `T`'s diagonal, `e` its off-diagonal, and
/// column `k` of `a` below the subdiagonal holds reflector `v_k`'s essential part
/// (`v_k = (0, …, 0, 1, a[k+2.., k])`, the unit at row `k + 1`) with `τ_k` in `tau[k]`; the
/// subdiagonal holds `e`. Panels of `nb` columns; `work` sized for at least `n` and `nb`.
pub(crate) fn sytrd_lower(
    a: MatMut<'_, f64>,
    d: &mut [f64],
    e: &mut [f64],
    tau: &mut [f64],
    nb: usize,
    par: Par,
    work: &mut SytrdWork,
) {
    let n = a.nrows();
    assert!(
        a.ncols() == n
            && d.len() == n
            && e.len() == n.saturating_sub(1)
            && tau.len() == e.len()
            && (n == 0 || a.row_stride() == 1)
            && work.spare.len() >= n
            && work.vw.nrows() >= n,
        "sytrd_lower: shapes"
    );
    let nb = nb.max(1).min(work.nb);
    if par.degree() >= 2 && n > SYMV_PAR_MIN_M + 1 {
        // the products of every panel and the trailing updates on two threads through one
        // hand-off (a `Team`) instead of a `rayon::join` per column and per panel
        let team = Team::new();
        rayon::join(
            || {
                let _end = TeamEnd(&team);
                reduce(a, d, e, tau, nb, par, Some(&team), work);
            },
            || team.help(),
        );
    } else {
        reduce(a, d, e, tau, nb, par, None, work);
    }
}

/// The panels of [`sytrd_lower`], with the products split over a [`Team`] when there is one,
/// else on the calling thread (the trailing update by faer on `par`'s threads).
#[allow(clippy::too_many_arguments)]
fn reduce(
    mut a: MatMut<'_, f64>,
    d: &mut [f64],
    e: &mut [f64],
    tau: &mut [f64],
    nb: usize,
    par: Par,
    team: Option<&Team>,
    work: &mut SytrdWork,
) {
    let n = a.nrows();
    let simd = Simd::detect();
    let mut i = 0;
    while i + 1 < n {
        let m = n - i;
        let b = nb.min(m - 1);
        let mut loc = a.rb_mut().submatrix_mut(i, i, m, m);
        {
            let w = work.vw.as_mut().submatrix_mut(0, b, m, b);
            let (d, e, tau) = (&mut d[i..i + b], &mut e[i..i + b], &mut tau[i..i + b]);
            let scratch = (&mut work.spare[..], &mut work.coef[..]);
            panel(loc.rb_mut(), b, w, d, e, tau, scratch, team, simd);
        }
        // trailing update A₂₂ ← A₂₂ − [V W] [W V]ᵀ on the lower triangle (rows/cols b..m)
        let m2 = m - b;
        {
            let (vw, wv) = (&mut work.vw, &mut work.wv);
            let (mut vcopy, wmat) = vw.as_mut().split_at_col_mut(b);
            for t in 0..b {
                let v = &col(loc.rb(), t)[b..m];
                col_mut(vcopy.rb_mut(), t)[b..m].copy_from_slice(v);
                col_mut(wv.as_mut(), t)[b..m].copy_from_slice(&col(wmat.rb(), t)[b..m]);
                col_mut(wv.as_mut(), b + t)[b..m].copy_from_slice(v);
            }
            let (_, right) = loc.rb_mut().split_at_col_mut(b);
            let a22 = right.subrows_mut(b, m2);
            let lhs = vw.as_ref().submatrix(b, 0, m2, 2 * b);
            let rhs = wv.as_ref().submatrix(b, 0, m2, 2 * b);
            match team {
                Some(t) if m2 > SYMV_PAR_MIN_M => {
                    // each thread updates the columns its half of the next matrix–vector
                    // products reads (the same split), so those columns are in that core's L2
                    // when read
                    let (left, rest) = a22.split_at_col_mut(symv_split(m2));
                    let s = left.ncols();
                    t.run_split(
                        Job::Update(UpdateJob {
                            dst: rest.as_ptr_mut(),
                            dst_cs: rest.col_stride(),
                            m2,
                            k: rest.ncols(),
                            c0: s,
                            lhs: lhs.as_ptr(),
                            lhs_cs: lhs.col_stride(),
                            rhs: rhs.as_ptr(),
                            rhs_cs: rhs.col_stride(),
                            r: 2 * b,
                        }),
                        || update_columns(left, 0, lhs, rhs),
                    );
                }
                // inside a team on the calling thread (never faer's parallel kernels, whose
                // threads would wait for the spinning helper)
                Some(_) => update_columns(a22, 0, lhs, rhs),
                None => triangular::matmul(
                    a22,
                    BlockStructure::TriangularLower,
                    Accum::Add,
                    lhs,
                    BlockStructure::Rectangular,
                    rhs.transpose(),
                    BlockStructure::Rectangular,
                    -1.0,
                    if m2 * m2 < 128 * 128 { Par::Seq } else { par },
                ),
            }
        }
        for t in 0..b {
            loc[(t + 1, t)] = e[i + t];
        }
        i += b;
    }
    if n > 0 {
        d[n - 1] = a[(n - 1, n - 1)];
    }
}

/// `A[.., c0..c0+k] ← A[.., c0..c0+k] − L Rᵀ` on the lower triangle of the trailing matrix,
/// for the `k` columns of `dst` (rows `0..m2` of the trailing matrix, columns from `c0`): the
/// triangular diagonal block and the rectangle below it, each one sequential faer product.
fn update_columns(dst: MatMut<'_, f64>, c0: usize, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) {
    let k = dst.ncols();
    let m2 = dst.nrows();
    if k == 0 {
        return;
    }
    let (_, rows) = dst.split_at_row_mut(c0);
    let (diag, below) = rows.split_at_row_mut(k);
    let r = rhs.subrows(c0, k).transpose();
    triangular::matmul(
        diag,
        BlockStructure::TriangularLower,
        Accum::Add,
        lhs.subrows(c0, k),
        BlockStructure::Rectangular,
        r,
        BlockStructure::Rectangular,
        -1.0,
        Par::Seq,
    );
    if c0 + k < m2 {
        faer::linalg::matmul::matmul(
            below,
            Accum::Add,
            lhs.subrows(c0 + k, m2 - c0 - k),
            r,
            -1.0,
            Par::Seq,
        );
    }
}

/// Two threads sharing the products of the whole reduction ([`sytrd_lower`]) with one
/// hand-off: the reducing thread posts the second half of each split product (a column's
/// matrix–vector product, the columns `s..m` of [`symv_split`]; a trailing update's right
/// columns) and computes the first; a helper thread ([`Team::help`], the other side of a
/// `rayon::join`) spins, claims a posted half and computes it. A half nobody has claimed when
/// the reducing thread is done with its own is claimed and computed by that thread, so it
/// never waits for a helper that has not started (one that is never stolen runs after the
/// reduction, finds it finished and returns): waiting happens only on a half being computed.
/// Per-column `rayon::join`s cost a wake-up of a sleeping worker each (`perf`: ≈ 10 % of the
/// reduction's samples in the scheduler at n = 2000 on the AMD EPYC of BENCHMARKS.md,
/// session 14). The halves and their sums are those of [`symv_lower`] and of the split update:
/// the same bits whoever computes them.
pub(crate) struct Team {
    /// [`IDLE`], [`POSTED`], [`TAKEN`] (by either thread) or [`DONE`] (by the helper).
    state: AtomicU8,
    /// Set (by [`TeamEnd`]) when the reducing thread is done: the helper returns.
    finished: AtomicBool,
    /// The posted half: written by the reducing thread only while no half is outstanding
    /// (`IDLE`), read by the helper only after claiming it (`POSTED → TAKEN`).
    job: UnsafeCell<Job>,
}

/// No half outstanding.
const IDLE: u8 = 0;
/// A half posted, not claimed.
const POSTED: u8 = 1;
/// A half claimed by one of the two threads.
const TAKEN: u8 = 2;
/// The helper's half computed.
const DONE: u8 = 3;
/// Polls of a waiting thread spent spinning before it yields its core between polls.
const SPINS: u32 = 1 << 14;

/// A posted half, as raw parts of the reducing thread's live borrows.
#[derive(Clone, Copy)]
enum Job {
    /// Nothing posted yet.
    None,
    /// Columns `s..m` of the lower triangle of the `m × m` matrix at `a` (unit row stride,
    /// column stride `cs`) times `v` (length `m`), added into `out[s..m]` (zeroed by the
    /// poster).
    Symv {
        a: *const f64,
        cs: isize,
        m: usize,
        s: usize,
        v: *const f64,
        out: *mut f64,
        simd: Simd,
    },
    /// [`update_columns`] on the `m2 × k` columns at `dst` (columns `c0..c0+k` of the
    /// trailing matrix) with the `m2 × r` matrices `lhs` and `rhs` (unit row strides).
    Update(UpdateJob),
}

/// The parts of [`Job::Update`].
#[derive(Clone, Copy)]
struct UpdateJob {
    dst: *mut f64,
    dst_cs: isize,
    m2: usize,
    k: usize,
    c0: usize,
    lhs: *const f64,
    lhs_cs: isize,
    rhs: *const f64,
    rhs_cs: isize,
    r: usize,
}

// SAFETY: the raw parts in `job` are only dereferenced under the protocol above (the posting
// thread neither reads nor writes what a posted half writes, nor writes what it reads, while
// the half is outstanding).
unsafe impl Sync for Team {}

/// Marks the team finished when the reducing side of the `join` ends (also by unwinding, so
/// the helper never spins forever, and never claims a half whose poster has unwound).
struct TeamEnd<'a>(&'a Team);

impl Drop for TeamEnd<'_> {
    fn drop(&mut self) {
        // a half still posted (the reducing side unwound between posting and claiming) is
        // withdrawn first, so the helper never starts one after the poster has gone
        let _ = self
            .0
            .state
            .compare_exchange(POSTED, TAKEN, Ordering::AcqRel, Ordering::Relaxed);
        self.0.finished.store(true, Ordering::Release);
    }
}

impl Team {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(IDLE),
            finished: AtomicBool::new(false),
            job: UnsafeCell::new(Job::None),
        }
    }

    /// Posts `job`, runs `own` (the first half) here, then computes `job` here if the helper
    /// has not claimed it, else waits for the helper's `DONE`.
    fn run_split(&self, job: Job, own: impl FnOnce()) {
        // SAFETY: no half is outstanding (`IDLE`): the helper does not read `job` now
        unsafe { *self.job.get() = job };
        self.state.store(POSTED, Ordering::Release);
        own();
        if self
            .state
            .compare_exchange(POSTED, TAKEN, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: the half is ours; its parts are our caller's live borrows
            unsafe { run(job) };
        } else {
            let mut polls = 0u32;
            while self.state.load(Ordering::Acquire) != DONE {
                if polls < SPINS {
                    polls += 1;
                    std::hint::spin_loop();
                } else {
                    // the helper is computing the half but is not running (a crowded machine,
                    // or a tool like valgrind that runs one thread at a time)
                    std::thread::yield_now();
                }
            }
        }
        self.state.store(IDLE, Ordering::Relaxed);
    }

    /// `y ← A v` as [`symv_lower`] on two threads (the second half in `spare`), the same bits.
    fn symv(&self, a: MatRef<'_, f64>, v: &[f64], y: &mut [f64], spare: &mut [f64], simd: Simd) {
        let m = a.nrows();
        assert!(
            a.ncols() == m
                && v.len() == m
                && y.len() == m
                && spare.len() >= m
                && (m == 0 || a.row_stride() == 1),
            "Team::symv: shapes"
        );
        y.fill(0.0);
        let s = symv_split(m);
        let spare = &mut spare[..m];
        spare[s..].fill(0.0);
        let job = Job::Symv {
            a: a.as_ptr(),
            cs: a.col_stride(),
            m,
            s,
            v: v.as_ptr(),
            out: spare.as_mut_ptr(),
            simd,
        };
        self.run_split(job, || symv_columns(a, v, y, 0, s, simd));
        for (d, x) in y[s..].iter_mut().zip(&spare[s..]) {
            *d += x;
        }
    }

    /// The helper's side: claims and computes posted halves until the reduction is finished.
    fn help(&self) {
        // spins while halves come quickly; after `SPINS` empty polls in a row, yields the core
        // between polls (another process's thread, or the reducing thread itself on a
        // crowded machine, may need it)
        let mut idle = 0u32;
        while !self.finished.load(Ordering::Acquire) {
            if self.state.load(Ordering::Relaxed) == POSTED
                && self
                    .state
                    .compare_exchange(POSTED, TAKEN, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // SAFETY: claimed (`POSTED → TAKEN`, acquiring the poster's write of `job`);
                // the poster waits for `DONE` before touching the half's buffers again
                unsafe { run(self.job.get().read()) };
                self.state.store(DONE, Ordering::Release);
                idle = 0;
            } else if idle < SPINS {
                idle += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Computes a claimed half.
///
/// # Safety
/// `job` was posted by [`Team::run_split`], which has not returned (the borrows its parts
/// come from are alive and nobody else touches what the half reads and writes).
unsafe fn run(job: Job) {
    match job {
        Job::None => {}
        Job::Symv {
            a,
            cs,
            m,
            s,
            v,
            out,
            simd,
        } => {
            // SAFETY: the caller's contract: the parts describe `symv`'s live arguments
            let (a, v, out) = unsafe {
                (
                    MatRef::from_raw_parts(a, m, m, 1, cs),
                    std::slice::from_raw_parts(v, m),
                    std::slice::from_raw_parts_mut(out, m),
                )
            };
            symv_columns(a, v, out, s, m, simd);
        }
        Job::Update(u) => {
            // SAFETY: the caller's contract: the parts describe the trailing update's live
            // right columns and its two factors
            let (dst, lhs, rhs) = unsafe {
                (
                    MatMut::from_raw_parts_mut(u.dst, u.m2, u.k, 1, u.dst_cs),
                    MatRef::from_raw_parts(u.lhs, u.m2, u.r, 1, u.lhs_cs),
                    MatRef::from_raw_parts(u.rhs, u.m2, u.r, 1, u.rhs_cs),
                )
            };
            update_columns(dst, u.c0, lhs, rhs);
        }
    }
}

/// `DLATRD('L')` on the `m × m` trailing matrix `a` (its first `b < m` columns are the panel):
/// reduces the panel's columns, leaving the trailing matrix `a[b.., b..]` to be updated by the
/// caller with `V` (the panel's reflectors, units written on the subdiagonal) and `W`
/// (`m × b`, row `r` of column `t` meaningful for `r > t`). With
/// `Â = A − V Wᵀ − W Vᵀ` the partially reduced matrix, column `j`:
/// 1. `a[j.., j] ← Â[j.., j]` (its update by the earlier reflectors);
/// 2. the reflector `H_j` annihilating `a[j+2.., j]` (`d_j = a_jj`, `e_j = β`);
/// 3. `w_j = τ (Â₂₂ v − ½ τ (vᵀ Â₂₂ v) v)` with `Â₂₂ v = A₂₂ v − V (Wᵀv) − W (Vᵀv)`, so that
///    `H_j Â₂₂ H_j = Â₂₂ − v w_jᵀ − w_j vᵀ`.
///
/// Compiled three times (plain, AVX2+FMA, AVX-512F) and chosen by `simd`: the thin loops of
/// steps 1 and 3 (`O(m b)` per column) are vectorized at the CPU's width.
#[allow(clippy::too_many_arguments)]
fn panel(
    a: MatMut<'_, f64>,
    b: usize,
    w: MatMut<'_, f64>,
    d: &mut [f64],
    e: &mut [f64],
    tau: &mut [f64],
    scratch: (&mut [f64], &mut [f64]),
    team: Option<&Team>,
    simd: Simd,
) {
    #[cfg(target_arch = "x86_64")]
    match simd {
        // SAFETY: AVX-512F was detected at run time (`Simd::detect`).
        Simd::Avx512 => return unsafe { panel_avx512(a, b, w, d, e, tau, scratch, team) },
        // SAFETY: AVX2 and FMA were detected at run time.
        Simd::Avx2 => return unsafe { panel_avx2(a, b, w, d, e, tau, scratch, team) },
        Simd::Portable => {}
    }
    panel_body(a, b, w, d, e, tau, scratch, team, simd);
}

/// [`panel_body`] compiled with `$features` enabled (run only where `Simd::detect` found them).
macro_rules! panel_for {
    ($name:ident, $features:literal, $level:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        fn $name(
            a: MatMut<'_, f64>,
            b: usize,
            w: MatMut<'_, f64>,
            d: &mut [f64],
            e: &mut [f64],
            tau: &mut [f64],
            scratch: (&mut [f64], &mut [f64]),
            team: Option<&Team>,
        ) {
            panel_body(a, b, w, d, e, tau, scratch, team, $level);
        }
    };
}
panel_for!(panel_avx512, "avx512f,avx2,fma", Simd::Avx512);
panel_for!(panel_avx2, "avx2,fma", Simd::Avx2);

/// The body of [`panel`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn panel_body(
    mut a: MatMut<'_, f64>,
    b: usize,
    mut w: MatMut<'_, f64>,
    d: &mut [f64],
    e: &mut [f64],
    tau: &mut [f64],
    (spare, coef): (&mut [f64], &mut [f64]),
    team: Option<&Team>,
    simd: Simd,
) {
    let m = a.nrows();
    let (ca, cb) = coef.split_at_mut(b);
    for j in 0..b {
        let (left, rest) = a.rb_mut().split_at_col_mut(j);
        let (cj, right) = rest.split_at_col_mut(1);
        let (left, right) = (left.rb(), right.rb());
        let cj = col_mut(cj, 0);
        let (wl, wr) = w.rb_mut().split_at_col_mut(j);
        let wl = wl.rb();
        let wj = col_mut(wr, 0);
        // 1. column j's update by the panel's earlier reflectors
        for t in 0..j {
            ca[t] = wl[(j, t)];
            cb[t] = left[(j, t)];
        }
        sub_pairs(&mut cj[j..m], left, wl, j, &ca[..j], &cb[..j]);
        d[j] = cj[j];
        // 2. the reflector
        let (tj, beta) = make_householder(&mut cj[j + 1..m]);
        tau[j] = tj;
        e[j] = beta;
        cj[j + 1] = 1.0;
        let v = &cj[j + 1..m];
        // 3. w_j
        let wv = &mut wj[j + 1..m];
        let a22 = right.subrows(j + 1, m - j - 1);
        match team {
            Some(t) if a22.nrows() >= SYMV_PAR_MIN_M => t.symv(a22, v, wv, spare, simd),
            _ => symv_lower(a22, v, wv, spare, Par::Seq, simd),
        }
        for t in 0..j {
            let (vt, wt) = (&col(left, t)[j + 1..m], &col(wl, t)[j + 1..m]);
            (ca[t], cb[t]) = dot2(wt, vt, v);
        }
        sub_pairs(wv, left, wl, j + 1, &ca[..j], &cb[..j]);
        for x in wv.iter_mut() {
            *x *= tj;
        }
        let alpha = -0.5 * tj * dot(wv, v);
        axpy(alpha, v, wv);
    }
}

/// `y[i] −= Σ_t (p_t[r0 + i] α_t + q_t[r0 + i] β_t)` with `p_t`, `q_t` column `t` of `p`, `q`
/// (`t < α.len()`), the terms of each entry subtracted in the order `t = 0, 1, …` (the same
/// bits as one pass over `y` per `t`). Rows in chunks of [`SUB_CHUNK`] held in registers while
/// the `2 · α.len()` columns pass over them: `y` is read and written once instead of once per
/// `t`.
#[inline(always)]
fn sub_pairs(
    y: &mut [f64],
    p: MatRef<'_, f64>,
    q: MatRef<'_, f64>,
    r0: usize,
    alpha: &[f64],
    beta: &[f64],
) {
    let len = y.len();
    let full = len / SUB_CHUNK * SUB_CHUNK;
    for c0 in (0..full).step_by(SUB_CHUNK) {
        let yc: &mut [f64; SUB_CHUNK] = (&mut y[c0..c0 + SUB_CHUNK])
            .try_into()
            .expect("a full chunk");
        let mut acc = *yc;
        for (t, (&a, &b)) in alpha.iter().zip(beta).enumerate() {
            let r = r0 + c0;
            let pc: &[f64; SUB_CHUNK] = col(p, t)[r..r + SUB_CHUNK]
                .try_into()
                .expect("a full chunk");
            let qc: &[f64; SUB_CHUNK] = col(q, t)[r..r + SUB_CHUNK]
                .try_into()
                .expect("a full chunk");
            for i in 0..SUB_CHUNK {
                acc[i] -= pc[i] * a + qc[i] * b;
            }
        }
        *yc = acc;
    }
    for (t, (&a, &b)) in alpha.iter().zip(beta).enumerate() {
        let (pc, qc) = (
            &col(p, t)[r0 + full..r0 + len],
            &col(q, t)[r0 + full..r0 + len],
        );
        for ((x, u), w) in y[full..].iter_mut().zip(pc).zip(qc) {
            *x -= u * a + w * b;
        }
    }
}

/// Rows per register-held chunk of [`sub_pairs`] (four 512-bit or eight 256-bit vectors).
const SUB_CHUNK: usize = 32;

/// `(x · z, y · z)` in one pass, on eight accumulators each.
#[inline(always)]
fn dot2(x: &[f64], y: &[f64], z: &[f64]) -> (f64, f64) {
    let n = z.len();
    let (x, y) = (&x[..n], &y[..n]);
    let (mut a, mut b) = ([0.0f64; 8], [0.0f64; 8]);
    let split = n / 8 * 8;
    for ((cx, cy), cz) in x[..split]
        .chunks_exact(8)
        .zip(y[..split].chunks_exact(8))
        .zip(z[..split].chunks_exact(8))
    {
        for k in 0..8 {
            a[k] += cx[k] * cz[k];
            b[k] += cy[k] * cz[k];
        }
    }
    let (mut sa, mut sb) = (a.iter().sum::<f64>(), b.iter().sum::<f64>());
    for i in split..n {
        sa += x[i] * z[i];
        sb += y[i] * z[i];
    }
    (sa, sb)
}

/// All eigenvalues (ascending) of the symmetric matrix `h` by the blocked one-stage
/// tridiagonalization (LAPACK `DSYTRD` with `DLATRD` panels of `block` columns) followed by the
/// root-free Pal–Walker–Kahan QL/QR iteration on the tridiagonal matrix (LAPACK `DSTERF`),
/// at any size: the path of [`sym_spectrum`](crate::sym_spectrum) below
/// [`SymSpectrumParams::two_stage_min_n`](crate::SymSpectrumParams::two_stage_min_n).
///
/// Algorithm, per panel of `b = block` columns of the trailing `m × m` matrix `A`:
/// 1. for each panel column `j`: its update by the panel's earlier reflectors
///    (`A − V Wᵀ − W Vᵀ`), the Householder reflector `H_j = I − τ_j v_j v_jᵀ` annihilating
///    it below the subdiagonal, and `w_j = τ_j (Â v_j − ½ τ_j (v_jᵀ Â v_j) v_j)` from one
///    symmetric matrix–vector product with the trailing lower triangle (each entry read once,
///    used twice) and four thin corrections;
/// 2. the trailing matrix `A₂₂ ← A₂₂ − V Wᵀ − W Vᵀ` as one rank-`2b` matrix–matrix product on
///    its lower triangle.
///
/// `4n³/3` flops, half of them matrix–matrix. Accuracy: an orthogonal similarity by
/// Householder reflectors, so each eigenvalue has absolute error `≤ c(n) ε ‖H‖₂` (Weyl), as
/// LAPACK's `DSYEV`.
///
/// Scale-safe as [`sym_spectrum`](crate::sym_spectrum).
///
/// # Errors
/// As [`sym_spectrum`](crate::sym_spectrum), plus [`LinalgError::InvalidArgument`](crate::LinalgError::InvalidArgument)
/// for `block == 0`.
pub fn sym_eigenvalues_blocked(h: MatRef<'_, f64>, block: usize) -> Result<Vec<f64>> {
    crate::params::check_band_width(block)?;
    let mut hs = crate::layout::symmetric_part(h, "symmetric matrix H")?;
    let e = crate::scaling::scale_owned(&mut hs);
    let (d, off) = sym_tridiagonal_blocked(hs, block, faer::get_global_parallelism())?;
    let ev = crate::two_stage::tridiagonal_eigenvalues(&d, &off)?;
    crate::scaling::unscale_all(ev, e, "eigenvalue")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded symmetric matrix with entries in [−1, 1), its strict upper triangle NaN (never
    /// read), as a view into a larger matrix when `padded`.
    fn sym_lower(n: usize, seed: u64) -> Mat<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut r = Mat::from_fn(n, n, |_, _| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        });
        for j in 0..n {
            for i in 0..j {
                r[(i, j)] = r[(j, i)];
            }
        }
        r
    }

    /// The public kernel with a panel wider than the matrix (up to `usize::MAX`) reduces the
    /// whole matrix as one panel: the same eigenvalues, bit for bit, as a panel of exactly `n`;
    /// a zero width is a typed error.
    #[test]
    fn panel_widths_beyond_the_matrix_are_the_whole_matrix() {
        let h = sym_lower(37, 5);
        let whole = sym_eigenvalues_blocked(h.as_ref(), 37).expect("small");
        for nb in [38, 1000, usize::MAX] {
            let got = sym_eigenvalues_blocked(h.as_ref(), nb).expect("clamped");
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                whole.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
        assert!(matches!(
            sym_eigenvalues_blocked(h.as_ref(), 0),
            Err(crate::LinalgError::InvalidArgument { .. })
        ));
    }

    /// The reduction on two threads gives the same bits whether the team's helper runs beside
    /// it (a pool of two) or never (a pool of one: every half claimed by the reducing thread).
    #[test]
    fn team_reduction_is_the_same_with_and_without_a_helper() {
        for &n in &[SYMV_PAR_MIN_M + 2, 390, 700] {
            let full = sym_lower(n, n as u64);
            let reduce_on = |threads: usize| {
                let mut a = full.clone();
                let mut d = vec![0.0; n];
                let mut e = vec![0.0; n - 1];
                let mut tau = vec![0.0; n - 1];
                let mut work = SytrdWork::new(n, 32).expect("small");
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool");
                pool.install(|| {
                    sytrd_lower(
                        a.as_mut(),
                        &mut d,
                        &mut e,
                        &mut tau,
                        32,
                        Par::rayon(2),
                        &mut work,
                    )
                });
                let mut bits: Vec<u64> = d
                    .iter()
                    .chain(&e)
                    .chain(&tau)
                    .map(|x| x.to_bits())
                    .collect();
                for j in 0..n {
                    for i in j + 1..n {
                        bits.push(a[(i, j)].to_bits());
                    }
                }
                bits
            };
            assert_eq!(reduce_on(2), reduce_on(1), "n = {n}");
        }
    }

    /// The team's product equals `symv_lower` on two threads bit for bit, with a helper
    /// claiming halves, with none (every half claimed by the posting thread), and after the
    /// helper has returned; the helper returns when the posting side ends.
    #[test]
    fn team_products_equal_the_split_product_bitwise() {
        for &m in &[SYMV_PAR_MIN_M, 321, 517, 1000] {
            let a = sym_lower(m, m as u64 + 7);
            let simd = Simd::detect();
            let vs: Vec<Vec<f64>> = (0..6)
                .map(|k| {
                    (0..m)
                        .map(|i| ((i * 31 + k * 17) % 23) as f64 - 11.0)
                        .collect()
                })
                .collect();
            let want: Vec<Vec<f64>> = vs
                .iter()
                .map(|v| {
                    let (mut y, mut spare) = (vec![0.0; m], vec![0.0; m]);
                    symv_lower(a.as_ref(), v, &mut y, &mut spare, Par::rayon(2), simd);
                    y
                })
                .collect();
            let run = |team: &Team| {
                let mut out = Vec::new();
                for v in &vs {
                    let (mut y, mut spare) = (vec![f64::NAN; m], vec![f64::NAN; m + 3]);
                    team.symv(a.as_ref(), v, &mut y, &mut spare, simd);
                    out.push(y);
                }
                out
            };
            let alone = Team::new();
            let mut got = vec![run(&alone)];
            let team = Team::new();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .expect("pool");
            let (helped, ()) = pool.install(|| {
                rayon::join(
                    || {
                        let _end = TeamEnd(&team);
                        run(&team)
                    },
                    || team.help(),
                )
            });
            got.push(helped);
            // a finished team's helper returns at once
            team.help();
            got.push(run(&team));
            for g in &got {
                for (y, w) in g.iter().zip(&want) {
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(y), bits(w), "m = {m}");
                }
            }
        }
    }

    /// `Qᵀ A Q` from the reflectors left in `a`'s lower part and `tau` equals the tridiagonal
    /// `(d, e)` entry by entry within `8 n ε ‖A‖_F` (a Householder reduction's backward error),
    /// and `Q` is orthogonal to the same order; sizes around the panel width and the
    /// two-thread threshold of the matrix–vector product, panels of 1, 3, 32 and 64 columns,
    /// one and two threads; the upper triangle NaN (never read).
    #[test]
    fn reflectors_reduce_the_matrix_to_the_returned_tridiagonal() {
        let mut cases = Vec::new();
        for &n in &[1usize, 2, 3, 5, 31, 32, 33, 65, 130, 390, 700] {
            for &nb in &[1usize, 3, 32, 64] {
                if n <= 130 || nb >= 32 {
                    cases.push((n, nb, 1.0));
                }
            }
        }
        // entries near the under- and overflow thresholds: the reflectors' norms by the scaled
        // path of `kernels::norm2` (a sum of squares would under- or overflow), `β` near the
        // underflow threshold by faer's rescaling `make_householder_in_place`
        for scale in [
            2f64.powi(-1000),
            2f64.powi(-530),
            2f64.powi(480),
            2f64.powi(1000),
        ] {
            cases.push((40, 32, scale));
        }
        for (n, nb, scale) in cases {
            for par in [Par::Seq, Par::rayon(2)] {
                {
                    let mut full = sym_lower(n, (n * 1000 + nb) as u64);
                    for j in 0..n {
                        for i in 0..n {
                            full[(i, j)] *= scale;
                        }
                    }
                    let mut big = Mat::<f64>::from_fn(n + 3, n + 2, |_, _| f64::NAN);
                    for j in 0..n {
                        for i in j..n {
                            big[(i + 2, j + 1)] = full[(i, j)];
                        }
                    }
                    let mut d = vec![0.0; n];
                    let mut e = vec![0.0; n.saturating_sub(1)];
                    let mut tau = vec![0.0; n.saturating_sub(1)];
                    let mut work = SytrdWork::new(n, nb).expect("small");
                    sytrd_lower(
                        big.as_mut().submatrix_mut(2, 1, n, n),
                        &mut d,
                        &mut e,
                        &mut tau,
                        nb,
                        par,
                        &mut work,
                    );
                    let a = big.as_ref().submatrix(2, 1, n, n);
                    // Q = H_0 H_1 ⋯ H_{n−2}, built as Q ← Q H_k
                    let mut q = Mat::<f64>::identity(n, n);
                    for k in 0..n.saturating_sub(1) {
                        let v: Vec<f64> = (0..n)
                            .map(|i| match i {
                                _ if i <= k => 0.0,
                                _ if i == k + 1 => 1.0,
                                _ => a[(i, k)],
                            })
                            .collect();
                        for r in 0..n {
                            let s: f64 = (0..n).map(|i| q[(r, i)] * v[i]).sum();
                            for i in 0..n {
                                q[(r, i)] -= tau[k] * s * v[i];
                            }
                        }
                    }
                    let t = q.transpose() * &full * &q;
                    let norm = full.norm_l2();
                    let tol = 8.0 * n as f64 * f64::EPSILON * norm;
                    for j in 0..n {
                        for i in 0..n {
                            let want = if i == j {
                                d[i]
                            } else if i == j + 1 {
                                e[j]
                            } else if j == i + 1 {
                                e[i]
                            } else {
                                0.0
                            };
                            assert!(
                                (t[(i, j)] - want).abs() <= tol,
                                "n={n} nb={nb} scale={scale:e} {par:?} ({i},{j}): {} vs {want}, tol {tol:e}",
                                t[(i, j)]
                            );
                            // the subdiagonal of `a` holds e
                            if i == j + 1 {
                                assert_eq!(a[(i, j)].to_bits(), e[j].to_bits());
                            }
                        }
                    }
                    let qtq = q.transpose() * &q;
                    for j in 0..n {
                        for i in 0..n {
                            let want = if i == j { 1.0 } else { 0.0 };
                            assert!(
                                (qtq[(i, j)] - want).abs() <= 8.0 * n as f64 * f64::EPSILON,
                                "n={n} nb={nb}: QᵀQ ({i},{j}) = {}",
                                qtq[(i, j)]
                            );
                        }
                    }
                }
            }
        }
    }
}
