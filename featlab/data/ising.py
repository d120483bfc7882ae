"""Ising spins as a data model (spec emergence.md §2.4).

Energy E(s) = −J Σ_i Σ_a s_i s_{i+e_a} (one bond per site and lattice axis; open boundaries
drop the bonds that would wrap), Boltzmann weight e^{−βE}. Samples are ±1 floats.

Convention:
    Parameterisation: the original (sgoldt/conv_emerge ``inputs.Ising``) uses J = 1, β = 1/T
    (:meth:`Ising.from_temperature`); the follow-up (leonlufkin/Localization ``IsingDataset``)
    stores J in a field named ``xi`` with β = 1 (:meth:`Ising.from_coupling`). Samples are
    (n, L) or (n, L, L) (row-major), ±1 in the requested float dtype, on ``generator.device``.
    1D correlation ⟨s_0 s_d⟩: t^d (open chain), (t^d + t^{N−d})/(1 + t^N) (ring of N sites),
    t = tanh(βJ); ξ(T) = −1/ln tanh(1/T) for J = 1.
    Sweeps: one sweep = D attempted single-spin flips (Metropolis) or one cluster pass
    (Swendsen–Wang: every cluster; Wolff: one cluster per chain).

Samplers (``sampler=``):

- ``"exact"`` (1D default): independent draws. Open chain: s_0 uniform, s_{i+1} = s_i·b_i with
  iid bonds P(b=+1) = (1+t)/2. Ring: bonds drawn the same way and accepted iff Π b_i = +1
  (the ring weight factorises over bonds under that parity constraint); acceptance
  (1 + t^N)/2 ≥ ½, vectorised with oversampling. Cost O(nD).
- ``"swendsen_wang"`` (2D default): vectorised over chains. Clusters are labelled by scipy's
  connected components on CPU (O(chains·D) per sweep, ~0.1 µs per site) and by min-label
  propagation with pointer jumping on CUDA (O(cluster diameter) passes of O(chains·D)).
  Each chain starts at random (T = ∞) and runs ``burn_in_sweeps``.
- ``"wolff"``: vectorised over chains; one cluster per chain per sweep, the seed's component of
  a pre-drawn bond configuration (equivalent to growing it, since growth tests each bond at
  most once). Same cost per sweep as Swendsen–Wang but flips ⟨|C|⟩ sites only (small at high
  T), so it needs more sweeps; it exists for parity with serial Wolff codes.
- ``"metropolis"``: checkerboard Metropolis, both sublattices per sweep (even L for periodic
  boundaries); many parallel chains, GPU friendly; slow near T_c.
- ``"original_metropolis"`` (compat, sgoldt/conv_emerge ``inputs.Ising``): ONE chain of
  random-site Metropolis moves, 1000 burn-in moves, then a sample every 10 moves — far less
  than a sweep, so consecutive samples are strongly autocorrelated.
- ``"followup_metropolis"`` (compat, leonlufkin/Localization): each sample is a fresh random
  start followed by 1000 random-site Metropolis moves (not equilibrated for large D).

Samples from chain samplers come from ``n_chains`` independent chains (default: one chain per
sample); with fewer chains each chain yields samples ``sweeps_between_samples`` apart.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .latent import check_geometry

__all__ = [
    "Ising",
    "ising_correlation_length",
    "ising_ring_correlation",
    "ising_energy",
    "ising_enumerate",
    "integrated_autocorrelation_time",
    "translation_averaged_covariance",
    "T_CRITICAL",
]

#: Critical temperature of the 2D square-lattice Ising model (J = 1): 2/ln(1+√2).
T_CRITICAL = 2.0 / math.log(1.0 + math.sqrt(2.0))
_SAMPLERS = ("exact", "wolff", "swendsen_wang", "metropolis", "original_metropolis", "followup_metropolis")


def ising_correlation_length(T, J: float = 1.0):
    """1D correlation length ξ(T) = −1/ln tanh(J/T) (sgoldt/conv_emerge ``utils.getCorrelationLength``).

    Parameters
    ----------
    T : float or array
        Temperature(s) > 0, in units of J.
    J : float
        Coupling (> 0).

    Returns
    -------
    float or ndarray: ξ in sites. ξ(1, 2, 3) = 3.6719, 1.2954, 0.8813.
    """
    T = np.asarray(T, dtype=np.float64)
    if np.any(T <= 0):
        raise ValueError(f"T must be > 0, got {T!r}")
    xi = -1.0 / np.log(np.tanh(J / T))
    return float(xi) if xi.ndim == 0 else xi


def ising_ring_correlation(N: int, t: float, d) -> np.ndarray:
    """⟨s_0 s_d⟩ on a ring of N sites: (t^d + t^{N−d})/(1 + t^N), t = tanh(βJ)."""
    d = np.asarray(d, dtype=np.float64)
    return (t**d + t ** (N - d)) / (1.0 + t**N)


def _bond_masks(shape: tuple, boundary: str, device) -> list[torch.Tensor]:
    """For each axis a, a bool mask (shape) saying whether site i has a bond to i + e_a."""
    masks = []
    for a in range(len(shape)):
        m = torch.ones(shape, dtype=torch.bool, device=device)
        if boundary == "open":
            idx = [slice(None)] * len(shape)
            idx[a] = -1
            m[tuple(idx)] = False
        masks.append(m)
    return masks


def ising_energy(s: torch.Tensor, J: float = 1.0, boundary: str = "periodic") -> torch.Tensor:
    """E = −J Σ_i Σ_a s_i s_{i+e_a} per configuration; s is (n, L) or (n, L, L)."""
    shape = tuple(s.shape[1:])
    E = torch.zeros(s.shape[0], dtype=s.dtype, device=s.device)
    for a, m in enumerate(_bond_masks(shape, boundary, s.device)):
        E = E - J * (s * torch.roll(s, -1, dims=a + 1) * m).flatten(1).sum(1)
    return E


def ising_enumerate(L: int, dim: int = 1, J: float = 1.0, beta: float = 1.0,
                    boundary: str = "periodic") -> tuple[torch.Tensor, torch.Tensor]:
    """All 2^D states and their Boltzmann probabilities (float64); D ≤ 20.

    Returns
    -------
    states : Tensor (2^D, L) or (2^D, L, L) ±1 float64
    p : Tensor (2^D,) float64, summing to 1.
    """
    check_geometry(L, dim, boundary)
    D = L**dim
    if D > 20:
        raise ValueError(f"L**dim must be <= 20 for enumeration, got {D}")
    k = torch.arange(2**D)
    bits = (k[:, None] >> torch.arange(D)[None, :]) & 1  # (2^D, D)
    states = (2.0 * bits - 1.0).to(torch.float64).reshape((2**D,) + (L,) * dim)
    logw = -beta * ising_energy(states, J, boundary)
    p = torch.softmax(logw, 0)
    return states, p


def translation_averaged_covariance(X: torch.Tensor) -> torch.Tensor:
    """Empirical covariance of periodic 2D samples X (n, L, L), averaged over the L² translations.

    img[r, c] = mean over samples and sites i of x_i·x_{i+(r,c)}, computed by Wiener–Khinchin
    (ifft2 of the mean power spectrum), symmetrised under k → −k, and expanded to the
    (D, D) block-circulant matrix (row-major). Zero mean is assumed (Ising: exact by symmetry).
    """
    from .latent import _circulant_from_image

    X = X.to(torch.float64)
    F = torch.fft.fft2(X)
    img = torch.fft.ifft2((F.abs() ** 2).mean(0)).real / X[0].numel()  # (L, L)
    img = 0.5 * (img + torch.roll(torch.flip(img, (0, 1)), (1, 1), (0, 1)))
    return _circulant_from_image(img)


def integrated_autocorrelation_time(x: torch.Tensor, c: float = 5.0) -> float:
    """Integrated autocorrelation time τ = 1 + 2 Σ_{t=1}^{M} ρ(t) with Sokal's window M ≥ c·τ.

    Parameters
    ----------
    x : Tensor (n_steps,) or (n_steps, n_chains)
        Time series (e.g. |m| or E per sweep); ρ is averaged over chains.

    Returns
    -------
    float, in units of the series' step (sweeps).
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.dim() == 1:
        x = x[:, None]
    n = x.shape[0]
    x = x - x.mean(0)
    f = torch.fft.rfft(x, n=2 * n, dim=0)
    acf = torch.fft.irfft(f * f.conj(), dim=0)[:n].mean(1)
    if acf[0] <= 0:
        return 1.0
    rho = acf / acf[0]
    tau = 1.0
    for M in range(1, n):
        tau += 2.0 * float(rho[M])
        if M >= c * tau:
            break
    return max(tau, 1.0)


class Ising:
    """Ising spins on a ring/chain (1D) or an L×L lattice (2D), sampled as a data model.

    Parameters
    ----------
    L : int
        Linear size (D = L**dim).
    dim : {1, 2}
    J : float
        Coupling (> 0 ferromagnetic).
    beta : float
        Inverse temperature (≥ 0).
    boundary : {"periodic", "open"}
    sampler : str or None
        One of ``"exact"`` (1D only), ``"wolff"``, ``"swendsen_wang"``, ``"metropolis"``,
        ``"original_metropolis"``, ``"followup_metropolis"`` (see module docstring). None →
        ``"exact"`` in 1D, ``"swendsen_wang"`` in 2D.
    burn_in_sweeps : int
        Sweeps from a random start before the first sample of each chain (chain samplers).
        The default 50 suits the cluster samplers (autocorrelation times of a few sweeps even
        near T_c at L ≲ 30, see :meth:`autocorrelation_times`); checkerboard Metropolis near T_c
        and Wolff at high T need more.
    sweeps_between_samples : int
        Sweeps between successive samples of one chain when ``n_chains`` < n.
    n_chains : int or None
        Parallel chains; None → one chain per sample.
    covariance_samples : int
        Samples used for the empirical 2D covariance when D > 16, drawn from at most 256
        chains ``sweeps_between_samples`` apart (periodic: also averaged over the D
        translations, so the estimate uses covariance_samples·D site pairs per entry).

    Attributes
    ----------
    t : float
        tanh(βJ).
    D : int
    marginal_kurtosis : float
        1 (binary).

    Convention:
        See the module docstring (energy, parameterisations, layout, sweeps).
        ``covariance()``: 1D exact (ring formula / t^{|i−j|}); 2D exact by enumeration when
        D ≤ 16, otherwise an *empirical estimate* from ``covariance_samples`` samples with a
        fixed seed (averaged over translations when periodic), cached.
    """

    marginal_kurtosis = 1.0

    def __init__(self, L: int, dim: int = 1, J: float = 1.0, beta: float = 1.0,
                 boundary: str = "periodic", sampler: str | None = None, burn_in_sweeps: int = 50,
                 sweeps_between_samples: int = 5, n_chains: int | None = None,
                 covariance_samples: int = 4096):
        check_geometry(L, dim, boundary)
        if sampler is None:
            sampler = "exact" if dim == 1 else "swendsen_wang"
        if sampler not in _SAMPLERS:
            raise ValueError(f"sampler must be one of {_SAMPLERS}, got {sampler!r}")
        if sampler == "exact" and dim != 1:
            raise ValueError("sampler='exact' exists only for dim=1; use 'swendsen_wang' or 'wolff'")
        if sampler == "metropolis" and boundary == "periodic" and L % 2:
            raise ValueError(f"sampler='metropolis' (checkerboard) needs even L with periodic "
                             f"boundaries, got L={L}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        if burn_in_sweeps < 0 or sweeps_between_samples < 1:
            raise ValueError("burn_in_sweeps must be >= 0 and sweeps_between_samples >= 1")
        self.L, self.dim, self.J, self.beta, self.boundary = L, dim, float(J), float(beta), boundary
        self.sampler, self.burn_in_sweeps = sampler, int(burn_in_sweeps)
        self.sweeps_between_samples, self.n_chains = int(sweeps_between_samples), n_chains
        self.covariance_samples = int(covariance_samples)
        self.D, self.shape = L**dim, (L,) * dim
        self.t = math.tanh(self.beta * self.J)
        self._cov = None

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_temperature(cls, T: float, L: int, dim: int = 1, **kwargs) -> "Ising":
        """Original parameterisation: J = 1, β = 1/T."""
        if not T > 0:
            raise ValueError(f"T must be > 0, got {T!r}")
        return cls(L, dim, J=1.0, beta=1.0 / T, **kwargs)

    @classmethod
    def from_coupling(cls, J: float, L: int, dim: int = 1, **kwargs) -> "Ising":
        """Follow-up parameterisation: coupling J (LSG's field ``xi``), β = 1."""
        return cls(L, dim, J=J, beta=1.0, **kwargs)

    @property
    def T(self) -> float:
        """Temperature 1/β (in units of J for :meth:`from_temperature` models)."""
        return math.inf if self.beta == 0 else 1.0 / self.beta

    @property
    def xi(self) -> float:
        """1D (infinite-chain) correlation length −1/ln tanh(βJ), in sites."""
        return -1.0 / math.log(abs(self.t)) if 0 < abs(self.t) < 1 else (math.inf if self.t else 0.0)

    # ------------------------------------------------------------ covariance
    def covariance(self) -> torch.Tensor:
        """(D, D) float64 covariance ⟨s_i s_j⟩ (zero mean); see the class Convention."""
        if self._cov is None:
            self._cov = self._covariance()
        return self._cov.clone()

    def _covariance(self) -> torch.Tensor:
        if self.dim == 1:
            i = np.arange(self.L)
            d = np.abs(i[:, None] - i[None, :])
            C = ising_ring_correlation(self.L, self.t, d) if self.boundary == "periodic" else self.t**d
            return torch.as_tensor(C, dtype=torch.float64)
        if self.D <= 16:
            states, p = ising_enumerate(self.L, self.dim, self.J, self.beta, self.boundary)
            X = states.reshape(states.shape[0], -1)
            return (X * p[:, None]).T @ X
        g = torch.Generator().manual_seed(0)
        n = self.covariance_samples
        if self.sampler in ("swendsen_wang", "wolff", "metropolis"):
            X = self._chains(n, g, g.device, n_chains=min(256, n)).double()  # (n, L, L)
        else:
            X = self.sample(n, g, dtype=torch.float64)
        if self.boundary == "periodic":
            return translation_averaged_covariance(X)
        Xf = X.reshape(X.shape[0], -1)
        return Xf.T @ Xf / Xf.shape[0]

    # ------------------------------------------------------------ sampling
    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """n samples (n, L) or (n, L, L) of ±1 in ``dtype`` on ``generator.device``."""
        n = int(n)
        dev = torch.device("cpu") if generator is None else generator.device
        if self.sampler == "exact":
            s = self._exact_1d(n, generator, dev)
        elif self.sampler == "original_metropolis":
            s = self._original_metropolis(n, generator, dev)
        elif self.sampler == "followup_metropolis":
            s = self._single_flip_metropolis(self._random_spins(n, generator, dev), 1000, generator)
        else:
            s = self._chains(n, generator, dev)
        return s.to(dtype)

    def _random_spins(self, n, generator, dev) -> torch.Tensor:
        u = torch.rand((n,) + self.shape, generator=generator, device=dev)
        return torch.where(u < 0.5, -1.0, 1.0).to(torch.float32)

    def _bonds(self, n, generator, dev) -> torch.Tensor:
        u = torch.rand((n, self.L), generator=generator, device=dev)
        return torch.where(u < 0.5 * (1 + self.t), 1.0, -1.0)

    def _exact_1d(self, n, generator, dev) -> torch.Tensor:
        L = self.L
        if self.boundary == "open" or L == 1:
            b = self._bonds(n, generator, dev)[:, : L - 1]  # (n, L-1)
        else:
            p_acc = 0.5 * (1 + self.t**L)
            kept, have = [], 0
            while have < n:
                m = int(math.ceil((n - have) / p_acc * 1.1)) + 16
                b = self._bonds(m, generator, dev)  # (m, L): bond i joins i and i+1 mod L
                b = b[b.prod(1) > 0]
                kept.append(b)
                have += b.shape[0]
            b = torch.cat(kept)[:n, : L - 1]
        s0 = torch.where(torch.rand(n, 1, generator=generator, device=dev) < 0.5, -1.0, 1.0)
        return s0 * torch.cat([torch.ones(n, 1, device=dev), torch.cumprod(b, 1)], 1)  # (n, L)

    def _chains(self, n, generator, dev, n_chains: int | None = None) -> torch.Tensor:
        n_chains = self.n_chains if n_chains is None else n_chains
        c = n if n_chains is None else min(int(n_chains), n)
        s = self._random_spins(c, generator, dev)
        s = self._sweeps(s, self.burn_in_sweeps, generator)
        out = [s]
        while sum(o.shape[0] for o in out) < n:
            s = self._sweeps(s, self.sweeps_between_samples, generator)
            out.append(s)
        return torch.cat(out)[:n]

    def _sweeps(self, s: torch.Tensor, k: int, generator) -> torch.Tensor:
        step = {"swendsen_wang": self._sw_sweep, "wolff": self._wolff_sweep,
                "metropolis": self._checkerboard_sweep}[self.sampler]
        for _ in range(k):
            s = step(s, generator)
        return s

    def run_chains(self, n_chains: int, n_sweeps: int, generator=None, burn_in_sweeps: int | None = None):
        """Run ``n_chains`` chains and record |m| and E/D after each sweep: (n_sweeps, n_chains) each."""
        if self.sampler not in ("swendsen_wang", "wolff", "metropolis"):
            raise ValueError(f"run_chains needs a chain sampler, got sampler={self.sampler!r}")
        dev = torch.device("cpu") if generator is None else generator.device
        s = self._random_spins(n_chains, generator, dev)
        s = self._sweeps(s, self.burn_in_sweeps if burn_in_sweeps is None else burn_in_sweeps, generator)
        m, E = [], []
        for _ in range(n_sweeps):
            s = self._sweeps(s, 1, generator)
            m.append(s.flatten(1).mean(1).abs())
            E.append(ising_energy(s, self.J, self.boundary) / self.D)
        return torch.stack(m), torch.stack(E)

    def autocorrelation_times(self, n_chains: int = 16, n_sweeps: int = 200, generator=None) -> dict:
        """Integrated autocorrelation times (in sweeps) of |m| and E, from :meth:`run_chains`."""
        m, E = self.run_chains(n_chains, n_sweeps, generator)
        return {"tau_abs_m": integrated_autocorrelation_time(m),
                "tau_energy": integrated_autocorrelation_time(E)}

    # -- cluster and Metropolis kernels (vectorised over chains; axis a of s is a + 1)
    def _p_bond(self) -> float:
        return 1.0 - math.exp(-2.0 * self.beta * abs(self.J))

    def _cluster_labels(self, s: torch.Tensor, generator, method: str | None = None) -> torch.Tensor:
        """Fortuin–Kasteleyn bonds (aligned neighbours, probability 1 − e^{−2β|J|}) and a cluster
        label in [0, s.numel()) for every site, shaped like s.

        ``method``: ``"csgraph"`` (CPU default; scipy connected components, O(N) in C) or
        ``"propagation"`` (CUDA default; min-label propagation with pointer jumping, O(cluster
        diameter) tensor passes). Both give the same partition (tested).
        """
        dev, p = s.device, self._p_bond()
        sgn = 1.0 if self.J >= 0 else -1.0
        fwd = []
        for a, m in enumerate(_bond_masks(self.shape, self.boundary, dev)):
            u = torch.rand(s.shape, generator=generator, device=dev)
            fwd.append((s * torch.roll(s, -1, dims=a + 1) * sgn > 0) & (u < p) & m)  # bond i -- i+e_a
        method = method or ("csgraph" if dev.type == "cpu" else "propagation")
        if method == "csgraph":
            return self._labels_csgraph(fwd, s.shape).to(dev)
        return self._labels_propagation(fwd, s.shape)

    def _labels_csgraph(self, fwd: list[torch.Tensor], shape) -> torch.Tensor:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        N = math.prod(shape)
        idx = torch.arange(N).reshape(shape)
        rows, cols = [], []
        for a, b in enumerate(fwd):
            b = b.cpu()
            rows.append(idx[b])
            cols.append(torch.roll(idx, -1, dims=a + 1)[b])
        r, c = torch.cat(rows).numpy(), torch.cat(cols).numpy()
        G = coo_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(N, N))
        _, lab = connected_components(G, directed=False)
        return torch.as_tensor(lab, dtype=torch.long).reshape(shape)

    def _labels_propagation(self, fwd: list[torch.Tensor], shape) -> torch.Tensor:
        bwd = [torch.roll(b, 1, dims=a + 1) for a, b in enumerate(fwd)]  # bond i -- i-e_a
        lab = torch.arange(math.prod(shape), device=fwd[0].device).reshape(shape)
        while True:  # min-label propagation + pointer jumping
            new = lab
            for a in range(self.dim):
                ax = a + 1
                new = torch.where(fwd[a], torch.minimum(new, torch.roll(lab, -1, dims=ax)), new)
                new = torch.where(bwd[a], torch.minimum(new, torch.roll(lab, 1, dims=ax)), new)
            flat = new.reshape(-1)
            new = flat[flat].reshape(shape)  # labels are sites of the same cluster
            if torch.equal(new, lab):
                return lab
            lab = new

    def _sw_sweep(self, s: torch.Tensor, generator) -> torch.Tensor:
        lab = self._cluster_labels(s, generator)
        flip = torch.rand(s.numel(), generator=generator, device=s.device) < 0.5  # one coin per cluster
        return torch.where(flip[lab], -s, s)

    def _wolff_sweep(self, s: torch.Tensor, generator) -> torch.Tensor:
        # Wolff growth tests every bond at most once, so growing the seed's cluster equals taking
        # its component in a pre-drawn FK bond configuration: reuse the vectorised labelling.
        c = s.shape[0]
        lab = self._cluster_labels(s, generator).reshape(c, self.D)
        seed = torch.randint(self.D, (c,), generator=generator, device=s.device)
        target = lab[torch.arange(c, device=s.device), seed]  # (c,)
        return torch.where((lab == target[:, None]).reshape(s.shape), -s, s)

    def _local_field(self, s: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(s)
        for a, m in enumerate(_bond_masks(self.shape, self.boundary, s.device)):
            ax = a + 1
            h = h + torch.roll(s, -1, dims=ax) * m + torch.roll(s * m, 1, dims=ax)
        return h

    def _checkerboard_sweep(self, s: torch.Tensor, generator) -> torch.Tensor:
        idx = torch.stack(torch.meshgrid(*[torch.arange(self.L, device=s.device)] * self.dim,
                                         indexing="ij")).sum(0) % 2  # (*shape) parity
        for colour in (0, 1):
            dE = 2.0 * self.J * s * self._local_field(s)
            u = torch.rand(s.shape, generator=generator, device=s.device)
            acc = (u < torch.exp(-self.beta * dE)) & (idx == colour)
            s = torch.where(acc, -s, s)
        return s

    def _neighbour_table(self, dev) -> tuple[torch.Tensor, torch.Tensor]:
        """(D, 2·dim) neighbour indices of each flat site and a (D, 2·dim) validity mask."""
        grid = torch.meshgrid(*[torch.arange(self.L)] * self.dim, indexing="ij")
        coords = torch.stack(grid, -1).reshape(self.D, self.dim)  # (D, dim) row-major
        nb, ok = [], []
        for a in range(self.dim):
            for step in (1, -1):
                q = coords.clone()
                q[:, a] += step
                valid = (q[:, a] >= 0) & (q[:, a] < self.L)
                q[:, a] %= self.L
                flat = torch.zeros(self.D, dtype=torch.long)
                for b in range(self.dim):
                    flat = flat * self.L + q[:, b]
                nb.append(flat)
                ok.append(valid | (self.boundary == "periodic"))
        return torch.stack(nb, 1).to(dev), torch.stack(ok, 1).to(dev)

    def _single_flip_metropolis(self, s: torch.Tensor, moves: int, generator) -> torch.Tensor:
        """``moves`` random-site Metropolis moves in each of the chains s (c, *shape)."""
        c, dev = s.shape[0], s.device
        flat = s.reshape(c, self.D).clone()
        nb, ok = self._neighbour_table(dev)
        rows = torch.arange(c, device=dev)
        for _ in range(moves):
            i = torch.randint(self.D, (c,), generator=generator, device=dev)
            h = (flat.gather(1, nb[i]) * ok[i]).sum(1)  # (c,)
            dE = 2.0 * self.J * flat[rows, i] * h
            u = torch.rand(c, generator=generator, device=dev)
            acc = (dE < 0) | (u < torch.exp(-self.beta * dE))
            flat[rows, i] = torch.where(acc, -flat[rows, i], flat[rows, i])
        return flat.reshape(s.shape)

    def _original_metropolis(self, n: int, generator, dev) -> torch.Tensor:
        """One chain: 1000 burn-in moves, then a sample every 10 moves (python loop, O(n) moves)."""
        burn, every = 1000, 10
        moves = burn + every * n
        s = self._random_spins(1, generator, dev).reshape(self.D).cpu().numpy().astype(np.float64)
        sites = torch.randint(self.D, (moves,), generator=generator, device=dev).cpu().numpy()
        us = torch.rand(moves, generator=generator, device=dev, dtype=torch.float64).cpu().numpy()
        nb, ok = (t.cpu().numpy() for t in self._neighbour_table("cpu"))
        out = np.empty((n, self.D))
        k = 0
        for step in range(moves):
            i = sites[step]
            dE = 2.0 * self.J * s[i] * float((s[nb[i]] * ok[i]).sum())
            if dE < 0 or us[step] < math.exp(-self.beta * dE):
                s[i] = -s[i]
            if step >= burn and (step - burn) % every == every - 1:
                out[k] = s
                k += 1
        return torch.as_tensor(out, device=dev).reshape((n,) + self.shape)

    def __repr__(self) -> str:
        return (f"Ising(L={self.L}, dim={self.dim}, J={self.J}, beta={self.beta}, "
                f"boundary={self.boundary!r}, sampler={self.sampler!r})")
