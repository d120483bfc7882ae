"""pooling experiment: the reference training recipe, the fit range and the ideal-net exponents.

Oracles: a hinge toy whose zero-loss epoch is known in closed form (stopping rule); one SGD step
computed by hand (weight decay); the analytic crossing count of a 2^k-block pooling net and an
enumeration over every sign pair of the local diffeo (closed form of the ideal net); the
one-hot constant-filter theory of featlab.theory (ideal net = SimpleCNN with constant filters).
"""
from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from featlab.config import ConfigError, validate
from featlab.data.scale_detection import (local_diffeo_1d, render_1d, scale_detection_1d_class_counts,
                                          scale_detection_1d_probes)
from featlab.experiments import get
from featlab.experiments.pooling import (PoolingConfig, StopRule, Variant, block_receptive_fields,
                                         fit_mask, fit_reference, fit_slope, is_conv_weight, measure,
                                         paper, sgd_hyper, tiny)
from featlab.models.simple_cnn import SimpleCNN
from featlab.theory.cnn_constant_filters import (constant_filter_cnn, constant_filters,
                                                 constant_filters_two_pixels, receptive_field_sizes)
from featlab.utils.device import make_generator


def _ctx(seed=0):
    return SimpleNamespace(generator=lambda stream, device=None: make_generator(seed, stream, "cpu"))


# --- stopping rule ------------------------------------------------------------------------------
def test_convention_stop_rule_checks_zero_based_epochs_and_needs_zero_validation_error():
    # loss > 0 up to epoch 23, then 0; checked every 10 -> e0 = 30; 3x -> e >= 90, needs val 0
    def first_stop(rule, val):
        return next(e for e in range(1000) if rule(e, 1.0 if e < 24 else 0.0, val(e)))

    rule = StopRule(factor=3, every=10, ridge=True)
    assert first_stop(rule, lambda e: 0.5 if e == 90 else 0.0) == 100
    assert rule.first_zero == 30 and rule.stop_epoch == 100
    assert first_stop(StopRule(factor=3, every=10, ridge=False), lambda e: 0.5) == 30


class _Scalar(nn.Module):
    """out = w·x with w = 0 at init: on x = ±1, y = sign(x) the hinge margin is w for every sample."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.w * x


def _toy(n=8):
    x = torch.tensor([1.0, -1.0] * (n // 2))[:, None]
    return x, x[:, 0].long()


@pytest.mark.parametrize("factor, every, cap, first, stop", [(3, 2, 100, 4, 12), (3, 10, 40, 10, 30),
                                                            (500, 10, 60, 10, None)])
def test_stopping_rule_through_training_on_a_toy_with_known_zero_loss_epoch(factor, every, cap, first, stop):
    # full-batch SGD with lr 1/4: the forward pass of 0-based epoch e sees w = e/4, so the hinge
    # loss relu(1 - w) is exactly 0 from e = 4 on (the first checked such e is e0)
    net = _Scalar()
    hist, rule = fit_reference(net, _toy(), _toy(4), lr=0.25, weight_decay=0.0, ridge=True, epochs=cap,
                               batch_size=8, factor=factor, every=every, generator=torch.Generator(),
                               device="cpu")
    assert [ls == 0 for ls in hist.train_loss[:6]] == [False] * 4 + [True] * 2
    assert rule.first_zero == first and rule.stop_epoch == stop
    assert len(hist.epoch) == (cap if stop is None else stop + 1)  # the cap is what ends it otherwise


def test_weight_decay_touches_conv_weights_only():
    torch.manual_seed(0)
    net0 = SimpleCNN(dim=1, F=2, depth=3, width=4)
    x, y = render_1d(torch.tensor([[0, 3], [1, 6], [2, 5], [4, 7]]), 8), torch.tensor([1, -1, 1, -1])
    cfg = dataclasses.replace(PoolingConfig(), model=dataclasses.replace(PoolingConfig().model, width=4, depth=3))
    lr, wd = sgd_hyper(cfg)
    assert wd == pytest.approx(2 * 0.01 / (4 * 3))
    after = {}
    for decay in (0.0, wd):
        net = SimpleCNN(dim=1, F=2, depth=3, width=4)
        net.load_state_dict(net0.state_dict())
        fit_reference(net, (x, y), (x, y), lr=lr, weight_decay=decay, ridge=True, epochs=1, batch_size=4,
                      factor=500, every=10, generator=torch.Generator().manual_seed(1), device="cpu")
        after[decay] = dict(net.named_parameters())
    w0 = dict(net0.named_parameters())
    for name, p in w0.items():
        diff = (after[wd][name] - after[0.0][name]).detach()
        if is_conv_weight(name):
            assert torch.allclose(diff, -lr * wd * p.detach(), atol=1e-7), name  # one plain SGD step
        else:
            assert torch.equal(diff, torch.zeros_like(diff)), name
    assert {n for n in w0 if is_conv_weight(n)} == {f"blocks.{k}.weight" for k in range(3)}


# --- fit range ----------------------------------------------------------------------------------
def test_convention_fit_range_excludes_A_at_least_xi_and_A_equal_L():
    A = block_receptive_fields(2, [2] * 7, 128)
    assert np.array_equal(A, 2.0 ** np.arange(1, 8))
    assert fit_mask(A, 32, 128).tolist() == [True] * 4 + [False] * 3
    assert fit_mask(A, 128, 128).tolist() == [True] * 6 + [False]  # A = L never enters
    assert fit_mask(A, 20, 128).tolist() == [True] * 4 + [False] * 3
    ns = block_receptive_fields(2, [1] * 12, 128)
    assert fit_mask(ns, 8, 128).all() and ns[-1] < 8
    assert fit_slope(A, 1 / A, fit_mask(A, 3, 128)) is None  # one block: no slope
    assert fit_slope(A, 5 * A ** -1.5, fit_mask(A, 32, 128)) == pytest.approx(-1.5)


def test_receptive_field_sizes_accept_a_stride_sequence():
    assert np.allclose(receptive_field_sizes(2, [2] * 5, 5, 64), receptive_field_sizes(2, 2, 5, 64))
    first = receptive_field_sizes(2, [2, 1, 1], 3, 64)  # the published stride pattern
    assert first[1] == 2 and 2 < first[2] < first[3] < 8
    with pytest.raises(ValueError):
        receptive_field_sizes(2, [2, 2], 3, 64)


# --- the ideal net ------------------------------------------------------------------------------
@pytest.mark.parametrize("s", [2, 1])
def test_constant_filter_cnn_under_the_probe_equals_the_theory_module(s):
    """Ideal SimpleCNN + stability() on one-hot probes and a roll = theory.constant_filters' D_k."""
    from featlab.probes import stability

    N, depth = 64, 5
    net = constant_filter_cnn(2, depth, "all" if s == 2 else "none")
    X = torch.eye(N, dtype=torch.float64)[:, None]
    r = stability(net.double(), X, perturbations=torch.roll(X, 1, -1), noise="rectified_mean",
                  layers=net.block_names, eps=1e-30, generator=torch.Generator().manual_seed(0))
    th = constant_filters(2, s, depth, N)  # all N probes: D_k is exact
    ours = np.array([r["layers"][n]["D"] for n in net.block_names])
    assert np.allclose(ours, th.D[1:], rtol=1e-10)


def test_closed_form_counts_block_crossings_of_a_pooling_net():
    """Stride F = 2 without rejection (ξ = L): D_num_k = 2a² · E[number of 2^k-block crossings]."""
    L, a2 = 128, 64.0
    X = render_1d(torch.tensor([[7, 40]]), L)
    res = constant_filters_two_pixels(X, L, F=2, depth=4)
    expected = []
    for k in range(1, 5):
        A = 2 ** k
        cross = sum(0.5 * (r % A == A - 1) + 0.5 * (r % A == 0) for r in (7, 40))
        expected.append(2 * a2 * cross)
    assert np.allclose(res["D_num"], expected)
    # the noise term against Monte Carlo of relu(σ z) through the same net
    net = constant_filter_cnn(2, 4).double()
    from featlab.probes.hooks import capture

    g = torch.Generator().manual_seed(0)
    eta = torch.relu(math.sqrt(res["sigma2"]) * torch.randn(20000, 1, L, generator=g, dtype=torch.float64))
    with torch.no_grad(), capture(net, net.block_names) as c:
        net(eta)
    mc = [float(c[n][0].flatten(1).pow(2).sum(1).mean()) for n in net.block_names]
    assert np.allclose(res["G_num"], mc, rtol=0.02)


@pytest.mark.parametrize("name, task, xi, depth", [("stride", 2, 32, 7), ("nostride", 1, 8, 12)])
def test_ideal_exponent_under_the_experiment_protocol_equals_the_closed_form(name, task, xi, depth):
    """α_ideal as the experiment measures it (one diffeo and noise draw per probe) = the exact one."""
    L = 128
    cfg = paper()
    v = Variant(name, task, L, xi, 0, depth, "all" if name == "stride" else "none")
    X, _, _ = scale_detection_1d_probes(L, xi, 0, task, generator=torch.Generator().manual_seed(0))
    exact = constant_filters_two_pixels(X, xi, F=2, depth=depth, stride_layers=v.stride_layers)
    net = constant_filter_cnn(2, depth, v.stride_layers)
    mc = measure(net, X.repeat(16, 1, 1), v, cfg, _ctx())  # 16 draws per probe, same denominator
    A = block_receptive_fields(2, [2 if name == "stride" else 1] * depth, L)
    mask = fit_mask(A, xi, L)
    for q, tol in (("D", 0.05), ("G", 0.02)):
        assert fit_slope(A, mc[q], mask) == pytest.approx(fit_slope(A, exact[q], mask), abs=tol), q
    assert np.allclose(mc["D"][mask], exact["D"][mask], rtol=0.15)


# --- data -----------------------------------------------------------------------------------------
def test_convention_reference_probe_set_is_a_tenth_of_all_pairs_half_per_class():
    x, y, pos = scale_detection_1d_probes(128, 32, 0, 2, generator=torch.Generator().manual_seed(0))
    assert len(x) == 812 and int((y == 1).sum()) == int((y == -1).sum()) == 406
    assert sum(scale_detection_1d_class_counts(128, 32, 0, 2)) == 8128
    same = (pos[:, 0] // 32) == (pos[:, 1] // 32)
    assert torch.equal(same, y == 1) and len({tuple(p) for p in pos.tolist()}) == 812
    assert torch.allclose(x.pow(2).sum((1, 2)), torch.full((812,), 128.0))


def test_convention_local_diffeo_signs_replay_the_random_draw():
    x = render_1d(torch.tensor([[3, 9], [20, 30], [0, 31]]), 32)
    g = torch.Generator().manual_seed(4)
    s = 2 * torch.randint(0, 2, (3, 2), generator=torch.Generator().manual_seed(4)) - 1
    assert torch.equal(local_diffeo_1d(x, 8, g), local_diffeo_1d(x, 8, signs=s))
    right = local_diffeo_1d(x, 8, signs=torch.ones(3, 2, dtype=torch.long))
    # +1 moves 3 -> 4, 9 -> 10, 20 -> 21, 30 -> 31; 31 clamps; 0 -> 1; block borders 7|8 etc. untouched
    assert right[0, 0].nonzero().flatten().tolist() == [4, 10]
    assert right[2, 0].nonzero().flatten().tolist() == [1, 31]
    with pytest.raises(ValueError):
        local_diffeo_1d(x, 8, signs=torch.zeros(3, 2))


# --- config and claims --------------------------------------------------------------------------
def test_presets_validate_and_paper_is_the_reference_recipe():
    p = paper()
    validate(p)
    validate(tiny())
    assert (p.data.L, p.data.xi, p.data.task, p.model.kernel_size, p.model.depth, p.model.width, p.data.P) == \
        (128, 32, 2, 2, 7, 1000, 1024)
    assert (p.train.ridge, p.train.stop_factor, p.train.check_every, p.train.epochs) == (0.01, 500, 10, 600_000)
    assert p.probe.channel_mean and p.probe.probe_set == "reference"
    assert get("pooling").scale("paper") == "paper" and get("pooling").scale("tiny") == "smoke"


@pytest.mark.parametrize("sets, field", [
    ({"data": {"xi": 30}}, "data.xi"),
    ({"nostride": {"xi": 70}}, "nostride.xi"),
    ({"data": {"P": 4000}}, "data.P"),
    ({"data": {"dim": 2, "L": 16, "xi": 6}}, "nostride.task"),
])
def test_bad_configs_name_the_field(sets, field):
    c = PoolingConfig()
    for sec, kv in sets.items():
        c = dataclasses.replace(c, **{sec: dataclasses.replace(getattr(c, sec), **kv)})
    with pytest.raises(ConfigError) as e:
        validate(c)
    assert str(e.value).startswith(field)


def _summary(a_s, a_n, g_s=0.7, g_n=0.6, err=0.0):
    s = {"test_error_stride": err, "test_error_nostride": 0.0}
    for v, a, g, ai, gi in (("stride", a_s, g_s, 1.3, 0.7), ("nostride", a_n, g_n, 1.6, 0.6)):
        s.update({f"alpha_{v}": a, f"alpha_{v}_ideal": ai, f"alpha_{v}_asymptotic": 1.0,
                  f"g_exponent_{v}": g, f"g_exponent_{v}_ideal": gi})
    return s


def test_pooling_claims_are_judged_against_the_ideal_net():
    exp = get("pooling")
    d, g = exp.claims
    assert d.check(_summary(1.2, 1.5))[1] is True and d.value(_summary(1.2, 1.5)) == pytest.approx(0.1)
    assert d.check(_summary(1.0, 1.5))[1] is False  # 0.3 from the ideal stride exponent
    assert d.check(_summary(1.5, 1.4))[1] is False  # within tolerance each, but not larger without stride
    assert d.check(_summary(1.2, 1.5, err=0.3))[1] is None  # a net that did not learn says nothing
    assert g.check(_summary(1.2, 1.5, g_s=0.5))[1] is True and g.check(_summary(1.2, 1.5, g_s=0.3))[1] is False
    assert [c.check({})[1] for c in exp.claims] == [None, None]
    assert all(c.reference for c in exp.claims)


# --- end to end and figures ----------------------------------------------------------------------
POOLING_KEYS = {f"{k}_{v}{suf}" for v in ("stride", "nostride") for k, suf in (
    ("alpha", ""), ("alpha", "_init"), ("alpha", "_ideal"), ("alpha", "_asymptotic"), ("g_exponent", ""),
    ("g_exponent", "_ideal"), ("g_exponent", "_asymptotic"), ("r_exponent", ""), ("test_error", ""),
    ("epochs", ""), ("stopped", ""), ("hit_cap", ""), ("fit_blocks", ""))}


def _run(tmp_path, preset, sets):
    import json
    from pathlib import Path

    from click.testing import CliRunner

    from featlab.cli import main

    args = ["run", "pooling", "--preset", preset, "--out", str(tmp_path), "--quiet"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    path = Path(r.output.split("DONE: ")[1].splitlines()[0].strip())
    return path, json.loads((path / "summary.json").read_text())


@pytest.mark.slow
def test_pooling_tiny_end_to_end(tmp_path, one_thread):
    # shrunk from the tiny preset to keep CI fast: 2 epochs, so the cap ends both runs
    path, s = _run(tmp_path, "tiny", ["model.width=8", "train.epochs=2", "data.L=32", "data.xi=8",
                                      "model.depth=5", "nostride.depth=6", "data.P=48", "data.P_val=16",
                                      "data.P_test=64", "probe.n_images=48"])
    assert POOLING_KEYS <= set(s)
    assert s["stopped_stride"] == "cap" and s["hit_cap_stride"] and s["epochs_stride"] == 2
    arr = np.load(path / "arrays.npz")
    # with stride F = 2 the receptive field doubles per block; without, it grows slower
    assert np.allclose(arr["stride_A"], 2.0 ** np.arange(1, 6))
    assert np.all(np.diff(arr["nostride_A"]) > 0) and arr["nostride_A"][-1] < 8
    assert s["fit_blocks_stride"] == [1, 2] and s["fit_blocks_nostride"] == [1, 2, 3, 4, 5, 6]
    assert {"sensitivities.png", "training.png"} <= {p.name for p in (path / "figures").iterdir()}
    assert all(c.check(s)[0] != "n/a" for c in get("pooling").claims)


@pytest.mark.slow
def test_pooling_2d_end_to_end(tmp_path, one_thread):
    path, s = _run(tmp_path, "tiny2d", ["data.L=8", "data.xi=3", "data.gap=1", "data.P=48", "data.P_val=16",
                                        "data.P_test=48", "model.depth=3", "model.width=8", "train.epochs=2",
                                        "probe.n_images=32"])
    assert POOLING_KEYS <= set(s)
    arr = np.load(path / "arrays.npz")
    assert np.allclose(arr["stride_A"], [2, 4, 8])  # linear receptive-field size per block
    assert arr["stride_trained_D"].shape == (3,) and np.all(np.isfinite(arr["stride_trained_D"]))


def test_sensitivity_figure_draws_trained_ideal_asymptote_and_fit_range():
    from featlab.experiments.pooling import plot_sensitivities

    A = 2.0 ** np.arange(1, 6)
    mask = fit_mask(A, 16, 32)
    curves = {}
    for name, sl in (("stride", "all"), ("nostride", "none")):
        v = Variant(name, 2, 32, 16, 0, 5, sl)
        curves[name] = dict(A=A, mask=mask, spec=v, init={q: 1 / A for q in "DGR"},
                            trained={q: 3 / A ** 2 for q in "DGR"}, ideal={q: 2 / A for q in "DGR"})
    fig = plot_sensitivities(curves)
    ax = fig.axes[0]  # stride, D_k
    init, trained, ideal, asym = ax.get_lines()[1:5]  # after the A_k = ξ line
    assert np.allclose(trained.get_ydata(), 3 / A ** 2)
    assert np.allclose(ideal.get_xdata(), A[:-1])  # the A_k = L block of the ideal net is not drawn
    y, x = asym.get_ydata(), asym.get_xdata()
    assert np.log(y[-1] / y[0]) / np.log(x[-1] / x[0]) == pytest.approx(-1)  # stride asymptote
    assert x.min() == A[mask].min() and x.max() == A[mask].max()
    assert "trained -2.00" in ax.get_title() and "ideal -1.00" in ax.get_title()


def test_pooling_figures_have_no_clipped_or_colliding_labels():
    from featlab.experiments.pooling import plot_sensitivities, plot_track, plot_training
    from featlab.plotting import layout_problems

    curves, summary = {}, {}
    for name, sl, A in (("stride", "all", 2.0 ** np.arange(1, 8)), ("nostride", "none",
                                                                     block_receptive_fields(2, [1] * 12, 128))):
        v = Variant(name, 2 if name == "stride" else 1, 128, 32 if name == "stride" else 8, 0, len(A), sl)
        mask = fit_mask(A, v.xi, 128)
        log = [dict(epoch=e, train_loss=max(0.0, 1 - e / 40), val_error=max(0.0, 0.5 - e / 60))
               for e in range(0, 300, 10)]
        curves[name] = dict(A=A, mask=mask, spec=v, init={q: 0.5 / A ** 0.2 for q in "DGR"},
                            trained={q: 0.4 / A ** 1.2 for q in "DGR"}, ideal={q: 0.45 / A ** 1.3 for q in "DGR"},
                            log=log, first_zero=40, epochs=291, track=[(40, None)])
        summary.update({f"alpha_{name}": 1.2, f"alpha_{name}_ideal": 1.3, f"alpha_{name}_asymptotic": 1.0,
                        f"alpha_{name}_track": [[40, 1.1], [120, 1.15]], f"g_exponent_{name}": 0.5,
                        f"g_exponent_{name}_ideal": 0.6, f"g_exponent_{name}_asymptotic": 1.0,
                        f"g_exponent_{name}_track": [[40, 0.4], [120, 0.45]]})
    for fig in (plot_sensitivities(curves), plot_training(curves), plot_track(curves, summary)):
        assert layout_problems(fig) == []
