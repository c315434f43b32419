"""Hypothesis strategies for optimizer inputs: parameter trees, gradients, losses, workloads,
ensembles, backends and valid hyperparameters of every registered optimizer.

Needs `hypothesis <https://hypothesis.readthedocs.io>`_ (the ``testing`` extra:
``pip install "physopt_ref[testing]"``). Every strategy draws NumPy data; the checks move it to
the backend under test. Sizes stay small (leaves of at most 3 x 3 elements, ensembles of at most
3 x 2 members), so shrinking ends at a readable counterexample.

>>> from hypothesis import given
>>> from physopt_ref.testing import check_purity, strategies as pst
>>> @given(pst.workloads(), pst.ensemble_shapes())
... def test_purity(workload, batch_shape):
...     check_purity(my_optimizer, workload=workload, batch_shape=batch_shape).raise_if_failed()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "physopt_ref.testing.strategies needs hypothesis: pip install 'physopt_ref[testing]'"
    ) from exc

from physopt_ref.backends import available_backends
from physopt_ref.core.tree import tree_flatten, tree_unflatten
from physopt_ref.testing.hyperparameters import (
    Choice,
    Integer,
    Maybe,
    Range,
    Real,
    hyperparameter_space,
)
from physopt_ref.testing.workloads import QuadraticWorkload

__all__ = [
    "backends",
    "constant_gradients",
    "dtypes",
    "ensemble_shapes",
    "gradient_sequences",
    "gradients_like",
    "hyperparameters",
    "losses",
    "magnitudes",
    "shapes",
    "signed_magnitudes",
    "tree_structures",
    "workloads",
]


def backends(names: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """A backend name among ``names`` (default: every installed one)."""
    return st.sampled_from(list(names) if names is not None else available_backends())


def dtypes(names: Sequence[str] = ("float64", "float32")) -> st.SearchStrategy[str]:
    """A floating dtype name."""
    return st.sampled_from(list(names))


def shapes(max_dims: int = 2, max_side: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    """An event shape: ``()`` up to ``max_dims`` axes of 1 to ``max_side`` elements."""
    return st.lists(st.integers(1, max_side), max_size=max_dims).map(tuple)


def ensemble_shapes(max_dims: int = 2, max_side: int = 3,
                    min_dims: int = 0) -> st.SearchStrategy[tuple[int, ...]]:
    """A batch shape for an ensemble: ``min_dims`` to ``max_dims`` axes of 1 to ``max_side``
    members (``()`` is a single run)."""
    return st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


@st.composite
def tree_structures(draw: Any, max_leaves: int = 3,
                    kinds: Sequence[str] = ("array", "list", "tuple", "dict")) -> Any:
    """A tree of event shapes: one shape, or a list / tuple / dict of 1 to ``max_leaves``,
    of the ``kinds`` given (what the optimizer accepts).

    The leaves are tuples of ints: :func:`workloads` fills them with arrays.
    """
    if not kinds:
        raise ValueError("tree_structures needs at least one kind")
    kind = draw(st.sampled_from(list(kinds)))
    if kind == "array":
        return draw(shapes())
    leaves = draw(st.lists(shapes(), min_size=1, max_size=max_leaves))
    if kind == "dict":
        keys = draw(st.lists(st.sampled_from("abcdwxyz"), min_size=len(leaves),
                             max_size=len(leaves), unique=True))
        return dict(zip(keys, leaves, strict=True))
    return list(leaves) if kind == "list" else tuple(leaves)


def _map_shapes(structure: Any, fn: Any) -> Any:
    if isinstance(structure, dict):
        return {k: _map_shapes(v, fn) for k, v in structure.items()}
    if isinstance(structure, list):
        return [_map_shapes(v, fn) for v in structure]
    if isinstance(structure, tuple) and not all(isinstance(v, int) for v in structure):
        return tuple(_map_shapes(v, fn) for v in structure)
    return fn(tuple(structure))


def _arrays(draw: Any, shape: tuple[int, ...], elements: st.SearchStrategy[float]) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    values = draw(st.lists(elements, min_size=n, max_size=n))
    return np.asarray(values, dtype=np.float64).reshape(shape)


@st.composite
def workloads(
    draw: Any,
    structures: st.SearchStrategy[Any] | None = None,
    curvature: tuple[float, float] = (0.1, 2.0),
    start: tuple[float, float] = (-2.0, 2.0),
    offset: float = 0.5,
    kinds: Sequence[str] | None = None,
) -> QuadraticWorkload:
    """A :class:`~physopt_ref.testing.QuadraticWorkload` on a drawn tree (of ``kinds`` when
    given): curvatures in ``curvature``, starts in ``start``, loss offset ``offset`` (positive
    losses)."""
    if structures is None:
        structures = tree_structures() if kinds is None else tree_structures(kinds=kinds)
    structure = draw(structures)
    c_el = st.floats(*curvature, allow_nan=False)
    x_el = st.floats(*start, allow_nan=False)
    c = _map_shapes(structure, lambda s: _arrays(draw, s, c_el))
    x = _map_shapes(structure, lambda s: _arrays(draw, s, x_el))
    return QuadraticWorkload(c, x, offset=offset)


@st.composite
def gradients_like(
    draw: Any, tree: Any, elements: st.SearchStrategy[float] | None = None
) -> Any:
    """A NumPy tree of ``tree``'s structure and shapes (a gradient for those parameters)."""
    elements = st.floats(-10.0, 10.0, allow_nan=False) if elements is None else elements
    leaves, treedef = tree_flatten(tree)
    return tree_unflatten(treedef, [_arrays(draw, np.shape(v), elements) for v in leaves])


@st.composite
def losses(draw: Any, batch_shape: tuple[int, ...] = (), low: float = 1e-3,
           high: float = 1e3) -> np.ndarray:
    """A positive loss per run (an array of the batch shape; 0-d for a single run)."""
    return _arrays(draw, batch_shape, st.floats(low, high, allow_nan=False))


def magnitudes(low_exp: float = -8.0, high_exp: float = 8.0) -> st.SearchStrategy[float]:
    """0 or ``10**e`` for ``e`` in ``[low_exp, high_exp]``: magnitudes over many decades."""
    return st.one_of(st.just(0.0), st.floats(low_exp, high_exp).map(lambda e: 10.0**e))


def signed_magnitudes(low_exp: float = -8.0, high_exp: float = 8.0) -> st.SearchStrategy[float]:
    """:func:`magnitudes` with a random sign."""
    return st.tuples(magnitudes(low_exp, high_exp), st.sampled_from([-1.0, 1.0])).map(
        lambda p: p[0] * p[1])


def constant_gradients(max_size: int = 5) -> st.SearchStrategy[np.ndarray]:
    """A gradient vector for bias-correction checks: zeros and magnitudes from 1e-100 to 1e3.

    (|g| >= 1e-100 keeps g² out of the subnormal range, where relative precision is lost.)
    """
    return st.lists(
        st.one_of(st.just(0.0), st.floats(1e-100, 1e3), st.floats(-1e3, -1e-100)),
        min_size=1, max_size=max_size,
    ).map(np.asarray)


def gradient_sequences(dim: int = 3, max_steps: int = 40,
                       elements: st.SearchStrategy[float] | None = None
                       ) -> st.SearchStrategy[np.ndarray]:
    """A sequence of gradients, shape ``(T, dim)`` with ``1 <= T <= max_steps`` (default
    elements: :func:`signed_magnitudes`), for bounded-step checks."""
    elements = signed_magnitudes() if elements is None else elements
    return st.lists(st.lists(elements, min_size=dim, max_size=dim), min_size=1,
                    max_size=max_steps).map(np.asarray)


def _value(spec: Range) -> st.SearchStrategy[Any]:
    if isinstance(spec, Real):
        if spec.log:
            lo, hi = np.log(spec.low), np.log(spec.high)
            return st.floats(lo, hi).map(lambda e: float(min(max(np.exp(e), spec.low),
                                                             spec.high)))
        return st.floats(spec.low, spec.high, allow_nan=False)
    if isinstance(spec, Integer):
        return st.integers(spec.low, spec.high)
    if isinstance(spec, Choice):
        return st.sampled_from(list(spec.values))
    if isinstance(spec, Maybe):
        return st.one_of(st.none(), _value(spec.inner))
    raise TypeError(f"unknown range {spec!r}")


@st.composite
def hyperparameters(draw: Any, name: str,
                    per_run_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Valid hyperparameters of the registered optimizer ``name``.

    What :data:`~physopt_ref.testing.hyperparameters.RANGES` lists is drawn, the rest keeps the
    registry's ``test_hyperparameters``. With ``per_run_shape``, each hyperparameter that
    accepts per-run arrays is drawn either as one value or as a NumPy array of that shape (one
    value per ensemble member).
    """
    fixed, ranges, per_run = hyperparameter_space(name)
    out = dict(fixed)
    for key, spec in ranges.items():
        if per_run_shape and key in per_run and isinstance(spec, Real | Choice) and draw(
                st.booleans()):
            n = int(np.prod(per_run_shape, dtype=np.int64))
            values = draw(st.lists(_value(spec), min_size=n, max_size=n))
            out[key] = np.asarray(values, dtype=np.float64).reshape(per_run_shape)
        else:
            out[key] = draw(_value(spec))
    return out
