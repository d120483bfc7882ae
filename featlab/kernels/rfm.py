"""Recursive Feature Machine (Radhakrishnan et al., Science 2024; spec agop_rfm.md §6).

Kernel ridge regression with a Mahalanobis kernel k_M whose M is replaced, iteration by
iteration, by the normalised AGOP of the current predictor. The AGOP is computed in closed
form, batched over query points, never as an n x n x d tensor.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._estimator import BaseKernelEstimator, Constraint, resolve_generator, to_tensor
from .mahalanobis import apply_M, grad_weights, kernel_matrix, sq_mahalanobis
from .solvers import Solver, ridge_solve_grid

__all__ = ["RFM", "kernel_agop", "normalise_M", "matrix_power_psd"]

_BLOCK = 2**24  # elements of one (rows x n) block when batch_size is None


def matrix_power_psd(G: torch.Tensor, power: float) -> torch.Tensor:
    """G^power for symmetric PSD G (eigh, negative eigenvalues clipped to 0); a vector G is a diagonal."""
    if power == 1.0:
        return G.clone()
    if G.ndim == 1:
        return G.clamp(min=0).pow(power)
    w, U = torch.linalg.eigh((G + G.T) / 2)
    return (U * w.clamp(min=0).pow(power)) @ U.T


def normalise_M(G: torch.Tensor, m_norm: str, n_points: int) -> torch.Tensor:
    """Scale M by the rule ``m_norm``.

    Convention:
        max: M / max_ij M (max entry = 1, as pip rfm / xRFM); mean: M / |S| (the original
        notebook's mean over AGOP points); trace: tr M = 1 (sum for a diagonal); frobenius:
        ||M||_F = 1; none: unchanged.
    """
    if m_norm == "max":
        return G / G.max()
    if m_norm == "mean":
        return G / n_points
    if m_norm == "trace":
        return G / (G.sum() if G.ndim == 1 else G.trace())
    if m_norm == "frobenius":
        return G / torch.linalg.norm(G)
    if m_norm == "none":
        return G
    raise ValueError(f"m_norm={m_norm!r} is not allowed; allowed: max, mean, trace, frobenius, none")


def kernel_grads(Q: torch.Tensor, X: torch.Tensor, alpha: torch.Tensor, M: torch.Tensor | None, *,
                 kind: str = "laplace", bandwidth: float = 10.0) -> torch.Tensor:
    """Closed-form gradients of f(q) = sum_i alpha_i k_M(x_i, q) at every query, shape (m, c, d).

    Convention:
        grad_q f_c = sum_i alpha_ic K~(q, x_i) M (x_i - q) (spec §6), computed as
        K~ (alpha_c * X M) - (K~ alpha_c) * (q M); the self term (q = x_i) is excluded.
    """
    Kt = grad_weights(Q, X, M, kind=kind, bandwidth=bandwidth)  # (m, n)
    XM, QM = apply_M(X, M), apply_M(Q, M)  # (n, d), (m, d)
    out = torch.empty(Q.shape[0], alpha.shape[1], Q.shape[1], dtype=Q.dtype, device=Q.device)
    Ka = Kt @ alpha  # (m, c)
    for c in range(alpha.shape[1]):
        out[:, c] = Kt @ (alpha[:, c:c + 1] * XM) - Ka[:, c:c + 1] * QM
    return out


def kernel_agop(Q: torch.Tensor, X: torch.Tensor, alpha: torch.Tensor, M: torch.Tensor | None, *,
                kind: str = "laplace", bandwidth: float = 10.0, diag: bool = False,
                centering: bool = False, batch_size: int | None = None) -> torch.Tensor:
    """Summed AGOP  sum_{q in Q} sum_c grad f_c(q) grad f_c(q)^T of the kernel predictor.

    Returns (d, d), or its diagonal (d,) when ``diag``. ``centering`` subtracts the mean of the
    flattened (point, class) gradient vectors, pooled over classes (xRFM ``center_grads``).
    ``batch_size`` (query rows per block) never changes the result.
    """
    bs = batch_size or max(1, _BLOCK // max(X.shape[0], 1))
    blocks = (kernel_grads(Q[s:s + bs], X, alpha, M, kind=kind, bandwidth=bandwidth)
              for s in range(0, Q.shape[0], bs))
    return accumulate_outer(blocks, Q.shape[1], diag=diag, centering=centering, like=Q)


def accumulate_outer(blocks, d: int, *, diag: bool = False, centering: bool = False,
                     like: torch.Tensor) -> torch.Tensor:
    """Sum of g g^T over the rows of gradient blocks (..., d), streamed block by block.

    Returns (d, d), or its diagonal (d,) when ``diag``. ``centering`` subtracts the mean of
    all rows (pooled over points, positions and classes), i.e. sum (g - gbar)(g - gbar)^T.
    """
    G = torch.zeros(d if diag else (d, d), dtype=like.dtype, device=like.device)
    gsum = torch.zeros(d, dtype=like.dtype, device=like.device)
    count = 0
    for g in blocks:
        g = g.reshape(-1, d)  # (rows, d)
        G += (g * g).sum(0) if diag else g.T @ g
        gsum += g.sum(0)
        count += g.shape[0]
    if centering:
        mean = gsum / count
        G -= count * (mean * mean if diag else torch.outer(mean, mean))
    return G


class RFM(BaseKernelEstimator):
    """Recursive Feature Machine: Mahalanobis kernel ridge regression with AGOP-updated M.

    Parameters
    ----------
    bandwidth : float
        L > 0 of the kernel (``bandwidth_mode="median"``: L times the median off-diagonal
        M-distance of <= 5000 training points, recomputed every iteration).
    kernel : {"laplace", "gaussian"}
    reg : float or sequence of float
        Ridge lambda, or a grid selected on validation (solved with one eigh if ``solver="eigh"``).
    n_iter : int
        Number T of M updates; T + 1 predictors are fitted (M_0 = I ... M_T).
    diag : bool
        Learn only a diagonal M (a vector); M_0 = ones.
    centering : bool
        Centre the gradients before the outer products (pooled over classes, as xRFM).
    power : float
        M <- normalise(AGOP^power) (eigh, negatives clipped). The Science paper uses 1; ½ makes
        the Mahalanobis matrix the square root of the AGOP.
    m_norm : {"max", "mean", "trace", "frobenius", "none"}
    agop_samples : int
        |S|, the number of training points where gradients are taken.
    agop_sampling : {"random", "first"}
        Seeded sample without replacement each iteration, or the first |S| points (xRFM).
        "first" means first among the *training* rows: with ``validation_fraction > 0`` and no
        ``eval_set``, those rows have been through the seeded validation split's shuffle, so
        for parity with xRFM pass an explicit ``eval_set`` (as xRFM also needs).
    solver : {"cholesky", "solve", "eigh"}
        See :class:`featlab.kernels.Solver`.
    selection : {"val", "last"}
        Pick (iteration, reg) with the best validation metric, or the last iteration (reg still
        chosen on validation when a grid is given and validation data exist).
    validation_fraction : float
        Fraction of the training data held out (seeded) when ``eval_set`` is not given. The
        predictor is fitted on the remaining points only (no refit, as xRFM).
    metric : {"auto", "mse", "accuracy"}
        ``auto``: accuracy for classification targets, mse otherwise.
    dtype : {"float64", "float32"}
    device : str or None
        None: the device of a tensor X, else CPU.
    batch_size : int or None
        Rows per block in kernel builds, gradients and predictions (memory only).
    random_state : int, torch.Generator or None

    Attributes
    ----------
    M_ : tensor (d, d) or (d,)  -- the selected Mahalanobis matrix.
    alpha_ : tensor (n_fit, c); X_fit_ : tensor (n_fit, d); bandwidth_ : float
    n_iter_ : int (M updates done); best_iter_ : int; best_reg_ : float
    history_ : list of dict (per iteration: metrics per reg); n_features_in_ : int
    M_path_ : list of tensors, M_0 ... M_T (the M used at each iteration)
    classes_ : ndarray (classification only)

    Convention:
        Targets: integer/bool/str y is classification: one-hot targets (MSE) for > 2 classes and
        argmax; 2 classes use one (n, 1) 0/1 target and a 0.5 threshold (fixes the reference's
        argmax on an (n, 1) output, recursive_feature_machines #1). Float y is regression.
        ``score``: accuracy (classification) or R^2 (regression), as scikit-learn.

    See Also
    --------
    featlab.kernels.ConvRFM : the patch-kernel version for images.

    References
    ----------
    Radhakrishnan, Beaglehole, Pandit, Belkin, Science 383:1461 (2024), arXiv:2212.13881.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 5)); y = X[:, 0] ** 2
    >>> model = RFM(n_iter=2, random_state=0).fit(X, y)
    >>> model.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        "bandwidth": Constraint(lambda v: isinstance(v, (int, float)) and v > 0, "a number > 0"),
        "bandwidth_mode": ("constant", "median"),
        "kernel": ("laplace", "gaussian"),
        "reg": Constraint(lambda v: all(r >= 0 for r in np.atleast_1d(v)) and np.size(v) > 0,
                          "a number >= 0 or a non-empty sequence of them"),
        "n_iter": Constraint(lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
        "diag": (False, True),
        "centering": (False, True),
        "power": Constraint(lambda v: isinstance(v, (int, float)) and v > 0, "a number > 0"),
        "m_norm": ("max", "mean", "trace", "frobenius", "none"),
        "agop_samples": Constraint(lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
        "agop_sampling": ("random", "first"),
        "solver": Constraint(lambda v: v in [s.value for s in Solver] or isinstance(v, Solver),
                             "cholesky, solve, eigh"),
        "selection": ("val", "last"),
        "validation_fraction": Constraint(lambda v: 0 <= v < 1, "a number in [0, 1)"),
        "metric": ("auto", "mse", "accuracy"),
        "dtype": ("float64", "float32"),
        "batch_size": Constraint(lambda v: v is None or (isinstance(v, int) and v >= 1), "None or int >= 1"),
    }

    def __init__(self, bandwidth: float = 10.0, *, kernel: str = "laplace", reg: Any = 1e-3,
                 n_iter: int = 5, diag: bool = False, centering: bool = False, power: float = 1.0,
                 m_norm: str = "max", agop_samples: int = 20000, agop_sampling: str = "random",
                 solver: str = "cholesky", selection: str = "val", validation_fraction: float = 0.1,
                 metric: str = "auto", dtype: str = "float64", device: Any = None,
                 batch_size: int | None = None, random_state: Any = None,
                 bandwidth_mode: str = "constant"):
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.reg = reg
        self.n_iter = n_iter
        self.diag = diag
        self.centering = centering
        self.power = power
        self.m_norm = m_norm
        self.agop_samples = agop_samples
        self.agop_sampling = agop_sampling
        self.solver = solver
        self.selection = selection
        self.validation_fraction = validation_fraction
        self.metric = metric
        self.dtype = dtype
        self.device = device
        self.batch_size = batch_size
        self.random_state = random_state
        self.bandwidth_mode = bandwidth_mode

    # --- geometry hooks (ConvRFM overrides these) ---------------------------------------------
    def _prepare_X(self, X: torch.Tensor) -> torch.Tensor:
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n, d), got shape {tuple(X.shape)}")
        return X

    def _dim(self, A: torch.Tensor) -> int:
        return A.shape[1]

    def _gram(self, A: torch.Tensor, B: torch.Tensor, M: torch.Tensor, L: float) -> torch.Tensor:
        return kernel_matrix(A, B, M, kind=self.kernel, bandwidth=L, batch_size=self.batch_size)

    def _agop(self, Q: torch.Tensor, A: torch.Tensor, alpha: torch.Tensor, M: torch.Tensor, L: float
              ) -> torch.Tensor:
        return kernel_agop(Q, A, alpha, M, kind=self.kernel, bandwidth=L, diag=self.diag,
                           centering=self.centering, batch_size=self._rows(A.shape[0]))

    def _median_dist(self, A: torch.Tensor, M: torch.Tensor, g: torch.Generator) -> float:
        idx = torch.randperm(A.shape[0], generator=g, device=g.device)[:5000].to(A.device)
        S = A[idx]
        D = sq_mahalanobis(S, S, M).sqrt_()
        off = D[~torch.eye(len(S), dtype=torch.bool, device=D.device)]
        med = float(off.median()) if off.numel() else 1.0
        return med if med > 1e-14 else 1.0

    # --- helpers ------------------------------------------------------------------------------
    def _rows(self, n: int) -> int | None:
        return self.batch_size or max(1, _BLOCK // max(n, 1))

    def _torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    def _resolve_device(self, X: Any) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return X.device if isinstance(X, torch.Tensor) else torch.device("cpu")

    def _encode_y(self, y: Any) -> tuple[torch.Tensor, bool]:
        y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        classification = y_np.dtype.kind in "iubUSO"
        if not classification:
            Y = y_np.reshape(len(y_np), -1).astype(np.float64)
            self._y_1d = y_np.ndim == 1
            return torch.as_tensor(Y), False
        self.classes_ = np.unique(y_np)
        if len(self.classes_) < 2:
            raise ValueError("y must contain at least 2 classes for classification")
        idx = np.searchsorted(self.classes_, y_np)
        if len(self.classes_) == 2:
            return torch.as_tensor(idx[:, None].astype(np.float64)), True
        return torch.as_tensor(np.eye(len(self.classes_))[idx]), True

    def _metric(self, F: torch.Tensor, Y: torch.Tensor) -> float:
        if self.metric_ == "accuracy":
            return float((self._decide(F) == self._decide(Y)).double().mean())
        return float(((F - Y) ** 2).mean())

    def _decide(self, F: torch.Tensor) -> torch.Tensor:
        return (F[:, 0] > 0.5).long() if F.shape[1] == 1 else F.argmax(1)

    def _better(self, a: float, b: float | None) -> bool:
        if b is None:
            return True
        return a > b if self.metric_ == "accuracy" else a < b

    # --- fit ----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, *, eval_set: tuple[Any, Any] | None = None):
        """Run the RFM iteration on (X, y); select (iteration, reg) on validation. Returns self."""
        self._validate_params()
        for attr in ("classes_", "_y_1d"):
            self.__dict__.pop(attr, None)
        dev, dt = self._resolve_device(X), self._torch_dtype()
        g = resolve_generator(self.random_state, torch.device("cpu"))
        Xt = to_tensor(X, dt, dev)
        Y, self.is_classifier_ = self._encode_y(y)
        Y = Y.to(dev, dt)
        if len(Xt) != len(Y):
            raise ValueError(f"X and y have different lengths: {len(Xt)} != {len(Y)}")
        self.metric_ = self.metric if self.metric != "auto" else ("accuracy" if self.is_classifier_ else "mse")
        if eval_set is not None:
            Xv = to_tensor(eval_set[0], dt, dev)
            Yv = self._encode_eval(eval_set[1]).to(dev, dt)
        elif self.validation_fraction > 0:
            perm = torch.randperm(len(Xt), generator=g).to(dev)
            n_val = max(1, int(round(self.validation_fraction * len(Xt))))
            Xv, Yv = Xt[perm[:n_val]], Y[perm[:n_val]]
            Xt, Y = Xt[perm[n_val:]], Y[perm[n_val:]]
        else:
            Xv = Yv = None
        regs = [float(r) for r in np.atleast_1d(self.reg)]
        if Xv is None and len(regs) > 1:
            raise ValueError("reg: a grid needs validation data (eval_set or validation_fraction > 0)")
        A = self._prepare_X(Xt)
        Av = self._prepare_X(Xv) if Xv is not None else None
        self.n_features_in_ = Xt[0].numel()
        D = self._dim(A)
        M = torch.ones(D, dtype=dt, device=dev) if self.diag else torch.eye(D, dtype=dt, device=dev)
        history, best, best_metric, path = [], None, None, []
        for t in range(self.n_iter + 1):
            path.append(M)
            L = self.bandwidth * (self._median_dist(A, M, g) if self.bandwidth_mode == "median" else 1.0)
            K = self._gram(A, A, M, L)  # (n, n)
            alphas = ridge_solve_grid(K, Y, regs, self.solver)
            del K
            row: dict[str, Any] = {"iter": t, "bandwidth": L}
            if Av is not None:
                Kv = self._gram(Av, A, M, L)  # (n_val, n)
                vals = [self._metric(Kv @ a, Yv) for a in alphas]
                del Kv
                j = max(range(len(regs)), key=lambda i: vals[i]) if self.metric_ == "accuracy" \
                    else min(range(len(regs)), key=lambda i: vals[i])
                row.update({f"val_{self.metric_}": vals[j], "reg": regs[j],
                            f"val_{self.metric_}_per_reg": dict(zip(map(str, regs), vals))})
            else:
                j, vals = 0, [float("nan")]
                row["reg"] = regs[0]
            history.append(row)
            if self.selection == "last" or Av is None or self._better(vals[j], best_metric):
                best = (t, regs[j], M, alphas[j], L)
                best_metric = vals[j]
            if t < self.n_iter:
                n = A.shape[0]
                m = min(self.agop_samples, n)
                idx = (torch.arange(m) if self.agop_sampling == "first"
                       else torch.randperm(n, generator=g)[:m]).to(dev)
                G = self._agop(A[idx], A, alphas[j], M, L)
                M = normalise_M(matrix_power_psd(G, self.power), self.m_norm, m)
        self.best_iter_, self.best_reg_, self.M_, self.alpha_, self.bandwidth_ = best
        self.X_fit_ = Xt
        self._A_fit = A
        self.n_iter_ = self.n_iter
        self.history_ = history
        self.M_path_ = path
        return self

    def _encode_eval(self, y: Any) -> torch.Tensor:
        y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if not self.is_classifier_:
            return torch.as_tensor(y_np.reshape(len(y_np), -1).astype(np.float64))
        idx = np.searchsorted(self.classes_, y_np)
        if len(self.classes_) == 2:
            return torch.as_tensor(idx[:, None].astype(np.float64))
        return torch.as_tensor(np.eye(len(self.classes_))[idx])

    # --- predict ------------------------------------------------------------------------------
    def decision_function(self, X: Any) -> Any:
        """Raw predictor outputs f(X), shape (n, c) (regression: (n,) for a 1-D target)."""
        self._check_fitted()
        Xt = to_tensor(X, self.alpha_.dtype, self.alpha_.device)
        A = self._prepare_X(Xt)
        F = self._gram(A, self._A_fit, self.M_, self.bandwidth_) @ self.alpha_  # (n, c)
        if not self.is_classifier_ and getattr(self, "_y_1d", False):
            F = F[:, 0]
        return _like(F, X)

    def predict(self, X: Any) -> Any:
        """Regression values, or class labels (argmax; binary: threshold 0.5)."""
        F = self.decision_function(X)
        if not self.is_classifier_:
            return F
        Ft = torch.as_tensor(np.asarray(F)) if not isinstance(F, torch.Tensor) else F
        lab = self.classes_[self._decide(Ft).cpu().numpy()]
        if isinstance(X, torch.Tensor) and lab.dtype.kind in "iub":
            return torch.as_tensor(lab, device=X.device)
        return lab

    def predict_proba(self, X: Any) -> Any:
        """Class scores clipped to [0, 1] and normalised per row (not calibrated), (n, n_classes)."""
        if not getattr(self, "is_classifier_", False):
            raise AttributeError("predict_proba is only available for classification targets")
        F = self.decision_function(X)
        Ft = torch.as_tensor(np.asarray(F)) if not isinstance(F, torch.Tensor) else F
        if Ft.shape[1] == 1:
            p = Ft[:, 0].clamp(0, 1)
            P = torch.stack([1 - p, p], 1)
        else:
            P = Ft.clamp(min=0)
            s = P.sum(1, keepdim=True)
            P = torch.where(s > 0, P / s.clamp(min=1e-300), torch.full_like(P, 1 / P.shape[1]))
        return _like(P, X)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy (classification) or R^2 (regression)."""
        pred = self.predict(X)
        pred = pred.cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
        y_np = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if self.is_classifier_:
            return float(np.mean(pred == y_np))
        y2, p2 = y_np.reshape(len(y_np), -1), pred.reshape(len(pred), -1)
        return float(1 - ((y2 - p2) ** 2).sum() / ((y2 - y2.mean(0)) ** 2).sum())


def _like(T: torch.Tensor, X: Any) -> Any:
    """Return ``T`` as a tensor if ``X`` was a tensor, else as a numpy array."""
    return T if isinstance(X, torch.Tensor) else T.detach().cpu().numpy()

