"""Relative stability to diffeomorphisms predicts performance ([N21]; [I23] layer-wise).

Methods. Several zoo networks are trained on an image data set (scikit-learn digits by
default, upsampled to ``input_size``; CIFAR-10 from a local path), optionally with Gaussian
corruption of the training (and test) images (spec diffeo_pooling §8.1). For every trained
net we measure on held-out probes (§3.2, mean protocol) the sensitivity to max-entropy
diffeomorphisms at typical displacement δ (§1), D_f; to noise of the same norm, G_f; and
R_f = D_f/G_f; and the test error ε. Across nets we fit ε = a·R_f^b and report Pearson's ρ
of the logs ([N21]: b ≈ 0.5, a ≈ 0.2 on CIFAR-10). For chosen nets we also measure D_k, G_k,
R_k after every layer at init, trained, and trained with shuffled input channels (§4: channel
pooling destroyed, spatial pooling kept), and the Laplacian spectra of the conv filters (§5).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, ExperimentConfig, F, sub
from ..models.zoo import available as _zoo_names
from .registry import Claim, Experiment, register

NAME = "stability"


@dataclass(frozen=True)
class DataConfig:
    dataset: str = F("digits", "digits (scikit-learn 8x8, offline) or cifar10 (needs path)",
                     choices=("digits", "cifar10"))
    path: str | None = F(None, "folder holding cifar-10-python.tar.gz (dataset=cifar10 only)")
    input_size: int = F(16, "images are resized (bilinear) to input_size² pixels; digits are 8x8, "
                        "LeNet needs >= 16, VGG >= 32", ge=8)
    n_train: int | None = F(None, "training subset size (stratified); None: all", ge=10)
    corruption_stds: tuple[float, ...] = F((0.0,), "Gaussian corruption norms ‖std·N(0,I)/√(CHW)‖ ≈ "
                                           "std added to train and test images; one run per value",
                                           ge=0, tag="[code]")

    def check(self) -> None:
        if self.dataset == "cifar10":
            if self.path is None:
                raise ConfigError("path", "required with dataset=cifar10 (folder of the local archive)")
            from ..data.images import require

            require("cifar10", self.path, "path")  # a missing archive: refused before any folder exists


@dataclass(frozen=True)
class NetsConfig:
    names: tuple[str, ...] = F(("fc2", "lenet", "vanilla"), "zoo architectures (featlab.models.get)",
                               choices=tuple(_zoo_names()))
    vanilla_depth: int = F(3, "depth of the 'vanilla' CNN", ge=1)
    vanilla_width: int = F(32, "channels of the 'vanilla' CNN", ge=1, cost="time ∝ width²")
    layerwise: tuple[str, ...] = F(("lenet", "vanilla"), "nets that also get per-layer D/G/R (init, "
                                   "trained, shuffled) and filter spectra (first corruption value only)",
                                   choices=tuple(_zoo_names()), length=(0, None))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = F(30, "epochs", ge=1)
    lr: float = F(0.05, "SGD learning rate (momentum 0.9)", gt=0)
    batch_size: int = F(128, "mini-batch size", ge=2, tag="[code]")
    weight_decay: float = F(5e-4, "weight decay on tensors with ndim > 1 ([I23])", ge=0, tag="[code]")
    schedule: str = F("cosine", "lr schedule (cosine_reference: climbs back after 0.8·epochs)",
                      choices=("cosine", "cosine_reference", "none"), quirk="cosine_reference")
    fc_lr: float = F(0.01, "Adam learning rate of the fully connected nets (fc*), trained as in "
                     "[I23] with Adam, no schedule, no weight decay (reference lr 0.1; SGD at the CNN "
                     "settings barely moves their mean-field-scaled readout)", gt=0)


@dataclass(frozen=True)
class ProbeConfig:
    n_probe: int = F(500, "probe images from the test set ([I23]: 500)", ge=2, tag="[code]")
    delta: float = F(1.0, "typical diffeo displacement δ in pixels (sets T)", gt=0, tag="[code]")
    cut: int = F(3, "diffeo high-frequency cut-off c", ge=2, tag="[code]")
    interp: str = F("linear", "warp interpolation", choices=("linear", "nearest", "gaussian"),
                    tag="[code]")
    protocol: str = F("mean", "mean ([I23]) or median ([N21]) protocol", choices=("mean", "median"))
    corrupt_probes: bool = F(True, "probes carry the training corruption, std·N(0, I)/√(C·H·W) drawn once "
                             "per corruption value, as the test error does ([I23] --corrupt_test 1)",
                             tag="[code]")


@dataclass(frozen=True)
class StabilityConfig(ExperimentConfig):
    data: DataConfig = sub(DataConfig, "image data and corruption")
    nets: NetsConfig = sub(NetsConfig, "architectures")
    train: TrainConfig = sub(TrainConfig, "training (§8.1)")
    probe: ProbeConfig = sub(ProbeConfig, "D, G, R measurement (§3)")


def tiny() -> StabilityConfig:
    c = StabilityConfig()
    return dataclasses.replace(
        c, threads=1, data=dataclasses.replace(c.data, n_train=600),
        nets=dataclasses.replace(c.nets, vanilla_width=12, vanilla_depth=2),
        train=dataclasses.replace(c.train, epochs=15, batch_size=64, lr=0.1),
        probe=dataclasses.replace(c.probe, n_probe=100))


def paper() -> StabilityConfig:
    c = StabilityConfig()
    return dataclasses.replace(
        c, data=dataclasses.replace(c.data, input_size=32, corruption_stds=(0.0, 0.1, 1.0, 3.0)),
        nets=dataclasses.replace(c.nets, names=("fc2", "fc4", "lenet", "vanilla", "alexnet", "vgg11",
                                                "vgg11_bn", "resnet18"),
                                 layerwise=("lenet", "vgg11", "vgg11_bn", "alexnet"), vanilla_width=64,
                                 vanilla_depth=4),
        train=dataclasses.replace(c.train, epochs=60))


# ----------------------------------------------------------------------------------------------
def _load(cfg: StabilityConfig, ctx):
    from ..data import images

    d = cfg.data
    if d.dataset == "digits":
        data = images.load_digits(generator=ctx.generator("split", "cpu"))
    else:
        if d.path is None:
            raise ValueError("data.path: required with dataset=cifar10 (folder of the local archive)")
        data = images.load_cifar10(d.path)
    if d.n_train is not None and d.n_train < len(data.y_train):
        data = data.subset(d.n_train, ctx.generator("subset", "cpu"))
    if data.x_train.shape[-1] != d.input_size:
        rs = lambda x: torch.nn.functional.interpolate(x, size=(d.input_size, d.input_size),  # noqa: E731
                                                       mode="bilinear", align_corners=False)
        data = dataclasses.replace(data, x_train=rs(data.x_train), x_test=rs(data.x_test))
    return data.standardise()


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _layers(model: nn.Module) -> list[str]:
    """Leaf modules called once per forward pass, in order (dropout/flatten left out)."""
    skip = (nn.Dropout, nn.Flatten, nn.Identity)
    return [n for n, m in model.named_modules() if n and not list(m.children()) and not isinstance(m, skip)]


def _stab(model, X, cfg, ctx, stream, layers=None, bn_mode="eval"):
    from ..probes import stability

    p = cfg.probe
    return stability(model, X, delta=p.delta, cut=p.cut, interp=p.interp, protocol=p.protocol,
                     layers=layers, bn_mode=bn_mode, generator=ctx.generator(stream))


def _spectra(model: nn.Module) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from ..probes import laplacian_spectrum

    out = {}
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size[0] == m.kernel_size[1] >= 2:
            s = laplacian_spectrum(m.weight, normalise=True)
            out[n] = (s.eigenvalues.numpy(), s.gamma.numpy())
    return out


def fit_power_law(R, err) -> tuple[float, float, float]:
    """(a, b, ρ): least-squares fit log ε = log a + b log R and Pearson ρ of the logs."""
    lr, le = np.log(np.asarray(R, float)), np.log(np.asarray(err, float))
    if len(lr) < 2 or np.ptp(lr) == 0:
        return float("nan"), float("nan"), float("nan")
    b, loga = np.polyfit(lr, le, 1)
    rho = float(np.corrcoef(lr, le)[0, 1]) if len(lr) > 2 or np.ptp(le) > 0 else float("nan")
    return float(np.exp(loga)), float(b), rho


def run(cfg: StabilityConfig, ctx) -> dict:
    from ..models.zoo import get
    from ..probes import shuffle_channels
    from ..train import fit_classifier
    from ..train.classifier import _corrupt

    data = _load(cfg, ctx)
    C, H, _ = data.shape
    g = ctx.generator("probes", "cpu")
    idx = torch.randperm(len(data.y_test), generator=g)[:cfg.probe.n_probe]
    X = data.x_test[idx].to(ctx.device)  # (P, C, H, W) probes, seeded (the reference's are not)
    ctx.log.info("data %s: %d train, %d test, %d probes of %s", data.name, len(data.y_train),
                 len(data.y_test), len(X), tuple(X.shape[1:]))
    n_test = len(data.y_test)

    rows, layerwise, spectra = [], {}, {}
    runs = [(std, name) for std in cfg.data.corruption_stds for name in cfg.nets.names]
    with ctx.progress(len(runs), desc="nets") as bar:
        for std, name in runs:
            tag = f"{name}@{std:g}"
            kw = dict(depth=cfg.nets.vanilla_depth, width=cfg.nets.vanilla_width) if name == "vanilla" else {}
            model = get(name, in_channels=C, num_classes=data.num_classes, input_size=H,
                        generator=ctx.generator(f"init-{tag}", "cpu"), **kw).to(ctx.device)
            bn0 = "batch" if _has_bn(model) else "eval"
            deep = name in cfg.nets.layerwise and std == cfg.data.corruption_stds[0]
            lay = _layers(model) if deep else None
            Xc = X
            if cfg.probe.corrupt_probes and std > 0:  # the same corrupted probes for init/trained/shuffled
                Xc = _corrupt(X, std, ctx.generator(f"probe-corruption-{std:g}", X.device))
            s0 = _stab(model, Xc, cfg, ctx, "stab", lay, bn0)
            sp0 = _spectra(model) if deep else {}
            t = cfg.train
            opt = dict(optimizer="adam", lr=t.fc_lr, weight_decay=0.0, schedule="none") if name.startswith("fc") \
                else dict(optimizer="sgd", lr=t.lr, weight_decay=t.weight_decay, schedule=t.schedule)
            hist = fit_classifier(model, data, loss="ce", **opt, wd_on="ndim>1",
                                  epochs=t.epochs, batch_size=t.batch_size,
                                  corruption_std=std, checkpoints=(),
                                  generator=ctx.generator(f"train-{tag}"), device=ctx.device,
                                  progress=False)
            ctx.check_finite(hist.train_loss[-1], f"{tag} training loss")
            err = max(1 - hist.test_acc[-1], 1 / n_test)  # ε floored at one test error
            s1 = _stab(model, Xc, cfg, ctx, "stab", lay)
            row = dict(net=name, corruption=std, test_error=err, D_init=s0["D"], G_init=s0["G"],
                       R_init=s0["R"], D=s1["D"], G=s1["G"], R=s1["R"])
            ctx.log_metrics(**row)
            rows.append(row)
            if deep:
                sh = shuffle_channels(model, ctx.generator(f"shuffle-{tag}", "cpu"))
                s2 = _stab(sh, Xc, cfg, ctx, "stab", lay)
                layerwise[name] = {"layers": lay, **{f"{q}_{w}": [s["layers"][n][q] for n in lay]
                                   for w, s in (("init", s0), ("trained", s1), ("shuffled", s2))
                                   for q in ("D", "G", "R")}}
                spectra[name] = {"init": sp0, "trained": _spectra(model)}
            ctx.log.info("%s: test error %.3f, R_f %.3g (init %.3g)", tag, err, s1["R"], s0["R"])
            bar.update(1)

    R = np.array([r["R"] for r in rows])
    eps = np.array([r["test_error"] for r in rows])
    na = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731 - too few points: None, never NaN
    a, b, rho = fit_power_law(R, eps)
    _, bD, rhoD = fit_power_law([r["D"] for r in rows], eps)
    _, bG, rhoG = fit_power_law([r["G"] for r in rows], eps)
    ctx.save_arrays(R_f=R, D_f=np.array([r["D"] for r in rows]), G_f=np.array([r["G"] for r in rows]),
                    test_error=eps, R_f_init=np.array([r["R_init"] for r in rows]))
    summary = {"a": na(a), "b": na(b), "rho": na(rho), "rho_D": na(rhoD), "rho_G": na(rhoG), "n_points": len(rows),
               "R_layers_init": {n: v["R_init"] for n, v in layerwise.items()},
               "R_layers_trained": {n: v["R_trained"] for n, v in layerwise.items()},
               "R_layers_shuffled": {n: v["R_shuffled"] for n, v in layerwise.items()},
               "spectrum_lambda0_init": {n: [float(g[0]) for _, g in v["init"].values()] for n, v in spectra.items()},
               "spectrum_lambda0_trained": {n: [float(g[0]) for _, g in v["trained"].values()]
                                            for n, v in spectra.items()},
               "nets": {f"{r['net']}@{r['corruption']:g}": {k: r[k] for k in ("test_error", "D", "G", "R", "R_init")}
                        for r in rows}}
    ctx.save_figure(plot_correlation(rows, a, b), "correlation",
                    "Test error ε against D_f, G_f and R_f of the trained nets (log-log, mean "
                    f"protocol, δ = {cfg.probe.delta:g} px, c = {cfg.probe.cut}); line: fit ε = a·R_f^b.")
    if layerwise:
        ctx.save_figure(plot_layers(layerwise), "layers",
                        "D_k, G_k, R_k after each layer: init, trained, and trained with shuffled "
                        "input channels (channel pooling destroyed, spatial pooling kept).")
        ctx.save_figure(plot_spectra(spectra), "spectra",
                        "Normalised filter spectra on the grid Laplacian (degenerate eigenspaces "
                        "merged): low λ = smooth, average-pooling-like filters.")
    return summary


# ----------------------------------------------------------------------------------------------
def plot_correlation(rows: list[dict], a: float, b: float):
    from ..plotting import figure

    fig, ax = figure(1, 3)
    eps = np.array([r["test_error"] for r in rows])
    for j, q in enumerate(("D", "G", "R")):
        x = np.array([r[q] for r in rows])
        for r, xi, ei in zip(rows, x, eps):
            ax[0, j].loglog(xi, ei, "o")
            ax[0, j].annotate(r["net"], (xi, ei), fontsize=6)
        ax[0, j].set_xlabel(f"{q}_f (mean protocol)")
        ax[0, j].set_ylabel("test error ε (fraction)")
    x = np.array([r["R"] for r in rows])
    if np.isfinite(a) and len(x):
        xs = np.geomspace(x.min(), x.max(), 20)
        ax[0, 2].loglog(xs, a * xs ** b, "k:", label=f"ε = {a:.2g}·R^{b:.2f}")
        ax[0, 2].legend()
    return fig


def plot_layers(layerwise: dict):
    from ..plotting import figure

    nets = list(layerwise)
    fig, ax = figure(len(nets), 3)
    for i, n in enumerate(nets):
        v = layerwise[n]
        k = np.arange(1, len(v["layers"]) + 1)
        for j, q in enumerate(("D", "G", "R")):
            for w, st in (("init", "--"), ("trained", "-"), ("shuffled", ":")):
                ax[i, j].semilogy(k, v[f"{q}_{w}"], st, marker=".", label=w)
            ax[i, j].set_xlabel("layer k (leaf modules in order)")
            ax[i, j].set_ylabel(f"{q}_k")
            ax[i, j].set_title(n)
        ax[i, 0].legend()
    return fig


def plot_spectra(spectra: dict):
    from ..plotting import figure

    nets = list(spectra)
    fig, ax = figure(len(nets), 2)
    for i, n in enumerate(nets):
        for j, w in enumerate(("init", "trained")):
            for layer, (lam, gam) in spectra[n][w].items():
                ax[i, j].plot(lam, gam, marker="o", label=layer)
            ax[i, j].set_xlabel("Laplacian eigenvalue λ")
            ax[i, j].set_ylabel("γ_λ (normalised)")
            ax[i, j].set_title(f"{n}, {w}")
            if spectra[n][w]:
                ax[i, j].legend(fontsize=6)
    return fig


def _check_b(s: dict):
    b, rho = s.get("b"), s.get("rho")
    if b is None or not np.isfinite(b):
        return "n/a", None
    return f"b = {b:.2f}, ρ = {rho:.2f} over {s.get('n_points')} nets", bool(abs(b - 0.5) < 0.25 and rho > 0.5)


def _check_R_drop(s: dict):
    nets = s.get("nets") or {}
    if not nets:
        return "n/a", None
    ratios = [v["R"] / v["R_init"] for v in nets.values() if v["R_init"] > 0]
    med = float(np.median(ratios))
    return f"median R_trained/R_init = {med:.2g}", bool(med < 1)


def _check_spectra(s: dict):
    a, b = s.get("spectrum_lambda0_init") or {}, s.get("spectrum_lambda0_trained") or {}
    pairs = [(a[n][0], b[n][0]) for n in a if a[n] and b.get(n)]
    if not pairs:
        return "n/a", None
    txt = ", ".join(f"{n}: {a[n][0]:.2f} -> {b[n][0]:.2f}" for n in a if a[n] and b.get(n))
    return f"first-layer λ = 0 weight (normalised γ) {txt}", all(t > i for i, t in pairs)


EXPERIMENT = register(Experiment(
    name=NAME,
    summary="zoo nets: D_f, G_f, R_f vs test error (fit ε = a·R_f^b), per-layer and shuffled (N21, I23)",
    config=StabilityConfig,
    presets={"tiny": tiny, "paper": paper},
    run=run,
    claims=(
        Claim("Test error follows ε ≈ 0.2·√R_f across architectures (b ≈ 0.5).", "[N21] abstract",
              "|b − 0.5| < 0.25 and Pearson ρ(log R_f, log ε) > 0.5", _check_b),
        Claim("R_f is of order one at initialisation and decreases during training.", "[N21] abstract",
              "median over nets of R_f(trained)/R_f(init) < 1", _check_R_drop),
        Claim("Trained first-layer filters concentrate on low Laplacian eigenvalues (smooth, "
              "average-pooling-like: spatial pooling).", "[I23] §5 (spec)",
              "normalised γ at λ = 0 of the first conv layer grows in training, for every layer-wise net",
              _check_spectra),
    ),
))
