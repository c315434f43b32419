r"""Gradient transforms: what runs in front of any optimizer's step (clipping, weight decay, masks,
a non-finite guard), composed with :func:`physopt_ref.chain`.

A transform sees the parameters :math:`\theta`, the gradients :math:`g` and the loss :math:`F`
of the step (per run of an ensemble) and hands on new ones; the optimizer's own step then sees
what the last transform gave. Transforms are built once (their hyperparameters validated like an
optimizer's: Python floats, per-run arrays of the ensemble's batch shape, or schedules of the
step count) and are picklable. Every reduction is per run, so an ensemble of K runs equals K
separate runs, and nothing reads array data on the host.

=========================================  ==================================================
:func:`clip_by_global_norm` (:math:`c`)    :math:`g \leftarrow g\,\min(1, c/\lVert g\rVert)`,
                                           the norm over the whole tree, per run
:func:`clip_by_value` (:math:`c`)          :math:`g_i \leftarrow \min(c, \max(-c, g_i))` per
                                           element
:func:`coupled_weight_decay` (:math:`\lambda`)  :math:`F \leftarrow F + \tfrac\lambda2\lVert\theta
                                           \rVert^2,\ g \leftarrow g + \lambda\theta` (L2)
:func:`decoupled_weight_decay` (:math:`r`) :math:`\theta \leftarrow (1 - r)\,\theta` before the
                                           step
:func:`masked` (transform, mask)           the transform on the selected leaves only
:func:`non_finite_guard`                   a run whose :math:`g` or :math:`F` is NaN or
                                           :math:`\pm\infty` skips the step, and is counted
=========================================  ==================================================

Coupled L2 changes the loss and the gradient together, so the energy-conserving optimizers
(:func:`~physopt_ref.bbi`, :func:`~physopt_ref.ecdsep`), whose step reads both, move on the
consistent potential :math:`F + \tfrac\lambda2\lVert\theta\rVert^2`. Decoupled weight decay
(Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, Algorithm 2 line 12:
:math:`\theta_t = \theta_{t-1} - \eta_t\lambda\theta_{t-1} - \dots`) shrinks the parameters and
leaves the loss alone; for AdamW's convention pass ``rate = lr · λ`` (a schedule when the
learning rate is one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from physopt_ref.core.checks import _short
from physopt_ref.core.context import StepContext, increment_count
from physopt_ref.core.control import uniform_value
from physopt_ref.core.numerics import tree_norm
from physopt_ref.core.schedules import check_real_or_schedule
from physopt_ref.core.tree import (
    TreeDef,
    all_finite,
    expand_to_leaf,
    tree_flatten,
    tree_sq_norm,
    tree_unflatten,
)
from physopt_ref.core.validate import is_array

__all__ = [
    "TRANSFORMS",
    "GradientTransform",
    "clip_by_global_norm",
    "clip_by_value",
    "coupled_weight_decay",
    "decoupled_weight_decay",
    "masked",
    "non_finite_guard",
]

#: What :meth:`GradientTransform.apply` returns: ``(params, grads, loss, fields, skip)``, with
#: ``skip`` a per-run boolean array (runs whose step is to be skipped) or None.
Applied = tuple[list[Any], list[Any], Any, dict[str, Any], Any]


class GradientTransform:
    """A transform of ``(params, grads, loss)`` in front of an optimizer's step.

    Subclasses implement :meth:`apply` (and :meth:`init` when they keep state). A transform's
    state is a few arrays that the chained optimizer's state holds as extra fields, named in
    :attr:`fields` (every name once per chain). A transform of your own is recorded in
    checkpoints by its name and hyperparameters: add its factory to :data:`TRANSFORMS` so that
    a checkpoint can build it again.

    Attributes
    ----------
    name : str
        The factory's name (``"clip_by_global_norm"``, ...), also its key in
        :data:`TRANSFORMS`.
    hyperparameters : mapping
        The validated settings, with which ``TRANSFORMS[name](**hyperparameters)`` builds the
        transform again.
    fields : tuple of str
        Names of its state fields (per-run arrays).
    uses_loss : bool
        Whether it reads the loss even when the optimizer does not need it.
    elementwise : bool
        Whether, when the loss is not read, each element of its outputs depends only on the same
        element of its inputs and on per-run values (no reduction over the parameters, nothing
        per leaf): a chain of such transforms in front of an element-wise rule is element-wise
        too, and a donated step evaluates it in chunks (:mod:`physopt_ref.core.donate`).
    """

    __slots__ = ("_hp", "name")
    fields: tuple[str, ...] = ()
    uses_loss = False
    elementwise = False

    def __init__(self, name: str, hyperparameters: Mapping[str, Any]) -> None:
        self.name = name
        self._hp = dict(hyperparameters)

    @property
    def hyperparameters(self) -> Mapping[str, Any]:
        return MappingProxyType(self._hp)

    def per_run_values(self) -> dict[str, Any]:
        """The hyperparameters that may be per-run arrays (checked against the ensemble)."""
        return {k: v for k, v in self._hp.items() if is_array(v)}

    def init(self, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
        """The transform's state fields for the parameter leaves (none by default)."""
        return {}

    def apply(
        self, ctx: StepContext, params: list[Any], grads: list[Any], loss: Any, state: Any
    ) -> Applied:
        """Transform one step's leaves; ``loss`` is a per-run array or None; ``state`` is the
        chained optimizer's state (the transform reads its own fields from it)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={_short(v)}" for k, v in self._hp.items())
        return f"{self.name}({hp})"


def _positive(name: str, value: Any, symbol: str) -> Any:
    return check_real_or_schedule(name, value, symbol=symbol, low=0.0, low_open=True)


def _is_zero(value: Any) -> bool:
    return isinstance(value, float) and value == 0.0


# ---------------------------------------------------------------------------------------------
# Clipping


class _ClipByGlobalNorm(GradientTransform):
    __slots__ = ()

    def apply(self, ctx, params, grads, loss, state) -> Applied:
        xp, bn = ctx.xp, ctx.batch_ndim
        c = ctx.hp(self._hp["max_norm"])
        # Scaled and in the compute dtype: |g|² overflows at |g| ~ 256 in float16, 1.8e19 in
        # float32, where clipping matters most.
        norm = tree_norm(xp, grads, bn)
        over = norm > c
        if uniform_value(xp, over) is False:
            return params, grads, loss, {}, None
        one = xp.asarray(1.0, dtype=norm.dtype, device=ctx.device)
        factor = xp.where(over, c / xp.where(over, norm, one), one)
        # g·factor in the compute dtype (a float16 factor c/|g| can be subnormal), then cast.
        clipped = []
        for g in grads:
            gc = g if g.dtype == norm.dtype else xp.astype(g, norm.dtype)
            out = gc * ctx.leaf(factor, gc)
            clipped.append(out if out.dtype == g.dtype else xp.astype(out, g.dtype))
        return params, clipped, loss, {}, None


def clip_by_global_norm(max_norm: Any) -> GradientTransform:
    r"""Clip the gradient of each run to the norm :math:`c` over the whole tree.

    .. math::

        g \leftarrow g\,\min\Big(1, \frac{c}{\lVert g\rVert}\Big), \qquad
        \lVert g\rVert^2 = \sum_{\text{leaves}} \sum_i g_i^2 \ \text{(per run)},

    as ``torch.nn.utils.clip_grad_norm_`` and ``optax.clip_by_global_norm`` do for one run.
    The norm is formed scaled, in the compute dtype (:func:`physopt_ref.core.numerics.tree_norm`),
    so a gradient with elements up to ``finfo.max`` is clipped to norm :math:`c`, where
    :math:`\sqrt{\sum g_i^2}` would overflow (and give a zero step) past
    :math:`\sqrt{\text{finfo.max}}` (256 in float16).

    Parameters
    ----------
    max_norm : float, per-run array or schedule
        :math:`c > 0`.
    """
    value = _positive("max_norm", max_norm, "c")
    return _ClipByGlobalNorm("clip_by_global_norm", {"max_norm": value})


class _ClipByValue(GradientTransform):
    __slots__ = ()
    elementwise = True

    def apply(self, ctx, params, grads, loss, state) -> Applied:
        xp = ctx.xp
        c = ctx.hp(self._hp["limit"])
        if isinstance(c, float):
            low, high = ctx.scalar(-c), ctx.scalar(c)
            return params, [xp.clip(g, low, high) for g in grads], loss, {}, None
        out = []
        for g in grads:
            cg = expand_to_leaf(xp, c, g, ctx.batch_ndim)
            out.append(xp.clip(g, -cg, cg))
        return params, out, loss, {}, None


def clip_by_value(limit: Any) -> GradientTransform:
    r"""Clip every gradient component to :math:`[-c, c]`: :math:`g_i \leftarrow
    \min(c, \max(-c, g_i))` (``torch.nn.utils.clip_grad_value_``, ``optax.clip``).

    Parameters
    ----------
    limit : float, per-run array or schedule
        :math:`c > 0`.
    """
    return _ClipByValue("clip_by_value", {"limit": _positive("limit", limit, "c")})


# ---------------------------------------------------------------------------------------------
# Weight decay


class _CoupledWeightDecay(GradientTransform):
    __slots__ = ()
    elementwise = True

    def apply(self, ctx, params, grads, loss, state) -> Applied:
        wd = self._hp["weight_decay"]
        if _is_zero(wd):
            return params, grads, loss, {}, None
        wd = ctx.hp(wd)
        grads = [g + ctx.leaf(wd, p) * p for p, g in zip(params, grads, strict=True)]
        if loss is not None:
            loss = loss + 0.5 * wd * tree_sq_norm(ctx.xp, params, ctx.batch_ndim)
        return params, grads, loss, {}, None


def coupled_weight_decay(weight_decay: Any) -> GradientTransform:
    r"""Coupled L2 weight decay: the step sees the loss and gradient of
    :math:`F + \tfrac\lambda2\lVert\theta\rVert^2`.

    .. math::

        F \leftarrow F + \frac\lambda2 \lVert\theta\rVert^2, \qquad
        g \leftarrow g + \lambda\,\theta,

    the norm over the whole tree (per run). Both change together, so the energy-conserving
    optimizers conserve the energy of the regularised potential; for the others only the
    gradient matters (torch's ``weight_decay=`` of SGD, ``d_p.add(p, alpha=weight_decay)``).
    The loss term is computed only when the step reads the loss.

    Parameters
    ----------
    weight_decay : float, per-run array or schedule
        :math:`\lambda \ge 0`.
    """
    value = check_real_or_schedule("weight_decay", weight_decay, symbol="λ", low=0.0)
    return _CoupledWeightDecay("coupled_weight_decay", {"weight_decay": value})


class _DecoupledWeightDecay(GradientTransform):
    __slots__ = ()
    elementwise = True

    def apply(self, ctx, params, grads, loss, state) -> Applied:
        rate = self._hp["rate"]
        if _is_zero(rate):
            return params, grads, loss, {}, None
        rate = ctx.hp(rate)
        return [p - ctx.leaf(rate, p) * p for p in params], grads, loss, {}, None


def decoupled_weight_decay(rate: Any) -> GradientTransform:
    r"""Decoupled weight decay: shrink the parameters, :math:`\theta \leftarrow (1-r)\,\theta`,
    before the optimizer's step; the loss and the gradients are left alone.

    For a step of the form :math:`\theta \leftarrow \theta + \Delta(g)` this is
    :math:`\theta_t = \theta_{t-1} + \Delta(g) - r\,\theta_{t-1}`, Loshchilov & Hutter's
    decoupled decay (ICLR 2019, Algorithm 2 line 12, with :math:`r = \eta_t\lambda`; PyTorch's
    ``AdamW`` uses :math:`r = \mathrm{lr}\cdot\lambda`). The energy-conserving optimizers then see
    a loss and gradient of the unshrunk point: use :func:`coupled_weight_decay` with them to keep
    loss and gradient consistent.

    Parameters
    ----------
    rate : float, per-run array or schedule
        :math:`r \in [0, 1)`, the fraction of every parameter removed per step.
    """
    value = check_real_or_schedule("rate", rate, symbol="r", low=0.0, high=1.0, high_open=True)
    return _DecoupledWeightDecay("decoupled_weight_decay", {"rate": value})


# ---------------------------------------------------------------------------------------------
# Masks


class _Masked(GradientTransform):
    __slots__ = ()

    @property
    def fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return self._hp["transform"].fields

    @property
    def uses_loss(self) -> bool:  # type: ignore[override]
        return self._hp["transform"].uses_loss

    def per_run_values(self) -> dict[str, Any]:
        return self._hp["transform"].per_run_values()

    def selection(self, treedef: TreeDef | None, params: list[Any]) -> list[int]:
        """Indices of the selected leaves (the mask checked against the parameters' tree)."""
        mask = self._hp["mask"]
        if callable(mask):
            mask = mask(tree_unflatten(treedef, params) if treedef is not None else params)
        leaves, mask_def = tree_flatten(mask)
        if treedef is not None and mask_def != treedef:
            raise ValueError(
                f"masked: the mask must have the structure of the parameters: {mask_def} vs "
                f"{treedef}"
            )
        if len(leaves) != len(params) or not all(isinstance(m, bool) for m in leaves):
            raise TypeError(
                "masked: the mask must be a tree of Python bools, one per parameter leaf "
                f"(got {leaves!r} for {len(params)} leaves)"
            )
        return [i for i, m in enumerate(leaves) if m]

    def init(self, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
        chosen = self.selection(ctx.treedef, leaves)
        return self._hp["transform"].init(ctx, [leaves[i] for i in chosen]) if chosen else {}

    def apply(self, ctx, params, grads, loss, state) -> Applied:
        chosen = self.selection(ctx.treedef, params)
        if not chosen:
            return params, grads, loss, {}, None
        inner = self._hp["transform"]
        sub_p, sub_g, loss, fields, skip = inner.apply(
            ctx, [params[i] for i in chosen], [grads[i] for i in chosen], loss, state
        )
        params, grads = list(params), list(grads)
        for j, i in enumerate(chosen):
            params[i], grads[i] = sub_p[j], sub_g[j]
        return params, grads, loss, fields, skip


def masked(transform: GradientTransform, mask: Any) -> GradientTransform:
    """Apply ``transform`` to the selected leaves only (different settings per layer).

    The norms and sums of the transform run over the selected leaves: ``masked(
    clip_by_global_norm(1.0), mask)`` clips the norm of those leaves together. Several masked
    transforms in one chain give each group of layers its own settings.

    Parameters
    ----------
    transform : GradientTransform
        Any transform (one that keeps state keeps it for the selected leaves).
    mask : tree of bool, or callable
        ``True`` for the leaves to transform, with the structure of the parameters (e.g.
        ``{"w": True, "b": False}``: decay the weights, not the biases), or a function
        ``params -> tree of bool`` (a module-level function keeps the optimizer picklable).
    """
    if not isinstance(transform, GradientTransform):
        raise TypeError(
            f"masked: transform must be a GradientTransform, got {type(transform).__name__}"
        )
    if not callable(mask):
        leaves, _ = tree_flatten(mask)
        if not all(isinstance(m, bool) for m in leaves):
            raise TypeError(
                f"masked: mask must be a tree of Python bools or a callable, got {mask!r}"
            )
    return _Masked("masked", {"transform": transform, "mask": mask})


# ---------------------------------------------------------------------------------------------
# The non-finite guard


class _NonFiniteGuard(GradientTransform):
    __slots__ = ()
    fields = ("skipped",)
    uses_loss = True

    def init(self, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
        return {"skipped": ctx.full(0, ctx.xp.int32)}

    def apply(self, ctx, params, grads, loss, state) -> Applied:
        xp, bn = ctx.xp, ctx.batch_ndim
        skip = ~all_finite(xp, grads, bn, loss)
        skipped = xp.where(skip, increment_count(xp, state.skipped), state.skipped)
        if uniform_value(xp, skip) is not False:
            # What the skipped runs compute is thrown away: give them zeros, so that no
            # infinity meets another one (no NaN, no floating-point warnings) on the way.
            grads = [
                xp.where(expand_to_leaf(xp, skip, g, bn), xp.zeros_like(g), g) for g in grads
            ]
            if loss is not None:
                loss = xp.where(skip, ctx.scalar(0.0), loss)
        return params, grads, loss, {"skipped": skipped}, skip


def non_finite_guard() -> GradientTransform:
    """Skip the step of every run whose gradient or loss holds a NaN or an infinity.

    A skipped run keeps its parameters and its whole optimizer state, ``count`` included (as
    ``optax.apply_if_finite`` keeps its inner state); its state field ``skipped`` (``int32``,
    per run) counts the skipped steps. The decision is per run, on the device (``xp.where``; no
    host round trip), on the gradients and loss as they reach the guard: put it first in the
    chain to test what the caller passed. The loss is tested when it is given, even to an
    optimizer that does not need it.
    """
    return _NonFiniteGuard("non_finite_guard", {})


#: The transform factories by name (what a checkpoint records).
TRANSFORMS: dict[str, Callable[..., GradientTransform]] = {
    "clip_by_global_norm": clip_by_global_norm,
    "clip_by_value": clip_by_value,
    "coupled_weight_decay": coupled_weight_decay,
    "decoupled_weight_decay": decoupled_weight_decay,
    "masked": masked,
    "non_finite_guard": non_finite_guard,
}
