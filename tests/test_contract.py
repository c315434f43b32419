"""Generic tests every registered optimizer must pass (the optimizer contract of DESIGN.md).

They iterate :data:`physopt_ref.REGISTRY`, so a new optimizer is covered by registering it.
The workload is a small quadratic on a two-leaf tree, ``{"w": (3,), "b": (2, 2)}``, with
``loss = ½ Σ c x² + ½`` per run (positive, as the energy-conserving family needs) and
``grads = c x``; each optimizer runs with its registry ``test_hyperparameters``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from array_api_compat import device
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref
from physopt_ref import REGISTRY, registered_names, tree_leaves

from .helpers import assert_close

NAMES = registered_names()
NP = get_namespace("numpy")

C = {"w": np.array([0.5, 1.0, 2.0]), "b": np.array([[1.5, 0.7], [1.2, 0.9]])}
X0 = {"w": np.array([1.0, -2.0, 0.5]), "b": np.array([[0.3, -0.4], [1.1, -0.8]])}


def start(batch_shape: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """X0, with ensemble member k shifted by 0.25·k so that members differ."""
    n = math.prod(batch_shape)
    shift = 0.25 * np.arange(n, dtype=np.float64).reshape(batch_shape)
    out = {}
    for key, x in X0.items():
        s = shift.reshape(batch_shape + (1,) * x.ndim)
        out[key] = np.broadcast_to(x, batch_shape + x.shape) + s
    return out


def loss_and_grads(xp: Any, params: dict[str, Any], batch_ndim: int) -> tuple[Any, dict[str, Any]]:
    grads, loss = {}, None
    for key, x in params.items():
        c = xp.asarray(C[key], dtype=x.dtype, device=device(x))
        grads[key] = c * x
        axes = tuple(range(batch_ndim, x.ndim))
        term = 0.5 * xp.sum(c * x * x, axis=axes)
        loss = term if loss is None else loss + term
    return loss + 0.5, grads


def build(name: str, **overrides: Any) -> physopt_ref.Optimizer:
    hp = {**REGISTRY[name].test_hyperparameters, **overrides}
    return REGISTRY[name].factory(**hp)


def trajectory(
    opt: physopt_ref.Optimizer,
    xp: Any,
    x0: dict[str, np.ndarray],
    steps: int,
    *,
    batch_ndim: int = 0,
    dtype: Any = None,
) -> list[dict[str, np.ndarray]]:
    """Run ``steps`` steps; return the parameters after each step, as NumPy."""
    dtype = xp.float64 if dtype is None else dtype
    params = {k: xp.asarray(v, dtype=dtype) for k, v in x0.items()}
    state = opt.init(params, batch_ndim=batch_ndim)
    out = []
    for _ in range(steps):
        loss, grads = loss_and_grads(xp, params, batch_ndim)
        params, state = opt.step(params, grads, state, loss=loss)
        out.append({k: to_numpy(v) for k, v in params.items()})
    return out


def _readonly(tree: Any) -> Any:
    if isinstance(tree, np.ndarray):
        tree = tree.copy()
        tree.flags.writeable = False
        return tree
    if isinstance(tree, dict):
        return {k: _readonly(v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_readonly(v) for v in tree))
    if isinstance(tree, list | tuple):
        return type(tree)(_readonly(v) for v in tree)
    return tree


def _snapshot(tree: Any) -> list[Any]:
    if isinstance(tree, np.ndarray):
        return [tree.copy()]
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in _snapshot(v)]
    if isinstance(tree, list | tuple):
        return [s for v in tree for s in _snapshot(v)]
    return [tree]


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x, y, equal_nan=True) if isinstance(x, np.ndarray) else x == y
        for x, y in zip(a, b, strict=True)
    )


def test_registry_is_populated() -> None:
    assert {"sgd", "heavy_ball", "nesterov", "adam"} <= set(NAMES)
    for name in NAMES:
        entry = REGISTRY[name]
        assert entry.name == name
        assert isinstance(entry.factory(**entry.test_hyperparameters), physopt_ref.Optimizer)
        assert getattr(physopt_ref, name) is entry.factory, "registry name == public factory name"


@pytest.mark.parametrize("name", NAMES)
def test_purity_with_readonly_inputs(name: str) -> None:
    """A step never writes to params, grads or state (read-only NumPy arrays would raise)."""
    opt = build(name)
    params = _readonly(start())
    state = _readonly(opt.init(params))
    for _ in range(6):
        loss, grads = loss_and_grads(NP, params, 0)
        grads = _readonly(grads)
        loss = _readonly(np.asarray(loss))
        before = _snapshot((params, grads, loss, state))
        new_params, new_state = opt.step(params, grads, state, loss=loss)
        assert _same(before, _snapshot((params, grads, loss, state))), "an input was modified"
        params, state = _readonly(new_params), _readonly(new_state)


@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32(name: str, xp: Any) -> None:
    opt = build(name)
    params = {k: xp.asarray(v, dtype=xp.float32) for k, v in start().items()}
    state = opt.init(params)
    for _ in range(4):
        loss, grads = loss_and_grads(xp, params, 0)
        params, state = opt.step(params, grads, state, loss=loss)
    for leaf in tree_leaves(params):
        assert leaf.dtype == xp.float32
        assert np.all(np.isfinite(to_numpy(leaf)))
    for field, value in zip(state._fields, state, strict=True):
        arrays = (
            [value]
            if hasattr(value, "dtype")
            else [v for v in (value if isinstance(value, tuple) else ()) if hasattr(v, "dtype")]
        )
        for a in arrays:
            if xp.isdtype(a.dtype, "real floating"):
                assert a.dtype == xp.float32, f"state.{field} became {a.dtype}"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_run(name: str) -> None:
    first = trajectory(build(name), NP, start(), 8)
    again = trajectory(build(name), NP, start(), 8)
    for a, b in zip(first, again, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    if REGISTRY[name].stochastic:
        seed = REGISTRY[name].test_hyperparameters.get("seed", 0)
        other = trajectory(build(name, seed=seed + 101), NP, start(), 8)
        assert any(
            not np.array_equal(a[k], b[k]) for a, b in zip(first, other, strict=True) for k in a
        ), "a different seed should change a stochastic optimizer's run"


@pytest.mark.parametrize("batch_shape", [(3,), (2, 2)])
@pytest.mark.parametrize("name", NAMES)
def test_ensemble_equals_single_runs(name: str, batch_shape: tuple[int, ...]) -> None:
    """K runs stacked on leading axes == K separate runs (member k uses seed + k)."""
    steps = 8
    batch_ndim = len(batch_shape)
    ensemble = trajectory(build(name), NP, start(batch_shape), steps, batch_ndim=batch_ndim)
    seed = REGISTRY[name].test_hyperparameters.get("seed", 0)
    x_all = start(batch_shape)
    for k, index in enumerate(np.ndindex(*batch_shape)):
        overrides = {"seed": seed + k} if REGISTRY[name].stochastic else {}
        single = trajectory(
            build(name, **overrides), NP, {n: v[index] for n, v in x_all.items()}, steps
        )
        for t in range(steps):
            for key in X0:
                np.testing.assert_allclose(
                    ensemble[t][key][index],
                    single[t][key],
                    rtol=1e-11,
                    atol=1e-13,
                    err_msg=f"member {index}, step {t + 1}, leaf {key}",
                )


@pytest.mark.parametrize("name", NAMES)
def test_backend_matches_numpy_float64(name: str, xp: Any) -> None:
    steps = 8 if REGISTRY[name].smooth else 4
    reference = trajectory(build(name), NP, start((2,)), steps, batch_ndim=1)
    params = {k: xp.asarray(v, dtype=xp.float64) for k, v in start((2,)).items()}
    opt = build(name)
    state = opt.init(params, batch_ndim=1)
    for t in range(steps):
        loss, grads = loss_and_grads(xp, params, 1)
        params, state = opt.step(params, grads, state, loss=loss)
        for key in X0:
            assert_close(
                params[key],
                reference[t][key],
                xp=xp,
                rtol=1e-10,
                atol=1e-12,
                err_msg=f"{name} step {t + 1} leaf {key}",
            )


@pytest.mark.parametrize("name", NAMES)
def test_zero_gradient_is_finite(name: str) -> None:
    """All-zero gradients (at a flat point) give finite parameters and no warnings."""
    opt = build(name)
    params = start()
    state = opt.init(params)
    zeros = {k: np.zeros_like(v) for k, v in params.items()}
    for _ in range(3):
        params, state = opt.step(params, zeros, state, loss=np.asarray(1.0))
        assert all(np.all(np.isfinite(v)) for v in params.values())


@pytest.mark.parametrize("name", NAMES)
def test_invalid_hyperparameters_are_refused(name: str) -> None:
    entry = REGISTRY[name]
    checked = 0
    for key, value in entry.test_hyperparameters.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        with pytest.raises((ValueError, TypeError), match=key):
            entry.factory(**{**entry.test_hyperparameters, key: float("nan")})
        checked += 1
    with pytest.raises(TypeError):
        entry.factory(**{**entry.test_hyperparameters, "not_a_hyperparameter": 1.0})
    assert checked > 0 or not entry.test_hyperparameters


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_inputs_are_refused(name: str) -> None:
    opt = build(name)
    params = start()
    state = opt.init(params)
    loss, grads = loss_and_grads(NP, params, 0)
    with pytest.raises(ValueError):
        opt.step(params, {"w": grads["w"]}, state, loss=loss)
    with pytest.raises(ValueError):
        opt.step(params, {"w": grads["w"][:2], "b": grads["b"]}, state, loss=loss)
    with pytest.raises(TypeError):
        opt.init({"w": np.arange(3), "b": np.ones((2, 2))})
    if opt.needs_loss:
        with pytest.raises(ValueError, match="loss"):
            opt.step(params, grads, state)


@pytest.mark.parametrize("name", NAMES)
def test_single_array_and_list_trees(name: str) -> None:
    """A single array and a list of arrays are accepted as parameter trees."""
    x = np.concatenate([X0["w"], X0["b"].ravel()])
    c = np.concatenate([C["w"], C["b"].ravel()])
    trees = {
        "array": (lambda v: v, lambda t: t),
        "list": (lambda v: [v[:3], v[3:]], lambda t: np.concatenate(t)),
    }
    results = {}
    for kind, (split, join) in trees.items():
        opt = build(name)
        params = split(x)
        state = opt.init(params)
        for _ in range(5):
            flat = join(params)
            loss = 0.5 * np.sum(c * flat * flat) + 0.5
            params, state = opt.step(params, split(c * flat), state, loss=np.asarray(loss))
        results[kind] = join(params)
    assert all(np.all(np.isfinite(r)) for r in results.values())
    if REGISTRY[name].family == "classic":
        # Element-wise rules do not see how the parameters are split into leaves. (Per-leaf
        # rules -- Dyna's fan-in, Gravity's max|G| per tensor, per-leaf random streams -- do.)
        np.testing.assert_allclose(results["array"], results["list"], rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_device_is_kept(name: str) -> None:
    """Parameters on array-api-strict's simulated non-default device stay there, with the state.

    array-api-strict refuses arithmetic across devices, so any array a step creates on the
    default device would raise here.
    """
    import array_api_strict as xps

    dev = xps.Device("device1")
    opt = build(name)
    params = {k: xps.asarray(v, dtype=xps.float64, device=dev) for k, v in start((2,)).items()}
    state = opt.init(params, batch_ndim=1)
    for _ in range(4):
        loss, grads = loss_and_grads(xps, params, 1)
        params, state = opt.step(params, grads, state, loss=loss)
    assert all(device(leaf) == dev for leaf in tree_leaves(params))


# ---------------------------------------------------------------------------------------------
# Contract v2: state of arrays, fixed structure, saturating count, per-run hyperparameters,
# picklable optimizers, the debug switch.


def _signature(state: Any) -> list[tuple[str, int, tuple[int, ...], str]]:
    """(field, leaf index, shape, dtype) of every array in a state; raises on a non-array."""
    out = []
    for name, value in zip(state._fields, state, strict=True):
        leaves = value if isinstance(value, tuple) else (value,)
        for i, a in enumerate(leaves):
            assert hasattr(a, "shape") and hasattr(a, "dtype"), f"state.{name} is {type(a)}"
            assert not isinstance(a, bool | int | float), f"state.{name} is a Python number"
            out.append((name, i, tuple(a.shape), str(a.dtype)))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_state_is_arrays_with_a_fixed_structure(name: str, xp: Any) -> None:
    """Only arrays; the count is int32 of the batch shape; nothing changes shape or dtype."""
    opt = build(name)
    params = {k: xp.asarray(v, dtype=xp.float32) for k, v in start((2,)).items()}
    state = opt.init(params, batch_ndim=1)
    assert state._fields[0] == "count" and type(state) is opt.state_type
    assert state.count.dtype == xp.int32 and tuple(state.count.shape) == (2,)
    first = _signature(state)
    for t in range(6):
        loss, grads = loss_and_grads(xp, params, 1)
        params, state = opt.step(params, grads, state, loss=loss)
        assert type(state) is opt.state_type
        assert _signature(state) == first, f"{name}: the state changed at step {t + 1}"
    np.testing.assert_array_equal(to_numpy(state.count), [6, 6])


@pytest.mark.parametrize("name", NAMES)
def test_count_saturates(name: str) -> None:
    opt = build(name)
    params = start()
    state = opt.init(params)
    state = state._replace(count=np.asarray(physopt_ref.COUNT_MAX - 1, dtype=np.int32))
    for _ in range(3):
        loss, grads = loss_and_grads(NP, params, 0)
        params, state = opt.step(params, grads, state, loss=loss)
        assert int(state.count) == physopt_ref.COUNT_MAX
        assert state.count.dtype == np.int32


SWEEPS = [(n, hp) for n in NAMES for hp in REGISTRY[n].sweep]


@pytest.mark.parametrize(("name", "hp"), SWEEPS, ids=[f"{n}-{h}" for n, h in SWEEPS])
def test_per_run_hyperparameter_equals_separate_runs(name: str, hp: str, xp: Any) -> None:
    """K values of a hyperparameter in one ensemble == K separate runs (a sweep in one array)."""
    values = REGISTRY[name].sweep[hp]
    k = len(values)
    steps = 8
    array = xp.asarray(np.asarray(values), dtype=xp.float64)
    opt = build(name, **{hp: array})
    assert array.shape == (k,)
    ensemble = trajectory(opt, xp, start((k,)), steps, batch_ndim=1)
    seed = REGISTRY[name].test_hyperparameters.get("seed", 0)
    x_all = start((k,))
    for m, value in enumerate(values):
        overrides = {hp: value, **({"seed": seed + m} if REGISTRY[name].stochastic else {})}
        x_m = {n: v[m] for n, v in x_all.items()}
        single = trajectory(build(name, **overrides), xp, x_m, steps)
        for t in range(steps):
            for key in X0:
                np.testing.assert_allclose(
                    ensemble[t][key][m], single[t][key], rtol=1e-11, atol=1e-13,
                    err_msg=f"{hp}={value}, step {t + 1}, leaf {key}",
                )


@pytest.mark.parametrize("name", NAMES)
def test_per_run_hyperparameter_arrays_are_checked(name: str) -> None:
    """Values are range-checked at build time; the shape against the ensemble at init."""
    sweep = REGISTRY[name].sweep
    if not sweep:
        pytest.skip("no per-run hyperparameter")
    hp = next(iter(sweep))
    with pytest.raises((ValueError, TypeError), match=hp):
        build(name, **{hp: np.asarray([np.nan, 1.0])})
    opt = build(name, **{hp: np.asarray(sweep[hp][:2])})
    with pytest.raises(ValueError, match="batch shape"):
        opt.init(start((3,)), batch_ndim=1)
    import array_api_strict as xps

    with pytest.raises(TypeError, match="namespace"):
        opt.init({k: xps.asarray(v) for k, v in start((2,)).items()}, batch_ndim=1)


@pytest.mark.parametrize("name", NAMES)
def test_optimizers_pickle(name: str) -> None:
    """An optimizer object pickles (no closures) and the copy takes the same steps."""
    import pickle

    opt = build(name)
    copy = pickle.loads(pickle.dumps(opt))
    assert repr(copy) == repr(opt)
    a = trajectory(opt, NP, start(), 5)
    b = trajectory(copy, NP, start(), 5)
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_full_checks_run_only_with_the_switch() -> None:
    """Structure, shapes and dtypes are always checked; the state only in debug mode."""
    opt = physopt_ref.heavy_ball(lr=0.1)
    params = start((2,))
    state = opt.init(params, batch_ndim=1)
    foreign = opt.init(start((3,)), batch_ndim=1)  # a state for another ensemble
    _loss, grads = loss_and_grads(NP, params, 1)
    with physopt_ref.debug_checks(True):
        with pytest.raises(ValueError, match="ensemble shape"):
            opt.step(params, grads, foreign)
        opt.step(params, grads, state)
    with physopt_ref.debug_checks(False):
        assert not physopt_ref.checks_enabled()
        with pytest.raises(ValueError, match="structure"):
            opt.step(params, {"w": grads["w"]}, state)
        with pytest.raises(ValueError, match="shape"):
            opt.step(params, {**grads, "w": grads["w"][:, :2]}, state)
    assert physopt_ref.checks_enabled()  # the test session's setting is restored


def test_schedules_trace_and_host_schedules_are_explicit() -> None:
    """A plain callable gets the count as an array; a host schedule gets Python ints."""
    seen: list[Any] = []
    opt = physopt_ref.sgd(lr=lambda t: seen.append(t) or 0.1 / (1.0 + t))
    params = start((2,))
    state = opt.init(params, batch_ndim=1)
    _loss, grads = loss_and_grads(NP, params, 1)
    opt.step(params, grads, state)
    assert isinstance(seen[0], np.ndarray) and seen[0].shape == (2,)
    counts: list[Any] = []
    host = physopt_ref.sgd(lr=physopt_ref.host_schedule(lambda c: counts.append(c) or 0.1))
    params, state = host.step(params, grads, host.init(params, batch_ndim=1))
    assert counts == [0] and all(type(c) is int for c in counts)
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    jparams = {k: jnp.asarray(v) for k, v in start().items()}
    _, jgrads = loss_and_grads(jnp, jparams, 0)
    with pytest.raises(TypeError, match="cannot be traced"):
        jax.jit(host.step)(jparams, jgrads, host.init(jparams))
