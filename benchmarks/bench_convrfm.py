"""ConvRFM iteration time on CPU (issue 5): n = 2,000 single-channel 16 x 16 images, 3 x 3 patches.

One iteration = aligned-patch kernel build (n x n, P = 256 positions) + ridge solve (Cholesky)
+ patch-AGOP over all n training images (closed form) + M update. Reported per part, in
float32 and float64, with the peak resident memory of the process.

Usage: python benchmarks/bench_convrfm.py [--quick] [--threads N]
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from featlab.kernels.convrfm import extract_patches, patch_agop_kernel, patch_kernel
from featlab.kernels.rfm import matrix_power_psd, normalise_M
from featlab.kernels.solvers import ridge_solve


def one_iteration(n: int, size: int, dtype: torch.dtype) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 1, size, size, generator=g, dtype=dtype)
    Y = torch.nn.functional.one_hot(torch.randint(2, (n,), generator=g)).to(dtype)
    A = extract_patches(X, 3, "zero")  # (n, P, 9)
    M = torch.eye(9, dtype=dtype)
    t = {}
    t0 = time.perf_counter()
    K = patch_kernel(A, A, M, bandwidth=10.0)
    t["kernel"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    alpha = ridge_solve(K, Y, 1e-3, "cholesky")
    t["solve"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    G = patch_agop_kernel(A, A, alpha, M, bandwidth=10.0)
    normalise_M(matrix_power_psd(G, 1.0), "max", n)
    t["agop"] = time.perf_counter() - t0
    t["total"] = sum(t.values())
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 500")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    n, size = (500, 16) if a.quick else (2000, 16)
    one_iteration(64, size, torch.float32)  # warm-up
    for dtype in (torch.float32, torch.float64):
        t = one_iteration(n, size, dtype)
        print(f"ConvRFM n={n} {size}x{size} q=3 {str(dtype)[6:]}: iteration {t['total']:.2f} s "
              f"(kernel {t['kernel']:.2f}, solve {t['solve']:.2f}, AGOP {t['agop']:.2f})")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
