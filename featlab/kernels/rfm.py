"""Recursive Feature Machine (Radhakrishnan et al., Science 2024; spec agop_rfm.md §6).

Kernel ridge regression with a Mahalanobis kernel k_M whose M is replaced, iteration by
iteration, by the normalised AGOP of the current predictor (closed form, :mod:`.rfm_agop`).

Estimators: :class:`RFMRegressor` and :class:`RFMClassifier` (scikit-learn estimators: numpy in
and out, Pipeline / GridSearchCV / clone / pickle) and :class:`RFM`, the torch-native estimator
kept for existing code (task inferred from y's dtype, tensors in and out). All three run the
same fit loop (:class:`_RFMBase`). Old code maps as: ``RFM(...)`` on float y ->
``RFMRegressor(...)``, on labels -> ``RFMClassifier(...)`` (same parameters; fitted arrays
become numpy arrays, and the binary ``decision_function`` is ``f - 1/2`` instead of ``f``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from ._estimator import Constraint, KernelEstimatorMixin, resolve_generator, to_numpy, to_tensor
from ._targets import Targets, encode_classification, encode_regression
from .mahalanobis import gram_with_grad_weights, kernel_matrix, sq_mahalanobis
from .rfm_agop import _BLOCK, kernel_agop, kernel_agop_packed, matrix_power_psd, normalise_M
from .solvers import NotPositiveDefinite, Solver, ridge_solve_grid

__all__ = ["RFM", "RFMRegressor", "RFMClassifier", "kernel_agop", "normalise_M", "matrix_power_psd"]

_FITTED = ("M_", "alpha_", "X_fit_", "bandwidth_", "n_iter_", "best_iter_", "best_reg_", "history_",
           "M_path_", "classes_", "metric_", "is_classifier_", "n_features_in_", "feature_names_in_")


def _number(lo: float, text: str):
    return Constraint(lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v >= lo
                      and np.isfinite(v), text)


class _RFMBase(KernelEstimatorMixin, BaseEstimator):
    """The RFM fit loop shared by RFM, RFMRegressor, RFMClassifier (and the ConvRFM family).

    Subclasses provide the task (``_encode_targets``) and, for other geometries, the hooks
    ``_to_model`` / ``_features`` / ``_dim`` / ``_gram`` / ``_train_gram`` / ``_agop`` /
    ``_median_dist``. See :class:`RFMRegressor` for the parameters.
    """

    _constraints = {
        "bandwidth": Constraint(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
                                "a number > 0"),
        "bandwidth_mode": ("constant", "median"),
        "kernel": ("laplace", "gaussian"),
        "reg": Constraint(lambda v: np.size(v) > 0 and all(np.isfinite(r) and r >= 0 for r in np.atleast_1d(v)),
                          "a number >= 0 or a non-empty sequence of them"),
        "n_iter": Constraint(lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0,
                             "an int >= 0"),
        "diag": (False, True),
        "centering": (False, True),
        "power": Constraint(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
                            "a number > 0"),
        "m_norm": ("max", "mean", "trace", "frobenius", "none"),
        "m_jitter": _number(0, "a number >= 0"),
        "agop_samples": Constraint(lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
                                   "an int >= 1"),
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
                 m_norm: str = "max", m_jitter: float = 0.0, agop_samples: int = 20000,
                 agop_sampling: str = "random", solver: str = "cholesky", selection: str = "val",
                 validation_fraction: float = 0.1, metric: str = "auto", dtype: str = "float64",
                 device: Any = None, batch_size: int | None = None, random_state: Any = None,
                 bandwidth_mode: str = "constant"):
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.reg = reg
        self.n_iter = n_iter
        self.diag = diag
        self.centering = centering
        self.power = power
        self.m_norm = m_norm
        self.m_jitter = m_jitter
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

    # --- task hook ------------------------------------------------------------------------------
    def _encode_targets(self, y: Any, n: int) -> tuple[np.ndarray, Targets]:
        raise NotImplementedError

    # --- geometry hooks (ConvRFM overrides these) -----------------------------------------------
    def _to_model(self, X: torch.Tensor) -> torch.Tensor:
        """Validated 2-D X -> the model's input (RFM: X itself; ConvRFM: images)."""
        return X

    def _features(self, Xm: torch.Tensor) -> torch.Tensor:
        """Model input -> what the kernel compares (RFM: X; ConvRFM: patches)."""
        return Xm

    def _dim(self, A: torch.Tensor) -> int:
        return A.shape[1]

    def _gram(self, A: torch.Tensor, B: torch.Tensor, M: torch.Tensor, L: float) -> torch.Tensor:
        return kernel_matrix(A, B, M, kind=self.kernel, bandwidth=L, batch_size=self.batch_size)

    def _train_gram(self, A: torch.Tensor, M: torch.Tensor, L: float, out: Any = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None, str | None]:
        """(K, W, triangle): the training Gram matrix, the AGOP's gradient weights if computed with
        it (else None), and which triangle of K the solver may read (None: all of it).

        With the Cholesky or eigh solver, RFM computes both from one distance pass into the upper
        triangles of two reusable buffers ``out`` (:func:`featlab.kernels.mahalanobis.gram_with_grad_weights`):
        half the distance GEMM, none in the AGOP, and Cholesky factorises K in place. LU needs
        the full matrix, so it takes the plain path (K here, K~ recomputed by the AGOP).
        """
        if Solver(self.solver) == Solver.SOLVE:
            return kernel_matrix(A, A, M, kind=self.kernel, bandwidth=L, batch_size=self.batch_size), None, None
        K, W = gram_with_grad_weights(A, M, kind=self.kernel, bandwidth=L, batch_size=self.batch_size, out=out)
        return K, W, "upper"

    def _agop(self, rows: torch.Tensor | slice, A: torch.Tensor, alpha: torch.Tensor, M: torch.Tensor,
              L: float, W: torch.Tensor | None = None) -> torch.Tensor:
        """Summed AGOP at the training points ``A[rows]``; ``W``: their gradient weights when known."""
        if W is not None:
            return kernel_agop_packed(W, rows, A, alpha, M, diag=self.diag, centering=self.centering,
                                      batch_size=self._rows(A.shape[0]))
        return kernel_agop(A[rows], A, alpha, M, kind=self.kernel, bandwidth=L, diag=self.diag,
                           centering=self.centering, batch_size=self._rows(A.shape[0]))

    def _median_dist(self, A: torch.Tensor, M: torch.Tensor, g: torch.Generator) -> float:
        idx = torch.randperm(A.shape[0], generator=g, device=g.device)[:5000].to(A.device)
        S = A[idx]
        D = sq_mahalanobis(S, S, M).sqrt_()
        off = D[~torch.eye(len(S), dtype=torch.bool, device=D.device)]
        med = float(off.median()) if off.numel() else 1.0
        return med if med > 1e-14 else 1.0

    # --- helpers --------------------------------------------------------------------------------
    def _rows(self, n: int) -> int:
        return self.batch_size or max(1, _BLOCK // max(n, 1))

    def _metric(self, F: torch.Tensor, Y: torch.Tensor) -> float:
        if self.metric_ == "accuracy":
            hit = self._targets.label_index(F) == self._targets.label_index(Y)
            return float((hit if hit.ndim == 1 else hit.all(1)).double().mean())
        return float(((F - Y) ** 2).mean())

    def _better(self, a: float, b: float | None) -> bool:
        if b is None:
            return True
        return a > b if self.metric_ == "accuracy" else a < b

    def _predict_device(self) -> torch.device:
        if isinstance(self.alpha_, torch.Tensor):
            return self.alpha_.device
        return torch.device(self.device) if self.device is not None else torch.device("cpu")

    # --- fit ------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, *, eval_set: tuple[Any, Any] | None = None):
        """Run the RFM iteration on (X, y); select (iteration, reg) on validation. Returns self.

        ``eval_set=(X_val, y_val)``: explicit validation data (otherwise a seeded split of
        ``validation_fraction`` of X, or none when it is 0).
        """
        self._validate_params()
        self._fit_y_check(y)
        for attr in _FITTED:
            self.__dict__.pop(attr, None)
        dev, dt = self._resolve_device(X), self._torch_dtype()
        g = resolve_generator(self.random_state, torch.device("cpu"))
        split = eval_set is None and self.validation_fraction > 0
        Xt = self._check_X(X, reset=True, device=dev, min_samples=2 if split else 1)
        Y_np, self._targets = self._encode_targets(y, len(Xt))
        Y = to_tensor(Y_np, dt, dev)  # copies a read-only y (pandas copy-on-write, memmaps)
        self.is_classifier_ = self._targets.is_classifier
        if self.is_classifier_:
            self.classes_ = self._targets.classes
        self.metric_ = self.metric if self.metric != "auto" else ("accuracy" if self.is_classifier_ else "mse")
        if eval_set is not None:
            Xv = self._check_X(eval_set[0], reset=False, device=dev)
            Yv = to_tensor(self._targets.encode(eval_set[1], len(Xv)), dt, dev)
        elif split:
            perm = torch.randperm(len(Xt), generator=g).to(dev)
            n_val = min(len(Xt) - 1, max(1, int(round(self.validation_fraction * len(Xt)))))
            Xv, Yv = Xt[perm[:n_val]], Y[perm[:n_val]]
            Xt, Y = Xt[perm[n_val:]], Y[perm[n_val:]]
        else:
            Xv = Yv = None
        regs = [float(r) for r in np.atleast_1d(self.reg)]
        if Xv is None and len(regs) > 1:
            raise ValueError("reg: a grid needs validation data (eval_set or validation_fraction > 0)")
        Xm = self._to_model(Xt if split else Xt.clone())  # never alias the caller's X in X_fit_
        A = self._features(Xm)
        Av = self._features(self._to_model(Xv)) if Xv is not None else None
        D = self._dim(A)
        M = torch.ones(D, dtype=dt, device=dev) if self.diag else torch.eye(D, dtype=dt, device=dev)
        history, best, best_metric, path, bufs = [], None, None, [], None
        for t in range(self.n_iter + 1):
            path.append(M)
            L = self.bandwidth * (self._median_dist(A, M, g) if self.bandwidth_mode == "median" else 1.0)
            K, W, triangle = self._train_gram(A, M, L, bufs)  # (n, n) each
            if W is not None:
                bufs = (K, W)  # reused by the next iteration
            try:
                alphas = ridge_solve_grid(K, Y, regs, self.solver, triangle=triangle, overwrite=W is not None)
            except NotPositiveDefinite:  # the in-place factorisation overwrote K: rebuild it, rescue
                K, W, triangle = self._train_gram(A, M, L, bufs)
                alphas = ridge_solve_grid(K, Y, regs, self.solver, triangle=triangle)
            del K  # factorised in place, or a plain Gram the AGOP does not read
            row: dict[str, Any] = {"iter": t, "bandwidth": L}
            if Av is not None:
                Kv = self._gram(Av, A, M, L)  # (n_val, n)
                vals = [self._metric(Kv @ a, Yv) for a in alphas]
                del Kv
                pick = max if self.metric_ == "accuracy" else min
                j = pick(range(len(regs)), key=lambda i: vals[i])
                row.update({f"val_{self.metric_}": vals[j], "reg": regs[j],
                            f"val_{self.metric_}_per_reg": dict(zip(map(str, regs), vals))})
            else:
                j, vals = 0, [None]
                row["reg"] = regs[0]
            history.append(row)
            if self.selection == "last" or Av is None or self._better(vals[j], best_metric):
                best = (t, regs[j], M, alphas[j], L)
                best_metric = vals[j]
            if t < self.n_iter:
                n = A.shape[0]
                m = min(self.agop_samples, n)
                perm = torch.randperm(n, generator=g)  # drawn in both modes: the same random stream
                rows = slice(0, m) if self.agop_sampling == "first" or m == n else perm[:m].sort().values.to(dev)
                G = self._agop(rows, A, alphas[j], M, L, W)
                M = normalise_M(matrix_power_psd(G, self.power), self.m_norm, m)
                if self.m_jitter:
                    M = M + self.m_jitter if M.ndim == 1 else M + self.m_jitter * torch.eye(D, dtype=dt, device=dev)
            del W
        del bufs
        t_best, self.best_reg_, M_best, alpha_best, self.bandwidth_ = best
        self.best_iter_ = t_best
        self.M_, self.alpha_ = self._store(M_best), self._store(alpha_best)
        self.X_fit_ = self._store(Xm)
        self.n_iter_ = self.n_iter
        self.history_ = history
        self.M_path_ = [self._store(Mt) for Mt in path]
        return self

    # --- predict --------------------------------------------------------------------------------
    def _raw(self, X: Any) -> torch.Tensor:
        """Predictor outputs f(X) = K(X, X_fit) alpha, shape (n, c), on the working device."""
        self._check_fitted()
        dev = self._predict_device()
        Xt = self._check_X(X, reset=False, device=dev)
        A = self._features(self._to_model(Xt))
        A_fit = self._features(self._load(self.X_fit_, dev))
        M, alpha = self._load(self.M_, dev), self._load(self.alpha_, dev)
        bs = self._rows(A_fit.shape[0])
        return torch.cat([self._gram(A[s:s + bs], A_fit, M, self.bandwidth_) @ alpha
                          for s in range(0, A.shape[0], bs)])  # (n, c)

    def _fit_y_check(self, y: Any) -> None:
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")

    def _regression_output(self, F: torch.Tensor) -> torch.Tensor:
        return F[:, 0] if self._targets.one_d else F


class RFMRegressor(RegressorMixin, _RFMBase):
    """Recursive Feature Machine regressor: Mahalanobis kernel ridge regression with AGOP-updated M.

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
        Centre the gradients before the outer products (pooled over outputs, as xRFM).
    power : float
        M <- normalise(AGOP^power) (eigh, negatives clipped). The Science paper uses 1; ½ makes
        the Mahalanobis matrix the square root of the AGOP.
    m_norm : {"max", "mean", "trace", "frobenius", "none"}
    m_jitter : float
        Added to M's diagonal after normalisation (default 0). xRFM adds 1e-8 inside its sqrt(M)
        (xrfm/rfm_src/utils.py ``stable_matrix_power``), so ``m_jitter=1e-8`` matches it exactly
        (predictions to ~1e-8 instead of ~1e-5, benchmarks/bench_rfm.py).
    agop_samples : int
        |S|, the number of training points where gradients are taken.
    agop_sampling : {"random", "first"}
        Seeded sample without replacement each iteration, or the first |S| points (xRFM).
        "first" means first among the *training* rows: with ``validation_fraction > 0`` and no
        ``eval_set``, those rows have been through the seeded validation split's shuffle, so
        for parity with xRFM pass an explicit ``eval_set`` (as xRFM also needs).
    solver : {"cholesky", "solve", "eigh"}
        See :class:`featlab.kernels.Solver`. With Cholesky and eigh the Gram matrix and the
        AGOP's gradient weights come from one half-size distance GEMM per iteration into two
        reused (n, n) buffers, and Cholesky factorises in place; "solve" (LU) builds the plain
        Gram and recomputes the weights in the AGOP (the simple path). Both agree to 1e-8.
    selection : {"val", "last"}
        Pick (iteration, reg) with the best validation metric, or the last iteration (reg still
        chosen on validation when a grid is given and validation data exist).
    validation_fraction : float
        Fraction of the training data held out (seeded) when ``eval_set`` is not given. The
        predictor is fitted on the remaining points only (no refit, as xRFM).
    metric : {"auto", "mse"} (classifiers also "accuracy")
        Selection metric; ``auto``: mse here, accuracy for classifiers.
    dtype : {"float64", "float32"}
        Working precision; fitted arrays and outputs have this dtype (float32 input stays float32
        with ``dtype="float32"``).
    device : str or None
        Where the kernels are computed (e.g. "cuda"); None: CPU (RFM: the device of a tensor X).
    batch_size : int or None
        Rows per block in kernel builds, gradients and predictions (memory only).
    random_state : int, numpy RandomState/Generator, torch.Generator or None

    Attributes
    ----------
    M_ : ndarray (d, d) or (d,) -- the selected Mahalanobis matrix.
    alpha_ : ndarray (n_fit, c); X_fit_ : ndarray (n_fit, d); bandwidth_ : float
    n_iter_ : int (M updates done); best_iter_ : int; best_reg_ : float
    history_ : list of dict (per iteration: metrics per reg); M_path_ : list, M_0 ... M_T
    n_features_in_ : int; feature_names_in_ : ndarray (when X has string column names)

    Convention:
        y (n,) -> predictions (n,); y (n, k) -> (n, k) (one kernel machine, k output columns, one
        shared M). Integer y is a regression target here. ``score`` is R^2 (RegressorMixin).
        X, y: array-likes; NaN/inf, sparse, complex input and a wrong feature count are refused.

    See Also
    --------
    RFMClassifier, featlab.kernels.ConvRFMRegressor, featlab.kernels.RFM (torch-native)

    References
    ----------
    Radhakrishnan, Beaglehole, Pandit, Belkin, Science 383:1461 (2024), arXiv:2212.13881.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 5)); y = X[:, 0] ** 2
    >>> RFMRegressor(n_iter=2, random_state=0).fit(X, y).predict(X[:3]).shape
    (3,)
    """

    _constraints = dict(_RFMBase._constraints, metric=("auto", "mse"))

    def _encode_targets(self, y, n):
        return encode_regression(y, n)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions, shape (n,) for a 1-D training y, else (n, k)."""
        return self._regression_output(self._raw(X)).cpu().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class RFMClassifier(ClassifierMixin, _RFMBase):
    """Recursive Feature Machine classifier (kernel ridge on indicator targets, AGOP-updated M).

    Parameters are those of :class:`RFMRegressor` (``metric`` also "accuracy"; ``auto`` selects
    on accuracy).

    Attributes
    ----------
    classes_ : ndarray of the labels (multilabel: arange(k)); M_, alpha_, X_fit_, ... as RFMRegressor.

    Convention:
        Binary: one 0/1 target column, ``decision_function`` = f - 1/2 (n,), class 1 where it is
        > 0 (the 0.5 threshold of spec §6, fixing the reference's argmax on an (n, 1) output).
        K >= 3 classes: one-hot targets, ``decision_function`` = f (n, K), argmax. Multilabel
        0/1 indicator y (n, k): k columns, ``decision_function`` = f - 1/2 (n, k), label 1 where
        > 0. ``predict`` is computed from ``decision_function``, so they agree. No
        ``predict_proba``: the kernel outputs are not calibrated probabilities (wrap in
        ``sklearn.calibration.CalibratedClassifierCV`` for those). ``score``: accuracy.

    See Also
    --------
    RFMRegressor, featlab.kernels.ConvRFMClassifier, featlab.kernels.DeepConvRFMClassifier

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 5)); y = np.where(X[:, 0] > 0, "a", "b")
    >>> RFMClassifier(n_iter=1, random_state=0).fit(X, y).predict(X[:2]).tolist()
    ['a', 'a']
    """

    def _encode_targets(self, y, n):
        return encode_classification(y, n, type(self).__name__)

    def decision_function(self, X: Any) -> np.ndarray:
        """(n,) for two classes (> 0: ``classes_[1]``), (n, K) for K classes, (n, k) multilabel."""
        F = self._raw(X)
        return self._targets.decision(F).cpu().numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Labels from :meth:`decision_function` (see Convention)."""
        F = self._raw(X)
        return self._targets.labels(F)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_label = True
        return tags


class RFM(_RFMBase):
    """Torch-native RFM (the historical API): the task is inferred from y, tensors in and out.

    Same parameters, fit loop and numbers as :class:`RFMRegressor` / :class:`RFMClassifier`;
    prefer those with scikit-learn (Pipeline, GridSearchCV, cross_val_score).

    Convention:
        Task: float y is regression; integer/bool/str y is classification (two classes: one
        0/1 column and a 0.5 threshold; more: one-hot and argmax; a 0/1 indicator (n, k):
        multilabel). Fitted arrays (``M_``, ``alpha_``, ``X_fit_``, ``M_path_``) are tensors on
        the working device; a tensor X gives tensor outputs. ``decision_function`` returns the
        raw outputs f(X) (n, c) (regression with 1-D y: (n,)); ``predict_proba`` clips them to
        [0, 1] and normalises per row (not calibrated); ``score`` is accuracy or R^2.
        Mapping to the scikit-learn estimators: float y -> ``RFMRegressor(**params)``; labels ->
        ``RFMClassifier(**params)``, whose binary ``decision_function`` is ``f - 1/2``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 5)); y = X[:, 0] ** 2
    >>> model = RFM(n_iter=2, random_state=0).fit(X, y)
    >>> model.predict(X[:3]).shape
    (3,)
    """

    _torch_native = True

    def _encode_targets(self, y, n):
        y_np = to_numpy(y)
        if y_np.dtype.kind in "fc":
            return encode_regression(y_np, n)
        return encode_classification(y_np, n, type(self).__name__)

    def decision_function(self, X: Any) -> Any:
        """Raw predictor outputs f(X), shape (n, c) (regression: (n,) for a 1-D target)."""
        F = self._raw(X)
        return self._out(F if self.is_classifier_ else self._regression_output(F), X)

    def predict(self, X: Any) -> Any:
        """Regression values, or class labels (argmax; binary and multilabel: threshold 0.5)."""
        F = self._raw(X)
        if not self.is_classifier_:
            return self._out(self._regression_output(F), X)
        lab = self._targets.labels(F)
        if isinstance(X, torch.Tensor) and lab.dtype.kind in "iub":
            return torch.as_tensor(lab, device=X.device)
        return lab

    def predict_proba(self, X: Any) -> Any:
        """Class scores clipped to [0, 1] and normalised per row (not calibrated), (n, n_classes)."""
        self._check_fitted()
        if not self.is_classifier_:
            raise AttributeError("predict_proba is only available for classification targets")
        F = self._raw(X)
        if self._targets.kind == "binary":
            p = F[:, 0].clamp(0, 1)
            P = torch.stack([1 - p, p], 1)
        elif self._targets.kind == "multilabel":
            P = F.clamp(0, 1)
        else:
            P = F.clamp(min=0)
            s = P.sum(1, keepdim=True)
            P = torch.where(s > 0, P / s.clamp(min=1e-300), torch.full_like(P, 1 / P.shape[1]))
        return self._out(P, X)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy (classification; multilabel: exact-match) or R^2 (regression, averaged over outputs)."""
        pred = to_numpy(self.predict(X))
        y_np = to_numpy(y)
        if self.is_classifier_:
            y_np = y_np.reshape(pred.shape)
            hit = pred == y_np
            return float(np.mean(hit if hit.ndim == 1 else hit.all(1)))
        y2, p2 = y_np.reshape(len(y_np), -1), pred.reshape(len(pred), -1)
        return float(np.mean(1 - ((y2 - p2) ** 2).sum(0) / ((y2 - y2.mean(0)) ** 2).sum(0)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        return tags
