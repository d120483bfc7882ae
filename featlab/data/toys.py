"""Local-signal toy tasks on which fixed convolutional kernels fail (spec agop_rfm.md §9).

All samplers take an explicit ``torch.Generator`` (None: a fresh default) and draw on its
device; they return ``(X, y)`` with X: (n, 1, H, W) float and y: (n,) int64 class indices.
Classes are balanced (exactly n/2 each for the binary tasks, n even) and shuffled.
"""
from __future__ import annotations

import math

import torch

__all__ = ["row_signal", "digit_in_noise", "bars"]


def _gen(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    return generator


def _balanced_labels(n: int, n_classes: int, g: torch.Generator) -> torch.Tensor:
    y = torch.arange(n, device=g.device) % n_classes
    return y[torch.randperm(n, generator=g, device=g.device)]


def row_signal(n: int, *, height: int = 16, width: int = 32, sigma: float = 1.0,
               generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference ``toy`` task: one random row of a noise image carries the label.

    Convention:
        X: (n, 1, height, width), iid N(0, 1) * sqrt(sigma) / sqrt(width) noise; one uniformly
        random row is *replaced* by s * w*, w* = ones(width) / sqrt(width), s = +1 for class 1
        and -1 for class 0. ``sigma`` is [design] (the paper's value is not in the code).
    """
    if n < 1 or height < 1 or width < 1 or sigma < 0:
        raise ValueError("n, height, width must be >= 1 and sigma >= 0")
    g = _gen(generator)
    y = _balanced_labels(n, 2, g)
    X = torch.randn(n, 1, height, width, generator=g, device=g.device, dtype=dtype)
    X *= math.sqrt(sigma) / math.sqrt(width)
    rows = torch.randint(height, (n,), generator=g, device=g.device)
    s = (2 * y - 1).to(dtype)  # (n,)
    X[torch.arange(n, device=g.device), 0, rows] = s[:, None] / math.sqrt(width)
    return X, y


def _sklearn_digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    d = load_digits()
    return torch.as_tensor(d.images / 16.0, dtype=torch.float64), torch.as_tensor(d.target)


def digit_in_noise(n: int, *, frame: int = 12, sigma: float = 1.0, split: str = "train",
                   generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A scikit-learn 8x8 digit pasted at a uniformly random offset into a noise frame.

    Convention:
        X: (n, 1, frame, frame), N(0, 1) * 0.5 sqrt(sigma) noise; the digit (pixels scaled to
        [0, 1]) *replaces* the frame pixels under it, fully inside the frame. The default
        frame 12 keeps the reference's 42/28 = 1.5 ratio for 8x8 digits [design]. Digits are
        drawn with replacement from images [0, 1200) for ``split="train"`` and [1200, 1797)
        for ``"test"``, so train and test digits never coincide. 10 classes.
    """
    if frame < 8:
        raise ValueError(f"frame={frame} must be >= 8 (the digit size)")
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not allowed; allowed: train, test")
    g = _gen(generator)
    imgs, labels = _sklearn_digits()
    lo, hi = (0, 1200) if split == "train" else (1200, len(imgs))
    idx = torch.randint(lo, hi, (n,), generator=g, device=g.device).cpu()
    X = torch.randn(n, 1, frame, frame, generator=g, device=g.device, dtype=dtype) * (0.5 * math.sqrt(sigma))
    off = torch.randint(frame - 8 + 1, (n, 2), generator=g, device=g.device).cpu()
    for i in range(n):
        r, c = int(off[i, 0]), int(off[i, 1])
        X[i, 0, r:r + 8, c:c + 8] = imgs[idx[i]].to(X)
    return X, labels[idx].to(g.device)


def bars(n: int, *, size: int = 16, noise_std: float = 1.5, generator: torch.Generator | None = None,
         dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a block of ones: 3 x 7 (rows x cols, class 0) or 7 x 3 (class 1).

    Convention:
        X: (n, 1, size, size), N(0, noise_std^2) noise whose pixels under the block are
        *replaced* by 1 (reference ``hyperparam_cnfa_verification/datasets.py:get_toy_data``:
        ``X[z, :, i:i+w, j:j+h] = 1``); the block's top-left corner is uniform over the positions
        that keep it inside the image.
    """
    if size < 7:
        raise ValueError(f"size={size} must be >= 7 (the block length)")
    g = _gen(generator)
    y = _balanced_labels(n, 2, g)
    X = torch.randn(n, 1, size, size, generator=g, device=g.device, dtype=dtype) * noise_std
    u = torch.rand(n, 2, generator=g, device=g.device).cpu()
    for i in range(n):
        h, w = (3, 7) if int(y[i]) == 0 else (7, 3)
        r, c = int(u[i, 0] * (size - h + 1)), int(u[i, 1] * (size - w + 1))
        X[i, 0, r:r + h, c:c + w] = 1.0
    return X, y
