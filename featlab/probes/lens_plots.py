"""Figures of the lenses (:mod:`featlab.probes.lenses`): one checkpoint, and lenses against step.

Every function takes the plain dicts that :meth:`LensSuite.measure` returns (or the series
built from them) and returns a ``matplotlib.figure.Figure``; each draws the baselines of its
numbers (init net, shuffled net, iid levels) next to them. Captions are written by the caller,
which knows which checkpoint and which init was used.
"""
from __future__ import annotations

import numpy as np

from ..plotting import PALETTE, colorbar, figure, image, log_axis, panel_grid

__all__ = ["plot_rf_filters", "plot_rf_ipr", "plot_rho_bars", "plot_dgr", "plot_spectra", "plot_vs_step",
           "plot_lenses_vs_step"]

_TRAINED, _INIT, _SHUF = "#c0392b", PALETTE["baseline"], "#2471a3"


def _nan(v):
    return np.nan if v is None else float(v)


def _log_y(a) -> None:
    """:func:`featlab.plotting.log_axis` on y when the data span more than a factor 20; a
    shorter range stays linear (its numbers read better)."""
    lo, hi = a.dataLim.intervaly
    if np.isfinite(lo) and np.isfinite(hi) and lo > 0 and hi / lo > 20:
        log_axis(a, "y")


def plot_rf_filters(weights: np.ndarray, title: str):
    """Filters (k, c_in, kh, kw) — or linear rows already reshaped to (k, h, w) — averaged over
    input channels, tiled into one image on a symmetric colour scale with a colour bar."""
    W = np.asarray(weights, dtype=float)
    img = W.mean(1) if W.ndim == 4 else W  # (k, kh, kw)
    k, h, w = img.shape
    cols = min(8, k)
    rows = int(np.ceil(k / cols))
    tile = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)  # one-pixel NaN gaps
    for i in range(k):
        r, c = divmod(i, cols)
        tile[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = img[i]
    fig, ax = figure(1, 1, width=max(3.2, min(7.0, 0.55 * cols + 1.4)), height=0.55 * rows + 1.0)
    a = ax[0, 0]
    im = image(a, tile, symmetric=True, ticks=True)
    a.set_xticks([(w + 1) * c + (w - 1) / 2 for c in range(cols)], [str(c) for c in range(cols)], fontsize=6)
    a.set_yticks([(h + 1) * r + (h - 1) / 2 for r in range(rows)], [str(r * cols) for r in range(rows)], fontsize=6)
    a.tick_params(length=0)
    a.set_xlabel("filter index (row start + column)", fontsize=7)
    colorbar(fig, im, a, "weight")
    a.set_title(title + "\n(mean over input channels)", fontsize=7)
    return fig


def plot_rf_ipr(rf: dict):
    """IPR of each filter (sorted), trained and init, with 3/(D+2) and the localisation threshold."""
    fig, ax = figure(1, 1, width=3.6, height=2.6)
    a = ax[0, 0]
    v = np.sort(np.array([_nan(x) for x in rf["ipr"]]))[::-1]
    a.plot(np.arange(1, len(v) + 1), v, "o-", ms=2.5, color=_TRAINED, label="trained")
    if rf.get("init"):
        v0 = np.sort(np.array([_nan(x) for x in rf["init"]["ipr"]]))[::-1]
        a.plot(np.arange(1, len(v0) + 1), v0, "s--", ms=2, color=_INIT, label="init")
    a.axhline(rf["baseline"], color="k", ls=":", label=f"iid Gaussian 3/(D+2), D={rf['D']}")
    if rf.get("threshold") is not None:
        a.axhline(rf["threshold"], color="k", ls="-.", lw=0.8, label="localisation threshold")
    _log_y(a)
    from matplotlib.ticker import MaxNLocator

    a.xaxis.set_major_locator(MaxNLocator(integer=True))
    a.set_xlabel(f"filter of {rf['layer']} (sorted by IPR)")
    a.set_ylabel("IPR (high = localised)")
    a.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return fig


def plot_rho_bars(rows: dict[str, dict], keys: list[tuple[str, str, str]], ylabel: str):
    """One group of bars per layer: the measured ρ and its baselines (``keys`` = (key, label, colour))."""
    names = list(rows)
    fig, ax = figure(1, 1, width=max(3.4, 0.45 * len(names) + 1.8), height=2.8)
    a = ax[0, 0]
    x = np.arange(len(names))
    w = 0.8 / len(keys)
    for i, (k, label, col) in enumerate(keys):
        a.bar(x + (i - (len(keys) - 1) / 2) * w, [_nan(rows[n].get(k)) for n in names], w, label=label, color=col)
    a.set_xticks(x, names, rotation=60 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center",
                 fontsize=6 if len(names) > 8 else 8)
    a.set_ylabel(ylabel)
    a.axhline(0, color="k", lw=0.5)
    a.set_ylim(min(-0.05, np.nanmin([_nan(rows[n].get(k)) for n in names for k, *_ in keys] + [0.0])), 1.05)
    a.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=6, frameon=False)
    return fig


def plot_dgr(dgr: dict):
    """D, G, R after each probed layer and at the output: trained, shuffled channels, init."""
    variants = [(k, st, c) for k, st, c in (("trained", "-", _TRAINED), ("shuffled", ":", _SHUF),
                                            ("init", "--", _INIT)) if k in dgr]
    names = list(dgr["trained"]["layers"]) + ["output"]
    x = np.arange(len(names))
    fig, ax = figure(1, 3, width=max(2.6, 0.22 * len(names) + 1.4), height=2.7)
    for j, q in enumerate(("D", "G", "R")):
        a = ax[0, j]
        for k, st, c in variants:
            d = dgr[k]
            vals = [_nan(d["layers"][n][q]) for n in names[:-1]] + [_nan(d["output"][q])]
            a.plot(x, vals, st, marker=".", color=c, label=k)
        _log_y(a)
        a.set_xticks(x, names, rotation=70, ha="right", fontsize=5 if len(names) > 10 else 7)
        a.set_ylabel(f"{q}_k" if q != "R" else "R_k = D_k / G_k")
        if q == "R":
            a.axhline(1.0, color="k", lw=0.5, ls=":")
    ax[0, 0].legend(fontsize=6)
    return fig


def plot_spectra(spec: dict[str, dict], max_layers: int = 6):
    """Normalised γ_λ of up to ``max_layers`` conv layers (evenly spread), trained (solid) against
    init (dashed, same colour); 1/F² dotted (the λ = 0 weight of iid kernels)."""
    names = list(spec)
    if len(names) > max_layers:
        names = [names[int(round(i))] for i in np.linspace(0, len(names) - 1, max_layers)]
    fig, ax = figure(1, 1, width=3.8, height=2.8)
    a = ax[0, 0]
    for i, n in enumerate(names):
        v = spec[n]
        a.plot(v["eigenvalues"], v["gamma"], "o-", ms=3, color=f"C{i}", label=n)
        if v.get("gamma_init") is not None:
            a.plot(v["eigenvalues"], v["gamma_init"], "--", lw=0.9, color=f"C{i}", alpha=0.8)
    iid = next((spec[n]["iid_gamma0"] for n in names if spec[n].get("iid_gamma0") is not None), None)
    if iid is not None:
        a.axhline(iid, color="k", ls=":", lw=0.8, label="iid 1/F² (λ = 0)")
    a.plot([], [], "k--", lw=0.9, label="init (dashed)")
    a.set_xlabel("Laplacian eigenvalue λ")
    a.set_ylabel("γ_λ (normalised)")
    a.legend(fontsize=6, ncol=2)
    return fig


def plot_lenses_vs_step(steps: list, panels: list[dict], *, xlabel: str = "step"):
    """One panel per lens: ``panels`` = [{"title", "curves", "baselines", "ylabel", "log"}], each
    drawn as :func:`plot_vs_step` draws one; up to three panels per row."""
    rows, cols = panel_grid(len(panels), max_cols=3)
    fig, ax = figure(rows, cols, width=3.3, height=2.8)
    for i, p in enumerate(panels):
        _draw_vs_step(ax[i // cols, i % cols], steps, p["curves"], p.get("baselines"), xlabel=xlabel,
                      ylabel=p.get("ylabel", ""), log=p.get("log", False))
        ax[i // cols, i % cols].set_title(p["title"], fontsize=8)
    for i in range(len(panels), rows * cols):
        ax[i // cols, i % cols].axis("off")
    return fig


def plot_vs_step(steps: list, curves: dict[str, list], baselines: dict[str, list | float] | None = None,
                 *, xlabel: str = "step", ylabel: str = "", log: bool = False):
    """Each curve (one value per checkpoint, coloured C0, C1, ...) against the checkpoint's step;
    baselines in black/grey/purple line styles (a list per checkpoint, or a constant drawn as a
    horizontal line)."""
    fig, ax = figure(1, 1, width=3.8, height=2.7)
    _draw_vs_step(ax[0, 0], steps, curves, baselines, xlabel=xlabel, ylabel=ylabel, log=log)
    return fig


def _draw_vs_step(a, steps, curves, baselines, *, xlabel, ylabel, log) -> None:
    order = np.argsort(np.asarray(steps, dtype=float), kind="stable")
    xs = np.asarray(steps, dtype=float)[order]
    for i, (label, ys) in enumerate(curves.items()):
        a.plot(xs, np.array([_nan(v) for v in ys])[order], "o-", ms=3, label=label, color=f"C{i % 10}")
    styles = [("k", ":"), ("0.45", "--"), ("#8e44ad", "-."), ("#16a085", ":")]
    baselines = {k: b for k, b in (baselines or {}).items()  # drop baselines not measured
                 if b is not None and not (isinstance(b, (list, tuple)) and all(v is None for v in b))}
    for i, (label, b) in enumerate(baselines.items()):
        col, ls = styles[i % len(styles)]
        if isinstance(b, (list, tuple, np.ndarray)):
            a.plot(xs, np.array([_nan(v) for v in b])[order], ls=ls, lw=1.1, label=label, color=col)
        elif b is not None:
            a.axhline(float(b), ls=ls, color=col, lw=1.0, label=label)
    if log:
        _log_y(a)
    a.set_xlabel(xlabel)
    a.set_ylabel(ylabel)
    n = len(curves) + len(baselines)
    if n <= 4:
        a.legend(fontsize=5.5)
    else:  # many entries: below the axes, never over the curves
        a.legend(fontsize=5.5, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
