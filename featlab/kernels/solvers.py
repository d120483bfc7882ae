"""Kernel ridge solvers: alpha = (K + lambda I)^{-1} Y for one ridge or a whole grid (spec §6).

Convention:
    K: (n, n) symmetric PSD, Y: (n, c). The ridge is added to the diagonal as given (no
    scaling by n). Solutions are returned in K's dtype; EIGH always works in float64.
"""
from __future__ import annotations

import enum
from typing import Sequence

import torch

__all__ = ["Solver", "NotPositiveDefinite", "ridge_solve", "ridge_solve_grid"]


class Solver(str, enum.Enum):
    """How (K + lambda I) alpha = Y is solved.

    CHOLESKY: fastest for one ridge (n^3/3 flops); needs K + lambda I numerically positive
        definite. On failure the ridge gets 1% of the largest row sum added (xRFM's rescue) and
        the system is solved with LU, silently (as xRFM does).
    SOLVE: LU with partial pivoting (2n^3/3); robust to tiny negative eigenvalues; the reference.
    EIGH: one float64 eigendecomposition K = U diag(w) U^T (about 4n^3) gives every ridge at
        O(n^2 c) each; the choice for a ridge grid; the most accurate, slowest for one ridge.
    """

    CHOLESKY = "cholesky"
    SOLVE = "solve"
    EIGH = "eigh"


class NotPositiveDefinite(RuntimeError):
    """An in-place Cholesky factorisation (``overwrite=True``) failed; K has been overwritten.

    The caller rebuilds K and solves again with ``overwrite=False``, which applies the rescue.
    """


def _symmetric(K: torch.Tensor, triangle: str | None) -> torch.Tensor:
    """The full symmetric matrix whose upper triangle K holds (``triangle="upper"``), else K itself."""
    if triangle is None:
        return K
    return K.triu() + K.triu(1).mT


def _check_triangle(triangle: str | None) -> None:
    if triangle not in (None, "upper"):
        raise ValueError(f"triangle={triangle!r} is not allowed; allowed: None, 'upper'")


def ridge_solve(K: torch.Tensor, Y: torch.Tensor, reg: float, solver: str | Solver = "cholesky", *,
                triangle: str | None = None, overwrite: bool = False) -> torch.Tensor:
    """alpha = (K + reg I)^{-1} Y, shape (n, c).

    ``triangle="upper"``: only K's upper triangle (with the diagonal) holds the matrix and only it
    is read (the strict lower triangle may hold anything); CHOLESKY and EIGH read one triangle
    natively, SOLVE (LU) then builds the symmetric matrix (one more n^2).
    ``overwrite=True`` (CHOLESKY): factorise K in place, so no n^2 copy is made and K is
    destroyed; if the factorisation fails, :class:`NotPositiveDefinite` is raised (the rescue
    needs K: rebuild it and call again without ``overwrite``). Otherwise the ridge is added to
    K's diagonal in place and subtracted again afterwards (K is restored up to rounding of its
    diagonal), so the peak memory is K plus one factor (2 n^2), not 3 n^2.

    Convention:
        CHOLESKY factorises ``K.mT`` = L L^T (the F-contiguous view of K: no transposed copy; its
        lower triangle is K's upper one; LAPACK's lower potrf on column-major storage measured
        ~9% faster than the upper one) and solves with two triangular solves.
    """
    _check_triangle(triangle)
    solver = Solver(solver)
    if solver == Solver.EIGH:
        return ridge_solve_grid(K, Y, [reg], triangle=triangle)[0]
    diag = K.diagonal()
    diag.add_(reg)
    if solver == Solver.CHOLESKY and overwrite:
        info = torch.empty((), dtype=torch.int32, device=K.device)
        L, info = torch.linalg.cholesky_ex(K.mT, out=(K.mT, info))  # in place, reads K's upper triangle
        if int(info) != 0:
            raise NotPositiveDefinite(f"K + {reg} I is not numerically positive definite")
        return _cholesky_solve(L, Y)
    try:
        if solver == Solver.CHOLESKY:
            L, info = torch.linalg.cholesky_ex(K.mT)  # reads K's upper triangle
            if int(info) == 0:
                return _cholesky_solve(L, Y)
            del L
            S = _symmetric(K, triangle)  # K itself when it is full (then changed and restored in place)
            rescue = 1e-2 * float(S.abs().sum(1).max())  # xRFM's rescue, see Solver
            S.diagonal().add_(rescue)
            try:
                return torch.linalg.solve(S, Y)
            finally:
                S.diagonal().sub_(rescue)
        return torch.linalg.solve(_symmetric(K, triangle), Y)
    finally:
        diag.sub_(reg)


def _cholesky_solve(L: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """(L L^T)^{-1} Y by two triangular solves."""
    Z = torch.linalg.solve_triangular(L, Y, upper=False)
    return torch.linalg.solve_triangular(L.mT, Z, upper=True)


def ridge_solve_grid(K: torch.Tensor, Y: torch.Tensor, regs: Sequence[float],
                     solver: str | Solver = "eigh", *, triangle: str | None = None,
                     overwrite: bool = False) -> list[torch.Tensor]:
    """alpha(lambda) for every lambda in ``regs``; with EIGH one eigh serves the whole grid.

    alpha(lambda) = U (w + lambda)^{-1} U^T Y with K = U diag(w) U^T in float64; eigenvalues are
    used as computed (not clipped), so the result equals a direct solve. ``triangle`` as in
    :func:`ridge_solve` (EIGH reads only that triangle); ``overwrite`` applies to the last ridge
    only (the others need K intact).
    """
    _check_triangle(triangle)
    solver = Solver(solver)
    if solver != Solver.EIGH:
        return [ridge_solve(K, Y, r, solver, triangle=triangle, overwrite=overwrite and i == len(regs) - 1)
                for i, r in enumerate(regs)]
    w, U = torch.linalg.eigh(K.double(), UPLO="U")  # (n,), (n, n); reads the upper triangle only
    UtY = U.T @ Y.double()  # (n, c)
    return [(U @ (UtY / (w + r)[:, None])).to(K.dtype) for r in regs]
