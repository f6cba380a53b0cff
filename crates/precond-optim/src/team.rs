//! Running the chunks of one optimizer step on the calling thread and helper threads that stay
//! awake between steps.
//!
//! Why not `rayon::join` from the caller: a caller outside the rayon pool (the C ABI's caller,
//! a program's main thread) injects the work and sleeps on a lock until a worker has run it,
//! and the workers themselves fall asleep within microseconds of going idle. Each step then
//! pays two or three wake-ups. On the 2-core AMD EPYC (Zen 4) of session 15 an SGD step on
//! 10⁶ `f32` took 72 µs back to back and 261 µs when the steps were 1 ms apart (the time the
//! rest of a training loop takes), where the work itself is about 70 µs on two threads.
//!
//! Here the caller never waits to start: it posts the step (the range of chunks and a
//! type-erased reference to the chunk function), claims chunks itself from the front, and the
//! helpers claim what is left from the back once awake. With the helpers awake, each thread
//! thus takes the same end of every pass, step after step (on two threads: the caller the
//! first half, the helper the second), and the lines it updates stay in its own core's
//! caches; claiming from one counter handed chunks to whichever thread came first, and a
//! line written by one core was next read or written by the other (see [`Team::claim`]).
//!
//! A helper keeps looking for the next step for [`SPIN`] after one ends (first busy, then
//! yielding its core to any other runnable thread), then sleeps on a condition variable, so
//! back-to-back steps (a benchmark, a loop over parameter groups) find it awake and a step
//! after a long gap costs the caller at most the work it does alone. One step at a time: a
//! caller that finds the team busy (another thread stepping) uses rayon.
//!
//! The chunks' results never depend on which thread ran them (each chunk is the same
//! arithmetic on the same elements), so the split is invisible in the numbers.
//!
//! Protocol (no allocation after the helpers are started once): one word, [`Post::state`],
//! holds the unclaimed chunks `front..back` and the number of chunks the helpers have
//! finished. The caller takes `busy`, writes the job, then the word (chunk 0 is its own from
//! the start, so it begins its work at once) with a release store; a helper that sees
//! `front < back` claims `back − 1` by a compare-and-swap of the whole word and only then
//! reads the job, runs the chunk and adds one to the finished count. The caller claims from
//! the front until none is left, then waits until the finished count equals the chunks it did
//! not run itself: every claimed chunk has ended, and no helper can claim another, so the job
//! (and the closure it points to) is not read after the caller returns. A helper whose
//! compare-and-swap saw an older step fails, or (the same word again, a later step) claims a
//! chunk of the step that word now describes, whose job it reads after the claim. The job,
//! the word and the post time share one cache line: a helper gets all three with one
//! transfer from the caller's core. Measured against the protocol it replaced (a count of
//! active helpers and an `open` flag, each on its own read-modify-write): see
//! [`Team::post_and_work`].

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a helper keeps looking for the next step after one ends before it sleeps.
pub(crate) const SPIN: Duration = Duration::from_micros(200);

/// Busy-wait iterations before a waiting thread starts yielding its core.
const BUSY_SPINS: u32 = 1 << 10;

/// The chunk function of a posted step, its lifetime erased (see the protocol above).
type ChunkFn = *const (dyn Fn(usize) + Sync);

/// What a posted step shares with the helpers, on one cache line (see the protocol above).
#[repr(C, align(64))]
struct Post {
    /// The unclaimed chunks `front..back` and the chunks the helpers have finished, packed
    /// ([`pack`]).
    state: AtomicU64,
    /// Bumped with every post and every wake-up without a job; sleeping helpers wait for it
    /// to change.
    generation: AtomicU64,
    /// When the caller posted the job ([`ticks`]), read by the helpers that claim from it.
    posted_at: AtomicU64,
    job: UnsafeCell<Option<ChunkFn>>,
    panicked: AtomicBool,
}

struct Team {
    post: Post,
    helpers: usize,
    busy: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// Per helper: where its wake-ups may land (see [`steer`]).
    places: Box<[steer::Place]>,
    /// When the last step on the team ended, in nanoseconds since `epoch`.
    last_end: AtomicU64,
    /// Whether the last step began within [`SPIN`] of the one before it ended.
    close: AtomicBool,
    epoch: Instant,
    /// The helpers' hand-off latency ([`Latency`]): its average in ticks and the factor on
    /// the split lengths it implies ([`split_scale`]), written when they change.
    latency: AtomicU64,
    scale: AtomicUsize,
    /// Until when (in [`ticks`]) a factor above 1 holds (see [`split_scale`]).
    scale_until: AtomicU64,
}

// SAFETY: `job` is written only by the caller holding `busy` before it publishes the step's
// chunks, and read by a helper only after it has claimed one of them and before it reports
// the chunk finished, which the caller waits for (the protocol in the module documentation);
// everything else is atomic or a lock.
unsafe impl Sync for Team {}

static TEAM: OnceLock<Option<&'static Team>> = OnceLock::new();

/// The process's team: `rayon::current_num_threads() − 1` helper threads (none on one
/// thread), started at first use; `None` when they cannot be started.
fn team() -> Option<&'static Team> {
    *TEAM.get_or_init(|| {
        let helpers = rayon::current_num_threads().saturating_sub(1);
        if helpers == 0 {
            return None;
        }
        let t: &'static Team = Box::leak(Box::new(Team {
            post: Post {
                state: AtomicU64::new(0),
                generation: AtomicU64::new(0),
                posted_at: AtomicU64::new(0),
                job: UnsafeCell::new(None),
                panicked: AtomicBool::new(false),
            },
            helpers,
            busy: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            places: (0..helpers).map(|_| steer::Place::default()).collect(),
            last_end: AtomicU64::new(0),
            close: AtomicBool::new(false),
            epoch: Instant::now(),
            latency: AtomicU64::new(0),
            scale: AtomicUsize::new(SCALE_ONE),
            scale_until: AtomicU64::new(0),
        }));
        for i in 0..helpers {
            let spawned = std::thread::Builder::new()
                .name(format!("precond-step-{i}"))
                .spawn(move || t.help(i));
            if spawned.is_err() {
                // the team stays usable with the helpers that started (the caller claims every
                // chunk no helper takes); with none it is never posted to
                if i == 0 {
                    return None;
                }
                break;
            }
        }
        Some(t)
    })
}

/// The number of threads a step's chunks can be spread over: the caller and the team's
/// helpers, or rayon's pool when the caller is one of its workers.
pub(crate) fn threads() -> usize {
    if rayon::current_thread_index().is_some() {
        rayon::current_num_threads()
    } else {
        team().map_or(rayon::current_num_threads(), |t| t.helpers + 1)
    }
}

/// Runs `f(c)` for every chunk `c < chunks`, each exactly once, on the calling thread and the
/// team's helpers (on rayon's pool when the caller is a rayon worker or the team is busy).
/// Returns when every chunk has run; a panic in `f` is resumed on the caller.
///
/// `wake`: whether the step is long enough to wake helpers that have fallen asleep. Waking
/// one costs the caller two system calls and the helper arrives tens of microseconds later
/// (on the VM of BENCHMARKS.md, session 16), so a shorter step finds the helpers asleep
/// runs all its chunks on the caller, in order; if it and the step before it each followed
/// their predecessor within [`SPIN`] (steps back to back, not merely the passes of one
/// optimizer step), it then wakes the helpers for the next one.
pub(crate) fn run(chunks: usize, wake: bool, f: &(dyn Fn(usize) + Sync)) {
    if chunks <= 1 {
        if chunks == 1 {
            f(0);
        }
        return;
    }
    if rayon::current_thread_index().is_none()
        && chunks <= MAX_CHUNKS
        && let Some(t) = team()
        && t.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        if !wake && t.sleepers.load(Ordering::SeqCst) >= t.helpers {
            t.alone(chunks, f);
        } else {
            t.post_and_work(chunks, f);
        }
        return;
    }
    use rayon::prelude::*;
    (0..chunks).into_par_iter().for_each(f);
}

impl Team {
    /// The caller's side of one step (holding `busy`).
    ///
    /// It reads no clock (`clock_gettime`, 23 ns each on the VM of BENCHMARKS.md): with the
    /// helpers awake, the next step that finds them asleep comes at least [`SPIN`] after this
    /// one began, so the times [`Self::alone`] compares need not include this step.
    ///
    /// Against the protocol before this one (the helper counted itself into an `active`
    /// count and read an `open` flag before it claimed, the caller cleared `open` with a
    /// sequentially consistent store and waited for `active == 0`: three read-modify-writes
    /// and four cache lines per hand-off), measured on the 2-core AMD EPYC (Zen 4) VM of
    /// BENCHMARKS.md, SGD `f32` at 10⁴ split in two, `Optimizer::step` in a Rust probe (41
    /// interleaved rounds of 2000 steps, medians, the two builds alternated three times,
    /// virtual CPUs near, a ping-pong round trip of 60–90 ns): 2502 / 2474 / 2319 time-stamp
    /// ticks per step against 2663 / 2499 / 2487 (faster in each alternation; serial
    /// 2117–2677 in both, the VM's other tenant).
    fn post_and_work(&self, chunks: usize, f: &(dyn Fn(usize) + Sync)) {
        let p = &self.post;
        // SAFETY: every chunk of the previous step was claimed and has finished (its caller
        // waited for that before releasing `busy`), so no helper reads `job` now; one reads it
        // only after claiming a chunk of the state published below. The lifetime is erased:
        // helpers use the pointer only while this call has not returned (protocol).
        unsafe {
            let erased: ChunkFn = std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), ChunkFn>(
                f as *const (dyn Fn(usize) + Sync + '_),
            );
            *p.job.get() = Some(erased);
        }
        // chunk 0 is the caller's from the start: it begins its work without waiting for the
        // posting stores to reach the helpers (release stores, no read-modify-write before it)
        p.posted_at.store(ticks(), Ordering::Relaxed);
        p.state.store(pack(1, chunks, 0), Ordering::Release);
        self.next_generation_posted();
        let mut mine = 1;
        let ran = catch_unwind(AssertUnwindSafe(|| {
            f(0);
            while let Some(c) = self.claim_front() {
                mine += 1;
                f(c);
            }
        }));
        // (after a panic: the chunks still unclaimed taken without running them)
        mine += self.close();
        // every chunk claimed; wait until the helpers' ones have ended
        let theirs = chunks - mine;
        wait_until(|| unpack(p.state.load(Ordering::Acquire)).2 == theirs);
        let helper_panicked = p.panicked.swap(false, Ordering::Relaxed);
        self.busy.store(false, Ordering::Release);
        if let Err(e) = ran {
            resume_unwind(e);
        }
        assert!(
            !helper_panicked,
            "a step's chunk panicked on a helper thread"
        );
    }

    /// The caller's side of a short step while every helper sleeps (holding `busy`): all
    /// chunks on the caller; then, when this step and the one before it each began less than
    /// [`SPIN`] after their predecessor ended, a new generation without a job, which wakes
    /// the helpers (they find no chunk to claim and keep looking for the next step for
    /// [`SPIN`]).
    fn alone(&self, chunks: usize, f: &(dyn Fn(usize) + Sync)) {
        let close = self.began();
        let mine = catch_unwind(AssertUnwindSafe(|| (0..chunks).for_each(f)));
        if close {
            self.next_generation_posted();
        }
        self.ended();
        self.busy.store(false, Ordering::Release);
        if let Err(p) = mine {
            resume_unwind(p);
        }
    }

    /// Bumps the generation (a posted job, or none) and wakes the sleeping helpers, each
    /// steered off the caller's CPU ([`steer`]).
    ///
    /// A release store and a relaxed look at `sleepers`, no fence: a helper that goes to sleep
    /// just as the generation is posted may miss the notification. That costs this step its
    /// help (the caller claims every chunk no helper takes), not its correctness, and the next
    /// step finds the helper counted in `sleepers` and wakes it.
    fn next_generation_posted(&self) {
        // only the caller holding `busy` writes the generation
        let gen_ = &self.post.generation;
        gen_.store(
            gen_.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            for p in self.places.iter() {
                p.away_from_caller();
            }
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }

    /// At the start of a step (holding `busy`): whether it and the step before it each began
    /// within [`SPIN`] of their predecessor's end.
    fn began(&self) -> bool {
        let since = self
            .now()
            .saturating_sub(self.last_end.load(Ordering::Relaxed));
        let close = since < SPIN.as_nanos() as u64;
        self.close.swap(close, Ordering::Relaxed) && close
    }

    /// Nanoseconds since the team started.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Records the end of a step (before `busy` is released).
    fn ended(&self) {
        self.last_end.store(self.now(), Ordering::Relaxed);
    }

    /// The caller's claim: the front chunk, if any is left.
    ///
    /// The caller claims from the front and the helpers from the back. Why two ends: measured
    /// on the 2-core AMD EPYC (Zen 4) of BENCHMARKS.md, SGD with momentum, `f32`, 10⁵ elements
    /// (all buffers in the two L2 caches), a step preceded by a split scan of `x` took
    /// 2.3–2.7× a step alone when both claimed from one counter: each pass handed a chunk to
    /// whichever thread asked first, so about half the lines of `x` moved between the cores
    /// on every pass.
    fn claim_front(&self) -> Option<usize> {
        self.take(|lo, hi, done| (pack(lo + 1, hi, done), lo))
    }

    /// A helper's claim: the back chunk, if any is left.
    fn claim_back(&self) -> Option<usize> {
        self.take(|lo, hi, done| (pack(lo, hi - 1, done), hi - 1))
    }

    /// The caller's end of the claims: every chunk still unclaimed is taken (none, unless a
    /// chunk of the caller's panicked); returns how many.
    fn close(&self) -> usize {
        self.take(|lo, hi, done| (pack(hi, hi, done), hi - lo))
            .unwrap_or(0)
    }

    /// One claim on the state: while chunks are unclaimed, `next(front, back, done)` gives
    /// the new state and the result, installed by compare-and-swap (retried on a change);
    /// `None` once none is left. `Acquire`: a helper whose claim succeeds sees the job the
    /// caller wrote before publishing that state.
    fn take<R>(&self, next: impl Fn(usize, usize, usize) -> (u64, R)) -> Option<R> {
        let st = &self.post.state;
        let mut cur = st.load(Ordering::Acquire);
        loop {
            let (lo, hi, done) = unpack(cur);
            if lo >= hi {
                return None;
            }
            let (new, r) = next(lo, hi, done);
            match st.compare_exchange_weak(cur, new, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => return Some(r),
                Err(now) => cur = now,
            }
        }
    }

    /// A helper thread's loop: wait for chunks to claim (or a new generation), claim and run
    /// them from the back until none is left, repeat.
    fn help(&self, i: usize) {
        let place = &self.places[i];
        place.register();
        let p = &self.post;
        let mut seen = p.generation.load(Ordering::SeqCst);
        let mut latency = Latency::default();
        loop {
            let how;
            (seen, how) = self.next_work(seen);
            let arrived = ticks();
            latency.woke(how);
            let mut timed = false;
            while let Some(c) = self.claim_back() {
                if !timed {
                    timed = true;
                    let since = arrived.wrapping_sub(p.posted_at.load(Ordering::Relaxed));
                    if let Some((avg, scale)) = latency.hand_off(how, since) {
                        self.latency.store(avg, Ordering::Relaxed);
                        self.scale_until
                            .store(arrived.wrapping_add(SCALE_HOLD), Ordering::Relaxed);
                        self.scale.store(scale, Ordering::Relaxed);
                    }
                }
                // SAFETY: the claim succeeded on the state the caller published after writing
                // `job` (acquire), and the caller does not return (nor write `job` again)
                // before this chunk is reported finished below.
                let job = unsafe { *p.job.get() };
                let ok = job.is_some_and(|f| {
                    // SAFETY: as above, the referent outlives this use.
                    let f = unsafe { &*f };
                    catch_unwind(AssertUnwindSafe(|| f(c))).is_ok()
                });
                if !ok {
                    // the chunks left are the caller's (it claims what no helper takes)
                    p.panicked.store(true, Ordering::Relaxed);
                }
                // the chunk's writes published to the caller, which waits for this count
                p.state.fetch_add(DONE_ONE, Ordering::Release);
                if !ok {
                    break;
                }
            }
            place.restore();
        }
    }

    /// Waits until there is a chunk to claim or `generation` differs from `seen`: busy, then
    /// yielding, for [`SPIN`], then asleep on the condition variable. Returns the generation
    /// and how the change was seen (while busy, the wait measured the hand-off, not a
    /// wake-up).
    fn next_work(&self, seen: u64) -> (u64, Seen) {
        let p = &self.post;
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let (lo, hi, _) = unpack(p.state.load(Ordering::Relaxed));
            let g = p.generation.load(Ordering::Relaxed);
            if lo < hi || g != seen {
                let how = if spins < BUSY_SPINS {
                    Seen::Busy
                } else {
                    Seen::Yielding
                };
                return (g, how);
            }
            if spins < BUSY_SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else if start.elapsed() < SPIN {
                std::thread::yield_now();
            } else {
                let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.sleepers.fetch_add(1, Ordering::SeqCst);
                // re-checked under the lock after announcing the sleep: a caller that bumped
                // the generation before seeing `sleepers > 0` is caught here, one after it
                // takes the lock to notify
                while p.generation.load(Ordering::SeqCst) == seen {
                    guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(guard);
                return (p.generation.load(Ordering::SeqCst), Seen::Asleep);
            }
        }
    }
}

/// How a helper saw a new generation: spinning, yielding its core, or woken from sleep.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Busy,
    Yielding,
    Asleep,
}

/// Hand-offs a helper does not time after it starts and after every sleep: the first ones
/// after a wake-up are slow (on a VM the helper's virtual CPU comes out of halt). Timed, the
/// first of them kept the split factor high: the factor held a team serial, the helper fell
/// asleep meanwhile, and the one split step after each hold was again a first hand-off
/// after a wake-up (SGD `f64` at 10⁴ against the C loop: serial with the virtual CPUs near).
const WARM_UP: u32 = 2;

/// A cheap clock for the hand-off latency: the time-stamp counter (x86-64: constant-rate and
/// synchronized across CPUs on the machines this crate measures; a pair of readings from two
/// CPUs that is not ordered is discarded by [`Latency::sample`]); elsewhere none (0: the split
/// lengths keep their defaults).
fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` exists on every x86-64 CPU and only reads the counter.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Hand-off latency at which the defaults of [`crate::kernel::ParallelParams`] were measured,
/// in [`ticks`]: from the caller's posting of a job to a busy helper seeing it. On the 2-core
/// AMD EPYC (Zen 4) VM of BENCHMARKS.md (time-stamp counter at 2.6 GHz) it averaged 145–364
/// ticks while the host kept the two virtual CPUs near each other (a C ping-pong round trip
/// of 52–99 ns; the defaults were measured so, at averages of 150–260) and 865–936 while it
/// had them far apart (round trip 330–390 ns, switching back and forth within seconds). The
/// split lengths' crossovers moved with it: SGD (`propagate`) about 32–40 KiB per buffer near
/// and 160 KiB far, in proportion to the latency ([`split_scale`]).
const LATENCY_REF: u64 = 208;

/// [`split_scale`]'s unit: factors are in sixteenths.
pub(crate) const SCALE_ONE: usize = 16;

/// Largest factor [`split_scale`] applies, in units of [`SCALE_ONE`]: readings are clipped at
/// this many times [`LATENCY_REF`] (a far hand-off measured 4.2–4.5 times it).
const MAX_SCALE: u64 = 8;

/// How long (in [`ticks`], about 0.8 ms at 2.6 GHz) a factor above 1 holds without a new
/// measurement: steps that the factor keeps on one thread measure nothing, so after this the
/// default lengths apply again and the next split step measures the latency anew (on a
/// far team one split step per hold that does not pay, about 1 µs of every 800 at 10⁴
/// elements; a hold of 2²⁵ ticks, 13 ms, kept a team serial for a tenth of a second after one
/// slow first reading, the C-loop comparison's whole measurement of one optimizer).
const SCALE_HOLD: u64 = 1 << 21;

/// A helper's running average of the hand-off latency (exponential: a reading above it weighs
/// 1/8, one below it 1/2; in [`ticks`] × 8), and the split factor it last published.
#[derive(Default)]
struct Latency {
    avg8: u64,
    samples: u64,
    published: (u64, usize),
    /// Hand-offs seen while busy still to be skipped ([`WARM_UP`] less those skipped since
    /// the start or the last sleep).
    skipped: u32,
}

impl Latency {
    /// Called with how every new generation was seen: after a sleep the next [`WARM_UP`]
    /// hand-offs are not timed.
    fn woke(&mut self, how: Seen) {
        if how == Seen::Asleep {
            self.skipped = 0;
        }
    }

    /// One posted job claimed from, seen `since` ticks after it was posted: a reading
    /// ([`Latency::sample`]) when it was seen while busy and [`WARM_UP`] busy hand-offs have
    /// passed since the start or the last sleep; `None` otherwise.
    fn hand_off(&mut self, how: Seen, since: u64) -> Option<(u64, usize)> {
        if how != Seen::Busy {
            return None;
        }
        if self.skipped < WARM_UP {
            self.skipped += 1;
            return None;
        }
        self.sample(since)
    }

    /// Adds one hand-off time; readings above 2²⁴ ticks (6 ms at 2.6 GHz: a helper preempted,
    /// or counters of two CPUs out of step) are dropped, the others clipped at [`MAX_SCALE`]
    /// times [`LATENCY_REF`]. Returns the new average and factor (in sixteenths:
    /// `16 · average / LATENCY_REF` within `16..=16 · MAX_SCALE`) when the factor changed,
    /// while it is above 1, and every 64 samples (what the team publishes).
    fn sample(&mut self, since: u64) -> Option<(u64, usize)> {
        if since > 1 << 24 {
            return None;
        }
        // one slow hand-off (an interrupt, a helper descheduled) moves the average by at most
        // MAX_SCALE/8 of LATENCY_REF
        let since = since.min(MAX_SCALE * LATENCY_REF);
        // down fast, up slowly: a reading below the average moves it half way (the first
        // hand-offs after a wake-up are slow, a virtual CPU coming out of halt; they must not
        // keep a near team serial for long), one above it by 1/8
        self.avg8 = if self.samples == 0 {
            since * 8
        } else if since * 8 < self.avg8 {
            (self.avg8 + since * 8) / 2
        } else {
            self.avg8 - self.avg8 / 8 + since
        };
        self.samples += 1;
        let avg = self.avg8 / 8;
        let one = SCALE_ONE as u64;
        let scale = (avg * one / LATENCY_REF).clamp(one, MAX_SCALE * one) as usize;
        // a factor above 1 is republished with every sample (renewing its hold)
        if scale != self.published.1 || scale > SCALE_ONE || self.samples.is_multiple_of(64) {
            self.published = (avg, scale);
            Some(self.published)
        } else {
            None
        }
    }
}

/// The factor on the default split lengths for the current hand-off latency between the
/// caller and the team's helpers, in sixteenths ([`SCALE_ONE`] is 1): the latency over
/// [`LATENCY_REF`], at least 1, at most [`MAX_SCALE`]. 1 before the team has measured it and
/// once a factor above 1 has not been renewed for [`SCALE_HOLD`].
pub(crate) fn split_scale() -> usize {
    let Some(t) = TEAM.get().copied().flatten() else {
        return SCALE_ONE;
    };
    let s = t.scale.load(Ordering::Relaxed);
    if s > SCALE_ONE {
        held(s, t.scale_until.load(Ordering::Relaxed), ticks())
    } else {
        s
    }
}

/// `scale` while `now` is before `until` (both [`ticks`], compared modulo 2⁶⁴: a deadline
/// less than 2⁶² ticks ahead), else [`SCALE_ONE`].
fn held(scale: usize, until: u64, now: u64) -> usize {
    if now.wrapping_sub(until) < 1 << 62 {
        SCALE_ONE
    } else {
        scale
    }
}

/// The helpers' average hand-off latency in [`ticks`] (0 before any was measured).
pub(crate) fn handoff_ticks() -> u64 {
    TEAM.get()
        .copied()
        .flatten()
        .map_or(0, |t| t.latency.load(Ordering::Relaxed))
}

/// Bits of each field of [`Post::state`].
const FIELD_BITS: u32 = 21;

/// Most chunks one step can have on the team (more go to rayon).
const MAX_CHUNKS: usize = (1 << FIELD_BITS) - 1;

/// [`Post::state`]'s finished count in units of one.
const DONE_ONE: u64 = 1 << (2 * FIELD_BITS);

/// The packed state of a step: the unclaimed chunks `front..back` and the number of chunks
/// the helpers have finished, each below 2²¹ (`back ≤ MAX_CHUNKS`, checked by [`run`]).
fn pack(front: usize, back: usize, done: usize) -> u64 {
    front as u64 | (back as u64) << FIELD_BITS | (done as u64) << (2 * FIELD_BITS)
}

/// [`pack`] undone: `(front, back, done)`.
fn unpack(w: u64) -> (usize, usize, usize) {
    let m = (1u64 << FIELD_BITS) - 1;
    (
        (w & m) as usize,
        ((w >> FIELD_BITS) & m) as usize,
        (w >> (2 * FIELD_BITS)) as usize,
    )
}

/// Where a sleeping helper wakes up.
///
/// A helper woken by the caller's notification may be queued on the caller's own CPU, behind
/// the caller, though another CPU is idle: on the 2-core AMD EPYC VM of session 16 (Linux 6.18)
/// that happened on most wake-ups after a pause, and the helper then waited there ≈ 10 ms
/// (its `schedstat` run-queue delay) until the load balancer moved it, so for whole blocks of
/// steps the caller ran every chunk alone (SGD f32 at 10⁶: 100 µs per step instead of 50).
/// So before notifying, the caller narrows each helper's CPU set to the CPUs it had at start
/// minus the caller's current one; the wake-up then lands on another CPU, and the helper
/// restores its own set once it has helped. Linux only; elsewhere a no-op.
mod steer {
    #[cfg(target_os = "linux")]
    pub(super) use linux::Place;

    #[cfg(target_os = "linux")]
    mod linux {
        use std::cell::UnsafeCell;
        use std::sync::atomic::{AtomicI32, Ordering};

        /// One helper's thread id, its CPU set at start, and the CPU its set now leaves out
        /// (−1: none).
        pub(crate) struct Place {
            tid: AtomicI32,
            base: UnsafeCell<libc::cpu_set_t>,
            without: AtomicI32,
        }

        impl Default for Place {
            fn default() -> Self {
                Place {
                    tid: AtomicI32::new(0),
                    // SAFETY: `cpu_set_t` is plain bits; all zero is the empty set.
                    base: UnsafeCell::new(unsafe { std::mem::zeroed() }),
                    without: AtomicI32::new(-1),
                }
            }
        }

        // SAFETY: `base` is written once by the helper before `tid` is published (Release)
        // and only read after `tid` is seen (Acquire).
        unsafe impl Sync for Place {}

        impl Place {
            /// On the helper's thread, once: record its id and CPU set.
            pub(crate) fn register(&self) {
                // SAFETY: no other thread reads `base` before `tid` is published below; the
                // calls write only into it.
                unsafe {
                    let base = &mut *self.base.get();
                    if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), base) != 0
                    {
                        return;
                    }
                    self.tid.store(libc::gettid(), Ordering::Release);
                }
            }

            /// On the caller's thread, before it wakes the helper: the helper's set without
            /// the caller's CPU (unchanged when that would leave it empty or the CPU is not
            /// in it).
            pub(crate) fn away_from_caller(&self) {
                let tid = self.tid.load(Ordering::Acquire);
                if tid <= 0 {
                    return;
                }
                // SAFETY: `base` is initialized (tid published) and never written again;
                // `set` is a local copy; the libc calls only read it / query the CPU.
                unsafe {
                    let cpu = libc::sched_getcpu();
                    if cpu < 0
                        || cpu as usize >= libc::CPU_SETSIZE as usize
                        || self.without.load(Ordering::Relaxed) == cpu
                    {
                        return;
                    }
                    let mut set = *self.base.get();
                    if !libc::CPU_ISSET(cpu as usize, &set) {
                        return;
                    }
                    libc::CPU_CLR(cpu as usize, &mut set);
                    if libc::CPU_COUNT(&set) == 0 {
                        return;
                    }
                    if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
                        == 0
                    {
                        self.without.store(cpu, Ordering::Relaxed);
                    }
                }
            }

            /// On the helper's thread: its CPU set at start again, if it was narrowed.
            pub(crate) fn restore(&self) {
                if self.without.swap(-1, Ordering::Relaxed) >= 0 {
                    // SAFETY: `base` is initialized (this thread registered it).
                    unsafe {
                        libc::sched_setaffinity(
                            0,
                            std::mem::size_of::<libc::cpu_set_t>(),
                            self.base.get(),
                        );
                    }
                }
            }
        }
    }

    /// Elsewhere: nothing to steer.
    #[cfg(not(target_os = "linux"))]
    #[derive(Default)]
    pub(super) struct Place;

    #[cfg(not(target_os = "linux"))]
    impl Place {
        pub(super) fn register(&self) {}
        pub(super) fn away_from_caller(&self) {}
        pub(super) fn restore(&self) {}
    }
}

/// Busy-waits, then yields, until `done()`.
fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        if spins < BUSY_SPINS {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Every chunk runs exactly once, from the caller's thread and from rayon workers, for
    /// steps back to back and after the helpers have fallen asleep, steps that wake them and
    /// steps that do not (then alone on the caller, rousing the helpers when back to back).
    #[test]
    fn every_chunk_runs_once() {
        for (chunks, pause) in [(1usize, 0u64), (2, 0), (7, 0), (64, 0), (64, 2), (1000, 1)] {
            for r in 0..20 {
                let counts: Vec<AtomicU32> = (0..chunks).map(|_| AtomicU32::new(0)).collect();
                run(chunks, r % 3 == 0, &|c| {
                    counts[c].fetch_add(1, Ordering::Relaxed);
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
                std::thread::sleep(Duration::from_millis(pause));
            }
            let counts: Vec<AtomicU32> = (0..chunks).map(|_| AtomicU32::new(0)).collect();
            rayon::scope(|_| {
                run(chunks, false, &|c| {
                    counts[c].fetch_add(1, Ordering::Relaxed);
                })
            });
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        }
    }

    /// The calling thread takes chunks from the front, the helpers from the back: the caller's
    /// chunks of a pass are always `0..j`, in order, whichever thread was faster.
    #[test]
    fn the_caller_takes_the_front_the_helpers_the_back() {
        let caller = std::thread::current().id();
        for r in 0..200 {
            let chunks = 2 + r % 40;
            let mine = Mutex::new(Vec::new());
            let theirs = Mutex::new(Vec::new());
            run(chunks, true, &|c| {
                // a little work, so that a helper awake in time takes some chunks
                std::hint::black_box((0..2000).fold(0u64, |a, i| a ^ (i * c as u64)));
                let who = if std::thread::current().id() == caller {
                    &mine
                } else {
                    &theirs
                };
                who.lock().expect("no panic while held").push(c);
            });
            let mine = mine.into_inner().expect("no panic while held");
            let mut theirs = theirs.into_inner().expect("no panic while held");
            assert_eq!(mine, (0..mine.len()).collect::<Vec<_>>(), "round {r}");
            theirs.sort_unstable();
            assert_eq!(
                theirs,
                (mine.len()..chunks).collect::<Vec<_>>(),
                "round {r}"
            );
        }
    }

    /// Steps posted from several threads at once (one gets the team, the others rayon) each
    /// run all their chunks once.
    #[test]
    fn concurrent_callers() {
        std::thread::scope(|s| {
            for k in 0..4 {
                s.spawn(move || {
                    for r in 0..200 {
                        let chunks = 3 + (k + r) % 29;
                        let counts: Vec<AtomicU32> =
                            (0..chunks).map(|_| AtomicU32::new(0)).collect();
                        run(chunks, r % 2 == 0, &|c| {
                            counts[c].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
                    }
                });
            }
        });
    }

    /// A helper's CPU set leaves out the caller's CPU while it is being woken and is its own
    /// again once it restores it; a set of one CPU is never emptied.
    #[cfg(target_os = "linux")]
    #[test]
    fn wake_ups_steer_away_from_the_caller() {
        use std::sync::mpsc::channel;
        fn set_of(tid: i32) -> libc::cpu_set_t {
            // SAFETY: a zeroed `cpu_set_t` is the empty set; the call writes into it.
            unsafe {
                let mut s: libc::cpu_set_t = std::mem::zeroed();
                assert_eq!(
                    libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut s),
                    0
                );
                s
            }
        }
        fn same(a: &libc::cpu_set_t, b: &libc::cpu_set_t) -> bool {
            // SAFETY: reads of bit sets.
            (0..libc::CPU_SETSIZE as usize)
                .all(|c| unsafe { libc::CPU_ISSET(c, a) == libc::CPU_ISSET(c, b) })
        }
        let place = steer::Place::default();
        let (to_main, from_helper) = channel();
        let (to_helper, from_main) = channel::<()>();
        std::thread::scope(|s| {
            let place = &place;
            s.spawn(move || {
                place.register();
                // SAFETY: plain query.
                to_main
                    .send(unsafe { libc::gettid() })
                    .expect("test channel");
                from_main.recv().expect("test channel");
                place.restore();
                to_main.send(0).expect("test channel");
                // alive until the caller has read its set again
                from_main.recv().expect("test channel");
            });
            let tid = from_helper.recv().expect("test channel");
            let base = set_of(tid);
            // the caller held on one CPU of the helper's set (the last), so that the CPU it
            // runs on is known
            let mine = set_of(0);
            // SAFETY: bit-set reads and writes on local copies; the calls set this thread's
            // own CPU set.
            unsafe {
                let cpu = (0..libc::CPU_SETSIZE as usize)
                    .rev()
                    .find(|&c| libc::CPU_ISSET(c, &base))
                    .expect("a CPU in the helper's set");
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut one);
                let size = std::mem::size_of::<libc::cpu_set_t>();
                assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
                place.away_from_caller();
                assert_eq!(libc::sched_setaffinity(0, size, &mine), 0);
                let narrowed = set_of(tid);
                if libc::CPU_COUNT(&base) >= 2 {
                    for c in 0..libc::CPU_SETSIZE as usize {
                        let want = libc::CPU_ISSET(c, &base) && c != cpu;
                        assert_eq!(libc::CPU_ISSET(c, &narrowed), want, "cpu {c}");
                    }
                } else {
                    assert!(same(&base, &narrowed), "a set of one CPU is left as it is");
                }
            }
            to_helper.send(()).expect("test channel");
            from_helper.recv().expect("test channel");
            let after = set_of(tid);
            to_helper.send(()).expect("test channel");
            assert!(same(&after, &base), "the helper's own set again");
        });
    }

    /// A panicking chunk reaches the caller, and the team works afterwards.
    #[test]
    fn a_panic_reaches_the_caller() {
        for wake in [true, false] {
            for bad in [0usize, 5, 31] {
                // (after a pause the helpers sleep: without `wake` the caller runs alone)
                std::thread::sleep(Duration::from_millis(2));
                let r = catch_unwind(|| {
                    run(32, wake, &|c| {
                        if c == bad {
                            panic!("chunk {c}");
                        }
                    })
                });
                assert!(r.is_err());
            }
        }
        let counts: Vec<AtomicU32> = (0..16).map(|_| AtomicU32::new(0)).collect();
        run(16, false, &|c| {
            counts[c].fetch_add(1, Ordering::Relaxed);
        });
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
    }

    /// The hand-off average: the first sample sets it, later ones move it up by 1/8 and down
    /// by 1/2; readings above 2²⁴ ticks are dropped, others clipped at MAX_SCALE (8) times
    /// the reference; the factor is 16 · average / LATENCY_REF within 16..=16 · MAX_SCALE,
    /// published when it changes, while it is above 16, and every 64 samples.
    #[test]
    fn the_latency_average_and_its_factor() {
        let mut l = Latency::default();
        assert_eq!(l.sample(LATENCY_REF), Some((LATENCY_REF, 16)));
        // the same factor: not republished before the 64th sample
        for k in 2..64 {
            assert_eq!(l.sample(LATENCY_REF), None, "sample {k}");
        }
        assert_eq!(l.sample(LATENCY_REF), Some((LATENCY_REF, 16)));
        // dropped: no change at all
        assert_eq!(l.sample(1 << 25), None);
        assert_eq!(l.avg8 / 8, LATENCY_REF);
        // clipped: one huge reading moves the average by (8 − 1)/8 of the reference
        let before = l.avg8;
        l.sample(1 << 20);
        assert_eq!(l.avg8, before - before / 8 + 8 * LATENCY_REF);
        // a sustained far hand-off (4.25 × the reference) brings the factor to 4.25 (68
        // sixteenths) and keeps it published with every sample
        let mut last = None;
        for _ in 0..200 {
            last = l.sample(17 * LATENCY_REF / 4);
            assert!(last.is_some() || l.published.1 == 16);
        }
        let (avg, scale) = last.expect("published while above 1");
        assert!(avg.abs_diff(17 * LATENCY_REF / 4) <= 8, "average {avg}");
        assert!(scale.abs_diff(68) <= 1, "factor {scale}");
        // back near: a reading below the average halves the distance, and the factor
        // returns to 1 within a few readings
        let before = l.avg8;
        l.sample(LATENCY_REF / 2);
        assert_eq!(l.avg8, (before + 4 * LATENCY_REF) / 2);
        for _ in 0..5 {
            l.sample(LATENCY_REF / 2);
        }
        assert_eq!(l.published.1, 16);
        assert!(l.avg8 / 8 < LATENCY_REF);
        // a first sample above MAX_SCALE times the reference is clipped to 8 × (factor 8)
        let mut m = Latency::default();
        assert_eq!(m.sample(100 * LATENCY_REF), Some((8 * LATENCY_REF, 128)));
        const { assert!(MAX_SCALE == 8) };
    }

    /// Only hand-offs seen while busy are timed, and not the first WARM_UP (2) after the
    /// start or after a sleep.
    #[test]
    fn the_first_hand_offs_after_a_sleep_are_not_timed() {
        let mut l = Latency::default();
        l.woke(Seen::Busy);
        assert_eq!(l.hand_off(Seen::Busy, 5000), None);
        assert_eq!(l.hand_off(Seen::Busy, 5000), None);
        assert_eq!(l.hand_off(Seen::Busy, LATENCY_REF), Some((LATENCY_REF, 16)));
        assert_eq!(l.hand_off(Seen::Yielding, 8 * LATENCY_REF), None);
        assert_eq!(l.samples, 1);
        l.woke(Seen::Asleep);
        assert_eq!(l.hand_off(Seen::Busy, 8 * LATENCY_REF), None);
        assert_eq!(l.hand_off(Seen::Busy, 8 * LATENCY_REF), None);
        assert_eq!(l.samples, 1);
        assert!(l.hand_off(Seen::Busy, 2 * LATENCY_REF).is_some());
        assert_eq!(l.samples, 2);
    }

    /// The packed state: each field round-trips up to `MAX_CHUNKS`, and the claims and the
    /// finished count move one field each, never carrying into the next.
    #[test]
    fn the_packed_state() {
        for (f, b, d) in [
            (0, 0, 0),
            (1, 2, 0),
            (7, 64, 3),
            (MAX_CHUNKS, MAX_CHUNKS, MAX_CHUNKS),
        ] {
            assert_eq!(unpack(pack(f, b, d)), (f, b, d));
        }
        let w = pack(1, MAX_CHUNKS, MAX_CHUNKS - 1);
        assert_eq!(unpack(w + 1), (2, MAX_CHUNKS, MAX_CHUNKS - 1));
        assert_eq!(
            unpack(w - (1 << FIELD_BITS)),
            (1, MAX_CHUNKS - 1, MAX_CHUNKS - 1)
        );
        assert_eq!(unpack(w + DONE_ONE), (1, MAX_CHUNKS, MAX_CHUNKS));
        let w = pack(MAX_CHUNKS - 1, MAX_CHUNKS, 0);
        assert_eq!(unpack(w + 1), (MAX_CHUNKS, MAX_CHUNKS, 0));
        assert_eq!(unpack(pack(0, 1, 0) - (1 << FIELD_BITS)), (0, 0, 0));
    }

    /// A factor holds until its deadline, compared modulo 2⁶⁴.
    #[test]
    fn a_factor_holds_until_its_deadline() {
        assert_eq!(held(48, 1000, 999), 48);
        assert_eq!(held(48, 1000, 1000), SCALE_ONE);
        assert_eq!(held(48, 1000, 1 << 40), SCALE_ONE);
        // across the counter's wrap
        let until = 5u64;
        assert_eq!(held(32, until, u64::MAX - 10), 32);
        assert_eq!(held(32, until, 6), SCALE_ONE);
        assert_eq!(held(32, u64::MAX - 3, u64::MAX - 4), 32);
        assert_eq!(held(32, u64::MAX - 3, 2), SCALE_ONE);
    }
}
