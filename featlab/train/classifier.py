"""Image-classification training loop shared by the experiments (spec diffeo_pooling §8.1).

Convention:
    Inputs ``(N, C, H, W)``; labels int64 class indices. The model returns logits
    ``(B, num_classes)`` ("ce", "mse") or one output ``(B,)``/``(B, 1)`` ("hinge"). Losses:
    "ce" = mean cross-entropy; "mse" = mean over samples *and* classes of (out − onehot(y))²
    (``nn.MSELoss`` default); "hinge" = mean relu(1 − α·out·y±) with y± = 2y − 1 ∈ {−1, +1}
    (labels must be 0/1; class 1 ↔ +1). The schedule is stepped once per epoch; ``history.lr[e]``
    is the lr used during epoch e (0-based). Checkpoint keys: ``0`` (init, before any step),
    positive ints (after that many optimizer steps), ``"end"``, and ``"best"`` (epoch of best
    *test* accuracy: the reference's test-set selection, a quirk). Checkpoints are CPU copies.
    All randomness (shuffling, crop/flip, corruption noise) is drawn from ``generator`` on its
    own device (CPU and CUDA streams differ), then moved to ``device``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as Fn
from torch import nn

from ..runs import DivergenceError
from ..utils.progress import Progress

__all__ = ["fit_classifier", "evaluate", "TrainHistory", "lr_factor", "crop_flip",
           "classification_loss", "SCHEDULES", "LOSSES"]

LOSSES = ("ce", "mse", "hinge")
SCHEDULES = ("cosine", "cosine_reference", "none", "exponential")
EXP_GAMMA = 0.975  # reference ``exponential`` scheduler decay per epoch


@dataclass
class TrainHistory:
    """Per-epoch record of :func:`fit_classifier` (lists are aligned, one entry per epoch).

    Attributes
    ----------
    epoch : list of int
        Completed epochs (1-based).
    step : list of int
        Optimizer steps after the epoch.
    train_loss, train_acc : list of float
        Mean over the epoch's mini-batches (train mode, augmented/corrupted inputs).
    test_loss, test_acc : list of float
        On the test set after the epoch (eval mode; corrupted if ``corruption_std > 0``).
    lr : list of float
        Learning rate used during the epoch.
    checkpoints : dict
        ``{0 | step | "end" | "best": state_dict}``, CPU tensor copies.
    best_epoch, best_test_acc : int, float
        Epoch (1-based) with the highest test accuracy, and that accuracy.
    """

    epoch: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    checkpoints: dict[Any, dict[str, torch.Tensor]] = field(default_factory=dict)
    best_epoch: int = 0
    best_test_acc: float = float("-inf")

    def records(self) -> list[dict[str, float]]:
        """One dict per epoch (for ``ctx.log_metrics(**row)``)."""
        keys = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
        return [{k: getattr(self, k)[i] for k in keys} for i in range(len(self.epoch))]

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's record (empty dict if no epoch ran)."""
        r = self.records()
        return r[-1] if r else {}


def lr_factor(schedule: str, epoch: int | float, epochs: int) -> float:
    """Multiplier of the base lr during ``epoch`` (0-based) of ``epochs``.

    Convention:
        "cosine": (1 + cos(π e/E))/2, reaching 0 at e = E. "cosine_reference" (quirk of
        diffeo-sota ``optim_loss.py``: ``CosineAnnealingLR(T_max=0.8·E)``): (1 + cos(π e/T))/2
        with T = 0.8·E, which reaches 0 at 0.8·E and then *climbs back*. "none": 1.
        "exponential": 0.975^e.
    """
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "cosine_reference":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / (0.8 * epochs)))
    if schedule == "none":
        return 1.0
    if schedule == "exponential":
        return EXP_GAMMA ** epoch
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def classification_loss(out: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                        hinge_alpha: float = 1.0) -> torch.Tensor:
    """Mean loss of outputs ``out`` against labels ``y`` (see the module Convention)."""
    if loss == "ce":
        return Fn.cross_entropy(out, y)
    if loss == "mse":
        return Fn.mse_loss(out, Fn.one_hot(y, out.shape[1]).to(out.dtype))
    if loss == "hinge":
        o = _single_output(out)  # (B,)
        return torch.relu(1.0 - hinge_alpha * o * (2 * y - 1).to(o.dtype)).mean()
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def _single_output(out: torch.Tensor) -> torch.Tensor:
    if out.ndim == 2 and out.shape[1] == 1:
        return out[:, 0]
    if out.ndim == 1:
        return out
    raise ValueError(f"loss='hinge' needs a model with one output, got output shape {tuple(out.shape)}")


def _n_correct(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "hinge":
        return ((_single_output(out) > 0).long() == y).sum()
    return (out.argmax(dim=1) == y).sum()


def crop_flip(x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding ``padding``, crop back to H×W) and horizontal flip (p = 1/2).

    Convention:
        Per image, offsets oy, ox ~ U{0..2p} and a flip bit are drawn from ``generator`` on its
        device; output[b, :, i, j] = pad(x)[b, :, oy+i, ox+j], then columns reversed if
        flipped (torchvision's RandomCrop(padding) + RandomHorizontalFlip, batched).
    """
    g = generator if generator is not None else torch.Generator()
    B = x.shape[0]
    oy = torch.randint(0, 2 * padding + 1, (B,), generator=g, device=g.device).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (B,), generator=g, device=g.device).to(x.device)
    flip = (torch.rand(B, generator=g, device=g.device) < 0.5).to(x.device)
    return _crop_flip_apply(x, oy, ox, flip, padding)


def _crop_flip_apply(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor,
                     padding: int) -> torch.Tensor:
    # one flat gather over the padded images (≈4x a per-image loop on CPU, see bench_train)
    B, C, H, W = x.shape
    Wp = W + 2 * padding
    xp = Fn.pad(x, (padding, padding, padding, padding)).flatten(2)  # (B, C, Hp·Wp)
    rows = oy[:, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = ox[:, None] + torch.arange(W, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx = (rows[:, :, None] * Wp + cols[:, None, :]).flatten(1)  # (B, H·W)
    return xp.gather(2, idx[:, None, :].expand(B, C, H * W)).view(B, C, H, W)


def _corrupt(x: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    # GaussianNoiseCorruption: std·N(0, I)/sqrt(C·H·W), so the noise norm is ≈ std
    if std == 0:
        return x
    z = torch.randn(x.shape, generator=g, device=g.device, dtype=x.dtype).to(x.device)
    return x + std * z / math.sqrt(x[0].numel())


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "ce",
             batch_size: int = 1024, hinge_alpha: float = 1.0, corruption_std: float = 0.0,
             generator: torch.Generator | None = None,
             device: str | torch.device | None = None) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)`` in eval mode (mode restored after).

    ``batch_size`` only bounds memory; the result does not depend on it (up to float
    summation order). ``corruption_std > 0`` adds fresh Gaussian noise (drawn from
    ``generator``) as the reference's test transform does.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    g = generator if generator is not None else torch.Generator()
    was = {m: m.training for m in model.modules()}
    model.eval()
    try:
        tot, correct = torch.zeros((), device=dev, dtype=torch.float64), torch.zeros((), device=dev)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
            out = model(_corrupt(xb, corruption_std, g))
            tot += classification_loss(out, yb, loss, hinge_alpha).double() * len(yb)
            correct += _n_correct(out, yb, loss)
    finally:
        for m, t in was.items():
            m.train(t)
    n = max(len(x), 1)
    return {"loss": float(tot) / n, "acc": float(correct) / n}


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def _param_groups(model: nn.Module, weight_decay: float, wd_on) -> list[dict]:
    params = [p for p in model.parameters() if p.requires_grad]
    if callable(wd_on):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        return [{"params": [p for n, p in named if wd_on(n, p)], "weight_decay": weight_decay},
                {"params": [p for n, p in named if not wd_on(n, p)], "weight_decay": 0.0}]
    if wd_on == "all":
        return [{"params": params, "weight_decay": weight_decay}]
    if wd_on == "ndim>1":
        return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
                {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    raise ValueError(f"wd_on must be 'all', 'ndim>1' or a callable, got {wd_on!r}")


def fit_classifier(model: nn.Module, data, *, loss: str = "ce", optimizer: str = "sgd",
                   lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4,
                   wd_on: str | Callable[[str, nn.Parameter], bool] = "all", epochs: int = 10,
                   batch_size: int = 128,
                   schedule: str = "cosine", augment: str | None = None, crop_padding: int = 4,
                   corruption_std: float = 0.0, hinge_alpha: float = 1.0,
                   checkpoints: Sequence[int | str] = (0, "end"), eval_batch_size: int = 1024,
                   generator: torch.Generator | None = None,
                   device: str | torch.device | None = None, progress: bool = True,
                   callback: Callable[[int, nn.Module, TrainHistory], bool | None] | None = None,
                   ) -> TrainHistory:
    """Train ``model`` on ``data`` (an :class:`~featlab.data.ImageData` or anything with
    ``x_train, y_train, x_test, y_test``) and return its :class:`TrainHistory`.

    Parameters
    ----------
    loss : {"ce", "mse", "hinge"}
        See the module Convention (hinge: 0/1 labels, one output, margin scale ``hinge_alpha``).
    optimizer : {"sgd", "adam"}
        SGD with ``momentum``, or Adam (``momentum`` unused); both with ``weight_decay``.
    wd_on : {"all", "ndim>1"} or callable
        Decay every parameter ([N21]-era reference) or only tensors with ndim > 1 ([I23]);
        a callable ``(name, parameter) -> bool`` picks the decayed parameters by name.
    epochs, batch_size : int
        Passes over the data; mini-batch size (a last batch of size 1 is dropped: it would
        crash train-mode BatchNorm).
    schedule : {"cosine", "cosine_reference", "none", "exponential"}
        Per-epoch lr multiplier, see :func:`lr_factor`. "cosine_reference" is a quirk.
    augment : {None, "crop_flip"}
        :func:`crop_flip` with ``crop_padding`` on each training batch.
    corruption_std : float
        Gaussian corruption std·N(0, I)/√(C·H·W) added to train *and* test inputs, fresh
        on every access (reference ``GaussianNoiseCorruption``).
    checkpoints : sequence of {0, positive int, "end", "best"}
        Which state dicts to keep (CPU copies); ints count optimizer steps.
    generator : torch.Generator, optional
        Source of all randomness; draws on its own device. None: a fresh default generator.
    device : str or torch.device, optional
        Where to train (model and data are moved there); default: the model's device.
    progress : bool
        Show a progress bar / periodic log lines over epochs.
    callback : callable, optional
        ``callback(epoch, model, history)`` after each epoch (1-based epoch); returning True
        stops training (the "end" checkpoint is still taken).

    Raises
    ------
    DivergenceError
        If an epoch's training loss is NaN or infinite.
    ValueError
        For any argument outside its allowed values (one line naming it).
    """
    _check_args(loss, optimizer, schedule, augment, epochs, batch_size, lr, corruption_std)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    g = generator if generator is not None else torch.Generator()
    model.to(dev)
    x_tr, y_tr = data.x_train.to(dev), data.y_train.to(dev)
    N = len(y_tr)
    if N == 0:
        raise ValueError("data has no training samples")
    if loss == "hinge" and not bool(((y_tr == 0) | (y_tr == 1)).all()):
        raise ValueError("loss='hinge' needs labels in {0, 1}")
    n_batches = N // batch_size + (1 if N % batch_size > 1 else 0)
    total_steps = max(n_batches, 1) * epochs
    keep = _check_checkpoints(checkpoints, total_steps)

    groups = _param_groups(model, weight_decay, wd_on)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum)
    else:
        opt = torch.optim.Adam(groups, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(schedule, e, epochs))

    hist = TrainHistory()
    if 0 in keep:
        hist.checkpoints[0] = _state_copy(model)
    step = 0
    with Progress(epochs, desc="train", unit="epoch", disable=None if progress else True) as bar:
        for epoch in range(1, epochs + 1):
            model.train()
            cur_lr = opt.param_groups[0]["lr"]
            perm = torch.randperm(N, generator=g, device=g.device).to(dev)
            tot = torch.zeros((), device=dev, dtype=torch.float64)
            correct = torch.zeros((), device=dev)
            seen = 0
            for i in range(n_batches):
                idx = perm[i * batch_size:(i + 1) * batch_size]
                xb, yb = x_tr[idx], y_tr[idx]  # (b, C, H, W), (b,)
                if augment == "crop_flip":
                    xb = crop_flip(xb, crop_padding, g)
                xb = _corrupt(xb, corruption_std, g)
                out = model(xb)
                L = classification_loss(out, yb, loss, hinge_alpha)
                opt.zero_grad(set_to_none=True)
                L.backward()
                opt.step()
                step += 1
                tot += L.detach().double() * len(yb)
                correct += _n_correct(out.detach(), yb, loss)
                seen += len(yb)
                if step in keep:
                    hist.checkpoints[step] = _state_copy(model)
            sched.step()
            train_loss = float(tot) / max(seen, 1)
            if not math.isfinite(train_loss):
                raise DivergenceError(f"training loss became non-finite ({train_loss}) in epoch {epoch}; "
                                      "lower lr or check the data")
            ev = evaluate(model, data.x_test, data.y_test, loss=loss, batch_size=eval_batch_size,
                          hinge_alpha=hinge_alpha, corruption_std=corruption_std, generator=g,
                          device=dev)
            hist.epoch.append(epoch)
            hist.step.append(step)
            hist.train_loss.append(train_loss)
            hist.train_acc.append(float(correct) / max(seen, 1))
            hist.test_loss.append(ev["loss"])
            hist.test_acc.append(ev["acc"])
            hist.lr.append(cur_lr)
            if ev["acc"] > hist.best_test_acc:
                hist.best_epoch, hist.best_test_acc = epoch, ev["acc"]
                if "best" in keep:
                    hist.checkpoints["best"] = _state_copy(model)
            bar.update(1, loss=train_loss, test_acc=ev["acc"])
            if callback is not None and callback(epoch, model, hist):
                break
    if "end" in keep:
        hist.checkpoints["end"] = _state_copy(model)
    return hist


def _check_args(loss, optimizer, schedule, augment, epochs, batch_size, lr, corruption_std) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if augment not in (None, "crop_flip"):
        raise ValueError(f"augment must be None or 'crop_flip', got {augment!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if corruption_std < 0:
        raise ValueError(f"corruption_std must be >= 0, got {corruption_std!r}")


def _check_checkpoints(checkpoints: Sequence[int | str], total_steps: int) -> set:
    keep: set = set()
    for c in checkpoints:
        if c in ("end", "best") or (isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= total_steps):
            keep.add(c)
        else:
            raise ValueError(f"checkpoints entries must be 'end', 'best' or a step in [0, {total_steps}], got {c!r}")
    return keep
