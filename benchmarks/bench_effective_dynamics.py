"""Euler steps per second of the LSG effective dynamics (``featlab.theory.effective_dynamics``).

D = 40 (the reference default) and D = 400, 1 and 16 initial conditions, dense vs FFT
mat-vecs, Gaussian (closed form) vs NLGP (tabulated quadrature) amplifier.

Usage: python benchmarks/bench_effective_dynamics.py [--quick] [--threads N]
"""
from __future__ import annotations

import argparse
import time

import torch

from featlab.data import NLGP
from featlab.theory import amplifier, effective_dynamics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps, D = 40 only")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    steps = 500 if a.quick else 5000
    for D in (40,) if a.quick else (40, 400):
        S0, S1 = NLGP(L=D, xi=1.0, gain=3.0).covariance(), NLGP(L=D, xi=3.0, gain=3.0).covariance()
        for amp_name, amp in (("gaussian", amplifier("gaussian")), ("nlgp", amplifier("nlgp", gain=3.0))):
            for S in (1, 16):
                for mv in ("dense", "fft"):
                    t0 = time.perf_counter()
                    effective_dynamics(S0, S1, amp, n_steps=steps, n_starts=S, matvec=mv, n_snapshots=10,
                                       generator=torch.Generator().manual_seed(0))
                    dt = time.perf_counter() - t0
                    print(f"D={D:4d} phi={amp_name:8s} starts={S:2d} {mv:5s}: {steps / dt:8.0f} steps/s "
                          f"({1e6 * dt / steps:.0f} us/step)")
    print(f"({torch.get_num_threads()} torch threads)")


if __name__ == "__main__":
    main()
