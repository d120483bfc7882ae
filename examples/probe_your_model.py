"""Call featlab's probes on your own model, in your own script.

    .venv/bin/python examples/probe_your_model.py            # a small CNN, trained briefly on digits

Every probe takes any ``torch.nn.Module`` and addresses layers by their ``named_modules()`` names.
Probes put the model in eval mode and restore it, remove their hooks, and return float64 results.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from featlab.data import load_digits
from featlab.diffeo import typical_temperature
from featlab.probes import agop, cnfa, ipr, laplacian_spectrum, patch_agop, stability
from featlab.train import fit_classifier


def main(epochs: int = 3, n_images: int = 128) -> dict:
    g = torch.Generator().manual_seed(0)
    data = load_digits()                                     # ImageData, x: (N, 1, 8, 8) in [0, 1]
    torch.manual_seed(0)
    model = nn.Sequential(                                   # your model: any nn.Module
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 8 * 8, 10),
    )
    init = copy.deepcopy(model.state_dict())
    fit_classifier(model, data, loss="ce", optimizer="adam", lr=3e-3, epochs=epochs, batch_size=64,
                   generator=g, progress=False)
    X = data.x_test[:n_images]                                # (n, 1, 8, 8)

    G = agop(model, X)                                       # (64, 64): mean over samples, sum over logits
    Gp = patch_agop(model, "2", X)                           # (16*3*3, 16*3*3), conv weight's flatten order
    rows = cnfa(model, X, init_state=init)                   # one row per conv layer, with baselines
    T = typical_temperature(1.0, 3, 8)                       # diffeos of typical displacement 1 px, cut 3
    s = stability(model, X, T=T, cut=3, layers=["1", "3"], generator=g)  # D, G, R of output and layers
    spec = laplacian_spectrum(model[0].weight.detach(), normalise=True)  # first-layer filter spectrum
    w_ipr = ipr(model[0].weight.detach().flatten(1))         # (16,) localisation of each filter

    out = {
        "agop_trace": float(G.trace()),
        "patch_agop_shape": tuple(Gp.shape),
        "cnfa": {r.layer: round(r.rho_trained, 3) for r in rows},
        "D": s["D"], "G": s["G"], "R": s["R"],
        "R_layers": {k: v["R"] for k, v in s["layers"].items()},
        "spectrum_low_lambda_weight": float(spec.gamma[0]),
        "filter_ipr_mean": float(w_ipr.mean()),
    }
    return out


if __name__ == "__main__":
    for k, v in main().items():
        print(f"{k}: {v}")
