"""What an optimizer accepts, found by trying it: tree kinds, ensembles, the loss keyword.

Optimizers written by users take what they need: often one array (``x`` is a vector in most
scientific code), sometimes dicts of layers, rarely every kind of tree; some ``init`` functions
take no ``batch_ndim`` and some steps no ``loss``. :func:`probe` tries a plain array, a list, a
tuple and a dict of arrays (two steps on a small quadratic each) and reads the signatures of
``init`` and ``step``; :func:`accommodate` gives a :class:`~physopt_ref.testing.Subject` that
the checks can drive (the loss is passed only to a step that takes it) and whose drawn inputs
keep to what was accepted. :func:`~physopt_ref.testing.verify` does both and reports what was
probed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from physopt_ref.backends import to_numpy
from physopt_ref.core.tree import tree_flatten
from physopt_ref.testing.subject import Subject
from physopt_ref.testing.workloads import CONTRACT_WORKLOAD, QuadraticWorkload

__all__ = ["TREE_KINDS", "Accepts", "accommodate", "probe", "workload_for"]

#: The tree kinds probed, in the order tried.
TREE_KINDS = ("array", "list", "tuple", "dict")

_X = np.array([1.0, -2.0, 0.5, 0.3])
_C = np.array([0.5, 1.0, 2.0, 1.5])


def _as_kind(kind: str, v: np.ndarray) -> Any:
    """The vector ``v`` as a tree of ``kind`` (two leaves for the containers)."""
    if kind == "array":
        return v
    halves = [v[:2], v[2:]]
    if kind == "dict":
        return {"a": halves[0], "b": halves[1]}
    return halves if kind == "list" else tuple(halves)


@dataclass(frozen=True)
class Accepts:
    """What :func:`probe` found.

    Attributes
    ----------
    trees : tuple of str
        The tree kinds accepted, among :data:`TREE_KINDS`.
    ensembles : bool
        ``init`` takes ``batch_ndim`` (leading axes of independent runs).
    loss : bool
        ``step`` takes the ``loss`` keyword.
    refused : mapping
        Why each refused kind was refused (the exception, or what came back).
    """

    trees: tuple[str, ...]
    ensembles: bool = True
    loss: bool = True
    refused: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: what was probed and what was found."""
        refused = "; ".join(f"{k} refused ({why})" for k, why in self.refused.items())
        trees = ", ".join(self.trees) if self.trees else "none"
        return (f"probed parameter trees {', '.join(TREE_KINDS)}: accepted {trees}"
                + (f"; {refused}" if refused else "")
                + f"; ensembles: {'yes' if self.ensembles else 'no (init takes no batch_ndim)'}"
                + f"; loss: {'passed to step' if self.loss else 'not taken by step'}")


def _takes(fn: Callable[..., Any], name: str) -> bool:
    """``fn`` takes the keyword ``name`` (or any keyword); True when it has no signature."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any((p.name == name and p.kind is not p.POSITIONAL_ONLY)
               or p.kind is p.VAR_KEYWORD for p in params)


def _same_kind(kind: str, tree: Any) -> bool:
    if kind == "array":
        return hasattr(tree, "shape") and not isinstance(tree, list | tuple | dict)
    want = {"list": list, "tuple": tuple, "dict": dict}[kind]
    return type(tree) is want


def _try(subject: Subject, kind: str, loss: bool) -> str:
    """'' when two steps on a tree of ``kind`` run and give that kind back, else why not."""
    try:
        opt = subject.build()
        params = _as_kind(kind, _X)
        state = opt.init(params)
        for _ in range(2):
            leaves = [to_numpy(v) for v in tree_flatten(params)[0]]
            flat = np.concatenate([np.ravel(v) for v in leaves])
            grads = _as_kind(kind, _C * flat)
            extra = {"loss": np.asarray(0.5 * np.sum(_C * flat * flat) + 0.5)} if loss else {}
            params, state = opt.step(params, grads, state, **extra)
    except Exception as exc:  # the subject refused this kind: recorded, not raised
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    if not _same_kind(kind, params):
        return f"a {type(params).__name__} came back"
    return ""


def probe(subject: Subject) -> Accepts:
    """Try the subject on each tree kind and read its signatures; see the module docstring."""
    opt = subject.build()
    loss = _takes(opt.step, "loss")
    ensembles = _takes(opt.init, "batch_ndim")
    refused = {}
    for kind in TREE_KINDS:
        why = _try(subject, kind, loss)
        if why:
            refused[kind] = why
    trees = tuple(k for k in TREE_KINDS if k not in refused)
    return Accepts(trees, ensembles, loss, refused)


class _Accommodated:
    """An optimizer seen through what it accepts: ``loss`` only to a step that takes it,
    ``batch_ndim`` only to an ``init`` that takes it (0 otherwise), and a plain array (the
    physics checks' input) as a one-leaf tree of an accepted kind where arrays are refused."""

    def __init__(self, opt: Any, accepts: Accepts) -> None:
        self._opt, self._accepts = opt, accepts
        self._box = next((k for k in TREE_KINDS if k in accepts.trees), "array")

    def _in(self, tree: Any) -> Any:
        if self._box == "array" or not _same_kind("array", tree):
            return tree
        return {"x": tree} if self._box == "dict" else (
            [tree] if self._box == "list" else (tree,))

    def _out(self, tree: Any, like: Any) -> Any:
        if self._box == "array" or not _same_kind("array", like):
            return tree
        return tree["x"] if self._box == "dict" else tree[0]

    def init(self, params: Any, *, batch_ndim: int = 0) -> Any:
        if self._accepts.ensembles:
            return self._opt.init(self._in(params), batch_ndim=batch_ndim)
        if batch_ndim:
            raise TypeError("this optimizer's init takes no batch_ndim: no ensembles")
        return self._opt.init(self._in(params))

    def step(self, params: Any, grads: Any, state: Any, *, loss: Any = None) -> Any:
        extra = {"loss": loss} if self._accepts.loss else {}
        new, state = self._opt.step(self._in(params), self._in(grads), state, **extra)
        return self._out(new, params), state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._opt, name)

    def __repr__(self) -> str:
        return repr(self._opt)


def accommodate(subject: Subject, accepts: Accepts) -> Subject:
    """``subject`` with ``accepts`` recorded, its optimizers driven through what they take."""
    if accepts.loss and accepts.ensembles and "array" in accepts.trees:
        return replace(subject, accepts=accepts)
    factory = subject.factory

    @functools.wraps(factory)  # the factory's signature still names the hyperparameters
    def adapted(**hp: Any) -> Any:
        return _Accommodated(factory(**hp), accepts)

    return replace(subject, factory=adapted, accepts=accepts)


_ARRAY_WORKLOAD = QuadraticWorkload(_C, _X)


def workload_for(accepts: Accepts | None) -> QuadraticWorkload:
    """The contract workload in a kind the subject accepts (a dict first, then a list, a tuple,
    one array)."""
    if accepts is None or "dict" in accepts.trees:
        return CONTRACT_WORKLOAD
    for kind in ("list", "tuple"):
        if kind in accepts.trees:
            return QuadraticWorkload(_as_kind(kind, _C), _as_kind(kind, _X))
    return _ARRAY_WORKLOAD
