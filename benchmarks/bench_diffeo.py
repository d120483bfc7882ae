"""Speed of featlab.diffeo and of the D/G/R denominator against the reference's own algorithms.

Rows (spec diffeo_pooling §9; issue 13), all timed in one run with interleaved repetitions
(the minimum over repetitions of process CPU time, one torch thread unless --threads):

1. fields + bilinear warp of 500 x 3 x 32 x 32 images (c = 3, delta = 1 px), float32 and
   float64: featlab ``deform(x, sample_displacement(...))`` against relativestability
   ``perturbations.diffeo_batch`` (one pcsl-epfl/diffeomorphism ``diff.deform`` call per
   image, fields in torch's default dtype, which [I23] sets to float64). Goal: >= 10x, float32.
2. Gaussian interpolation (sigma = 0.4715 px) of 16 x 3 x 32 x 32 images, float64, fields
   included: featlab's truncated stencil (R = 3) against ``diffeo_batch(interp="gaussian")``
   (the reference's dense O(n^4) ``remap`` per image).
3. the mean-protocol denominator of P = 500 representations of D = 65,536 float64 values:
   featlab ``mean_sq_distance`` against the reference's ``torch.cdist(o, o).pow(2).mean()``
   (relativestability ``stability/__init__.py``), and the memory floor, one read of the
   representations (``o.sum()``). Goal: closed form <= 1.5x the floor. The closed form's C
   kernel (featlab/probes/_moments.c) is timed, and beside it the torch path it falls back to,
   and the same on a float32 copy against its own one-read floor.

The reference functions are imported from checkouts outside this repository (never copied):
``--diffeomorphism DIR`` / ``$FEATLAB_REF_DIFFEOMORPHISM`` (pcsl-epfl/diffeomorphism, holds
``diff.py``) and ``--relativestability DIR`` / ``$FEATLAB_REF_RELATIVESTABILITY``
(leonardopetrini/relativestability, holds ``perturbations/__init__.py``). Without them, rows 1-2
time a stand-in written here (the same per-image loop: c x c normals per field, the einsum of
``scalar_field``, the floor/ceil or dense-Gaussian ``remap``) and say so; row 3's reference
line is the expression itself.

Usage: python benchmarks/bench_diffeo.py [--quick] [--threads N] [--repeat K]
       [--diffeomorphism DIR] [--relativestability DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import sys
import time

import torch

from featlab.diffeo import deform, sample_displacement, typical_temperature
from featlab.diffeo.warp import dense_gaussian_deform
from featlab.probes import _moments
from featlab.probes._stability import mean_sq_distance


def load_reference(diffeo_dir: str | None, rs_dir: str | None):
    """relativestability's ``diffeo_batch`` (importing pcsl-epfl's ``diff``), or None."""
    if not (diffeo_dir and rs_dir):
        return None
    init = os.path.join(rs_dir, "perturbations", "__init__.py")
    if not (os.path.isfile(os.path.join(diffeo_dir, "diff.py")) and os.path.isfile(init)):
        raise SystemExit(f"reference checkouts not found: {diffeo_dir}/diff.py, {init}")
    sys.path.insert(0, diffeo_dir)
    spec = importlib.util.spec_from_file_location("_ref_perturbations", init)
    mod = importlib.util.module_from_spec(spec)
    with contextlib.redirect_stdout(sys.stderr):
        spec.loader.exec_module(mod)
    return mod.diffeo_batch


def standin_diffeo_batch(imgs: torch.Tensor, delta: float = 1.0, c: int = 3, interp: str = "linear"):
    """Timing stand-in for relativestability ``diffeo_batch``: one field pair per image, drawn
    and applied image by image as pcsl-epfl ``diff.deform`` does (default dtype)."""
    n = imgs.shape[-1]
    T = typical_temperature(delta, c, n)
    dt = torch.get_default_dtype()
    s = torch.linspace(0, 1, n, dtype=dt)
    k = torch.arange(1, c + 1, dtype=dt)
    i, j = torch.meshgrid(k, k, indexing="ij")
    r = (i ** 2 + j ** 2).sqrt()
    e = (r < c + 0.5) / r
    S = torch.sin(math.pi * s[:, None] * k[None, :])
    grid = torch.arange(n, dtype=dt)
    out = []
    for im in imgs:
        u = torch.einsum("ij,xi,yj->yx", torch.randn(c, c) * e, S, S)
        v = torch.einsum("ij,xi,yj->yx", torch.randn(c, c) * e, S, S)
        dx, dy = T ** 0.5 * u * n, T ** 0.5 * v * n
        if interp == "gaussian":  # the dense O(n^4) remap, one image at a time
            out.append(dense_gaussian_deform(im, torch.stack([dx, dy])))
            continue
        X = (grid[None, :] - dx).clamp(0, n - 1)
        Y = (grid[:, None] - dy).clamp(0, n - 1)
        xf, xc, yf, yc = X.floor().long(), X.ceil().long(), Y.floor().long(), Y.ceil().long()
        wx, wy = X - X.floor(), Y - Y.floor()
        out.append((1 - wy) * (1 - wx) * im[..., yf, xf] + (1 - wy) * wx * im[..., yf, xc]
                   + wy * (1 - wx) * im[..., yc, xf] + wy * wx * im[..., yc, xc])
    return torch.stack(out)


@contextlib.contextmanager
def default_dtype(dt):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dt)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def interleaved(fns: dict, repeat: int) -> dict:
    """{name: min CPU seconds} over ``repeat`` rounds, each round calling every fn once."""
    for f in fns.values():
        f()  # warm-up
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.process_time()
            f()
            best[k] = min(best[k], time.process_time() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, 2 repetitions (smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--repeat", type=int, default=7, help="interleaved repetitions (min taken)")
    ap.add_argument("--diffeomorphism", default=os.environ.get("FEATLAB_REF_DIFFEOMORPHISM"),
                    help="pcsl-epfl/diffeomorphism checkout (holds diff.py)")
    ap.add_argument("--relativestability", default=os.environ.get("FEATLAB_REF_RELATIVESTABILITY"),
                    help="leonardopetrini/relativestability checkout")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rep = 2 if a.quick else a.repeat
    ref = load_reference(a.diffeomorphism, a.relativestability)
    ref_name = "reference diffeo_batch" if ref else "stand-in for diffeo_batch (no checkout given)"
    ref = ref or standin_diffeo_batch
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the reference draws from the global generator
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU time, min of {rep} "
          f"interleaved repetitions, quick={a.quick}; load average {open('/proc/loadavg').read().split()[:3]}")

    # 1. fields + bilinear warp
    P, c, n = (100 if a.quick else 500), 3, 32
    T = typical_temperature(1.0, c, n)
    for dt in (torch.float32, torch.float64):
        x = torch.randn(P, 3, n, n, generator=g, dtype=dt)

        def ours(x=x, dt=dt):
            return deform(x, sample_displacement(P, n, T, c, g, dtype=dt), "linear")

        def theirs(x=x, dt=dt):
            with default_dtype(dt):
                return ref(x, 1.0, c, "linear")

        t = interleaved({"featlab": ours, "ref": theirs}, rep)
        print(f"[1] fields+warp {P}x3x{n}x{n} {str(dt)[6:]}: featlab {t['featlab'] * 1e3:.2f} ms | "
              f"{ref_name} {t['ref'] * 1e3:.1f} ms -> {t['ref'] / t['featlab']:.1f}x  (goal >= 10x in float32)")

    # 2. gaussian interpolation, fields included
    B = 4 if a.quick else 16
    x = torch.randn(B, 3, n, n, generator=g, dtype=torch.float64)

    def ours_g():
        return deform(x, sample_displacement(B, n, T, c, g), "gaussian", gaussian_radius=3)

    def theirs_g():
        with default_dtype(torch.float64):
            return ref(x, 1.0, c, "gaussian")

    t = interleaved({"featlab": ours_g, "ref": theirs_g}, max(1, min(rep, 3)))
    d = sample_displacement(B, n, T, c, g)
    err = (deform(x, d, "gaussian") - dense_gaussian_deform(x, d)).abs().max().item()
    print(f"[2] gaussian {B}x3x{n}x{n} float64: featlab truncated R=3 {t['featlab'] * 1e3:.2f} ms | "
          f"{ref_name}(interp='gaussian') {t['ref'] * 1e3:.0f} ms -> {t['ref'] / t['featlab']:.0f}x; "
          f"max|truncated - dense| {err:.1e}")

    # 3. denominator vs cdist and vs one read of the representations
    Pd, D = (200, 4096) if a.quick else (500, 65536)
    o = torch.randn(Pd, D, generator=g, dtype=torch.float64)
    o32 = o.float()

    def torch_path():  # the fallback without the C kernel (CUDA, strided input, no compiler)
        saved, _moments._FNS = _moments._FNS, None
        try:
            return mean_sq_distance(o)
        finally:
            _moments._FNS = saved

    fns = {"floor": lambda: o.sum(), "featlab": lambda: mean_sq_distance(o), "torch_path": torch_path,
           "floor32": lambda: o32.sum(), "featlab32": lambda: mean_sq_distance(o32)}
    t = interleaved(fns, rep)
    t_ref = interleaved({"ref": lambda: torch.cdist(o, o).pow(2).mean()}, max(1, min(rep, 3)))["ref"]
    t2 = interleaved(fns, rep)  # floor and closed form again, after the long cdist calls
    t = {k: min(t[k], t2[k]) for k in t}
    rel = abs(float(mean_sq_distance(o)) / float(torch.cdist(o, o).pow(2).mean()) - 1)
    kernel = "C kernel" if _moments.AVAILABLE else "torch path: C kernel NOT built"
    print(f"[3] denominator P={Pd} D={D} float64: featlab closed form ({kernel}) {t['featlab'] * 1e3:.1f} ms = "
          f"{t['featlab'] / t['floor']:.2f}x one read of the representations ({t['floor'] * 1e3:.1f} ms; "
          f"goal <= 1.5x) | reference cdist(o, o).pow(2).mean() {t_ref * 1e3:.0f} ms -> "
          f"{t_ref / t['featlab']:.0f}x; rel diff {rel:.1e}")
    print(f"    torch path (no C kernel) {t['torch_path'] * 1e3:.1f} ms = {t['torch_path'] / t['floor']:.2f}x one read; "
          f"float32 input {t['featlab32'] * 1e3:.1f} ms = {t['featlab32'] / t['floor32']:.2f}x one read of it "
          f"({t['floor32'] * 1e3:.1f} ms)")
    print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
