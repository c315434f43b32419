"""Reproductions of the BBI paper's synthetic results (De Luca & Silverstein, ICML 2022, Sec. 4).

Settings from the official notebooks ``gbdl/BBI/synthetic/{zakharov,ackley,multi_basin}.ipynb``
(spec ``shared/specs/ecd.md`` §4.1). Slow: select with ``pytest -m slow``. Ensembles (leading
batch axes) run the many independent runs in one array, NumPy float64. Each docstring records
the seed and the number this implementation reached (2-core machine, wall times approximate).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from physopt_ref.backends import get_namespace
from physopt_ref.problems import ackley, two_basin, zakharov

import physopt_ref

NP = get_namespace("numpy")

pytestmark = pytest.mark.slow


def test_zakharov_10d_reaches_the_floor() -> None:
    """Zakharov 10-D from (1, ..., 1), Δt = 0.0026036721489343054, no bounces, ΔV = 1e-22, δE = 0.

    Paper / notebook: min F = 9.9998e-23 within 10 000 iterations (it stops at ΔV).
    Measured here (deterministic, no random draws): min F = 9.99974e-23 after 4195 update
    steps (then V <= ε and every further call is a no-op); about 3 s.
    """
    problem = zakharov(10)
    x = problem.start(xp=NP)
    opt = physopt_ref.bbi(
        lr=0.0026036721489343054, v0=1e-22, delta_e=0.0, t0=None, t1=None, n_fixed_bounces=0
    )
    state = opt.init(x)
    best = math.inf
    for _ in range(10_000):
        f, g = problem.value_and_grad(x)
        best = min(best, float(f))
        x, state = opt.step(x, g, state, loss=f)
    assert best <= 1e-21, best
    assert int(state.event) == 0, "the run should have stopped at V <= ε"


def test_ackley_2d_success_rate_beats_heavy_ball() -> None:
    """Ackley 2-D with b = 0.02: 100 starts uniform in [-4, 4]² (``default_rng(0)``).

    BBI with the notebook's settings (δE = 2, T0 = 20, N_b = 4, T1 = 100, ΔV = 1e-4,
    Δt = 0.009649484068918336), 5 runs per start (seeds 1000 + k, one (100, 5) ensemble),
    30 000 steps; a start succeeds when one of its runs has best F < 5e-4. Heavy ball with the
    notebook's tuned lr 0.1993, momentum 0.5634, one run per start (it is deterministic).
    Notebook: BBI 83/100, GDM 0/100 (paper text: 90 %). Measured here with the draws keyed by
    (seed, member) (issue 23): BBI 90/100 (189 of the 500 single runs, 38 %); heavy ball
    0/100 (median best F 0.090; deterministic, not affected by the keys); about 20 s on an
    idle core (284 s for the BBI part on a machine loaded 7-fold). The issue's 86/100 was the
    same protocol under the earlier keys seed + k.
    """
    problem = ackley(2, b=0.02)
    starts = np.random.default_rng(0).uniform(-4.0, 4.0, size=(100, 2))
    n_runs, steps, eps = 5, 30_000, 5e-4

    x = NP.asarray(np.repeat(starts[:, None, :], n_runs, axis=1))
    opt = physopt_ref.bbi(
        lr=0.009649484068918336, v0=1e-4, delta_e=2.0, t0=20, n_fixed_bounces=4, t1=100, seed=1000
    )
    state = opt.init(x, batch_ndim=2)
    best = np.full((100, n_runs), np.inf)
    for _ in range(steps):
        f, g = problem.value_and_grad(x)
        best = np.minimum(best, f)
        x, state = opt.step(x, g, state, loss=f)
    bbi_success = float(np.mean(np.any(best < eps, axis=1)))

    hb = physopt_ref.heavy_ball(lr=0.1993, momentum=0.5634)
    y = NP.asarray(starts.copy())
    hstate = hb.init(y, batch_ndim=1)
    hbest = np.full(100, np.inf)
    for _ in range(steps):
        f, g = problem.value_and_grad(y)
        hbest = np.minimum(hbest, f)
        y, hstate = hb.step(y, g, hstate)
    hb_success = float(np.mean(hbest < eps))

    assert bbi_success >= 0.80, bbi_success
    assert hb_success <= 0.05, hb_success


def test_two_basin_arrival_ratio_matches_phase_space_volume() -> None:
    """2000 BBI runs from (10, -10) on the two-basin potential (one (2000,) ensemble, seed 0).

    Notebook settings: Δt = 1e-2, T0 = 20, N_b = 1, T1 = 750, ΔV = 0.001, δE = 0, at most
    25 000 steps; a run has arrived in basin i when (x - m_i)ᵀ H_i (x - m_i) < 1. Prediction
    n₁/n₂ = sqrt(det H₂/det H₁) = 1.926; the paper's 2000 runs gave 1.7248 (1266 vs 734).
    Measured here with the draws keyed by (seed, member) (issue 23): 1287 vs 713, ratio 1.805
    (6.3 % below the prediction); every run arrived within 17 000 steps; about 17 s on an idle
    core (196 s on a machine loaded 7-fold). The issue's 1309/691 was the same protocol under
    the earlier keys seed + k.
    """
    problem = two_basin()
    n = 2000
    x = NP.asarray(np.broadcast_to(problem.x0, (n, 2)).copy())
    opt = physopt_ref.bbi(lr=1e-2, v0=0.001, delta_e=0.0, t0=20, n_fixed_bounces=1, t1=750, seed=0)
    state = opt.init(x, batch_ndim=1)
    arrived = np.full(n, -1)
    for k in range(25_000):
        f, g = problem.value_and_grad(x)
        basin = np.asarray(problem.basin_index(x))
        arrived = np.where((arrived < 0) & (basin >= 0), basin, arrived)
        if k % 500 == 0 and np.all(arrived >= 0):
            break
        x, state = opt.step(x, g, state, loss=f)
    n1, n2 = int(np.sum(arrived == 0)), int(np.sum(arrived == 1))
    assert n1 + n2 >= 0.95 * n, (n1, n2)
    ratio = n1 / n2
    assert abs(ratio / problem.mixing_ratio - 1.0) <= 0.20, (n1, n2, ratio)
