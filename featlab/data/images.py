"""Image classification data: the ``ImageData`` container and the archive loaders.

Convention:
    Images are ``(N, C, H, W)`` float32, indexed ``[y, x]`` = ``[row, col]``, with pixel values
    in [0, 1] as loaded (uint8/255, digits 0..16 → /16). :meth:`ImageData.standardise` returns a
    copy standardised per channel with the *training* mean and std (applied to train and test).
    Labels are int64 class indices ``0..len(classes)-1``. Nothing is downloaded: archives are
    read from ``root`` or the ``FEATLAB_DATA`` directory; pickled CIFAR batches go through a
    restricted unpickler (:mod:`featlab.data.safe_pickle`) that never executes code.
    Every archive file's size is checked against what the format can hold *before* it is
    read, and trailing bytes after a pickle or an idx payload are refused.
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .safe_pickle import safe_loads

__all__ = ["ImageData", "load_cifar10", "load_cifar100", "load_mnist", "load_fashion_mnist",
           "load_digits", "natural_patches", "read_idx", "locate", "require", "ENV_VAR"]

ENV_VAR = "FEATLAB_DATA"


@dataclass(frozen=True)
class ImageData:
    """Train/test images and labels of one data set.

    Attributes
    ----------
    x_train, x_test : torch.Tensor
        ``(N, C, H, W)`` float32; in [0, 1] unless ``standardised``.
    y_train, y_test : torch.Tensor
        ``(N,)`` int64 class indices.
    classes : tuple of str
        Class names, ``classes[k]`` is label k.
    name : str
        Data set name (e.g. "cifar10", "digits"; derived sets append "+std", "[n=...]").
    standardised : bool
        True after :meth:`standardise`.

    Convention:
        ``(N, C, H, W)`` float32 in [0, 1] as loaded; standardisation uses train statistics.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    name: str
    standardised: bool = False

    def __post_init__(self):
        for k in ("x_train", "x_test"):
            if getattr(self, k).ndim != 4:
                raise ValueError(f"{k} must be (N, C, H, W), got shape {tuple(getattr(self, k).shape)}")
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError("x_* and y_* must have the same number of samples")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def standardise(self, mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                    per_channel: bool = True) -> "ImageData":
        """Copy with ``x ← (x − mean)/std``; mean/std from the training set by default.

        ``per_channel=True`` uses one (mean, std) per channel (shape (C,)), else one scalar.
        """
        dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)
        if mean is None:
            mean = self.x_train.mean(dim=dims)
        if std is None:
            std = self.x_train.std(dim=dims).clamp_min(1e-12)
        mean = torch.as_tensor(mean, dtype=self.x_train.dtype).reshape(-1, 1, 1)  # (C|1, 1, 1)
        std = torch.as_tensor(std, dtype=self.x_train.dtype).reshape(-1, 1, 1)
        return dataclasses.replace(self, x_train=(self.x_train - mean) / std,
                                   x_test=(self.x_test - mean) / std, standardised=True,
                                   name=self.name + "+std")

    def subset(self, n: int, generator: torch.Generator | None = None, stratified: bool = True) -> "ImageData":
        """Copy with ``n`` training samples drawn without replacement (test set unchanged).

        ``stratified=True`` keeps the class proportions (per-class counts by largest
        remainder); the draw uses ``generator`` (CPU permutations).
        """
        idx = _draw(self.y_train, n, generator, stratified, "n")
        return dataclasses.replace(self, x_train=self.x_train[idx], y_train=self.y_train[idx],
                                   name=f"{self.name}[n={n}]")

    def split(self, n_val: int, generator: torch.Generator | None = None, stratified: bool = True) -> "ImageData":
        """Copy whose *test* set is ``n_val`` held-out training samples (a validation split).

        The remaining training samples form the new training set; the original test set is
        not used (clean model selection, spec diffeo_pooling §8.1).
        """
        val = _draw(self.y_train, n_val, generator, stratified, "n_val")
        keep = torch.ones(len(self.y_train), dtype=torch.bool)
        keep[val] = False
        return dataclasses.replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep],
                                   x_test=self.x_train[val], y_test=self.y_train[val],
                                   name=f"{self.name}[val={n_val}]")


def _draw(y: torch.Tensor, n: int, generator: torch.Generator | None, stratified: bool,
          arg: str) -> torch.Tensor:
    N = len(y)
    if not isinstance(n, int) or not 1 <= n <= N:
        raise ValueError(f"{arg} must be an integer in [1, {N}], got {n!r}")
    g = generator if generator is not None else torch.Generator()
    if not stratified:
        return torch.randperm(N, generator=g, device=g.device)[:n].cpu().sort().values
    y = y.cpu()
    classes, counts = torch.unique(y, return_counts=True)
    share = counts.double() * n / N
    k = share.floor().long()
    rest = n - int(k.sum())
    if rest > 0:  # largest remainder
        k[torch.argsort(share - k, descending=True, stable=True)[:rest]] += 1
    out = []
    for c, kc in zip(classes.tolist(), k.tolist()):
        pool = torch.nonzero(y == c).flatten()
        perm = torch.randperm(len(pool), generator=g, device=g.device).cpu()
        out.append(pool[perm[:kc]])
    return torch.cat(out).sort().values


# ---------------------------------------------------------------- locating local archives

def _resolve_root(root: str | os.PathLike | None, what: str, expected: str) -> Path:
    root = root if root is not None else os.environ.get(ENV_VAR)
    if root is None or str(root) == "":
        raise FileNotFoundError(f"{what}: no data folder given; set data.root (--set data.root=DIR; "
                                f"root= in Python) or {ENV_VAR} to a directory holding {expected} "
                                f"(nothing is downloaded)")
    return Path(root).expanduser()


def _missing(what: str, root: Path, expected: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found under {str(root)!r}: expected {expected} "
                             f"(set data.root, root= in Python, or {ENV_VAR}; nothing is downloaded)")


# ---------------------------------------------------------------- CIFAR (python pickles)

_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# A CIFAR batch pickle holds N rows of 3072 bytes plus, per row, a label and a file name
# (31-39 bytes in the real files), plus a small header. Anything larger is not a CIFAR batch,
# and is refused *before* it is read (a sparse 1 GiB file, or a 1 GiB member inside a 5 MB
# tar.gz, would otherwise be read into memory whole).
_CIFAR_ROW_BYTES = 3072
_CIFAR_ROW_SLACK = 256
_CIFAR_HEADER_SLACK = 2 ** 20
_CIFAR_ROWS = {"data_batch_1": 10000, "data_batch_2": 10000, "data_batch_3": 10000, "data_batch_4": 10000,
               "data_batch_5": 10000, "test_batch": 10000, "train": 50000, "test": 10000}
_CIFAR_META_MAX = 2 ** 20


def _cifar_cap(name: str) -> int:
    """The largest file ``name`` of a CIFAR archive can be, from its row count."""
    if name in _CIFAR_ROWS:
        return _CIFAR_ROWS[name] * (_CIFAR_ROW_BYTES + _CIFAR_ROW_SLACK) + _CIFAR_HEADER_SLACK
    return _CIFAR_META_MAX


def _read_capped(f, cap: int, what: str) -> bytes:
    data = f.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"{what}: larger than a CIFAR file can be ({cap} bytes at most)")
    return data


def _cifar_locate(root: Path, dirname: str, archive: str, names: list[str]) -> tuple[str, Path] | None:
    """``("dir", folder)`` or ``("tar", archive)`` holding ``names`` under ``root``, without reading data."""
    for d in (root / dirname, root):
        if all((d / n).is_file() for n in names):
            return "dir", d
    for a in (root / archive, root):
        if a.is_file() and tarfile.is_tarfile(a):
            return "tar", a
    return None


def _cifar_members(root: Path, dirname: str, archive: str, what: str, names: list[str]) -> dict[str, bytes]:
    """Raw bytes of ``names`` from ``root/dirname/`` or the tar.gz ``archive`` (no extraction).

    Every file's size is checked against what a CIFAR file can hold before it is read.
    """
    expected = f"'{archive}' or the extracted directory '{dirname}/' (files {', '.join(names)})"
    where = _cifar_locate(root, dirname, archive, names)
    if where is None:
        raise _missing(what, root, expected)
    kind, loc = where
    out: dict[str, bytes] = {}
    if kind == "dir":
        for n in names:
            p = loc / n
            cap = _cifar_cap(n)
            if p.stat().st_size > cap:
                raise ValueError(f"{what}: {str(p)!r} has {p.stat().st_size} bytes, more than a CIFAR "
                                 f"file can hold ({cap})")
            with open(p, "rb") as f:
                out[n] = _read_capped(f, cap, f"{what}: {str(p)!r}")
        return out
    with tarfile.open(loc, "r:*") as tar:
        for m in tar:
            base = m.name.rsplit("/", 1)[-1]
            if not (m.isfile() and base in names and base not in out):
                continue
            cap = _cifar_cap(base)
            if m.size > cap:
                raise ValueError(f"{what}: archive member {m.name!r} claims {m.size} bytes, more than a "
                                 f"CIFAR file can hold ({cap})")
            f = tar.extractfile(m)
            if f is not None:
                out[base] = _read_capped(f, cap, f"{what}: archive member {m.name!r}")
            if set(out) >= set(names):
                break
    if set(out) >= set(names):
        return out
    raise FileNotFoundError(f"{what}: archive {str(loc)!r} lacks {sorted(set(names) - set(out))}")


_CIFAR_MAX_ROWS = 50000  # CIFAR-100's train file holds all 50,000 rows


def _cifar_batch(raw: bytes, label_key: bytes, max_rows: int = _CIFAR_MAX_ROWS) -> tuple[np.ndarray, np.ndarray]:
    d = safe_loads(raw)
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        raise ValueError(f"not a CIFAR batch (needs keys b'data' and {label_key!r})")
    data, labels = d[b"data"], d[label_key]
    # Validate before any copy: a crafted file must not make us build a huge array.
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072 and data.shape[0] <= max_rows):
        raise ValueError("not a CIFAR batch: b'data' must be a uint8 array of shape (N, 3072), "
                         f"N <= {max_rows}")
    n = data.shape[0]
    if isinstance(labels, np.ndarray):
        ok = labels.ndim == 1 and labels.dtype.kind in "iu"
    else:
        ok = isinstance(labels, list) and all(type(v) is int for v in labels)
    if not ok or len(labels) != n:
        raise ValueError(f"not a CIFAR batch: {label_key!r} must be {n} integer labels")
    x = data.reshape(n, 3, 32, 32)  # (N, 3, 32, 32)
    y = np.asarray(labels, dtype=np.int64)
    if n and (y.min() < 0 or y.max() >= 100):
        raise ValueError(f"not a CIFAR batch: {label_key!r} values must lie in [0, 100)")
    return x, y


def _to_image_data(xs, ys, xt, yt, classes, name) -> ImageData:
    f = lambda a: torch.from_numpy(np.array(a, copy=True)).float().div_(255.0)  # noqa: E731
    lab = lambda a: torch.from_numpy(np.array(a, dtype=np.int64, copy=True))  # noqa: E731
    return ImageData(f(xs), lab(ys), f(xt), lab(yt),
                     tuple(classes), name)


def load_cifar10(root: str | os.PathLike | None = None) -> ImageData:
    """CIFAR-10 from the python archive ``cifar-10-python.tar.gz`` or ``cifar-10-batches-py/``.

    ``root`` is the directory holding either (or the archive/directory itself); default the
    ``FEATLAB_DATA`` environment variable. Batches are read with the restricted unpickler.

    Returns
    -------
    ImageData
        50000 train / 10000 test images ``(N, 3, 32, 32)`` in [0, 1], 10 classes.

    Raises
    ------
    FileNotFoundError
        Naming the expected file names and ``FEATLAB_DATA``.
    """
    what = "CIFAR-10"
    r = _resolve_root(root, what, "'cifar-10-python.tar.gz' or 'cifar-10-batches-py/'")
    train = [f"data_batch_{i}" for i in range(1, 6)]
    raw = _cifar_members(r, "cifar-10-batches-py", "cifar-10-python.tar.gz", what, train + ["test_batch"])
    parts = [_cifar_batch(raw[n], b"labels", _CIFAR_ROWS[n]) for n in train]
    xt, yt = _cifar_batch(raw["test_batch"], b"labels", _CIFAR_ROWS["test_batch"])
    return _to_image_data(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                          xt, yt, _CIFAR10_CLASSES, "cifar10")


def load_cifar100(root: str | os.PathLike | None = None, labels: str = "fine") -> ImageData:
    """CIFAR-100 from ``cifar-100-python.tar.gz`` or ``cifar-100-python/`` (files train, test, meta).

    ``labels="fine"`` (100 classes) or ``"coarse"`` (20 super-classes). Class names come from
    ``meta`` when present. Otherwise as :func:`load_cifar10`.
    """
    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    what = "CIFAR-100"
    r = _resolve_root(root, what, "'cifar-100-python.tar.gz' or 'cifar-100-python/'")
    raw = _cifar_members(r, "cifar-100-python", "cifar-100-python.tar.gz", what, ["train", "test"])
    key = f"{labels}_labels".encode()
    xs, ys = _cifar_batch(raw["train"], key, _CIFAR_ROWS["train"])
    xt, yt = _cifar_batch(raw["test"], key, _CIFAR_ROWS["test"])
    k = 100 if labels == "fine" else 20
    classes = [str(i) for i in range(k)]
    try:
        meta = _cifar_members(r, "cifar-100-python", "cifar-100-python.tar.gz", what, ["meta"])["meta"]
        names = safe_loads(meta)[f"{labels}_label_names".encode()]  # type: ignore[index]
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        pass
    return _to_image_data(xs, ys, xt, yt, classes, f"cifar100-{labels}")


# ---------------------------------------------------------------- MNIST-style idx files

_IDX = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
        "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
_MNIST_CLASSES = tuple(str(i) for i in range(10))
_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot")


# Format limits of the MNIST-style idx files: what each of the four files may hold.
_IDX_LIMITS = {"train_x": (60000, (28, 28)), "train_y": (60000, ()),
               "test_x": (10000, (28, 28)), "test_y": (10000, ())}


def _idx_header(head: bytes) -> tuple[int, int]:
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise ValueError("not an idx file (bad magic number)")
    code, ndim = head[2], head[3]
    if code != 0x08:
        raise ValueError(f"idx dtype code {code:#x} not supported (only 0x08 unsigned byte)")
    return code, ndim


def read_idx(raw: bytes) -> np.ndarray:
    """Parse an idx file (big-endian header: 0, 0, dtype code, ndim, then ndim uint32 dims).

    Only unsigned bytes (code 0x08) are accepted, as in MNIST/FashionMNIST; the payload must
    have exactly the size the header gives (no trailing bytes).
    """
    _, ndim = _idx_header(raw[:4])
    if len(raw) < 4 + 4 * ndim:
        raise ValueError("idx header is truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise ValueError(f"idx payload has {len(body)} bytes, header says {dims}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _read_idx_file(path: Path, key: str) -> np.ndarray:
    """Stream one idx file (``.gz`` or not): header first, checked against the format
    (:data:`_IDX_LIMITS`), then exactly the payload it announces; trailing data is refused.

    Memory is bounded by the format, never by the file: a gzip bomb is never decompressed
    beyond the announced payload plus one byte.
    """
    max_n, item = _IDX_LIMITS[key]
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            _, ndim = _idx_header(head)
            if ndim != 1 + len(item):
                raise ValueError(f"expected {1 + len(item)} dimensions, header says {ndim}")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) != 4 * ndim:
                raise ValueError("idx header is truncated")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            if dims[0] > max_n or tuple(dims[1:]) != item:
                raise ValueError(f"header says shape {dims}; this file holds at most {max_n} items of "
                                 f"shape {item}")
            n = int(np.prod(dims))
            if path.suffix != ".gz" and path.stat().st_size != 4 + 4 * ndim + n:
                raise ValueError(f"file has {path.stat().st_size} bytes, header says {4 + 4 * ndim + n}")
            body = f.read(n)
            if len(body) != n:
                raise ValueError(f"idx payload has {len(body)} bytes, header says {dims}")
            if f.read(1):
                raise ValueError("trailing bytes after the idx payload")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"cannot read: {e}") from None
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _locate_idx(r: Path, subdirs: tuple[str, ...]) -> dict[str, Path] | None:
    for d in (r, *(r / s for s in subdirs)):
        found = {}
        for k, base in _IDX.items():
            for cand in (d / base, d / (base + ".gz")):
                if cand.is_file():
                    found[k] = cand
                    break
        if len(found) == len(_IDX):
            return found
    return None


def _load_idx_set(root, what: str, subdirs: tuple[str, ...], classes, name) -> ImageData:
    expected = ", ".join(f"'{v}[.gz]'" for v in _IDX.values())
    r = _resolve_root(root, what, expected)
    found = _locate_idx(r, subdirs)
    if found is None:
        raise _missing(what, r, expected)
    arr = {}
    for k, p in found.items():
        try:
            arr[k] = _read_idx_file(p, k)
        except ValueError as e:
            raise ValueError(f"{what}: {str(p)!r}: {e}") from None
    for split in ("train", "test"):
        nx, ny = len(arr[f"{split}_x"]), len(arr[f"{split}_y"])
        if nx != ny:
            raise ValueError(f"{what}: {nx} {split} images but {ny} labels")
        if ny and arr[f"{split}_y"].max() >= len(classes):
            raise ValueError(f"{what}: {split} labels must lie in [0, {len(classes)})")
    xs, xt = arr["train_x"][:, None], arr["test_x"][:, None]  # (N, 1, 28, 28)
    return _to_image_data(xs, arr["train_y"].astype(np.int64), xt,
                          arr["test_y"].astype(np.int64), classes, name)


_SETS = {
    "cifar10": ("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]),
    "cifar100": ("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz", ["train", "test"]),
    "mnist": ("MNIST", ("MNIST/raw", "MNIST", "mnist")),
    "fashion_mnist": ("FashionMNIST", ("FashionMNIST/raw", "FashionMNIST", "fashion_mnist")),
}


def locate(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """Where the files of ``dataset`` (cifar10, cifar100, mnist, fashion_mnist) are, without
    reading them; :class:`FileNotFoundError` naming the expected files otherwise.

    Configs call this from ``check()`` (through :func:`require`) so that a missing archive is
    refused before any run folder exists.
    """
    if dataset not in _SETS:
        raise ValueError(f"dataset must be one of {', '.join(_SETS)}, got {dataset!r}")
    spec = _SETS[dataset]
    if dataset.startswith("cifar"):
        what, dirname, archive, names = spec
        expected = f"'{archive}' or the extracted directory '{dirname}/'"
        r = _resolve_root(root, what, expected)
        where = _cifar_locate(r, dirname, archive, names)
        if where is None:
            raise _missing(what, r, expected)
        return where[1]
    what, subdirs = spec
    expected = ", ".join(f"'{v}[.gz]'" for v in _IDX.values())
    r = _resolve_root(root, what, expected)
    found = _locate_idx(r, subdirs)
    if found is None:
        raise _missing(what, r, expected)
    return found["train_x"].parent


def require(dataset: str, root: str | os.PathLike | None, field: str) -> None:
    """:func:`locate`, raising :class:`~featlab.config.ConfigError` naming ``field`` (e.g.
    ``data.root``) instead: for a config's ``check()``."""
    from ..config import ConfigError

    try:
        locate(dataset, root)
    except FileNotFoundError as e:
        raise ConfigError(field, str(e).replace("\n", " ")) from None


def load_mnist(root: str | os.PathLike | None = None) -> ImageData:
    """MNIST from the four idx files (``train-images-idx3-ubyte[.gz]``, ...).

    Looked up in ``root``, ``root/MNIST/raw`` and ``root/MNIST`` (torchvision's layout);
    default root ``FEATLAB_DATA``. Returns ``(N, 1, 28, 28)`` in [0, 1], 10 classes.
    """
    return _load_idx_set(root, "MNIST", ("MNIST/raw", "MNIST", "mnist"), _MNIST_CLASSES, "mnist")


def load_fashion_mnist(root: str | os.PathLike | None = None) -> ImageData:
    """FashionMNIST from the four idx files, in ``root``, ``root/FashionMNIST/raw`` or
    ``root/FashionMNIST``; otherwise as :func:`load_mnist`."""
    return _load_idx_set(root, "FashionMNIST", ("FashionMNIST/raw", "FashionMNIST", "fashion_mnist"),
                         _FASHION_CLASSES, "fashion_mnist")


# ---------------------------------------------------------------- small data shipped by PyPI

def load_digits(test_size: int = 497, generator: torch.Generator | None = None,
                stratified: bool = True) -> ImageData:
    """scikit-learn's 8×8 handwritten digits (1797 images) as ``(N, 1, 8, 8)`` in [0, 1].

    Pixel values 0..16 are divided by 16. ``test_size`` images are held out (stratified by
    default) with a draw from ``generator`` (default: a fresh default generator, which is
    deterministic). Needs the ``data`` extra (scikit-learn).
    """
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError:
        raise ImportError("load_digits needs scikit-learn: pip install featlab[data]") from None
    d = _sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8)
    y = torch.from_numpy(d.target.astype(np.int64))
    full = ImageData(x, y, x[:0], y[:0], tuple(str(i) for i in range(10)), "digits")
    out = full.split(test_size, generator, stratified)
    return dataclasses.replace(out, name="digits")


_NATURAL_RGB = ("astronaut", "coffee", "chelsea", "rocket")
_NATURAL_GRAY = ("camera", "coins", "moon", "grass", "gravel", "brick", "clock")


def natural_patches(size: int, n: int, generator: torch.Generator | None = None, *,
                    color: bool = False, images: tuple[str, ...] | None = None) -> torch.Tensor:
    """``n`` random ``size``×``size`` crops of scikit-image's natural sample photographs.

    Parameters
    ----------
    size, n : int
        Patch side in pixels; number of patches.
    generator : torch.Generator, optional
        Draws the image index and the crop offset (uniform) on its device.
    color : bool
        RGB crops ``(n, 3, size, size)`` from the colour photos (astronaut, coffee, chelsea,
        rocket); else grayscale ``(n, 1, size, size)`` from all photos (colour ones converted
        with luminance weights 0.2125, 0.7154, 0.0721).
    images : tuple of str, optional
        Names of ``skimage.data`` images to crop from instead of the defaults.

    Returns
    -------
    torch.Tensor float32 in [0, 1]. Needs the ``data`` extra (scikit-image); nothing is
    downloaded (these images ship inside the wheel).
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    try:
        import skimage.data as skd
    except ImportError:
        raise ImportError("natural_patches needs scikit-image: pip install featlab[data]") from None
    names = images or (_NATURAL_RGB if color else _NATURAL_RGB + _NATURAL_GRAY)
    pics = []
    for nm in names:
        a = np.asarray(getattr(skd, nm)(), dtype=np.float32) / 255.0
        if a.ndim == 3:
            a = a[..., :3]
            if not color:
                a = a @ np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
        elif color:
            raise ValueError(f"images: {nm!r} is grayscale but color=True")
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
        if min(a.shape[1:]) < size:
            raise ValueError(f"size={size} exceeds image {nm!r} of shape {a.shape[1:]}")
        pics.append(torch.from_numpy(np.ascontiguousarray(a)))
    g = generator if generator is not None else torch.Generator()
    which = torch.randint(0, len(pics), (n,), generator=g, device=g.device).tolist()
    u = torch.rand(n, 2, generator=g, device=g.device, dtype=torch.float64).cpu()
    out = torch.empty(n, pics[0].shape[0], size, size)
    for i, k in enumerate(which):
        H, W = pics[k].shape[1:]
        oy, ox = int(u[i, 0] * (H - size + 1)), int(u[i, 1] * (W - size + 1))
        out[i] = pics[k][:, oy:oy + size, ox:ox + size]
    return out
