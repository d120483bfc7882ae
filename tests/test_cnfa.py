"""CNFA rows: values against direct computation, baselines, centred variant, a short training run."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from featlab.probes import cnfa, correlation, matrix_power_psd, patch_agop
from featlab.probes._cnfa import cnfm


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 3 * 3, 3)).double()


def _task(gen, n=64):
    """Class = which third of the 8×8 image holds a bright vertical bar (a local signal)."""
    X = 0.3 * torch.randn(n, 1, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    for i in range(n):
        X[i, 0, 1:7, 1 + 2 * int(y[i])] += 1.5
    return X, y


def _train(model, X, y, steps, gen):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        idx = torch.randint(0, X.shape[0], (16,), generator=gen)
        loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_convention_rows_follow_the_spec_definitions(gen):
    model = _net(0)
    init = copy.deepcopy(model.state_dict())
    X, y = _task(gen, 32)
    _train(model, X, y, 30, gen)
    fresh = _net(1)
    rows, mats = cnfa(model, X, init_state=init, fresh_model=lambda: fresh, alpha=0.5, return_matrices=True)
    assert [r.layer for r in rows] == ["0", "2"]
    m0 = _net(0)
    for r in rows:
        C, G = cnfm(model, r.layer), patch_agop(model, r.layer, X)
        C0, G0 = cnfm(m0, r.layer), patch_agop(m0, r.layer, X)
        Cf = cnfm(fresh, r.layer)
        assert abs(r.rho_trained - correlation(C, matrix_power_psd(G, 0.5))) < 1e-12
        assert abs(r.rho_init_trained - correlation(C0, C)) < 1e-12
        assert abs(r.rho_untrained - correlation(C0, matrix_power_psd(G0, 0.5))) < 1e-12
        assert abs(r.rho_fresh - correlation(C0, Cf)) < 1e-12
        assert abs(r.rho_fresh_trained - correlation(Cf, C)) < 1e-12
        assert r.metric == "pearson" and r.alpha == 0.5 and r.n_images == 32 and not r.sketched
        assert torch.allclose(mats[r.layer]["cnfm"], C) and torch.allclose(mats[r.layer]["agop"], G)


def test_centered_variant_uses_K_of_the_trained_net(gen):
    """(W−W₀)ᵀK(W−W₀) with K the trained net's conv-output Gram: compare with the linear-readout closed form."""
    torch.manual_seed(2)
    conv = nn.Conv2d(1, 3, 3).double()
    lin = nn.Linear(3 * 4 * 4, 2).double()
    model = nn.Sequential(conv, nn.Flatten(), lin)
    init = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        conv.weight.add_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
    R = lin.weight.detach().reshape(2, 3, 4, 4)
    K = torch.einsum("ckij,clij->kl", R, R)  # closed form, data independent
    dW = (conv.weight.detach() - init["0.weight"]).reshape(3, -1)
    X = torch.randn(3, 1, 6, 6, generator=gen, dtype=torch.float64)
    (row,) = cnfa(model, X, init_state=init, metric="cosine")
    assert abs(row.rho_centered - correlation(dW.T @ dW, dW.T @ K @ dW, "cosine")) < 1e-12
    assert row.metric == "cosine"


def test_own_init_gives_unit_baseline_and_missing_values_are_none(gen):
    model = _net(3)
    X, _ = _task(gen, 8)
    (r0, _) = cnfa(model, X, init_state=model.state_dict(), centered=True)
    assert abs(r0.rho_init_trained - 1) < 1e-12 and abs(r0.rho_untrained - r0.rho_trained) < 1e-12
    assert r0.rho_centered is None and r0.rho_fresh is None  # undefined while W = W0: None, not NaN
    (r,) = cnfa(model, X, layers=["2"])
    assert r.rho_init_trained is None and r.rho_untrained is None and r.rho_centered is None
    (r,) = cnfa(model, X, layers=["2"], outputs="sketch", n_sketch=4, generator=gen)
    assert r.sketched
    cache = {}
    a = cnfa(model, X, init_state=_net(9).state_dict(), cache=cache)
    assert len(cache) == 1
    b = cnfa(model, X, init_state=_net(9).state_dict(), cache=cache)
    assert a == b


def test_short_training_report_has_all_four_rho_and_metric(gen):
    """After a few hundred steps on a local-signal task the CNFA of the first layer rises above both baselines."""
    model = _net(4)
    init = copy.deepcopy(model.state_dict())
    X, y = _task(gen, 96)
    _train(model, X, y, 200, gen)
    assert (model(X).argmax(1) == y).double().mean() > 0.9
    rows = cnfa(model, X[:48], init_state=init, fresh_model=lambda: _net(5))
    for r in rows:
        d = r.to_dict()
        for k in ("rho_trained", "rho_init_trained", "rho_untrained", "rho_fresh", "metric"):
            assert d[k] is not None
    r = rows[0]
    assert r.rho_trained > r.rho_init_trained and r.rho_trained > r.rho_fresh


def test_bad_arguments(gen):
    model = _net(0)
    X = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="metric"):
        cnfa(model, X, metric="kendall")
    with pytest.raises(ValueError, match="Conv2d"):
        cnfa(model, X, layers=["5"])
    with pytest.raises(ValueError, match="Conv2d"):
        cnfa(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).double(), X)
