"""``featlab list``, ``featlab run`` and ``featlab show``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import ConfigError, apply_overrides, describe
from . import main


class PresetOption(click.Option):
    """``--preset``; its help lists every experiment's presets, read from the registry when shown."""

    def get_help_record(self, ctx: click.Context):
        from collections import Counter

        from ..experiments import all_experiments

        exps = all_experiments()
        sets = Counter(tuple(e.presets) for e in exps.values())
        common = sets.most_common(1)[0][0] if sets else ()
        others = [f"{n}: {', '.join(e.presets)}" for n, e in exps.items() if tuple(e.presets) != common]
        self.help = (f"Preset of EXPERIMENT (default: tiny): {', '.join(common)}"
                     + (f"; {'; '.join(others)}" if others else "") + ". `featlab list` shows them.")
        return super().get_help_record(ctx)


@main.command("list")
@click.option("--fields", "fields_of", metavar="EXPERIMENT", default=None,
              help="Show every config field of EXPERIMENT (type, default, allowed, doc).")
def list_cmd(fields_of: str | None) -> None:
    """List experiments and their presets (* = paper scale)."""
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
    exps = all_experiments()
    cells = {n: ", ".join(p + ("*" if e.scale(p) == "paper" else "") for p in e.presets) for n, e in exps.items()}
    wn, wp = max(map(len, exps), default=0), max(map(len, cells.values()), default=0)
    for name, exp in exps.items():
        click.echo(f"{name:<{wn}}  {cells[name]:<{wp}}  {exp.summary}")
    click.echo("\n* paper scale (the paper's recipe); other presets are smoke-scale checks of the code path.")


@main.command("run")
@click.argument("experiment")
@click.option("--preset", default=None, cls=PresetOption, help="Preset of EXPERIMENT (default: tiny).")
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
    preset = exp.default_preset if preset is None else preset  # "--preset ''" is refused, not the default
    cfg = exp.preset(preset)
    sets = list(overrides)
    if seed is not None:
        sets.append(f"seed={seed}")
    if device is not None:
        sets.append(f"device={device}")
    cfg = apply_overrides(cfg, sets)
    res = execute(exp, cfg, out or default_out(), force=force, quiet=quiet, preset=preset)
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


def _nested_lines(d: dict, indent: int = 0) -> list[str]:
    """``key: value`` lines of a nested dict, one level of indentation (2 spaces) per group."""
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(" " * indent + f"{k}:")
            out += _nested_lines(v, indent + 2)
        else:
            out.append(" " * indent + f"{k}: {json.dumps(v)}")
    return out


@main.command("show")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print config and summary as JSON.")
def show_cmd(run_dir: str, as_json: bool) -> None:
    """Show a run directory: status, config, summary and figure paths."""
    from .runs_cmd import show_run

    show_run(run_dir, as_json)
