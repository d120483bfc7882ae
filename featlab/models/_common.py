"""Small helpers shared by the zoo architectures: output-size bookkeeping and errors."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["feature_shape", "check_positive"]


@torch.no_grad()
def feature_shape(features: nn.Module, in_channels: int, input_size: int, arch: str) -> tuple[int, ...]:
    """Shape ``(C, H, W)`` of ``features`` applied to one ``(in_channels, s, s)`` image.

    A dry run on zeros (train-mode BatchNorm sees one image; the running statistics are saved
    and restored). Raises ``ValueError`` naming ``arch`` and ``input_size`` when the input is
    too small for the architecture (a spatial size reaches 0 or a kernel exceeds its input).
    """
    state = {k: v.clone() for k, v in features.state_dict().items()}
    was_training = features.training
    features.eval()
    try:
        out = features(torch.zeros(1, in_channels, input_size, input_size))
    except RuntimeError as e:
        raise ValueError(f"input_size={input_size}: too small for {arch} ({str(e).splitlines()[0]})") from None
    finally:
        features.train(was_training)
        features.load_state_dict(state)
    if out.numel() == 0:
        raise ValueError(f"input_size={input_size}: too small for {arch} (features are empty)")
    return tuple(out.shape[1:])


def check_positive(**kw: int) -> None:
    """Raise a one-line ``ValueError`` for the first argument that is not a positive int."""
    for k, v in kw.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be a positive integer, got {v!r}")
