"""``physopt_ref.optax`` follows optax's conventions (issue 21), for all 11 optimizers.

Written from optax's documented behaviour: ``optax.inject_hyperparams`` builds the
transformation again inside ``update`` with its hyperparameters as (traced) arrays, integer
and boolean ones passed through ``static_args``; ``optax.tree.map_params`` calls ``init`` on a
placeholder and maps over the state's parameter-shaped trees; ``optax.masked`` hands
``MaskedNode`` subtrees to ``init``; a jitted ``update`` compiles once.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import physopt_ref as po  # noqa: E402
import physopt_ref.optax as pox  # noqa: E402
from physopt_ref import REGISTRY  # noqa: E402
from physopt_ref.adapters.optax import STATIC_ARGS  # noqa: E402

NAMES = po.registered_names()


def _params() -> dict[str, Any]:
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.asarray([0.5, -0.25])}


def _grads(params: dict[str, Any]) -> dict[str, Any]:
    return {k: 2.0 * v + 0.1 for k, v in params.items()}


def _loss(params: dict[str, Any]) -> Any:
    return sum(jnp.sum(v * v) for v in params.values()) + 1.0


def _static(name: str, hp: dict[str, Any]) -> tuple[str, ...]:
    return STATIC_ARGS[name] + tuple(k for k, v in hp.items() if callable(v))


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_under_jit_equals_the_plain_transformation(name: str) -> None:
    hp = dict(REGISTRY[name].test_hyperparameters)
    injected = optax.inject_hyperparams(getattr(pox, name), static_args=_static(name, hp))(**hp)
    plain = getattr(pox, name)(**hp)
    params = _params()
    state, ref_state = jax.jit(injected.init)(params), plain.init(params)
    ref = params
    update = jax.jit(lambda g, s, p, v: injected.update(g, s, p, value=v))
    for _ in range(3):
        updates, state = update(_grads(params), state, params, _loss(params))
        params = optax.apply_updates(params, updates)
        ref_updates, ref_state = plain.update(_grads(ref), ref_state, ref, value=_loss(ref))
        ref = optax.apply_updates(ref, ref_updates)
    for k in params:
        np.testing.assert_allclose(np.asarray(params[k]), np.asarray(ref[k]), rtol=2e-5,
                                   atol=1e-6, err_msg=name)
    assert update._cache_size() == 1, name  # one compilation for three calls
    # A hyperparameter changed in the state (what a schedule does) is read, not compiled in.
    key = "lr" if "lr" in state.hyperparams else sorted(state.hyperparams)[0]
    state.hyperparams[key] = jnp.asarray(state.hyperparams[key] * 0.5)
    update(_grads(params), state, params, _loss(params))
    assert update._cache_size() == 1, name


@pytest.mark.parametrize("name", NAMES)
def test_a_jitted_update_compiles_once(name: str) -> None:
    tx = getattr(pox, name)(**REGISTRY[name].test_hyperparameters)
    params = _params()
    state = tx.init(params)
    update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
    for _ in range(3):
        updates, state = update(_grads(params), state, params, _loss(params))
        params = optax.apply_updates(params, updates)
    assert update._cache_size() == 1, name


@pytest.mark.parametrize("name", NAMES)
def test_map_params_and_masked_placeholders(name: str) -> None:
    tx = getattr(pox, name)(**REGISTRY[name].test_hyperparameters)
    params = _params()
    state = tx.init(params)
    zeroed = optax.tree.map_params(tx, lambda x: jnp.zeros_like(x) + 7.0, state)
    per_param = [f for f, v in zip(state._fields, state, strict=True) if isinstance(v, dict)]
    for field in per_param:
        for leaf in jax.tree_util.tree_leaves(getattr(zeroed, field)):
            assert np.all(np.asarray(leaf) == 7.0), (name, field)
    for field in set(state._fields) - set(per_param):  # per-run fields left as they were
        np.testing.assert_array_equal(np.asarray(getattr(zeroed, field)),
                                      np.asarray(getattr(state, field)))
    masked = optax.masked(tx, {"w": True, "b": False})
    m_state = masked.init(params)
    updates, _ = masked.update(_grads(params), m_state, params, value=_loss(params))
    assert np.all(np.asarray(updates["b"]) == np.asarray(_grads(params)["b"]))


@pytest.mark.parametrize("name", ["adam", "bbi", "gravity"])
def test_update_refuses_another_tree(name: str) -> None:
    tx = getattr(pox, name)(**REGISTRY[name].test_hyperparameters)
    params = _params()
    state = tx.init(params)
    other = {"w": params["w"], "c": params["b"]}  # same shapes, another key
    with pytest.raises(ValueError, match=r"tree"):
        tx.update(_grads(other), state, other, value=_loss(other))
    with pytest.raises(ValueError, match=r"updates \(gradients\) have the tree"):
        tx.update(_grads(other), state, params, value=_loss(params))


@pytest.mark.parametrize("name", NAMES)
def test_one_bare_array_is_a_tree_of_one_parameter(name: str) -> None:
    """``tx.init(jnp.zeros(3))``, as with optax's own transformations: the per-parameter state
    fields are bare arrays and the steps equal those of the one-element list (before: every
    optimizer but SGD failed in update, taking a momentum array for a per-run field)."""
    hp = dict(REGISTRY[name].test_hyperparameters)
    tx = getattr(pox, name)(**hp)
    p = jnp.asarray([1.0, -2.0, 0.5])
    state, listed = tx.init(p), tx.init([p])
    update = jax.jit(lambda g, s, q, f: tx.update(g, s, q, value=f))
    for _ in range(4):
        f = jnp.sum(p * p) + 1.0
        u, state = update(2.0 * p, state, p, f)
        v, listed = update([2.0 * p], listed, [p], f)
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v[0]))
        p = optax.apply_updates(p, u)


def test_factories_are_annotated_with_what_they_return() -> None:
    for name in NAMES:
        fn = getattr(pox, name)
        sig = inspect.signature(fn)
        assert sig.return_annotation is optax.GradientTransformationExtraArgs, name
        assert list(sig.parameters) == list(inspect.signature(REGISTRY[name].factory).parameters)


def test_concrete_values_are_still_checked() -> None:
    with pytest.raises(ValueError, match=r"lr \(η\)"):
        pox.sgd(lr=jnp.asarray(-1.0))
    with pytest.raises(TypeError, match=r"\(T_0\) must be an integer|ε₁\) must be a real"):
        # integers and eps1 must be static (documented): their arrays are refused by name
        optax.inject_hyperparams(pox.bbi)(lr=0.1, eps1=1e-10).init(_params())
    with pytest.raises(ValueError, match="batch_ndim"):
        pox.as_optax(po.sgd(), batch_ndim=-1)
