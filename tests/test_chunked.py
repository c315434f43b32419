"""Tests of :func:`physopt_ref.run_chunked` in one process: exact merges, plans, errors, memory.

The cluster tests (dask LocalCluster, killed workers, the command line) are in
``tests/test_distributed.py``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle
import tracemalloc
from typing import Any

import numpy as np
import pytest
from physopt_ref.problems import ackley, quadratic

import physopt_ref as po
from physopt_ref import REGISTRY, ChunkedRunError, plan_chunks, run, run_chunked
from physopt_ref.runner.chunk_plan import CHUNK_OVERHEAD_BYTES, DEFAULT_MEMORY_BUDGET
from physopt_ref.runner.chunked import _ChunkTask, _run_chunk

from .trace_checks import assert_same_trace

STOCHASTIC = sorted(name for name, e in REGISTRY.items() if e.stochastic)
QUAD = quadratic(dim=3, condition=10.0)
ACKLEY = ackley(dim=2, b=0.02)


def _optimizer(name: str, **over: Any) -> po.Optimizer:
    entry = REGISTRY[name]
    return entry.factory(**{**entry.test_hyperparameters, **over})


def _recording_map(ends: list[int]):
    """A map-like executor that runs the chunks here and notes where each chunk's loop ended."""

    def executor(fn, tasks):
        for task in tasks:
            index, trace, exc = fn(task)
            ends.append(trace.steps)
            yield index, trace, exc

    return executor


def test_the_registry_has_stochastic_optimizers():
    assert {"bbi", "ecdsep", "gravity"} <= set(STOCHASTIC)


@pytest.mark.parametrize("name", [*STOCHASTIC, "heavy_ball"])
def test_merged_trace_equals_unsplit_run_with_noise_and_early_stops(name):
    """Seeds and noise seeds shifted per chunk; chunks that stop early padded exactly.

    Starts from 0.01 to 30 times (1, 1, 1): the near ones reach the target within a few steps,
    so the first chunks stop long before the last (checked), and the merged run must still end,
    record and report like the unsplit one.
    """
    x0 = np.logspace(-2, 1.5, 23)[:, None] * np.ones(3)
    kw = {"grad_noise": 1e-3, "noise_seed": 3, "target": QUAD.f_min + 0.1, "check_every": 7,
          "record_every": 5, "record_x": True}
    opt = _optimizer(name)
    expected = run(opt, QUAD, x0, 300, **kw)
    ends: list[int] = []
    merged = run_chunked(opt, QUAD, x0, 300, chunk_size=4, executor=_recording_map(ends), **kw)
    assert_same_trace(merged, expected)
    assert len(ends) == 6 and min(ends) < merged.steps  # some chunks stopped first
    assert np.any(merged.status == 1) and merged.xs is not None


@pytest.mark.parametrize("name", [*STOCHASTIC, "heavy_ball"])
def test_merged_trace_equals_unsplit_run_on_ackley(name):
    """Ackley from U[-4, 4]²: bounces, jitter, V0 draws and gradient noise in every chunk."""
    x0 = np.random.default_rng(1).uniform(-4.0, 4.0, (37, 2))
    kw = {"grad_noise": 0.05, "noise_seed": 11, "target": 1.0, "record_every": 3}
    opt = _optimizer(name)
    assert_same_trace(run_chunked(opt, ACKLEY, x0, 100, chunk_size=8, **kw),
                      run(opt, ACKLEY, x0, 100, **kw))


def test_whole_ensemble_stops_early_as_the_unsplit_run():
    """Every run reaches the target: the merged loop ends where the unsplit one does."""
    x0 = np.logspace(-2, 1, 23)[:, None] * np.ones(3)
    kw = {"target": QUAD.f_min + 0.5, "check_every": 7, "record_every": 5}
    opt = po.heavy_ball(lr=0.1, momentum=0.5)
    expected = run(opt, QUAD, x0, 2000, **kw)
    ends: list[int] = []
    merged = run_chunked(opt, QUAD, x0, 2000, chunk_size=4, executor=_recording_map(ends), **kw)
    assert_same_trace(merged, expected)
    assert expected.steps < 2000 and np.all(expected.status == 1)
    assert len(set(ends)) > 1 and max(ends) == expected.steps


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_optimizer_merges_exactly(name):
    x0 = np.random.default_rng(2).normal(size=(9, 3))
    opt = _optimizer(name)
    assert_same_trace(run_chunked(opt, QUAD, x0, 40, chunk_size=2, grad_noise=0.1),
                      run(opt, QUAD, x0, 40, grad_noise=0.1))


def test_two_ensemble_axes_and_per_run_sweeps():
    """Chunks split the first of two ensemble axes; per-run arrays are sliced with them."""
    rows, cols = 5, 3
    x0 = np.random.default_rng(3).uniform(-4.0, 4.0, (rows, cols, 2))
    lr = np.linspace(0.005, 0.02, rows * cols).reshape(rows, cols)
    opt = po.bbi(lr=lr, delta_e=2.0, t0=20, n_fixed_bounces=4, t1=100, v0=1e-4, seed=7)
    kw = {"batch_ndim": 2, "grad_noise": 0.01, "noise_seed": 5, "record_every": 10}
    expected = run(opt, ACKLEY, x0, 200, **kw)
    merged = run_chunked(opt, ACKLEY, x0, 200, chunk_size=2, **kw)
    assert_same_trace(merged, expected)
    assert merged.batch_shape == (rows, cols)


def test_tree_parameters_and_a_callable_objective():
    def fun(x):
        value = np.sum(x["a"] ** 2, axis=-1) + np.sum(x["b"] ** 4, axis=(-2, -1)) + 0.5
        return value, {"a": 2.0 * x["a"], "b": 4.0 * x["b"] ** 3}

    rng = np.random.default_rng(4)
    x0 = {"a": rng.normal(size=(7, 3)), "b": rng.normal(size=(7, 2, 2))}
    opt = po.gravity(lr=0.05, alpha=0.05, seed=2)
    expected = run(opt, fun, x0, 60, batch_ndim=1, grad_noise=0.1)
    assert_same_trace(run_chunked(opt, fun, x0, 60, batch_ndim=1, grad_noise=0.1, chunk_size=3),
                      expected)


def test_backends(xp):
    x0 = xp.asarray(np.random.default_rng(5).uniform(-4.0, 4.0, (10, 2)))
    opt = po.ecdsep(lr=0.05, eta=1.0, seed=1)
    kw = {"grad_noise": 0.01, "noise_seed": 2, "record_every": 7}
    merged = run_chunked(opt, ACKLEY, x0, 30, chunk_size=3, **kw)
    assert_same_trace(merged, run(opt, ACKLEY, x0, 30, **kw))


def test_float32():
    x0 = np.random.default_rng(6).uniform(-4.0, 4.0, (11, 2)).astype(np.float32)
    opt = po.bbi(lr=0.01, delta_e=2.0, seed=3)
    merged = run_chunked(opt, ACKLEY, x0, 80, chunk_size=4, grad_noise=0.05)
    assert merged.x.dtype == np.float32
    assert_same_trace(merged, run(opt, ACKLEY, x0, 80, grad_noise=0.05))


def test_the_largest_seed_and_member_offsets_chunk_exactly():
    """Seeds up to 2**64 - 1 and member offsets up to 2**32 - 8: the chunks keep the seed and
    shift the member offsets, as the unsplit run's members are numbered."""
    x0 = np.random.default_rng(7).normal(size=(8, 2))
    top = 2**64 - 3
    opt = po.gravity(lr=0.05, alpha=0.05, seed=top, member=2**32 - 8)
    kw = {"grad_noise": 0.1, "noise_seed": top, "noise_member": 2**32 - 8}
    assert_same_trace(run_chunked(opt, ACKLEY, x0, 20, chunk_size=3, **kw),
                      run(opt, ACKLEY, x0, 20, **kw))


def test_thread_and_process_pools():
    x0 = np.random.default_rng(8).uniform(-4.0, 4.0, (12, 2))
    opt = po.bbi(lr=0.01, delta_e=2.0, seed=3)
    expected = run(opt, ACKLEY, x0, 50, grad_noise=0.05)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert_same_trace(run_chunked(opt, ACKLEY, x0, 50, executor=pool, grad_noise=0.05),
                          expected)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        plan = plan_chunks(opt, ACKLEY, x0, 50, parallelism=2)
        assert plan.n_chunks == 2  # one per worker (their count is read from the pool)
        assert_same_trace(run_chunked(opt, ACKLEY, x0, 50, executor=pool, grad_noise=0.05),
                          expected)
    assert_same_trace(run_chunked(opt, ACKLEY, x0, 50, executor=map, chunk_size=5,
                                  grad_noise=0.05), expected)


def test_progress_counts_chunks():
    seen = []
    x0 = np.ones((6, 2))
    run_chunked(po.sgd(lr=0.1), ACKLEY, x0, 5, chunk_size=2,
                progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


# ---------------------------------------------------------------------------------------------
# Errors


class Flaky(po.problems.Problem):
    """Ackley that raises for chunks holding a start with x[0] == 3.5 while ``broken`` is set."""

    name = "flaky"
    dim = 2
    broken = True
    calls = 0

    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        type(self).calls += 1
        if type(self).broken and bool(xp.any(x[..., 0] == 3.5)):
            raise FloatingPointError("poisoned start")
        return ACKLEY.value_and_grad(x)


def test_a_failing_chunk_is_reported_by_index_and_the_others_kept():
    x0 = np.random.default_rng(9).uniform(-3.0, 3.0, (12, 2))
    x0[7, 0] = 3.5  # chunk 2 of rows [6, 9)
    opt = po.gravity(lr=0.05, alpha=0.05, seed=4)
    Flaky.broken = True
    with pytest.raises(ChunkedRunError) as info:
        run_chunked(opt, Flaky(), x0, 30, chunk_size=3, grad_noise=0.1)
    err = info.value
    assert list(err.errors) == [2] and isinstance(err.errors[2], FloatingPointError)
    assert sorted(err.traces) == [0, 1, 3]
    assert err.plan.bounds[2] == (6, 9)
    assert "chunk 2 (rows 6:9): FloatingPointError: poisoned start" in str(err)
    # fixed: only the failed chunk runs again, and the result is the unsplit run's
    Flaky.broken = False
    Flaky.calls = 0
    merged = run_chunked(opt, Flaky(), x0, 30, chunk_size=err.plan.chunk_size,
                         completed=err.traces, grad_noise=0.1)
    assert Flaky.calls == 31  # one chunk: the start and 30 steps
    assert_same_trace(merged, run(opt, ACKLEY, x0, 30, grad_noise=0.1))


def test_map_like_executor_reports_errors_too():
    x0 = np.random.default_rng(9).uniform(-3.0, 3.0, (4, 2))
    x0[0, 0] = 3.5
    Flaky.broken = True
    with pytest.raises(ChunkedRunError) as info:
        run_chunked(po.sgd(lr=0.1), Flaky(), x0, 5, chunk_size=2, executor=map)
    assert list(info.value.errors) == [0] and list(info.value.traces) == [1]


def test_completed_chunks_must_match_the_plan():
    x0 = np.ones((6, 2))
    trace = run(po.sgd(lr=0.1), ACKLEY, x0[:2], 5)
    with pytest.raises(ValueError, match="completed chunk 0 has the ensemble shape"):
        run_chunked(po.sgd(lr=0.1), ACKLEY, x0, 5, chunk_size=3, completed={0: trace})
    with pytest.raises(ValueError, match="the plan has 3 chunks"):
        run_chunked(po.sgd(lr=0.1), ACKLEY, x0, 5, chunk_size=2, completed={5: trace})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 0}, "chunk_size must be an int >= 1"),
        ({"chunk_size": 2, "memory_budget": 2**20}, "chunk_size or memory_budget, not both"),
        ({"memory_budget": 1000}, "memory_budget = 1000 bytes is too small"),
        ({"record_every": 0}, "record_every must be an int >= 1"),
        ({"noise_seed": -1}, "noise_seed"),
        ({"noise_member": 2**32}, "noise_member"),
        ({"executor": 3}, "executor must be None, a dask.distributed.Client"),
        ({"callback": print}, "does not take callback=.*progress="),
        ({"checkpoint": "c.npz"}, "does not take checkpoint=.*completed=err.traces"),
        ({"checkpoint_every": 5}, "does not take checkpoint_every="),
        ({"resume": "c.npz"}, "does not take resume=.*by whole\n?.*chunks"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        run_chunked(po.sgd(lr=0.1), ACKLEY, np.ones((4, 2)), 5, **kwargs)


def test_a_single_start_is_not_an_ensemble():
    with pytest.raises(ValueError, match="no ensemble axes"):
        run_chunked(po.sgd(lr=0.1), ACKLEY, np.ones(2), 5)


def test_an_unregistered_seeded_optimizer_cannot_be_rebuilt():
    base = po.heavy_ball(lr=0.1)
    custom = po.Optimizer("my_seeded", {**base.hyperparameters, "seed": 0},
                          init=base._init_rule, update=base._update_rule,
                          state_type=base.state_type)
    with pytest.raises(ValueError, match="no registered factory named 'my_seeded'"):
        run_chunked(custom, ACKLEY, np.ones((4, 2)), 5, chunk_size=2)
    # one chunk needs no rebuilding
    assert_same_trace(run_chunked(custom, ACKLEY, np.ones((4, 2)), 5, chunk_size=4),
                      run(custom, ACKLEY, np.ones((4, 2)), 5))


def test_chained_optimizers_with_seeds_and_per_run_transform_arrays():
    """A chain's seeded core gets the chunk's seed and its transforms' per-run arrays are sliced
    (and a family's own keyword transform, coolmomentum's weight_decay, too)."""
    x0 = np.random.default_rng(4).uniform(-4.0, 4.0, (9, 2))
    decay = np.linspace(0.0, 0.2, 9)
    kw = {"grad_noise": 0.05, "noise_seed": 2, "record_every": 4}
    chained = po.chain(po.non_finite_guard(), po.coupled_weight_decay(decay),
                       po.clip_by_global_norm(2.0), _optimizer("bbi"))
    cool = _optimizer("coolmomentum", weight_decay=decay)
    for opt in (chained, cool):
        merged = run_chunked(opt, ACKLEY, x0, 40, chunk_size=2, **kw)
        assert_same_trace(merged, run(opt, ACKLEY, x0, 40, **kw))
    assert po.run_chunked(chained, ACKLEY, x0, 2, chunk_size=2).optimizer == repr(chained)


def test_run_refuses_dask_arrays():
    da = pytest.importorskip("dask.array")
    x0 = da.from_array(np.ones((4, 2)), chunks=2)
    with pytest.raises(TypeError, match=r"does not take dask arrays.*run_chunked"):
        run(po.sgd(lr=0.1), ACKLEY, x0, 5)


# ---------------------------------------------------------------------------------------------
# Plans and memory


def test_plan_spreads_rows_evenly_over_the_workers():
    opt = po.heavy_ball(lr=0.1)
    plan = plan_chunks(opt, ACKLEY, np.ones((10, 2)), 10, chunk_size=4, parallelism=2)
    assert plan.bounds == ((0, 3), (3, 6), (6, 8), (8, 10))  # 3 chunks -> 4, sizes 3, 3, 2, 2
    assert plan.chunk_size == 3 and plan.n_chunks == 4
    assert plan_chunks(opt, ACKLEY, np.ones((3, 2)), 10, chunk_size=1,
                       parallelism=8).n_chunks == 3  # never more chunks than rows


def test_a_million_starts_fit_the_default_budget():
    """1e6 2-D starts, BBI for 1000 steps: every chunk's estimate is within 256 MiB."""
    x0 = np.zeros((10**6, 2))
    opt = po.bbi(lr=0.01, delta_e=2.0)
    for steps, record_every in ((1000, 1000), (1000, 1)):
        plan = plan_chunks(opt, ACKLEY, x0, steps, record_every=record_every, parallelism=2)
        assert plan.memory_budget == DEFAULT_MEMORY_BUDGET
        assert plan.chunk_bytes <= DEFAULT_MEMORY_BUDGET
        assert plan.n_chunks % 2 == 0 and plan.bounds[-1][1] == 10**6
    assert plan.n_chunks > 100  # every step recorded: 1001 records per member


def _chunk_peak(
    opt: po.Optimizer, problem: Any, x0: np.ndarray, steps: int, **kw: Any
) -> tuple[int, int]:
    """Peak bytes traced while a chunk runs and its result is serialised (as a worker does)."""
    plan = plan_chunks(opt, problem, x0, steps, chunk_size=x0.shape[0], **kw)
    task = _ChunkTask(0, opt, problem, x0, steps, {"batch_ndim": 1, **kw})
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = pickle.dumps(_run_chunk(task))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert result
    return peak, plan.chunk_bytes


@pytest.mark.parametrize("name", ["heavy_ball", "bbi", "ecdsep", "dyna"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("record_every", [1, 50])
def test_a_budget_sized_chunk_stays_within_the_budget(name, dtype, record_every):
    """Measured with tracemalloc (which sees NumPy's buffers): a chunk as large as a 4 MiB budget
    allows for 1e6 2-D starts peaks within 4 MiB, and above a quarter of the estimate (the
    estimate is not a blanket over-allowance)."""
    budget = 4 * 2**20
    opt = _optimizer(name)
    kw = {"record_every": record_every, "grad_noise": 0.1, "record_x": record_every == 1}
    plan = plan_chunks(opt, ACKLEY, np.zeros((10**6, 2), dtype=dtype), 30,
                       memory_budget=budget, **kw)
    rows = plan.chunk_size
    x0 = np.random.default_rng(10).uniform(-4.0, 4.0, (rows, 2)).astype(dtype)
    peak, estimate = _chunk_peak(opt, ACKLEY, x0, 30, **kw)
    assert estimate <= budget
    assert peak <= budget, f"{peak} bytes measured for a budget of {budget}"
    assert peak >= 0.25 * (estimate - CHUNK_OVERHEAD_BYTES), (peak, estimate)
