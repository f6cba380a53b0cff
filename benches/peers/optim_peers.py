"""torch.optim peer timings for benches/optim_step.rs (one optimizer step, params/s).

Run:  /tmp/peers/bin/python benches/peers/optim_peers.py [--quick] [--only=adam,adamw] [--sizes=10000,1000000]
      [--out=optim_peers.json] [--threads=2]
Writes benches/peers/optim_peers.json. Same machine, same run conditions as the criterion bench:
torch.set_num_threads(2), parameters in one flat tensor, the gradient fixed (as in the Rust bench).
Variants: fused=True (CPU fused kernels: Adam, AdamW, SGD, Adagrad), foreach=True, and the default
single-tensor loop (foreach=False) for RMSprop.
"""
import json
import os
import platform
import sys
import time

import torch

QUICK = "--quick" in sys.argv


def _arg(name, default):
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1].split(",")
    return default


SIZES = [int(s) for s in _arg("sizes", ["1000", "10000", "100000", "1000000", "10000000"])]
ONLY = _arg("only", None)
OUT = _arg("out", ["optim_peers.json"])[0]
torch.set_num_threads(int(_arg("threads", ["2"])[0]))
OPTS = {
    "sgd": (torch.optim.SGD, {"lr": 0.01}),
    "sgd_momentum": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    "adagrad": (torch.optim.Adagrad, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
}
FUSED_OK = {"sgd", "sgd_momentum", "adagrad", "adam", "adamw"}


def time_step(opt, n):
    opt.step()  # allocate state
    budget = 0.4 if QUICK else 1.5
    t0 = time.perf_counter()
    opt.step()
    reps = max(1, int(0.05 / max(time.perf_counter() - t0, 1e-7)))
    best = []
    t_end = time.perf_counter() + budget
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            opt.step()
        dt = (time.perf_counter() - t0) / reps
        best.append(dt)
        if time.perf_counter() > t_end and len(best) >= 3:
            break
    best.sort()
    return best[len(best) // 2]  # median of batches


def main():
    rows = []
    for n in SIZES:
        for dtype, dt in [("f32", torch.float32), ("f64", torch.float64)]:
            for name, (cls, kw) in OPTS.items():
                if ONLY and name not in ONLY:
                    continue
                variants = ["foreach"] + (["fused"] if name in FUSED_OK else ["single"])
                for var in variants:
                    p = torch.nn.Parameter(torch.linspace(1.0, 1.1, n, dtype=dt))
                    p.grad = torch.linspace(-0.044, 0.044, n, dtype=dt)
                    extra = {"fused": True} if var == "fused" else ({"foreach": True} if var == "foreach" else {"foreach": False})
                    try:
                        opt = cls([p], **kw, **extra)
                        t = time_step(opt, n)
                    except (RuntimeError, ValueError) as e:  # unsupported variant
                        print(f"skip {name} {var} {dtype}: {e}", file=sys.stderr)
                        continue
                    rows.append(dict(optimizer=name, variant=var, dtype=dtype, n=n, seconds=t, params_per_s=n / t))
                    print(f"{name:13s} {var:8s} {dtype} n={n:>9d}  {t * 1e6:10.2f} us  {n / t / 1e6:9.1f} Mparam/s", flush=True)
    meta = dict(torch=torch.__version__, threads=torch.get_num_threads(), machine=platform.processor() or platform.machine(),
                cpu=open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": ") if os.path.exists("/proc/cpuinfo") else "")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), OUT)
    with open(out, "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
