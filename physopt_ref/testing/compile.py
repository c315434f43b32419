"""Compilation is part of the contract: a step under ``jax.jit``, ``jax.lax.scan`` and
``torch.compile`` equals the eager run.

- :func:`check_jax_jit`: ``jax.jit(opt.step)`` equals eager NumPy step by step, in float64 (JAX's
  x64 mode on) or float32 (x64 off, where random draws use uint32 words);
- :func:`check_jax_scan`: 200 steps in one ``jax.lax.scan`` equal 200 eager NumPy steps;
- :func:`check_torch_compile`: ``torch.compile(opt.step, fullgraph=True)`` (inductor) compiles
  once for 20 steps and equals the eager torch run. ``fullgraph=True`` makes a host
  synchronisation inside the step (``.item()``, ``bool()`` of a tensor) an error, as ``jax.jit``
  does for tracers: together they are the host-sync check.

JAX's x64 mode is switched only inside the check (``jax.enable_x64``) and restored. Without
JAX or torch the checks are skipped, with the reason.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any, TypedDict

import numpy as np

from physopt_ref.core.tree import tree_flatten
from physopt_ref.testing._compare import close_condition, x64_scope
from physopt_ref.testing._result import CheckResult, Condition, combine
from physopt_ref.testing.contract import NP, count_of
from physopt_ref.testing.subject import Subject, as_subject
from physopt_ref.testing.workloads import (
    CONTRACT_WORKLOAD,
    QuadraticWorkload,
    leaf_paths,
    on_backend,
    trajectory,
)

__all__ = [
    "TORCH_COMPILE_WARNINGS",
    "check_jax_jit",
    "check_jax_scan",
    "check_torch_compile",
    "compile_tolerances",
]

#: Warnings torch 2.13 emits while compiling a step, which say nothing about the step:
#: array-api-compat's wrappers use functools.lru_cache, which Dynamo traces through; inductor
#: uses a deprecated torch.jit API itself.
TORCH_COMPILE_WARNINGS = (
    "Dynamo detected a call to a `functools.lru_cache`",
    "`torch.jit.script_method` is deprecated",
)


class _Tolerances(TypedDict):
    """``rtol`` and ``atol`` for :func:`~physopt_ref.testing._compare.close_condition`."""

    rtol: float
    atol: float


def compile_tolerances(dtype: Any, steps: int) -> _Tolerances:
    """Rounding-level agreement, for a problem of scale 1; float32 errors grow over 200 steps."""
    if np.dtype(dtype) == np.float64:
        return {"rtol": 1e-9, "atol": 1e-12}
    return {"rtol": 2e-3, "atol": 2e-5 if steps <= 20 else 5e-4}


def _missing(prop: str, module: str) -> CheckResult | None:
    if importlib.util.find_spec(module) is None:
        return CheckResult.skipped(prop, f"{module} is not installed")
    return None


def _example(subject: Subject, workload: QuadraticWorkload, **extra: Any) -> dict[str, Any]:
    return {"optimizer": subject.name, **extra, "workload": workload.describe()}


def _count_condition(state: Any, steps: int, batch_shape: tuple[int, ...],
                     int32: Any) -> list[Condition]:
    """The count counts the steps (as ``int32``), for a state with a top-level ``count``."""
    count = count_of(state)
    if count is None:
        return []
    counts = np.asarray(count)
    dtype_ok = count.dtype == int32
    ok = dtype_ok and np.array_equal(counts, np.full(batch_shape, steps))
    return [Condition("count violations", int(not ok), 0, "<=",
                      f"count {counts.tolist()} after {steps} steps (int32: {dtype_ok})")]


def check_jax_jit(
    opt: Any,
    dtype: Any = np.float64,
    x64: bool = True,
    *,
    steps: int = 12,
    batch_shape: tuple[int, ...] = (2,),
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
) -> CheckResult:
    """``jax.jit(opt.step)`` equals eager NumPy in ``dtype`` after every step."""
    prop = "jax.jit = eager"
    if (skip := _missing(prop, "jax")) is not None:
        return skip
    import jax
    import jax.numpy as jnp

    subject = as_subject(opt)
    bn = len(batch_shape)
    x0 = workload.start(batch_shape)
    names = leaf_paths(x0)
    tol = compile_tolerances(dtype, steps)
    example = _example(subject, workload, dtype=np.dtype(dtype).name, x64=x64, steps=steps)
    reference = trajectory(subject.build(), NP, x0, steps, batch_ndim=bn, dtype=dtype,
                           workload=workload)
    problems = []
    with x64_scope(jnp, x64):
        opt = subject.build()
        params = on_backend(jnp, x0, dtype)
        state = opt.init(params, batch_ndim=bn)
        step = jax.jit(opt.step)
        got = []
        for t in range(steps):
            loss, grads = workload.loss_and_grads(jnp, params, bn)
            params, state = step(params, grads, state, loss=loss)
            leaves = tree_flatten(params)[0]
            problems += [f"step {t + 1}, leaf {n}: dtype {v.dtype}"
                         for n, v in zip(names, leaves, strict=True) if v.dtype != jnp.dtype(dtype)]
            got.append([np.asarray(v) for v in leaves])
        conditions = [
            close_condition(((f"jit step {t + 1}, leaf {n}", g, w) for t, (gs, ws)
                             in enumerate(zip(got, reference, strict=True))
                             for n, g, w in zip(names, gs, ws, strict=True)), **tol),
            *_count_condition(state, steps, batch_shape, jnp.int32),
        ]
    if problems:
        conditions.insert(0, Condition("dtype violations", len(problems), 0, "<=", problems[0]))
    return combine(prop, conditions, example)


def check_jax_scan(
    opt: Any,
    dtype: Any = np.float64,
    x64: bool = True,
    *,
    steps: int = 200,
    batch_shape: tuple[int, ...] = (2,),
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
) -> CheckResult:
    """``steps`` steps in one ``jax.lax.scan`` equal as many eager NumPy steps.

    A :class:`~physopt_ref.testing.Subject` runs with its ``long_run`` overrides (settings whose
    trajectory stays reproducible to rounding).
    """
    prop = "jax.lax.scan = eager"
    if (skip := _missing(prop, "jax")) is not None:
        return skip
    import jax
    import jax.numpy as jnp

    subject = as_subject(opt)
    overrides = dict(subject.long_run)
    bn = len(batch_shape)
    x0 = workload.start(batch_shape)
    names = leaf_paths(x0)
    example = _example(subject, workload, dtype=np.dtype(dtype).name, x64=x64, steps=steps,
                       overrides=overrides)
    reference = trajectory(subject.build(**overrides), NP, x0, steps, batch_ndim=bn,
                           dtype=dtype, workload=workload)[-1]
    with x64_scope(jnp, x64):
        opt = subject.build(**overrides)
        params = on_backend(jnp, x0, dtype)
        state = opt.init(params, batch_ndim=bn)

        def body(carry: Any, _: Any) -> tuple[Any, None]:
            p, s = carry
            loss, grads = workload.loss_and_grads(jnp, p, bn)
            return opt.step(p, grads, s, loss=loss), None

        (params, state), _ = jax.lax.scan(body, (params, state), None, length=steps)
    got = [np.asarray(v) for v in tree_flatten(params)[0]]
    return combine(prop, [
        close_condition(((f"leaf {n} after {steps} steps", g, w)
                         for n, g, w in zip(names, got, reference, strict=True)),
                        **compile_tolerances(dtype, steps)),
        *_count_condition(state, steps, batch_shape, jnp.int32),
    ], example)


def check_torch_compile(
    opt: Any,
    *,
    steps: int = 20,
    batch_shape: tuple[int, ...] = (2,),
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    rtol: float = 1e-4,
    atol: float = 1e-6,
) -> CheckResult:
    """``torch.compile(opt.step, fullgraph=True)`` compiles once in ``steps`` float32 steps and
    equals the eager torch run."""
    prop = "torch.compile = eager, one compilation"
    if (skip := _missing(prop, "torch")) is not None:
        return skip
    import torch
    from torch._dynamo.testing import CompileCounterWithBackend

    subject = as_subject(opt)
    bn = len(batch_shape)
    x0 = workload.start(batch_shape)
    names = leaf_paths(x0)
    example = _example(subject, workload, dtype="float32", steps=steps)
    opt = subject.build()

    def run(fn: Any) -> tuple[list[Any], Any]:
        params = on_backend(torch, x0, torch.float32)
        state = opt.init(params, batch_ndim=bn)
        for _ in range(steps):
            loss, grads = workload.loss_and_grads(torch, params, bn)
            params, state = fn(params, grads, state, loss=loss)
        return tree_flatten(params)[0], state

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    with warnings.catch_warnings():
        for message in TORCH_COMPILE_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        compiled, state = run(torch.compile(opt.step, backend=counter, fullgraph=True))
    frames = counter.frame_count
    eager, _ = run(opt.step)
    dtype_bad = [n for n, v in zip(names, compiled, strict=True) if v.dtype != torch.float32]
    conditions = [
        Condition("|compilations - 1|", abs(frames - 1), 0, "<=",
                  f"{frames} compilations in {steps} steps"),
        close_condition(((f"leaf {n}", c.numpy(), e.numpy())
                         for n, c, e in zip(names, compiled, eager, strict=True)), rtol, atol),
        *_count_condition(state, steps, batch_shape, torch.int32),
        Condition("dtype violations", len(dtype_bad), 0, "<=",
                  f"leaves not float32: {dtype_bad}" if dtype_bad else "all float32"),
    ]
    return combine(prop, conditions, example)
