"""probe: the three papers' lenses on any model and any checkpoint (issue 16).

Methods. A model is built from its source (a zoo name or the user's factory: see
:mod:`featlab.models.source`, which *runs the user's code*), then each checkpoint file is loaded
in turn (``torch.load(weights_only=True)``). On ``data.n_images`` probe images (a seeded subset
of a built-in set, a CIFAR archive, a folder of JPEG/PNG images, or an ``.npz`` of inputs read
without pickle) the lenses of :mod:`featlab.probes.lenses` are measured on every checkpoint,
each next to its baseline: first-layer receptive fields and their IPR against 3/(D+2) (Ingrosso
& Goldt 2022), the NFA of linear layers and the CNFA of conv layers against the untrained net,
the init and the structural nulls of featlab issue 14 (Beaglehole et al. 2023), D, G, R of the
output and per layer against channel-shuffled and init nets, and filter Laplacian spectra
against init (Petrini et al. 2021, Tomasini et al. 2023). With several checkpoints every lens is
plotted against the checkpoint's step or epoch.

The init baseline is the true init when known (``model.init_weights``, or a first checkpoint
that records step 0), else an independent fresh init from the factory (``model.fresh_init``).

The model source and the SHA-256 of every weights file are part of the config (so of the run
hash: different weights, different run); they are filled in by :func:`resolve` before the run
directory is chosen, which also builds the model and loads every checkpoint once, so a bad
source, factory or weights file is a one-line error with nothing written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, ExperimentConfig, F, sub
from ..probes.lenses import (
    LENSES,
    AGOPSettings,
    CNFASettings,
    DGRSettings,
    LensSettings,
    NFASettings,
    RFSettings,
    SpectrumSettings,
)
from .registry import Claim, Experiment, register

__all__ = ["ProbeConfig", "ModelConfig", "DataConfig", "resolve", "run", "tiny", "default"]

NAME = "probe"
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "folder", "npz", "tensor")
_SHAPES = {"digits": (1, 8, 8, 10), "mnist": (1, 28, 28, 10), "fashion_mnist": (1, 28, 28, 10),
           "cifar10": (3, 32, 32, 10), "cifar100": (3, 32, 32, 100)}


@dataclass(frozen=True)
class ModelConfig:
    source: str = F("zoo:vanilla", "zoo:NAME, path/to/file.py:FACTORY or package.module:FACTORY; a "
                    "factory is the user's code and is executed")
    kwargs: tuple[str, ...] = F((), "factory keyword arguments, name=value (Python literals); zoo models "
                                "get in_channels, num_classes and input_size from the data unless given",
                                length=(0, None))
    weights: tuple[str, ...] = F((), "checkpoint files or globs, read with torch.load(weights_only=True); "
                                 "several give a trajectory; empty: the model as built (seeded)", semantic=False,
                                 length=(0, None))
    weights_sha256: tuple[str, ...] = F((), "SHA-256 of each resolved weights file: filled in before the run "
                                        "(part of the run hash); set it to pin the files", length=(0, None))
    weights_key: str | None = F(None, "key of the dict wrapping the state dict (None: the file is a state dict, "
                                "or one of state_dict/model_state_dict/model/net)")
    weights_prefix: str = F("", "prefix stripped from state-dict keys (e.g. 'model.' for Lightning checkpoints)")
    strict: bool = F(True, "load_state_dict(strict=...): every key must match")
    init_weights: str | None = F(None, "weights file of the model at its initialisation (the true init)",
                                 semantic=False)
    init_sha256: str = F("", "SHA-256 of init_weights (filled in before the run)")
    fresh_init: bool = F(True, "also build an independent fresh init from the factory: the baselines' untrained "
                         "net when the true init is unknown, and the CNFA reference's i_val")
    output: str | None = F(None, "output selector for models that return a dict/tuple: a dotted path of keys, "
                           "attributes or indices (logits, 0, out.logits)")
    source_sha256: str = F("", "SHA-256 of the factory file (file sources; filled in before the run)")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = F("digits", "probe images: a built-in set (digits ships with scikit-learn; the others are "
                     "local archives under root), folder (JPEG/PNG files, flat or in class sub-folders), npz "
                     "(root = the .npz file), or tensor (inputs handed over in Python: featlab.probes.Tracker "
                     "only)", choices=DATASETS)
    root: str | None = F(None, "folder holding the archive, the image folder, or the .npz file; None: $FEATLAB_DATA")
    split: str = F("test", "which split the probe images come from (npz: the whole file)", choices=("test", "train"))
    n_images: int = F(256, "probe images (a seeded random subset)", ge=2, cost="time and memory ∝ n_images")
    input_size: int | None = F(None, "resize images (bilinear) to input_size² pixels; None: as stored (folder: "
                               "the centre-crop side, None: 224 as the ImageNet reference)", ge=4)
    resize: int = F(256, "folder: the shorter side is resized to this before the centre crop (reference: 256)",
                    ge=4, tag="[code]")
    normalise: str = F("none", "imagenet: standardise with the ImageNet mean/std (the reference's transform "
                       "for ImageNet weights); none: as loaded", choices=("none", "imagenet"))
    standardise: bool = F(False, "standardise channels with the training split's mean/std (npz: the probe "
                          "images' own)")
    mean: tuple[float, ...] = F((), "per-channel mean subtracted after loading (with std; overrides standardise)",
                                   length=(0, None))
    std: tuple[float, ...] = F((), "per-channel std divided by after loading", gt=0, length=(0, None))
    x_key: str = F("x", "npz: array of inputs")
    y_key: str = F("y", "npz: array of integer labels (optional in the file)")


@dataclass(frozen=True)
class ProbeConfig(ExperimentConfig):
    name: str = F("", "label of the run (part of the hash): tells apart runs of one model and data")
    model: ModelConfig = sub(ModelConfig, "model source and checkpoints")
    data: DataConfig = sub(DataConfig, "probe inputs")
    lenses: tuple[str, ...] = F(("auto",), "lenses to compute: auto (every one that applies) or some of "
                                + ", ".join(LENSES))
    layers: tuple[str, ...] = F((), "restrict the lenses to these named_modules() names (empty: automatic: "
                                "every conv/linear, and the block outputs for dgr)", length=(0, None))
    batch_size: int = F(64, "images per forward pass (memory only)", ge=1, semantic=False)
    rf: RFSettings = sub(RFSettings, "first-layer receptive fields")
    agop: AGOPSettings = sub(AGOPSettings, "AGOP computation (nfa, cnfa)")
    nfa: NFASettings = sub(NFASettings, "NFA of linear layers")
    cnfa: CNFASettings = sub(CNFASettings, "CNFA of conv layers")
    dgr: DGRSettings = sub(DGRSettings, "D, G, R")
    spectrum: SpectrumSettings = sub(SpectrumSettings, "filter Laplacian spectra")

    def check(self) -> None:
        super().check()
        from ..models.source import SourceError, parse_kwargs, parse_source

        if self.lenses != ("auto",) and (not self.lenses or any(x not in LENSES for x in self.lenses)):
            raise ConfigError("lenses", "allowed: auto, or a list of " + ", ".join(LENSES), self.lenses)
        src = self.model.source
        if not src.startswith("live:"):
            try:
                s = parse_source(src)
                parse_kwargs(self.model.kwargs)
            except SourceError as e:
                field = "model.kwargs" if "argument" in str(e) else "model.source"
                raise ConfigError(field, str(e)) from None
            if s.kind == "file" and not s.file.is_file():
                raise ConfigError("model.source", f"factory file not found: {str(s.file)!r}")
        if self.model.init_weights is not None and not os.path.isfile(os.path.expanduser(self.model.init_weights)):
            raise ConfigError("model.init_weights", "file not found", self.model.init_weights)
        d = self.data
        if len(d.mean) != len(d.std):
            raise ConfigError("data.std", f"needs one value per entry of data.mean ({len(d.mean)})", d.std)
        root = d.root if d.root is not None else os.environ.get("FEATLAB_DATA")
        if d.dataset == "tensor":
            if not src.startswith("live:"):
                raise ConfigError("data.dataset", "tensor inputs come from featlab.probes.Tracker; choose "
                                  "digits, mnist, fashion_mnist, cifar10, cifar100 or npz")
        elif d.dataset == "npz":
            if not root or not os.path.isfile(os.path.expanduser(root)):
                raise ConfigError("data.root", "dataset=npz needs the path of an existing .npz file", d.root)
        elif d.dataset == "folder":
            from ..data.folder import EXTENSIONS, _scan, resolve_folder

            try:
                path = resolve_folder(d.root)
                if not _scan(path)[0]:
                    raise FileNotFoundError(f"no {'/'.join(EXTENSIONS)} images in {str(path)!r} or its sub-folders")
            except (FileNotFoundError, ValueError) as e:
                raise ConfigError("data.root", str(e)) from None
            if d.resize < (d.input_size or 224):
                raise ConfigError("data.resize", f"must be >= the crop side data.input_size ({d.input_size or 224})",
                                  d.resize)
        elif d.dataset != "digits":
            from ..data.images import require

            require(d.dataset, d.root, "data.root")  # the archive's files, looked up without reading them


def tiny() -> ProbeConfig:
    """The demo/CI path: an untrained zoo CNN on 64 digits (every lens against a fresh init)."""
    c = ProbeConfig()
    return replace(c, threads=1, model=replace(c.model, kwargs=("depth=2", "width=8")),
                   data=replace(c.data, n_images=64, input_size=16), batch_size=64)


def default() -> ProbeConfig:
    """The default profile of ``featlab probe``: 256 probe images, every lens that applies."""
    return ProbeConfig()


# ---------------------------------------------------------------------------------- resolve
def _wrap(field: str, fn, *a, **kw):
    from ..models.source import SourceError

    try:
        return fn(*a, **kw)
    except SourceError as e:
        raise ConfigError(field, str(e)) from None


def _data_shape(d: DataConfig) -> tuple[tuple[int, ...], int | None]:
    """(shape of one probe input, number of classes or None), without loading an archive."""
    if d.dataset == "npz":
        from ..data.npz import load_npz

        try:
            X, y = load_npz(os.path.expanduser(d.root or os.environ.get("FEATLAB_DATA", "")),
                            x_key=d.x_key, y_key=d.y_key)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError("data.root", str(e)) from None
        shape = tuple(X.shape[1:])
        if d.input_size and len(shape) == 3:
            shape = (shape[0], d.input_size, d.input_size)
        return shape, (int(y.max()) + 1 if y is not None else None)
    if d.dataset == "folder":  # RGB centre crops; the class count is not the model's (ImageNet: 1000)
        return (3, d.input_size or 224, d.input_size or 224), None
    C, H, W, k = _SHAPES[d.dataset]
    if d.input_size:
        H = W = d.input_size
    return (C, H, W), k


def classes_from_state_dict(state: dict) -> int | None:
    """The output count of a classifier's weights: rows of its last 2-D ``*.weight`` tensor.

    Convention: torchvision-format state dicts list the final classifier last (resnet ``fc``,
    vgg ``classifier.6``), so a zoo model probed on a folder of images (whose class count is
    not the model's) gets ``num_classes`` from its first weights file; None when no 2-D weight.
    """
    last = None
    for name, t in state.items():
        if name.endswith("weight") and getattr(t, "ndim", 0) == 2:
            last = t
    return int(last.shape[0]) if last is not None else None


def model_kwargs(cfg: ProbeConfig, shape: tuple[tuple[int, ...], int | None]) -> dict:
    """The factory's keyword arguments: ``model.kwargs``, plus data-derived defaults for the zoo."""
    from ..models.source import parse_kwargs, parse_source

    kw = parse_kwargs(cfg.model.kwargs)
    (in_shape, k) = shape
    if parse_source(cfg.model.source).kind == "zoo" and len(in_shape) == 3:
        kw.setdefault("in_channels", in_shape[0])
        kw.setdefault("num_classes", k or 10)
        kw.setdefault("input_size", in_shape[1])
    return kw


def _load_into(model, ck, strict: bool, field: str) -> None:
    try:
        model.load_state_dict(ck.state_dict, strict=strict)
    except (RuntimeError, ValueError, KeyError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        msg = "; ".join(lines[:3])[:300]
        raise ConfigError(field, f"{ck.path!r} does not fit the model: {msg}") from None


def _check_forward(model, cfg: ProbeConfig, in_shape: tuple[int, ...]) -> None:
    """One forward pass of two zero inputs of the probe shape: the model must accept them and
    return a tensor (or one selected by ``model.output``)."""
    from ..probes.adapt import select_output
    from ..probes.hooks import eval_mode

    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    x = torch.zeros((2,) + tuple(in_shape), dtype=dtype)
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(x)
    except Exception as e:  # noqa: BLE001 - the user's model: one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ConfigError("model.source", f"the model fails on inputs of shape {tuple(x.shape)} "
                          f"({type(e).__name__}: {first}); check data.input_size and the factory's "
                          "arguments") from None
    try:
        select_output(out, cfg.model.output)
    except ValueError as e:
        raise ConfigError("model.output", str(e)) from None


def resolve(cfg: ProbeConfig) -> ProbeConfig:
    """Fill in the files' SHA-256 and check that the model builds and every checkpoint loads.

    Globs in ``model.weights`` become the list of files they match. Pinned hashes
    (``weights_sha256`` given) must match the files. Raises :class:`ConfigError` naming the
    field; nothing is written.
    """
    from ..models.source import (build_model, expand_weights, load_factory, parse_kwargs, parse_source,
                                 read_checkpoint, sha256_file)

    m = cfg.model
    if m.source.startswith("live:"):
        raise ConfigError("model.source", "live models are recorded by featlab.probes.Tracker inside your own "
                          "loop; `featlab probe` needs zoo:NAME or a factory")
    src = parse_source(m.source)
    paths = _wrap("model.weights", expand_weights, m.weights) if m.weights else []
    shas = [sha256_file(p) for p in paths]
    if m.weights_sha256 and tuple(m.weights_sha256) != tuple(shas):
        raise ConfigError("model.weights_sha256", "the weights files changed since these hashes were recorded "
                          f"(now {', '.join(s[:12] for s in shas)})")
    init_sha = sha256_file(os.path.expanduser(m.init_weights)) if m.init_weights else ""
    if m.init_sha256 and m.init_weights and m.init_sha256 != init_sha:
        raise ConfigError("model.init_sha256", "the init weights file changed since its hash was recorded")
    src_sha = sha256_file(src.file) if src.kind == "file" else ""
    if m.source_sha256 and src_sha and m.source_sha256 != src_sha:
        raise ConfigError("model.source_sha256", "the factory file changed since its hash was recorded")
    factory = _wrap("model.source", load_factory, src)
    shape = _data_shape(cfg.data)
    d = cfg.data
    C = shape[0][0] if len(shape[0]) == 3 else None
    if d.mean and len(d.mean) != C:
        raise ConfigError("data.mean", f"needs one value per channel ({C} for {d.dataset})", d.mean)
    if not d.mean and d.normalise == "imagenet" and C != 3:
        raise ConfigError("data.normalise", f"imagenet needs RGB images; {d.dataset} has {C} channel(s)")
    if (src.kind == "zoo" and shape[1] is None and paths
            and "num_classes" not in parse_kwargs(m.kwargs)):  # e.g. an ImageNet folder: the weights say 1000
        ck = _wrap("model.weights", read_checkpoint, paths[0], key=m.weights_key, prefix=m.weights_prefix)
        k = classes_from_state_dict(ck.state_dict)
        if k is not None:
            m = replace(m, kwargs=tuple(m.kwargs) + (f"num_classes={k}",))
            cfg = replace(cfg, model=m)
    kw = model_kwargs(cfg, shape)
    model = _wrap("model.source", build_model, src, kw, seed=0, factory=factory)
    for p in paths + ([os.path.expanduser(m.init_weights)] if m.init_weights else []):
        field = "model.weights" if p in paths else "model.init_weights"
        ck = _wrap(field, read_checkpoint, p, key=m.weights_key, prefix=m.weights_prefix)
        _load_into(model, ck, m.strict, field)
    _check_forward(model, cfg, shape[0])
    return replace(cfg, model=replace(m, weights=tuple(paths), weights_sha256=tuple(shas), init_sha256=init_sha,
                                      source_sha256=src_sha))


# ---------------------------------------------------------------------------------- data
def load_probe_data(d: DataConfig, ctx) -> tuple[torch.Tensor, torch.Tensor | None, str, int | None]:
    """(X (n, C, H, W) or (n, D), labels or None, a name, the image folder's class count or None).

    Convention: a folder's labels are the indices of its class sub-folders in sorted order
    (torchvision ``ImageFolder``; a flat folder has none); :func:`run` keeps them only when the
    folder has as many classes as the model has outputs (e.g. all 1000 ImageNet synsets), since
    any other subset of classes would be numbered differently from the model's outputs."""
    import torch.nn.functional as Fn

    from ..data import images
    from ..data.npz import load_npz

    root = d.root if d.root is not None else os.environ.get("FEATLAB_DATA")
    g = ctx.generator("probe-images", "cpu")
    n_classes = None
    if d.dataset == "npz":
        X, y = load_npz(os.path.expanduser(root), x_key=d.x_key, y_key=d.y_key)
        name = f"npz:{Path(root).name}"
        train = None
    elif d.dataset == "folder":
        from ..data.folder import load_image_folder

        fi = load_image_folder(root, d.n_images, size=d.input_size or 224, resize=d.resize, normalise=None,
                               generator=g)
        X, y, name, train = fi.x, (fi.y if int(fi.y.min()) >= 0 else None), f"folder:{Path(root).name}", None
        n_classes = len(fi.classes) or None
    else:
        loaders = {"digits": lambda: images.load_digits(generator=ctx.generator("split", "cpu")),
                   "mnist": lambda: images.load_mnist(root), "fashion_mnist": lambda: images.load_fashion_mnist(root),
                   "cifar10": lambda: images.load_cifar10(root), "cifar100": lambda: images.load_cifar100(root)}
        data = loaders[d.dataset]()
        X, y = (data.x_test, data.y_test) if d.split == "test" else (data.x_train, data.y_train)
        train, name = data.x_train, f"{data.name}:{d.split}"
    mu = sd = None
    if d.mean:
        mu, sd = torch.tensor(d.mean), torch.tensor(d.std)
    elif d.normalise == "imagenet":
        from ..data.folder import IMAGENET_MEAN, IMAGENET_STD

        mu, sd = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    elif d.standardise:  # per-channel statistics of the training split (npz: of the file)
        ref = train if train is not None else X
        dims = (0, 2, 3) if ref.ndim == 4 else (0,)
        mu, sd = ref.mean(dims), ref.std(dims).clamp_min(1e-12)
    idx = torch.randperm(X.shape[0], generator=g)[: min(d.n_images, X.shape[0])].sort().values
    X, y = X[idx], (y[idx] if y is not None else None)
    # (a folder's images are already cropped to input_size)
    if d.input_size and X.ndim == 4 and tuple(X.shape[-2:]) != (d.input_size, d.input_size):
        X = Fn.interpolate(X, size=(d.input_size,) * 2, mode="bilinear", align_corners=False)
    if mu is not None:
        shape = (1, -1) + (1,) * (X.ndim - 2)
        X = (X - mu.reshape(shape)) / sd.reshape(shape)
    return X.float(), y, name, n_classes


# ---------------------------------------------------------------------------------- run
def _settings(cfg: ProbeConfig) -> LensSettings:
    return LensSettings(rf=cfg.rf, agop=cfg.agop, nfa=cfg.nfa, cnfa=cfg.cnfa, dgr=cfg.dgr, spectrum=cfg.spectrum)


def _axis(meta: list[dict]) -> tuple[list, str]:
    """x values and label of the checkpoint axis: step, else epoch, else the number in the file
    names (when distinct), else the checkpoint index."""
    for key, label in (("step", "step"), ("epoch", "epoch")):
        v = [m[key] for m in meta]
        if all(x is not None for x in v):
            return v, label
    v = [m["name_number"] for m in meta]
    if all(x is not None for x in v) and len(set(v)) == len(v):
        return v, "checkpoint number (from the file name)"
    return list(range(len(meta))), "checkpoint index"


def _numbers(d: dict) -> dict:
    """The scalar entries of a lens dict (no arrays, no per-filter lists)."""
    return {k: v for k, v in d.items() if isinstance(v, (int, float, bool, str)) or v is None}


def metric_rows(res: dict) -> list[dict]:
    """One flat row per (lens, layer) of a :meth:`LensSuite.measure` result."""
    rows = [{"lens": "accuracy", "value": res.get("accuracy")}]
    if "rf" in res:
        rf = res["rf"]
        rows.append({"lens": "rf", **_numbers(rf), **{f"{k}_init": v for k, v in _numbers(rf.get("init", {})).items()}})
    for lens in ("nfa", "cnfa"):
        for layer, v in res.get(lens, {}).items():
            rows.append({"lens": lens, "layer": layer, **_numbers(v)})
    if "dgr" in res:
        for variant, d in res["dgr"].items():
            rows.append({"lens": "dgr", "variant": variant, "layer": "output", **d["output"]})
            for layer, v in d["layers"].items():
                rows.append({"lens": "dgr", "variant": variant, "layer": layer, **v})
    for layer, v in res.get("spectrum", {}).items():
        rows.append({"lens": "spectrum", "layer": layer, "gamma0": v["gamma0"], "gamma0_init": v.get("gamma0_init"),
                     "iid_gamma0": v["iid_gamma0"]})
    return rows


def _mean(vals) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def headline(res: dict) -> dict:
    """The scalar summary numbers of one checkpoint (None where not measured)."""
    h: dict = {"accuracy": res.get("accuracy")}
    if "rf" in res:
        rf, r0 = res["rf"], res["rf"].get("init", {})
        h.update(rf_layer=rf["layer"], rf_D=rf["D"], rf_n_filters=rf["n_filters"], rf_ipr_mean=rf["ipr_mean"],
                 rf_ipr_baseline=rf["baseline"], rf_ipr_mean_init=r0.get("ipr_mean"),
                 rf_n_localised=rf["n_localised"], rf_n_localised_init=r0.get("n_localised"))
    for lens in ("nfa", "cnfa"):
        rows = res.get(lens)
        if rows:
            key = "rho" if lens == "nfa" else "rho_trained"
            h[f"{lens}_rho_mean"] = _mean(v[key] for v in rows.values())
            h[f"{lens}_rho_untrained_mean"] = _mean(v.get("rho_untrained") for v in rows.values())
            h[f"{lens}_rho_init_trained_mean"] = _mean(v.get("rho_init_trained") for v in rows.values())
            h[f"{lens}_rho_fresh_trained_mean"] = _mean(v.get("rho_fresh_trained") for v in rows.values())
            h[f"{lens}_null_init_K_mean"] = _mean(v.get("null_init_K") for v in rows.values())
            h[f"{lens}_null_random_eigvecs_mean"] = _mean(v.get("null_random_eigvecs") for v in rows.values())
    if "dgr" in res:
        d = res["dgr"]
        h.update(D_f=d["trained"]["output"]["D"], G_f=d["trained"]["output"]["G"], R_f=d["trained"]["output"]["R"],
                 R_f_shuffled=d.get("shuffled", {}).get("output", {}).get("R"),
                 R_f_init=d.get("init", {}).get("output", {}).get("R"))
    sp = res.get("spectrum")
    if sp:
        first = next(iter(sp.values()))
        h.update(spectrum_gamma0_first=first["gamma0"], spectrum_gamma0_first_init=first.get("gamma0_init"),
                 spectrum_gamma0_iid=first["iid_gamma0"])
    return h


def _arrays(i: int, res: dict) -> dict:
    out = {}
    if "rf" in res:
        out[f"ckpt{i}/rf/weights"] = res["rf"]["weights"]
        out[f"ckpt{i}/rf/ipr"] = np.array([np.nan if v is None else v for v in res["rf"]["ipr"]])
    for layer, v in res.get("spectrum", {}).items():
        out[f"ckpt{i}/spectrum/{layer}/eigenvalues"] = v["eigenvalues"]
        out[f"ckpt{i}/spectrum/{layer}/gamma"] = v["gamma"]
    return out


def run(cfg: ProbeConfig, ctx) -> dict:
    from ..models.source import build_model, load_factory, parse_source, read_checkpoint
    from ..probes.adapt import prepare_inputs
    from ..probes.lenses import LensSuite
    from ..utils.device import derive_seed

    m = cfg.model
    X, y, data_name, n_classes = load_probe_data(cfg.data, ctx)
    src = parse_source(m.source)
    factory = load_factory(src)  # the user's code runs here (it ran once already in resolve)
    kw = model_kwargs(cfg, _data_shape(cfg.data))
    model = build_model(src, kw, seed=derive_seed(cfg.seed, "model"), factory=factory).to(ctx.device)
    paths = list(m.weights)
    read = lambda p: read_checkpoint(p, key=m.weights_key, prefix=m.weights_prefix)  # noqa: E731
    first = read(paths[0]) if paths else None
    init = fresh = None
    if m.init_weights:
        init = build_model(src, kw, seed=0, factory=factory)
        init.load_state_dict(read(os.path.expanduser(m.init_weights)).state_dict, strict=m.strict)
    elif first is not None and (first.step == 0 or (first.step is None and first.epoch == 0)):
        init = build_model(src, kw, seed=0, factory=factory)
        init.load_state_dict(first.state_dict, strict=m.strict)
    if m.fresh_init:
        fresh = build_model(src, kw, seed=derive_seed(cfg.seed, "fresh"), factory=factory).to(ctx.device)
    if init is not None:
        init = init.to(ctx.device)
    X = prepare_inputs(model, X)
    y = y.to(X.device) if y is not None else None
    suite = LensSuite(model, X, y=y, lenses=cfg.lenses, layers=cfg.layers, init=init, fresh=fresh,
                      output=m.output, settings=_settings(cfg), batch_size=cfg.batch_size,
                      generator=lambda stream: ctx.generator(stream))
    plan = suite.plan
    if n_classes is not None and n_classes != suite.n_outputs:  # folder labels would not be the model's
        suite.y = None
        plan.notes["labels"] = (f"no accuracy: the image folder has {n_classes} class sub-folders, the model "
                                f"{suite.n_outputs} outputs")
    init_kind = suite.init_kind
    ctx.log.info("probe %s on %d images of %s: lenses %s; init %s%s%s", m.source, X.shape[0], data_name,
                 ", ".join(plan.lenses), init_kind,
                 "; skipped " + "; ".join(f"{k}: {v}" for k, v in plan.skipped.items()) if plan.skipped else "",
                 "; " + "; ".join(plan.notes.values()) if plan.notes else "")
    meta, results = [], []
    with ctx.progress(max(1, len(paths)), desc="checkpoints", unit="ckpt") as bar:
        for i, p in enumerate(paths or [None]):
            if p is not None:
                ck = first if i == 0 else read(p)
                model.load_state_dict(ck.state_dict, strict=m.strict)
                meta.append({"file": p, "step": ck.step, "epoch": ck.epoch, "name_number": ck.name_number})
                del ck
                first = None
            else:
                meta.append({"file": None, "step": None, "epoch": None, "name_number": None})
            res = suite.measure(model)
            results.append(res)
            for row in metric_rows(res):
                ctx.log_metrics(checkpoint=i, **{k: v for k, v in meta[-1].items() if k != "name_number"}, **row)
            ctx.save_arrays(**_arrays(i, res))
            bar.update(1)
    steps, xlabel = _axis(meta)
    ctx.save_arrays(steps=np.asarray(steps, dtype=float))
    what = f"{m.source}" + (f", checkpoint {Path(meta[-1]['file']).name}" if meta[-1]["file"] else " (as built)")
    write_figures(ctx, cfg, results, steps, xlabel, what, init_kind, suite)
    return summarise(cfg, suite, results, steps, xlabel, data_name, init_kind)


def summarise(cfg: ProbeConfig, suite, results: list[dict], steps: list, xlabel: str, data_name: str,
              init_kind: str) -> dict:
    """summary.json of a probe run: headline numbers of the last checkpoint, per-layer tables,
    and (several checkpoints) the headline series against ``steps``."""
    plan, last = suite.plan, results[-1]
    s = {"model": cfg.model.source, "data": data_name, "n_images": int(suite.X.shape[0]),
         "n_checkpoints": len(results), "steps": list(steps), "step_axis": xlabel, "init_kind": init_kind,
         "lenses": plan.lenses, "skipped": plan.skipped, "notes": plan.notes, "sketched": suite.sketched,
         "n_outputs": suite.n_outputs,
         "dgr_layer_source": plan.dgr_source if "dgr" in plan.lenses else None, **headline(last)}
    for lens in ("nfa", "cnfa"):
        if lens in last:
            s[lens] = last[lens]
    if "dgr" in last:
        d = last["dgr"]
        s["dgr_layers"] = {n: {"D": v["D"], "G": v["G"], "R": v["R"],
                               "R_shuffled": d.get("shuffled", {}).get("layers", {}).get(n, {}).get("R"),
                               "R_init": d.get("init", {}).get("layers", {}).get(n, {}).get("R")}
                           for n, v in d["trained"]["layers"].items()}
    if "spectrum" in last:
        s["spectrum_gamma0"] = {n: {"trained": v["gamma0"], "init": v.get("gamma0_init")}
                                for n, v in last["spectrum"].items()}
    if len(results) > 1:
        heads = [headline(r) for r in results]
        s["series"] = {k: [h.get(k) for h in heads] for k in heads[-1] if not isinstance(heads[-1][k], str)}
    return s


# ---------------------------------------------------------------------------------- figures
def write_figures(ctx, cfg, results, steps, xlabel, what, init_kind, suite) -> None:
    """Every lens's figure of the last result and, with several results, each lens against step."""
    from ..probes import lens_plots as lp

    last = results[-1]
    init_txt = {"true": "the true init", "fresh": "an independent fresh init from the factory (seeded)",
                "none": "no init (none available)"}[init_kind]
    sk = " AGOPs over a Gaussian sketch of the outputs (approximate)." if suite.sketched else ""
    if "rf" in last:
        rf = last["rf"]
        ctx.save_figure(lp.plot_rf_filters(rf["weights"], f"first layer {rf['layer']}"), "rf_filters",
                        f"First-layer filters of {rf['layer']} ({what}), mean over input channels, shared colour "
                        f"scale; first {len(rf['weights'])} of {rf['n_filters']} filters.")
        ctx.save_figure(lp.plot_rf_ipr(rf), "rf_ipr",
                        f"IPR of each filter of {rf['layer']} ({what}) against the iid-Gaussian level 3/(D+2) "
                        f"(D = {rf['D']}), " + (f"the localisation threshold {cfg.rf.factor:g}·3/(D+2)"
                                                if rf["threshold"] is not None else
                                                f"(no localisation threshold: {cfg.rf.factor:g}·3/(D+2) ≥ 1)")
                        + f" and {init_txt}.")
    keys_nfa = [("rho", r"trained ρ(WᵀW, $G^{\alpha}$)", "#c0392b"), ("rho_untrained", r"untrained ρ(W₀ᵀW₀, $G_0^{\alpha}$)", "#e59866"),
                ("rho_init_trained", "true init ρ(W₀ᵀW₀, WᵀW)", "0.5"),
                ("rho_fresh_trained", "fresh init ρ(W_fᵀW_f, WᵀW)", "#2471a3"),
                ("null_init_K", "null: trained W, init K₀", "#7d3c98"),
                ("null_random_eigvecs", "null: K's spectrum, random eigvecs", "#17a589")]
    keys_cnfa = [("rho_trained", r"trained ρ(W̄ᵀW̄, $G^{\alpha}$)", "#c0392b"),
                 ("rho_untrained", r"untrained ρ(W̄₀ᵀW̄₀, $G_0^{\alpha}$)", "#e59866"),
                 ("rho_init_trained", "true init ρ(W̄₀ᵀW̄₀, W̄ᵀW̄)", "0.5"),
                 ("rho_fresh_trained", "fresh init ρ(W̄_fᵀW̄_f, W̄ᵀW̄) (i_val)", "#2471a3"),
                 ("null_init_K", "null: trained W̄, init K₀", "#7d3c98"),
                 ("null_random_eigvecs", "null: K's spectrum, random eigvecs", "#17a589")]
    have = lambda rows, keys: [k for k in keys if any(r.get(k[0]) is not None for r in rows.values())]  # noqa: E731
    if last.get("nfa"):
        fig = lp.plot_rho_bars(last["nfa"], have(last["nfa"], keys_nfa), f"correlation ({cfg.nfa.metric})")
        ctx.save_figure(fig, "nfa",
                        f"NFA per linear layer ({what}), α = {cfg.nfa.alpha:g}, against the untrained net, the "
                        f"init's and a fresh init's WᵀW, and two structural nulls (trained W with the untrained "
                        f"net's K₀; K's spectrum on random eigenvectors, mean of {cfg.agop.n_null_draws}); "
                        f"init = {init_txt}.{sk}")
    if last.get("cnfa"):
        fig = lp.plot_rho_bars(last["cnfa"], have(last["cnfa"], keys_cnfa), f"correlation ({cfg.cnfa.metric})")
        ctx.save_figure(fig, "cnfa",
                        f"CNFA per conv layer ({what}), α = {cfg.cnfa.alpha:g}, against the untrained net, the "
                        f"init's CNFM, the reference's i_val (a fresh init's CNFM) and two structural nulls "
                        f"(trained W̄ with the untrained net's K₀; K's spectrum on random eigenvectors, mean of "
                        f"{cfg.agop.n_null_draws}); init = {init_txt}.{sk}")
    if "dgr" in last:
        ctx.save_figure(lp.plot_dgr(last["dgr"]), "dgr",
                        f"D, G, R after each probed layer and at the output ({what}; mean protocol, δ = "
                        f"{cfg.dgr.delta:g} px, c = {cfg.dgr.cut}): trained, with shuffled input channels, and "
                        f"{init_txt}; the same diffeos and noise for all three.")
    if last.get("spectrum"):
        ctx.save_figure(lp.plot_spectra(last["spectrum"]), "spectrum",
                        f"Normalised filter spectra on the grid Laplacian per conv layer ({what}) against "
                        f"{init_txt}; dotted: 1/F², the λ = 0 weight of iid kernels.")
    if len(results) < 2:
        return
    heads = [headline(r) for r in results]
    col = lambda k: [h.get(k) for h in heads]  # noqa: E731
    b0 = heads[0]
    panels, parts = [], []
    if any(v is not None for v in col("accuracy")):
        panels.append({"title": "accuracy", "curves": {"probe accuracy": col("accuracy")}, "ylabel": "accuracy"})
        parts.append("accuracy on the probe images")
    if "rf" in last:
        panels.append({"title": f"receptive fields ({last['rf']['layer']})", "curves": {"mean IPR": col("rf_ipr_mean")},
                       "baselines": {"3/(D+2)": b0["rf_ipr_baseline"], "init": b0.get("rf_ipr_mean_init")},
                       "ylabel": "mean IPR of the filters", "log": True})
        parts.append("mean first-layer IPR against 3/(D+2) and the init")
    for lens, key in (("nfa", "rho"), ("cnfa", "rho_trained")):
        if last.get(lens):
            names = list(last[lens])
            if len(names) > 8:
                names = [names[int(round(i))] for i in np.linspace(0, len(names) - 1, 8)]
            panels.append({"title": lens.upper(), "curves": {n: [r[lens][n][key] for r in results] for n in names},
                           "baselines": {"untrained (mean)": b0.get(f"{lens}_rho_untrained_mean"),
                                         "init vs weights (mean)": col(f"{lens}_rho_init_trained_mean"),
                                         "null init K₀ (mean)": col(f"{lens}_null_init_K_mean"),
                                         "null random eigvecs (mean)": col(f"{lens}_null_random_eigvecs_mean")},
                           "ylabel": f"ρ ({getattr(cfg, lens).metric})"})
            parts.append(f"{lens.upper()} ρ per layer (up to 8) against the untrained net (dotted), ρ between "
                         "the init's and each checkpoint's weight Gram matrices (dashed) and the two structural "
                         "nulls (mean over layers)")
    if "dgr" in last:
        panels.append({"title": "D/G/R (output)", "curves": {"R_f": col("R_f"), "R_f shuffled": col("R_f_shuffled")},
                       "baselines": {"R_f init": b0.get("R_f_init"), "R = 1": 1.0},
                       "ylabel": "R_f = D_f / G_f", "log": True})
        parts.append("R_f of the output, trained and with shuffled channels, against the init")
    if last.get("spectrum"):
        names = list(last["spectrum"])
        if len(names) > 6:
            names = [names[int(round(i))] for i in np.linspace(0, len(names) - 1, 6)]
        panels.append({"title": "filter spectra", "curves": {n: [r["spectrum"][n]["gamma0"] for r in results]
                                                              for n in names},
                       "baselines": {"iid 1/F²": last["spectrum"][names[0]]["iid_gamma0"],
                                     f"init {names[0]}": b0.get("spectrum_gamma0_first_init")},
                       "ylabel": "γ at λ = 0 (normalised)"})
        parts.append("the weight of the constant (λ = 0) Laplacian mode per conv layer against iid kernels and "
                     "the init's first layer")
    ctx.save_figure(lp.plot_lenses_vs_step(steps, panels, xlabel=xlabel), "lenses_vs_step",
                    f"Every lens against the checkpoint's {xlabel} ({len(results)} checkpoints): " + "; ".join(parts)
                    + f". init = {init_txt}.{sk}")


# ---------------------------------------------------------------------------------- claims
_CNFA_BASELINES = ("rho_untrained", "rho_init_trained", "rho_fresh_trained", "null_init_K", "null_random_eigvecs")


def _cnfa_margins(s: dict) -> dict[str, float]:
    """Per conv layer: trained ρ minus the largest baseline measured for it."""
    out = {}
    for n, v in (s.get("cnfa") or {}).items():
        base = [v[k] for k in _CNFA_BASELINES if v.get(k) is not None]
        if v.get("rho_trained") is not None and base:
            out[n] = v["rho_trained"] - max(base)
    return out


def _claim_cnfa(s: dict):
    margins = _cnfa_margins(s)
    if not margins:
        return "not measured (no conv layer with a baseline)", None
    held = sum(m > 0 for m in margins.values())
    return (f"trained ρ above every baseline in {held}/{len(margins)} conv layers "
            f"(mean margin {np.mean(list(margins.values())):+.3f}; init: {s['init_kind']})", held == len(margins))


def _margin_cnfa(s: dict):
    m = list(_cnfa_margins(s).values())
    return float(np.mean(m)) if m else None


def _claim_R(s: dict):
    R, R0 = s.get("R_f"), s.get("R_f_init")
    if R is None or R0 is None or R0 <= 0:
        return "not measured", None
    return f"R_f {R:.3g} vs init {R0:.3g} (init: {s['init_kind']})", bool(R < R0)


def _claim_spectrum(s: dict):
    g, g0 = s.get("spectrum_gamma0_first"), s.get("spectrum_gamma0_first_init")
    if g is None or g0 is None:
        return "not measured", None
    iid = s.get("spectrum_gamma0_iid")
    return (f"first conv γ(λ=0) {g:.3f} vs init {g0:.3f}" + (f" (iid kernels {iid:.3f})" if iid is not None else ""),
            bool(g > g0))


EXPERIMENT = register(Experiment(
    name=NAME,
    summary="the three papers' lenses (RF/IPR, NFA/CNFA, D/G/R, filter spectra) on any model and checkpoint",
    config=ProbeConfig,
    presets={"tiny": tiny, "default": default},
    run=run,
    resolve=resolve,
    paper_presets=(),
    claims=(
        Claim(text="Filter covariances (CNFM) of trained CNNs correlate with patch-AGOPs beyond what the "
                   "untrained net and the init already give",
              source="Beaglehole et al., arXiv:2309.00570 abstract; baselines of featlab issue 14",
              criterion="in every probed conv layer, trained ρ(W̄ᵀW̄, G) exceeds every baseline measured: the "
                        "untrained net's ρ(W̄₀ᵀW̄₀, G₀), ρ(W̄₀ᵀW̄₀, W̄ᵀW̄) with the true init, the fresh-init "
                        "i_val ρ(W̄_fᵀW̄_f, W̄ᵀW̄), and the structural nulls ρ(W̄ᵀW̄, W̄ᵀK₀W̄) and "
                        "ρ(W̄ᵀW̄, W̄ᵀQΛQᵀW̄) (mean over Haar Q)",
              check=_claim_cnfa, value=_margin_cnfa),
        Claim(text="Training makes the net relatively stable to diffeomorphisms: R_f drops below its value at init",
              source="[N21] abstract", criterion="R_f(probed checkpoint) < R_f(init)", check=_claim_R,
              value=lambda s: (s["R_f"] / s["R_f_init"]) if s.get("R_f") and s.get("R_f_init") else None),
        Claim(text="Trained conv filters move weight to the smooth (λ = 0) Laplacian mode (spatial pooling)",
              source="[I23] §5 (spec diffeo_pooling §5)", criterion="normalised γ(λ=0) of the first conv layer "
                                                                   "exceeds the init's", check=_claim_spectrum,
              value=lambda s: s.get("spectrum_gamma0_first")),
    ),
))
