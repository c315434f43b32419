"""ECDSep: golden values against the scalar reference, energy properties, jitter, step bound.

Numbers quoted from the spec (``shared/specs/ecd.md`` §3.3): right after the rescale
V(s + |p|²) = e^E to 4-6e-16; one-step drift of H 1.2e-5, 9.9e-7, 1.1e-7 for Δt = 1e-2, 3e-3,
1e-3 (η = 2, ν = 1e-3, d = 10, quadratic); max |Δq|/Δt = 0.9999-1.0000 for s = 1. The energy
and step-bound checks are the kit's (:mod:`physopt_ref.testing`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref
from physopt_ref import testing as kit

from .helpers import assert_close
from .reference.ecd_ref import ecdsep_reference
from .test_bbi import SHAPES, X0, loss_grad_ref, loss_grad_xp

NP = get_namespace("numpy")


def run(opt: physopt_ref.Optimizer, xp: Any, x0: list[np.ndarray], steps: int, bn: int = 0):
    params = [xp.asarray(v, dtype=xp.float64) for v in x0]
    state = opt.init(params, batch_ndim=bn)
    out = []
    for _ in range(steps):
        loss, grads = loss_grad_xp(xp, params, bn)
        params, state = opt.step(params, grads, state, loss=loss)
        out.append((params, state))
    return out


GOLDEN = {
    "default_like": dict(lr=0.05, eta=1.0, nu=1e-3, seed=3),
    "eta_wd": dict(lr=0.1, eta=2.5, nu=0.2, delta_e=1.0, f0=0.1, weight_decay=0.05, seed=9),
    "s_half_no_rescale": dict(lr=0.05, eta=1.5, nu=0.05, s=0.5, rescale=False, seed=1),
    "tuning": dict(lr=0.3, eta=1.5, nu=0.1, delta_e=0.5, f0=3.5, weight_decay=0.01,
                   f0_tuning=True, seed=5),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_against_scalar_reference(case: str, xp: Any) -> None:
    hp = GOLDEN[case]
    steps = 14
    opt = physopt_ref.ecdsep(**hp)
    ref_hp = dict(hp) | {"delta_e": opt.hyperparameters["delta_e"]}
    ref = ecdsep_reference(SHAPES, [x.ravel().tolist() for x in X0], loss_grad_ref, steps, **ref_hp)
    got = run(opt, xp, X0, steps)
    events = set()
    for t, ((params, state), r) in enumerate(zip(got, ref, strict=True)):
        msg = f"{case} call {t}"
        for leaf, shape, want, want_p, p in zip(
            params, SHAPES, r["q"], r["p"], state.momentum, strict=True
        ):
            assert_close(leaf, np.reshape(want, shape), xp=xp, rtol=1e-10, atol=1e-13, err_msg=msg)
            assert_close(p, np.reshape(want_p, shape), xp=xp, rtol=1e-10, atol=1e-13, err_msg=msg)
        assert_close(state.exp_energy, r["exp_energy"], xp=xp, rtol=1e-12, err_msg=msg)
        assert_close(state.potential, r["potential"], xp=xp, rtol=1e-10, atol=1e-14, err_msg=msg)
        assert_close(state.floor, r["floor"], xp=xp, rtol=1e-10, atol=1e-14, err_msg=msg)
        assert int(to_numpy(state.event)) == r["event"], msg
        events.add(r["event"])
    if hp.get("f0_tuning"):
        assert 3 in events, "the tuning case should move the floor"


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_golden_ensemble_members_use_member_k(backend: str) -> None:
    """Member k of an ensemble equals the scalar reference run with the same seed and member
    index k (draws keyed by (seed, member))."""
    xp = get_namespace(backend)  # backend parity is the contract test's job
    hp = GOLDEN["tuning"] | {"seed": 12}
    shift = 0.3 * np.arange(3.0)
    x0 = [x + shift.reshape((3,) + (1,) * x.ndim) for x in X0]
    got = run(physopt_ref.ecdsep(**hp), xp, x0, 10, bn=1)
    for k in range(3):
        ref = ecdsep_reference(
            SHAPES, [x[k].ravel().tolist() for x in x0], loss_grad_ref, 10,
            **(hp | {"seed": 12, "member": k}),
        )
        for (params, state), r in zip(got, ref, strict=True):
            for leaf, shape, want in zip(params, SHAPES, r["q"], strict=True):
                np.testing.assert_allclose(
                    to_numpy(leaf)[k], np.reshape(want, shape), rtol=1e-10, atol=1e-13
                )
            assert int(to_numpy(state.event)[k]) == r["event"]


@settings(max_examples=15)
@given(
    delta_e=st.floats(0.05, 5.0),
    frac=st.floats(0.02, 1.0),
    eta=st.floats(1.0, 4.0),
    s=st.sampled_from([1.0, 0.5, 2.0]),
)
def test_rescale_puts_h_on_the_energy_shell(
    xp: Any, delta_e: float, frac: float, eta: float, s: float
) -> None:
    """Zero gradient: the step is rescale + drift + jitter (norm-preserving): V(s+|p|²) = e^E."""
    hp = dict(lr=0.05, eta=eta, s=s, delta_e=delta_e, nu=0.1, seed=2)
    opt = physopt_ref.ecdsep(**hp)
    params, state = run(opt, xp, X0, 2)[-1]
    exp_e = float(to_numpy(state.exp_energy))
    V = frac * exp_e / (s + 1e-3)  # any V with e^E/V - s > 0
    loss = V ** (1.0 / eta)
    result = kit.check_energy_shell(opt, params, state, loss, kit.ECDSepEnergy(eta=eta, s=s),
                                    rtol=1e-12).raise_if_failed()
    assert int(to_numpy(result.values["state"].event)) == 1


def _lg(x: Any) -> tuple[Any, Any]:
    return 0.5 * NP.sum(x * x), x


def test_one_step_energy_error_scales_as_dt_squared() -> None:
    """|H(q₁, p₁) − E| after one step ∝ Δt^2, H = log V + log(s+|p|²): slope 2 ± 0.3.

    Measured: 2.5e-5, 2.3e-6, 2.6e-7 for Δt = 1e-2, 3e-3, 1e-3; slope 1.98.
    """
    x0 = NP.asarray(np.random.default_rng(0).normal(size=10))
    hp = dict(eta=2.0, nu=1e-3, delta_e=1.0, seed=4)
    kit.check_energy_error_order(
        lambda dt: physopt_ref.ecdsep(lr=dt, **hp), x0, _lg, kit.ECDSepEnergy(eta=2.0),
        dts=(1e-2, 3e-3, 1e-3), order=2.0, tolerance=0.3, warmup_lr=1e-2, warmup=5,
    ).raise_if_failed()


def test_drift_without_rescale_is_bounded_and_shrinks_with_dt() -> None:
    """consEn=False, ν = 0: max |H − E| over 400 steps is small and falls with Δt.

    Measured (η = 2, d = 10, ½|x|²): 5.7e-3 at Δt = 1e-2, 5.7e-4 at Δt = 3e-3.
    """
    x0 = NP.asarray(np.random.default_rng(1).normal(size=10))
    kit.check_energy_drift_bounded(
        lambda dt: physopt_ref.ecdsep(lr=dt, eta=2.0, nu=0.0, delta_e=1.0, rescale=False),
        x0, _lg, kit.ECDSepEnergy(eta=2.0), dts=(1e-2, 3e-3), steps=400, bound=0.1, shrink=4.0,
    ).raise_if_failed()


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32), nu=st.floats(1e-6, 2.0), eta=st.floats(1.0, 3.0))
def test_jitter_preserves_norm_and_leaves_the_parameters(
    xp: Any, seed: int, nu: float, eta: float
) -> None:
    """Same state, ν > 0 vs ν = 0: identical parameters, |p| equal, direction changed."""
    params, state = run(physopt_ref.ecdsep(lr=0.05, eta=eta, delta_e=1.0, seed=seed), xp, X0, 2)[-1]
    loss, grads = loss_grad_xp(xp, params)
    q_nu, s_nu = physopt_ref.ecdsep(lr=0.05, eta=eta, nu=nu, delta_e=1.0, seed=seed).step(
        params, grads, state, loss=loss)
    q_0, s_0 = physopt_ref.ecdsep(lr=0.05, eta=eta, nu=0.0, delta_e=1.0, seed=seed).step(
        params, grads, state, loss=loss)
    for a, b in zip(q_nu, q_0, strict=True):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    n_nu = sum(float(np.sum(to_numpy(p) ** 2)) for p in s_nu.momentum)
    n_0 = sum(float(np.sum(to_numpy(p) ** 2)) for p in s_0.momentum)
    assert n_nu == pytest.approx(n_0, rel=1e-13)
    assert float(to_numpy(s_nu.p2)) == pytest.approx(n_0, rel=1e-13)
    assert any(
        not np.array_equal(to_numpy(a), to_numpy(b))
        for a, b in zip(s_nu.momentum, s_0.momentum, strict=True)
    )


@settings(max_examples=25)
@given(
    s=st.floats(0.05, 4.0),
    dt=st.floats(1e-3, 0.5),
    eta=st.floats(1.0, 4.0),
    delta_e=st.floats(0.0, 10.0),
    scale=st.floats(0.1, 3.0),
)
def test_each_step_moves_at_most_dt_over_sqrt_s(
    xp: Any, s: float, dt: float, eta: float, delta_e: float, scale: float
) -> None:
    opt = physopt_ref.ecdsep(lr=dt, eta=eta, s=s, delta_e=delta_e, nu=0.3, seed=1)
    params = [xp.asarray(scale * x) for x in X0]
    sizes = kit.step_sizes(opt, params, lambda p: loss_grad_xp(xp, p), steps=6, norm="l2")
    kit.check_step_bound(sizes, kit.ecdsep_step_bound(dt, s), rtol=1e-12).raise_if_failed()


def test_stopped_runs_are_untouched_in_an_ensemble(xp: Any) -> None:
    opt = physopt_ref.ecdsep(lr=0.05, eta=2.0, f0=0.5, delta_e=1.0, nu=0.1, eps2=1e-12)
    base = np.array([[1.0, -0.5, 0.25]])
    x = xp.asarray(np.concatenate([base, base, base]))
    state = opt.init(x, batch_ndim=1)
    for _ in range(2):
        x, state = opt.step(x, x, state, loss=0.5 * xp.sum(x * x, axis=1) + 0.5)
    f = 0.5 * xp.sum(x * x, axis=1) + 0.5
    # member 1: V = (1e-7)^2 <= ε; member 2: F < F0 (V would be NaN for non-integer η)
    f = xp.stack([f[0], xp.asarray(0.5 + 1e-7, dtype=f.dtype), xp.asarray(0.3, dtype=f.dtype)])
    new_x, new = opt.step(x, x, state, loss=f)
    assert to_numpy(new.event).tolist() == [1, 0, 0]
    np.testing.assert_array_equal(to_numpy(new_x)[1:], to_numpy(x)[1:])
    np.testing.assert_array_equal(to_numpy(new.momentum[0])[1:], to_numpy(state.momentum[0])[1:])
    np.testing.assert_array_equal(to_numpy(new.iteration)[1:], to_numpy(state.iteration)[1:])
    assert not np.array_equal(to_numpy(new_x)[0], to_numpy(x)[0])
    assert np.all(np.isfinite(to_numpy(new.potential)))


@settings(max_examples=20)
@given(loss=st.floats(0.01, 10.0), over=st.floats(0.0, 5.0), wd=st.sampled_from([0.0, 0.1]))
def test_f0_tuning_puts_the_floor_below_the_loss(
    xp: Any, loss: float, over: float, wd: float
) -> None:
    x = xp.asarray(np.array([0.5, -1.0]))
    f_tilde = loss + 0.5 * wd * 1.25
    opt = physopt_ref.ecdsep(lr=0.1, eta=1.5, f0=f_tilde + over, weight_decay=wd, f0_tuning=True)
    state = opt.init(x)
    new_x, new = opt.step(x, x, state, loss=loss)
    floor = float(to_numpy(new.floor))
    assert floor <= f_tilde * (1 + 1e-15)
    assert int(to_numpy(new.event)) == 3
    np.testing.assert_array_equal(to_numpy(new_x), to_numpy(x))


def test_f0_tuning_force_uses_the_shifted_floor() -> None:
    """After a floor move the kick is -Δt η ∇F/(F - F0_new) (the code keeps the old F0)."""
    dt, eta = 0.01, 1.0
    opt = physopt_ref.ecdsep(lr=dt, eta=eta, f0=2.0, nu=0.0, rescale=False, f0_tuning=True,
                             delta_e=0.0)
    x = NP.asarray(np.array([0.5, -1.0]))
    state = opt.init(x)
    _, state = opt.step(x, x, state, loss=1.0)  # 1.0 <= 2.0: floor -> 1 - 4 = -3
    assert float(state.floor) == -3.0
    _, state = opt.step(x, x, state, loss=1.0)  # first update: p0 = 0, so p1 = kick
    np.testing.assert_allclose(state.momentum[0], -dt * eta / (1.0 - (-3.0)) * x, rtol=1e-14)


def test_delta_e_default_follows_the_code_and_an_explicit_value_is_kept() -> None:
    assert physopt_ref.ecdsep(lr=0.1, eta=1.0).hyperparameters["delta_e"] == 0.0
    assert physopt_ref.ecdsep(lr=0.1, eta=1.0, s=0.5).hyperparameters["delta_e"] == 1.0
    assert physopt_ref.ecdsep(lr=0.1, eta=1.0, s=0.5, delta_e=0.2).hyperparameters["delta_e"] == 0.2


def test_initial_momentum_has_norm_squared_delta_e(xp: Any) -> None:
    opt = physopt_ref.ecdsep(lr=1e-3, eta=1.0, delta_e=2.0, nu=0.0, rescale=False)
    params = [xp.asarray(x) for x in X0]
    loss, grads = loss_grad_xp(xp, params)
    _, state = opt.step(params, grads, opt.init(params), loss=loss)
    F = float(to_numpy(loss))
    p0 = [to_numpy(p) + 1e-3 / F * to_numpy(g) for p, g in zip(state.momentum, grads, strict=True)]
    assert sum(float(np.sum(p**2)) for p in p0) == pytest.approx(2.0, rel=1e-12)
    assert float(to_numpy(state.exp_energy)) == pytest.approx(F * 3.0, rel=1e-14)


def test_zero_gradient_and_zero_momentum_give_no_nan(xp: Any) -> None:
    opt = physopt_ref.ecdsep(lr=0.1, eta=2.0, s=0.0, delta_e=0.0, nu=0.5)
    x = xp.asarray(np.ones(3))
    state = opt.init(x)
    for _ in range(3):
        x, state = opt.step(x, xp.zeros_like(x), state, loss=2.0)
    assert np.all(np.isfinite(to_numpy(x))) and float(to_numpy(state.p2)) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.1, "eta": 0.0}, "eta"),
        ({"lr": -0.1, "eta": 1.0}, "lr"),
        ({"lr": 0.1, "eta": 1.0, "nu": -1.0}, "nu"),
        ({"lr": 0.1, "eta": 1.0, "s": -1.0}, "s"),
        ({"lr": 0.1, "eta": 1.0, "weight_decay": -1.0}, "weight_decay"),
        ({"lr": 0.1, "eta": 1.0, "delta_e": -1.0}, "delta_e"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        physopt_ref.ecdsep(**kwargs)
