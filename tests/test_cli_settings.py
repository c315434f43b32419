"""The settings of ``compare`` (:mod:`physopt_ref.cli.settings`, ``.problem_settings``) and the
grid search behind the entries tuned here (:mod:`physopt_ref.cli.tune`).

A hyperparameter name an optimizer does not take is an error, never silently dropped; every
entry builds its optimizer; every tuned entry states its budget; the recorded grid search
reproduces its entry.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from physopt_ref.backends import get_namespace

from physopt_ref import REGISTRY, get_optimizer, registered_names
from physopt_ref.cli.problem_settings import SETTINGS, setting_for
from physopt_ref.cli.settings import (
    REQUIRED,
    Tuned,
    build_problem,
    grid_search,
    hyperparameters_for,
    searched,
    theory,
    unrecorded,
)
from physopt_ref.cli.tune import rank_key, tune

PAIRS = [(key, name) for key in SETTINGS for name in registered_names()]


@pytest.mark.parametrize(("key", "name"), PAIRS)
def test_every_setting_builds_its_optimizer(key, name):
    setting = SETTINGS[key]
    hp, tuned = hyperparameters_for(name, setting, seed=3)
    assert tuned == (name in setting.hyper)
    params = inspect.signature(REGISTRY[name].factory).parameters
    assert set(hp) <= set(params)
    if tuned:  # the tuned values arrive unchanged: nothing is dropped
        assert {k: hp[k] for k in setting.hyper[name].hp} == dict(setting.hyper[name].hp)
    get_optimizer(name, **hp)


def test_an_unknown_name_is_an_error():
    """The bug this guards against: Dyna's entries named ``lr`` (Dyna takes ``gamma``) and were
    dropped without a word, so Dyna ran on defaults in rows marked tuned."""
    bad = dataclasses.replace(SETTINGS["quadratic"],
                              hyper={"dyna": unrecorded({"lr": 0.01}, "test")})
    with pytest.raises(ValueError, match="lr, which dyna does not take; it takes gamma"):
        hyperparameters_for("dyna", bad, seed=0)
    with pytest.raises(ValueError, match="nonsense, which sgd does not take"):
        hyperparameters_for("sgd", SETTINGS["quadratic"], 0, {"nonsense": 1})


def test_required_names_exist():
    for name, hp in REQUIRED.items():
        assert set(hp) <= set(inspect.signature(REGISTRY[name].factory).parameters)


def test_every_tuned_entry_states_its_budget():
    for setting in SETTINGS.values():
        for name, entry in setting.hyper.items():
            assert name in REGISTRY
            assert isinstance(entry, Tuned) and entry.source
            assert entry.tried is None or entry.tried >= 1
            if entry.grid is not None:
                for k, values in entry.grid.items():
                    assert entry.hp[k] in values


def test_dyna_and_gravity_are_tuned_here_on_their_own_parameters():
    dyna_keys = [k for k, s in SETTINGS.items() if "dyna" in s.hyper]
    assert dyna_keys == ["quadratic", "ackley_b0.02", "zakharov", "two_basin",
                         "lennard_jones13"]
    for key in dyna_keys:
        entry = SETTINGS[key].hyper["dyna"]
        assert set(entry.hp) == {"gamma", "zeta", "beta"} and entry.tried == 7 * 3 * 2
    gravity = SETTINGS["quadratic"].hyper["gravity"]
    assert gravity.grid is not None and gravity.tried == 48


def test_tuned_records_check_themselves():
    assert theory({"lr": 1.0}, "x").tried == 1
    assert searched({"lr": 1.0}, 500, "x").tried == 500
    assert unrecorded({"lr": 1.0}, "x").tried is None
    t = grid_search({"lr": 0.1, "b": 2}, {"lr": [0.01, 0.1]}, "x")
    assert t.tried == 2 and t.fixed == {"b": 2} and t.grid == {"lr": (0.01, 0.1)}
    with pytest.raises(ValueError, match="not on the grid"):
        grid_search({"lr": 0.5}, {"lr": [0.01, 0.1]}, "x")
    with pytest.raises(ValueError, match="grid of 2 points"):
        Tuned({"lr": 0.1}, 3, "x", {"lr": (0.01, 0.1)})
    with pytest.raises(ValueError, match="tried"):
        Tuned({"lr": 0.1}, 0, "x")


def test_setting_for_and_build_problem():
    assert setting_for("quadratic") is SETTINGS["quadratic"]
    generic = setting_for("ackley_ecd")
    assert build_problem(generic).b == pytest.approx(0.02)
    assert build_problem(SETTINGS["quadratic"], dim=4).dim == 4
    with pytest.raises(ValueError, match="unknown problem"):
        setting_for("nope")
    with pytest.raises(TypeError, match="takes no arguments"):
        build_problem(generic, dim=3)


def test_rank_key_orders_successes_then_speed_then_value():
    from physopt_ref.cli.compare import Row

    def row(successes, evals, median, error=""):
        return Row("p", "o", {}, True, 1, 4, 100, 0.0, median_best=median, successes=successes,
                   median_evals_to_target=evals, error=error)

    rows = [row(1, 50.0, 1e-3), row(2, 90.0, 1e-2), row(2, 40.0, 1e-1), row(0, float("nan"), 1.0),
            row(0, float("nan"), 0.5), row(4, 10.0, 0.0, error="boom")]
    ordered = sorted(rows, key=rank_key)
    assert [(r.successes, r.median_best) for r in ordered] == [
        (2, 1e-1), (2, 1e-2), (1, 1e-3), (0, 0.5), (0, 1.0), (4, 0.0)]


def test_the_recorded_gravity_search_reproduces_its_entry():
    """``physopt-ref tune gravity quadratic`` repeats the search behind the entry (48 points)."""
    result = tune("gravity", "quadratic", xp=get_namespace("numpy"))
    assert len(result.rows) == 48 and result.seed == 1000
    assert result.agrees, (result.best, result.recorded)
    assert result.rows[0].successes == 0  # Gravity does not solve this quadratic at any point


def test_random_starts_are_independent_across_seeds():
    """Seeds 0..9 x 64 starts: 640 distinct starts (member k was seed + k, so seeds 0 and 1
    shared 63 of 64; issue 23), and starts_for(seed)[k] is member k of that seed."""
    from physopt_ref.backends import host_uniform

    from physopt_ref.cli.settings import build_problem, starts_for

    setting = SETTINGS["ackley_b0.02"]
    problem = build_problem(setting)
    rows = np.concatenate([starts_for(problem, setting, 64, s) for s in range(10)])
    assert len({r.tobytes() for r in rows}) == 640
    u = host_uniform(3, 0, (2,), stream=101, member=5)
    np.testing.assert_array_equal(starts_for(problem, setting, 6, 3)[5], -4.0 + 8.0 * u)


def test_cluster_starts_keep_atoms_apart():
    """LJ38 through the command line's settings (the generic one and lennard_jones13's with
    n_atoms=38): random packings, every pair >= 0.9 pair distances, finite negative energies
    (the jittered starts reached 2.5e5; issue 23)."""
    from physopt_ref.cli.settings import build_problem, starts_for

    for setting in (setting_for("lennard_jones"), SETTINGS["lennard_jones13"]):
        problem = build_problem(setting, n_atoms=38)
        assert problem.n_atoms == 38
        x = starts_for(problem, setting, 16, 0)
        pos = x.reshape(16, 38, 3)
        d = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1)
        assert np.min(np.where(np.eye(38, dtype=bool), np.inf, d)) >= 0.9 * 2 ** (1 / 6) - 1e-12
        energies = np.asarray(problem.value(x))
        assert np.all(np.isfinite(energies)) and np.all(energies < 0)
