"""Model zoo: shapes, torchvision-compatible names, FC init closed form, errors, safe loading."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from featlab.models import zoo

SMALL = ["fc2", "fc4", "fc6", "lenet", "vanilla"]


@pytest.mark.parametrize("name", zoo.available())
def test_cardinality_every_net_3ch_32_and_1ch_28(name):
    # meta device: shapes without paying for the init of the large nets
    with torch.device("meta"):
        m = zoo.get(name)
        assert m(torch.empty(2, 3, 32, 32)).shape == (2, 10)
        m = zoo.get(name, in_channels=1, input_size=28, num_classes=7)
        assert m(torch.empty(3, 1, 28, 28)).shape == (3, 7)
        m = zoo.get(name, in_channels=1, input_size=32, num_classes=1)
        assert m(torch.empty(1, 1, 32, 32)).shape == (1, 1)


@pytest.mark.parametrize("name", SMALL)
def test_feature_small_nets_run_on_cpu_and_differ_per_image(name):
    g = torch.Generator().manual_seed(0)
    m = zoo.get(name, in_channels=1, input_size=28, generator=g).eval()
    x = torch.randn(4, 1, 28, 28, generator=g)
    y = m(x)
    assert torch.isfinite(y).all() and not torch.allclose(y[0], y[1])


@pytest.mark.parametrize("name", ["vanilla", "fc2", "fc4"])
def test_digits_8x8_supported(name):
    m = zoo.get(name, in_channels=1, input_size=8)
    assert m(torch.randn(5, 1, 8, 8)).shape == (5, 10)


@pytest.mark.parametrize("name,size", [("lenet", 8), ("vanilla", 4), ("alexnet", 4)])
def test_exception_too_small_input(name, size):
    kw = {"pool": "max"} if name == "vanilla" else {}
    with pytest.raises(ValueError, match="input_size"):
        zoo.get(name, input_size=size, **kw)


def test_exception_unknown_name_and_option():
    with pytest.raises(ValueError, match="name must be one of"):
        zoo.get("vgg12")
    with pytest.raises(ValueError, match="unknown option"):
        zoo.get("vanilla", widht=3)
    with pytest.raises(ValueError, match="pool"):
        zoo.get("vanilla", pool="median")


def test_available_contract():
    need = {"lenet", "alexnet", "vanilla", "fc2", "fc4", "fc6", "resnet18", "resnet34", "resnet50"}
    need |= {f"vgg{d}{s}" for d in (11, 13, 16, 19) for s in ("", "_bn")}
    assert need <= set(zoo.available())


def test_vgg11_parameter_names_torchvision():
    convs = [0, 3, 6, 8, 11, 13, 16, 18]  # torchvision vgg11 features indices
    expected = [f"features.{i}.{p}" for i in convs for p in ("weight", "bias")]
    with torch.device("meta"):
        cifar = zoo.get("vgg11")
        imnet = zoo.get("vgg11", variant="imagenet", num_classes=1000, input_size=224)
    assert list(cifar.state_dict()) == expected + ["classifier.weight", "classifier.bias"]
    assert list(imnet.state_dict()) == expected + [
        f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
    assert imnet.classifier[0].in_features == 25088


def test_vgg11_bn_node_names_match_reference():
    with torch.device("meta"):
        m = zoo.get("vgg11_bn")
        names = [n for n, _ in m.named_children()]
        assert len(m.features) == 30  # features.0 ... features.29 (spec §3.6)
        assert isinstance(m.features[29], nn.AvgPool2d) and names[-1] == "classifier"
        m1 = zoo.get("vgg11", in_channels=1, input_size=28)
        assert isinstance(m1.features[0], nn.ZeroPad2d)


def _resnet18_keys() -> list[str]:
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight"] + [f"bn1.{p}" for p in bn]
    for stage in range(1, 5):
        for b in range(2):
            pre = f"layer{stage}.{b}"
            keys += [f"{pre}.conv1.weight"] + [f"{pre}.bn1.{p}" for p in bn]
            keys += [f"{pre}.conv2.weight"] + [f"{pre}.bn2.{p}" for p in bn]
            if stage > 1 and b == 0:
                keys += [f"{pre}.downsample.0.weight"] + [f"{pre}.downsample.1.{p}" for p in bn]
    return keys + ["fc.weight", "fc.bias"]


def test_resnet18_parameter_names_torchvision():
    with torch.device("meta"):
        for variant in ("cifar", "imagenet"):
            m = zoo.get("resnet18", variant=variant, input_size=224 if variant == "imagenet" else 32)
            assert list(m.state_dict()) == _resnet18_keys()
        m = zoo.get("resnet50", variant="imagenet", num_classes=1000, input_size=224)
    sd = m.state_dict()
    assert len(sd) == 320 and sd["fc.weight"].shape == (1000, 2048)  # torchvision resnet50
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # v1.5: stride on the 3x3


def test_resnet_stem_conventions():
    with torch.device("meta"):
        c = zoo.get("resnet18")
        i = zoo.get("resnet18", variant="imagenet", input_size=224)
    assert c.conv1.kernel_size == (3, 3) and c.conv1.stride == (1, 1) and isinstance(c.maxpool, nn.Identity)
    assert i.conv1.kernel_size == (7, 7) and i.conv1.stride == (2, 2) and isinstance(i.maxpool, nn.MaxPool2d)


def test_inplace_relu_where_reference_has_it():
    with torch.device("meta"):
        v = zoo.get("vgg11")
        a = zoo.get("alexnet")
    assert all(m.inplace for m in v.modules() if isinstance(m, nn.ReLU))
    assert all(m.inplace for m in a.modules() if isinstance(m, nn.ReLU))
    r = zoo.get("lenet")
    assert not any(m.inplace for m in r.modules() if isinstance(m, nn.ReLU))


def test_vanilla_structure():
    m = zoo.get("vanilla", depth=3, width=8, in_channels=1, input_size=8)
    convs = [x for x in m.features if isinstance(x, nn.Conv2d)]
    assert len(convs) == 3 and all(c.bias is None and c.kernel_size == (3, 3) for c in convs)
    assert m.classifier[1].bias is None and m.classifier[1].in_features == 8 * 8 * 8
    m = zoo.get("vanilla", depth=2, width=4, padding=0, input_size=8, in_channels=1)
    assert m.classifier[1].in_features == 4 * 4 * 4


def test_feature_fc_init_output_variance_closed_form():
    # For fixed x: q1 = |x|^2/d + 1, q_{l+1} = q_l/2 + 1, E[out^2] = q_L/(2h), exactly in
    # expectation over W, b ~ N(0, 1). Monte Carlo over 3000 inits, 5 sigma tolerance.
    g = torch.Generator().manual_seed(0)
    d, h, L, n = 12, 16, 2, 3000
    x = torch.randn(1, 3, 2, 2, generator=g, dtype=torch.float64)
    m = zoo.get(f"fc{L}", in_channels=3, input_size=2, num_classes=1, width=h).double()
    outs = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for _ in range(n):  # re-draw the init in place (cheaper than building n nets)
            for mod in m.modules():
                if hasattr(mod, "scale"):
                    mod.reset_parameters()
            outs.append(m(x).item())
    o2 = torch.tensor(outs) ** 2
    q = x.pow(2).sum().item() / d + 1
    for _ in range(L - 1):
        q = q / 2 + 1
    expected = q / (2 * h)
    assert abs(o2.mean().item() - expected) < 5 * o2.std().item() / math.sqrt(n)
    # the hidden scaling really is 1/sqrt(d): weights are N(0, 1)
    m = zoo.get("fc4", width=256, generator=g)
    w = m.features[1].weight
    assert abs(w.std().item() - 1) < 0.02 and m.features[1].scale == pytest.approx(1 / math.sqrt(3072))
    assert m.classifier.scale == pytest.approx(1 / 256) and m.classifier.bias is None


def test_generator_seeds_init_without_touching_global_rng():
    torch.manual_seed(5)
    ref = torch.rand(3)
    torch.manual_seed(5)
    a = zoo.get("lenet", generator=torch.Generator().manual_seed(1))
    after = torch.rand(3)
    b = zoo.get("lenet", generator=torch.Generator().manual_seed(1))
    assert torch.equal(ref, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_load_state_dict_file_strips_module_prefix(tmp_path):
    g = torch.Generator().manual_seed(0)
    src = zoo.get("lenet", generator=g)
    path = tmp_path / "w.pt"
    torch.save({"net": {f"module.{k}": v for k, v in src.state_dict().items()}, "acc": 0.5}, path)
    dst = zoo.load_state_dict_file(zoo.get("lenet", generator=g), path)
    assert all(torch.equal(p, q) for p, q in zip(src.parameters(), dst.parameters()))
    torch.save(src.state_dict(), path)
    dst = zoo.load_state_dict_file(zoo.get("lenet"), path)
    assert torch.equal(dst.fc3.weight, src.fc3.weight)


def test_load_state_dict_file_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        zoo.load_state_dict_file(zoo.get("lenet"), path)


def test_convention_fc_forward_formula():
    g = torch.Generator().manual_seed(0)
    m = zoo.get("fc2", in_channels=1, input_size=3, width=5, num_classes=2, generator=g).double()
    x = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
    h = x.flatten(1)  # row-major flatten, d = 9
    W1, b1 = m.features[1].weight, m.features[1].bias
    W2, b2 = m.features[3].weight, m.features[3].bias
    h = torch.relu(h @ W1.T / 3.0 + b1)  # 1/sqrt(9)
    h = torch.relu(h @ W2.T / math.sqrt(5) + b2)
    out = h @ m.classifier.weight.T / 5  # readout 1/h, no bias
    assert torch.allclose(m(x), out, atol=1e-12)


def test_convention_lenet_flatten_size_matches_reference():
    assert zoo.get("lenet").fc1.in_features == 16 * 5 * 5
    assert zoo.get("lenet", in_channels=1, input_size=28).fc1.in_features == 16 * 4 * 4


def test_convention_vgg_1ch_zero_pad_shifts_indices():
    with torch.device("meta"):
        m1 = zoo.get("vgg11", in_channels=1, input_size=28)
        m0 = zoo.get("vgg11", in_channels=1, input_size=32, pad_1ch=False)
    assert m1.features[0].padding == (2, 2, 2, 2) and isinstance(m1.features[1], nn.Conv2d)
    assert isinstance(m0.features[0], nn.Conv2d)
    assert "features.1.weight" in m1.state_dict() and "features.0.weight" in m0.state_dict()


def test_efficientnet_block_skip_and_drop_connect():
    from featlab.models.efficientnet import MBConv
    blk = MBConv(8, 8, 3, 1, 6, drop_rate=0.5)
    nn.init.zeros_(blk.conv3.weight)
    nn.init.zeros_(blk.bn3.bias)
    x = torch.randn(4, 8, 5, 5)
    assert torch.equal(blk.eval()(x), x)  # residual branch is zero -> identity skip
    assert not MBConv(8, 16, 3, 1, 6).skip and not MBConv(8, 8, 3, 2, 6).skip
    blk = MBConv(8, 8, 3, 1, 6, drop_rate=0.5).train()
    torch.manual_seed(0)
    y = blk(x)  # train: per-sample drop-connect -> some samples are exactly the skip x
    dropped = [torch.equal(y[b], x[b]) for b in range(4)]
    assert any(dropped) and not all(dropped)
    blk.eval()
    assert torch.equal(blk(x), blk(x))


def test_vanilla_takes_rectangular_inputs_and_is_seeded_by_the_generator():
    import torch

    from featlab.models import get

    def build():
        return get("vanilla", in_channels=1, num_classes=2, input_size=(16, 32), depth=2, width=4,
                   generator=torch.Generator().manual_seed(3))

    a, b = build(), build()
    assert a.classifier[1].in_features == 4 * 16 * 32
    x = torch.randn(2, 1, 16, 32)
    assert torch.equal(a(x), b(x))  # every parameter, readout included, comes from the generator
    import pytest

    with pytest.raises(ValueError, match="input_size"):
        get("vanilla", input_size=(16, 0))
