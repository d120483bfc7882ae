"""featlab.theory (public names below; implementation in submodules)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    # name: "submodule",  (each section below is owned by one work item; keep names sorted)
    # --- emergence theory (issue 3) ---
    "Trajectory": "_effective_dynamics", "amplifier": "_phi", "cumulant4": "cumulants",
    "effective_dynamics": "_effective_dynamics", "kappa4_contract": "cumulants",
    "marginal_kurtosis": "_phi", "nlgp_cumulant4": "cumulants", "phi": "_phi",
    "phi_binary": "_phi", "phi_gaussian": "_phi", "phi_kur": "_phi", "phi_nlgp": "_phi",
    "phi_taylor": "_phi", "ti_to_dense": "cumulants", "z_eigenvectors": "tensor_power",
    # --- constant-filter CNNs (pooling) ---
    "constant_filter_cnn": "cnn_constant_filters", "constant_filters": "cnn_constant_filters",
    "constant_filters_two_pixels": "cnn_constant_filters",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
