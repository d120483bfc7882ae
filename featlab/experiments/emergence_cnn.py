"""``emergence-cnn``: the fully connected net's localised receptive fields match CNN filters.

Protocol (spec emergence §4.2, §8.1; Ingrosso & Goldt abstract: the localised fields "match
the filters of a convolutional network trained on the same task"):
1. Train the ``emergence`` committee (FC, mf, erf, +-1 bias) online on the NLGP task.
2. Train the original code's soft CNN (:class:`~featlab.models.SoftConv`: circular padding,
   ``banks`` filters of size k, fixed 1/sqrt(nl) readout) online on the same task, same data
   stream, original targets (y = +1 for class 0), loss (s - y)^2.
3. Align each localised FC receptive field (long-range detector with IPR > ipr_factor x
   3/(D+2)) and each CNN filter (zero-padded to L sites) at its circular centre (sign: peak
   positive); compare the profiles and the FWHM of their w^2 profiles (§5.2), in sites.
1D only (the FWHM comparison is 1D in the spec).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ConfigError, ExperimentConfig, F, sub
from ..probes._ipr import ipr, ipr_baseline
from ..probes.receptive import fwhm, profile
from .registry import Claim, Experiment, register
from ._emergence_common import DataConfig, ModelConfig, TrainConfig, build_task, long_range_detectors, train_many

__all__ = ["EmergenceCNNConfig", "CNNConfig", "tiny", "paper", "run", "EXPERIMENT"]


@dataclass(frozen=True)
class CNNConfig:
    """The soft CNN (reference ``Convolutional``); k, banks, activation and lr are [paper?]."""

    k: int = F(11, "odd filter size in sites", ge=1, tag="[paper?]")
    banks: int = F(4, "number of filters", ge=1, tag="[paper?]")
    activation: str = F("tanh", "g: the reference class default tanh, or erf(h/sqrt2), relu",
                        choices=("tanh", "erf", "relu"), tag="[code]")
    soft: bool = F(True, "readout fixed at 1/sqrt(nl) (True) or trained", tag="[code]")
    lr: float = F(0.05, "SGD lr of the filters (lr_l1) and conv bias", gt=0, tag="[paper?]")
    init_bias_zero: bool = F(True, "constant conv bias bias_init at init (else PyTorch default uniform)", tag="[code]")
    bias_init: float = F(1.0, "initial conv bias when init_bias_zero: +1 with the positive fixed readout mirrors "
                         "the FC long-range detectors (b v > 0, localised blobs); 0 is the reference's zero init, "
                         "whose filters become short-range (oscillatory) detectors", tag="[design]")
    lr_bias: float = F(0.0, "SGD lr of the conv bias; 0 = lr / D (as the FC committee's bias)", ge=0, tag="[design]")
    T: float = F(0.0, "final time of the CNN run (t = steps/D); 0 = train.T", ge=0,
                 cost="autograd step, ~0.3-1 ms per step on CPU")


@dataclass(frozen=True)
class EmergenceCNNConfig(ExperimentConfig):
    """FC committee and soft CNN on the same NLGP task; aligned filters and FWHM."""

    RENAMED = {"train.bs": "train.batch_size"}  # one name per concept (issue 11): the mini-batch size is batch_size

    data: DataConfig = sub(DataConfig, "the NLGP task (1D only)")
    model: ModelConfig = sub(ModelConfig, "the FC committee TwoLayer")
    train: TrainConfig = sub(TrainConfig, "online SGD of both networks (the CNN uses cnn.lr)")
    cnn: CNNConfig = sub(CNNConfig, "the soft CNN")
    n_seeds: int = F(2, "FC seeds (more localised fields to compare)", ge=1)
    ipr_factor: float = F(3.0, "an FC long-range detector counts as localised iff IPR > ipr_factor * 3/(D+2)", gt=0)

    def check(self) -> None:
        super().check()
        if self.data.dim != 1:
            raise ConfigError("data.dim", "emergence-cnn compares 1D profiles: allowed 1", self.data.dim)
        if self.cnn.k % 2 == 0 or self.cnn.k > self.data.L:
            raise ConfigError("cnn.k", f"odd and <= data.L = {self.data.L}", self.cnn.k)
        self.data.check_realisable()


def paper() -> EmergenceCNNConfig:
    """1D ring L = 100 with the cover recipe's task (xi = (1, 3) px, g = 10, periodic, jitter 1e-3;
    spec §7), FC committee as in ``emergence``, t = 10^4, 4 FC seeds [paper?: the paper's CNN
    setting is unknown; the CNN fields are the reference class defaults]."""
    base = EmergenceCNNConfig()
    return dataclasses.replace(base, data=dataclasses.replace(base.data, L=100, dim=1, xi=(1.0, 3.0), gain=10.0),
                               n_seeds=4)


def tiny() -> EmergenceCNNConfig:
    """1D L = 40, xi = (1, 3), g = 10, K = 4, t = 1000 (the emergence tiny preset); k = 11 soft CNN to t = 250."""
    base = EmergenceCNNConfig()
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, L=40, dim=1, xi=(1.0, 3.0), gain=10.0),
        model=dataclasses.replace(base.model, K=4),
        train=dataclasses.replace(base.train, T=1000.0, n_evals=10, n_test=2000, lr=0.2),
        cnn=dataclasses.replace(base.cnn, T=250.0),
    )


def _align(w: np.ndarray) -> np.ndarray:
    """(n, L) rows rolled so the circular centre of w^2 sits at L//2; sign so the peak is positive."""
    L = w.shape[-1]
    out = np.empty_like(w)
    phase = np.exp(2j * np.pi * np.arange(L) / L)
    for i, r in enumerate(w):
        c = (np.angle(np.sum(r ** 2 * phase)) * L / (2 * np.pi)) % L
        a = np.roll(r, L // 2 - int(round(c)))
        out[i] = a * np.sign(a[np.argmax(np.abs(a))])
    return out


def _embed(filters: np.ndarray, L: int) -> np.ndarray:
    """(banks, k) filters zero-padded to (banks, L) rows."""
    out = np.zeros((filters.shape[0], L))
    out[:, : filters.shape[1]] = filters
    return out


def run(cfg: EmergenceCNNConfig, ctx) -> dict:
    from ..models.softconv import SoftConv
    from ..train.online import train_modules

    d = cfg.data
    task = build_task(d, "nlgp")
    fc = train_many(cfg.model, cfg.train, [task], ctx, ["nlgp"], n_seeds=cfg.n_seeds, desc="FC committee")
    D = L = fc.L
    base = ipr_baseline(D)
    snaps = fc.result.snapshots
    W = snaps["W"][-1].reshape(-1, D).astype(np.float64)  # (S*K, D)
    det = long_range_detectors(snaps["b"][-1], snaps["v"][-1]).reshape(-1)
    loc = det & (ipr(W) > cfg.ipr_factor * base)

    # the soft CNN, online on the same task and data stream
    c = cfg.cnn
    dtype = torch.float32 if cfg.train.dtype == "float32" else torch.float64
    net = SoftConv(L, 1, k=c.k, banks=c.banks, activation=c.activation, soft=c.soft, init_bias_zero=c.init_bias_zero,
                   generator=ctx.generator("cnn_init"), dtype=dtype).to(ctx.device)
    if c.init_bias_zero:
        with torch.no_grad():
            net.bias.fill_(c.bias_init)
    g_test = ctx.generator("test")
    x_t, c_t = task.sample(cfg.train.n_test, g_test, dtype=dtype)

    def sampler(n, generator):
        x, cl = task.sample(n, generator, dtype=dtype)
        return x.reshape(n, -1), 1.0 - 2.0 * cl.to(dtype)  # y = +1 for class 0

    T_cnn = c.T or cfg.train.T
    total = int(np.ceil(T_cnn * D))
    with ctx.progress(total, desc="soft CNN", unit="step") as bar:
        res = train_modules([net], [sampler], [ctx.generator("data/0")],
                            [(x_t.reshape(len(x_t), -1), 1.0 - 2.0 * c_t.to(dtype))], T=T_cnn,
                            lr=[net.param_lrs(c.lr, lr_bias=c.lr_bias or c.lr / D)], bs=cfg.train.batch_size, time_unit=cfg.train.time_unit,
                            n_evals=cfg.train.n_evals, targets="original", progress=bar, desc="soft CNN")
    ctx.check_finite(torch.as_tensor(res.mse[:, 0]), "CNN test MSE",  # tanh saturates: a finite divergence
                     ceiling=1.5 * max(1.0, float(res.mse[0, 0])))
    ctx.check_finite(net.filters.detach(), "CNN filters")
    if c.activation in ("tanh", "erf"):  # saturated units: outputs no longer depend on the input
        with torch.no_grad():
            sat = float((net.hidden(x_t.reshape(len(x_t), -1).to(ctx.device)).abs() > 1 - 1e-6).double().mean())
        if sat > 0.99:
            from ..runs import DivergenceError

            raise DivergenceError(f"{sat:.1%} of the CNN's hidden units are saturated (|g| > 1 - 1e-6) on the test "
                                  "inputs: the run diverged; try a smaller cnn.lr")
    filt = net.filters.detach().cpu().numpy().astype(np.float64)  # (banks, k)
    F_emb = _embed(filt, L)

    fc_al = _align(W[loc]) if loc.any() else np.zeros((0, L))
    cnn_al = _align(F_emb)
    fc_w = fwhm(profile(fc_al, L)) if loc.any() else np.array([np.nan])
    cnn_w = fwhm(profile(cnn_al, L))
    # not applicable (no localised unit, no finite width): None, never NaN
    med_fc = float(np.nanmedian(fc_w)) if np.isfinite(fc_w).any() else None
    med_cnn = float(np.nanmedian(cnn_w)) if np.isfinite(cnn_w).any() else None
    summary = {"D": D, "ipr_baseline": base, "n_localised_fc": int(loc.sum()), "fc_width_median": med_fc,
               "cnn_width_median": med_cnn,
               "width_ratio": med_cnn / med_fc if med_fc and med_cnn is not None and med_fc > 0 else None,
               "acc_fc": float(fc.result.acc[-1].mean()), "acc_cnn": float(res.acc[-1, 0]),
               "ipr_fc_localised_mean": float(ipr(W[loc]).mean()) if loc.any() else None,
               "ipr_cnn_filters_mean": float(ipr(F_emb).mean()), "cnn_k": c.k}
    ctx.save_arrays(fc_aligned=fc_al, cnn_aligned=cnn_al, fc_fwhm=fc_w, cnn_fwhm=cnn_w, cnn_filters=filt,
                    fc_W=W, fc_detect=det, fc_localised=loc, cnn_t=res.t, cnn_acc=res.acc[:, 0])
    ctx.save_figure(plot_aligned(fc_al, cnn_al, fc_w, cnn_w), "aligned_filters",
                    f"Localised FC receptive fields (left; long-range detectors with IPR > {cfg.ipr_factor:g} x 3/(D+2), "
                    f"{cfg.n_seeds} seeds) and soft-CNN filters (middle; k = {c.k}, zero-padded), each rolled to its "
                    f"circular centre at L/2 and scaled to unit peak; right: FWHM of the w^2 profiles in sites. "
                    f"1D L={L}, xi={d.xi}, g={d.gain} ({d.gain_convention}); CNN {c.activation}, banks={c.banks}, "
                    f"lr={c.lr}, soft={c.soft}, bias init {c.bias_init if c.init_bias_zero else 'default'}.")
    return summary


def plot_aligned(fc, cnn, fc_w, cnn_w):
    from ..plotting import PALETTE, figure

    fig, ax = figure(1, 3)
    x = np.arange(fc.shape[-1] if len(fc) else cnn.shape[-1]) - (cnn.shape[-1] // 2)
    for a, rows, title in ((ax[0, 0], fc, "FC receptive fields"), (ax[0, 1], cnn, "soft-CNN filters")):
        for r in rows:
            a.plot(x, r / (np.abs(r).max() or 1.0), lw=0.8)
        a.axhline(0, color="0.7", lw=0.5)
        a.set_title(title)
        a.set_xlabel("site - centre")
    ax[0, 0].set_ylabel("w / max|w| (aligned)")
    a = ax[0, 2]
    a.scatter(np.zeros(len(fc_w)), fc_w, color=PALETTE["nlgp"], label="FC")
    a.scatter(np.ones(len(cnn_w)), cnn_w, color="k", label="CNN")
    a.set_xticks([0, 1], ["FC", "CNN"])
    a.set_xlim(-0.5, 1.5)
    a.set_ylabel("FWHM of w^2 (sites)")
    return fig


def _check(s):
    r = s.get("width_ratio")
    if r is None or not np.isfinite(r):
        return f"n_localised_fc={s.get('n_localised_fc')}, widths n/a", None
    return (f"median FWHM FC {s['fc_width_median']:.2f}, CNN {s['cnn_width_median']:.2f} sites, ratio {r:.2f}",
            bool(0.5 < r < 2.0))


EXPERIMENT = register(Experiment(
    name="emergence-cnn",
    summary="Soft CNN vs FC committee on the NLGP task: aligned filters and FWHM widths",
    config=EmergenceCNNConfig,
    presets={"tiny": tiny, "paper": paper},
    run=run,
    claims=(
        Claim("The localised receptive fields match the filters of a convolutional network trained on the same task",
              "Ingrosso & Goldt 2022, abstract", "median CNN FWHM / median FC FWHM in (0.5, 2)", _check),
    ),
))
