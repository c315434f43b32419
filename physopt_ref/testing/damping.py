r"""Damping regimes of momentum methods, measured on runs (the damped-oscillator view).

Yang, Arora, Braverman & Zhao (2018) read heavy ball / Nesterov on :math:`f = \tfrac K2 x^2` as a
damped oscillator (:mod:`physopt_ref.optimizers.oscillator`). The checks run a momentum method
built by
``make(lr, momentum)`` from :math:`x_0 = 1` and measure the per-step contraction of the envelope
:math:`\max|x|`:

- :func:`check_critical_damping`: at the critical momentum the rate matches the continuous
  model's :math:`c/(2m) = (1-\alpha)/(1+\alpha)` within 5 % (2.3-3.3 % measured for
  :math:`K\eta \in [10^{-4}, 3\cdot10^{-3}]`), and pushing the momentum towards 1
  (under-damped) or halving it (over-damped) contracts more slowly (below 0.9 of it);
- :func:`check_contraction_rate`: the rate equals the exact spectral radius of the recurrence
  (:func:`~physopt_ref.discrete_contraction`) within 5 %;
- :func:`check_energy_decay`: under-damped, the mechanical energy decays at :math:`c/m` (twice
  the amplitude rate; 0.2 % measured, 2 % allowed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from physopt_ref.optimizers.oscillator import (
    amplitude_decay_per_step,
    critical_momentum,
    damping,
    discrete_contraction,
    mass,
    mechanical_energy,
)
from physopt_ref.testing._result import CheckResult, Condition, combine

__all__ = [
    "check_contraction_rate",
    "check_critical_damping",
    "check_energy_decay",
    "envelope_rate",
    "momentum_trajectory",
]

Make = Callable[[float, float], Any]


def momentum_trajectory(make: Make, lr: float, momentum: float, curvature: float,
                        steps: int) -> np.ndarray:
    """``x_0 = 1, x_1, ..., x_steps`` of ``make(lr, momentum)`` on ``f = ½ K x²``."""
    opt = make(lr, momentum)
    x = np.asarray([1.0])
    state = opt.init(x)
    xs = [1.0]
    for _ in range(steps):
        x, state = opt.step(x, curvature * x, state, loss=0.5 * curvature * x[0] ** 2)
        xs.append(float(x[0]))
    return np.asarray(xs)


def envelope_rate(xs: np.ndarray, n1: int, n2: int, window: int) -> float:
    """−ln of the per-step contraction of the envelope ``max|x|`` (over ``window`` steps)
    between steps ``n1`` and ``n2``."""
    a = np.max(np.abs(xs[n1 - window : n1 + 1]))
    b = np.max(np.abs(xs[n2 - window : n2 + 1]))
    return -math.log(b / a) / (n2 - n1)


def check_critical_damping(
    make: Make, lr: float, curvature: float, *, rtol: float = 0.05, slower: float = 0.9
) -> CheckResult:
    """At the critical momentum the envelope contracts at the theory's rate, and fastest."""
    k = curvature
    s = lr * k
    alpha = critical_momentum(lr, k)
    theory = -math.log(amplitude_decay_per_step(lr, alpha, k))
    n1 = int(30 / theory)
    n2 = 2 * n1
    window = int(2 * math.pi / math.sqrt(s)) + 2  # one oscillation period of the slow mode
    critical = envelope_rate(momentum_trajectory(make, lr, alpha, k, n2), n1, n2, 5)
    conditions = [Condition("|measured rate / theory - 1| at critical damping",
                            abs(critical / theory - 1.0), rtol, "<=",
                            f"measured {critical:.6g}, theory (1-a)/(1+a) = {theory:.6g}, "
                            f"a = {alpha:.6g}")]
    for label, other in (("under", alpha + 0.5 * (1 - alpha)), ("over", 0.5 * alpha)):
        rate = envelope_rate(momentum_trajectory(make, lr, other, k, n2), n1, n2, window)
        conditions.append(Condition(f"{label}-damped rate / critical rate", rate / critical,
                                    slower, "<", f"momentum {other:.6g}: rate {rate:.6g}"))
    return combine("critical damping is fastest", conditions,
                   {"lr": lr, "curvature": k}, values={"rate": critical, "theory": theory})


def check_contraction_rate(
    make: Make, lr: float, momentum: float, curvature: float, *, rtol: float = 0.05
) -> CheckResult:
    """The measured contraction rate equals the recurrence's spectral radius within ``rtol``.

    The windows follow the oscillation period; the caller avoids cases where the rate is not
    measurable in a few thousand steps (spectral radius outside (0.8, 0.99)) and where the roots
    nearly merge (the polynomial factor of critical damping biases a finite window).
    """
    k = curvature
    rho = discrete_contraction(lr, momentum, k)
    rate = -math.log(rho)
    b = 1 + momentum - lr * k
    theta = math.acos(max(-1.0, min(1.0, b / (2 * math.sqrt(momentum))))) if momentum else math.pi
    window = int(2 * math.pi / max(theta, 1e-3)) + 2
    n1 = int(10 / rate) + window
    n2 = n1 + int(30 / rate)
    measured = envelope_rate(momentum_trajectory(make, lr, momentum, k, n2), n1, n2,
                             min(window, n1))
    cond = Condition("|measured rate / spectral-radius rate - 1|", abs(measured / rate - 1.0),
                     rtol, "<=", f"measured {measured:.6g}, -ln rho = {rate:.6g}")
    return CheckResult("contraction at the spectral radius", cond,
                       {"lr": lr, "momentum": momentum, "curvature": k})


def check_energy_decay(
    make: Make, lr: float, momentum: float, curvature: float = 1.0, *, rtol: float = 0.02,
    decay: float = 1e-10,
) -> CheckResult:
    """Under-damped: the mechanical energy decays as ``exp(-c t/m)`` (fitted slope within
    ``rtol``) and falls below ``decay`` of its start over ``40 m/c`` steps."""
    k = curvature
    c_over_m = damping(lr, momentum) / mass(lr, momentum)
    n = int(40 / c_over_m)
    xs = momentum_trajectory(make, lr, momentum, k, n)
    energy = mechanical_energy(xs[:, None], 0.5 * k * xs**2, lr, momentum)
    slope = float(np.polyfit(np.arange(energy.shape[0]), np.log(energy), 1)[0])
    return combine("energy decays at c/m", [
        Condition("|fitted decay rate / (c/m) - 1|", abs(-slope / c_over_m - 1.0), rtol, "<=",
                  f"fitted {-slope:.6g}, c/m = {c_over_m:.6g}"),
        Condition("final energy / initial energy", float(energy[-1] / energy[0]), decay, "<",
                  f"after {n} steps"),
    ], {"lr": lr, "momentum": momentum, "curvature": k})
