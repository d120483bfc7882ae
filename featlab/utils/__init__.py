"""Small shared utilities: devices and random streams, progress reporting, atomic file I/O,
CPU thread counts."""
from .device import derive_seed, make_generator, resolve_device
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text, fsync_dir
from .progress import Progress, progress
from .threads import ThreadPlan, auto_threads, thread_limits

__all__ = [
    "derive_seed",
    "make_generator",
    "resolve_device",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "ThreadPlan",
    "auto_threads",
    "thread_limits",
    "Progress",
    "progress",
]
