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

from array_api_compat import device

from physopt_ref.backends import normal, uniform

from ._tree import expand_to_leaf, tree_per_run_sum
from ._validate import check_choice, check_int

__all__ = [
    "DIRECTIONS",
    "EVENT_BOUNCE",
    "EVENT_FLOOR",
    "EVENT_NONE",
    "EVENT_UPDATE",
    "check_direction",
    "check_seed",
    "int_zeros",
    "lower_floor",
    "random_directions",
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
    """Validate the user seed (a non-negative Python int)."""
    return check_int("seed", seed, symbol="seed", low=0)


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


def int_zeros(xp: Any, batch_shape: tuple[int, ...], like: Any) -> Any:
    """A per-run integer counter array (int64) on the device of ``like``."""
    return xp.zeros(batch_shape, dtype=xp.int64, device=device(like))


def lower_floor(xp: Any, loss: Any, floor: Any, hit: Any) -> Any:
    """ΔV tuning: where ``hit`` (loss <= floor), put the floor 4x the overshoot below the loss.

    The result is ``<= loss`` wherever ``hit`` (strictly below when the overshoot is positive),
    and ``floor`` elsewhere.
    """
    return xp.where(hit, loss - 4.0 * (floor - loss), floor)


def random_directions(
    xp: Any,
    leaves: Sequence[Any],
    *,
    seed: int,
    counter: int,
    batch_ndim: int,
    law: str,
    stream_offset: int = 0,
) -> list[Any]:
    """One random vector per leaf from the counter-based streams of :mod:`physopt_ref.backends`.

    ``law="cube"``: i.i.d. U(-1/2, 1/2) components (the authors' ``torch.rand(...) - .5``);
    ``law="isotropic"``: i.i.d. standard normals. Leaf ``i`` uses stream ``stream_offset + i``;
    ensemble member ``k`` gets the numbers of a single run with seed ``seed + k``.
    """
    out = []
    for i, leaf in enumerate(leaves):
        kw = dict(like=leaf, batch_ndim=batch_ndim, stream=stream_offset + i)
        if law == "cube":
            out.append(uniform(seed, counter, tuple(leaf.shape), **kw) - 0.5)
        else:
            out.append(normal(seed, counter, tuple(leaf.shape), **kw))
    return out
