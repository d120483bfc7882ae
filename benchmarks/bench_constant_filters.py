"""Speed of the constant-filter theory (spec diffeo_pooling §7) and of a SimpleCNN training step.

1. no-stride constant-filter net (F = 3, N = 1024, 4 probes x 32 noise draws): the spectral
   (Parseval) path vs layer-by-layer simulation, at the depth the tests need for 1.5 decades
   of A_k (1500 layers); the two agree to ~1e-15 (tests/test_constant_filters.py).
2. with-stride net (F = s = 2, N = 1024, depth 8, 256 probes): simulation only.
3. one SGD step of SimpleCNN (L = 128, depth 7, batch 8) at widths 64 and 256, stride vs none.

Usage: python benchmarks/bench_constant_filters.py [--quick] [--threads N]
"""
from __future__ import annotations

import argparse
import time

import torch

from featlab.models.simple_cnn import SimpleCNN
from featlab.theory.cnn_constant_filters import constant_filters


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller depth and fewer steps")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    depth = 300 if a.quick else 1500
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    kw = dict(F=3, s=1, depth=depth, N=1024, n_images=4, n_noise=32, fit_A=(2.5, None))
    ts = timed(lambda: constant_filters(**kw, method="spectral", generator=g()))
    tl = timed(lambda: constant_filters(**kw, method="simulate", generator=g()))
    r = constant_filters(**kw, generator=g())
    print(f"[1] no stride, depth {depth}: spectral {ts:.3f} s, simulate {tl:.3f} s "
          f"-> {tl / ts:.0f}x; exponents {', '.join(f'{k} {v:+.2f}' for k, v in r.exponents.items())} "
          f"over {r.decades:.2f} decades of A_k")
    t = timed(lambda: constant_filters(F=2, s=2, depth=8, N=1024, n_images=256, generator=g()))
    print(f"[2] stride, depth 8: simulate {t:.3f} s")
    steps = 5 if a.quick else 20
    for width in (64,) if a.quick else (64, 256):
        for sl in ("all", "none"):
            torch.manual_seed(0)
            net = SimpleCNN(dim=1, F=2, stride_layers=sl, depth=7, width=width)
            opt = torch.optim.SGD(net.parameters(), lr=0.01 * width)
            x, y = torch.randn(8, 1, 128), torch.randn(8).sign()

            def step():
                for _ in range(steps):
                    opt.zero_grad()
                    torch.relu(1 - net(x)[:, 0] * y).mean().backward()
                    opt.step()
            print(f"[3] SimpleCNN width {width}, stride_layers={sl}: {1e3 * timed(step) / steps:.1f} ms/step "
                  f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
