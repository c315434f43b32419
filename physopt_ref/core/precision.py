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
    """An ``init`` rule that builds the state from the parameters cast to the state dtype."""

    __slots__ = ("rule",)

    def __init__(self, rule: InitRule) -> None:
        self.rule = rule

    def __call__(self, hp: Mapping[str, Any], ctx: StepContext, leaves: list[Any]) -> dict:
        xp = ctx.xp
        wdt = state_dtype_of(xp, hp["state_dtype"], ctx.dtype)
        if wdt == ctx.dtype:
            return self.rule(hp, ctx, leaves)
        wide = [xp.astype(p, wdt) for p in leaves]
        return self.rule(hp, _wide_context(ctx, wide[0]), wide)


class _WideUpdate:
    """An ``update`` rule run on the parameters, gradients and loss cast to the state dtype."""

    __slots__ = ("rule",)

    def __init__(self, rule: UpdateRule) -> None:
        self.rule = rule

    def __call__(
        self, hp: Mapping[str, Any], ctx: StepContext, params: list[Any], grads: list[Any],
        state: Any, loss: Any,
    ) -> tuple[list[Any], dict[str, Any]]:
        xp = ctx.xp
        choice = hp["state_dtype"]
        # The default (None) is the compute dtype, which the context already holds.
        wdt = ctx.compute_dtype if choice is None else state_dtype_of(xp, choice, ctx.dtype)
        if wdt == ctx.dtype:
            return self.rule(hp, ctx, params, grads, state, loss)
        wide = [xp.astype(p, wdt) for p in params]
        wgrads = [xp.astype(g, wdt) for g in grads]
        wloss = loss if loss is None or not hasattr(loss, "dtype") else xp.astype(loss, wdt)
        new, fields = self.rule(hp, _wide_context(ctx, wide[0]), wide, wgrads, state, wloss)
        return [xp.astype(p, q.dtype) for p, q in zip(new, params, strict=True)], fields


def widened(init: InitRule, update: UpdateRule) -> tuple[InitRule, UpdateRule]:
    """``init`` and ``update`` rules that keep the state in ``hp["state_dtype"]`` (picklable
    when the wrapped rules are module-level functions)."""
    return _WideInit(init), _WideUpdate(update)
