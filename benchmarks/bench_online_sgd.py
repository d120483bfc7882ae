"""Online SGD speed, sampling included: 2D L=20 (D=400), K=8, mf, erf, bs=1 (spec emergence §4.1).

Goal: >= 20,000 steps/s on 2 CPU cores (the paper preset's 4x10^6 steps in under 4 minutes).

    python benchmarks/bench_online_sgd.py            # 200k steps per case
    python benchmarks/bench_online_sgd.py --quick    # 20k steps per case
    python benchmarks/bench_online_sgd.py --backends numpy,torch --device cuda

Cases: the NLGP and its clone batched in one loop (S = 2, what ``emergence`` runs) and a single
NLGP run (S = 1); the "SGD only" rows replay one pre-drawn chunk to time the update alone. "steps/s" counts loop iterations (each advances every run by one step);
"run-steps/s" = S x steps/s. Evaluations are reduced to 2 on a 1000-sample test set, so the
numbers are the training loop plus FFT sampling in chunks of 2^14. "steps/cpu-s" divides by
the CPU time of all the process's threads: on a machine shared with other jobs the wall-clock
rate understates what two idle cores give, and steps/cpu-s is a lower bound for it.
"""
from __future__ import annotations

import argparse
import time
import torch

from featlab.experiments._emergence_common import DataConfig, ModelConfig, build_task, init_weights
from featlab.train.online import train_committee


def bench(tags, backend, device, steps, dtype=torch.float32, pool=False):
    data = DataConfig()                           # 2D, L = 20, xi = (2, 10), g = 3
    D = data.D
    tasks = [build_task(data, t) for t in tags]
    gens = [torch.Generator(device=device).manual_seed(i) for i in range(len(tags))]
    Ws, bs_, vs, samplers, tests = [], [], [], [], []
    for task, g in zip(tasks, gens):
        w, b, v = init_weights(ModelConfig(), D, torch.Generator(device=device).manual_seed(0), dtype)
        Ws.append(w), bs_.append(b), vs.append(v)

        def smp(n, gen, task=task):
            x, c = task.sample(n, gen)
            return x.reshape(n, -1).to(dtype), 1.0 - 2.0 * c.to(dtype)

        if pool:  # SGD cost alone: slices of one pre-drawn chunk instead of fresh samples
            xp_, yp_ = smp(2 ** 14, g)
            smp = (lambda n, gen, xp_=xp_, yp_=yp_: (xp_[:n], yp_[:n]))

        samplers.append(smp)
        tests.append(smp(1000, torch.Generator(device=device).manual_seed(99)))
    cpu0 = time.process_time()
    res = train_committee(torch.stack(Ws), torch.stack(bs_), torch.stack(vs), samplers, gens, tests,
                          T=steps / D, n_evals=1, backend=backend, dtype=dtype, desc="bench")
    cpu = time.process_time() - cpu0
    assert int(res.steps[-1]) == steps
    # loop wall time (sampling + SGD + 2 evaluations) and CPU time of all threads of this process
    return res.steps_per_s, steps / cpu, res.backend


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k steps per case instead of 200k")
    ap.add_argument("--backends", default="numpy,torch", help="comma list of numpy, torch, autograd")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = 20_000 if args.quick else 200_000
    print(f"device={args.device} torch_threads={torch.get_num_threads()} steps/case={steps}")
    print(f"{'case':<22}{'backend':<10}{'steps/s':>12}{'run-steps/s':>14}{'us/step':>10}{'steps/cpu-s':>13}")
    cases = ((("nlgp", "clone"), "NLGP+clone batched", False), (("nlgp",), "NLGP single", False),
             (("nlgp", "clone"), "batched, SGD only", True), (("nlgp",), "single, SGD only", True))
    for tags, label, pool in cases:
        for be in args.backends.split(","):
            if be == "numpy" and args.device != "cpu":
                continue
            n = steps if be != "autograd" else min(steps, 5_000)
            sps, spc, used = bench(tags, be, args.device, n, pool=pool)
            print(f"{label:<22}{used:<10}{sps:>12,.0f}{sps * len(tags):>14,.0f}{1e6 / sps:>10.1f}{spc:>13,.0f}")


if __name__ == "__main__":
    main()
