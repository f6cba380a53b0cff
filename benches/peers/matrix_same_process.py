"""Matrix optimizers, ours (through the C ABI) and torch's, in the SAME process, interleaved in
rounds (see optim_same_process.py for why).

Run:  cargo build --release -p precond-ffi
      /tmp/peers/bin/python benches/peers/matrix_same_process.py [--rounds=5] [--out=matrix_same_process.json]

Cases:
- Muon step, float32, shapes 1024x1024 and 4096x1024 (torch's [out, in]): ours (Newton–Schulz in
  float32, symmetric Gram products) against torch 2.15 `torch.optim.Muon` with its module-level
  `_zeropower_via_newtonschulz` replaced by a float32 copy of the same arithmetic (torch looks it
  up at call time), and torch's stock bfloat16 Newton–Schulz beside it. Same momentum, Nesterov,
  weight decay, lr adjustment on both sides.
- Shampoo's inverse roots: one Shampoo step of ours on a 1024x1024 float64 matrix with
  precondition_frequency 1 (two 1024x1024 factor updates GGᵀ, GᵀG, two inverse fourth roots by
  symmetric eigendecomposition, two products) against torch doing the same arithmetic
  (`G @ G.T`, `G.T @ G`, two `torch.linalg.eigh`, the roots `Q diag(λ^-1/4) Qᵀ`, two products).
- Shampoo's inverse root alone: `precond_sym_inverse_root` (workspace made once) on a
  1024x1024 float64 factor `G Gᵀ` against `torch.linalg.eigh` of it and torch's root.
`--only=muon,shampoo,root` runs a subset.
Each round times a block of calls of each runner (order rotated per round) and keeps the block's
median; the ratio reported is the median over rounds of torch/ours (> 1: ours faster), with its
range.
"""
import ctypes
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.optim._muon as tmuon

sys.path.insert(0, os.path.dirname(__file__))
from same_process import LIB, block  # noqa: E402


def _arg(name, default):
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


ROUNDS = int(_arg("rounds", "5"))
OUT = _arg("out", "matrix_same_process.json")
torch.set_num_threads(2)
STOCK_NS = tmuon._zeropower_via_newtonschulz


def ns_f32(grad, ns_coefficients, ns_steps, eps):
    """torch's Newton–Schulz with the bfloat16 copy replaced by a float32 one."""
    a, b, c = ns_coefficients
    x = grad.to(dtype=torch.float32, copy=True)
    if grad.size(0) > grad.size(1):
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(ns_steps):
        gram = x @ x.T
        upd = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, upd, x, beta=a)
    if grad.size(0) > grad.size(1):
        x = x.T
    return x


def load():
    lib = ctypes.CDLL(LIB)
    lib.precond_optimizer_new_json.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    lib.precond_optimizer_new_json.restype = ctypes.c_int
    for f in (lib.precond_optimizer_step_f64, lib.precond_optimizer_step_f32):
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        f.restype = ctypes.c_int
    lib.precond_optimizer_free.argtypes = [ctypes.c_void_p]
    lib.precond_last_error.restype = ctypes.c_char_p
    lib.precond_sym_root_new.argtypes = [ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    lib.precond_sym_root_new.restype = ctypes.c_int
    lib.precond_sym_root_free.argtypes = [ctypes.c_void_p]
    lib.precond_sym_inverse_root.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32,
                                             ctypes.c_double, ctypes.c_double, ctypes.c_void_p,
                                             ctypes.c_size_t, ctypes.c_void_p]
    lib.precond_sym_inverse_root.restype = ctypes.c_int
    return lib


class Ours:
    def __init__(self, lib, cfg, n, dtype):
        self.lib, self.n = lib, n
        self.h = ctypes.c_void_p()
        st = lib.precond_optimizer_new_json(cfg.encode(), n, ctypes.byref(self.h))
        if st != 0:
            raise RuntimeError(f"{cfg}: status {st}: {lib.precond_last_error().decode()}")
        self.f = lib.precond_optimizer_step_f32 if dtype == torch.float32 else lib.precond_optimizer_step_f64

    def step(self, x, g):
        st = self.f(self.h, ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(g.data_ptr()), self.n)
        if st != 0:
            raise RuntimeError(f"step: status {st}: {self.lib.precond_last_error().decode()}")


def rounds(runners, reps):
    for f in runners.values():
        f()
        f()
    names = list(runners)
    per = {k: [] for k in names}
    for r in range(ROUNDS):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            per[k].append(block(runners[k], reps))
    return per


def ratio(per, peer, ours):
    rs = [t / o for t, o in zip(per[peer], per[ours])]
    return {"median": statistics.median(rs), "min": min(rs), "max": max(rs)}


def muon_case(lib, rows_, cols):
    n = rows_ * cols
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(rows_, cols, generator=gen, dtype=torch.float32) * 0.01
    p32 = torch.nn.Parameter(torch.randn(rows_, cols, generator=gen, dtype=torch.float32))
    pbf = torch.nn.Parameter(p32.detach().clone())
    p32.grad, pbf.grad = g.clone(), g.clone()
    t32 = torch.optim.Muon([p32], lr=0.02)
    tbf = torch.optim.Muon([pbf], lr=0.02)
    x = p32.detach().clone().contiguous()
    ours = Ours(lib, f'{{"optimizer": "muon", "lr": 0.02, "shape": [{rows_}, {cols}]}}', n, torch.float32)

    def torch_f32():
        tmuon._zeropower_via_newtonschulz = ns_f32
        t32.step()

    def torch_bf16():
        tmuon._zeropower_via_newtonschulz = STOCK_NS
        tbf.step()

    per = rounds({"torch_f32": torch_f32, "torch_bf16": torch_bf16,
                  "ours_f32": lambda: ours.step(x, g)}, 5)
    tmuon._zeropower_via_newtonschulz = STOCK_NS
    lib.precond_optimizer_free(ours.h)
    return {"case": f"muon {rows_}x{cols} f32", "rounds": ROUNDS, "seconds": per,
            "torch_f32/ours": ratio(per, "torch_f32", "ours_f32"),
            "torch_bf16/ours": ratio(per, "torch_bf16", "ours_f32")}


def shampoo_case(lib, d):
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(d, d, generator=gen, dtype=torch.float64)
    x = torch.randn(d, d, generator=gen, dtype=torch.float64)
    ours = Ours(lib, f'{{"optimizer": "shampoo", "lr": 0.01, "shape": [{d}, {d}], "betas": [0.0, 1.0], '
                     f'"epsilon": 1e-6}}', d * d, torch.float64)
    lf = torch.zeros(d, d, dtype=torch.float64)
    rf = torch.zeros(d, d, dtype=torch.float64)

    def torch_same():
        lf.add_(g @ g.T)
        rf.add_(g.T @ g)
        roots = []
        for f in (lf, rf):
            lam, q = torch.linalg.eigh(f + 1e-6 * torch.eye(d, dtype=torch.float64))
            roots.append((q * lam.pow(-0.25)) @ q.T)
        x.sub_(0.01 * (roots[0] @ g @ roots[1]))

    xo = x.clone()
    per = rounds({"torch_eigh": torch_same, "ours_step": lambda: ours.step(xo, g)}, 2)
    lib.precond_optimizer_free(ours.h)
    return {"case": f"shampoo step with two inverse roots, {d}x{d} f64", "rounds": ROUNDS,
            "seconds": per, "torch/ours": ratio(per, "torch_eigh", "ours_step")}


def root_case(lib, d):
    """One inverse fourth root of a d x d Shampoo factor G Gᵀ (G standard normal, float64):
    ours (`precond_sym_inverse_root` on a workspace made once) against `torch.linalg.eigh` alone
    (the issue's bar) and torch's whole root `(q·λ^(-1/4)) qᵀ`."""
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(d, d, generator=gen, dtype=torch.float64)
    f = (g @ g.T).contiguous()
    eps = 1e-6
    fe = f + eps * torch.eye(d, dtype=torch.float64)
    out = torch.empty(d, d, dtype=torch.float64)
    ws = ctypes.c_void_p()
    st = lib.precond_sym_root_new(d, ctypes.byref(ws))
    if st != 0:
        raise RuntimeError(f"sym_root_new: status {st}: {lib.precond_last_error().decode()}")

    def ours():
        st = lib.precond_sym_inverse_root(ws, ctypes.c_void_p(f.data_ptr()), d, 0, eps, 4.0,
                                          ctypes.c_void_p(out.data_ptr()), d * d, None)
        if st != 0:
            raise RuntimeError(f"inverse_root: status {st}: {lib.precond_last_error().decode()}")

    def torch_root():
        lam, q = torch.linalg.eigh(fe)
        return (q * lam.pow(-0.25)) @ q.T

    ours()
    want = torch_root()
    err = (out - want).abs().max().item() / want.abs().max().item()
    assert err < 1e-8, f"inverse roots differ: {err}"
    per = rounds({"torch_eigh": lambda: torch.linalg.eigh(fe), "torch_root": torch_root, "ours_root": ours}, 3)
    lib.precond_sym_root_free(ws)
    return {"case": f"inverse fourth root of a {d}x{d} f64 factor", "rounds": ROUNDS, "seconds": per,
            "max_rel_diff_vs_torch_root": err,
            "torch_eigh/ours": ratio(per, "torch_eigh", "ours_root"),
            "torch_root/ours": ratio(per, "torch_root", "ours_root")}


def main():
    lib = load()
    only = _arg("only", "")
    cases = {"muon": lambda: [muon_case(lib, 1024, 1024), muon_case(lib, 4096, 1024)],
             "shampoo": lambda: [shampoo_case(lib, 1024)],
             "root": lambda: [root_case(lib, 1024)]}
    rows = [r for k, f in cases.items() if not only or k in only.split(",") for r in f()]
    for r in rows:
        med = {k: statistics.median(v) * 1e3 for k, v in r["seconds"].items()}
        rats = {k: v for k, v in r.items() if "/" in k}
        print(r["case"], " | ".join(f"{k} {v:.1f} ms" for k, v in med.items()),
              " | ".join(f"{k} {v['median']:.2f} [{v['min']:.2f}, {v['max']:.2f}]" for k, v in rats.items()),
              flush=True)
    res = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "torch": torch.__version__, "lib": LIB, "rows": rows}
    out = OUT if os.path.isabs(OUT) else os.path.join(os.path.dirname(__file__), OUT)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
