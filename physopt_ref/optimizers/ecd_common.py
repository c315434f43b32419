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

from collections.abc import Callable, Sequence
from typing import Any

from array_api_compat import is_jax_namespace

from physopt_ref.backends import normal, uniform
from physopt_ref.core.context import StepContext
from physopt_ref.core.control import host_resident, if_any
from physopt_ref.core.numerics import tree_norm
from physopt_ref.core.tree import (
    by_columns,
    scale_tree,
    select_tree,
    tree_dot,
    tree_sq_norm,
)
from physopt_ref.core.validate import check_choice, check_int

__all__ = [
    "DIRECTIONS",
    "EPS2_CODE",
    "EVENT_BACKTRACK",
    "EVENT_BOUNCE",
    "EVENT_FLOOR",
    "EVENT_NONE",
    "EVENT_UPDATE",
    "check_direction",
    "check_eps2",
    "check_member",
    "check_one_dtype",
    "check_seed",
    "energy_shell_phase",
    "eps2_floor",
    "finish_call",
    "grad_norm_if_starting",
    "initial_momentum",
    "int_zeros",
    "lower_floor",
    "momentum_norm",
    "random_directions",
    "redraw_directions",
    "rescale_factor",
    "safe_divide",
    "scale_tree",
    "tree_dot",
    "tree_sq_norm",
]

#: Values of the ``event`` state field: what the last call did, per run.
EVENT_NONE = 0  #: no-op (stopped at V <= ε, or not yet started)
EVENT_UPDATE = 1  #: an ordinary rescale-kick-drift update
EVENT_BOUNCE = 2  #: a bounce (BBI): momentum direction redrawn, parameters unchanged
EVENT_FLOOR = 3  #: ΔV tuning moved the floor (loss at or below it), parameters unchanged
EVENT_BACKTRACK = 4  #: off the energy shell: moved back towards the last update (ecd_safety)

#: Bounce / jitter direction laws: ``"cube"`` is the authors' U(-1/2, 1/2) per component;
#: ``"isotropic"`` a standard normal vector (uniform direction on the sphere).
DIRECTIONS = ("cube", "isotropic")

#: The authors' default stopping threshold ε₂ (``gbdl/BBI`` ``BBI.__init__`` line 18,
#: ``gbdl/ECDSep`` ``ECDSep.__init__`` line 19; spec ``ecd.md`` §1.1, §3.1).
EPS2_CODE = 1e-40


def eps2_floor(xp: Any, dtype: Any) -> float:
    """The smallest stopping threshold valid in ``dtype``: ``finfo.smallest_normal / finfo.eps``.

    float64: 1.0e-292; float32: 9.9e-32; bfloat16: 1.5e-36; float16: 0.0625. Above it, V is a
    normal number with full relative precision, and the quotients E/V (BBI) and e^E/V (ECDSep)
    stay finite for energies up to ``finfo.max * floor`` (3.4e7 in float32). The authors'
    default 1e-40 lies below float32's normal range (1.2e-38): there, converged float32 runs
    overflowed e^E/V and turned to NaN (measured at f = 8e-38 on the 10-D quadratic).
    """
    info = xp.finfo(dtype)
    return float(info.smallest_normal) / float(info.eps)


def check_eps2(owner: str, eps2: float | None, xp: Any, dtype: Any) -> None:
    """Refuse an explicit ε₂ below :func:`eps2_floor` of the parameters' dtype (at ``init``)."""
    if eps2 is None:
        return
    low = eps2_floor(xp, dtype)
    if eps2 < low:
        raise ValueError(
            f"{owner}: eps2 (ε₂) = {eps2:g} lies below what {dtype} can resolve: it must be "
            f">= finfo.smallest_normal / finfo.eps = {low:.3g} for {dtype} parameters "
            "(or None, the default: max(1e-40, that floor))"
        )


def check_one_dtype(owner: str, leaves: Sequence[Any]) -> None:
    """Refuse a parameter tree whose leaves do not share one dtype (at ``init``).

    The energy-conserving steps couple every leaf through per-run scalars (V, E, |π|²); mixing
    dtypes would promote the narrower leaves (silently) or compute the coupling in the
    narrower dtype, so the tree is refused with a clear message instead.
    """
    dtypes = []
    for leaf in leaves:
        if leaf.dtype not in dtypes:
            dtypes.append(leaf.dtype)
    if len(dtypes) > 1:
        raise TypeError(
            f"{owner} needs every parameter leaf in one floating dtype (its energy couples all "
            f"leaves), got {', '.join(str(d) for d in dtypes)}; cast the tree to one dtype first"
        )


def check_seed(seed: Any) -> int:
    """Validate the user seed (a Python int in [0, 2**64))."""
    return check_int("seed", seed, symbol="seed", low=0, high=2**64 - 1)


def check_member(member: Any) -> int:
    """Validate a run's member index (a Python int in [0, 2**32): the draws' counter word)."""
    return check_int("member", member, symbol="member index", low=0, high=2**32 - 1)


def check_direction(direction: Any) -> str:
    """Validate a bounce-direction law name."""
    return check_choice("bounce_direction", direction, DIRECTIONS)


def safe_divide(xp: Any, num: Any, den: Any, ok: Any, one: Any = 1.0, zero: Any = 0.0) -> Any:
    """``num / den`` where ``ok``, else 0, never dividing by a masked-out denominator.

    Both branches of ``xp.where`` are evaluated, so the denominator is replaced by 1 outside
    ``ok`` first: no division by zero, no warnings, no NaN leaking through a gradient. ``one``
    and ``zero`` are what :meth:`StepContext.scalar` gives for 1.0 and 0.0.
    """
    return xp.where(ok, num / xp.where(ok, den, one), zero)


def int_zeros(ctx: StepContext) -> Any:
    """A per-run integer counter array (``int32``, batch shape) on the parameters' device."""
    return ctx.full(0, ctx.xp.int32)


def lower_floor(xp: Any, loss: Any, floor: Any, hit: Any) -> Any:
    """ΔV tuning: where ``hit`` (loss <= floor), put the floor 4x the overshoot below the loss.

    The result is ``<= loss`` wherever ``hit`` (strictly below when the overshoot is positive),
    and ``floor`` elsewhere.
    """
    return xp.where(hit, loss - 4.0 * (floor - loss), floor)


def energy_shell_phase(
    ctx: StepContext, V: Any, *, tuning: bool, eps2: float | None, started: Any
) -> tuple:
    """The per-run decision every energy-conserving call starts with.

    Returns ``(active, retune, init_now)``: ``active`` runs update (``V > ε₂``, or ``V`` above
    the dtype's floor with floor tuning, where the code tests ``V > 0``), ``retune`` runs move
    their floor (tuning and ``V <= 0``; ``None`` without tuning), ``init_now`` runs make their
    first update now (their energy and initial momentum are set here).

    ε₂ is never below :func:`eps2_floor` of the parameters' dtype (``eps2=None`` means
    ``max(1e-40, floor)``). A non-finite V (a NaN or infinite loss, or a power overflowing the
    dtype) neither updates nor moves the floor: the call is a no-op (event 0), so one bad loss
    cannot turn the parameters into NaN.
    """
    xp = ctx.xp
    low = eps2_floor(xp, ctx.dtype)
    finite = xp.isfinite(V)
    if tuning:
        active = (V > low) & finite
        retune = (V <= 0.0) & finite
    else:
        active = (V > max(EPS2_CODE if eps2 is None else eps2, low)) & finite
        retune = None
    return active, retune, active & ~started


def initial_momentum(
    ctx: StepContext,
    grads: Sequence[Any],
    magnitude: Any,
    init_now: Any,
    momentum: Sequence[Any],
    p2: Any,
    gnorm: Any = None,
) -> tuple[list[Any], Any]:
    """The momentum and its squared norm, started as ``-magnitude · g/|g|`` where ``init_now``.

    The norm is taken over the whole tree, per run, scaled (:func:`physopt_ref.core.numerics.
    tree_norm`: no :math:`|g|^2` that overflows or underflows); a zero gradient gives a zero
    momentum (no 0/0). Elsewhere ``momentum`` and its stored squared norm ``p2`` are kept.
    Only calls where some run starts pay for it (:func:`physopt_ref.core.control.if_any`).
    Given ``gnorm`` (the per-run :math:`|g|` of :func:`grad_norm_if_starting`), the select
    itself, without a branch: what a graph fuses into the passes that read the momentum.
    """
    xp, bn = ctx.xp, ctx.batch_ndim
    if gnorm is None:

        def start(momentum: list[Any], p2: Any) -> tuple[list[Any], Any]:
            return initial_momentum(ctx, grads, magnitude, init_now, momentum, p2,
                                    _grad_norm(ctx, grads))

        def keep(momentum: list[Any], p2: Any) -> tuple[list[Any], Any]:
            return list(momentum), p2

        return if_any(xp, init_now, start, keep, list(momentum), p2)
    one, zero = ctx.scalar(1.0), ctx.scalar(0.0)
    moving = gnorm > 0.0
    coef = -safe_divide(xp, magnitude, gnorm, moving, one, zero)
    new = select_tree(xp, init_now, scale_tree(xp, grads, coef, bn), momentum, bn)
    started_p2 = xp.where(moving, magnitude * magnitude, zero)
    return new, xp.where(init_now, started_p2, p2)


def _grad_norm(ctx: StepContext, grads: Sequence[Any]) -> Any:
    """:math:`|g|` per run, scaled (:func:`~physopt_ref.core.numerics.tree_norm`), in the
    state dtype (a finite norm is representable)."""
    return ctx.xp.astype(tree_norm(ctx.xp, list(grads), ctx.batch_ndim), ctx.dtype)


def grad_norm_if_starting(ctx: StepContext, grads: Sequence[Any], init_now: Any) -> Any:
    """:math:`|g|` per run where some run starts its momentum now, zeros otherwise.

    In a graph (``jax.jit``: ``lax.cond``; ``torch.compile``: ``torch.cond``) only this per-run
    scalar comes out of the branch, and its operands are the gradient leaves themselves: the
    compiler materialises nothing of full size for it, and the select
    (:func:`initial_momentum` given ``gnorm``) fuses into the passes that read the momentum.
    Without it the selected tree comes out of the branch, which a graph must then store (a
    full-size buffer per step). Use the result only where ``init_now`` holds (:func:`if_any`).
    """
    xp = ctx.xp

    def norm(*leaves: Any) -> Any:
        return _grad_norm(ctx, leaves)

    def skip(*leaves: Any) -> Any:
        return ctx.full(0.0)

    return if_any(xp, init_now, norm, skip, *grads, graph_cond=True)


def rescale_factor(ctx: StepContext, p2: Any, target: Any, eps1: float) -> Any:
    """The energy rescale :math:`\\sqrt{\\text{target}/|p|^2}`, 1 where it is skipped.

    Skipped (as in the authors' code) when :math:`|\\text{target} - |p|^2| < \\epsilon_1`,
    when the target is negative (no real solution), or when :math:`|p|^2 = 0`.
    """
    xp, one = ctx.xp, ctx.scalar(1.0)
    keep = (xp.abs(p2 - target) < eps1) | (target < 0.0) | (p2 == 0.0)
    # sqrt(target) / sqrt(p2): the quotient target / p2 itself can overflow (a float32 loss
    # falling from 3e38 asks for |π|² ~ 1e37 from a small |π|²).
    root = xp.sqrt(xp.where(keep, one, target)) / xp.sqrt(xp.where(keep, one, p2))
    return xp.where(keep, one, root)


def finish_call(
    ctx: StepContext,
    state: Any,
    *,
    update: Any,
    active: Any,
    retune: Any,
    floor_value: Any,
    bounce: Any = None,
    backtrack: Any = None,
) -> dict[str, Any]:
    """The bookkeeping fields every energy-conserving call ends with (per run).

    ``floor`` (moved where ``retune``; ``None`` = no floor tuning), ``iteration`` (+1 where
    ``update``), ``started`` (where ``active``) and ``event`` (what the call did; ``bounce``
    and ``backtrack`` are ``None`` where the optimizer has no such calls).
    """
    xp = ctx.xp
    updated = xp.astype(update, state.event.dtype)
    event = updated if EVENT_UPDATE == 1 and EVENT_NONE == 0 else None  # EVENT_* are 0 and 1
    if bounce is not None:
        event = xp.where(bounce, ctx.scalar(EVENT_BOUNCE), event)
    if backtrack is not None:
        event = xp.where(backtrack, ctx.scalar(EVENT_BACKTRACK), event)
    floor = state.floor
    if retune is not None:
        event = xp.where(retune, ctx.scalar(EVENT_FLOOR), event)
        floor = lower_floor(xp, floor_value, floor, retune)
    return {
        "floor": floor,
        "iteration": state.iteration + updated,
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
    member: Any = 0,
) -> list[Any]:
    """One random vector per leaf from the counter-based streams of :mod:`physopt_ref.backends`.

    ``law="cube"``: i.i.d. U(-1/2, 1/2) components (the authors' ``torch.rand(...) - .5``);
    ``law="isotropic"``: i.i.d. standard normals. Leaf ``i`` uses stream ``stream_offset + i``;
    ``counter`` is each run's step count; ensemble member ``k`` gets the numbers of a single
    run with the same seed and member index ``member + k`` (``member`` may also be an integer
    array of the batch shape: each run's own index). Computed on the device (Philox-4x32-10).
    """
    out = []
    for i, leaf in enumerate(leaves):
        kw = dict(like=leaf, batch_ndim=batch_ndim, stream=stream_offset + i, member=member)
        if law == "cube":
            out.append(uniform(seed, counter, tuple(leaf.shape), **kw) - 0.5)
        else:
            out.append(normal(seed, counter, tuple(leaf.shape), **kw))
    return out


def redraw_directions(
    ctx: StepContext,
    momentum: Sequence[Any],
    p2: Any,
    redraw: Any,
    *,
    seed: int,
    member: int,
    law: str,
) -> list[Any]:
    """``momentum`` with a new random direction at the same :math:`|\\pi| = \\sqrt{p_2}` where
    the per-run ``redraw`` is True (BBI's bounce), unchanged elsewhere.

    The directions are :func:`random_directions` of the step's count, scaled per run to
    :math:`|\\pi|` (a zero draw gives zero). On eager host arrays (NumPy, array-api-strict, torch
    on the CPU) only the runs that redraw are drawn for (a run's draws depend on its own seed,
    member index and count alone, so the bits are those of the whole-ensemble draw); in a
    graph (``jax.jit``, ``torch.compile``) every run is drawn for and the result selected.
    """
    xp, bn = ctx.xp, ctx.batch_ndim
    one, zero = ctx.scalar(1.0), ctx.scalar(0.0)
    if bn == 0 or not host_resident(xp, redraw):
        dirs = _whole_draw(xp, momentum, redraw, ctx.count, seed=seed, member=member, law=law,
                           batch_ndim=bn)
        dnorm = xp.astype(tree_norm(xp, dirs, bn), ctx.dtype)
        fac = safe_divide(xp, xp.sqrt(p2), dnorm, dnorm > 0.0, one, zero)
        return select_tree(xp, redraw, scale_tree(xp, dirs, fac, bn), momentum, bn)
    n = 1
    for size in redraw.shape:
        n *= int(size)
    flat = xp.reshape(redraw, (n,))
    rows = xp.nonzero(flat)[0]
    sub = [xp.take(xp.reshape(p, (n, *p.shape[bn:])), rows, axis=0) for p in momentum]
    count = xp.take(xp.reshape(ctx.count, (n,)), rows, axis=0)
    dirs = random_directions(xp, sub, seed=seed, member=member + xp.astype(rows, xp.int64),
                             counter=count, batch_ndim=1, law=law)
    dnorm = xp.astype(tree_norm(xp, dirs, 1), ctx.dtype)
    norm = xp.sqrt(xp.take(xp.reshape(p2, (n,)), rows, axis=0))
    scaled = scale_tree(xp, dirs, safe_divide(xp, norm, dnorm, dnorm > 0.0, one, zero), 1)
    # Back to every run: the k-th run that redraws takes row k (the others are not selected).
    pos = xp.cumulative_sum(xp.astype(flat, xp.int64)) - 1
    pos = xp.where(pos < 0, xp.zeros_like(pos), pos)
    back = [xp.reshape(xp.take(d, pos, axis=0), tuple(p.shape))
            for d, p in zip(scaled, momentum, strict=True)]
    return select_tree(xp, redraw, back, momentum, bn)


def _whole_draw(xp: Any, momentum: Sequence[Any], redraw: Any, count: Any, *, seed: int,
                member: int, law: str, batch_ndim: int) -> list[Any]:
    """:func:`random_directions` for every run, as one array per leaf that is computed once.

    Where the norm's reductions go column by column (:func:`physopt_ref.core.tree.by_columns`:
    ensembles of 2-4 elements a run under ``jax.jit``), the draw is the output of a branch
    (:func:`if_any` on ``redraw``; the other branch, zeros, is never selected: a run that does
    not redraw keeps its momentum). XLA's CPU fusion otherwise recomputes the Philox rounds in
    every kernel that reads a column of the draw (the maximum's, the sum's and the scaled
    result's); as a branch output the draw is computed once and read from memory. Measured for
    BBI's bounce at 1e5 runs x 2 float64 (one thread, ``docs/speed.md``): 2.9 ms with the
    trailing-axis reductions, 8 ms with column reductions and the draw recomputed, 1.2 ms with
    both. The same numbers either way; elsewhere a plain call.
    """

    def draw(count: Any) -> list[Any]:
        return random_directions(xp, momentum, seed=seed, member=member, counter=count,
                                 batch_ndim=batch_ndim, law=law)

    if not all(by_columns(p, batch_ndim) for p in momentum) or not is_jax_namespace(xp):
        return draw(count)

    def skip(count: Any) -> list[Any]:
        return [xp.zeros_like(p) for p in momentum]

    return if_any(xp, redraw, draw, skip, count)


def momentum_norm(xp: Any, p2: Any, momentum: Callable[[], list[Any]], batch_ndim: int) -> Any:
    """:math:`|p|` per run: ``sqrt(p2)``, or the scaled norm where ``p2`` is not finite.

    ``momentum()`` forms the momentum tree, called only in the branch that needs it (in a graph
    from the step's inputs, so that the branch's only operand is the per-run ``p2``).
    """
    overflow = ~xp.isfinite(p2)

    def scaled(p2: Any) -> Any:
        norm = xp.astype(tree_norm(xp, momentum(), batch_ndim), p2.dtype)
        return xp.where(overflow, norm, xp.sqrt(p2))

    def plain(p2: Any) -> Any:
        return xp.sqrt(p2)

    return if_any(xp, overflow, scaled, plain, p2, graph_cond=True)
