"""PyTorch peer of crates/precond-nn/benches/train_step.rs: one training step (forward,
backward, Adam step) of a 64-128-128-10 ReLU MLP with softmax cross-entropy, float64, CPU.

Run: /tmp/peers/bin/python benches/peers/nn_train_step.py
Prints the median time per step in microseconds for each (variant, batch).
"""
import csv
import os
import statistics
import time

import torch

torch.set_default_dtype(torch.float64)
# PEER_THREADS=1 for a single-threaded comparison (the Rust side: RAYON_NUM_THREADS=1)
if os.environ.get("PEER_THREADS"):
    torch.set_num_threads(int(os.environ["PEER_THREADS"]))
here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "..", "..", "crates", "precond-nn", "data", "digits.csv")
with open(path) as f:
    rows = list(csv.reader(f))[1:]
x_all = torch.tensor([[float(v) for v in r[:-1]] for r in rows])
y_all = torch.tensor([int(float(r[-1])) for r in rows])
mu = x_all.mean(0)
sd = x_all.std(0, unbiased=False)
sd[sd == 0] = 1.0
x_all = (x_all - mu) / sd

print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
for variant in ["plain", "batchnorm"]:
    for batch in [64, 256, 1437]:
        torch.manual_seed(0)
        layers = []
        d = 64
        for w in [128, 128]:
            layers += [torch.nn.Linear(d, w), torch.nn.ReLU()]
            if variant == "batchnorm":
                layers.append(torch.nn.BatchNorm1d(w))
            d = w
        layers.append(torch.nn.Linear(d, 10))
        net = torch.nn.Sequential(*layers)
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        xb, yb = x_all[:batch], y_all[:batch]

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()
            return loss

        for _ in range(20):
            step()
        times = []
        reps = max(10, 5000 // batch)
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                step()
            times.append((time.perf_counter() - t0) / reps)
        print(f"{variant}/{batch}: {statistics.median(times) * 1e6:.1f} us/step")
