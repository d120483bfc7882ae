"""Where a model comes from: a zoo name or a user's factory, and its checkpoint files.

A *model source* is one string:

- ``zoo:NAME`` builds :func:`featlab.models.get` ``(NAME, ...)``;
- ``path/to/file.py:FACTORY`` loads the Python file as a fresh module and calls ``FACTORY``;
- ``package.module:FACTORY`` imports the module and calls ``FACTORY``.

Loading a factory **executes the user's code** (the file or module runs on import, then the
factory is called): that is the point, so only name code you trust. Checkpoints, on the other
hand, are data: they are read with ``torch.load(weights_only=True)`` only, which refuses
anything but tensors and plain containers and never runs code.

Convention:
    A factory is called with the keyword arguments given (``kwargs``) and must return an
    ``nn.Module``; its initialisation is seeded by running it under
    ``torch.random.fork_rng`` with ``torch.manual_seed(seed)``, so the global RNG is left as
    it was and the same seed gives the same init without the factory taking a generator. A
    checkpoint is a state dict, or a dict wrapping one under ``state_dict`` / ``model`` /
    ``model_state_dict`` / ``net`` (or the key given); DataParallel ``module.`` prefixes and
    a given ``prefix`` (e.g. Lightning's ``model.``) are stripped. Its step is read from the
    file's ``global_step`` / ``step`` / ``epoch`` entries, else from the file name
    (``step=120``, ``epoch_3``); the last integer of the name is kept apart as a weaker clue.
"""
from __future__ import annotations

import ast
import glob
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["SourceError", "ModelSource", "parse_source", "load_factory", "build_model", "parse_kwargs",
           "sha256_file", "expand_weights", "Checkpoint", "read_checkpoint"]

_WRAPPERS = ("state_dict", "model_state_dict", "model", "net")


class SourceError(ValueError):
    """A model source, factory or checkpoint that cannot be used; the message is one line."""


@dataclass(frozen=True)
class ModelSource:
    """A parsed source: ``kind`` in {"zoo", "file", "module"}, the ``target`` (zoo name, file
    path or module name) and the factory ``attr`` (None for the zoo)."""

    kind: str
    target: str
    attr: str | None

    @property
    def file(self) -> Path | None:
        """The factory file (``kind == "file"``), else None."""
        return Path(self.target).expanduser() if self.kind == "file" else None


def parse_source(text: str) -> ModelSource:
    """Parse ``zoo:NAME``, ``path/file.py:FACTORY`` or ``package.module:FACTORY``."""
    text = str(text).strip()
    if text.startswith("zoo:"):
        name = text[4:]
        from .zoo import available

        if name not in available():
            raise SourceError(f"unknown zoo model {name!r}; allowed: {', '.join(available())}")
        return ModelSource("zoo", name, None)
    target, sep, attr = text.rpartition(":")
    if not sep or not target or not attr:
        raise SourceError(f"{text!r} is not a model source; write zoo:NAME, path/to/file.py:FACTORY "
                          "or package.module:FACTORY")
    if not attr.isidentifier():
        raise SourceError(f"factory name {attr!r} is not a Python identifier")
    if target.endswith(".py") or os.sep in target or "/" in target:
        return ModelSource("file", target, attr)
    if not all(p.isidentifier() for p in target.split(".")):
        raise SourceError(f"{target!r} is neither a .py file nor a module name")
    return ModelSource("module", target, attr)


def load_factory(source: ModelSource | str) -> Callable[..., nn.Module]:
    """Import the factory of ``source`` (runs the user's file/module) and return it.

    The zoo returns :func:`featlab.models.get` bound to the name. A file is executed as a new
    module named after its path, so two files with the same name do not collide.
    """
    src = parse_source(source) if isinstance(source, str) else source
    if src.kind == "zoo":
        from .zoo import get

        return lambda **kw: get(src.target, **kw)
    if src.kind == "file":
        path = src.file
        if not path.is_file():
            raise SourceError(f"factory file not found: {str(path)!r}")
        name = "featlab_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SourceError(f"cannot load {str(path)!r} as a Python module")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses and pickling look modules up by name
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # noqa: BLE001 - the user's code: report it in one line
            sys.modules.pop(name, None)
            raise SourceError(f"running {str(path)!r} raised {type(e).__name__}: {e}") from e
    else:
        try:
            mod = importlib.import_module(src.target)
        except ImportError as e:
            raise SourceError(f"cannot import module {src.target!r}: {e}") from e
        except Exception as e:  # noqa: BLE001
            raise SourceError(f"importing {src.target!r} raised {type(e).__name__}: {e}") from e
    fn = getattr(mod, src.attr, None)
    if fn is None:
        public = sorted(k for k, v in vars(mod).items() if callable(v) and not k.startswith("_"))
        raise SourceError(f"{src.target!r} has no attribute {src.attr!r}; callables there: "
                          f"{', '.join(public) or '(none)'}")
    if not callable(fn):
        raise SourceError(f"{src.target}:{src.attr} is not callable")
    return fn


def build_model(source: ModelSource | str, kwargs: dict | None = None, *, seed: int | None = None,
                factory: Callable[..., nn.Module] | None = None) -> nn.Module:
    """Call the factory of ``source`` with ``kwargs`` under a seeded, forked RNG.

    ``factory`` skips the import (pass the result of :func:`load_factory` to build several
    models from one import). Returns the module on the CPU.
    """
    src = parse_source(source) if isinstance(source, str) else source
    fn = factory if factory is not None else load_factory(src)
    label = f"zoo:{src.target}" if src.kind == "zoo" else f"{src.target}:{src.attr}"
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = fn(**(kwargs or {}))
    except Exception as e:  # noqa: BLE001 - the user's factory: one line
        raise SourceError(f"{label}(**{kwargs or {}}) raised {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise SourceError(f"{label} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def parse_kwargs(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``("depth=2", "variant=cifar", "bias=false")`` -> ``{"depth": 2, "variant": "cifar", "bias": False}``.

    Values are Python literals (numbers, tuples, quoted strings, True/False/None; also
    true/false/none); anything else is taken as a plain string.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SourceError(f"factory argument {item!r}: write name=value")
        k, v = (s.strip() for s in item.split("=", 1))
        if not k.isidentifier():
            raise SourceError(f"factory argument name {k!r} is not an identifier")
        low = v.lower()
        if low in ("true", "false", "none"):
            out[k] = {"true": True, "false": False, "none": None}[low]
            continue
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def expand_weights(patterns: tuple[str, ...] | list[str]) -> list[str]:
    """Files named by ``patterns`` (paths or globs), in order: each glob sorted naturally
    (``ckpt_2`` before ``ckpt_10``), duplicates dropped. A pattern matching nothing raises."""
    out: list[str] = []
    for pat in patterns:
        pat = os.path.expanduser(pat)
        if glob.has_magic(pat):
            hits = sorted((p for p in glob.glob(pat) if os.path.isfile(p)), key=_natural_key)
            if not hits:
                raise SourceError(f"no weights file matches {pat!r}")
        else:
            if not os.path.isfile(pat):
                raise SourceError(f"weights file not found: {pat!r}")
            hits = [pat]
        out += [h for h in hits if h not in out]
    return out


@dataclass(frozen=True)
class Checkpoint:
    """A state dict read from ``path``, with the step/epoch it records (None when unknown).

    ``name_number`` is the last integer in the file name (``ckpt_300.pt`` -> 300), a weaker
    clue the caller may use as the step when it is distinct across a set of checkpoints.
    """

    path: str
    state_dict: dict
    step: int | None
    epoch: int | None
    name_number: int | None = None


_STEP_RE = (re.compile(r"(?<![a-z])(?:global_step|step|iteration|iter|it)[=_-]?(\d+)", re.I),
            re.compile(r"(?<![a-z])epoch[=_-]?(\d+)", re.I))


def _int_entry(obj: dict, key: str) -> int | None:
    v = obj.get(key)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def read_checkpoint(path: str | os.PathLike, *, key: str | None = None, prefix: str = "") -> Checkpoint:
    """Read a checkpoint safely (``torch.load(weights_only=True)``) as a :class:`Checkpoint`.

    Raises :class:`SourceError` (one line) for a missing, unreadable or non-state-dict file.
    """
    path = str(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SourceError(f"weights file not found: {path!r}") from None
    except Exception as e:  # noqa: BLE001 - pickle/zip errors have many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SourceError(f"cannot read {path!r} with torch.load(weights_only=True): {first[:200]}") from e
    if not isinstance(obj, dict):
        raise SourceError(f"{path!r} holds a {type(obj).__name__}, not a state dict (save model.state_dict())")
    step = _int_entry(obj, "global_step")
    step = step if step is not None else _int_entry(obj, "step")
    epoch = _int_entry(obj, "epoch")
    sd = obj
    if key is not None:
        if key not in obj or not isinstance(obj[key], dict):
            raise SourceError(f"{path!r} has no dict under key {key!r}; keys: {', '.join(map(str, obj))}")
        sd = obj[key]
    elif not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for k in _WRAPPERS:
            if isinstance(obj.get(k), dict):
                sd = obj[k]
                break
    if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise SourceError(f"{path!r} is not a state dict of tensors (top-level keys: "
                          f"{', '.join(map(str, list(obj)[:8]))}); name the wrapping key")
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    if prefix:
        if not any(k.startswith(prefix) for k in sd):
            raise SourceError(f"no key of {path!r} starts with prefix {prefix!r}")
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if step is None or epoch is None:
        stem = Path(path).name
        m_step, m_epoch = (r.search(stem) for r in _STEP_RE)
        if step is None and m_step:
            step = int(m_step.group(1))
        if epoch is None and m_epoch:
            epoch = int(m_epoch.group(1))
    nums = re.findall(r"\d+", Path(path).stem)
    return Checkpoint(path, sd, step, epoch, int(nums[-1]) if nums else None)
