"""Effective single-neuron dynamics of Lufkin, Saxe & Grant (spec emergence.md §6.2).

One ReLU neuron y_hat = ReLU(w.x), targets y in {0, 1} (y = 1 for class 1, the longer xi),
balanced classes. With a = Sigma_1 w / sqrt(w^T Sigma_1 w) the gradient flow is

    tau dw/dt  ~  phi(a) - (Sigma_0 + Sigma_1) w,

and the reference integrates its Euler form w <- w + (tau/2) [phi(a) - (Sigma_0 + Sigma_1) w]
(LSG ``experiments/numerical_integration.py``, branch ``jaxnets``). phi comes from
:mod:`featlab.theory._phi` (any callable a -> phi(a) works).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Callable

import numpy as np
import torch

__all__ = ["effective_dynamics", "Trajectory", "MatVec", "is_circulant"]


class MatVec(str, Enum):
    """How Sigma w is computed at every Euler step.

    DENSE: (D, D) mat-vec, O(D^2) per step, any covariance (open boundaries, 2D). The
    obviously-correct path and the oracle of the tests.
    FFT: circular convolution with the first column via rfft, O(D log D); only for symmetric
    circulant covariances (1D periodic). Equal to DENSE to round-off (tested).
    AUTO: FFT when both Sigma_0 and Sigma_1 are circulant (checked to 1e-12 relative) and
    D >= 128, else DENSE: below that, per-call overhead dominates and the dense mat-vec was
    measured faster on CPU (D = 40: ~70 us/step dense vs ~120 us/step FFT, 4 starts).
    """

    AUTO = "auto"
    DENSE = "dense"
    FFT = "fft"


@dataclass(frozen=True)
class Trajectory:
    """Snapshots of the integrated weights.

    Attributes
    ----------
    steps : (T,) int64 tensor
        Euler step of each snapshot (0 = the initial condition, last = n_steps).
    t : (T,) float64 tensor
        ODE time steps * tau.
    w : (T, S, D) float64 tensor
        Weights at each snapshot, for S initial conditions (S = 1 when w0 was (D,)).
    ipr : (T, S) float64 tensor
        IPR sum w^4 / (sum w^2)^2 at each snapshot (high = localised; Gaussian baseline
        3/(D+2)).
    """

    steps: torch.Tensor
    t: torch.Tensor
    w: torch.Tensor
    ipr: torch.Tensor

    @property
    def final(self) -> torch.Tensor:
        """(S, D) weights after the last step."""
        return self.w[-1]


def is_circulant(S: torch.Tensor, rtol: float = 1e-12) -> bool:
    """True when every row of the square ``S`` is the previous row rolled by one."""
    D = S.shape[0]
    rolled = torch.stack([torch.roll(S[0], i) for i in range(D)])  # (D, D)
    return bool((S - rolled).abs().max() <= rtol * S.abs().max().clamp_min(1e-300))


def _ipr(w: torch.Tensor) -> torch.Tensor:
    w2 = w * w
    return (w2 * w2).sum(-1) / w2.sum(-1).clamp_min(1e-300) ** 2


def _snapshot_steps(n_steps: int, n_snapshots: int, spacing: str) -> list[int]:
    """Step 0, then up to n_snapshots - 1 log- or linearly spaced steps in [1, n_steps], always
    ending at n_steps (np.geomspace(1, n, 1) alone gives [1])."""
    if spacing == "log":
        s = np.unique(np.round(np.geomspace(1, n_steps, max(n_snapshots - 1, 1))).astype(int))
    elif spacing == "linear":
        s = np.unique(np.round(np.linspace(1, n_steps, max(n_snapshots - 1, 1))).astype(int))
    else:
        raise ValueError(f"spacing must be 'log' or 'linear', got {spacing!r}")
    out = [0] + [int(x) for x in s if x > 0]
    if out[-1] != n_steps:    # a single spaced step (n_snapshots = 2) is the start point 1
        out[-1] = n_steps
    return out


def effective_dynamics(
    Sigma0: torch.Tensor,
    Sigma1: torch.Tensor,
    phi: Callable[[torch.Tensor], torch.Tensor],
    *,
    tau: float = 0.05,
    n_steps: int = 20_000,
    w0: torch.Tensor | None = None,
    n_starts: int = 1,
    init_scale: float = 1e-3,
    n_snapshots: int = 60,
    spacing: str = "log",
    matvec: str | MatVec = "auto",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Trajectory:
    """Integrate the LSG effective ODE by Euler steps, in float64.

    Convention:
        Sigma0, Sigma1: (D, D) covariances of class 0 (short xi, y = 0) and class 1 (long xi,
        y = 1) *inputs* (for the NLGP, the clone covariance of each class). One step is
        w <- w + (tau/2) [phi(a) - (Sigma0 + Sigma1) w] with a = Sigma1 w / sqrt(w^T Sigma1 w),
        |a| clipped at 1 - 1e-12 inside phi. Time t = steps * tau. Weights are (S, D) rows.

    Parameters
    ----------
    Sigma0, Sigma1 : (D, D) tensor
    phi : callable
        Elementwise amplifier, e.g. ``featlab.theory.amplifier("nlgp", gain=3.0)``.
    tau : float
        Euler step (reference default 0.05).
    n_steps : int
        Number of Euler steps (reference default 2e4).
    w0 : (D,) or (S, D) tensor, optional
        Initial weights. Default: ``n_starts`` draws of Xavier-normal for a D -> 1 layer,
        std sqrt(2/(D+1)), times sqrt(init_scale) (reference: init_scale 1e-3), drawn on
        ``generator``'s device.
    n_snapshots, spacing : int, {"log", "linear"}
        Snapshot schedule (step 0 and ``n_steps`` always included).
    matvec : {"auto", "dense", "fft"}
        See :class:`MatVec`; memory/speed knob only, never changes the maths.
    generator : torch.Generator, optional
        For the default initialisation.

    Returns
    -------
    Trajectory
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps!r}")
    try:
        mv = MatVec(matvec)
    except ValueError:
        raise ValueError(f"matvec must be one of auto, dense, fft, got {matvec!r}") from None
    dev = torch.device(device) if device is not None else Sigma1.device
    S0 = Sigma0.to(dev, torch.float64)
    S1 = Sigma1.to(dev, torch.float64)
    D = S1.shape[0]
    if S0.shape != (D, D) or S1.shape != (D, D):
        raise ValueError(f"Sigma0 and Sigma1 must both be (D, D), got {tuple(S0.shape)} and {tuple(S1.shape)}")
    if w0 is None:
        g = generator if generator is not None else torch.Generator()
        std = math.sqrt(2.0 / (D + 1)) * math.sqrt(init_scale)
        w0 = torch.randn(n_starts, D, generator=g, dtype=torch.float64, device=g.device) * std
    w = w0.to(dev, torch.float64).reshape(-1, D).clone()  # (S, D)

    if mv is MatVec.AUTO:
        mv = MatVec.FFT if (D >= 128 and is_circulant(S0) and is_circulant(S1)) else MatVec.DENSE
    if mv is MatVec.FFT:
        if not (is_circulant(S0) and is_circulant(S1)):
            raise ValueError("matvec='fft' needs circulant Sigma0 and Sigma1 (1D periodic data)")
        f1 = torch.fft.rfft(S1[:, 0])  # (D//2+1,) spectrum of Sigma1
        fs = torch.fft.rfft(S0[:, 0] + S1[:, 0])  # (D//2+1,) spectrum of Sigma0 + Sigma1

        def step_terms(w):
            W = torch.fft.rfft(w, dim=-1)  # (S, D//2+1)
            return torch.fft.irfft(f1 * W, n=D, dim=-1), torch.fft.irfft(fs * W, n=D, dim=-1)
    else:
        Ssum = S0 + S1

        def step_terms(w):
            return w @ S1, w @ Ssum  # symmetric Sigma: row-vector products

    keep = _snapshot_steps(n_steps, n_snapshots, spacing)
    snaps, at = [w.clone()], [0]
    nxt = 1
    half = 0.5 * tau
    for step in range(1, n_steps + 1):
        s1w, ssw = step_terms(w)  # (S, D) each
        a = s1w / torch.sqrt((w * s1w).sum(-1, keepdim=True).clamp_min(1e-300))  # (S, D)
        w = w + half * (phi(a) - ssw)
        if nxt < len(keep) and step == keep[nxt]:
            snaps.append(w.clone()), at.append(step)
            nxt += 1
    W = torch.stack(snaps)  # (T, S, D)
    steps = torch.tensor(at, dtype=torch.int64)
    return Trajectory(steps=steps, t=steps.to(torch.float64) * tau, w=W, ipr=_ipr(W))
