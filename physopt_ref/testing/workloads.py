r"""The inputs the checks run on: a separable quadratic on a parameter tree, and the runs.

:class:`QuadraticWorkload` is the loss :math:`F(x) = \tfrac12\sum_i c_i x_i^2 + F_0` over every
element of every leaf of a tree, per ensemble member, with gradient :math:`c \odot x`; the
offset :math:`F_0 > 0` keeps the loss positive, as the energy-conserving family needs.
:data:`CONTRACT_WORKLOAD` is the one the project's contract tests use: the two-leaf tree
``{"w": (3,), "b": (2, 2)}`` with ``F_0 = 1/2``. The hypothesis strategies
(:mod:`physopt_ref.testing.strategies`) draw other trees, curvatures and starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import device

from physopt_ref.backends import to_numpy
from physopt_ref.core.tree import tree_flatten, tree_unflatten

__all__ = [
    "CONTRACT_WORKLOAD",
    "QuadraticWorkload",
    "leaf_paths",
    "on_backend",
    "trajectory",
]


def leaf_paths(tree: Any) -> list[str]:
    """A readable name per leaf, in :func:`~physopt_ref.tree_flatten` order (``"['w']"``,
    ``"[0]"``, ``""`` for a single array)."""
    leaves, treedef = tree_flatten(tree)
    indexed = tree_unflatten(treedef, list(range(len(leaves))))
    names = [""] * len(leaves)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}[{k!r}]")
        elif isinstance(node, list | tuple):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif node is not None:  # None: an empty subtree
            names[node] = path

    walk(indexed, "")
    return names


def on_backend(xp: Any, tree: Any, dtype: Any = None, dev: Any = None) -> Any:
    """A NumPy tree as arrays of ``xp`` (float64 unless ``dtype`` says; on ``dev`` if given)."""
    leaves, treedef = tree_flatten(tree)
    dtype = xp.float64 if dtype is None else dtype
    kwargs = {} if dev is None else {"device": dev}
    return tree_unflatten(treedef, [xp.asarray(np.asarray(v), dtype=dtype, **kwargs)
                                    for v in leaves])


@dataclass(frozen=True)
class QuadraticWorkload:
    r"""``F(x) = ½ Σ c x² + offset`` per run on a tree, with ``grads = c x``.

    Attributes
    ----------
    curvature : tree of NumPy arrays
        :math:`c` per element, the tree's structure and event shapes.
    x0 : tree of NumPy arrays
        The start (same structure and shapes).
    offset : float
        :math:`F_0`, added to the loss (positive keeps ``F > 0``).
    shift : float
        Ensemble member ``k`` (in C order over the batch shape) starts at ``x0 + shift·k``, so
        members differ.
    """

    curvature: Any
    x0: Any
    offset: float = 0.5
    shift: float = 0.25
    _leaves: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        c_leaves, c_def = tree_flatten(self.curvature)
        x_leaves, x_def = tree_flatten(self.x0)
        if c_def != x_def:
            raise ValueError(f"curvature and x0 must have one structure: {c_def} vs {x_def}")
        for c, x in zip(c_leaves, x_leaves, strict=True):
            if np.shape(c) != np.shape(x):
                raise ValueError(f"curvature {np.shape(c)} and x0 {np.shape(x)} shapes differ")
        object.__setattr__(self, "_leaves", tuple(np.asarray(c, dtype=np.float64)
                                                  for c in c_leaves))

    @property
    def leaf_names(self) -> list[str]:
        return leaf_paths(self.x0)

    def start(self, batch_shape: tuple[int, ...] = ()) -> Any:
        """``x0`` for an ensemble of ``batch_shape`` (NumPy float64); member k shifted by
        k·shift."""
        n = math.prod(batch_shape)
        shift = self.shift * np.arange(n, dtype=np.float64).reshape(batch_shape)
        leaves, treedef = tree_flatten(self.x0)
        out = []
        for x in leaves:
            x = np.asarray(x, dtype=np.float64)
            s = shift.reshape(batch_shape + (1,) * x.ndim)
            out.append(np.asarray(np.broadcast_to(x, batch_shape + x.shape) + s))
        return tree_unflatten(treedef, out)

    def loss_and_grads(self, xp: Any, params: Any, batch_ndim: int) -> tuple[Any, Any]:
        """``(loss, grads)`` of ``params`` (a tree of ``xp`` arrays): loss per run."""
        leaves, treedef = tree_flatten(params)
        grads: list[Any] = []
        loss: Any = None
        for x, c_host in zip(leaves, self._leaves, strict=True):
            c = xp.asarray(c_host, dtype=x.dtype, device=device(x))
            grads.append(c * x)
            axes = tuple(range(batch_ndim, x.ndim))
            term = 0.5 * xp.sum(c * x * x, axis=axes)
            loss = term if loss is None else loss + term
        return loss + self.offset, tree_unflatten(treedef, grads)

    def describe(self) -> dict[str, Any]:
        """The workload as plain data (for a check's report)."""
        return {"curvature": self.curvature, "x0": self.x0, "offset": self.offset}


CONTRACT_WORKLOAD = QuadraticWorkload(
    curvature={"w": np.array([0.5, 1.0, 2.0]), "b": np.array([[1.5, 0.7], [1.2, 0.9]])},
    x0={"w": np.array([1.0, -2.0, 0.5]), "b": np.array([[0.3, -0.4], [1.1, -0.8]])},
)


def trajectory(
    opt: Any,
    xp: Any,
    x0: Any,
    steps: int,
    *,
    batch_ndim: int = 0,
    dtype: Any = None,
    workload: QuadraticWorkload = CONTRACT_WORKLOAD,
    dev: Any = None,
    step: Callable[..., Any] | None = None,
) -> list[list[np.ndarray]]:
    """Run ``steps`` steps of ``opt`` on ``workload`` from the NumPy tree ``x0``.

    Returns the parameters after each step as NumPy leaves (in tree-flatten order). ``step``
    replaces ``opt.step`` (a compiled version, say).
    """
    params = on_backend(xp, x0, dtype, dev)
    state = opt.init(params, batch_ndim=batch_ndim)
    step = opt.step if step is None else step
    out = []
    for _ in range(steps):
        loss, grads = workload.loss_and_grads(xp, params, batch_ndim)
        params, state = step(params, grads, state, loss=loss)
        out.append([to_numpy(v) for v in tree_flatten(params)[0]])
    return out


def member(tree: Any, index: tuple[int, ...]) -> Any:
    """Ensemble member ``index`` of a NumPy tree (the leading axes)."""
    leaves, treedef = tree_flatten(tree)
    return tree_unflatten(treedef, [np.asarray(v)[index] for v in leaves])


def describe_hyperparameters(hp: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as plain data (arrays to NumPy, schedules by repr)."""
    out = {}
    for k, v in hp.items():
        if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, np.generic):
            out[k] = to_numpy(v)
        else:
            out[k] = v
    return out
