"""``emergence-ising``: localisation from a discrete non-Gaussian input, Ising spins.

Protocol (spec emergence §2.4, §8.4): the ``emergence`` protocol with class 0 = Ising at the
hotter temperature T0 (short correlation length) and class 1 = the colder T1 (long), against
the Gaussian clone of each class (same covariance). Binary spins have kappa = 1 (the most
sub-Gaussian marginal), so the fully connected committee should localise on Ising inputs
and not on the clone: a check that the effect is not an artefact of the erf nonlinearity.
Run in 1D (exact ring sampler) and 2D (periodic L x L; chain sampler, ``sampler_2d``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, ExperimentConfig, F, sub
from ..probes._ipr import ipr_baseline
from .registry import Claim, Experiment, register
from ._emergence_common import (DataConfig, ModelConfig, TrainConfig, long_range_detectors, median_seed,
                                per_seed_detector_ipr, plot_accuracy, plot_ipr_curves, plot_receptive_fields,
                                seed_stats, train_many)

__all__ = ["EmergenceIsingConfig", "tiny", "paper", "run", "EXPERIMENT"]

TAGS = ("ising", "clone")


@dataclass(frozen=True)
class EmergenceIsingConfig(ExperimentConfig):
    """Ising (T0 hot/short, T1 cold/long) vs its Gaussian clone, in 1D and 2D."""

    RENAMED = {"train.bs": "train.batch_size"}  # one name per concept (issue 11): the mini-batch size is batch_size

    data: DataConfig = sub(DataConfig, "the task; data.L is the 1D ring size, data.T_ising the temperatures")
    model: ModelConfig = sub(ModelConfig, "the committee TwoLayer")
    train: TrainConfig = sub(TrainConfig, "online SGD and evaluation")
    dims: tuple[int, ...] = F((1, 2), "lattice dimensions to run, each 1 or 2", choices=(1, 2), length=(1, 2))
    L2: int = F(20, "linear size of the 2D lattice (D = L2^2)", ge=4)
    T_ising_2d: tuple[float, ...] = F((4.0, 2.3), "2D temperatures (T0 hot/short, T1 cold/long), J = 1; T1 just "
                                      "above T_c = 2.269 (below it the lattice is magnetised and |m| solves the "
                                      "task; data.T_ising is used in 1D)", gt=0, tag="[design]", length=2)
    sampler_2d: str = F("swendsen_wang", "2D sampler: swendsen_wang (default, short autocorrelation), wolff, "
                        "or checkerboard metropolis (fast with many chains)",
                        choices=("swendsen_wang", "wolff", "metropolis"))
    n_chains_2d: int = F(512, "parallel chains of the 2D sampler; samples of one chain are "
                         "data.sweeps_between_samples sweeps apart", ge=1)
    burn_in_sweeps_2d: int = F(200, "burn-in sweeps of each 2D chain", ge=0)
    n_seeds: int = F(1, "seeds per data set", ge=1)
    ipr_factor: float = F(5.0, "a unit is localised iff IPR > ipr_factor * 3/(D+2)", gt=0)

    def check(self) -> None:
        if not self.dims or any(d not in (1, 2) for d in self.dims):
            raise ConfigError("dims", "each of 1, 2", self.dims)


def paper() -> EmergenceIsingConfig:
    """The cover figure's network and budget on Ising spins [paper?: the paper's temperatures are unknown].

    - ``model``, ``train``: the ``emergence`` paper preset (K = 8, mf, erf, trained +-1 biases,
      lr 0.05, batch_size 1, t <= 10^4) [code, spec §7].
    - 1D: ring L = 40, T = (3, 1.5) (xi(T) = 0.88, 6.3 sites), exact sampler [design].
    - 2D: periodic 20 x 20 (the cover figure's D = 400), T = (4, 2.3): T1 just above T_c = 2.269,
      so the cold class is not magnetised (below T_c, |m| alone solves the task); Swendsen-Wang,
      512 chains, 5 sweeps between samples [design]. Cost: ~1.6 ms per 2D sample on one CPU core
      (measured), i.e. ~2 h for the 4e6 samples of t = 10^4; checkerboard Metropolis
      (``sampler_2d=metropolis``) costs ~0.33 ms per sample.
    """
    base = EmergenceIsingConfig()
    return dataclasses.replace(base, data=dataclasses.replace(base.data, L=40))


def tiny() -> EmergenceIsingConfig:
    """1D L = 40 and 2D L = 8 (checkerboard Metropolis), t = 1500, K = 4: ~25 s on 2 cores."""
    base = EmergenceIsingConfig()
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, L=40),
        model=dataclasses.replace(base.model, K=4),
        train=dataclasses.replace(base.train, T=1500.0, n_evals=20, n_test=2000, lr=0.2),
        L2=8, sampler_2d="metropolis",
    )


def _task(cfg: EmergenceIsingConfig, dim: int, kind: str):
    from ..data import GaussianClone, Ising, Mixture

    d = cfg.data
    models = []
    for T in (d.T_ising if dim == 1 else cfg.T_ising_2d):
        if dim == 1:
            m = Ising.from_temperature(T, L=d.L, dim=1, boundary=d.boundary)
        else:
            m = Ising.from_temperature(T, L=cfg.L2, dim=2, boundary="periodic", sampler=cfg.sampler_2d,
                                       n_chains=cfg.n_chains_2d, burn_in_sweeps=cfg.burn_in_sweeps_2d,
                                       sweeps_between_samples=d.sweeps_between_samples)
        models.append(m if kind == "ising" else GaussianClone.of(m))
    return Mixture(*models)


def run(cfg: EmergenceIsingConfig, ctx) -> dict:
    summary: dict = {}
    for dim in cfg.dims:
        tasks = [_task(cfg, dim, kind) for kind in TAGS]
        tr = train_many(cfg.model, cfg.train, tasks, ctx, list(TAGS), n_seeds=cfg.n_seeds,
                        desc=f"Ising {dim}D + clone", data_stream=f"data{dim}d")
        res, snaps = tr.result, tr.result.snapshots
        D, L = tr.D, tr.L
        base = ipr_baseline(D)
        iprs = tr.ipr()  # (E, S, K)
        detect = long_range_detectors(snaps["b"][-1], snaps["v"][-1])  # (S, K)
        sfx = f"_{dim}d"
        summary[f"ipr_baseline{sfx}"] = base
        for tag in TAGS:
            idx = tr.runs(tag)
            summary.update(seed_stats(f"ipr_{tag}{sfx}", per_seed_detector_ipr(tr, tag)))
            summary.update(seed_stats(f"acc_{tag}{sfx}", res.acc[-1, idx]))
            summary.update(seed_stats(f"n_localised_{tag}{sfx}",
                                      (detect[idx] & (iprs[-1, idx] > cfg.ipr_factor * base)).sum(-1)))
            # every unit, whatever it detects (2D Ising: the short-range detectors can become one-hot)
            summary.update(seed_stats(f"n_localised_any_{tag}{sfx}", (iprs[-1, idx] > cfg.ipr_factor * base).sum(-1)))
            summary.update(seed_stats(f"ipr_max_{tag}{sfx}", iprs[-1, idx].max(-1)))
            summary[f"ipr_short_detectors_{tag}{sfx}"] = [float(v[~m].mean()) if (~m).any() else None
                                                           for v, m in zip(iprs[-1, idx], detect[idx])]
        summary[f"steps{sfx}"] = int(res.steps[-1])
        ctx.save_arrays(**{f"t{sfx}": res.t, f"W{sfx}": snaps["W"], f"b{sfx}": snaps["b"], f"v{sfx}": snaps["v"],
                           f"ipr{sfx}": iprs.astype(np.float32), f"acc{sfx}": res.acc, f"detect{sfx}": detect})
        desc = (f"{dim}D Ising L={L}, T=(T0, T1)={cfg.data.T_ising if dim == 1 else cfg.T_ising_2d} (J=1; class 0 hot/short), "
                f"{'exact ring sampler' if dim == 1 else cfg.sampler_2d + f' ({cfg.n_chains_2d} chains)'}; "
                f"K={cfg.model.K} {cfg.model.mode} bias={cfg.model.bias}; lr={cfg.train.lr}.")
        shown = median_seed(summary[f"ipr_ising{sfx}"])
        first = {tag: tr.runs(tag)[shown] for tag in TAGS}
        ctx.save_figure(plot_receptive_fields({t: snaps["W"][-1, i] for t, i in first.items()}, L, dim,
                                              b={t: snaps["b"][-1, i] for t, i in first.items()}),
                        f"receptive_fields{sfx}", f"Final receptive fields of seed {shown} of {cfg.n_seeds} (master "
                        f"seed {cfg.seed}{'; the seed whose ipr_ising is the median' if cfg.n_seeds > 1 else ''}), "
                        f"Ising (top) vs its Gaussian clone (bottom, same initial weights); titles: bias sign and "
                        f"IPR. {desc}")
        ctx.save_figure(plot_ipr_curves(res.t, {t: iprs[:, tr.runs(t)].reshape(len(res.t), -1) for t in TAGS}, base,
                                        detect={t: detect[tr.runs(t)].reshape(-1) for t in TAGS},
                                        threshold=cfg.ipr_factor * base, time_unit=cfg.train.time_unit,
                                        seeds={t: np.repeat(np.arange(cfg.n_seeds), cfg.model.K) for t in TAGS}),
                        f"ipr_vs_t{sfx}", f"IPR of every unit of all {cfg.n_seeds} seed(s) against "
                        f"t = {cfg.train.time_unit}/D (coloured: long-range detectors, one shade per seed; grey: "
                        f"the others); dashed 3/(D+2) = {base:.4f}; dotted: the localisation threshold "
                        f"{cfg.ipr_factor:g} x 3/(D+2). {desc}")
        ctx.save_figure(plot_accuracy(res.t, {t: res.acc[:, tr.runs(t)].mean(1) for t in TAGS}, cfg.train.time_unit),
                        f"accuracy_vs_t{sfx}", f"Test accuracy against t = {cfg.train.time_unit}/D. {desc}")
    return summary


def _check(s):
    out, ok = [], []
    def med(key):
        v = s.get(f"{key}_median", s.get(key))
        return float(v) if isinstance(v, (int, float)) and np.isfinite(v) else None

    for dim in (1, 2):
        a, b, base = med(f"ipr_ising_{dim}d"), med(f"ipr_clone_{dim}d"), s.get(f"ipr_baseline_{dim}d")
        if a is None or b is None:
            continue
        na, nb = med(f"n_localised_any_ising_{dim}d") or 0, med(f"n_localised_any_clone_{dim}d") or 0
        out.append(f"{dim}D: ising {a:.4f} clone {b:.4f} (baseline {base:.4f}; localised units of any kind "
                   f"{na:g} vs {nb:g})")
        ok.append(a > 2 * b or (na > 0 and nb == 0))
    return ("; ".join(out) or "n/a"), (all(ok) if ok else None)


EXPERIMENT = register(Experiment(
    name="emergence-ising",
    summary="FC committee on two-temperature Ising spins (1D, 2D) vs their Gaussian clone",
    config=EmergenceIsingConfig,
    presets={"tiny": tiny, "paper": paper},
    run=run,
    claims=(
        Claim("Ising inputs at two temperatures also give localised receptive fields (the effect is not an erf "
              "artefact); their Gaussian clone does not", "Ingrosso & Goldt 2022 [paper?]; spec emergence §8.4",
              "per dimension: ipr_ising > 2 x ipr_clone (long-range detectors), or some Ising unit localised "
              "(IPR > ipr_factor x 3/(D+2)) and no clone unit", _check),
    ),
))
