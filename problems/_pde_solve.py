r"""Solving the discrete PDE problems of :mod:`physopt_ref.problems.pde` on the host, robustly.

The residuals there are tridiagonal plus an elementwise nonlinearity,

.. math::

    R_i(u) = l_i u_{i-1} + d_i u_i + q_i u_{i+1} + c_i + N(u_i), \qquad i = 0 \dots m-1,

with ``l_0 = q_{m-1} = 0`` (the boundary values are in ``c``). Newton's method on the whole
system from the continuum solution can wander on a coarse grid, where the continuum profile is
far from the discrete solution: from there the second ECD solution's Newton iterates had
residuals of 1e3 to 1e6 for 100 iterations, and where it landed depended on the last bits of the
BLAS kernel's banded solve (issue 23). So the solutions are found by a method whose outcome does
not depend on rounding:

1. **Shooting on the grid.** Rows ``0 … m−2`` give ``u_{i+1}`` from ``u_{i−1}`` and ``u_i``
   (``q_i ≠ 0``), so every discrete solution is ``march(a)`` for one value ``a = u_0`` of the
   first unknown, a root of the scalar function ``φ(a) = R_{m−1}(march(a))``. ``φ`` is sampled
   on a fixed grid of ``a`` (vectorised, elementwise operations only: no BLAS), its sign changes
   are refined by repeated sub-sampling to the last bit, and every root is an exact discrete
   solution up to rounding. Marching values are clipped to ``±1e100`` (``u ≤ 700`` under the
   exponential), so a diverging march keeps its sign instead of becoming NaN.
2. **Damped Newton** (:func:`damped_newton`) polishes each root: banded LU steps with a
   backtracking line search on ``½‖R‖²`` (Armijo), so a step never increases the residual.

A sign change of ``φ`` whose refined root does not polish to a zero residual is dropped (it
came from a clipped march). Which root is which continuum solution is decided by order: the
continuum values of ``a`` and the roots are paired in increasing order, taking the ordered
subset of roots nearest to them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
from scipy.linalg import solve_banded

__all__ = ["Tridiagonal", "damped_newton", "shooting_roots"]

_CLIP = 1e100
_EXP_CLIP = 700.0


class Tridiagonal:
    """``R(u) = l u_{i−1} + d u_i + q u_{i+1} + c + N(u)`` with ``N`` = ``λ eᵘ`` or ``λ u²``."""

    def __init__(self, lower: np.ndarray, diag: np.ndarray, upper: np.ndarray,
                 const: np.ndarray, nonlin: str, lam: float) -> None:
        self.lower, self.diag, self.upper, self.const = lower, diag, upper, const
        self.nonlin, self.lam = nonlin, float(lam)

    def n_and_derivative(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``N(u)`` and ``N'(u)``, elementwise."""
        if self.nonlin == "exp":
            e = self.lam * np.exp(u)
            return e, e
        return self.lam * u * u, 2.0 * self.lam * u

    def residual(self, u: np.ndarray) -> np.ndarray:
        """``R(u)`` for one point (float64)."""
        au = self.diag * u
        au[1:] += self.lower[1:] * u[:-1]
        au[:-1] += self.upper[:-1] * u[1:]
        return au + self.const + self.n_and_derivative(u)[0]

    def march(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Profiles ``march(a)`` (shape ``(m, len(a))``) and ``φ(a)``, for many ``a`` at once."""
        m = self.diag.size
        lower, diag, const = self.lower.tolist(), self.diag.tolist(), self.const.tolist()
        inv_upper = (-1.0 / self.upper[:-1]).tolist() if m > 1 else []
        is_exp, lam = self.nonlin == "exp", self.lam
        out = np.empty((m, a.size))
        out[0] = a
        prev = np.zeros_like(a)
        nl = np.empty_like(a)
        with np.errstate(all="ignore"):
            for i in range(m):
                u = out[i]
                if is_exp:
                    np.minimum(u, _EXP_CLIP, out=nl)
                    np.exp(nl, out=nl)
                else:
                    np.multiply(u, u, out=nl)
                rest = lam * nl
                rest += lower[i] * prev
                rest += diag[i] * u
                rest += const[i]
                if i == m - 1:
                    return out, rest
                nxt = out[i + 1]
                np.multiply(rest, inv_upper[i], out=nxt)
                np.minimum(nxt, _CLIP, out=nxt)
                np.maximum(nxt, -_CLIP, out=nxt)
                prev = u
        raise AssertionError("unreachable")  # pragma: no cover


def damped_newton(
    system: Tridiagonal, u_init: np.ndarray, *, tol: float = 1e-13, maxiter: int = 100
) -> np.ndarray | None:
    """Newton's method with a backtracking line search on ``½‖R‖²``; None if it fails.

    Full steps are taken when they lower ``‖R‖`` (then the method is Newton's, quadratically
    convergent near a solution); otherwise the step is halved until ``‖R‖²`` decreases by at
    least ``1e-4`` times the predicted amount (Armijo), at most 40 times. Converged when the
    step is below ``tol`` relative to ``1 + max|u|``, or stalls below ``1e-9`` at the rounding
    level of an ill-conditioned Jacobian.
    """
    u = np.array(u_init, dtype=np.float64)
    ab = np.zeros((3, u.size))
    ab[0, 1:] = system.upper[:-1]
    ab[2, :-1] = system.lower[1:]
    r = system.residual(u)
    if not np.all(np.isfinite(r)):
        return None
    norm2 = float(r @ r)
    last = math.inf
    for _ in range(maxiter):
        ab[1] = system.diag + system.n_and_derivative(u)[1]
        try:
            step = solve_banded((1, 1), ab, -r)
        except (np.linalg.LinAlgError, ValueError):
            return None
        if not np.all(np.isfinite(step)):
            return None
        t = 1.0
        for _ in range(41):
            trial = u + t * step
            with np.errstate(all="ignore"):
                r_new = system.residual(trial)
            new2 = float(r_new @ r_new) if np.all(np.isfinite(r_new)) else math.inf
            if new2 <= (1.0 - 2e-4 * t) * norm2 or new2 == 0.0:
                break
            t *= 0.5
        else:  # no decrease along the Newton direction: at the rounding level, or stuck
            small = np.max(np.abs(step)) / (1.0 + np.max(np.abs(u))) < 1e-9
            return u if small else None
        size = t * np.max(np.abs(step)) / (1.0 + np.max(np.abs(trial)))
        u, r, norm2 = trial, r_new, new2
        if size <= tol or (size < 1e-9 and size >= 0.5 * last):
            return u
        last = size
    return None


def _refine(phi: Callable[[np.ndarray], np.ndarray], brackets: np.ndarray) -> np.ndarray:
    """One root of ``φ`` per bracket ``[lo, hi]`` (a sign change), to the last bit.

    All brackets at once: each round samples 257 points per bracket and keeps the first
    finite sign change, shrinking a bracket 256-fold (six rounds from the scan's spacing).
    """
    lo, hi = brackets[:, 0].copy(), brackets[:, 1].copy()
    t = np.linspace(0.0, 1.0, 257)
    for _ in range(12):
        a = lo[:, None] + (hi - lo)[:, None] * t
        a[:, -1] = hi
        f = phi(a.ravel()).reshape(a.shape)
        change = (np.isfinite(f[:, :-1]) & np.isfinite(f[:, 1:])
                  & ((np.sign(f[:, :-1]) != np.sign(f[:, 1:])) | (f[:, :-1] == 0.0)))
        has = np.any(change, axis=1)
        j = np.argmax(change, axis=1)
        rows = np.arange(lo.size)
        new_lo = np.where(has, a[rows, j], lo)
        new_hi = np.where(has, a[rows, j + 1], hi)
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break
        lo, hi = new_lo, new_hi
    return 0.5 * (lo + hi)


def shooting_roots(
    system: Tridiagonal, starts: tuple[np.ndarray, ...], *, points: int = 2001
) -> list[np.ndarray] | None:
    """The discrete solutions nearest in order to ``starts``, by shooting and damped Newton.

    ``φ`` is sampled at ``points`` values of ``a`` on ``[min a* − W, max a* + W]``, with ``a*``
    the starts' first values and ``W = 8(1 + max|a*|)`` (then at 16 times as many when that
    finds fewer solutions than starts); its sign changes are refined (:func:`_refine`) and
    polished (:func:`damped_newton`); the roots that polish to a zero residual are paired
    with the starts in increasing order (the ordered choice of roots nearest to the sorted
    ``a*``). Returns the solutions in the order of ``starts``, or None when there are fewer
    discrete solutions than starts in that window.
    """
    anchors = np.array([float(s[0]) for s in starts])
    width = 8.0 * (1.0 + float(np.max(np.abs(anchors))))
    roots: list[tuple[float, np.ndarray]] = []
    for n_points in (points, 16 * points):
        roots = _roots(system, np.linspace(float(np.min(anchors)) - width,
                                           float(np.max(anchors)) + width, n_points))
        if len(roots) >= len(starts):
            break
    else:
        return None
    order = np.argsort(anchors, kind="stable")

    def distance(c: tuple[int, ...]) -> float:
        return sum(abs(roots[i][0] - anchors[k]) for i, k in zip(c, order, strict=True))

    best = min(itertools.combinations(range(len(roots)), len(starts)), key=distance)
    out: list[np.ndarray] = [np.empty(0)] * len(starts)
    for i, k in zip(best, order, strict=True):
        out[k] = roots[i][1]
    return out


def _roots(system: Tridiagonal, a: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """``(u_0, u)`` of the discrete solutions whose ``u_0`` is a sign change of φ on ``a``."""

    def phi(values: np.ndarray) -> np.ndarray:
        return system.march(values)[1]

    f = phi(a)
    change = np.flatnonzero(np.isfinite(f[:-1]) & np.isfinite(f[1:])
                            & ((np.sign(f[:-1]) != np.sign(f[1:])) | (f[:-1] == 0.0)))
    roots: list[tuple[float, np.ndarray]] = []
    refined = _refine(phi, np.stack([a[change], a[change + 1]], axis=1))
    profiles = system.march(refined)[0]
    for k in range(refined.size):
        u = damped_newton(system, profiles[:, k])
        if u is not None and (not roots or abs(u[0] - roots[-1][0]) > 1e-9 * (1 + abs(u[0]))):
            roots.append((float(u[0]), u))
    return roots
