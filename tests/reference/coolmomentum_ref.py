"""Scalar float64 reference for CoolMomentum, written straight from the equations.

Plain Python floats and loops; no vectorisation, no shared code with the library.

Update (authors' code, spec §a.2): x_t = rho_t x_{t-1} + lr (1 + rho_t)/2 g_t, theta_t = theta_{t-1}
- x_t, x_{-1} = 0, g_t including coupled L2 weight decay (g + wd * theta).
Schedules (spec §a.3), t counted from 0, in their literal forms:
(A) alpha = (1 - rho0)^(1/S), rho_t = max(0, 1 - (1 - rho0) / alpha^t)          (paper Eq. 20)
(B) beta = ((1 - rho0)/(1 + rho0))^(1/S), k_t = (1 - rho0)/(1 + rho0) * beta^(-t),
    rho_t = max(0, (1 - k_t)/(1 + k_t))                                          (Coolmom 2024)
(C) rho_t = max(0, rho0 (1 - t/S) / |1 - rho0 t/S|)                              (Coollin 2024)
"""

from __future__ import annotations

from collections.abc import Callable


def rho_paper_ref(t: int, rho0: float, cool_steps: int) -> float:
    alpha = (1.0 - rho0) ** (1.0 / cool_steps)
    return max(0.0, 1.0 - (1.0 - rho0) / alpha**t)


def rho_geometric_ref(t: int, rho0: float, cool_steps: int) -> float:
    beta = ((1.0 - rho0) / (1.0 + rho0)) ** (1.0 / cool_steps)
    k = (1.0 - rho0) / (1.0 + rho0) * beta ** (-t)
    return max(0.0, (1.0 - k) / (1.0 + k))


def rho_linear_ref(t: int, rho0: float, cool_steps: int) -> float:
    s = t / cool_steps
    return max(0.0, rho0 * (1.0 - s) / abs(1.0 - rho0 * s))


def coolmomentum_run_ref(
    theta0: list[float],
    grad: Callable[[list[float]], list[float]],
    steps: int,
    lr: float,
    rho: Callable[[int], float],
    weight_decay: float = 0.0,
) -> list[list[float]]:
    """Parameters after each of ``steps`` steps (one flat list of floats per step)."""
    theta = [float(v) for v in theta0]
    x = [0.0] * len(theta)
    out = []
    for t in range(steps):
        g = grad(theta)
        r = rho(t)
        for i in range(len(theta)):
            gi = g[i] + weight_decay * theta[i]
            x[i] = r * x[i] + lr * (1.0 + r) / 2.0 * gi
        for i in range(len(theta)):
            theta[i] = theta[i] - x[i]
        out.append(list(theta))
    return out
