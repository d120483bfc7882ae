"""Photo-crop classification: which of ten photographs does a small crop come from?

An offline image task on which spatial structure matters, for the stability experiment
(spec diffeo_pooling §3; issue 13). Upsampled 8×8 digits lie in a 64-dimensional subspace, so
a diffeomorphism moves them mostly *inside* the data subspace; crops of natural photographs
have the power-law spectrum of natural images and their class is carried by texture and local
shape, not by brightness (each crop is standardised on its own).

Convention:
    Photographs: scikit-image's sample photos ``PHOTOS`` (grayscale; RGB converted with the
    luminance weights of :func:`featlab.data.images.sample_photo`), label k = ``images[k]``.
    Each photograph is cut into non-overlapping ``tile``×``tile`` squares (``tile = 2·size`` by
    default; partial squares at the right/bottom edge are dropped), indexed row-major. For every
    photograph ``⌈test_fraction·n_tiles⌉`` tiles (the first of one ``randperm`` per photo) are
    *test* tiles, the rest *train* tiles: every crop lies inside one tile, so no train crop
    shares a pixel with a test crop. A crop is ``size``×``size`` at a uniform tile and a uniform
    offset inside it; crops whose std (in [0, 1] pixel units) is below ``min_std`` (flat sky,
    black background) are redrawn. Classes are balanced (per-class counts differ by at most one,
    the extra ones go to the first classes). ``normalise="crop"``: every crop minus its mean,
    divided by its population std, so ‖x‖² = size² exactly; ``"none"``: pixel values in [0, 1].
    All randomness comes from ``generator`` (CPU draws).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .images import ImageData, sample_photo

__all__ = ["PHOTOS", "PhotoCrops", "photo_crops", "load_photos"]

#: ten photographs shipped with scikit-image (natural scenes and textures, ≥ 300 px a side)
PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel", "moon",
          "rocket")
NORMALISE = ("crop", "none")


@dataclass(frozen=True)
class PhotoCrops:
    """Crops with their provenance: which photo, which tile, where.

    Attributes
    ----------
    x : Tensor (n, 1, size, size) float32
    y : Tensor (n,) int64, the photo index
    tile : Tensor (n,) int64, the tile index inside its photo (row-major)
    corner : Tensor (n, 2) int64, the crop's top-left pixel (row, col) in the photo
    """

    x: torch.Tensor
    y: torch.Tensor
    tile: torch.Tensor
    corner: torch.Tensor


def _tiles(shape: tuple[int, int], tile: int) -> int:
    return (shape[0] // tile) * (shape[1] // tile)


def _split_tiles(n_tiles: int, test_fraction: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n_tiles, generator=g)
    k = math.ceil(test_fraction * n_tiles)
    return perm[k:].sort().values, perm[:k].sort().values  # train tiles, test tiles


def _balanced_counts(n: int, k: int) -> list[int]:
    return [n // k + (1 if c < n % k else 0) for c in range(k)]


def _draw_crops(pic: torch.Tensor, tiles: torch.Tensor, n: int, size: int, tile: int, min_std: float,
                g: torch.Generator, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` crops of ``pic`` (1, H, W) inside ``tiles``; returns (crops, tile ids, corners)."""
    per_row = pic.shape[2] // tile
    got_x, got_t, got_c, have = [], [], [], 0
    for _ in range(50):  # rejection of flat crops; 50 rounds of 2n candidates is plenty
        m = 2 * (n - have) + 8
        t = tiles[torch.randint(0, len(tiles), (m,), generator=g)]
        off = torch.randint(0, tile - size + 1, (m, 2), generator=g)
        r0 = (t // per_row) * tile + off[:, 0]
        c0 = (t % per_row) * tile + off[:, 1]
        rows = r0[:, None] + torch.arange(size)  # (m, size)
        cols = c0[:, None] + torch.arange(size)
        x = pic[0][rows[:, :, None], cols[:, None, :]]  # (m, size, size)
        ok = x.flatten(1).std(1, unbiased=False) >= min_std
        x, t, c = x[ok][: n - have], t[ok][: n - have], torch.stack([r0, c0], 1)[ok][: n - have]
        got_x.append(x)
        got_t.append(t)
        got_c.append(c)
        have += len(x)
        if have == n:
            return torch.cat(got_x)[:, None], torch.cat(got_t), torch.cat(got_c)
    raise ValueError(f"min_std={min_std}: photo {name!r} has too few crops that varied (lower min_std)")


def photo_crops(n_train: int, n_test: int, size: int = 32, *, images: tuple[str, ...] = PHOTOS,
                tile: int | None = None, test_fraction: float = 0.2, min_std: float = 0.02,
                normalise: str = "crop", generator: torch.Generator | None = None
                ) -> tuple[PhotoCrops, PhotoCrops]:
    """Train and test crops from disjoint tiles of each photograph (see the module Convention).

    Parameters
    ----------
    n_train, n_test : int
        Number of crops, balanced over the photographs.
    size : int
        Crop side in pixels (at most ``tile``).
    images : tuple of str
        Names of ``skimage.data`` photographs, one class each (at least 2).
    tile : int, optional
        Side of the squares that are assigned to train or test; default ``2·size``.
    test_fraction : float in (0, 1)
        Share of each photo's tiles that hold the test crops.
    min_std : float
        Crops with a smaller pixel std (in [0, 1] units) are redrawn.
    normalise : {"crop", "none"}
        Per-crop standardisation or raw [0, 1] pixels.
    generator : torch.Generator, optional
        CPU generator for the tile split and the crops (None: a fresh default generator, which
        is deterministic).

    Returns
    -------
    (train, test) : PhotoCrops
    """
    for nm, v in (("n_train", n_train), ("n_test", n_test), ("size", size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{nm} must be a positive integer, got {v!r}")
    tile = 2 * size if tile is None else tile
    if not isinstance(tile, int) or tile < size:
        raise ValueError(f"tile must be an integer >= size={size}, got {tile!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    if normalise not in NORMALISE:
        raise ValueError(f"normalise must be one of {NORMALISE}, got {normalise!r}")
    if len(images) < 2:
        raise ValueError(f"images must name at least 2 photographs, got {images!r}")
    g = generator if generator is not None else torch.Generator()
    if g.device.type != "cpu":
        raise ValueError("generator must be a CPU generator")
    out = {"train": [], "test": []}
    counts = {"train": _balanced_counts(n_train, len(images)), "test": _balanced_counts(n_test, len(images))}
    for k, nm in enumerate(images):
        pic = sample_photo(nm)  # (1, H, W)
        n_tiles = _tiles(tuple(pic.shape[1:]), tile)
        if n_tiles < 2:
            raise ValueError(f"tile={tile}: photo {nm!r} of shape {tuple(pic.shape[1:])} holds fewer than 2 tiles")
        split = dict(zip(("train", "test"), _split_tiles(n_tiles, test_fraction, g)))
        if len(split["train"]) == 0:
            raise ValueError(f"test_fraction={test_fraction}: photo {nm!r} has no train tile left")
        for part in ("train", "test"):
            n = counts[part][k]
            if n == 0:
                continue
            x, t, c = _draw_crops(pic, split[part], n, size, tile, min_std, g, nm)
            out[part].append((x, torch.full((n,), k, dtype=torch.long), t, c))
    res = []
    for part in ("train", "test"):
        x, y, t, c = (torch.cat(z) for z in zip(*out[part]))
        if normalise == "crop":
            flat = x.flatten(1)
            x = ((flat - flat.mean(1, keepdim=True)) / flat.std(1, unbiased=False, keepdim=True)).view_as(x)
        res.append(PhotoCrops(x.float().contiguous(), y, t, c))
    return res[0], res[1]


def load_photos(n_train: int = 2000, n_test: int = 500, size: int = 32, *, images: tuple[str, ...] = PHOTOS,
                generator: torch.Generator | None = None, **kw) -> ImageData:
    """The photo-crop task as :class:`~featlab.data.ImageData` (train crops shuffled).

    Keyword arguments go to :func:`photo_crops`. ``classes`` are the photo names.
    """
    g = generator if generator is not None else torch.Generator()
    tr, te = photo_crops(n_train, n_test, size, images=images, generator=g, **kw)
    perm = torch.randperm(len(tr.y), generator=g)
    name = f"photos{size}"
    return ImageData(tr.x[perm], tr.y[perm], te.x, te.y, tuple(images), name)
