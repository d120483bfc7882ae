"""CNNs with constant filters: why D_k, G_k, R_k scale with the receptive field (spec §7).

    layer:  h ← relu(b + v·Σ_{j<F} pad(h)[s·i + j])        v = s/F  (or 1: ``one_filters``)

Inputs are one-hot (deltas), the "diffeo" is a roll by one pixel, and the noise is matched in
norm (‖η‖ = ‖τx − x‖ = √2) and rectified, xn = relu(x + η). The effective receptive field A_k
is the participation ratio (Σr)²/Σr² of a layer-k neuron's input-space profile r: a box of
width s^k with stride s = F, and ∝ √k without stride (a k-fold convolution of boxes:
"diffusive spreading"). Predictions (derivation in the spec):

    with stride (s = F):  D_k ∝ A_k^-1,  G_k ∝ A_k,  R_k ∝ A_k^-2
    without stride:       D_k ∝ A_k^-2,  G_k ∝ A_k,  R_k ∝ A_k^-3

Zero-mean noise (not rectified, and a bias large enough that the ReLUs stay linear) averages
out under pooling, so G_k stops growing with stride: the growth is rectified noise piling up.

The module is called ``cnn_constant_filters`` (not ``constant_filters``) so that importing it
cannot shadow the lazily exported function ``featlab.theory.constant_filters``.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as Fn

__all__ = ["constant_filters", "ConstantFilterResult", "receptive_field_sizes", "PREDICTED_EXPONENTS",
           "fit_exponent", "CFMethod", "constant_filter_cnn", "constant_filters_two_pixels"]


class CFMethod(str, enum.Enum):
    """How the layer responses are computed.

    SIMULATE
        Run the net layer by layer (strided slices). Exact for every setting; cost
        O(depth·B·N), slow for the thousands of layers the no-stride case needs (A_k ∝ √k).
    SPECTRAL
        s = 1 only. All inputs are nonnegative, so with rectified noise and b >= 0 no ReLU is
        ever active and a layer is the circular convolution with a box H. Every quantity is
        a difference h(x') − h(x) = H^k (x' − x), so ‖·‖² = (1/N) Σ_ω |Ĥ(ω)|^{2k} |δ̂(ω)|²:
        O(depth·N) after one FFT. For zero-mean noise it assumes the linear regime (large
        bias); the tests compare it with SIMULATE.
    AUTO
        SPECTRAL when s = 1 and the noise is rectified (where it is exact), else SIMULATE.
    """

    SIMULATE = "simulate"
    SPECTRAL = "spectral"
    AUTO = "auto"

PREDICTED_EXPONENTS = {
    "stride": {"D": -1.0, "G": 1.0, "R": -2.0},
    "nostride": {"D": -2.0, "G": 1.0, "R": -3.0},
}
"""Predicted exponents of D_k, G_k, R_k against A_k (rectified noise), spec §7 table."""


@dataclass(frozen=True)
class ConstantFilterResult:
    """Per-layer quantities, index k = 0 (input) .. depth; ``exponents`` fitted on ``fit_mask``.

    Attributes
    ----------
    A, D, G, R, deno, D_num, G_num : (depth + 1,) float64 arrays
    exponents : dict
        ``{"D": slope, "G": slope, "R": slope}`` of log Q_k against log A_k (least squares).
    fit_mask : (depth + 1,) bool array
        Layers used in the fit.
    """

    A: np.ndarray
    D: np.ndarray
    G: np.ndarray
    R: np.ndarray
    deno: np.ndarray
    D_num: np.ndarray
    G_num: np.ndarray
    fit_mask: np.ndarray
    exponents: dict = field(default_factory=dict)

    @property
    def decades(self) -> float:
        """log10 of the range of A_k spanned by the fit."""
        a = self.A[self.fit_mask]
        return float(np.log10(a.max() / a.min())) if len(a) else 0.0


def fit_exponent(A: np.ndarray, Q: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Least-squares slope of log Q against log A (entries with Q <= 0 or A <= 0 dropped)."""
    A, Q = np.asarray(A, float), np.asarray(Q, float)
    ok = (A > 0) & (Q > 0) & np.isfinite(Q)
    if mask is not None:
        ok &= mask
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(A[ok]), np.log(Q[ok]), 1)[0])


def _pad(F: int) -> tuple[int, int]:
    return ((F - 1) // 2, (F - 1) // 2) if F % 2 else (F // 2 - 1, F // 2)


def receptive_field_sizes(F: int, s: int | Sequence[int], depth: int, N: int) -> np.ndarray:
    """A_k, k = 0..depth: participation ratio of a layer-k neuron's input-space profile.

    The profile follows r^{k+1} = Σ_{j<F} roll(r^k, j·S_k) with S_k = s_0·…·s_{k-1} the
    input-pixel spacing of layer-k neurons (circular in N; the filter value only rescales r,
    which the participation ratio ignores). ``s`` is one stride for every layer or a sequence
    of ``depth`` strides (e.g. ``SimpleCNN.strides``).

    Convention:
        A_0 = 1 (a pixel). With s = F, A_k = s^k exactly; without stride A_k → 2√π·σ_k with
        σ_k² = k(F² − 1)/12 (Gaussian limit).
    """
    strides = [s] * depth if isinstance(s, (int, np.integer)) else [int(v) for v in s]
    if len(strides) != depth:
        raise ValueError(f"s must be an int or {depth} strides, got {s!r}")
    r = torch.zeros(N, dtype=torch.float64)
    r[0] = 1.0
    A = [1.0]
    S = 1
    for st in strides:
        r = sum(torch.roll(r, j * S) for j in range(F))
        r = r / r.sum()  # keep it O(1): F^k overflows float64 past k ~ 650
        S *= st
        A.append(float(r.sum() ** 2 / (r ** 2).sum()))
    return np.array(A)


def constant_filter_cnn(F: int = 2, depth: int = 7, stride_layers: str = "all", *,
                        stride: int | None = None, dim: int = 1, padding: str = "circular"):
    """The ideal net of §7 as a :class:`~featlab.models.SimpleCNN`: one channel, filters 1, no bias.

    Same blocks, strides and padding as the trained nets of the ``pooling`` experiment, so the
    experiment's own probe protocol (block outputs ``blocks.k``, channel mean, local diffeo,
    rectified noise, fit range) measures it unchanged. Each block computes
    √F·relu(Σ_{j<F} pad(h)[s·i + j]/√F) = Σ_j pad(h)[s·i + j] on nonnegative inputs, i.e. the
    notebook's layer with v = 1 instead of s/F: a per-layer factor that D_k, G_k and R_k ignore
    (each layer has its own denominator). On nonnegative inputs no ReLU is ever active, so the
    net is linear there (what :func:`constant_filters_two_pixels` uses).

    Returns
    -------
    SimpleCNN in eval mode, parameters frozen (readout β = 1, biases 0).
    """
    from ..models.simple_cnn import SimpleCNN

    net = SimpleCNN(dim=dim, F=F, stride_layers=stride_layers, depth=depth, width=1,
                    padding=padding, stride=F if stride is None else stride)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.fill_(0.0 if name.endswith("bias") else 1.0)
            p.requires_grad_(False)
    return net.eval()


def constant_filters_two_pixels(X: torch.Tensor, xi: int, F: int = 2, depth: int = 7,
                                stride_layers: str = "all", *, stride: int | None = None) -> dict:
    """Exact D_k, G_k of the ideal net on given 1D probes: the closed form behind ``alpha_*_ideal``.

    The ``pooling`` experiment measures the ideal net (:func:`constant_filter_cnn`) with one
    local-diffeo draw and one noise draw per probe (Monte Carlo). Here the same quantities
    are computed as expectations, exactly: the net is linear on nonnegative inputs,
    h_k(x) = M_k x (M_k from the one-hot basis), so

        deno_k = 2·mean_p ‖M_k x_p − mean‖²                           (the probes' own mean),
        D_num_k = mean_p ¼ Σ_{s ∈ {±1}²} ‖M_k(τ_s x_p − x_p)‖²         (the four shift pairs of
                  :func:`featlab.data.local_diffeo_1d`, rejection and clamping included),
        G_num_k = σ²·[(½ − 1/(2π))‖M_k‖_F² + (1/(2π))‖M_k 1‖²]        (η = relu(σ z), z ~ N(0, I):
                  E η_i η_j = σ²/2 on the diagonal, σ²/(2π) off it),

    with σ² = E mean((τx − x)²) = D_num_0/L, the expectation of the experiment's matched σ².

    Parameters
    ----------
    X : (P, 1, L) clean two-pixel probes; xi : block size of the rejecting diffeo;
    F, depth, stride_layers, stride : the architecture (as :func:`constant_filter_cnn`).

    Returns
    -------
    dict of (depth,) float64 arrays "D", "G", "R", "deno", "D_num", "G_num" (block k = 1..depth,
    the entries of ``stability(...)["layers"]["blocks.{k-1}"]``; D, G, R are NaN where deno = 0,
    i.e. where a block sums the whole input) and the float "sigma2".

    Convention:
        Mean protocol, diagonal pairs included; block outputs flattened (one channel, so the
        channel mean changes nothing); float64.
    """
    from ..data.scale_detection import local_diffeo_1d
    from ..probes.hooks import capture

    if X.ndim != 3 or X.shape[1] != 1:
        raise ValueError(f"X must be (P, 1, L) one-channel 1D probes, got {tuple(X.shape)}")
    if bool((X < 0).any()):
        raise ValueError("X must be nonnegative (the ideal net is linear only there)")
    net = constant_filter_cnn(F, depth, stride_layers, stride=stride).double()
    X = X.detach().double().cpu()
    P, _, L = X.shape
    names = net.block_names
    with torch.no_grad(), capture(net, names) as cache:
        net(torch.eye(L, dtype=torch.float64)[:, None])  # one-hot basis -> columns of M_k
    Ms = [cache[n][0].reshape(L, -1).T for n in names]  # (L_k, L) each
    signs = torch.tensor([[a, b] for a in (-1, 1) for b in (-1, 1)])
    dX = torch.stack([(local_diffeo_1d(X, xi, signs=sg.expand(P, 2)) - X)[:, 0] for sg in signs])  # (4, P, L)
    Xf = X[:, 0]
    sigma2 = float(dX.pow(2).mean())
    c_diag, c_off = 0.5 - 1 / (2 * math.pi), 1 / (2 * math.pi)
    deno, Dn, Gn = [], [], []
    for M in Ms:
        h = Xf @ M.T  # (P, L_k)
        deno.append(float(2 * (h - h.mean(0)).pow(2).sum(1).mean()))
        Dn.append(float((dX @ M.T).pow(2).sum(-1).mean()))
        Gn.append(sigma2 * (c_diag * float(M.pow(2).sum()) + c_off * float(M.sum(1).pow(2).sum())))
    deno, Dn, Gn = (np.array(v) for v in (deno, Dn, Gn))
    with np.errstate(divide="ignore", invalid="ignore"):  # deno = 0 where a block sums the input
        D = np.where(deno > 0, Dn / deno, np.nan)
        G = np.where(deno > 0, Gn / deno, np.nan)
        R = D / G
    return {"D": D, "G": G, "R": R, "deno": deno, "D_num": Dn, "G_num": Gn, "sigma2": sigma2}


def _spectral(x, xt, xr, xn, F, left, v, depth):
    """deno_k, D_num_k, G_num_k for k = 0..depth of the linear s = 1 net, via Parseval."""
    N = x.shape[-1]
    taps = torch.zeros(N, dtype=x.dtype)
    for j in range(F):  # layer: y[i] = v Σ_j x[i + j − left]  (circular)
        taps[(left - j) % N] += v
    H2 = torch.fft.fft(taps).abs() ** 2  # (N,) |Ĥ(ω)|²

    def power(d):  # mean over rows of |δ̂(ω)|²
        return (torch.fft.fft(d, dim=-1).abs() ** 2).mean(0)  # (N,)

    S = torch.stack([2 * power(x - x.mean(0)), power(xt - x), power(xn - xr)])  # (3, N)
    k = torch.arange(depth + 1, dtype=x.dtype)[:, None]  # (depth+1, 1)
    Hk = torch.where(H2 > 0, H2, torch.ones_like(H2)) ** k * (H2 > 0) + (H2 == 0) * (k == 0)  # |Ĥ|^{2k}
    Q = Hk @ S.T / N  # (depth+1, 3)
    return (Q[:, 0].numpy(), Q[:, 1].numpy(), Q[:, 2].numpy())


def constant_filters(F: int = 2, s: int = 2, depth: int = 8, N: int = 1024, bias: float = 0.0,
                     noise: str = "rectified", *, one_filters: bool = False,
                     n_images: int | None = None, n_noise: int = 1,
                     fit_A: tuple[float, float | None] = (4.0, None),
                     method: str | CFMethod = "auto",
                     generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float64, **renamed) -> ConstantFilterResult:
    """D_k, G_k, R_k of a constant-filter CNN on one-hot inputs, and their fitted exponents.

    Parameters
    ----------
    F, s : int
        Filter size and stride of every layer (s = F: "with stride"; s = 1: "without").
    depth, N : int
        Number of layers and input length (circular padding; N must be divisible by s^depth
        when s > 1, so every layer tiles exactly).
    bias : float
        b in every layer. Must be >= 0 (so nonnegative inputs stay in the linear regime of
        the ReLUs for rectified noise); a large bias linearises the net for zero-mean noise.
    noise : "rectified" | "zero_mean"
        xn = relu(x + η) (the notebook; positive noise that piles up) or x + η.
    one_filters : bool
        v = 1 instead of s/F.
    n_images : int or None
        Number of one-hot probe images at random distinct positions (``generator``); None:
        all N. (Formerly ``n_probe``: one name per concept, as ``probe.n_images`` in the
        configs; the old keyword is refused with a pointer.)
    n_noise : int
        Noise draws per probe (G_k averages over them).
    fit_A : (min, max)
        Layers with min <= A_k <= max enter the fits; max None -> N/8 (so the denominator's
        finite-size factor 1 − A_k/N stays small).
    method : "auto" | "simulate" | "spectral"
        See :class:`CFMethod`.

    Returns
    -------
    ConstantFilterResult

    Convention:
        Mean protocol (§3.2): deno_k = mean over all ordered probe pairs of ‖h_i − h_j‖²
        (diagonal included) = 2·mean_i ‖h_i − h̄‖²; D_k = mean_p ‖h(roll(x_p, 1)) − h(x_p)‖² /
        deno_k; G_k likewise with xn; R_k = D_k/G_k. η_p = √2·z/‖z‖, z ~ N(0, I_N), drawn on
        ``generator``'s device. Index k = 0 is the input itself.
    """
    if "n_probe" in renamed:
        raise TypeError("constant_filters: n_probe was renamed n_images")
    if renamed:
        raise TypeError(f"constant_filters() got an unexpected keyword argument {next(iter(renamed))!r}")
    if noise not in ("rectified", "zero_mean"):
        raise ValueError(f"noise must be 'rectified' or 'zero_mean', got {noise!r}")
    if bias < 0:
        raise ValueError(f"bias must be >= 0, got {bias}")
    method = CFMethod(method)
    if method is CFMethod.AUTO:
        method = CFMethod.SPECTRAL if (s == 1 and noise == "rectified") else CFMethod.SIMULATE
    if method is CFMethod.SPECTRAL and s != 1:
        raise ValueError(f"method='spectral' needs s=1 (got s={s})")
    if s > 1 and N % s ** depth:
        raise ValueError(f"N must be divisible by s^depth = {s ** depth} (got N={N})")
    gdev = generator.device if generator is not None else torch.device("cpu")
    P = N if n_images is None else n_images
    if not 2 <= P <= N:
        raise ValueError(f"n_images must be in [2, N], got {n_images}")
    pos = torch.arange(N) if n_images is None else torch.randperm(N, generator=generator, device=gdev).cpu()[:P]
    x = torch.zeros(P, N, dtype=dtype)
    x[torch.arange(P), pos] = 1.0  # (P, N) one-hot probes
    xt = torch.roll(x, 1, dims=1)  # the one-pixel "diffeo"
    xr = x.repeat(n_noise, 1)  # (P·n_noise, N)
    z = torch.randn(xr.shape, generator=generator, device=gdev, dtype=dtype).cpu()
    eta = math.sqrt(2.0) * z / z.norm(dim=1, keepdim=True)  # ‖η‖ = ‖τx − x‖ = √2
    xn = torch.relu(xr + eta) if noise == "rectified" else xr + eta
    h = torch.cat([x, xt, xr, xn])[:, None]  # (2P + 2P·n_noise, 1, N)
    sl = [slice(0, P), slice(P, 2 * P), slice(2 * P, 2 * P + len(xr)), slice(2 * P + len(xr), None)]

    v = 1.0 if one_filters else s / F
    left, right = _pad(F)

    def layer(h):
        # a constant-filter conv as F strided slices: ~25x faster than a 1-channel conv1d on CPU
        p = Fn.pad(h, (left, right), mode="circular")  # (B, 1, n + F - 1)
        n_out = (h.shape[-1] - 1) // s + 1
        acc = sum(p[..., j: j + s * (n_out - 1) + 1: s] for j in range(F))  # (B, 1, n_out)
        return torch.relu(bias + v * acc)

    def stats(h):
        f = h.flatten(1)
        c, ct, cr, cn = (f[q] for q in sl)
        deno = 2 * ((c - c.mean(0)) ** 2).sum(1).mean()
        return (float(deno), float(((ct - c) ** 2).sum(1).mean()), float(((cn - cr) ** 2).sum(1).mean()))

    if method is CFMethod.SPECTRAL:
        deno, Dn, Gn = _spectral(x, xt, xr, xn, F, left, v, depth)
    else:
        rows = [stats(h)]
        # deep averaging drives the profile tails to subnormal floats, ~100x slower on CPU;
        # flushing them to zero changes nothing above 1e-308 (global state, default restored)
        torch.set_flush_denormal(True)
        try:
            for _ in range(depth):
                h = layer(h)
                rows.append(stats(h))
        finally:
            torch.set_flush_denormal(False)
        deno, Dn, Gn = (np.array(c) for c in zip(*rows))
    deno = deno + 1e-30  # as the 1D reference
    A = receptive_field_sizes(F, s, depth, N)
    D, G = Dn / deno, Gn / deno
    R = D / G
    hi = N / 8 if fit_A[1] is None else fit_A[1]
    mask = (A >= fit_A[0]) & (A <= hi)
    exps = {k: fit_exponent(A, q, mask) for k, q in (("D", D), ("G", G), ("R", R))}
    return ConstantFilterResult(A, D, G, R, deno, Dn, Gn, mask, exps)
