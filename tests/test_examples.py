"""The examples shipped in examples/ keep working: sweep specs expand, the probe script runs."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from featlab.sweep import expand, load_slurm_profile, load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.toml") if p.name != "slurm_profile.toml"))
def test_example_sweep_specs_expand_to_valid_configs(name):
    cfgs = expand(load_spec(EXAMPLES / name))
    assert len(cfgs) > 1 and len(set(cfgs)) == len(cfgs)


def test_example_slurm_profile_loads():
    assert load_slurm_profile(EXAMPLES / "slurm_profile.toml")["cores"] == 8


def test_probe_your_model_example_runs():
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("probe_example", EXAMPLES / "probe_your_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(epochs=1, n_images=32)
    assert math.isclose(out["R"], out["D"] / out["G"], rel_tol=1e-9)
    assert out["patch_agop_shape"] == (144, 144) and set(out["cnfa"]) == {"0", "2"}
    assert out["agop_trace"] > 0 and 1 / 16 <= out["filter_ipr_mean"] <= 1


def test_track_training_example_runs(tmp_path):
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("track_example", EXAMPLES / "track_training.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s = mod.main(steps=4, every=2, out=str(tmp_path), lenses=("rf", "spectrum"), n_images=16)
    assert s["steps"] == [0, 2, 4] and s["init_kind"] == "true" and len(s["series"]["rf_ipr_mean"]) == 3
