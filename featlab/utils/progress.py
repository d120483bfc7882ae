"""Progress on long work: a tqdm bar (off on non-TTY output) plus plain log lines.

``tqdm(..., disable=None)`` turns itself off when stderr is not a terminal (SLURM logs, CI),
so each bar also emits a ``logging`` line every ``log_every`` fraction of the total, which
keeps batch logs small but watchable.

Convention:
    Console log lines go through :class:`TqdmHandler`, which writes with ``tqdm.write``: a live
    bar is cleared, the line printed and the bar redrawn below it, so log lines never break a
    bar in the middle of a line. Text printed while a bar is live goes through
    :meth:`Progress.write` for the same reason.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
__all__ = ["progress", "Progress", "TqdmHandler"]

log = logging.getLogger("featlab")


class TqdmHandler(logging.StreamHandler):
    """A console ``logging`` handler that prints through ``tqdm.write`` (default: stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except RecursionError:  # pragma: no cover - as logging.StreamHandler
            raise
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class Progress:
    """A tqdm bar with periodic log lines. Use as a context manager; call ``update(n)``."""

    def __init__(self, total: int | None, desc: str = "", unit: str = "it", log_every: float = 0.1,
                 logger: logging.Logger | None = None, disable: bool | None = None):
        self.total = total
        self.desc = desc
        self.log = logger or log
        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                        leave=False)
        self.n = 0
        self.t0 = time.perf_counter()
        self.step = max(1, int(round((total or 0) * log_every))) if total else None
        self.next_log = self.step

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        self.bar.update(n)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        if self.step is not None and self.n >= self.next_log:
            while self.next_log <= self.n:
                self.next_log += self.step
            dt = time.perf_counter() - self.t0
            extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in postfix.items())
            self.log.info("%s: %d/%d (%.0f%%) %.1fs %s", self.desc, self.n, self.total,
                          100.0 * self.n / self.total, dt, extra)

    def write(self, text: str, err: bool = False) -> None:
        """Print ``text`` (stdout, or stderr with ``err``) above the live bar without breaking it."""
        tqdm.write(text, file=sys.stderr if err else sys.stdout)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
             log_every: float = 0.1, logger: logging.Logger | None = None) -> Iterator[T]:
    """Iterate ``iterable`` with a :class:`Progress` bar and periodic log lines."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc=desc, unit=unit, log_every=log_every, logger=logger) as p:
        for item in iterable:
            yield item
            p.update(1)
