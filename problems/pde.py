"""Multi-solution PDE residuals: F(u) = ½‖R(u)‖², finite differences, exact gradient JᵀR.

Three problems, each with two known solutions (both zero-residual global minima of F):

- :func:`bratu_1d`: ``u'' + λ eᵘ = 0`` on (0, 1), ``u(0) = u(1) = 0`` (spec ``problems.md``
  §2.1; closed form ``u = −2 ln[cosh((x−½)θ/2)/cosh(θ/4)]``, ``θ = sqrt(2λ) cosh(θ/4)``).
- :func:`gelfand_disk`: ``Δu + λ eᵘ = 0`` on the unit disk, ``u = 0`` on ``r = 1``, radial
  (spec §2.3; ``u = 2 ln[(1+β)/(1+βr²)]``, ``λ = 8β/(1+β)²``; Joseph & Lundgren 1973).
- :func:`ecd_pde`: the ECD problem ``−Δu + u² = s`` on the unit disk, ``u = sin²20`` on
  ``r = 1`` (De Luca & Silverstein 2022, Sec. 4.4 / App. C; ``gbdl/BBI/experiments/
  PDE_PoissonD.py``; spec ``ecd.md`` §4.1 and ``problems.md`` §4.1), radial.

All are discretised by second-order central differences on a uniform grid with ``h = 1/n``.
The radial problems use the nodes ``r_i = i h, i = 0..n−1`` (``u_n`` is the boundary value),
the Laplacian ``u'' + u'/r`` with central first differences and, at ``r = 0``, the symmetric
ghost point ``u_{−1} = u_1`` with ``Δu(0) = 2u''(0)`` (so row 0 reads ``4(u_1 − u_0)/h²``).
The discrete solutions are computed at construction by :meth:`PDEResidual.solve`: shooting on
the grid (every discrete solution is fixed by its first unknown) from the continuum solutions'
first values, polished by damped Newton, so that which solution is found does not depend on
the BLAS kernel or SIMD path (on a coarse grid plain Newton from the continuum profile wanders
and lands by rounding). :meth:`PDEResidual.newton` (damped Newton) refines any start. They
converge to the exact solutions at O(h²) (tested).

Note: F is not scaled by h; with ``R ~ 1/h²`` differences its values and curvature are large
(``‖J‖ ~ 4/h²``). Give ``scale`` to use ``F = ½ scale² ‖R‖²`` instead.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from ..backends import asarray_like, device_of
from ._base import KnownMinimum, Problem
from ._pde_solve import Tridiagonal, damped_newton, shooting_roots

__all__ = [
    "BRATU_LAMBDA_C",
    "ECD_NEGATIVE_U0",
    "PDEResidual",
    "bratu_1d",
    "bratu_exact",
    "ecd_pde",
    "ecd_radial_profile",
    "gelfand_disk",
    "gelfand_exact",
]

#: λc of the 1-D Bratu problem, 8(s*² − 1) with s* tanh s* = 1 (spec problems.md §2.1 [S+C]).
BRATU_LAMBDA_C = 3.51383071912516120620783709324
_BRATU_THETA_C = 4.79871456103093533566547939456

#: u(0) of the negative radial ECD solution with u(1) = sin²20 (spec problems.md §4.1 [C],
#: radial shooting); −10.225767056288 with the authors' rounded boundary value 0.833469.
ECD_NEGATIVE_U0 = -10.225767116367
_ECD_NEGATIVE_U0_ROUNDED = -10.225767056288


class PDEResidual(Problem):
    r"""F(u) = ½ s² ‖R(u)‖², R(u) = A u + c + N(u), A tridiagonal, N elementwise.

    The gradient is exact: ``∇F = s² Jᵀ R`` with ``J = A + diag(N'(u))``. Batched over leading
    axes (no loops), on any Array API backend.

    Attributes
    ----------
    grid : numpy.ndarray
        The nodes of the unknowns (x_i or r_i).
    h : float
        Mesh width ``1/n``.
    n : int
        Number of intervals.
    solutions : tuple of numpy.ndarray
        The discrete solutions (zero residual) found by :meth:`solve` at construction.
    exact_solutions : tuple of numpy.ndarray
        The continuum solutions sampled at :attr:`grid` (same order as ``solutions``).
    labels : tuple of str
        Names of the solutions (``"lower"``, ``"upper"``, ...).
    """

    # Set by the factories that define them (documented there): bratu_1d (lam, theta),
    # gelfand_disk (lam, beta), ecd_pde (boundary_value, u0_continuum).
    lam: float
    theta: tuple[float, float]
    beta: tuple[float, float]
    boundary_value: float
    u0_continuum: tuple[float, float]

    def __init__(
        self,
        name: str,
        grid: np.ndarray,
        h: float,
        lower: np.ndarray,
        diag: np.ndarray,
        upper: np.ndarray,
        const: np.ndarray,
        nonlin: str,
        lam: float,
        scale: float,
    ) -> None:
        self.name = name
        self.grid = grid
        self.h = float(h)
        self.n = round(1.0 / h)
        self.dim = int(grid.size)
        self._lower = lower.copy()
        self._diag = diag.copy()
        self._upper = upper.copy()
        self._lower[0] = 0.0
        self._upper[-1] = 0.0
        self._c = const
        self._nonlin = nonlin  # "exp": N = λ eᵘ ; "square": N = λ u²
        self._lam = float(lam)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"{name}: scale must be finite and > 0, got {scale}")
        self.scale = float(scale)
        self.x0 = np.zeros(self.dim)

    # -- host helpers (NumPy float64) ---------------------------------------------------------
    @property
    def _system(self) -> Tridiagonal:
        return Tridiagonal(self._lower, self._diag, self._upper, self._c, self._nonlin,
                           self._lam)

    def residual(self, u: Any) -> np.ndarray:
        """R(u) for one point on the host (NumPy float64, unscaled)."""
        return self._system.residual(np.array(u, dtype=np.float64).reshape(self.dim))

    def newton(self, u_init: Any, *, tol: float = 1e-13, maxiter: int = 100) -> np.ndarray:
        """Solve R(u) = 0 from ``u_init`` by damped Newton (host, banded LU, line search).

        Newton steps with a backtracking (Armijo) line search on ``½‖R‖²``
        (:func:`physopt_ref.problems._pde_solve.damped_newton`). Raises ``RuntimeError`` when
        it does not converge (e.g. λ beyond the discrete fold, or a start in no solution's
        basin). The stored :attr:`solutions` are made by :meth:`solve`, which does not depend
        on the start's basin.
        """
        u = damped_newton(self._system, np.array(u_init, dtype=np.float64).reshape(self.dim),
                          tol=tol, maxiter=maxiter)
        if u is None:
            raise RuntimeError(f"{self.name}: Newton did not converge from the given start")
        return u

    def solve(self, starts: Any) -> tuple[np.ndarray, ...]:
        """The discrete solutions that correspond to the profiles ``starts``, in their order.

        Shooting on the grid (every discrete solution is fixed by its first unknown ``u_0``)
        finds the discrete solutions near the starts' first values, damped Newton polishes
        them, and they are paired with the starts in increasing order of ``u_0``
        (:mod:`physopt_ref.problems._pde_solve`). Only elementwise operations decide which
        solution is found, so the result is the same on every BLAS kernel and SIMD path, and
        starts perturbed by a few ulps or by the continuum profile's discretisation error give
        the same solutions (tested). Raises ``ValueError`` when the discrete problem has fewer
        solutions than starts near them (a grid too coarse for the problem, or λ beyond the
        discrete fold).
        """
        starts = tuple(np.asarray(s, dtype=np.float64).reshape(self.dim) for s in starts)
        found = shooting_roots(self._system, starts)
        if found is None:
            raise ValueError(
                f"{self.name}: the discrete problem on n = {self.n} intervals has fewer than "
                f"{len(starts)} solutions near the continuum ones (a grid too coarse for the "
                "problem, or a parameter beyond the discrete fold)"
            )
        return tuple(found)

    def _set_minima(
        self, exact: tuple[np.ndarray, ...], labels: tuple[str, ...], source: str
    ) -> None:
        self.exact_solutions = tuple(np.asarray(e, dtype=np.float64) for e in exact)
        self.labels = labels
        self.solutions = self.solve(self.exact_solutions)
        self.minima = tuple(
            KnownMinimum(s.copy(), 0.0, f"{source}; discrete {lab} solution on this grid")
            for s, lab in zip(self.solutions, labels, strict=True)
        )

    # -- the Array API evaluation -------------------------------------------------------------
    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        zero = xp.zeros((*x.shape[:-1], 1), dtype=x.dtype, device=device_of(x))

        def down(v: Any) -> Any:  # v_{i-1}
            return xp.concat([zero, v[..., :-1]], axis=-1)

        def up(v: Any) -> Any:  # v_{i+1}
            return xp.concat([v[..., 1:], zero], axis=-1)

        lo = asarray_like(self._lower, x)
        di = asarray_like(self._diag, x)
        hi = asarray_like(self._upper, x)
        if self._nonlin == "exp":
            nu = self._lam * xp.exp(x)
            dn = nu
        else:
            nu = self._lam * x * x
            dn = (2.0 * self._lam) * x
        r = lo * down(x) + di * x + hi * up(x) + asarray_like(self._c, x) + nu
        s2 = self.scale * self.scale
        f = (0.5 * s2) * xp.sum(r * r, axis=-1)
        g = down(hi * r) + di * r + up(lo * r) + dn * r
        return f, s2 * g if s2 != 1.0 else g


def _check_n(name: str, n: int, low: int) -> int:
    if int(n) != n or n < low:
        raise ValueError(f"{name}: n (number of intervals) must be an integer >= {low}, got {n}")
    return int(n)


# --------------------------------------------------------------------------------------------
# 1-D Bratu
# --------------------------------------------------------------------------------------------
def bratu_exact(lam: float) -> tuple[tuple[float, float], Any]:
    """The two closed-form solutions of ``u'' + λeᵘ = 0``, ``u(0) = u(1) = 0``.

    Returns ``((θ_lower, θ_upper), u)`` with ``u(x, θ) = −2 ln[cosh((x−½)θ/2) / cosh(θ/4)]``
    and ``θ = sqrt(2λ) cosh(θ/4)`` solved by Brent's method on ``(0, θc)`` and ``(θc, 80)``
    (spec ``problems.md`` §2.1).
    """
    if not (0.0 < lam < BRATU_LAMBDA_C):
        raise ValueError(
            f"bratu_1d: lam (λ) must be in (0, λc = {BRATU_LAMBDA_C:.12f}), got {lam}"
        )
    phi = lambda t: t - math.sqrt(2.0 * lam) * math.cosh(t / 4.0)  # noqa: E731
    t1 = brentq(phi, 1e-300, _BRATU_THETA_C, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    t2 = brentq(phi, _BRATU_THETA_C, 80.0, xtol=1e-15, rtol=4 * np.finfo(float).eps)

    def u(x: Any, theta: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return -2.0 * np.log(np.cosh((x - 0.5) * theta / 2.0) / math.cosh(theta / 4.0))

    return (t1, t2), u


def bratu_1d(n: int = 100, lam: float = 1.0, *, scale: float = 1.0) -> PDEResidual:
    r"""The 1-D Bratu residual ``R_i = (u_{i−1} − 2u_i + u_{i+1})/h² + λ e^{u_i}``.

    Unknowns ``u_1 … u_{n−1}`` at ``x_i = i/n`` (``u_0 = u_n = 0``); ``F = ½‖R‖²``,
    ``∇F = Jᵀ R``, ``J = A_h + λ diag(eᵘ)`` (source: spec ``problems.md`` §2.1, formulation
    (a); closed form as in RUSSELL ``test_bratu_1d_lmm.rs``; Bolstad & Keller 1986).

    Known minima (both ``F = 0``): the discrete lower and upper branches, computed by
    :meth:`~PDEResidual.solve` from the closed-form solutions (``.exact_solutions``, θ in
    ``.theta``). For 0 < λ < λc(h) both exist (λc = 3.51383071912516, RUSSELL / Buckmire;
    λc(h) < λc, e.g. 3.513647903969 at n = 100). Reference (spec §2.1 table [C]): at
    n = 100, λ = 1 the discrete solutions have ``u(½) = 0.1405406375`` and ``4.0914326800``.
    Suggested start: ``u = 0``.
    """
    n = _check_n("bratu_1d", n, 2)
    lam = float(lam)
    (t1, t2), u = bratu_exact(lam)
    h = 1.0 / n
    x = np.arange(1, n) * h
    m = n - 1
    p = PDEResidual(
        "bratu_1d",
        x,
        h,
        np.full(m, 1.0 / h**2),
        np.full(m, -2.0 / h**2),
        np.full(m, 1.0 / h**2),
        np.zeros(m),
        "exp",
        lam,
        scale,
    )
    p.__doc__ = bratu_1d.__doc__
    p.lam = lam
    p.theta = (t1, t2)
    p._set_minima((u(x, t1), u(x, t2)), ("lower", "upper"), "Bratu 1-D, spec problems.md §2.1")
    return p


# --------------------------------------------------------------------------------------------
# Radial problems on the unit disk
# --------------------------------------------------------------------------------------------
def _radial_laplacian(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Nodes r_i = i h (i < n) and the three diagonals of the discrete ``u'' + u'/r``.

    Returns ``(r, lower, diag, upper, upper_last)``; ``upper_last`` multiplies the boundary
    value ``u_n`` in the last row.
    """
    h = 1.0 / n
    r = np.arange(n) * h
    lower = np.empty(n)
    upper = np.empty(n)
    diag = np.full(n, -2.0 / h**2)
    lower[0] = 0.0
    upper[0] = 4.0 / h**2  # ghost point u_{-1} = u_1, Δu(0) = 2u''(0)
    diag[0] = -4.0 / h**2
    ri = r[1:]
    lower[1:] = 1.0 / h**2 - 1.0 / (2.0 * ri * h)
    upper[1:] = 1.0 / h**2 + 1.0 / (2.0 * ri * h)
    return r, lower, diag, upper, float(upper[-1])


def gelfand_exact(lam: float) -> tuple[tuple[float, float], Any]:
    """The two radial solutions of ``Δu + λeᵘ = 0`` on the unit disk, ``u(1) = 0``.

    Returns ``((β₋, β₊), u)`` with ``β± = [(4 − λ) ± 2 sqrt(4 − 2λ)]/λ`` and
    ``u(r, β) = 2 ln[(1+β)/(1+βr²)]`` (spec ``problems.md`` §2.3).
    """
    if not (0.0 < lam < 2.0):
        raise ValueError(f"gelfand_disk: lam (λ) must be in (0, λc = 2), got {lam}")
    root = 2.0 * math.sqrt(4.0 - 2.0 * lam)
    b_lo, b_hi = (4.0 - lam - root) / lam, (4.0 - lam + root) / lam

    def u(r: Any, beta: float) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        return 2.0 * np.log((1.0 + beta) / (1.0 + beta * r * r))

    return (b_lo, b_hi), u


def gelfand_disk(n: int = 100, lam: float = 1.5, *, scale: float = 1.0) -> PDEResidual:
    r"""The radial Gelfand residual ``R_i = (Δ_h u)_i + λ e^{u_i}`` on the unit disk.

    Unknowns ``u_0 … u_{n−1}`` at ``r_i = i/n`` (``u_n = 0``); the radial Laplacian
    ``u'' + u'/r`` by central differences with the symmetric ghost point at ``r = 0`` (source:
    spec ``problems.md`` §2.3 / §4.2). Exact solutions ``u = 2 ln[(1+β)/(1+βr²)]`` with
    ``λ = 8β/(1+β)²``, two for 0 < λ < 2 (fold λc = 2; Joseph & Lundgren 1973; Wikipedia
    "Liouville–Bratu–Gelfand equation"). At the default λ = 3/2: β = 1/3 and 3,
    ``u(0) = 2 ln(4/3) = 0.5753641449035618`` and ``4 ln 2 = 2.772588722239781``.

    Known minima (both ``F = 0``): the discrete lower and upper solutions, by
    :meth:`~PDEResidual.solve` from the exact ones (``.exact_solutions``, β in ``.beta``).
    Suggested start: ``u = 0``.
    """
    n = _check_n("gelfand_disk", n, 2)
    lam = float(lam)
    (b1, b2), u = gelfand_exact(lam)
    r, lower, diag, upper, _ = _radial_laplacian(n)
    p = PDEResidual(
        "gelfand_disk", r, 1.0 / n, lower, diag, upper, np.zeros(n), "exp", lam, scale
    )
    p.__doc__ = gelfand_disk.__doc__
    p.lam = lam
    p.beta = (b1, b2)
    p._set_minima(
        (u(r, b1), u(r, b2)), ("lower", "upper"), "radial Gelfand, spec problems.md §2.3"
    )
    return p


#: The ECD Dirichlet value sin²(20) (the authors' code uses the rounded 0.833469).
ECD_BOUNDARY = math.sin(20.0) ** 2


def ecd_source(r: Any) -> np.ndarray:
    """The source s(r) = (3 − 4(1+6400r²) cos(40r²) + cos(80r²) − 640 sin(40r²)) / 8."""
    r2 = np.asarray(r, dtype=np.float64) ** 2
    return 0.125 * (
        3.0 - 4.0 * (1.0 + 6400.0 * r2) * np.cos(40.0 * r2) + np.cos(80.0 * r2)
        - 640.0 * np.sin(40.0 * r2)
    )


def ecd_exact(r: Any) -> np.ndarray:
    """The manufactured solution u*(r) = sin²(20 r²) (``analytic_sol`` in PDE_PoissonD.py)."""
    r = np.asarray(r, dtype=np.float64)
    return np.sin(20.0 * r * r) ** 2


def ecd_radial_profile(u0: float, r: Any) -> np.ndarray:
    """The radial solution of ``u'' + u'/r = u² − s(r)`` with ``u(0) = u0``, ``u'(0) = 0``.

    Shooting (DOP853, rtol = atol = 1e-12) from ``r = 1e-6`` with the series start
    ``u ≈ u0 + (u0² − s(0)) r²/4``, the method of spec ``problems.md`` §4.1. With
    ``u0 = ECD_NEGATIVE_U0`` it gives the negative solution (``u(1) = sin²20`` to 3e-13);
    values at ``r < 1e-6`` are those at 1e-6. About 0.07 s.
    """
    r0 = 1e-6
    s0 = float(ecd_source(0.0))

    def rhs(t: float, y: np.ndarray) -> list[float]:
        return [y[1], y[0] * y[0] - float(ecd_source(t)) - y[1] / t]

    a = float(u0)
    sol = solve_ivp(
        rhs, (r0, 1.0), [a + (a * a - s0) * r0**2 / 4, (a * a - s0) * r0 / 2],
        method="DOP853", rtol=1e-12, atol=1e-12, dense_output=True,
    )  # fmt: skip
    return sol.sol(np.maximum(np.asarray(r, dtype=np.float64), r0))[0]


def _ecd_shoot_root(g: float, a0: float, a1: float) -> float:
    """u(0) of the radial solution with u(1) = g, by the secant method on the shooting."""
    f0 = float(ecd_radial_profile(a0, 1.0)) - g
    for _ in range(20):
        f1 = float(ecd_radial_profile(a1, 1.0)) - g
        if f1 == f0 or abs(f1) < 1e-12:
            break
        a0, a1, f0 = a1, a1 - f1 * (a1 - a0) / (f1 - f0), f1
    return a1


def ecd_pde(
    n: int = 400, *, boundary_value: float = ECD_BOUNDARY, scale: float = 1.0
) -> PDEResidual:
    r"""The ECD multi-solution PDE, radial: ``R_i = −(Δ_h u)_i + u_i² − s(r_i)``.

    ``−Δu + u² = s`` on the unit disk with ``u = sin²20`` on ``r = 1`` and
    ``s = (3 − 4(1+6400r²)cos(40r²) + cos(80r²) − 640 sin(40r²))/8`` (source: De Luca & Silverstein,
    arXiv:2201.11137, Sec. 4.4 / App. C; ``gbdl/BBI/experiments/PDE_PoissonD.py``). Unknowns
    ``u_0 … u_{n−1}`` at ``r_i = i/n``, discretised as in :func:`gelfand_disk`. Radial only:
    the authors solve on the 2-D disk with a network; the two solutions below are radial and
    non-radial solutions were not searched for (spec ``problems.md`` §4.1).

    Known minima (both ``F = 0``), computed by :meth:`~PDEResidual.solve` on this grid:

    - ``"exact"``: the discrete counterpart of ``u* = sin²(20r²)`` (the larger ``u_0``);
    - ``"negative"``: the second radial solution, ``u(0) = −10.225767116367`` in the continuum
      (spec ``problems.md`` §4.1, radial shooting; −10.225767056288 with the code's rounded
      boundary value 0.833469; the smaller ``u_0``), solved from :func:`ecd_radial_profile`
      (shooting from that u(0)), which is also stored as its continuum profile in
      ``.exact_solutions[1]``.

    ``.u0_continuum`` holds the continuum u(0) of both. For a ``boundary_value`` other than
    sin²20 both continuum solutions are re-shot (secant on u(0)), since u* is then not exact.

    The discrete solutions converge to the continuum ones at O(h²); ``u*`` oscillates (six
    half-periods in r²), so ``n`` must be a few hundred for percent-level accuracy (the
    default 400 gives max |u_h − u*| = 2.6e-3, and u_h(0) = −10.2235 for the negative one).
    Suggested start: ``u = 0``.
    ``boundary_value=0.833469`` reproduces the authors' rounded constant.

    On a coarse grid the discrete problem is far from the continuum one: it has two solutions
    for n = 4, 6, 8 and every n >= 11 (u_h(0) = 9.68 and −55.98 at n = 6, 6.34 and −37.47 at
    n = 12, −1.01 and −8.02 at n = 20), and none at n = 5, 7, 9, 10 (the shooting function of
    :meth:`~PDEResidual.solve` stays above 3.8e3 there: no real solution from any start);
    those sizes raise ``ValueError``.
    """
    n = _check_n("ecd_pde", n, 4)
    g = float(boundary_value)
    r, lower, diag, upper, upper_last = _radial_laplacian(n)
    c = -ecd_source(r)
    c[-1] -= upper_last * g  # −(upper · u_n) moved to the constant
    p = PDEResidual("ecd_pde", r, 1.0 / n, -lower, -diag, -upper, c, "square", 1.0, scale)
    p.__doc__ = ecd_pde.__doc__
    p.boundary_value = g
    if g == ECD_BOUNDARY:
        a_neg = ECD_NEGATIVE_U0
        first = ecd_exact(r)
    else:  # another boundary value: re-shoot both (the manufactured u* is then not exact)
        a_neg = _ecd_shoot_root(g, ECD_NEGATIVE_U0, _ECD_NEGATIVE_U0_ROUNDED)
        first = ecd_radial_profile(_ecd_shoot_root(g, 0.0, -2.46e-8), r)
    p.u0_continuum = (float(first[0]), a_neg)
    p._set_minima(
        (first, ecd_radial_profile(a_neg, r)),
        ("exact", "negative"),
        "ECD PDE (PDE_PoissonD.py), spec problems.md §4.1",
    )
    return p
