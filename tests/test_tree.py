"""Trees keep their types: NamedTuple, OrderedDict (with its key order), dict, None subtrees.

The conventions are those of ``jax.tree_util`` and optax (``physopt_ref.core.tree``'s
docstring): a NamedTuple or an OrderedDict comes back as itself, a dict comes back with its keys
sorted (JAX's leaf order), ``None`` is an empty subtree passed through untouched. Every
registered optimizer is stepped on such trees, alone and as an ensemble, and must return the
very structure it was given with the values of the same step on the bare leaves.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any, NamedTuple

import numpy as np
import pytest

import physopt_ref as po
from physopt_ref import REGISTRY, registered_names
from physopt_ref.core.tree import TreeDef, tree_flatten, tree_map, tree_unflatten
from physopt_ref.testing.workloads import leaf_paths


class Affine(NamedTuple):
    w: Any
    b: Any


def _leaf(rng: np.random.Generator, batch: tuple[int, ...], *shape: int) -> np.ndarray:
    return rng.uniform(0.5, 1.5, size=(*batch, *shape))


def _trees(batch: tuple[int, ...] = ()) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    leaf = lambda *shape: _leaf(rng, batch, *shape)  # noqa: E731
    return {
        "namedtuple": Affine(leaf(3, 2), leaf(2)),
        "ordereddict": OrderedDict([("z", leaf(3)), ("a", leaf(2, 2)), ("m", leaf(1))]),
        "nested": {"enc": [leaf(2), (leaf(3), {"y": leaf(1), "x": leaf(2)})], "dec": (leaf(4),)},
        "none": {"w": leaf(3), "frozen": None, "layers": [None, Affine(leaf(2), None)]},
    }


def _same_structure(got: Any, want: Any) -> None:
    """The same containers (types, key order, None slots) at every level."""
    assert type(got) is type(want), (type(got), type(want))
    if want is None:
        assert got is None
    elif isinstance(want, dict):  # dicts come back sorted (jax.tree_util), OrderedDicts not
        assert list(got) == (list(want) if isinstance(want, OrderedDict) else sorted(want))
        for k in want:
            _same_structure(got[k], want[k])
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _same_structure(g, w)
    else:
        assert got.shape == want.shape and got.dtype == want.dtype


def _optimizer(name: str) -> po.Optimizer:
    entry = REGISTRY[name]
    return entry.factory(**entry.test_hyperparameters)


def _step(opt: po.Optimizer, params: Any, batch_ndim: int) -> tuple[Any, Any]:
    """Two steps from ``init`` (the second sees a non-initial state), grads = params."""
    state = opt.init(params, batch_ndim=batch_ndim)
    loss = None
    if opt.needs_loss:
        batch = tree_flatten(params)[0][0].shape[:batch_ndim]
        loss = np.full(batch, 2.0)
    for _ in range(2):
        params, state = opt.step(params, params, state, loss=loss)
    return params, state


@pytest.mark.parametrize("batch_ndim", [0, 1])
@pytest.mark.parametrize("kind", list(_trees()))
@pytest.mark.parametrize("name", registered_names())
def test_step_keeps_the_tree(name: str, kind: str, batch_ndim: int) -> None:
    """A step returns the structure it was given (types, key order, None slots), with the
    values of the same steps on the bare leaves in :func:`tree_flatten` order."""
    params = _trees((3,) if batch_ndim else ())[kind]
    got, _ = _step(_optimizer(name), params, batch_ndim)
    _same_structure(got, params)
    want, _ = _step(_optimizer(name), tree_flatten(params)[0], batch_ndim)
    for g, w in zip(tree_flatten(got)[0], want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_flatten_orders_like_jax() -> None:
    """Leaves: dicts by sorted key, an OrderedDict by its own order, sequences by position;
    None contributes no leaf."""
    a, b, c = np.zeros(1), np.ones(1), np.full(1, 2.0)
    assert tree_flatten({"b": a, "a": b})[0] == [b, a]
    assert tree_flatten(OrderedDict([("b", a), ("a", b)]))[0] == [a, b]
    assert tree_flatten(Affine(w=c, b=a))[0] == [c, a]
    assert tree_flatten([a, None, (b, None), {"k": None}, c])[0] == [a, b, c]


def test_unflatten_rebuilds_each_container_type() -> None:
    a = np.zeros(1)
    dd = defaultdict(list, {"y": a, "x": a})
    tree = [Affine(a, None), OrderedDict([("q", a), ("p", (a,))]), {"b": a, "a": None}, dd]
    leaves, treedef = tree_flatten(tree)
    back = tree_unflatten(treedef, leaves)
    _same_structure(back, [tree[0], tree[1], {"a": None, "b": a}, dd])
    assert back[3].default_factory is list
    assert list(back[2]) == ["a", "b"], "dicts come back with sorted keys, as in jax.tree_util"


def test_treedef_equality() -> None:
    """Dicts compare by their key set; OrderedDicts and NamedTuples by order and type."""
    a = np.zeros(1)
    same = tree_flatten({"a": a, "b": a})[1]
    assert tree_flatten({"b": a, "a": a})[1] == same
    assert hash(tree_flatten({"b": a, "a": a})[1]) == hash(same)
    assert tree_flatten(OrderedDict([("a", a), ("b", a)]))[1] != same
    assert (tree_flatten(OrderedDict([("a", a), ("b", a)]))[1]
            != tree_flatten(OrderedDict([("b", a), ("a", a)]))[1])
    assert tree_flatten(Affine(a, a))[1] != tree_flatten((a, a))[1]
    assert tree_flatten([a, None])[1] != tree_flatten([a, a])[1]
    assert isinstance(same, TreeDef) and same.num_leaves == 2
    shown = repr(tree_flatten([Affine(a, None), {"k": a}])[1])
    assert shown == "TreeDef([Affine(*, None), {'k': *}])"


def test_grads_must_match_none_slots() -> None:
    """A gradient where the parameters have None (or the reverse) is a structure mismatch."""
    a = np.ones(2)
    opt = po.sgd(lr=0.1)
    params = {"w": a, "frozen": None}
    state = opt.init(params)
    with pytest.raises(ValueError, match="structure of params"):
        opt.step(params, {"w": a, "frozen": a}, state)
    new, _ = opt.step(params, {"w": a, "frozen": None}, state)
    assert new["frozen"] is None


def test_refusals() -> None:
    with pytest.raises(ValueError, match="no arrays"):
        tree_flatten({"a": None, "b": [None]})
    with pytest.raises(TypeError, match="must be an array, got str"):
        tree_flatten({"a": "text"})
    leaves, treedef = tree_flatten({"a": np.zeros(1), "b": np.zeros(1)})
    with pytest.raises(ValueError, match="expected 2 leaves, got 1"):
        tree_unflatten(treedef, leaves[:1])


def test_tree_map_and_leaf_paths_keep_none() -> None:
    a = np.ones(2)
    tree = OrderedDict([("w", Affine(a, None)), ("bias", None), ("v", [a])])
    doubled = tree_map(lambda x, y: x + y, tree, tree)
    _same_structure(doubled, tree)
    np.testing.assert_array_equal(doubled["w"].w, 2 * a)
    assert leaf_paths(tree) == ["['w'][0]", "['v'][0]"]


@pytest.mark.parametrize("name", registered_names())
def test_jitted_step_keeps_the_tree(name: str) -> None:
    """Under ``jax.jit`` (which flattens with jax.tree_util) a NamedTuple / OrderedDict / None
    tree comes back as the eager step returns it, with the same values."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    eager_params = OrderedDict(
        [("w", Affine(np.linspace(0.5, 1.5, 6).reshape(3, 2), None)), ("frozen", None),
         ("b", np.linspace(1.0, 2.0, 2))]
    )
    params = tree_map(lambda v: jnp.asarray(v, dtype=jnp.float32), eager_params)
    opt = _optimizer(name)
    loss = jnp.asarray(2.0, dtype=jnp.float32) if opt.needs_loss else None
    state = opt.init(params)
    got, _ = jax.jit(lambda p, s: opt.step(p, p, s, loss=loss))(params, state)
    want, _ = opt.step(params, params, state, loss=loss)
    _same_structure(got, want)
    assert got["frozen"] is None and got["w"].b is None
    for g, w in zip(tree_flatten(got)[0], tree_flatten(want)[0], strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("shape", "batch_ndim"), [((257, 2), 1), ((9, 11, 3), 2),
                                                   ((40, 2, 2), 1), ((40, 5), 1), ((40, 1), 1)])
def test_numpy_per_run_reductions_and_selects_keep_the_bits(shape: tuple, batch_ndim: int) -> None:
    """The NumPy fast paths for short events (column-by-column dot and max, a repeated mask in
    the selects) give the bits of ``vecdot``, ``max`` and the broadcast ``where``."""
    from physopt_ref.core.tree import per_run_dot, per_run_max, select_state, select_tree

    rng = np.random.default_rng(3)
    a = rng.standard_normal(shape) * rng.uniform(1e-3, 1e3, shape[:batch_ndim] + (1,) * (
        len(shape) - batch_ndim))
    b = rng.standard_normal(shape)
    a.flat[5] = np.nan
    lead = shape[:batch_ndim]
    flat_a, flat_b = a.reshape(*lead, -1), b.reshape(*lead, -1)
    np.testing.assert_array_equal(per_run_dot(np, a, b, batch_ndim),
                                  np.vecdot(flat_a, flat_b, axis=-1))
    np.testing.assert_array_equal(per_run_max(np, a, batch_ndim), np.max(flat_a, axis=-1))
    keep = rng.uniform(size=lead) < 0.5
    mask = keep.reshape(lead + (1,) * (len(shape) - batch_ndim))
    np.testing.assert_array_equal(select_tree(np, keep, [a], [b], batch_ndim)[0],
                                  np.where(mask, a, b))
    np.testing.assert_array_equal(select_state(np, keep, {"x": a}, {"x": b}, batch_ndim)["x"],
                                  np.where(mask, a, b))


@pytest.mark.parametrize(("shape", "batch_ndim", "columns"), [
    ((50, 2), 1, True), ((4, 5, 3), 2, True), ((30, 2, 2), 1, True), ((40, 5), 1, False),
])
def test_jitted_per_run_reductions_of_short_events_go_by_columns(
        shape: tuple, batch_ndim: int, columns: bool) -> None:
    """Under ``jax.jit`` events of 2-4 elements are reduced column by column (XLA runs a
    reduction over a short trailing axis as a slow library kernel; ``core/tree.py``): no
    ``dot_general`` or ``reduce_max`` in the trace. The maximum is exact; the sum is the
    column sum to the last bit (XLA may fuse a product into the addition). Events of 5 or
    more elements keep ``vecdot`` and ``max``."""
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    from physopt_ref.core.tree import per_run_dot, per_run_max

    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        a, b = rng.standard_normal(shape), rng.standard_normal(shape)
        a.flat[3] = np.nan

        def both(x: Any, y: Any) -> tuple[Any, Any]:
            return per_run_dot(jnp, x, y, batch_ndim), per_run_max(jnp, x, batch_ndim)

        text = str(jax.make_jaxpr(both)(jnp.asarray(a), jnp.asarray(b)))
        assert ("dot_general" not in text and "reduce_max" not in text) == columns, text
        dot, mx = jax.jit(both)(jnp.asarray(a), jnp.asarray(b))
        lead = shape[:batch_ndim]
        flat_a, flat_b = a.reshape(*lead, -1), b.reshape(*lead, -1)
        np.testing.assert_array_equal(np.asarray(mx), np.max(flat_a, axis=-1))
        want = np.vecdot(flat_a, flat_b, axis=-1)
        bound = 4 * np.finfo(float).eps * np.sum(np.abs(flat_a * flat_b), axis=-1)
        got = np.asarray(dot)
        assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(want).sum() == 1
        ok = ~np.isnan(want)
        assert np.all(np.abs(got[ok] - want[ok]) <= bound[ok])
        # Eager JAX keeps vecdot and max over the axis (one dispatch each).
        np.testing.assert_array_equal(np.asarray(per_run_max(jnp, jnp.asarray(a), batch_ndim)),
                                      np.max(flat_a, axis=-1))
