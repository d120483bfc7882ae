"""Speed of the image-classification training path (featlab.train.classifier, featlab.models).

1. batched crop+flip augmentation vs a per-image loop (B x 3 x 32 x 32, padding 4)
2. training throughput (images/s: forward + backward + SGD step, batch 128, 32x32x3) per zoo net
3. fit_classifier overhead: one epoch through fit_classifier vs a bare SGD loop (LeNet)

Usage: python benchmarks/bench_train.py [--quick] [--threads N] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import time
import types

import torch
import torch.nn.functional as Fn

from featlab.models import get
from featlab.train.classifier import crop_flip, fit_classifier


def best_of(fn, repeat: int, sync=lambda: None) -> float:
    times = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def crop_flip_loop(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """Per-image crop + flip, as a torchvision transform pipeline applies it."""
    out = torch.empty_like(x)
    H, W = x.shape[-2:]
    for b in range(x.shape[0]):
        p = Fn.pad(x[b], (padding,) * 4)
        oy = int(torch.randint(0, 2 * padding + 1, (1,), generator=g))
        ox = int(torch.randint(0, 2 * padding + 1, (1,), generator=g))
        c = p[:, oy:oy + H, ox:ox + W]
        out[b] = c.flip(-1) if float(torch.rand(1, generator=g)) < 0.5 else c
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, for CI smoke runs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave default; 1 is steadier on a shared machine)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    print(f"device={dev} threads={torch.get_num_threads()} quick={a.quick}")

    # 1. augmentation
    B = 256 if a.quick else 1024
    x = torch.rand(B, 3, 32, 32, generator=g)
    t_fast = best_of(lambda: crop_flip(x, 4, g), 3)
    t_loop = best_of(lambda: crop_flip_loop(x, 4, g), 1 if a.quick else 3)
    print(f"[1] crop_flip B={B}: batched {t_fast * 1e3:.1f} ms, per-image loop {t_loop * 1e3:.1f} ms, "
          f"speed-up {t_loop / t_fast:.1f}x")

    # 2. throughput per net
    nets = ["lenet", "fc4"] if a.quick else ["vanilla", "lenet", "fc4", "alexnet", "vgg11", "vgg11_bn", "resnet18"]
    steps = 2 if a.quick else 3
    bs = 128
    xb = torch.rand(bs, 3, 32, 32, generator=g).to(dev)
    yb = torch.randint(0, 10, (bs,), generator=g).to(dev)
    for name in nets:
        m = get(name, generator=g).to(dev).train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad()
            Fn.cross_entropy(m(xb), yb).backward()
            opt.step()

        step()  # warm-up
        t = best_of(lambda: [step() for _ in range(steps)], 1, sync) / steps
        print(f"[2] {name:9s} train {bs / t:9.0f} images/s ({t * 1e3:.1f} ms per batch of {bs})")

    # 3. loop overhead
    N = 1024 if a.quick else 4096
    data = types.SimpleNamespace(x_train=torch.rand(N, 3, 32, 32, generator=g),
                                 y_train=torch.randint(0, 10, (N,), generator=g),
                                 x_test=torch.rand(256, 3, 32, 32, generator=g),
                                 y_test=torch.randint(0, 10, (256,), generator=g))
    m = get("lenet", generator=g)
    t_fit = best_of(lambda: fit_classifier(m, data, epochs=1, progress=False, checkpoints=(),
                                           device=dev, generator=g), 2, sync)
    m = get("lenet", generator=g).to(dev)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    xs, ys = data.x_train.to(dev), data.y_train.to(dev)

    def bare():
        perm = torch.randperm(N, generator=g).to(dev)
        for i in range(0, N, 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            Fn.cross_entropy(m(xs[idx]), ys[idx]).backward()
            opt.step()
        with torch.no_grad():
            m.eval()
            m(data.x_test.to(dev))
            m.train()

    t_bare = best_of(bare, 2, sync)
    print(f"[3] lenet epoch N={N}: fit_classifier {t_fit * 1e3:.0f} ms, bare loop {t_bare * 1e3:.0f} ms, "
          f"overhead {100 * (t_fit / t_bare - 1):+.0f}%")


if __name__ == "__main__":
    main()
