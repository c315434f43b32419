"""Scalar float64 references for the problem library, straight from the formulas.

Plain Python floats and loops, no vectorisation (spec ``problems.md`` §1, §2, §3; spec
``ecd.md`` §4.1 for the two-basin potential).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def ackley(x: Sequence[float], a: float = 20.0, b: float = 0.2, c: float = 2 * math.pi) -> float:
    n = len(x)
    s1 = 0.0
    s2 = 0.0
    for xi in x:
        s1 += xi * xi
        s2 += math.cos(c * xi)
    return -a * math.exp(-b * math.sqrt(s1 / n)) - math.exp(s2 / n) + a + math.e


def zakharov(x: Sequence[float]) -> float:
    u = 0.0
    v = 0.0
    for i, xi in enumerate(x, start=1):
        u += xi * xi
        v += 0.5 * i * xi
    return u + v**2 + v**4


def two_basin(x: Sequence[float]) -> float:
    c1 = (-2.0, -2.0)
    c2 = (2.0, 2.0)
    a1 = (x[0] - c1[0]) ** 2 + (x[1] - c1[1]) ** 2
    a2 = (x[0] - c2[0]) ** 2 + (x[1] - c2[1]) ** 2
    return (
        -math.exp(-0.4 * a1) - (1 - 2.75e-6) * math.exp(-0.8 * a2) + 0.001 * a1 * a2 + 1
    )


def _pairs(x: Sequence[float]):
    n = len(x) // 3
    for i in range(n):
        for j in range(i + 1, n):
            d2 = 0.0
            for k in range(3):
                d2 += (x[3 * i + k] - x[3 * j + k]) ** 2
            yield math.sqrt(d2)


def lennard_jones(x: Sequence[float]) -> float:
    e = 0.0
    for r in _pairs(x):
        e += 4.0 * (r**-12 - r**-6)
    return e


def morse(x: Sequence[float], rho: float = 6.0) -> float:
    e = 0.0
    for r in _pairs(x):
        t = math.exp(rho * (1.0 - r))
        e += t * (t - 2.0)
    return e


def bratu_residual_norm(u: Sequence[float], lam: float) -> float:
    """½ Σ R_i², R_i = (u_{i−1} − 2u_i + u_{i+1})/h² + λ e^{u_i}, u_0 = u_n = 0."""
    n = len(u) + 1
    h = 1.0 / n
    full = [0.0, *u, 0.0]
    s = 0.0
    for i in range(1, n):
        r = (full[i - 1] - 2 * full[i] + full[i + 1]) / h**2 + lam * math.exp(full[i])
        s += r * r
    return 0.5 * s


def radial_residual_norm(u: Sequence[float], lam: float, kind: str, boundary: float) -> float:
    """½ Σ R_i² for the radial problems, nodes r_i = i h, i < n, u_n = boundary.

    kind "gelfand": R = Δ_h u + λ eᵘ; kind "ecd": R = −Δ_h u + u² − s(r).
    Δ_h u = (u_{i+1} − 2u_i + u_{i−1})/h² + (u_{i+1} − u_{i−1})/(2 r_i h), and at r = 0 the
    ghost point u_{−1} = u_1 with Δu = 2u'': 4(u_1 − u_0)/h².
    """
    n = len(u)
    h = 1.0 / n
    full = [*u, boundary]
    s = 0.0
    for i in range(n):
        if i == 0:
            lap = 4.0 * (full[1] - full[0]) / h**2
        else:
            r = i * h
            lap = (full[i + 1] - 2 * full[i] + full[i - 1]) / h**2 + (
                full[i + 1] - full[i - 1]
            ) / (2 * r * h)
        if kind == "gelfand":
            res = lap + lam * math.exp(full[i])
        else:
            r2 = (i * h) ** 2
            src = 0.125 * (
                3 - 4 * (1 + 6400 * r2) * math.cos(40 * r2) + math.cos(80 * r2)
                - 640 * math.sin(40 * r2)
            )
            res = -lap + full[i] ** 2 - src
        s += res * res
    return 0.5 * s
