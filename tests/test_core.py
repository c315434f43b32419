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


def test_one_array_fast_path_keeps_the_checks_and_the_results() -> None:
    """Optimizer.step's fast path for a one-array tree (after the first step on its type)
    refuses what the tree path refuses and gives the tree path's bits."""
    opt = po.heavy_ball(lr=0.1)
    x = np.linspace(-1.0, 1.0, 6)
    state = opt.init(x)
    for _ in range(2):  # the second call takes the fast path
        with pytest.raises(ValueError, match=r"a gradient of shape \(5,\)"):
            opt.step(x, x[:5], state)
        with pytest.raises(TypeError, match="a gradient of dtype float32"):
            opt.step(x, x.astype(np.float32), state)
        with pytest.raises(TypeError, match="expects a MomentumState"):
            opt.step(x, x, po.sgd(lr=0.1).init(x))
    one, s1 = opt.step(x, 0.5 * x, state)
    (tree,), s2 = opt.step([x], [0.5 * x], state)
    np.testing.assert_array_equal(one, tree)
    np.testing.assert_array_equal(s1.previous[0], s2.previous[0])


def test_numpy_count_increment_saturates_in_int32() -> None:
    """NumPy's count increment (scalar arithmetic, ``count + (count < COUNT_MAX)``) keeps the
    type, the dtype and the saturation of the generic ``minimum(count, COUNT_MAX - 1) + 1``."""
    import array_api_compat.numpy as xp

    from physopt_ref.core.context import COUNT_MAX, increment_count

    for count in (
        np.asarray(0, dtype=np.int32),
        np.int32(COUNT_MAX - 1),
        np.int32(COUNT_MAX),
        np.asarray([0, COUNT_MAX - 1, COUNT_MAX], dtype=np.int32),
    ):
        new = increment_count(xp, count)
        old = np.minimum(count, COUNT_MAX - 1) + 1
        assert type(new) is type(old) and new.dtype == np.int32
        np.testing.assert_array_equal(new, old)
    assert increment_count(xp, np.int32(COUNT_MAX)) == COUNT_MAX


@pytest.mark.parametrize("dtype", ["float64", "float16"])
@pytest.mark.parametrize("name", ["sgd", "heavy_ball", "adam", "bbi", "ecdsep", "gravity"])
def test_numpy_fast_path_checks_off(name: str, dtype: str) -> None:
    """With the debug checks off (the tests run with them on), a NumPy step takes the fast path
    of ``Optimizer.step``: it refuses a wrong gradient or state as the checked path does, and
    its parameters and state equal the checked step's over a few steps (types included)."""
    hp = {"eta": 1.0} if name == "ecdsep" else {}
    opt = po.get_optimizer(name, lr=0.1, **hp)
    # float16: the wide and compensated states (x = -0.2 makes one gradient exactly 0)
    x = np.linspace(-1.0, 1.0, 6).astype(dtype)
    runs = []
    for checks in (False, True):
        with po.debug_checks(checks):
            state, p = opt.init(x), x
            with pytest.raises(ValueError, match=r"a gradient of shape \(5,\)"):
                opt.step(p, p[:5], state, loss=1.0)
            with pytest.raises(TypeError, match="a gradient of dtype float32"):
                opt.step(p, p.astype(np.float32), state, loss=1.0)
            with pytest.raises(TypeError, match="state"):
                opt.step(p, p, (po.sgd if name != "sgd" else po.adam)().init(p), loss=1.0)
            out = []
            for _ in range(4):
                p, state = opt.step(p, 0.5 * p + 0.1, state, loss=1.0 + float(p @ p))
                out.append((p, *tree_flatten(state)[0]))
            runs.append(out)
    for fast, checked in zip(*runs, strict=True):
        for a, b in zip(fast, checked, strict=True):
            assert type(a) is type(b)
            np.testing.assert_array_equal(a, b)


def test_one_array_fast_path_does_not_recompile_a_torch_step() -> None:
    """The fast path's type cache is not read under torch.compile: compiled, eager, compiled
    steps share one graph."""
    torch = pytest.importorskip("torch")
    import warnings

    from torch._dynamo.testing import CompileCounterWithBackend

    from physopt_ref.testing.compile import TORCH_COMPILE_WARNINGS

    torch._dynamo.reset()
    opt = po.heavy_ball(lr=0.1)
    x = torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)
    state = opt.init(x)
    counter = CompileCounterWithBackend("eager")
    step = torch.compile(opt.step, backend=counter, fullgraph=True)
    with warnings.catch_warnings():
        for message in TORCH_COMPILE_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        x, state = step(x, x, state)
        x, state = opt.step(x, x, state)
        x, state = step(x, x, state)
    assert counter.frame_count == 1
