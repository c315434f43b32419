"""Scalar float64 reference for Gravity, written straight from Algorithm 1 and Eqs. 20-28.

Plain Python floats and loops. Per weight tensor ("leaf"), each given as a flat list:
m = 1/max|G| (Eq. 20), zeta = g/(1 + (g/m)^2) (Eq. 21), beta_hat = (beta t + 1)/(t + 2) (Eq. 26),
V <- beta_hat V + (1 - beta_hat) zeta, W <- W - l V. t = t_start on the first step. An all-zero
G gives m = inf and g/m = 0 (as in the authors' code).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable


def beta_hat_ref(beta: float, t: int) -> float:
    return (beta * t + 1.0) / (t + 2.0)


def zeta_ref(g: list[float]) -> list[float]:
    gmax = max(abs(v) for v in g)
    # 1/gmax overflows to inf (as in IEEE arithmetic) for gmax = 0 or tiny subnormals
    m = 1.0 / gmax if gmax > 1.0 / sys.float_info.max else math.inf
    out = []
    for v in g:
        q = v / m
        out.append(v / (1.0 + q * q))
    return out


def gravity_run_ref(
    leaves: list[list[float]],
    v0: list[list[float]],
    grad: Callable[[list[list[float]]], list[list[float]]],
    steps: int,
    lr: float,
    beta: float,
    t_start: int = 0,
) -> list[list[list[float]]]:
    """Leaves after each step (a list over steps of lists over leaves of flat lists)."""
    w = [[float(v) for v in leaf] for leaf in leaves]
    vel = [[float(v) for v in leaf] for leaf in v0]
    out = []
    for k in range(steps):
        g = grad(w)
        bh = beta_hat_ref(beta, k + t_start)
        for i in range(len(w)):
            z = zeta_ref(g[i])
            for j in range(len(w[i])):
                vel[i][j] = bh * vel[i][j] + (1.0 - bh) * z[j]
                w[i][j] = w[i][j] - lr * vel[i][j]
        out.append([list(leaf) for leaf in w])
    return out
