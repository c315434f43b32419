"""Ackley and Zakharov (n-D), with analytic gradients.

Sources: spec ``problems.md`` §1 (SCIPY global-optimization benchmarks ``Ackley01`` /
``Zacharov`` at scipy HEAD 3dbf660; Surjanovic & Bingham's VLSE ``ackleyr.html``; Jamil & Yang
2013, arXiv:1308.4008) and the ECD notebooks ``gbdl/BBI/synthetic/ackley.ipynb`` /
``zakharov.ipynb`` (spec ``ecd.md`` §4.1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backends import asarray_like
from ._base import KnownMinimum, Problem

__all__ = ["Ackley", "Zakharov", "ackley", "zakharov"]


class Ackley(Problem):
    r"""Ackley's function (general form).

    .. math::

        f(x) = -a\,e^{-b r} - e^{C/n} + a + e + w\,|x|^8,\qquad
        r = \sqrt{\tfrac1n \textstyle\sum_i x_i^2},\quad C = \textstyle\sum_i \cos(c x_i)

    Gradient (spec ``problems.md`` §1.1): ``∂f/∂x_j = a b e^{−b r} x_j/(n r) +
    (c/n) sin(c x_j) e^{C/n} + 8 w |x|^6 x_j``. ``f`` has a kink at ``x = 0`` (the cone
    ``a b |x|/√n``); the gradient returned there is 0 (the cone term is dropped).

    Known minimum (source: VLSE; SCIPY ``Ackley01`` ``fglob = 0``): ``f(0) = 0``. In floating
    point the value at 0 is about 4.4e-16 (``-a - 1 + a + e - e`` does not cancel).

    Standard constants ``a = 20, b = 0.2, c = 2π`` (VLSE R code); the ECD experiments
    (``gbdl/BBI/synthetic/ackley.ipynb``) use ``b = 0.02`` with ``n = 2`` and start ``(−4, 3)``.
    ``w`` (default 0) is the ``1e-8 |x|^8`` confinement added in ``gbdl/ECDSep/
    ECDSep_ackley.ipynb``. Bounds: ``[−32.768, 32.768]^n`` (VLSE; SCIPY uses ``[−35, 35]``).
    """

    def __init__(
        self,
        dim: int = 2,
        a: float = 20.0,
        b: float = 0.2,
        c: float = 2 * math.pi,
        *,
        octic: float = 0.0,
        x0: Any = None,
    ) -> None:
        if int(dim) != dim or dim < 1:
            raise ValueError(f"ackley: dim must be an integer >= 1, got {dim}")
        for nm, v in (("a", a), ("b", b), ("c", c)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"ackley: {nm} must be finite and > 0, got {v}")
        if not (math.isfinite(octic) and octic >= 0):
            raise ValueError(f"ackley: octic (w) must be finite and >= 0, got {octic}")
        self.dim = int(dim)
        self.a, self.b, self.c, self.octic = float(a), float(b), float(c), float(octic)
        self.name = "ackley" if self.b == 0.2 else f"ackley_b{self.b:g}"
        if x0 is None:
            x0 = np.resize(np.array([-4.0, 3.0]), self.dim)  # the ECD start (−4, 3), tiled
        self.x0 = np.asarray(x0, dtype=np.float64).copy()
        self.bounds = (np.full(self.dim, -32.768), np.full(self.dim, 32.768))
        self.minima = (
            KnownMinimum(np.zeros(self.dim), 0.0, "VLSE ackleyr.html; SCIPY Ackley01 fglob"),
        )

    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        n = float(self.dim)
        a, b, c = self.a, self.b, self.c
        s2 = xp.sum(x * x, axis=-1)
        r = xp.sqrt(s2 / n)
        e1 = xp.exp(-b * r)
        e2 = xp.exp(xp.sum(xp.cos(c * x), axis=-1) / n)
        f = -a * e1 - e2 + (a + math.e)
        pos = r > 0
        r_safe = xp.where(pos, r, xp.ones_like(r))
        coef1 = xp.where(pos, a * b * e1 / (n * r_safe), xp.zeros_like(r))
        g = xp.expand_dims(coef1, axis=-1) * x + (c / n) * xp.sin(c * x) * xp.expand_dims(
            e2, axis=-1
        )
        if self.octic:
            s6 = s2 * s2 * s2
            f = f + self.octic * s6 * s2
            g = g + xp.expand_dims(8.0 * self.octic * s6, axis=-1) * x
        return f, g


def ackley(
    dim: int = 2,
    a: float = 20.0,
    b: float = 0.2,
    c: float = 2 * math.pi,
    *,
    octic: float = 0.0,
    x0: Any = None,
) -> Ackley:
    """Ackley's function; see :class:`Ackley`. ``ackley(b=0.02)`` is the ECD variant."""
    return Ackley(dim, a, b, c, octic=octic, x0=x0)


class Zakharov(Problem):
    r"""Zakharov's function.

    .. math:: f(x) = \sum_i x_i^2 + v^2 + v^4,\qquad v = \sum_i w_i x_i,\ w_i = i/2

    Gradient ``∇f = 2x + (2v + 4v³) w``; Hessian ``2I + (2 + 12 v²) w wᵀ ⪰ 2I``, so ``f`` is
    2-strongly convex with the unique minimizer ``x* = 0``, ``f* = 0`` (source: SCIPY ``Zacharov``
    ``fglob = 0``; VLSE; Jamil & Yang 2013). At ``x*`` the spectrum is 2 (×(n−1)) and
    ``2 + n(n+1)(2n+1)/12`` (spec ``problems.md`` §1.2; exposed as :attr:`hessian_at_min`).
    Bounds ``[−5, 10]^n`` (SCIPY, VLSE). Suggested start ``(1, …, 1)`` (the ECD start,
    ``gbdl/BBI/synthetic/zakharov.ipynb``, ``f = 572680.3125`` at ``n = 10``).
    """

    def __init__(self, dim: int = 10, *, x0: Any = None) -> None:
        if int(dim) != dim or dim < 1:
            raise ValueError(f"zakharov: dim must be an integer >= 1, got {dim}")
        self.dim = int(dim)
        self.name = "zakharov"
        self.weights = 0.5 * np.arange(1, self.dim + 1, dtype=np.float64)
        self.hessian_at_min = 2.0 * np.eye(self.dim) + 2.0 * np.outer(self.weights, self.weights)
        self.x0 = np.ones(self.dim) if x0 is None else np.asarray(x0, dtype=np.float64).copy()
        self.bounds = (np.full(self.dim, -5.0), np.full(self.dim, 10.0))
        self.minima = (
            KnownMinimum(np.zeros(self.dim), 0.0, "SCIPY Zacharov fglob; VLSE zakharov"),
        )

    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        w = asarray_like(self.weights, x)
        v = xp.sum(x * w, axis=-1)
        v2 = v * v
        f = xp.sum(x * x, axis=-1) + v2 + v2 * v2
        g = 2.0 * x + xp.expand_dims(2.0 * v + 4.0 * v2 * v, axis=-1) * w
        return f, g


def zakharov(dim: int = 10, *, x0: Any = None) -> Zakharov:
    """Zakharov's function; see :class:`Zakharov`."""
    return Zakharov(dim, x0=x0)
