"""Time and peak memory of the probe's default profile, per lens.

    .venv/bin/python benchmarks/bench_probe.py                 # resnet18, 32×32, 256 images, 1 thread
    .venv/bin/python benchmarks/bench_probe.py --quick         # vanilla CNN, 64 images (a smoke run)
    .venv/bin/python benchmarks/bench_probe.py --model vgg11 --lenses cnfa,dgr

Each lens runs in its own fresh process (so peak RSS is that lens's own), on the default
``probe`` settings: the fresh-init baseline, channel shuffling, exact AGOPs over the 10 outputs,
``batch_size`` 64. One checkpoint = the lens on the trained net plus its one-off baseline on the
untrained net (for cnfa: trained and untrained patch-AGOPs; for dgr: trained, shuffled and init).
Inputs are seeded uniform images (timing does not depend on their content). Reported: process
CPU time (``time.process_time``, one thread), wall time, peak RSS of the process, and peak RSS
above the RSS just before the lens started (model, fresh init and data already in memory). The
load average is printed with the table: the machine may be shared.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from _common import loadavg  # benchmarks/ is on sys.path when a script runs

LENSES = ("rf", "nfa", "cnfa", "dgr", "spectrum")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(model_name: str, lens: str, n: int, size: int, threads: int, batch_size: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from featlab.experiments.probe import ProbeConfig, _settings
    from featlab.models import get
    from featlab.probes.lenses import LensSuite
    from featlab.utils import make_generator

    cfg = ProbeConfig()
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 3, size, size, generator=g)  # (n, 3, size, size)
    model = get(model_name, in_channels=3, num_classes=10, input_size=size, generator=make_generator(0, "model"))
    fresh = get(model_name, in_channels=3, num_classes=10, input_size=size, generator=make_generator(0, "fresh"))
    suite = LensSuite(model, X, lenses=[lens], fresh=fresh, settings=_settings(cfg), batch_size=batch_size,
                      generator=lambda s: make_generator(0, s))
    rss0 = _rss_mb()
    t0, w0 = time.process_time(), time.perf_counter()
    res = suite.measure(model)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    layers = {"rf": 1, "nfa": len(suite.plan.linears), "cnfa": len(suite.plan.convs),
              "dgr": len(suite.plan.dgr_layers), "spectrum": len(suite.plan.spectrum)}[lens]
    return {"lens": lens, "layers": layers, "cpu_s": cpu, "wall_s": wall, "peak_rss_mb": peak,
            "peak_above_start_mb": peak - rss0, "start_rss_mb": rss0, "measured": lens in res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--n", type=int, default=256, help="probe images")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lenses", default=",".join(LENSES))
    ap.add_argument("--quick", action="store_true", help="vanilla CNN on 64 images")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.quick:
        a.model, a.n = "vanilla", 64
    if a.one:
        print(json.dumps(one(a.model, a.one, a.n, a.size, a.threads, a.batch_size)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    rows = []
    for lens in a.lenses.split(","):
        cmd = [sys.executable, __file__, "--one", lens, "--model", a.model, "--n", str(a.n), "--size", str(a.size),
               "--threads", str(a.threads), "--batch-size", str(a.batch_size)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{lens}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['lens']:<9} layers {r['layers']:>3}  cpu {r['cpu_s']:8.1f} s  wall {r['wall_s']:8.1f} s  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB  (+{r['peak_above_start_mb']:.0f} MB over the start)",
              flush=True)
    print(f"{a.model} {a.size}x{a.size}, {a.n} images, {a.threads} thread(s), batch {a.batch_size}; "
          f"total cpu {sum(r['cpu_s'] for r in rows):.1f} s; load average {loadavg()}")


if __name__ == "__main__":
    main()
