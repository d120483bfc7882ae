"""``featlab runs``."""
from __future__ import annotations

import click

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
