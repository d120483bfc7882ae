"""``featlab probe MODEL``: the ``probe`` experiment with its fields as options.

A thin front end: the options build a :class:`~featlab.experiments.probe.ProbeConfig` from the
``default`` preset (``--preset tiny`` for a quick look) and run it exactly as ``featlab run probe
--set ...`` would, into ``OUT/probe/<hash>/``. ``MODEL`` is ``zoo:NAME``,
``path/to/file.py:FACTORY`` or ``package.module:FACTORY``; a factory is your code and is executed.
"""
from __future__ import annotations

import click

from . import EXAMPLES, main

# this command's worked example for its --help epilog (kept here, next to the command)
EXAMPLES["probe"] = ["featlab probe zoo:resnet18 -w 'ckpts/epoch_*.pt' --data cifar10 --root ~/data",
                     "featlab probe mynets.py:make_model -w ckpt.pt --output logits --n-images 128"]


@main.command("probe")
@click.argument("model")
@click.option("--weights", "-w", multiple=True, metavar="FILE|GLOB",
              help="Checkpoint(s), read with torch.load(weights_only=True); several files or a glob give a "
                   "trajectory over checkpoints. Repeatable.")
@click.option("--init-weights", default=None, metavar="FILE", help="Weights of the model at initialisation.")
@click.option("--kwarg", "kwargs", multiple=True, metavar="NAME=VALUE",
              help="Keyword argument of the factory (Python literal). Repeatable.")
@click.option("--output", default=None, metavar="PATH",
              help="For models returning a dict/tuple: the tensor to probe (logits, 0, out.logits).")
@click.option("--data", "dataset", default=None, help="digits | mnist | fashion_mnist | cifar10 | cifar100 | folder | npz.")
@click.option("--root", default=None, help="Folder holding the data archive, the image folder, or the .npz file.")
@click.option("--n-images", type=int, default=None, help="Probe images (default 256).")
@click.option("--input-size", type=int, default=None, help="Resize images to N×N pixels.")
@click.option("--lenses", default=None, help="Comma-separated: rf, nfa, cnfa, dgr, spectrum (default: auto).")
@click.option("--layers", default=None, help="Comma-separated named_modules() names (default: automatic).")
@click.option("--batch-size", type=int, default=None, help="Images per forward pass (memory only).")
@click.option("--device", default=None, help="cpu | cuda | cuda:N.")
@click.option("--seed", type=int, default=None, help="Master seed (probe images, fresh init, diffeos).")
@click.option("--name", default=None, help="A label for the run (part of the hash).")
@click.option("--preset", default="default", show_default=True, help="Preset the options apply to.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="Any other field of `featlab list --fields probe`. Repeatable.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output root (default $FEATLAB_OUT or ./runs).")
@click.option("--force", is_flag=True, help="Redo the run even if it is DONE.")
@click.option("--quiet", is_flag=True, help="No console log lines.")
def probe_cmd(model, weights, init_weights, kwargs, output, dataset, root, n_images, input_size, lenses, layers,
              batch_size, device, seed, name, preset, overrides, out, force, quiet) -> None:
    """Measure the three papers' lenses on MODEL (and each checkpoint) into OUT/probe/<hash>/."""
    from ..config import apply_overrides
    from ..experiments import get
    from ..runs import default_out, execute
    from .commands import _print_summary

    exp = get("probe")
    cfg = exp.preset(preset)
    sets: dict = {"model.source": model}
    opts = {"model.weights": list(weights) or None, "model.init_weights": init_weights,
            "model.kwargs": list(kwargs) or None, "model.output": output, "data.dataset": dataset,
            "data.root": root, "data.n_images": n_images, "data.input_size": input_size, "lenses": lenses,
            "layers": layers, "batch_size": batch_size, "device": device, "seed": seed, "name": name}
    sets.update({k: v for k, v in opts.items() if v is not None})
    cfg = apply_overrides(cfg, sets)
    cfg = apply_overrides(cfg, list(overrides))
    res = execute(exp, cfg, out or default_out(), force=force, quiet=quiet, preset=preset)
    click.echo(("already DONE (use --force to redo): " if res.skipped else "DONE: ") + str(res.path))
    _print_summary({k: v for k, v in res.summary.items() if not isinstance(v, dict)})
