r"""Wide state: an optimizer whose state (and arithmetic) is kept wider than its parameters.

The precision rule (``docs/precision.md``) keeps the state arrays shaped like the parameters in
the parameters' dtype. Some algorithms cannot live with that in float16 or bfloat16: BBI's and
ECDSep's momentum and energy must stay on the energy shell, and with 11 bits of mantissa the
shell's error accumulates (on the 10-D quadratic, 1500 steps, float16: BBI's loss falls 10x with
float16 state, 5e13x with float32 state; ECDSep's 130x against 3e4x;
``docs/precision.md``). :func:`widened` wraps an optimizer's two rules so that, when the state
dtype is wider than the parameters':

* ``init`` sees the parameters cast to the state dtype: every state array is of that dtype;
* ``update`` sees the parameters, gradients and loss cast to it, and the new parameters are
  rounded once to the parameters' dtype at the end (as optax's ``mu_dtype`` keeps a moment in
  a wider dtype, here for the whole state).

The state dtype is read from the hyperparameter ``state_dtype``: ``None`` (the default of the
optimizers that use this) means the compute dtype ``result_type(param dtype, float32)``,
``"params"`` the parameters' own dtype, ``"float32"`` / ``"float64"`` that dtype (never
narrower than the parameters).

**Compensated parameter update** (``widened(..., compensated=True)``; Gravity). Rounding the
new parameters once per step still loses every step smaller than half an ulp of the parameter:
a bfloat16 parameter near 1 cannot move by less than :math:`2^{-9} \approx 0.002`, and
:math:`p - l v` rounds back to :math:`p`. The compensated form keeps, per leaf, the rounding
residual of the last update in the state dtype (field ``residual``) and adds it back before the
next one (Kahan's compensated summation, as in the bfloat16 optimizers of optimi and torchao):

.. math::

    \tilde p = \mathrm{wide}(p) + r, \qquad \tilde p' = \mathrm{rule}(\tilde p), \qquad
    p' = \mathrm{round}(\tilde p'), \qquad r' = \tilde p' - \mathrm{wide}(p').

With a float32 state and half-precision parameters, :math:`\tilde p' - \mathrm{wide}(p')` is
exact (the low bits that the rounding dropped) and so is :math:`\mathrm{wide}(p') + r'`:
the pair :math:`(p, r)` holds the float32 parameters of a float32 run exactly, and the rule
sees the same numbers it would see there (the gradients are still the user's, evaluated at
:math:`p`). Where the state dtype is the parameters' dtype (float32 and float64 parameters by
default) nothing is rounded and the rule runs unwrapped, bit for bit; ``residual`` then holds
one zero per leaf and run (an array of the ensemble's batch shape), so the state keeps one
structure without a parameter-sized array.

A compiler must round where the eager step rounds: ``jax.jit`` does; torch's inductor keeps a
value cast to a half dtype inside a fused kernel in float32 unless ``emulate_precision_casts``
is on, which :func:`physopt_ref.compile` passes to each of its ``torch.compile`` calls
(:data:`physopt_ref.core.compile.TORCH_PRECISION`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from physopt_ref.core.context import InitRule, StepContext, UpdateRule
from physopt_ref.core.numerics import compute_dtype
from physopt_ref.core.validate import check_choice

__all__ = ["STATE_DTYPES", "check_state_dtype", "state_dtype_of", "widened"]

#: The accepted values of ``state_dtype`` besides ``None``.
STATE_DTYPES = ("params", "float32", "float64")


def check_state_dtype(value: Any) -> str | None:
    """Validate a ``state_dtype`` hyperparameter (``None`` or one of :data:`STATE_DTYPES`)."""
    return None if value is None else check_choice("state_dtype", value, STATE_DTYPES)


def state_dtype_of(xp: Any, choice: str | None, dtype: Any) -> Any:
    """The state dtype for parameters of ``dtype``: never narrower than ``dtype``."""
    if choice == "params":
        return dtype
    if choice is None:
        return compute_dtype(xp, dtype)
    wide = getattr(xp, choice)
    return wide if xp.finfo(wide).bits > xp.finfo(dtype).bits else dtype


def _wide_context(ctx: StepContext, like: Any) -> StepContext:
    wide = StepContext(ctx.xp, ctx.count, like, ctx.treedef)
    wide.leaf_ids, wide.tree_shapes = ctx.leaf_ids, ctx.tree_shapes
    return wide


class _WideInit:
    """An ``init`` rule that builds the state from the parameters cast to the state dtype
    (``compensated``: with a ``residual`` field, zeros)."""

    __slots__ = ("compensated", "rule")

    def __init__(self, rule: InitRule, compensated: bool) -> None:
        self.rule = rule
        self.compensated = compensated

    def __call__(self, hp: Mapping[str, Any], ctx: StepContext, leaves: list[Any]) -> dict:
        xp = ctx.xp
        wdt = state_dtype_of(xp, hp["state_dtype"], ctx.dtype)
        if wdt == ctx.dtype:
            fields = self.rule(hp, ctx, leaves)
            if self.compensated:  # nothing is rounded: one zero per leaf and run
                fields["residual"] = tuple(ctx.full(0.0, p.dtype) for p in leaves)
            return fields
        wide = [xp.astype(p, wdt) for p in leaves]
        fields = self.rule(hp, _wide_context(ctx, wide[0]), wide)
        if self.compensated:
            fields["residual"] = tuple(xp.zeros_like(p) for p in wide)
        return fields


class _WideUpdate:
    """An ``update`` rule run on the parameters, gradients and loss cast to the state dtype
    (``compensated``: the parameters plus the residual of the last rounding)."""

    __slots__ = ("compensated", "rule")

    def __init__(self, rule: UpdateRule, compensated: bool) -> None:
        self.rule = rule
        self.compensated = compensated

    def __call__(
        self, hp: Mapping[str, Any], ctx: StepContext, params: list[Any], grads: list[Any],
        state: Any, loss: Any,
    ) -> tuple[list[Any], dict[str, Any]]:
        xp = ctx.xp
        choice = hp["state_dtype"]
        # The default (None) is the compute dtype, which the context already holds.
        wdt = ctx.compute_dtype if choice is None else state_dtype_of(xp, choice, ctx.dtype)
        if wdt == ctx.dtype:
            new, fields = self.rule(hp, ctx, params, grads, state, loss)
            if self.compensated:
                fields["residual"] = state.residual
            return new, fields
        wide = [xp.astype(p, wdt) for p in params]
        if self.compensated:
            wide = [p + r for p, r in zip(wide, state.residual, strict=True)]
        wgrads = [xp.astype(g, wdt) for g in grads]
        wloss = loss if loss is None or not hasattr(loss, "dtype") else xp.astype(loss, wdt)
        new, fields = self.rule(hp, _wide_context(ctx, wide[0]), wide, wgrads, state, wloss)
        rounded = [xp.astype(p, q.dtype) for p, q in zip(new, params, strict=True)]
        if self.compensated:
            fields["residual"] = tuple(
                p - xp.astype(q, wdt) for p, q in zip(new, rounded, strict=True)
            )
        return rounded, fields


def widened(
    init: InitRule, update: UpdateRule, *, compensated: bool = False
) -> tuple[InitRule, UpdateRule]:
    """``init`` and ``update`` rules that keep the state in ``hp["state_dtype"]`` (picklable
    when the wrapped rules are module-level functions).

    ``compensated=True`` adds the state field ``residual`` (one array per leaf) and the
    compensated parameter update of the module docstring: the state type must have that field.
    """
    return _WideInit(init, compensated), _WideUpdate(update, compensated)
