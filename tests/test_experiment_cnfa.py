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
    for k in ("cnfa_trained", "cnfa_untrained", "baseline_ival", "baseline_own_init", "init_vs_fresh", "null_init_K",
              "null_random_eigvecs", "cnfa_centered", "null_centered_init_K", "null_centered_random_eigvecs"):
        assert sorted(s[k]) == layers
        assert all(-1 <= v <= 1 for v in s[k].values())
        for m in ("pearson", "cosine", "pearson_offdiag"):
            assert sorted(s["variants"][m][k]) == layers
    for mk, base in (("margin_ival", "baseline_ival"), ("margin_null_init_K", "null_init_K"),
                     ("margin_null_random_eigvecs", "null_random_eigvecs")):
        for L in layers:
            assert abs(s[mk][L] - (s["cnfa_trained"][L] - s[base][L])) < 1e-12
    assert s["cnfa_margin_min"] == min(s[mk][L] for mk in ("margin_ival", "margin_null_init_K",
                                                          "margin_null_random_eigvecs") for L in layers)
    assert s["untrained_source"] == "init" and s["pretrained"] is False
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


def _rows(trained, ival, k0, rnd):
    from featlab.probes._cnfa import QUANTITIES, CNFARow

    rows = []
    for L in trained:
        q = dict.fromkeys(QUANTITIES)
        q.update(rho_trained=trained[L], rho_fresh_trained=ival[L], null_init_K=k0[L], null_random_eigvecs=rnd[L])
        rows.append(CNFARow(layer=L, rho_trained=trained[L], rho_init_trained=None, rho_untrained=None, rho_fresh=None,
                            rho_fresh_trained=ival[L], rho_centered=None, metric="pearson", alpha=1.0, n_images=4,
                            sketched=False, null_init_K=k0[L], null_random_eigvecs=rnd[L],
                            variants={m: dict(q) for m in ("pearson", "cosine", "pearson_offdiag")}))
    return rows


def test_claim_is_judged_per_layer_against_ival_and_both_nulls():
    from featlab.experiments.cnfa import _claim_value, summarise

    tr = {"a": 0.9, "b": 0.8}
    ok_s = {**summarise(_rows(tr, {"a": 0.3, "b": 0.1}, {"a": 0.85, "b": 0.7}, {"a": 0.6, "b": 0.5}), "pearson"),
            "alpha": 1.0}
    msg, ok = _check_claim(ok_s)
    assert ok is True and abs(_claim_value(ok_s) - 0.05) < 1e-12 and "K₀ +0.050" in msg and "b: ρ 0.800" in msg
    # above i_val (the reference's comparison) but below the init-K null in one layer: does not hold
    bad = {**summarise(_rows(tr, {"a": 0.3, "b": 0.1}, {"a": 0.95, "b": 0.7}, {"a": 0.6, "b": 0.5}), "pearson"),
           "alpha": 1.0}
    msg, ok = _check_claim(bad)
    assert ok is False and abs(_claim_value(bad) + 0.05) < 1e-12 and "i_val +0.600" in msg
    assert _check_claim({**ok_s, "alpha": 0.5}) == ("not measured at α = 1", None)
    no_ival = {**summarise(_rows(tr, {"a": None, "b": None}, {"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}),
                           "pearson"), "alpha": 1.0}
    assert _check_claim(no_ival)[1] is None and _claim_value(no_ival) is None


def test_bar_chart_plots_the_rows():
    rows = [{"layer": "c0", "rho_trained": 0.9, "rho_untrained": 0.8, "rho_fresh_trained": 0.2, "rho_init_trained": None,
             "null_init_K": 0.85, "null_random_eigvecs": 0.6},
            {"layer": "c1", "rho_trained": 0.7, "rho_untrained": None, "rho_fresh_trained": 0.1,
             "rho_init_trained": None, "null_init_K": 0.75, "null_random_eigvecs": 0.5}]
    fig = plot_bars(rows, "pearson")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    # five series drawn (own init is None everywhere: left out), two layers each
    assert len(heights) == 10 and heights[:2] == [0.9, 0.7] and np.isnan(heights[3]) and heights[-2:] == [0.6, 0.5]
    assert [t.get_text() for t in ax.get_legend().get_texts()][2].startswith("i_val")
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
    for s in ["data.dataset=cifar10", f"data.root={tmp_path}", "train.epochs=1", "train.probe_epochs=1",
              "probe.n_images=8", "model.width=4", "model.depth=1", "train.batch_size=8"]:
        args += ["--set", s]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    (rd,) = (tmp_path / "runs" / "cnfa").iterdir()
    s = json.loads((rd / "summary.json").read_text())
    assert s["data"].startswith("cifar10") and list(s["cnfa_trained"]) == ["features.0"]
    assert np.load(rd / "arrays.npz")["cnfm/features.0"].shape == (27, 27)


def test_renamed_and_bad_fields_exit_2_before_anything_is_written(tmp_path):
    out = tmp_path / "runs"
    cases = [(["data.name=cifar10"], "data.dataset"),
             (["data.dataset=folder", f"data.root={tmp_path}"], "model.weights"),
             (["data.dataset=cifar10", f"data.root={tmp_path / 'nowhere'}"], "data.root"),
             (["model.weights=/no/such/file.pt"], "model.weights"),
             (["model.arch=vgg11"], "model.arch")]  # VGG cannot take 8×8 digits
    for sets, field in cases:
        args = ["run", "cnfa", "--preset", "tiny", "--out", str(out), "--quiet"]
        for s in sets:
            args += ["--set", s]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and field in r.output, (sets, r.output)
    import torch

    from featlab.models import get

    w = tmp_path / "w.pt"
    torch.save(get("vanilla", in_channels=1, input_size=8, depth=2, width=8).state_dict(), w)
    args = ["run", "cnfa", "--preset", "tiny", "--out", str(out), "--quiet", "--set", f"model.weights={w}"]
    r = CliRunner().invoke(main, args)  # tiny's width 16 does not fit the width-8 weights
    assert r.exit_code == 2 and "model.weights" in r.output and "size mismatch" in r.output
    assert not out.exists()


def _image_folder(root, n_per_class=2, size=(40, 48)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("n01440764", "n01443537"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / cls / f"v{i}.JPEG")


@pytest.mark.slow
def test_imagenet_protocol_on_a_generated_folder_and_weights_file(tmp_path):
    """The reference protocol offline: a resnet18 (torchvision layout) with a user weights file (weights_only),
    a folder of JPEGs in the ImageNet-val layout, the reference layer selection and image count."""
    import torch

    from featlab.models import get

    pytest.importorskip("PIL")
    _image_folder(tmp_path / "val")
    w = tmp_path / "resnet18.pth"
    torch.save(get("resnet18", variant="imagenet", num_classes=5).state_dict(), w)
    args = ["run", "cnfa", "--preset", "imagenet", "--out", str(tmp_path / "runs"), "--quiet"]
    for s in ["model.arch=resnet18", f"model.weights={w}", f"data.root={tmp_path / 'val'}", "data.image_size=32",
              "data.resize=36", "probe.n_null_draws=2", "probe.save_max_dim=64"]:
        args += ["--set", s]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    (rd,) = (tmp_path / "runs" / "cnfa").iterdir()
    s = json.loads((rd / "summary.json").read_text())
    layers = [f"layer{i}.{j}.conv1" for i in range(1, 5) for j in range(2)]
    assert s["layers"] == layers and sorted(s["cnfa_trained"]) == sorted(layers)
    assert s["pretrained"] and s["untrained_source"] == "fresh" and s["n_images"] == 4  # min(11, 4 images)
    assert all(v is None for v in s["baseline_own_init"].values())
    assert all(-1 <= s["baseline_ival"][L] <= 1 and -1 <= s["null_init_K"][L] <= 1 for L in layers)
    assert s["cnfa_margin_min"] is not None and s["folder_acc"] is not None and s["test_acc"] is None
    cfg = json.loads((rd / "config.json").read_text())
    assert any("reference_image_count" in q for q in cfg["reference_quirks"]), cfg.get("reference_quirks")
    figs = {p.name for p in (rd / "figures").glob("*.png")}
    assert "cnfa_bars.png" in figs and "cnfm_agop_heatmaps.png" not in figs  # no layer with c_in·q² ≤ 64
    assert "cnfa_vs_epoch.png" not in figs


@pytest.mark.slow
def test_pretrained_weights_on_cifar10_from_a_local_path(tmp_path):
    """CIFAR-10 archive + your own weights: no training, the weights' test accuracy is reported."""
    import torch

    from featlab.models import get

    _fake_cifar10(tmp_path)
    w = tmp_path / "vanilla.pt"
    torch.save({"state_dict": get("vanilla", depth=1, width=4).state_dict()}, w)  # a wrapped state dict
    args = ["run", "cnfa", "--out", str(tmp_path / "runs"), "--quiet"]
    for s in ["data.dataset=cifar10", f"data.root={tmp_path}", f"model.weights={w}", "model.depth=1", "model.width=4",
              "probe.n_images=6", "probe.n_null_draws=2"]:
        args += ["--set", s]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    (rd,) = (tmp_path / "runs" / "cnfa").iterdir()
    s = json.loads((rd / "summary.json").read_text())
    assert s["pretrained"] and s["epochs_run"] == 0 and 0 <= s["test_acc"] <= 1 and s["n_images"] == 6
    assert list(s["cnfa_trained"]) == ["features.0"] and s["untrained_source"] == "fresh"


def test_cnfa_figures_have_colour_bars_and_clean_tick_labels():
    import numpy as np

    from featlab.experiments.cnfa import plot_eigvecs, plot_heatmaps, plot_vs_n
    from featlab.plotting import layout_problems

    rng = np.random.default_rng(0)
    A = rng.standard_normal((9, 9))
    M = A @ A.T
    fig = plot_eigvecs({"CNFM": M, "AGOP": M + np.eye(9)}, (1, 3, 3), 4)
    assert sum(a.get_label() == "<colorbar>" for a in fig.axes) == 1 and layout_problems(fig) == []
    fig = plot_heatmaps({"features.0": {"cnfm": M, "agop": M}})
    assert sum(a.get_label() == "<colorbar>" for a in fig.axes) == 1
    curve = {"features.0": [(16, 0.9), (64, 0.91), (256, 0.92), (1024, 0.93), (1300, 0.93)]}
    fig = plot_vs_n(curve, "pearson")
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["16", "64", "256", "", "1300"]  # one tick per n; 1024 unlabelled next to 1300
    assert layout_problems(fig) == []
