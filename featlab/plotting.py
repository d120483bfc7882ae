"""Figures: matplotlib's object-oriented API only, one house style, PNG + PDF.

Library code never touches pyplot state: :func:`figure` builds a
``matplotlib.figure.Figure(layout="constrained")`` under the house ``rc_context`` and
:func:`save` writes ``<stem>.png`` and ``<stem>.pdf``. Figure functions take tidy data and
return the ``Figure``; tests check the plotted data and, with :func:`layout_problems`, that no
label collides with another or falls off the figure.

Guideline for figure code (every experiment follows it; the report lays figures out by shape)
--------------------------------------------------------------------------------------------
- **Size by panels.** Build with ``figure(nrows, ncols, width=, height=)`` (inches *per panel*;
  :func:`panel_grid` wraps many panels into rows). The report shows a figure at its natural
  size (``savefig.dpi`` = 130 px per inch) capped at the page width, so a 1-panel figure sits
  next to another and an 8-panel figure spans the page; never shrink fonts to fit panels,
  add a row instead (:func:`panel_grid`).
- **Image panels** (weights, receptive fields, matrices, edge maps) go through :func:`image`
  (no ticks, nearest interpolation; ``symmetric=True`` centres a diverging map on 0) and get a
  colour bar from :func:`colorbar` saying what the colour is (``"w_k"``, ``"min-max scaled"``).
  Panels that share a scale share one bar (pass every axis: ``colorbar(fig, im, axes)``);
  panels min-max scaled one by one say so in the bar's label. RGB images have no colour bar:
  say "RGB, min-max scaled" in the caption.
- **Log axes**: call :func:`log_axis` (after ``plot``; it sets the scale). It labels decades
  when at least two are in view and otherwise a few plain ``1, 2, 5`` multiples, so minor-tick
  labels never pile up (matplotlib's default labels every minor tick of a short log axis).
- **Point labels** (one label per architecture, per task...): :func:`label_points`, which moves
  a label that would overlap an earlier one and keeps labels inside the figure.
- **1-D profiles** keep their y ticks and a y label with units; baselines are drawn (dashed,
  ``PALETTE["baseline"]``) and named in the legend or the caption.
- **Captions** (``ctx.save_figure(fig, stem, caption)``) say what is drawn: which seed and
  which iteration / checkpoint / time, what the baseline lines are. The run context appends
  the preset, scale, seed and overridden fields, and any active reference quirk.
- **Check by looking**: open the PNG, and pin ``layout_problems(fig) == []`` in a test.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # noqa: E402 - headless by default (CLI, CI)
import numpy as np  # noqa: E402
from matplotlib import ticker as mticker  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["STYLE", "style", "figure", "save", "PALETTE", "panel_grid", "image", "colorbar", "log_axis",
           "LogTickLabels", "label_points", "layout_problems", "house_fonts"]

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
        FigureCanvasAgg(fig)  # a canvas with a renderer, so labels can be measured (label_points)
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def panel_grid(n: int, max_cols: int = 6) -> tuple[int, int]:
    """``(nrows, ncols)`` for ``n`` panels in balanced rows of at most ``max_cols``.

    Convention:
        nrows = ceil(n / max_cols), ncols = ceil(n / nrows) (12 panels, max 8: 2 x 6);
        n <= 0 gives (1, 1).
    """
    if n <= 0:
        return 1, 1
    nrows = math.ceil(n / max_cols)
    return nrows, math.ceil(n / nrows)


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` (parent folders created) in the house fonts; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    house_fonts(fig)
    with style():
        for ext in (".png", ".pdf"):
            p = stem.with_suffix(ext)
            fig.savefig(p)
            paths.append(p)
    return paths


# matplotlib's default sizes (font.size 10) -> the house sizes, per role of a text
_DEFAULT_TO_HOUSE = {"title": (12.0, 9.0), "label": (10.0, 9.0), "tick": (10.0, 8.0), "legend": (10.0, 8.0),
                     "text": (10.0, 9.0), "suptitle": (12.0, 10.8)}


def house_fonts(fig: Figure) -> Figure:
    """Give every text still at matplotlib's default size for its role the house size.

    Figure functions call ``ax.set_title``, ``set_xlabel``, ``legend``... outside the house
    ``rc_context``, so those texts would get matplotlib's defaults (12 pt titles, 10 pt labels)
    next to 8 pt tick labels. :func:`save` and :func:`layout_problems` call this first; a size
    that was set explicitly (anything but the role's default) is kept. Idempotent.
    """

    def fix(t: Any, role: str) -> None:
        if t is not None and abs(t.get_fontsize() - _DEFAULT_TO_HOUSE[role][0]) < 1e-6:
            t.set_fontsize(_DEFAULT_TO_HOUSE[role][1])

    for name in ("_suptitle", "_supxlabel", "_supylabel"):
        fix(getattr(fig, name, None), "suptitle")
    for ax in fig.axes:
        for t in (ax.title, ax._left_title, ax._right_title):
            fix(t, "title")
        for axis in (ax.xaxis, ax.yaxis):
            fix(axis.label, "label")
            for t in axis.get_ticklabels(which="both"):
                fix(t, "tick")
        for t in ax.texts:
            fix(t, "text")
        leg = ax.get_legend()
        if leg is not None:
            for t in leg.get_texts():
                fix(t, "legend")
            fix(leg.get_title(), "legend")
    for leg in getattr(fig, "legends", []):
        for t in leg.get_texts():
            fix(t, "legend")
    return fig


# ---------------------------------------------------------------------------- image panels

def image(ax: Any, A: Any, *, cmap: str | None = None, vmin: float | None = None, vmax: float | None = None,
          symmetric: bool = False, title: str | None = None, ticks: bool = False, **kw: Any):
    """``ax.imshow(A)`` for an image panel: no ticks, nearest interpolation, framed; returns the image.

    ``cmap`` defaults to the house map (``RdBu_r``, diverging: pass ``symmetric=True``); use
    ``"gray"`` or ``"viridis"`` for non-negative maps. ``ticks=True`` keeps matplotlib's ticks
    (e.g. matrix indices; give them integer locators).

    ``symmetric=True`` sets ``vmin = -vmax = -max|A|`` (a diverging map centred on 0; an
    all-zero panel gets [-1, 1]). ``A`` may be a tensor, an (H, W) or an (H, W, 3) RGB array.
    """
    A = np.asarray(A.detach().cpu() if hasattr(A, "detach") else A)
    if symmetric:
        v = float(np.nanmax(np.abs(A))) if A.size and np.isfinite(A).any() else 0.0
        v = v if v > 0 else 1.0
        vmin, vmax = -v, v
    with style():
        im = ax.imshow(A, cmap=cmap or STYLE["image.cmap"], vmin=vmin, vmax=vmax, interpolation="nearest", **kw)
    if not ticks:
        ax.set_xticks([])
        ax.set_yticks([])
    for sp in ax.spines.values():  # a thin frame on all four sides (the house style hides two)
        sp.set_visible(True)
        sp.set_linewidth(0.5)
    if title:
        ax.set_title(title)
    return im


def colorbar(fig: Figure, mappable: Any, ax: Any, label: str = "", *, nticks: int = 4,
             ticks: Sequence[float] | None = None, **kw: Any):
    """A colour bar for the image panel(s) ``ax`` (one axis or several sharing the scale).

    At most ``nticks`` labelled ticks (or exactly ``ticks``), small font, placed beside the
    panels by constrained layout so it never covers a neighbour; ``label`` says what the
    colour is (keep it shorter than the bar, or break it with a newline: a longer label is
    clipped, which :func:`layout_problems` reports).
    """
    axes = list(np.ravel(ax)) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    kw.setdefault("shrink", 0.85 if len(axes) == 1 else 0.95)
    kw.setdefault("aspect", 15 if len(axes) == 1 else 25)
    kw.setdefault("pad", 0.02)
    with style():
        cb = fig.colorbar(mappable, ax=axes if len(axes) > 1 else axes[0], **kw)
        cb.locator = mticker.FixedLocator(list(ticks)) if ticks is not None else mticker.MaxNLocator(nticks)
        cb.formatter = mticker.FuncFormatter(lambda x, _: f"{x:.3g}".replace("-", "\u2212"))
        cb.update_ticks()
        cb.ax.tick_params(labelsize=7)
        if label:
            cb.set_label(label, fontsize=8)
    return cb


# ---------------------------------------------------------------------------- log axes

class LogTickLabels(mticker.Formatter):
    """Tick labels of a base-10 log axis that never collide.

    Convention:
        With >= 2 decades in view, only decades are labelled (``10^k``; minor labels empty).
        With fewer, the ticks at mantissa 1, 2, 5 (view >= 1 decade), 1, 2, 3, 5 (0.5 to 1
        decade) or 1, 2, 3, 4, 6, 8 (< 0.5 decade) are labelled in plain ``%g`` notation and
        every other tick is left empty. The choice is
        made at draw time from the axis' view interval, so it holds whatever is plotted later.
    """

    def __init__(self, minor: bool = False):
        self.minor = minor

    def _decades_in_view(self) -> tuple[int, float]:
        lo, hi = sorted(float(v) for v in self.axis.get_view_interval())
        if not (hi > 0):
            return 0, 0.0
        lo = lo if lo > 0 else hi * 1e-3
        a, b = math.log10(lo), math.log10(hi)
        n = math.floor(b + 1e-9) - math.ceil(a - 1e-9) + 1
        return max(n, 0), b - a

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not (x > 0):
            return ""
        n_dec, span = self._decades_in_view()
        k = math.floor(math.log10(x) + 1e-9)
        mant = round(x / 10**k, 6)
        if n_dec >= 2:
            if self.minor or abs(mant - 1) > 1e-6:
                return ""
            return f"$\\mathdefault{{10^{{{k}}}}}$"
        subs = (1, 2, 5) if span >= 1 else (1, 2, 3, 5) if span >= 0.5 else (1, 2, 3, 4, 6, 8)
        if not any(abs(mant - s) < 1e-6 for s in subs):
            return ""
        return f"{x:g}"


def log_axis(ax: Any, which: str = "y") -> None:
    """Put ``ax``'s ``which`` axis ("x", "y" or "both") on a log scale with :class:`LogTickLabels`.

    Call it after plotting (or at least after any ``set_xscale``, which resets formatters).
    """
    if which not in ("x", "y", "both"):
        raise ValueError(f"which must be 'x', 'y' or 'both', got {which!r}")
    for name in (("x", "y") if which == "both" else (which,)):
        axis = ax.xaxis if name == "x" else ax.yaxis
        (ax.set_xscale if name == "x" else ax.set_yscale)("log")
        axis.set_major_locator(mticker.LogLocator(base=10, numticks=8))
        axis.set_minor_locator(mticker.LogLocator(base=10, subs=np.arange(2, 10), numticks=20))
        axis.set_major_formatter(LogTickLabels(minor=False))
        axis.set_minor_formatter(LogTickLabels(minor=True))


# ---------------------------------------------------------------------------- point labels

_OFFSETS = ((4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
            (-4, -3, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top"))


def label_points(ax: Any, x: Sequence[float], y: Sequence[float], labels: Sequence[str], *,
                 fontsize: float = 7, **kw: Any) -> list:
    """Label each point ``(x[i], y[i])`` with ``labels[i]``; returns the annotations.

    Each label is offset a few points from its marker; one that would overlap an earlier label
    (or leave the axes' figure) tries the other five offsets in turn. The annotations take
    part in constrained layout, so the axes shrink to keep them inside the figure.
    """
    renderer = _renderer(ax.figure)
    placed: list = []
    out = []
    for xi, yi, text in zip(x, y, labels):
        ann = None
        for dx, dy, ha, va in _OFFSETS:
            if ann is not None:
                ann.remove()
            ann = ax.annotate(str(text), (xi, yi), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                              fontsize=fontsize, annotation_clip=False, **kw)
            box = ann.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed):
                break
        placed.append(ann.get_window_extent(renderer))
        out.append(ann)
    return out


# ---------------------------------------------------------------------------- layout check

def _renderer(fig: Figure):
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def _texts(fig: Figure) -> list[tuple[str, Any, Any]]:
    """(role, owner, text) for every visible, non-empty text artist of the figure."""
    out: list[tuple[str, Any, Any]] = []

    def add(role: str, owner: Any, t: Any) -> None:
        if t is not None and t.get_visible() and t.get_text().strip():
            out.append((role, owner, t))

    sup = [getattr(fig, n, None) for n in ("_suptitle", "_supxlabel", "_supylabel")]
    for st in sup:
        add("suptitle", fig, st)
    for t in fig.texts:
        if not any(t is st for st in sup):
            add("figure text", fig, t)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if not ax.axison:  # an axis turned off draws no ticks or labels, only its title and texts
            for t in (ax.title, *ax.texts):
                add("title" if t is ax.title else "text", ax, t)
            continue
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            ticks = axis._update_ticks() if hasattr(axis, "_update_ticks") else axis.get_major_ticks()
            for tick in ticks:
                for lab in (tick.label1, tick.label2):
                    add(f"{name}ticklabel", (ax, name), lab)
            add(f"{name}label", ax, axis.label)
            add("offset", ax, axis.get_offset_text())
        for t in (ax.title, ax._left_title, ax._right_title):
            add("title", ax, t)
        for t in ax.texts:
            add("text", ax, t)
        leg = ax.get_legend()
        if leg is not None:
            for t in leg.get_texts():
                add("legend", ax, t)
    return out


def layout_problems(fig: Figure) -> list[str]:
    """Draw ``fig`` and list what is wrong with its labels (``[]`` when nothing is).

    Reported: a text that leaves the figure (it would be clipped), two tick labels of one axis
    that overlap (colliding log-axis minor labels), and two texts of different roles or axes
    that overlap (a title running into a neighbour's tick labels, point labels on top of each
    other). Legend entries are compared with other texts, not among themselves.
    """
    renderer = _renderer(fig)
    house_fonts(fig)
    with style():
        fig.canvas.draw()
    fb = fig.bbox
    texts = [(role, owner, t, t.get_window_extent(renderer)) for role, owner, t in _texts(fig)]
    problems = []
    for role, _, t, b in texts:
        if b.x0 < fb.x0 - 1 or b.y0 < fb.y0 - 1 or b.x1 > fb.x1 + 1 or b.y1 > fb.y1 + 1:
            problems.append(f"{role} {t.get_text()!r} leaves the figure (clipped)")

    for i in range(len(texts)):
        ri, oi, ti, bi = texts[i]
        for j in range(i + 1, len(texts)):
            rj, oj, tj, bj = texts[j]
            if ri == rj == "legend":
                continue
            if bi.padded(-0.25).overlaps(bj.padded(-0.25)):
                what = "tick labels" if ri == rj and ri.endswith("ticklabel") and oi == oj else f"{ri} and {rj}"
                problems.append(f"{what} overlap: {ti.get_text()!r} / {tj.get_text()!r}")
    return problems

