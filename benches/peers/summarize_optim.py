"""Summarize benches/optim_step.rs (criterion) against torch (optim_peers.json) for BENCHMARKS.md.

Run after `cargo bench --bench optim_step` and `benches/peers/optim_peers.py`:
    python3 benches/peers/summarize_optim.py
Prints markdown tables: params/s of precond-optim vs torch fused / foreach, the ratio, and the
fraction of the memory-bandwidth bound (bytes moved per step / STREAM copy bandwidth measured in
the same criterion run).
"""
import glob
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CRIT = os.path.join(ROOT, "target", "criterion")
# minimal streams per element: x read+write, g read, each state slot read+write (+ the
# non-finite check's second read of g, reported separately)
STREAMS = {"sgd": 3, "sgd_momentum": 5, "adagrad": 5, "rmsprop": 5, "adam": 7, "adamw": 7, "adam_prox_l1": 7}


def load_criterion():
    res = {}
    for bj in glob.glob(os.path.join(CRIT, "**", "new", "benchmark.json"), recursive=True):
        b = json.load(open(bj))
        est = json.load(open(os.path.join(os.path.dirname(bj), "estimates.json")))
        if not b["group_id"].startswith(("step_n", "stream_n", "dispatch_n", "par_n")):
            continue
        res[(b["group_id"], b["function_id"] or "", b.get("value_str"))] = est["median"]["point_estimate"] * 1e-9
    return res


def main():
    c = load_criterion()
    peers = json.load(open(os.path.join(ROOT, "benches", "peers", "optim_peers.json")))
    tp = {(r["optimizer"], r["variant"], r["dtype"], r["n"]): r["params_per_s"] for r in peers["rows"]}
    one = os.path.join(ROOT, "benches", "peers", "optim_peers_1thread.json")
    if os.path.exists(one):
        for r in json.load(open(one))["rows"]:
            tp[(r["optimizer"], r["variant"] + "_1t", r["dtype"], r["n"])] = r["params_per_s"]
    copy = c.get(("stream_n10000000", "copy_f64", None))
    copy_t = c.get(("stream_n10000000", "copy_f64_threads", None))
    triad_t = c.get(("stream_n10000000", "triad_f64_threads", None))
    n = 10_000_000
    bw = 16 * n / copy if copy else None
    bw_t = 16 * n / copy_t if copy_t else None
    # the bound uses the best copy bandwidth seen in the run (conservative for the percentage)
    bw_best = max(v for v in [bw, bw_t] if v)
    print(f"STREAM copy 1 thread: {bw / 1e9:.2f} GB/s; 2 threads: {bw_t / 1e9:.2f} GB/s; "
          f"triad 2 threads: {24 * n / triad_t / 1e9:.2f} GB/s\n")
    print("| optimizer | dtype | n | precond-optim Mparam/s | torch fused | torch foreach | torch fused, 1 thread | ours / fused | ours / foreach | % of bandwidth bound |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (g, f, v), t in sorted(c.items(), key=lambda kv: (kv[0][1], int(kv[0][2] or 0))):
        if not g.startswith("step_n"):
            continue
        name, dtype = f.rsplit("_", 1)
        size = int(v)
        ours = size / t
        fused = tp.get((name, "fused", dtype, size))
        fe = tp.get((name, "foreach", dtype, size)) or tp.get((name, "single", dtype, size))
        width = 4 if dtype == "f32" else 8
        bound = ""
        if size >= 10_000_000 and name in STREAMS:  # 1e6 still fits in the caches
            t_bound = STREAMS[name] * width * size / bw_best
            bound = f"{100 * t_bound / t:.0f}%"
        fmt = lambda x: f"{x / 1e6:.0f}" if x else "–"
        ratio = lambda x: f"{ours / x:.1f}×" if x else "–"
        if fused is None and fe is None:
            continue
        f1 = tp.get((name, "fused_1t", dtype, size))
        print(f"| {name} | {dtype} | {size:.0e} | {ours / 1e6:.0f} | {fmt(fused)} | {fmt(fe)} | {fmt(f1)} | {ratio(fused)} | {ratio(fe)} | {bound} |")
    print()
    for key in sorted(k for k in c if k[0].startswith("dispatch") or k[0].startswith("par_")):
        print(f"{key[0]:>12s} {key[1]:>24s}: {int(key[2]) / c[key] / 1e6:8.0f} Mparam/s")


if __name__ == "__main__":
    main()
