"""``featlab list``, ``featlab run`` and ``featlab show``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import ConfigError, apply_overrides, describe
from . import main


@main.command("list")
@click.option("--fields", "fields_of", metavar="EXPERIMENT", default=None,
              help="Show every config field of EXPERIMENT (type, default, allowed, doc).")
def list_cmd(fields_of: str | None) -> None:
    """List experiments and their presets."""
    from ..experiments import all_experiments, get

    if fields_of:
        exp = get(fields_of)
        for row in describe(exp.preset()):
            allowed = f"  [{row['allowed']}]" if row["allowed"] else ""
            quirk = f"  (reference quirk: {row['quirk']})" if row["quirk"] is not None else ""
            click.echo(f"{row['path']} = {row['value']!r}  <{row['type']}>{allowed}{quirk}")
            if row["doc"]:
                click.echo(f"    {row['doc']} {row['tag']}")
        return
    for name, exp in all_experiments().items():
        click.echo(f"{name:<18} presets: {', '.join(exp.presets):<12} {exp.summary}")


@main.command("run")
@click.argument("experiment")
@click.option("--preset", default=None, help="Preset name (tiny | paper); default tiny.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="Override a config field (dotted path), coerced by its type. Repeatable.")
@click.option("--seed", type=int, default=None, help="Master seed (same as --set seed=N).")
@click.option("--device", default=None, help="cpu | cuda | cuda:N (same as --set device=...).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output root (default $FEATLAB_OUT or ./runs).")
@click.option("--force", is_flag=True, help="Redo the run even if it is DONE.")
@click.option("--quiet", is_flag=True, help="No console log lines.")
def run_cmd(experiment, preset, overrides, seed, device, out, force, quiet) -> None:
    """Run EXPERIMENT into OUT/EXPERIMENT/<config-hash>/."""
    from ..experiments import get
    from ..runs import default_out, execute

    exp = get(experiment)
    cfg = exp.preset(preset)
    sets = list(overrides)
    if seed is not None:
        sets.append(f"seed={seed}")
    if device is not None:
        sets.append(f"device={device}")
    cfg = apply_overrides(cfg, sets)
    res = execute(exp, cfg, out or default_out(), force=force, quiet=quiet)
    if res.skipped:
        click.echo(f"already DONE (use --force to redo): {res.path}")
    else:
        click.echo(f"DONE: {res.path}")
    _print_summary(res.summary)


def _print_summary(summary: dict) -> None:
    for k, v in summary.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        elif isinstance(v, (dict, list)):
            v = json.dumps(v)
            if len(v) > 100:
                v = v[:97] + "..."
        click.echo(f"  {k}: {v}")


@main.command("show")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print config and summary as JSON.")
def show_cmd(run_dir: str, as_json: bool) -> None:
    """Show a run directory: status, config, summary and figure paths."""
    from .runs_cmd import show_run

    show_run(run_dir, as_json)
