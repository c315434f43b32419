r"""Dynamic relaxation: the damped central-difference scheme Dyna is derived from (Han 2018).

Han (arXiv 1805.04933, Secs. 2.1–2.3) starts from a mass on a spring with damping,

.. math::

    m a + c v + k x = 0 \quad\text{(Eq. 3)}, \qquad
    a + 2\zeta\omega v + \omega^2 x = 0 \quad\text{(Eq. 4)}, \qquad
    \omega = \sqrt{k/m},\ \zeta = c/(2\sqrt{mk}),

and integrates it explicitly with the central difference method (Eq. 5):
:math:`a_t = -k x_t/m`, :math:`v_{t+h/2} = v_{t-h/2} + a_t h`, :math:`x_{t+h} = x_t +
v_{t+h/2} h`. Dynamic relaxation adds the damping with :math:`a_t = (v_{t+h/2} - v_{t-h/2})/h`
and :math:`v_t = (v_{t+h/2} + v_{t-h/2})/2` (Eqs. 7–8), which solved for the new velocity is

.. math::

    v_{t+h/2} = \beta\, v_{t-h/2} - \frac{1-\beta}{2\zeta}\,\omega x_t \quad\text{(Eq. 9)},
    \qquad \beta = 1 - \frac{2\zeta\omega h}{1+\zeta\omega h}
    = \frac{1-\zeta\omega h}{1+\zeta\omega h} \quad\text{(Eq. 10)}.

This module implements that scheme for a system whose mass, stiffness and damping are known
(:func:`dynamic_relaxation`, an optimizer on the library's contract) and the numbers that go
with it (:func:`critical_time_step`, :func:`relaxation_beta`,
:func:`discrete_critical_damping`, :func:`relaxation_spectral_radius`).

Two facts about the discrete scheme, derived here from its characteristic polynomial
:math:`(1+\zeta\omega h) r^2 + (\omega_i^2 h^2 - 2) r + (1-\zeta\omega h) = 0` for a mode of
frequency :math:`\omega_i` (damping set with :math:`\omega`), and checked by the tests:

* **Stability** (Eq. 6): bounded iff :math:`h < 2/\omega_i` for every mode, i.e.
  :math:`h < 2/\omega_{\max}`, *for every* :math:`\zeta \ge 0` (Jury: the polynomial at
  :math:`r = -1` is :math:`4 - \omega_i^2 h^2`). The paper's remark that damping raises the
  limit to :math:`2/(\omega\sqrt{1-\zeta^2})` does not apply to this averaged-velocity
  discretisation.
* **Critical damping**: the two roots coincide at
  :math:`\zeta^* = \sqrt{1 - (\omega h/2)^2}`, slightly below 1; there the asymptotic decay per
  step is fastest. :math:`\zeta = 1` (the paper's choice, Sec. 2.3 and Fig. 2) is within
  :math:`O(\omega^2 h^2)` of it. From rest, :math:`\zeta \in [1, 2]` with
  :math:`\zeta\omega h \le 1` does not overshoot (real, positive roots; at :math:`\zeta = 1`
  :math:`x_n = (r_1^n - r_2^{n+1})/(\omega h)` with :math:`r_1 = 1/(1+\omega h) > r_2 = 1 -
  \omega h`); :math:`\zeta \le 0.9\zeta^*` overshoots. So :math:`\zeta = 1` is the fastest
  ratio *without overshoot*; to a loose tolerance a slightly under-damped ratio (0.8–0.9)
  settles a little sooner (measured in the tests), as for the continuous oscillator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from physopt_ref.core.context import StepContext
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.registry import register
from physopt_ref.core.schedules import check_real_or_schedule
from physopt_ref.core.validate import check_real

__all__ = [
    "DynamicRelaxationState",
    "critical_time_step",
    "discrete_critical_damping",
    "dynamic_relaxation",
    "relaxation_beta",
    "relaxation_spectral_radius",
]


class DynamicRelaxationState(NamedTuple):
    r"""State of :func:`dynamic_relaxation`.

    Attributes
    ----------
    count : array
        Steps taken by each run (``int32``, batch shape).
    velocity : tuple of arrays
        The half-step velocity :math:`v_{t-h/2}` per leaf (zero at rest before the first step).
    """

    count: Any
    velocity: tuple[Any, ...]


def _positive(name: str, value: Any, symbol: str) -> float:
    return check_real(name, value, symbol=symbol, low=0.0, low_open=True)


def critical_time_step(omega_max: float) -> float:
    r"""The central-difference stability limit :math:`h_\text{critical} = 2/\omega_{\max}` (Eq. 6).

    For the damped scheme of :func:`dynamic_relaxation` the limit is the same for every
    damping ratio (see the module notes).
    """
    return 2.0 / _positive("omega_max", omega_max, "ω_max")


def relaxation_beta(omega: float, zeta: float, h: float) -> float:
    r""":math:`\beta = 1 - 2\zeta\omega h/(1+\zeta\omega h)` (Eq. 10).

    :math:`\beta \in (-1, 1]`; :math:`\beta = 1` undamped (Eq. 5), negative once
    :math:`\zeta\omega h > 1`.
    """
    omega = _positive("omega", omega, "ω")
    zeta = check_real("zeta", zeta, symbol="ζ", low=0.0)
    h = _positive("h", h, "h")
    return 1.0 - 2.0 * zeta * omega * h / (1.0 + zeta * omega * h)


def discrete_critical_damping(omega: float, h: float) -> float:
    r"""The ratio :math:`\zeta^* = \sqrt{1-(\omega h/2)^2}` at which the scheme's two roots meet.

    Defined for :math:`0 < \omega h \le 2`. Below it the discrete trajectory oscillates, at and
    above it the roots are real; the spectral radius is smallest there. It tends to the
    continuous critical damping :math:`\zeta = 1` as :math:`\omega h \to 0`.
    """
    omega = _positive("omega", omega, "ω")
    h = check_real("h", h, symbol="h", low=0.0, high=2.0 / omega, low_open=True)
    return math.sqrt(max(0.0, 1.0 - (omega * h / 2.0) ** 2))


def relaxation_spectral_radius(
    omega: float, zeta: float, h: float, omega_mode: float | None = None
) -> float:
    r"""Spectral radius of one step of the scheme on a mode of frequency ``omega_mode``.

    The damping is set with ``omega`` (:math:`c = 2\zeta m\omega`), the mode has stiffness
    :math:`m\,\omega_\text{mode}^2` (default ``omega``). The largest root modulus of
    :math:`(1+\zeta\omega h) r^2 + (\omega_\text{mode}^2 h^2 - 2) r + (1-\zeta\omega h)`:
    below 1 the mode decays, above 1 it grows.
    """
    omega = _positive("omega", omega, "ω")
    zeta = check_real("zeta", zeta, symbol="ζ", low=0.0)
    h = _positive("h", h, "h")
    w = omega if omega_mode is None else check_real("omega_mode", omega_mode, symbol="ω_i", low=0.0)
    a = 1.0 + zeta * omega * h
    b = w * w * h * h - 2.0
    c = 1.0 - zeta * omega * h
    disc = b * b - 4.0 * a * c
    if disc >= 0.0:
        root = math.sqrt(disc)
        return max(abs((-b + root) / (2.0 * a)), abs((-b - root) / (2.0 * a)))
    return math.sqrt(abs(c / a))


def dynamic_relaxation(
    h: float | None = None, mass: float = 1.0, stiffness: float = 1.0, zeta: Any = 1.0
) -> Optimizer:
    r"""Dynamic relaxation: central differences with damping (Eqs. 5, 9, 10) as an optimizer.

    The parameters are the coordinates :math:`x`, the gradients the restoring force
    :math:`\nabla E(x)` (:math:`kx` for the spring of Eq. 1). Per element, from rest
    (:math:`v_{-h/2} = 0`):

    .. math::

        v_{t+h/2} &= \beta\, v_{t-h/2} - \frac{1-\beta}{2\zeta}\,\frac{\nabla E(x_t)}{m\omega}
        = \beta\, v_{t-h/2} - \frac{h}{m(1+\zeta\omega h)}\,\nabla E(x_t), \\
        x_{t+h} &= x_t + h\, v_{t+h/2},

    with :math:`\omega = \sqrt{k/m}` and :math:`\beta` of Eq. 10. For the spring,
    :math:`\nabla E/(m\omega) = \omega x`, which is Eq. 9; the second form is the one computed
    (it also covers :math:`\zeta = 0`, where it is Eq. 5: :math:`\beta = 1`,
    :math:`v_{t+h/2} = v_{t-h/2} + a_t h` with :math:`a_t = -\nabla E/m`). The damping
    coefficient is :math:`c = 2\zeta m\omega` (Sec. 2.1).

    For a system with several coordinates the stiffness parameter is the reference that sets
    the damping; the scheme is stable iff :math:`h < 2/\omega_{\max}` over the system's modes
    (Eq. 6), whatever :math:`\zeta`.

    Parameters
    ----------
    h : float or per-run array, optional
        Time step :math:`h \ge 0` (0: no move, :math:`\beta = 1` and the kick vanishes; nothing
        divides by h). Default :math:`1/\omega`, half the critical step of Eq. 6 (the
        paper fixes none). Steps beyond :math:`2/\omega_{\max}` are accepted (they diverge; the
        tests show it).
    mass : float
        :math:`m > 0`; default 1.
    stiffness : float
        :math:`k > 0`, setting :math:`\omega = \sqrt{k/m}`; default 1.
    zeta : float, per-run array or schedule
        Damping ratio :math:`\zeta \ge 0`; default 1, critical damping ("The central difference
        scheme is unconditionally stable without oscillating if the timestep is smaller than
        the critical timestep ... with a corresponding damping ratio :math:`\zeta = 1`",
        Sec. 2.3). A callable of the step count varies it (:mod:`physopt_ref.core.schedules`).

    Differences from the authors' code
    ----------------------------------
    LS-DYNA's implementation is not public; this follows the paper's equations. Choices: the
    first half-step velocity is :math:`v_{-h/2} = 0` (start at rest); mass and stiffness are
    scalars shared by all coordinates.
    """
    mass = _positive("mass", mass, "m")
    stiffness = _positive("stiffness", stiffness, "k")
    omega = math.sqrt(stiffness / mass)
    hp = {
        "h": 1.0 / omega if h is None else check_real(
            "h", h, symbol="h", low=0.0, per_run=True
        ),
        "mass": mass,
        "stiffness": stiffness,
        "zeta": check_real_or_schedule("zeta", zeta, symbol="ζ", low=0.0),
    }
    return Optimizer(
        "dynamic_relaxation",
        hp,
        init=_relaxation_init,
        update=_relaxation_update,
        state_type=DynamicRelaxationState,
        elementwise=True,
        derived={"omega": omega},
    )


def _relaxation_init(hp: Mapping[str, Any], ctx: StepContext, leaves: list[Any]) -> dict[str, Any]:
    return {"velocity": ctx.zeros_like(leaves)}


def _relaxation_update(
    hp: Mapping[str, Any],
    ctx: StepContext,
    params: list[Any],
    grads: list[Any],
    state: DynamicRelaxationState,
    loss: Any,
) -> tuple[list[Any], dict[str, Any]]:
    h = ctx.hp(hp["h"])
    damp = ctx.hp(hp["zeta"]) * hp["omega"] * h
    beta = (1.0 - damp) / (1.0 + damp)  # Eq. 10
    kick = h / (hp["mass"] * (1.0 + damp))
    vel = tuple(
        ctx.leaf(beta, v) * v - ctx.leaf(kick, g) * g
        for v, g in zip(state.velocity, grads, strict=True)
    )
    new = [x + ctx.leaf(h, v) * v for x, v in zip(params, vel, strict=True)]
    return new, {"velocity": vel}


register(
    "dynamic_relaxation",
    dynamic_relaxation,
    test_hyperparameters={"h": 0.6, "mass": 0.5, "stiffness": 2.0, "zeta": 0.4},
    family="dyna",
    sweep={"h": (0.3, 0.6, 0.9), "zeta": (0.0, 0.4, 1.0)},
)
