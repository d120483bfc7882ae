"""Figures: matplotlib's object-oriented API only, one house style, PNG + PDF.

Library code never touches pyplot state: :func:`figure` builds a
``matplotlib.figure.Figure(layout="constrained")`` under the house ``rc_context`` and
:func:`save` writes ``<stem>.png`` and ``<stem>.pdf``. Figure functions take tidy data and
return the ``Figure``; tests check the plotted data and that the files exist, not pixels.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg", force=False)  # noqa: E402 - headless by default (CLI, CI)
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["STYLE", "style", "figure", "save", "PALETTE"]

STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "lines.linewidth": 1.2,
    "figure.dpi": 100,
    "savefig.dpi": 130,
    "image.cmap": "RdBu_r",
}
PALETTE = {"nlgp": "#c0392b", "clone": "#2471a3", "baseline": "0.5", "theory": "k"}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The house rcParams, applied with ``matplotlib.rc_context``."""
    with matplotlib.rc_context(STYLE):
        yield


def figure(nrows: int = 1, ncols: int = 1, *, width: float = 3.2, height: float = 2.6, **subplot_kw):
    """``(fig, axes)`` with ``nrows x ncols`` axes of ``width x height`` inches each.

    ``axes`` is always a 2-D numpy array (``squeeze=False``).
    """
    with style():
        fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` (parent folders created); return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    with style():
        for ext in (".png", ".pdf"):
            p = stem.with_suffix(ext)
            fig.savefig(p)
            paths.append(p)
    return paths
