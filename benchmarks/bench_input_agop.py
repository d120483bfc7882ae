"""Input AGOP throughput (images/s) for VGG11 on 32×32×3 images with 10 outputs.

Methods: AUTOGRAD_SUM with one backward per output (default), AUTOGRAD_SUM with all 10
cotangents in one batched backward (``chunk_size=10``, ``is_grads_batched``), and the
VMAP_JACREV oracle. float32 model in eval mode, float64 accumulation of the (3072, 3072) AGOP.

    python benchmarks/bench_input_agop.py            # 256 images (64 for the oracle)
    python benchmarks/bench_input_agop.py --quick    # 32 images (16 for the oracle)
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from featlab.models import get
    from featlab.probes import agop

    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = get("vgg11", in_channels=3, num_classes=10, input_size=32).to(dev)
    n = 32 if args.quick else 256
    X = torch.randn(n, 3, 32, 32, device=dev)
    agop(model, X[:2])  # warm-up
    ref = None
    print(f"VGG11, 32x32x3, 10 outputs, batch {args.batch_size}, {torch.get_num_threads()} threads, device {dev}")
    for label, kw, m in [("autograd_sum (loop)", {}, n), ("autograd_sum (chunk 10)", {"chunk_size": 10}, n),
                         ("vmap_jacrev", {"method": "vmap_jacrev"}, max(n // 4, 8))]:
        t0 = time.perf_counter()
        G = agop(model, X[:m], batch_size=min(args.batch_size, m), **kw)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if ref is None:
            ref = G
            rel = 0.0
        else:
            rel = float((G - agop(model, X[:m], batch_size=args.batch_size)).norm() / G.norm()) if m != n else \
                float((G - ref).norm() / ref.norm())
        print(f"  {label:24s} {m:4d} images {dt:7.2f} s  {m / dt:8.1f} images/s  rel. diff vs loop {rel:.1e}")


if __name__ == "__main__":
    main()
