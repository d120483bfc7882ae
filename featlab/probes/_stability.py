"""Relative sensitivities D, G, R to diffeomorphisms and noise (spec diffeo_pooling.md §3).

    D_f = <|f(tau x) - f(x)|^2> / <|f(x) - f(z)|^2>,  G_f = <|f(x + eta) - f(x)|^2> / same,
    R_f = D_f / G_f.

Private module name: a submodule called ``stability`` would shadow the lazily exported
function ``featlab.probes.stability``.
"""
from __future__ import annotations

import contextlib
from enum import Enum
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ..diffeo.fields import _choice, sample_displacement
from ..diffeo.temperature import typical_temperature
from ..diffeo.warp import deform
from ..utils.progress import progress
from ._moments import colsum_sumsq
from .hooks import capture, eval_mode, layer_names
from .noise import NoiseMode, matched_noise

__all__ = ["Protocol", "BNMode", "LayerSource", "stability", "mean_sq_distance", "mean_sq_distance_pairwise",
           "median_sq_distance", "lower_median"]

OUTPUT = "__output__"


class Protocol(str, Enum):
    """How numerators and the shared denominator are aggregated over probes.

    MEAN: [I23] (relativestability ``stability/__init__.py``): means over images, and the mean
        of all P^2 squared distances (diagonal zeros included) for the denominator, computed
        in closed form 2 mean|f - f_bar|^2, O(PD), streamed over batches.
    MEDIAN: [N21] (diffeo-sota@6d910eb ``results/utils.py::relative_distance``): numerator =
        sum over coordinates of the median over images of Delta^2; denominator = median of the
        P^2 squared distances. No closed form: needs all P x D features of a layer at once
        and a chunked float64 cdist, O(P^2 D).
    """

    MEAN = "mean"
    MEDIAN = "median"


class LayerSource(str, Enum):
    """Where layer names come from.

    MODULES: ``named_modules()`` paths, read with forward hooks (any model, no tracing).
    FX: nodes of ``torch.fx.symbolic_trace(model)`` with the reference's filter (module nodes
        by path, functional nodes such as ``relu``/``add_1`` by node name); needs a traceable
        model (no data-dependent control flow).
    """

    MODULES = "modules"
    FX = "fx"


class BNMode(str, Enum):
    """BatchNorm statistics during the probe.

    EVAL: running statistics (trained nets); samples are independent, so x, tau x and x + eta
        may share one forward pass.
    BATCH: batch statistics without touching running stats, as the reference does at init
        (``track_running_stats=False``); x, tau x and x + eta are separate batches of P.
    """

    EVAL = "eval"
    BATCH = "batch"


def lower_median(t: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """torch's median: for an even count, the *lower* of the two middle values."""
    return t.median() if dim is None else t.median(dim=dim).values


def mean_sq_distance(F: torch.Tensor, *, exclude_diagonal: bool = False,
                     chunk_size: int | None = None) -> torch.Tensor:
    """Mean over all P^2 ordered pairs of |f_i - f_j|^2 = 2 mean_i |f_i - f_bar|^2 (closed form).

    Convention:
        F: (P, D); diagonal zeros are included unless ``exclude_diagonal`` (factor P/(P-1)).
        float64 sums, 2 (sum |f_i|^2/P - |f_bar|^2), from the column sums and the total sum
        of squares. Fast path: a contiguous float32/float64 CPU array is read once by the C
        kernel (:mod:`featlab.probes._moments`, about one read of F). Otherwise (CUDA, other
        dtypes, strided input, or no C kernel built) one torch pass over F in row chunks of
        ``chunk_size`` rows (default ~2 MiB of float64): per chunk a BLAS gemv for the column
        sums and a dot for sum |f_i|^2, about 1.4-1.7x one read. Where the difference cancels
        more than 2 digits (|f_bar|^2 > 0.99 sum |f_i|^2/P), a second pass sums
        |f_i - f_bar|^2 explicitly (the two-pass algorithm), so the relative error stays at
        float64 round-off either way. ``chunk_size`` bounds the torch path's memory only.
    """
    F = F.reshape(F.shape[0], -1)
    P, D = F.shape
    rows = max(1, (1 << 18) // max(D, 1)) if chunk_size is None else max(1, int(chunk_size))
    sums = colsum_sumsq(F)
    if sums is not None:
        S1, S2 = sums[0], torch.tensor(sums[1], dtype=torch.float64)
    else:
        S1 = torch.zeros(D, dtype=torch.float64, device=F.device)
        S2 = torch.zeros((), dtype=torch.float64, device=F.device)
        ones = torch.ones(rows, dtype=torch.float64, device=F.device)
        for s in range(0, P, rows):
            C = F[s:s + rows].double()  # (r, D); a view when F is float64 already
            S1.addmv_(C.t(), ones[:C.shape[0]])
            v = C.reshape(-1)
            S2 += v @ v
    m = S1 / P
    mm = m @ m
    if mm > 0.99 * S2 / P:  # heavy cancellation: subtract the mean explicitly
        S2 = torch.zeros((), dtype=torch.float64, device=F.device)
        for s in range(0, P, rows):
            v = (F[s:s + rows].double() - m).reshape(-1)
            S2 += v @ v
        out = 2 * S2 / P
    else:
        out = 2 * (S2 / P - mm)
    return out * P / (P - 1) if exclude_diagonal else out


def _pair_chunks(F: torch.Tensor, chunk_size: int) -> Iterator[torch.Tensor]:
    """Squared distances |f_i - f_j|^2 in row chunks of shape (chunk, P), float64."""
    F = F.reshape(F.shape[0], -1).double()
    for s in range(0, F.shape[0], chunk_size):
        d = torch.cdist(F[s:s + chunk_size], F, compute_mode="donot_use_mm_for_euclid_dist")
        yield d.pow(2)


def mean_sq_distance_pairwise(F: torch.Tensor, *, exclude_diagonal: bool = False,
                              chunk_size: int = 128) -> torch.Tensor:
    """The same mean as :func:`mean_sq_distance` from explicit pairs (chunked float64 cdist)."""
    P = F.shape[0]
    total = sum(c.sum() for c in _pair_chunks(F, chunk_size))
    return total / (P * (P - 1) if exclude_diagonal else P * P)


def median_sq_distance(F: torch.Tensor, *, exclude_diagonal: bool = False,
                       chunk_size: int = 128) -> torch.Tensor:
    """Lower median of the P^2 squared distances (diagonal zeros included unless excluded)."""
    P = F.shape[0]
    vals = []
    for k, c in enumerate(_pair_chunks(F, chunk_size)):
        if exclude_diagonal:
            rows = torch.arange(c.shape[0], device=c.device) + k * chunk_size
            keep = torch.ones_like(c, dtype=torch.bool)
            keep[torch.arange(c.shape[0]), rows] = False
            c = c[keep]
        vals.append(c.reshape(-1))
    return lower_median(torch.cat(vals))


@contextlib.contextmanager
def _batch_stats(model: nn.Module):
    """BatchNorm layers use batch statistics and leave their running statistics untouched."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.training, m.track_running_stats, m.running_mean, m.running_var,
                          m.num_batches_tracked))
            m.train(True)
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    try:
        yield
    finally:
        for m, tr, trs, rm, rv, nbt in saved:
            m.train(tr)
            m.track_running_stats = trs
            m.running_mean, m.running_var, m.num_batches_tracked = rm, rv, nbt


def _sq(t: torch.Tensor) -> torch.Tensor:
    """Sum of squares as one dot product (a single pass, no squared temporary)."""
    t = t.reshape(-1)
    return t @ t


class _MeanAcc:
    """Streaming sums for the mean protocol of one layer (float64, shifted by a first mean)."""

    def __init__(self):
        self.n, self.shift, self.S1, self.S2, self.ND, self.NG = 0, None, None, 0.0, 0.0, 0.0

    def update(self, f, fd, fn):
        if self.shift is None:
            self.shift = f.mean(0)  # (D,)
            self.S1 = torch.zeros_like(self.shift)
        g = f - self.shift  # (b, D)
        self.n += f.shape[0]
        self.S1 = self.S1 + g.sum(0)
        self.S2 = self.S2 + _sq(g)
        self.ND = self.ND + _sq(fd - f)
        self.NG = self.NG + _sq(fn - f)

    def result(self, exclude_diagonal: bool):
        P = self.n
        m = self.S1 / P
        deno = 2 * (self.S2 / P - m.pow(2).sum())
        if exclude_diagonal:
            deno = deno * P / (P - 1)
        return float(deno), float(self.ND / P), float(self.NG / P)


def _flat(t: torch.Tensor, channel_mean: bool) -> torch.Tensor:
    if channel_mean and t.ndim >= 3:
        t = t.mean(1)
    return t.reshape(t.shape[0], -1).double()  # (b, D)


def _make_perturbed(X, perturbations, T, cut, interp, generator):
    if perturbations is None:
        if X.ndim != 4:
            raise ValueError(f"X must be (P, C, H, W) for the default diffeo; got {tuple(X.shape)}; "
                             "pass perturbations= for other inputs")
        disp = sample_displacement(X.shape[0], (X.shape[-2], X.shape[-1]), T, cut, generator,
                                   device=X.device)
        return deform(X, disp, interp)
    if callable(perturbations):
        return perturbations(X, generator)
    if isinstance(perturbations, torch.Tensor):
        return perturbations
    raise ValueError("perturbations must be None, a callable (X, generator) -> tau X, or a tensor")


def stability(model: nn.Module, X: torch.Tensor, *, T: float | None = None, delta: float = 1.0,
              cut: int = 3, interp: str = "linear", layers: None | str | Sequence[str] = None,
              protocol: str = "mean", noise: str = "sphere", bn_mode: str = "eval",
              compat_inplace: bool = False, channel_mean: bool = False,
              exclude_diagonal: bool = False, batch_size: int | None = None,
              concat: bool | None = None, generator: torch.Generator | None = None,
              perturbations: None | Callable | torch.Tensor = None,
              X_noisy: torch.Tensor | None = None, noise_magnitude: float | None = None,
              eps: float = 1e-10, chunk_size: int = 128, layer_source: str = "modules") -> dict:
    """Sensitivities D, G and R = D/G of a model's output (and of chosen layers).

    Parameters
    ----------
    model : nn.Module
        Its raw output (logits; never a softmax) is f.
    X : Tensor, shape (P, C, H, W) (or any (P, ...) with ``perturbations``)
        Probe inputs, on the model's device.
    T : float, optional
        Diffeo temperature; default ``typical_temperature(delta, cut, W)``.
    delta, cut, interp : diffeo settings ([I23]: 1 px, 3, "linear"); one field per image.
    layers : None, "all" or list of names
        None: output only. "all": every leaf module of ``named_modules()`` (or every kept fx
        node with ``layer_source="fx"``). Names are module paths or fx node names.
    protocol : {"mean", "median"}
        See :class:`Protocol`.
    noise : {"sphere", "rectified_mean"}
        See :class:`featlab.probes.noise.NoiseMode`; matched to tau x - x.
    bn_mode : {"eval", "batch"}
        See :class:`BNMode`. "batch" needs the whole probe set in one batch.
    compat_inplace : bool
        Quirk (default off). True captures layer outputs without cloning, as the reference's
        torch.fx extraction does (relativestability ``main.py --by_layer 1``; inferred from
        the code, spec §3.6): a node followed by ``ReLU(inplace=True)`` is then read after
        the ReLU overwrote it with its rectified values.
    channel_mean : bool
        Average layer outputs over channels (dim 1) before flattening (1D code); tensors with
        fewer than 3 dims are left as they are.
    exclude_diagonal : bool
        Leave the P zero self-distances out of the denominator (mean: factor P/(P-1)).
    batch_size : int, optional
        Probes per forward pass (memory only; the result does not depend on it in eval mode).
    concat : bool, optional
        Run x, tau x, x + eta as one 3b batch (default: True in eval mode, False in batch
        mode, where it would change the BN statistics).
    generator : torch.Generator, optional
        Draws the fields and the noise (on its device).
    perturbations : callable (X, generator) -> tau X, or a tensor tau X, optional
        Replaces the max-entropy diffeo (e.g. ``featlab.data.local_translation``).
    X_noisy : Tensor, optional
        Precomputed x + eta (skips :func:`matched_noise`).
    noise_magnitude : float, optional
        Passed to :func:`matched_noise`.
    eps : float
        Added to every denominator (reference 1e-10; the 1D code uses 1e-30).
    chunk_size : int
        Rows per cdist chunk in the median protocol (memory only).
    layer_source : {"modules", "fx"}
        See :class:`LayerSource`.

    Returns
    -------
    dict with "D", "G", "R", "deno", "nume_D", "nume_G" for the output, "layers":
    {name: same keys}, and "T", "cut", "P".

    Convention:
        Features are flattened to (P, C*H*W) and compared in float64; each layer has its own
        denominator. Denominator: mean (or torch lower median) over all P^2 ordered pairs,
        diagonal zeros included. Captured outputs are cloned (unless ``compat_inplace``). The
        model's train/eval modes and BN statistics are restored afterwards.
    """
    proto = _choice(Protocol, protocol, "protocol")
    bnm = _choice(BNMode, bn_mode, "bn_mode")
    noise = _choice(NoiseMode, noise, "noise").value
    P = X.shape[0]
    if P < 2:
        raise ValueError(f"X must hold at least 2 probes; got {P}")
    if batch_size is None:
        batch_size = P
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if bnm is BNMode.BATCH and batch_size < P:
        raise ValueError("batch_size must be >= P with bn_mode='batch' (batch statistics "
                         "depend on the batch)")
    if concat is None:
        concat = bnm is BNMode.EVAL
    if generator is None:
        generator = torch.Generator(device=X.device)
        generator.seed()
    if T is None and perturbations is None:
        T = typical_temperature(delta, cut, X.shape[-1])

    source = _choice(LayerSource, layer_source, "layer_source")
    if source is LayerSource.FX:
        from .fx_nodes import fx_feature_extractor, fx_node_names
        available = fx_node_names(model)
        leaves = available
    else:
        available = layer_names(model)
        leaves = [n for n, m in model.named_modules() if n and not list(m.children())]
    if layers is None:
        names: list[str] = []
    elif isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be None, 'all' or a list of names; got {layers!r}")
        names = leaves
    else:
        names = list(layers)
    missing = set(names) - set(available)
    if missing:
        raise ValueError(f"layers not found in the model's {source.value}: {sorted(missing)}")
    extractors: dict[tuple, nn.Module] = {}

    def forward(x: torch.Tensor, keep: list[str]):
        """Model output and {name: [captured tensors]} for one forward pass."""
        if source is LayerSource.FX:
            key = tuple(keep)
            if key not in extractors:
                extractors[key] = fx_feature_extractor(model, keep, clone=not compat_inplace)
            out, feats = extractors[key](x)
            return out, {n: [feats[n]] for n in keep}
        with capture(model, keep, clone=not compat_inplace) as cache:
            out = model(x)
        return out, cache

    with torch.no_grad():
        Xd = _make_perturbed(X, perturbations, T, cut, interp, generator)
        Xn = X_noisy if X_noisy is not None else matched_noise(
            X, Xd, generator, noise, noise_magnitude=noise_magnitude)
        Xd, Xn = Xd.to(X.device, X.dtype), Xn.to(X.device, X.dtype)

    def batches(keep: list[str]) -> Iterator[dict[str, tuple]]:
        """Per probe batch: {name: (f, fd, fn)} in float64, flattened, for ``keep`` (+ output)."""
        starts = range(0, P, batch_size)
        for s in progress(starts, desc=f"stability ({len(keep)} layers)") if len(starts) > 1 else starts:
            xs = [X[s:s + batch_size], Xd[s:s + batch_size], Xn[s:s + batch_size]]
            b = xs[0].shape[0]
            if concat:
                out, cache = forward(torch.cat(xs), keep)
                outs = list(out.split(b))
            else:
                runs = [forward(x, keep) for x in xs]
                outs = [o for o, _ in runs]
                cache = {n: [t for _, c in runs for t in c[n]] for n in keep}
            feats = {OUTPUT: tuple(_flat(o.detach(), False) for o in outs)}
            for n in keep:
                got = [t.detach() for t in cache[n]]
                if len(got) != (1 if concat else 3):
                    raise ValueError(f"layer {n!r} ran {len(got)} times per forward pass; "
                                     "only layers called once are supported")
                parts = got[0].split(b) if concat else got
                feats[n] = tuple(_flat(t, channel_mean) for t in parts)
            yield feats

    ctx = eval_mode(model)
    with torch.no_grad(), ctx, (_batch_stats(model) if bnm is BNMode.BATCH else contextlib.nullcontext()):
        results: dict[str, tuple[float, float, float]] = {}
        if proto is Protocol.MEAN:
            accs = {n: _MeanAcc() for n in [OUTPUT] + names}
            for feats in batches(names):
                for n, (f, fd, fn) in feats.items():
                    accs[n].update(f, fd, fn)
            results = {n: a.result(exclude_diagonal) for n, a in accs.items()}
        else:
            # One layer at a time: the median needs the whole (P, D) features of a layer.
            for n in [OUTPUT] + names:
                parts = [[], [], []]
                for feats in batches([] if n == OUTPUT else [n]):
                    for lst, t in zip(parts, feats[n]):
                        lst.append(t)
                f, fd, fn = (torch.cat(p) for p in parts)
                deno = median_sq_distance(f, exclude_diagonal=exclude_diagonal, chunk_size=chunk_size)
                nd = lower_median((fd - f).pow(2), dim=0).sum()
                ng = lower_median((fn - f).pow(2), dim=0).sum()
                results[n] = (float(deno), float(nd), float(ng))
                del f, fd, fn, parts

    def pack(deno, nd, ng):
        D, G = nd / (deno + eps), ng / (deno + eps)
        return {"D": D, "G": G, "R": D / G if G > 0 else float("nan"), "deno": deno,
                "nume_D": nd, "nume_G": ng}

    out = pack(*results[OUTPUT])
    out["layers"] = {n: pack(*results[n]) for n in names}
    out.update(T=T, cut=cut, P=P)
    return out
