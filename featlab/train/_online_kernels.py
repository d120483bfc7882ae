"""The SGD step kernels behind :func:`featlab.train.online.train_committee` (see ``SGDBackend``).

Each kernel holds S runs and offers ``step1`` (bs = 1, numpy/torch only) or ``stepB``
(mini-batch), ``outputs`` (test predictions), ``snapshot`` and ``pop_grad_norms``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..models.committee import committee_lrs, committee_norm

_SQRT_HALF = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# ------------------------------------------------------------------------------------------------
# kernels: step / evaluate / snapshot / gradient norms for S runs at once
# ------------------------------------------------------------------------------------------------
class _ArrayKernel:
    """Closed-form committee SGD on (S, K, D) arrays: numpy (``xp=np``) or torch (``xp=torch``).

    L = mean_batch (s − y)²; δ = ∂L/∂h: (S, B, K); ∂L/∂W = δᵀx/√D; ∂L/∂b = Σ_B δ;
    ∂L/∂v = (2/(B·norm)) Σ_B (s − y)·σ(h).
    """

    def __init__(self, W, b, v, *, mode, lr, activation, train_b, train_v, l1, l2, xp):
        S, K, D = W.shape
        self.xp, self.S, self.K, self.D = xp, S, K, D
        self.W, self.b, self.v = W, b, v
        self.norm = committee_norm(mode, K)
        lrs = committee_lrs(mode, lr, K, D)
        self.lr_w, self.lr_b, self.lr_v = lrs["w"], lrs["b"] if train_b else 0.0, lrs["v"] if train_v else 0.0
        self.train_b, self.train_v = train_b, train_v
        self.act, self.l1, self.l2 = activation, l1, l2
        self.a = 1.0 / math.sqrt(D)
        self.plain_v = not train_v and bool((v == 1).all())
        self.tmp = xp.empty_like(W)                 # (S, K, D) update buffer
        self.h1 = xp.empty_like(b)                  # (S, K) pre-activation, bs = 1
        self.acc = {n: 0.0 for n in self.param_names()}
        self.count = 0
        if xp is np:
            from scipy.special import erf

            self._np_erf = erf
        self._fast_erf = xp is np and activation == "erf"

    def param_names(self) -> list[str]:
        return ["w"] + (["b"] if self.train_b else []) + (["v"] if self.train_v else [])

    # element-wise helpers (numpy or torch)
    def _sigma(self, h):
        if self.act == "erf":
            return self._erf(h * _SQRT_HALF)
        return np.maximum(h, 0.0) if self.xp is np else torch.relu(h)

    def _dsigma(self, h):
        if self.act == "erf":
            return self.xp.exp(-0.5 * h * h) * _SQRT_2_OVER_PI
        return (h > 0) * 1.0 if self.xp is np else (h > 0).to(h.dtype)

    def _erf(self, u):
        return self._np_erf(u) if self.xp is np else torch.erf(u)

    def _regularise(self):
        for name, on in (("W", True), ("b", self.train_b), ("v", self.train_v)):
            if not on:
                continue
            p = getattr(self, name)
            if self.l2 > 0:
                p *= 1.0 - self.l2 / self.D
            elif self.l1 > 0:
                p -= (self.l1 / self.D) * self.xp.sign(p)

    def step1(self, x, y, dh_out):
        """One bs = 1 step. x: (S, D), y: (S,), dh_out: (S, K) receives δ = ∂L/∂h."""
        if self.xp is np:
            h = self.h1
            np.matmul(self.W, x[:, :, None], out=h[:, :, None])   # (S, K, 1)
        else:  # torch CPU bmm at these shapes is ~100x slower than this product-sum
            h = (self.W * x[:, None, :]).sum(-1)                   # (S, K)
        h *= self.a
        h += self.b
        sig = self._sigma(h)                                       # (S, K)
        s = (sig.sum(-1) if self.plain_v else (sig * self.v).sum(-1)) / self.norm  # (S,)
        e = s - y                                                  # (S,)
        d = dh_out
        if self._fast_erf:  # in place: d = √(2/π)·exp(−h²/2)·(2/norm)·e
            np.multiply(h, h, out=d)
            d *= -0.5
            np.exp(d, out=d)
            d *= (2.0 * _SQRT_2_OVER_PI / self.norm) * e[:, None]
        else:
            d[...] = self._dsigma(h)
            d *= (2.0 / self.norm) * e[:, None]
        if not self.plain_v:
            d *= self.v                                            # (S, K)
        if self.xp is np:
            np.multiply(d[:, :, None], x[:, None, :], out=self.tmp)  # (S, K, D)
        else:
            torch.mul(d[:, :, None], x[:, None, :], out=self.tmp)
        self.tmp *= -(self.lr_w * self.a)
        self.W += self.tmp
        if self.train_b:
            self.b -= self.lr_b * d
        if self.train_v:
            gv = (2.0 / self.norm) * e[:, None] * sig              # (S, K)
            self.v -= self.lr_v * gv
            self.acc["v"] += _to_np(self._rownorm(gv))
        if self.l2 > 0 or self.l1 > 0:
            self._regularise()

    def stepB(self, x, y):
        """One mini-batch step. x: (S, B, D), y: (S, B)."""
        B = x.shape[1]
        Wt = self.W.transpose(0, 2, 1) if self.xp is np else self.W.transpose(1, 2)
        h = self.xp.matmul(x, Wt) * self.a + self.b[:, None, :]   # (S, B, K)
        sig = self._sigma(h)
        s = (sig * self.v[:, None, :]).sum(-1) / self.norm         # (S, B)
        e = s - y                                                  # (S, B)
        d = (2.0 / (B * self.norm)) * e[..., None] * self.v[:, None, :] * self._dsigma(h)  # (S, B, K)
        dT = d.transpose(0, 2, 1) if self.xp is np else d.transpose(1, 2)
        gW = self.xp.matmul(dT, x) * self.a                        # (S, K, D)
        self.W -= self.lr_w * gW
        self.acc["w"] += _to_np(self._rownorm(gW.reshape(self.S, -1)))
        if self.train_b:
            gb = d.sum(1)                                          # (S, K)
            self.b -= self.lr_b * gb
            self.acc["b"] += _to_np(self._rownorm(gb))
        if self.train_v:
            gv = (2.0 / (B * self.norm)) * (e[..., None] * sig).sum(1)  # (S, K)
            self.v -= self.lr_v * gv
            self.acc["v"] += _to_np(self._rownorm(gv))
        if self.l2 > 0 or self.l1 > 0:
            self._regularise()
        self.count += 1

    def _rownorm(self, g):
        return (g * g).sum(-1) ** 0.5

    def account1(self, dh, xnorm):
        """Add the gradient norms of bs = 1 steps from their buffered δ: (n, S, K), ‖x‖: (n, S)."""
        if len(dh) == 0:
            return
        dn = _to_np(self._rownorm(dh))                             # (n, S)
        self.acc["w"] += (self.a * dn * _to_np(xnorm)).sum(0)
        if self.train_b:
            self.acc["b"] += dn.sum(0)
        self.count += len(dh)

    def pop_grad_norms(self) -> dict[str, np.ndarray]:
        out = {n: (np.asarray(v, dtype=float) * np.ones(self.S) / self.count if self.count else
                   np.full(self.S, np.nan)) for n, v in self.acc.items()}
        self.acc = {n: 0.0 for n in self.acc}
        self.count = 0
        return out

    def outputs(self, x, index=None):
        """s for test inputs, (S, N), in chunks of 4096 rows.

        ``x``: (U, N, D) test sets; run s reads ``x[index[s]]`` (``index`` None: U = S and run s
        reads ``x[s]``). Runs sharing a test set (the seeds of one task) are evaluated together
        against one copy of it.
        """
        S, N = self.S, x.shape[1]
        index = np.arange(S) if index is None else np.asarray(index)
        Wt = self.W.transpose(0, 2, 1) if self.xp is np else self.W.transpose(1, 2)
        out = np.empty((S, N))
        for u in np.unique(index):
            runs = np.nonzero(index == u)[0]
            sel = runs if self.xp is np else torch.as_tensor(runs, device=self.W.device)
            Wu, bu, vu = Wt[sel], self.b[sel][:, None, :], self.v[sel][:, None, :]
            for i in range(0, N, 4096):
                h = self.xp.matmul(x[u, i:i + 4096][None], Wu) * self.a + bu                # (R, n, K)
                out[runs, i:i + 4096] = _to_np((self._sigma(h) * vu).sum(-1) / self.norm)
        return out

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of W, b, v in the training dtype (float64 runs keep float64 snapshots)."""
        return {"W": np.array(_to_np(self.W)), "b": np.array(_to_np(self.b)), "v": np.array(_to_np(self.v))}


def _to_np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


class _AutogradKernel:
    """One module per run; ``loss.backward()`` then θ ← θ − lr_θ·∇θ (then l2/l1)."""

    def __init__(self, models: Sequence[nn.Module], lrs: Sequence[dict[str, float]], *, l1, l2, D,
                 rename: dict[str, str] | None = None):
        self.models, self.lrs, self.l1, self.l2, self.D = list(models), list(lrs), l1, l2, D
        self.rename = rename or {}   # snapshot keys: parameter name -> stored name
        self.S = len(self.models)
        self.acc = {n: np.zeros(self.S) for n, _ in self.models[0].named_parameters()}
        self.count = 0

    def stepB(self, x, y):
        for s, (m, lrs) in enumerate(zip(self.models, self.lrs)):
            m.zero_grad(set_to_none=True)
            loss = ((m(x[s]) - y[s]) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                for n, p in m.named_parameters():
                    self.acc[n][s] += float(p.grad.norm())
                    p -= lrs.get(n, 0.0) * p.grad
                    if self.l2 > 0:
                        p *= 1.0 - self.l2 / self.D
                    elif self.l1 > 0:
                        p -= (self.l1 / self.D) * torch.sign(p)
        self.count += 1

    def pop_grad_norms(self):
        out = {n: a / self.count if self.count else np.full(self.S, np.nan) for n, a in self.acc.items()}
        self.acc = {n: np.zeros(self.S) for n in self.acc}
        self.count = 0
        return out

    @torch.no_grad()
    def outputs(self, x, index=None):
        """(S, N) outputs; run s reads ``x[index[s]]`` (``index`` None: ``x[s]``)."""
        index = range(len(self.models)) if index is None else index
        return np.stack([_to_np(torch.cat([m(x[u, i:i + 4096]) for i in range(0, x.shape[1], 4096)]))
                         for u, m in zip(index, self.models)])

    def snapshot(self):
        out = {}
        for n in dict(self.models[0].named_parameters()) | dict(self.models[0].named_buffers()):
            out[self.rename.get(n, n)] = np.stack([np.array(_to_np(dict(m.state_dict())[n]))  # training dtype
                                                   for m in self.models])
        return out
