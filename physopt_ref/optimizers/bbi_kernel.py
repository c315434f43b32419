r"""BBI's full-size work (start, rescale, kick, bounce, drift): eagerly and in a torch graph.

:func:`eager_update` is the plain form (eager backends and ``jax.jit``): the initial momentum
and the bounce draw are paid for only when some run needs them
(:func:`physopt_ref.core.control.if_any`: a host branch, or ``jax.lax.cond``).

Under ``torch.compile`` a host branch on array data is impossible, and inductor compiles each
branch of ``torch.cond`` as a subgraph of its own: nothing fuses across the branch boundary, and
every output of a branch is a materialised buffer. So :func:`graph_update` puts the whole
full-size part of a call inside the branches of one ``torch.cond`` (``if_any`` with
``graph_cond=True``):

* the **common** branch (no run starts, no run bounces): energy rescale, kick, drift and the new
  :math:`|\pi|^2`, from the stored momentum and :math:`|\pi|^2`: it reads
  :math:`(\theta, \pi, g)` and writes :math:`(\theta', \pi')`, with the reduction;
* the **rare** branch (some run makes its first update or bounces): the same, after the initial
  momentum (with its gradient norm) and the bounce draw (Philox, with its norm).

With ``ctx.in_place`` (a donated step, :mod:`physopt_ref.core.donate`) the branches write
:math:`\theta'` and :math:`\pi'` into the donated buffers themselves (``torch.cond`` lets its
branches mutate their operands outside autograd, and inductor writes them in place) and return
only the per-run :math:`|\pi'|^2`: no branch output the size of the parameters, and no copy of
one into a buffer afterwards. Figures: ``docs/speed.md``.

Every value is the one the eager rule computes, by the same functions in the same order; the
common branch takes :math:`\pi` and :math:`|\pi|^2` as stored, which is what the eager selects
give where no run starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from physopt_ref.core.context import StepContext
from physopt_ref.core.control import if_any
from physopt_ref.core.tree import select_tree, tree_sq_norm
from physopt_ref.optimizers.ecd_common import initial_momentum, redraw_directions, rescale_factor

__all__ = ["PerRun", "eager_update", "graph_update"]


class PerRun(NamedTuple):
    """The per-run values of a BBI call that its full-size work reads (:func:`.bbi._bbi_update`).

    ``mag0`` is the initial momentum's size, ``init_now`` the runs that start now, ``shell``
    :math:`E^2/V - V`, ``update`` the runs that update, ``bounce`` the runs that bounce
    (``None``: no bounces configured), ``kick`` and ``drift`` the coefficients.
    """

    mag0: Any
    init_now: Any
    shell: Any
    update: Any
    bounce: Any
    kick: Any
    drift: Any


def _momentum(hp: Mapping[str, Any], ctx: StepContext, run: PerRun, grads: list[Any],
              pi: list[Any], p2: Any, other: Callable[[], list[Any]] | None) -> list[Any]:
    """``pi`` (|π|² = ``p2``) rescaled and kicked where ``update``; elsewhere ``other()`` (the
    bounce) or ``pi``."""
    r = rescale_factor(ctx, p2, run.shell, hp["eps1"]) if hp["rescale"] else 1.0
    kicked = [ctx.leaf(r, p) * p - ctx.leaf(run.kick, g) * g
              for p, g in zip(pi, grads, strict=True)]
    return select_tree(ctx.xp, run.update, kicked, pi if other is None else other(),
                       ctx.batch_ndim)


def _drift(ctx: StepContext, run: PerRun, theta: list[Any], pi_new: list[Any]) -> list[Any]:
    """Where ``update``, the drift with the kicked momentum (the official order)."""
    theta_u = [th + ctx.leaf(run.drift, p) * p for th, p in zip(theta, pi_new, strict=True)]
    return select_tree(ctx.xp, run.update, theta_u, theta, ctx.batch_ndim)


def _redraw(hp: Mapping[str, Any], ctx: StepContext, run: PerRun, pi: list[Any], p2: Any
            ) -> Callable[[], list[Any]]:
    """The bounce: ``pi`` with a new direction at the same |π| where ``bounce``."""
    return lambda: redraw_directions(ctx, pi, p2, run.bounce, seed=hp["seed"],
                                     member=hp["member"], law=hp["bounce_direction"])


def graph_update(
    hp: Mapping[str, Any], ctx: StepContext, params: list[Any], grads: list[Any], state: Any,
    run: PerRun, rare: Any,
) -> tuple[list[Any], list[Any], Any]:
    r"""BBI's new parameters, momentum and :math:`|\pi|^2`, computed in one ``torch.cond``.

    ``rare`` is the per-run predicate of the branch with the start and the bounce draw
    (``init_now | bounce``). With ``ctx.in_place`` (and no ``safety``) the returned leaves are
    ``params`` and ``state.momentum``, written in place.
    """
    xp, bn = ctx.xp, ctx.batch_ndim
    n = len(params)
    # The backtracking guard (``safety``) reads the input parameters after this: no writes.
    in_place = ctx.in_place and hp["safety"] is None

    def body(started: bool) -> Callable[..., tuple[Any, ...]]:
        def fn(*leaves: Any) -> tuple[Any, ...]:
            theta, momentum = list(leaves[:n]), list(leaves[n:])
            if started:
                pi, p2 = initial_momentum(ctx, grads, run.mag0, run.init_now, momentum,
                                          state.p2)
            else:
                pi, p2 = momentum, state.p2
            other = _redraw(hp, ctx, run, pi, p2) if started and run.bounce is not None else None
            pi_new = _momentum(hp, ctx, run, grads, pi, p2, other)
            theta_new = _drift(ctx, run, theta, pi_new)
            p2_new = tree_sq_norm(xp, pi_new, bn)
            if in_place:
                for dst, src in zip(leaves, theta_new + pi_new, strict=True):
                    dst.copy_(src)
                return (p2_new,)
            return (*theta_new, *pi_new, p2_new)

        return fn

    out = if_any(xp, rare, body(True), body(False), *params, *state.momentum, graph_cond=True)
    if in_place:
        return list(params), list(state.momentum), out[0]
    return list(out[:n]), list(out[n : 2 * n]), out[2 * n]


def eager_update(
    hp: Mapping[str, Any], ctx: StepContext, params: list[Any], grads: list[Any], state: Any,
    run: PerRun,
) -> tuple[list[Any], list[Any]]:
    r"""The new parameters and momentum outside a torch graph (eager, ``jax.jit``).

    The initial momentum and the bounce draw are paid for only when some run needs them
    (:func:`physopt_ref.core.control.if_any`: a host branch, or ``jax.lax.cond`` under jit).
    Each branch returns only the momentum the kick starts from (the stored one, or the
    redrawn one where a run bounces), and the other branch returns its operand unchanged; the
    kick, the drift and :math:`|\pi'|^2` come after it. Under ``jax.jit`` the common call's
    ``lax.cond`` is then an identity that XLA passes through without a copy, and the kick and
    drift fuse outside it into loops that write the donated buffers in place: no branch output
    the size of the parameters, and no copy of one into the momentum buffer (figures:
    ``docs/speed.md``). Kicking the redrawn momentum changes nothing: it differs from the
    stored one only where a run bounces, and a bouncing run does not update.
    """
    xp = ctx.xp
    pi, p2 = initial_momentum(ctx, grads, run.mag0, run.init_now, state.momentum, state.p2)
    if run.bounce is not None:
        def bounced(momentum: list[Any]) -> list[Any]:
            return _redraw(hp, ctx, run, momentum, p2)()

        pi = if_any(xp, run.bounce, bounced, list, pi)
    pi_new = _momentum(hp, ctx, run, grads, pi, p2, None)
    return _drift(ctx, run, params, pi_new), pi_new
