"""Record the lenses from inside your own training loop: :class:`Tracker`.

::

    tracker = Tracker(model, X_probe, every=100, out="runs", name="my-cnn")
    for step, (x, y) in enumerate(loader):
        ...                                  # your forward, backward, optimizer step
        tracker.step(step)                   # measures the lenses when step % every == 0
    tracker.close()                          # figures against step, summary.json, DONE

The run directory is an ordinary ``probe`` run (``OUT/probe/<hash>/``: ``config.json``,
``metrics.jsonl`` with one row per lens, layer and measured step, ``arrays.npz``, figures,
``summary.json``, ``DONE``), so ``featlab runs`` and ``featlab report`` show it next to the runs
of ``featlab probe``. The Tracker never depends on a training framework; from Lightning or
Accelerate call it on the main process with the unwrapped module (see the README).

Convention:
    ``init="now"`` snapshots the model when the Tracker is created: create it before the first
    optimizer step and that snapshot is the true init of every baseline. ``step()`` runs the
    lenses under ``torch.enable_grad()`` in eval mode and restores the model's train/eval modes;
    it reads no parameter gradient, changes no weight or BatchNorm statistic and leaves the
    global RNG untouched (its draws come from streams of ``seed``), so training goes on exactly
    as without it. ``step()`` refuses to run under ``torch.inference_mode`` (AGOPs need
    autograd). Probe inputs are fixed at construction (the same images at every step).
"""
from __future__ import annotations

import copy
import time
import traceback
from dataclasses import replace
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

__all__ = ["Tracker"]


class Tracker:
    """Measure the lenses of ``model`` every ``every`` steps into a ``probe`` run directory.

    Parameters
    ----------
    model : nn.Module
        The model being trained (the same object every step, or pass ``model=`` to :meth:`step`,
        e.g. an unwrapped DDP/Accelerate module).
    X : Tensor (n, ...)
        Probe inputs (float; NumPy arrays are refused with a pointer to ``torch.from_numpy``).
    y : Tensor (n,), optional
        Labels: adds the probe accuracy.
    every : int
        Measure when ``step % every == 0``.
    lenses, layers, output, batch_size
        As the ``probe`` experiment's fields (``lenses=("auto",)``: every lens that applies).
    init : "now", None, nn.Module or state dict
        The init baseline: a snapshot taken now (default), none, or the given model/state.
    fresh : nn.Module or callable, optional
        An independent fresh initialisation (or a factory returning one): the CNFA reference's
        ``i_val`` baseline, and the untrained net when ``init=None``.
    out : str or Path
        Output root; the run goes to ``out/probe/<hash>/``.
    name : str, optional
        Label of the run (part of the hash); default the model's class name and a timestamp.
    seed : int
        Seeds the diffeomorphisms, noise, shuffles and sketches.
    settings : dict, optional
        Overrides of lens fields by dotted path, as ``--set`` takes them
        (``{"dgr.delta": 2, "cnfa.metric": "cosine"}``).
    overwrite : bool
        Replace a DONE run of the same config (otherwise ``FileExistsError``). The folder is
        locked while the Tracker is open (a second Tracker on it raises ``RunBusy``).
    quiet : bool
        No console log lines (they still go to ``log.txt``).
    """

    def __init__(self, model: nn.Module, X: Any, *, y: torch.Tensor | None = None, every: int = 100,
                 lenses: Iterable[str] = ("auto",), layers: Iterable[str] = (), output: str | None = None,
                 batch_size: int = 64, init: Any = "now", fresh: Any = None, out: str = "runs",
                 name: str | None = None,
                 seed: int = 0, settings: dict | None = None, overwrite: bool = False, quiet: bool = True):
        from ..config import apply_overrides, validate
        from ..experiments.probe import ProbeConfig
        from ..runs.context import RunContext
        from ..runs.rundir import RunDir
        from ..runs.lock import RunLock
        from ..runs.runner import _discard, _logger, run_meta, run_path
        from ..utils import atomic_write_json
        from .adapt import model_dtype_device, prepare_inputs

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if int(every) < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.model, self.every = model, int(every)
        self.X = prepare_inputs(model, X)
        self.y = None if y is None else torch.as_tensor(y).reshape(-1).long()
        if self.y is not None and self.y.shape[0] != self.X.shape[0]:
            raise ValueError(f"y has {self.y.shape[0]} labels for {self.X.shape[0]} inputs")
        _, device = model_dtype_device(model)
        name = name or f"{type(model).__name__}-{time.strftime('%Y%m%d-%H%M%S')}"
        cfg = ProbeConfig(seed=int(seed), device=str(device), name=name)
        cfg = replace(cfg, model=replace(cfg.model, source=f"live:{type(model).__qualname__}", output=output,
                                         fresh_init=False),
                      data=replace(cfg.data, dataset="tensor", n_images=int(self.X.shape[0])),
                      lenses=tuple(lenses), layers=tuple(layers), batch_size=int(batch_size))
        cfg = validate(apply_overrides(cfg, settings or {}))
        self.cfg = cfg
        if isinstance(init, str) and init == "now":
            try:
                self.init = copy.deepcopy(model)
            except Exception as e:  # noqa: BLE001 - e.g. a wrapper holding a trainer or a process group
                raise TypeError(f"cannot copy {type(model).__name__} for the init snapshot ({type(e).__name__}: "
                                f"{e}); pass the plain network (e.g. pl_module.net), init=None or init=<a copy>") \
                    from None
        elif init is None or isinstance(init, nn.Module):
            self.init = init
        elif isinstance(init, dict):
            self.init = copy.deepcopy(model)
            self.init.load_state_dict(init)
        else:
            raise TypeError("init must be 'now', None, an nn.Module or a state dict")
        if fresh is not None and not isinstance(fresh, nn.Module):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                fresh = fresh()
            if not isinstance(fresh, nn.Module):
                raise TypeError("fresh must be an nn.Module or a callable returning one")
        self.fresh = fresh.to(device) if fresh is not None else None
        for m in (self.init, self.fresh):
            for p in (m.parameters() if m is not None else ()):
                p.requires_grad_(False)
        self.rundir = RunDir(run_path(out, "probe", cfg))
        self._lock = RunLock(self.rundir.path).acquire(0)  # one writer per folder (RunBusy if held)
        try:
            if self.rundir.is_done() and not overwrite:
                raise FileExistsError(f"{self.rundir.path} is a DONE run of this config; pass overwrite=True "
                                      "or another name=")
            _discard(self.rundir.path)
            self.rundir.path.mkdir(parents=True)
        except BaseException:
            self._lock.release()
            raise
        prov = {"preset": None, "scale": "smoke", "overrides": None}  # a live run: built from no preset
        atomic_write_json(self.rundir.config, run_meta("probe", cfg, self.rundir, device, prov))
        self._log, self._handlers = _logger(self.rundir, quiet)
        self.ctx = RunContext(self.rundir, cfg, device, self._log, [], provenance=prov)
        self._suite = None
        self._results: list[dict] = []
        self._steps: list[int] = []
        self._t0 = time.perf_counter()
        self.closed = False
        self._log.info("tracking %s on %d probe inputs every %d steps -> %s", type(model).__name__,
                       self.X.shape[0], self.every, self.rundir.path)

    @property
    def path(self):
        """The run directory."""
        return self.rundir.path

    def _suite_for(self, model: nn.Module):
        if self._suite is None:
            from ..experiments.probe import _settings
            from .adapt import prepare_inputs
            from .lenses import LensSuite

            c = self.cfg
            self.X = prepare_inputs(model, self.X)  # the model may have moved since (e.g. to the GPU)
            for m in (self.init, self.fresh):
                if m is not None:
                    m.to(self.X.device)
            self._suite = LensSuite(model, self.X, y=self.y, lenses=c.lenses, layers=c.layers, init=self.init,
                                    fresh=self.fresh, output=c.model.output, settings=_settings(c),
                                    batch_size=c.batch_size, generator=lambda stream: self.ctx.generator(stream))
        return self._suite

    def step(self, step: int, *, epoch: int | None = None, model: nn.Module | None = None,
             force: bool = False) -> dict | None:
        """Measure the lenses if ``step % every == 0`` (or ``force``); return the headline numbers.

        ``model`` replaces the tracked model for this call (same architecture), e.g.
        ``accelerator.unwrap_model(model)``. Returns None when nothing was measured.
        """
        from ..experiments.probe import _arrays, headline, metric_rows

        if self.closed:
            raise RuntimeError("the Tracker is closed")
        if not force and int(step) % self.every != 0:
            return None
        if int(step) in self._steps:
            return None
        if torch.is_inference_mode_enabled():
            raise RuntimeError("Tracker.step() needs autograd (AGOPs); call it outside torch.inference_mode() "
                               "(e.g. from a training hook, not a validation one)")
        m = model if model is not None else self.model
        with torch.enable_grad():
            res = self._suite_for(m).measure(m)
        i = len(self._results)
        self._results.append(res)
        self._steps.append(int(step))
        for row in metric_rows(res):
            self.ctx.log_metrics(checkpoint=i, step=int(step), epoch=epoch, **row)
        self.ctx.save_arrays(**_arrays(i, res), steps=np.asarray(self._steps, dtype=float))
        h = headline(res)
        self._log.info("step %d: %s", step, ", ".join(f"{k} {v:.3g}" for k, v in h.items()
                                                      if isinstance(v, float)))
        return h

    def close(self, step: int | None = None) -> dict:
        """Measure ``step`` if given (and not measured yet), write figures, summary.json and DONE."""
        from ..experiments.probe import summarise, write_figures
        from ..utils import atomic_write_json, atomic_write_text

        if self.closed:
            return self.rundir.read_summary()
        try:
            if step is not None:
                self.step(step, force=True)
            if not self._results:
                raise RuntimeError("nothing was measured: call step() at least once (step % every == 0)")
            c = self.cfg
            what = f"{c.model.source[5:]} at step {self._steps[-1]}"
            kind = self._suite.init_kind
            write_figures(self.ctx, c, self._results, self._steps, "step", what, kind, self._suite)
            summary = {"experiment": "probe", **summarise(c, self._suite, self._results, self._steps, "step",
                                                          "tensor inputs", kind),
                       "elapsed_s": round(time.perf_counter() - self._t0, 3)}
            atomic_write_json(self.rundir.summary, summary)
            atomic_write_text(self.rundir.done, time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
            self._log.info("done: %s", self.rundir.path)
            return summary
        except BaseException as e:
            self._fail(e)
            raise
        finally:
            self.closed = True
            self._release()

    def _fail(self, e: BaseException) -> None:
        from ..utils import atomic_write_json

        reason = "interrupted" if isinstance(e, KeyboardInterrupt) else "error"
        atomic_write_json(self.rundir.failed, {"reason": reason, "message": f"{type(e).__name__}: {e}",
                                               "traceback": "".join(traceback.format_exception(e)),
                                               "elapsed_s": round(time.perf_counter() - self._t0, 3)})

    def _release(self) -> None:
        for h in self._handlers:
            self._log.removeHandler(h)
            h.close()
        self._handlers = []
        self._lock.release()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        elif not self.closed:
            self._fail(exc)
            self.closed = True
            self._release()
