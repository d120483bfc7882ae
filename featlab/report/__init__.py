"""The self-contained HTML report (see :mod:`.html`)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    "build_report": "html",
    "evaluate_claims": "html",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
