"""Tests of the Dyna family (Han 2018): Algorithm 1, the prototype, the ramp, restart, fan-in.

Golden values come from the scalar float64 reference ``tests/reference/dyna_ref.py``. The
property tests run in NumPy float64 (the contract tests check that every backend agrees); the
bias-correction and step-bound checks are the kit's (:mod:`physopt_ref.testing.steps`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref
from physopt_ref import dyna, dyna_prototype
from physopt_ref import testing as kit
from physopt_ref.optimizers.dyna import (
    DampingRamp,
    DynaState,
    damping_ramp,
    default_fan_in,
    dyna_restart,
    dyna_warm_restart,
    resolve_fan_in,
)
from physopt_ref.testing import strategies as pst

from .helpers import assert_close
from .reference.dyna_ref import dyna_ref, prototype_ref, ramp_zeta

NP = get_namespace("numpy")

# A three-layer model: a (3, 2) weight matrix (n = 3), a length-4 vector (n = 4), a scalar (n = 1).
X0 = [
    np.array([[0.8, -1.2], [0.3, 2.0], [-0.5, 0.1]]),
    np.array([1.5, -0.7, 0.0, 3.0]),
    np.array(-2.5),
]
C = [np.array([[1.0, 0.5], [2.0, 0.1], [3.0, 1.5]]), np.array([0.2, 4.0, 1.0, 0.7]), np.array(1.3)]
D = [
    np.array([[0.1, -0.3], [0.0, 0.2], [-0.4, 0.05]]),
    np.array([0.5, 0.0, -0.2, 0.1]),
    np.array(0.3),
]
FAN_IN = [3, 4, 1]


def np_grads(params: list[Any]) -> list[Any]:
    """An affine gradient c·x + d (signs and magnitudes change along the run)."""
    return [c * p + d for p, c, d in zip(params, C, D, strict=True)]


def ref_grads(layers: list[list[float]]) -> list[list[float]]:
    return [
        [c * x + d for x, c, d in zip(layer, Ci.ravel(), Di.ravel(), strict=True)]
        for layer, Ci, Di in zip(layers, C, D, strict=True)
    ]


def xp_grads(xp: Any, params: list[Any]) -> list[Any]:
    return [
        xp.asarray(c, dtype=p.dtype) * p + xp.asarray(d, dtype=p.dtype)
        for p, c, d in zip(params, C, D, strict=True)
    ]


def run_xp(opt: Any, xp: Any, dtype: Any, steps: int, restarts: dict[int, float] | None = None):
    params = [xp.asarray(x, dtype=dtype) for x in X0]
    state = opt.init(params)
    out = []
    for t in range(1, steps + 1):
        if restarts and t in restarts:
            state = dyna_warm_restart(state, restarts[t])
        params, state = opt.step(params, xp_grads(xp, params), state)
        out.append([to_numpy(p) for p in params])
    return out, state


def flat_ref(traj: list[list[list[float]]]) -> list[list[np.ndarray]]:
    return [
        [np.asarray(layer).reshape(x.shape) for layer, x in zip(s, X0, strict=True)]
        for s in traj
    ]


# ---------------------------------------------------------------------------------------------
# Golden tests


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_dyna_matches_scalar_reference(xp: Any, dtype_name: str) -> None:
    """Algorithm 1 with the Eq. 22 ramp, 12 steps, default fan-in (3, 4, 1), vs the reference."""
    dtype = getattr(xp, dtype_name)
    opt = dyna(gamma=0.7, beta=0.8, zeta=damping_ramp(5.0), omega_eps=1e-8)
    got, _ = run_xp(opt, xp, dtype, 12)
    want = flat_ref(
        dyna_ref(
            [x.ravel().tolist() for x in X0], ref_grads, 12, gamma=0.7, beta=0.8,
            zeta=lambda t: ramp_zeta(t, 5.0), omega_eps=1e-8, fan_in=FAN_IN,
        )
    )
    rtol = 1e-12 if dtype_name == "float64" else 2e-5
    for t, (g_step, w_step) in enumerate(zip(got, want, strict=True)):
        for g, w in zip(g_step, w_step, strict=True):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * 1e-2, err_msg=f"step {t + 1}")
            assert g.dtype == np.dtype(dtype_name)


def test_dyna_restart_matches_scalar_reference(xp: Any) -> None:
    """Restart (c = 0) before step 5 and warm restart (c = 0.3) before step 9, Sec. 4.1."""
    restarts = {5: 0.0, 9: 0.3}
    opt = dyna(gamma=1.0, beta=0.9, zeta=0.7, fan_in=[2, 5, 1])
    got, _ = run_xp(opt, xp, xp.float64, 12, restarts)
    want = flat_ref(
        dyna_ref(
            [x.ravel().tolist() for x in X0], ref_grads, 12, gamma=1.0, beta=0.9, zeta=0.7,
            fan_in=[2, 5, 1], restart_before=restarts,
        )
    )
    for g_step, w_step in zip(got, want, strict=True):
        for g, w in zip(g_step, w_step, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_prototype_matches_scalar_reference(xp: Any, dtype_name: str) -> None:
    dtype = getattr(xp, dtype_name)
    opt = dyna_prototype(lr=0.05, b1=0.85, b2=damping_ramp(4.0), eps=1e-8)
    got, _ = run_xp(opt, xp, dtype, 10)
    want = flat_ref(
        prototype_ref(
            [x.ravel().tolist() for x in X0], ref_grads, 10, lr=0.05, b1=0.85,
            b2=lambda t: ramp_zeta(t, 4.0), eps=1e-8,
        )
    )
    rtol = 1e-12 if dtype_name == "float64" else 2e-5
    for g_step, w_step in zip(got, want, strict=True):
        for g, w in zip(g_step, w_step, strict=True):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * 1e-2)


def test_golden_reference_distinguishes_the_typo_readings() -> None:
    """The golden test can fail: the literal typo readings give other trajectories.

    μ^t instead of μ_t (Algorithm 1's box) and Eq. 16's plus sign change step 2 by O(1).
    """
    opt = dyna(fan_in=FAN_IN)
    got, _ = run_xp(opt, NP, NP.float64, 2)
    x, mu = X0[1], 0.1 + 0.9 * 0.1  # μ_2 for β = 0.9
    g1 = C[1] * x + D[1]
    # Re-run step 2 by hand with v̂ = v/μ^t: differs from the implementation.
    x1 = got[0][1]
    g2 = C[1] * x1 + D[1]
    eta = 0.9 * 0.1 * np.abs(g1) + 0.1 * np.abs(g2)
    om1 = np.sqrt(np.abs(g1)) + 1e-8
    om2 = np.sqrt(eta / mu) + 1e-8
    v = 0.9 * (-0.05 * g1 / om1) - 0.05 * g2 / om2
    good = x1 + 0.5 * (v / mu) / om2
    typo = x1 + 0.5 * (v / mu**2) / om2
    np.testing.assert_allclose(got[1][1], good, rtol=1e-12)
    assert np.max(np.abs(good - typo)) > 0.1


# ---------------------------------------------------------------------------------------------
# Bias correction (Eq. 19) and the constant-gradient frequency


@given(beta=st.floats(0.0, 0.999), steps=st.integers(1, 60))
def test_total_weight_is_one_minus_beta_power(beta: float, steps: int) -> None:
    """μ_t = β μ_{t−1} + (1 − β) = 1 − β^t (Eqs. 14, 19), in every layer."""
    opt = dyna(beta=beta)
    params = [x.copy() for x in X0]
    state = opt.init(params)
    for _ in range(steps):
        params, state = opt.step(params, np_grads(params), state)
    for mu in state.mu:
        assert mu.shape == ()
        np.testing.assert_allclose(mu, 1.0 - beta**steps, rtol=1e-12, atol=1e-15)


finite_g = st.floats(-1e4, 1e4, allow_nan=False).filter(lambda g: g == 0.0 or abs(g) > 1e-6)


@given(
    g=st.lists(finite_g, min_size=1, max_size=6),
    beta=st.floats(0.0, 0.99),
    zeta=st.floats(0.05, 2.0),
    eps=st.sampled_from([1e-8, 1e-3, 0.5]),
    steps=st.integers(1, 25),
)
def test_constant_gradient_frequency_from_first_step(
    g: list[float], beta: float, zeta: float, eps: float, steps: int
) -> None:
    """Constant g: ω̂_t = sqrt(|g|) + ω̂_ε from t = 1 (Eqs. 13–15 with μ_t), and the step is
    Δθ = −α g/(2ζ ω̂²) every time (v̂_t = −g/(2ζω̂), Eq. 17); Eq. 20 is its t = 1 case."""
    g_arr = np.asarray(g)
    alpha = 2.0 / len(g)
    omega = np.sqrt(np.abs(g_arr)) + eps
    kit.check_bias_correction(
        dyna(beta=beta, zeta=zeta, omega_eps=eps), g_arr, steps,
        expected_step=-alpha * g_arr / (2 * zeta * omega**2), step_rtol=1e-9, step_atol=1e-300,
        estimates=lambda state, t: [("omega_hat", state.omega[0], omega, 1e-12, 0.0)],
    ).raise_if_failed()


def test_first_step_from_rest_eq20(xp: Any) -> None:
    """Eq. 20: from η = v = 0, |v̂_1| = ω̂_1/(2ζ), so Δθ_1 = −sign(g)·α/(2ζ) (ω̂_ε negligible)."""
    opt = dyna(gamma=1.0, zeta=0.8, omega_eps=1e-12)
    params = [xp.asarray(x, dtype=xp.float64) for x in X0]
    new, _ = opt.step(params, xp_grads(xp, params), opt.init(params))
    for p, q, g, n in zip(params, new, np_grads(X0), FAN_IN, strict=True):
        assert_close(q - p, -np.sign(g) * (2.0 / n) / (2.0 * 0.8), xp=xp, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# The step bound of Sec. 4.2


def _steps_ratio(
    grads: np.ndarray, beta: float, zetas: list[float], restarts: dict[int, float] | None = None
) -> np.ndarray:
    """|Δθ_t|/α_t for a gradient sequence ``grads`` of shape (T, d) (fan-in 1, γ = 1)."""
    # A table lookup needs a Python int: the documented, non-traceable host_schedule.
    zeta = physopt_ref.host_schedule(lambda count: zetas[count])
    opt = dyna(beta=beta, zeta=zeta, omega_eps=1e-8, fan_in=1)

    def restart(t: int, state: Any) -> Any:
        return dyna_warm_restart(state, restarts[t]) if restarts and t in restarts else state

    return kit.step_sizes(opt, np.zeros(grads.shape[1]), list(grads), before_step=restart) / 2.0


magnitude = pst.magnitudes(-8.0, 8.0)
signed = pst.signed_magnitudes(-8.0, 8.0)


@settings(max_examples=60)
@given(
    seq=st.lists(st.lists(signed, min_size=3, max_size=3), min_size=1, max_size=40),
    beta=st.floats(0.0, 0.99),
    zeta=st.lists(st.floats(0.5, 2.0), min_size=40, max_size=40),
    restart=st.none() | st.tuples(st.integers(2, 40), st.floats(0.0, 1.0)),
)
def test_step_bound_holds_for_every_gradient_sequence(
    seq: list[list[float]], beta: float, zeta: list[float], restart: tuple[int, float] | None
) -> None:
    """|Δθ_t| ≤ α_t/(ζ_min (1 + sqrt(1 − β))) for any gradients, ζ schedule and restarts."""
    grads = np.asarray(seq)
    restarts = None if restart is None else {restart[0]: restart[1]}
    ratios = _steps_ratio(grads, beta, zeta, restarts)
    zmin = np.minimum.accumulate(np.asarray(zeta[: len(grads)]))
    bound = kit.dyna_step_bound(1.0, beta, zmin)  # in units of α
    kit.check_step_bound(ratios, bound[:, None], rtol=1e-12, what="|Δθ|/α").raise_if_failed()
    # The paper's |Δθ| ≤ α therefore holds once ζ_min ≥ 1/(1 + sqrt(1 − β)):
    ok = zmin >= 1.0 / (1.0 + math.sqrt(1.0 - beta))
    kit.check_step_bound(ratios[ok], 1.0, rtol=1e-12, what="|Δθ|/α").raise_if_failed()


@given(
    seq=st.lists(st.lists(magnitude, min_size=3, max_size=3), min_size=1, max_size=40),
    signs=st.lists(st.sampled_from([-1.0, 1.0]), min_size=120, max_size=120),
    beta=st.floats(0.0, 0.99),
    zeta=st.lists(st.floats(0.5, 2.0), min_size=40, max_size=40),
)
def test_step_bound_of_the_paper_for_non_increasing_gradients(
    seq: list[list[float]], signs: list[float], beta: float, zeta: list[float]
) -> None:
    """Sec. 4.2 as stated: ζ ≥ 0.5 and |g| non-increasing per coordinate ⇒ |Δθ_t| ≤ α_t/(2ζ_min).

    Signs are arbitrary; only magnitudes must not grow.
    """
    mags = -np.sort(-np.asarray(seq), axis=0)  # non-increasing along time, per coordinate
    grads = mags * np.asarray(signs)[: mags.size].reshape(mags.shape)
    ratios = _steps_ratio(grads, beta, zeta)
    zmin = np.minimum.accumulate(np.asarray(zeta[: len(grads)]))
    kit.check_step_bound(ratios, (1.0 / (2.0 * zmin))[:, None], rtol=1e-9).raise_if_failed()
    kit.check_step_bound(ratios, 1.0, rtol=1e-9).raise_if_failed()


def test_step_bound_counterexample_growing_gradients() -> None:
    """ζ = 0.5, β = 0.9, |g_t| = c^t with c = (1 + sqrt(0.1))² ≈ 1.73: |Δθ| → 1.52 α > α.

    The sharp constant 2/(1 + sqrt(1 − β)) is approached; at ζ = 1 the same sequence stays
    below α (ratio → 0.76).
    """
    beta = 0.9
    c = (1.0 + math.sqrt(1.0 - beta)) ** 2
    grads = (c ** np.arange(80.0))[:, None]
    sharp = 2.0 / (1.0 + math.sqrt(1.0 - beta))
    half = _steps_ratio(grads, beta, [0.5] * 80)[:, 0]
    assert half.max() > 1.5, "the paper's |Δθ| ≤ α fails for ζ = 0.5"
    assert half.max() <= sharp * (1 + 1e-12)
    np.testing.assert_allclose(half[-1], sharp, rtol=1e-4)
    one = _steps_ratio(grads, beta, [1.0] * 80)[:, 0]
    assert one.max() <= 1.0
    np.testing.assert_allclose(one[-1], sharp / 2.0, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Descent on a convex quadratic


def _quadratic(d: int, seed: int, log_spread: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    lam = np.exp(rng.uniform(-log_spread, log_spread, d))
    u = rng.normal(size=d)
    return q @ np.diag(lam) @ q.T, u / np.linalg.norm(u)


def _final_ratio(opt: Any, A: np.ndarray, x_star: np.ndarray, x0: np.ndarray, steps: int) -> float:
    def f(x: np.ndarray) -> float:
        return 0.5 * (x - x_star) @ A @ (x - x_star)

    x, state = x0.copy(), opt.init(x0)
    for _ in range(steps):
        x, state = opt.step(x, A @ (x - x_star), state)
    return f(x) / f(x0)


@settings(max_examples=30)
@given(
    name=st.sampled_from(["dyna", "dyna_prototype"]),
    d=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    radius=st.floats(2.0, 50.0),
)
def test_descent_on_convex_quadratic(name: str, d: int, seed: int, radius: float) -> None:
    """Default hyperparameters, a rotated quadratic with condition number up to 1e4, a start at
    distance ≥ 2α from the minimum: after 4·radius/α + 100 steps the loss is ≤ 1/4 of the start.

    (Measured over 800 cases: worst final/initial ratio 0.072 at radius 2α, 5e-5 at 50α.)
    """
    A, u = _quadratic(d, seed, math.log(100.0))
    alpha = 2.0 / d if name == "dyna" else 1e-3  # default fan-in of a (d,) vector; Adam's lr
    x_star = np.linspace(-1.0, 1.0, d)
    x0 = x_star + radius * alpha * u
    ratio = _final_ratio(getattr(physopt_ref, name)(), A, x_star, x0, int(4 * radius) + 100)
    assert ratio <= 0.25


def test_inside_the_oscillation_band_the_loss_can_rise() -> None:
    """Why the descent test starts ≥ 2α away: the step does not shrink with the gradient, so
    from 0.001·α the first step overshoots and the loss rises (Dyna hovers at ~0.03·α)."""
    A = np.eye(1)
    ratio = _final_ratio(dyna(), A, np.zeros(1), np.array([1e-3 * 2.0]), 50)
    assert ratio > 10.0


# ---------------------------------------------------------------------------------------------
# Prototype = Algorithm 1 with α = 2γ/n, β = β₁, ζ = β₂


@given(
    lr=st.floats(1e-4, 1.0),
    b1=st.floats(0.0, 0.99),
    b2=st.floats(0.1, 2.0),
    seed=st.integers(0, 1000),
)
def test_prototype_is_algorithm_1(lr: float, b1: float, b2: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    grads = rng.normal(size=(15, 5)) * np.exp(rng.normal(size=(15, 5)))
    p1 = p2 = np.zeros(5)
    o1, o2 = dyna_prototype(lr=lr, b1=b1, b2=b2), dyna(gamma=lr / 2, beta=b1, zeta=b2, fan_in=1)
    s1, s2 = o1.init(p1), o2.init(p2)
    for g in grads:
        p1, s1 = o1.step(p1, g, s1)
        p2, s2 = o2.step(p2, g, s2)
        np.testing.assert_allclose(p1, p2, rtol=1e-9, atol=1e-12 * lr)
        np.testing.assert_allclose(s1.m[0], -s2.velocity[0], rtol=1e-9, atol=1e-300)


# ---------------------------------------------------------------------------------------------
# Damping ramp (Eq. 22)


@given(T=st.floats(1.0, 1e4), count=st.integers(0, 10**5))
def test_damping_ramp_is_eq22(T: float, count: int) -> None:
    ramp = damping_ramp(T)
    t = count + 1
    zeta = ramp(count)
    assert math.isclose(1.0 / (2.0 * zeta), 1.0 - 0.5 * min(1.0, (t / T) ** 2), rel_tol=1e-14)
    assert 0.5 <= zeta <= 1.0
    assert ramp(count + 1) >= zeta
    if t >= T:
        assert zeta == 1.0


def test_damping_ramp_endpoints_and_general_form() -> None:
    ramp = damping_ramp(10.0)
    assert isinstance(ramp, DampingRamp)
    assert math.isclose(ramp(0), 1.0 / (2.0 * (1.0 - 0.5 * 0.01)))  # t = 1
    assert ramp(9) == 1.0 and ramp(500) == 1.0
    down = damping_ramp(4.0, zeta_start=2.0, zeta_end=0.5)
    assert down(3) == 0.5 and down(0) > down(1) > down(2)
    for bad in ({"T": 0.0}, {"T": 5.0, "zeta_start": 0.0}, {"T": 5.0, "zeta_end": 2.5}):
        with pytest.raises(ValueError):
            damping_ramp(**bad)


def test_damping_ramp_outside_range_is_refused_at_the_step() -> None:
    opt = dyna(zeta=lambda count: 3.0)
    with pytest.raises(ValueError, match="zeta"):
        opt.step(np.ones(2), np.ones(2), opt.init(np.ones(2)))


# ---------------------------------------------------------------------------------------------
# Fan-in


def test_default_fan_in_rule() -> None:
    assert default_fan_in(()) == 1
    assert default_fan_in((7,)) == 7
    assert default_fan_in((784, 10)) == 784
    assert default_fan_in((3, 3, 16, 32)) == 3 * 3 * 16


def test_fan_in_forms_and_ensembles() -> None:
    params = {"w": np.zeros((5, 784, 10)), "b": np.zeros((5, 10))}
    assert resolve_fan_in(params, batch_ndim=1) == {"w": 784, "b": 10}
    assert resolve_fan_in(params, 784, batch_ndim=1) == {"w": 784, "b": 784}
    assert resolve_fan_in(params, {"w": 784, "b": 784}, batch_ndim=1) == {"w": 784, "b": 784}
    assert resolve_fan_in(params, lambda shape: shape[0], batch_ndim=1) == {"w": 784, "b": 10}
    with pytest.raises(ValueError, match="structure"):
        resolve_fan_in(params, {"w": 784})
    with pytest.raises(ValueError, match="fan_in"):
        dyna(fan_in=0)
    with pytest.raises(ValueError, match="fan_in"):
        dyna(fan_in={"w": 3, "b": -1})
    with pytest.raises(TypeError, match="fan_in"):
        dyna(fan_in=2.5)
    with pytest.raises(ValueError, match="structure"):
        dyna(fan_in=[1, 2]).init({"w": np.zeros(3)})


@pytest.mark.parametrize("fan_in", [None, 4, {"a": 2, "b": 8}, lambda shape: 3])
def test_fan_in_sets_the_first_step(fan_in: Any) -> None:
    """From rest |Δθ_1| = α/(2ζ) = γ/(nζ) (Eq. 20) with each leaf's n."""
    params = {"a": np.array([1.0, -2.0]), "b": np.array([[0.5, 3.0], [-1.0, 2.0]])}
    grads = {"a": np.array([0.3, -4.0]), "b": np.array([[1.0, 2.0], [-3.0, 0.25]])}
    opt = dyna(gamma=1.5, zeta=0.75, omega_eps=1e-14, fan_in=fan_in)
    new, _ = opt.step(params, grads, opt.init(params))
    ns = resolve_fan_in(params, fan_in)
    for k in params:
        want = -np.sign(grads[k]) * 1.5 / (ns[k] * 0.75)
        np.testing.assert_allclose(new[k] - params[k], want, rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# Restart (Sec. 4.1)


def test_restart_makes_the_next_step_a_first_step() -> None:
    opt = dyna(zeta=0.6, omega_eps=1e-14, fan_in=1)
    params = [x.copy() for x in X0]
    state = opt.init(params)
    for _ in range(7):
        params, state = opt.step(params, np_grads(params), state)
    fresh = opt.init(params)
    after_restart = opt.step(params, np_grads(params), dyna_restart(state))
    after_fresh = opt.step(params, np_grads(params), fresh)
    for a, b in zip(after_restart[0], after_fresh[0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    assert after_restart[1].count == 8  # the count (and a ζ schedule) goes on


def test_warm_restart_keeps_normalised_estimates() -> None:
    opt = dyna()
    params = [x.copy() for x in X0]
    state = opt.init(params)
    for _ in range(4):
        params, state = opt.step(params, np_grads(params), state)
    warm = dyna_warm_restart(state, 0.25)
    for e0, v0, m0, e1, v1, m1 in zip(
        state.eta, state.velocity, state.mu, warm.eta, warm.velocity, warm.mu, strict=True
    ):
        np.testing.assert_allclose(m1, 0.25 * m0)
        np.testing.assert_allclose(e1 / m1, e0 / m0, rtol=1e-14)
        np.testing.assert_allclose(v1 / m1, v0 / m0, rtol=1e-14)


def test_restart_selected_layers_and_runs(xp: Any) -> None:
    """``layers`` picks leaves, ``where`` picks ensemble members; the others are untouched."""
    opt = dyna(beta=0.8)
    params = [xp.asarray(np.stack([x, 2 * x, -x]), dtype=xp.float64) for x in X0]
    state = opt.init(params, batch_ndim=1)
    for _ in range(3):
        params, state = opt.step(params, xp_grads(xp, params), state)
    for mu in state.mu:  # one total weight per layer and run, 1 − β^t (Eq. 19)
        assert_close(mu, np.full((3,), 1.0 - 0.8**3), xp=xp, rtol=1e-13)
    where = xp.asarray([True, False, True])
    new = dyna_restart(state, layers=[0, 2], where=where)
    assert isinstance(new, DynaState)
    for i in range(3):
        old_eta, new_eta = to_numpy(state.eta[i]), to_numpy(new.eta[i])
        old_mu, new_mu = to_numpy(state.mu[i]), to_numpy(new.mu[i])
        if i == 1:
            np.testing.assert_array_equal(new_eta, old_eta)
            np.testing.assert_array_equal(new_mu, old_mu)
            continue
        np.testing.assert_array_equal(new_eta[1], old_eta[1])
        np.testing.assert_array_equal(new_mu, [0.0, old_mu[1], 0.0])
        assert np.all(new_eta[[0, 2]] == 0.0)
        assert np.all(to_numpy(new.velocity[i])[[0, 2]] == 0.0)
    assert dyna_restart(state, where=False) is state


def test_restart_is_pure_and_checks_its_arguments() -> None:
    opt = dyna()
    params = [x.copy() for x in X0]
    state = opt.init(params)
    params, state = opt.step(params, np_grads(params), state)
    for arrays in (state.eta, state.velocity, state.mu):
        for a in arrays:
            if isinstance(a, np.ndarray):  # NumPy turns 0-d results into (immutable) scalars
                a.flags.writeable = False
    dyna_warm_restart(state, 0.5)
    with pytest.raises(ValueError, match="factor"):
        dyna_warm_restart(state, 1.5)
    with pytest.raises(ValueError, match="layers"):
        dyna_restart(state, layers=[3])
    with pytest.raises(ValueError, match="ensemble shape"):
        dyna_restart(state, where=np.array([True, False]))
    with pytest.raises(TypeError):
        dyna_restart(dyna_prototype().init(params))


# ---------------------------------------------------------------------------------------------
# Hyperparameter validation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"zeta": 0.0}, {"zeta": 2.5}, {"beta": 1.0}, {"beta": -0.1}, {"gamma": -0.1},
        {"omega_eps": 0.0},
    ],
)
def test_dyna_refuses_out_of_range(kwargs: dict[str, float]) -> None:
    (key,) = kwargs
    with pytest.raises(ValueError, match=key):
        dyna(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"b2": 0.0}, {"b2": 2.5}, {"b1": 1.0}, {"lr": -1e-3}, {"eps": 0.0}]
)
def test_prototype_refuses_out_of_range(kwargs: dict[str, float]) -> None:
    (key,) = kwargs
    with pytest.raises(ValueError, match=key):
        dyna_prototype(**kwargs)


def test_defaults_are_the_papers() -> None:
    assert dict(dyna().hyperparameters) == {
        "gamma": 1.0, "beta": 0.9, "zeta": 1.0, "omega_eps": 1e-8, "fan_in": None
    }
    assert dict(dyna_prototype().hyperparameters) == {
        "lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8
    }
