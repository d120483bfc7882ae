"""Speed of the 4th-cumulant tensor and the SS-HOPM power iteration at D = 64 (1D periodic NLGP).

1. ``cumulant4(X, "translation_invariant")`` from n NLGP samples (D^3 storage), n = 10^5
   (quick: 10^4), and the dense form at D = 32 for comparison.
2. ``z_eigenvectors`` on the translation-invariant tensor: time per iteration and total, with
   16 random starts (quick: 4), adaptive shift.
3. ``nlgp_cumulant4`` quadrature tensor at D = 32 (12 nodes; quick: D = 16, 8 nodes).

Usage: python benchmarks/bench_cumulant_power.py [--quick] [--threads N]
"""
from __future__ import annotations

import argparse
import time

import torch

from featlab.data import NLGP
from featlab.theory import cumulant4, nlgp_cumulant4, z_eigenvectors


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples, starts and nodes")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    n = 10_000 if a.quick else 100_000
    for D, form in ((64, "translation_invariant"), (32, "dense"), (32, "translation_invariant")):
        m = NLGP(L=D, xi=3.0, gain=3.0)
        X = m.sample(n, g, dtype=torch.float64)
        t, K = timed(lambda: cumulant4(X, form, Sigma=m.covariance()))
        print(f"[1] cumulant4 {form:>21s} D={D}: {t:.2f} s for n={n} ({1e6 * t / n:.1f} us/sample), "
              f"tensor {tuple(K.shape)}")
    m = NLGP(L=64, xi=3.0, gain=3.0)
    K = cumulant4(m.sample(n, g, dtype=torch.float64), "translation_invariant", Sigma=m.covariance())
    starts = 4 if a.quick else 16
    t, r = timed(lambda: z_eigenvectors(K, 4, sign=-1, n_starts=starts, max_iter=200, tol=1e-8,
                                        dedupe_translation=True, generator=torch.Generator().manual_seed(1)))
    ipr = float(((r.vectors[0] ** 4).sum()))
    print(f"[2] SS-HOPM D=64 TI, {starts} starts: {t:.2f} s, {r.n_iter} iterations "
          f"({1e3 * t / r.n_iter:.1f} ms/iteration), top IPR {ipr:.3f} (baseline {3 / 66:.3f}), "
          f"residual {float(r.residual[0]):.1e}")
    D, nodes = (16, 8) if a.quick else (32, 12)
    t, _ = timed(lambda: nlgp_cumulant4(NLGP(L=D, xi=3.0, gain=3.0).latent.covariance(), 3.0, n_nodes=nodes))
    print(f"[3] nlgp_cumulant4 quadrature D={D}, {nodes} nodes: {t:.2f} s")
    print(f"({torch.get_num_threads()} torch threads)")


if __name__ == "__main__":
    main()
