"""Small helpers shared by the zoo architectures: output-size bookkeeping and errors."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["feature_shape", "check_positive", "pad_1ch_default"]


def pad_1ch_default(in_channels: int, input_size) -> bool:
    """Whether a CIFAR-variant VGG/AlexNet pads its input by 2 (diffeo-sota ``num_ch == 1``).

    The reference pads every 1-channel input, and its 1-channel inputs are all 28×28 (MNIST,
    FashionMNIST, two-points d = 28): the pad exists to reach 32×32. featlab pads exactly there.
    """
    return in_channels == 1 and input_size == 28


@torch.no_grad()
def feature_shape(features: nn.Module, in_channels: int, input_size: int | tuple[int, int],
                  arch: str) -> tuple[int, ...]:
    """Shape ``(C, H, W)`` of ``features`` applied to one ``(in_channels, s, s)`` image.

    ``input_size`` is ``s`` (square) or ``(H, W)``.

    A dry run on zeros (train-mode BatchNorm sees one image; the running statistics are saved
    and restored). Raises ``ValueError`` naming ``arch`` and ``input_size`` when the input is
    too small for the architecture (a spatial size reaches 0 or a kernel exceeds its input).
    """
    state = {k: v.clone() for k, v in features.state_dict().items()}
    was_training = features.training
    features.eval()
    try:
        out = features(torch.zeros(1, in_channels, *image_hw(input_size)))
    except RuntimeError as e:
        raise ValueError(f"input_size={input_size}: too small for {arch} ({str(e).splitlines()[0]})") from None
    finally:
        features.train(was_training)
        features.load_state_dict(state)
    if out.numel() == 0:
        raise ValueError(f"input_size={input_size}: too small for {arch} (features are empty)")
    return tuple(out.shape[1:])


def image_hw(input_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` from ``s`` (square images) or an ``(H, W)`` pair of positive integers."""
    hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in hw):
        raise ValueError(f"input_size must be a positive integer or an (H, W) pair, got {input_size!r}")
    return hw  # type: ignore[return-value]


def check_positive(**kw: int) -> None:
    """Raise a one-line ``ValueError`` for the first argument that is not a positive int."""
    for k, v in kw.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be a positive integer, got {v!r}")
