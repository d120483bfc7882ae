"""Training loop: learning, schedules, losses, checkpoints, augmentation, corruption, errors."""
from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as Fn
from torch import nn

from featlab.runs import DivergenceError
from featlab.train.classifier import (
    _corrupt,
    _crop_flip_apply,
    classification_loss,
    crop_flip,
    evaluate,
    fit_classifier,
    lr_factor,
)


def _blobs(n=64, classes=2, seed=0):
    """Separable 1×4×4 images: class k has mean +3 on pixel k, noise 0.3."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.3 * torch.randn(n, 1, 4, 4, generator=g)
    x.view(n, -1)[torch.arange(n), y] += 3.0
    return types.SimpleNamespace(x_train=x, y_train=y, x_test=x[: n // 2], y_test=y[: n // 2])


def _net(out=2, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, out))


@pytest.mark.parametrize("loss,out", [("ce", 2), ("mse", 2), ("hinge", 1)])
def test_feature_loss_decreases_on_separable_problem(loss, out):
    data = _blobs()
    h = fit_classifier(_net(out), data, loss=loss, lr=0.05, epochs=15, batch_size=16,
                       generator=torch.Generator().manual_seed(1), progress=False)
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert h.test_acc[-1] == 1.0 and len(h.epoch) == 15 and h.step[-1] == 15 * 4


def test_feature_adam_and_reproducible_with_generator():
    data = _blobs()
    kw = dict(optimizer="adam", lr=1e-2, epochs=3, batch_size=10, progress=False)
    a = fit_classifier(_net(), data, generator=torch.Generator().manual_seed(3), **kw)
    b = fit_classifier(_net(), data, generator=torch.Generator().manual_seed(3), **kw)
    c = fit_classifier(_net(), data, generator=torch.Generator().manual_seed(4), **kw)
    assert a.train_loss == b.train_loss and a.train_loss != c.train_loss
    assert torch.equal(a.checkpoints["end"]["3.weight"], b.checkpoints["end"]["3.weight"])


def test_convention_cosine_ends_at_zero_and_history_lr():
    E = 10
    assert lr_factor("cosine", 0, E) == 1.0 and abs(lr_factor("cosine", E, E)) < 1e-15
    assert all(lr_factor("cosine", e + 1, E) < lr_factor("cosine", e, E) for e in range(E))
    h = fit_classifier(_net(), _blobs(n=16), lr=0.1, epochs=4, batch_size=16, progress=False)
    assert h.lr == pytest.approx([0.1 * lr_factor("cosine", e, 4) for e in range(4)])


def test_convention_cosine_reference_climbs_back_after_08_epochs():
    E = 20
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=0.8 * E)
    torch_lrs = []
    for _ in range(E + 1):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    ours = [lr_factor("cosine_reference", e, E) for e in range(E + 1)]
    assert ours == pytest.approx(torch_lrs, abs=1e-12)
    assert abs(ours[16]) < 1e-12 and ours[20] > ours[18] > ours[16]  # climbs back after 0.8·E


def test_schedules_none_and_exponential():
    assert lr_factor("none", 7, 10) == 1.0
    assert lr_factor("exponential", 3, 10) == pytest.approx(0.975**3)
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("step", 0, 10)


def test_convention_loss_targets():
    y = torch.tensor([0, 1, 2])
    out = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.0, 0.0, 3.0]])
    onehot = torch.eye(3)[y]
    assert classification_loss(out, y, "mse") == pytest.approx(((out - onehot) ** 2).mean().item())
    ce = -torch.log_softmax(out, 1)[torch.arange(3), y].mean()
    assert classification_loss(out, y, "ce") == pytest.approx(ce.item())
    # hinge: class 1 <-> +1, class 0 <-> -1; mean relu(1 - alpha o y)
    o = torch.tensor([[2.0], [-0.5]])
    yb = torch.tensor([1, 1])
    assert classification_loss(o, yb, "hinge") == pytest.approx((0 + 1.5) / 2)
    assert classification_loss(o, 1 - yb, "hinge") == pytest.approx((3.0 + 0.5) / 2)
    assert classification_loss(o, yb, "hinge", hinge_alpha=0.25) == pytest.approx((0.5 + 1.125) / 2)
    with pytest.raises(ValueError, match="one output"):
        classification_loss(out, y, "hinge")


def test_checkpoints_init_and_end_are_copies():
    model = _net()
    w0 = model[1].weight.detach().clone()
    h = fit_classifier(model, _blobs(n=32), epochs=2, batch_size=8, checkpoints=(0, 3, "end", "best"),
                       progress=False)
    assert set(h.checkpoints) == {0, 3, "end", "best"}
    assert torch.equal(h.checkpoints[0]["1.weight"], w0)
    assert torch.equal(h.checkpoints["end"]["1.weight"], model[1].weight)
    assert not torch.equal(h.checkpoints[3]["1.weight"], w0)
    assert not torch.equal(h.checkpoints[3]["1.weight"], model[1].weight)
    with torch.no_grad():
        model[1].weight.add_(1.0)
    assert not torch.equal(h.checkpoints["end"]["1.weight"], model[1].weight)  # a copy
    assert h.checkpoints["end"]["1.weight"].data_ptr() != model[1].weight.data_ptr()
    with pytest.raises(ValueError, match="checkpoints"):
        fit_classifier(_net(), _blobs(n=32), epochs=1, batch_size=8, checkpoints=(99,), progress=False)


def test_step_checkpoint_equals_training_that_many_steps():
    data = _blobs(n=32)
    kw = dict(batch_size=16, progress=False, schedule="none")
    long = fit_classifier(_net(), data, epochs=3, checkpoints=(2,), generator=torch.Generator().manual_seed(0), **kw)
    short = fit_classifier(_net(), data, epochs=1, checkpoints=("end",), generator=torch.Generator().manual_seed(0), **kw)
    assert all(torch.equal(long.checkpoints[2][k], short.checkpoints["end"][k]) for k in short.checkpoints["end"])


def test_exception_divergence_raises():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 2)

        def forward(self, x):
            return self.lin(x.flatten(1)) * float("nan")

    with pytest.raises(DivergenceError, match="non-finite"):
        fit_classifier(Bad(), _blobs(n=16), epochs=1, batch_size=8, progress=False)


def test_exception_bad_arguments():
    d = _blobs(n=16)
    for kw, name in [({"loss": "l1"}, "loss"), ({"optimizer": "lbfgs"}, "optimizer"),
                     ({"augment": "mixup"}, "augment"), ({"wd_on": "some"}, "wd_on"),
                     ({"epochs": 0}, "epochs")]:
        with pytest.raises(ValueError, match=name):
            fit_classifier(_net(), d, progress=False, **kw)
    with pytest.raises(ValueError, match="labels"):
        fit_classifier(_net(1), _blobs(n=16, classes=3), loss="hinge", progress=False)


def test_wd_on_ndim_gt1_leaves_biases_undecayed():
    # zero gradient (lr acts on wd only): with wd_on="ndim>1" the bias must not move
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.fill_(0.5)
        model[1].bias.fill_(0.5)
    data = types.SimpleNamespace(x_train=torch.zeros(4, 1, 4, 4), y_train=torch.tensor([0, 1, 0, 1]),
                                 x_test=torch.zeros(2, 1, 4, 4), y_test=torch.tensor([0, 1]))
    fit_classifier(model, data, loss="mse", lr=0.1, momentum=0.0, weight_decay=0.5, wd_on="ndim>1",
                   epochs=1, batch_size=4, schedule="none", progress=False)
    assert torch.allclose(model[1].weight, torch.full((2, 16), 0.5 * (1 - 0.1 * 0.5)))
    # bias moves only by the mse gradient 2(b - onehot)/(n·c) averaged: check it is undecayed
    b_grad = 2 * (0.5 - torch.tensor([0.5, 0.5])) / 2
    assert torch.allclose(model[1].bias, 0.5 - 0.1 * b_grad)


def test_crop_flip_matches_per_image_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 5, 7, generator=g)
    p = 2
    oy = torch.randint(0, 2 * p + 1, (6,), generator=g)
    ox = torch.randint(0, 2 * p + 1, (6,), generator=g)
    flip = torch.tensor([True, False, True, False, False, True])
    fast = _crop_flip_apply(x, oy, ox, flip, p)
    for b in range(6):
        ref = Fn.pad(x[b], (p, p, p, p))[:, oy[b]:oy[b] + 5, ox[b]:ox[b] + 7]
        if flip[b]:
            ref = ref.flip(-1)
        assert torch.equal(fast[b], ref)
    out = crop_flip(x, 2, torch.Generator().manual_seed(1))
    assert out.shape == x.shape


def test_convention_crop_offset_and_flip_direction():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    # offset (p, p) and no flip is the identity; offset (p, p+1) shifts content left by 1
    one = torch.ones(1, dtype=torch.long)
    assert torch.equal(_crop_flip_apply(x, one, one, torch.tensor([False]), 1), x)
    shifted = _crop_flip_apply(x, one, 2 * one, torch.tensor([False]), 1)
    assert torch.equal(shifted[0, 0, :, :2], x[0, 0, :, 1:]) and (shifted[0, 0, :, 2] == 0).all()
    assert torch.equal(_crop_flip_apply(x, one, one, torch.tensor([True]), 1), x.flip(-1))


def test_corruption_noise_norm_is_std():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(200, 3, 8, 8)
    z = _corrupt(x, 2.5, g)
    norms = z.flatten(1).norm(dim=1)
    assert norms.mean().item() == pytest.approx(2.5, rel=0.02)


def test_evaluate_independent_of_batch_size_and_restores_mode():
    data = _blobs(n=40)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2), nn.BatchNorm1d(2)).train()
    a = evaluate(model, data.x_train, data.y_train, batch_size=7)
    b = evaluate(model, data.x_train, data.y_train, batch_size=40)
    assert a["acc"] == b["acc"] and a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    assert model.training and model[2].training


def test_callback_can_stop_early():
    h = fit_classifier(_net(), _blobs(n=16), epochs=5, batch_size=8, progress=False,
                       callback=lambda e, m, hist: e >= 2)
    assert h.epoch == [1, 2] and "end" in h.checkpoints


@pytest.mark.cuda
def test_cuda_training_with_cuda_generator():
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    h = fit_classifier(_net(), _blobs(), lr=0.05, epochs=5, batch_size=16, augment="crop_flip",
                       crop_padding=1, corruption_std=0.1, generator=g, device=dev, progress=False)
    assert h.train_loss[-1] < h.train_loss[0]
    assert h.checkpoints["end"]["1.weight"].device.type == "cpu"
