"""``featlab runs`` and the body of ``featlab show`` (both tolerant of unreadable folders)."""
from __future__ import annotations

import json

import click

from ..config import ConfigError
from . import main


@main.command("runs")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@click.option("--where", multiple=True, metavar="FIELD=VALUE",
              help="Keep runs whose field equals VALUE (config path, summary key, status, experiment). Repeatable.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
def runs_cmd(root, where, fmt) -> None:
    """Index of the runs under ROOT (default $FEATLAB_OUT or ./runs), rebuilt by scanning."""
    from ..runs import default_out, filter_rows, format_rows, index_runs

    rows = filter_rows(index_runs(root or default_out()), where)
    click.echo(format_rows(rows, fmt))


def show_run(run_dir: str, as_json: bool) -> None:
    """Print one run folder: status, config, summary, figures; an unreadable folder prints its
    status and the reason instead of crashing (and whatever else can be read)."""
    from ..runs import RunDir
    from .commands import _nested_lines, _print_summary

    rd = RunDir(run_dir)
    if not (rd.config.is_file() or rd.config.is_symlink()):
        raise ConfigError("RUN_DIR", "not a run directory (no config.json)", run_dir)
    info = rd.inspect()
    meta = info.meta
    figs = rd.figure_paths()
    owner = rd.owner() if info.status == "incomplete" else None
    if as_json:
        click.echo(json.dumps({"status": info.status, "problem": info.problem, "meta": meta,
                               "summary": info.summary, "failure": info.failure, "running": owner,
                               "figures": [str(p) for p in figs]}, indent=2, default=str))
        return
    click.echo(f"{rd.path}  [{info.status.upper()}]")
    if info.problem:
        click.echo(f"UNREADABLE: {info.problem}")
    if meta:
        click.echo(f"experiment: {meta.get('experiment')}   hash: {meta.get('hash')}   seed: {meta.get('seed')}   "
                   f"device: {meta.get('device')}   threads: {meta.get('threads_used', 'n/a')}")
        if "preset" in meta:
            ov = meta.get("overrides")
            if ov is None:
                ov_text = "unknown"
            elif isinstance(ov, dict):
                ov_text = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in ov.items()) or "none"
            else:
                ov_text = str(ov)
            click.echo(f"preset: {meta.get('preset') or 'none'} ({meta.get('scale')} scale)   overrides: {ov_text}")
        click.echo(f"featlab {meta.get('featlab_version', '?')}, torch {meta.get('torch_version', '?')}, "
                   f"commit {meta.get('git_commit') or 'n/a'}")
        if meta.get("reference_quirks"):
            click.echo("reference quirks: " + ", ".join(map(str, meta["reference_quirks"])))
    if info.status == "failed":
        click.echo(f"FAILED ({info.failure.get('reason')}): {info.failure.get('message')}")
    elif info.status == "incomplete":
        if owner:
            click.echo(f"RUNNING: pid {owner.get('pid')} on {owner.get('host')} since {owner.get('started')}")
        else:
            click.echo("INCOMPLETE: no DONE marker (killed); `featlab run` will redo it")
    if isinstance(meta.get("config"), dict):
        click.echo("config:")
        for line in _nested_lines(meta["config"]):
            click.echo("  " + line)
    if info.summary:
        click.echo("summary:")
        _print_summary(info.summary)
    if figs:
        click.echo("figures:")
        for p in figs:
            click.echo(f"  {p}")
