"""featlab.train (public names below; implementation in submodules)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    # name: "submodule",  (each section below is owned by one work item; keep names sorted)
    # --- emergence (online SGD) ---
    "OnlineResult": "online", "SGDBackend": "online", "eval_schedule": "online",
    "train_committee": "online", "train_modules": "online",
    # --- image classifiers (zoo) ---
    "TrainHistory": "classifier",
    "evaluate": "classifier",
    "fit_classifier": "classifier",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
