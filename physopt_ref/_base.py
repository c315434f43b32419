"""The optimizer contract and the registry that the generic tests iterate.

An :class:`Optimizer` is a pair of pure functions::

    state = opt.init(params, batch_ndim=0)
    params, state = opt.step(params, grads, state, loss=None)

``params`` and ``grads`` are trees (:mod:`physopt_ref._tree`) of arrays of one Array API
namespace; ``batch_ndim`` leading axes of every leaf hold independent runs of an ensemble; the
state is a ``NamedTuple`` of arrays plus the static Python ints ``count`` (steps taken) and
``batch_ndim``. A step never mutates its inputs, keeps the dtype and device of ``params`` and
contains no host synchronisation on array data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from array_api_compat import array_namespace, device

from ._tree import TreeDef, batch_shape_of, tree_flatten

__all__ = [
    "REGISTRY",
    "Optimizer",
    "RegistryEntry",
    "StepInputs",
    "as_per_run",
    "check_float_leaves",
    "evaluate",
    "get_optimizer",
    "prepare_init",
    "prepare_step",
    "register",
    "registered_names",
]

InitFn = Callable[..., Any]
StepFn = Callable[..., tuple[Any, Any]]


@dataclass(frozen=True)
class Optimizer:
    """A physics-inspired optimizer as two pure functions.

    Attributes
    ----------
    name : str
        The registry name (``"bbi"``, ``"gravity"``, ...).
    init : callable
        ``init(params, *, batch_ndim=0) -> state``.
    step : callable
        ``step(params, grads, state, *, loss=None) -> (params, state)``.
    hyperparameters : mapping
        The validated hyperparameters, as Python numbers (or schedules).
    needs_loss : bool
        Whether ``step`` requires ``loss`` (the energy-conserving family does).
    """

    name: str
    init: InitFn
    step: StepFn
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    needs_loss: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hyperparameters", MappingProxyType(dict(self.hyperparameters)))

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{self.name}({hp})"


class StepInputs(NamedTuple):
    """What :func:`prepare_step` hands to an optimizer's step."""

    xp: Any
    params: list[Any]
    grads: list[Any]
    treedef: TreeDef
    batch_shape: tuple[int, ...]


def check_float_leaves(xp: Any, leaves: list[Any]) -> None:
    """Refuse integer / boolean / complex parameters with a clear message."""
    for leaf in leaves:
        if not xp.isdtype(leaf.dtype, "real floating"):
            raise TypeError(
                f"parameters must be real floating-point arrays, got dtype {leaf.dtype}"
            )


def prepare_init(params: Any, batch_ndim: int) -> tuple[Any, list[Any], TreeDef]:
    """Validate ``params`` for ``init``: namespace, float dtype, a shared ensemble shape."""
    leaves, treedef = tree_flatten(params)
    xp = array_namespace(*leaves)
    check_float_leaves(xp, leaves)
    if isinstance(batch_ndim, bool) or not isinstance(batch_ndim, int):
        raise TypeError(f"batch_ndim must be an int, got {type(batch_ndim).__name__}")
    batch_shape_of(leaves, batch_ndim)
    return xp, leaves, treedef


def prepare_step(params: Any, grads: Any, batch_ndim: int) -> StepInputs:
    """Validate a step's inputs: same structure, shapes, dtypes and namespace for both trees."""
    p_leaves, treedef = tree_flatten(params)
    g_leaves, g_def = tree_flatten(grads)
    if g_def != treedef:
        raise ValueError(f"grads must have the structure of params: {g_def} vs {treedef}")
    xp = array_namespace(*p_leaves, *g_leaves)
    for p, g in zip(p_leaves, g_leaves, strict=True):
        if tuple(p.shape) != tuple(g.shape):
            raise ValueError(
                f"a gradient of shape {tuple(g.shape)} for a parameter of shape {tuple(p.shape)}"
            )
        if p.dtype != g.dtype:
            raise TypeError(f"a gradient of dtype {g.dtype} for a parameter of dtype {p.dtype}")
    check_float_leaves(xp, p_leaves)
    return StepInputs(xp, p_leaves, g_leaves, treedef, batch_shape_of(p_leaves, batch_ndim))


def as_per_run(xp: Any, value: Any, like: Any, batch_shape: tuple[int, ...], name: str) -> Any:
    """A per-run quantity (the loss, say) as an array of the batch shape, dtype of ``like``.

    Accepts a Python number, a 0-d array (broadcast to every run) or an array of the batch shape.
    """
    if value is None:
        raise ValueError(f"this optimizer's step needs {name}=...; got None")
    if isinstance(value, int | float) and not isinstance(value, bool):
        arr = xp.asarray(value, dtype=like.dtype, device=device(like))
    else:
        arr = value
        try:
            array_namespace(arr, like)
        except TypeError as exc:
            raise TypeError(
                f"{name} must be a number or an array of the parameters' namespace: {exc}"
            ) from exc
        if not xp.isdtype(arr.dtype, "real floating"):
            raise TypeError(f"{name} must be real floating-point, got dtype {arr.dtype}")
        arr = xp.astype(arr, like.dtype)
    if arr.ndim == 0:
        return xp.broadcast_to(arr, batch_shape) if batch_shape else arr
    if tuple(arr.shape) != batch_shape:
        raise ValueError(
            f"{name} must be a scalar or have the ensemble shape {batch_shape}, "
            f"got {tuple(arr.shape)}"
        )
    return arr


def evaluate(value: float | Callable[[int], float], count: int) -> float:
    """The value of a hyperparameter at step ``count``: a constant, or a schedule's value."""
    return value(count) if callable(value) else value


# ---------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class RegistryEntry:
    """One registered optimizer and how the generic tests exercise it.

    Attributes
    ----------
    name : str
        Registry name, also the factory's name in ``physopt_ref``.
    factory : callable
        ``factory(**hyperparameters) -> Optimizer``.
    test_hyperparameters : mapping
        Settings for the generic tests (purity, dtype, ensembles, parity): chosen so that every
        branch of the step is exercised within a few steps on a small quadratic.
    family : str
        Paper family (``"classic"``, ``"dyna"``, ``"ecd"``, ``"coolmomentum"``, ``"gravity"``).
    stochastic : bool
        Whether the step draws random numbers (then it takes a ``seed``).
    smooth : bool
        False for steps with discontinuous decisions (bounces, max-normalisation): backend
        parity is then checked over fewer steps.
    """

    name: str
    factory: Callable[..., Optimizer]
    test_hyperparameters: Mapping[str, Any]
    family: str
    stochastic: bool = False
    smooth: bool = True


REGISTRY: dict[str, RegistryEntry] = {}


def register(
    name: str,
    factory: Callable[..., Optimizer],
    *,
    test_hyperparameters: Mapping[str, Any],
    family: str,
    stochastic: bool = False,
    smooth: bool = True,
) -> None:
    """Add an optimizer to :data:`REGISTRY` (the generic tests then cover it)."""
    if name in REGISTRY and REGISTRY[name].factory is not factory:
        raise ValueError(f"an optimizer named {name!r} is registered already")
    REGISTRY[name] = RegistryEntry(
        name, factory, dict(test_hyperparameters), family, stochastic, smooth
    )


def registered_names() -> list[str]:
    """Names of every registered optimizer, sorted."""
    return sorted(REGISTRY)


def get_optimizer(name: str, **hyperparameters: Any) -> Optimizer:
    """Build a registered optimizer by name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; registered: {registered_names()}")
    return REGISTRY[name].factory(**hyperparameters)
