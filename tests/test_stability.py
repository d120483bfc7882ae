"""Matched noise and D/G/R: identity, invariances, closed forms, medians, streaming, in-place, BN."""
import math

import pytest
import torch
from torch import nn

from featlab.diffeo import typical_temperature
from featlab.probes import matched_noise, stability
from featlab.probes._stability import (mean_sq_distance, mean_sq_distance_pairwise,
                                       median_sq_distance)

f64 = torch.float64


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _X(P=24, C=2, n=10, seed=0):
    return torch.randn(P, C, n, n, generator=_g(seed), dtype=f64)


def _cnn(bn=False, inplace=False, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(2, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(inplace=inplace), nn.Conv2d(4, 3, 3, stride=2), nn.ReLU(), nn.Flatten(),
               nn.Linear(3 * 16, 5)]
    return nn.Sequential(*layers).double()


# ---------------------------------------------------------------- noise
def test_sphere_noise_norm_matches_per_image_and_mean_direction_is_zero():
    x = _X(P=400)
    xd = x + 0.3 * torch.randn(x.shape, generator=_g(1), dtype=f64) * torch.rand(400, 1, 1, 1, generator=_g(2), dtype=f64)
    xn = matched_noise(x, xd, _g(3))
    rel = ((xn - x).flatten(1).norm(dim=1) / (xd - x).flatten(1).norm(dim=1) - 1).abs().max()
    assert rel <= 1e-12
    u = (xn - x).flatten(1) / (xn - x).flatten(1).norm(dim=1, keepdim=True)  # unit directions
    assert u.mean(0).norm() < 4 / math.sqrt(400)  # |mean of P iid unit vectors| ~ 1/sqrt(P)
    xm = matched_noise(x, None, _g(3), noise_magnitude=2.5)
    assert torch.allclose((xm - x).flatten(1).norm(dim=1), torch.full((400,), 2.5, dtype=f64), rtol=1e-12)


def test_rectified_noise_positive_with_matched_pre_rectification_variance():
    x = torch.zeros(200, 1, 64, dtype=f64)
    xd = x + 0.5 * torch.randn(x.shape, generator=_g(1), dtype=f64)
    sigma2 = float((xd - x).pow(2).mean())
    eta = matched_noise(x, xd, _g(2), "rectified_mean") - x
    assert eta.min() >= 0 and (eta > 0).float().mean() == pytest.approx(0.5, abs=0.01)
    # E relu(sigma z)^2 = sigma^2 / 2 ; 12800 entries -> rel. std ~ 1.8%
    assert float(eta.pow(2).mean()) == pytest.approx(sigma2 / 2, rel=0.06)


def test_exception_noise_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        matched_noise(_X(P=2), _X(P=2), _g(), "uniform")


# ---------------------------------------------------------------- D, G, R
def test_identity_gives_D_equal_G_and_R_one_exactly():
    r = stability(nn.Identity(), _X(), generator=_g(4))
    assert r["D"] > 0 and abs(r["R"] - 1) <= 1e-12
    assert r["T"] == typical_temperature(1.0, 3, 10)


def test_median_protocol_identity_R_near_one_for_gaussian_perturbation():
    # a Gaussian perturbation and its sphere-matched noise have nearly the same law
    pert = lambda x, g: x + 0.2 * torch.randn(x.shape, generator=g, dtype=x.dtype)
    r = stability(nn.Identity(), _X(P=200, n=8), protocol="median", perturbations=pert, generator=_g(5))
    assert r["R"] == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("protocol", ["mean", "median"])
def test_invariance_to_scale_and_shift(protocol):
    X = _X()
    ref = stability(nn.Identity(), X, generator=_g(6), protocol=protocol, eps=0)

    class Affine(nn.Module):
        def forward(self, x):
            return 3.5 * x + 7.0

    r = stability(Affine(), X, generator=_g(6), protocol=protocol, eps=0)
    for k in "DGR":
        assert r[k] == pytest.approx(ref[k], rel=1e-9)


def test_orthogonal_linear_gives_identity_values():
    X = _X(P=30, C=1, n=6)
    ref = stability(nn.Identity(), X, generator=_g(7), eps=0)
    Q, _ = torch.linalg.qr(torch.randn(36, 36, generator=_g(8), dtype=f64))
    lin = nn.Linear(36, 36).double()
    with torch.no_grad():
        lin.weight.copy_(Q)
    r = stability(nn.Sequential(nn.Flatten(), lin), X, generator=_g(7), eps=0)
    for k in "DGR":
        assert r[k] == pytest.approx(ref[k], rel=1e-10)


def test_closed_form_denominator_equals_pairwise_cdist_mean():
    F = torch.randn(37, 50, generator=_g(9), dtype=f64) + 100.0  # offset: tests the shift
    cf, pw = mean_sq_distance(F), mean_sq_distance_pairwise(F, chunk_size=10)
    assert abs(cf - pw) <= 1e-12 * pw
    assert abs(mean_sq_distance(F, chunk_size=1) - cf) <= 1e-13 * cf  # chunking: memory only
    assert float(mean_sq_distance(F, exclude_diagonal=True) / cf) == pytest.approx(37 / 36, rel=1e-14)
    assert float(mean_sq_distance_pairwise(F, exclude_diagonal=True)) == pytest.approx(float(cf) * 37 / 36, rel=1e-12)
    r = stability(nn.Identity(), _X(P=12), generator=_g(1), exclude_diagonal=False)
    r2 = stability(nn.Identity(), _X(P=12), generator=_g(1), exclude_diagonal=True)
    assert r2["deno"] / r["deno"] == pytest.approx(12 / 11, rel=1e-12)
    assert r["deno"] == pytest.approx(float(mean_sq_distance(_X(P=12))), rel=1e-12)


def test_convention_median_is_torch_lower_median_with_even_P():
    F = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=f64)  # P = 4
    # 16 squared distances: 4 zeros, 1,1,4,4,9,9,16,16,36,36,49,49 -> sorted[7] = 4 (lower), [8] = 9
    assert float(median_sq_distance(F)) == 4.0
    # numerator: per-coordinate lower median over images, then summed over coordinates
    X = torch.arange(4, dtype=f64).reshape(4, 1, 1, 1).expand(4, 1, 2, 2).clone()
    Xd = X + torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=f64).reshape(4, 1, 1, 1)  # Delta^2 = 1,4,9,16
    r = stability(nn.Identity(), X, protocol="median", perturbations=Xd, X_noisy=Xd, eps=0)
    assert r["nume_D"] == 4 * 4.0  # lower median of {1,4,9,16} = 4, four coordinates


def test_streaming_equals_one_shot():
    net, X = _cnn(), _X(P=11)
    kw = dict(layers="all", generator=None)
    a = stability(net, X, **{**kw, "generator": _g(2)})
    b = stability(net, X, batch_size=4, **{**kw, "generator": _g(2)})
    c = stability(net, X, batch_size=4, concat=False, **{**kw, "generator": _g(2)})
    assert set(a["layers"]) == {"0", "1", "2", "3", "4", "5"}
    for r in (b, c):
        for k in "DGR":
            assert r[k] == pytest.approx(a[k], rel=1e-12)
            for n in a["layers"]:
                assert r["layers"][n][k] == pytest.approx(a["layers"][n][k], rel=1e-12)


def test_median_streaming_equals_one_shot():
    net, X = _cnn(), _X(P=10)
    a = stability(net, X, layers=["2"], protocol="median", generator=_g(3))
    b = stability(net, X, layers=["2"], protocol="median", generator=_g(3), batch_size=3, chunk_size=4)
    assert b["layers"]["2"]["R"] == pytest.approx(a["layers"]["2"]["R"], rel=1e-12)
    assert b["R"] == pytest.approx(a["R"], rel=1e-12)


def test_inplace_relu_clone_keeps_negatives_compat_reproduces_overwrite():
    net, X = _cnn(inplace=True), _X(P=16)
    safe = stability(net, X, layers=["0", "1"], generator=_g(4))
    compat = stability(net, X, layers=["0", "1"], generator=_g(4), compat_inplace=True)
    # default: the conv node keeps its pre-ReLU values, so it differs from the ReLU node
    assert abs(safe["layers"]["0"]["D"] - safe["layers"]["1"]["D"]) > 1e-3
    # compat: the conv capture was overwritten by the in-place ReLU -> equals the ReLU node
    assert compat["layers"]["0"]["D"] == pytest.approx(safe["layers"]["1"]["D"], rel=1e-12)
    # oracle for the default: recompute on an equivalent net without in-place ReLU
    ref = stability(_cnn(inplace=False), X, layers=["0"], generator=_g(4))
    assert safe["layers"]["0"]["D"] == pytest.approx(ref["layers"]["0"]["D"], rel=1e-12)


def test_bn_batch_mode_separate_differs_from_concatenated_eval_equal():
    net, X = _cnn(bn=True), _X(P=8)
    with torch.no_grad():
        net[1].running_mean.fill_(0.3)
        net[1].running_var.fill_(2.0)
    rm = net[1].running_mean.clone()
    net.train()
    sep = stability(net, X, bn_mode="batch", generator=_g(5))
    cat = stability(net, X, bn_mode="batch", concat=True, generator=_g(5))
    assert abs(sep["D"] - cat["D"]) > 1e-6 * abs(sep["D"])
    e1 = stability(net, X, bn_mode="eval", generator=_g(5))
    e2 = stability(net, X, bn_mode="eval", concat=False, batch_size=3, generator=_g(5))
    assert e1["D"] == pytest.approx(e2["D"], rel=1e-12) and e1["G"] == pytest.approx(e2["G"], rel=1e-12)
    # batch mode used batch statistics, not the running ones; state restored
    assert abs(sep["D"] - e1["D"]) > 1e-6 * abs(e1["D"])
    assert torch.equal(net[1].running_mean, rm) and net[1].track_running_stats
    assert net.training and net[1].training


def test_custom_perturbation_on_1d_inputs_and_channel_mean():
    X = torch.randn(20, 3, 16, generator=_g(1), dtype=f64)
    shift = lambda x, g: torch.roll(x, 1, dims=-1)
    net = nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.ReLU()).double()
    r = stability(net, X, perturbations=shift, layers=["0"], channel_mean=True, generator=_g(2))
    with torch.no_grad():
        f = net[0](X).mean(1)
        fd = net[0](torch.roll(X, 1, dims=-1)).mean(1)
    nd = float((fd - f).pow(2).sum(1).mean())
    assert r["layers"]["0"]["nume_D"] == pytest.approx(nd, rel=1e-12)
    assert r["layers"]["0"]["deno"] == pytest.approx(float(mean_sq_distance(f)), rel=1e-12)


@pytest.mark.parametrize("kw, match", [(dict(protocol="mode"), "protocol must be one of"),
                                       (dict(bn_mode="batch", batch_size=4), "batch_size must be >= P"),
                                       (dict(layers=["nope"]), "layers not found"),
                                       (dict(layers="some"), "layers must be"),
                                       (dict(noise="gauss"), "noise must be one of")])
def test_exception_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        stability(_cnn(), _X(P=8), generator=_g(), **kw)


# ---------------------------------------------------------------- torch.fx node extraction
class _Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(2 * 10 * 10, 3)

    def forward(self, x):
        h = self.relu(self.conv(x)) + x
        h = torch.nn.functional.dropout(h, 0.5, self.training)
        return self.fc(h.view(h.size(0), -1))


def test_fx_node_names_follow_reference_filter():
    from featlab.probes.fx_nodes import fx_node_names
    names = fx_node_names(_Res())
    assert names == ["conv", "relu", "add", "fc"]  # x, dropout, size, view dropped


def test_fx_source_equals_module_hooks_and_handles_functional_nodes():
    net, X = _Res().double(), _X(P=12)
    a = stability(net, X, layers=["conv", "relu", "fc"], generator=_g(1))
    b = stability(net, X, layers="all", layer_source="fx", generator=_g(1))
    for n in ("conv", "relu", "fc"):
        assert b["layers"][n]["R"] == pytest.approx(a["layers"][n]["R"], rel=1e-12)
    assert "add" in b["layers"] and b["R"] == pytest.approx(a["R"], rel=1e-12)
    # compat: without clones the conv node is read after the in-place ReLU overwrote it
    c = stability(net, X, layers=["conv", "relu"], layer_source="fx", compat_inplace=True, generator=_g(1))
    assert c["layers"]["conv"]["D"] == pytest.approx(a["layers"]["relu"]["D"], rel=1e-12)
    assert abs(a["layers"]["conv"]["D"] - a["layers"]["relu"]["D"]) > 1e-3
    with pytest.raises(ValueError, match="layer_source must be one of"):
        stability(net, X, layer_source="graph")


@pytest.mark.cuda
def test_cuda_stability_matches_cpu():
    net, X = _cnn(), _X(P=12)
    a = stability(net, X, layers=["2"], generator=_g(1), perturbations=lambda x, g: torch.roll(x, 1, -1))
    Xc = X.cuda()
    b = stability(net.cuda(), Xc, layers=["2"], generator=torch.Generator(device="cuda").manual_seed(1),
                  perturbations=lambda x, g: torch.roll(x, 1, -1), X_noisy=Xc + 0.1)
    assert b["D"] == pytest.approx(a["D"], rel=1e-9)
