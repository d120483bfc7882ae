"""Issue 10: the run store under concurrency, faults and bad input -- one fault-injection test
per break (numbered as in the issue)."""
from __future__ import annotations

import base64
import errno
import gzip
import io
import json
import os
import pickle
import platform
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
import tracemalloc
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import sweep_toy  # noqa: E402  (registers "sweep-toy"; workers import it as a plugin)

from featlab.cli import main  # noqa: E402
from featlab.config import ConfigError, ExperimentConfig, F, apply_overrides, config_hash, validate  # noqa: E402
from featlab.experiments import Experiment, all_experiments, register  # noqa: E402
from featlab.runs import (RunBusy, RunDir, RunFailed, RunLock, execute, index_runs, iter_runs,  # noqa: E402
                          run_path)
from featlab.sweep import expand, load_spec, parse_spec, run_sweep  # noqa: E402

Toy = sweep_toy.SweepToyConfig
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(autouse=True)
def _pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])


def _one_line_error(r, code: int) -> str:
    out = r.output.strip()
    assert r.exit_code == code, out
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    return out


def _start_toy_run(out: Path, sleep: float, gain: float = 1.0) -> tuple[subprocess.Popen, Path]:
    """``featlab run sweep-toy`` in a child process; returns once the run is inside its folder."""
    code = ("import sys, sweep_toy; from featlab.cli import main; "
            f"sys.argv = ['featlab', 'run', 'sweep-toy', '--set', 'sleep={sleep}', '--set', 'gain={gain}', "
            f"'--out', {str(out)!r}, '--quiet']; main()")
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    folder = run_path(out, "sweep-toy", replace(Toy(), sleep=sleep, gain=gain))
    deadline = time.time() + 120
    while time.time() < deadline and not (folder / "metrics.jsonl").exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert (folder / "metrics.jsonl").exists(), "the child run never started"
    return proc, folder


# ------------------------------------------------------------------ 1. a lock per run folder
def test_lock_is_exclusive_names_its_owner_and_goes_away(tmp_path):
    folder = tmp_path / "exp" / "abc"
    a, b = RunLock(folder), RunLock(folder)
    a.acquire()
    with pytest.raises(RunBusy) as e:
        b.acquire(wait=0)
    assert e.value.owner["pid"] == os.getpid() and e.value.owner["host"] == platform.node()
    assert "being run by pid" in str(e.value)
    a.release()
    assert not a.path.exists()  # unlinked on release
    b.acquire(wait=0)
    b.release()


def test_stale_lock_of_a_killed_run_is_taken_over(tmp_path):
    folder = tmp_path / "sweep-toy" / config_hash(Toy())
    code = ("import sys, time; from featlab.runs import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], env=ENV, stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"held"
    with pytest.raises(RunBusy):
        execute("sweep-toy", Toy(), tmp_path, quiet=True, wait=0)
    p.kill()
    p.wait()
    assert RunDir(folder).owner() is None  # the owner is dead: stale
    res = execute("sweep-toy", Toy(), tmp_path, quiet=True, wait=0)
    assert res.rundir.status() == "done" and not (folder.parent / f".{folder.name}.lock").exists()


@pytest.mark.slow
def test_second_concurrent_run_of_one_config_exits_cleanly_and_touches_nothing(tmp_path):
    proc, folder = _start_toy_run(tmp_path, sleep=8.0)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    r = CliRunner().invoke(main, ["run", "sweep-toy", "--set", "sleep=8.0", "--out", str(tmp_path), "--quiet"])
    assert "busy" in _one_line_error(r, 3) and "pid" in r.output
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rd = RunDir(folder)
    assert rd.status() == "done" and len(rd.read_metrics()) == 2  # one run's rows, not two


# ------------------------------------------------------------------ 2. a kill during clean-up
@pytest.mark.parametrize("kill_at", [2, 5])  # the 2nd / 5th file deletion
def test_kill_during_forced_cleanup_never_leaves_done_without_results(tmp_path, monkeypatch, kill_at):
    first = execute("sweep-toy", Toy(), tmp_path, quiet=True)
    complete = sorted(str(p.relative_to(first.path)) for p in first.path.rglob("*"))
    calls = {"n": 0}
    real_unlink = os.unlink

    def dying_unlink(path, *a, **kw):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt("killed during clean-up")
        return real_unlink(path, *a, **kw)

    monkeypatch.setattr(os, "unlink", dying_unlink)
    with pytest.raises(KeyboardInterrupt):
        execute("sweep-toy", Toy(), tmp_path, quiet=True, force=True)
    monkeypatch.setattr(os, "unlink", real_unlink)
    rd = first.rundir
    # at every instant the folder is complete or absent: never DONE beside missing results
    now = sorted(str(p.relative_to(rd.path)) for p in rd.path.rglob("*")) if rd.path.exists() else None
    assert now in (None, complete)
    assert [r.path for r in iter_runs(tmp_path)] in ([], [rd.path])  # trash is never indexed
    again = execute("sweep-toy", Toy(), tmp_path, quiet=True)
    assert again.rundir.status() == "done" and again.summary["double"] == 2.0
    assert not list(rd.path.parent.glob(".*trash*"))  # leftovers of the killed clean-up are gone


# ------------------------------------------------------------------ 3. sweeps de-duplicate by hash
def test_sweep_deduplicates_by_run_hash():
    cfgs = expand(parse_spec({"experiment": "sweep-toy", "product": {"marker_dir": ["a", "b"]}}))
    assert len(cfgs) == 1  # marker_dir is not semantic: one folder, one run
    cfgs = expand(parse_spec({"experiment": "sweep-toy", "product": {"threads": [1, 2]}}))
    assert len({config_hash(c) for c in cfgs}) == len(cfgs) == 2


# ------------------------------------------------------------------ 4. threads and the hash
def test_convention_explicit_threads_are_hashed_automatic_choice_is_not(tmp_path, monkeypatch):
    assert config_hash(replace(Toy(), threads=1)) != config_hash(replace(Toy(), threads=2))
    h = config_hash(Toy())
    monkeypatch.setenv("FEATLAB_THREADS", "1")
    a = execute("sweep-toy", Toy(), tmp_path / "a", quiet=True)
    monkeypatch.setenv("FEATLAB_THREADS", "2")
    b = execute("sweep-toy", Toy(), tmp_path / "b", quiet=True)
    assert a.path.name == b.path.name == h
    assert a.rundir.read_config()["threads_used"] == 1 and b.rundir.read_config()["threads_used"] == 2
    assert b.rundir.read_config()["thread_plan"]["source"] == "FEATLAB_THREADS"


# ------------------------------------------------------------------ 5. a dying worker sinks no one else
@pytest.mark.slow
def test_local_executor_charges_only_the_run_whose_worker_died(tmp_path):
    marker = tmp_path / "m"
    marker.mkdir()
    spec = tmp_path / "s.toml"
    spec.write_text('experiment = "sweep-toy"\nplugins = ["sweep_toy"]\n'
                    f'[set]\nmarker_dir = "{marker}"\nsleep = 0.3\n'
                    '[zip]\ngain = [1.0, 2.0, 3.0, 4.0, 5.0]\ndie = [false, true, false, false, false]\n'
                    '[executor]\nworkers = 2\nretries = 0\n')
    res = run_sweep(load_spec(spec), tmp_path / "runs")
    assert (res.count("done"), res.count("failed")) == (4, 1), res.table()
    dead = [r for r in res.rows if r.status == "failed"][0]
    assert "died" in dead.error and all(r.attempts == 1 for r in res.rows)


# ------------------------------------------------------------------ 6. workers die with the driver
@pytest.mark.slow
def test_sweep_workers_die_with_a_killed_driver(tmp_path):
    marker = tmp_path / "m"
    marker.mkdir()
    spec = tmp_path / "s.toml"
    spec.write_text('experiment = "sweep-toy"\nplugins = ["sweep_toy"]\nseeds = [0, 1, 2, 3]\n'
                    f'[set]\nmarker_dir = "{marker}"\nsleep = 60.0\n[executor]\nworkers = 2\nretries = 0\n')
    code = ("import sys; from featlab.sweep import load_spec, run_sweep; "
            f"run_sweep(load_spec({str(spec)!r}), {str(tmp_path / 'runs')!r})")
    driver = subprocess.Popen([sys.executable, "-c", code], env=ENV, stderr=subprocess.DEVNULL)
    attempts = marker / "attempts.log"
    deadline = time.time() + 180
    while time.time() < deadline and (not attempts.exists() or len(attempts.read_text().splitlines()) < 2):
        time.sleep(0.1)
    pids = [int(ln.split()[1]) for ln in attempts.read_text().splitlines()]
    assert len(pids) == 2
    time.sleep(0.5)  # let both runs log their "started" row
    driver.kill()
    driver.wait()

    def alive(pid):
        try:
            return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    deadline = time.time() + 30
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(alive(p) for p in pids), "orphan workers kept running"
    time.sleep(0.5)
    runs = list(iter_runs(tmp_path / "runs"))
    assert len(runs) == 2 and all(rd.status() == "failed" for rd in runs)
    assert {rd.read_failure()["reason"] for rd in runs} == {"terminated"}


# ------------------------------------------------------------------ 7. divergence in any recorded number
@dataclass(frozen=True)
class _NanConfig(ExperimentConfig):
    where: str = F("summary", "where the NaN goes", choices=("summary", "nested", "metric", "none"))


def _nan_run(cfg, ctx):
    if cfg.where == "metric":
        ctx.log_metrics(step=0, loss=1.0, ipr=float("nan"))
    nan = float("nan")
    return {"summary": {"ipr": nan}, "nested": {"per_seed": [0.1, np.float32("inf")]},
            "metric": {}, "none": {"ipr": None, "ok": 1.0}}[cfg.where]


NAN = register(Experiment(name="nan-test", summary="test only", config=_NanConfig, presets={"tiny": _NanConfig},
                          run=_nan_run))


@pytest.mark.parametrize("where,what", [("summary", "ipr is nan"), ("nested", "per_seed[1] is inf"),
                                        ("metric", "metric ipr is nan")])
def test_non_finite_recorded_number_is_divergence(tmp_path, where, what):
    with pytest.raises(RunFailed) as e:
        execute(NAN, _NanConfig(where=where), tmp_path, quiet=True)
    rd = e.value.rundir
    assert rd.status() == "failed" and rd.read_failure()["reason"] == "diverged"
    assert what in rd.read_failure()["message"] and not rd.done.exists()
    assert execute(NAN, _NanConfig(where="none"), tmp_path, quiet=True).summary["ipr"] is None  # None is fine


_DIVERGE = [("emergence", ["train.lr=1e6"]), ("emergence-gain", ["train.lr=1e6", "phase_diagram=false"]),
            ("emergence-ising", ["train.lr=1e6", "dims=1"]), ("emergence-cnn", ["cnn.lr=1e8"]),
            ("emergence-theory", ["train.lr=1e6", "train.steps=30", "train.batch_size=200", "n_cumulant=2000", "n_snapshots=5"])]
_SHRINK = {"emergence": ["train.T=100", "train.n_test=200", "train.n_evals=3"],
           "emergence-gain": ["train.T=100", "train.n_test=200", "train.n_evals=3", "n_seeds=1", "gains=1,3",
                              "kur_k=", "elliptical=false"],
           "emergence-ising": ["train.T=100", "train.n_test=200", "train.n_evals=3"],
           "emergence-cnn": ["train.T=100", "train.n_test=200", "train.n_evals=3", "n_seeds=1", "cnn.T=20"]}


@pytest.mark.slow
@pytest.mark.parametrize("name,sets", _DIVERGE, ids=[n for n, _ in _DIVERGE])
def test_experiment_divergence_hidden_by_a_saturating_loss_ends_diverged(tmp_path, name, sets):
    r = CliRunner().invoke(main, ["run", name, "--out", str(tmp_path), "--quiet", "--set", "threads=1"]
                           + [a for s in _SHRINK.get(name, []) + sets for a in ("--set", s)])
    assert r.exit_code == 1 and "diverged" in r.output, r.output
    (rd,) = iter_runs(tmp_path)
    assert rd.read_failure()["reason"] == "diverged" and not rd.done.exists()


# ------------------------------------------------------------------ 8. every field validated
def _float_leaf(info) -> bool:
    import typing

    tps = typing.get_args(info.type) or (info.type,)
    inner = [a for t in tps for a in (typing.get_args(t) or (t,))]
    return float in inner and info.meta.get("finite", True)


def test_inf_is_refused_in_every_float_field_of_every_experiment():
    from featlab.config import iter_fields

    n = 0
    for name, exp in all_experiments().items():
        for info in iter_fields(exp.preset()):
            if not _float_leaf(info):
                continue
            value = "inf" if not isinstance(info.value, tuple) else ",".join(["inf"] * max(1, len(info.value)))
            with pytest.raises(ConfigError) as e:
                validate(apply_overrides(exp.preset(), [f"{info.path}={value}"]))
            assert e.value.field.startswith(info.path) and "finite" in str(e.value), (name, info.path)
            n += 1
    assert n > 60  # every float field of every registered experiment


@pytest.mark.parametrize("name,item", [
    ("stability", "nets.names=bogus"), ("stability", "nets.layerwise=lenet,bogus"), ("emergence-theory", "data.xi=1"),
    ("emergence-ising", "T_ising_2d=1"), ("emergence-ising", "dims=3"), ("emergence-gain", "phase_gains="),
    ("emergence-gain", "phase_ratios="), ("emergence-gain", "gains=3"), ("emergence", "data.xi=1,2,3"),
    ("emergence", "data.T_ising=1"), ("convrfm", "data.tasks=bogus"), ("convrfm", "methods="),
    ("convrfm", "convrfm.reg="), ("rfm", "rfm.reg="), ("cnfa", "train.probe_epochs=0"),
])
def test_tuple_fields_of_the_wrong_length_or_content_are_refused(tmp_path, name, item):
    r = CliRunner().invoke(main, ["run", name, "--set", item, "--out", str(tmp_path)])
    assert item.split("=")[0] in _one_line_error(r, 2)
    assert list(tmp_path.iterdir()) == []


def test_big_seeds_are_exact_and_empty_preset_is_refused(tmp_path):
    big = 9007199254740993  # 2**53 + 1: not a float
    assert apply_overrides(Toy(), [f"seed={big}"]).seed == big
    assert apply_overrides(Toy(), ["seed=1e4"]).seed == 10000
    with pytest.raises(ConfigError):
        apply_overrides(Toy(), ["seed=1.5"])
    with pytest.raises(ConfigError, match="seed"):
        validate(apply_overrides(Toy(), [f"seed={2 ** 64}"]))
    r = CliRunner().invoke(main, ["run", "sweep-toy", "--seed", str(big), "--out", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    (rd,) = iter_runs(tmp_path)
    assert rd.read_config()["seed"] == big
    r = CliRunner().invoke(main, ["run", "sweep-toy", "--preset", "", "--out", str(tmp_path / "x")])
    assert "preset" in _one_line_error(r, 2) and not (tmp_path / "x").exists()


@pytest.mark.parametrize("name,sets", [
    ("cnfa", ["data.dataset=cifar10", "data.root={missing}"]),
    ("convrfm", ["data.tasks=cifar10", "data.root={missing}"]),
    ("stability", ["data.dataset=cifar10", "data.root={missing}"]),
])
def test_missing_data_files_are_refused_before_any_folder_exists(tmp_path, name, sets):
    args = ["run", name, "--out", str(tmp_path / "runs")]
    for s in sets:
        args += ["--set", s.format(missing=tmp_path / "no-data")]
    r = CliRunner().invoke(main, args)
    assert "data." in _one_line_error(r, 2) and "not found" in r.output
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ 9. one-line errors, never tracebacks
@pytest.mark.parametrize("args", [
    ["emergence-gain", "--device", "tpu"], ["emergence-ising", "--device", "tpu"],
    ["emergence-cnn", "--device", "tpu"], ["sweep-toy", "--device", "cuda:\u0663"],
    ["sweep-toy", "--device", "cuda:12345678901234567890"],
])
def test_bad_devices_are_one_line_errors(tmp_path, args):
    r = CliRunner().invoke(main, ["run", *args, "--out", str(tmp_path)])
    assert "device" in _one_line_error(r, 2)
    assert list(tmp_path.iterdir()) == []


def test_unusable_output_roots_are_one_line_errors(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile / "sub", "/dev/null"):  # (--out afile itself is refused by click)
        r = CliRunner().invoke(main, ["run", "sweep-toy", "--out", str(out), "--quiet"])
        assert "--out" in _one_line_error(r, 2)
    monkeypatch.setenv("FEATLAB_OUT", str(afile))
    r = CliRunner().invoke(main, ["run", "sweep-toy", "--quiet"])
    assert "--out" in _one_line_error(r, 2)
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        r = CliRunner().invoke(main, ["run", "sweep-toy", "--out", str(ro), "--quiet"])
        assert "--out" in _one_line_error(r, 2)


def test_full_disk_is_a_one_line_error_and_leaves_no_folder(tmp_path, monkeypatch):
    import featlab.runs.runner as runner

    real = runner.atomic_write_json

    def full(name):
        def write(path, obj):
            if Path(path).name == name:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, obj)
        return write

    monkeypatch.setattr(runner, "atomic_write_json", full("config.json"))
    r = CliRunner().invoke(main, ["run", "sweep-toy", "--out", str(tmp_path), "--quiet"])
    assert "No space left" in _one_line_error(r, 1)
    assert list(iter_runs(tmp_path)) == [] and not any((tmp_path / "sweep-toy").iterdir())
    monkeypatch.setattr(runner, "atomic_write_json", full("FAILED"))
    r = CliRunner().invoke(main, ["run", "sweep-toy", "--set", "fail_first=1", "--set", f"marker_dir={tmp_path}",
                                  "--out", str(tmp_path), "--quiet"])
    assert "FAILED record could not be written" in _one_line_error(r, 1)


def test_sweep_environment_errors_are_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'experiment = "sweep-toy"\n# caf\xe9\n')
    r = CliRunner().invoke(main, ["sweep", str(bad), "--out", str(tmp_path / "runs")])
    assert "UTF-8" in _one_line_error(r, 2)
    ok = tmp_path / "ok.toml"
    ok.write_text('experiment = "sweep-toy"\nplugins = ["sweep_toy"]\n')
    pytest.importorskip("distributed")
    import featlab.sweep.executors as executors

    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 2.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    t0 = time.time()
    r = CliRunner().invoke(main, ["sweep", str(ok), "--executor", "dask", "--scheduler", f"tcp://127.0.0.1:{port}",
                                  "--out", str(tmp_path / "runs")])
    assert "--scheduler" in _one_line_error(r, 2) and time.time() - t0 < 30
    pytest.importorskip("dask_jobqueue")
    prof = tmp_path / "slurm.toml"
    prof.write_text('cores = 1\nmemory = "1GB"\n')
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    r = CliRunner().invoke(main, ["sweep", str(ok), "--executor", "slurm", "--profile", str(prof),
                                  "--out", str(tmp_path / "runs")])
    assert "sbatch" in _one_line_error(r, 2)


# ------------------------------------------------------------------ 10. malformed folders
_BAD = {
    "config_string": {"config.json": '"just a string"'},
    "summary_list": {"summary.json": "[1, 2]", "DONE": "x"},
    "experiment_int": {"config.json": '{"experiment": 3, "hash": "x", "config": {}}'},
    "summary_truncated": {"summary.json": '{"double": 2.', "DONE": "x"},
    "captions_list": {"figures/captions.json": '["a"]', "DONE": "x"},
    "failed_list": {"FAILED": '["error"]'},
}


def _crafted(tmp_path) -> Path:
    out = tmp_path / "runs"
    good = execute("sweep-toy", Toy(), out, quiet=True).rundir
    for name, files in _BAD.items():
        d = out / "sweep-toy" / name
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"experiment": "sweep-toy", "hash": name, "config": {}}))
        for rel, text in files.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
    return out, good


def test_malformed_folders_are_listed_unreadable_and_the_rest_is_reported(tmp_path):
    from featlab.report import build_report

    out, good = _crafted(tmp_path)
    rows = {Path(r["path"]).name: r for r in index_runs(out)}
    assert rows[good.path.name]["status"] == "done" and rows[good.path.name]["double"] == 2.0
    for name in _BAD:
        assert rows[name]["status"] == "unreadable" and rows[name]["problem"], name
    assert "config.json" in rows["config_string"]["problem"] and "summary.json" in rows["summary_truncated"]["problem"]
    r = CliRunner().invoke(main, ["runs", str(out)])
    assert r.exit_code == 0 and r.output.count("unreadable") == len(_BAD)
    for name in _BAD:
        for extra in ([], ["--json"]):
            s = CliRunner().invoke(main, ["show", str(out / "sweep-toy" / name), *extra])
            assert s.exit_code == 0 and "Traceback" not in s.output and "nreadable" in s.output.lower(), s.output
    index = build_report(out, tmp_path / "report")
    html = index.read_text()
    assert "Unreadable run folders" in html and all(name in html for name in _BAD)
    assert "not valid JSON" in html and "expected a JSON object" in html  # with the reasons
    assert "holds" in index.with_name("sweep-toy.html").read_text()  # the good run is still reported


# ------------------------------------------------------------------ 11. symlinked figures
def test_report_embeds_only_regular_figure_files_inside_the_run(tmp_path):
    from featlab.report import build_report

    out = tmp_path / "runs"
    rd = execute("sweep-toy", Toy(), out, quiet=True).rundir
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET-" * 50)
    (rd.figures / "x.png").symlink_to(secret)
    rd2 = execute("sweep-toy", replace(Toy(), gain=2.0), out, quiet=True).rundir
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "y.png").write_bytes(b"TOP-SECRET-" * 50)
    os.rename(rd2.figures, tmp_path / "old-figures")
    rd2.figures.symlink_to(outside, target_is_directory=True)
    assert rd.figure_paths() and all(p.name != "x.png" for p in rd.figure_paths())
    assert rd2.figure_paths() == [] and rd.read_figure(rd.figures / "x.png") is None
    html = build_report(out, tmp_path / "report").with_name("sweep-toy.html").read_text()
    leak = base64.b64encode(b"TOP-SECRET-" * 3).decode()[:20]
    assert "line" in html and leak not in html


# ------------------------------------------------------------------ 12. bounded loaders
def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return pickle.dumps({b"batch_label": b"x", b"labels": rng.integers(0, 10, n).tolist(),
                         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}, protocol=2)


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_cifar_files_larger_than_the_format_are_refused_before_reading(tmp_path):
    from featlab.data.images import load_cifar10

    d = tmp_path / "dir" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / n).write_bytes(_batch())
    with open(d / "data_batch_1", "r+b") as f:
        f.truncate(2 ** 30)  # a sparse 1 GiB file
    assert _peak(lambda: load_cifar10(tmp_path / "dir")) < 32 * 2 ** 20
    # a plain tar whose member claims 1 GiB (sparse on disk)
    t = tmp_path / "tar"
    t.mkdir()
    arc = t / "cifar-10-python.tar.gz"
    info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    info.size = 2 ** 30
    with open(arc, "wb") as f:
        f.write(info.tobuf(format=tarfile.GNU_FORMAT))
        f.truncate(512 + 2 ** 30 + 1024)
    assert _peak(lambda: load_cifar10(t)) < 32 * 2 ** 20


def test_trailing_bytes_after_a_pickle_are_refused(tmp_path):
    from featlab.data.safe_pickle import safe_loads

    assert isinstance(safe_loads(_batch()), dict)
    with pytest.raises(pickle.UnpicklingError, match="trailing"):
        safe_loads(_batch() + b"appended")


def test_mnist_gz_is_never_decompressed_beyond_its_header(tmp_path):
    from featlab.data.images import load_mnist

    def idx(arr):
        return struct_header(arr) + arr.tobytes()

    def struct_header(arr):
        import struct

        return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)

    files = {"train-images-idx3-ubyte": idx(np.zeros((6, 28, 28), np.uint8)),
             "train-labels-idx1-ubyte": idx(np.zeros(6, np.uint8)),
             "t10k-images-idx3-ubyte": idx(np.zeros((2, 28, 28), np.uint8)),
             "t10k-labels-idx1-ubyte": idx(np.zeros(2, np.uint8))}
    for name, raw in files.items():
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress(raw))
    assert load_mnist(tmp_path).x_train.shape == (6, 1, 28, 28)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:  # a gzip bomb
        f.write(files["train-images-idx3-ubyte"])
        zeros = bytes(2 ** 20)
        for _ in range(100):
            f.write(zeros)
    assert _peak(lambda: load_mnist(tmp_path)) < 16 * 2 ** 20
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(np.zeros((6, 27, 28), np.uint8))))
    with pytest.raises(ValueError, match="at most"):
        load_mnist(tmp_path)


# ------------------------------------------------------------------ 13. the umask
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    from featlab.utils import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
        res = execute("sweep-toy", Toy(), tmp_path / "runs", quiet=True) if umask == 0o022 else None
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == mode
    if res is not None:
        for name in ("config.json", "summary.json", "DONE", "figures/captions.json"):
            assert stat.S_IMODE((res.path / name).stat().st_mode) == 0o644, name


# ------------------------------------------------------------------ 14. SIGTERM and durability
@pytest.mark.slow
def test_sigterm_leaves_a_failed_record(tmp_path):
    proc, folder = _start_toy_run(tmp_path, sleep=30.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    rd = RunDir(folder)
    assert rd.status() == "failed" and rd.read_failure()["reason"] == "terminated"


@dataclass(frozen=True)
class _SelfTermConfig(ExperimentConfig):
    pass


def _self_term_run(cfg, ctx):
    os.kill(os.getpid(), signal.SIGTERM)  # the first SIGTERM: raises Terminated here
    time.sleep(5)  # not reached
    return {}


SELF_TERM = register(Experiment(name="self-term-test", summary="test only", config=_SelfTermConfig,
                                presets={"tiny": _SelfTermConfig}, run=_self_term_run))


def test_a_second_sigterm_while_stopping_does_not_cut_the_failed_record_short(tmp_path, monkeypatch):
    # A sweep worker whose driver dies gets SIGTERM from the kernel (PDEATHSIG) and again from
    # its watchdog; the second one used to land while the FAILED record was being written and
    # left the run "incomplete" (seen once at load 9 in test_sweep_workers_die_with_a_killed_driver).
    import featlab.runs.runner as runner

    real = runner.atomic_write_json

    def write_with_a_second_sigterm(path, obj):
        if Path(path).name == "FAILED":
            os.kill(os.getpid(), signal.SIGTERM)
        return real(path, obj)

    monkeypatch.setattr(runner, "atomic_write_json", write_with_a_second_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(runner.Terminated):
        execute(SELF_TERM, _SelfTermConfig(), tmp_path, quiet=True)
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
    (rd,) = list(iter_runs(tmp_path))
    assert rd.status() == "failed" and rd.read_failure()["reason"] == "terminated"


def test_done_rename_is_followed_by_a_directory_fsync(tmp_path, monkeypatch):
    import featlab.utils.io as fio

    synced = []
    real = fio.fsync_dir
    monkeypatch.setattr(fio, "fsync_dir", lambda p: (synced.append(Path(p)), real(p)))
    res = execute("sweep-toy", Toy(), tmp_path, quiet=True)
    assert synced[-1] == res.path and (res.path / "DONE").exists()


# ------------------------------------------------------------------ 15. thread counts
def test_auto_threads_never_oversubscribe(monkeypatch):
    from featlab.utils import threads

    monkeypatch.delenv("FEATLAB_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    for load, workers, want in [(0.0, 1, 8), (0.0, 2, 4), (0.0, 3, 2), (0.0, 16, 1), (2.0, 1, 6), (7.6, 1, 1),
                                (3.0, 2, 4), (20.0, 2, 1)]:
        monkeypatch.setattr(threads, "other_load", lambda load=load: load)
        plan = threads.auto_threads(workers)
        assert plan.threads == want, (load, workers)
        assert plan.threads * workers <= 8 or plan.threads == 1
    monkeypatch.setenv("FEATLAB_THREADS", "3")
    assert threads.auto_threads(4).threads == 3
    assert threads.auto_threads(4, requested=5).source == "config"
    monkeypatch.setenv("FEATLAB_THREADS", "zero")
    with pytest.raises(ConfigError, match="FEATLAB_THREADS"):
        threads.auto_threads(1)
    monkeypatch.delenv("FEATLAB_THREADS")
    monkeypatch.undo()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.usable_cores() == 1


def test_sweep_workers_split_the_cores(tmp_path, monkeypatch):
    from featlab.sweep.driver import run_one
    from featlab.config import to_dict

    monkeypatch.delenv("FEATLAB_THREADS", raising=False)
    res = run_one("sweep-toy", to_dict(Toy()), str(tmp_path), ("sweep_toy",), "tiny", workers=64)
    plan = RunDir(res["path"]).read_config()["thread_plan"]
    assert plan["workers"] == 64 and RunDir(res["path"]).read_config()["threads_used"] == 1
