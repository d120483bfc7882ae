"""deform: identity, sign/axis conventions, backends vs plain formulas, Gaussian stencil, Diffeo."""
import math

import pytest
import torch

from featlab.diffeo import Diffeo, deform, gaussian_blur_reference, sample_displacement
from featlab.diffeo.warp import dense_gaussian_deform

f64 = torch.float64


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _x(B=3, C=2, H=9, W=9, seed=0):
    return torch.randn(B, C, H, W, generator=_g(seed), dtype=f64)


def _field(B=3, H=9, W=9, scale=1.5, seed=1):
    return scale * torch.randn(B, 2, H, W, generator=_g(seed), dtype=f64)


@pytest.mark.parametrize("interp", ["linear", "nearest"])
@pytest.mark.parametrize("backend", ["grid_sample", "gather"])
def test_zero_temperature_is_identity(interp, backend):
    x = _x()
    d = sample_displacement(3, 9, 0.0, 3, _g())
    assert (deform(x, d, interp, backend=backend) - x).abs().max() <= 1e-12


@pytest.mark.parametrize("backend", ["grid_sample", "gather"])
def test_convention_dx_positive_moves_content_right(backend):
    x = _x(H=6, W=7)
    d = torch.zeros(3, 2, 6, 7, dtype=f64)
    d[:, 0] = 1.0  # channel 0 = dx, along W
    out = deform(x, d, "linear", backend=backend)
    assert torch.allclose(out[..., :, 1:], x[..., :, :-1], atol=1e-12, rtol=0)
    assert torch.allclose(out[..., :, 0], x[..., :, 0], atol=1e-12, rtol=0)  # clamp at x = 0


@pytest.mark.parametrize("backend", ["grid_sample", "gather"])
def test_convention_dy_positive_moves_content_down_rows(backend):
    x = _x(H=6, W=7)
    d = torch.zeros(3, 2, 6, 7, dtype=f64)
    d[:, 1] = 1.0
    out = deform(x, d, "linear", backend=backend)
    assert torch.allclose(out[..., 1:, :], x[..., :-1, :], atol=1e-12, rtol=0)
    assert torch.allclose(out[..., 0, :], x[..., 0, :], atol=1e-12, rtol=0)


def test_convention_align_corners_half_pixel_is_the_average():
    x = _x(B=1, C=1, H=4, W=5)
    d = torch.zeros(1, 2, 4, 5, dtype=f64)
    d[:, 0] = 0.5
    out = deform(x, d, "linear")
    assert torch.allclose(out[..., 1:], 0.5 * (x[..., 1:] + x[..., :-1]), atol=1e-12, rtol=0)


def _loop_bilinear(img, d):
    """Plain per-pixel floor/ceil loop (the reference's remap), img (H, W), d (2, H, W)."""
    H, W = img.shape
    out = torch.empty_like(img)
    for y in range(H):
        for x in range(W):
            X = min(max(x - float(d[0, y, x]), 0.0), W - 1.0)
            Y = min(max(y - float(d[1, y, x]), 0.0), H - 1.0)
            xf, xc, yf, yc = math.floor(X), math.ceil(X), math.floor(Y), math.ceil(Y)
            wx, wy = X - xf, Y - yf
            out[y, x] = ((1 - wy) * ((1 - wx) * img[yf, xf] + wx * img[yf, xc])
                         + wy * ((1 - wx) * img[yc, xf] + wx * img[yc, xc]))
    return out


@pytest.mark.parametrize("scale", [0.7, 6.0])  # 6 px: many clamped points
def test_grid_sample_equals_gather_equals_loop(scale):
    x, d = _x(), _field(scale=scale)
    a = deform(x, d, "linear", backend="grid_sample")
    b = deform(x, d, "linear", backend="gather")
    assert (a - b).abs().max() <= 1e-12
    assert (b[1, 0] - _loop_bilinear(x[1, 0], d[1])).abs().max() <= 1e-12


def test_nearest_equals_round_based_gather():
    x, d = _x(), _field(scale=3.0)
    a = deform(x, d, "nearest", backend="grid_sample")
    b = deform(x, d, "nearest", backend="gather")
    assert torch.equal(a, b)
    X = (torch.arange(9, dtype=f64) - d[0, 0]).clamp(0, 8).round().long()
    Y = (torch.arange(9, dtype=f64)[:, None] - d[0, 1]).clamp(0, 8).round().long()
    assert torch.equal(b[0, 1], x[0, 1][Y, X])


def test_single_field_broadcasts_over_batch():
    x, d = _x(), _field(B=1)
    out = deform(x, d[0], "linear")
    for b in range(3):
        assert torch.equal(out[b], deform(x[b], d[0], "linear"))


@pytest.mark.parametrize("backend", ["grid_sample", "gather"])
@pytest.mark.parametrize("R, tol", [(3, 1e-6), (4, 1e-12)])
def test_truncated_gaussian_equals_dense(R, tol, backend):
    x, d = _x(H=10, W=11), _field(H=10, W=11, scale=2.0)
    a = deform(x, d, "gaussian", gaussian_radius=R, backend=backend)
    b = dense_gaussian_deform(x, d)
    assert (a - b).abs().max() <= tol


@pytest.mark.parametrize("R", [1, 2, 3])
def test_gaussian_paired_bilinear_equals_explicit_taps(R):
    x, d = _x(H=9, W=12), _field(H=9, W=12, scale=4.0)  # large: many border / clamped taps
    a = deform(x, d, "gaussian", gaussian_radius=R, backend="grid_sample")
    b = deform(x, d, "gaussian", gaussian_radius=R, backend="gather")
    assert (a - b).abs().max() <= 1e-12


def test_gaussian_zero_displacement_delta_response():
    s = 0.4715
    w = torch.exp(-torch.arange(-6, 7, dtype=f64) ** 2 / (2 * s ** 2))
    w0, w1 = float(w[6] / w.sum()), float(w[7] / w.sum())
    x = torch.zeros(1, 1, 11, 11, dtype=f64)
    x[..., 5, 5] = 1.0
    out = gaussian_blur_reference(x, gaussian_radius=4)[0, 0]
    assert out[5, 5] == pytest.approx(w0 * w0, abs=1e-12)
    assert out[5, 4] == pytest.approx(w0 * w1, abs=1e-12)
    assert out[4, 5] == pytest.approx(w0 * w1, abs=1e-12)
    assert out[4, 4] == pytest.approx(w1 * w1, abs=1e-12)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-12)


def test_gather_backend_twice_differentiable():
    x, d = _x(B=1, C=1, H=4, W=4), _field(B=1, H=4, W=4, scale=0.4)
    x.requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: deform(t, d, "linear", backend="gather") ** 2, (x,))
    assert torch.autograd.gradgradcheck(lambda t: deform(t, d, "gaussian", backend="gather") ** 2, (x,))


@pytest.mark.parametrize("kw, match", [(dict(interp="cubic"), "interp must be one of"),
                                       (dict(backend="kornia"), "backend must be one of")])
def test_exception_bad_choice(kw, match):
    with pytest.raises(ValueError, match=match):
        deform(_x(), _field(), **kw)


def test_exception_shape_mismatch():
    with pytest.raises(ValueError, match="displacement must have shape"):
        deform(_x(), _field(H=8, W=8))


def test_diffeo_replay_and_seed():
    x = _x(B=4, H=12, W=12)
    m = Diffeo(T=0.01, cut=3, generator=_g(3))
    y = m(x)
    assert torch.equal(m(x, params=m.last_params), y)
    assert not torch.equal(m(x), y)  # fresh fields
    y2 = Diffeo(T=0.01, cut=3, generator=_g(3))(x)
    assert torch.equal(y, y2)


def test_diffeo_range_mode_draws_cut_and_T_in_range():
    from featlab.diffeo import temperature_range
    m = Diffeo(generator=_g(4), cutmin=2, cutmax=6, interp="nearest")
    m(_x(B=64, C=1, H=32, W=32))  # n = 32 > pi c / 2, so T_min < T_max for every cut
    p = m.last_params
    assert p["cut"].min() >= 2 and p["cut"].max() <= 6 and len(set(p["cut"].tolist())) > 3
    for T, c in zip(p["T"].tolist(), p["cut"].tolist()):
        lo, hi = temperature_range(32, c)
        assert lo <= T <= hi
    with pytest.raises(ValueError, match="cutmin"):
        Diffeo(cutmin=1)


def test_gaussian_chunking_is_a_memory_knob_only():
    from featlab.diffeo.warp import _gaussian_truncated, sampling_points
    x, d = _x(B=5), _field(B=5, scale=2.0)
    X, Y = sampling_points(d)
    a = _gaussian_truncated(x, X, Y, 3, 0.4715)
    b = _gaussian_truncated(x, X, Y, 3, 0.4715, max_elements=1)  # one image per chunk
    assert torch.equal(a, b)
    one = deform(x, d[0], "gaussian")  # one field broadcast over the batch
    assert torch.allclose(one[2], deform(x[2], d[0], "gaussian"), atol=1e-15, rtol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("interp", ["linear", "nearest", "gaussian"])
def test_cuda_deform_matches_cpu(interp):
    x, d = _x(), _field(scale=2.0)
    assert torch.allclose(deform(x.cuda(), d.cuda(), interp).cpu(), deform(x, d, interp), atol=1e-12)
