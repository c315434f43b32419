"""Validation of hyperparameters when an optimizer is built.

Every error names the parameter, the paper's symbol, the allowed range and the value received.
Constant hyperparameters are returned as Python floats / ints: a NumPy float64 scalar next to
float32 parameters would silently promote them to float64 (NEP 50). (Schedules are checked by
:func:`physopt_ref.core.schedules.check_real_or_schedule`.) A hyperparameter that
accepts a *per-run* value may also be an array (one value per ensemble member, a sweep in one
array): its values are checked here, once, on the host; its shape is checked at ``init``
against the ensemble's batch shape.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "Bounds",
    "check_bool",
    "check_choice",
    "check_int",
    "check_real",
    "is_array",
]


def _fmt_range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


class Bounds:
    """An interval with its parameter's name and symbol, for checks and their messages."""

    __slots__ = ("high", "high_open", "low", "low_open", "name", "symbol")

    def __init__(
        self,
        name: str,
        symbol: str,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> None:
        self.name, self.symbol = name, symbol
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    @property
    def where(self) -> str:
        return f"{self.name} ({self.symbol})"

    @property
    def interval(self) -> str:
        return _fmt_range(self.low, self.high, self.low_open, self.high_open)

    def outside(self, v: np.ndarray | np.floating[Any]) -> Any:
        """Boolean mask of the values outside the interval (NaN counts as outside)."""
        bad = ~np.isfinite(v)
        if self.low is not None:
            bad |= (v <= self.low) if self.low_open else (v < self.low)
        if self.high is not None:
            bad |= (v >= self.high) if self.high_open else (v > self.high)
        return bad

    def check_values(self, values: Any, where: str | None = None) -> None:
        """Raise ``ValueError`` naming the parameter if any value is outside the interval."""
        v = np.asarray(values, dtype=np.float64)
        bad = self.outside(v)
        if np.any(bad):
            first = v[bad].flat[0]
            raise ValueError(
                f"{where or self.where} must be finite and in {self.interval}, got {first:g}"
                + (f" (at {int(np.sum(bad))} of {v.size} entries)" if v.size > 1 else "")
            )

    def __repr__(self) -> str:
        return f"Bounds({self.where} in {self.interval})"


def is_array(value: Any) -> bool:
    """True for an array object (not a Python or NumPy scalar)."""
    return (
        hasattr(value, "shape")
        and hasattr(value, "dtype")
        and not isinstance(value, numbers.Number | np.generic)
    )


def _per_run_array(value: Any, bounds: Bounds) -> Any:
    """Check a per-run hyperparameter array on the host, once; return it unchanged."""
    from physopt_ref.backends import to_numpy

    if _unreadable(value):
        # A JAX tracer (optax.inject_hyperparams under jax.jit) or a tensor on torch's meta
        # device has no values to read: its dtype is checked here, its values nowhere (the
        # caller validated the concrete value it traces).
        if not _is_real_floating(value):
            raise TypeError(
                f"{bounds.where} as an array must have a real floating dtype, got {value.dtype}"
            )
        return value
    try:
        host = to_numpy(value)
    except Exception as exc:  # a traced or lazy array cannot be checked
        raise TypeError(
            f"{bounds.where} as an array must be a concrete array (it is checked when the "
            f"optimizer is built), got {type(value).__name__}: {exc}"
        ) from exc
    if host.dtype.kind != "f":
        raise TypeError(
            f"{bounds.where} as an array must have a real floating dtype, got {host.dtype}"
        )
    bounds.check_values(host)
    return value


def _unreadable(value: Any) -> bool:
    """True for an array with no values on hand: a JAX tracer, a torch ``meta`` tensor."""
    from array_api_compat import is_jax_array, is_torch_array

    if is_jax_array(value):
        import jax

        return isinstance(value, jax.core.Tracer)
    return is_torch_array(value) and value.device.type == "meta"


def _is_real_floating(value: Any) -> bool:
    return str(value.dtype).rsplit(".", 1)[-1] in {"float16", "bfloat16", "float32", "float64"}


def check_real(
    name: str,
    value: Any,
    *,
    symbol: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    per_run: bool = False,
) -> Any:
    """Check that ``value`` is a finite real number in the given interval; return a float.

    With ``per_run=True`` an array (one value per ensemble member) is accepted too, checked
    element-wise, and returned as it is.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (booleans are refused), or an array where none is
        allowed.
    ValueError
        If it is NaN, infinite or outside the interval; the message names ``name``, ``symbol``
        and the interval.
    """
    bounds = Bounds(name, symbol, low, high, low_open, high_open)
    if per_run and is_array(value):
        return _per_run_array(value, bounds)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "a real number" + (" or an array of per-run values" if per_run else "")
        raise TypeError(f"{bounds.where} must be {kind}, got {type(value).__name__}: {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{bounds.where} must be finite and in {bounds.interval}, got {v}")
    if bounds.outside(np.float64(v)):
        raise ValueError(f"{bounds.where} must be in {bounds.interval}, got {v:g}")
    return v


def check_int(
    name: str, value: Any, *, symbol: str, low: int | None = None, high: int | None = None
) -> int:
    """Check that ``value`` is an integer in ``[low, high]``; return a Python int."""
    where = f"{name} ({symbol})"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where} must be an integer, got {type(value).__name__}: {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(
            f"{where} must be an integer in {_fmt_range(low, high, False, False)}, got {v}"
        )
    return v


def check_bool(name: str, value: Any) -> bool:
    """Check that ``value`` is a ``bool`` (``True``/``False``, NumPy's ``bool_`` too)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r}")


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Check that ``value`` is one of ``choices``."""
    if not isinstance(value, str | int | float | type(None)) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_callable(name: str, value: Any) -> Callable[..., Any]:
    """Check that ``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value
