"""featlab.theory (public names below; implementation in submodules)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    # name: "submodule",  (each section below is owned by one work item; keep names sorted)
    # --- constant-filter CNNs (pooling) ---
    "constant_filters": "cnn_constant_filters",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
