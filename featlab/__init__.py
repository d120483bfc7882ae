"""featlab: a toolkit for the science of feature learning.

Subpackages: ``data`` (data models and image data), ``models`` (networks and model zoo),
``train`` (training loops), ``probes`` (IPR, AGOP, D/G/R...), ``diffeo`` (diffeomorphisms),
``kernels`` (RFM, ConvRFM...), ``theory`` (analytical models), ``experiments``, ``runs``,
``sweep``, ``report`` and ``cli``.
"""
__version__ = "0.1.0"

__all__ = ["__version__"]
