"""Every comparison issue 17 sets a goal for, on this machine, in one command, with the CPU named:
the per-goal table BENCHMARKS.md keeps per CPU family.

Run (from the repository root, peers installed in /tmp/peers: torch, numpy, scipy):
      /tmp/peers/bin/python benches/peers/goals.py [--out-dir=benches/peers/goals_<cpu>_<date>]
          [--skip=optim,c_reference,linalg,nn] [--linalg-n=100,300,...] [--rounds-scale=1]

It builds the C library (`cargo build --release -p precond-ffi`), then runs, one after the other
(never two benchmarks at once):
  optim        optim_same_process.py at n = 10^6 (7 rounds) and 10^7 (5 rounds): every
               optimizer x f32/f64 against torch fused (RMSprop: foreach), both policies
  c_reference  c_reference.c (gcc -O3 -march=native -fno-math-errno) at n = 10^4: the same
               optimizers against native C loops of torch's arithmetic
  linalg       linalg_same_process.py at n = 100 ... 4000: all eigenvalues, kappa_2, the LU
               condition estimate against numpy/scipy (OpenBLAS)
  nn           `cargo bench -p precond-nn --bench train_step` and nn_train_step.py (torch, two
               threads): one MLP training step at batch 64, 256, 1437, plain and BatchNorm
Each writes its raw output into the output directory (JSON, logs); the goal table is printed and
written there as goals.md, every row marked met or not:
  optim        propagate >= 1 x torch at 10^6 and 10^7; error >= 0.95 at 10^6, >= 0.9 at 10^7
  c_reference  >= 1 x the C loop at 10^4 (propagate: the same arithmetic; error, which also
               scans g before writing, reported beside it)
  linalg       time <= 1 x the LAPACK peer at every n
  nn           time <= 1 x torch at every batch
"""
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PY = sys.executable


def _arg(name, default):
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


def cpu():
    """`model name`, family/model and the widest SIMD level of /proc/cpuinfo."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" not in line:
                    if info:
                        break
                    continue
                k, v = (s.strip() for s in line.split(":", 1))
                info.setdefault(k, v)
    except OSError:
        return {"model": "unknown", "simd": "unknown"}
    flags = set(info.get("flags", "").split())
    simd = "avx512f" if "avx512f" in flags else ("avx2+fma" if {"avx2", "fma"} <= flags else "baseline")
    return {"model": info.get("model name", "unknown"), "family": info.get("cpu family"),
            "model_number": info.get("model"), "simd": simd, "amx": "amx_tile" in flags,
            "cores": os.cpu_count()}


def run(cmd, log, env=None):
    print("$", " ".join(cmd), flush=True)
    with open(log, "w") as f:
        p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env={**os.environ, **(env or {})})
        f.write(p.stdout)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed (rc {p.returncode}); see {log}")
    return p.stdout


def optim(out, scale):
    rows = []
    for n, rounds in [(1_000_000, 7), (10_000_000, 5)]:
        js = os.path.join(out, f"optim_n{n}.json")
        run([PY, os.path.join(HERE, "optim_same_process.py"), f"--sizes={n}",
             f"--rounds={max(3, round(rounds * scale))}", f"--out={js}"],
            os.path.join(out, f"optim_n{n}.log"))
        with open(js) as f:
            for r in json.load(f)["rows"]:
                for pol, goal in [("propagate", 1.0), ("error", 0.95 if n < 10_000_000 else 0.9)]:
                    q = r[f"ours_{pol}/torch"]
                    rows.append(("optim (throughput / torch " + r["torch_mode"] + ")",
                                 f"{r['optimizer']} {r['dtype']} n={n:.0e} {pol}", q["median"],
                                 q["min"], q["max"], goal, q["median"] >= goal))
    return rows


def c_reference(out):
    # (the program links the static library: tens of MB, kept out of the output directory)
    exe = os.path.join(tempfile.mkdtemp(prefix="precond_c_reference_"), "c_reference")
    run(["gcc", "-O3", "-march=native", "-fno-math-errno", "-std=c99", "-Iinclude",
         os.path.join(HERE, "c_reference.c"), "target/release/libprecond_ffi.a", "-lm", "-lpthread",
         "-ldl", "-o", exe], os.path.join(out, "c_reference_build.log"))
    text = run([exe, "bench", "10000"], os.path.join(out, "c_reference.log"))
    shutil.rmtree(os.path.dirname(exe), ignore_errors=True)
    rows = []
    pat = re.compile(r"^(\S+)\s+(f32|f64) n=(\d+)\s+(error|propagate)\s+precond\s+([\d.]+) us\s+C\s+"
                     r"([\d.]+) us\s+ratio ([\d.]+) \[([\d.]+), ([\d.]+)\]")
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            name, dt, n, pol, _, _, med, lo, hi = m.groups()
            goal = 1.0 if pol == "propagate" else None
            rows.append(("C loop at 10^4 (throughput / C)", f"{name} {dt} {pol}", float(med),
                         float(lo), float(hi), goal, None if goal is None else float(med) >= goal))
    return rows


def linalg(out, sizes, scale):
    rows = []
    for n in sizes:
        js = os.path.join(out, f"linalg_n{n}.json")
        rounds = max(3, round((3 if n >= 4000 else 5) * scale))
        run([PY, os.path.join(HERE, "linalg_same_process.py"), f"--n={n}", f"--rounds={rounds}",
             f"--out={js}"], os.path.join(out, f"linalg_n{n}.log"))
        with open(js) as f:
            for r in json.load(f)["rows"]:
                q = r["ratio"]
                rows.append(("linalg (time / LAPACK)", f"{r['pair']} n={n}", q["median"], q["min"],
                             q["max"], 1.0, q["median"] <= 1.0))
    return rows


def nn(out):
    run(["cargo", "bench", "-p", "precond-nn", "--bench", "train_step", "--", "--noplot"],
        os.path.join(out, "nn_criterion.log"))
    text = run([PY, os.path.join(HERE, "nn_train_step.py")], os.path.join(out, "nn_torch.log"))
    torch_us = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)/(\d+): ([\d.]+) us/step", line)
        if m:
            torch_us[(m.group(1), int(m.group(2)))] = float(m.group(3))
    base = os.path.join(ROOT, "target", "criterion", "train_step_64_128_128_10")
    rows, ours = [], {}
    for name in sorted(os.listdir(base)):
        for batch in sorted(os.listdir(os.path.join(base, name))):
            est = os.path.join(base, name, batch, "new", "estimates.json")
            if not batch.isdigit() or not os.path.exists(est):
                continue
            with open(est) as f:
                e = json.load(f)["median"]
            ours[(name, int(batch))] = e
            key = ("batchnorm" if "batchnorm" in name else "plain", int(batch))
            if key in torch_us:
                t = torch_us[key]
                lo, hi = e["confidence_interval"]["lower_bound"], e["confidence_interval"]["upper_bound"]
                ratio = e["point_estimate"] * 1e-3 / t
                rows.append(("MLP train step (time / torch)", f"{name} batch {batch}", ratio,
                             lo * 1e-3 / t, hi * 1e-3 / t, 1.0, ratio <= 1.0))
    with open(os.path.join(out, "nn.json"), "w") as f:
        json.dump({"torch_us": {f"{k[0]}/{k[1]}": v for k, v in torch_us.items()},
                   "ours_criterion_ns": {f"{k[0]}/{k[1]}": v for k, v in ours.items()}}, f, indent=1)
    return rows


def main():
    c = cpu()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%MZ")
    tag = re.sub(r"[^a-z0-9]+", "_", c["model"].lower()).strip("_")
    out = os.path.abspath(_arg("out-dir", os.path.join(HERE, f"goals_{tag}_{stamp}")))
    os.makedirs(out, exist_ok=True)
    skip = set(_arg("skip", "").split(",")) - {""}
    sizes = [int(s) for s in _arg("linalg-n", "100,300,500,700,1000,1500,2000,4000").split(",")]
    scale = float(_arg("rounds-scale", "1"))
    print(f"CPU: {c}", flush=True)
    run(["cargo", "build", "--release", "-p", "precond-ffi"], os.path.join(out, "build.log"))
    rows = []
    if "optim" not in skip:
        rows += optim(out, scale)
    if "c_reference" not in skip:
        rows += c_reference(out)
    if "linalg" not in skip:
        rows += linalg(out, sizes, scale)
    if "nn" not in skip:
        rows += nn(out)
    lines = [f"Machine: {c['model']} (family {c.get('family')}, model {c.get('model_number')}), "
             f"{c['simd']}{', AMX' if c.get('amx') else ''}, {c['cores']} cores; {stamp}.", "",
             "| comparison | case | ratio [min, max] | goal | met |", "|---|---|---|---|---|"]
    for group, case, med, lo, hi, goal, met in rows:
        g = "" if goal is None else (f">= {goal:g}" if "throughput" in group else f"<= {goal:g}")
        m = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {group} | {case} | {med:.2f} [{lo:.2f}, {hi:.2f}] | {g} | {m} |")
    judged = [r for r in rows if r[6] is not None]
    lines += ["", f"{sum(r[6] for r in judged)} of {len(judged)} goals met."]
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, "goals.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "goals.json"), "w") as f:
        json.dump({"cpu": c, "time": stamp, "rows": [
            {"comparison": r[0], "case": r[1], "median": r[2], "min": r[3], "max": r[4],
             "goal": r[5], "met": r[6]} for r in rows]}, f, indent=1)
    print(f"wrote {out}/goals.md")


if __name__ == "__main__":
    main()
