"""The closed-form mean-protocol denominator: one read, and exact under heavy cancellation.

Every closed-form test runs twice, through the C kernel (featlab.probes._moments) and through the
torch path, against explicit pairs (chunked float64 cdist) or a float64 two-pass oracle.
"""
from __future__ import annotations

import os

import pytest
import torch

from featlab.probes import _moments
from featlab.probes._stability import mean_sq_distance, mean_sq_distance_pairwise


@pytest.fixture(params=["c_kernel", "torch"])
def path(request, monkeypatch):
    if request.param == "c_kernel":
        if not _moments.AVAILABLE:
            pytest.skip("C kernel featlab.probes._moments_c not built (no C compiler at install)")
    else:
        monkeypatch.setattr(_moments, "_FNS", None)
    return request.param


def test_c_kernel_is_built_where_ci_requires_it():
    # CI (.ci/run) sets FEATLAB_REQUIRE_C_KERNELS=1: a missing build fails there instead of
    # silently timing and testing only the torch path.
    if os.environ.get("FEATLAB_REQUIRE_C_KERNELS", "") in ("", "0"):
        pytest.skip("FEATLAB_REQUIRE_C_KERNELS not set")
    assert _moments.AVAILABLE


@pytest.mark.parametrize("offset", [0.0, 30.0, 1e3, 1e6])
def test_closed_form_denominator_matches_explicit_pairs_at_any_offset(offset, path):
    g = torch.Generator().manual_seed(0)
    F = torch.randn(41, 300, generator=g, dtype=torch.float64) + offset
    exact = mean_sq_distance_pairwise(F - F.mean(0))  # pairs are shift invariant
    for rows in (None, 1, 7):
        assert float(mean_sq_distance(F, chunk_size=rows)) == pytest.approx(float(exact), rel=1e-12)


def test_closed_form_denominator_reads_float32_as_float64(path):
    g = torch.Generator().manual_seed(1)
    F = torch.randn(33, 129, generator=g)
    assert float(mean_sq_distance(F)) == pytest.approx(float(mean_sq_distance_pairwise(F.double())), rel=1e-12)


@pytest.mark.parametrize("P, D", [(1, 5), (3, 1), (4, 7), (5, 8), (9, 33), (130, 2)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_c_kernel_sums_equal_the_float64_oracle_for_every_row_remainder(P, D, dtype):
    # rows go four at a time in the kernel: P = 1, 3, 4, 5, 9, 130 cover every remainder
    if not _moments.AVAILABLE:
        pytest.skip("C kernel not built")
    g = torch.Generator().manual_seed(P * 100 + D)
    F = (torch.randn(P, D, generator=g, dtype=torch.float64) * 3 + 1).to(dtype)
    S1, S2 = _moments.colsum_sumsq(F)
    F64 = F.double()
    assert S1.dtype == torch.float64 and S1.shape == (D,)
    torch.testing.assert_close(S1, F64.sum(0), rtol=1e-14, atol=1e-13)
    assert S2 == pytest.approx(float((F64 * F64).sum()), rel=1e-14)


def test_c_kernel_declines_what_it_does_not_serve():
    # non-contiguous, integer, 3-d or grad-tracking input falls back to the torch path (None)
    F = torch.randn(6, 10, dtype=torch.float64)
    assert _moments.colsum_sumsq(F.t()) is None
    assert _moments.colsum_sumsq(torch.ones(3, 4, dtype=torch.int64)) is None
    assert _moments.colsum_sumsq(F.reshape(2, 3, 10)) is None
    assert _moments.colsum_sumsq(F.clone().requires_grad_()) is None
    # and mean_sq_distance still gives the right number for the strided one
    assert float(mean_sq_distance(F.t())) == pytest.approx(float(mean_sq_distance_pairwise(F.t())), rel=1e-12)


def test_c_kernel_and_torch_path_agree_on_a_large_array(monkeypatch):
    if not _moments.AVAILABLE:
        pytest.skip("C kernel not built")
    g = torch.Generator().manual_seed(2)
    F = torch.randn(37, 20_001, generator=g, dtype=torch.float64) + 0.5
    fast = float(mean_sq_distance(F))
    monkeypatch.setattr(_moments, "_FNS", None)
    assert fast == pytest.approx(float(mean_sq_distance(F)), rel=1e-13)


def test_convention_featlab_no_c_kernels_disables_the_kernel():
    import subprocess
    import sys
    code = "from featlab.probes import _moments; print(_moments.AVAILABLE)"
    env = dict(os.environ, FEATLAB_NO_C_KERNELS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
