"""The debug switch and the checks behind it (off by default, ``PHYSOPT_CHECKS=1``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from array_api_compat import array_namespace, device

from physopt_ref.core.validate import is_array

__all__ = [
    "check_float_leaves",
    "check_per_run_arrays",
    "checks_enabled",
    "debug_checks",
    "set_debug_checks",
]

# ---------------------------------------------------------------------------------------------
# The debug switch

_CHECKS = [os.environ.get("PHYSOPT_CHECKS", "").strip().lower() in ("1", "true", "yes", "on")]


def checks_enabled() -> bool:
    """Whether steps run their full input checks (:func:`debug_checks`)."""
    return _CHECKS[0]


def set_debug_checks(enabled: bool) -> bool:
    """Turn the full per-step checks on or off for the whole process; returns the old setting."""
    old = _CHECKS[0]
    _CHECKS[0] = bool(enabled)
    return old


@contextlib.contextmanager
def debug_checks(enabled: bool = True) -> Iterator[None]:
    """Context manager: full per-step checks on (or off) inside the block.

    With the checks on, every step also checks that all leaves, the loss and the state belong
    to one namespace, that the parameters are real floating point, that the state matches the
    parameters (shapes, dtypes, ensemble shape), the loss's shape, and (outside a tracer) that
    schedule values lie in their hyperparameter's interval. They cost host work per step, so
    they are off by default; ``PHYSOPT_CHECKS=1`` turns them on at start-up.
    """
    old = set_debug_checks(enabled)
    try:
        yield
    finally:
        set_debug_checks(old)


def check_float_leaves(xp: Any, leaves: list[Any]) -> None:
    """Refuse integer / boolean / complex parameters with a clear message."""
    for leaf in leaves:
        if not xp.isdtype(leaf.dtype, "real floating"):
            raise TypeError(
                f"parameters must be real floating-point arrays, got dtype {leaf.dtype}"
            )



def check_per_run_arrays(
    owner: str, values: Mapping[str, Any], like: Any, batch_shape: tuple[int, ...]
) -> None:
    """Per-run hyperparameter arrays among ``values``: the parameters' namespace and device, and
    a scalar or the ensemble's batch shape (``owner`` names the optimizer or transform)."""
    for name, value in values.items():
        if not is_array(value):
            continue
        try:
            array_namespace(value, like)
        except TypeError as exc:
            raise TypeError(
                f"{owner}: the per-run array {name} must belong to the parameters' "
                f"namespace: {exc}"
            ) from exc
        if value.ndim and tuple(value.shape) != batch_shape:
            raise ValueError(
                f"{owner}: the per-run array {name} has shape {tuple(value.shape)}; "
                f"it must be a scalar or have the ensemble's batch shape {batch_shape}"
            )
        # A traced array (jax.jit) reports no device: the placement is the tracer's business.
        if None not in (device(value), device(like)) and device(value) != device(like):
            raise ValueError(
                f"{owner}: the per-run array {name} is on {device(value)}, the "
                f"parameters on {device(like)}"
            )



def _has_array_type(x: Any) -> bool:
    """An array, or a NumPy scalar (what NumPy returns for 0-d results)."""
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _short(value: Any) -> str:
    if is_array(value):
        return f"<per-run array {tuple(value.shape)}>"
    return repr(value)


