"""Scale-detection data (spec diffeo_pooling §6.1-6.2, §10 "Scale-detection data")."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from featlab.data.scale_detection import (
    local_diffeo_1d,
    local_translation,
    render_1d,
    render_twopoints,
    scale_detection_1d,
    scale_detection_1d_class_counts,
    twopoints,
    twopoints_class_counts,
    twopoints_pairs,
    twopoints_split,
)


def _brute_counts_2d(d, xi, gap, norm, pbc, exclude_diagonal):
    cand = [(r, c) for r in range(d) for c in range(d) if not (exclude_diagonal and r == c)]
    far = close = 0
    for a, b in itertools.combinations(cand, 2):
        dd = [abs(a[0] - b[0]), abs(a[1] - b[1])]
        if pbc:
            dd = [min(t, d - t) for t in dd]
        dist = math.hypot(*dd) if norm == "L2" else max(dd)
        far += dist >= xi + gap / 2
        close += dist < xi - gap / 2
    return far, close


def test_two_active_pixels_value_and_mean():
    x, y = twopoints(d=8, xi=4, gap=2)
    flat = x.reshape(len(x), -1)
    assert ((flat > 0).sum(1) == 2).all()
    assert torch.all(flat[flat > 0] == 32.0)  # d²/2
    assert torch.allclose(flat.mean(1), torch.ones(len(x)))
    assert x.shape[1:] == (1, 8, 8) and set(y.tolist()) == {-1, 1}
    assert (y == 1).sum() == (y == -1).sum()  # balanced


def test_exclude_diagonal_quirk():
    pos, _ = twopoints_pairs(d=8, xi=4, gap=2, exclude_diagonal=True)
    assert not (pos[..., 0] == pos[..., 1]).any()
    pos, _ = twopoints_pairs(d=8, xi=4, gap=2)
    assert (pos[..., 0] == pos[..., 1]).any()


@pytest.mark.parametrize("norm", ["L2", "Linf"])
def test_convention_labels_far_minus_close_plus_and_gap_band(norm):
    d, xi, gap = 9, 4, 2
    pos, y = twopoints_pairs(d=d, xi=xi, gap=gap, norm=norm, balanced=False)
    delta = (pos[:, 0] - pos[:, 1]).abs().double()
    dist = delta.norm(dim=1) if norm == "L2" else delta.amax(dim=1)
    assert torch.all(dist[y == -1] >= xi + gap / 2)
    assert torch.all(dist[y == 1] < xi - gap / 2)
    n_far, n_close = twopoints_class_counts(d, xi, gap, norm=norm)
    assert (y == -1).sum() == n_far and (y == 1).sum() == n_close


def test_permutation_deterministic_and_far_first():
    a, ya = twopoints_pairs(d=8, xi=4, gap=2)
    b, yb = twopoints_pairs(d=8, xi=4, gap=2)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    p = len(ya) // 2
    assert torch.all(ya[:p] == -1) and torch.all(ya[p:] == 1)
    # permuted: not in combinations order
    flat = a[:p, 0, 0] * 8 + a[:p, 0, 1]
    assert not torch.all(flat[1:] >= flat[:-1])


def test_split_train_test_disjoint_and_test_is_last_of_each_class():
    g = torch.Generator().manual_seed(0)
    xtr, ytr, xte, yte, ptr, pte = twopoints_split(40, 20, d=8, xi=4, gap=2, generator=g,
                                                   return_positions=True)
    assert len(xtr) == 40 and len(xte) == 20 and (yte == 1).sum() == 10
    key = lambda p: {tuple(sorted(map(tuple, q.tolist()))) for q in p}  # noqa: E731
    assert not key(ptr) & key(pte)
    pos, _ = twopoints_pairs(d=8, xi=4, gap=2)
    p = len(pos) // 2
    assert torch.equal(pte[:10], pos[p - 10:p]) and torch.equal(pte[10:], pos[2 * p - 10:])
    assert torch.equal(xte, render_twopoints(pte, 8))


def test_pbc_distances_at_most_half():
    d = 8
    pos, y = twopoints_pairs(d=d, xi=3, gap=0, pbc=True, balanced=False)
    delta = (pos[:, 0] - pos[:, 1]).abs()
    per = torch.minimum(delta, d - delta)
    assert per.max() <= d // 2
    # a pair at opposite borders is close with pbc
    far, close = twopoints_class_counts(d, 3, 0, pbc=True)
    far0, close0 = twopoints_class_counts(d, 3, 0, pbc=False)
    assert close > close0


def test_convention_quadrant_same_quadrant_is_minus_one():
    d = 8
    pos, y = twopoints_pairs(d=d, labelling="quadrant", balanced=False)
    q = pos // (d // 2)
    same = (q[:, 0] == q[:, 1]).all(1)
    assert torch.all(y[same] == -1) and torch.all(y[~same] == 1)


@pytest.mark.parametrize("norm,pbc,excl", [("L2", False, False), ("Linf", True, True), ("L2", True, False)])
def test_class_counts_match_brute_force(norm, pbc, excl):
    assert twopoints_class_counts(7, 3, 1, norm=norm, pbc=pbc, exclude_diagonal=excl) == \
        _brute_counts_2d(7, 3, 1, norm, pbc, excl)


def test_local_translation_frequencies():
    d = 16
    n = 20000
    pos = torch.full((n, 2, 2), 8)
    pos[:, 1] = torch.tensor([3, 3])
    x = render_twopoints(pos, d, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    xt = local_translation(x, g)
    assert torch.all(xt.reshape(n, -1).amax(1) == d * d / 2)
    idx = (xt.reshape(n, -1) > 0).nonzero()
    # the pixel at (8, 8): find its new position among active ones near (8, 8)
    rows, cols = idx[:, 1] // d, idx[:, 1] % d
    near = (rows - 8).abs().le(1) & (cols - 8).abs().le(1)
    step = torch.stack([rows[near] - 8, cols[near] - 8], 1)
    assert len(step) == n and not (step == 0).all(1).any()  # always moves to a neighbour
    axis = (step.abs().sum(1) == 1).double().mean()
    diag = (step.abs().sum(1) == 2).double().mean()
    se = math.sqrt(4 / 6 * (2 / 6) / n)
    assert abs(axis - 4 / 6) < 5 * se and abs(diag - 2 / 6) < 5 * se
    right = ((step[:, 0] == 0) & (step[:, 1] == 1)).double().mean()
    assert abs(right - 1 / 6) < 5 * math.sqrt(1 / 6 * 5 / 6 / n)
    ne = ((step[:, 0] == -1) & (step[:, 1] == 1)).double().mean()
    assert abs(ne - 1 / 12) < 5 * math.sqrt(1 / 12 * 11 / 12 / n)


def test_local_translation_clips_at_border():
    pos = torch.tensor([[[0, 0], [7, 7]]]).repeat(500, 1, 1)
    xt = local_translation(render_twopoints(pos, 8), torch.Generator().manual_seed(1))
    assert xt.shape == (500, 1, 8, 8) and torch.all(xt.reshape(500, -1).amax(1) == 32)


# --------------------------------------------------------------------------------------------
# 1D
# --------------------------------------------------------------------------------------------
def _brute_counts_1d(L, xi, gap, task):
    close = far = 0
    for r1, r2 in itertools.combinations(range(L), 2):
        if task == 1:
            dd = min(r2 - r1, L - (r2 - r1))
            close += dd < xi - gap
            far += dd >= xi + gap
        else:
            same = r1 // xi == r2 // xi
            close += same
            far += not same
    return close, far


@pytest.mark.parametrize("task,gap", [(1, 0), (1, 2), (2, 0)])
def test_1d_class_counts_match_brute_force(task, gap):
    assert scale_detection_1d_class_counts(32, 8, gap, task) == _brute_counts_1d(32, 8, gap, task)


def test_1d_norm_balance_and_disjoint_splits():
    g = torch.Generator().manual_seed(0)
    ds = scale_detection_1d(L=32, xi=8, task=2, P=64, P_val=16, generator=g, dtype=torch.float64)
    for x, y in [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]:
        assert torch.allclose((x ** 2).sum((1, 2)), torch.full((len(x),), 32.0, dtype=torch.float64))
        assert (y == 1).sum() == (y == -1).sum()
    assert len(ds.x_train) == 64 and len(ds.x_val) == 16
    keys = [set(map(tuple, p.tolist())) for p in (ds.pos_train, ds.pos_val, ds.pos_test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    same = ds.pos_train[:, 0] // 8 == ds.pos_train[:, 1] // 8
    assert torch.equal(same, ds.y_train == 1)


def test_1d_task1_gap_band():
    g = torch.Generator().manual_seed(0)
    L, xi, gap = 32, 8, 2
    ds = scale_detection_1d(L=L, xi=xi, gap=gap, task=1, P=40, P_val=10, generator=g)
    for p, y in [(ds.pos_train, ds.y_train), (ds.pos_test, ds.y_test)]:
        dd = p[:, 1] - p[:, 0]
        dist = torch.minimum(dd, L - dd)
        assert torch.all(dist[y == 1] < xi - gap) and torch.all(dist[y == -1] >= xi + gap)


def test_1d_task2_labels_invariant_under_local_diffeo():
    g = torch.Generator().manual_seed(3)
    L, xi = 32, 8
    ds = scale_detection_1d(L=L, xi=xi, task=2, P=200, P_val=10, generator=g)
    x = ds.x_train
    moved = 0
    for _ in range(5):
        x2 = local_diffeo_1d(x, xi, g)
        pos = torch.stack([row.nonzero().flatten().min() for row in x2[:, 0]]), \
            torch.stack([row.nonzero().flatten().max() for row in x2[:, 0]])
        assert torch.equal((pos[0] // xi == pos[1] // xi), ds.y_train == 1)
        assert torch.all(x2.amax((1, 2)) == math.sqrt(L / 2))
        moved += int((x2 != x).any(-1).sum())
        x = x2
    assert moved > 0


def test_1d_local_diffeo_moves_by_one_or_rejects_and_merges():
    # interior pixel: moves by exactly ±1, both directions occur
    x = render_1d(torch.tensor([[10, 20]]).repeat(400, 1), 32, dtype=torch.float64)
    y = local_diffeo_1d(x, 8, torch.Generator().manual_seed(0))
    r = y[:, 0].argmax(1)
    assert set(r.tolist()) == {9, 11}
    # block border: 15 -> 16 crosses into block 2 and is undone
    x = render_1d(torch.tensor([[15, 3]]).repeat(400, 1), 32)
    y = local_diffeo_1d(x, 8, torch.Generator().manual_seed(0))
    assert not y[:, 0, 16].any() and y[:, 0, 14].any() and y[:, 0, 15].any()
    # pixels that merge keep the value (set, not added)
    x = render_1d(torch.tensor([[4, 6]]).repeat(400, 1), 32)
    y = local_diffeo_1d(x, 8, torch.Generator().manual_seed(0))
    assert torch.all(y.amax((1, 2)) == 4.0) and ((y > 0).sum((1, 2)) == 1).any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="norm"):
        twopoints_pairs(d=4, norm="L1")
    with pytest.raises(ValueError, match="xi must divide"):
        scale_detection_1d(L=30, xi=8)
    with pytest.raises(ValueError, match="task"):
        scale_detection_1d_class_counts(32, 8, 0, task=3)
