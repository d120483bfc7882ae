"""The three papers' lenses on any model, each with the baseline that could refute it.

A *lens* composes featlab's probes into the numbers one paper looks at:

======== ===================================================== ==================================
lens     what (per checkpoint)                                  baselines beside every number
======== ===================================================== ==================================
rf       first conv/linear layer: filters, IPR per filter       3/(D+2) (iid Gaussian), the init
         (:func:`ipr`), count above ``factor``·3/(D+2)           net's IPRs
nfa      per ``nn.Linear``: ρ(WᵀW, G^α), G = WᵀKW the AGOP       untrained net ρ(W₀ᵀW₀, G₀^α), init
         w.r.t. the layer input (:mod:`.output_gram`)           ρ(W₀ᵀW₀, WᵀW), fresh ρ(W_fᵀW_f, WᵀW),
                                                                the two structural nulls of cnfa
cnfa     per conv: ρ(W̄ᵀW̄, G^α), G the patch-AGOP               :func:`cnfa`'s baselines (untrained
         (:func:`cnfa`)                                         net, init, fresh init = i_val) and
                                                                structural nulls (trained W̄ with
                                                                K₀; K's spectrum, Haar eigvecs)
dgr      D, G, R of the output and per layer                    the same net with shuffled input
         (:func:`stability`, mean protocol)                     channels, and the init net
spectrum per conv (square kernels): normalised γ_λ on the       the init net's γ_λ; 1/F² (iid
         grid Laplacian (:func:`laplacian_spectrum`)            kernels) at λ = 0
======== ===================================================== ==================================

"init" is the model at its initialisation: the true one when known (``init``: a weights file, a
step-0 checkpoint, or the state a :class:`Tracker` saw first), else an independent fresh init
from the model's factory (``fresh``; ``init_kind`` says which one the baselines use). With a
fresh init, ρ(CNFM_fresh, CNFM) is the CNFA reference's ``i_val`` (``rho_fresh_trained``).

Cost and memory, per checkpoint (n probe images, B = ``batch_size``, c model outputs):

- rf, spectrum: the weights only; negligible.
- nfa: 1 forward + c backwards (to the earliest linear layer) per batch; memory one batch of
  activations plus out² per layer; the (in × in) matrices are formed on at most ``max_dim``
  coordinates (a seeded random subset when ``in`` is larger, labelled ``subsampled``).
- cnfa: 1 forward + c backwards per batch for all conv layers at once; memory one batch of
  activations (with their graph) plus k_out² per layer; at α = 1 (the default) the correlations
  come from k_out × k_out and k_out × D products, never the D × D patch-AGOP (α ≠ 1 forms it,
  float64, one layer at a time; 170 MB for a 512-channel 3×3 layer). The
  structural nulls add, per layer and draw (``agop.n_null_draws``; twice with ``centered``),
  one k_out × k_out QR and k_out²·D products (no D × D matrix at α = 1).
- nfa nulls: one thin SVD of K^½W per draw and layer.
- dgr: 3 forwards per image per model (trained, shuffled, and the init once); the mean
  protocol streams batches whose captured features (3·b × Σ_ℓ layer size × 20 bytes) fit
  ``max_feature_mb`` (b shrinks below ``batch_size`` for wide layers); the median protocol
  holds all n images of one layer at a time; ``bn_init="batch"`` needs all n images in one
  batch.
- With c above ``sketch_above`` the AGOP lenses use an unbiased Gaussian sketch of the
  outputs (``n_sketch`` backwards instead of c), labelled ``sketched``.

Convention:
    Layers by ``named_modules()`` name, automatic choices as in :mod:`.layer_select`. A
    number that cannot be computed is ``None`` (never NaN). Every probe runs in eval mode and
    restores the model's modes; the global RNG is not touched (all draws come from the
    generators the caller passes, one stream per lens, so trained, shuffled and init nets see
    the same diffeomorphisms and noise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..config import F, sub
from ._correlation import METRICS

__all__ = ["LENSES", "RFSettings", "NFASettings", "CNFASettings", "DGRSettings", "SpectrumSettings",
           "AGOPSettings", "LensSettings", "LensSuite", "finite_or_none"]

LENSES = ("rf", "nfa", "cnfa", "dgr", "spectrum")


# ---------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class RFSettings:
    factor: float = F(5.0, "a filter counts as localised when IPR > factor·3/(D+2) (featlab's threshold)", gt=0)
    max_filters: int = F(32, "filters drawn in the receptive-field figure (memory/figure size only)",
                         ge=1, semantic=False)


@dataclass(frozen=True)
class AGOPSettings:
    outputs: str = F("auto", "AGOP over all model outputs, an unbiased Gaussian sketch, or auto "
                     "(sketch when the model has more than sketch_above outputs)",
                     choices=("auto", "all", "sketch"))
    sketch_above: int = F(64, "outputs='auto' sketches above this many model outputs", ge=1)
    n_sketch: int = F(16, "Gaussian output probes of the sketch (backwards per batch)", ge=1,
                      cost="time ∝ n_sketch")
    chunk_size: int | None = F(None, "cotangents per batched backward (memory only; None: one at a time)", ge=1)
    n_null_draws: int = F(20, "Haar-random eigenbases of the structural null 'K's spectrum on random "
                          "eigenvectors' (nfa and cnfa; featlab issue 14)", ge=1,
                          cost="nfa: one SVD of K^½W per draw; cnfa: k×D products per draw")


@dataclass(frozen=True)
class NFASettings:
    alpha: float = F(0.5, "power on the AGOP, WᵀW ∝ G^α (Science 2024: α = 1/2)", gt=0, tag="[paper]")
    metric: str = F("pearson", "matrix correlation (see featlab.probes.correlation)", choices=METRICS)
    max_dim: int = F(2048, "layers with more inputs are compared on this many seeded random "
                     "coordinates (memory max_dim² instead of in²)", ge=2, cost="memory ∝ max_dim²")


@dataclass(frozen=True)
class CNFASettings:
    alpha: float = F(1.0, "power on the patch-AGOP, W̄ᵀW̄ ∝ G^α (paper: α = 1)", gt=0, tag="[paper]")
    metric: str = F("pearson", "matrix correlation (ImageNet scripts: pearson)", choices=METRICS)
    centered: bool = F(True, "also the centred variant (W−W₀) when the true init is known")
    selection: str = F("all", "conv layers: all (every Conv2d with groups=1, dilation=1, called once) or "
                       "reference (the CNFA reference's choice: a ResNet's block conv1 layers, every conv "
                       "otherwise)", choices=("all", "reference"), tag="[code]")
    drop_bias: bool = F(False, "reference quirk: leave the conv bias out of the patch network (convrfm "
                        "PatchConvLayer); changes G on biased layers", quirk=True, tag="[code]")


@dataclass(frozen=True)
class DGRSettings:
    delta: float = F(1.0, "typical diffeo displacement δ in pixels (sets the temperature)", gt=0, tag="[code]")
    cut: int = F(3, "diffeo high-frequency cut-off c", ge=2, tag="[code]")
    interp: str = F("linear", "warp interpolation", choices=("linear", "nearest", "gaussian"), tag="[code]")
    protocol: str = F("mean", "mean ([I23], streamed) or median ([N21], all images of a layer at once)",
                      choices=("mean", "median"))
    shuffle: bool = F(True, "also the net with randomly permuted input channels (channel pooling destroyed)")
    bn_init: str = F("eval", "BatchNorm of the init net: eval (running statistics, memory ∝ batch) or "
                     "batch (batch statistics over all probe images as the reference does at init; "
                     "memory ∝ n_images)", choices=("eval", "batch"))
    max_feature_mb: float = F(256.0, "the mean protocol's batch is shrunk so that the captured features of one "
                              "forward (x, τx, x+η of every probed layer: float32 capture, float64 copy and "
                              "one float64 temporary) stay under this many MB (memory only; the result does "
                              "not depend on it)", gt=0, semantic=False)


@dataclass(frozen=True)
class SpectrumSettings:
    normalise: bool = F(True, "divide γ by its sum (the reference reports raw γ)")


@dataclass(frozen=True)
class LensSettings:
    rf: RFSettings = sub(RFSettings, "first-layer receptive fields")
    agop: AGOPSettings = sub(AGOPSettings, "AGOP computation shared by nfa and cnfa")
    nfa: NFASettings = sub(NFASettings, "NFA of linear layers")
    cnfa: CNFASettings = sub(CNFASettings, "CNFA of conv layers")
    dgr: DGRSettings = sub(DGRSettings, "D, G, R sensitivities")
    spectrum: SpectrumSettings = sub(SpectrumSettings, "filter Laplacian spectra")


def finite_or_none(v) -> float | None:
    """``float(v)``, or None for None/NaN/inf (summaries never hold NaN)."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _clean(v):
    """Floats through :func:`finite_or_none`, recursively in dicts (e.g. CNFA ``variants``)."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return finite_or_none(v) if isinstance(v, float) else v


def _mean(vals: Iterable) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


# ---------------------------------------------------------------------------------- the suite
@dataclass
class _Plan:
    lenses: list[str]
    skipped: dict[str, str]
    notes: dict[str, str] = field(default_factory=dict)
    rf_layer: str | None = None
    linears: list[str] = field(default_factory=list)
    convs: list[str] = field(default_factory=list)
    spectrum: list[str] = field(default_factory=list)
    dgr_layers: list[str] = field(default_factory=list)
    dgr_source: str = "modules"
    dgr_names: dict[str, list[str]] = field(default_factory=dict)


class LensSuite:
    """Plans and computes the lenses for one architecture on fixed probe inputs.

    Parameters
    ----------
    model : nn.Module
        The architecture (any checkpoint of it): used to choose layers.
    X : Tensor (n, ...)
        Probe inputs, already on the model's device and dtype (:func:`prepare_inputs`).
    y : Tensor (n,), optional
        Labels: adds the accuracy on the probe set.
    lenses : iterable of str
        Names from :data:`LENSES`, or ``("auto",)``: every lens that applies.
    layers : iterable of str
        Restrict every lens to these ``named_modules()`` names (empty: automatic).
    init : nn.Module, optional
        The model at its true initialisation.
    fresh : nn.Module, optional
        An independent fresh initialisation of the architecture; the baselines use it when
        ``init`` is None (``init_kind`` = "true", "fresh" or "none").
    output : str, optional
        Output selector (:func:`featlab.probes.adapt.select_output`).
    generator : callable (stream name) -> torch.Generator
        Fresh generator per stream; called again for every model so draws are paired.
    """

    def __init__(self, model: nn.Module, X: torch.Tensor, *, y: torch.Tensor | None = None,
                 lenses: Iterable[str] = ("auto",), layers: Iterable[str] = (),
                 init: nn.Module | None = None, fresh: nn.Module | None = None, output: str | None = None,
                 settings: LensSettings | None = None, batch_size: int = 64,
                 generator: Callable[[str], torch.Generator] | None = None):
        from ..utils import make_generator
        from .adapt import output_selected
        from .hooks import eval_mode
        from .layer_select import call_counts

        self.X, self.y, self.output = X, y, output
        self.s = settings or LensSettings()
        self.batch_size = int(batch_size)
        self.init, self.fresh = init, fresh
        self.base = init if init is not None else fresh  # the untrained net of every baseline
        self.init_kind = "true" if init is not None else "fresh" if fresh is not None else "none"
        self.generator = generator or (lambda stream: make_generator(0, stream, X.device))
        with output_selected(model, output):
            self.counts = call_counts(model, X[:2])
            with torch.no_grad(), eval_mode(model):
                out = model(X[:2])
        self.n_outputs = int(out.reshape(out.shape[0], -1).shape[1])
        self.plan = self._plan(model, list(lenses), list(layers))
        self._cnfa_cache: dict = {}
        self._dgr_numel: int | None = None
        self._baseline: dict | None = None

    # ------------------------------------------------------------------------------ planning
    def _plan(self, model, lenses, layers) -> _Plan:
        from .layer_select import auto_layers, fx_layer_map

        mods = dict(model.named_modules())
        unknown = [n for n in layers if n not in mods]
        if unknown:
            raise ValueError(f"layers not in the model: {unknown}; available: "
                             f"{', '.join(n for n in mods if n)}")
        auto = lenses == ["auto"]
        bad = [n for n in lenses if n not in LENSES] if not auto else []
        if bad:
            raise ValueError(f"unknown lenses {bad}; allowed: auto, {', '.join(LENSES)}")
        wanted = list(LENSES) if auto else lenses
        within = layers or None
        c = self.counts
        p = _Plan(lenses=[], skipped={})
        image = self.X.ndim == 4

        def skip(name, why):
            p.skipped[name] = why

        reused = [n for n in (layers or []) if c.get(n, 0) != 1]
        first = [n for n, m in mods.items() if n and isinstance(m, (nn.Conv2d, nn.Linear)) and c.get(n, 0) >= 1
                 and (within is None or n in within)]
        p.rf_layer = first[0] if first else None
        p.linears = auto_layers(model, "linears", c, within)
        p.convs = auto_layers(model, "convs", c, within)
        if self.s.cnfa.selection == "reference":
            from ._cnfa import cnfa_reference_layers

            ref = set(cnfa_reference_layers(model))
            p.convs = [n for n in p.convs if n in ref]
        p.spectrum = [n for n in auto_layers(model, "convs", None, within)
                      if mods[n].kernel_size[0] == mods[n].kernel_size[1] >= 2]
        for lens in wanted:
            if lens == "rf" and p.rf_layer is None:
                skip(lens, "no conv or linear layer runs in the forward pass")
            elif lens == "nfa" and not p.linears:
                skip(lens, "no nn.Linear called once per forward")
            elif lens == "cnfa" and not p.convs:
                skip(lens, "no nn.Conv2d (groups=1, dilation=1) called once per forward")
            elif lens == "cnfa" and not image:
                skip(lens, "inputs are not images (N, C, H, W)")
            elif lens == "spectrum" and not p.spectrum:
                skip(lens, "no conv layer with a square kernel of size >= 2")
            elif lens == "dgr" and not (image and min(self.X.shape[-2:]) >= 4):
                skip(lens, "inputs are not images (N, C, H, W) of at least 4×4 pixels")
            elif lens == "dgr" and self.X.shape[0] < 2:
                skip(lens, "needs at least 2 probe images")
            else:
                p.lenses.append(lens)
        if "dgr" in p.lenses:
            names = list(layers) if layers else auto_layers(model, "blocks", None)
            names = [n for n in names if c.get(n, 0) >= 1]
            p.dgr_layers = names
            if any(c.get(n, 0) != 1 for n in names):
                # a module called several times: hooks cannot tell its calls apart -> fx nodes
                try:
                    p.dgr_names = fx_layer_map(model, names)
                    p.dgr_source = "fx"
                    many = [n for n in names if c.get(n, 0) > 1]
                    p.notes["dgr"] = (f"{', '.join(many)} run several times per forward: read by torch.fx nodes "
                                      f"({', '.join(f for n in many for f in p.dgr_names[n])})")
                except ValueError as e:
                    keep = [n for n in names if c.get(n, 0) == 1]
                    skip("dgr_layers", f"{', '.join(n for n in names if n not in keep)} run several times per "
                                       f"forward and {e}; measured only {', '.join(keep) or 'the output'}")
                    p.dgr_layers = keep
            if p.dgr_source == "modules":
                p.dgr_names = {n: [n] for n in p.dgr_layers}
        if reused:
            p.skipped.setdefault("layers", f"{', '.join(reused)} run {[c.get(n, 0) for n in reused]} times per "
                                           "forward: read by torch.fx nodes in dgr, left out of nfa/cnfa")
        return p

    # ------------------------------------------------------------------------------ helpers
    def _cpu_generator(self, stream: str) -> torch.Generator:
        """A CPU generator for ``stream`` (seeded from the stream's generator when that one is not
        on the CPU), for draws that must happen on the CPU (random eigenbases)."""
        g = self.generator(stream)
        if g.device.type == "cpu":
            return g
        seed = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device))
        return torch.Generator().manual_seed(seed)

    def _agop_kw(self) -> dict:
        a = self.s.agop
        sketch = a.outputs == "sketch" or (a.outputs == "auto" and self.n_outputs > a.sketch_above)
        return dict(outputs="sketch" if sketch else "all", n_sketch=a.n_sketch if sketch else None,
                    chunk_size=a.chunk_size, batch_size=self.batch_size)

    @property
    def sketched(self) -> bool:
        return self._agop_kw()["outputs"] == "sketch"

    # ------------------------------------------------------------------------------ lenses
    def _rf(self, model) -> dict:
        from ._ipr import ipr, ipr_baseline

        m = model.get_submodule(self.plan.rf_layer)
        W = m.weight.detach().to("cpu", torch.float64)
        rows = W.reshape(W.shape[0], -1)  # (filters, D)
        D = rows.shape[1]
        v = ipr(rows)  # (filters,)
        base = ipr_baseline(D)
        thr = self.s.rf.factor * base
        thr = thr if thr < 1 else None  # IPR <= 1: with few inputs (a 3×3 kernel) nothing can pass
        return {"layer": self.plan.rf_layer, "D": D, "n_filters": int(rows.shape[0]),
                "ipr": [finite_or_none(x) for x in v.tolist()],
                "ipr_mean": finite_or_none(v.nanmean()), "ipr_median": finite_or_none(v.nanmedian()),
                "n_localised": int((v > thr).sum()) if thr is not None else None, "baseline": base,
                "threshold": thr,
                "weights": W[: self.s.rf.max_filters].numpy()}

    def _nfa(self, model) -> dict:
        from ._correlation import correlation
        from .adapt import frozen_params, output_selected
        from .output_gram import linear_output_grams

        s = self.s.nfa
        kw = self._agop_kw()
        with output_selected(model, self.output), frozen_params(model):
            Ks, _ = linear_output_grams(model, self.plan.linears, self.X,
                                        generator=self.generator("nfa-sketch"), **kw)
        out = {}
        for name in self.plan.linears:
            W = model.get_submodule(name).weight.detach().to("cpu", torch.float64)  # (out, in)
            S = self._coords(name, W.shape[1])
            A = W[:, S].T @ W[:, S]
            out[name] = {"rho": finite_or_none(correlation(A, _gram_power(W, Ks[name], s.alpha, S), s.metric)),
                         "n_coords": int(len(S)), "subsampled": len(S) < W.shape[1], "K": Ks[name], "S": S}
        return out

    def _coords(self, name: str, d: int) -> torch.Tensor:
        if d <= self.s.nfa.max_dim:
            return torch.arange(d)
        g = self.generator(f"nfa-coords-{name}")
        return torch.randperm(d, generator=g, device=g.device).cpu()[: self.s.nfa.max_dim].sort().values

    def _cnfa(self, model) -> dict:
        import contextlib

        from ._cnfa import cnfa
        from .adapt import frozen_params, output_selected

        s = self.s.cnfa
        with contextlib.ExitStack() as stack:
            stack.enter_context(frozen_params(model, self.init, self.fresh))
            for m in (model, self.init, self.fresh):
                if m is not None:
                    stack.enter_context(output_selected(m, self.output))
            rows = cnfa(model, self.X, layers=self.plan.convs, init_state=self.init, fresh_model=self.fresh,
                        metric=s.metric, alpha=s.alpha, centered=s.centered and self.init is not None,
                        generator=self.generator("cnfa-sketch"), cache=self._cnfa_cache, drop_bias=s.drop_bias,
                        nulls=True, n_null_draws=self.s.agop.n_null_draws,
                        null_generator=self._cpu_generator("cnfa-nulls"), **self._agop_kw())
        return {r.layer: {k: _clean(v) for k, v in r.to_dict().items() if k != "layer"} for r in rows}

    def _dgr_one(self, model, bn_mode: str = "eval") -> dict:
        from ._stability import stability
        from .adapt import output_selected, traced_with_output

        s = self.s.dgr
        names = [f for n in self.plan.dgr_layers for f in self.plan.dgr_names[n]]
        kw = dict(delta=s.delta, cut=s.cut, interp=s.interp, protocol=s.protocol, layers=names or None,
                  bn_mode=bn_mode, batch_size=None if bn_mode == "batch" else self._dgr_batch(model, names),
                  generator=self.generator("dgr"))
        if self.plan.dgr_source == "fx":
            res = stability(traced_with_output(model, self.output), self.X, layer_source="fx", **kw)
        else:
            with output_selected(model, self.output):
                res = stability(model, self.X, **kw)
        pick = lambda r: {q: finite_or_none(r[q]) for q in ("D", "G", "R")}  # noqa: E731
        return {"output": pick(res), "layers": {f: pick(res["layers"][f]) for f in names}, "T": res["T"]}

    def _dgr_batch(self, model, names: list[str]) -> int:
        """``batch_size``, shrunk so that 3·b·Σ_ℓ numel_ℓ·20 bytes ≤ ``max_feature_mb`` (mean protocol)."""
        if self.s.dgr.protocol != "mean" or not names:
            return self.batch_size
        if self._dgr_numel is None:
            from .adapt import output_selected, traced_with_output
            from .layer_select import feature_numel

            if self.plan.dgr_source == "fx":
                self._dgr_numel = sum(feature_numel(traced_with_output(model, self.output), self.X[:1], names,
                                                    "fx").values())
            else:
                with output_selected(model, self.output):
                    self._dgr_numel = sum(feature_numel(model, self.X[:1], names).values())
        # bytes per image: x, τx, x+η × (float32 capture + float64 copy + one float64 temporary)
        per_image = 3 * 20 * max(1, self._dgr_numel)
        return max(1, min(self.batch_size, int(self.s.dgr.max_feature_mb * 2**20 // per_image)))

    def _dgr(self, model) -> dict:
        from .shuffle import shuffle_channels

        out = {"trained": self._dgr_one(model)}
        if self.s.dgr.shuffle and any(p.ndim >= 3 for p in model.parameters()):
            out["shuffled"] = self._dgr_one(shuffle_channels(model, self.generator("shuffle")))
        return out

    def _spectrum(self, model) -> dict:
        from .spectrum import laplacian_spectrum

        out = {}
        for name in self.plan.spectrum:
            W = model.get_submodule(name).weight
            sp = laplacian_spectrum(W, normalise=self.s.spectrum.normalise)
            F2 = W.shape[-1] ** 2
            out[name] = {"eigenvalues": sp.eigenvalues.numpy(), "gamma": sp.gamma.numpy(),
                         "gamma0": finite_or_none(sp.gamma[0]),
                         "iid_gamma0": 1.0 / F2 if self.s.spectrum.normalise else None}
        return out

    def _accuracy(self, model) -> float | None:
        from .adapt import output_selected
        from .hooks import eval_mode

        if self.y is None or int(self.y.min()) < 0:  # no labels (a flat image folder labels -1)
            return None
        correct = 0
        with torch.no_grad(), eval_mode(model), output_selected(model, self.output):
            for i in range(0, self.X.shape[0], self.batch_size):
                o = model(self.X[i:i + self.batch_size])
                o = o.reshape(o.shape[0], -1)
                if o.shape[1] <= int(self.y.max()):
                    return None
                correct += int((o.argmax(1).cpu() == self.y[i:i + self.batch_size].cpu()).sum())
        return correct / self.X.shape[0]

    # ------------------------------------------------------------------------------ public
    def baseline(self) -> dict:
        """The untrained net's numbers (computed once): rf, nfa, dgr and spectrum; {} without one."""
        if self._baseline is not None:
            return self._baseline
        b: dict = {}
        if self.base is not None:
            init, p = self.base, self.plan
            if "rf" in p.lenses:
                b["rf"] = self._rf(init)
            if "nfa" in p.lenses:
                b["nfa"] = self._nfa(init)
            if "dgr" in p.lenses:
                b["dgr"] = {"init": self._dgr_one(init, self.s.dgr.bn_init)}
            if "spectrum" in p.lenses:
                b["spectrum"] = self._spectrum(init)
        self._baseline = b
        return b

    def measure(self, model: nn.Module) -> dict:
        """Every planned lens on ``model`` (same architecture), with the init baselines merged.

        Returns a nested dict: ``{"rf": {...}, "nfa": {layer: {...}}, "cnfa": {layer: {...}},
        "dgr": {"trained", "shuffled", "init"}, "spectrum": {layer: {...}}, "accuracy"}``.
        """
        from ._correlation import correlation

        p, b = self.plan, self.baseline()
        r: dict = {"accuracy": self._accuracy(model)}
        if "rf" in p.lenses:
            r["rf"] = self._rf(model)
            if "rf" in b:
                r["rf"]["init"] = {k: b["rf"][k] for k in ("ipr", "ipr_mean", "ipr_median", "n_localised")}
        if "nfa" in p.lenses:
            nf = self._nfa(model)
            s = self.s.nfa
            for name, v in nf.items():
                S, K = v.pop("S"), v.pop("K")
                W = model.get_submodule(name).weight.detach().to("cpu", torch.float64)[:, S]
                v["rho_untrained"] = b["nfa"][name]["rho"] if "nfa" in b else None
                for key, ref in (("rho_init_trained", self.init), ("rho_fresh_trained", self.fresh)):
                    W0 = ref.get_submodule(name).weight.detach().to("cpu", torch.float64)[:, S] if ref else None
                    v[key] = finite_or_none(correlation(W0.T @ W0, W.T @ W, s.metric)) if ref else None
                Wfull = model.get_submodule(name).weight.detach().to("cpu", torch.float64)
                v.update(_nfa_nulls(Wfull, K, b["nfa"][name]["K"] if "nfa" in b else None, s.alpha, S, s.metric,
                                    self.s.agop.n_null_draws, self._cpu_generator(f"nfa-nulls-{name}")))
            r["nfa"] = nf
        if "cnfa" in p.lenses:
            r["cnfa"] = self._cnfa(model)
        if "dgr" in p.lenses:
            r["dgr"] = {**self._dgr(model), **b.get("dgr", {})}
        if "spectrum" in p.lenses:
            r["spectrum"] = self._spectrum(model)
            for name, v in r["spectrum"].items():
                if "spectrum" in b:
                    v["gamma_init"] = b["spectrum"][name]["gamma"]
                    v["gamma0_init"] = b["spectrum"][name]["gamma0"]
        return r


def _nfa_nulls(W: torch.Tensor, K: torch.Tensor, K0: torch.Tensor | None, alpha: float, S: torch.Tensor,
               metric: str, n_draws: int, g: torch.Generator) -> dict:
    """The CNFA issue's structural nulls for a linear layer (G = WᵀKW as for a conv):
    ``null_init_K`` = ρ(WᵀW, (WᵀK₀W)^α) with the untrained net's K₀, and ``null_random_eigvecs``
    = mean over ``n_draws`` Haar-random Q of ρ(WᵀW, (WᵀQΛQᵀW)^α), Λ the eigenvalues of K
    (clipped at 0); on the coordinates S, through :func:`_gram_power` (no in × in eigh)."""
    from ._cnfa import _haar
    from ._correlation import correlation

    A = W[:, S].T @ W[:, S]
    init_K = finite_or_none(correlation(A, _gram_power(W, K0, alpha, S), metric)) if K0 is not None else None
    lam = torch.linalg.eigvalsh(K).clamp_min(0)  # (out,)
    draws = []
    for _ in range(n_draws):
        Q = _haar(len(lam), g)
        draws.append(correlation(A, _gram_power(W, (Q * lam) @ Q.T, alpha, S), metric))
    v = torch.tensor(draws, dtype=torch.float64)
    ok = v[torch.isfinite(v)]
    return {"null_init_K": init_K, "null_random_eigvecs": finite_or_none(ok.mean()) if len(ok) else None,
            "null_random_eigvecs_sd": finite_or_none(ok.std()) if len(ok) > 1 else None}


def _gram_power(W: torch.Tensor, K: torch.Tensor, alpha: float, S: torch.Tensor) -> torch.Tensor:
    """(G^α)_SS for G = Wᵀ K W (in × in), in O(out²·in) instead of an in × in eigh.

    G = BᵀB with B = K^½ W (out × in, K^½ by eigh with negative eigenvalues clipped); with
    the thin SVD B = UΣVᵀ, G^α = V Σ^{2α} Vᵀ (its zero eigenvalues stay 0, as
    :func:`matrix_power_psd` clips them), so the S-block is V_S Σ^{2α} V_Sᵀ.
    """
    from ._nfa import matrix_power_psd

    if alpha == 1:
        return W[:, S].T @ K @ W[:, S]
    B = matrix_power_psd(K, 0.5) @ W  # (out, in)
    _, sig, Vh = torch.linalg.svd(B, full_matrices=False)  # Vh: (r, in)
    VS = Vh[:, S].T  # (|S|, r)
    return (VS * sig.pow(2 * alpha)) @ VS.T
