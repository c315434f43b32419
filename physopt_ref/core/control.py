"""Control flow that stays on the device: pay for a branch only when some run takes it.

A step never branches on array data in Python (that would be a host round trip on an
accelerator and breaks ``jax.jit``). Yet some work is needed only when at least one run of an
ensemble takes a rare branch: BBI's bounce needs a fresh random direction only on a bounce.
:func:`if_any` computes that work only when needed, where the backend allows it without a
device synchronisation, and unconditionally where it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import (
    is_array_api_strict_namespace,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

__all__ = ["host_resident", "if_any", "uniform_value"]


def host_resident(xp: Any, pred: Any) -> bool:
    """Eager arrays in host memory: reading a boolean costs no device synchronisation."""
    if is_numpy_namespace(xp) or is_array_api_strict_namespace(xp):
        return True
    if is_torch_namespace(xp):
        import torch

        return pred.device.type == "cpu" and not torch.compiler.is_compiling()
    return False


def if_any(
    xp: Any,
    pred: Any,
    true_fn: Callable[..., Any],
    false_fn: Callable[..., Any],
    *operands: Any,
) -> Any:
    """``true_fn(*operands)`` if any element of ``pred`` is True, else ``false_fn(*operands)``.

    Both functions must return the same structure of arrays (same shapes and dtypes), and the
    caller must use the result only where ``pred`` holds (select with ``xp.where`` afterwards),
    because on some backends ``true_fn`` runs whatever ``pred`` says:

    * NumPy, array-api-strict, torch on the CPU (eager): a Python branch on the host boolean
      (the data is already in host memory; no synchronisation);
    * JAX under ``jax.jit`` / ``jax.lax.scan``: ``jax.lax.cond``, which runs one branch on the
      device;
    * everything else (eager JAX, CuPy, torch on an accelerator or under ``torch.compile``,
      Dask): ``true_fn`` always, so that the step never waits for the device.
    """
    if is_jax_namespace(xp):
        import jax

        if isinstance(pred, jax.core.Tracer):
            return jax.lax.cond(xp.any(pred), true_fn, false_fn, *operands)
        # Eager JAX would compile the cond's fresh branch closures on every call: compute.
        return true_fn(*operands)
    if host_resident(xp, pred):
        return true_fn(*operands) if bool(xp.any(pred)) else false_fn(*operands)
    return true_fn(*operands)


def uniform_value(xp: Any, cond: Any) -> bool | None:
    """``True`` / ``False`` when every element of the boolean ``cond`` is, read where that is free.

    ``None`` when the elements differ, or when reading them would need a device
    synchronisation or happens under a tracer (then the caller selects element-wise).
    """
    if not host_resident(xp, cond):
        return None
    if cond.ndim == 0:
        return bool(cond)
    if bool(xp.all(cond)):
        return True
    return None if bool(xp.any(cond)) else False
