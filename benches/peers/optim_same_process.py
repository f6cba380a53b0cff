"""One optimizer step, ours (through the C ABI) and torch.optim fused, in the SAME process,
interleaved in rounds: the fair comparison on a VM whose memory bandwidth drifts by ±20 % between
processes and minutes (see BENCHMARKS.md, precond-optim, session 4).

Run:  cargo build --release -p precond-ffi
      /tmp/peers/bin/python benches/peers/optim_same_process.py [--rounds=7] [--sizes=1000000,10000000]
          [--only=adam,sgd] [--gap-us=0] [--out=optim_same_process.json]
      (--gap-us=1000: each step follows 1 ms of busy waiting, as in a training loop)

For every optimizer x dtype x n: one torch optimizer (fused=True; RMSprop, which has no fused
implementation in torch, with foreach=True, its fastest) and two of ours built from
the same torch-named JSON (`"nonfinite": "error"`, the default, which scans g before writing,
and `"nonfinite": "propagate"`, torch's semantics). All parameter and gradient buffers are torch
tensors (same allocator, same values as benches/optim_step.rs and optim_peers.py); our state
lives in the library. Each round times a block of steps of each of the three (order rotated per
round; each block after a pause and an untimed step, so that neither thread pool's spinning
workers overlap the next block: see same_process.py) and keeps the block's median; the reported ratio is the median over rounds of the
per-round ratio ours / torch (throughput, > 1 means we are faster), with its range.
"""
import ctypes
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from same_process import LIB, block  # noqa: E402


def _arg(name, default):
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1].split(",")
    return default


ROUNDS = int(_arg("rounds", ["7"])[0])
SIZES = [int(s) for s in _arg("sizes", ["1000000", "10000000"])]
ONLY = _arg("only", None)
OUT = _arg("out", ["optim_same_process.json"])[0]
# busy wait before each timed step, microseconds (0: steps back to back)
GAP_US = float(_arg("gap-us", ["0"])[0])
torch.set_num_threads(2)


OPTS = {
    # name: (torch class, torch kwargs, our JSON without the policy)
    "sgd": (torch.optim.SGD, {"lr": 0.01}, '"optimizer": "sgd", "lr": 0.01'),
    "sgd_momentum": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9},
                     '"optimizer": "sgd", "lr": 0.01, "momentum": 0.9'),
    "adagrad": (torch.optim.Adagrad, {}, '"optimizer": "adagrad"'),
    "adam": (torch.optim.Adam, {}, '"optimizer": "adam"'),
    "adamw": (torch.optim.AdamW, {}, '"optimizer": "adamw"'),
    "rmsprop": (torch.optim.RMSprop, {}, '"optimizer": "rmsprop"'),
}
# torch's fastest implementation of each: fused where it exists
TORCH_MODE = {"rmsprop": "foreach"}


class Ours:
    """An optimizer of libprecond_ffi stepping a torch tensor's memory in place."""

    def __init__(self, lib, json_cfg, n, dtype):
        self.lib = lib
        self.h = ctypes.c_void_p()
        st = lib.precond_optimizer_new_json(json_cfg.encode(), n, ctypes.byref(self.h))
        if st != 0:
            raise RuntimeError(f"precond_optimizer_new_json({json_cfg}): status {st}: "
                               f"{lib.precond_last_error().decode()}")
        self.step_fn = lib.precond_optimizer_step_f64 if dtype == torch.float64 else lib.precond_optimizer_step_f32
        self.n = n

    def step(self, x, g):
        st = self.step_fn(self.h, ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(g.data_ptr()), self.n)
        if st != 0:
            raise RuntimeError(f"step: status {st}")

    def free(self):
        self.lib.precond_optimizer_free(self.h)


def load():
    lib = ctypes.CDLL(LIB)
    lib.precond_optimizer_new_json.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    lib.precond_optimizer_new_json.restype = ctypes.c_int
    for f in (lib.precond_optimizer_step_f64, lib.precond_optimizer_step_f32):
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        f.restype = ctypes.c_int
    lib.precond_optimizer_free.argtypes = [ctypes.c_void_p]
    lib.precond_optimizer_free.restype = None
    lib.precond_last_error.argtypes = []
    lib.precond_last_error.restype = ctypes.c_char_p
    return lib


def main():
    lib = load()
    rows = []
    for n in SIZES:
        reps = 20 if n >= 10_000_000 else 100
        for dname, dt in [("f32", torch.float32), ("f64", torch.float64)]:
            for name, (cls, kw, cfg) in OPTS.items():
                if ONLY and name not in ONLY:
                    continue
                p = torch.nn.Parameter(torch.linspace(1.0, 1.1, n, dtype=dt))
                p.grad = torch.linspace(-0.044, 0.044, n, dtype=dt)
                mode = TORCH_MODE.get(name, "fused")
                topt = cls([p], **{mode: True}, **kw)
                xs = {pol: torch.linspace(1.0, 1.1, n, dtype=dt) for pol in ("error", "propagate")}
                g = torch.linspace(-0.044, 0.044, n, dtype=dt)
                ours = {pol: Ours(lib, "{" + cfg + f', "nonfinite": "{pol}"' + "}", n, dt)
                        for pol in ("error", "propagate")}
                runners = {
                    "torch_fused": topt.step,
                    "ours_error": lambda: ours["error"].step(xs["error"], g),
                    "ours_propagate": lambda: ours["propagate"].step(xs["propagate"], g),
                }
                for f in runners.values():  # state allocation, first touch
                    f()
                    f()
                names = list(runners)
                per = {k: [] for k in names}
                for r in range(ROUNDS):
                    order = names[r % 3:] + names[:r % 3]
                    for k in order:
                        per[k].append(block(runners[k], reps, GAP_US * 1e-6))
                for o in ours.values():
                    o.free()
                row = {"optimizer": name, "torch_mode": mode, "dtype": dname, "n": n, "rounds": ROUNDS, "reps": reps,
                       "seconds": per}
                for k in ("ours_error", "ours_propagate"):
                    ratios = [t / o for t, o in zip(per["torch_fused"], per[k])]
                    row[f"{k}/torch"] = {"median": statistics.median(ratios), "min": min(ratios),
                                         "max": max(ratios)}
                rows.append(row)
                mp = {k: n / statistics.median(v) * 1e-6 for k, v in per.items()}
                e, q = row["ours_error/torch"], row["ours_propagate/torch"]
                print(f"{name:13s} {dname} n={n:>9}: torch {mode:7s} {mp['torch_fused']:7.0f} | error {mp['ours_error']:7.0f} "
                      f"| propagate {mp['ours_propagate']:7.0f} Mparam/s | error/torch {e['median']:.2f} "
                      f"[{e['min']:.2f}, {e['max']:.2f}] | propagate/torch {q['median']:.2f} "
                      f"[{q['min']:.2f}, {q['max']:.2f}]", flush=True)
                del topt, p, xs, g
    res = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "torch": torch.__version__, "lib": LIB, "gap_us": GAP_US, "rows": rows}
    out = OUT if os.path.isabs(OUT) else os.path.join(os.path.dirname(__file__), OUT)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
