"""``Diffeo``: a stateful transform around the pure sampler and warp, with replay (kornia style)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .fields import sample_displacement
from .temperature import temperature_range
from .warp import SIGMA_REF, deform

__all__ = ["Diffeo"]


def _beta_params(s: float, r: float) -> tuple[float, float]:
    """transform.py's Beta(s - s/(r+1), s/(r+1)); (s, r) = (2, 1) is uniform."""
    return s - s / (r + 1), s / (r + 1)


class Diffeo(nn.Module):
    """Random max-entropy diffeomorphism of a batch, one independent field per image.

    Parameters
    ----------
    T : float, optional
        Fixed temperature (unit-square convention); then ``cut`` is fixed too.
        If None, (cut, T) are drawn per image as in pcsl-epfl/diffeomorphism ``transform.py``:
        cut = floor(B (cutmax + 1 - cutmin) + cutmin), B ~ Beta(scut - scut/(rcut+1),
        scut/(rcut+1)); T = B_T (T_max - T_min) + T_min with B_T ~ Beta from (sT, rT) and
        (T_min, T_max) = temperature_range(n, cut), n = max(H, W). For cut > 2n/pi,
        T_min > T_max and T falls between them in reverse order, as in the reference.
    cut : int
        Cut-off when ``T`` is fixed.
    interp : {"linear", "nearest", "gaussian"}
        Interpolation (see :func:`featlab.diffeo.deform`).
    sT, rT, scut, rcut : float
        Beta shape parameters of the range mode (diffeo-sota defaults 2, 1, 2, 1: uniform).
    cutmin, cutmax : int
        Cut range of the range mode; cutmin >= 2 (the reference allows 1, which crashes
        temperature_range because ln 1 = 0).
    generator : torch.Generator, optional
        Source of all randomness (fields and Betas). Betas are drawn with numpy seeded from
        this generator (torch's Beta takes no generator), so a seed reproduces everything.
    gaussian_radius, sigma, backend : see :func:`featlab.diffeo.deform`.

    Attributes
    ----------
    last_params : dict or None
        ``{"displacement": (B, 2, H, W), "T": (B,), "cut": (B,)}`` of the last call;
        ``forward(x, params=m.last_params)`` replays the same warp.

    Convention:
        x: (B, C, H, W), one field per image (the reference applies one field to a whole
        batch). Displacement channel 0 = dx along W, in pixels; output[y, x] =
        x[y - dy, x - dx], clamped. T in the unit-square convention.
    """

    def __init__(self, T: float | None = None, cut: int = 3, interp: str = "linear", *,
                 sT: float = 2.0, rT: float = 1.0, scut: float = 2.0, rcut: float = 1.0,
                 cutmin: int = 2, cutmax: int = 15, generator: torch.Generator | None = None,
                 gaussian_radius: int = 3, sigma: float = SIGMA_REF, backend: str = "grid_sample"):
        super().__init__()
        if T is not None and T < 0:
            raise ValueError(f"T must be >= 0; got {T!r}")
        if T is not None and cut < 1:
            raise ValueError(f"cut must be >= 1; got {cut!r}")
        if T is None and not 2 <= cutmin <= cutmax:
            raise ValueError(f"need 2 <= cutmin <= cutmax; got cutmin={cutmin}, cutmax={cutmax}")
        for name, v in (("sT", sT), ("rT", rT), ("scut", scut), ("rcut", rcut)):
            if not v > 0:
                raise ValueError(f"{name} must be > 0; got {v!r}")
        self.T, self.cut, self.interp = T, cut, interp
        self.sT, self.rT, self.scut, self.rcut = sT, rT, scut, rcut
        self.cutmin, self.cutmax = cutmin, cutmax
        self.generator = generator
        self.gaussian_radius, self.sigma, self.backend = gaussian_radius, sigma, backend
        self.last_params: dict | None = None

    def _gen(self, device) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator(device=device)
            self.generator.seed()
        return self.generator

    def sample_params(self, batch: int, H: int, W: int, device=None) -> dict:
        """Draw (T, cut, displacement) for a batch of H x W images."""
        g = self._gen(device or "cpu")
        if self.T is not None:
            T = torch.full((batch,), float(self.T), dtype=torch.float64)
            cut = torch.full((batch,), int(self.cut), dtype=torch.long)
        else:
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=g, device=g.device).item())
            rng = np.random.default_rng(seed)
            Bc = rng.beta(*_beta_params(self.scut, self.rcut), size=batch)
            BT = rng.beta(*_beta_params(self.sT, self.rT), size=batch)
            cut_np = np.floor(Bc * (self.cutmax + 1 - self.cutmin) + self.cutmin).astype(int)
            cut_np = np.minimum(cut_np, self.cutmax)  # B = 1 exactly would give cutmax + 1
            n = max(H, W)
            rng_T = np.array([temperature_range(n, int(c)) for c in cut_np]).reshape(batch, 2)
            T = torch.as_tensor(BT * (rng_T[:, 1] - rng_T[:, 0]) + rng_T[:, 0], dtype=torch.float64)
            cut = torch.as_tensor(cut_np, dtype=torch.long)
        disp = sample_displacement(batch, (H, W), T.to(g.device), cut.to(g.device), g,
                                   device=device)
        return {"displacement": disp, "T": T, "cut": cut}

    def forward(self, x: torch.Tensor, params: dict | None = None) -> torch.Tensor:
        """Warp ``x`` (B, C, H, W) by fresh fields, or by ``params`` (replay)."""
        if params is None:
            params = self.sample_params(x.shape[0], x.shape[-2], x.shape[-1], device=x.device)
        self.last_params = params
        return deform(x, params["displacement"], self.interp, gaussian_radius=self.gaussian_radius,
                      sigma=self.sigma, backend=self.backend)

    def extra_repr(self) -> str:
        if self.T is not None:
            return f"T={self.T}, cut={self.cut}, interp={self.interp!r}"
        return (f"T=range(sT={self.sT}, rT={self.rT}), cut in [{self.cutmin}, {self.cutmax}], "
                f"interp={self.interp!r}")
