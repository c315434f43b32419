"""The optimizer contract (v2), the step scaffold every optimizer is built on, and the registry.

An :class:`Optimizer` is a pair of pure functions::

    state = opt.init(params, batch_ndim=0)
    params, state = opt.step(params, grads, state, loss=None)

``params`` and ``grads`` are trees (:mod:`physopt_ref._tree`) of arrays of one Array API
namespace; ``batch_ndim`` leading axes of every leaf hold independent runs of an ensemble. The
state is a ``NamedTuple`` of arrays only: its first field ``count`` is an ``int32`` array of the
ensemble's batch shape (each run's number of steps taken, saturating at :data:`COUNT_MAX`), so
the number of ensemble axes is ``state.count.ndim``. Its structure, shapes and dtypes never
change from step to step, so ``jax.jit``, ``jax.lax.scan`` and ``torch.compile`` trace a step
once. A step never mutates its inputs, keeps the dtype and device of ``params``, and makes no
host round trip on array data.

Validation happens once: hyperparameters when the optimizer is built, the parameter tree at
``init``. A step checks only the tree structure, shapes and dtypes (metadata, free under a
tracer); the full checks (namespaces, float dtypes, the state against the parameters, the loss,
schedule values) run when :func:`debug_checks` is on, or with ``PHYSOPT_CHECKS=1`` in the
environment. The tests turn them on.

Every family module writes its update rule once, as two module-level functions
``init(hp, ctx, leaves) -> fields`` and ``update(hp, ctx, params, grads, state, loss) ->
(new_params, fields)`` over lists of leaves, and builds its :class:`Optimizer` from them; the
scaffold here does the rest (trees, namespaces, the count, checks). Optimizers are therefore
picklable.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_jax_array, is_torch_array

from ._donate import donated_update
from ._tree import TreeDef, batch_shape_of, expand_to_leaf, tree_flatten, tree_unflatten
from ._validate import is_array
from .schedules import Schedule

__all__ = [
    "COUNT_MAX",
    "REGISTRY",
    "Optimizer",
    "RegistryEntry",
    "StepContext",
    "as_per_run",
    "batch_ndim_of",
    "check_float_leaves",
    "check_per_run_arrays",
    "checks_enabled",
    "debug_checks",
    "get_optimizer",
    "increment_count",
    "is_tracing",
    "namespace_of_leaves",
    "prepare_init",
    "register",
    "registered_names",
    "set_debug_checks",
]

#: The step count saturates here (``int32``): a run of more steps keeps ``count == COUNT_MAX``,
#: so schedules and random streams then see the same ``t`` on every further step.
COUNT_MAX = 2**31 - 1

# ---------------------------------------------------------------------------------------------
# The debug switch

_CHECKS = [os.environ.get("PHYSOPT_CHECKS", "").strip().lower() in ("1", "true", "yes", "on")]


def checks_enabled() -> bool:
    """Whether steps run their full input checks (:func:`debug_checks`)."""
    return _CHECKS[0]


def set_debug_checks(enabled: bool) -> bool:
    """Turn the full per-step checks on or off for the whole process; returns the old setting."""
    old = _CHECKS[0]
    _CHECKS[0] = bool(enabled)
    return old


@contextlib.contextmanager
def debug_checks(enabled: bool = True) -> Iterator[None]:
    """Context manager: full per-step checks on (or off) inside the block.

    With the checks on, every step also checks that all leaves, the loss and the state belong
    to one namespace, that the parameters are real floating point, that the state matches the
    parameters (shapes, dtypes, ensemble shape), the loss's shape, and (outside a tracer) that
    schedule values lie in their hyperparameter's interval. They cost host work per step, so
    they are off by default; ``PHYSOPT_CHECKS=1`` turns them on at start-up.
    """
    old = set_debug_checks(enabled)
    try:
        yield
    finally:
        set_debug_checks(old)


def is_tracing(x: Any) -> bool:
    """True when ``x`` is being traced (a JAX tracer, or inside ``torch.compile``)."""
    if is_jax_array(x):
        import jax

        return isinstance(x, jax.core.Tracer)
    if is_torch_array(x):
        import torch

        return bool(torch.compiler.is_compiling())
    return False


# ---------------------------------------------------------------------------------------------
# Namespaces and validation

_NAMESPACES: dict[type, Any] = {}


def namespace_of_leaves(*groups: list[Any]) -> Any:
    """The namespace of several lists of arrays: a cached lookup when all share one type.

    Mixed types go through ``array_namespace``, which raises for mixed libraries.
    """
    first = groups[0][0]
    kind = type(first)
    for group in groups:
        for a in group:
            if type(a) is not kind:
                return array_namespace(*(a for group in groups for a in group))
    if kind.__module__.startswith("torch") and _torch_compiling():
        # No cache under torch.compile: reading the dict guards on its contents, so a first
        # trace that fills it in (a process whose first torch step is compiled) would recompile
        # the step once.
        return array_namespace(first)
    cached = _NAMESPACES.get(kind)
    if cached is None:
        cached = _NAMESPACES[kind] = array_namespace(first)
    return cached


def _torch_compiling() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.compiler.is_compiling())


def _torch_step_without_autograd(rule: Callable[..., Any], *args: Any) -> Any:
    """Run an init or update rule on torch tensors under ``torch.no_grad()``.

    A step is an optimizer update, not part of the model: parameters that require grad, or a
    loss that carries the forward pass's history, must not tie the new parameters and state
    to an autograd graph (memory growing step after step, gradients flowing through the
    update). The new tensors therefore carry no history and do not require grad.
    """
    import torch

    if not torch.is_grad_enabled():
        return rule(*args)

    # The arrays going in are detached too: a leaf passed through unchanged (a run that made
    # no update) would otherwise be the caller's tensor, and copies of a tensor that requires
    # grad warn. ``args`` is ``(hp, ctx, *arrays)``.
    def free(t: Any) -> Any:
        if hasattr(t, "_fields"):  # a state NamedTuple
            return type(t)(*map(free, t))
        if isinstance(t, list | tuple):
            return type(t)(free(a) for a in t)
        if isinstance(t, dict):
            return {k: free(v) for k, v in t.items()}
        return t.detach() if getattr(t, "requires_grad", False) else t

    hp, ctx, *arrays = args
    ctx.like = free(ctx.like)
    with torch.no_grad():
        return free(rule(hp, ctx, *map(free, arrays)))


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


def batch_ndim_of(state: Any) -> int:
    """The number of ensemble axes of a contract-v2 state (``state.count.ndim``)."""
    return state.count.ndim


def as_per_run(xp: Any, value: Any, like: Any, batch_shape: tuple[int, ...], name: str) -> Any:
    """A per-run quantity (the loss, say) as an array of the batch shape, dtype of ``like``.

    Accepts a Python number, a 0-d array (broadcast to every run) or an array of the batch shape.
    """
    if value is None:
        raise ValueError(f"this optimizer's step needs {name}=...; got None")
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or an array, got a bool ({value!r})")
    if isinstance(value, int | float) or (
        isinstance(value, np.generic) and np.isrealobj(value) and value.dtype.kind in "iuf"
    ):
        arr = xp.asarray(float(value), dtype=like.dtype, device=device(like))
    elif not is_array(value):
        raise TypeError(
            f"{name} must be a number or an array of the parameters' namespace, "
            f"got {type(value).__name__}"
        )
    else:
        arr = value
        if type(arr) is not type(like):
            try:
                array_namespace(arr, like)
            except TypeError as exc:
                raise TypeError(
                    f"{name} must be a number or an array of the parameters' namespace: {exc}"
                ) from exc
        if arr.dtype != like.dtype:
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


# ---------------------------------------------------------------------------------------------
# The step context


class StepContext:
    """What an update rule sees besides its arrays: namespace, ensemble, count, dtype.

    Attributes
    ----------
    xp : namespace
    batch_ndim : int
        Number of leading ensemble axes.
    batch_shape : tuple of int
    count : array
        Steps taken by each run, ``int32`` of the batch shape.
    like : array
        The first parameter leaf: per-run arrays take its dtype and device.
    treedef : TreeDef or None
        The structure of the parameter tree (for per-leaf settings given as trees).
    leaf_ids : tuple of int or None
        Which leaves of the tree the rule's lists hold, when a donated step evaluates an
        element-wise rule on a subset of the leaves (:mod:`physopt_ref._donate`); ``None``: all
        of them, in order. Read it through :meth:`per_leaf`.
    tree_shapes : tuple of tuple or None
        The shapes of every leaf of the whole tree when the rule sees slices of them (a donated,
        chunked step); ``None``: the leaves' own shapes. Read it through
        :meth:`tree_event_shapes`.
    """

    __slots__ = (
        "_realize",
        "_t",
        "_tensor",
        "batch_ndim",
        "batch_shape",
        "count",
        "dtype",
        "leaf_ids",
        "like",
        "tree_shapes",
        "treedef",
        "xp",
    )

    def __init__(self, xp: Any, count: Any, like: Any, treedef: TreeDef | None = None) -> None:
        self.xp = xp
        self.treedef = treedef
        self._tensor = tensor = type(like).__module__.startswith("torch")
        # Under torch.compile, per-run values are materialised before they meet a leaf (leaf()).
        self._realize = tensor and _torch_compiling()
        self.count = count
        self.like = like
        self.dtype = like.dtype
        self.batch_shape = tuple(count.shape)
        self.batch_ndim = len(self.batch_shape)
        self._t = None
        self.leaf_ids = None
        self.tree_shapes = None

    @property
    def device(self) -> Any:
        return device(self.like)

    @property
    def t(self) -> Any:
        """The count as a float array of the parameters' dtype (what schedules receive)."""
        if self._t is None:
            self._t = self.xp.astype(self.count, self.dtype)
        return self._t

    def hp(self, value: Any) -> Any:
        """A hyperparameter's value at this step: a Python float, or a per-run array.

        Constants stay Python floats (no promotion, no kernel); per-run arrays are cast to the
        parameters' dtype; schedules are evaluated at :attr:`t`.
        """
        if type(value) is float or isinstance(value, float | int):
            return value
        if isinstance(value, Schedule):
            return self._schedule(value)
        xp = self.xp
        return value if value.dtype == self.dtype else xp.astype(value, self.dtype)

    def _schedule(self, schedule: Schedule) -> Any:
        xp = self.xp
        if schedule.host:
            out = _host_schedule_values(schedule, self)
        else:
            out = schedule(self.t)
        if isinstance(out, bool) or not (isinstance(out, int | float) or _has_array_type(out)):
            name = schedule.bounds.name if schedule.bounds is not None else "schedule"
            raise TypeError(
                f"the schedule for {name} returned {type(out).__name__}; "
                "expected a number or an array"
            )
        if _has_array_type(out) and out.dtype != self.dtype:
            out = xp.astype(xp.asarray(out), self.dtype)
        if isinstance(out, int):
            out = float(out)
        if checks_enabled() and schedule.bounds is not None and not is_tracing(self.like):
            from .backends import to_numpy

            values = out if isinstance(out, float) else to_numpy(out)
            schedule.bounds.check_values(values, f"{schedule.bounds.where} schedule value")
        return out

    def leaf(self, value: Any, leaf: Any) -> Any:
        """A per-run value (float or batch-shaped array) shaped to broadcast against ``leaf``.

        Under ``torch.compile`` an array value is first materialised (computed once into a
        buffer of the batch shape): otherwise inductor inlines the scalar arithmetic that
        produced it (``b1**t``, divisions) into the element loop and repeats it for every vector
        of the leaf, which made a compiled Adam step several times slower than torch's fused
        one (``benchmarks/bench_floor.py``).
        """
        if type(value) is float or isinstance(value, float | int):
            return value
        if self._realize:
            value = _materialise(self.xp, value)
        if self.batch_ndim == 0:
            return value
        return expand_to_leaf(self.xp, value, leaf, self.batch_ndim)

    def per_leaf(self, values: list[Any]) -> list[Any]:
        """From one value per leaf of the whole tree, the values of the leaves this call sees."""
        ids = self.leaf_ids
        return values if ids is None else [values[i] for i in ids]

    def tree_event_shapes(self, leaves: list[Any]) -> list[tuple[int, ...]]:
        """The event shapes (without the ensemble axes) of every leaf of the whole tree.

        ``leaves`` are the rule's parameter leaves; under a chunked donated step they are slices
        and subsets, and the shapes come from :attr:`tree_shapes`.
        """
        shapes = self.tree_shapes
        if shapes is None:
            shapes = [tuple(p.shape) for p in leaves]
        return [tuple(s[self.batch_ndim :]) for s in shapes]

    def scalar(self, value: float | int | bool) -> Any:
        """``value`` for ``xp.where`` / ``xp.minimum`` next to arrays: a Python scalar, or a 0-d
        tensor on torch (whose array-api-compat wrappers break ``torch.compile``'s graph on a
        Python scalar). Floats take the parameters' dtype, ints ``int32``.
        """
        if not self._tensor:
            return value
        xp = self.xp
        if isinstance(value, bool):
            dtype = xp.bool
        elif isinstance(value, int):
            dtype = xp.int32
        else:
            dtype = self.dtype
        return xp.asarray(value, dtype=dtype, device=self.device)

    def zeros_like(self, leaves: list[Any]) -> tuple[Any, ...]:
        """Fresh zeros per leaf (never shared between state fields: no aliasing)."""
        return tuple(self.xp.zeros_like(p) for p in leaves)

    def full(self, value: Any, dtype: Any = None) -> Any:
        """A per-run array of the batch shape filled with ``value`` (a float or per-run array)."""
        xp = self.xp
        dtype = self.dtype if dtype is None else dtype
        if isinstance(value, float | int):
            return xp.full(self.batch_shape, value, dtype=dtype, device=self.device)
        return xp.broadcast_to(xp.astype(value, dtype), self.batch_shape)


def _materialise(xp: Any, value: Any) -> Any:
    """``value`` itself, written so that inductor computes it into a buffer of its own.

    ``max(stack(v, v))`` is exact (the same bits, NaN included), and a reduction is the one kind
    of node that inductor always realises instead of inlining into its consumers.
    """
    if not hasattr(value, "dtype"):
        return value
    return xp.max(xp.stack((value, value)), axis=0)


def _host_schedule_values(schedule: Schedule, ctx: StepContext) -> Any:
    """Evaluate a :class:`~physopt_ref.schedules.HostSchedule` (documented non-traceable)."""
    import numpy as np

    from .backends import asarray_like, to_numpy

    if is_tracing(ctx.like):
        raise TypeError(
            f"{schedule!r} needs the step count on the host and cannot be traced "
            "(jax.jit / torch.compile); write the schedule with array operations instead"
        )
    counts = to_numpy(ctx.count)
    unique, inverse = np.unique(counts, return_inverse=True)
    values = np.asarray([float(schedule.fn(int(c))) for c in unique], dtype=np.float64)
    if counts.ndim == 0:
        return float(values[0])
    return asarray_like(values[inverse].reshape(counts.shape), ctx.like)


# ---------------------------------------------------------------------------------------------
# The optimizer

InitRule = Callable[[Mapping[str, Any], StepContext, list[Any]], dict[str, Any]]
UpdateRule = Callable[..., tuple[list[Any], dict[str, Any]]]


class Optimizer:
    """A physics-inspired optimizer as two pure functions, ``init`` and ``step``.

    Built by the family factories (``physopt_ref.bbi(...)``, ``get_optimizer(name, ...)``);
    picklable, and compilable: ``jax.jit(opt.step)``, ``torch.compile(opt.step)``.

    Attributes
    ----------
    name : str
        The registry name (``"bbi"``, ``"gravity"``, ...).
    hyperparameters : mapping
        The validated hyperparameters: Python numbers, schedules or per-run arrays.
    needs_loss : bool
        Whether ``step`` requires ``loss`` (the energy-conserving family does).
    state_type : type
        The ``NamedTuple`` class of the state.
    elementwise : bool
        Whether the update rule is element-wise (see Notes); a donated step then evaluates it
        on cache-sized chunks.

    Notes
    -----
    Family modules build it from two module-level rules, ``init(hp, ctx, leaves) -> fields``
    and ``update(hp, ctx, params, grads, state, loss) -> (new_params, fields)``, where ``hp``
    holds the hyperparameters and the ``derived`` constants; the rules are written once and
    the scaffold adds the trees, the count and the checks.

    A rule is *element-wise* (``elementwise=True``) when every element of its leaf-shaped
    outputs depends only on the same element of its leaf-shaped inputs and on per-run values,
    and its per-run outputs do not depend on the leaves' data: no reduction over the
    parameters. It must then accept any subset of the leaves, each sliced along its flattened
    event axes, reading per-leaf settings through :meth:`StepContext.per_leaf` and
    :meth:`StepContext.tree_event_shapes` (:mod:`physopt_ref._donate`).
    """

    __slots__ = (
        "_hp",
        "_init_rule",
        "_rule_hp",
        "_update_rule",
        "elementwise",
        "name",
        "needs_loss",
        "squares_gradient",
        "state_type",
    )

    def __init__(
        self,
        name: str,
        hyperparameters: Mapping[str, Any],
        *,
        init: InitRule,
        update: UpdateRule,
        state_type: type,
        needs_loss: bool = False,
        derived: Mapping[str, Any] | None = None,
        elementwise: bool = False,
        squares_gradient: bool = False,
    ) -> None:
        self.name = name
        self._hp = dict(hyperparameters)
        # What the rules read: the hyperparameters plus values derived from them at build time.
        self._rule_hp = {**self._hp, **(derived or {})}
        self._init_rule = init
        self._update_rule = update
        self.state_type = state_type
        self.needs_loss = needs_loss
        self.elementwise = bool(elementwise)
        # The rule forms |g|² unscaled (BBI, ECDSep): the debug checks refuse a gradient
        # whose squared norm overflows the dtype.
        self.squares_gradient = bool(squares_gradient)

    @property
    def hyperparameters(self) -> Mapping[str, Any]:
        return MappingProxyType(self._hp)

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={_short(v)}" for k, v in self._hp.items())
        return f"{self.name}({hp})"

    def init(self, params: Any, *, batch_ndim: int = 0) -> Any:
        """The initial state for ``params``, whose ``batch_ndim`` leading axes are an ensemble.

        Validates the tree (one namespace, real floating leaves, a shared batch shape) and the
        per-run hyperparameter arrays (namespace, batch shape).
        """
        xp, leaves, treedef = prepare_init(params, batch_ndim)
        like = leaves[0]
        batch_shape = tuple(like.shape[:batch_ndim])
        self._check_per_run_arrays(like, batch_shape)
        count = xp.zeros(batch_shape, dtype=xp.int32, device=device(like))
        ctx = StepContext(xp, count, like, treedef)
        if ctx._tensor:
            fields = _torch_step_without_autograd(self._init_rule, self._rule_hp, ctx, leaves)
        else:
            fields = self._init_rule(self._rule_hp, ctx, leaves)
        return self.state_type(count=count, **fields)

    def step(
        self, params: Any, grads: Any, state: Any, *, loss: Any = None, donate: bool = False
    ) -> tuple[Any, Any]:
        """One step: ``(new_params, new_state)``; nothing passed in is modified.

        With ``donate=True`` the step instead writes the new values into the memory of
        ``params`` and of ``state``'s per-leaf arrays, and returns those very arrays: the caller
        promises not to use the ``params`` and ``state`` passed in again (they now hold the new
        values; ``grads`` and ``loss`` are only read). The bits are those of the pure step.
        NumPy (writeable arrays), array-api-strict, PyTorch and CuPy can donate; JAX arrays are
        immutable (use :func:`physopt_ref.compile`, ``jax.jit`` with ``donate_argnums``). See
        :mod:`physopt_ref._donate`.
        """
        # The cheap checks (metadata only, free under a tracer): structure, shapes, dtypes.
        p_leaves, treedef = tree_flatten(params)
        g_leaves, g_def = tree_flatten(grads)
        if g_def is not treedef and g_def != treedef:
            raise ValueError(f"grads must have the structure of params: {g_def} vs {treedef}")
        xp = namespace_of_leaves(p_leaves, g_leaves)  # first: mixed libraries are refused here
        for p, g in zip(p_leaves, g_leaves, strict=True):
            if p.shape != g.shape:
                raise ValueError(
                    f"a gradient of shape {tuple(g.shape)} for a parameter of shape "
                    f"{tuple(p.shape)}"
                )
            if p.dtype is not g.dtype and p.dtype != g.dtype:
                raise TypeError(
                    f"a gradient of dtype {g.dtype} for a parameter of dtype {p.dtype}"
                )
        if type(state) is not self.state_type:
            raise TypeError(
                f"{self.name} expects a {self.state_type.__name__} state (from its init), "
                f"got {type(state).__name__}"
            )
        count = state.count
        if _CHECKS[0]:
            self._full_checks(xp, p_leaves, state)
            self._check_finite_inputs(xp, g_leaves, loss)
        ctx = StepContext(xp, count, p_leaves[0], treedef)
        if self.needs_loss:
            loss = as_per_run(xp, loss, p_leaves[0], ctx.batch_shape, "loss")
        if donate:  # writes into the caller's tensors (under no_grad for torch: _donate)
            new_leaves, fields = donated_update(self, ctx, p_leaves, g_leaves, state, loss)
        elif ctx._tensor:
            new_leaves, fields = _torch_step_without_autograd(
                self._update_rule, self._rule_hp, ctx, p_leaves, g_leaves, state, loss
            )
        else:
            new_leaves, fields = self._update_rule(
                self._rule_hp, ctx, p_leaves, g_leaves, state, loss
            )
        # A rule may return its own count (a chain's non-finite guard keeps a skipped run's).
        if "count" in fields:
            count = fields.pop("count")
        else:
            count = increment_count(xp, count, ctx._tensor)
        names = self.state_type._fields
        state = tuple.__new__(self.state_type, (count, *[fields[k] for k in names[1:]]))
        return tree_unflatten(treedef, new_leaves), state

    # -- checks ----------------------------------------------------------------------------

    def _check_per_run_arrays(self, like: Any, batch_shape: tuple[int, ...]) -> None:
        check_per_run_arrays(self.name, self._rule_hp, like, batch_shape)

    def _check_finite_inputs(self, xp: Any, grads: list[Any], loss: Any) -> None:
        """With the debug checks on, refuse NaN / inf gradients and losses (outside a tracer).

        Without the checks a step never inspects values (that would be a host round trip):
        a non-finite gradient then propagates into the parameters (the energy-conserving
        steps make no update for a non-finite loss). The remedy in production is
        :func:`physopt_ref.transforms.non_finite_guard` first in a chain, which skips the
        affected runs on the device; a chain holding one skips this check.
        """
        if is_tracing(grads[0]):
            return
        for i, g in enumerate(grads):
            if not bool(xp.all(xp.isfinite(g))):
                raise FloatingPointError(
                    f"{self.name}: gradient leaf {i} (shape {tuple(g.shape)}) holds NaN or inf "
                    "values; put physopt_ref.non_finite_guard() first in a chain to skip such "
                    "steps"
                )
        if self.squares_gradient:
            self._check_gradient_square(xp, grads)
        if loss is None or isinstance(loss, bool):
            return
        if isinstance(loss, int | float | np.generic):
            finite = np.all(np.isfinite(np.asarray(loss, dtype=np.float64)))
        elif is_array(loss) and not is_tracing(loss):
            try:
                array_namespace(loss, grads[0])
            except TypeError as exc:
                raise TypeError(
                    f"{self.name}: loss must be a number or an array of the parameters' "
                    f"namespace: {exc}"
                ) from exc
            finite = bool(xp.all(xp.isfinite(loss)))
        else:
            return
        if not finite:
            raise FloatingPointError(
                f"{self.name}: the loss holds NaN or inf values; put "
                "physopt_ref.non_finite_guard() first in a chain to skip such steps"
            )

    def _check_gradient_square(self, xp: Any, grads: list[Any]) -> None:
        r"""Refuse a gradient whose squared norm :math:`|g|^2` overflows its dtype.

        Computed without overflowing: :math:`|g|^2 = m^2 \sum (g/m)^2` with
        :math:`m = \max|g|`, compared in logarithms on the host (a debug check).
        """
        peak, scaled = 0.0, []
        for g in grads:
            if math.prod(g.shape) == 0:
                continue
            if is_torch_array(g):
                g = g.detach()  # a host read of a tensor that requires grad warns
            m = float(xp.max(xp.abs(g)))
            if m > 0.0:
                scaled.append((m, float(xp.sum((g / m) * (g / m)))))
                peak = max(peak, m)
        if not scaled:
            return
        total = sum((m / peak) ** 2 * s for m, s in scaled)
        limit = float(xp.finfo(grads[0].dtype).max)
        if 2.0 * math.log(peak) + math.log(total) > math.log(limit):
            raise FloatingPointError(
                f"{self.name}: the squared norm of the gradient overflows "
                f"{grads[0].dtype} (max |g| = {peak:.3g}); this step forms |g|² unscaled: "
                "clip first, physopt_ref.chain(physopt_ref.transforms.clip_by_value(c), opt)"
            )

    def _full_checks(self, xp: Any, leaves: list[Any], state: Any) -> None:
        check_float_leaves(xp, leaves)
        count = state.count
        if not _has_array_type(count) or not xp.isdtype(count.dtype, "integral"):
            raise TypeError(f"{self.name}: state.count must be an integer array")
        batch_shape = tuple(count.shape)
        if batch_shape_of(leaves, len(batch_shape)) != batch_shape:
            raise ValueError(
                f"{self.name}: the state is for the ensemble shape {batch_shape}, the "
                f"parameters have {batch_shape_of(leaves, len(batch_shape))}"
            )
        self._check_per_run_arrays(leaves[0], batch_shape)
        for name, value in zip(state._fields, state, strict=True):
            arrays = list(value) if isinstance(value, tuple) else [value]
            for a in arrays:
                if not _has_array_type(a):
                    raise TypeError(f"{self.name}: state.{name} holds a {type(a).__name__}")
                array_namespace(a, leaves[0])
                if tuple(a.shape[: len(batch_shape)]) != batch_shape:
                    raise ValueError(
                        f"{self.name}: state.{name} has shape {tuple(a.shape)}, not led by the "
                        f"ensemble shape {batch_shape}"
                    )
            if isinstance(value, tuple):
                if len(value) != len(leaves):
                    raise ValueError(
                        f"{self.name}: state.{name} has {len(value)} leaves, the parameters "
                        f"{len(leaves)}"
                    )
                for a, p in zip(value, leaves, strict=True):
                    per_leaf = tuple(a.shape) in (tuple(p.shape), batch_shape)
                    if not per_leaf or a.dtype != p.dtype:
                        raise ValueError(
                            f"{self.name}: state.{name} holds {a.dtype}{tuple(a.shape)} for a "
                            f"parameter {p.dtype}{tuple(p.shape)}"
                        )


def check_per_run_arrays(
    owner: str, values: Mapping[str, Any], like: Any, batch_shape: tuple[int, ...]
) -> None:
    """Per-run hyperparameter arrays among ``values``: the parameters' namespace and device, and
    a scalar or the ensemble's batch shape (``owner`` names the optimizer or transform)."""
    for name, value in values.items():
        if not is_array(value):
            continue
        try:
            array_namespace(value, like)
        except TypeError as exc:
            raise TypeError(
                f"{owner}: the per-run array {name} must belong to the parameters' "
                f"namespace: {exc}"
            ) from exc
        if value.ndim and tuple(value.shape) != batch_shape:
            raise ValueError(
                f"{owner}: the per-run array {name} has shape {tuple(value.shape)}; "
                f"it must be a scalar or have the ensemble's batch shape {batch_shape}"
            )
        if device(value) != device(like):
            raise ValueError(
                f"{owner}: the per-run array {name} is on {device(value)}, the "
                f"parameters on {device(like)}"
            )


def increment_count(xp: Any, count: Any, tensor: bool | None = None) -> Any:
    """``count + 1``, saturating at :data:`COUNT_MAX` (``tensor``: ``count`` is a torch tensor)."""
    if tensor is None:
        tensor = type(count).__module__.startswith("torch")
    if tensor:
        # A Python scalar in array-api-compat's torch minimum breaks torch.compile's graph.
        return xp.where(count < COUNT_MAX, count + 1, count)
    return xp.minimum(count, COUNT_MAX - 1) + 1


def _has_array_type(x: Any) -> bool:
    """An array, or a NumPy scalar (what NumPy returns for 0-d results)."""
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _short(value: Any) -> str:
    if is_array(value):
        return f"<per-run array {tuple(value.shape)}>"
    return repr(value)


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
    sweep : mapping
        Hyperparameters that accept per-run arrays, each with a few values for the generic
        "K values in one ensemble == K separate runs" test.
    long_run : mapping
        Overrides of ``test_hyperparameters`` for the long (200-step) comparisons across
        backends and compilers: settings whose trajectory stays reproducible to rounding (a
        chaotic setting amplifies the last bit of a sum until runs differ at O(1)).
    """

    name: str
    factory: Callable[..., Optimizer]
    test_hyperparameters: Mapping[str, Any]
    family: str
    stochastic: bool = False
    smooth: bool = True
    sweep: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    long_run: Mapping[str, Any] = field(default_factory=dict)


REGISTRY: dict[str, RegistryEntry] = {}


def register(
    name: str,
    factory: Callable[..., Optimizer],
    *,
    test_hyperparameters: Mapping[str, Any],
    family: str,
    stochastic: bool = False,
    smooth: bool = True,
    sweep: Mapping[str, tuple[float, ...]] | None = None,
    long_run: Mapping[str, Any] | None = None,
) -> None:
    """Add an optimizer to :data:`REGISTRY` (the generic tests then cover it)."""
    if name in REGISTRY and REGISTRY[name].factory is not factory:
        raise ValueError(f"an optimizer named {name!r} is registered already")
    REGISTRY[name] = RegistryEntry(
        name,
        factory,
        dict(test_hyperparameters),
        family,
        stochastic,
        smooth,
        MappingProxyType(dict(sweep or {})),
        MappingProxyType(dict(long_run or {})),
    )


def registered_names() -> list[str]:
    """Names of every registered optimizer, sorted."""
    return sorted(REGISTRY)


def get_optimizer(name: str, **hyperparameters: Any) -> Optimizer:
    """Build a registered optimizer by name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; registered: {registered_names()}")
    return REGISTRY[name].factory(**hyperparameters)
