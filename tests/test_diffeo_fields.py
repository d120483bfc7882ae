"""Max-entropy displacement fields: mask, mode variances, boundary, axes, reproducibility."""
import math

import pytest
import torch

from featlab.diffeo import sample_displacement
from featlab.diffeo.fields import mode_mask, sin_basis


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_mask_c3_is_exactly_the_codes_set():
    E = mode_mask(3)
    kept = {(i + 1, j + 1) for i in range(3) for j in range(3) if E[i, j] != 0}
    assert kept == {(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1)}
    assert E[0, 1] == pytest.approx(1 / math.sqrt(5), abs=1e-15)


@pytest.mark.parametrize("kw, match", [(dict(T=-1.0, cut=3), "T must"), (dict(T=1e-3, cut=0), "cut must"),
                                       (dict(T=1e-3, cut=2.5), "cut must")])
def test_exception_bad_T_or_cut_one_line(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        sample_displacement(2, 8, generator=_g(), **kw)
    assert "\n" not in str(e.value)


def test_exception_bad_rng_order():
    with pytest.raises(ValueError, match="rng_order must be one of"):
        sample_displacement(2, 8, 1e-3, 3, _g(), rng_order="numpy")


def test_mode_coefficient_variance_is_one_over_r2_monte_carlo():
    # Project the fields back on the (discretely orthogonal) sine basis; T = 1, unit-square units.
    n, c, B = 16, 4, 3000
    d = sample_displacement(B, n, 1.0, c, _g(1))  # (B, 2, n, n)
    Sp = torch.linalg.pinv(sin_basis(n, c))  # (c, n)
    # U[y, x] = sum_ij Sy[y, j] A[i, j] Sx[x, i]  =>  A^T = Sp U Sp^T
    A = (Sp @ (d / n) @ Sp.T).transpose(-1, -2)  # (B, 2, c, c) [i-1, j-1]
    var = A.pow(2).mean((0, 1))  # (c, c)
    E2 = mode_mask(c) ** 2
    kept = E2 > 0
    # 2B = 6000 samples per mode: relative std of a variance estimate sqrt(2/6000) = 1.8%.
    assert torch.allclose(var[kept], E2[kept], rtol=0.08)
    assert var[~kept].max() < 1e-20


def test_boundary_pixels_do_not_move():
    d = sample_displacement(8, 20, 0.05, 5, _g())
    for edge in (d[..., 0, :], d[..., -1, :], d[..., :, 0], d[..., :, -1]):
        assert edge.abs().max() <= 1e-10
    assert d.abs().max() > 0.1


def test_convention_channel0_is_dx_with_x_frequency_i_matches_reference_formula():
    # rng_order="reference" draws randn(c, c) for u then v per image; rebuild with the
    # reference einsum('ij,xi,yj->yx', C*e, s, s) written independently.
    n, c, T = 12, 3, 0.01
    d = sample_displacement(3, n, T, c, _g(5), rng_order="reference")
    g = _g(5)
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    k = torch.arange(1, c + 1, dtype=torch.float64)
    i, j = torch.meshgrid(k, k, indexing="ij")
    r = (i ** 2 + j ** 2).sqrt()
    e = (r < c + 0.5) / r
    s = torch.sin(math.pi * x[:, None] * k[None, :])
    for b in range(3):
        for comp in range(2):
            C = torch.randn(c, c, generator=g, dtype=torch.float64) * e
            ref = torch.einsum("ij,xi,yj->yx", C, s, s) * math.sqrt(T) * n
            assert torch.allclose(d[b, comp], ref, atol=1e-13, rtol=0)


def test_per_image_fields_differ_and_seed_reproduces():
    d1 = sample_displacement(4, 10, 0.01, 3, _g(7))
    d2 = sample_displacement(4, 10, 0.01, 3, _g(7))
    assert torch.equal(d1, d2)
    assert (d1[0] - d1[1]).abs().max() > 1e-3
    assert (d1[:, 0] - d1[:, 1]).abs().max() > 1e-3  # dx and dy independent


def test_per_image_T_and_cut_match_separate_calls():
    T = torch.tensor([0.01, 0.0, 0.04], dtype=torch.float64)
    cut = torch.tensor([2, 3, 4])
    d = sample_displacement(3, 10, T, cut, _g(3), rng_order="reference")
    g = _g(3)
    for b in range(3):
        ref = sample_displacement(1, 10, float(T[b]), int(cut[b]), g, rng_order="reference")
        assert torch.allclose(d[b], ref[0], atol=1e-13, rtol=0)


def test_non_square_scales_dx_by_W_and_dy_by_H():
    H, W = 6, 14
    d = sample_displacement(200, (H, W), 0.01, 3, _g(2))
    assert d.shape == (200, 2, H, W)
    assert d[..., 0, :].abs().max() < 1e-10 and d[..., :, -1].abs().max() < 1e-10
    # dx / W and dy / H have the same distribution (square-unit fields); compare RMS.
    rx = (d[:, 0] / W).pow(2).mean().sqrt()
    ry = (d[:, 1].transpose(-1, -2) / H).pow(2).mean().sqrt()
    assert rx > 0 and float(rx / ry) == pytest.approx(1.0, rel=0.15)


def test_dtype_and_zero_temperature():
    d = sample_displacement(2, 8, 0.0, 3, _g(), dtype=torch.float32)
    assert d.dtype == torch.float32 and torch.count_nonzero(d) == 0


@pytest.mark.cuda
def test_cuda_generator_draws_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    d = sample_displacement(2, 8, 0.01, 3, g)
    assert d.device.type == "cuda"


def test_convention_pixel_displacement_scales_with_n_not_n_minus_1():
    # same coefficients (same seed, reference order), grids of 9 and 17 pixels: the middle
    # pixel is x~ = y~ = 1/2 in both, so dx there scales exactly as n (sqrt(T) u n).
    a = sample_displacement(2, 9, 0.01, 3, _g(11), rng_order="reference")[..., 4, 4]
    b = sample_displacement(2, 17, 0.01, 3, _g(11), rng_order="reference")[..., 8, 8]
    assert torch.allclose(b / a, torch.full_like(a, 17 / 9), rtol=1e-12)


def test_convention_displacement_is_stored_channels_last_and_matches_the_mode_sum():
    B, H, W, c, T = 3, 9, 12, 3, 0.02
    g = torch.Generator().manual_seed(3)
    d = sample_displacement(B, (H, W), T, c, g)
    assert d.shape == (B, 2, H, W) and d.permute(0, 2, 3, 1).is_contiguous()
    C = torch.randn(B, 2, c, c, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    A = C * mode_mask(c)  # A[b, comp, i, j], i the x-frequency
    ref = torch.einsum("bcij,xi,yj->bcyx", A, sin_basis(W, c), sin_basis(H, c))
    ref = ref * T ** 0.5 * torch.tensor([W, H], dtype=torch.float64).reshape(1, 2, 1, 1)
    assert torch.allclose(d, ref, atol=1e-12)
