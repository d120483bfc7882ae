"""Patch-AGOP of every conv of VGG11: featlab FAST against its floor and a reference-style oracle.

Setting (issue 14, item 5): featlab's VGG11 (CIFAR layout), 32×32×3 inputs, 10 outputs, float32
model in eval mode, 16 images in one batch, one torch thread, *process CPU time*; each method is
repeated ``--reps`` times, interleaved (floor, FAST, oracle, floor, ...), and the minimum is
reported.

* **floor**: what no method avoids — one forward pass, one backward pass per output down to the
  conv output (``autograd.grad`` to a leaf put in place of the conv output), and the products that
  form the (D, D) result: K = Σ ggᵀ (``bmm``) and W̄ᵀKW̄ (plain float32 GEMMs, float32 result).
* **FAST**: ``featlab.probes.patch_agop(model, layer, X)`` with its defaults (float64 result).
* **oracle**: the reference's construction (aradha/convrfm ``cnfa_verification/vgg_conv_nfa.py``),
  re-implemented here: the layer input is computed by ``features[:l]``, padded and unfolded into
  an independent patch tensor (n, H_out, W_out, D); the patch network is the conv as an einsum
  with W̄ (plus its bias, so the result equals FAST) followed by ``features[l+1:]``, flatten and
  the classifier; ``vmap(jacrev)`` over images, chunks of 2 images (the reference's batch), all
  10 outputs per jacrev, G accumulated in float32 as the reference does.

Peak memory: FAST and the oracle each run once more in a fresh subprocess per layer; a thread
samples the resident set size (``/proc/self/statm``) every 0.2 ms during the call, and we report
the peak minus the RSS just before it, after the model, the data and a one-image warm-up
(``ru_maxrss`` cannot resolve it: import-time peaks hide these allocations; tracemalloc does not
see torch's allocations). Linux only.

    OMP_NUM_THREADS=1 python benchmarks/bench_patch_agop.py            # 5 interleaved repetitions
    OMP_NUM_THREADS=1 python benchmarks/bench_patch_agop.py --quick    # 2 repetitions, first 3 layers

The load average (``/proc/loadavg``) is printed before and after: on a shared machine the ratios,
measured side by side, are the figures to quote; absolute seconds move with the load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

from _common import loadavg  # benchmarks/ is on sys.path when a script runs


def build(n: int = 16):
    import torch

    from featlab.models import get

    torch.manual_seed(0)
    model = get("vgg11", in_channels=3, num_classes=10, input_size=32).eval()
    X = torch.randn(n, 3, 32, 32)
    convs = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)]
    return model, X, convs


def floor(model, idx: int, X):
    """Forward, c backwards to the conv output, K = Σ ggᵀ and W̄ᵀKW̄ in float32."""
    import torch

    conv = model.features[idx]
    st = {}

    def hook(_m, _a, out):
        leaf = out.detach().requires_grad_(True)
        st["o"] = leaf
        return leaf.clone()  # the in-place ReLU that follows must not touch the leaf

    h = conv.register_forward_hook(hook)
    try:
        out = model(X)  # (B, c)
    finally:
        h.remove()
    o = st["o"]
    B, k = o.shape[:2]
    K = torch.zeros(k, k)
    c = out.shape[1]
    for j in range(c):
        (g,) = torch.autograd.grad(out[:, j].sum(), o, retain_graph=j < c - 1)
        g = g.reshape(B, k, -1)  # (B, k, P)
        K += torch.bmm(g, g.transpose(1, 2)).sum(0)
    W = conv.weight.detach().reshape(k, -1)
    return W.T @ ((K / B) @ W)


def oracle(model, idx: int, X, chunk: int = 2):
    """Reference-style unfold + per-sample vmap(jacrev) of the patch network (see the module docstring)."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.func import jacrev, vmap

    feats = model.features
    conv = feats[idx]
    rest = nn.Sequential(*feats[idx + 1:], model.flatten, model.classifier)
    Wbar = conv.weight.detach().reshape(conv.out_channels, -1)  # (k, D)
    b = conv.bias.detach()
    q, p, s = conv.kernel_size[0], conv.padding[0], conv.stride[0]
    G = 0
    for i in range(0, X.shape[0], chunk):
        with torch.no_grad():
            h = feats[:idx](X[i:i + chunk])  # (n, c_in, H, W)
        h = F.pad(h, (p, p, p, p))
        U = h.unfold(2, q, s).unfold(3, q, s)  # (n, c_in, Ho, Wo, q, q)
        U = U.permute(0, 2, 3, 1, 4, 5).reshape(*U.shape[:1], U.shape[2], U.shape[3], -1)  # (n, Ho, Wo, D)

        def f(u):
            o = torch.einsum("hwd,kd->khw", u, Wbar) + b[:, None, None]  # (k, Ho, Wo)
            return rest(o.unsqueeze(0)).squeeze(0)  # (c,)

        J = vmap(jacrev(f))(U)  # (n, c, Ho, Wo, D)
        g = J.reshape(-1, J.shape[-1])  # (n·c·Ho·Wo, D)
        G = G + g.T @ g
    return G / X.shape[0]


def fast(model, idx: int, X):
    from featlab.probes import patch_agop

    return patch_agop(model, f"features.{idx}", X)


METHODS = {"floor": floor, "fast": fast, "oracle": oracle}


def _cpu(fn, *a):
    t = time.process_time()
    out = fn(*a)
    return time.process_time() - t, out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(method: str, idx: int) -> dict:
    model, X, _ = build()
    METHODS[method](model, idx, X[:1])  # warm-up on one image
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(2e-4)

    rss0 = _rss()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    G = METHODS[method](model, idx, X)
    done.set()
    th.join()
    peak[0] = max(peak[0], _rss())
    del G
    return {"method": method, "layer": f"features.{idx}", "peak_rss_rise_MiB": (peak[0] - rss0) / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 repetitions, the first 3 conv layers")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--layer", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.worker:
        print(json.dumps(worker(args.worker, args.layer)))
        return
    load0 = loadavg()
    model, X, convs = build()
    reps = 2 if args.quick else args.reps
    if args.quick:
        convs = convs[:3]
    rows = []
    for idx in convs:
        times = {m: [] for m in METHODS}
        outs = {}
        for m, fn in METHODS.items():  # warm-up
            fn(model, idx, X[:1])
        for _ in range(reps):
            for m, fn in METHODS.items():
                dt, outs[m] = _cpu(fn, model, idx, X)
                times[m].append(dt)
        t = {m: min(v) for m, v in times.items()}
        ref = outs["oracle"].detach().double()
        row = {"layer": f"features.{idx}", "D": int(ref.shape[0]), "k_out": model.features[idx].out_channels,
               **{f"{m}_cpu_s": t[m] for m in METHODS},
               "fast_over_floor": t["fast"] / t["floor"], "oracle_over_fast": t["oracle"] / t["fast"],
               "rel_diff_fast_oracle": float((outs["fast"].detach() - ref).norm() / ref.norm()),
               "rel_diff_floor_oracle": float((outs["floor"].detach().double() - ref).norm() / ref.norm())}
        if not args.no_memory:
            for m in ("fast", "oracle"):
                out = subprocess.run([sys.executable, __file__, "--worker", m, "--layer", str(idx)],
                                     capture_output=True, text=True, check=True)
                row[f"{m}_peak_MiB"] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_rise_MiB"]
            row["oracle_over_fast_memory"] = row["oracle_peak_MiB"] / max(row["fast_peak_MiB"], 1e-3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    load1 = loadavg()
    print(f"\nVGG11 (CIFAR layout) 32x32x3, 16 images, 10 outputs, float32 model, 1 thread, CPU time, "
          f"min of {reps} interleaved reps; load average {load0} (start) / {load1} (end)")
    hdr = f"{'layer':12s} {'D':>5s} {'floor s':>8s} {'FAST s':>8s} {'oracle s':>9s} {'FAST/floor':>10s} " \
          f"{'oracle/FAST':>11s} {'mem FAST':>9s} {'mem oracle':>10s} {'rel.diff':>9s}"
    print(hdr)
    for r in rows:
        mem = (f"{r['fast_peak_MiB']:8.1f}M {r['oracle_peak_MiB']:9.1f}M" if "fast_peak_MiB" in r
               else f"{'-':>9s} {'-':>10s}")
        print(f"{r['layer']:12s} {r['D']:5d} {r['floor_cpu_s']:8.3f} {r['fast_cpu_s']:8.3f} {r['oracle_cpu_s']:9.3f} "
              f"{r['fast_over_floor']:10.2f} {r['oracle_over_fast']:11.2f} {mem} {r['rel_diff_fast_oracle']:9.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_start": load0, "load_end": load1, "reps": reps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
