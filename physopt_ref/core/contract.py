"""The optimizer contract (v2), the step scaffold every optimizer is built on, and the registry.

An :class:`Optimizer` is a pair of pure functions::

    state = opt.init(params, batch_ndim=0)
    params, state = opt.step(params, grads, state, loss=None)

``params`` and ``grads`` are trees (:mod:`physopt_ref.core.tree`) of arrays of one Array API
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

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_torch_array

from physopt_ref.core.checks import (
    _CHECKS,
    _has_array_type,
    _short,
    check_float_leaves,
    check_per_run_arrays,
)
from physopt_ref.core.context import (
    COUNT_MAX,
    StepContext,
    as_per_run,
    increment_count,
    prepare_init,
)
from physopt_ref.core.donate import donated_update
from physopt_ref.core.precision import state_dtype_of
from physopt_ref.core.schedules import Schedule
from physopt_ref.core.tracing import (
    _torch_compiling,
    _torch_step_without_autograd,
    is_tracing,
    namespace_of_leaves,
)
from physopt_ref.core.tree import (
    batch_shape_of,
    tree_flatten,
    tree_unflatten,
)
from physopt_ref.core.validate import is_array

__all__ = [
    "InitRule",
    "Optimizer",
    "SmallRule",
    "UpdateRule",
]

# The optimizer

InitRule = Callable[[Mapping[str, Any], StepContext, list[Any]], dict[str, Any]]
UpdateRule = Callable[..., tuple[list[Any], dict[str, Any]]]
#: ``small(hp, param, grad, state, loss) -> (new_param, fields) | None``: see :class:`Optimizer`.
SmallRule = Callable[..., tuple[Any, tuple[Any, ...]] | None]


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
    :meth:`StepContext.tree_event_shapes` (:mod:`physopt_ref.core.donate`).

    A family may add a *small-problem rule*, ``small(hp, param, grad, state, loss)``, for a
    one-array NumPy step with constant hyperparameters (Python numbers: no per-run array, no
    schedule; decided once here), the debug checks off and no ``donate``: it returns the new
    parameter array and the state's fields after ``count`` in order, with the **same bits
    and types** as ``update`` (``tests/test_small_path.py`` compares both paths step by
    step), or ``None`` where it does not apply (then ``update`` runs). At dim 10 a step is
    mostly fixed cost (the context, the lists of leaves, 0-d per-run arrays;
    ``benchmarks/bench_ecd.py``, section ``small``). NumPy data is in host memory, so such a
    rule may branch on its per-run values in Python, as
    :func:`~physopt_ref.core.control.if_any` does there (never traced: NumPy only).
    """

    __slots__ = (
        "_fields",
        "_hp",
        "_init_rule",
        "_rule_hp",
        "_small",
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
        state_type: type[Any],
        needs_loss: bool = False,
        derived: Mapping[str, Any] | None = None,
        elementwise: bool = False,
        squares_gradient: bool = False,
        small: SmallRule | None = None,
    ) -> None:
        self.name = name
        self._hp = dict(hyperparameters)
        # What the rules read: the hyperparameters plus values derived from them at build time.
        self._rule_hp = {**self._hp, **(derived or {})}
        self._init_rule = init
        self._update_rule = update
        self.state_type = state_type
        self._fields = state_type._fields[1:]  # after ``count``: what the rule returns
        self.needs_loss = needs_loss
        self.elementwise = bool(elementwise)
        # The rule forms |g|² unscaled (BBI, ECDSep): the debug checks refuse a gradient
        # whose squared norm overflows the dtype.
        self.squares_gradient = bool(squares_gradient)
        # The small-problem rule, only where every hyperparameter is a constant (no per-run
        # array, no schedule): see step().
        self._small = small if small is not None and _constant(self._hp.values()) else None

    def _state_dtype(self, xp: Any, dtype: Any) -> Any:
        """The dtype of the leaf-shaped state for parameters of ``dtype`` (``state_dtype``)."""
        if "state_dtype" not in self._hp:
            return dtype
        return state_dtype_of(xp, self._hp["state_dtype"], dtype)

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
        :mod:`physopt_ref.core.donate`.
        """
        # The cheap checks (metadata only, free under a tracer): structure, shapes, dtypes.
        kind = type(params)
        if kind is _NDARRAY and type(grads) is kind and not donate:
            # A NumPy array: the one-array fast path below with its own namespace, its
            # gradient check inlined and NumPy's count increment (a small problem's step is
            # mostly this scaffold: benchmarks/bench_ecd.py, section small).
            if params.shape != grads.shape or params.dtype is not grads.dtype:
                _check_gradient_leaf(params, grads)  # raises unless the dtypes are equal
            if type(state) is not self.state_type or _CHECKS[0]:
                return self._step(params, grads, state, loss, donate)
            count = state.count
            small = self._small
            if small is not None:
                out = small(self._rule_hp, params, grads, state, loss)
                if out is not None:  # the new parameters and the state's fields after count
                    return out[0], tuple.__new__(
                        self.state_type, (count + (count < COUNT_MAX), *out[1])
                    )
            ctx = StepContext(_NUMPY_XP, count, params, _ONE_LEAF)
            if self.needs_loss:
                loss = as_per_run(_NUMPY_XP, loss, params, ctx.batch_shape, "loss")
            new_leaves, fields = self._update_rule(
                self._rule_hp, ctx, [params], [grads], state, loss
            )
            if "count" in fields:
                count = fields.pop("count")
            else:  # increment_count's NumPy form, inlined: scalar arithmetic on the int32 count
                count = count + (count < COUNT_MAX)
            return new_leaves[0], self._new_state(count, fields)
        return self._step(params, grads, state, loss, donate)

    def _step(self, params: Any, grads: Any, state: Any, loss: Any, donate: bool) -> Any:
        """:meth:`step` on any tree and namespace."""
        kind = type(params)
        if kind is type(grads) and not _torch_compiling() and kind in _ONE_ARRAY:
            # The fast path of a one-array tree (a NumPy array, say): the same checks without
            # the tree walk; the namespace comes from the per-type cache (never read under
            # torch.compile: a guard on the cache's contents would recompile the step).
            p_leaves, g_leaves, treedef = [params], [grads], _ONE_LEAF
            xp = _ONE_ARRAY[kind]
            _check_gradient_leaf(params, grads)
        else:
            p_leaves, treedef = tree_flatten(params)
            g_leaves, g_def = tree_flatten(grads)
            if g_def is not treedef and g_def != treedef:
                raise ValueError(
                    f"grads must have the structure of params: {g_def} vs {treedef}"
                )
            # First: mixed libraries are refused here.
            xp = namespace_of_leaves(p_leaves, g_leaves)
            for p, g in zip(p_leaves, g_leaves, strict=True):
                _check_gradient_leaf(p, g)
            if treedef is _ONE_LEAF and kind is type(grads) and not _torch_compiling():
                _ONE_ARRAY[kind] = xp  # this array type takes the fast path from now on
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
        state = self._new_state(count, fields)
        if treedef is _ONE_LEAF:
            return new_leaves[0], state
        return tree_unflatten(treedef, new_leaves), state

    def _new_state(self, count: Any, fields: dict[str, Any]) -> Any:
        """The state NamedTuple from the count and the rule's fields (no keyword parsing)."""
        # No comprehension for the common one field or none (0.2 us of a dim-10 step), and no
        # operator.itemgetter for more (torch.compile cannot trace it).
        names = self._fields
        if len(names) > 1:
            return tuple.__new__(self.state_type, (count, *[fields[k] for k in names]))
        return tuple.__new__(self.state_type, (count, fields[names[0]]) if names else (count,))

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
            finite = bool(np.all(np.isfinite(np.asarray(loss, dtype=np.float64))))
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
        r"""Refuse a gradient whose squared norm :math:`|g|^2` overflows the state dtype.

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
        limit = float(xp.finfo(self._state_dtype(xp, grads[0].dtype)).max)
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
                    if not per_leaf or a.dtype != self._state_dtype(xp, p.dtype):
                        raise ValueError(
                            f"{self.name}: state.{name} holds {a.dtype}{tuple(a.shape)} for a "
                            f"parameter {p.dtype}{tuple(p.shape)}"
                        )


#: Array types seen as a one-array tree, with their namespace: :meth:`Optimizer.step`'s fast
#: path (no tree walk, no namespace lookup). Filled by the first step on each type.
_ONE_ARRAY: dict[type, Any] = {}

_NDARRAY = np.ndarray

#: The namespace of NumPy arrays (array-api-compat's).
_NUMPY_XP = array_namespace(np.zeros(1))

#: The structure of a one-array tree.
_ONE_LEAF = tree_flatten(np.zeros(1))[1]


def _constant(values: Any) -> bool:
    """No value is an array or a schedule (what a small-problem rule may assume)."""
    return not any(is_array(v) or isinstance(v, Schedule) for v in values)


def _check_gradient_leaf(p: Any, g: Any) -> None:
    """A gradient leaf must have its parameter's shape and dtype."""
    if p.shape != g.shape:
        raise ValueError(
            f"a gradient of shape {tuple(g.shape)} for a parameter of shape {tuple(p.shape)}"
        )
    if p.dtype is not g.dtype and p.dtype != g.dtype:
        raise TypeError(f"a gradient of dtype {g.dtype} for a parameter of dtype {p.dtype}")
