"""CNFA rows: values against direct computation, baselines, centred variant, a short training run."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from featlab.models import get
from featlab.probes import cnfa, cnfa_nulls, cnfa_reference_layers, correlation, matrix_power_psd, patch_agop
from featlab.probes._cnfa import METRICS, QUANTITIES, _haar, cnfm
from featlab.probes._patch_agop import conv_output_grams


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
    assert r.null_init_K is None and r.null_random_eigvecs is not None and r.untrained_source is None
    (r,) = cnfa(model, X, layers=["2"], fresh_model=_net(11))  # pretrained-style: untrained = the fresh net
    assert r.untrained_source == "fresh" and r.rho_init_trained is None and r.rho_centered is None
    Cf, Gf = cnfm(_net(11), "2"), patch_agop(_net(11), "2", X)
    assert abs(r.rho_untrained - correlation(Cf, Gf)) < 1e-12
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


def test_structural_nulls_follow_their_definitions(gen):
    """null_init_K = ρ(C, W̄ᵀK₀W̄) with K₀ of the init; the random-eigenvector null is the mean over the
    documented draws (one generator stream: per layer, the uncentred then the centred draws); every
    metric is in ``variants``."""
    model = _net(0)
    init = copy.deepcopy(model.state_dict())
    X, y = _task(gen, 32)
    _train(model, X, y, 30, gen)
    rows = cnfa(model, X, init_state=init, n_null_draws=5, null_generator=torch.Generator().manual_seed(7))
    m0 = _net(0)
    K0s, _ = conv_output_grams(m0, ["0", "2"], X)
    Ks, _ = conv_output_grams(model, ["0", "2"], X)
    g = torch.Generator().manual_seed(7)
    for r in rows:
        W = model.get_submodule(r.layer).weight.detach().reshape(6, -1)
        C = W.T @ W
        assert abs(r.null_init_K - correlation(C, W.T @ K0s[r.layer] @ W)) < 1e-12
        lam = torch.linalg.eigvalsh(Ks[r.layer]).clamp_min(0)
        draws = []
        for _ in range(5):
            Q = _haar(6, g)
            draws.append(correlation(C, W.T @ (Q * lam) @ Q.T @ W))
        assert abs(r.null_random_eigvecs - sum(draws) / 5) < 1e-12
        for _ in range(5):
            _haar(6, g)  # the centred null of this layer draws next from the same stream
        assert abs(r.null_random_eigvecs_sd - float(torch.tensor(draws, dtype=torch.float64).std())) < 1e-12
        assert set(r.variants) == set(METRICS) and all(set(v) == set(QUANTITIES) for v in r.variants.values())
        assert r.variants["pearson"]["null_init_K"] == r.null_init_K
        assert abs(r.variants["cosine"]["rho_trained"] - correlation(C, patch_agop(model, r.layer, X), "cosine")) < 1e-12
        dW = W - m0.get_submodule(r.layer).weight.detach().reshape(6, -1)
        assert abs(r.variants["pearson_offdiag"]["null_centered_init_K"]
                   - correlation(dW.T @ dW, dW.T @ K0s[r.layer] @ dW, "pearson_offdiag")) < 1e-12
    Q = _haar(6, torch.Generator().manual_seed(0))
    assert torch.allclose(Q.T @ Q, torch.eye(6, dtype=torch.float64), atol=1e-12)


def test_structural_nulls_give_one_when_the_untrained_K_is_isotropic(gen):
    """conv → flatten → linear readout R: K = Σ_ij R_ijᵀR_ij is data independent. An orthogonal readout
    at init gives K₀ = I, so "trained W̄ with the init K" is ρ(W̄ᵀW̄, W̄ᵀW̄) = 1 in every metric, while the
    trained (anisotropic) K gives less; an isotropic K gives 1 for every random eigenbasis too."""
    torch.manual_seed(5)

    def net():
        return nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4, 4, bias=False)).double()

    init_model = net()
    with torch.no_grad():
        nn.init.orthogonal_(init_model[2].weight)
    model = copy.deepcopy(init_model)
    with torch.no_grad():
        model[0].weight.add_(torch.randn(model[0].weight.shape, generator=gen, dtype=torch.float64))
        model[2].weight.copy_(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    X = torch.randn(6, 2, 3, 3, generator=gen, dtype=torch.float64)
    (r,) = cnfa(model, X, init_state=init_model.state_dict(), n_null_draws=4)
    K0, _ = conv_output_grams(init_model, ["0"], X)
    assert torch.allclose(K0["0"], torch.eye(4, dtype=torch.float64), atol=1e-12)
    for m in METRICS:
        assert abs(r.variants[m]["null_init_K"] - 1) < 1e-12
        assert abs(r.variants[m]["null_centered_init_K"] - 1) < 1e-12
    assert r.rho_trained < 0.999
    W = model[0].weight
    nl = cnfa_nulls(W, 3.0 * torch.eye(4, dtype=torch.float64), n_draws=3)
    assert all(abs(v.random_eigvecs - 1) < 1e-12 and v.init_K is None and len(v.draws) == 3 for v in nl.values())
    with pytest.raises(ValueError, match="K must be"):
        cnfa_nulls(W, torch.eye(3, dtype=torch.float64))


def test_reference_layer_selection_lists_exactly_the_block_conv1_layers():
    r18 = get("resnet18", variant="imagenet", input_size=32)
    assert cnfa_reference_layers(r18) == [f"layer{i}.{j}.conv1" for i in range(1, 5) for j in range(2)]
    r34 = get("resnet34")
    assert cnfa_reference_layers(r34) == [f"layer{i}.{j}.conv1" for i, n in zip(range(1, 5), (3, 4, 6, 3))
                                          for j in range(n)]
    vgg = get("vgg11")
    convs = [n for n, mod in vgg.named_modules() if isinstance(mod, nn.Conv2d)]
    assert cnfa_reference_layers(vgg) == convs and len(convs) == 8
    small = get("resnet18", input_size=8, num_classes=2)
    rows = cnfa(small, torch.randn(1, 3, 8, 8), layers="reference", nulls=False)
    assert [r.layer for r in rows] == cnfa_reference_layers(small) == cnfa_reference_layers(r18)
