r"""Pieces shared by the energy-conserving-descent optimizers (:mod:`.bbi`, :mod:`.ecdsep`).

Everything here is per run of an ensemble: a *per-run* array has the batch shape (the leading
``batch_ndim`` axes of every leaf); a *tree* is a list of leaves. Data-dependent choices are made
with ``xp.where`` so that K stacked runs give what K separate runs give, without host syncs.

The automatic ΔV (floor) tuning rule (De Luca & Silverstein, ``gbdl/BBI`` ``BBI_v0tuning`` and
``gbdl/ECDSep`` ``ECDSep_F0tuning``; spec ``ecd.md`` §2): when a call finds the loss at or below
the current floor, :math:`F \le F_\text{floor}`, it makes no update and moves the floor to four
times the overshoot below the loss,

.. math::

    F_\text{floor} \leftarrow F - 4\,(F_\text{floor} - F)
    \;\;(= F_\text{floor} + 5\,(F - F_\text{floor}),\ \text{the code's } \texttt{shift += 5 V}).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from physopt_ref.backends import normal, uniform

from ._base import StepContext
from ._tree import expand_to_leaf, select_tree, tree_per_run_sum
from ._validate import check_choice, check_int

__all__ = [
    "DIRECTIONS",
    "EVENT_BOUNCE",
    "EVENT_FLOOR",
    "EVENT_NONE",
    "EVENT_UPDATE",
    "check_direction",
    "check_seed",
    "energy_shell_phase",
    "finish_call",
    "initial_momentum",
    "int_zeros",
    "lower_floor",
    "random_directions",
    "rescale_factor",
    "safe_divide",
    "scale_tree",
    "tree_sq_norm",
]

#: Values of the ``event`` state field: what the last call did, per run.
EVENT_NONE = 0  #: no-op (stopped at V <= ε, or not yet started)
EVENT_UPDATE = 1  #: an ordinary rescale-kick-drift update
EVENT_BOUNCE = 2  #: a bounce (BBI): momentum direction redrawn, parameters unchanged
EVENT_FLOOR = 3  #: ΔV tuning moved the floor (loss at or below it), parameters unchanged

#: Bounce / jitter direction laws: ``"cube"`` is the authors' U(-1/2, 1/2) per component;
#: ``"isotropic"`` a standard normal vector (uniform direction on the sphere).
DIRECTIONS = ("cube", "isotropic")


def check_seed(seed: Any) -> int:
    """Validate the user seed (a Python int in [0, 2**64))."""
    return check_int("seed", seed, symbol="seed", low=0, high=2**64 - 1)


def check_direction(direction: Any) -> str:
    """Validate a bounce-direction law name."""
    return check_choice("bounce_direction", direction, DIRECTIONS)


def tree_sq_norm(xp: Any, leaves: Sequence[Any], batch_ndim: int) -> Any:
    """Squared Euclidean norm of a whole tree, per run (batch shape)."""
    return tree_per_run_sum(xp, [leaf * leaf for leaf in leaves], batch_ndim)


def scale_tree(xp: Any, leaves: Sequence[Any], factor: Any, batch_ndim: int) -> list[Any]:
    """Multiply every leaf by a per-run factor."""
    return [leaf * expand_to_leaf(xp, factor, leaf, batch_ndim) for leaf in leaves]


def safe_divide(xp: Any, num: Any, den: Any, ok: Any) -> Any:
    """``num / den`` where ``ok``, else 0, never dividing by a masked-out denominator.

    Both branches of ``xp.where`` are evaluated, so the denominator is replaced by 1 outside
    ``ok`` first: no division by zero, no warnings, no NaN leaking through a gradient.
    """
    quotient = num / xp.where(ok, den, xp.ones_like(den))
    return xp.where(ok, quotient, xp.zeros_like(quotient))


def int_zeros(ctx: StepContext) -> Any:
    """A per-run integer counter array (``int32``, batch shape) on the parameters' device."""
    return ctx.full(0, ctx.xp.int32)


def lower_floor(xp: Any, loss: Any, floor: Any, hit: Any) -> Any:
    """ΔV tuning: where ``hit`` (loss <= floor), put the floor 4x the overshoot below the loss.

    The result is ``<= loss`` wherever ``hit`` (strictly below when the overshoot is positive),
    and ``floor`` elsewhere.
    """
    return xp.where(hit, loss - 4.0 * (floor - loss), floor)


def energy_shell_phase(xp: Any, V: Any, *, tuning: bool, eps2: Any, started: Any) -> tuple:
    """The per-run decision every energy-conserving call starts with.

    Returns ``(active, retune, init_now)``: ``active`` runs update (``V > ε₂``, or ``V > 0``
    with floor tuning), ``retune`` runs move their floor (tuning and ``V <= 0``), ``init_now``
    runs make their first update now (their energy and initial momentum are set here).
    """
    if tuning:
        active = V > 0.0
        retune = ~active
    else:
        active = V > eps2
        retune = xp.zeros_like(active)
    return active, retune, active & ~started


def initial_momentum(
    xp: Any,
    grads: Sequence[Any],
    magnitude: Any,
    init_now: Any,
    momentum: Sequence[Any],
    batch_ndim: int,
) -> list[Any]:
    """``-magnitude · g/|g|`` (over the whole tree, per run) where ``init_now``, else ``momentum``.

    A zero gradient gives a zero momentum (no 0/0).
    """
    g2 = tree_sq_norm(xp, grads, batch_ndim)
    coef = -safe_divide(xp, magnitude, xp.sqrt(g2), g2 > 0.0)
    return select_tree(xp, init_now, scale_tree(xp, grads, coef, batch_ndim), momentum, batch_ndim)


def rescale_factor(xp: Any, p2: Any, target: Any, eps1: Any) -> Any:
    """The energy rescale :math:`\\sqrt{\\text{target}/|p|^2}`, 1 where it is skipped.

    Skipped (as in the authors' code) when :math:`|\\text{target} - |p|^2| < \\epsilon_1`,
    when the target is negative (no real solution), or when :math:`|p|^2 = 0`.
    """
    keep = (xp.abs(p2 - target) < eps1) | (target < 0.0) | (p2 == 0.0)
    return xp.where(keep, xp.ones_like(p2), xp.sqrt(safe_divide(xp, target, p2, ~keep)))


def finish_call(
    ctx: StepContext,
    state: Any,
    *,
    update: Any,
    active: Any,
    retune: Any,
    floor_value: Any,
    tuning: bool,
    bounce: Any = None,
) -> dict[str, Any]:
    """The bookkeeping fields every energy-conserving call ends with (per run).

    ``floor`` (moved where ``retune``), ``iteration`` (+1 where ``update``), ``started``
    (where ``active``) and ``event`` (what the call did).
    """
    xp = ctx.xp
    zero_i = xp.zeros_like(state.iteration)
    floor = lower_floor(xp, floor_value, state.floor, retune) if tuning else state.floor
    event = xp.where(retune, zero_i + EVENT_FLOOR, zero_i + EVENT_NONE)
    if bounce is not None:
        event = xp.where(bounce, zero_i + EVENT_BOUNCE, event)
    event = xp.where(update, zero_i + EVENT_UPDATE, event)
    return {
        "floor": floor,
        "iteration": state.iteration + xp.astype(update, state.iteration.dtype),
        "started": state.started | active,
        "event": event,
    }


def random_directions(
    xp: Any,
    leaves: Sequence[Any],
    *,
    seed: int,
    counter: Any,
    batch_ndim: int,
    law: str,
    stream_offset: int = 0,
) -> list[Any]:
    """One random vector per leaf from the counter-based streams of :mod:`physopt_ref.backends`.

    ``law="cube"``: i.i.d. U(-1/2, 1/2) components (the authors' ``torch.rand(...) - .5``);
    ``law="isotropic"``: i.i.d. standard normals. Leaf ``i`` uses stream ``stream_offset + i``;
    ``counter`` is each run's step count; ensemble member ``k`` gets the numbers of a single
    run with seed ``seed + k``. Computed on the device (Philox-4x32-10).
    """
    out = []
    for i, leaf in enumerate(leaves):
        kw = dict(like=leaf, batch_ndim=batch_ndim, stream=stream_offset + i)
        if law == "cube":
            out.append(uniform(seed, counter, tuple(leaf.shape), **kw) - 0.5)
        else:
            out.append(normal(seed, counter, tuple(leaf.shape), **kw))
    return out
