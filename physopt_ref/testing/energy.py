r"""Energy conservation of Hamiltonian steps (the energy-conserving descent family).

A :class:`Hamiltonian` says how to read a step's energy: the potential :math:`V` from the loss,
:math:`H(V, |p|^2)`, the conserved energy :math:`E` kept in the state, and the error measure.
Two ship with the kit:

- :class:`BornInfeld` (BBI, De Luca & Silverstein 2022, arXiv 2201.11137):
  :math:`V = F - \Delta V`, :math:`H = \sqrt{V^2 + V|\pi|^2}`, error :math:`|H - E|/E`;
- :class:`ECDSepEnergy` (ECDSep, the η form): :math:`V = (F - F_0)^\eta`,
  :math:`H = \log V + \log(s + |p|^2)`, :math:`E` = ``log(state.exp_energy)``, error
  :math:`|H - E|`.

The checks (numbers measured by the project's spec ``shared/specs/ecd.md`` §1.5, §3.3):

- :func:`check_energy_shell`: with a zero gradient a step is rescale + drift, so right after it
  :math:`H = E` to rounding (``rtol`` 1e-12; measured 3e-16 to 6e-16);
- :func:`check_energy_error_order`: the one-step error of :math:`H` scales as
  :math:`\Delta t^2` (fitted slope 2 ± 0.3; measured 2.000 for BBI, 1.98 for ECDSep);
- :func:`check_energy_drift_bounded`: without the rescale the drift over 400 steps stays small
  (< 0.1) and falls by more than 4 when :math:`\Delta t` drops from 1e-2 to 3e-3.

The states are read through ``state.p2`` (:math:`|p|^2` after the call), ``state.potential``
(:math:`V` at the call's input) and the energy field; a user's Hamiltonian step can follow the
same names or bring its own :class:`Hamiltonian`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from physopt_ref.backends import to_numpy
from physopt_ref.core.tree import tree_flatten, tree_unflatten
from physopt_ref.testing._result import CheckResult, Condition, combine

__all__ = [
    "BornInfeld",
    "ECDSepEnergy",
    "Hamiltonian",
    "check_energy_drift_bounded",
    "check_energy_error_order",
    "check_energy_shell",
    "max_energy_drift",
    "one_step_energy_errors",
]

LossGrad = Callable[[Any], tuple[Any, Any]]


def _f(x: Any) -> float:
    return float(to_numpy(x))


class Hamiltonian:
    """How a Hamiltonian step's energy is read (subclass and override the four methods)."""

    name = "H"

    def potential(self, loss: float) -> float:
        """:math:`V` from the loss."""
        raise NotImplementedError

    def value(self, potential: float, p2: float) -> float:
        """:math:`H(V, |p|^2)`."""
        raise NotImplementedError

    def energy(self, state: Any) -> float:
        """The conserved energy :math:`E` kept in ``state``, on the scale of :meth:`value`."""
        raise NotImplementedError

    def error(self, h: float, e: float) -> float:
        """The distance of :math:`H` from :math:`E`."""
        raise NotImplementedError

    def loss_at_fraction(self, fraction: float, state: Any) -> float:
        """A loss whose potential lies at ``fraction`` (in (0, 1]) of the way up to where the
        energy shell of ``state`` has no room for momentum."""
        raise NotImplementedError

    def shell_error(self, new_state: Any, old_state: Any) -> float:
        """After a zero-gradient step: the distance of the new state from the old energy shell,
        relative to ``max(|E|, 1)``."""
        h = self.value(_f(new_state.potential), _f(new_state.p2))
        e = self.energy(old_state)
        return abs(h - e) / max(abs(e), 1.0)


@dataclass(frozen=True)
class BornInfeld(Hamiltonian):
    r"""BBI: :math:`V = F - \Delta V`, :math:`H = \sqrt{V^2 + V|\pi|^2}`, :math:`E` =
    ``state.energy``, error :math:`|H - E|/E`."""

    v0: float = 0.0
    name = "sqrt(V^2 + V|p|^2)"

    def potential(self, loss: float) -> float:
        return float(loss) - self.v0

    def value(self, potential: float, p2: float) -> float:
        return math.sqrt(potential * potential + potential * p2)

    def energy(self, state: Any) -> float:
        return _f(state.energy)

    def error(self, h: float, e: float) -> float:
        return abs(h - e) / e

    def loss_at_fraction(self, fraction: float, state: Any) -> float:
        return fraction * self.energy(state) + self.v0


@dataclass(frozen=True)
class ECDSepEnergy(Hamiltonian):
    r"""ECDSep: :math:`V = (F - F_0)^\eta`, :math:`H = \log V + \log(s + |p|^2)`,
    :math:`E = \log` ``state.exp_energy``, error :math:`|H - E|`; on the shell
    :math:`V(s + |p|^2) = e^E`."""

    eta: float = 1.0
    s: float = 1.0
    f0: float = 0.0
    name = "log V + log(s + |p|^2)"

    def potential(self, loss: float) -> float:
        return (float(loss) - self.f0) ** self.eta

    def value(self, potential: float, p2: float) -> float:
        return math.log(potential) + math.log(self.s + p2)

    def energy(self, state: Any) -> float:
        return math.log(_f(state.exp_energy))

    def error(self, h: float, e: float) -> float:
        return abs(h - e)

    def loss_at_fraction(self, fraction: float, state: Any) -> float:
        potential = fraction * _f(state.exp_energy) / (self.s + 1e-3)  # e^E / V - s > 0
        return potential ** (1.0 / self.eta) + self.f0

    def shell_error(self, new_state: Any, old_state: Any) -> float:
        product = _f(new_state.potential) * (self.s + _f(new_state.p2))
        e = _f(old_state.exp_energy)
        return abs(product - e) / max(abs(e), 1.0)


def check_energy_shell(
    opt: Any, params: Any, state: Any, loss: Any, hamiltonian: Hamiltonian,
    *, rtol: float = 1e-12,
) -> CheckResult:
    """A zero-gradient step from ``state`` puts the run on its energy shell: ``H = E``.

    The step is then rescale + drift (+ any norm-preserving jitter), so :math:`H` after it
    equals the :math:`E` before it to rounding. ``values["state"]`` is the new state.
    """
    leaves, treedef = tree_flatten(params)
    from array_api_compat import array_namespace

    xp = array_namespace(*leaves)
    zeros = tree_unflatten(treedef, [xp.zeros_like(p) for p in leaves])
    _, new = opt.step(params, zeros, state, loss=loss)
    err = hamiltonian.shell_error(new, state)
    cond = Condition(f"|H - E| / max(|E|, 1) after the rescale, H = {hamiltonian.name}", err,
                     rtol, "<=", f"E = {hamiltonian.energy(state):.17g}")
    return CheckResult("energy on the shell after the rescale", cond,
                       {"loss": _f(loss) if not isinstance(loss, float) else loss},
                       values={"state": new})


def _warm_start(make: Callable[[float], Any], x0: Any, loss_grad: LossGrad, lr: float,
                warmup: int) -> tuple[Any, Any]:
    opt = make(lr)
    x = x0
    state = opt.init(x)
    for _ in range(warmup):
        f, g = loss_grad(x)
        x, state = opt.step(x, g, state, loss=f)
    return x, state


def one_step_energy_errors(
    make: Callable[[float], Any], x0: Any, loss_grad: LossGrad, hamiltonian: Hamiltonian,
    dts: Sequence[float], *, warmup_lr: float = 1e-2, warmup: int = 5,
) -> list[float]:
    """The error of :math:`H` after one step of each size in ``dts``, from one generic on-shell
    state (``warmup`` steps of ``make(warmup_lr)`` from ``x0``)."""
    x, state = _warm_start(make, x0, loss_grad, warmup_lr, warmup)
    energy = hamiltonian.energy(state)
    errs = []
    for dt in dts:
        f, g = loss_grad(x)
        x1, s1 = make(dt).step(x, g, state, loss=f)
        v1 = hamiltonian.potential(_f(loss_grad(x1)[0]))
        errs.append(hamiltonian.error(hamiltonian.value(v1, _f(s1.p2)), energy))
    return errs


def check_energy_error_order(
    make: Callable[[float], Any], x0: Any, loss_grad: LossGrad, hamiltonian: Hamiltonian,
    *, dts: Sequence[float] = (1e-2, 3e-3, 1e-3), order: float = 2.0, tolerance: float = 0.3,
    warmup_lr: float = 1e-2, warmup: int = 5,
) -> CheckResult:
    r"""The one-step error of :math:`H` scales as :math:`\Delta t^{\text{order}}`: the slope of
    log error against log Δt lies in ``order ± tolerance``."""
    errs = one_step_energy_errors(make, x0, loss_grad, hamiltonian, dts, warmup_lr=warmup_lr,
                                  warmup=warmup)
    with np.errstate(divide="ignore"):
        slope = float(np.polyfit(np.log(dts), np.log(errs), 1)[0]) if min(errs) > 0 else math.nan
    detail = "errors " + ", ".join(f"{e:.2e} at dt={dt:g}" for e, dt in zip(errs, dts,
                                                                              strict=True))
    return combine("energy error O(dt^2)", [
        Condition("fitted slope of log |H - E| vs log dt", slope, order - tolerance, ">=", detail),
        Condition("fitted slope of log |H - E| vs log dt", slope, order + tolerance, "<=", detail),
    ], {"dts": list(dts)}, values={"errors": errs, "slope": slope})


def max_energy_drift(
    opt: Any, x0: Any, loss_grad: LossGrad, hamiltonian: Hamiltonian, steps: int
) -> float:
    """The largest error of :math:`H` (at each step's input, with the momentum after the previous
    step) against the energy of the previous state, over ``steps`` steps."""
    x = x0
    state = opt.init(x)
    energy, worst = None, 0.0
    for _ in range(steps):
        f, g = loss_grad(x)
        if energy is not None:
            h = hamiltonian.value(hamiltonian.potential(_f(f)), _f(state.p2))
            worst = max(worst, hamiltonian.error(h, energy))
        x, state = opt.step(x, g, state, loss=f)
        energy = hamiltonian.energy(state)
    return worst


def check_energy_drift_bounded(
    make: Callable[[float], Any], x0: Any, loss_grad: LossGrad, hamiltonian: Hamiltonian,
    *, dts: tuple[float, float] = (1e-2, 3e-3), steps: int = 400, bound: float = 0.1,
    shrink: float = 4.0,
) -> CheckResult:
    """Without the rescale (``make(dt)`` builds it so) the drift of :math:`H` over ``steps``
    steps is nonzero, below ``bound`` at the larger Δt, and falls by more than ``shrink`` at the
    smaller one."""
    big, small = (max_energy_drift(make(dt), x0, loss_grad, hamiltonian, steps) for dt in dts)
    detail = f"max drift {big:.2e} at dt={dts[0]:g}, {small:.2e} at dt={dts[1]:g}"
    return combine("bounded energy drift without rescale", [
        Condition("max |H - E| over the run", big, 0.0, ">", detail + " (a drift must show)"),
        Condition("max |H - E| over the run", big, bound, "<", detail),
        Condition(f"max |H - E| at dt={dts[1]:g}", small, big / shrink, "<",
                  detail + f" (must fall by more than {shrink:g})"),
    ], {"dts": list(dts), "steps": steps}, values={"drifts": (big, small)})
