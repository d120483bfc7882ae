"""The run directory: one plain folder per run, complete only when ``DONE`` exists.

Layout of ``OUT/<experiment>/<config-hash-12>/``:

- ``config.json``: written first. Resolved config, experiment, hash, featlab/torch/python
  versions, seed, device, git commit (when available) and active reference quirks.
- ``metrics.jsonl``: append-only, one JSON object per line.
- ``arrays.npz``: named arrays (weight snapshots, curves...).
- ``figures/<stem>.png`` and ``.pdf``, with captions in ``figures/captions.json``.
- ``summary.json``: headline numbers.
- ``log.txt``: the run's log lines.
- ``FAILED``: JSON with ``reason`` (``"error"``, ``"diverged"``, ``"interrupted"``), a message
  and a traceback, if the run did not finish.
- ``DONE``: written last, by atomic rename. A directory without it is never reported as
  finished and is redone by the next ``featlab run``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

__all__ = ["RunDir", "STATUS_DONE", "STATUS_FAILED", "STATUS_INCOMPLETE", "STATUS_ABSENT", "iter_runs"]

STATUS_DONE = "done"
STATUS_FAILED = "failed"
STATUS_INCOMPLETE = "incomplete"
STATUS_ABSENT = "absent"


class RunDir:
    """Paths and readers for one run directory (see module docstring for the layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    arrays = property(lambda self: self.path / "arrays.npz")
    summary = property(lambda self: self.path / "summary.json")
    log = property(lambda self: self.path / "log.txt")
    figures = property(lambda self: self.path / "figures")
    done = property(lambda self: self.path / "DONE")
    failed = property(lambda self: self.path / "FAILED")

    def status(self) -> str:
        """``done`` | ``failed`` | ``incomplete`` (no DONE, e.g. killed) | ``absent``."""
        if self.done.is_file():
            return STATUS_DONE
        if self.failed.is_file():
            return STATUS_FAILED
        if self.path.is_dir():
            return STATUS_INCOMPLETE
        return STATUS_ABSENT

    def is_done(self) -> bool:
        return self.status() == STATUS_DONE

    def read_config(self) -> dict:
        return json.loads(self.config.read_text())

    def read_summary(self) -> dict:
        return json.loads(self.summary.read_text()) if self.summary.is_file() else {}

    def read_failure(self) -> dict:
        return json.loads(self.failed.read_text()) if self.failed.is_file() else {}

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        rows = []
        for line in self.metrics.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill: ignore it
                    break
        return rows

    def read_arrays(self) -> dict[str, Any]:
        import numpy as np

        if not self.arrays.is_file():
            return {}
        with np.load(self.arrays, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def figure_paths(self) -> list[Path]:
        if not self.figures.is_dir():
            return []
        return sorted(p for p in self.figures.iterdir() if p.suffix in (".png", ".pdf"))

    def captions(self) -> dict[str, str]:
        p = self.figures / "captions.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, status={self.status()!r})"


def iter_runs(root: str | Path) -> Iterator[RunDir]:
    """Every run directory (a folder holding ``config.json``) under ``root``, sorted by path."""
    root = Path(root)
    if (root / "config.json").is_file():
        yield RunDir(root)
        return
    for cfg in sorted(root.rglob("config.json")):
        if cfg.parent.name == "figures":
            continue
        yield RunDir(cfg.parent)
