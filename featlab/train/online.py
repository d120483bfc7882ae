"""Online SGD for the emergence experiments (spec emergence §4.1 "Optimiser", "Time", "Logging").

Every step draws a *fresh* mini-batch of ``bs`` samples (``bs = 1``: true online SGD). S
independent runs (NLGP and clone, seeds, gains...) train in the same loop as batched weights
W: (S, K, D), each run with its own sampler and generator. Evaluations happen at t = 0 and at
``n_evals`` log-spaced times logspace(−1, log₁₀T, n_evals) on a fixed test set per run; each
records the test MSE, the accuracy, the mean gradient norm per parameter since the previous
evaluation, and a snapshot of every weight.

Three implementations of the committee step (:class:`SGDBackend`) compute the same update;
the fast ones are tested against the autograd one in float64.
"""
from __future__ import annotations

import contextlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..models.committee import ACTIVATIONS, committee_lrs
from ..utils.progress import Progress
from ._online_kernels import _ArrayKernel, _AutogradKernel, _to_np

__all__ = ["SGDBackend", "resolve_backend", "eval_schedule", "OnlineResult", "train_committee",
           "train_modules", "Sampler"]

Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
"""``sampler(n, generator) -> (x (n, D), y (n,))``: fresh inputs and targets, on the generator's device."""



class SGDBackend(str, Enum):
    """How a committee SGD step is computed. All three give the same update (tested in float64).

    AUTOGRAD
        One :class:`~featlab.models.committee.TwoLayer` per run, ``loss.backward()`` and a
        manual SGD step. The obviously-correct oracle; ~20× slower per step than NUMPY
        because of autograd and module overhead; runs are looped, not batched.
    TORCH
        Hand-written closed-form gradients on torch tensors, runs batched as (S, K, D) with
        ``matmul``, preallocated buffers. Works on any device; the path for CUDA. On CPU the
        per-op dispatch (~5 µs) dominates at bs = 1. (On CPU every backend trains with one
        torch intra-op thread, restored afterwards.)
    NUMPY
        The same kernel on numpy arrays (CPU only): ~1 µs per op, the fastest CPU path at
        bs = 1 (~20 µs per step for S = 2, K = 8, D = 400). Data drawn by torch samplers
        are converted chunk by chunk.
    """

    AUTOGRAD = "autograd"
    TORCH = "torch"
    NUMPY = "numpy"


def resolve_backend(name: str | SGDBackend, device: torch.device | str) -> SGDBackend:
    """``"auto"``: NUMPY on CPU, TORCH elsewhere; NUMPY on a non-CPU device is refused."""
    dev = torch.device(device)
    if name == "auto":
        return SGDBackend.NUMPY if dev.type == "cpu" else SGDBackend.TORCH
    try:
        b = SGDBackend(name)
    except ValueError:
        raise ValueError(f"backend: allowed auto, {', '.join(m.value for m in SGDBackend)} "
                         f"(got {name!r})") from None
    if b is SGDBackend.NUMPY and dev.type != "cpu":
        raise ValueError(f"backend: numpy runs on cpu only (device {dev})")
    return b


def eval_schedule(T: float, D: int, *, bs: int = 1, time_unit: str = "steps", n_evals: int = 200,
                  t_min: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation times and the step counts at which they are reached.

    Returns
    -------
    t : (n_evals + 1,) float
        [0, logspace(log₁₀ t_min, log₁₀ T, n_evals)], the reference's nominal times
        ([0, T] when ``n_evals == 1``).
    steps : (n_evals + 1,) int
        The first step count whose clock reaches t: ⌈t·D⌉ (``time_unit="steps"``) or
        ⌈t·D/bs⌉ (``"samples"``). Duplicates are possible at small t (evaluated twice).

    Convention:
        ``"steps"`` (the reference): t = steps/D whatever ``bs`` is. ``"samples"``:
        t = samples/D = steps·bs/D. Total steps = steps[-1].
    """
    if T <= t_min:
        raise ValueError(f"T: must be > t_min = {t_min} (got {T})")
    if time_unit not in ("steps", "samples"):
        raise ValueError(f"time_unit: allowed steps, samples (got {time_unit!r})")
    if n_evals < 1:
        raise ValueError(f"n_evals: must be >= 1 (got {n_evals})")
    grid = np.logspace(math.log10(t_min), math.log10(T), n_evals) if n_evals > 1 else np.array([float(T)])
    t = np.concatenate([[0.0], grid])
    per = D / (bs if time_unit == "samples" else 1)
    steps = np.ceil(t * per - 1e-9).astype(np.int64)
    return t, steps


@dataclass
class OnlineResult:
    """Everything recorded at the evaluations of an online run (E evaluations, S runs).

    Convention:
        ``t`` is the nominal clock of ``time_unit``; ``t_steps`` = steps/D and
        ``t_samples`` = steps·bs/D are both recorded. ``acc`` is the test accuracy in [0, 1],
        ``mse`` the mean (out − y)². ``grad_norm[name]``: (E, S) mean Frobenius norm of the
        loss gradient of parameter ``name`` over the steps since the previous evaluation
        (NaN at t = 0). Snapshots are numpy arrays in the training dtype (float64 runs keep
        float64 weights; a test pins it).
    """

    t: np.ndarray            # (E,)
    steps: np.ndarray        # (E,)
    t_steps: np.ndarray      # (E,)
    t_samples: np.ndarray    # (E,)
    mse: np.ndarray          # (E, S)
    acc: np.ndarray          # (E, S)
    grad_norm: dict[str, np.ndarray]
    snapshots: dict[str, np.ndarray]   # name -> (E, S, ...)
    wall_s: float = 0.0
    backend: str = ""

    @property
    def steps_per_s(self) -> float:
        return float(self.steps[-1]) / self.wall_s if self.wall_s > 0 else float("nan")


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------
def _accuracy(out: np.ndarray, y: np.ndarray, targets: str) -> np.ndarray:
    """Original (y = ±1): class 0 predicted iff s ≥ 0. Follow-up (y ∈ {0, 1}): ŷ > 0.5."""
    if targets == "original":
        return ((out >= 0) == (y > 0)).mean(-1)
    return ((out > 0.5) == (y > 0.5)).mean(-1)


@contextlib.contextmanager
def _one_torch_thread(device):
    """On CPU, run torch single-threaded during training: tiny per-step ops never gain from
    intra-op threads (on a busy machine OpenMP barriers made a (2, 8, 400) bmm ~200x slower),
    and with the prefetch thread the sampler and the SGD loop then use one core each."""
    if torch.device(device).type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@contextlib.contextmanager
def _shutdown(pool):
    try:
        yield
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _unique_test_sets(test) -> tuple[list, np.ndarray]:
    """(distinct test inputs, (S,) index of each run's): runs whose test inputs are views of the
    same memory with the same shape (the seeds of one task in ``train_many``) share one stacked
    copy, so S runs on T tasks hold T test sets, not S (68 runs x 20k x 400 floats = 2.2 GB)."""
    keys: dict = {}
    uniq, index = [], []
    for s, (x, _) in enumerate(test):
        key = ((x.data_ptr(), tuple(x.shape), tuple(x.stride()), x.dtype, str(x.device))
               if isinstance(x, torch.Tensor) else ("run", s))
        if key not in keys:
            keys[key] = len(uniq)
            uniq.append(torch.as_tensor(x))
        index.append(keys[key])
    return uniq, np.array(index)


def _drive(kernel, samplers, generators, test, *, D, T, bs, time_unit, n_evals, chunk_size, t_min, prefetch,
           targets, to_array, bs1_buffered, progress, on_eval, desc) -> OnlineResult:
    S = len(samplers)
    t, steps = eval_schedule(T, D, bs=bs, time_unit=time_unit, n_evals=n_evals, t_min=t_min)
    uniq, test_index = _unique_test_sets(test)
    x_test = to_array(torch.stack([x.reshape(x.shape[0], -1) for x in uniq]))      # (U, N, D), U <= S
    y_test = np.stack([_to_np(y).astype(np.float64) for _, y in test])              # (S, N)
    rows: dict[str, list] = {"mse": [], "acc": []}
    grads: dict[str, list] = {}
    snaps: dict[str, list] = {}
    n_chunk = max(1, chunk_size // bs)
    X = Y = dh = xn = None
    j = n_have = 0
    done = 0
    t0 = time.perf_counter()

    # Two stacking buffers, alternated: chunk k+1 is written while SGD reads chunk k, and chunk
    # k+2 only after refill() has moved SGD to chunk k+1. Reusing them saves the page faults of
    # a fresh (n, S, bs, D) array (> glibc's mmap threshold): ~1.3 µs/step at S=2, D=400.
    bufs: list = [None, None]
    n_drawn = 0

    def draw():
        """The next chunk of every run: (X, Y, ‖x‖, δ buffer); runs in the prefetch thread."""
        nonlocal n_drawn
        xs, ys = zip(*(smp(n_chunk * bs, g) for smp, g in zip(samplers, generators)))
        parts = [x.reshape(n_chunk, bs, -1) for x in xs]
        k, n_drawn = n_drawn % 2, n_drawn + 1
        shape, like = (n_chunk, S) + tuple(parts[0].shape[1:]), parts[0]
        if any(p.dtype != like.dtype or p.device != like.device for p in parts):
            Xt = torch.stack(parts, dim=1)                                         # (n, S, bs, D)
        else:
            if bufs[k] is None or bufs[k].shape != shape or bufs[k].dtype != like.dtype \
                    or bufs[k].device != like.device:
                bufs[k] = torch.empty(shape, dtype=like.dtype, device=like.device)
            Xt = torch.stack(parts, dim=1, out=bufs[k])                            # (n, S, bs, D)
        Yt = torch.stack([y.reshape(n_chunk, bs) for y in ys], dim=1)              # (n, S, bs)
        if not bs1_buffered:
            return to_array(Xt), to_array(Yt), None, None
        X_, Y_ = to_array(Xt[:, :, 0]), to_array(Yt[:, :, 0])                      # (n, S, D), (n, S)
        dh_ = (np.zeros((n_chunk, S, kernel.K), X_.dtype) if isinstance(X_, np.ndarray)
               else torch.zeros(n_chunk, S, kernel.K, dtype=X_.dtype, device=X_.device))  # (n, S, K)
        xn_ = (np.sqrt(np.einsum("nsd,nsd->ns", X_, X_)) if isinstance(X_, np.ndarray)
               else (X_ * X_).sum(-1) ** 0.5)                                       # ‖x‖: (n, S)
        return X_, Y_, xn_, dh_

    # Sampling (FFT, GIL released) overlaps the Python-bound SGD loop in one helper thread.
    # The generators are only ever used by that thread, in chunk order: same numbers as serial.
    total = int(steps[-1])
    pool = ThreadPoolExecutor(1) if prefetch and total > n_chunk else None
    pending = pool.submit(draw) if pool else None

    def refill():
        nonlocal X, Y, dh, xn, j, n_have, pending
        if pending is not None:
            X, Y, xn, dh = pending.result()
            # no chunk is drawn that the run will not use (same generator stream either way)
            pending = pool.submit(draw) if done + n_chunk < total else None
        else:
            X, Y, xn, dh = draw()
        j, n_have = 0, n_chunk

    def account(j0, j1):
        if bs1_buffered and X is not None:
            kernel.account1(dh[j0:j1], xn[j0:j1])

    bar = progress or Progress(int(steps[-1]), desc=desc, unit="step", log_every=0.1)
    # a diverging run is caught at the next evaluation (non-finite MSE); no warning floods
    with bar, np.errstate(over="ignore", invalid="ignore"), _shutdown(pool):
        j_acc = 0
        for e, target in enumerate(steps):
            while done < target:
                if j >= n_have:
                    account(j_acc, j)
                    refill()
                    j_acc = 0
                n = int(min(target - done, n_have - j))
                if bs1_buffered:
                    step1 = kernel.step1
                    for i in range(j, j + n):
                        step1(X[i], Y[i], dh[i])
                else:
                    for i in range(j, j + n):
                        kernel.stepB(X[i], Y[i])
                j += n
                done += n
                bar.update(n)
            account(j_acc, j)
            j_acc = j
            out = kernel.outputs(x_test, test_index)                               # (S, N)
            mse = ((out - y_test) ** 2).mean(-1)
            rows["mse"].append(mse)
            rows["acc"].append(_accuracy(out, y_test, targets))
            for k, v in kernel.pop_grad_norms().items():
                grads.setdefault(k, []).append(v)
            for k, v in kernel.snapshot().items():
                snaps.setdefault(k, []).append(v)
            if on_eval is not None:
                on_eval(e, float(t[e]), int(target), mse, rows["acc"][-1], {k: v[-1] for k, v in grads.items()},
                        {k: v[-1] for k, v in snaps.items()})
    wall = time.perf_counter() - t0
    return OnlineResult(t=t, steps=steps, t_steps=steps / D, t_samples=steps * bs / D,
                        mse=np.stack(rows["mse"]), acc=np.stack(rows["acc"]),
                        grad_norm={k: np.stack(v) for k, v in grads.items()},
                        snapshots={k: np.stack(v) for k, v in snaps.items()}, wall_s=wall)


def train_committee(W: torch.Tensor, b: torch.Tensor, v: torch.Tensor, samplers: Sequence[Sampler],
                    generators: Sequence[torch.Generator], test: Sequence[tuple[torch.Tensor, torch.Tensor]],
                    *, T: float, mode: str = "mf", lr: float = 0.05, bs: int = 1,
                    time_unit: str = "steps", n_evals: int = 200, train_b: bool = True,
                    activation: str = "erf", l1: float = 0.0,
                    l2: float = 0.0, backend: str | SGDBackend = "auto", chunk_size: int = 2 ** 14,
                    dtype: torch.dtype = torch.float32, progress: Progress | None = None,
                    on_eval: Callable | None = None, desc: str = "online SGD",
                    t_min: float = 0.1, prefetch: bool = True) -> OnlineResult:
    """Online SGD of S committees ``TwoLayer`` (spec §4.1) with fresh samples every step.

    Parameters
    ----------
    W, b, v : (S, K, D), (S, K), (S, K) tensors
        Initial weights of the S runs (copied; not modified).
    samplers, generators
        One sampler ``(n, generator) -> (x (n, D) or (n, L, L), y (n,))`` and one generator
        per run; targets y = ±1 (y = +1 for class 0, the original convention).
    test
        One fixed test set ``(x (N, D), y (N,))`` per run, drawn once by the caller.
    T : float
        Final time in units of ``time_unit`` (t = steps/D or samples/D).
    mode, lr, activation
        As :class:`~featlab.models.committee.TwoLayer`; learning rates from
        :func:`~featlab.models.committee.committee_lrs`.
    bs : int
        Mini-batch size (1 = true online SGD); the gradient is the batch mean.
    train_b : bool
        Whether b is trained (lr_w/D). v is trained (lr/D) iff ``mode == "2layer"``.
    l1, l2 : float
        After each step θ ← θ − (l2/D)·θ, else θ ← θ − (l1/D)·sign θ (l2 takes precedence),
        for every trained parameter.
    backend : "auto" or :class:`SGDBackend`
    chunk_size : int
        Samples drawn per sampler call (memory knob; never changes the maths: the sample
        stream of a run is the same for any chunk size only if its sampler is chunk-invariant).
    dtype : torch.dtype
        Arithmetic dtype of the fast kernels and of the data.
    prefetch : bool
        Draw the next chunk in a helper thread while SGD runs (never changes the numbers; the
        samplers must not share a generator with other threads).
    progress, on_eval
        Optional :class:`~featlab.utils.progress.Progress` bar (total = steps); callback
        ``on_eval(e, t, step, mse (S,), acc (S,), grad_norms {name: (S,)}, snapshot {name: (S, ...)})``.

    Returns
    -------
    OnlineResult
        Snapshots ``W`` (E, S, K, D), ``b`` (E, S, K), ``v`` (E, S, K).

    Convention:
        h = W x/√D + b, s = Σ_k v_k σ(h_k)/norm, loss (s − y)² averaged over the batch;
        2D inputs flattened row-major. Time bookkeeping as :func:`eval_schedule`.
    """
    S, K, D = W.shape
    if bs < 1:
        raise ValueError(f"bs: must be >= 1 (got {bs})")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: allowed {', '.join(ACTIVATIONS)} (got {activation!r})")
    if len(samplers) != S or len(generators) != S or len(test) != S:
        raise ValueError(f"samplers, generators, test: need one per run (S = {S})")
    train_v = mode == "2layer"
    be = resolve_backend(backend, W.device)
    common = dict(D=D, T=T, bs=bs, time_unit=time_unit, n_evals=n_evals, t_min=t_min, chunk_size=chunk_size,
                  prefetch=prefetch,
                  targets="original", progress=progress, on_eval=on_eval, desc=desc)
    if be is SGDBackend.AUTOGRAD:
        from ..models.committee import TwoLayer

        models, lrs = [], []
        for s in range(S):
            m = TwoLayer(D, K, mode=mode, bias="train_pm1" if train_b else "fixed", activation=activation,
                         dtype=dtype)
            m = m.to(W.device)
            with torch.no_grad():
                m.w.copy_(W[s])
                m.b.copy_(b[s])
                m.v.copy_(v[s])
            lr_map = committee_lrs(mode, lr, K, D)
            models.append(m)
            lrs.append({"w": lr_map["w"], "b": lr_map["b"], "v": lr_map["v"] if train_v else 0.0})
        kernel = _AutogradKernel(models, lrs, l1=l1, l2=l2, D=D, rename={"w": "W"})
        with _one_torch_thread(W.device):
            res = _drive(kernel, samplers, generators, test, to_array=lambda a: a.to(dtype),
                         bs1_buffered=False, **common)
    else:
        if be is SGDBackend.NUMPY:
            npdt = {torch.float32: np.float32, torch.float64: np.float64}[dtype]

            def to_array(a):
                return a.detach().cpu().numpy().astype(npdt, copy=False)

            xp = np
        else:
            def to_array(a):
                return a.to(dtype)

            xp = torch
        kernel = _ArrayKernel(to_array(W.clone()).copy() if xp is np else W.clone().to(dtype),
                              to_array(b.clone()).copy() if xp is np else b.clone().to(dtype),
                              to_array(v.clone()).copy() if xp is np else v.clone().to(dtype),
                              mode=mode, lr=lr, activation=activation, train_b=train_b,
                              train_v=train_v, l1=l1, l2=l2, xp=xp)
        with torch.no_grad(), _one_torch_thread(W.device):
            res = _drive(kernel, samplers, generators, test, to_array=to_array, bs1_buffered=bs == 1,
                         **common)
    res.backend = be.value
    return res


def train_modules(models: Sequence[nn.Module], samplers: Sequence[Sampler],
                  generators: Sequence[torch.Generator], test: Sequence[tuple[torch.Tensor, torch.Tensor]],
                  *, T: float, lr: float | Sequence[dict[str, float]], bs: int = 1,
                  time_unit: str = "steps", n_evals: int = 200, targets: str = "followup",
                  l1: float = 0.0, l2: float = 0.0, chunk_size: int = 2 ** 14,
                  progress: Progress | None = None, on_eval: Callable | None = None,
                  desc: str = "online SGD") -> OnlineResult:
    """Online (mini-batch) SGD of any modules ``model(x) -> (n,)`` by autograd, fresh samples.

    For the follow-up networks (:class:`~featlab.models.simplenet.SimpleNet`, ``MLP``):
    loss (ŷ − y)² (batch mean, no ½), y ∈ {0, 1} with ``targets="followup"`` (accuracy
    1[ŷ > 0.5]); ``targets="original"`` uses y = ±1 and 1[s ≥ 0] ↔ class 0.

    ``lr`` is one float for every parameter or, per run, a ``{param name: lr}`` map. The
    models are trained in place; snapshots are keyed by parameter/buffer names.

    Convention:
        D = the models' input size (first test set's feature count); t as :func:`eval_schedule`.
    """
    if targets not in ("original", "followup"):
        raise ValueError(f"targets: allowed original, followup (got {targets!r})")
    D = test[0][0].reshape(test[0][0].shape[0], -1).shape[1]
    lrs = ([{n: float(lr) for n, _ in m.named_parameters()} for m in models]
           if isinstance(lr, (int, float)) else list(lr))
    kernel = _AutogradKernel(models, lrs, l1=l1, l2=l2, D=D)
    dtype = next(models[0].parameters()).dtype
    with _one_torch_thread(next(models[0].parameters()).device):
        res = _drive(kernel, samplers, generators, test, D=D, T=T, bs=bs, time_unit=time_unit,
                     n_evals=n_evals, chunk_size=chunk_size, targets=targets,
                     to_array=lambda a: a.to(dtype), bs1_buffered=False, progress=progress, t_min=0.1,
                     prefetch=True, on_eval=on_eval, desc=desc)
    res.backend = SGDBackend.AUTOGRAD.value
    return res
