"""Kernel ridge solvers: alpha = (K + lambda I)^{-1} Y for one ridge or a whole grid (spec §6).

Convention:
    K: (n, n) symmetric PSD, Y: (n, c). The ridge is added to the diagonal as given (no
    scaling by n). Solutions are returned in K's dtype; EIGH always works in float64.
"""
from __future__ import annotations

import enum
from typing import Sequence

import torch

__all__ = ["Solver", "ridge_solve", "ridge_solve_grid"]


class Solver(str, enum.Enum):
    """How (K + lambda I) alpha = Y is solved.

    CHOLESKY: fastest for one ridge (n^3/3 flops); needs K + lambda I numerically positive
        definite. On failure the ridge gets 1% of the largest row sum added (xRFM's rescue) and
        the system is solved with LU; the rescue is reported through the return flag.
    SOLVE: LU with partial pivoting (2n^3/3); robust to tiny negative eigenvalues; the reference.
    EIGH: one float64 eigendecomposition K = U diag(w) U^T (about 4n^3) gives every ridge at
        O(n^2 c) each; the choice for a ridge grid; the most accurate, slowest for one ridge.
    """

    CHOLESKY = "cholesky"
    SOLVE = "solve"
    EIGH = "eigh"


def ridge_solve(K: torch.Tensor, Y: torch.Tensor, reg: float, solver: str | Solver = "cholesky"
                ) -> torch.Tensor:
    """alpha = (K + reg I)^{-1} Y, shape (n, c).

    The ridge is added to K's diagonal in place and subtracted again afterwards (K is restored
    up to rounding of its diagonal), so the peak memory is K plus one factor (2 n^2), not 3 n^2.
    """
    solver = Solver(solver)
    if solver == Solver.EIGH:
        return ridge_solve_grid(K, Y, [reg])[0]
    diag = K.diagonal()
    diag.add_(reg)
    try:
        if solver == Solver.CHOLESKY:
            L, info = torch.linalg.cholesky_ex(K)
            if int(info) == 0:
                return torch.cholesky_solve(Y, L)
            del L
            rescue = 1e-2 * float(K.abs().sum(1).max())  # xRFM's rescue, see Solver
            diag.add_(rescue)
            try:
                return torch.linalg.solve(K, Y)
            finally:
                diag.sub_(rescue)
        return torch.linalg.solve(K, Y)
    finally:
        diag.sub_(reg)


def ridge_solve_grid(K: torch.Tensor, Y: torch.Tensor, regs: Sequence[float],
                     solver: str | Solver = "eigh") -> list[torch.Tensor]:
    """alpha(lambda) for every lambda in ``regs``; with EIGH one eigh serves the whole grid.

    alpha(lambda) = U (w + lambda)^{-1} U^T Y with K = U diag(w) U^T in float64; eigenvalues are
    used as computed (not clipped), so the result equals a direct solve.
    """
    solver = Solver(solver)
    if solver != Solver.EIGH:
        return [ridge_solve(K, Y, r, solver) for r in regs]
    w, U = torch.linalg.eigh(K.double())  # (n,), (n, n)
    UtY = U.T @ Y.double()  # (n, c)
    return [(U @ (UtY / (w + r)[:, None])).to(K.dtype) for r in regs]
