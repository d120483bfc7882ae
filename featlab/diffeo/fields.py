"""Maximum-entropy displacement fields (spec diffeo_pooling.md §1.1-§1.3).

One scalar field is u(y, x) = sum_ij C_ij e_ij sin(pi i x~) sin(pi j y~) with C_ij ~ N(0, 1),
e_ij = 1[r_ij < c + 1/2] / r_ij and r_ij = sqrt(i^2 + j^2) (the mask of pcsl-epfl/diffeomorphism
``diff.py``, which keeps (1,3) and (3,1) at c = 3). The pixel displacement is sqrt(T) u n.
Here every image gets its own pair of fields (u -> dx, v -> dy), U_b = S_y (C_b * E)^T S_x^T,
computed for the whole batch as two plain matmuls.
"""
from __future__ import annotations

import math
from enum import Enum

import torch

__all__ = ["RngOrder", "mode_mask", "sin_basis", "sample_displacement"]


class RngOrder(str, Enum):
    """Order in which the mode coefficients are drawn.

    BATCHED: one ``randn(batch, 2, c, c)`` call (fast; the default).
    REFERENCE: one ``randn(c, c)`` per field, u before v, image by image, as
        pcsl-epfl/diffeomorphism ``diff.py`` draws them in its per-image loop; with the same
        seed the fields can then match the reference's. Slower (a Python loop over images).
    """

    BATCHED = "batched"
    REFERENCE = "reference"


def _choice(enum: type[Enum], value, name: str):
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}") from None


def mode_mask(cut: int | torch.Tensor, *, kmax: int | None = None, dtype=torch.float64,
              device=None) -> torch.Tensor:
    """Mode weights e_ij = 1[sqrt(i^2+j^2) < c + 1/2] / sqrt(i^2+j^2) for i, j = 1..kmax.

    Parameters
    ----------
    cut : int or tensor of ints, shape (batch,)
        The cut-off c (one per image when a tensor).
    kmax : int, optional
        Number of modes per axis (default: max cut).

    Returns
    -------
    Tensor, shape (kmax, kmax) or (batch, kmax, kmax); entry [i-1, j-1], i the x-frequency.
    """
    cut_t = torch.as_tensor(cut, dtype=dtype, device=device)
    kmax = int(cut_t.max().item()) if kmax is None else kmax
    k = torch.arange(1, kmax + 1, dtype=dtype, device=device)
    r = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)  # (k, k)
    keep = r < cut_t.reshape(cut_t.shape + (1, 1)) + 0.5  # (..., k, k)
    return keep.to(dtype) / r


def sin_basis(n: int, kmax: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """S[p, k-1] = sin(pi k p/(n-1)) on the grid ``linspace(0, 1, n)``; shape (n, kmax)."""
    x = torch.linspace(0, 1, n, dtype=dtype, device=device)
    k = torch.arange(1, kmax + 1, dtype=dtype, device=device)
    return torch.sin(math.pi * x[:, None] * k[None, :])


def sample_displacement(batch: int, n: int | tuple[int, int], T: float | torch.Tensor,
                        cut: int | torch.Tensor, generator: torch.Generator | None = None, *,
                        dtype: torch.dtype = torch.float64, rng_order: str = "batched",
                        device=None) -> torch.Tensor:
    """Draw one independent max-entropy displacement field per image, in pixels.

    Parameters
    ----------
    batch : int
        Number of fields.
    n : int or (H, W)
        Image side, or height and width for non-square images (extension).
    T : float or tensor, shape (batch,)
        Temperature(s), unit-square convention, T >= 0.
    cut : int or tensor of ints, shape (batch,)
        Mode cut-off c >= 1 (the temperature formulas need c >= 2; see temperature.py).
    generator : torch.Generator, optional
        Source of randomness; the coefficients are drawn on its device (fresh default if None).
    dtype : torch.dtype
        Floating dtype of the coefficients and the result (float64 by default).
    rng_order : {"batched", "reference"}
        See :class:`RngOrder`.
    device : optional
        Device of the result (default: the generator's device).

    Returns
    -------
    Tensor, shape (batch, 2, H, W): channel 0 = dx, channel 1 = dy. Stored channels-last
    (``.permute(0, 2, 3, 1)`` is contiguous); call ``.contiguous()`` for a (B, 2, H, W) layout.

    Convention:
        Channel 0 = dx, the displacement along W (x, columns); channel 1 = dy along H (rows);
        in pixels: dx = sqrt(T) u W, dy = sqrt(T) v H (the factor is n, not n-1). Grid
        x~ = x/(W-1), y~ = y/(H-1); i is the x-frequency and j the y-frequency of mode (i, j).
        Temperature in the unit-square convention of pcsl-epfl/diffeomorphism after its
        2021-04 rescaling. Pixels 0 and n-1 never move. Positive dx moves content right when
        passed to :func:`featlab.diffeo.deform`.
    """
    order = _choice(RngOrder, rng_order, "rng_order")
    H, W = (n, n) if isinstance(n, int) else (int(n[0]), int(n[1]))
    if H < 2 or W < 2:
        raise ValueError(f"n must be >= 2 pixels per side; got {n!r}")
    if batch < 0:
        raise ValueError(f"batch must be >= 0; got {batch}")
    if generator is None:
        generator = torch.Generator(device=device or "cpu")
        generator.seed()
    gdev = generator.device
    out_dev = torch.device(device) if device is not None else gdev
    T_t = torch.as_tensor(T, dtype=dtype).to(out_dev)
    cut_t = torch.as_tensor(cut).to(out_dev)
    if (T_t < 0).any() or not torch.isfinite(T_t).all():
        raise ValueError(f"T must be finite and >= 0; got {T!r}")
    if cut_t.is_floating_point() and (cut_t != cut_t.round()).any():
        raise ValueError(f"cut must be an integer >= 1; got {cut!r}")
    if (cut_t < 1).any():
        raise ValueError(f"cut must be an integer >= 1; got {cut!r}")
    for name, t in (("T", T_t), ("cut", cut_t)):
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != batch):
            raise ValueError(f"{name} must be a scalar or have shape ({batch},); got {tuple(t.shape)}")
    kmax = int(cut_t.max().item())

    if order is RngOrder.BATCHED:
        C = torch.randn(batch, 2, kmax, kmax, generator=generator, dtype=dtype, device=gdev)
    else:
        cuts = cut_t.expand(batch).tolist() if cut_t.ndim == 0 else cut_t.tolist()
        C = torch.zeros(batch, 2, kmax, kmax, dtype=dtype, device=gdev)
        for b, c in enumerate(cuts):
            for comp in range(2):  # u (dx) before v (dy), as the reference
                C[b, comp, :c, :c] = torch.randn(c, c, generator=generator, dtype=dtype, device=gdev)
    C = C.to(out_dev)
    E = mode_mask(cut_t, kmax=kmax, dtype=dtype, device=out_dev)  # (k, k) or (batch, k, k)
    if E.ndim == 3:
        E = E[:, None]
    A = C * E  # (batch, 2, k, k), A[..., i-1, j-1]
    scale = torch.tensor([W, H], dtype=dtype, device=out_dev).reshape(1, 2, 1, 1)
    sqrtT = T_t.sqrt().reshape(-1, 1, 1, 1) if T_t.ndim == 1 else T_t.sqrt()
    A = A * scale * sqrtT  # fold the pixel scale into the (small) coefficients
    Sx = sin_basis(W, kmax, dtype=dtype, device=out_dev)  # (W, k)
    Sy = sin_basis(H, kmax, dtype=dtype, device=out_dev)  # (H, k)
    # U[b, y, x, c] = sum_j Sy[y, j] sum_i Sx[x, i] A[b, c, i, j], as two plain matmuls that
    # write the field channels-last: (B, H, W, 2) is the layout grid_sample reads, so deform
    # builds its grid without a strided copy
    Z = Sx @ A.permute(2, 0, 3, 1).reshape(kmax, batch * kmax * 2)  # (W, B*k_j*2)
    Z = Z.reshape(W, batch, kmax, 2).permute(2, 1, 0, 3).reshape(kmax, batch * W * 2)  # (k_j, B*W*2)
    U = (Sy @ Z).reshape(H, batch, W, 2).transpose(0, 1).contiguous()  # (B, H, W, 2)
    return U.permute(0, 3, 1, 2)  # (B, 2, H, W) view of channels-last memory
