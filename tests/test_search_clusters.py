"""The global search on clusters (issue 27): cut-and-splice crossover, distinct elites, the
incumbent kept, the polish's BLAS threads, and ``physopt-ref search``'s driver settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from physopt_ref.problems import ackley, lennard_jones, quadratic
from physopt_ref.problems._cluster_moves import splice

import physopt_ref as po
from physopt_ref.runner.search_parts import Counter, distinct, polish_lbfgsb


def _pair_distances(pos: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    return d[np.triu_indices(len(pos), 1)]


def test_splice_joins_the_top_of_one_parent_to_the_bottom_of_the_other():
    problem = lennard_jones(13)
    a = problem.minima[0].location.reshape(13, 3)
    b = problem.random_starts(1, 5)[0].reshape(13, 3)
    normal = np.array([0.0, 0.0, 1.0])
    child = splice(a, b, normal, 6, problem.pair_distance)
    top = a[np.argsort(-a[:, 2], kind="stable")[:6]]
    bottom = b[np.argsort(b[:, 2], kind="stable")[:7]]
    np.testing.assert_array_equal(child[:6], top)  # the top part is unmoved
    shift = child[6:] - bottom  # the bottom part moved rigidly along the normal only
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-12)
    np.testing.assert_allclose(shift[0, :2], 0.0, atol=1e-12)
    cross = np.linalg.norm(child[:6, None, :] - child[None, 6:, :], axis=-1)
    assert np.min(cross) >= 0.85 * problem.pair_distance - 1e-12


def test_cut_and_splice_children_mix_the_parents_and_have_finite_energy():
    problem = lennard_jones(13)
    a = problem.minima[0].location
    b = problem.random_starts(1, 7)[0]
    rng = np.random.default_rng(0)
    da, db = _pair_distances(a.reshape(13, 3)), _pair_distances(b.reshape(13, 3))
    mixed = 0
    for _ in range(20):
        child = problem.crossover(rng, a, b)
        assert child.shape == a.shape
        pos = child.reshape(13, 3)
        np.testing.assert_allclose(pos.mean(axis=0), 0.0, atol=1e-12)
        dc = _pair_distances(pos)
        assert np.min(dc) >= 0.85 * problem.pair_distance - 1e-9
        assert np.isfinite(problem.value(child))
        # Pairs inside a part keep a distance of its parent (a part of one atom has none).
        of_a = np.any(np.min(np.abs(dc[:, None] - da[None, :]), axis=1) < 1e-9)
        of_b = np.any(np.min(np.abs(dc[:, None] - db[None, :]), axis=1) < 1e-9)
        assert of_a or of_b
        mixed += of_a and of_b
    assert mixed >= 10


def test_distinct_keeps_the_first_of_each_level():
    values = np.array([-3.0, -3.0 + 1e-9, -2.0, np.inf, -3.0 - 1e-9, -1.0, np.nan])
    keep = distinct(values, 1e-6)
    assert keep.tolist() == [False, False, True, False, True, True, False]
    assert distinct(values, 0.0).tolist() == [True, True, True, False, True, True, False]


def test_crossover_is_used_at_its_rate_and_its_shape_is_checked():
    calls = []

    def crossover(rng, x, y):
        calls.append((x.copy(), y.copy()))
        return 0.5 * (x + y)

    kwargs = {"budget": 3000, "members": 4, "round_steps": 10, "elite": 3, "seed": 0}
    opt = po.heavy_ball(lr=0.01, momentum=0.9)
    none = po.search(opt, ackley(2), crossover=crossover, **kwargs)
    assert not calls and none.basin_hops > 0  # rate 0 by default: never called
    some = po.search(opt, ackley(2), crossover=crossover, crossover_rate=0.5, **kwargs)
    assert 0 < len(calls) < some.basin_hops
    assert all(not np.array_equal(x, y) for x, y in calls)  # two different elites
    with pytest.raises(ValueError, match="crossover must return shape"):
        po.search(opt, ackley(2), crossover=lambda rng, x, y: x[:1], crossover_rate=1.0,
                  **kwargs)
    with pytest.raises(ValueError, match="crossover_rate"):
        po.search(opt, ackley(2), crossover_rate=1.5, **kwargs)
    with pytest.raises(ValueError, match="distinct_tol"):
        po.search(opt, ackley(2), distinct_tol=-1.0, **kwargs)


def test_cluster_problems_bring_their_crossover():
    problem = lennard_jones(7)
    result = po.search(po.heavy_ball(lr=1e-3, momentum=0.9), problem, budget=4000, members=4,
                       round_steps=20, elite=3, crossover_rate=1.0, seed=0)
    assert result.basin_hops > 0 and np.isfinite(result.best_value)
    assert result.best_value <= problem.f_min + 1e-5  # LJ7's pentagonal bipyramid


def test_walkers_in_the_same_minimum_restart_with_distinct_tol():
    problem = quadratic(dim=3, condition=10.0)  # one minimum: every polished walker is in it
    opt = po.heavy_ball(lr=0.01, momentum=0.9)
    kwargs = {"budget": 2000, "members": 4, "round_steps": 10, "patience": 10**6, "seed": 0}
    same = po.search(opt, problem, **kwargs)
    apart = po.search(opt, problem, distinct_tol=1e-6, **kwargs)
    assert same.restarts == 0 and apart.restarts > 0
    finite = apart.walker_values[np.isfinite(apart.walker_values)]
    assert len(finite) <= 1 or np.all(np.diff(np.sort(finite)) > 1e-6 * np.abs(finite[1:]))


def test_keep_best_never_restarts_the_incumbent():
    problem = quadratic(dim=3, condition=10.0)
    opt = po.heavy_ball(lr=0.01, momentum=0.9)
    kwargs = {"budget": 3000, "members": 4, "round_steps": 10, "patience": 1, "seed": 0,
              "temperature": 1e-12}
    plain = po.search(opt, problem, **kwargs)
    kept = po.search(opt, problem, keep_best=True, **kwargs)
    assert np.isinf(plain.walker_values).sum() > 0  # stale walkers all restarted
    assert np.min(kept.walker_values) <= 1e-10  # the incumbent walker is still in the minimum


def test_the_polish_runs_with_one_blas_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    problem = quadratic(dim=4, condition=10.0)
    seen = []

    class Recording:
        dim = problem.dim

        def value_and_grad(self, x):
            seen.append([lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                         if lib["user_api"] == "blas"])
            return problem.value_and_grad(x)

    _, f = polish_lbfgsb(Counter(Recording(), 100), np.ones(4), np.inf, 50)
    assert f < 1e-10 and seen
    assert all(threads == [1] * len(threads) for threads in seen)
    assert threadpoolctl.threadpool_info() == threadpoolctl.threadpool_info()  # restored


def test_cli_search_passes_the_driver_settings(capsys):
    from physopt_ref.cli import main

    status = main(["search", "heavy_ball", "lj7", "--budget", "2000", "--members", "4",
                   "--round-steps", "20", "--elite", "3", "--crossover-rate", "0.5",
                   "--temperature", "0.8", "--physics-share", "0.1", "--polish-top", "2",
                   "--distinct-tol", "1e-6", "--keep-best", "--perturb", "uniform", "--json"])
    out = capsys.readouterr().out
    assert status == 0, out
    record = json.loads(out)
    assert record["settings"] == {"polish_top": 2, "physics_share": 0.1, "elite": 3,
                                  "temperature": 0.8, "crossover_rate": 0.5,
                                  "distinct_tol": 1e-6, "keep_best": True,
                                  "perturb": "uniform_hop"}
    assert sum(record["phase_evaluations"].values()) == record["evaluations"] <= 2000


@pytest.mark.parametrize(("option", "value", "match"), [
    ("--physics-share", "0", "physics_share"),
    ("--temperature", "-1", "temperature"),
    ("--elite", "0", "elite"),
    ("--crossover-rate", "2", "crossover_rate"),
    ("--accept-rate", "1", "accept_rate"),
    ("--hop", "nan", "hop"),
    ("--polish-top", "x", "--polish-top"),
    ("--perturb", "gauss", "--perturb"),
])
def test_cli_search_refuses_bad_driver_settings(capsys, option, value, match):
    from physopt_ref.cli import main

    assert main(["search", "heavy_ball", "lj4", "--budget", "200", option, value]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_the_search_leaves_the_samplers_starts_unchanged():
    # The driver used to keep the sampler's array as its walkers and change it in place: a
    # second search from the same starts array (bench_search's methods) started from the
    # first search's walkers.
    problem = lennard_jones(7)
    starts = problem.random_starts(4, 3)
    kept = starts.copy()
    kwargs = {"budget": 1500, "members": 4, "round_steps": 20, "seed": 1}
    opt = po.heavy_ball(lr=1e-3, momentum=0.9)
    first = po.search(opt, problem, sampler=lambda rng, n: starts[:n], **kwargs)
    np.testing.assert_array_equal(starts, kept)
    again = po.search(opt, problem, sampler=lambda rng, n: starts[:n], **kwargs)
    np.testing.assert_array_equal(first.history, again.history)
