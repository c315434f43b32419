"""Adversarial inputs for every registered optimizer on every backend (issue 12).

Each input ends in one of two outcomes, never a third:

* a clear exception of the right type (``TypeError`` for a wrong type, ``ValueError`` for a
  wrong value, ``FloatingPointError`` for NaN / inf values under the debug checks) whose
  message names the culprit; or
* a finite result that keeps every leaf's dtype and shape (the documented behaviour).

Inputs: NaN, inf, huge and tiny gradients and losses; empty and 0-d arrays; mixed dtypes in a
tree; arrays from another namespace; wrong types for every hyperparameter, flags included;
schedules that return bad values; and the same finite extremes through ``jax.jit``. Hypothesis
runs derandomised (the ``deterministic`` profile of ``conftest.py``) with a few examples per
test, so the file takes seconds.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from physopt_ref.backends import get_namespace, to_numpy

import physopt_ref as po
from physopt_ref import REGISTRY

from .conftest import SELECTED_BACKENDS

NAMES = sorted(REGISTRY)
#: Values a gradient or loss component may take: finite extremes and non-finite ones.
SPECIALS = {
    "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "huge": 1e30, "-huge": -1e30,
    "max": None, "tiny": 1e-30, "subnormal": None, "zero": 0.0,
}
SHAPES = [(), (0,), (3,), (2, 0), (2, 3)]


def _special(name: str, dtype: Any) -> float:
    info = np.finfo(dtype)
    if name == "max":
        return float(info.max) / 4  # sums of a few such terms stay finite
    if name == "subnormal":
        return float(info.smallest_subnormal)
    return SPECIALS[name]


#: The energy-conserving steps, whose squares and powers may overflow (documented).
ECD_FAMILY = ("bbi", "ecdsep")


def _build(name: str, **overrides: Any) -> Any:
    return po.get_optimizer(name, **{**REGISTRY[name].test_hyperparameters, **overrides})


def _leaves(tree: Any) -> list[Any]:
    return list(tree.values()) if isinstance(tree, dict) else [tree]


def _assert_finite_like(new: Any, old: Any) -> None:
    for a, b in zip(_leaves(new), _leaves(old), strict=True):
        assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)
        assert np.all(np.isfinite(to_numpy(a))), to_numpy(a)


@settings(max_examples=60)
@given(
    name=st.sampled_from(NAMES),
    backend=st.sampled_from(SELECTED_BACKENDS),
    dtype=st.sampled_from(["float64", "float32"]),
    shape=st.sampled_from(SHAPES),
    grad_value=st.sampled_from(sorted(SPECIALS)),
    loss_value=st.sampled_from(["zero", "tiny", "huge", "nan", "inf", "-inf", "one"]),
)
def test_values(name: str, backend: str, dtype: str, shape: tuple[int, ...], grad_value: str,
                loss_value: str) -> None:
    """Extreme and non-finite gradients and losses, on empty, 0-d and ordinary leaves."""
    xp = get_namespace(backend)
    dt = getattr(xp, dtype)
    np_dt = np.dtype(dtype)
    opt = _build(name)
    params = {"p": xp.ones(shape, dtype=dt), "q": xp.full((2,), 0.5, dtype=dt)}
    g_val = _special(grad_value, np_dt)
    grads = {"p": xp.full(shape, g_val, dtype=dt), "q": xp.full((2,), 0.25, dtype=dt)}
    loss = 1.0 if loss_value == "one" else _special(loss_value, np_dt)
    state = opt.init(params)
    bad_grad = not math.isfinite(g_val) and math.prod(shape) > 0
    # BBI and ECDSep form |g|² unscaled: the debug checks refuse a gradient whose squared norm
    # overflows the dtype (docs/reliability.md; clipping in front: test_reliability).
    square_overflow = (name in ECD_FAMILY and not bad_grad and g_val != 0.0
                       and math.prod(shape) > 0 and 2.0 * math.log(abs(g_val))
                       + math.log(math.prod(shape)) > math.log(float(np.finfo(np_dt).max)))
    with warnings.catch_warnings(), po.debug_checks(True):
        # NumPy reports an intermediate that overflows (Gravity's (g max|G|)² for g near the
        # dtype's maximum, ECDSep's (F - F0)^η for a huge loss) with a RuntimeWarning; what is
        # asserted is the outcome: a clear exception, or finite values of the dtype.
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        if bad_grad:
            with pytest.raises(FloatingPointError, match=f"{name}: gradient leaf 0"):
                opt.step(params, grads, state, loss=loss)
            return
        if square_overflow:
            # With a non-finite loss too, either refusal may come first.
            culprit = "the squared norm" if math.isfinite(loss) else "(the squared norm|the loss)"
            with pytest.raises(FloatingPointError, match=f"{name}: {culprit}"):
                opt.step(params, grads, state, loss=loss)
            return
        if not math.isfinite(loss):
            with pytest.raises(FloatingPointError, match=f"{name}: the loss"):
                opt.step(params, grads, state, loss=loss)
            return
        new, state = opt.step(params, grads, state, loss=loss)
        new, state = opt.step(new, grads, state, loss=loss)
    _assert_finite_like(new, params)


@pytest.mark.parametrize("name", ["bbi", "ecdsep"])
@given(loss_value=st.sampled_from(["nan", "inf", "-inf"]))
def test_non_finite_losses_without_checks_are_no_ops(name: str, loss_value: str) -> None:
    """The documented behaviour of the energy-conserving steps without the debug checks."""
    opt = _build(name)
    x = np.ones(3)
    with po.debug_checks(False):
        new, state = opt.step(x, x, opt.init(x), loss=float(loss_value))
    np.testing.assert_array_equal(new, x)
    assert int(state.event) == 0


@settings(max_examples=40)
@given(name=st.sampled_from(NAMES), backend=st.sampled_from(SELECTED_BACKENDS))
def test_mixed_dtype_trees(name: str, backend: str) -> None:
    """Each leaf keeps its dtype, or the energy-conserving steps refuse the tree at init."""
    xp = get_namespace(backend)
    tree = {"a": xp.ones(3, dtype=xp.float32), "b": xp.full((2,), 0.5, dtype=xp.float64)}
    opt = _build(name)
    if name in ("bbi", "ecdsep"):
        with pytest.raises(TypeError, match="one floating dtype"):
            opt.init(tree)
        return
    state = opt.init(tree)
    new = tree
    for _ in range(3):
        new, state = opt.step(new, tree, state, loss=1.0)
    _assert_finite_like(new, tree)


OTHER = [b for b in ("numpy", "torch", "jax", "array_api_strict") if b in SELECTED_BACKENDS]


@pytest.mark.skipif(len(OTHER) < 2, reason="needs two backends")
@settings(max_examples=30)
@given(name=st.sampled_from(NAMES), pair=st.permutations(OTHER).map(lambda p: p[:2]),
       where=st.sampled_from(["grad", "loss", "leaf"]))
def test_arrays_from_another_namespace(name: str, pair: list[str], where: str) -> None:
    xp, other = get_namespace(pair[0]), get_namespace(pair[1])
    opt = _build(name)
    x = xp.ones(3, dtype=xp.float64)
    alien = other.ones(3, dtype=other.float64)
    loss: Any = 1.0
    grads: Any = x
    params: Any = x
    if where == "grad":
        grads = alien
    elif where == "loss":
        loss = other.asarray(1.0, dtype=other.float64)
    else:
        params = grads = {"a": x, "b": alien}
    with po.debug_checks(True), pytest.raises(TypeError) as info:
        state = opt.init(params)
        opt.step(params, grads, state, loss=loss)
    if where == "loss" and opt.needs_loss:
        assert "loss" in str(info.value)
    else:
        assert "namespace" in str(info.value).lower() or "multiple" in str(info.value).lower()


def _hyperparameter_names(name: str) -> list[str]:
    return [p for p in inspect.signature(REGISTRY[name].factory).parameters]


BAD_VALUES = ["0.1", [0.1], True, 1 + 1j, object(), math.nan, math.inf, -1e300]
CASES = [(n, hp) for n in NAMES for hp in _hyperparameter_names(n)]


@settings(max_examples=80)
@given(case=st.sampled_from(CASES), value=st.sampled_from(range(len(BAD_VALUES))))
def test_wrong_hyperparameters(case: tuple[str, str], value: int) -> None:
    """A wrong type or value for any hyperparameter (flags included) names that parameter."""
    name, hp = case
    bad = BAD_VALUES[value]
    default = inspect.signature(REGISTRY[name].factory).parameters[hp].default
    try:
        _build(name, **{hp: bad})
    except (TypeError, ValueError) as exc:
        assert hp in str(exc), f"{name}({hp}={bad!r}): {exc}"
        return
    # Accepted: only a legitimate value of that hyperparameter may pass (True for a flag).
    if isinstance(default, bool):
        assert bad is True, (name, hp, bad)
        return
    assert isinstance(bad, float) and math.isfinite(bad), (name, hp, bad)
    assert isinstance(default, float | int) or default is None, (name, hp, bad)


def _bad_schedules() -> list[tuple[str, Any, type]]:
    return [
        ("nan", lambda t: t * math.nan, ValueError),
        ("negative", lambda t: -1.0 - t, ValueError),
        ("string", lambda t: "fast", TypeError),
        ("none", lambda t: None, TypeError),
    ]


@pytest.mark.parametrize("name", [n for n in NAMES if "lr" in _hyperparameter_names(n)])
@pytest.mark.parametrize(("kind", "schedule", "error"), _bad_schedules())
def test_schedules_returning_bad_values(xp: Any, name: str, kind: str, schedule: Any,
                                        error: type) -> None:
    try:
        opt = _build(name, lr=schedule)
    except TypeError as exc:  # an optimizer whose lr takes no schedule says so
        assert "lr" in str(exc) and "real number" in str(exc)
        return
    x = xp.ones(3, dtype=xp.float64)
    with po.debug_checks(True), pytest.raises(error, match="lr"):
        opt.step(x, x, opt.init(x), loss=1.0)


@pytest.mark.skipif("jax" not in SELECTED_BACKENDS, reason="jax not selected")
@settings(max_examples=25)
@given(name=st.sampled_from(NAMES), grad_value=st.sampled_from(["huge", "-huge", "tiny",
                                                                 "subnormal", "zero", "max"]),
       dtype=st.sampled_from(["float32", "float64"]))
def test_compiled_steps_with_finite_extremes(name: str, grad_value: str, dtype: str) -> None:
    """The same finite extremes through ``jax.jit``: finite, dtypes kept (no checks traced)."""
    import jax

    xp = get_namespace("jax")
    dt = getattr(xp, dtype)
    opt = _build(name)
    params = {"p": xp.ones((2, 3), dtype=dt)}
    grads = {"p": xp.full((2, 3), _special(grad_value, np.dtype(dtype)), dtype=dt)}
    state = opt.init(params, batch_ndim=1)
    loss = xp.ones((2,), dtype=dt)
    step = jax.jit(opt.step)
    new, state = step(params, grads, state, loss=loss)
    new, state = step(new, grads, state, loss=loss)
    _assert_finite_like(new, params)
