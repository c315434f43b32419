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
from typing import Any

from physopt_ref.core.context import StepContext
from physopt_ref.core.control import if_any
from physopt_ref.core.tree import select_tree, tree_sq_norm
from physopt_ref.optimizers.ecd_common import initial_momentum, redraw_directions, rescale_factor

__all__ = ["eager_update", "graph_update"]


def graph_update(
    hp: Mapping[str, Any],
    ctx: StepContext,
    params: list[Any],
    grads: list[Any],
    state: Any,
    *,
    rare: Any,
    mag0: Any,
    init_now: Any,
    shell: Any,
    update: Any,
    bounce: Any,
    kick: Any,
    drift: Any,
) -> tuple[list[Any], list[Any], Any]:
    r"""BBI's new parameters, momentum and :math:`|\pi|^2`, computed in one ``torch.cond``.

    ``rare`` is the per-run predicate of the branch with the start and the bounce draw
    (``init_now | bounce``); ``bounce`` may be ``None`` (no bounces configured). The other
    arguments are the per-run values of :func:`.bbi._bbi_update`. With ``ctx.in_place`` (and
    no ``safety``) the returned leaves are ``params`` and ``state.momentum``, written in place.
    """
    xp, bn = ctx.xp, ctx.batch_ndim
    n = len(params)
    # The backtracking guard (``safety``) reads the input parameters after this: no writes.
    in_place = ctx.in_place and hp["safety"] is None

    def body(started: bool) -> Callable[..., tuple[Any, ...]]:
        def fn(*leaves: Any) -> tuple[Any, ...]:
            theta, momentum = list(leaves[:n]), list(leaves[n:])
            if started:
                pi, p2 = initial_momentum(ctx, grads, mag0, init_now, momentum, state.p2)
            else:
                pi, p2 = momentum, state.p2
            r = rescale_factor(ctx, p2, shell, hp["eps1"]) if hp["rescale"] else 1.0
            kicked = [ctx.leaf(r, p) * p - ctx.leaf(kick, g) * g
                      for p, g in zip(pi, grads, strict=True)]
            other = pi
            if started and bounce is not None:
                other = redraw_directions(ctx, pi, p2, bounce, seed=hp["seed"],
                                          member=hp["member"], law=hp["bounce_direction"])
            pi_new = select_tree(xp, update, kicked, other, bn)
            theta_u = [th + ctx.leaf(drift, p) * p for th, p in zip(theta, pi_new, strict=True)]
            theta_new = select_tree(xp, update, theta_u, theta, bn)
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
    hp: Mapping[str, Any],
    ctx: StepContext,
    params: list[Any],
    grads: list[Any],
    state: Any,
    *,
    mag0: Any,
    init_now: Any,
    shell: Any,
    update: Any,
    bounce: Any,
    kick: Any,
    drift: Any,
) -> tuple[list[Any], list[Any]]:
    """The new parameters and momentum outside a torch graph (eager, ``jax.jit``).

    The initial momentum and the bounce draw are paid for only when some run needs them
    (:func:`physopt_ref.core.control.if_any`: a host branch, or ``jax.lax.cond`` under jit).
    """
    xp, bn = ctx.xp, ctx.batch_ndim
    pi, p2 = initial_momentum(ctx, grads, mag0, init_now, state.momentum, state.p2)
    # Energy rescale factor r (1 where it is skipped).
    r = rescale_factor(ctx, p2, shell, hp["eps1"]) if hp["rescale"] else 1.0

    def kicked(momentum: list[Any]) -> list[Any]:
        return [ctx.leaf(r, p) * p - ctx.leaf(kick, g) * g
                for p, g in zip(momentum, grads, strict=True)]

    def plain(momentum: list[Any]) -> list[Any]:
        return select_tree(xp, update, kicked(momentum), momentum, bn)

    # A bounce redraws the direction at the same |π|.
    def bounced(momentum: list[Any]) -> list[Any]:
        pi_b = redraw_directions(ctx, momentum, p2, bounce, seed=hp["seed"],
                                 member=hp["member"], law=hp["bounce_direction"])
        return select_tree(xp, update, kicked(momentum), pi_b, bn)

    pi_new = plain(pi) if bounce is None else if_any(xp, bounce, bounced, plain, pi)
    # Where `update`, pi_new is the kicked momentum: the drift of the official order.
    theta_u = [th + ctx.leaf(drift, p) * p for th, p in zip(params, pi_new, strict=True)]
    return select_tree(xp, update, theta_u, params, bn), pi_new
