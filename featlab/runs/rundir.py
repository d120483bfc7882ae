"""The run directory: one plain folder per run, complete only when ``DONE`` exists.

Layout of ``OUT/<experiment>/<config-hash-12>/``:

- ``config.json``: written first. Resolved config, experiment, hash, featlab/torch/python
  versions, seed, device, thread count, git commit (when available) and active reference
  quirks.
- ``metrics.jsonl``: append-only, one JSON object per line.
- ``arrays.npz``: named arrays (weight snapshots, curves...).
- ``figures/<stem>.png`` and ``.pdf``, with captions in ``figures/captions.json``.
- ``summary.json``: headline numbers.
- ``log.txt``: the run's log lines.
- ``FAILED``: JSON with ``reason`` (``"error"``, ``"diverged"``, ``"interrupted"``,
  ``"terminated"``), a message and a traceback, if the run did not finish.
- ``DONE``: written last, by atomic rename followed by a directory fsync. A directory
  without it is never reported as finished and is redone by the next ``featlab run``.

Beside the folder, ``OUT/<experiment>/.<hash>.lock`` exists while a process runs it (see
:mod:`featlab.runs.lock`); hidden entries (names starting with ``.``) are never run folders.

Convention:
    Readers never raise on what they find in a folder: a missing file reads as empty, and a
    file that is not what the layout says (not JSON, JSON of the wrong type, a ``config.json``
    without a string ``experiment``...) makes the folder's status ``unreadable``, with the
    reason in :meth:`RunDir.problem`. Every other folder is still indexed and reported.
    :meth:`RunDir.figure_paths` lists only regular files (no symlinks) of a ``figures``
    folder that is itself inside the run folder, so nothing outside a run is ever embedded.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

__all__ = ["RunDir", "RunInfo", "STATUS_DONE", "STATUS_FAILED", "STATUS_INCOMPLETE", "STATUS_ABSENT",
           "STATUS_UNREADABLE", "iter_runs"]

STATUS_DONE = "done"
STATUS_FAILED = "failed"
STATUS_INCOMPLETE = "incomplete"
STATUS_ABSENT = "absent"
STATUS_UNREADABLE = "unreadable"

#: store files are small; anything larger is not a file the runner wrote
_MAX_JSON_BYTES = 64 * 2 ** 20


class _Bad(ValueError):
    """A store file is not what the layout says."""


def _read_json(path: Path, what: str) -> Any:
    """The parsed JSON of ``path``; ``None`` when absent; :class:`_Bad` when unreadable."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _Bad(f"{what}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _Bad(f"{what}: not a regular file")
    if st.st_size > _MAX_JSON_BYTES:
        raise _Bad(f"{what}: {st.st_size} bytes, too large for a run-store file")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise _Bad(f"{what}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise _Bad(f"{what}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _Bad(f"{what}: not valid JSON ({e})") from None


def _object(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"{what}: expected a JSON object, found {type(value).__name__}")
    return value


def _check_meta(meta: dict) -> None:
    if not isinstance(meta.get("experiment"), str) or not meta["experiment"]:
        raise _Bad(f"config.json: 'experiment' must be a name, found {meta.get('experiment')!r}")
    for key, typ, name in (("hash", str, "a string"), ("config", dict, "an object"),
                           ("reference_quirks", list, "a list"), ("started", str, "a string"),
                           ("device", str, "a string")):
        if key in meta and not isinstance(meta[key], typ):
            raise _Bad(f"config.json: '{key}' must be {name}, found {type(meta[key]).__name__}")
    if not all(isinstance(q, str) for q in meta.get("reference_quirks", [])):
        raise _Bad("config.json: 'reference_quirks' must be a list of strings")


@dataclass
class RunInfo:
    """Everything the index, ``show`` and the report read from one folder, read once."""

    path: Path
    status: str
    meta: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    failure: dict = field(default_factory=dict)
    captions: dict = field(default_factory=dict)
    problem: str | None = None


class RunDir:
    """Paths and tolerant readers for one run directory (see module docstring for the layout)."""

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

    # ------------------------------------------------------------------------ reading, once
    def inspect(self) -> RunInfo:
        """Status, config, summary, failure record and captions; never raises."""
        if not self.path.is_dir():
            return RunInfo(self.path, STATUS_ABSENT)
        info = RunInfo(self.path, STATUS_INCOMPLETE)
        try:
            raw = _read_json(self.config, "config.json")
            if raw is not None:
                meta = _object(raw, "config.json")
                _check_meta(meta)  # a config.json that is not what the layout says is not used at all
                info.meta = meta
            info.summary = _object(_read_json(self.summary, "summary.json"), "summary.json")
            info.failure = _object(_read_json(self.failed, "FAILED"), "FAILED")
            caps = _object(_read_json(self.figures / "captions.json", "figures/captions.json"),
                           "figures/captions.json")
            if not all(isinstance(v, str) for v in caps.values()):
                raise _Bad("figures/captions.json: captions must be strings")
            info.captions = caps
        except _Bad as e:
            info.status, info.problem = STATUS_UNREADABLE, str(e)
            return info
        done = _is_regular(self.done)
        if done and raw is None:
            info.status, info.problem = STATUS_UNREADABLE, "DONE without config.json"
        elif done:
            info.status = STATUS_DONE
        elif self.failed.exists() or self.failed.is_symlink():
            info.status = STATUS_FAILED
        return info

    def status(self) -> str:
        """``done`` | ``failed`` | ``incomplete`` (no DONE: killed, or running) | ``absent`` |
        ``unreadable`` (see :meth:`problem`)."""
        return self.inspect().status

    def problem(self) -> str | None:
        """Why the folder is ``unreadable`` (one line naming the file), else None."""
        return self.inspect().problem

    def is_done(self) -> bool:
        return self.status() == STATUS_DONE

    def read_config(self) -> dict:
        """``config.json`` as a dict; ``{}`` when absent or unreadable (see :meth:`problem`)."""
        return self.inspect().meta

    def read_summary(self) -> dict:
        """``summary.json`` as a dict; ``{}`` when absent or unreadable."""
        return self.inspect().summary

    def read_failure(self) -> dict:
        """The ``FAILED`` record as a dict; ``{}`` when absent or unreadable."""
        return self.inspect().failure

    def captions(self) -> dict[str, str]:
        """``figures/captions.json``; ``{}`` when absent or unreadable."""
        return self.inspect().captions

    def read_metrics(self) -> list[dict]:
        """The JSON objects of ``metrics.jsonl`` up to the first line cut by a kill."""
        if not _is_regular(self.metrics):
            return []
        rows = []
        try:
            text = self.metrics.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return []
        for line in text.splitlines():
            line = line.strip()
            if line:
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError):  # a line cut by a kill: ignore the rest
                    break
                if isinstance(row, dict):
                    rows.append(row)
        return rows

    def read_arrays(self) -> dict[str, Any]:
        import numpy as np

        if not _is_regular(self.arrays):
            return {}
        with np.load(self.arrays, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def figure_paths(self) -> list[Path]:
        """``.png``/``.pdf`` regular files of ``figures/`` (no symlinks, nothing outside the run)."""
        figs = self.figures
        try:
            if figs.is_symlink() or not figs.is_dir():
                return []
            root = self.path.resolve()
            if not figs.resolve().is_relative_to(root):
                return []
            out = []
            for p in figs.iterdir():
                if p.suffix in (".png", ".pdf") and _is_regular(p):
                    out.append(p)
            return sorted(out)
        except OSError:
            return []

    def read_figure(self, path: str | Path, max_bytes: int = 64 * 2 ** 20) -> bytes | None:
        """The bytes of one figure of :meth:`figure_paths`, opened without following symlinks;
        ``None`` if it is not a regular file of this run (or is larger than ``max_bytes``)."""
        path = Path(path)
        if path not in self.figure_paths():
            return None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
                return None
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read(max_bytes + 1)[:max_bytes]
        finally:
            os.close(fd)

    def owner(self) -> dict | None:
        """``{"pid", "host", "started"}`` of the live process running this folder, else None."""
        from .lock import owner_alive, read_owner

        owner = read_owner(self.path)
        return owner if owner is not None and owner_alive(owner) is not False else None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, status={self.status()!r})"


def _is_regular(p: Path) -> bool:
    try:
        return stat.S_ISREG(p.lstat().st_mode)
    except OSError:
        return False


def iter_runs(root: str | Path) -> Iterator[RunDir]:
    """Every run directory (a folder holding ``config.json``) under ``root``, sorted by path.

    Hidden folders (``.name``: folders being deleted by a forced redo) and ``figures`` folders
    are skipped; symlinked folders are not followed.
    """
    root = Path(root)
    if (root / "config.json").is_file():
        yield RunDir(root)
        return
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "figures")
        if "config.json" in filenames and Path(dirpath) != root:
            found.append(Path(dirpath))
    for p in sorted(found):
        yield RunDir(p)
