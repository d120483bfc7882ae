"""NLGP sampling throughput at D = 784 (2D, L = 28): circulant FFT sampler vs a dense Cholesky
sampler of the same realised latent covariance (spec emergence.md §2.1, §9 bug 6).

Both samplers draw the same white noise shape; the dense one is featlab's ``DenseGaussian``
(cached Cholesky factor, one (n, D) @ (D, D) matmul per chunk). Also timed: the clone (FFT), the
one-off set-up costs, and the reference's per-call pattern (two O(D³) decompositions per call,
here one Cholesky per call of 1 sample) for scale.

Usage: python benchmarks/bench_nlgp_sampling.py [--quick] [--threads N] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import time

import torch

from featlab.data.clone import GaussianClone
from featlab.data.latent import DenseGaussian
from featlab.data.nlgp import NLGP


def best_of(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    n, reps = (2048, 2) if a.quick else (16384, 5)
    L, xi, gain = 28, 2.0, 3.0
    g = torch.Generator(device=dev).manual_seed(0)

    t0 = time.perf_counter()
    m = NLGP(L, xi, gain, dim=2)
    t_fft_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    C = m.latent.covariance()
    dense = DenseGaussian(C + 1e-10 * torch.eye(C.shape[0], dtype=torch.float64), (L, L), "cholesky")
    t_chol_setup = time.perf_counter() - t0
    clone = GaussianClone(L, xi, gain, dim=2)

    print(f"NLGP 2D L={L} (D={L * L}), xi={xi}, g={gain}, n={n} per call, device={dev}, "
          f"threads={torch.get_num_threads()}")
    print(f"set-up: FFT {t_fft_setup * 1e3:.1f} ms, dense covariance + Cholesky {t_chol_setup * 1e3:.1f} ms")
    for dtype in (torch.float32, torch.float64):
        m.sample(64, g, dtype=dtype)
        dense.sample(64, g, dtype=dtype)
        t_fft = best_of(lambda: m.sample(n, g, dtype=dtype), reps)
        t_dense = best_of(lambda: m.transform(dense.sample(n, g, dtype=dtype)), reps)
        t_clone = best_of(lambda: clone.sample(n, g, dtype=dtype), reps)
        print(f"{str(dtype):14s} NLGP FFT {n / t_fft:12,.0f} samples/s | NLGP dense Cholesky "
              f"{n / t_dense:12,.0f} samples/s | FFT/dense speed-up {t_dense / t_fft:5.2f}x | "
              f"clone FFT {n / t_clone:12,.0f} samples/s")
    k = 3 if a.quick else 10
    t_ref = best_of(lambda: [torch.linalg.cholesky(C + 1e-3 * torch.eye(C.shape[0], dtype=torch.float64))
                             for _ in range(k)], 1) / k
    print(f"reference pattern (one O(D^3) decomposition per 1-sample call): {1 / t_ref:,.1f} samples/s")


if __name__ == "__main__":
    main()
