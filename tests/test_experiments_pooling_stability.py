"""End-to-end `pooling` and `stability` experiments through the real CLI (tiny presets, shrunk)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from featlab.cli import main
from featlab.experiments import get


@pytest.fixture
def one_thread():
    """Small convs are much faster single-threaded on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _run(tmp_path, name, sets):
    args = ["run", name, "--preset", "tiny", "--out", str(tmp_path), "--quiet"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "DONE: " in r.output
    path = Path(r.output.split("DONE: ")[1].splitlines()[0].strip())
    assert (path / "DONE").exists()
    return path, json.loads((path / "summary.json").read_text())


POOLING_KEYS = {"alpha_stride", "alpha_nostride", "g_exponent_stride", "g_exponent_nostride",
                "test_error_stride", "test_error_nostride", "r_exponent_stride", "r_exponent_nostride"}


@pytest.mark.slow
def test_pooling_tiny_end_to_end(tmp_path, one_thread):
    # shrunk from the tiny preset (L 64, depth 6, width 48, 30 epochs) to keep CI fast
    path, s = _run(tmp_path, "pooling", ["model.width=12", "train.epochs=2", "data.L=32", "data.xi=8",
                                         "model.depth=5", "data.P=48", "data.P_test=64",
                                         "probe.n_probe=48"])
    assert POOLING_KEYS <= set(s)
    for k in POOLING_KEYS:
        assert np.isfinite(s[k]), k
    arr = np.load(path / "arrays.npz")
    # with stride F = 2 the receptive field doubles per block; without, it grows slower
    assert np.allclose(arr["stride_A"], 2.0 ** np.arange(1, 6))
    assert np.all(np.diff(arr["nostride_A"]) > 0) and arr["nostride_A"][-1] < 8
    assert {"sensitivities.png", "training.png"} <= {p.name for p in (path / "figures").iterdir()}
    exp = get("pooling")
    assert all(c.check(s)[1] is not None for c in exp.claims)


def test_pooling_claim_checks_are_honest():
    exp = get("pooling")
    good = {"alpha_stride": 1.1, "alpha_nostride": 1.8, "g_exponent_stride": 0.9, "g_exponent_nostride": 0.5}
    bad = {"alpha_stride": 0.1, "alpha_nostride": 0.2, "g_exponent_stride": -0.3, "g_exponent_nostride": 0.5}
    assert [c.check(good)[1] for c in exp.claims] == [True, True]
    assert [c.check(bad)[1] for c in exp.claims] == [False, False]
    assert [c.check({})[1] for c in exp.claims] == [None, None]


@pytest.mark.cuda
@pytest.mark.slow
def test_pooling_and_stability_run_on_cuda(tmp_path):
    for name, sets in (("pooling", ["model.width=8", "train.epochs=1", "data.P=32", "data.P_test=32",
                                    "probe.n_probe=16"]),
                       ("stability", ["train.epochs=1", "probe.n_probe=16", "data.n_train=100"])):
        args = ["run", name, "--preset", "tiny", "--device", "cuda", "--out", str(tmp_path), "--quiet"]
        for s in sets:
            args += ["--set", s]
        r = CliRunner().invoke(main, args, catch_exceptions=False)
        assert r.exit_code == 0 and "DONE: " in r.output, r.output


def test_convention_scale_detection_generators_draw_on_their_device():
    """The local diffeo draws its shifts from the given generator: same seed, same output."""
    from featlab.data.scale_detection import local_diffeo_1d, render_1d

    x = render_1d(torch.tensor([[3, 9], [20, 30]]), 32)
    a = local_diffeo_1d(x, 8, torch.Generator().manual_seed(5))
    b = local_diffeo_1d(x, 8, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_sensitivity_figure_plots_the_measured_curves_and_rescaled_theory():
    from featlab.experiments.pooling import plot_sensitivities
    from featlab.theory.cnn_constant_filters import constant_filters

    A = 2.0 ** np.arange(1, 5)
    mk = {q: 1 / A for q in "DGR"}
    curves = {v: dict(A=A, init=mk, trained={q: 3 / A ** 2 for q in "DGR"}) for v in ("stride", "nostride")}
    g = torch.Generator().manual_seed(0)
    th = {"stride": constant_filters(2, 2, 4, 128, generator=g),  # all probes: D is exact
          "nostride": constant_filters(2, 1, 4, 128, n_probe=4, generator=g)}
    fig = plot_sensitivities(curves, th)
    ax = fig.axes[0]  # stride, D_k
    init, trained, theory = ax.get_lines()[:3]
    assert np.allclose(trained.get_xdata(), A) and np.allclose(trained.get_ydata(), 3 / A ** 2)
    assert theory.get_ydata()[0] == pytest.approx(trained.get_ydata()[0])  # rescaled to block 0
    # theory slope with stride is D ∝ A^-1 between the first blocks
    y = theory.get_ydata()
    assert np.log(y[2] / y[1]) / np.log(2) == pytest.approx(-1, abs=0.2)


@pytest.mark.slow
def test_pooling_2d_end_to_end(tmp_path, one_thread):
    path, s = _run(tmp_path, "pooling", ["data.dim=2", "data.L=8", "data.xi=3", "data.gap=1", "data.P=48",
                                         "data.P_test=48", "model.depth=3", "model.width=8",
                                         "train.epochs=2", "probe.n_probe=32"])
    assert POOLING_KEYS <= set(s)
    arr = np.load(path / "arrays.npz")
    assert np.allclose(arr["stride_A"], [2, 4, 8])  # linear receptive-field size per block
    assert arr["stride_trained_D"].shape == (3,) and np.all(np.isfinite(arr["stride_trained_D"]))


def test_sgd_hyper_reproduces_one_step_of_the_reference_objective():
    """lr·H/α̃ with decay 2·ridge/(H·nbl)·α̃ = a step LR·H on (1/α̃)·hinge + ridge·ΣW²/(H·nbl)."""
    import dataclasses

    import torch

    from featlab.experiments.pooling import PoolingConfig, sgd_hyper

    c = PoolingConfig()
    cfg = dataclasses.replace(c, model=dataclasses.replace(c.model, alpha=0.1, width=8, depth=3),
                              train=dataclasses.replace(c.train, ridge=0.05, lr=0.01))
    H, nbl, a, ridge, LR = 8, 3, 0.1, 0.05, 0.01
    torch.manual_seed(0)
    W0, x, y = torch.randn(4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64), torch.ones(6)

    def hinge(W):
        return torch.relu(1 - y * (x @ W)).mean()

    W = W0.clone().requires_grad_(True)
    ((hinge(W) / a) + ridge * (W ** 2).sum() / (H * nbl)).backward()
    ref = W0 - LR * H * W.grad
    lr, wd = sgd_hyper(cfg)
    V = torch.nn.Parameter(W0.clone())
    opt = torch.optim.SGD([V], lr=lr, weight_decay=wd)
    hinge(V).backward()
    opt.step()
    assert torch.allclose(V.detach(), ref, atol=1e-12)
