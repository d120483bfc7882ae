"""A toy experiment for sweep tests, importable by worker processes (``plugins = ["sweep_toy"]``)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from featlab.config import ExperimentConfig, F
from featlab.experiments import Claim, Experiment, register


@dataclass(frozen=True)
class SweepToyConfig(ExperimentConfig):
    gain: float = F(1.0, "a swept number", gt=0)
    sleep: float = F(0.0, "seconds to sleep inside the run", ge=0)
    fail_first: int = F(0, "fail this many attempts before succeeding", ge=0)
    marker_dir: str = F("", "where attempts and completions are logged", semantic=False)
    die: bool = F(False, "os._exit(3) inside the run: a worker process that dies")


def _run(cfg: SweepToyConfig, ctx):
    marker = Path(cfg.marker_dir) if cfg.marker_dir else None
    key = f"{cfg.gain}-{cfg.seed}"
    if marker is not None:
        with open(marker / "attempts.log", "a") as f:
            f.write(f"{key} {os.getpid()}\n")
        tries = sum(1 for ln in (marker / "attempts.log").read_text().splitlines() if ln.split()[0] == key)
        if tries <= cfg.fail_first:
            raise RuntimeError(f"planned failure {tries} of {key}")
    if cfg.die:
        os._exit(3)
    ctx.log_metrics(step=-1, started=True)
    time.sleep(cfg.sleep)
    ctx.log_metrics(step=0, value=cfg.gain * 2)
    from featlab.plotting import figure

    fig, ax = figure()
    ax[0, 0].plot([0, 1], [0, cfg.gain])
    ctx.save_figure(fig, "line", "a line of slope gain")
    if marker is not None:
        with open(marker / "completions.log", "a") as f:
            f.write(f"{key} {os.getpid()}\n")
    return {"double": cfg.gain * 2, "gain_seen": cfg.gain}


register(Experiment(
    name="sweep-toy", summary="toy experiment for tests", config=SweepToyConfig,
    presets={"tiny": SweepToyConfig}, run=_run,
    claims=(Claim("doubling doubles", "tests", "double == 2 gain",
                  lambda s: (f"{s['double']:.3g}", abs(s["double"] - 2 * s["gain_seen"]) < 1e-12)),
            Claim("gain is large", "tests", "gain > 2", lambda s: (f"{s['gain_seen']:.3g}", s["gain_seen"] > 2))),
))
