"""``featlab demo``: the main job -- every experiment's tiny preset, then the report."""
from __future__ import annotations

import sys
import time

import click

from . import main


@main.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output root (default $FEATLAB_OUT or ./runs).")
@click.option("--report-dir", type=click.Path(file_okay=False), default="report", show_default=True)
@click.option("--only", default=None, help="Comma-separated subset of experiments.")
@click.option("--preset", default="tiny", show_default=True)
@click.option("--device", default=None, help="cpu | cuda (default cpu).")
@click.option("--force", is_flag=True, help="Redo runs that are already DONE.")
def demo_cmd(out, report_dir, only, preset, device, force) -> None:
    """Run the tiny preset of every experiment, then write the HTML report."""
    import logging

    from ..config import apply_overrides
    from ..experiments import all_experiments
    from ..report import build_report
    from ..runs import RunFailed, default_out, execute
    from ..utils import Progress

    logging.basicConfig(level=logging.WARNING)
    out = out or default_out()
    exps = all_experiments()
    names = [n.strip() for n in only.split(",")] if only else list(exps)
    for n in names:
        if n not in exps:
            from ..config import ConfigError

            raise ConfigError("--only", "allowed: " + ", ".join(exps), n)
    rows = []
    t0 = time.perf_counter()
    with Progress(len(names), desc="demo", unit="exp") as bar:
        for n in names:
            exp = exps[n]
            cfg = exp.preset(preset)
            if device:
                cfg = apply_overrides(cfg, [f"device={device}"])
            t = time.perf_counter()
            click.echo(f"[{len(rows) + 1}/{len(names)}] {n} ({preset}) ...")
            try:
                res = execute(exp, cfg, out, force=force, quiet=True)
                status = "skipped (DONE)" if res.skipped else "done"
                path = res.path
            except RunFailed as e:
                status, path = f"FAILED: {e}", e.rundir.path
            rows.append((n, status, time.perf_counter() - t, path))
            click.echo(f"    {status} in {rows[-1][2]:.1f}s -> {path}")
            bar.update(1)
    index = build_report(out, report_dir)
    click.echo(f"\n{len(names)} experiments in {time.perf_counter() - t0:.1f}s")
    for n, status, dt, _ in rows:
        click.echo(f"  {n:<18} {dt:7.1f}s  {status.splitlines()[0][:90]}")
    click.echo(f"\nreport: {index.resolve()}")
    if any(s.startswith("FAILED") for _, s, _, _ in rows):
        sys.exit(1)
