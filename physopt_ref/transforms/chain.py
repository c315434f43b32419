r"""Composition: gradient transforms in front of an optimizer's step, as one optimizer.

``chain(t1, t2, ..., optimizer)`` is an :class:`~physopt_ref.Optimizer` whose step runs the
transforms of :mod:`physopt_ref.transforms.gradient` in order on ``(params, grads, loss)`` and then
the
optimizer's own update rule on what they hand on; the scaffold of :mod:`physopt_ref.core.contract`
(trees, the count, the checks) is the same, so a chained optimizer is pure, keeps dtypes,
treats ensembles per run, compiles (``jax.jit``, ``torch.compile``) and pickles like any other.

Its state is flat: the optimizer's own state type when no transform keeps state, otherwise a
``NamedTuple`` with the optimizer's fields followed by the transforms' fields (e.g.
``skipped`` of :func:`~physopt_ref.transforms.non_finite_guard`), so that every consumer of
states (the run loop's records, checkpoints, the torch adapter) reads it as it reads any state.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from physopt_ref.core.checks import check_per_run_arrays, checks_enabled
from physopt_ref.core.context import StepContext, as_per_run, increment_count
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.tracing import is_tracing
from physopt_ref.core.tree import select_state, select_tree
from physopt_ref.transforms.gradient import GradientTransform, coupled_weight_decay

__all__ = ["Chain", "chain", "optimizer_parts", "weight_decay_keyword", "with_transforms"]


# ---------------------------------------------------------------------------------------------
# Chained state types


_STATE_TYPES: dict[tuple[type, tuple[str, ...]], type[Any]] = {}


def chained_state_type(core: type[Any], extra: tuple[str, ...]) -> type[Any]:
    """The state type of ``core``'s fields followed by ``extra`` ones (one class per pair)."""
    key = (core, extra)
    cls: Any = _STATE_TYPES.get(key)
    if cls is None:
        # A plain callable: mypy would model a namedtuple() call as a class with a literal name.
        make: Callable[..., Any] = collections.namedtuple
        cls = make(
            f"Chained{core.__name__}", (*core._fields, *extra), module=__name__
        )
        cls.__doc__ = (
            f"State of a chained optimizer: the fields of {core.__name__}, then the transforms' "
            f"fields {extra}."
        )
        cls.__reduce__ = _reduce_state  # picklable although the class is made here
        cls.core_type = core
        cls.extra_fields = extra
        _STATE_TYPES[key] = cls
    return cls


def _reduce_state(state: Any) -> tuple[Any, ...]:
    cls = type(state)
    return (_rebuild_state, (cls.core_type, cls.extra_fields, tuple(state)))


def _rebuild_state(core: type, extra: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    return chained_state_type(core, extra)(*values)


# ---------------------------------------------------------------------------------------------
# The rules


def _chain_init(hp: Mapping[str, Any], ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    core = hp["core"]
    fields = core._init_rule(core._rule_hp, ctx, leaves)
    for transform in hp["transforms"]:
        fields.update(transform.init(ctx, leaves))
    return fields


def _chain_update(
    hp: Mapping[str, Any],
    ctx: StepContext,
    params: list[Any],
    grads: list[Any],
    state: Any,
    loss: Any,
) -> tuple[list[Any], dict[str, Any]]:
    core = hp["core"]
    xp, bn = ctx.xp, ctx.batch_ndim
    if not hp["uses_loss"]:
        loss = None
    elif loss is not None and not core.needs_loss:
        loss = as_per_run(xp, loss, params[0], ctx.batch_shape, "loss")
    p, g, f = params, grads, loss
    kept: dict[str, Any] = {}  # the guards' own fields: never rolled back
    fields: dict[str, Any] = {}
    skip = None
    for transform in hp["transforms"]:
        p, g, f, new_fields, transform_skip = transform.apply(ctx, p, g, f, state)
        if transform_skip is None:
            fields.update(new_fields)
        else:
            kept.update(new_fields)
            skip = transform_skip if skip is None else skip | transform_skip
    core_type = core.state_type
    core_state = state if type(state) is core_type else core_type(
        *(getattr(state, name) for name in core_type._fields)
    )
    if core.squares_gradient and checks_enabled() and not is_tracing(g[0]):
        core._check_gradient_square(ctx.xp, g)  # the gradient the core sees, after the transforms
    new_params, core_fields = core._update_rule(core._rule_hp, ctx, p, g, core_state, f)
    fields.update(core_fields)
    if skip is not None:
        keep = ~skip
        new_params = select_tree(xp, keep, new_params, params, bn)
        old = {name: getattr(state, name) for name in fields}
        fields = select_state(xp, keep, fields, old, bn)
        fields["count"] = xp.where(keep, increment_count(xp, state.count), state.count)
    fields.update(kept)
    return new_params, fields


# ---------------------------------------------------------------------------------------------
# The optimizers


def optimizer_parts(optimizer: Optimizer) -> tuple[Optimizer, tuple[GradientTransform, ...]]:
    """``(core, transforms)``: the optimizer whose rule makes the step and every transform
    in front of it, outermost first (``(optimizer, ())`` for a plain optimizer)."""
    if isinstance(optimizer, _Transformed):
        return optimizer._rule_hp["core"], optimizer._rule_hp["transforms"]
    return optimizer, ()


class _Transformed(Optimizer):
    """An optimizer rule with transforms in front: the rules and checks of every chain."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        hyperparameters: Mapping[str, Any],
        transforms: Sequence[GradientTransform],
        optimizer: Optimizer,
    ) -> None:
        for t in transforms:
            if not isinstance(t, GradientTransform):
                raise TypeError(
                    "chain takes gradient transforms (physopt_ref.transforms) and then one "
                    f"optimizer; got {type(t).__name__} before the optimizer"
                )
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"the last argument of chain must be an Optimizer, got {type(optimizer).__name__}"
            )
        core, inner = optimizer_parts(optimizer)
        transforms = (*transforms, *inner)
        extra: list[str] = []
        for t in transforms:
            for field in t.fields:
                if field in extra or field in core.state_type._fields:
                    raise ValueError(
                        f"two parts of the chain keep a state field named {field!r} (a chain "
                        f"holds at most one {t.name})"
                    )
                extra.append(field)
        state_type = chained_state_type(core.state_type, tuple(extra)) if extra else (
            core.state_type
        )
        uses_loss = core.needs_loss or any(t.uses_loss for t in transforms)
        super().__init__(
            name,
            hyperparameters,
            init=_chain_init,
            update=_chain_update,
            state_type=state_type,
            needs_loss=core.needs_loss,
            derived={"core": core, "transforms": transforms, "uses_loss": uses_loss},
            # chunked by a donated step when nothing in it reduces over the parameters
            elementwise=core.elementwise and not uses_loss
            and all(t.elementwise for t in transforms),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Built again from its parts (the state class made here is not importable by name).
        hp = self._rule_hp
        return (_Transformed, (self.name, self._hp, hp["transforms"], hp["core"]))

    def _check_finite_inputs(self, xp: Any, grads: list[Any], loss: Any) -> None:
        # A chain with a non-finite guard handles NaN / inf itself (it skips those runs).
        if not any(t.name == "non_finite_guard" for t in self._rule_hp["transforms"]):
            super()._check_finite_inputs(xp, grads, loss)

    def _check_per_run_arrays(self, like: Any, batch_shape: tuple[int, ...]) -> None:
        core = self._rule_hp["core"]
        core._check_per_run_arrays(like, batch_shape)
        for t in self._rule_hp["transforms"]:
            check_per_run_arrays(repr(t), t.per_run_values(), like, batch_shape)


def with_transforms(
    optimizer: Optimizer,
    transforms: Sequence[GradientTransform],
    hyperparameters: Mapping[str, Any],
) -> Optimizer:
    """``optimizer`` with built-in ``transforms`` in front, presented as one optimizer whose
    hyperparameters are ``hyperparameters`` (a family factory's keyword alias, such as
    ``coolmomentum(weight_decay=...)``, which builds the transform and records the keyword).
    Without transforms, ``optimizer`` itself."""
    if not transforms:
        return optimizer
    return _Transformed(optimizer.name, hyperparameters, transforms, optimizer)


def weight_decay_keyword(weight_decay: Any) -> tuple[Any, tuple[GradientTransform, ...]]:
    """A family factory's ``weight_decay=`` keyword: ``(value, transforms)``, the validated
    value to record among its hyperparameters and the
    :func:`~physopt_ref.transforms.coupled_weight_decay` to put in front of its step with
    :func:`with_transforms` (none for a constant 0)."""
    decay = coupled_weight_decay(weight_decay)
    wd = decay.hyperparameters["weight_decay"]
    return wd, (() if isinstance(wd, float) and wd == 0.0 else (decay,))


class Chain(_Transformed):
    """Gradient transforms in front of an optimizer, as one optimizer (see :func:`chain`).

    Attributes
    ----------
    transforms : tuple of GradientTransform
        The transforms given to :func:`chain`, outermost first.
    optimizer : Optimizer
        The optimizer they are in front of.
    name, hyperparameters
        Those of :attr:`optimizer`.
    """

    __slots__ = ("optimizer", "transforms")
    transforms: tuple[GradientTransform, ...]
    optimizer: Optimizer

    def __init__(self, transforms: Sequence[GradientTransform], optimizer: Optimizer) -> None:
        if isinstance(optimizer, Chain):  # chain(a, chain(b, opt)) is chain(a, b, opt)
            transforms = (*transforms, *optimizer.transforms)
            optimizer = optimizer.optimizer
        super().__init__(optimizer.name, optimizer.hyperparameters, transforms, optimizer)
        self.transforms = tuple(transforms)
        self.optimizer = optimizer

    def __reduce__(self) -> tuple[Any, ...]:
        return (Chain, (self.transforms, self.optimizer))

    def __repr__(self) -> str:
        return f"chain({', '.join(repr(t) for t in (*self.transforms, self.optimizer))})"


def chain(*parts: Any) -> Chain:
    r"""Gradient transforms in front of any optimizer's step: ``chain(t1, ..., tn, optimizer)``.

    Each step runs ``t1`` to ``tn`` in order on the parameters, gradients and loss, then the
    optimizer's step on what ``tn`` hands on:

    .. math::

        (\theta, g, F) \xrightarrow{t_1} \cdots \xrightarrow{t_n} (\theta', g', F')
        \xrightarrow{\text{optimizer}} \theta_\text{new}.

    The result is an :class:`~physopt_ref.Optimizer` (``init``, ``step``; pure, per run,
    compilable, picklable) with the optimizer's name and hyperparameters. Its state is the
    optimizer's state type, or, when a transform keeps state, a flat ``NamedTuple`` of the
    optimizer's fields followed by the transforms' (:func:`~physopt_ref.transforms.gradient.
    non_finite_guard` adds ``skipped``). An optimizer's own keyword transforms (``coolmomentum(
    weight_decay=...)``) run after the chain's.

    Example: clip, then decay the weights but not the biases, then heavy ball::

        opt = po.chain(po.non_finite_guard(), po.clip_by_global_norm(1.0),
                       po.masked(po.coupled_weight_decay(1e-4), {"w": True, "b": False}),
                       po.heavy_ball(lr=0.1, momentum=0.9))
    """
    if not parts:
        raise TypeError("chain needs an optimizer as its last argument")
    *transforms, optimizer = parts
    return Chain(transforms, optimizer)
