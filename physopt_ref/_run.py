r"""The reference run loop: any optimizer on any problem and backend, one run or an ensemble.

:func:`run` drives ``opt.init`` / ``opt.step`` on an objective that returns values and
gradients (a :class:`physopt_ref.problems.Problem`, or any callable ``fun(x) -> (value, grad)``),
for many starting points at once when ``x0`` has leading ensemble axes. Each member of the
ensemble stops on its own (target value, gradient tolerance, divergence): a finished member is
frozen with ``xp.where`` masks, so the loop never branches on array data and never moves data to
the host inside a step; the host only asks "is anyone still running?" every ``check_every`` steps.

The result is a :class:`Trace`: the loss per recorded step and run, the best point and value per
run, the final parameters and optimizer state, the per-run scalar fields of the state (energies,
:math:`V`, :math:`|\pi|^2` where the optimizer keeps them), steps to the target, evaluations and
wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from ._base import Optimizer
from ._tree import (
    batch_shape_of,
    expand_to_leaf,
    per_run_max,
    select_tree,
    tree_flatten,
    tree_unflatten,
)

__all__ = ["STATUS_MESSAGES", "StepInfo", "Trace", "run"]

#: Per-run termination codes of :attr:`Trace.status`.
STATUS_MESSAGES: dict[int, str] = {
    0: "step budget used up",
    1: "reached the target value",
    2: "gradient below gtol",
    3: "stopped by the callback",
    4: "diverged (non-finite value or gradient)",
}

# The stream index of the gradient-noise draws (kept away from the optimizers' own streams).
_NOISE_STREAM = 7919


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


@dataclass
class Trace:
    """The record of a :func:`run`.

    Arrays are NumPy (host) copies, except :attr:`x`, :attr:`best_x`, :attr:`state`, which
    keep the parameters' namespace, dtype and device.

    Attributes
    ----------
    optimizer : str
        ``repr`` of the optimizer (name and hyperparameters).
    batch_shape : tuple of int
        The ensemble shape (``()`` for one run).
    recorded_steps : numpy.ndarray
        Step numbers of the records, shape ``(n_records,)``; record 0 is the start.
    losses : numpy.ndarray
        Objective per record and run, shape ``(n_records, *batch_shape)``.
    best_value : numpy.ndarray
        Lowest value seen per run, shape ``batch_shape``.
    best_x : tree of arrays
        The point where it was seen (backend arrays).
    x, state :
        Final parameters and optimizer state (backend arrays).
    final_value : numpy.ndarray
        The objective at ``x``.
    status : numpy.ndarray of int
        Per-run termination code, see :data:`STATUS_MESSAGES`.
    steps_taken : numpy.ndarray of int
        Steps each run took before it stopped (frozen runs stop counting).
    steps_to_target : numpy.ndarray of int
        First step at which ``value <= target`` per run, ``-1`` where never (or no target).
    steps : int
        Steps the loop ran (the longest run).
    evaluations : int
        Calls of the objective (each evaluates every run of the ensemble at once).
    wall_time : float
        Seconds spent in the loop, including moving the results to the host.
    state_history : dict of str to numpy.ndarray
        The optimizer state's per-run floating fields (batch-shaped arrays, e.g. energies)
        at every record after the start, each of shape ``(n_records - 1, *batch_shape)``.
    xs : numpy.ndarray or None
        With ``record_x=True`` and an array ``x0``: the points per record,
        shape ``(n_records, *x0.shape)``.
    target, gtol : float or None
        The stopping settings used.
    """

    optimizer: str
    batch_shape: tuple[int, ...]
    recorded_steps: np.ndarray
    losses: np.ndarray
    best_value: np.ndarray
    best_x: Any
    x: Any
    state: Any
    final_value: np.ndarray
    status: np.ndarray
    steps_taken: np.ndarray
    steps_to_target: np.ndarray
    steps: int
    evaluations: int
    wall_time: float
    state_history: dict[str, np.ndarray] = field(default_factory=dict)
    xs: np.ndarray | None = None
    target: float | None = None
    gtol: float | None = None

    @property
    def reached_target(self) -> np.ndarray:
        """Boolean per run: the target value was reached (all False without a target)."""
        return self.steps_to_target >= 0

    @property
    def success_rate(self) -> float:
        """Fraction of runs that reached the target (NaN without a target)."""
        if self.target is None:
            return float("nan")
        return float(np.mean(self.reached_target))

    @property
    def energies(self) -> dict[str, np.ndarray]:
        """The :attr:`state_history` entries named like energies (``E``, ``H``, ``*energ*``)."""
        return {
            k: v
            for k, v in self.state_history.items()
            if "energ" in k.lower() or k in ("E", "H", "hamiltonian")
        }

    def summary(self) -> str:
        """A one-paragraph text summary."""
        best = np.min(self.best_value) if self.best_value.size else float("nan")
        parts = [
            f"{self.optimizer}: {self.steps} steps, best value {best:.6g}",
            f"{self.evaluations} evaluations, {self.wall_time:.3g} s",
        ]
        if self.target is not None:
            parts.append(f"target {self.target:g} reached by {self.success_rate:.0%} of runs")
        return "; ".join(parts)


def _objective(problem: Any) -> Callable[[Any], tuple[Any, Any]]:
    if hasattr(problem, "value_and_grad"):
        return problem.value_and_grad
    if callable(problem):
        return problem
    raise TypeError(
        "problem must be a physopt_ref.problems.Problem (or have value_and_grad) or a callable "
        f"fun(x) -> (value, grad); got {type(problem).__name__}"
    )


def _freeze(xp: Any, new: Any, old: Any, keep: Any, batch_shape: tuple[int, ...]) -> Any:
    """``new`` where ``keep`` is True, else ``old``, for every batch-leading array in a state."""
    if isinstance(new, tuple) and hasattr(new, "_fields"):
        fields = (_freeze(xp, a, b, keep, batch_shape) for a, b in zip(new, old, strict=True))
        return type(new)(*fields)
    if isinstance(new, tuple | list):
        out = [_freeze(xp, a, b, keep, batch_shape) for a, b in zip(new, old, strict=True)]
        return type(new)(out)
    if isinstance(new, dict):
        return {k: _freeze(xp, new[k], old[k], keep, batch_shape) for k in new}
    nb = len(batch_shape)
    if hasattr(new, "shape") and hasattr(new, "dtype") and hasattr(old, "shape"):
        if new.ndim >= nb and tuple(new.shape[:nb]) == batch_shape and new.shape == old.shape:
            return xp.where(expand_to_leaf(xp, keep, new, nb), new, old)
    return new


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


def _as_value(xp: Any, value: Any, like: Any, batch_shape: tuple[int, ...]) -> Any:
    if isinstance(value, int | float):
        value = xp.asarray(value, dtype=like.dtype, device=device(like))
    value = xp.astype(value, like.dtype) if value.dtype != like.dtype else value
    if tuple(value.shape) != batch_shape:
        if value.ndim == 0:
            value = xp.broadcast_to(value, batch_shape)
        else:
            raise ValueError(
                f"the objective returned values of shape {tuple(value.shape)}; "
                f"expected the ensemble shape {batch_shape}"
            )
    return value


def _call_callback(callback: Callable[..., Any], info: StepInfo) -> bool:
    try:
        return bool(callback(info))
    except StopIteration:
        return True


def run(
    optimizer: Optimizer,
    problem: Any,
    x0: Any = None,
    steps: int = 1000,
    *,
    target: float | None = None,
    gtol: float | None = None,
    callback: Callable[[StepInfo], Any] | None = None,
    record_every: int = 1,
    check_every: int = 10,
    batch_ndim: int | None = None,
    grad_noise: float = 0.0,
    noise_seed: int = 0,
    record_x: bool = False,
    stop_when_done: bool = True,
) -> Trace:
    r"""Run ``optimizer`` on ``problem`` from ``x0`` for up to ``steps`` steps.

    Parameters
    ----------
    optimizer : Optimizer
        Any registered optimizer (``physopt_ref.bbi(lr=...)``, ``get_optimizer(name, ...)``).
        The loss is passed to every step (``loss=``), so energy-based optimizers work as is.
    problem : Problem or callable
        A :class:`physopt_ref.problems.Problem` (its ``value_and_grad`` is used) or a callable
        ``fun(x) -> (value, grad)`` with values of the ensemble shape and ``grad`` of ``x``'s tree
        structure.
    x0 : array or tree of arrays, optional
        The start, of any Array API backend and float dtype; its leading axes are an ensemble
        (for a Problem, every axis but the last). Defaults to ``problem.start()`` (NumPy float64).
    steps : int
        Most steps per run.
    target : float, optional
        A run stops (and is counted in :attr:`Trace.steps_to_target`) once its value is
        ``<= target``.
    gtol : float, optional
        A run stops once the largest gradient component (in absolute value) is ``<= gtol``
        (SciPy's ``gtol`` convention).
    callback : callable, optional
        ``callback(StepInfo)`` after the start and then every ``record_every`` steps; returning
        True or raising :class:`StopIteration` stops every run (status 3). Reading arrays in a
        callback synchronises the device; the loop itself does not.
    record_every : int
        Record the loss (and state fields) every so many steps; the start and the last step are
        always recorded.
    check_every : int
        How often the host checks whether every run has stopped (each check is one device
        synchronisation). The per-run stop decisions themselves are taken on the device every
        step, so they are exact.
    batch_ndim : int, optional
        Number of ensemble axes; default ``x0.ndim - 1`` for a Problem, 0 for a callable.
    grad_noise : float
        Standard deviation :math:`\sigma` of Gaussian noise added to every gradient component
        (a model of minibatch noise; the loss passed to the optimizer stays exact). Drawn with
        :func:`physopt_ref.backends.normal` from ``noise_seed`` and the step count, so member
        ``k`` of an ensemble sees the noise of a single run with seed ``noise_seed + k``.
    noise_seed : int
        Seed of the gradient noise.
    record_x : bool
        Also record the points (an array ``x0`` only), e.g. to plot trajectories.
    stop_when_done : bool
        Leave the loop as soon as every run has stopped (checked every ``check_every`` steps).

    Returns
    -------
    Trace

    Notes
    -----
    A run whose value or gradient becomes non-finite is frozen at its last finite point and
    marked diverged (status 4). NumPy's floating-point warnings are silenced inside the loop,
    since a diverging member of an ensemble is an expected, reported outcome.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    for name, value in (("record_every", record_every), ("check_every", check_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if grad_noise < 0:
        raise ValueError(f"grad_noise must be >= 0, got {grad_noise}")
    fun = _objective(problem)
    if x0 is None:
        if not hasattr(problem, "start"):
            raise ValueError("x0 is required when the problem has no start()")
        x0 = problem.start()
    leaves, treedef = tree_flatten(x0)
    xp = array_namespace(*leaves)
    if batch_ndim is None:
        is_problem = hasattr(problem, "value_and_grad") and len(leaves) == 1
        batch_ndim = leaves[0].ndim - 1 if is_problem else 0
    batch_shape = batch_shape_of(leaves, batch_ndim)
    like = leaves[0]
    record_x = record_x and len(leaves) == 1

    with np.errstate(all="ignore"):
        return _loop(
            optimizer, fun, x0, xp, treedef, like, batch_ndim, batch_shape, steps, target, gtol,
            callback, record_every, check_every, grad_noise, noise_seed, record_x,
            stop_when_done,
        )


def _loop(
    optimizer: Optimizer,
    fun: Callable[[Any], tuple[Any, Any]],
    x: Any,
    xp: Any,
    treedef: Any,
    like: Any,
    batch_ndim: int,
    batch_shape: tuple[int, ...],
    steps: int,
    target: float | None,
    gtol: float | None,
    callback: Callable[[StepInfo], Any] | None,
    record_every: int,
    check_every: int,
    grad_noise: float,
    noise_seed: int,
    record_x: bool,
    stop_when_done: bool,
) -> Trace:
    from .backends import normal, to_numpy

    t0 = time.perf_counter()
    dev = device(like)

    def evaluate(point: Any) -> tuple[Any, list[Any]]:
        value, grad = fun(point)
        return _as_value(xp, value, like, batch_shape), tree_flatten(grad)[0]

    def finite(value: Any, grads: list[Any]) -> Any:
        ok = xp.isfinite(value)
        for g in grads:
            axes = tuple(range(batch_ndim, g.ndim))
            ok = ok & (xp.all(xp.isfinite(g), axis=axes) if axes else xp.isfinite(g))
        return ok

    def small_grad(grads: list[Any]) -> Any:
        out = per_run_max(xp, xp.abs(grads[0]), batch_ndim)
        for g in grads[1:]:
            out = xp.maximum(out, per_run_max(xp, xp.abs(g), batch_ndim))
        return out <= gtol

    state = optimizer.init(x, batch_ndim=batch_ndim)
    f, g = evaluate(x)
    evaluations = 1
    x_leaves = tree_flatten(x)[0]

    int_dtype = xp.int64
    zeros_i = xp.zeros(batch_shape, dtype=int_dtype, device=dev)
    status = zeros_i
    ok = finite(f, g)
    active = ok
    status = xp.where(ok, status, xp.asarray(4, dtype=int_dtype, device=dev))
    steps_to_target = zeros_i - 1

    def stop_converged(
        f_now: Any, g_now: list[Any], active: Any, status: Any, steps_to_target: Any, step: int
    ) -> tuple[Any, Any, Any]:
        """Active runs at the target value (status 1) or below gtol (status 2) stop here."""
        if target is not None:
            hit = active & (f_now <= target)
            steps_to_target = xp.where(hit, zeros_i + step, steps_to_target)
            status = xp.where(hit, xp.asarray(1, dtype=int_dtype, device=dev), status)
            active = active & ~hit
        if gtol is not None:
            small = active & small_grad(g_now)
            status = xp.where(small, xp.asarray(2, dtype=int_dtype, device=dev), status)
            active = active & ~small
        return active, status, steps_to_target

    active, status, steps_to_target = stop_converged(f, g, active, status, steps_to_target, 0)
    steps_taken = zeros_i
    inf = xp.asarray(float("inf"), dtype=like.dtype, device=dev)
    best_f = xp.where(ok, f, inf)
    best_x = list(x_leaves)

    rec_steps = [0]
    rec_losses = [f]
    rec_x = [x_leaves[0]] if record_x else []
    rec_fields: dict[str, list[Any]] = {}

    def info(step: int) -> StepInfo:
        return StepInfo(step, x, f, tree_unflatten(treedef, g), state, active)

    stopped_by_callback = False
    if callback is not None and _call_callback(callback, info(0)):
        stopped_by_callback = True
    k = 0
    while k < steps and not stopped_by_callback:
        if grad_noise > 0.0:
            g_used = [
                gi + grad_noise * normal(noise_seed, k, tuple(gi.shape), like=gi,
                                         batch_ndim=batch_ndim, stream=_NOISE_STREAM + i)
                for i, gi in enumerate(g)
            ]
        else:
            g_used = g
        x_new, state_new = optimizer.step(x, tree_unflatten(treedef, g_used), state, loss=f)
        new_leaves = tree_flatten(x_new)[0]
        f_new, g_new = evaluate(x_new)
        evaluations += 1
        k += 1
        ok = finite(f_new, g_new)
        moving = active & ok
        diverged = active & ~ok
        x_leaves = select_tree(xp, moving, new_leaves, x_leaves, batch_ndim)
        x = tree_unflatten(treedef, x_leaves)
        state = _freeze(xp, state_new, state, moving, batch_shape)
        f = xp.where(moving, f_new, f)
        g = select_tree(xp, moving, g_new, g, batch_ndim)
        steps_taken = xp.where(active, steps_taken + 1, steps_taken)
        status = xp.where(diverged, xp.asarray(4, dtype=int_dtype, device=dev), status)
        active = moving
        better = moving & (f < best_f)
        best_f = xp.where(better, f, best_f)
        best_x = select_tree(xp, better, x_leaves, best_x, batch_ndim)
        active, status, steps_to_target = stop_converged(f, g, active, status, steps_to_target, k)

        last = k == steps
        done = False
        if stop_when_done and k % check_every == 0:
            done = not bool(xp.any(active))
        if k % record_every == 0 or last or done:
            rec_steps.append(k)
            rec_losses.append(f)
            if record_x:
                rec_x.append(x_leaves[0])
            for name, value in _per_run_fields(xp, state, batch_shape).items():
                rec_fields.setdefault(name, []).append(value)
            if callback is not None and _call_callback(callback, info(k)):
                stopped_by_callback = True
        if done:
            break

    if stopped_by_callback:
        status = xp.where(active, xp.asarray(3, dtype=int_dtype, device=dev), status)

    losses = np.stack([np.asarray(to_numpy(v), dtype=np.float64) for v in rec_losses])
    history = {
        name: np.stack([np.asarray(to_numpy(v), dtype=np.float64) for v in values])
        for name, values in rec_fields.items()
        if len(values) == len(rec_losses) - 1
    }
    trace = Trace(
        optimizer=repr(optimizer),
        batch_shape=tuple(batch_shape),
        recorded_steps=np.asarray(rec_steps, dtype=np.int64),
        losses=losses,
        best_value=np.asarray(to_numpy(best_f), dtype=np.float64),
        best_x=tree_unflatten(treedef, best_x),
        x=x,
        state=state,
        final_value=np.asarray(to_numpy(f), dtype=np.float64),
        status=np.asarray(to_numpy(status), dtype=np.int64),
        steps_taken=np.asarray(to_numpy(steps_taken), dtype=np.int64),
        steps_to_target=np.asarray(to_numpy(steps_to_target), dtype=np.int64),
        steps=k,
        evaluations=evaluations,
        wall_time=0.0,
        state_history=history,
        xs=np.stack([to_numpy(v) for v in rec_x]) if record_x else None,
        target=target,
        gtol=gtol,
    )
    trace.wall_time = time.perf_counter() - t0
    return trace

