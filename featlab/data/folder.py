"""Images from a local folder of JPEG/PNG files, prepared as the CNFA reference prepares ImageNet.

The reference (aradha/convrfm ``cnfa_verification/dataset.py``, ``get_imagenet``) reads ImageNet
through torchvision with ``Resize(256) → CenterCrop(224) → ToTensor() → Normalize(mean, std)``,
mean = (0.485, 0.456, 0.406), std = (0.229, 0.224, 0.225). :func:`load_image_folder` does the same
with Pillow alone (no torchvision, nothing downloaded), so a local copy of the ImageNet validation
images — or any folder of photographs — can feed :func:`featlab.probes.cnfa` on a zoo net with
torchvision-format weights.

Convention:
    Layout: either class sub-folders ``root/<class>/<image>`` (torchvision ``ImageFolder``; the
    ImageNet-val layout after the usual ``valprep.sh``, one folder per synset), labels = index of
    the sub-folder in sorted order; or a flat folder ``root/<image>`` (e.g. the raw
    ``ILSVRC2012_val_*.JPEG``), labels -1. A folder holding both loose images and class
    sub-folders is refused. Files with the suffixes of ``EXTENSIONS`` (case-insensitive) are
    read, in sorted path order; everything else is ignored. Each image is converted to RGB
    (grey and CMYK included, as the reference's ``.convert("RGB")``), its shorter side resized to
    ``resize`` pixels (the longer one to ``int(resize · long / short)``, bilinear, as
    torchvision's ``Resize`` on PIL images), centre-cropped to ``size`` × ``size`` (top/left
    offset ``round((H − size)/2)``, torchvision's ``CenterCrop``), scaled to [0, 1] and, with
    ``normalise="imagenet"``, standardised with the mean/std above. Output (N, 3, size, size)
    float32, indexed [channel, row, col].
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["FolderImages", "load_image_folder", "EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD"]

EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FolderImages:
    """Images read by :func:`load_image_folder`.

    Attributes
    ----------
    x : Tensor (N, 3, size, size) float32
        Normalised as requested (``normalise``).
    y : Tensor (N,) int64
        Class index (sorted sub-folder order), -1 for a flat folder.
    classes : tuple of str
        Sub-folder names (empty for a flat folder).
    paths : tuple of str
        The file of each image, in the order of ``x``.
    normalise : str or None
        ``"imagenet"`` or None (pixels in [0, 1]).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    normalise: str | None

    @property
    def name(self) -> str:
        return f"folder[n={len(self.paths)}]"


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib
        raise ImportError("load_image_folder needs Pillow to decode JPEG/PNG files: pip install pillow "
                          "(it normally comes with matplotlib)") from None
    return Image


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in EXTENSIONS


def _scan(root: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    loose = sorted(p for p in root.iterdir() if _is_image(p))
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and any(_is_image(q) for q in p.iterdir()))
    if loose and subdirs:
        raise ValueError(f"{str(root)!r} holds both loose images and class sub-folders "
                         f"({subdirs[0].name}/ ...); use one layout")
    if loose:
        return loose, [-1] * len(loose), ()
    paths, labels = [], []
    for k, d in enumerate(subdirs):
        files = sorted(p for p in d.iterdir() if _is_image(p))
        paths += files
        labels += [k] * len(files)
    return paths, labels, tuple(d.name for d in subdirs)


def resolve_folder(root: str | os.PathLike | None) -> Path:
    """``root`` (or ``$FEATLAB_DATA``) as a directory; a one-line FileNotFoundError otherwise."""
    from .images import ENV_VAR

    root = root if root is not None else os.environ.get(ENV_VAR)
    if root is None or str(root) == "":
        raise FileNotFoundError(f"image folder: no root given; pass root=... or set {ENV_VAR} to a folder of "
                                f"{'/'.join(EXTENSIONS)} images (nothing is downloaded)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"image folder {str(path)!r} does not exist or is not a directory")
    return path


def prepare_image(img, *, size: int = 224, resize: int = 256) -> np.ndarray:
    """One PIL image → (3, size, size) float32 in [0, 1]: RGB, shorter side to ``resize``
    (bilinear), centre crop ``size`` (torchvision ``Resize`` + ``CenterCrop`` + ``ToTensor``)."""
    Image = _pil()
    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR)
    if size > min(nw, nh):
        raise ValueError(f"size={size} is larger than the resized image ({nw}×{nh}); use resize >= size")
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0  # (3, size, size)


def load_image_folder(root: str | os.PathLike | None = None, n: int | None = None, *, size: int = 224,
                      resize: int = 256, normalise: str | None = "imagenet",
                      generator: torch.Generator | None = None) -> FolderImages:
    """Read, resize, centre-crop and normalise the JPEG/PNG images of a local folder.

    Parameters
    ----------
    root : path, optional
        The folder (class sub-folders or flat; see the module Convention). None: ``$FEATLAB_DATA``.
    n : int, optional
        Number of images (None: all). With a ``generator`` a seeded random subset (without
        replacement, then in sorted order of the draw), else the first n in sorted path order.
    size, resize : int
        Centre-crop side and the shorter side after resizing (reference: 224, 256).
    normalise : {"imagenet", None}
        Reference normalisation (ImageNet mean/std) or raw [0, 1] pixels.
    generator : torch.Generator, optional
        CPU generator for the subset.

    Returns
    -------
    FolderImages

    Raises
    ------
    FileNotFoundError
        No root, a missing folder, or a folder without images.
    ValueError
        Bad ``n``/``size``/``normalise``, or a mixed layout.
    """
    if normalise not in ("imagenet", None):
        raise ValueError(f"normalise must be 'imagenet' or None, got {normalise!r}")
    if size < 1 or resize < size:
        raise ValueError(f"need 1 <= size <= resize, got size={size}, resize={resize}")
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    Image = _pil()
    path = resolve_folder(root)
    paths, labels, classes = _scan(path)
    if not paths:
        raise FileNotFoundError(f"no {'/'.join(EXTENSIONS)} images in {str(path)!r} or its sub-folders")
    idx = list(range(len(paths)))
    if n is not None and n < len(paths):
        if generator is not None:
            idx = sorted(torch.randperm(len(paths), generator=generator)[:n].tolist())
        else:
            idx = idx[:n]
    xs = []
    for i in idx:
        with Image.open(paths[i]) as img:
            xs.append(prepare_image(img, size=size, resize=resize))
    x = torch.from_numpy(np.stack(xs))  # (N, 3, size, size)
    if normalise == "imagenet":
        x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    y = torch.tensor([labels[i] for i in idx], dtype=torch.int64)
    return FolderImages(x=x.float(), y=y, classes=classes, paths=tuple(str(paths[i]) for i in idx),
                        normalise=normalise)
