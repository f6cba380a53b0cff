//! Running a parallel routine on the rayon pool as a whole.
//!
//! `rayon::join` called from a thread outside the pool (the user's main thread, a C caller)
//! injects the job into the pool and blocks the caller on a lock until a worker has run it: a
//! sleep and a wake-up per call. The blocked tridiagonalization calls it once per column (its
//! matrix–vector product on two threads), faer's parallel kernels once per operation; at
//! n = 1000 on the 2-core Intel Xeon of session 12 the reduction spent 33–42 ms of which about
//! 10 in these hand-offs. [`on_pool`] moves the whole routine onto a worker once, so the joins
//! inside are worker-to-worker (the idle worker is spinning, no lock): 29 ms.
//!
//! For the duration of such a call the pool's workers are also held on distinct CPUs
//! ([`Spread`]). A worker woken by another may otherwise be queued on the waker's CPU, behind
//! it, while another CPU idles, until the load balancer moves it: on the 2-core AMD EPYC VM of
//! session 16 (Linux 6.18), all eigenvalues at n = 1000 took 35.5–55 ms (median of eight
//! blocks 39.7 ms) with the workers' run-queue waits (`schedstat`) of 2–27 ms per call
//! matching the slow calls, and 35.3–41.8 ms (median 36.1) with the workers held apart.

use faer::Par;

/// Below this order the routines wrapped by [`on_pool`] run no parallel kernel (faer's
/// products split from 128 × 128 on; the matrix–vector products from
/// [`SYMV_PAR_MIN_M`](crate::two_stage::symm::SYMV_PAR_MIN_M)): the hand-off would be pure
/// cost.
pub(crate) const ON_POOL_MIN_N: usize = 128;

/// Runs `f` on a thread of the current rayon pool when `par` has at least two threads and the
/// order `n ≥` [`ON_POOL_MIN_N`] (one hand-off for the whole call, see the module
/// documentation), else on the calling thread. Called from inside a pool it runs in place
/// (`rayon::scope` does not hop when already on a worker).
pub(crate) fn on_pool<R: Send>(par: Par, n: usize, f: impl FnOnce() -> R + Send) -> R {
    if par.degree() >= 2 && n >= ON_POOL_MIN_N && rayon::current_thread_index().is_none() {
        let _held = Spread::begin();
        rayon::scope(|_| f())
    } else {
        f()
    }
}

/// The global pool's workers held on distinct CPUs while at least one [`on_pool`] call runs
/// (see the module documentation): worker `j` on the `j`-th CPU of its own CPU set (cyclically),
/// its set restored when the last such call ends. Linux only (elsewhere nothing is done); the
/// workers' thread ids and sets are collected once, by a `rayon::broadcast`. Nothing is
/// changed when the pool or the CPU set has fewer than two members.
pub(crate) struct Spread(bool);

impl Spread {
    /// Holds the workers apart (if this is the first active call).
    pub(crate) fn begin() -> Spread {
        Spread(spread::enter())
    }
}

impl Drop for Spread {
    fn drop(&mut self) {
        if self.0 {
            spread::leave();
        }
    }
}

#[cfg(target_os = "linux")]
mod spread {
    use std::sync::{Mutex, OnceLock};

    /// A worker's thread id and its CPU set when first seen.
    struct Worker {
        tid: libc::pid_t,
        base: libc::cpu_set_t,
        /// The CPU it is held on during a call.
        cpu: usize,
    }

    /// The global pool's workers (empty: nothing to do), and the number of active calls.
    fn state() -> &'static Mutex<(Vec<Worker>, usize)> {
        static S: OnceLock<Mutex<(Vec<Worker>, usize)>> = OnceLock::new();
        S.get_or_init(|| {
            let seen = rayon::broadcast(|ctx| {
                // SAFETY: a zeroed `cpu_set_t` is the empty set; the calls only query this
                // thread.
                unsafe {
                    let mut base: libc::cpu_set_t = std::mem::zeroed();
                    let ok = libc::sched_getaffinity(
                        0,
                        std::mem::size_of::<libc::cpu_set_t>(),
                        &mut base,
                    ) == 0;
                    (ctx.index(), libc::gettid(), base, ok)
                }
            });
            let mut workers = Vec::new();
            if seen.len() >= 2 && seen.iter().all(|s| s.3) {
                for (j, tid, base, _) in seen {
                    // SAFETY: reads of a bit set.
                    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                        .filter(|&c| unsafe { libc::CPU_ISSET(c, &base) })
                        .collect();
                    if cpus.len() < 2 {
                        workers.clear();
                        break;
                    }
                    workers.push(Worker {
                        tid,
                        base,
                        cpu: cpus[j % cpus.len()],
                    });
                }
            }
            Mutex::new((workers, 0))
        })
    }

    /// Counts a call in; the first one holds every worker on its CPU. Returns whether
    /// [`leave`] must be called.
    pub(super) fn enter() -> bool {
        let mut s = state().lock().unwrap_or_else(|e| e.into_inner());
        if s.0.is_empty() {
            return false;
        }
        if s.1 == 0 {
            for w in &s.0 {
                // SAFETY: a local bit set; the call only sets another thread's CPU set (an
                // error, e.g. a CPU no longer allowed, leaves it as it was).
                unsafe {
                    let mut one: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(w.cpu, &mut one);
                    libc::sched_setaffinity(w.tid, std::mem::size_of::<libc::cpu_set_t>(), &one);
                }
            }
        }
        s.1 += 1;
        true
    }

    /// Counts a call out; the last one restores every worker's CPU set.
    pub(super) fn leave() {
        let mut s = state().lock().unwrap_or_else(|e| e.into_inner());
        s.1 -= 1;
        if s.1 == 0 {
            for w in &s.0 {
                // SAFETY: as in `enter`.
                unsafe {
                    libc::sched_setaffinity(w.tid, std::mem::size_of::<libc::cpu_set_t>(), &w.base);
                }
            }
        }
    }

    /// For the tests: with the state locked (no call entering or leaving), whether calls
    /// are active, and each worker's thread id, base set and CPU.
    #[cfg(test)]
    pub(super) fn inspect<R>(
        f: impl FnOnce(usize, &[(libc::pid_t, libc::cpu_set_t, usize)]) -> R,
    ) -> R {
        let s = state().lock().unwrap_or_else(|e| e.into_inner());
        let w: Vec<_> = s.0.iter().map(|w| (w.tid, w.base, w.cpu)).collect();
        f(s.1, &w)
    }
}

#[cfg(not(target_os = "linux"))]
mod spread {
    pub(super) fn enter() -> bool {
        false
    }
    pub(super) fn leave() {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn set_of(tid: libc::pid_t) -> libc::cpu_set_t {
        // SAFETY: a zeroed set filled by the call.
        unsafe {
            let mut s: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut s),
                0
            );
            s
        }
    }

    fn members(s: &libc::cpu_set_t) -> Vec<usize> {
        // SAFETY: reads of a bit set.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, s) })
            .collect()
    }

    /// During an `on_pool` call every worker is held on its own CPU (distinct ones while there
    /// are enough); once no call is active each has its own set again.
    #[test]
    fn workers_are_held_apart_during_a_call_and_released_after() {
        let inside = on_pool(Par::rayon(0), ON_POOL_MIN_N, || {
            // on a worker: every worker's set as the kernel reports it now
            spread::inspect(|active, ws| {
                assert!(ws.is_empty() || active >= 1);
                ws.iter()
                    .map(|w| (members(&set_of(w.0)), w.2))
                    .collect::<Vec<_>>()
            })
        });
        let ncpu = members(&set_of(0)).len();
        if rayon::current_num_threads() >= 2 && ncpu >= 2 {
            assert_eq!(inside.len(), rayon::current_num_threads());
            for (set, cpu) in &inside {
                assert_eq!(set, &vec![*cpu], "one CPU per worker during the call");
            }
            let mut cpus: Vec<usize> = inside.iter().map(|w| w.1).collect();
            cpus.sort_unstable();
            cpus.dedup();
            assert_eq!(cpus.len(), inside.len().min(ncpu), "distinct CPUs");
        }
        // after: unless another test's call is active, every worker has its own set again
        spread::inspect(|active, ws| {
            if active == 0 {
                for w in ws {
                    assert_eq!(members(&set_of(w.0)), members(&w.1));
                }
            }
        });
    }
}
