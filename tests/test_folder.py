"""Image-folder loader: layouts, the reference's resize / centre crop / normalisation, refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featlab.data import load_image_folder
from featlab.data.folder import IMAGENET_MEAN, IMAGENET_STD

Image = pytest.importorskip("PIL.Image")


def _save(path, arr, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def test_convention_centre_crop_offsets_and_normalisation(tmp_path):
    """A 256-wide, 300-high PNG needs no resize (shorter side = 256): the crop is rows 38..261, cols
    16..239 (top/left = round((H - 224)/2)), pixels /255, then (x - mean)/std per channel."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (300, 256, 3), dtype=np.uint8)  # (H, W, 3)
    _save(tmp_path / "a.png", arr)
    out = load_image_folder(tmp_path)
    assert out.x.shape == (1, 3, 224, 224) and out.x.dtype == torch.float32
    crop = arr[38:262, 16:240].transpose(2, 0, 1) / 255.0
    ref = (crop - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    assert np.abs(out.x[0].numpy() - ref).max() < 1e-5
    raw = load_image_folder(tmp_path, normalise=None)
    assert np.abs(raw.x[0].numpy() - crop).max() < 1e-6
    assert out.y.tolist() == [-1] and out.classes == () and out.paths[0].endswith("a.png")


def test_resize_shorter_side_and_grey_to_rgb(tmp_path):
    """A constant grey 400×600 JPEG: shorter side → 256 (longer 384), crop 224; grey becomes three equal
    channels; constant pixels survive bilinear resizing and JPEG exactly enough."""
    _save(tmp_path / "g.jpg", np.full((600, 400), 128, dtype=np.uint8))  # (H, W) grey, mode L
    out = load_image_folder(tmp_path, normalise=None, size=100, resize=128)
    assert out.x.shape == (1, 3, 100, 100)
    assert torch.allclose(out.x, torch.full_like(out.x, 128 / 255), atol=2 / 255)
    from featlab.data.folder import prepare_image

    with Image.open(tmp_path / "g.jpg") as im:
        assert prepare_image(im, size=224, resize=256).shape == (3, 224, 224)


def test_class_subfolders_labels_subset_and_refusals(tmp_path):
    rng = np.random.default_rng(1)
    for cls, k in (("n01440764", 3), ("n01443537", 2)):  # ImageNet-val layout: one folder per synset
        for i in range(k):
            _save(tmp_path / cls / f"img{i}.JPEG", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), "JPEG")
    (tmp_path / "n01443537" / "notes.txt").write_text("ignored")
    out = load_image_folder(tmp_path, size=32, resize=36)
    assert out.classes == ("n01440764", "n01443537") and out.y.tolist() == [0, 0, 0, 1, 1]
    assert out.x.shape == (5, 3, 32, 32)
    sub = load_image_folder(tmp_path, 3, size=32, resize=36, generator=torch.Generator().manual_seed(0))
    again = load_image_folder(tmp_path, 3, size=32, resize=36, generator=torch.Generator().manual_seed(0))
    assert sub.paths == again.paths and len(sub.paths) == 3 and set(sub.paths) <= set(out.paths)
    assert load_image_folder(tmp_path, 2, size=32, resize=36).paths == out.paths[:2]
    _save(tmp_path / "loose.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="both loose images and class sub-folders"):
        load_image_folder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no .* images"):
        load_image_folder(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="size"):
        load_image_folder(tmp_path, size=300, resize=256)
    with pytest.raises(ValueError, match="normalise"):
        load_image_folder(tmp_path, normalise="cifar")


def test_root_from_the_environment(tmp_path, monkeypatch):
    _save(tmp_path / "a.png", np.zeros((30, 30, 3), dtype=np.uint8))
    monkeypatch.setenv("FEATLAB_DATA", str(tmp_path))
    assert load_image_folder(size=16, resize=20).x.shape == (1, 3, 16, 16)
    monkeypatch.delenv("FEATLAB_DATA")
    with pytest.raises(FileNotFoundError, match="no root given"):
        load_image_folder()
