"""featlab.models (public names below; implementation in submodules)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    # name: "submodule",  (each section below is owned by one work item; keep names sorted)
    # --- simple CNNs (scale detection) ---
    "SimpleCNN": "simple_cnn",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
