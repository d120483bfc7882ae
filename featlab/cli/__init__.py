"""The ``featlab`` command line (click).

Errors: a bad config or argument prints one line ``featlab: error: <field>: <allowed>`` on
stderr and exits with status 2, having written nothing; a run that stops without DONE exits
with status 1 and names its FAILED record (so does a run folder that cannot be written, e.g.
a full disk: ``featlab: error: cannot write ...``); a run whose folder another process is
running exits with status 3 (``featlab: busy: ...``) without touching it; SIGTERM ends a run
with a FAILED record (reason ``terminated``) and status 143.
"""
from __future__ import annotations

import sys

import click

from ..config import ConfigError

__all__ = ["main"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        from ..runs import RunBusy, RunFailed, RunStoreError, Terminated

        try:
            return super().invoke(ctx)
        except ConfigError as e:
            click.echo(f"featlab: error: {e}", err=True)
            sys.exit(2)
        except RunFailed as e:
            click.echo(f"featlab: run failed: {e}", err=True)
            sys.exit(1)
        except RunStoreError as e:
            click.echo(f"featlab: error: {e}", err=True)
            sys.exit(1)
        except RunBusy as e:
            click.echo(f"featlab: busy: {e}", err=True)
            sys.exit(3)
        except Terminated as e:
            click.echo(f"featlab: terminated: {e}", err=True)
            sys.exit(143)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="\b\nExamples:\n  featlab list\n  featlab run emergence --preset tiny --seed 1\n"
                    "  featlab demo\n\nSee `featlab COMMAND --help` for an example of each command.")
@click.version_option(package_name="featlab")
def main() -> None:
    """featlab: reproduce, measure and extend feature-learning experiments."""


#: One worked example per subcommand, shown at the end of its ``--help`` (a test checks that
#: every registered subcommand has one).
EXAMPLES = {
    "list": ["featlab list", "featlab list --fields emergence"],
    "run": ["featlab run emergence --preset tiny --set data.gain=3 --seed 1"],
    "show": ["featlab show runs/emergence/<hash>"],
    "sweep": ["featlab sweep examples/emergence_seeds_gains.toml --dry-run"],
    "runs": ["featlab runs --where experiment=emergence --where data.gain=3"],
    "report": ["featlab report runs --out report   # then open report/index.html"],
    "demo": ["featlab demo --only rfm,emergence"],
}


from . import commands  # noqa: E402,F401  (registers list/run/show)

for _mod in ("sweep", "runs_cmd", "report_cmd", "demo"):  # later command modules, if present
    try:
        __import__(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:  # pragma: no cover - module not written yet
        if _e.name != f"{__name__}.{_mod}":
            raise

for _name, _cmd in main.commands.items():
    if _name in EXAMPLES and not _cmd.epilog:
        _cmd.epilog = "\b\nExample:\n" + "\n".join("  " + e for e in EXAMPLES[_name])
