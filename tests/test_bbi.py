"""BBI: golden values against the scalar reference, energy properties, bounces, stops, ΔV tuning.

Numbers quoted from the spec (``shared/specs/ecd.md`` §1.5): right after the rescale
H = E to 3-4e-16; one-step error 7.3e-5, 6.6e-6, 7.3e-7 for Δt = 1e-2, 3e-3, 1e-3 on
0.5|x|² + 1 in d = 10. The energy checks are the kit's (:mod:`physopt_ref.testing.energy`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref
from physopt_ref import testing as kit
from physopt_ref.testing.compile import TORCH_COMPILE_WARNINGS

from .helpers import assert_close
from .reference.ecd_ref import bbi_reference

NP = get_namespace("numpy")

SHAPES = [(3,), (2, 2)]
C = [np.array([0.5, 1.0, 2.0]), np.array([[1.5, 0.7], [1.2, 0.9]])]
X0 = [np.array([1.0, -2.0, 0.5]), np.array([[0.3, -0.4], [1.1, -0.8]])]


def loss_grad_xp(xp: Any, leaves: list[Any], bn: int = 0) -> tuple[Any, list[Any]]:
    """F = Σ ½ c x² + ¼ x⁴ + ½ per run (a non-quadratic, positive loss) and its gradient."""
    loss, grads = None, []
    for x, c in zip(leaves, C, strict=True):
        cc = xp.asarray(c, dtype=x.dtype)
        grads.append(cc * x + x * x * x)
        term = xp.sum(0.5 * cc * x * x + 0.25 * x**4, axis=tuple(range(bn, x.ndim)))
        loss = term if loss is None else loss + term
    return loss + 0.5, grads


def loss_grad_ref(leaves: list[list[float]]) -> tuple[float, list[list[float]]]:
    total, grads = 0.5, []
    for x, c in zip(leaves, C, strict=True):
        cf = c.ravel().tolist()
        grads.append([ci * xi + xi**3 for ci, xi in zip(cf, x, strict=True)])
        total += sum(0.5 * ci * xi * xi + 0.25 * xi**4 for ci, xi in zip(cf, x, strict=True))
    return total, grads


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
    "bounces_cube": dict(lr=0.05, v0=0.1, delta_e=1.0, t0=3, n_fixed_bounces=2, t1=2, seed=11),
    "isotropic_de0": dict(
        lr=0.05, v0=0.3, t0=4, n_fixed_bounces=3, t1=3, seed=4, bounce_direction="isotropic"
    ),
    "no_rescale": dict(lr=0.03, delta_e=0.5, rescale=False, t0=5, t1=None, seed=2),
    "tuning": dict(lr=0.2, v0=3.5, delta_e=0.5, t0=3, t1=1, n_fixed_bounces=2, v0_tuning=True),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_against_scalar_reference(case: str, xp: Any) -> None:
    hp = GOLDEN[case]
    steps = 14
    ref = bbi_reference(SHAPES, [x.ravel().tolist() for x in X0], loss_grad_ref, steps, **hp)
    got = run(physopt_ref.bbi(**hp), xp, X0, steps)
    events = set()
    for t, ((params, state), r) in enumerate(zip(got, ref, strict=True)):
        msg = f"{case} call {t}"
        for leaf, shape, want, want_pi, pi in zip(
            params, SHAPES, r["theta"], r["pi"], state.momentum, strict=True
        ):
            assert_close(leaf, np.reshape(want, shape), xp=xp, rtol=1e-10, atol=1e-13, err_msg=msg)
            assert_close(pi, np.reshape(want_pi, shape), xp=xp, rtol=1e-10, atol=1e-13, err_msg=msg)
        assert_close(state.energy, r["energy"], xp=xp, rtol=1e-12, err_msg=msg)
        assert_close(state.potential, r["potential"], xp=xp, rtol=1e-10, atol=1e-14, err_msg=msg)
        assert_close(state.floor, r["floor"], xp=xp, rtol=1e-10, atol=1e-14, err_msg=msg)
        assert int(to_numpy(state.event)) == r["event"], msg
        events.add(r["event"])
    assert 2 in events, "the golden case should bounce"
    if hp.get("v0_tuning"):
        assert 3 in events, "the tuning case should move the floor"


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_golden_ensemble_members_use_member_k(backend: str) -> None:
    """A (2, 2) ensemble: member k equals the scalar reference run with the same seed and
    member index k (draws keyed by (seed, member))."""
    xp = get_namespace(backend)  # backend parity is the contract test's job
    hp = GOLDEN["tuning"] | {"seed": 3}
    shift = 0.3 * np.arange(4.0).reshape(2, 2)
    x0 = [x + shift.reshape((2, 2) + (1,) * x.ndim) for x in X0]
    got = run(physopt_ref.bbi(**hp), xp, x0, 10, bn=2)
    for k, idx in enumerate(np.ndindex(2, 2)):
        ref = bbi_reference(
            SHAPES, [x[idx].ravel().tolist() for x in x0], loss_grad_ref, 10,
            **(hp | {"seed": 3, "member": k}),
        )
        for (params, state), r in zip(got, ref, strict=True):
            for leaf, shape, want in zip(params, SHAPES, r["theta"], strict=True):
                np.testing.assert_allclose(
                    to_numpy(leaf)[idx], np.reshape(want, shape), rtol=1e-10, atol=1e-13
                )
            assert int(to_numpy(state.event)[idx]) == r["event"]


def test_eager_bounce_draws_only_for_the_bouncing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """On host arrays a bounce draws directions for the runs that bounce only; the result is
    bit for bit the whole-ensemble draw and select (the graph path, forced here)."""
    from physopt_ref.optimizers import ecd_common

    hp = dict(lr=0.05, v0=0.1, delta_e=1.0, t0=3, n_fixed_bounces=3, t1=2, seed=11)
    shift = 0.4 * np.arange(5.0)
    x0 = [x[None] + shift.reshape((5,) + (1,) * x.ndim) for x in X0]  # 5 runs, out of step
    drawn: list[int] = []
    draw = ecd_common.random_directions

    def counting(xp: Any, leaves: list[Any], **kw: Any) -> list[Any]:
        drawn.append(int(leaves[0].shape[0]))
        return draw(xp, leaves, **kw)

    monkeypatch.setattr(ecd_common, "random_directions", counting)
    eager = run(physopt_ref.bbi(**hp), NP, x0, 12, bn=1)
    assert drawn and min(drawn) < 5, drawn  # some steps bounced a strict subset
    monkeypatch.setattr(ecd_common, "host_resident", lambda xp, pred: False)
    drawn.clear()
    whole = run(physopt_ref.bbi(**hp), NP, x0, 12, bn=1)
    assert set(drawn) == {5}
    for (p1, s1), (p2, s2) in zip(eager, whole, strict=True):
        for a, b in zip([*p1, *s1.momentum], [*p2, *s2.momentum], strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(s1.event, s2.event)


@pytest.mark.parametrize("law", ["cube", "isotropic"])
def test_jitted_bounce_draw_is_a_branch_output(law: str) -> None:
    """Under ``jax.jit`` the bounce's whole-ensemble draw comes out of a ``lax.cond`` on the
    bouncing runs: XLA then computes the Philox rounds once and the norm's column reductions
    read the draw from memory (without the branch, XLA's CPU fusion recomputed the draw in
    each kernel that reads it; ``docs/speed.md``). The draw is the one of every other backend,
    bit for bit; with no run bouncing the branch gives zeros, which the select never takes."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    from physopt_ref.optimizers.ecd_common import _whole_draw, random_directions

    with jax.enable_x64(True):
        shapes = [(6, 2), (6, 3)]
        momentum = [jnp.zeros(s) for s in shapes]
        count = jnp.arange(3, 9, dtype=jnp.int32)

        def draw(redraw: Any, count: Any, momentum: list[Any]) -> list[Any]:
            return _whole_draw(jnp, momentum, redraw, count, seed=3, member=2, law=law,
                               batch_ndim=1)

        redraw = jnp.asarray([False, True, False, False, True, False])
        jaxpr = jax.make_jaxpr(draw)(redraw, count, momentum).jaxpr
        assert [e.primitive.name for e in jaxpr.eqns][-1] == "cond"
        assert list(jaxpr.outvars) == list(jaxpr.eqns[-1].outvars)
        want = random_directions(np, [np.zeros(s) for s in shapes], seed=3, member=2,
                                 counter=np.arange(3, 9, dtype=np.int32), batch_ndim=1, law=law)
        for got, w in zip(jax.jit(draw)(redraw, count, momentum), want, strict=True):
            np.testing.assert_array_equal(np.asarray(got), w)
        for got in jax.jit(draw)(jnp.zeros(6, dtype=bool), count, momentum):
            np.testing.assert_array_equal(np.asarray(got), 0.0)
        # Events of 5 elements keep their reductions over the axis: a plain draw, no branch.
        wide = [jnp.zeros((6, 5))]
        assert "cond" not in str(jax.make_jaxpr(draw)(redraw, count, wide))
        # Eager (NumPy here): the plain draw.
        for got, w in zip(_whole_draw(np, [np.zeros(s) for s in shapes], np.zeros(6, bool),
                                      np.arange(3, 9, dtype=np.int32), seed=3, member=2,
                                      law=law, batch_ndim=1), want, strict=True):
            np.testing.assert_array_equal(got, w)


def _on_shell_state(xp: Any, delta_e: float, x0: list[np.ndarray], v0: float = 0.0):
    """Take two steps on the test loss so that π is generic; return (opt factory args, state)."""
    hp = dict(lr=0.05, v0=v0, delta_e=delta_e, t0=None, t1=None)
    (params, state) = run(physopt_ref.bbi(**hp), xp, x0, 2)[-1]
    return hp, params, state


@settings(max_examples=15)
@given(
    delta_e=st.floats(0.05, 5.0),
    frac=st.floats(0.02, 1.0),
    scale=st.floats(0.3, 2.0),
)
def test_rescale_puts_h_on_the_energy_shell(xp: Any, delta_e: float, frac: float, scale: float):
    """With a zero gradient the step is rescale + drift, so sqrt(V² + V|π'|²) = E exactly.

    V is chosen anywhere in (0, E] through the loss passed in.
    """
    x0 = [scale * x for x in X0]
    hp, params, state = _on_shell_state(xp, delta_e, x0)
    V = frac * float(to_numpy(state.energy))
    result = kit.check_energy_shell(physopt_ref.bbi(**hp), params, state, V, kit.BornInfeld(),
                                    rtol=1e-12).raise_if_failed()
    assert int(to_numpy(result.values["state"].event)) == 1


def _lg(offset: float) -> Any:
    def lg(x: Any) -> tuple[Any, Any]:
        return 0.5 * NP.sum(x * x) + offset, x

    return lg


def test_one_step_energy_error_scales_as_dt_squared() -> None:
    """|H(θ₁, π₁) − E|/E after one step ∝ Δt^2: fitted slope 2 ± 0.3.

    Measured: 5.9e-5, 5.3e-6, 5.9e-7 for Δt = 1e-2, 3e-3, 1e-3; slope 2.000.
    """
    x0 = NP.asarray(np.random.default_rng(0).normal(size=10))
    hp = dict(v0=0.0, delta_e=1.0, t0=None, t1=None)
    # from a generic on-shell state (5 steps at Δt = 1e-2), one step of each Δt
    kit.check_energy_error_order(
        lambda dt: physopt_ref.bbi(lr=dt, **hp), x0, _lg(1.0), kit.BornInfeld(),
        dts=(1e-2, 3e-3, 1e-3), order=2.0, tolerance=0.3, warmup_lr=1e-2, warmup=5,
    ).raise_if_failed()


def test_drift_without_rescale_is_bounded_and_shrinks_with_dt() -> None:
    """consEn=False: max |H − E|/E over a fixed number of steps is small and falls with Δt.

    Measured over 400 steps on ½|x|² + 1 (d = 10): 5.4e-3 at Δt = 1e-2, 6.6e-4 at 3e-3.
    """
    x0 = NP.asarray(np.random.default_rng(1).normal(size=10))
    # 0 < drift(1e-2) < 0.1 and drift(3e-3) < drift(1e-2) / 4
    kit.check_energy_drift_bounded(
        lambda dt: physopt_ref.bbi(lr=dt, delta_e=1.0, rescale=False, t0=None, t1=None),
        x0, _lg(1.0), kit.BornInfeld(), dts=(1e-2, 3e-3), steps=400, bound=0.1, shrink=4.0,
    ).raise_if_failed()


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32), iso=st.booleans(), delta_e=st.floats(0.1, 4.0))
def test_bounce_preserves_norm_and_parameters(xp: Any, seed: int, iso: bool, delta_e: float):
    hp = dict(lr=0.05, delta_e=delta_e, t0=1, n_fixed_bounces=1, t1=None, seed=seed,
              bounce_direction="isotropic" if iso else "cube")
    opt = physopt_ref.bbi(**hp)
    params = [xp.asarray(x) for x in X0]
    state = opt.init(params)
    loss, grads = loss_grad_xp(xp, params)
    params, state = opt.step(params, grads, state, loss=loss)  # call 0: an update
    loss, grads = loss_grad_xp(xp, params)
    new_params, new = opt.step(params, grads, state, loss=loss)  # call 1: the fixed bounce
    assert int(to_numpy(new.event)) == 2
    for a, b in zip(params, new_params, strict=True):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    before = sum(float(np.sum(to_numpy(p) ** 2)) for p in state.momentum)
    after = sum(float(np.sum(to_numpy(p) ** 2)) for p in new.momentum)
    assert after == pytest.approx(before, rel=1e-13)
    moved = any(
        not np.allclose(to_numpy(a), to_numpy(b))
        for a, b in zip(state.momentum, new.momentum, strict=True)
    )
    assert moved, "a bounce must change the direction"


def test_fixed_bounce_schedule_and_counts() -> None:
    """Fixed bounces on 0-based calls T0, 2T0+1, ... N_b of them (spec §1.4); N_b = 0: none."""
    for nb, expected in ((3, [3, 7, 11]), (1, [3]), (0, [])):
        opt = physopt_ref.bbi(lr=0.01, delta_e=1.0, t0=3, n_fixed_bounces=nb, t1=None)
        x = NP.asarray(np.ones(4))
        state = opt.init(x)
        calls = []
        for t in range(20):
            x, state = opt.step(x, x, state, loss=0.5 * NP.sum(x * x) + 1.0)
            if int(state.event) == 2:
                calls.append(t)
        assert calls == expected, (nb, calls)
        assert int(state.fixed_bounces) == len(expected)


def test_progress_bounce_after_t1_steps_without_a_new_minimum() -> None:
    """Losses fed in: new minima on calls 0-2, then rising; T1 = 3 -> bounces on calls 6, 11."""
    opt = physopt_ref.bbi(lr=1e-3, delta_e=1.0, t0=None, t1=3)
    x = NP.asarray(np.ones(3))
    state = opt.init(x)
    losses = [3.0, 2.0, 1.0, 1.5, 1.6, 1.7, 1.8, 0.5, 1.9, 2.0, 2.1, 2.2]
    events = []
    for f in losses:
        x, state = opt.step(x, x, state, loss=f)
        events.append(int(state.event))
    # calls 3, 4, 5 are update steps without a new minimum -> counter 3 at call 6: bounce;
    # call 7 sets a new minimum; calls 8, 9, 10 none -> bounce at call 11.
    assert events == [1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 2], events


def test_stopped_runs_are_untouched_in_an_ensemble(xp: Any) -> None:
    """Once V <= ε the step is a no-op (params, π, counters); the other members move on."""
    opt = physopt_ref.bbi(lr=0.05, v0=0.5, delta_e=1.0, t0=2, t1=None, eps2=1e-6)
    base = np.array([[1.0, -0.5, 0.25]])
    x = xp.asarray(np.concatenate([base, base, base]))
    state = opt.init(x, batch_ndim=1)
    for _ in range(3):
        f = 0.5 * xp.sum(x * x, axis=1) + 0.5
        x, state = opt.step(x, x, state, loss=f)
    # member 1 now reports V = 1e-7 <= ε, member 2 V = 0 exactly, member 0 a normal loss
    f = 0.5 * xp.sum(x * x, axis=1) + 0.5
    f = xp.stack([f[0], xp.asarray(0.5 + 1e-7, dtype=f.dtype), xp.asarray(0.5, dtype=f.dtype)])
    new_x, new = opt.step(x, x, state, loss=f)
    assert to_numpy(new.event).tolist() == [1, 0, 0]
    for field in ("energy", "fixed_counter", "progress_counter", "iteration", "best_potential"):
        np.testing.assert_array_equal(
            to_numpy(getattr(new, field))[1:], to_numpy(getattr(state, field))[1:], err_msg=field
        )
    np.testing.assert_array_equal(to_numpy(new_x)[1:], to_numpy(x)[1:])
    np.testing.assert_array_equal(to_numpy(new.momentum[0])[1:], to_numpy(state.momentum[0])[1:])
    # and it stays a no-op
    again_x, again = opt.step(new_x, new_x, new, loss=f)
    np.testing.assert_array_equal(to_numpy(again_x)[1:], to_numpy(x)[1:])
    assert to_numpy(again.event).tolist()[1:] == [0, 0]


@settings(max_examples=20)
@given(loss=st.floats(0.01, 10.0), over=st.floats(0.0, 5.0))
def test_v0_tuning_puts_the_floor_below_the_loss(xp: Any, loss: float, over: float) -> None:
    opt = physopt_ref.bbi(lr=0.1, v0=loss + over, delta_e=1.0, v0_tuning=True)
    x = xp.asarray(np.array([0.5, -1.0]))
    state = opt.init(x)
    new_x, new = opt.step(x, x, state, loss=loss)
    floor = float(to_numpy(new.floor))
    over = (loss + over) - loss  # the overshoot as the floats see it
    assert floor <= loss
    assert floor == pytest.approx(loss - 4.0 * over, rel=1e-12, abs=1e-12)
    if over > 0:
        assert floor < loss
    assert int(to_numpy(new.event)) == 3
    np.testing.assert_array_equal(to_numpy(new_x), to_numpy(x))
    assert not bool(to_numpy(new.started))
    # the next call (loss above the floor) is the run's first update, E = V0 + δE
    if over > 0:
        _, after = opt.step(x, x, new, loss=loss)
        assert int(to_numpy(after.event)) == 1
        assert float(to_numpy(after.energy)) == pytest.approx(4.0 * over + 1.0, rel=1e-10)


def test_initial_momentum_is_normalised_over_the_whole_tree(xp: Any) -> None:
    """|π0|² = E²/V0 − V0 over the tree (the code gives each of the k leaves that norm)."""
    dt, v0, de = 1e-3, 0.2, 1.5
    opt = physopt_ref.bbi(lr=dt, v0=v0, delta_e=de, rescale=False, t0=None, t1=None)
    params = [xp.asarray(x) for x in X0]
    state = opt.init(params)
    loss, grads = loss_grad_xp(xp, params)
    _, new = opt.step(params, grads, state, loss=loss)
    V0 = float(to_numpy(loss)) - v0
    E = V0 + de
    kick = 0.5 * dt * (V0 / E + E / V0)
    pi0 = [to_numpy(p) + kick * to_numpy(g) for p, g in zip(new.momentum, grads, strict=True)]
    assert sum(float(np.sum(p**2)) for p in pi0) == pytest.approx(E * E / V0 - V0, rel=1e-12)
    g_flat = np.concatenate([to_numpy(g).ravel() for g in grads])
    p_flat = np.concatenate([p.ravel() for p in pi0])
    np.testing.assert_allclose(p_flat / np.linalg.norm(p_flat), -g_flat / np.linalg.norm(g_flat),
                               rtol=1e-12)


def test_delta_e_zero_gives_no_nan(xp: Any) -> None:
    """δE = 0 with v0 != 0 (the code can take sqrt of a tiny negative) and a zero gradient."""
    for v0 in (0.1, 1e-3, -0.7):
        opt = physopt_ref.bbi(lr=0.01, v0=v0, delta_e=0.0, t0=2, t1=None)
        params = [xp.asarray(x) for x in X0]
        state = opt.init(params)
        loss, grads = loss_grad_xp(xp, params)
        params, state = opt.step(params, grads, state, loss=loss)
        assert float(to_numpy(state.energy)) == pytest.approx(float(to_numpy(loss)) - v0)
        for _ in range(4):
            loss, grads = loss_grad_xp(xp, params)
            params, state = opt.step(params, grads, state, loss=loss)
        assert all(np.all(np.isfinite(to_numpy(p))) for p in params)
        assert np.isfinite(float(to_numpy(state.p2)))
    # zero gradient on the first call: π0 = 0, not NaN
    opt = physopt_ref.bbi(lr=0.01, delta_e=1.0)
    x = xp.asarray(np.ones(3))
    _, state = opt.step(x, xp.zeros_like(x), opt.init(x), loss=2.0)
    assert float(to_numpy(state.p2)) == 0.0


def test_float32_run_stays_finite() -> None:
    xp = NP
    opt = physopt_ref.bbi(lr=0.05, delta_e=0.5, t0=3, t1=2, seed=1)
    params = [xp.asarray(x, dtype=xp.float32) for x in X0]
    state = opt.init(params)
    for _ in range(20):
        loss, grads = loss_grad_xp(xp, params)
        params, state = opt.step(params, grads, state, loss=loss)
    assert all(p.dtype == xp.float32 and np.all(np.isfinite(p)) for p in params)
    assert state.energy.dtype == xp.float32 and state.fixed_counter.dtype == xp.int32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -0.1}, "lr"),  # lr = 0 is a legal no-op (issue 21)
        ({"lr": 0.1, "delta_e": -1.0}, "delta_e"),
        ({"lr": 0.1, "t0": 0}, "t0"),
        ({"lr": 0.1, "t1": 1.5}, "t1"),
        ({"lr": 0.1, "n_fixed_bounces": -1}, "n_fixed_bounces"),
        ({"lr": 0.1, "bounce_direction": "sphere"}, "bounce_direction"),
        ({"lr": 0.1, "seed": -3}, "seed"),
        ({"lr": 0.1, "eps2": -1.0}, "eps2"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        physopt_ref.bbi(**kwargs)


def test_schedule_for_lr_and_needs_loss() -> None:
    opt = physopt_ref.bbi(lr=lambda t: 0.01 / (1 + t), delta_e=1.0)
    assert opt.needs_loss
    x = NP.asarray(np.ones(3))
    state = opt.init(x)
    x1, state = opt.step(x, x, state, loss=2.5)
    with pytest.raises(ValueError, match="loss"):
        opt.step(x1, x1, state)


def test_torch_compiled_bounce_draw_sits_in_a_graph_branch() -> None:
    """Under torch.compile the bounce draw is a ``torch.cond`` branch, not computed every call.

    Before, ``if_any`` ran the draw unconditionally in a graph (73% of the compiled step at
    N = 1e7); the captured graph now holds one ``cond`` whose true branch holds the draw.
    """
    torch = pytest.importorskip("torch")
    graphs: list[Any] = []

    def record(gm: Any, example_inputs: Any) -> Any:
        graphs.append(gm)
        return gm.forward

    opt = physopt_ref.bbi(lr=0.05, t0=2, t1=None, seed=3)
    x = torch.linspace(-1.0, 1.0, 8, dtype=torch.float64)
    state = opt.init(x)
    step = torch.compile(opt.step, backend=record, fullgraph=True, dynamic=False)
    eager_x, eager_state = x, state
    with warnings.catch_warnings():
        for message in TORCH_COMPILE_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        for _ in range(6):  # a fixed bounce on call 2
            x, state = step(x, x, state, loss=torch.sum(x * x) + 1.0)
            eager_x, eager_state = opt.step(eager_x, eager_x, eager_state,
                                            loss=torch.sum(eager_x * eager_x) + 1.0)
    assert len(graphs) == 1
    conds = [n for n in graphs[0].graph.nodes if n.target is torch.ops.higher_order.cond]
    assert len(conds) == 1
    assert int(state.fixed_bounces) == 1
    assert torch.equal(x, eager_x)
