"""Online SGD: fast kernels against the analytic update and autograd (float64), time bookkeeping."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featlab.models.committee import TwoLayer, committee_lrs
from featlab.train.online import eval_schedule, train_committee, train_modules

D, K = 16, 4


def _pool_sampler(seed: int, n_pool: int = 4096, dim: int = D):
    """A chunk-invariant stand-in task: class 0 = white noise, class 1 = smoothed noise (a
    pool read sequentially, so the stream does not depend on the chunk size)."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, 2, (n_pool,), generator=g)
    z = torch.randn(n_pool, dim, generator=g, dtype=torch.float64)
    smooth = sum(z.roll(k, 1) for k in range(-2, 3)) / math.sqrt(5)
    x = torch.where(c[:, None] == 0, z, smooth)
    y = 1.0 - 2.0 * c.double()
    state = {"i": 0}

    def sample(n, generator):
        i = state["i"]
        idx = torch.arange(i, i + n) % n_pool
        state["i"] = i + n
        return x[idx], y[idx]

    return sample


def _init(S, mode="mf", seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    W = 0.1 * torch.randn(S, K, D, generator=g, dtype=dtype)
    b = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=dtype).repeat(S, 1)
    v = 0.1 * torch.randn(S, K, generator=g, dtype=dtype) if mode == "2layer" else torch.ones(S, K, dtype=dtype)
    return W, b, v


def _run(backend, mode="mf", T=1.0, bs=1, S=2, chunk=256, l1=0.0, l2=0.0, time_unit="steps", n_evals=5,
         lr=0.05):
    W, b, v = _init(S, mode)
    samplers = [_pool_sampler(10 + s) for s in range(S)]
    test = [_pool_sampler(99, 512)(512, None) for _ in range(S)]
    gens = [torch.Generator() for _ in range(S)]
    return train_committee(W, b, v, samplers, gens, test, T=T, mode=mode, lr=lr, bs=bs,
                           backend=backend, chunk_size=chunk, dtype=torch.float64, l1=l1, l2=l2,
                           time_unit=time_unit, n_evals=n_evals)


@pytest.mark.parametrize("mode", ["mf", "lazy", "conv", "2layer"])
def test_first_step_matches_analytic_update(mode):
    """One bs=1 step vs the update derived by hand from §4.1 (mode lr, bias lr/D, 1/√D)."""
    W, b, v = _init(1, mode)
    x, y = _pool_sampler(10)(1, None)
    lr = 0.05
    norm = {"mf": K, "lazy": math.sqrt(K), "conv": 1.0, "2layer": 1.0}[mode]
    lrw = lr * norm if mode in ("mf", "lazy") else lr
    h = W[0] @ x[0] / math.sqrt(D) + b[0]
    sig = torch.erf(h / math.sqrt(2))
    s = (v[0] * sig).sum() / norm
    dsig = math.sqrt(2 / math.pi) * torch.exp(-h ** 2 / 2)
    gW = 2 * (s - y[0]) * (v[0] * dsig / norm)[:, None] * x[0][None, :] / math.sqrt(D)
    W_exp = W[0] - lrw * gW
    b_exp = b[0] - lrw / D * 2 * (s - y[0]) * v[0] * dsig / norm
    v_exp = v[0] - (lr / D) * 2 * (s - y[0]) * sig / norm if mode == "2layer" else v[0]
    for backend in ("numpy", "torch", "autograd"):
        r = train_committee(W, b, v, [_pool_sampler(10)], [torch.Generator()], [(x, y)], T=1.0 / D, t_min=0.5 / D,
                            mode=mode, lr=lr, backend=backend, dtype=torch.float64, n_evals=1,
                            chunk_size=1)
        assert r.steps.tolist() == [0, 1]
        for k in ("W", "b", "v"):  # float64 runs keep float64 snapshots: parity at round-off
            assert r.snapshots[k].dtype == np.float64, (backend, k)
        np.testing.assert_allclose(r.snapshots["W"][1, 0], W_exp.numpy(), rtol=0, atol=1e-13)
        np.testing.assert_allclose(r.snapshots["b"][1, 0], b_exp.numpy(), rtol=0, atol=1e-13)
        np.testing.assert_allclose(r.snapshots["v"][1, 0], v_exp.numpy(), rtol=0, atol=1e-13)


def test_mode_table_same_per_unit_update():
    """After the lr scalings, mf/lazy/conv all update w_k by −2·lr·(s−y)·σ'(h_k)·x/√D."""
    lr = 0.05
    x = torch.randn(1, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.tensor([1.0], dtype=torch.float64)
    for mode in ("mf", "lazy", "conv"):
        m = TwoLayer(D, K, mode=mode, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        m.loss(x, y).backward()
        with torch.no_grad():
            h = m.preactivation(x)[0]
            s = m(x)[0]
            expected = -2 * lr * (s - y[0]) * math.sqrt(2 / math.pi) * torch.exp(-h ** 2 / 2)[:, None] * x / math.sqrt(D)
        update = -committee_lrs(mode, lr, K, D)["w"] * m.w.grad
        torch.testing.assert_close(update, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("bs,mode,l1,l2", [(1, "mf", 0.0, 0.0), (1, "2layer", 0.0, 0.01),
                                           (3, "mf", 0.02, 0.0), (4, "lazy", 0.0, 0.0)])
def test_fast_kernels_match_autograd_over_many_steps(bs, mode, l1, l2):
    ref = _run("autograd", mode=mode, bs=bs, l1=l1, l2=l2, T=3.0)
    for backend in ("numpy", "torch"):
        r = _run(backend, mode=mode, bs=bs, l1=l1, l2=l2, T=3.0)
        for k in ("W", "b", "v"):
            np.testing.assert_allclose(r.snapshots[k], ref.snapshots[k], atol=1e-10)  # float64 snapshots
        np.testing.assert_allclose(r.mse, ref.mse, rtol=1e-10)
        np.testing.assert_array_equal(r.acc, ref.acc)
        for k in ref.grad_norm:
            np.testing.assert_allclose(r.grad_norm[k], ref.grad_norm[k],
                                       rtol=1e-9, equal_nan=True)


def test_chunk_size_does_not_change_the_maths():
    a, b = _run("numpy", chunk=7, T=2.0), _run("numpy", chunk=1000, T=2.0)
    np.testing.assert_array_equal(a.snapshots["W"], b.snapshots["W"])
    np.testing.assert_allclose(a.grad_norm["w"], b.grad_norm["w"], rtol=1e-12, equal_nan=True)


def test_convention_time_units_steps_vs_samples():
    t, steps = eval_schedule(100.0, 40, n_evals=200)
    np.testing.assert_allclose(t[1:], np.logspace(-1, 2, 200))
    assert t[0] == 0 and steps[0] == 0 and steps[-1] == 4000
    assert np.all(steps >= t * 40 - 1e-9) and np.all(steps - 1 < t * 40)
    t2, steps2 = eval_schedule(100.0, 40, bs=4, time_unit="samples", n_evals=200)
    np.testing.assert_array_equal(t2, t)
    assert steps2[-1] == 1000  # t = samples/D: bs times fewer steps
    r = _run("numpy", bs=2, time_unit="samples", T=2.0)
    np.testing.assert_allclose(r.t_samples, r.steps * 2 / D)
    np.testing.assert_allclose(r.t_steps, r.steps / D)
    assert r.t_samples[-1] == pytest.approx(2.0, abs=2 / D)
    with pytest.raises(ValueError, match="time_unit"):
        eval_schedule(10.0, 4, time_unit="epochs")


def test_learns_the_stand_in_task():
    r = _run("numpy", T=100.0, n_evals=10, lr=0.5)
    assert r.acc[0].mean() < 0.56 and r.acc[-1].min() > 0.62 and np.all(r.mse[-1] < r.mse[0] - 0.05)
    assert np.isnan(r.grad_norm["w"][0]).all() and np.all(r.grad_norm["w"][1:] > 0)


def test_train_modules_followup_targets():
    from featlab.models.simplenet import SimpleNet

    g = torch.Generator().manual_seed(0)
    net = SimpleNet(D, 2, bias=True, init_scale=1.0, generator=g, dtype=torch.float64)
    base = _pool_sampler(3)

    def smp(n, gen):
        x, y = base(n, gen)
        return x, (y < 0).double()  # follow-up: y = 1 for the long-range (smoothed) class

    test = [smp(512, None)]
    r = train_modules([net], [smp], [torch.Generator()], test, T=20.0, lr=0.5, bs=8, n_evals=4)
    assert r.snapshots["w"].shape == (5, 1, 2, D) and r.backend == "autograd"
    assert r.mse[-1, 0] < r.mse[0, 0]


@pytest.mark.cuda
def test_cuda_torch_kernel_matches_cpu_numpy():
    dev = torch.device("cuda")
    W, b, v = _init(2)
    samplers = [_pool_sampler(10 + s) for s in range(2)]
    test = [_pool_sampler(99, 512)(512, None) for _ in range(2)]

    def on(dev_smp):
        return lambda n, g: tuple(a.to(dev) for a in dev_smp(n, g))

    ref = _run("numpy", T=2.0)
    r = train_committee(W.to(dev), b.to(dev), v.to(dev), [on(s) for s in samplers],
                        [torch.Generator(device=dev) for _ in range(2)], [(x.to(dev), y.to(dev)) for x, y in test],
                        T=2.0, lr=0.05, backend="auto", chunk_size=256, dtype=torch.float64, n_evals=5)
    assert r.backend == "torch"
    np.testing.assert_allclose(r.snapshots["W"], ref.snapshots["W"], atol=2e-6)


def test_prefetch_thread_gives_the_same_numbers():
    a = _run("numpy", chunk=16, T=3.0)
    W, b, v = _init(2)
    samplers = [_pool_sampler(10 + s) for s in range(2)]
    test = [_pool_sampler(99, 512)(512, None) for _ in range(2)]
    r = train_committee(W, b, v, samplers, [torch.Generator() for _ in range(2)], test, T=3.0, lr=0.05,
                        backend="numpy", chunk_size=16, dtype=torch.float64, n_evals=5, prefetch=False)
    np.testing.assert_array_equal(a.snapshots["W"], r.snapshots["W"])


def test_prefetch_draws_only_the_chunks_it_uses():
    W, b, v = _init(2)
    calls = []
    base = [_pool_sampler(10 + s) for s in range(2)]

    def counted(s):
        def smp(n, g):
            calls.append(n)
            return base[s](n, g)
        return smp

    test = [_pool_sampler(99, 512)(512, None) for _ in range(2)]
    r = train_committee(W, b, v, [counted(0), counted(1)], [torch.Generator() for _ in range(2)], test,
                        T=3.0, lr=0.05, backend="numpy", chunk_size=10, dtype=torch.float64, n_evals=5)
    total = int(r.steps[-1])  # 48 steps: 5 chunks of 10, no sixth prefetched
    assert calls == [10] * (2 * math.ceil(total / 10))


def test_bad_arguments_name_the_argument():
    from featlab.train.online import resolve_backend

    W, b, v = _init(2)
    smp = [_pool_sampler(1), _pool_sampler(2)]
    test = [smp[0](8, None)] * 2
    with pytest.raises(ValueError, match="^bs"):
        train_committee(W, b, v, smp, [None, None], test, T=1.0, bs=0)
    with pytest.raises(ValueError, match="samplers"):
        train_committee(W, b, v, smp[:1], [None], test[:1], T=1.0)
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("jax", "cpu")
    with pytest.raises(ValueError, match="n_evals"):
        eval_schedule(10.0, 4, n_evals=0)
    assert resolve_backend("auto", "cpu").value == "numpy"


def test_convention_snapshots_keep_the_training_dtype():
    """float32 runs snapshot float32, float64 runs float64 (they used to be cast to float32)."""
    W, b, v = _init(1, "mf")
    x, y = _pool_sampler(10)(4, None)
    for dtype, npdt in ((torch.float32, np.float32), (torch.float64, np.float64)):
        for backend in ("numpy", "torch", "autograd"):
            r = train_committee(W.to(dtype), b.to(dtype), v.to(dtype), [_pool_sampler(10)], [torch.Generator()],
                                [(x.to(dtype), y.to(dtype))], T=2.0 / D, mode="mf", lr=0.05, backend=backend,
                                dtype=dtype, n_evals=2)
            assert {k: a.dtype for k, a in r.snapshots.items()} == {"W": npdt, "b": npdt, "v": npdt}, backend


def test_runs_sharing_a_test_set_are_evaluated_as_with_separate_copies():
    """The seeds of one task share one stacked test set (memory); the evaluation must equal the
    one with a private copy per run, for every backend."""
    from featlab.train.online import _unique_test_sets

    W, b, v = _init(3, "mf")
    x, y = _pool_sampler(99, 300)(300, None)
    shared = [(x.reshape(300, -1), y), (x.reshape(300, -1), y), (x.clone(), y)]
    uniq, index = _unique_test_sets(shared)
    assert len(uniq) == 2 and index.tolist() == [0, 0, 1]
    private = [(x.clone(), y.clone()) for _ in range(3)]
    for backend in ("numpy", "torch", "autograd"):
        kw = dict(T=2.0, mode="mf", lr=0.05, backend=backend, dtype=torch.float64, n_evals=3)
        a = train_committee(W, b, v, [_pool_sampler(10 + s) for s in range(3)], [torch.Generator() for _ in range(3)],
                            shared, **kw)
        c = train_committee(W, b, v, [_pool_sampler(10 + s) for s in range(3)], [torch.Generator() for _ in range(3)],
                            private, **kw)
        np.testing.assert_allclose(a.mse, c.mse, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(a.acc, c.acc)
