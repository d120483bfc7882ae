"""``featlab sweep SPEC.toml``."""
from __future__ import annotations

import click

from . import main


@main.command("sweep")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--executor", "kind", type=click.Choice(["local", "dask", "slurm"]), default=None,
              help="Where runs execute (default: the spec's [executor].kind, else local).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes / Dask workers / SLURM jobs.")
@click.option("--scheduler", default=None, help="dask: address of a running scheduler (default: a local cluster).")
@click.option("--profile", default=None, type=click.Path(dir_okay=False), help="slurm: dask-jobqueue TOML profile.")
@click.option("--retries", type=click.IntRange(min=0), default=None, help="Retries per failed run (default 1).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output root (default $FEATLAB_OUT or ./runs).")
@click.option("--dry-run", is_flag=True, help="Only list the runs the spec expands to.")
def sweep_cmd(spec, kind, workers, scheduler, profile, retries, out, dry_run) -> None:
    """Run every config of a sweep SPEC (skipping DONE runs); end with a done/skipped/failed table."""
    import sys

    from ..config import config_hash
    from ..runs import RunDir, default_out, run_path
    from ..sweep import expand, load_spec, run_sweep

    s = load_spec(spec)
    out = out or default_out()
    if dry_run:
        from ..runs.index import flatten
        from ..config import to_dict

        cfgs = expand(s)
        swept = ["seed"] * bool(s.seeds) + [k for k in (*s.product, *s.zip) if k != "seed"]
        for cfg in cfgs:
            rd = RunDir(run_path(out, s.experiment, cfg))
            flat = flatten(to_dict(cfg))
            values = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                              for k, v in ((k, flat.get(k)) for k in swept)) or f"seed={cfg.seed}"
            click.echo(f"{config_hash(cfg)}  {rd.status():<10} {values}  {rd.path}")
        click.echo(f"{len(cfgs)} runs")
        return
    res = run_sweep(s, out, kind=kind, workers=workers, retries=retries, scheduler=scheduler, profile=profile)
    click.echo(res.table())
    if not res.ok:
        sys.exit(1)
