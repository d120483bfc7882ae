"""Spatial pooling and the loss of spatial information: 1D scale detection ([I23] Fig. 7).

Methods. Two-pixel images of length L are labelled by whether both active pixels fall in the
same block of size ξ (Task 2; or lie closer than ξ, Task 1) (spec diffeo_pooling §6.2). Two
SimpleCNNs (§6.3) with filter size F are trained by SGD on the hinge loss: one with stride F
in every block ("stride") and one without stride ("nostride"). Before and after training we
measure, after every block k, the relative sensitivities D_k (to the 1D local diffeo: each
active pixel moves by ±1 unless it would change block), G_k (to rectified noise matched to the
diffeo) and R_k = D_k/G_k (§3, mean protocol). The constant-filter theory (§7) predicts, with
A_k the effective receptive field (s^k with stride, ∝ √k without):

    D_k ∝ A_k^-α_s  (α_s = 1 with stride, 2 without),   G_k ∝ A_k,   R_k = D_k/G_k.

We fit the slopes of log D_k, log G_k, log R_k against log A_k and overlay the theory.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ExperimentConfig, F, sub
from .registry import Claim, Experiment, register

_F = F  # ModelConfig has a field named F (the filter size), which shadows F in its body

NAME = "pooling"
VARIANTS = ("stride", "nostride")


@dataclass(frozen=True)
class DataConfig:
    dim: int = F(1, "1: the 1D task (§6.2) with the ±1 local diffeo; 2: two points on an L×L grid "
                 "(§6.1, L2 distance, task/P_val unused) with the 8-neighbour local translation",
                 choices=(1, 2))
    L: int = F(128, "input length (1D) or side (2D), pixels", ge=4, tag="[code]")
    xi: int = F(32, "scale ξ in pixels: block size (task 2) or distance threshold (task 1)", ge=1,
                tag="[code]")
    gap: int = F(0, "task 1 only: labels need d < ξ − gap (+1) or d >= ξ + gap (−1), pixels", ge=0,
                 tag="[code]")
    task: int = F(2, "1: periodic distance vs ξ; 2: same block of size ξ (ξ must divide L)",
                  choices=(1, 2), tag="[code]")
    P: int = F(1024, "training points (balanced)", ge=2, tag="[code]")
    P_val: int = F(128, "validation points (balanced)", ge=2, tag="[code]")
    P_test: int = F(2048, "test points (balanced; the reference uses all the rest)", ge=2)


@dataclass(frozen=True)
class ModelConfig:
    F: int = _F(2, "filter size (pixels)", ge=1, tag="[code]")
    depth: int = _F(7, "number of conv blocks (with stride F = 2 and L = 128, 7 reach length 1)",
                   ge=1, tag="[code]")
    width: int = _F(1000, "channels H per block", ge=1, tag="[code]", cost="time ∝ width²")
    activation: str = _F("relu", "block nonlinearity", choices=("relu", "tanh"))
    alpha: float = _F(1.0, "output scale α̃ = 10^-a_exp (reference a_exp = 0)", gt=0, tag="[code]")
    stride_layers: str = _F("all", "strided blocks of the 'stride' net: all (intended) or first "
                           "(published ConvNetGAPMF_1d, whose idx_strides never matches; "
                           "scale_detection_1d convolutional_nets.py)",
                           choices=("all", "first"), quirk="first", tag="[code]")


@dataclass(frozen=True)
class TrainConfig:
    lr: float = F(0.01, "SGD learning rate per channel LR; the step size is LR·H/α̃ (NTK scaling; "
                  "1/α̃ is the reference's loss prefactor)",
                  gt=0, tag="[code]")
    batch_size: int = F(8, "mini-batch size", ge=1, tag="[code]")
    epochs: int = F(300, "maximum epochs (reference: up to 6e5, stopping at zero training loss)",
                    ge=1)
    ridge: float = F(0.0, "penalty ridge·Σ W²/(H·depth) on every weight tensor of ndim > 1, as "
                     "weight decay 2·ridge/(H·depth) (reference ridge 0.01, p = 2); 0: stop at "
                     "zero training loss", ge=0, tag="[code]")


@dataclass(frozen=True)
class ProbeConfig:
    n_probe: int = F(512, "probe images for D/G/R, balanced, from the test set "
                     "(reference: 10% of all pairs)", ge=2)
    noise: str = F("rectified_mean", "noise matched to the diffeo: rectified (1D code) or sphere",
                   choices=("rectified_mean", "sphere"), tag="[code]")
    channel_mean: bool = F(False, "average each block output over channels before flattening "
                           "(an option of the 1D code)", tag="[code]")


@dataclass(frozen=True)
class PoolingConfig(ExperimentConfig):
    data: DataConfig = sub(DataConfig, "1D scale-detection data (§6.2)")
    model: ModelConfig = sub(ModelConfig, "SimpleCNN (§6.3)")
    train: TrainConfig = sub(TrainConfig, "SGD on the hinge loss")
    probe: ProbeConfig = sub(ProbeConfig, "layer-wise D, G, R (§3)")


def tiny() -> PoolingConfig:
    c = PoolingConfig()
    return dataclasses.replace(
        c, threads=1, data=dataclasses.replace(c.data, L=64, xi=16, P=128, P_val=32, P_test=256),
        model=dataclasses.replace(c.model, depth=6, width=48),
        train=dataclasses.replace(c.train, epochs=30),
        probe=dataclasses.replace(c.probe, n_probe=128))


def tiny2d() -> PoolingConfig:
    c = tiny()
    return dataclasses.replace(
        c, data=dataclasses.replace(c.data, dim=2, L=16, xi=6, gap=2, P=256, P_test=256),
        model=dataclasses.replace(c.model, depth=4, width=24))


def paper2d() -> PoolingConfig:
    """[I23] Fig. 8-9 sizes (28×28, ξ = 14, gap 2, ptr 1024) with the SimpleCNN (not the zoo)."""
    c = PoolingConfig()
    return dataclasses.replace(
        c, data=dataclasses.replace(c.data, dim=2, L=28, xi=14, gap=2, P=1024, P_test=2048),
        model=dataclasses.replace(c.model, depth=5, width=256), train=dataclasses.replace(c.train, epochs=300))


def paper() -> PoolingConfig:
    c = PoolingConfig()
    return dataclasses.replace(c, train=dataclasses.replace(c.train, epochs=3000))


# ----------------------------------------------------------------------------------------------
def _fit(A, Q):
    from ..theory.cnn_constant_filters import fit_exponent

    return fit_exponent(np.asarray(A), np.asarray(Q))


def _measure(model, X, cfg: PoolingConfig, ctx, stream: str) -> dict[str, np.ndarray]:
    """D_k, G_k, R_k per block (and the output), same diffeos and noise for every call."""
    from ..data.scale_detection import local_diffeo_1d, local_translation
    from ..probes import stability

    xi = cfg.data.xi
    if cfg.data.dim == 1:
        perturb = lambda x, g: local_diffeo_1d(x, xi, g)  # noqa: E731
    else:
        perturb = local_translation
    res = stability(model, X, perturbations=perturb,
                    noise=cfg.probe.noise, layers=model.block_names,
                    channel_mean=cfg.probe.channel_mean, eps=1e-30,
                    generator=ctx.generator(stream))
    out = {q: np.array([res["layers"][n][q] for n in model.block_names]) for q in ("D", "G", "R")}
    out.update({f"{q}_f": res[q] for q in ("D", "G", "R")})
    return out


def sgd_hyper(cfg: PoolingConfig) -> tuple[float, float]:
    """(lr, weight_decay) for SGD on the hinge loss that reproduce the reference objective.

    Reference: step LR·H on (1/α̃)·relu(1 − y·o) + ridge·Σ W²/(H·nbl). The 1/α̃ prefactor is
    folded into the step size LR·H/α̃; SGD applies weight decay inside that same step, so the
    decay is 2·ridge/(H·nbl)·α̃, which keeps the penalty's effective weight at ridge.
    """
    H, t = cfg.model.width, cfg.train
    return t.lr * H / cfg.model.alpha, 2 * t.ridge / (H * cfg.model.depth) * cfg.model.alpha


def _train(model, data, cfg: PoolingConfig, ctx, name: str):
    from ..train import fit_classifier

    t = cfg.train
    lr, wd = sgd_hyper(cfg)

    def stop(epoch, _m, hist):
        ctx.log_metrics(variant=name, epoch=epoch, train_loss=hist.train_loss[-1],
                        test_error=1 - hist.test_acc[-1])
        ctx.check_finite(hist.train_loss[-1], f"{name} training loss")
        return t.ridge == 0 and hist.train_loss[-1] == 0.0  # zero training loss reached

    return fit_classifier(model, data, loss="hinge", optimizer="sgd", lr=lr,
                          momentum=0.0,
                          weight_decay=wd, wd_on="ndim>1", epochs=t.epochs,
                          batch_size=t.batch_size, schedule="none", hinge_alpha=1.0,
                          checkpoints=(), generator=ctx.generator(f"train-{name}"),
                          device=ctx.device, progress=False, callback=stop)


@dataclass(frozen=True)
class _Data01:
    """Train/test view with 0/1 labels (what the hinge loss of ``fit_classifier`` takes)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _load(cfg: PoolingConfig, ctx):
    """(train/test data with 0/1 labels, balanced probes from the test set)."""
    from ..data.scale_detection import scale_detection_1d, twopoints_split

    d = cfg.data
    g = ctx.generator("data")
    if d.dim == 1:
        ds = scale_detection_1d(d.L, d.xi, d.gap, d.task, P=d.P, P_val=d.P_val, P_test=d.P_test,
                                generator=g, device=ctx.device)
        xtr, ytr, xte, yte = ds.x_train, ds.y_train, ds.x_test, ds.y_test  # test: [close, far]
    else:
        xtr, ytr, xte, yte = twopoints_split(d.P, d.P_test, d=d.L, xi=d.xi, gap=d.gap, generator=g,
                                             device=ctx.device)  # test: [far, close]
    n_half = len(xte) // 2
    h = min(cfg.probe.n_probe, len(xte)) // 2
    X = torch.cat([xte[:h], xte[n_half:n_half + h]])  # (n_probe, 1, L[, L]) balanced
    return _Data01(xtr, (ytr + 1) // 2, xte, (yte + 1) // 2), X


def run(cfg: PoolingConfig, ctx) -> dict:
    from ..models.simple_cnn import SimpleCNN
    from ..theory.cnn_constant_filters import PREDICTED_EXPONENTS, constant_filters

    d, m = cfg.data, cfg.model
    data, X = _load(cfg, ctx)
    ctx.log.info("data (%dD): %d train, %d test, %d probes (L=%d, xi=%d)", d.dim,
                 len(data.x_train), len(data.x_test), len(X), d.L, d.xi)

    summary: dict = {}
    curves: dict = {}
    with ctx.progress(len(VARIANTS), desc="pooling nets") as bar:
        for name in VARIANTS:
            layers = m.stride_layers if name == "stride" else "none"
            seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator(f"init-{name}", "cpu")))
            with torch.random.fork_rng(devices=[]):  # init from the run's seed, global RNG untouched
                torch.manual_seed(seed)
                net = SimpleCNN(dim=d.dim, F=m.F, stride_layers=layers, depth=m.depth, width=m.width,
                                activation=m.activation, alpha=m.alpha, stride=m.F).to(ctx.device)
            strides = net.strides
            # effective receptive field of block k (constant-filter profile, §7; in 2D its
            # linear size along one axis, so the 1D theory lines keep their meaning)
            A = _receptive_fields(m.F, strides, d.L)
            init = _measure(net, X, cfg, ctx, "probe")
            hist = _train(net, data, cfg, ctx, name)
            trained = _measure(net, X, cfg, ctx, "probe")
            err = 1 - hist.test_acc[-1]
            curves[name] = dict(A=A, init=init, trained=trained, hist=hist)
            summary[f"test_error_{name}"] = float(err)
            summary[f"train_loss_{name}"] = float(hist.train_loss[-1])
            summary[f"epochs_{name}"] = int(hist.epoch[-1]) if hist.epoch else 0
            for when, res in (("init", init), ("trained", trained)):
                for q in ("D", "G", "R"):
                    ctx.save_arrays(**{f"{name}_{when}_{q}": res[q]})
            ctx.save_arrays(**{f"{name}_A": A})
            ex = {q: _fit(A, trained[q]) for q in ("D", "G", "R")}
            ex0 = {q: _fit(A, init[q]) for q in ("D", "G", "R")}
            summary[f"alpha_{name}"] = -ex["D"]
            summary[f"g_exponent_{name}"] = ex["G"]
            summary[f"r_exponent_{name}"] = ex["R"]
            summary[f"alpha_{name}_init"] = -ex0["D"]
            summary[f"g_exponent_{name}_init"] = ex0["G"]
            summary[f"R_f_{name}_trained"] = float(trained["R_f"])
            ctx.log.info("%s: test error %.3f after %d epochs; alpha %.2f, G exponent %.2f (trained)",
                         name, err, summary[f"epochs_{name}"], -ex["D"], ex["G"])
            bar.update(1)

    # constant-filter theory at the same F and depth (A_k ranges of the nets above)
    # N = 8·F^depth keeps A_k <= N/8: the probes never all share one output (deno -> 0)
    N = 8 * m.F ** m.depth
    theo = {"stride": constant_filters(m.F, m.F, m.depth, N, generator=ctx.generator("theory"),
                                       n_probe=None if N <= 2048 else 512),  # all: exact D_k
            "nostride": constant_filters(max(m.F, 2), 1, m.depth, N, n_probe=8, n_noise=16,
                                         generator=ctx.generator("theory"))}
    for name in VARIANTS:
        summary[f"alpha_{name}_theory"] = -PREDICTED_EXPONENTS[name]["D"]
    fig = plot_sensitivities(curves, theo)
    ctx.save_figure(fig, "sensitivities",
                    "D_k, G_k, R_k after each block against the effective receptive field A_k "
                    "(log-log), at init (dashed) and trained (solid); dotted: constant-filter "
                    "theory (§7) rescaled to the trained net's first block.")
    fig = plot_training(curves)
    ctx.save_figure(fig, "training", "Hinge training loss and test error per epoch.")
    return summary


def _receptive_fields(F_: int, strides: list[int], L: int) -> np.ndarray:
    """A_k after each block: participation ratio of the constant-filter input profile."""
    r = torch.zeros(max(L, 2 * F_ ** len(strides)), dtype=torch.float64)
    r[0] = 1.0
    S, A = 1, []
    for s in strides:
        r = sum(torch.roll(r, j * S) for j in range(F_))
        r = r / r.sum()
        S *= s
        A.append(float(r.sum() ** 2 / (r ** 2).sum()))
    return np.array(A)


def plot_sensitivities(curves: dict, theo: dict):
    """3 columns (D, G, R) × 2 rows (stride, nostride): Q_k against A_k, log-log."""
    from matplotlib.ticker import NullFormatter

    from ..plotting import PALETTE, figure

    fig, ax = figure(2, 3)
    for i, name in enumerate(VARIANTS):
        c = curves[name]
        A = c["A"]
        th = theo[name]
        for j, q in enumerate(("D", "G", "R")):
            a = ax[i, j]
            a.loglog(A, c["init"][q], "o--", color="0.5", label="init")
            a.loglog(A, c["trained"][q], "o-", color="#c0392b", label="trained")
            tq = getattr(th, q)[1:len(A) + 1]
            tA = th.A[1:len(A) + 1]
            if len(tq) and tq[0] > 0:
                a.loglog(tA, tq * c["trained"][q][0] / tq[0], ":", color=PALETTE["theory"],
                         label="constant filters")
            if A.max() / A.min() > 10:  # else only minor ticks exist: keep their labels
                a.xaxis.set_minor_formatter(NullFormatter())
            a.set_xlabel("receptive field A_k (pixels)")
            a.set_ylabel(f"{q}_k (relative, mean protocol)")
            a.set_title(f"{name}: {q}_k")
            if i == 0 and j == 0:
                a.legend()
    return fig


def plot_training(curves: dict):
    from ..plotting import figure

    fig, ax = figure(1, 2)
    for name, ls in zip(VARIANTS, ("-", "--")):
        h = curves[name]["hist"]
        ax[0, 0].semilogy(h.epoch, np.maximum(h.train_loss, 1e-8), ls, label=name)
        ax[0, 1].plot(h.epoch, 1 - np.asarray(h.test_acc), ls, label=name)
    ax[0, 0].set_xlabel("epoch")
    ax[0, 0].set_ylabel("training hinge loss")
    ax[0, 1].set_xlabel("epoch")
    ax[0, 1].set_ylabel("test error (fraction)")
    ax[0, 0].legend()
    return fig


# ----------------------------------------------------------------------------------------------
def _check_alpha(s: dict):
    a, b = s.get("alpha_stride"), s.get("alpha_nostride")
    if a is None or b is None:
        return "n/a", None
    ok = abs(a - 1) < 0.5 and abs(b - 2) < 0.5
    return f"α_stride = {a:.2f}, α_nostride = {b:.2f}", bool(ok)


def _check_g(s: dict):
    a, b = s.get("g_exponent_stride"), s.get("g_exponent_nostride")
    if a is None or b is None:
        return "n/a", None
    return f"G exponent: stride {a:.2f}, no stride {b:.2f}", bool(a > 0 and b > 0)


EXPERIMENT = register(Experiment(
    name=NAME,
    summary="1D scale-detection CNNs with/without stride: D_k, G_k, R_k vs receptive field (I23)",
    config=PoolingConfig,
    presets={"tiny": tiny, "paper": paper, "tiny2d": tiny2d, "paper2d": paper2d},
    run=run,
    claims=(
        Claim("The scalings of D_k with the receptive field depend on the presence of strides: "
              "D_k ∝ A_k^-α_s with α_s = 1 with stride and 2 without.",
              "[I23] abstract; spec §7", "both fitted α within ±0.5 of theory (trained nets)",
              _check_alpha),
        Claim("Sensitivity to (rectified) noise grows with depth: G_k ∝ A_k.",
              "[I23] abstract; spec §7", "fitted G exponent > 0 for both nets (trained)", _check_g),
    ),
))
