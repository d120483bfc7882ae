"""featlab.diffeo (public names below; implementation in submodules)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    # name: "submodule",  (each section below is owned by one work item; keep names sorted)
    # --- diffeo (issue 6A) ---
    "Diffeo": "module",
    "deform": "warp",
    "displacement_stats": "temperature",
    "gaussian_blur_reference": "warp",
    "sample_displacement": "fields",
    "temperature_range": "temperature",
    "typical_displacement": "temperature",
    "typical_temperature": "temperature",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
