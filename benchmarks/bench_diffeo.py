"""Speed goals of featlab.diffeo and the D/G/R denominator (spec diffeo_pooling.md §9).

1. batched fields + warp vs a per-image loop (500 x 3 x 32 x 32, c = 3, delta = 1): goal >= 5x
2. truncated (R = 3) vs dense Gaussian interpolation at n = 32: goal >= 100x
3. closed-form vs pairwise (cdist) denominator, P = 500, D = 65,536: goal >= 50x

Usage: python benchmarks/bench_diffeo.py [--quick] [--threads N] [--clock wall|cpu] [--repeat K]
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from featlab.diffeo import deform, sample_displacement, typical_temperature
from featlab.diffeo.warp import dense_gaussian_deform
from featlab.probes._stability import mean_sq_distance, mean_sq_distance_pairwise


CLOCK = time.perf_counter


def best_of(fn, repeat: int) -> float:
    """Minimum over ``repeat`` calls (after one warm-up call) of the selected clock."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return min(times)


def loop_reference_style(x: torch.Tensor, T: float, c: int, g: torch.Generator) -> torch.Tensor:
    """Per-image loop as the reference stability code does it: one field per image via an
    einsum over a c x c coefficient matrix, then a floor/ceil bilinear remap of that image."""
    n = x.shape[-1]
    s = torch.linspace(0, 1, n, dtype=x.dtype)
    k = torch.arange(1, c + 1, dtype=x.dtype)
    i, j = torch.meshgrid(k, k, indexing="ij")
    r = (i ** 2 + j ** 2).sqrt()
    e = (r < c + 0.5) / r
    S = torch.sin(math.pi * s[:, None] * k[None, :])
    grid = torch.arange(n, dtype=x.dtype)
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        u = torch.einsum("ij,xi,yj->yx", torch.randn(c, c, generator=g, dtype=x.dtype) * e, S, S)
        v = torch.einsum("ij,xi,yj->yx", torch.randn(c, c, generator=g, dtype=x.dtype) * e, S, S)
        dx, dy = math.sqrt(T) * u * n, math.sqrt(T) * v * n
        X = (grid[None, :] - dx).clamp(0, n - 1)
        Y = (grid[:, None] - dy).clamp(0, n - 1)
        xf, xc, yf, yc = X.floor().long(), X.ceil().long(), Y.floor().long(), Y.ceil().long()
        wx, wy = X - X.floor(), Y - Y.floor()
        im = x[b]
        out[b] = ((1 - wy) * ((1 - wx) * im[:, yf, xf] + wx * im[:, yf, xc])
                  + wy * ((1 - wx) * im[:, yc, xf] + wx * im[:, yc, xc]))
    return out


def _once(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat (smoke run)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: perf_counter; cpu: process CPU time (steadier on a shared, "
                         "loaded machine; use with --threads 1)")
    ap.add_argument("--repeat", type=int, default=7, help="timed calls per measurement (min taken)")
    a = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter
    if a.threads:
        torch.set_num_threads(a.threads)
    rep = 1 if a.quick else a.repeat
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, clock={a.clock}, "
          f"repeat={rep}, quick={a.quick}")

    # 1. fields + warp
    P, c, n = (100 if a.quick else 500), 3, 32
    T = typical_temperature(1.0, c, n)
    for dt in (torch.float32, torch.float64):
        x = torch.randn(P, 3, n, n, generator=g, dtype=dt)
        t_b = best_of(lambda: deform(x, sample_displacement(P, n, T, c, g, dtype=dt), "linear"), rep)
        t_l = best_of(lambda: loop_reference_style(x, T, c, g), rep)
        t_l2 = best_of(lambda: [deform(x[i], sample_displacement(1, n, T, c, g, dtype=dt)[0], "linear")
                                for i in range(P)], rep)
        print(f"[1] fields+warp {P}x3x{n}x{n} {str(dt)[6:]}: batched {t_b * 1e3:.1f} ms | per-image "
              f"reference-style loop {t_l * 1e3:.1f} ms ({t_l / t_b:.1f}x) | per-image featlab loop "
              f"{t_l2 * 1e3:.1f} ms ({t_l2 / t_b:.1f}x)  goal >= 5x")

    # 2. truncated vs dense gaussian
    B = 4 if a.quick else 16
    x = torch.randn(B, 3, n, n, generator=g, dtype=torch.float64)
    d = sample_displacement(B, n, T, c, g)
    t_t = best_of(lambda: deform(x, d, "gaussian", gaussian_radius=3), rep)
    t_g = best_of(lambda: deform(x, d, "gaussian", gaussian_radius=3, backend="gather"), rep)
    t_d = best_of(lambda: dense_gaussian_deform(x, d), min(rep, 3))
    err = (deform(x, d, "gaussian") - dense_gaussian_deform(x, d)).abs().max().item()
    print(f"[2] gaussian {B}x3x{n}x{n} float64: truncated R=3 paired grid_sample {t_t * 1e3:.1f} ms "
          f"({t_d / t_t:.0f}x) | explicit-tap gather {t_g * 1e3:.1f} ms ({t_d / t_g:.0f}x) | dense "
          f"{t_d * 1e3:.1f} ms  max|diff| {err:.1e}  goal >= 100x")

    # 3. closed-form vs pairwise denominator
    Pd, D = (200, 4096) if a.quick else (500, 65536)
    F = torch.randn(Pd, D, generator=g, dtype=torch.float64)
    t_c = best_of(lambda: mean_sq_distance(F), rep)
    t_p = best_of(lambda: mean_sq_distance_pairwise(F), 1) if a.quick else _once(lambda: mean_sq_distance_pairwise(F))
    rel = abs(float(mean_sq_distance(F)) / float(mean_sq_distance_pairwise(F, chunk_size=Pd)) - 1)
    print(f"[3] denominator P={Pd} D={D} float64: closed form {t_c * 1e3:.1f} ms | pairwise cdist "
          f"{t_p * 1e3:.1f} ms ({t_p / t_c:.0f}x)  rel diff {rel:.1e}  goal >= 50x")


if __name__ == "__main__":
    main()
