"""The ``cnfa`` experiment end to end through the real CLI, plus its claim check and figures."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from featlab.cli import main
from featlab.experiments.cnfa import _check_claim, plot_bars, tiny


@pytest.mark.slow
def test_cnfa_tiny_through_cli(tmp_path):
    # the tiny preset takes ~20 s on a loaded 2-core machine; shrink it further for CI
    sets = ["train.epochs=2", "train.probe_epochs=1", "probe.n_images=32", "data.n_train=200", "model.width=8"]
    args = ["run", "cnfa", "--preset", "tiny", "--out", str(tmp_path), "--quiet"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    (rd,) = (tmp_path / "cnfa").iterdir()
    assert (rd / "DONE").exists()
    s = json.loads((rd / "summary.json").read_text())
    layers = ["features.0", "features.2"]
    for k in ("cnfa_trained", "cnfa_init", "baseline_own_init", "baseline_fresh_init", "cnfa_centered"):
        assert sorted(s[k]) == layers
        assert all(-1 <= v <= 1 for v in s[k].values())
    assert abs(s["cnfa_trained_mean"] - np.mean(list(s["cnfa_trained"].values()))) < 1e-12
    assert s["metric"] == "pearson" and s["n_images"] == 32 and s["sketched"] is False
    figs = {p.name for p in (rd / "figures").glob("*.png")}
    assert figs == {"cnfa_bars.png", "cnfa_vs_epoch.png", "cnfm_agop_heatmaps.png", "eigvecs_first_layer.png",
                    "cnfa_vs_n_images.png"}
    assert list(s["cnfa_trained_vs_n_images"]) == ["16", "32"]
    assert abs(s["cnfa_trained_vs_n_images"]["32"] - s["cnfa_trained_mean"]) < 1e-12
    rows = [json.loads(ln) for ln in (rd / "metrics.jsonl").read_text().splitlines()]
    probe_epochs = sorted({r["epoch"] for r in rows if "rho_trained" in r})
    assert probe_epochs == [0, 1, 2]
    arrays = np.load(rd / "arrays.npz")
    assert arrays["cnfm/features.0"].shape == (9, 9) and arrays["agop/features.2"].shape == (72, 72)


def test_claim_check_is_honest():
    s = {"cnfa_trained": {"a": 0.9, "b": 0.8}, "baseline_own_init": {"a": 0.5, "b": 0.85},
         "baseline_fresh_init": {"a": 0.3, "b": 0.1}, "cnfa_trained_mean": 0.85, "baseline_own_init_mean": 0.675,
         "baseline_fresh_init_mean": 0.2, "cnfa_init_mean": 0.9, "metric": "pearson"}
    msg, ok = _check_claim(s)
    assert ok is True and "every layer above both: False" in msg
    msg, ok = _check_claim({**s, "cnfa_trained_mean": 0.6})
    assert ok is False
    assert _check_claim({})[1] is None


def test_bar_chart_plots_the_rows():
    rows = [{"layer": "c0", "rho_trained": 0.9, "rho_untrained": 0.8, "rho_init_trained": 0.5, "rho_fresh": 0.2},
            {"layer": "c1", "rho_trained": 0.7, "rho_untrained": None, "rho_init_trained": 0.4, "rho_fresh": 0.1}]
    fig = plot_bars(rows, "pearson")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights[:2] == [0.9, 0.7] and np.isnan(heights[3]) and heights[-2:] == [0.2, 0.1]
    assert "pearson" in ax.get_ylabel()
    assert tiny().model.depth == 2


def _fake_cifar10(root, n=8):
    import pickle

    d = root / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        b = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        (d / name).write_bytes(pickle.dumps(b, protocol=2))
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}, protocol=2))


@pytest.mark.slow
def test_cnfa_on_cifar10_from_a_local_path(tmp_path):
    """3-channel path (RGB eigenvector filters) on a CIFAR-10 directory written in the real format."""
    _fake_cifar10(tmp_path)
    args = ["run", "cnfa", "--preset", "tiny", "--out", str(tmp_path / "runs"), "--quiet"]
    for s in ["data.name=cifar10", f"data.root={tmp_path}", "train.epochs=1", "train.probe_epochs=1",
              "probe.n_images=8", "model.width=4", "model.depth=1", "train.batch_size=8"]:
        args += ["--set", s]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    (rd,) = (tmp_path / "runs" / "cnfa").iterdir()
    s = json.loads((rd / "summary.json").read_text())
    assert s["data"].startswith("cifar10") and list(s["cnfa_trained"]) == ["features.0"]
    assert np.load(rd / "arrays.npz")["cnfm/features.0"].shape == (27, 27)
