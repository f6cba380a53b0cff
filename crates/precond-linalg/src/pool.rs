//! Running a parallel routine on the rayon pool as a whole.
//!
//! `rayon::join` called from a thread outside the pool (the user's main thread, a C caller)
//! injects the job into the pool and blocks the caller on a lock until a worker has run it: a
//! sleep and a wake-up per call. The blocked tridiagonalization calls it once per column (its
//! matrix–vector product on two threads), faer's parallel kernels once per operation; at
//! n = 1000 on the 2-core Intel Xeon of session 12 the reduction spent 33–42 ms of which about
//! 10 in these hand-offs. [`on_pool`] moves the whole routine onto a worker once, so the joins
//! inside are worker-to-worker (the idle worker is spinning, no lock): 29 ms.

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
        rayon::scope(|_| f())
    } else {
        f()
    }
}
