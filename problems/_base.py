"""The problem contract: analytic objectives with gradients, batched over leading axes.

A :class:`Problem` maps points ``x`` of shape ``(*batch, dim)`` (any Array API namespace,
float32 or float64) to values of shape ``batch`` and gradients of ``x``'s shape. The leading
axes are independent points (an ensemble of runs); evaluation is vectorised over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from ..backends import device_of, get_namespace

__all__ = ["KnownMinimum", "Problem"]


@dataclass(frozen=True)
class KnownMinimum:
    """A known minimum: its location (None where only the value is published), value, source."""

    location: np.ndarray | None
    value: float
    source: str
    is_global: bool = True


class Problem:
    """Base class: subclasses implement :meth:`_value_and_grad` (and may override the rest).

    Attributes
    ----------
    name : str
        Short name (used by the command line and reports).
    dim : int
        Size of the trailing axis of a point.
    x0 : numpy.ndarray
        Suggested start, float64, shape ``(dim,)``.
    bounds : tuple of numpy.ndarray or None
        ``(lower, upper)`` of the usual search domain, where the problem has one.
    minima : tuple of KnownMinimum
        The known minima, global ones first.
    """

    name: str = "problem"
    dim: int
    x0: np.ndarray
    bounds: tuple[np.ndarray, np.ndarray] | None = None
    minima: tuple[KnownMinimum, ...] = ()

    # -- what subclasses implement -----------------------------------------------------------
    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def _value(self, xp: Any, x: Any) -> Any:
        return self._value_and_grad(xp, x)[0]

    # -- the public, checked API -------------------------------------------------------------
    def check_point(self, x: Any) -> Any:
        """Validate a point array and return its namespace (raises TypeError / ValueError)."""
        try:
            xp = array_namespace(x)
        except TypeError as exc:
            raise TypeError(
                f"{self.name}: x must be an Array API array, got {type(x).__name__}"
            ) from exc
        if not xp.isdtype(x.dtype, "real floating"):
            raise TypeError(f"{self.name}: x must be real floating-point, got dtype {x.dtype}")
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(
                f"{self.name}: x must have shape (..., {self.dim}), got {tuple(x.shape)}"
            )
        return xp

    def value(self, x: Any) -> Any:
        """Objective values, shape ``x.shape[:-1]``."""
        return self._value(self.check_point(x), x)

    def grad(self, x: Any) -> Any:
        """Analytic gradient, shape ``x.shape``."""
        return self._value_and_grad(self.check_point(x), x)[1]

    def value_and_grad(self, x: Any) -> tuple[Any, Any]:
        """Both at once (sharing the common work)."""
        return self._value_and_grad(self.check_point(x), x)

    def start(
        self,
        like: Any = None,
        *,
        xp: Any = None,
        dtype: Any = None,
        batch_shape: tuple[int, ...] = (),
    ) -> Any:
        """The suggested start as an array, broadcast to ``batch_shape + (dim,)``.

        Give either ``like`` (an array whose namespace, dtype and device are used) or ``xp``
        (with an optional ``dtype``; the namespace's float64 by default).
        """
        if like is not None:
            xp = array_namespace(like)
            dtype, dev = like.dtype, device_of(like)
        else:
            if xp is None:
                xp = get_namespace("numpy")
            dtype = xp.float64 if dtype is None else dtype
            dev = None
        x = xp.asarray(self.x0, dtype=dtype, device=dev)
        return xp.broadcast_to(x, (*batch_shape, self.dim)) if batch_shape else x

    @property
    def f_min(self) -> float:
        """The smallest known value (the global minimum where it is known)."""
        if not self.minima:
            raise ValueError(f"{self.name}: no known minimum")
        return min(m.value for m in self.minima)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"
