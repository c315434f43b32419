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

__all__ = ["graph_cond_active", "host_resident", "if_any", "uniform_value"]


def host_resident(xp: Any, pred: Any) -> bool:
    """Eager arrays in host memory: reading a boolean costs no device synchronisation."""
    if is_numpy_namespace(xp) or is_array_api_strict_namespace(xp):
        return True
    if is_torch_namespace(xp):
        import torch

        return pred.device.type == "cpu" and not torch.compiler.is_compiling()
    return False


def graph_cond_active(xp: Any) -> bool:
    """Whether :func:`if_any` with ``graph_cond=True`` becomes ``torch.cond`` here (torch being
    traced by ``torch.compile``)."""
    if not is_torch_namespace(xp):
        return False
    import torch

    return bool(torch.compiler.is_compiling())


def if_any(
    xp: Any,
    pred: Any,
    true_fn: Callable[..., Any],
    false_fn: Callable[..., Any],
    *operands: Any,
    graph_cond: bool = False,
) -> Any:
    """``true_fn(*operands)`` if any element of ``pred`` is True, else ``false_fn(*operands)``.

    Both functions must return the same structure of arrays (same shapes and dtypes), and the
    caller must use the result only where ``pred`` holds (select with ``xp.where`` afterwards),
    because on some backends ``true_fn`` runs whatever ``pred`` says:

    * NumPy, array-api-strict, torch on the CPU (eager): a Python branch on the host boolean
      (the data is already in host memory; no synchronisation);
    * JAX under ``jax.jit`` / ``jax.lax.scan``: ``jax.lax.cond``, which runs one branch on the
      device;
    * torch under ``torch.compile`` with ``graph_cond=True``: ``torch.cond``, one branch run in
      the graph (inductor compiles each branch as a subgraph; nothing is fused across the
      branch boundary, so the branches should hold all the work that uses them, and they must
      return fresh tensors: ``torch.cond`` refuses a branch that returns one of its operands);
    * everything else (eager JAX, CuPy, torch on an accelerator, torch under ``torch.compile``
      without ``graph_cond``, Dask): ``true_fn`` always, so that the step never waits for the
      device.
    """
    if is_jax_namespace(xp):
        import jax

        if isinstance(pred, jax.core.Tracer):
            return jax.lax.cond(xp.any(pred), true_fn, false_fn, *operands)
        # Eager JAX would compile the cond's fresh branch closures on every call: compute.
        return true_fn(*operands)
    if host_resident(xp, pred):
        # One run (a 0-d predicate): its value as it is, without a reduction's dispatch.
        hit = bool(pred) if pred.ndim == 0 else bool(xp.any(pred))
        return true_fn(*operands) if hit else false_fn(*operands)
    if graph_cond and graph_cond_active(xp):
        import torch

        return torch.cond(xp.any(pred), true_fn, false_fn, operands)
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
