"""Patch-AGOP: fast identity W̄ᵀKW̄ against the unfold + vmap(jacrev) oracle.

Layer: VGG-style 3×3 conv, 64 -> 128 channels, padding 1, on 16×16 inputs, 10 outputs. Two
"rest of the network" variants: ``head`` = ReLU -> global average pool -> Linear(128, 10) (the
probe's own cost dominates) and ``conv`` = ReLU -> MaxPool2 -> Conv 128->128 -> ReLU -> global
average pool -> Linear(128, 10) (the c backward passes through the rest dominate both methods).
float32 model, float64 accumulation, the same ``batch_size`` for both methods; the fast path
uses its default (one backward per output), the oracle jacrev's default chunking.

Peak memory: each method runs in its own subprocess; we report the rise of the process's peak
resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over its value just before the
computation (after model, data and a warm-up of the *other* small pieces). tracemalloc does not
see torch's C++ allocations, so it is not used.

    python benchmarks/bench_patch_agop.py            # 256 images (the spec's setting)
    python benchmarks/bench_patch_agop.py --quick    # 32 images

On a shared, loaded machine set OMP_NUM_THREADS=1: the fast path's many small batched matmuls
wait on OpenMP barriers when another process holds a core (measured 4× slower with 2 threads
under load than with 1), which understates the speed-up; the oracle's large matmuls suffer less.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def build(n: int, rest: str = "conv"):
    import torch
    from torch import nn

    torch.manual_seed(0)
    tail = [nn.MaxPool2d(2), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU()] if rest == "conv" else []
    model = nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), *tail, nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(128, 10))
    X = torch.randn(n, 64, 16, 16)
    return model, X


def worker(method: str, n: int, batch_size: int, rest: str) -> dict:
    import torch

    from featlab.probes import patch_agop

    model, X = build(n, rest)
    patch_agop(model, "0", X[:2], method=method)  # warm-up (tiny)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    G = patch_agop(model, "0", X, method=method, batch_size=batch_size)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.save(G, f"/tmp/_bench_patch_agop_{method}.pt")
    return {"method": method, "seconds": dt, "cpu_seconds": cpu, "peak_rss_rise_MiB": (rss1 - rss0) / 1024,
            "n": n, "batch_size": batch_size, "rest": rest, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32 images instead of 256")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rest", choices=("head", "conv", "both"), default="both")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = args.n or (32 if args.quick else 256)
    if args.worker:
        print(json.dumps(worker(args.worker, n, args.batch_size, args.rest)))
        return
    import torch

    for rest in (("head", "conv") if args.rest == "both" else (args.rest,)):
        res = {}
        for m in ("fast", "oracle"):
            out = subprocess.run([sys.executable, __file__, "--worker", m, "--n", str(n), "--rest", rest,
                                  "--batch-size", str(args.batch_size)], capture_output=True, text=True, check=True)
            res[m] = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(res[m]))
        Gf, Go = (torch.load(f"/tmp/_bench_patch_agop_{m}.pt", weights_only=True) for m in ("fast", "oracle"))
        rel = float((Gf - Go).norm() / Go.norm())
        f, o = res["fast"], res["oracle"]
        print(f"rest={rest}: n={n} images, batch {args.batch_size}, 10 outputs, 3x3 64->128 at 16x16 (float32 model)")
        for name, r in (("fast", f), ("oracle", o)):
            print(f"  {name:6s} {r['seconds']:8.2f} s wall {r['cpu_seconds']:8.2f} s CPU  "
                  f"peak RSS rise {r['peak_rss_rise_MiB']:8.1f} MiB")
        print(f"  speed-up {o['seconds'] / f['seconds']:.1f}x wall, {o['cpu_seconds'] / f['cpu_seconds']:.1f}x CPU, memory ratio "
              f"{o['peak_rss_rise_MiB'] / max(f['peak_rss_rise_MiB'], 1e-3):.1f}x, rel. diff {rel:.2e}")


if __name__ == "__main__":
    main()
