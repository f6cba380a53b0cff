"""Shared pieces of the same-process peer harnesses (optim_same_process.py,
linalg_same_process.py, matrix_same_process.py): where the C library is, and how one block of
calls is timed.

Every block starts with a pause of PAUSE seconds and one untimed call. The pause is there
because a peer's idle worker threads keep spinning after its call returns (OpenBLAS: 2^28
time-stamp ticks by default, about 0.1 s; torch's OpenMP/MKL threads likewise) and on a
2-core machine they take a core from whatever runs next. Measured on the 2-core AMD EPYC
(Zen 4) of session 15 (`precond_sym_eigenvalues`, n = 1000, median of 9): 60.1 ms right after
numpy's `eigvalsh`, 55.6 ms 50 ms after it, 40.6 ms 300 ms after it, 40.1 ms after our own
call; with `OPENBLAS_THREAD_TIMEOUT=4` (no spinning) 44.4 ms right after numpy, whose own call
then slows from 40 to 61 ms. Our inverse root at d = 1024: 112.8 ms right after
`torch.linalg.eigh`, 105.0 ms 300 ms after it. The untimed call then warms the caches and
threads of the side being measured, so that each block times an implementation in its own
steady state, undisturbed by the other (PEER_PAUSE overrides the pause)."""
import os
import statistics
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# `cargo build --release -p precond-ffi` writes it here; PRECOND_LIB overrides
LIB = os.environ.get("PRECOND_LIB", os.path.join(ROOT, "target", "release", "libprecond_ffi.so"))


PAUSE = float(os.environ.get("PEER_PAUSE", "0.4"))


def block(f, reps, gap=0.0):
    """Median wall time of `reps` calls of `f`, in seconds, after a pause of PAUSE seconds and
    one untimed call (see the module documentation). With `gap` > 0, each call follows `gap`
    seconds of busy waiting (untimed): the rest of a training loop between two steps, during
    which thread pools' idle workers fall asleep."""
    time.sleep(PAUSE)
    f()
    ts = []
    for _ in range(reps):
        if gap > 0:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < gap:
                pass
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
