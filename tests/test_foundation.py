"""Config, run directory, runner and CLI behaviour, on a toy experiment registered here."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
from click.testing import CliRunner

from featlab.cli import main
from featlab.config import (
    ConfigError,
    ExperimentConfig,
    F,
    active_quirks,
    apply_overrides,
    config_hash,
    from_dict,
    sub,
    to_dict,
    validate,
)
from featlab.experiments import Experiment, register
from featlab.runs import RunDir, RunFailed, execute


@dataclass(frozen=True)
class _Inner:
    xi: tuple[float, ...] = F((1.0, 3.0), "correlation lengths", gt=0)
    boundary: str = F("periodic", "boundary", choices=("periodic", "open"))
    compat: bool = F(False, "a reference quirk", quirk=True)


@dataclass(frozen=True)
class ToyConfig(ExperimentConfig):
    n: int = F(5, "steps", ge=1)
    lr: float = F(0.1, "learning rate", gt=0)
    mode: str = F("ok", "behaviour", choices=("ok", "nan", "crash"))
    note: str | None = F(None, "optional text")
    verbose: bool = F(False, "chatty", semantic=False)
    data: _Inner = sub(_Inner, "data")


def _toy_run(cfg: ToyConfig, ctx):
    g = ctx.generator("data")
    x = 0.0
    with ctx.progress(cfg.n, desc="toy") as p:
        for i in range(cfg.n):
            x += float(__import__("torch").rand((), generator=g))
            if cfg.mode == "nan" and i == 2:
                x = float("nan")
            if cfg.mode == "crash" and i == 2:
                raise RuntimeError("boom")
            ctx.check_finite(x, "loss")
            ctx.log_metrics(step=i, x=x)
            p.update(1)
    ctx.save_arrays(curve=np.arange(cfg.n))
    from featlab.plotting import figure

    fig, ax = figure()
    ax[0, 0].plot(range(cfg.n))
    ctx.save_figure(fig, "curve", "a curve")
    return {"x": x}


TOY = register(Experiment(name="toy-test", summary="test only", config=ToyConfig,
                          presets={"tiny": ToyConfig, "paper": lambda: ToyConfig(n=50)}, run=_toy_run))


def test_convention_overrides_coerce_by_field_type():
    cfg = apply_overrides(ToyConfig(), ["n=1e2", "lr=0.5", "data.xi=2,10", "data.compat=true", "note=none"])
    assert cfg.n == 100 and isinstance(cfg.n, int)
    assert cfg.lr == 0.5 and cfg.data.xi == (2.0, 10.0) and cfg.data.compat is True and cfg.note is None


@pytest.mark.parametrize("item,field", [("nope=1", "nope"), ("data.bogus=1", "data.bogus"),
                                         ("n=abc", "n"), ("n=0", "n"), ("lr=-1", "lr"),
                                         ("data.boundary=torus", "data.boundary"), ("data.xi=1,-2", "data.xi"),
                                         ("data=1", "data"), ("device=tpu", "device")])
def test_bad_override_names_the_field(item, field):
    with pytest.raises(ConfigError) as e:
        validate(apply_overrides(ToyConfig(), [item]))
    assert e.value.field.startswith(field)
    assert "\n" not in str(e.value)


@dataclass(frozen=True)
class _RenamedConfig(ToyConfig):
    RENAMED = {"data.path": "data.boundary"}


def test_renamed_field_is_refused_with_a_pointer_to_the_new_name():
    with pytest.raises(ConfigError) as e:
        apply_overrides(_RenamedConfig(), ["data.path=open"])
    assert e.value.field == "data.path" and "use data.boundary" in str(e.value)
    assert apply_overrides(_RenamedConfig(), ["data.boundary=open"]).data.boundary == "open"


def test_experiment_scale_of_a_preset():
    assert TOY.scale("paper") == "paper"
    assert TOY.scale("tiny") == "smoke" and TOY.scale(None) == "smoke"


def test_hash_is_stable_and_ignores_non_semantic_fields():
    a = ToyConfig()
    assert config_hash(a) == config_hash(ToyConfig())
    assert config_hash(a) == config_hash(replace(a, verbose=True))
    assert config_hash(a) != config_hash(replace(a, n=6))
    assert len(config_hash(a)) == 12


def test_roundtrip_and_quirks():
    cfg = apply_overrides(ToyConfig(), ["data.compat=1"])
    assert from_dict(ToyConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    assert active_quirks(cfg) == ["data.compat=True"]
    assert active_quirks(ToyConfig()) == []


def test_run_directory_complete_and_skip(tmp_path):
    res = execute("toy-test", ToyConfig(), tmp_path, quiet=True)
    rd = res.rundir
    assert rd.status() == "done" and not res.skipped
    meta = rd.read_config()
    assert meta["config"]["n"] == 5 and meta["torch_version"] and meta["hash"] == rd.path.name
    assert len(rd.read_metrics()) == 5
    assert list(rd.read_arrays()["curve"]) == list(range(5))
    assert {p.name for p in rd.figure_paths()} == {"curve.png", "curve.pdf"}
    again = execute("toy-test", ToyConfig(), tmp_path, quiet=True)
    assert again.skipped and again.summary["x"] == res.summary["x"]
    forced = execute("toy-test", ToyConfig(), tmp_path, quiet=True, force=True)
    assert not forced.skipped and forced.summary["x"] == res.summary["x"]  # same seed, same numbers


def test_killed_run_is_not_done_and_is_redone(tmp_path):
    cfg = ToyConfig()
    rd = RunDir(tmp_path / "toy-test" / config_hash(cfg))
    rd.path.mkdir(parents=True)
    (rd.path / "config.json").write_text('{"experiment": "toy-test"}')  # written first, atomically
    (rd.path / "metrics.jsonl").write_text('{"step": 0}\n{"st')  # a kill mid-line
    assert rd.status() == "incomplete"
    res = execute("toy-test", cfg, tmp_path, quiet=True)
    assert not res.skipped and res.rundir.status() == "done"
    assert len(res.rundir.read_metrics()) == 5


def test_divergence_is_recorded_and_not_done(tmp_path):
    cfg = replace(ToyConfig(), mode="nan")
    with pytest.raises(RunFailed) as e:
        execute("toy-test", cfg, tmp_path, quiet=True)
    rd = e.value.rundir
    assert rd.status() == "failed" and not rd.done.exists()
    assert rd.read_failure()["reason"] == "diverged"
    assert "non-finite" in rd.log.read_text()


def test_cli_bad_value_exits_2_and_writes_nothing(tmp_path):
    r = CliRunner().invoke(main, ["run", "toy-test", "--set", "lr=-3", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "lr" in r.output and "> 0" in r.output
    assert list(tmp_path.iterdir()) == []
    r = CliRunner().invoke(main, ["run", "toy-test", "--preset", "huge", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "preset" in r.output
    r = CliRunner().invoke(main, ["run", "no-such-exp", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "experiment" in r.output


def test_cli_cuda_without_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    r = CliRunner().invoke(main, ["run", "toy-test", "--device", "cuda", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "CUDA is not available" in r.output
    assert list(tmp_path.iterdir()) == []


def test_cli_run_show_list(tmp_path):
    r = CliRunner().invoke(main, ["run", "toy-test", "--set", "n=3", "--seed", "4", "--out", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    path = r.output.split("DONE: ")[1].splitlines()[0].strip()
    s = CliRunner().invoke(main, ["show", path])
    assert s.exit_code == 0 and "[DONE]" in s.output and "curve.png" in s.output
    lst = CliRunner().invoke(main, ["list"])
    assert "toy-test" in lst.output
    f = CliRunner().invoke(main, ["list", "--fields", "toy-test"])
    assert "data.boundary" in f.output and "periodic, open" in f.output


def test_threads_field_is_applied_for_the_run_and_restored(tmp_path):
    import torch

    seen = {}

    def _probe_run(cfg, ctx):
        seen["threads"] = torch.get_num_threads()
        return {}

    exp = register(Experiment(name="threads-test", summary="test only", config=ToyConfig,
                              presets={"tiny": ToyConfig}, run=_probe_run))
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    res = execute(exp, replace(ToyConfig(), threads=target), tmp_path, quiet=True)
    assert seen["threads"] == target and torch.get_num_threads() == before
    # an explicit count is part of the hash (it changes the reductions), the automatic one is not
    assert config_hash(replace(ToyConfig(), threads=target)) != config_hash(ToyConfig())
    assert res.rundir.status() == "done" and res.rundir.read_config()["threads_used"] == target
