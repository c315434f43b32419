r"""The small-problem rules of BBI and ECDSep: one NumPy array, one run, the same bits.

At dim 10 a step of the energy-conserving family is almost all fixed cost: its rule computes
some 80 per-run quantities (energies, ratios, triggers, counters) as 0-d arrays with ``where``
selections, 0.5-1 µs each, where the arithmetic on 10 numbers takes a few µs
(``benchmarks/bench_ecd.py``, section ``small``). For a single NumPy array with constant
hyperparameters, one run (no ensemble axes) and no ``safety`` option, :class:`~physopt_ref.core.
contract.Optimizer` calls the rules here instead (its ``small`` rule). They compute the same
quantities with the same expressions, in the state dtype, on NumPy scalars, and take the
per-run decisions (stopped, first update, rescale skipped, bounce) as Python branches: the
data is in host memory, as for :func:`~physopt_ref.core.control.if_any`'s host branch, so no
device is waited for. Work whose result the general rule discards with a select (the drift of
a run that does not update, say) is not done. The leaf arithmetic and the reductions are the
general rule's own (the same NumPy calls on the same arrays), so every output has the bits of
the general rule: ``tests/test_small_path.py`` compares both paths over hundreds of steps
(float16, float32, float64; BBI bounces, ECDSep's jitter, floor tuning).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from physopt_ref.core.context import StepContext, as_per_run
from physopt_ref.core.precision import state_dtype_of
from physopt_ref.optimizers.ecd_common import (
    EVENT_BOUNCE,
    EVENT_FLOOR,
    EVENT_NONE,
    EVENT_UPDATE,
    energy_shell_phase,
    initial_momentum,
    random_directions,
    redraw_directions,
)

__all__ = ["bbi_small", "ecdsep_small"]

#: NumPy's namespace as the general rules see it (array-api-compat's).
_XP = array_namespace(np.zeros(1))

_VECDOT = _XP.vecdot

#: (state_dtype choice, parameter dtype) -> the state dtype (``state_dtype_of``).
_WIDE: dict[tuple[Any, Any], Any] = {}


def _one_run(
    hp: Mapping[str, Any], param: Any, grad: Any, state: Any, loss: Any
) -> tuple[StepContext, Any, Any, Any] | None:
    """The context of the state dtype, the parameter, gradient and loss (a scalar) in that
    dtype; ``None`` where the small rules do not apply (an ensemble, the ``safety`` option)."""
    if state.count.ndim or hp["safety"] is not None:
        return None
    dtype = param.dtype
    wide = _WIDE.get((hp["state_dtype"], dtype))
    if wide is None:
        wide = _WIDE[(hp["state_dtype"], dtype)] = state_dtype_of(_XP, hp["state_dtype"], dtype)
    loss = as_per_run(_XP, loss, param, (), "loss")
    if wide != dtype:  # physopt_ref.core.precision.widened: the rule runs in the state dtype
        param, grad, loss = param.astype(wide), grad.astype(wide), loss.astype(wide)
    return StepContext(_XP, state.count, param), param, grad, loss[()]


def _finish(
    param: Any, new: Any, state: Any, *, update: bool, active: Any, retune: Any, loss: Any,
    selected_event: bool,
) -> tuple[Any, dict[str, Any]]:
    """The new parameter in its own dtype, and :func:`~.ecd_common.finish_call`'s fields.

    Each field has the type the general rule gives it, a 0-d array where that rule selects
    with ``where`` (``selected_event``: the event is selected there, by a bounce or a floor
    move), a NumPy scalar where it computes: the state is the same, types included.
    """
    event = EVENT_UPDATE if update else EVENT_NONE
    floor = state.floor
    if retune is not None:
        if retune:
            event = EVENT_FLOOR
            floor = loss - 4.0 * (floor - loss)  # ecd_common.lower_floor
        floor = np.array(floor)
    new = new.copy() if new is param else new  # a fresh array, as the general rule's select
    if new.dtype != param.dtype:
        new = new.astype(param.dtype)
    event = state.event.dtype.type(event)
    return new, {
        "floor": floor,
        "iteration": state.iteration + (1 if update else 0),
        "started": state.started | active,
        "event": np.array(event) if selected_event or retune is not None else event,
    }


def bbi_small(
    hp: Mapping[str, Any], param: Any, grad: Any, state: Any, loss: Any
) -> tuple[Any, tuple[Any, ...]] | None:
    """:func:`physopt_ref.bbi`'s step for one NumPy array and one run (the module notes)."""
    run = _one_run(hp, param, grad, state, loss)
    if run is None:
        return None
    ctx, theta, g, loss = run
    one = ctx.dtype.type(1.0)
    # The per-run fields as NumPy scalars (0-d arrays cost a ufunc dispatch per operation).
    started, p2 = state.started[()], state.p2[()]
    V = loss - state.floor[()]
    active, retune, init_now = energy_shell_phase(
        ctx, V, tuning=hp["v0_tuning"], eps2=hp["eps2"], started=started
    )
    Vs = V if active else one
    energy = Vs + hp["delta_e"] if init_now else state.energy[()]
    Es = energy if active else one
    shell = (Es - Vs) * (Es / Vs + 1.0)
    pi = state.momentum[0]
    if init_now:
        mag0 = _XP.sqrt(shell if shell > 0.0 else Es.dtype.type(0.0))
        (pi,), p2 = initial_momentum(ctx, [g], mag0, init_now, (pi,), p2)

    c0, c1, nb = state.fixed_counter[()], state.progress_counter[()], state.fixed_bounces
    fixed_hit = bool(hp["fixed_on"] and c0 == hp["t0"])
    bounce = bool(active) and (fixed_hit or bool(hp["progress_on"] and c1 == hp["t1"]))
    update = bool(active) and not bounce
    new = theta
    if update:
        r = _rescale(p2, shell, hp["eps1"]) if hp["rescale"] else 1.0
        v_over_e = Vs / Es
        dt = hp["lr"]
        kick = 0.5 * dt * (v_over_e + Es / Vs)
        pi = r * pi - kick * g
        new = theta + (dt * v_over_e) * pi
    elif bounce:
        (pi,) = redraw_directions(ctx, [pi], p2, np.True_, seed=hp["seed"],
                                  member=hp["member"], law=hp["bounce_direction"])
    else:
        pi = pi.copy()

    best = state.best_potential[()]
    new_min = update and bool(V < best)
    c1 = c1.dtype.type(0) if new_min or bounce else c1 + (1 if update else 0)
    c0 = c0 + (1 if update else 0)
    if hp["fixed_on"]:
        nb = nb + (1 if bounce and fixed_hit else 0)
        if bounce and fixed_hit:
            c0 = c0.dtype.type(0) if nb < hp["n_fixed_bounces"] else c0 + 1
    if retune is not None and retune and started:
        energy = energy + 5.0 * -V  # a floor move of a started run keeps E - V
    fixed_on = hp["fixed_on"]
    new, fields = _finish(param, new, state, update=update, active=active, retune=retune,
                          loss=loss, selected_event=fixed_on or hp["progress_on"])
    if bounce:
        fields["event"] = np.array(state.event.dtype.type(EVENT_BOUNCE))
    return new, (
        (pi,), np.array(energy), _dot(pi, pi), V, fields["floor"],
        np.array(V if new_min else best), np.array(c0) if fixed_on else c0,
        np.array(c1), nb, fields["iteration"], fields["started"], fields["event"],
    )


def ecdsep_small(
    hp: Mapping[str, Any], param: Any, grad: Any, state: Any, loss: Any
) -> tuple[Any, tuple[Any, ...]] | None:
    """:func:`physopt_ref.ecdsep`'s step for one NumPy array and one run (the module notes)."""
    run = _one_run(hp, param, grad, state, loss)
    if run is None:
        return None
    ctx, q, g, loss = run
    S = ctx.dtype.type
    dt, eta, nu, s, delta_e = (hp[k] for k in ("lr", "eta", "nu", "s", "delta_e"))
    started, p2 = state.started[()], state.p2[()]  # NumPy scalars, as in bbi_small
    gap = loss - state.floor[()]
    positive = gap > 0.0
    gap_s = _XP.where(positive, gap, 1.0)  # 0-d, as in the general rule: the same ``**``
    V = gap_s**eta if positive else S(0.0)
    if not _XP.isfinite(gap):
        V = gap
    active, retune, init_now = energy_shell_phase(
        ctx, V, tuning=hp["f0_tuning"], eps2=hp["eps2"], started=started
    )
    Vs = V if active else S(1.0)
    exp_energy = Vs * (s + delta_e) if init_now else state.exp_energy[()]
    p = state.momentum[0]
    if init_now:
        magnitude = np.asarray(float(delta_e) ** 0.5, dtype=ctx.dtype)  # ctx.full
        (p,), p2 = initial_momentum(ctx, [g], magnitude, init_now, (p,), p2)
    new = q
    if active:
        c = _rescale(p2, exp_energy / Vs - s, hp["eps1"]) if hp["rescale"] else 1.0
        p = c * p - (dt * eta / gap_s) * g
        p2k = _dot(p, p)
        total = s + p2k
        move = 2.0 * dt / total if total > 0.0 else S(0.0)
        new = q + move * p
        norm = _XP.sqrt(p2k) if _XP.isfinite(p2k) else _scaled_norm(p)
        if nu > 0.0:
            (z,) = random_directions(_XP, [p], seed=hp["seed"], member=hp["member"],
                                     counter=state.count, batch_ndim=0, law="isotropic")
            moving = norm > 0.0
            inv = 1.0 / norm if moving else S(0.0)
            u2 = 1.0 + 2.0 * nu * _dot(p, z) * inv + nu * nu * _dot(z, z)
            fac = norm / _XP.sqrt(u2) if moving and u2 > 0.0 else S(0.0)
            p = (fac * inv) * p + (fac * nu) * z
            p2k = _dot(p, p)
        p2 = p2k
    else:
        p = p.copy()
    new, fields = _finish(param, new, state, update=bool(active), active=active,
                          retune=retune, loss=loss, selected_event=False)
    return new, (
        (p,), np.array(exp_energy), np.array(p2), np.array(V), fields["floor"],
        fields["iteration"], fields["started"], fields["event"],
    )


def _dot(a: Any, b: Any) -> Any:
    """:func:`physopt_ref.core.tree.tree_dot` of one leaf and one run: the same ``vecdot``."""
    if a.ndim == 0:
        return a * b
    if a.ndim > 1:
        a, b = a.reshape(-1), b.reshape(-1)
    return _VECDOT(a, b, axis=-1)


def _rescale(p2: Any, target: Any, eps1: float) -> Any:
    """:func:`~.ecd_common.rescale_factor` of one run, on scalars: the same operations."""
    if abs(p2 - target) < eps1 or target < 0.0 or p2 == 0.0:
        return p2.dtype.type(1.0)
    return _XP.sqrt(target) / _XP.sqrt(p2)


def _scaled_norm(p: Any) -> Any:
    """:math:`|p|` where :math:`|p|^2` overflowed (``ecd_common.momentum_norm``'s scaled branch)."""
    from physopt_ref.core.numerics import tree_norm

    return _XP.astype(tree_norm(_XP, [p], 0), p.dtype)
