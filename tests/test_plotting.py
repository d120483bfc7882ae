"""Figure helpers: log-axis labels that never collide, colour bars, point labels, house fonts,
and the layout check every figure test relies on (it must catch what it claims to catch)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featlab.plotting import (colorbar, figure, house_fonts, image, label_points, layout_problems, log_axis,
                              panel_grid, save)


def _labels(axis):
    """Texts of the labelled ticks inside the view, left to right."""
    ticks = sorted(axis._update_ticks(), key=lambda t: t.get_loc())
    return [t.label1.get_text() for t in ticks if t.label1.get_text()]


def test_layout_problems_catches_colliding_log_minor_labels_and_log_axis_fixes_them():
    fig, ax = figure(1, 2)
    ax[0, 1].semilogx(np.logspace(1.1, 1.9, 20), np.arange(20))  # < 1 decade: matplotlib labels 2,3,4,6 x 10^1
    bad = layout_problems(fig)
    assert any("tick labels overlap" in p for p in bad), bad
    log_axis(ax[0, 1], "x")
    assert layout_problems(fig) == []


def test_convention_log_tick_labels_decades_or_plain_125():
    fig, ax = figure()
    a = ax[0, 0]
    a.plot([1e-3, 1e2], [1, 2])
    log_axis(a, "x")
    fig.canvas.draw()
    assert _labels(a.xaxis) and all("10^" in t for t in _labels(a.xaxis))  # >= 2 decades: decades only
    a.set_xlim(0.15, 0.9)  # 0.78 decade, no decade in view: mantissas 1, 2, 3, 5
    fig.canvas.draw()
    assert _labels(a.xaxis) == ["0.2", "0.3", "0.5"]
    a.set_xlim(12, 90)    # 0.88 decade
    fig.canvas.draw()
    assert _labels(a.xaxis) == ["20", "30", "50"]
    with pytest.raises(ValueError):
        log_axis(a, "z")


def test_layout_problems_catches_clipped_and_overlapping_text():
    fig, ax = figure()
    ax[0, 0].plot([0, 1], [0, 1])
    assert layout_problems(fig) == []
    fig.text(0.98, 0.5, "a label that runs off the edge")
    assert any("leaves the figure" in p for p in layout_problems(fig))
    fig, ax = figure()
    ax[0, 0].text(0.5, 0.5, "one label")
    ax[0, 0].text(0.5, 0.5, "another label")
    assert any("overlap" in p for p in layout_problems(fig))


def test_label_points_moves_labels_that_would_overlap():
    fig, ax = figure()
    x, y = [1.0, 1.02, 1.04, 3.0], [1.0, 1.0, 1.0, 2.0]  # three nearly coincident points
    ax[0, 0].plot(x, y, "o")
    anns = label_points(ax[0, 0], x, y, ["vgg11", "resnet18", "lenet", "fc2"])
    assert len(anns) == 4
    assert layout_problems(fig) == []
    fig, ax = figure()  # the same labels without the helper collide
    ax[0, 0].plot(x, y, "o")
    for xi, yi, t in zip(x, y, ["vgg11", "resnet18", "lenet", "fc2"]):
        ax[0, 0].annotate(t, (xi, yi), xytext=(4, 3), textcoords="offset points")
    assert any("overlap" in p for p in layout_problems(fig))


def test_image_and_colorbar():
    fig, ax = figure(1, 3, width=1.3, height=1.3)
    A = torch.tensor([[-2.0, 1.0], [0.5, 0.0]])
    ims = [image(a, A, symmetric=True, title=f"p{i}") for i, a in enumerate(ax[0])]
    assert ims[0].get_clim() == (-2.0, 2.0) and not ax[0, 0].get_xticks().size
    assert image(ax[0, 2], np.zeros((2, 2)), symmetric=True).get_clim() == (-1.0, 1.0)
    cb = colorbar(fig, ims[0], ax[0], "w", ticks=(-2, 0, 2))
    assert len(fig.axes) == 4 and list(cb.get_ticks()) == [-2, 0, 2]
    assert [t.get_text() for t in cb.ax.get_yticklabels()] == ["\u22122", "0", "2"]
    assert layout_problems(fig) == []


def test_house_fonts_fix_defaults_and_keep_explicit_sizes(tmp_path):
    fig, ax = figure(1, 2)
    ax[0, 0].set_title("default")      # set outside the style: matplotlib's 12 pt
    ax[0, 1].set_title("explicit", fontsize=14)
    ax[0, 0].set_xlabel("x")
    ax[0, 0].plot([0, 1], label="a")
    ax[0, 0].legend()
    save(fig, tmp_path / "f")
    assert ax[0, 0].title.get_fontsize() == 9 and ax[0, 1].title.get_fontsize() == 14
    assert ax[0, 0].xaxis.label.get_fontsize() == 9 and ax[0, 0].get_legend().get_texts()[0].get_fontsize() == 8
    assert house_fonts(fig) is fig and ax[0, 0].title.get_fontsize() == 9  # idempotent
    assert (tmp_path / "f.png").is_file() and (tmp_path / "f.pdf").is_file()


def test_convention_panel_grid_balanced_rows():
    assert panel_grid(5, 8) == (1, 5)
    assert panel_grid(12, 8) == (2, 6)
    assert panel_grid(9, 4) == (3, 3)
    assert panel_grid(0) == (1, 1)
