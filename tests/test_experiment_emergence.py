"""The emergence experiment: shared helpers, detector sign, same-seed pairing, divergence, CLI."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from featlab.config import ConfigError, apply_overrides, validate
from featlab.experiments._emergence_common import (DataConfig, build_task, long_range_detectors,
                                                   plot_accuracy, plot_ipr_curves, plot_receptive_fields)
from featlab.experiments.emergence import EXPERIMENT, EmergenceConfig, paper, tiny
from featlab.runs import RunFailed, execute


def _small(**over) -> EmergenceConfig:
    """tiny shrunk to ~1 s: L=16, T=30, small test set."""
    items = {"data.L": 16, "train.T": 30, "train.n_test": 500, "train.n_evals": 6, **over}
    return apply_overrides(tiny(), {k: v for k, v in items.items()})


def test_convention_detectors_vote_long_range_by_power():
    """A unit with v·b > 0 moves its vote towards y = −1 (class 1, long ξ) as Var(w·x) grows."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, generator=g, dtype=torch.float64)
    for b, v in [(1.0, 1.0), (-1.0, 1.0), (1.0, -0.5), (-1.0, -0.5)]:
        vote = [float((v * torch.erf((sd * z + b) / math.sqrt(2))).mean()) for sd in (0.2, 2.0)]
        detects_long = bool(long_range_detectors(np.array([b]), np.array([v]))[0])
        assert (vote[1] < vote[0]) == detects_long  # more power -> lower s -> class 1 (y = -1)
    assert long_range_detectors(np.array([[1.0, -1.0]]), np.ones((1, 2))).tolist() == [[True, False]]


def test_convention_task_class0_is_short_range():
    cfg = DataConfig(L=16, dim=1, xi=(1.0, 4.0), gain=3.0, T_ising=(3.0, 1.0))
    for kind in ("nlgp", "clone", "ising", "ising_clone"):
        x, c = build_task(cfg, kind).sample(4000, torch.Generator().manual_seed(1))
        assert x.shape == (4000, 16) and set(c.unique().tolist()) == {0, 1}
        nn = (x * x.roll(1, 1)).mean(1)                           # nearest-neighbour product
        assert nn[c == 0].mean() + 0.2 < nn[c == 1].mean()
        assert abs(c.double().mean().item() - 0.5) < 0.03


def test_configs_validate_and_reject_bad_values():
    validate(paper())
    validate(tiny())
    assert paper().data.dim == 2 and paper().data.L == 20 and paper().model.K == 8 and paper().train.T == 1e4
    with pytest.raises(ConfigError, match="xi"):
        validate(apply_overrides(tiny(), ["data.xi=1,2,3"]))
    with pytest.raises(ConfigError, match="model.mode"):
        apply_overrides(tiny(), ["model.mode=deep"])


@pytest.mark.slow
def test_same_seed_pairs_and_summary(tmp_path):
    res = execute(EXPERIMENT, _small(n_seeds=2), tmp_path, quiet=True)
    s = res.summary
    for k in ("ipr_nlgp", "ipr_clone", "ipr_baseline", "acc_nlgp", "acc_clone", "steps", "t_steps", "t_samples"):
        assert k in s
    assert s["ipr_baseline"] == pytest.approx(3 / 18) and s["steps"] == 30 * 16
    arr = res.rundir.read_arrays()
    tags = list(arr["run_tags"])
    assert tags == ["nlgp", "nlgp", "clone", "clone"] and list(arr["run_seeds"]) == [0, 1, 0, 1]
    np.testing.assert_array_equal(arr["W"][0, 0], arr["W"][0, 2])        # same seed: same initial weights
    assert not np.array_equal(arr["W"][0, 0], arr["W"][0, 1])            # other seed: other weights
    assert not np.array_equal(arr["W"][-1, 0], arr["W"][-1, 2])
    rows = res.rundir.read_metrics()
    assert len(rows) == 7 and rows[0]["t"] == 0 and rows[-1]["t_steps"] == pytest.approx(30)
    assert {"acc_nlgp", "mse_clone", "ipr_nlgp", "grad_norm_w_clone", "t_samples"} <= set(rows[-1])


def test_divergence_is_recorded(tmp_path):
    cfg = _small(**{"model.activation": "relu", "train.lr": 1e8, "model.bias": "fixed"})
    with pytest.raises(RunFailed) as e:
        execute(EXPERIMENT, cfg, tmp_path, quiet=True)
    assert e.value.reason == "diverged"


def test_figure_functions_plot_the_data():
    t = np.array([0.0, 0.1, 1.0, 10.0])
    iprs = {"nlgp": np.arange(8.0).reshape(4, 2), "clone": np.ones((4, 2))}
    fig = plot_ipr_curves(t, iprs, 0.1, detect={"nlgp": np.array([True, False]), "clone": np.array([True, True])})
    lines = fig.axes[0].get_lines()
    np.testing.assert_array_equal(lines[0].get_xdata(), t[1:])
    np.testing.assert_array_equal(lines[1].get_ydata(), iprs["nlgp"][1:, 1])
    fig = plot_accuracy(t, {"nlgp": np.array([0.5, 0.6, 0.7, 0.8])})
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(), [0.6, 0.7, 0.8])
    W = {"nlgp": np.random.default_rng(0).normal(size=(3, 16))}
    fig = plot_receptive_fields(W, 4, 2)
    np.testing.assert_array_equal(fig.axes[1].get_images()[0].get_array(), W["nlgp"][1].reshape(4, 4))


@pytest.mark.slow
def test_cli_tiny_end_to_end(tmp_path):
    """The full tiny preset through the real CLI (~10 s on 2 loaded cores): the spec's end-to-end
    acceptance check, ipr_nlgp > 2 ipr_clone, ipr_clone near 3/(D+2), comparable accuracies."""
    from featlab.cli import main

    r = CliRunner().invoke(main, ["run", "emergence", "--preset", "tiny", "--out", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    rd = next((tmp_path / "emergence").iterdir())
    assert (rd / "DONE").exists()
    s = json.loads((rd / "summary.json").read_text())
    assert {"ipr_nlgp", "ipr_clone", "ipr_baseline", "acc_nlgp", "acc_clone", "steps"} <= set(s)
    assert s["ipr_nlgp"] > 2 * s["ipr_clone"] and s["ipr_clone"] < 1.5 * s["ipr_baseline"]
    assert s["kurtosis_nlgp"] < s["kurtosis_clone"] - 0.1   # localised units see sub-Gaussian w·x
    assert min(s["acc_nlgp"], s["acc_clone"]) > 0.6 and abs(s["acc_nlgp"] - s["acc_clone"]) < 0.1
    assert all(c.check(s)[1] is not False for c in EXPERIMENT.claims[1:])
    figs = {p.name for p in (rd / "figures").iterdir()}
    assert {"receptive_fields.png", "ipr_vs_t.png", "accuracy_vs_t.png", "receptive_fields.pdf"} <= figs


def test_figures_label_the_clock_that_was_used(tmp_path):
    import json

    from click.testing import CliRunner

    from featlab.cli import main

    r = CliRunner().invoke(main, ["run", "emergence", "--preset", "tiny", "--out", str(tmp_path), "--quiet",
                                  "--set", "train.time_unit=samples", "--set", "train.bs=4",
                                  "--set", "train.T=20"])
    assert r.exit_code == 0, r.output
    caps = json.loads(next(tmp_path.rglob("captions.json")).read_text())
    assert "t = samples/D" in caps["ipr_vs_t"] and "steps/D" not in caps["ipr_vs_t"]
    assert "t = samples/D" in caps["accuracy_vs_t"]
