"""Scale-detection tasks: 2D "two points" and the 1D tasks of [I23] (spec diffeo_pooling §6.1-6.2).

An image holds two active pixels; the label says whether they are close (+1) or far (-1)
(or, 1D Task 2, in the same block of size xi). The local "diffeos" move each active pixel by
one step, so they probe sensitivity to small deformations without changing the task scale.

Positions are the ground truth; images are rendered from them (:func:`render_twopoints`,
:func:`render_1d`), which keeps memory small for d = 28 (306,936 pairs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "twopoints",
    "twopoints_pairs",
    "twopoints_split",
    "twopoints_class_counts",
    "render_twopoints",
    "local_translation",
    "scale_detection_1d",
    "scale_detection_1d_class_counts",
    "scale_detection_1d_probes",
    "ScaleDetection1D",
    "render_1d",
    "local_diffeo_1d",
    "REFERENCE_PERM_SEED",
]

REFERENCE_PERM_SEED = 123456789
"""Seed of the dedicated generator that permutes each class (reference ``twopoints.py``)."""


# ----------------------------------------------------------------------------------------------
# 2D two points
# ----------------------------------------------------------------------------------------------
def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _candidates(d: int, exclude_diagonal: bool) -> torch.Tensor:
    """Candidate pixels (M, 2) as (row, col), row-major; without the diagonal if asked."""
    r, c = torch.meshgrid(torch.arange(d), torch.arange(d), indexing="ij")
    rc = torch.stack([r.flatten(), c.flatten()], 1)  # (d², 2)
    if exclude_diagonal:
        rc = rc[rc[:, 0] != rc[:, 1]]
    return rc


def _pair_distance(pos: torch.Tensor, d: int, norm: str, pbc: bool) -> torch.Tensor:
    """Distance of the two pixels of each pair; pos (N, 2, 2) -> (N,) float64."""
    delta = (pos[:, 0] - pos[:, 1]).abs().double()  # (N, 2)
    if pbc:
        delta = torch.minimum(delta, d - delta)
    return delta.norm(dim=1) if norm == "L2" else delta.amax(dim=1)


def _all_pairs_labelled(d, xi, gap, norm, pbc, exclude_diagonal, labelling):
    _check("norm", norm, ("L2", "Linf"))
    _check("labelling", labelling, ("distance", "quadrant"))
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    cand = _candidates(d, exclude_diagonal)  # (M, 2)
    ij = torch.combinations(torch.arange(len(cand)), 2)  # (N, 2), itertools order
    pos = cand[ij]  # (N, 2 pixels, 2 coords)
    if labelling == "distance":
        dist = _pair_distance(pos, d, norm, pbc)
        far = dist >= xi + gap / 2
        close = dist < xi - gap / 2
    else:
        q = pos // (d // 2)  # quadrant index per coordinate
        same = (q[:, 0] == q[:, 1]).all(dim=1)
        far, close = same, ~same  # same quadrant -> target 0 -> label -1 (reference sign)
    return pos, far, close


def twopoints_class_counts(d: int = 28, xi: float = 14, gap: float = 2, *, norm: str = "L2",
                           pbc: bool = False, exclude_diagonal: bool = False,
                           labelling: str = "distance") -> tuple[int, int]:
    """Numbers of admissible (far, close) pairs, by enumeration of all pixel pairs.

    Returns
    -------
    (n_far, n_close) : tuple of int
        Before class balancing. Pairs inside the gap band are in neither class.
    """
    _, far, close = _all_pairs_labelled(d, xi, gap, norm, pbc, exclude_diagonal, labelling)
    return int(far.sum()), int(close.sum())


def twopoints_pairs(d: int = 28, xi: float = 14, gap: float = 2, *, norm: str = "L2",
                    pbc: bool = False, exclude_diagonal: bool = False, balanced: bool = True,
                    labelling: str = "distance") -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel positions and labels of the two-points data set, in the reference order.

    Returns
    -------
    pos : (N, 2, 2) int64
        ``pos[n, k] = (row, col)`` of active pixel k of sample n.
    labels : (N,) int64
        +1 (close) or -1 (far).

    Convention:
        Candidate pixels are all d² pixels in row-major order (``exclude_diagonal=True``: the
        reference quirk, pixels with row == col never active). Samples are unordered pairs in
        ``itertools.combinations`` order. Distance: per-coordinate |Δ| (``pbc``: min(|Δ|, d-|Δ|)),
        then L2 or L∞. far: dist >= xi + gap/2 -> label -1; close: dist < xi - gap/2 -> +1; pairs
        in the band are dropped. ``labelling="quadrant"``: same d/2 quadrant -> -1 (the opposite
        sign of "close = +1", as in the reference). Each class is permuted by ``torch.randperm``
        with one generator seeded 123456789 (far first, then close); output is far then close,
        each truncated to the smaller class size if ``balanced``.
    """
    pos, far, close = _all_pairs_labelled(d, xi, gap, norm, pbc, exclude_diagonal, labelling)
    g = torch.Generator().manual_seed(REFERENCE_PERM_SEED)
    pos_far, pos_close = pos[far], pos[close]
    pos_far = pos_far[torch.randperm(len(pos_far), generator=g)]
    pos_close = pos_close[torch.randperm(len(pos_close), generator=g)]
    if balanced:
        p = min(len(pos_far), len(pos_close))
        pos_far, pos_close = pos_far[:p], pos_close[:p]
    labels = torch.cat([-torch.ones(len(pos_far), dtype=torch.long),
                        torch.ones(len(pos_close), dtype=torch.long)])
    return torch.cat([pos_far, pos_close]), labels


def render_twopoints(pos: torch.Tensor, d: int, *, background_noise: float = 0.0,
                     generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Images (N, 1, d, d) with the two pixels of ``pos`` (N, 2, 2) set to d²/2.

    Convention:
        Layout (N, 1, d, d) indexed [row, col]. Active pixels are 1/m with m = 2/d², so the mean
        pixel is 1. If both pixels coincide (after a translation) the value is *set* once, not
        added. ``background_noise·N(0, 1)`` per pixel is drawn from ``generator`` (the
        reference seeds it by the sample index; featlab uses the explicit generator).
    """
    device = torch.device(device) if device is not None else pos.device
    n = len(pos)
    x = torch.zeros(n, d * d, dtype=dtype, device=device)
    flat = (pos[..., 0] * d + pos[..., 1]).to(device)  # (N, 2)
    x.scatter_(1, flat, d * d / 2)
    x = x.view(n, 1, d, d)
    if background_noise:
        gdev = generator.device if generator is not None else device
        x = x + background_noise * torch.randn(x.shape, generator=generator, dtype=dtype,
                                               device=gdev).to(device)
    return x


def twopoints(d: int = 28, xi: float = 14, gap: float = 2, norm: str = "L2", pbc: bool = False,
              exclude_diagonal: bool = False, balanced: bool = True, labelling: str = "distance",
              background_noise: float = 0.0, *, generator: torch.Generator | None = None,
              dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole two-points data set, rendered: ``(images (N, 1, d, d), labels (N,) ±1)``.

    Memory: N·d² floats (d = 28 balanced: ~1 GB); use :func:`twopoints_split` to render only
    the samples you need. ``balanced=False`` returns every admissible pair.

    Convention:
        As :func:`twopoints_pairs` (order, labels: close = +1, far = -1) and
        :func:`render_twopoints` (active pixels d²/2, mean pixel 1).
    """
    pos, y = twopoints_pairs(d, xi, gap, norm=norm, pbc=pbc, exclude_diagonal=exclude_diagonal,
                             balanced=balanced, labelling=labelling)
    x = render_twopoints(pos, d, background_noise=background_noise, generator=generator,
                         dtype=dtype, device=device)
    return x, y.to(x.device)


def twopoints_split(ptr: int, testsize: int | None = None, *, d: int = 28, xi: float = 14,
                    gap: float = 2, norm: str = "L2", pbc: bool = False,
                    exclude_diagonal: bool = False, labelling: str = "distance",
                    generator: torch.Generator | None = None, return_positions: bool = False,
                    dtype: torch.dtype = torch.float32, device=None):
    """Balanced train/test split: test = the last ``testsize/2`` of each permuted class.

    ``ptr`` training points are drawn by ``randperm`` (``generator``) from the rest; the
    reference loader uses ``testsize = 4·ptr`` (the default).

    Returns
    -------
    (x_train, y_train, x_test, y_test) and, if ``return_positions``, (pos_train, pos_test).
    """
    testsize = 4 * ptr if testsize is None else testsize
    pos, y = twopoints_pairs(d, xi, gap, norm=norm, pbc=pbc, exclude_diagonal=exclude_diagonal,
                             balanced=True, labelling=labelling)
    p = len(pos) // 2  # per class: far is pos[:p], close pos[p:]
    h = testsize // 2
    if h < 1 or ptr < 1 or h + (ptr + 1) // 2 > p:
        raise ValueError(f"ptr + testsize must fit in 2·{p} balanced samples (ptr={ptr}, testsize={testsize})")
    test_idx = torch.cat([torch.arange(p - h, p), torch.arange(2 * p - h, 2 * p)])
    rest = torch.cat([torch.arange(0, p - h), torch.arange(p, 2 * p - h)])
    gdev = generator.device if generator is not None else "cpu"
    train_idx = rest[torch.randperm(len(rest), generator=generator, device=gdev).cpu()[:ptr]]
    dev = device if device is not None else gdev
    out = (render_twopoints(pos[train_idx], d, dtype=dtype, device=dev), y[train_idx].to(dev),
           render_twopoints(pos[test_idx], d, dtype=dtype, device=dev), y[test_idx].to(dev))
    return out + (pos[train_idx], pos[test_idx]) if return_positions else out


def _active_positions(x: torch.Tensor) -> torch.Tensor:
    """(N, 2) flat indices of the two active pixels of clean images (N, ...); a lone pixel twice."""
    flat = x.reshape(len(x), -1)
    val, idx = flat.topk(2, dim=1)  # (N, 2)
    single = val[:, 1] <= 0
    idx[single, 1] = idx[single, 0]
    return idx


def local_translation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Move each active pixel of clean two-points images to one of its 8 neighbours (§6.1).

    Each pixel moves by round(t/‖t‖) with t ~ N(0, I₂): an axis step with probability 1/6
    each, a diagonal step with probability 1/12 each. Coordinates are clipped to [0, d-1]; the
    label may change.

    Convention:
        x: (N, 1, d, d) without background noise; the output has the same pixel value. t is
        drawn as (N, 2 pixels, 2) = (row, col) steps on ``generator``'s device.
    """
    n, d = len(x), x.shape[-1]
    value = x.reshape(n, -1).amax(dim=1)  # (N,)
    flat = _active_positions(x)
    rc = torch.stack([flat // d, flat % d], -1)  # (N, 2, 2)
    gdev = generator.device if generator is not None else x.device
    t = torch.randn(n, 2, 2, generator=generator, device=gdev, dtype=torch.float64).to(x.device)
    step = torch.round(t / t.norm(dim=-1, keepdim=True)).long()
    rc = (rc + step).clamp(0, d - 1)
    out = torch.zeros_like(x).reshape(n, -1)
    out.scatter_(1, rc[..., 0] * d + rc[..., 1], value[:, None].expand(n, 2).to(x.dtype))
    return out.view_as(x)


# ----------------------------------------------------------------------------------------------
# 1D scale detection
# ----------------------------------------------------------------------------------------------
def _labels_1d(r1, r2, L, xi, gap, task):
    if task == 1:
        dd = r2 - r1
        dist = torch.minimum(dd, L - dd)
        close, far = dist < xi - gap, dist >= xi + gap
    else:
        close = (r1 // xi) == (r2 // xi)
        far = ~close
    return close, far


def _all_pairs_1d(L, xi, gap, task):
    _check("task", task, (1, 2))
    if task == 2 and L % xi:
        raise ValueError(f"xi must divide L for task 2 (L={L}, xi={xi})")
    rr = torch.combinations(torch.arange(L), 2)  # (N, 2), r1 < r2
    close, far = _labels_1d(rr[:, 0], rr[:, 1], L, xi, gap, task)
    return rr, close, far


def scale_detection_1d_class_counts(L: int = 128, xi: int = 32, gap: int = 0,
                                    task: int = 2) -> tuple[int, int]:
    """Numbers of (close = +1, far = -1) pairs r1 < r2, by enumeration, before balancing."""
    _, close, far = _all_pairs_1d(L, xi, gap, task)
    return int(close.sum()), int(far.sum())


@dataclass(frozen=True)
class ScaleDetection1D:
    """Balanced splits of the 1D task. ``x_*``: (n, 1, L); ``y_*``: (n,) ±1; ``pos_*``: (n, 2)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    pos_train: torch.Tensor
    pos_val: torch.Tensor
    pos_test: torch.Tensor


def render_1d(pos: torch.Tensor, L: int, *, dtype: torch.dtype = torch.float32,
              device=None) -> torch.Tensor:
    """Images (n, 1, L) with value √(L/2) at both positions of ``pos`` (n, 2) (set, not added)."""
    device = device if device is not None else pos.device
    x = torch.zeros(len(pos), L, dtype=dtype, device=device)
    x.scatter_(1, pos.to(device), math.sqrt(L / 2))
    return x[:, None]


def scale_detection_1d(L: int = 128, xi: int = 32, gap: int = 0, task: int = 2, *,
                       P: int = 1024, P_val: int = 128, P_test: int | None = None,
                       generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float32, device=None) -> ScaleDetection1D:
    """1D scale detection (§6.2), balanced train / validation / test splits.

    Parameters
    ----------
    L, xi, gap
        Length, scale and gap (Task 1: +1 if d < xi - gap, -1 if d >= xi + gap, d periodic).
    task
        1 (distance) or 2 (+1 iff both pixels in the same block of size xi; xi | L).
    P, P_val, P_test
        Split sizes, each half per class; ``P_test=None``: all remaining balanced pairs.
    generator
        Permutes each class (close first, then far).

    Convention:
        Positions r1 < r2 over all combinations; pixel value √(L/2) so ‖x‖² = L. Labels +1
        (close / same block) and -1. Every split is balanced and the splits are disjoint.
    """
    rr, close, far = _all_pairs_1d(L, xi, gap, task)
    gdev = generator.device if generator is not None else "cpu"
    pc, pf = rr[close], rr[far]
    pc = pc[torch.randperm(len(pc), generator=generator, device=gdev).cpu()]
    pf = pf[torch.randperm(len(pf), generator=generator, device=gdev).cpu()]
    n = min(len(pc), len(pf))
    h, hv = P // 2, P_val // 2
    ht = n - h - hv if P_test is None else P_test // 2
    if min(h, hv, ht) < 1 or h + hv + ht > n:
        raise ValueError(f"P + P_val + P_test must fit in 2·{n} balanced pairs (P={P}, P_val={P_val}, P_test={P_test})")

    def take(a, b):
        pos = torch.cat([pc[a:b], pf[a:b]])
        y = torch.cat([torch.ones(b - a, dtype=torch.long), -torch.ones(b - a, dtype=torch.long)])
        dev = device if device is not None else gdev
        return render_1d(pos, L, dtype=dtype, device=dev), y.to(dev), pos

    xt, yt, pt = take(0, h)
    xv, yv, pv = take(h, h + hv)
    xs, ys, ps = take(h + hv, h + hv + ht)
    return ScaleDetection1D(xt, yt, xv, yv, xs, ys, pt, pv, ps)


def scale_detection_1d_probes(L: int = 128, xi: int = 32, gap: int = 0, task: int = 2, *,
                              fraction: float = 0.1, generator: torch.Generator | None = None,
                              dtype: torch.dtype = torch.float32, device=None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference's probe set for D/G/R: a fraction of *all* labelled pairs, half per class.

    scale_detection_1d ``diffeo_cluster_mean.py``: NTOT = int((n₊ + n₋)/10) pairs, NTOT/2 from
    each class after a random permutation of each class, drawn from every pair of the task, so
    the probes overlap the training set (L = 128, ξ = 32, Task 2: 812 probes).

    Returns
    -------
    (x (n, 1, L), y (n,) ±1, pos (n, 2)) with n = 2·⌊⌊fraction·(n₊ + n₋)⌋/2⌋: close first.

    Convention:
        As :func:`scale_detection_1d` (pixel value √(L/2), +1 = close / same block). Each class
        is permuted by ``randperm`` on ``generator`` (close first, then far).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rr, close, far = _all_pairs_1d(L, xi, gap, task)
    half = int(fraction * int(close.sum() + far.sum())) // 2
    if half < 1 or half > min(int(close.sum()), int(far.sum())):
        raise ValueError(f"fraction {fraction} gives {half} probes per class; each class has "
                         f"{int(close.sum())} / {int(far.sum())} pairs")
    gdev = generator.device if generator is not None else "cpu"
    pc, pf = rr[close], rr[far]
    pc = pc[torch.randperm(len(pc), generator=generator, device=gdev).cpu()][:half]
    pf = pf[torch.randperm(len(pf), generator=generator, device=gdev).cpu()][:half]
    pos = torch.cat([pc, pf])
    y = torch.cat([torch.ones(half, dtype=torch.long), -torch.ones(half, dtype=torch.long)])
    dev = device if device is not None else gdev
    return render_1d(pos, L, dtype=dtype, device=dev), y.to(dev), pos


def local_diffeo_1d(x: torch.Tensor, xi: int, generator: torch.Generator | None = None, *,
                    signs: torch.Tensor | None = None) -> torch.Tensor:
    """The 1D local "diffeo" (§6.2): each active pixel shifts by ±1, undone across block borders.

    Each active pixel r moves to clamp(r + s, 0, L-1) with s uniform in {-1, +1}; if its block
    ⌊r/xi⌋ changed, the move is undone (so Task-2 labels never change), then clamped again.

    Parameters
    ----------
    x : (n, 1, L) clean images with one or two active pixels of equal value.
    xi : block size of the rejection.
    generator : draws s (ignored when ``signs`` is given).
    signs : (n, 2) tensor of ±1, optional
        The shifts themselves (for exact expectations over the four sign pairs); column k
        moves the pixel of column k of the (value-ordered) active positions.

    Convention:
        Coinciding pixels give one active pixel of the same value (set, not added). s is
        drawn as (n, 2) on ``generator``'s device.
    """
    n, L = len(x), x.shape[-1]
    value = x.reshape(n, -1).amax(dim=1)
    r = _active_positions(x)  # (n, 2)
    if signs is None:
        gdev = generator.device if generator is not None else x.device
        s = 2 * torch.randint(0, 2, (n, 2), generator=generator, device=gdev).to(x.device) - 1
    else:
        s = torch.as_tensor(signs, device=x.device).long()
        if s.shape != (n, 2) or not bool((s.abs() == 1).all()):
            raise ValueError(f"signs must be ±1 with shape ({n}, 2), got {tuple(s.shape)}")
    new = (r + s).clamp(0, L - 1)
    new = torch.where(new // xi != r // xi, r, new).clamp(0, L - 1)
    out = torch.zeros(n, L, dtype=x.dtype, device=x.device)
    out.scatter_(1, new, value[:, None].expand(n, 2).to(x.dtype))
    return out.view_as(x)
