"""Image data: archive loaders on files written here in the real formats, safe unpickling,
ImageData helpers, digits and natural patches."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from featlab.data.images import (
    ImageData,
    load_cifar10,
    load_cifar100,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    natural_patches,
    read_idx,
)
from featlab.data.safe_pickle import UnsafePickleError, safe_loads


def _cifar_batch(n, seed, label_key=b"labels"):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).tolist()
    return {b"batch_label": b"x", label_key: labels, b"data": data}


def _write_cifar10(tmp_path, archive: bool, n=4):
    batches = {f"data_batch_{i}": _cifar_batch(n, i) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(n, 9)
    batches["batches.meta"] = {b"label_names": [b"airplane"] * 10}
    if archive:
        path = tmp_path / "cifar-10-python.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name, d in batches.items():
                raw = pickle.dumps(d, protocol=2)
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        d = tmp_path / "cifar-10-batches-py"
        d.mkdir()
        for name, b in batches.items():
            (d / name).write_bytes(pickle.dumps(b, protocol=2))
    return batches


@pytest.mark.parametrize("archive", [True, False])
def test_feature_cifar10_archive_and_directory(tmp_path, archive):
    batches = _write_cifar10(tmp_path, archive)
    data = load_cifar10(tmp_path)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.num_classes == 10
    # convention: row-major (C, H, W) from the 3072 bytes (R plane, then G, then B), /255
    raw = batches["data_batch_2"][b"data"][1]
    assert torch.equal(data.x_train[5], torch.from_numpy(raw.reshape(3, 32, 32)).float() / 255)
    assert data.x_train[5, 1, 0, 3] * 255 == raw[1024 + 3]
    assert data.y_train.tolist()[4:8] == batches["data_batch_2"][b"labels"]


def test_convention_cifar_pixel_layout_and_range(tmp_path):
    _write_cifar10(tmp_path, archive=False)
    data = load_cifar10(tmp_path)
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0 and not data.standardised


def test_feature_cifar100_fine_and_coarse(tmp_path, monkeypatch):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 6), ("test", 3)):
        b = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"fine_labels": list(range(n)), b"coarse_labels": [1] * n}
        (d / name).write_bytes(pickle.dumps(b, protocol=2))
    (d / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                                           b"coarse_label_names": [b"s"] * 20}, protocol=2))
    monkeypatch.setenv("FEATLAB_DATA", str(tmp_path))
    fine = load_cifar100()
    assert fine.y_train.tolist() == list(range(6)) and fine.classes[3] == "c3" and fine.num_classes == 100
    coarse = load_cifar100(labels="coarse")
    assert coarse.y_test.tolist() == [1, 1, 1] and coarse.num_classes == 20


def test_exception_malicious_pickle_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / name).write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        load_cifar10(tmp_path)
    assert not marker.exists()
    for payload in (pickle.dumps(eval, protocol=2), pickle.dumps(Evil(), protocol=4)):
        with pytest.raises(UnsafePickleError):
            safe_loads(payload)
    assert not marker.exists()


def test_safe_loads_accepts_numpy_and_containers():
    obj = {b"a": np.arange(6, dtype=np.float32).reshape(2, 3), b"b": [1, 2.5, "s", (None, True)]}
    for proto in (2, 4):
        out = safe_loads(pickle.dumps(obj, protocol=proto))
        assert np.array_equal(out[b"a"], obj[b"a"]) and out[b"b"] == obj[b"b"]


def test_exception_missing_files_message(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATLAB_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz.*FEATLAB_DATA"):
        load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*FEATLAB_DATA"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="FEATLAB_DATA"):
        load_fashion_mnist()
    assert len(str(pytest.raises(FileNotFoundError, load_cifar100, tmp_path).value).splitlines()) == 1


def _idx(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


@pytest.mark.parametrize("gz,sub", [(True, "MNIST/raw"), (False, "")])
def test_feature_mnist_idx_files(tmp_path, gz, sub):
    rng = np.random.default_rng(1)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 5, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": np.array([3, 7], dtype=np.uint8)}
    d = tmp_path / sub if sub else tmp_path
    d.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        raw = _idx(a)
        (d / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    data = load_mnist(tmp_path)
    assert data.x_train.shape == (5, 1, 28, 28) and data.y_test.tolist() == [3, 7]
    assert torch.equal(data.x_train[2, 0] * 255, torch.from_numpy(arrays["train-images-idx3-ubyte"][2]).float())
    if not sub:
        fm = load_fashion_mnist(tmp_path)
        assert fm.classes[9] == "Ankle boot" and fm.name == "fashion_mnist"


def test_exception_bad_idx():
    with pytest.raises(ValueError, match="magic"):
        read_idx(b"\x01\x00\x08\x01")
    with pytest.raises(ValueError, match="payload"):
        read_idx(struct.pack(">BBBBI", 0, 0, 8, 1, 5) + b"abc")


def _toy(n=40, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    return ImageData(torch.rand(n, 2, 3, 3, generator=g), y, torch.rand(8, 2, 3, 3, generator=g),
                     torch.arange(8) % classes, tuple("abcd"), "toy")


def test_standardise_uses_train_statistics_per_channel():
    d = _toy()
    s = d.standardise()
    m = s.x_train.mean(dim=(0, 2, 3))
    sd = s.x_train.std(dim=(0, 2, 3))
    assert torch.allclose(m, torch.zeros(2), atol=1e-6) and torch.allclose(sd, torch.ones(2), atol=1e-5)
    mu, st = d.x_train.mean(dim=(0, 2, 3)), d.x_train.std(dim=(0, 2, 3))
    assert torch.allclose(s.x_test, (d.x_test - mu[:, None, None]) / st[:, None, None], atol=1e-6)
    assert s.standardised and s.name == "toy+std"


def test_subset_stratified_and_seeded():
    d = _toy()
    a = d.subset(20, torch.Generator().manual_seed(0))
    b = d.subset(20, torch.Generator().manual_seed(0))
    c = d.subset(20, torch.Generator().manual_seed(1))
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.y_train.bincount().tolist() == [5, 5, 5, 5]
    assert d.subset(6, torch.Generator().manual_seed(0)).y_train.bincount().sum() == 6
    assert torch.equal(a.x_test, d.x_test)
    with pytest.raises(ValueError, match="n must be"):
        d.subset(41)


def test_split_holds_out_disjoint_validation():
    d = _toy()
    s = d.split(8, torch.Generator().manual_seed(0))
    assert len(s.x_train) == 32 and len(s.x_test) == 8
    rows = {tuple(r.tolist()) for r in s.x_train.flatten(1)}
    assert not any(tuple(r.tolist()) in rows for r in s.x_test.flatten(1))
    assert s.y_test.bincount().tolist() == [2, 2, 2, 2]


def test_digits_shapes_and_range():
    pytest.importorskip("sklearn")
    d = load_digits(generator=torch.Generator().manual_seed(0))
    assert d.x_train.shape == (1300, 1, 8, 8) and d.x_test.shape == (497, 1, 8, 8)
    assert d.x_train.min() == 0 and d.x_train.max() == 1 and d.num_classes == 10


def test_natural_patches_gray_and_color():
    pytest.importorskip("skimage")
    from skimage import data as skd
    g = torch.Generator().manual_seed(0)
    p = natural_patches(8, 6, g)
    assert p.shape == (6, 1, 8, 8) and 0 <= p.min() and p.max() <= 1 and p.std() > 0
    c = natural_patches(8, 3, torch.Generator().manual_seed(0), color=True)
    assert c.shape == (3, 3, 8, 8)
    # each patch is a genuine crop of the camera image
    cam = torch.from_numpy(skd.camera().astype(np.float32) / 255)
    q = natural_patches(4, 2, torch.Generator().manual_seed(0), images=("camera",))
    win = cam.unfold(0, 4, 1).unfold(1, 4, 1)  # (H-3, W-3, 4, 4)
    for k in range(2):
        assert (win - q[k, 0]).abs().amax(dim=(-1, -2)).min() == 0
    with pytest.raises(ValueError, match="size"):
        natural_patches(0, 1)


def test_crafted_pickle_cannot_allocate_huge_arrays():
    import pickle

    import numpy as np
    import pytest

    from featlab.data.images import _cifar_batch
    from featlab.data.safe_pickle import UnsafePickleError, safe_loads

    class Huge:
        def __reduce__(self):
            return (np.ndarray, ((20_000_000_000,), np.dtype("u1")))

    with pytest.raises(UnsafePickleError):
        safe_loads(pickle.dumps({b"data": Huge(), b"labels": [0]}, protocol=2))
    # shared-reference nested lists would explode in np.asarray: refused before any copy
    row = [0] * 3072
    with pytest.raises(ValueError, match="uint8 array"):
        _cifar_batch(pickle.dumps({b"data": [row] * 1000, b"labels": [0] * 1000}, protocol=2), b"labels")
    # a genuine array round-trips through the restricted unpickler
    x = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    got, y = _cifar_batch(pickle.dumps({b"data": x, b"labels": [1, 2]}, protocol=2), b"labels")
    assert got.shape == (2, 3, 32, 32) and np.array_equal(got.reshape(2, -1), x) and list(y) == [1, 2]
    with pytest.raises(ValueError, match="labels"):
        _cifar_batch(pickle.dumps({b"data": x, b"labels": [1]}, protocol=2), b"labels")
