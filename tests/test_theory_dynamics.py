"""LSG effective dynamics (spec emergence.md §6.2): Euler form, fixed points, FFT = dense."""
from __future__ import annotations

import math

import pytest
import torch

from featlab.theory._effective_dynamics import effective_dynamics, is_circulant
from featlab.theory._phi import amplifier, phi_binary, phi_gaussian


def _gauss_kernel(D, xi):
    i = torch.arange(D)
    d = (i[:, None] - i[None]).abs()
    d = torch.minimum(d, D - d).double()
    return torch.exp(-d ** 2 / xi ** 2)


def _circulant(spectrum, D):
    c = torch.fft.irfft(spectrum, n=D)
    i = torch.arange(D)
    return c[(i[:, None] - i[None]) % D]


def _fourier_power(w, D):
    P = torch.fft.rfft(w, dim=-1).abs() ** 2  # (S, D//2+1)
    P[..., 1:(D + 1) // 2] *= 2  # +-k pairs
    return P / P.sum(-1, keepdim=True)


def _ratio_winner(S0, S1):
    """Derived: Gaussian phi is linear, fixed points are eigenvectors of (S0+S1)^-1 S1 and the
    stable one maximises r_k = lambda1_k / (lambda0_k + lambda1_k)."""
    l0, l1 = torch.fft.rfft(S0[:, 0]).real, torch.fft.rfft(S1[:, 0]).real
    return int(torch.argmax(l1 / (l0 + l1)))


@pytest.mark.parametrize("case", ["gaussian_kernels", "bump_at_k3"])
def test_gaussian_phi_ends_in_one_fourier_eigenspace(case):
    D = 16
    if case == "gaussian_kernels":
        S0, S1 = _gauss_kernel(D, 1.0), _gauss_kernel(D, 3.0)
    else:
        k = torch.arange(D // 2 + 1).double()
        S0, S1 = _circulant(torch.ones(D // 2 + 1, dtype=torch.float64), D), _circulant(1 + torch.exp(-(k - 3) ** 2), D)
    kstar = _ratio_winner(S0, S1)
    tr = effective_dynamics(S0, S1, phi_gaussian, n_steps=1500, n_starts=3, generator=torch.Generator().manual_seed(0))
    P = _fourier_power(tr.final, D)
    assert (P[:, kstar] > 0.99).all()
    expected_ipr = 1 / D if kstar in (0, D // 2) else 3 / (2 * D)  # §5.1 table
    assert torch.allclose(tr.ipr[-1], torch.full((3,), expected_ipr, dtype=torch.float64), rtol=0.02)
    assert (case == "gaussian_kernels") == (kstar == 0)  # the two cases really differ


def test_binary_phi_localises():
    D = 40
    tr = effective_dynamics(_gauss_kernel(D, 1.0), _gauss_kernel(D, 3.0), phi_binary, n_steps=1500, n_starts=2,
                            generator=torch.Generator().manual_seed(1))
    assert (tr.ipr[-1] > 3 * 3 / (D + 2)).all() and (tr.ipr[-1] > 8 / D).all()  # Gaussian phi ends at 1/D
    assert (tr.ipr[0] < 3 * 3 / (D + 2)).all()  # started delocalised


def test_convention_one_euler_step_is_w_plus_half_tau_bracket():
    D, tau = 8, 0.3
    S0, S1 = _gauss_kernel(D, 1.0), _gauss_kernel(D, 2.0)
    w0 = torch.randn(D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = S1 @ w0 / torch.sqrt(w0 @ S1 @ w0)
    expected = w0 + tau / 2 * (phi_binary(a) - (S0 + S1) @ w0)
    tr = effective_dynamics(S0, S1, phi_binary, tau=tau, n_steps=1, w0=w0)
    assert torch.allclose(tr.final[0], expected, atol=1e-14)
    assert torch.equal(tr.w[0, 0], w0) and tr.steps.tolist() == [0, 1] and float(tr.t[-1]) == tau
    # swapping the classes changes the step (class 1 = long xi defines a)
    swapped = effective_dynamics(S1, S0, phi_binary, tau=tau, n_steps=1, w0=w0)
    assert not torch.allclose(swapped.final[0], expected, atol=1e-6)


def test_fft_matvec_equals_dense():
    D = 12
    S0, S1 = _gauss_kernel(D, 1.5), _gauss_kernel(D, 4.0)
    assert is_circulant(S0) and not is_circulant(S0 + torch.diag(torch.arange(D).double()))
    f = amplifier("nlgp", gain=3.0)
    kw = dict(n_steps=200, n_starts=2, generator=None, w0=torch.randn(2, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    a = effective_dynamics(S0, S1, f, matvec="dense", **kw)
    b = effective_dynamics(S0, S1, f, matvec="fft", **kw)
    assert torch.allclose(a.w, b.w, atol=1e-12)


def test_default_init_is_scaled_xavier_and_reproducible():
    D = 40
    S = _gauss_kernel(D, 2.0)
    tr = effective_dynamics(S, S, phi_gaussian, n_steps=1, n_starts=2000, generator=torch.Generator().manual_seed(4))
    std = float(tr.w[0].std())
    assert abs(std - math.sqrt(2 / (D + 1)) * math.sqrt(1e-3)) < 0.02 * std
    tr2 = effective_dynamics(S, S, phi_gaussian, n_steps=1, n_starts=2000, generator=torch.Generator().manual_seed(4))
    assert torch.equal(tr.w, tr2.w)


def test_exception():
    S = _gauss_kernel(6, 1.0)
    with pytest.raises(ValueError, match="tau"):
        effective_dynamics(S, S, phi_gaussian, tau=0.0)
    with pytest.raises(ValueError, match="matvec"):
        effective_dynamics(S, S, phi_gaussian, matvec="sparse")
    with pytest.raises(ValueError, match="circulant"):
        effective_dynamics(S + torch.diag(torch.arange(6.0).double()), S, phi_gaussian, matvec="fft", n_steps=2)
    with pytest.raises(ValueError, match="Sigma0"):
        effective_dynamics(S[:5, :5], S, phi_gaussian, n_steps=2)


def test_convention_last_snapshot_is_the_last_step_for_any_snapshot_count():
    """Trajectory.final is w after n_steps also with n_snapshots = 2 (it used to be step 1)."""
    S0, S1 = _gauss_kernel(16, 1.0), _gauss_kernel(16, 2.0)
    w0 = torch.randn(16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.01
    runs = {n: effective_dynamics(S0, S1, phi_binary, tau=0.1, n_steps=50, w0=w0, n_snapshots=n) for n in (2, 3, 60)}
    for n, tr in runs.items():
        assert tr.steps[0] == 0 and tr.steps[-1] == 50, n
        assert torch.allclose(tr.final, runs[60].final, rtol=0, atol=1e-14), n
    assert runs[2].steps.tolist() == [0, 50]
