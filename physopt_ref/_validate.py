"""Validation of hyperparameters when an optimizer is built.

Every error names the parameter, the paper's symbol, the allowed range and the value received.
Hyperparameters are returned as Python floats / ints: a NumPy float64 scalar next to float32
parameters would silently promote them to float64 (NEP 50).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

__all__ = ["check_choice", "check_int", "check_real", "check_real_or_schedule"]


def _fmt_range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


def check_real(
    name: str,
    value: Any,
    *,
    symbol: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Check that ``value`` is a finite real number in the given interval; return a float.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (booleans and arrays are refused).
    ValueError
        If it is NaN, infinite or outside the interval; the message names ``name``, ``symbol``
        and the interval.
    """
    where = f"{name} ({symbol})"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where} must be a real number, got {type(value).__name__}: {value!r}")
    v = float(value)
    interval = _fmt_range(low, high, low_open, high_open)
    if not math.isfinite(v):
        raise ValueError(f"{where} must be finite and in {interval}, got {v}")
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if too_low or too_high:
        raise ValueError(f"{where} must be in {interval}, got {v:g}")
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


def check_real_or_schedule(
    name: str,
    value: Any,
    *,
    symbol: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float | Callable[[int], float]:
    """A constant (checked like :func:`check_real`) or a schedule ``count -> float``.

    A schedule is checked at the step where it is used: see :func:`evaluate_schedule`.
    """
    if callable(value):
        return _CheckedSchedule(value, name, symbol, low, high, low_open, high_open)
    return check_real(
        name, value, symbol=symbol, low=low, high=high, low_open=low_open, high_open=high_open
    )


class _CheckedSchedule:
    """A schedule whose values are range-checked each time it is evaluated."""

    def __init__(
        self,
        fn: Callable[[int], float],
        name: str,
        symbol: str,
        low: float | None,
        high: float | None,
        low_open: bool,
        high_open: bool,
    ) -> None:
        self.fn = fn
        self._check = dict(
            symbol=symbol, low=low, high=high, low_open=low_open, high_open=high_open
        )
        self.name = name

    def __call__(self, count: int) -> float:
        return check_real(f"{self.name}(t={count})", self.fn(count), **self._check)

    def __repr__(self) -> str:
        return f"schedule({self.fn!r})"


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
