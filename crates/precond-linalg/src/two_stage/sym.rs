//! Two-stage symmetric tridiagonalization: dense → band (BLAS3) → tridiagonal (bulge chasing).

use faer::dyn_stack::MemStack;
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::qr::no_pivoting::factor::{qr_in_place, qr_in_place_scratch};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, Par};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::alloc::{try_collect, try_mem, try_vec, try_zeros};
use crate::error::Result;

/// What the buffers of the band reduction are called in an out-of-memory error.
const W1: &str = "buffers of the dense-to-band reduction";

use super::kernels::{BlockReflector, axpy, dot, make_householder};
use super::symm::symm_lower;

/// A symmetric matrix of half-bandwidth `b` in compact lower storage with room for the bulge:
/// `a[r, c]` (`0 ≤ r − c < ld = 2b`) at `data[c·ld + r − c]`, so each column's band segment is
/// contiguous.
pub(crate) struct LowerBand {
    pub(crate) n: usize,
    pub(crate) b: usize,
    ld: usize,
    data: Vec<f64>,
}

impl LowerBand {
    fn zeros(n: usize, b: usize) -> Result<Self> {
        let ld = 2 * b;
        Ok(Self {
            n,
            b,
            ld,
            data: try_vec(
                "band of the two-stage reduction",
                n.saturating_mul(ld).saturating_add(1),
                0.0,
            )?,
        })
    }
}

/// Panels per delayed trailing update in stage 1 (see [`sym_dense_to_band`]).
pub(crate) const STAGE1_GROUP: usize = 4;

/// Stage 1: `A ← Qᵀ A Q` to half-bandwidth `b` (LAPACK `DSYTRD_SY2SB`). For each panel of `b`
/// columns, a QR factorization of the part below the band (`A₂₁ = Q R`, faer's blocked QR)
/// puts `R` (upper triangular, so inside the band) in place, and the trailing matrix gets the
/// two-sided update `A₂₂ ← Qᵀ A₂₂ Q = A₂₂ − V Wᵀ − W Vᵀ` with `X = A₂₂ V T⁻¹`,
/// `W = X − ½ V T⁻ᵀ Vᵀ X` (`4n³/3` flops in all). As LAPACK's `DLATRD` does for the one-stage
/// reduction, the trailing updates of [`STAGE1_GROUP`] consecutive panels are delayed and applied
/// together as one rank-`2b·STAGE1_GROUP` update `A₂₂ −= L Rᵀ` (`L = [V₁ W₁ V₂ W₂ …]`,
/// `R = [W₁ V₁ W₂ V₂ …]`, lower triangle), which runs at a much higher matrix-product rate than
/// rank-`2b` updates; meanwhile each panel's columns are brought up to date just before its QR
/// (`A[k.., k..k+b] −= L Rᵀ` restricted to them), and its product with the not yet updated
/// trailing matrix is corrected: `A₂₂ V = A₂₂ˢᵗᵒʳᵉᵈ V − L (Rᵀ V)`. Only the lower triangle of
/// `a` is read.
pub(crate) fn sym_dense_to_band(mut a: Mat<f64>, b: usize, par: Par) -> Result<LowerBand> {
    let n = a.nrows();
    let b = b.max(1);
    let mut k = 0;
    while k + b + 1 < n {
        // the group's delayed update, rows indexed from r0 (the first panel's trailing start)
        let r0 = k + b;
        let mm = n - r0;
        let mut lmat = try_zeros(W1, mm, 2 * b * STAGE1_GROUP)?;
        let mut rmat = try_zeros(W1, mm, 2 * b * STAGE1_GROUP)?;
        let mut used = 0;
        let mut p = 0;
        while p < STAGE1_GROUP && k + b + 1 < n {
            let m = n - k - b;
            let kk = b.min(m);
            if used > 0 {
                // columns k..k+b, rows k..n: apply the group's earlier panels
                let off = k - r0;
                matmul(
                    a.as_mut().submatrix_mut(k, k, n - k, b),
                    Accum::Add,
                    lmat.as_ref().submatrix(off, 0, n - k, used),
                    rmat.as_ref().submatrix(off, 0, b, used).transpose(),
                    -1.0,
                    par,
                );
            }
            let sub = a.as_mut().submatrix_mut(k + b, k, m, b + m);
            let (mut panel, a22) = sub.split_at_col_mut(b);
            let mut t = try_zeros(W1, kk, kk)?;
            let mut mem = try_mem(
                "workspace of the band reduction's panel QR",
                qr_in_place_scratch::<f64>(m, b, kk, Par::Seq, Default::default()),
            )?;
            qr_in_place(
                panel.rb_mut(),
                t.as_mut(),
                Par::Seq, // a b-column panel: threads cost more than they save (measured)
                MemStack::new(&mut mem),
                Default::default(),
            );
            let q = BlockReflector::from_qr(panel.rb().get(.., ..kk), t)?;
            let (v, t) = (&q.v, &q.t);
            // X = sym(A22) V T⁻¹ from the lower triangle (of the stored, not yet updated A22),
            // by the fused symmetric product of `symm.rs`
            let mut x = try_zeros(W1, m, kk)?;
            symm_lower(a22.rb(), v.as_ref(), x.as_mut(), par)?;
            let off2 = k + b - r0;
            if used > 0 {
                // … minus the delayed part: L (Rᵀ V)
                let mut y = try_zeros(W1, used, kk)?;
                matmul(
                    y.as_mut(),
                    Accum::Replace,
                    rmat.as_ref().submatrix(off2, 0, m, used).transpose(),
                    v.as_ref(),
                    1.0,
                    par,
                );
                matmul(
                    x.as_mut(),
                    Accum::Add,
                    lmat.as_ref().submatrix(off2, 0, m, used),
                    y.as_ref(),
                    -1.0,
                    par,
                );
            }
            solve_lower_triangular_in_place(t.transpose(), x.as_mut().transpose_mut(), par);
            // W = X − ½ V T⁻ᵀ (Vᵀ X)
            let mut z = try_zeros(W1, kk, kk)?;
            matmul(
                z.as_mut(),
                Accum::Replace,
                v.transpose(),
                x.as_ref(),
                1.0,
                par,
            );
            solve_lower_triangular_in_place(t.transpose(), z.as_mut(), par);
            matmul(x.as_mut(), Accum::Add, v.as_ref(), z.as_ref(), -0.5, par);
            // delay A22 ← A22 − [V W] [W V]ᵀ: append to L and R
            let rows = off2..mm;
            lmat.as_mut()
                .get_mut(rows.clone(), used..used + kk)
                .copy_from(v.as_ref());
            lmat.as_mut()
                .get_mut(rows.clone(), used + kk..used + 2 * kk)
                .copy_from(x.as_ref());
            rmat.as_mut()
                .get_mut(rows.clone(), used..used + kk)
                .copy_from(x.as_ref());
            rmat.as_mut()
                .get_mut(rows, used + kk..used + 2 * kk)
                .copy_from(v.as_ref());
            used += 2 * kk;
            k += b;
            p += 1;
        }
        // flush: lower triangle of A[k.., k..] −= L Rᵀ (rows k.. of both)
        if k < n {
            let off = k - r0;
            let rows = n - k;
            triangular::matmul(
                a.as_mut().submatrix_mut(k, k, rows, rows),
                BlockStructure::TriangularLower,
                Accum::Add,
                lmat.as_ref().submatrix(off, 0, rows, used),
                BlockStructure::Rectangular,
                rmat.as_ref().submatrix(off, 0, rows, used).transpose(),
                BlockStructure::Rectangular,
                -1.0,
                par,
            );
        }
    }
    let mut band = LowerBand::zeros(n, b)?;
    for c in 0..n {
        for r in c..n.min(c + b + 1) {
            band.data[c * band.ld + r - c] = a[(r, c)];
        }
    }
    Ok(band)
}

/// `A[s..s+len, s..s+len] ← H A H` for `H = I − τ v vᵀ` on the lower band storage (LAPACK
/// `DLARFY`): `w = τ A v`, `w ← w − ½ τ (wᵀv) v`, `A ← A − v wᵀ − w vᵀ`.
#[inline(always)]
fn sym_two_sided(data: &mut [f64], ld: usize, s: usize, v: &[f64], tau: f64, w: &mut [f64]) {
    if tau == 0.0 {
        return;
    }
    let len = v.len();
    let w = &mut w[..len];
    w.fill(0.0);
    for c in 0..len {
        let base = (s + c) * ld;
        let col = &data[base..base + len - c];
        w[c] += dot(col, &v[c..]);
        axpy(v[c], &col[1..], &mut w[c + 1..]);
    }
    for x in w.iter_mut() {
        *x *= tau;
    }
    let alpha = -0.5 * tau * dot(w, v);
    axpy(alpha, v, w);
    for c in 0..len {
        let base = (s + c) * ld;
        let col = &mut data[base..base + len - c];
        axpy(-w[c], &v[c..], col);
        axpy(-v[c], &w[c..], col);
    }
}

/// Stage 2: band → tridiagonal by bulge chasing (LAPACK `DSYTRD_SB2ST` kernels, one sweep per
/// column). Sweep `i` annihilates column `i` below the subdiagonal with a reflector on rows
/// `i+1..i+b` (applied two-sided to the diagonal block); each following step applies the last
/// reflector from the right to the `b × b` block below its diagonal block, annihilates the
/// first column of that block with a new reflector (applied from the left to the rest of the
/// block and two-sided to the next diagonal block), and so on to the end of the band. Only
/// `O(b²)` data is touched per step and the band (`2bn` numbers) stays in cache; `6bn²`
/// flops. Returns the diagonal and the subdiagonal.
///
/// With `par` allowing two or more threads (and at least [`CHASE_PAR_MIN_N`] rows), the
/// sweeps run pipelined on [`chase_threads`] threads (the static pipelined schedule of the
/// bulge-chasing kernels of Haidar, Ltaief & Dongarra, SC'11, used by PLASMA and LAPACK's
/// `DSYTRD_SB2ST`): sweep `s` goes to thread `s mod T` (groups of [`CHASE_GROUP`] sweeps in
/// general, see [`chase_worker`]), and its step `k` starts once sweep `s − 1` has completed
/// step `k + 2` (or all its steps). Step `k` of a sweep only touches band columns [`step_columns`], and the
/// columns of step `k` of sweep `s` meet those of sweep `s − 1` only in its steps
/// `k − 1 ..= k + 2`, so every band entry receives the same operations in the same order as
/// in the sequential loop and the result is bitwise identical to it.
pub(crate) fn sym_band_to_tridiagonal(
    mut band: LowerBand,
    par: Par,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let threads = chase_threads(band.n, band.b, par);
    chase_with_threads(&mut band, threads, CHASE_GROUP);
    let (n, ld, data) = (band.n, band.ld, &band.data);
    let d = try_collect("tridiagonal diagonal", n, (0..n).map(|i| data[i * ld]))?;
    let e = try_collect(
        "tridiagonal off-diagonal",
        n.saturating_sub(1),
        (0..n.saturating_sub(1)).map(|i| data[i * ld + 1]),
    )?;
    Ok((d, e))
}

/// From this dimension on, stage 2 runs its sweeps on several threads when `par` allows it.
/// Measured on the 2-core AVX2 machine of `BENCHMARKS.md` at `b = 32` (best of 9): break-even
/// near n = 300 (5.0 → 4.4 ms), 13.0 → 10.0 ms at n = 500, 177 → 137 ms at n = 2000,
/// 424 → 303 ms at n = 3000. The two cores do not scale on this kernel even without any
/// synchronization (two independent sequential runs at once take 1.35–1.6× as long as one),
/// which bounds the gain.
pub(crate) const CHASE_PAR_MIN_N: usize = 400;

/// Consecutive sweeps one stage-2 worker runs together as a local wavefront, so that a
/// stretch of the band moves between the cores once per group instead of once per sweep.
/// Groups of 2 and 4 measured no faster than 1 on the 2-core machine (8 slower: the
/// pipeline fills later), so each worker takes single sweeps.
const CHASE_GROUP: usize = 1;

/// Threads for stage 2: 1 for `Par::Seq`, below [`CHASE_PAR_MIN_N`] or for `b = 1` (the band
/// is already tridiagonal: every reflector is the identity), else `par`'s degree capped by the
/// rayon pool size (the workers are scoped OS threads, not rayon tasks: a spinning task could
/// starve the pool).
fn chase_threads(n: usize, b: usize, par: Par) -> usize {
    match par {
        Par::Seq => 1,
        _ if n < CHASE_PAR_MIN_N || b < 2 => 1,
        par => par.degree().min(rayon::current_num_threads()).max(1),
    }
}

/// Bulge chasing on `threads` threads (the sequential loop for `threads ≤ 1`).
fn chase_with_threads(band: &mut LowerBand, threads: usize, group: usize) {
    let (n, b, ld) = (band.n, band.b, band.ld);
    let sweeps = n.saturating_sub(2);
    let group = group.max(1);
    let threads = threads.min(sweeps.div_ceil(group));
    if threads <= 1 {
        let data = &mut band.data[..];
        pulp::Arch::new().dispatch(|| chase_sequential(data, n, b, ld));
        return;
    }
    let progress: Vec<Progress> = (0..threads).map(|_| Progress::default()).collect();
    let band_ptr = BandPtr::new(&mut band.data);
    let progress = &progress[..];
    std::thread::scope(|scope| {
        for t in 1..threads {
            scope.spawn(move || {
                pulp::Arch::new().dispatch(|| {
                    chase_worker(band_ptr, (n, b, ld), t, threads, group, progress);
                });
            });
        }
        pulp::Arch::new()
            .dispatch(|| chase_worker(band_ptr, (n, b, ld), 0, threads, group, progress));
    });
}

/// Number of steps of sweep `i` (`i + 2 < n`): step 0 is the annihilation of column `i`
/// plus the first chase iteration, step `k ≥ 1` the chase iteration at `j = i + 1 + k·b`,
/// which exists while `j + b < n`.
fn sweep_steps(n: usize, b: usize, i: usize) -> usize {
    ((n - i - 2) / b).max(1)
}

/// The band columns `[lo, hi)` that step `k` of sweep `i` reads or writes: `[j, j + 2b)` with
/// `j = i + 1 + k·b` (the right/left application on the `b × b` block below the diagonal block
/// at `j`, whose rows `j + b..j + 2b` lie in columns `j..j + b` of the compact storage, and the
/// two-sided update of the diagonal block at `j + b`), plus column `i` for `k = 0`.
fn step_columns(n: usize, b: usize, i: usize, k: usize) -> (usize, usize) {
    let j = i + 1 + k * b;
    (if k == 0 { i } else { j }, n.min(j + 2 * b))
}

/// Reflector state and scratch of one thread's sweep.
struct Chase {
    /// The reflector of the previous step (`v[0] = 1`, length `vlen`) and its `τ`.
    v: Vec<f64>,
    vlen: usize,
    tau: f64,
    /// The new reflector of the current step.
    u: Vec<f64>,
    w: Vec<f64>,
}

impl Chase {
    fn new(b: usize) -> Self {
        Self {
            v: vec![0.0; b],
            vlen: 0,
            tau: 0.0,
            u: vec![0.0; b],
            w: vec![0.0; b],
        }
    }
}

/// Step `k` of sweep `i` on `cols`, the band columns `[lo, hi)` of [`step_columns`]
/// (`a[r, c]` at `cols[(c − lo)·ld + r − c]`); indexing outside them panics, so every run
/// checks the column ranges the parallel schedule relies on.
#[inline(always)]
fn chase_step(
    cols: &mut [f64],
    lo: usize,
    (n, b, ld): (usize, usize, usize),
    i: usize,
    k: usize,
    st: &mut Chase,
) {
    let j = i + 1 + k * b;
    // column indices relative to `lo`
    let jr = j - lo;
    if k == 0 {
        // type 1: annihilate column i below the subdiagonal
        let len = b.min(n - j);
        let x = &mut cols[1..1 + len];
        let (tau0, beta) = make_householder(x);
        st.v[0] = 1.0;
        st.v[1..len].copy_from_slice(&x[1..]);
        x[0] = beta;
        x[1..].fill(0.0);
        sym_two_sided(cols, ld, jr, &st.v[..len], tau0, &mut st.w);
        (st.vlen, st.tau) = (len, tau0);
    }
    let j2 = j + b;
    if j2 >= n {
        return;
    }
    let (vlen, tau) = (st.vlen, st.tau);
    let (v, u, w) = (&st.v, &mut st.u, &mut st.w);
    let len2 = b.min(n - j2);
    // type 2: block rows j2..j2+len2, columns j..j+vlen; right application of H
    if tau != 0.0 {
        let y = &mut w[..len2];
        y.fill(0.0);
        for (c, vc) in v[..vlen].iter().enumerate() {
            let base = (jr + c) * ld + (b - c);
            axpy(*vc, &cols[base..base + len2], y);
        }
        for (c, vc) in v[..vlen].iter().enumerate() {
            let base = (jr + c) * ld + (b - c);
            axpy(-tau * vc, y, &mut cols[base..base + len2]);
        }
    }
    // new reflector from the block's first column, applied from the left
    let base = jr * ld + b;
    let x = &mut cols[base..base + len2];
    let (tau2, beta2) = make_householder(x);
    u[0] = 1.0;
    u[1..len2].copy_from_slice(&x[1..]);
    x[0] = beta2;
    x[1..].fill(0.0);
    if tau2 != 0.0 {
        for c in 1..vlen {
            let base = (jr + c) * ld + (b - c);
            let col = &mut cols[base..base + len2];
            let t = tau2 * dot(&u[..len2], col);
            axpy(-t, &u[..len2], col);
        }
    }
    // type 3: two-sided on the next diagonal block
    sym_two_sided(cols, ld, jr + b, &u[..len2], tau2, w);
    core::mem::swap(&mut st.v, &mut st.u);
    (st.vlen, st.tau) = (len2, tau2);
}

/// All sweeps in order on one thread.
#[inline(always)]
fn chase_sequential(data: &mut [f64], n: usize, b: usize, ld: usize) {
    let mut st = Chase::new(b);
    for i in 0..n.saturating_sub(2) {
        for k in 0..sweep_steps(n, b, i) {
            let (lo, hi) = step_columns(n, b, i, k);
            chase_step(&mut data[lo * ld..hi * ld], lo, (n, b, ld), i, k, &mut st);
        }
    }
}

/// A progress counter on its own cache line (the two threads write theirs after every step).
#[derive(Default)]
#[repr(align(128))]
struct Progress(AtomicUsize);

/// The band shared by the stage-2 workers.
#[derive(Clone, Copy)]
struct BandPtr<'a> {
    ptr: *mut f64,
    len: usize,
    _band: PhantomData<&'a mut [f64]>,
}

// SAFETY: `BandPtr` is only a way to hand `&mut` access to disjoint column ranges of one band
// to the scoped stage-2 workers; the exclusive borrow in `PhantomData` keeps the band alive
// and otherwise untouched for `'a`, and `columns` documents the disjointness contract.
unsafe impl Send for BandPtr<'_> {}

impl<'a> BandPtr<'a> {
    fn new(data: &'a mut [f64]) -> Self {
        Self {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            _band: PhantomData,
        }
    }

    /// Columns `[lo, hi)` of the band (`ld` numbers each).
    ///
    /// # Safety
    /// No other live reference (on any thread) may overlap these columns while the returned
    /// slice is in use.
    unsafe fn columns(self, lo: usize, hi: usize, ld: usize) -> &'a mut [f64] {
        assert!(lo <= hi && hi * ld <= self.len, "band columns out of range");
        // SAFETY: in bounds of the band (checked above), which outlives `'a`; exclusivity is
        // the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(lo * ld), (hi - lo) * ld) }
    }
}

/// On unwinding, tells the other workers this thread's sweeps are over so that they do not
/// spin forever (the scope then re-raises the panic).
struct ReleaseOnPanic<'p>(&'p AtomicUsize);

impl Drop for ReleaseOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(usize::MAX, Ordering::Release);
        }
    }
}

/// Worker `t` of `threads`: the groups of `group` consecutive sweeps `t, t + threads, …`.
/// Within a group, sweep `q` runs step `k` at time `k + 3q` (a local wavefront: the group's
/// sweeps pass over each stretch of the band while it is in this core's cache). The
/// previous group (another worker) is tracked through its last sweep `p`: sweep `s` runs step
/// `k` once `p` has completed step `k + 3(s − p) − 1` (or all its steps). Worker `t` publishes
/// `p·stride + k + 1` in `progress[t]` after step `k` of its group's last sweep `p`, and
/// `p·stride + done` after that whole sweep, with `done = stride − 1` above any wait target:
/// a worker's counter only increases, so `progress ≥ p·stride + x` holds exactly when sweep
/// `p` has completed `x` steps or all of them.
#[inline(always)]
fn chase_worker(
    band: BandPtr<'_>,
    (n, b, ld): (usize, usize, usize),
    t: usize,
    threads: usize,
    group: usize,
    progress: &[Progress],
) {
    let sweeps = n - 2;
    let stride = n / b + 3 * group + 4; // k + 3(s − p) ≤ n/b + 3·group < done
    let done = stride - 1;
    let mine = &progress[t].0;
    let _guard = ReleaseOnPanic(mine);
    let prev = &progress[(t + threads - 1) % threads].0;
    let mut seen = 0; // the last value read from `prev` (it only increases)
    let mut states: Vec<Chase> = (0..group).map(|_| Chase::new(b)).collect();
    for s0 in (t * group..sweeps).step_by(threads * group) {
        let s1 = sweeps.min(s0 + group);
        let last = s1 - 1;
        let end = (s0..s1)
            .map(|s| 3 * (s - s0) + sweep_steps(n, b, s))
            .max()
            .unwrap_or(0);
        for time in 0..end {
            for (s, st) in (s0..s1).zip(&mut states) {
                let Some(k) = time.checked_sub(3 * (s - s0)) else {
                    break;
                };
                if k >= sweep_steps(n, b, s) {
                    continue;
                }
                if s0 > 0 {
                    wait_until(prev, (s0 - 1) * stride + k + 3 * (s + 1 - s0), &mut seen);
                }
                let (lo, hi) = step_columns(n, b, s, k);
                // SAFETY: step k of sweep s touches columns [s+1+kb, s+1+kb+2b) (plus s for
                // k = 0); step m of sweep s' < s touches [s'+1+mb, s'+1+mb+2b) (plus s'),
                // which meets ours only if m·b < (k+2)·b + s − s', i.e. only if
                // m ≤ k + 1 + (s − s'). Earlier sweeps of this group ran those steps before
                // on this thread (the wavefront runs sweep s − d's step k + 3d first). For the
                // earlier groups: their last sweep p has completed step k + 3(s − p) − 1 ≥
                // k + 1 + (s − p) (the wait above, acquire/release, so their writes are
                // visible), p's own group ran its sweeps p − d at least 3d steps ahead of p,
                // and p waited likewise on the group before. Later sweeps s'' > s run step
                // k'' only after step k'' + 3(s'' − s) − 1 of s (through this group's last
                // sweep, which is at most as far as s), and the steps of s they meet are
                // ≤ k'' + 1 + (s'' − s), so they stay behind every step of ours whose columns
                // they meet. Hence no other thread holds these columns now.
                let cols = unsafe { band.columns(lo, hi, ld) };
                chase_step(cols, lo, (n, b, ld), s, k, st);
                if s == last {
                    mine.store(last * stride + k + 1, Ordering::Release);
                }
            }
        }
        mine.store(last * stride + done, Ordering::Release);
    }
}

/// Waits until `counter ≥ target` (`seen` caches the last value read), spinning briefly, then
/// yielding the core (the machine may be oversubscribed).
#[inline(always)]
fn wait_until(counter: &AtomicUsize, target: usize, seen: &mut usize) {
    let mut spins = 0u32;
    while *seen < target {
        *seen = counter.load(Ordering::Acquire);
        if *seen >= target {
            break;
        }
        if spins < 100 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A random symmetric band matrix of half-bandwidth `b` (entries in `[-1, 1)`).
    fn random_band(n: usize, b: usize, seed: u64) -> LowerBand {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut band = LowerBand::zeros(n, b).expect("small band");
        for c in 0..n {
            for r in c..n.min(c + b + 1) {
                band.data[c * band.ld + r - c] = rng.random_range(-1.0..1.0);
            }
        }
        band
    }

    fn bits(band: &LowerBand) -> Vec<u64> {
        band.data.iter().map(|x| x.to_bits()).collect()
    }

    /// The pipelined schedule on 2–4 threads leaves the whole band (not only `d` and `e`)
    /// bitwise equal to the sequential loop, including `n < 2b` and `n ≤ 2`.
    #[test]
    fn parallel_chase_is_bitwise_identical_to_sequential() {
        for n in [0usize, 1, 2, 3, 5, 37, 64, 65, 200, 700] {
            for b in [1usize, 2, 3, 8, 32] {
                let mut want = random_band(n, b, (n * 100 + b) as u64);
                let orig = bits(&want);
                chase_with_threads(&mut want, 1, 1);
                if n > 3 && b > 1 {
                    assert_ne!(bits(&want), orig, "n={n} b={b}: nothing happened");
                }
                for (threads, group) in [(2usize, 1usize), (2, 2), (2, 5), (3, 1), (3, 4), (4, 3)] {
                    let mut got = random_band(n, b, (n * 100 + b) as u64);
                    chase_with_threads(&mut got, threads, group);
                    assert!(
                        bits(&got) == bits(&want),
                        "n={n} b={b} threads={threads} group={group}: differs from sequential"
                    );
                }
            }
        }
    }

    /// The public entry: `Par::Seq` and `Par::rayon(2)` agree bitwise above the crossover.
    #[test]
    fn band_to_tridiagonal_par_matches_seq() {
        let n = CHASE_PAR_MIN_N + 13;
        let seq = sym_band_to_tridiagonal(random_band(n, 32, 5), Par::Seq).expect("tridiagonal");
        let par =
            sym_band_to_tridiagonal(random_band(n, 32, 5), Par::rayon(2)).expect("tridiagonal");
        let to_bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(to_bits(&seq.0), to_bits(&par.0));
        assert_eq!(to_bits(&seq.1), to_bits(&par.1));
    }

    /// The dependency rule, checked on the column ranges (which `chase_step` enforces by
    /// bounds checks): whenever step `m` of sweep `s'` and step `k` of sweep `s > s'` touch a
    /// common column, `m < k + 3(s − s')`, the number of steps of `s'` that the chain of
    /// waits guarantees complete; for `s' = s − 1` the bound `m ≤ k + 2` is attained.
    #[test]
    fn step_column_ranges_obey_the_wait_rule() {
        for (n, b) in [
            (5usize, 1usize),
            (12, 1),
            (20, 2),
            (37, 3),
            (70, 8),
            (130, 32),
        ] {
            let sweeps = n - 2;
            let mut tight = false;
            for s in 1..sweeps {
                for s0 in s.saturating_sub(4)..s {
                    for k in 0..sweep_steps(n, b, s) {
                        let (lo, hi) = step_columns(n, b, s, k);
                        for m in 0..sweep_steps(n, b, s0) {
                            let (lo0, hi0) = step_columns(n, b, s0, m);
                            if lo < hi0 && lo0 < hi {
                                assert!(
                                    m < k + 3 * (s - s0),
                                    "n={n} b={b}: sweep {s0} step {m} vs sweep {s} step {k}"
                                );
                                tight |= s0 + 1 == s && m == k + 2;
                            }
                        }
                    }
                }
            }
            assert!(tight || n < 2 * b + 4, "n={n} b={b}: bound never attained");
        }
    }

    /// A deliberately aggressive single-threaded order: each round runs, newest sweep first,
    /// one step of every sweep whose predecessor is `lag` steps ahead (or done). With the
    /// schedule's lag of 3 the band is bitwise that of the sequential loop; with lag 1 (sweep
    /// `s` step `k` before sweep `s − 1` step `k + 1`) it is not, so the comparison sees
    /// ordering mistakes.
    fn chase_with_lag(band: &mut LowerBand, lag: usize) {
        let (n, b, ld) = (band.n, band.b, band.ld);
        let sweeps = n.saturating_sub(2);
        let steps: Vec<usize> = (0..sweeps).map(|i| sweep_steps(n, b, i)).collect();
        let mut doneby = vec![0usize; sweeps];
        let mut states: Vec<Chase> = (0..sweeps).map(|_| Chase::new(b)).collect();
        while doneby.iter().zip(&steps).any(|(d, s)| d < s) {
            for s in (0..sweeps).rev() {
                let k = doneby[s];
                let ready = s == 0 || doneby[s - 1] == steps[s - 1] || doneby[s - 1] >= k + lag;
                if k < steps[s] && ready {
                    let (lo, hi) = step_columns(n, b, s, k);
                    let cols = &mut band.data[lo * ld..hi * ld];
                    chase_step(cols, lo, (n, b, ld), s, k, &mut states[s]);
                    doneby[s] += 1;
                }
            }
        }
    }

    #[test]
    fn aggressive_order_with_the_wait_rule_is_bitwise_sequential() {
        for (n, b) in [(40usize, 2usize), (60, 3), (90, 8), (200, 32)] {
            let mut want = random_band(n, b, 7);
            chase_with_threads(&mut want, 1, 1);
            let mut got = random_band(n, b, 7);
            chase_with_lag(&mut got, 3);
            assert!(bits(&got) == bits(&want), "n={n} b={b}: lag 3 differs");
            let mut bad = random_band(n, b, 7);
            chase_with_lag(&mut bad, 1);
            assert!(bits(&bad) != bits(&want), "n={n} b={b}: lag 1 undetected");
        }
    }
}
