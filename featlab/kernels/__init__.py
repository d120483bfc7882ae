"""featlab.kernels (public names below; implementation in submodules)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    # name: "submodule",  (each section below is owned by one work item; keep names sorted)
    # --- kernels (RFM, ConvRFM, CNTK) ---
    "ConvRFM": "convrfm",
    "ConvRFMClassifier": "convrfm",
    "ConvRFMRegressor": "convrfm",
    "DeepConvRFM": "deep_convrfm",
    "DeepConvRFMClassifier": "deep_convrfm",
    "RFM": "rfm",
    "RFMClassifier": "rfm",
    "RFMRegressor": "rfm",
    "Solver": "solvers",
    "TestSetGuard": "deep_convrfm",
    "cntk": "_cntk",
    "edge_map": "viz",
    "gaussian_kernel": "mahalanobis",
    "kernel_agop": "rfm",
    "laplace_kernel": "mahalanobis",
    "top_eigenfilters": "viz",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
