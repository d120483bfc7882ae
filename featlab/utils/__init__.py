"""Small shared utilities: devices and random streams, progress reporting, atomic file I/O."""
from .device import derive_seed, make_generator, resolve_device
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .progress import Progress, progress

__all__ = [
    "derive_seed",
    "make_generator",
    "resolve_device",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "Progress",
    "progress",
]
