"""``emergence-gain``: what triggers localisation — final IPR against the NLGP gain.

Protocol (spec emergence §8.2, §10; controls from Lufkin, Saxe & Grant):
1. For each gain g, the NLGP task and its Gaussian clone (same per-class covariance); the
   committee of ``emergence`` trained online on each, ``n_seeds`` seeds, all runs batched in
   one loop (seed i shares its initial weights and data stream across tasks).
2. Controls: NORTA Kur(k) marginals (heavy-tailed k near 4, light-tailed large k) and an
   elliptical distribution ("weird" radius, which must not localise: E[x | w.x] is linear).
3. Final IPR of the long-range detectors (b v > 0) per run; per-seed values, median and spread
   ([min, max]) over seeds, with the marginal excess kurtosis kappa(g) - 3 on a second axis.
4. A phase diagram: the mean final IPR over (gain, xi1/xi0) at xi0 fixed.
Every latent kernel (each xi, the phase diagram's xi0 * ratio included) must be positive
semi-definite (``data.psd``); the check runs before the run folder exists.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, ExperimentConfig, F, sub
from ..probes._ipr import ipr, ipr_baseline
from .registry import Claim, Experiment, register
from ._emergence_common import (PAPER_IPR_PLATEAU, DataConfig, ModelConfig, TrainConfig, build_task, latent_record,
                                long_range_detectors, seed_stats, train_many)

__all__ = ["EmergenceGainConfig", "tiny", "paper", "run", "EXPERIMENT"]


@dataclass(frozen=True)
class EmergenceGainConfig(ExperimentConfig):
    """Gain sweep (NLGP, clone), Kur(k) and elliptical controls, (gain, xi ratio) phase diagram."""

    RENAMED = {"train.bs": "train.batch_size"}  # one name per concept (issue 11): the mini-batch size is batch_size

    data: DataConfig = sub(DataConfig, "the task; data.gain is ignored (swept by ``gains``)")
    model: ModelConfig = sub(ModelConfig, "the committee TwoLayer")
    train: TrainConfig = sub(TrainConfig, "online SGD and evaluation")
    gains: tuple[float, ...] = F((0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0), "NLGP gains, in data.gain_convention: "
                                 "0.5 (nearly Gaussian, kappa - 3 = -0.22) to 30 (nearly binary), around the cover "
                                 "recipe's g = 10", gt=0, tag="[design]", length=(2, None))
    kur_k: tuple[float, ...] = F((5.0, 50.0), "Kur(k) controls: k = 5 heavy-tailed (kappa > 3), "
                                 "k = 50 light-tailed (near uniform); empty: none", gt=2, tag="[code]",
                                 length=(0, None))
    elliptical: bool = F(True, "add the elliptical ('weird' radius) control", tag="[code]")
    n_seeds: int = F(4, "seeds per task (per-seed values, median and spread)", ge=1,
                     cost="(2 len(gains) + len(kur_k) + elliptical) x n_seeds runs of T*D steps")
    phase_gains: tuple[float, ...] = F((1.0, 3.0, 10.0), "gains of the phase diagram", gt=0)
    phase_ratios: tuple[float, ...] = F((1.5, 2.0, 3.0), "xi1/xi0 of the phase diagram (xi0 = data.xi[0]); each "
                                        "xi0 * ratio must give a PSD latent kernel (at L = 20 periodic with jitter "
                                        "1e-3: xi1 <= 3.3)", gt=0)
    phase_diagram: bool = F(True, "run the phase diagram (one seed per cell)")

    def check(self) -> None:
        super().check()
        if len(self.gains) < 2:
            raise ConfigError("gains", "need at least two gains", self.gains)
        self.data.check_realisable()
        if self.phase_diagram:
            self.data.check_realisable(xis=[self.data.xi[0] * r for r in self.phase_ratios], field_name="phase_ratios")


def paper() -> EmergenceGainConfig:
    """The cover-figure recipe (spec §7; the ``emergence`` paper preset) swept over the gain.

    - ``data``, ``model``, ``train``: exactly the ``emergence`` paper preset: 2D, L = 20,
      xi = (1, 3) px, periodic, jitter 1e-3, K = 8, mf, erf, trained +-1 biases, lr 0.05,
      batch_size 1, t <= 10^4 [inferred recipe, spec §7; reproduces PNAS Fig. 1D at g = 10].
    - ``gains = (0.5, 1, 2, 3, 5, 10, 30)`` (original convention): from nearly Gaussian to
      nearly binary, bracketing the recipe's g = 10 [design; the paper's gain grid is unknown].
    - ``n_seeds = 4``: per-seed values, median and spread [design].
    - controls Kur(5), Kur(50) and elliptical (LSG) [code]; phase diagram gains (1, 3, 10) x
      xi1/xi0 = (1.5, 2, 3), all realisable at L = 20 [design].

    - ``train.chunk_size = 4096`` (a memory knob: the 68 runs' sample buffers would take ~3 GB
      at the default 16384).

    Cost: (2 x 7 + 3) x 4 = 68 runs plus 9 phase cells of 4e6 steps each. Measured on one CPU
    core: ~10 CPU-us per NLGP/clone run-step (the ``emergence`` paper preset: 330 CPU-s for 8
    runs), Kur(k) sampling ~52 us and elliptical ~25 us per sample, i.e. ~80 CPU-minutes in all;
    on a shared machine run it at a stated reduced budget (fewer ``gains``, no controls) or on a
    GPU (``--device cuda``).
    """
    base = EmergenceGainConfig()
    return dataclasses.replace(base, train=dataclasses.replace(base.train, chunk_size=4096))


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

    geo = dict(L=cfg.L, dim=cfg.dim, boundary=cfg.boundary, extensive=cfg.extensive, jitter=cfg.jitter, psd=cfg.psd)
    if kind == "kur":
        return Mixture(KurK(xi=cfg.xi[0], k=k, **geo), KurK(xi=cfg.xi[1], k=k, **geo))
    return Mixture(Elliptical(xi=cfg.xi[0], **geo), Elliptical(xi=cfg.xi[1], **geo))


def _per_run_ipr(tr) -> np.ndarray:
    """Final mean IPR of the long-range detectors of every run, (S,) (NaN if none; None in the summary)."""
    snaps = tr.result.snapshots
    iprs = ipr(snaps["W"][-1].astype(np.float64))  # (S, K)
    det = long_range_detectors(snaps["b"][-1], snaps["v"][-1])  # (S, K)
    return np.array([iprs[s][det[s]].mean() if det[s].any() else np.nan for s in range(len(iprs))])


def run(cfg: EmergenceGainConfig, ctx) -> dict:
    from ..data import nlgp_marginal_kurtosis, norta_marginal_kurtosis

    d = cfg.data
    phase_xis = [d.xi[0] * r for r in cfg.phase_ratios] if cfg.phase_diagram else []
    latent = latent_record(ctx, d, xis=tuple(d.xi) + tuple(phase_xis))
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
    per = _per_run_ipr(tr)                                                  # (S,)
    acc = tr.result.acc[-1]                                                 # (S,)
    gains = np.array(cfg.gains)
    kappa = np.array([nlgp_marginal_kurtosis(g, d.gain_convention) for g in cfg.gains])

    summary: dict = {"D": D, "ipr_baseline": base, "n_seeds": cfg.n_seeds, "gains": [float(g) for g in gains],
                     "excess_kurtosis": [float(k - 3) for k in kappa], "max_gain": float(gains[-1]),
                     "gain_convention": d.gain_convention, **latent}
    for tag in tags:
        summary.update(seed_stats(f"ipr_{tag}", per[tr.runs(tag)]))
        summary.update(seed_stats(f"acc_{tag}", acc[tr.runs(tag)]))
    med = {kind: [summary[f"ipr_{kind}_g{g:g}_median"] for g in cfg.gains] for kind in ("nlgp", "clone")}
    spread = {kind: [summary[f"ipr_{kind}_g{g:g}_spread"] for g in cfg.gains] for kind in ("nlgp", "clone")}
    for kind in ("nlgp", "clone"):
        summary[f"ipr_{kind}_median_curve"] = med[kind]
        summary[f"ipr_{kind}_spread_curve"] = spread[kind]
    above = [g for g, m in zip(cfg.gains, med["nlgp"]) if m is not None and m > 2 * base]
    summary["gain_threshold"] = float(above[0]) if above else None
    summary["ipr_nlgp_max_gain"] = med["nlgp"][-1]
    summary["ipr_clone_max_gain"] = med["clone"][-1]
    summary["ipr_clone_max_gain_spread"] = spread["clone"][-1]
    for k in cfg.kur_k:
        kk = norta_marginal_kurtosis(k)
        summary[f"kappa_kur_k{k:g}"] = float(kk) if np.isfinite(kk) else None

    def _nan(v):
        return np.nan if v is None else v

    arrays = dict(gains=gains, kappa=kappa, ipr_runs=per, run_tags=np.array(tr.tags), run_seeds=np.array(tr.seeds),
                  ipr_nlgp_median=np.array([_nan(v) for v in med["nlgp"]]),
                  ipr_clone_median=np.array([_nan(v) for v in med["clone"]]))
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
        summary["phase_ipr"] = [[float(v) if np.isfinite(v) else None for v in row] for row in pv]
        summary["phase_ipr_max"] = float(np.nanmax(pv)) if np.isfinite(pv).any() else None
        ctx.save_figure(plot_phase(np.array(cfg.phase_gains), np.array(cfg.phase_ratios), pv, base, d.gain_convention),
                        "phase_diagram", f"Final IPR of the long-range detectors (1 seed per cell) over NLGP gain "
                        f"({d.gain_convention} convention) and xi1/xi0 (xi0 = {d.xi[0]}), in units of 3/(D+2); colour "
                        "bar: IPR / (3/(D+2)). " + _describe(cfg))
    ctx.save_arrays(**arrays)
    seeds_ipr = {kind: np.stack([per[tr.runs(f"{kind}_g{g:g}")] for g in cfg.gains]) for kind in ("nlgp", "clone")}
    controls = {tag: summary[f"ipr_{tag}_median"] for tag in tags if not tag.startswith(("nlgp", "clone"))}
    reference = PAPER_IPR_PLATEAU if (d.dim == 2 and d.L == 20) else None
    ctx.save_figure(plot_gain(gains, med, spread, kappa, controls, base, d.gain_convention, seeds_ipr, reference),
                    "ipr_vs_gain",
                    f"Final IPR of the long-range detectors against the NLGP gain ({d.gain_convention} convention), NLGP "
                    f"and its Gaussian clone: median over {cfg.n_seeds} seed(s) (line), [min, max] over seeds (bars), "
                    "every seed (small dots); top axis: marginal excess kurtosis κ(g) − 3; "
                    + ("horizontal dash-dot lines: the " + ", ".join(controls) + " control(s) (median); " if controls
                       else "no Kur(k) or elliptical control in this run; ")
                    + "dashed: 3/(D+2)"
                    + ("; grey box at g = 10: the cover figure's plateau 0.055-0.06 read from PNAS Fig. 1D (its gain "
                       "is inferred: g = 10, spec §7)" if reference else "") + ". " + _describe(cfg))
    return summary


def _describe(cfg) -> str:
    d, m, t = cfg.data, cfg.model, cfg.train
    return (f"{d.dim}D L={d.L}, xi={d.xi}, {d.boundary}; K={m.K} {m.mode} {m.activation} bias={m.bias}; "
            f"lr={t.lr}, T={t.T:g}.")


def plot_gain(gains, med, spread, kappa, controls, baseline, convention, seeds=None, reference=None):
    """Median final IPR against gain with [min, max] bars, every seed as dots, controls, baseline.

    ``med[kind]``/``spread[kind]``: per gain, median and [min, max] (None where no seed had a
    detector); ``seeds[kind]``: (G, n_seeds) per-seed values (NaN = none); ``reference``:
    (lo, hi) band for the paper's value, or None."""
    from ..plotting import PALETTE, figure

    fig, ax = figure(1, 1, width=6.2, height=3.2)
    a = ax[0, 0]
    for j, kind in enumerate(("nlgp", "clone")):
        m = np.array([np.nan if v is None else v for v in med[kind]])
        lo = np.array([np.nan if s is None else s[0] for s in spread[kind]])
        hi = np.array([np.nan if s is None else s[1] for s in spread[kind]])
        a.errorbar(gains, m, yerr=np.vstack([m - lo, hi - m]), marker="o", color=PALETTE[kind],
                   label=f"{kind} (median, [min, max])", capsize=2)
        if seeds is not None:
            for gi, g in enumerate(gains):
                v = seeds[kind][gi]
                a.plot(np.full(len(v), g * (1.04 if j else 0.96)), v, ".", color=PALETTE[kind], ms=3, alpha=0.6)
    for i, (tag, v) in enumerate(controls.items()):
        if v is not None:
            a.axhline(v, color=f"C{i + 2}", ls="-.", lw=0.8, label=f"{tag} (control)")
    a.axhline(baseline, color=PALETTE["baseline"], ls="--", lw=0.8, label="3/(D+2)")
    if reference is not None:   # the cover figure's plateau, at its inferred gain g = 10 (spec §7)
        a.fill_between([10 / 1.25, 10 * 1.25], *reference, color="k", alpha=0.15, lw=0, zorder=0,
                       label="PNAS Fig. 1D plateau (read from figure; its g = 10 is inferred)")
    a.set_xscale("log")
    a.set_xlabel(f"gain g ({convention} convention)")
    a.set_ylabel("final IPR (long-range detectors)")
    # outside the axes, right: the series, controls and the paper box would hide the data
    a.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    top = a.secondary_xaxis("top")
    top.set_xticks(gains)
    top.set_xticks([], minor=True)
    top.set_xticklabels([f"{k - 3:.2f}" for k in kappa], fontsize=6)
    top.set_xlabel("marginal excess kurtosis κ − 3", fontsize=8)
    a.set_xticks(gains)
    a.set_xticks([], minor=True)
    a.set_xticklabels([f"{g:g}" for g in gains])
    return fig


def plot_phase(gains, ratios, values, baseline, convention):
    from ..plotting import colorbar, figure, image

    fig, ax = figure(1, 1)
    a = ax[0, 0]
    im = image(a, values / baseline, cmap="viridis", origin="lower", aspect="auto", ticks=True)
    a.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
    a.set_yticks(range(len(gains)), [f"{g:g}" for g in gains])
    a.set_xlabel("ξ1 / ξ0")
    a.set_ylabel(f"gain g ({convention} convention)")
    colorbar(fig, im, a, "IPR / (3/(D+2))")
    return fig


CLONE_BAND = 2.0   # the clone stays within a factor 2 of 3/(D+2), above and below (as in ``emergence``)


def _check_nlgp_vs_clone(s):
    a, b, base = s.get("ipr_nlgp_max_gain"), s.get("ipr_clone_max_gain"), s.get("ipr_baseline")
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b):
        return "n/a", None
    ok = a > 2 * base and base / CLONE_BAND <= b <= CLONE_BAND * base
    return (f"at g={s.get('max_gain'):g}: median ipr_nlgp={a:.4f} ({a / base:.1f}x), ipr_clone={b:.4f} "
            f"({b / base:.2f}x) of 3/(D+2)={base:.4f}; first gain > 2x baseline: {s.get('gain_threshold')}"), bool(ok)


def _value_nlgp(s):
    a, base = s.get("ipr_nlgp_max_gain"), s.get("ipr_baseline")
    return a / base if a is not None and base else None


def _check_elliptical(s):
    v, base = s.get("ipr_elliptical_median", s.get("ipr_elliptical")), s.get("ipr_baseline")
    if not isinstance(v, (int, float)) or not np.isfinite(v):
        return "n/a", None
    return f"median ipr_elliptical={v:.4f} (baseline {base:.4f})", bool(v < 2 * base)


def _value_elliptical(s):
    v, base = s.get("ipr_elliptical_median", s.get("ipr_elliptical")), s.get("ipr_baseline")
    return v / base if isinstance(v, (int, float)) and base else None


EXPERIMENT = register(Experiment(
    name="emergence-gain",
    summary="Final IPR vs NLGP gain (and clone), Kur(k)/elliptical controls, (gain, xi ratio) phase diagram",
    config=EmergenceGainConfig,
    presets={"tiny": tiny, "paper": paper},
    run=run,
    claims=(
        Claim("Localisation is triggered by non-Gaussian local structure: the NLGP localises once its excess "
              "kurtosis is sufficiently negative, its Gaussian clone never", "Ingrosso & Goldt 2022, abstract; "
              "spec emergence §8.2", "median IPR at the largest gain: NLGP > 2 x 3/(D+2); clone within a factor 2 of "
              "3/(D+2), both ways", _check_nlgp_vs_clone, value=_value_nlgp),
        Claim("Elliptical data never localise", "Lufkin, Saxe & Grant 2024 (Prop. 3.3) [paper?]",
              "median IPR of the elliptical control < 2 x 3/(D+2)", _check_elliptical,
              reference="the final field is a sinusoid, IPR 3/(2D) (Prop. 3.3)", value=_value_elliptical),
    ),
))
