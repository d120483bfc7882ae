"""Applying a displacement field to images: clamp-then-interpolate (spec §1.2-§1.3).

output(y, x) = input(Y, X) with X = clamp(x - dx, 0, W-1), Y = clamp(y - dy, 0, H-1).
``linear`` / ``nearest`` go through ``F.grid_sample`` (or a plain-tensor gather, which is twice
differentiable almost everywhere; grid_sample has no double backward, pytorch#34704);
``gaussian`` is a truncated separable stencil instead of the reference's dense O(n^4) sum.
"""
from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F

from .fields import _choice

__all__ = ["Interp", "WarpBackend", "deform", "dense_gaussian_deform", "gaussian_blur_reference",
           "sampling_points"]

SIGMA_REF = 0.4715  # px, pcsl-epfl/diffeomorphism diff.py gaussian interpolation width


class Interp(str, Enum):
    """Interpolation of the input at the (clamped) sampling points.

    LINEAR: bilinear from the floor/ceil corners (the reference default).
    NEAREST: rounding, torch round-half-to-even (reference, added 2022-09).
    GAUSSIAN: normalised Gaussian weights of width sigma (0.4715 px); featlab truncates them to
        2R taps per axis (error per axis <~ 2 exp(-R^2/(2 sigma^2)); R = 4 for float64 parity).
    """

    LINEAR = "linear"
    NEAREST = "nearest"
    GAUSSIAN = "gaussian"


class WarpBackend(str, Enum):
    """How the interpolation is evaluated.

    GRID_SAMPLE: ``F.grid_sample(align_corners=True, padding_mode="border")`` on clamped
        coordinates; ``gaussian`` pairs adjacent taps into R^2 bilinear fetches. Fastest,
        CUDA-fused; first derivatives only (no double backward, pytorch#34704).
    GATHER: plain-tensor floor/ceil (or round) gather, the reference formula; ``gaussian``
        gathers the 2R x 2R taps explicitly. Slower and more memory, but twice differentiable
        a.e. and obviously correct (the oracle).
    """

    GRID_SAMPLE = "grid_sample"
    GATHER = "gather"


def _prepare(x: torch.Tensor, displacement: torch.Tensor):
    if x.ndim not in (3, 4):
        raise ValueError(f"x must have shape (B, C, H, W) or (C, H, W); got {tuple(x.shape)}")
    squeeze = x.ndim == 3
    if squeeze:
        x = x[None]
    B, C, H, W = x.shape
    d = displacement
    if d.ndim == 3:
        d = d[None]
    if d.ndim != 4 or d.shape[1] != 2 or d.shape[-2:] != (H, W) or d.shape[0] not in (1, B):
        raise ValueError(f"displacement must have shape ({B}, 2, {H}, {W}) or (2, {H}, {W}); "
                         f"got {tuple(displacement.shape)}")
    if H < 2 or W < 2:
        raise ValueError(f"images must be at least 2x2; got {H}x{W}")
    return x, d.to(device=x.device, dtype=x.dtype if x.is_floating_point() else d.dtype), squeeze


def sampling_points(displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamped source coordinates (X, Y), each (B, H, W), for a (B, 2, H, W) displacement."""
    B, _, H, W = displacement.shape
    dt, dev = displacement.dtype, displacement.device
    xs = torch.arange(W, dtype=dt, device=dev)
    ys = torch.arange(H, dtype=dt, device=dev)
    X = (xs[None, None, :] - displacement[:, 0]).clamp(0, W - 1)  # (B, H, W)
    Y = (ys[None, :, None] - displacement[:, 1]).clamp(0, H - 1)  # (B, H, W)
    return X, Y


def _normalised_grid(displacement: torch.Tensor) -> torch.Tensor:
    """grid_sample grid (B, H, W, 2): (2X/(W-1) - 1, 2Y/(H-1) - 1), clamped to [-1, 1]."""
    B, _, H, W = displacement.shape
    dt, dev = displacement.dtype, displacement.device
    gx = torch.linspace(-1, 1, W, dtype=dt, device=dev).expand(H, W)
    gy = torch.linspace(-1, 1, H, dtype=dt, device=dev)[:, None].expand(H, W)
    base = torch.stack([gx, gy], dim=-1)  # (H, W, 2)
    step = torch.tensor([2 / (W - 1), 2 / (H - 1)], dtype=dt, device=dev)
    return torch.addcmul(base, displacement.permute(0, 2, 3, 1), -step).clamp_(-1, 1)


def _gather(x: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) at integer indices iy, ix of shape (B', H, W) -> (B, C, H, W)."""
    B, C, H, W = x.shape
    idx = (iy * W + ix).reshape(iy.shape[0], 1, H * W).expand(B, C, H * W)  # (B, C, HW)
    return x.reshape(B, C, H * W).gather(2, idx).reshape(B, C, H, W)


def _linear_gather(x, X, Y):
    xf, xc = X.floor(), X.ceil()
    yf, yc = Y.floor(), Y.ceil()
    wx = (X - xf)[:, None]  # (B, 1, H, W)
    wy = (Y - yf)[:, None]
    xf, xc, yf, yc = (t.long() for t in (xf, xc, yf, yc))
    return ((1 - wy) * ((1 - wx) * _gather(x, yf, xf) + wx * _gather(x, yf, xc))
            + wy * ((1 - wx) * _gather(x, yc, xf) + wx * _gather(x, yc, xc)))


def _gaussian_axis(P: torch.Tensor, fP: torch.Tensor, size: int, R: int, sigma: float):
    """Normalised weights (..., 2R) of the taps floor(P) - R + 1 .. floor(P) + R inside [0, size-1]."""
    offs = torch.arange(-R + 1, R + 1, dtype=P.dtype, device=P.device)  # (2R,)
    dist = (P - fP)[..., None] - offs  # (..., 2R): P - q
    w = torch.exp(dist.square_().mul_(-0.5 / sigma ** 2))
    q = fP[..., None] + offs
    w.masked_fill_((q < 0) | (q > size - 1), 0.0)
    return w.div_(w.sum(-1, keepdim=True))  # normalise over the kept taps


def _gaussian_truncated(x, X, Y, R: int, sigma: float, max_elements: int = 1 << 23):
    """Sum of the (2R)^2 taps per output pixel: out = wy^T . block . wx.

    The image is zero-padded by R, so the taps of an output pixel form a contiguous 2R x 2R
    block (out-of-image taps carry weight 0). Each block is fetched as 2R rows of 2R
    contiguous values from the row-unfolded image (one index per row, not per tap).
    ``max_elements`` bounds the (b, C, HW, 2R, 2R) tap tensor; it is a memory knob only.
    """
    B, C, H, W = x.shape
    K = 2 * R
    Hp = H + 2 * R
    fx, fy = X.floor(), Y.floor()  # (B', H, W)
    wx = _gaussian_axis(X, fx, W, R, sigma)  # (B', H, W, 2R)
    wy = _gaussian_axis(Y, fy, H, R, sigma)
    w = (wy[..., :, None] * wx[..., None, :]).reshape(-1, 1, H * W, K, K)  # (B', 1, HW, a, b)
    # padded row fy + 1 + a, columns fx + 1 .. fx + 2R  ->  unfolded row start (W + 1 per row)
    base = ((fy.long() + 1) * (W + 1) + fx.long() + 1).reshape(-1, H * W, 1)  # (B', HW, 1)
    rows = (base + torch.arange(K, device=x.device) * (W + 1)).reshape(-1, 1, H * W * K, 1)
    if rows.shape[0] == 1 and B > 1:
        rows, w = rows.expand(B, 1, H * W * K, 1), w.expand(B, 1, H * W, K, K)
    xu = F.pad(x, (R, R, R, R)).unfold(3, K, 1).reshape(B, C, Hp * (W + 1), K)  # (B, C, rows, 2R)
    out = torch.empty(B, C, H * W, dtype=x.dtype, device=x.device)
    step = max(1, max_elements // (C * K * K * H * W))
    for s in range(0, B, step):
        b = xu[s:s + step].shape[0]
        taps = xu[s:s + step].gather(2, rows[s:s + step].expand(b, C, H * W * K, K))
        out[s:s + step] = (taps.reshape(b, C, H * W, K, K) * w[s:s + step]).sum((-1, -2))  # (b, C, HW)
    return out.reshape(B, C, H, W)


def _gaussian_paired(x, X, Y, R: int, sigma: float):
    """The same 2R x 2R stencil as R^2 bilinear ``grid_sample`` fetches (paired taps).

    Taps (2k, 2k+1) of an axis with weights (w0, w1) > 0 equal s ((1-t) I[q] + t I[q+1]) with
    s = w0 + w1 and t = w1/s, and the 2D weights are products, so each pair of pairs is one
    bilinear sample at (q + t) scaled by s_y s_x (the linear-sampling trick of GPU blurs). The
    image is zero-padded by R; out-of-image taps have weight 0, so t is exactly 0 or 1 there.
    """
    B, C, H, W = x.shape
    Hp, Wp = H + 2 * R, W + 2 * R
    fx, fy = X.floor(), Y.floor()  # (B', H, W)
    wx = _gaussian_axis(X, fx, W, R, sigma)  # (B', H, W, 2R)
    wy = _gaussian_axis(Y, fy, H, R, sigma)

    def pairs(w):
        s = w[..., 0::2] + w[..., 1::2]  # (B', H, W, R)
        t = torch.where(s > 0, w[..., 1::2] / torch.where(s > 0, s, 1.0), 0.0)
        return s, t

    sx, tx = pairs(wx)
    sy, ty = pairs(wy)
    xp = F.pad(x, (R, R, R, R))
    # pair k starts at tap f - R + 1 + 2k, i.e. padded coordinate f + 1 + 2k
    k2 = 2 * torch.arange(R, dtype=X.dtype, device=X.device)
    gx = (fx[..., None] + 1 + k2 + tx) * (2 / (Wp - 1)) - 1  # (B', H, W, R)
    gy = (fy[..., None] + 1 + k2 + ty) * (2 / (Hp - 1)) - 1
    out = torch.zeros_like(x)
    for a in range(R):
        for b in range(R):
            grid = torch.stack([gx[..., b], gy[..., a]], dim=-1).expand(B, H, W, 2)
            v = F.grid_sample(xp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            out = out.addcmul_(v, (sy[..., a] * sx[..., b])[:, None])
    return out


def deform(x: torch.Tensor, displacement: torch.Tensor, interp: str = "linear", *,
           gaussian_radius: int = 3, sigma: float = SIGMA_REF,
           backend: str = "grid_sample") -> torch.Tensor:
    """Warp images by a pixel displacement field: output(y, x) = x(y - dy, x - dx), clamped.

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W) or (C, H, W)
        Images (floating point).
    displacement : Tensor, shape (B, 2, H, W) or (2, H, W)
        From :func:`sample_displacement`; a single field is applied to every image.
    interp : {"linear", "nearest", "gaussian"}
        See :class:`Interp`.
    gaussian_radius : int
        R: the Gaussian keeps 2R taps per axis, {floor(X)-R+1, ..., floor(X)+R} within the
        image, normalised over the kept taps. R = 3 is within ~1e-8 of the dense reference,
        R = 4 within float64 round-off.
    sigma : float
        Gaussian width in pixels (reference 0.4715).
    backend : {"grid_sample", "gather"}
        See :class:`WarpBackend`.

    Returns
    -------
    Tensor with the shape of ``x``.

    Convention:
        x: (B, C, H, W), indexed [y, x]. displacement: (B, 2, H, W), channel 0 = dx (along W),
        channel 1 = dy (along H), in pixels. output[y, x] = x[y - dy, x - dx]; positive dx
        moves content right (to larger column index). Sampling points are clamped to
        [0, W-1] x [0, H-1] first (border/replicate), then interpolated; bilinear uses
        grid_sample with align_corners=True, i.e. pixel p <-> 2p/(n-1) - 1.
    """
    mode = _choice(Interp, interp, "interp")
    be = _choice(WarpBackend, backend, "backend")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point; got {x.dtype}")
    x, d, squeeze = _prepare(x, displacement)
    B, C, H, W = x.shape
    if mode is Interp.GAUSSIAN:
        X, Y = sampling_points(d)  # (B', H, W)
        if gaussian_radius < 1:
            raise ValueError(f"gaussian_radius must be >= 1; got {gaussian_radius}")
        stencil = _gaussian_paired if be is WarpBackend.GRID_SAMPLE else _gaussian_truncated
        out = stencil(x, X, Y, int(gaussian_radius), float(sigma))
    elif be is WarpBackend.GATHER:
        X, Y = sampling_points(d)  # (B', H, W)
        if mode is Interp.LINEAR:
            out = _linear_gather(x, X, Y)
        else:
            out = _gather(x, Y.round().long(), X.round().long())
    else:
        # normalised grid 2X/(W-1) - 1 built in one pass; clamping to [-1, 1] there is the
        # pixel clamp to [0, n-1] (the map is affine and increasing)
        grid = _normalised_grid(d).expand(B, H, W, 2)  # (B, H, W, 2)
        out = F.grid_sample(x, grid, mode="bilinear" if mode is Interp.LINEAR else "nearest",
                            padding_mode="border", align_corners=True)
    return out[0] if squeeze else out


def dense_gaussian_deform(x: torch.Tensor, displacement: torch.Tensor, *,
                          sigma: float = SIGMA_REF) -> torch.Tensor:
    """The reference's dense Gaussian interpolation, O((HW)^2) per image (oracle for tests).

    output(p) = sum_q w_pq x(q), w_pq proportional to exp(-|P_p - q|^2/(2 sigma^2)), normalised
    over all H*W grid pixels q. Same convention as :func:`deform`.
    """
    x, d, squeeze = _prepare(x, displacement)
    B, C, H, W = x.shape
    X, Y = sampling_points(d)  # (B', H, W)
    qx = torch.arange(W, dtype=x.dtype, device=x.device)
    qy = torch.arange(H, dtype=x.dtype, device=x.device)
    dx2 = (X.reshape(-1, H * W, 1, 1) - qx.reshape(1, 1, 1, W)) ** 2  # (B', HW, 1, W)
    dy2 = (Y.reshape(-1, H * W, 1, 1) - qy.reshape(1, 1, H, 1)) ** 2  # (B', HW, H, 1)
    w = torch.exp(-(dx2 + dy2) / (2 * sigma ** 2)).reshape(-1, H * W, H * W)  # (B', HW, HW)
    w = w / w.sum(-1, keepdim=True)
    out = torch.einsum("bpq,bcq->bcp", w.expand(B, -1, -1), x.reshape(B, C, H * W))
    out = out.reshape(B, C, H, W)
    return out[0] if squeeze else out


def gaussian_blur_reference(x: torch.Tensor, *, sigma: float = SIGMA_REF,
                            gaussian_radius: int = 3) -> torch.Tensor:
    """Gaussian interpolation at zero displacement: the blur [N21] applies to clean images.

    diffeo-sota ``results/utils.py::diffeo_imgs`` passes x through deform(x, T=0, cut=1,
    "gaussian") so that x and tau x are smoothed alike. At T = 0 the interior response to a
    delta is w0^2 (centre), w0 w1 (edge neighbours), w1^2 (corners) with
    w0 = 1/(1 + 2 e^{-1/(2 sigma^2)} + 2 e^{-4/(2 sigma^2)} + ...), w1 = e^{-1/(2 sigma^2)} w0.

    Convention:
        x: (B, C, H, W) or (C, H, W); the blur is the clamp-then-interpolate Gaussian of
        :func:`deform` at zero displacement (border pixels are normalised over in-image taps).
    """
    shape = (2,) + tuple(x.shape[-2:])
    zero = torch.zeros(shape, dtype=x.dtype, device=x.device)
    return deform(x, zero, "gaussian", gaussian_radius=gaussian_radius, sigma=sigma)

