"""What an experiment sees while it runs: paths, device, random streams, writers, progress."""
from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils import Progress, atomic_write_bytes, atomic_write_json, make_generator
from .rundir import RunDir

__all__ = ["RunContext", "DivergenceError", "first_nonfinite"]


class DivergenceError(RuntimeError):
    """Raised when a loss or metric becomes NaN/inf; the run is recorded as ``diverged``."""


def first_nonfinite(obj: Any, path: str = "") -> tuple[str, str] | None:
    """``(where, "nan"|"inf"|"-inf")`` of the first non-finite number in ``obj``, else None.

    Walks dicts, lists, tuples, numpy arrays and scalars and torch tensors; ``where`` is a
    dotted/indexed path (``ipr_nlgp``, ``curve[3]``). ``None`` values are fine: they mean "not
    applicable".

    Convention:
        A recorded number that is NaN or infinite means the run diverged: every value of the
        summary and of each ``metrics.jsonl`` row is checked (issue 10). Experiments write
        ``None``, never NaN, for a value that does not apply.
    """
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc" and obj.size and not np.isfinite(obj).all():
            idx = np.argwhere(~np.isfinite(obj))[0]
            v = obj[tuple(idx)]
            return f"{path}[{', '.join(map(str, idx))}]", _kind(complex(v).real if obj.dtype.kind == "c" else float(v))
        if obj.dtype == object:
            obj = obj.tolist()
        else:
            return None
    if isinstance(obj, (float, np.floating)):
        return None if math.isfinite(float(obj)) else (path or "value", _kind(float(obj)))
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = first_nonfinite(v, f"{path}.{k}" if path else str(k))
            if hit is not None:
                return hit
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            hit = first_nonfinite(v, f"{path}[{i}]")
            if hit is not None:
                return hit
    return None


def _kind(v: float) -> str:
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


class RunContext:
    """Handed to ``Experiment.run(cfg, ctx)``.

    Attributes
    ----------
    path : pathlib.Path
        The run directory.
    device : torch.device
        Resolved device; data for the run should be generated on it.
    log : logging.Logger
        Writes to ``log.txt`` and to the console.
    quirks : list[str]
        Active reference quirks (``path=value``); appended to every figure caption.
    provenance : dict
        ``{"preset", "scale", "overrides"}`` as recorded in config.json (empty when unknown);
        with the seed, appended to every figure caption (:meth:`caption_suffix`).
    """

    def __init__(self, rundir: RunDir, cfg: Any, device: torch.device, logger: logging.Logger,
                 quirks: list[str] | None = None, provenance: dict | None = None):
        self.rundir = rundir
        self.path = rundir.path
        self.cfg = cfg
        self.device = device
        self.log = logger
        self.quirks = list(quirks or [])
        self.provenance = dict(provenance or {})
        self._arrays: dict[str, np.ndarray] = {}
        self._captions: dict[str, str] = {}
        self._n_metrics = 0

    # randomness -------------------------------------------------------------------------------
    def generator(self, stream: str, device: torch.device | str | None = None) -> torch.Generator:
        """An independent ``torch.Generator`` for ``stream``, derived from ``cfg.seed``.

        Drawn on ``device`` (default: the run's device).
        """
        return make_generator(self.cfg.seed, stream, device or self.device)

    # writers ----------------------------------------------------------------------------------
    def log_metrics(self, **row: Any) -> None:
        """Append one JSON line to ``metrics.jsonl`` (flushed at once).

        A NaN/inf value is written as null and then raises :class:`DivergenceError` naming it
        (the run is recorded as ``diverged``); use ``None`` for a value that does not apply.
        """
        bad = first_nonfinite(row)
        clean = {k: _jsonable(v) for k, v in row.items()}
        with open(self.rundir.metrics, "a") as f:
            f.write(json.dumps(clean, allow_nan=False) + "\n")
        self._n_metrics += 1
        if bad is not None:
            raise DivergenceError(f"metric {bad[0]} is {bad[1]} (metrics.jsonl row {self._n_metrics}): "
                                  "the run diverged; try a smaller learning rate")

    def save_arrays(self, **arrays: Any) -> None:
        """Add named arrays to ``arrays.npz`` (rewritten atomically; tensors are moved to CPU)."""
        for k, v in arrays.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu().numpy()
            self._arrays[k] = np.asarray(v)
        buf = io.BytesIO()
        np.savez_compressed(buf, **self._arrays)
        atomic_write_bytes(self.rundir.arrays, buf.getvalue())

    def caption_suffix(self) -> str:
        """``"Run: preset tiny (smoke scale), seed 0, overrides: a.b=1."`` for this run.

        Convention:
            Names the preset and its scale ("no preset" when unknown), the master seed, and
            the overridden fields other than the seed ("no overrides" when none; omitted when
            the preset is unknown). The experiment's own caption says what is drawn (which
            seed of a batch, which iteration or checkpoint) and the baselines.
        """
        p = self.provenance
        preset = p.get("preset")
        head = f"preset {preset} ({p.get('scale', 'smoke')} scale)" if preset else "no preset"
        parts = [head, f"seed {self.cfg.seed}"]
        ov = p.get("overrides")
        if ov is not None:
            ov = {k: v for k, v in ov.items() if k != "seed"}
            parts.append("overrides: " + ", ".join(f"{k}={_short(v)}" for k, v in ov.items()) if ov
                         else "no overrides")
        return "Run: " + ", ".join(parts) + "."

    def save_figure(self, fig: Any, stem: str, caption: str = "") -> list[Path]:
        """Save ``fig`` as ``figures/<stem>.png`` and ``.pdf``; record the caption.

        The run's provenance (:meth:`caption_suffix`: preset, scale, seed, overridden fields)
        and the active reference quirks are appended to the caption.
        """
        from ..plotting import save

        paths = save(fig, self.rundir.figures / stem)
        caption = (caption.rstrip() + " " if caption else "") + self.caption_suffix()
        if self.quirks:
            caption += " Reference quirks active: " + ", ".join(self.quirks) + "."
        self._captions[stem] = caption
        atomic_write_json(self.rundir.figures / "captions.json", self._captions)
        return paths

    # progress and checks ----------------------------------------------------------------------
    def progress(self, total: int | None, desc: str = "", unit: str = "it", log_every: float = 0.1) -> Progress:
        """A tqdm bar (off on non-TTY) that also logs every ``log_every`` of ``total``."""
        return Progress(total, desc=desc, unit=unit, log_every=log_every, logger=self.log)

    def check_finite(self, value: float | torch.Tensor, what: str, *, ceiling: float | None = None) -> None:
        """Raise :class:`DivergenceError` naming ``what`` if ``value`` is NaN or infinite, or (with
        ``ceiling``) if any element exceeds ``ceiling``.

        ``ceiling`` catches a divergence that stays finite: a loss that rose far above its
        value at initialisation (e.g. saturated units whose outputs no longer depend on the
        input) means the run diverged even though no number overflowed.
        """
        v = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        if not bool(torch.isfinite(v).all()):
            raise DivergenceError(f"{what} became non-finite ({v.flatten()[:4].tolist()}); "
                                  "try a smaller learning rate")
        if ceiling is not None and bool((v > ceiling).any()):
            raise DivergenceError(f"{what} rose to {float(v.max()):.4g}, above {ceiling:.4g} (far above its value at "
                                  "initialisation): the run diverged; try a smaller learning rate")


def _short(v: Any) -> str:
    """A config value for a caption: lists as ``a,b``, long values cut to 40 characters."""
    text = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
        v = v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v
