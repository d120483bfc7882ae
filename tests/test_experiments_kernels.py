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
