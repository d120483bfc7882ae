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


STABILITY_KEYS = {"a", "b", "rho", "R_layers_init", "R_layers_trained", "R_layers_shuffled"}


@pytest.mark.slow
def test_stability_tiny_end_to_end(tmp_path, one_thread):
    path, s = _run(tmp_path, "stability", ["train.epochs=2", "probe.n_probe=40", "data.n_train=300",
                                           "nets.layerwise=lenet"])
    assert STABILITY_KEYS <= set(s)
    assert s["n_points"] == 3 and np.isfinite(s["b"])
    assert set(s["R_layers_trained"]) == {"lenet"}
    assert len(s["R_layers_init"]["lenet"]) == len(s["R_layers_shuffled"]["lenet"]) > 3
    # shuffling input channels leaves the first conv (one input channel) unchanged
    assert s["R_layers_shuffled"]["lenet"][0] == pytest.approx(s["R_layers_trained"]["lenet"][0])
    figs = {p.name for p in (path / "figures").iterdir()}
    assert {"correlation.png", "layers.png", "spectra.png"} <= figs
    g0 = s["spectrum_lambda0_init"]["lenet"]
    assert len(g0) == 2 and all(0 <= v <= 1 for v in g0)  # two conv layers, normalised weights
    assert all(c.check(s)[1] is not None for c in get("stability").claims)


def test_power_law_fit_recovers_exponent():
    from featlab.experiments.stability import fit_power_law

    R = np.array([0.01, 0.1, 0.3, 1.0])
    a, b, rho = fit_power_law(R, 0.2 * R ** 0.5)
    assert a == pytest.approx(0.2) and b == pytest.approx(0.5) and rho == pytest.approx(1.0)


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


def test_stability_cifar_without_path_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(main, ["run", "stability", "--set", "data.dataset=cifar10", "--out", str(tmp_path),
                                  "--quiet"])
    assert r.exit_code != 0 and "data.path" in r.output


def test_stability_probes_carry_the_training_corruption(tmp_path, one_thread):
    """[I23] --corrupt_test 1: with corruption, D/G/R are measured on corrupted probes (default)."""
    sets = ["train.epochs=1", "probe.n_probe=30", "data.n_train=200", "nets.names=fc2",
            "nets.layerwise=", "data.corruption_stds=0,3"]
    rows = {}
    for flag in ("true", "false"):
        path, _ = _run(tmp_path / flag, "stability", sets + [f"probe.corrupt_probes={flag}"])
        rows[flag] = [json.loads(ln) for ln in (path / "metrics.jsonl").read_text().splitlines()]
    by = {f: {r["corruption"]: r for r in rs} for f, rs in rows.items()}
    # no corruption: identical either way; corruption 3: the init net sees different probes
    assert by["true"][0.0]["D_init"] == pytest.approx(by["false"][0.0]["D_init"], rel=1e-12)
    assert by["true"][3.0]["D_init"] != pytest.approx(by["false"][3.0]["D_init"], rel=1e-6)


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
