"""Deep ConvRFM: CNTK machines with a learned patch Mahalanobis matrix, stacked level by level.

Spec agop_rfm.md §8.2-8.3 (aradha/convrfm ``deep_conv_rfm``). Per level l = 0..D-1: featurise
with filters sampled from the previous level's best M (W = Z sqrt(M), no nonlinearity by
default), then T iterations of [CNTK of depth D - l with M in its first layer -> ridge fits
-> patch-AGOP of the predictor -> new M]. Two protocols:

* ``"clean"`` (default): selection of (level, iteration, reg) on a validation split of the
  training data, AGOP on ``agop_images`` random training images with the selected reg's alpha,
  float64 eigh for the whole reg grid. A ``test_set`` passed to ``fit`` is never read.
* ``"reference"``: the released code's protocol - selection on the **test** set (pass it as
  ``test_set``), AGOP from the first 20 training images with the **last** reg's alpha,
  float32 solves. Everything that differs is recorded in ``protocol_record_``.

Estimators: :class:`DeepConvRFMClassifier` (scikit-learn: numpy in and out, binary
``decision_function`` f_1 - f_0) and the torch-native :class:`DeepConvRFM` (tensors in and out).
The method is classification only (one-hot targets, accuracy selection), so there is no regressor.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin

from ._cntk import cntk_from_patches
from ._estimator import Constraint, KernelEstimatorMixin, resolve_generator, to_numpy
from ._targets import encode_classification
from .convrfm import ImageInputMixin, _is_image_shape, extract_patches
from .solvers import ridge_solve_grid
from .viz import sqrtm_psd

__all__ = ["DeepConvRFM", "DeepConvRFMClassifier", "TestSetGuard", "sample_filters"]

_FITTED = ("best_level_", "best_iter_", "best_reg_", "M_", "alpha_", "Ms_", "filters_", "history_",
           "protocol_record_", "X_fit_", "classes_", "image_shape_", "n_features_in_", "feature_names_in_")


class TestSetGuard:
    """Holds a test set and counts every read of ``X`` or ``y`` (``accesses``).

    The clean protocol must leave ``accesses == 0`` during ``fit``; the reference protocol
    reads it for model selection, as released.
    """

    __test__ = False  # not a pytest class

    def __init__(self, X: Any, y: Any):
        self._X, self._y = X, y
        self.accesses = 0

    @property
    def X(self) -> Any:
        self.accesses += 1
        return self._X

    @property
    def y(self) -> Any:
        self.accesses += 1
        return self._y


def sample_filters(M: torch.Tensor, width: int, n_channels: int, *, method: str = "z_sqrtM",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Conv filters (width, c, q, q) whose rows have second moment tied to M.

    Convention:
        "z_sqrtM": W = Z sqrt(M), Z_ij ~ N(0, 1), so (1/w) W^T W -> M (reference default);
        "sampleM": rows ~ N(0, M / tr M) (reference ``-sampleM``). sqrt(M) by eigh with
        negative eigenvalues clipped. Rows are in (channel, row, col) order.
    """
    if method not in ("z_sqrtM", "sampleM"):
        raise ValueError(f"method={method!r} is not allowed; allowed: z_sqrtM, sampleM")
    D = M.shape[0]
    q = int(round((D // n_channels) ** 0.5))
    if generator is None:
        generator = torch.Generator(device=M.device)
        generator.seed()
    Z = torch.randn(width, D, generator=generator, device=generator.device, dtype=M.dtype).to(M.device)
    S = sqrtm_psd(M / M.trace() if method == "sampleM" else M)
    return (Z @ S).reshape(width, n_channels, q, q)


def _grid(x: torch.Tensor, q: int, padding: bool) -> tuple[int, int]:
    p = 2 * (q // 2) if padding else 0
    return x.shape[-2] + p - q + 1, x.shape[-1] + p - q + 1


class DeepConvRFM(ImageInputMixin, KernelEstimatorMixin, BaseEstimator):
    """Deep convolutional RFM with the CNTK of the reference Vanilla net (spec §8).

    Parameters
    ----------
    patch_size : int
        q of the CNTK patches and of the sampled featurisation filters (reference: 3).
    depth : int
        D; level l uses a CNTK of depth D - l (reference: 5 multiclass, 3 binary).
    width : int
        Filters sampled per level (reference: 64).
    n_iter : int
        T kernel fits per level (T - 1 M updates).
    reg_grid : tuple of float
        Ridges (reference: 1e-8, 1e-5, 1e-3).
    protocol : {"clean", "reference"}
    mahalanobis : {"agop", "agop_squared"}
        Effective Mahalanobis matrix of the next iteration, Frobenius-normalised. Default
        ``"agop"``: M = G, the update as the paper states it ((Deep) ConvRFM sets M to the
        patch-AGOP, and the CNFA it rests on is CNFM ∝ G with power 1, so sampled filters with
        W^T W ≈ w M track G itself; spec agop_rfm §4, §7); the released code reaches it only
        with its ``-sqrtM`` flag (patch transform sqrt(G)). ``"agop_squared"`` is the released code's
        *default* (no ``-sqrtM``: the AGOP itself transforms the patches, so the effective M is
        G^2), kept as the reference choice.
    thresh : bool
        Zero the smallest 3/4 of the eigenvalues of the patch transform (reference ``-thresh``).
    sample_filters : {"z_sqrtM", "sampleM"}
    featurize_nonlinearity : {None, "relu"}
        After the sampled conv (reference: none).
    padding : bool
        Zero-pad q//2 for patches and featurisation convs (reference ``-padding``).
    kernel : {"ntk", "nngp"}
    agop_images : int
        Clean protocol: random training images for the AGOP (reference: the first 20).
    validation_fraction : float
        Clean protocol: seeded, class-stratified split of the training data.
    dtype, device, batch_size, random_state :
        As RFM; ``batch_size`` = images per CNTK block.
    image_shape : tuple (c, H, W) or None
        How a 2-D X is read: (n, c*H*W) -> (n, c, H, W); None: (n, d, 1, 1) (then use
        ``patch_size=1``); a 4-D X is used as given (see :class:`featlab.kernels.ConvRFMClassifier`).

    Attributes
    ----------
    best_level_, best_iter_, best_reg_ : the selected configuration.
    Ms_ : list of the best M per level; filters_ : list of featurisation filters per level.
    history_ : list of dict (level, iter, reg, selection accuracy per reg).
    protocol_record_ : dict (selection set, AGOP images, alpha reg, solver precision).
    alpha_, M_ : of the selected predictor; classes_; X_fit_ : training images; image_shape_.

    Convention:
        Torch-native (the historical API): fitted arrays are tensors, ``decision_function``
        returns the raw outputs (n, n_classes) as a tensor, ``predict`` numpy labels. X: images
        (n, c, H, W) or 2-D with ``image_shape``; NaN/inf, sparse input and a wrong shape are
        refused. :class:`DeepConvRFMClassifier` is the scikit-learn version (same parameters).

    See Also
    --------
    featlab.kernels.cntk, featlab.kernels.ConvRFM

    References
    ----------
    Beaglehole, Radhakrishnan, Pandit, Belkin, arXiv:2309.00570 (2023).
    """

    _torch_native = True
    _constraints = {
        "image_shape": Constraint(_is_image_shape, "None or (channels, height, width)"),
        "patch_size": Constraint(lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
        "depth": Constraint(lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
        "width": Constraint(lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
        "n_iter": Constraint(lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
        "reg_grid": Constraint(lambda v: len(v) > 0 and all(r >= 0 for r in v), "non-empty, each >= 0"),
        "protocol": ("clean", "reference"),
        "mahalanobis": ("agop", "agop_squared"),
        "thresh": (False, True),
        "sample_filters": ("z_sqrtM", "sampleM"),
        "featurize_nonlinearity": (None, "relu"),
        "padding": (False, True),
        "kernel": ("ntk", "nngp"),
        "agop_images": Constraint(lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
        "validation_fraction": Constraint(lambda v: 0 < v < 1, "a number in (0, 1)"),
        "dtype": ("float64", "float32"),
    }

    def __init__(self, patch_size: int = 3, depth: int = 3, *, width: int = 64, n_iter: int = 5,
                 reg_grid: tuple = (1e-8, 1e-5, 1e-3), protocol: str = "clean",
                 mahalanobis: str = "agop", thresh: bool = False, sample_filters: str = "z_sqrtM",
                 featurize_nonlinearity: str | None = None, padding: bool = False, kernel: str = "ntk",
                 agop_images: int = 1000, validation_fraction: float = 0.1, dtype: str = "float64",
                 device: Any = None, batch_size: int | None = None, random_state: Any = None,
                 image_shape: Any = None):
        self.patch_size = patch_size
        self.depth = depth
        self.width = width
        self.n_iter = n_iter
        self.reg_grid = reg_grid
        self.protocol = protocol
        self.mahalanobis = mahalanobis
        self.thresh = thresh
        self.sample_filters = sample_filters
        self.featurize_nonlinearity = featurize_nonlinearity
        self.padding = padding
        self.kernel = kernel
        self.agop_images = agop_images
        self.validation_fraction = validation_fraction
        self.dtype = dtype
        self.device = device
        self.batch_size = batch_size
        self.random_state = random_state
        self.image_shape = image_shape

    # --- pieces -------------------------------------------------------------------------------
    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        return extract_patches(x, self.patch_size, "zero" if self.padding else "none")

    def _K(self, U: torch.Tensor, V: torch.Tensor, grid, M, kdepth: int) -> torch.Tensor:
        bs = self.batch_size or max(1, 2**22 // max(V.shape[0] * U.shape[1], 1))
        return torch.cat([cntk_from_patches(U[s:s + bs], V, grid, M=M, patch_size=self.patch_size,
                                            depth=kdepth, kind=self.kernel)
                          for s in range(0, len(U), bs)])

    def _featurise(self, x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(x, W, padding=self.patch_size // 2 if self.padding else 0)
        return F.relu(h) if self.featurize_nonlinearity == "relu" else h

    def _agop(self, Uq: torch.Tensor, U: torch.Tensor, grid, M, kdepth: int, alpha: torch.Tensor,
              kmax: float) -> torch.Tensor:
        """Patch-AGOP (D, D) of f(z) = alpha^T K(X, z) / kmax at the query images' patches, mean over images."""
        D = Uq.shape[-1]
        G = torch.zeros(D, D, dtype=Uq.dtype, device=Uq.device)
        bs = self.batch_size or max(1, 2**21 // max(U.shape[0] * U.shape[1], 1))
        for s in range(0, len(Uq), bs):
            u = Uq[s:s + bs].detach().requires_grad_(True)  # (m, P, D), patches independent
            Fz = self._K(u, U, grid, M, kdepth) @ alpha / kmax  # (m, C)
            for o in range(alpha.shape[1]):
                (g,) = torch.autograd.grad(Fz[:, o].sum(), u, retain_graph=o < alpha.shape[1] - 1)
                g = g.reshape(-1, D)
                G += g.T @ g
        return G / len(Uq)

    def _next_M(self, G: torch.Tensor) -> torch.Tensor:
        """Effective Mahalanobis matrix from the AGOP: agop or agop^2, optional thresh, Frobenius-normalised."""
        w, U = torch.linalg.eigh((G + G.T) / 2)
        w = w.clamp(min=0)
        T = w.sqrt() if self.mahalanobis == "agop" else w  # eigenvalues of the patch transform
        if self.thresh:
            T[: (3 * len(T)) // 4] = 0  # smallest 3/4 (eigh sorts ascending)
        M = (U * T**2) @ U.T
        return M / torch.linalg.norm(M)

    def _solve(self, K: torch.Tensor, Y: torch.Tensor) -> list[torch.Tensor]:
        regs = list(self.reg_grid)
        if self.protocol == "clean":
            return ridge_solve_grid(K, Y, regs, "eigh")
        K32, Y32 = K.float(), Y.float()  # reference: np.linalg.solve in float32
        eye = torch.eye(len(K), dtype=torch.float32, device=K.device)
        return [torch.linalg.solve(r * eye + K32, Y32).to(K.dtype) for r in regs]

    # --- fit ----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, *, test_set: TestSetGuard | None = None):
        """Fit level by level. ``test_set`` is read only by ``protocol="reference"``. Returns self."""
        self._validate_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        for attr in _FITTED:
            self.__dict__.pop(attr, None)
        dt = self._torch_dtype()
        dev = self._resolve_device(X)
        g = resolve_generator(self.random_state, torch.device("cpu"))
        Xt = self._to_model(self._check_X(X, reset=True, device=dev, min_samples=2))
        _, targets = encode_classification(y, len(Xt), type(self).__name__, multilabel=False)
        self.classes_ = targets.classes
        y_idx = np.searchsorted(self.classes_, _labels_1d(y))
        Y = torch.as_tensor(np.eye(len(self.classes_))[y_idx], dtype=dt, device=dev)  # one-hot, also binary
        if self.protocol == "reference":
            if test_set is None:
                raise ValueError("test_set: protocol='reference' selects on the test set; pass a TestSetGuard")
            Xs = self._to_model(self._check_X(test_set.X, reset=False, device=dev))
            ys = _labels_1d(test_set.y)
            agop_idx = torch.arange(min(20, len(Xt)))
            sel_name = "test"
        else:
            tr, va = _stratified_split(y_idx, self.validation_fraction, g)
            Xs, ys = Xt[va.to(dev)], self.classes_[y_idx[va.numpy()]]
            Xt, Y = Xt[tr.to(dev)], Y[tr.to(dev)]
            m = min(self.agop_images, len(Xt))
            agop_idx = torch.randperm(len(Xt), generator=g)[:m]
            sel_name = "validation"
        ys_idx = torch.as_tensor(np.searchsorted(self.classes_, ys), device=dev)
        self.protocol_record_ = {
            "protocol": self.protocol, "selection_set": sel_name, "agop_images": int(len(agop_idx)),
            "agop_images_rule": "first 20" if self.protocol == "reference" else "random",
            "alpha_for_agop": "last reg" if self.protocol == "reference" else "selected reg",
            "solver": "float32 solve" if self.protocol == "reference" else "float64 eigh",
        }
        feats, feats_s = Xt, Xs
        best_all, history, filters, Ms = None, [], [], []
        for level in range(self.depth):
            if level > 0:
                W = sample_filters(Ms[-1], self.width, feats.shape[1], method=self.sample_filters,
                                   generator=g).to(dev)
                filters.append(W)
                feats, feats_s = self._featurise(feats, W), self._featurise(feats_s, W)
            kdepth = self.depth - level
            grid = _grid(feats, self.patch_size, self.padding)
            U, Us = self._patches(feats), self._patches(feats_s)
            D = U.shape[-1]
            M = torch.eye(D, dtype=dt, device=dev)
            best_level = None
            for t in range(self.n_iter):
                K = self._K(U, U, grid, M, kdepth)
                kmax = float(K.max())
                K = K / kmax
                Ks = self._K(Us, U, grid, M, kdepth) / kmax
                alphas = self._solve(K, Y)
                accs = [float(((Ks @ a).argmax(1) == ys_idx).double().mean()) for a in alphas]
                j = int(np.argmax(accs))
                history.append({"level": level, "iter": t, "reg": self.reg_grid[j], f"{sel_name}_acc": accs[j],
                                "acc_per_reg": dict(zip(map(str, self.reg_grid), accs))})
                if best_level is None or accs[j] > best_level[0]:
                    best_level = (accs[j], M)
                if best_all is None or accs[j] > best_all[0]:
                    best_all = (accs[j], level, t, self.reg_grid[j], M, alphas[j], kmax, list(filters))
                if t < self.n_iter - 1:
                    a = alphas[-1] if self.protocol == "reference" else alphas[j]
                    G = self._agop(U[agop_idx.to(dev)], U, grid, M, kdepth, a, kmax)
                    M = self._next_M(G)
            Ms.append(best_level[1])
        (_, self.best_level_, self.best_iter_, self.best_reg_, M_best, alpha_best, self._kmax,
         filters_best) = best_all
        self.M_, self.alpha_ = self._store(M_best), self._store(alpha_best)
        self._filters_best = [self._store(W) for W in filters_best]
        self.Ms_, self.filters_ = [self._store(M) for M in Ms], [self._store(W) for W in filters]
        self.history_ = history
        self.X_fit_ = self._store(Xt.clone())
        return self

    # --- predict ------------------------------------------------------------------------------
    def _raw(self, X: Any) -> torch.Tensor:
        """Kernel outputs (n, n_classes) of the selected (level, iteration, reg) predictor."""
        self._check_fitted()
        dev = self.alpha_.device if isinstance(self.alpha_, torch.Tensor) else (
            torch.device(self.device) if self.device is not None else torch.device("cpu"))
        x = self._to_model(self._check_X(X, reset=False, device=dev))
        xt = self._load(self.X_fit_, dev)
        for W in self._filters_best:
            W = self._load(W, dev)
            x, xt = self._featurise(x, W), self._featurise(xt, W)
        grid = _grid(xt, self.patch_size, self.padding)
        K = self._K(self._patches(x), self._patches(xt), grid, self._load(self.M_, dev),
                    self.depth - self.best_level_)
        return K / self._kmax @ self._load(self.alpha_, dev)

    def decision_function(self, X: Any) -> Any:
        """Kernel outputs (n, n_classes) of the selected predictor (a tensor for a tensor X)."""
        return self._out(self._raw(X), X)

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (argmax of the one-hot regression)."""
        idx = self._raw(X).argmax(1).cpu().numpy()
        return self.classes_[idx]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy."""
        return float(np.mean(self.predict(X) == _labels_1d(y)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


class DeepConvRFMClassifier(ClassifierMixin, DeepConvRFM):
    """Deep ConvRFM as a scikit-learn classifier (same parameters and fit as :class:`DeepConvRFM`).

    Convention:
        One-hot targets for every number of classes (as the reference). ``decision_function``:
        two classes, f_1 - f_0 (n,) (> 0: ``classes_[1]``); K classes, f (n, K); ``predict`` =
        argmax, so the two agree. Fitted arrays are numpy arrays. y: labels (n,) (a column
        vector is raveled with a DataConversionWarning); multilabel y is refused.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(60, 1, 6, 6)); y = (X[:, 0, 2].sum(1) > 0).astype(int)
    >>> clf = DeepConvRFMClassifier(depth=2, width=4, n_iter=2, random_state=0).fit(X, y)
    >>> clf.decision_function(X[:3]).shape
    (3,)
    """

    _torch_native = False

    def decision_function(self, X: Any) -> np.ndarray:
        F = self._raw(X)
        return (F[:, 1] - F[:, 0] if F.shape[1] == 2 else F).cpu().numpy()

    def predict(self, X: Any) -> np.ndarray:
        idx = self._raw(X).argmax(1).cpu().numpy()
        return self.classes_[idx]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        return ClassifierMixin.score(self, X, y, sample_weight=sample_weight)


def _labels_1d(y: Any) -> np.ndarray:
    y = to_numpy(y)
    return y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y


def _stratified_split(yi: np.ndarray, frac: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded class-stratified (train, validation) index split.

    Each class c gives round(frac * n_c) validation points, at most n_c - 1; when that is 0 for
    every class, the largest class gives one (so small data still get a validation point).
    """
    tr, va = [], []
    classes, counts = np.unique(yi, return_counts=True)
    ks = [min(int(round(frac * n_c)), n_c - 1) for n_c in counts]
    if sum(ks) == 0:
        big = int(np.argmax(counts))
        if counts[big] < 2:
            raise ValueError(f"validation_fraction: {len(yi)} samples with one per class leave no validation point")
        ks[big] = 1
    for c, k in zip(classes, ks):
        idx = torch.as_tensor(np.flatnonzero(yi == c))
        idx = idx[torch.randperm(len(idx), generator=g)]
        va.append(idx[:k])
        tr.append(idx[k:])
    return torch.cat(tr).sort().values, torch.cat(va).sort().values
