//! The fused per-element update and the one-pass loop over memory.
//!
//! An optimizer step is `x_new = reg.finish(x, reg.decay(x) + mom.increment(reg.grad(x, ±g), pre))`
//! composed from three small generic parts ([`PrecondRule`], [`MomentumRule`], [`Regularizer`]) in
//! [`Fused`]. [`fused_step`] runs it over the buffers in a single pass (each of `x`, `g` and the
//! state slots read once and written once, no allocation), compiled three times, for the baseline
//! target, with AVX2+FMA and with AVX-512F enabled, and picked at run time by CPU feature
//! detection ([`SimdLevel`]), so a default `cargo build` vectorizes with the widest vectors the
//! CPU has. LLVM never contracts `a*b + c` into an FMA on its own, so every version gives
//! bit-identical results (tested at every level the CPU supports). Above a size threshold the
//! buffers are split into chunks run by the calling thread and the step team's helpers
//! (the `team` module: threads that stay awake between steps, woken on another CPU than the
//! caller's, and woken at all only for steps long enough to repay it ([`ParallelParams`]);
//! rayon's pool when the caller is a rayon worker).

pub use crate::bound::{GuardIn, Iv, SlotRanges};
pub use crate::float::Float;
pub use crate::momentum::{Ema, HeavyBall, MomentumRule, NoMomentum, PostHeavyBall};
pub use crate::precond::{
    AdagradPrecond, AdamPrecond, FixedDiag, Identity, Lerp, LinearRoot, PowRoot, PrecondRule,
    RmsPrecond, Root, SqrtRoot,
};
pub use crate::regularization::{CoupledL2, DecoupledL2, Elementwise, NoReg, Regularizer};

/// Maximum number of per-element state slots of a fused update.
pub const MAX_SLOTS: usize = 3;

/// One fused per-element update.
pub trait ElementUpdate<T: Float>: Copy + Send + Sync {
    /// State slots used (≤ [`MAX_SLOTS`]).
    const SLOTS: usize;
    /// Whether the auxiliary read-only buffer is read.
    const USES_AUX: bool;
    /// Whether the update is arithmetic-bound (a square root and a division per element, as the
    /// adaptive rules): such steps pay for two threads from a smaller length
    /// ([`ParallelParams::split_bytes_heavy`] instead of [`ParallelParams::split_bytes`]).
    const HEAVY: bool = false;
    /// New `x` from `x`, gradient `g`, auxiliary value and state slots.
    fn update(&self, x: T, g: T, aux: T, st: &mut [T; MAX_SLOTS]) -> T;
    /// Whether the guard needs `max |x|` ([`GuardIn::x_max`]): `x` enters the gradient.
    const READS_X_IN_GRAD: bool = false;
    /// A proof that a pass over buffers within the bounds `inp` writes only finite values
    /// (for every finite `x`): `Some(ranges)` enclosing the state slots it leaves; `None` when
    /// a non-finite value cannot be excluded (the caller then runs [`dry_run`]). The default
    /// knows nothing.
    fn guard(&self, _inp: &GuardIn) -> Option<SlotRanges> {
        None
    }
}

/// The composition of a preconditioner rule, a momentum rule and a regularizer into one element
/// update (slots: the preconditioner's first, then the momentum's).
///
/// Per element: `g ← sign·g` (`sign = −1` for `maximize`), `g ← reg.grad(x, g)`,
/// `q = pre.update(g)`, `Δ = mom.increment(g, pre, q)`, `x ← reg.finish(x, reg.decay(x) + Δ)`.
#[derive(Clone, Copy, Debug)]
pub struct Fused<T, P, M, R> {
    /// `1` or `−1` (`maximize`): only its sign bit is used ([`Float::mul_unit_sign`]).
    pub sign: T,
    /// Preconditioner rule.
    pub pre: P,
    /// Momentum rule.
    pub mom: M,
    /// Regularizer.
    pub reg: R,
}

impl<T: Float, P: PrecondRule<T>, M: MomentumRule<T>, R: Regularizer<T>> ElementUpdate<T>
    for Fused<T, P, M, R>
{
    const SLOTS: usize = P::SLOTS + M::SLOTS;
    const USES_AUX: bool = P::USES_AUX;
    const HEAVY: bool = P::HEAVY;
    #[inline(always)]
    fn update(&self, x: T, g: T, aux: T, st: &mut [T; MAX_SLOTS]) -> T {
        let g = self.reg.grad(x, g.mul_unit_sign(self.sign));
        let (sp, sm) = st.split_at_mut(P::SLOTS);
        let q = self.pre.update(g, aux, sp);
        let d = self.mom.increment(g, &self.pre, q, sm);
        let z = self.reg.decay(x) + d;
        self.reg.finish(x, z, &self.pre, q)
    }
    const READS_X_IN_GRAD: bool = R::GRAD_USES_X;
    /// The same update evaluated on intervals ([`crate::bound`]): `g ∈ [−max|g|, max|g|]`,
    /// `x ∈ [−max|x|, max|x|]` (only when the regularizer reads it), the slots in their ranges;
    /// every state slot must come out finite and the regularizer must prove `x_new` finite
    /// ([`Regularizer::finish_finite`]).
    fn guard(&self, inp: &GuardIn) -> Option<SlotRanges> {
        if R::GRAD_USES_X && inp.x_max.is_none() {
            return None;
        }
        let x = Iv::<T>::sym(inp.x_max.unwrap_or(0.0));
        let reg = self.reg.lift();
        let g = reg.grad(x, Iv::sym(inp.g_max) * Iv::point(self.sign));
        let mut st = [Iv::<T>::ZERO; MAX_SLOTS];
        for (s, r) in st.iter_mut().zip(inp.st).take(Self::SLOTS) {
            *s = Iv::new(r.0, r.1);
        }
        let a = if P::USES_AUX {
            Iv::new(inp.aux.0, inp.aux.1)
        } else {
            Iv::ZERO
        };
        let pre = self.pre.lift();
        let (sp, sm) = st.split_at_mut(P::SLOTS);
        let q = pre.update(g, a, sp);
        let d = self.mom.lift().increment(g, &pre, q, sm);
        if !(d.is_finite() && R::finish_finite(&reg, d, q, &pre)) {
            return None;
        }
        let mut out = [(0.0, 0.0); MAX_SLOTS];
        for (o, s) in out.iter_mut().zip(st).take(Self::SLOTS) {
            if !s.is_finite() {
                return None;
            }
            *o = (s.lo, s.hi);
        }
        Some(out)
    }
}

/// The exact check behind [`ElementUpdate::guard`]: run the update on copies, write nothing.
/// `Err(i)` for the first index whose new `x` is not finite although `x_i` was, or whose new
/// state is not finite; else the `[min, max]` of every used slot's new values (`(∞, −∞)` for an
/// empty buffer). Lengths as [`fused_step`] requires (the caller checked them). Long buffers are
/// checked in parallel pieces (the first failing index is still the one reported).
pub fn dry_run<T: Float, U: ElementUpdate<T>>(
    u: &U,
    b: &Buffers<'_, T>,
) -> Result<SlotRanges, usize> {
    let n = b.x.len();
    let x: &[T] = b.x;
    let s: [&[T]; MAX_SLOTS] = [&*b.slots[0], &*b.slots[1], &*b.slots[2]];
    let piece = |lo: usize, hi: usize| -> Result<SlotRanges, usize> {
        let mut r = [(f64::INFINITY, f64::NEG_INFINITY); MAX_SLOTS];
        for i in lo..hi {
            let mut st = [T::ZERO; MAX_SLOTS];
            for (j, v) in st.iter_mut().enumerate().take(U::SLOTS) {
                *v = s[j][i];
            }
            let a = if U::USES_AUX { b.aux[i] } else { T::ZERO };
            let xi = x[i];
            let xn = u.update(xi, b.g[i], a, &mut st);
            if (xi.is_finite() && !xn.is_finite())
                || st.iter().take(U::SLOTS).any(|v| !v.is_finite())
            {
                return Err(i);
            }
            for (rj, v) in r.iter_mut().zip(st).take(U::SLOTS) {
                let v = v.to_f64();
                rj.0 = rj.0.min(v);
                rj.1 = rj.1.max(v);
            }
        }
        Ok(r)
    };
    let hull = |a: Result<SlotRanges, usize>, c: Result<SlotRanges, usize>| match (a, c) {
        (Ok(mut p), Ok(q)) => {
            for (pj, qj) in p.iter_mut().zip(q) {
                pj.0 = pj.0.min(qj.0);
                pj.1 = pj.1.max(qj.1);
            }
            Ok(p)
        }
        (Err(i), Err(j)) => Err(i.min(j)),
        (Err(i), _) | (_, Err(i)) => Err(i),
    };
    if n >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        (0..n.div_ceil(PAR_CHUNK))
            .into_par_iter()
            .map(|c| piece(c * PAR_CHUNK, ((c + 1) * PAR_CHUNK).min(n)))
            .reduce(|| Ok([(f64::INFINITY, f64::NEG_INFINITY); MAX_SLOTS]), hull)
    } else {
        piece(0, n)
    }
}

/// `max |v|` over `v` (`0` when empty; `∞` when some value is not finite), on the calling
/// thread: [`scan_max`]'s compiled versions for the CPU's widest vectors (the reduction compiled
/// for the baseline target has no packed integer maximum before SSE4.1 and ran about five times
/// slower: 2.0 µs instead of 0.4 µs for 10⁴ `f32` on the AMD EPYC (Zen 4) of BENCHMARKS.md).
pub fn max_abs<T: Float>(v: &[T]) -> f64 {
    max_abs_at(v, usize::MAX, SimdLevel::detect())
}

/// [`max_abs`] split with the step team from `par_threshold` elements on, at `level`.
pub(crate) fn max_abs_at<T: Float>(v: &[T], par_threshold: usize, level: SimdLevel) -> f64 {
    scan_max_at(v, par_threshold, level).unwrap_or(f64::INFINITY)
}

/// Lanes of the reductions below: independent accumulators, so that the compiler keeps them in
/// vector registers (a floating-point max reduction through one accumulator is not vectorized:
/// the compiler may not reorder it without fast-math flags).
const REDUCE_LANES: usize = 32;

/// `[min, max]` of `v` (`(∞, −∞)` when empty; NaN never reaches it: state values are finite).
pub(crate) fn min_max<T: Float>(v: &[T]) -> (f64, f64) {
    let (mut lo, mut hi) = (
        [f64::INFINITY; REDUCE_LANES],
        [f64::NEG_INFINITY; REDUCE_LANES],
    );
    let mut chunks = v.chunks_exact(REDUCE_LANES);
    for c in &mut chunks {
        for j in 0..REDUCE_LANES {
            let a = c[j].to_f64();
            lo[j] = if a < lo[j] { a } else { lo[j] };
            hi[j] = if a > hi[j] { a } else { hi[j] };
        }
    }
    let (mut l, mut h) = (f64::INFINITY, f64::NEG_INFINITY);
    for j in 0..REDUCE_LANES {
        l = l.min(lo[j]);
        h = h.max(hi[j]);
    }
    for &a in chunks.remainder() {
        l = l.min(a.to_f64());
        h = h.max(a.to_f64());
    }
    (l, h)
}

/// Which compiled version of the loop runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    /// The baseline target (SSE2 on x86-64).
    Baseline,
    /// AVX2 + FMA (x86-64 only).
    Avx2,
    /// AVX-512F (with AVX2 + FMA; x86-64 only): 512-bit vectors, the Intel Xeon (and AMD Zen 4+)
    /// level.
    Avx512,
}

impl SimdLevel {
    /// The best level this CPU supports (detected once, then cached: no allocation per call).
    pub fn detect() -> SimdLevel {
        static BEST: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            if SimdLevel::Avx512.supported() {
                SimdLevel::Avx512
            } else if SimdLevel::Avx2.supported() {
                SimdLevel::Avx2
            } else {
                SimdLevel::Baseline
            }
        })
    }

    /// Whether this CPU can run the level (`Baseline` always).
    pub fn supported(self) -> bool {
        match self {
            SimdLevel::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => {
                SimdLevel::Avx2.supported() && std::arch::is_x86_feature_detected!("avx512f")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every level this CPU supports, lowest first (tests force each one).
    pub fn available() -> Vec<SimdLevel> {
        [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .filter(|l| l.supported())
            .collect()
    }

    /// The level that actually runs when `self` is asked for: `self` when the CPU supports it,
    /// else the best supported level below it.
    ///
    /// The supported levels are downward closed (AVX-512 is only supported with AVX2+FMA), so
    /// this is the lower of `self` and [`SimdLevel::detect`]: one cached load per fused pass.
    #[inline]
    pub fn effective(self) -> SimdLevel {
        match (self, SimdLevel::detect()) {
            (SimdLevel::Baseline, _) | (_, SimdLevel::Baseline) => SimdLevel::Baseline,
            (SimdLevel::Avx2, _) | (_, SimdLevel::Avx2) => SimdLevel::Avx2,
            (SimdLevel::Avx512, SimdLevel::Avx512) => SimdLevel::Avx512,
        }
    }
}

/// The buffers of one fused pass. `aux` is read only if the update uses it, slot `j` only if
/// `j < U::SLOTS`; the used ones must have the length of `x` (checked, see [`fused_step`]).
#[derive(Debug)]
pub struct Buffers<'a, T> {
    /// Parameters (updated in place).
    pub x: &'a mut [T],
    /// Gradient.
    pub g: &'a [T],
    /// Read-only per-element data (a fixed diagonal `P`), or empty.
    pub aux: &'a [T],
    /// State slots (unused ones empty).
    pub slots: [&'a mut [T]; MAX_SLOTS],
}

/// The loop over one piece. With `DETECT`, also an OR over `!g[i].is_finite()` (a vector
/// compare per element folded into the same pass, no extra memory traffic): `true` when the
/// piece had a non-finite gradient entry.
#[inline(always)]
fn fused_loop<T: Float, U: ElementUpdate<T>, const DETECT: bool>(u: &U, b: Buffers<'_, T>) -> bool {
    let Buffers {
        x,
        g,
        aux,
        slots: [s0, s1, s2],
    } = b;
    let n = x.len();
    let g = &g[..n];
    let aux = if U::USES_AUX { &aux[..n] } else { aux };
    let s0 = if U::SLOTS > 0 { &mut s0[..n] } else { s0 };
    let s1 = if U::SLOTS > 1 { &mut s1[..n] } else { s1 };
    let s2 = if U::SLOTS > 2 { &mut s2[..n] } else { s2 };
    let mut bad = false;
    for i in 0..n {
        let mut st = [T::ZERO; MAX_SLOTS];
        if U::SLOTS > 0 {
            st[0] = s0[i];
        }
        if U::SLOTS > 1 {
            st[1] = s1[i];
        }
        if U::SLOTS > 2 {
            st[2] = s2[i];
        }
        let a = if U::USES_AUX { aux[i] } else { T::ZERO };
        let gi = g[i];
        if DETECT {
            bad |= !gi.is_finite();
        }
        x[i] = u.update(x[i], gi, a, &mut st);
        if U::SLOTS > 0 {
            s0[i] = st[0];
        }
        if U::SLOTS > 1 {
            s1[i] = st[1];
        }
        if U::SLOTS > 2 {
            s2[i] = st[2];
        }
    }
    bad
}

#[inline(never)]
fn fused_loop_baseline<T: Float, U: ElementUpdate<T>, const DETECT: bool>(
    u: &U,
    b: Buffers<'_, T>,
) -> bool {
    fused_loop::<T, U, DETECT>(u, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
fn fused_loop_avx2<T: Float, U: ElementUpdate<T>, const DETECT: bool>(
    u: &U,
    b: Buffers<'_, T>,
) -> bool {
    fused_loop::<T, U, DETECT>(u, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline(never)]
fn fused_loop_avx512<T: Float, U: ElementUpdate<T>, const DETECT: bool>(
    u: &U,
    b: Buffers<'_, T>,
) -> bool {
    fused_loop::<T, U, DETECT>(u, b)
}

/// Buffers `b` split at element `at` (unused ones stay empty): the parts before and after.
fn split_buffers<'a, T: Float, U: ElementUpdate<T>>(
    b: Buffers<'a, T>,
    at: usize,
) -> (Buffers<'a, T>, Buffers<'a, T>) {
    fn split<T>(s: &mut [T], used: bool, at: usize) -> (&mut [T], &mut [T]) {
        if used {
            s.split_at_mut(at)
        } else {
            (&mut [], &mut [])
        }
    }
    let Buffers {
        x,
        g,
        aux,
        slots: [s0, s1, s2],
    } = b;
    let (x0, x1) = x.split_at_mut(at);
    let (g0, g1) = g.split_at(at);
    let (a0, a1) = if U::USES_AUX {
        aux.split_at(at)
    } else {
        (aux, aux)
    };
    let (s00, s01) = split(s0, U::SLOTS > 0, at);
    let (s10, s11) = split(s1, U::SLOTS > 1, at);
    let (s20, s21) = split(s2, U::SLOTS > 2, at);
    (
        Buffers {
            x: x0,
            g: g0,
            aux: a0,
            slots: [s00, s10, s20],
        },
        Buffers {
            x: x1,
            g: g1,
            aux: a1,
            slots: [s01, s11, s21],
        },
    )
}

/// Length in bytes of `x` from which [`run_chunk`] runs the elements before `x`'s first 64-byte
/// boundary apart: below it the second call costs more than the straddled lines (kernel pass,
/// SGD `f32`, `x` and `g` 16 bytes past a boundary, apart / not: 16 elements 44 / 22 ns, 256:
/// 66 / 55 ns, 1024: 110 / 118 ns, 4096: 387 / 478 ns).
const PEEL_MIN_BYTES: usize = 4096;

/// One piece at `level`. From [`PEEL_MIN_BYTES`] on, the elements before the first 64-byte
/// boundary of `x` run first (the baseline loop: at most one vector's worth), so that the vector loop's loads and stores of
/// `x`, and of every buffer at the same address modulo 64 (those of one allocator usually
/// are: large `Vec`s all start 16 bytes past a page), never straddle two cache lines. Each
/// element is the same arithmetic either way. Measured on the AMD EPYC (Zen 4) of
/// BENCHMARKS.md, SGD `f32`, n = 10⁴ (L1/L2-resident), `x` and `g` 16 bytes past a 64-byte
/// boundary: 895 → 698 ns per pass (48 bytes past: 972 → 697; aligned: 726 → 698); a step of
/// `Optimizer` on two 10⁶-element `Vec`s: 60 → 47 µs.
#[inline(always)]
fn run_chunk<T: Float, U: ElementUpdate<T>, const DETECT: bool>(
    u: &U,
    level: SimdLevel,
    b: Buffers<'_, T>,
) -> bool {
    let n = b.x.len();
    let head = b.x.as_ptr().align_offset(64);
    let peel = head > 0 && head < n && std::mem::size_of_val(b.x) >= PEEL_MIN_BYTES;
    let (mut bad, b) = if peel {
        let (h, rest) = split_buffers::<T, U>(b, head);
        (fused_loop_baseline::<T, U, DETECT>(u, h), rest)
    } else {
        (false, b)
    };
    bad |= match level.effective() {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => {
            // SAFETY: `effective` returns Avx512 only when the CPU has AVX-512F, AVX2 and FMA.
            unsafe { fused_loop_avx512::<T, U, DETECT>(u, b) }
        }
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => {
            // SAFETY: `effective` returns Avx2 only when the CPU has AVX2 and FMA.
            unsafe { fused_loop_avx2::<T, U, DETECT>(u, b) }
        }
        _ => fused_loop_baseline::<T, U, DETECT>(u, b),
    };
    bad
}

/// When a fused step (and the non-finite scan) is split across threads: tuning values
/// with measured defaults, passed as a value (faer's `*Params` style). The split lengths are
/// in bytes of one buffer (`n · size_of::<T>()`): the crossover of a memory-bound step follows
/// the bytes it moves, so one value serves `f32` and `f64` ([`Self::split_length`] turns it
/// into elements); the wake lengths are in elements.
///
/// Measured on the 2-core AMD EPYC (Zen 4) VM of BENCHMARKS.md: steps back to back (the step
/// team's helper awake; a Rust probe, 41 interleaved rounds per size, serial against split,
/// sessions 16, 21 and 22), and steps separated by 1 ms of other work (the helper asleep, woken
/// by the step; session 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParallelParams {
    /// Bytes per buffer from which a memory-light step (SGD, momentum, fixed `P`; and the
    /// non-finite check of such a step's gradient) is split while the step team's helpers are
    /// awake, at the reference hand-off latency ([`ParallelParams::current`] scales it with
    /// the measured one). Default 32 KiB (`f64` 4096 elements, `f32` 8192): SGD
    /// (`propagate`), time split / serial with the VM's two virtual CPUs near each other
    /// (session 22, with the by-value chunk closures of [`fused_step`]'s split, even chunks):
    /// `f64` 1.15 at 2048 elements, 1.07 at 3072, 0.95 at 4096, 0.85 at 6144, 0.71 at 10⁴;
    /// `f32` 1.22 at 4096, 1.0–1.2 at 8192, 0.92 at 10⁴, 0.89 at 12 Ki, 0.70–0.73 at 24 Ki.
    /// With the caller's chunk 3 KiB longer (its head start over a helper, session 23) `f32`
    /// at 10⁴ against the C loop (`benches/peers/c_reference.c`, three alternations, near):
    /// split (32 KiB) 1.07–1.18 of the C loop's throughput, serial (40 KiB, the length
    /// before) 0.84–0.88; `f64` at 10⁴ 1.38–1.46 with the head start, 1.20–1.37 without.
    /// Far apart (hand-off 4.2–4.5 times the reference) the crossover was at about 160 KiB:
    /// `f32` 1.12 at 32 Ki, 0.90 at 48 Ki; `f64` 1.11 at 16 Ki, 0.91 at 24 Ki.
    pub split_bytes: usize,
    /// The same for an arithmetic-bound step ([`ElementUpdate::HEAVY`]: AdaGrad, RMSProp, Adam,
    /// AdamW) and its gradient's check. Default 16 KiB (`f64` 2048 elements, `f32` 4096): Adam
    /// (`error`) split / serial near: `f32` 1.16 at 2048, 0.91 at 4096, 0.77 at 8192; `f64`
    /// 0.91 at 1024, 0.77 at 2048, 0.67 at 4096; far: `f32` 1.33 at 8192, 1.07 at 16 Ki, 0.91
    /// at 24 Ki; `f64` 0.76 at 12 Ki.
    pub split_bytes_heavy: usize,
    /// Length from which a memory-light step wakes helpers that have fallen asleep (a
    /// shorter one runs on the caller alone and wakes them only when it follows the previous
    /// step within the helpers' spin time). Default `3 · 2^18`: SGD f32 steps 1 ms apart,
    /// serial / waking, 59 / 74 µs at 2^19 elements, 137 / 126 µs at 10⁶.
    pub wake: usize,
    /// The same for an arithmetic-bound step. Default `2^18`: Adam f32 steps 1 ms apart,
    /// serial / waking, 79 / 63 µs at 2^18 elements, 328 / 237 µs at 10⁶.
    pub wake_heavy: usize,
}

impl Default for ParallelParams {
    fn default() -> Self {
        ParallelParams {
            split_bytes: 32 << 10,
            split_bytes_heavy: 16 << 10,
            wake: 3 << 18,
            wake_heavy: 1 << 18,
        }
    }
}

impl ParallelParams {
    /// The defaults with both split lengths multiplied by the step team's factor for the
    /// hand-off latency it measures ([`handoff_latency`]): the latency over the one the
    /// defaults were measured at (208 time-stamp ticks), between 1 and 8, in sixteenths; a
    /// split pays back the two hand-offs it costs (to the helper and back) from a length in
    /// proportion to them.
    pub fn current() -> Self {
        let d = Self::default();
        let s = crate::team::split_scale();
        let one = crate::team::SCALE_ONE;
        ParallelParams {
            split_bytes: d.split_bytes.saturating_mul(s) / one,
            split_bytes_heavy: d.split_bytes_heavy.saturating_mul(s) / one,
            ..d
        }
    }

    /// The split length in elements of `T` of a step that is arithmetic-bound (`heavy`) or not:
    /// [`Self::split_bytes_heavy`] or [`Self::split_bytes`] over `size_of::<T>()`.
    pub fn split_length<T>(&self, heavy: bool) -> usize {
        let bytes = if heavy {
            self.split_bytes_heavy
        } else {
            self.split_bytes
        };
        bytes / std::mem::size_of::<T>().max(1)
    }

    /// The split length in elements for the update `U`: [`Self::split_length`] with
    /// [`ElementUpdate::HEAVY`].
    pub fn threshold_for<T: Float, U: ElementUpdate<T>>(&self) -> usize {
        self.split_length::<T>(U::HEAVY)
    }

    /// The length from which the update `U` wakes sleeping helpers: [`Self::wake_heavy`] when
    /// `U::HEAVY`, else [`Self::wake`].
    pub fn wake_for<T: Float, U: ElementUpdate<T>>(&self) -> usize {
        if U::HEAVY { self.wake_heavy } else { self.wake }
    }
}

/// Smallest piece of a parallel split.
const MIN_PAR_CHUNK: usize = 1 << 11;
/// Chunk length of the parallel dry run.
const PAR_CHUNK: usize = 1 << 15;

/// Buffers shorter than this are split into one chunk per thread ([`par_leaf`]): each chunk
/// claimed is a round trip of the claim counter between the cores, and a short step cannot
/// spare it. Measured on the AMD EPYC (Zen 4) VM of BENCHMARKS.md (virtual CPUs near each
/// other; Rust probe, eight alternations, SGD split, one chunk per thread against four):
/// `f32` 24 Ki elements 1.27–1.31 against 1.42–1.46 µs (one run 1.50), `f64` 10⁴ 1.10–1.13
/// against 1.24–1.27; `f32` 128 Ki (512 KiB, past this length) 4.9–5.2 against 5.2–5.5; Adam
/// `f32` 64 Ki 11.5–11.7 against 11.9–12.0.
const ONE_CHUNK_PER_THREAD_BYTES: usize = 256 << 10;

/// Chunk length of the parallel split of `n` elements of `T` over `threads` threads (the
/// update's [`par_run`] and the pre-scan split alike): one chunk per thread for buffers
/// shorter than [`ONE_CHUNK_PER_THREAD_BYTES`], else about four per thread, at least
/// [`MIN_PAR_CHUNK`]; a multiple of 64 elements (whole cache lines and vectors).
fn par_leaf<T>(n: usize, threads: usize) -> usize {
    let per = if n.saturating_mul(std::mem::size_of::<T>()) < ONE_CHUNK_PER_THREAD_BYTES {
        n.div_ceil(threads.max(1))
    } else {
        MIN_PAR_CHUNK.max(n.div_ceil(4 * threads))
    };
    (per + 63) & !63
}

/// Bytes per buffer by which the caller's chunk (chunk 0) of a memory-light step split one
/// chunk per thread is longer than a helper's, at the reference hand-off latency (scaled by
/// the measured one as the split lengths are, [`ParallelParams::current`]): the caller starts
/// its chunk at once, a helper only once it has seen the post and claimed its chunk. A light
/// pass in the L2 moves about one cache line per time-stamp tick on the AMD EPYC (Zen 4) VM of
/// BENCHMARKS.md, so a head start of a few hundred ticks is a few KiB. Measured there (Rust
/// probe `benches/peers/goals_session23_amd_zen4_optim/split_protocol_probe.rs`, SGD `f32`
/// at 10⁴ split in two, virtual CPUs near, medians of 41 rounds of 2000 steps): the caller's
/// share 32/64 (even) 2371–2469 ticks per step, 35/64 (+1.9 KiB) 2153–2174, 38/64 (+3.7 KiB)
/// 2150–2209 (two alternations); then four alternations, even chunks 2319–2632, 37/64 1871–2444
/// (median 2134), this rule (+3 KiB, 58 %) 2128–2421 (serial 2075–2614 in the same runs: the
/// VM's other tenant). Arithmetic-bound steps keep even chunks (not measured).
const CALLER_HEAD_START_BYTES: usize = 3 << 10;

/// The length of chunk 0 (the caller's) of the split of `n` elements of `T` into chunks of
/// `chunk` ([`par_leaf`]) over `threads` threads, and the length of the others: for a
/// memory-light update split one chunk per thread, chunk 0 is longer by
/// [`CALLER_HEAD_START_BYTES`] (scaled) and the rest is shared evenly; otherwise all are
/// `chunk`. Multiples of 64 elements; chunk 0 never exceeds `n`.
fn par_first<T>(n: usize, chunk: usize, threads: usize, heavy: bool) -> (usize, usize) {
    let size = std::mem::size_of::<T>().max(1);
    if heavy || threads < 2 || n.saturating_mul(size) >= ONE_CHUNK_PER_THREAD_BYTES {
        return (chunk, chunk);
    }
    let scale = crate::team::split_scale();
    let extra = (CALLER_HEAD_START_BYTES * scale / crate::team::SCALE_ONE / size + 63) & !63;
    let first = (chunk + extra).min(n);
    let rest = ((n - first).div_ceil(threads - 1) + 63) & !63;
    (first, rest.max(64))
}

/// The default split length of [`fused_step`] for the update `U`
/// ([`ParallelParams::threshold_for`] of [`ParallelParams::current`]).
pub fn default_par_threshold<T: Float, U: ElementUpdate<T>>() -> usize {
    ParallelParams::current().threshold_for::<T, U>()
}

/// The step team's hand-off latency: the running average of the time from a caller posting a
/// split step to a spinning helper seeing it, in time-stamp-counter ticks (x86-64; 0 elsewhere
/// and before any split step), and the factor [`ParallelParams::current`] applies to the split
/// lengths for it. On a VM the two can change as the host moves its virtual CPUs.
pub fn handoff_latency() -> (u64, f64) {
    let s = crate::team::split_scale() as f64 / crate::team::SCALE_ONE as f64;
    (crate::team::handoff_ticks(), s)
}

/// A buffer's base pointer and length, shared by the threads of one step (each touches only
/// its chunks, see [`par_run`]).
#[derive(Clone, Copy)]
struct Raw<T>(*mut T, usize);

// SAFETY: used only by `par_run`, whose chunks are disjoint ranges of buffers that outlive
// the step (`team::run` returns after every chunk has run).
unsafe impl<T: Send + Sync> Sync for Raw<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Send for Raw<T> {}

impl<T> Raw<T> {
    fn of(s: &mut [T]) -> Self {
        Raw(s.as_mut_ptr(), s.len())
    }

    /// Elements `lo..hi` (an empty slice for an empty buffer).
    ///
    /// # Safety
    /// `lo ≤ hi ≤ len` when the buffer is not empty, and no other live reference to these
    /// elements.
    #[allow(clippy::mut_from_ref)]
    unsafe fn part<'a>(&self, lo: usize, hi: usize) -> &'a mut [T] {
        if self.1 == 0 {
            return &mut [];
        }
        debug_assert!(lo <= hi && hi <= self.1);
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(lo), hi - lo) }
    }

    /// Elements `lo..hi` read-only (an empty slice for an empty buffer).
    ///
    /// # Safety
    /// `lo ≤ hi ≤ len` when the buffer is not empty, and no live mutable reference to these
    /// elements.
    unsafe fn part_ref<'a>(&self, lo: usize, hi: usize) -> &'a [T] {
        if self.1 == 0 {
            return &[];
        }
        debug_assert!(lo <= hi && hi <= self.1);
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(self.0.cast_const().add(lo), hi - lo) }
    }
}

/// The update over chunk 0 of `first` elements and chunks of `chunk` elements after it
/// ([`par_first`]), spread over the calling thread (chunk 0 is the caller's) and the step
/// team's helpers (the `team` module; rayon's pool inside a rayon worker). Each chunk is the
/// same arithmetic on its elements whichever thread runs it: the split changes no result.
fn par_run<T: Float, U: ElementUpdate<T>, const DETECT: bool>(
    u: &U,
    level: SimdLevel,
    b: Buffers<'_, T>,
    (first, chunk): (usize, usize),
) -> bool {
    let n = b.x.len();
    let Buffers {
        x,
        g,
        aux,
        slots: [s0, s1, s2],
    } = b;
    let x = Raw::of(x);
    // read-only buffers as raw parts too (only ever read, through `part_ref`)
    let g = Raw(g.as_ptr().cast_mut(), g.len());
    let aux = Raw(aux.as_ptr().cast_mut(), aux.len());
    let slots = [Raw::of(s0), Raw::of(s1), Raw::of(s2)];
    let bad = std::sync::atomic::AtomicBool::new(false);
    let wake = n >= ParallelParams::default().wake_for::<T, U>();
    // the chunk closure holds what it reads by value (the update copied, the buffers as
    // pointer and length): a helper then fetches the closure from the caller's stack with
    // loads that do not depend on each other, where captured references were chains of
    // loads, each a cache line moved from the caller's core in turn (SGD `f32`, 10⁴
    // elements, split in two: the helper's half took 1.2–1.5 k time-stamp ticks against
    // 1.1 k after, and about 0.95 k when the caller ran both halves alone)
    let (u, flag) = (*u, &bad);
    let chunks = 1 + (n - first.min(n)).div_ceil(chunk);
    crate::team::run(chunks, wake, &move |c| {
        let (lo, hi) = if c == 0 {
            (0, first.min(n))
        } else {
            let lo = first + (c - 1) * chunk;
            (lo, (lo + chunk).min(n))
        };
        // SAFETY: chunk `c` is the range lo..hi of every buffer (all of length n or empty,
        // checked by `check_buffers`), disjoint from every other chunk, run once.
        let b = unsafe {
            Buffers {
                x: x.part(lo, hi),
                g: g.part_ref(lo, hi),
                aux: aux.part_ref(lo, hi),
                slots: [
                    slots[0].part(lo, hi),
                    slots[1].part(lo, hi),
                    slots[2].part(lo, hi),
                ],
            }
        };
        if run_chunk::<T, U, DETECT>(&u, level, b) {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    bad.into_inner()
}

/// Errors of [`fused_step`]: a used buffer whose length differs from `x`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLengthError {
    /// Which buffer (`"g"`, `"aux"`, `"slot0"`, …).
    pub what: &'static str,
    /// Its length.
    pub got: usize,
    /// `x.len()`.
    pub expected: usize,
}

/// Run the fused update `u` over the buffers in one pass: `level` picks the compiled version
/// (use [`SimdLevel::detect`]); buffers at least `par_threshold` long are split into chunks (one
/// per thread below 256 KiB per buffer, else about four per thread of at least 2 Ki elements),
/// run by the calling thread and the step team's
/// helper threads (rayon's pool when called from a rayon worker; pass [`default_par_threshold`]
/// for the measured default). The split does not change any result (every element is updated
/// by the same arithmetic). Lengths are checked before anything is written.
#[inline]
pub fn fused_step<T: Float, U: ElementUpdate<T>>(
    u: &U,
    b: Buffers<'_, T>,
    level: SimdLevel,
    par_threshold: usize,
) -> Result<(), BufferLengthError> {
    fused_step_impl::<T, U, false>(u, b, level, par_threshold).map(|_| ())
}

/// [`fused_step`] that also reports whether any gradient entry was NaN or infinite: `Ok(true)`
/// then. The detection is an OR of one vector comparison per element inside the same pass (no
/// extra read of `g`), so it cannot stop the update: the non-finite values have already flowed
/// into `x` and the state, exactly as in `torch.optim` (which does not check). This is what the
/// `"nonfinite": "propagate"` policy runs; the default policy instead scans `g` with
/// [`first_nonfinite`] before writing anything.
#[inline]
pub fn fused_step_detect<T: Float, U: ElementUpdate<T>>(
    u: &U,
    b: Buffers<'_, T>,
    level: SimdLevel,
    par_threshold: usize,
) -> Result<bool, BufferLengthError> {
    fused_step_impl::<T, U, true>(u, b, level, par_threshold)
}

/// The length checks of [`fused_step`]: every buffer the update uses is as long as `x`.
pub fn check_buffers<T: Float, U: ElementUpdate<T>>(
    _u: &U,
    b: &Buffers<'_, T>,
) -> Result<(), BufferLengthError> {
    let n = b.x.len();
    let check = |what, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(BufferLengthError {
                what,
                got: len,
                expected: n,
            })
        }
    };
    check("g", b.g.len())?;
    if U::USES_AUX {
        check("aux", b.aux.len())?;
    }
    for (j, s) in b.slots.iter().enumerate().take(U::SLOTS) {
        check(["slot0", "slot1", "slot2"][j], s.len())?;
    }
    Ok(())
}

/// [`fused_step`] and [`fused_step_detect`]. Inlined into their callers, with [`run_chunk`]:
/// two call frames fewer per step (a step is a chain of a dozen calls before its loop, each
/// saving and restoring registers and passing the six buffers on). Measured with callgrind
/// on the AMD EPYC (Zen 4) of BENCHMARKS.md, one 16-element `f32` step through the C ABI with
/// `propagate`, instructions per step: SGD 1047 → 967, RMSprop 1139 → 1052, Adam 1449 → 1362.
#[inline(always)]
fn fused_step_impl<T: Float, U: ElementUpdate<T>, const DETECT: bool>(
    u: &U,
    b: Buffers<'_, T>,
    level: SimdLevel,
    par_threshold: usize,
) -> Result<bool, BufferLengthError> {
    check_buffers(u, &b)?;
    let n = b.x.len();
    // (the team is started only by a step long enough to split)
    let threads = if n >= par_threshold {
        crate::team::threads()
    } else {
        1
    };
    Ok(if threads > 1 {
        let leaf = par_leaf::<T>(n, threads);
        par_run::<T, U, DETECT>(u, level, b, par_first::<T>(n, leaf, threads, U::HEAVY))
    } else {
        run_chunk::<T, U, DETECT>(u, level, b)
    })
}

/// Gradients up to this size (a step below the split length, in the L2 cache) are scanned in
/// 4 KiB blocks, last block first, so that the front of `g` is in the L1 cache when the update
/// starts reading it. Measured on the AMD EPYC (Zen 4) of BENCHMARKS.md, `f32`, 10⁴ elements,
/// time of the checked step over SGD's `propagate` step (15 interleaved rounds, three runs):
/// SGD 1.59 / 1.60 / 1.55 → 1.46 / 1.46 / 1.48 (1.24–1.33 → 1.14 µs), SGD with momentum
/// 2.07 / 2.10 / 2.05 → 1.96 / 1.97 / 1.99; at 10⁵ (split over two threads) no gain, so the
/// large blocks stay there.
const SMALL_SCAN_BYTES: usize = 128 << 10;

/// Gradients from this size on (beyond the L2 caches, most of the L3) are pre-scanned as
/// [`SCAN_STREAMS`] interleaved forward streams per chunk: one stream per core leaves the
/// memory system idle between the hardware prefetcher's requests (a read-only pass ran at
/// about half the bytes per second of an update that reads two streams and writes one).
/// Measured on the AMD EPYC (Zen 4) of BENCHMARKS.md, two threads, `f32`, 61 interleaved
/// rounds, time over SGD's `propagate` step, `error` policy one stream / four streams: 10⁶
/// elements 1.50 / 1.55 (in the caches: the backward blocks win, so not used there), 2 · 10⁶
/// 1.54 / 1.51, 3 · 10⁶ 1.40–1.54 / 1.33–1.48, 6 · 10⁶ 1.53 / 1.46, 10⁷ 1.56–1.61 / 1.42–1.45
/// (the pre-scan alone 0.44 / 0.31 of the update), 3 · 10⁷ 1.62 / 1.53; SGD with momentum at
/// 10⁷ −7 %, Adam −3 %; a second probe at 10⁷: Adam `f32` −6 %, momentum −8 %, Adagrad −5 %,
/// SGD `f64` −10 %, Adam `f64` −6 %, momentum `f64` −7 %. Two, six or eight streams, steps of
/// 512 B or 4 KiB: no better. (The update itself split into two or four interleaved
/// streams per thread: 4–19 % slower on two threads.)
const STREAMS_MIN_BYTES: usize = 8 << 20;

/// Interleaved streams of the pre-scan of a long gradient ([`STREAMS_MIN_BYTES`]).
const SCAN_STREAMS: usize = 4;

/// Bytes each stream advances per turn.
const STREAM_STEP_BYTES: usize = 1024;

/// The pre-scan of a step: `Ok(max |g_i|)` when every value is finite, else `Err(i)` for the
/// first non-finite index. One pass, as [`first_nonfinite`] (the maximum is a vector max folded
/// into the same blocks).
pub fn scan_max<T: Float>(g: &[T], par_threshold: usize) -> Result<f64, usize> {
    scan_max_at(g, par_threshold, SimdLevel::detect())
}

/// [`scan_max`] with the compiled version picked by `level` (a level the CPU lacks falls back
/// to the best one below it, [`SimdLevel::effective`]); the tests run every level.
pub(crate) fn scan_max_at<T: Float>(
    g: &[T],
    par_threshold: usize,
    level: SimdLevel,
) -> Result<f64, usize> {
    #[inline(always)]
    fn block_impl<T: Float>(b: &[T]) -> (bool, T) {
        T::finite_max_abs(b)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn block_avx2<T: Float>(b: &[T]) -> (bool, T) {
        block_impl(b)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2")]
    fn block_avx512<T: Float>(b: &[T]) -> (bool, T) {
        block_impl(b)
    }
    #[inline(always)]
    fn streams_impl<T: Float>(b: &[T]) -> (bool, T) {
        let step = STREAM_STEP_BYTES / std::mem::size_of::<T>();
        let q = b.len() / SCAN_STREAMS / step * step;
        let mut m = T::ZERO;
        let mut i = 0;
        while i < q {
            let mut ok = true;
            for s in 0..SCAN_STREAMS {
                let (o, bm) = T::finite_max_abs(&b[s * q + i..s * q + i + step]);
                ok &= o;
                m = m.maxv(bm);
            }
            if !ok {
                return (false, T::from_f64(f64::INFINITY));
            }
            i += step;
        }
        let (o, bm) = T::finite_max_abs(&b[SCAN_STREAMS * q..]);
        (o, m.maxv(bm))
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn streams_avx2<T: Float>(b: &[T]) -> (bool, T) {
        streams_impl(b)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2")]
    fn streams_avx512<T: Float>(b: &[T]) -> (bool, T) {
        streams_impl(b)
    }
    let level = level.effective();
    let streams_at = move |b: &[T]| -> (bool, T) {
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F (and AVX2) support was detected at run time (`effective`).
            SimdLevel::Avx512 => unsafe { streams_avx512(b) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 support was detected at run time.
            SimdLevel::Avx2 => unsafe { streams_avx2(b) },
            _ => streams_impl(b),
        }
    };
    let block_at = move |b: &[T]| -> (bool, T) {
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F (and AVX2) support was detected at run time (`effective`).
            SimdLevel::Avx512 => unsafe { block_avx512(b) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 support was detected at run time.
            SimdLevel::Avx2 => unsafe { block_avx2(b) },
            _ => block_impl(b),
        }
    };
    // the elements before the first 64-byte boundary apart (as the update's `run_chunk`)
    let block = move |b: &[T]| -> (bool, T) {
        let head = b.as_ptr().align_offset(64).min(b.len());
        if head == 0 || std::mem::size_of_val(b) < PEEL_MIN_BYTES {
            return block_at(b);
        }
        let (h, rest) = b.split_at(head);
        let ((ok0, m0), (ok1, m1)) = (block_impl(h), block_at(rest));
        (ok0 && ok1, m0.maxv(m1))
    };
    // backwards, block by block: the last blocks read are the first the update then reads
    // (still in this core's cache); a failing block only marks the range, the first index is
    // found afterwards by a forward search. Blocks of 4 KiB for a gradient of at most
    // `SMALL_SCAN_BYTES` (in the L2 cache), else of 256 KiB: within a block the reads run
    // forward, so the hardware prefetchers stream; each backward jump restarts them. On the
    // AMD EPYC (Zen 4) of BENCHMARKS.md, n = 10⁷ f32 from memory on two threads: 16 KiB
    // blocks 16.5–18.9 GB/s, 64 KiB 30.0, 128 KiB 36.3, 256 KiB 41.0, 512 KiB 43.0, a forward
    // scan 42.5; at n = 3 · 10⁶ (in the L3 cache) 79.6, 96.9, 100.0, 87.3, 90.4, 87.7 GB/s.
    let block_len = if std::mem::size_of_val(g) <= SMALL_SCAN_BYTES {
        (4 << 10) / std::mem::size_of::<T>()
    } else {
        (256 << 10) / std::mem::size_of::<T>()
    };
    // From `STREAMS_MIN_BYTES` on (beyond the caches, where reuse by the update is small) a
    // part is read as `SCAN_STREAMS` interleaved forward streams instead (after the elements
    // before its first 64-byte boundary).
    let scan_back = move |part: &[T]| -> Result<f64, ()> {
        if std::mem::size_of_val(g) >= STREAMS_MIN_BYTES {
            let head = part.as_ptr().align_offset(64).min(part.len());
            let (h, rest) = part.split_at(head);
            let (ok0, m0) = block_impl(h);
            let (ok1, m1) = streams_at(rest);
            return if ok0 && ok1 {
                Ok(m0.maxv(m1).to_f64())
            } else {
                Err(())
            };
        }
        let mut m = 0.0f64;
        for b in part.rchunks(block_len) {
            let (ok, bm) = block(b);
            if !ok {
                return Err(());
            }
            m = m.max(bm.to_f64());
        }
        Ok(m)
    };
    let first_from = |s: usize| s + g[s..].iter().position(|v| !v.is_finite()).unwrap_or(0);
    // (the team is started only by a scan long enough to split)
    let threads = if g.len() >= par_threshold {
        crate::team::threads()
    } else {
        1
    };
    if threads > 1 {
        // the chunks of the update's `par_run`, claimed from the same ends (`team`: the caller
        // from the front, the helpers from the back), so that each thread scans the chunks it
        // then updates (still in its own core's caches when they fit)
        use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
        let leaf = par_leaf::<T>(g.len(), threads);
        let chunks = g.len().div_ceil(leaf);
        let max_bits = AtomicU64::new(0);
        let first_bad = AtomicUsize::new(usize::MAX);
        let wake = g.len() >= ParallelParams::default().wake;
        // by value, as the update's chunk closure in `par_run`
        let (max_ref, bad_ref) = (&max_bits, &first_bad);
        crate::team::run(chunks, wake, &move |k| {
            let part = &g[k * leaf..((k + 1) * leaf).min(g.len())];
            match scan_back(part) {
                // a non-negative f64's bits order as the value
                Ok(m) => {
                    max_ref.fetch_max(m.to_bits(), Ordering::Relaxed);
                }
                Err(()) => {
                    bad_ref.fetch_min(k, Ordering::Relaxed);
                }
            }
        });
        match first_bad.into_inner() {
            usize::MAX => Ok(f64::from_bits(max_bits.into_inner())),
            k => Err(first_from(k * leaf)),
        }
    } else {
        scan_back(g).map_err(|()| first_from(0))
    }
}

/// Index of the first non-finite value, if any ([`scan_max`]'s blocked reduction, the maximum
/// discarded).
pub fn first_nonfinite<T: Float>(g: &[T], par_threshold: usize) -> Option<usize> {
    scan_max(g, par_threshold).err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The caller's chunk of a light split one chunk per thread is longer by the head start
    /// (at least, the latency factor may scale it up), the others share the rest evenly; the
    /// chunks tile `0..n` in multiples of 64; heavy updates, long buffers and one thread keep
    /// even chunks.
    #[test]
    fn the_callers_chunk_has_a_head_start() {
        for (n, threads) in [
            (10_000usize, 2usize),
            (20_000, 2),
            (30_000, 3),
            (65_000, 4),
            (100, 2),
        ] {
            let leaf = par_leaf::<f32>(n, threads);
            let (first, rest) = par_first::<f32>(n, leaf, threads, false);
            let extra = CALLER_HEAD_START_BYTES / 4;
            assert!(first >= (leaf + extra).min(n), "n {n}: {first} {leaf}");
            assert!(first.is_multiple_of(64) || first == n);
            assert!(rest.is_multiple_of(64) && rest > 0);
            let chunks = 1 + (n - first).div_ceil(rest);
            assert!(chunks <= threads, "n {n}: {chunks} chunks");
            assert_eq!(par_first::<f32>(n, leaf, threads, true), (leaf, leaf));
            assert_eq!(par_first::<f32>(n, leaf, 1, false), (leaf, leaf));
        }
        let n = 1 << 20;
        let leaf = par_leaf::<f32>(n, 2);
        assert_eq!(par_first::<f32>(n, leaf, 2, false), (leaf, leaf));
    }

    /// A value of a test vector: ordinary magnitudes, zeros, extremes and the non-finite values.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => -1e3f64..1e3,
            1 => Just(0.0),
            1 => Just(-0.0),
            1 => Just(f64::MAX),
            1 => Just(-f64::MIN_POSITIVE / 4.0),
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
        ]
    }

    /// The reductions as one plain loop each: the truth the laned versions must equal.
    fn naive<T: Float>(v: &[T]) -> (Result<f64, usize>, (f64, f64)) {
        let first_bad = v.iter().position(|a| !a.is_finite());
        let m = v
            .iter()
            .filter(|a| a.is_finite())
            .fold(0.0f64, |m, a| m.max(a.abs().to_f64()));
        let finite: Vec<f64> = v.iter().map(|a| a.to_f64()).collect();
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (first_bad.map_or(Ok(m), Err), (lo, hi))
    }

    // exact equality intended: a maximum or minimum is one of the inputs
    #[allow(clippy::float_cmp)]
    fn check<T: Float>(v: &[T]) {
        let (want, (lo, hi)) = naive(v);
        for th in [1, usize::MAX] {
            assert_eq!(scan_max(v, th), want, "threshold {th}");
            for level in SimdLevel::available() {
                assert_eq!(scan_max_at(v, th, level), want, "threshold {th}, {level:?}");
            }
        }
        // every start modulo 64 bytes (the elements before the first boundary run apart)
        for k in 1..v.len().min(64 / std::mem::size_of::<T>()) {
            let (want, _) = naive(&v[k..]);
            for level in SimdLevel::available() {
                assert_eq!(
                    scan_max_at(&v[k..], usize::MAX, level),
                    want,
                    "from {k}, {level:?}"
                );
            }
        }
        assert_eq!(first_nonfinite(v, 1), want.err());
        assert_eq!(max_abs(v), want.unwrap_or(f64::INFINITY));
        if want.is_ok() {
            assert_eq!(min_max(v), (lo, hi));
        }
    }

    /// Scans of at least 4 KiB run the elements before the first 64-byte boundary apart: a
    /// non-finite value or the largest magnitude there is found from every start offset.
    fn head_case<T: Float>() {
        let lanes = 64 / std::mem::size_of::<T>();
        let len = 8192 / std::mem::size_of::<T>() + 2 * lanes;
        for level in SimdLevel::available() {
            for k in 0..lanes {
                for j in 0..lanes + 2 {
                    let mut v = vec![T::from_f64(0.5); len];
                    v[k + j] = T::from_f64(f64::NAN);
                    assert_eq!(
                        scan_max_at(&v[k..], usize::MAX, level),
                        Err(j),
                        "{level:?} {k} {j}"
                    );
                    v[k + j] = T::from_f64(-3.0);
                    assert_eq!(
                        scan_max_at(&v[k..], usize::MAX, level),
                        Ok(3.0),
                        "{level:?} {k} {j}"
                    );
                }
            }
        }
    }

    /// A gradient of at least `STREAMS_MIN_BYTES` is scanned as interleaved streams: a
    /// non-finite value or the largest magnitude is found at the first and last element of
    /// every stream, in the tail after the last whole turn, in the head before the first 64-byte
    /// boundary and at seeded random places, from aligned and unaligned starts, split over the
    /// team or not, at every compiled level.
    fn streams_case<T: Float>() {
        let size = std::mem::size_of::<T>();
        let step = STREAM_STEP_BYTES / size;
        let len = STREAMS_MIN_BYTES / size + 3 * step + 37;
        let mut v = vec![T::from_f64(0.5); len + 8];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for k in [0, 1, 3] {
            let body = &v[k..k + len];
            let head = body.as_ptr().align_offset(64).min(len);
            let q = (len - head) / SCAN_STREAMS / step * step;
            let mut at: Vec<usize> = (0..SCAN_STREAMS)
                .flat_map(|s| [head + s * q, head + s * q + q - 1])
                .chain([head + SCAN_STREAMS * q, len - 1])
                .chain(head.checked_sub(1))
                .collect();
            for _ in 0..4 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                at.push((seed >> 33) as usize % len);
            }
            for &j in &at {
                for (put, want) in [(f64::NAN, Err(j)), (-1e3, Ok(1e3))] {
                    v[k + j] = T::from_f64(put);
                    for th in [1, usize::MAX] {
                        for level in SimdLevel::available() {
                            assert_eq!(
                                scan_max_at(&v[k..k + len], th, level),
                                want,
                                "start {k}, index {j}, threshold {th}, {level:?}"
                            );
                        }
                    }
                    v[k + j] = T::from_f64(0.5);
                }
            }
        }
    }

    #[test]
    fn long_gradients_are_scanned_as_interleaved_streams() {
        streams_case::<f32>();
        streams_case::<f64>();
    }

    #[test]
    fn the_head_before_the_first_boundary_is_scanned() {
        head_case::<f32>();
        head_case::<f64>();
    }

    proptest! {
        /// Every length around the lane count and the scan's block size, non-finite values
        /// anywhere: the laned reductions equal the plain loops (f64, and the same values
        /// rounded to f32).
        #[test]
        fn laned_reductions_equal_plain_loops(
            v in prop::collection::vec(value(), 0..300),
            tail in prop::collection::vec(-1.0f64..1.0, 0..2 * 4096 + 70),
        ) {
            let mut w = tail;
            w.extend_from_slice(&v);
            check(&v);
            check(&w);
            let v32: Vec<f32> = v.iter().map(|&a| a as f32).collect();
            let w32: Vec<f32> = w.iter().map(|&a| a as f32).collect();
            check(&v32);
            check(&w32);
        }
    }
}
