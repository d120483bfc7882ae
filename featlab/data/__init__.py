"""featlab.data (public names below; implementation in submodules)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    # name: "submodule",  (each section below is owned by one work item; keep names sorted)
    # --- kernels toys ---
    "bars": "toys",
    "digit_in_noise": "toys",
    "row_signal": "toys",
    # --- image data (zoo) ---
    "ImageData": "images",
    "load_cifar10": "images",
    "load_cifar100": "images",
    "load_digits": "images",
    "load_fashion_mnist": "images",
    "load_mnist": "images",
    "natural_patches": "images",
    # --- emergence data ---
    "Elliptical": "elliptical", "GaussianClone": "clone", "Ising": "ising", "KurK": "norta",
    "LatentField": "latent", "Mixture": "mixture", "NLGP": "nlgp", "StudentT": "elliptical",
    "ising_correlation_length": "ising", "latent_covariance": "latent", "nlgp_marginal_kurtosis": "nlgp",
    "norta_marginal_kurtosis": "norta", "targets": "mixture",
    # --- scale detection ---
    "local_diffeo_1d": "scale_detection", "local_translation": "scale_detection",
    "scale_detection_1d": "scale_detection", "scale_detection_1d_probes": "scale_detection",
    "twopoints": "scale_detection",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
