"""Scalar float64 references for the classic optimizers, written from the update equations.

Plain Python floats and loops, one coordinate at a time: no arrays, no vectorisation. Each
function takes a list of coordinates, a gradient function of the list, and returns the iterates.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Grad = Callable[[list[float]], list[float]]


def sgd(x: list[float], grad: Grad, lr: float, steps: int) -> list[list[float]]:
    out = []
    for _ in range(steps):
        g = grad(x)
        x = [xi - lr * gi for xi, gi in zip(x, g, strict=True)]
        out.append(x)
    return out


def heavy_ball(x: list[float], grad: Grad, lr: float, beta: float, steps: int) -> list[list[float]]:
    """θ_{k+1} = θ_k − η g_k + β (θ_k − θ_{k−1}), θ_{−1} = θ_0 (Polyak 1964)."""
    prev = list(x)
    out = []
    for _ in range(steps):
        g = grad(x)
        new = [xi - lr * gi + beta * (xi - pi) for xi, gi, pi in zip(x, g, prev, strict=True)]
        prev, x = x, new
        out.append(x)
    return out


def nesterov(y: list[float], grad: Grad, lr: float, alpha: float, steps: int) -> list[list[float]]:
    """x_{k+1} = y_k − η∇f(y_k); y_{k+1} = x_{k+1} + α(x_{k+1} − x_k), x_0 = y_0 (Yang Eq. 2.1)."""
    x_prev = list(y)
    out = []
    for _ in range(steps):
        g = grad(y)
        x = [yi - lr * gi for yi, gi in zip(y, g, strict=True)]
        y = [xi + alpha * (xi - xp) for xi, xp in zip(x, x_prev, strict=True)]
        x_prev = x
        out.append(y)
    return out


def adam(
    x: list[float], grad: Grad, lr: float, b1: float, b2: float, eps: float, steps: int
) -> list[list[float]]:
    """Kingma & Ba (2015), Algorithm 1."""
    m = [0.0] * len(x)
    v = [0.0] * len(x)
    out = []
    for t in range(1, steps + 1):
        g = grad(x)
        new = []
        for i in range(len(x)):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
            m_hat = m[i] / (1 - b1**t)
            v_hat = v[i] / (1 - b2**t)
            new.append(x[i] - lr * m_hat / (math.sqrt(v_hat) + eps))
        x = new
        out.append(x)
    return out
