"""Measurements shared by the checks: closeness as a fraction of the tolerance, equality,
read-only copies and snapshots of NumPy trees, and the ``x64`` scope for JAX."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from physopt_ref.testing._result import Condition

__all__ = [
    "ERROR_RATIO",
    "close_condition",
    "error_ratio",
    "readonly",
    "snapshot",
    "x64_scope",
]

#: The quantity of a closeness condition, ``max |got - want| / (atol + rtol |want|)``:
#: ``numpy.testing.assert_allclose`` passes iff it is <= 1.
ERROR_RATIO = "max error / tolerance"


def error_ratio(actual: Any, desired: Any, rtol: float, atol: float) -> tuple[float, int]:
    """The largest ``|a - d| / (atol + rtol |d|)`` and its flat index.

    The same criterion as ``numpy.testing.assert_allclose`` (which passes iff it is <= 1):
    equal infinities and NaN against NaN count as 0, a NaN or infinity against anything else as
    ``inf``; a zero tolerance turns any difference into ``inf``. Shapes must broadcast.
    """
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    a, d = np.broadcast_arrays(a, d)
    if a.size == 0:
        return 0.0, 0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(a - d)
        tol = atol + rtol * np.abs(d)
        ratio = np.where(tol > 0, diff / np.where(tol > 0, tol, 1.0),
                         np.where(diff == 0, 0.0, np.inf))
    same = (a == d) | (np.isnan(a) & np.isnan(d))
    ratio = np.where(same, 0.0, ratio)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    flat = ratio.ravel()
    i = int(np.argmax(flat))
    return float(flat[i]), i


def close_condition(
    pairs: Iterable[tuple[str, Any, Any]], rtol: float, atol: float,
    quantity: str = ERROR_RATIO,
) -> Condition:
    """``got`` close to ``want`` for every ``(where, got, want)``: the worst pair's ratio <= 1."""
    worst, where_worst = 0.0, ""
    for where, got, want in pairs:
        got_a, want_a = np.asarray(got), np.asarray(want)
        if got_a.shape != want_a.shape:
            return Condition("shape mismatches", 1, 0, "<=",
                             f"{where}: shape {got_a.shape}, expected {want_a.shape}")
        r, i = error_ratio(got_a, want_a, rtol, atol)
        if r > worst or not where_worst:
            g = float(got_a.ravel()[i]) if got_a.size else math.nan
            w = float(want_a.ravel()[i]) if want_a.size else math.nan
            worst, where_worst = r, f"worst at {where} (element {i}: got {g:.17g}, want {w:.17g})"
        if not np.isfinite(worst):
            break
    return Condition(quantity, worst, 1.0, "<=",
                     f"{where_worst}; rtol {rtol:g}, atol {atol:g}")


def readonly(tree: Any) -> Any:
    """A copy of a NumPy tree (or state) whose arrays refuse writes."""
    if isinstance(tree, np.ndarray):
        tree = tree.copy()
        tree.flags.writeable = False
        return tree
    if isinstance(tree, dict):
        return {k: readonly(v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(readonly(v) for v in tree))
    if isinstance(tree, list | tuple):
        return type(tree)(readonly(v) for v in tree)
    return tree


def snapshot(tree: Any) -> list[Any]:
    """Copies of every array (and the other leaves) of a tree, in order."""
    if isinstance(tree, np.ndarray):
        return [tree.copy()]
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in snapshot(v)]
    if isinstance(tree, list | tuple):
        return [s for v in tree for s in snapshot(v)]
    return [tree]


def changed(before: list[Any], after: list[Any]) -> int:
    """How many entries of two snapshots differ (NaN equal to NaN); a length change counts."""
    if len(before) != len(after):
        return max(len(before), len(after))
    n = 0
    for x, y in zip(before, after, strict=True):
        if isinstance(x, np.ndarray):
            n += not (isinstance(y, np.ndarray) and np.array_equal(x, y, equal_nan=True))
        else:
            n += not (x is y or x == y)
    return n


@contextlib.contextmanager
def x64_scope(xp: Any, enabled: bool = True) -> Iterator[None]:
    """JAX's 64-bit mode on (or off) inside the block, restored after; nothing elsewhere."""
    if "jax" not in getattr(xp, "__name__", ""):
        yield
        return
    import jax

    with jax.enable_x64(enabled):
        yield
