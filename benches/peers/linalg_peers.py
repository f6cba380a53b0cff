"""numpy/scipy peer timings for benches/linalg_cond.rs, and the ratio table of BENCHMARKS.md.

Run (from the repository root):
    cargo bench --bench linalg_cond          # criterion, writes target/criterion/...
    /tmp/peers/bin/python benches/peers/linalg_peers.py [--run-cargo] [--sizes 100,500,1000,2000]
With --run-cargo the script runs the criterion bench itself first, so both sides are measured in
the same run. The matrices are bit-identical to the Rust bench (SplitMix64 uniforms in [-1, 1)):
A (n x n, row-major fill) and H = X^T X / (2n) + 0.01 I with X (2n x n) from the next draws.
Peer times are the median of several calls after one warm-up call; Rust times are criterion's
median. Writes benches/peers/linalg_peers.json and prints markdown tables.
"""
import argparse
import json
import os
import platform
import subprocess
import time

import numpy as np
import scipy
import scipy.linalg as sla
from scipy.linalg import lapack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GAMMA = np.uint64(0x9E3779B97F4A7C15)


def splitmix_uniform(seed, count, start):
    """Draws start+1 .. start+count of SplitMix64 seeded with `seed`, mapped to [-1, 1)."""
    with np.errstate(over="ignore"):
        k = np.arange(start + 1, start + count + 1, dtype=np.uint64)
        z = np.uint64(seed) + k * GAMMA
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return 2.0 * ((z >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53))) - 1.0


def matrices(n):
    a = splitmix_uniform(n, n * n, 0).reshape(n, n)
    x = splitmix_uniform(n, 2 * n * n, n * n).reshape(2 * n, n)
    h = (x.T @ x) / (2 * n) + 0.01 * np.eye(n)
    h = np.tril(h) + np.tril(h, -1).T
    return a, h


def median_time(f, reps):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def gecon(a):
    lu, piv, _ = lapack.dgetrf(a)
    return lapack.dgecon(lu, np.abs(a).sum(axis=0).max(), norm="1")


def pocon(h):
    c, _ = lapack.dpotrf(h, lower=1)
    return lapack.dpocon(c, np.abs(h).sum(axis=0).max(), uplo="L")


def criterion_median(*parts):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    path = os.path.join(target, "criterion", *parts, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"] * 1e-9
    except FileNotFoundError:
        return None


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def fmt(t):
    return "—" if t is None else (f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s")


def ratio(a, b):
    return "—" if a is None or b is None else f"{a / b:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-cargo", action="store_true")
    ap.add_argument("--sizes", default="100,500,1000,2000")
    ap.add_argument("--cargo-filter", default=None, help="criterion name filter for --run-cargo, e.g. 2000")
    ap.add_argument("--out", default="linalg_peers.json", help="output file name under benches/peers/")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.run_cargo:
        cmd = ["cargo", "bench", "--bench", "linalg_cond"]
        if args.cargo_filter:
            cmd += ["--", args.cargo_filter]
        subprocess.run(cmd, cwd=ROOT, check=True)
    res = {"loadavg_after_cargo": os.getloadavg(), "machine": cpu_model(), "cores": os.cpu_count(), "numpy": np.__version__, "scipy": scipy.__version__,
           "loadavg_start": os.getloadavg(), "sizes": {}}
    for n in sizes:
        a, h = matrices(n)
        reps = 7 if n <= 500 else (5 if n <= 1000 else 3)
        peer = {
            "svdvals": median_time(lambda: sla.svdvals(a), reps),
            "np_cond": median_time(lambda: np.linalg.cond(a), reps),
            "eigvalsh": median_time(lambda: np.linalg.eigvalsh(h), reps),
            "cond_H_numpy": float(np.linalg.cond(h)),
        }
        if n == 2000:
            peer["dgetrf_dgecon"] = median_time(lambda: gecon(a), reps)
            peer["dpotrf_dpocon"] = median_time(lambda: pocon(h), reps)
        rust = {
            "cond2": criterion_median("cond2", str(n)),
            "sym_spectrum": criterion_median("sym_spectrum", str(n)),
            "sym_extremes": criterion_median("sym_extremes", str(n)),
            "sym_cond": criterion_median("sym_cond", str(n)),
        }
        for k in ["sym_eig_faer_1stage", "sym_eig_2stage", "svd_faer_1stage", "svd_2stage"]:
            rust[k] = criterion_median(k, str(n))
        if n == 2000:
            for k in ["cond_estimate_lu", "cond_estimate_spd", "cond1_exact"]:
                rust[k] = criterion_median("estimate", k, str(n))
        res["sizes"][n] = {"peer": peer, "rust": rust}
        print(f"n={n}: kappa(H) numpy = {peer['cond_H_numpy']:.12g}", flush=True)
    res["loadavg_end"] = os.getloadavg()
    with open(os.path.join(ROOT, "benches", "peers", args.out), "w") as f:
        json.dump(res, f, indent=1)

    print(f"\nMachine: {res['machine']}, {res['cores']} cores; numpy {np.__version__}, scipy {scipy.__version__}; "
          f"load average {res['loadavg_start'][0]:.1f} -> {res['loadavg_end'][0]:.1f}\n")
    print("| n | faer `cond2` | scipy `svdvals` | numpy `cond` | cond2 / svdvals | faer `sym_spectrum` | numpy `eigvalsh` "
          "| sym_spectrum / eigvalsh | `sym_cond` (κ, SPD) | sym_cond / eigvalsh | `sym_extremes` |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        p, r = res["sizes"][n]["peer"], res["sizes"][n]["rust"]
        print(f"| {n} | {fmt(r['cond2'])} | {fmt(p['svdvals'])} | {fmt(p['np_cond'])} | {ratio(r['cond2'], p['svdvals'])} "
              f"| {fmt(r['sym_spectrum'])} | {fmt(p['eigvalsh'])} | {ratio(r['sym_spectrum'], p['eigvalsh'])} "
              f"| {fmt(r['sym_cond'])} | {ratio(r['sym_cond'], p['eigvalsh'])} | {fmt(r['sym_extremes'])} |")
    print("\nOne-stage (faer) vs two-stage, same run:\n")
    print("| n | faer `self_adjoint_eigenvalues` | two-stage eigenvalues | 2-stage / faer | 2-stage / numpy `eigvalsh` "
          "| faer `singular_values` | two-stage singular values | 2-stage / faer | 2-stage / scipy `svdvals` |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        p, r = res["sizes"][n]["peer"], res["sizes"][n]["rust"]
        if r.get("sym_eig_2stage") is None:
            continue
        print(f"| {n} | {fmt(r['sym_eig_faer_1stage'])} | {fmt(r['sym_eig_2stage'])} | {ratio(r['sym_eig_2stage'], r['sym_eig_faer_1stage'])} "
              f"| {ratio(r['sym_eig_2stage'], p['eigvalsh'])} | {fmt(r['svd_faer_1stage'])} | {fmt(r['svd_2stage'])} "
              f"| {ratio(r['svd_2stage'], r['svd_faer_1stage'])} | {ratio(r['svd_2stage'], p['svdvals'])} |")
    if 2000 in res["sizes"]:
        p, r = res["sizes"][2000]["peer"], res["sizes"][2000]["rust"]
        print("\nCondition estimates at n = 2000 (speed-up = exact time / estimate time):\n")
        print("| estimate | time | exact reference | its time | speed-up |")
        print("|---|---|---|---|---|")
        print(f"| `cond_estimate_lu` (LU + Hager–Higham) | {fmt(r['cond_estimate_lu'])} | `cond2` (SVD, exact κ₂) | {fmt(r['cond2'])} | {ratio(r['cond2'], r['cond_estimate_lu'])}× |")
        print(f"| `cond_estimate_lu` | {fmt(r['cond_estimate_lu'])} | `cond1` (LU + inverse, exact κ₁) | {fmt(r['cond1_exact'])} | {ratio(r['cond1_exact'], r['cond_estimate_lu'])}× |")
        print(f"| `cond_estimate_spd` (Cholesky + Hager–Higham) | {fmt(r['cond_estimate_spd'])} | `sym_spectrum` (exact κ) | {fmt(r['sym_spectrum'])} | {ratio(r['sym_spectrum'], r['cond_estimate_spd'])}× |")
        print(f"| LAPACK `dgetrf`+`dgecon` (scipy) | {fmt(p['dgetrf_dgecon'])} | numpy `cond` | {fmt(p['np_cond'])} | {ratio(p['np_cond'], p['dgetrf_dgecon'])}× |")
        print(f"| LAPACK `dpotrf`+`dpocon` (scipy) | {fmt(p['dpotrf_dpocon'])} | numpy `eigvalsh` | {fmt(p['eigvalsh'])} | {ratio(p['eigvalsh'], p['dpotrf_dpocon'])}× |")


if __name__ == "__main__":
    main()
