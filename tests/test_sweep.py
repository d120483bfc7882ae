"""Sweeps: spec validation, idempotence, retries, Dask LocalCluster with a worker killed, SLURM script."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import sweep_toy  # noqa: E402,F401  (registers "sweep-toy" here; workers import it as a plugin)

from featlab.cli import main  # noqa: E402
from featlab.config import ConfigError  # noqa: E402
from featlab.runs import iter_runs  # noqa: E402
from featlab.sweep import expand, load_spec, parse_spec, run_sweep, slurm_job_script  # noqa: E402

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))


def _spec(tmp_path, body: str) -> Path:
    p = tmp_path / "spec.toml"
    p.write_text(body)
    return p


BASE = 'experiment = "sweep-toy"\nplugins = ["sweep_toy"]\n'


def test_expand_product_zip_seeds():
    s = parse_spec({"experiment": "sweep-toy", "seeds": [0, 1], "product": {"gain": [1.0, 2.0, 3.0]},
                    "set": {"sleep": 0.0}})
    cfgs = expand(s)
    assert len(cfgs) == 6 and {(c.seed, c.gain) for c in cfgs} == {(a, b) for a in (0, 1) for b in (1.0, 2.0, 3.0)}
    z = expand(parse_spec({"experiment": "sweep-toy", "zip": {"gain": [1.0, 2.0], "fail_first": [0, 1]}}))
    assert [(c.gain, c.fail_first) for c in z] == [(1.0, 0), (2.0, 1)]


@pytest.mark.parametrize("raw,key", [
    ({"experiment": "sweep-toy", "bogus": 1}, "bogus"),
    ({"preset": "tiny"}, "experiment"),
    ({"experiment": "sweep-toy", "product": {"gainz": [1.0]}}, "product.gainz"),
    ({"experiment": "sweep-toy", "product": {"gain": [-1.0]}}, "product.gain"),
    ({"experiment": "sweep-toy", "set": {"sleep": "abc"}}, "set.sleep"),
    ({"experiment": "sweep-toy", "zip": {"gain": [1.0], "sleep": [0.0, 1.0]}}, "zip."),
    ({"experiment": "sweep-toy", "executor": {"kind": "ray"}}, "executor.kind"),
    ({"experiment": "sweep-toy", "seeds": [-1]}, "seeds"),
    ({"experiment": "nope"}, "experiment"),
])
def test_bad_sweep_spec_names_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        expand(parse_spec(raw))
    assert e.value.field.startswith(key)


def test_cli_bad_spec_exits_2(tmp_path):
    p = _spec(tmp_path, BASE + '[product]\n"gainz" = [1.0]\n')
    r = CliRunner().invoke(main, ["sweep", str(p), "--out", str(tmp_path / "runs")])
    assert r.exit_code == 2 and "product.gainz" in r.output
    assert not (tmp_path / "runs").exists()


def test_local_sweep_is_idempotent_and_retries(tmp_path):
    marker = tmp_path / "m"
    marker.mkdir()
    p = _spec(tmp_path, BASE + f'seeds = [0, 1]\n[set]\nmarker_dir = "{marker}"\n'
              '[zip]\ngain = [1.0, 3.0]\nfail_first = [0, 1]\n[executor]\nworkers = 2\nretries = 1\n')
    out = tmp_path / "runs"
    res = run_sweep(load_spec(p), out)
    assert res.count("done") == 4 and res.ok
    assert sorted(r.attempts for r in res.rows) == [1, 1, 2, 2]  # gain 3.0 fails once per seed
    assert "done 4, skipped 0, failed 0" in res.table()
    again = run_sweep(load_spec(p), out)
    assert again.count("skipped") == 4
    assert len(list(iter_runs(out))) == 4
    assert len((marker / "completions.log").read_text().splitlines()) == 4
    # a run that keeps failing ends as failed, with its traceback, after retries
    p2 = _spec(tmp_path, BASE + f'[set]\nmarker_dir = "{marker}"\nfail_first = 5\ngain = 7.0\n[executor]\nretries = 1\n')
    bad = run_sweep(load_spec(p2), out, workers=1)
    assert bad.count("failed") == 1 and "planned failure 2" in bad.rows[0].error
    r = CliRunner().invoke(main, ["sweep", str(p2), "--out", str(out), "--workers", "1", "--retries", "0"])
    assert r.exit_code == 1 and "failed 1" in r.output


def test_killed_sweep_finishes_only_what_is_missing(tmp_path):
    marker = tmp_path / "m"
    marker.mkdir()
    p = _spec(tmp_path, BASE + f'seeds = [0, 1, 2]\n[set]\nmarker_dir = "{marker}"\n')
    out = tmp_path / "runs"
    from featlab.runs import execute

    cfgs = expand(load_spec(p))
    execute("sweep-toy", cfgs[0], out, quiet=True)            # finished before the "kill"
    inc = out / "sweep-toy" / __import__("featlab.config", fromlist=["x"]).config_hash(cfgs[1])
    inc.mkdir(parents=True)
    (inc / "config.json").write_text("{}")                    # killed mid-run: no DONE
    res = run_sweep(load_spec(p), out, workers=1)
    assert [r.status for r in res.rows] == ["skipped", "done", "done"]
    assert all(rd.is_done() for rd in iter_runs(out))


@pytest.mark.slow
def test_dask_local_cluster_with_a_killed_worker(tmp_path):
    pytest.importorskip("distributed")
    marker = tmp_path / "m"
    marker.mkdir()
    p = _spec(tmp_path, BASE + f'seeds = [0, 1, 2, 3, 4, 5]\n[set]\nmarker_dir = "{marker}"\nsleep = 1.0\n'
              '[executor]\nkind = "dask"\nworkers = 2\nretries = 2\n')
    out = tmp_path / "runs"
    killed = {}

    def kill_one(ex):
        def later():
            # wait until some run has started, then SIGKILL one worker process mid-run
            deadline = time.time() + 60
            while time.time() < deadline and not (marker / "attempts.log").exists():
                time.sleep(0.1)
            time.sleep(0.3)
            pids = ex.client.run(os.getpid)
            pid = sorted(pids.values())[0]
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid

        threading.Thread(target=later, daemon=True).start()

    res = run_sweep(load_spec(p), out, on_submitted=kill_one)
    assert killed, "no worker was killed"
    assert res.ok and res.count("done") == 6
    runs = list(iter_runs(out))
    assert len(runs) == 6 and all(rd.is_done() for rd in runs)
    done_keys = [ln.split()[0] for ln in (marker / "completions.log").read_text().splitlines()]
    assert sorted(set(done_keys)) == sorted(f"1.0-{s}" for s in range(6))
    again = run_sweep(load_spec(p), out)
    assert again.count("skipped") == 6


def test_slurm_profile_job_script(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from featlab.sweep import load_slurm_profile

    prof = tmp_path / "slurm.toml"
    prof.write_text('queue = "gpu"\ncores = 4\nmemory = "16GB"\nwalltime = "02:00:00"\n'
                    'job_extra_directives = ["--gres=gpu:1"]\njob_script_prologue = ["source .venv/bin/activate"]\n')
    script = slurm_job_script(load_slurm_profile(prof))
    assert "#SBATCH -p gpu" in script
    assert "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH -t 02:00:00" in script
    assert "source .venv/bin/activate" in script
    assert "--nthreads" in script or "--nworkers" in script or "distributed.cli.dask_worker" in script
    bad = tmp_path / "bad.toml"
    bad.write_text('queue = "gpu"\n')
    with pytest.raises(ConfigError, match="cores"):
        load_slurm_profile(bad)
