r"""CoolMomentum: golden values, the cooling schedules, and the Langevin physics.

Exact parameter map to heavy ball (derived). With a constant :math:`\rho` CoolMomentum is
:math:`x_t = \rho x_{t-1} + c g_t`, :math:`\theta_t = \theta_{t-1} - x_t` with
:math:`c = \mathrm{lr}(1+\rho)/2`; heavy ball is :math:`v_t = \beta v_{t-1} - \eta g_t`,
:math:`\theta_t = \theta_{t-1} + v_t`. Putting :math:`v = -x` turns one into the other for
:math:`\beta = \rho` and :math:`\eta = \mathrm{lr}(1+\rho)/2`; both start from a zero buffer, so the
trajectories coincide (in floating point too: negation is exact).

Temperature relation (derived). On a flat loss with gradient noise
:math:`g_t \sim \mathcal N(0, \sigma^2)` i.i.d. per coordinate and step, the buffer is the AR(1)
process :math:`x_t = \rho x_{t-1} + c g_t`. Its variance obeys
:math:`V_t = \rho^2 V_{t-1} + c^2\sigma^2`, so it converges (as :math:`\rho^{2t}`) to
:math:`V = c^2\sigma^2/(1-\rho^2)`. The step is :math:`\Delta\theta_t = -x_t`, hence

.. math::

    \langle\Delta\theta^2\rangle = \frac{\mathrm{lr}^2(1+\rho)^2\sigma^2}{4(1-\rho)(1+\rho)}
    = \frac{\mathrm{lr}^2\sigma^2}{4}\,\frac{1+\rho}{1-\rho}.

The test burns in until :math:`\rho^{2B} < 10^{-3}` and averages over ``N`` coordinates and ``M``
steps. Successive :math:`x_t^2` are correlated with coefficient :math:`\rho^{2k}`, so the
relative standard error of the mean is about
:math:`\sqrt{2(1+\rho^2)/((1-\rho^2) N M)}` (≈ 1 % for ρ = 0.99, N = 8000, M = 200); the tolerance
is 6 %. Measured (seed 20240601, lr = 0.01, σ = 2, N = 8000, M = 200, NumPy): ratio
measured/predicted = 0.9989 (ρ = 0), 0.9968 (ρ = 0.5), 0.9940 (ρ = 0.9), 1.0127 (ρ = 0.99), against
relative standard errors 0.11 %, 0.14 %, 0.35 %, 1.1 %.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref as po
from physopt_ref.optimizers.coolmomentum import CoolMomentumState

from .helpers import assert_close
from .reference import coolmomentum_ref as ref

NP = get_namespace("numpy")
CURV = [0.3, 1.0, 2.5, 4.0, 0.7]
X0 = [1.0, -2.0, 0.5, 3.0, -0.25]

SCHEDULES = [
    (po.rho_paper, ref.rho_paper_ref, "paper"),
    (po.rho_geometric_temperature, ref.rho_geometric_ref, "geometric_temperature"),
    (po.rho_linear_temperature, ref.rho_linear_ref, "linear_temperature"),
]
SCHEDULE_IDS = [s[2] for s in SCHEDULES]

rho0s = st.floats(0.0, 0.999)
cool_steps_st = st.integers(1, 5000)


def _grad(x: list[float]) -> list[float]:
    return [k * xi + 0.1 * xi**3 for k, xi in zip(CURV, x, strict=True)]


def _run(opt: po.Optimizer, xp: Any, steps: int, x0: list[float] = X0) -> list[Any]:
    """Run on the separable test function; the tree is a dict of two leaves."""
    x = xp.asarray(np.asarray(x0), dtype=xp.float64)
    c = xp.asarray(np.asarray(CURV), dtype=xp.float64)
    params = {"a": x[:2], "b": x[2:]}
    state = opt.init(params)
    out = []
    for _ in range(steps):
        grads = {k: c[sl] * v + 0.1 * v**3 for (k, v), sl in
                 zip(params.items(), (slice(0, 2), slice(2, None)), strict=True)}
        params, state = opt.step(params, grads, state)
        out.append(xp.concat([params["a"], params["b"]]))
    return out


# --------------------------------------------------------------------------------------------
# Golden values


@pytest.mark.parametrize(("fn", "ref_fn", "name"), SCHEDULES, ids=SCHEDULE_IDS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_golden_trajectory(fn: Any, ref_fn: Any, name: str, weight_decay: float, xp: Any) -> None:
    """12 steps cooling over S = 8 (so the run crosses into the cooled regime) vs the reference."""
    lr, rho0, s = 0.05, 0.9, 8
    opt = po.coolmomentum(lr=lr, rho0=rho0, cool_steps=s, schedule=name,
                          weight_decay=weight_decay)
    got = _run(opt, xp, 12)
    expected = ref.coolmomentum_run_ref(X0, _grad, 12, lr, lambda t: ref_fn(t, rho0, s),
                                        weight_decay)
    for t, e in enumerate(expected):
        assert_close(got[t], e, xp=xp, rtol=1e-12, atol=1e-14, err_msg=f"step {t + 1}")


@pytest.mark.parametrize(("fn", "ref_fn", "name"), SCHEDULES, ids=SCHEDULE_IDS)
@given(rho0=rho0s, s=cool_steps_st, frac=st.floats(0.0, 1.5))
def test_schedule_matches_literal_formula(fn: Any, ref_fn: Any, name: str, rho0: float, s: int,
                                          frac: float) -> None:
    t = int(frac * s)
    assert fn(t, rho0, s) == pytest.approx(ref_fn(t, rho0, s), rel=1e-12, abs=1e-12)


def test_schedule_values_from_the_spec() -> None:
    """ρ₀ = 0.99, S = 1000 at t = 0, 250, 500, 750, 999, 1000 (spec §a.3, 2-3 digits)."""
    ts = [0, 250, 500, 750, 999, 1000]
    table = {
        po.rho_paper: [0.99, 0.968, 0.90, 0.684, 0.005, 0.0],
        po.rho_geometric_temperature: [0.99, 0.963, 0.868, 0.580, 0.003, 0.0],
        po.rho_linear_temperature: [0.99, 0.987, 0.980, 0.961, 0.090, 0.0],
    }
    for fn, values in table.items():
        got = [fn(t, 0.99, 1000) for t in ts]
        np.testing.assert_allclose(got, values, atol=1.5e-3, err_msg=fn.__name__)


# --------------------------------------------------------------------------------------------
# Schedule properties


@pytest.mark.parametrize(("fn", "ref_fn", "name"), SCHEDULES, ids=SCHEDULE_IDS)
@given(rho0=rho0s, s=st.integers(1, 400))
def test_schedule_endpoints_and_monotone(fn: Any, ref_fn: Any, name: str, rho0: float,
                                         s: int) -> None:
    """ρ_0 = ρ₀, ρ_t = 0 for t ≥ S, non-increasing in t, and in [0, 1)."""
    rhos = [fn(t, rho0, s) for t in range(s + 5)]
    assert rhos[0] == pytest.approx(rho0, rel=1e-14, abs=1e-15)
    assert all(r == 0.0 for r in rhos[s:])
    assert all(b <= a for a, b in itertools.pairwise(rhos))
    assert all(0.0 <= r < 1.0 for r in rhos)
    assert fn(10 * s + 7, rho0, s) == 0.0


@given(rho0=st.floats(0.01, 0.999), s=st.integers(2, 400))
def test_schedules_shape_the_right_quantity(rho0: float, s: int) -> None:
    """(A) 1/(1−ρ) geometric; (B) (1+ρ)/(1−ρ) geometric; (C) (1+ρ)/(1−ρ) linear (for t < S)."""
    ts = range(s)
    inv = [1.0 / (1.0 - po.rho_paper(t, rho0, s)) for t in ts]
    alpha = (1.0 - rho0) ** (1.0 / s)
    for a, b in itertools.pairwise(inv):
        assert b / a == pytest.approx(alpha, rel=1e-9)
    temp = [(1 + r) / (1 - r) for r in (po.rho_geometric_temperature(t, rho0, s) for t in ts)]
    ratio = ((1.0 - rho0) / (1.0 + rho0)) ** (1.0 / s)
    for a, b in itertools.pairwise(temp):
        assert b / a == pytest.approx(ratio, rel=1e-9)
    temp = [(1 + r) / (1 - r) for r in (po.rho_linear_temperature(t, rho0, s) for t in ts)]
    slope = -2.0 * rho0 / ((1.0 - rho0) * s)
    for a, b in itertools.pairwise(temp):
        assert b - a == pytest.approx(slope, rel=1e-7, abs=1e-9 * temp[0])


def test_schedule_no_underflow_for_long_runs() -> None:
    """The authors' README AWD-LSTM setting: S ≈ 2.3e7; late steps stay finite and exact."""
    s = 23_000_000
    assert po.rho_paper(s - 1, 0.99, s) > 0.0
    assert po.rho_paper(s - 1, 0.99, s) < 1e-6
    assert po.rho_paper(s, 0.99, s) == 0.0


# --------------------------------------------------------------------------------------------
# Steps


@given(lr=st.floats(1e-3, 1.0), rho0=rho0s)
@settings(max_examples=15)
def test_first_step_is_a_momentum_step_from_zero(lr: float, rho0: float, xp: Any) -> None:
    """Step 1 is θ − lr(1+ρ₀)/2 g: neither a no-op (coolmom_pytorch.py 2021) nor θ + g (2020)."""
    opt = po.coolmomentum(lr=lr, rho0=rho0, cool_steps=50)
    x = xp.asarray(np.asarray(X0), dtype=xp.float64)
    g = xp.asarray(np.asarray(_grad(X0)), dtype=xp.float64)
    new, state = opt.step(x, g, opt.init(x))
    expected = np.asarray(X0) - lr * (1.0 + rho0) / 2.0 * np.asarray(_grad(X0))
    assert_close(new, expected, xp=xp, rtol=1e-14, atol=1e-15)
    assert state.count == 1


@given(lr=st.floats(1e-3, 0.2), rho=st.floats(0.0, 0.99))
@settings(max_examples=15)
def test_constant_rho_is_heavy_ball(lr: float, rho: float, xp: Any) -> None:
    """Constant ρ == heavy ball with β = ρ, η = lr(1+ρ)/2 (derivation in the module docstring)."""
    cool = po.coolmomentum(lr=lr, rho0=rho, schedule="constant", cool_steps=None)
    hb = po.heavy_ball(lr=lr * (1.0 + rho) / 2.0, momentum=rho)
    for a, b in zip(_run(cool, xp, 15), _run(hb, xp, 15), strict=True):
        assert_close(a, to_numpy(b), xp=xp, rtol=1e-14, atol=1e-15)


def test_alpha_one_reading_and_constant_schedule() -> None:
    """README: "If alpha=1 the momentum coefficient is constant": schedule='constant' keeps ρ₀."""
    opt = po.coolmomentum(lr=0.1, rho0=0.7, schedule="constant", cool_steps=None)
    x = np.asarray([1.0])
    state = opt.init(x)
    for _ in range(5):
        x, state = opt.step(x, np.asarray([1.0]), state)
    x_last = x
    x, state = opt.step(x, np.asarray([1.0]), state)
    # displacement after t+1 constant-gradient steps: c (1 - ρ^(t+1)) / (1 - ρ), c = 0.1*1.7/2
    c = 0.1 * 1.7 / 2.0
    assert float(x_last[0] - x[0]) == pytest.approx(c * (1 - 0.7**6) / 0.3, rel=1e-13)


@given(lr=st.floats(1e-3, 1.0), rho0=rho0s, s=st.integers(1, 12), extra=st.integers(0, 5))
@settings(max_examples=20)
def test_cooled_step_is_sgd_with_half_lr(lr: float, rho0: float, s: int, extra: int,
                                         xp: Any) -> None:
    """For t ≥ S, ρ = 0 and the step is exactly θ − (lr/2) g, whatever the buffer held."""
    opt = po.coolmomentum(lr=lr, rho0=rho0, cool_steps=s)
    rng = np.random.default_rng(s + 100 * extra)
    x = xp.asarray(rng.normal(size=6))
    state = opt.init(x)
    for _ in range(s + extra):
        x, state = opt.step(x, xp.asarray(rng.normal(size=6)), state)
    g = rng.normal(size=6)
    new, _ = opt.step(x, xp.asarray(g), state)
    assert_close(new, to_numpy(x) - lr / 2.0 * g, xp=xp, rtol=1e-14, atol=1e-15)
    sgd = po.sgd(lr=lr / 2.0)
    other, _ = sgd.step(x, xp.asarray(g), sgd.init(x))
    assert_close(new, to_numpy(other), xp=xp, rtol=1e-15)


def test_callable_schedule_is_used_and_checked() -> None:
    opt = po.coolmomentum(lr=0.2, schedule=lambda t: 0.5 if t == 0 else 0.0)
    x = np.asarray([0.0])
    state = opt.init(x)
    x, state = opt.step(x, np.asarray([1.0]), state)
    assert float(x[0]) == pytest.approx(-0.2 * 1.5 / 2)
    x, state = opt.step(x, np.asarray([1.0]), state)
    assert float(x[0]) == pytest.approx(-0.15 - 0.1)
    bad = po.coolmomentum(schedule=lambda t: 1.0)
    with pytest.raises(ValueError, match="schedule"):
        bad.step(x, x, bad.init(x))


def test_float32_and_ensemble_temperature(xp: Any) -> None:
    """float32 stays float32; coolmomentum_temperature is per run over the whole tree."""
    opt = po.coolmomentum(lr=0.1, rho0=0.5, cool_steps=3)
    params = {"w": xp.ones((2, 3), dtype=xp.float32), "b": xp.ones((2,), dtype=xp.float32)}
    state = opt.init(params, batch_ndim=1)
    grads = {"w": xp.asarray(np.asarray([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]), dtype=xp.float32),
             "b": xp.asarray(np.asarray([1.0, 0.0]), dtype=xp.float32)}
    params, state = opt.step(params, grads, state)
    assert params["w"].dtype == xp.float32
    temp = po.coolmomentum_temperature(state)
    c = 0.1 * 1.5 / 2
    # run 0: 3 entries c, 1 entry c -> c^2; run 1: 3 entries 2c, 1 entry 0 -> 3 (2c)^2 / 4
    assert_close(temp, [c**2, 3 * (2 * c) ** 2 / 4], xp=xp, dtype=xp.float32, rtol=1e-6)


def test_errors_name_parameter_and_symbol() -> None:
    with pytest.raises(ValueError, match=r"rho0 \(ρ₀\) must be in \[0, 1\)"):
        po.coolmomentum(rho0=1.0)
    with pytest.raises(ValueError, match=r"cool_steps \(S\)"):
        po.coolmomentum(cool_steps=0)
    with pytest.raises(ValueError, match="cool_steps"):
        po.coolmomentum(cool_steps=None)
    with pytest.raises(ValueError, match="schedule"):
        po.coolmomentum(schedule="cosine")
    with pytest.raises(ValueError, match=r"weight_decay \(λ\)"):
        po.coolmomentum(weight_decay=-1e-4)
    with pytest.raises(ValueError, match=r"lr"):
        po.coolmomentum(lr=-0.01)  # 0 is legal: a no-op (issue 21)
    with pytest.raises(ValueError, match=r"t \(t\)"):
        po.rho_paper(-1, 0.9, 10)


# --------------------------------------------------------------------------------------------
# The temperature relation


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.99])
def test_stationary_mean_squared_step(rho: float, xp: Any) -> None:
    """⟨Δθ²⟩ → lr²σ²(1+ρ)/(4(1−ρ)) on a flat loss with N(0, σ²) gradient noise (see module doc)."""
    lr, sigma, n, m = 0.01, 2.0, 8000, 200
    burn = 1 if rho == 0.0 else math.ceil(math.log(1e-3) / (2.0 * math.log(rho)))
    opt = po.coolmomentum(lr=lr, rho0=rho, schedule="constant", cool_steps=None)
    rng = np.random.default_rng(20240601)
    x = xp.zeros((n,), dtype=xp.float64)
    state = opt.init(x)
    acc = 0.0
    for t in range(burn + m):
        new, state = opt.step(x, xp.asarray(sigma * rng.normal(size=n)), state)
        if t >= burn:
            d = new - x
            acc += float(xp.sum(d * d))
            assert isinstance(state, CoolMomentumState)
            assert float(po.coolmomentum_temperature(state)) == pytest.approx(
                float(xp.sum(d * d)) / n, rel=1e-10)
        x = new
    measured = acc / (n * m)
    predicted = lr**2 * sigma**2 * (1.0 + rho) / (4.0 * (1.0 - rho))
    assert measured == pytest.approx(predicted, rel=0.06)
