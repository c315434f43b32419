"""``physopt_ref.optax``: every registered optimizer as an optax transformation.

Inside ``optax.chain`` (behind ``optax.clip_by_global_norm``) under ``jax.jit``, on the contract
quadratic in float64: the parameters follow the functional steps (eager, on the same clipped
gradients) to rounding over 12 steps (the tolerance of ``test_compile``'s jit check; the update
is the difference of the new and old parameters, so ``apply_updates`` rounds once more), and
each call's update and state are the functional step's from the parameters and state it was
given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import physopt_ref as po  # noqa: E402
import physopt_ref.optax as pox  # noqa: E402

from .test_contract import build, loss_and_grads, start  # noqa: E402

NAMES = po.registered_names()
CLIP = 1.0  # the contract quadratic's first gradients have a norm of about 4 (two members)
CLOSE = dict(rtol=1e-9, atol=1e-12)


def test_every_registered_optimizer_has_a_transformation() -> None:
    for name in NAMES:
        fn = getattr(pox, name)
        assert fn.__name__ == name and "optax" in fn.__doc__
        tx = fn(**po.REGISTRY[name].test_hyperparameters)
        assert isinstance(tx, optax.GradientTransformationExtraArgs)
    assert isinstance(pox.transformation("sgd", lr=0.1), optax.GradientTransformationExtraArgs)


def _own(state: Any) -> Any:
    """The optimizer's own state from the adapter's (per-parameter trees as tuples of leaves)."""
    return type(state)(*[tuple(jax.tree_util.tree_leaves(v)) if isinstance(v, dict) else v
                         for v in state])


def _clipped(grads: Any) -> Any:
    clip = optax.clip_by_global_norm(CLIP)
    return clip.update(grads, clip.init(grads))[0]


@pytest.mark.parametrize("name", NAMES)
def test_in_optax_chain_under_jit_equals_the_functional_steps(name: str) -> None:
    tx = optax.chain(optax.clip_by_global_norm(CLIP), pox.as_optax(build(name), batch_ndim=1))
    opt = build(name)
    params = {k: jnp.asarray(v) for k, v in start((2,)).items()}
    ref_params, ref_state = params, opt.init(params, batch_ndim=1)
    state = tx.init(params)
    clipped_once = False

    @jax.jit
    def train_step(params: Any, state: Any) -> tuple[Any, Any, Any]:
        loss, grads = loss_and_grads(jnp, params, 1)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, updates

    for t in range(12):
        # The functional run, on its own trajectory.
        loss, grads = loss_and_grads(jnp, ref_params, 1)
        ref_params, ref_state = opt.step(ref_params, _clipped(grads), ref_state, loss=loss)
        # The optax run, one jitted call; and the functional step from its inputs.
        before, before_state = params, state
        params, state, updates = train_step(params, state)
        loss_b, grads_b = loss_and_grads(jnp, before, 1)
        clipped_once |= bool(sum(jnp.sum(g * g) for g in grads_b.values()) > CLIP**2)
        want, want_state = opt.step(before, _clipped(grads_b), _own(before_state[1]),
                                    loss=loss_b)
        for key in params:
            msg = f"{name} step {t + 1} leaf {key}"
            np.testing.assert_allclose(np.asarray(params[key]), np.asarray(ref_params[key]),
                                       **CLOSE, err_msg=msg)
            np.testing.assert_allclose(np.asarray(updates[key]),
                                       np.asarray(want[key] - before[key]), **CLOSE, err_msg=msg)
        for field, a, b in zip(want_state._fields, _own(state[1]), want_state, strict=True):
            for u, v in zip(*((w if isinstance(w, tuple) else (w,)) for w in (a, b)),
                            strict=True):
                assert u.dtype == v.dtype, field
                np.testing.assert_allclose(np.asarray(u), np.asarray(v), **CLOSE, err_msg=field)
    assert clipped_once
    np.testing.assert_array_equal(np.asarray(state[1].count), [12, 12])


def test_a_chain_of_the_library_inside_optax() -> None:
    """The library's own transforms (here the guard and coupled L2) compose with optax's."""
    inner = po.chain(po.non_finite_guard(), po.coupled_weight_decay(0.1), po.bbi(lr=0.1))
    tx = optax.chain(optax.clip_by_global_norm(CLIP), pox.as_optax(inner))
    params = {k: jnp.asarray(v) for k, v in start().items()}
    state = tx.init(params)
    loss, grads = loss_and_grads(jnp, params, 0)
    bad = {**grads, "w": grads["w"].at[0].set(jnp.nan)}
    updates, state = jax.jit(tx.update)(bad, state, params, value=loss)
    assert int(state[1].skipped) == 1 and int(state[1].count) == 0
    assert all(not np.any(np.asarray(u)) for u in updates.values())


def test_errors() -> None:
    tx = pox.bbi(lr=0.1)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"needs the loss.*value="):
        tx.update({"w": jnp.ones(3)}, state, params)
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(3)}, state, value=1.0)
    with pytest.raises(TypeError, match="Optimizer"):
        pox.as_optax("bbi")
