"""Input AGOP, layer AGOP and NFA against closed forms and per-sample oracles (float64)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from featlab.probes import AGOPMethod, agop, matrix_power_psd, nfa


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _loop_oracle(f, X):
    """Explicit per-sample loop: (1/n) Σ_p J(x_p)ᵀJ(x_p) with torch.autograd.functional.jacobian."""
    G = 0
    for x in X:
        J = torch.autograd.functional.jacobian(lambda z: f(z.unsqueeze(0)).reshape(-1), x)
        J = J.reshape(J.shape[0], -1)
        G = G + J.T @ J
    return G / X.shape[0]


def _mlp(c, g):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, c)).double()


def _cnn(c):
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2),
                         nn.Tanh(), nn.Flatten(), nn.Linear(4 * 2 * 2, c)).double()


def _bn(c):
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                      nn.Linear(3 * 5 * 5, c)).double()
    with torch.no_grad():  # non-trivial running statistics
        m[1].running_mean.uniform_(-1, 1)
        m[1].running_var.uniform_(0.5, 2)
        m[1].weight.uniform_(0.5, 1.5)
    return m


def test_convention_flatten_order_mean_over_samples_sum_over_outputs(gen):
    """G is indexed by the row-major flatten of X's non-batch dims, averages samples, sums outputs."""
    a, b = 3.0, 2.0

    def f(x):  # (B, 2, 3, 4) -> (B, 2): output 0 reads pixel (c=0, r=1, s=2), output 1 reads (1, 2, 3)
        return torch.stack([a * x[:, 0, 1, 2], b * x[:, 1, 2, 3] ** 2], 1)

    X = torch.randn(4, 2, 3, 4, generator=gen, dtype=torch.float64)
    G = agop(f, X)
    i, j = 0 * 12 + 1 * 4 + 2, 1 * 12 + 2 * 4 + 3
    expected = torch.zeros(24, 24, dtype=torch.float64)
    expected[i, i] = a ** 2  # same for every sample: the mean, not the sum (n = 4)
    expected[j, j] = (4 * b ** 2 * X[:, 1, 2, 3] ** 2).mean()
    assert torch.allclose(G, expected, atol=1e-13)


def test_linear_map_gives_WtW(gen):
    W = torch.randn(4, 7, generator=gen, dtype=torch.float64)
    lin = nn.Linear(7, 4).double()
    with torch.no_grad():
        lin.weight.copy_(W)
    X = torch.randn(13, 7, generator=gen, dtype=torch.float64) * 5
    assert _rel(agop(lin, X), W.T @ W) < 1e-13


def test_relu_readout_closed_form(gen):
    U = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    v = torch.randn(9, generator=gen, dtype=torch.float64)
    X = torch.randn(20, 5, generator=gen, dtype=torch.float64)
    f = lambda x: torch.relu(x @ U.T) @ v  # noqa: E731  (B,)
    G = 0
    for x in X:
        a = (U @ x > 0).double()
        G = G + U.T @ torch.diag(a) @ torch.outer(v, v) @ torch.diag(a) @ U
    assert _rel(agop(f, X), G / 20) < 1e-13


@pytest.mark.parametrize("build,shape", [(_mlp, (6,)), (_cnn, (2, 5, 5)), (_bn, (2, 5, 5))])
@pytest.mark.parametrize("c", [1, 10])
def test_methods_agree_with_per_sample_loop(build, shape, c, gen):
    model = build(c, gen) if build is _mlp else build(c)
    X = torch.randn(7, *shape, generator=gen, dtype=torch.float64)
    ref = _loop_oracle(model.eval(), X)
    a = agop(model, X)
    b = agop(model, X, method="vmap_jacrev")
    cb = agop(model, X, chunk_size=4, batch_size=3)  # is_grads_batched path
    for G in (a, b, cb):
        assert G.shape == (X[0].numel(),) * 2 and G.dtype == torch.float64
        assert _rel(G, ref) < 1e-12


def test_batch_and_chunk_size_do_not_change_result(gen):
    model = _cnn(3)
    X = torch.randn(9, 2, 5, 5, generator=gen, dtype=torch.float64)
    ref = agop(model, X)
    for bs, cs in [(1, None), (4, 2), (9, 3), (5, 1)]:
        assert _rel(agop(model, X, batch_size=bs, chunk_size=cs), ref) < 1e-13
        assert _rel(agop(model, X, method=AGOPMethod.VMAP_JACREV, batch_size=bs, chunk_size=cs), ref) < 1e-12


def test_model_mode_is_restored_and_train_bn_refused(gen):
    model = _bn(2).train()
    X = torch.randn(4, 2, 5, 5, generator=gen, dtype=torch.float64)
    agop(model, X)
    assert model.training and model[1].training
    with pytest.raises(ValueError, match="BatchNorm in train mode") as e:
        agop(model, X, force_eval=False)
    assert "\n" not in str(e.value)


def test_sketch_is_unbiased(gen):
    model = _mlp(6, gen)
    X = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    exact = agop(model, X)
    reps = [agop(model, X, method="sketch", n_sketch=4, generator=gen, chunk_size=2) for _ in range(300)]
    S = torch.stack(reps)  # (R, d, d)
    mean, se = S.mean(0), S.std(0) / len(reps) ** 0.5
    z = (mean - exact) / se.clamp_min(1e-12)
    assert float(z.abs().max()) < 4.5  # CLT: 36 entries, |z| < 4.5 essentially always
    assert _rel(mean, exact) < 0.1
    _, info = agop(model, X, method="sketch", n_sketch=3, generator=gen, return_info=True)
    assert info.sketched and info.n_sketch == 3
    assert not agop(model, X, return_info=True)[1].sketched


def test_centering_linear_map(gen):
    W = torch.randn(1, 5, generator=gen, dtype=torch.float64)
    X = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    f1 = lambda x: x @ W.T  # noqa: E731
    for cen in ("pooled", "per_class"):
        assert float(agop(f1, X, centering=cen).abs().max()) < 1e-13
    W = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    f = lambda x: x @ W.T  # noqa: E731
    assert float(agop(f, X, centering="per_class").abs().max()) < 1e-13
    Wc = W - W.mean(0)
    assert _rel(agop(f, X, centering="pooled", batch_size=3), Wc.T @ Wc) < 1e-12


@pytest.mark.parametrize("cen", ["pooled", "per_class"])
def test_centering_matches_per_sample_oracle(cen, gen):
    model = _mlp(3, gen)
    X = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    J = torch.stack([torch.autograd.functional.jacobian(lambda z: model(z), x) for x in X])  # (n, c, d)
    if cen == "pooled":
        g = J.reshape(-1, 6)
        g = g - g.mean(0)
    else:
        g = (J - J.mean(0)).reshape(-1, 6)
    ref = g.T @ g / 6
    for m in ("autograd_sum", "vmap_jacrev"):
        assert _rel(agop(model, X, method=m, centering=cen, batch_size=4), ref) < 1e-12


def test_layer_agop_equals_agop_of_the_tail(gen):
    model = _mlp(4, gen)
    X = torch.randn(10, 6, generator=gen, dtype=torch.float64)
    H = torch.tanh(model[0](X)).detach()
    ref = agop(model[2:], H)
    for m in ("autograd_sum", "vmap_jacrev"):
        assert _rel(agop(model, X, layer="2", method=m, batch_size=4), ref) < 1e-12


def test_bad_arguments_are_one_line(gen):
    model = _mlp(2, gen)
    X = torch.randn(3, 6, dtype=torch.float64)
    for kw, word in [({"method": "magic"}, "method"), ({"centering": "yes"}, "centering"),
                     ({"method": "sketch"}, "n_sketch"), ({"batch_size": 0}, "batch_size"),
                     ({"store_on": "gpu"}, "store_on")]:
        with pytest.raises(ValueError, match=word) as e:
            agop(model, X, **kw)
        assert "\n" not in str(e.value)


def test_matrix_power_psd_clips_negative_eigenvalues(gen):
    A = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    P = A @ A.T
    assert _rel(matrix_power_psd(P, 0.5) @ matrix_power_psd(P, 0.5), P) < 1e-10
    assert _rel(matrix_power_psd(P, 1.0), P) < 1e-12
    Q = torch.diag(torch.tensor([4.0, -1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(matrix_power_psd(Q, 0.5), torch.diag(torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)))


def test_convention_nfa_alpha_half_is_exact_for_balanced_linear_net(gen):
    # A balanced 2-layer linear net (W1 W1ᵀ = W2ᵀ W2) satisfies W1ᵀW1 = (AGOP)^{1/2} exactly.
    U, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    s = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    W1 = torch.diag(s) @ U[:, :4].T  # (4, 6)
    W2 = V @ torch.diag(s)  # (4, 4)
    model = nn.Sequential(nn.Linear(6, 4, bias=False), nn.Linear(4, 4, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(W1)
        model[1].weight.copy_(W2)
    X = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    r = nfa(model, "0", X, alpha=(0.5, 1.0))
    assert abs(r[0.5] - 1) < 1e-10 and r[1.0] < 0.999
    r = nfa(model, "0", X, alpha=0.5, metric="cosine")
    assert abs(r[0.5] - 1) < 1e-10


@pytest.mark.cuda
def test_cuda_matches_cpu(gen):
    model = _cnn(10)
    X = torch.randn(5, 2, 5, 5, generator=gen, dtype=torch.float64)
    ref = agop(model, X)
    mc = _cnn(10).cuda()
    assert _rel(agop(mc, X.cuda()), ref) < 1e-12
    assert _rel(agop(mc, X.cuda(), method="vmap_jacrev", store_on="device").cpu(), ref) < 1e-12
    g = torch.Generator(device="cuda").manual_seed(0)
    assert agop(mc, X.cuda(), method="sketch", n_sketch=3, generator=g).shape == ref.shape
