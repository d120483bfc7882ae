"""``featlab report``."""
from __future__ import annotations

import click

from . import main


@main.command("report", short_help="Write the HTML report of a folder of runs.")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default="report", show_default=True,
              help="Folder for index.html and one page per experiment and per run.")
def report_cmd(root, out) -> None:
    """Write a self-contained HTML report of the runs under ROOT (default: $FEATLAB_OUT, else ./runs).

    Runs are grouped by experiment, preset and overridden fields; each claim shows the paper's
    value, our median and spread over seeds and a verdict. Smoke-scale presets are labelled
    and kept out of the paper-scale tally.
    """
    from ..report import build_report
    from ..runs import default_out

    index = build_report(root or default_out(), out)
    click.echo(f"report: {index}")
