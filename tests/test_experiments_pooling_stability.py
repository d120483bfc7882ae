"""`pooling` and `stability` on CUDA, the scale-detection generators and the pooling SGD hyper-parameters
(the stability tests live in test_experiment_stability.py, the pooling ones in test_pooling.py)."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from featlab.cli import main


@pytest.mark.cuda
@pytest.mark.slow
def test_pooling_and_stability_run_on_cuda(tmp_path):
    for name, sets in (("pooling", ["model.width=8", "train.epochs=1", "data.P=32", "data.P_test=32",
                                    "probe.n_images=16"]),
                       ("stability", ["train.epochs=1", "probe.n_images=16", "data.n_train=100"])):
        args = ["run", name, "--preset", "tiny", "--device", "cuda", "--out", str(tmp_path), "--quiet"]
        for s in sets:
            args += ["--set", s]
        r = CliRunner().invoke(main, args, catch_exceptions=False)
        assert r.exit_code == 0 and "DONE: " in r.output, r.output


def test_convention_scale_detection_generators_draw_on_their_device():
    """The local diffeo draws its shifts from the given generator: same seed, same output."""
    from featlab.data.scale_detection import local_diffeo_1d, render_1d

    x = render_1d(torch.tensor([[3, 9], [20, 30]]), 32)
    a = local_diffeo_1d(x, 8, torch.Generator().manual_seed(5))
    b = local_diffeo_1d(x, 8, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_sgd_hyper_reproduces_one_step_of_the_reference_objective():
    """lr·H/α̃ with decay 2·ridge/(H·nbl)·α̃ = a step LR·H on (1/α̃)·hinge + ridge·ΣW²/(H·nbl)."""
    import dataclasses

    import torch

    from featlab.experiments.pooling import PoolingConfig, sgd_hyper

    c = PoolingConfig()
    cfg = dataclasses.replace(c, model=dataclasses.replace(c.model, alpha=0.1, width=8, depth=3),
                              train=dataclasses.replace(c.train, ridge=0.05, lr=0.01))
    H, nbl, a, ridge, LR = 8, 3, 0.1, 0.05, 0.01
    torch.manual_seed(0)
    W0, x, y = torch.randn(4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64), torch.ones(6)

    def hinge(W):
        return torch.relu(1 - y * (x @ W)).mean()

    W = W0.clone().requires_grad_(True)
    ((hinge(W) / a) + ridge * (W ** 2).sum() / (H * nbl)).backward()
    ref = W0 - LR * H * W.grad
    lr, wd = sgd_hyper(cfg)
    V = torch.nn.Parameter(W0.clone())
    opt = torch.optim.SGD([V], lr=lr, weight_decay=wd)
    hinge(V).backward()
    opt.step()
    assert torch.allclose(V.detach(), ref, atol=1e-12)
