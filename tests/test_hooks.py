import pytest
import torch
from torch import nn

from featlab.probes import capture, eval_mode, get_module


def _net():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.BatchNorm2d(2))


def test_convention_capture_clones_so_inplace_relu_cannot_overwrite():
    torch.manual_seed(0)
    net = _net().eval()
    x = torch.randn(4, 1, 6, 6)
    with capture(net, ["0"]) as c:
        net(x)
    assert (c["0"][0] < 0).any()  # the pre-ReLU conv output keeps its negative values
    with capture(net, ["0"], clone=False) as c2:
        net(x)
    assert not (c2["0"][0] < 0).any()  # without cloning the in-place ReLU overwrote it
    assert not net[0]._forward_hooks  # hooks removed


def test_hooks_removed_on_error_and_eval_mode_restored():
    net = _net().train()
    with pytest.raises(RuntimeError):
        with capture(net, ["2"]):
            with eval_mode(net):
                assert not net[2].training
                raise RuntimeError
    assert net[2].training and not net[2]._forward_hooks
    with pytest.raises(KeyError, match="available"):
        get_module(net, "features.9")
