"""Quadratics with a prescribed spectrum (diagonal or randomly rotated).

Source: the construction of spec ``problems.md`` §5.1 (Q1: diagonal ``A = diag(λ_i)`` with
linear or geometric spacing between μ and L, optionally rotated, ``A = Q Λ Qᵀ`` with a random
orthogonal ``Q``); the rates of GD / heavy ball / Nesterov on it are in §5.2 (Nesterov 2004,
Polyak 1964, Lessard, Recht & Packard 2016).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backends import asarray_like
from ._base import KnownMinimum, Problem

__all__ = ["Quadratic", "quadratic"]


class Quadratic(Problem):
    r"""f(x) = ½ (x − x*)ᵀ H (x − x*) + f*, with ∇f(x) = H (x − x*).

    ``H = Q diag(λ) Qᵀ`` is symmetric positive definite (``Q = I`` unless rotated). The single
    known minimum is ``x*`` with value ``f*`` (exact, by construction). Source: spec
    ``problems.md`` §5.1 (Q1).

    Attributes
    ----------
    eigenvalues : numpy.ndarray
        The spectrum ``λ`` in the order given (``H = Q diag(λ) Qᵀ``), float64.
    hessian : numpy.ndarray
        ``H``, float64, shape ``(dim, dim)``.
    rotation : numpy.ndarray
        ``Q`` (the identity for a diagonal quadratic).
    minimizer : numpy.ndarray
        ``x*``.
    offset : float
        ``f*``.
    mu, L, condition : float
        Smallest and largest eigenvalue and ``κ = L / μ`` (used by the stability tests).
    rotated : bool
    """

    def __init__(
        self,
        eigenvalues: np.ndarray,
        *,
        rotation: np.ndarray | None = None,
        minimizer: np.ndarray | None = None,
        offset: float = 0.0,
        x0: np.ndarray | None = None,
    ) -> None:
        lam = np.asarray(eigenvalues, dtype=np.float64)
        if lam.ndim != 1 or lam.size == 0:
            raise ValueError("quadratic: eigenvalues must be a non-empty 1-D sequence")
        if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise ValueError(
                "quadratic: eigenvalues λ_i must be finite and > 0 (positive definite H)"
            )
        self.dim = int(lam.size)
        self.eigenvalues = lam
        self.rotated = rotation is not None
        if rotation is None:
            self.rotation = np.eye(self.dim)
        else:
            q = np.asarray(rotation, dtype=np.float64)
            if q.shape != (self.dim, self.dim) or not np.allclose(
                q.T @ q, np.eye(self.dim), atol=1e-10
            ):
                raise ValueError("quadratic: rotation must be an orthogonal (dim, dim) matrix")
            self.rotation = q
        h = (self.rotation * lam) @ self.rotation.T
        self.hessian = 0.5 * (h + h.T)
        self.minimizer = (
            np.zeros(self.dim) if minimizer is None else np.asarray(minimizer, dtype=np.float64)
        )
        if self.minimizer.shape != (self.dim,):
            raise ValueError(f"quadratic: minimizer must have shape ({self.dim},)")
        self.offset = float(offset)
        self.mu = float(lam.min())
        self.L = float(lam.max())
        self.condition = self.L / self.mu
        self.name = "quadratic_rotated" if self.rotated else "quadratic"
        self.x0 = (
            self.minimizer + 1.0 if x0 is None else np.asarray(x0, dtype=np.float64).copy()
        )
        self.minima = (
            KnownMinimum(self.minimizer.copy(), self.offset, "exact, by construction"),
        )

    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        d = x - asarray_like(self.minimizer, x)
        if self.rotated:
            g = xp.matmul(d, asarray_like(self.hessian, x))
        else:
            g = d * asarray_like(self.eigenvalues, x)
        return 0.5 * xp.sum(d * g, axis=-1) + self.offset, g


def _random_rotation(dim: int, seed: int) -> np.ndarray:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix with the sign fix)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def quadratic(
    eigenvalues: Any = None,
    *,
    dim: int | None = None,
    condition: float | None = None,
    rotate: bool = False,
    seed: int = 0,
    spacing: str = "geometric",
    mu: float = 1.0,
    minimizer: Any = None,
    offset: float = 0.0,
) -> Quadratic:
    r"""A quadratic ``½ (x − x*)ᵀ H (x − x*) + f*`` with a chosen spectrum.

    Either give ``eigenvalues`` directly, or ``dim`` and ``condition`` κ: then
    ``λ_i = μ κ^{(i−1)/(n−1)}`` (``spacing="geometric"``) or ``λ_i = μ + (L−μ)(i−1)/(n−1)``
    (``spacing="linear"``), ``L = κ μ`` (spec ``problems.md`` §5.1, Q1). Defaults: ``dim = 10``,
    ``κ = 100``, ``μ = 1``.

    Parameters
    ----------
    eigenvalues : sequence of float, optional
        The spectrum of ``H`` (all > 0), kept in the order given: without rotation
        ``H = diag(eigenvalues)``.
    dim, condition : int, float, optional
        Size and κ = L/μ when ``eigenvalues`` is not given.
    rotate : bool
        If true, ``H = Q Λ Qᵀ`` with a Haar-random orthogonal ``Q`` drawn from ``seed``
        (NumPy ``default_rng``); otherwise ``H = Λ`` (diagonal).
    seed : int
        Seed of the rotation.
    spacing : {"geometric", "linear"}
    mu : float
        Smallest eigenvalue μ when building from ``condition``.
    minimizer : sequence of float, optional
        ``x*`` (default 0). The suggested start is ``x* + 1``.
    offset : float
        ``f*`` (default 0).

    Returns
    -------
    Quadratic
        With ``.eigenvalues``, ``.hessian``, ``.rotation``, ``.minimizer``, ``.mu``, ``.L``,
        ``.condition`` (NumPy / Python floats).
    """
    if eigenvalues is not None:
        if dim is not None or condition is not None:
            raise ValueError("quadratic: give either eigenvalues or dim/condition, not both")
        lam = np.asarray(
            [float(v) for v in np.asarray(eigenvalues, dtype=np.float64).ravel()]
        )
    else:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int | np.integer)):
            raise ValueError(f"quadratic: dim must be an integer, got {dim!r}")
        n = 10 if dim is None else int(dim)
        if n < 1:
            raise ValueError(f"quadratic: dim must be >= 1, got {dim}")
        kappa = 100.0 if condition is None else float(condition)
        if not (math.isfinite(kappa) and kappa >= 1.0):
            raise ValueError(f"quadratic: condition κ must be >= 1, got {condition}")
        if not (math.isfinite(mu) and mu > 0):
            raise ValueError(f"quadratic: mu (μ) must be > 0, got {mu}")
        t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
        if spacing == "geometric":
            lam = mu * kappa**t
        elif spacing == "linear":
            lam = mu + (kappa * mu - mu) * t
        else:
            raise ValueError(f"quadratic: spacing must be 'geometric' or 'linear', got {spacing!r}")
        if n > 1:
            lam[-1] = kappa * mu  # exact κ despite rounding in the power
    rotation = _random_rotation(lam.size, seed) if rotate else None
    mini = None if minimizer is None else np.asarray(minimizer, dtype=np.float64)
    return Quadratic(lam, rotation=rotation, minimizer=mini, offset=offset)
