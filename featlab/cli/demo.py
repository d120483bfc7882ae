"""``featlab demo``: the main job -- every experiment's tiny preset, then the report."""
from __future__ import annotations

import sys
import time

import click

from . import main


@main.command("demo", short_help="Run every experiment's tiny preset, then write the report.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output root (default $FEATLAB_OUT or ./runs).")
@click.option("--report-dir", type=click.Path(file_okay=False), default="report", show_default=True,
              help="Folder of the HTML report.")
@click.option("--only", default=None, help="Comma-separated subset of experiments.")
@click.option("--preset", default="tiny", show_default=True,
              help="Preset run for every experiment (each must have it; `featlab list`).")
@click.option("--device", default=None, help="cpu | cuda | cuda:N (default cpu).")
@click.option("--force", is_flag=True, help="Redo runs that are already DONE.")
def demo_cmd(out, report_dir, only, preset, device, force) -> None:
    """Run the tiny preset of every experiment, then write the HTML report."""
    import logging

    from ..config import apply_overrides
    from ..experiments import all_experiments
    from ..experiments.registry import did_you_mean
    from ..report import build_report
    from ..runs import RunFailed, default_out, execute
    from ..utils import Progress
    from ..utils.progress import TqdmHandler

    root = logging.getLogger()
    if not root.handlers:  # warnings of the library, printed above the bar (never through it)
        handler = TqdmHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    out = out or default_out()
    exps = all_experiments()
    names = [n.strip() for n in only.split(",")] if only else list(exps)
    for n in names:
        if n not in exps:
            from ..config import ConfigError

            raise ConfigError("--only", did_you_mean(n, exps) + "allowed: " + ", ".join(exps), n)
    rows = []
    t0 = time.perf_counter()
    with Progress(len(names), desc="demo", unit="exp") as bar:
        for n in names:
            exp = exps[n]
            cfg = exp.preset(preset)
            if device:
                cfg = apply_overrides(cfg, [f"device={device}"])
            t = time.perf_counter()
            bar.write(f"[{len(rows) + 1}/{len(names)}] {n} ({preset}) ...")
            try:
                res = execute(exp, cfg, out, force=force, quiet=True, preset=preset)
                status = "skipped (DONE)" if res.skipped else "done"
                path = res.path
            except RunFailed as e:
                status, path = f"FAILED: {e}", e.rundir.path
            rows.append((n, status, time.perf_counter() - t, path))
            bar.write(f"    {status} in {rows[-1][2]:.1f}s -> {path}")
            bar.update(1)
    index = build_report(out, report_dir)
    click.echo(f"\n{len(names)} experiments in {time.perf_counter() - t0:.1f}s")
    for n, status, dt, _ in rows:
        click.echo(f"  {n:<18} {dt:7.1f}s  {status.splitlines()[0][:90]}")
    click.echo(f"\nreport: {index.resolve()}")
    if any(s.startswith("FAILED") for _, s, _, _ in rows):
        sys.exit(1)
