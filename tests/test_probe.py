"""`featlab probe` end to end, each lens against its library call, the fx fallback, bad inputs.

Cheap by construction: a two-conv CNN of width 4 on 32 digits (8×8).
"""
from __future__ import annotations

import hashlib
import json
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from featlab.cli import main
from featlab.config import ConfigError, apply_overrides, config_hash
from featlab.experiments import get
from featlab.experiments.probe import resolve
from featlab.probes import (
    LensSuite,
    agop,
    cnfa,
    ipr,
    laplacian_spectrum,
    linear_output_grams,
    nfa,
    shuffle_channels,
    stability,
)
from featlab.utils import make_generator

FACTORY = textwrap.dedent('''
    import torch
    from torch import nn

    def make_model(width=4):
        return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                             nn.Flatten(), nn.Linear(width * 64, 10))

    class DictNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 64, 10)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            return {"logits": self.fc(h.flatten(1)), "features": h}

    def make_dict():
        return DictNet()

    def broken():
        raise RuntimeError("no GPU here")

    def not_a_model():
        return 3
''')


def _cnn(width=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(width * 64, 10))


@pytest.fixture
def factory(tmp_path):
    p = tmp_path / "mynet.py"
    p.write_text(FACTORY)
    return p


def _checkpoints(tmp_path, n=2):
    """Checkpoints of a few SGD steps on digits: ckpt_0 (the init, step 0) and ckpt_<k>."""
    from featlab.data import load_digits

    d = load_digits()
    m = _cnn()
    opt = torch.optim.SGD(m.parameters(), lr=0.2)
    paths, g = [], torch.Generator().manual_seed(0)
    for k in range(n):
        p = tmp_path / f"ckpt_{k * 20}.pt"
        torch.save({"state_dict": m.state_dict(), "step": k * 20}, p)
        paths.append(p)
        for _ in range(20):
            i = torch.randint(0, len(d.y_train), (64,), generator=g)
            loss = nn.functional.cross_entropy(m(d.x_train[i]), d.y_train[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return paths, d


def _invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_cli_end_to_end_factory_two_checkpoints(tmp_path, factory):
    from featlab.report import build_report
    from featlab.runs import RunDir

    paths, _ = _checkpoints(tmp_path)
    out = tmp_path / "runs"
    r = _invoke("probe", f"{factory}:make_model", "-w", str(tmp_path / "ckpt_*.pt"), "--n-images", 32,
                "--batch-size", 16, "--set", "threads=1", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    (rd,) = [RunDir(p) for p in (out / "probe").iterdir() if p.is_dir()]
    assert rd.is_done()
    meta = rd.read_config()
    m = meta["config"]["model"]
    assert m["source"] == f"{factory}:make_model"
    assert m["weights"] == [str(p) for p in paths]  # the glob, expanded in natural order
    assert m["weights_sha256"] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert m["source_sha256"] == hashlib.sha256(factory.read_bytes()).hexdigest()
    s = rd.read_summary()
    assert s["n_checkpoints"] == 2 and s["steps"] == [0, 20] and s["step_axis"] == "step"
    assert s["init_kind"] == "true"  # the step-0 checkpoint is the init
    assert set(s["lenses"]) == {"rf", "nfa", "cnfa", "dgr", "spectrum"}
    assert s["series"]["cnfa_rho_mean"][-1] == pytest.approx(s["cnfa_rho_mean"])
    figs = {p.stem for p in rd.figure_paths()}
    assert {"rf_filters", "rf_ipr", "nfa", "cnfa", "dgr", "spectrum"} <= figs
    assert "lenses_vs_step" in figs and len(figs) == 7
    rows = rd.read_metrics()
    assert {r["step"] for r in rows} == {0, 20} and {r["lens"] for r in rows} >= {"cnfa", "dgr", "rf"}
    # the first-layer IPRs are the library's, on the loaded checkpoint
    arrays = rd.read_arrays()
    W = torch.load(paths[-1], weights_only=True)["state_dict"]["0.weight"].double()
    assert np.allclose(arrays["ckpt1/rf/ipr"], ipr(W.flatten(1)).numpy())
    # a page in the report, with the figures
    index = build_report(out, tmp_path / "report")
    page = (index.parent / "probe.html").read_text()
    assert "lenses_vs_step" in page and "data:image/png;base64" in page
    # featlab runs lists it
    r = _invoke("runs", out, "--format", "json")
    assert r.exit_code == 0 and json.loads(r.output)[0]["experiment"] == "probe"


def test_convention_weights_hash_is_part_of_the_run_hash(tmp_path, factory):
    paths, _ = _checkpoints(tmp_path, n=2)
    exp = get("probe")
    base = apply_overrides(exp.preset("default"), {"model.source": f"{factory}:make_model"})
    a = resolve(apply_overrides(base, {"model.weights": [str(paths[0])]}))
    b = resolve(apply_overrides(base, {"model.weights": [str(paths[1])]}))
    assert config_hash(a) != config_hash(b)  # different weights, different run
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes(paths[0].read_bytes())
    c = resolve(apply_overrides(base, {"model.weights": [str(moved)]}))
    assert config_hash(c) == config_hash(a)  # same bytes under another path: the same run
    assert resolve(a) == a  # idempotent
    pinned = apply_overrides(a, {"model.weights": [str(paths[1])]})
    with pytest.raises(ConfigError, match="model.weights_sha256"):
        resolve(pinned)


def _suite_model():
    from featlab.data import load_digits

    d = load_digits()
    return _cnn(seed=1), _cnn(seed=2), d.x_test[:24].clone(), d.y_test[:24].clone()


def test_each_lens_equals_its_library_call():
    model, init, X, y = _suite_model()
    gen = lambda s: make_generator(7, s)  # noqa: E731
    suite = LensSuite(model, X, y=y, init=init, batch_size=8, generator=gen)
    r = suite.measure(model)
    # rf: IPR of the flattened first-layer filters
    W = model[0].weight.detach().double()
    assert np.allclose(r["rf"]["ipr"], ipr(W.flatten(1)).numpy())
    assert r["rf"]["init"]["ipr_mean"] == pytest.approx(float(ipr(init[0].weight.detach().double().flatten(1)).mean()))
    # nfa: the library's nfa (AGOP of the layer input, eigh power) and the untrained net's
    assert r["nfa"]["5"]["rho"] == pytest.approx(nfa(model, "5", X, alpha=0.5)[0.5], abs=1e-9)
    assert r["nfa"]["5"]["rho_untrained"] == pytest.approx(nfa(init, "5", X, alpha=0.5)[0.5], abs=1e-9)
    # nfa nulls: featlab.probes.cnfa_nulls on (W, K, K₀) with the same Haar draws (its explicit d×d
    # eigh route against the lens's thin-SVD route)
    from featlab.probes import cnfa_nulls

    K = linear_output_grams(model, ["5"], X)[0]["5"]
    K0 = linear_output_grams(init, ["5"], X)[0]["5"]
    ref = cnfa_nulls(model[5].weight.detach().double(), K, K0, alpha=0.5, metrics=("pearson",), n_draws=20,
                     generator=gen("nfa-nulls-5"))["pearson"]
    assert r["nfa"]["5"]["null_init_K"] == pytest.approx(ref.init_K, abs=1e-8)
    assert r["nfa"]["5"]["null_random_eigvecs"] == pytest.approx(ref.random_eigvecs, abs=1e-8)
    # cnfa: the library's rows with the same init and null draws (same batches: float32 products)
    rows = {row.layer: row for row in cnfa(model, X, init_state=init, batch_size=8,
                                           null_generator=gen("cnfa-nulls"))}
    for name in ("0", "2"):
        assert r["cnfa"][name]["null_init_K"] == pytest.approx(rows[name].null_init_K, abs=1e-10)
        assert r["cnfa"][name]["null_random_eigvecs"] == pytest.approx(rows[name].null_random_eigvecs, abs=1e-10)
        assert r["cnfa"][name]["rho_trained"] == pytest.approx(rows[name].rho_trained, abs=1e-12)
        assert r["cnfa"][name]["rho_untrained"] == pytest.approx(rows[name].rho_untrained, abs=1e-12)
        assert r["cnfa"][name]["rho_init_trained"] == pytest.approx(rows[name].rho_init_trained, abs=1e-12)
    # dgr: stability with the same generator stream, on the blocks; shuffled and init alike
    names = ["0", "1", "2", "3", "5"]
    s = stability(model, X, layers=names, generator=gen("dgr"), batch_size=8)
    assert r["dgr"]["trained"]["output"]["R"] == pytest.approx(s["R"], rel=1e-10)
    assert r["dgr"]["trained"]["layers"]["2"]["D"] == pytest.approx(s["layers"]["2"]["D"], rel=1e-10)
    sh = stability(shuffle_channels(model, gen("shuffle")), X, layers=names, generator=gen("dgr"))
    assert r["dgr"]["shuffled"]["output"]["G"] == pytest.approx(sh["G"], rel=1e-10)
    s0 = stability(init, X, layers=names, generator=gen("dgr"))
    assert r["dgr"]["init"]["layers"]["3"]["R"] == pytest.approx(s0["layers"]["3"]["R"], rel=1e-10)
    # spectrum
    sp = laplacian_spectrum(model[2].weight, normalise=True)
    assert np.allclose(r["spectrum"]["2"]["gamma"], sp.gamma.numpy())
    assert r["spectrum"]["2"]["gamma0_init"] == pytest.approx(
        float(laplacian_spectrum(init[2].weight, normalise=True).gamma[0]))
    # accuracy on the probe labels
    assert r["accuracy"] == pytest.approx(float((model(X).argmax(1) == y).double().mean()))


def test_convention_linear_output_gram_gives_the_input_agop_and_subsampled_nfa_is_exact_on_its_block():
    from featlab.probes import correlation, matrix_power_psd
    from featlab.probes.lenses import _gram_power

    model, _, X, _ = _suite_model()
    model = model.double()
    X = X.double()
    Ks, c = linear_output_grams(model, ["5"], X, batch_size=10)
    W = model[5].weight.detach()
    G = agop(model, X, layer="5")
    assert c == 10
    assert torch.allclose(W.T @ Ks["5"] @ W, G, atol=1e-12 * float(G.abs().max()))
    # the coordinate-subset route equals the block of the full matrix power
    S = torch.randperm(W.shape[1], generator=torch.Generator().manual_seed(0))[:40].sort().values
    full = matrix_power_psd(G, 0.5)
    assert torch.allclose(_gram_power(W, Ks["5"], 0.5, S), full[S][:, S], atol=1e-9 * float(full.abs().max()))
    suite = LensSuite(model, X, lenses=["nfa"], settings=_with(nfa__max_dim=40),
                      generator=lambda s: make_generator(3, s))
    got = suite.measure(model)["nfa"]["5"]
    assert got["subsampled"] and got["n_coords"] == 40
    S = suite._coords("5", W.shape[1])
    assert got["rho"] == pytest.approx(correlation((W.T @ W)[S][:, S], full[S][:, S]), abs=1e-9)


def _with(**kw):
    from featlab.probes.lenses import LensSettings

    s = LensSettings()
    return apply_overrides(s, {k.replace("__", "."): v for k, v in kw.items()})


class ReusedReLU(nn.Module):
    """One ReLU module applied twice: hooks on ``relu`` see two calls."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 64, 10)

    def forward(self, x):
        h = self.relu(self.conv1(x))
        h = self.relu(self.conv2(h))
        return self.fc(h.flatten(1))


def test_reused_relu_falls_back_to_fx_nodes():
    torch.manual_seed(0)
    model = ReusedReLU()
    X = torch.rand(12, 1, 8, 8)
    with pytest.raises(ValueError, match="ran 2 times"):
        stability(model, X, layers=["relu"], generator=make_generator(0, "x"))
    gen = lambda s: make_generator(5, s)  # noqa: E731
    suite = LensSuite(model, X, lenses=["dgr"], generator=gen, settings=_with(dgr__shuffle=False))
    assert suite.plan.dgr_source == "fx"
    assert suite.plan.dgr_names["relu"] == ["relu", "relu_1"]
    r = suite.measure(model)["dgr"]["trained"]
    ref = stability(model, X, layers=["conv1", "conv2", "relu", "relu_1", "fc"], layer_source="fx",
                    generator=gen("dgr"), batch_size=64)
    for n in ("relu", "relu_1", "conv2"):
        assert r["layers"][n]["R"] == pytest.approx(ref["layers"][n]["R"], rel=1e-10)
    assert r["layers"]["relu"]["D"] != pytest.approx(r["layers"]["relu_1"]["D"])  # two calls, told apart
    # the same through the output selector: the fx trace returns the selected tensor, names unchanged
    dict_model = _DictOut(model)
    suite = LensSuite(dict_model, X, lenses=["dgr"], output="out.1", generator=gen,
                      settings=_with(dgr__shuffle=False))
    r2 = suite.measure(dict_model)["dgr"]["trained"]
    assert suite.plan.dgr_names["net.relu"] == ["net.relu", "net.relu_1"]
    assert r2["layers"]["net.relu_1"]["R"] == pytest.approx(r["layers"]["relu_1"]["R"], rel=1e-10)
    assert r2["output"]["R"] == pytest.approx(r["output"]["R"], rel=1e-10)


class _DictOut(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return {"out": (x.mean(), self.net(x))}


def test_output_selector_for_dict_models(tmp_path, factory):
    out = tmp_path / "runs"
    r = _invoke("probe", f"{factory}:make_dict", "--n-images", 16, "--lenses", "cnfa,dgr", "--out", out)
    assert r.exit_code == 2 and "model.output" in r.output and "'logits'" in r.output
    assert not out.exists()
    r = _invoke("probe", f"{factory}:make_dict", "--output", "logits", "--n-images", 16, "--lenses", "cnfa,dgr",
                "--set", "dgr.shuffle=false", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    from featlab.probes import output_selected, select_output
    net = __import__("featlab.models.source", fromlist=["build_model"]).build_model(f"{factory}:make_dict")
    with output_selected(net, "logits"):
        assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert select_output((torch.ones(1), {"a": torch.zeros(2)}), "1.a").shape == (2,)
    with pytest.raises(ValueError, match="output="):
        select_output({"a": torch.zeros(1)}, None)


@pytest.mark.parametrize("make, where", [
    (lambda f, t: ("probe", "nosuch/net.py:make_model"), "model.source: factory file not found"),
    (lambda f, t: ("probe", f"{f}:nothere"), "has no attribute 'nothere'"),
    (lambda f, t: ("probe", f"{f}:broken"), "raised RuntimeError: no GPU here"),
    (lambda f, t: ("probe", f"{f}:not_a_model"), "returned int, not a torch.nn.Module"),
    (lambda f, t: ("probe", "zoo:nonet"), "unknown zoo model"),
    (lambda f, t: ("probe", f"{f}:make_model", "-w", t / "missing_*.pt"), "no weights file matches"),
    (lambda f, t: ("probe", f"{f}:make_model", "-w", t / "garbage.pt"), "cannot read"),
    (lambda f, t: ("probe", f"{f}:make_model", "-w", t / "evil.pt"), "weights_only=True"),
    (lambda f, t: ("probe", f"{f}:make_model", "-w", t / "wide.pt"), "does not fit the model"),
    (lambda f, t: ("probe", f"{f}:make_model", "--kwarg", "width"), "model.kwargs"),
    (lambda f, t: ("probe", f"{f}:make_model", "--data", "npz", "--root", t / "none.npz"), "data.root"),
    (lambda f, t: ("probe", f"{f}:make_model", "--data", "folder", "--root", t / "empty"), "data.root: no .jpg"),
    (lambda f, t: ("probe", f"{f}:make_model", "--data", "folder", "--root", t / "garbage.pt"), "not a directory"),
])
def test_bad_models_and_weights_one_line_error_nothing_written(tmp_path, factory, make, where):
    (tmp_path / "garbage.pt").write_text("not a checkpoint")
    (tmp_path / "empty").mkdir()
    torch.save({"model": _Opaque()}, tmp_path / "evil.pt")  # needs pickle to load: refused
    torch.save(_cnn(width=6).state_dict(), tmp_path / "wide.pt")
    out = tmp_path / "runs"
    r = _invoke(*make(factory, tmp_path), "--out", out)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("featlab: error:") and where in lines[0], r.output
    assert not out.exists()


class _Opaque:
    pass


def test_convention_npz_inputs_scaled_channel_added_no_pickle_and_refusals(tmp_path):
    from featlab.data.npz import load_npz
    from featlab.probes.adapt import prepare_inputs

    x = np.random.default_rng(0).random((20, 12)).astype(np.float32)
    y = np.arange(20) % 3
    np.savez(tmp_path / "v.npz", x=x, y=y)
    X, Y = load_npz(tmp_path / "v.npz")
    assert X.shape == (20, 12) and Y.dtype == torch.int64
    np.savez(tmp_path / "img.npz", x=(x[:, :9].reshape(20, 3, 3) * 255).astype(np.uint8))
    Xi, Yi = load_npz(tmp_path / "img.npz")
    assert Xi.shape == (20, 1, 3, 3) and float(Xi.max()) <= 1.0 and Yi is None
    np.savez(tmp_path / "obj.npz", x=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="object arrays are refused"):
        load_npz(tmp_path / "obj.npz")
    mlp = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))
    with pytest.raises(TypeError, match="torch.from_numpy"):
        prepare_inputs(mlp, x)
    with pytest.raises(TypeError, match="float"):
        prepare_inputs(mlp, torch.zeros(2, 12, dtype=torch.uint8))
    assert prepare_inputs(mlp.double(), X).dtype == torch.float64  # cast to the model's dtype
    suite = LensSuite(mlp, X.double(), y=Y)
    assert suite.plan.lenses == ["rf", "nfa"]
    assert "inputs are not images" in suite.plan.skipped["dgr"]
    r = suite.measure(mlp)
    assert set(r["nfa"]) == {"0", "2"} and r["accuracy"] is not None


def test_convention_tracker_in_a_ten_step_loop_leaves_training_untouched(tmp_path):
    from featlab.data import load_digits
    from featlab.probes import Tracker
    from featlab.runs import RunDir

    d = load_digits()
    model = _cnn(seed=3)
    init_sd = {k: v.clone() for k, v in model.state_dict().items()}
    X, y = d.x_test[:16], d.y_test[:16]
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    tr = Tracker(model, X, y=y, every=5, out=tmp_path, name="loop", lenses=("rf", "cnfa", "dgr"),
                 settings={"dgr.shuffle": False})
    g = torch.Generator().manual_seed(0)
    measured = []
    for step in range(10):
        i = torch.randint(0, len(d.y_train), (32,), generator=g)
        loss = nn.functional.cross_entropy(model(d.x_train[i]), d.y_train[i])
        opt.zero_grad()
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        rng = torch.get_rng_state()
        h = tr.step(step)
        assert torch.equal(rng, torch.get_rng_state())  # the global RNG is untouched
        assert model.training and all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters()))
        if h is not None:
            measured.append(step)
        opt.step()
    s = tr.close(step=9)
    assert measured == [0, 5] and s["steps"] == [0, 5, 9] and s["init_kind"] == "true"
    rd = RunDir(tr.path)
    assert rd.is_done() and rd.read_config()["config"]["model"]["source"] == "live:Sequential"
    assert {r["step"] for r in rd.read_metrics()} == {0, 5, 9}
    assert "lenses_vs_step" in {p.stem for p in rd.figure_paths()}
    # the tracked CNFA is the library's, with the snapshot taken at construction as the init
    init = _cnn()
    init.load_state_dict(init_sd)
    rows = {r.layer: r for r in cnfa(model, X, init_state=init)}
    assert s["cnfa"]["2"]["rho_init_trained"] == pytest.approx(rows["2"].rho_init_trained, abs=1e-12)
    assert s["cnfa"]["2"]["rho_trained"] == pytest.approx(rows["2"].rho_trained, abs=1e-12)
    with pytest.raises(FileExistsError):
        Tracker(model, X, out=tmp_path, name="loop", lenses=("rf", "cnfa", "dgr"), settings={"dgr.shuffle": False})
    with pytest.raises(TypeError, match="torch.from_numpy"):
        Tracker(model, X.numpy(), out=tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with Tracker(model, X, out=tmp_path, name="crash", lenses=("rf",)) as t2:
            t2.step(0)
            raise RuntimeError("boom")
    assert RunDir(t2.path).status() == "failed"
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        Tracker(model, X, out=tmp_path, name="inf", lenses=("rf",)).step(0)


def test_sweep_over_models_and_checkpoints(tmp_path, factory):
    from featlab.runs import RunDir
    from featlab.sweep import expand, parse_spec, run_sweep

    paths, _ = _checkpoints(tmp_path, n=2)
    raw = {"experiment": "probe", "preset": "default",
           "set": {"data.n_images": 8, "lenses": ["rf"], "threads": 1},
           "zip": {"model.source": [f"{factory}:make_model", f"{factory}:make_model", "zoo:vanilla"],
                   "model.weights": [[str(paths[0])], [str(paths[1])], []],
                   "model.kwargs": [[], [], ["depth=2", "width=4"]]}}
    spec = parse_spec(raw)
    cfgs = expand(spec)
    assert len({config_hash(c) for c in cfgs}) == 3
    assert [c.model.weights_sha256 for c in cfgs[:2]] == [(hashlib.sha256(p.read_bytes()).hexdigest(),)
                                                          for p in paths]
    res = run_sweep(parse_spec({**raw, "zip": {k: v[1:] for k, v in raw["zip"].items()}}), tmp_path / "runs",
                    workers=1)
    assert res.ok and res.count("done") == 2
    s = [RunDir(r.path).read_summary() for r in res.rows]
    assert {x["model"] for x in s} == {f"{factory}:make_model", "zoo:vanilla"}


def test_convention_output_selector_is_a_dotted_path_of_keys_attributes_indices():
    from types import SimpleNamespace

    from featlab.probes import select_output

    t = torch.arange(3.0)
    out = {"a": (torch.zeros(1), SimpleNamespace(logits=t))}
    assert select_output(out, "a.1.logits") is t
    assert select_output((t, None), "0") is t and select_output((None, t), "-1") is t
    with pytest.raises(ValueError, match="not an index"):
        select_output((t,), "x")
    with pytest.raises(ValueError, match="not a tensor"):
        select_output({"a": 3}, "a")


def test_convention_automatic_layers_of_a_resnet_and_a_wrapper():
    from featlab.models import get
    from featlab.probes.layer_select import auto_layers, block_names, call_counts

    net = get("resnet18", in_channels=1, input_size=8)
    blocks = block_names(net)
    assert blocks == ["conv1", "bn1", "relu"] + [f"layer{i}.{j}" for i in range(1, 5) for j in (0, 1)] + \
        ["avgpool", "fc"]  # maxpool (Identity) and flatten left out
    counts = call_counts(net, torch.zeros(1, 1, 8, 8))
    assert len(auto_layers(net, "convs", counts)) == 20 and auto_layers(net, "linears", counts) == ["fc"]

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    assert block_names(Wrap()) == [f"net.{b}" for b in blocks]


def test_convention_factory_seeded_rng_untouched_and_checkpoint_steps(tmp_path, factory):
    from featlab.models.source import build_model, parse_kwargs, read_checkpoint

    rng = torch.get_rng_state()
    a = build_model(f"{factory}:make_model", {"width": 3}, seed=5)
    b = build_model(f"{factory}:make_model", {"width": 3}, seed=5)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert parse_kwargs(("w=3", "v=cifar", "b=false", "t=(1, 2)")) == {"w": 3, "v": "cifar", "b": False, "t": (1, 2)}
    sd = a.state_dict()
    torch.save({"model": sd, "global_step": 7, "epoch": 2}, tmp_path / "x_step=9.pt")
    ck = read_checkpoint(tmp_path / "x_step=9.pt")
    assert (ck.step, ck.epoch) == (7, 2)  # entries win over the name
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "epoch_4-step=120.pt")
    ck = read_checkpoint(tmp_path / "epoch_4-step=120.pt")
    assert (ck.step, ck.epoch) == (120, 4) and set(ck.state_dict) == set(sd)
    torch.save({"state_dict": {"model." + k: v for k, v in sd.items()}}, tmp_path / "lightning.ckpt")
    ck = read_checkpoint(tmp_path / "lightning.ckpt", prefix="model.")
    assert set(ck.state_dict) == set(sd) and ck.step is None and ck.name_number is None


def test_convention_not_measurable_is_none_never_nan():
    model, init, X, _ = _suite_model()
    with torch.no_grad():
        model[0].weight[0].zero_()  # a dead filter: IPR 0/0
        model[5].weight.zero_()  # a dead readout: every AGOP and Gram matrix is zero
    r = LensSuite(model, X, init=init, lenses=["rf", "nfa"]).measure(model)
    assert r["rf"]["ipr"][0] is None and r["rf"]["ipr_mean"] is not None
    assert r["nfa"]["5"]["rho"] is None and r["nfa"]["5"]["rho_init_trained"] is None


def test_lens_figures_have_no_layout_problems():
    from featlab.plotting import layout_problems
    from featlab.probes import lens_plots as lp

    model, init, X, y = _suite_model()
    suite = LensSuite(model, X, y=y, init=init, generator=lambda s: make_generator(7, s))
    a, b = suite.measure(model), suite.measure(init)
    keys = [("rho_trained", "trained", "r"), ("rho_untrained", "untrained", "0.5")]
    figs = {"rf_filters": lp.plot_rf_filters(a["rf"]["weights"], "first layer 0"), "rf_ipr": lp.plot_rf_ipr(a["rf"]),
            "cnfa": lp.plot_rho_bars(a["cnfa"], keys, "ρ"), "dgr": lp.plot_dgr(a["dgr"]),
            "spectrum": lp.plot_spectra(a["spectrum"]),
            "vs_step": lp.plot_lenses_vs_step([0, 10], [
                {"title": "CNFA", "curves": {n: [b["cnfa"][n]["rho_trained"], a["cnfa"][n]["rho_trained"]]
                                             for n in a["cnfa"]}, "baselines": {"untrained": 0.5, "x": [0.2, 0.3]},
                 "ylabel": "ρ"},
                {"title": "R", "curves": {"R_f": [1.0, 0.01]}, "baselines": {"R = 1": 1.0}, "log": True}])}
    for name, fig in figs.items():
        assert layout_problems(fig) == [], name


def test_cifar10_archive_and_zoo_defaults(tmp_path):
    import pickle

    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        b = {b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, 6).tolist()}
        (d / name).write_bytes(pickle.dumps(b, protocol=2))
    out = tmp_path / "runs"
    r = _invoke("probe", "zoo:lenet", "--data", "cifar10", "--root", tmp_path, "--n-images", 6, "--lenses",
                "rf,spectrum", "--set", "data.standardise=true", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    (rd,) = (out / "probe").iterdir()
    s = json.loads((rd / "summary.json").read_text())
    assert s["data"] == "cifar10:test" and s["n_images"] == 6 and s["rf_D"] == 3 * 5 * 5  # in_channels from the data
    assert s["accuracy"] is not None


def test_image_folder_with_imagenet_normalisation(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    out = tmp_path / "runs"
    args = ["probe", "zoo:lenet", "--data", "folder", "--root", tmp_path / "imgs", "--input-size", 32,
            "--n-images", 4, "--lenses", "rf", "--out", out, "--quiet"]
    r = _invoke(*args, "--set", "data.normalise=imagenet", "--set", "data.resize=36")
    assert r.exit_code == 0, r.output
    (rd,) = (out / "probe").iterdir()
    s = json.loads((rd / "summary.json").read_text())
    assert s["data"] == "folder:imgs" and s["n_images"] == 4 and s["rf_D"] == 3 * 25
    assert s["accuracy"] is None and "2 class sub-folders" in s["notes"]["labels"]  # not lenet's 10 classes
    r = _invoke("probe", "zoo:lenet", "--data", "digits", "--set", "data.normalise=imagenet", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "data.normalise" in r.output and not (tmp_path / "x").exists()


def test_convention_zoo_model_on_a_folder_takes_num_classes_from_its_weights(tmp_path):
    """A zoo net probed on an image folder gets ``num_classes`` from its first weights file
    (the rows of the last 2-D weight), not the default 10; an explicit kwarg still wins."""
    from PIL import Image

    from featlab.experiments.probe import classes_from_state_dict
    from featlab.models.source import build_model, parse_source

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    net = build_model(parse_source("zoo:lenet"), {"in_channels": 3, "num_classes": 2, "input_size": 32}, seed=0)
    assert classes_from_state_dict(net.state_dict()) == 2
    assert classes_from_state_dict({"conv.weight": torch.zeros(4, 3, 5, 5)}) is None
    torch.save(net.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "runs"
    r = _invoke("probe", "zoo:lenet", "-w", tmp_path / "w.pt", "--data", "folder", "--root", tmp_path / "imgs",
                "--input-size", 32, "--n-images", 4, "--lenses", "rf", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    (rd,) = (out / "probe").iterdir()
    cfg = json.loads((rd / "config.json").read_text())["config"]
    assert "num_classes=2" in cfg["model"]["kwargs"]
    s = json.loads((rd / "summary.json").read_text())
    assert s["accuracy"] is not None  # 2 folder classes = the model's 2 outputs: labels kept
