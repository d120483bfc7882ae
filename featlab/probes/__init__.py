"""featlab.probes (public names below; implementation in submodules)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    # name: "submodule",  (each section below is owned by one work item; keep names sorted)
    # --- emergence (IPR, receptive fields) ---
    "WidthMethod": "receptive", "circular_centre": "receptive", "circular_std": "receptive",
    "concentration": "receptive", "fwhm": "receptive", "ipr": "_ipr", "ipr_baseline": "_ipr",
    "localised": "_ipr", "participation_ratio": "_ipr", "periodic_distance": "receptive",
    "position_moments": "receptive", "preactivation_kurtosis": "_ipr", "profile": "receptive",
    "rayleigh_test": "receptive", "tiling": "receptive",
    # --- diffeo stability (h6a; _stability: a submodule named like its function would shadow it) ---
    "grid_laplacian": "spectrum",
    "laplacian_spectrum": "spectrum",
    "matched_noise": "noise",
    "shuffle_channels": "shuffle",
    "stability": "_stability",
    # --- agop (h4b; private modules: a submodule named like its function would shadow it) ---
    "AGOPMethod": "_agop",
    "PatchAGOPMethod": "_patch_agop",
    "agop": "_agop",
    "cnfa": "_cnfa",
    "cnfa_nulls": "_cnfa",
    "cnfa_reference_layers": "_cnfa",
    "correlation": "_correlation",
    "matrix_power_psd": "_nfa",
    "nfa": "_nfa",
    "patch_agop": "_patch_agop",
    # --- probe workflow (issue 16: lenses on any model, the training-loop Tracker) ---
    "LensSuite": "lenses",
    "Tracker": "tracker",
    "linear_output_grams": "output_gram",
    "output_selected": "adapt",
    "select_output": "adapt",
    # --- hooks (foundation) ---
    "capture": "hooks",
    "eval_mode": "hooks",
    "get_module": "hooks",
    "layer_names": "hooks",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
