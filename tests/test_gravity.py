r"""Gravity: golden values against the scalar reference, and the properties of its step.

Properties (Bahrami & Pouriyan Zadeh 2021, arXiv 2101.09192):

* β̂_t = (βt+1)/(t+2) (Eq. 26): 1/2 on the first step by default (Table 2, Eq. 28), (β+1)/3 with
  the official PyTorch counting; it rises towards β from below.
* |ζ| ≤ m/2 elementwise with equality at |g| = m (Eqs. 18-19: f(g) = g/(1+(g/m)²) has
  f'(±m) = 0, and |g|/(1+g²/m²) ≤ m/2 ⇔ (|g| − m)² ≥ 0).
* ζ → g as g → 0: ζ − g = −g u²/(1+u²) with u = g·max|G|, so |ζ − g| ≤ |g| u².
* An all-zero gradient gives ζ = 0, a finite step and no warning.
* V₀ ~ N(0, (α/l)²) per element, seeded: its sample standard deviation matches α/l.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref as po

from .helpers import assert_close
from .reference import gravity_ref as ref
from .reference import philox_ref

NP = get_namespace("numpy")
SHAPES = {"b": (4,), "w": (3, 4)}  # sorted keys: the leaf order of a dict tree
SCALES = {"b": 0.2, "w": 1.7}  # curvatures per leaf: different max|G| per leaf


def _start() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {k: rng.normal(size=s) for k, s in SHAPES.items()}


def _grad_ref(leaves: list[list[float]]) -> list[list[float]]:
    out = []
    for leaf, c in zip(leaves, SCALES.values(), strict=True):
        out.append([c * v + 0.3 * v**3 for v in leaf])
    return out


def _grads(params: dict[str, Any]) -> dict[str, Any]:
    return {k: SCALES[k] * v + 0.3 * v**3 for k, v in params.items()}


@pytest.mark.parametrize("t_start", [0, 1])
def test_golden_trajectory(t_start: int, xp: Any) -> None:
    """10 steps on a two-leaf tree against the literal Algorithm 1 (V₀ read from the state)."""
    opt = po.gravity(lr=0.1, alpha=0.05, beta=0.8, seed=11, t_start=t_start)
    params = {k: xp.asarray(v) for k, v in _start().items()}
    state = opt.init(params)
    v0 = [to_numpy(v).ravel().tolist() for v in state.velocity]
    leaves0 = [v.ravel().tolist() for v in _start().values()]
    expected = ref.gravity_run_ref(leaves0, v0, _grad_ref, 10, 0.1, 0.8, t_start)
    for t in range(10):
        params, state = opt.step(params, _grads(params), state)
        for i, key in enumerate(SHAPES):
            assert_close(params[key], np.reshape(expected[t][i], SHAPES[key]), xp=xp,
                         rtol=1e-12, atol=1e-14, err_msg=f"step {t + 1} leaf {key}")


def test_v0_is_the_seeded_draw(xp: Any) -> None:
    """V₀ = (α/l)·normal(seed, counter 0, stream = leaf index), the same on every backend.

    The reference draw is the independent Philox reference (tests/reference/philox_ref.py); the
    normals agree to a few ulps (the backends' log/cos/sin differ in the last bits).
    """
    opt = po.gravity(lr=0.2, alpha=0.03, seed=5)
    params = {k: xp.asarray(v) for k, v in _start().items()}
    state = opt.init(params)
    for i, (key, shape) in enumerate(SHAPES.items()):
        want = 0.15 * philox_ref.draw("normal", 5, 0, shape, 0, i, 64)
        assert_close(state.velocity[i], want, xp=xp, rtol=1e-13, atol=1e-15, err_msg=key)
    other = po.gravity(lr=0.2, alpha=0.03, seed=6).init(params)
    assert not np.allclose(to_numpy(other.velocity[0]), to_numpy(state.velocity[0]))


@pytest.mark.parametrize(("lr", "alpha", "seed"), [(0.1, 0.01, 0), (0.01, 0.01, 1), (0.5, 0.2, 2)])
def test_v0_sample_std_matches_alpha_over_lr(lr: float, alpha: float, seed: int) -> None:
    """Sample std of 200 000 V₀ elements within 1 % of α/l (standard error 0.16 %), mean ≈ 0.

    Measured, both leaves pooled: std/(α/l) = 0.99975, 0.99924, 1.00018 and mean/(σ/√n) = 1.35,
    −0.46, −0.29 for the three settings. The default l = 0.1, α = 0.01 gives σ = 0.1 (spec §b.3).
    """
    opt = po.gravity(lr=lr, alpha=alpha, seed=seed)
    state = opt.init([np.zeros((400, 250)), np.zeros((100_000,))])
    v = np.concatenate([to_numpy(x).ravel() for x in state.velocity])
    sigma = alpha / lr
    assert np.std(v) == pytest.approx(sigma, rel=0.01)
    assert abs(np.mean(v)) < 5.0 * sigma / np.sqrt(v.size)
    # the two leaves are independent draws, not copies
    a, b = (to_numpy(x).ravel()[:1000] for x in state.velocity)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.15


def test_alpha_zero_gives_zero_v0() -> None:
    state = po.gravity(alpha=0.0).init(np.ones(5))
    np.testing.assert_array_equal(state.velocity[0], np.zeros(5))


# --------------------------------------------------------------------------------------------
# β̂


def test_beta_hat_sequences_from_the_spec() -> None:
    """Keras/paper text: 0.5, 0.633, 0.7, 0.74; PyTorch: 0.633, 0.7, 0.74, 0.767 (β = 0.9)."""
    keras = [po.gravity_beta_hat(0.9, t) for t in range(4)]
    torch_ = [po.gravity_beta_hat(0.9, t) for t in range(1, 5)]
    np.testing.assert_allclose(keras, [0.5, 1.9 / 3, 0.7, 0.74], rtol=1e-15)
    np.testing.assert_allclose(torch_, [1.9 / 3, 0.7, 0.74, 4.6 / 6], rtol=1e-15)


@given(beta=st.floats(0.0, 1.0), t=st.integers(0, 10_000))
def test_beta_hat_closed_forms(beta: float, t: int) -> None:
    bh = po.gravity_beta_hat(beta, t)
    assert bh == pytest.approx(ref.beta_hat_ref(beta, t), rel=1e-15)
    assert bh == pytest.approx(beta - (2.0 * beta - 1.0) / (t + 2.0), rel=1e-12, abs=1e-15)
    if beta > 0.5:
        assert 0.5 <= bh <= beta
        assert po.gravity_beta_hat(beta, t + 1) >= bh
    if beta == 1.0:
        assert 1.0 / (1.0 - bh) == pytest.approx(t + 2.0, rel=1e-9)


@pytest.mark.parametrize("t_start", [0, 1])
@given(beta=st.floats(0.0, 1.0))
@settings(max_examples=15)
def test_step_uses_the_beta_hat_sequence(t_start: int, beta: float) -> None:
    """With V₀ = 0 and a constant gradient, V_t = (1 − Π β̂_k) ζ: check three steps."""
    opt = po.gravity(lr=0.5, alpha=0.0, beta=beta, t_start=t_start)
    g = np.asarray([0.3, -0.1, 0.2])
    zeta = np.asarray(ref.zeta_ref(g.tolist()))
    x = np.zeros(3)
    state = opt.init(x)
    prod = 1.0
    for k in range(3):
        new, state = opt.step(x, g, state)
        prod *= po.gravity_beta_hat(beta, k + t_start)
        np.testing.assert_allclose(x - new, 0.5 * (1.0 - prod) * zeta, rtol=1e-13, atol=1e-17)
        x = new


# --------------------------------------------------------------------------------------------
# ζ


grads_st = hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 6)),
                      elements=st.floats(-1e3, 1e3))


def _check_zeta_bound(xp: Any, g: np.ndarray) -> None:
    z = to_numpy(po.gravity_zeta(xp, xp.asarray(g), batch_ndim=1))
    gmax = np.max(np.abs(g), axis=1, keepdims=True)
    with np.errstate(divide="ignore", over="ignore"):
        m = 1.0 / gmax  # inf where a row is all zero (or a tiny subnormal)
    assert np.all(np.abs(z) <= m / 2.0 * (1.0 + 1e-12))
    expected = np.asarray([ref.zeta_ref(row.tolist()) for row in g])
    np.testing.assert_allclose(z, expected, rtol=1e-13, atol=1e-300)


@given(g=grads_st)
@settings(max_examples=40)
def test_zeta_bounded_by_half_m(g: np.ndarray) -> None:
    """|ζ| ≤ m/2 with m = 1/max|G| per run (rows are ensemble members), and ζ matches Eq. 21."""
    _check_zeta_bound(NP, g)


def test_zeta_bounded_by_half_m_every_backend(xp: Any) -> None:
    """The same on every backend, for rows of ordinary, huge, tiny, subnormal and zero size."""
    rng = np.random.default_rng(3)
    g = rng.normal(size=(6, 7)) * np.asarray([[1.0], [1e3], [1e-3], [1e-310], [0.0], [30.0]])
    _check_zeta_bound(xp, g)


def test_zeta_attains_half_m_at_g_equal_m(xp: Any) -> None:
    """Eq. 19: the largest ζ is m/2, at |g| = m (here max|G| = 2, m = 1/2, g = ±1/2)."""
    g = xp.asarray(np.asarray([2.0, 0.5, -0.5, 0.1]))
    z = to_numpy(po.gravity_zeta(xp, g))
    np.testing.assert_allclose(z[1:3], [0.25, -0.25], rtol=1e-15)
    assert np.all(np.abs(z) <= 0.25)


@given(g=hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(-1.0, 1.0)),
       scale=st.floats(1e-6, 1e-2))
@settings(max_examples=30)
def test_zeta_tends_to_g_for_small_gradients(g: np.ndarray, scale: float) -> None:
    """|ζ − g| ≤ |g| (g·max|G|)² ≤ |g| s⁴ for gradients of size ≤ s: ζ/g → 1 as s → 0."""
    gs = scale * g
    z = to_numpy(po.gravity_zeta(NP, gs))
    # the bound plus the rounding of 1 + u² and of the division (a few ulp of g)
    assert np.all(np.abs(z - gs) <= np.abs(gs) * (scale**4 + 4.0 * np.finfo(float).eps))
    assert np.all(np.abs(z - gs) <= np.abs(gs) * 1e-8)


def test_zeta_is_not_scale_invariant() -> None:
    """Doubling a gradient that is already large shrinks ζ (the paper's inclined-plane cap)."""
    g = np.asarray([1.0, 3.0])
    z1, z2 = to_numpy(po.gravity_zeta(NP, g)), to_numpy(po.gravity_zeta(NP, 2.0 * g))
    assert abs(z2[1]) < abs(z1[1])


# --------------------------------------------------------------------------------------------
# Zero gradients, ensembles, dtypes


def test_all_zero_gradient_is_finite_and_silent(xp: Any) -> None:
    """An all-zero gradient: ζ = 0 (V just decays by β̂), finite, no warning of any kind."""
    opt = po.gravity(seed=2)
    x = xp.asarray(np.ones((2, 5)))
    state = opt.init(x, batch_ndim=1)
    v0 = to_numpy(state.velocity[0])
    g = xp.asarray(np.vstack([np.zeros(5), np.linspace(-1.0, 1.0, 5)]))
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        new, state = opt.step(x, g, state)
    got = to_numpy(new)
    assert np.all(np.isfinite(got))
    # run 0 (zero gradient): V = V0/2; run 1: V = V0/2 + ζ/2 with its own max|G| = 1
    np.testing.assert_allclose(got[0], 1.0 - 0.1 * 0.5 * v0[0], rtol=1e-14)
    zeta1 = np.asarray(ref.zeta_ref(np.linspace(-1.0, 1.0, 5).tolist()))
    np.testing.assert_allclose(got[1], 1.0 - 0.1 * (0.5 * v0[1] + 0.5 * zeta1), rtol=1e-14)


def test_max_is_per_leaf_and_per_run(xp: Any) -> None:
    """m is taken over each leaf separately and, in an ensemble, over each run separately."""
    g_w = np.asarray([[[4.0, 1.0]], [[0.5, 0.25]]])  # (2 runs, 1, 2)
    g_b = np.asarray([[0.1], [3.0]])                  # (2 runs, 1)
    got_w = to_numpy(po.gravity_zeta(xp, xp.asarray(g_w), batch_ndim=1))
    got_b = to_numpy(po.gravity_zeta(xp, xp.asarray(g_b), batch_ndim=1))
    for k in range(2):
        np.testing.assert_allclose(got_w[k].ravel(), ref.zeta_ref(g_w[k].ravel().tolist()),
                                   rtol=1e-14)
        np.testing.assert_allclose(got_b[k], ref.zeta_ref(g_b[k].tolist()), rtol=1e-14)
    # and through a step of an ensemble (V₀ = 0, so ΔW = −l/2 ζ on the first step)
    opt = po.gravity(lr=0.1, alpha=0.0)
    params = {"w": xp.zeros((2, 1, 2), dtype=xp.float64), "b": xp.zeros((2, 1), dtype=xp.float64)}
    new, _ = opt.step(params, {"w": xp.asarray(g_w), "b": xp.asarray(g_b)},
                      opt.init(params, batch_ndim=1))
    for k in range(2):
        np.testing.assert_allclose(-to_numpy(new["w"])[k].ravel(),
                                   0.05 * np.asarray(ref.zeta_ref(g_w[k].ravel().tolist())),
                                   rtol=1e-14)


def test_float32_stays_float32(xp: Any) -> None:
    opt = po.gravity(seed=1)
    x = xp.ones((3, 2), dtype=xp.float32)
    state = opt.init(x)
    assert state.velocity[0].dtype == xp.float32
    new, state = opt.step(x, x, state)
    assert new.dtype == xp.float32 and state.velocity[0].dtype == xp.float32


def test_errors_name_parameter_and_symbol() -> None:
    with pytest.raises(ValueError, match=r"lr \(l\) must be in \(0, inf\)"):
        po.gravity(lr=0.0)
    with pytest.raises(ValueError, match=r"alpha \(α\)"):
        po.gravity(alpha=-0.1)
    with pytest.raises(ValueError, match=r"beta \(β\) must be in \[0, 1\]"):
        po.gravity(beta=1.1)
    with pytest.raises(ValueError, match="t_start"):
        po.gravity(t_start=2)
    with pytest.raises(TypeError, match="seed"):
        po.gravity(seed=1.5)
