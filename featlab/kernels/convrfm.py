"""ConvRFM: RFM with an aligned-patch Mahalanobis kernel on images (spec agop_rfm.md §7).

K_M(x, z) = (1/P) sum_p k_M(x_p, z_p): the patch kernel averaged over the P aligned positions
(no pooling), with one M in R^{cq^2 x cq^2} shared by all positions. M is updated with the
patch-AGOP of the kernel predictor, each patch treated as an independent input.

Estimators: :class:`ConvRFMRegressor`, :class:`ConvRFMClassifier` (scikit-learn) and the
torch-native :class:`ConvRFM` (task from y's dtype); the fit loop is RFM's (:mod:`.rfm`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._estimator import Constraint
from .mahalanobis import KernelKind, apply_M, self_tol
from .rfm import RFM, RFMClassifier, RFMRegressor, _RFMBase
from .rfm_agop import _BLOCK, accumulate_outer

__all__ = ["ConvRFM", "ConvRFMRegressor", "ConvRFMClassifier", "extract_patches", "patch_kernel",
           "patch_agop_kernel"]


def extract_patches(X: torch.Tensor, patch_size: int, padding: str = "zero") -> torch.Tensor:
    """Stride-1 q x q patches of images, shape (n, P, c q^2).

    Convention:
        X: (n, c, H, W). padding "zero" / "circular" pads q//2 on every side, "none" pads
        nothing (P = (H - q + 1)(W - q + 1)). Positions are row-major (F.unfold order); each
        patch vector is in (channel, row, col) order, the order of a flattened conv weight.
    """
    if X.ndim != 4:
        raise ValueError(f"X must be images (n, c, H, W), got shape {tuple(X.shape)}")
    q = patch_size
    if padding not in ("zero", "circular", "none"):
        raise ValueError(f"padding={padding!r} is not allowed; allowed: zero, circular, none")
    if padding != "none" and q // 2 > 0:
        X = F.pad(X, (q // 2,) * 4, mode="constant" if padding == "zero" else "circular")
    if X.shape[-1] < q or X.shape[-2] < q:
        raise ValueError(f"patch_size={q} is larger than the (padded) image {tuple(X.shape[-2:])}")
    return F.unfold(X, q).transpose(1, 2).contiguous()  # (n, P, c q^2)


def _sq_dist_positions(A: torch.Tensor, B: torch.Tensor, M: torch.Tensor | None, scale: float = 1.0):
    """Per-position scale * squared M-distances (Pc, na, nb), clamped at 0, from one bmm of
    augmented factors [-2 a M, a^T M a, 1] [b, 1, b^T M b]^T; also returns the quadratic forms
    and the M-transformed patches. A: (Pc, na, D), B: (Pc, nb, D)."""
    AM = apply_M(A, M)
    BM = AM if B is A else apply_M(B, M)
    qa = (AM * A).sum(-1)  # (Pc, na)
    qb = qa if B is A else (BM * B).sum(-1)  # (Pc, nb)
    left = torch.cat([AM * (-2 * scale), (qa * scale)[..., None], torch.full_like(qa, scale)[..., None]], -1)
    right = torch.cat([B, torch.ones_like(qb)[..., None], qb[..., None]], -1)
    D2 = torch.bmm(left, right.transpose(1, 2))  # (Pc, na, nb)
    return D2.clamp_(min=0), qa, qb, AM, BM


def patch_kernel(A: torch.Tensor, B: torch.Tensor, M: torch.Tensor | None, *, kind: str = "laplace",
                 bandwidth: float = 10.0, chunk_size: int | None = None) -> torch.Tensor:
    """Aligned-patch kernel (1/P) sum_p k_M(a_p, b_p), shape (na, nb), from patches (n, P, D).

    ``chunk_size`` (positions per block) bounds memory at chunk_size * na * nb; it never
    changes the result. When ``B is A`` the self distances are exactly 0.
    """
    kind = KernelKind(kind)
    na, P, _ = A.shape
    nb = B.shape[0]
    same = A is B
    pc = chunk_size or max(1, _BLOCK // max(na * nb, 1))
    K = torch.zeros(na, nb, dtype=A.dtype, device=A.device)
    for s in range(0, P, pc):
        a = A[:, s:s + pc].transpose(0, 1).contiguous()  # (Pc, na, D)
        b = a if same else B[:, s:s + pc].transpose(0, 1).contiguous()  # (Pc, nb, D)
        scale = 1.0 / bandwidth**2 if kind == KernelKind.LAPLACE else 0.5 / bandwidth**2
        D2 = _sq_dist_positions(a, b, M, scale)[0]  # (Pc, na, nb), already / L^2 or / 2L^2
        if same:
            D2.diagonal(dim1=1, dim2=2).zero_()
        if kind == KernelKind.LAPLACE:
            D2.sqrt_()
        K += D2.neg_().exp_().sum(0)
    return K / P


def patch_grads(Q: torch.Tensor, A: torch.Tensor, alpha: torch.Tensor, M: torch.Tensor | None, *,
                kind: str = "laplace", bandwidth: float = 10.0, positions: slice = slice(None)
                ) -> torch.Tensor:
    """Closed-form patch gradients grad_{q_p} f_c, shape (Pc, m, c, D), for the positions given.

    Convention:
        grad_{x_p} f_c(x) = (1/(L P)) sum_t alpha_tc K~(x_p, z^t_p) M (z^t_p - x_p) (spec §7);
        K~ as in :func:`featlab.kernels.mahalanobis.grad_weights` (self pairs excluded).
    """
    kind = KernelKind(kind)
    P = A.shape[1]
    q = Q[:, positions].transpose(0, 1).contiguous()  # (Pc, m, D)
    a = A[:, positions].transpose(0, 1).contiguous()  # (Pc, n, D)
    D2, qq, qa, QM, AM = _sq_dist_positions(q, a, M)
    if kind == KernelKind.GAUSSIAN:
        Kt = D2.mul_(-0.5 / bandwidth**2).exp_().div_(bandwidth**2)
    else:
        mask = D2 <= self_tol(Q.dtype) * float(qq.max() + qa.max()) + 1e-20  # self pairs
        r = D2.sqrt_()
        Kt = torch.exp(r * (-1.0 / bandwidth)).div_(r.mul_(bandwidth).clamp_(min=1e-30)).masked_fill_(mask, 0.0)
    Pc, m, D = q.shape
    c = alpha.shape[1]
    aP = alpha / P  # the 1/P of the patch-averaged kernel, folded into alpha
    Ka = Kt @ aP  # (Pc, m, c)
    XA = (aP.T[None, :, :, None] * AM[:, None]).permute(0, 2, 1, 3).reshape(Pc, -1, c * D)  # (Pc, n, c D)
    out = torch.bmm(Kt, XA).reshape(Pc, m, c, D)  # (Pc, m, c, D)
    return out.sub_(Ka[..., None] * QM[:, :, None, :])


def patch_agop_kernel(Q: torch.Tensor, A: torch.Tensor, alpha: torch.Tensor, M: torch.Tensor | None, *,
                      kind: str = "laplace", bandwidth: float = 10.0, diag: bool = False,
                      centering: bool = False, chunk_size: int | None = None) -> torch.Tensor:
    """Summed patch-AGOP  sum_{x in Q} sum_p sum_c grad_{x_p} f_c grad_{x_p} f_c^T, (D, D) or (D,).

    ``centering`` subtracts the mean over all (image, position, class) gradient rows.
    ``chunk_size`` (positions per block) is a memory knob only.
    """
    m, P, D = Q.shape
    n = A.shape[0]
    pc = chunk_size or max(1, _BLOCK // max(m * max(n, alpha.shape[1] * D), 1))
    blocks = (patch_grads(Q, A, alpha, M, kind=kind, bandwidth=bandwidth, positions=slice(s, s + pc))
              for s in range(0, P, pc))
    return accumulate_outer(blocks, D, diag=diag, centering=centering, like=Q)


def _is_image_shape(v: Any) -> bool:
    return v is None or (isinstance(v, (tuple, list)) and len(v) == 3
                         and all(isinstance(k, (int, np.integer)) and k >= 1 for k in v))


class ImageInputMixin:
    """Images as X: (n, c, H, W), or 2-D (n, c*H*W) read with ``image_shape`` (see Convention).

    Convention:
        A 4-D X is a batch of images (n, c, H, W); ``n_features_in_`` = c*H*W. A 2-D X
        (n, d) is reshaped to (n, *image_shape) (row-major, i.e. ``X.reshape(n, c, H, W)``,
        how scikit-learn's digits are flattened); with ``image_shape=None`` it is read as
        (n, d, 1, 1): d channels of a single pixel (tabular data; with 1x1 patches ConvRFM is
        then exactly RFM). ``image_shape_`` is the shape fitted; predict takes either form.
    """

    def _flatten_input(self, X: Any, reset: bool) -> Any:
        if getattr(X, "ndim", None) is None:  # lists: find out the dimensionality first
            X = np.asarray(X)
        ndim = X.ndim
        if ndim == 4:
            shape = tuple(int(k) for k in X.shape[1:])
            if reset and self.image_shape is not None and shape != tuple(self.image_shape):
                raise ValueError(f"X has images of shape {shape}, but image_shape={tuple(self.image_shape)}")
            if not reset and shape != self.image_shape_:
                raise ValueError(f"X has images of shape {shape}, but {type(self).__name__} was fitted "
                                 f"on images of shape {self.image_shape_}")
            if reset:
                self.image_shape_ = shape
            return X.reshape(X.shape[0], -1)
        if reset:
            d = X.shape[1] if ndim == 2 else None  # other shapes are refused by validation next
            if self.image_shape is not None:
                shape = tuple(int(k) for k in self.image_shape)
                if d is not None and d != int(np.prod(shape)):
                    raise ValueError(f"X has {d} features, but image_shape={shape} needs {int(np.prod(shape))}")
            else:
                shape = (d, 1, 1) if d is not None else None
            self.image_shape_ = shape  # None only for input that validation refuses next
        return X

    def _to_model(self, X: torch.Tensor) -> torch.Tensor:
        return X.reshape(X.shape[0], *self.image_shape_)


class _ConvRFMBase(ImageInputMixin, _RFMBase):
    """ConvRFM geometry on RFM's fit loop (hooks of :class:`featlab.kernels.rfm._RFMBase`)."""

    _constraints = dict(_RFMBase._constraints,
                        patch_size=_RFMBase._constraints["agop_samples"],
                        padding=("zero", "circular", "none"),
                        image_shape=Constraint(_is_image_shape, "None or (channels, height, width)"))

    def __init__(self, patch_size: int = 3, padding: str = "zero", bandwidth: float = 10.0, *,
                 kernel: str = "laplace", reg: Any = 1e-3, n_iter: int = 5, diag: bool = False,
                 centering: bool = False, power: float = 1.0, m_norm: str = "max", m_jitter: float = 0.0,
                 agop_samples: int = 20000, agop_sampling: str = "random", solver: str = "cholesky",
                 selection: str = "val", validation_fraction: float = 0.1, metric: str = "auto",
                 dtype: str = "float64", device: Any = None, batch_size: int | None = None,
                 random_state: Any = None, bandwidth_mode: str = "constant", image_shape: Any = None):
        self.patch_size = patch_size
        self.padding = padding
        self.image_shape = image_shape
        super().__init__(bandwidth, kernel=kernel, reg=reg, n_iter=n_iter, diag=diag,
                         centering=centering, power=power, m_norm=m_norm, m_jitter=m_jitter,
                         agop_samples=agop_samples, agop_sampling=agop_sampling, solver=solver,
                         selection=selection, validation_fraction=validation_fraction, metric=metric,
                         dtype=dtype, device=device, batch_size=batch_size, random_state=random_state,
                         bandwidth_mode=bandwidth_mode)

    def _features(self, Xm: torch.Tensor) -> torch.Tensor:
        return extract_patches(Xm, self.patch_size, self.padding)  # (n, P, D)

    def _dim(self, A: torch.Tensor) -> int:
        return A.shape[2]

    def _gram(self, A, B, M, L):
        return patch_kernel(A, B, M, kind=self.kernel, bandwidth=L, chunk_size=self.batch_size)

    def _train_gram(self, A, M, L, out=None):  # the patch-AGOP needs per-position weights: plain path
        return self._gram(A, A, M, L), None, None

    def _agop(self, rows, A, alpha, M, L, W=None):
        return patch_agop_kernel(A[rows], A, alpha, M, kind=self.kernel, bandwidth=L, diag=self.diag,
                                 centering=self.centering, chunk_size=self.batch_size)

    def _rows(self, n: int) -> int:  # images per prediction block (the kernel chunks positions itself)
        return max(1, _BLOCK // max(n, 1))

    def _median_dist(self, A, M, g):
        n, P, D = A.shape
        img = torch.randint(n, (2000,), generator=g).to(A.device)
        pos = torch.randint(P, (2000,), generator=g).to(A.device)
        return super()._median_dist(A[img, pos], M, g)


_CONV_DOC = """
    Parameters
    ----------
    patch_size : int
        q; patches have D = c q^2 coordinates in (channel, row, col) order.
    padding : {"zero", "circular", "none"}
        Padding of q//2 before extracting stride-1 patches.
    image_shape : tuple (c, H, W) or None
        How a 2-D X is read (see Convention); a 4-D X is used as given.
    bandwidth, kernel, reg, n_iter, ... :
        As :class:`featlab.kernels.RFMRegressor`; ``batch_size`` here is the number of positions
        per block (memory only); ``agop_samples`` counts images. ``solver="cholesky"`` reads the
        plain patch Gram (no packing: the patch-AGOP needs per-position weights).

    Attributes
    ----------
    M_ : (D, D) or (D,), the patch Mahalanobis matrix; X_fit_ : the training images
    (n_fit, c, H, W); image_shape_ : (c, H, W); others as RFMRegressor.

    Convention:
        K(x, z) = (1/P) sum_p k_M(x_p, z_p) with aligned patches and one shared M. Patch-AGOP
        with every patch an independent input; M <- normalise(AGOP^power). Images: X (n, c, H, W),
        or 2-D X (n, c*H*W) with ``image_shape``; 2-D X without it is (n, d, 1, 1).

    See Also
    --------
    featlab.kernels.RFMRegressor, featlab.kernels.DeepConvRFMClassifier

    References
    ----------
    Beaglehole, Radhakrishnan, Pandit, Belkin, arXiv:2309.00570 (2023).
"""


class ConvRFMRegressor(_ConvRFMBase, RFMRegressor):
    __doc__ = "Convolutional RFM regressor on images with the aligned-patch Mahalanobis kernel (spec §7).\n" + _CONV_DOC
    _constraints = dict(_ConvRFMBase._constraints, metric=("auto", "mse"))


class ConvRFMClassifier(_ConvRFMBase, RFMClassifier):
    __doc__ = ("Convolutional RFM classifier on images (spec §7); classification conventions of "
               ":class:`featlab.kernels.RFMClassifier`.\n" + _CONV_DOC + """
    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = ConvRFMClassifier(patch_size=3, image_shape=(1, 8, 8), n_iter=1, random_state=0)
    >>> clf.fit(X[:300] / 16, y[:300]).score(X[300:400] / 16, y[300:400]) > 0.8
    True
""")


class ConvRFM(_ConvRFMBase, RFM):
    __doc__ = ("Torch-native ConvRFM (the historical API): task from y's dtype, tensors in and out, "
               "as :class:`featlab.kernels.RFM`; prefer ConvRFMRegressor / ConvRFMClassifier with "
               "scikit-learn.\n" + _CONV_DOC + """
    Examples
    --------
    >>> import torch
    >>> X = torch.randn(40, 1, 6, 6, dtype=torch.float64); y = (X[:, 0, 2].sum(1) > 0).long()
    >>> ConvRFM(patch_size=3, n_iter=1, random_state=0).fit(X, y).M_.shape
    torch.Size([9, 9])
""")
