"""The command line as a user meets it: help with examples, "did you mean", nested `show`,
swept values in `sweep --dry-run`, and log lines that never break a progress bar."""
from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

from click.testing import CliRunner
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
import sweep_toy  # noqa: E402,F401  (registers "sweep-toy")

from featlab.cli import EXAMPLES, main  # noqa: E402
from featlab.utils.progress import TqdmHandler  # noqa: E402


def test_every_subcommand_has_an_example_in_its_help():
    runner = CliRunner()
    assert set(main.commands) == set(EXAMPLES)
    for name in main.commands:
        r = runner.invoke(main, [name, "--help"])
        assert r.exit_code == 0 and "Example:" in r.output, name
        assert f"featlab {name}" in r.output.split("Example:")[1], name


def test_help_texts_tell_the_truth():
    r = CliRunner().invoke(main, ["run", "--help"])
    text = " ".join(r.output.split())
    assert "(default: tiny): tiny, paper;" in text and "pooling: tiny, paper, tiny2d, paper2d" in text
    r = CliRunner().invoke(main, ["report", "--help"])
    assert "$FEATLAB_OUT" in r.output and "./runs" in r.output


def test_did_you_mean_for_experiment_preset_and_where(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["run", "emergance"])
    assert r.exit_code == 2 and "did you mean emergence" in r.output
    r = runner.invoke(main, ["run", "rfm", "--preset", "papr"])
    assert r.exit_code == 2 and "did you mean paper?" in r.output
    out = tmp_path / "runs"
    assert runner.invoke(main, ["run", "sweep-toy", "--out", str(out), "--quiet"]).exit_code == 0
    r = runner.invoke(main, ["runs", str(out), "--where", "gian=1"])
    assert r.exit_code == 2 and "did you mean gain" in r.output and len(r.output) < 200  # no wall of names


def test_show_prints_the_config_with_its_nesting(tmp_path):
    out = tmp_path / "runs"
    r = CliRunner().invoke(main, ["run", "rfm", "--out", str(out), "--quiet", "--set", "task.n_train=100",
                                  "--set", "task.n_test=50", "--set", "rfm.agop_samples=50"])
    assert r.exit_code == 0, r.output
    rd = next(out.glob("rfm/*"))
    r = CliRunner().invoke(main, ["show", str(rd)])
    lines = r.output.splitlines()
    i = lines.index("  task:")
    assert lines[i + 1].startswith("    d: ") and "    n_train: 100" in lines
    assert "preset: tiny (smoke scale)   overrides: task.n_train=100, task.n_test=50, rfm.agop_samples=50" in r.output


def test_sweep_dry_run_shows_the_swept_values(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('experiment = "sweep-toy"\nplugins = ["sweep_toy"]\nseeds = [0, 1]\n[product]\ngain = [1.0, 3.0]\n')
    r = CliRunner().invoke(main, ["sweep", str(spec), "--dry-run", "--out", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.output.splitlines() if "absent" in ln]
    assert len(rows) == 4 and "seed=1 gain=3.0" in r.output and "seed=0 gain=1.0" in r.output


def test_convention_log_lines_are_printed_above_a_live_bar():
    def emit(handler):
        buf = io.StringIO()
        handler.setStream(buf)
        log = logging.getLogger(f"featlab.test.{id(handler)}")
        log.propagate = False
        log.addHandler(handler)
        bar = tqdm(total=10, desc="work", file=buf, disable=False, mininterval=0, ascii=True)
        bar.update(3)
        log.warning("MESSAGE")
        bar.close()
        log.removeHandler(handler)
        line = next(ln for ln in buf.getvalue().split("\n") if "MESSAGE" in ln)
        return line.split("\r")[-1]

    assert emit(TqdmHandler()).startswith("MESSAGE")          # the bar was cleared, the line stands alone
    assert not emit(logging.StreamHandler()).startswith("MESSAGE")  # a plain handler writes into the bar's line
