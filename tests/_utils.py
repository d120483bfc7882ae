"""Test helpers: a fixed-seed subset of a parameter grid (neural-tangents' ``product``)."""
from __future__ import annotations

import itertools
import random

import pytest


def product(n_cases: int = 4, seed: int = 42, **grid):
    """``pytest.mark.parametrize`` over a fixed-seed random subset of the cartesian grid."""
    names = list(grid)
    combos = list(itertools.product(*(grid[n] for n in names)))
    rng = random.Random(seed)
    if len(combos) > n_cases:
        combos = rng.sample(combos, n_cases)
    return pytest.mark.parametrize(",".join(names), combos)
