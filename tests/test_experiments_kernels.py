"""End-to-end: the rfm and convrfm experiments' tiny presets through the real CLI."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import featlab.cli
from featlab.experiments.rfm import subspace_overlap


def _run(tmp_path, name, *sets):
    args = ["run", name, "--preset", "tiny", "--out", str(tmp_path), "--quiet"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(featlab.cli.main, args)
    assert r.exit_code == 0, r.output
    (rd,) = (tmp_path / name).iterdir()
    assert (rd / "DONE").exists()
    return rd, json.loads((rd / "summary.json").read_text())


def test_convention_subspace_overlap():
    U = torch.eye(4, dtype=torch.float64)[:, :1]
    assert subspace_overlap(torch.diag(torch.tensor([3.0, 1, 1, 1])), U) == pytest.approx(1.0)
    assert subspace_overlap(torch.diag(torch.tensor([1.0, 3, 1, 1])), U) == pytest.approx(0.0)


@pytest.mark.slow
def test_rfm_experiment_tiny(tmp_path):
    rd, s = _run(tmp_path, "rfm", "task.n_train=400", "task.n_test=200", "rfm.n_iter=2")
    for k in ("test_mse_rfm", "test_mse_krr", "subspace_overlap", "overlap_per_iter"):
        assert k in s
    assert s["subspace_overlap"] > 0.9 and s["test_mse_rfm"] < s["test_mse_krr"]
    assert {p.name for p in (rd / "figures").iterdir()} >= {"rfm_iterations.png", "rfm_M.png"}


@pytest.mark.slow
def test_convrfm_experiment_tiny_shrunk(tmp_path):
    # the tiny preset takes ~40 s on a loaded 2-core machine; this shrinks it further via --set
    rd, s = _run(tmp_path, "convrfm", "data.tasks=row_signal,digits", "data.n_train=60", "data.n_test=60",
                 "convrfm.n_iter=1", "deep.n_iter=1", "deep.depth=1", "cnn.epochs=2", "cnn.width=8")
    for task in ("row_signal", "digits"):
        for m in ("fixed", "convrfm", "deep_convrfm", "cnn"):
            assert 0.0 <= s[f"acc_{m}_{task}"] <= 1.0
            assert s["table"][task][m] == s[f"acc_{m}_{task}"]
        assert s[f"test_reads_during_fit_deep_convrfm_{task}"] == 0  # clean protocol
    figs = {p.name for p in (rd / "figures").iterdir()}
    assert {"accuracy_table.png", "accuracy_vs_iteration.png", "filters_row_signal.png",
            "edges_digits.png"} <= figs


@pytest.mark.parametrize("name", ["rfm", "convrfm"])
def test_presets_validate(name):
    from featlab.config import validate
    from featlab.experiments import get

    exp = get(name)
    for preset in exp.presets:
        validate(exp.preset(preset))
