"""Checks of the optimizer contract (v2) for any object with ``init`` and ``step``.

Each check runs the optimizer on a :class:`~physopt_ref.testing.QuadraticWorkload` (the
contract workload unless told) and returns a :class:`~physopt_ref.testing.CheckResult`: which
property, what was measured against what was allowed, where, and on what input. Call
``.raise_if_failed()`` to turn a failure into an ``AssertionError``.

The properties (DESIGN.md, "The optimizer contract"):

- **purity**: a step writes to none of its inputs (read-only NumPy arrays refuse writes);
- **dtype kept**: float32 in, float32 out, in the parameters and every floating state field;
- **device kept**: parameters on a non-default device (array-api-strict's ``Device("device1")``,
  which refuses arithmetic across devices) stay there;
- **determinism**: the same seed gives the same bits; for a stochastic step another seed gives
  another run;
- **ensemble = single runs**: K runs on leading axes equal K separate runs (member k with seed
  + k);
- **backend parity**: any backend in float64 equals NumPy float64;
- **state of arrays**: a NamedTuple of arrays led by an ``int32`` count of the batch shape, whose
  structure, shapes and dtypes never change; the count saturates;
- per-run hyperparameter arrays equal separate runs; bad hyperparameters and mismatched inputs
  are refused with errors naming the culprit; optimizers pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from physopt_ref.backends import get_namespace, namespace_name, to_numpy
from physopt_ref.core.tree import tree_flatten
from physopt_ref.testing._compare import changed, close_condition, readonly, snapshot, x64_scope
from physopt_ref.testing._result import CheckResult, Condition, combine
from physopt_ref.testing.subject import Subject, as_subject
from physopt_ref.testing.workloads import (
    CONTRACT_WORKLOAD,
    QuadraticWorkload,
    describe_hyperparameters,
    leaf_paths,
    member,
    on_backend,
    trajectory,
)

__all__ = [
    "NP",
    "check_backend_parity",
    "check_determinism",
    "check_device_kept",
    "check_dtype_kept",
    "check_ensemble_equals_single_runs",
    "check_purity",
]

#: The NumPy namespace (array-api-compat's wrapper) used for reference runs.
NP = get_namespace("numpy")

#: Default tolerances: ensemble members vs single runs; a backend vs NumPy (both float64).
ENSEMBLE_TOL = {"rtol": 1e-11, "atol": 1e-13}
PARITY_TOL = {"rtol": 1e-10, "atol": 1e-12}


def _violations(prop: str, problems: Sequence[str], example: dict[str, Any],
                what: str = "violations") -> CheckResult:
    """A result counting problems found (allowed: none); the first one is the detail."""
    detail = problems[0] if problems else ""
    if len(problems) > 1:
        detail += f" (and {len(problems) - 1} more)"
    return CheckResult(prop, Condition(what, len(problems), 0, "<=", detail), example)


def _example(subject: Subject, workload: QuadraticWorkload, **extra: Any) -> dict[str, Any]:
    return {"optimizer": subject.name, **_hp(subject), **extra, "workload": workload.describe()}


def _hp(subject: Subject) -> dict[str, Any]:
    hp = describe_hyperparameters(subject.hyperparameters)
    return {"hyperparameters": hp} if hp else {}


def _started(opt: Any, workload: QuadraticWorkload) -> tuple[Subject, Any, Any, Any]:
    """The subject, its optimizer, the workload's start (a single run) and the initial state."""
    subject = as_subject(opt)
    opt = subject.build()
    params = workload.start()
    return subject, opt, params, opt.init(params)


def _pairs(got: list[list[np.ndarray]], want: list[list[np.ndarray]], names: list[str],
           index: tuple[int, ...] | None = None, label: str = ""):
    """``(where, got, want)`` per step and leaf; ``index`` selects an ensemble member of got."""
    for t, (g_step, w_step) in enumerate(zip(got, want, strict=True)):
        for name, g, w in zip(names, g_step, w_step, strict=True):
            yield (f"{label}step {t + 1}, leaf {name}", g if index is None else g[index], w)


# ---------------------------------------------------------------------------------------------


def check_purity(
    opt: Any,
    *,
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    batch_shape: tuple[int, ...] = (),
    steps: int = 6,
) -> CheckResult:
    """A step never writes to ``params``, ``grads``, ``loss`` or ``state``.

    Every input is a read-only NumPy copy (a write raises, and counts as a violation); the
    inputs are also compared with snapshots taken before the step.
    """
    subject = as_subject(opt)
    opt = subject.build()
    bn = len(batch_shape)
    example = _example(subject, workload, batch_shape=batch_shape, steps=steps)
    params = readonly(workload.start(batch_shape))
    state = readonly(opt.init(params, batch_ndim=bn))
    problems = []
    for t in range(steps):
        loss, grads = workload.loss_and_grads(NP, params, bn)
        grads = readonly(grads)
        loss = readonly(np.asarray(loss))
        before = snapshot((params, grads, loss, state))
        try:
            new_params, new_state = opt.step(params, grads, state, loss=loss)
        except ValueError as exc:
            if "read-only" not in str(exc):
                raise
            problems.append(f"step {t + 1} wrote to an input: {exc}")
            break
        n = changed(before, snapshot((params, grads, loss, state)))
        if n:
            problems.append(f"step {t + 1} modified {n} input array(s)")
        params, state = readonly(new_params), readonly(new_state)
    return _violations("purity", problems, example, "inputs modified")


def state_leaves(state: Any, path: str = "state") -> list[tuple[str, Any]]:
    """Every leaf of a state tree with its path (``state.mu['w']``, ``state[0].count``).

    NamedTuples (by field), dicts (by key), tuples and lists (by index) are walked; anything
    else is a leaf, arrays or not (:func:`~physopt_ref.testing.check_state_structure` says
    which leaves are not arrays).
    """
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return [leaf for name, value in zip(state._fields, state, strict=True)
                for leaf in state_leaves(value, f"{path}.{name}")]
    if isinstance(state, dict):
        return [leaf for k, v in state.items() for leaf in state_leaves(v, f"{path}[{k!r}]")]
    if isinstance(state, list | tuple):
        return [leaf for i, v in enumerate(state) for leaf in state_leaves(v, f"{path}[{i}]")]
    return [(path, state)]


def count_of(state: Any) -> Any:
    """The state's top-level ``count`` field, or None when it has none."""
    fields = getattr(state, "_fields", ())
    return state.count if "count" in fields else None


def _floating_state_arrays(state: Any) -> list[tuple[str, Any]]:
    return [(path.removeprefix("state."), a) for path, a in state_leaves(state)
            if hasattr(a, "dtype") and hasattr(a, "shape")]


def check_dtype_kept(
    opt: Any,
    xp: Any = NP,
    *,
    dtype: str = "float32",
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    batch_shape: tuple[int, ...] = (),
    steps: int = 4,
) -> CheckResult:
    """``dtype`` in, ``dtype`` out: parameters (finite) and every floating state field."""
    subject = as_subject(opt)
    opt = subject.build()
    want = getattr(xp, dtype)
    bn = len(batch_shape)
    example = _example(subject, workload, backend=namespace_name(xp), dtype=dtype,
                       batch_shape=batch_shape)
    params = on_backend(xp, workload.start(batch_shape), want)
    state = opt.init(params, batch_ndim=bn)
    for _ in range(steps):
        loss, grads = workload.loss_and_grads(xp, params, bn)
        params, state = opt.step(params, grads, state, loss=loss)
    problems = []
    for name, leaf in zip(leaf_paths(params), tree_flatten(params)[0], strict=True):
        if leaf.dtype != want:
            problems.append(f"parameter leaf {name} became {leaf.dtype}")
        elif not np.all(np.isfinite(to_numpy(leaf))):
            problems.append(f"parameter leaf {name} is not finite after {steps} steps")
    for field, a in _floating_state_arrays(state):
        if xp.isdtype(a.dtype, "real floating") and a.dtype != want:
            problems.append(f"state.{field} became {a.dtype}")
    return _violations("dtype kept", problems, example)


def check_device_kept(
    opt: Any,
    *,
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    batch_shape: tuple[int, ...] = (2,),
    steps: int = 4,
) -> CheckResult:
    """Parameters on array-api-strict's non-default ``Device("device1")`` stay there.

    array-api-strict refuses arithmetic across devices, so any array the step creates on the
    default device raises; that counts as a violation, with the error.
    """
    subject = as_subject(opt)
    try:
        import array_api_strict as xps
    except ImportError:
        return CheckResult.skipped("device kept", "array-api-strict is not installed")
    dev = xps.Device("device1")
    opt = subject.build()
    bn = len(batch_shape)
    example = _example(subject, workload, device=str(dev), batch_shape=batch_shape)
    problems = []
    try:
        params = on_backend(xps, workload.start(batch_shape), xps.float64, dev)
        state = opt.init(params, batch_ndim=bn)
        for _ in range(steps):
            loss, grads = workload.loss_and_grads(xps, params, bn)
            params, state = opt.step(params, grads, state, loss=loss)
    except ValueError as exc:
        if "device" not in str(exc).lower():
            raise
        problems.append(f"an array on another device: {exc}")
    else:
        for name, leaf in zip(leaf_paths(params), tree_flatten(params)[0], strict=True):
            if device(leaf) != dev:
                problems.append(f"parameter leaf {name} moved to {device(leaf)}")
        for field, a in _floating_state_arrays(state):
            if device(a) != dev:
                problems.append(f"state.{field} is on {device(a)}")
    return _violations("device kept", problems, example)


def check_determinism(
    opt: Any,
    *,
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    batch_shape: tuple[int, ...] = (),
    steps: int = 8,
    other_seed_offset: int | None = 101,
) -> CheckResult:
    """Two runs with the same settings give the same bits; for a stochastic step, the seed
    ``seed + other_seed_offset`` changes the run (``None``: not checked, for settings whose
    run draws nothing, a BBI run without bounces, say)."""
    subject = as_subject(opt)
    bn = len(batch_shape)
    x0 = workload.start(batch_shape)
    names = leaf_paths(x0)
    example = _example(subject, workload, batch_shape=batch_shape, steps=steps)

    def run(**overrides: Any) -> list[list[np.ndarray]]:
        return trajectory(subject.build(**overrides), NP, x0, steps, batch_ndim=bn,
                          workload=workload)

    first = run()
    conditions = [close_condition(_pairs(run(), first, names), 0.0, 0.0,
                                  "max |run 1 - run 2| / tolerance 0")]
    if subject.stochastic and other_seed_offset is not None:
        other = run(**subject.seeded(other_seed_offset))
        diff = max(float(np.max(np.abs(a - b), initial=0.0))
                   for s_a, s_b in zip(first, other, strict=True)
                   for a, b in zip(s_a, s_b, strict=True))
        conditions.append(Condition(
            f"max |run(seed) - run(seed + {other_seed_offset})|", diff, 0.0, ">",
            "a different seed should change a stochastic optimizer's run"))
    return combine("determinism", conditions, example)


def check_ensemble_equals_single_runs(
    opt: Any,
    *,
    batch_shape: tuple[int, ...] = (3,),
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    steps: int = 8,
    rtol: float = ENSEMBLE_TOL["rtol"],
    atol: float = ENSEMBLE_TOL["atol"],
) -> CheckResult:
    """K runs stacked on leading axes == K separate runs (member k: the same seed, member
    index k)."""
    subject = as_subject(opt)
    example = _example(subject, workload, batch_shape=batch_shape, steps=steps)
    return _members_match("ensemble = single runs", subject.build(),
                          lambda k, index: subject.build(**subject.as_member(k)),
                          lambda k, index: f"member {index}, ", NP, batch_shape, workload,
                          steps, rtol, atol, example)


def _members_match(
    prop: str, ensemble_opt: Any, single_opt: Any, label: Any, xp: Any,
    batch_shape: tuple[int, ...], workload: QuadraticWorkload, steps: int, rtol: float,
    atol: float, example: dict[str, Any],
) -> CheckResult:
    """An ensemble run of ``ensemble_opt`` against single runs of ``single_opt(k, index)``."""
    x_all = workload.start(batch_shape)
    names = leaf_paths(x_all)
    ensemble = trajectory(ensemble_opt, xp, x_all, steps, batch_ndim=len(batch_shape),
                          workload=workload)

    def pairs():
        for k, index in enumerate(np.ndindex(*batch_shape)):
            single = trajectory(single_opt(k, index), xp, member(x_all, index), steps,
                                workload=workload)
            yield from _pairs(ensemble, single, names, index, label(k, index))

    return CheckResult(prop, close_condition(pairs(), rtol, atol), example)


def check_backend_parity(
    opt: Any,
    xp: Any,
    *,
    steps: int | None = None,
    batch_shape: tuple[int, ...] = (2,),
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    rtol: float = PARITY_TOL["rtol"],
    atol: float = PARITY_TOL["atol"],
) -> CheckResult:
    """``xp`` in float64 equals NumPy float64 step by step (namespace, dtype and shape too).

    ``steps`` defaults to 8, or 4 for a subject marked not smooth (discontinuous decisions
    amplify rounding). JAX runs with its 64-bit mode on inside the check.
    """
    subject = as_subject(opt)
    steps = (8 if subject.smooth else 4) if steps is None else steps
    bn = len(batch_shape)
    x0 = workload.start(batch_shape)
    names = leaf_paths(x0)
    example = _example(subject, workload, backend=namespace_name(xp), batch_shape=batch_shape,
                       steps=steps)
    reference = trajectory(subject.build(), NP, x0, steps, batch_ndim=bn, workload=workload)
    problems: list[str] = []
    got: list[list[Any]] = []
    with x64_scope(xp):
        opt = subject.build()
        params = on_backend(xp, x0)
        state = opt.init(params, batch_ndim=bn)
        for t in range(steps):
            loss, grads = workload.loss_and_grads(xp, params, bn)
            params, state = opt.step(params, grads, state, loss=loss)
            leaves = tree_flatten(params)[0]
            for name, leaf in zip(names, leaves, strict=True):
                ns = namespace_name(array_namespace(leaf))
                if ns != namespace_name(xp):
                    problems.append(f"step {t + 1}, leaf {name}: namespace {ns}")
                if leaf.dtype != xp.float64:
                    problems.append(f"step {t + 1}, leaf {name}: dtype {leaf.dtype}")
            got.append([to_numpy(v) for v in leaves])
    conditions = [close_condition(_pairs(got, reference, names), rtol, atol)]
    if problems:
        conditions.insert(0, Condition("namespace / dtype violations", len(problems), 0, "<=",
                                       problems[0]))
    return combine("backend parity", conditions, example)


