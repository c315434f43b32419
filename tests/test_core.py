"""The shared core: parameter trees, per-run reductions, validation, the registry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import physopt_ref as po
from physopt_ref.core.context import as_per_run
from physopt_ref.core.tree import (
    batch_shape_of,
    expand_to_leaf,
    per_run_max,
    tree_flatten,
    tree_map,
    tree_per_run_sum,
    tree_unflatten,
)
from physopt_ref.core.validate import check_int, check_real

from .helpers import assert_close


def test_tree_round_trip() -> None:
    tree = {"a": np.ones(2), "b": [np.zeros(3), (np.ones((2, 2)),)]}
    leaves, treedef = tree_flatten(tree)
    assert len(leaves) == 3 == treedef.num_leaves
    back = tree_unflatten(treedef, leaves)
    assert isinstance(back["b"], list) and isinstance(back["b"][1], tuple)
    doubled = tree_map(lambda x, y: x + y, tree, tree)
    np.testing.assert_array_equal(doubled["b"][1][0], 2 * np.ones((2, 2)))
    with pytest.raises(ValueError, match="structures differ"):
        tree_map(lambda x, y: x, tree, {"a": np.ones(2)})
    with pytest.raises(TypeError, match="leaf"):
        tree_flatten({"a": "text"})
    with pytest.raises(ValueError, match="no arrays"):
        tree_flatten([])
    with pytest.raises(ValueError, match="no arrays"):  # None is an empty subtree (jax, optax)
        tree_flatten({"a": None})


def test_per_run_reductions(xp: Any) -> None:
    a = xp.reshape(xp.arange(12, dtype=xp.float64), (2, 3, 2))
    b = xp.ones((2, 4), dtype=xp.float64)
    assert batch_shape_of([a, b], 1) == (2,)
    total = tree_per_run_sum(xp, [a, b], 1)
    assert_close(total, [15.0 + 4, 51.0 + 4], xp=xp)
    assert_close(per_run_max(xp, a, 1), [5.0, 11.0], xp=xp)
    assert tuple(expand_to_leaf(xp, total, a, 1).shape) == (2, 1, 1)
    with pytest.raises(ValueError, match="batch"):
        batch_shape_of([a, xp.ones((3, 4), dtype=xp.float64)], 1)


def test_as_per_run(xp: Any) -> None:
    like = xp.ones((3, 2), dtype=xp.float32)
    out = as_per_run(xp, 2.0, like, (3,), "loss")
    assert out.dtype == xp.float32 and tuple(out.shape) == (3,)
    with pytest.raises(ValueError, match="ensemble shape"):
        as_per_run(xp, xp.ones((2,), dtype=xp.float32), like, (3,), "loss")
    with pytest.raises(ValueError, match="needs loss"):
        as_per_run(xp, None, like, (3,), "loss")


def test_validation_messages() -> None:
    assert check_real("lr", np.float64(0.5), symbol="η", low=0) == 0.5
    assert type(check_real("lr", np.float32(0.5), symbol="η", low=0)) is float
    with pytest.raises(ValueError, match=r"zeta \(ζ\) must be in \[0, 1\], got 2"):
        check_real("zeta", 2, symbol="ζ", low=0, high=1)
    with pytest.raises(TypeError, match="real number"):
        check_real("lr", True, symbol="η")
    with pytest.raises(ValueError, match="finite"):
        check_real("lr", float("nan"), symbol="η")
    with pytest.raises(ValueError, match="integer in"):
        check_int("steps", -1, symbol="S", low=0)
    with pytest.raises(TypeError, match="integer"):
        check_int("steps", 1.5, symbol="S")


def test_registry_lookup() -> None:
    assert po.get_optimizer("sgd", lr=0.5).hyperparameters["lr"] == 0.5
    with pytest.raises(ValueError, match="unknown optimizer"):
        po.get_optimizer("nope")
    with pytest.raises(ValueError, match="registered already"):
        po.register("sgd", lambda: None, test_hyperparameters={}, family="x")


def test_optimizer_repr_and_frozen_hyperparameters() -> None:
    opt = po.heavy_ball(lr=0.1, momentum=0.5)
    assert repr(opt) == "heavy_ball(lr=0.1, momentum=0.5)"
    with pytest.raises(TypeError):
        opt.hyperparameters["lr"] = 1.0  # type: ignore[index]
