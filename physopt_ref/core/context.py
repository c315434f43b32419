"""The step context: what an update rule sees besides its arrays, and the count.

:class:`StepContext` carries the namespace, the ensemble's batch shape, the step count
and the dtype/device of the parameters; :func:`prepare_init` validates a parameter tree
for ``init``; :func:`increment_count` advances the ``int32`` count, saturating at
:data:`COUNT_MAX`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from physopt_ref.core.checks import _has_array_type, check_float_leaves, checks_enabled
from physopt_ref.core.numerics import compute_dtype
from physopt_ref.core.schedules import Schedule
from physopt_ref.core.tracing import _torch_compiling, is_tracing
from physopt_ref.core.tree import (
    TreeDef,
    batch_shape_of,
    expand_to_leaf,
    tree_flatten,
)
from physopt_ref.core.validate import is_array

__all__ = [
    "COUNT_MAX",
    "StepContext",
    "as_per_run",
    "batch_ndim_of",
    "increment_count",
    "prepare_init",
]

#: The step count saturates here (``int32``): a run of more steps keeps ``count == COUNT_MAX``,
#: so schedules and random streams then see the same ``t`` on every further step.
COUNT_MAX = 2**31 - 1


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
        if type(like) is np.ndarray:  # the same array, without the wrappers' device checks
            arr = np.asarray(float(value), dtype=like.dtype)
        else:
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
        The first parameter leaf: its dtype and device are the parameters'.
    dtype : dtype
        The parameters' dtype (of ``like``).
    compute_dtype : dtype
        ``result_type(dtype, float32)`` (:func:`physopt_ref.core.numerics.compute_dtype`): the
        dtype of :attr:`t`, of per-run hyperparameters and of schedule values; :meth:`leaf`
        casts them to a leaf's dtype where they touch it.
    treedef : TreeDef or None
        The structure of the parameter tree (for per-leaf settings given as trees).
    leaf_ids : tuple of int or None
        Which leaves of the tree the rule's lists hold, when a donated step evaluates an
        element-wise rule on a subset of the leaves (:mod:`physopt_ref.core.donate`); ``None``: all
        of them, in order. Read it through :meth:`per_leaf`.
    tree_shapes : tuple of tuple or None
        The shapes of every leaf of the whole tree when the rule sees slices of them (a donated,
        chunked step); ``None``: the leaves' own shapes. Read it through
        :meth:`tree_event_shapes`.
    in_place : bool
        Whether the rule may write its new parameters, and its per-leaf state arrays shaped like
        them, into ``params`` and the state's arrays and return those: set by a donated step
        traced by ``torch.compile`` (:mod:`physopt_ref.core.donate`), where writing inside a
        ``torch.cond`` branch saves a copy of the branch's output (BBI). False elsewhere.
    """

    __slots__ = (
        "_realize",
        "_realized",
        "_t",
        "_tensor",
        "batch_ndim",
        "batch_shape",
        "compute_dtype",
        "count",
        "dtype",
        "in_place",
        "leaf_ids",
        "like",
        "tree_shapes",
        "treedef",
        "xp",
    )

    def __init__(self, xp: Any, count: Any, like: Any, treedef: TreeDef | None = None) -> None:
        self.xp = xp
        self.treedef = treedef
        # (id(value), dtype) -> (value, its materialised cast), filled by share().
        self._realized: dict[tuple[int, Any], tuple[Any, Any]] = {}
        self.count = count
        self.like = like
        self.dtype = dtype = like.dtype
        self._t = self.leaf_ids = self.tree_shapes = None
        self.in_place = False
        if type(like) is np.ndarray:
            # Every step builds a context: NumPy's compute dtype comes from a per-dtype cache
            # (finfo is the dearest part of a dim-10 step's scaffold, benchmarks/bench_ecd.py).
            self._tensor = self._realize = False
            cdtype = _NUMPY_COMPUTE_DTYPES.get(dtype)
            if cdtype is None:
                cdtype = _NUMPY_COMPUTE_DTYPES[dtype] = compute_dtype(xp, dtype)
            self.compute_dtype = cdtype
            self.batch_shape = shape = count.shape  # a tuple (count: an array or a scalar)
        else:
            self._tensor = tensor = type(like).__module__.startswith("torch")
            # Under torch.compile, per-run values are materialised before they meet a leaf
            # (leaf()).
            self._realize = tensor and _torch_compiling()
            self.compute_dtype = compute_dtype(xp, dtype)
            self.batch_shape = shape = tuple(count.shape)
        self.batch_ndim = len(shape)

    @property
    def device(self) -> Any:
        return device(self.like)

    @property
    def t(self) -> Any:
        """The count as a float array of the compute dtype (what schedules receive).

        Never in a half-precision parameters' dtype: float16 is infinite past 65504 and
        bfloat16 exact only up to 256.
        """
        if self._t is None:
            self._t = self.xp.astype(self.count, self.compute_dtype)
        return self._t

    def hp(self, value: Any) -> Any:
        """A hyperparameter's value at this step: a Python float, or a per-run array.

        Constants stay Python floats (no promotion, no kernel); per-run arrays are cast to the
        compute dtype; schedules are evaluated at :attr:`t` and their values cast to the
        compute dtype. :meth:`leaf` casts either to a leaf's dtype.
        """
        if type(value) is float or isinstance(value, float | int):
            return value
        if isinstance(value, Schedule):
            return self._schedule(value)
        xp, cdtype = self.xp, self.compute_dtype
        return value if value.dtype == cdtype else xp.astype(value, cdtype)

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
        if _has_array_type(out) and out.dtype != self.compute_dtype:
            out = xp.astype(xp.asarray(out), self.compute_dtype)
        if isinstance(out, int):
            out = float(out)
        if checks_enabled() and schedule.bounds is not None and not is_tracing(self.like):
            from physopt_ref.backends import to_numpy

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

        An array value is cast to the leaf's dtype (the precision rule: scalars formed in the
        compute dtype are rounded once, where they touch a leaf). A value passed to
        :meth:`share` first is cast and materialised once for all the leaves.
        """
        if type(value) is float or isinstance(value, float | int):
            return value
        hit = self._realized.get((id(value), leaf.dtype)) if self._realized else None
        if hit is not None:  # made once by share()
            value = hit[1]
        else:
            if hasattr(value, "dtype") and value.dtype != leaf.dtype:
                value = self.xp.astype(value, leaf.dtype)
            if self._realize:
                value = _materialise(self.xp, value)
        if self.batch_ndim == 0:
            return value
        return expand_to_leaf(self.xp, value, leaf, self.batch_ndim)

    def share(self, values: list[Any], leaves: list[Any]) -> None:
        """Cast and materialise each per-run array of ``values`` once per dtype of ``leaves``,
        for :meth:`leaf` to reuse (under ``torch.compile``; elsewhere nothing to do).

        Without it every :meth:`leaf` call makes a buffer and a loop of its own: 30 small
        allocations a call for Adam's 6-leaf MLP step. Call it in the rule's body, not inside a
        branch of :func:`physopt_ref.core.control.if_any` (``torch.cond`` refuses a branch that
        writes to the context).
        """
        if not self._realize:
            return
        xp = self.xp
        dtypes: list[Any] = []
        for leaf in leaves:
            if leaf.dtype not in dtypes:
                dtypes.append(leaf.dtype)
        for value in values:
            if not hasattr(value, "dtype"):
                continue
            for dtype in dtypes:
                if (id(value), dtype) not in self._realized:
                    cast = value if value.dtype == dtype else xp.astype(value, dtype)
                    # the value is kept with its buffer, so that its id is not reused
                    self._realized[(id(value), dtype)] = (value, _materialise(xp, cast))

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
        """A per-run array of the batch shape filled with ``value`` (a float or per-run array).

        Its dtype is ``dtype``, by default the parameters'.
        """
        xp = self.xp
        dtype = self.dtype if dtype is None else dtype
        if isinstance(value, float | int):
            if type(self.like) is np.ndarray:  # the same array, without the device lookup
                return np.full(self.batch_shape, value, dtype=dtype)
            return xp.full(self.batch_shape, value, dtype=dtype, device=self.device)
        return xp.broadcast_to(xp.astype(value, dtype), self.batch_shape)


#: NumPy dtype -> its compute dtype (:func:`physopt_ref.core.numerics.compute_dtype`), filled by
#: the first context of each dtype (never read for torch: under torch.compile a read of the dict
#: would guard on its contents).
_NUMPY_COMPUTE_DTYPES: dict[Any, Any] = {}


def _materialise(xp: Any, value: Any) -> Any:
    """``value`` itself, written so that inductor computes it into a buffer of its own.

    ``max(stack(v, v))`` is exact (the same bits, NaN included), and a reduction is the one kind
    of node that inductor always realises instead of inlining into its consumers.
    """
    if not hasattr(value, "dtype"):
        return value
    return xp.max(xp.stack((value, value)), axis=0)


def _host_schedule_values(schedule: Schedule, ctx: StepContext) -> Any:
    """Evaluate a :class:`~physopt_ref.core.schedules.HostSchedule` (documented non-traceable)."""
    import numpy as np

    from physopt_ref.backends import asarray_like, to_numpy

    if is_tracing(ctx.like):
        raise TypeError(
            f"{schedule!r} needs the step count on the host and cannot be traced "
            "(jax.jit / torch.compile); write the schedule with array operations instead"
        )
    counts = to_numpy(ctx.count)
    unique, inverse = np.unique(counts, return_inverse=True)
    values = np.asarray([float(schedule(int(c))) for c in unique], dtype=np.float64)
    if counts.ndim == 0:
        return float(values[0])
    return asarray_like(values[inverse].reshape(counts.shape), ctx.like)


# ---------------------------------------------------------------------------------------------
# The optimizer

InitRule = Callable[[Mapping[str, Any], StepContext, list[Any]], dict[str, Any]]
UpdateRule = Callable[..., tuple[list[Any], dict[str, Any]]]


def increment_count(xp: Any, count: Any, tensor: bool | None = None) -> Any:
    """``count + 1``, saturating at :data:`COUNT_MAX` (``tensor``: ``count`` is a torch tensor)."""
    kind = type(count)
    if kind is np.int32 or kind is np.ndarray:
        # NumPy: two operations of NumPy's scalar arithmetic (a step's count is an ``int32``
        # scalar after the first step), where minimum is a ufunc call; int32 + bool is int32.
        return count + (count < COUNT_MAX)
    if tensor is None:
        tensor = kind.__module__.startswith("torch")
    if tensor:
        # A Python scalar in array-api-compat's torch minimum breaks torch.compile's graph.
        return xp.where(count < COUNT_MAX, count + 1, count)
    return xp.minimum(count, COUNT_MAX - 1) + 1



