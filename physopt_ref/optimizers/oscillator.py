r"""The damped-oscillator view of momentum methods (Yang, Arora, Braverman & Zhao 2018).

Yang et al. (NeurIPS 2018, arXiv 1612.02803, Sec. 2.1) write heavy ball / Nesterov with step
size :math:`\eta`, momentum :math:`\alpha` and a time scale :math:`h` (:math:`t = kh`) and expand
to second order (their Eq. 2.4), obtaining the damped particle (Eq. 2.5)

.. math::

    m \ddot X + c \dot X + \nabla f(X) = 0, \qquad
    m = \frac{(1+\alpha) h^2}{2\eta}, \qquad c = \frac{(1-\alpha) h}{\eta}.

On the quadratic :math:`f = \tfrac{K}{2}\|x - x^*\|^2` the particle is a damped harmonic
oscillator with damping ratio :math:`\zeta = c/(2\sqrt{mK}) = (1-\alpha)/\sqrt{2\eta(1+\alpha)K}`
(independent of :math:`h`). It is critically damped at :math:`\zeta = 1`, i.e. at

.. math::

    \alpha_\text{crit} = 1 + K\eta - \sqrt{K^2\eta^2 + 4K\eta} \approx 1 - 2\sqrt{K\eta},

where the amplitude decays fastest, as :math:`e^{-ct/(2m)}`: per step (:math:`t = h`) by the
factor :math:`\exp(-(1-\alpha)/(1+\alpha))` (Yang et al. Sec. 2.2, "the fastest convergence rate
is obtained when the system is critically damped, :math:`c^2 = 4mK`"). Over-damped, the slow
mode decays as :math:`\exp(-\tfrac12[c/m - \sqrt{c^2/m^2 - 4K/m}]\,t)`. The energy
:math:`E = f(X) + \tfrac{m}{2}\|\dot X\|^2` obeys :math:`\dot E = -c\|\dot X\|^2`.

Yang et al. treat Nesterov; heavy ball differs only in where the gradient is taken, an
:math:`O(\eta h)` term, so it has the same :math:`m` and :math:`c` at this resolution
(spec §d.2). Their Sec. 2.2 exponents are amplitude rates (the energy decays twice as fast,
spec §d.3); the functions below return amplitude rates.

All functions take and return Python floats (they describe hyperparameters, not device data),
except :func:`mechanical_energy`, which works on arrays of any namespace.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from array_api_compat import array_namespace

from physopt_ref.core.validate import check_real

__all__ = [
    "amplitude_decay_per_step",
    "critical_momentum",
    "damping",
    "damping_ratio",
    "damping_regime",
    "discrete_contraction",
    "mass",
    "mechanical_energy",
]


def _lr(lr: float) -> float:
    return check_real("lr", lr, symbol="η", low=0.0, low_open=True)


def _alpha(momentum: float) -> float:
    return check_real("momentum", momentum, symbol="α", low=0.0, high=1.0, high_open=True)


def _h(h: float) -> float:
    return check_real("h", h, symbol="h", low=0.0, low_open=True)


def _k(curvature: float) -> float:
    return check_real("curvature", curvature, symbol="K", low=0.0, low_open=True)


def mass(lr: float, momentum: float, h: float = 1.0) -> float:
    r"""Particle mass :math:`m = (1+\alpha)h^2/(2\eta)` (Yang et al. Eq. 2.5).

    Plain gradient descent (:math:`\alpha = 0`, :math:`h \asymp \eta`) has a mass that vanishes
    with :math:`\eta`: "VGD corresponds to a massless particle".
    """
    return (1.0 + _alpha(momentum)) * _h(h) ** 2 / (2.0 * _lr(lr))


def damping(lr: float, momentum: float, h: float = 1.0) -> float:
    r"""Damping coefficient :math:`c = (1-\alpha)h/\eta` (Yang et al. Eq. 2.5)."""
    return (1.0 - _alpha(momentum)) * _h(h) / _lr(lr)


def damping_ratio(lr: float, momentum: float, curvature: float) -> float:
    r"""Damping ratio :math:`\zeta = c/(2\sqrt{mK}) = (1-\alpha)/\sqrt{2\eta(1+\alpha)K}`."""
    eta, alpha, k = _lr(lr), _alpha(momentum), _k(curvature)
    return (1.0 - alpha) / math.sqrt(2.0 * eta * (1.0 + alpha) * k)


def damping_regime(
    lr: float, momentum: float, curvature: float, *, rtol: float = 1e-9
) -> Literal["under", "critical", "over"]:
    """``"under"`` (ζ < 1), ``"critical"`` (ζ = 1 within ``rtol``) or ``"over"`` (ζ > 1)."""
    zeta = damping_ratio(lr, momentum, curvature)
    if abs(zeta - 1.0) <= rtol:
        return "critical"
    return "under" if zeta < 1.0 else "over"


def critical_momentum(lr: float, curvature: float) -> float:
    r"""The momentum at which :math:`\zeta = 1`: :math:`1 + K\eta - \sqrt{K^2\eta^2 + 4K\eta}`.

    Solves :math:`(1-\alpha)^2 = 2K\eta(1+\alpha)` for the root in :math:`[0, 1)` (spec §d.3).
    It is :math:`\ge 0` only for :math:`K\eta \le 1/2`; beyond that no momentum reaches critical
    damping (gradient descent alone is already over-damped) and a ``ValueError`` is raised.
    """
    eta, k = _lr(lr), _k(curvature)
    s = k * eta
    if s > 0.5:
        raise ValueError(
            f"no momentum in [0, 1) is critical for K·η = {s:g} > 1/2 (gradient descent is "
            "over-damped already)"
        )
    # 1 + s - sqrt(s^2 + 4s) without cancellation: (1 + s)^2 - (s^2 + 4s) = 1 - 2s.
    return (1.0 - 2.0 * s) / (1.0 + s + math.sqrt(s * s + 4.0 * s))


def amplitude_decay_per_step(lr: float, momentum: float, curvature: float) -> float:
    r"""The continuous model's amplitude decay factor over one step (:math:`t = h`).

    Under- or critically damped: :math:`\exp(-c h/(2m)) = \exp(-(1-\alpha)/(1+\alpha))`.
    Over-damped (Yang et al. Sec. 2.2): :math:`\exp(-\tfrac{h}{2}[c/m - \sqrt{c^2/m^2 - 4K/m}])`.
    :math:`h` cancels from both.
    """
    eta, alpha, k = _lr(lr), _alpha(momentum), _k(curvature)
    c_over_m = 2.0 * (1.0 - alpha) / (1.0 + alpha)  # c/m with h = 1
    k_over_m = 2.0 * eta * k / (1.0 + alpha)  # K/m with h = 1
    disc = c_over_m**2 - 4.0 * k_over_m
    rate = 0.5 * c_over_m if disc <= 0.0 else 0.5 * (c_over_m - math.sqrt(disc))
    return math.exp(-rate)


def discrete_contraction(lr: float, momentum: float, curvature: float) -> float:
    r"""The exact per-step contraction of heavy ball on a 1-D quadratic of curvature K.

    The spectral radius of :math:`x_{k+1} = (1+\beta-\eta K)x_k - \beta x_{k-1}`: the largest
    :math:`|r|` with :math:`r^2 - (1+\beta-\eta K) r + \beta = 0`. Values :math:`\ge 1` mean
    the iteration does not converge. Used to check the continuous model above.
    """
    eta, beta, k = _lr(lr), check_real("momentum", momentum, symbol="β", low=0.0), _k(curvature)
    b = 1.0 + beta - eta * k
    disc = b * b - 4.0 * beta
    if disc < 0.0:
        return math.sqrt(beta)
    root = math.sqrt(disc)
    return max(abs(b + root), abs(b - root)) / 2.0


def mechanical_energy(
    positions: Any, potential: Any, lr: float, momentum: float, h: float = 1.0
) -> Any:
    r"""Kinetic plus potential energy along a run.

    .. math::

        E_k = f(x_k) + \tfrac m2 \|(x_k - x_{k-1})/h\|^2

    Parameters
    ----------
    positions : array, shape ``(T, ..., d)``
        The iterates :math:`x_0, \dots, x_{T-1}` (leading axis: time; trailing: coordinates).
    potential : array, shape ``(T, ...)``
        :math:`f(x_k)` along the run, measured from the minimum value.
    lr, momentum, h : float
        The optimizer's :math:`\eta`, :math:`\alpha` and the time scale (mass as :func:`mass`).

    Returns
    -------
    array, shape ``(T - 1, ...)``
        :math:`E_k` for :math:`k = 1, \dots, T-1` (the velocity needs two iterates).
    """
    xp = array_namespace(positions, potential)
    m = mass(lr, momentum, h)
    vel = (positions[1:, ...] - positions[:-1, ...]) / h
    kinetic = 0.5 * m * xp.sum(vel * vel, axis=-1)
    return potential[1:, ...] + kinetic
