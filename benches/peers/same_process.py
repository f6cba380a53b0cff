"""Shared pieces of the same-process peer harnesses (optim_same_process.py,
linalg_same_process.py): where the C library is, and how one block of calls is timed."""
import os
import statistics
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# `cargo build --release -p precond-ffi` writes it here; PRECOND_LIB overrides
LIB = os.environ.get("PRECOND_LIB", os.path.join(ROOT, "target", "release", "libprecond_ffi.so"))


def block(f, reps):
    """Median wall time of `reps` calls of `f`, in seconds."""
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
