"""Toy tasks: the stated structure and statistics, seeded reproducibility."""
from __future__ import annotations

import math

import pytest
import torch

from featlab.data.toys import bars, digit_in_noise, row_signal


def test_row_signal_one_signal_row_noise_variance_balanced():
    g = torch.Generator().manual_seed(0)
    X, y = row_signal(400, sigma=2.0, generator=g, dtype=torch.float64)
    assert X.shape == (400, 1, 16, 32) and y.shape == (400,)
    assert int((y == 1).sum()) == 200
    w = torch.ones(32, dtype=torch.float64) / math.sqrt(32)
    s = (2 * y - 1).double()
    hits = (X[:, 0] == (s[:, None, None] * w)).all(-1)  # (n, 16): rows equal to s w*
    assert (hits.sum(1) == 1).all()
    noise = X[:, 0][~hits]  # (n*15, 32)
    var = float(noise.var())
    assert var == pytest.approx(2.0 / 32, rel=0.03)  # 192k samples: CLT tolerance ~0.3%


def test_row_signal_seeded():
    a = row_signal(10, generator=torch.Generator().manual_seed(3))
    b = row_signal(10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_digit_in_noise_digit_fully_inside_frame():
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs, target = torch.as_tensor(d.images / 16.0), torch.as_tensor(d.target)
    X, y = digit_in_noise(30, frame=12, sigma=1.0, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64)
    assert X.shape == (30, 1, 12, 12) and y.max() <= 9
    train = imgs[:1200]
    for i in range(30):
        # some fully-inside 8x8 window equals a training digit of the stated class
        hits = [(train == X[i, 0, r:r + 8, c:c + 8]).all(-1).all(-1) for r in range(5) for c in range(5)]
        match = torch.stack(hits).any(0)  # (1200,)
        assert match.any() and (target[:1200][match] == y[i]).all()


def test_bars_block_shapes():
    X, y = bars(40, noise_std=0.0, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert X.shape == (40, 1, 16, 16) and int(y.sum()) == 20
    for i in range(40):
        rows = X[i, 0].sum(1).nonzero().flatten()
        cols = X[i, 0].sum(0).nonzero().flatten()
        h, w = (3, 7) if int(y[i]) == 0 else (7, 3)
        assert len(rows) == h and len(cols) == w and float(X[i].sum()) == h * w
        assert int(rows[-1] - rows[0]) == h - 1 and int(cols[-1] - cols[0]) == w - 1


def test_bars_block_pixels_are_set_to_one_not_added():
    """As the reference: the block replaces the noise (exactly 1 under it, noise elsewhere)."""
    X, y = bars(20, noise_std=1.5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    X0, _ = bars(20, noise_std=0.0, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mask = X0 == 1.0  # same draws: the block positions
    assert bool((X[mask] == 1.0).all()) and int(mask.sum()) == 20 * 21
    assert abs(float(X[~mask].std()) - 1.5) < 0.05
