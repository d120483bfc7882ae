"""``featlab report``."""
from __future__ import annotations

import click

from . import main


@main.command("report")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default="report", show_default=True)
def report_cmd(root, out) -> None:
    """Write a self-contained HTML report of the runs under ROOT (default ./runs)."""
    from ..report import build_report
    from ..runs import default_out

    index = build_report(root or default_out(), out)
    click.echo(f"report: {index}")
