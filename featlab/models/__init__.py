"""featlab.models (public names below; implementation in submodules)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    # name: "submodule",  (each section below is owned by one work item; keep names sorted)
    # --- emergence extensions (issue 3) ---
    "ConvTwoLayer": "softconv", "SoftConv": "softconv",
    # --- emergence (committee, follow-up nets) ---
    "MLP": "simplenet", "SimpleNet": "simplenet", "TwoLayer": "committee",
    # --- zoo (models, images, training) ---
    "AlexNet": "alexnet",
    "BasicBlock": "resnet",
    "Bottleneck": "resnet",
    "EfficientNet": "efficientnet",
    "FCNet": "fc",
    "LeNet": "lenet",
    "ResNet": "resnet",
    "ScaledLinear": "fc",
    "VGG": "vgg",
    "VanillaCNN": "vanilla",
    "available": "zoo",
    "get": "zoo",
    "load_state_dict_file": "zoo",
    # --- simple CNNs (scale detection) ---
    "SimpleCNN": "simple_cnn",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
