"""The `stability` experiment ([N21] ε vs R_f; [I23] layer-wise and shuffled), its data and fit."""
from __future__ import annotations

import io
import json
import math
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from featlab.cli import main
from featlab.config import ConfigError, apply_overrides, validate
from featlab.experiments import get
from featlab.experiments.stability import (
    StabilityConfig,
    _second_half_log_ratio,
    bootstrap_fit,
    fit_power_law,
    layers_of,
)


def _run(tmp_path, sets, preset="tiny"):
    args = ["run", "stability", "--preset", preset, "--out", str(tmp_path), "--quiet"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    path = Path(r.output.split("DONE: ")[1].splitlines()[0].strip())
    raw = (path / "summary.json").read_text()

    def no_nan(c):
        raise AssertionError(f"non-finite number {c} in summary.json")

    return path, json.loads(raw, parse_constant=no_nan)


# ---------------------------------------------------------------------------------------------- data
def test_convention_photo_crops_come_from_disjoint_tiles_and_are_standardised(one_thread):
    from featlab.data.images import sample_photo
    from featlab.data.photos import PHOTOS, photo_crops

    tr, te = photo_crops(103, 41, 16, generator=torch.Generator().manual_seed(0))
    K = len(PHOTOS)
    counts = torch.bincount(tr.y, minlength=K)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 103  # balanced
    assert torch.bincount(te.y, minlength=K).sum() == 41
    for k in range(K):
        a, b = set(tr.tile[tr.y == k].tolist()), set(te.tile[te.y == k].tolist())
        assert not a & b  # train and test tiles of one photo never coincide
        # and no train crop overlaps a test crop (both lie inside their 32×32 tiles)
        ca, cb = tr.corner[tr.y == k], te.corner[te.y == k]
        if len(ca) and len(cb):
            dr = (ca[:, None, 0] - cb[None, :, 0]).abs()
            dc = (ca[:, None, 1] - cb[None, :, 1]).abs()
            assert not bool(((dr < 16) & (dc < 16)).any())
    # oracle: the crop is the photo's pixels at its corner, standardised on its own
    i = 7
    pic = sample_photo(PHOTOS[int(tr.y[i])])[0]
    r, c = tr.corner[i].tolist()
    raw = pic[r:r + 16, c:c + 16].double()
    ref = (raw - raw.mean()) / raw.std(unbiased=False)
    assert torch.allclose(tr.x[i, 0].double(), ref, atol=1e-5)
    assert torch.allclose(tr.x.flatten(1).pow(2).sum(1), torch.full((103,), 256.0), rtol=1e-4)  # ‖x‖² = size²
    assert int(tr.tile[i]) == (r // 32) * (pic.shape[1] // 32) + c // 32  # tile = 2·size, row-major


def test_photo_crops_reject_flat_crops_and_bad_arguments():
    from featlab.data.photos import photo_crops

    tr, _ = photo_crops(40, 10, 16, normalise="none", min_std=0.05, generator=torch.Generator().manual_seed(1))
    assert float(tr.x.flatten(1).std(1, unbiased=False).min()) >= 0.05
    assert 0 <= float(tr.x.min()) and float(tr.x.max()) <= 1
    for kw in (dict(size=0), dict(tile=8), dict(test_fraction=1.0), dict(normalise="x"), dict(images=("moon",))):
        with pytest.raises(ValueError):
            photo_crops(10, 10, **({"size": 16} | kw))


def test_photo_task_is_not_a_low_dimensional_image_set_like_upsampled_digits(one_thread):
    """Data validity: diffeos move upsampled digits inside their top-64 PCA subspace, photos not."""
    from featlab.data.images import load_digits
    from featlab.data.photos import load_photos
    from featlab.diffeo import deform, sample_displacement, typical_temperature

    def inside(X):
        X = X.flatten(1).double()
        V = torch.linalg.svd(X - X.mean(0), full_matrices=False).Vh[:64]  # (64, 1024)
        x = X[:300].view(-1, 1, 32, 32).float()
        d = sample_displacement(300, 32, typical_temperature(1.0, 3, 32), 3, torch.Generator().manual_seed(0))
        dx = (deform(x, d, "linear") - x).flatten(1).double()
        return float((dx @ V.T).pow(2).sum() / dx.pow(2).sum())

    photos = load_photos(1000, 10, generator=torch.Generator().manual_seed(0)).x_train
    dg = load_digits(generator=torch.Generator().manual_seed(0)).x_train
    digits = torch.nn.functional.interpolate(dg, size=(32, 32), mode="bilinear", align_corners=False)
    # white noise puts 64/1024 = 6% there; measured: photos 0.19, digits 0.77
    assert inside(photos) < 0.35 < 0.6 < inside(digits)


# ---------------------------------------------------------------------------------------------- models
def test_convention_no_padding_or_identity_module_is_a_layer():
    from featlab.models import zoo

    m28 = zoo.get("vgg11_bn", in_channels=1, input_size=28)
    assert isinstance(m28.features[0], nn.ZeroPad2d)  # the reference's MNIST pad 28 -> 32
    lay = layers_of(m28)
    assert "features.0" not in lay and lay[0] == "features.1"
    last = len(m28.features) - 1
    assert isinstance(m28.features[last], nn.AvgPool2d) and f"features.{last}" not in lay  # identity pool
    for name in ("vgg11", "alexnet"):  # a 1-channel 32×32 input is not padded
        m = zoo.get(name, in_channels=1, input_size=32)
        assert not any(isinstance(u, nn.ZeroPad2d) for u in m.modules())
    assert zoo.get("alexnet", in_channels=1, input_size=28).features[0].padding == (2, 2, 2, 2)
    assert layers_of(zoo.get("lenet", in_channels=1, input_size=32))[:3] == ["conv1", "relu1", "pool1"]


def test_convention_layer_groups_and_probe_batches_do_not_change_the_sensitivities(monkeypatch):
    """BN batch mode splits the layers over calls, eval mode batches the probes: same numbers."""
    import featlab.experiments.stability as st
    from featlab.utils import make_generator

    class Ctx:
        def generator(self, stream, device="cpu"):
            return make_generator(0, stream, device)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3)).double()
    X = torch.randn(20, 1, 8, 8, dtype=torch.float64)
    cfg = StabilityConfig()
    lay = layers_of(net)
    ref = {m: st._stab(net, X, cfg, Ctx(), "s", lay, m) for m in ("batch", "eval")}
    monkeypatch.setattr(st, "_MAX_FLOATS", 3 * 20 * 300)  # a few layers per group / 1 probe per batch
    for m in ("batch", "eval"):
        got = st._stab(net, X, cfg, Ctx(), "s", lay, m)
        assert list(got["layers"]) == lay
        for n in lay + [None]:
            a, b = (got, ref[m]) if n is None else (got["layers"][n], ref[m]["layers"][n])
            assert a["D"] == pytest.approx(b["D"], rel=1e-10) and a["G"] == pytest.approx(b["G"], rel=1e-10)
    assert ref["batch"]["layers"]["1"]["D"] != pytest.approx(ref["eval"]["layers"]["1"]["D"], rel=1e-6)


# ---------------------------------------------------------------------------------------------- training
def test_convention_warmup_ramps_the_lr_per_step_then_follows_the_schedule():
    from featlab.data import ImageData
    from featlab.train.classifier import fit_classifier, lr_factor, warmup_factor

    assert warmup_factor(0, 0) == 1.0 and warmup_factor(3, 4) == 1.0 and warmup_factor(0, 4) == 0.25
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 4, 4, generator=g), torch.arange(32) % 2
    data = ImageData(x, y, x, y, ("a", "b"), "toy")
    seen = []
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"]))
    try:
        h = fit_classifier(net, data, lr=0.1, epochs=4, batch_size=8, warmup_epochs=2, progress=False)
    finally:
        handle.remove()
    n_b = 4
    want = [0.1 * lr_factor("cosine", t // n_b, 4) * min(1, (t + 1) / (2 * n_b)) for t in range(16)]
    assert seen == pytest.approx(want, rel=1e-12)
    assert h.lr == pytest.approx([want[n_b * e + n_b - 1] for e in range(4)])
    with pytest.raises(ValueError, match="warmup_epochs"):
        fit_classifier(net, data, epochs=2, warmup_epochs=3, progress=False)


def test_convention_crop_without_flip_draws_the_same_offsets():
    from featlab.train.classifier import crop_flip

    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    assert torch.equal(crop_flip(x, 0, torch.Generator().manual_seed(0), flip=False), x)
    a = crop_flip(x, 2, torch.Generator().manual_seed(3), flip=True)
    b = crop_flip(x, 2, torch.Generator().manual_seed(3), flip=False)
    for i in range(2):  # each image is the same crop, mirrored or not
        assert torch.equal(a[i], b[i]) or torch.equal(a[i], b[i].flip(-1))


# ---------------------------------------------------------------------------------------------- fit
def test_power_law_fit_recovers_exponent_and_says_none_when_undefined():
    R = np.array([0.01, 0.1, 0.3, 1.0])
    a, b, rho = fit_power_law(R, 0.2 * R ** 0.5)
    assert a == pytest.approx(0.2) and b == pytest.approx(0.5) and rho == pytest.approx(1.0)
    assert fit_power_law([0.3], [0.1]) == (None, None, None)
    assert fit_power_law([0.3, 0.3], [0.1, 0.2]) == (None, None, None)
    assert fit_power_law([0.1, 0.3], [0.2, 0.2])[2] is None  # no spread of ε: ρ undefined


def test_bootstrap_interval_resamples_nets_and_covers_the_true_exponent():
    rng = np.random.default_rng(0)
    nets = np.repeat(np.arange(8), 2)
    R = np.repeat(np.geomspace(0.01, 3, 8), 2) * np.exp(0.05 * rng.standard_normal(16))
    eps = 0.2 * R ** 0.5 * np.exp(0.1 * rng.standard_normal(16))
    out = bootstrap_fit(R, eps, nets, 400, np.random.default_rng(1))
    lo, hi = out["b_interval"]
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert out["rho_interval"][0] > 0.8
    exact = bootstrap_fit(R, 0.2 * R ** 0.5, nets, 200, np.random.default_rng(2))
    assert exact["b_interval"] == pytest.approx([0.5, 0.5])  # a perfect power law: no spread
    assert bootstrap_fit(R[:4], eps[:4], nets[:4], 200, np.random.default_rng(3))["b_interval"] is None
    pts = bootstrap_fit(R, eps, nets, 200, np.random.default_rng(4), by="points")
    assert pts["by"] == "points" and pts["b_interval"][0] < 0.5 < pts["b_interval"][1]


def test_second_half_shuffle_statistic():
    assert _second_half_log_ratio([1, 1, 2, 4], [1, 1, 1, 1]) == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert _second_half_log_ratio([1, 1, None, 0.5], [1, 1, 1, 1]) == pytest.approx(math.log(0.5))
    assert _second_half_log_ratio([1, None], [1, None]) is None


def test_claim_checks_are_honest():
    exp = get("stability")
    sign, half, drop, shuf, spec = exp.claims
    good = {"b": 0.45, "rho": 0.8, "b_interval": [0.3, 0.6], "rho_interval": [0.5, 0.95], "n_points": 14,
            "n_nets_in_fit": 7, "R_ratio_median": 0.3, "shuffle_log_ratio_median": {"lenet": 0.4, "vgg11_bn": 0.1},
            "spectrum_lambda0_init": {"lenet": [0.1]}, "spectrum_lambda0_trained": {"lenet": [0.3]}}
    assert [c.check(good)[1] for c in exp.claims] == [True, True, True, True, True]
    assert sign.value(good) == 0.45 and shuf.value(good) == 0.1 and drop.value(good) == 0.3
    wide = good | {"b_interval": [-0.1, 0.9]}  # b's interval reaches 0: the sign is not established
    assert sign.check(wide)[1] is False
    # ... and b ≈ 0.5 is then inconclusive, not a pass (the full paper preset gave b = 0.33 in
    # [-1.03, 1.23]: an interval that admits b <= 0 cannot confirm 0.5)
    assert half.check(wide)[1] is None and "inconclusive" in half.check(wide)[0]
    assert half.check(good | {"b": 0.33, "b_interval": [-1.03, 1.23]})[1] is None
    assert half.check(good | {"b": 0.9, "b_interval": [-1.0, 2.0]})[1] is False  # too far from 0.5: fails
    small = good | {"b": 0.2, "b_interval": [0.1, 0.3]}  # positive but not ≈ 0.5
    assert sign.check(small)[1] is True and half.check(small)[1] is False
    assert shuf.check(good | {"shuffle_log_ratio_median": {"lenet": 0.4, "alexnet": -0.2}})[1] is False
    assert [c.check({})[1] for c in exp.claims] == [None] * 5
    assert all(c.reference for c in exp.claims[:4])


def test_figures_have_no_colliding_or_clipped_labels():
    from featlab.experiments.stability import plot_correlation, plot_layers, plot_spectra, plot_training
    from featlab.plotting import layout_problems

    rng = np.random.default_rng(0)
    nets = ["fc2", "fc4", "lenet", "vanilla", "alexnet", "vgg11_bn", "resnet18"]
    rows = [dict(net=n, seed=s, test_error=float(0.15 + 0.05 * i + 0.01 * s), D=float(0.05 + 0.01 * i),
                 G=float(0.1 + 0.05 * i), R=float(0.3 + 0.1 * i), included=i > 1) for i, n in enumerate(nets)
            for s in range(2)]
    s = {"a": 0.5, "b": 0.4, "rho": 0.7, "rho_D": 0.2, "rho_G": -0.3}
    lay = [f"features.{i}" for i in range(28)]
    lw = {"vgg11_bn": {"layers": lay, "labels": [f"{n} conv" for n in lay],
                       **{f"{q}_{w}": list(rng.uniform(0.85, 0.95, 28)) for q in "DGR"
                          for w in ("init", "trained", "shuffled")}}}
    lam, mult = np.array([0.0, 1, 2, 3, 4, 6]), np.array([1, 2, 1, 2, 2, 1])
    spectra = {"lenet": {w: {"conv1": (lam, rng.uniform(0.1, 0.3, 6), mult)} for w in ("init", "trained")}}
    curves = {n: [list(rng.uniform(0.2, 0.9, 12))] * 2 for n in nets}
    figs = (plot_correlation(rows, s, 0.45, 0.9), plot_layers(lw), plot_spectra(spectra),
            plot_training(curves, 0.9, 0.45))
    for fig in figs:
        assert layout_problems(fig) == []
    legend = [t.get_text() for t in figs[0].legends[0].get_texts()]
    assert "fc2" not in legend and "lenet" in legend and "left out" in legend  # no colour for a net never fitted
    assert "R_k = 1" in " ".join(t.get_text() for t in figs[1].legends[0].get_texts())  # the baseline is named


# ---------------------------------------------------------------------------------------------- config
def test_config_renamed_path_and_missing_cifar_archive_are_config_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATLAB_DATA", raising=False)
    c = StabilityConfig()
    with pytest.raises(ConfigError, match="data.path: renamed: use data.root"):
        apply_overrides(c, ["data.path=/x"])
    with pytest.raises(ConfigError, match="data.root: .*FEATLAB_DATA"):
        validate(apply_overrides(c, ["data.dataset=cifar10"]))
    monkeypatch.setenv("FEATLAB_DATA", str(tmp_path))  # honoured, but holds no archive
    with pytest.raises(ConfigError, match="data.root: CIFAR-10 not found"):
        validate(apply_overrides(c, ["data.dataset=cifar10"]))
    with pytest.raises(ConfigError, match="data.input_size"):
        validate(apply_overrides(c, ["data.dataset=cifar10", "data.input_size=16"]))
    with pytest.raises(ConfigError, match="probe.n_images: at most the test set size 497"):
        validate(apply_overrides(c, ["data.dataset=digits"]))  # 500 probes, 497 test digits
    with pytest.raises(ConfigError, match="nets.layerwise: .*allowed"):
        validate(apply_overrides(c, ["nets.layerwise=vgg11bn"]))  # a typo is not silently skipped
    out = tmp_path / "runs"
    r = CliRunner().invoke(main, ["run", "stability", "--set", "data.dataset=cifar10", "--out", str(out), "--quiet"])
    assert r.exit_code == 2 and "data.root" in r.output and not out.exists()


def _write_cifar10(root: Path, n: int = 12) -> None:
    rng = np.random.default_rng(0)
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            d = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"labels": (np.arange(n) % 10).tolist()}
            raw = pickle.dumps(d, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_cifar10_from_featlab_data_at_32(tmp_path, monkeypatch, one_thread):
    _write_cifar10(tmp_path)
    monkeypatch.setenv("FEATLAB_DATA", str(tmp_path))
    path, s = _run(tmp_path / "runs", ["data.dataset=cifar10", "nets.names=fc2", "nets.layerwise=", "n_seeds=1",
                                       "probe.n_images=10", "train.epochs=1"])
    arr = np.load(path / "arrays.npz")
    assert s["n_runs"] == 1 and list(arr["net"]) == ["fc2"]
    assert "3, 32, 32" in (path / "log.txt").read_text()  # (C, H, W) of the probes: native size


def test_paper_cifar10_preset_is_the_reference_recipe_and_validates_with_the_archive(tmp_path, monkeypatch):
    _write_cifar10(tmp_path)
    monkeypatch.setenv("FEATLAB_DATA", str(tmp_path))
    c = get("stability").preset("paper_cifar10")
    validate(c)  # the archive under FEATLAB_DATA is found; 500 probes of 10000 test images
    assert c.data.dataset == "cifar10" and c.data.sizes() == (32, 50000, 10000)
    assert c.data.corruption_stds == (0.0, 1e-2, 1e-1, 1.0, 10.0, 30.0, 100.0) and c.n_seeds == 4
    t = c.train
    assert (t.epochs, t.bn_epochs, t.batch_size, t.cnn_lr, t.bn_lr, t.fc_lr, t.warmup_epochs, t.momentum,
            t.weight_decay, t.augment) == (250, None, 128, 0.1, 0.1, 0.1, 0, 0.9, 5e-4, "auto")
    assert c.probe.n_images == 500 and c.probe.delta == 1.0 and c.probe.cut == 3 and c.probe.corrupt_probes
    assert set(c.nets.layerwise) == {"lenet", "alexnet", "vgg11", "vgg11_bn"} <= set(c.nets.names)
    # one field takes any preset to CIFAR-10, at 32×32 (no resize in tiny)
    assert validate(apply_overrides(get("stability").preset("tiny"), ["data.dataset=cifar10"])).data.sizes()[0] == 32


# ---------------------------------------------------------------------------------------------- runs
def test_a_diverging_net_is_left_out_and_the_others_go_on(tmp_path, one_thread, monkeypatch):
    import featlab.train
    from featlab.models import LeNet
    from featlab.runs import DivergenceError
    from featlab.train.classifier import fit_classifier

    def fit(model, data, **kw):  # LeNet diverges in its first epoch, as the no-pool CNN did at lr 0.05
        if isinstance(model, LeNet):
            raise DivergenceError("training loss became non-finite (nan) in epoch 1")
        return fit_classifier(model, data, **kw)

    monkeypatch.setattr(featlab.train, "fit_classifier", fit)
    path, s = _run(tmp_path, ["nets.names=lenet,fc2", "nets.layerwise=lenet", "train.epochs=1", "data.n_train=64",
                              "data.n_test=40", "probe.n_images=20", "n_seeds=1"])
    ex = s["excluded"]
    assert ex["lenet@0#s0"].startswith("diverged")
    assert "fc2@0#s0" in ex and "chance error" in ex["fc2@0#s0"]  # one epoch: not trained, left out
    assert s["b"] is None and s["n_points"] == 0 and s["test_error"]["lenet"] == [None]
    rows = [json.loads(ln) for ln in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["net"] for r in rows] == ["lenet", "fc2"] and rows[0]["R"] is None and rows[1]["R"] is not None
    assert s["R_layers_trained"] == {}  # a diverged net has no trained layers to report


def test_a_dead_net_is_left_out_without_crashing_the_fit(tmp_path, one_thread, monkeypatch):
    """A net whose output is constant (D = G = 0, R = 0/0) is left out; fit, figures and summary go on."""
    import featlab.train
    from featlab.models import LeNet
    from featlab.train.classifier import fit_classifier

    def fit(model, data, **kw):
        h = fit_classifier(model, data, **kw)
        if isinstance(model, LeNet):  # dead after training: every weight and bias 0
            with torch.no_grad():
                for p in model.parameters():
                    p.zero_()
        return h

    monkeypatch.setattr(featlab.train, "fit_classifier", fit)
    path, s = _run(tmp_path, ["nets.names=lenet,fc2", "nets.layerwise=lenet", "train.epochs=1", "data.n_train=64",
                              "data.n_test=40", "probe.n_images=20", "n_seeds=2", "fit.max_error=1"])
    rows = [json.loads(ln) for ln in (path / "metrics.jsonl").read_text().splitlines()]
    dead = [r for r in rows if r["net"] == "lenet"]
    assert len(dead) == 2 and all(r["D"] == 0 and r["G"] == 0 and r["R"] is None and not r["included"] for r in dead)
    assert all(s["excluded"][f"lenet@0#s{i}"] for i in range(2))
    assert s["R_layers_trained"]["lenet"] == [None] * len(s["layer_names"]["lenet"])  # 0/0 per layer: None
    assert s["shuffle_log_ratio_median"]["lenet"] is None
    assert (path / "figures" / "layers.png").exists() and (path / "figures" / "correlation.png").exists()


def test_stability_probes_carry_the_training_corruption(tmp_path, one_thread):
    """[I23] --corrupt_test 1: with corruption, D/G/R are measured on corrupted probes (default)."""
    sets = ["train.epochs=1", "probe.n_images=30", "data.n_train=100", "data.n_test=40", "nets.names=fc2",
            "nets.layerwise=", "data.corruption_stds=0,3", "n_seeds=1"]
    rows = {}
    for flag in ("true", "false"):
        path, _ = _run(tmp_path / flag, sets + [f"probe.corrupt_probes={flag}"])
        rows[flag] = [json.loads(ln) for ln in (path / "metrics.jsonl").read_text().splitlines()]
    by = {f: {r["corruption"]: r for r in rs} for f, rs in rows.items()}
    assert by["true"][0.0]["D_init"] == pytest.approx(by["false"][0.0]["D_init"], rel=1e-12)
    assert by["true"][3.0]["D_init"] != pytest.approx(by["false"][3.0]["D_init"], rel=1e-6)


STABILITY_KEYS = {"a", "b", "rho", "b_interval", "rho_interval", "n_points", "excluded", "test_error",
                  "test_error_median", "test_error_spread", "R_f", "R_f_init", "R_layers_init", "R_layers_trained",
                  "R_layers_shuffled", "shuffle_log_ratio_median", "layer_names"}


@pytest.mark.slow
def test_stability_tiny_end_to_end(tmp_path, one_thread):
    # the tiny preset (8 epochs, 600 crops) shrunk to keep CI fast; fc2 cannot train in 3 epochs
    path, s = _run(tmp_path, ["train.epochs=3", "data.n_train=300", "data.n_test=100", "probe.n_images=60",
                              "fit.max_error=1"])
    assert STABILITY_KEYS <= set(s)
    assert s["n_runs"] == 6 and s["n_points"] == 6 - len(s["excluded"])  # 3 nets × 2 seeds
    assert all(len(v) == 2 for v in s["test_error"].values())
    lay = s["layer_names"]["lenet"]
    assert len(s["R_layers_init"]["lenet"]) == len(s["R_layers_shuffled"]["lenet"]) == len(lay) == 11
    # shuffling input channels leaves the first conv (one input channel) unchanged
    assert s["R_layers_shuffled"]["lenet"][0] == pytest.approx(s["R_layers_trained"]["lenet"][0])
    figs = {p.name for p in (path / "figures").iterdir()}
    assert {"correlation.png", "layers.png", "spectra.png", "training.png"} <= figs
    caps = json.loads((path / "figures" / "captions.json").read_text())
    assert "left out" in caps["correlation"] and "seed 0" in caps["spectra"]
    g0 = s["spectrum_lambda0_init"]["lenet"]
    assert len(g0) == 2 and all(0 <= v <= 1 for v in g0)  # two conv layers, normalised weights
    if s["n_nets_in_fit"] >= 3:
        assert s["b_interval"][0] <= s["b"] <= s["b_interval"][1]
