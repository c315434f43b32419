"""The global-search driver :func:`physopt_ref.search` (issue 27): budget accounting, restarts,
the polish, hops, chunked = unchunked, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from physopt_ref.problems import ackley, quadratic
from physopt_ref.problems._base import Problem

import physopt_ref as po


class Counting(Problem):
    """Wraps a problem and counts the points it evaluates (every batch row is one)."""

    def __init__(self, inner: Problem) -> None:
        self.inner = inner
        self.dim, self.name, self.x0 = inner.dim, inner.name, inner.x0
        self.bounds, self.minima = inner.bounds, inner.minima
        self.points = 0

    def _value_and_grad(self, xp, x):
        self.points += int(np.prod(x.shape[:-1]))
        return self.inner._value_and_grad(xp, x)


@pytest.mark.parametrize("polish", [None, "lbfgsb"])
@pytest.mark.parametrize("budget", [64, 1000, 2999])
def test_every_evaluation_is_counted_and_the_budget_holds(polish, budget):
    problem = Counting(ackley(2))
    result = po.search(po.heavy_ball(lr=0.01, momentum=0.9), problem, budget=budget, members=8,
                       round_steps=20, polish=polish, seed=1)
    assert result.evaluations == problem.points
    assert result.evaluations <= budget
    # What is left is less than a round of the smallest kind (or a polish call).
    assert budget - result.evaluations < 2 * 8 or polish == "lbfgsb"
    assert result.history[-1, 0] == result.evaluations
    assert np.all(np.diff(result.history[:, 0]) >= 0)
    assert np.all(np.diff(result.history[:, 1]) <= 0)  # the best value never gets worse


def test_the_polish_finds_the_local_minimum_the_physics_approaches():
    problem = quadratic(dim=6, condition=100.0)
    opt = po.heavy_ball(lr=1e-3, momentum=0.5)
    rough = po.search(opt, problem, budget=200, members=4, round_steps=10, polish=None)
    fine = po.search(opt, problem, budget=200, members=4, round_steps=10, polish="lbfgsb")
    assert fine.best_value < 1e-10 < rough.best_value
    assert fine.provenance["phase"] == "polish"
    assert rough.provenance["phase"] == "physics"


def test_diverging_walkers_restart():
    problem = quadratic(dim=4, condition=10.0)
    # lr far beyond 2/L: every run diverges, so every walker restarts every round.
    result = po.search(po.sgd(lr=50.0), problem, budget=400, members=4, round_steps=5,
                       polish=None, seed=3)
    assert result.rounds >= 2
    assert result.restarts == 4 * (result.rounds - 1) or result.restarts >= 4


def test_stagnating_walkers_restart_after_patience():
    problem = quadratic(dim=4, condition=10.0)
    opt = po.heavy_ball(lr=0.01, momentum=0.9)
    result = po.search(opt, problem, budget=4000, members=4, round_steps=10, patience=1,
                       polish="lbfgsb", seed=0, temperature=1e-12)
    assert result.restarts > 0
    never = po.search(opt, problem, budget=4000, members=4, round_steps=10, patience=10**6,
                      polish="lbfgsb", seed=0, temperature=1e-12)
    assert never.restarts == 0


def test_hops_adapt_and_the_target_stops_the_search():
    problem = ackley(2)
    result = po.search(po.heavy_ball(lr=0.01, momentum=0.9), problem, budget=20000, members=8,
                       round_steps=30, polish="lbfgsb", seed=2, target=1e-8)
    assert result.reached_target and result.message == "reached the target value"
    assert result.best_value <= 1e-8
    assert result.evaluations < 20000
    assert len(result.hop_sizes) == result.rounds


def test_same_seed_same_search_other_seed_other_search():
    problem = ackley(2)
    opt = po.bbi(lr=0.01)
    a = po.search(opt, problem, budget=600, members=4, round_steps=20, seed=5)
    b = po.search(opt, problem, budget=600, members=4, round_steps=20, seed=5)
    c = po.search(opt, problem, budget=600, members=4, round_steps=20, seed=6)
    np.testing.assert_array_equal(a.history, b.history)
    np.testing.assert_array_equal(a.best_x, b.best_x)
    assert not np.array_equal(a.history, c.history)


def test_chunked_rounds_equal_the_unchunked_search():
    problem = ackley(2)
    opt = po.bbi(lr=0.01)
    whole = po.search(opt, problem, budget=800, members=6, round_steps=15, seed=4)
    split = po.search(opt, problem, budget=800, members=6, round_steps=15, seed=4,
                      executor=lambda fn, items: list(map(fn, items)), chunk_size=2)
    np.testing.assert_array_equal(whole.history, split.history)
    np.testing.assert_array_equal(whole.best_x, split.best_x)
    assert whole.provenance == split.provenance


def test_jax_compiled_rounds_find_what_numpy_finds():
    pytest.importorskip("jax")
    problem = quadratic(dim=4, condition=10.0)
    opt = po.heavy_ball(lr=0.01, momentum=0.9)
    a = po.search(opt, problem, budget=500, members=4, round_steps=20, polish=None, seed=0)
    b = po.search(opt, problem, budget=500, members=4, round_steps=20, polish=None, seed=0,
                  backend="jax", dtype="float32", compile=True)
    assert a.evaluations == b.evaluations
    np.testing.assert_allclose(a.best_value, b.best_value, rtol=1e-3, atol=1e-6)


def test_a_custom_sampler_and_its_shape_check():
    problem = quadratic(dim=3)
    calls = []

    def sampler(rng, n):
        calls.append(n)
        return rng.uniform(-1, 1, size=(n, 3))

    po.search(po.sgd(lr=0.01), problem, budget=100, members=2, round_steps=5, sampler=sampler)
    assert calls and calls[0] == 2
    with pytest.raises(ValueError, match="sampler must return shape"):
        po.search(po.sgd(lr=0.01), problem, budget=100, members=2,
                  sampler=lambda rng, n: np.zeros((n, 2)))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"budget": 3}, ValueError, "budget"),
    ({"budget": 1.5}, TypeError, "budget"),
    ({"members": 0}, ValueError, "members"),
    ({"polish": "bfgs"}, ValueError, "polish"),
    ({"temperature": 0.0}, ValueError, "temperature"),
    ({"accept_rate": 1.0}, ValueError, "accept_rate"),
    ({"hop": -1.0}, ValueError, "hop"),
    ({"polish_top": 0}, ValueError, "polish_top"),
    ({"elite": 0}, ValueError, "elite"),
    ({"physics_share": 0.0}, ValueError, "physics_share"),
    ({"physics_share": 1.5}, ValueError, "physics_share"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"compile": True, "executor": map}, ValueError, "compile"),
])
def test_bad_settings_are_refused(kwargs, error, match):
    args = {"budget": 100, "members": 2, **kwargs}
    with pytest.raises(error, match=match):
        po.search(po.sgd(lr=0.01), quadratic(dim=3), **args)


def test_bad_optimizer_or_problem_is_refused():
    with pytest.raises(TypeError, match="Optimizer"):
        po.search("sgd", quadratic(dim=3), budget=100)
    with pytest.raises(TypeError, match="Problem"):
        po.search(po.sgd(lr=0.01), lambda x: (x, x), budget=100)


def test_cli_search_reports_the_best_point_and_its_provenance(capsys):
    from physopt_ref.cli import main

    status = main(["search", "heavy_ball", "lj4", "--budget", "600", "--members", "4",
                   "--round-steps", "20", "--json"])
    out = capsys.readouterr().out
    assert status == 0, out
    import json

    record = json.loads(out)
    assert record["evaluations"] <= 600
    assert record["best_value"] == pytest.approx(-6.0, abs=1e-6)  # the tetrahedron, 6 pairs
    assert record["provenance"]["phase"] in ("physics", "polish")


def test_cli_search_refuses_unknown_problems(capsys):
    from physopt_ref.cli import main

    assert main(["search", "heavy_ball", "rosenbrock"]) == 2
    assert "unknown problem" in capsys.readouterr().err


def test_metropolis_accepts_downhill_and_uphill_with_the_boltzmann_probability():
    from physopt_ref.runner.search_parts import metropolis

    cur = np.array([0.0, 0.0, 0.0, 0.0, 1.0, np.inf])
    new = np.array([-1.0, 1.0, 1.0, np.nan, np.inf, 5.0])
    p = np.exp(-1.0 / 2.0)  # uphill by 1 at T = 2
    u = np.array([0.99, p - 1e-9, p + 1e-9, 0.0, 0.0, 0.99])
    np.testing.assert_array_equal(metropolis(new, cur, u, 2.0),
                                  [True, True, False, False, False, True])


@pytest.mark.parametrize("share", [0.1, 0.25, 0.6])
def test_phases_share_the_budget_and_every_evaluation_is_in_one(share):
    problem = Counting(ackley(4))
    result = po.search(po.heavy_ball(lr=0.01, momentum=0.9), problem, budget=6000, members=4,
                       round_steps=10, physics_share=share, seed=0)
    spent = result.phase_evaluations
    assert sum(spent.values()) == result.evaluations == problem.points
    assert result.basin_hops > 0 and spent["basin_hop"] > 0
    # After each round the incumbents are hopped until the physics is `share` of the spending:
    # the physics share ends within one round (4 walkers x 10 steps) or one polish of it.
    physics = spent["physics"]
    assert physics <= share * result.evaluations + 4 * 10
    assert physics >= share * (result.evaluations - 2000) - 4 * 10


def test_without_the_polish_there_is_no_basin_hopping_phase():
    problem = Counting(ackley(2))
    result = po.search(po.heavy_ball(lr=0.01, momentum=0.9), problem, budget=1000, members=4,
                       round_steps=10, polish=None, seed=0)
    assert result.phase_evaluations == {"physics": result.evaluations, "polish": 0,
                                        "basin_hop": 0}
    assert result.basin_hops == 0


def test_only_the_best_runs_are_polished():
    polished = []

    class Spy(Counting):
        def _value_and_grad(self, xp, x):
            if x.ndim == 1:
                polished.append(x)
            return super()._value_and_grad(xp, x)

    problem = Spy(ackley(2))
    # physics_share = 1: no basin-hopping phase, so every host evaluation is a polish.
    result = po.search(po.sgd(lr=0.01), problem, budget=60, members=6, round_steps=3,
                       polish_top=2, physics_share=1.0, seed=0)
    assert result.rounds >= 1 and result.basin_hops == 0
    assert result.phase_evaluations["polish"] == len(polished) > 0


def test_basin_hopping_uses_the_given_perturbation_and_checks_its_shape():
    calls = []

    def perturb(rng, x, size):
        calls.append(size)
        return x + size * rng.standard_normal(x.shape)

    result = po.search(po.heavy_ball(lr=0.01, momentum=0.9), ackley(2), budget=3000,
                       members=4, round_steps=10, perturb=perturb, seed=0)
    assert result.basin_hops > 0 and len(calls) >= result.basin_hops
    with pytest.raises(ValueError, match="perturb must return shape"):
        po.search(po.sgd(lr=0.01), ackley(2), budget=3000, members=4, round_steps=10,
                  perturb=lambda rng, x, s: x[:1])


def test_basin_hopping_finds_what_the_physics_alone_misses():
    problem = ackley(2)  # many local minima around the global one at 0
    opt = po.heavy_ball(lr=0.01, momentum=0.9)
    starts = lambda rng, n: rng.uniform(2.5, 3.5, size=(n, 2))  # noqa: E731
    alone = po.search(opt, problem, budget=3000, members=4, round_steps=20, polish=None,
                      sampler=starts, seed=0)
    hopped = po.search(opt, problem, budget=3000, members=4, round_steps=20, sampler=starts,
                       seed=0, target=1e-8)
    assert hopped.reached_target and not alone.best_value <= 1e-8
    assert hopped.provenance["phase"] in ("polish", "basin_hop")


def test_cluster_hops_keep_atoms_apart_and_move_one_atom_or_all():
    from physopt_ref.problems import lennard_jones

    problem = lennard_jones(13)
    x = problem.minima[0].location
    rng = np.random.default_rng(0)
    moved_one = moved_all = 0
    for _ in range(40):
        y = problem.perturb(rng, x, 0.3)
        assert y.shape == x.shape
        a = (x.reshape(13, 3) - x.reshape(13, 3).mean(axis=0))
        b = y.reshape(13, 3)
        shift = np.linalg.norm(b - a, axis=1)
        if np.count_nonzero(shift > 1e-12) == 1:
            moved_one += 1
            k = int(np.argmax(shift))
            rest = np.delete(b, k, axis=0)
            assert np.min(np.linalg.norm(rest - b[k], axis=1)) >= 0.85 * problem.pair_distance
        else:
            moved_all += 1
            assert np.all(np.abs(b - a) <= 0.3 + 1e-12)
    assert moved_one > 5 and moved_all > 5


def test_torch_rounds_with_the_basin_hopping_phase_match_numpy():
    pytest.importorskip("torch")
    problem = quadratic(dim=4, condition=10.0)
    opt = po.heavy_ball(lr=0.01, momentum=0.9)
    kwargs = {"budget": 800, "members": 4, "round_steps": 10, "seed": 0}
    a = po.search(opt, problem, **kwargs)
    b = po.search(opt, problem, backend="torch", **kwargs)
    assert a.basin_hops > 0 and a.phase_evaluations == b.phase_evaluations
    np.testing.assert_allclose(a.best_value, b.best_value, atol=1e-12)
