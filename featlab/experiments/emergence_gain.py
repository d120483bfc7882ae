"""``emergence-gain``: what triggers localisation — final IPR against the NLGP gain.

Protocol (spec emergence §8.2, §10; controls from Lufkin, Saxe & Grant):
1. For each gain g, the NLGP task and its Gaussian clone (same per-class covariance); the
   committee of ``emergence`` trained online on each, ``n_seeds`` seeds, all runs batched in
   one loop (seed i shares its initial weights and data stream across tasks).
2. Controls: NORTA Kur(k) marginals (heavy-tailed k near 4, light-tailed large k) and an
   elliptical distribution ("weird" radius, which must not localise: E[x | w.x] is linear).
3. Final IPR of the long-range detectors (b v > 0) per run; median and spread over seeds,
   with the marginal excess kurtosis kappa(g) - 3 on a second axis.
4. A phase diagram: the mean final IPR over (gain, xi1/xi0) at xi0 fixed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, ExperimentConfig, F, sub
from ..probes._ipr import ipr, ipr_baseline
from .registry import Claim, Experiment, register
from ._emergence_common import DataConfig, ModelConfig, TrainConfig, build_task, long_range_detectors, train_many

__all__ = ["EmergenceGainConfig", "tiny", "paper", "run", "EXPERIMENT"]


@dataclass(frozen=True)
class EmergenceGainConfig(ExperimentConfig):
    """Gain sweep (NLGP, clone), Kur(k) and elliptical controls, (gain, xi ratio) phase diagram."""

    data: DataConfig = sub(DataConfig, "the task; data.gain is ignored (swept by ``gains``)")
    model: ModelConfig = sub(ModelConfig, "the committee TwoLayer")
    train: TrainConfig = sub(TrainConfig, "online SGD and evaluation")
    gains: tuple[float, ...] = F((0.3, 1.0, 3.0, 10.0, 30.0, 100.0), "NLGP gains, in data.gain_convention",
                                 gt=0, tag="[design]", length=(2, None))
    kur_k: tuple[float, ...] = F((5.0, 50.0), "Kur(k) controls: k = 5 heavy-tailed (kappa > 3), "
                                 "k = 50 light-tailed (near uniform); empty: none", gt=2, tag="[code]",
                                 length=(0, None))
    elliptical: bool = F(True, "add the elliptical ('weird' radius) control", tag="[code]")
    n_seeds: int = F(3, "seeds per task (median and spread)", ge=1)
    phase_gains: tuple[float, ...] = F((1.0, 3.0, 10.0), "gains of the phase diagram", gt=0)
    phase_ratios: tuple[float, ...] = F((1.5, 3.0, 5.0), "xi1/xi0 of the phase diagram (xi0 = data.xi[0])", gt=0)
    phase_diagram: bool = F(True, "run the phase diagram (one seed per cell)")

    def check(self) -> None:
        if len(self.gains) < 2:
            raise ConfigError("gains", "need at least two gains", self.gains)


def paper() -> EmergenceGainConfig:
    """The cover-figure setting (2D, L = 20, t = 10^4) swept over gain [paper?: the paper's gain grid is unknown]."""
    return EmergenceGainConfig()


def tiny() -> EmergenceGainConfig:
    """1D, L = 40, K = 4, xi = (1, 3), t = 1000 (as the emergence tiny preset), 4 gains x 2 seeds."""
    base = EmergenceGainConfig()
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, L=40, dim=1, xi=(1.0, 3.0)),
        model=dataclasses.replace(base.model, K=4),
        train=dataclasses.replace(base.train, T=1000.0, n_evals=12, n_test=2000, lr=0.2),
        gains=(0.5, 2.0, 10.0), n_seeds=2, phase_gains=(1.0, 10.0), phase_ratios=(1.5, 3.0),
    )


def _control_task(cfg: DataConfig, kind: str, k: float | None = None):
    from ..data import Elliptical, KurK, Mixture

    geo = dict(L=cfg.L, dim=cfg.dim, boundary=cfg.boundary, extensive=cfg.extensive)
    if kind == "kur":
        return Mixture(KurK(xi=cfg.xi[0], k=k, **geo), KurK(xi=cfg.xi[1], k=k, **geo))
    return Mixture(Elliptical(xi=cfg.xi[0], **geo), Elliptical(xi=cfg.xi[1], **geo))


def _per_run_ipr(tr) -> np.ndarray:
    """Final mean IPR of the long-range detectors of every run, (S,) (NaN if none)."""
    snaps = tr.result.snapshots
    iprs = ipr(snaps["W"][-1].astype(np.float64))  # (S, K)
    det = long_range_detectors(snaps["b"][-1], snaps["v"][-1])  # (S, K)
    return np.array([iprs[s][det[s]].mean() if det[s].any() else np.nan for s in range(len(iprs))])


def run(cfg: EmergenceGainConfig, ctx) -> dict:
    from ..data import nlgp_marginal_kurtosis, norta_marginal_kurtosis

    d = cfg.data
    tags, tasks = [], []
    for g in cfg.gains:
        dg = dataclasses.replace(d, gain=g)
        for kind in ("nlgp", "clone"):
            tags.append(f"{kind}_g{g:g}"), tasks.append(build_task(dg, kind))
    for k in cfg.kur_k:
        tags.append(f"kur_k{k:g}"), tasks.append(_control_task(d, "kur", k))
    if cfg.elliptical:
        tags.append("elliptical"), tasks.append(_control_task(d, "elliptical"))
    tr = train_many(cfg.model, cfg.train, tasks, ctx, tags, n_seeds=cfg.n_seeds, desc="gain sweep")
    D = tr.D
    base = ipr_baseline(D)
    per = _per_run_ipr(tr)
    stats = {tag: np.nanpercentile(per[tr.runs(tag)], [25, 50, 75]) for tag in tags}
    acc = {tag: float(tr.result.acc[-1, tr.runs(tag)].mean()) for tag in tags}
    gains = np.array(cfg.gains)
    med = {kind: np.array([stats[f"{kind}_g{g:g}"][1] for g in cfg.gains]) for kind in ("nlgp", "clone")}
    kappa = np.array([nlgp_marginal_kurtosis(g, d.gain_convention) for g in cfg.gains])

    above = np.nonzero(med["nlgp"] > 2 * base)[0]
    na = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731 - no detectors: None, never NaN
    summary: dict = {"D": D, "ipr_baseline": base,
                     "gain_threshold": float(gains[above[0]]) if len(above) else None,
                     "ipr_nlgp_max_gain": na(med["nlgp"][-1]), "ipr_clone_max_gain": na(med["clone"][-1]),
                     "max_gain": float(gains[-1]), "gain_convention": d.gain_convention}
    for tag in tags:
        summary[f"ipr_{tag}"] = na(stats[tag][1])
        summary[f"acc_{tag}"] = acc[tag]
    for k in cfg.kur_k:
        summary[f"kappa_kur_k{k:g}"] = norta_marginal_kurtosis(k)

    arrays = dict(gains=gains, kappa=kappa, ipr_runs=per, run_tags=np.array(tr.tags), run_seeds=np.array(tr.seeds),
                  ipr_nlgp_median=med["nlgp"], ipr_clone_median=med["clone"])
    if cfg.phase_diagram:
        ph_tags, ph_tasks = [], []
        for g in cfg.phase_gains:
            for r in cfg.phase_ratios:
                dg = dataclasses.replace(d, gain=g, xi=(d.xi[0], d.xi[0] * r))
                ph_tags.append(f"g{g:g}_r{r:g}"), ph_tasks.append(build_task(dg, "nlgp"))
        pt = train_many(cfg.model, cfg.train, ph_tasks, ctx, ph_tags, n_seeds=1, desc="phase diagram",
                        data_stream="phase")
        pv = _per_run_ipr(pt).reshape(len(cfg.phase_gains), len(cfg.phase_ratios))
        arrays["phase_ipr"] = pv
        summary["phase_ipr_max"] = na(np.nanmax(pv)) if np.isfinite(pv).any() else None
        ctx.save_figure(plot_phase(np.array(cfg.phase_gains), np.array(cfg.phase_ratios), pv, base, d.gain_convention),
                        "phase_diagram", f"Final IPR of the long-range detectors (1 seed) over NLGP gain "
                        f"({d.gain_convention} convention) and xi1/xi0 (xi0 = {d.xi[0]}), in units of 3/(D+2). "
                        + _describe(cfg))
    ctx.save_arrays(**arrays)
    lo_hi = {kind: np.array([stats[f"{kind}_g{g:g}"][[0, 2]] for g in cfg.gains]) for kind in ("nlgp", "clone")}
    controls = {tag: stats[tag][1] for tag in tags if not tag.startswith(("nlgp", "clone"))}
    ctx.save_figure(plot_gain(gains, med, lo_hi, kappa, controls, base, d.gain_convention), "ipr_vs_gain",
                    f"Median final IPR (bars: 25-75% over {cfg.n_seeds} seeds) of the long-range detectors against the "
                    f"NLGP gain ({d.gain_convention} convention), NLGP and its Gaussian clone; top axis: marginal "
                    f"excess kurtosis kappa(g) - 3; horizontal marks: Kur(k) and elliptical controls. " + _describe(cfg))
    return summary


def _describe(cfg) -> str:
    d, m, t = cfg.data, cfg.model, cfg.train
    return (f"{d.dim}D L={d.L}, xi={d.xi}, {d.boundary}; K={m.K} {m.mode} {m.activation} bias={m.bias}; "
            f"lr={t.lr}, T={t.T:g}.")


def plot_gain(gains, med, lo_hi, kappa, controls, baseline, convention):
    from ..plotting import PALETTE, figure

    fig, ax = figure(1, 1, width=4.2, height=3.0)
    a = ax[0, 0]
    for kind in ("nlgp", "clone"):
        err = np.abs(lo_hi[kind].T - med[kind])
        a.errorbar(gains, med[kind], yerr=err, marker="o", color=PALETTE[kind], label=kind, capsize=2)
    for i, (tag, v) in enumerate(controls.items()):
        a.axhline(v, color=f"C{i + 2}", ls="-.", lw=0.8, label=f"{tag} (control)")
    a.axhline(baseline, color=PALETTE["baseline"], ls="--", lw=0.8, label="3/(D+2)")
    a.set_xscale("log")
    a.set_xlabel(f"gain g ({convention} convention)")
    a.set_ylabel("final IPR (long-range detectors)")
    a.legend(fontsize=6)
    top = a.secondary_xaxis("top")
    top.set_xticks(gains)
    top.set_xticklabels([f"{k - 3:.2f}" for k in kappa], fontsize=6)
    top.set_xlabel("marginal excess kurtosis kappa - 3")
    return fig


def plot_phase(gains, ratios, values, baseline, convention):
    from ..plotting import figure

    fig, ax = figure(1, 1)
    a = ax[0, 0]
    im = a.imshow(values / baseline, origin="lower", cmap="viridis", aspect="auto")
    a.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
    a.set_yticks(range(len(gains)), [f"{g:g}" for g in gains])
    a.set_xlabel("xi1 / xi0")
    a.set_ylabel(f"gain g ({convention} convention)")
    fig.colorbar(im, ax=a, label="IPR / (3/(D+2))")
    return fig


def _check_nlgp_vs_clone(s):
    a, b, base = s.get("ipr_nlgp_max_gain"), s.get("ipr_clone_max_gain"), s.get("ipr_baseline")
    if a is None or not np.isfinite(a):
        return "n/a", None
    return (f"at g={s.get('max_gain'):g}: ipr_nlgp={a:.4f}, ipr_clone={b:.4f}; first gain > 2x baseline: "
            f"{s.get('gain_threshold')}"), bool(a > 2 * base and b < 2 * base)


def _check_elliptical(s):
    v, base = s.get("ipr_elliptical"), s.get("ipr_baseline")
    if v is None or not np.isfinite(v):
        return "n/a", None
    return f"ipr_elliptical={v:.4f} (baseline {base:.4f})", bool(v < 2 * base)


EXPERIMENT = register(Experiment(
    name="emergence-gain",
    summary="Final IPR vs NLGP gain (and clone), Kur(k)/elliptical controls, (gain, xi ratio) phase diagram",
    config=EmergenceGainConfig,
    presets={"tiny": tiny, "paper": paper},
    run=run,
    claims=(
        Claim("Localisation is triggered by non-Gaussian local structure: the NLGP localises once its excess "
              "kurtosis is sufficiently negative, its Gaussian clone never", "Ingrosso & Goldt 2022, abstract; "
              "spec emergence §8.2", "median IPR at the largest gain: NLGP > 2x baseline, clone < 2x baseline",
              _check_nlgp_vs_clone),
        Claim("Elliptical data never localise", "Lufkin, Saxe & Grant 2024 (Prop. 3.3) [paper?]",
              "median IPR of the elliptical control < 2 x 3/(D+2)", _check_elliptical),
    ),
))
