"""One step of the run loop, shared by the eager loop and its ``jax.jit`` form.

:func:`_start` evaluates the start and takes the stop decisions there; :func:`_advance` takes
one optimizer step and updates the per-run bookkeeping (:class:`_Runs`), with
:func:`_stop_converged` taking the target / gtol decisions. Everything here is written with
array operations only, so :mod:`physopt_ref.runner.compiled` traces :func:`_advance` as it is.
"""


from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from array_api_compat import device

from physopt_ref.backends import normal
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.tree import (
    TreeDef,
    all_finite,
    per_run_max,
    select_state,
    select_tree,
    tree_flatten,
    tree_unflatten,
)
from physopt_ref.runner.trace import STATUS_MESSAGES

__all__ = ["StepInfo"]

# The stream index of the gradient-noise draws (kept away from the optimizers' own streams).
_NOISE_STREAM = 7919

# Status codes (see STATUS_MESSAGES).
_TARGET, _GTOL, _CALLBACK, _DIVERGED = 1, 2, 3, 4


@dataclass(frozen=True)
class StepInfo:
    """What :func:`run` hands to a callback (arrays stay on the backend).

    Attributes
    ----------
    step : int
        Steps taken so far.
    x : tree of arrays
        The current parameters (finished runs frozen).
    loss : array
        The objective per run, shape ``batch_shape``.
    grad : tree of arrays
        The gradient at ``x`` (without injected noise).
    state : NamedTuple
        The optimizer state.
    active : array of bool
        Which runs are still moving.
    """

    step: int
    x: Any
    loss: Any
    grad: Any
    state: Any
    active: Any


@dataclass(frozen=True)
class _Config:
    """What the caller asked for (everything but the optimizer, objective and start)."""

    steps: int
    target: float | None
    gtol: float | None
    callback: Callable[[StepInfo], Any] | None
    record_every: int
    check_every: int
    grad_noise: float
    noise_seed: int
    record_x: bool
    stop_when_done: bool
    checkpoint: str | os.PathLike | None = None
    checkpoint_every: int | None = None
    compile: bool = False
    noise_member: int = 0
    #: What a run checkpoint records of the problem (``run_checkpoint.problem_fingerprint``).
    problem: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Ensemble:
    """The structure of the runs: namespace, tree, ensemble axes, and how to build arrays."""

    xp: Any
    treedef: TreeDef
    like: Any
    batch_ndim: int
    batch_shape: tuple[int, ...]

    @cached_property
    def dev(self) -> Any:
        """The parameters' device."""
        return device(self.like)

    @cached_property
    def codes(self) -> dict[int, Any]:
        """The status codes as integer scalar arrays on the device."""
        return {c: self.code(c) for c in STATUS_MESSAGES}

    @cached_property
    def int_dtype(self) -> Any:
        """The namespace's default integer dtype: int64, or int32 on JAX without x64 (which
        would truncate an int64 request to int32 with a warning at every run)."""
        return self.xp.__array_namespace_info__().default_dtypes(device=self.dev)["integral"]

    def code(self, value: int) -> Any:
        """An integer scalar array on the parameters' device (a status code, a step)."""
        return self.xp.asarray(value, dtype=self.int_dtype, device=self.dev)

    def ints(self, value: int) -> Any:
        """An integer array of the batch shape filled with ``value``."""
        return self.xp.full(self.batch_shape, value, dtype=self.int_dtype, device=self.dev)

    def as_value(self, value: Any) -> Any:
        """The objective's value as an array of the parameters' dtype and the batch shape."""
        xp, like = self.xp, self.like
        if isinstance(value, int | float):
            value = xp.asarray(value, dtype=like.dtype, device=self.dev)
        value = xp.astype(value, like.dtype) if value.dtype != like.dtype else value
        if tuple(value.shape) == self.batch_shape:
            return value
        if value.ndim == 0:
            return xp.broadcast_to(value, self.batch_shape)
        hint = ""
        if self.batch_ndim == 0:
            hint = (
                f"; for an ensemble, pass run(..., batch_ndim={value.ndim}) (the number of "
                "leading ensemble axes of x0: 0 by default for a plain function)"
            )
        raise ValueError(
            f"the objective returned values of shape {tuple(value.shape)}; "
            f"expected the ensemble shape {self.batch_shape}{hint}"
        )


@dataclass(frozen=True)
class _Runs:
    """Where every run stands (backend arrays of the batch shape, and the leaves)."""

    x: list[Any]
    f: Any
    g: list[Any]
    state: Any
    active: Any
    status: Any
    steps_taken: Any
    steps_to_target: Any
    best_f: Any
    best_x: list[Any]


def _objective(problem: Any) -> Callable[[Any], tuple[Any, Any]]:
    if hasattr(problem, "value_and_grad"):
        return problem.value_and_grad
    if callable(problem):
        return problem
    raise TypeError(
        "problem must be a physopt_ref.problems.Problem (or have value_and_grad) or a callable "
        f"fun(x) -> (value, grad); got {type(problem).__name__}"
    )


def _per_run_fields(xp: Any, state: Any, batch_shape: tuple[int, ...]) -> dict[str, Any]:
    """The floating arrays of exactly the batch shape among a NamedTuple state's fields."""
    out = {}
    for name in getattr(state, "_fields", ()):
        value = getattr(state, name)
        is_array = hasattr(value, "shape") and hasattr(value, "dtype")
        if is_array and tuple(value.shape) == batch_shape:
            try:
                if xp.isdtype(value.dtype, "real floating"):
                    out[name] = value
            except (TypeError, AttributeError):
                continue
    return out


def _call_callback(callback: Callable[..., Any], info: StepInfo) -> bool:
    try:
        return bool(callback(info))
    except StopIteration:
        return True


# ---------------------------------------------------------------------------------------------
# The steps of the loop


def _evaluate(fun: Callable[[Any], tuple[Any, Any]], ens: _Ensemble, leaves: list[Any],
              check: bool = False):
    """Value (batch shape, parameters' dtype) and gradient leaves at the point ``leaves``
    (``check``: the answer validated first, as for the start)."""
    answer = fun(tree_unflatten(ens.treedef, leaves))
    if check:
        _check_answer(answer, ens, leaves)
    value, grad = answer
    return ens.as_value(value), tree_flatten(grad)[0]


def _kind(value: Any) -> str:
    if isinstance(value, tuple):
        return f"a {len(value)}-tuple"
    dtype = getattr(value, "dtype", None)
    return f"{type(value).__name__}" + (f" of dtype {dtype}" if dtype is not None else "")


def _check_answer(answer: Any, ens: _Ensemble, leaves: list[Any]) -> None:
    """Refuse an objective's answer that is not ``(value, grad)``: a real value (a number, or
    an array of the ensemble shape) and a gradient of ``x``'s structure, shapes and a real
    floating dtype."""
    xp = ens.xp
    expected = ("the objective must return (value, grad): a real value per run (shape "
                f"{ens.batch_shape}) and a gradient with x's structure")
    if not isinstance(answer, tuple | list) or len(answer) != 2:
        raise TypeError(f"{expected}; it returned {_kind(answer)}")
    value, grad = answer
    if isinstance(value, bool) or not (isinstance(value, int | float) or (
            hasattr(value, "dtype") and hasattr(value, "shape"))):
        raise TypeError(f"{expected}; its value is {_kind(value)}")
    if hasattr(value, "dtype") and not (xp.isdtype(value.dtype, "real floating") or
                                        xp.isdtype(value.dtype, "integral")):
        raise TypeError(f"{expected}; its value has the dtype {value.dtype}, not a real one")
    try:
        g_leaves, g_def = tree_flatten(grad)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{expected}; its gradient is {_kind(grad)} ({exc})") from None
    if g_def != ens.treedef or len(g_leaves) != len(leaves):
        raise TypeError(f"{expected}; its gradient has {len(g_leaves)} leaves of another "
                        f"structure than x's {len(leaves)}")
    for i, (g, x) in enumerate(zip(g_leaves, leaves, strict=True)):
        if not (hasattr(g, "shape") and hasattr(g, "dtype")) or tuple(g.shape) != tuple(
                x.shape):
            shape = getattr(g, "shape", None)
            raise TypeError(f"{expected}; gradient leaf {i} is {_kind(g)} of shape {shape}, "
                            f"x's has the shape {tuple(x.shape)}")
        if not xp.isdtype(g.dtype, "real floating"):
            raise TypeError(f"{expected}; gradient leaf {i} has the dtype {g.dtype}, not a "
                            "real floating one")


def _max_abs_grad(ens: _Ensemble, g: list[Any]) -> Any:
    """Per run: the largest gradient component in absolute value (SciPy's gtol norm)."""
    xp = ens.xp
    out = per_run_max(xp, xp.abs(g[0]), ens.batch_ndim)
    for leaf in g[1:]:
        out = xp.maximum(out, per_run_max(xp, xp.abs(leaf), ens.batch_ndim))
    return out


def _stop_converged(
    ens: _Ensemble, cfg: _Config, f: Any, g: list[Any], active: Any, status: Any,
    steps_to_target: Any, step: int,
) -> tuple[Any, Any, Any]:
    """Active runs at the target value (status 1) or below gtol (status 2) stop here.

    Returns the new ``active``, ``status`` and ``steps_to_target``.
    """
    xp = ens.xp
    if cfg.target is not None:
        hit = active & (f <= cfg.target)
        steps_to_target = xp.where(hit, ens.code(step), steps_to_target)
        status = xp.where(hit, ens.codes[_TARGET], status)
        active = active & ~hit
    if cfg.gtol is not None:
        small = active & (_max_abs_grad(ens, g) <= cfg.gtol)
        status = xp.where(small, ens.codes[_GTOL], status)
        active = active & ~small
    return active, status, steps_to_target


def _start(
    optimizer: Optimizer, fun: Callable[..., Any], leaves: list[Any], ens: _Ensemble,
    cfg: _Config,
) -> _Runs:
    """Evaluate the start, initialise the optimizer, and stop the runs that are done there."""
    xp = ens.xp
    state = optimizer.init(tree_unflatten(ens.treedef, leaves), batch_ndim=ens.batch_ndim)
    f, g = _evaluate(fun, ens, leaves, check=True)
    ok = all_finite(xp, g, ens.batch_ndim, f)
    inf = xp.asarray(float("inf"), dtype=ens.like.dtype, device=ens.dev)
    active, status, steps_to_target = _stop_converged(
        ens, cfg, f, g, ok, xp.where(ok, ens.ints(0), ens.codes[_DIVERGED]), ens.ints(-1), 0)
    return _Runs(x=list(leaves), f=f, g=g, state=state, active=active, status=status,
                 steps_taken=ens.ints(0), steps_to_target=steps_to_target,
                 best_f=xp.where(ok, f, inf), best_x=list(leaves))


def _noisy(ens: _Ensemble, cfg: _Config, g: list[Any], k: int) -> list[Any]:
    """The gradient leaves plus seeded Gaussian noise of step ``k`` (``grad_noise > 0``)."""
    if cfg.grad_noise <= 0.0:
        return g
    return [
        gi + cfg.grad_noise * normal(cfg.noise_seed, k, tuple(gi.shape), like=gi,
                                     batch_ndim=ens.batch_ndim, stream=_NOISE_STREAM + i,
                                     member=cfg.noise_member)
        for i, gi in enumerate(g)
    ]


def _advance(
    optimizer: Optimizer, fun: Callable[..., Any], ens: _Ensemble, cfg: _Config, runs: _Runs,
    k: int,
) -> _Runs:
    """Step ``k`` -> ``k + 1``: one optimizer step, one evaluation, the per-run bookkeeping.

    Runs that are no longer active, or whose new value or gradient is not finite, keep their
    point, value, gradient and optimizer state; the latter are marked diverged.
    """
    xp, bn, tdef = ens.xp, ens.batch_ndim, ens.treedef
    grads = tree_unflatten(tdef, _noisy(ens, cfg, runs.g, k))
    x_new, state_new = optimizer.step(tree_unflatten(tdef, runs.x), grads, runs.state,
                                      loss=runs.f)
    new_leaves = tree_flatten(x_new)[0]
    f_new, g_new = _evaluate(fun, ens, new_leaves)
    ok = all_finite(xp, g_new, bn, f_new)
    moving = runs.active & ok
    x = select_tree(xp, moving, new_leaves, runs.x, bn)
    f = xp.where(moving, f_new, runs.f)
    g = select_tree(xp, moving, g_new, runs.g, bn)
    better = moving & (f < runs.best_f)
    active, status, steps_to_target = _stop_converged(
        ens, cfg, f, g, moving, xp.where(runs.active & ~ok, ens.codes[_DIVERGED], runs.status),
        runs.steps_to_target, k + 1)
    return _Runs(
        x=x,
        f=f,
        g=g,
        state=select_state(xp, moving, state_new, runs.state, bn),
        active=active,
        status=status,
        steps_taken=xp.where(runs.active, runs.steps_taken + 1, runs.steps_taken),
        steps_to_target=steps_to_target,
        best_f=xp.where(better, f, runs.best_f),
        best_x=select_tree(xp, better, x, runs.best_x, bn),
    )


