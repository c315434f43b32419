"""Classic optimizers: golden values against the scalar references, and their physics.

Property tests (hypothesis) check the stability conditions on a quadratic of curvature k:
gradient descent is stable iff η < 2/k; heavy ball iff 0 ≤ β < 1 and η < 2(1+β)/k (Polyak
1964; the roots of r² − (1+β−ηk) r + β lie in the unit disc exactly then); Nesterov iff
η < 2(1+β)/((1+2β)k). They also check Adam's bias correction: under a constant gradient
m̂_t = g and v̂_t = g² from the first step. The checks are the kit's
(:mod:`physopt_ref.testing.stability`, :mod:`physopt_ref.testing.steps`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref as po
from physopt_ref import testing as kit
from physopt_ref.testing import strategies as pst

from .helpers import assert_close
from .reference import classic_ref as ref

NP = get_namespace("numpy")
CURV = [0.3, 1.0, 2.5, 4.0]
X0 = [1.0, -2.0, 0.5, 3.0]


def _grad(x: list[float]) -> list[float]:
    """Gradient of a non-quadratic separable test function: ½ k x² + 0.1 x⁴ / 4 ... per coord."""
    return [k * xi + 0.1 * xi**3 for k, xi in zip(CURV, x, strict=True)]


def _run(opt: po.Optimizer, xp: Any, steps: int) -> list[Any]:
    x = xp.asarray(np.asarray(X0), dtype=xp.float64)
    c = xp.asarray(np.asarray(CURV), dtype=xp.float64)
    state = opt.init(x)
    out = []
    for _ in range(steps):
        x, state = opt.step(x, c * x + 0.1 * x**3, state)
        out.append(x)
    return out


@pytest.mark.parametrize(
    ("opt", "reference"),
    [
        (po.sgd(lr=0.1), lambda: ref.sgd(X0, _grad, 0.1, 12)),
        (po.heavy_ball(lr=0.05, momentum=0.7), lambda: ref.heavy_ball(X0, _grad, 0.05, 0.7, 12)),
        (po.nesterov(lr=0.05, momentum=0.7), lambda: ref.nesterov(X0, _grad, 0.05, 0.7, 12)),
        (
            po.adam(lr=0.1, b1=0.8, b2=0.99, eps=1e-6),
            lambda: ref.adam(X0, _grad, 0.1, 0.8, 0.99, 1e-6, 12),
        ),
    ],
    ids=["sgd", "heavy_ball", "nesterov", "adam"],
)
def test_golden_values(opt: po.Optimizer, reference: Any, xp: Any) -> None:
    got = _run(opt, xp, 12)
    for t, expected in enumerate(reference()):
        assert_close(got[t], expected, xp=xp, rtol=1e-13, atol=1e-15, err_msg=f"step {t + 1}")


def test_lr_schedule_is_used() -> None:
    opt = po.sgd(lr=lambda t: 0.1 / (1 + t))
    x = np.asarray([1.0])
    state = opt.init(x)
    for t in range(3):
        x_new, state = opt.step(x, np.asarray([1.0]), state)
        np.testing.assert_allclose(x - x_new, [0.1 / (1 + t)], rtol=1e-15)
        x = x_new
    bad = po.sgd(lr=lambda t: -1.0)
    with pytest.raises(ValueError, match="lr"):
        bad.step(x, x, bad.init(x))


def test_errors_name_parameter_range_and_symbol() -> None:
    with pytest.raises(ValueError, match=r"momentum \(β\) must be in \[0, 1\)"):
        po.heavy_ball(momentum=1.0)
    with pytest.raises(ValueError, match=r"lr \(η\) must be in \[0, inf\)"):
        po.sgd(lr=-1e-3)  # 0 is legal: a no-op (issue 21)
    with pytest.raises(TypeError, match="b1"):
        po.adam(b1="0.9")
    with pytest.raises(ValueError, match="b2"):
        po.adam(b2=float("inf"))


RATIOS = st.one_of(st.floats(0.05, 0.97), st.floats(1.03, 1.5))


@given(k=st.floats(0.1, 100.0), ratio=RATIOS)
def test_gradient_descent_stable_iff_lr_below_2_over_k(k: float, ratio: float) -> None:
    threshold = kit.stability_threshold("gd", k)
    lr = ratio * 2.0 / k
    kit.check_stability_at(lambda v: po.sgd(lr=v), k, lr, threshold).raise_if_failed()


@given(k=st.floats(0.1, 100.0), beta=st.floats(0.0, 0.95), ratio=RATIOS)
def test_heavy_ball_stable_iff_lr_below_2_1_plus_beta_over_k(
    k: float, beta: float, ratio: float
) -> None:
    threshold = kit.stability_threshold("heavy_ball", k, beta)
    lr = ratio * 2.0 * (1.0 + beta) / k
    kit.check_stability_at(lambda v: po.heavy_ball(lr=v, momentum=beta), k, lr,
                           threshold).raise_if_failed()


@given(k=st.floats(0.1, 100.0), beta=st.floats(0.0, 0.95), ratio=RATIOS)
def test_nesterov_stable_iff_lr_below_its_bound(k: float, beta: float, ratio: float) -> None:
    """η < 2(1+β)/((1+2β)k): the Jury conditions of r² − (1−ηk)(1+β) r + β(1−ηk)."""
    threshold = kit.stability_threshold("nesterov", k, beta)
    kit.check_stability_at(lambda v: po.nesterov(lr=v, momentum=beta), k, ratio * threshold,
                           threshold).raise_if_failed()


@settings(max_examples=6)
@given(method=st.sampled_from(["gd", "heavy_ball", "nesterov"]), k=st.floats(0.1, 100.0),
       beta=st.floats(0.0, 0.95))
def test_measured_stability_threshold_is_the_theory(method: str, k: float, beta: float) -> None:
    """Bisection on the step size finds the theoretical threshold within 3 %."""
    factory = {"gd": lambda v: po.sgd(lr=v),
               "heavy_ball": lambda v: po.heavy_ball(lr=v, momentum=beta),
               "nesterov": lambda v: po.nesterov(lr=v, momentum=beta)}[method]
    theory = kit.stability_threshold(method, k, 0.0 if method == "gd" else beta)
    kit.check_stability_threshold(factory, k, theory, rtol=0.03).raise_if_failed()


def test_heavy_ball_refuses_momentum_outside_0_1() -> None:
    """β ≥ 1 is never stable (the product of the roots is β), so the factory refuses it."""
    for beta in (1.0, 1.2, -0.1):
        with pytest.raises(ValueError, match="momentum"):
            po.heavy_ball(momentum=beta)


@given(
    # |g| >= 1e-100 keeps g² out of the subnormal range, where relative precision is lost
    g=pst.constant_gradients(),
    b1=st.floats(0.0, 0.999),
    b2=st.floats(0.0, 0.9999),
    steps=st.integers(1, 30),
)
def test_adam_bias_corrected_moments_equal_constant_gradient(
    g: np.ndarray, b1: float, b2: float, steps: int
) -> None:
    def estimates(state: Any, t: int) -> list[kit.steps.Estimate]:
        return [("m_hat", to_numpy(state.mu[0]) / (1 - b1**t), g, 1e-12, 0.0),
                ("v_hat", to_numpy(state.rms[0]) ** 2 / (1 - b2**t), g * g, 1e-12, 0.0)]

    result = kit.check_bias_correction(po.adam(lr=1e-3, b1=b1, b2=b2), g, steps,
                                       step_rtol=None, estimates=estimates).raise_if_failed()
    # and therefore every step moves each coordinate by lr·g/(|g| + ε) ≈ lr·sign(g)
    assert np.all(np.abs(result.values["params"]) <= 1e-3 * steps * (1 + 1e-12))


def test_nesterov_first_step() -> None:
    """x₁ = y₀ − ηg and y₁ = x₁ + α(x₁ − x₀) with x₀ = y₀: y₁ = y₀ − (1+α)ηg."""
    x = np.asarray([2.0, -1.0])
    opt = po.nesterov(lr=0.1, momentum=0.9)
    new, state = opt.step(x, x, opt.init(x))
    np.testing.assert_allclose(new, x - 1.9 * 0.1 * x, rtol=1e-15)
    # the state keeps v₁ = x₁ − x₀, and x₁ = y₁ − α v₁
    np.testing.assert_allclose(state.velocity[0], -0.1 * x, rtol=1e-15)
    np.testing.assert_allclose(new - 0.9 * state.velocity[0], x - 0.1 * x, rtol=1e-15)


@settings(max_examples=20)
@given(beta=st.floats(0.0, 0.95), lr=st.floats(0.01, 1.0))
def test_nesterov_x_sequence_is_heavy_ball_under_constant_gradient(beta: float, lr: float) -> None:
    """Nesterov's x_k obey x_{k+1} = x_k − ηg + α(x_k − x_{k−1}) when g does not depend on y."""
    g = np.asarray([0.7, -1.3])
    nag, hb = po.nesterov(lr=lr, momentum=beta), po.heavy_ball(lr=lr, momentum=beta)
    y = x = np.zeros(2)
    s_nag, s_hb = nag.init(y), hb.init(x)
    for _ in range(10):
        y, s_nag = nag.step(y, g, s_nag)
        x, s_hb = hb.step(x, g, s_hb)
        np.testing.assert_allclose(y - beta * s_nag.velocity[0], x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["sgd", "heavy_ball", "nesterov", "adam"])
def test_jitted_donated_step_copies_no_parameter_sized_array(name: str) -> None:
    """Under ``physopt_ref.compile`` on JAX (``jax.jit`` with ``donate_argnums``) the classic
    steps write their outputs into the donated buffers with no full-size copy. Nesterov with
    x_k as its state (before issue 25) had two: each output's buffer was read by the other's
    formula."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    opt = po.get_optimizer(name)
    x = jnp.linspace(-1.0, 1.0, 97, dtype=jnp.float32)
    step = po.compile(opt)
    hlo = step._fn_for(x).lower(x, 0.5 * x, opt.init(x), None).compile().as_text()
    copies = [line for line in hlo.splitlines() if "f32[97]" in line and " copy(" in line]
    assert copies == [], copies


def test_nesterov_refuses_the_old_state_layout() -> None:
    """The state keeps the velocity (field ``velocity``), not x_k: a state of the old layout
    (a MomentumState holding x_k) is refused, not read as a velocity."""
    x = np.asarray([1.0, 2.0])
    with pytest.raises(TypeError, match="expects a NesterovState"):
        po.nesterov().step(x, x, po.MomentumState(np.int32(0), (x.copy(),)))
