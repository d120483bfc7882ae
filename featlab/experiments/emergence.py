"""``emergence``: a fully connected committee trained online on the NLGP task grows localised
receptive fields; the same network on the NLGP's Gaussian clone does not (Ingrosso & Goldt,
PNAS 2022, Fig. 1; spec emergence §3, §4.1, §5, §7).

Protocol:
1. Build the two-class task twice: NLGP (class 0 short ξ0, class 1 long ξ1) and its Gaussian
   clone (same per-class covariance, hence the same mean and covariance, κ4 ≡ 0). A latent
   kernel that is not positive semi-definite is refused before the run (``data.psd``).
2. Train ``TwoLayer`` (mf, erf(h/√2), ±1 trained biases) by true online SGD on both, with the
   same seed: identical initial weights, label stream and latent noise stream; all runs
   (tasks × ``n_seeds`` seeds) in one batched loop.
3. Evaluate at t = 0 and at log-spaced t ∈ [0.1, T] on a fixed 20k test set: test MSE,
   accuracy, gradient norms, weight snapshots.
4. Summarise, per seed, the final IPR of the units that detect the long-range class (b·v > 0,
   see :func:`~featlab.experiments._emergence_common.long_range_detectors`) against 3/(D+2),
   with the median and spread over seeds; the claims are judged on the medians.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import ExperimentConfig, F, sub
from ..probes._ipr import ipr_baseline
from ..probes.receptive import circular_centre, fwhm, profile, tiling
from .registry import Claim, Experiment, register
from ._emergence_common import (PAPER_IPR_CLONE, PAPER_IPR_PLATEAU, DataConfig, ModelConfig, TrainConfig,
                                build_task, latent_record, long_range_detectors, median_seed, per_class_kurtosis,
                                per_seed_detector_ipr, plot_accuracy, plot_ipr_curves, plot_receptive_fields,
                                seed_stats, train_many)

__all__ = ["EmergenceConfig", "tiny", "paper", "run", "EXPERIMENT"]

TAGS = ("nlgp", "clone")


@dataclass(frozen=True)
class EmergenceConfig(ExperimentConfig):
    """NLGP against its Gaussian clone, same seed. Defaults = the cover-figure recipe (§7)."""

    RENAMED = {"train.bs": "train.batch_size"}  # one name per concept (issue 11): the mini-batch size is batch_size

    data: DataConfig = sub(DataConfig, "the two-class task (NLGP; the clone shares every field)")
    model: ModelConfig = sub(ModelConfig, "the committee TwoLayer")
    train: TrainConfig = sub(TrainConfig, "online SGD and evaluation")
    n_seeds: int = F(4, "seeds per data set, batched in one loop; the outcome can differ between seeds "
                     "(at xi=(2,10), g=3 two of four localise), so the summary gives every seed and the "
                     "median and spread", ge=1, cost="n_seeds x 2 runs of T*D steps")
    ipr_factor: float = F(5.0, "a unit is localised iff IPR > ipr_factor * 3/(D+2)", gt=0)

    def check(self) -> None:
        super().check()
        self.data.check_realisable()


def paper() -> EmergenceConfig:
    """Cover figure (PNAS Fig. 1; the repository's ``conv_emerge.png``), spec §7's recipe.

    Field by field, with the source of each value:

    - ``data.dim = 2``, ``data.L = 20``: the figure's 20 x 20 receptive fields; its IPR baseline
      0.0075 is 3/(D+2) at D = 400 [figure].
    - ``data.xi = (1, 3)`` px, ``data.gain = 10`` (original convention), ``data.boundary =
      "periodic"``: the recipe that reproduces panel D (reference flags ``--pbc --xis 1 3
      --gain 10``) [inferred; measured: seed 0 gives ipr_nlgp 0.0525, g = 30 gives 0.0589; this
      preset's 4 seeds: median 0.0510 (6.8 x 3/(D+2)), [0.048, 0.057], clone 0.0055; README].
      Alternatives tried and rejected: ξ = (2, 10) (the reference's 0.1, 0.5 with
      ``--extensivexis``) with g = 3 reaches only 0.013, is seed-bimodal and its class-1
      kernel is indefinite (λ_min = −5.96, refused); open boundaries pin the blobs to the
      corners and lift the clone to 0.009–0.011.
    - ``data.jitter = 1e-3``: the reference adds 1e-3·I to every latent covariance [code]; it
      also makes the wrapped ξ = 3 kernel positive definite (λ_min = −6.5e-5 without it).
    - ``model.K = 8``, ``mode = "mf"``, ``activation = "erf"``, ``bias = "train_pm1"``, ``std0 =
      0.1``: panel C's 4 blobs (b = +1) and 4 oscillatory fields (b = −1); the driver's
      ``--model mf -g erf -K 8 --bias`` [code, figure].
    - ``train.lr = 0.05``, ``train.batch_size = 1``, ``T = 1e4`` (t = steps/D, 4·10⁶ steps), ``n_evals = 200``,
      ``n_test = 20000``: the driver's defaults and ``--time 10000``; panel D's t axis ends at
      10⁴ [code, figure].
    - ``n_seeds = 4``: several seeds, since single seeds can mislead (panel D shows dozens of
      traces) [design].
    """
    return EmergenceConfig()


def tiny() -> EmergenceConfig:
    """1D, L = 40, K = 4, g = 10, ξ = (1, 3), t = 1000, one seed: ~6 CPU-s.

    Shows ipr_nlgp > 2 ipr_clone, the clone claim and the accuracy claim, but not the 5 x
    baseline localisation claim, at any t under 30 CPU-s (measured: ipr_nlgp 0.214, 0.223, 0.225
    = 3.0-3.2 x 3/(D+2) at t = 1000, 4000, 15000; a 1D bump of s ≈ 1.8 sites): that criterion
    is a 2D-scale number (README).
    """
    base = EmergenceConfig()
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, L=40, dim=1, xi=(1.0, 3.0), gain=10.0),
        model=dataclasses.replace(base.model, K=4),
        train=dataclasses.replace(base.train, T=1000.0, n_evals=40, n_test=4000, lr=0.2),
        n_seeds=1,
    )


def _localisation_stats(W: np.ndarray, mask: np.ndarray, L: int, dim: int) -> dict:
    """Centres and FWHM (of the w² profile, in sites) of the units in ``mask``; W: (U, D)."""
    if not mask.any():
        return {"n": 0, "fwhm_median": None, "rayleigh_p": None}
    prof = profile(W[mask], L, dim)                     # (n, L) or (n, 2, L)
    width = fwhm(prof)
    centres = circular_centre(prof)
    if dim == 2:
        width = width.mean(-1)
        centres = centres[:, 1]                          # column coordinate for the 1-ring test
    tl = tiling(centres, L)
    p = tl["rayleigh_p"]
    return {"n": int(mask.sum()), "fwhm_median": float(np.nanmedian(width)) if np.isfinite(width).any() else None,
            "rayleigh_p": float(p) if p is not None and np.isfinite(p) else None}


def run(cfg: EmergenceConfig, ctx) -> dict:
    latent = latent_record(ctx, cfg.data)            # psd=clip: recorded before any figure
    tasks = [build_task(cfg.data, tag) for tag in TAGS]
    tr = train_many(cfg.model, cfg.train, tasks, ctx, list(TAGS), n_seeds=cfg.n_seeds,
                    desc="emergence: NLGP + clone")
    res = tr.result
    D, L, dim = tr.D, tr.L, tr.dim
    base = ipr_baseline(D)
    iprs = tr.ipr()                                                    # (E, S, K)
    snaps = res.snapshots
    detect = long_range_detectors(snaps["b"][-1], snaps["v"][-1])      # (S, K)
    localised = iprs[-1] > cfg.ipr_factor * base                        # (S, K)

    summary: dict = {"ipr_baseline": base, "steps": int(res.steps[-1]), "n_seeds": cfg.n_seeds,
                     "samples": int(res.steps[-1]) * cfg.train.batch_size, "t_steps": float(res.t_steps[-1]),
                     "t_samples": float(res.t_samples[-1]), "wall_s": res.wall_s,
                     "steps_per_s": res.steps_per_s, "backend": res.backend, "D": D, **latent}
    for tag in TAGS:
        idx = tr.runs(tag)
        summary.update(seed_stats(f"ipr_{tag}", per_seed_detector_ipr(tr, tag)))
        summary.update(seed_stats(f"acc_{tag}", res.acc[-1, idx]))
        summary.update(seed_stats(f"mse_{tag}", res.mse[-1, idx]))
        summary.update(seed_stats(f"ipr_max_{tag}", iprs[-1, idx].max(-1)))
        stats = [_localisation_stats(snaps["W"][-1, i], (detect & localised)[i], L, dim) for i in idx]
        summary.update(seed_stats(f"n_localised_{tag}", [st["n"] for st in stats]))
        summary.update(seed_stats(f"fwhm_median_{tag}", [st["fwhm_median"] for st in stats]))
        summary.update(seed_stats(f"tiling_rayleigh_p_{tag}", [st["rayleigh_p"] for st in stats]))
    a, b = summary["ipr_nlgp_median"], summary["ipr_clone_median"]
    summary["ipr_ratio"] = a / b if a is not None and b else None
    # "kurtosis during learning": κ(w·x) of the final long-range detectors on held-out inputs, per
    # class (pooled over the classes a Gaussian task gives a scale mixture, κ > 3, not 3)
    for tag, task in zip(TAGS, tasks):
        x, c = task.sample(cfg.train.n_test, ctx.generator("heldout"))
        idx = tr.runs(tag)
        kappa = per_class_kurtosis(snaps["W"][-1, idx].reshape(-1, D), x, c).reshape(len(idx), -1, 2)  # (R, K, 2)
        for k in (0, 1):
            vals = [float(kappa[r, detect[i], k].mean()) if detect[i].any() else None for r, i in enumerate(idx)]
            summary.update(seed_stats(f"kurtosis_{tag}_c{k}", vals))

    ctx.save_arrays(t=res.t, steps=res.steps, t_steps=res.t_steps, t_samples=res.t_samples,
                    W=snaps["W"], b=snaps["b"], v=snaps["v"], ipr=iprs.astype(np.float32),
                    acc=res.acc, mse=res.mse, grad_norm_w=res.grad_norm["w"],
                    run_tags=np.array(tr.tags), run_seeds=np.array(tr.seeds), detect=detect)

    shown = median_seed(summary["ipr_nlgp"])
    pick = {tag: tr.runs(tag)[shown] for tag in TAGS}
    fig = plot_receptive_fields({tag: snaps["W"][-1, i] for tag, i in pick.items()}, L, dim,
                                b={tag: snaps["b"][-1, i] for tag, i in pick.items()})
    ctx.save_figure(fig, "receptive_fields",
                    f"Final receptive fields w_k of seed {shown} of {cfg.n_seeds} (master seed {cfg.seed}; "
                    f"{'the seed whose ipr_nlgp is the median' if cfg.n_seeds > 1 else 'the only seed'}) for the "
                    f"NLGP (top) and its Gaussian clone (bottom, same seed: same initial weights), t = {res.t[-1]:g}; "
                    f"titles: bias sign and IPR; {'one colour scale and colour bar per row' if dim == 2 else 'y axis shared per row'}. "
                    f"{_describe(cfg)}")
    reference = None
    if dim == 2 and L == 20:
        reference = {"nlgp": (*PAPER_IPR_PLATEAU, "PNAS Fig. 1D plateau 0.055-0.06 (read from figure)"),
                     "clone": (PAPER_IPR_CLONE, PAPER_IPR_CLONE, "PNAS Fig. 1G clone ~0.0065 (read from figure)")}
    fig = plot_ipr_curves(res.t, {tag: iprs[:, tr.runs(tag)].reshape(len(res.t), -1) for tag in TAGS}, base,
                          detect={tag: detect[tr.runs(tag)].reshape(-1) for tag in TAGS},
                          threshold=cfg.ipr_factor * base, time_unit=cfg.train.time_unit,
                          seeds={tag: np.repeat(np.arange(cfg.n_seeds), cfg.model.K) for tag in TAGS},
                          reference=reference)
    ref_txt = (" Grey band / dash-dot line, drawn over t = 10^3 to 10^4: the paper's values read from PNAS Fig. 1D "
               "(NLGP plateau 0.055-0.06) and 1G (clone ~0.0065)." if reference else "")
    ctx.save_figure(fig, "ipr_vs_t", f"IPR of every unit of all {cfg.n_seeds} seed(s) against t = {cfg.train.time_unit}/D; "
                    f"coloured (one shade per seed): long-range detectors (b v > 0), grey: the others; dashed: "
                    f"3/(D+2) = {base:.4f}; dotted: the localisation threshold {cfg.ipr_factor:g} x 3/(D+2).{ref_txt} "
                    f"{_describe(cfg)}")
    fig = plot_accuracy(res.t, {tag: res.acc[:, tr.runs(tag)].mean(1) for tag in TAGS}, cfg.train.time_unit)
    ctx.save_figure(fig, "accuracy_vs_t", f"Test accuracy ({cfg.train.n_test} fixed samples) against "
                    f"t = {cfg.train.time_unit}/D, mean over {cfg.n_seeds} seed(s); dashed: chance. {_describe(cfg)}")
    return summary


def _describe(cfg: EmergenceConfig) -> str:
    d, m, t = cfg.data, cfg.model, cfg.train
    return (f"{d.dim}D L={d.L}, xi={d.xi}, g={d.gain} ({d.gain_convention}), {d.boundary}, jitter={d.jitter}; "
            f"K={m.K} {m.mode} {m.activation} bias={m.bias}; lr={t.lr} batch_size={t.batch_size}.")


# ------------------------------------------------------------------------------------------------
# claims: criteria fixed from the paper (PNAS Fig. 1D, 1G) before any run; judged on the medians
# over seeds (a summary written before per-seed lists existed holds plain numbers)
# ------------------------------------------------------------------------------------------------
def _median(s: dict, key: str) -> float | None:
    v = s.get(f"{key}_median", s.get(key))
    return float(v) if isinstance(v, (int, float)) and np.isfinite(v) else None


def _per_seed(s: dict, key: str) -> list:
    v = s.get(key)
    return v if isinstance(v, list) else ([v] if v is not None else [])


LOCALISED_FACTOR = 5.0   # the paper's plateau is ≈ 7-8 x 3/(D+2)
CLONE_BAND = 2.0         # the clone stays within a factor 2 of 3/(D+2), above and below


def _value_localised(s):
    a, base = _median(s, "ipr_nlgp"), s.get("ipr_baseline")
    return a / base if a is not None and base else None


def _check_localised(s: dict) -> tuple[str, bool | None]:
    r = _value_localised(s)
    if r is None:
        return "n/a", None
    base = s["ipr_baseline"]
    seeds = [v / base for v in _per_seed(s, "ipr_nlgp") if v is not None]
    n_ok = sum(v >= LOCALISED_FACTOR for v in seeds)
    return (f"median ipr_nlgp = {_median(s, 'ipr_nlgp'):.4f} = {r:.1f} x 3/(D+2) "
            f"(per seed {', '.join(f'{v:.1f}' for v in seeds)}; {n_ok}/{len(seeds)} seeds >= {LOCALISED_FACTOR:g}x)"), \
        bool(r >= LOCALISED_FACTOR)


def _value_clone(s):
    b, base = _median(s, "ipr_clone"), s.get("ipr_baseline")
    return b / base if b is not None and base else None


def _check_clone(s: dict) -> tuple[str, bool | None]:
    r = _value_clone(s)
    if r is None:
        return "n/a", None
    base = s["ipr_baseline"]
    seeds = [v / base for v in _per_seed(s, "ipr_clone") if v is not None]
    n_ok = sum(1 / CLONE_BAND <= v <= CLONE_BAND for v in seeds)
    return (f"median ipr_clone = {_median(s, 'ipr_clone'):.4f} = {r:.2f} x 3/(D+2) (per seed "
            f"{', '.join(f'{v:.2f}' for v in seeds)}; {n_ok}/{len(seeds)} seeds in [1/{CLONE_BAND:g}, {CLONE_BAND:g}]x)"), \
        bool(1 / CLONE_BAND <= r <= CLONE_BAND)


def _value_accuracy(s):
    a, b = _median(s, "acc_nlgp"), _median(s, "acc_clone")
    return a - b if a is not None and b is not None else None


def _check_accuracy(s: dict) -> tuple[str, bool | None]:
    a, b = _median(s, "acc_nlgp"), _median(s, "acc_clone")
    if a is None or b is None:
        return "n/a", None
    gap = max(a, b) - 0.5
    return f"median acc_nlgp={a:.3f}, acc_clone={b:.3f}", bool(gap > 0 and abs(a - b) < 0.5 * gap)


EXPERIMENT = register(Experiment(
    name="emergence",
    summary="FC committee on NLGP vs its Gaussian clone: localised receptive fields (Ingrosso & Goldt 2022)",
    config=EmergenceConfig,
    presets={"tiny": tiny, "paper": paper},
    run=run,
    claims=(
        Claim("A fully connected network solving the discrimination task learns localised receptive fields",
              "Ingrosso & Goldt 2022, abstract; Fig. 1C-D",
              f"median over seeds of the mean final IPR of the long-range detectors >= {LOCALISED_FACTOR:g} x 3/(D+2)",
              _check_localised,
              reference="IPR plateau ~0.055-0.06 at t = 10^4, i.e. ~7-8 x 3/(D+2) = 0.0075 (read from PNAS Fig. 1D)",
              value=_value_localised),
        Claim("The emergence is triggered by the non-Gaussian, higher-order local structure of the inputs: "
              "the Gaussian clone (same covariance) does not localise",
              "Ingrosso & Goldt 2022, abstract; Fig. 1F-G",
              f"median ipr_clone within a factor {CLONE_BAND:g} of 3/(D+2), both ways "
              f"(1/{CLONE_BAND:g} <= ipr_clone / (3/(D+2)) <= {CLONE_BAND:g})", _check_clone,
              reference="clone units flat near IPR ~0.0065 ~ 0.9 x 3/(D+2) up to t = 10^4 (read from PNAS Fig. 1G)",
              value=_value_clone),
        Claim("NLGP and clone reach similar test accuracy",
              "spec emergence §8.3 / §11 end to end",
              "|median acc_nlgp - median acc_clone| < half the gap from chance", _check_accuracy,
              value=_value_accuracy),
    ),
))
