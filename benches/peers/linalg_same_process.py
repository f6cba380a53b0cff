"""Dense diagnostics at n = 2000, ours (through the C ABI) and numpy/scipy (OpenBLAS), in the SAME
process, interleaved in rounds: the fair comparison on a VM whose speed drifts by ±15 % between
processes and minutes (see BENCHMARKS.md, precond-linalg, session 4).

Run:  cargo build --release -p precond-ffi
      /tmp/peers/bin/python benches/peers/linalg_same_process.py [--rounds=5] [--n=2000]
          [--out=linalg_same_process.json]

Matrices: those of linalg_peers.py (bit-identical to benches/linalg_cond.rs): a general `A` and
the SPD `H = XᵀX/(2n) + 0.01 I` (exactly symmetric). Pairs, each timed as a block of `reps`
calls per round (median kept; order alternates per round; each block after a pause and an untimed call, see
same_process.py; `reps`
raised to about 20 ms of calls, at most 200, for small sizes):
  precond_sym_eigenvalues(H)     vs numpy.linalg.eigvalsh(H)   (all eigenvalues)
  precond_cond2(A)               vs scipy.linalg.svdvals(A)    (all singular values / κ₂)
  precond_cond_estimate(A, LU)   vs scipy dgetrf + dgecon      (1-norm estimate)
The reported ratio is the median over rounds of the per-round time ratio ours / peer (< 1 means
we are faster), with its range.
"""
import ctypes
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import scipy.linalg
import scipy.linalg.lapack as lapack

sys.path.insert(0, os.path.dirname(__file__))
from linalg_peers import matrices  # noqa: E402  (same matrices as the criterion bench)
from same_process import LIB, block  # noqa: E402


def _arg(name, default):
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


ROUNDS = int(_arg("rounds", "5"))
N = int(_arg("n", "2000"))
OUT = _arg("out", "linalg_same_process.json")
COL_MAJOR = 1
LU = 0


class Cond2(ctypes.Structure):
    _fields_ = [("sigma_max", ctypes.c_double), ("sigma_min", ctypes.c_double),
                ("kappa", ctypes.c_double), ("rank_deficient", ctypes.c_int32)]


class Estimate(ctypes.Structure):
    # generous buffer: only the status is used here
    _fields_ = [("raw", ctypes.c_double * 16)]


def load():
    lib = ctypes.CDLL(LIB)
    p = ctypes.POINTER(ctypes.c_double)
    lib.precond_sym_eigenvalues.argtypes = [p, ctypes.c_size_t, ctypes.c_int32, p, ctypes.c_size_t, ctypes.c_void_p]
    lib.precond_sym_eigenvalues.restype = ctypes.c_int
    lib.precond_cond2.argtypes = [p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int32, ctypes.c_void_p]
    lib.precond_cond2.restype = ctypes.c_int
    lib.precond_cond_estimate.argtypes = [p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p]
    lib.precond_cond_estimate.restype = ctypes.c_int
    lib.precond_last_error.restype = ctypes.c_char_p
    return lib


def ptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def check(lib, st, what):
    if st != 0:
        raise RuntimeError(f"{what}: status {st}: {lib.precond_last_error().decode()}")


def main():
    lib = load()
    a, h = matrices(N)
    # column-major buffers for the C ABI (h is symmetric, so its C order is its Fortran order)
    af = np.asfortranarray(a)
    ev = np.empty(N)
    c2 = Cond2()
    est = Estimate()

    def ours_eig():
        check(lib, lib.precond_sym_eigenvalues(ptr(h), N, COL_MAJOR, ptr(ev), N, None), "sym_eigenvalues")

    def ours_cond2():
        check(lib, lib.precond_cond2(ptr(af), N, N, COL_MAJOR, ctypes.byref(c2)), "cond2")

    def ours_est():
        check(lib, lib.precond_cond_estimate(ptr(af), N, COL_MAJOR, LU, ctypes.byref(est)), "cond_estimate")

    def lapack_est():
        lu, piv, info = lapack.dgetrf(a)
        anorm = np.abs(a).sum(axis=0).max()
        lapack.dgecon(lu, anorm, norm="1")

    pairs = [
        ("sym_eigenvalues / eigvalsh", ours_eig, lambda: np.linalg.eigvalsh(h), 3),
        ("cond2 / svdvals", ours_cond2, lambda: scipy.linalg.svdvals(a), 2),
        ("cond_estimate(LU) / dgetrf+dgecon", ours_est, lapack_est, 3),
    ]
    # correctness of what is timed: same eigenvalues as numpy, same κ₂ as the singular values
    ours_eig()
    w = np.linalg.eigvalsh(h)
    assert np.max(np.abs(ev - w)) <= 1e-10 * np.max(np.abs(w)), "eigenvalues differ"
    ours_cond2()
    s = scipy.linalg.svdvals(a)
    assert abs(c2.kappa - s[0] / s[-1]) <= 1e-6 * c2.kappa, "kappa differs"
    rows = []
    for name, ours, peer, reps in pairs:
        # small sizes: enough calls per block for about 20 ms, so that the median call is a
        # warm one (the first after the pause pays cold caches)
        one = max(block(ours, 2), block(peer, 2))
        reps = max(reps, min(200, int(0.02 / max(one, 1e-6))))
        per = {"ours": [], "peer": []}
        for r in range(ROUNDS):
            order = [("ours", ours), ("peer", peer)] if r % 2 == 0 else [("peer", peer), ("ours", ours)]
            for k, f in order:
                per[k].append(block(f, reps))
        ratios = [o / p for o, p in zip(per["ours"], per["peer"])]
        row = {"pair": name, "n": N, "rounds": ROUNDS, "reps": reps, "seconds": per,
               "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}}
        rows.append(row)
        print(f"{name:36s} n={N}: ours {statistics.median(per['ours'])*1e3:8.1f} ms | peer "
              f"{statistics.median(per['peer'])*1e3:8.1f} ms | ours/peer {row['ratio']['median']:.2f} "
              f"[{row['ratio']['min']:.2f}, {row['ratio']['max']:.2f}]", flush=True)
    res = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "numpy": np.__version__, "scipy": scipy.__version__, "lib": LIB, "rows": rows}
    out = OUT if os.path.isabs(OUT) else os.path.join(os.path.dirname(__file__), OUT)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
