"""Edge maps and eigen-filters: the two closed-form conventions of spec §13 and the layout."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from featlab.kernels.viz import edge_map, figure_edge_maps, figure_filters, sqrtm_psd, top_eigenfilters


def _imgs(n=2, c=3, H=6, W=7):
    return torch.randn(n, c, H, W, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_convention_edge_map_identity_is_sqrt_box_sum_of_squares():
    X = _imgs()
    E = edge_map(X, torch.eye(27, dtype=torch.float64), 3)
    Xp = F.pad(X, (1, 1, 1, 1), mode="circular")
    ref = (F.avg_pool2d(Xp**2, 3, stride=1) * 9).sqrt()
    torch.testing.assert_close(E, ref)
    torch.testing.assert_close(edge_map(X, None, 3), ref)


def test_convention_edge_map_single_pixel_M_is_abs_pixel_at_offset():
    X = _imgs()
    ch, r, s = 1, 0, 2  # channel 1, in-patch row 0, col 2: pixel (i - 1, j + 1)
    e = torch.zeros(27, dtype=torch.float64)
    e[ch * 9 + r * 3 + s] = 1.0
    E = edge_map(X, torch.outer(e, e), 3)
    shifted = torch.roll(X[:, ch], shifts=(1, -1), dims=(1, 2))  # shifted[i, j] = X[i - 1, j + 1]
    torch.testing.assert_close(E[:, ch], shifted.abs())
    assert E[:, [0, 2]].abs().max() < 1e-12


def test_top_eigenfilters_layout_and_order():
    u = torch.zeros(2, 3, 3, dtype=torch.float64)
    u[1, 0, 2] = 1.0
    v = torch.zeros(2, 3, 3, dtype=torch.float64)
    v[0, 1, 1] = 1.0
    M = 5 * torch.outer(u.flatten(), u.flatten()) + 2 * torch.outer(v.flatten(), v.flatten())
    filt, w = top_eigenfilters(M, n_channels=2, k=2)
    assert filt.shape == (2, 2, 3, 3) and w.tolist() == [5.0, 2.0]
    torch.testing.assert_close(filt[0].abs(), u)
    torch.testing.assert_close(filt[1].abs(), v)
    S = sqrtm_psd(M)
    torch.testing.assert_close(S @ S, M)


def _colorbars(fig):
    return [a for a in fig.axes if a.get_label() == "<colorbar>"]


def test_figures_plot_the_data_with_colour_bars_and_clean_labels():
    from featlab.plotting import layout_problems

    M = torch.eye(9, dtype=torch.float64)
    M[0, 0] = 3.0
    filt, w = top_eigenfilters(M, 1, 4)
    fig = figure_filters(filt, w, "title")
    panels = [a for a in fig.axes if a.images and a.get_label() != "<colorbar>"]
    assert len(panels) == 4 and len(_colorbars(fig)) == 1  # grey filters share one min-max colour bar
    assert panels[0].images[0].get_array()[0, 0] == 1.0 and panels[0].get_title() == "λ1 = 3"
    assert layout_problems(fig) == []
    rgb, _ = top_eigenfilters(torch.eye(27, dtype=torch.float64), 3, 4)
    fig = figure_filters(rgb)
    assert not _colorbars(fig) and fig.axes[0].images[0].get_array().shape == (3, 3, 3)  # RGB: no bar
    X = _imgs()
    fig = figure_edge_maps(X, {"M = I": edge_map(X, torch.eye(27, dtype=torch.float64))})
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(panels) == 4 and panels[1].images[0].get_array().shape == (6, 7) and len(_colorbars(fig)) == 1
    assert layout_problems(fig) == []


def test_rfm_figures_have_colour_bars_integer_iterations_and_clean_labels():
    import numpy as np

    from featlab.experiments.rfm import figure_M, figure_curves
    from featlab.plotting import layout_problems

    fig = figure_curves([0.1, 0.9, 0.99, 1.0], [0.7, 3e-3, 3e-4, 9e-5], {"test_mse_krr": 0.76, "test_mse_rfm": 3e-3})
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in fig.axes[0].get_xticks())
    np.testing.assert_array_equal(fig.axes[1].get_lines()[0].get_ydata(), [0.7, 3e-3, 3e-4, 9e-5])
    assert layout_problems(fig) == []
    U = torch.linalg.qr(torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    fig = figure_M(4 * U @ U.T, U)
    assert len(_colorbars(fig)) == 2
    assert fig.axes[0].images[0].get_clim() == (-1.0, 1.0)  # M / max|M|, centred
    assert layout_problems(fig) == []
