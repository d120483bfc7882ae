"""Shared pieces of the emergence experiments (Ingrosso & Goldt 2022; spec emergence §3, §4.1, §7).

Reused by ``emergence`` and its follow-ups (``emergence-gain``, ``-ising``, ``-cnn``,
``-theory``): the config groups :class:`DataConfig`, :class:`ModelConfig`,
:class:`TrainConfig`, the task builder :func:`build_task`, the batched trainer
:func:`train_many` / :func:`train_one`, the detector rule :func:`long_range_detectors` and the
figure functions. The underscore keeps this module out of the experiment registry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..config import ConfigError, F
from ..data.latent import PSD_CHOICES
from ..models.committee import pm1_bias
from ..probes._ipr import ipr
from ..train.online import OnlineResult, train_committee

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "build_task", "data_model", "Trained",
           "train_many", "train_one", "init_weights", "long_range_detectors", "final_ipr_of_detectors",
           "per_seed_detector_ipr", "seed_stats", "median_seed", "per_class_kurtosis", "latent_record",
           "record_psd_choice",
           "plot_receptive_fields", "plot_ipr_curves", "plot_accuracy", "series_colour", "PAPER_IPR_PLATEAU", "PAPER_IPR_CLONE"]

#: PNAS Fig. 1D: the localised NLGP units plateau at IPR ≈ 0.055–0.06 at t = 10⁴ (2D, L = 20),
#: read off the cover figure (the repository's ``conv_emerge.png``; spec §7).
PAPER_IPR_PLATEAU = (0.055, 0.06)
#: PNAS Fig. 1G: the clone's units stay flat near IPR ≈ 0.0065 up to t = 10⁴ (read off the figure).
PAPER_IPR_CLONE = 0.0065

DATA_KINDS = ("nlgp", "clone", "ising", "ising_clone")


# ------------------------------------------------------------------------------------------------
# configs
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """The two-class task: class 0 = short correlation length, class 1 = long (spec §3)."""

    L: int = F(20, "linear size in sites; D = L^dim", ge=2, tag="[code]")
    dim: int = F(2, "1 (ring/chain) or 2 (L x L lattice, flattened row-major)", choices=(1, 2), tag="[code]")
    xi: tuple[float, ...] = F((1.0, 3.0), "(xi0, xi1): latent correlation lengths in sites of class 0 "
                              "(short) and class 1 (long), covariance exp(-d^2/xi^2); default = the cover-figure "
                              "recipe (spec §7, reference flags --xis 1 3; reproduces PNAS Fig. 1D)", gt=0,
                              tag="[inferred]", length=2)
    gain: float = F(10.0, "NLGP gain g in gain_convention; default = the cover-figure recipe (spec §7, "
                    "--gain 10; seed 0: g = 30 gives ipr_nlgp 0.059 against 0.053)", gt=0, tag="[inferred]")
    gain_convention: str = F("original", "original: erf(g z/sqrt2)/sqrt(gamma); followup: erf(g z)/Z "
                             "(g_original = sqrt2 g_followup)", choices=("original", "followup"), tag="[code]")
    boundary: str = F("periodic", "latent-field boundary; the reference default is open (--pbc off); the "
                      "cover-figure recipe is periodic (--pbc; open pins the blobs to the corners, spec §7)",
                      choices=("periodic", "open"), tag="[inferred]")
    extensive: bool = F(False, "xi <- xi * L (the reference's --extensivexis)", tag="[code]")
    clone_formula: str = F("exact", "clone covariance: exact arcsine formula on the realised latent "
                           "covariance, or the reference's jittered form (sgoldt/conv_emerge tasks.py; "
                           "NaN above g = 1/sqrt(eps) there, an error here)",
                           choices=("exact", "reference"), quirk="reference", tag="[code]")
    variance: str = F("exact", "NLGP normaliser at the realised latent variance (exact) or at the unit "
                      "diagonal (reference inputs.NLGP: variance 1 + O(jitter))",
                      choices=("exact", "reference"), quirk="reference", tag="[code]")
    jitter: float | None = F(1e-3, "latent jitter eps I: the reference adds 1e-3 to every latent covariance "
                             "(sgoldt/conv_emerge); it also makes the wrapped xi=3 kernel at L=20 positive "
                             "definite (lambda_min = -6.5e-5 without it). None: 0 periodic, the smallest that "
                             "factorises open", ge=0, tag="[code]")
    psd: str = F("refuse", "an indefinite periodic latent kernel (xi not small against L) is refused before the "
                 "run (refuse), or its negative eigenvalues are clipped (clip: non-default; the realised "
                 "covariance then differs from the requested one, recorded in summary.json, config.json and "
                 "captions)", choices=PSD_CHOICES, quirk="clip", tag="[design]")
    T_ising: tuple[float, ...] = F((3.0, 1.5), "Ising kinds: (T0, T1) temperatures of class 0 (short, hot) "
                                   "and class 1 (long, cold), J = 1", gt=0, tag="[code]", length=2)
    ising_sampler: str = F("auto", "Ising kinds: exact 1D / swendsen_wang 2D (auto), or a named sampler",
                           choices=("auto", "exact", "wolff", "swendsen_wang", "metropolis",
                                    "original_metropolis", "followup_metropolis"),
                           quirk=("original_metropolis", "followup_metropolis"))
    sweeps_between_samples: int = F(5, "Ising chain samplers: sweeps between samples of one chain", ge=1)

    def check(self) -> None:
        if len(self.xi) != 2:
            raise ConfigError("xi", "expected two values (xi0, xi1)", self.xi)
        if len(self.T_ising) != 2:
            raise ConfigError("T_ising", "expected two values (T0, T1)", self.T_ising)

    def spectra(self, xis: Sequence[float] | None = None) -> list:
        """:class:`~featlab.data.latent.Spectrum` of the latent kernel of each ξ (default ``xi``)."""
        from ..data.latent import latent_spectrum

        return [latent_spectrum(self.L, x, self.dim, self.boundary, self.extensive, self.jitter)
                for x in (self.xi if xis is None else xis)]

    def check_realisable(self, prefix: str = "data.", xis: Sequence[float] | None = None,
                         field_name: str | None = None) -> None:
        """Refuse (ConfigError) a latent kernel that is not PSD unless ``psd="clip"``.

        Called by the ``check()`` of every experiment config that builds data on the latent
        field (not the Ising experiments, which do not use ``xi``). ``xis`` defaults to
        ``xi``; ``field_name`` is the field blamed (default ``<prefix>xi``).
        """
        from ..data.latent import indefinite_message

        if self.psd == "clip":
            return
        xis = self.xi if xis is None else tuple(xis)
        for x, sp in zip(xis, self.spectra(xis)):
            if not sp.ok:
                msg = indefinite_message(self.L, x, self.dim, self.boundary, self.extensive, self.jitter, sp,
                                         prefix=prefix)
                raise ConfigError(field_name or f"{prefix}xi", msg, xis)

    @property
    def D(self) -> int:
        return self.L ** self.dim


@dataclass(frozen=True)
class ModelConfig:
    """The original committee ``TwoLayer`` (spec §4.1)."""

    K: int = F(8, "hidden units", ge=1, tag="[code]")
    mode: str = F("mf", "readout/lr scaling: mf (1/K, lr K), lazy (1/sqrtK), conv (1), 2layer (trained v)",
                  choices=("mf", "lazy", "conv", "2layer"), tag="[code]")
    bias: str = F("train_pm1", "train_pm1: b = +1 for k < K//2, -1 otherwise, trained with lr_w/D (the "
                  "reference's --bias); fixed: +-bias_value, not trained; none: b = 0 (chance with erf)",
                  choices=("train_pm1", "fixed", "none"), tag="[code]")
    bias_value: float = F(1.0, "|b| for bias=fixed", gt=0)
    activation: str = F("erf", "sigma: erf(h/sqrt2) (the reference's erf) or relu", choices=("erf", "relu"),
                        tag="[code]")
    std0: float = F(0.1, "init std of w (and of v in 2layer)", gt=0, tag="[code]")


@dataclass(frozen=True)
class TrainConfig:
    """Online SGD (spec §4.1): fresh samples every step, log-spaced evaluations."""

    lr: float = F(0.05, "base learning rate (first layer gets lr K in mf, bias lr_w/D)", gt=0, tag="[code]")
    T: float = F(1e4, "final time in units of time_unit (t = steps/D by default)", gt=0.1, tag="[code]",
                 cost="T*D steps; ~20-50 us per step on one CPU core for D=400")
    batch_size: int = F(1, "mini-batch size (1 = true online SGD)", ge=1, tag="[code]")
    time_unit: str = F("steps", "t = steps/D (the reference, any batch_size) or samples/D",
                       choices=("steps", "samples"), tag="[code]")
    n_evals: int = F(200, "log-spaced evaluations in [0.1, T] (plus t = 0)", ge=1, tag="[code]",
                     cost="each stores all weights (n_evals x runs x K x D floats)")
    n_test: int = F(20000, "fixed test-set size per run, drawn once from its own stream", ge=1, tag="[code]")
    l1: float = F(0.0, "after each step theta <- theta - (l1/D) sign(theta) (unless l2 > 0)", ge=0, tag="[code]")
    l2: float = F(0.0, "after each step theta <- theta (1 - l2/D)", ge=0, tag="[code]")
    backend: str = F("auto", "SGD kernel: auto (numpy on cpu, torch on cuda), numpy, torch, autograd (oracle)",
                     choices=("auto", "numpy", "torch", "autograd"))
    dtype: str = F("float32", "arithmetic dtype of training and data", choices=("float32", "float64"))
    chunk_size: int = F(16384, "samples drawn per sampler call: a memory/speed knob that keeps the "
                        "distribution, but the random draws of a seed depend on it (so it is hashed)", ge=1)


# ------------------------------------------------------------------------------------------------
# tasks
# ------------------------------------------------------------------------------------------------
def data_model(cfg: DataConfig, kind: str, c: int):
    """The data model of class ``c`` (0 short, 1 long) for ``kind`` in nlgp|clone|ising|ising_clone."""
    from ..data import NLGP, GaussianClone

    if kind in ("nlgp", "clone"):
        kw = dict(L=cfg.L, xi=cfg.xi[c], gain=cfg.gain, dim=cfg.dim, gain_convention=cfg.gain_convention,
                  boundary=cfg.boundary, extensive=cfg.extensive, jitter=cfg.jitter, variance=cfg.variance,
                  psd=cfg.psd)
        if kind == "nlgp":
            return NLGP(**kw)
        return GaussianClone(**kw, clone_formula=cfg.clone_formula)
    if kind in ("ising", "ising_clone"):
        from ..data.ising import Ising

        kw = {} if cfg.ising_sampler == "auto" else {"sampler": cfg.ising_sampler}
        m = Ising.from_temperature(cfg.T_ising[c], L=cfg.L, dim=cfg.dim, boundary=cfg.boundary,
                                   sweeps_between_samples=cfg.sweeps_between_samples, **kw)
        return m if kind == "ising" else GaussianClone.of(m, psd=cfg.psd)
    raise ValueError(f"kind: allowed {', '.join(DATA_KINDS)} (got {kind!r})")


def build_task(cfg: DataConfig, kind: str):
    """The two-class mixture of ``kind`` with class 0 = short range (ξ0 / T0), class 1 = long."""
    from ..data.mixture import Mixture

    return Mixture(data_model(cfg, kind, 0), data_model(cfg, kind, 1))


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
def init_weights(cfg: ModelConfig, D: int, generator: torch.Generator, dtype=torch.float32):
    """Initial (w (K, D), b (K,), v (K,)) of ``TwoLayer`` drawn from ``generator``.

    Convention:
        w ~ N(0, std0²); b = ±1 split (+ first, ``train_pm1``), ±bias_value (``fixed``) or 0;
        v = 1 except ``2layer`` (N(0, std0²), drawn after w).
    """
    dev = generator.device
    w = cfg.std0 * torch.randn(cfg.K, D, generator=generator, device=dev, dtype=dtype)   # (K, D)
    if cfg.bias == "none":
        b = torch.zeros(cfg.K, dtype=dtype, device=dev)
    else:
        b = pm1_bias(cfg.K, 1.0 if cfg.bias == "train_pm1" else cfg.bias_value, dtype, dev)
    if cfg.mode == "2layer":
        v = cfg.std0 * torch.randn(cfg.K, generator=generator, device=dev, dtype=dtype)
    else:
        v = torch.ones(cfg.K, dtype=dtype, device=dev)
    return w, b, v


@dataclass
class Trained:
    """S = len(tags) × n_seeds runs trained together, in the order (tag, seed) tag-major.

    Attributes
    ----------
    result : OnlineResult  (snapshots W: (E, S, K, D), b, v: (E, S, K))
    tags, seeds : per-run labels, length S
    L, dim, D : geometry
    """

    result: OnlineResult
    tags: list[str]
    seeds: list[int]
    L: int
    dim: int
    D: int = field(init=False)

    def __post_init__(self):
        self.D = self.L ** self.dim

    def runs(self, tag: str) -> list[int]:
        """Indices of the runs of ``tag``."""
        return [i for i, t in enumerate(self.tags) if t == tag]

    def ipr(self) -> np.ndarray:
        """IPR of every unit at every evaluation, (E, S, K)."""
        return ipr(self.result.snapshots["W"].astype(np.float64))


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def train_many(model: ModelConfig, train: TrainConfig, tasks: Sequence, ctx, tags: Sequence[str], *,
               n_seeds: int = 1, data_stream: str = "data", desc: str = "online SGD") -> Trained:
    """Train one committee per (task, seed) pair in a single batched loop.

    Parameters
    ----------
    model, train : config groups
    tasks : sequence of mixtures with ``sample(n, generator) -> (x, c)``; one per tag
    ctx : RunContext (generators, device, progress, metrics, finiteness checks)
    tags : names of the tasks (``"nlgp"``, ``"clone"``...), used in metrics keys
    n_seeds : int
        Seeds per task. Seed i uses the streams ``init/i``, ``{data_stream}/i`` and ``test``
        for *every* task: NLGP and clone start from the same weights and draw their labels and
        latent noise from the same stream ("same seed").

    Every evaluation appends one metrics row: ``t``, ``step``, ``samples``, ``t_steps``,
    ``t_samples`` and, per tag (mean over seeds), ``mse_<tag>``, ``acc_<tag>``,
    ``grad_norm_w_<tag>``, ``ipr_<tag>`` (mean IPR of the long-range detectors). A NaN/inf
    test MSE raises through ``ctx.check_finite``.
    """
    if len(tasks) != len(tags):
        raise ValueError("tasks, tags: need one tag per task")
    dtype = _dtype(train.dtype)
    run_tags, run_seeds, Ws, bs_, vs, samplers, gens, tests = [], [], [], [], [], [], [], []
    for tag, task in zip(tags, tasks):
        g_test = ctx.generator("test")
        x_t, c_t = task.sample(train.n_test, g_test)
        geometry = (int(x_t.shape[1]), x_t.dim() - 1)                     # (L, dim)
        D = geometry[0] ** geometry[1]
        for i in range(n_seeds):
            w, b, v = init_weights(model, D, ctx.generator(f"init/{i}"), dtype)
            Ws.append(w), bs_.append(b), vs.append(v)
            samplers.append(_sampler(task, dtype))
            gens.append(ctx.generator(f"{data_stream}/{i}"))
            tests.append((x_t.reshape(train.n_test, -1).to(dtype), (1.0 - 2.0 * c_t.to(dtype))))
            run_tags.append(tag), run_seeds.append(i)
    W0, b0, v0 = torch.stack(Ws), torch.stack(bs_), torch.stack(vs)   # (S, K, D), (S, K), (S, K)
    total = int(math.ceil(train.T * D / (train.batch_size if train.time_unit == "samples" else 1)))

    mse0 = {}

    def on_eval(e, t, step, mse, acc, gnorm, snap):
        # divergence: non-finite, or (erf saturates, so it can stay finite) a test MSE that rose
        # above 1.5x its value at t = 0 (~1: outputs ~0); saturated random outputs give ~2
        mse0.setdefault("ceiling", 1.5 * max(1.0, float(np.max(mse))))
        ctx.check_finite(torch.as_tensor(mse), "test MSE", ceiling=mse0["ceiling"])
        for k in ("W", "b", "v"):  # erf saturates: diverged weights can leave the MSE finite
            ctx.check_finite(torch.as_tensor(snap[k]), f"weights {k}")
        iprs = ipr(snap["W"].astype(np.float64))                          # (S, K)
        det = long_range_detectors(snap["b"], snap["v"])                   # (S, K)
        row = {"t": t, "step": step, "samples": step * train.batch_size, "t_steps": step / D,
               "t_samples": step * train.batch_size / D}
        for tag in dict.fromkeys(run_tags):
            idx = [r for r, rt in enumerate(run_tags) if rt == tag]
            row[f"mse_{tag}"] = float(np.mean(mse[idx]))
            row[f"acc_{tag}"] = float(np.mean(acc[idx]))
            g = gnorm["w"][idx]  # NaN where no step fell since the previous evaluation
            row[f"grad_norm_w_{tag}"] = float(np.nanmean(g)) if e > 0 and np.isfinite(g).any() else None
            row[f"ipr_{tag}"] = float(iprs[idx][det[idx]].mean()) if det[idx].any() else None
        ctx.log_metrics(**row)

    with ctx.progress(total, desc=desc, unit="step") as bar:
        res = train_committee(W0, b0, v0, samplers, gens, tests, T=train.T, mode=model.mode, lr=train.lr,
                              bs=train.batch_size, time_unit=train.time_unit, n_evals=train.n_evals,
                              train_b=model.bias == "train_pm1", activation=model.activation,
                              l1=train.l1, l2=train.l2, backend=train.backend, chunk_size=train.chunk_size,
                              dtype=dtype, progress=bar, on_eval=on_eval, desc=desc)
    ctx.log.info("%s: %d steps x %d runs in %.1f s (%.0f steps/s, backend %s)", desc, int(res.steps[-1]),
                 len(run_tags), res.wall_s, res.steps_per_s, res.backend)
    return Trained(res, run_tags, run_seeds, L=geometry[0], dim=geometry[1])


def _sampler(task, dtype):
    def sample(n, generator):
        x, c = task.sample(n, generator)
        return x.reshape(n, -1).to(dtype), 1.0 - 2.0 * c.to(dtype)   # y = +1 for class 0
    return sample


def train_one(cfg, task, ctx, tag: str) -> Trained:
    """:func:`train_many` for one task; ``cfg`` has ``model`` and ``train`` groups (and optionally
    ``n_seeds``)."""
    return train_many(cfg.model, cfg.train, [task], ctx, [tag], n_seeds=getattr(cfg, "n_seeds", 1))


# ------------------------------------------------------------------------------------------------
# which units detect the long-range class
# ------------------------------------------------------------------------------------------------
def long_range_detectors(b, v) -> np.ndarray:
    """Boolean mask (..., K): the units that detect the long-range class (class 1).

    Rule: v_k·b_k > 0. With original targets (y = +1 for class 0, short ξ), a unit with
    v_k·σ(b_k) > 0 votes for class 0 at rest (w·x = 0). For odd, saturating σ = erf(·/√2), a
    larger spread of λ = w·x/√D lowers E[v_k σ(λ + b_k)] towards 0 (σ is concave on h > 0),
    i.e. towards the class-1 target −1: such a unit signals class 1 by the *power* of its
    input along w, and the long-range class has more power at low frequency and in local
    blobs. These are the b = +1 units of the cover figure (localised blobs, panel C); the
    b = −1 units detect the short-range class (oscillatory fields).

    Convention:
        b, v: (..., K) final biases and readout weights; original targets (y₀ = +1).
    """
    return (np.asarray(v) * np.asarray(b)) > 0


def final_ipr_of_detectors(tr: Trained, tag: str) -> float | None:
    """Mean final IPR over the long-range detectors of every run of ``tag`` (None if none)."""
    idx = tr.runs(tag)
    snaps = tr.result.snapshots
    mask = long_range_detectors(snaps["b"][-1, idx], snaps["v"][-1, idx])   # (R, K)
    vals = tr.ipr()[-1, idx]                                                # (R, K)
    return float(vals[mask].mean()) if mask.any() else None


def per_seed_detector_ipr(tr: Trained, tag: str, e: int = -1) -> list[float | None]:
    """Per run of ``tag`` (seed order): mean IPR of its long-range detectors at evaluation ``e``
    (None for a run without a detector)."""
    idx = tr.runs(tag)
    snaps = tr.result.snapshots
    mask = long_range_detectors(snaps["b"][e, idx], snaps["v"][e, idx])     # (R, K)
    vals = tr.ipr()[e, idx]                                                 # (R, K)
    return [float(v[m].mean()) if m.any() else None for v, m in zip(vals, mask)]


def _finite(v) -> bool:
    return v is not None and bool(np.isfinite(v))


def seed_stats(key: str, values: Sequence) -> dict:
    """``{key: per-seed list, key_median, key_spread: [min, max]}`` (lab convention for batched seeds).

    Convention:
        Non-finite or missing per-seed values become None (never NaN) and are left out of the
        median and spread; with no finite value both are None. Integer lists stay integers.
    """
    vals = [(int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else float(v))
            if _finite(v) else None for v in values]
    fin = [v for v in vals if v is not None]
    return {key: vals, f"{key}_median": float(np.median(fin)) if fin else None,
            f"{key}_spread": [float(min(fin)), float(max(fin))] if fin else None}


def median_seed(values: Sequence) -> int:
    """Index of the seed whose value is closest to the median of the finite values (0 if none):
    the representative seed drawn in receptive-field panels."""
    fin = [(i, v) for i, v in enumerate(values) if _finite(v)]
    if not fin:
        return 0
    med = float(np.median([v for _, v in fin]))
    return min(fin, key=lambda iv: (abs(iv[1] - med), iv[0]))[0]


def per_class_kurtosis(W: np.ndarray, x: torch.Tensor, c: torch.Tensor) -> np.ndarray:
    """κ(w_k·x) = E[λ⁴]/E[λ²]² of every unit *within each class*: (U, 2) float64.

    Convention:
        W: (U, D); x: (n, D) or (n, L, L) held-out inputs; c: (n,) class labels 0/1. Raw moments
        (zero-mean data). The pooled κ over both classes of a Gaussian task is not 3 but the
        scale-mixture value 3·(s0⁴ + s1⁴)/2 / ((s0² + s1²)/2)² with s_c² = wᵀΣ_c w; per class
        it is 3 for Gaussian inputs, and κ − 3 ≈ (κ_x − 3)·IPR(w) for the NLGP (spec §5.1).
    """
    from ..probes._ipr import preactivation_kurtosis

    Wt = torch.as_tensor(np.asarray(W, dtype=np.float64))
    xf = x.reshape(len(x), -1)
    out = np.empty((Wt.shape[0], 2))
    for k in (0, 1):
        out[:, k] = preactivation_kurtosis(Wt, xf[c == k]).numpy()
    return out


def latent_record(ctx, data: DataConfig, xis: Sequence[float] | None = None, prefix: str = "data.") -> dict:
    """Summary keys describing how the latent kernels were realised, for every ξ in ``xis``.

    Returns ``{"psd", "latent_cov_error" (max over ξ of max |C_realised − C_requested|),
    "latent_lambda_min" (per ξ)}``. With ``psd="clip"`` and a kernel that really was clipped,
    the choice is also recorded, with the error, in ``config.json`` (``active_choices``) and in
    every later figure caption (through ``ctx.quirks``).
    """
    xis = tuple(data.xi if xis is None else xis)
    return record_psd_choice(ctx, data.psd, xis, data.spectra(xis), prefix)


def record_psd_choice(ctx, psd: str, xis: Sequence[float], specs: Sequence, prefix: str = "") -> dict:
    """:func:`latent_record` from explicit spectra (``featlab.data.latent.Spectrum``, one per ξ)."""
    from ..utils import atomic_write_json

    err = max(sp.cov_error for sp in specs)
    out = {"psd": psd, "latent_cov_error": float(err), "latent_lambda_min": [float(sp.lam_min) for sp in specs]}
    if psd == "clip" and not all(sp.ok for sp in specs):
        bad = [f"{x:g}" for x, sp in zip(xis, specs) if not sp.ok]
        note = (f"{prefix}psd=clip (non-default): the indefinite latent kernel(s) at xi = {', '.join(bad)} had "
                f"their negative eigenvalues clipped, so the realised covariance differs from the requested one "
                f"by up to {err:.3g}")
        key = f"{prefix}psd=clip"
        ctx.quirks = [note if q == key else q for q in ctx.quirks] + ([] if key in ctx.quirks else [note])
        try:
            meta = ctx.rundir.read_config()
        except Exception:  # noqa: BLE001 - a context without a config.json (tests): nothing to amend
            meta = None
        if meta is not None:
            meta.setdefault("active_choices", {})[f"{prefix}psd"] = {
                "value": "clip", "latent_cov_error": float(err),
                "xi_clipped": [float(x) for x, sp in zip(xis, specs) if not sp.ok],
                "latent_lambda_min": out["latent_lambda_min"], "note": note}
            atomic_write_json(ctx.rundir.config, meta)
        ctx.log.warning(note)
    return out


# ------------------------------------------------------------------------------------------------
# figures (take data, return a Figure)
# ------------------------------------------------------------------------------------------------
def series_colour(name: str, i: int = 0) -> str:
    """Colour of a data-set series: the Gaussian clone blue (``PALETTE["clone"]``), its non-Gaussian
    source (``nlgp``, ``ising``...) red (``PALETTE["nlgp"]``); any other name the i-th colour of the
    cycle after C1 (so no two series of one figure share a colour)."""
    from ..plotting import PALETTE

    if name.startswith("clone") or name.endswith("clone"):
        return PALETTE["clone"]
    if name.startswith(("nlgp", "ising")):
        return PALETTE["nlgp"]
    return f"C{i + 2}"


def plot_receptive_fields(W: dict[str, np.ndarray], L: int, dim: int, b: dict[str, np.ndarray] | None = None):
    """Final receptive fields, one row per data set, one column per unit.

    ``W[name]``: (K, D). 2D: images (row-major L x L) on one symmetric colour scale per row,
    with its colour bar; 1D: profiles w_k(i) against the site i, y axis shared along the row
    and labelled on the first panel. Titles carry the bias sign and the IPR.
    """
    from ..plotting import colorbar, figure, image

    names = list(W)
    K = W[names[0]].shape[0]
    fig, ax = figure(len(names), K, width=1.3 if dim == 2 else 1.6, height=1.4 if dim == 2 else 1.3,
                     sharey="row" if dim == 1 else False)
    for r, name in enumerate(names):
        Wr = np.asarray(W[name], dtype=float)
        m = float(np.abs(Wr).max()) or 1.0
        for k in range(K):
            a = ax[r, k]
            w = Wr[k]
            sign = "" if b is None else ("b+" if b[name][k] > 0 else "b-" if b[name][k] < 0 else "b0")
            if dim == 2:
                im = image(a, w.reshape(L, L), vmin=-m, vmax=m)
            else:
                a.plot(np.arange(L), w, color="k", lw=0.8)
                a.axhline(0, color="0.7", lw=0.5)
                a.set_xticks([0, L - 1])
                a.tick_params(labelleft=k == 0)
            a.set_title(f"{sign} IPR {ipr(w):.3f}", fontsize=6)
            if k == 0:
                a.set_ylabel(name if dim == 2 else f"{name}: w_i")
        if dim == 2:
            colorbar(fig, im, list(ax[r]), f"w_k ({name})")
    fig.suptitle("final receptive fields w_k" + (" (image: row-major L x L)" if dim == 2 else
                                                   " (weight vs site i)"), fontsize=8)
    return fig


def plot_ipr_curves(t: np.ndarray, iprs: dict[str, np.ndarray], baseline: float,
                    detect: dict[str, np.ndarray] | None = None, threshold: float | None = None,
                    time_unit: str = "steps", seeds: dict[str, np.ndarray] | None = None,
                    reference: dict[str, tuple] | None = None):
    """IPR against t per unit, one panel per data set, log t axis (t > 0 only).

    ``time_unit`` ("steps" or "samples") labels the axis t = steps/D or samples/D.

    ``iprs[name]``: (E, U) for U units (all seeds); ``detect[name]``: (U,) long-range detector
    mask, drawn in colour (others grey); ``seeds[name]``: (U,) seed index of each unit: the
    detectors of each seed get their own colour and legend entry, so every seed is visible.
    Baseline 3/(D+2) dashed, ``threshold`` dotted. ``reference[name] = (lo, hi, label)``
    shades a band (lo < hi) or draws a line (lo == hi) for the paper's value, labelled.
    """
    import matplotlib as mpl

    from ..plotting import PALETTE, figure, log_axis

    names = list(iprs)
    fig, ax = figure(1, len(names), sharey=True, width=3.6, height=2.8)
    pos = t > 0
    for i, name in enumerate(names):
        a = ax[0, i]
        y = iprs[name]
        sd = None if seeds is None else np.asarray(seeds[name])
        n_seeds = 1 if sd is None else int(sd.max()) + 1
        cmap = mpl.colormaps["Blues" if series_colour(name) == PALETTE["clone"] else "Reds"]
        labelled: set = set()
        for u in range(y.shape[1]):
            det = detect is not None and bool(detect[name][u])
            if det and sd is not None and n_seeds > 1:
                colour = cmap(0.45 + 0.5 * sd[u] / max(n_seeds - 1, 1))
                lab = f"seed {sd[u]}" if sd[u] not in labelled else None
                labelled.add(sd[u])
            else:
                colour = series_colour(name, i) if det else "0.6"
                lab = None
            a.plot(t[pos], y[pos, u], color=colour, lw=1.0 if det else 0.6, alpha=0.9, label=lab,
                   zorder=2 if det else 1)
        a.axhline(baseline, color=PALETTE["baseline"], ls="--", lw=0.8, label="3/(D+2)")
        if threshold is not None:
            a.axhline(threshold, color=PALETTE["baseline"], ls=":", lw=0.8, label="localised")
        if reference and name in reference:
            # the paper's values are read at late times (t = 10^3 to 10^4): drawn over that range
            lo, hi, lab = reference[name]
            t_hi = float(t[pos].max())
            t_lo = 1e3 if t_hi > 1e3 else float(t[pos].min())
            if hi > lo:
                a.fill_between([t_lo, t_hi], lo, hi, color="k", alpha=0.15, lw=0, label=lab)
            else:
                a.hlines(lo, t_lo, t_hi, color="k", ls="-.", lw=1.0, label=lab)
        log_axis(a, "x")
        a.set_xlabel(f"time t = {time_unit}/D")
        a.set_title(name)
        a.legend(loc="upper left", fontsize=6, framealpha=0.8)
        if i == 0:
            a.set_ylabel("IPR = sum w^4 / (sum w^2)^2")
    return fig


def plot_accuracy(t: np.ndarray, acc: dict[str, np.ndarray], time_unit: str = "steps"):
    """Test accuracy against t (log axis, t > 0), one line per data set (mean over seeds).

    ``time_unit`` ("steps" or "samples") labels the axis t = steps/D or samples/D."""
    from ..plotting import PALETTE, figure, log_axis

    fig, ax = figure(1, 1)
    a = ax[0, 0]
    pos = t > 0
    for i, (name, y) in enumerate(acc.items()):
        a.plot(t[pos], np.asarray(y)[pos], color=series_colour(name, i), label=name)
    a.axhline(0.5, color=PALETTE["baseline"], ls="--", lw=0.8, label="chance")
    log_axis(a, "x")
    a.set_xlabel(f"time t = {time_unit}/D")
    a.set_ylabel("test accuracy")
    a.legend()
    return fig
