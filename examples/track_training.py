"""Record the three papers' lenses during your own training loop with ``featlab.probes.Tracker``.

    .venv/bin/python examples/track_training.py        # a small CNN on digits, 200 SGD steps
    .venv/bin/featlab report                            # the run appears on the `probe` page

The Tracker snapshots the model when it is created (the true init of every baseline), measures
the lenses every ``every`` steps on fixed probe images, and writes an ordinary ``probe`` run
directory (metrics.jsonl, arrays.npz, figures against step, summary.json, DONE).
"""
from __future__ import annotations

import torch
from torch import nn

from featlab.data import load_digits
from featlab.probes import Tracker


def main(steps: int = 200, every: int = 50, out: str = "runs", lenses=("auto",), n_images: int = 128) -> dict:
    torch.manual_seed(0)
    data = load_digits()                                           # (N, 1, 8, 8) in [0, 1]
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    with Tracker(model, data.x_test[:n_images], y=data.y_test[:n_images], every=every, out=out,
                 name="examples/track_training", lenses=lenses, overwrite=True) as tracker:
        for step in range(steps + 1):
            i = torch.randint(0, len(data.y_train), (64,), generator=g)
            loss = nn.functional.cross_entropy(model(data.x_train[i]), data.y_train[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tracker.step(step)                                     # measures when step % every == 0
    return tracker.rundir.read_summary()


if __name__ == "__main__":
    s = main()
    print({k: v for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
