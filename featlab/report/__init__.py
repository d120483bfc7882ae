"""The self-contained HTML report (:mod:`.html`) and the grouping and verdict rules it applies (:mod:`.groups`)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    "build_report": "html",
    "evaluate_claims": "html",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
