r"""The stability bound on quadratics: the measured step-size threshold against the theory.

On :math:`f = \tfrac k2 x^2` a first-order method is a linear recurrence; it is stable iff the
roots of its characteristic polynomial lie in the unit disc. With :math:`s = \eta k`:

- gradient descent, :math:`x_{t+1} = (1-s)x_t`: stable iff :math:`\eta < 2/k`;
- heavy ball (Polyak 1964), :math:`r^2 - (1+\beta-s)r + \beta`: stable iff :math:`0 \le \beta < 1`
  and :math:`\eta < 2(1+\beta)/k`;
- Nesterov in the form of Yang et al. (2018, Eq. 2.1), :math:`x_{t+1} = y_t - \eta\nabla f(y_t)`,
  :math:`y_{t+1} = x_{t+1} + \beta(x_{t+1}-x_t)`: :math:`r^2 - (1-s)(1+\beta)r + \beta(1-s)`,
  (from :math:`x_{t+2} = (1-s)y_{t+1}`); the Jury conditions :math:`1 \pm a + b > 0`,
  :math:`|b| < 1` for :math:`r^2 - a r + b` reduce to :math:`0 < s < 2(1+\beta)/(1+2\beta)`,
  i.e. :math:`\eta < 2(1+\beta)/((1+2\beta)k)`.

:func:`final_amplitude` runs a method from :math:`x_0 = 1`; :func:`check_stability_at` checks
"stable iff below the threshold" at one step size, :func:`check_stability_threshold` measures
the threshold by bisection and compares it with the theory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from physopt_ref.testing._result import CheckResult, Condition

__all__ = [
    "STABILITY_METHODS",
    "check_stability_at",
    "check_stability_threshold",
    "final_amplitude",
    "measure_stability_threshold",
    "stability_threshold",
]

#: The methods :func:`stability_threshold` knows (``"sgd"`` is an alias of ``"gd"``).
STABILITY_METHODS = ("gd", "sgd", "heavy_ball", "nesterov")

PROPERTY = "stability bound"


def stability_threshold(method: str, curvature: float, momentum: float = 0.0) -> float:
    """The largest stable step size on ``f = ½ k x²`` (the module docstring's formulas)."""
    k, beta = float(curvature), float(momentum)
    if not k > 0:
        raise ValueError(f"curvature must be > 0, got {curvature!r}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if method in ("gd", "sgd"):
        return 2.0 / k
    if method == "heavy_ball":
        return 2.0 * (1.0 + beta) / k
    if method == "nesterov":
        return 2.0 * (1.0 + beta) / ((1.0 + 2.0 * beta) * k)
    raise ValueError(f"method must be one of {STABILITY_METHODS}, got {method!r}")


def final_amplitude(opt: Any, curvature: float, steps: int = 400, blowup: float = 1e6) -> float:
    """``|x|`` after ``steps`` steps on ``f = ½ k x²`` from ``x = 1`` (``inf`` once it passes
    ``blowup``)."""
    x = np.asarray([1.0])
    state = opt.init(x)
    for _ in range(steps):
        x, state = opt.step(x, curvature * x, state, loss=0.5 * curvature * x[0] ** 2)
        if not abs(float(x[0])) <= blowup:
            return math.inf
    return abs(float(x[0]))


def check_stability_at(
    make: Callable[[float], Any], curvature: float, lr: float, threshold: float,
    *, steps: int = 400,
) -> CheckResult:
    """At step size ``lr``: ``|x| < 1`` after ``steps`` steps iff ``lr < threshold``.

    ``make(lr)`` builds the optimizer.
    """
    final = final_amplitude(make(lr), curvature, steps)
    stable = lr < threshold
    cond = Condition(f"|x| after {steps} steps from x = 1", final, 1.0, "<" if stable else ">",
                     f"lr = {lr:.6g} is {'below' if stable else 'above'} the threshold "
                     f"{threshold:.6g} ({lr / threshold:.4g} of it), k = {curvature:.6g}")
    return CheckResult(PROPERTY, cond, {"curvature": curvature, "lr": lr,
                                        "threshold": threshold})


def _stable(make: Callable[[float], Any], curvature: float, lr: float, steps: int) -> bool:
    return final_amplitude(make(lr), curvature, steps) < 1.0


def measure_stability_threshold(
    make: Callable[[float], Any], curvature: float, guess: float,
    *, steps: int = 400, rtol: float = 1e-3, span: float = 1e6,
) -> float:
    """The step size where ``make(lr)`` turns unstable on ``½ k x²``, by geometric bisection.

    Starts from a bracket around ``guess`` and widens it by factors of 4 up to ``span`` either
    way. Returns 0 when no step size down to ``guess/span`` is stable, ``inf`` when every one up
    to ``guess·span`` is.
    """
    low, high = guess / 2.0, guess * 2.0
    while not _stable(make, curvature, low, steps):
        high, low = low, low / 4.0
        if low < guess / span:
            return 0.0
    while _stable(make, curvature, high, steps):
        low, high = high, high * 4.0
        if high > guess * span:
            return math.inf
    while high / low > 1.0 + rtol:
        mid = math.sqrt(low * high)
        if _stable(make, curvature, mid, steps):
            low = mid
        else:
            high = mid
    return math.sqrt(low * high)


def check_stability_threshold(
    make: Callable[[float], Any], curvature: float, theory: float,
    *, rtol: float = 0.03, steps: int = 400,
) -> CheckResult:
    """The measured threshold (:func:`measure_stability_threshold`) within ``rtol`` of
    ``theory``: ``|measured/theory - 1| <= rtol``."""
    measured = measure_stability_threshold(make, curvature, theory, steps=steps)
    deviation = abs(measured / theory - 1.0) if math.isfinite(measured) else math.inf
    cond = Condition("|measured threshold / theory - 1|", deviation, rtol, "<=",
                     f"measured lr* = {measured:.6g}, theory {theory:.6g} (k = {curvature:.6g}, "
                     f"stable = |x| < 1 after {steps} steps)")
    return CheckResult(PROPERTY, cond, {"curvature": curvature, "theory": theory},
                       values={"measured": measured})
