"""The closed-form mean-protocol denominator: one pass, and exact under heavy cancellation."""
from __future__ import annotations

import pytest
import torch

from featlab.probes._stability import mean_sq_distance, mean_sq_distance_pairwise


@pytest.mark.parametrize("offset", [0.0, 30.0, 1e3, 1e6])
def test_closed_form_denominator_matches_explicit_pairs_at_any_offset(offset):
    g = torch.Generator().manual_seed(0)
    F = torch.randn(41, 300, generator=g, dtype=torch.float64) + offset
    exact = mean_sq_distance_pairwise(F - F.mean(0))  # pairs are shift invariant
    for rows in (None, 1, 7):
        assert float(mean_sq_distance(F, chunk_size=rows)) == pytest.approx(float(exact), rel=1e-12)


def test_closed_form_denominator_reads_float32_as_float64():
    g = torch.Generator().manual_seed(1)
    F = torch.randn(33, 129, generator=g)
    assert float(mean_sq_distance(F)) == pytest.approx(float(mean_sq_distance_pairwise(F.double())), rel=1e-12)
