"""End-to-end: the rfm and convrfm experiments' tiny presets through the real CLI."""
from __future__ import annotations

import json

import numpy as np
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
                 "convrfm.n_iter=1", "deep.n_iter=1", "deep.depth=1", "cnn.epochs=2", "cnn.width=8",
                 "cnn.min_steps=12", "n_seeds=2")
    for task in ("row_signal", "digits"):
        for m in ("cntk", "laplace", "convrfm", "deep_convrfm", "cnn"):
            v = s[f"acc_{m}_{task}"]
            assert len(v) == 2 and all(0.0 <= a <= 1.0 for a in v)
            assert s["table"][task][m] == s[f"acc_{m}_{task}_median"] == sorted(v)[0] / 2 + sorted(v)[1] / 2
            assert s[f"acc_{m}_{task}_spread"] == [min(v), max(v)]
        g = s[f"gain_deep_convrfm_over_cntk_{task}"]
        assert g == [a - b for a, b in zip(s[f"acc_deep_convrfm_{task}"], s[f"acc_cntk_{task}"])]
        assert s[f"test_reads_during_fit_deep_convrfm_{task}"] == 0  # clean protocol
        assert s[f"cnn_steps_{task}"] >= 12 and len(s[f"cnn_train_loss_{task}"]) == 2
    assert s["claim_local_min_gain"] == min(s["gain_convrfm_over_cntk_row_signal_median"],
                                            s["gain_deep_convrfm_over_cntk_row_signal_median"])
    figs = {p.name for p in (rd / "figures").iterdir()}
    assert {"accuracy_table.png", "accuracy_vs_iteration.png", "filters_row_signal.png",
            "edges_digits.png"} <= figs
    # the filters drawn are the last iterate M_T (saved beside the selected M), and the caption says so
    assert all(len(v) == 2 and v[0] in (0, 1) for v in s["convrfm_selected_iter"].values())
    arrays = np.load(rd / "arrays.npz")
    assert {"M_digits", "M_last_digits"} <= set(arrays.files)
    assert not np.allclose(arrays["M_last_digits"], np.eye(9))  # one M update was done
    caps = json.loads((rd / "figures" / "captions.json").read_text())
    t_sel = s["convrfm_selected_iter"]["digits"][0]
    assert "last iteration t = 1" in caps["filters_digits"] and f"selected t = {t_sel}" in caps["filters_digits"]


def test_convrfm_claims_need_three_seeds_and_use_the_stated_thresholds():
    from featlab.experiments.convrfm import _check_local, _check_sizable, _claim_numbers

    def summary(deep, cntk, conv, n_seeds=3, tasks=("row_signal", "digits")):
        s = {"n_seeds": n_seeds, "tasks": list(tasks)}
        for t in tasks:
            s[f"acc_cntk_{t}_median"], s[f"acc_deep_convrfm_{t}_median"] = cntk[t], deep[t]
            s[f"gain_deep_convrfm_over_cntk_{t}_median"] = deep[t] - cntk[t]
            s[f"gain_convrfm_over_cntk_{t}_median"] = conv[t] - cntk[t]
        return {**s, **_claim_numbers(s)}

    s = summary({"row_signal": 0.80, "digits": 0.92}, {"row_signal": 0.70, "digits": 0.90},
                {"row_signal": 0.72, "digits": 0.90})
    assert abs(s["claim_local_min_gain"] - 0.02) < 1e-12 and _check_local(s)[1] is True
    assert abs(s["claim_sizable_gain"] - 0.06) < 1e-12 and _check_sizable(s)[1] is True
    # +3 points on average is not sizable, unless the errors drop by >= 20 %
    s = summary({"row_signal": 0.53, "digits": 0.53}, {"row_signal": 0.50, "digits": 0.50},
                {"row_signal": 0.49, "digits": 0.5})
    assert _check_sizable(s)[1] is False and _check_local(s)[1] is False
    s = summary({"row_signal": 0.97, "digits": 0.97}, {"row_signal": 0.95, "digits": 0.95},
                {"row_signal": 0.96, "digits": 0.96})
    assert abs(s["claim_sizable_rel_err_reduction"] - 0.4) < 1e-9 and _check_sizable(s)[1] is True
    one = summary({"row_signal": 0.9, "digits": 0.9}, {"row_signal": 0.5, "digits": 0.5},
                  {"row_signal": 0.9, "digits": 0.9}, n_seeds=1)
    assert _check_local(one)[1] is None and _check_sizable(one)[1] is None


def test_fit_cntk_selects_the_ridge_on_validation_and_reads_the_test_set_once():
    from featlab.data import row_signal
    from featlab.experiments.convrfm import _split, fit_cntk
    from featlab.kernels import cntk

    g = torch.Generator().manual_seed(0)
    X, y = row_signal(60, sigma=1.0, generator=g, dtype=torch.float64)
    Xt, yt = row_signal(40, sigma=1.0, generator=g, dtype=torch.float64)
    regs = (1e-8, 1e-3, 1.0)
    r = fit_cntk(X, y, Xt, yt, patch_size=3, depth=2, reg_grid=regs, padding=True, dtype="float64",
                 generator=torch.Generator().manual_seed(5))
    tr, va = _split(y, 0.1, torch.Generator().manual_seed(5))
    K = cntk(X[tr], X[tr], patch_size=3, depth=2, padding=True)
    kmax = K.max()
    Y = torch.nn.functional.one_hot(y[tr], 2).double()
    accs, alphas = [], []
    for reg in regs:
        a = torch.linalg.solve(K / kmax + reg * torch.eye(len(tr), dtype=torch.float64), Y)
        alphas.append(a)
        accs.append(float(((cntk(X[va], X[tr], patch_size=3, depth=2, padding=True) / kmax @ a).argmax(1)
                           == y[va]).double().mean()))
    j = max(range(3), key=lambda i: (accs[i], -i))
    pred = (cntk(Xt, X[tr], patch_size=3, depth=2, padding=True) / kmax @ alphas[j]).argmax(1)
    assert r["reg"] == regs[j] and abs(r["val_acc"] - accs[j]) < 1e-12
    assert abs(r["test_acc"] - float((pred == yt).double().mean())) < 1e-12


@pytest.mark.parametrize("name", ["rfm", "convrfm"])
def test_presets_validate(name):
    from featlab.config import validate
    from featlab.experiments import get

    exp = get(name)
    for preset in exp.presets:
        validate(exp.preset(preset))


def test_convrfm_iteration_figure_marks_the_selected_iteration_without_overlaps():
    from featlab.experiments.convrfm import figure_curves
    from featlab.plotting import layout_problems

    curves = {"row_signal": [0.86, 0.86, 0.9, 0.9], "digits": [1.0, 1.0, 1.0, 1.0]}
    fig = figure_curves(curves, {"row_signal": 2, "digits": 0})
    fig.canvas.draw()
    a = fig.axes[0]
    assert [float(t) for t in a.get_xticks()] == [0.0, 1.0, 2.0, 3.0]
    rings = [ln for ln in a.get_lines() if ln.get_linestyle() == "None"]
    assert [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in rings] == [(2, 0.9), (0, 1.0)]
    assert a.get_legend() is not None and layout_problems(fig) == []
