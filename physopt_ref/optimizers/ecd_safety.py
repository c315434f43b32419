r"""Step-size safety for the energy-conserving steps: backtrack onto the energy shell.

An option of :func:`physopt_ref.bbi` and :func:`physopt_ref.ecdsep`, ``safety="backtrack"``,
**off by default** (``safety=None``: the steps follow the authors' code). Issue 27.

**The shell.** On its energy shell the kinetic term is never negative, which bounds the
potential:

.. math::

    \text{BBI: } |\pi|^2 = \frac{E^2}{V} - V \ge 0 \iff V \le E, \qquad
    \text{ECDSep: } |p|^2 = \frac{e^E}{V} - s \ge 0 \iff s\,V \le e^E.

The continuous dynamics never leaves this region: a particle turns round where its kinetic
term vanishes. The discrete step can. Its kick and drift change :math:`H` by
:math:`O(\Delta t^2)` per step (spec ``ecd.md`` §1.5, §3.3). On an ill-conditioned :math:`F`,
the first drift from rest jumps across the valley. With BBI and :math:`\delta E = 0` that drift
is :math:`\theta_1 = \theta_0 - \Delta t^2\,\nabla F(\theta_0)`, gradient descent with step
:math:`\Delta t^2`, so it lands at :math:`V \gg E`. From there the authors' code skips the
rescale (it has no real solution), and BBI's drift coefficient :math:`\Delta t\,V/E` exceeds
:math:`\Delta t` and grows: the run diverges (issue 27: BBOB f2, f10-f12).

**Backtracking.** With ``safety="backtrack"``, a call that finds a started run off its shell
(:math:`V_t > E`, resp. :math:`s V_t > e^E`) makes no update. It backtracks instead:

.. math::

    \theta \leftarrow \theta_a + \tfrac12\,(\theta_t - \theta_a), \qquad
    \Delta t_\text{run} = 2^{-k/2}\,\Delta t, \quad k \leftarrow k + 1,

where :math:`\theta_a`, the *anchor*, is the run's parameters at its last update call, where
:math:`V \le E` was measured. The momentum, the energy and the counters are kept, and the
call's ``event`` is 4. Repeated calls bisect the segment from :math:`\theta_a` to
:math:`\theta_t`. For a continuous :math:`V` with :math:`V(\theta_a) \le E < V(\theta_t)`,
that segment crosses the shell, so the run resumes inside it, and the next update's rescale
puts the momentum back on the shell. The run's step size :math:`\Delta t_\text{run}` stays
reduced for the rest of the run. From rest a step moves :math:`\theta` by
:math:`O(\Delta t^2)`, so the reduced step repeats the accepted displacement,
:math:`2^{-k}` of the rejected one. The factor :math:`2^{-k/2}` multiplies the kick and the
drift coefficients.

A started run whose loss is not finite (a NaN or infinite V, e.g. a finite-difference
gradient taken past the float range) backtracks as well; without the option such a call is a
no-op that leaves the run where it is. The gradient of a backtracking call is not used, so a
non-finite one does no harm.

**Bounds.** A run backtracks at most :data:`MAX_BACKTRACKS` times in a row (the move shrinks
by :math:`2^{-30}`). A further call off the shell can happen with a noisy loss, where
:math:`V` at the anchor itself varies. That call updates as the authors' code does and gives
back the episode's step reductions.

**Cost.** No extra evaluation: the off-shell :math:`V` is the loss the loop evaluated for
this call; the gradient of a backtracking call goes unused. Memory: one copy of the
parameters (the anchor) and two int32 counters per run. The state carries them only with the
option on: the optimizer's state fields, then ``anchor``, ``backtracks`` (in a row) and
``step_level`` (:math:`k`); the state type is then named ``Chained<State>``
(:func:`physopt_ref.transforms.chain.chained_state_type`). A run that never leaves its shell
takes, bit for bit, the steps of ``safety=None``: its factor :math:`2^{-0/2}` is exactly 1
(``tests/test_ecd_safety.py``).

**Measured** (``benchmarks/bench_ecd_safety.py``, ``docs/bbob.md``): on BBOB in 2-D, floor at
:math:`f_\text{opt}`, 1000·d evaluations, BBI's walkers diverged 71 of 96 times without the
option and once with it, and the fraction of targets reached went from 0.19 to 0.35. The
reduced step resolves the stiff direction, so progress along the soft one is slow. ECDSep
seldom leaves its shell on these functions, and there the option changes nothing.
"""

from __future__ import annotations

import math
from typing import Any

from physopt_ref.core.context import StepContext
from physopt_ref.core.tree import expand_to_leaf, select_tree
from physopt_ref.core.validate import check_choice
from physopt_ref.transforms.chain import chained_state_type

__all__ = [
    "MAX_BACKTRACKS",
    "SAFETIES",
    "SAFETY_FIELDS",
    "ShellGuard",
    "check_safety",
    "safety_init",
    "safety_state_type",
]

#: The accepted values of ``safety`` besides ``None`` (the default: the authors' steps).
SAFETIES = ("backtrack",)

#: The state fields the option adds after the optimizer's own.
SAFETY_FIELDS = ("anchor", "backtracks", "step_level")

#: Backtracks in a row before a call off the shell updates anyway (the move shrunk by 2^-30).
MAX_BACKTRACKS = 30

_HALF_LOG2 = -0.5 * math.log(2.0)


def check_safety(value: Any) -> str | None:
    """Validate a ``safety`` hyperparameter: ``None`` or one of :data:`SAFETIES`."""
    return None if value is None else check_choice("safety", value, SAFETIES)


def safety_state_type(core: type[Any], safety: str | None) -> type[Any]:
    """``core``, or with the option on, ``core``'s fields followed by :data:`SAFETY_FIELDS`."""
    return core if safety is None else chained_state_type(core, SAFETY_FIELDS)


def safety_init(safety: str | None, ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    """The option's initial fields (none when it is off): an anchor, set at the run's first
    update, and zero counters."""
    if safety is None:
        return {}
    return {
        "anchor": ctx.zeros_like(leaves),
        "backtracks": ctx.full(0, ctx.xp.int32),
        "step_level": ctx.full(0, ctx.xp.int32),
    }


class ShellGuard:
    r"""One call's backtracking decisions, per run; with the option off it changes nothing.

    Parameters
    ----------
    safety : {None, "backtrack"}
        The optimizer's ``safety`` hyperparameter.
    ctx, state
        The call's context and the optimizer's state (with :data:`SAFETY_FIELDS` when on).
    active : bool array
        The runs above their stopping threshold (V finite).
    potential : array
        :math:`V` per run; a started run with a non-finite V (a NaN or infinite loss) is off
        its shell too.
    kinetic : array or callable
        The squared momentum the shell asks for at :math:`\theta_t` (BBI
        :math:`E^2/V - V`, ECDSep :math:`e^E/V - s`), or a callable giving it (called only
        with the option on); negative means off the shell.

    Attributes
    ----------
    backtrack : bool array or None
        Started runs off their shell that backtrack on this call (``None`` when off).
    live : bool array
        ``active`` runs that do not backtrack: those that may update or bounce.
    """

    __slots__ = ("backtrack", "ctx", "factor", "give_up", "live", "state")

    def __init__(self, safety: str | None, ctx: StepContext, state: Any, active: Any,
                 potential: Any, kinetic: Any) -> None:
        self.ctx, self.state, self.live = ctx, state, active
        self.backtrack = self.give_up = self.factor = None
        if safety is None:
            return
        xp = ctx.xp
        off_shell = (kinetic() if callable(kinetic) else kinetic) < 0.0
        left = state.started & ((active & off_shell) | ~xp.isfinite(potential))
        # A run that backtracked MAX_BACKTRACKS times in a row updates: it gives up, with the
        # step size of before the episode.
        self.give_up = left & (state.backtracks >= MAX_BACKTRACKS)
        self.backtrack = left & ~self.give_up
        self.live = active & ~self.backtrack
        level = xp.where(self.give_up, state.step_level - MAX_BACKTRACKS, state.step_level)
        self.factor = xp.exp(xp.astype(level, ctx.dtype) * _HALF_LOG2)  # exactly 1 at k = 0

    def scale(self, coefficient: Any) -> Any:
        """A kick or drift coefficient times the run's :math:`2^{-k/2}` (unchanged when off)."""
        return coefficient if self.factor is None else coefficient * self.factor

    def finish(self, params: list[Any], new_params: list[Any], update: Any
               ) -> tuple[list[Any], dict[str, Any]]:
        """The call's parameters and the option's fields (``{}`` when off).

        Backtracking runs move half way back to their anchor; runs that ``update`` make their
        input parameters the new anchor (a fresh array: the state never shares memory with
        the caller's parameters, which a donated or in-place step may overwrite).
        """
        if self.backtrack is None:
            return new_params, {}
        ctx, state = self.ctx, self.state
        xp, bn = ctx.xp, ctx.batch_ndim
        back = [a + 0.5 * (p - a) for a, p in zip(state.anchor, params, strict=True)]
        out = select_tree(xp, self.backtrack, back, new_params, bn)
        anchor = tuple(
            xp.where(expand_to_leaf(xp, update, p, bn), p, a)
            for p, a in zip(params, state.anchor, strict=True)
        )
        count, level = state.backtracks, state.step_level
        one_i = xp.astype(self.backtrack, count.dtype)
        fields = {
            "anchor": anchor,
            "backtracks": xp.where(update | self.give_up, ctx.scalar(0), count + one_i),
            "step_level": xp.where(self.give_up, level - MAX_BACKTRACKS, level + one_i),
        }
        return out, fields
