"""emergence-gain, -cnn, -ising, -theory: helpers, claims, config checks, and the tiny presets
end to end through the real CLI (slow)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import featlab.cli
from featlab.config import ConfigError, apply_overrides, validate
from featlab.experiments import get


def _run(tmp_path: Path, name: str, *sets: str) -> dict:
    args = ["run", name, "--preset", "tiny", "--out", str(tmp_path), "--quiet"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(featlab.cli.main, args)
    assert r.exit_code == 0, r.output
    assert "DONE" in r.output
    rd = next((tmp_path / name).iterdir())
    assert (rd / "DONE").exists()
    return {"summary": json.loads((rd / "summary.json").read_text()),
            "figures": {p.name for p in (rd / "figures").glob("*.png")}, "dir": rd}


def test_aligned_overlap_and_align():
    from featlab.experiments.emergence_theory import _align, _aligned_overlap

    L = 20
    i = np.arange(L)
    bump = np.exp(-((i - 3) ** 2) / 4.0)
    assert abs(_aligned_overlap(bump, np.roll(bump, 7)) - 1) < 1e-12  # alignment removes the shift
    assert abs(_aligned_overlap(bump, -np.roll(bump, 7)) - 1) < 1e-12  # and the sign
    assert np.dot(bump, np.roll(bump, 7)) / np.dot(bump, bump) < 0.1  # control: unaligned overlap is small
    a = _align(-np.roll(bump, 15))
    assert np.argmax(a) == L // 2 and a.max() > 0


def test_cnn_align_centres_rows_across_the_boundary():
    from featlab.experiments.emergence_cnn import _align, _embed

    L = 16
    i = np.arange(L)
    rows = np.stack([np.exp(-((i - p) ** 2) / 2.0) for p in (0, 5)])  # the first straddles the boundary
    rows[0] = np.roll(np.exp(-((i - 8) ** 2) / 2.0), -8)
    al = _align(rows)
    assert (np.argmax(al, axis=1) == L // 2).all()
    assert _embed(np.ones((2, 3)), 8).shape == (2, 8)


def test_claim_checks_on_synthetic_summaries():
    theory = get("emergence-theory").claims
    ok = {"ipr_ode_nlgp": 0.3, "ipr_ode_gaussian": 0.025, "ipr_baseline": 0.07, "ipr_sim_nlgp": 0.28,
          "overlap_ode_sim_nlgp": 0.95, "zeig_ipr_nlgp_quadrature": 0.2, "zeig_ipr_clone_samples": 0.08,
          "zeig_overlap_rf_nlgp_quadrature": 0.9}
    assert all(c.check(ok)[1] is True for c in theory)
    bad = dict(ok, ipr_ode_nlgp=0.03, overlap_ode_sim_nlgp=0.2, zeig_ipr_nlgp_quadrature=0.05)
    assert all(c.check(bad)[1] is False for c in theory)
    # like with like: the exact case (Gaussian ODE vs SGD on the clone) must agree too
    exact = dict(ok, ipr_ode_gaussian=0.031, ipr_sim_clone=0.042, overlap_ode_sim_clone=0.95)
    assert theory[1].check(exact)[1] is True and theory[1].value(exact) == pytest.approx(0.02 / 0.3)
    assert theory[1].check(dict(exact, ipr_sim_clone=0.06))[1] is False         # clone SGD 94% off the ODE
    assert theory[1].check(dict(exact, overlap_ode_sim_clone=0.5))[1] is False
    gain = get("emergence-gain").claims
    s = {"ipr_nlgp_max_gain": 0.2, "ipr_clone_max_gain": 0.05, "ipr_baseline": 0.07, "max_gain": 10.0,
         "gain_threshold": 2.0, "ipr_elliptical": 0.05}
    assert [c.check(s)[1] for c in gain] == [True, True]
    assert [c.check(dict(s, ipr_clone_max_gain=0.2, ipr_elliptical=0.3))[1] for c in gain] == [False, False]
    assert get("emergence-cnn").claims[0].check({"width_ratio": float("nan"), "n_localised_fc": 0})[1] is None
    assert get("emergence-ising").claims[0].check({"ipr_ising_1d": 0.2, "ipr_clone_1d": 0.05,
                                                   "ipr_baseline_1d": 0.07})[1] is True
    two_d = {"ipr_ising_2d": 0.02, "ipr_clone_2d": 0.02, "ipr_baseline_2d": 0.045}
    chk = get("emergence-ising").claims[0].check
    assert chk(dict(two_d, n_localised_any_ising_2d=2, n_localised_any_clone_2d=0))[1] is True
    assert chk(dict(two_d, n_localised_any_ising_2d=2, n_localised_any_clone_2d=1))[1] is False


def test_config_checks_name_the_field():
    with pytest.raises(ConfigError) as e:
        validate(apply_overrides(get("emergence-cnn").preset("tiny"), ["data.dim=2"]))
    assert e.value.field == "data.dim"
    with pytest.raises(ConfigError) as e:
        validate(apply_overrides(get("emergence-cnn").preset("tiny"), ["cnn.k=12"]))
    assert e.value.field == "cnn.k"
    with pytest.raises(ConfigError) as e:
        validate(apply_overrides(get("emergence-ising").preset("tiny"), ["dims=3"]))
    assert e.value.field == "dims"
    with pytest.raises(ConfigError):
        validate(apply_overrides(get("emergence-gain").preset("tiny"), ["gains=3"]))
    # an indefinite latent kernel is refused before the run, naming the field that causes it
    with pytest.raises(ConfigError) as e:
        validate(apply_overrides(get("emergence-gain").preset("paper"), ["phase_ratios=1.5,8"]))
    assert e.value.field == "phase_ratios" and "xi=8" in str(e.value)
    with pytest.raises(ConfigError) as e:
        validate(apply_overrides(get("emergence-cnn").preset("tiny"), ["data.L=12"]))
    assert e.value.field == "data.xi" and "L=12" in str(e.value)
    with pytest.raises(ConfigError) as e:
        validate(apply_overrides(get("emergence-theory").preset("tiny"), ["data.L=16"]))
    assert e.value.field == "data.xi" and "L=16" in str(e.value)
    validate(apply_overrides(get("emergence-theory").preset("tiny"), ["data.L=16", "data.psd=clip"]))   # the opt-in
    validate(apply_overrides(get("emergence-ising").preset("tiny"), ["data.L=8"]))   # Ising ignores data.xi


def test_theory_claims_are_not_applicable_to_heavy_tailed_data():
    claims = get("emergence-theory").claims
    s = {"marginal": "kur", "ipr_ode_kur": 0.04, "ipr_sim_kur": 0.045, "overlap_ode_sim_kur": 0.98,
         "ipr_ode_gaussian": 0.04, "ipr_baseline": 0.11}
    assert [c.check(s)[1] for c in claims] == [None, True, None]


def test_presets_are_valid_and_quirk_is_recorded():
    from featlab.config import active_quirks

    for name in ("emergence-gain", "emergence-cnn", "emergence-ising", "emergence-theory"):
        for p in ("tiny", "paper"):
            validate(get(name).preset(p))
    cfg = apply_overrides(get("emergence-theory").preset("tiny"), ["taylor_prefactor=reference"])
    assert active_quirks(cfg) == ["taylor_prefactor=reference"]


@pytest.mark.slow
def test_emergence_theory_tiny_end_to_end(tmp_path):
    out = _run(tmp_path, "emergence-theory", "data.L=26", "train.steps=300", "n_cumulant=5000", "quad_nodes=6", "n_starts=4",
               "hopm_iter=60")  # tiny itself takes ~11 s
    s = out["summary"]
    assert {"ipr_ode_nlgp", "ipr_ode_taylor", "ipr_ode_gaussian", "ipr_sim_nlgp", "ipr_sim_clone",
            "overlap_ode_sim_nlgp", "zeig_ipr_nlgp_quadrature", "zeig_ipr_clone_samples",
            "zeig_overlap_rf_nlgp_quadrature", "cumulant_rel_err_samples_vs_quadrature", "overlap_ode_sim_clone",
            "phi_approx_rel_err_ode"} <= set(s)
    assert 0.02 < s["phi_approx_rel_err_ode"] < 0.3     # the conditional-Gaussian step is a few % to tens of % off
    assert s["ipr_ode_nlgp"] > 2 * s["ipr_ode_gaussian"]  # sub-Gaussian amplifier localises, Gaussian does not
    assert s["zeig_ipr_nlgp_quadrature"] > s["ipr_baseline"]
    assert out["figures"] == {"profiles_ode_vs_sgd.png", "ipr_ode_vs_sgd.png", "zeigenvectors.png", "phi.png"}


@pytest.mark.slow
def test_emergence_gain_tiny_end_to_end(tmp_path):
    # shrunk: no phase diagram, 2 gains, 1 seed, one control (tiny itself takes ~12 s)
    out = _run(tmp_path, "emergence-gain", "phase_diagram=false", "gains=0.5,10", "n_seeds=1", "kur_k=5")
    s = out["summary"]
    assert {"gain_threshold", "ipr_nlgp_max_gain", "ipr_clone_max_gain", "ipr_kur_k5", "ipr_elliptical",
            "ipr_baseline"} <= set(s)
    assert s["ipr_nlgp_max_gain"] > 2 * s["ipr_clone_max_gain"]
    assert out["figures"] == {"ipr_vs_gain.png"}


@pytest.mark.slow
def test_emergence_cnn_tiny_end_to_end(tmp_path):
    out = _run(tmp_path, "emergence-cnn", "cnn.T=50", "n_seeds=1")  # tiny itself takes ~20 s
    s = out["summary"]
    assert {"fc_width_median", "cnn_width_median", "width_ratio", "n_localised_fc", "acc_cnn"} <= set(s)
    assert s["acc_cnn"] > 0.6
    assert out["figures"] == {"aligned_filters.png"}


@pytest.mark.slow
def test_emergence_ising_tiny_end_to_end(tmp_path):
    out = _run(tmp_path, "emergence-ising", "dims=1")  # the 2D half of tiny adds ~15 s
    s = out["summary"]
    assert {"ipr_ising_1d", "ipr_clone_1d", "acc_ising_1d", "acc_clone_1d", "ipr_baseline_1d"} <= set(s)
    assert s["ipr_ising_1d_median"] > s["ipr_clone_1d_median"]
    assert isinstance(s["ipr_ising_1d"], list) and s["ipr_ising_1d_spread"][0] <= s["ipr_ising_1d_median"]
    assert out["figures"] == {"receptive_fields_1d.png", "ipr_vs_t_1d.png", "accuracy_vs_t_1d.png"}


def test_gain_paper_preset_is_the_cover_recipe_swept_over_the_gain():
    """Issue 12 item 7: the gain sweep's paper preset = the emergence paper preset (data, model,
    train; only the memory knob chunk_size differs), g from 0.5 to 30 around the recipe's g = 10,
    at least 4 seeds."""
    import dataclasses

    from featlab.experiments import emergence, emergence_gain

    e, g = emergence.paper(), emergence_gain.paper()
    assert g.data == e.data and g.model == e.model
    assert dataclasses.replace(g.train, chunk_size=e.train.chunk_size) == e.train
    assert min(g.gains) == 0.5 and max(g.gains) == 30.0 and e.data.gain in g.gains and g.n_seeds >= 4
