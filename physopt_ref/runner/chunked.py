r"""Chunked runs: one ensemble split into ordinary runs on the workers of any executor.

:func:`run_chunked` splits an ensemble along its first axis into chunks
(:func:`physopt_ref.plan_chunks`: sized by a memory budget, spread evenly over the workers), runs
each chunk as an ordinary :func:`physopt_ref.run` on a NumPy (or CuPy, torch, JAX) slice of the
start, wherever the executor puts it, and merges the chunks' traces into the trace of the unsplit
run, bit for bit. The chunks are exact because member ``k`` of an ensemble draws what a single
run with the same seed and member index ``k`` draws: a chunk starting at member ``m0`` runs
with the optimizer's ``member`` and the gradient noise's ``noise_member`` shifted by ``m0``
(:mod:`physopt_ref.runner.chunk_plan`), and the merge reproduces the unsplit loop's stop and
records (:mod:`physopt_ref.runner.chunk_merge`).

Engines
-------
- ``executor=None``: the chunks run one after the other in this process (a memory-bounded
  run of a large ensemble).
- A ``dask.distributed.Client`` (the supported cluster engine, ``pip install
  physopt_ref[distributed]``): each chunk is a task; results are fetched as they complete.
  Dask re-runs the tasks of a worker that dies (up to its ``allowed-failures``, 3 by default);
  the tasks are pure (a chunk's result depends only on its inputs), so a re-run gives the same
  bits.
- Any ``concurrent.futures.Executor`` (``ProcessPoolExecutor``, ``ThreadPoolExecutor``,
  ``mpi4py.futures``, loky): ``submit`` per chunk. A process pool does not re-run the chunks of a
  process that dies; they are reported as failed.
- Any map-like callable ``executor(fn, iterable)`` (``map``, ``multiprocessing.Pool().imap``).

Dask arrays through :func:`physopt_ref.run` are not supported: the graph grows at every step and
every stop check recomputes it (dask/dask#3902). Chunks of NumPy arrays on dask workers are the
way to use a cluster.
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from physopt_ref.core.contract import Optimizer
from physopt_ref.core.validate import check_int
from physopt_ref.runner.chunk_merge import merge_traces
from physopt_ref.runner.chunk_plan import (
    ChunkPlan,
    chunk_optimizer,
    plan_chunks,
    shift_member,
    slice_rows,
)
from physopt_ref.runner.loop import _check_counts, run
from physopt_ref.runner.trace import Trace

__all__ = ["ChunkedRunError", "run_chunked"]


@dataclass(frozen=True)
class _ChunkTask:
    """Everything one chunk needs (picklable; the result depends on nothing else)."""

    index: int
    optimizer: Optimizer
    problem: Any
    x0: Any
    steps: int
    options: Mapping[str, Any] = field(default_factory=dict)


def _run_chunk(task: _ChunkTask) -> Trace:
    """Run one chunk: an ordinary :func:`physopt_ref.run` (pure, so safe to re-run)."""
    return run(task.optimizer, task.problem, task.x0, task.steps, **task.options)


def _run_chunk_captured(task: _ChunkTask) -> tuple[int, Trace | None, BaseException | None]:
    """:func:`_run_chunk` for map-like executors: an exception comes back as a value."""
    try:
        return task.index, _run_chunk(task), None
    except Exception as exc:  # reported per chunk by run_chunked
        return task.index, None, exc


class ChunkedRunError(RuntimeError):
    """Some chunks of :func:`run_chunked` raised; the others' traces are kept.

    Attributes
    ----------
    errors : dict of int to BaseException
        The exception of each failed chunk, by chunk index.
    traces : dict of int to Trace
        The traces of the chunks that completed, by chunk index.
    plan : ChunkPlan
        The split (``plan.bounds[i]`` are the rows of chunk ``i``).

    Notes
    -----
    ``run_chunked(..., chunk_size=err.plan.chunk_size, completed=err.traces)`` runs only the
    missing chunks (the plan must come out the same: same ensemble, same executor's
    parallelism) and merges them with the kept ones.
    """

    def __init__(self, errors: dict[int, BaseException], traces: dict[int, Trace],
                 plan: ChunkPlan) -> None:
        self.errors = dict(sorted(errors.items()))
        self.traces = dict(sorted(traces.items()))
        self.plan = plan
        lines = [f"{len(self.errors)} of {plan.n_chunks} chunks failed "
                 f"({len(self.traces)} completed and kept in .traces):"]
        for i, exc in self.errors.items():
            start, stop = plan.bounds[i]
            lines.append(f"  chunk {i} (rows {start}:{stop}): {type(exc).__name__}: {exc}")
        super().__init__("\n".join(lines))


def _is_dask_client(executor: Any) -> bool:
    return type(executor).__module__.split(".")[0] == "distributed" and hasattr(
        executor, "submit") and hasattr(executor, "nthreads")


def _parallelism(executor: Any) -> int:
    """How many chunks the executor runs at once, where it says so (else 1)."""
    if executor is None:
        return 1
    if _is_dask_client(executor):
        return max(1, sum(executor.nthreads().values()))
    workers = getattr(executor, "_max_workers", None)  # concurrent.futures' pools
    return workers if isinstance(workers, int) and workers > 0 else 1


Outcome = tuple[int, Trace | None, BaseException | None]


def _serial(tasks: list[_ChunkTask]) -> Iterable[Outcome]:
    for task in tasks:
        yield _run_chunk_captured(task)


def _dask(client: Any, tasks: list[_ChunkTask]) -> Iterable[Outcome]:
    from distributed import as_completed

    token = uuid.uuid4().hex
    futures = {client.submit(_run_chunk, task, key=f"physopt-chunk-{token}-{task.index}"):
               task.index for task in tasks}
    for future in as_completed(futures):
        index = futures.pop(future)
        try:
            yield index, future.result(), None
        except Exception as exc:  # the chunk's own error, or dask's (KilledWorker)
            yield index, None, exc
        finally:
            future.release()


def _futures(executor: Any, tasks: list[_ChunkTask]) -> Iterable[Outcome]:
    futures = {executor.submit(_run_chunk, task): task.index for task in tasks}
    for future in futures:
        if not isinstance(future, concurrent.futures.Future):
            raise TypeError(
                "executor.submit must return concurrent.futures.Future objects, got "
                f"{type(future).__name__}; pass a map-like callable instead"
            )
    for future in concurrent.futures.as_completed(futures):
        index = futures.pop(future)
        exc = future.exception()
        yield index, (None if exc is not None else future.result()), exc


def _mapped(executor: Callable[..., Iterable[Any]], tasks: list[_ChunkTask]) -> Iterable[Outcome]:
    yield from executor(_run_chunk_captured, tasks)


def _outcomes(executor: Any, tasks: list[_ChunkTask]) -> Iterable[Outcome]:
    if executor is None:
        return _serial(tasks)
    if _is_dask_client(executor):
        return _dask(executor, tasks)
    if hasattr(executor, "submit"):
        return _futures(executor, tasks)
    if callable(executor):
        return _mapped(executor, tasks)
    raise TypeError(
        "executor must be None, a dask.distributed.Client, a concurrent.futures.Executor or a "
        f"map-like callable executor(fn, iterable); got {type(executor).__name__}"
    )


def _check_completed(completed: Mapping[int, Trace], plan: ChunkPlan) -> dict[int, Trace]:
    out = {}
    for index, trace in completed.items():
        if not 0 <= index < plan.n_chunks:
            raise ValueError(f"completed has chunk {index}; the plan has {plan.n_chunks} chunks")
        start, stop = plan.bounds[index]
        if trace.batch_shape != (stop - start, *plan.batch_shape[1:]):
            raise ValueError(
                f"completed chunk {index} has the ensemble shape {trace.batch_shape}; the plan's "
                f"chunk {index} has {(stop - start, *plan.batch_shape[1:])} (pass the same "
                "chunk_size as the run that produced it)"
            )
        out[index] = trace
    return out


def _refuse_loop_options(**given: Any) -> None:
    """The options of :func:`physopt_ref.run` that a chunked run does not take."""
    for name, value in given.items():
        if value is None:
            continue
        if name == "callback":
            raise TypeError(
                "run_chunked does not take callback=: each chunk runs apart (on another worker), "
                "so a callback would see one chunk at a time; use progress=(done, total) for "
                "completed chunks, or physopt_ref.run for a callback over the whole ensemble"
            )
        raise TypeError(
            f"run_chunked does not take {name}=: a chunked run is kept and resumed by whole "
            "chunks, not by checkpoint files (which would lie on the workers' disks). A failed "
            "call raises ChunkedRunError, whose .traces holds the chunks that completed; "
            "run_chunked(..., chunk_size=err.plan.chunk_size, completed=err.traces) runs only "
            "the others. For checkpoints within one run, use physopt_ref.run"
        )


def run_chunked(
    optimizer: Optimizer,
    problem: Any,
    x0: Any = None,
    steps: int = 1000,
    *,
    executor: Any = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    progress: Callable[[int, int], Any] | None = None,
    completed: Mapping[int, Trace] | None = None,
    target: float | None = None,
    gtol: float | None = None,
    record_every: int = 1,
    check_every: int = 10,
    batch_ndim: int | None = None,
    grad_noise: float = 0.0,
    noise_seed: int = 0,
    noise_member: int = 0,
    record_x: bool = False,
    stop_when_done: bool = True,
    callback: Any = None,
    checkpoint: Any = None,
    checkpoint_every: Any = None,
    resume: Any = None,
) -> Trace:
    r""":func:`physopt_ref.run` of an ensemble, split into chunks that run on ``executor``.

    The result equals ``run(optimizer, problem, x0, steps, ...)`` bit for bit (every array of
    the :class:`~physopt_ref.Trace`; only ``wall_time`` differs): each chunk is an ordinary
    run of some rows of ``x0`` with its seeds shifted to its first member, and the merge
    reproduces the unsplit run's end and records.

    Parameters
    ----------
    optimizer, problem, x0, steps :
        As for :func:`physopt_ref.run`; ``x0`` needs at least one ensemble axis (the chunks
        split the first). ``optimizer`` and ``problem`` must be picklable for an executor that
        runs in other processes (the bundled ones are).
    executor : optional
        Where the chunks run: None (here, one after the other), a
        ``dask.distributed.Client``, a ``concurrent.futures.Executor``, or a map-like callable
        ``executor(fn, iterable)``. See the module docstring for what each does when a worker
        dies.
    chunk_size : int, optional
        Rows of the first ensemble axis per chunk. By default the chunk size comes from
        ``memory_budget``.
    memory_budget : int, optional
        Bytes one chunk may hold at its peak on a worker (default 256 MiB,
        :data:`physopt_ref.runner.chunk_plan.DEFAULT_MEMORY_BUDGET`): the estimate of
        :func:`physopt_ref.plan_chunks` (parameters, gradients, optimizer state, records, the
        serialised result) times the chunk's members stays within it. A worker running one
        chunk at a time (dask's ``threads_per_worker=1``) then holds at most that for the run;
        the merged trace is on the caller.
    progress : callable, optional
        ``progress(done, total)`` after each chunk completes (or fails).
    completed : mapping of int to Trace, optional
        Chunks already run (``ChunkedRunError.traces`` of an earlier call with the same
        plan): they are not run again.
    target, gtol, record_every, check_every, batch_ndim, grad_noise, noise_seed, noise_member, \
record_x, stop_when_done :
        As for :func:`physopt_ref.run`.
    callback, checkpoint, checkpoint_every, resume :
        Not available (a ``TypeError`` says so when one is given): a callback would see one
        chunk at a time, and a chunked run is kept and resumed by whole chunks instead of
        checkpoint files (which would lie on the workers' disks): ``ChunkedRunError.traces``
        holds the chunks that completed, and ``completed=`` runs only the others.

    Returns
    -------
    Trace
        The merged trace; ``wall_time`` is the whole call's.

    Raises
    ------
    ChunkedRunError
        When chunks raised: each by its index, with the completed chunks' traces kept.
    """
    t0 = time.perf_counter()
    _refuse_loop_options(callback=callback, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every, resume=resume)
    _check_counts(steps, record_every, check_every, grad_noise)
    noise_seed = check_int("noise_seed", noise_seed, symbol="seed of the gradient noise", low=0,
                           high=2**64 - 1)
    noise_member = check_int("noise_member", noise_member, symbol="member index of the noise",
                             low=0, high=2**32 - 1)
    if x0 is None:
        if not hasattr(problem, "start"):
            raise ValueError("x0 is required when the problem has no start()")
        x0 = problem.start()
    plan = plan_chunks(optimizer, problem, x0, steps, chunk_size=chunk_size,
                       memory_budget=memory_budget, parallelism=_parallelism(executor),
                       batch_ndim=batch_ndim, record_every=record_every, record_x=record_x,
                       grad_noise=grad_noise)
    done = _check_completed(completed or {}, plan)
    options = {"target": target, "gtol": gtol, "record_every": record_every,
               "check_every": check_every, "batch_ndim": len(plan.batch_shape),
               "grad_noise": grad_noise, "record_x": record_x, "stop_when_done": stop_when_done}
    tasks = []
    for index, (start, stop) in enumerate(plan.bounds):
        if index in done:
            continue
        first = start * plan.members_per_row
        tasks.append(_ChunkTask(
            index=index,
            optimizer=chunk_optimizer(optimizer, start, stop, plan.members_per_row),
            problem=problem,
            x0=slice_rows(x0, start, stop),
            steps=steps,
            options={**options, "noise_seed": noise_seed,
                     "noise_member": shift_member(noise_member, first)},
        ))
    errors: dict[int, BaseException] = {}
    finished = len(done)
    if progress is not None and finished:
        progress(finished, plan.n_chunks)
    for index, trace, exc in _outcomes(executor, tasks):
        if exc is not None:
            errors[index] = exc
        else:
            assert trace is not None  # an outcome holds a trace or an error
            done[index] = trace
        finished += 1
        if progress is not None:
            progress(finished, plan.n_chunks)
    if errors:
        raise ChunkedRunError(errors, done, plan)
    traces = [done[i] for i in range(plan.n_chunks)]
    return merge_traces(traces, optimizer=repr(optimizer), batch_shape=plan.batch_shape,
                        wall_time=time.perf_counter() - t0)

