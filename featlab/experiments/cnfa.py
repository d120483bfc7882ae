"""CNFA: filter covariances W̄ᵀW̄ of a CNN against patch-AGOPs (Beaglehole et al. 2023), refutably.

Two protocols:

* **train** (default): train a vanilla CNN (spec agop_rfm §9 architecture; scikit-learn digits,
  CIFAR-10 with ``data.dataset=cifar10`` and a local ``data.root``) and measure, per conv layer,
  at init, at the chosen epochs and at the end;
* **pretrained** (``model.weights`` = a torchvision-format state dict): measure a zoo net
  (``model.arch``, e.g. vgg11 or resnet18 with ``model.variant=imagenet``) as loaded, on a local
  image folder (``data.dataset=folder``: 224 centre crops, the reference's ImageNet
  normalisation; :func:`featlab.data.load_image_folder`) or on CIFAR-10 — the reference's
  ``cnfa_verification`` protocol, offline.

Every measurement carries, per layer (:func:`featlab.probes.cnfa`): the trained ρ(CNFM, G^α); the
untrained network's own ρ; the reference's baseline ``i_val`` = ρ(CNFM of a fresh default init,
trained CNFM); ρ(CNFM_init, CNFM_trained) (own init, train protocol); and the two structural nulls
(trained W̄ with the untrained network's K₀; trained W̄ with K's spectrum on random eigenvectors),
in Pearson, cosine and off-diagonal Pearson, plus the centred (W − W₀) variants when the true
init is known. The claim is judged per layer against i_val *and* both nulls.
"""
from __future__ import annotations

import copy
import os
import pickle
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..config import ConfigError, ExperimentConfig, F, sub
from ..utils.device import derive_seed
from .registry import Claim, Experiment, register

__all__ = ["CNFAConfig", "run", "tiny", "paper", "imagenet", "REFERENCE_IMAGE_COUNTS"]

#: Images the reference scripts average the patch-AGOP over (11 loader batches: ``idx >= 10``
#: breaks after the 11th): ``vgg_conv_nfa.py`` batches of 2, ``pretrained_conv_nfa.py`` batches
#: of 1 (ResNets).
REFERENCE_IMAGE_COUNTS = {"resnet": 11, "other": 22}


def _zoo_names() -> tuple[str, ...]:
    from ..models import available

    return tuple(available())


@dataclass(frozen=True)
class DataConfig:
    dataset: str = F("digits", "images: scikit-learn 8×8 digits (shipped), CIFAR-10 from a local archive, or a "
                               "local folder of JPEG/PNG images (pretrained weights only)",
                     choices=("digits", "cifar10", "folder"))
    root: str | None = F(None, "cifar10: directory with cifar-10-python.tar.gz or cifar-10-batches-py; folder: the "
                               "image folder (class sub-folders, e.g. ImageNet val, or flat); None: $FEATLAB_DATA")
    n_train: int = F(0, "training images used (0: all), class-stratified seeded subset (digits, cifar10)", ge=0)
    standardise: bool = F(True, "digits/cifar10: standardise channels with training mean/std (a folder always uses "
                                "the reference's ImageNet mean/std)")
    image_size: int = F(224, "folder: centre-crop side in pixels", ge=8, tag="[code]")
    resize: int = F(256, "folder: shorter side after resizing, before the crop (pixels)", ge=8, tag="[code]")

    def check(self) -> None:
        if self.resize < self.image_size:
            raise ConfigError("resize", f"must be >= data.image_size ({self.image_size})", self.resize)
        if self.dataset == "cifar10":
            from ..data.images import require

            require("cifar10", self.root, "data.root")  # a missing archive: refused before any folder exists


@dataclass(frozen=True)
class ModelConfig:
    arch: str = F("vanilla", "zoo architecture (featlab.models.available()); vanilla uses the fields below",
                  choices=_zoo_names())
    variant: str = F("cifar", "VGG/ResNet layout: cifar, or imagenet (torchvision's, for ImageNet weights)",
                     choices=("cifar", "imagenet"))
    weights: str | None = F(None, "a torchvision-format state dict (.pt/.pth, read with torch.load(weights_only=True)); "
                                  "the net is then measured as loaded, not trained")
    num_classes: int = F(0, "outputs; 0: the data's classes, or the weights file's last layer", ge=0)
    depth: int = F(3, "vanilla: conv layers", ge=1)
    width: int = F(32, "vanilla: channels per conv layer", ge=1)
    kernel_size: int = F(3, "vanilla: filter size q (pixels)", ge=1)
    stride: int = F(1, "vanilla: conv stride", ge=1)
    padding: int = F(1, "vanilla: zero padding of every conv (pixels)", ge=0)
    bias: bool = F(False, "vanilla: conv biases (reference Vanilla: False)", tag="[code]")
    init_std: float | None = F(None, "vanilla: N(0, init_std²) init of every conv and linear weight "
                                     "(reference -init 5e-3); None: PyTorch's default init", gt=0)


@dataclass(frozen=True)
class TrainConfig:
    loss: str = F("ce", "training loss", choices=("ce", "mse"))
    optimizer: str = F("sgd", "optimiser (SGD with momentum 0.9, or Adam)", choices=("sgd", "adam"))
    lr: float = F(0.05, "learning rate", gt=0)
    schedule: str = F("cosine", "per-epoch lr schedule", choices=("cosine", "none"))
    weight_decay: float = F(0.0, "weight decay", ge=0)
    epochs: int = F(20, "training epochs (at most)", ge=1)
    stop_loss: float = F(0.0, "stop once an epoch's mean training loss is below this (reference 1e-5; 0: never)", ge=0)
    batch_size: int = F(64, "mini-batch size", ge=2)
    probe_epochs: tuple[int, ...] = F((5, 10), "epochs after which CNFA is measured (besides init and the end)", ge=1,
                                      length=(0, None))


@dataclass(frozen=True)
class ProbeConfig:
    n_images: int = F(512, "training images for the patch-AGOP (mean over images)", ge=1)
    reference_image_count: bool = F(False, "use the reference scripts' image counts instead of n_images: 22 "
                                           "(vgg_conv_nfa.py) or 11 for ResNets (pretrained_conv_nfa.py)",
                                    quirk=True, tag="[code]")
    layers: str = F("all", "conv layers measured: all, or reference (ResNets: block conv1 only, as "
                           "pretrained_conv_nfa.py; other nets: all)", choices=("all", "reference"))
    drop_bias: bool = F(False, "leave the measured conv's bias out of the patch network (convrfm PatchConvLayer)",
                        quirk=True, tag="[code]")
    fresh_init: str = F("zoo", "init of the fresh network (i_val baseline; the untrained net for pretrained "
                               "weights): zoo (PyTorch default), or torchvision (kaiming-normal fan_out convs, as the "
                               "reference's models.*(weights=None))", choices=("zoo", "torchvision"))
    metric: str = F("pearson", "primary correlation (all three are in the summary's variants): pearson (ImageNet "
                               "scripts), cosine (sweep scripts), pearson_offdiag (diagonal removed)",
                    choices=("pearson", "cosine", "pearson_offdiag"))
    alpha: float = F(1.0, "power on the AGOP (paper: CNFM ∝ G, α = 1)", gt=0)
    n_null_draws: int = F(20, "random eigenbases for the 'K spectrum, random eigenvectors' null", ge=2)
    outputs: str = F("all", "all outputs exactly, or an unbiased Gaussian sketch (labelled)", choices=("all", "sketch"))
    n_sketch: int = F(16, "Gaussian probes when outputs='sketch'", ge=1)
    batch_size: int = F(256, "images per probe forward pass (memory only)", ge=1)
    n_eigvecs: int = F(6, "top eigenvectors of the first layer shown as filters", ge=1)
    vs_n_images: bool = F(True, "also measure the trained ρ on nested subsets of 16, 64, 256, ... probe images "
                                "(costs about one more probe in total)")
    save_max_dim: int = F(1200, "matrices (arrays.npz, heat-maps) are saved only for layers with c_in·q² up to this",
                          ge=1, cost="a d×d float64 matrix is 8·d² bytes (d = 4608: 170 MB)")
    eval_images: int = F(2000, "test images for the accuracy of pretrained weights (a sanity check)", ge=1)


@dataclass(frozen=True)
class CNFAConfig(ExperimentConfig):
    RENAMED = {"data.name": "data.dataset"}

    data: DataConfig = sub(DataConfig, "image data")
    model: ModelConfig = sub(ModelConfig, "network")
    train: TrainConfig = sub(TrainConfig, "training (train protocol only)")
    probe: ProbeConfig = sub(ProbeConfig, "CNFA probe")

    def check(self) -> None:
        super().check()
        d, m = self.data, self.model
        if d.dataset == "folder" and m.weights is None:
            raise ConfigError("model.weights", "required with data.dataset=folder (a folder is only probed, "
                                               "never trained on)")
        if d.dataset in ("cifar10", "folder"):
            from ..data.images import ENV_VAR

            root = d.root if d.root is not None else os.environ.get(ENV_VAR)
            if not root or not os.path.isdir(os.path.expanduser(root)):
                raise ConfigError("data.root", f"a directory (or set ${ENV_VAR}) for data.dataset={d.dataset}", root)
        if m.weights is not None and not os.path.isfile(os.path.expanduser(m.weights)):
            raise ConfigError("model.weights", "no such file", m.weights)
        C, H = _input_shape(d)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                n_classes = m.num_classes or (_classes_of(_read_weights(m.weights)) if m.weights is not None
                                              else (10 if d.dataset != "folder" else 1000))
                with torch.device("meta"):
                    net = _make(self, C, H, n_classes)
                    if m.weights is not None:
                        _load_weights(net, m.weights)
        except ValueError as e:
            raise ConfigError("model.arch", f"cannot build {m.arch} for {C}×{H}×{H} inputs: {e}") from None
        except (RuntimeError, KeyError, OSError, pickle.UnpicklingError) as e:
            msg = " ".join(str(e).split())[:300]
            raise ConfigError("model.weights", f"cannot be loaded into {m.arch} (variant {m.variant}): {msg}") from None


def tiny() -> CNFAConfig:
    c = CNFAConfig()
    return replace(c, model=replace(c.model, depth=2, width=16), data=replace(c.data, n_train=600),
                   train=replace(c.train, epochs=6, probe_epochs=(2,)), probe=replace(c.probe, n_images=128))


def paper() -> CNFAConfig:
    """The reference's small-CNN CNFA recipe (aradha/convrfm ``hyperparam_cnfa_verification``), on digits.

    Field by field, with sources (``main.py`` defaults, ``models.py:VanillaCNN``, ``trainer.py``,
    ``nfa.py``):

    * ``model``: vanilla, depth 4, width 64 (``-k 64``), 3×3 (``-patch_size 3``), padding
      ps//2 = 1, no biases, flatten → linear readout without bias [code]; every weight
      N(0, 5e-3²) (``-init 5e-3``; the intended 1e-2 for later layers is dead code) [code].
    * ``train``: Adam (``-opt adam``) at lr 1e-3 (``-lr``), constant (no scheduler), cross
      entropy, batch 128, up to 1000 epochs (``-epochs``), stopping once the epoch's training
      loss is below 1e-5 [code]. The reference then reloads the best *test*-accuracy
      checkpoint (test-set selection); featlab keeps the final weights [design].
    * ``probe``: the patch-AGOP over the whole training set (``egop_on_patches`` over the train
      loader), α = 1 [code]. The sweep scripts correlate with the uncentred cosine
      (``nfa.py:corr``); the primary metric here is Pearson (the ImageNet scripts' and the
      claim's), cosine is in the summary's ``variants`` [design].
    * ``data``: scikit-learn digits (1300 train / 497 test) instead of the reference's 2000 CIFAR-10
      images (``-n_train 2000``; CIFAR-10 is not shipped) [design]; use ``data.dataset=cifar10``,
      ``data.n_train=2000`` with a local archive for the reference's data.
    """
    c = CNFAConfig()
    return replace(c, model=replace(c.model, depth=4, width=64, init_std=5e-3),
                   train=replace(c.train, optimizer="adam", lr=1e-3, schedule="none", epochs=1000, stop_loss=1e-5,
                                 batch_size=128, probe_epochs=(10, 50, 200)),
                   probe=replace(c.probe, n_images=100_000))


def imagenet() -> CNFAConfig:
    """The reference's ImageNet protocol (convrfm ``cnfa_verification``), offline: a pretrained zoo net
    on a local image folder. Set ``model.weights`` (torchvision-format state dict) and
    ``data.root`` (the folder); ``model.arch=resnet18`` for the ResNet script.

    * ``model``: vgg11 (``vgg_conv_nfa.py``: ``models.vgg11(weights="DEFAULT")``), torchvision
      layout (``variant=imagenet``), 1000 outputs from the weights [code].
    * ``data``: Resize 256 → CenterCrop 224 → ToTensor → Normalize(ImageNet mean/std)
      (``dataset.py:get_imagenet``) [code]; the reference draws shuffled *training* images,
      a local folder is usually the validation set [design].
    * ``probe``: all 1000 outputs (``egop`` loops over 100 chunks of 10) [code]; the reference
      scripts' image counts (22 for VGG, 11 for ResNets) [code]; the reference's layer
      selection (ResNets: block conv1 only) [code]; Pearson (``correlation``) [code]; the
      i_val baseline from a torchvision-style fresh init (``models.vgg11(weights=None)``) [code];
      images in batches of 2 (memory) [design]. The conv bias is kept (``probe.drop_bias=true``
      reproduces the reference's bias-free patch layer, a recorded quirk).
    """
    c = CNFAConfig()
    return replace(c, data=replace(c.data, dataset="folder"),
                   model=replace(c.model, arch="vgg11", variant="imagenet"),
                   probe=replace(c.probe, reference_image_count=True, layers="reference", fresh_init="torchvision",
                                 batch_size=2, vs_n_images=False, eval_images=256))


def _input_shape(d: DataConfig) -> tuple[int, int]:
    return {"digits": (1, 8), "cifar10": (3, 32), "folder": (3, d.image_size)}[d.dataset]


def _make(cfg: CNFAConfig, C: int, H: int, num_classes: int):
    from ..models import get

    m = cfg.model
    if m.arch == "vanilla":
        return get("vanilla", in_channels=C, num_classes=num_classes, input_size=H, depth=m.depth, width=m.width,
                   kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, bias=m.bias)
    if m.arch.startswith(("vgg", "resnet")):
        return get(m.arch, in_channels=C, num_classes=num_classes, input_size=H, variant=m.variant)
    return get(m.arch, in_channels=C, num_classes=num_classes, input_size=H)


def _read_weights(path: str) -> dict:
    """The state dict in ``path`` (``weights_only``; memory-mapped when the file allows it), unwrapped
    from a {"state_dict"|"net"|"model": ...} dict as :func:`featlab.models.load_state_dict_file` does."""
    path = os.path.expanduser(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) format: no mmap
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for k in ("state_dict", "net", "model"):
            if k in obj and isinstance(obj[k], dict):
                return obj[k]
    return obj


def _classes_of(sd: dict) -> int:
    """Outputs of a state dict: rows of its last 2-D weight (the classifier)."""
    W = [v for k, v in sd.items() if k.endswith("weight") and isinstance(v, torch.Tensor) and v.ndim == 2]
    if not W:
        raise ValueError("the weights file has no linear layer; set model.num_classes")
    return int(W[-1].shape[0])


def _load_weights(net, path: str):
    """Load ``path`` into ``net`` (strict; ``featlab.models.load_state_dict_file``, weights_only)."""
    from ..models import load_state_dict_file

    return load_state_dict_file(net, os.path.expanduser(path))


def _build(cfg: CNFAConfig, C: int, H: int, num_classes: int, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # PyTorch default init draws from the global generator
        net = _make(cfg, C, H, num_classes)
        if cfg.model.arch == "vanilla" and cfg.model.init_std is not None:
            _normal_init_(net, cfg.model.init_std)
    return net


def _normal_init_(net, std: float) -> None:
    """Every conv and linear weight ~ N(0, std²) (reference ``VanillaCNN(init=...)``)."""
    from torch import nn

    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                mod.weight.normal_(0.0, std)


def _torchvision_init_(net) -> None:
    """torchvision's VGG/ResNet init: convs kaiming-normal (fan_out, relu) with zero bias, BatchNorm
    (1, 0), VGG linears N(0, 0.01²) with zero bias (ResNet keeps PyTorch's default for ``fc``)."""
    from torch import nn

    from ..models.resnet import ResNet

    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.Linear) and not isinstance(net, ResNet):
                nn.init.normal_(mod.weight, 0.0, 0.01)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)


def _load(cfg: CNFAConfig, g: torch.Generator, n_folder: int):
    """(data, probe pool (N, C, H, W), labelled evaluation set (x, y) or None, name).

    A folder is read only for the ``n_folder`` images drawn (seeded) from it; they are both the
    probe pool and, with class sub-folders, the evaluation set."""
    d = cfg.data
    if d.dataset == "folder":
        from ..data.folder import load_image_folder

        imgs = load_image_folder(d.root, n_folder, size=d.image_size, resize=d.resize, normalise="imagenet",
                                 generator=g)
        test = (imgs.x, imgs.y) if imgs.classes else None
        return imgs, imgs.x, test, imgs.name
    from ..data.images import load_cifar10, load_digits

    data = load_digits(generator=g) if d.dataset == "digits" else load_cifar10(d.root)
    if d.n_train and d.n_train < len(data.y_train):
        keep = data.subset(d.n_train, g)  # stratified subset of the training set (test set kept)
        data = replace(data, x_train=keep.x_train, y_train=keep.y_train)
    data = data.standardise() if d.standardise else data
    return data, data.x_train, (data.x_test, data.y_test), data.name


def _n_probe(cfg: CNFAConfig) -> int:
    if cfg.probe.reference_image_count:
        return REFERENCE_IMAGE_COUNTS["resnet" if cfg.model.arch.startswith("resnet") else "other"]
    return cfg.probe.n_images


def _minmax(A: np.ndarray) -> np.ndarray:
    lo, hi = A.min(), A.max()
    return (A - lo) / (hi - lo) if hi > lo else np.zeros_like(A)


#: (row key, legend label, colour) of the bars, in drawing order.
BAR_KEYS = (("rho_trained", "trained ρ(CNFM, G)", "#c0392b"),
            ("rho_untrained", "untrained ρ(CNFM₀, G₀)", "#e59866"),
            ("rho_fresh_trained", "i_val ρ(CNFM_fresh, CNFM) (reference)", "#2471a3"),
            ("rho_init_trained", "own init ρ(CNFM₀, CNFM)", "#7f8c8d"),
            ("null_init_K", "null: trained W̄, untrained K₀", "#27ae60"),
            ("null_random_eigvecs", "null: K spectrum, random eigvecs (mean)", "#8e44ad"))


def plot_bars(rows: list[dict], metric: str):
    """Trained ρ against the baselines and nulls, one group of bars per conv layer (None: not drawn)."""
    from ..plotting import figure

    keys = [k for k in BAR_KEYS if any(r.get(k[0]) is not None for r in rows)]
    fig, ax = figure(1, 1, width=max(3.6, 0.35 * len(keys) * len(rows) + 1.6), height=3.2)
    a = ax[0, 0]
    x = np.arange(len(rows))
    w = 0.8 / len(keys)
    for i, (k, label, col) in enumerate(keys):
        a.bar(x + (i - (len(keys) - 1) / 2) * w, [r[k] if r.get(k) is not None else np.nan for r in rows], w,
              label=label, color=col)
    a.set_xticks(x, [r["layer"] for r in rows], rotation=30 if len(rows) > 4 else 0)
    a.set_xlabel("conv layer (named_modules)")
    a.set_ylabel(f"correlation ({metric})")
    lo = np.nanmin([r[k] if r.get(k) is not None else np.nan for r in rows for k, *_ in keys])
    a.set_ylim(min(0.0, float(lo)), 1.05)
    a.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=6, frameon=False)
    return fig


def plot_curve(history: dict[str, list[tuple[int, float]]], metric: str):
    """ρ(CNFM, G) per layer against the training epoch (0 = init)."""
    from ..plotting import figure

    fig, ax = figure()
    for layer, pts in history.items():
        e, r = zip(*pts)
        ax[0, 0].plot(e, r, marker="o", label=layer)
    ax[0, 0].set_xlabel("epoch (0 = init)")
    ax[0, 0].set_ylabel(f"ρ(CNFM, G) ({metric})")
    ax[0, 0].legend(fontsize=6)
    return fig


def plot_heatmaps(mats: dict[str, dict[str, np.ndarray]]):
    """Min-max-scaled CNFM (top row) and patch-AGOP (bottom row) per layer, with a colour bar."""
    from ..plotting import figure

    fig, ax = figure(2, len(mats), width=2.2, height=2.2)
    im = None
    for j, (layer, m) in enumerate(mats.items()):
        for i, k in enumerate(("cnfm", "agop")):
            im = ax[i, j].imshow(_minmax(m[k]), cmap="viridis", vmin=0, vmax=1)
            ax[i, j].set_title(f"{k.upper()} {layer}")
            ax[i, j].set_xticks([])
            ax[i, j].set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=ax.ravel().tolist(), shrink=0.8, label="min-max scaled")
    return fig


def plot_eigvecs(mats: dict[str, np.ndarray], shape: tuple[int, int, int], k: int):
    """Top-k eigenvectors of each matrix reshaped to (c_in, q, q), min-max scaled (RGB if c_in = 3)."""
    from ..plotting import figure

    fig, ax = figure(len(mats), k, width=1.0, height=1.1)
    im = None
    for i, (name, M) in enumerate(mats.items()):
        _, V = np.linalg.eigh(M)  # ascending eigenvalues
        for j in range(k):
            v = V[:, -1 - j].reshape(shape)  # (c_in, q, q)
            img = _minmax(v).transpose(1, 2, 0) if shape[0] == 3 else _minmax(v.mean(0))
            im = ax[i, j].imshow(img, cmap="gray", vmin=0, vmax=1)
            ax[i, j].set_xticks([])
            ax[i, j].set_yticks([])
            ax[i, j].set_title(f"{name} #{j + 1}", fontsize=6)
    if im is not None and shape[0] != 3:
        fig.colorbar(im, ax=ax.ravel().tolist(), shrink=0.8, label="min-max scaled")
    return fig


def plot_vs_n(curve: dict[str, list[tuple[int, float]]], metric: str):
    """Trained ρ(CNFM, G^α) per layer against the number of probe images (log scale, one tick per n)."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    from ..plotting import figure

    fig, ax = figure()
    for layer, pts in curve.items():
        n, r = zip(*pts)
        ax[0, 0].plot(n, r, marker="o", label=layer)
    ns = sorted({n for pts in curve.values() for n, _ in pts})
    ax[0, 0].set_xscale("log")
    ax[0, 0].xaxis.set_major_locator(FixedLocator(ns))
    # label every n except one within a factor 1.6 below the next (the full set is always labelled)
    labels = [str(n) if i == len(ns) - 1 or ns[i + 1] / n >= 1.6 else "" for i, n in enumerate(ns)]
    ax[0, 0].xaxis.set_major_formatter(FixedFormatter(labels))
    ax[0, 0].xaxis.set_minor_locator(NullLocator())
    ax[0, 0].set_xlabel("probe images n (nested subsets)")
    ax[0, 0].set_ylabel(f"trained ρ(CNFM, G) ({metric})")
    ax[0, 0].legend(fontsize=6)
    return fig


#: summary key -> CNFARow quantity (per layer, in the primary metric; every metric under ``variants``).
SUMMARY_KEYS = {"cnfa_trained": "rho_trained", "cnfa_untrained": "rho_untrained",
                "baseline_ival": "rho_fresh_trained", "baseline_own_init": "rho_init_trained",
                "init_vs_fresh": "rho_fresh", "null_init_K": "null_init_K",
                "null_random_eigvecs": "null_random_eigvecs", "cnfa_centered": "rho_centered",
                "null_centered_init_K": "null_centered_init_K",
                "null_centered_random_eigvecs": "null_centered_random_eigvecs"}
#: baselines the claim is judged against, with their margin keys.
CLAIM_BASELINES = {"baseline_ival": "margin_ival", "null_init_K": "margin_null_init_K",
                   "null_random_eigvecs": "margin_null_random_eigvecs"}


def _mean(d: dict):
    vals = [v for v in d.values() if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarise(rows, metric: str) -> dict:
    """Per-layer summary dicts of a list of CNFARow (primary metric), all metrics under ``variants``,
    and the claim's margins (Pearson): trained ρ minus each baseline of :data:`CLAIM_BASELINES`."""
    from ..probes._correlation import METRICS

    def by(q, m=metric):
        return {r.layer: r.variants[m][q] for r in rows}

    s: dict = {k: by(q) for k, q in SUMMARY_KEYS.items()}
    s["null_random_eigvecs_sd"] = {r.layer: r.null_random_eigvecs_sd for r in rows}
    s.update({f"{k}_mean": _mean(s[k]) for k in SUMMARY_KEYS})
    s["variants"] = {m: {k: by(q, m) for k, q in SUMMARY_KEYS.items()} for m in METRICS}
    pe = s["variants"]["pearson"]
    margins = []
    for base, mk in CLAIM_BASELINES.items():
        s[mk] = {L: (None if pe[base][L] is None else pe["cnfa_trained"][L] - pe[base][L]) for L in pe["cnfa_trained"]}
        margins += [v for v in s[mk].values() if v is not None]
    complete = all(v is not None for mk in CLAIM_BASELINES.values() for v in s[mk].values())
    s["cnfa_margin_min"] = float(min(margins)) if margins and complete else None
    s["untrained_source"] = rows[0].untrained_source if rows else None
    return s


def run(cfg: CNFAConfig, ctx) -> dict:
    from ..probes import cnfa, cnfa_reference_layers
    from ..train.classifier import evaluate, fit_classifier

    p, m = cfg.probe, cfg.model
    data, pool, test, data_name = _load(cfg, ctx.generator("data", "cpu"), _n_probe(cfg))
    C, H = pool.shape[1], pool.shape[2]
    pretrained = m.weights is not None
    if pretrained:
        sd = _read_weights(m.weights)
        n_classes = m.num_classes or _classes_of(sd)
    else:
        n_classes = m.num_classes or data.num_classes
    model = _build(cfg, C, H, n_classes, derive_seed(cfg.seed, "init"))
    if pretrained:
        _load_weights(model, m.weights)
    model = model.to(ctx.device)
    init_state = None if pretrained else copy.deepcopy(model.state_dict())
    fresh = _build(cfg, C, H, n_classes, derive_seed(cfg.seed, "fresh"))
    if p.fresh_init == "torchvision":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "fresh-torchvision"))
            _torchvision_init_(fresh)
    fresh = fresh.to(ctx.device)
    layers = cnfa_reference_layers(model) if p.layers == "reference" else None
    n_probe = min(_n_probe(cfg), len(pool))
    gp = ctx.generator("probe", "cpu")
    idx = torch.randperm(len(pool), generator=gp)[:n_probe]
    Xp = pool[idx].to(ctx.device)  # (n_images, C, H, W)
    kw = dict(layers=layers, init_state=init_state, fresh_model=fresh, metric=p.metric, alpha=p.alpha,
              outputs=p.outputs, n_sketch=p.n_sketch if p.outputs == "sketch" else None,
              generator=ctx.generator("sketch") if p.outputs == "sketch" else None, batch_size=p.batch_size,
              drop_bias=p.drop_bias, n_null_draws=p.n_null_draws, null_generator=ctx.generator("nulls", "cpu"),
              cache={})  # the untrained network's K's are computed once
    history: dict[str, list[tuple[int, float]]] = {}

    def measure(epoch: int, net, test_acc: float | None, **extra):
        out = cnfa(net, Xp, **kw, **extra)
        rows = out[0] if isinstance(out, tuple) else out
        for r in rows:
            ctx.check_finite(r.rho_trained, f"rho_trained[{r.layer}]")
            history.setdefault(r.layer, []).append((epoch, r.rho_trained))
            ctx.log_metrics(epoch=epoch, test_acc=test_acc, **{k: v for k, v in r.to_dict().items() if k != "variants"})
        return out

    t = cfg.train
    test_acc, train_loss, epochs_run = None, None, 0
    if pretrained:
        ctx.log.info("CNFA of %s (%s) from %s on %d images", m.arch, m.variant, m.weights, Xp.shape[0])
        if test is not None:
            n_ev = min(p.eval_images, len(test[1]))
            test_acc = float(evaluate(model, test[0][:n_ev], test[1][:n_ev], device=ctx.device,
                                      batch_size=max(p.batch_size, 1))["acc"])
        rows, mats = measure(0, model, test_acc, return_matrices=True, matrices_max_dim=p.save_max_dim)
    else:
        ctx.log.info("CNFA at init on %d images", Xp.shape[0])
        measure(0, model, None, nulls=False)
        probe_epochs = set(t.probe_epochs)

        def callback(epoch, net, hist):
            if epoch in probe_epochs and epoch < t.epochs:
                measure(epoch, net, hist.test_acc[-1], nulls=False)
            return t.stop_loss > 0 and hist.train_loss[-1] < t.stop_loss

        hist = fit_classifier(model, data, loss=t.loss, optimizer=t.optimizer, lr=t.lr, weight_decay=t.weight_decay,
                              epochs=t.epochs, batch_size=t.batch_size, schedule=t.schedule, checkpoints=(),
                              generator=ctx.generator("train", "cpu"), device=ctx.device, progress=True,
                              callback=callback)
        for rec in hist.records():
            ctx.log_metrics(kind="train", **rec)
        test_acc, train_loss, epochs_run = hist.test_acc[-1], hist.train_loss[-1], hist.epoch[-1]
        rows, mats = measure(epochs_run, model, test_acc, return_matrices=True, matrices_max_dim=p.save_max_dim)
    rd = [{k: v for k, v in r.to_dict().items() if k != "variants"} for r in rows]
    vs_n: dict[str, list[tuple[int, float]]] = {}
    if p.vs_n_images:
        sizes = [k for k in (16, 64, 256, 1024, 4096) if k < Xp.shape[0]] + [Xp.shape[0]]
        for k in sizes:
            sub_rows = rows if k == Xp.shape[0] else cnfa(
                model, Xp[:k], layers=layers, metric=p.metric, alpha=p.alpha, outputs=p.outputs,
                n_sketch=kw["n_sketch"], generator=kw["generator"], batch_size=p.batch_size, drop_bias=p.drop_bias,
                nulls=False)
            for r in sub_rows:
                vs_n.setdefault(r.layer, []).append((k, r.rho_trained))
        ctx.save_arrays(**{f"rho_vs_n_images/{layer}": np.array(pts) for layer, pts in vs_n.items()})
    mats_np = {layer: {k: v.numpy() for k, v in mm.items()} for layer, mm in mats.items()}
    ctx.save_arrays(**{f"{k}/{layer}": v for layer, mm in mats_np.items() for k, v in mm.items()},
                    **{f"rho_vs_epoch/{layer}": np.array(pts) for layer, pts in history.items()})

    src = "the run's own init" if init_state is not None else "the fresh init"
    tag = (f"metric {p.metric}, α = {p.alpha:g}, {Xp.shape[0]} images"
           + (f", sketched outputs (m={p.n_sketch})" if p.outputs == "sketch" else "")
           + (", conv bias dropped (reference quirk)" if p.drop_bias else ""))
    what = f"{m.arch} weights {os.path.basename(m.weights)}" if pretrained else f"after {epochs_run} epochs"
    ctx.save_figure(plot_bars(rd, p.metric), "cnfa_bars",
                    f"CNFA per conv layer ({what}; {tag}) against the baselines: untrained net ({src}), the "
                    f"reference's i_val, own init, and the structural nulls (trained W̄ with the untrained K₀; "
                    f"K's spectrum on {p.n_null_draws} random eigenbases, mean).")
    if not pretrained:
        ctx.save_figure(plot_curve(history, p.metric), "cnfa_vs_epoch", f"ρ(CNFM, G^α) over training ({tag}).")
    if mats_np:
        ctx.save_figure(plot_heatmaps(mats_np), "cnfm_agop_heatmaps",
                        f"CNFM W̄ᵀW̄ and patch-AGOP per layer ({what}), min-max scaled; (c_in, row, col) order; "
                        f"layers with c_in·q² ≤ {p.save_max_dim}.")
    if vs_n:
        ctx.save_figure(plot_vs_n(vs_n, p.metric), "cnfa_vs_n_images",
                        f"Trained ρ(CNFM, G^α) against the number of probe images (nested subsets; {tag}).")
    first = rows[0].layer
    if first in mats_np:
        w = model.get_submodule(first).weight
        ctx.save_figure(plot_eigvecs({"CNFM": mats_np[first]["cnfm"], "AGOP": mats_np[first]["agop"]},
                                     tuple(w.shape[1:]), min(p.n_eigvecs, w[0].numel())),
                        "eigvecs_first_layer", f"Top eigenvectors of the CNFM and AGOP of layer {first} ({what}) "
                                               "as filters (each min-max scaled on its own; signs arbitrary).")

    s = summarise(rows, p.metric)
    folder = cfg.data.dataset == "folder"
    s.update(metric=p.metric, alpha=p.alpha, n_images=int(Xp.shape[0]), sketched=p.outputs == "sketch",
             test_acc=None if folder else test_acc, folder_acc=test_acc if folder else None,
             final_train_loss=train_loss, epochs_run=epochs_run, data=data_name,
             arch=m.arch, weights=m.weights, pretrained=pretrained, drop_bias=p.drop_bias,
             layers=[r.layer for r in rows], n_null_draws=p.n_null_draws,
             cnfa_trained_vs_n_images={str(k): float(np.mean([dict(pts)[k] for pts in vs_n.values()]))
                                       for k, _ in next(iter(vs_n.values()), [])})
    return s


def _claim_value(s: dict) -> float | None:
    if s.get("alpha", 1.0) != 1.0:
        return None
    return s.get("cnfa_margin_min")


def _check_claim(s: dict) -> tuple[str, bool | None]:
    v = _claim_value(s)
    if v is None:
        why = "not measured at α = 1" if s.get("alpha", 1.0) != 1.0 else "not measured (a baseline is missing)"
        return why, None
    tr = s["variants"]["pearson"]["cnfa_trained"]
    parts = []
    for L in tr:
        ms = ", ".join(f"{lab} {s[mk][L]:+.3f}" for lab, mk in (("i_val", "margin_ival"),
                                                                ("K₀", "margin_null_init_K"),
                                                                ("rand-eig", "margin_null_random_eigvecs")))
        parts.append(f"{L}: ρ {tr[L]:.3f} ({ms})")
    return f"Pearson, margins trained − baseline per layer: {'; '.join(parts)}; smallest {v:+.3f}", bool(v > 0)


EXPERIMENT = register(Experiment(
    name="cnfa",
    summary="CNFA: CNN filter covariances vs patch-AGOPs, against the reference baseline and structural nulls "
            "(Beaglehole+ 2023)",
    config=CNFAConfig,
    presets={"tiny": tiny, "paper": paper, "imagenet": imagenet},
    run=run,
    paper_presets=("paper", "imagenet"),
    claims=(Claim(
        text="Covariances of filters (CNFM) of trained CNNs correlate highly with patch-based AGOPs",
        source="Beaglehole et al., arXiv:2309.00570 abstract; reference cnfa_verification (i_val vs r_val); "
               "spec agop_rfm §5",
        criterion="in every measured conv layer, Pearson ρ(CNFM, G) at α = 1 exceeds (i) the reference's baseline "
                  "i_val = ρ(CNFM of a fresh default init, trained CNFM), (ii) the structural null ρ(CNFM, "
                  "W̄ᵀK₀W̄) (trained filters, the untrained network's conv-output gradient Gram K₀) and (iii) the "
                  "mean over random eigenbases Q of ρ(CNFM, W̄ᵀQΛQᵀW̄) (the trained K's spectrum Λ); value = the "
                  "smallest margin over layers and baselines, the claim holds iff it is > 0",
        check=_check_claim,
        reference="per-layer values not transcribed here (the paper body was not readable offline; spec agop_rfm: "
                  "TODO [paper?]); the paper reports trained ρ above the init baseline in every layer",
        value=_claim_value),),
))
