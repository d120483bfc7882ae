"""Noise matched to a perturbation (spec diffeo_pooling.md §2)."""
from __future__ import annotations

from enum import Enum

import torch

__all__ = ["NoiseMode", "matched_noise"]


class NoiseMode(str, Enum):
    """How the noise is matched to the perturbation tau x - x.

    SPHERE: eta_p = sigma_p z_p/|z_p| with sigma_p = |tau x_p - x_p| over all non-batch
        dims: matched exactly per image, zero mean, neither clipped nor rectified
        (relativestability ``perturbations::noisy_batch``; diffeo-sota ``diffeo_imgs``).
    RECTIFIED_MEAN: eta = ReLU(sigma N(0, I)) per entry with sigma^2 = mean over all entries
        of (tau x - x)^2: positive, matched only on average (scale_detection_1d
        ``diffeo_cluster_mean.py::perturb``).
    """

    SPHERE = "sphere"
    RECTIFIED_MEAN = "rectified_mean"


def matched_noise(x: torch.Tensor, x_perturbed: torch.Tensor | None,
                  generator: torch.Generator | None = None, mode: str = "sphere", *,
                  noise_magnitude: float | None = None) -> torch.Tensor:
    """Return x + eta, with eta matched to the perturbation x_perturbed - x.

    Parameters
    ----------
    x, x_perturbed : Tensor, shape (P, ...)
        Clean and perturbed probes (``x_perturbed`` may be None with ``noise_magnitude``).
    generator : torch.Generator, optional
        Noise is drawn on the generator's device, in x's dtype (fresh default if None).
    mode : {"sphere", "rectified_mean"}
        See :class:`NoiseMode`.
    noise_magnitude : float, optional
        Overrides the match: sphere -> |eta_p| = noise_magnitude for every p;
        rectified_mean -> sigma = noise_magnitude (pre-rectification std per entry).

    Returns
    -------
    Tensor like ``x``: the noisy probes x + eta.

    Convention:
        Norms are Euclidean over all non-batch dims (C*H*W). Sphere noise has exactly the
        per-image norm of tau x_p - x_p (not only in expectation).
    """
    try:
        m = NoiseMode(mode)
    except ValueError:
        raise ValueError(f"mode must be one of 'sphere', 'rectified_mean'; got {mode!r}") from None
    if x_perturbed is None and noise_magnitude is None:
        raise ValueError("x_perturbed is required unless noise_magnitude is given")
    if x_perturbed is not None and x_perturbed.shape != x.shape:
        raise ValueError(f"x_perturbed must have shape {tuple(x.shape)}; got {tuple(x_perturbed.shape)}")
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
    P = x.shape[0]
    if m is NoiseMode.SPHERE:
        if noise_magnitude is not None:
            sigma = torch.full((P,), float(noise_magnitude), dtype=x.dtype, device=x.device)
        else:
            sigma = (x_perturbed - x).reshape(P, -1).norm(dim=1)  # (P,)
        zn = z.reshape(P, -1).norm(dim=1)  # (P,)
        eta = z * (sigma / zn).reshape((P,) + (1,) * (x.ndim - 1))
    else:
        sigma = (float(noise_magnitude) if noise_magnitude is not None
                 else (x_perturbed - x).pow(2).mean().sqrt())
        eta = torch.relu(sigma * z)
    return x + eta
