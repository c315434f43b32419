"""Scalar float64 reference for the Dyna family, written straight from Han (2018).

Plain Python floats and loops, no arrays. A "layer" is a list of floats; a model is a list of
layers. ``grad_fn(layers) -> list of lists`` supplies the gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Layers = list[list[float]]
GradFn = Callable[[Layers], Layers]


def ramp_zeta(t: int, T: float, zeta_start: float = 0.5, zeta_end: float = 1.0) -> float:
    """Eq. 22 (generalised): 1/(2ζ) = 1/(2ζ0) + (1/(2ζ1) − 1/(2ζ0))·min(1, (t/T)²), t from 1."""
    frac = min(1.0, (t / T) ** 2)
    inv = 1.0 / (2.0 * zeta_start) + (1.0 / (2.0 * zeta_end) - 1.0 / (2.0 * zeta_start)) * frac
    return 1.0 / (2.0 * inv)


def dyna_ref(
    theta0: Layers,
    grad_fn: GradFn,
    steps: int,
    *,
    gamma: float = 1.0,
    beta: float = 0.9,
    zeta: Callable[[int], float] | float = 1.0,
    omega_eps: float = 1e-8,
    fan_in: list[int],
    restart_before: dict[int, float] | None = None,
) -> list[Layers]:
    """Algorithm 1 (with v̂ = v/μ_t, Eq. 17). ``zeta`` may be a function of t (1-based).

    ``restart_before = {t: c}`` multiplies η, v and μ of every layer by c before step t
    (Sec. 4.1). Returns θ after every step.
    """
    theta = [list(layer) for layer in theta0]
    eta = [[0.0] * len(layer) for layer in theta]
    vel = [[0.0] * len(layer) for layer in theta]
    mu = [0.0] * len(theta)
    out = []
    for t in range(1, steps + 1):
        if restart_before and t in restart_before:
            c = restart_before[t]
            eta = [[c * e for e in layer] for layer in eta]
            vel = [[c * v for v in layer] for layer in vel]
            mu = [c * m for m in mu]
        z = zeta(t) if callable(zeta) else zeta
        grads = grad_fn(theta)
        for layer_index in range(len(theta)):
            mu[layer_index] = beta * mu[layer_index] + (1.0 - beta)
            alpha = 2.0 * gamma / fan_in[layer_index]
            for i in range(len(theta[layer_index])):
                g = grads[layer_index][i]
                e = beta * eta[layer_index][i] + (1.0 - beta) * abs(g)
                omega = math.sqrt(e / mu[layer_index]) + omega_eps
                v = beta * vel[layer_index][i] - (1.0 - beta) / (2.0 * z) * g / omega
                v_hat = v / mu[layer_index]
                theta[layer_index][i] = theta[layer_index][i] + alpha * v_hat / omega
                eta[layer_index][i] = e
                vel[layer_index][i] = v
        out.append([list(layer) for layer in theta])
    return out


def prototype_ref(
    theta0: Layers,
    grad_fn: GradFn,
    steps: int,
    *,
    lr: float = 1e-3,
    b1: float = 0.9,
    b2: Callable[[int], float] | float = 0.999,
    eps: float = 1e-8,
) -> list[Layers]:
    """Sec. 4.3, Eq. 21 with β₁·m_{t−1} in the m_t line; β₂ is the damping ratio."""
    theta = [list(layer) for layer in theta0]
    v = [[0.0] * len(layer) for layer in theta]
    m = [[0.0] * len(layer) for layer in theta]
    out = []
    for t in range(1, steps + 1):
        zeta = b2(t) if callable(b2) else b2
        grads = grad_fn(theta)
        for li in range(len(theta)):
            for i in range(len(theta[li])):
                g = grads[li][i]
                v[li][i] = b1 * v[li][i] + (1.0 - b1) * abs(g)
                v_hat = math.sqrt(v[li][i] / (1.0 - b1**t)) + eps
                m[li][i] = b1 * m[li][i] + (1.0 - b1) / (2.0 * zeta) * g / v_hat
                m_hat = m[li][i] / (1.0 - b1**t)
                theta[li][i] = theta[li][i] - lr * m_hat / v_hat
        out.append([list(layer) for layer in theta])
    return out


def dynamic_relaxation_ref(
    x0: list[float],
    force_fn: Callable[[list[float]], list[float]],
    steps: int,
    *,
    h: float,
    mass: float,
    stiffness: float,
    zeta: float,
) -> list[list[float]]:
    """Eqs. 9–10 with ω·x = force/(m ω), ω = sqrt(k/m), from rest (v_{−h/2} = 0).

    For ζ = 0 uses Eq. 5 literally: a = −force/m, v += a·h, x += v·h.
    """
    omega = math.sqrt(stiffness / mass)
    x = list(x0)
    v = [0.0] * len(x)
    out = []
    for _ in range(steps):
        f = force_fn(x)
        for i in range(len(x)):
            if zeta == 0.0:
                a = -f[i] / mass
                v[i] = v[i] + a * h
            else:
                beta = 1.0 - 2.0 * zeta * omega * h / (1.0 + zeta * omega * h)
                omega_x = f[i] / (mass * omega)
                v[i] = beta * v[i] - (1.0 - beta) / (2.0 * zeta) * omega_x
            x[i] = x[i] + v[i] * h
        out.append(list(x))
    return out
