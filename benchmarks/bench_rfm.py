"""RFM speed on CPU: featlab vs xRFM under matched settings, kernel-build efficiency, peak memory.

Issue 5 goals: n = 10,000, d = 256, 3 iterations on CPU;
  * seconds per iteration, featlab / xRFM (matched: Laplace, L = 10, reg 1e-3, M = AGOP/max,
    all points for the AGOP, the same validation set, LU solve, float64) - goal <= 1.0x;
  * kernel-build GFLOP/s (2 n^2 d counted for one n x n Mahalanobis Laplace kernel) as a
    fraction of torch.mm GFLOP/s for the same (n, d) x (d, n) product in the same run - goal >= 0.5;
  * peak resident memory of each fit (each runs in its own subprocess; ru_maxrss).
"s/iteration" = whole fit time / T for both libraries (T + 1 kernel fits, T AGOPs).

Usage: python benchmarks/bench_rfm.py [--quick] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def data(n: int, d: int, n_val: int):
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.normal(size=(n + n_val, d)))
    u = torch.as_tensor(rng.normal(size=d) / np.sqrt(d))
    y = (torch.tanh(2 * X @ u) + (X @ u) ** 2)[:, None]
    return X[:n], y[:n], X[n:], y[n:]


def worker(which: str, n: int, d: int, T: int, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    X, y, Xv, yv = data(n, d, max(100, n // 10))
    t0 = time.perf_counter()
    if which.startswith("featlab"):
        from featlab.kernels import RFM

        solver = which.split("-")[1]
        m = RFM(10.0, reg=1e-3, n_iter=T, agop_sampling="first", agop_samples=n, solver=solver).fit(
            X, y, eval_set=(Xv, yv))
        pred = m.decision_function(Xv)
    else:
        import xrfm

        m = xrfm.RFM(kernel="laplace", bandwidth=10.0, iters=T, device="cpu", verbose=False,
                     tuning_metric="mse", solver="solve")
        m.fit((X, y), (Xv, yv), iters=T, reg=1e-3, early_stop_rfm=False, center_grads=False,
              method="lstsq", total_points_to_sample=n)
        pred = m.predict(Xv)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux -> MB
    return {"s_per_iter": dt / T, "total_s": dt, "peak_rss_MB": rss, "val_mse": float(((pred - yv) ** 2).mean())}


def kernel_efficiency(n: int, d: int, reps: int = 3) -> tuple[float, float]:
    from featlab.kernels.mahalanobis import laplace_kernel

    X = torch.randn(n, d, dtype=torch.float64)
    M = torch.eye(d, dtype=torch.float64)
    flops = 2 * n * n * d

    def best(fn):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    t_mm = best(lambda: X @ X.T)
    t_k = best(lambda: laplace_kernel(X, X, M))
    return flops / t_mm / 1e9, flops / t_k / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 2000, d = 64")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in every process")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    n, d, T = (2000, 64, 3) if a.quick else (10000, 256, 3)
    if a.worker:
        print(json.dumps(worker(a.worker, n, d, T, a.threads)))
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    mm, kb = kernel_efficiency(n, d)
    print(f"kernel build n={n} d={d} float64: {kb:.1f} GFLOP/s vs torch.mm {mm:.1f} GFLOP/s "
          f"-> fraction {kb / mm:.2f} (goal >= 0.5)")
    res = {}
    for which in ("featlab-solve", "featlab-cholesky", "xrfm"):
        cmd = [sys.executable, __file__, "--worker", which] + (["--quick"] if a.quick else []) + (
            ["--threads", str(a.threads)] if a.threads else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        res[which] = json.loads(out)
        r = res[which]
        print(f"{which:17s} n={n} d={d} T={T}: {r['s_per_iter']:.2f} s/iteration, total {r['total_s']:.1f} s, "
              f"peak RSS {r['peak_rss_MB']:.0f} MB, val MSE {r['val_mse']:.4g}")
    for which in ("featlab-solve", "featlab-cholesky"):
        print(f"ratio {which} / xrfm: {res[which]['s_per_iter'] / res['xrfm']['s_per_iter']:.2f}x (goal <= 1.0x)")


if __name__ == "__main__":
    main()
