r"""The reference run loop: any optimizer on any problem and backend, one run or an ensemble.

:func:`run` drives ``opt.init`` / ``opt.step`` on an objective that returns values and
gradients (a :class:`physopt_ref.problems.Problem`, or any callable ``fun(x) -> (value, grad)``),
for many starting points at once when ``x0`` has leading ensemble axes. Each member of the
ensemble stops on its own (target value, gradient tolerance, divergence): a finished member is
frozen with ``xp.where`` masks, so the loop never branches on array data and never moves data to
the host inside a step; the host only asks "is anyone still running?" every ``check_every`` steps.

The loop is a few named steps: :func:`_start` evaluates the start and takes the stop decisions
there, :func:`_advance` takes one optimizer step and updates the per-run bookkeeping,
:func:`_stop_converged` takes the target / gtol decisions, :class:`_Recorder` keeps the records,
and :func:`_to_trace` moves the result to the host as a :class:`~physopt_ref.Trace`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_dask_array, is_jax_namespace

from physopt_ref.backends import to_numpy
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.tree import (
    batch_shape_of,
    tree_flatten,
    tree_unflatten,
)
from physopt_ref.core.validate import check_bool, check_int
from physopt_ref.runner.records import _Recorder, max_records
from physopt_ref.runner.run_checkpoint import load_run, problem_fingerprint, save_run
from physopt_ref.runner.trace import STATUS_MESSAGES, Trace

__all__ = ["STATUS_MESSAGES", "StepInfo", "Trace", "run"]

from physopt_ref.runner.advance import (
    _CALLBACK,
    StepInfo,
    _advance,
    _call_callback,
    _Config,
    _Ensemble,
    _objective,
    _per_run_fields,
    _Runs,
    _start,
)


def _info(ens: _Ensemble, runs: _Runs, k: int) -> StepInfo:
    tdef = ens.treedef
    return StepInfo(k, tree_unflatten(tdef, runs.x), runs.f, tree_unflatten(tdef, runs.g),
                    runs.state, runs.active)


def _to_trace(
    optimizer: Optimizer, ens: _Ensemble, cfg: _Config, runs: _Runs, rec: _Recorder, k: int,
) -> Trace:
    """Move the result to the host (the final and best points stay on the backend)."""

    def host(a: Any, dtype: Any) -> np.ndarray:
        return np.asarray(to_numpy(a), dtype=dtype)

    steps, losses, history, xs = rec.host()
    return Trace(
        optimizer=repr(optimizer),
        batch_shape=tuple(ens.batch_shape),
        recorded_steps=steps,
        losses=losses,
        best_value=host(runs.best_f, np.float64),
        best_x=tree_unflatten(ens.treedef, runs.best_x),
        x=tree_unflatten(ens.treedef, runs.x),
        state=runs.state,
        final_value=host(runs.f, np.float64),
        status=host(runs.status, np.int64),
        steps_taken=host(runs.steps_taken, np.int64),
        steps_to_target=host(runs.steps_to_target, np.int64),
        steps=k,
        evaluations=k + 1,
        wall_time=0.0,
        state_history=history,
        xs=xs,
        target=cfg.target,
        gtol=cfg.gtol,
    )


def _loop(
    optimizer: Optimizer, fun: Callable[..., Any], leaves: list[Any], ens: _Ensemble,
    cfg: _Config, resume: str | os.PathLike | None = None,
) -> Trace:
    t0 = time.perf_counter()
    cb = cfg.callback
    capacity = max_records(cfg.steps, cfg.record_every)

    def fields(state: Any) -> dict[str, Any]:
        return _per_run_fields(ens.xp, state, ens.batch_shape)

    if resume is None:
        runs = _start(optimizer, fun, leaves, ens, cfg)
        rec = _Recorder.start(capacity, cfg.record_x, fields, runs.f, runs.x[0])
        stopped, k, done, before = False, 0, False, 0.0
    else:
        saved = load_run(resume, optimizer, ens, cfg, leaves)
        runs = _Runs(**saved["runs"])
        rec = _Recorder.restored(capacity, cfg.record_x, fields, saved["records"])
        stopped, k, done, before = False, saved["step"], saved["done"], saved["elapsed"]
    every = cfg.checkpoint_every
    advance = _advance
    if cfg.compile:
        from physopt_ref.runner.compiled import jit_advance

        advance = jit_advance(optimizer, fun, ens, cfg)
    try:
        if resume is None:
            stopped = cb is not None and _call_callback(cb, _info(ens, runs, 0))
        elif k == cfg.steps and rec.steps[-1] != k:  # the end of this call, as in one call
            rec.add(k, runs.f, runs.x[0], runs.state)
            stopped = cb is not None and _call_callback(cb, _info(ens, runs, k))
        while k < cfg.steps and not stopped and not done:
            runs = advance(optimizer, fun, ens, cfg, runs, k)
            k += 1
            check = cfg.stop_when_done and k % cfg.check_every == 0
            done = check and not bool(ens.xp.any(runs.active))
            if k % cfg.record_every == 0 or k == cfg.steps or done:
                rec.add(k, runs.f, runs.x[0], runs.state)
                stopped = cb is not None and _call_callback(cb, _info(ens, runs, k))
            if every is not None and cfg.checkpoint is not None and k % every == 0 \
                    and k < cfg.steps:
                save_run(cfg.checkpoint, optimizer, ens, cfg, runs, rec, k, done=done,
                         stopped=stopped, elapsed=before + time.perf_counter() - t0)
    except BaseException as exc:  # Ctrl-C too: keep what was done, then re-raise
        elapsed = before + time.perf_counter() - t0
        _attach_partial_trace(exc, optimizer, ens, cfg, runs, rec, k, elapsed)
        if cfg.checkpoint is not None:
            _save_on_the_way_out(exc, optimizer, ens, cfg, runs, rec, k, done, elapsed)
        raise
    if cfg.checkpoint is not None:
        save_run(cfg.checkpoint, optimizer, ens, cfg, runs, rec, k, done=done, stopped=stopped,
                 elapsed=before + time.perf_counter() - t0)
    if stopped:
        runs = replace(runs, status=ens.xp.where(runs.active, ens.codes[_CALLBACK], runs.status))
    trace = _to_trace(optimizer, ens, cfg, runs, rec, k)
    trace.wall_time = before + time.perf_counter() - t0
    return trace


def _save_on_the_way_out(
    exc: BaseException, optimizer: Optimizer, ens: _Ensemble, cfg: _Config, runs: _Runs,
    rec: _Recorder, k: int, done: bool, elapsed: float,
) -> None:
    """Write the checkpoint of the ``k`` completed steps while ``exc`` leaves the loop."""
    assert cfg.checkpoint is not None
    try:
        save_run(cfg.checkpoint, optimizer, ens, cfg, runs, rec, k, done=done, stopped=False,
                 elapsed=elapsed)
    except Exception as inner:  # the exception itself must reach the caller in any case
        exc.add_note(f"physopt_ref.run: the checkpoint could not be written ({inner!r})")
        return
    exc.add_note(f"physopt_ref.run: the checkpoint {os.fspath(cfg.checkpoint)} holds the "
                 f"{k} completed steps (resume=... continues them)")


def _attach_partial_trace(
    exc: BaseException, optimizer: Optimizer, ens: _Ensemble, cfg: _Config, runs: _Runs,
    rec: _Recorder, k: int, elapsed: float,
) -> None:
    """Give ``exc`` the trace of the ``k`` steps completed before it (``exc.trace``, a note)."""
    try:
        trace = _to_trace(optimizer, ens, cfg, runs, rec, k)
        trace.wall_time = elapsed
        exc.trace = trace  # type: ignore[attr-defined]
    except Exception as inner:  # the exception itself must reach the caller in any case
        exc.add_note(f"physopt_ref.run: the partial trace could not be kept ({inner!r})")
        return
    exc.add_note(
        f"physopt_ref.run: raised after {k} completed steps; their trace is attached as "
        "exc.trace (a physopt_ref.Trace)"
    )


def _check_counts(steps: int, record_every: int, check_every: int, grad_noise: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    for name, value in (("record_every", record_every), ("check_every", check_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if grad_noise < 0:
        raise ValueError(f"grad_noise must be >= 0, got {grad_noise}")


def _check_flags(*, callback: Any, compile: Any, record_x: Any, stop_when_done: Any,
                 target: Any, gtol: Any) -> None:
    """The options of :func:`run` that are checked before the start is evaluated."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be a callable callback(StepInfo) or None, got "
                        f"{type(callback).__name__}: {callback!r:.60}")
    for name, value in (("compile", compile), ("record_x", record_x),
                        ("stop_when_done", stop_when_done)):
        check_bool(name, value)
    for name, value in (("target", target), ("gtol", gtol)):
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, int | float | np.integer | np.floating) or value != value):
            raise TypeError(f"{name} must be a real number or None, got {value!r:.60}")


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
    noise_member: int = 0,
    record_x: bool = False,
    stop_when_done: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: str | os.PathLike | None = None,
    compile: bool = False,
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
        Most steps per run: a run evaluates the objective at most ``steps + 1`` times (the start
        and once per step).
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
        :func:`physopt_ref.backends.normal` keyed by (``noise_seed``, member) and the step
        count, so member ``k`` of an ensemble sees the noise of a single run with the same
        seed and ``noise_member = k``, and different seeds never share a run's noise.
    noise_seed : int
        Seed of the gradient noise.
    noise_member : int
        Member index of the first run of ``x0`` for the gradient noise (default 0; members
        ``noise_member + k``): what :func:`physopt_ref.run_chunked` gives a chunk.
    record_x : bool
        Also record the points (an array ``x0`` only), e.g. to plot trajectories.
    stop_when_done : bool
        Leave the loop as soon as every run has stopped (checked every ``check_every`` steps).
    checkpoint : path, optional
        Write the loop to this file (a :mod:`physopt_ref.runner.checkpoint` ``.npz``, replaced
        atomically) when the call ends, and every ``checkpoint_every`` steps if given. Each write
        copies the runs to the host (a device synchronisation).
    checkpoint_every : int, optional
        Steps between checkpoints (``checkpoint`` required).
    resume : path, optional
        Continue the run saved in this checkpoint instead of starting at ``x0``: the loop goes
        on from the saved step with the saved points, optimizer state, records and step counter
        (the gradient noise is keyed by it), so ``steps`` is the total, and the trace equals
        the uninterrupted run's bit for bit (the wall time excepted). ``x0`` (or the problem's
        start) gives the backend, device, dtype and shapes; ``optimizer`` and the settings that
        shape the trace (``target``, ``gtol``, ``record_every``, ``check_every``,
        ``grad_noise``, ``noise_seed``, ``noise_member``, ``record_x``, ``stop_when_done``) must
        be those of the
        saved run, else :class:`~physopt_ref.runner.checkpoint.CheckpointError` names the
        difference.
        ``resume`` and ``checkpoint`` may be the same file.
    compile : bool
        JAX only: take each step (the optimizer step, the evaluation and the per-run
        bookkeeping) as one ``jax.jit`` call, traced once for the run. The records, the
        per-run stops and the trace are those of the eager loop, to rounding. ``problem`` must
        then be traceable (the bundled problems are). Other backends raise ``ValueError``.
        The compiled step is kept for later runs with the same optimizer settings, objective,
        step settings and shapes, which then give the same bits without compiling again
        (:mod:`physopt_ref.runner.compiled`: a bounded cache, ``clear_compile_cache()``).

    Returns
    -------
    Trace

    Raises
    ------
    TypeError
        Before the start is evaluated: a ``callback`` that is not callable, a flag
        (``compile``, ``record_x``, ``stop_when_done``) that is not a bool, a ``target`` or
        ``gtol`` that is not a real number. At the start: an objective whose first answer is
        not ``(value, grad)`` with a real value per run and a gradient of ``x``'s structure,
        shapes and a real floating dtype (the message says what came back).
    BaseException
        Whatever the objective or the callback raises after the start (``KeyboardInterrupt``
        included) propagates unchanged (same type, same traceback), carrying the record of the
        steps completed before it: ``exc.trace`` is the :class:`~physopt_ref.Trace` of those
        steps (``steps`` completed, the points and state after the last of them, the recorded
        losses), and a note (``exc.__notes__``) says so. With ``checkpoint=``, the checkpoint
        of those steps is written first (``resume=`` continues them). An exception while
        evaluating the start has no trace.

    Notes
    -----
    A run whose value or gradient becomes non-finite is frozen at its last finite point and
    marked diverged (status 4). NumPy's floating-point warnings are silenced inside the loop,
    since a diverging member of an ensemble is an expected, reported outcome.
    """
    _check_counts(steps, record_every, check_every, grad_noise)
    _check_flags(callback=callback, compile=compile, record_x=record_x,
                 stop_when_done=stop_when_done, target=target, gtol=gtol)
    if checkpoint_every is not None:
        if checkpoint is None:
            raise ValueError("checkpoint_every needs checkpoint=PATH")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or (
            checkpoint_every < 1
        ):
            raise ValueError(f"checkpoint_every must be an int >= 1, got {checkpoint_every!r}")
    fun = _objective(problem)
    if x0 is None:
        if not hasattr(problem, "start"):
            raise ValueError("x0 is required when the problem has no start()")
        x0 = problem.start()
    leaves, treedef = tree_flatten(x0)
    if any(is_dask_array(leaf) for leaf in leaves):
        raise TypeError(
            "run() does not take dask arrays (the graph would grow at every step and every stop "
            "check recompute it); split the ensemble into NumPy chunks on a cluster with "
            "physopt_ref.run_chunked(..., executor=dask.distributed.Client(...))"
        )
    if batch_ndim is None:
        is_problem = hasattr(problem, "value_and_grad") and len(leaves) == 1
        batch_ndim = leaves[0].ndim - 1 if is_problem else 0
    ens = _Ensemble(array_namespace(*leaves), treedef, leaves[0], batch_ndim,
                    batch_shape_of(leaves, batch_ndim))
    if compile and not is_jax_namespace(ens.xp):
        raise ValueError(
            "run(compile=True) compiles each step with jax.jit and needs JAX arrays; x0 holds "
            f"{ens.xp.__name__} arrays"
        )
    cfg = _Config(steps, target, gtol, callback, record_every, check_every, grad_noise,
                  noise_seed, record_x and len(leaves) == 1, stop_when_done, checkpoint,
                  checkpoint_every, bool(compile),
                  check_int("noise_member", noise_member, symbol="member index of the noise",
                            low=0, high=2**32 - 1), problem_fingerprint(problem, leaves))
    with np.errstate(all="ignore"):
        return _loop(optimizer, fun, leaves, ens, cfg, resume)
